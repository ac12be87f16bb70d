//! Write side: every mutation becomes one engine command, recorded with the caller's key name as actor.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::{self as domain, Action, Command};
use verdict_engine::Engine;

use super::payloads::{created, dispute_payload, payload, result_payload};
use super::query::{parse_id, principal};
use super::types::{
    CardNetwork, CustomerInput, Dispute, DisputeStage, DisputeStatus, MoneyInput, Processor, Step, Timer,
};
use crate::auth::{Role, create_api_key};
use crate::error::ApiError;

#[derive(Default)]
pub struct MutationRoot;

/// A dispute entered by hand; webhooks feed the same shape.
#[derive(InputObject)]
pub struct OpenDisputeInput {
    /// Who reported it (`MANUAL` when nobody did).
    pub processor: Processor,
    /// The processor's id of the dispute (unique per processor).
    pub processor_dispute_id: String,
    /// The disputed payment at the processor.
    pub payment_reference: String,
    /// The marketplace's order number, when known.
    pub order_reference: Option<String>,
    /// The seller, when known (linking the order sets it too).
    pub seller_id: Option<String>,
    /// The cardholder, as far as known.
    pub customer: Option<CustomerInput>,
    /// The disputed amount.
    pub amount: MoneyInput,
    /// The card network.
    pub network: CardNetwork,
    /// As the processor shows it; normalised (trimmed, legacy codes mapped) and checked against the network.
    pub reason_code: String,
    /// Defaults to CHARGEBACK.
    pub stage: Option<DisputeStage>,
    /// The processor's deadline for the response.
    pub due_by: Option<DateTime<Utc>>,
    /// Why it is entered by hand.
    pub reason: Option<String>,
}

/// A lead's correction of one dispute.
#[derive(InputObject)]
pub struct TransitionDisputeInput {
    /// The dispute's id.
    pub id: ID,
    /// WON, LOST and EXPIRED are outcomes: they come from the processor, and recording one by hand is a lead's
    /// override (recorded as `outcome_overridden`); analysts get FORBIDDEN.
    pub to: DisputeStatus,
    /// Why; recorded on the event.
    pub reason: String,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT.
    pub expected_version: i64,
    /// A later stage, to reopen a won or lost dispute (lead only); needs `dueBy`.
    pub stage: Option<DisputeStage>,
    /// The new cycle's due date when reopening at a later stage: in the future, at most 366 days ahead.
    pub due_by: Option<DateTime<Utc>>,
}

/// A new deadline for one dispute.
#[derive(InputObject)]
pub struct ChangeDueByInput {
    /// The dispute's id.
    pub id: ID,
    /// The processor's new deadline: in the future, at most 366 days ahead. Reminders, the act-by time and the
    /// deadline move with it.
    pub due_by: DateTime<Utc>,
    /// Why; recorded on the event.
    pub reason: String,
    /// The version the analyst saw; a stale one is a VERSION_CONFLICT.
    pub expected_version: i64,
}

/// Who should work one dispute.
#[derive(InputObject)]
pub struct AssignDisputeInput {
    /// The dispute's id.
    pub id: ID,
    /// The handle of a person who has signed in (see `users`) or an active API key's name; anyone else is
    /// INVALID_INPUT. Null unassigns: analysts may release their own assignment this way.
    pub assignee: Option<String>,
    /// Why, in the caller's words; recorded on the event.
    pub reason: Option<String>,
    /// Whom the caller expects as the current assignee (null: nobody); another one is a VERSION_CONFLICT, so of
    /// two people taking one dispute exactly one wins. Analysts who leave it out expect what they are allowed
    /// to change: nobody when taking, themselves when releasing.
    pub expected_assignee: MaybeUndefined<String>,
    /// The version the caller saw; a stale one is a VERSION_CONFLICT.
    pub expected_version: Option<i64>,
}

/// A note on one dispute.
#[derive(InputObject)]
pub struct AddNoteInput {
    /// The dispute's id.
    pub id: ID,
    /// The note (at most 4,000 characters).
    pub note: String,
}

/// A new API key.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// Its name: the actor its events carry (`analyst:NAME`); unique.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A new key; the token is shown this once.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The bearer token: shown this once, never stored.
    pub token: String,
}

fn customer(input: Option<CustomerInput>) -> Result<domain::Customer, ApiError> {
    let Some(input) = input else {
        return Ok(domain::Customer {
            name: None,
            email: None,
            locale: domain::Locale::En,
        });
    };
    Ok(domain::Customer {
        name: input
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .map(domain::CustomerName::parse)
            .transpose()?,
        email: input
            .email
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .map(domain::CustomerEmail::parse)
            .transpose()?,
        locale: input.locale.map(Into::into).unwrap_or_default(),
    })
}

dispute_payload!(
    /// The dispute opened, with the timers and steps its opening set.
    OpenDisputePayload,
    /// The dispute after a lead's correction.
    TransitionDisputePayload,
    /// The dispute with its new due date; the reminders, act-by and deadline timers moved with it.
    ChangeDueByPayload,
    /// The dispute with its new assignee; the assignee's notice is a step.
    AssignDisputePayload,
    /// The dispute with the note in its history.
    AddNotePayload,
    /// The dispute linked to its order: its seller and customer, and the seller task if the seller owns it.
    LinkOrderPayload,
);

result_payload!(
    /// The key created; its token is shown this once.
    CreateApiKeyPayload {
        /// The new key and its token.
        api_key: CreatedApiKey
    }
);

/// Commits `command` on dispute `id` and answers `P` with the dispute and what the change created.
async fn change(
    ctx: &Context<'_>,
    id: domain::DisputeId,
    command: Command,
) -> async_graphql::Result<(Dispute, Created)> {
    let engine = ctx.data::<Engine>()?;
    let (dispute, decision) = engine.handle_decided(id, command).await.map_err(ApiError::from)?;
    let created = created(engine, id, &decision).await?;
    Ok((Dispute(dispute), created))
}

type Created = (Vec<Step>, Vec<Timer>);

#[Object]
impl MutationRoot {
    /// Enters a dispute by hand (analysts and up); processors' webhooks feed the same shape. Refused with
    /// `ALREADY_EXISTS` when the processor's dispute id is known.
    async fn open_dispute(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute as the processor shows it.")] input: OpenDisputeInput,
    ) -> async_graphql::Result<OpenDisputePayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let engine = ctx.data::<Engine>()?;
            let network: domain::CardNetwork = input.network.into();
            let new = domain::NewDispute {
                processor: input.processor.into(),
                processor_dispute_id: input.processor_dispute_id,
                payment_reference: input.payment_reference,
                order_reference: input.order_reference,
                seller_id: input.seller_id,
                customer: customer(input.customer)?,
                amount: input.amount.to_domain()?,
                reason_code: domain::ReasonCode::parse(network, &input.reason_code).map_err(ApiError::from)?,
                reason_code_raw: input.reason_code,
                stage: input.stage.map(Into::into).unwrap_or(domain::Stage::Chargeback),
                due_by: input.due_by,
                opened_at: engine.clock().now(),
            };
            let command = Command {
                actor: caller.actor(),
                reason: input.reason,
                action: Action::Open(Box::new(new)),
                expected_version: None,
            };
            let (dispute, decision) = engine.open_decided(command).await.map_err(ApiError::from)?;
            let created = created(engine, dispute.id, &decision).await?;
            Ok(OpenDisputePayload::made(Dispute(dispute), created))
        };
        payload(result.await, "input")
    }

    /// A lead's correction: forces any allowed transition, with a reason and the version the lead saw, and is
    /// recorded as `corrected` (an outcome as `outcome_overridden`). Nothing is sent anywhere: analysts act
    /// through `submitDefense`, `acceptDispute`, `refund`, `resolveWithRefund` and the messages, which reach the
    /// processor and the customer. An outcome (WON, LOST, EXPIRED) is an override; reopening at a later stage
    /// needs the new `dueBy`. Analysts get FORBIDDEN.
    async fn transition_dispute(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, the status to move it to, and why.")] input: TransitionDisputeInput,
    ) -> async_graphql::Result<TransitionDisputePayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let command = transition_command(
                caller,
                input.to.into(),
                input.reason,
                input.expected_version,
                input.stage.map(Into::into),
                input.due_by,
            )?;
            let (dispute, created) = change(ctx, id, command).await?;
            Ok(TransitionDisputePayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Moves the processor's deadline; the reminders, the act-by time and the deadline timer move with it.
    async fn change_due_by(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, its new due date, and why.")] input: ChangeDueByInput,
    ) -> async_graphql::Result<ChangeDueByPayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let command = Command::new(
                caller.actor(),
                Action::ChangeDueBy {
                    due_by: Some(input.due_by),
                },
            )
            .because(input.reason)
            .expecting(input.expected_version);
            let (dispute, created) = change(ctx, id, command).await?;
            Ok(ChangeDueByPayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Analysts take unassigned disputes for themselves and release their own (assignee null); leads assign
    /// and reassign anyone. The change applies only to the dispute as the caller expects it: its assignee
    /// (stated, or for analysts implied) and its version.
    async fn assign_dispute(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, the new assignee, and whom the caller expects now.")] input: AssignDisputeInput,
    ) -> async_graphql::Result<AssignDisputePayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let engine = ctx.data::<Engine>()?;
            let (dispute, decision) = assign(
                engine,
                caller,
                id,
                input.assignee,
                input.reason,
                input.expected_assignee,
                input.expected_version,
            )
            .await?;
            let created = created(engine, id, &decision).await?;
            Ok(AssignDisputePayload::made(Dispute(dispute), created))
        };
        payload(result.await, "input")
    }

    /// A signed, expiring link through which the dispute's seller uploads evidence files without an account
    /// (analysts and up): send it in a seller message. Files arrive as the dispute's uploads, by
    /// `seller:<seller id>`.
    async fn create_seller_upload_link(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute the link is for.")] input: super::sellers::CreateSellerUploadLinkInput,
    ) -> async_graphql::Result<super::sellers::CreateSellerUploadLinkPayload> {
        payload(super::sellers::create_upload_link(ctx, input).await, "input")
    }

    /// Adds an analyst's note to the dispute's history (analysts and up).
    async fn add_note(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute and the note.")] input: AddNoteInput,
    ) -> async_graphql::Result<AddNotePayload> {
        let result = async {
            let caller = principal(ctx, Role::Analyst)?;
            let id = parse_id(&input.id)?;
            let command = Command::new(caller.actor(), Action::AddNote { note: input.note });
            let (dispute, created) = change(ctx, id, command).await?;
            Ok(AddNotePayload::made(dispute, created))
        };
        payload(result.await, "input")
    }

    /// Puts a dead-lettered step back in the queue with fresh attempts (lead only). An Adyen refund or
    /// acceptance older than Adyen's idempotency window (30 days) needs `confirmedNotAtProcessor: true`: Adyen
    /// cannot be asked whether it already happened, so the lead confirms having checked.
    async fn retry_step(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The step's id (`deadLetteredSteps`, `Dispute.steps`).")] id: ID,
        #[graphql(
            default = false,
            desc = "The lead checked at Adyen that a refund or acceptance older than 30 days did not happen."
        )]
        confirmed_not_at_processor: bool,
    ) -> async_graphql::Result<super::operations_admin::RetryStepPayload> {
        let result = super::operations_admin::retry(ctx, id, confirmed_not_at_processor).await;
        payload(result.map(super::operations_admin::RetryStepPayload::made), "id")
    }

    /// Gives up on a pending or dead-lettered step (lead only).
    async fn cancel_step(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The step's id.")] id: ID,
    ) -> async_graphql::Result<super::operations_admin::CancelStepPayload> {
        let result = super::operations_admin::cancel(ctx, id).await;
        payload(result.map(super::operations_admin::CancelStepPayload::made), "id")
    }

    /// Admins only. The key's token is refused from the next request on; revoking twice changes nothing.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key, by id or by name.")] input: super::operations_admin::RevokeApiKeyInput,
    ) -> async_graphql::Result<super::operations_admin::RevokeApiKeyPayload> {
        let result = super::operations_admin::revoke_api_key(ctx, input).await;
        payload(result.map(super::operations_admin::RevokeApiKeyPayload::made), "input")
    }

    /// Adds an evidence item (text, an uploaded file, or both) to the dispute as the analyst saw it.
    async fn add_evidence(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, its version, and the item.")] input: super::evidence::AddEvidenceInput,
    ) -> async_graphql::Result<super::evidence::AddEvidencePayload> {
        payload(super::evidence::add(ctx, input).await, "input")
    }

    /// Withdraws an evidence item from the defense; it stays listed with `includeRemoved`.
    async fn remove_evidence(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, its version, and the item.")] input: super::evidence::RemoveEvidenceInput,
    ) -> async_graphql::Result<super::evidence::RemoveEvidencePayload> {
        payload(super::evidence::remove(ctx, input).await, "input")
    }

    /// Creates the evidence the dispute's order facts give (proof of delivery, tracking, listing and grade
    /// report, IMEI/serial, messages, policies, terms, prior payments, cancellation) in one event.
    async fn draw_evidence_from_facts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute and its version.")] input: super::evidence::DrawEvidenceFromFactsInput,
    ) -> async_graphql::Result<super::evidence::DrawEvidenceFromFactsPayload> {
        payload(super::evidence::draw(ctx, input).await, "input")
    }

    /// Admins only. The token is returned once and never stored.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's name and role.")] input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreateApiKeyPayload> {
        let result = async {
            principal(ctx, Role::Admin)?;
            let engine = ctx.data::<Engine>()?;
            let token = create_api_key(engine.store(), &input.name, input.role, engine.clock().now()).await?;
            Ok(CreateApiKeyPayload::made(CreatedApiKey {
                name: input.name.trim().to_owned(),
                role: input.role,
                token,
            }))
        };
        payload(result.await, "input")
    }

    /// Leads and admins. Records an order's facts in Verdict's own tables (the default source), replacing what
    /// was recorded for the same order number; refused when the facts come from the order service (http).
    async fn record_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order's facts.")] input: super::facts::RecordOrderInput,
    ) -> async_graphql::Result<super::facts::RecordOrderPayload> {
        payload(super::facts::record_order(ctx, input).await, "input")
    }

    /// Links a dispute to its marketplace order by hand (when the automatic link found none): the dispute
    /// takes the order's seller and customer, recorded as `order_linked`.
    async fn link_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The dispute, its version, and the order's number.")] input: super::facts::LinkOrderInput,
    ) -> async_graphql::Result<LinkOrderPayload> {
        let result = async {
            let (id, command) = super::facts::link_command(ctx, input).await?;
            let (dispute, created) = change(ctx, id, command).await?;
            Ok(LinkOrderPayload::made(dispute, created))
        };
        payload(result.await, "input")
    }
}

/// Takes, releases or (leads) assigns a dispute as `caller`: `assignDispute` and the bulk assignment share it.
/// Analysts take unassigned disputes for themselves and release their own; the change applies only to the
/// dispute as the caller expects it (assignee, stated or implied, and version).
pub(crate) async fn assign(
    engine: &Engine,
    caller: &crate::auth::Principal,
    id: domain::DisputeId,
    assignee: Option<String>,
    reason: Option<String>,
    expected_assignee: MaybeUndefined<String>,
    expected_version: Option<i64>,
) -> Result<(domain::Dispute, domain::Decision), ApiError> {
    let assignee = assignee.as_deref().map(str::trim).map(str::to_owned);
    let mut expected = match expected_assignee {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(name) => Some(Some(name.trim().to_owned())),
    };
    if caller.role < Role::Lead {
        let own = Some(caller.name.clone());
        if assignee.is_some() && assignee != own {
            return Err(ApiError::Forbidden(
                "analysts may only take disputes for themselves; assigning someone else needs the lead role".into(),
            ));
        }
        // Taking expects nobody, releasing expects oneself: anything else is someone else's dispute.
        expected.get_or_insert(if assignee.is_some() { None } else { own });
    }
    if let Some(name) = &assignee
        && !engine.store().is_known_assignee(name).await?
    {
        return Err(ApiError::InvalidInput(format!(
            "nobody is called {name:?} in Verdict: assign a person who has signed in (see the users query) or \
             an active API key's name"
        )));
    }
    let mut command = Command {
        actor: caller.actor(),
        reason,
        action: Action::Assign { assignee },
        expected_version,
    };
    if let Some(expected) = expected {
        // Compare, then commit only onto the version compared: a take that lost a race is refused.
        let current = engine.store().load(id).await?;
        let current = current.ok_or_else(|| ApiError::NotFound(format!("dispute {id} not found")))?;
        if current.assignee != expected {
            let name = |a: &Option<String>| a.clone().unwrap_or_else(|| "nobody".to_owned());
            return Err(ApiError::VersionConflict(format!(
                "the dispute is assigned to {}, not {} as expected; reload it{}",
                name(&current.assignee),
                name(&expected),
                if caller.role < Role::Lead {
                    " (reassigning needs the lead role)"
                } else {
                    ""
                }
            )));
        }
        if let Some(seen) = command.expected_version
            && seen != current.version
        {
            return Err(ApiError::from(domain::DomainError::VersionConflict {
                expected: seen,
                actual: current.version,
            }));
        }
        command.expected_version = Some(current.version);
    }
    Ok(engine.handle_decided(id, command).await?)
}

/// The command of a lead's correction to `to` (`transitionDispute` and the bulk transition share it); analysts
/// get FORBIDDEN with how to act instead.
pub(crate) fn transition_command(
    caller: &crate::auth::Principal,
    to: domain::Status,
    reason: String,
    expected_version: i64,
    stage: Option<domain::Stage>,
    due_by: Option<DateTime<Utc>>,
) -> Result<Command, ApiError> {
    if caller.role < Role::Lead {
        return Err(ApiError::Forbidden(if domain::is_outcome(to) {
            format!(
                "{to} is an outcome: outcomes come from the processor, and recording one by hand is a lead's \
                 override with a reason"
            )
        } else {
            "transitionDispute is a lead's correction; analysts act through submitDefense, acceptDispute, \
             refund, resolveWithRefund, messageCustomer and messageSeller"
                .to_owned()
        }));
    }
    let action = if domain::is_outcome(to) {
        if stage.is_some() || due_by.is_some() {
            return Err(ApiError::InvalidInput(
                "an outcome override takes no stage or due date; reopen first, then record the outcome".into(),
            ));
        }
        Action::OverrideOutcome { to, expected_version }
    } else {
        Action::Transition {
            to,
            expected_version,
            stage,
            due_by,
        }
    };
    Ok(Command::new(caller.actor(), action).because(reason))
}
