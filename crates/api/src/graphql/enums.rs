//! The closed sets the store keeps as text (a step's kind and status, a timer's, an event's type, a
//! notification's kind and status, a message's transport), as GraphQL enums. Each stored label is read into
//! its domain enum once, by [`label`], and each domain enum has one GraphQL mirror (`remote`), so a new
//! variant fails to compile here until it is exposed, and no resolver compares strings.

use async_graphql::Enum;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use verdict_domain as domain;

use crate::error::ApiError;

/// Reads a stored label (`notify_assignee`, `pending`, ...) as the enum whose serde name it is; a label no
/// variant names is a corrupt row, not input.
pub(crate) fn label<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| ApiError::Internal(format!("unknown {what} {text:?} in the store")))
}

/// What happened to a dispute: the type of one entry of its history.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::EventKind")]
pub enum EventType {
    /// The dispute was opened (by a processor's notification or by hand).
    Opened,
    /// Routed to a queue and made ready to work.
    Triaged,
    /// Work on the defense's evidence began.
    EvidenceGatheringStarted,
    /// The defense reached the processor's status `submitted`.
    Submitted,
    /// The processor decided for the merchant.
    Won,
    /// The processor decided for the cardholder.
    Lost,
    /// Liability was accepted.
    Accepted,
    /// The processor's deadline passed with nothing submitted.
    Expired,
    /// The cardholder or issuer withdrew the dispute.
    Withdrawn,
    /// An inquiry or alert was settled without a chargeback.
    Resolved,
    /// A closed dispute came back at a later stage.
    Reopened,
    /// A status change by hand, as recorded before `CORRECTED` existed.
    ManuallyTransitioned,
    /// The processor moved the dispute to a later stage.
    StageAdvanced,
    /// The processor's deadline moved.
    DueByChanged,
    /// Assigned, taken or released.
    Assigned,
    /// An analyst's note.
    NoteAdded,
    /// A reminder before the act-by time was sent.
    ReminderRecorded,
    /// No outcome arrived in time after the submission: the leads were told.
    OutcomeEscalated,
    /// The processor reported a status, stage or due date.
    ProcessorUpdate,
    /// The processor reported the outcome.
    OutcomeReceived,
    /// A lead recorded an outcome by hand.
    OutcomeOverridden,
    /// The internal act-by time passed; the deadline policy acted.
    ActByPassed,
    /// The seller task's own deadline passed and the seller had sent nothing.
    SellerDidNotAnswer,
    /// A lead's correction (`transitionDispute`).
    Corrected,
    /// The defense was submitted (`submitDefense`), with what was missing if a lead overrode.
    DefenseSubmitted,
    /// A refund was asked of the processor.
    RefundRequested,
    /// A message to the customer or seller was asked for.
    MessageRequested,
    /// A message went out.
    MessageSent,
    /// Evidence items were added.
    EvidenceAdded,
    /// An evidence item was withdrawn.
    EvidenceRemoved,
    /// The dispute was linked to its marketplace order.
    OrderLinked,
    /// No marketplace order matched the dispute's references.
    OrderNotFound,
    /// A defense document or case file was generated and stored.
    DocumentGenerated,
    /// The triage policy decided the dispute's queue, priority and recommended action (actor `policy:VERSION`).
    TriageDecided,
}

/// What a step does.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::StepKind")]
pub enum StepKind {
    /// Tells the assignee, or the queue while nobody is assigned.
    NotifyAssignee,
    /// Tells the leads of the dispute's queue.
    EscalateToLead,
    /// Accepts liability at the processor.
    AcceptAtProcessor,
    /// Sends the defense to the processor.
    SubmitEvidence,
    /// Refunds the payment at the processor.
    Refund,
    /// Writes to the customer.
    CustomerMessage,
    /// Writes to the seller.
    SellerMessage,
    /// Looks the dispute's marketplace order up.
    LinkOrder,
    /// Debits a lost or accepted seller-owned dispute from the seller's payout.
    SellerRecovery,
    /// Posts an event to a configured internal webhook.
    OutboundWebhook,
}

/// Where a step stands.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for a worker (or for its next attempt).
    Pending,
    /// Performed.
    Succeeded,
    /// Out of attempts or failed permanently: a lead retries or cancels it.
    Dead,
    /// Given up by a lead, or made pointless by the dispute's state.
    Cancelled,
}

/// What a timer is for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TimerKind {
    /// A reminder before the act-by time (`hoursBefore` says how long before).
    Reminder,
    /// Verdict's act-by time: the deadline policy submits what is complete or accepts.
    ActBy,
    /// The processor's deadline: a dispute with nothing submitted expires.
    Deadline,
    /// The outcome is overdue after the submission: the leads are told.
    OutcomeCheck,
    /// A reminder to the seller before the seller task is due, unless the seller answered.
    SellerReminder,
    /// The seller task's own deadline: recorded if the seller has not answered.
    SellerDue,
}

impl From<domain::TimerKind> for TimerKind {
    fn from(kind: domain::TimerKind) -> Self {
        match kind {
            domain::TimerKind::Reminder { .. } => TimerKind::Reminder,
            domain::TimerKind::ActBy => TimerKind::ActBy,
            domain::TimerKind::Deadline => TimerKind::Deadline,
            domain::TimerKind::OutcomeCheck => TimerKind::OutcomeCheck,
            domain::TimerKind::SellerReminder => TimerKind::SellerReminder,
            domain::TimerKind::SellerDue => TimerKind::SellerDue,
        }
    }
}

/// Reads a stored timer label (`reminder_48h`, `act_by`, ...).
pub(crate) fn timer_kind(text: &str) -> Result<domain::TimerKind, ApiError> {
    domain::TimerKind::from_label(text)
        .ok_or_else(|| ApiError::Internal(format!("unknown timer kind {text:?} in the store")))
}

/// Where a timer stands.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum TimerStatus {
    /// Set, not yet due (or due and about to fire).
    Pending,
    /// Fired: its action was taken.
    Fired,
    /// Cancelled by a later change (a closed dispute, a moved deadline).
    Cancelled,
}

/// What a processor's notification says happened, in Verdict's words.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_ingest::NotificationKind")]
pub enum NotificationKind {
    /// A retrieval request or inquiry before any chargeback.
    Inquiry,
    /// An issuer's early fraud warning (TC40/SAFE).
    EarlyFraudWarning,
    /// A pre-dispute alert (Verifi, Ethoca).
    PreDisputeAlert,
    /// A chargeback was opened.
    ChargebackOpened,
    /// The processor asks for evidence.
    EvidenceRequired,
    /// The issuer is reviewing the defense.
    UnderReview,
    /// Decided for the merchant.
    Won,
    /// Decided for the cardholder.
    Lost,
    /// The chargeback was reversed.
    Reversed,
    /// The cardholder or issuer withdrew it.
    Withdrawn,
    /// Liability was accepted at the processor.
    Accepted,
    /// The response window closed.
    Expired,
    /// The issuer opened pre-arbitration.
    PreArbitrationOpened,
    /// Pre-arbitration decided for the merchant.
    PreArbitrationWon,
    /// Pre-arbitration decided for the cardholder.
    PreArbitrationLost,
    /// The disputed funds were debited.
    FundsWithdrawn,
    /// The disputed funds were credited back.
    FundsReinstated,
    /// Comments and the like: kept, no change of status.
    InformationOnly,
}

/// What Verdict did with a processor's notification.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_store::InboxStatus")]
pub enum NotificationStatus {
    /// Stored, not applied yet (or to be retried).
    Pending,
    /// Applied to its dispute.
    Applied,
    /// Deliberately not applied (a type Verdict does not act on, or older than the dispute's state).
    Ignored,
    /// Contradicts the state machine: kept and shown, never applied.
    Flagged,
    /// Could not be applied after repeated attempts; needs an operator.
    Failed,
}

/// How a message left Verdict.
#[derive(Enum, Deserialize, Copy, Clone, Eq, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum MessageTransport {
    /// Kept in Verdict's mailbox only (no mail server configured).
    Mailbox,
    /// Sent by email.
    Smtp,
    /// Posted to the recipient's webhook.
    Webhook,
}

/// Why the seller owns a dispute.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::SellerLiability")]
pub enum SellerLiability {
    /// The device differs from the listing: the seller graded and described it.
    NotAsDescribedRefurbished,
    /// The parcel did not arrive, and the seller shipped it.
    NotReceivedSellerShipped,
    /// The seller cancelled the order.
    SellerCancellation,
}

/// Who wrote a message about an order.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::facts::MessageAuthor")]
pub enum MessageAuthor {
    /// The cardholder.
    Customer,
    /// The marketplace's support.
    Marketplace,
    /// The seller.
    Seller,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_label_reads_as_its_enum() {
        for kind in [domain::StepKind::Refund, domain::StepKind::OutboundWebhook] {
            let read: domain::StepKind = label(kind.as_str(), "step kind").unwrap();
            assert_eq!(read, kind);
        }
        assert_eq!(label::<StepStatus>("dead", "step status").unwrap(), StepStatus::Dead);
        assert_eq!(
            label::<TimerStatus>("fired", "timer status").unwrap(),
            TimerStatus::Fired
        );
        let event: domain::EventKind = label("document_generated", "event type").unwrap();
        assert_eq!(EventType::from(event), EventType::DocumentGenerated);
        assert_eq!(
            TimerKind::from(timer_kind("reminder_24h").unwrap()),
            TimerKind::Reminder
        );
        assert!(label::<StepStatus>("exploded", "step status").is_err());
    }
}
