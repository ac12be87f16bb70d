//! Every adapter, every call (accept, submit, refund), against the answers that decide retries: a validation
//! error is permanent (the step is dead-lettered), a rate limit is transient and its `Retry-After` is kept,
//! a server error and a timeout are transient. The processor's own look-ups answer normally, so it is the
//! acting call that fails. No error carries the response body or personal data.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use verdict_domain::{CardNetwork, Dispute, Processor, Stage, Status};
use verdict_engine::effects::{AdyenApi, BraintreeApi, PaypalApi, ProcessorApi, StepError, StripeApi};
use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{dispute, full_submission, install_crypto};

const TIMEOUT: Duration = Duration::from_millis(300);

struct Case {
    name: &'static str,
    api: Arc<dyn ProcessorApi>,
    dispute: Dispute,
    /// The processor's validation error, and the code Verdict must report from it.
    validation: ResponseTemplate,
    code: &'static str,
}

fn disputed(processor: Processor, id: &str, payment: &str) -> Dispute {
    let mut d = dispute(processor, CardNetwork::Visa, "13.1", Stage::Inquiry, Status::Resolved);
    d.processor_dispute_id = id.into();
    d.payment_reference = payment.into();
    d
}

/// The processor on `server`, with its look-ups answering normally (mounted with priority).
async fn case(name: &'static str, server: &MockServer) -> Case {
    let ok = |body: serde_json::Value| ResponseTemplate::new(200).set_body_json(body);
    let looks: Vec<Mock> = match name {
        "stripe" => vec![
            Mock::given(method("GET"))
                .and(path_regex("^/v1/disputes/"))
                .respond_with(ok(json!({"id": "dp_1", "status": "needs_response"}))),
            Mock::given(method("GET"))
                .and(path("/v1/refunds"))
                .respond_with(ok(json!({"object": "list", "data": [], "has_more": false}))),
        ],
        "adyen" => vec![
            Mock::given(method("POST"))
                .and(path("/retrieveApplicableDefenseReasons"))
                .respond_with(ok(json!({
                    "defenseReasons": [{"defenseReasonCode": "SupplyDefenseMaterial", "satisfied": false,
                        "defenseDocumentTypes": [{"defenseDocumentTypeCode": "DefenseMaterial",
                            "requirementLevel": "Required", "available": false}]}],
                    "disputeServiceResult": {"success": true}}))),
        ],
        "paypal" => vec![
            Mock::given(method("POST"))
                .and(path("/v1/oauth2/token"))
                .respond_with(ok(
                    json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 32400}),
                )),
            Mock::given(method("GET"))
                .and(path_regex("^/v1/customer/disputes/"))
                .respond_with(ok(
                    json!({"dispute_id": "PP-D-1", "status": "WAITING_FOR_SELLER_RESPONSE"}),
                )),
        ],
        "braintree" => vec![
            Mock::given(method("GET"))
                .and(path_regex("^/merchants/mid_123/disputes/"))
                .respond_with(ResponseTemplate::new(200).set_body_string(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dispute>\n  <status>open</status>\n</dispute>\n",
                )),
        ],
        other => panic!("{other}"),
    };
    for look in looks {
        look.with_priority(1).mount(server).await;
    }
    let uri = server.uri();
    match name {
        "stripe" => Case {
            name,
            api: Arc::new(StripeApi::new(&uri, "sk_test_1").unwrap().with_timeout(TIMEOUT).unwrap()),
            dispute: disputed(Processor::Stripe, "dp_1", "pi_1"),
            validation: ResponseTemplate::new(400).set_body_json(json!({"error": {
                "type": "invalid_request_error", "code": "parameter_invalid_empty",
                "message": "evidence[customer_name] jeanne.dupont@example.fr"}})),
            code: "parameter_invalid_empty",
        },
        "adyen" => Case {
            name,
            api: Arc::new(
                AdyenApi::new(&uri, &uri, "adyen_key", "ShopECOM")
                    .unwrap()
                    .with_timeout(TIMEOUT)
                    .unwrap(),
            ),
            dispute: disputed(Processor::Adyen, "9913333333333333", "8815555555555555"),
            validation: ResponseTemplate::new(422).set_body_json(json!({
                "status": 422, "errorCode": "000", "errorType": "validation",
                "message": "Invalid request for jeanne.dupont@example.fr"})),
            code: "000",
        },
        "paypal" => Case {
            name,
            api: Arc::new(
                PaypalApi::new(&uri, "client", "secret")
                    .unwrap()
                    .with_timeout(TIMEOUT)
                    .unwrap(),
            ),
            dispute: disputed(Processor::Paypal, "PP-D-1", "2GG279541U471931P"),
            validation: ResponseTemplate::new(422).set_body_json(json!({
                "name": "UNPROCESSABLE_ENTITY", "debug_id": "b1f5c8a3e2d4",
                "message": "The requested action could not be performed for jeanne.dupont@example.fr",
                "details": [{"issue": "CAPTURE_FULLY_REFUNDED", "description": "The capture has already been fully refunded"}]})),
            code: "CAPTURE_FULLY_REFUNDED",
        },
        "braintree" => Case {
            name,
            api: Arc::new(
                BraintreeApi::new(&uri, "mid_123", "pub", "priv")
                    .unwrap()
                    .with_timeout(TIMEOUT)
                    .unwrap(),
            ),
            dispute: disputed(Processor::Braintree, "bt1", "tx1"),
            validation: ResponseTemplate::new(422).set_body_string(super::braintree::API_ERROR),
            code: "81234",
        },
        other => panic!("{other}"),
    }
}

async fn calls(case: &Case) -> Vec<(&'static str, Result<verdict_engine::effects::ProcessorReply, StepError>)> {
    let d = &case.dispute;
    vec![
        ("accept", case.api.accept_dispute(d, "k-accept").await),
        (
            "submit",
            case.api.submit_evidence(d, &full_submission(), "k-submit").await,
        ),
        ("refund", case.api.refund(d, d.amount, "k-refund").await),
    ]
}

fn assert_clean(label: &str, err: &StepError) {
    let text = err.to_string();
    for leak in [
        "jeanne",
        "Jeanne",
        "Field is required",
        "could not be performed",
        "Invalid request",
    ] {
        assert!(
            !text.contains(leak),
            "{label}: the answer leaked into the error: {text}"
        );
    }
}

const PROCESSORS: [&str; 4] = ["stripe", "adyen", "paypal", "braintree"];

#[tokio::test]
async fn a_validation_error_is_permanent_and_reports_only_the_processors_code() {
    install_crypto();
    for name in PROCESSORS {
        let server = MockServer::start().await;
        let case = case(name, &server).await;
        Mock::given(any())
            .respond_with(case.validation.clone())
            .mount(&server)
            .await;
        for (call, result) in calls(&case).await {
            let label = format!("{} {call}", case.name);
            let err = result.unwrap_err();
            assert!(matches!(err, StepError::Permanent(_)), "{label}: {err}");
            assert!(err.to_string().contains(case.code), "{label}: {err}");
            assert_clean(&label, &err);
        }
    }
}

#[tokio::test]
async fn a_rate_limit_is_transient_and_keeps_its_retry_after() {
    install_crypto();
    for name in PROCESSORS {
        let server = MockServer::start().await;
        let case = case(name, &server).await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "7")
                    .set_body_json(json!({"message": "slow down jeanne.dupont@example.fr"})),
            )
            .mount(&server)
            .await;
        for (call, result) in calls(&case).await {
            let label = format!("{} {call}", case.name);
            let err = result.unwrap_err();
            assert!(err.is_transient(), "{label}: {err}");
            assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{label}: {err}");
            assert!(err.to_string().contains("HTTP 429"), "{label}: {err}");
            assert_clean(&label, &err);
        }
    }
}

#[tokio::test]
async fn a_retry_after_given_as_a_date_is_honoured_too() {
    install_crypto();
    let server = MockServer::start().await;
    let case = case("stripe", &server).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(120);
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(503).insert_header("Retry-After", at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        )
        .mount(&server)
        .await;
    let err = case.api.accept_dispute(&case.dispute, "k").await.unwrap_err();
    let after = err.retry_after().unwrap();
    assert!(
        after > Duration::from_secs(100) && after <= Duration::from_secs(120),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_server_error_is_transient_without_a_retry_after() {
    install_crypto();
    for name in PROCESSORS {
        let server = MockServer::start().await;
        let case = case(name, &server).await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad gateway for jeanne</html>"))
            .mount(&server)
            .await;
        for (call, result) in calls(&case).await {
            let label = format!("{} {call}", case.name);
            let err = result.unwrap_err();
            assert!(matches!(err, StepError::Transient(_)), "{label}: {err}");
            assert!(err.to_string().contains("HTTP 502"), "{label}: {err}");
            assert_clean(&label, &err);
        }
    }
}

#[tokio::test]
async fn a_timeout_is_transient() {
    install_crypto();
    for name in PROCESSORS {
        let server = MockServer::start().await;
        let case = case(name, &server).await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
            .mount(&server)
            .await;
        for (call, result) in calls(&case).await {
            let label = format!("{} {call}", case.name);
            let err = result.unwrap_err();
            assert!(
                matches!(&err, StepError::Transient(m) if m.contains("timed out")),
                "{label}: {err}"
            );
        }
    }
}

/// Answers every step with a processor's rate limit.
struct RateLimited;

#[async_trait::async_trait]
impl verdict_engine::effects::StepPerformer for RateLimited {
    async fn perform(
        &self,
        _ctx: &verdict_engine::effects::StepContext,
    ) -> Result<verdict_engine::effects::StepOutcome, StepError> {
        Err(StepError::RetryAfter {
            message: "stripe: closing the dispute: HTTP 429".into(),
            retry_after: Duration::from_secs(600),
        })
    }
}

#[tokio::test]
async fn the_worker_waits_at_least_the_retry_after_before_the_next_try() {
    use verdict_engine::timers::SchedulingConfig;
    use verdict_engine::worker::{Outcome, Worker, WorkerOptions};
    for h in super::harnesses().await {
        let d = h
            .dispute(
                "dp_retry_after",
                verdict_domain::Locale::En,
                Stage::Chargeback,
                vec![verdict_domain::Action::Assign {
                    assignee: Some("jane".into()),
                }],
            )
            .await;
        let mut options = WorkerOptions::from_config(&SchedulingConfig::default(), "w1");
        options.backoff.jitter = 0.0;
        let worker = Worker::new(h.engine.clone(), Arc::new(RateLimited), options);
        worker.drain().await.unwrap();
        let step = h.engine.store().steps(d.id).await.unwrap().remove(0);
        assert_eq!((step.status.as_str(), step.attempts), ("pending", 1), "{}", h.label);
        // The backoff alone would retry after 10 s; the processor asked for 10 minutes.
        assert_eq!(
            step.next_attempt_at,
            super::t0() + chrono::Duration::seconds(600),
            "{}",
            h.label
        );
        assert!(
            step.last_error.as_deref().unwrap_or_default().contains("HTTP 429"),
            "{}",
            h.label
        );
        h.clock.advance(chrono::Duration::seconds(599));
        assert_eq!(worker.run_once().await.unwrap(), Outcome::Idle, "{}", h.label);
    }
}
