//! The dispute repository: connect, migrate, load, list, and commit a decision atomically.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;
use verdict_domain::{Decision, Dispute, DisputeId, Processor};
use verdict_migrations::{Migrator, MigratorTrait};

use crate::StoreError;
use crate::coalesce::Lookup;
use crate::convert::to_domain;
use crate::entity::{dispute, dispute_event, dispute_status, step, timer};
use crate::search::{DisputeFilter, DisputeSort, SortCursor, SortValue, beyond};

/// Attempts a step gets before it is dead-lettered, unless its handler says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 8;

/// Connections of one replica's PostgreSQL pool.
const MAX_CONNECTIONS: u32 = 32;

/// A pooled connection idle at least this long is pinged before it is handed out (see `connect_sized`).
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// Other replicas are told about new work (`NOTIFY`) only when it is due within this many seconds; workers
/// never sleep longer than this, so later work is found by their own next look.
pub const WAKE_HORIZON_SECONDS: i64 = 60;

fn sqlx_error(err: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err.into())))
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
    /// Wake this process's bulk job and backtest workers when one is created here, so that they need not
    /// look often: an idle replica asks the database next to nothing (other replicas' jobs are found by the
    /// next look).
    bulk_jobs_added: std::sync::Arc<tokio::sync::Notify>,
    backtests_added: std::sync::Arc<tokio::sync::Notify>,
    /// Subscribers of this process and the outbound webhook routes (see changes.rs).
    pub(crate) changes: std::sync::Arc<crate::changes::ChangeHub>,
    /// The queue of the group committer (group.rs), shared by every clone.
    pub(crate) committer: std::sync::Arc<crate::group::Committer>,
    /// The active policy version as last read (policy.rs), shared by every clone.
    pub(crate) active_policy: std::sync::Arc<crate::policy::ActivePolicyCache>,
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
            // sqlx pings a pooled connection on every checkout by default: a round trip before each statement
            // or transaction outside one. On PostgreSQL only a connection idle this long (one a server, proxy
            // or firewall may have dropped) is pinged; a failure on a live one surfaces as the statement's
            // error. SQLite's pool replaces this hook with its own (sqlite_pool.rs), which needs no ping.
            .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            })
            .map_sqlx_sqlite_pool_opts(crate::sqlite_pool::with_hooks);
        let db = Database::connect(options).await?;
        Ok(Self {
            db,
            backend,
            wake: std::sync::Arc::default(),
            bulk_jobs_added: std::sync::Arc::default(),
            backtests_added: std::sync::Arc::default(),
            changes: std::sync::Arc::default(),
            committer: std::sync::Arc::default(),
            active_policy: std::sync::Arc::default(),
        })
    }

    /// A clone with a committer of its own, for the group committer's task (group.rs).
    pub(crate) fn with_own_committer(&self) -> Self {
        Self {
            committer: std::sync::Arc::default(),
            ..self.clone()
        }
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

    /// Signalled when a bulk job is created through this store (its worker loop waits on it).
    pub fn bulk_jobs_added(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.bulk_jobs_added.clone()
    }

    /// Signalled when a backtest is created through this store (its worker loop waits on it).
    pub fn backtests_added(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.backtests_added.clone()
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

    /// The dispute as it is now (coalesced with concurrent loads: coalesce.rs).
    pub async fn load(&self, id: DisputeId) -> Result<Option<Dispute>, StoreError> {
        let lookup: Lookup<Uuid, dispute::Model> = |store, ids| {
            Box::pin(async move {
                let rows = dispute::Entity::find()
                    .filter(dispute::Column::Id.is_in(ids))
                    .all(&store.db)
                    .await?;
                Ok(rows.into_iter().map(|row| (row.id, row)).collect())
            })
        };
        self.read_coalesced(&self.committer.disputes, id.as_uuid(), lookup, || async {
            Ok(dispute::Entity::find_by_id(id.as_uuid()).one(&self.db).await?)
        })
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
        let lookup: Lookup<(String, String), dispute::Model> = |store, keys| {
            Box::pin(async move {
                // By the index on the processor's dispute id alone; a row of another processor with the same id
                // answers no key.
                let rows = dispute::Entity::find()
                    .filter(dispute::Column::ProcessorDisputeId.is_in(keys.into_iter().map(|(_, id)| id)))
                    .all(&store.db)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| ((row.processor.clone(), row.processor_dispute_id.clone()), row))
                    .collect())
            })
        };
        let key = (processor.as_str().to_owned(), processor_dispute_id.to_owned());
        self.read_coalesced(&self.committer.disputes_by_processor_id, key, lookup, || async {
            Ok(dispute::Entity::find()
                .filter(dispute::Column::Processor.eq(processor.as_str()))
                .filter(dispute::Column::ProcessorDisputeId.eq(processor_dispute_id))
                .one(&self.db)
                .await?)
        })
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
        self.commit_grouped(crate::group::CommitRequest {
            expected_version,
            after: after.clone(),
            decision: decision.clone(),
            fence,
            finish: None,
        })
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
        self.commit_grouped(crate::group::CommitRequest {
            expected_version,
            after: after.clone(),
            decision: decision.clone(),
            fence: None,
            finish: Some(finish.clone()),
        })
        .await
    }

    /// The writer behind the evidence and document commits: one decision in its own transaction (the commands'
    /// decisions go through the group committer, group.rs).
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
        let write = crate::group::Write {
            expected_version,
            after,
            decision,
            fence,
            finish,
            evidence,
            document,
        };
        self.write_all(&[write]).await?.pop().unwrap_or(Ok(()))
    }

    pub(crate) fn outbound_steps(
        &self,
        after: &Dispute,
        events: &[EventRecord],
        now: DateTime<Utc>,
    ) -> Vec<step::ActiveModel> {
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
        let order = filter.ordered(DisputeSort::DueBy);
        let past_cursor = after.map(|cursor| {
            let cursor = SortCursor {
                value: SortValue::At(cursor.sort_due_at),
                id: cursor.id,
            };
            beyond(&order, cursor, true)
        });
        let mut query = order.query;
        if let Some(past_cursor) = past_cursor {
            query = query.filter(past_cursor);
        }
        let mut rows = query
            .order_by_asc(order.key)
            .order_by_asc(order.id)
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
        if let Some(statuses) = filter.only_statuses() {
            return Ok(dispute_status::Entity::find()
                .filter(dispute_status::Column::Status.is_in(statuses))
                .count(&self.db)
                .await?);
        }
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
