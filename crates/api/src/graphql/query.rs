//! Read side: one dispute with its history, and queue pages.

use async_graphql::{Context, ID, Object, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use verdict_domain::DisputeId;
use verdict_engine::Engine;
use verdict_store::PageCursor;

use super::limits::list_cost;
use super::types::{Dispute, DisputeConnection, DisputeEdge, DisputeFilter, PageInfo};
use crate::auth::{Principal, PrincipalKind, Role};
use crate::error::ApiError;

const MAX_PAGE: i32 = 500;

pub struct QueryRoot;

pub(crate) fn principal<'a>(ctx: &Context<'a>, role: Role) -> async_graphql::Result<&'a Principal> {
    let principal = ctx
        .data_opt::<Principal>()
        .ok_or_else(|| ApiError::Unauthenticated("missing Authorization: Bearer token".into()))?;
    principal.require(role)?;
    Ok(principal)
}

pub(crate) fn parse_id(id: &ID) -> Result<DisputeId, ApiError> {
    id.as_str()
        .parse()
        .map_err(|_| ApiError::InvalidInput(format!("{:?} is not a dispute id", id.as_str())))
}

fn encode_cursor(cursor: &PageCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", cursor.sort_due_at.to_rfc3339(), cursor.id))
}

fn decode_cursor(cursor: &str) -> Result<PageCursor, ApiError> {
    let bad = || ApiError::InvalidInput(format!("{cursor:?} is not a cursor from this API"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok(PageCursor {
        sort_due_at: DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.to_utc(),
        id: id.parse().map_err(|_| bad())?,
    })
}

/// The caller of the request.
#[derive(SimpleObject)]
pub struct Me {
    /// The API key's name or the person's handle: what events record as the actor.
    pub name: String,
    pub role: Role,
    /// How the caller signed in.
    pub kind: CallerKind,
}

/// How a caller authenticated.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// A service (or a script) with an API key.
    ApiKey,
    /// A person signed in through the organisation's OpenID Connect provider.
    User,
}

#[Object]
impl QueryRoot {
    /// One dispute by Verdict id; null if there is none.
    async fn dispute(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Dispute>> {
        principal(ctx, Role::Viewer)?;
        let id = parse_id(&id)?;
        let dispute = super::read(ctx, ctx.data::<Engine>()?.store().load(id)).await?;
        Ok(dispute.map(Dispute))
    }

    /// A page of disputes ordered by due date (soonest first, undated last), then id. A query's cost counts
    /// `first` times the fields asked of each dispute.
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn disputes(
        &self,
        ctx: &Context<'_>,
        filter: Option<DisputeFilter>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<DisputeConnection> {
        principal(ctx, Role::Viewer)?;
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(ApiError::InvalidInput(format!("first must be between 0 and {MAX_PAGE}")).into());
        }
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let filter: verdict_store::DisputeFilter = filter.unwrap_or_default().into();
        let page = super::read(ctx, ctx.data::<Engine>()?.store().list(&filter, first as u64, after)).await?;
        let edges: Vec<DisputeEdge> = page
            .items
            .into_iter()
            .map(|(cursor, dispute)| DisputeEdge {
                cursor: encode_cursor(&cursor),
                node: Dispute(dispute),
            })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(DisputeConnection {
            edges,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
            filter,
        })
    }

    /// Messages Verdict sent to customers, sellers and assignees, newest first (customers masked for viewers).
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn mailbox(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<super::mailbox::MailboxMessage>> {
        super::mailbox::recent(ctx, first).await
    }

    /// Steps that ran out of attempts or failed permanently, most recently failed first.
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn dead_lettered_steps(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<super::operations_admin::StepDetail>> {
        super::operations_admin::dead_lettered(ctx, first).await
    }

    /// Every API key, revoked ones included, oldest first (admins only; never a token).
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<super::operations_admin::ApiKey>> {
        super::operations_admin::api_keys(ctx).await
    }

    /// Recoveries of lost or accepted disputes the seller owned, debited from the sellers' payouts, newest
    /// first (leads and up).
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn seller_recoveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<super::sellers::SellerRecovery>> {
        super::sellers::recoveries(ctx, first).await
    }

    /// Sellers' disputes against their orders over the last `days` days (default 90), highest rate first,
    /// those above the configured threshold flagged (leads and up).
    async fn seller_dispute_rates(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 90)] days: i32,
    ) -> async_graphql::Result<Vec<super::sellers::SellerDisputeRate>> {
        super::sellers::rates(ctx, days).await
    }

    /// Every person who signed in through the identity provider, by handle: whom a dispute can be assigned
    /// to (leads and up; emails whole for admins only).
    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<super::users::User>> {
        super::users::users(ctx).await
    }

    /// The caller's key name or handle, role, and how they signed in.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let principal = principal(ctx, Role::Viewer)?;
        Ok(Me {
            name: principal.name.clone(),
            role: principal.role,
            kind: match principal.kind {
                PrincipalKind::ApiKey => CallerKind::ApiKey,
                PrincipalKind::User => CallerKind::User,
            },
        })
    }

    /// The marketplace's order known by `reference` (its order number or one of its payment references), from
    /// the configured source; personal data masked for viewers.
    async fn order(&self, ctx: &Context<'_>, reference: String) -> async_graphql::Result<Option<super::facts::Order>> {
        super::facts::order(ctx, reference).await
    }

    /// Dispute figures grouped by any combination of `groupBy` (none: one group per currency), computed in the
    /// database: counts, amounts per currency, outcomes, win rate, median time to resolution and deadline
    /// misses. Analysts and up; no personal data. At most 10,000 groups (narrow the filter or group by less).
    async fn dispute_patterns(
        &self,
        ctx: &Context<'_>,
        group_by: Vec<super::patterns::PatternDimension>,
        filter: Option<super::patterns::PatternFilter>,
    ) -> async_graphql::Result<Vec<super::patterns::DisputePattern>> {
        super::patterns::dispute_patterns(ctx, group_by, filter).await
    }

    /// Each seller's and the whole marketplace's monthly ratio of disputes to orders against the Visa VAMP and
    /// Mastercard ECM thresholds (Verdict's reference data, with sources), flagged when a level is reached.
    /// Analysts and up.
    async fn dispute_monitoring(
        &self,
        ctx: &Context<'_>,
        filter: Option<super::patterns::MonitoringFilter>,
    ) -> async_graphql::Result<Vec<super::patterns::MonitoringRatio>> {
        super::patterns::dispute_monitoring(ctx, filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = PageCursor {
            sort_due_at: chrono::Utc::now(),
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).ok(), Some(cursor));
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("no-separator")).is_err());
    }
}
