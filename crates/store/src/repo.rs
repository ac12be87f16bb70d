//! The dispute repository: connect, migrate, load, list, and commit a decision atomically.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend,
    DatabaseConnection, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;
use verdict_domain::{Decision, Dispute, DisputeId, Processor, TimerInstruction};
use verdict_migrations::{Migrator, MigratorTrait};

use crate::StoreError;
use crate::convert::{to_domain, to_row};
use crate::entity::{dispute, dispute_event, step, timer};
use crate::error::is_unique_violation;
use crate::search::DisputeFilter;

/// Attempts a step gets before it is dead-lettered, unless its handler says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 8;

/// Connections of one replica's PostgreSQL pool.
const MAX_CONNECTIONS: u32 = 32;

/// Other replicas are told about new work (`NOTIFY`) only when it is due within this many seconds; workers
/// never sleep longer than this, so later work is found by their own next look.
pub const WAKE_HORIZON_SECONDS: i64 = 60;

fn sqlx_error(err: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err.into())))
}

/// Whether a SQLite connection handed back to the pool may serve again, or must be closed.
///
/// When a write fails with `SQLITE_FULL` or an I/O error (a full disk), SQLite rolls the whole transaction back
/// by itself; the `ROLLBACK` sqlx then sends fails ("no transaction is active") and sqlx keeps counting the
/// connection as inside a transaction. Its next `BEGIN` becomes a `SAVEPOINT` and a failed transaction's
/// rollback a `ROLLBACK TO`, which leaves SQLite's transaction open with the write lock held: every other
/// connection then gets "database is locked" until the process restarts. Such a connection is closed instead
/// (closing rolls back whatever it holds); the pool opens a fresh one. The ping first lets a rollback queued
/// by a dropped transaction run, so a healthy connection is never counted as inside one.
async fn sqlite_reusable(conn: &mut sea_orm::sqlx::SqliteConnection) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Connection as _;
    conn.ping().await?;
    let reusable = !conn.is_in_transaction();
    if !reusable {
        tracing::warn!("closing a SQLite connection left inside a failed transaction (disk full or I/O error)");
    }
    Ok(reusable)
}

/// Advisory-lock key that replicas take while migrating ("verdict" in ASCII).
const MIGRATION_LOCK: i64 = 0x76_65_72_64_69_63_74;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone (a connection pool).
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// Wakes this process's workers after a commit that added timers or steps (see queue.rs).
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// Subscribers of this process and the outbound webhook routes (see changes.rs).
    pub(crate) changes: std::sync::Arc<crate::changes::ChangeHub>,
}

/// Position in the queue order (due date, then id): the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub sort_due_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<(PageCursor, Dispute)>,
    pub has_next_page: bool,
}

/// One event as stored, for history views.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub version: i64,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub actor: String,
    pub reason: Option<String>,
    pub change: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerRecord {
    pub id: Uuid,
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub id: Uuid,
    pub kind: String,
    pub idempotency_key: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl EventRecord {
    /// The event without the customer's personal data: the opening event and `order_linked` carry the
    /// customer, which the dispute shows (masked by role) and history, subscriptions and webhooks never do.
    pub fn without_personal_data(mut self) -> Self {
        for pointer in ["/dispute/customer", "/customer"] {
            if let Some(customer) = self.change.pointer_mut(pointer).and_then(|c| c.as_object_mut()) {
                customer.remove("name");
                customer.remove("email");
            }
        }
        self
    }
}

impl From<dispute_event::Model> for EventRecord {
    fn from(r: dispute_event::Model) -> Self {
        Self {
            version: r.version,
            kind: r.kind,
            from_status: r.from_status,
            to_status: r.to_status,
            actor: r.actor,
            reason: r.reason,
            change: r.change,
            at: r.at,
        }
    }
}

impl From<timer::Model> for TimerRecord {
    fn from(r: timer::Model) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            due_at: r.due_at,
            status: r.status,
        }
    }
}

impl From<step::Model> for StepRecord {
    fn from(r: step::Model) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            idempotency_key: r.idempotency_key,
            status: r.status,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
        }
    }
}

impl Store {
    /// Connects (creating a SQLite file if the URL says `mode=rwc`). SQLite runs in WAL mode with a busy
    /// timeout so that readers never block the writer and concurrent writers queue instead of failing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, 1).await
    }

    /// [`Store::connect`] keeping at least `min_connections` open (PostgreSQL; at most 32): a burst after a
    /// quiet spell (timers falling due together) then waits for no new backend.
    pub async fn connect_with(url: &str, min_connections: u32) -> Result<Self, StoreError> {
        Self::connect_sized(url, min_connections, MAX_CONNECTIONS).await
    }

    /// [`Store::connect_with`] with at most `max_connections` (1 to 32): a one-off command needs two, not
    /// the 32 a replica holds.
    pub async fn connect_sized(url: &str, min_connections: u32, max_connections: u32) -> Result<Self, StoreError> {
        let max_connections = max_connections.clamp(1, MAX_CONNECTIONS);
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .max_connections(if backend == Backend::Sqlite {
                Ord::min(max_connections, 4)
            } else {
                max_connections
            })
            .min_connections(if backend == Backend::Sqlite {
                1
            } else {
                min_connections.clamp(1, max_connections)
            })
            .acquire_timeout(Duration::from_secs(10))
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            })
            .map_sqlx_sqlite_pool_opts(|pool| pool.after_release(|conn, _| Box::pin(sqlite_reusable(conn))));
        let db = Database::connect(options).await?;
        Ok(Self {
            db,
            backend,
            wake: std::sync::Arc::default(),
            changes: std::sync::Arc::default(),
        })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Signalled after every commit that adds timers or steps; workers of this process wait on it.
    pub fn work_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Applies every pending migration.
    ///
    /// On PostgreSQL an advisory lock serialises replicas that start together: the first migrates, the others
    /// wait and then find nothing left to do.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            // SQLite serves one process; this keeps two stores of that process from racing on the schema.
            static SQLITE_MIGRATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _guard = SQLITE_MIGRATION.lock().await;
            Migrator::up(&self.db, None).await?;
            return Ok(());
        }
        let pool = self.db.get_postgres_connection_pool();
        let mut lock_holder = pool.acquire().await.map_err(sqlx_error)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *lock_holder)
            .await
            .map_err(sqlx_error)?;
        let result = Migrator::up(&self.db, None).await;
        let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *lock_holder)
            .await;
        result?;
        unlocked.map_err(sqlx_error)?;
        Ok(())
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    /// Readiness that includes writing: upserts this replica's row of `readiness_probe`, in at most `within`.
    /// A full disk, a read-only file, a writer stuck behind a lock or an unanswering server each give their
    /// [`StorageFault`](crate::StorageFault); any other failure counts as unreachable.
    pub async fn probe_write(&self, replica: &str, within: Duration) -> Result<(), crate::StorageFault> {
        let sql = match self.backend {
            Backend::Postgres => {
                "INSERT INTO readiness_probe (replica, probed_at) VALUES ($1, $2) \
                 ON CONFLICT (replica) DO UPDATE SET probed_at = excluded.probed_at"
            }
            Backend::Sqlite => {
                "INSERT INTO readiness_probe (replica, probed_at) VALUES (?, ?) \
                 ON CONFLICT (replica) DO UPDATE SET probed_at = excluded.probed_at"
            }
        };
        let statement = sea_orm::Statement::from_sql_and_values(
            self.db.get_database_backend(),
            sql,
            [replica.into(), Utc::now().into()],
        );
        match tokio::time::timeout(within, self.db.execute_raw(statement)).await {
            Err(_) => Err(crate::StorageFault::TimedOut),
            Ok(Err(err)) => Err(crate::error::storage_fault(&err).unwrap_or(crate::StorageFault::Unreachable)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Deletes the probe rows of replicas that have not probed since `before` (they are gone).
    pub async fn forget_probes_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = match self.backend {
            Backend::Postgres => "DELETE FROM readiness_probe WHERE probed_at < $1",
            Backend::Sqlite => "DELETE FROM readiness_probe WHERE probed_at < ?",
        };
        let statement = sea_orm::Statement::from_sql_and_values(self.db.get_database_backend(), sql, [before.into()]);
        Ok(self.db.execute_raw(statement).await?.rows_affected())
    }

    pub async fn load(&self, id: DisputeId) -> Result<Option<Dispute>, StoreError> {
        dispute::Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await?
            .map(to_domain)
            .transpose()
    }

    /// Several disputes in one query (workers load a claimed batch at once).
    pub async fn load_many(&self, ids: &[DisputeId]) -> Result<Vec<Dispute>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        dispute::Entity::find()
            .filter(dispute::Column::Id.is_in(ids.iter().map(|id| id.as_uuid())))
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    pub async fn find_by_processor_id(
        &self,
        processor: Processor,
        processor_dispute_id: &str,
    ) -> Result<Option<Dispute>, StoreError> {
        dispute::Entity::find()
            .filter(dispute::Column::Processor.eq(processor.as_str()))
            .filter(dispute::Column::ProcessorDisputeId.eq(processor_dispute_id))
            .one(&self.db)
            .await?
            .map(to_domain)
            .transpose()
    }

    /// Writes a decision atomically. `expected_version` is the version the decision was made on (`None` for a
    /// new dispute); if the stored dispute moved on meanwhile, nothing is written and the result is a conflict.
    pub async fn commit(
        &self,
        expected_version: Option<i64>,
        after: &Dispute,
        decision: &Decision,
    ) -> Result<(), StoreError> {
        self.commit_fenced(expected_version, after, decision, None).await
    }

    /// [`Store::commit`] that also completes a claimed timer or step in the same transaction, and writes
    /// nothing (`StoreError::LeaseLost`) if that lease was lost meanwhile.
    pub async fn commit_fenced(
        &self,
        expected_version: Option<i64>,
        after: &Dispute,
        decision: &Decision,
        fence: Option<crate::queue::Fence>,
    ) -> Result<(), StoreError> {
        self.commit_all(expected_version, after, decision, fence, None, &[], None)
            .await
    }

    /// [`Store::commit`] that also records the outcome on the inbox row the decision came from, in the same
    /// transaction: one commit per applied notification.
    pub async fn commit_applying(
        &self,
        expected_version: Option<i64>,
        after: &Dispute,
        decision: &Decision,
        finish: &crate::inbox::InboxFinish,
    ) -> Result<(), StoreError> {
        self.commit_all(expected_version, after, decision, None, Some(finish), &[], None)
            .await
    }

    // One private writer behind every commit path (plain, fenced, inbox, evidence rows, a document): the optional
    // parts are each one caller's, and a struct for them would only rename this list.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn commit_all(
        &self,
        expected_version: Option<i64>,
        after: &Dispute,
        decision: &Decision,
        fence: Option<crate::queue::Fence>,
        finish: Option<&crate::inbox::InboxFinish>,
        evidence: &[crate::evidence::EvidenceWrite],
        document: Option<&crate::documents::NewDocument>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        let row = to_row(after);
        match expected_version {
            None => {
                dispute::Entity::insert(row.clone().into_active_model())
                    .exec_without_returning(&txn)
                    .await
                    .map_err(|err| {
                        if is_unique_violation(&err) {
                            StoreError::DuplicateDispute {
                                processor: after.processor.to_string(),
                                processor_dispute_id: after.processor_dispute_id.clone(),
                            }
                        } else {
                            err.into()
                        }
                    })?;
            }
            Some(expected) => {
                // The UPDATE comes first so that SQLite takes the write lock before reading anything.
                let mut model = row.clone().into_active_model().reset_all();
                model.id = sea_orm::ActiveValue::NotSet;
                model.created_at = sea_orm::ActiveValue::NotSet;
                let updated = dispute::Entity::update_many()
                    .set(model)
                    .filter(dispute::Column::Id.eq(row.id))
                    .filter(dispute::Column::Version.eq(expected))
                    .exec(&txn)
                    .await?;
                if updated.rows_affected != 1 {
                    return Err(StoreError::Conflict(after.id));
                }
            }
        }
        let records: Vec<EventRecord> = decision
            .events
            .iter()
            .map(|event| {
                let (from, to) = event.change.status_change().unwrap_or((None, after.status));
                let moved = event.change.status_change().is_some();
                Ok(EventRecord {
                    version: event.version,
                    kind: event.change.kind().as_str().to_owned(),
                    from_status: from.map(|s| s.to_string()),
                    to_status: moved.then(|| to.to_string()),
                    actor: event.actor.label(),
                    reason: event.reason.clone(),
                    change: serde_json::to_value(&event.change)
                        .map_err(|e| StoreError::Corrupt(format!("event does not serialise: {e}")))?,
                    at: event.at,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let events: Vec<dispute_event::ActiveModel> = records
            .iter()
            .map(|r| dispute_event::ActiveModel {
                dispute_id: Set(after.id.as_uuid()),
                version: Set(r.version),
                kind: Set(r.kind.clone()),
                from_status: Set(r.from_status.clone()),
                to_status: Set(r.to_status.clone()),
                actor: Set(r.actor.clone()),
                reason: Set(r.reason.clone()),
                change: Set(r.change.clone()),
                at: Set(r.at),
            })
            .collect();
        if !events.is_empty() {
            dispute_event::Entity::insert_many(events)
                .exec_without_returning(&txn)
                .await
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        StoreError::Conflict(after.id)
                    } else {
                        err.into()
                    }
                })?;
        }
        // The patterns' grouping and outcome columns follow the events in the same transaction.
        crate::patterns::write_pattern_columns(self, &txn, after, decision).await?;
        // The triage run the decision carries, beside its events (an unchanged decision has none).
        if let Some(run) = &decision.triage {
            crate::policy::write_run(&txn, after.id, run).await?;
        }
        // The evidence rows the events name, in the same transaction as the events.
        crate::evidence::write(&txn, after.id, evidence).await?;
        if let Some(document) = document {
            // Another generation that took this version first is a conflict like a stale dispute version.
            crate::entity::document::Entity::insert(crate::documents::active_model(document))
                .exec_without_returning(&txn)
                .await
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        StoreError::Conflict(after.id)
                    } else {
                        err.into()
                    }
                })?;
        }
        let now = after.updated_at;
        // Before the timer instructions: a firing timer is completed first, so that its own command's
        // CancelAll does not cancel it.
        if let Some(fence) = fence {
            let completed = txn.execute_raw(self.fence_statement(fence, now)).await?;
            if completed.rows_affected() != 1 {
                txn.rollback().await?;
                return Err(StoreError::LeaseLost);
            }
        }
        let mut new_timers = Vec::new();
        for instruction in &decision.timers {
            match instruction {
                TimerInstruction::CancelAll => {
                    // Several decisions may be committed together: what an earlier one set is cancelled too,
                    // so it is simply never written.
                    new_timers.clear();
                    timer::Entity::update_many()
                        .col_expr(timer::Column::Status, Expr::value("cancelled"))
                        .filter(timer::Column::DisputeId.eq(after.id.as_uuid()))
                        .filter(timer::Column::Status.eq("pending"))
                        .exec(&txn)
                        .await?;
                }
                TimerInstruction::Set { kind, due_at } => new_timers.push(timer::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    dispute_id: Set(Some(after.id.as_uuid())),
                    kind: Set(kind.label()),
                    due_at: Set(*due_at),
                    status: Set("pending".to_owned()),
                    attempts: Set(0),
                    locked_by: Set(None),
                    locked_until: Set(None),
                    payload: Set(None),
                    created_at: Set(now),
                    fired_at: Set(None),
                }),
            }
        }
        // The outbox of the outbound webhooks (see below).
        let outbound = self.outbound_steps(after, &records, now);
        let publishes = !outbound.is_empty();
        let due_soon = after.updated_at + chrono::Duration::seconds(WAKE_HORIZON_SECONDS);
        let wakes_replicas = !decision.steps.is_empty()
            || publishes
            || new_timers
                .iter()
                .any(|t| matches!(t.due_at, Set(due_at) if due_at <= due_soon));
        if !new_timers.is_empty() {
            timer::Entity::insert_many(new_timers)
                .exec_without_returning(&txn)
                .await?;
        }
        if !decision.steps.is_empty() {
            let steps = decision.steps.iter().map(|s| step::ActiveModel {
                id: Set(Uuid::now_v7()),
                dispute_id: Set(Some(after.id.as_uuid())),
                kind: Set(s.kind.as_str().to_owned()),
                idempotency_key: Set(s.idempotency_key.clone()),
                status: Set("pending".to_owned()),
                attempts: Set(0),
                max_attempts: Set(DEFAULT_MAX_ATTEMPTS),
                next_attempt_at: Set(now),
                locked_by: Set(None),
                locked_until: Set(None),
                last_error: Set(None),
                payload: Set(s.payload.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            });
            step::Entity::insert_many(steps)
                .on_conflict(OnConflict::column(step::Column::IdempotencyKey).do_nothing().to_owned())
                .exec_without_returning(&txn)
                .await?;
        }
        // The outbox of the outbound webhooks: one step per event and webhook that wants it, in the events'
        // transaction, so a delivery exists exactly when its event does.
        if publishes {
            step::Entity::insert_many(outbound)
                .on_conflict(OnConflict::column(step::Column::IdempotencyKey).do_nothing().to_owned())
                .exec_without_returning(&txn)
                .await?;
        }
        if let (Some(first), Some(last)) = (records.first(), records.last())
            && self.backend == Backend::Postgres
        {
            self.record_change(&txn, after.id, first.version, last.version).await?;
        }
        if let Some(finish) = finish {
            // Last, after the dispute row is locked: the order check then sees every commit before ours.
            finish.write(&txn).await?;
        }
        let adds_work = publishes
            || !decision.steps.is_empty()
            || decision
                .timers
                .iter()
                .any(|t| matches!(t, TimerInstruction::Set { .. }));
        if wakes_replicas && self.backend == Backend::Postgres {
            // Delivered to every replica's listener when (and only if) the transaction commits. Only for work
            // due soon: NOTIFY serialises committing transactions on a database-wide lock, and a replica
            // never sleeps past WAKE_HORIZON_SECONDS anyway.
            txn.execute_unprepared("NOTIFY verdict_work").await?;
        }
        crate::crash::commit(txn).await?;
        if adds_work {
            self.wake.notify_one();
        }
        if !records.is_empty() && self.backend == Backend::Sqlite {
            // One process: its subscribers hear of the change once it is committed. (PostgreSQL's come
            // through the listener, from whichever replica committed.)
            self.publish_change(crate::changes::Change {
                dispute: after.clone(),
                events: records,
            });
        }
        Ok(())
    }

    fn outbound_steps(&self, after: &Dispute, events: &[EventRecord], now: DateTime<Utc>) -> Vec<step::ActiveModel> {
        let routes = self.changes.routes();
        let mut steps = Vec::new();
        for route in routes.iter() {
            for event in events.iter().filter(|e| route.wants(&e.kind)) {
                steps.push(step::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    dispute_id: Set(Some(after.id.as_uuid())),
                    kind: Set(verdict_domain::StepKind::OutboundWebhook.as_str().to_owned()),
                    idempotency_key: Set(crate::changes::outbound_delivery_key(
                        &route.name,
                        after.id,
                        event.version,
                    )),
                    status: Set("pending".to_owned()),
                    attempts: Set(0),
                    max_attempts: Set(Ord::max(route.max_attempts, 1)),
                    next_attempt_at: Set(now),
                    locked_by: Set(None),
                    locked_until: Set(None),
                    last_error: Set(None),
                    payload: Set(Some(serde_json::json!({
                        "webhook": route.name,
                        "version": event.version,
                        "event": event.kind,
                    }))),
                    created_at: Set(now),
                    updated_at: Set(now),
                });
            }
        }
        steps
    }

    /// The dispute's events in order.
    pub async fn events(&self, id: DisputeId) -> Result<Vec<EventRecord>, StoreError> {
        let rows = dispute_event::Entity::find()
            .filter(dispute_event::Column::DisputeId.eq(id.as_uuid()))
            .order_by_asc(dispute_event::Column::Version)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(EventRecord::from).collect())
    }

    pub async fn timers(&self, id: DisputeId) -> Result<Vec<TimerRecord>, StoreError> {
        let rows = timer::Entity::find()
            .filter(timer::Column::DisputeId.eq(id.as_uuid()))
            .order_by_asc(timer::Column::DueAt)
            .order_by_asc(timer::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(TimerRecord::from).collect())
    }

    pub async fn steps(&self, id: DisputeId) -> Result<Vec<StepRecord>, StoreError> {
        let rows = step::Entity::find()
            .filter(step::Column::DisputeId.eq(id.as_uuid()))
            .order_by_asc(step::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(StepRecord::from).collect())
    }

    /// One page of the queue, ordered by due date then id (keyset pagination: constant cost at any depth).
    pub async fn list(
        &self,
        filter: &DisputeFilter,
        first: u64,
        after: Option<PageCursor>,
    ) -> Result<Page, StoreError> {
        let mut query = filter.select();
        if let Some(cursor) = after {
            query = query.filter(
                Expr::tuple([Expr::col(dispute::Column::SortDueAt), Expr::col(dispute::Column::Id)])
                    .gt(Expr::tuple([Expr::value(cursor.sort_due_at), Expr::value(cursor.id)])),
            );
        }
        let mut rows = query
            .order_by_asc(dispute::Column::SortDueAt)
            .order_by_asc(dispute::Column::Id)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        let items = rows
            .into_iter()
            .map(|row| {
                let cursor = PageCursor {
                    sort_due_at: row.sort_due_at,
                    id: row.id,
                };
                to_domain(row).map(|d| (cursor, d))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { items, has_next_page })
    }

    pub async fn count(&self, filter: &DisputeFilter) -> Result<u64, StoreError> {
        Ok(filter.select().count(&self.db).await?)
    }

    /// Runs a raw statement; for tests and administration only.
    pub async fn execute_unprepared(&self, sql: &str) -> Result<(), StoreError> {
        self.db.execute_unprepared(sql).await?;
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DatabaseBackend::Postgres
    }
}
