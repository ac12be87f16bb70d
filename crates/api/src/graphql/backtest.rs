//! Policy backtests in GraphQL: a lead starts one (a draft replayed against the active policy over the past N
//! months, as a background job), polls its progress and reads the result and the disputes that change.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::backtest::{Backtest, ChangedDispute, PolicyTally};
use verdict_engine::Engine;
use verdict_store::BacktestRecord;

use super::policy::{PolicyAction, PolicyAutonomy};
use super::query::principal;
use super::types::{MinorUnits, Queue};
use crate::auth::Role;
use crate::error::ApiError;

const MAX_CHANGES: i32 = 500;

/// A count under a key (a queue, an action).
#[derive(SimpleObject)]
pub struct KeyedCount {
    /// The queue or action, in snake case.
    pub key: String,
    /// How many disputes.
    pub count: u64,
}

/// An amount in one currency's minor units.
#[derive(SimpleObject)]
pub struct CurrencyAmount {
    /// ISO 4217.
    pub currency: String,
    /// Minor units (may be zero).
    pub minor_units: MinorUnits,
}

/// What one policy would have done over the disputes replayed.
#[derive(SimpleObject)]
pub struct BacktestTally {
    /// Disputes per queue.
    pub routed: Vec<KeyedCount>,
    /// Disputes per recommended action.
    pub actions: Vec<KeyedCount>,
    /// Disputes Verdict would have acted on alone.
    pub autonomous: u64,
    /// Disputes whose action would have waited for a lead's approval.
    pub approvals_needed: u64,
    /// Disputes a person works (not acted on alone): the analysts' workload.
    pub analyst_disputes: u64,
    /// Their analyst time, in minutes (`[policy] analyst_minutes` each).
    pub analyst_minutes: i64,
    /// Expected recovery of the disputes the policy defends, per currency.
    pub expected_recovery: Vec<CurrencyAmount>,
    /// What defending them costs (fees and analyst time), per currency.
    pub defense_cost: Vec<CurrencyAmount>,
}

impl From<PolicyTally> for BacktestTally {
    fn from(t: PolicyTally) -> Self {
        let counts = |m: std::collections::BTreeMap<String, u64>| {
            m.into_iter().map(|(key, count)| KeyedCount { key, count }).collect()
        };
        let amounts = |m: std::collections::BTreeMap<String, i64>| {
            m.into_iter()
                .map(|(currency, minor)| CurrencyAmount {
                    currency,
                    minor_units: MinorUnits(minor),
                })
                .collect()
        };
        Self {
            routed: counts(t.routed),
            actions: counts(t.actions),
            autonomous: t.autonomous,
            approvals_needed: t.approvals_needed,
            analyst_disputes: t.analyst_disputes,
            analyst_minutes: t.analyst_minutes,
            expected_recovery: amounts(t.expected_recovery),
            defense_cost: amounts(t.defense_cost),
        }
    }
}

/// The draft and the active policy side by side.
#[derive(SimpleObject)]
pub struct BacktestResult {
    /// Disputes replayed so far.
    pub disputes: u64,
    /// Disputes whose decision differs (queue, priority, action or autonomy).
    pub changed: u64,
    /// Disputes routed to another queue.
    pub routed_differently: u64,
    /// Disputes refunded under one policy and not the other.
    pub refunded_differently: u64,
    /// Disputes accepted under one policy and not the other.
    pub accepted_differently: u64,
    /// Disputes defended under one policy and not the other.
    pub defended_differently: u64,
    /// The active policy's figures.
    pub active: BacktestTally,
    /// The draft's figures.
    pub draft: BacktestTally,
}

/// One policy's decision on a changed dispute.
#[derive(SimpleObject)]
pub struct BacktestDecision {
    /// The rule that fired (`(no rule matched)` for the fallback).
    pub rule: String,
    /// The queue.
    pub queue: Queue,
    /// 1 (most urgent) to 5.
    pub priority: i32,
    /// The recommended action.
    pub action: PolicyAction,
    /// Whether Verdict would act alone.
    pub autonomy: PolicyAutonomy,
}

impl From<verdict_domain::Triage> for BacktestDecision {
    fn from(t: verdict_domain::Triage) -> Self {
        Self {
            rule: t.rule,
            queue: t.queue.into(),
            priority: i32::from(t.priority),
            action: t.action.into(),
            autonomy: match t.autonomy {
                verdict_domain::Autonomy::Manual => PolicyAutonomy::Manual,
                verdict_domain::Autonomy::Act => PolicyAutonomy::Act,
                verdict_domain::Autonomy::NeedsApproval { .. } => PolicyAutonomy::NeedsApproval,
            },
        }
    }
}

/// A dispute whose decision would change under the draft.
#[derive(SimpleObject)]
pub struct BacktestChange {
    /// The dispute.
    pub dispute_id: ID,
    /// What differs: `queue`, `priority`, `action`, `autonomy`.
    pub differences: Vec<String>,
    /// Under the active policy.
    pub active: BacktestDecision,
    /// Under the draft.
    pub draft: BacktestDecision,
}

/// A backtest: its progress, and once done its result and changed disputes.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PolicyBacktest {
    /// The backtest's id.
    pub id: ID,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// The active policy version it compares with (as it was when the backtest started).
    pub active_version: i64,
    /// The window: disputes opened in the last this many months.
    pub months: i32,
    /// The window's start.
    pub since: DateTime<Utc>,
    /// Triaged disputes in the window when it started.
    pub total: i64,
    /// Disputes replayed so far.
    pub processed: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// The lead who started it.
    pub created_by: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The figures so far (final once `status` is `done`).
    pub result: BacktestResult,
    /// The draft, as the lead wrote it.
    pub draft_source: String,
}

impl PolicyBacktest {
    fn from_record(r: BacktestRecord) -> Result<Self, ApiError> {
        let tally: Backtest = serde_json::from_value(r.tally.clone())
            .map_err(|e| ApiError::Internal(format!("backtest {}: {e}", r.id)))?;
        Ok(Self {
            id: ID(r.id.to_string()),
            status: r.status,
            active_version: r.active_version,
            months: r.months,
            since: r.since,
            total: r.total,
            processed: r.processed,
            error: r.error,
            created_by: r.created_by,
            created_at: r.created_at,
            finished_at: r.finished_at,
            result: BacktestResult {
                disputes: tally.disputes,
                changed: tally.changed,
                routed_differently: tally.routed_differently,
                refunded_differently: tally.refunded_differently,
                accepted_differently: tally.accepted_differently,
                defended_differently: tally.defended_differently,
                active: tally.active.into(),
                draft: tally.draft.into(),
            },
            draft_source: r.draft_source,
        })
    }
}

#[ComplexObject]
impl PolicyBacktest {
    /// The disputes whose decision changes, in id order, after the dispute id `after`.
    #[graphql(complexity = "first.max(0) as usize * child_complexity")]
    async fn changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, desc = "How many changed disputes (1 to the page cap).")] first: i32,
        #[graphql(desc = "Continue after this dispute id (the last one of the previous page).")] after: Option<ID>,
    ) -> async_graphql::Result<Vec<BacktestChange>> {
        if !(1..=MAX_CHANGES).contains(&first) {
            return Err(ApiError::InvalidInput(format!("first must be between 1 and {MAX_CHANGES}")).into());
        }
        let id = parse_uuid(&self.id)?;
        let after = after.as_ref().map(parse_uuid).transpose()?;
        let store = ctx.data::<Engine>()?.store();
        let rows = super::read(ctx, store.backtest_changes(id, after, first as u64)).await?;
        rows.into_iter()
            .map(|(dispute_id, change)| {
                let change: ChangedDispute = serde_json::from_value(change)
                    .map_err(|e| ApiError::Internal(format!("backtest change of {dispute_id}: {e}")))?;
                Ok(BacktestChange {
                    dispute_id: ID(dispute_id.to_string()),
                    differences: change.differences,
                    active: change.active.into(),
                    draft: change.draft.into(),
                })
            })
            .collect::<Result<_, ApiError>>()
            .map_err(Into::into)
    }
}

fn parse_uuid(id: &ID) -> Result<uuid::Uuid, ApiError> {
    id.as_str()
        .parse()
        .map_err(|_| ApiError::InvalidInput(format!("{:?} is not a backtest or dispute id", id.as_str())))
}

/// Backtest queries.
#[derive(Default)]
pub struct BacktestQuery;

#[Object]
impl BacktestQuery {
    /// A backtest, its progress and result (leads and up).
    async fn policy_backtest(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The backtest's id, as `startPolicyBacktest` answered it.")] id: ID,
    ) -> async_graphql::Result<Option<PolicyBacktest>> {
        principal(ctx, Role::Lead)?;
        let id = parse_uuid(&id)?;
        let store = ctx.data::<Engine>()?.store();
        Ok(super::read(ctx, store.backtest(id))
            .await?
            .map(PolicyBacktest::from_record)
            .transpose()?)
    }
}

/// A draft policy to replay over the past `months` months.
#[derive(InputObject)]
pub struct StartPolicyBacktestInput {
    /// The draft in TOML (validated as `savePolicy` does).
    pub source: String,
    /// The window: disputes opened in the last this many months (1 to 36).
    pub months: i32,
}

super::payloads::result_payload!(
    /// The backtest started (poll `policyBacktest(id)`), or why it was refused.
    StartPolicyBacktestPayload {
        /// The backtest, running; null when refused.
        backtest: PolicyBacktest
    }
);

/// Backtest mutations.
#[derive(Default)]
pub struct BacktestMutation;

#[Object]
impl BacktestMutation {
    /// Starts a backtest of a draft against the active policy (leads and up): a background job with no side
    /// effect, resumed after a restart.
    async fn start_policy_backtest(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft and the window of months.")] input: StartPolicyBacktestInput,
    ) -> async_graphql::Result<StartPolicyBacktestPayload> {
        super::payloads::payload(start_policy_backtest(ctx, input).await, "input")
    }
}

async fn start_policy_backtest(
    ctx: &Context<'_>,
    input: StartPolicyBacktestInput,
) -> async_graphql::Result<StartPolicyBacktestPayload> {
    let caller = principal(ctx, Role::Lead)?;
    let months =
        u32::try_from(input.months).map_err(|_| ApiError::InvalidInput("months must be between 1 and 36".into()))?;
    let engine = ctx.data::<Engine>()?;
    let record = engine
        .start_backtest(&input.source, months, &caller.actor().label())
        .await
        .map_err(ApiError::from)?;
    Ok(StartPolicyBacktestPayload::made(PolicyBacktest::from_record(record)?))
}
