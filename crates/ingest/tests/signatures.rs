//! Every signature vector in tests/fixtures/processors/README.md, plus the ways a forgery must fail.

use chrono::Duration;
use serde_json::Value;
use verdict_ingest::*;

use crate::{fixture, fixture_str, ts};

const STRIPE_HEADER: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
const STRIPE_T: i64 = 1_533_204_620;

fn secrets(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn stripe_vector_passes_within_tolerance() {
    let body = fixture("stripe/dotnet-sdk-event_test_signature.raw.json");
    assert_eq!(body.len(), 484);
    let r = verify_stripe(
        STRIPE_HEADER,
        &body,
        &secrets(&["webhook_secret"]),
        ts(STRIPE_T + 100),
        DEFAULT_TOLERANCE,
    );
    assert_eq!(r, Ok(()));
}

#[test]
fn stripe_vector_is_too_old_at_t_plus_400() {
    let body = fixture("stripe/dotnet-sdk-event_test_signature.raw.json");
    let r = verify_stripe(
        STRIPE_HEADER,
        &body,
        &secrets(&["webhook_secret"]),
        ts(STRIPE_T + 400),
        DEFAULT_TOLERANCE,
    );
    assert!(matches!(r, Err(SignatureError::TooOld { .. })), "{r:?}");
}

#[test]
fn stripe_future_timestamp_beyond_tolerance_fails() {
    let body = fixture("stripe/dotnet-sdk-event_test_signature.raw.json");
    let r = verify_stripe(
        STRIPE_HEADER,
        &body,
        &secrets(&["webhook_secret"]),
        ts(STRIPE_T - 400),
        DEFAULT_TOLERANCE,
    );
    assert!(matches!(r, Err(SignatureError::InFuture { .. })), "{r:?}");
    let r = verify_stripe(
        STRIPE_HEADER,
        &body,
        &secrets(&["webhook_secret"]),
        ts(STRIPE_T - 100),
        DEFAULT_TOLERANCE,
    );
    assert_eq!(r, Ok(()));
}

#[test]
fn stripe_flipped_byte_wrong_secret_and_missing_trailing_newline_fail() {
    let body = fixture("stripe/dotnet-sdk-event_test_signature.raw.json");
    let now = ts(STRIPE_T + 100);
    let mut flipped = body.clone();
    flipped[10] ^= 0x01;
    let s = secrets(&["webhook_secret"]);
    assert_eq!(
        verify_stripe(STRIPE_HEADER, &flipped, &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_stripe(STRIPE_HEADER, &body[..body.len() - 1], &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_stripe(STRIPE_HEADER, &body, &secrets(&["other"]), now, DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    // The legacy v0 alone is never accepted.
    let v0_only = "t=1533204620,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    assert_eq!(
        verify_stripe(v0_only, &body, &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Missing("v1"))
    );
    // A timestamp changed in the header breaks the signature rather than moving the window.
    let moved = STRIPE_HEADER.replace("t=1533204620", "t=1533204700");
    assert_eq!(
        verify_stripe(&moved, &body, &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn stripe_rotation_accepts_any_secret_and_any_v1() {
    let body = fixture("stripe/dotnet-sdk-event_test_signature.raw.json");
    let now = ts(STRIPE_T + 100);
    let s = secrets(&["whsec_new", "webhook_secret"]);
    assert_eq!(verify_stripe(STRIPE_HEADER, &body, &s, now, DEFAULT_TOLERANCE), Ok(()));
    let two = "t=1533204620,v1=00ff,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
    assert_eq!(
        verify_stripe(two, &body, &secrets(&["webhook_secret"]), now, DEFAULT_TOLERANCE),
        Ok(())
    );
    assert_eq!(
        sign_stripe(&body, "webhook_secret", STRIPE_T).unwrap(),
        STRIPE_HEADER[..80].to_owned()
    );
}

#[test]
fn stripe_malformed_headers_are_refused() {
    let body = b"{}";
    let s = secrets(&["x"]);
    let now = ts(STRIPE_T);
    assert_eq!(
        verify_stripe("", body, &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Missing("signature header"))
    );
    assert_eq!(
        verify_stripe("v1=00", body, &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Missing("t"))
    );
    assert!(matches!(
        verify_stripe("t=abc,v1=00", body, &s, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Malformed(_))
    ));
    assert!(matches!(
        verify_stripe("t=1,v1=00", body, &[], now, DEFAULT_TOLERANCE),
        Err(SignatureError::InvalidKey(_))
    ));
}

fn item(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

const KEY_A1: &str = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174";

#[test]
fn adyen_vectors_a1_to_a7_pass() {
    let cases = [
        (
            KEY_A1,
            "adyen/java-sdk-hmac-validation-webhook-authorisation.json",
            "CZErGCNQaSsxbaQfZaJlakqo7KPP+mIa8a+wx3yNs9A=",
        ),
        (
            KEY_A1,
            "adyen/python-sdk-hmac-backslash-notification-item.json",
            "nIgT81gaB5oJpn2jPXupDq68iRo2wUlBsuYjtYfwKqo=",
        ),
        (
            KEY_A1,
            "adyen/python-sdk-hmac-colon-notification-item.json",
            "2EQYm7YJpKO4EtHSPu55SQTyWf8dkW5u2nD1tJFpViA=",
        ),
        (
            KEY_A1,
            "adyen/python-sdk-hmac-forwardslash-notification-item.json",
            "9Z0xdpG9Xi3zcmXv14t/BvMBut77O/Xq9D4CQXSDUi4=",
        ),
        (
            "9064450A8892A093D9E97EFCC9639DE31B74F3A7803135555A3C96F5A57915D6",
            "adyen/java-sdk-hmac-vector-report-available-item.json",
            "NuEkADFmlCC6VgX+wcoPAegIWxVPNBPCuKlM4Hzo5qc=",
        ),
        (
            "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00",
            "adyen/node-sdk-hmac-vector-report-available-item.json",
            "ZNBPtI+oDyyRrLyD1XirkKnQgIAlFc07Vj27TeHsDRE=",
        ),
        (
            "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00",
            "adyen/node-sdk-hmac-vector-event-item.json",
            "ipnxGCaUZ4l8TUW75a71/ghd2Fe5ffvX0pV4TLTntIc=",
        ),
    ];
    for (key, path, expected) in cases {
        let item = item(path);
        assert_eq!(adyen_item_signature(&item, key).unwrap(), expected, "{path}");
        assert_eq!(verify_adyen_item(&item, key), Ok(()), "{path}");
        // Lower-case hex keys are the same key.
        assert_eq!(verify_adyen_item(&item, &key.to_ascii_lowercase()), Ok(()), "{path}");
    }
}

#[test]
fn adyen_signing_strings_match_the_readme() {
    assert_eq!(
        adyen_signing_string(&item("adyen/node-sdk-hmac-vector-report-available-item.json")),
        "pspReference:originalReference:merchantAccount:reference:1000:EUR:REPORT_AVAILABLE:true"
    );
    assert_eq!(
        adyen_signing_string(&item("adyen/python-sdk-hmac-vector-authorisation-item-unsigned.json")),
        "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
    );
    let no_amount = serde_json::json!({
        "pspReference": "test_REPORT_AVAILABLE", "merchantAccountCode": "Magento2Rik",
        "merchantReference": "testMerchantRef1", "eventCode": "REPORT_AVAILABLE", "success": "true"
    });
    assert_eq!(
        adyen_signing_string(&no_amount),
        "test_REPORT_AVAILABLE::Magento2Rik:testMerchantRef1:::REPORT_AVAILABLE:true"
    );
    // A1: the merchantReference with backslashes and colons is used unescaped.
    let a1 = adyen_signing_string(&item("adyen/java-sdk-hmac-validation-webhook-authorisation.json"));
    assert!(a1.contains(":\\:/\\/slashes are fun:"), "{a1}");
}

#[test]
fn adyen_vector_a8_unsigned_item() {
    let item = item("adyen/python-sdk-hmac-vector-authorisation-item-unsigned.json");
    let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    assert_eq!(
        adyen_item_signature(&item, key).unwrap(),
        "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="
    );
    assert_eq!(
        verify_adyen_item(&item, key),
        Err(SignatureError::Missing("additionalData.hmacSignature"))
    );
}

#[test]
fn adyen_raw_string_vectors() {
    assert_eq!(
        adyen_hmac(
            "9064450A8892A093D9E97EFCC9639DE31B74F3A7803135555A3C96F5A57915D6",
            b"TestPayload"
        )
        .unwrap(),
        "YA9/UDjldIO4Gq68X4ATYYoEaPYH4f4k2uzBBzEF1PA="
    );
    let data = "countryCode:currencyCode:merchantAccount:merchantReference:paymentAmount:sessionValidity:skinCode:NL:EUR:MagentoMerchantTest2:TEST-PAYMENT-2017-02-01-14\\:02\\:05:199:2017-02-02T14\\:02\\:05+01\\:00:PKz2KML1";
    assert_eq!(
        adyen_hmac(
            "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00",
            data.as_bytes()
        )
        .unwrap(),
        "34oR8T1whkQWTv9P+SzKyp8zhusf9n0dpqrm9nsqSJs="
    );
}

#[test]
fn adyen_balance_platform_raw_body_vector() {
    let body = fixture("adyen/node-sdk-hmac-banking-webhook-accountholder-created.raw.json");
    assert_eq!(body.len(), 1778);
    let key = "11223344D785FBAE710E7F943F307971BB61B21281C98C9129B3D4018A57B2EB";
    let sig = "UVBzHbDayhfT1XgaRGAkuKvxwoxrLoVCBdfi3WZU8lI=";
    assert_eq!(verify_adyen_raw_body(&body, sig, key), Ok(()));
    let mut flipped = body.clone();
    flipped[100] ^= 0x20;
    assert_eq!(verify_adyen_raw_body(&flipped, sig, key), Err(SignatureError::Mismatch));
    assert_eq!(verify_adyen_raw_body(&body, sig, KEY_A1), Err(SignatureError::Mismatch));
    assert_eq!(
        verify_adyen_raw_body(&body, "", key),
        Err(SignatureError::Missing("HmacSignature header"))
    );
    assert!(matches!(
        verify_adyen_raw_body(&body, "%%%", key),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn adyen_tampered_item_wrong_key_and_bad_key_fail() {
    let mut item = item("adyen/python-sdk-hmac-colon-notification-item.json");
    assert_eq!(
        verify_adyen_item(
            &item,
            "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00"
        ),
        Err(SignatureError::Mismatch)
    );
    assert!(matches!(
        verify_adyen_item(&item, "not hex"),
        Err(SignatureError::InvalidKey(_))
    ));
    item["amount"]["value"] = Value::from(1001);
    assert_eq!(verify_adyen_item(&item, KEY_A1), Err(SignatureError::Mismatch));
}

#[test]
fn adyen_whole_notification_verifies_every_item() {
    let key = "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00";
    let a = item("adyen/node-sdk-hmac-vector-report-available-item.json");
    let b = item("adyen/node-sdk-hmac-vector-event-item.json");
    let body = serde_json::to_vec(&serde_json::json!({"live": "false", "notificationItems": [a, b]})).unwrap();
    assert_eq!(verify_adyen_notification(&body, key), Ok(()));
    let mut bad = b.clone();
    bad["NotificationRequestItem"]["success"] = Value::from("false");
    let body = serde_json::to_vec(&serde_json::json!({"notificationItems": [a, bad]})).unwrap();
    assert_eq!(verify_adyen_notification(&body, key), Err(SignatureError::Mismatch));
    assert_eq!(
        verify_adyen_notification(br#"{"notificationItems":[]}"#, key),
        Err(SignatureError::Missing("notificationItems"))
    );
}

#[test]
fn braintree_readme_vectors() {
    assert_eq!(
        braintree_verify_challenge(
            "20f9f8ed05f77439fe955c977e4c8a53",
            "integration_public_key",
            "integration_private_key"
        )
        .unwrap(),
        "integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4"
    );
    assert_eq!(
        braintree_hexdigest(&[0xaa; 80], b"Test Using Larger Than Block-Size Key - Hash Key First").unwrap(),
        "aa4ae5e15272d00e95705637ce8a3b55ed402112"
    );
}

fn bt_creds() -> Vec<BraintreeCredentials> {
    vec![BraintreeCredentials {
        public_key: "integration_public_key".into(),
        private_key: "integration_private_key".into(),
    }]
}

#[test]
fn braintree_signed_fixture_verifies_and_tampering_fails() {
    let xml = fixture_str("braintree/ruby-sdk-sample-notification-dispute_opened.xml");
    let payload = braintree_payload(&xml);
    assert!(payload.lines().all(|l| l.len() <= 60));
    let sig = sign_braintree(&payload, "integration_public_key", "integration_private_key").unwrap();
    assert_eq!(verify_braintree(&sig, &payload, &bt_creds()), Ok(()));
    // The SDK also accepts a payload whose trailing newline was stripped in transit.
    assert_eq!(
        verify_braintree(&sig, payload.trim_end_matches('\n'), &bt_creds()),
        Ok(())
    );
    // Several pairs joined by '&': an unknown key first does not stop the known one.
    let joined = format!("other_key|{}&{sig}", "00".repeat(20));
    assert_eq!(verify_braintree(&joined, &payload, &bt_creds()), Ok(()));
    // Flipped byte in the payload (still valid base64 characters).
    let mut bytes = payload.clone().into_bytes();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    assert_eq!(
        verify_braintree(&sig, &flipped, &bt_creds()),
        Err(SignatureError::Mismatch)
    );
    // Wrong private key for the same public key.
    let wrong = vec![BraintreeCredentials {
        public_key: "integration_public_key".into(),
        private_key: "wrong".into(),
    }];
    assert_eq!(verify_braintree(&sig, &payload, &wrong), Err(SignatureError::Mismatch));
    // Unknown public key.
    let other = vec![BraintreeCredentials {
        public_key: "someone_else".into(),
        private_key: "integration_private_key".into(),
    }];
    assert!(matches!(
        verify_braintree(&sig, &payload, &other),
        Err(SignatureError::InvalidKey(_))
    ));
    // Characters outside base64 are refused before any HMAC.
    let evil = format!("{payload}<");
    assert!(matches!(
        verify_braintree(&sig, &evil, &bt_creds()),
        Err(SignatureError::Malformed(_))
    ));
    assert_eq!(
        verify_braintree("", &payload, &bt_creds()),
        Err(SignatureError::Missing("bt_signature"))
    );
    // The signed payload parses back to the dispute.
    let n = crate::only_dispute(parse_braintree(&payload).unwrap());
    assert_eq!(n.processor_dispute_id, "my_id");
}

const PAYPAL_SIG: &str = "aBjgm5/xljRYu3G64Q0axISrP2xcy7WbW1u4UTCKnQvyprOZ1a1BBmqn2Jdr6ce8E76I3Ti/AL9y4VYSHyGSEaoE6dVQcCDebLbOXLH0fjTAbTc1/rmfdWmsk0DPltW84Y8W8jOHe3CLWDOwg5zmozyt+AceG2x5eOiw7mLSycaEoj/5RG+dOIWXnmWcLEArbG3VFshy0wuhZrKuGa9C/bD4Ku+Y9gK7Bv5I5IuGRVnTGpcFnVG0KxOyJxccLGyBVCIUMY5IZS7LkmJszQ3HZZFDTNihvgJHECSLwLhzUaysIye5G6CbbLdtAmeeb6wiDciEAvr2dFf+SplOR4Lrng==";

fn paypal_transmission(sig: &str) -> PaypalTransmission<'_> {
    PaypalTransmission {
        transmission_id: "071f7d20-1584-11e7-abf0-6b62a8a99ac4",
        transmission_time: "2017-03-30T20:04:05Z",
        transmission_sig: sig,
        cert_url: "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        auth_algo: "SHA256withRSA",
    }
}

#[test]
fn paypal_java_sdk_vector_passes() {
    let body = fixture("paypal/java-sdk-validatecert-event-billing-plan-created.raw.json");
    assert_eq!(body.len(), 1636);
    assert_eq!(crc32fast::hash(&body), 3_494_065_244);
    let cert = fixture("paypal/java-sdk-testClientCert.crt");
    assert_eq!(
        verify_paypal(&paypal_transmission(PAYPAL_SIG), &body, "96605875FF6516633", &cert),
        Ok(())
    );
}

#[test]
fn paypal_tampering_fails() {
    let body = fixture("paypal/java-sdk-validatecert-event-billing-plan-created.raw.json");
    let cert = fixture("paypal/java-sdk-testClientCert.crt");
    let t = paypal_transmission(PAYPAL_SIG);
    let mut flipped = body.clone();
    flipped[42] ^= 0x01;
    assert_eq!(
        verify_paypal(&t, &flipped, "96605875FF6516633", &cert),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_paypal(&t, &body, "96605875FF6516634", &cert),
        Err(SignatureError::Mismatch)
    );
    let mut sig = PAYPAL_SIG.as_bytes().to_vec();
    sig[0] = b'b';
    let sig = String::from_utf8(sig).unwrap();
    assert_eq!(
        verify_paypal(&paypal_transmission(&sig), &body, "96605875FF6516633", &cert),
        Err(SignatureError::Mismatch)
    );
    let later = PaypalTransmission {
        transmission_time: "2017-03-30T20:04:06Z",
        ..t
    };
    assert_eq!(
        verify_paypal(&later, &body, "96605875FF6516633", &cert),
        Err(SignatureError::Mismatch)
    );
    let evil_url = PaypalTransmission {
        cert_url: "https://api.sandbox.paypal.com.evil.net/cert",
        ..t
    };
    assert!(matches!(
        verify_paypal(&evil_url, &body, "96605875FF6516633", &cert),
        Err(SignatureError::CertUrlNotAllowed(_))
    ));
    let sha1 = PaypalTransmission {
        auth_algo: "SHA1withRSA",
        ..t
    };
    assert!(matches!(
        verify_paypal(&sha1, &body, "96605875FF6516633", &cert),
        Err(SignatureError::UnsupportedAlgorithm(_))
    ));
    let missing = PaypalTransmission {
        transmission_id: "",
        ..t
    };
    assert_eq!(
        verify_paypal(&missing, &body, "96605875FF6516633", &cert),
        Err(SignatureError::Missing("PAYPAL-TRANSMISSION-ID"))
    );
    assert!(matches!(
        verify_paypal(&t, &body, "96605875FF6516633", b"not a cert"),
        Err(SignatureError::InvalidCertificate(_))
    ));
    // A certificate carrying a different RSA key (one modulus byte flipped) must not verify.
    assert_eq!(
        verify_paypal(&t, &body, "96605875FF6516633", &cert_with_flipped_modulus(&cert)),
        Err(SignatureError::Mismatch)
    );
}

fn cert_with_flipped_modulus(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let mut der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let rsa_oid = [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    let at = der.windows(rsa_oid.len()).position(|w| w == rsa_oid).unwrap();
    // Well inside the modulus: past the OID, NULL, BIT STRING and SEQUENCE/INTEGER headers.
    der[at + 60] ^= 0x01;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n").into_bytes()
}

#[test]
fn paypal_cert_urls() {
    for ok in [
        "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42",
        "https://api-m.paypal.com/v1/notifications/certs/x",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/x",
        "https://API.PAYPAL.COM/v1/notifications/certs/x",
        "https://api.paypal.com:443/v1/notifications/certs/x",
    ] {
        assert!(paypal_cert_url_allowed(ok), "{ok}");
    }
    for bad in [
        "http://api.paypal.com/v1/notifications/certs/x",
        "https://api.paypal.com.evil.net/v1/notifications/certs/x",
        "https://paypal.com.evil.net/cert",
        "https://evilapi.paypal.com/cert",
        "https://evil.com/api.paypal.com/cert",
        "https://api.paypal.com@evil.net/cert",
        "https://user:pass@api.paypal.com/cert",
        "https://evil.net#@api.paypal.com/cert",
        "https://api.paypal.com:8443/cert",
        "https://api.paypal.com./cert",
        "https://api.paypal.com",
        "https://api%2epaypal.com/cert",
        "https://api.paypal.com\\@evil.net/cert",
        "HTTPS://api.paypal.com/cert",
        " https://api.paypal.com/cert",
        "ftp://api.paypal.com/cert",
        "https://www.paypal.com/cert",
        "https://api.paypal.com/cert",
        "https://api.paypal.com/v1/notifications/certs/",
        "https://api.paypal.com/v1/notifications/certs/x/y",
        "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/x?y=1",
        "https://api.paypal.com/v1/notifications/certs/x#y",
        "https://api.paypal.com/v1/notifications/webhooks",
        "https://api.paypal.com/v1/notifications/certs/CERT.pem",
        "",
    ] {
        assert!(!paypal_cert_url_allowed(bad), "{bad}");
    }
}

#[test]
fn alert_signature_round_trip_and_failures() {
    let body = crate::alerts::EXAMPLE.as_bytes().to_vec();
    let t = 1_767_225_600;
    let header = sign_alert(&body, "alert_secret", t).unwrap();
    let s = secrets(&["alert_secret"]);
    assert_eq!(verify_alert(&header, &body, &s, ts(t + 299), DEFAULT_TOLERANCE), Ok(()));
    assert!(matches!(
        verify_alert(&header, &body, &s, ts(t + 301), DEFAULT_TOLERANCE),
        Err(SignatureError::TooOld { .. })
    ));
    assert!(matches!(
        verify_alert(&header, &body, &s, ts(t - 301), Duration::seconds(300)),
        Err(SignatureError::InFuture { .. })
    ));
    let mut flipped = body.clone();
    flipped[3] ^= 0x01;
    assert_eq!(
        verify_alert(&header, &flipped, &s, ts(t), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_alert(&header, &body, &secrets(&["nope"]), ts(t), DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
}
