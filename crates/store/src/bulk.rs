//! Bulk jobs: a bulk action over more disputes than one request should work through. The job keeps the
//! action and the caller; each dispute is an item whose outcome is written once it is known. Whatever has no
//! outcome yet is the work left, so a job resumes after a crash or restart where it stopped, and a lease makes
//! one replica at a time work it (another takes over when the lease lapses).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{bulk_job, bulk_job_item};
use crate::{Store, StoreError};

/// Items inserted per statement when a job is created.
const INSERT_CHUNK: usize = 1000;

pub const BULK_RUNNING: &str = "running";
pub const BULK_DONE: &str = "done";

/// A job to create: the action (as the API names it), its input, the caller and the disputes in order.
#[derive(Debug, Clone)]
pub struct NewBulkJob {
    pub id: Uuid,
    pub action: String,
    pub input: serde_json::Value,
    pub actor_name: String,
    pub actor_role: String,
    /// `api_key` or `user`: how the caller signed in.
    pub actor_kind: String,
    pub dispute_ids: Vec<Uuid>,
    pub now: DateTime<Utc>,
}

/// A job as stored, with its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkJobRecord {
    pub id: Uuid,
    pub action: String,
    pub input: serde_json::Value,
    pub actor_name: String,
    pub actor_role: String,
    /// `api_key` or `user`: how the caller signed in.
    pub actor_kind: String,
    pub status: String,
    pub total: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How many items ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkProgress {
    pub ok: u64,
    pub conflict: u64,
    pub not_allowed: u64,
    pub error: u64,
}

impl BulkProgress {
    pub fn processed(&self) -> u64 {
        self.ok + self.conflict + self.not_allowed + self.error
    }
}

/// One item's result: its outcome (`ok`, `conflict`, `not_allowed`, `error`), error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItemResult {
    pub position: i32,
    pub dispute_id: Uuid,
    pub outcome: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl From<bulk_job::Model> for BulkJobRecord {
    fn from(r: bulk_job::Model) -> Self {
        Self {
            id: r.id,
            action: r.action,
            input: r.input,
            actor_name: r.actor_name,
            actor_role: r.actor_role,
            actor_kind: r.actor_kind,
            status: r.status,
            total: i64::from(r.total),
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

impl From<bulk_job_item::Model> for BulkItemResult {
    fn from(r: bulk_job_item::Model) -> Self {
        Self {
            position: r.position,
            dispute_id: r.dispute_id,
            outcome: r.outcome,
            code: r.code,
            message: r.message,
        }
    }
}

impl Store {
    /// Writes the job and one item per dispute in one transaction: a job exists whole or not at all.
    pub async fn create_bulk_job(&self, job: &NewBulkJob) -> Result<(), StoreError> {
        let total = i32::try_from(job.dispute_ids.len())
            .map_err(|_| StoreError::Corrupt("a bulk job of more than 2^31 disputes".into()))?;
        let txn = self.db().begin().await?;
        bulk_job::Entity::insert(bulk_job::ActiveModel {
            id: Set(job.id),
            action: Set(job.action.clone()),
            input: Set(job.input.clone()),
            actor_name: Set(job.actor_name.clone()),
            actor_role: Set(job.actor_role.clone()),
            actor_kind: Set(job.actor_kind.clone()),
            status: Set(BULK_RUNNING.to_owned()),
            total: Set(total),
            locked_by: Set(None),
            locked_until: Set(None),
            created_at: Set(job.now),
            updated_at: Set(job.now),
            finished_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        for (chunk_index, chunk) in job.dispute_ids.chunks(INSERT_CHUNK).enumerate() {
            let items = chunk.iter().enumerate().map(|(i, id)| bulk_job_item::ActiveModel {
                job_id: Set(job.id),
                position: Set((chunk_index * INSERT_CHUNK + i) as i32),
                dispute_id: Set(*id),
                outcome: Set(None),
                code: Set(None),
                message: Set(None),
            });
            bulk_job_item::Entity::insert_many(items)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        self.bulk_jobs_added().notify_one();
        Ok(())
    }

    /// Takes the lease of the oldest running job nobody holds (or whose holder's lease lapsed) for `lease`.
    pub async fn claim_bulk_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<BulkJobRecord>, StoreError> {
        let free = || {
            Condition::any()
                .add(bulk_job::Column::LockedUntil.is_null())
                .add(bulk_job::Column::LockedUntil.lt(now))
        };
        let candidates = bulk_job::Entity::find()
            .filter(bulk_job::Column::Status.eq(BULK_RUNNING))
            .filter(free())
            .order_by_asc(bulk_job::Column::CreatedAt)
            .limit(5)
            .all(self.db())
            .await?;
        for job in candidates {
            // Taken only if still free: of two replicas racing for it, one updates the row.
            let taken = bulk_job::Entity::update_many()
                .col_expr(bulk_job::Column::LockedBy, Expr::value(worker))
                .col_expr(bulk_job::Column::LockedUntil, Expr::value(now + lease))
                .filter(bulk_job::Column::Id.eq(job.id))
                .filter(bulk_job::Column::Status.eq(BULK_RUNNING))
                .filter(free())
                .exec(self.db())
                .await?;
            if taken.rows_affected == 1 {
                return Ok(Some(job.into()));
            }
        }
        Ok(None)
    }

    /// The next items of `job` without an outcome, in order.
    pub async fn bulk_items_left(&self, job: Uuid, limit: u64) -> Result<Vec<BulkItemResult>, StoreError> {
        Ok(bulk_job_item::Entity::find()
            .filter(bulk_job_item::Column::JobId.eq(job))
            .filter(bulk_job_item::Column::Outcome.is_null())
            .order_by_asc(bulk_job_item::Column::Position)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Records a batch's outcomes and renews the lease, in one transaction, only while `worker` holds the
    /// job; false (nothing written) when the lease was lost.
    pub async fn record_bulk_results(
        &self,
        job: Uuid,
        worker: &str,
        results: &[BulkItemResult],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin().await?;
        let renewed = bulk_job::Entity::update_many()
            .col_expr(bulk_job::Column::LockedUntil, Expr::value(now + lease))
            .col_expr(bulk_job::Column::UpdatedAt, Expr::value(now))
            .filter(bulk_job::Column::Id.eq(job))
            .filter(bulk_job::Column::LockedBy.eq(worker))
            .exec(&txn)
            .await?;
        if renewed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        for result in results {
            bulk_job_item::Entity::update_many()
                .col_expr(bulk_job_item::Column::Outcome, Expr::value(result.outcome.clone()))
                .col_expr(bulk_job_item::Column::Code, Expr::value(result.code.clone()))
                .col_expr(bulk_job_item::Column::Message, Expr::value(result.message.clone()))
                .filter(bulk_job_item::Column::JobId.eq(job))
                .filter(bulk_job_item::Column::Position.eq(result.position))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Marks the job done and lets go of it, if `worker` still holds it and no item is left.
    pub async fn finish_bulk_job(&self, job: Uuid, worker: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        if !self.bulk_items_left(job, 1).await?.is_empty() {
            return Ok(false);
        }
        let done = bulk_job::Entity::update_many()
            .col_expr(bulk_job::Column::Status, Expr::value(BULK_DONE))
            .col_expr(bulk_job::Column::FinishedAt, Expr::value(now))
            .col_expr(bulk_job::Column::UpdatedAt, Expr::value(now))
            .col_expr(bulk_job::Column::LockedBy, Expr::value(Option::<String>::None))
            .col_expr(
                bulk_job::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(bulk_job::Column::Id.eq(job))
            .filter(bulk_job::Column::LockedBy.eq(worker))
            .exec(self.db())
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Lets go of a job without finishing it (shutdown): another worker may take it at once.
    pub async fn release_bulk_job(&self, job: Uuid, worker: &str) -> Result<(), StoreError> {
        bulk_job::Entity::update_many()
            .col_expr(bulk_job::Column::LockedBy, Expr::value(Option::<String>::None))
            .col_expr(
                bulk_job::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(bulk_job::Column::Id.eq(job))
            .filter(bulk_job::Column::LockedBy.eq(worker))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// A job and its progress so far.
    pub async fn bulk_job(&self, id: Uuid) -> Result<Option<(BulkJobRecord, BulkProgress)>, StoreError> {
        let Some(job) = bulk_job::Entity::find_by_id(id).one(self.db()).await? else {
            return Ok(None);
        };
        let mut progress = BulkProgress::default();
        for (outcome, slot) in [
            ("ok", &mut progress.ok),
            ("conflict", &mut progress.conflict),
            ("not_allowed", &mut progress.not_allowed),
            ("error", &mut progress.error),
        ] {
            *slot = bulk_job_item::Entity::find()
                .filter(bulk_job_item::Column::JobId.eq(id))
                .filter(bulk_job_item::Column::Outcome.eq(outcome))
                .count(self.db())
                .await?;
        }
        Ok(Some((job.into(), progress)))
    }

    /// A job's items after `after` (a position), in order; only those that did not succeed with `failures_only`.
    pub async fn bulk_job_items(
        &self,
        id: Uuid,
        failures_only: bool,
        first: u64,
        after: Option<i32>,
    ) -> Result<Vec<BulkItemResult>, StoreError> {
        let mut query = bulk_job_item::Entity::find().filter(bulk_job_item::Column::JobId.eq(id));
        if failures_only {
            query = query.filter(
                bulk_job_item::Column::Outcome
                    .is_not_null()
                    .and(Expr::col(bulk_job_item::Column::Outcome).ne("ok")),
            );
        }
        if let Some(after) = after {
            query = query.filter(bulk_job_item::Column::Position.gt(after));
        }
        Ok(query
            .order_by_asc(bulk_job_item::Column::Position)
            .limit(first)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
