//! Live updates: GraphQL subscriptions over WebSocket (`/graphql/ws`, graphql-transport-ws and the older
//! subscriptions-transport-ws), fed by the store's change broadcast (see `verdict_store::Change`).
//!
//! Every subscription of the process reads the same broadcast: a change is loaded once per replica and each
//! subscriber filters it in memory. A subscriber that falls more than `CHANGE_BUFFER` changes behind gets a
//! `SUBSCRIBER_LAGGED` error and its subscription ends, so one slow client costs no memory and never slows
//! the others. Data is masked by the caller's role exactly as queries mask it: the dispute's customer by
//! [`Dispute`]'s own resolver, events without the customer as history shows them.

use std::sync::Arc;

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream;
use async_graphql::{Context, ID, SimpleObject, Subscription};
use tokio::sync::broadcast::error::RecvError;
use verdict_engine::Engine;
use verdict_store::Change;

use super::query::{parse_id, principal};
use super::types::{Dispute, DisputeEvent, Queue};
use crate::auth::Role;
use crate::error::ApiError;

/// The subscription root.
#[derive(Default)]
pub struct SubscriptionRoot;

/// One committed change of a dispute, as subscriptions deliver it.
#[derive(SimpleObject)]
pub struct DisputeChange {
    /// The dispute after the change (a later version if more changes followed at once), personal data masked
    /// by the subscriber's role. Its own fields cost nothing; its lists (events, steps, ...) are read per
    /// subscriber, so subscribe to what the change carries instead.
    pub dispute: Dispute,
    /// The change's events, oldest first, without the customer's personal data (as history shows them).
    pub events: Vec<DisputeEvent>,
}

impl TryFrom<&Change> for DisputeChange {
    type Error = ApiError;

    fn try_from(change: &Change) -> Result<Self, ApiError> {
        Ok(Self {
            dispute: Dispute(change.dispute.clone()),
            events: super::types::views(change.events.clone())?,
        })
    }
}

type Changes = std::pin::Pin<Box<dyn Stream<Item = async_graphql::Result<DisputeChange>> + Send>>;

/// The changes of this process's broadcast that `keep` accepts, from now on; a lagging subscriber gets one
/// `SUBSCRIBER_LAGGED` error and the stream ends.
fn changes_where(
    ctx: &Context<'_>,
    keep: impl Fn(&Change) -> bool + Send + Sync + 'static,
) -> async_graphql::Result<Changes> {
    let receiver = ctx.data::<Engine>()?.store().subscribe_changes();
    let keep = Arc::new(keep);
    Ok(Box::pin(stream::unfold(Some(receiver), move |receiver| {
        let keep = keep.clone();
        async move {
            let mut receiver = receiver?;
            loop {
                match receiver.recv().await {
                    Ok(change) if keep(&change) => {
                        let change = DisputeChange::try_from(change.as_ref()).map_err(Into::into);
                        return Some((change, Some(receiver)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        let err = ApiError::SubscriberLagged(format!(
                            "this subscriber fell {missed} changes behind and was dropped; subscribe again and \
                             read what changed meanwhile with a query"
                        ));
                        return Some((Err(err.into()), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })))
}

/// Live changes over WebSocket (`/graphql/ws`): one dispute's, a queue's, or all of them.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Every change of one dispute from now on: its events as they are committed, on any replica. Viewer and
    /// above; personal data masked for viewers.
    async fn dispute_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute's id.")] id: ID,
    ) -> async_graphql::Result<Changes> {
        principal(ctx, Role::Viewer)?;
        let id = parse_id(&id)?;
        changes_where(ctx, move |change| change.dispute.id == id)
    }

    /// Every change of a dispute that is in `queue` after the change. Viewer and above; personal data masked
    /// for viewers.
    async fn queue_changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The queue.")] queue: Queue,
    ) -> async_graphql::Result<Changes> {
        principal(ctx, Role::Viewer)?;
        let queue: verdict_domain::Queue = queue.into();
        changes_where(ctx, move |change| change.dispute.queue == Some(queue))
    }

    /// Every change of every dispute the caller may read (all of them, for every role), personal data masked
    /// for roles below analyst. Viewer and above.
    async fn dispute_changes(&self, ctx: &Context<'_>) -> async_graphql::Result<Changes> {
        principal(ctx, Role::Viewer)?;
        changes_where(ctx, |_| true)
    }
}
