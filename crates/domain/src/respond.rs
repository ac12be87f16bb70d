//! The analyst's actions that reach the outside world: submitting a defense, refunding, and messaging the
//! customer or the seller. The rules that decide whether such an action may happen (how much may still be
//! refunded, whether a refund request was already made, whether a defense may go with evidence missing) are
//! pure functions here; `decide` applies them, and the engine performs the steps they enqueue.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DomainError, EvidenceKind, Money, Stage};

/// The longest free text an analyst may add to a message.
pub const MAX_MESSAGE_TEXT_CHARS: usize = 4_000;
/// The longest refund request id (the caller's own key for "this refund").
pub const MAX_REFUND_REQUEST_ID_CHARS: usize = 100;

/// A refund already asked of the processor for this dispute, as its event recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub request_id: String,
    pub amount: Money,
}

/// Who a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChannel {
    Customer,
    Seller,
}

impl MessageChannel {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageChannel::Customer => "customer",
            MessageChannel::Seller => "seller",
        }
    }
}

/// The messages an analyst may send; each exists in English, French, Spanish and Italian, and each may carry
/// free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageTemplate {
    /// To the customer: the dispute is being looked at.
    CustomerCaseUpdate,
    /// To the customer: what would settle the matter without the bank (a return, details of the problem).
    CustomerRequestInformation,
    /// To the seller: proof Verdict needs from them (tracking, delivery proof, photos, grade report).
    SellerRequestEvidence,
    /// To the seller: where the dispute stands.
    SellerCaseUpdate,
}

impl MessageTemplate {
    pub const ALL: [MessageTemplate; 4] = [
        MessageTemplate::CustomerCaseUpdate,
        MessageTemplate::CustomerRequestInformation,
        MessageTemplate::SellerRequestEvidence,
        MessageTemplate::SellerCaseUpdate,
    ];

    /// The template's file name in the engine's template library.
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageTemplate::CustomerCaseUpdate => "customer_case_update",
            MessageTemplate::CustomerRequestInformation => "customer_request_information",
            MessageTemplate::SellerRequestEvidence => "seller_request_evidence",
            MessageTemplate::SellerCaseUpdate => "seller_case_update",
        }
    }

    /// Whom the template addresses.
    pub fn channel(&self) -> MessageChannel {
        match self {
            MessageTemplate::CustomerCaseUpdate | MessageTemplate::CustomerRequestInformation => {
                MessageChannel::Customer
            }
            MessageTemplate::SellerRequestEvidence | MessageTemplate::SellerCaseUpdate => MessageChannel::Seller,
        }
    }
}

impl fmt::Display for MessageTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageTemplate {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageTemplate::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| DomainError::invalid(format!("unknown message template `{s}`")))
    }
}

/// What may still be refunded on a dispute of `disputed` after `prior` refunds: the disputed amount minus what
/// was already asked for. `None` when nothing is left.
pub fn refundable(disputed: Money, prior: &[RefundRecord]) -> Option<i64> {
    let asked: i64 = prior
        .iter()
        .filter(|r| r.amount.currency() == disputed.currency())
        .map(|r| r.amount.minor_units())
        .sum();
    let left = disputed.minor_units().saturating_sub(asked);
    (left > 0).then_some(left)
}

/// Checks a refund of `amount` requested as `request_id` on a dispute of `disputed` at `stage`, after the
/// `prior` refunds: only before a chargeback (a chargeback already took the money back, so a refund would pay
/// the customer twice), in the dispute's currency, never more than what is left, and never twice for one
/// request. Returns the cleaned request id.
pub fn check_refund(
    stage: Stage,
    disputed: Money,
    prior: &[RefundRecord],
    request_id: &str,
    amount: Money,
) -> Result<String, DomainError> {
    let request_id = request_id.trim();
    if request_id.is_empty()
        || request_id.chars().count() > MAX_REFUND_REQUEST_ID_CHARS
        || request_id.chars().any(char::is_control)
    {
        return Err(DomainError::invalid(format!(
            "a refund's request id must be 1 to {MAX_REFUND_REQUEST_ID_CHARS} printable characters"
        )));
    }
    if !stage.is_pre_chargeback() {
        return Err(DomainError::invalid(format!(
            "a dispute at stage {stage} cannot be refunded: the chargeback already returned the funds to the \
             cardholder, and a refund would pay them twice; accept the dispute or defend it instead"
        )));
    }
    if amount.currency() != disputed.currency() {
        return Err(DomainError::invalid(format!(
            "the refund is in {} but the dispute is in {}",
            amount.currency().code(),
            disputed.currency().code()
        )));
    }
    if prior.iter().any(|r| r.request_id == request_id) {
        return Err(DomainError::invalid(format!(
            "refund request `{request_id}` was already made on this dispute; a refund is never made twice for \
             one request"
        )));
    }
    match refundable(disputed, prior) {
        None => Err(DomainError::invalid(format!(
            "the disputed {disputed} has already been refunded in full"
        ))),
        Some(left) if amount.minor_units() > left => Err(DomainError::invalid(format!(
            "a refund of {amount} exceeds what is left to refund ({} of the disputed {disputed})",
            Money::new(left, disputed.currency()).map_or_else(|_| left.to_string(), |m| m.to_string())
        ))),
        Some(_) => Ok(request_id.to_owned()),
    }
}

/// Whether a defense may be submitted with `missing` evidence: only when nothing required is missing, or a
/// lead overrides with a reason (`override_reason`); the role is the API's to check.
pub fn check_defense(missing: &[EvidenceKind], override_reason: Option<&str>) -> Result<(), DomainError> {
    if missing.is_empty() {
        return Ok(());
    }
    match override_reason.map(str::trim) {
        Some(reason) if !reason.is_empty() => Ok(()),
        _ => Err(DomainError::invalid(format!(
            "required evidence is missing ({}); add it, or a lead may submit anyway with an override reason",
            missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Currency;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
    }

    fn prior(amounts: &[i64]) -> Vec<RefundRecord> {
        amounts
            .iter()
            .enumerate()
            .map(|(i, a)| RefundRecord {
                request_id: format!("r{i}"),
                amount: eur(*a),
            })
            .collect()
    }

    #[test]
    fn a_partial_refund_within_what_is_left_is_allowed() {
        assert_eq!(
            check_refund(Stage::Inquiry, eur(10_000), &prior(&[3_000]), " r-9 ", eur(7_000)),
            Ok("r-9".into())
        );
    }

    #[test]
    fn a_refund_beyond_what_is_left_is_refused() {
        let refused = check_refund(Stage::Inquiry, eur(10_000), &prior(&[3_000]), "r-9", eur(7_001));
        assert!(matches!(refused, Err(DomainError::InvalidInput(m)) if m.contains("70.00 EUR")));
    }

    #[test]
    fn a_fully_refunded_dispute_refuses_more() {
        let refused = check_refund(Stage::PreDispute, eur(10_000), &prior(&[10_000]), "r-9", eur(1));
        assert!(matches!(refused, Err(DomainError::InvalidInput(m)) if m.contains("in full")));
    }

    #[test]
    fn the_same_request_is_never_refunded_twice() {
        let refused = check_refund(Stage::Inquiry, eur(10_000), &prior(&[1_000]), "r0", eur(1_000));
        assert!(matches!(refused, Err(DomainError::InvalidInput(m)) if m.contains("already made")));
    }

    #[test]
    fn a_chargeback_is_never_refunded() {
        for stage in [Stage::Chargeback, Stage::PreArbitration, Stage::Arbitration] {
            assert!(check_refund(stage, eur(10_000), &[], "r", eur(100)).is_err(), "{stage}");
        }
    }

    #[test]
    fn a_refund_in_another_currency_is_refused() {
        let usd =
            Money::new(100, Currency::parse("USD").unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        assert!(check_refund(Stage::Inquiry, eur(10_000), &[], "r", usd).is_err());
    }

    #[test]
    fn a_blank_request_id_is_refused() {
        assert!(check_refund(Stage::Inquiry, eur(10_000), &[], "  ", eur(100)).is_err());
    }

    #[test]
    fn a_defense_with_missing_evidence_needs_an_override_reason() {
        assert!(check_defense(&[], None).is_ok());
        assert!(check_defense(&[EvidenceKind::Tracking], None).is_err());
        assert!(check_defense(&[EvidenceKind::Tracking], Some("  ")).is_err());
        assert!(check_defense(&[EvidenceKind::Tracking], Some("the carrier's proof is on paper")).is_ok());
    }

    #[test]
    fn templates_name_their_channel_and_parse_back() {
        for template in MessageTemplate::ALL {
            assert_eq!(template.as_str().parse::<MessageTemplate>(), Ok(template));
            assert!(template.as_str().starts_with(template.channel().as_str()));
        }
    }

    proptest! {
        /// Whatever refunds are asked, in whatever order, the accepted ones never add up to more than the
        /// disputed amount, and no request id is accepted twice.
        #[test]
        fn accepted_refunds_never_exceed_the_disputed_amount(
            disputed in 1i64..1_000_000,
            asks in proptest::collection::vec((0usize..5, 1i64..400_000), 0..20),
        ) {
            let mut accepted: Vec<RefundRecord> = Vec::new();
            for (id, amount) in asks {
                let request_id = format!("req-{id}");
                if let Ok(clean) = check_refund(Stage::Inquiry, eur(disputed), &accepted, &request_id, eur(amount)) {
                    accepted.push(RefundRecord { request_id: clean, amount: eur(amount) });
                }
            }
            let total: i64 = accepted.iter().map(|r| r.amount.minor_units()).sum();
            prop_assert!(total <= disputed);
            let mut ids: Vec<_> = accepted.iter().map(|r| r.request_id.clone()).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), accepted.len());
        }
    }
}
