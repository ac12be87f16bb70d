//! The triage policy in GraphQL: versions leads save (TOML, validated) and activate, each dispute's triage and
//! economics, and the approvals leads give before the policy acts above its limit.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::{self as domain, Policy};
use verdict_engine::{Engine, EngineError};
use verdict_store::{
    APPROVAL_APPROVED, APPROVAL_PENDING, APPROVAL_REJECTED, ApprovalRecord, PolicyVersionRecord, StoreError,
};

use super::query::principal;
use super::types::{Dispute, Money, Queue};
use crate::auth::Role;
use crate::error::ApiError;

const MAX_LIST: i32 = 500;
/// The longest policy source accepted (TOML); a policy holds at most 200 rules.
const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// A stored version of the triage policy (version 0 is the built-in default, active until a lead activates one).
#[derive(SimpleObject)]
pub struct PolicyVersion {
    /// 1, 2, ... in the order saved; 0 for the built-in default.
    pub version: i64,
    /// Whether triage applies this version now; exactly one version is active.
    pub active: bool,
    /// The policy as the lead saved it (TOML).
    pub source: String,
    /// The policy exported as TOML in Verdict's own layout (reads back to the same policy).
    pub toml: String,
    /// How many rules the policy holds, in the order they are tried.
    pub rule_count: i32,
    /// What the lead said about this version.
    pub note: Option<String>,
    /// Who saved it (`analyst:NAME` for keys and people alike); `system` for the built-in default.
    pub created_by: String,
    /// When it was saved.
    pub created_at: Option<DateTime<Utc>>,
    /// Who activated it last.
    pub activated_by: Option<String>,
    /// When it was activated last.
    pub activated_at: Option<DateTime<Utc>>,
}

impl PolicyVersion {
    fn from_record(record: PolicyVersionRecord) -> Result<Self, ApiError> {
        let policy = Policy::from_toml(&record.source)
            .map_err(|e| ApiError::Internal(format!("stored policy version {}: {e}", record.version)))?;
        Ok(Self {
            version: record.version,
            active: record.active,
            toml: policy.to_toml(),
            rule_count: i32::try_from(policy.rules.len()).unwrap_or(i32::MAX),
            source: record.source,
            note: record.note,
            created_by: record.created_by,
            created_at: Some(record.created_at),
            activated_by: record.activated_by,
            activated_at: record.activated_at,
        })
    }

    fn builtin(active: bool) -> Self {
        let policy = Policy::builtin_default();
        let toml = policy.to_toml();
        Self {
            version: 0,
            active,
            source: toml.clone(),
            toml,
            rule_count: i32::try_from(policy.rules.len()).unwrap_or(i32::MAX),
            note: policy.description,
            created_by: "system".into(),
            created_at: None,
            activated_by: None,
            activated_at: None,
        }
    }
}

/// What a triage rule recommends doing with a dispute.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PolicyAction {
    /// Gather the evidence and submit a defense.
    Defend,
    /// Accept liability at the processor.
    Accept,
    /// Refund the inquiry or pre-dispute alert, resolving it.
    Refund,
    /// Ask the seller for what only the seller has.
    AskSeller,
    /// Ask the customer to withdraw the dispute (delivery is proven).
    AskWithdrawal,
    /// Hand the dispute to a lead.
    Escalate,
}

impl From<domain::RecommendedAction> for PolicyAction {
    fn from(a: domain::RecommendedAction) -> Self {
        match a {
            domain::RecommendedAction::Defend => PolicyAction::Defend,
            domain::RecommendedAction::Accept => PolicyAction::Accept,
            domain::RecommendedAction::Refund => PolicyAction::Refund,
            domain::RecommendedAction::AskSeller => PolicyAction::AskSeller,
            domain::RecommendedAction::AskWithdrawal => PolicyAction::AskWithdrawal,
            domain::RecommendedAction::Escalate => PolicyAction::Escalate,
        }
    }
}

/// Whether Verdict may perform a rule's recommended action itself.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PolicyAutonomy {
    /// A person acts.
    Manual,
    /// Verdict acts alone (the amount is within the rule's limit).
    Act,
    /// Verdict would act, but the amount is above the rule's limit: a lead approves first.
    NeedsApproval,
}

/// One value a triage rule read, by condition.
#[derive(SimpleObject)]
pub struct TriageReading {
    /// The condition's field (`category`, `amount_minor`, `delivered`, ...).
    pub field: String,
    /// The dispute's value, as the rule read it.
    pub value: String,
}

/// The triage policy's last decision on a dispute and why.
#[derive(SimpleObject)]
pub struct DisputeTriage {
    /// The policy version applied (0: the built-in default); the event's actor is `policy:VERSION`.
    pub policy_version: i64,
    /// The rule that fired (1-based); null when no rule matched and the fallback decided.
    pub rule_index: Option<i32>,
    /// The rule's name.
    pub rule: String,
    /// The queue the dispute goes to.
    pub queue: Queue,
    /// 1 (most urgent) to 5.
    pub priority: i32,
    /// What the rule recommends.
    pub recommended_action: PolicyAction,
    /// Whether Verdict may act alone.
    pub autonomy: PolicyAutonomy,
    /// The rule's limit for acting alone, in minor units of the dispute's currency.
    pub autonomy_limit_minor_units: Option<i64>,
    /// The values the rule read.
    pub read: Vec<TriageReading>,
    /// Why, in a sentence.
    pub why: String,
    /// The evidence completeness score the run read (0 to 100).
    pub evidence_score: i32,
    /// When the triage last ran (a run that decided the same records no event).
    pub decided_at: DateTime<Utc>,
    /// Why the dispute has no economics (`economics` is then null): no cost of defending is configured for its
    /// currency. Null when it has them.
    pub economics_unavailable: Option<String>,
}

/// What defending a dispute is worth, as its last triage computed it.
#[derive(SimpleObject)]
pub struct DisputeEconomics {
    /// The win rate used, in basis points (10,000 = always won).
    pub win_rate_basis_points: i32,
    /// `observed` (enough decided disputes of this reason category, processor and evidence band) or `prior`.
    pub win_rate_basis: String,
    /// Decided disputes like this one so far.
    pub decided: i32,
    /// Won among them.
    pub won: i32,
    /// Amount times win rate.
    pub expected_recovery: Money,
    /// The processor's dispute fee plus analyst time.
    pub defense_cost: Money,
    /// The processor's dispute fee in the dispute's currency (`[policy.costs.CODE]`); null for a triage run
    /// recorded before costs were configured per currency.
    pub processor_fee: Option<Money>,
    /// The analyst's time in the dispute's currency; null likewise.
    pub analyst_cost: Option<Money>,
    /// What the seller repays when the dispute is lost or accepted (zero unless the seller owns it).
    pub seller_recoverable: Money,
    /// Expected cost of accepting: the amount less what the seller repays.
    pub accept_cost: Money,
    /// Expected cost of defending: its cost plus the unrecovered exposure when lost.
    pub defend_cost: Money,
    /// Accepting is expected to cost less than defending.
    pub cheaper_to_accept: bool,
}

/// A figure that may be zero (nothing recoverable) or negative, which the domain's `Money` never is.
fn money(minor: i64, currency: domain::Currency) -> Result<Money, ApiError> {
    let formatted = match domain::Money::new(minor.saturating_abs(), currency) {
        Ok(m) if minor < 0 => format!("-{m}"),
        Ok(m) => m.to_string(),
        Err(_) if minor == 0 => match currency.exponent() {
            0 => format!("0 {}", currency.code()),
            exp => format!("0.{} {}", "0".repeat(exp as usize), currency.code()),
        },
        Err(e) => return Err(ApiError::Internal(format!("economics figure {minor}: {e}"))),
    };
    Ok(Money {
        minor_units: super::types::MinorUnits(minor),
        currency: currency.code().to_owned(),
        formatted,
    })
}

/// `Dispute.triage`: the last triage run of the dispute.
pub(crate) async fn triage_of(
    ctx: &Context<'_>,
    dispute: &domain::Dispute,
) -> async_graphql::Result<Option<DisputeTriage>> {
    principal(ctx, Role::Viewer)?;
    let engine = ctx.data::<Engine>()?;
    let Some(run) = super::read(ctx, engine.store().triage_run(dispute.id)).await? else {
        return Ok(None);
    };
    let t = run.triage;
    let economics_unavailable = match run.input.economics {
        Some(_) => None,
        None => engine
            .economics()
            .costs(run.input.amount.currency())
            .err()
            .map(|e| e.to_string()),
    };
    let (autonomy, limit) = match t.autonomy {
        domain::Autonomy::Manual => (PolicyAutonomy::Manual, None),
        domain::Autonomy::Act => (PolicyAutonomy::Act, None),
        domain::Autonomy::NeedsApproval { limit_minor } => (PolicyAutonomy::NeedsApproval, Some(limit_minor)),
    };
    Ok(Some(DisputeTriage {
        policy_version: run.policy_version,
        rule_index: t.rule_index.map(|i| i32::try_from(i).unwrap_or(i32::MAX)),
        rule: t.rule,
        queue: t.queue.into(),
        priority: i32::from(t.priority),
        recommended_action: t.action.into(),
        autonomy,
        autonomy_limit_minor_units: limit,
        read: t
            .read
            .into_iter()
            .map(|(field, value)| TriageReading { field, value })
            .collect(),
        why: t.why,
        evidence_score: i32::from(run.input.evidence_score),
        decided_at: run.at,
        economics_unavailable,
    }))
}

/// `Dispute.economics`: the figures of the dispute's last triage.
pub(crate) async fn economics_of(
    ctx: &Context<'_>,
    dispute: &domain::Dispute,
) -> async_graphql::Result<Option<DisputeEconomics>> {
    principal(ctx, Role::Viewer)?;
    let engine = ctx.data::<Engine>()?;
    let Some(run) = super::read(ctx, engine.store().triage_run(dispute.id)).await? else {
        return Ok(None);
    };
    // None: no costs for its currency (`DisputeTriage.economicsUnavailable` says so).
    let Some(e) = run.input.economics else {
        return Ok(None);
    };
    let currency = run.input.amount.currency();
    let (basis, won, decided) = match e.basis {
        domain::WinRateBasis::Observed { won, decided } => ("observed", won, decided),
        domain::WinRateBasis::Prior { decided } => ("prior", 0, decided),
    };
    Ok(Some(DisputeEconomics {
        win_rate_basis_points: i32::try_from(e.win_rate_bps).unwrap_or(i32::MAX),
        win_rate_basis: basis.to_owned(),
        decided: i32::try_from(decided).unwrap_or(i32::MAX),
        won: i32::try_from(won).unwrap_or(i32::MAX),
        expected_recovery: money(e.expected_recovery_minor, currency)?,
        defense_cost: money(e.defense_cost_minor, currency)?,
        processor_fee: e.processor_fee_minor.map(|m| money(m, currency)).transpose()?,
        analyst_cost: e.analyst_cost_minor.map(|m| money(m, currency)).transpose()?,
        seller_recoverable: money(e.seller_recoverable_minor, currency)?,
        accept_cost: money(e.accept_cost_minor(), currency)?,
        defend_cost: money(e.defend_cost_minor(), currency)?,
        cheaper_to_accept: e.cheaper_to_accept(),
    }))
}

/// An action the policy would take above its rule's limit, waiting for (or decided by) a lead.
#[derive(SimpleObject)]
pub struct PolicyApproval {
    /// The approval's id, for `approvePolicyAction` and `rejectPolicyAction`.
    pub id: ID,
    /// The dispute the action is for.
    pub dispute_id: ID,
    /// The policy version that asked.
    pub policy_version: i64,
    /// The rule that fired.
    pub rule: String,
    /// What the policy would do.
    pub action: PolicyAction,
    /// The disputed amount.
    pub amount: Money,
    /// The rule's limit, in minor units of the same currency.
    pub limit_minor_units: i64,
    /// The triage's explanation.
    pub why: String,
    /// `PENDING`, `APPROVED` or `REJECTED`.
    pub status: ApprovalStatus,
    /// When the policy asked.
    pub requested_at: DateTime<Utc>,
    /// The lead who decided.
    pub decided_by: Option<String>,
    /// When the lead decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// The lead's note, or why an approved action could not be performed (it then stays pending).
    pub note: Option<String>,
}

/// Where an approval stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ApprovalStatus {
    /// Waiting for a lead.
    Pending,
    /// A lead approved; the action was performed by `policy:VERSION`.
    Approved,
    /// A lead rejected; nothing was done.
    Rejected,
}

impl ApprovalStatus {
    fn as_store(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => APPROVAL_PENDING,
            ApprovalStatus::Approved => APPROVAL_APPROVED,
            ApprovalStatus::Rejected => APPROVAL_REJECTED,
        }
    }
}

impl PolicyApproval {
    fn from_record(r: ApprovalRecord) -> Result<Self, ApiError> {
        let bad = |what: &str| ApiError::Internal(format!("approval {}: {what}", r.id));
        let action: domain::RecommendedAction =
            serde_json::from_value(serde_json::Value::String(r.action.clone())).map_err(|_| bad("unknown action"))?;
        let amount = domain::Currency::parse(&r.currency)
            .and_then(|c| domain::Money::new(r.amount_minor, c))
            .map_err(|_| bad("unreadable amount"))?;
        let status = match r.status.as_str() {
            APPROVAL_PENDING => ApprovalStatus::Pending,
            APPROVAL_APPROVED => ApprovalStatus::Approved,
            APPROVAL_REJECTED => ApprovalStatus::Rejected,
            _ => return Err(bad("unknown status")),
        };
        Ok(Self {
            id: ID(r.id.to_string()),
            dispute_id: ID(r.dispute_id.to_string()),
            policy_version: r.policy_version,
            rule: r.rule,
            action: action.into(),
            amount: amount.into(),
            limit_minor_units: r.limit_minor,
            why: r.why,
            status,
            requested_at: r.requested_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            note: r.decision_note,
        })
    }
}

/// The policy's queries.
#[derive(Default)]
pub struct PolicyQuery;

#[Object]
impl PolicyQuery {
    /// A policy version (analysts and up); without `version`, the active one (the built-in default, version 0,
    /// until a lead activates one).
    async fn policy(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A stored version (1, 2, ...); without it, the active one.")] version: Option<i64>,
    ) -> async_graphql::Result<Option<PolicyVersion>> {
        principal(ctx, Role::Analyst)?;
        let store = ctx.data::<Engine>()?.store();
        let record = match version {
            Some(0) => {
                let active = super::read(ctx, store.active_policy()).await?;
                return Ok(Some(PolicyVersion::builtin(active.is_none())));
            }
            Some(v) => super::read(ctx, store.policy_version(v)).await?,
            None => match super::read(ctx, store.active_policy()).await? {
                Some(r) => Some(r),
                None => return Ok(Some(PolicyVersion::builtin(true))),
            },
        };
        Ok(record.map(PolicyVersion::from_record).transpose()?)
    }

    /// Stored policy versions, newest first (leads and up).
    async fn policies(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "How many versions, newest first (1 to the list cap).")] first: i32,
    ) -> async_graphql::Result<Vec<PolicyVersion>> {
        principal(ctx, Role::Lead)?;
        if !(1..=MAX_LIST).contains(&first) {
            return Err(ApiError::InvalidInput(format!("first must be between 1 and {MAX_LIST}")).into());
        }
        let rows = super::read(ctx, ctx.data::<Engine>()?.store().policy_versions(first as u64)).await?;
        Ok(rows
            .into_iter()
            .map(PolicyVersion::from_record)
            .collect::<Result<_, _>>()?)
    }

    /// Actions the policy asked a lead to approve, oldest first (leads and up); pending ones by default.
    async fn policy_approvals(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default_with = "Some(ApprovalStatus::Pending)",
            desc = "Only approvals in this state; null for all."
        )]
        status: Option<ApprovalStatus>,
        #[graphql(default = 100, desc = "How many approvals, oldest first (1 to the list cap).")] first: i32,
    ) -> async_graphql::Result<Vec<PolicyApproval>> {
        principal(ctx, Role::Lead)?;
        if !(1..=MAX_LIST).contains(&first) {
            return Err(ApiError::InvalidInput(format!("first must be between 1 and {MAX_LIST}")).into());
        }
        let store = ctx.data::<Engine>()?.store();
        let rows = super::read(ctx, store.approvals(status.map(ApprovalStatus::as_store), first as u64)).await?;
        Ok(rows
            .into_iter()
            .map(PolicyApproval::from_record)
            .collect::<Result<_, _>>()?)
    }
}

/// A policy to store as the next version.
#[derive(InputObject)]
pub struct SavePolicyInput {
    /// The policy in TOML (see docs/policy.md); refused with the rule and field named when it is not valid.
    pub source: String,
    /// What changed, for the other leads.
    pub note: Option<String>,
    /// Activate it at once.
    #[graphql(default = false)]
    pub activate: bool,
}

super::payloads::result_payload!(
    /// The version saved, or why it was refused (a validation error names the rule and the field).
    SavePolicyPayload {
        /// The new version; null when refused.
        policy: PolicyVersion
    }
);

/// Which version to activate.
#[derive(InputObject)]
pub struct ActivatePolicyInput {
    /// A stored version (1, 2, ...).
    pub version: i64,
}

super::payloads::result_payload!(
    /// The version now active, or why it was refused.
    ActivatePolicyPayload {
        /// The version, active; null when refused.
        policy: PolicyVersion
    }
);

/// A lead's decision on an approval.
#[derive(InputObject)]
pub struct DecidePolicyActionInput {
    /// The approval's id.
    pub id: ID,
    /// Why, for the record.
    pub note: Option<String>,
}

/// The approval as decided, and the dispute after the action (approvals), or why it was refused.
#[derive(SimpleObject)]
pub struct DecidePolicyActionPayload {
    /// The approval; null when refused.
    pub approval: Option<PolicyApproval>,
    /// The dispute after the approved action; null for a rejection or a refusal.
    pub dispute: Option<Dispute>,
    /// Why the decision was refused; empty when it was made.
    pub user_errors: Vec<super::payloads::UserError>,
}

impl super::payloads::Refusable for DecidePolicyActionPayload {
    fn refused(user_errors: Vec<super::payloads::UserError>) -> Self {
        Self {
            approval: None,
            dispute: None,
            user_errors,
        }
    }
}

/// The policy's mutations (leads and up).
#[derive(Default)]
pub struct PolicyMutation;

fn clean_note(note: Option<String>) -> Result<Option<String>, ApiError> {
    match note.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) if n.chars().count() > 2_000 => {
            Err(ApiError::InvalidInput("note is longer than 2000 characters".into()))
        }
        Some(n) => Ok(Some(n.to_owned())),
    }
}

fn parse_uuid(id: &ID) -> Result<uuid::Uuid, ApiError> {
    id.as_str()
        .parse()
        .map_err(|_| ApiError::InvalidInput(format!("{:?} is not an approval id", id.as_str())))
}

async fn pending_approval(engine: &Engine, id: &ID) -> Result<ApprovalRecord, ApiError> {
    let id = parse_uuid(id)?;
    let approval = engine
        .store()
        .approval(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("approval {id} not found")))?;
    if approval.status != APPROVAL_PENDING {
        return Err(ApiError::InvalidInput(format!(
            "approval {id} is already {}",
            approval.status
        )));
    }
    Ok(approval)
}

/// A lead moves a pending approval to `status` with nothing else done (a rejection); of two leads deciding at
/// once, one does. Returns the engine, the approval as it was and the lead's actor label.
async fn decide<'a>(
    ctx: &Context<'a>,
    input: DecidePolicyActionInput,
    status: &str,
) -> Result<(&'a Engine, ApprovalRecord, String), async_graphql::Error> {
    let caller = principal(ctx, Role::Lead)?;
    let engine = ctx.data::<Engine>()?;
    let approval = pending_approval(engine, &input.id).await?;
    let note = clean_note(input.note)?;
    let by = caller.actor().label();
    if !engine
        .store()
        .decide_approval(approval.id, status, &by, note.as_deref(), engine.clock().now())
        .await
        .map_err(ApiError::from)?
    {
        return Err(ApiError::InvalidInput(format!("approval {} was decided meanwhile", approval.id)).into());
    }
    Ok((engine, approval, by))
}

/// The approval as now decided, with the dispute after its action.
async fn decided(
    engine: &Engine,
    id: uuid::Uuid,
    dispute: Option<Dispute>,
) -> async_graphql::Result<DecidePolicyActionPayload> {
    let approval = engine
        .store()
        .approval(id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::Internal("an approval vanished".into()))?;
    Ok(DecidePolicyActionPayload {
        approval: Some(PolicyApproval::from_record(approval)?),
        dispute,
        user_errors: Vec::new(),
    })
}

#[Object]
impl PolicyMutation {
    /// Validates and stores a policy as the next version (leads and up); `activate` makes it the active one.
    async fn save_policy(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The policy to store.")] input: SavePolicyInput,
    ) -> async_graphql::Result<SavePolicyPayload> {
        super::payloads::payload(save_policy(ctx, input).await, "input")
    }

    /// Makes a stored version the active one (leads and up); triage applies it from the next run on.
    async fn activate_policy(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version to activate.")] input: ActivatePolicyInput,
    ) -> async_graphql::Result<ActivatePolicyPayload> {
        super::payloads::payload(activate_policy(ctx, input).await, "input")
    }

    /// Approves an action the policy asked for (leads and up): it is performed at once by `policy:VERSION`
    /// through the ordinary respond action, naming the lead, and the approval is marked approved in the same
    /// commit (both or neither). If it cannot be (the dispute moved on), the approval stays pending with why, and
    /// the user error says so.
    async fn approve_policy_action(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The approval and the lead's note.")] input: DecidePolicyActionInput,
    ) -> async_graphql::Result<DecidePolicyActionPayload> {
        super::payloads::payload(approve_policy_action(ctx, input).await, "input")
    }

    /// Rejects an action the policy asked for (leads and up): nothing is done.
    async fn reject_policy_action(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The approval and the lead's note.")] input: DecidePolicyActionInput,
    ) -> async_graphql::Result<DecidePolicyActionPayload> {
        super::payloads::payload(reject_policy_action(ctx, input).await, "input")
    }
}

async fn save_policy(ctx: &Context<'_>, input: SavePolicyInput) -> async_graphql::Result<SavePolicyPayload> {
    let caller = principal(ctx, Role::Lead)?;
    if input.source.len() > MAX_SOURCE_BYTES {
        return Err(ApiError::InvalidInput(format!("a policy is at most {MAX_SOURCE_BYTES} bytes")).into());
    }
    Policy::from_toml(&input.source).map_err(|e| ApiError::InvalidInput(format!("policy refused: {e}")))?;
    let note = clean_note(input.note)?;
    let engine = ctx.data::<Engine>()?;
    let now = engine.clock().now();
    let by = caller.actor().label();
    let mut record = engine
        .store()
        .save_policy(&input.source, note.as_deref(), &by, now)
        .await
        .map_err(ApiError::from)?;
    if input.activate {
        record = engine
            .store()
            .activate_policy(record.version, &by, now)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::Internal("a saved policy version vanished".into()))?;
    }
    tracing::info!(version = record.version, by = %by, activated = input.activate, "policy saved");
    Ok(SavePolicyPayload::made(PolicyVersion::from_record(record)?))
}

async fn activate_policy(
    ctx: &Context<'_>,
    input: ActivatePolicyInput,
) -> async_graphql::Result<ActivatePolicyPayload> {
    let caller = principal(ctx, Role::Lead)?;
    let engine = ctx.data::<Engine>()?;
    let by = caller.actor().label();
    let record = engine
        .store()
        .activate_policy(input.version, &by, engine.clock().now())
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("policy version {} not found", input.version)))?;
    tracing::info!(version = record.version, by = %by, "policy activated");
    Ok(ActivatePolicyPayload::made(PolicyVersion::from_record(record)?))
}

async fn approve_policy_action(
    ctx: &Context<'_>,
    input: DecidePolicyActionInput,
) -> async_graphql::Result<DecidePolicyActionPayload> {
    let caller = principal(ctx, Role::Lead)?;
    let engine = ctx.data::<Engine>()?;
    let approval = pending_approval(engine, &input.id).await?;
    let note = clean_note(input.note)?;
    let by = caller.actor().label();
    // The approval is claimed in the commit of the action it performs: both or neither.
    match engine.perform_approved(&approval, &by, note.as_deref()).await {
        Ok(dispute) => decided(engine, approval.id, Some(Dispute(dispute))).await,
        Err(err @ EngineError::Store(StoreError::ApprovalDecided(_))) => Err(ApiError::from(err).into()),
        Err(err) => {
            let err = ApiError::from(err);
            engine
                .store()
                .note_unperformed_approval(
                    approval.id,
                    &format!("approved by {by} but not performed: {}", err.message()),
                )
                .await
                .map_err(ApiError::from)?;
            Err(err.into())
        }
    }
}

async fn reject_policy_action(
    ctx: &Context<'_>,
    input: DecidePolicyActionInput,
) -> async_graphql::Result<DecidePolicyActionPayload> {
    let (engine, approval, _) = decide(ctx, input, APPROVAL_REJECTED).await?;
    decided(engine, approval.id, None).await
}
