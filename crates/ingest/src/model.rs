//! The one shape every processor's dispute message is reduced to, so the engine never sees a wire format.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use verdict_domain::facts::TaggedReference;
use verdict_domain::{CardNetwork, Money, Processor, ReasonCode, Stage};

/// What a notification says happened to a dispute, independent of the processor's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Inquiry,
    EarlyFraudWarning,
    PreDisputeAlert,
    ChargebackOpened,
    EvidenceRequired,
    UnderReview,
    Won,
    Lost,
    Reversed,
    Withdrawn,
    Accepted,
    Expired,
    PreArbitrationOpened,
    PreArbitrationWon,
    PreArbitrationLost,
    FundsWithdrawn,
    FundsReinstated,
    /// Issuer comments, information supplied and the like: worth keeping, but no change of status.
    InformationOnly,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 18] = [
        NotificationKind::Inquiry,
        NotificationKind::EarlyFraudWarning,
        NotificationKind::PreDisputeAlert,
        NotificationKind::ChargebackOpened,
        NotificationKind::EvidenceRequired,
        NotificationKind::UnderReview,
        NotificationKind::Won,
        NotificationKind::Lost,
        NotificationKind::Reversed,
        NotificationKind::Withdrawn,
        NotificationKind::Accepted,
        NotificationKind::Expired,
        NotificationKind::PreArbitrationOpened,
        NotificationKind::PreArbitrationWon,
        NotificationKind::PreArbitrationLost,
        NotificationKind::FundsWithdrawn,
        NotificationKind::FundsReinstated,
        NotificationKind::InformationOnly,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::Inquiry => "inquiry",
            NotificationKind::EarlyFraudWarning => "early_fraud_warning",
            NotificationKind::PreDisputeAlert => "pre_dispute_alert",
            NotificationKind::ChargebackOpened => "chargeback_opened",
            NotificationKind::EvidenceRequired => "evidence_required",
            NotificationKind::UnderReview => "under_review",
            NotificationKind::Won => "won",
            NotificationKind::Lost => "lost",
            NotificationKind::Reversed => "reversed",
            NotificationKind::Withdrawn => "withdrawn",
            NotificationKind::Accepted => "accepted",
            NotificationKind::Expired => "expired",
            NotificationKind::PreArbitrationOpened => "pre_arbitration_opened",
            NotificationKind::PreArbitrationWon => "pre_arbitration_won",
            NotificationKind::PreArbitrationLost => "pre_arbitration_lost",
            NotificationKind::FundsWithdrawn => "funds_withdrawn",
            NotificationKind::FundsReinstated => "funds_reinstated",
            NotificationKind::InformationOnly => "information_only",
        }
    }
}

impl std::fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dispute-relevant message from a processor, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub processor: Processor,
    /// The processor's id for this message; the deduplication key (processors redeliver).
    pub event_id: String,
    /// The type exactly as sent, e.g. `charge.dispute.created` or `CHARGEBACK`.
    pub event_type: String,
    pub processor_dispute_id: String,
    pub kind: NotificationKind,
    pub stage: Option<Stage>,
    pub amount: Option<Money>,
    pub network: Option<CardNetwork>,
    /// The reason code as received, e.g. `" 4853"`.
    pub reason_code_raw: Option<String>,
    /// The reason code normalised by the domain catalogue; `None` when unknown (never an error).
    pub reason_code: Option<ReasonCode>,
    /// The processor's own reason text or category, e.g. Stripe `fraudulent`.
    pub processor_reason: Option<String>,
    pub due_by: Option<DateTime<Utc>>,
    pub payment_reference: Option<String>,
    pub order_reference: Option<String>,
    /// Every reference the notification carries that may name the order, with what each is (Stripe charge,
    /// payment intent and `metadata[order_id]`; Adyen merchant reference and PSP reference; PayPal invoice id,
    /// custom id and seller transaction id; Braintree transaction id and order id): the link step tries them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<TaggedReference>,
    pub occurred_at: DateTime<Utc>,
    pub raw_status: Option<String>,
}

/// What a processor message turned out to be: a dispute notification, or something we deliberately skip.
// Dispute is the common case, so boxing it would cost an allocation to save memory on the rare Ignored.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Parsed {
    Dispute(Notification),
    /// Not about disputes (or not a type we act on); acknowledged so the processor stops retrying.
    Ignored {
        event_id: String,
        event_type: String,
    },
}

impl Parsed {
    pub fn as_dispute(&self) -> Option<&Notification> {
        match self {
            Parsed::Dispute(n) => Some(n),
            Parsed::Ignored { .. } => None,
        }
    }
}

/// The character that escapes NUL in normalised text: U+2400 SYMBOL FOR NULL.
const NUL_ESCAPE: char = '\u{2400}';

/// `text` with NUL written as `␀0` and `␀` itself doubled (`␀␀`). PostgreSQL refuses NUL in `TEXT`
/// and `JSONB`, so a validly signed notification whose ids carry one could never be stored; escaped, it is
/// stored and applied like any other. The escape is injective (two different ids never become one) and
/// leaves every text without NUL or `␀` unchanged. The raw body keeps the original bytes.
pub fn escape_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\0', NUL_ESCAPE]) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\0' => {
                escaped.push(NUL_ESCAPE);
                escaped.push('0');
            }
            NUL_ESCAPE => {
                escaped.push(NUL_ESCAPE);
                escaped.push(NUL_ESCAPE);
            }
            other => escaped.push(other),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

fn escape_in_place(text: &mut String) {
    if let std::borrow::Cow::Owned(escaped) = escape_nul(text) {
        *text = escaped;
    }
}

/// Every text of the parsed notifications passed through [`escape_nul`]; what each `parse_*` returns.
pub(crate) fn without_nul(mut parsed: Vec<Parsed>) -> Vec<Parsed> {
    for item in &mut parsed {
        match item {
            Parsed::Dispute(n) => {
                for text in [&mut n.event_id, &mut n.event_type, &mut n.processor_dispute_id] {
                    escape_in_place(text);
                }
                for text in [
                    &mut n.reason_code_raw,
                    &mut n.processor_reason,
                    &mut n.payment_reference,
                    &mut n.order_reference,
                    &mut n.raw_status,
                ]
                .into_iter()
                .flatten()
                {
                    escape_in_place(text);
                }
                for reference in &mut n.references {
                    escape_in_place(&mut reference.value);
                }
            }
            Parsed::Ignored { event_id, event_type } => {
                escape_in_place(event_id);
                escape_in_place(event_type);
            }
        }
    }
    parsed
}

/// Why a message could not be read. The message is then refused (4xx) rather than half-understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("malformed base64 payload: {0}")]
    Base64(String),
    #[error("missing required field {0}")]
    MissingField(String),
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: String, reason: String },
}

impl ParseError {
    pub(crate) fn missing(field: impl Into<String>) -> Self {
        Self::MissingField(field.into())
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_escaped_injectively() {
        assert_eq!(escape_nul("dp_123"), "dp_123");
        assert_eq!(escape_nul("dp_\u{0}x"), "dp_\u{2400}0x");
        assert_eq!(escape_nul("dp_\u{2400}0x"), "dp_\u{2400}\u{2400}0x");
        assert_ne!(escape_nul("a\u{0}"), escape_nul("a\u{2400}0"));
        assert!(!escape_nul("\u{0}\u{0}").contains('\0'));
    }

    #[test]
    fn kind_names_match_serde() {
        for kind in NotificationKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<NotificationKind>(&json).unwrap(), kind);
        }
    }
}
