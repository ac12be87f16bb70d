//! Adyen: JSON requests with `X-API-Key` and the step's idempotency key in `Idempotency-Key` (at most 64
//! characters: a longer key is sent as its SHA-256, the same on every try).
//!
//! - evidence: `POST {disputes}/retrieveApplicableDefenseReasons`; Verdict chooses the reason whose required
//!   document types the submission can meet ([`choose_defense`]: the defense document stands for the generic
//!   `DefenseMaterial` and for `AlternativeRequired` types, item files for the types of
//!   [`DOCUMENT_TYPES_BY_KIND`]), then `POST {disputes}/supplyDefenseDocument` once per document type (base64
//!   content, key `<step key>:documents:<type>`), then `POST {disputes}/defendDispute` with that reason (key
//!   `<step key>:defend`). Document types the answer marks `available` (supplied by an earlier try) are not
//!   supplied again. A dispute no reason of which can be met gets nothing sent: a permanent failure naming
//!   what each reason needs.
//! - accept: `POST {disputes}/acceptDispute`
//! - refund: Checkout API `POST {checkout}/payments/{paymentPspReference}/refunds` with `amount` and
//!   `merchantAccount`
//!
//! ## What Adyen cannot be asked
//! Unlike Stripe, Adyen offers no call that lists a payment's refunds or reads a dispute's status, so a refund
//! or acceptance cannot be checked before it is sent again (the defense reasons tell only which documents are
//! already supplied, not whether the dispute was defended). What protects a retry is the idempotency key, which
//! Adyen keeps for at least 31 days (its API idempotency documentation): a lead's retry within that time is
//! harmless, a retry after it could refund twice. A refund is also asynchronous at Adyen (`status: received`;
//! the result comes in a `REFUND` webhook, which Verdict does not process yet), so a received refund is
//! recorded as done and the customer is told that it was requested (`customer_refund_requested`), never that
//! it was made. Both limits are stated in the README.
//!
//! The Disputes API answers some refusals with HTTP 200 and `disputeServiceResult.success = false`; those are
//! permanent failures.

use serde_json::{Value, json};
use verdict_domain::{Dispute, Money};

use base64::Engine as _;
use verdict_domain::EvidenceKind;

use super::http::{base_url, client, json_body, json_str, retry_after, send_error, status_error_after};
use super::{EffectsError, ProcessorApi, ProcessorReply, StepError, Submission, SubmissionFile};

pub struct AdyenApi {
    http: reqwest::Client,
    disputes_url: String,
    checkout_url: String,
    api_key: String,
    merchant_account: String,
}

impl AdyenApi {
    pub fn new(
        disputes_base_url: &str,
        checkout_base_url: &str,
        api_key: &str,
        merchant_account: &str,
    ) -> Result<Self, EffectsError> {
        Ok(Self {
            http: client()?,
            disputes_url: base_url("adyen_disputes_base_url", disputes_base_url)?,
            checkout_url: base_url("adyen_checkout_base_url", checkout_base_url)?,
            api_key: api_key.trim().to_owned(),
            merchant_account: merchant_account.trim().to_owned(),
        })
    }

    /// Gives up on an answer after `timeout` (30 s by default); a timeout is a transient failure.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Self, EffectsError> {
        self.http = super::http::client_with_timeout(timeout)?;
        Ok(self)
    }

    async fn post(&self, what: &str, url: String, body: &Value, idempotency_key: &str) -> Result<Value, StepError> {
        let response = self
            .http
            .post(url)
            .header("X-API-Key", &self.api_key)
            .header("Idempotency-Key", adyen_key(idempotency_key))
            .json(body)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let status = response.status();
        let retry = retry_after(response.headers());
        let json = json_body(response).await;
        if !status.is_success() {
            return Err(status_error_after(what, status, json_str(&json, &["errorCode"]), retry));
        }
        if json.pointer("/disputeServiceResult/success") == Some(&Value::Bool(false)) {
            let message: String = json_str(&json, &["disputeServiceResult", "errorMessage"])
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect();
            tracing::warn!("{what}: refused by Adyen");
            return Err(StepError::Permanent(format!("{what}: refused by Adyen: {message}")));
        }
        Ok(json)
    }

    fn dispute_body(&self, dispute: &Dispute) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        body.insert("disputePspReference".into(), json!(dispute.processor_dispute_id));
        body.insert("merchantAccountCode".into(), json!(self.merchant_account));
        body
    }
}

/// Adyen's idempotency keys are at most 64 characters: a longer key is replaced by its SHA-256 (64 hex
/// characters), the same for every try.
pub(crate) fn adyen_key(key: &str) -> String {
    if key.len() <= 64 {
        return key.to_owned();
    }
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// One of `retrieveApplicableDefenseReasons`' `defenseReasons`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DefenseReason {
    pub defense_reason_code: String,
    #[serde(default)]
    pub satisfied: bool,
    #[serde(default)]
    pub defense_document_types: Vec<DefenseDocumentType>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DefenseDocumentType {
    pub defense_document_type_code: String,
    /// `Required`, `OneOrMore`, `Optional` or `AlternativeRequired`.
    pub requirement_level: String,
    /// Already supplied.
    #[serde(default)]
    pub available: bool,
}

/// The generic document type: Verdict's defense document (cover letter, evidence index, timeline).
pub const GENERIC_DOCUMENT_TYPE: &str = "DefenseMaterial";

/// Document types Verdict can supply from evidence items, by the items' kinds. Adyen publishes no full list
/// of type codes (they depend on the scheme and reason, and come from `retrieveApplicableDefenseReasons`);
/// these are the ones its API reference names. A type not here is supplied only by the defense document,
/// where Adyen accepts a generic one (`AlternativeRequired`).
pub const DOCUMENT_TYPES_BY_KIND: &[(&str, &[EvidenceKind])] = &[(
    "GoodsWereAsDescribed",
    &[
        EvidenceKind::ProductDescription,
        EvidenceKind::ImeiSerialRecord,
        EvidenceKind::Photos,
    ],
)];

/// What to send: the reason, and the documents per type code that are not yet available at Adyen.
#[derive(Debug)]
pub(crate) struct DefensePlan<'a> {
    pub reason: String,
    pub documents: Vec<(String, Vec<&'a SubmissionFile>)>,
}

/// The files of a submission that can stand for a document type.
fn files_for<'a>(code: &str, level: &str, submission: &'a Submission) -> Vec<&'a SubmissionFile> {
    if code == GENERIC_DOCUMENT_TYPE || level == "AlternativeRequired" {
        return match &submission.document {
            Some(document) => vec![document],
            // Without a rendered defense document, the generic type takes every file.
            None if code == GENERIC_DOCUMENT_TYPE => submission.items.iter().filter_map(|i| i.file.as_ref()).collect(),
            None => Vec::new(),
        };
    }
    let kinds = DOCUMENT_TYPES_BY_KIND
        .iter()
        .find(|(type_code, _)| *type_code == code)
        .map_or(&[][..], |(_, kinds)| *kinds);
    submission
        .items
        .iter()
        .filter(|item| kinds.contains(&item.kind))
        .filter_map(|item| item.file.as_ref())
        .collect()
}

/// Chooses the defense reason whose required document types the submission can satisfy (counting types
/// already available at Adyen): every `Required` and `AlternativeRequired` type, and one of the `OneOrMore`
/// types if there are any. Among those, the one with the most types supplied wins; a tie goes to Adyen's
/// order. No satisfiable reason is a permanent failure naming what each reason needs.
pub(crate) fn choose_defense<'a>(
    reasons: &[DefenseReason],
    submission: &'a Submission,
) -> Result<DefensePlan<'a>, StepError> {
    let mut best: Option<(usize, DefensePlan<'a>)> = None;
    for reason in reasons {
        let mut documents = Vec::new();
        let mut supplied = 0;
        let mut required_met = true;
        let mut one_or_more = (false, false); // (any such type, one of them met)
        for doc_type in &reason.defense_document_types {
            let files = files_for(
                &doc_type.defense_document_type_code,
                &doc_type.requirement_level,
                submission,
            );
            let met = doc_type.available || !files.is_empty();
            match doc_type.requirement_level.as_str() {
                "Required" | "AlternativeRequired" => required_met &= met,
                "OneOrMore" => one_or_more = (true, one_or_more.1 || met),
                _ => {}
            }
            if met {
                supplied += 1;
            }
            if !doc_type.available && !files.is_empty() {
                documents.push((doc_type.defense_document_type_code.clone(), files));
            }
        }
        let satisfiable = reason.satisfied || (required_met && (!one_or_more.0 || one_or_more.1));
        if !satisfiable || (supplied == 0 && !reason.satisfied) {
            continue;
        }
        if best.as_ref().is_none_or(|(score, _)| supplied > *score) {
            best = Some((
                supplied,
                DefensePlan {
                    reason: reason.defense_reason_code.clone(),
                    documents,
                },
            ));
        }
    }
    best.map(|(_, plan)| plan).ok_or_else(|| {
        let needs: Vec<String> = reasons
            .iter()
            .map(|r| {
                let types: Vec<&str> = r
                    .defense_document_types
                    .iter()
                    .filter(|t| t.requirement_level != "Optional")
                    .map(|t| t.defense_document_type_code.as_str())
                    .collect();
                format!("{} needs {}", r.defense_reason_code, types.join("/"))
            })
            .collect();
        StepError::Permanent(format!(
            "adyen: no applicable defense reason can be met with the submission's documents ({})",
            if needs.is_empty() {
                "Adyen lists none".to_owned()
            } else {
                needs.join("; ")
            }
        ))
    })
}

/// PSP references are alphanumeric; anything else would change the path, so it is refused.
fn psp_reference(what: &str, reference: &str) -> Result<String, StepError> {
    if reference.is_empty() || !reference.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(StepError::Permanent(format!("{what} is not an Adyen PSP reference")));
    }
    Ok(reference.to_owned())
}

#[async_trait::async_trait]
impl ProcessorApi for AdyenApi {
    fn name(&self) -> &'static str {
        "adyen"
    }

    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        submission: &Submission,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        // Asking before acting: the applicable reasons say which document types are already `available`
        // (supplied by an earlier try), and those are not supplied again.
        let reasons = self
            .post(
                "adyen: retrieving the applicable defense reasons",
                format!("{}/retrieveApplicableDefenseReasons", self.disputes_url),
                &Value::Object(self.dispute_body(dispute)),
                &format!("{idempotency_key}:reasons"),
            )
            .await?;
        let reasons: Vec<DefenseReason> = reasons
            .get("defenseReasons")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| StepError::Transient("adyen: the applicable defense reasons are unreadable".into()))?
            .unwrap_or_default();
        let plan = choose_defense(&reasons, submission)?;
        for (code, files) in &plan.documents {
            let mut body = self.dispute_body(dispute);
            let documents: Vec<Value> = files
                .iter()
                .map(|file| {
                    json!({
                        "content": base64::engine::general_purpose::STANDARD.encode(&file.bytes),
                        "contentType": file.content_type.mime(),
                        "defenseDocumentTypeCode": code,
                    })
                })
                .collect();
            body.insert("defenseDocuments".into(), Value::Array(documents));
            self.post(
                "adyen: supplying defense documents",
                format!("{}/supplyDefenseDocument", self.disputes_url),
                &Value::Object(body),
                &format!("{idempotency_key}:documents:{code}"),
            )
            .await?;
        }
        let mut body = self.dispute_body(dispute);
        body.insert("defenseReasonCode".into(), json!(plan.reason));
        self.post(
            "adyen: defending the dispute",
            format!("{}/defendDispute", self.disputes_url),
            &Value::Object(body),
            &format!("{idempotency_key}:defend"),
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(dispute.processor_dispute_id.clone()),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn accept_dispute(&self, dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        self.post(
            "adyen: accepting the dispute",
            format!("{}/acceptDispute", self.disputes_url),
            &Value::Object(self.dispute_body(dispute)),
            idempotency_key,
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(dispute.processor_dispute_id.clone()),
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
        let payment = psp_reference("the payment reference", &dispute.payment_reference)?;
        let body = json!({
            "amount": { "value": amount.minor_units(), "currency": amount.currency().code() },
            "merchantAccount": self.merchant_account,
            "reference": idempotency_key,
        });
        let json = self
            .post(
                "adyen: refunding",
                format!("{}/payments/{payment}/refunds", self.checkout_url),
                &body,
                idempotency_key,
            )
            .await?;
        Ok(ProcessorReply {
            reference: json_str(&json, &["pspReference"]),
            decided_outcome: None,
            // `received`: Adyen reports the result later, in a `REFUND` webhook.
            acknowledged_only: true,
        })
    }
}
