//! Evidence commands: when a dispute's evidence may change, the version check, and what the events hold.

use chrono::TimeZone;

use super::*;
use crate::{CardNetwork, Currency, Customer, Locale, Money, ReasonCode};

fn at(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default() + Duration::hours(hour)
}

fn dispute() -> Dispute {
    let new = NewDispute {
        processor: Processor::Adyen,
        processor_dispute_id: "dp_ev".into(),
        payment_reference: "psp_1".into(),
        order_reference: None,
        seller_id: None,
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount: Money::new(5_000, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}")),
        reason_code: ReasonCode::parse(CardNetwork::Mastercard, "4853").unwrap_or_else(|e| panic!("{e}")),
        reason_code_raw: "4853".into(),
        stage: Stage::Chargeback,
        due_by: Some(at(24 * 10)),
        opened_at: at(0),
    };
    let command = Command::new(Actor::analyst("jane"), Action::Open(Box::new(new)));
    let decision = open(DisputeId::new_v7(), &command, at(0)).unwrap_or_else(|e| panic!("{e}"));
    replay(&decision.events).unwrap_or_else(|| panic!("no dispute"))
}

fn evidence(kind: EvidenceKind) -> EvidenceRef {
    EvidenceRef {
        item_id: Uuid::now_v7(),
        kind,
    }
}

fn add(kinds: &[EvidenceKind]) -> Action {
    Action::AddEvidence {
        items: kinds.iter().map(|k| evidence(*k)).collect(),
        source: EvidenceSource::Analyst,
    }
}

fn run(dispute: &mut Dispute, action: Action, expected: Option<i64>) -> Result<Decision, DomainError> {
    let mut command = Command::new(Actor::analyst("jane"), action);
    command.expected_version = expected;
    let decision = decide(dispute, &command, at(1))?;
    for event in &decision.events {
        apply(dispute, event);
    }
    Ok(decision)
}

#[test]
fn adding_evidence_is_one_event_that_moves_only_the_version() {
    let mut d = dispute();
    let before = d.clone();
    let decision = run(
        &mut d,
        add(&[EvidenceKind::ProofOfDelivery, EvidenceKind::Tracking]),
        Some(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events.len(), 1);
    assert!(decision.timers.is_empty() && decision.steps.is_empty());
    let event = &decision.events[0];
    assert_eq!(event.change.kind(), EventKind::EvidenceAdded);
    assert_eq!(event.change.kind().as_str(), "evidence_added");
    assert_eq!(event.change.status_change(), None);
    assert_eq!(d.version, 2);
    assert_eq!(d.status, before.status);
    assert_eq!(replay([&opened_event(&before), event]).map(|r| r.version), Some(2));
    let json = serde_json::to_value(&event.change).unwrap_or_default();
    assert_eq!(json["type"], "evidence_added");
    assert_eq!(json["items"][0]["kind"], "proof_of_delivery");
}

fn opened_event(d: &Dispute) -> DisputeEvent {
    let new = NewDispute {
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
    };
    DisputeEvent {
        dispute_id: d.id,
        version: 1,
        at: d.created_at,
        actor: Actor::analyst("jane"),
        reason: None,
        change: Change::Opened { dispute: Box::new(new) },
    }
}

#[test]
fn a_stale_version_or_an_empty_list_is_refused() {
    let mut d = dispute();
    assert!(matches!(
        run(&mut d, add(&[EvidenceKind::Photos]), Some(7)),
        Err(DomainError::VersionConflict { expected: 7, actual: 1 })
    ));
    assert!(matches!(
        run(&mut d, add(&[]), Some(1)),
        Err(DomainError::InvalidInput(_))
    ));
    assert_eq!(d.version, 1);
}

#[test]
fn evidence_changes_until_submission_and_never_after() {
    let mut d = dispute();
    for action in [Action::Triage { queue: None }, Action::StartEvidenceGathering] {
        run(&mut d, action, None).unwrap_or_else(|e| panic!("{e}"));
        run(&mut d, add(&[EvidenceKind::Photos]), None).unwrap_or_else(|e| panic!("{e}"));
    }
    let item = evidence(EvidenceKind::Photos);
    let decision = run(&mut d, Action::RemoveEvidence { item }, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decision.events[0].change.kind(), EventKind::EvidenceRemoved);
    run(&mut d, Action::Submit, None).unwrap_or_else(|e| panic!("{e}"));
    let version = d.version;
    assert!(matches!(
        run(&mut d, add(&[EvidenceKind::Photos]), None),
        Err(DomainError::InvalidInput(m)) if m.contains("submitted")
    ));
    assert!(run(&mut d, Action::RemoveEvidence { item }, None).is_err());
    assert_eq!(d.version, version);

    let mut accepted = dispute();
    run(&mut accepted, Action::Accept, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(run(&mut accepted, add(&[EvidenceKind::Photos]), None).is_err());
}
