use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::facts::{ReferenceKind, TaggedReference};
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
fn opening_sets_reminders_the_act_by_time_and_the_deadline() {
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
            ("act_by".to_owned(), at(240)),
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
    let outcome =
        by(&mut dispute, processor(), Action::RecordOutcome { won: true }, at(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dispute.status, Status::Won);
    assert_eq!(dispute.version, 5);
    // A follow-up stored with the older action is recorded as what it is: the processor's outcome.
    assert_eq!(outcome.events[0].change.kind().as_str(), "outcome_received");
}

#[test]
fn an_analyst_cannot_report_the_processors_outcome_or_update() {
    for action in [
        Action::RecordOutcome { won: true },
        Action::ReceiveOutcome {
            won: false,
            stage: None,
        },
        Action::ProcessorUpdate {
            status: Some(Status::Withdrawn),
            stage: None,
            due_by: None,
        },
    ] {
        let mut dispute = submitted(Stage::Chargeback);
        let before = dispute.clone();
        assert!(
            matches!(run(&mut dispute, action.clone()), Err(DomainError::InvalidInput(_))),
            "{action:?}"
        );
        assert_eq!(dispute, before);
    }
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
    by(&mut dispute, processor(), Action::RecordOutcome { won: true }, at(1)).unwrap_or_else(|e| panic!("{e}"));
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
            due_by: None,
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
            due_by: None,
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
    assert_eq!(decision.events[0].change.kind(), EventKind::Corrected);
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

fn processor() -> Actor {
    Actor::processor(Processor::Stripe)
}

fn by(dispute: &mut Dispute, actor: Actor, action: Action, now: DateTime<Utc>) -> Result<Decision, DomainError> {
    let decision = decide(dispute, &Command::new(actor, action).because("test"), now)?;
    for event in &decision.events {
        apply(dispute, event);
    }
    Ok(decision)
}

fn submitted(stage: Stage) -> Dispute {
    let mut dispute = opened_dispute(stage);
    for action in [
        Action::Triage { queue: None },
        Action::StartEvidenceGathering,
        Action::Submit,
    ] {
        run(&mut dispute, action).unwrap_or_else(|e| panic!("{e}"));
    }
    dispute
}

fn transition_to(to: Status, expected_version: i64) -> Action {
    Action::Transition {
        to,
        expected_version,
        stage: None,
        due_by: None,
    }
}

#[test]
fn an_analyst_cannot_record_an_outcome_by_hand() {
    for to in [Status::Won, Status::Lost, Status::Expired] {
        let mut dispute = submitted(Stage::Chargeback);
        let before = dispute.clone();
        let refused = run(&mut dispute, transition_to(to, before.version));
        match refused {
            Err(DomainError::InvalidInput(message)) => {
                assert!(message.contains("outcome") && message.contains("lead"), "{message}")
            }
            other => panic!("{to}: {other:?}"),
        }
        assert_eq!(dispute, before);
    }
}

#[test]
fn a_lead_overrides_an_outcome_with_a_reason_and_the_event_says_so() {
    let mut dispute = submitted(Stage::Chargeback);
    let version = dispute.version;
    let override_won = |reason: Option<&str>, expected_version: i64| Command {
        actor: Actor::analyst("lena"),
        reason: reason.map(str::to_owned),
        action: Action::OverrideOutcome {
            to: Status::Won,
            expected_version,
        },
        expected_version: None,
    };
    for reason in [None, Some(""), Some("   ")] {
        assert!(matches!(
            decide(&dispute, &override_won(reason, version), at(2)),
            Err(DomainError::InvalidInput(_))
        ));
    }
    assert_eq!(
        decide(
            &dispute,
            &override_won(Some("won per the Stripe dashboard"), version - 1),
            at(2)
        ),
        Err(DomainError::VersionConflict {
            expected: version - 1,
            actual: version
        })
    );
    let decision = decide(
        &dispute,
        &override_won(Some("won per the Stripe dashboard"), version),
        at(2),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events[0].change.kind(), EventKind::OutcomeOverridden);
    assert_eq!(decision.events[0].change.kind().as_str(), "outcome_overridden");
    assert!(decision.steps.iter().any(|s| s.kind == StepKind::SellerMessage));
    assert_eq!(decision.timers, vec![TimerInstruction::CancelAll]);
    apply(&mut dispute, &decision.events[0]);
    assert_eq!(dispute.status, Status::Won);
    // Only outcomes are overridden, and only where the processor could have put the dispute.
    let triaged = {
        let mut d = opened_dispute(Stage::Chargeback);
        run(&mut d, Action::Triage { queue: None }).unwrap_or_else(|e| panic!("{e}"));
        d
    };
    let accept = Command::new(
        Actor::analyst("lena"),
        Action::OverrideOutcome {
            to: Status::Accepted,
            expected_version: triaged.version,
        },
    )
    .because("x");
    assert!(matches!(
        decide(&triaged, &accept, at(2)),
        Err(DomainError::InvalidInput(_))
    ));
    let expire_won = Command::new(
        Actor::analyst("lena"),
        Action::OverrideOutcome {
            to: Status::Expired,
            expected_version: dispute.version,
        },
    )
    .because("x");
    assert!(matches!(
        decide(&dispute, &expire_won, at(2)),
        Err(DomainError::IllegalTransition { .. })
    ));
}

#[test]
fn a_processor_outcome_jumps_directly_without_invented_steps() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let decision = by(
        &mut dispute,
        processor(),
        Action::ReceiveOutcome { won: true, stage: None },
        at(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events.len(), 1);
    assert_eq!(decision.events[0].change.kind().as_str(), "outcome_received");
    assert_eq!(
        decision.events[0].change.status_change(),
        Some((Some(Status::Notified), Status::Won))
    );
    assert_eq!(dispute.status, Status::Won);
    assert!(decision.steps.iter().all(|s| s.kind == StepKind::SellerMessage));
    // A second cycle decided without its opening notice: one event, at the later stage.
    let decision = by(
        &mut dispute,
        processor(),
        Action::ReceiveOutcome {
            won: false,
            stage: Some(Stage::PreArbitration),
        },
        at(2),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events.len(), 1);
    assert_eq!((dispute.status, dispute.stage), (Status::Lost, Stage::PreArbitration));
    // Lost again at the same stage is no transition.
    assert!(matches!(
        by(
            &mut dispute,
            processor(),
            Action::ReceiveOutcome { won: true, stage: None },
            at(3)
        ),
        Err(DomainError::IllegalTransition { .. })
    ));
}

/// Verdict's expiry is an inference; the processor's later outcome is its word and is recorded, not flagged.
#[test]
fn an_expired_dispute_takes_the_processors_later_outcome() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let timer = Actor {
        kind: ActorKind::Timer,
        name: "deadline".into(),
    };
    by(&mut dispute, timer, Action::Expire, at(240)).unwrap_or_else(|e| panic!("{e}"));
    let decision = by(
        &mut dispute,
        processor(),
        Action::ReceiveOutcome { won: true, stage: None },
        at(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dispute.status, Status::Won);
    assert_eq!(decision.events[0].change.kind(), EventKind::OutcomeReceived);
    // Accepted, withdrawn and resolved disputes never move, whoever asks.
    for closed in [Status::Accepted, Status::Withdrawn, Status::Resolved] {
        for to in Status::ALL {
            for stage_to in Stage::ALL {
                assert!(!processor_transition_allowed(closed, *to, Stage::Chargeback, *stage_to));
            }
        }
    }
}

#[test]
fn processor_updates_close_reopen_and_move_the_due_date_as_the_processor_says() {
    let mut dispute = opened_dispute(Stage::Inquiry);
    let decision = by(
        &mut dispute,
        processor(),
        Action::ProcessorUpdate {
            status: None,
            stage: Some(Stage::Chargeback),
            due_by: Some(at(400)),
        },
        at(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events[0].change.kind().as_str(), "processor_update");
    assert_eq!(
        decision.events[0].change.status_change(),
        None,
        "the status did not move"
    );
    assert_eq!(
        (dispute.status, dispute.stage, dispute.due_by),
        (Status::Notified, Stage::Chargeback, Some(at(400)))
    );
    assert_eq!(decision.timers[0], TimerInstruction::CancelAll);
    assert!(decision.timers.contains(&TimerInstruction::Set {
        kind: TimerKind::Deadline,
        due_at: at(400)
    }));
    // Accepted at the processor: no step asks the processor to accept again.
    let mut accepted = dispute.clone();
    let decision = by(
        &mut accepted,
        processor(),
        Action::ProcessorUpdate {
            status: Some(Status::Accepted),
            stage: None,
            due_by: None,
        },
        at(2),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(decision.steps.is_empty());
    assert_eq!(accepted.status, Status::Accepted);
    // Nothing to change is refused, so that a walk ends.
    assert!(
        by(
            &mut dispute.clone(),
            processor(),
            Action::ProcessorUpdate {
                status: None,
                stage: Some(Stage::Inquiry),
                due_by: Some(at(400))
            },
            at(2)
        )
        .is_err()
    );
    // Reopening without a due date clears the old cycle's date: no deadline of the old cycle fires.
    let mut won = submitted(Stage::Chargeback);
    by(&mut won, processor(), Action::RecordOutcome { won: true }, at(1)).unwrap_or_else(|e| panic!("{e}"));
    let decision = by(
        &mut won,
        processor(),
        Action::ProcessorUpdate {
            status: Some(Status::EvidenceGathering),
            stage: Some(Stage::PreArbitration),
            due_by: None,
        },
        at(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (won.status, won.stage, won.due_by),
        (Status::EvidenceGathering, Stage::PreArbitration, None)
    );
    assert_eq!(decision.timers, vec![TimerInstruction::CancelAll]);
}

#[test]
fn reopening_needs_a_new_due_date_in_the_future() {
    let mut won = submitted(Stage::Chargeback);
    by(&mut won, processor(), Action::RecordOutcome { won: true }, at(1)).unwrap_or_else(|e| panic!("{e}"));
    let reopen = |due_by: Option<DateTime<Utc>>| Action::Transition {
        to: Status::EvidenceGathering,
        expected_version: won.version,
        stage: Some(Stage::PreArbitration),
        due_by,
    };
    let now = at(24 * 30);
    for due_by in [None, Some(now - Duration::hours(1)), Some(now + Duration::days(400))] {
        assert!(
            matches!(
                by(&mut won.clone(), Actor::analyst("lena"), reopen(due_by), now),
                Err(DomainError::InvalidInput(_))
            ),
            "{due_by:?}"
        );
    }
    let mut reopened = won.clone();
    let decision = by(
        &mut reopened,
        Actor::analyst("lena"),
        reopen(Some(now + Duration::days(20))),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reopened.due_by, Some(now + Duration::days(20)));
    assert!(decision.timers.contains(&TimerInstruction::Set {
        kind: TimerKind::Deadline,
        due_at: now + Duration::days(20)
    }));
    assert!(
        by(
            &mut won.clone(),
            processor(),
            Action::Reopen {
                stage: Stage::PreArbitration,
                due_by: None
            },
            now
        )
        .is_err()
    );
}

#[test]
fn due_dates_are_bounded_for_analysts_and_flagged_for_processors() {
    let now = at(0);
    let open_with = |actor: Actor, due_by: DateTime<Utc>| {
        let mut new = new_dispute(Stage::Chargeback, CardNetwork::Visa, "10.4");
        new.due_by = Some(due_by);
        open(
            DisputeId::new_v7(),
            &Command::new(actor, Action::Open(Box::new(new))),
            now,
        )
    };
    let far = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).single().unwrap_or_default();
    let epoch = DateTime::<Utc>::from_timestamp(1, 0).unwrap_or_default();
    for due_by in [far, epoch, now, now + Duration::days(MAX_DUE_AHEAD_DAYS + 1)] {
        assert!(
            matches!(open_with(analyst(), due_by), Err(DomainError::InvalidInput(_))),
            "{due_by}"
        );
    }
    assert!(open_with(analyst(), now + Duration::days(MAX_DUE_AHEAD_DAYS)).is_ok());
    // Stripe's `due_by=1`: opened, flagged, and not expired before the grace window.
    let decision = open_with(processor(), epoch).unwrap_or_else(|e| panic!("{e}"));
    let reason = decision.events[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("flagged") && reason.contains("already past"),
        "{reason}"
    );
    let deadline = decision.timers.iter().find_map(|t| match t {
        TimerInstruction::Set {
            kind: TimerKind::Deadline,
            due_at,
        } => Some(*due_at),
        _ => None,
    });
    assert_eq!(deadline, Some(now + Duration::hours(PAST_DUE_GRACE_HOURS)));
    let analyst_change = decide(
        &replay(&decision.events).unwrap_or_else(|| panic!("no dispute")),
        &Command::new(analyst(), Action::ChangeDueBy { due_by: Some(far) }),
        now,
    );
    assert!(matches!(analyst_change, Err(DomainError::InvalidInput(_))));
}

#[test]
fn the_act_by_time_passing_keeps_the_dispute_open_until_the_processor_deadline() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let timer = Actor {
        kind: ActorKind::Timer,
        name: "act_by".into(),
    };
    let decision =
        by(&mut dispute, timer.clone(), Action::RecordActByPassed, at(216)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dispute.status, Status::Notified);
    assert_eq!(decision.events[0].change.kind().as_str(), "act_by_passed");
    assert!(decision.steps.iter().any(|s| s.kind == StepKind::NotifyAssignee));
    assert_eq!(
        decision.timers,
        vec![
            TimerInstruction::CancelAll,
            TimerInstruction::Set {
                kind: TimerKind::Deadline,
                due_at: at(240)
            }
        ]
    );
    let mut done = submitted(Stage::Chargeback);
    assert!(by(&mut done, timer, Action::RecordActByPassed, at(216)).is_err());
}

#[test]
fn a_command_that_states_a_version_fails_on_another() {
    let dispute = opened_dispute(Stage::Chargeback);
    let take = Command::new(
        analyst(),
        Action::Assign {
            assignee: Some("jane".into()),
        },
    );
    assert_eq!(
        decide(&dispute, &take.clone().expecting(0), at(1)),
        Err(DomainError::VersionConflict { expected: 0, actual: 1 })
    );
    assert!(decide(&dispute, &take.expecting(1), at(1)).is_ok());
}

#[test]
fn events_stored_before_this_version_still_read() {
    let stored = [
        r#"{"type":"transitioned","from":"evidence_gathering","to":"submitted","manual":true}"#,
        r#"{"type":"transitioned","from":"won","to":"evidence_gathering","manual":true,"stage":"pre_arbitration"}"#,
        r#"{"type":"transitioned","from":"notified","to":"triaged","manual":false,"queue":"fraud"}"#,
        r#"{"type":"stage_advanced","from":"inquiry","to":"chargeback","due_by":null}"#,
        r#"{"type":"due_by_changed","from":null,"to":"2026-11-20T00:00:00Z"}"#,
        r#"{"type":"assigned","from":null,"to":"jane"}"#,
        r#"{"type":"reminder_recorded","hours_before":24}"#,
        r#"{"type":"outcome_escalated"}"#,
    ];
    for json in stored {
        let change: Change = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(
            serde_json::to_value(&change).ok(),
            serde_json::from_str(json).ok(),
            "{json}"
        );
    }
    let command = r#"{"actor":{"kind":"analyst","name":"jane"},"reason":"x","action":{"Transition":{"to":"triaged","expected_version":1,"stage":null}}}"#;
    let command: Command = serde_json::from_str(command).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(command.expected_version, None);
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
        (
            status.clone(),
            0_i64..12,
            prop::option::of(stage.clone()),
            prop::option::of(-100_i64..2_000)
        )
            .prop_map(|(to, expected_version, stage, h)| Action::Transition {
                to,
                expected_version,
                stage,
                due_by: h.map(at)
            }),
        (
            prop::option::of(status.clone()),
            prop::option::of(stage.clone()),
            prop::option::of(-100_i64..2_000)
        )
            .prop_map(|(status, stage, h)| Action::ProcessorUpdate {
                status,
                stage,
                due_by: h.map(at)
            }),
        (any::<bool>(), prop::option::of(stage)).prop_map(|(won, stage)| Action::ReceiveOutcome { won, stage }),
        (status, 0_i64..12).prop_map(|(to, expected_version)| Action::OverrideOutcome { to, expected_version }),
        Just(Action::RecordActByPassed),
        (
            prop::sample::select(vec!["order-1", "order-2", " "]),
            prop::sample::select(vec!["seller-1", "seller-2"])
        )
            .prop_map(|(order, seller)| Action::LinkOrder {
                order_reference: order.to_owned(),
                source: "tables".to_owned(),
                seller_id: seller.to_owned(),
                customer: linked_customer(),
                seller_task: None,
                profile: None,
            }),
        Just(Action::RecordOrderNotFound {
            source: "tables".to_owned(),
            tried: vec![ReferenceKind::Charge, ReferenceKind::OrderId],
        }),
    ]
}

fn any_actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        Just(analyst()),
        Just(Actor::processor(Processor::Stripe)),
        Just(Actor {
            kind: ActorKind::Timer,
            name: "deadline".into()
        }),
    ]
}

proptest! {
    // `VERDICT_FUZZ_CASES` runs the state machine's properties longer (docs/reliability.md); 256 by default.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("VERDICT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]
    #[test]
    fn folding_accepted_events_reproduces_the_projection(
        start in prop::sample::select(Stage::ALL.to_vec()),
        actions in prop::collection::vec(
            (any_action(), prop::option::of(prop::sample::select(vec!["", "why", "because"])), any_actor(), prop::option::of(0_i64..12)),
            0..40,
        ),
    ) {
        let open_command = Command::new(analyst(), Action::Open(Box::new(new_dispute(start, CardNetwork::Mastercard, "4853"))));
        let decision = open(DisputeId::new_v7(), &open_command, at(0)).unwrap_or_else(|e| panic!("{e}"));
        let mut log = decision.events.clone();
        let mut dispute = replay(&log).unwrap_or_else(|| panic!("no dispute"));
        for (step, (action, reason, actor, expected_version)) in actions.into_iter().enumerate() {
            let command = Command { actor, reason: reason.map(str::to_owned), action, expected_version };
            let before = dispute.clone();
            match decide(&dispute, &command, at(step as i64 + 1)) {
                Ok(decision) => {
                    prop_assert_eq!(decision.events.len(), 1);
                    for event in decision.events {
                        prop_assert_eq!(event.version, dispute.version + 1, "version rises by one per event");
                        let old_status = dispute.status;
                        apply(&mut dispute, &event);
                        if !old_status.is_open() && dispute.status != old_status {
                            // Only a second cycle reopens or re-decides a decided dispute, and only the
                            // processor's word (or a lead's override in its stead) decides an expired one.
                            if old_status == Status::Expired {
                                prop_assert!(matches!(dispute.status, Status::Won | Status::Lost));
                            } else {
                                prop_assert!(matches!(old_status, Status::Won | Status::Lost));
                                prop_assert!(dispute.stage.rank() > before.stage.rank());
                                prop_assert!(matches!(dispute.stage, Stage::PreArbitration | Stage::Arbitration));
                            }
                        }
                        prop_assert!(dispute.stage.rank() >= before.stage.rank(), "a stage never moves backwards");
                        if let Change::Transitioned { manual: true, to, .. } = &event.change {
                            prop_assert!(!is_outcome(*to), "a manual transition never records an outcome");
                        }
                        if let Some(expected) = command.expected_version {
                            prop_assert_eq!(expected, before.version);
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
        actions in prop::collection::vec((any_action(), any_actor()), 0..30),
    ) {
        let open_command = Command::new(analyst(), Action::Open(Box::new(new_dispute(start, CardNetwork::Visa, "10.4"))));
        let mut chained = open(DisputeId::new_v7(), &open_command, at(0)).unwrap_or_else(|e| panic!("{e}"));
        let mut dispute = replay(&chained.events).unwrap_or_else(|| panic!("no dispute"));
        for (step, (action, actor)) in actions.into_iter().enumerate() {
            let command = Command::new(actor, action).because("test");
            let now = at(step as i64 + 1);
            if let Ok(decision) = decide(&dispute, &command, now) {
                for timer in &decision.timers {
                    if let TimerInstruction::Set { kind: TimerKind::Deadline, due_at } = timer {
                        prop_assert!(*due_at > now, "a deadline never expires a dispute at once: {:?}", decision);
                    }
                }
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

#[test]
fn changing_the_due_date_after_submission_keeps_the_outcome_check() {
    let mut dispute = submitted(Stage::Chargeback);
    let later = at(1) + Duration::days(30);
    let decision = run(&mut dispute, Action::ChangeDueBy { due_by: Some(later) }).unwrap_or_else(|e| panic!("{e}"));
    assert!(decision.timers.is_empty(), "{:?}", decision.timers);
    assert_eq!(dispute.due_by, Some(later));
}

fn linked_customer() -> Customer {
    Customer {
        name: crate::CustomerName::parse("Jeanne Dupont").ok(),
        email: crate::CustomerEmail::parse("jeanne@example.fr").ok(),
        locale: Locale::Fr,
    }
}

/// As a webhook opens it: no seller, no customer's email.
fn unlinked(stage: Stage) -> NewDispute {
    NewDispute {
        seller_id: None,
        ..new_dispute(stage, CardNetwork::Visa, "10.4")
    }
}

#[test]
fn a_dispute_that_comes_with_its_seller_and_customer_needs_no_link() {
    let mut complete = new_dispute(Stage::Chargeback, CardNetwork::Visa, "10.4");
    complete.customer = linked_customer();
    let command = Command::new(analyst(), Action::Open(Box::new(complete)));
    let decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    assert!(decision.steps.is_empty(), "{:?}", decision.steps);
}

#[test]
fn opening_enqueues_the_link_step_with_the_references_order_first() {
    let command = Command::new(analyst(), Action::Open(Box::new(unlinked(Stage::Chargeback))));
    let decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.steps.len(), 1);
    let link = &decision.steps[0];
    assert_eq!(link.kind, StepKind::LinkOrder);
    assert!(
        link.idempotency_key.ends_with(":1:link_order"),
        "{}",
        link.idempotency_key
    );
    assert_eq!(
        link_references(link.payload.as_ref()),
        vec![
            TaggedReference::new(ReferenceKind::OrderReference, "order-1"),
            TaggedReference::new(ReferenceKind::PaymentReference, "pi_1"),
        ]
    );
}

#[test]
fn the_engine_may_widen_the_link_references_and_duplicates_and_blanks_are_dropped() {
    let command = Command::new(analyst(), Action::Open(Box::new(unlinked(Stage::Chargeback))));
    let mut decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    decision.link_by(vec![
        TaggedReference::new(ReferenceKind::Charge, "ch_1"),
        TaggedReference::new(ReferenceKind::PaymentIntent, "pi_1"),
        TaggedReference::new(ReferenceKind::Charge, " ch_1 "),
        TaggedReference::new(ReferenceKind::OrderId, "A-17"),
        TaggedReference::new(ReferenceKind::CustomId, "  "),
    ]);
    assert_eq!(
        link_references(decision.steps[0].payload.as_ref()),
        vec![
            TaggedReference::new(ReferenceKind::OrderId, "A-17"),
            TaggedReference::new(ReferenceKind::OrderReference, "order-1"),
            TaggedReference::new(ReferenceKind::Charge, "ch_1"),
            TaggedReference::new(ReferenceKind::PaymentIntent, "pi_1"),
        ]
    );
}

#[test]
fn linking_an_order_sets_the_seller_and_the_customer() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let decision = run(
        &mut dispute,
        Action::LinkOrder {
            order_reference: " A-17 ".into(),
            source: "tables".into(),
            seller_id: "seller-9".into(),
            customer: linked_customer(),
            seller_task: None,
            profile: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events[0].change.kind(), EventKind::OrderLinked);
    assert_eq!(decision.events[0].change.kind().as_str(), "order_linked");
    assert!(decision.steps.is_empty() && decision.timers.is_empty());
    assert_eq!(dispute.order_reference.as_deref(), Some("A-17"));
    assert_eq!(dispute.seller_id.as_deref(), Some("seller-9"));
    assert_eq!(dispute.customer, linked_customer());
    assert_eq!(dispute.status, Status::Notified, "linking moves no status");
}

#[test]
fn a_seller_owned_link_records_the_task_and_asks_the_seller_for_what_is_needed() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let task = crate::SellerTask {
        liability: crate::SellerLiability::NotReceivedSellerShipped,
        due_at: dispute.due_by.unwrap_or_else(Utc::now) - Duration::days(3),
    };
    let decision = run(
        &mut dispute,
        Action::LinkOrder {
            order_reference: "A-17".into(),
            source: "tables".into(),
            seller_id: "seller-9".into(),
            customer: linked_customer(),
            seller_task: Some(task),
            profile: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let change = serde_json::to_value(&decision.events[0].change).unwrap_or_default();
    assert_eq!(change["seller_task"]["liability"], "not_received_seller_shipped");
    let asks: Vec<&StepRequest> = decision
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::SellerMessage)
        .collect();
    assert_eq!(asks.len(), 1, "{:?}", decision.steps);
    let payload = asks[0].payload.clone().unwrap_or_default();
    assert_eq!(payload["template"], "seller_request_evidence");
    assert!(
        payload["text"]
            .as_str()
            .unwrap_or_default()
            .contains("proof_of_delivery")
    );
}

#[test]
fn linking_the_same_order_twice_is_refused_and_changes_nothing() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let link = Action::LinkOrder {
        order_reference: "A-17".into(),
        source: "tables".into(),
        seller_id: "seller-9".into(),
        customer: linked_customer(),
        seller_task: None,
        profile: None,
    };
    run(&mut dispute, link.clone()).unwrap_or_else(|e| panic!("{e}"));
    let before = dispute.clone();
    assert!(matches!(run(&mut dispute, link), Err(DomainError::InvalidInput(_))));
    assert_eq!(dispute, before);
}

#[test]
fn a_blank_order_reference_cannot_be_linked() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let result = run(
        &mut dispute,
        Action::LinkOrder {
            order_reference: "  ".into(),
            source: "tables".into(),
            seller_id: "seller-9".into(),
            customer: linked_customer(),
            seller_task: None,
            profile: None,
        },
    );
    assert!(matches!(result, Err(DomainError::InvalidInput(_))));
}

#[test]
fn an_order_not_found_is_recorded_with_the_kinds_tried_and_nothing_else_changes() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    let before = dispute.clone();
    let decision = run(
        &mut dispute,
        Action::RecordOrderNotFound {
            source: "http".into(),
            tried: vec![
                ReferenceKind::PaymentIntent,
                ReferenceKind::Charge,
                ReferenceKind::Charge,
            ],
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let change = &decision.events[0].change;
    assert_eq!(change.kind().as_str(), "order_not_found");
    assert_eq!(
        change,
        &Change::OrderNotFound {
            source: "http".into(),
            tried: vec![ReferenceKind::Charge, ReferenceKind::PaymentIntent],
        }
    );
    assert_eq!(dispute.customer, before.customer);
    assert_eq!(dispute.seller_id, before.seller_id);
    assert_eq!(dispute.version, before.version + 1);
}

#[test]
fn a_late_link_step_leaves_a_dispute_an_analyst_linked_meanwhile() {
    let mut dispute = opened_dispute(Stage::Chargeback);
    run(
        &mut dispute,
        Action::LinkOrder {
            order_reference: "A-17".into(),
            source: "tables".into(),
            seller_id: "seller-9".into(),
            customer: linked_customer(),
            seller_task: None,
            profile: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let step = Actor {
        kind: ActorKind::Step,
        name: "link_order".into(),
    };
    for action in [
        Action::LinkOrder {
            order_reference: "B-2".into(),
            source: "http".into(),
            seller_id: "seller-other".into(),
            customer: linked_customer(),
            seller_task: None,
            profile: None,
        },
        Action::RecordOrderNotFound {
            source: "http".into(),
            tried: vec![ReferenceKind::Charge],
        },
    ] {
        let result = decide(&dispute, &Command::new(step.clone(), action), at(2));
        assert!(matches!(result, Err(DomainError::InvalidInput(_))), "{result:?}");
    }
    assert_eq!(dispute.order_reference.as_deref(), Some("A-17"));
}

#[test]
fn a_timer_label_reads_back_as_its_kind() {
    for kind in [
        TimerKind::Reminder { hours_before: 72 },
        TimerKind::ActBy,
        TimerKind::Deadline,
        TimerKind::OutcomeCheck,
    ] {
        assert_eq!(TimerKind::from_label(&kind.label()), Some(kind));
    }
    assert_eq!(TimerKind::from_label("reminder_xh"), None);
    assert_eq!(TimerKind::from_label("later"), None);
}
