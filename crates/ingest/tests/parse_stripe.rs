//! Stripe fixtures through `parse_stripe`.

use serde_json::{Value, json};
use verdict_domain::{CardNetwork, Stage};
use verdict_ingest::{NotificationKind, ParseError, Parsed, parse_stripe};

use crate::{fixture, only_dispute, ts};

/// Wraps a bare Dispute / EFW object from the official fixtures in an event envelope.
fn envelope(event_type: &str, object_path: &str) -> Vec<u8> {
    let object: Value = serde_json::from_slice(&fixture(object_path)).unwrap();
    serde_json::to_vec(&json!({
        "id": "evt_test", "object": "event", "type": event_type, "created": 1_700_000_000, "data": {"object": object}
    }))
    .unwrap()
}

#[test]
fn created_event_is_an_inquiry() {
    let n = only_dispute(
        parse_stripe(&fixture(
            "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.event_id, "evt_000000000000000000000000");
    assert_eq!(n.event_type, "charge.dispute.created");
    assert_eq!(n.processor_dispute_id, "dp_000000000000000000000000");
    assert_eq!(n.kind, NotificationKind::Inquiry);
    assert_eq!(n.stage, Some(Stage::Inquiry));
    let amount = n.amount.unwrap();
    assert_eq!((amount.minor_units(), amount.currency().code()), (100, "USD"));
    assert_eq!(n.network, None);
    assert_eq!(n.reason_code_raw.as_deref(), Some("fraudulent"));
    let code = n.reason_code.unwrap();
    assert_eq!((code.network(), code.code()), (CardNetwork::Other, "fraudulent"));
    assert_eq!(n.processor_reason.as_deref(), Some("fraudulent"));
    assert_eq!(n.due_by, Some(ts(1_649_116_799)));
    assert_eq!(n.payment_reference.as_deref(), Some("ch_000000000000000000000000"));
    assert_eq!(n.order_reference, None);
    assert_eq!(n.occurred_at, ts(1_648_319_940));
    assert_eq!(n.raw_status.as_deref(), Some("warning_needs_response"));
}

#[test]
fn funds_withdrawn_event() {
    let n = only_dispute(
        parse_stripe(&fixture(
            "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.funds_withdrawn.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.processor_dispute_id, "dp_00000000000000");
    assert_eq!(n.kind, NotificationKind::FundsWithdrawn);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    assert_eq!(n.amount.map(|a| a.minor_units()), Some(25_000));
    assert_eq!(n.due_by, Some(ts(1_517_529_599)));
    assert_eq!(n.occurred_at, ts(1_326_853_478));
    assert_eq!(n.raw_status.as_deref(), Some("needs_response"));
}

#[test]
fn legacy_updated_and_closed_events_fall_back_to_the_charge_id() {
    let n = only_dispute(
        parse_stripe(&fixture(
            "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.updated.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.processor_dispute_id, "ch_00000000000000");
    assert_eq!(n.kind, NotificationKind::UnderReview);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    assert_eq!(n.due_by, Some(ts(1_382_745_599)));
    assert_eq!(n.reason_code.map(|c| c.code().to_owned()).as_deref(), Some("general"));

    let n = only_dispute(
        parse_stripe(&fixture(
            "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.closed.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.processor_dispute_id, "ch_00000000000000");
    assert_eq!(n.kind, NotificationKind::Won);
    assert_eq!(
        n.amount.map(|a| (a.minor_units(), a.currency().code())),
        Some((1000, "USD"))
    );
    assert_eq!(n.raw_status.as_deref(), Some("won"));
}

#[test]
fn official_dispute_object_uses_the_network_reason_code() {
    let n = only_dispute(
        parse_stripe(&envelope(
            "charge.dispute.created",
            "stripe/openapi-fixtures3-dispute.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.processor_dispute_id, "dp_1Pgc71B7WZ01zgkWMevJiAUx");
    assert_eq!(n.kind, NotificationKind::Inquiry);
    assert_eq!(n.stage, Some(Stage::Inquiry));
    assert_eq!(n.network, Some(CardNetwork::Visa));
    assert_eq!(n.reason_code_raw.as_deref(), Some("10.4"));
    let code = n.reason_code.unwrap();
    assert_eq!((code.network(), code.code()), (CardNetwork::Visa, "10.4"));
    assert_eq!(n.processor_reason.as_deref(), Some("general"));
    assert_eq!(n.due_by, Some(ts(1_723_679_999)));
    assert_eq!(n.payment_reference.as_deref(), Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"));
    assert_eq!(n.amount.map(|a| a.minor_units()), Some(1000));
    assert_eq!(n.occurred_at, ts(1_700_000_000));
}

#[test]
fn closed_statuses_map_to_outcomes() {
    let cases = [
        ("won", NotificationKind::Won),
        ("lost", NotificationKind::Lost),
        ("warning_closed", NotificationKind::Withdrawn),
        ("charge_refunded", NotificationKind::Accepted),
    ];
    for (status, kind) in cases {
        let mut object: Value = serde_json::from_slice(&fixture(
            "stripe/openapi-fixtures3-2018-dispute-lost-with-balance-transaction.json",
        ))
        .unwrap();
        object["status"] = json!(status);
        object["metadata"] = json!({"order_id": "order-42"});
        let body = serde_json::to_vec(
            &json!({"id": "evt_1", "type": "charge.dispute.closed", "created": 1, "data": {"object": object}}),
        )
        .unwrap();
        let n = only_dispute(parse_stripe(&body).unwrap());
        assert_eq!(n.kind, kind, "{status}");
        assert_eq!(n.order_reference.as_deref(), Some("order-42"));
        assert_eq!(n.processor_dispute_id, "dp_1CO4IG2eZvKYlo2CgPAsBqvE");
    }
}

#[test]
fn other_official_dispute_fixtures() {
    let n = only_dispute(
        parse_stripe(&envelope(
            "charge.dispute.updated",
            "stripe/openapi-fixtures3-2019-dispute-needs-response-with-balance-transaction.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.kind, NotificationKind::EvidenceRequired);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    assert_eq!(n.amount.map(|a| a.minor_units()), Some(5000));
    assert_eq!(n.due_by, Some(ts(1_547_942_399)));

    let n = only_dispute(
        parse_stripe(&envelope(
            "charge.dispute.funds_reinstated",
            "stripe/openapi-fixtures3-2018-dispute-lost-with-balance-transaction.json",
        ))
        .unwrap(),
    );
    assert_eq!(n.kind, NotificationKind::FundsReinstated);
    assert_eq!(n.amount.map(|a| a.minor_units()), Some(1500));
}

#[test]
fn created_chargeback_with_zero_due_by_and_expanded_charge() {
    let body = json!({
        "id": "evt_2", "type": "charge.dispute.created", "created": 1_700_000_000,
        "data": {"object": {
            "id": "dp_2", "amount": 4200, "currency": "eur", "status": "needs_response", "reason": "product_not_received",
            "evidence_details": {"due_by": 0},
            "charge": {"id": "ch_2", "payment_method_details": {"card": {"brand": "mastercard"}}, "metadata": {"order_id": "o-9"}},
            "payment_method_details": {"card": {"case_type": "chargeback", "network_reason_code": "4853"}}
        }}
    });
    let n = only_dispute(parse_stripe(&serde_json::to_vec(&body).unwrap()).unwrap());
    assert_eq!(n.kind, NotificationKind::ChargebackOpened);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    assert_eq!(n.due_by, None);
    assert_eq!(n.network, Some(CardNetwork::Mastercard));
    assert_eq!(
        n.reason_code.map(|c| (c.network(), c.code().to_owned())),
        Some((CardNetwork::Mastercard, "4853".into()))
    );
    assert_eq!(n.payment_reference.as_deref(), Some("ch_2"));
    assert_eq!(n.order_reference.as_deref(), Some("o-9"));
    assert_eq!(n.amount.map(|a| a.to_string()), Some("42.00 EUR".into()));
}

#[test]
fn early_fraud_warning() {
    for event_type in ["radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"] {
        let n = only_dispute(
            parse_stripe(&envelope(
                event_type,
                "stripe/openapi-fixtures3-radar-early-fraud-warning.json",
            ))
            .unwrap(),
        );
        assert_eq!(n.processor_dispute_id, "issfr_1Pgc79B7WZ01zgkWxwDzEIPX");
        assert_eq!(n.kind, NotificationKind::EarlyFraudWarning);
        assert_eq!(n.stage, Some(Stage::PreDispute));
        assert_eq!(n.amount, None);
        assert_eq!(n.payment_reference.as_deref(), Some("ch_1234"));
        assert_eq!(n.processor_reason.as_deref(), Some("misc"));
        assert_eq!(n.reason_code.map(|c| c.category().as_str()), Some("fraud"));
        assert_eq!(n.raw_status.as_deref(), Some("actionable"));
    }
}

#[test]
fn non_dispute_and_legacy_events_are_ignored() {
    for (path, id, ty) in [
        (
            "stripe/java-sdk-webhook-events-legacy-charge.disputed.json",
            "evt_00000000000000",
            "charge.disputed",
        ),
        (
            "stripe/openapi-fixtures3-event-envelope-plan-created.json",
            "evt_1Pgc76B7WZ01zgkWwyRHS12y",
            "plan.created",
        ),
        (
            "stripe/dotnet-sdk-event_test_signature.raw.json",
            "evt_123",
            "customer.created",
        ),
    ] {
        let parsed = parse_stripe(&fixture(path)).unwrap();
        let (event_id, event_type) = match &parsed[..] {
            [Parsed::Ignored { event_id, event_type }] => (event_id.clone(), event_type.clone()),
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(event_type, ty, "{path}");
        assert_eq!(event_id, id, "{path}");
    }
}

#[test]
fn malformed_input_is_a_parse_error() {
    assert!(matches!(parse_stripe(b"{not json"), Err(ParseError::Json(_))));
    assert!(matches!(parse_stripe(b"[]"), Err(ParseError::InvalidField { .. })));
    assert_eq!(
        parse_stripe(br#"{"type":"charge.dispute.created"}"#),
        Err(ParseError::MissingField("id".into()))
    );
    assert_eq!(
        parse_stripe(br#"{"id":"evt","type":"charge.dispute.created","created":1}"#),
        Err(ParseError::MissingField("data.object".into()))
    );
    assert_eq!(
        parse_stripe(br#"{"id":"evt","type":"charge.dispute.created","created":1,"data":{"object":{"amount":1}}}"#),
        Err(ParseError::MissingField("data.object.id".into()))
    );
    assert_eq!(
        parse_stripe(br#"{"id":"evt","type":"charge.dispute.created","data":{"object":{"id":"dp"}}}"#),
        Err(ParseError::MissingField("created".into()))
    );
}
