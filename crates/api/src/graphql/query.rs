//! Read side: one dispute with its history, and queue pages.

use async_graphql::{Context, ID, Object, SimpleObject};
use verdict_domain::DisputeId;
use verdict_engine::Engine;

use super::limits::list_cost;
use super::search::{AuditConnection, AuditFilter, DisputeFilter, DisputeSortInput};
use super::types::{Dispute, DisputeConnection};
use crate::auth::{Principal, PrincipalKind, Role};
use crate::error::ApiError;

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

/// The caller of the request.
#[derive(SimpleObject)]
pub struct Me {
    /// The API key's name or the person's handle: what events record as the actor.
    pub name: String,
    /// What the caller may do.
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

/// Every query: disputes and their history, queues, patterns, the audit trail, and administration.
#[Object]
impl QueryRoot {
    /// One dispute by Verdict id; null if there is none.
    async fn dispute(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Verdict's id of the dispute.")] id: ID,
    ) -> async_graphql::Result<Option<Dispute>> {
        principal(ctx, Role::Viewer)?;
        let id = parse_id(&id)?;
        let dispute = super::read(ctx, ctx.data::<Engine>()?.store().load(id)).await?;
        Ok(dispute.map(Dispute))
    }

    /// A page of the disputes `filter` matches, in `sort` order (soonest due first by default), Relay-style:
    /// `first`/`after` forwards or `last`/`before` backwards, at most 500 a page. Viewers and above. A query's
    /// cost counts the page size times the fields asked of each dispute.
    #[graphql(
        complexity = "list_cost(first.or(last).unwrap_or(super::search::DEFAULT_PAGE).min(super::search::MAX_PAGE), child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn disputes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which disputes; none: all.")] filter: Option<DisputeFilter>,
        #[graphql(desc = "Their order; default: soonest due first.")] sort: Option<DisputeSortInput>,
        #[graphql(desc = "Page size forwards (default 50, at most 500).")] first: Option<i32>,
        #[graphql(desc = "The cursor to read forwards from (an `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size backwards (at most 500).")] last: Option<i32>,
        #[graphql(desc = "The cursor to read backwards from (a `startCursor`).")] before: Option<String>,
    ) -> async_graphql::Result<DisputeConnection> {
        super::search::disputes(ctx, filter, sort, first, after, last, before).await
    }

    /// Who did what across disputes, newest first, by actor, time window and event type (leads and admins;
    /// personal data left out as in a dispute's history). `first` is at most 500.
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn audit(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Whose events, when, which types; none: all.")] filter: Option<AuditFilter>,
        #[graphql(default = 50, desc = "Page size (at most 500).")] first: i32,
        #[graphql(desc = "The cursor to read from (an `endCursor`).")] after: Option<String>,
    ) -> async_graphql::Result<AuditConnection> {
        super::search::audit(ctx, filter, first, after).await
    }

    /// A bulk job's progress and item results: its requester, or a lead or admin; null if there is none.
    async fn bulk_job(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The job's id.")] id: ID,
    ) -> async_graphql::Result<Option<super::bulk::BulkJob>> {
        super::bulk::bulk_job(ctx, id).await
    }

    /// Messages Verdict sent to customers, sellers and assignees, newest first (customers masked for viewers).
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn mailbox(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "How many, newest first.")] first: i32,
    ) -> async_graphql::Result<Vec<super::mailbox::MailboxMessage>> {
        super::mailbox::recent(ctx, first).await
    }

    /// Steps that ran out of attempts or failed permanently, most recently failed first.
    #[graphql(complexity = "list_cost(first, child_complexity)")]
    async fn dead_lettered_steps(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "How many, newest first.")] first: i32,
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
        #[graphql(default = 50, desc = "How many, newest first.")] first: i32,
    ) -> async_graphql::Result<Vec<super::sellers::SellerRecovery>> {
        super::sellers::recoveries(ctx, first).await
    }

    /// Sellers' disputes against their orders over the last `days` days (default 90), highest rate first,
    /// those above the configured threshold flagged (leads and up).
    async fn seller_dispute_rates(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 90, desc = "The window, in days back from now.")] days: i32,
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
    async fn order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order number, or one of its payment references.")] reference: String,
    ) -> async_graphql::Result<Option<super::facts::Order>> {
        super::facts::order(ctx, reference).await
    }

    /// Dispute figures grouped by any combination of `groupBy` (none: one group per currency), computed in the
    /// database: counts, amounts per currency, outcomes, win rate, median time to resolution and deadline
    /// misses. Analysts and up; no personal data. At most 10,000 groups (narrow the filter or group by less).
    async fn dispute_patterns(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to group by; none: one group per currency.")] group_by: Vec<
            super::patterns::PatternDimension,
        >,
        #[graphql(desc = "Which disputes; none: all.")] filter: Option<super::patterns::PatternFilter>,
    ) -> async_graphql::Result<Vec<super::patterns::DisputePattern>> {
        super::patterns::dispute_patterns(ctx, group_by, filter).await
    }

    /// Each seller's and the whole marketplace's monthly ratio of disputes to orders against the Visa VAMP and
    /// Mastercard ECM thresholds (Verdict's reference data, with sources), flagged when a level is reached.
    /// Analysts and up.
    async fn dispute_monitoring(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which months and sellers; none: all.")] filter: Option<super::patterns::MonitoringFilter>,
    ) -> async_graphql::Result<Vec<super::patterns::MonitoringRatio>> {
        super::patterns::dispute_monitoring(ctx, filter).await
    }
}
