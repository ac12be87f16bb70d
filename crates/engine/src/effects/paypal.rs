//! PayPal: REST over OAuth 2.0 client credentials. A token is fetched with `POST /v1/oauth2/token` (HTTP
//! Basic `client_id:secret`, `grant_type=client_credentials`) and kept until shortly before it expires; an
//! answer of 401 drops it, so the next try fetches a new one.
//!
//! - evidence: `POST /v1/customer/disputes/{id}/provide-evidence`, `multipart/form-data` with a JSON part
//!   `input` (`{"evidences": [{evidence_type, evidence_info?, notes}]}`) and one `evidence-file` part per
//!   file (the defense document first)
//! - accept: `POST /v1/customer/disputes/{id}/accept-claim`, `multipart/form-data` with an `input` part
//!   `{"note": ...}`
//! - refund: `POST /v2/payments/captures/{capture_id}/refund` with `amount` and `custom_id` (the dispute's id);
//!   the dispute's payment reference is the capture id
//!
//! ## Idempotency, and asking before acting
//! Every POST carries the step's key in `PayPal-Request-Id`. Only the refund is documented to honour it
//! (PayPal keeps the key 45 days); the dispute actions declare no idempotency. So before evidence or an
//! acceptance is sent, the dispute is read (`GET /v1/customer/disputes/{id}`): once it is `UNDER_REVIEW` or
//! `RESOLVED` the evidence or acceptance is already with PayPal and is not sent again. A refund retried after
//! 45 days is not protected (PayPal offers no listing of a capture's refunds in the API used here), as with
//! Adyen. A refund answered `PENDING` is acknowledged only: the customer is told it was requested.
//!
//! The JSON parts of the dispute actions are not described by PayPal's published spec, only by its public
//! Postman collection (see `tests/fixtures/processor-apis/README.md`).

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use verdict_domain::{Dispute, EvidenceKind, Money};

use super::http::{
    Multipart, at_most, base_url, client, json_body, json_str, retry_after, send_error, status_error_after,
};
use super::{EffectsError, ProcessorApi, ProcessorReply, StepError, Submission, SubmissionFile};

/// A token is renewed this long before PayPal says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// PayPal's limits on evidence files (its "supported file types and sizes" page).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_FILES_BYTES_PER_CALL: usize = 50 * 1024 * 1024;
/// `evidence.notes` is at most 2,000 characters.
const NOTES_LIMIT: usize = 2_000;
/// Outcomes of a resolved dispute in which the buyer got the money back: an acceptance has nothing left to do.
const BUYER_FAVOUR_OUTCOMES: [&str; 2] = ["RESOLVED_BUYER_FAVOUR", "ACCEPTED"];
/// Carriers PayPal names as themselves in `tracking_info.carrier_name`; any other is `OTHER` with
/// `carrier_name_other`.
const CARRIERS: [&str; 7] = ["UPS", "USPS", "FEDEX", "DHL", "TNT", "ROYAL_MAIL", "PARCELFORCE"];

struct PaypalDisputeState {
    status: Option<String>,
    merchant_evidence: bool,
    outcome: Option<String>,
}

struct Token {
    value: String,
    renew_at: Instant,
}

pub struct PaypalApi {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    client_secret: String,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl PaypalApi {
    /// `base_url` is `https://api-m.paypal.com` (live) or `https://api-m.sandbox.paypal.com` (sandbox).
    pub fn new(base_url_text: &str, client_id: &str, client_secret: &str) -> Result<Self, EffectsError> {
        Ok(Self {
            http: client()?,
            base_url: base_url("paypal_base_url", base_url_text)?,
            client_id: client_id.trim().to_owned(),
            client_secret: client_secret.trim().to_owned(),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// Gives up on an answer after `timeout` (30 s by default); a timeout is a transient failure.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Self, EffectsError> {
        self.http = super::http::client_with_timeout(timeout)?;
        Ok(self)
    }

    /// A valid access token: the cached one, or a new one from `POST /v1/oauth2/token`.
    async fn token(&self) -> Result<String, StepError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let what = "paypal: getting an access token";
        let response = self
            .http
            .post(format!("{}/v1/oauth2/token", self.base_url))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let json = paypal_answer(what, response).await?;
        let value = json_str(&json, &["access_token"])
            .ok_or_else(|| StepError::Transient(format!("{what}: the answer has no token")))?;
        let lifetime = Duration::from_secs(json.get("expires_in").and_then(Value::as_u64).unwrap_or(0));
        *cached = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        Ok(value)
    }

    /// Sends a request with the bearer token; a 401 drops the token so that the next try gets a new one.
    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, StepError> {
        let token = self.token().await?;
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            *self.token.lock().await = None;
            return Err(StepError::Transient(format!(
                "{what}: HTTP 401; the access token is renewed at the next try"
            )));
        }
        paypal_answer(what, response).await
    }

    /// The dispute as PayPal holds it: its status, whether the merchant already provided evidence, and the
    /// outcome once resolved. Read before sending, so a retried step never sends twice, and a dispute closed
    /// before Verdict sent anything is reported as such rather than as done.
    async fn dispute_state(&self, id: &str) -> Result<PaypalDisputeState, StepError> {
        let json = self
            .send(
                "paypal: reading the dispute",
                self.http.get(format!("{}/v1/customer/disputes/{id}", self.base_url)),
            )
            .await?;
        let merchant_evidence = json
            .get("evidences")
            .and_then(Value::as_array)
            .is_some_and(|evidences| {
                evidences.iter().any(|e| {
                    e.get("source")
                        .and_then(Value::as_str)
                        .is_none_or(|source| source == "SUBMITTED_BY_SELLER")
                })
            });
        Ok(PaypalDisputeState {
            status: json_str(&json, &["status"]),
            merchant_evidence,
            outcome: json
                .pointer("/dispute_outcome/outcome_code")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    fn multipart_post(&self, path: &str, idempotency_key: &str, multipart: Multipart) -> reqwest::RequestBuilder {
        let (content_type, body) = multipart.finish();
        self.http
            .post(format!("{}{path}", self.base_url))
            .header("PayPal-Request-Id", idempotency_key)
            .header(CONTENT_TYPE, content_type)
            .body(body)
    }
}

/// The JSON of a successful answer, or the error PayPal named (`details[0].issue`, else `name`).
async fn paypal_answer(what: &str, response: reqwest::Response) -> Result<Value, StepError> {
    let status = response.status();
    let retry = retry_after(response.headers());
    let json = json_body(response).await;
    if !status.is_success() {
        let code = json
            .pointer("/details/0/issue")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| json_str(&json, &["name"]))
            .or_else(|| json_str(&json, &["error"]));
        return Err(status_error_after(what, status, code, retry));
    }
    Ok(json)
}

/// PayPal ids (dispute `PP-D-...`, capture ids) are `[A-Za-z0-9-]`; anything else would change the path.
fn path_id(what: &str, id: &str) -> Result<String, StepError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(StepError::Permanent(format!("{what} is not a PayPal id")));
    }
    Ok(id.to_owned())
}

/// PayPal's `evidence_type` for an item of `kind` (proof of fulfilment when the shipment's tracking goes with
/// it; see [`provide_evidence_input`]).
pub fn evidence_type(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::ProofOfDelivery | EvidenceKind::Tracking => "PROOF_OF_FULFILLMENT",
        EvidenceKind::ProductDescription => "ITEM_DESCRIPTION",
        EvidenceKind::ImeiSerialRecord => "ADDITIONAL_INFORMATION_OF_ITEM",
        EvidenceKind::Photos => "PHOTOS_OF_SHIPPED_ITEM",
        EvidenceKind::RefundPolicy => "RETURN_POLICY",
        EvidenceKind::CustomerCommunication
        | EvidenceKind::TermsAccepted
        | EvidenceKind::PriorUndisputedTransactions
        | EvidenceKind::Cancellation
        | EvidenceKind::Uncategorised => "OTHER",
    }
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

/// The `input` JSON of provide-evidence and the files, defense document first: one evidence per kind
/// present (texts joined into its notes, files named in them), proof of fulfilment with the shipment's
/// tracking from the order facts.
pub(crate) fn provide_evidence_input(submission: &Submission) -> (Value, Vec<&SubmissionFile>) {
    let mut files: Vec<&SubmissionFile> = submission.document.iter().collect();
    let mut evidences: Vec<Value> = Vec::new();
    if let Some(document) = &submission.document {
        evidences.push(json!({
            "evidence_type": "OTHER",
            "notes": at_most(
                &format!(
                    "Defense document ({}): the merchant's argument, the evidence index and the dispute's timeline.",
                    document.file_name
                ),
                NOTES_LIMIT
            ),
        }));
    }
    let tracking: Vec<Value> = submission
        .facts
        .as_ref()
        .and_then(|f| f.shipment.as_ref())
        .map(|shipment| {
            let carrier = shipment.carrier.trim().to_uppercase().replace([' ', '-'], "_");
            let mut info = serde_json::Map::new();
            if CARRIERS.contains(&carrier.as_str()) {
                info.insert("carrier_name".into(), json!(carrier));
            } else {
                info.insert("carrier_name".into(), json!("OTHER"));
                info.insert(
                    "carrier_name_other".into(),
                    json!(at_most(shipment.carrier.trim(), 2_000)),
                );
            }
            info.insert("tracking_number".into(), json!(at_most(&shipment.tracking_number, 255)));
            vec![Value::Object(info)]
        })
        .unwrap_or_default();
    let mut tracking_used = false;
    for kind in EvidenceKind::ALL {
        let items: Vec<_> = submission.items.iter().filter(|i| i.kind == kind).collect();
        if items.is_empty() {
            continue;
        }
        let mut notes: Vec<String> = items
            .iter()
            .filter_map(|i| i.text.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        for file in items.iter().filter_map(|i| i.file.as_ref()) {
            notes.push(format!("File: {}", file.file_name));
            files.push(file);
        }
        let mut evidence = serde_json::Map::new();
        // PayPal expects `evidence_info` with a proof of fulfilment: the first such evidence carries the
        // tracking; without tracking (or after it) delivery proof goes as what it is.
        let fulfilment = evidence_type(kind) == "PROOF_OF_FULFILLMENT";
        if fulfilment && !tracking.is_empty() && !tracking_used {
            evidence.insert("evidence_type".into(), json!("PROOF_OF_FULFILLMENT"));
            evidence.insert("evidence_info".into(), json!({ "tracking_info": tracking }));
            tracking_used = true;
        } else if fulfilment {
            let fallback = match kind {
                EvidenceKind::Tracking => "ONLINE_TRACKING_INFORMATION",
                _ => "DELIVERY_RECEIPT",
            };
            evidence.insert("evidence_type".into(), json!(fallback));
        } else {
            evidence.insert("evidence_type".into(), json!(evidence_type(kind)));
        }
        let text = format!("{}: {}", heading(kind), notes.join("\n"));
        evidence.insert("notes".into(), json!(at_most(&text, NOTES_LIMIT)));
        evidences.push(Value::Object(evidence));
    }
    if !tracking_used && !tracking.is_empty() {
        evidences.push(json!({
            "evidence_type": "PROOF_OF_FULFILLMENT",
            "evidence_info": { "tracking_info": tracking },
            "notes": "Shipped with tracking, as recorded on the order.",
        }));
    }
    let refund_ids: Vec<String> = submission
        .facts
        .as_ref()
        .map(|f| f.refunds.iter().filter_map(|r| r.reference.clone()).collect())
        .unwrap_or_default();
    if !refund_ids.is_empty() {
        evidences.push(json!({
            "evidence_type": "PROOF_OF_REFUND",
            "evidence_info": { "refund_ids": refund_ids },
            "notes": "Refunds already made for this order.",
        }));
    }
    (json!({ "evidences": evidences }), files)
}

#[async_trait::async_trait]
impl ProcessorApi for PaypalApi {
    fn name(&self) -> &'static str {
        "paypal"
    }

    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        submission: &Submission,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let (input, files) = provide_evidence_input(submission);
        if let Some(file) = files.iter().find(|f| f.bytes.len() > MAX_FILE_BYTES) {
            return Err(StepError::Permanent(format!(
                "paypal: an evidence file is {} bytes, over PayPal's 10 MB per file",
                file.bytes.len()
            )));
        }
        let total: usize = files.iter().map(|f| f.bytes.len()).sum();
        if total > MAX_FILES_BYTES_PER_CALL {
            return Err(StepError::Permanent(format!(
                "paypal: the evidence files are {total} bytes together, over PayPal's 50 MB per call"
            )));
        }
        let state = self.dispute_state(&id).await?;
        if state.merchant_evidence {
            tracing::info!(status = ?state.status, "PayPal already holds the merchant's evidence; it is not sent again");
            return Ok(ProcessorReply {
                reference: Some(id),
                decided_outcome: None,
                acknowledged_only: false,
            });
        }
        if state.status.as_deref() == Some("RESOLVED") {
            return Err(StepError::Permanent(format!(
                "paypal: the dispute was resolved ({}) before any evidence was sent",
                state.outcome.as_deref().unwrap_or("no outcome given")
            )));
        }
        let input = serde_json::to_vec(&input)
            .map_err(|e| StepError::Permanent(format!("paypal: encoding the evidence: {e}")))?;
        let mut multipart = Multipart::new().typed("input", "application/json", &input);
        for file in files {
            multipart = multipart.file("evidence-file", &file.file_name, file.content_type.mime(), &file.bytes);
        }
        self.send(
            "paypal: providing evidence",
            self.multipart_post(
                &format!("/v1/customer/disputes/{id}/provide-evidence"),
                idempotency_key,
                multipart,
            ),
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(id),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn accept_dispute(&self, dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let state = self.dispute_state(&id).await?;
        if state.status.as_deref() == Some("RESOLVED") {
            if state
                .outcome
                .as_deref()
                .is_some_and(|o| BUYER_FAVOUR_OUTCOMES.contains(&o))
            {
                tracing::info!(outcome = ?state.outcome, "PayPal already resolved the dispute for the buyer; nothing to accept");
                return Ok(ProcessorReply {
                    reference: Some(id),
                    decided_outcome: None,
                    acknowledged_only: false,
                });
            }
            return Err(StepError::Permanent(format!(
                "paypal: the dispute was resolved ({}) before the acceptance was sent",
                state.outcome.as_deref().unwrap_or("no outcome given")
            )));
        }
        let input = json!({ "note": "The merchant accepts the claim." }).to_string();
        self.send(
            "paypal: accepting the claim",
            self.multipart_post(
                &format!("/v1/customer/disputes/{id}/accept-claim"),
                idempotency_key,
                Multipart::new().typed("input", "application/json", input.as_bytes()),
            ),
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
        let capture = path_id("the payment reference (capture id)", &dispute.payment_reference)?;
        let body = json!({
            "amount": { "value": amount.decimal(), "currency_code": amount.currency().code() },
            "custom_id": dispute.id.to_string(),
        });
        let json = self
            .send(
                "paypal: refunding",
                self.http
                    .post(format!("{}/v2/payments/captures/{capture}/refund", self.base_url))
                    .header("PayPal-Request-Id", idempotency_key)
                    .header("Prefer", "return=representation")
                    .json(&body),
            )
            .await?;
        let reference = json_str(&json, &["id"]);
        match json_str(&json, &["status"]).as_deref() {
            Some("COMPLETED") => Ok(ProcessorReply {
                reference,
                decided_outcome: None,
                acknowledged_only: false,
            }),
            // PayPal reports the end of a pending refund later (its `PAYMENT.CAPTURE.REFUNDED` webhook).
            Some("PENDING") => Ok(ProcessorReply {
                reference,
                decided_outcome: None,
                acknowledged_only: true,
            }),
            Some(status) => Err(StepError::Permanent(format!(
                "paypal: refund {} is {status}",
                reference.unwrap_or_default()
            ))),
            None => Err(StepError::Transient("paypal: the refund's answer has no status".into())),
        }
    }
}
