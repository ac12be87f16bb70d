//! Bulk work: assign, transition or message a list of disputes (by id, or every dispute a filter matches),
//! each dispute's result reported on its own, so that one refused item never fails its neighbours.
//!
//! Each item goes through the same function, domain command and authorization as the single mutation
//! (`assignDispute`, `transitionDispute`, `messageCustomer`/`messageSeller`) and records its events with the
//! caller as actor. Up to [`INLINE_LIMIT`] disputes run inside the request; more become a bulk job that the
//! workers process in batches ([`run_bulk_jobs`]), whose progress `bulkJob` reports and which resumes after a
//! restart where it stopped.

use std::time::Duration as StdDuration;

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use verdict_domain::{self as domain, Action, Command, DisputeId};
use verdict_engine::Engine;
use verdict_store::{BulkItemResult, BulkJobRecord, BulkProgress, NewBulkJob, PageWindow, SortDirection};

use super::payloads::ErrorCode;
use super::query::{parse_id, principal};
use super::search::DisputeFilter;
use super::types::{DisputeStatus, Locale};
use crate::auth::{Principal, PrincipalKind, Role};
use crate::error::ApiError;

/// Disputes a bulk action works through inside the request; more become a job.
pub const INLINE_LIMIT: usize = 100;

/// The most disputes one bulk action may cover.
pub const MAX_BULK: usize = 50_000;

/// Items a job's worker runs before writing their results and renewing its lease.
const JOB_BATCH: u64 = 100;

/// How long a worker holds a job between batches; another takes over once it lapses.
const JOB_LEASE_SECONDS: i64 = 60;

/// How often an idle worker looks for a job another replica created (one created here wakes it at once).
const JOB_POLL: StdDuration = StdDuration::from_secs(30);
/// How soon a worker tries again after failing to read or work a job (the database was away).
const RETRY_AFTER_ERROR: StdDuration = StdDuration::from_secs(2);

/// What a bulk action does to each dispute; stored with a job, so it is plain data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BulkAction {
    Assign {
        assignee: Option<String>,
        reason: Option<String>,
    },
    Transition {
        to: domain::Status,
        reason: String,
    },
    Message {
        template: domain::MessageTemplate,
        text: Option<String>,
        locale: Option<domain::Locale>,
    },
}

impl BulkAction {
    fn name(&self) -> &'static str {
        match self {
            BulkAction::Assign { .. } => "assign",
            BulkAction::Transition { .. } => "transition",
            BulkAction::Message { .. } => "message",
        }
    }
}

/// How one dispute of a bulk action ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum BulkOutcome {
    /// Done.
    Ok,
    /// The dispute changed meanwhile, or is not as the action expects (e.g. someone else's): nothing written.
    Conflict,
    /// The caller's role or the dispute's state does not allow it: nothing written.
    NotAllowed,
    /// Anything else (not found, bad input, an internal error): nothing written.
    Error,
}

impl BulkOutcome {
    fn as_str(self) -> &'static str {
        match self {
            BulkOutcome::Ok => "ok",
            BulkOutcome::Conflict => "conflict",
            BulkOutcome::NotAllowed => "not_allowed",
            BulkOutcome::Error => "error",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Ok, Self::Conflict, Self::NotAllowed, Self::Error]
            .into_iter()
            .find(|o| o.as_str() == text)
    }

    fn of(err: &ApiError) -> Self {
        match err {
            ApiError::VersionConflict(_) => BulkOutcome::Conflict,
            ApiError::Forbidden(_) | ApiError::IllegalTransition(_) => BulkOutcome::NotAllowed,
            _ => BulkOutcome::Error,
        }
    }
}

/// One dispute's result.
#[derive(SimpleObject, Debug, Clone)]
pub struct BulkItem {
    /// The dispute.
    pub dispute_id: ID,
    /// Null while a job has not reached the dispute.
    pub outcome: Option<BulkOutcome>,
    /// The code the single mutation would have answered (as a user error or a GraphQL error); null when the
    /// item went through or has not run yet.
    pub code: Option<ErrorCode>,
    /// What went wrong, for people.
    pub message: Option<String>,
}

/// Which disputes: `ids`, or every dispute `filter` matches (the `disputes` query's filter); not both.
#[derive(InputObject, Default)]
pub struct BulkTarget {
    /// At most 50,000.
    pub ids: Option<Vec<ID>>,
    /// Every dispute it matches when the action is asked for (at most 50,000).
    pub filter: Option<DisputeFilter>,
}

/// Assign (leads), or take or release (analysts, for themselves), many disputes.
#[derive(InputObject)]
pub struct BulkAssignInput {
    /// Which disputes.
    pub target: BulkTarget,
    /// Null unassigns.
    pub assignee: Option<String>,
    /// Why, recorded on each event.
    pub reason: Option<String>,
}

/// A lead's correction of many disputes to one status.
#[derive(InputObject)]
pub struct BulkTransitionInput {
    /// Which disputes.
    pub target: BulkTarget,
    /// The status to correct them to.
    pub to: DisputeStatus,
    /// Why, recorded on each event.
    pub reason: String,
}

/// The templates a bulk message may use, to the customer or to the seller.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::MessageTemplate")]
pub enum BulkMessageTemplate {
    /// To the customer: the dispute is being looked at.
    CustomerCaseUpdate,
    /// To the customer: what happened, and an offer to settle it.
    CustomerRequestInformation,
    /// To the seller: the proof the defense needs.
    SellerRequestEvidence,
    /// To the seller: where the dispute stands.
    SellerCaseUpdate,
}

/// The same message to the customer or seller of many disputes.
#[derive(InputObject)]
pub struct BulkMessageInput {
    /// Which disputes.
    pub target: BulkTarget,
    /// What to send.
    pub template: BulkMessageTemplate,
    /// Free text placed in the template (at most 4,000 characters).
    pub text: Option<String>,
    /// Defaults to each customer's language (English for sellers).
    pub locale: Option<Locale>,
}

/// A bulk action's answer: every item's result when it ran inline, else the job working through them.
#[derive(SimpleObject)]
pub struct BulkActionPayload {
    /// Each dispute's result, in the order given (inline runs only).
    pub results: Option<Vec<BulkItem>>,
    /// The job, when the set was too large to run inline.
    pub job: Option<BulkJob>,
    /// Why the whole action was refused (a malformed target, too many disputes); each dispute's own refusal
    /// is in its result instead.
    pub user_errors: Vec<super::payloads::UserError>,
}

impl super::payloads::Refusable for BulkActionPayload {
    fn refused(user_errors: Vec<super::payloads::UserError>) -> Self {
        Self {
            results: None,
            job: None,
            user_errors,
        }
    }
}

/// Whether a job is still working.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum BulkJobStatus {
    /// Items are still being worked through.
    Running,
    /// Every item has its result.
    Done,
}

/// What a bulk job does to each dispute, named after its mutation.
#[derive(Enum, serde::Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum BulkActionKind {
    /// `bulkAssign`.
    Assign,
    /// `bulkTransition`.
    Transition,
    /// `bulkMessage`.
    Message,
}

/// A bulk action running (or run) as a job.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct BulkJob {
    /// The job's id (`bulkJob` takes it).
    pub id: ID,
    /// What it does to each dispute.
    pub action: BulkActionKind,
    /// Who asked for it (the actor of its events).
    pub requested_by: String,
    /// Whether it is still working.
    pub status: BulkJobStatus,
    /// Disputes in the job.
    pub total: i64,
    /// Items with a result so far.
    pub processed: i64,
    /// Items done.
    pub succeeded: i64,
    /// Items refused as CONFLICT.
    pub conflicts: i64,
    /// Items refused as NOT_ALLOWED.
    pub not_allowed: i64,
    /// Items that failed otherwise.
    pub errors: i64,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it last progressed.
    pub updated_at: DateTime<Utc>,
    /// When the last item got its result.
    pub finished_at: Option<DateTime<Utc>>,
}

#[ComplexObject]
impl BulkJob {
    /// Item results in order, after the position `after` (a number from an earlier page's `position`);
    /// `failuresOnly` leaves out the successes and the items not reached yet. At most 500.
    async fn items(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, desc = "How many (at most 500).")] first: i32,
        #[graphql(desc = "The position to read after.")] after: Option<i32>,
        #[graphql(default = false, desc = "Only the refused and failed items.")] failures_only: bool,
    ) -> async_graphql::Result<Vec<BulkJobItem>> {
        if !(0..=super::search::MAX_PAGE).contains(&first) {
            return Err(
                ApiError::InvalidInput(format!("first must be between 0 and {}", super::search::MAX_PAGE)).into(),
            );
        }
        let id: Uuid = self
            .id
            .parse()
            .map_err(|_| ApiError::Internal("a job id that is no uuid".into()))?;
        let engine = ctx.data::<Engine>()?;
        let items = super::read(
            ctx,
            engine.store().bulk_job_items(id, failures_only, first as u64, after),
        )
        .await?;
        Ok(items.into_iter().map(BulkJobItem::from).collect())
    }
}

/// One item of a job: its position and result.
#[derive(SimpleObject)]
pub struct BulkJobItem {
    /// The item's place in the job (pass the last one as `after` for the next page).
    pub position: i32,
    /// Its result.
    pub result: BulkItem,
}

impl From<BulkItemResult> for BulkJobItem {
    fn from(r: BulkItemResult) -> Self {
        Self {
            position: r.position,
            result: BulkItem {
                dispute_id: ID(r.dispute_id.to_string()),
                outcome: r.outcome.as_deref().and_then(BulkOutcome::parse),
                // Written by `result_of` as the code's name; a name no longer known reads as INTERNAL.
                code: r
                    .code
                    .as_deref()
                    .map(|c| ErrorCode::parse(c).unwrap_or(ErrorCode::Internal)),
                message: r.message,
            },
        }
    }
}

fn job_view(job: BulkJobRecord, progress: BulkProgress) -> Result<BulkJob, ApiError> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(BulkJob {
        id: ID(job.id.to_string()),
        action: super::enums::label(&job.action, "bulk action")?,
        requested_by: job.actor_name,
        status: if job.status == verdict_store::BULK_DONE {
            BulkJobStatus::Done
        } else {
            BulkJobStatus::Running
        },
        total: job.total,
        processed: count(progress.processed()),
        succeeded: count(progress.ok),
        conflicts: count(progress.conflict),
        not_allowed: count(progress.not_allowed),
        errors: count(progress.error),
        created_at: job.created_at,
        updated_at: job.updated_at,
        finished_at: job.finished_at,
    })
}

/// Runs `action` on one dispute as `caller`, as the single mutation would.
pub(crate) async fn apply(
    engine: &Engine,
    caller: &Principal,
    action: &BulkAction,
    id: DisputeId,
) -> Result<(), ApiError> {
    match action {
        BulkAction::Assign { assignee, reason } => {
            caller.require(Role::Analyst)?;
            super::mutation::assign(
                engine,
                caller,
                id,
                assignee.clone(),
                reason.clone(),
                MaybeUndefined::Undefined,
                None,
            )
            .await?;
        }
        BulkAction::Transition { to, reason } => {
            caller.require(Role::Analyst)?;
            // The version read now: a change committed between this read and the commit is a conflict.
            let current = engine
                .store()
                .load(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
            let command =
                super::mutation::transition_command(caller, *to, reason.clone(), current.version, None, None)?;
            engine.handle(id, command).await?;
        }
        BulkAction::Message { template, text, locale } => {
            caller.require(Role::Analyst)?;
            let action = Action::SendMessage {
                template: *template,
                text: text.clone(),
                locale: *locale,
            };
            engine.handle(id, Command::new(caller.actor(), action)).await?;
        }
    }
    Ok(())
}

fn result_of(outcome: Result<(), ApiError>) -> (BulkOutcome, Option<ErrorCode>, Option<String>) {
    match outcome {
        Ok(()) => (BulkOutcome::Ok, None, None),
        Err(err) => (BulkOutcome::of(&err), Some(err.error_code()), Some(err.message())),
    }
}

/// The disputes a target names, in order, checked for size.
async fn resolve(engine: &Engine, caller: &Principal, target: &BulkTarget) -> Result<Vec<Uuid>, ApiError> {
    match (&target.ids, &target.filter) {
        (Some(ids), None) => {
            if ids.len() > MAX_BULK {
                return Err(ApiError::InvalidInput(format!(
                    "a bulk action covers at most {MAX_BULK} disputes"
                )));
            }
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let id = parse_id(id)?.as_uuid();
                if seen.insert(id) {
                    out.push(id);
                }
            }
            Ok(out)
        }
        (None, Some(filter)) => {
            let filter = filter.to_store(caller, engine.timing())?;
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let window = PageWindow::Forward {
                    first: super::search::MAX_PAGE as u64,
                    after,
                };
                let page = engine
                    .store()
                    .search(
                        &filter,
                        verdict_store::DisputeSort::DueBy,
                        SortDirection::Ascending,
                        window,
                    )
                    .await?;
                after = page.items.last().map(|(c, _)| *c);
                out.extend(page.items.iter().map(|(_, d)| d.id.as_uuid()));
                if out.len() > MAX_BULK {
                    return Err(ApiError::InvalidInput(format!(
                        "the filter matches more than {MAX_BULK} disputes, the most a bulk action covers: narrow it"
                    )));
                }
                if !page.has_next_page {
                    return Ok(out);
                }
            }
        }
        _ => Err(ApiError::InvalidInput(
            "a bulk target is `ids` or `filter`, exactly one".into(),
        )),
    }
}

/// Runs a bulk action: inline for small sets, else as a job.
async fn run(
    ctx: &Context<'_>,
    caller: &Principal,
    target: BulkTarget,
    action: BulkAction,
) -> async_graphql::Result<BulkActionPayload> {
    let engine = ctx.data::<Engine>()?;
    let ids = resolve(engine, caller, &target).await?;
    if ids.len() <= INLINE_LIMIT {
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let (outcome, code, message) = result_of(apply(engine, caller, &action, DisputeId::from_uuid(id)).await);
            results.push(BulkItem {
                dispute_id: ID(id.to_string()),
                outcome: Some(outcome),
                code,
                message,
            });
        }
        return Ok(BulkActionPayload {
            results: Some(results),
            job: None,
            user_errors: Vec::new(),
        });
    }
    let job = NewBulkJob {
        id: Uuid::now_v7(),
        action: action.name().to_owned(),
        input: serde_json::to_value(&action).map_err(|e| ApiError::Internal(e.to_string()))?,
        actor_name: caller.name.clone(),
        actor_role: caller.role.as_str().to_owned(),
        actor_kind: match caller.kind {
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::User => "user",
        }
        .to_owned(),
        dispute_ids: ids,
        now: engine.clock().now(),
    };
    engine.store().create_bulk_job(&job).await.map_err(ApiError::from)?;
    let (record, progress) = engine
        .store()
        .bulk_job(job.id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::Internal("a job just created is missing".into()))?;
    Ok(BulkActionPayload {
        results: None,
        job: Some(job_view(record, progress)?),
        user_errors: Vec::new(),
    })
}

fn text_field(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > 4000 => {
            Err(ApiError::InvalidInput(format!("{name} is at most 4,000 characters")))
        }
        other => Ok(other),
    }
}

#[derive(Default)]
pub struct BulkMutation;

#[Object]
impl BulkMutation {
    /// Assigns many disputes, each as `assignDispute` would (analysts: take unassigned ones for themselves or
    /// release their own; leads: anyone). Each dispute's result is reported; a refused one changes nothing and
    /// never stops the others. More than 100 disputes run as a job (see `bulkJob`).
    async fn bulk_assign(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The disputes and the assignee.")] input: BulkAssignInput,
    ) -> async_graphql::Result<BulkActionPayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let action = BulkAction::Assign {
                assignee: input.assignee.map(|a| a.trim().to_owned()),
                reason: text_field("reason", input.reason)?,
            };
            run(ctx, caller, input.target, action).await
        };
        super::payloads::payload(result.await, "input")
    }

    /// A lead's correction of many disputes to one status, each as `transitionDispute` would at the dispute's
    /// current version (an outcome is an override). Leads and admins.
    async fn bulk_transition(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The disputes, the status, and why.")] input: BulkTransitionInput,
    ) -> async_graphql::Result<BulkActionPayload> {
        let result = async {
            let caller = principal(ctx, Role::Lead)?;
            if input.reason.trim().is_empty() {
                return Err(ApiError::InvalidInput("a correction needs a reason".into()).into());
            }
            let action = BulkAction::Transition {
                to: input.to.into(),
                reason: text_field("reason", Some(input.reason))?.unwrap_or_default(),
            };
            run(ctx, caller, input.target, action).await
        };
        super::payloads::payload(result.await, "input")
    }

    /// Sends one template to the customer or seller of many disputes, each as `messageCustomer` or
    /// `messageSeller` would. Analysts and above.
    async fn bulk_message(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The disputes, the template and the text.")] input: BulkMessageInput,
    ) -> async_graphql::Result<BulkActionPayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let action = BulkAction::Message {
                template: input.template.into(),
                text: text_field("text", input.text)?,
                locale: input.locale.map(Into::into),
            };
            run(ctx, caller, input.target, action).await
        };
        super::payloads::payload(result.await, "input")
    }
}

/// The `bulkJob` query: its requester, or a lead or admin.
pub(crate) async fn bulk_job(ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<BulkJob>> {
    let caller = principal(ctx, Role::Analyst)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::InvalidInput(format!("{:?} is not a bulk job id", id.as_str())))?;
    let engine = ctx.data::<Engine>()?;
    let Some((job, progress)) = super::read(ctx, engine.store().bulk_job(id)).await? else {
        return Ok(None);
    };
    if job.actor_name != caller.name && caller.role < Role::Lead {
        return Err(ApiError::Forbidden("only its requester, a lead or an admin may read a bulk job".into()).into());
    }
    Ok(Some(job_view(job, progress)?))
}

/// Works through bulk jobs until `stop` turns true: takes a job's lease, runs its next batch of items as the
/// requester, records their results with the lease renewed, and marks the job done when nothing is left. A
/// stop lets the running batch finish and record, then releases the job for the next replica or start.
pub async fn run_bulk_jobs(engine: Engine, worker: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let added = engine.store().bulk_jobs_added();
    while !*stop.borrow() {
        let wait = match work_one_job(&engine, &worker, &stop).await {
            Ok(true) => continue,
            Ok(false) => JOB_POLL,
            Err(err) => {
                tracing::warn!(error = %err.message(), "working a bulk job failed; retrying");
                RETRY_AFTER_ERROR
            }
        };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = added.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One job's batches, if a job is free, until it is done or a stop is asked; whether there was one.
async fn work_one_job(
    engine: &Engine,
    worker: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<bool, ApiError> {
    let lease = Duration::seconds(JOB_LEASE_SECONDS);
    let store = engine.store();
    let Some(job) = store.claim_bulk_job(worker, engine.clock().now(), lease).await? else {
        return Ok(false);
    };
    let action: BulkAction = serde_json::from_value(job.input.clone())
        .map_err(|e| ApiError::Internal(format!("bulk job {} has an unreadable action: {e}", job.id)))?;
    let caller = Principal {
        name: job.actor_name.clone(),
        role: job
            .actor_role
            .parse()
            .map_err(|_| ApiError::Internal(format!("bulk job {} has a bad role", job.id)))?,
        kind: match job.actor_kind.as_str() {
            "user" => PrincipalKind::User,
            _ => PrincipalKind::ApiKey,
        },
    };
    loop {
        if *stop.borrow() {
            store.release_bulk_job(job.id, worker).await?;
            return Ok(true);
        }
        let items = store.bulk_items_left(job.id, JOB_BATCH).await?;
        if items.is_empty() {
            store.finish_bulk_job(job.id, worker, engine.clock().now()).await?;
            return Ok(true);
        }
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let outcome = apply(engine, &caller, &action, DisputeId::from_uuid(item.dispute_id)).await;
            let (outcome, code, message) = result_of(outcome);
            results.push(BulkItemResult {
                outcome: Some(outcome.as_str().to_owned()),
                code: code.map(|c| c.name().to_owned()),
                message,
                ..item
            });
        }
        if !store
            .record_bulk_results(job.id, worker, &results, engine.clock().now(), lease)
            .await?
        {
            tracing::warn!(job = %job.id, "lost the lease of a bulk job; another worker goes on with it");
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_survive_storage_in_a_job() {
        for action in [
            BulkAction::Assign {
                assignee: Some("jane".into()),
                reason: None,
            },
            BulkAction::Transition {
                to: domain::Status::Triaged,
                reason: "batch fix".into(),
            },
            BulkAction::Message {
                template: domain::MessageTemplate::SellerCaseUpdate,
                text: Some("hello".into()),
                locale: Some(domain::Locale::Fr),
            },
        ] {
            let stored = serde_json::to_value(&action).unwrap_or_default();
            assert_eq!(serde_json::from_value::<BulkAction>(stored).ok(), Some(action));
        }
    }

    #[test]
    fn errors_map_to_outcomes() {
        assert_eq!(
            BulkOutcome::of(&ApiError::VersionConflict(String::new())),
            BulkOutcome::Conflict
        );
        assert_eq!(
            BulkOutcome::of(&ApiError::Forbidden(String::new())),
            BulkOutcome::NotAllowed
        );
        assert_eq!(
            BulkOutcome::of(&ApiError::IllegalTransition(String::new())),
            BulkOutcome::NotAllowed
        );
        assert_eq!(BulkOutcome::of(&ApiError::NotFound(String::new())), BulkOutcome::Error);
        for outcome in [
            BulkOutcome::Ok,
            BulkOutcome::Conflict,
            BulkOutcome::NotAllowed,
            BulkOutcome::Error,
        ] {
            assert_eq!(BulkOutcome::parse(outcome.as_str()), Some(outcome));
        }
    }
}
