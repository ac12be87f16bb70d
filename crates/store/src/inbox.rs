//! The notification inbox: processor messages stored as received, before they are applied to a dispute.
//!
//! Storing first and applying second is what makes webhooks safe to acknowledge: once
//! [`Store::insert_notifications`] returns, the messages survive a crash. The unique key
//! (processor, event_id) absorbs redeliveries.
//!
//! Pending rows are claimed like timers and steps: a claim writes a fresh `lease_token` and a short
//! `locked_until` that the applier renews while it works ([`Store::renew_notification_leases`]); finishing
//! requires the token, so of two appliers only the current holder commits. Three things claim: the request
//! that stored the rows, a redelivery of a row still pending (it takes the row over at once, whoever held it:
//! a crash must not make the processor's retry a no-op), and the sweep ([`Store::claim_pending_notifications`],
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL) once a lease has lapsed.
//!
//! The raw body is kept as bytes (`body`), so anything a processor signs can be stored, NUL included.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Value,
};
use uuid::Uuid;
use verdict_domain::DisputeId;

use crate::entity::notification;
use crate::patterns::placeholders;
use crate::{Store, StoreError};

/// The outcome written on an inbox row once it has been applied; it can ride in the same transaction as the
/// dispute's events ([`Store::commit_applying`]), so a row never says pending for a change already made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxFinish {
    pub id: Uuid,
    /// The token of the claim being finished: nothing is written if the row was taken over meanwhile.
    pub lease_token: Uuid,
    pub status: InboxStatus,
    pub dispute_id: Option<DisputeId>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
    /// When set (with `dispute_id`), the write is refused with [`StoreError::Superseded`] if a notification
    /// that happened later was already applied to the dispute. Checked inside the committing transaction,
    /// after the dispute row is locked, so two deliveries racing for one dispute cannot both pass it.
    pub not_before_applied: Option<DateTime<Utc>>,
}

impl InboxFinish {
    fn update(&self) -> sea_orm::UpdateMany<notification::Entity> {
        let mut update = notification::Entity::update_many()
            .col_expr(notification::Column::Status, Expr::value(self.status.as_str()))
            .col_expr(notification::Column::Note, Expr::value(self.note.clone()))
            .col_expr(
                notification::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(notification::Column::LeaseToken, Expr::value(Option::<Uuid>::None))
            .col_expr(
                notification::Column::AppliedAt,
                Expr::value((self.status == InboxStatus::Applied).then_some(self.at)),
            );
        if let Some(dispute_id) = self.dispute_id {
            update = update.col_expr(notification::Column::DisputeId, Expr::value(dispute_id.as_uuid()));
        }
        update
            .filter(notification::Column::Id.eq(self.id))
            .filter(notification::Column::LeaseToken.eq(self.lease_token))
            .filter(notification::Column::Status.eq(InboxStatus::Pending.as_str()))
    }

    /// Checks the order (if asked) and writes the outcome, on `conn` (a transaction or the pool).
    /// [`StoreError::Superseded`] if a later notification was applied first, [`StoreError::LeaseLost`] if the
    /// row is no longer ours; the caller's transaction must then be rolled back.
    pub(crate) async fn write(&self, conn: &impl ConnectionTrait) -> Result<(), StoreError> {
        if let (Some(occurred_at), Some(dispute_id)) = (self.not_before_applied, self.dispute_id) {
            let newer = notification::Entity::find()
                .filter(notification::Column::DisputeId.eq(dispute_id.as_uuid()))
                .filter(notification::Column::Status.eq(InboxStatus::Applied.as_str()))
                .filter(notification::Column::OccurredAt.gt(occurred_at))
                .filter(notification::Column::Id.ne(self.id))
                .order_by_desc(notification::Column::OccurredAt)
                .one(conn)
                .await?;
            if let Some(last_applied) = newer.and_then(|row| row.occurred_at) {
                return Err(StoreError::Superseded { last_applied });
            }
        }
        if self.update().exec(conn).await?.rows_affected != 1 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }
}

/// Writes the outcomes of a batch's inbox rows (distinct rows) in its transaction: one statement for the
/// order checks of those flagged `true` (a later notification already applied refuses with
/// [`StoreError::Superseded`]) and, if none is refused, one version-fenced `UPDATE` of them all (a row no
/// longer held under its token refuses with [`StoreError::LeaseLost`]). Returns each refusal with its index;
/// the caller rolls the transaction back if there is any.
pub(crate) async fn write_finishes(
    store: &Store,
    txn: &DatabaseTransaction,
    finishes: &[(usize, &InboxFinish, bool)],
) -> Result<Vec<(usize, StoreError)>, StoreError> {
    let mut refused = Vec::new();
    let checked: Vec<(usize, DisputeId, DateTime<Utc>, Uuid)> = finishes
        .iter()
        .filter(|(_, _, check)| *check)
        .filter_map(|(k, f, _)| Some((*k, f.dispute_id?, f.not_before_applied?, f.id)))
        .collect();
    if !checked.is_empty() {
        let mut values: Vec<Value> = Vec::with_capacity(checked.len() * 4);
        let mut tuples = Vec::with_capacity(checked.len());
        for (k, dispute_id, occurred_at, id) in &checked {
            let row: [Value; 4] = [
                (*k as i64).into(),
                dispute_id.as_uuid().into(),
                (*occurred_at).into(),
                (*id).into(),
            ];
            tuples.push(format!("({})", placeholders(&mut values, row)));
        }
        let sql = format!(
            "WITH v (k, dispute_id, occurred_at, id) AS (VALUES {}) \
             SELECT v.k AS k, MAX(n.occurred_at) AS last_applied FROM v JOIN notifications n \
             ON n.dispute_id = v.dispute_id AND n.status = 'applied' AND n.occurred_at > v.occurred_at \
             AND n.id <> v.id GROUP BY v.k",
            tuples.join(", ")
        );
        for row in txn.query_all_raw(store.stmt(&sql, values)).await? {
            let k: i64 = row.try_get("", "k")?;
            let last_applied: DateTime<Utc> = row.try_get("", "last_applied")?;
            refused.push((k as usize, StoreError::Superseded { last_applied }));
        }
        if !refused.is_empty() {
            return Ok(refused);
        }
    }
    let mut values: Vec<Value> = Vec::with_capacity(finishes.len() * 6);
    let mut tuples = Vec::with_capacity(finishes.len());
    for (_, f, _) in finishes {
        let row: [Value; 6] = [
            f.id.into(),
            f.lease_token.into(),
            f.status.as_str().into(),
            f.note.clone().into(),
            (f.status == InboxStatus::Applied).then_some(f.at).into(),
            f.dispute_id.map(|d| d.as_uuid()).into(),
        ];
        tuples.push(format!("({})", placeholders(&mut values, row)));
    }
    let sql = format!(
        "WITH v (id, lease_token, status, note, applied_at, dispute_id) AS (VALUES {}) \
         UPDATE notifications SET status = v.status, note = v.note, locked_until = NULL, lease_token = NULL, \
         applied_at = v.applied_at, dispute_id = COALESCE(v.dispute_id, notifications.dispute_id) FROM v \
         WHERE notifications.id = v.id AND notifications.lease_token = v.lease_token \
         AND notifications.status = 'pending' RETURNING notifications.id",
        tuples.join(", ")
    );
    let written: std::collections::HashSet<Uuid> = txn
        .query_all_raw(store.stmt(&sql, values))
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "id"))
        .collect::<Result<_, _>>()?;
    for (k, f, _) in finishes {
        if !written.contains(&f.id) {
            refused.push((*k, StoreError::LeaseLost));
        }
    }
    Ok(refused)
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
    /// The raw request body (for an Adyen batch, the item's own JSON, which carries its signature), byte for
    /// byte.
    pub body: Vec<u8>,
    /// The normalised notification as JSON, so that applying later needs no re-parsing.
    pub notification: Option<serde_json::Value>,
    pub status: InboxStatus,
    pub note: Option<String>,
}

/// Rows of one multi-row insert into the inbox (19 parameters each; PostgreSQL takes 65,535 a statement).
const INSERT_CHUNK: usize = 500;

/// One delivery's rows waiting for the inbox writer.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    rows: Vec<NewNotification>,
    lease: InboxLease,
}

/// What inserting a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    /// Stored; a pending row is claimed under the delivery's lease.
    Inserted(Uuid),
    /// The processor already sent this event id and it was dealt with (or is not pending); nothing written.
    Duplicate,
    /// The processor redelivered an event stored earlier and still pending (a crash, a failed apply): the row
    /// was taken over under the delivery's lease, to be applied now.
    Retaken(Uuid),
}

/// The lease a delivery's pending rows are claimed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLease {
    pub token: Uuid,
    pub until: DateTime<Utc>,
}

/// Pending notifications claimed by one sweep under one token.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedNotifications {
    pub lease_token: Uuid,
    /// Oldest `occurred_at` first.
    pub rows: Vec<NotificationRecord>,
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
    /// The raw body as text (invalid UTF-8 replaced), for display; [`NotificationRecord::body`] is exact.
    pub payload: String,
    /// The raw body byte for byte; empty once purged.
    pub body: Vec<u8>,
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
    // Rows written before bodies were kept as bytes have only the text column.
    let body = row.body.unwrap_or_else(|| row.payload.into_bytes());
    Ok(NotificationRecord {
        payload: String::from_utf8_lossy(&body).into_owned(),
        body,
        id: row.id,
        status: row.status.parse()?,
        processor: row.processor,
        event_id: row.event_id,
        event_type: row.event_type,
        kind: row.kind,
        processor_dispute_id: row.processor_dispute_id,
        received_at: row.received_at,
        occurred_at: row.occurred_at,
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
            "UPDATE notifications SET payload = '', body = NULL, payload_purged_at = $1 WHERE id IN (SELECT id FROM notifications \
             WHERE payload_purged_at IS NULL AND received_at < $2 AND status IN ('applied', 'ignored', 'flagged') \
             ORDER BY received_at LIMIT $3)",
            vec![now.into(), received_before.into(), (limit as i64).into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected())
    }

    /// Stores a delivery's notifications, all or none of its new rows (a delivery that fits one insert: in that
    /// statement; a larger one in one transaction), so a 5xx makes the processor redeliver the whole of it. A
    /// take-over after the insert that fails answers `Err` for its delivery although its new rows are stored:
    /// pending, they are taken over by the redelivery (or applied by the sweep), never applied twice or lost. Pending rows are claimed under `lease`; an event id already stored is a
    /// [`InboxInsert::Duplicate`], or [`InboxInsert::Retaken`] when that row is still pending: it is taken over
    /// under `lease` whoever held it, since a redelivery means the processor is still waiting for it.
    ///
    /// Concurrent deliveries share a transaction (group.rs): each is answered once that transaction has
    /// committed, and as if the deliveries had been stored one after the other (on PostgreSQL, of two batches in
    /// flight with one event id, the one that inserts it first stores it; the other finds it stored).
    pub async fn insert_notifications(
        &self,
        rows: &[NewNotification],
        lease: InboxLease,
    ) -> Result<Vec<InboxInsert>, StoreError> {
        let delivery = Delivery {
            rows: rows.to_vec(),
            lease,
        };
        self.queued(
            &self.committer.inbox,
            delivery,
            |_| None,
            |_| false,
            |store, deliveries| {
                Box::pin(async move {
                    crate::group::together_or_alone(&store, deliveries, |store, deliveries| {
                        Box::pin(async move { store.insert_deliveries(&deliveries).await })
                    })
                    .await
                })
            },
        )
        .await
    }

    /// Every delivery's rows: one multi-row insert per [`INSERT_CHUNK`] rows, then a take-over for each event
    /// id that was already stored. Rows that fit one insert are written by that statement alone, which commits
    /// them atomically without the two round trips of `BEGIN` and `COMMIT` (a take-over after it is a write of
    /// its own: a delivery that fails there is answered 5xx, and its redelivery takes its rows over); more rows
    /// are written in one transaction.
    async fn insert_deliveries(
        &self,
        deliveries: &[Delivery],
    ) -> Result<Vec<Result<Vec<InboxInsert>, StoreError>>, StoreError> {
        use sea_orm::TransactionTrait;
        let rows: usize = deliveries.iter().map(|d| d.rows.len()).sum();
        if rows <= INSERT_CHUNK {
            return self.insert_deliveries_on(self.db(), deliveries, true).await;
        }
        let txn = self.db().begin().await?;
        let answers = self.insert_deliveries_on(&txn, deliveries, false).await?;
        crate::crash::commit(txn).await?;
        Ok(answers)
    }

    /// [`Store::insert_deliveries`] on `conn`; `autocommit` when each statement commits by itself (a crash
    /// point after each write).
    async fn insert_deliveries_on(
        &self,
        conn: &impl ConnectionTrait,
        deliveries: &[Delivery],
        autocommit: bool,
    ) -> Result<Vec<Result<Vec<InboxInsert>, StoreError>>, StoreError> {
        use sea_orm::sea_query::OnConflict;
        let committed = || {
            if autocommit {
                crate::crash::after_commit();
            }
        };
        let mut ids = Vec::new();
        let mut models = Vec::new();
        for delivery in deliveries {
            let lease = delivery.lease;
            for new in &delivery.rows {
                let id = Uuid::now_v7();
                let pending = new.status == InboxStatus::Pending;
                ids.push(id);
                models.push(notification::ActiveModel {
                    id: Set(id),
                    processor: Set(new.processor.clone()),
                    event_id: Set(new.event_id.clone()),
                    event_type: Set(new.event_type.clone()),
                    kind: Set(new.kind.clone()),
                    processor_dispute_id: Set(new.processor_dispute_id.clone()),
                    received_at: Set(new.received_at),
                    occurred_at: Set(new.occurred_at),
                    payload: Set(String::new()),
                    body: Set(Some(new.body.clone())),
                    notification: Set(new.notification.clone()),
                    status: Set(new.status.as_str().to_owned()),
                    dispute_id: Set(None),
                    note: Set(new.note.clone()),
                    attempts: Set(0),
                    locked_until: Set(pending.then_some(lease.until)),
                    lease_token: Set(pending.then_some(lease.token)),
                    applied_at: Set(None),
                    payload_purged_at: Set(None),
                });
            }
        }
        let mut inserted = std::collections::HashSet::new();
        let mut models = models.into_iter().peekable();
        while models.peek().is_some() {
            let chunk: Vec<_> = models.by_ref().take(INSERT_CHUNK).collect();
            // ON CONFLICT DO NOTHING rather than catching the violation: on PostgreSQL an error would abort the
            // whole transaction. A second row of one event id in the batch is skipped like a stored one.
            match notification::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::columns([notification::Column::Processor, notification::Column::EventId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_with_returning_keys(conn)
                .await
            {
                Ok(keys) => inserted.extend(keys),
                Err(sea_orm::DbErr::RecordNotInserted) => {}
                Err(err) => return Err(err.into()),
            }
            committed();
        }
        let mut ids = ids.into_iter();
        let mut answers = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let ids: Vec<Uuid> = ids.by_ref().take(delivery.rows.len()).collect();
            match self.take_over(conn, delivery, &ids, &inserted, &committed).await {
                Ok(inserts) => answers.push(Ok(inserts)),
                // The insert has committed: only this delivery failed (its 5xx makes the processor redeliver it,
                // and the redelivery takes over whatever of it is stored and still pending).
                Err(err) if autocommit => answers.push(Err(err)),
                Err(err) => return Err(err),
            }
        }
        Ok(answers)
    }

    /// What became of each row of `delivery` (inserted under `ids`): inserted, or taken over under its lease when
    /// its event id was stored and is still pending, or a duplicate.
    async fn take_over(
        &self,
        conn: &impl ConnectionTrait,
        delivery: &Delivery,
        ids: &[Uuid],
        inserted: &std::collections::HashSet<Uuid>,
        committed: &impl Fn(),
    ) -> Result<Vec<InboxInsert>, StoreError> {
        let mut inserts = Vec::with_capacity(delivery.rows.len());
        for (new, id) in delivery.rows.iter().zip(ids) {
            if inserted.contains(id) {
                inserts.push(InboxInsert::Inserted(*id));
                continue;
            }
            let retaken = conn
                .query_one_raw(self.stmt(
                    "UPDATE notifications SET lease_token = $1, locked_until = $2 \
                     WHERE processor = $3 AND event_id = $4 AND status = 'pending' RETURNING id",
                    vec![
                        delivery.lease.token.into(),
                        delivery.lease.until.into(),
                        new.processor.clone().into(),
                        new.event_id.clone().into(),
                    ],
                ))
                .await?;
            committed();
            inserts.push(match retaken {
                Some(row) => InboxInsert::Retaken(row.try_get("", "id")?),
                None => InboxInsert::Duplicate,
            });
        }
        Ok(inserts)
    }

    pub async fn notification(&self, id: Uuid) -> Result<Option<NotificationRecord>, StoreError> {
        notification::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(record)
            .transpose()
    }

    /// Records the result of applying a notification and releases the row, if `finish.lease_token` still
    /// holds it (`false` otherwise: someone took it over, and nothing was written).
    pub async fn finish_notification(&self, finish: &InboxFinish) -> Result<bool, StoreError> {
        match finish.write(self.db()).await {
            Ok(()) => Ok(true),
            Err(StoreError::LeaseLost) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Counts a failed attempt and leaves the row pending, locked until `retry_at` (so sweeps back off), or
    /// marks it failed once `max_attempts` is reached; only if `lease_token` still holds the row (`None`
    /// otherwise). Returns the status the row is left in.
    pub async fn retry_notification_later(
        &self,
        id: Uuid,
        lease_token: Uuid,
        error: &str,
        max_attempts: i32,
        retry_at: DateTime<Utc>,
    ) -> Result<Option<InboxStatus>, StoreError> {
        let error: String = error.chars().take(2_000).collect();
        let statement = self.stmt(
            "UPDATE notifications SET attempts = attempts + 1, \
             status = CASE WHEN attempts + 1 >= $1 THEN 'failed' ELSE 'pending' END, \
             note = $2, locked_until = $3, lease_token = NULL \
             WHERE id = $4 AND lease_token = $5 AND status = 'pending' RETURNING status",
            vec![
                max_attempts.into(),
                error.into(),
                retry_at.into(),
                id.into(),
                lease_token.into(),
            ],
        );
        let Some(row) = self.db().query_one_raw(statement).await? else {
            return Ok(None);
        };
        let status: String = row.try_get("", "status")?;
        Ok(Some(status.parse()?))
    }

    /// Extends the lease of every row still held under `lease_token` until `until`; returns how many. An
    /// applier renews while it works, so a lease only lapses when its holder stopped (crashed).
    pub async fn renew_notification_leases(&self, lease_token: Uuid, until: DateTime<Utc>) -> Result<u64, StoreError> {
        let statement = self.stmt(
            "UPDATE notifications SET locked_until = $1 WHERE lease_token = $2 AND status = 'pending'",
            vec![until.into(), lease_token.into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected())
    }

    /// Claims up to `limit` pending notifications whose lease has lapsed, oldest `occurred_at` first, under
    /// one new token for `lease`: one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` on
    /// PostgreSQL, so replicas sweeping at the same moment take disjoint rows without waiting on each other
    /// (on SQLite, one process, the statement is atomic by itself).
    pub async fn claim_pending_notifications(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u64,
    ) -> Result<ClaimedNotifications, StoreError> {
        let token = Uuid::now_v7();
        let skip_locked = if self.is_postgres() {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE notifications SET locked_until = $1, lease_token = $2 \
             WHERE id IN (SELECT id FROM notifications WHERE status = 'pending' \
             AND (locked_until IS NULL OR locked_until <= $3) ORDER BY occurred_at, id LIMIT $4 {skip_locked}) \
             RETURNING id"
        );
        let values = vec![(now + lease).into(), token.into(), now.into(), (limit as i64).into()];
        let claimed = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        let ids: Vec<Uuid> = claimed
            .iter()
            .map(|row| row.try_get("", "id"))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(ClaimedNotifications {
                lease_token: token,
                rows: Vec::new(),
            });
        }
        let rows = notification::Entity::find()
            .filter(notification::Column::Id.is_in(ids))
            .filter(notification::Column::LeaseToken.eq(token))
            .order_by_asc(notification::Column::OccurredAt)
            .order_by_asc(notification::Column::Id)
            .all(self.db())
            .await?;
        Ok(ClaimedNotifications {
            lease_token: token,
            rows: records(rows)?,
        })
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

    /// When the newest notification already applied to the dispute happened. A shortcut for refusing an
    /// older one before planning (applied rows never become unapplied, so a "stale" answer stays true); the
    /// decision for anything that is committed is made again inside the transaction
    /// ([`InboxFinish::not_before_applied`]).
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
