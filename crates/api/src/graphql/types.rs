//! GraphQL views of domain values. Enums mirror the domain's (`remote`), so a new status or stage fails to
//! compile here until it is exposed.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, InputValueError, InputValueResult, Object, Scalar, ScalarType,
    SimpleObject, Value,
};
use chrono::{DateTime, Utc};
use verdict_domain as domain;
use verdict_store::{EventRecord, StepRecord, TimerRecord};

use super::limits::nested_list_cost;
use super::loaders::{EventsOf, ListLoader, StepsOf, TimersOf};
use crate::auth::Principal;
use crate::error::ApiError;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Processor")]
pub enum Processor {
    Stripe,
    Adyen,
    Paypal,
    Braintree,
    Manual,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Status")]
pub enum DisputeStatus {
    Notified,
    Triaged,
    EvidenceGathering,
    Submitted,
    Won,
    Lost,
    Accepted,
    Expired,
    Withdrawn,
    Resolved,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Stage")]
pub enum DisputeStage {
    Inquiry,
    PreDispute,
    Chargeback,
    PreArbitration,
    Arbitration,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::CardNetwork")]
pub enum CardNetwork {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Other,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::ReasonCategory")]
pub enum ReasonCategory {
    Fraud,
    Authorization,
    ProcessingError,
    ConsumerDispute,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Queue")]
pub enum Queue {
    Care,
    Fraud,
    Seller,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::Locale")]
pub enum Locale {
    En,
    Fr,
    Es,
    It,
}

/// An amount in minor units (cents). A 64-bit integer: accepts integer literals (and digit strings for
/// clients whose numbers are doubles), printed as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorUnits(pub i64);

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

#[derive(SimpleObject)]
pub struct Money {
    pub minor_units: MinorUnits,
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

#[derive(InputObject)]
pub struct MoneyInput {
    pub minor_units: MinorUnits,
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
    pub name: Option<String>,
    pub email: Option<String>,
    pub locale: Locale,
}

#[derive(InputObject)]
pub struct CustomerInput {
    pub name: Option<String>,
    pub email: Option<String>,
    /// Defaults to EN.
    pub locale: Option<Locale>,
}

/// One entry of a dispute's history.
#[derive(SimpleObject)]
pub struct DisputeEvent {
    pub version: i64,
    /// What happened: opened, triaged, evidence_gathering_started, submitted, won, lost, accepted, expired,
    /// withdrawn, resolved, reopened, manually_transitioned, stage_advanced, due_by_changed, assigned, note_added,
    /// reminder_recorded, outcome_escalated, act_by_passed; from the processor: processor_update (status, stage
    /// or due date as it reported them) and outcome_received; a lead's outcome by hand: outcome_overridden; the
    /// marketplace order: order_linked (its order reference and source) and order_not_found (the kinds of
    /// reference tried); a defense document or case file stored: document_generated.
    #[graphql(name = "type")]
    pub kind: String,
    pub from_status: Option<DisputeStatus>,
    pub to_status: Option<DisputeStatus>,
    /// Who caused it, e.g. `analyst:jane` or `processor:stripe`.
    pub actor: String,
    pub reason: Option<String>,
    /// Details of the change (the note text, the new assignee, the new stage or due date).
    pub details: async_graphql::Json<serde_json::Value>,
    pub at: DateTime<Utc>,
}

impl From<EventRecord> for DisputeEvent {
    fn from(e: EventRecord) -> Self {
        // The opening event and `order_linked` carry the customer: shown on the dispute, never in history.
        let e = e.without_personal_data();
        let status = |s: Option<String>| {
            s.and_then(|s| s.parse::<domain::Status>().ok())
                .map(DisputeStatus::from)
        };
        Self {
            version: e.version,
            kind: e.kind,
            from_status: status(e.from_status),
            to_status: status(e.to_status),
            actor: e.actor,
            reason: e.reason,
            details: async_graphql::Json(e.change),
            at: e.at,
        }
    }
}

#[derive(SimpleObject)]
pub struct Timer {
    pub id: ID,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub status: String,
}

impl From<TimerRecord> for Timer {
    fn from(t: TimerRecord) -> Self {
        Self {
            id: ID(t.id.to_string()),
            kind: t.kind,
            due_at: t.due_at,
            status: t.status,
        }
    }
}

#[derive(SimpleObject)]
pub struct Step {
    pub id: ID,
    pub kind: String,
    pub idempotency_key: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl From<StepRecord> for Step {
    fn from(s: StepRecord) -> Self {
        Self {
            id: ID(s.id.to_string()),
            kind: s.kind,
            idempotency_key: s.idempotency_key,
            status: s.status,
            attempts: s.attempts,
            next_attempt_at: s.next_attempt_at,
            last_error: s.last_error,
        }
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

#[Object]
impl Dispute {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn processor(&self) -> Processor {
        self.0.processor.into()
    }
    async fn processor_dispute_id(&self) -> &str {
        &self.0.processor_dispute_id
    }
    async fn payment_reference(&self) -> &str {
        &self.0.payment_reference
    }
    async fn order_reference(&self) -> Option<&str> {
        self.0.order_reference.as_deref()
    }
    async fn seller_id(&self) -> Option<&str> {
        self.0.seller_id.as_deref()
    }
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
    async fn status(&self) -> DisputeStatus {
        self.0.status.into()
    }
    async fn stage(&self) -> DisputeStage {
        self.0.stage.into()
    }
    /// Rises by one with every event; pass it as `expectedVersion` to transition.
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn amount(&self) -> Money {
        self.0.amount.into()
    }
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
    async fn opened_at(&self) -> DateTime<Utc> {
        self.0.opened_at
    }
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
    async fn assignee(&self) -> Option<&str> {
        self.0.assignee.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Every event, oldest first. Read for a whole page of disputes at once; counts as ten entries in a
    /// query's cost.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DisputeEvent>> {
        let records = lists(ctx)?.load_one(EventsOf(self.0.id)).await?.unwrap_or_default();
        Ok(records.into_iter().map(Into::into).collect())
    }
    /// Reminders, the deadline and outcome checks, pending or done.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn timers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Timer>> {
        let records = lists(ctx)?.load_one(TimersOf(self.0.id)).await?.unwrap_or_default();
        Ok(records.into_iter().map(Into::into).collect())
    }
    /// Side effects requested by the dispute's events (messages, refunds, submissions).
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Step>> {
        let records = lists(ctx)?.load_one(StepsOf(self.0.id)).await?.unwrap_or_default();
        Ok(records.into_iter().map(Into::into).collect())
    }
    /// Messages sent about this dispute to the customer, the seller and the assignee, oldest first.
    #[graphql(complexity = "nested_list_cost(child_complexity)")]
    async fn messages(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<super::mailbox::MailboxMessage>> {
        super::mailbox::of_dispute(ctx, &self.0).await
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
        #[graphql(default = false)] include_removed: bool,
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

#[derive(SimpleObject)]
pub struct DisputeEdge {
    pub cursor: String,
    pub node: Dispute,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct DisputeConnection {
    pub edges: Vec<DisputeEdge>,
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
