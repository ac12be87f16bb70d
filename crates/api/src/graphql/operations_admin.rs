//! Operations in GraphQL: dead-lettered steps, and the lead's retry and cancel of a step; API keys listed
//! and revoked by admins.

use async_graphql::{Context, ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use verdict_engine::Engine;
use verdict_store::{ApiKeyRecord, StepRow};

use crate::auth::Role;
use crate::error::ApiError;
use crate::graphql::query::principal;

const MAX_STEPS: i32 = 500;

super::payloads::result_payload!(
    /// The step back in the queue.
    RetryStepPayload {
        /// The step as it now stands.
        step: StepDetail
    }
);

super::payloads::result_payload!(
    /// The step given up.
    CancelStepPayload {
        /// The step as it now stands.
        step: StepDetail
    }
);

super::payloads::result_payload!(
    /// The key revoked.
    RevokeApiKeyPayload {
        /// The key, with when it was revoked.
        api_key: ApiKey
    }
);

/// A side effect a worker performs (a processor call, a message, a notice), with its queue details.
#[derive(SimpleObject)]
pub struct StepDetail {
    /// The step's id.
    pub id: ID,
    /// The dispute it belongs to.
    pub dispute_id: Option<ID>,
    /// What it does.
    pub kind: super::enums::StepKind,
    /// What the outside system sees; a retry never performs the step a second time.
    pub idempotency_key: String,
    /// Where it stands.
    pub status: super::enums::StepStatus,
    /// Tries so far.
    pub attempts: i32,
    /// Tries before it is dead-lettered.
    pub max_attempts: i32,
    /// When a worker tries it next.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last try failed (statuses and codes only, never personal data).
    pub last_error: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<StepRow> for StepDetail {
    type Error = ApiError;

    fn try_from(row: StepRow) -> Result<Self, ApiError> {
        let kind: verdict_domain::StepKind = super::enums::label(&row.kind, "step kind")?;
        Ok(Self {
            id: ID(row.id.to_string()),
            dispute_id: row.dispute_id.map(|d| ID(d.to_string())),
            kind: kind.into(),
            idempotency_key: row.idempotency_key,
            status: super::enums::label(&row.status, "step status")?,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            updated_at: row.updated_at,
        })
    }
}

fn step_id(id: &ID) -> Result<Uuid, ApiError> {
    id.as_str()
        .trim()
        .parse()
        .map_err(|_| ApiError::InvalidInput(format!("{:?} is not a step id", id.as_str())))
}

/// Dead-lettered steps, most recently failed first (analysts and up).
pub async fn dead_lettered(ctx: &Context<'_>, first: i32) -> async_graphql::Result<Vec<StepDetail>> {
    principal(ctx, Role::Analyst)?;
    if !(1..=MAX_STEPS).contains(&first) {
        return Err(ApiError::InvalidInput(format!("first must be between 1 and {MAX_STEPS}")).into());
    }
    let engine = ctx.data::<Engine>()?;
    let rows = engine.store().dead_steps(first as u64).await.map_err(ApiError::from)?;
    Ok(super::types::views(rows)?)
}

/// How long Adyen keeps an idempotency key (at least 31 days, its API documentation says), less a day's margin.
/// Adyen cannot be asked whether a refund or an acceptance already happened, so after this a retry could act
/// twice.
pub const ADYEN_IDEMPOTENCY_DAYS: i64 = 30;

/// Puts a dead step back in the queue with fresh attempts (lead only). An Adyen refund or acceptance older than
/// Adyen's idempotency window is retried only when the lead confirms having checked at Adyen that it did not
/// happen (`confirmed_not_at_processor`): nothing else can keep it from paying twice.
pub async fn retry(ctx: &Context<'_>, id: ID, confirmed_not_at_processor: bool) -> async_graphql::Result<StepDetail> {
    principal(ctx, Role::Lead)?;
    if !confirmed_not_at_processor {
        let engine = ctx.data::<Engine>()?;
        let step = step_id(&id)?;
        if let Some(row) = engine.store().step_row(step).await.map_err(ApiError::from)?
            && matches!(row.kind.as_str(), "refund" | "accept_at_processor")
            && engine.clock().now() - row.created_at > chrono::Duration::days(ADYEN_IDEMPOTENCY_DAYS)
            && let Some(dispute_id) = row.dispute_id
            && let Some(dispute) = engine
                .store()
                .load(verdict_domain::DisputeId::from_uuid(dispute_id))
                .await
                .map_err(ApiError::from)?
            && dispute.processor == verdict_domain::Processor::Adyen
        {
            return Err(ApiError::IllegalTransition(format!(
                "this Adyen {} step is older than Adyen's {ADYEN_IDEMPOTENCY_DAYS}-day idempotency window and Adyen \
                 cannot be asked whether it already happened: check in Adyen's Customer Area, then retry with \
                 confirmedNotAtProcessor: true",
                row.kind
            ))
            .into());
        }
    }
    change(ctx, id, true).await
}

/// Gives up on a pending or dead step (lead only).
pub async fn cancel(ctx: &Context<'_>, id: ID) -> async_graphql::Result<StepDetail> {
    change(ctx, id, false).await
}

async fn change(ctx: &Context<'_>, id: ID, retry: bool) -> async_graphql::Result<StepDetail> {
    let caller = principal(ctx, Role::Lead)?;
    let id = step_id(&id)?;
    let engine = ctx.data::<Engine>()?;
    let store = engine.store();
    let now = engine.clock().now();
    let changed = if retry {
        store.retry_step(id, now).await
    } else {
        store.cancel_step(id, now).await
    }
    .map_err(ApiError::from)?;
    let row = store
        .step_row(id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("step {id} not found")))?;
    if !changed && !retry && row.is_running(now) {
        return Err(ApiError::IllegalTransition(
            "the step is running: it cannot be cancelled while it may be completing; cancel it once this attempt \
             has ended"
                .to_owned(),
        )
        .into());
    }
    if !changed {
        let verb = if retry {
            "retried (only dead steps are)"
        } else {
            "cancelled"
        };
        return Err(ApiError::IllegalTransition(format!("a {} step cannot be {verb}", row.status)).into());
    }
    tracing::info!(step_id = %id, by = %caller.name, retry, "step changed by hand");
    Ok(StepDetail::try_from(row)?)
}

/// An API key as admins see it: never its token, nor the token's hash.
#[derive(SimpleObject)]
pub struct ApiKey {
    /// The key's id.
    pub id: ID,
    /// The actor name its events carry (`analyst:NAME`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Set once revoked: its token is refused from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRecord> for ApiKey {
    type Error = ApiError;
    fn try_from(key: ApiKeyRecord) -> Result<Self, ApiError> {
        let role = key
            .role
            .parse()
            .map_err(|_| ApiError::Internal(format!("key {} has a bad role", key.name)))?;
        Ok(Self {
            id: ID(key.id.to_string()),
            name: key.name,
            role,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        })
    }
}

/// The key to revoke: by `id` or by `name`, exactly one.
#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    /// The key's id.
    pub id: Option<ID>,
    /// The key's name.
    pub name: Option<String>,
}

/// Every API key, revoked ones included, oldest first (admins only).
pub async fn api_keys(ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
    principal(ctx, Role::Admin)?;
    let engine = ctx.data::<Engine>()?;
    let keys = crate::auth::list_api_keys(engine.store()).await?;
    Ok(keys.into_iter().map(ApiKey::try_from).collect::<Result<_, _>>()?)
}

/// Revokes a key (admins only); revoking a revoked key changes nothing and answers its first revocation.
pub async fn revoke_api_key(ctx: &Context<'_>, input: RevokeApiKeyInput) -> async_graphql::Result<ApiKey> {
    let caller = principal(ctx, Role::Admin)?;
    let which = crate::auth::key_selector(input.id.as_ref().map(|id| id.as_str()), input.name.as_deref())?;
    let engine = ctx.data::<Engine>()?;
    let (key, revoked_now) = crate::auth::revoke_api_key(engine.store(), &which, engine.clock().now()).await?;
    if revoked_now {
        tracing::info!(key = %key.name, by = %caller.name, "API key revoked");
    }
    Ok(ApiKey::try_from(key)?)
}
