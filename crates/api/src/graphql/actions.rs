//! The analyst's actions that reach the outside world: submit the defense, accept, refund, resolve with a
//! refund, message the customer or the seller.
//!
//! Each mutation takes one `input` named after it with the dispute's `id` and the `expectedVersion` the caller
//! saw, becomes one engine command, and commits its events with the steps and timers it implies in one
//! transaction; the payload returns the dispute and the steps the action enqueued, so a client sees at once
//! what is pending at the processor or in the outbox. Nothing here talks to a processor: the workers perform
//! the steps.

use async_graphql::{Context, Enum, ID, InputObject, Object};
use serde::Deserialize;
use verdict_domain::{self as domain, Action, Change, Command, MessageTemplate, RefundRecord};
use verdict_engine::Engine;

use super::payloads::{dispute_payload, payload};
use super::query::{parse_id, principal};
use super::types::{Dispute, Locale, MoneyInput, Step, Timer};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// How much one refund may be, by role, in minor units of the dispute's currency (`[refunds]` in the
/// configuration). Admins have no limit; every refund is also bounded by what is left of the disputed amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefundLimits {
    /// Analysts refund at most this much on one dispute, in all (default 250.00 in a two-decimal currency).
    pub analyst_max_minor_units: i64,
    /// Leads refund at most this much on one dispute, in all (default 2,500.00).
    pub lead_max_minor_units: i64,
}

impl Default for RefundLimits {
    fn default() -> Self {
        Self {
            analyst_max_minor_units: 25_000,
            lead_max_minor_units: 250_000,
        }
    }
}

impl RefundLimits {
    /// The most `role` may refund on one dispute, in all; `None` is no limit of its own (admins).
    pub fn limit_for(&self, role: Role) -> Option<i64> {
        match role {
            Role::Viewer => Some(0),
            Role::Analyst => Some(self.analyst_max_minor_units),
            Role::Lead => Some(self.lead_max_minor_units),
            Role::Admin => None,
        }
    }

    /// The limit holds for what the dispute has been refunded in all, this refund included, so that splitting a
    /// refund into several requests does not get past it. `availableActions` asks the same of a refund without
    /// `amount`.
    pub(crate) fn check(
        &self,
        caller: &Principal,
        amount: domain::Money,
        prior: &[RefundRecord],
    ) -> Result<(), ApiError> {
        let already: i64 = prior.iter().map(|r| r.amount.minor_units()).sum();
        let total = already.saturating_add(amount.minor_units());
        match self.limit_for(caller.role) {
            Some(limit) if total > limit => Err(ApiError::Forbidden(format!(
                "a refund of {amount} brings the dispute's refunds to {total} minor units, over the {} role's \
                 limit of {limit}; ask a lead or an admin",
                caller.role
            ))),
            _ => Ok(()),
        }
    }
}

#[derive(Default)]
pub struct ActionsMutation;

/// The defense of one dispute to submit.
#[derive(InputObject)]
pub struct SubmitDefenseInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT and nothing is sent.
    pub expected_version: i64,
    /// While required evidence is missing the defense is refused; a lead may submit anyway by saying why
    /// (recorded on the event with what was missing). Analysts get FORBIDDEN.
    pub override_reason: Option<String>,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
}

/// The dispute whose liability to accept.
#[derive(InputObject)]
pub struct AcceptDisputeInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
}

/// A refund of one inquiry or alert.
#[derive(InputObject)]
pub struct RefundInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
    /// The caller's own key for this refund: one request is refunded at most once, however often it is sent.
    pub request_id: String,
    /// What to refund, in the dispute's currency; left out, everything not yet refunded.
    pub amount: Option<MoneyInput>,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
}

/// An inquiry or alert to resolve by refunding it.
#[derive(InputObject)]
pub struct ResolveWithRefundInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
    /// The caller's own key for this refund: one request is refunded at most once.
    pub request_id: String,
    /// What to refund, in the dispute's currency; left out, everything not yet refunded.
    pub amount: Option<MoneyInput>,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
}

/// What to tell the customer.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CustomerMessageTemplate {
    /// The dispute is being looked at.
    CaseUpdate,
    /// What happened with the order, and an offer to settle it without the bank.
    RequestInformation,
}

/// What to tell the seller.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SellerMessageTemplate {
    /// The proof the defense needs from the seller.
    RequestEvidence,
    /// Where the dispute stands.
    CaseUpdate,
}

/// A message to one dispute's customer.
#[derive(InputObject)]
pub struct MessageCustomerInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
    /// What to tell them.
    pub template: CustomerMessageTemplate,
    /// Free text placed in the template (at most 4,000 characters); kept in the outbox, not in the history.
    pub text: Option<String>,
    /// Defaults to the customer's language.
    pub locale: Option<Locale>,
}

/// A message to one dispute's seller.
#[derive(InputObject)]
pub struct MessageSellerInput {
    /// The dispute's id.
    pub id: ID,
    /// The version the caller saw; a stale one is refused as VERSION_CONFLICT.
    pub expected_version: i64,
    /// What to tell them.
    pub template: SellerMessageTemplate,
    /// Free text placed in the template (at most 4,000 characters); kept in the outbox, not in the history.
    pub text: Option<String>,
    /// Defaults to English.
    pub locale: Option<Locale>,
}

dispute_payload!(
    /// The submission step is pending; the outcome check is set.
    SubmitDefensePayload,
    /// The acceptance at the processor is pending.
    AcceptDisputePayload,
    /// The refund is pending; the customer's message is enqueued once it has succeeded.
    RefundPayload,
    /// Resolved; the refund is pending and the customer's message follows its success.
    ResolveWithRefundPayload,
    /// The message is pending; `message_sent` is recorded once it went out.
    MessageCustomerPayload,
    /// The message is pending; `message_sent` is recorded once it went out.
    MessageSellerPayload,
);

/// Commits `command` and returns the dispute with the steps and timers it created.
async fn act(ctx: &Context<'_>, id: domain::DisputeId, command: Command) -> async_graphql::Result<(Dispute, Created)> {
    let engine = ctx.data::<Engine>()?;
    let (dispute, decision) = engine.handle_decided(id, command).await.map_err(ApiError::from)?;
    let created = super::payloads::created(engine, id, &decision).await?;
    Ok((Dispute(dispute), created))
}

type Created = (Vec<Step>, Vec<Timer>);

/// The refunds already requested on a dispute, read from its log, which must be at `expected_version`: the
/// refund is then decided on exactly what the caller saw, and a refund committed meanwhile makes it a
/// VERSION_CONFLICT instead of a second refund past the limit.
async fn prior_refunds(
    engine: &Engine,
    id: domain::DisputeId,
    expected_version: i64,
) -> Result<(domain::Dispute, Vec<RefundRecord>), ApiError> {
    let dispute = engine
        .store()
        .load(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
    if dispute.version != expected_version {
        return Err(domain::DomainError::VersionConflict {
            expected: expected_version,
            actual: dispute.version,
        }
        .into());
    }
    let events = engine.store().events(id).await?;
    if let Some(later) = events.iter().find(|e| e.version > expected_version) {
        return Err(domain::DomainError::VersionConflict {
            expected: expected_version,
            actual: later.version,
        }
        .into());
    }
    Ok((dispute, refunds_in(id, events, expected_version)?))
}

/// The refunds a dispute's log holds up to `version`. `availableActions` reads them from the events of the
/// dispute as it was read (a refund committed since counts for the mutation, which reads the log again).
pub(crate) fn refunds_in(
    id: domain::DisputeId,
    events: Vec<verdict_store::EventRecord>,
    version: i64,
) -> Result<Vec<RefundRecord>, ApiError> {
    let mut prior = Vec::new();
    for event in events {
        if event.version > version || event.kind != domain::EventKind::RefundRequested.as_str() {
            continue;
        }
        match serde_json::from_value::<Change>(event.change) {
            Ok(Change::RefundRequested { request_id, amount }) => prior.push(RefundRecord { request_id, amount }),
            Ok(_) | Err(_) => {
                return Err(ApiError::Internal(format!(
                    "refund event {} of dispute {id} does not read back",
                    event.version
                )));
            }
        }
    }
    Ok(prior)
}

/// Both refund inputs, and whether the refund resolves the dispute.
macro_rules! refund_request {
    ($($input:ident => $resolve:literal),+) => {$(
        impl From<$input> for RefundRequest {
            fn from(input: $input) -> Self {
                Self {
                    id: input.id,
                    expected_version: input.expected_version,
                    request_id: input.request_id,
                    amount: input.amount,
                    reason: input.reason,
                    resolve: $resolve,
                }
            }
        }
    )+};
}

refund_request!(RefundInput => false, ResolveWithRefundInput => true);

struct RefundRequest {
    id: ID,
    expected_version: i64,
    request_id: String,
    amount: Option<MoneyInput>,
    reason: Option<String>,
    resolve: bool,
}

async fn refund(ctx: &Context<'_>, request: RefundRequest) -> async_graphql::Result<(Dispute, Created)> {
    let caller = principal(ctx, Role::Analyst)?;
    let id = parse_id(&request.id)?;
    let engine = ctx.data::<Engine>()?;
    let limits = ctx.data_opt::<RefundLimits>().copied().unwrap_or_default();
    let (dispute, prior) = prior_refunds(engine, id, request.expected_version).await?;
    let amount = match &request.amount {
        Some(amount) => amount.to_domain()?,
        None => whole_refund(&dispute, &prior)?,
    };
    limits.check(caller, amount, &prior)?;
    let mut command = Command::new(
        caller.actor(),
        Action::Refund {
            request_id: request.request_id,
            amount,
            prior,
            resolve: request.resolve,
        },
    )
    .expecting(request.expected_version);
    command.reason = request.reason;
    act(ctx, id, command).await
}

/// What a refund without `amount` refunds: all of the disputed amount not yet refunded.
pub(crate) fn whole_refund(dispute: &domain::Dispute, prior: &[RefundRecord]) -> Result<domain::Money, ApiError> {
    let left = domain::respond::refundable(dispute.amount, prior).ok_or_else(|| {
        ApiError::InvalidInput(format!(
            "the disputed {} has already been refunded in full",
            dispute.amount
        ))
    })?;
    Ok(domain::Money::new(left, dispute.amount.currency())?)
}

/// The required evidence a dispute lacks for its claim. Which items a dispute holds is read from its log
/// (`evidence_added`, `evidence_removed` name each item's id and kind, and the kind is all completeness counts),
/// so the answer is the one the version being submitted holds.
async fn missing_evidence(engine: &Engine, id: domain::DisputeId) -> Result<Vec<domain::EvidenceKind>, ApiError> {
    let dispute = engine
        .store()
        .load(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
    let mut items: Vec<domain::EvidenceItem> = Vec::new();
    for event in engine.store().events(id).await? {
        let kind = event.kind.as_str();
        if kind != domain::EventKind::EvidenceAdded.as_str() && kind != domain::EventKind::EvidenceRemoved.as_str() {
            continue;
        }
        match serde_json::from_value::<Change>(event.change) {
            Ok(Change::EvidenceAdded { items: added, source }) => {
                items.extend(added.into_iter().map(|r| domain::EvidenceItem {
                    id: r.item_id,
                    kind: r.kind,
                    text: None,
                    file: None,
                    source,
                    added_by: event.actor.clone(),
                    added_at: event.at,
                }));
            }
            Ok(Change::EvidenceRemoved { item }) => items.retain(|i| i.id != item.item_id),
            Ok(_) | Err(_) => {
                return Err(ApiError::Internal(format!(
                    "evidence event {} of dispute {id} does not read back",
                    event.version
                )));
            }
        }
    }
    let completeness = domain::evidence::completeness(domain::DisputeClaim::of_dispute(&dispute), &items);
    Ok(completeness
        .missing
        .iter()
        .filter(|m| m.required)
        .map(|m| m.kind)
        .collect())
}

#[Object]
impl ActionsMutation {
    /// Submits the defense: refused while required evidence is missing (a lead may override with a reason);
    /// walks a notified or triaged dispute through to submitted, enqueues the submission (the defense document,
    /// the evidence items and the order facts, in the processor's format) and sets the outcome check.
    async fn submit_defense(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute and the version the analyst saw.")] input: SubmitDefenseInput,
    ) -> async_graphql::Result<SubmitDefensePayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let override_reason = input.override_reason.filter(|r| !r.trim().is_empty());
            let missing = missing_evidence(ctx.data::<Engine>()?, id).await?;
            if override_reason.is_some() && !missing.is_empty() && caller.role < Role::Lead {
                return Err(ApiError::Forbidden(
                    "submitting with required evidence missing is a lead's override; add the evidence, or ask a lead"
                        .into(),
                )
                .into());
            }
            if override_reason.is_none() {
                // The domain's rule, answered as its own user error: the screen shows what to add.
                domain::respond::check_defense(&missing, None).map_err(|err| {
                    ApiError::MissingEvidence(match err {
                        domain::DomainError::InvalidInput(message) => message,
                        other => other.to_string(),
                    })
                })?;
            }
            let mut expected_version = input.expected_version;
            if missing.is_empty() || override_reason.is_some() {
                // The defense document the processor receives is generated and recorded (`document_generated`)
                // before the submission, at the version the analyst saw, so the history names the very document
                // that was sent and the step sends that stored one.
                let generated = ctx
                    .data::<Engine>()?
                    .generate_document(
                        id,
                        domain::DocumentKind::Defense,
                        caller.actor(),
                        Some(expected_version),
                    )
                    .await
                    .map_err(ApiError::from)?;
                expected_version = generated.dispute.version;
            }
            let mut command = Command::new(
                caller.actor(),
                Action::SubmitDefense {
                    missing,
                    override_reason,
                },
            )
            .expecting(expected_version);
            command.reason = input.reason;
            let (dispute, created) = act(ctx, id, command).await?;
            Ok(SubmitDefensePayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Accepts liability: the acceptance is sent to the processor (nothing is sent for a manual dispute).
    async fn accept_dispute(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute and the version the analyst saw.")] input: AcceptDisputeInput,
    ) -> async_graphql::Result<AcceptDisputePayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let mut command = Command::new(caller.actor(), Action::Accept).expecting(input.expected_version);
            command.reason = input.reason;
            let (dispute, created) = act(ctx, id, command).await?;
            Ok(AcceptDisputePayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Refunds an inquiry or pre-dispute alert in full or in part, leaving it open: never more than the
    /// caller's role allows, never more than what is left of the disputed amount, never twice for one
    /// `requestId`. The customer is told once the processor confirms the refund, never before.
    async fn refund(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, the amount and the request's own id.")] input: RefundInput,
    ) -> async_graphql::Result<RefundPayload> {
        let result = async {
            let (dispute, created) = refund(ctx, input.into()).await?;
            Ok(RefundPayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Resolves an inquiry or pre-dispute alert by refunding it: the refund, then the customer's message, in
    /// that order (a failed refund sends no message). The same limits as `refund`.
    async fn resolve_with_refund(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, the amount and the request's own id.")] input: ResolveWithRefundInput,
    ) -> async_graphql::Result<ResolveWithRefundPayload> {
        let result = async {
            let (dispute, created) = refund(ctx, input.into()).await?;
            Ok(ResolveWithRefundPayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Writes to the customer from a template in their language, with free text.
    async fn message_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, the template and the text.")] input: MessageCustomerInput,
    ) -> async_graphql::Result<MessageCustomerPayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let template = match input.template {
                CustomerMessageTemplate::CaseUpdate => MessageTemplate::CustomerCaseUpdate,
                CustomerMessageTemplate::RequestInformation => MessageTemplate::CustomerRequestInformation,
            };
            let action = Action::SendMessage {
                template,
                text: input.text,
                locale: input.locale.map(Into::into),
            };
            let command = Command::new(caller.actor(), action).expecting(input.expected_version);
            let (dispute, created) = act(ctx, id, command).await?;
            Ok(MessageCustomerPayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Writes to the seller (their webhook, or the mailbox) from a template, with free text.
    async fn message_seller(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, the template and the text.")] input: MessageSellerInput,
    ) -> async_graphql::Result<MessageSellerPayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let template = match input.template {
                SellerMessageTemplate::RequestEvidence => MessageTemplate::SellerRequestEvidence,
                SellerMessageTemplate::CaseUpdate => MessageTemplate::SellerCaseUpdate,
            };
            let action = Action::SendMessage {
                template,
                text: input.text,
                locale: input.locale.map(Into::into),
            };
            let command = Command::new(caller.actor(), action).expecting(input.expected_version);
            let (dispute, created) = act(ctx, id, command).await?;
            Ok(MessageSellerPayload::made(dispute, created))
        };
        payload(result.await, "input")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_have_no_refund_limit_of_their_own_and_viewers_none_at_all() {
        let limits = RefundLimits::default();
        assert_eq!(limits.limit_for(Role::Admin), None);
        assert_eq!(limits.limit_for(Role::Viewer), Some(0));
        assert!(limits.limit_for(Role::Analyst) < limits.limit_for(Role::Lead));
    }
}
