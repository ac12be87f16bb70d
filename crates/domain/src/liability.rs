//! Seller liability: in a marketplace the seller, not the marketplace, often owns the fault a cardholder
//! disputes. These pure rules decide which disputes the seller owns (from the claim and the order's facts),
//! when the seller must answer (before the processor's deadline, so Verdict still has time to submit), what
//! the seller is asked for, what is recovered from the seller's payout when such a dispute is lost or
//! accepted, and which sellers dispute too often for their order count.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::facts::OrderFacts;
use crate::{Dispute, DisputeClaim, EvidenceKind, Status, StepKind, StepRequest};

/// Why the seller owns a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SellerLiability {
    /// The device differs from the listing: the seller graded and described it.
    NotAsDescribedRefurbished,
    /// The parcel did not arrive, and the seller shipped it itself (not the marketplace's warehouse).
    NotReceivedSellerShipped,
    /// The seller cancelled the order, and the cardholder was charged or not credited.
    SellerCancellation,
}

impl SellerLiability {
    pub fn as_str(&self) -> &'static str {
        match self {
            SellerLiability::NotAsDescribedRefurbished => "not_as_described_refurbished",
            SellerLiability::NotReceivedSellerShipped => "not_received_seller_shipped",
            SellerLiability::SellerCancellation => "seller_cancellation",
        }
    }

    /// What the seller is asked to provide: what only the seller has for this claim.
    pub fn needed(&self) -> &'static [EvidenceKind] {
        match self {
            SellerLiability::NotAsDescribedRefurbished => &[
                EvidenceKind::ProductDescription,
                EvidenceKind::Photos,
                EvidenceKind::ImeiSerialRecord,
            ],
            SellerLiability::NotReceivedSellerShipped => &[EvidenceKind::ProofOfDelivery, EvidenceKind::Tracking],
            SellerLiability::SellerCancellation => &[EvidenceKind::Cancellation, EvidenceKind::RefundPolicy],
        }
    }
}

impl std::str::FromStr for SellerLiability {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "not_as_described_refurbished" => Ok(SellerLiability::NotAsDescribedRefurbished),
            "not_received_seller_shipped" => Ok(SellerLiability::NotReceivedSellerShipped),
            "seller_cancellation" => Ok(SellerLiability::SellerCancellation),
            other => Err(crate::DomainError::invalid(format!(
                "unknown seller liability {other:?}"
            ))),
        }
    }
}

/// What seller liability reads of an order's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiabilityFacts<'a> {
    /// The order's devices carry the seller's cosmetic grade (every refurbished device does).
    pub graded_lines: bool,
    pub seller_ships_itself: bool,
    /// Who cancelled and why, when the order was cancelled.
    pub cancellation_reason: Option<&'a str>,
}

impl<'a> LiabilityFacts<'a> {
    pub fn of(order: &'a OrderFacts) -> Self {
        Self {
            graded_lines: order.lines.iter().any(|line| !line.grade.trim().is_empty()),
            seller_ships_itself: order.seller.ships_itself,
            cancellation_reason: order.cancellation.as_ref().map(|c| c.reason.as_str()),
        }
    }
}

/// Whether the seller owns a dispute making `claim` about the order `facts` describes, and why.
pub fn seller_liability(claim: DisputeClaim, facts: &LiabilityFacts<'_>) -> Option<SellerLiability> {
    match claim {
        DisputeClaim::NotAsDescribed if facts.graded_lines => Some(SellerLiability::NotAsDescribedRefurbished),
        DisputeClaim::NotReceived if facts.seller_ships_itself => Some(SellerLiability::NotReceivedSellerShipped),
        DisputeClaim::Cancelled | DisputeClaim::CreditNotProcessed
            if facts.cancellation_reason.is_some_and(cancelled_by_seller) =>
        {
            Some(SellerLiability::SellerCancellation)
        }
        _ => None,
    }
}

/// The marketplace records who cancelled in the cancellation's reason (`seller: out of stock`,
/// `cancelled by the seller`); a cancellation by the customer or the marketplace is not the seller's.
fn cancelled_by_seller(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason.starts_with("seller") || reason.contains("by seller") || reason.contains("by the seller")
}

/// How long before the processor's deadline a seller must answer, and how long a seller gets when the
/// processor gave no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerTaskPolicy {
    pub margin: Duration,
    pub without_deadline: Duration,
}

impl Default for SellerTaskPolicy {
    fn default() -> Self {
        Self {
            margin: Duration::days(3),
            without_deadline: Duration::days(5),
        }
    }
}

/// When the seller's answer is due: `margin` before the processor's deadline; when less than that is left,
/// halfway between now and the deadline, so it always falls before the processor's while there is time.
pub fn seller_task_due(
    processor_due_by: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    policy: &SellerTaskPolicy,
) -> DateTime<Utc> {
    let Some(due_by) = processor_due_by else {
        return now + policy.without_deadline;
    };
    let with_margin = due_by - policy.margin;
    if with_margin > now {
        return with_margin;
    }
    if due_by > now {
        return now + (due_by - now) / 2;
    }
    now
}

/// A seller-owned dispute's task: why the seller owns it and when their answer is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerTask {
    pub liability: SellerLiability,
    pub due_at: DateTime<Utc>,
}

impl SellerTask {
    /// The task a dispute linked to `order` opens, if the seller owns it.
    pub fn for_order(
        dispute: &Dispute,
        order: &OrderFacts,
        policy: &SellerTaskPolicy,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let liability = seller_liability(DisputeClaim::of_dispute(dispute), &LiabilityFacts::of(order))?;
        Some(Self {
            liability,
            due_at: seller_task_due(dispute.due_by, now, policy),
        })
    }

    /// When the seller is reminded, decided at `now`: a day before the task is due; with less than two days
    /// left, halfway to it; none once it is due.
    pub fn reminder_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let day_before = self.due_at - Duration::days(1);
        if day_before > now + Duration::days(1) {
            Some(day_before)
        } else if self.due_at > now {
            Some(now + (self.due_at - now) / 2)
        } else {
            None
        }
    }

    /// What the reminder says: what is still needed and by when.
    pub fn reminder_text(&self) -> String {
        let needed: Vec<&str> = self.liability.needed().iter().map(EvidenceKind::as_str).collect();
        format!(
            "Reminder: this dispute is yours to answer and we have not received your evidence yet. Please send {} \
             by {} (UTC). Without it, the dispute is likely lost and its amount debited from your payout.",
            needed.join(", "),
            self.due_at.format("%Y-%m-%d %H:%M")
        )
    }

    /// What the seller's message says is needed, and by when (English, as seller messages are).
    pub fn request_text(&self) -> String {
        let needed: Vec<&str> = self.liability.needed().iter().map(EvidenceKind::as_str).collect();
        let why = match self.liability {
            SellerLiability::NotAsDescribedRefurbished => "the buyer says the device is not as described",
            SellerLiability::NotReceivedSellerShipped => "the buyer says your shipment never arrived",
            SellerLiability::SellerCancellation => "the buyer disputes the order you cancelled",
        };
        format!(
            "This dispute is yours to answer: {why}. Please send {} by {} (UTC), before the processor's deadline. \
             If it is lost or accepted, its amount is debited from your payout.",
            needed.join(", "),
            self.due_at.format("%Y-%m-%d %H:%M")
        )
    }
}

/// Whether a seller-owned dispute in `status` is recovered from the seller: it was lost or accepted.
pub fn recovery_due(status: Status) -> bool {
    matches!(status, Status::Lost | Status::Accepted)
}

/// The recovery step a change from `before` to the dispute as it is now asks for: the dispute was just lost or
/// accepted, and its seller owns it (`task`). One per dispute (its key has no version): a dispute lost again
/// in a later cycle is not debited twice.
pub fn recovery_step(before: Status, now: &Dispute, task: Option<&SellerTask>) -> Option<StepRequest> {
    let task = task?;
    if !recovery_due(now.status) || recovery_due(before) {
        return None;
    }
    let seller_id = now.seller_id.as_deref()?;
    Some(StepRequest {
        kind: StepKind::SellerRecovery,
        idempotency_key: format!("{}:{}", now.id, StepKind::SellerRecovery.as_str()),
        payload: Some(serde_json::json!({
            "dispute_id": now.id.to_string(),
            "seller_id": seller_id,
            "amount_minor_units": now.amount.minor_units(),
            "currency": now.amount.currency().code(),
            "liability": task.liability.as_str(),
            "outcome": now.status.as_str(),
        })),
    })
}

/// A seller's disputes against their orders over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerRate {
    pub seller_id: String,
    pub disputes: u64,
    pub orders: u64,
}

impl SellerRate {
    /// Disputes per 10,000 orders (basis points); a seller with disputes and no recorded order is at the top.
    pub fn basis_points(&self) -> u64 {
        match (self.disputes, self.orders) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            (d, o) => d.saturating_mul(10_000) / o,
        }
    }

    /// Above `threshold_bps` disputes per 10,000 orders.
    pub fn flagged(&self, threshold_bps: u64) -> bool {
        self.disputes.saturating_mul(10_000) > threshold_bps.saturating_mul(self.orders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn view(graded: bool, ships_itself: bool, cancellation: Option<&str>) -> LiabilityFacts<'_> {
        LiabilityFacts {
            graded_lines: graded,
            seller_ships_itself: ships_itself,
            cancellation_reason: cancellation,
        }
    }

    #[test]
    fn the_seller_owns_what_they_graded_shipped_or_cancelled() {
        let facts = view(true, false, None);
        assert_eq!(
            seller_liability(DisputeClaim::NotAsDescribed, &facts),
            Some(SellerLiability::NotAsDescribedRefurbished)
        );
        assert_eq!(
            seller_liability(DisputeClaim::NotReceived, &facts),
            None,
            "the warehouse shipped it"
        );
        assert_eq!(
            seller_liability(DisputeClaim::NotReceived, &view(true, true, None)),
            Some(SellerLiability::NotReceivedSellerShipped)
        );
        assert_eq!(seller_liability(DisputeClaim::Fraud, &view(true, true, None)), None);
        assert_eq!(
            seller_liability(
                DisputeClaim::Cancelled,
                &view(true, false, Some("Seller: out of stock"))
            ),
            Some(SellerLiability::SellerCancellation)
        );
        assert_eq!(
            seller_liability(
                DisputeClaim::CreditNotProcessed,
                &view(true, false, Some("cancelled by the seller"))
            ),
            Some(SellerLiability::SellerCancellation)
        );
        assert_eq!(
            seller_liability(
                DisputeClaim::Cancelled,
                &view(true, false, Some("customer changed their mind"))
            ),
            None
        );
        assert_eq!(
            seller_liability(DisputeClaim::NotAsDescribed, &view(false, true, None)),
            None
        );
    }

    #[test]
    fn the_seller_is_reminded_a_day_before_the_task_is_due_or_halfway_when_less_is_left() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).single().unwrap_or_default();
        let task = |due_in: Duration| SellerTask {
            liability: SellerLiability::NotReceivedSellerShipped,
            due_at: now + due_in,
        };
        assert_eq!(task(Duration::days(10)).reminder_at(now), Some(now + Duration::days(9)));
        assert_eq!(task(Duration::days(2)).reminder_at(now), Some(now + Duration::days(1)));
        assert_eq!(
            task(Duration::hours(20)).reminder_at(now),
            Some(now + Duration::hours(10))
        );
        assert_eq!(task(Duration::zero()).reminder_at(now), None);
        assert_eq!(task(Duration::hours(-1)).reminder_at(now), None);
        let text = task(Duration::days(3)).reminder_text();
        assert!(
            text.starts_with("Reminder:") && text.contains("proof_of_delivery"),
            "{text}"
        );
    }

    #[test]
    fn seller_tasks_get_deadlines_before_the_processors() {
        let policy = SellerTaskPolicy::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).single().unwrap_or_default();
        for days_left in [1_i64, 2, 3, 4, 10, 30, 45] {
            let due_by = now + Duration::days(days_left);
            let task = seller_task_due(Some(due_by), now, &policy);
            assert!(task < due_by, "{days_left} days left: {task} is not before {due_by}");
            assert!(task > now, "{days_left} days left: {task} leaves the seller no time");
            if days_left > 3 {
                assert_eq!(task, due_by - Duration::days(3));
            }
        }
        assert_eq!(
            seller_task_due(Some(now + Duration::days(2)), now, &policy),
            now + Duration::days(1),
            "halfway when the margin does not fit"
        );
        assert_eq!(seller_task_due(None, now, &policy), now + Duration::days(5));
        assert_eq!(seller_task_due(Some(now - Duration::days(1)), now, &policy), now);
    }

    #[test]
    fn recovery_follows_a_loss_or_an_acceptance_only() {
        assert!(recovery_due(Status::Lost));
        assert!(recovery_due(Status::Accepted));
        for status in [Status::Won, Status::Withdrawn, Status::Submitted, Status::Resolved] {
            assert!(!recovery_due(status), "{status}");
        }
    }

    #[test]
    fn sellers_above_the_threshold_are_flagged() {
        let rate = |disputes, orders| SellerRate {
            seller_id: "s".into(),
            disputes,
            orders,
        };
        assert_eq!(rate(3, 200).basis_points(), 150);
        assert!(rate(3, 200).flagged(100));
        assert!(!rate(2, 200).flagged(100), "exactly at the threshold is not above it");
        assert!(!rate(0, 0).flagged(100));
        assert!(rate(1, 0).flagged(100));
    }
}
