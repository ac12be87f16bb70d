//! Stripe and Adyen adapters against a local fake server: exact paths, fields and idempotency headers, and
//! which failures are retried.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use verdict_domain::{CardNetwork, Processor, Stage, Status, StepKind};
use verdict_engine::effects::{
    AdyenApi, Effects, EffectsConfig, ProcessorApi, StepError, StepOutcome, StepPerformer, StripeApi,
};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{ctx, dispute, harnesses, install_crypto};

fn form(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn stripe_dispute() -> verdict_domain::Dispute {
    dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "13.1",
        Stage::Chargeback,
        Status::Submitted,
    )
}

fn adyen_dispute() -> verdict_domain::Dispute {
    let mut d = dispute(
        Processor::Adyen,
        CardNetwork::Mastercard,
        "4853",
        Stage::Chargeback,
        Status::Submitted,
    );
    d.processor_dispute_id = "9913333333333333".into();
    d.payment_reference = "8815555555555555".into();
    d
}

#[tokio::test]
async fn stripe_evidence_is_a_form_post_with_submit_and_the_idempotency_key() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .and(header("Idempotency-Key", "key-evidence-1"))
        .and(header("Authorization", "Bearer sk_test_123"))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "dp_1Q2w3E4r", "object": "dispute"})))
        .expect(1)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let submission = verdict_engine::effects::Evidence::from_payload(Some(&json!({
        "evidence": {"shipping_tracking_number": "1Z999AA10123456784", "product_description": "Refurbished iPhone 13"}
    })))
    .unwrap()
    .into_submission()
    .unwrap();
    let reply = api
        .submit_evidence(&stripe_dispute(), &submission, "key-evidence-1")
        .await
        .unwrap();
    assert_eq!(reply.reference.as_deref(), Some("dp_1Q2w3E4r"));
    assert_eq!(reply.decided_outcome, None);
    let requests = server.received_requests().await.unwrap();
    let fields = form(&requests[0]);
    assert_eq!(fields.get("submit").map(String::as_str), Some("true"));
    assert_eq!(
        fields.get("evidence[shipping_tracking_number]").map(String::as_str),
        Some("1Z999AA10123456784")
    );
    assert_eq!(
        fields.get("evidence[product_description]").map(String::as_str),
        Some("Refurbished iPhone 13")
    );
    assert_eq!(
        fields.get("evidence[customer_name]").map(String::as_str),
        Some("Jeanne Dupont")
    );
    assert_eq!(
        fields.get("evidence[customer_email_address]").map(String::as_str),
        Some("jeanne.dupont@example.fr")
    );
    assert!(fields.contains_key("metadata[verdict_dispute_id]"));
}

#[tokio::test]
async fn stripe_accept_closes_the_dispute() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .and(header("Authorization", "Bearer sk_test_123"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "dp_1Q2w3E4r", "status": "needs_response"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/disputes/dp_1Q2w3E4r/close"))
        .and(header("Idempotency-Key", "key-accept"))
        .and(header("Authorization", "Bearer sk_test_123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "dp_1Q2w3E4r", "status": "lost"})))
        .expect(1)
        .mount(&server)
        .await;
    let api = StripeApi::new(&format!("{}/", server.uri()), "sk_test_123").unwrap();
    api.accept_dispute(&stripe_dispute(), "key-accept").await.unwrap();
}

#[tokio::test]
async fn stripe_refunds_a_payment_intent_or_a_charge_for_the_amount() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [], "has_more": false})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "re_123", "status": "succeeded"})))
        .expect(2)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let mut d = stripe_dispute();
    let reply = api.refund(&d, d.amount, "key-refund-pi").await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("re_123"));
    d.payment_reference = "ch_3Pq9Zx".into();
    api.refund(&d, d.amount, "key-refund-ch").await.unwrap();

    let all = server.received_requests().await.unwrap();
    // Each refund is preceded by a look at the payment's refunds.
    let lists: Vec<&Request> = all.iter().filter(|r| r.method.as_str() == "GET").collect();
    assert_eq!(lists[0].url.query(), Some("payment_intent=pi_3Pq9Zx&limit=100"));
    assert_eq!(lists[1].url.query(), Some("charge=ch_3Pq9Zx&limit=100"));
    let requests: Vec<Request> = all.into_iter().filter(|r| r.method.as_str() == "POST").collect();
    let first = form(&requests[0]);
    assert_eq!(first.get("payment_intent").map(String::as_str), Some("pi_3Pq9Zx"));
    assert_eq!(first.get("amount").map(String::as_str), Some("123450"));
    assert!(first.contains_key("metadata[verdict_dispute_id]"));
    assert!(!first.contains_key("charge"));
    assert_eq!(
        requests[0].headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()),
        Some("key-refund-pi")
    );
    let second = form(&requests[1]);
    assert_eq!(second.get("charge").map(String::as_str), Some("ch_3Pq9Zx"));
    assert!(!second.contains_key("payment_intent"));
    assert_eq!(
        requests[1].headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()),
        Some("key-refund-ch")
    );
}

#[tokio::test]
async fn adyen_supplies_documents_then_defends_each_with_its_own_idempotency_key() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/disputes/v30/supplyDefenseDocument"))
        .and(header("X-API-Key", "adyen_key"))
        .and(header("Idempotency-Key", "key-ev:documents"))
        .and(body_json(json!({
            "disputePspReference": "9913333333333333",
            "merchantAccountCode": "VerdictShopECOM",
            "defenseDocuments": [{
                "content": "JVBERi0xLjcK",
                "contentType": "application/pdf",
                "defenseDocumentTypeCode": "DefenseMaterial"
            }]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"disputeServiceResult": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/disputes/v30/defendDispute"))
        .and(header("X-API-Key", "adyen_key"))
        .and(header("Idempotency-Key", "key-ev:defend"))
        .and(body_json(json!({
            "disputePspReference": "9913333333333333",
            "merchantAccountCode": "VerdictShopECOM",
            "defenseReasonCode": "SupplyDefenseMaterial"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"disputeServiceResult": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    let api = AdyenApi::new(
        &format!("{}/disputes/v30", server.uri()),
        &format!("{}/checkout/v71", server.uri()),
        "adyen_key",
        "VerdictShopECOM",
    )
    .unwrap();
    let submission = verdict_engine::effects::Evidence::from_payload(Some(&json!({
        "documents": [{"type_code": "DefenseMaterial", "content_type": "application/pdf", "content_base64": "JVBERi0xLjcK"}]
    })))
    .unwrap()
    .into_submission()
    .unwrap();
    api.submit_evidence(&adyen_dispute(), &submission, "key-ev")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].url.path().ends_with("/supplyDefenseDocument"));
    assert!(requests[1].url.path().ends_with("/defendDispute"));
}

#[tokio::test]
async fn adyen_accepts_and_refunds_through_checkout() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/disputes/v30/acceptDispute"))
        .and(header("X-API-Key", "adyen_key"))
        .and(header("Idempotency-Key", "key-accept"))
        .and(body_json(json!({
            "disputePspReference": "9913333333333333",
            "merchantAccountCode": "VerdictShopECOM"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"disputeServiceResult": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/checkout/v71/payments/8815555555555555/refunds"))
        .and(header("X-API-Key", "adyen_key"))
        .and(header("Idempotency-Key", "key-refund"))
        .and(body_json(json!({
            "amount": {"value": 123450, "currency": "EUR"},
            "merchantAccount": "VerdictShopECOM",
            "reference": "key-refund"
        })))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"pspReference": "REF0001", "status": "received"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let api = AdyenApi::new(
        &format!("{}/disputes/v30", server.uri()),
        &format!("{}/checkout/v71/", server.uri()),
        "adyen_key",
        "VerdictShopECOM",
    )
    .unwrap();
    let d = adyen_dispute();
    api.accept_dispute(&d, "key-accept").await.unwrap();
    let reply = api.refund(&d, d.amount, "key-refund").await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("REF0001"));
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_transient_client_errors_permanent() {
    install_crypto();
    for (status, transient) in [
        (500, true),
        (502, true),
        (503, true),
        (429, true),
        (400, false),
        (402, false),
        (404, false),
    ] {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error": {"type": "invalid_request_error", "code": "resource_missing",
                          "message": "No such customer jeanne.dupont@example.fr"},
                "errorCode": "000", "message": "jeanne.dupont@example.fr"
            })))
            .mount(&server)
            .await;
        let stripe = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
        let adyen = AdyenApi::new(&server.uri(), &server.uri(), "adyen_key", "VerdictShopECOM").unwrap();
        let results = [
            stripe.accept_dispute(&stripe_dispute(), "k").await,
            stripe.refund(&stripe_dispute(), stripe_dispute().amount, "k").await,
            adyen.accept_dispute(&adyen_dispute(), "k").await,
            adyen.refund(&adyen_dispute(), adyen_dispute().amount, "k").await,
        ];
        for result in results {
            let err = result.unwrap_err();
            assert_eq!(err.is_transient(), transient, "HTTP {status}: {err}");
            let text = err.to_string();
            assert!(text.contains(&status.to_string()), "{text}");
            assert!(
                !text.contains("jeanne"),
                "a response body leaked into the error: {text}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_processor_is_transient() {
    install_crypto();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let api = StripeApi::new(&format!("http://{addr}"), "sk_test_123").unwrap();
    let err = api.accept_dispute(&stripe_dispute(), "k").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn an_adyen_refusal_inside_a_200_is_permanent() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/acceptDispute"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "disputeServiceResult": {"success": false, "errorMessage": "Dispute is not in an acceptable state"}
        })))
        .mount(&server)
        .await;
    let api = AdyenApi::new(&server.uri(), &server.uri(), "adyen_key", "VerdictShopECOM").unwrap();
    let err = api.accept_dispute(&adyen_dispute(), "k").await.unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
}

#[tokio::test]
async fn a_path_changing_reference_is_refused_before_any_request() {
    install_crypto();
    let server = MockServer::start().await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let mut d = stripe_dispute();
    d.processor_dispute_id = "../v1/charges".into();
    let err = api.accept_dispute(&d, "k").await.unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn from_config_sends_stripe_disputes_to_stripe_and_the_rest_to_the_sandbox() {
    for h in harnesses().await {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/disputes/dp_stripe_cfg"))
            .and(header("Authorization", "Bearer sk_test_cfg"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "dp_stripe_cfg"})))
            .expect(1)
            .mount(&server)
            .await;
        let mut config = EffectsConfig {
            sandbox: true,
            ..EffectsConfig::default()
        };
        config.processors.stripe_api_key = Some("sk_test_cfg".into());
        config.processors.stripe_base_url = server.uri();
        let effects = Effects::from_config(&config, h.engine.store().clone(), h.clock.clone()).unwrap();

        let mut on_stripe = stripe_dispute();
        on_stripe.processor_dispute_id = "dp_stripe_cfg".into();
        let outcome = effects
            .perform(&ctx(StepKind::SubmitEvidence, on_stripe, None))
            .await
            .unwrap();
        // A real processor reports the outcome later, by webhook.
        assert_eq!(outcome, StepOutcome::done(), "{}", h.label);

        let outcome = effects
            .perform(&ctx(StepKind::SubmitEvidence, adyen_dispute(), None))
            .await
            .unwrap();
        let StepOutcome::Done {
            follow_up,
            follow_up_after,
        } = outcome
        else {
            panic!("{}: {outcome:?}", h.label)
        };
        assert!(
            matches!(follow_up, Some(verdict_domain::Action::ReceiveOutcome { .. })),
            "{}",
            h.label
        );
        assert_eq!(follow_up_after, Some(chrono::Duration::minutes(2)), "{}", h.label);
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{}", h.label);
    }
}

#[tokio::test]
async fn configured_processors_replace_the_sandbox_only_for_their_disputes() {
    for h in harnesses().await {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/close-me/acceptDispute"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let adyen = AdyenApi::new(
            &format!("{}/close-me", server.uri()),
            &server.uri(),
            "adyen_key",
            "VerdictShopECOM",
        )
        .unwrap();
        let effects =
            Effects::local(h.engine.store().clone(), h.clock.clone()).with_processor(Processor::Adyen, Arc::new(adyen));
        let err = effects
            .perform(&ctx(StepKind::AcceptAtProcessor, adyen_dispute(), None))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{}: {err}", h.label);
        let done = effects
            .perform(&ctx(StepKind::AcceptAtProcessor, stripe_dispute(), None))
            .await
            .unwrap();
        assert_eq!(done, StepOutcome::done(), "{}", h.label);
    }
}
