//! What the cardholder claims: the reason a defense answers, finer than the reason category.
//!
//! The reason category (fraud, authorization, processing error, consumer dispute) decides the queue; the
//! claim decides which evidence the networks expect and which argument a defense makes. A reason code mostly
//! names one claim, but some codes cover several (Mastercard 4853 "Cardholder Dispute" is not received, not as
//! described, credit not processed or a cancelled recurring payment): for those the processor's own reason text,
//! where the dispute keeps it, settles the claim.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CardNetwork, Dispute, DomainError, ReasonCategory, ReasonCode};

/// What the cardholder says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeClaim {
    /// The goods never arrived.
    NotReceived,
    /// The goods arrived but differ from the listing, or are defective or counterfeit.
    NotAsDescribed,
    /// The cardholder did not make or does not recognise the payment.
    Fraud,
    /// A refund or credit promised was not made.
    CreditNotProcessed,
    /// The order or a recurring payment was cancelled and charged anyway.
    Cancelled,
    /// Charged twice, the wrong amount or currency, late, or paid by other means.
    DuplicateOrProcessingError,
    /// The payment lacked a valid authorisation.
    Authorization,
    /// Nothing more precise is known.
    General,
}

impl DisputeClaim {
    pub const ALL: [DisputeClaim; 8] = [
        DisputeClaim::NotReceived,
        DisputeClaim::NotAsDescribed,
        DisputeClaim::Fraud,
        DisputeClaim::CreditNotProcessed,
        DisputeClaim::Cancelled,
        DisputeClaim::DuplicateOrProcessingError,
        DisputeClaim::Authorization,
        DisputeClaim::General,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            DisputeClaim::NotReceived => "not_received",
            DisputeClaim::NotAsDescribed => "not_as_described",
            DisputeClaim::Fraud => "fraud",
            DisputeClaim::CreditNotProcessed => "credit_not_processed",
            DisputeClaim::Cancelled => "cancelled",
            DisputeClaim::DuplicateOrProcessingError => "duplicate_or_processing_error",
            DisputeClaim::Authorization => "authorization",
            DisputeClaim::General => "general",
        }
    }

    /// The claim a reason code makes; `processor_reason` (the processor's own reason text, e.g. Stripe's
    /// `product_not_received`, PayPal's `MERCHANDISE_OR_SERVICE_NOT_RECEIVED`, Adyen's reason) settles codes that
    /// cover several claims and is ignored for the others, so a stray text never turns a fraud code into
    /// something else.
    pub fn from_reason(code: &ReasonCode, processor_reason: Option<&str>) -> Self {
        let from_code = Self::from_code(code);
        if Self::is_ambiguous(code, from_code)
            && let Some(claim) = processor_reason.and_then(Self::from_text)
        {
            return claim;
        }
        from_code
    }

    /// The claim of a stored dispute. The dispute keeps the processor's text only as `reason_code_raw` (which is
    /// the processor's reason when the notification carried no network code), so that is what settles an
    /// ambiguous code.
    pub fn of_dispute(dispute: &Dispute) -> Self {
        Self::from_reason(&dispute.reason_code, Some(dispute.reason_code_raw.as_str()))
    }

    /// Codes whose claim the code alone does not settle.
    fn is_ambiguous(code: &ReasonCode, from_code: DisputeClaim) -> bool {
        from_code == DisputeClaim::General
            || (code.network() == CardNetwork::Mastercard && matches!(code.code(), "4853" | "4854" | "4999"))
    }

    /// The claim by the code alone: a few codes by name where Stripe's generic reason is coarser than the
    /// network's title, the rest from the catalogue's Stripe reason and category.
    fn from_code(code: &ReasonCode) -> Self {
        let by_code = match (code.network(), code.code()) {
            (CardNetwork::Visa, "13.2") | (CardNetwork::Visa, "13.7") => Some(DisputeClaim::Cancelled),
            (CardNetwork::Visa, "12.2" | "12.3" | "12.4" | "12.5" | "12.7" | "12.1") => {
                Some(DisputeClaim::DuplicateOrProcessingError)
            }
            (CardNetwork::Amex, "C05" | "C18" | "C28") => Some(DisputeClaim::Cancelled),
            (CardNetwork::Amex, "C04") => Some(DisputeClaim::CreditNotProcessed),
            (CardNetwork::Mastercard, "4841") => Some(DisputeClaim::Cancelled),
            (CardNetwork::Mastercard, "4831" | "4842" | "4846") => Some(DisputeClaim::DuplicateOrProcessingError),
            _ => None,
        };
        if let Some(claim) = by_code {
            return claim;
        }
        match code.stripe_reason() {
            Some("fraudulent" | "unrecognized" | "debit_not_authorized") => DisputeClaim::Fraud,
            Some("product_not_received") => DisputeClaim::NotReceived,
            Some("product_unacceptable") => DisputeClaim::NotAsDescribed,
            Some("credit_not_processed") => DisputeClaim::CreditNotProcessed,
            Some("subscription_canceled") => DisputeClaim::Cancelled,
            Some("duplicate" | "incorrect_account_details" | "bank_cannot_process") => {
                DisputeClaim::DuplicateOrProcessingError
            }
            Some("insufficient_funds") => DisputeClaim::Authorization,
            _ => match code.category() {
                ReasonCategory::Fraud => DisputeClaim::Fraud,
                ReasonCategory::Authorization => DisputeClaim::Authorization,
                ReasonCategory::ProcessingError => DisputeClaim::DuplicateOrProcessingError,
                ReasonCategory::ConsumerDispute => DisputeClaim::General,
            },
        }
    }

    /// Reads a processor's reason text (any case, `_`/`-`/spaces alike); `None` when it names no claim.
    pub fn from_text(text: &str) -> Option<Self> {
        let words: String = text
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
            .collect();
        let words = format!(" {} ", words.split_whitespace().collect::<Vec<_>>().join(" "));
        let has = |needles: &[&str]| needles.iter().any(|n| words.contains(n));
        // Order matters: "credit not processed" and "cancelled recurring" must win over looser words.
        if has(&[
            " credit not processed ",
            " credit not issued ",
            " refund not ",
            " credit_not ",
        ]) {
            Some(DisputeClaim::CreditNotProcessed)
        } else if has(&[" cancel", " recurring", " subscription "]) {
            Some(DisputeClaim::Cancelled)
        } else if has(&[
            " not received ",
            " not provided ",
            " non receipt ",
            " not delivered ",
            " undelivered ",
        ]) {
            Some(DisputeClaim::NotReceived)
        } else if has(&[
            " not as described ",
            " unacceptable ",
            " unsatisfactory ",
            " defective ",
            " damaged ",
            " counterfeit ",
            " misrepresent",
            " quality ",
        ]) {
            Some(DisputeClaim::NotAsDescribed)
        } else if has(&[
            " fraud",
            " unauthori",
            " unrecogni",
            " not recogni",
            " no cardholder authori",
        ]) {
            Some(DisputeClaim::Fraud)
        } else if has(&[
            " duplicate ",
            " amount differs ",
            " incorrect amount ",
            " other means ",
            " paid by other ",
            " processing error ",
        ]) {
            Some(DisputeClaim::DuplicateOrProcessingError)
        } else {
            None
        }
    }
}

impl fmt::Display for DisputeClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DisputeClaim {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DisputeClaim::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| DomainError::invalid(format!("unknown dispute claim `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(network: CardNetwork, raw: &str) -> ReasonCode {
        ReasonCode::parse(network, raw).unwrap_or_else(|e| panic!("{e}"))
    }

    fn claim(network: CardNetwork, raw: &str) -> DisputeClaim {
        DisputeClaim::from_reason(&code(network, raw), None)
    }

    #[test]
    fn visa_codes_name_their_claims() {
        use CardNetwork::Visa;
        assert_eq!(claim(Visa, "10.4"), DisputeClaim::Fraud);
        assert_eq!(claim(Visa, "11.2"), DisputeClaim::Authorization);
        assert_eq!(claim(Visa, "12.6"), DisputeClaim::DuplicateOrProcessingError);
        assert_eq!(claim(Visa, "12.5"), DisputeClaim::DuplicateOrProcessingError);
        assert_eq!(claim(Visa, "13.1"), DisputeClaim::NotReceived);
        assert_eq!(claim(Visa, "13.2"), DisputeClaim::Cancelled);
        assert_eq!(claim(Visa, "13.3"), DisputeClaim::NotAsDescribed);
        assert_eq!(claim(Visa, "13.4"), DisputeClaim::NotAsDescribed);
        assert_eq!(claim(Visa, "13.6"), DisputeClaim::CreditNotProcessed);
        assert_eq!(claim(Visa, "13.7"), DisputeClaim::Cancelled);
    }

    #[test]
    fn other_networks_codes_name_their_claims() {
        assert_eq!(claim(CardNetwork::Mastercard, "4837"), DisputeClaim::Fraud);
        assert_eq!(claim(CardNetwork::Mastercard, "4863"), DisputeClaim::Fraud);
        assert_eq!(claim(CardNetwork::Mastercard, "4808"), DisputeClaim::Authorization);
        assert_eq!(
            claim(CardNetwork::Mastercard, "4834"),
            DisputeClaim::DuplicateOrProcessingError
        );
        assert_eq!(claim(CardNetwork::Mastercard, "4841"), DisputeClaim::Cancelled);
        assert_eq!(claim(CardNetwork::Mastercard, "4855"), DisputeClaim::NotReceived);
        assert_eq!(claim(CardNetwork::Mastercard, "4860"), DisputeClaim::CreditNotProcessed);
        assert_eq!(claim(CardNetwork::Amex, "C08"), DisputeClaim::NotReceived);
        assert_eq!(claim(CardNetwork::Amex, "C05"), DisputeClaim::Cancelled);
        assert_eq!(claim(CardNetwork::Amex, "C32"), DisputeClaim::NotAsDescribed);
        assert_eq!(
            claim(CardNetwork::Amex, "P08"),
            DisputeClaim::DuplicateOrProcessingError
        );
        assert_eq!(claim(CardNetwork::Discover, "RG"), DisputeClaim::NotReceived);
        assert_eq!(claim(CardNetwork::Discover, "UA02"), DisputeClaim::Fraud);
        assert_eq!(
            claim(CardNetwork::Other, "product_not_received"),
            DisputeClaim::NotReceived
        );
        assert_eq!(
            claim(CardNetwork::Other, "subscription_canceled"),
            DisputeClaim::Cancelled
        );
        assert_eq!(claim(CardNetwork::Other, "general"), DisputeClaim::General);
    }

    #[test]
    fn mastercard_4853_is_settled_by_the_processors_reason() {
        let cardholder_dispute = code(CardNetwork::Mastercard, "4853");
        let with = |text: &str| DisputeClaim::from_reason(&cardholder_dispute, Some(text));
        assert_eq!(with("product_not_received"), DisputeClaim::NotReceived);
        assert_eq!(with("MERCHANDISE_OR_SERVICE_NOT_RECEIVED"), DisputeClaim::NotReceived);
        assert_eq!(with("Goods or Services Not Provided"), DisputeClaim::NotReceived);
        assert_eq!(with("credit_not_processed"), DisputeClaim::CreditNotProcessed);
        assert_eq!(with("Cancelled Recurring Transaction"), DisputeClaim::Cancelled);
        assert_eq!(with("Not as described"), DisputeClaim::NotAsDescribed);
        // Without a telling text, the catalogue's reading (Stripe's `product_unacceptable`) stands.
        assert_eq!(with("4853"), DisputeClaim::NotAsDescribed);
        assert_eq!(
            DisputeClaim::from_reason(&cardholder_dispute, None),
            DisputeClaim::NotAsDescribed
        );
    }

    #[test]
    fn a_processor_text_never_overrides_an_unambiguous_code() {
        let fraud = code(CardNetwork::Visa, "10.4");
        assert_eq!(
            DisputeClaim::from_reason(&fraud, Some("product_not_received")),
            DisputeClaim::Fraud
        );
        let general = code(CardNetwork::Other, "general");
        assert_eq!(
            DisputeClaim::from_reason(&general, Some("duplicate charge")),
            DisputeClaim::DuplicateOrProcessingError
        );
    }

    #[test]
    fn texts_that_name_nothing_give_no_claim() {
        assert_eq!(DisputeClaim::from_text(""), None);
        assert_eq!(DisputeClaim::from_text("4853"), None);
        assert_eq!(DisputeClaim::from_text("other"), None);
        assert_eq!(DisputeClaim::from_text("UNAUTHORISED"), Some(DisputeClaim::Fraud));
    }

    #[test]
    fn every_catalogue_code_has_a_claim_and_names_round_trip() {
        for claim in DisputeClaim::ALL {
            assert_eq!(claim.as_str().parse::<DisputeClaim>(), Ok(claim));
        }
        assert!("nonsense".parse::<DisputeClaim>().is_err());
    }
}
