//! Policy backtests as resumable jobs: created by a lead, claimed under a lease by one replica, advanced page by
//! page (the last dispute replayed and the tallies so far written with each page's changed disputes), finished
//! with the result. The inputs are read in pages of the stored triage runs, in dispute id order.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{dispute, dispute_triage, policy_backtest, policy_backtest_change};
use crate::{Store, StoreError};

pub const BACKTEST_RUNNING: &str = "running";
pub const BACKTEST_DONE: &str = "done";
pub const BACKTEST_FAILED: &str = "failed";

/// A backtest as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRecord {
    pub id: Uuid,
    pub draft_source: String,
    pub active_version: i64,
    pub active_source: String,
    pub months: i32,
    pub since: DateTime<Utc>,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub total: i64,
    pub processed: i64,
    pub last_dispute: Option<Uuid>,
    /// The tallies so far (a `verdict_domain::backtest::Backtest`).
    pub tally: serde_json::Value,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<policy_backtest::Model> for BacktestRecord {
    fn from(m: policy_backtest::Model) -> Self {
        Self {
            id: m.id,
            draft_source: m.draft_source,
            active_version: i64::from(m.active_version),
            active_source: m.active_source,
            months: m.months,
            since: m.since,
            status: m.status,
            total: m.total,
            processed: m.processed,
            last_dispute: m.last_dispute,
            tally: m.tally,
            error: m.error,
            created_by: m.created_by,
            created_at: m.created_at,
            finished_at: m.finished_at,
        }
    }
}

/// A backtest to start.
#[derive(Debug, Clone)]
pub struct NewBacktest {
    pub draft_source: String,
    pub active_version: i64,
    pub active_source: String,
    pub months: i32,
    pub since: DateTime<Utc>,
    pub created_by: String,
}

/// One page of a backtest's work, written at once.
#[derive(Debug, Clone)]
pub struct BacktestPage {
    pub processed: i64,
    pub last_dispute: Option<Uuid>,
    pub tally: serde_json::Value,
    pub changes: Vec<(Uuid, serde_json::Value)>,
}

fn opened_since(since: DateTime<Utc>) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(dispute::Column::Id)
        .from(dispute::Entity)
        .and_where(Expr::col(dispute::Column::OpenedAt).gte(since))
        .to_owned()
}

impl Store {
    /// Stores a backtest to run, counting the triaged disputes opened since `since` for its progress.
    pub async fn create_backtest(
        &self,
        new: &NewBacktest,
        tally: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<BacktestRecord, StoreError> {
        let total = dispute_triage::Entity::find()
            .filter(dispute_triage::Column::DisputeId.in_subquery(opened_since(new.since)))
            .count(self.db())
            .await?;
        let row = policy_backtest::Model {
            id: Uuid::now_v7(),
            draft_source: new.draft_source.clone(),
            active_version: i32::try_from(new.active_version)
                .map_err(|_| StoreError::Corrupt("policy version out of range".into()))?,
            active_source: new.active_source.clone(),
            months: new.months,
            since: new.since,
            status: BACKTEST_RUNNING.to_owned(),
            total: i64::try_from(total).unwrap_or(i64::MAX),
            processed: 0,
            last_dispute: None,
            tally,
            error: None,
            created_by: new.created_by.clone(),
            locked_by: None,
            locked_until: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        let active: policy_backtest::ActiveModel = row.clone().into();
        policy_backtest::Entity::insert(active)
            .exec_without_returning(self.db())
            .await?;
        self.backtests_added().notify_one();
        Ok(row.into())
    }

    /// Takes the lease of the oldest running backtest nobody holds (or whose holder's lease lapsed).
    pub async fn claim_backtest(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<BacktestRecord>, StoreError> {
        let free = || {
            Condition::any()
                .add(policy_backtest::Column::LockedUntil.is_null())
                .add(policy_backtest::Column::LockedUntil.lt(now))
        };
        let candidates = policy_backtest::Entity::find()
            .filter(policy_backtest::Column::Status.eq(BACKTEST_RUNNING))
            .filter(free())
            .order_by_asc(policy_backtest::Column::CreatedAt)
            .limit(5)
            .all(self.db())
            .await?;
        for job in candidates {
            let taken = policy_backtest::Entity::update_many()
                .col_expr(policy_backtest::Column::LockedBy, Expr::value(worker))
                .col_expr(policy_backtest::Column::LockedUntil, Expr::value(now + lease))
                .filter(policy_backtest::Column::Id.eq(job.id))
                .filter(policy_backtest::Column::Status.eq(BACKTEST_RUNNING))
                .filter(free())
                .exec(self.db())
                .await?;
            if taken.rows_affected == 1 {
                return Ok(Some(job.into()));
            }
        }
        Ok(None)
    }

    /// The stored triage inputs of disputes opened since `since`, after dispute `after`, in id order.
    pub async fn triage_inputs_page(
        &self,
        since: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<(Uuid, serde_json::Value)>, StoreError> {
        let mut query = dispute_triage::Entity::find()
            .select_only()
            .column(dispute_triage::Column::DisputeId)
            .column(dispute_triage::Column::Input)
            .filter(dispute_triage::Column::DisputeId.in_subquery(opened_since(since)));
        if let Some(after) = after {
            query = query.filter(dispute_triage::Column::DisputeId.gt(after));
        }
        Ok(query
            .order_by_asc(dispute_triage::Column::DisputeId)
            .limit(limit)
            .into_tuple::<(Uuid, serde_json::Value)>()
            .all(self.db())
            .await?)
    }

    /// Writes one page (progress, tallies, changed disputes) and renews the lease, only while `worker` holds the
    /// backtest; false (nothing written) when the lease was lost. With `finished`, the backtest is done.
    pub async fn record_backtest_page(
        &self,
        id: Uuid,
        worker: &str,
        page: &BacktestPage,
        finished: bool,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin().await?;
        let mut update = policy_backtest::Entity::update_many()
            .col_expr(policy_backtest::Column::Processed, Expr::value(page.processed))
            .col_expr(policy_backtest::Column::LastDispute, Expr::value(page.last_dispute))
            .col_expr(policy_backtest::Column::Tally, Expr::value(page.tally.clone()))
            .col_expr(policy_backtest::Column::UpdatedAt, Expr::value(now));
        update = if finished {
            update
                .col_expr(policy_backtest::Column::Status, Expr::value(BACKTEST_DONE))
                .col_expr(policy_backtest::Column::FinishedAt, Expr::value(now))
                .col_expr(policy_backtest::Column::LockedBy, Expr::value(Option::<String>::None))
                .col_expr(
                    policy_backtest::Column::LockedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
        } else {
            update.col_expr(policy_backtest::Column::LockedUntil, Expr::value(now + lease))
        };
        let renewed = update
            .filter(policy_backtest::Column::Id.eq(id))
            .filter(policy_backtest::Column::LockedBy.eq(worker))
            .exec(&txn)
            .await?;
        if renewed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        // Bounded inserts: a page's changes go in chunks well under either backend's parameter limit.
        for chunk in page.changes.chunks(500) {
            let rows = chunk
                .iter()
                .map(|(dispute_id, change)| policy_backtest_change::ActiveModel {
                    backtest_id: Set(id),
                    dispute_id: Set(*dispute_id),
                    change: Set(change.clone()),
                });
            policy_backtest_change::Entity::insert_many(rows)
                .on_conflict(
                    sea_orm::sea_query::OnConflict::columns([
                        policy_backtest_change::Column::BacktestId,
                        policy_backtest_change::Column::DisputeId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Marks a backtest failed with why (a draft or active policy that no longer reads, an unreadable input).
    pub async fn fail_backtest(&self, id: Uuid, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        policy_backtest::Entity::update_many()
            .col_expr(policy_backtest::Column::Status, Expr::value(BACKTEST_FAILED))
            .col_expr(policy_backtest::Column::Error, Expr::value(error))
            .col_expr(policy_backtest::Column::FinishedAt, Expr::value(now))
            .col_expr(policy_backtest::Column::UpdatedAt, Expr::value(now))
            .col_expr(policy_backtest::Column::LockedBy, Expr::value(Option::<String>::None))
            .filter(policy_backtest::Column::Id.eq(id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Lets go of a backtest without finishing it (shutdown): another worker may take it at once.
    pub async fn release_backtest(&self, id: Uuid, worker: &str) -> Result<(), StoreError> {
        policy_backtest::Entity::update_many()
            .col_expr(policy_backtest::Column::LockedBy, Expr::value(Option::<String>::None))
            .col_expr(
                policy_backtest::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(policy_backtest::Column::Id.eq(id))
            .filter(policy_backtest::Column::LockedBy.eq(worker))
            .exec(self.db())
            .await?;
        Ok(())
    }

    pub async fn backtest(&self, id: Uuid) -> Result<Option<BacktestRecord>, StoreError> {
        Ok(policy_backtest::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(Into::into))
    }

    /// A backtest's changed disputes in id order, after `after`.
    pub async fn backtest_changes(
        &self,
        id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<(Uuid, serde_json::Value)>, StoreError> {
        let mut query =
            policy_backtest_change::Entity::find().filter(policy_backtest_change::Column::BacktestId.eq(id));
        if let Some(after) = after {
            query = query.filter(policy_backtest_change::Column::DisputeId.gt(after));
        }
        Ok(query
            .order_by_asc(policy_backtest_change::Column::DisputeId)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| (m.dispute_id, m.change))
            .collect())
    }
}
