//! Cron schedules shared by replicas, and the queries that scheduled jobs run (digest, sweep).
//!
//! A tick is claimed with a compare-and-set on `next_fire_at`: the replica whose `UPDATE` still finds the
//! value it read moves it to the next tick after *now* and runs the job; every other replica finds it moved
//! and does nothing. Because the next tick is computed from now, a schedule that was down for a day fires
//! once to catch up rather than once per missed tick.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;
use verdict_domain::{Dispute, Status};

use crate::convert::to_domain;
use crate::entity::dispute;
use crate::{Store, StoreError};

/// The tables of claimed and completed work, whose dead rows pile up fastest (see
/// [`Store::vacuum_queue_tables`]).
pub const QUEUE_TABLES: [&str; 4] = ["notifications", "schedules", "steps", "timers"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub next_fire_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub locked_by: Option<String>,
}

/// A claimed tick: the lease its job runs under and when the schedule last fired before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleClaim {
    pub name: String,
    pub lease_token: Uuid,
    pub tick: DateTime<Utc>,
    pub previous_fire: Option<DateTime<Utc>>,
}

/// An open dispute due soon, for the daily digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSoon {
    pub id: Uuid,
    pub queue: Option<String>,
    pub status: String,
    pub assignee: Option<String>,
    pub due_by: DateTime<Utc>,
}

fn open_statuses() -> Vec<&'static str> {
    Status::ALL.iter().filter(|s| s.is_open()).map(|s| s.as_str()).collect()
}

fn in_list(start: usize, count: usize) -> String {
    (0..count)
        .map(|i| format!("${}", start + i))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Creates the schedule, or updates it when its expression or time zone changed (which resets its next tick).
    pub async fn ensure_schedule(
        &self,
        name: &str,
        cron: &str,
        time_zone: &str,
        next_fire_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let statement = self.stmt(
            "INSERT INTO schedules (name, cron, time_zone, next_fire_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, time_zone = excluded.time_zone, \
             next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at \
             WHERE schedules.cron <> excluded.cron OR schedules.time_zone <> excluded.time_zone",
            vec![
                name.into(),
                cron.into(),
                time_zone.into(),
                next_fire_at.into(),
                now.into(),
            ],
        );
        self.db().execute_raw(statement).await?;
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = self
            .db()
            .query_all_raw(self.stmt(
                "SELECT name, cron, time_zone, next_fire_at, last_fired_at, locked_by FROM schedules ORDER BY name",
                vec![],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(ScheduleRow {
                    name: row.try_get("", "name")?,
                    cron: row.try_get("", "cron")?,
                    time_zone: row.try_get("", "time_zone")?,
                    next_fire_at: row.try_get("", "next_fire_at")?,
                    last_fired_at: row.try_get("", "last_fired_at")?,
                    locked_by: row.try_get("", "locked_by")?,
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()?)
    }

    /// Claims the due tick of `row` if no replica did: moves `next_fire_at` to `next` and takes a lease.
    pub async fn claim_schedule_tick(
        &self,
        row: &ScheduleRow,
        next: DateTime<Utc>,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ScheduleClaim>, StoreError> {
        let token = Uuid::now_v7();
        let statement = self.stmt(
            "UPDATE schedules SET next_fire_at = $1, last_fired_at = $2, locked_by = $3, locked_until = $4, \
             lease_token = $5, updated_at = $2 WHERE name = $6 AND next_fire_at = $7 AND next_fire_at <= $2",
            vec![
                next.into(),
                now.into(),
                worker.into(),
                (now + lease).into(),
                token.into(),
                row.name.clone().into(),
                row.next_fire_at.into(),
            ],
        );
        let claimed = self.db().execute_raw(statement).await?.rows_affected() == 1;
        Ok(claimed.then(|| ScheduleClaim {
            name: row.name.clone(),
            lease_token: token,
            tick: row.next_fire_at,
            previous_fire: row.last_fired_at,
        }))
    }

    /// Ends the lease of a finished tick.
    pub async fn finish_schedule_tick(&self, claim: &ScheduleClaim) -> Result<bool, StoreError> {
        let statement = self.stmt(
            "UPDATE schedules SET locked_by = NULL, locked_until = NULL, lease_token = NULL \
             WHERE name = $1 AND lease_token = $2",
            vec![claim.name.clone().into(), claim.lease_token.into()],
        );
        Ok(self.db().execute_raw(statement).await?.rows_affected() == 1)
    }

    /// Open disputes due in `[from, until)`, earliest first.
    pub async fn due_between(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<DueSoon>, StoreError> {
        let statuses = open_statuses();
        let sql = format!(
            "SELECT id, queue, status, assignee, due_by FROM disputes WHERE due_by >= $1 AND due_by < $2 \
             AND status IN ({}) ORDER BY due_by, id",
            in_list(3, statuses.len())
        );
        let mut values: Vec<Value> = vec![from.into(), until.into()];
        values.extend(statuses.into_iter().map(Value::from));
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(DueSoon {
                    id: row.try_get("", "id")?,
                    queue: row.try_get("", "queue")?,
                    status: row.try_get("", "status")?,
                    assignee: row.try_get("", "assignee")?,
                    due_by: row.try_get("", "due_by")?,
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()?)
    }

    /// Open disputes that should have a pending timer of `kinds` and have neither a pending nor a fired one:
    /// awaiting a deadline (`due_by` set, not submitted) without a deadline timer, or submitted without an
    /// outcome check. At most `limit`.
    pub async fn disputes_missing_timers(&self, limit: u64) -> Result<Vec<Dispute>, StoreError> {
        let statuses: Vec<&str> = open_statuses();
        let sql = format!(
            "SELECT d.* FROM disputes d WHERE d.status IN ({}) AND ( \
               (d.status <> 'submitted' AND d.due_by IS NOT NULL AND NOT EXISTS (SELECT 1 FROM timers t \
                 WHERE t.dispute_id = d.id AND t.kind = 'deadline' AND t.status IN ('pending', 'fired'))) \
               OR (d.status = 'submitted' AND NOT EXISTS (SELECT 1 FROM timers t \
                 WHERE t.dispute_id = d.id AND t.kind = 'outcome_check' AND t.status IN ('pending', 'fired'))) \
             ) ORDER BY d.id LIMIT ${}",
            in_list(1, statuses.len()),
            statuses.len() + 1
        );
        let mut values: Vec<Value> = statuses.into_iter().map(Value::from).collect();
        values.push((limit as i64).into());
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        rows.iter()
            .map(|row| {
                let model = <dispute::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?;
                to_domain(model)
            })
            .collect()
    }

    /// Deletes up to `limit` finished timers (fired or cancelled) and up to `limit` finished steps (succeeded
    /// or cancelled) of disputes closed and untouched since `closed_before`, so that the hot queue tables hold
    /// live work and recent history only; returns how many timers and steps went. Open disputes keep theirs:
    /// the sweep reads their fired deadline and outcome-check timers to know none is missing. Dead steps stay
    /// until a lead retries or cancels them. The dispute's events remain the history.
    pub async fn purge_finished_work(
        &self,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<(u64, u64), StoreError> {
        let statuses = open_statuses();
        let open = in_list(1, statuses.len());
        let at = statuses.len() + 1;
        let values = |statuses: &[&str]| -> Vec<Value> {
            let mut values: Vec<Value> = statuses.iter().map(|s| Value::from(*s)).collect();
            values.push(closed_before.into());
            values.push((limit as i64).into());
            values
        };
        let timers = format!(
            "DELETE FROM timers WHERE id IN (SELECT t.id FROM timers t JOIN disputes d ON d.id = t.dispute_id \
             WHERE t.status IN ('fired', 'cancelled') AND d.status NOT IN ({open}) AND d.updated_at < ${at} \
             LIMIT ${})",
            at + 1
        );
        let steps = format!(
            "DELETE FROM steps WHERE id IN (SELECT s.id FROM steps s JOIN disputes d ON d.id = s.dispute_id \
             WHERE s.status IN ('succeeded', 'cancelled') AND d.status NOT IN ({open}) AND d.updated_at < ${at} \
             LIMIT ${})",
            at + 1
        );
        let timers = self
            .db()
            .execute_raw(self.stmt(&timers, values(&statuses)))
            .await?
            .rows_affected();
        let steps = self
            .db()
            .execute_raw(self.stmt(&steps, values(&statuses)))
            .await?
            .rows_affected();
        Ok((timers, steps))
    }

    /// On PostgreSQL, vacuums and analyses each queue table ([`QUEUE_TABLES`]) the server's statistics count
    /// at least `dead_rows` dead rows in; returns the tables vacuumed (none on SQLite, which reuses freed pages
    /// by itself). Every claim, renewal and completion leaves a dead row behind, and the claim queries walk
    /// partial indexes of pending rows: until a vacuum, those keep the entries of every finished row, so an
    /// empty queue costs a claim hundreds of index pages after a burst. Autovacuum does this when it is on and
    /// keeping up (migration 12 sets its thresholds for these tables); this covers a server where it is off or
    /// behind. Each `VACUUM` is a statement of its own (it cannot run inside a transaction) and takes no lock
    /// that claims or completions wait for.
    pub async fn vacuum_queue_tables(&self, dead_rows: i64) -> Result<Vec<String>, StoreError> {
        let mut vacuumed = Vec::new();
        for (name, dead) in self.queue_dead_rows().await? {
            if dead < dead_rows {
                continue;
            }
            // The name comes from the fixed list, never from input.
            let Some(table) = QUEUE_TABLES.iter().find(|t| **t == name) else {
                continue;
            };
            self.db()
                .execute_unprepared(&format!("VACUUM (ANALYZE) {table}"))
                .await?;
            vacuumed.push(name);
        }
        Ok(vacuumed)
    }

    /// The dead rows PostgreSQL's statistics count in each queue table ([`QUEUE_TABLES`]), by table name;
    /// empty on SQLite. The statistics trail the writes by up to a few seconds.
    pub async fn queue_dead_rows(&self) -> Result<Vec<(String, i64)>, StoreError> {
        if !self.is_postgres() {
            return Ok(Vec::new());
        }
        let tables = in_list(1, QUEUE_TABLES.len());
        let values: Vec<Value> = QUEUE_TABLES.iter().map(|t| Value::from(*t)).collect();
        let rows = self
            .db()
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT relname::text AS name, n_dead_tup AS dead FROM pg_stat_user_tables \
                     WHERE schemaname = current_schema() AND relname IN ({tables}) ORDER BY relname"
                ),
                values,
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("", "name")?, row.try_get("", "dead")?)))
            .collect()
    }

    /// When the dispute last entered `status` (from its event log).
    pub async fn entered_status_at(&self, id: Uuid, status: Status) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db()
            .query_one_raw(self.stmt(
                "SELECT at FROM dispute_events WHERE dispute_id = $1 AND to_status = $2 ORDER BY version DESC LIMIT 1",
                vec![id.into(), status.as_str().into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get("", "at")).transpose()?)
    }
}
