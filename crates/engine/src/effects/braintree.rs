//! Braintree: the gateway's XML API as its official Ruby SDK speaks it (HTTP Basic `public_key:private_key`,
//! `X-ApiVersion: 6`, XML bodies with dasherized keys and an XML declaration), every path under
//! `/merchants/{merchant_id}`.
//!
//! - evidence: for each text, `POST /disputes/{id}/evidence` with `<evidence><comments>`; for each file,
//!   `POST /document_uploads` (multipart, `document_upload[kind]=evidence_document` and the `file` part),
//!   then `POST /disputes/{id}/evidence` with `<evidence><document-upload-id>`; then
//!   `PUT /disputes/{id}/finalize`. The shipment's carrier and tracking number from the order facts go as
//!   categorised text (`CARRIER_NAME`, `TRACKING_NUMBER`, sequence 0); a proof-of-delivery file as
//!   `PROOF_OF_DELIVERY`; everything else uncategorised, as the SDK sends it.
//! - accept: `PUT /disputes/{id}/accept`
//! - refund: `POST /transactions/{id}/refund` with `<amount>`, `<order-id>` and `<api-request-key>`
//!
//! ## Idempotency, and asking before acting
//! Only the refund has an idempotency key (`api-request-key`; Braintree limits its length, so Verdict sends
//! a UUID derived from the step's key, the same for every try). The dispute calls have none, so before
//! acting Verdict reads the dispute (`GET /disputes/{id}`): an accepted dispute is not accepted again; a
//! dispute no longer `open` is not sent evidence again (already `disputed`, under review or decided); and on
//! an open dispute, evidence already attached by an earlier try (a text whose comments equal one to send, a
//! file whose URL ends with the file's name) is not added again. Finalizing is done last, once.
//!
//! Responses are read as plain XML: Verdict does not ask for gzip (`Accept-Encoding`), which the SDK does.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use verdict_domain::{Dispute, EvidenceKind, Money};

use super::http::{Multipart, base_url, client, retry_after, send_error, status_error_after};
use super::{EffectsError, ProcessorApi, ProcessorReply, StepError, Submission, SubmissionFile};

/// Braintree's limit per evidence file (its document upload reference).
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
const API_VERSION: &str = "6";

pub struct BraintreeApi {
    http: reqwest::Client,
    /// `https://api.braintreegateway.com:443/merchants/{merchant_id}`.
    merchant_url: String,
    public_key: String,
    private_key: String,
}

impl BraintreeApi {
    /// `base_url` is `https://api.braintreegateway.com:443` (production) or
    /// `https://api.sandbox.braintreegateway.com:443` (sandbox).
    pub fn new(
        base_url_text: &str,
        merchant_id: &str,
        public_key: &str,
        private_key: &str,
    ) -> Result<Self, EffectsError> {
        let merchant_id = merchant_id.trim();
        if merchant_id.is_empty() || !merchant_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EffectsError::Config(
                "braintree_merchant_id must be letters, digits and underscores".into(),
            ));
        }
        Ok(Self {
            http: client()?,
            merchant_url: format!(
                "{}/merchants/{merchant_id}",
                base_url("braintree_base_url", base_url_text)?
            ),
            public_key: public_key.trim().to_owned(),
            private_key: private_key.trim().to_owned(),
        })
    }

    /// Gives up on an answer after `timeout` (30 s by default); a timeout is a transient failure.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Self, EffectsError> {
        self.http = super::http::client_with_timeout(timeout)?;
        Ok(self)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.merchant_url))
            .basic_auth(&self.public_key, Some(&self.private_key))
            .header("X-ApiVersion", API_VERSION)
            .header(ACCEPT, "application/xml")
    }

    /// Sends an XML body (the SDK sends an empty one with PUTs); answers the response's XML.
    async fn send_xml(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        xml: String,
    ) -> Result<String, StepError> {
        let response = self
            .request(method, path)
            .header(CONTENT_TYPE, "application/xml")
            .body(xml)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        braintree_answer(what, response).await
    }

    async fn dispute(&self, id: &str) -> Result<String, StepError> {
        let what = "braintree: reading the dispute";
        let response = self
            .request(reqwest::Method::GET, &format!("/disputes/{id}"))
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        braintree_answer(what, response).await
    }

    /// `POST /document_uploads`; answers the upload's id.
    async fn upload(&self, file: &SubmissionFile) -> Result<String, StepError> {
        let what = "braintree: uploading an evidence document";
        let (content_type, body) = Multipart::new()
            .text("document_upload[kind]", "evidence_document")
            .file("file", &file.file_name, file.content_type.mime(), &file.bytes)
            .finish();
        let response = self
            .request(reqwest::Method::POST, "/document_uploads")
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let xml = braintree_answer(what, response).await?;
        element_text(&xml, &["document-upload", "id"])
            .ok_or_else(|| StepError::Transient(format!("{what}: the answer has no upload id")))
    }
}

/// The body of a successful answer, or the first error code of an `<api-error-response>`.
async fn braintree_answer(what: &str, response: reqwest::Response) -> Result<String, StepError> {
    let status = response.status();
    let retry = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(status_error_after(what, status, first_error_code(&body), retry));
    }
    Ok(body)
}

/// The first `<code>` of a Braintree validation error, wherever it is nested.
pub(crate) fn first_error_code(xml: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.has_tag_name("error"))?
        .children()
        .find(|n| n.has_tag_name("code"))?
        .text()
        .map(|t| t.trim().to_owned())
}

/// The text of the element at `path` from the root (the root's own name first).
pub(crate) fn element_text(xml: &str, path: &[&str]) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let (first, rest) = path.split_first()?;
    let mut node = doc.root_element();
    if !node.has_tag_name(*first) {
        return None;
    }
    for name in rest {
        node = node.children().find(|n| n.has_tag_name(*name))?;
    }
    Some(node.text().unwrap_or_default().trim().to_owned())
}

/// A dispute's status and the evidence already attached to it (comments, and file URLs).
struct DisputeState {
    status: String,
    comments: Vec<String>,
    urls: Vec<String>,
}

fn dispute_state(xml: &str) -> Result<DisputeState, StepError> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|_| StepError::Transient("braintree: the dispute's answer is not XML".into()))?;
    let root = doc.root_element();
    let status = root
        .children()
        .find(|n| n.has_tag_name("status"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| StepError::Transient("braintree: the dispute's answer has no status".into()))?;
    let mut comments = Vec::new();
    let mut urls = Vec::new();
    if let Some(list) = root.children().find(|n| n.has_tag_name("evidence")) {
        for evidence in list.children().filter(|n| n.has_tag_name("evidence")) {
            for child in evidence.children() {
                let text = child.text().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
                match (child.tag_name().name(), text) {
                    ("comments" | "comment", Some(text)) => comments.push(text),
                    ("url", Some(text)) => urls.push(text),
                    _ => {}
                }
            }
        }
    }
    Ok(DisputeState { status, comments, urls })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

/// A child element as the Ruby SDK's generator writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XmlValue {
    Text(String),
    Integer(i64),
    Nil,
}

/// An XML body as the Ruby SDK renders it: the declaration, the root, and one child per line indented by
/// two spaces (keys dasherized, integers typed, nil as `nil="true"`).
pub(crate) fn render_xml(root: &str, children: &[(&str, XmlValue)]) -> String {
    let mut xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>\n");
    for (name, value) in children {
        let name = name.replace('_', "-");
        match value {
            XmlValue::Text(text) => xml.push_str(&format!("  <{name}>{}</{name}>\n", escape(text))),
            XmlValue::Integer(n) => xml.push_str(&format!("  <{name} type=\"integer\">{n}</{name}>\n")),
            XmlValue::Nil => xml.push_str(&format!("  <{name} nil=\"true\"/>\n")),
        }
    }
    xml.push_str(&format!("</{root}>\n"));
    xml
}

/// One evidence to add: a text (with an optional category and sequence number) or a file.
pub(crate) enum BraintreeEvidence<'a> {
    Text {
        comments: String,
        category: Option<&'static str>,
        sequence_number: Option<i64>,
    },
    File {
        file: &'a SubmissionFile,
        category: Option<&'static str>,
    },
}

fn heading(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::ProofOfDelivery => "Proof of delivery",
        EvidenceKind::Tracking => "Tracking",
        EvidenceKind::CustomerCommunication => "Customer communication",
        EvidenceKind::ProductDescription => "Product description",
        EvidenceKind::ImeiSerialRecord => "IMEI / serial record",
        EvidenceKind::Photos => "Photos",
        EvidenceKind::RefundPolicy => "Refund policy",
        EvidenceKind::TermsAccepted => "Terms accepted",
        EvidenceKind::PriorUndisputedTransactions => "Prior undisputed transactions",
        EvidenceKind::Cancellation => "Cancellation",
        EvidenceKind::Uncategorised => "Other",
    }
}

/// The evidence a submission becomes at Braintree, in the order it is added: the shipment's carrier and
/// tracking number, the defense document, then each item.
pub(crate) fn braintree_evidence(submission: &Submission) -> Vec<BraintreeEvidence<'_>> {
    let mut out = Vec::new();
    if let Some(shipment) = submission.facts.as_ref().and_then(|f| f.shipment.as_ref()) {
        out.push(BraintreeEvidence::Text {
            comments: shipment.carrier.trim().to_owned(),
            category: Some("CARRIER_NAME"),
            sequence_number: Some(0),
        });
        out.push(BraintreeEvidence::Text {
            comments: shipment.tracking_number.trim().to_owned(),
            category: Some("TRACKING_NUMBER"),
            sequence_number: Some(0),
        });
    }
    if let Some(document) = &submission.document {
        out.push(BraintreeEvidence::File {
            file: document,
            category: None,
        });
    }
    for item in &submission.items {
        if let Some(text) = item.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            out.push(BraintreeEvidence::Text {
                comments: format!("{}: {text}", heading(item.kind)),
                category: None,
                sequence_number: None,
            });
        }
        if let Some(file) = &item.file {
            out.push(BraintreeEvidence::File {
                file,
                category: (item.kind == EvidenceKind::ProofOfDelivery).then_some("PROOF_OF_DELIVERY"),
            });
        }
    }
    out
}

/// Braintree ids are `[a-z0-9]`; anything else would change the path.
fn path_id(what: &str, id: &str) -> Result<String, StepError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StepError::Permanent(format!("{what} is not a Braintree id")));
    }
    Ok(id.to_owned())
}

/// The refund's `api-request-key`: a UUID made from the step's key (SHA-256, first 16 bytes), so it is the
/// same on every try and short enough for Braintree.
pub fn api_request_key(idempotency_key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(idempotency_key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// Statuses in which the merchant's evidence is with Braintree's processor (finalized). A dispute won, lost or
/// expired without it was decided before anything was sent, which is reported, never called a submission.
const SUBMITTED_STATUSES: [&str; 2] = ["disputed", "under_review"];
const ACCEPTED_STATUSES: [&str; 2] = ["accepted", "auto_accepted"];

#[async_trait::async_trait]
impl ProcessorApi for BraintreeApi {
    fn name(&self) -> &'static str {
        "braintree"
    }

    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        submission: &Submission,
        _idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let evidence = braintree_evidence(submission);
        for item in &evidence {
            if let BraintreeEvidence::File { file, .. } = item
                && file.bytes.len() > MAX_FILE_BYTES
            {
                return Err(StepError::Permanent(format!(
                    "braintree: an evidence file is {} bytes, over Braintree's 4 MB",
                    file.bytes.len()
                )));
            }
        }
        let state = dispute_state(&self.dispute(&id).await?)?;
        if SUBMITTED_STATUSES.contains(&state.status.as_str()) {
            tracing::info!(status = %state.status, "the dispute's evidence is already with Braintree; not sending it again");
            return Ok(ProcessorReply {
                reference: Some(id),
                decided_outcome: None,
                acknowledged_only: false,
            });
        }
        if state.status != "open" {
            return Err(StepError::Permanent(format!(
                "braintree: the dispute is {}, evidence can only be added to an open dispute",
                state.status
            )));
        }
        let path = format!("/disputes/{id}/evidence");
        for item in evidence {
            match item {
                BraintreeEvidence::Text {
                    comments,
                    category,
                    sequence_number,
                } => {
                    if state.comments.contains(&comments) {
                        continue;
                    }
                    let mut children = vec![("comments", XmlValue::Text(comments))];
                    if let Some(category) = category {
                        children.push(("category", XmlValue::Text(category.to_owned())));
                    }
                    if let Some(n) = sequence_number {
                        children.push(("sequence_number", XmlValue::Integer(n)));
                    }
                    self.send_xml(
                        "braintree: adding text evidence",
                        reqwest::Method::POST,
                        &path,
                        render_xml("evidence", &children),
                    )
                    .await?;
                }
                BraintreeEvidence::File { file, category } => {
                    if state.urls.iter().any(|url| url.ends_with(&file.file_name)) {
                        continue;
                    }
                    let upload_id = self.upload(file).await?;
                    let category = category.map_or(XmlValue::Nil, |c| XmlValue::Text(c.to_owned()));
                    self.send_xml(
                        "braintree: adding file evidence",
                        reqwest::Method::POST,
                        &path,
                        render_xml(
                            "evidence",
                            &[
                                ("document_upload_id", XmlValue::Text(upload_id)),
                                ("category", category),
                            ],
                        ),
                    )
                    .await?;
                }
            }
        }
        self.send_xml(
            "braintree: finalizing the dispute",
            reqwest::Method::PUT,
            &format!("/disputes/{id}/finalize"),
            String::new(),
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(id),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn accept_dispute(&self, dispute: &Dispute, _idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let state = dispute_state(&self.dispute(&id).await?)?;
        if ACCEPTED_STATUSES.contains(&state.status.as_str()) {
            tracing::info!(status = %state.status, "the dispute is already accepted at Braintree");
            return Ok(ProcessorReply {
                reference: Some(id),
                decided_outcome: None,
                acknowledged_only: false,
            });
        }
        self.send_xml(
            "braintree: accepting the dispute",
            reqwest::Method::PUT,
            &format!("/disputes/{id}/accept"),
            String::new(),
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(id),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn refund(
        &self,
        dispute: &Dispute,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let transaction = path_id("the payment reference (transaction id)", &dispute.payment_reference)?;
        let mut children = vec![("amount", XmlValue::Text(amount.decimal()))];
        if let Some(order) = dispute.order_reference.as_deref().filter(|o| !o.trim().is_empty()) {
            children.push(("order_id", XmlValue::Text(order.trim().to_owned())));
        }
        children.push(("api_request_key", XmlValue::Text(api_request_key(idempotency_key))));
        let xml = self
            .send_xml(
                "braintree: refunding",
                reqwest::Method::POST,
                &format!("/transactions/{transaction}/refund"),
                render_xml("transaction", &children),
            )
            .await?;
        Ok(ProcessorReply {
            reference: element_text(&xml, &["transaction", "id"]),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }
}
