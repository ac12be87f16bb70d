//! Sellers' side of disputes: the recoveries of seller-owned disputes that were lost or accepted (recorded
//! once per recovery key, then marked sent with the payout service's reference), and sellers' dispute counts
//! against their order counts.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use crate::entity::seller_recovery;
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

/// A recovery to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecovery {
    /// The recovery step's idempotency key: one recovery per key.
    pub recovery_key: String,
    pub dispute_id: Uuid,
    pub seller_id: String,
    pub amount_minor_units: i64,
    pub currency: String,
    pub liability: String,
    pub outcome: String,
}

/// A recovery as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRecord {
    pub id: Uuid,
    pub recovery_key: String,
    pub dispute_id: Uuid,
    pub seller_id: String,
    pub amount_minor_units: i64,
    pub currency: String,
    pub liability: String,
    pub outcome: String,
    /// The payout service's reference once it took the debit; `None` while the recovery waits.
    pub payout_reference: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<seller_recovery::Model> for RecoveryRecord {
    fn from(m: seller_recovery::Model) -> Self {
        Self {
            id: m.id,
            recovery_key: m.recovery_key,
            dispute_id: m.dispute_id,
            seller_id: m.seller_id,
            amount_minor_units: m.amount_minor_units,
            currency: m.currency,
            liability: m.liability,
            outcome: m.outcome,
            payout_reference: m.payout_reference,
            created_at: m.created_at,
            sent_at: m.sent_at,
        }
    }
}

/// How many disputes and orders a seller has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerCounts {
    pub seller_id: String,
    pub disputes: u64,
    pub orders: u64,
}

impl Store {
    /// Records a recovery, or returns the one already recorded under its key (a retried step).
    pub async fn record_recovery(&self, new: &NewRecovery, now: DateTime<Utc>) -> Result<RecoveryRecord, StoreError> {
        if let Some(found) = self.recovery(&new.recovery_key).await? {
            return Ok(found);
        }
        let model = seller_recovery::ActiveModel {
            id: Set(Uuid::now_v7()),
            recovery_key: Set(new.recovery_key.clone()),
            dispute_id: Set(new.dispute_id),
            seller_id: Set(new.seller_id.clone()),
            amount_minor_units: Set(new.amount_minor_units),
            currency: Set(new.currency.clone()),
            liability: Set(new.liability.clone()),
            outcome: Set(new.outcome.clone()),
            payout_reference: Set(None),
            created_at: Set(now),
            sent_at: Set(None),
        };
        match model.insert(self.db()).await {
            Ok(model) => Ok(model.into()),
            Err(err) if is_unique_violation(&err) => self
                .recovery(&new.recovery_key)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a recovery vanished after a duplicate insert".into())),
            Err(err) => Err(err.into()),
        }
    }

    /// The recovery recorded under `recovery_key`.
    pub async fn recovery(&self, recovery_key: &str) -> Result<Option<RecoveryRecord>, StoreError> {
        let found = seller_recovery::Entity::find()
            .filter(seller_recovery::Column::RecoveryKey.eq(recovery_key))
            .one(self.db())
            .await?;
        Ok(found.map(RecoveryRecord::from))
    }

    /// Marks a recovery as taken by the payout service; the first reference stays.
    pub async fn mark_recovery_sent(
        &self,
        recovery_key: &str,
        payout_reference: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        seller_recovery::Entity::update_many()
            .col_expr(
                seller_recovery::Column::PayoutReference,
                sea_orm::sea_query::Expr::value(payout_reference),
            )
            .col_expr(seller_recovery::Column::SentAt, sea_orm::sea_query::Expr::value(now))
            .filter(seller_recovery::Column::RecoveryKey.eq(recovery_key))
            .filter(seller_recovery::Column::PayoutReference.is_null())
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Recoveries, newest first; of one dispute when `dispute_id` is given.
    pub async fn recoveries(&self, dispute_id: Option<Uuid>, limit: u64) -> Result<Vec<RecoveryRecord>, StoreError> {
        let mut query = seller_recovery::Entity::find();
        if let Some(id) = dispute_id {
            query = query.filter(seller_recovery::Column::DisputeId.eq(id));
        }
        let rows = query
            .order_by_desc(seller_recovery::Column::CreatedAt)
            .order_by_desc(seller_recovery::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(RecoveryRecord::from).collect())
    }

    /// Every seller with disputes or orders: disputes opened since `since` against orders placed since then.
    pub async fn seller_counts(&self, since: DateTime<Utc>) -> Result<Vec<SellerCounts>, StoreError> {
        let disputes = self
            .db()
            .query_all_raw(self.stmt(
                "SELECT seller_id, COUNT(*) AS n FROM disputes WHERE seller_id IS NOT NULL AND opened_at >= $1 \
                 GROUP BY seller_id",
                vec![since.into()],
            ))
            .await?;
        let orders = self
            .db()
            .query_all_raw(self.stmt(
                "SELECT seller_id, COUNT(*) AS n FROM marketplace_orders WHERE placed_at >= $1 GROUP BY seller_id",
                vec![since.into()],
            ))
            .await?;
        let mut counts: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for (rows, disputes_column) in [(disputes, true), (orders, false)] {
            for row in rows {
                let seller: String = row.try_get("", "seller_id")?;
                let n: i64 = row.try_get("", "n")?;
                let entry = counts.entry(seller).or_default();
                let n = u64::try_from(n).unwrap_or_default();
                if disputes_column {
                    entry.0 = n;
                } else {
                    entry.1 = n;
                }
            }
        }
        Ok(counts
            .into_iter()
            .map(|(seller_id, (disputes, orders))| SellerCounts {
                seller_id,
                disputes,
                orders,
            })
            .collect())
    }
}
