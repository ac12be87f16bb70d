//! Cron schedules: the daily digest, the hourly timer sweep, processor reconciliation, retention, the
//! pattern summary and the queue tables' vacuum.
//!
//! Expressions use the `cron` crate's syntax, which starts with a seconds field (`0 0 7 * * *` is 07:00:00
//! daily), evaluated in the schedule's IANA time zone. Each replica runs [`Scheduler::run_due`] in a task of
//! its own beside the worker loop (one job at a time, each bounded by the tick's lease), so a long
//! reconciliation never holds up that replica's timers and steps; a tick is claimed through the schedule's row (compare-and-set on `next_fire_at`, plus a lease), so
//! it fires once across replicas, and after downtime a schedule fires once to catch up.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use verdict_domain::Status;
use verdict_store::{DueSoon, NewTimer, ScheduleRow};

use crate::{Engine, EngineError};

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Per queue, the open disputes due within `digest_window_hours`.
    Digest,
    /// Recreates missing timers of open disputes.
    Sweep,
    /// Asks each processor adapter for disputes changed since the last run.
    Reconcile,
    /// Blanks raw notification bodies older than the retention period (they carry customer data).
    PurgePayloads,
    /// Deletes the finished timers and steps of disputes closed for longer than `finished_work_retention_minutes`,
    /// so the queue tables hold live work and recent history only; the events stay the history.
    PurgeFinishedWork,
    /// Summarises the months whose disputes changed since its last run, so patterns and monitoring read the
    /// summary instead of every dispute (the store's `pattern_summary` module).
    RefreshPatternSummary,
    /// On PostgreSQL, vacuums the queue tables (timers, steps, notifications, schedules) holding at least
    /// [`QUEUE_VACUUM_DEAD_ROWS`] dead rows, so that claims on an emptied queue stay cheap where autovacuum is
    /// off or behind; nothing on SQLite.
    VacuumQueues,
}

/// Dead rows in a queue table that make the `vacuum_queues` job vacuum it: four times autovacuum's threshold
/// for these tables (migration 12), so the job stays idle where autovacuum keeps up and only steps in where it
/// is off or behind.
pub const QUEUE_VACUUM_DEAD_ROWS: i64 = 20_000;

/// Raw bodies purged per statement, and statements per run: a run is bounded, the next tick carries on.
const PURGE_BATCH: u64 = 1_000;
const PURGE_BATCHES_PER_RUN: usize = 200;

/// `[[scheduling.schedules]]` in verdict.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique; the row in `schedules` that replicas share.
    pub name: String,
    /// Six or seven fields, seconds first: `0 0 7 * * *`.
    pub cron: String,
    /// IANA name, e.g. `Europe/Berlin`; defaults to UTC.
    #[serde(default = "utc")]
    pub time_zone: String,
    pub job: Job,
}

fn utc() -> String {
    "UTC".to_owned()
}

impl ScheduleConfig {
    pub fn defaults() -> Vec<Self> {
        vec![
            Self {
                name: "daily_digest".into(),
                cron: "0 0 7 * * *".into(),
                time_zone: utc(),
                job: Job::Digest,
            },
            Self {
                name: "timer_sweep".into(),
                cron: "0 17 * * * *".into(),
                time_zone: utc(),
                job: Job::Sweep,
            },
            Self {
                name: "reconcile".into(),
                cron: "0 */15 * * * *".into(),
                time_zone: utc(),
                job: Job::Reconcile,
            },
            Self {
                name: "payload_retention".into(),
                cron: "0 30 3 * * *".into(),
                time_zone: utc(),
                job: Job::PurgePayloads,
            },
            Self {
                name: "finished_work_purge".into(),
                cron: "0 */10 * * * *".into(),
                time_zone: utc(),
                job: Job::PurgeFinishedWork,
            },
            Self {
                name: "pattern_summary".into(),
                cron: "0 * * * * *".into(),
                time_zone: utc(),
                job: Job::RefreshPatternSummary,
            },
            Self {
                name: "queue_vacuum".into(),
                cron: "30 * * * * *".into(),
                time_zone: utc(),
                job: Job::VacuumQueues,
            },
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {name}: invalid cron expression {cron:?}: {reason}")]
    Cron { name: String, cron: String, reason: String },
    #[error("schedule {name}: unknown time zone {time_zone:?}")]
    TimeZone { name: String, time_zone: String },
    #[error("schedule {0} is configured twice")]
    Duplicate(String),
}

/// The disputes due soon in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub queue: String,
    pub generated_at: DateTime<Utc>,
    pub window: Duration,
    pub disputes: Vec<DueSoon>,
}

/// Where digests go; the default logs them.
#[async_trait::async_trait]
pub trait DigestSink: Send + Sync + 'static {
    async fn deliver(&self, digest: &Digest) -> Result<(), String>;
}

pub struct LogDigests;

#[async_trait::async_trait]
impl DigestSink for LogDigests {
    async fn deliver(&self, digest: &Digest) -> Result<(), String> {
        tracing::info!(
            queue = %digest.queue,
            due_soon = digest.disputes.len(),
            window_hours = digest.window.num_hours(),
            "daily digest"
        );
        Ok(())
    }
}

/// Stores each queue's digest in the mailbox (channel `queue`, recipient the queue's name), and logs it.
///
/// The message id is `digest:<queue>:<UTC date>`, so a tick fired again the same day stores nothing new.
pub struct MailboxDigests {
    store: verdict_store::Store,
}

impl MailboxDigests {
    pub fn new(store: verdict_store::Store) -> Self {
        Self { store }
    }

    /// The message id a queue's digest of `generated_at`'s day is stored under.
    pub fn message_id(queue: &str, generated_at: DateTime<Utc>) -> String {
        format!("digest:{queue}:{}", generated_at.format("%Y-%m-%d"))
    }
}

#[async_trait::async_trait]
impl DigestSink for MailboxDigests {
    async fn deliver(&self, digest: &Digest) -> Result<(), String> {
        LogDigests.deliver(digest).await?;
        let mut body = format!(
            "{} open dispute(s) in queue {} are due within {} hours:\n",
            digest.disputes.len(),
            digest.queue,
            digest.window.num_hours()
        );
        for d in &digest.disputes {
            body.push_str(&format!(
                "- {} ({}) due {}{}\n",
                d.id,
                d.status,
                d.due_by.to_rfc3339(),
                d.assignee
                    .as_deref()
                    .map(|a| format!(", assigned to {a}"))
                    .unwrap_or_default()
            ));
        }
        let message = verdict_store::NewMailboxMessage {
            dispute_id: None,
            channel: verdict_store::MailboxChannel::Queue,
            transport: "mailbox".to_owned(),
            recipient: digest.queue.clone(),
            locale: "en".to_owned(),
            subject: format!("Digest for queue {}: {} due soon", digest.queue, digest.disputes.len()),
            body,
            message_id: Self::message_id(&digest.queue, digest.generated_at),
            created_at: digest.generated_at,
        };
        match self.store.store_mail(&message).await {
            Ok(verdict_store::MailboxInsert::Stored(_)) => Ok(()),
            Ok(verdict_store::MailboxInsert::AlreadyStored) => {
                tracing::debug!(queue = %digest.queue, "digest already stored today");
                Ok(())
            }
            Err(err) => Err(format!("storing the digest: {err}")),
        }
    }
}

/// A processor adapter that can list disputes changed since a time, to catch notifications that never came.
/// The default does nothing; a processor's adapter overrides [`Reconciler::reconcile`].
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// Applies what changed at the processor since `since` (`None`: the first run) and says how many disputes
    /// it touched.
    async fn reconcile(
        &self,
        _engine: &Engine,
        _since: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Result<usize, String> {
        Ok(0)
    }
}

pub struct NoopReconciler;

impl Reconciler for NoopReconciler {
    fn name(&self) -> &str {
        "noop"
    }
}

#[derive(Clone)]
struct Entry {
    config: ScheduleConfig,
    schedule: cron::Schedule,
    zone: Tz,
}

/// The configured schedules of one replica; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    engine: Engine,
    entries: Arc<Vec<Entry>>,
    digest_window: Duration,
    digests: Arc<dyn DigestSink>,
    reconcilers: Arc<Vec<Arc<dyn Reconciler>>>,
    lease: Duration,
    payload_retention: Duration,
    finished_work_retention: Duration,
}

/// The first tick of `schedule` strictly after `after`, in UTC.
pub fn next_tick(schedule: &cron::Schedule, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&zone))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

impl Scheduler {
    pub fn new(engine: Engine, configs: &[ScheduleConfig], digest_window: Duration) -> Result<Self, ScheduleError> {
        let mut entries: Vec<Entry> = Vec::new();
        for config in configs {
            if entries.iter().any(|e| e.config.name == config.name) {
                return Err(ScheduleError::Duplicate(config.name.clone()));
            }
            let schedule = cron::Schedule::from_str(config.cron.trim()).map_err(|err| ScheduleError::Cron {
                name: config.name.clone(),
                cron: config.cron.clone(),
                reason: err.to_string(),
            })?;
            let zone: Tz = config.time_zone.trim().parse().map_err(|_| ScheduleError::TimeZone {
                name: config.name.clone(),
                time_zone: config.time_zone.clone(),
            })?;
            entries.push(Entry {
                config: config.clone(),
                schedule,
                zone,
            });
        }
        Ok(Self {
            engine,
            entries: Arc::new(entries),
            digest_window,
            digests: Arc::new(LogDigests),
            reconcilers: Arc::new(vec![Arc::new(NoopReconciler) as Arc<dyn Reconciler>]),
            lease: Duration::minutes(10),
            payload_retention: Duration::days(crate::timers::DEFAULT_PAYLOAD_RETENTION_DAYS),
            finished_work_retention: Duration::minutes(crate::timers::DEFAULT_FINISHED_WORK_RETENTION_MINUTES),
        })
    }

    /// How long raw notification bodies are kept.
    pub fn with_payload_retention(mut self, retention: Duration) -> Self {
        self.payload_retention = retention;
        self
    }

    /// How long the finished timers and steps of a closed dispute stay in the queue tables.
    pub fn with_finished_work_retention(mut self, retention: Duration) -> Self {
        self.finished_work_retention = retention;
        self
    }

    /// Blanks the raw bodies of finished notifications received more than the retention period ago; returns
    /// how many. Bounded per run; what is left goes at the next tick.
    pub async fn purge_payloads(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let before = now - self.payload_retention;
        let mut purged = 0;
        for _ in 0..PURGE_BATCHES_PER_RUN {
            let n = self
                .engine
                .store()
                .purge_notification_payloads(before, now, PURGE_BATCH)
                .await?;
            purged += n as usize;
            if n < PURGE_BATCH {
                break;
            }
        }
        if purged > 0 {
            tracing::info!(purged, %before, "raw notification bodies past retention purged");
            metrics::counter!("verdict_notification_payloads_purged_total").increment(purged as u64);
        }
        Ok(purged)
    }

    /// Vacuums the queue tables with at least [`QUEUE_VACUUM_DEAD_ROWS`] dead rows; returns how many it vacuumed.
    pub async fn vacuum_queues(&self) -> Result<usize, EngineError> {
        let vacuumed = self.engine.store().vacuum_queue_tables(QUEUE_VACUUM_DEAD_ROWS).await?;
        for table in &vacuumed {
            tracing::info!(%table, "queue table vacuumed");
            metrics::counter!("verdict_queue_vacuums_total", "table" => table.clone()).increment(1);
        }
        Ok(vacuumed.len())
    }

    /// Deletes the finished timers and steps of disputes closed and untouched for longer than the retention;
    /// returns how many rows went. Bounded per run; what is left goes at the next tick.
    pub async fn purge_finished_work(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let before = now - self.finished_work_retention;
        let (mut timers, mut steps) = (0, 0);
        for _ in 0..PURGE_BATCHES_PER_RUN {
            let (t, s) = self.engine.store().purge_finished_work(before, PURGE_BATCH).await?;
            timers += t;
            steps += s;
            if t < PURGE_BATCH && s < PURGE_BATCH {
                break;
            }
        }
        if timers + steps > 0 {
            tracing::info!(timers, steps, %before, "finished timers and steps of closed disputes deleted");
            metrics::counter!("verdict_finished_work_deleted_total").increment(timers + steps);
        }
        Ok((timers + steps) as usize)
    }

    /// Summarises the months changed since the last run; returns how many.
    pub async fn refresh_pattern_summary(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let started = std::time::Instant::now();
        let months = self.engine.store().refresh_pattern_summary(now).await?;
        if months > 0 {
            tracing::info!(
                months,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pattern summary refreshed"
            );
        }
        Ok(months)
    }

    pub fn with_digest_sink(mut self, sink: Arc<dyn DigestSink>) -> Self {
        self.digests = sink;
        self
    }

    pub fn with_reconcilers(mut self, reconcilers: Vec<Arc<dyn Reconciler>>) -> Self {
        self.reconcilers = Arc::new(reconcilers);
        self
    }

    /// Creates or updates each schedule's row; a changed expression or zone restarts it from now.
    pub async fn ensure(&self) -> Result<(), EngineError> {
        let now = self.engine.clock().now();
        for entry in self.entries.iter() {
            if let Some(next) = next_tick(&entry.schedule, entry.zone, now) {
                self.engine
                    .store()
                    .ensure_schedule(
                        &entry.config.name,
                        &entry.config.cron,
                        &entry.config.time_zone,
                        next,
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// The earliest next tick among this replica's schedules.
    pub async fn next_tick(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let rows = self.engine.store().schedules().await?;
        Ok(rows
            .iter()
            .filter(|row| self.entries.iter().any(|e| e.config.name == row.name))
            .map(|row| row.next_fire_at)
            .min())
    }

    /// Claims and runs every due tick; returns the names of the schedules this replica fired.
    pub async fn run_due(&self, worker: &str) -> Result<Vec<String>, EngineError> {
        let now = self.engine.clock().now();
        let rows = self.engine.store().schedules().await?;
        let mut fired = Vec::new();
        for entry in self.entries.iter() {
            let Some(row) = rows.iter().find(|r| r.name == entry.config.name) else {
                self.ensure().await?;
                continue;
            };
            if row.next_fire_at > now {
                continue;
            }
            if row.cron != entry.config.cron || row.time_zone != entry.config.time_zone {
                // Another replica runs a different configuration; the row follows whoever wrote it last.
                tracing::debug!(schedule = %row.name, "schedule row differs from this replica's configuration");
            }
            let Some(next) = next_tick(&entry.schedule, entry.zone, now) else {
                continue;
            };
            let Some(claim) = self
                .engine
                .store()
                .claim_schedule_tick(row, next, worker, now, self.lease)
                .await?
            else {
                continue;
            };
            let missed = row.next_fire_at < now - Duration::minutes(1);
            tracing::info!(schedule = %row.name, tick = %claim.tick, catch_up = missed, "schedule fired");
            metrics::counter!("verdict_schedule_ticks_total", "schedule" => row.name.clone()).increment(1);
            // Bounded within the tick's lease (nine tenths of it, so no other replica takes the tick over while
            // this one still runs it): a job that hangs (a processor that never answers) is given up, and the
            // replica's other schedules carry on.
            let bound = self
                .lease
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(600))
                .mul_f64(0.9);
            match tokio::time::timeout(bound, self.run_job(entry.config.job, row, now)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(schedule = %row.name, %err, "scheduled job failed; it runs again at the next tick")
                }
                Err(_) => {
                    tracing::warn!(schedule = %row.name, seconds = bound.as_secs(), "scheduled job took longer than its lease; given up until the next tick");
                    metrics::counter!("verdict_schedule_jobs_timed_out_total", "schedule" => row.name.clone())
                        .increment(1);
                }
            }
            self.engine.store().finish_schedule_tick(&claim).await?;
            fired.push(row.name.clone());
        }
        Ok(fired)
    }

    async fn run_job(&self, job: Job, row: &ScheduleRow, now: DateTime<Utc>) -> Result<usize, EngineError> {
        match job {
            Job::Digest => self.digest(now).await,
            Job::Sweep => self.sweep(now).await,
            Job::PurgePayloads => self.purge_payloads(now).await,
            Job::PurgeFinishedWork => self.purge_finished_work(now).await,
            Job::RefreshPatternSummary => self.refresh_pattern_summary(now).await,
            Job::VacuumQueues => self.vacuum_queues().await,
            Job::Reconcile => {
                let mut touched = 0;
                for reconciler in self.reconcilers.iter() {
                    match reconciler.reconcile(&self.engine, row.last_fired_at, now).await {
                        Ok(n) => touched += n,
                        Err(err) => tracing::warn!(reconciler = reconciler.name(), %err, "reconciliation failed"),
                    }
                }
                Ok(touched)
            }
        }
    }

    /// Delivers one digest per queue (disputes not triaged yet go to `untriaged`); returns how many.
    pub async fn digest(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        let due = self.engine.store().due_between(now, now + self.digest_window).await?;
        let mut by_queue: BTreeMap<String, Vec<DueSoon>> = BTreeMap::new();
        for dispute in due {
            let queue = dispute.queue.clone().unwrap_or_else(|| "untriaged".to_owned());
            by_queue.entry(queue).or_default().push(dispute);
        }
        let count = by_queue.len();
        for (queue, disputes) in by_queue {
            let digest = Digest {
                queue,
                generated_at: now,
                window: self.digest_window,
                disputes,
            };
            if let Err(err) = self.digests.deliver(&digest).await {
                tracing::warn!(queue = %digest.queue, %err, "digest not delivered");
            }
        }
        Ok(count)
    }

    /// Recreates the timers of open disputes that have none (a bug, a manual database fix, a lost write).
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<usize, EngineError> {
        sweep_missing_timers(&self.engine, now).await
    }
}

/// The sweep itself, usable without a scheduler: returns how many disputes got their timers back.
pub async fn sweep_missing_timers(engine: &Engine, now: DateTime<Utc>) -> Result<usize, EngineError> {
    let store = engine.store();
    let disputes = store.disputes_missing_timers(500).await?;
    let mut timers = Vec::new();
    for dispute in &disputes {
        let dispute_id = Some(dispute.id.as_uuid());
        if dispute.status == Status::Submitted {
            let submitted = store
                .entered_status_at(dispute.id.as_uuid(), Status::Submitted)
                .await?
                .unwrap_or(dispute.updated_at);
            timers.push(NewTimer {
                dispute_id,
                kind: verdict_domain::TimerKind::OutcomeCheck.label(),
                due_at: submitted + engine.timing().outcome_check,
                payload: None,
            });
        } else if let Some(due_by) = dispute.due_by {
            timers.extend(
                engine
                    .timing()
                    .deadline_timers(due_by, now)
                    .into_iter()
                    .map(|(kind, due_at)| NewTimer {
                        dispute_id,
                        kind: kind.label(),
                        due_at,
                        payload: None,
                    }),
            );
        }
    }
    if !timers.is_empty() {
        tracing::warn!(
            disputes = disputes.len(),
            timers = timers.len(),
            "sweep recreated missing timers"
        );
        store.insert_timers(&timers, now).await?;
    }
    Ok(disputes.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_daily_tick_follows_the_time_zone() {
        let schedule = cron::Schedule::from_str("0 0 7 * * *").unwrap();
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        // 07:00 in Berlin in November (CET, UTC+1) is 06:00 UTC.
        assert_eq!(
            next_tick(&schedule, zone, after),
            Some(Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0).unwrap())
        );
    }

    #[test]
    fn the_default_schedules_parse() {
        for config in ScheduleConfig::defaults() {
            cron::Schedule::from_str(&config.cron).unwrap();
        }
    }
}
