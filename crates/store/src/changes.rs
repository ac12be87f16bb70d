//! Live changes: every committed change of a dispute (its new events and the dispute after them), published to
//! this process's subscribers (GraphQL subscriptions), and routed to the configured outbound webhooks.
//!
//! SQLite serves one process: a commit publishes its change in memory once the transaction has committed.
//! PostgreSQL may have several replicas: a commit with events writes a row of the change feed (migration 18)
//! and sends `NOTIFY verdict_changes` with a small payload (position, dispute id, first and last version) in
//! its own transaction, so the notice exists exactly when the change does. Each replica holds ONE listening
//! connection ([`Store::run_change_listener`]); for each notice it loads the events and the dispute once and
//! broadcasts them to every subscriber of the process, which filter in memory. A notification sent while the
//! listener was disconnected is lost, so after reconnecting the listener reads the feed past the last
//! position it saw (with a lookback, since positions are taken before commit and may commit out of order).
//!
//! Subscribers share one bounded ring ([`CHANGE_BUFFER`] changes): a subscriber that falls that far behind
//! loses its place (`Lagged`) and is told so, instead of holding memory for it or slowing the others.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;
use verdict_domain::{Dispute, DisputeId, EventKind};

use crate::convert::to_domain;
use crate::entity::{dispute, dispute_event};
use crate::queue::WORK_CHANNEL;
use crate::{EventRecord, Store, StoreError};

/// The PostgreSQL channel that carries change notices between replicas.
pub const CHANGE_CHANNEL: &str = "verdict_changes";

/// Changes held for subscribers of one process; a subscriber further behind than this is dropped (`Lagged`).
pub const CHANGE_BUFFER: usize = 1024;

/// How far before the last position seen a catch-up reads: positions are taken when a transaction inserts its
/// feed row, not when it commits, so a lower position may become visible after a higher one.
const CATCH_UP_LOOKBACK: i64 = 1000;

/// Positions remembered as delivered, so that a catch-up does not publish a change twice.
const DELIVERED_MEMORY: usize = 10_000;

/// How long change-feed rows are kept: far longer than any reconnect takes.
const FEED_RETENTION_HOURS: i64 = 24;

/// One committed change of a dispute: its new events, oldest first, and the dispute as the replica read it
/// after them (on PostgreSQL possibly a later version, when more changes followed quickly).
#[derive(Debug, Clone)]
pub struct Change {
    pub dispute: Dispute,
    pub events: Vec<EventRecord>,
}

/// Notices sent in one `NOTIFY` payload: each is under 100 bytes of JSON, PostgreSQL caps a payload at 8000.
const NOTICES_PER_PAYLOAD: usize = 64;

/// A `NOTIFY` payload: the notices of one committed batch, or (from a replica of an earlier release) one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Payload {
    Batch(Vec<Notice>),
    One(Notice),
}

/// One change in a `NOTIFY` payload: small, ids and versions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Notice {
    /// Position in the change feed.
    p: i64,
    /// Dispute id.
    d: Uuid,
    /// First and last event version of the change (the events are `(d, f..=l)`).
    f: i64,
    l: i64,
}

/// Where the store sends the events of each commit besides the subscribers: an outbound webhook, by name,
/// with the event types it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRoute {
    /// The webhook's name in the configuration; step payloads carry it.
    pub name: String,
    /// The event types it receives; empty: every event.
    pub events: Vec<EventKind>,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: i32,
}

impl OutboundRoute {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e.as_str() == kind)
    }
}

/// The idempotency key of one event's delivery to one webhook: receivers dedupe on it.
pub fn outbound_delivery_key(webhook: &str, dispute: DisputeId, version: i64) -> String {
    format!("outbound:{webhook}:{dispute}:{version}")
}

/// The broadcast channel and the outbound routes of one process, shared by every clone of the store.
pub(crate) struct ChangeHub {
    sender: broadcast::Sender<Arc<Change>>,
    routes: RwLock<Arc<[OutboundRoute]>>,
}

impl Default for ChangeHub {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(CHANGE_BUFFER);
        Self {
            sender,
            routes: RwLock::new(Arc::from(Vec::new())),
        }
    }
}

impl ChangeHub {
    /// Whether anyone in this process subscribes to changes now (a GraphQL subscription).
    pub(crate) fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(crate) fn publish(&self, change: Change) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(Arc::new(change));
    }

    pub(crate) fn routes(&self) -> Arc<[OutboundRoute]> {
        match self.routes.read() {
            Ok(routes) => routes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Store {
    /// Every change committed from now on (by any replica on PostgreSQL, once its listener runs), through a
    /// receiver bounded by [`CHANGE_BUFFER`].
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.sender.subscribe()
    }

    /// Routes the events of every later commit to these outbound webhooks (an outbox step per event and
    /// webhook, written in the commit's transaction).
    pub fn route_outbound_webhooks(&self, routes: Vec<OutboundRoute>) {
        let routes: Arc<[OutboundRoute]> = Arc::from(routes);
        match self.changes.routes.write() {
            Ok(mut current) => *current = routes,
            Err(poisoned) => *poisoned.into_inner() = routes,
        }
    }

    /// One stored event of a dispute.
    pub async fn event(&self, id: DisputeId, version: i64) -> Result<Option<EventRecord>, StoreError> {
        Ok(dispute_event::Entity::find_by_id((id.as_uuid(), version))
            .one(self.db())
            .await?
            .map(EventRecord::from))
    }

    /// Inside a commit on PostgreSQL: the feed rows of a batch's changes (dispute, first and last version) and
    /// their notices, all visible only if the transaction commits; with `wake`, the `verdict_work` notice too
    /// (work due soon). One statement: the insert, and one `pg_notify` per [`NOTICES_PER_PAYLOAD`] changes
    /// built from what it returned (each a round trip of its own before).
    pub(crate) async fn record_changes(
        &self,
        txn: &DatabaseTransaction,
        changes: &[(DisputeId, i64, i64)],
        wake: bool,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            if wake {
                txn.execute_unprepared(&format!("NOTIFY {WORK_CHANNEL}")).await?;
            }
            return Ok(());
        }
        let now = Utc::now();
        let mut values: Vec<Value> = Vec::with_capacity(changes.len() * 4 + 1);
        values.push(CHANGE_CHANNEL.into());
        let mut tuples = Vec::with_capacity(changes.len());
        for (dispute, first, last) in changes {
            let n = values.len();
            tuples.push(format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
            values.extend([dispute.as_uuid().into(), (*first).into(), (*last).into(), now.into()]);
        }
        let wake = if wake {
            format!(" UNION ALL SELECT pg_notify('{WORK_CHANNEL}', '')")
        } else {
            String::new()
        };
        // The payload is what `Payload::Batch` reads: `[{"p": position, "d": dispute, "f": first, "l": last}]`.
        let statement = self.stmt(
            &format!(
                "WITH fed AS (INSERT INTO change_feed (dispute_id, first_version, last_version, committed_at) \
                 VALUES {} RETURNING position, dispute_id, first_version, last_version), \
                 parts AS (SELECT fed.*, (row_number() OVER (ORDER BY position) - 1) / {NOTICES_PER_PAYLOAD} AS part \
                 FROM fed) \
                 SELECT pg_notify($1, json_agg(json_build_object('p', position, 'd', dispute_id, \
                 'f', first_version, 'l', last_version) ORDER BY position)::text) FROM parts GROUP BY part{wake}",
                tuples.join(", ")
            ),
            values,
        );
        txn.execute_raw(statement).await?;
        Ok(())
    }

    pub(crate) fn publish_change(&self, change: Change) {
        self.changes.publish(change);
    }

    /// On PostgreSQL, runs this replica's one change listener until the process ends: every notice (from any
    /// replica, this one included) is loaded once and broadcast to the subscribers. A lost connection is
    /// reopened (waiting up to 30 s between tries) and the feed is read past the last position seen, since
    /// notices sent meanwhile are gone. Returns at once on SQLite, whose commits publish directly.
    pub async fn run_change_listener(self) {
        if !self.is_postgres() {
            return;
        }
        let mut listener = ChangeListener::default();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.listen_once(&mut listener).await {
                Ok(()) => pause = Duration::from_millis(250),
                Err(err) => {
                    tracing::warn!(%err, "change listener interrupted; reconnecting and catching up from the feed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// One connection's life: listen, catch up, then publish notices until the connection is lost.
    async fn listen_once(&self, state: &mut ChangeListener) -> Result<(), StoreError> {
        let pool = self.db().get_postgres_connection_pool().clone();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .map_err(sqlx_error)?;
        listener.listen(CHANGE_CHANNEL).await.map_err(sqlx_error)?;
        // Listening before reading the feed: a change committed in between is in one or the other (or both,
        // which the delivered positions absorb).
        match state.last_position {
            None => state.last_position = Some(self.feed_end().await?),
            Some(last) => self.catch_up(state, last).await?,
        }
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                received = listener.try_recv() => match received.map_err(sqlx_error)? {
                    Some(notification) => match serde_json::from_str::<Payload>(notification.payload()) {
                        Ok(Payload::One(notice)) => self.deliver(state, notice).await?,
                        Ok(Payload::Batch(notices)) => {
                            for notice in notices {
                                self.deliver(state, notice).await?;
                            }
                        }
                        Err(err) => tracing::warn!(%err, "ignoring a malformed change notice"),
                    },
                    // The connection was lost: notices sent until the next LISTEN are gone.
                    None => return Err(StoreError::Corrupt("the listening connection was closed".into())),
                },
                _ = prune.tick() => self.prune_feed().await,
            }
        }
    }

    async fn feed_end(&self) -> Result<i64, StoreError> {
        let row = self
            .db()
            .query_one_raw(self.stmt("SELECT COALESCE(MAX(position), 0) AS last FROM change_feed", vec![]))
            .await?;
        Ok(match row {
            Some(row) => row.try_get("", "last")?,
            None => 0,
        })
    }

    async fn catch_up(&self, state: &mut ChangeListener, last: i64) -> Result<(), StoreError> {
        let rows = self
            .db()
            .query_all_raw(self.stmt(
                "SELECT position, dispute_id, first_version, last_version FROM change_feed \
                 WHERE position > $1 ORDER BY position",
                vec![(last - CATCH_UP_LOOKBACK).into()],
            ))
            .await?;
        let mut caught_up = 0;
        for row in rows {
            let notice = Notice {
                p: row.try_get("", "position")?,
                d: row.try_get("", "dispute_id")?,
                f: row.try_get("", "first_version")?,
                l: row.try_get("", "last_version")?,
            };
            if !state.delivered.contains(&notice.p) {
                caught_up += 1;
            }
            self.deliver(state, notice).await?;
        }
        if caught_up > 0 {
            tracing::info!(changes = caught_up, "change listener caught up from the feed");
        }
        Ok(())
    }

    /// Loads a notice's events and dispute once and broadcasts them, unless that position was delivered.
    async fn deliver(&self, state: &mut ChangeListener, notice: Notice) -> Result<(), StoreError> {
        // Nobody subscribed: nothing to load (a subscriber gets the changes committed after it subscribed).
        if !state.remember(notice.p) || !self.changes.watched() {
            return Ok(());
        }
        let events = dispute_event::Entity::find()
            .filter(dispute_event::Column::DisputeId.eq(notice.d))
            .filter(dispute_event::Column::Version.between(notice.f, notice.l))
            .order_by_asc(dispute_event::Column::Version)
            .all(self.db())
            .await?;
        let Some(row) = dispute::Entity::find_by_id(notice.d).one(self.db()).await? else {
            return Ok(());
        };
        self.changes.publish(Change {
            dispute: to_domain(row)?,
            events: events.into_iter().map(EventRecord::from).collect(),
        });
        Ok(())
    }

    async fn prune_feed(&self) {
        let cutoff = Utc::now() - chrono::Duration::hours(FEED_RETENTION_HOURS);
        let statement = self.stmt("DELETE FROM change_feed WHERE committed_at < $1", vec![cutoff.into()]);
        if let Err(err) = self.db().execute_raw(statement).await {
            tracing::warn!(%err, "pruning the change feed failed");
        }
    }
}

fn sqlx_error(err: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err.into())))
}

/// What one replica's listener remembers across reconnections.
#[derive(Default)]
struct ChangeListener {
    /// The highest feed position delivered (or the feed's end when the listener first started).
    last_position: Option<i64>,
    delivered: HashSet<i64>,
    order: BTreeSet<i64>,
}

impl ChangeListener {
    /// Records a position as delivered; false when it already was.
    fn remember(&mut self, position: i64) -> bool {
        if let Some(last) = self.last_position
            && position <= last - CATCH_UP_LOOKBACK
        {
            // Older than any catch-up reads: delivered before, or before this listener started.
            return false;
        }
        if !self.delivered.insert(position) {
            return false;
        }
        self.order.insert(position);
        while self.order.len() > DELIVERED_MEMORY {
            if let Some(oldest) = self.order.pop_first() {
                self.delivered.remove(&oldest);
            }
        }
        self.last_position = Some(self.last_position.map_or(position, |last| last.max(position)));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_delivered_once_and_old_ones_never() {
        let mut listener = ChangeListener {
            last_position: Some(5000),
            ..Default::default()
        };
        assert!(listener.remember(4990), "within the lookback, not yet delivered");
        assert!(!listener.remember(4990));
        assert!(
            !listener.remember(3000),
            "before the lookback: delivered before the listener knew"
        );
        assert!(listener.remember(5001));
        assert_eq!(listener.last_position, Some(5001));
    }

    #[test]
    fn the_memory_of_delivered_positions_is_bounded() {
        let mut listener = ChangeListener::default();
        for p in 1..=(DELIVERED_MEMORY as i64 + 50) {
            assert!(listener.remember(p));
        }
        assert_eq!(listener.delivered.len(), DELIVERED_MEMORY);
        assert_eq!(listener.order.len(), DELIVERED_MEMORY);
    }

    #[test]
    fn a_route_without_event_types_wants_everything() {
        let all = OutboundRoute {
            name: "all".into(),
            events: vec![],
            max_attempts: 3,
        };
        let some = OutboundRoute {
            events: vec![EventKind::Won, EventKind::Lost],
            ..all.clone()
        };
        assert!(all.wants("note_added"));
        assert!(some.wants("won"));
        assert!(!some.wants("note_added"));
    }
}
