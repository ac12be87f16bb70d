//! The analyst's actions that reach the outside world: submitting a defense, refunding, messaging.

use chrono::TimeZone;

use super::*;
use crate::{CardNetwork, Currency, Customer, CustomerEmail, Locale, Money, ReasonCode};

fn at(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default() + Duration::hours(hour)
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
}

fn dispute(stage: Stage, email: bool) -> Dispute {
    let new = NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: "dp_1".into(),
        payment_reference: "pi_1".into(),
        order_reference: Some("order-1".into()),
        seller_id: Some("seller-1".into()),
        customer: Customer {
            name: None,
            email: email.then(|| CustomerEmail::parse("jeanne@example.fr").unwrap_or_else(|e| panic!("{e}"))),
            locale: Locale::Fr,
        },
        amount: eur(10_000),
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap_or_else(|e| panic!("{e}")),
        reason_code_raw: "13.1".into(),
        stage,
        due_by: Some(at(24 * 10)),
        opened_at: at(0),
    };
    let command = Command::new(Actor::analyst("jane"), Action::Open(Box::new(new)));
    let decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    replay(&decision.events).unwrap_or_else(|| panic!("no dispute"))
}

fn command(action: Action, version: i64) -> Command {
    Command::new(Actor::analyst("jane"), action).expecting(version)
}

fn kinds(decision: &Decision) -> Vec<&'static str> {
    decision.events.iter().map(|e| e.change.kind().as_str()).collect()
}

fn after(dispute: &Dispute, decision: &Decision) -> Dispute {
    let mut d = dispute.clone();
    for event in &decision.events {
        apply(&mut d, event);
    }
    d
}

#[test]
fn submitting_a_defense_walks_a_notified_dispute_to_submitted_with_its_step_and_outcome_check() {
    let d = dispute(Stage::Chargeback, true);
    let action = Action::SubmitDefense {
        missing: vec![],
        override_reason: None,
    };
    let decision = decide(&d, &command(action, 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kinds(&decision),
        ["triaged", "evidence_gathering_started", "defense_submitted"]
    );
    assert_eq!(decision.events.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 3, 4]);
    let submitted = after(&d, &decision);
    assert_eq!(submitted.status, Status::Submitted);
    assert_eq!(submitted.version, 4);
    assert_eq!(decision.steps.len(), 1);
    assert_eq!(decision.steps[0].kind, StepKind::SubmitEvidence);
    assert_eq!(decision.steps[0].idempotency_key, format!("{}:4:submit_evidence", d.id));
    assert!(decision.timers.contains(&TimerInstruction::Set {
        kind: TimerKind::OutcomeCheck,
        due_at: at(1) + Duration::days(OUTCOME_CHECK_DAYS),
    }));
    // The deadline timers set at opening are cancelled after the walk's, and none is set again.
    let last_cancel = decision.timers.iter().rposition(|t| *t == TimerInstruction::CancelAll);
    assert!(last_cancel.is_some());
    assert!(
        decision.timers[last_cancel.unwrap_or_default()..]
            .iter()
            .all(|t| matches!(
                t,
                TimerInstruction::CancelAll
                    | TimerInstruction::Set {
                        kind: TimerKind::OutcomeCheck,
                        ..
                    }
            ))
    );
    assert_eq!(replay(&decision_log(&d, &decision)), Some(submitted));
}

fn decision_log(d: &Dispute, decision: &Decision) -> Vec<DisputeEvent> {
    // The opening event of `d` rebuilt, then the decision's events.
    let mut events = vec![DisputeEvent {
        dispute_id: d.id,
        version: 1,
        at: d.created_at,
        actor: Actor::analyst("jane"),
        reason: None,
        change: Change::Opened {
            dispute: Box::new(NewDispute {
                processor: d.processor,
                processor_dispute_id: d.processor_dispute_id.clone(),
                payment_reference: d.payment_reference.clone(),
                order_reference: d.order_reference.clone(),
                seller_id: d.seller_id.clone(),
                customer: d.customer.clone(),
                amount: d.amount,
                reason_code: d.reason_code.clone(),
                reason_code_raw: d.reason_code_raw.clone(),
                stage: d.stage,
                due_by: d.due_by,
                opened_at: d.opened_at,
            }),
        },
    }];
    events.extend(decision.events.iter().cloned());
    events
}

#[test]
fn a_defense_with_required_evidence_missing_is_refused_unless_overridden_and_the_override_is_recorded() {
    let d = dispute(Stage::Chargeback, true);
    let missing = vec![EvidenceKind::ProofOfDelivery, EvidenceKind::Tracking];
    let refused = decide(
        &d,
        &command(
            Action::SubmitDefense {
                missing: missing.clone(),
                override_reason: None,
            },
            1,
        ),
        at(1),
    );
    assert!(matches!(refused, Err(DomainError::InvalidInput(m)) if m.contains("proof_of_delivery, tracking")));
    let overridden = decide(
        &d,
        &command(
            Action::SubmitDefense {
                missing: missing.clone(),
                override_reason: Some("the carrier's signed slip is on paper".into()),
            },
            1,
        ),
        at(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let last = overridden.events.last().unwrap_or_else(|| panic!("no event"));
    assert_eq!(
        last.change,
        Change::DefenseSubmitted {
            from: Status::EvidenceGathering,
            missing_overridden: missing,
        }
    );
    assert!(last.reason.as_deref().unwrap_or_default().contains("override"));
}

#[test]
fn a_submitted_or_closed_dispute_cannot_be_submitted_again() {
    let d = dispute(Stage::Chargeback, true);
    let submit = || Action::SubmitDefense {
        missing: vec![],
        override_reason: None,
    };
    let decision = decide(&d, &command(submit(), 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    let submitted = after(&d, &decision);
    assert!(matches!(
        decide(&submitted, &command(submit(), submitted.version), at(2)),
        Err(DomainError::IllegalTransition { .. })
    ));
}

#[test]
fn a_stale_version_changes_nothing() {
    let d = dispute(Stage::Inquiry, true);
    let refund = Action::Refund {
        request_id: "r1".into(),
        amount: eur(100),
        prior: vec![],
        resolve: true,
    };
    assert!(matches!(
        decide(&d, &command(refund, 7), at(1)),
        Err(DomainError::VersionConflict { expected: 7, actual: 1 })
    ));
}

#[test]
fn resolving_with_a_refund_resolves_and_enqueues_the_refund_alone_with_its_amount() {
    let d = dispute(Stage::Inquiry, true);
    let action = Action::Refund {
        request_id: "goodwill-1".into(),
        amount: eur(4_000),
        prior: vec![],
        resolve: true,
    };
    let decision = decide(&d, &command(action, 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kinds(&decision), ["triaged", "resolved", "refund_requested"]);
    assert_eq!(after(&d, &decision).status, Status::Resolved);
    assert_eq!(
        decision.steps.len(),
        1,
        "the customer's message follows the refund's success, never beside it"
    );
    let step = &decision.steps[0];
    assert_eq!(step.kind, StepKind::Refund);
    assert_eq!(step.idempotency_key, refund_step_key(d.id, "goodwill-1"));
    let payload = step.payload.clone().unwrap_or_default();
    assert_eq!(payload["amount"]["minor_units"], 4_000);
    assert_eq!(payload["amount"]["currency"], "EUR");
    assert!(decision.timers.contains(&TimerInstruction::CancelAll));
}

#[test]
fn a_refund_leaves_the_dispute_open_and_counts_what_was_refunded_before() {
    let d = dispute(Stage::PreDispute, true);
    let prior = vec![RefundRecord {
        request_id: "r1".into(),
        amount: eur(6_000),
    }];
    let too_much = Action::Refund {
        request_id: "r2".into(),
        amount: eur(4_001),
        prior: prior.clone(),
        resolve: false,
    };
    assert!(decide(&d, &command(too_much, 1), at(1)).is_err());
    let again = Action::Refund {
        request_id: "r1".into(),
        amount: eur(1_000),
        prior: prior.clone(),
        resolve: false,
    };
    assert!(decide(&d, &command(again, 1), at(1)).is_err());
    let rest = Action::Refund {
        request_id: "r2".into(),
        amount: eur(4_000),
        prior,
        resolve: false,
    };
    let decision = decide(&d, &command(rest, 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kinds(&decision), ["refund_requested"]);
    assert_eq!(after(&d, &decision).status, Status::Notified);
}

#[test]
fn a_refund_needs_the_version_the_caller_saw_and_a_chargeback_is_never_refunded() {
    let inquiry = dispute(Stage::Inquiry, true);
    let refund = |resolve| Action::Refund {
        request_id: "r1".into(),
        amount: eur(100),
        prior: vec![],
        resolve,
    };
    let unversioned = Command::new(Actor::analyst("jane"), refund(false));
    assert!(
        matches!(decide(&inquiry, &unversioned, at(1)), Err(DomainError::InvalidInput(m)) if m.contains("version"))
    );
    let chargeback = dispute(Stage::Chargeback, true);
    for resolve in [false, true] {
        assert!(matches!(
            decide(&chargeback, &command(refund(resolve), 1), at(1)),
            Err(DomainError::InvalidInput(m)) if m.contains("twice")
        ));
    }
}

#[test]
fn a_message_is_requested_with_its_text_in_the_step_only_and_recorded_sent_by_its_step() {
    let d = dispute(Stage::Chargeback, true);
    let action = Action::SendMessage {
        template: MessageTemplate::CustomerRequestInformation,
        text: Some("  Pourriez-vous nous renvoyer l'appareil ?  ".into()),
        locale: None,
    };
    let decision = decide(&d, &command(action, 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        decision.events[0].change,
        Change::MessageRequested {
            channel: MessageChannel::Customer,
            template: MessageTemplate::CustomerRequestInformation,
            locale: Locale::Fr,
            with_text: true,
        }
    );
    let event_json = serde_json::to_string(&decision.events[0]).unwrap_or_default();
    assert!(!event_json.contains("appareil"), "the text stays out of the history");
    let step = &decision.steps[0];
    assert_eq!(step.kind, StepKind::CustomerMessage);
    let payload = step.payload.clone().unwrap_or_default();
    assert_eq!(payload["text"], "Pourriez-vous nous renvoyer l'appareil ?");
    assert_eq!(payload["locale"], "fr");

    let sent = Action::RecordMessageSent {
        channel: MessageChannel::Customer,
        template: "customer_request_information".into(),
        message_id: step.idempotency_key.clone(),
    };
    let by_analyst = Command::new(Actor::analyst("jane"), sent.clone());
    assert!(decide(&d, &by_analyst, at(2)).is_err());
    let by_step = Command::new(
        Actor {
            kind: ActorKind::Step,
            name: "customer_message".into(),
        },
        sent,
    );
    let recorded = decide(&d, &by_step, at(2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kinds(&recorded), ["message_sent"]);
}

#[test]
fn a_message_to_nobody_is_refused() {
    let d = dispute(Stage::Chargeback, false);
    let action = Action::SendMessage {
        template: MessageTemplate::CustomerCaseUpdate,
        text: None,
        locale: None,
    };
    assert!(decide(&d, &command(action, 1), at(1)).is_err());
    let seller = Action::SendMessage {
        template: MessageTemplate::SellerRequestEvidence,
        text: None,
        locale: None,
    };
    let decision = decide(&d, &command(seller, 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.steps[0].kind, StepKind::SellerMessage);
    assert_eq!(decision.steps[0].payload.clone().unwrap_or_default()["locale"], "en");
}

#[test]
fn a_manual_disputes_defense_is_recorded_without_a_step_that_could_never_reach_a_processor() {
    let mut d = dispute(Stage::Chargeback, true);
    d.processor = Processor::Manual;
    let action = Action::SubmitDefense {
        missing: vec![],
        override_reason: None,
    };
    let decision = decide(&d, &command(action, 1), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after(&d, &decision).status, Status::Submitted);
    assert!(decision.steps.is_empty(), "{:?}", decision.steps);
}
