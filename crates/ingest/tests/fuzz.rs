//! Property tests: no input, however broken, makes a parser or verifier panic.

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
