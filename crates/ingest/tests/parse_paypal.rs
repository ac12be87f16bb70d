//! PayPal fixtures through `parse_paypal`.

use serde_json::{Value, json};
use verdict_domain::{CardNetwork, Stage};
use verdict_ingest::{NotificationKind, ParseError, Parsed, parse_paypal};

use crate::{fixture, only_dispute, utc};

fn sample() -> Value {
    serde_json::from_slice(&fixture(
        "paypal/unofficial-mirror/customer-dispute-created-sample.json",
    ))
    .unwrap()
}

#[test]
fn created_sample() {
    let n = only_dispute(
        parse_paypal(&fixture(
            "paypal/unofficial-mirror/customer-dispute-created-sample.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.event_id, "WH-4M0448861G563140B-9EX36365822141321");
    assert_eq!(n.event_type, "CUSTOMER.DISPUTE.CREATED");
    assert_eq!(n.processor_dispute_id, "PP-000-042-663-135");
    assert_eq!(n.kind, NotificationKind::Inquiry);
    assert_eq!(n.stage, Some(Stage::Inquiry));
    let amount = n.amount.unwrap();
    assert_eq!((amount.minor_units(), amount.currency().code()), (300, "USD"));
    assert_eq!(n.network, None);
    assert_eq!(
        n.reason_code_raw.as_deref(),
        Some("MERCHANDISE_OR_SERVICE_NOT_RECEIVED")
    );
    let code = n.reason_code.unwrap();
    assert_eq!(
        (code.network(), code.code()),
        (CardNetwork::Other, "product_not_received")
    );
    assert_eq!(n.due_by, None);
    assert_eq!(n.payment_reference.as_deref(), Some("00D10444LD479031K"));
    assert_eq!(n.order_reference, None);
    assert_eq!(n.occurred_at, utc(2018, 6, 21, 13, 36, 33));
    assert_eq!(n.raw_status.as_deref(), Some("OPEN"));
}

#[test]
fn updated_and_resolved() {
    let mut event = sample();
    event["event_type"] = json!("CUSTOMER.DISPUTE.UPDATED");
    event["resource"]["status"] = json!("WAITING_FOR_SELLER_RESPONSE");
    event["resource"]["dispute_life_cycle_stage"] = json!("CHARGEBACK");
    event["resource"]["seller_response_due_date"] = json!("2018-07-01T13:35:44.000Z");
    event["resource"]["disputed_transactions"][0]["invoice_number"] = json!("INV-7");
    let n = only_dispute(parse_paypal(&serde_json::to_vec(&event).unwrap()).unwrap());
    assert_eq!(n.kind, NotificationKind::EvidenceRequired);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    assert_eq!(n.due_by, Some(utc(2018, 7, 1, 13, 35, 44)));
    assert_eq!(n.order_reference.as_deref(), Some("INV-7"));

    for (outcome, kind) in [
        ("RESOLVED_BUYER_FAVOUR", NotificationKind::Lost),
        ("RESOLVED_SELLER_FAVOUR", NotificationKind::Won),
        ("CANCELED_BY_BUYER", NotificationKind::Withdrawn),
        ("ACCEPTED", NotificationKind::Accepted),
    ] {
        let mut event = sample();
        event["event_type"] = json!("CUSTOMER.DISPUTE.RESOLVED");
        event["resource"]["status"] = json!("RESOLVED");
        event["resource"]["dispute_outcome"] = json!({"outcome_code": outcome});
        let n = only_dispute(parse_paypal(&serde_json::to_vec(&event).unwrap()).unwrap());
        assert_eq!(n.kind, kind, "{outcome}");
    }
}

#[test]
fn other_events_are_ignored() {
    let parsed = parse_paypal(&fixture(
        "paypal/java-sdk-validatecert-event-billing-plan-created.raw.json",
    ))
    .unwrap();
    assert_eq!(
        parsed,
        vec![Parsed::Ignored {
            event_id: "WH-2MW4820926242972J-6SG447389E205703U".into(),
            event_type: "BILLING.PLAN.CREATED".into()
        }]
    );
}

#[test]
fn malformed_input_is_a_parse_error() {
    assert!(matches!(parse_paypal(b"\xff"), Err(ParseError::Json(_))));
    let mut event = sample();
    event["resource"].as_object_mut().unwrap().remove("dispute_id");
    assert_eq!(
        parse_paypal(&serde_json::to_vec(&event).unwrap()),
        Err(ParseError::MissingField("dispute_id".into()))
    );
    let mut event = sample();
    event["create_time"] = json!("not a time");
    assert!(matches!(
        parse_paypal(&serde_json::to_vec(&event).unwrap()),
        Err(ParseError::InvalidField { .. })
    ));
}
