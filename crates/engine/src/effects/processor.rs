//! The processor API as Verdict needs it: submit evidence, accept a dispute, refund a payment.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use verdict_domain::{Dispute, Money};

use super::StepError;

/// What a processor answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessorReply {
    /// The processor's reference for what it did (a refund id, a PSP reference), when it gives one.
    pub reference: Option<String>,
    /// `Some(won)` when the processor decides the outcome on the spot (only the sandbox does); real
    /// processors report outcomes later, through their webhooks.
    pub decided_outcome: Option<bool>,
    /// For a refund: the processor only acknowledged it (Adyen's `received`) and reports the result later, so
    /// the customer may be told it was requested, not that it was made.
    pub acknowledged_only: bool,
}

/// An outside processor. Every call carries the step's idempotency key, which the processor must see (its
/// `Idempotency-Key` header), so that a retried step does not act twice.
#[async_trait::async_trait]
pub trait ProcessorApi: Send + Sync + 'static {
    /// For logs: `stripe`, `adyen`, `sandbox`.
    fn name(&self) -> &'static str;

    /// Sends the submission (defense document, evidence items, order facts) in the processor's format and asks
    /// the processor to defend the dispute with it.
    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        submission: &Submission,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError>;

    /// Accepts liability: the dispute is closed in the cardholder's favour.
    async fn accept_dispute(&self, dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError>;

    /// Refunds `amount` of the dispute's payment.
    async fn refund(
        &self,
        dispute: &Dispute,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError>;
}

/// A document for the defense, already encoded.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct DefenseDocument {
    /// Adyen's `defenseDocumentTypeCode`, e.g. `DefenseMaterial`, `GoodsOrServicesProvided`.
    pub type_code: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The file, base64.
    pub content_base64: String,
}

impl fmt::Debug for DefenseDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefenseDocument")
            .field("type_code", &self.type_code)
            .field("content_type", &self.content_type)
            .field("bytes_base64", &self.content_base64.len())
            .finish()
    }
}

/// The evidence a submission carries, from the step's payload:
///
/// ```json
/// { "evidence": { "product_description": "...", "shipping_tracking_number": "..." },
///   "documents": [ { "type_code": "DefenseMaterial", "content_type": "application/pdf", "content_base64": "..." } ],
///   "defense_reason_code": "GoodsOrServicesProvided" }
/// ```
///
/// `evidence` keys are Stripe's evidence field names (the sandbox reads them too); `documents` and
/// `defense_reason_code` are for Adyen. Everything is optional. `Debug` prints field names only.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Evidence {
    pub evidence: BTreeMap<String, String>,
    pub documents: Vec<DefenseDocument>,
    pub defense_reason_code: Option<String>,
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("fields", &self.evidence.keys().collect::<Vec<_>>())
            .field("documents", &self.documents)
            .field("defense_reason_code", &self.defense_reason_code)
            .finish()
    }
}

impl Evidence {
    /// Reads the step's payload; no payload is no evidence beyond what the dispute itself holds.
    pub fn from_payload(payload: Option<&serde_json::Value>) -> Result<Self, StepError> {
        match payload {
            None | Some(serde_json::Value::Null) => Ok(Self::default()),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| StepError::Permanent(format!("the step's evidence payload is malformed: {e}"))),
        }
    }

    /// Whether any of `keys` is present with a non-empty value.
    pub fn has_any(&self, keys: &[&str]) -> bool {
        keys.iter()
            .any(|k| self.evidence.get(*k).is_some_and(|v| !v.trim().is_empty()))
    }

    /// The payload as a [`Submission`], for steps enqueued before submissions were built from stored
    /// evidence: each field becomes a text item of the kind its Stripe name says (unknown names are
    /// uncategorised, written `name: value`), each document a file item.
    pub fn into_submission(self) -> Result<Submission, StepError> {
        use verdict_domain::EvidenceKind as K;
        let mut items: Vec<SubmissionItem> = self
            .evidence
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(key, value)| {
                let kind = match key.as_str() {
                    "shipping_tracking_number" => Some(K::Tracking),
                    "product_description" => Some(K::ProductDescription),
                    "customer_communication" => Some(K::CustomerCommunication),
                    "refund_policy" | "refund_policy_disclosure" | "refund_refusal_explanation" => {
                        Some(K::RefundPolicy)
                    }
                    "cancellation_policy" | "cancellation_policy_disclosure" | "cancellation_rebuttal" => {
                        Some(K::Cancellation)
                    }
                    "access_activity_log" => Some(K::PriorUndisputedTransactions),
                    "customer_signature" | "shipping_documentation" => Some(K::ProofOfDelivery),
                    _ => None,
                };
                match kind {
                    Some(kind) => SubmissionItem {
                        kind,
                        text: Some(value),
                        file: None,
                    },
                    None => SubmissionItem {
                        kind: K::Uncategorised,
                        text: Some(format!("{key}: {value}")),
                        file: None,
                    },
                }
            })
            .collect();
        for (index, document) in self.documents.into_iter().enumerate() {
            use base64::Engine as _;
            let content_type = match document.content_type.as_str() {
                "application/pdf" => verdict_domain::EvidenceContentType::Pdf,
                "image/png" => verdict_domain::EvidenceContentType::Png,
                "image/jpeg" => verdict_domain::EvidenceContentType::Jpeg,
                _ => {
                    return Err(StepError::Permanent(
                        "a document of the step's payload is not a PDF, PNG or JPEG".into(),
                    ));
                }
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(document.content_base64.as_bytes())
                .map_err(|_| StepError::Permanent("a document of the step's payload is not base64".into()))?;
            items.push(SubmissionItem {
                kind: K::Uncategorised,
                text: None,
                file: Some(SubmissionFile {
                    file_name: format!("document-{}.{}", index + 1, extension(content_type)),
                    content_type,
                    bytes,
                }),
            });
        }
        Ok(Submission {
            document: None,
            items,
            facts: None,
        })
    }
}

/// The usual file name extension of a content type.
pub(crate) fn extension(content_type: verdict_domain::EvidenceContentType) -> &'static str {
    match content_type {
        verdict_domain::EvidenceContentType::Pdf => "pdf",
        verdict_domain::EvidenceContentType::Png => "png",
        verdict_domain::EvidenceContentType::Jpeg => "jpg",
    }
}

/// A file sent with a submission: the defense document, or an evidence item's stored file.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmissionFile {
    /// The name shown at the processor, e.g. `defense-<dispute>-v2.pdf`.
    pub file_name: String,
    pub content_type: verdict_domain::EvidenceContentType,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SubmissionFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmissionFile")
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// One evidence item as the processor receives it: its kind decides the processor's field or document type.
/// `Debug` prints the text's length only (it may quote the customer).
#[derive(Clone, PartialEq, Eq)]
pub struct SubmissionItem {
    pub kind: verdict_domain::EvidenceKind,
    pub text: Option<String>,
    pub file: Option<SubmissionFile>,
}

impl fmt::Debug for SubmissionItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmissionItem")
            .field("kind", &self.kind)
            .field("text_chars", &self.text.as_ref().map(|t| t.chars().count()))
            .field("file", &self.file)
            .finish()
    }
}

/// Everything a defense sends, in Verdict's terms; each adapter maps it to its processor's format (Stripe
/// evidence fields and file uploads, Adyen defense documents by type, PayPal provide-evidence, Braintree
/// text and file evidence).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submission {
    /// The rendered defense document (cover letter, evidence index, timeline), as a PDF.
    pub document: Option<SubmissionFile>,
    pub items: Vec<SubmissionItem>,
    /// The order facts, for processors with structured fields (Stripe's shipping and customer fields).
    pub facts: Option<verdict_domain::facts::OrderFacts>,
}

impl Submission {
    /// The non-empty texts of the items of `kind`, in order.
    pub fn texts(&self, kind: verdict_domain::EvidenceKind) -> impl Iterator<Item = &str> {
        self.items
            .iter()
            .filter(move |item| item.kind == kind)
            .filter_map(|item| item.text.as_deref())
            .map(str::trim)
            .filter(|text| !text.is_empty())
    }

    /// Whether the submission holds an item of any of `kinds` (with text or a file).
    pub fn has_any(&self, kinds: &[verdict_domain::EvidenceKind]) -> bool {
        self.items.iter().any(|item| {
            kinds.contains(&item.kind)
                && (item.file.is_some() || item.text.as_deref().is_some_and(|t| !t.trim().is_empty()))
        })
    }
}
