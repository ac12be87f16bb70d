//! Evidence: what an analyst gathers to defend a dispute, and the rules of what each reason needs.
//!
//! An item is a typed piece of text or a stored file. Which kinds a reason category needs, how complete a
//! dispute's evidence is, and whether Compelling Evidence 3.0 applies are pure functions here, so that the
//! rules that decide whether Verdict fights can be tested exhaustively.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

/// What an evidence item proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    ProofOfDelivery,
    Tracking,
    CustomerCommunication,
    /// The listing as the customer saw it, and the technician's grade report.
    ProductDescription,
    ImeiSerialRecord,
    Photos,
    RefundPolicy,
    TermsAccepted,
    PriorUndisputedTransactions,
    Cancellation,
    Uncategorised,
}

impl EvidenceKind {
    pub const ALL: [EvidenceKind; 11] = [
        EvidenceKind::ProofOfDelivery,
        EvidenceKind::Tracking,
        EvidenceKind::CustomerCommunication,
        EvidenceKind::ProductDescription,
        EvidenceKind::ImeiSerialRecord,
        EvidenceKind::Photos,
        EvidenceKind::RefundPolicy,
        EvidenceKind::TermsAccepted,
        EvidenceKind::PriorUndisputedTransactions,
        EvidenceKind::Cancellation,
        EvidenceKind::Uncategorised,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            EvidenceKind::ProofOfDelivery => "proof_of_delivery",
            EvidenceKind::Tracking => "tracking",
            EvidenceKind::CustomerCommunication => "customer_communication",
            EvidenceKind::ProductDescription => "product_description",
            EvidenceKind::ImeiSerialRecord => "imei_serial_record",
            EvidenceKind::Photos => "photos",
            EvidenceKind::RefundPolicy => "refund_policy",
            EvidenceKind::TermsAccepted => "terms_accepted",
            EvidenceKind::PriorUndisputedTransactions => "prior_undisputed_transactions",
            EvidenceKind::Cancellation => "cancellation",
            EvidenceKind::Uncategorised => "uncategorised",
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EvidenceKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidenceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DomainError::invalid(format!("unknown evidence kind `{s}`")))
    }
}

/// The file types processors accept as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceContentType {
    Pdf,
    Png,
    Jpeg,
}

impl EvidenceContentType {
    pub fn mime(&self) -> &'static str {
        match self {
            EvidenceContentType::Pdf => "application/pdf",
            EvidenceContentType::Png => "image/png",
            EvidenceContentType::Jpeg => "image/jpeg",
        }
    }
}

/// A stored file: its content lives in the evidence store under `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceFile {
    /// Lower-case hex; also the key in the file store.
    pub sha256: String,
    pub size_bytes: u64,
    /// Sniffed from the bytes, never taken from the upload's name or header.
    pub content_type: EvidenceContentType,
    /// The name the uploader gave, for people; never used as a path.
    pub file_name: String,
}

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceSource {
    /// Typed or uploaded by a person.
    Analyst,
    /// Drawn from the marketplace facts in one action.
    MarketplaceFacts,
}

/// One piece of evidence on a dispute: text, a file, or both (a file with a caption).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceItem {
    pub id: Uuid,
    pub kind: EvidenceKind,
    pub text: Option<String>,
    pub file: Option<EvidenceFile>,
    pub source: EvidenceSource,
    /// The actor label (`analyst:jane`, `system:facts`).
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

impl fmt::Debug for EvidenceItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvidenceItem")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("text_chars", &self.text.as_ref().map(|t| t.chars().count()))
            .field("file", &self.file)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}
