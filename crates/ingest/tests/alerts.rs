//! Verdict's own alert format, checked against the example in ALERTS.md.

use verdict_domain::{CardNetwork, Processor, Stage};
use verdict_ingest::{NotificationKind, ParseError, Parsed, parse_alert};

use crate::{only_dispute, utc};

pub const EXAMPLE: &str = r#"{
  "alert_id": "cdrn_5f1c2a",
  "provider": "verifi_cdrn",
  "type": "alert.created",
  "occurred_at": "2026-01-01T00:00:00Z",
  "processor": "stripe",
  "payment_reference": "ch_3Pq7ExampleCharge",
  "order_reference": "order-1042",
  "amount": {"minor_units": 4999, "currency": "USD"},
  "card_network": "visa",
  "reason_code": "10.4",
  "respond_by": "2026-01-03T00:00:00Z"
}"#;

#[test]
fn the_documented_example_is_this_one() {
    let doc = include_str!("../ALERTS.md");
    assert!(doc.contains(EXAMPLE), "ALERTS.md example drifted from tests/alerts.rs");
}

#[test]
fn example_parses() {
    let n = only_dispute(parse_alert(EXAMPLE.as_bytes()).unwrap());
    assert_eq!(n.processor, Processor::Stripe);
    assert_eq!(n.event_id, "verifi_cdrn:cdrn_5f1c2a:alert.created:2026-01-01T00:00:00Z");
    assert_eq!(n.event_type, "alert.created");
    assert_eq!(n.processor_dispute_id, "cdrn_5f1c2a");
    assert_eq!(n.kind, NotificationKind::PreDisputeAlert);
    assert_eq!(n.stage, Some(Stage::PreDispute));
    assert_eq!(n.amount.map(|a| a.to_string()), Some("49.99 USD".into()));
    assert_eq!(n.network, Some(CardNetwork::Visa));
    assert_eq!(
        n.reason_code.map(|c| (c.network(), c.code().to_owned())),
        Some((CardNetwork::Visa, "10.4".into()))
    );
    assert_eq!(n.processor_reason.as_deref(), Some("verifi_cdrn"));
    assert_eq!(n.due_by, Some(utc(2026, 1, 3, 0, 0, 0)));
    assert_eq!(n.payment_reference.as_deref(), Some("ch_3Pq7ExampleCharge"));
    assert_eq!(n.order_reference.as_deref(), Some("order-1042"));
    assert_eq!(n.occurred_at, utc(2026, 1, 1, 0, 0, 0));
}

fn with(change: impl FnOnce(&mut serde_json::Value)) -> Result<Vec<Parsed>, ParseError> {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    change(&mut v);
    parse_alert(&serde_json::to_vec(&v).unwrap())
}

#[test]
fn minimal_ethoca_alert_and_resolution() {
    let body =
        br#"{"alert_id":"eth_1","provider":"ethoca","type":"alert.created","occurred_at":"2026-02-01T10:00:00+01:00"}"#;
    let n = only_dispute(parse_alert(body).unwrap());
    assert_eq!(n.processor, Processor::Manual);
    assert_eq!(n.processor_dispute_id, "eth_1");
    assert_eq!(n.occurred_at, utc(2026, 2, 1, 9, 0, 0));
    assert_eq!((n.amount, n.network, n.due_by), (None, None, None));

    let n = only_dispute(
        with(|v| {
            v["type"] = "alert.resolved".into();
            v["outcome"] = "refunded".into();
            v["provider"] = "verifi_rdr".into();
        })
        .unwrap(),
    );
    assert_eq!(n.kind, NotificationKind::Accepted);
    assert_eq!(n.raw_status.as_deref(), Some("refunded"));
    let n = only_dispute(
        with(|v| {
            v["type"] = "alert.resolved".into();
            v["outcome"] = "declined".into();
        })
        .unwrap(),
    );
    assert_eq!(n.kind, NotificationKind::InformationOnly);
}

#[test]
fn unknown_type_is_ignored_and_bad_fields_are_errors() {
    assert!(matches!(
        &with(|v| v["type"] = "alert.tested".into()).unwrap()[..],
        [Parsed::Ignored { .. }]
    ));
    assert!(matches!(
        with(|v| v["provider"] = "acme".into()),
        Err(ParseError::InvalidField { .. })
    ));
    assert!(matches!(
        with(|v| v["card_network"] = "bitcoin".into()),
        Err(ParseError::InvalidField { .. })
    ));
    assert!(matches!(
        with(|v| v["processor"] = "square".into()),
        Err(ParseError::InvalidField { .. })
    ));
    assert!(matches!(
        with(|v| v["respond_by"] = "soon".into()),
        Err(ParseError::InvalidField { .. })
    ));
    assert!(matches!(
        with(|v| {
            v.as_object_mut().unwrap().remove("occurred_at");
        }),
        Err(ParseError::MissingField(_))
    ));
    assert!(matches!(
        with(|v| {
            v.as_object_mut().unwrap().remove("alert_id");
        }),
        Err(ParseError::MissingField(_))
    ));
    // An unusable amount is dropped, not fatal.
    let n = only_dispute(with(|v| v["amount"]["minor_units"] = 0.into()).unwrap());
    assert_eq!(n.amount, None);
}
