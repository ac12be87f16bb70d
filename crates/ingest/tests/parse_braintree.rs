//! Braintree fixtures through `parse_braintree` (base64, as delivered) and `parse_braintree_xml`.

use verdict_domain::{CardNetwork, Stage};
use verdict_ingest::{NotificationKind, ParseError, Parsed, braintree_payload, parse_braintree, parse_braintree_xml};

use crate::{fixture_str, only_dispute, utc};

const KINDS: [(&str, NotificationKind); 8] = [
    ("dispute_opened", NotificationKind::ChargebackOpened),
    ("dispute_lost", NotificationKind::Lost),
    ("dispute_won", NotificationKind::Won),
    ("dispute_accepted", NotificationKind::Accepted),
    ("dispute_auto_accepted", NotificationKind::Accepted),
    ("dispute_disputed", NotificationKind::UnderReview),
    ("dispute_expired", NotificationKind::Expired),
    ("dispute_under_review", NotificationKind::UnderReview),
];

#[test]
fn every_current_dispute_kind() {
    for (kind, expected) in KINDS {
        let xml = fixture_str(&format!("braintree/ruby-sdk-sample-notification-{kind}.xml"));
        let n = only_dispute(parse_braintree(&braintree_payload(&xml)).unwrap());
        assert_eq!(n.event_type, kind);
        assert_eq!(n.event_id, format!("{kind}:my_id:2024-01-01T00:00:00Z"));
        assert_eq!(n.processor_dispute_id, "my_id");
        assert_eq!(n.kind, expected, "{kind}");
        assert_eq!(n.stage, Some(Stage::Chargeback));
        let amount = n.amount.unwrap();
        assert_eq!((amount.minor_units(), amount.currency().code()), (10_000, "USD"));
        assert_eq!(n.network, Some(CardNetwork::Visa));
        assert_eq!(n.reason_code_raw.as_deref(), Some("fraud"));
        assert_eq!(
            n.reason_code.map(|c| c.code().to_owned()).as_deref(),
            Some("fraudulent")
        );
        assert_eq!(n.processor_reason.as_deref(), Some("fraud"));
        assert_eq!(n.due_by, Some(utc(2016, 2, 22, 0, 0, 0)));
        assert_eq!(n.payment_reference.as_deref(), Some("my_id"));
        assert_eq!(n.order_reference, None);
        assert_eq!(n.occurred_at, utc(2024, 1, 1, 0, 0, 0));
        let status = kind.trim_start_matches("dispute_").replace("opened", "open");
        assert_eq!(n.raw_status.as_deref(), Some(status.as_str()), "{kind}");
    }
}

#[test]
fn every_legacy_dispute_kind() {
    for (kind, expected) in KINDS {
        let xml = fixture_str(&format!("braintree/ruby-sdk-sample-notification-{kind}-legacy.xml"));
        let n = only_dispute(parse_braintree_xml(&xml).unwrap());
        assert_eq!(n.processor_dispute_id, "legacy_dispute_id");
        assert_eq!(n.kind, expected, "{kind}");
        assert_eq!(n.stage, Some(Stage::Chargeback));
        assert_eq!(n.amount.map(|a| a.to_string()), Some("100.00 USD".into()));
        assert_eq!(n.network, None);
        assert_eq!(n.due_by, Some(utc(2014, 3, 21, 0, 0, 0)));
        assert_eq!(n.payment_reference.as_deref(), Some("legacy_dispute_id"));
    }
}

#[test]
fn retrieval_and_pre_arbitration_kinds() {
    let xml = fixture_str("braintree/ruby-sdk-sample-notification-dispute_opened.xml");
    let retrieval = xml.replace("<kind>chargeback</kind>", "<kind>retrieval</kind>");
    let n = only_dispute(parse_braintree_xml(&retrieval).unwrap());
    assert_eq!((n.kind, n.stage), (NotificationKind::Inquiry, Some(Stage::Inquiry)));
    let pre_arb = xml.replace("<kind>chargeback</kind>", "<kind>pre_arbitration</kind>");
    let n = only_dispute(parse_braintree_xml(&pre_arb).unwrap());
    assert_eq!(
        (n.kind, n.stage),
        (NotificationKind::PreArbitrationOpened, Some(Stage::PreArbitration))
    );
    let lost = pre_arb.replace("<kind>dispute_opened</kind>", "<kind>dispute_lost</kind>");
    assert_eq!(
        only_dispute(parse_braintree_xml(&lost).unwrap()).kind,
        NotificationKind::PreArbitrationLost
    );
    let coded = xml.replace(r#"<reason-code nil="true"/>"#, "<reason-code>83</reason-code>");
    let n = only_dispute(parse_braintree_xml(&coded).unwrap());
    assert_eq!(n.reason_code_raw.as_deref(), Some("83"));
    assert_eq!(
        n.reason_code.map(|c| (c.network(), c.code().to_owned())),
        Some((CardNetwork::Visa, "10.4".into()))
    );
}

#[test]
fn other_kinds_are_ignored() {
    let xml = r#"<notification><timestamp type="datetime">2024-01-01T00:00:00Z</timestamp><kind>check</kind><subject><check type="boolean">true</check></subject></notification>"#;
    assert_eq!(
        parse_braintree_xml(xml).unwrap(),
        vec![Parsed::Ignored {
            event_id: "check::2024-01-01T00:00:00Z".into(),
            event_type: "check".into()
        }]
    );
}

#[test]
fn malformed_input_is_a_parse_error() {
    assert!(matches!(parse_braintree("***"), Err(ParseError::Base64(_))));
    assert!(matches!(
        parse_braintree(&braintree_payload("<notification>")),
        Err(ParseError::Xml(_))
    ));
    assert!(matches!(
        parse_braintree_xml("<other/>"),
        Err(ParseError::InvalidField { .. })
    ));
    assert_eq!(
        parse_braintree_xml("<notification/>"),
        Err(ParseError::MissingField("notification.kind".into()))
    );
    assert_eq!(
        parse_braintree_xml("<notification><kind>dispute_opened</kind></notification>"),
        Err(ParseError::MissingField("notification.subject.dispute".into()))
    );
    // Entity expansion (billion laughs) is refused: DTDs are not allowed.
    let dtd = r#"<?xml version="1.0"?><!DOCTYPE n [<!ENTITY a "aaaa">]><notification><kind>&a;</kind></notification>"#;
    assert!(matches!(parse_braintree_xml(dtd), Err(ParseError::Xml(_))));
}
