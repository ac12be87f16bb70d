//! Command handling: load a dispute, ask the domain what a command means, persist the decision atomically.
//!
//! The engine is the only writer of disputes. Every caller — analysts through the API, processors through
//! webhooks, timers and steps through the workers — goes through [`Engine::handle`], so every change is an
//! appended event with an actor, a reason and a time.

pub mod backtest;
mod clock;
pub mod documents;
pub mod effects;
pub mod evidence;
pub mod ingest;
pub mod schedules;
pub mod timers;
pub mod triage;
pub mod worker;

use std::sync::Arc;

use tracing::instrument;
use verdict_domain::{Action, Command, Decision, Dispute, DisputeId, DomainError, apply, decide, open};
use verdict_facts::{MarketplaceFacts, TablesFacts};
use verdict_store::{Store, StoreError};

pub use clock::{Clock, ManualClock, SystemClock};
pub use documents::{DocumentSources, GeneratedDocument, NoSources};
pub use ingest::{ApplyOutcome, IngestStats, Received, Source};
pub use triage::ActivePolicy;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("dispute {0} not found")]
    NotFound(DisputeId),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The marketplace facts could not be read (a document needs them).
    #[error(transparent)]
    Facts(#[from] verdict_facts::FactsError),
    /// A document failed to render: a defect in Verdict, never the caller's input.
    #[error("document rendering failed: {0}")]
    Document(String),
}

/// How often a command is re-decided on fresh state after losing a race; a manual transition carries the
/// version its analyst saw, so it still fails on a stale version.
const ATTEMPTS_ON_CONFLICT: usize = 3;

#[derive(Clone)]
pub struct Engine {
    store: Store,
    clock: Arc<dyn Clock>,
    ingest: Arc<ingest::IngestCounters>,
    /// When timers fire and what the deadline does (see timers.rs).
    timing: Arc<timers::TimingPolicy>,
    /// Where documents get the marketplace facts and the evidence (documents.rs); by default the configured
    /// marketplace facts and the stored evidence.
    document_sources: Option<Arc<dyn documents::DocumentSources>>,
    /// Where the marketplace's orders are read (the link step, GraphQL): Verdict's own tables unless
    /// configured otherwise.
    facts: Arc<dyn MarketplaceFacts>,
    /// When a seller's answer is due on the disputes the seller owns (`[sellers]`).
    seller_tasks: verdict_domain::SellerTaskPolicy,
    /// Sellers with more disputes than this per 10,000 orders are flagged.
    seller_rate_threshold_bps: u64,
    /// What defending costs and the win rate assumed without history (`[policy]`).
    economics: Arc<verdict_domain::EconomicsConfig>,
    /// Observed win rates, counted at most once a minute (triage.rs).
    win_rates: Arc<triage::WinRateCache>,
    /// Room for deliveries applied after their answer (ingest.rs).
    applies_after_answer: Arc<tokio::sync::Semaphore>,
}

impl Engine {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        let facts: Arc<dyn MarketplaceFacts> = Arc::new(TablesFacts::new(store.db().clone()));
        Self {
            store,
            clock,
            ingest: Arc::default(),
            timing: Arc::default(),
            document_sources: None,
            facts,
            seller_tasks: verdict_domain::SellerTaskPolicy::default(),
            seller_rate_threshold_bps: 100,
            economics: Arc::default(),
            win_rates: Arc::default(),
            applies_after_answer: Arc::new(tokio::sync::Semaphore::new(ingest::APPLIES_AFTER_ANSWER)),
        }
    }

    /// The same engine with another seller task policy (`[sellers]`: the margin before the processor's
    /// deadline).
    pub fn with_seller_tasks(mut self, policy: verdict_domain::SellerTaskPolicy) -> Self {
        self.seller_tasks = policy;
        self
    }

    pub fn seller_tasks(&self) -> verdict_domain::SellerTaskPolicy {
        self.seller_tasks
    }

    /// The same engine flagging sellers above `bps` disputes per 10,000 orders (`[sellers]`).
    pub fn with_seller_rate_threshold(mut self, bps: u64) -> Self {
        self.seller_rate_threshold_bps = bps;
        self
    }

    pub fn seller_rate_threshold_bps(&self) -> u64 {
        self.seller_rate_threshold_bps
    }

    /// The same engine with documents drawing their facts and evidence from `sources` instead of the
    /// configured marketplace facts and the stored evidence.
    pub fn with_document_sources(mut self, sources: Arc<dyn documents::DocumentSources>) -> Self {
        self.document_sources = Some(sources);
        self
    }

    /// The same engine reading marketplace facts from `facts` (the configured `[marketplace]` source).
    pub fn with_facts(mut self, facts: Arc<dyn MarketplaceFacts>) -> Self {
        self.facts = facts;
        self
    }

    pub fn facts(&self) -> &Arc<dyn MarketplaceFacts> {
        &self.facts
    }

    /// The same engine with another timing policy (reminder offsets, submit margin, deadline policy).
    pub fn with_timing(mut self, timing: timers::TimingPolicy) -> Self {
        self.timing = Arc::new(timing);
        self
    }

    pub fn timing(&self) -> &timers::TimingPolicy {
        &self.timing
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Opens a new dispute from an analyst's input or a processor's notification.
    ///
    /// Failures are logged here at debug only: most are the caller's mistakes (illegal transition, duplicate,
    /// stale version, bad input), and the callers log internal ones at error where they map them (the API's
    /// error.rs, the workers, the webhook handlers).
    pub async fn open(&self, command: Command) -> Result<Dispute, EngineError> {
        Ok(self.open_decided(command).await?.0)
    }

    /// [`Engine::open`] that also returns what was decided (the events, timers and steps committed).
    #[instrument(skip_all, fields(actor = %command.actor.label()), err(level = "debug"))]
    pub async fn open_decided(&self, command: Command) -> Result<(Dispute, Decision), EngineError> {
        let id = DisputeId::new_v7();
        let now = self.clock.now();
        let mut decision = self.timing.adjust(open(id, &command, now)?, now);
        let mut dispute = verdict_domain::replay(&decision.events)
            .ok_or_else(|| DomainError::InvalidInput("opening produced no dispute".into()))?;
        self.triage_into(false, &mut dispute, &mut decision, now).await?;
        self.store.commit(None, &dispute, &decision).await?;
        tracing::info!(dispute_id = %id, "dispute opened");
        Ok((dispute, decision))
    }

    /// Applies a command to an existing dispute and returns the dispute as it now is.
    #[instrument(skip_all, fields(dispute_id = %id, actor = %command.actor.label()), err(level = "debug"))]
    pub async fn handle(&self, id: DisputeId, command: Command) -> Result<Dispute, EngineError> {
        if let Action::Open(_) = command.action {
            return Err(DomainError::InvalidInput("use open to create a dispute".into()).into());
        }
        self.decide_and_commit(id, command, None).await
    }

    /// [`Engine::handle`] that also returns what was decided (the events, timers and steps committed), for
    /// callers that show what an action enqueued.
    #[instrument(skip_all, fields(dispute_id = %id, actor = %command.actor.label()), err(level = "debug"))]
    pub async fn handle_decided(&self, id: DisputeId, command: Command) -> Result<(Dispute, Decision), EngineError> {
        if let Action::Open(_) = command.action {
            return Err(DomainError::InvalidInput("use open to create a dispute".into()).into());
        }
        self.decide_commit_marked(id, command, None, None).await
    }

    /// The seller task of a dispute the seller owns: the one its latest order link opened.
    pub async fn seller_task(&self, id: DisputeId) -> Result<Option<verdict_domain::SellerTask>, EngineError> {
        let events = self.store.events(id).await?;
        Ok(events
            .iter()
            .rev()
            .find(|event| event.kind == verdict_domain::EventKind::OrderLinked.as_str())
            .and_then(|event| event.change.get("seller_task"))
            .and_then(|task| serde_json::from_value(task.clone()).ok()))
    }

    /// Load, decide, commit; re-decided on fresh state after losing a race. With a fence, the claimed timer or
    /// step completes in the same transaction, or nothing is written.
    pub(crate) async fn decide_and_commit(
        &self,
        id: DisputeId,
        command: Command,
        fence: Option<verdict_store::Fence>,
    ) -> Result<Dispute, EngineError> {
        Ok(self.decide_commit_marked(id, command, fence, None).await?.0)
    }

    /// Load, decide, commit, with `mark` (what the policy does here, and the approval it performs) written in
    /// the same transaction; see triage.rs.
    pub(crate) async fn decide_commit_marked(
        &self,
        id: DisputeId,
        command: Command,
        fence: Option<verdict_store::Fence>,
        mark: Option<verdict_domain::PolicyActionMark>,
    ) -> Result<(Dispute, Decision), EngineError> {
        self.decide_commit_from(id, command, fence, mark, None).await
    }

    /// [`Engine::decide_commit_marked`] whose first attempt decides on `loaded` (the dispute its caller just
    /// read: a claimed timer's or step's). A lost race re-reads it as always, and so does a command that copy
    /// refuses, since the stored dispute may have moved to where it applies.
    pub(crate) async fn decide_commit_from(
        &self,
        id: DisputeId,
        command: Command,
        fence: Option<verdict_store::Fence>,
        mark: Option<verdict_domain::PolicyActionMark>,
        mut loaded: Option<Dispute>,
    ) -> Result<(Dispute, Decision), EngineError> {
        let mut attempt = 0;
        loop {
            let (dispute, callers_copy) = match loaded.take() {
                Some(dispute) => (dispute, true),
                None => (self.store.load(id).await?.ok_or(EngineError::NotFound(id))?, false),
            };
            // The attempts are for races with fresh state; the caller's copy may simply be behind.
            if !callers_copy {
                attempt += 1;
            }
            let now = self.clock.now();
            let mut decision = match decide(&dispute, &command, now) {
                Ok(decision) => self.timing.adjust(decision, now),
                // Only fresh state may refuse a command.
                Err(_) if callers_copy => continue,
                Err(err) => return Err(err.into()),
            };
            let mut after = dispute.clone();
            for event in &decision.events {
                apply(&mut after, event);
            }
            self.triage_into(true, &mut after, &mut decision, now).await?;
            if mark.is_some() {
                decision.policy_action = mark.clone();
            }
            // Timers the decision cancelled that the seller task still needs are set again (timers.rs).
            self.keep_seller_timers(&after, &mut decision, now).await?;
            // A seller-owned dispute just lost or accepted is recovered from the seller, in the same commit.
            // Only a seller's dispute is recovered from its seller: the others need not read their log for it.
            if after.seller_id.is_some()
                && verdict_domain::recovery_due(after.status)
                && !verdict_domain::recovery_due(dispute.status)
            {
                let task = self.seller_task(id).await?;
                decision
                    .steps
                    .extend(verdict_domain::recovery_step(dispute.status, &after, task.as_ref()));
            }
            match self
                .store
                .commit_fenced(Some(dispute.version), &after, &decision, fence)
                .await
            {
                Ok(()) => return Ok((after, decision)),
                Err(StoreError::Conflict(_)) if callers_copy || attempt < ATTEMPTS_ON_CONFLICT => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }
}
