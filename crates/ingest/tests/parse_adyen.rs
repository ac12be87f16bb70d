//! Adyen fixtures through `parse_adyen`.

use verdict_domain::{CardNetwork, Stage};
use verdict_ingest::{Notification, NotificationKind, ParseError, Parsed, parse_adyen};

use crate::{fixture, only_dispute, utc};

fn parse(name: &str) -> Notification {
    only_dispute(parse_adyen(&fixture(&format!("adyen/{name}"))).unwrap())
}

#[test]
fn chargeback_mastercard_with_leading_space_reason_code() {
    let n = parse("openapi-webhooks-v1-chargeback.json");
    assert_eq!(n.event_id, "QFQTPCQ8HXSKGK82:CHARGEBACK:2021-01-01T01:00:00+01:00");
    assert_eq!(n.event_type, "CHARGEBACK");
    assert_eq!(n.processor_dispute_id, "QFQTPCQ8HXSKGK82");
    assert_eq!(n.kind, NotificationKind::ChargebackOpened);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    let amount = n.amount.unwrap();
    assert_eq!((amount.minor_units(), amount.currency().code()), (1000, "EUR"));
    assert_eq!(n.network, Some(CardNetwork::Mastercard));
    assert_eq!(n.reason_code_raw.as_deref(), Some(" 4853"));
    let code = n.reason_code.unwrap();
    assert_eq!((code.network(), code.code()), (CardNetwork::Mastercard, "4853"));
    assert_eq!(
        n.processor_reason.as_deref(),
        Some("Payment.TxId=300000000524534724 dispute")
    );
    assert_eq!(n.due_by, Some(utc(2021, 7, 31, 1, 3, 7)));
    assert_eq!(n.payment_reference.as_deref(), Some("9913140798220028"));
    assert_eq!(n.order_reference.as_deref(), Some("YOUR_MERCHANT_REFERENCE"));
    assert_eq!(n.occurred_at, utc(2021, 1, 1, 0, 0, 0));
    assert_eq!(n.raw_status, None);
}

#[test]
fn notification_of_chargeback() {
    let n = parse("openapi-webhooks-v1-notification-of-chargeback.json");
    assert_eq!(n.kind, NotificationKind::ChargebackOpened);
    assert_eq!(n.stage, Some(Stage::Chargeback));
    assert_eq!(n.reason_code.map(|c| c.code().to_owned()).as_deref(), Some("4853"));
    assert_eq!(n.due_by, Some(utc(2021, 7, 31, 1, 3, 8)));
}

#[test]
fn request_for_information_is_an_inquiry() {
    let n = parse("openapi-webhooks-v1-request-for-information.json");
    assert_eq!(n.kind, NotificationKind::Inquiry);
    assert_eq!(n.stage, Some(Stage::Inquiry));
    assert_eq!(n.processor_reason, None, "the empty reason is absent");
    assert_eq!(n.reason_code_raw, None);
    assert_eq!(n.network, Some(CardNetwork::Mastercard));
}

#[test]
fn second_chargeback_is_pre_arbitration() {
    let n = parse("openapi-webhooks-v1-second-chargeback.json");
    assert_eq!(n.kind, NotificationKind::PreArbitrationOpened);
    assert_eq!(n.stage, Some(Stage::PreArbitration));
    assert_eq!(
        n.network,
        Some(CardNetwork::Other),
        "jcb is a card scheme the domain does not model"
    );
    assert_eq!(n.reason_code_raw.as_deref(), Some("502"));
    assert_eq!(n.processor_reason.as_deref(), Some("502:Cardmember Dispute"));
    assert_eq!(n.payment_reference, None);
}

#[test]
fn outcomes() {
    let cases = [
        (
            "openapi-webhooks-v1-chargeback-reversed.json",
            NotificationKind::Reversed,
            Some(Stage::Chargeback),
        ),
        (
            "openapi-webhooks-v1-prearbitration-won.json",
            NotificationKind::PreArbitrationWon,
            Some(Stage::PreArbitration),
        ),
        (
            "openapi-webhooks-v1-prearbitration-lost.json",
            NotificationKind::PreArbitrationLost,
            Some(Stage::PreArbitration),
        ),
        (
            "openapi-webhooks-v1-issuer-response-timeframe-expired.json",
            NotificationKind::Won,
            None,
        ),
        (
            "openapi-webhooks-v1-dispute-defense-period-ended.json",
            NotificationKind::Lost,
            None,
        ),
    ];
    for (file, kind, stage) in cases {
        let n = parse(file);
        assert_eq!((n.kind, n.stage), (kind, stage), "{file}");
    }
    let won = parse("openapi-webhooks-v1-prearbitration-won.json");
    assert_eq!(won.network, None, "bank transfer is not a card network");
    let expired = parse("openapi-webhooks-v1-issuer-response-timeframe-expired.json");
    assert_eq!(
        expired.amount.map(|a| (a.minor_units(), a.currency().code())),
        Some((10_000, "USD"))
    );
    assert_eq!(
        expired.reason_code.map(|c| (c.network(), c.code().to_owned())),
        Some((CardNetwork::Visa, "13.1".into()))
    );
    assert_eq!(expired.raw_status.as_deref(), Some("Won"));
    let ended = parse("openapi-webhooks-v1-dispute-defense-period-ended.json");
    assert_eq!(ended.raw_status.as_deref(), Some("Lost"));
    assert_eq!(ended.processor_dispute_id, "9915555555555555");
    assert_eq!(ended.occurred_at, utc(2024, 11, 11, 0, 30, 57));
}

#[test]
fn fraud_notification_is_an_early_warning() {
    let n = parse("openapi-webhooks-v1-notification-of-fraud.json");
    assert_eq!(n.kind, NotificationKind::EarlyFraudWarning);
    assert_eq!(n.stage, Some(Stage::PreDispute));
    assert_eq!(n.network, Some(CardNetwork::Visa));
    assert_eq!(n.reason_code_raw.as_deref(), Some("6"));
    assert_eq!(n.reason_code, None, "a TC40 fraud type is not a chargeback reason code");
}

#[test]
fn information_only_events() {
    for file in [
        "openapi-webhooks-v1-information-supplied.json",
        "openapi-webhooks-v1-issuer-comments.json",
    ] {
        let n = parse(file);
        assert_eq!(n.kind, NotificationKind::InformationOnly, "{file}");
        assert_eq!(n.reason_code.map(|c| c.code().to_owned()).as_deref(), Some("13.3"));
        assert_eq!(n.network, Some(CardNetwork::Visa));
    }
    let supplied = parse("openapi-webhooks-v1-information-supplied.json");
    assert_eq!(supplied.amount.map(|a| a.to_string()), Some("100.00 USD".into()));
    assert_eq!(supplied.raw_status.as_deref(), Some("Pending"));
}

#[test]
fn java_sdk_visa_chargeback() {
    let n = parse("java-sdk-notification-chargeback.json");
    assert_eq!(n.processor_dispute_id, "9915555555555555");
    assert_eq!(n.kind, NotificationKind::ChargebackOpened);
    assert_eq!(n.network, Some(CardNetwork::Visa));
    assert_eq!(
        n.reason_code.map(|c| (c.network(), c.code().to_owned())),
        Some((CardNetwork::Visa, "10.4".into()))
    );
    assert_eq!(
        n.processor_reason.as_deref(),
        Some("Other Fraud-Card Absent Environment")
    );
    assert_eq!(n.payment_reference.as_deref(), Some("9913333333333333"));
    assert_eq!(n.order_reference.as_deref(), Some("XXXXXXXXXX"));
    assert_eq!(n.due_by, None);
    assert_eq!(n.occurred_at, utc(2018, 3, 23, 12, 55, 31));
}

#[test]
fn non_dispute_items_and_balance_platform_are_ignored() {
    let body = serde_json::to_vec(&serde_json::json!({
        "live": "false",
        "notificationItems": [
            serde_json::from_slice::<serde_json::Value>(&fixture("adyen/node-sdk-hmac-vector-report-available-item.json")).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&fixture("adyen/openapi-webhooks-v1-chargeback.json")).unwrap()["notificationItems"][0],
        ]
    }))
    .unwrap();
    let parsed = parse_adyen(&body).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(
        parsed[0],
        Parsed::Ignored {
            event_id: "pspReference:REPORT_AVAILABLE:2019-09-21T11:45:24.637Z".into(),
            event_type: "REPORT_AVAILABLE".into()
        }
    );
    assert_eq!(
        parsed[1].as_dispute().map(|n| n.kind),
        Some(NotificationKind::ChargebackOpened)
    );

    let parsed = parse_adyen(&fixture("adyen/java-sdk-balanceplatform-dispute-created.json")).unwrap();
    assert!(
        matches!(&parsed[..], [Parsed::Ignored { event_type, .. }] if event_type == "balancePlatform.dispute.created")
    );
}

#[test]
fn malformed_input_is_a_parse_error() {
    assert!(matches!(parse_adyen(b""), Err(ParseError::Json(_))));
    assert_eq!(
        parse_adyen(b"{}"),
        Err(ParseError::MissingField("notificationItems".into()))
    );
    assert!(matches!(
        parse_adyen(br#"{"notificationItems":{}}"#),
        Err(ParseError::InvalidField { .. })
    ));
    assert_eq!(
        parse_adyen(br#"{"notificationItems":[{"NotificationRequestItem":{"eventCode":"CHARGEBACK"}}]}"#),
        Err(ParseError::MissingField("notificationItems[0].pspReference".into()))
    );
    assert_eq!(
        parse_adyen(
            br#"{"notificationItems":[{"NotificationRequestItem":{"eventCode":"CHARGEBACK","pspReference":"X"}}]}"#
        ),
        Err(ParseError::MissingField("notificationItems[0].eventDate".into()))
    );
    assert!(matches!(
        parse_adyen(br#"{"notificationItems":[{"NotificationRequestItem":{"eventCode":"CHARGEBACK","pspReference":"X","eventDate":"yesterday"}}]}"#),
        Err(ParseError::InvalidField { .. })
    ));
}
