//! Command handling: load a dispute, ask the domain what a command means, persist the decision atomically.
//!
//! The engine is the only writer of disputes. Every caller — analysts through the API, processors through
//! webhooks, timers and steps through the workers — goes through [`Engine::handle`], so every change is an
//! appended event with an actor, a reason and a time.

mod clock;
pub mod documents;
pub mod effects;
pub mod evidence;
pub mod ingest;
pub mod schedules;
pub mod timers;
pub mod worker;

use std::sync::Arc;

use tracing::instrument;
use verdict_domain::{Action, Command, Decision, Dispute, DisputeId, DomainError, apply, decide, open};
use verdict_facts::{MarketplaceFacts, TablesFacts};
use verdict_store::{Store, StoreError};

pub use clock::{Clock, ManualClock, SystemClock};
pub use documents::{DocumentSources, GeneratedDocument, NoSources};
pub use ingest::{ApplyOutcome, IngestStats, Received, Source};

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
        }
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
    #[instrument(skip_all, fields(actor = %command.actor.label()), err(level = "debug"))]
    pub async fn open(&self, command: Command) -> Result<Dispute, EngineError> {
        let id = DisputeId::new_v7();
        let now = self.clock.now();
        let decision = self.timing.adjust(open(id, &command, now)?, now);
        let dispute = verdict_domain::replay(&decision.events)
            .ok_or_else(|| DomainError::InvalidInput("opening produced no dispute".into()))?;
        self.store.commit(None, &dispute, &decision).await?;
        tracing::info!(dispute_id = %id, "dispute opened");
        Ok(dispute)
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
        self.decide_commit_and_tell(id, command, None).await
    }

    /// Load, decide, commit; re-decided on fresh state after losing a race. With a fence, the claimed timer or
    /// step completes in the same transaction, or nothing is written.
    pub(crate) async fn decide_and_commit(
        &self,
        id: DisputeId,
        command: Command,
        fence: Option<verdict_store::Fence>,
    ) -> Result<Dispute, EngineError> {
        Ok(self.decide_commit_and_tell(id, command, fence).await?.0)
    }

    async fn decide_commit_and_tell(
        &self,
        id: DisputeId,
        command: Command,
        fence: Option<verdict_store::Fence>,
    ) -> Result<(Dispute, Decision), EngineError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dispute = self.store.load(id).await?.ok_or(EngineError::NotFound(id))?;
            let now = self.clock.now();
            let decision = self.timing.adjust(decide(&dispute, &command, now)?, now);
            let mut after = dispute.clone();
            for event in &decision.events {
                apply(&mut after, event);
            }
            match self
                .store
                .commit_fenced(Some(dispute.version), &after, &decision, fence)
                .await
            {
                Ok(()) => return Ok((after, decision)),
                Err(StoreError::Conflict(_)) if attempt < ATTEMPTS_ON_CONFLICT => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }
}
