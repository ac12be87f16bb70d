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

const STRIPE_FIXTURES: &str = include_str!("../fixtures/stripe/openapi-fixtures3-dispute-refund-file.json");
const STRIPE_SPEC: &str = include_str!("../fixtures/processor-apis/stripe/openapi-spec3-disputes-refunds-files.json");

/// stripe-mock's canned object of `kind` (`dispute`, `refund`, `file`) with `changes` applied.
fn stripe_object(kind: &str, changes: serde_json::Value) -> serde_json::Value {
    let fixtures: serde_json::Value = serde_json::from_str(STRIPE_FIXTURES).unwrap();
    let mut object = fixtures["resources"][kind].clone();
    for (key, value) in changes.as_object().unwrap() {
        object[key] = value.clone();
    }
    object
}

/// Mounts the Stripe calls of a submission: the dispute (`needs_response`), one upload per slot answering
/// `file_<slot>`, and the evidence POST.
async fn mount_stripe_submission(server: &MockServer, dispute_id: &str, key: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/disputes/{dispute_id}")))
        .and(header("Authorization", "Bearer sk_test_123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stripe_object(
            "dispute",
            json!({"id": dispute_id, "status": "needs_response"}),
        )))
        .expect(1)
        .mount(server)
        .await;
    for slot in ["document", "item-0", "item-1"] {
        Mock::given(method("POST"))
            .and(path("/v1/files"))
            .and(header("Authorization", "Bearer sk_test_123"))
            .and(header("Idempotency-Key", format!("{key}:file:{slot}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(stripe_object(
                "file",
                json!({"id": format!("file_{slot}"), "purpose": "dispute_evidence"}),
            )))
            .expect(1)
            .mount(server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!("/v1/disputes/{dispute_id}")))
        .and(header("Idempotency-Key", key))
        .and(header("Authorization", "Bearer sk_test_123"))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stripe_object(
            "dispute",
            json!({"id": dispute_id, "status": "under_review"}),
        )))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn stripe_uploads_each_file_then_submits_text_and_file_fields_from_the_items_and_facts() {
    install_crypto();
    let server = MockServer::start().await;
    mount_stripe_submission(&server, "dp_1Q2w3E4r", "key-ev").await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let disputed = stripe_dispute();
    let reply = api
        .submit_evidence(&disputed, &super::full_submission(), "key-ev")
        .await
        .unwrap();
    assert_eq!(reply.reference.as_deref(), Some("dp_1Q2w3E4r"));
    assert_eq!(reply.decided_outcome, None);

    let requests = server.received_requests().await.unwrap();
    let uploads: Vec<&Request> = requests.iter().filter(|r| r.url.path() == "/v1/files").collect();
    // The photo finds no free field (the document holds `uncategorized_file`): three uploads, not four.
    assert_eq!(uploads.len(), 3);
    let expected = [
        ("defense-v2.pdf", "application/pdf", &b"%PDF-1.7 defense document"[..]),
        ("pod.png", "image/png", &b"\x89PNG proof of delivery"[..]),
        ("chat.pdf", "application/pdf", &b"%PDF-1.7 chat"[..]),
    ];
    for (upload, (file_name, content_type, bytes)) in uploads.iter().zip(expected) {
        let parts = super::multipart_parts(upload);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(
            (parts[0].name.as_str(), parts[0].body.as_slice()),
            ("purpose", &b"dispute_evidence"[..])
        );
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].file_name.as_deref(), Some(file_name));
        assert_eq!(parts[1].content_type.as_deref(), Some(content_type));
        assert_eq!(parts[1].body, bytes);
    }

    let submit = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/disputes/dp_1Q2w3E4r")
        .unwrap();
    let fields = form(submit);
    let get = |k: &str| fields.get(k).map(String::as_str);
    assert_eq!(get("submit"), Some("true"));
    assert_eq!(get("evidence[uncategorized_file]"), Some("file_document"));
    assert_eq!(get("evidence[shipping_documentation]"), Some("file_item-0"));
    assert_eq!(get("evidence[customer_communication]"), Some("file_item-1"));
    assert_eq!(get("evidence[customer_name]"), Some("Jeanne Dupont"));
    assert_eq!(
        get("evidence[customer_email_address]"),
        Some("jeanne.dupont@example.fr")
    );
    assert_eq!(get("evidence[customer_purchase_ip]"), Some("203.0.113.7"));
    assert_eq!(
        get("evidence[product_description]"),
        Some("iPhone 13 128 GB, grade excellent, battery 91%.")
    );
    assert_eq!(get("evidence[shipping_carrier]"), Some("Colissimo"));
    assert_eq!(get("evidence[shipping_tracking_number]"), Some("6A12345678901"));
    assert_eq!(get("evidence[shipping_date]"), Some("2026-09-24"));
    assert_eq!(
        get("evidence[shipping_address]"),
        Some("12 rue des Lilas, 69003 Lyon, FR")
    );
    assert_eq!(
        get("evidence[refund_policy_disclosure]"),
        Some(
            "30-day returns, refund within 14 days of receipt\n\nShown at checkout and accepted by the customer on \
             2026-09-23."
        )
    );
    let other = get("evidence[uncategorized_text]").unwrap();
    assert!(
        other.contains("Delivery: Delivered on 2026-09-26; signed for by J. Dupont; Signed at delivery."),
        "{other}"
    );
    assert!(
        other.contains("Payment checks: AVS Y, CVV M, 3-D Secure authenticated."),
        "{other}"
    );
    assert!(
        other.contains("Customer communication:\nThe customer confirmed receipt on 27 September."),
        "{other}"
    );
    assert_eq!(
        get("metadata[verdict_dispute_id]"),
        Some(disputed.id.to_string().as_str())
    );

    // Every evidence field sent is one of Stripe's (its OpenAPI `dispute_evidence` parameters).
    let spec: serde_json::Value = serde_json::from_str(STRIPE_SPEC).unwrap();
    let known = &spec["paths"]["/v1/disputes/{dispute}"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        ["schema"]["properties"]["evidence"]["properties"];
    let sent: Vec<&String> = fields.keys().filter(|k| k.starts_with("evidence[")).collect();
    assert_eq!(sent.len(), 13, "{sent:?}");
    for key in sent {
        let name = key.trim_start_matches("evidence[").trim_end_matches(']');
        assert!(known.get(name).is_some(), "{name} is not a Stripe evidence field");
    }
    let file_field = &known["uncategorized_file"];
    assert!(file_field.is_object());
}

#[tokio::test]
async fn stripe_uploads_files_to_the_configured_files_host() {
    install_crypto();
    let api_server = MockServer::start().await;
    let files_server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "dp_1Q2w3E4r", "status": "needs_response"})),
        )
        .mount(&api_server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "dp_1Q2w3E4r"})))
        .expect(1)
        .mount(&api_server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/files"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "file_x"})))
        .expect(3)
        .mount(&files_server)
        .await;
    let api = StripeApi::new(&api_server.uri(), "sk_test_123")
        .unwrap()
        .with_files_base_url(&files_server.uri())
        .unwrap();
    api.submit_evidence(&stripe_dispute(), &super::full_submission(), "k")
        .await
        .unwrap();
}

#[tokio::test]
async fn stripe_evidence_already_under_review_is_not_sent_again() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stripe_object(
            "dispute",
            json!({"id": "dp_1Q2w3E4r", "status": "under_review"}),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let reply = api
        .submit_evidence(&stripe_dispute(), &super::full_submission(), "key-ev")
        .await
        .unwrap();
    assert_eq!(reply.reference.as_deref(), Some("dp_1Q2w3E4r"));
    // Only the look: no upload, no evidence.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn stripe_evidence_for_a_dispute_closed_before_anything_was_sent_is_not_called_submitted() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "dp_1Q2w3E4r", "status": "lost", "evidence_details": {"submission_count": 0}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let err = api
        .submit_evidence(&stripe_dispute(), &super::full_submission(), "key-ev")
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_old_stripe_payload_still_reaches_stripe_with_its_fields() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "dp_1Q2w3E4r", "status": "needs_response"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .and(header("Idempotency-Key", "key-evidence-1"))
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
    api.submit_evidence(&stripe_dispute(), &submission, "key-evidence-1")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let fields = form(requests.last().unwrap());
    assert_eq!(
        fields.get("evidence[shipping_tracking_number]").map(String::as_str),
        Some("1Z999AA10123456784")
    );
    assert_eq!(
        fields.get("evidence[product_description]").map(String::as_str),
        Some("Refurbished iPhone 13")
    );
    // Without order facts, the customer is the dispute's.
    assert_eq!(
        fields.get("evidence[customer_name]").map(String::as_str),
        Some("Jeanne Dupont")
    );
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
        .and(header("Authorization", "Bearer sk_test_123"))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
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

const ADYEN_SPEC: &str = include_str!("../fixtures/processor-apis/adyen/openapi-DisputeService-v30.json");

/// The spec's recorded example answer of an operation (`retrieveApplicableDefenseReasons-retrieve-defense-reasons-200`).
fn adyen_example(name: &str) -> serde_json::Value {
    let spec: serde_json::Value = serde_json::from_str(ADYEN_SPEC).unwrap();
    spec["components"]["examples"][name]["value"].clone()
}

#[tokio::test]
async fn adyen_chooses_the_reason_it_can_meet_supplies_its_documents_then_defends() {
    install_crypto();
    let server = MockServer::start().await;
    let dispute_body = json!({"disputePspReference": "9913333333333333", "merchantAccountCode": "VerdictShopECOM"});
    Mock::given(method("POST"))
        .and(path("/disputes/v30/retrieveApplicableDefenseReasons"))
        .and(header("X-API-Key", "adyen_key"))
        .and(body_json(&dispute_body))
        .respond_with(ResponseTemplate::new(200).set_body_json(adyen_example(
            "post-retrieveApplicableDefenseReasons-retrieve-defense-reasons-200",
        )))
        .expect(1)
        .mount(&server)
        .await;
    // The spec's example lists four reasons; only SupplyDefenseMaterial (DefenseMaterial required) can be met:
    // the others require GoodsNotReturned, GoodsRepairedOrReplaced or a TIDorInvoice that Verdict has not.
    Mock::given(method("POST"))
        .and(path("/disputes/v30/supplyDefenseDocument"))
        .and(header("X-API-Key", "adyen_key"))
        .and(header("Idempotency-Key", "key-ev:documents:DefenseMaterial"))
        .and(body_json(json!({
            "disputePspReference": "9913333333333333",
            "merchantAccountCode": "VerdictShopECOM",
            "defenseDocuments": [{
                "content": "JVBERi0xLjcgZGVmZW5zZSBkb2N1bWVudA==",
                "contentType": "application/pdf",
                "defenseDocumentTypeCode": "DefenseMaterial"
            }]
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(adyen_example("post-supplyDefenseDocument-supply-defense-document-200")),
        )
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
        .respond_with(ResponseTemplate::new(200).set_body_json(adyen_example("post-defendDispute-defend-dispute-200")))
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
    api.submit_evidence(&adyen_dispute(), &super::full_submission(), "key-ev")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.url.path()).collect();
    assert_eq!(
        paths,
        [
            "/disputes/v30/retrieveApplicableDefenseReasons",
            "/disputes/v30/supplyDefenseDocument",
            "/disputes/v30/defendDispute"
        ]
    );
}

#[tokio::test]
async fn adyen_prefers_the_reason_with_more_documents_and_skips_those_already_available() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/retrieveApplicableDefenseReasons"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "defenseReasons": [
                {"defenseReasonCode": "SupplyDefenseMaterial", "satisfied": false, "defenseDocumentTypes": [
                    {"defenseDocumentTypeCode": "DefenseMaterial", "requirementLevel": "Required", "available": false}]},
                {"defenseReasonCode": "GoodsWereAsDescribed", "satisfied": false, "defenseDocumentTypes": [
                    {"defenseDocumentTypeCode": "GoodsWereAsDescribed", "requirementLevel": "Required", "available": false},
                    {"defenseDocumentTypeCode": "DefenseMaterial", "requirementLevel": "OneOrMore", "available": true}]}
            ],
            "disputeServiceResult": {"success": true}
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/supplyDefenseDocument"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"disputeServiceResult": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/defendDispute"))
        .and(body_json(json!({
            "disputePspReference": "9913333333333333",
            "merchantAccountCode": "VerdictShopECOM",
            "defenseReasonCode": "GoodsWereAsDescribed"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"disputeServiceResult": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    let api = AdyenApi::new(&server.uri(), &server.uri(), "adyen_key", "VerdictShopECOM").unwrap();
    api.submit_evidence(&adyen_dispute(), &super::full_submission(), "key-ev")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let supplied: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    // The photo (the only file of a kind that shows the goods as described); DefenseMaterial is available.
    assert_eq!(
        supplied["defenseDocuments"],
        json!([{"content": "/9j/IHBob3Rv", "contentType": "image/jpeg", "defenseDocumentTypeCode": "GoodsWereAsDescribed"}])
    );
}

#[tokio::test]
async fn adyen_without_a_reason_it_can_meet_sends_nothing_and_says_what_is_needed() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/retrieveApplicableDefenseReasons"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "defenseReasons": [{"defenseReasonCode": "GoodsNotReturned", "satisfied": false, "defenseDocumentTypes": [
                {"defenseDocumentTypeCode": "GoodsNotReturned", "requirementLevel": "Required", "available": false}]}],
            "disputeServiceResult": {"success": true}
        })))
        .mount(&server)
        .await;
    let api = AdyenApi::new(&server.uri(), &server.uri(), "adyen_key", "VerdictShopECOM").unwrap();
    let err = api
        .submit_evidence(&adyen_dispute(), &super::full_submission(), "key-ev")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StepError::Permanent(m) if m.contains("GoodsNotReturned needs GoodsNotReturned")),
        "{err}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn adyen_keys_longer_than_64_characters_are_hashed_the_same_every_time() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"disputeServiceResult": {"success": true}})))
        .mount(&server)
        .await;
    let api = AdyenApi::new(&server.uri(), &server.uri(), "adyen_key", "VerdictShopECOM").unwrap();
    let long = format!(
        "{}:12:submit_evidence:documents:GoodsWereAsDescribed",
        uuid::Uuid::now_v7()
    );
    api.accept_dispute(&adyen_dispute(), &long).await.unwrap();
    api.accept_dispute(&adyen_dispute(), &long).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let keys: Vec<String> = requests
        .iter()
        .map(|r| super::header_of(r, "Idempotency-Key").unwrap())
        .collect();
    assert!(long.len() > 64);
    assert_eq!(keys[0].len(), 64);
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[0], long);
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
        Mock::given(method("GET"))
            .and(path("/v1/disputes/dp_stripe_cfg"))
            .and(header("Authorization", "Bearer sk_test_cfg"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"id": "dp_stripe_cfg", "status": "needs_response"})),
            )
            .expect(1)
            .mount(&server)
            .await;
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
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "{}", h.label);
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

#[tokio::test]
async fn from_config_sends_paypal_and_braintree_disputes_to_their_adapters() {
    for h in harnesses().await {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/paypal/v1/oauth2/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "tok", "expires_in": 3600})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/paypal/v1/customer/disputes/PP-D-9"))
            .and(header("Authorization", "Bearer tok"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"status": "RESOLVED", "dispute_outcome": {"outcome_code": "RESOLVED_BUYER_FAVOUR"}}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/bt/merchants/mid_9/disputes/bt9"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<dispute><status>accepted</status></dispute>"))
            .expect(1)
            .mount(&server)
            .await;
        let mut config = EffectsConfig::default();
        config.processors.paypal_client_id = Some("client".into());
        config.processors.paypal_client_secret = Some("secret".into());
        config.processors.paypal_base_url = format!("{}/paypal", server.uri());
        config.processors.braintree_merchant_id = Some("mid_9".into());
        config.processors.braintree_public_key = Some("pub".into());
        config.processors.braintree_private_key = Some("priv".into());
        config.processors.braintree_base_url = format!("{}/bt", server.uri());
        let effects = Effects::from_config(&config, h.engine.store().clone(), h.clock.clone()).unwrap();

        let mut on_paypal = dispute(
            Processor::Paypal,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Accepted,
        );
        on_paypal.processor_dispute_id = "PP-D-9".into();
        let mut on_braintree = dispute(
            Processor::Braintree,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Accepted,
        );
        on_braintree.processor_dispute_id = "bt9".into();
        for d in [on_paypal, on_braintree] {
            let outcome = effects
                .perform(&ctx(StepKind::AcceptAtProcessor, d, None))
                .await
                .unwrap();
            assert_eq!(outcome, StepOutcome::done(), "{}", h.label);
        }
        server.verify().await;
        // Only half the credentials: no adapter, the step waits.
        config.processors.braintree_private_key = None;
        let effects = Effects::from_config(&config, h.engine.store().clone(), h.clock.clone()).unwrap();
        let d = dispute(
            Processor::Braintree,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Accepted,
        );
        let err = effects
            .perform(&ctx(StepKind::AcceptAtProcessor, d, None))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("waiting_for_adapter") && err.to_string().contains("braintree_private_key"),
            "{}: {err}",
            h.label
        );
    }
}

/// A prior payment of the customer, `days` before the order.
fn prior(
    reference: &str,
    days: i64,
    ip: Option<&str>,
    device: Option<&str>,
    disputed: bool,
) -> verdict_domain::facts::PriorTransaction {
    let facts = super::order_facts();
    verdict_domain::facts::PriorTransaction {
        payment_reference: reference.into(),
        paid_at: facts.placed_at - chrono::Duration::days(days),
        amount: facts.total,
        ip_address: ip.map(str::to_owned),
        device_id: device.map(str::to_owned),
        shipping_address: None,
        account_id: Some("cust-4411".into()),
        disputed,
    }
}

async fn ce3_form(eligible: bool) -> HashMap<String, String> {
    install_crypto();
    let server = MockServer::start().await;
    let types = if eligible {
        json!(["visa_compelling_evidence_3"])
    } else {
        json!([])
    };
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stripe_object(
            "dispute",
            json!({"id": "dp_1Q2w3E4r", "status": "needs_response", "enhanced_eligibility_types": types}),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "file_x"})))
        .mount(&server)
        .await;
    let mut submission = super::full_submission();
    submission.document = None;
    submission.items.clear();
    let facts = submission.facts.as_mut().unwrap();
    facts.prior_transactions = vec![
        prior("ch_older", 200, Some("203.0.113.7"), None, false),
        prior("ch_newer", 150, None, Some("dev-88"), false),
        prior("ch_oldest", 300, Some("203.0.113.7"), None, false),
        prior("ch_too_recent", 60, Some("203.0.113.7"), None, false),
        prior("ch_disputed", 130, Some("203.0.113.7"), None, true),
        prior("pi_not_a_charge", 140, Some("203.0.113.7"), None, false),
        prior("ch_unrelated", 170, Some("198.51.100.1"), Some("dev-1"), false),
    ];
    let mut d = dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "10.4",
        Stage::Chargeback,
        Status::Submitted,
    );
    d.processor_dispute_id = "dp_1Q2w3E4r".into();
    StripeApi::new(&server.uri(), "sk_test_123")
        .unwrap()
        .submit_evidence(&d, &submission, "k")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    form(requests.last().unwrap())
}

#[tokio::test]
async fn stripe_sends_compelling_evidence_3_with_the_two_latest_qualifying_charges_when_stripe_says_eligible() {
    let fields = ce3_form(true).await;
    let ce3 = "evidence[enhanced_evidence][visa_compelling_evidence_3]";
    let get = |k: &str| fields.get(&format!("{ce3}{k}")).map(String::as_str);
    assert_eq!(get("[prior_undisputed_transactions][0][charge]"), Some("ch_newer"));
    assert_eq!(
        get("[prior_undisputed_transactions][0][customer_device_id]"),
        Some("dev-88")
    );
    assert_eq!(get("[prior_undisputed_transactions][1][charge]"), Some("ch_older"));
    assert_eq!(
        get("[prior_undisputed_transactions][1][customer_purchase_ip]"),
        Some("203.0.113.7")
    );
    assert_eq!(get("[prior_undisputed_transactions][2][charge]"), None, "exactly two");
    assert_eq!(get("[disputed_transaction][customer_account_id]"), Some("cust-4411"));
    assert_eq!(get("[disputed_transaction][customer_purchase_ip]"), Some("203.0.113.7"));
    assert_eq!(get("[disputed_transaction][customer_device_id]"), Some("dev-88"));
    assert_eq!(
        get("[disputed_transaction][merchandise_or_services]"),
        Some("merchandise")
    );
    assert_eq!(
        get("[disputed_transaction][shipping_address][line1]"),
        Some("12 rue des Lilas")
    );
    assert_eq!(get("[disputed_transaction][shipping_address][country]"), Some("FR"));

    // Every field is one of the spec's `visa_compelling_evidence_3` parameters.
    let spec: serde_json::Value = serde_json::from_str(STRIPE_SPEC).unwrap();
    let ce3_spec = &spec["paths"]["/v1/disputes/{dispute}"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
        ["schema"]["properties"]["evidence"]["properties"]["enhanced_evidence"]["anyOf"][0]["properties"]["visa_compelling_evidence_3"]
        ["properties"];
    for key in fields.keys().filter_map(|k| k.strip_prefix(ce3)) {
        let names: Vec<&str> = key
            .trim_matches(['[', ']'])
            .split("][")
            .filter(|n| n.parse::<usize>().is_err())
            .collect();
        let mut node = ce3_spec;
        for (i, name) in names.iter().enumerate() {
            node = &node[*name];
            assert!(!node.is_null(), "{key}: {name} is not a Stripe CE 3.0 parameter");
            if i + 1 < names.len() {
                node = if node["items"].is_object() {
                    &node["items"]["properties"]
                } else {
                    &node["properties"]
                };
            }
        }
    }
}

#[tokio::test]
async fn stripe_sends_no_compelling_evidence_3_unless_stripe_says_the_dispute_is_eligible() {
    let fields = ce3_form(false).await;
    assert!(fields.keys().all(|k| !k.contains("enhanced_evidence")), "{fields:?}");
}
