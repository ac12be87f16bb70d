//! `Dispute.availableActions`: what the caller may do to a dispute now, and why not when not. Each action is
//! checked twice, as its mutation would be: the caller's role (the mutation's own rule), then the domain's
//! state machine, by deciding the action's command on the dispute as it stands without committing anything.
//! Nothing here restates a rule of the machine: a refusal's reason is the domain's own message. The refunds also
//! pass the mutation's own limit by role ([`RefundLimits::check`]) for what a refund without `amount` would
//! refund, so a refund over the caller's limit shows as not allowed, with the limit as its reason.

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use verdict_domain::{
    self as domain, Action, Command, DocumentKind, DocumentRef, EvidenceKind, EvidenceRef, EvidenceSource,
    MessageTemplate, RefundRecord, Status,
};

use super::actions::{RefundLimits, whole_refund};
use super::types::DisputeStatus;
use crate::auth::{Principal, Role};

/// An action a caller may take on a dispute, named after its mutation.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DisputeAction {
    /// `submitDefense` (the evidence it requires is shown by `evidenceCompleteness`).
    SubmitDefense,
    /// `acceptDispute`.
    AcceptDispute,
    /// `refund` of all that is left to refund (the mutation without `amount`), within the caller's refund limit.
    Refund,
    /// `resolveWithRefund` of all that is left to refund, within the caller's refund limit.
    ResolveWithRefund,
    /// `messageCustomer`.
    MessageCustomer,
    /// `messageSeller`.
    MessageSeller,
    /// `addNote`.
    AddNote,
    /// `changeDueBy`.
    ChangeDueBy,
    /// `assignDispute` to oneself, while nobody has it.
    Take,
    /// `assignDispute` with a null assignee, by its assignee.
    Release,
    /// `assignDispute` to someone else (leads).
    Assign,
    /// `transitionDispute` to a status that is not an outcome (leads); `statuses` lists where to.
    Correct,
    /// `transitionDispute` to an outcome, in the processor's stead (leads); `statuses` lists which.
    OverrideOutcome,
    /// `linkOrder` (the order it names must exist in the marketplace facts).
    LinkOrder,
    /// `addEvidence` (and `drawEvidenceFromFacts`, `removeEvidence`: the same rules).
    AddEvidence,
    /// `generateDefenseDocument`.
    GenerateDefenseDocument,
}

/// Whether the caller may take one action now.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct AvailableAction {
    /// The action.
    pub action: DisputeAction,
    /// Whether the caller may take it now.
    pub allowed: bool,
    /// Why not, when not allowed: the role it needs, or the state machine's refusal.
    pub reason: Option<String>,
    /// For `CORRECT` and `OVERRIDE_OUTCOME`: the statuses the dispute may be moved to; empty otherwise.
    pub statuses: Vec<DisputeStatus>,
}

/// Every action of [`DisputeAction`], for `caller` on `dispute` at `now`. `prior` is the refunds the dispute's
/// log holds, read for callers who may refund (`None` for the others: they are refused by role first).
pub(crate) fn available(
    dispute: &domain::Dispute,
    caller: &Principal,
    now: DateTime<Utc>,
    limits: &RefundLimits,
    prior: Option<&[RefundRecord]>,
) -> Vec<AvailableAction> {
    let probe = |action: Action| -> Result<(), String> {
        let command = Command::new(caller.actor(), action)
            .because("availability")
            .expecting(dispute.version);
        domain::decide(dispute, &command, now)
            .map(|_| ())
            .map_err(|err| err.to_string())
    };
    let needs = |role: Role| -> Result<(), String> {
        if caller.role >= role {
            Ok(())
        } else {
            Err(format!("needs the {role} role"))
        }
    };
    let message = |template| Action::SendMessage {
        template,
        text: None,
        locale: None,
    };
    // As the mutation checks a refund: the role, what is left to refund, the role's limit, then the machine.
    let refund = |resolve| -> Result<(), String> {
        needs(Role::Analyst)?;
        let prior = prior.ok_or_else(|| "the dispute's refunds were not read".to_owned())?;
        let amount = whole_refund(dispute, prior).map_err(|err| err.message())?;
        limits.check(caller, amount, prior).map_err(|err| err.message())?;
        probe(Action::Refund {
            request_id: "availability".to_owned(),
            amount,
            prior: prior.to_vec(),
            resolve,
        })
    };
    let own = dispute.assignee.as_deref() == Some(caller.name.as_str());
    let simple: Vec<(DisputeAction, Result<(), String>)> = vec![
        (
            DisputeAction::SubmitDefense,
            needs(Role::Analyst).and_then(|()| {
                probe(Action::SubmitDefense {
                    missing: Vec::new(),
                    override_reason: None,
                })
            }),
        ),
        (
            DisputeAction::AcceptDispute,
            needs(Role::Analyst).and_then(|()| probe(Action::Accept)),
        ),
        (DisputeAction::Refund, refund(false)),
        (DisputeAction::ResolveWithRefund, refund(true)),
        (
            DisputeAction::MessageCustomer,
            needs(Role::Analyst).and_then(|()| probe(message(MessageTemplate::CustomerCaseUpdate))),
        ),
        (
            DisputeAction::MessageSeller,
            needs(Role::Analyst).and_then(|()| probe(message(MessageTemplate::SellerCaseUpdate))),
        ),
        (
            DisputeAction::AddNote,
            needs(Role::Analyst).and_then(|()| {
                probe(Action::AddNote {
                    note: "availability".to_owned(),
                })
            }),
        ),
        (
            DisputeAction::ChangeDueBy,
            needs(Role::Analyst).and_then(|()| {
                probe(Action::ChangeDueBy {
                    due_by: Some(now + chrono::Duration::days(1)),
                })
            }),
        ),
        (
            DisputeAction::Take,
            needs(Role::Analyst)
                .and_then(|()| match &dispute.assignee {
                    None => Ok(()),
                    Some(_) if own => Err("the caller has it already".to_owned()),
                    Some(other) => Err(format!("assigned to {other}; reassigning needs the lead role")),
                })
                .and_then(|()| {
                    probe(Action::Assign {
                        assignee: Some(caller.name.clone()),
                    })
                }),
        ),
        (
            DisputeAction::Release,
            needs(Role::Analyst)
                .and_then(|()| {
                    if own {
                        Ok(())
                    } else {
                        Err("only its assignee releases a dispute (leads reassign it)".to_owned())
                    }
                })
                .and_then(|()| probe(Action::Assign { assignee: None })),
        ),
        (
            DisputeAction::Assign,
            needs(Role::Lead).and_then(|()| {
                probe(Action::Assign {
                    assignee: Some(format!("{}-availability", caller.name)),
                })
            }),
        ),
        (
            DisputeAction::LinkOrder,
            needs(Role::Analyst).and_then(|()| {
                probe(Action::LinkOrder {
                    order_reference: "availability".to_owned(),
                    source: "availability".to_owned(),
                    seller_id: "availability".to_owned(),
                    customer: dispute.customer.clone(),
                    seller_task: None,
                    profile: None,
                })
            }),
        ),
        (
            DisputeAction::AddEvidence,
            needs(Role::Analyst).and_then(|()| {
                probe(Action::AddEvidence {
                    items: vec![EvidenceRef {
                        item_id: Uuid::nil(),
                        kind: EvidenceKind::Uncategorised,
                    }],
                    source: EvidenceSource::Analyst,
                })
            }),
        ),
        (
            DisputeAction::GenerateDefenseDocument,
            needs(Role::Analyst).and_then(|()| {
                probe(Action::RecordDocument {
                    document: DocumentRef {
                        document_id: Uuid::nil(),
                        kind: DocumentKind::Defense,
                        version: 1,
                        sha256: String::new(),
                    },
                })
            }),
        ),
    ];
    let mut actions: Vec<AvailableAction> = simple
        .into_iter()
        .map(|(action, result)| AvailableAction {
            action,
            allowed: result.is_ok(),
            reason: result.err(),
            statuses: Vec::new(),
        })
        .collect();
    let (outcomes, others): (Vec<Status>, Vec<Status>) =
        Status::ALL.iter().copied().partition(|s| domain::is_outcome(*s));
    let targets = |statuses: Vec<Status>, action: &dyn Fn(Status) -> Action| -> AvailableAction {
        let mut refusals = Vec::new();
        let allowed: Vec<DisputeStatus> = statuses
            .into_iter()
            .filter(|to| match probe(action(*to)) {
                Ok(()) => true,
                Err(err) => {
                    refusals.push(err);
                    false
                }
            })
            .map(Into::into)
            .collect();
        AvailableAction {
            action: DisputeAction::Correct,
            allowed: !allowed.is_empty(),
            reason: allowed
                .is_empty()
                .then(|| refusals.into_iter().next().unwrap_or_default()),
            statuses: allowed,
        }
    };
    let lead = |action: DisputeAction, statuses: Vec<Status>, make: &dyn Fn(Status) -> Action| match needs(Role::Lead) {
        Ok(()) => AvailableAction {
            action,
            ..targets(statuses, make)
        },
        Err(reason) => AvailableAction {
            action,
            allowed: false,
            reason: Some(reason),
            statuses: Vec::new(),
        },
    };
    actions.push(lead(DisputeAction::Correct, others, &|to| Action::Transition {
        to,
        expected_version: dispute.version,
        stage: None,
        due_by: None,
    }));
    actions.push(lead(DisputeAction::OverrideOutcome, outcomes, &|to| {
        Action::OverrideOutcome {
            to,
            expected_version: dispute.version,
        }
    }));
    actions
}
