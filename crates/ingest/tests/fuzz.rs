//! Property tests: no input, however broken, makes a parser or verifier panic; every signature scheme accepts
//! what it signed and refuses it once a byte changes. Cases: `VERDICT_FUZZ_CASES` (512 by default; CI runs
//! the default, a long run sets 100000 or more, docs/reliability.md).

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use verdict_ingest::*;

use crate::all_fixture_files;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_533_204_720, 0).unwrap()
}

fn feed_everything(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_stripe(bytes);
    let _ = parse_adyen(bytes);
    let _ = parse_paypal(bytes);
    let _ = parse_alert(bytes);
    let _ = parse_braintree(&text);
    let _ = parse_braintree_xml(&text);
    let secrets = vec!["webhook_secret".to_owned()];
    let _ = verify_stripe(&text, bytes, &secrets, now(), DEFAULT_TOLERANCE);
    let _ = verify_stripe("t=1533204620,v1=00", bytes, &secrets, now(), DEFAULT_TOLERANCE);
    let _ = verify_alert(&text, bytes, &secrets, now(), DEFAULT_TOLERANCE);
    let key = "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00";
    let _ = verify_adyen_notification(bytes, key);
    let _ = verify_adyen_raw_body(bytes, &text, key);
    let _ = verify_adyen_raw_body(bytes, "UVBzHbDayhfT1XgaRGAkuKvxwoxrLoVCBdfi3WZU8lI=", &text);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let _ = verify_adyen_item(&value, key);
        let _ = adyen_signing_string(&value);
    }
    let creds = vec![BraintreeCredentials {
        public_key: "pk".into(),
        private_key: "sk".into(),
    }];
    let _ = verify_braintree(&text, &text, &creds);
    let _ = verify_braintree("pk|00", &text, &creds);
    let _ = paypal_cert_url_allowed(&text);
    let t = PaypalTransmission {
        transmission_id: "id",
        transmission_time: "2017-03-30T20:04:05Z",
        transmission_sig: &text,
        cert_url: "https://api.paypal.com/cert",
        auth_algo: "SHA256withRSA",
    };
    let _ = verify_paypal(&t, bytes, "wh", bytes);
}

fn fixtures() -> Vec<Vec<u8>> {
    all_fixture_files()
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .chain(std::iter::once(crate::alerts::EXAMPLE.as_bytes().to_vec()))
        .collect()
}

/// How many cases each property runs: `VERDICT_FUZZ_CASES`, else 512.
pub fn cases() -> u32 {
    std::env::var("VERDICT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        feed_everything(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let all = fixtures();
        let mut bytes = index.get(&all).clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        feed_everything(&bytes);
        // Braintree arrives base64-encoded; mutate the XML inside the envelope too.
        feed_everything(braintree_payload(&String::from_utf8_lossy(&bytes)).as_bytes());
    }
}

#[test]
fn every_fixture_parses_or_is_refused_cleanly_by_every_parser() {
    for bytes in fixtures() {
        feed_everything(&bytes);
    }
}

/// A fixture, mutated by a few byte edits.
fn mutated(index: prop::sample::Index, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    let all = fixtures();
    let mut bytes = index.get(&all).clone();
    for (at, byte, op) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let i = at.index(bytes.len());
        match op {
            0 => bytes[i] = byte,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, byte),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Stripe's and the alerts' timestamped HMAC-SHA256: what was signed verifies (and then parses or is
    /// refused without a panic); a changed byte does not verify.
    #[test]
    fn timestamped_signatures_accept_what_they_signed_and_nothing_else(
        index in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
        flip in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let body = mutated(index, edits);
        let secrets = vec!["whsec_fuzz".to_owned()];
        let t = now().timestamp();
        let header = sign_stripe(&body, "whsec_fuzz", t).unwrap();
        prop_assert!(verify_stripe(&header, &body, &secrets, now(), DEFAULT_TOLERANCE).is_ok());
        let header = sign_alert(&body, "whsec_fuzz", t).unwrap();
        prop_assert!(verify_alert(&header, &body, &secrets, now(), DEFAULT_TOLERANCE).is_ok());
        let _ = parse_stripe(&body);
        let _ = parse_alert(&body);
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] = tampered[i].wrapping_add(delta);
            prop_assert!(verify_stripe(&header, &tampered, &secrets, now(), DEFAULT_TOLERANCE).is_err());
            prop_assert!(verify_alert(&header, &tampered, &secrets, now(), DEFAULT_TOLERANCE).is_err());
        }
    }

    /// Braintree's HMAC-SHA1 over the base64 payload: the signed payload verifies and parses or is refused
    /// cleanly; another payload does not verify.
    #[test]
    fn braintree_signature_accepts_what_it_signed_and_nothing_else(
        index in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
        extra in "[A-Za-z0-9]{1,4}",
    ) {
        let xml = String::from_utf8_lossy(&mutated(index, edits)).into_owned();
        let payload = braintree_payload(&xml);
        let creds = vec![BraintreeCredentials { public_key: "pk".into(), private_key: "sk".into() }];
        let signature = sign_braintree(&payload, "pk", "sk").unwrap();
        prop_assert!(verify_braintree(&signature, &payload, &creds).is_ok());
        let _ = parse_braintree(&payload);
        let other = format!("{payload}{extra}");
        prop_assert!(verify_braintree(&signature, &other, &creds).is_err());
    }

    /// Adyen's per-item HMAC over eight fields: a signed item verifies; changing a signed field breaks it.
    #[test]
    fn adyen_item_signature_covers_its_signed_fields(
        psp in "[A-Z0-9]{1,16}",
        value in any::<i64>(),
        code in "[A-Z_]{1,30}",
        changed in "[A-Z0-9]{1,16}",
    ) {
        let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        let mut item = serde_json::json!({
            "pspReference": psp, "originalReference": "ORIG", "merchantAccountCode": "M",
            "merchantReference": "R", "amount": {"value": value, "currency": "EUR"}, "eventCode": code,
            "success": "true", "additionalData": {}
        });
        let signature = adyen_item_signature(&item, key).unwrap();
        item["additionalData"]["hmacSignature"] = serde_json::Value::String(signature);
        prop_assert!(verify_adyen_item(&item, key).is_ok());
        let body = serde_json::json!({"live": "false", "notificationItems": [{"NotificationRequestItem": item.clone()}]});
        let _ = parse_adyen(body.to_string().as_bytes());
        if changed != psp {
            item["pspReference"] = serde_json::Value::String(changed);
            prop_assert!(verify_adyen_item(&item, key).is_err());
        }
    }
}
