//! The Braintree adapter against a local fake, its request bodies compared byte for byte with the XML the
//! Ruby SDK renders (copied fixtures): text and file evidence after a document upload, finalize, accept, and
//! the transaction refund with its API request key; the dispute is read before anything is sent again.

use base64::Engine as _;
use verdict_domain::{CardNetwork, Currency, Money, Processor, Stage, Status};
use verdict_engine::effects::{BraintreeApi, ProcessorApi, StepError, braintree_api_request_key};
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{dispute, full_submission, install_crypto, multipart_parts};

const TEXT: &str = include_str!("../fixtures/processor-apis/braintree/ruby-sdk-request-dispute-add-text-evidence.xml");
const TEXT_CATEGORIZED: &str =
    include_str!("../fixtures/processor-apis/braintree/ruby-sdk-request-dispute-add-text-evidence-categorized.xml");
const FILE: &str = include_str!("../fixtures/processor-apis/braintree/ruby-sdk-request-dispute-add-file-evidence.xml");
const FILE_NO_CATEGORY: &str =
    include_str!("../fixtures/processor-apis/braintree/ruby-sdk-request-dispute-add-file-evidence-no-category.xml");
const REFUND_WITH_KEY: &str =
    include_str!("../fixtures/processor-apis/braintree/ruby-sdk-request-transaction-refund-with-api-request-key.xml");
const EVIDENCE_ARRAY: &str =
    include_str!("../fixtures/processor-apis/braintree/ruby-sdk-sample-dispute-evidence-array.xml");
pub const API_ERROR: &str = include_str!("../fixtures/processor-apis/braintree/ruby-sdk-spec-api-error-response.xml");

const BASE: &str = "/merchants/mid_123";

fn bt_dispute() -> verdict_domain::Dispute {
    let mut d = dispute(
        Processor::Braintree,
        CardNetwork::Visa,
        "13.1",
        Stage::Chargeback,
        Status::Submitted,
    );
    d.processor_dispute_id = "bt9dispute1".into();
    d.payment_reference = "tx7ab2c9".into();
    d
}

fn auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("public_k:private_k")
    )
}

fn api(server: &MockServer) -> BraintreeApi {
    BraintreeApi::new(&server.uri(), "mid_123", "public_k", "private_k").unwrap()
}

/// The dispute as the gateway answers it, with `evidence` (the SDK's sample evidence array, or none).
fn dispute_xml(status: &str, evidence: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dispute>\n<id>bt9dispute1</id>\n<status>{status}</status>\n{evidence}\n</dispute>\n"
    )
}

async fn mount_dispute(server: &MockServer, status: &str, evidence: &str) {
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/disputes/bt9dispute1")))
        .and(header("Authorization", auth().as_str()))
        .and(header("X-ApiVersion", "6"))
        .and(header("Accept", "application/xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(dispute_xml(status, evidence)))
        .expect(1)
        .mount(server)
        .await;
}

fn body(request: &Request) -> &str {
    std::str::from_utf8(&request.body).unwrap()
}

#[tokio::test]
async fn braintree_adds_text_and_uploaded_file_evidence_as_the_sdk_renders_it_then_finalizes() {
    install_crypto();
    let server = MockServer::start().await;
    // Already attached by an earlier try: the carrier's name, and chat.pdf.
    let earlier = "<evidence type=\"array\">\n<evidence><id>e1</id><comments>Colissimo</comments><url nil=\"true\"/></evidence>\n\
                   <evidence><id>e2</id><comments nil=\"true\"/><url>s3.amazonaws.com/chat.pdf</url></evidence>\n</evidence>";
    mount_dispute(&server, "open", earlier).await;
    for (file_name, id) in [
        ("defense-v2.pdf", "up_doc"),
        ("pod.png", "up_pod"),
        ("photo.jpg", "up_photo"),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("{BASE}/document_uploads")))
            .and(header("Authorization", auth().as_str()))
            .and(header("X-ApiVersion", "6"))
            .and(move |request: &Request| {
                let needle = format!("filename=\"{file_name}\"");
                request.body.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
            .respond_with(ResponseTemplate::new(201).set_body_string(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<document-upload>\n  <id>{id}</id>\n  <kind>evidence_document</kind>\n</document-upload>\n"
            )))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/disputes/bt9dispute1/evidence")))
        .and(header("Authorization", auth().as_str()))
        .and(header("Content-Type", "application/xml"))
        .respond_with(
            ResponseTemplate::new(201).set_body_string(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<evidence>\n  <id>ev1</id>\n</evidence>\n",
            ),
        )
        .expect(6)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("{BASE}/disputes/bt9dispute1/finalize")))
        .and(header("Authorization", auth().as_str()))
        .and(body_string(""))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    let reply = api(&server)
        .submit_evidence(&bt_dispute(), &full_submission(), "key-ev")
        .await
        .unwrap();
    assert_eq!(reply.reference.as_deref(), Some("bt9dispute1"));

    let requests = server.received_requests().await.unwrap();
    let calls: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path().trim_start_matches(BASE)))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /disputes/bt9dispute1",
            "POST /disputes/bt9dispute1/evidence",
            "POST /document_uploads",
            "POST /disputes/bt9dispute1/evidence",
            "POST /document_uploads",
            "POST /disputes/bt9dispute1/evidence",
            "POST /disputes/bt9dispute1/evidence",
            "POST /disputes/bt9dispute1/evidence",
            "POST /document_uploads",
            "POST /disputes/bt9dispute1/evidence",
            "PUT /disputes/bt9dispute1/finalize",
        ]
    );
    let tracking = TEXT_CATEGORIZED
        .replace("123456789", "6A12345678901")
        .replace("REFUND_ID", "TRACKING_NUMBER")
        .replace(">7<", ">0<");
    assert_eq!(body(&requests[1]), tracking);
    assert_eq!(
        body(&requests[3]),
        FILE_NO_CATEGORY.replace("b51927a6-4ed7-4a32-8404-df8ef892e1a3", "up_doc")
    );
    assert_eq!(
        body(&requests[5]),
        FILE.replace("b51927a6-4ed7-4a32-8404-df8ef892e1a3", "up_pod")
            .replace("GENERAL", "PROOF_OF_DELIVERY")
    );
    assert_eq!(
        body(&requests[6]),
        TEXT.replace(
            "The transaction was already refunded",
            "Customer communication: The customer confirmed receipt on 27 September."
        )
    );
    assert_eq!(
        body(&requests[7]),
        TEXT.replace(
            "The transaction was already refunded",
            "Product description: iPhone 13 128 GB, grade excellent, battery 91%."
        )
    );
    assert_eq!(
        body(&requests[9]),
        FILE_NO_CATEGORY.replace("b51927a6-4ed7-4a32-8404-df8ef892e1a3", "up_photo")
    );

    // The upload: the kind field first, then the file, as the Ruby SDK lays it out.
    let parts = multipart_parts(&requests[2]);
    assert_eq!(parts.len(), 2);
    assert_eq!(
        (parts[0].name.as_str(), parts[0].body.as_slice()),
        ("document_upload[kind]", &b"evidence_document"[..])
    );
    assert_eq!(parts[1].name, "file");
    assert_eq!(parts[1].file_name.as_deref(), Some("defense-v2.pdf"));
    assert_eq!(parts[1].content_type.as_deref(), Some("application/pdf"));
    assert_eq!(parts[1].body, b"%PDF-1.7 defense document");
}

#[tokio::test]
async fn braintree_reads_the_sdk_sample_evidence_and_sends_no_evidence_to_a_dispute_no_longer_open() {
    install_crypto();
    for (status, sent) in [
        ("disputed", true),
        ("under_review", true),
        ("won", false),
        ("lost", false),
        ("accepted", false),
        ("expired", false),
    ] {
        let server = MockServer::start().await;
        mount_dispute(&server, status, EVIDENCE_ARRAY).await;
        let result = api(&server)
            .submit_evidence(&bt_dispute(), &full_submission(), "k")
            .await;
        match sent {
            // Already with the processor: done, nothing sent again; decided without it: reported.
            true => assert!(result.is_ok(), "{status}: {result:?}"),
            false => assert!(matches!(result, Err(StepError::Permanent(_))), "{status}: {result:?}"),
        }
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn braintree_accepts_an_open_dispute_once() {
    install_crypto();
    let server = MockServer::start().await;
    mount_dispute(&server, "open", "").await;
    Mock::given(method("PUT"))
        .and(path(format!("{BASE}/disputes/bt9dispute1/accept")))
        .and(header("Authorization", auth().as_str()))
        .and(header("X-ApiVersion", "6"))
        .and(header("Content-Type", "application/xml"))
        .and(body_string(""))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    api(&server).accept_dispute(&bt_dispute(), "k").await.unwrap();

    let server = MockServer::start().await;
    mount_dispute(&server, "accepted", "").await;
    api(&server).accept_dispute(&bt_dispute(), "k").await.unwrap();
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "no second acceptance"
    );
}

#[tokio::test]
async fn braintree_refunds_the_transaction_with_an_api_request_key_as_the_sdk_renders_it() {
    install_crypto();
    let server = MockServer::start().await;
    let mut d = bt_dispute();
    d.amount = Money::new(1_000, Currency::parse("USD").unwrap()).unwrap();
    d.order_reference = Some("order-123".into());
    let key = format!("{}:5:refund", d.id);
    let expected = REFUND_WITH_KEY.replace("0d6b8a3e-7c1f-4b7e-9a57-3f2c1e9b8d41", &braintree_api_request_key(&key));
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/transactions/tx7ab2c9/refund")))
        .and(header("Authorization", auth().as_str()))
        .and(header("X-ApiVersion", "6"))
        .and(header("Content-Type", "application/xml"))
        .and(body_string(expected))
        .respond_with(ResponseTemplate::new(201).set_body_string(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<transaction>\n  <id>refundtx1</id>\n  <type>credit</type>\n  <status>submitted_for_settlement</status>\n</transaction>\n",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let reply = api(&server).refund(&d, d.amount, &key).await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("refundtx1"));
    // The same step always sends the same key, a UUID.
    assert_eq!(braintree_api_request_key(&key), braintree_api_request_key(&key));
    assert!(uuid::Uuid::parse_str(&braintree_api_request_key(&key)).is_ok());
    assert_ne!(braintree_api_request_key(&key), braintree_api_request_key("other"));
}

#[tokio::test]
async fn a_braintree_validation_error_is_permanent_and_names_its_code() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_string(API_ERROR))
        .mount(&server)
        .await;
    let d = bt_dispute();
    let err = api(&server).refund(&d, d.amount, "k").await.unwrap_err();
    assert!(
        matches!(&err, StepError::Permanent(m) if m.contains("HTTP 422 (81234)")),
        "{err}"
    );
    assert!(!err.to_string().contains("Field is required"), "{err}");
}

#[test]
fn a_merchant_id_that_would_change_the_path_is_refused() {
    assert!(BraintreeApi::new("https://api.sandbox.braintreegateway.com:443", "../x", "p", "k").is_err());
}
