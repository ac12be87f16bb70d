//! GraphQL views of domain values. Enums mirror the domain's (`remote`), so a new status or stage fails to
//! compile here until it is exposed.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, InputValueError, InputValueResult, Object, Scalar, ScalarType,
    SimpleObject, Value,
};
use chrono::{DateTime, Utc};
use verdict_domain as domain;
use verdict_store::{EventRecord, StepRecord, TimerRecord};

use super::enums::{EventType, StepKind, StepStatus, TimerKind, TimerStatus, label, timer_kind};
use super::limits::nested_list_cost;
use super::loaders::{EventsOf, ListLoader, StepsOf, TimersOf};
use crate::auth::Principal;
use crate::error::ApiError;

/// Who reported the dispute.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Processor")]
pub enum Processor {
    /// Stripe.
    Stripe,
    /// Adyen.
    Adyen,
    /// PayPal.
    Paypal,
    /// Braintree.
    Braintree,
    /// Entered by hand (`openDispute`); nothing is sent to a processor.
    Manual,
}

/// Where a dispute stands in Verdict's process.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Status")]
pub enum DisputeStatus {
    /// Just arrived; nobody has looked at it.
    Notified,
    /// Routed to a queue.
    Triaged,
    /// The defense is being put together.
    EvidenceGathering,
    /// The defense went to the processor; waiting for the outcome.
    Submitted,
    /// Decided for the merchant.
    Won,
    /// Decided for the cardholder.
    Lost,
    /// Liability accepted.
    Accepted,
    /// The processor's deadline passed with nothing submitted.
    Expired,
    /// Withdrawn by the cardholder or the issuer.
    Withdrawn,
    /// An inquiry or alert settled without a chargeback (usually by a refund).
    Resolved,
}

/// Where the dispute is in the card network's lifecycle; it only moves forward.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Stage")]
pub enum DisputeStage {
    /// A retrieval request or inquiry: no money moved yet.
    Inquiry,
    /// A pre-dispute alert or fraud warning.
    PreDispute,
    /// The chargeback itself.
    Chargeback,
    /// The issuer came back after a won chargeback.
    PreArbitration,
    /// The card network decides.
    Arbitration,
}

/// The card network whose rules and reason codes apply.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::CardNetwork")]
pub enum CardNetwork {
    /// Visa.
    Visa,
    /// Mastercard.
    Mastercard,
    /// American Express.
    Amex,
    /// Discover.
    Discover,
    /// Any other network (its reason codes are kept as sent).
    Other,
}

/// The family of the reason code, which decides the queue.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::ReasonCategory")]
pub enum ReasonCategory {
    /// The cardholder says they did not make the payment.
    Fraud,
    /// The payment was not properly authorized.
    Authorization,
    /// Duplicate, late, wrong amount or currency.
    ProcessingError,
    /// Not received, not as described, cancelled, credit not processed.
    ConsumerDispute,
}

/// Which team works a dispute.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Queue")]
pub enum Queue {
    /// Customer care: consumer disputes.
    Care,
    /// Fraud: fraud and authorization disputes.
    Fraud,
    /// Disputes the seller owns (see `sellerTask`).
    Seller,
}

/// The languages Verdict writes to customers in.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Locale")]
pub enum Locale {
    /// English.
    En,
    /// French.
    Fr,
    /// Spanish.
    Es,
    /// Italian.
    It,
}

/// An amount in minor units (cents). A 64-bit integer: accepts integer literals (and digit strings for
/// clients whose numbers are doubles), printed as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorUnits(pub i64);

/// An amount in minor units (cents): a 64-bit integer, printed as a JSON number; digit strings are accepted too.
#[Scalar]
impl ScalarType for MinorUnits {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n.as_i64().map(MinorUnits).ok_or_else(|| {
                InputValueError::custom("minorUnits must be a whole number of minor units within 64 bits")
            }),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(MinorUnits)
                .map_err(|_| InputValueError::custom("minorUnits must be a whole number of minor units")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// An amount of money in one currency.
#[derive(SimpleObject)]
pub struct Money {
    /// The amount in the currency's minor units (cents).
    pub minor_units: MinorUnits,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Major units and currency, e.g. `1234.50 EUR`.
    pub formatted: String,
}

impl From<domain::Money> for Money {
    fn from(m: domain::Money) -> Self {
        Self {
            minor_units: MinorUnits(m.minor_units()),
            currency: m.currency().code().to_owned(),
            formatted: m.to_string(),
        }
    }
}

/// An amount of money in one currency.
#[derive(InputObject)]
pub struct MoneyInput {
    /// The amount in the currency's minor units (cents); positive.
    pub minor_units: MinorUnits,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
}

impl MoneyInput {
    pub fn to_domain(&self) -> Result<domain::Money, ApiError> {
        let currency = domain::Currency::parse(&self.currency)?;
        Ok(domain::Money::new(self.minor_units.0, currency)?)
    }
}

/// The cardholder; name and email are masked for viewers.
#[derive(SimpleObject)]
pub struct Customer {
    /// The cardholder's name; masked (`J***`) for viewers.
    pub name: Option<String>,
    /// The cardholder's email; masked (`j***@example.fr`) for viewers.
    pub email: Option<String>,
    /// The language Verdict writes to them in.
    pub locale: Locale,
}

/// The cardholder, as far as known.
#[derive(InputObject)]
pub struct CustomerInput {
    /// Their name.
    pub name: Option<String>,
    /// Their email address.
    pub email: Option<String>,
    /// Defaults to EN.
    pub locale: Option<Locale>,
}

/// One entry of a dispute's history.
#[derive(SimpleObject)]
pub struct DisputeEvent {
    /// The dispute's version after this event: 1 for the opening, then one more with each event.
    pub version: i64,
    /// What happened. From the processor: `PROCESSOR_UPDATE` (status, stage or due date as it reported them)
    /// and `OUTCOME_RECEIVED`; a lead's outcome by hand: `OUTCOME_OVERRIDDEN`; the marketplace order:
    /// `ORDER_LINKED` (its order reference and source) and `ORDER_NOT_FOUND` (the kinds of reference tried).
    #[graphql(name = "type")]
    pub kind: EventType,
    /// The status before, for events that move it.
    pub from_status: Option<DisputeStatus>,
    /// The status after, for events that move it.
    pub to_status: Option<DisputeStatus>,
    /// Who caused it, e.g. `analyst:jane` or `processor:stripe`.
    pub actor: String,
    /// Why, as the actor said.
    pub reason: Option<String>,
    /// Details of the change as JSON (the note text, the new assignee, the new stage or due date); the same
    /// facts typed, for the common kinds, in `change`.
    pub details: async_graphql::Json<serde_json::Value>,
    /// The common kinds' details, typed; null for the other kinds (read `details`).
    pub change: Option<EventChange>,
    /// When it was recorded (UTC).
    pub at: DateTime<Utc>,
}

impl TryFrom<EventRecord> for DisputeEvent {
    type Error = ApiError;

    fn try_from(e: EventRecord) -> Result<Self, ApiError> {
        // The opening event and `order_linked` carry the customer: shown on the dispute, never in history.
        let e = e.without_personal_data();
        let status = |s: Option<String>| {
            s.and_then(|s| s.parse::<domain::Status>().ok())
                .map(DisputeStatus::from)
        };
        let kind: domain::EventKind = label(&e.kind, "event type")?;
        Ok(Self {
            version: e.version,
            kind: kind.into(),
            from_status: status(e.from_status),
            to_status: status(e.to_status),
            change: EventChange::of(&e.change),
            actor: e.actor,
            reason: e.reason,
            details: async_graphql::Json(e.change),
            at: e.at,
        })
    }
}

/// Reads stored rows as their GraphQL views, failing on the first that does not read back.
pub(crate) fn views<R, V: TryFrom<R, Error = ApiError>>(rows: Vec<R>) -> Result<Vec<V>, ApiError> {
    rows.into_iter().map(V::try_from).collect()
}

/// The typed details of the common kinds of event.
#[derive(async_graphql::Union)]
pub enum EventChange {
    /// `ASSIGNED`.
    Assignment(AssignmentChange),
    /// `NOTE_ADDED`.
    Note(NoteChange),
    /// `DUE_BY_CHANGED`.
    DueBy(DueByChange),
    /// `STAGE_ADVANCED` and `REOPENED`.
    Stage(StageChange),
    /// `REMINDER_RECORDED`.
    Reminder(ReminderChange),
    /// `DEFENSE_SUBMITTED`.
    Defense(DefenseChange),
    /// `REFUND_REQUESTED`.
    Refund(RefundChange),
    /// `EVIDENCE_ADDED` and `EVIDENCE_REMOVED`.
    Evidence(EvidenceChange),
    /// `ORDER_LINKED`.
    OrderLink(OrderLinkChange),
}

/// A reminder before the act-by time was sent.
#[derive(SimpleObject)]
pub struct ReminderChange {
    /// How many hours before the act-by time.
    pub hours_before: i64,
}

/// The defense was submitted.
#[derive(SimpleObject)]
pub struct DefenseChange {
    /// The required evidence a lead chose to submit without (the event's reason says why); empty otherwise.
    pub missing_overridden: Vec<super::evidence::EvidenceKind>,
}

/// A refund was asked of the processor.
#[derive(SimpleObject)]
pub struct RefundChange {
    /// The caller's own id of the refund request.
    pub request_id: String,
    /// How much.
    pub amount: Money,
}

/// Evidence items added or withdrawn (their content is in `Dispute.evidence`).
#[derive(SimpleObject)]
pub struct EvidenceChange {
    /// The items' ids.
    pub item_ids: Vec<ID>,
    /// Their kinds, in the same order.
    pub kinds: Vec<super::evidence::EvidenceKind>,
}

/// The dispute was linked to its marketplace order (its customer is shown on the dispute, not here).
#[derive(SimpleObject)]
pub struct OrderLinkChange {
    /// The order's number.
    pub order_reference: String,
    /// Which facts answered: `tables` or `http`.
    pub source: String,
    /// The order's seller.
    pub seller_id: String,
}

/// A change of assignee.
#[derive(SimpleObject)]
pub struct AssignmentChange {
    /// The assignee before; null when nobody was.
    pub previous_assignee: Option<String>,
    /// The assignee after; null when released.
    pub assignee: Option<String>,
}

/// An analyst's note.
#[derive(SimpleObject)]
pub struct NoteChange {
    /// The note's text.
    pub note: String,
}

/// The processor's deadline moved.
#[derive(SimpleObject)]
pub struct DueByChange {
    /// The due date before.
    pub previous_due_by: Option<DateTime<Utc>>,
    /// The due date after; null when the processor withdrew it.
    pub due_by: Option<DateTime<Utc>>,
}

/// The dispute moved to a later stage (advanced by the processor, or reopened).
#[derive(SimpleObject)]
pub struct StageChange {
    /// The stage before; null when a reopening did not record it.
    pub previous_stage: Option<DisputeStage>,
    /// The stage it is at now.
    pub stage: DisputeStage,
    /// The new cycle's due date, if one was given.
    pub due_by: Option<DateTime<Utc>>,
}

impl EventChange {
    /// The typed details of `change` (the event's stored JSON), for the kinds it covers.
    fn of(change: &serde_json::Value) -> Option<EventChange> {
        Some(match serde_json::from_value::<domain::Change>(change.clone()).ok()? {
            domain::Change::Assigned { from, to } => EventChange::Assignment(AssignmentChange {
                previous_assignee: from,
                assignee: to,
            }),
            domain::Change::NoteAdded { note } => EventChange::Note(NoteChange { note }),
            domain::Change::DueByChanged { from, to } => EventChange::DueBy(DueByChange {
                previous_due_by: from,
                due_by: to,
            }),
            domain::Change::StageAdvanced { from, to, due_by } => EventChange::Stage(StageChange {
                previous_stage: Some(from.into()),
                stage: to.into(),
                due_by,
            }),
            domain::Change::Transitioned {
                stage: Some(stage),
                due_by,
                ..
            } => EventChange::Stage(StageChange {
                previous_stage: None,
                stage: stage.into(),
                due_by,
            }),
            domain::Change::ReminderRecorded { hours_before } => EventChange::Reminder(ReminderChange { hours_before }),
            domain::Change::DefenseSubmitted { missing_overridden, .. } => EventChange::Defense(DefenseChange {
                missing_overridden: missing_overridden.into_iter().map(Into::into).collect(),
            }),
            domain::Change::RefundRequested { request_id, amount } => EventChange::Refund(RefundChange {
                request_id,
                amount: amount.into(),
            }),
            domain::Change::EvidenceAdded { items, .. } => EventChange::Evidence(EvidenceChange {
                item_ids: items.iter().map(|i| ID(i.item_id.to_string())).collect(),
                kinds: items.iter().map(|i| i.kind.into()).collect(),
            }),
            domain::Change::EvidenceRemoved { item } => EventChange::Evidence(EvidenceChange {
                item_ids: vec![ID(item.item_id.to_string())],
                kinds: vec![item.kind.into()],
            }),
            domain::Change::OrderLinked {
                order_reference,
                source,
                seller_id,
                ..
            } => EventChange::OrderLink(OrderLinkChange {
                order_reference,
                source,
                seller_id,
            }),
            _ => return None,
        })
    }
}

/// A timer of the dispute: a reminder, the act-by time, the deadline or the outcome check.
#[derive(SimpleObject)]
pub struct Timer {
    /// The timer's id.
    pub id: ID,
    /// What it is for.
    pub kind: TimerKind,
    /// For a reminder, how many hours before the act-by time it fires.
    pub hours_before: Option<i64>,
    /// When it fires (UTC).
    pub due_at: DateTime<Utc>,
    /// Whether it is still to fire.
    pub status: TimerStatus,
}

impl TryFrom<TimerRecord> for Timer {
    type Error = ApiError;

    fn try_from(t: TimerRecord) -> Result<Self, ApiError> {
        let kind = timer_kind(&t.kind)?;
        Ok(Self {
            id: ID(t.id.to_string()),
            kind: kind.into(),
            hours_before: match kind {
                domain::TimerKind::Reminder { hours_before } => Some(hours_before),
                _ => None,
            },
            due_at: t.due_at,
            status: label(&t.status, "timer status")?,
        })
    }
}

/// A side effect of a dispute's change that a worker performs (a processor call, a message, a notice).
#[derive(SimpleObject)]
pub struct Step {
    /// The step's id (`retryStep` and `cancelStep` take it).
    pub id: ID,
    /// What it does.
    pub kind: StepKind,
    /// What the outside system sees; a retry never performs the step a second time.
    pub idempotency_key: String,
    /// Where it stands.
    pub status: StepStatus,
    /// Tries so far.
    pub attempts: i32,
    /// When a worker tries it (next).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last try failed (statuses and codes only, never personal data).
    pub last_error: Option<String>,
}

impl TryFrom<StepRecord> for Step {
    type Error = ApiError;

    fn try_from(s: StepRecord) -> Result<Self, ApiError> {
        let kind: domain::StepKind = label(&s.kind, "step kind")?;
        Ok(Self {
            id: ID(s.id.to_string()),
            kind: kind.into(),
            idempotency_key: s.idempotency_key,
            status: label(&s.status, "step status")?,
            attempts: s.attempts,
            next_attempt_at: s.next_attempt_at,
            last_error: s.last_error,
        })
    }
}

/// A dispute as analysts see it.
pub struct Dispute(pub domain::Dispute);

fn engine<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a verdict_engine::Engine> {
    ctx.data::<verdict_engine::Engine>()
}

pub(crate) fn lists<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a ListLoader> {
    ctx.data::<ListLoader>()
}

/// A payment dispute: its facts, where it stands, its history, and what can be done with it now.
#[Object]
impl Dispute {
    /// Verdict's id of the dispute (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Who reported it.
    async fn processor(&self) -> Processor {
        self.0.processor.into()
    }
    /// The processor's id of the dispute.
    async fn processor_dispute_id(&self) -> &str {
        &self.0.processor_dispute_id
    }
    /// The disputed payment at the processor (charge, PSP reference, transaction).
    async fn payment_reference(&self) -> &str {
        &self.0.payment_reference
    }
    /// The marketplace's order number, when known.
    async fn order_reference(&self) -> Option<&str> {
        self.0.order_reference.as_deref()
    }
    /// The seller of the order, once linked.
    async fn seller_id(&self) -> Option<&str> {
        self.0.seller_id.as_deref()
    }
    /// The cardholder; masked for viewers.
    async fn customer(&self, ctx: &Context<'_>) -> Customer {
        let unmasked = ctx.data_opt::<Principal>().is_some_and(Principal::sees_personal_data);
        let c = &self.0.customer;
        Customer {
            name: c
                .name
                .as_ref()
                .map(|n| if unmasked { n.expose().to_owned() } else { n.masked() }),
            email: c
                .email
                .as_ref()
                .map(|e| if unmasked { e.expose().to_owned() } else { e.masked() }),
            locale: c.locale.into(),
        }
    }
    /// Where it stands in Verdict's process.
    async fn status(&self) -> DisputeStatus {
        self.0.status.into()
    }
    /// Where it is in the network's lifecycle.
    async fn stage(&self) -> DisputeStage {
        self.0.stage.into()
    }
    /// Rises by one with every event; pass it as `expectedVersion` to transition.
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// The disputed amount.
    async fn amount(&self) -> Money {
        self.0.amount.into()
    }
    /// The card network.
    async fn network(&self) -> CardNetwork {
        self.0.reason_code.network().into()
    }
    /// The normalised reason code, e.g. `10.4` or `4853`.
    async fn reason_code(&self) -> &str {
        self.0.reason_code.code()
    }
    /// The reason code exactly as the processor sent it.
    async fn reason_code_raw(&self) -> &str {
        &self.0.reason_code_raw
    }
    /// The family of the reason code.
    async fn reason_category(&self) -> ReasonCategory {
        self.0.reason_code.category().into()
    }
    /// The network's title for the reason code.
    async fn reason_title(&self) -> Option<&'static str> {
        self.0.reason_code.title()
    }
    /// When the processor needs the response: the processor's own deadline. A dispute with nothing submitted
    /// expires only once it has passed.
    async fn due_by(&self) -> Option<DateTime<Utc>> {
        self.0.due_by
    }
    /// Verdict's internal act-by time: `dueBy` minus the submit margin (24 h by default). Reminders count back
    /// from it, and at it the deadline policy submits what is complete or accepts.
    async fn act_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DateTime<Utc>>> {
        let timing = engine(ctx)?.timing();
        Ok(self.0.due_by.map(|due_by| timing.act_by(due_by)))
    }
    /// When the processor opened it (or it was entered).
    async fn opened_at(&self) -> DateTime<Utc> {
        self.0.opened_at
    }
    /// The queue it is in, once triaged.
    async fn queue(&self) -> Option<Queue> {
        self.0.queue.map(Into::into)
    }
    /// 1 (most urgent) to 5, as the triage policy last decided; 3 until it decides otherwise.
    async fn priority(&self) -> i32 {
        i32::from(self.0.priority)
    }
    /// The triage policy's last decision on the dispute: the rule that fired, what it read and why; null before
    /// the dispute's first triage.
    async fn triage(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::policy::DisputeTriage>> {
        super::policy::triage_of(ctx, &self.0).await
    }
    /// What defending is worth (expected recovery, cost, the seller's share), as the last triage computed it.
    async fn economics(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::policy::DisputeEconomics>> {
        super::policy::economics_of(ctx, &self.0).await
    }
    /// Who works it (a handle or key name); null when nobody.
    async fn assignee(&self) -> Option<&str> {
        self.0.assignee.as_deref()
    }
    /// When Verdict recorded it.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Every event, oldest first. Read for a whole page of disputes at once; counts as ten entries in a
    /// query's cost.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DisputeEvent>> {
        let records = lists(ctx)?.load_one(EventsOf(self.0.id)).await?.unwrap_or_default();
        Ok(views(records)?)
    }
    /// Reminders, the deadline and outcome checks, pending or done.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn timers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Timer>> {
        let records = lists(ctx)?.load_one(TimersOf(self.0.id)).await?.unwrap_or_default();
        Ok(views(records)?)
    }
    /// Side effects requested by the dispute's events (messages, refunds, submissions).
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Step>> {
        let records = lists(ctx)?.load_one(StepsOf(self.0.id)).await?.unwrap_or_default();
        Ok(views(records)?)
    }
    /// Messages sent about this dispute, oldest first: to the customer and the seller, and the notifications
    /// of the people working it (its assignee, its queue, the queue's leads); `channels` keeps those only.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only messages to these recipients; none: all.")] channels: Option<
            Vec<super::mailbox::MailboxChannel>,
        >,
    ) -> async_graphql::Result<Vec<super::mailbox::MailboxMessage>> {
        let messages = super::mailbox::of_dispute(ctx, &self.0).await?;
        Ok(match channels {
            Some(channels) => messages.into_iter().filter(|m| channels.contains(&m.channel)).collect(),
            None => messages,
        })
    }
    /// What the caller may do to the dispute now, each with why not when it may not: the caller's role, then
    /// the state machine's own rules, checked on the dispute as it stands (nothing is changed).
    async fn available_actions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::available::AvailableAction>> {
        let caller = super::query::principal(ctx, crate::auth::Role::Viewer)?;
        let engine = engine(ctx)?;
        let now = engine.clock().now();
        let limits = ctx.data_opt::<super::RefundLimits>().copied().unwrap_or_default();
        // The refunds so far count towards the caller's limit; only callers who may refund need them. The
        // events of a page's disputes are read in one query.
        let prior = if caller.role >= crate::auth::Role::Analyst {
            let events = lists(ctx)?.load_one(EventsOf(self.0.id)).await?.unwrap_or_default();
            Some(super::actions::refunds_in(self.0.id, events, self.0.version)?)
        } else {
            None
        };
        Ok(super::available::available(
            &self.0,
            caller,
            now,
            &limits,
            prior.as_deref(),
        ))
    }
    /// The marketplace's order behind the dispute (by its order reference, else its payment reference), from
    /// the configured source; personal data masked for viewers. Null when no order matches.
    #[graphql(complexity = "5 + child_complexity")]
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::facts::Order>> {
        super::facts::of_dispute(ctx, self).await
    }

    /// Generated documents (defense, case file), newest first; their content is served at their URLs.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn documents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<super::documents::Document>> {
        super::documents::of_dispute(ctx, &self.0).await
    }
    /// Processor notifications that contradicted the state machine: kept and shown, never applied.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn flagged_notifications(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::notifications::ProcessorNotification>> {
        super::notifications::flagged(ctx, &self.0).await
    }
    /// Every processor notification of this dispute, with its raw payload (leads and admins only).
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn raw_notifications(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::notifications::ProcessorNotification>> {
        super::notifications::raw(ctx, &self.0).await
    }
    /// The seller's task when the seller owns this dispute (opened when it was linked to its order): why, what
    /// the seller is asked for, and when their answer is due (before the processor's deadline). Null otherwise.
    #[graphql(complexity = "5 + child_complexity")]
    async fn seller_task(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::sellers::SellerTask>> {
        super::sellers::task_of(ctx, &self.0).await
    }
    /// What the cardholder claims, from the reason code (and the processor's reason for ambiguous codes).
    async fn claim(&self) -> super::evidence::DisputeClaim {
        verdict_domain::DisputeClaim::of_dispute(&self.0).into()
    }
    /// The evidence of the dispute's defense, oldest first; withdrawn items too with `includeRemoved`.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn evidence(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false, desc = "Withdrawn items too.")] include_removed: bool,
    ) -> async_graphql::Result<Vec<super::evidence::EvidenceItem>> {
        super::evidence::items(ctx, &self.0, include_removed).await
    }
    /// How complete the evidence is for the dispute's claim, and what is missing.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn evidence_completeness(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<super::evidence::EvidenceCompleteness> {
        super::evidence::completeness(ctx, &self.0).await
    }
    /// Whether prior undisputed payments answer a card-absent fraud claim (Visa CE 3.0, Mastercard First-Party
    /// Trust), from the order facts.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn compelling_evidence(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<super::evidence::CompellingEvidence> {
        super::evidence::compelling(ctx, &self.0).await
    }
}

/// Where a page lies in its list (Relay).
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Rows follow this page in the list's order.
    pub has_next_page: bool,
    /// Rows precede this page in the list's order.
    pub has_previous_page: bool,
    /// The first row's cursor; pass it as `before` with `last` for the page before.
    pub start_cursor: Option<String>,
    /// The last row's cursor; pass it as `after` with `first` for the page after.
    pub end_cursor: Option<String>,
}

/// A dispute of a page, with its cursor.
#[derive(SimpleObject)]
pub struct DisputeEdge {
    /// Pass as `after` (or `before`) for the next (previous) page.
    pub cursor: String,
    /// The dispute.
    pub node: Dispute,
}

/// A page of disputes (Relay).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct DisputeConnection {
    /// The page's disputes, in the requested order.
    pub edges: Vec<DisputeEdge>,
    /// Where the page lies.
    pub page_info: PageInfo,
    #[graphql(skip)]
    pub filter: verdict_store::DisputeFilter,
}

#[ComplexObject]
impl DisputeConnection {
    /// Disputes matching the filter in all pages; counted only when asked for (it counts as 50 in a query's
    /// cost: it reads every matching row).
    #[graphql(complexity = 50)]
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        super::read(ctx, engine(ctx)?.store().count(&self.filter)).await
    }
}
