//! Webhook endpoints over HTTP (the real router, driven with `oneshot`): every published dispute fixture
//! posted with a real signature, duplicates, forgeries, oversized and malformed bodies, missing secrets.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tower::ServiceExt as _;
use verdict_api::webhooks::{CachedCertificates, CertificateError, CertificateFetcher, WebhookSecrets, Webhooks};
use verdict_api::{AppState, BODY_LIMIT_BYTES, router};
use verdict_domain::{Dispute, Processor, Stage, Status};
use verdict_engine::{Engine, ManualClock, Source};
use verdict_ingest::BraintreeCredentials;
use verdict_store::InboxStatus;
use verdict_store::testing::{TestDatabase, test_databases};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/processors/");
const STRIPE_SECRET: &str = "whsec_test_secret";
const ADYEN_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
const BT_PUBLIC: &str = "integration_public_key";
const BT_PRIVATE: &str = "integration_private_key";
const ALERT_SECRET: &str = "alert_secret";
const ADYEN_USER: &str = "adyen";
const ADYEN_PASSWORD: &str = "s3cret";
const PAYPAL_WEBHOOK_ID: &str = "96605875FF6516633";
const PAYPAL_CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{path}")).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
}

struct App {
    router: Router,
    engine: Engine,
    label: &'static str,
    _db: TestDatabase,
}

fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        stripe: vec!["whsec_old".into(), STRIPE_SECRET.into()],
        adyen_hmac_key: Some(ADYEN_KEY.into()),
        adyen_basic_auth: Some((ADYEN_USER.into(), ADYEN_PASSWORD.into())),
        braintree: vec![BraintreeCredentials {
            public_key: BT_PUBLIC.into(),
            private_key: BT_PRIVATE.into(),
        }],
        paypal_webhook_id: Some(PAYPAL_WEBHOOK_ID.into()),
        alerts: vec![ALERT_SECRET.into()],
    }
}

async fn app_on(db: TestDatabase, secrets: Option<WebhookSecrets>) -> App {
    let engine = Engine::new(db.store().await.unwrap(), Arc::new(ManualClock::new(now())));
    let mut state = AppState::new(engine.clone());
    if let Some(secrets) = secrets {
        let certificates = CachedCertificates::offline();
        certificates.preload(PAYPAL_CERT_URL, fixture("paypal/java-sdk-testClientCert.crt"));
        state = state.with_webhooks(Webhooks {
            secrets: Arc::new(secrets),
            certificates: Arc::new(certificates),
        });
    }
    App {
        router: router(state),
        engine,
        label: db.label,
        _db: db,
    }
}

/// One configured app per test database.
async fn apps() -> Vec<App> {
    let mut out = Vec::new();
    for db in test_databases().await.unwrap() {
        out.push(app_on(db, Some(secrets())).await);
    }
    out
}

impl App {
    async fn post(&self, path: &str, headers: &[(&str, String)], body: impl Into<Body>) -> (StatusCode, String) {
        let mut request = Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        // The answer comes once the delivery is stored; what the tests read next is what applying it did.
        self.applied().await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until every delivery answered before it was applied has been (see `Engine::receive_then_apply`).
    async fn applied(&self) {
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            self.engine.finish_applying_after_answer(),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: deliveries still being applied after 120 s", self.label));
    }

    /// Waits until no notification is pending (Adyen batches are applied after the answer).
    async fn settle(&self) {
        let store = self.engine.store();
        for _ in 0..2_400 {
            if store.count_notifications(Some(InboxStatus::Pending)).await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{}: notifications still pending after 120 s", self.label);
    }

    async fn rows(&self) -> u64 {
        self.engine.store().count_notifications(None).await.unwrap()
    }

    async fn disputes(&self) -> u64 {
        self.engine
            .store()
            .count(&verdict_store::DisputeFilter::default())
            .await
            .unwrap()
    }

    async fn dispute(&self, processor: Processor, id: &str) -> Dispute {
        self.engine
            .store()
            .find_by_processor_id(processor, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: no {processor} dispute {id}", self.label))
    }
}

fn stripe_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let signature = verdict_ingest::sign_stripe(body, STRIPE_SECRET, now().timestamp()).unwrap();
    vec![
        ("stripe-signature", signature),
        ("content-type", "application/json".into()),
    ]
}

fn alert_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let signature = verdict_ingest::sign_alert(body, ALERT_SECRET, now().timestamp()).unwrap();
    vec![
        ("verdict-signature", signature),
        ("content-type", "application/json".into()),
    ]
}

/// The fixture with every item signed by `ADYEN_KEY` (the published examples carry placeholder signatures).
fn signed_adyen(body: &[u8]) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).unwrap();
    for item in value["notificationItems"].as_array_mut().unwrap() {
        let inner = if item.get("NotificationRequestItem").is_some() {
            &mut item["NotificationRequestItem"]
        } else {
            item
        };
        let signature = verdict_ingest::adyen_item_signature(inner, ADYEN_KEY).unwrap();
        if !inner.get("additionalData").is_some_and(Value::is_object) {
            inner["additionalData"] = serde_json::json!({});
        }
        inner["additionalData"]["hmacSignature"] = Value::String(signature);
    }
    serde_json::to_vec(&value).unwrap()
}

/// The basic-auth header Adyen sends with the configured credentials.
fn adyen_auth() -> Vec<(&'static str, String)> {
    let pair = format!("{ADYEN_USER}:{ADYEN_PASSWORD}");
    vec![("authorization", format!("Basic {}", base64_encode(pair.as_bytes())))]
}

fn braintree_form(xml: &str, private_key: &str) -> String {
    let payload = verdict_ingest::braintree_payload(xml);
    let signature = verdict_ingest::sign_braintree(&payload, BT_PUBLIC, private_key).unwrap();
    form_urlencoded::Serializer::new(String::new())
        .append_pair("bt_signature", &signature)
        .append_pair("bt_payload", &payload)
        .finish()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Posts `file` to its endpoint with a valid signature; returns the status and body.
async fn post_fixture(app: &App, file: &str) -> (StatusCode, String) {
    let body = fixture(file);
    match file.split('/').next().unwrap() {
        "stripe" => app.post("/webhooks/stripe", &stripe_headers(&body), body).await,
        "adyen" => {
            // Adyen batches are applied after the answer.
            let answer = app.post("/webhooks/adyen", &adyen_auth(), signed_adyen(&body)).await;
            app.settle().await;
            answer
        }
        "braintree" => {
            let form = braintree_form(std::str::from_utf8(&body).unwrap(), BT_PRIVATE);
            app.post("/webhooks/braintree", &[(FORM.0, FORM.1.into())], form).await
        }
        other => panic!("no signer for {other}"),
    }
}

struct Expected {
    file: &'static str,
    processor: Processor,
    id: &'static str,
    status: Status,
    stage: Stage,
    amount: &'static str,
    reason: &'static str,
}

const fn e(
    file: &'static str,
    processor: Processor,
    id: &'static str,
    status: Status,
    stage: Stage,
    amount: &'static str,
    reason: &'static str,
) -> Expected {
    Expected {
        file,
        processor,
        id,
        status,
        stage,
        amount,
        reason,
    }
}

const ADYEN_PSP: &str = "QFQTPCQ8HXSKGK82";
const ADYEN_PSP2: &str = "9915555555555555";

/// Every dispute fixture that can be signed with a test secret (PayPal's dispute sample cannot: PayPal signs
/// with its own private key; see `paypal_dispute_sample_applies_through_the_engine`).
fn expectations() -> Vec<Expected> {
    use Processor::{Adyen, Braintree, Stripe};
    use Stage::{Chargeback, Inquiry, PreArbitration, PreDispute};
    use Status::{Accepted, Expired, Lost, Notified, Won};
    let ruby = "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.";
    let mut out = vec![
        e(
            "closed.json",
            Stripe,
            "ch_00000000000000",
            Won,
            Chargeback,
            "10.00 USD",
            "other general",
        ),
        e(
            "created.json",
            Stripe,
            "dp_000000000000000000000000",
            Notified,
            Inquiry,
            "1.00 USD",
            "other fraudulent",
        ),
        e(
            "funds_withdrawn.json",
            Stripe,
            "dp_00000000000000",
            Notified,
            Chargeback,
            "250.00 USD",
            "other fraudulent",
        ),
        e(
            "updated.json",
            Stripe,
            "ch_00000000000000",
            Notified,
            Chargeback,
            "10.00 USD",
            "other general",
        ),
    ];
    for item in &mut out {
        item.file = Box::leak(format!("{ruby}{}", item.file).into_boxed_str());
    }
    let a = "adyen/openapi-webhooks-v1-";
    let adyen = [
        (
            "chargeback.json",
            ADYEN_PSP,
            Notified,
            Chargeback,
            "10.00 EUR",
            "mastercard 4853",
        ),
        (
            "notification-of-chargeback.json",
            ADYEN_PSP,
            Notified,
            Chargeback,
            "10.00 EUR",
            "mastercard 4853",
        ),
        (
            "request-for-information.json",
            ADYEN_PSP,
            Notified,
            Inquiry,
            "10.00 EUR",
            "other general",
        ),
        (
            "second-chargeback.json",
            ADYEN_PSP,
            Notified,
            PreArbitration,
            "10.00 EUR",
            "other general",
        ),
        (
            "chargeback-reversed.json",
            ADYEN_PSP,
            Won,
            Chargeback,
            "10.00 EUR",
            "other general",
        ),
        (
            "prearbitration-won.json",
            ADYEN_PSP,
            Won,
            PreArbitration,
            "10.00 EUR",
            "other general",
        ),
        (
            "prearbitration-lost.json",
            ADYEN_PSP,
            Lost,
            PreArbitration,
            "10.00 EUR",
            "other general",
        ),
        (
            "notification-of-fraud.json",
            ADYEN_PSP,
            Notified,
            PreDispute,
            "10.00 EUR",
            "other general",
        ),
        (
            "information-supplied.json",
            ADYEN_PSP2,
            Notified,
            Chargeback,
            "100.00 USD",
            "visa 13.3",
        ),
        (
            "issuer-comments.json",
            ADYEN_PSP2,
            Notified,
            Chargeback,
            "10.00 EUR",
            "visa 13.3",
        ),
        (
            "issuer-response-timeframe-expired.json",
            ADYEN_PSP2,
            Won,
            Chargeback,
            "100.00 USD",
            "visa 13.1",
        ),
        (
            "dispute-defense-period-ended.json",
            ADYEN_PSP2,
            Lost,
            Chargeback,
            "10.00 EUR",
            "visa 10.4",
        ),
    ];
    for (file, id, status, stage, amount, reason) in adyen {
        let file = Box::leak(format!("{a}{file}").into_boxed_str());
        out.push(e(file, Adyen, id, status, stage, amount, reason));
    }
    out.push(e(
        "adyen/java-sdk-notification-chargeback.json",
        Adyen,
        ADYEN_PSP2,
        Notified,
        Chargeback,
        "10.00 EUR",
        "visa 10.4",
    ));
    let kinds = [
        ("accepted", Accepted),
        ("auto_accepted", Accepted),
        ("disputed", Notified),
        ("under_review", Notified),
        ("expired", Expired),
        ("lost", Lost),
        ("opened", Notified),
        ("won", Won),
    ];
    for (kind, status) in kinds {
        for (suffix, id) in [("", "my_id"), ("-legacy", "legacy_dispute_id")] {
            let file = Box::leak(
                format!("braintree/ruby-sdk-sample-notification-dispute_{kind}{suffix}.xml").into_boxed_str(),
            );
            out.push(e(
                file,
                Braintree,
                id,
                status,
                Chargeback,
                "100.00 USD",
                "other fraudulent",
            ));
        }
    }
    out
}

#[tokio::test]
async fn every_dispute_fixture_posted_with_a_real_signature_becomes_the_expected_dispute() {
    let expectations = expectations();
    assert_eq!(expectations.len(), 4 + 13 + 16);
    for expected in expectations {
        // A fresh database per fixture: several fixtures reuse one dispute id or event id.
        for db in test_databases().await.unwrap() {
            let app = app_on(db, Some(secrets())).await;
            let (status, body) = post_fixture(&app, expected.file).await;
            assert_eq!(status, StatusCode::OK, "{} {}: {body}", expected.file, app.label);
            let d = app.dispute(expected.processor, expected.id).await;
            let got = (d.status, d.stage, d.amount.to_string(), d.reason_code.to_string());
            let want = (
                expected.status,
                expected.stage,
                expected.amount.to_owned(),
                expected.reason.to_owned(),
            );
            assert_eq!(got, want, "{} {}", expected.file, app.label);
            let rows = app.engine.store().notifications_of_dispute(d.id).await.unwrap();
            assert_eq!(rows.len(), 1, "{} {}", expected.file, app.label);
            assert_eq!(
                rows[0].status,
                InboxStatus::Applied,
                "{} {:?}",
                expected.file,
                rows[0].note
            );
        }
    }
}

#[tokio::test]
async fn adyen_is_acknowledged_with_its_literal_answer() {
    for app in apps().await {
        let (status, body) = post_fixture(&app, "adyen/openapi-webhooks-v1-chargeback.json").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "[accepted]"), "{}", app.label);
    }
}

#[tokio::test]
async fn a_duplicate_delivery_is_absorbed() {
    for app in apps().await {
        let file = "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json";
        assert_eq!(post_fixture(&app, file).await.0, StatusCode::OK);
        let before = app.dispute(Processor::Stripe, "dp_000000000000000000000000").await;
        let (status, body) = post_fixture(&app, file).await;
        assert_eq!(status, StatusCode::OK, "{}", app.label);
        assert!(body.contains("\"duplicates\":1"), "{body}");
        assert_eq!(app.rows().await, 1, "{}", app.label);
        assert_eq!(
            app.dispute(Processor::Stripe, "dp_000000000000000000000000").await,
            before
        );
    }
}

#[tokio::test]
async fn a_forged_signature_is_refused_and_nothing_is_stored() {
    for app in apps().await {
        let body = fixture("stripe/unofficial-stripe-ruby-mock/event-charge.dispute.closed.json");
        let forged = verdict_ingest::sign_stripe(&body, "whsec_attacker", now().timestamp()).unwrap();
        let (status, _) = app
            .post("/webhooks/stripe", &[("stripe-signature", forged)], body.clone())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);
        let (status, _) = app.post("/webhooks/stripe", &[], body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "missing signature");

        let mut adyen: Value = serde_json::from_slice(&signed_adyen(&fixture(
            "adyen/openapi-webhooks-v1-chargeback-reversed.json",
        )))
        .unwrap();
        adyen["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] = Value::from(1);
        let (status, _) = app
            .post("/webhooks/adyen", &adyen_auth(), serde_json::to_vec(&adyen).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);

        let xml = String::from_utf8(fixture("braintree/ruby-sdk-sample-notification-dispute_won.xml")).unwrap();
        let form = braintree_form(&xml, "not_the_private_key");
        let (status, _) = app.post("/webhooks/braintree", &[(FORM.0, FORM.1.into())], form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);

        let alert =
            br#"{"alert_id":"a1","provider":"ethoca","type":"alert.created","occurred_at":"2026-11-01T08:00:00Z"}"#;
        let forged = verdict_ingest::sign_alert(alert, "wrong", now().timestamp()).unwrap();
        let (status, _) = app
            .post("/webhooks/alerts", &[("verdict-signature", forged)], &alert[..])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);

        let paypal = fixture("paypal/unofficial-mirror/customer-dispute-created-sample.json");
        let (status, _) = app
            .post("/webhooks/paypal", &paypal_headers(PAYPAL_CERT_URL), paypal)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);

        assert_eq!(app.rows().await, 0, "{}", app.label);
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    for app in apps().await {
        let mut body = fixture("stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json");
        body.resize(BODY_LIMIT_BYTES + 1, b' ');
        for path in [
            "/webhooks/stripe",
            "/webhooks/adyen",
            "/webhooks/braintree",
            "/webhooks/alerts",
            "/webhooks/paypal",
        ] {
            let (status, _) = app.post(path, &stripe_headers(&body), body.clone()).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path} {}", app.label);
        }
        assert_eq!(app.rows().await, 0);
    }
}

#[tokio::test]
async fn a_malformed_body_is_refused_with_400() {
    for app in apps().await {
        let garbage = b"{\"id\": \"evt_1\", \"type\": \"charge.dispute.created\"".to_vec();
        let (status, _) = app
            .post("/webhooks/stripe", &stripe_headers(&garbage), garbage.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", app.label);
        let (status, _) = app.post("/webhooks/adyen", &adyen_auth(), garbage.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", app.label);
        let (status, _) = app.post("/webhooks/alerts", &alert_headers(&garbage), garbage).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", app.label);
        let (status, _) = app
            .post("/webhooks/braintree", &[(FORM.0, FORM.1.into())], "bt_payload=abc")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", app.label);
        // Signed, valid base64, but not a notification.
        let form = braintree_form("<not-a-notification/>", BT_PRIVATE);
        let (status, _) = app.post("/webhooks/braintree", &[(FORM.0, FORM.1.into())], form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", app.label);
        assert_eq!(app.rows().await, 0);
    }
}

#[tokio::test]
async fn a_processor_without_configured_secrets_is_refused_and_nothing_is_stored() {
    for db in test_databases().await.unwrap() {
        let app = app_on(db, None).await;
        let body = fixture("stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json");
        for path in [
            "/webhooks/stripe",
            "/webhooks/adyen",
            "/webhooks/paypal",
            "/webhooks/braintree",
            "/webhooks/alerts",
        ] {
            let (status, _) = app.post(path, &stripe_headers(&body), body.clone()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path} {}", app.label);
        }
        assert_eq!(app.rows().await, 0);
    }
}

#[tokio::test]
async fn adyen_basic_auth_is_required() {
    for db in test_databases().await.unwrap() {
        let app = app_on(db, Some(secrets())).await;
        let body = signed_adyen(&fixture("adyen/openapi-webhooks-v1-chargeback.json"));
        // A validly signed batch without credentials, or with wrong ones, is refused and nothing is stored.
        let (status, _) = app.post("/webhooks/adyen", &[], body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);
        let wrong = format!("Basic {}", base64_encode(b"adyen:guess"));
        let (status, _) = app
            .post("/webhooks/adyen", &[("authorization", wrong)], body.clone())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);
        let bearer = "Bearer s3cret".to_owned();
        let (status, _) = app
            .post("/webhooks/adyen", &[("authorization", bearer)], body.clone())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);
        assert_eq!(app.rows().await, 0);
        let (status, _) = app.post("/webhooks/adyen", &adyen_auth(), body).await;
        assert_eq!(status, StatusCode::OK, "{}", app.label);
    }
}

#[tokio::test]
async fn adyen_without_basic_auth_configured_is_refused() {
    for db in test_databases().await.unwrap() {
        let app = app_on(
            db,
            Some(WebhookSecrets {
                adyen_basic_auth: None,
                ..secrets()
            }),
        )
        .await;
        let body = signed_adyen(&fixture("adyen/openapi-webhooks-v1-chargeback.json"));
        let (status, text) = app.post("/webhooks/adyen", &adyen_auth(), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", app.label);
        assert!(text.contains("basic authentication"), "{text}");
        assert_eq!(app.rows().await, 0);
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn paypal_headers(cert_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("paypal-transmission-id", "071f7d20-1584-11e7-abf0-6b62a8a99ac4".into()),
        ("paypal-transmission-time", "2017-03-30T20:04:05Z".into()),
        ("paypal-auth-algo", "SHA256withRSA".into()),
        ("paypal-cert-url", cert_url.into()),
        (
            "paypal-transmission-sig",
            "aBjgm5/xljRYu3G64Q0axISrP2xcy7WbW1u4UTCKnQvyprOZ1a1BBmqn2Jdr6ce8E76I3Ti/AL9y4VYSHyGSEaoE6dVQcCDebLbOXLH0fjTAbTc1/rmfdWmsk0DPltW84Y8W8jOHe3CLWDOwg5zmozyt+AceG2x5eOiw7mLSycaEoj/5RG+dOIWXnmWcLEArbG3VFshy0wuhZrKuGa9C/bD4Ku+Y9gK7Bv5I5IuGRVnTGpcFnVG0KxOyJxccLGyBVCIUMY5IZS7LkmJszQ3HZZFDTNihvgJHECSLwLhzUaysIye5G6CbbLdtAmeeb6wiDciEAvr2dFf+SplOR4Lrng==".into(),
        ),
    ]
}

#[tokio::test]
async fn paypal_published_vector_is_verified_with_a_cached_certificate_and_stored_as_ignored() {
    for app in apps().await {
        let body = fixture("paypal/java-sdk-validatecert-event-billing-plan-created.raw.json");
        let (status, response) = app
            .post("/webhooks/paypal", &paypal_headers(PAYPAL_CERT_URL), body.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{} {response}", app.label);
        let rows = app.engine.store().find_notifications("paypal", None).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, InboxStatus::Ignored);
        assert_eq!(rows[0].payload.as_bytes(), &body[..]);
        // A certificate URL off PayPal's hosts is refused before anything is fetched.
        let evil = "https://api.sandbox.paypal.com.evil.example/cert";
        let (status, _) = app.post("/webhooks/paypal", &paypal_headers(evil), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);
    }
}

#[tokio::test]
async fn paypal_dispute_sample_applies_through_the_engine() {
    // PayPal signs with its own key, so this sample cannot be posted with a valid signature; the parsed
    // event goes through the same engine path the handler uses.
    for app in apps().await {
        let body = fixture("paypal/unofficial-mirror/customer-dispute-created-sample.json");
        let parsed = verdict_ingest::parse_paypal(&body).unwrap();
        app.engine.receive(Source::Paypal, parsed, &body).await.unwrap();
        let d = app.dispute(Processor::Paypal, "PP-000-042-663-135").await;
        let got = (d.status, d.stage, d.amount.to_string(), d.reason_code.to_string());
        assert_eq!(
            got,
            (
                Status::Notified,
                Stage::Inquiry,
                "3.00 USD".to_owned(),
                "other product_not_received".to_owned()
            ),
            "{}",
            app.label
        );
    }
}

#[tokio::test]
async fn a_signed_alert_opens_a_pre_dispute() {
    for app in apps().await {
        let alert = br#"{"alert_id":"cdrn_5f1c2a","provider":"verifi_cdrn","type":"alert.created","occurred_at":"2026-11-01T08:00:00Z","processor":"stripe","payment_reference":"ch_3Pq7","amount":{"minor_units":4999,"currency":"USD"},"card_network":"visa","reason_code":"10.4","respond_by":"2026-11-03T00:00:00Z"}"#;
        let (status, body) = app.post("/webhooks/alerts", &alert_headers(alert), &alert[..]).await;
        assert_eq!(status, StatusCode::OK, "{} {body}", app.label);
        let d = app.dispute(Processor::Stripe, "cdrn_5f1c2a").await;
        assert_eq!((d.status, d.stage), (Status::Notified, Stage::PreDispute));
        assert_eq!(
            (d.amount.to_string(), d.reason_code.to_string()),
            ("49.99 USD".into(), "visa 10.4".into())
        );
        let events = app.engine.store().events(d.id).await.unwrap();
        assert_eq!(events[0].actor, "processor:alerts:verifi_cdrn");
    }
}

#[tokio::test]
async fn a_won_dispute_receiving_pre_arbitration_over_http_reopens() {
    for app in apps().await {
        assert_eq!(
            post_fixture(&app, "adyen/openapi-webhooks-v1-chargeback-reversed.json")
                .await
                .0,
            StatusCode::OK
        );
        // SECOND_CHARGEBACK carries the same timestamp; it is a later stage, so it is not stale.
        assert_eq!(
            post_fixture(&app, "adyen/openapi-webhooks-v1-second-chargeback.json")
                .await
                .0,
            StatusCode::OK
        );
        let d = app.dispute(Processor::Adyen, ADYEN_PSP).await;
        assert_eq!(
            (d.status, d.stage),
            (Status::EvidenceGathering, Stage::PreArbitration),
            "{}",
            app.label
        );
    }
}

#[tokio::test]
async fn braintree_challenge_is_answered() {
    for app in apps().await {
        let request = Request::get("/webhooks/braintree?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53")
            .body(Body::empty())
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(
            &bytes[..],
            b"integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4"
        );
    }
}

#[tokio::test]
async fn a_payload_signed_through_the_braintree_challenge_is_refused() {
    for app in apps().await {
        // The attack: ask the challenge endpoint to "answer" a forged notification, then post its answer as
        // the notification's signature.
        let xml = String::from_utf8(fixture("braintree/ruby-sdk-sample-notification-dispute_won.xml")).unwrap();
        let payload = verdict_ingest::braintree_payload(&xml);
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("bt_challenge", &payload)
            .finish();
        let request = Request::get(format!("/webhooks/braintree?{query}"))
            .body(Body::empty())
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{}", app.label);
        let answer = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            !answer.contains(BT_PUBLIC),
            "{}: nothing is signed: {answer}",
            app.label
        );
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("bt_signature", &answer)
            .append_pair("bt_payload", &payload)
            .finish();
        let (status, _) = app.post("/webhooks/braintree", &[(FORM.0, FORM.1.into())], form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.label);
        assert_eq!(app.rows().await, 0, "{}", app.label);
        assert_eq!(app.disputes().await, 0, "{}", app.label);
        // Other shapes Braintree never sends are refused too: too short, too long, not lowercase hex.
        for challenge in [
            "abc123",
            "0123456789abcdef0123456789abcdef0",
            "20F9F8ED05F77439FE955C977E4C8A53",
        ] {
            let request = Request::get(format!("/webhooks/braintree?bt_challenge={challenge}"))
                .body(Body::empty())
                .unwrap();
            let response = app.router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{challenge}");
        }
    }
}

/// Counts what would have been fetched; never touches the network.
#[derive(Default)]
struct CountingFetcher {
    urls: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl CertificateFetcher for CountingFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, CertificateError> {
        self.urls.lock().unwrap().push(url.to_owned());
        Err(CertificateError::Fetch("offline test".into()))
    }
}

#[tokio::test]
async fn paypal_certificates_are_fetched_only_for_certificate_urls_and_only_a_few_new_ones() {
    for db in test_databases().await.unwrap() {
        let fetcher = Arc::new(CountingFetcher::default());
        let certificates = CachedCertificates::with_fetcher(fetcher.clone());
        certificates.preload(PAYPAL_CERT_URL, fixture("paypal/java-sdk-testClientCert.crt"));
        let engine = Engine::new(db.store().await.unwrap(), Arc::new(ManualClock::new(now())));
        let state = AppState::new(engine.clone()).with_webhooks(Webhooks {
            secrets: Arc::new(secrets()),
            certificates: Arc::new(certificates),
        });
        let app = App {
            router: router(state),
            engine,
            label: db.label,
            _db: db,
        };
        let body = fixture("paypal/java-sdk-validatecert-event-billing-plan-created.raw.json");
        // On PayPal's host but not a certificate: refused before anything is fetched.
        for url in [
            "https://api.paypal.com/v1/oauth2/token",
            "https://api.paypal.com/v1/notifications/certs/x/../../../v1/oauth2/token",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?redirect=https://evil.example",
        ] {
            let (status, _) = app.post("/webhooks/paypal", &paypal_headers(url), body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{url} {}", app.label);
        }
        assert!(fetcher.urls.lock().unwrap().is_empty());
        // Unverified requests naming new certificate URLs: only a few are fetched, then 503 without fetching.
        for i in 0..12 {
            let url = format!("https://api.paypal.com/v1/notifications/certs/CERT-forged-{i}");
            let (status, _) = app.post("/webhooks/paypal", &paypal_headers(&url), body.clone()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{url} {}", app.label);
        }
        assert_eq!(fetcher.urls.lock().unwrap().len(), 5, "{}", app.label);
        // The cached certificate still verifies PayPal's own deliveries.
        let (status, response) = app
            .post("/webhooks/paypal", &paypal_headers(PAYPAL_CERT_URL), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{} {response}", app.label);
        assert_eq!(fetcher.urls.lock().unwrap().len(), 5);
        assert_eq!(app.rows().await, 1);
    }
}

/// PostgreSQL refuses NUL in text: a validly signed notification carrying `\u0000` in its ids used to get 500
/// on every redelivery and never arrive. Now the raw body is stored byte for byte and NUL in the normalised
/// fields is escaped (`␀0`), so it is stored and applied on both databases.
#[tokio::test]
async fn a_notification_with_nul_in_its_ids_is_stored_and_applied() {
    for app in apps().await {
        // Stripe: NUL in the event id and the dispute id.
        let mut event: Value = serde_json::from_slice(&fixture(
            "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json",
        ))
        .unwrap();
        event["id"] = Value::String("evt_nul\u{0}1".into());
        event["data"]["object"]["id"] = Value::String("dp_nul\u{0}1".into());
        let body = serde_json::to_vec(&event).unwrap();
        assert!(
            body.windows(6).any(|w| w == b"\\u0000"),
            "the body carries an escaped NUL"
        );
        let (status, response) = app.post("/webhooks/stripe", &stripe_headers(&body), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{} {response}", app.label);
        let d = app.dispute(Processor::Stripe, "dp_nul\u{2400}01").await;
        assert_eq!(d.status, Status::Notified, "{}", app.label);
        let rows = app
            .engine
            .store()
            .find_notifications("stripe", Some("evt_nul\u{2400}01"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{}", app.label);
        assert_eq!(rows[0].status, InboxStatus::Applied, "{}", app.label);
        assert_eq!(rows[0].body, body, "{}: the raw body is kept byte for byte", app.label);
        // A redelivery is recognised as the same event.
        let (status, response) = app.post("/webhooks/stripe", &stripe_headers(&body), body).await;
        assert_eq!(status, StatusCode::OK, "{} {response}", app.label);
        assert!(response.contains("\"duplicates\":1"), "{response}");

        // Adyen: NUL in the pspReference.
        let mut batch: Value = serde_json::from_slice(&fixture("adyen/openapi-webhooks-v1-chargeback.json")).unwrap();
        batch["notificationItems"][0]["NotificationRequestItem"]["pspReference"] = Value::String("PSP\u{0}NUL".into());
        let body = signed_adyen(&serde_json::to_vec(&batch).unwrap());
        let (status, response) = app.post("/webhooks/adyen", &adyen_auth(), body).await;
        assert_eq!(
            (status, response.as_str()),
            (StatusCode::OK, "[accepted]"),
            "{}",
            app.label
        );
        app.settle().await;
        let d = app.dispute(Processor::Adyen, "PSP\u{2400}0NUL").await;
        assert_eq!(d.stage, Stage::Chargeback, "{}", app.label);

        // Alerts: NUL in the alert id.
        let alert = serde_json::to_vec(&serde_json::json!({
            "alert_id": "al\u{0}1",
            "provider": "ethoca",
            "type": "alert.created",
            "occurred_at": "2026-11-01T08:00:00Z",
        }))
        .unwrap();
        let (status, response) = app.post("/webhooks/alerts", &alert_headers(&alert), alert).await;
        assert_eq!(status, StatusCode::OK, "{} {response}", app.label);
        let d = app.dispute(Processor::Manual, "al\u{2400}01").await;
        assert_eq!(d.stage, Stage::PreDispute, "{}", app.label);
        assert_eq!(
            app.engine
                .store()
                .count_notifications(Some(InboxStatus::Applied))
                .await
                .unwrap(),
            3,
            "{}",
            app.label
        );
    }
}

/// An Adyen batch of 800 items used to be applied one item at a time inside the request (15-21 s, near the
/// request timeout). It is now stored in one transaction and acknowledged; the items are applied after.
#[tokio::test]
async fn a_large_adyen_batch_is_acknowledged_once_stored_and_applied_after() {
    const ITEMS: usize = 800;
    for app in apps().await {
        let template: Value = serde_json::from_slice(&fixture("adyen/openapi-webhooks-v1-chargeback.json")).unwrap();
        let mut item = template["notificationItems"][0]["NotificationRequestItem"].clone();
        // Keep each item small enough for 800 of them to fit the body limit.
        for unused in [
            "captureMerchantReference",
            "InvoiceCreditorAccount",
            "modificationMerchantReferences",
            "shopperReference",
            "grossCurrency",
            "grossValue",
            "capturePspReference",
        ] {
            item["additionalData"].as_object_mut().unwrap().remove(unused);
        }
        item.as_object_mut().unwrap().remove("reason");
        let items: Vec<Value> = (0..ITEMS)
            .map(|i| {
                let mut item = item.clone();
                item["pspReference"] = Value::String(format!("BATCH{i:05}"));
                serde_json::json!({ "NotificationRequestItem": item })
            })
            .collect();
        let batch = serde_json::json!({ "live": "false", "notificationItems": items });
        let body = signed_adyen(&serde_json::to_vec(&batch).unwrap());
        assert!(body.len() < BODY_LIMIT_BYTES, "{} bytes", body.len());

        let (status, response) = app.post("/webhooks/adyen", &adyen_auth(), body).await;
        assert_eq!(
            (status, response.as_str()),
            (StatusCode::OK, "[accepted]"),
            "{}",
            app.label
        );
        // Everything is durable when the answer comes, and the answer did not wait for the items to be applied
        // (applying 800 takes hundreds of commits; one count is one query).
        assert_eq!(app.rows().await, ITEMS as u64, "{}", app.label);
        let applied_at_answer = app
            .engine
            .store()
            .count_notifications(Some(InboxStatus::Applied))
            .await
            .unwrap();
        assert!(
            applied_at_answer < ITEMS as u64,
            "{}: all {ITEMS} were applied before the answer",
            app.label
        );
        let row = app
            .engine
            .store()
            .find_notifications("adyen", Some("BATCH00007:CHARGEBACK:2021-01-01T01:00:00+01:00"))
            .await
            .unwrap()
            .remove(0);
        let raw: Value = serde_json::from_slice(&row.body).unwrap();
        assert_eq!(
            raw["NotificationRequestItem"]["pspReference"], "BATCH00007",
            "{}: each row keeps its own item",
            app.label
        );
        app.settle().await;
        assert_eq!(
            app.engine
                .store()
                .count_notifications(Some(InboxStatus::Applied))
                .await
                .unwrap(),
            ITEMS as u64,
            "{}",
            app.label
        );
        assert_eq!(app.disputes().await, ITEMS as u64, "{}", app.label);
    }
}

/// A notification stored just before a crash (never applied) used to wait for the two-minute inbox lease:
/// the processor's redelivery was answered "duplicate" and changed nothing. Now the redelivery applies it.
#[tokio::test]
async fn a_redelivery_of_a_notification_stored_before_a_crash_is_applied_at_once() {
    for app in apps().await {
        let file = "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json";
        let body = fixture(file);
        // The first delivery was stored, then the replica died before applying it.
        let parsed = verdict_ingest::parse_stripe(&body).unwrap();
        let (received, _claim_of_the_dead_request) = app.engine.record(Source::Stripe, &parsed, &body).await.unwrap();
        assert_eq!(received.stored, 1);
        let stored = app.engine.store();
        assert!(
            stored
                .find_by_processor_id(Processor::Stripe, "dp_000000000000000000000000")
                .await
                .unwrap()
                .is_none()
        );
        // Stripe redelivers seconds later; the clock has not moved, the dead request's lease still holds.
        let (status, response) = post_fixture(&app, file).await;
        assert_eq!(status, StatusCode::OK, "{} {response}", app.label);
        assert!(response.contains("\"retaken\":1"), "{}: {response}", app.label);
        let d = app.dispute(Processor::Stripe, "dp_000000000000000000000000").await;
        assert_eq!(d.status, Status::Notified, "{}", app.label);
        assert_eq!(
            stored.count_notifications(Some(InboxStatus::Applied)).await.unwrap(),
            1,
            "{}",
            app.label
        );
    }
}
