//! The work queues: claiming due timers and pending steps with a lease, completing them under a fencing
//! token, retries with exponential backoff, dead letters, and the wake-up signal for idle workers.
//!
//! Claims are batched. On PostgreSQL the candidate rows are picked with `FOR UPDATE SKIP LOCKED`, so replicas
//! claiming at the same moment take disjoint rows without waiting on each other; on SQLite (one process) the
//! single `UPDATE ... WHERE id IN (SELECT ...)` is atomic by itself. Every claim writes a fresh `lease_token`;
//! completing, failing, renewing or releasing requires it, so a worker whose lease expired and whose row was
//! taken over changes nothing and is told so.
//!
//! A lease token is cleared whenever a row leaves `pending` (completed, dead, cancelled). The fenced statements
//! match on `(id, lease_token)` and check the status as `STILL_PENDING`, a form the planner cannot match to
//! the `status = 'pending'` partial indexes: with `status = 'pending'` it scanned such an index (priced at one
//! row by statistics taken while the queue was empty) and every pending row per completion (seen under load:
//! 0.6 ms per completed step with a few thousand pending, instead of a primary-key lookup). The check itself
//! stays for rows written by an older release, whose timer cancellations left the token in place.
//!
//! On PostgreSQL a claim commits without waiting for its WAL flush (`synchronous_commit` off for that one
//! statement, see [`ASYNC_COMMIT`]): the flush is a quarter of a one-step claim's time (pgbench on the test
//! machine, idle: 0.72-0.87 ms with it, 0.55-0.63 ms without), and the claim is most of the wait between a step
//! being added and starting. A claim is the one write here whose loss is harmless: only a crash of the database
//! server itself, within a few hundred milliseconds of the claim, loses it, and the row is then pending and
//! unleased again, as after an expired lease. The first holder's completion is then fenced out by the new token,
//! the step runs again under its idempotency key (as after any lease expiry), and an attempt may go uncounted.
//! Everything that records an outcome (completions, failures, commands) still commits durably, and its flush also
//! makes the claim before it durable (WAL is written in order).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use crate::{Store, StoreError};

/// "Still pending", written so that no partial index over `status = 'pending'` is implied (see the module doc).
const STILL_PENDING: &str = "CASE WHEN status = 'pending' THEN 1 END = 1";

/// A condition (always true) that turns off the wait for the WAL flush at the commit of the statement it ends.
/// An uncorrelated subquery, so PostgreSQL evaluates it once, before the statement reads a row.
const ASYNC_COMMIT: &str = "AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'";

/// The PostgreSQL channel that wakes workers in every replica when work was added.
pub const WORK_CHANNEL: &str = "verdict_work";

/// A timer claimed by one worker until `locked_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTimer {
    pub id: Uuid,
    pub dispute_id: Option<Uuid>,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    /// Tries so far, this one included.
    pub attempts: i32,
    pub payload: Option<serde_json::Value>,
    pub lease_token: Uuid,
}

/// A step claimed by one worker until `locked_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedStep {
    pub id: Uuid,
    pub dispute_id: Option<Uuid>,
    pub kind: String,
    pub idempotency_key: String,
    /// Tries so far, this one included (1 on the first try).
    pub attempts: i32,
    pub max_attempts: i32,
    pub payload: Option<serde_json::Value>,
    pub lease_token: Uuid,
}

/// A row and the lease token its holder got when claiming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leased {
    pub id: Uuid,
    pub lease_token: Uuid,
}

/// What a batched completion did: rows completed, and rows whose lease had been lost (fenced off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    pub completed: Vec<Uuid>,
    pub stale: Vec<Uuid>,
}

/// What became of a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepFailure {
    /// Back in the queue, due again at this time.
    Retrying(DateTime<Utc>),
    /// Out of attempts or failed permanently: dead-lettered until someone retries it.
    Dead,
    /// The lease was lost meanwhile; nothing changed.
    Stale,
}

/// A step as the operations views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub id: Uuid,
    pub dispute_id: Option<Uuid>,
    pub kind: String,
    pub idempotency_key: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// While a worker holds the step (a pending step being performed): the end of its lease.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the step was enqueued: its idempotency key has been in use since its first attempt, at or after
    /// this time.
    pub created_at: DateTime<Utc>,
}

impl StepRow {
    /// Whether a worker is performing the step at `now` (it holds an unexpired lease).
    pub fn is_running(&self, now: DateTime<Utc>) -> bool {
        self.status == "pending" && self.locked_until.is_some_and(|until| until > now)
    }
}

/// A step enqueued by another step's success (the customer's message after the refund), not by a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    pub dispute_id: Option<Uuid>,
    pub kind: String,
    /// Unique: a step already enqueued under this key is left as it is.
    pub idempotency_key: String,
    pub payload: Option<serde_json::Value>,
}

/// A timer to insert outside a decision: a delayed follow-up or one recreated by the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTimer {
    pub dispute_id: Option<Uuid>,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub payload: Option<serde_json::Value>,
}

/// Completes a claimed row inside a [`Store::commit_fenced`] transaction: the decision is written only if the
/// lease is still held, so a timer's or step's effect on a dispute happens once even if it runs twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    Timer(Leased),
    Step(Leased),
}

/// How retries back off: `base * 2^(attempt-1)`, capped at `max`, minus up to `jitter` of it at random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Between 0 and 1: the share of the delay that is randomised away.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::seconds(10),
            max: Duration::hours(1),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The wait before the next try after `attempt` failed tries (1 for the first); `unit_random` in [0, 1).
    /// Pure, so that tests pin the randomness.
    pub fn delay(&self, attempt: i32, unit_random: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let base_ms = self.base.num_milliseconds().max(0);
        let max_ms = self.max.num_milliseconds().max(0);
        let full = base_ms.saturating_mul(1_i64 << exponent).min(max_ms);
        let jitter = self.jitter.clamp(0.0, 1.0) * unit_random.clamp(0.0, 1.0);
        let jittered = (full as f64 * (1.0 - jitter)).round() as i64;
        Duration::milliseconds(jittered.max(0))
    }
}

impl Store {
    /// A statement written with `$1`-style placeholders, rewritten to `?1` for SQLite.
    pub(crate) fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = self.db().get_database_backend();
        match backend {
            DatabaseBackend::Postgres => Statement::from_sql_and_values(backend, sql, values),
            _ => Statement::from_sql_and_values(backend, sql.replace('$', "?"), values),
        }
    }

    /// The rows a claiming `UPDATE` of `table` changes: those `pick` (a condition with its order and limit)
    /// selects. On PostgreSQL they are picked and locked with `FOR UPDATE SKIP LOCKED` and joined back by
    /// `ctid`, their place in the table, which cannot change while the lock holds: a direct fetch where a join
    /// by `id` took a primary-key lookup per row (EXPLAIN ANALYZE of a 1,024-step claim: 19-23 ms against
    /// 25-31 ms). The claim then commits without waiting for its flush ([`ASYNC_COMMIT`]). A row another
    /// transaction changed after the statement began is locked in its newer version, which the statement
    /// cannot see: it is left unclaimed this time, never claimed twice.
    fn claimed_rows(&self, table: &str, pick: &str) -> String {
        if self.is_postgres() {
            format!(
                "FROM (SELECT ctid FROM {table} WHERE {pick} FOR UPDATE SKIP LOCKED) AS picked \
                 WHERE {table}.ctid = picked.ctid {ASYNC_COMMIT}"
            )
        } else {
            format!("WHERE id IN (SELECT id FROM {table} WHERE {pick})")
        }
    }

    /// Wakes this process's workers at once and, on PostgreSQL, every replica's (after the transaction commits).
    pub async fn signal_work(&self) {
        self.work_signal().notify_one();
        if self.is_postgres() {
            let statement = self.stmt("SELECT pg_notify($1, '')", vec![WORK_CHANNEL.into()]);
            if let Err(err) = self.db().execute_raw(statement).await {
                tracing::warn!(%err, "cannot notify other replicas of new work");
            }
        }
    }

    /// On PostgreSQL, listens on [`WORK_CHANNEL`] and turns every notification (from any replica) into a
    /// wake-up of this process's workers; the listener reconnects by itself. `None` on SQLite (one process).
    pub async fn listen_for_work(&self) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
        if !self.is_postgres() {
            return Ok(None);
        }
        let pool = self.db().get_postgres_connection_pool().clone();
        let lost = |err: sea_orm::sqlx::Error| {
            StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err.into())))
        };
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .map_err(lost)?;
        listener.listen(WORK_CHANNEL).await.map_err(lost)?;
        let wake = self.work_signal();
        Ok(Some(tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => wake.notify_one(),
                    Err(err) => {
                        tracing::warn!(%err, "work listener interrupted; polling until it reconnects");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        })))
    }

    /// Claims up to `limit` timers due at `now`, for `lease`.
    pub async fn claim_due_timers(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        limit: u64,
        lease: Duration,
    ) -> Result<Vec<ClaimedTimer>, StoreError> {
        let (sql, values, token) = self.claim_timers_statement(worker, now, limit, lease);
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        let mut timers = rows
            .iter()
            .map(|row| claimed_timer(row, token))
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        timers.sort_by_key(|t| (t.due_at, t.id));
        Ok(timers)
    }

    /// [`Store::claim_due_timers`] with each timer's dispute (`None` for a timer of no dispute), read by the
    /// claiming statement itself on PostgreSQL (see [`Store::claim_steps_with_disputes`]).
    pub async fn claim_due_timers_with_disputes(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        limit: u64,
        lease: Duration,
    ) -> Result<Vec<(ClaimedTimer, Option<verdict_domain::Dispute>)>, StoreError> {
        let (claim, values, token) = self.claim_timers_statement(worker, now, limit, lease);
        self.claim_with_disputes(&claim, values, |row| {
            let timer = claimed_timer(row, token)?;
            Ok(((timer.due_at, timer.id), timer))
        })
        .await
    }

    /// The claiming `UPDATE ... RETURNING` of due timers, its values and the lease token it writes.
    fn claim_timers_statement(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        limit: u64,
        lease: Duration,
    ) -> (String, Vec<Value>, Uuid) {
        let token = Uuid::now_v7();
        let sql = format!(
            "UPDATE timers SET locked_by = $1, locked_until = $2, lease_token = $3, attempts = attempts + 1 {} \
             RETURNING id, dispute_id, kind, due_at, attempts, payload",
            self.claimed_rows(
                "timers",
                "status = 'pending' AND due_at <= $4 AND (locked_until IS NULL OR locked_until < $4) \
                 ORDER BY due_at LIMIT $5"
            )
        );
        let values = vec![
            worker.into(),
            (now + lease).into(),
            token.into(),
            now.into(),
            (limit as i64).into(),
        ];
        (sql, values, token)
    }

    /// Marks timers fired, each only if its lease token still holds.
    pub async fn complete_timers(&self, timers: &[Leased], now: DateTime<Utc>) -> Result<Completion, StoreError> {
        self.complete_batch("timers", "status = 'fired', fired_at = $1", timers, now)
            .await
    }

    /// Marks steps succeeded, each only if its lease token still holds.
    pub async fn complete_steps(&self, steps: &[Leased], now: DateTime<Utc>) -> Result<Completion, StoreError> {
        self.complete_batch("steps", "status = 'succeeded', updated_at = $1", steps, now)
            .await
    }

    async fn complete_batch(
        &self,
        table: &str,
        set: &str,
        rows: &[Leased],
        now: DateTime<Utc>,
    ) -> Result<Completion, StoreError> {
        self.complete_batch_on(self.db(), table, set, rows, now).await
    }

    /// [`Store::complete_batch`] on `conn` (the pool, or a transaction the completion is part of).
    pub(crate) async fn complete_batch_on(
        &self,
        conn: &impl ConnectionTrait,
        table: &str,
        set: &str,
        rows: &[Leased],
        now: DateTime<Utc>,
    ) -> Result<Completion, StoreError> {
        let mut report = Completion::default();
        for chunk in rows.chunks(200) {
            let mut values: Vec<Value> = vec![now.into()];
            let mut pairs = Vec::with_capacity(chunk.len());
            for leased in chunk {
                let n = values.len();
                pairs.push(format!("(${}, ${})", n + 1, n + 2));
                values.push(leased.id.into());
                values.push(leased.lease_token.into());
            }
            let sql = format!(
                "UPDATE {table} SET {set}, locked_by = NULL, locked_until = NULL, lease_token = NULL \
                 WHERE (id, lease_token) IN (VALUES {}) AND {STILL_PENDING} RETURNING id",
                pairs.join(", ")
            );
            let done = conn.query_all_raw(self.stmt(&sql, values)).await?;
            let done: Vec<Uuid> = done.iter().map(|row| row.try_get("", "id")).collect::<Result<_, _>>()?;
            for leased in chunk {
                if done.contains(&leased.id) {
                    report.completed.push(leased.id);
                } else {
                    report.stale.push(leased.id);
                }
            }
        }
        Ok(report)
    }

    /// A timer whose firing failed is released and tried again after `delay`.
    pub async fn retry_timer(&self, timer: Leased, delay: Duration, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let statement = self.stmt(
            &format!(
                "UPDATE timers SET locked_by = NULL, locked_until = $1, lease_token = NULL \
                 WHERE id = $2 AND lease_token = $3 AND {STILL_PENDING}"
            ),
            vec![(now + delay).into(), timer.id.into(), timer.lease_token.into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected() == 1)
    }

    /// Claims up to `limit` steps due at `now`, for `lease`; each claim counts as an attempt.
    pub async fn claim_steps(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        limit: u64,
        lease: Duration,
    ) -> Result<Vec<ClaimedStep>, StoreError> {
        let (sql, values, token) = self.claim_steps_statement(worker, now, limit, lease);
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        let mut steps = rows
            .iter()
            .map(|row| claimed_step(row, token))
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        steps.sort_by_key(|(next, s)| (*next, s.id));
        Ok(steps.into_iter().map(|(_, s)| s).collect())
    }

    /// [`Store::claim_steps`] with each step's dispute (`None` for a step of no dispute). On PostgreSQL one
    /// statement claims and reads the disputes (the `UPDATE ... RETURNING` joined to `disputes`): one round
    /// trip per batch; SQLite, in process, claims and then loads the batch's disputes in one query.
    pub async fn claim_steps_with_disputes(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        limit: u64,
        lease: Duration,
    ) -> Result<Vec<(ClaimedStep, Option<verdict_domain::Dispute>)>, StoreError> {
        let (claim, values, token) = self.claim_steps_statement(worker, now, limit, lease);
        self.claim_with_disputes(&claim, values, |row| {
            let (next, step) = claimed_step(row, token)?;
            Ok(((next, step.id), step))
        })
        .await
    }

    /// Runs the claiming statement `claim` and reads each claimed row's dispute with it, in claim order (the
    /// key `parse` returns). On PostgreSQL in the same statement (the `UPDATE ... RETURNING` joined to
    /// `disputes`: one round trip per batch); SQLite, in process, claims and then loads the batch's disputes
    /// in one query.
    async fn claim_with_disputes<K: Ord, T>(
        &self,
        claim: &str,
        values: Vec<Value>,
        parse: impl Fn(&QueryResult) -> Result<(K, T), sea_orm::DbErr>,
    ) -> Result<Vec<(T, Option<verdict_domain::Dispute>)>, StoreError>
    where
        T: HasDispute,
    {
        use crate::entity::dispute;
        use sea_orm::{FromQueryResult, IdenStatic, Iterable};
        let mut claimed = Vec::new();
        if !self.is_postgres() {
            let rows = self.db().query_all_raw(self.stmt(claim, values)).await?;
            let parsed = rows.iter().map(&parse).collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
            let ids: Vec<_> = parsed
                .iter()
                .filter_map(|(_, row)| row.dispute_id())
                .map(verdict_domain::DisputeId::from_uuid)
                .collect();
            let disputes: std::collections::HashMap<_, _> = self
                .load_many(&ids)
                .await?
                .into_iter()
                .map(|d| (d.id.as_uuid(), d))
                .collect();
            for (key, row) in parsed {
                let dispute = row.dispute_id().and_then(|id| disputes.get(&id).cloned());
                claimed.push((key, row, dispute));
            }
        } else {
            let columns: Vec<String> = dispute::Column::iter()
                .map(|c| format!("d.{0} AS d_{0}", c.as_str()))
                .collect();
            let sql = format!(
                "WITH claimed AS ({claim}) SELECT claimed.*, {} FROM claimed \
                 LEFT JOIN disputes d ON d.id = claimed.dispute_id",
                columns.join(", ")
            );
            let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
            for row in &rows {
                let (key, parsed) = parse(row)?;
                let found: Option<Uuid> = row.try_get("", "d_id")?;
                let dispute = match found {
                    Some(_) => Some(crate::convert::to_domain(dispute::Model::from_query_result(
                        row, "d_",
                    )?)?),
                    None => None,
                };
                claimed.push((key, parsed, dispute));
            }
        }
        claimed.sort_by(|(a, _, _), (b, _, _)| a.cmp(b));
        Ok(claimed.into_iter().map(|(_, row, dispute)| (row, dispute)).collect())
    }

    /// The claiming `UPDATE ... RETURNING` of steps, its values and the lease token it writes.
    fn claim_steps_statement(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        limit: u64,
        lease: Duration,
    ) -> (String, Vec<Value>, Uuid) {
        let token = Uuid::now_v7();
        let sql = format!(
            // No indexed column changes here (updated_at is, in steps_dead), so PostgreSQL can update in place (HOT).
            "UPDATE steps SET locked_by = $1, locked_until = $2, lease_token = $3, attempts = attempts + 1 {} \
             RETURNING id, dispute_id, kind, idempotency_key, attempts, max_attempts, payload, next_attempt_at",
            self.claimed_rows(
                "steps",
                "status = 'pending' AND next_attempt_at <= $4 AND (locked_until IS NULL OR locked_until < $4) \
                 ORDER BY next_attempt_at LIMIT $5"
            )
        );
        let values = vec![
            worker.into(),
            (now + lease).into(),
            token.into(),
            now.into(),
            (limit as i64).into(),
        ];
        (sql, values, token)
    }

    /// Extends the lease of a timer or step still held; `false` if it was lost.
    pub async fn renew_lease(&self, fence: Fence, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let (table, leased) = match fence {
            Fence::Timer(leased) => ("timers", leased),
            Fence::Step(leased) => ("steps", leased),
        };
        let statement = self.stmt(
            &format!("UPDATE {table} SET locked_until = $1 WHERE id = $2 AND lease_token = $3 AND {STILL_PENDING}"),
            vec![until.into(), leased.id.into(), leased.lease_token.into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected() == 1)
    }

    /// Gives back a claimed row that was not worked on (graceful shutdown); its attempt is not counted.
    pub async fn release(&self, fence: Fence) -> Result<bool, StoreError> {
        let (table, leased) = match fence {
            Fence::Timer(leased) => ("timers", leased),
            Fence::Step(leased) => ("steps", leased),
        };
        let statement = self.stmt(
            &format!(
                "UPDATE {table} SET locked_by = NULL, locked_until = NULL, lease_token = NULL, \
                 attempts = attempts - 1 WHERE id = $1 AND lease_token = $2 AND {STILL_PENDING}"
            ),
            vec![leased.id.into(), leased.lease_token.into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected() == 1)
    }

    /// Records a failed try: back to pending after `delay`, or dead when `permanent` or out of attempts.
    pub async fn fail_step(
        &self,
        step: Leased,
        error: &str,
        permanent: bool,
        delay: Duration,
        now: DateTime<Utc>,
    ) -> Result<StepFailure, StoreError> {
        let error: String = error.chars().take(2_000).collect();
        let retry_at = now + delay;
        let statement = self.stmt(
            &format!(
                "UPDATE steps SET \
                 status = CASE WHEN $1 OR attempts >= max_attempts THEN 'dead' ELSE 'pending' END, \
                 next_attempt_at = $2, last_error = $3, updated_at = $4, \
                 locked_by = NULL, locked_until = NULL, lease_token = NULL \
                 WHERE id = $5 AND lease_token = $6 AND {STILL_PENDING} RETURNING status"
            ),
            vec![
                permanent.into(),
                retry_at.into(),
                error.into(),
                now.into(),
                step.id.into(),
                step.lease_token.into(),
            ],
        );
        let Some(row) = self.db().query_one_raw(statement).await? else {
            return Ok(StepFailure::Stale);
        };
        let status: String = row.try_get("", "status")?;
        Ok(if status == "dead" {
            StepFailure::Dead
        } else {
            StepFailure::Retrying(retry_at)
        })
    }

    /// Marks a step succeeded and schedules its delayed follow-up, in one transaction, if the lease holds.
    pub async fn complete_step_with_timer(
        &self,
        step: Leased,
        timer: &NewTimer,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.complete_step_then(step, vec![self.insert_timer_statement(timer, now)], now)
            .await
    }

    /// Marks a step succeeded and runs `then` in the same transaction, if the lease holds; `false` (nothing
    /// written) when another worker took the step over.
    async fn complete_step_then(
        &self,
        step: Leased,
        then: Vec<Statement>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        use sea_orm::TransactionTrait;
        let txn = self.db().begin().await?;
        let done = txn.execute_raw(self.fence_statement(Fence::Step(step), now)).await?;
        if done.rows_affected() != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        let adds_work = !then.is_empty();
        for statement in then {
            txn.execute_raw(statement).await?;
        }
        crate::crash::commit(txn).await?;
        if adds_work {
            self.signal_work().await;
        }
        Ok(true)
    }

    /// The statement that completes a fenced row; it changes one row exactly when the lease still holds.
    pub(crate) fn fence_statement(&self, fence: Fence, now: DateTime<Utc>) -> Statement {
        let (table, set, leased) = match fence {
            Fence::Timer(leased) => ("timers", "status = 'fired', fired_at = $1", leased),
            Fence::Step(leased) => ("steps", "status = 'succeeded', updated_at = $1", leased),
        };
        self.stmt(
            &format!(
                "UPDATE {table} SET {set}, locked_by = NULL, locked_until = NULL, lease_token = NULL \
                 WHERE id = $2 AND lease_token = $3 AND {STILL_PENDING}"
            ),
            vec![now.into(), leased.id.into(), leased.lease_token.into()],
        )
    }

    /// Marks a step succeeded and enqueues the steps that follow from it, in one transaction, if the lease
    /// holds: the follow-up exists exactly when the step is recorded as done. A follow-up whose idempotency key
    /// is already taken is left as it is.
    pub async fn complete_step_with_steps(
        &self,
        step: Leased,
        next: &[NewStep],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserts = next
            .iter()
            .map(|new| {
                self.stmt(
                    "INSERT INTO steps (id, dispute_id, kind, idempotency_key, status, attempts, max_attempts, \
                     next_attempt_at, payload, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $6, $6) ON CONFLICT (idempotency_key) DO NOTHING",
                    vec![
                        Uuid::now_v7().into(),
                        new.dispute_id.into(),
                        new.kind.clone().into(),
                        new.idempotency_key.clone().into(),
                        crate::repo::DEFAULT_MAX_ATTEMPTS.into(),
                        now.into(),
                        new.payload.clone().into(),
                    ],
                )
            })
            .collect();
        self.complete_step_then(step, inserts, now).await
    }

    fn insert_timer_statement(&self, timer: &NewTimer, now: DateTime<Utc>) -> Statement {
        self.stmt(
            "INSERT INTO timers (id, dispute_id, kind, due_at, status, attempts, payload, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6)",
            vec![
                Uuid::now_v7().into(),
                timer.dispute_id.into(),
                timer.kind.clone().into(),
                timer.due_at.into(),
                timer.payload.clone().into(),
                now.into(),
            ],
        )
    }

    /// Inserts timers outside a decision (the sweep's recreated timers, tests' probes).
    pub async fn insert_timers(&self, timers: &[NewTimer], now: DateTime<Utc>) -> Result<(), StoreError> {
        use sea_orm::TransactionTrait;
        let txn = self.db().begin().await?;
        for timer in timers {
            txn.execute_raw(self.insert_timer_statement(timer, now)).await?;
        }
        crate::crash::commit(txn).await?;
        self.signal_work().await;
        Ok(())
    }

    /// When the next timer or step falls due (or a lease ends), for an idle worker's sleep.
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut next: Option<DateTime<Utc>> = None;
        // A row still leased by a crashed replica is actionable only when its lease ends, and it must not hide
        // sooner work behind it. The first LOOKAHEAD rows count at max(due, lease end); every row after them
        // is due no sooner than the next row, which bounds them: the answer is never later than the truth.
        const LOOKAHEAD: usize = 50;
        for sql in [
            "SELECT due_at AS at, locked_until FROM timers WHERE status = 'pending' ORDER BY due_at LIMIT 51",
            "SELECT next_attempt_at AS at, locked_until FROM steps WHERE status = 'pending' \
             ORDER BY next_attempt_at LIMIT 51",
        ] {
            let rows = self.db().query_all_raw(self.stmt(sql, vec![])).await?;
            for (index, row) in rows.iter().enumerate() {
                let at: DateTime<Utc> = row.try_get("", "at")?;
                let at = if index < LOOKAHEAD {
                    let locked: Option<DateTime<Utc>> = row.try_get("", "locked_until")?;
                    locked.map_or(at, |l| l.max(at))
                } else {
                    at
                };
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    /// Dead-lettered steps, most recently failed first.
    pub async fn dead_steps(&self, limit: u64) -> Result<Vec<StepRow>, StoreError> {
        self.step_rows(
            "WHERE status = 'dead' ORDER BY updated_at DESC, id LIMIT $1",
            vec![(limit as i64).into()],
        )
        .await
    }

    pub async fn step_row(&self, id: Uuid) -> Result<Option<StepRow>, StoreError> {
        Ok(self.step_rows("WHERE id = $1", vec![id.into()]).await?.pop())
    }

    async fn step_rows(&self, clause: &str, values: Vec<Value>) -> Result<Vec<StepRow>, StoreError> {
        let sql = format!(
            "SELECT id, dispute_id, kind, idempotency_key, status, attempts, max_attempts, next_attempt_at, \
             last_error, updated_at, locked_until, created_at FROM steps {clause}"
        );
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        Ok(rows.iter().map(step_row).collect::<Result<_, _>>()?)
    }

    /// Puts a dead step back in the queue with fresh attempts; `false` if it is not dead.
    pub async fn retry_step(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let statement = self.stmt(
            "UPDATE steps SET status = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1, \
             locked_by = NULL, locked_until = NULL, lease_token = NULL WHERE id = $2 AND status = 'dead'",
            vec![now.into(), id.into()],
        );
        let retried = self.db().execute_raw(statement).await?.rows_affected() == 1;
        if retried {
            self.signal_work().await;
        }
        Ok(retried)
    }

    /// Gives up on a dead step, or a pending one that no worker is performing; `false` if it already succeeded
    /// or was cancelled, or if it is running ([`StepRow::is_running`]): a running step may be completing at the
    /// processor right now, so calling it cancelled would be a lie. Its holder records what really happened,
    /// and the step can be cancelled once that attempt has ended (if it is to be retried).
    pub async fn cancel_step(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let statement = self.stmt(
            "UPDATE steps SET status = 'cancelled', updated_at = $1, locked_by = NULL, locked_until = NULL, \
             lease_token = NULL WHERE id = $2 AND (status = 'dead' \
             OR (status = 'pending' AND (locked_until IS NULL OR locked_until < $1)))",
            vec![now.into(), id.into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected() == 1)
    }

    /// The live work, for `/metrics`: pending timers, those already due (the backlog), pending and dead steps.
    /// Each count reads one partial index, so a scrape costs what is live, never the history of fired timers
    /// and finished steps.
    pub async fn live_queue_counts(&self, now: DateTime<Utc>) -> Result<LiveCounts, StoreError> {
        let sql = "SELECT \
                   (SELECT COUNT(*) FROM timers WHERE status = 'pending') AS timers_pending, \
                   (SELECT COUNT(*) FROM timers WHERE status = 'pending' AND due_at <= $1) AS timers_due, \
                   (SELECT COUNT(*) FROM steps WHERE status = 'pending') AS steps_pending, \
                   (SELECT COUNT(*) FROM steps WHERE status = 'dead') AS steps_dead";
        let row = self
            .db()
            .query_one_raw(self.stmt(sql, vec![now.into()]))
            .await?
            .ok_or_else(|| StoreError::Corrupt("no row from a count".into()))?;
        Ok(LiveCounts {
            timers_pending: row.try_get("", "timers_pending")?,
            timers_due: row.try_get("", "timers_due")?,
            steps_pending: row.try_get("", "steps_pending")?,
            steps_dead: row.try_get("", "steps_dead")?,
        })
    }

    /// Counts of timers and steps by every status; scans both tables (tests and support, not `/metrics`).
    pub async fn queue_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = "SELECT 'timers' AS tbl, status, COUNT(*) AS n FROM timers GROUP BY status \
                   UNION ALL SELECT 'steps' AS tbl, status, COUNT(*) AS n FROM steps GROUP BY status";
        let rows = self.db().query_all_raw(self.stmt(sql, vec![])).await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("", "tbl")?,
                    row.try_get("", "status")?,
                    row.try_get("", "n")?,
                ))
            })
            .collect::<Result<_, sea_orm::DbErr>>()?)
    }
}

/// What [`Store::live_queue_counts`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub timers_pending: i64,
    /// Pending and already due: zero in a healthy system between worker rounds.
    pub timers_due: i64,
    pub steps_pending: i64,
    pub steps_dead: i64,
}

/// A claimed step from the columns the claim returns, with its due time for ordering.
/// A claimed row that may belong to a dispute.
trait HasDispute {
    fn dispute_id(&self) -> Option<Uuid>;
}

impl HasDispute for ClaimedTimer {
    fn dispute_id(&self) -> Option<Uuid> {
        self.dispute_id
    }
}

impl HasDispute for ClaimedStep {
    fn dispute_id(&self) -> Option<Uuid> {
        self.dispute_id
    }
}

fn claimed_timer(row: &QueryResult, token: Uuid) -> Result<ClaimedTimer, sea_orm::DbErr> {
    Ok(ClaimedTimer {
        id: row.try_get("", "id")?,
        dispute_id: row.try_get("", "dispute_id")?,
        kind: row.try_get("", "kind")?,
        due_at: row.try_get("", "due_at")?,
        attempts: row.try_get("", "attempts")?,
        payload: row.try_get("", "payload")?,
        lease_token: token,
    })
}

fn claimed_step(row: &QueryResult, token: Uuid) -> Result<(DateTime<Utc>, ClaimedStep), sea_orm::DbErr> {
    Ok((
        row.try_get("", "next_attempt_at")?,
        ClaimedStep {
            id: row.try_get("", "id")?,
            dispute_id: row.try_get("", "dispute_id")?,
            kind: row.try_get("", "kind")?,
            idempotency_key: row.try_get("", "idempotency_key")?,
            attempts: row.try_get("", "attempts")?,
            max_attempts: row.try_get("", "max_attempts")?,
            payload: row.try_get("", "payload")?,
            lease_token: token,
        },
    ))
}

fn step_row(row: &QueryResult) -> Result<StepRow, sea_orm::DbErr> {
    Ok(StepRow {
        id: row.try_get("", "id")?,
        dispute_id: row.try_get("", "dispute_id")?,
        kind: row.try_get("", "kind")?,
        idempotency_key: row.try_get("", "idempotency_key")?,
        status: row.try_get("", "status")?,
        attempts: row.try_get("", "attempts")?,
        max_attempts: row.try_get("", "max_attempts")?,
        next_attempt_at: row.try_get("", "next_attempt_at")?,
        last_error: row.try_get("", "last_error")?,
        updated_at: row.try_get("", "updated_at")?,
        locked_until: row.try_get("", "locked_until")?,
        created_at: row.try_get("", "created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_per_attempt_up_to_the_cap() {
        let backoff = Backoff {
            base: Duration::seconds(10),
            max: Duration::minutes(5),
            jitter: 0.5,
        };
        assert_eq!(backoff.delay(1, 0.0), Duration::seconds(10));
        assert_eq!(backoff.delay(2, 0.0), Duration::seconds(20));
        assert_eq!(backoff.delay(4, 0.0), Duration::seconds(80));
        assert_eq!(backoff.delay(6, 0.0), Duration::minutes(5));
        assert_eq!(backoff.delay(60, 0.0), Duration::minutes(5));
    }

    #[test]
    fn jitter_only_ever_shortens_the_delay_by_at_most_its_share() {
        let backoff = Backoff {
            base: Duration::seconds(10),
            max: Duration::hours(1),
            jitter: 0.5,
        };
        assert_eq!(backoff.delay(2, 0.999_999), Duration::milliseconds(10_000));
        for r in [0.0, 0.1, 0.5, 0.9] {
            let d = backoff.delay(3, r);
            assert!(d <= Duration::seconds(40) && d >= Duration::seconds(20), "{d}");
        }
    }

    #[test]
    fn nonsense_inputs_give_a_sane_delay() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(0, 0.0), Duration::seconds(10));
        assert_eq!(backoff.delay(-5, 2.0), Duration::milliseconds(7_500));
    }
}
