//! The dispute itself: who raised it, for how much, why, where it stands and by when it must be answered.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Customer, DisputeId, DomainError, Money, ReasonCategory, ReasonCode};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($text => Ok($name::$variant),)+
                    other => Err(DomainError::InvalidInput(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), other
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Who told us about the dispute.
    Processor {
        Stripe => "stripe",
        Adyen => "adyen",
        Paypal => "paypal",
        Braintree => "braintree",
        Manual => "manual",
    }
);

string_enum!(
    /// Where the dispute is in the network's lifecycle; it only moves forward.
    Stage {
        Inquiry => "inquiry",
        PreDispute => "pre_dispute",
        Chargeback => "chargeback",
        PreArbitration => "pre_arbitration",
        Arbitration => "arbitration",
    }
);

string_enum!(
    /// Where the dispute stands in Verdict's process.
    Status {
        Notified => "notified",
        Triaged => "triaged",
        EvidenceGathering => "evidence_gathering",
        Submitted => "submitted",
        Won => "won",
        Lost => "lost",
        Accepted => "accepted",
        Expired => "expired",
        Withdrawn => "withdrawn",
        Resolved => "resolved",
    }
);

string_enum!(
    /// The team that works the dispute.
    Queue {
        Care => "care",
        Fraud => "fraud",
        Seller => "seller",
    }
);

impl Stage {
    /// Order of the lifecycle: inquiry and alerts come before the chargeback, arbitration last.
    pub fn rank(&self) -> u8 {
        match self {
            Stage::Inquiry => 0,
            Stage::PreDispute => 0,
            Stage::Chargeback => 1,
            Stage::PreArbitration => 2,
            Stage::Arbitration => 3,
        }
    }

    /// Inquiries and pre-dispute alerts can still be settled by a refund before they become chargebacks.
    pub fn is_pre_chargeback(&self) -> bool {
        matches!(self, Stage::Inquiry | Stage::PreDispute)
    }
}

impl Status {
    /// Statuses in which the next move is ours (an analyst's or the deadline policy's), not the processor's:
    /// what the queue's "needs action" filter shows. A submitted dispute waits for the outcome.
    pub fn needs_action(&self) -> bool {
        matches!(self, Status::Notified | Status::Triaged | Status::EvidenceGathering)
    }

    /// Statuses in which the dispute still needs work and its deadline matters.
    pub fn is_open(&self) -> bool {
        match self {
            Status::Notified | Status::Triaged | Status::EvidenceGathering | Status::Submitted => true,
            Status::Won | Status::Lost | Status::Accepted | Status::Expired | Status::Withdrawn | Status::Resolved => {
                false
            }
        }
    }
}

impl Queue {
    /// The team a reason category goes to when nobody says otherwise.
    pub fn for_category(category: ReasonCategory) -> Self {
        match category {
            ReasonCategory::Fraud => Queue::Fraud,
            ReasonCategory::ConsumerDispute => Queue::Seller,
            ReasonCategory::Authorization | ReasonCategory::ProcessingError => Queue::Care,
        }
    }
}

/// What is needed to open a dispute, validated; the same shape comes from analysts and from webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDispute {
    pub processor: Processor,
    pub processor_dispute_id: String,
    pub payment_reference: String,
    pub order_reference: Option<String>,
    pub seller_id: Option<String>,
    pub customer: Customer,
    pub amount: Money,
    pub reason_code: ReasonCode,
    /// The code as the processor sent it, before normalisation.
    pub reason_code_raw: String,
    pub stage: Stage,
    pub due_by: Option<DateTime<Utc>>,
    pub opened_at: DateTime<Utc>,
}

fn reference(field: &str, value: &str) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err(DomainError::InvalidInput(format!(
            "{field} must be 1 to 255 printable characters"
        )));
    }
    Ok(value.to_owned())
}

impl NewDispute {
    /// Checks the free-text references and returns the dispute with them trimmed.
    pub fn validated(mut self) -> Result<Self, DomainError> {
        self.processor_dispute_id = reference("processorDisputeId", &self.processor_dispute_id)?;
        self.payment_reference = reference("paymentReference", &self.payment_reference)?;
        self.order_reference = self
            .order_reference
            .map(|r| reference("orderReference", &r))
            .transpose()?;
        self.seller_id = self.seller_id.map(|r| reference("sellerId", &r)).transpose()?;
        Ok(self)
    }
}

/// The current state of a dispute: the projection of its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: DisputeId,
    pub processor: Processor,
    pub processor_dispute_id: String,
    pub payment_reference: String,
    pub order_reference: Option<String>,
    pub seller_id: Option<String>,
    pub customer: Customer,
    pub amount: Money,
    pub reason_code: ReasonCode,
    pub reason_code_raw: String,
    pub stage: Stage,
    pub status: Status,
    pub due_by: Option<DateTime<Utc>>,
    pub opened_at: DateTime<Utc>,
    pub queue: Option<Queue>,
    /// 1 (most urgent) to 5, as the triage policy last decided; 3 until it decides otherwise.
    pub priority: u8,
    pub assignee: Option<String>,
    /// Number of events applied; the optimistic-concurrency token.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
