//! The worker pool of this replica, built from configuration: step handlers, timing, cron schedules.

use std::sync::Arc;

use anyhow::Context as _;
use chrono::Duration;
use verdict_engine::Engine;
use verdict_engine::effects::{Effects, EffectsConfig, StepPerformer, StoredSubmission, StripeReconciler};
use verdict_engine::schedules::{MailboxDigests, NoopReconciler, Reconciler, Scheduler};
use verdict_engine::timers::{SchedulingConfig, TimingPolicy};
use verdict_engine::worker::{Worker, WorkerOptions};
use verdict_evidence::FileStore;

/// A worker id unique to this process: host name (when known), process id and a random suffix.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "verdict".to_owned());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    )
}

/// The engine with the configured timing policy (reminder offsets, submit margin, deadline policy).
pub fn with_timing(engine: Engine, scheduling: &SchedulingConfig) -> Engine {
    engine.with_timing(TimingPolicy::from_config(scheduling))
}

/// A worker pool that performs steps with `performer` and runs the configured schedules (no reconciler).
pub async fn pool(
    engine: &Engine,
    scheduling: &SchedulingConfig,
    performer: Arc<dyn StepPerformer>,
) -> anyhow::Result<Worker> {
    pool_with_reconcilers(engine, scheduling, performer, vec![Arc::new(NoopReconciler)]).await
}

/// A worker pool whose Reconcile schedule asks `reconcilers`; digests go to the mailbox (and the log).
pub async fn pool_with_reconcilers(
    engine: &Engine,
    scheduling: &SchedulingConfig,
    performer: Arc<dyn StepPerformer>,
    reconcilers: Vec<Arc<dyn Reconciler>>,
) -> anyhow::Result<Worker> {
    let scheduler = Scheduler::new(
        engine.clone(),
        &scheduling.schedules,
        Duration::hours(scheduling.digest_window_hours.max(1)),
    )
    .context("configuring schedules")?
    .with_digest_sink(Arc::new(MailboxDigests::new(engine.store().clone())))
    .with_reconcilers(reconcilers)
    .with_payload_retention(Duration::days(scheduling.payload_retention_days.max(1)))
    .with_finished_work_retention(Duration::minutes(scheduling.finished_work_retention_minutes.max(1)));
    scheduler.ensure().await.context("registering schedules")?;
    let options = WorkerOptions::from_config(scheduling, worker_id());
    Ok(Worker::new(engine.clone(), performer, options).with_scheduler(scheduler))
}

/// The pool with the configured outside systems (local defaults for whatever is not configured). With
/// `evidence_files` (where uploads are kept), a submission sends the stored evidence and its files, the order
/// facts and the defense document rendered from them; without, only what its step's payload holds.
pub async fn configured_pool(
    engine: &Engine,
    scheduling: &SchedulingConfig,
    effects: &EffectsConfig,
    evidence_files: Option<Arc<dyn FileStore>>,
) -> anyhow::Result<Worker> {
    // Every commit of this replica writes the deliveries of its events from now on.
    let routes = verdict_engine::effects::outbound_routes(&effects.outbound_webhooks)
        .context("configuring outbound webhooks")?;
    engine.store().route_outbound_webhooks(routes);
    let mut performer = Effects::from_config(effects, engine.store().clone(), engine.clock().clone())
        .context("configuring step handlers")?
        .with_facts(engine.facts().clone())
        .with_seller_tasks(engine.seller_tasks());
    if let Some(files) = evidence_files {
        performer = performer.with_submissions(Arc::new(StoredSubmission::new(
            engine.store().clone(),
            files,
            engine.facts().clone(),
            engine.clock().clone(),
        )));
    }
    let reconciler: Arc<dyn Reconciler> =
        match StripeReconciler::from_config(&effects.processors).context("configuring Stripe reconciliation")? {
            Some(stripe) => Arc::new(stripe),
            None => Arc::new(NoopReconciler),
        };
    pool_with_reconcilers(engine, scheduling, Arc::new(performer), vec![reconciler]).await
}

/// The pool with default settings and local stand-ins for the outside systems (the sandbox processor, which
/// invents outcomes, and the mailbox): for tests, benchmarks and the demo, never for `serve`.
pub async fn local_pool(engine: &Engine, evidence_files: Option<Arc<dyn FileStore>>) -> anyhow::Result<Worker> {
    let effects = EffectsConfig {
        sandbox: true,
        ..EffectsConfig::default()
    };
    configured_pool(engine, &SchedulingConfig::default(), &effects, evidence_files).await
}
