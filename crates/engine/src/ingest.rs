//! Processor notifications in, dispute commands out: the inbox-then-apply path behind every webhook.
//!
//! [`Engine::receive`] first stores every notification of a delivery in the inbox, in one transaction (so the
//! HTTP 2xx is only sent for what is durable), then applies each one to its dispute. The webhooks answer once
//! the delivery is stored and apply it right after ([`Engine::receive_then_apply`]): up to
//! [`APPLIES_AFTER_ANSWER`] at once per replica, beyond which a delivery is applied before its answer, so a
//! flood slows its senders instead of piling up in memory. A large batch (Adyen) is always applied after the
//! answer ([`Engine::receive_later`]). The rows are claimed under a short lease
//! ([`INBOX_LEASE`]) renewed while they are applied, and every write of an outcome is fenced by the lease
//! token: a replica that died leaves rows free again within one lease, and of two appliers only the current
//! holder commits. A processor's redelivery of a row still pending takes it over and applies it at once.
//!
//! Applying is goal-directed: a notification says where the dispute should end up ("won", "at
//! pre-arbitration"), and the engine walks the state machine there one allowed transition at a time, as the
//! processor. That makes applying idempotent, so a row left `pending` by a crash can simply be applied again
//! by [`Engine::apply_pending`]. Whether it is older than what the dispute already reflects is decided inside
//! the transaction that commits it.
//!
//! What the state machine refuses is never dropped: the row is marked `flagged` with the domain's reason,
//! tied to the dispute, and counted.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use tracing::{Instrument as _, instrument};
use uuid::Uuid;
use verdict_domain::{
    Action, Actor, ActorKind, CardNetwork, Command, Currency, Customer, Decision, Dispute, DisputeId, DomainError,
    Locale, Money, NewDispute, ReasonCode, Stage, Status, apply, decide, open, replay,
};
use verdict_ingest::{Notification, NotificationKind, Parsed};
use verdict_store::{InboxFinish, InboxInsert, InboxLease, InboxStatus, NewNotification, StoreError};

use crate::{Engine, EngineError};

/// How long a claim on pending notifications lasts unless renewed. Appliers renew every
/// [`INBOX_LEASE_RENEWAL`] while they work, so a lease only lapses when its holder stopped: what a crashed
/// replica stored is free for the sweep of any replica (at start-up and every sweep interval) within this.
pub const INBOX_LEASE: Duration = Duration::seconds(20);
/// How often an applier extends its lease; well inside [`INBOX_LEASE`] so that one slow renewal is harmless.
pub const INBOX_LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Attempts (transient failures: database down, repeated conflicts) before a row is marked `failed`.
pub const MAX_APPLY_ATTEMPTS: i32 = 10;
/// How long a row whose apply failed waits before the sweep tries it again.
pub const RETRY_BACKOFF: Duration = Duration::seconds(60);
/// Deliveries a replica applies after answering, at most, at one time (see [`Engine::receive_then_apply`]).
pub const APPLIES_AFTER_ANSWER: usize = 64;
/// More steps than any walk needs (the processor's word is one event, a note another); a guard against a logic loop.
const MAX_STEPS: usize = 8;
/// Plans re-made from fresh state after losing a race for the dispute (analysts, other deliveries).
const MAX_PLAN_ATTEMPTS: usize = 5;

/// The endpoint a notification came through; the inbox key is (source, event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Stripe,
    Adyen,
    Paypal,
    Braintree,
    /// Verdict's own pre-dispute alert feed (`ALERTS.md`); the processor is named inside each alert.
    Alerts,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Stripe,
        Source::Adyen,
        Source::Paypal,
        Source::Braintree,
        Source::Alerts,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Stripe => "stripe",
            Source::Adyen => "adyen",
            Source::Paypal => "paypal",
            Source::Braintree => "braintree",
            Source::Alerts => "alerts",
        }
    }
}

impl FromStr for Source {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                DomainError::InvalidInput(format!(
                    "unknown source {s:?} (stripe, adyen, paypal, braintree, alerts)"
                ))
            })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What applying one notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The dispute now reflects the notification; `note` lists what was done ("no change" included).
    Applied { dispute_id: DisputeId, note: String },
    /// The state machine refused it; kept and shown on the dispute (if there is one).
    Flagged {
        dispute_id: Option<DisputeId>,
        reason: String,
    },
    /// Older than what the dispute already reflects, or not a type we act on.
    Ignored {
        dispute_id: Option<DisputeId>,
        reason: String,
    },
    /// A transient failure; the row stays pending (or `failed` after [`MAX_APPLY_ATTEMPTS`]).
    Retry { error: String, status: InboxStatus },
}

/// What one delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Newly stored rows (dispute notifications and ignored types alike).
    pub stored: usize,
    /// Event ids already in the inbox: acknowledged, nothing changed.
    pub duplicates: usize,
    /// Event ids already in the inbox but still pending (stored before a crash, or whose apply failed): taken
    /// over and applied by this delivery.
    pub retaken: usize,
    /// Stored as `ignored` (not dispute events).
    pub ignored: usize,
    pub outcomes: Vec<(Uuid, ApplyOutcome)>,
}

/// Counters since start-up, for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct IngestCounters {
    stored: AtomicU64,
    duplicates: AtomicU64,
    ignored: AtomicU64,
    applied: AtomicU64,
    flagged: AtomicU64,
    retried: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub stored: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub applied: u64,
    /// Notifications that contradicted a dispute's state machine.
    pub flagged: u64,
    /// Transient apply failures (each left a row pending).
    pub retried: u64,
}

/// `verdict_notifications_total{processor, outcome}` for /metrics: stored, duplicate, ignored, applied,
/// flagged, retried.
fn count_notifications(source: Source, outcome: &'static str, n: usize) {
    metrics::counter!("verdict_notifications_total", "processor" => source.as_str(), "outcome" => outcome)
        .increment(n as u64);
}

impl IngestCounters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IngestStats {
        IngestStats {
            stored: self.stored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            flagged: self.flagged.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

/// Where a notification wants its dispute to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Open (or still open) at least at `stage`, with the processor's deadline. A closed won/lost dispute
    /// reopens when the stage is a second cycle; anything else closed is a contradiction.
    AtStage {
        stage: Stage,
        due_by: Option<DateTime<Utc>>,
    },
    /// Decided for or against us, at `stage` or later when the processor names a later stage.
    Outcome {
        won: bool,
        stage: Option<Stage>,
    },
    Closed(Status),
    /// Worth keeping in the history, no change of status.
    Record,
}

fn goal(n: &Notification) -> Goal {
    use NotificationKind::*;
    let at = |default: Stage| Goal::AtStage {
        stage: n.stage.unwrap_or(default),
        due_by: n.due_by,
    };
    match n.kind {
        Inquiry => at(Stage::Inquiry),
        EarlyFraudWarning | PreDisputeAlert => at(Stage::PreDispute),
        ChargebackOpened => at(Stage::Chargeback),
        // Evidence is due at whatever stage the processor says; a stage is never moved backwards.
        EvidenceRequired => at(Stage::Chargeback),
        PreArbitrationOpened => at(Stage::PreArbitration),
        Won | Reversed => Goal::Outcome {
            won: true,
            stage: n.stage,
        },
        Lost => Goal::Outcome {
            won: false,
            stage: n.stage,
        },
        PreArbitrationWon => Goal::Outcome {
            won: true,
            stage: Some(n.stage.unwrap_or(Stage::PreArbitration)),
        },
        PreArbitrationLost => Goal::Outcome {
            won: false,
            stage: Some(n.stage.unwrap_or(Stage::PreArbitration)),
        },
        Accepted => Goal::Closed(Status::Accepted),
        Expired => Goal::Closed(Status::Expired),
        Withdrawn => Goal::Closed(Status::Withdrawn),
        UnderReview | FundsWithdrawn | FundsReinstated | InformationOnly => Goal::Record,
    }
}

/// The stage a dispute first seen through `n` is opened at.
fn opening_stage(n: &Notification) -> Stage {
    match goal(n) {
        Goal::AtStage { stage, .. } => stage,
        Goal::Outcome { stage, .. } => stage.unwrap_or(Stage::Chargeback),
        Goal::Closed(_) | Goal::Record => n.stage.unwrap_or(Stage::Chargeback),
    }
}

/// The next command that moves `d` towards `goal`, or `None` when it is there.
///
/// The processor says where the dispute is, and the dispute goes there in one event that says so: an
/// `outcome_received` for won or lost, a `processor_update` for anything else it reports (accepted, expired,
/// withdrawn, a later stage, a new due date, a second cycle). No intermediate step (triaged, evidence
/// gathering, submitted) is invented on the processor's behalf, and nothing asks the processor to do what it
/// reports as done.
///
/// Where the dispute cannot get there (a lost dispute reported won, an accepted one reported lost), the
/// command is still returned: the domain refuses it with `IllegalTransition`, and that refusal, in the
/// domain's words, is what the notification is flagged with.
fn next_action(d: &Dispute, goal: Goal, recorded: bool, note: &str) -> Option<Action> {
    match goal {
        Goal::AtStage { stage, due_by } => {
            if !d.status.is_open() {
                // Second cycle (won/lost -> pre-arbitration), or a contradiction that the domain names. The new
                // cycle takes the processor's due date, or none: the old cycle's date does not apply to it.
                return Some(Action::ProcessorUpdate {
                    status: Some(Status::EvidenceGathering),
                    stage: Some(stage),
                    due_by,
                });
            }
            let later = (stage.rank() > d.stage.rank()).then_some(stage);
            let moved = due_by.filter(|due| Some(*due) != d.due_by);
            (later.is_some() || moved.is_some()).then_some(Action::ProcessorUpdate {
                status: None,
                stage: later,
                due_by: moved,
            })
        }
        Goal::Outcome { won, stage } => {
            let later = stage.filter(|s| s.rank() > d.stage.rank());
            // Already decided that way: accepting or letting a dispute expire loses it, a withdrawal wins it.
            let there = match d.status {
                Status::Won | Status::Withdrawn => won,
                Status::Lost | Status::Accepted | Status::Expired => !won,
                _ => false,
            };
            if there && later.is_none() {
                return None;
            }
            Some(Action::ReceiveOutcome { won, stage: later })
        }
        Goal::Closed(to) => (d.status != to).then_some(Action::ProcessorUpdate {
            status: Some(to),
            stage: None,
            due_by: None,
        }),
        Goal::Record => (!recorded).then(|| Action::AddNote { note: note.to_owned() }),
    }
}

fn action_label(action: &Action) -> String {
    match action {
        Action::Open(_) => "open".into(),
        Action::Triage { .. } => "triage".into(),
        Action::StartEvidenceGathering => "start evidence gathering".into(),
        Action::Submit => "submit".into(),
        Action::RecordOutcome { won: true } => "won".into(),
        Action::RecordOutcome { won: false } => "lost".into(),
        Action::Accept => "accept".into(),
        Action::Expire => "expire".into(),
        Action::Withdraw => "withdraw".into(),
        Action::Resolve => "resolve".into(),
        Action::Reopen { stage, .. } => format!("reopen at {stage}"),
        Action::AdvanceStage { stage, .. } => format!("advance to {stage}"),
        Action::ChangeDueBy { .. } => "change due by".into(),
        Action::Assign { .. } => "assign".into(),
        Action::AddNote { .. } => "note".into(),
        Action::RecordReminder { hours_before } => format!("reminder {hours_before}h before the deadline"),
        Action::EscalateOverdueOutcome => "escalate overdue outcome".into(),
        Action::LinkOrder { .. } => "link order".into(),
        Action::RecordOrderNotFound { .. } => "order not found".into(),
        Action::Transition { to, .. } => format!("move to {to}"),
        Action::ProcessorUpdate { status, stage, due_by } => {
            let mut parts = Vec::new();
            if let Some(status) = status {
                parts.push(format!("status {status}"));
            }
            if let Some(stage) = stage {
                parts.push(format!("stage {stage}"));
            }
            if let Some(due_by) = due_by {
                parts.push(format!("due by {}", due_by.to_rfc3339()));
            }
            format!("processor update ({})", parts.join(", "))
        }
        Action::ReceiveOutcome { won, stage } => format!(
            "outcome {}{}",
            if *won { "won" } else { "lost" },
            stage.map(|s| format!(" at {s}")).unwrap_or_default()
        ),
        Action::OverrideOutcome { to, .. } => format!("override outcome to {to}"),
        Action::RecordActByPassed => "act-by time passed".into(),
        Action::RecordSellerNoAnswer { .. } => "record that the seller did not answer".into(),
        Action::SubmitDefense { .. } => "submit the defense".into(),
        Action::Refund { resolve: true, .. } => "resolve with a refund".into(),
        Action::Refund { resolve: false, .. } => "refund".into(),
        Action::SendMessage { template, .. } => format!("message ({template})"),
        Action::RecordMessageSent { .. } => "record a message sent".into(),
        Action::AddEvidence { .. } => "add evidence".into(),
        Action::RemoveEvidence { .. } => "remove evidence".into(),
        Action::RecordDocument { .. } => "record a document".into(),
    }
}

/// Fallbacks for what a notification may lack when it creates a dispute:
/// - no amount: 1 unit of `XXX` (ISO 4217 "no currency"), visibly a placeholder, never a real-looking sum;
/// - no reason code the catalogue knows: the processor's generic reason (`fraudulent`...) on network `other`,
///   else `other`/`general` (consumer dispute);
/// - no payment reference: the processor's dispute id.
///
/// Each fallback used is named in the opening event's reason.
fn new_dispute(n: &Notification) -> Result<(NewDispute, Vec<&'static str>), DomainError> {
    let mut fallbacks = Vec::new();
    let amount = match n.amount {
        Some(amount) => amount,
        None => {
            fallbacks.push("amount unknown (placeholder 1 XXX)");
            Money::new(1, Currency::parse("XXX")?)?
        }
    };
    let reason_code = match n.reason_code.clone() {
        Some(code) => code,
        None => {
            fallbacks.push("reason code unknown (generic reason used)");
            n.processor_reason
                .as_deref()
                .and_then(|r| ReasonCode::parse(CardNetwork::Other, r).ok())
                .map_or_else(|| ReasonCode::parse(CardNetwork::Other, "general"), Ok)?
        }
    };
    let payment_reference = match n.payment_reference.clone() {
        Some(reference) => reference,
        None => {
            fallbacks.push("payment reference unknown (dispute id used)");
            n.processor_dispute_id.clone()
        }
    };
    let reason_code_raw = n
        .reason_code_raw
        .clone()
        .or_else(|| n.processor_reason.clone())
        .unwrap_or_default();
    let new = NewDispute {
        processor: n.processor,
        processor_dispute_id: n.processor_dispute_id.clone(),
        payment_reference,
        order_reference: n.order_reference.clone(),
        seller_id: None,
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount,
        reason_code,
        reason_code_raw,
        stage: opening_stage(n),
        due_by: n.due_by,
        opened_at: n.occurred_at,
    };
    Ok((new, fallbacks))
}

fn actor(source: Source, n: &Notification) -> Actor {
    match source {
        // Alerts come from an alert network, not from the processor that settled the payment.
        Source::Alerts => Actor {
            kind: ActorKind::Processor,
            name: format!("alerts:{}", n.processor_reason.as_deref().unwrap_or("unknown")),
        },
        Source::Stripe | Source::Adyen | Source::Paypal | Source::Braintree => Actor::processor(n.processor),
    }
}

fn describe(n: &Notification) -> String {
    format!("{} {} ({})", n.event_type, n.event_id, n.kind)
}

/// Keeps notes and reasons within the domain's limits whatever a processor sends.
fn clip(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        text
    } else {
        text.chars().take(max).collect()
    }
}

impl Engine {
    pub fn ingest_stats(&self) -> IngestStats {
        self.ingest.snapshot()
    }

    /// Stores a delivery in the inbox without applying it; what [`Engine::receive`] does first, in one
    /// transaction. Dispute notifications are stored `pending` and claimed under a new lease (the caller applies
    /// them, see [`Engine::apply_claim`]); other types are stored `ignored`; a redelivered event still pending
    /// is taken over into the same claim. Every row keeps `raw_body`.
    #[instrument(skip_all, fields(source = %source), err)]
    pub async fn record(
        &self,
        source: Source,
        parsed: &[Parsed],
        raw_body: impl AsRef<[u8]>,
    ) -> Result<(Received, Claim), EngineError> {
        let raw = raw_body.as_ref();
        let items: Vec<(&Parsed, &[u8])> = parsed.iter().map(|p| (p, raw)).collect();
        self.record_items(source, &items).await
    }

    /// [`Engine::record`] with a raw body per item (an Adyen batch keeps each item's own JSON).
    async fn record_items(&self, source: Source, items: &[(&Parsed, &[u8])]) -> Result<(Received, Claim), EngineError> {
        let now = self.clock.now();
        let lease = InboxLease {
            token: Uuid::now_v7(),
            until: now + INBOX_LEASE,
        };
        let rows = items
            .iter()
            .map(|(item, raw)| {
                Ok(match item {
                    Parsed::Dispute(n) => NewNotification {
                        processor: source.as_str().to_owned(),
                        event_id: n.event_id.clone(),
                        event_type: n.event_type.clone(),
                        kind: Some(n.kind.as_str().to_owned()),
                        processor_dispute_id: Some(n.processor_dispute_id.clone()),
                        received_at: now,
                        occurred_at: Some(n.occurred_at),
                        body: raw.to_vec(),
                        notification: Some(
                            serde_json::to_value(n)
                                .map_err(|e| StoreError::Corrupt(format!("notification does not serialise: {e}")))?,
                        ),
                        status: InboxStatus::Pending,
                        note: None,
                    },
                    Parsed::Ignored { event_id, event_type } => NewNotification {
                        processor: source.as_str().to_owned(),
                        event_id: event_id.clone(),
                        event_type: event_type.clone(),
                        kind: None,
                        processor_dispute_id: None,
                        received_at: now,
                        occurred_at: None,
                        body: raw.to_vec(),
                        notification: None,
                        status: InboxStatus::Ignored,
                        note: Some("not a dispute event Verdict acts on".to_owned()),
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let inserts = self.store.insert_notifications(&rows, lease).await?;
        let mut received = Received::default();
        let mut claim = Claim {
            lease_token: lease.token,
            rows: Vec::new(),
        };
        for ((item, _), insert) in items.iter().zip(inserts) {
            match insert {
                InboxInsert::Duplicate => {
                    received.duplicates += 1;
                    tracing::info!(event_id = %event_id(item), "duplicate notification acknowledged");
                }
                InboxInsert::Retaken(id) => {
                    received.duplicates += 1;
                    // The same event twice in one delivery is applied once.
                    if let Parsed::Dispute(n) = item
                        && !claim.rows.iter().any(|(claimed, _)| *claimed == id)
                    {
                        received.retaken += 1;
                        tracing::info!(event_id = %n.event_id, "redelivery of a pending notification; applying it now");
                        claim.rows.push((id, n.clone()));
                    }
                }
                InboxInsert::Inserted(id) => {
                    received.stored += 1;
                    match item {
                        Parsed::Dispute(n) => claim.rows.push((id, n.clone())),
                        Parsed::Ignored { .. } => received.ignored += 1,
                    }
                }
            }
        }
        IngestCounters::add(&self.ingest.stored, received.stored);
        IngestCounters::add(&self.ingest.duplicates, received.duplicates);
        IngestCounters::add(&self.ingest.ignored, received.ignored);
        for (outcome, n) in [
            ("stored", received.stored),
            ("duplicate", received.duplicates),
            ("ignored", received.ignored),
            ("retaken", received.retaken),
        ] {
            if n > 0 {
                count_notifications(source, outcome, n);
            }
        }
        Ok((received, claim))
    }

    /// Stores every notification of a delivery, then applies each new one (and each redelivered one still
    /// pending) to its dispute.
    ///
    /// An `Err` means the delivery is not stored as a whole: answer 5xx so the processor redelivers (rows of it
    /// already stored are pending, and its redelivery takes them over: store's `insert_notifications`). Once this returns `Ok`,
    /// everything is durable; failures while applying leave rows `pending` for [`Engine::apply_pending`] and
    /// are reported in the outcomes, not as an error.
    pub async fn receive(
        &self,
        source: Source,
        parsed: Vec<Parsed>,
        raw_body: impl AsRef<[u8]>,
    ) -> Result<Received, EngineError> {
        let (mut received, claim) = self.record(source, &parsed, raw_body).await?;
        received.outcomes = self.apply_claim(source, claim).await;
        Ok(received)
    }

    /// Stores a delivery and returns once it is durable; applies it right after in a task of its own, or before
    /// returning when [`APPLIES_AFTER_ANSWER`] deliveries are already being applied that way. The processor's
    /// answer then waits for storing only (one group commit), not for the dispute's walk, its triage and their
    /// commit. If the process stops first, the rows' lease lapses and the sweep of any replica applies them.
    pub async fn receive_then_apply(
        &self,
        source: Source,
        parsed: Vec<Parsed>,
        raw_body: impl AsRef<[u8]>,
    ) -> Result<Received, EngineError> {
        let (mut received, claim) = self.record(source, &parsed, raw_body).await?;
        if claim.rows.is_empty() {
            return Ok(received);
        }
        match self.applies_after_answer.clone().try_acquire_owned() {
            Ok(permit) => {
                let engine = self.clone();
                tokio::spawn(
                    async move {
                        engine.apply_claim(source, claim).await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Err(_) => received.outcomes = self.apply_claim(source, claim).await,
        }
        Ok(received)
    }

    /// Waits until every delivery [`Engine::receive_then_apply`] answered before applying it has been applied
    /// (a graceful stop: their rows are held under this replica's lease, which the sweep would otherwise wait
    /// out; and tests that read what a webhook did).
    pub async fn finish_applying_after_answer(&self) {
        let _every = self
            .applies_after_answer
            .acquire_many(APPLIES_AFTER_ANSWER as u32)
            .await;
    }

    /// Stores a delivery (each item with its own raw body) and applies it after returning, in a task of its
    /// own: for batches (Adyen sends up to hundreds of items per request) whose applying would outlast the
    /// processor's request timeout. The rows are durable and claimed when this returns; if the process stops
    /// before they are applied, their lease lapses and the sweep of any replica applies them.
    pub async fn receive_later(&self, source: Source, items: Vec<(Parsed, Vec<u8>)>) -> Result<Received, EngineError> {
        let borrowed: Vec<(&Parsed, &[u8])> = items.iter().map(|(p, raw)| (p, raw.as_slice())).collect();
        let (received, claim) = self.record_items(source, &borrowed).await?;
        if !claim.rows.is_empty() {
            let engine = self.clone();
            tokio::spawn(async move {
                let outcomes = engine.apply_claim(source, claim).await;
                tracing::info!(%source, notifications = outcomes.len(), "stored batch applied");
            });
        }
        Ok(received)
    }

    /// Applies claimed notifications in the order they happened (a batch may hold several events of one
    /// dispute), renewing the claim's lease meanwhile. Returns each row's outcome.
    pub async fn apply_claim(&self, source: Source, claim: Claim) -> Vec<(Uuid, ApplyOutcome)> {
        let Claim { lease_token, mut rows } = claim;
        if rows.is_empty() {
            return Vec::new();
        }
        rows.sort_by_key(|(_, n)| n.occurred_at);
        let _renewal = self.renew_while_applying(lease_token);
        let mut outcomes = Vec::with_capacity(rows.len());
        for (id, notification) in rows {
            let outcome = self.apply_and_finish(id, lease_token, source, &notification).await;
            outcomes.push((id, outcome));
        }
        outcomes
    }

    /// Extends the lease of `lease_token` every [`INBOX_LEASE_RENEWAL`] until the returned guard is dropped.
    fn renew_while_applying(&self, lease_token: Uuid) -> RenewalGuard {
        let store = self.store.clone();
        let clock = self.clock.clone();
        RenewalGuard(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INBOX_LEASE_RENEWAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(err) = store
                    .renew_notification_leases(lease_token, clock.now() + INBOX_LEASE)
                    .await
                {
                    tracing::warn!(error = %err, "cannot renew the inbox lease; another replica may take over");
                }
            }
        }))
    }

    /// Applies up to `limit` pending notifications whose lease has lapsed (left by a crash, a failed apply,
    /// or another replica), oldest `occurred_at` first, claimed in one batch. Returns how many were processed.
    pub async fn apply_pending(&self, limit: u64) -> Result<usize, EngineError> {
        let claimed = self
            .store
            .claim_pending_notifications(self.clock.now(), INBOX_LEASE, limit)
            .await?;
        let count = claimed.rows.len();
        let lease_token = claimed.lease_token;
        let _renewal = (count > 0).then(|| self.renew_while_applying(lease_token));
        for row in claimed.rows {
            let parsed = row
                .notification
                .clone()
                .ok_or_else(|| "no normalised notification stored".to_owned())
                .and_then(|json| serde_json::from_value::<Notification>(json).map_err(|e| e.to_string()))
                .and_then(|n| {
                    row.processor
                        .parse::<Source>()
                        .map(|source| (source, n))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((source, notification)) => {
                    self.apply_and_finish(row.id, lease_token, source, &notification).await;
                }
                Err(error) => {
                    tracing::error!(notification_id = %row.id, %error, "stored notification cannot be read");
                    self.store
                        .finish_notification(&InboxFinish {
                            id: row.id,
                            lease_token,
                            status: InboxStatus::Failed,
                            dispute_id: None,
                            note: Some(format!("cannot be read back: {error}")),
                            at: self.clock.now(),
                            not_before_applied: None,
                        })
                        .await?;
                }
            }
        }
        Ok(count)
    }

    /// Applies one stored notification and records the outcome on its row. Never fails: a failure is an
    /// outcome (the row stays pending).
    #[instrument(skip_all, fields(notification_id = %id, event_id = %n.event_id))]
    async fn apply_and_finish(&self, id: Uuid, lease_token: Uuid, source: Source, n: &Notification) -> ApplyOutcome {
        let (outcome, recorded) = match self.apply_notification(id, lease_token, source, n).await {
            Ok(applied) => applied,
            Err(EngineError::Store(StoreError::LeaseLost)) => {
                // A redelivery (or a sweep after our lease lapsed) took the row over; its holder applies it.
                tracing::info!("notification taken over by another applier; nothing written here");
                return ApplyOutcome::Retry {
                    error: "taken over by another applier".to_owned(),
                    status: InboxStatus::Pending,
                };
            }
            Err(err) => {
                let error = err.to_string();
                tracing::warn!(%error, "applying a notification failed; it stays pending");
                IngestCounters::add(&self.ingest.retried, 1);
                count_notifications(source, "retried", 1);
                // Back-off keeps a sweep from spinning on a row while the cause (an outage) lasts.
                let retry_at = self.clock.now() + RETRY_BACKOFF;
                return match self
                    .store
                    .retry_notification_later(id, lease_token, &error, MAX_APPLY_ATTEMPTS, retry_at)
                    .await
                {
                    Ok(status) => ApplyOutcome::Retry {
                        error,
                        status: status.unwrap_or(InboxStatus::Pending),
                    },
                    Err(store_err) => {
                        tracing::error!(error = %store_err, "cannot record the failed attempt");
                        ApplyOutcome::Retry {
                            error,
                            status: InboxStatus::Pending,
                        }
                    }
                };
            }
        };
        match &outcome {
            ApplyOutcome::Applied { .. } => {
                IngestCounters::add(&self.ingest.applied, 1);
                count_notifications(source, "applied", 1);
            }
            ApplyOutcome::Flagged { dispute_id, reason } => {
                IngestCounters::add(&self.ingest.flagged, 1);
                count_notifications(source, "flagged", 1);
                tracing::warn!(dispute_id = ?dispute_id, %reason, "notification contradicts the dispute; flagged");
            }
            ApplyOutcome::Ignored { .. } | ApplyOutcome::Retry { .. } => {}
        }
        if recorded {
            return outcome;
        }
        let Some(finish) = finish(id, lease_token, &outcome, self.clock.now()) else {
            return outcome;
        };
        match self.store.finish_notification(&finish).await {
            Ok(true) => {}
            Ok(false) => tracing::info!("notification taken over by another applier before it was marked"),
            // The row still says pending: the sweep re-applies it, which is harmless because applying is
            // goal-directed.
            Err(err) => tracing::error!(error = %err, "cannot mark the notification; it will be re-applied"),
        }
        outcome
    }

    /// Finds or creates the dispute, plans in memory the walk to where the notification says it should be,
    /// and commits the whole walk with the inbox row's outcome in one transaction. Returns the outcome and
    /// whether the row was recorded with it (when nothing changed, the caller records it).
    async fn apply_notification(
        &self,
        inbox_id: Uuid,
        lease_token: Uuid,
        source: Source,
        n: &Notification,
    ) -> Result<(ApplyOutcome, bool), EngineError> {
        let actor = actor(source, n);
        let because = clip(format!("{} notification {}", source, describe(n)), 1_000);
        let goal = goal(n);
        let note = clip(
            format!(
                "{} notification {}{}",
                source,
                describe(n),
                n.raw_status
                    .as_deref()
                    .map(|s| format!(", processor status {s}"))
                    .unwrap_or_default()
            ),
            5_000,
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = self.clock.now();
            let mut done = Vec::new();
            let mut plan = Decision::default();
            let (expected_version, mut current) = match self
                .store
                .find_by_processor_id(n.processor, &n.processor_dispute_id)
                .await?
            {
                Some(dispute) => {
                    // Early refusal only: a notification that passes here can still be refused by the
                    // committing transaction, if a later one is committed meanwhile.
                    let stale = self
                        .store
                        .last_applied_notification_at(dispute.id)
                        .await?
                        .filter(|last| *last > n.occurred_at);
                    if let Some(last) = stale
                        && goal != Goal::Record
                    {
                        return Ok((stale_outcome(dispute.id, n, last), false));
                    }
                    (Some(dispute.version), dispute)
                }
                None => {
                    let opened = new_dispute(n).and_then(|(new, fallbacks)| {
                        let mut reason = format!("opened from {because}");
                        if !fallbacks.is_empty() {
                            reason = format!("{reason}; {}", fallbacks.join("; "));
                        }
                        let command =
                            Command::new(actor.clone(), Action::Open(Box::new(new))).because(clip(reason, 2_000));
                        let mut decision = self.timing.adjust(open(DisputeId::new_v7(), &command, now)?, now);
                        decision.link_by(n.references.clone());
                        let dispute = replay(&decision.events)
                            .ok_or_else(|| DomainError::InvalidInput("opening produced no dispute".into()))?;
                        Ok((decision, dispute))
                    });
                    match opened {
                        Ok((decision, dispute)) => {
                            plan = decision;
                            done.push("open".to_owned());
                            (None, dispute)
                        }
                        Err(err) => {
                            let outcome = ApplyOutcome::Flagged {
                                dispute_id: None,
                                reason: format!("cannot open a dispute from it: {err}"),
                            };
                            return Ok((outcome, false));
                        }
                    }
                }
            };
            let id = current.id;
            let mut recorded = false;
            let mut refusal = None;
            let mut settled = false;
            for _ in 0..MAX_STEPS {
                let Some(action) = next_action(&current, goal, recorded, &note) else {
                    settled = true;
                    break;
                };
                let label = action_label(&action);
                recorded |= matches!(action, Action::AddNote { .. });
                let command = Command::new(actor.clone(), action).because(because.clone());
                match decide(&current, &command, now) {
                    Ok(decision) => {
                        let decision = self.timing.adjust(decision, now);
                        for event in &decision.events {
                            apply(&mut current, event);
                        }
                        plan.then(decision);
                        done.push(label);
                    }
                    Err(err) => {
                        let mut reason = format!(
                            "{err} (asked to {label}, dispute is {} at {})",
                            current.status, current.stage
                        );
                        if !done.is_empty() {
                            reason = format!("{reason}; done before the refusal: {}", done.join(", "));
                        }
                        refusal = Some(reason);
                        break;
                    }
                }
            }
            if !settled && refusal.is_none() {
                return Err(DomainError::InvalidInput(format!(
                    "no stable state after {MAX_STEPS} steps ({})",
                    done.join(", ")
                ))
                .into());
            }
            let outcome = match refusal {
                Some(reason) => ApplyOutcome::Flagged {
                    dispute_id: Some(id),
                    reason,
                },
                None => ApplyOutcome::Applied {
                    dispute_id: id,
                    note: if done.is_empty() {
                        "no change".to_owned()
                    } else {
                        done.join(", ")
                    },
                },
            };
            if plan.events.is_empty() {
                return Ok((outcome, false));
            }
            let Some(mut finish) = finish(inbox_id, lease_token, &outcome, now) else {
                return Ok((outcome, false));
            };
            self.triage_into(expected_version.is_some(), &mut current, &mut plan, now)
                .await?;
            // Whether it is older than what the dispute already reflects is decided by the committing
            // transaction; a note (Record) is history, kept whatever its age.
            finish.not_before_applied = (goal != Goal::Record).then_some(n.occurred_at);
            match self
                .store
                .commit_applying(expected_version, &current, &plan, &finish)
                .await
            {
                Ok(()) => {
                    if expected_version.is_none() {
                        tracing::info!(dispute_id = %id, "dispute opened");
                    }
                    return Ok((outcome, true));
                }
                // The dispute moved (or was created by another delivery) since it was read: plan again.
                Err(StoreError::Conflict(_) | StoreError::DuplicateDispute { .. }) if attempt < MAX_PLAN_ATTEMPTS => {
                    continue;
                }
                Err(StoreError::Superseded { last_applied }) => {
                    return Ok((stale_outcome(id, n, last_applied), false));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// What an outcome writes on its inbox row, under the claim's `lease_token`; `None` for a retry (the row stays
/// pending).
fn finish(id: Uuid, lease_token: Uuid, outcome: &ApplyOutcome, at: DateTime<Utc>) -> Option<InboxFinish> {
    let (status, dispute_id, note) = match outcome {
        ApplyOutcome::Applied { dispute_id, note } => (InboxStatus::Applied, Some(*dispute_id), note.clone()),
        ApplyOutcome::Flagged { dispute_id, reason } => (InboxStatus::Flagged, *dispute_id, reason.clone()),
        ApplyOutcome::Ignored { dispute_id, reason } => (InboxStatus::Ignored, *dispute_id, reason.clone()),
        ApplyOutcome::Retry { .. } => return None,
    };
    Some(InboxFinish {
        id,
        lease_token,
        status,
        dispute_id,
        note: Some(note),
        at,
        not_before_applied: None,
    })
}

/// A notification older than the last one applied to its dispute: kept, not applied.
fn stale_outcome(dispute_id: DisputeId, n: &Notification, last: DateTime<Utc>) -> ApplyOutcome {
    ApplyOutcome::Ignored {
        dispute_id: Some(dispute_id),
        reason: format!(
            "older ({}) than the last notification applied to the dispute ({last}); it cannot move the dispute \
             backwards",
            n.occurred_at
        ),
    }
}

fn event_id(item: &Parsed) -> &str {
    match item {
        Parsed::Dispute(n) => &n.event_id,
        Parsed::Ignored { event_id, .. } => event_id,
    }
}

/// Pending notifications a delivery (or a redelivery) holds under one lease, to be applied by
/// [`Engine::apply_claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub lease_token: Uuid,
    pub rows: Vec<(Uuid, Notification)>,
}

/// Stops renewing a lease when dropped (the applier finished, failed or was cancelled).
struct RenewalGuard(tokio::task::JoinHandle<()>);

impl Drop for RenewalGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
