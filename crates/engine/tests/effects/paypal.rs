//! The PayPal adapter against a local fake: the OAuth token (fetched once, renewed when it expires or is
//! refused), provide-evidence as multipart with its `input` JSON and files, accept-claim, and the refund of the
//! capture with `PayPal-Request-Id`; what PayPal's published spec allows (evidence types) is read from the
//! copied spec.

use base64::Engine as _;
use serde_json::json;
use verdict_domain::{CardNetwork, Processor, Stage, Status};
use verdict_engine::effects::{PaypalApi, ProcessorApi, StepError};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{dispute, full_submission, install_crypto, multipart_parts};

const DISPUTES_SPEC: &str =
    include_str!("../fixtures/processor-apis/paypal/openapi-customer_disputes_v1-merchant-actions.json");
const PAYMENTS_SPEC: &str =
    include_str!("../fixtures/processor-apis/paypal/openapi-payments_payment_v2-captures-refund.json");

fn paypal_dispute() -> verdict_domain::Dispute {
    let mut d = dispute(
        Processor::Paypal,
        CardNetwork::Visa,
        "13.1",
        Stage::Chargeback,
        Status::Submitted,
    );
    d.processor_dispute_id = "PP-D-27803".into();
    d.payment_reference = "2GG279541U471931P".into();
    d
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The token endpoint: client credentials in HTTP Basic, a form body; `expires_in` as given.
async fn mount_token(server: &MockServer, expires_in: u64, times: u64) {
    Mock::given(method("POST"))
        .and(path("/v1/oauth2/token"))
        .and(header("Authorization", basic("client-id-1", "secret-1").as_str()))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .and(body_string("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "scope": "https://uri.paypal.com/services/disputes/update-seller",
            "access_token": "A21AAtoken",
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": expires_in,
            "nonce": "2026-11-02T10:30:00ZnonceX"
        })))
        .expect(times)
        .mount(server)
        .await;
}

/// The dispute as PayPal shows it; a RESOLVED one was resolved in the buyer's favour.
async fn mount_dispute(server: &MockServer, status: &str) {
    let mut body = json!({
        "dispute_id": "PP-D-27803",
        "status": status,
        "dispute_life_cycle_stage": "CHARGEBACK"
    });
    if status == "RESOLVED" {
        body["dispute_outcome"] = json!({"outcome_code": "RESOLVED_BUYER_FAVOUR"});
    }
    mount_dispute_body(server, body).await;
}

async fn mount_dispute_body(server: &MockServer, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path("/v1/customer/disputes/PP-D-27803"))
        .and(header("Authorization", "Bearer A21AAtoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

fn subsequent_action() -> serde_json::Value {
    json!({"links": [{"href": "https://api-m.sandbox.paypal.com/v1/customer/disputes/PP-D-27803", "rel": "self", "method": "GET"}]})
}

fn api(server: &MockServer) -> PaypalApi {
    PaypalApi::new(&server.uri(), "client-id-1", "secret-1").unwrap()
}

#[tokio::test]
async fn paypal_provides_evidence_as_multipart_input_json_and_files_with_one_token() {
    install_crypto();
    let server = MockServer::start().await;
    mount_token(&server, 32_400, 1).await;
    mount_dispute(&server, "WAITING_FOR_SELLER_RESPONSE").await;
    Mock::given(method("POST"))
        .and(path("/v1/customer/disputes/PP-D-27803/provide-evidence"))
        .and(header("Authorization", "Bearer A21AAtoken"))
        .and(header("PayPal-Request-Id", "key-ev"))
        .respond_with(ResponseTemplate::new(200).set_body_json(subsequent_action()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/customer/disputes/PP-D-27803/accept-claim"))
        .and(header("Authorization", "Bearer A21AAtoken"))
        .and(header("PayPal-Request-Id", "key-accept"))
        .respond_with(ResponseTemplate::new(200).set_body_json(subsequent_action()))
        .expect(1)
        .mount(&server)
        .await;
    let api = api(&server);
    let reply = api
        .submit_evidence(&paypal_dispute(), &full_submission(), "key-ev")
        .await
        .unwrap();
    assert_eq!(reply.reference.as_deref(), Some("PP-D-27803"));
    // The token is reused for the next call.
    api.accept_dispute(&paypal_dispute(), "key-accept").await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let evidence = requests
        .iter()
        .find(|r| r.url.path().ends_with("/provide-evidence"))
        .unwrap();
    let parts = multipart_parts(evidence);
    assert_eq!(parts[0].name, "input");
    assert_eq!(parts[0].content_type.as_deref(), Some("application/json"));
    let input: serde_json::Value = serde_json::from_slice(&parts[0].body).unwrap();
    assert_eq!(
        input,
        json!({"evidences": [
            {"evidence_type": "OTHER",
             "notes": "Defense document (defense-v2.pdf): the merchant's argument, the evidence index and the dispute's timeline."},
            {"evidence_type": "PROOF_OF_FULFILLMENT",
             "evidence_info": {"tracking_info": [
                 {"carrier_name": "OTHER", "carrier_name_other": "Colissimo", "tracking_number": "6A12345678901"}]},
             "notes": "Proof of delivery: File: pod.png"},
            {"evidence_type": "OTHER",
             "notes": "Customer communication: The customer confirmed receipt on 27 September.\nFile: chat.pdf"},
            {"evidence_type": "ITEM_DESCRIPTION",
             "notes": "Product description: iPhone 13 128 GB, grade excellent, battery 91%."},
            {"evidence_type": "PHOTOS_OF_SHIPPED_ITEM", "notes": "Photos: File: photo.jpg"}
        ]})
    );
    type FilePart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);
    let files: Vec<FilePart> = parts[1..]
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.file_name.as_deref(),
                p.content_type.as_deref(),
                p.body.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (
                "evidence-file",
                Some("defense-v2.pdf"),
                Some("application/pdf"),
                &b"%PDF-1.7 defense document"[..]
            ),
            (
                "evidence-file",
                Some("pod.png"),
                Some("image/png"),
                &b"\x89PNG proof of delivery"[..]
            ),
            (
                "evidence-file",
                Some("chat.pdf"),
                Some("application/pdf"),
                &b"%PDF-1.7 chat"[..]
            ),
            (
                "evidence-file",
                Some("photo.jpg"),
                Some("image/jpeg"),
                &b"\xff\xd8\xff photo"[..]
            ),
        ]
    );

    // Every evidence type and carrier sent is one PayPal's spec lists.
    let spec: serde_json::Value = serde_json::from_str(DISPUTES_SPEC).unwrap();
    let types = spec["components"]["schemas"]["evidence"]["properties"]["evidence_type"]["enum"]
        .as_array()
        .unwrap();
    let carriers = spec["components"]["schemas"]["tracking_info"]["properties"]["carrier_name"]["enum"]
        .as_array()
        .unwrap();
    for evidence in input["evidences"].as_array().unwrap() {
        assert!(types.contains(&evidence["evidence_type"]), "{evidence}");
        assert!(evidence["notes"].as_str().unwrap().chars().count() <= 2000);
        for tracking in evidence["evidence_info"]["tracking_info"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(carriers.contains(&tracking["carrier_name"]), "{tracking}");
        }
    }

    let accept = requests
        .iter()
        .find(|r| r.url.path().ends_with("/accept-claim"))
        .unwrap();
    let parts = multipart_parts(accept);
    assert_eq!(parts.len(), 1);
    assert_eq!(
        (parts[0].name.as_str(), parts[0].content_type.as_deref()),
        ("input", Some("application/json"))
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&parts[0].body).unwrap(),
        json!({"note": "The merchant accepts the claim."})
    );
}

#[tokio::test]
async fn paypal_sends_nothing_again_once_it_holds_the_evidence_or_resolved_for_the_buyer() {
    install_crypto();
    let server = MockServer::start().await;
    mount_token(&server, 32_400, 1).await;
    mount_dispute_body(
        &server,
        json!({"dispute_id": "PP-D-27803", "status": "UNDER_REVIEW",
               "evidences": [{"evidence_type": "PROOF_OF_FULFILLMENT", "source": "SUBMITTED_BY_SELLER"}]}),
    )
    .await;
    api(&server)
        .submit_evidence(&paypal_dispute(), &full_submission(), "key-ev")
        .await
        .unwrap();

    let resolved = MockServer::start().await;
    mount_token(&resolved, 32_400, 1).await;
    mount_dispute(&resolved, "RESOLVED").await;
    api(&resolved)
        .accept_dispute(&paypal_dispute(), "key-accept")
        .await
        .unwrap();

    for server in [&server, &resolved] {
        let requests = server.received_requests().await.unwrap();
        assert!(
            requests
                .iter()
                .all(|r| !r.url.path().contains("provide-evidence") && !r.url.path().contains("accept-claim"))
        );
    }
}

#[tokio::test]
async fn paypal_reports_a_dispute_closed_before_anything_was_sent_instead_of_calling_it_done() {
    install_crypto();
    let server = MockServer::start().await;
    mount_token(&server, 32_400, 1).await;
    mount_dispute_body(
        &server,
        json!({"dispute_id": "PP-D-27803", "status": "RESOLVED",
               "dispute_outcome": {"outcome_code": "RESOLVED_SELLER_FAVOUR"},
               "evidences": [{"evidence_type": "OTHER", "source": "SUBMITTED_BY_BUYER"}]}),
    )
    .await;
    let api = api(&server);
    let err = api
        .submit_evidence(&paypal_dispute(), &full_submission(), "key-ev")
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    let err = api.accept_dispute(&paypal_dispute(), "key-accept").await.unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| !r.url.path().contains("provide-evidence") && !r.url.path().contains("accept-claim"))
    );
}

#[tokio::test]
async fn paypal_refunds_the_capture_with_the_request_id_and_reads_its_status() {
    install_crypto();
    for (status, acknowledged_only) in [("COMPLETED", false), ("PENDING", true)] {
        let server = MockServer::start().await;
        mount_token(&server, 32_400, 1).await;
        let d = paypal_dispute();
        Mock::given(method("POST"))
            .and(path("/v2/payments/captures/2GG279541U471931P/refund"))
            .and(header("Authorization", "Bearer A21AAtoken"))
            .and(header("PayPal-Request-Id", "key-refund"))
            .and(header("Prefer", "return=representation"))
            .and(header("Content-Type", "application/json"))
            .and(body_json(json!({
                "amount": {"value": "1234.50", "currency_code": "EUR"},
                "custom_id": d.id.to_string()
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "1JU08902781691411",
                "status": status,
                "amount": {"value": "1234.50", "currency_code": "EUR"},
                "links": [{"rel": "self", "method": "GET",
                           "href": "https://api-m.paypal.com/v2/payments/refunds/1JU08902781691411"}]
            })))
            .expect(1)
            .mount(&server)
            .await;
        let reply = api(&server).refund(&d, d.amount, "key-refund").await.unwrap();
        assert_eq!(reply.reference.as_deref(), Some("1JU08902781691411"));
        assert_eq!(reply.acknowledged_only, acknowledged_only, "{status}");
    }
    // The statuses read are the spec's.
    let spec: serde_json::Value = serde_json::from_str(PAYMENTS_SPEC).unwrap();
    let statuses = spec["components"]["schemas"]["refund_status"]["properties"]["status"]["enum"].clone();
    for status in ["COMPLETED", "PENDING", "FAILED", "CANCELLED"] {
        assert!(statuses.as_array().unwrap().contains(&json!(status)), "{statuses}");
    }
}

#[tokio::test]
async fn a_failed_paypal_refund_is_permanent() {
    install_crypto();
    let server = MockServer::start().await;
    mount_token(&server, 32_400, 1).await;
    Mock::given(method("POST"))
        .and(path("/v2/payments/captures/2GG279541U471931P/refund"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1JU0", "status": "FAILED"})))
        .mount(&server)
        .await;
    let d = paypal_dispute();
    let err = api(&server).refund(&d, d.amount, "key-refund").await.unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
}

#[tokio::test]
async fn paypal_renews_an_expired_token_and_drops_a_refused_one() {
    install_crypto();
    // A token that expires within the renewal margin is fetched again for every call.
    let server = MockServer::start().await;
    mount_token(&server, 30, 2).await;
    mount_dispute(&server, "RESOLVED").await;
    let api_short = api(&server);
    api_short.accept_dispute(&paypal_dispute(), "k1").await.unwrap();
    api_short.accept_dispute(&paypal_dispute(), "k2").await.unwrap();
    server.verify().await;

    // A 401 drops the token: the try is transient and the next one fetches a new token.
    let server = MockServer::start().await;
    mount_token(&server, 32_400, 2).await;
    Mock::given(method("GET"))
        .and(path("/v1/customer/disputes/PP-D-27803"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_dispute(&server, "RESOLVED").await;
    let api = api(&server);
    let err = api.accept_dispute(&paypal_dispute(), "k").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    api.accept_dispute(&paypal_dispute(), "k").await.unwrap();
    let tokens = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/oauth2/token")
        .count();
    assert_eq!(tokens, 2);
}

#[tokio::test]
async fn paypal_refuses_files_over_its_limits_before_sending_anything() {
    install_crypto();
    let server = MockServer::start().await;
    let mut submission = full_submission();
    submission.document.as_mut().unwrap().bytes = vec![b'x'; 10 * 1024 * 1024 + 1];
    let err = api(&server)
        .submit_evidence(&paypal_dispute(), &submission, "k")
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn paypal_without_tracking_sends_delivery_proof_as_a_receipt_and_known_refunds_as_proof_of_refund() {
    install_crypto();
    let server = MockServer::start().await;
    mount_token(&server, 32_400, 1).await;
    mount_dispute(&server, "WAITING_FOR_SELLER_RESPONSE").await;
    Mock::given(method("POST"))
        .and(path("/v1/customer/disputes/PP-D-27803/provide-evidence"))
        .respond_with(ResponseTemplate::new(200).set_body_json(subsequent_action()))
        .expect(1)
        .mount(&server)
        .await;
    let mut submission = full_submission();
    submission.document = None;
    submission.items.truncate(1);
    submission.items.push(verdict_engine::effects::SubmissionItem {
        kind: verdict_domain::EvidenceKind::Tracking,
        text: Some("https://www.laposte.fr/outils/suivre-vos-envois?code=6A12345678901".into()),
        file: None,
    });
    let facts = submission.facts.as_mut().unwrap();
    facts.shipment = None;
    facts.refunds = vec![verdict_domain::facts::OrderRefund {
        refunded_at: super::t0(),
        amount: facts.total,
        reference: Some("1JU08902781691411".into()),
    }];
    api(&server)
        .submit_evidence(&paypal_dispute(), &submission, "key-ev")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let parts = multipart_parts(requests.last().unwrap());
    let input: serde_json::Value = serde_json::from_slice(&parts[0].body).unwrap();
    assert_eq!(
        input,
        json!({"evidences": [
            {"evidence_type": "DELIVERY_RECEIPT", "notes": "Proof of delivery: File: pod.png"},
            {"evidence_type": "ONLINE_TRACKING_INFORMATION",
             "notes": "Tracking: https://www.laposte.fr/outils/suivre-vos-envois?code=6A12345678901"},
            {"evidence_type": "PROOF_OF_REFUND", "evidence_info": {"refund_ids": ["1JU08902781691411"]},
             "notes": "Refunds already made for this order."}
        ]})
    );
    let spec: serde_json::Value = serde_json::from_str(DISPUTES_SPEC).unwrap();
    let types = spec["components"]["schemas"]["evidence"]["properties"]["evidence_type"]["enum"]
        .as_array()
        .unwrap();
    for evidence in input["evidences"].as_array().unwrap() {
        assert!(types.contains(&evidence["evidence_type"]), "{evidence}");
    }
}
