use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::{CardNetwork, Currency, Customer, Locale, Money, ReasonCode};

fn at(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default() + Duration::hours(hour)
}

fn new_dispute(stage: Stage, network: CardNetwork, code: &str) -> NewDispute {
    NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: "dp_1".into(),
        payment_reference: "pi_1".into(),
        order_reference: Some("order-1".into()),
        seller_id: Some("seller-1".into()),
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::Fr,
        },
        amount: Money::new(12_999, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}")),
        reason_code: ReasonCode::parse(network, code).unwrap_or_else(|e| panic!("{e}")),
        reason_code_raw: code.into(),
        stage,
        due_by: Some(at(24 * 10)),
        opened_at: at(0),
    }
}

fn analyst() -> Actor {
    Actor::analyst("jane")
}

fn opened_dispute(stage: Stage) -> Dispute {
    let command = Command::new(
        analyst(),
        Action::Open(Box::new(new_dispute(stage, CardNetwork::Visa, "10.4"))),
    );
    let decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    replay(&decision.events).unwrap_or_else(|| panic!("no dispute"))
}

fn run(dispute: &mut Dispute, action: Action) -> Result<Decision, DomainError> {
    let decision = decide(dispute, &Command::new(analyst(), action).because("test"), at(1))?;
    for event in &decision.events {
        apply(dispute, event);
    }
    Ok(decision)
}

#[test]
fn opening_sets_reminders_and_the_deadline() {
    let command = Command::new(
        analyst(),
        Action::Open(Box::new(new_dispute(Stage::Chargeback, CardNetwork::Visa, "10.4"))),
    );
    let decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events.len(), 1);
    assert_eq!(decision.events[0].version, 1);
    let kinds: Vec<_> = decision
        .timers
        .iter()
        .filter_map(|t| match t {
            TimerInstruction::Set { kind, due_at } => Some((kind.label(), *due_at)),
            TimerInstruction::CancelAll => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("reminder_72h".to_owned(), at(240 - 72)),
            ("reminder_24h".to_owned(), at(240 - 24)),
            ("reminder_4h".to_owned(), at(240 - 4)),
            ("deadline".to_owned(), at(240)),
        ]
    );
}

#[test]
fn the_happy_path_reaches_won() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    run(&mut dispute, Action::Triage { queue: None }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dispute.queue, Some(Queue::Fraud), "10.4 is fraud");
    run(&mut dispute, Action::StartEvidenceGathering).unwrap_or_else(|e| panic!("{e}"));
    let submitted = run(&mut dispute, Action::Submit).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(submitted.steps[0].kind, StepKind::SubmitEvidence);
    assert!(submitted.timers.contains(&TimerInstruction::CancelAll));
    run(&mut dispute, Action::RecordOutcome { won: true }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dispute.status, Status::Won);
    assert_eq!(dispute.version, 5);
}

#[test]
fn an_outcome_before_submission_is_an_illegal_transition() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let before = dispute.clone();
    assert_eq!(
        run(&mut dispute, Action::RecordOutcome { won: true }),
        Err(DomainError::IllegalTransition {
            from: Status::Notified,
            to: Status::Won
        })
    );
    assert_eq!(dispute, before);
}

#[test]
fn a_won_dispute_reopens_only_with_a_later_stage() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    for action in [
        Action::Triage { queue: None },
        Action::StartEvidenceGathering,
        Action::Submit,
    ] {
        run(&mut dispute, action).unwrap_or_else(|e| panic!("{e}"));
    }
    run(&mut dispute, Action::RecordOutcome { won: true }).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run(
            &mut dispute,
            Action::Reopen {
                stage: Stage::Chargeback,
                due_by: None
            }
        )
        .is_err()
    );
    run(
        &mut dispute,
        Action::Reopen {
            stage: Stage::PreArbitration,
            due_by: Some(at(500)),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (dispute.status, dispute.stage, dispute.due_by),
        (Status::EvidenceGathering, Stage::PreArbitration, Some(at(500)))
    );
}

#[test]
fn resolving_by_refund_is_only_for_inquiries_and_alerts() {
    let mut alert = opened_dispute(Stage::PreDispute);
    run(&mut alert, Action::Triage { queue: None }).unwrap_or_else(|e| panic!("{e}"));
    let resolved = run(&mut alert, Action::Resolve).unwrap_or_else(|e| panic!("{e}"));
    assert!(resolved.steps.iter().any(|s| s.kind == StepKind::Refund));
    // The customer's message follows the refund's success (enqueued by the refund step), never beside it.
    assert!(!resolved.steps.iter().any(|s| s.kind == StepKind::CustomerMessage));
    let mut chargeback = opened_dispute(Stage::Chargeback);
    run(&mut chargeback, Action::Triage { queue: None }).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        run(&mut chargeback, Action::Resolve),
        Err(DomainError::IllegalTransition { .. })
    ));
}

#[test]
fn a_manual_transition_needs_the_current_version_and_a_reason() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let stale = Command::new(
        analyst(),
        Action::Transition {
            to: Status::Triaged,
            expected_version: 0,
            stage: None,
        },
    )
    .because("looked at it");
    assert_eq!(
        decide(&dispute, &stale, at(1)),
        Err(DomainError::VersionConflict { expected: 0, actual: 1 })
    );
    let no_reason = Command::new(
        analyst(),
        Action::Transition {
            to: Status::Triaged,
            expected_version: 1,
            stage: None,
        },
    );
    assert!(matches!(
        decide(&dispute, &no_reason, at(1)),
        Err(DomainError::InvalidInput(_))
    ));
    let blank = no_reason.clone().because("   ");
    assert!(matches!(
        decide(&dispute, &blank, at(1)),
        Err(DomainError::InvalidInput(_))
    ));
    let decision = decide(&dispute, &no_reason.because("customer called"), at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events[0].change.kind(), EventKind::ManuallyTransitioned);
    apply(&mut dispute, &decision.events[0]);
    assert_eq!(dispute.status, Status::Triaged);
    assert_eq!(dispute.queue, Some(Queue::Fraud));
}

#[test]
fn terminal_statuses_other_than_won_and_lost_never_move() {
    for terminal in [Status::Accepted, Status::Expired, Status::Withdrawn, Status::Resolved] {
        for to in Status::ALL {
            for stage in Stage::ALL {
                for stage_to in Stage::ALL {
                    assert!(
                        !transition_allowed(terminal, *to, *stage, *stage_to),
                        "{terminal} -> {to}"
                    );
                }
            }
        }
    }
}

#[test]
fn event_payloads_round_trip_through_json() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let decision = run(
        &mut dispute,
        Action::Triage {
            queue: Some(Queue::Care),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_string(&decision.events[0]).unwrap_or_else(|e| panic!("{e}"));
    let back: DisputeEvent = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, decision.events[0]);
}

fn any_action() -> impl Strategy<Value = Action> {
    let stage = prop::sample::select(Stage::ALL.to_vec());
    let status = prop::sample::select(Status::ALL.to_vec());
    prop_oneof![
        prop::option::of(prop::sample::select(Queue::ALL.to_vec())).prop_map(|queue| Action::Triage { queue }),
        Just(Action::StartEvidenceGathering),
        Just(Action::Submit),
        any::<bool>().prop_map(|won| Action::RecordOutcome { won }),
        Just(Action::Accept),
        Just(Action::Expire),
        Just(Action::Withdraw),
        Just(Action::Resolve),
        (stage.clone(), prop::option::of(0_i64..2_000)).prop_map(|(stage, h)| Action::Reopen {
            stage,
            due_by: h.map(at)
        }),
        (stage.clone(), prop::option::of(0_i64..2_000)).prop_map(|(stage, h)| Action::AdvanceStage {
            stage,
            due_by: h.map(at)
        }),
        prop::option::of(0_i64..2_000).prop_map(|h| Action::ChangeDueBy { due_by: h.map(at) }),
        prop::option::of(prop::sample::select(vec!["", "jane", "omar"])).prop_map(|a| Action::Assign {
            assignee: a.map(str::to_owned)
        }),
        prop::sample::select(vec!["", "called the bank", " "]).prop_map(|n| Action::AddNote { note: n.to_owned() }),
        prop::sample::select(vec![72_i64, 24, 4]).prop_map(|hours_before| Action::RecordReminder { hours_before }),
        Just(Action::EscalateOverdueOutcome),
        (status, 0_i64..12, prop::option::of(stage)).prop_map(|(to, expected_version, stage)| Action::Transition {
            to,
            expected_version,
            stage
        }),
    ]
}

proptest! {
    #[test]
    fn folding_accepted_events_reproduces_the_projection(
        start in prop::sample::select(Stage::ALL.to_vec()),
        actions in prop::collection::vec((any_action(), prop::option::of(prop::sample::select(vec!["", "why", "because"]))), 0..40),
    ) {
        let open_command = Command::new(analyst(), Action::Open(Box::new(new_dispute(start, CardNetwork::Mastercard, "4853"))));
        let decision = open(DisputeId::new_v7(), &open_command, at(0)).unwrap_or_else(|e| panic!("{e}"));
        let mut log = decision.events.clone();
        let mut dispute = replay(&log).unwrap_or_else(|| panic!("no dispute"));
        for (step, (action, reason)) in actions.into_iter().enumerate() {
            let command = Command { actor: analyst(), reason: reason.map(str::to_owned), action };
            let before = dispute.clone();
            match decide(&dispute, &command, at(step as i64 + 1)) {
                Ok(decision) => {
                    prop_assert_eq!(decision.events.len(), 1);
                    for event in decision.events {
                        prop_assert_eq!(event.version, dispute.version + 1, "version rises by one per event");
                        let old_status = dispute.status;
                        apply(&mut dispute, &event);
                        if !old_status.is_open() && dispute.status != old_status {
                            prop_assert!(matches!(old_status, Status::Won | Status::Lost));
                            prop_assert_eq!(dispute.status, Status::EvidenceGathering);
                            prop_assert!(dispute.stage.rank() > before.stage.rank());
                            prop_assert!(matches!(dispute.stage, Stage::PreArbitration | Stage::Arbitration));
                        }
                        log.push(event);
                    }
                }
                Err(_) => prop_assert_eq!(&dispute, &before, "a rejected command changes nothing"),
            }
        }
        prop_assert_eq!(replay(&log), Some(dispute.clone()));
        prop_assert_eq!(dispute.version, log.len() as i64);
    }

    /// Decisions are chained with `Decision::then` and committed together, where a `CancelAll` also cancels the
    /// timers set before it; that is only what committing them one by one does if no single decision sets a
    /// timer before cancelling.
    #[test]
    fn no_decision_sets_a_timer_before_cancelling_all(
        start in prop::sample::select(Stage::ALL.to_vec()),
        actions in prop::collection::vec(any_action(), 0..30),
    ) {
        let open_command = Command::new(analyst(), Action::Open(Box::new(new_dispute(start, CardNetwork::Visa, "10.4"))));
        let mut chained = open(DisputeId::new_v7(), &open_command, at(0)).unwrap_or_else(|e| panic!("{e}"));
        let mut dispute = replay(&chained.events).unwrap_or_else(|| panic!("no dispute"));
        for (step, action) in actions.into_iter().enumerate() {
            let command = Command::new(analyst(), action).because("test");
            if let Ok(decision) = decide(&dispute, &command, at(step as i64 + 1)) {
                let first_cancel = decision.timers.iter().position(|t| matches!(t, TimerInstruction::CancelAll));
                let first_set = decision.timers.iter().position(|t| matches!(t, TimerInstruction::Set { .. }));
                if let (Some(cancel), Some(set)) = (first_cancel, first_set) {
                    prop_assert!(cancel < set, "{:?}", decision.timers);
                }
                for event in &decision.events {
                    apply(&mut dispute, event);
                }
                chained.then(decision);
            }
        }
        prop_assert_eq!(replay(&chained.events), Some(dispute));
    }
}
