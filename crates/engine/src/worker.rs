//! The worker pool that runs in every replica: fires due timers, performs pending steps, runs cron ticks.
//!
//! Work is claimed in batches with a lease (see `verdict_store::queue`). A timer's command is committed with
//! the timer's completion in one transaction, under its lease token, so it takes effect once even if two
//! replicas race for it after a lease expired. A step's lease is renewed while it runs; its result (success,
//! retry, dead letter) is written only while the lease still holds, and the idempotency key the outside
//! system sees makes a repeated performance harmless.
//!
//! [`Worker::run_once`] does one round and waits for everything it started, so tests drain the queues by
//! moving a manual clock instead of sleeping. [`Worker::run`] is a pipeline: each round claims as many steps
//! as there are free step slots and starts them without waiting for the slowest; successes are recorded by a
//! completer task that writes whatever has finished in one statement. It sleeps until the next due time
//! (never longer than `max_idle`) and is woken early by the store's in-process signal, by a step slot coming
//! free while steps wait, and, on PostgreSQL, by `NOTIFY` from any replica.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use chrono::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use verdict_domain::{Actor, ActorKind, Command, Dispute, DisputeId, DomainError, StepKind};
use verdict_store::{Backoff, ClaimedStep, ClaimedTimer, Fence, Leased, NewStep, NewTimer, StepFailure, StoreError};

use crate::effects::{NextStep, StepContext, StepError, StepOutcome, StepPerformer};
use crate::schedules::Scheduler;
use crate::timers::{FOLLOW_UP_TIMER, Fired, SchedulingConfig};
use crate::{Engine, EngineError};

/// What one round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many timers, steps and schedule ticks were handled.
    Worked(usize),
    Idle,
}

/// A handler for timers that belong to no dispute (custom kinds); the timer is completed when it returns Ok.
#[async_trait::async_trait]
pub trait TimerHandler: Send + Sync + 'static {
    async fn fire(&self, timer: &ClaimedTimer) -> Result<(), String>;
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Recorded as `locked_by`; unique per replica.
    pub worker_id: String,
    /// Timers fired at once.
    pub concurrency: usize,
    /// Steps performed at once; a claim takes at most the free slots.
    pub step_concurrency: usize,
    pub batch_size: u64,
    pub lease: Duration,
    /// How often a running step's lease is renewed (real time).
    pub renew_every: StdDuration,
    pub backoff: Backoff,
    /// The shortest sleep after an idle round: the polling floor.
    pub min_idle: StdDuration,
    /// The longest sleep when nothing is due.
    pub max_idle: StdDuration,
}

impl WorkerOptions {
    pub fn from_config(config: &SchedulingConfig, worker_id: impl Into<String>) -> Self {
        let lease = Duration::seconds(config.lease_seconds.max(5));
        Self {
            worker_id: worker_id.into(),
            concurrency: config.worker_concurrency.max(1),
            step_concurrency: config.step_concurrency.max(1),
            batch_size: config.worker_batch_size.max(1),
            lease,
            renew_every: (lease / 3).to_std().unwrap_or(StdDuration::from_secs(20)),
            backoff: Backoff {
                base: Duration::seconds(config.retry_base_seconds.max(1)),
                max: Duration::seconds(config.retry_max_seconds.max(1)),
                jitter: f64::from(config.retry_jitter_percent.min(100)) / 100.0,
            },
            // Sleeping until the next due time is not polling: an idle replica still sleeps up to max_idle.
            // The floor only keeps a row that stays due (claimed elsewhere, failing) from spinning the loop.
            min_idle: StdDuration::from_millis(5),
            // Never past the store's wake horizon: later work is announced to no one.
            max_idle: StdDuration::from_secs(
                config
                    .max_idle_seconds
                    .clamp(1, verdict_store::WAKE_HORIZON_SECONDS.unsigned_abs()),
            ),
        }
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self::from_config(&SchedulingConfig::default(), format!("worker-{}", uuid::Uuid::now_v7()))
    }
}

struct Inner {
    engine: Engine,
    performer: Arc<dyn StepPerformer>,
    options: WorkerOptions,
    handlers: HashMap<String, Arc<dyn TimerHandler>>,
    scheduler: Option<Scheduler>,
    limit: Arc<Semaphore>,
    step_slots: Arc<Semaphore>,
    /// How many steps the run loop's next claim asks for at most (see [`Worker::start_steps`]).
    claim_size: AtomicU64,
    /// Steps this pool brought to an end (succeeded, retried, dead-lettered), for benchmarks and tests.
    steps_finished: AtomicU64,
    /// Step claims of the run loop that found work, for benchmarks (steps per claim).
    step_claims: AtomicU64,
    stopping: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
}

/// One replica's worker pool; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

enum Done {
    /// Completed (committed with its effect, or to be completed in the batch).
    Fired,
    NeedsCompletion(Leased),
    Retried,
    Stale,
    Released,
}

impl Worker {
    pub fn new(engine: Engine, performer: Arc<dyn StepPerformer>, options: WorkerOptions) -> Self {
        Self::build(engine, performer, options, HashMap::new(), None)
    }

    fn build(
        engine: Engine,
        performer: Arc<dyn StepPerformer>,
        options: WorkerOptions,
        handlers: HashMap<String, Arc<dyn TimerHandler>>,
        scheduler: Option<Scheduler>,
    ) -> Self {
        let (stop, stopping) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let step_slots = Arc::new(Semaphore::new(options.step_concurrency.max(1)));
        Self {
            inner: Arc::new(Inner {
                engine,
                performer,
                options,
                handlers,
                scheduler,
                limit,
                step_slots,
                claim_size: AtomicU64::new(MIN_CLAIM as u64),
                steps_finished: AtomicU64::new(0),
                step_claims: AtomicU64::new(0),
                stopping,
                stop,
            }),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut HashMap<String, Arc<dyn TimerHandler>>, &mut Option<Scheduler>)) -> Self {
        let inner = &self.inner;
        let mut handlers = inner.handlers.clone();
        let mut scheduler = inner.scheduler.clone();
        f(&mut handlers, &mut scheduler);
        Self::build(
            inner.engine.clone(),
            inner.performer.clone(),
            inner.options.clone(),
            handlers,
            scheduler,
        )
    }

    /// Routes timers of `kind` that belong to no dispute to `handler`.
    pub fn with_timer_handler(self, kind: impl Into<String>, handler: Arc<dyn TimerHandler>) -> Self {
        let kind = kind.into();
        self.rebuild(|handlers, _| {
            handlers.insert(kind, handler);
        })
    }

    /// Runs due cron ticks as part of every round.
    pub fn with_scheduler(self, scheduler: Scheduler) -> Self {
        self.rebuild(|_, slot| *slot = Some(scheduler))
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.inner.options
    }

    fn stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// Steps this pool has brought to an end since it started.
    pub fn steps_finished(&self) -> u64 {
        self.inner.steps_finished.load(Ordering::Relaxed)
    }

    /// How many step claims of the run loop found work; steps finished over this is the mean claim's size.
    pub fn step_claims(&self) -> u64 {
        self.inner.step_claims.load(Ordering::Relaxed)
    }

    /// One round: due cron ticks, a batch of due timers, then as many due steps as the pool runs at once.
    pub async fn run_once(&self) -> Result<Outcome, EngineError> {
        let mut worked = 0;
        if let Some(scheduler) = &self.inner.scheduler {
            worked += scheduler.run_due(&self.inner.options.worker_id).await?.len();
        }
        worked += self.fire_timers().await?;
        worked += self.run_steps().await?;
        Ok(if worked == 0 {
            Outcome::Idle
        } else {
            Outcome::Worked(worked)
        })
    }

    /// Rounds until nothing is due now.
    pub async fn drain(&self) -> Result<usize, EngineError> {
        let mut total = 0;
        while let Outcome::Worked(n) = self.run_once().await? {
            total += n;
        }
        Ok(total)
    }

    async fn fire_timers(&self) -> Result<usize, EngineError> {
        let engine = &self.inner.engine;
        let options = &self.inner.options;
        let now = engine.clock().now();
        // One statement claims the timers and reads their disputes; two more read what the act-by timers among
        // them need (policy marks, triage runs), so that a firing reads nothing more before its commit.
        let claimed = engine
            .store()
            .claim_due_timers_with_disputes(&options.worker_id, now, options.batch_size, options.lease)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let count = claimed.len();
        let reads = match engine.read_for_timers(&claimed).await {
            Ok(reads) => Some(Arc::new(reads)),
            Err(err) => {
                // Each firing reads what it needs itself instead.
                tracing::warn!(%err, "reading the policy marks and triage runs of a timer claim failed");
                None
            }
        };
        // Timers of one dispute fire one after the other, in due order: run concurrently they would only race
        // for the dispute's version (a reminder and the deadline often fall due together after downtime).
        let mut groups: HashMap<Option<uuid::Uuid>, (Option<Dispute>, Vec<ClaimedTimer>)> = HashMap::new();
        let mut unbound = Vec::new();
        for (timer, dispute) in claimed {
            match timer.dispute_id {
                Some(id) => {
                    let group = groups.entry(Some(id)).or_insert_with(|| (dispute, Vec::new()));
                    group.1.push(timer);
                }
                None => unbound.push((None, vec![timer])),
            }
        }
        let mut tasks = JoinSet::new();
        for (dispute, mut group) in groups.into_values().chain(unbound) {
            group.sort_by_key(|t| t.due_at);
            let worker = self.clone();
            let reads = reads.clone();
            tasks.spawn(async move {
                let mut done = Vec::with_capacity(group.len());
                // The claim's reads hold for the first firing only; the later ones see what it committed.
                let mut preloaded = dispute.map(|d| (d, reads));
                for timer in group {
                    done.push(worker.fire_one(timer, preloaded.take()).await);
                }
                done
            });
        }
        let mut to_complete = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(results) => {
                    for result in results {
                        match result {
                            Done::NeedsCompletion(leased) => to_complete.push(leased),
                            Done::Stale => {
                                metrics::counter!("verdict_leases_lost_total", "queue" => "timers").increment(1)
                            }
                            Done::Fired | Done::Retried | Done::Released => {}
                        }
                    }
                }
                Err(err) => tracing::error!(%err, "a timer task panicked; its lease will expire"),
            }
        }
        if !to_complete.is_empty() {
            let report = engine
                .store()
                .complete_timers(&to_complete, engine.clock().now())
                .await?;
            if !report.stale.is_empty() {
                tracing::warn!(
                    stale = report.stale.len(),
                    "timers taken over before they were completed"
                );
                metrics::counter!("verdict_leases_lost_total", "queue" => "timers")
                    .increment(report.stale.len() as u64);
            }
        }
        Ok(count)
    }

    async fn fire_one(
        &self,
        timer: ClaimedTimer,
        preloaded: Option<(Dispute, Option<Arc<crate::timers::TimerClaimReads>>)>,
    ) -> Done {
        let leased = Leased {
            id: timer.id,
            lease_token: timer.lease_token,
        };
        let _permit = match self.inner.limit.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return self.release(Fence::Timer(leased)).await,
        };
        if self.stopping() {
            return self.release(Fence::Timer(leased)).await;
        }
        let engine = &self.inner.engine;
        let lag = (engine.clock().now() - timer.due_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("verdict_timer_firing_lag_seconds").record(lag);
        let kind_label = timer.kind.split('_').next().unwrap_or("other").to_owned();
        metrics::counter!("verdict_timers_fired_total", "kind" => kind_label).increment(1);
        if timer.dispute_id.is_none()
            && let Some(handler) = self.inner.handlers.get(&timer.kind)
        {
            return match handler.fire(&timer).await {
                Ok(()) => Done::NeedsCompletion(leased),
                Err(err) => {
                    tracing::warn!(timer_id = %timer.id, kind = %timer.kind, %err, "timer handler failed; retrying");
                    self.retry_timer(&timer, leased).await
                }
            };
        }
        let (dispute, reads) = match preloaded {
            Some((dispute, reads)) => (Some(dispute), reads),
            None => (None, None),
        };
        match engine.fire_claimed_timer(&timer, dispute, reads.as_deref()).await {
            Ok(Fired::Committed) => Done::Fired,
            Ok(Fired::NoEffect(why)) => {
                tracing::info!(timer_id = %timer.id, kind = %timer.kind, %why, "timer no longer applies");
                Done::NeedsCompletion(leased)
            }
            Ok(Fired::LeaseLost) => {
                tracing::warn!(timer_id = %timer.id, "timer taken over by another worker; its result was discarded");
                Done::Stale
            }
            Err(err) => {
                tracing::warn!(timer_id = %timer.id, kind = %timer.kind, %err, "firing a timer failed; retrying");
                self.retry_timer(&timer, leased).await
            }
        }
    }

    async fn retry_timer(&self, timer: &ClaimedTimer, leased: Leased) -> Done {
        let engine = &self.inner.engine;
        let delay = self.inner.options.backoff.delay(timer.attempts, rand::random::<f64>());
        match engine.store().retry_timer(leased, delay, engine.clock().now()).await {
            Ok(true) => Done::Retried,
            Ok(false) => Done::Stale,
            Err(err) => {
                tracing::warn!(%err, "cannot reschedule a timer; its lease will expire");
                Done::Retried
            }
        }
    }

    async fn release(&self, fence: Fence) -> Done {
        if let Err(err) = self.inner.engine.store().release(fence).await {
            tracing::warn!(%err, "cannot release a claim; its lease will expire");
        }
        Done::Released
    }

    /// Claims up to `limit` due steps for this pool, each with its dispute (loaded by the claiming statement
    /// on PostgreSQL).
    async fn claim(&self, limit: usize) -> Result<Vec<(ClaimedStep, Option<Dispute>)>, EngineError> {
        let engine = &self.inner.engine;
        let options = &self.inner.options;
        Ok(engine
            .store()
            .claim_steps_with_disputes(&options.worker_id, engine.clock().now(), limit as u64, options.lease)
            .await?)
    }

    /// One round of steps for [`Worker::run_once`]: claim as many as there are slots, perform them, record
    /// the successes in one statement, and return when all are done.
    async fn run_steps(&self) -> Result<usize, EngineError> {
        let steps = self.claim(self.inner.step_slots.available_permits().max(1)).await?;
        let count = steps.len();
        let mut tasks = JoinSet::new();
        for (step, preloaded) in steps {
            let worker = self.clone();
            tasks.spawn(async move {
                let _slot = match worker.inner.step_slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    Err(_) => return worker.release(Fence::Step(leased(&step))).await,
                };
                worker.run_step(step, preloaded).await
            });
        }
        let mut to_complete = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Done::NeedsCompletion(leased)) => to_complete.push(leased),
                Ok(done) => self.count_step(&done),
                Err(err) => tracing::error!(%err, "a step task panicked; its lease will expire"),
            }
        }
        self.record_successes(&to_complete).await;
        Ok(count)
    }

    fn count_step(&self, done: &Done) {
        match done {
            Done::Stale => metrics::counter!("verdict_leases_lost_total", "queue" => "steps").increment(1),
            Done::Fired | Done::Retried => {
                self.inner.steps_finished.fetch_add(1, Ordering::Relaxed);
            }
            Done::NeedsCompletion(_) | Done::Released => {}
        }
    }

    /// Marks performed steps succeeded in as few statements as possible.
    async fn record_successes(&self, to_complete: &[Leased]) {
        if to_complete.is_empty() {
            return;
        }
        let engine = &self.inner.engine;
        match engine.store().complete_steps(to_complete, engine.clock().now()).await {
            Ok(report) => {
                let succeeded = to_complete.len() - report.stale.len();
                self.inner.steps_finished.fetch_add(succeeded as u64, Ordering::Relaxed);
                metrics::counter!("verdict_steps_succeeded_total").increment(succeeded as u64);
                if !report.stale.is_empty() {
                    tracing::warn!(
                        stale = report.stale.len(),
                        "steps taken over before they were completed"
                    );
                    metrics::counter!("verdict_leases_lost_total", "queue" => "steps")
                        .increment(report.stale.len() as u64);
                }
            }
            // Performed but not recorded: the leases expire and the steps run again; their idempotency
            // keys keep the outside systems from a second effect.
            Err(err) => tracing::warn!(%err, steps = to_complete.len(), "recording step results failed"),
        }
    }

    /// The pipelined counterpart of [`Worker::run_steps`]: takes every free step slot, claims that many steps,
    /// and starts them in the background, each holding its slot until performed; successes go to
    /// `completions`. Returns how many were claimed.
    async fn start_steps(&self, completions: &mpsc::UnboundedSender<Leased>) -> Result<usize, EngineError> {
        let free = self.inner.step_slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        // Only this loop takes slots in `run`, so what was free is still free.
        let Ok(mut slots) = self.inner.step_slots.clone().try_acquire_many_owned(free as u32) else {
            return Ok(0);
        };
        // The claim size adapts to the backlog: it doubles while claims come back full and falls back to what
        // the last one found when they do not, so that a trickle is claimed in small batches and replicas
        // sharing a backlog do not hoard each other's steps.
        let size = (self.inner.claim_size.load(Ordering::Relaxed) as usize).clamp(1, free);
        let steps = self.claim(size).await?;
        let count = steps.len();
        let next = if count == size { size.saturating_mul(2) } else { count };
        let most = self.inner.options.step_concurrency.max(MIN_CLAIM);
        self.inner
            .claim_size
            .store(next.clamp(MIN_CLAIM, most) as u64, Ordering::Relaxed);
        if count == 0 {
            return Ok(0);
        }
        self.inner.step_claims.fetch_add(1, Ordering::Relaxed);
        // The slots no step was found for go back at once.
        drop(slots.split(free - count));
        let worker = self.clone();
        let completions = completions.clone();
        tokio::spawn(async move { worker.perform_batch(steps, slots, completions).await });
        Ok(count)
    }

    async fn perform_batch(
        self,
        steps: Vec<(ClaimedStep, Option<Dispute>)>,
        mut slots: OwnedSemaphorePermit,
        completions: mpsc::UnboundedSender<Leased>,
    ) {
        for (step, preloaded) in steps {
            let slot = slots.split(1);
            let worker = self.clone();
            let completions = completions.clone();
            tokio::spawn(async move {
                let done = worker.run_step(step, preloaded).await;
                match done {
                    Done::NeedsCompletion(leased) => {
                        if let Err(mpsc::error::SendError(leased)) = completions.send(leased) {
                            worker.record_successes(&[leased]).await;
                        }
                    }
                    done => worker.count_step(&done),
                }
                drop(slot);
            });
        }
    }

    /// Performs one claimed step (the caller holds its slot) and records a failure or a follow-up; a plain
    /// success is returned as `NeedsCompletion` to be recorded with others.
    async fn run_step(&self, step: ClaimedStep, preloaded: Option<Dispute>) -> Done {
        let leased = leased(&step);
        let fence = Fence::Step(leased);
        if self.stopping() {
            return self.release(fence).await;
        }
        let kind_label = step.kind.clone();
        let result = match self.context(&step, preloaded).await {
            Ok(ctx) => self.perform_with_lease(&ctx, fence).await.map(|outcome| (ctx, outcome)),
            Err(err) => Err(err),
        };
        match result {
            Ok((
                ctx,
                StepOutcome::Done {
                    follow_up,
                    follow_up_after,
                },
            )) => self.succeed(&step, &ctx, leased, follow_up, follow_up_after).await,
            Ok((ctx, StepOutcome::DoneThen { next })) => self.succeed_then(&step, &ctx, leased, next).await,
            Err(err) => {
                let permanent = !err.is_transient();
                let engine = &self.inner.engine;
                let delay = self.inner.options.backoff.delay(step.attempts, rand::random::<f64>());
                // A processor's `Retry-After` is honoured: never sooner than it asked.
                let delay = err
                    .retry_after()
                    .and_then(|after| Duration::from_std(after).ok())
                    .map_or(delay, |after| delay.max(after));
                let message = err.message().to_owned();
                match engine
                    .store()
                    .fail_step(leased, &message, permanent, delay, engine.clock().now())
                    .await
                {
                    Ok(StepFailure::Retrying(at)) => {
                        tracing::info!(step_id = %step.id, kind = %step.kind, attempt = step.attempts, %at, %message, "step failed; will retry");
                        metrics::counter!("verdict_step_retries_total", "kind" => kind_label).increment(1);
                        Done::Retried
                    }
                    Ok(StepFailure::Dead) => {
                        tracing::warn!(step_id = %step.id, kind = %step.kind, attempt = step.attempts, %message, "step dead-lettered");
                        metrics::counter!("verdict_steps_dead_lettered_total", "kind" => kind_label).increment(1);
                        Done::Retried
                    }
                    Ok(StepFailure::Stale) => Done::Stale,
                    Err(err) => {
                        tracing::error!(step_id = %step.id, kind = %step.kind, %err, "cannot record a step failure; the step runs again when its lease ends");
                        metrics::counter!("verdict_step_failures_unrecorded_total", "kind" => kind_label).increment(1);
                        Done::Retried
                    }
                }
            }
        }
    }

    async fn context(&self, step: &ClaimedStep, preloaded: Option<Dispute>) -> Result<StepContext, StepError> {
        let kind: StepKind = serde_json::from_value(serde_json::Value::String(step.kind.clone()))
            .map_err(|_| StepError::Permanent(format!("unknown step kind {:?}", step.kind)))?;
        let dispute_id = step
            .dispute_id
            .ok_or_else(|| StepError::Permanent("the step belongs to no dispute".into()))?;
        let dispute = match preloaded {
            Some(dispute) => dispute,
            None => self
                .inner
                .engine
                .store()
                .load(DisputeId::from_uuid(dispute_id))
                .await
                .map_err(|err| StepError::Transient(format!("loading the dispute: {err}")))?
                .ok_or_else(|| StepError::Permanent(format!("dispute {dispute_id} is gone")))?,
        };
        Ok(StepContext {
            step_id: step.id,
            kind,
            idempotency_key: step.idempotency_key.clone(),
            attempt: step.attempts,
            dispute,
            payload: step.payload.clone(),
        })
    }

    /// Performs the step while renewing its lease; a lost lease is logged (the result will be fenced off).
    async fn perform_with_lease(&self, ctx: &StepContext, fence: Fence) -> Result<StepOutcome, StepError> {
        let engine = &self.inner.engine;
        let options = &self.inner.options;
        let perform = self.inner.performer.perform(ctx);
        tokio::pin!(perform);
        // The first renewal one period from now. (Awaiting an interval's immediate first tick instead waited
        // for the timer wheel's next millisecond: 0.65 ms of a step's median start, measured.)
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + options.renew_every, options.renew_every);
        loop {
            tokio::select! {
                result = &mut perform => return result,
                _ = renew.tick() => {
                    let until = engine.clock().now() + options.lease;
                    match engine.store().renew_lease(fence, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(step_id = %ctx.step_id, "step lease lost while running"),
                        Err(err) => tracing::warn!(%err, "cannot renew a step lease"),
                    }
                }
            }
        }
    }

    async fn succeed(
        &self,
        step: &ClaimedStep,
        ctx: &StepContext,
        leased: Leased,
        follow_up: Option<verdict_domain::Action>,
        follow_up_after: Option<Duration>,
    ) -> Done {
        let engine = &self.inner.engine;
        let now = engine.clock().now();
        let result: Result<bool, EngineError> = match (follow_up, follow_up_after) {
            // Nothing to feed back: completed with the rest of the batch, in one statement.
            (None, _) => return Done::NeedsCompletion(leased),
            (Some(action), Some(after)) if after > Duration::zero() => match serde_json::to_value(&action) {
                Ok(payload) => engine
                    .store()
                    .complete_step_with_timer(
                        leased,
                        &NewTimer {
                            dispute_id: Some(ctx.dispute.id.as_uuid()),
                            kind: FOLLOW_UP_TIMER.to_owned(),
                            due_at: now + after,
                            payload: Some(payload),
                        },
                        now,
                    )
                    .await
                    .map_err(Into::into),
                Err(err) => Err(EngineError::Store(StoreError::Corrupt(format!(
                    "follow-up does not serialise: {err}"
                )))),
            },
            (Some(action), _) => {
                let command = Command::new(
                    Actor {
                        kind: ActorKind::Step,
                        name: step.kind.clone(),
                    },
                    action,
                );
                // Decided on the dispute the claim read; the commit's version check catches a move since.
                match engine
                    .handle_fenced(ctx.dispute.clone(), command, Fence::Step(leased))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(EngineError::Store(StoreError::LeaseLost)) => Ok(false),
                    Err(EngineError::Domain(
                        err @ (DomainError::IllegalTransition { .. } | DomainError::InvalidInput(_)),
                    )) => {
                        tracing::info!(step_id = %step.id, %err, "the step's follow-up no longer applies");
                        engine
                            .store()
                            .complete_steps(&[leased], now)
                            .await
                            .map(|r| r.stale.is_empty())
                            .map_err(Into::into)
                    }
                    Err(err) => Err(err),
                }
            }
        };
        self.recorded(step, leased, result).await
    }

    /// What a step's completion write came to: counted once it is recorded, discarded when another worker
    /// took the step over, retried when it could not be written.
    async fn recorded<E: std::fmt::Display>(
        &self,
        step: &ClaimedStep,
        leased: Leased,
        result: Result<bool, E>,
    ) -> Done {
        match result {
            Ok(true) => {
                // Unlabelled, like the batched successes in `record_successes`: one series, so a sum counts
                // each step once.
                metrics::counter!("verdict_steps_succeeded_total").increment(1);
                Done::Fired
            }
            Ok(false) => {
                tracing::warn!(step_id = %step.id, "step taken over by another worker; its result was discarded");
                Done::Stale
            }
            Err(err) => self.result_not_recorded(step, leased, &err.to_string()).await,
        }
    }

    /// Records a step done and enqueues what follows from it in one transaction (see
    /// [`StepOutcome::DoneThen`]).
    async fn succeed_then(&self, step: &ClaimedStep, ctx: &StepContext, leased: Leased, next: Vec<NextStep>) -> Done {
        let engine = &self.inner.engine;
        let next: Vec<NewStep> = next
            .into_iter()
            .map(|n| NewStep {
                dispute_id: Some(ctx.dispute.id.as_uuid()),
                kind: n.kind.as_str().to_owned(),
                idempotency_key: n.idempotency_key,
                payload: n.payload,
            })
            .collect();
        let result = engine
            .store()
            .complete_step_with_steps(leased, &next, engine.clock().now())
            .await;
        self.recorded(step, leased, result).await
    }

    /// Performed, but its result could not be recorded: the step is retried (the idempotency key, and for
    /// refunds and acceptances the check at the processor, keep a second try from acting twice). If even the
    /// retry cannot be written, the lease expires and the step is claimed again; either way it is logged and
    /// counted, never dropped silently.
    async fn result_not_recorded(&self, step: &ClaimedStep, leased: Leased, err: &str) -> Done {
        let engine = &self.inner.engine;
        tracing::warn!(step_id = %step.id, kind = %step.kind, %err, "recording a step result failed; retrying");
        metrics::counter!("verdict_step_results_unrecorded_total", "kind" => step.kind.clone()).increment(1);
        let delay = self.inner.options.backoff.delay(step.attempts, rand::random::<f64>());
        match engine
            .store()
            .fail_step(
                leased,
                &format!("recording the result: {err}"),
                false,
                delay,
                engine.clock().now(),
            )
            .await
        {
            Ok(StepFailure::Retrying(_) | StepFailure::Dead) => Done::Retried,
            Ok(StepFailure::Stale) => Done::Stale,
            Err(fail_err) => {
                tracing::error!(
                    step_id = %step.id,
                    kind = %step.kind,
                    err = %fail_err,
                    "cannot record a step failure either; the step runs again when its lease ends"
                );
                metrics::counter!("verdict_step_failures_unrecorded_total", "kind" => step.kind.clone()).increment(1);
                Done::Retried
            }
        }
    }

    /// Asks the pool to stop: claimed work not yet started is released, running work finishes.
    pub fn stop(&self) {
        let _ = self.inner.stop.send(true);
    }

    /// Loops until `shutdown` completes, then waits for the steps it started (releasing what it has not
    /// started), records their results and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let store = self.inner.engine.store().clone();
        let listener = match store.listen_for_work().await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for work notifications; polling only");
                None
            }
        };
        let wake = store.work_signal();
        let stopper = self.clone();
        let shutdown_task = tokio::spawn(async move {
            shutdown.await;
            stopper.stop();
        });
        let (completions, mut finished) = mpsc::unbounded_channel::<Leased>();
        let completer = {
            let worker = self.clone();
            // Whatever finished while the previous statement ran is recorded by the next one.
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(1_024);
                while finished.recv_many(&mut batch, 4_096).await > 0 {
                    worker.record_successes(&batch).await;
                    batch.clear();
                }
            })
        };
        let mut stopping = self.inner.stopping.clone();
        let slots = self.inner.step_slots.clone();
        // The cron jobs run beside this loop, in their own task: a long reconciliation must not hold up this
        // replica's timers and steps.
        let schedules = self.inner.scheduler.clone().map(|scheduler| {
            tokio::spawn(run_schedules(
                scheduler,
                self.inner.options.worker_id.clone(),
                self.inner.engine.clock().clone(),
                self.inner.stopping.clone(),
            ))
        });
        tracing::info!(worker = %self.inner.options.worker_id, "worker pool started");
        while !self.stopping() {
            let sleep = match self.pipelined_round(&completions).await {
                Ok(worked) => {
                    if worked > 0 {
                        continue;
                    }
                    self.idle_sleep().await
                }
                Err(err) => {
                    tracing::warn!(%err, "worker round failed");
                    self.inner.options.max_idle.min(StdDuration::from_secs(5))
                }
            };
            let busy = slots.available_permits() == 0;
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = wake.notified() => {}
                _ = stopping.changed() => {}
                // Every slot taken: a step finishing is worth a new claim.
                _ = slots.acquire(), if busy => {}
            }
        }
        // Wait for the steps in flight (they see `stopping` and release what they have not started).
        let all = u32::try_from(self.inner.options.step_concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
        drop(completions);
        if let Err(err) = completer.await {
            tracing::error!(%err, "the step completer panicked");
        }
        shutdown_task.abort();
        if let Some(schedules) = schedules {
            // A job cut short leaves its tick claimed until its lease ends; the next tick runs as usual, and
            // every job is safe to run again (digests and reconciliation are idempotent, purges are batched).
            schedules.abort();
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        tracing::info!(worker = %self.inner.options.worker_id, "worker pool stopped");
    }

    /// One round of [`Worker::run`]: a batch of timers, and as many new steps as there are free slots, started
    /// without waiting for them. (Cron ticks run in their own task, see [`run_schedules`].)
    async fn pipelined_round(&self, completions: &mpsc::UnboundedSender<Leased>) -> Result<usize, EngineError> {
        // Side by side, on two connections: neither kind of work waits for the other's claim.
        let (timers, steps) = tokio::join!(self.fire_timers(), self.start_steps(completions));
        Ok(timers? + steps?)
    }

    /// How long to sleep after an idle round: until the next due time, within [min_idle, max_idle].
    async fn idle_sleep(&self) -> StdDuration {
        let options = &self.inner.options;
        let engine = &self.inner.engine;
        let next = engine.store().next_due_at().await.ok().flatten();
        let until = next
            .map(|at| (at - engine.clock().now()).to_std().unwrap_or(StdDuration::ZERO))
            .unwrap_or(options.max_idle);
        until.clamp(options.min_idle, options.max_idle)
    }
}

/// The smallest claim of steps of the run loop (see [`Worker::start_steps`]).
const MIN_CLAIM: usize = 16;

/// The longest the schedule task sleeps without reading the schedules again. It wakes at the next tick anyway;
/// this only bounds how late it sees a tick another replica's configuration moved earlier (that replica fires
/// it meanwhile). Reading every second made two queries a second of an idle replica's three.
const SCHEDULES_READ_EVERY: StdDuration = StdDuration::from_secs(30);
/// How soon the schedule task tries again after failing to read or claim the schedules.
const SCHEDULES_RETRY: StdDuration = StdDuration::from_secs(1);

/// The cron schedules of one replica, beside its worker loop: due ticks are claimed and their jobs run one at
/// a time (each bounded by the tick's lease, see [`Scheduler::run_due`]), then the task sleeps until the next
/// tick, reading the schedules again at least every [`SCHEDULES_READ_EVERY`]. A slow job delays only the
/// next cron tick of this replica, never its timers and steps.
async fn run_schedules(
    scheduler: Scheduler,
    worker_id: String,
    clock: Arc<dyn crate::Clock>,
    mut stopping: watch::Receiver<bool>,
) {
    while !*stopping.borrow() {
        let failed = match scheduler.run_due(&worker_id).await {
            Ok(_) => false,
            Err(err) => {
                tracing::warn!(%err, "running the cron schedules failed; trying again shortly");
                true
            }
        };
        let sleep = match scheduler.next_tick().await {
            Ok(Some(tick)) if !failed => (tick - clock.now()).to_std().unwrap_or(StdDuration::ZERO),
            Ok(None) if !failed => SCHEDULES_READ_EVERY,
            _ => SCHEDULES_RETRY,
        }
        .clamp(StdDuration::from_millis(5), SCHEDULES_READ_EVERY);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            _ = stopping.changed() => {}
        }
    }
}

fn leased(step: &ClaimedStep) -> Leased {
    Leased {
        id: step.id,
        lease_token: step.lease_token,
    }
}
