//! The notification inbox: processor messages stored as received, before they are applied to a dispute.
//!
//! Storing first and applying second is what makes webhooks safe to acknowledge: once
//! [`Store::insert_notification`] returns, the message survives a crash, and a pending row is applied later
//! by whoever claims it ([`Store::claim_pending_notifications`]). The unique key (processor, event_id)
//! absorbs redeliveries: a duplicate is an ordinary outcome, not an error.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;
use verdict_domain::DisputeId;

use crate::entity::notification;
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

/// The outcome written on an inbox row once it has been applied; it can ride in the same transaction as the
/// dispute's events ([`Store::commit_applying`]), so a row never says pending for a change already made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFinish {
    pub id: Uuid,
    pub status: InboxStatus,
    pub dispute_id: Option<DisputeId>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

impl InboxFinish {
    pub(crate) fn update(&self) -> sea_orm::UpdateMany<notification::Entity> {
        let mut update = notification::Entity::update_many()
            .col_expr(notification::Column::Status, Expr::value(self.status.as_str()))
            .col_expr(notification::Column::Note, Expr::value(self.note.clone()))
            .col_expr(
                notification::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                notification::Column::AppliedAt,
                Expr::value((self.status == InboxStatus::Applied).then_some(self.at)),
            );
        if let Some(dispute_id) = self.dispute_id {
            update = update.col_expr(notification::Column::DisputeId, Expr::value(dispute_id.as_uuid()));
        }
        update.filter(notification::Column::Id.eq(self.id))
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxStatus {
    /// Stored, not yet applied (or applying failed and will be retried).
    Pending,
    /// Applied to its dispute (which may mean "recorded, nothing to change").
    Applied,
    /// Deliberately not applied: a type we do not act on, or older than what the dispute already reflects.
    Ignored,
    /// Contradicts the dispute's state machine; kept and shown on the dispute for an analyst to look at.
    Flagged,
    /// Could not be applied after repeated attempts (or could not be read back); needs an operator.
    Failed,
}

impl InboxStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            InboxStatus::Pending => "pending",
            InboxStatus::Applied => "applied",
            InboxStatus::Ignored => "ignored",
            InboxStatus::Flagged => "flagged",
            InboxStatus::Failed => "failed",
        }
    }
}

impl FromStr for InboxStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => InboxStatus::Pending,
            "applied" => InboxStatus::Applied,
            "ignored" => InboxStatus::Ignored,
            "flagged" => InboxStatus::Flagged,
            "failed" => InboxStatus::Failed,
            other => return Err(StoreError::Corrupt(format!("unknown notification status {other:?}"))),
        })
    }
}

impl fmt::Display for InboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// The endpoint it came through: `stripe`, `adyen`, `paypal`, `braintree` or `alerts`.
    pub processor: String,
    pub event_id: String,
    pub event_type: String,
    /// The normalised kind (`chargeback_opened`...), `None` for ignored types.
    pub kind: Option<String>,
    pub processor_dispute_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The raw request body, as received.
    pub payload: String,
    /// The normalised notification as JSON, so that applying later needs no re-parsing.
    pub notification: Option<serde_json::Value>,
    pub status: InboxStatus,
    pub note: Option<String>,
    /// Until when the inserting request owns the row; [`Store::claim_pending_notifications`] skips it until
    /// then, so the request and the background sweep do not apply the same row twice.
    pub locked_until: Option<DateTime<Utc>>,
}

/// What inserting a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    Inserted(Uuid),
    /// The processor already sent this event id; nothing was written.
    Duplicate,
}

/// One stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub id: Uuid,
    pub processor: String,
    pub event_id: String,
    pub event_type: String,
    pub kind: Option<String>,
    pub processor_dispute_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub payload: String,
    pub notification: Option<serde_json::Value>,
    pub status: InboxStatus,
    pub dispute_id: Option<DisputeId>,
    /// Why it was flagged, ignored or failed, or what applying it did.
    pub note: Option<String>,
    pub attempts: i32,
    pub applied_at: Option<DateTime<Utc>>,
    /// When the retention job blanked `payload`.
    pub payload_purged_at: Option<DateTime<Utc>>,
}

pub(crate) fn record(row: notification::Model) -> Result<NotificationRecord, StoreError> {
    Ok(NotificationRecord {
        id: row.id,
        status: row.status.parse()?,
        processor: row.processor,
        event_id: row.event_id,
        event_type: row.event_type,
        kind: row.kind,
        processor_dispute_id: row.processor_dispute_id,
        received_at: row.received_at,
        occurred_at: row.occurred_at,
        payload: row.payload,
        notification: row.notification,
        dispute_id: row.dispute_id.map(DisputeId::from_uuid),
        note: row.note,
        attempts: row.attempts,
        applied_at: row.applied_at,
        payload_purged_at: row.payload_purged_at,
    })
}

fn records(rows: Vec<notification::Model>) -> Result<Vec<NotificationRecord>, StoreError> {
    rows.into_iter().map(record).collect()
}

impl Store {
    /// Blanks the raw body of up to `limit` notifications received before `received_before` that are done with
    /// (applied, ignored, flagged); pending and failed rows keep theirs until they are dealt with. Returns how
    /// many were purged.
    pub async fn purge_notification_payloads(
        &self,
        received_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let statement = self.stmt(
            "UPDATE notifications SET payload = '', payload_purged_at = $1 WHERE id IN (SELECT id FROM notifications \
             WHERE payload_purged_at IS NULL AND received_at < $2 AND status IN ('applied', 'ignored', 'flagged') \
             ORDER BY received_at LIMIT $3)",
            vec![now.into(), received_before.into(), (limit as i64).into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected())
    }

    /// Stores a notification; a second one with the same (processor, event_id) is [`InboxInsert::Duplicate`].
    pub async fn insert_notification(&self, new: &NewNotification) -> Result<InboxInsert, StoreError> {
        let id = Uuid::now_v7();
        let model = notification::ActiveModel {
            id: Set(id),
            processor: Set(new.processor.clone()),
            event_id: Set(new.event_id.clone()),
            event_type: Set(new.event_type.clone()),
            kind: Set(new.kind.clone()),
            processor_dispute_id: Set(new.processor_dispute_id.clone()),
            received_at: Set(new.received_at),
            occurred_at: Set(new.occurred_at),
            payload: Set(new.payload.clone()),
            notification: Set(new.notification.clone()),
            status: Set(new.status.as_str().to_owned()),
            dispute_id: Set(None),
            note: Set(new.note.clone()),
            attempts: Set(0),
            locked_until: Set(new.locked_until),
            applied_at: Set(None),
            payload_purged_at: Set(None),
        };
        match notification::Entity::insert(model)
            .exec_without_returning(self.db())
            .await
        {
            Ok(_) => Ok(InboxInsert::Inserted(id)),
            Err(err) if is_unique_violation(&err) => Ok(InboxInsert::Duplicate),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn notification(&self, id: Uuid) -> Result<Option<NotificationRecord>, StoreError> {
        notification::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(record)
            .transpose()
    }

    /// Records the result of applying a notification and releases the row.
    pub async fn finish_notification(
        &self,
        id: Uuid,
        status: InboxStatus,
        dispute_id: Option<DisputeId>,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let finish = InboxFinish {
            id,
            status,
            dispute_id,
            note: note.map(str::to_owned),
            at,
        };
        finish.update().exec(self.db()).await?;
        Ok(())
    }

    /// Counts a failed attempt and leaves the row pending, locked until `retry_at` (so sweeps back off), or
    /// marks it failed once `max_attempts` is reached. Returns the status the row is left in.
    pub async fn retry_notification_later(
        &self,
        id: Uuid,
        error: &str,
        max_attempts: i32,
        retry_at: DateTime<Utc>,
    ) -> Result<InboxStatus, StoreError> {
        let Some(row) = notification::Entity::find_by_id(id).one(self.db()).await? else {
            return Err(StoreError::Corrupt(format!("notification {id} vanished")));
        };
        let attempts = row.attempts + 1;
        let status = if attempts >= max_attempts {
            InboxStatus::Failed
        } else {
            InboxStatus::Pending
        };
        notification::Entity::update_many()
            .col_expr(notification::Column::Attempts, Expr::value(attempts))
            .col_expr(notification::Column::Status, Expr::value(status.as_str()))
            .col_expr(notification::Column::Note, Expr::value(error.to_owned()))
            .col_expr(notification::Column::LockedUntil, Expr::value(Some(retry_at)))
            .filter(notification::Column::Id.eq(id))
            .exec(self.db())
            .await?;
        Ok(status)
    }

    /// Claims up to `limit` pending notifications whose lock has lapsed (oldest `occurred_at` first) by
    /// locking each for `lease`. Each claim is a conditional UPDATE, so two replicas never claim the same row.
    pub async fn claim_pending_notifications(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u64,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let unlocked = || {
            Condition::any()
                .add(notification::Column::LockedUntil.is_null())
                .add(notification::Column::LockedUntil.lte(now))
        };
        let candidates = notification::Entity::find()
            .filter(notification::Column::Status.eq(InboxStatus::Pending.as_str()))
            .filter(unlocked())
            .order_by_asc(notification::Column::OccurredAt)
            .order_by_asc(notification::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for row in candidates {
            let result = notification::Entity::update_many()
                .col_expr(notification::Column::LockedUntil, Expr::value(Some(now + lease)))
                .filter(notification::Column::Id.eq(row.id))
                .filter(notification::Column::Status.eq(InboxStatus::Pending.as_str()))
                .filter(unlocked())
                .exec(self.db())
                .await?;
            if result.rows_affected == 1 {
                claimed.push(record(row)?);
            }
        }
        Ok(claimed)
    }

    /// Every notification of a dispute, raw payload included, oldest first: the replay material of a dispute.
    /// (Payloads can carry personal data: expose to admins and leads only.)
    pub async fn notifications_of_dispute(&self, dispute_id: DisputeId) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = notification::Entity::find()
            .filter(notification::Column::DisputeId.eq(dispute_id.as_uuid()))
            .order_by_asc(notification::Column::OccurredAt)
            .order_by_asc(notification::Column::Id)
            .all(self.db())
            .await?;
        records(rows)
    }

    /// The notifications of a dispute that contradicted its state machine, oldest first, with the reason in
    /// `note`.
    pub async fn flagged_notifications_of_dispute(
        &self,
        dispute_id: DisputeId,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = notification::Entity::find()
            .filter(notification::Column::DisputeId.eq(dispute_id.as_uuid()))
            .filter(notification::Column::Status.eq(InboxStatus::Flagged.as_str()))
            .order_by_asc(notification::Column::OccurredAt)
            .order_by_asc(notification::Column::Id)
            .all(self.db())
            .await?;
        records(rows)
    }

    /// When the newest notification already applied to the dispute happened; older ones must not move it.
    pub async fn last_applied_notification_at(
        &self,
        dispute_id: DisputeId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let newest = notification::Entity::find()
            .filter(notification::Column::DisputeId.eq(dispute_id.as_uuid()))
            .filter(notification::Column::Status.eq(InboxStatus::Applied.as_str()))
            .filter(notification::Column::OccurredAt.is_not_null())
            .order_by_desc(notification::Column::OccurredAt)
            .one(self.db())
            .await?;
        Ok(newest.and_then(|row| row.occurred_at))
    }

    /// Notifications by endpoint and event id; for tests and support.
    pub async fn find_notifications(
        &self,
        processor: &str,
        event_id: Option<&str>,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let mut query = notification::Entity::find().filter(notification::Column::Processor.eq(processor));
        if let Some(event_id) = event_id {
            query = query.filter(notification::Column::EventId.eq(event_id));
        }
        records(query.order_by_asc(notification::Column::Id).all(self.db()).await?)
    }

    /// How many notifications are in each status; for metrics and tests.
    pub async fn count_notifications(&self, status: Option<InboxStatus>) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        let mut query = notification::Entity::find();
        if let Some(status) = status {
            query = query.filter(notification::Column::Status.eq(status.as_str()));
        }
        Ok(query.count(self.db()).await?)
    }
}
