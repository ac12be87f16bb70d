//! The state machine: which transitions exist, what each command means, and how events rebuild a dispute.
//!
//! [`decide`] never performs anything: it returns a [`Decision`] (events, timers, steps) that the engine writes
//! in one transaction. [`apply`] folds one event into the projection; replaying a dispute's events with it
//! rebuilds the stored projection exactly.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::facts::{OrderProfile, ReferenceKind, TaggedReference, lookup_references};
use crate::liability::SellerTask;
use crate::policy::{Triage, TriageRun};
use crate::respond::{self, MessageChannel, MessageTemplate, RefundRecord};
use crate::{
    Customer, Dispute, DisputeId, DocumentKind, DocumentRef, DomainError, EvidenceKind, EvidenceSource, Locale, Money,
    NewDispute, Processor, Queue, Stage, Status,
};

/// Reminders before the act-by time, in hours.
pub const REMINDER_HOURS: [i64; 3] = [72, 24, 4];
/// Days after submission at which a missing outcome is escalated.
pub const OUTCOME_CHECK_DAYS: i64 = 75;
/// The latest due date accepted from an analyst, in days from now. Networks give weeks to answer (Visa and
/// Mastercard about 30 days, pre-arbitration and arbitration up to 45); a year is generous and still refuses
/// typing mistakes such as 9999-12-31.
pub const MAX_DUE_AHEAD_DAYS: i64 = 366;
/// A processor's due date that is already past when it arrives (Stripe `due_by=1`) cannot be refused, since
/// the notification cannot be: it is kept, flagged in the event's reason, and the dispute does not expire before
/// this many hours have passed, which leaves the processor time to report the outcome itself. A week: the
/// shortest evidence window networks give.
pub const PAST_DUE_GRACE_HOURS: i64 = 7 * 24;
const MAX_REASON_CHARS: usize = 2_000;
const MAX_NOTE_CHARS: usize = 10_000;

/// Whether `from -> to` is a transition of the dispute lifecycle; `stage_to` is the stage after it.
///
/// This is the one table of allowed transitions. It matches exhaustively so that a new status cannot compile
/// until someone decides how it behaves.
pub fn transition_allowed(from: Status, to: Status, stage_from: Stage, stage_to: Stage) -> bool {
    use Status::*;
    let same_stage = stage_from == stage_to;
    let second_cycle =
        stage_to.rank() > stage_from.rank() && matches!(stage_to, Stage::PreArbitration | Stage::Arbitration);
    match from {
        Notified => same_stage && matches!(to, Triaged | Accepted | Expired | Withdrawn),
        Triaged => {
            same_stage
                && (matches!(to, EvidenceGathering | Accepted | Expired | Withdrawn)
                    || (to == Resolved && stage_from.is_pre_chargeback()))
        }
        EvidenceGathering => {
            same_stage
                && (matches!(to, Submitted | Accepted | Expired | Withdrawn)
                    || (to == Resolved && stage_from.is_pre_chargeback()))
        }
        Submitted => same_stage && matches!(to, Won | Lost | Withdrawn),
        Won | Lost => second_cycle && to == EvidenceGathering,
        Accepted | Expired | Withdrawn | Resolved => false,
    }
}

/// Whether the processor (or a lead overriding in its name) may move a dispute from `from` to `to`, with the
/// stage going from `stage_from` to `stage_to`.
///
/// This is the processor's table, apart from the analysts' one ([`transition_allowed`]): the processor reports
/// where a dispute is, so the projection jumps there directly and no intermediate step (triaged, evidence
/// gathering, submitted) is invented. Stages never move backwards.
/// - an open dispute may stay where it is (a later stage, a new due date) or be decided (won, lost), accepted,
///   expired or withdrawn at the processor;
/// - a won or lost dispute reopens in evidence gathering, or is decided again, only in a second cycle
///   (pre-arbitration, arbitration);
/// - an expired dispute may still be decided: the expiry is Verdict's inference, the outcome the processor's
///   word;
/// - accepted, withdrawn and resolved disputes never move.
pub fn processor_transition_allowed(from: Status, to: Status, stage_from: Stage, stage_to: Stage) -> bool {
    use Status::*;
    if stage_to.rank() < stage_from.rank() {
        return false;
    }
    let second_cycle =
        stage_to.rank() > stage_from.rank() && matches!(stage_to, Stage::PreArbitration | Stage::Arbitration);
    match from {
        Notified | Triaged | EvidenceGathering | Submitted => {
            to == from || matches!(to, Won | Lost | Accepted | Expired | Withdrawn)
        }
        Won | Lost => second_cycle && matches!(to, EvidenceGathering | Won | Lost),
        Expired => matches!(to, Won | Lost),
        Accepted | Withdrawn | Resolved => false,
    }
}

/// Whether `status` is an outcome: recorded from the processor, or by a lead's override, never by an analyst.
pub fn is_outcome(status: Status) -> bool {
    matches!(status, Status::Won | Status::Lost | Status::Expired)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Analyst,
    Processor,
    Timer,
    Step,
    System,
    /// The triage policy, acting alone within its limits (`policy:VERSION`).
    Policy,
}

/// Who caused an event: an analyst's API key name, a processor, a timer, a step or the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
}

impl Actor {
    pub fn analyst(name: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Analyst,
            name: name.into(),
        }
    }
    pub fn processor(processor: Processor) -> Self {
        Self {
            kind: ActorKind::Processor,
            name: processor.to_string(),
        }
    }
    pub fn system(name: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::System,
            name: name.into(),
        }
    }
    /// Policy version `version`, acting alone or on a lead's approval; version 0 is the built-in default.
    pub fn policy(version: i64) -> Self {
        Self {
            kind: ActorKind::Policy,
            name: if version == 0 {
                "default".to_owned()
            } else {
                version.to_string()
            },
        }
    }
    /// `analyst:jane`, `processor:stripe`: how the actor is stored and shown.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            ActorKind::Analyst => "analyst",
            ActorKind::Processor => "processor",
            ActorKind::Timer => "timer",
            ActorKind::Step => "step",
            ActorKind::System => "system",
            ActorKind::Policy => "policy",
        };
        format!("{kind}:{}", self.name)
    }
}

/// What somebody asks of a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Open(Box<NewDispute>),
    /// Triage into a queue; without one, the reason category decides.
    Triage {
        queue: Option<Queue>,
    },
    StartEvidenceGathering,
    Submit,
    /// The outcome as older follow-up timers stored it; decided exactly as [`Action::ReceiveOutcome`] at the
    /// current stage, so history says `outcome_received`.
    RecordOutcome {
        won: bool,
    },
    Accept,
    Expire,
    Withdraw,
    Resolve,
    /// Second cycle: a won or lost dispute comes back at a later stage.
    Reopen {
        stage: Stage,
        due_by: Option<DateTime<Utc>>,
    },
    /// An open dispute moves to a later stage (an inquiry becomes a chargeback).
    AdvanceStage {
        stage: Stage,
        due_by: Option<DateTime<Utc>>,
    },
    ChangeDueBy {
        due_by: Option<DateTime<Utc>>,
    },
    Assign {
        assignee: Option<String>,
    },
    AddNote {
        note: String,
    },
    /// A deadline reminder fell due (a timer): recorded, and the assignee is notified.
    RecordReminder {
        hours_before: i64,
    },
    /// No outcome arrived long after submission (a timer): recorded, and a lead is notified.
    EscalateOverdueOutcome,
    /// An analyst forces any allowed transition; needs a reason and the version the analyst saw. Outcomes
    /// (won, lost, expired) are refused: they come from the processor, or from a lead's [`Action::OverrideOutcome`].
    /// A later stage (a lead's reopening into a second cycle) needs the new cycle's due date.
    Transition {
        to: Status,
        expected_version: i64,
        stage: Option<Stage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_by: Option<DateTime<Utc>>,
    },
    /// The processor reports where the dispute stands: a status it moved to (accepted, expired, withdrawn, or
    /// evidence gathering again in a second cycle), a later stage, a new due date. Recorded as the processor's
    /// word (`processor_update`); the projection jumps there directly. `due_by: None` leaves the due date as it
    /// is, except when a closed dispute reopens: the old cycle's date does not apply to the new one.
    ProcessorUpdate {
        status: Option<Status>,
        stage: Option<Stage>,
        due_by: Option<DateTime<Utc>>,
    },
    /// The processor decided the dispute (`outcome_received`), at `stage` when it names a later one.
    ReceiveOutcome {
        won: bool,
        stage: Option<Stage>,
    },
    /// A lead records an outcome by hand (won, lost or expired) in the processor's stead; needs a reason and the
    /// version the lead saw. The role is checked by the API; the event says it was an override.
    OverrideOutcome {
        to: Status,
        expected_version: i64,
    },
    /// The internal act-by time passed with nothing the deadline policy could submit or accept (a timer):
    /// recorded and the assignee told; the dispute stays open until the processor's own deadline.
    RecordActByPassed,
    /// The seller task's own deadline passed without the seller's answer (a timer): recorded so that the
    /// analyst sees it; the dispute stays open.
    RecordSellerNoAnswer {
        due_at: DateTime<Utc>,
    },
    /// An analyst submits the defense (`submitDefense`): from notified, triaged or evidence gathering (the
    /// statuses between are walked in the same commit), the submission step is enqueued and the outcome check
    /// set. `missing` is the required evidence the engine found missing; while it is not empty the defense is
    /// refused unless a lead overrides with `override_reason` (the role is the API's to check), and the event
    /// records what was overridden.
    SubmitDefense {
        missing: Vec<EvidenceKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        override_reason: Option<String>,
    },
    /// An analyst refunds `amount` of an inquiry or pre-dispute alert (`refund`, `resolveWithRefund`): the
    /// refund step, whose success enqueues the customer's message. `prior` are the refunds already requested,
    /// as read from the log at the version the command expects (which it must state). With `resolve` the
    /// dispute is resolved in the same commit.
    Refund {
        request_id: String,
        amount: Money,
        prior: Vec<RefundRecord>,
        resolve: bool,
    },
    /// An analyst messages the customer or the seller from a template, with optional free text (kept in the
    /// step, not in the event). `locale` defaults to the customer's for customer messages, English for sellers.
    SendMessage {
        template: MessageTemplate,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locale: Option<Locale>,
    },
    /// A message step reports what it sent (a step's follow-up): the event says so only now.
    RecordMessageSent {
        channel: MessageChannel,
        template: String,
        message_id: String,
    },
    /// The dispute's order was found (by the link step, or named by an analyst): the dispute takes the order's
    /// seller and customer. `source` says which facts answered (`tables`, `http`).
    LinkOrder {
        order_reference: String,
        source: String,
        seller_id: String,
        customer: Customer,
        /// The seller owns the dispute (see liability.rs): a seller task opens with the link, and the seller is
        /// asked for what is needed by its due time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seller_task: Option<SellerTask>,
        /// What patterns group by (device, grade, country); none from callers that do not know the order's lines.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<OrderProfile>,
    },
    /// The link step asked the marketplace facts with every reference the notification carried and none
    /// matched; `tried` names the kinds of reference (never their values).
    RecordOrderNotFound {
        source: String,
        tried: Vec<ReferenceKind>,
    },
    /// Evidence items were added (typed, uploaded, or drawn from the marketplace facts in one action). The
    /// content is stored beside the event, in the evidence table; the event names only kinds and ids.
    AddEvidence {
        items: Vec<EvidenceRef>,
        source: EvidenceSource,
    },
    /// An evidence item is withdrawn from the defense; it stays stored, marked removed.
    RemoveEvidence {
        item: EvidenceRef,
    },
    /// A document (the defense, the case file) was generated; its content is stored beside the event, in the
    /// documents table, and the event names it.
    RecordDocument {
        document: DocumentRef,
    },
}

/// An evidence item as the event log names it: its id and kind, never its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub item_id: Uuid,
    pub kind: EvidenceKind,
}

/// A command: an action, who asks for it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub actor: Actor,
    pub reason: Option<String>,
    pub action: Action,
    /// The version the caller saw, when it states one: a stale one is a `VersionConflict`, so a command made
    /// on what a screen showed is never applied to a dispute that changed meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

impl Command {
    pub fn new(actor: Actor, action: Action) -> Self {
        Self {
            actor,
            reason: None,
            action,
            expected_version: None,
        }
    }
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    /// Applies only to the dispute at `version`.
    pub fn expecting(mut self, version: i64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// What changed, as stored in the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Opened {
        dispute: Box<NewDispute>,
    },
    Transitioned {
        from: Status,
        to: Status,
        manual: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<Queue>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<Stage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_by: Option<DateTime<Utc>>,
    },
    StageAdvanced {
        from: Stage,
        to: Stage,
        due_by: Option<DateTime<Utc>>,
    },
    DueByChanged {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
    Assigned {
        from: Option<String>,
        to: Option<String>,
    },
    NoteAdded {
        note: String,
    },
    ReminderRecorded {
        hours_before: i64,
    },
    OutcomeEscalated,
    /// The processor changed the status, the stage or the due date; each is stored before and after.
    ProcessorUpdated {
        from: Status,
        to: Status,
        stage_from: Stage,
        stage_to: Stage,
        due_by_from: Option<DateTime<Utc>>,
        due_by_to: Option<DateTime<Utc>>,
    },
    /// The processor decided the dispute (`to` is won or lost), at a later stage when `stage` is set.
    OutcomeReceived {
        from: Status,
        to: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<Stage>,
    },
    /// A lead recorded an outcome by hand, in the processor's stead.
    OutcomeOverridden {
        from: Status,
        to: Status,
    },
    /// The act-by time passed with nothing to submit or accept; the processor's deadline is still ahead.
    ActByPassed {
        due_by: DateTime<Utc>,
    },
    /// The seller task was due at `due_at` and the seller sent nothing.
    SellerDidNotAnswer {
        due_at: DateTime<Utc>,
    },
    /// An analyst submitted the defense; `missing_overridden` is the required evidence a lead chose to do
    /// without (the event's reason says why).
    DefenseSubmitted {
        from: Status,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing_overridden: Vec<EvidenceKind>,
    },
    /// A refund was asked of the processor (its step is pending until the processor confirms it).
    RefundRequested {
        request_id: String,
        amount: Money,
    },
    /// A message was asked for; its step sends it, and `message_sent` follows once it is sent.
    MessageRequested {
        channel: MessageChannel,
        template: MessageTemplate,
        locale: Locale,
        with_text: bool,
    },
    /// A message went out (to the mailbox, SMTP or the seller's webhook), under `message_id`.
    MessageSent {
        channel: MessageChannel,
        template: String,
        message_id: String,
    },
    EvidenceAdded {
        items: Vec<EvidenceRef>,
        source: EvidenceSource,
    },
    EvidenceRemoved {
        item: EvidenceRef,
    },
    /// The dispute was linked to its marketplace order; the seller and the customer are the order's.
    OrderLinked {
        order_reference: String,
        source: String,
        seller_id: String,
        customer: Customer,
        /// The seller task opened with the link, when the seller owns the dispute.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seller_task: Option<SellerTask>,
        /// The order's device, grade and shipping country, for patterns (absent in events recorded before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<OrderProfile>,
    },
    /// No order matched the references the notification carried (their kinds are named, not their values).
    OrderNotFound {
        source: String,
        tried: Vec<ReferenceKind>,
    },
    DocumentGenerated {
        document: DocumentRef,
    },
    /// The triage policy decided differently from before: the rule that fired, what it read and why. The
    /// queue and priority follow it.
    TriageDecided {
        policy_version: i64,
        triage: Box<Triage>,
    },
}

/// The name of an event in the history, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Triaged,
    EvidenceGatheringStarted,
    Submitted,
    Won,
    Lost,
    Accepted,
    Expired,
    Withdrawn,
    Resolved,
    Reopened,
    ManuallyTransitioned,
    StageAdvanced,
    DueByChanged,
    Assigned,
    NoteAdded,
    ReminderRecorded,
    OutcomeEscalated,
    ProcessorUpdate,
    OutcomeReceived,
    OutcomeOverridden,
    ActByPassed,
    SellerDidNotAnswer,
    /// A lead's correction by `transitionDispute` (older manual transitions read `manually_transitioned`).
    Corrected,
    DefenseSubmitted,
    RefundRequested,
    MessageRequested,
    MessageSent,
    EvidenceAdded,
    EvidenceRemoved,
    OrderLinked,
    OrderNotFound,
    DocumentGenerated,
    TriageDecided,
}

impl EventKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Triaged => "triaged",
            EventKind::EvidenceGatheringStarted => "evidence_gathering_started",
            EventKind::Submitted => "submitted",
            EventKind::Won => "won",
            EventKind::Lost => "lost",
            EventKind::Accepted => "accepted",
            EventKind::Expired => "expired",
            EventKind::Withdrawn => "withdrawn",
            EventKind::Resolved => "resolved",
            EventKind::Reopened => "reopened",
            EventKind::ManuallyTransitioned => "manually_transitioned",
            EventKind::StageAdvanced => "stage_advanced",
            EventKind::DueByChanged => "due_by_changed",
            EventKind::Assigned => "assigned",
            EventKind::NoteAdded => "note_added",
            EventKind::ReminderRecorded => "reminder_recorded",
            EventKind::OutcomeEscalated => "outcome_escalated",
            EventKind::ProcessorUpdate => "processor_update",
            EventKind::OutcomeReceived => "outcome_received",
            EventKind::OutcomeOverridden => "outcome_overridden",
            EventKind::ActByPassed => "act_by_passed",
            EventKind::SellerDidNotAnswer => "seller_did_not_answer",
            EventKind::Corrected => "corrected",
            EventKind::DefenseSubmitted => "defense_submitted",
            EventKind::RefundRequested => "refund_requested",
            EventKind::MessageRequested => "message_requested",
            EventKind::MessageSent => "message_sent",
            EventKind::EvidenceAdded => "evidence_added",
            EventKind::EvidenceRemoved => "evidence_removed",
            EventKind::OrderLinked => "order_linked",
            EventKind::OrderNotFound => "order_not_found",
            EventKind::DocumentGenerated => "document_generated",
            EventKind::TriageDecided => "triage_decided",
        }
    }
}

impl Change {
    pub fn kind(&self) -> EventKind {
        match self {
            Change::Opened { .. } => EventKind::Opened,
            Change::Transitioned { manual: true, .. } => EventKind::Corrected,
            Change::Transitioned { stage: Some(_), .. } => EventKind::Reopened,
            Change::Transitioned { to, .. } => match to {
                Status::Notified => EventKind::ManuallyTransitioned,
                Status::Triaged => EventKind::Triaged,
                Status::EvidenceGathering => EventKind::EvidenceGatheringStarted,
                Status::Submitted => EventKind::Submitted,
                Status::Won => EventKind::Won,
                Status::Lost => EventKind::Lost,
                Status::Accepted => EventKind::Accepted,
                Status::Expired => EventKind::Expired,
                Status::Withdrawn => EventKind::Withdrawn,
                Status::Resolved => EventKind::Resolved,
            },
            Change::StageAdvanced { .. } => EventKind::StageAdvanced,
            Change::DueByChanged { .. } => EventKind::DueByChanged,
            Change::Assigned { .. } => EventKind::Assigned,
            Change::NoteAdded { .. } => EventKind::NoteAdded,
            Change::ReminderRecorded { .. } => EventKind::ReminderRecorded,
            Change::OutcomeEscalated => EventKind::OutcomeEscalated,
            Change::ProcessorUpdated { .. } => EventKind::ProcessorUpdate,
            Change::OutcomeReceived { .. } => EventKind::OutcomeReceived,
            Change::OutcomeOverridden { .. } => EventKind::OutcomeOverridden,
            Change::ActByPassed { .. } => EventKind::ActByPassed,
            Change::SellerDidNotAnswer { .. } => EventKind::SellerDidNotAnswer,
            Change::DefenseSubmitted { .. } => EventKind::DefenseSubmitted,
            Change::RefundRequested { .. } => EventKind::RefundRequested,
            Change::MessageRequested { .. } => EventKind::MessageRequested,
            Change::MessageSent { .. } => EventKind::MessageSent,
            Change::EvidenceAdded { .. } => EventKind::EvidenceAdded,
            Change::EvidenceRemoved { .. } => EventKind::EvidenceRemoved,
            Change::OrderLinked { .. } => EventKind::OrderLinked,
            Change::OrderNotFound { .. } => EventKind::OrderNotFound,
            Change::DocumentGenerated { .. } => EventKind::DocumentGenerated,
            Change::TriageDecided { .. } => EventKind::TriageDecided,
        }
    }

    /// The statuses before and after, for events that move the status (`None` before the dispute existed).
    pub fn status_change(&self) -> Option<(Option<Status>, Status)> {
        match self {
            Change::Opened { .. } => Some((None, Status::Notified)),
            Change::Transitioned { from, to, .. }
            | Change::OutcomeReceived { from, to, .. }
            | Change::OutcomeOverridden { from, to } => Some((Some(*from), *to)),
            Change::ProcessorUpdated { from, to, .. } => (from != to).then_some((Some(*from), *to)),
            Change::DefenseSubmitted { from, .. } => Some((Some(*from), Status::Submitted)),
            Change::RefundRequested { .. } | Change::MessageRequested { .. } | Change::MessageSent { .. } => None,
            Change::StageAdvanced { .. }
            | Change::DueByChanged { .. }
            | Change::Assigned { .. }
            | Change::NoteAdded { .. }
            | Change::ReminderRecorded { .. }
            | Change::OutcomeEscalated
            | Change::ActByPassed { .. }
            | Change::SellerDidNotAnswer { .. }
            | Change::EvidenceAdded { .. }
            | Change::EvidenceRemoved { .. }
            | Change::OrderLinked { .. }
            | Change::OrderNotFound { .. } => None,
            Change::DocumentGenerated { .. } | Change::TriageDecided { .. } => None,
        }
    }
}

/// One appended fact about a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeEvent {
    pub dispute_id: DisputeId,
    /// The dispute's version after this event: 1 for the opening event, then +1 each.
    pub version: i64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub reason: Option<String>,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A reminder this many hours before the act-by time.
    Reminder { hours_before: i64 },
    /// The internal act-by time, when the deadline policy submits what is complete or accepts. The domain asks
    /// for it at the processor's due date; the engine's timing policy moves it earlier by its submit margin.
    ActBy,
    /// The processor's own deadline: a dispute with nothing submitted expires when it passes, never before.
    Deadline,
    /// An outcome is overdue this long after submission.
    OutcomeCheck,
    /// A reminder to the seller before the seller task's own deadline, unless the seller answered.
    SellerReminder,
    /// The seller task's own deadline: recorded when the seller has not answered by then.
    SellerDue,
}

impl TimerKind {
    pub fn label(&self) -> String {
        match self {
            TimerKind::Reminder { hours_before } => format!("reminder_{hours_before}h"),
            TimerKind::ActBy => "act_by".to_owned(),
            TimerKind::Deadline => "deadline".to_owned(),
            TimerKind::OutcomeCheck => "outcome_check".to_owned(),
            TimerKind::SellerReminder => "seller_reminder".to_owned(),
            TimerKind::SellerDue => "seller_due".to_owned(),
        }
    }

    /// The kind a [`TimerKind::label`] names; `None` for anything else.
    pub fn from_label(label: &str) -> Option<TimerKind> {
        match label {
            "act_by" => Some(TimerKind::ActBy),
            "deadline" => Some(TimerKind::Deadline),
            "outcome_check" => Some(TimerKind::OutcomeCheck),
            "seller_reminder" => Some(TimerKind::SellerReminder),
            "seller_due" => Some(TimerKind::SellerDue),
            other => {
                let hours = other.strip_prefix("reminder_")?.strip_suffix('h')?;
                Some(TimerKind::Reminder {
                    hours_before: hours.parse().ok()?,
                })
            }
        }
    }
}

/// Timers the engine must write with the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerInstruction {
    Set {
        kind: TimerKind,
        due_at: DateTime<Utc>,
    },
    /// Cancel every pending timer of the dispute.
    CancelAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The assignee, or the queue while nobody is assigned.
    NotifyAssignee,
    /// The leads of the dispute's queue.
    EscalateToLead,
    AcceptAtProcessor,
    SubmitEvidence,
    Refund,
    CustomerMessage,
    SellerMessage,
    /// Finds the dispute's marketplace order by the references its notification carried (the step's payload).
    LinkOrder,
    /// Debits a lost or accepted seller-owned dispute from the seller's payout (the marketplace's payout
    /// service); the payload is the recovery.
    SellerRecovery,
    /// Posts one event to a configured internal webhook (`[[outbound_webhooks]]`); the payload names the
    /// webhook and the event's version. Written by the store beside the event, never by `decide`.
    OutboundWebhook,
}

impl StepKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StepKind::NotifyAssignee => "notify_assignee",
            StepKind::EscalateToLead => "escalate_to_lead",
            StepKind::AcceptAtProcessor => "accept_at_processor",
            StepKind::SubmitEvidence => "submit_evidence",
            StepKind::Refund => "refund",
            StepKind::CustomerMessage => "customer_message",
            StepKind::SellerMessage => "seller_message",
            StepKind::LinkOrder => "link_order",
            StepKind::SellerRecovery => "seller_recovery",
            StepKind::OutboundWebhook => "outbound_webhook",
        }
    }
}

/// A side effect for a worker to perform later, made effectively-once by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRequest {
    pub kind: StepKind,
    pub idempotency_key: String,
    /// What the step needs beyond the dispute (the link step: the references to look the order up by; a
    /// refund's amount; a message's template and text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// Everything a command causes, to be persisted atomically.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Decision {
    pub events: Vec<DisputeEvent>,
    pub timers: Vec<TimerInstruction>,
    pub steps: Vec<StepRequest>,
    /// The triage run this decision carries (its inputs and result), stored beside the dispute whether or not
    /// its decision changed (an unchanged one records no event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<Box<TriageRun>>,
    /// What the policy does here alone or on a lead's approval, marked in the same commit: the store refuses a
    /// second mark of one action on one dispute, and claims the approval it names in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_action: Option<crate::policy::PolicyActionMark>,
}

impl Decision {
    /// Appends the decision made on the dispute as this one left it, so that both are persisted as one: the
    /// timer instructions keep their order, so a later `CancelAll` also cancels what an earlier one set.
    pub fn then(&mut self, next: Decision) {
        self.events.extend(next.events);
        self.timers.extend(next.timers);
        self.steps.extend(next.steps);
        if next.triage.is_some() {
            self.triage = next.triage;
        }
        if next.policy_action.is_some() {
            self.policy_action = next.policy_action;
        }
    }

    /// Adds references for the link step to look the order up by (to an opening decision's; the engine passes
    /// every reference the notification carried, which the opened dispute alone cannot hold). A value already
    /// there takes the kind given here, which is the more precise (`charge` rather than `payment_reference`).
    pub fn link_by(&mut self, references: Vec<TaggedReference>) {
        for step in &mut self.steps {
            if step.kind == StepKind::LinkOrder {
                let known = link_references(step.payload.as_ref());
                let all = lookup_references(references.iter().cloned().chain(known));
                step.payload = Some(link_payload(&all));
            }
        }
    }
}

/// The link step's payload: `{"references": [{"kind": "charge", "value": "ch_..."}, ...]}`.
pub fn link_payload(references: &[TaggedReference]) -> serde_json::Value {
    serde_json::json!({ "references": references })
}

/// The references of a link step's payload; none for a payload that is missing or unreadable.
pub fn link_references(payload: Option<&serde_json::Value>) -> Vec<TaggedReference> {
    payload
        .and_then(|p| p.get("references"))
        .and_then(|r| serde_json::from_value::<Vec<TaggedReference>>(r.clone()).ok())
        .unwrap_or_default()
}

fn clean_text(field: &str, text: Option<&str>, max: usize) -> Result<Option<String>, DomainError> {
    match text.map(str::trim) {
        None => Ok(None),
        Some("") => Err(DomainError::InvalidInput(format!("{field} must not be empty"))),
        Some(t) if t.chars().count() > max => Err(DomainError::InvalidInput(format!(
            "{field} is longer than {max} characters"
        ))),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

/// When a dispute due at `due_by` expires, decided at `now`: at the processor's deadline, or, when that is
/// already past, once [`PAST_DUE_GRACE_HOURS`] have passed. Never at once.
pub fn expiry_at(due_by: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    if due_by > now {
        due_by
    } else {
        now + Duration::hours(PAST_DUE_GRACE_HOURS)
    }
}

fn deadline_timers(due_by: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Vec<TimerInstruction> {
    let Some(due_by) = due_by else { return Vec::new() };
    let mut timers: Vec<TimerInstruction> = REMINDER_HOURS
        .iter()
        .map(|hours| {
            (
                TimerKind::Reminder { hours_before: *hours },
                due_by - Duration::hours(*hours),
            )
        })
        .filter(|(_, at)| *at > now)
        .map(|(kind, due_at)| TimerInstruction::Set { kind, due_at })
        .collect();
    timers.push(TimerInstruction::Set {
        kind: TimerKind::ActBy,
        due_at: due_by,
    });
    timers.push(TimerInstruction::Set {
        kind: TimerKind::Deadline,
        due_at: expiry_at(due_by, now),
    });
    timers
}

/// Checks a due date that `actor` gives at `now`. An analyst's must lie ahead, at most [`MAX_DUE_AHEAD_DAYS`]
/// away; anyone else's (a processor's notification cannot be refused) is kept, and a past or absurd one is
/// flagged: the returned text goes into the event's reason.
fn check_due_by(
    actor: &Actor,
    due_by: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<String>, DomainError> {
    let Some(due_by) = due_by else { return Ok(None) };
    let problem = if due_by <= now {
        format!("due date {} is already past", due_by.to_rfc3339())
    } else if due_by > now + Duration::days(MAX_DUE_AHEAD_DAYS) {
        format!(
            "due date {} is more than {MAX_DUE_AHEAD_DAYS} days ahead",
            due_by.to_rfc3339()
        )
    } else {
        return Ok(None);
    };
    if actor.kind == ActorKind::Analyst {
        return Err(DomainError::InvalidInput(format!(
            "dueBy must be in the future and at most {MAX_DUE_AHEAD_DAYS} days ahead: {problem}"
        )));
    }
    let mut flag = format!("flagged: {problem}; kept as the {} sent it", actor.label());
    if due_by <= now {
        flag.push_str(&format!(
            ", and the dispute does not expire before {}",
            expiry_at(due_by, now).to_rfc3339()
        ));
    }
    Ok(Some(flag))
}

/// The reason with a due-date flag appended.
fn flagged(reason: Option<String>, flag: Option<String>) -> Option<String> {
    match (reason, flag) {
        (Some(reason), Some(flag)) => Some(format!("{reason}; {flag}")),
        (reason, None) => reason,
        (None, flag) => flag,
    }
}

/// Evidence can change while the defense is being prepared: an open dispute not yet submitted.
fn evidence_open(dispute: &Dispute) -> Result<(), DomainError> {
    if !dispute.status.is_open() || dispute.status == Status::Submitted {
        return Err(DomainError::InvalidInput(format!(
            "the evidence of a {} dispute can no longer change",
            dispute.status
        )));
    }
    Ok(())
}

/// The queue a dispute is triaged into when nobody names one: the policy's, once its triage decided one,
/// else the reason category's.
fn default_queue(dispute: &Dispute) -> Queue {
    dispute
        .queue
        .unwrap_or_else(|| Queue::for_category(dispute.reason_code.category()))
}

/// Opens a new dispute: the first event of its log.
pub fn open(id: DisputeId, command: &Command, now: DateTime<Utc>) -> Result<Decision, DomainError> {
    let Action::Open(new) = &command.action else {
        return Err(DomainError::InvalidInput(
            "only an open command can create a dispute".into(),
        ));
    };
    let new = new.as_ref().clone().validated()?;
    let reason = clean_text("reason", command.reason.as_deref(), MAX_REASON_CHARS)?;
    let reason = flagged(reason, check_due_by(&command.actor, new.due_by, now)?);
    let timers = deadline_timers(new.due_by, now);
    // Linking asks the marketplace, which may be slow or down: a durable step, never part of this decision. A
    // dispute that arrives with its seller and the customer's email (an analyst's) has nothing to fill in.
    let needs_link = new.seller_id.is_none() || new.customer.email.is_none();
    let mut references = Vec::new();
    if let Some(order) = &new.order_reference {
        references.push(TaggedReference::new(ReferenceKind::OrderReference, order.clone()));
    }
    references.push(TaggedReference::new(
        ReferenceKind::PaymentReference,
        new.payment_reference.clone(),
    ));
    let link = StepRequest {
        kind: StepKind::LinkOrder,
        idempotency_key: format!("{id}:1:{}", StepKind::LinkOrder.as_str()),
        payload: Some(link_payload(&lookup_references(references))),
    };
    let event = DisputeEvent {
        dispute_id: id,
        version: 1,
        at: now,
        actor: command.actor.clone(),
        reason,
        change: Change::Opened { dispute: Box::new(new) },
    };
    Ok(Decision {
        events: vec![event],
        timers,
        steps: if needs_link { vec![link] } else { Vec::new() },
        triage: None,
        policy_action: None,
    })
}

/// What `command` means for `dispute` at `now`. Pure: the dispute is only read.
pub fn decide(dispute: &Dispute, command: &Command, now: DateTime<Utc>) -> Result<Decision, DomainError> {
    if let Action::RecordOutcome { won } = command.action {
        let received = Command {
            action: Action::ReceiveOutcome { won, stage: None },
            ..command.clone()
        };
        return decide(dispute, &received, now);
    }
    if command.actor.kind == ActorKind::Analyst
        && matches!(
            command.action,
            Action::ReceiveOutcome { .. } | Action::ProcessorUpdate { .. }
        )
    {
        return Err(DomainError::invalid(
            "only the processor reports its outcome or an update; a lead records an outcome by hand as an override",
        ));
    }
    if let Some(expected) = command.expected_version
        && expected != dispute.version
    {
        return Err(DomainError::VersionConflict {
            expected,
            actual: dispute.version,
        });
    }
    if let Some(decision) = decide_respond(dispute, command, now) {
        return decision;
    }
    let mut reason = clean_text("reason", command.reason.as_deref(), MAX_REASON_CHARS)?;
    let transition = |to: Status| -> Result<Change, DomainError> {
        if !transition_allowed(dispute.status, to, dispute.stage, dispute.stage) {
            return Err(DomainError::IllegalTransition {
                from: dispute.status,
                to,
            });
        }
        let queue = (to == Status::Triaged).then(|| default_queue(dispute));
        Ok(Change::Transitioned {
            from: dispute.status,
            to,
            manual: false,
            queue,
            stage: None,
            due_by: None,
        })
    };
    let step = |kind: StepKind| StepRequest {
        kind,
        idempotency_key: format!("{}:{}:{}", dispute.id, dispute.version + 1, kind.as_str()),
        payload: None,
    };
    let mut timers = Vec::new();
    let mut steps = Vec::new();
    let change = match &command.action {
        Action::Open(_) => {
            return Err(DomainError::InvalidInput(format!(
                "dispute {} already exists",
                dispute.id
            )));
        }
        Action::Triage { queue } => match transition(Status::Triaged)? {
            Change::Transitioned {
                from,
                to,
                manual,
                queue: default,
                stage,
                due_by,
            } => Change::Transitioned {
                from,
                to,
                manual,
                queue: queue.or(default),
                stage,
                due_by,
            },
            other => other,
        },
        Action::StartEvidenceGathering => transition(Status::EvidenceGathering)?,
        Action::Submit => {
            let change = transition(Status::Submitted)?;
            timers.push(TimerInstruction::CancelAll);
            timers.push(TimerInstruction::Set {
                kind: TimerKind::OutcomeCheck,
                due_at: now + Duration::days(OUTCOME_CHECK_DAYS),
            });
            steps.push(step(StepKind::SubmitEvidence));
            change
        }
        // Re-decided as `ReceiveOutcome` at the top of this function.
        Action::RecordOutcome { .. } => {
            return Err(DomainError::invalid(
                "an outcome is decided as the processor's (ReceiveOutcome)",
            ));
        }
        Action::Accept => {
            let change = transition(Status::Accepted)?;
            timers.push(TimerInstruction::CancelAll);
            if dispute.processor != Processor::Manual {
                steps.push(step(StepKind::AcceptAtProcessor));
            }
            change
        }
        Action::Expire | Action::Withdraw => {
            let to = if command.action == Action::Expire {
                Status::Expired
            } else {
                Status::Withdrawn
            };
            let change = transition(to)?;
            timers.push(TimerInstruction::CancelAll);
            change
        }
        Action::Resolve => {
            let change = transition(Status::Resolved)?;
            timers.push(TimerInstruction::CancelAll);
            // The customer's message is enqueued by the refund's success (engine effects), never beside it:
            // "we have refunded you" must not be sent before the refund is known to have happened.
            steps.push(step(StepKind::Refund));
            change
        }
        Action::Reopen { stage, due_by } => {
            let to = Status::EvidenceGathering;
            if !transition_allowed(dispute.status, to, dispute.stage, *stage) {
                return Err(DomainError::IllegalTransition {
                    from: dispute.status,
                    to,
                });
            }
            // The old cycle's due date has passed; keeping it would expire the new cycle at once.
            if due_by.is_none() {
                return Err(DomainError::invalid("reopening needs the new cycle's due date"));
            }
            reason = flagged(reason, check_due_by(&command.actor, *due_by, now)?);
            timers.push(TimerInstruction::CancelAll);
            timers.extend(deadline_timers(*due_by, now));
            Change::Transitioned {
                from: dispute.status,
                to,
                manual: false,
                queue: None,
                stage: Some(*stage),
                due_by: *due_by,
            }
        }
        Action::AdvanceStage { stage, due_by } => {
            if !dispute.status.is_open() || stage.rank() <= dispute.stage.rank() {
                return Err(DomainError::InvalidInput(format!(
                    "a {} dispute at stage {} cannot advance to {stage}",
                    dispute.status, dispute.stage
                )));
            }
            if due_by.is_some() && *due_by != dispute.due_by {
                reason = flagged(reason, check_due_by(&command.actor, *due_by, now)?);
                timers.push(TimerInstruction::CancelAll);
                timers.extend(deadline_timers(*due_by, now));
            }
            Change::StageAdvanced {
                from: dispute.stage,
                to: *stage,
                due_by: *due_by,
            }
        }
        Action::ChangeDueBy { due_by } => {
            if *due_by == dispute.due_by {
                return Err(DomainError::InvalidInput("due by is unchanged".into()));
            }
            if !dispute.status.is_open() {
                return Err(DomainError::InvalidInput(format!(
                    "a {} dispute has no deadline",
                    dispute.status
                )));
            }
            reason = flagged(reason, check_due_by(&command.actor, *due_by, now)?);
            // After submission the due date drives no timer, and the outcome check must survive the change.
            if dispute.status != Status::Submitted {
                timers.push(TimerInstruction::CancelAll);
                timers.extend(deadline_timers(*due_by, now));
            }
            Change::DueByChanged {
                from: dispute.due_by,
                to: *due_by,
            }
        }
        Action::Assign { assignee } => {
            let assignee = clean_text("assignee", assignee.as_deref(), 200)?;
            if assignee == dispute.assignee {
                return Err(DomainError::InvalidInput(
                    "the dispute already has that assignee".into(),
                ));
            }
            if assignee.is_some() {
                steps.push(step(StepKind::NotifyAssignee));
            }
            Change::Assigned {
                from: dispute.assignee.clone(),
                to: assignee,
            }
        }
        Action::AddNote { note } => {
            let note = clean_text("note", Some(note), MAX_NOTE_CHARS)?.unwrap_or_default();
            Change::NoteAdded { note }
        }
        Action::RecordReminder { hours_before } => {
            if !dispute.status.is_open() || dispute.status == Status::Submitted || dispute.due_by.is_none() {
                return Err(DomainError::InvalidInput(format!(
                    "a {} dispute awaits no deadline to be reminded of",
                    dispute.status
                )));
            }
            steps.push(step(StepKind::NotifyAssignee));
            Change::ReminderRecorded {
                hours_before: *hours_before,
            }
        }
        Action::EscalateOverdueOutcome => {
            if dispute.status != Status::Submitted {
                return Err(DomainError::InvalidInput(format!(
                    "a {} dispute awaits no outcome",
                    dispute.status
                )));
            }
            steps.push(step(StepKind::EscalateToLead));
            Change::OutcomeEscalated
        }
        Action::Transition {
            to,
            expected_version,
            stage,
            due_by,
        } => {
            if *expected_version != dispute.version {
                return Err(DomainError::VersionConflict {
                    expected: *expected_version,
                    actual: dispute.version,
                });
            }
            if reason.is_none() {
                return Err(DomainError::InvalidInput("a manual transition needs a reason".into()));
            }
            if is_outcome(*to) {
                return Err(DomainError::InvalidInput(format!(
                    "{to} is an outcome: outcomes come from the processor, and recording one by hand is a lead's \
                     override with a reason"
                )));
            }
            let stage_to = stage.unwrap_or(dispute.stage);
            if !transition_allowed(dispute.status, *to, dispute.stage, stage_to) {
                return Err(DomainError::IllegalTransition {
                    from: dispute.status,
                    to: *to,
                });
            }
            let reopening = stage_to != dispute.stage;
            if reopening {
                // The old cycle's due date has passed; keeping it would expire the new cycle at once.
                let Some(due) = due_by else {
                    return Err(DomainError::invalid(format!(
                        "reopening at {stage_to} needs the new cycle's due date (dueBy)"
                    )));
                };
                reason = flagged(reason, check_due_by(&command.actor, Some(*due), now)?);
                timers.push(TimerInstruction::CancelAll);
                timers.extend(deadline_timers(Some(*due), now));
            } else if due_by.is_some() {
                return Err(DomainError::invalid(
                    "a due date goes with a later stage only; change the due date on its own instead",
                ));
            } else if !to.is_open() || *to == Status::Submitted {
                timers.push(TimerInstruction::CancelAll);
            }
            let queue = (*to == Status::Triaged).then(|| default_queue(dispute));
            Change::Transitioned {
                from: dispute.status,
                to: *to,
                manual: true,
                queue,
                stage: reopening.then_some(stage_to),
                due_by: if reopening { *due_by } else { None },
            }
        }
        Action::ProcessorUpdate { status, stage, due_by } => {
            let to = status.unwrap_or(dispute.status);
            let stage_to = stage.unwrap_or(dispute.stage);
            if stage_to != dispute.stage && stage_to.rank() <= dispute.stage.rank() {
                return Err(DomainError::invalid(format!(
                    "stage {stage_to} does not come after {}; a stage never moves backwards",
                    dispute.stage
                )));
            }
            if !processor_transition_allowed(dispute.status, to, dispute.stage, stage_to) {
                return Err(DomainError::IllegalTransition {
                    from: dispute.status,
                    to,
                });
            }
            let reopening = !dispute.status.is_open() && to.is_open();
            let due_to = if reopening {
                *due_by
            } else if to.is_open() {
                due_by.or(dispute.due_by)
            } else {
                dispute.due_by
            };
            if to == dispute.status && stage_to == dispute.stage && due_to == dispute.due_by {
                return Err(DomainError::invalid(format!(
                    "the processor's update changes nothing on a {} dispute",
                    dispute.status
                )));
            }
            if !to.is_open() {
                timers.push(TimerInstruction::CancelAll);
            } else if reopening || due_to != dispute.due_by {
                reason = flagged(reason, check_due_by(&command.actor, due_to, now)?);
                // A submitted dispute awaits its outcome, not a deadline: its outcome check stays.
                if to != Status::Submitted {
                    timers.push(TimerInstruction::CancelAll);
                    timers.extend(deadline_timers(due_to, now));
                }
            }
            Change::ProcessorUpdated {
                from: dispute.status,
                to,
                stage_from: dispute.stage,
                stage_to,
                due_by_from: dispute.due_by,
                due_by_to: due_to,
            }
        }
        Action::ReceiveOutcome { won, stage } => {
            let to = if *won { Status::Won } else { Status::Lost };
            let stage_to = stage.unwrap_or(dispute.stage);
            if !processor_transition_allowed(dispute.status, to, dispute.stage, stage_to) || to == dispute.status {
                return Err(DomainError::IllegalTransition {
                    from: dispute.status,
                    to,
                });
            }
            timers.push(TimerInstruction::CancelAll);
            steps.push(step(StepKind::SellerMessage));
            Change::OutcomeReceived {
                from: dispute.status,
                to,
                stage: (stage_to != dispute.stage).then_some(stage_to),
            }
        }
        Action::OverrideOutcome { to, expected_version } => {
            if *expected_version != dispute.version {
                return Err(DomainError::VersionConflict {
                    expected: *expected_version,
                    actual: dispute.version,
                });
            }
            if reason.is_none() {
                return Err(DomainError::invalid("overriding an outcome needs a reason"));
            }
            if !is_outcome(*to) {
                return Err(DomainError::invalid(format!(
                    "{to} is not an outcome (won, lost or expired)"
                )));
            }
            if !processor_transition_allowed(dispute.status, *to, dispute.stage, dispute.stage) || *to == dispute.status
            {
                return Err(DomainError::IllegalTransition {
                    from: dispute.status,
                    to: *to,
                });
            }
            timers.push(TimerInstruction::CancelAll);
            if *to != Status::Expired {
                steps.push(step(StepKind::SellerMessage));
            }
            Change::OutcomeOverridden {
                from: dispute.status,
                to: *to,
            }
        }
        Action::SubmitDefense { .. }
        | Action::Refund { .. }
        | Action::SendMessage { .. }
        | Action::RecordMessageSent { .. } => {
            return Err(DomainError::invalid("decided by decide_respond"));
        }
        Action::RecordActByPassed => {
            let due_by = match dispute.due_by {
                Some(due_by) if dispute.status.is_open() && dispute.status != Status::Submitted => due_by,
                _ => {
                    return Err(DomainError::invalid(format!(
                        "a {} dispute awaits no act-by time",
                        dispute.status
                    )));
                }
            };
            steps.push(step(StepKind::NotifyAssignee));
            // The deadline at the processor's due date stays; it is set again because a dispute opened before
            // act-by timers existed had its deadline at the act-by time, and that is what fired. A due date
            // already past keeps the grace window it got when it was set.
            if due_by > now {
                timers.push(TimerInstruction::CancelAll);
                timers.push(TimerInstruction::Set {
                    kind: TimerKind::Deadline,
                    due_at: due_by,
                });
            }
            Change::ActByPassed { due_by }
        }
        Action::RecordSellerNoAnswer { due_at } => {
            if !dispute.status.is_open() || dispute.status == Status::Submitted || dispute.seller_id.is_none() {
                return Err(DomainError::invalid(format!(
                    "a {} dispute awaits no answer from a seller",
                    dispute.status
                )));
            }
            Change::SellerDidNotAnswer { due_at: *due_at }
        }
        Action::AddEvidence { items, source } => {
            evidence_open(dispute)?;
            if items.is_empty() {
                return Err(DomainError::invalid("no evidence to add"));
            }
            Change::EvidenceAdded {
                items: items.clone(),
                source: *source,
            }
        }
        Action::RemoveEvidence { item } => {
            evidence_open(dispute)?;
            Change::EvidenceRemoved { item: *item }
        }
        Action::LinkOrder {
            order_reference,
            source,
            seller_id,
            customer,
            seller_task,
            profile,
        } => {
            refuse_late_link(dispute, &command.actor)?;
            let order_reference = clean_reference("order reference", order_reference)?;
            let seller_id = clean_reference("seller id", seller_id)?;
            let source = clean_text("source", Some(source), 100)?.unwrap_or_default();
            if dispute.order_reference.as_deref() == Some(order_reference.as_str())
                && dispute.seller_id.as_deref() == Some(seller_id.as_str())
                && dispute.customer == *customer
            {
                return Err(DomainError::invalid(format!(
                    "the dispute is already linked to order {order_reference}"
                )));
            }
            if let Some(task) = seller_task {
                // A reminder before the task's own deadline, and the deadline itself, as durable timers; the
                // engine drops the reminder once the seller answered.
                if let Some(remind_at) = task.reminder_at(now) {
                    timers.push(TimerInstruction::Set {
                        kind: TimerKind::SellerReminder,
                        due_at: remind_at,
                    });
                }
                timers.push(TimerInstruction::Set {
                    kind: TimerKind::SellerDue,
                    due_at: task.due_at.max(now),
                });
                // The seller hears what is needed and by when, through the seller channel's message step.
                steps.push(StepRequest {
                    kind: StepKind::SellerMessage,
                    idempotency_key: format!(
                        "{}:{}:{}",
                        dispute.id,
                        dispute.version + 1,
                        StepKind::SellerMessage.as_str()
                    ),
                    payload: Some(serde_json::json!({
                        "template": MessageTemplate::SellerRequestEvidence.as_str(),
                        "text": task.request_text(),
                        "locale": Locale::En.as_str(),
                    })),
                });
            }
            let profile = profile.as_ref().map(clean_profile).transpose()?;
            Change::OrderLinked {
                order_reference,
                source,
                seller_id,
                customer: customer.clone(),
                seller_task: *seller_task,
                profile,
            }
        }
        Action::RecordOrderNotFound { source, tried } => {
            refuse_late_link(dispute, &command.actor)?;
            let source = clean_text("source", Some(source), 100)?.unwrap_or_default();
            let mut tried = tried.clone();
            tried.sort();
            tried.dedup();
            Change::OrderNotFound { source, tried }
        }
        Action::RecordDocument { document } => {
            // A defense is prepared while the dispute can still be answered; a case file may be exported at any
            // time, also after the outcome.
            if document.kind == DocumentKind::Defense
                && (!dispute.status.is_open() || dispute.status == Status::Submitted)
            {
                return Err(DomainError::InvalidInput(format!(
                    "a {} dispute can no longer be answered: no defense document is generated for it",
                    dispute.status
                )));
            }
            if document.version < 1 {
                return Err(DomainError::invalid("a document's version starts at 1"));
            }
            Change::DocumentGenerated {
                document: document.clone(),
            }
        }
    };
    let event = DisputeEvent {
        dispute_id: dispute.id,
        version: dispute.version + 1,
        at: now,
        actor: command.actor.clone(),
        reason,
        change,
    };
    Ok(Decision {
        events: vec![event],
        timers,
        steps,
        triage: None,
        policy_action: None,
    })
}

/// The analyst's actions that reach the outside world (see [`crate::respond`]); `None` for every other
/// action. Called by [`decide`] after the actor and version checks.
fn decide_respond(dispute: &Dispute, command: &Command, now: DateTime<Utc>) -> Option<Result<Decision, DomainError>> {
    let result = match &command.action {
        Action::SubmitDefense {
            missing,
            override_reason,
        } => submit_defense(dispute, command, missing, override_reason.as_deref(), now),
        Action::Refund {
            request_id,
            amount,
            prior,
            resolve,
        } => refund(dispute, command, request_id, *amount, prior, *resolve, now),
        Action::SendMessage { template, text, locale } => {
            send_message(dispute, command, *template, text.as_deref(), *locale, now)
        }
        Action::RecordMessageSent {
            channel,
            template,
            message_id,
        } => {
            if command.actor.kind == ActorKind::Analyst {
                return Some(Err(DomainError::invalid(
                    "only the step that sent a message records it as sent",
                )));
            }
            Ok(single(
                dispute,
                command,
                None,
                Change::MessageSent {
                    channel: *channel,
                    template: template.clone(),
                    message_id: message_id.clone(),
                },
                now,
            ))
        }
        _ => return None,
    };
    Some(result)
}

/// One event on `dispute` by the command's actor.
fn single(
    dispute: &Dispute,
    command: &Command,
    reason: Option<String>,
    change: Change,
    now: DateTime<Utc>,
) -> Decision {
    Decision {
        events: vec![DisputeEvent {
            dispute_id: dispute.id,
            version: dispute.version + 1,
            at: now,
            actor: command.actor.clone(),
            reason,
            change,
        }],
        timers: Vec::new(),
        steps: Vec::new(),
        triage: None,
        policy_action: None,
    }
}

/// Walks a dispute forward through the analysts' own steps (triage, then evidence gathering when `gather`),
/// as events by `actor`, so that an action on a dispute that arrived by webhook (notified) needs no manual
/// transitions first. Returns the dispute as the walk leaves it.
fn walk(
    dispute: &Dispute,
    actor: &Actor,
    gather: bool,
    now: DateTime<Utc>,
) -> Result<(Dispute, Decision), DomainError> {
    let mut current = dispute.clone();
    let mut decision = Decision::default();
    loop {
        let action = match current.status {
            Status::Notified => Action::Triage { queue: None },
            Status::Triaged if gather => Action::StartEvidenceGathering,
            _ => return Ok((current, decision)),
        };
        let next = decide(&current, &Command::new(actor.clone(), action), now)?;
        for event in &next.events {
            apply(&mut current, event);
        }
        decision.then(next);
    }
}

fn submit_defense(
    dispute: &Dispute,
    command: &Command,
    missing: &[EvidenceKind],
    override_reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Decision, DomainError> {
    if !matches!(
        dispute.status,
        Status::Notified | Status::Triaged | Status::EvidenceGathering
    ) {
        return Err(DomainError::IllegalTransition {
            from: dispute.status,
            to: Status::Submitted,
        });
    }
    respond::check_defense(missing, override_reason)?;
    let overriding = !missing.is_empty();
    let reason = if overriding {
        clean_text("override reason", override_reason, MAX_REASON_CHARS)?
            .map(|r| format!("submitted without required evidence by a lead's override: {r}"))
    } else {
        clean_text("reason", command.reason.as_deref(), MAX_REASON_CHARS)?
    };
    let (ready, mut decision) = walk(dispute, &command.actor, true, now)?;
    let mut last = single(
        &ready,
        command,
        reason,
        Change::DefenseSubmitted {
            from: ready.status,
            missing_overridden: if overriding { missing.to_vec() } else { Vec::new() },
        },
        now,
    );
    last.timers = vec![
        TimerInstruction::CancelAll,
        TimerInstruction::Set {
            kind: TimerKind::OutcomeCheck,
            due_at: now + Duration::days(OUTCOME_CHECK_DAYS),
        },
    ];
    // A manual dispute has no processor Verdict can reach: the analyst sends the defense and records it, as
    // with an acceptance; a step there would wait for an adapter that can never exist.
    if ready.processor != Processor::Manual {
        last.steps = vec![StepRequest {
            kind: StepKind::SubmitEvidence,
            idempotency_key: format!(
                "{}:{}:{}",
                ready.id,
                ready.version + 1,
                StepKind::SubmitEvidence.as_str()
            ),
            payload: None,
        }];
    }
    decision.then(last);
    Ok(decision)
}

/// The idempotency key of refund request `request_id` on `dispute`: the processor sees it, so one request is
/// one refund whatever happens to the step.
pub fn refund_step_key(dispute: DisputeId, request_id: &str) -> String {
    format!("{dispute}:{}:{request_id}", StepKind::Refund.as_str())
}

fn refund(
    dispute: &Dispute,
    command: &Command,
    request_id: &str,
    amount: Money,
    prior: &[RefundRecord],
    resolve: bool,
    now: DateTime<Utc>,
) -> Result<Decision, DomainError> {
    if command.expected_version.is_none() {
        return Err(DomainError::invalid(
            "a refund needs the version the caller saw (expectedVersion)",
        ));
    }
    let request_id = respond::check_refund(dispute.stage, dispute.amount, prior, request_id, amount)?;
    let reason = clean_text("reason", command.reason.as_deref(), MAX_REASON_CHARS)?;
    let (mut current, mut decision) = if resolve {
        let (triaged, mut walked) = walk(dispute, &command.actor, false, now)?;
        if !transition_allowed(triaged.status, Status::Resolved, triaged.stage, triaged.stage) {
            return Err(DomainError::IllegalTransition {
                from: dispute.status,
                to: Status::Resolved,
            });
        }
        let mut resolved = single(
            &triaged,
            command,
            reason.clone(),
            Change::Transitioned {
                from: triaged.status,
                to: Status::Resolved,
                manual: false,
                queue: None,
                stage: None,
                due_by: None,
            },
            now,
        );
        resolved.timers.push(TimerInstruction::CancelAll);
        let mut after = triaged.clone();
        for event in &resolved.events {
            apply(&mut after, event);
        }
        walked.then(resolved);
        (after, walked)
    } else {
        if !dispute.status.is_open() {
            return Err(DomainError::invalid(format!(
                "a {} dispute is closed; a refund settles an open inquiry or alert",
                dispute.status
            )));
        }
        (dispute.clone(), Decision::default())
    };
    let mut requested = single(
        &current,
        command,
        reason,
        Change::RefundRequested {
            request_id: request_id.clone(),
            amount,
        },
        now,
    );
    requested.steps.push(StepRequest {
        kind: StepKind::Refund,
        idempotency_key: refund_step_key(dispute.id, &request_id),
        payload: Some(serde_json::json!({
            "request_id": request_id,
            "amount": { "minor_units": amount.minor_units(), "currency": amount.currency().code() },
            "record_message": true,
        })),
    });
    for event in &requested.events {
        apply(&mut current, event);
    }
    decision.then(requested);
    Ok(decision)
}

fn send_message(
    dispute: &Dispute,
    command: &Command,
    template: MessageTemplate,
    text: Option<&str>,
    locale: Option<Locale>,
    now: DateTime<Utc>,
) -> Result<Decision, DomainError> {
    let text = clean_text("text", text, respond::MAX_MESSAGE_TEXT_CHARS)?;
    let reason = clean_text("reason", command.reason.as_deref(), MAX_REASON_CHARS)?;
    let channel = template.channel();
    let (kind, locale) = match channel {
        MessageChannel::Customer => {
            if dispute.customer.email.is_none() {
                return Err(DomainError::invalid(
                    "the dispute's customer has no email address: link the dispute to its order first",
                ));
            }
            (StepKind::CustomerMessage, locale.unwrap_or(dispute.customer.locale))
        }
        MessageChannel::Seller => {
            if dispute.seller_id.is_none() {
                return Err(DomainError::invalid(
                    "the dispute has no seller: link the dispute to its order first",
                ));
            }
            (StepKind::SellerMessage, locale.unwrap_or(Locale::En))
        }
    };
    let mut decision = single(
        dispute,
        command,
        reason,
        Change::MessageRequested {
            channel,
            template,
            locale,
            with_text: text.is_some(),
        },
        now,
    );
    decision.steps.push(StepRequest {
        kind,
        idempotency_key: format!("{}:{}:{}", dispute.id, dispute.version + 1, kind.as_str()),
        payload: Some(serde_json::json!({
            "template": template.as_str(),
            "text": text,
            "locale": locale.as_str(),
            "record_sent": true,
        })),
    });
    Ok(decision)
}

/// The link step's result arrives late when it was retried (the marketplace was down): a dispute that has its
/// seller and the customer's email by then (an analyst linked it by hand) keeps them.
fn refuse_late_link(dispute: &Dispute, actor: &Actor) -> Result<(), DomainError> {
    if actor.kind == ActorKind::Step && dispute.seller_id.is_some() && dispute.customer.email.is_some() {
        return Err(DomainError::invalid(
            "the dispute already has its seller and customer; the link step's result no longer applies",
        ));
    }
    Ok(())
}

fn clean_reference(field: &str, value: &str) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 255 || value.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!(
            "{field} must be 1 to 255 printable characters"
        )));
    }
    Ok(value.to_owned())
}

/// An order profile as a link states it: each value trimmed, a blank one dropped, at most 255 printable
/// characters (they become grouping keys).
fn clean_profile(profile: &OrderProfile) -> Result<OrderProfile, DomainError> {
    let clean = |field: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| clean_reference(field, v))
            .transpose()
    };
    Ok(OrderProfile {
        device_model: clean("device model", &profile.device_model)?,
        grade: clean("grade", &profile.grade)?,
        country: clean("country", &profile.country)?,
    })
}

/// Builds a dispute from its opening event; `None` for any other event.
pub fn opened(event: &DisputeEvent) -> Option<Dispute> {
    let Change::Opened { dispute: new } = &event.change else {
        return None;
    };
    let new = new.as_ref().clone();
    Some(Dispute {
        id: event.dispute_id,
        processor: new.processor,
        processor_dispute_id: new.processor_dispute_id,
        payment_reference: new.payment_reference,
        order_reference: new.order_reference,
        seller_id: new.seller_id,
        customer: new.customer,
        amount: new.amount,
        reason_code: new.reason_code,
        reason_code_raw: new.reason_code_raw,
        stage: new.stage,
        status: Status::Notified,
        due_by: new.due_by,
        opened_at: new.opened_at,
        queue: None,
        priority: crate::policy::DEFAULT_PRIORITY,
        assignee: None,
        version: event.version,
        created_at: event.at,
        updated_at: event.at,
    })
}

/// Folds one event (after the opening one) into the projection.
pub fn apply(dispute: &mut Dispute, event: &DisputeEvent) {
    match &event.change {
        Change::Opened { .. } => {
            if let Some(fresh) = opened(event) {
                *dispute = fresh;
            }
        }
        Change::Transitioned {
            to,
            queue,
            stage,
            due_by,
            ..
        } => {
            dispute.status = *to;
            if let Some(queue) = queue {
                dispute.queue = Some(*queue);
            }
            if let Some(stage) = stage {
                dispute.stage = *stage;
            }
            if due_by.is_some() {
                dispute.due_by = *due_by;
            }
        }
        Change::StageAdvanced { to, due_by, .. } => {
            dispute.stage = *to;
            if due_by.is_some() {
                dispute.due_by = *due_by;
            }
        }
        Change::DueByChanged { to, .. } => dispute.due_by = *to,
        Change::Assigned { to, .. } => dispute.assignee.clone_from(to),
        Change::ProcessorUpdated {
            to,
            stage_to,
            due_by_to,
            ..
        } => {
            dispute.status = *to;
            dispute.stage = *stage_to;
            dispute.due_by = *due_by_to;
        }
        Change::OutcomeReceived { to, stage, .. } => {
            dispute.status = *to;
            if let Some(stage) = stage {
                dispute.stage = *stage;
            }
        }
        Change::OutcomeOverridden { to, .. } => dispute.status = *to,
        Change::DefenseSubmitted { .. } => dispute.status = Status::Submitted,
        Change::RefundRequested { .. } | Change::MessageRequested { .. } | Change::MessageSent { .. } => {}
        Change::OrderLinked {
            order_reference,
            seller_id,
            customer,
            ..
        } => {
            dispute.order_reference = Some(order_reference.clone());
            dispute.seller_id = Some(seller_id.clone());
            dispute.customer = customer.clone();
        }
        Change::NoteAdded { .. }
        | Change::ReminderRecorded { .. }
        | Change::OutcomeEscalated
        | Change::ActByPassed { .. }
        | Change::SellerDidNotAnswer { .. }
        // Evidence lives in its own table; the projection only counts the version.
        | Change::EvidenceAdded { .. }
        | Change::EvidenceRemoved { .. }
        | Change::OrderNotFound { .. }
        // Documents live in their own table; the projection only counts the version.
        | Change::DocumentGenerated { .. } => {}
        Change::TriageDecided { triage, .. } => {
            dispute.queue = Some(triage.queue);
            dispute.priority = triage.priority;
        }
    }
    dispute.version = event.version;
    dispute.updated_at = event.at;
}

/// Rebuilds a dispute from its whole log; `None` if the log does not start with an opening event.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a DisputeEvent>) -> Option<Dispute> {
    let mut events = events.into_iter();
    let mut dispute = opened(events.next()?)?;
    for event in events {
        apply(&mut dispute, event);
    }
    Some(dispute)
}

#[cfg(test)]
mod respond_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod evidence_tests;
