//! A dispute's status, due order and last change in a narrow table of their own, so that a transition's update
//! of the dispute row is heap-only on PostgreSQL.
//!
//! Most transitions change `status` and `updated_at` and nothing else that is indexed. While `disputes` indexed
//! them (`disputes_status_order`, `disputes_updated`), every transition wrote a new entry into each of the
//! table's 18 indexes; without them the row's new version goes on its own page (`fillfactor` leaves room) and no
//! index changes. `dispute_statuses` keeps the two orders those indexes served (a status's disputes by due date;
//! the disputes changed since a time) at three index entries per change. Triggers keep it in step with every
//! insert, update and delete of `disputes`, whoever writes: on PostgreSQL once per statement over its
//! transition table, so a batched projection update is one more statement, not one per row. The timers get more
//! room per page too: a claim of a whole page of due timers is then mostly heap-only as well.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The table, filled from `disputes`, and its indexes, in either dialect (`crate::dialect`).
const TABLE: &[&str] = &[
    "CREATE TABLE dispute_statuses (
        dispute_id {uuid} PRIMARY KEY,
        status TEXT NOT NULL,
        sort_due_at {timestamp} NOT NULL,
        opened_at {timestamp} NOT NULL,
        updated_at {timestamp} NOT NULL
    )",
    "INSERT INTO dispute_statuses (dispute_id, status, sort_due_at, opened_at, updated_at)
     SELECT id, status, sort_due_at, opened_at, updated_at FROM disputes",
    "CREATE INDEX dispute_statuses_order ON dispute_statuses (status, sort_due_at, dispute_id)",
    "CREATE INDEX dispute_statuses_updated ON dispute_statuses (updated_at)",
];

const POSTGRES_UP: &[&str] = &[
    "CREATE FUNCTION verdict_dispute_statuses_added() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         INSERT INTO dispute_statuses (dispute_id, status, sort_due_at, opened_at, updated_at)
         SELECT id, status, sort_due_at, opened_at, updated_at FROM added;
         RETURN NULL;
     END $$",
    "CREATE FUNCTION verdict_dispute_statuses_changed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         UPDATE dispute_statuses s
         SET status = c.status, sort_due_at = c.sort_due_at, opened_at = c.opened_at, updated_at = c.updated_at
         FROM changed c
         WHERE s.dispute_id = c.id
           AND (s.status, s.sort_due_at, s.opened_at, s.updated_at)
               IS DISTINCT FROM (c.status, c.sort_due_at, c.opened_at, c.updated_at);
         RETURN NULL;
     END $$",
    "CREATE FUNCTION verdict_dispute_statuses_removed() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         DELETE FROM dispute_statuses s USING removed r WHERE s.dispute_id = r.id;
         RETURN NULL;
     END $$",
    "CREATE TRIGGER disputes_statuses_added AFTER INSERT ON disputes REFERENCING NEW TABLE AS added
     FOR EACH STATEMENT EXECUTE FUNCTION verdict_dispute_statuses_added()",
    "CREATE TRIGGER disputes_statuses_changed AFTER UPDATE ON disputes REFERENCING NEW TABLE AS changed
     FOR EACH STATEMENT EXECUTE FUNCTION verdict_dispute_statuses_changed()",
    "CREATE TRIGGER disputes_statuses_removed AFTER DELETE ON disputes REFERENCING OLD TABLE AS removed
     FOR EACH STATEMENT EXECUTE FUNCTION verdict_dispute_statuses_removed()",
    "DROP INDEX disputes_status_order",
    "DROP INDEX disputes_updated",
    "ALTER TABLE disputes SET (fillfactor = 75)",
    "ALTER TABLE timers SET (fillfactor = 50)",
];

const POSTGRES_DOWN: &[&str] = &[
    "ALTER TABLE timers SET (fillfactor = 70)",
    "ALTER TABLE disputes RESET (fillfactor)",
    "CREATE INDEX disputes_updated ON disputes (updated_at)",
    "CREATE INDEX disputes_status_order ON disputes (status, sort_due_at, id)",
    "DROP TRIGGER disputes_statuses_removed ON disputes",
    "DROP TRIGGER disputes_statuses_changed ON disputes",
    "DROP TRIGGER disputes_statuses_added ON disputes",
    "DROP FUNCTION verdict_dispute_statuses_removed()",
    "DROP FUNCTION verdict_dispute_statuses_changed()",
    "DROP FUNCTION verdict_dispute_statuses_added()",
    "DROP TABLE dispute_statuses",
];

const SQLITE_UP: &[&str] = &[
    "CREATE TRIGGER disputes_statuses_added AFTER INSERT ON disputes BEGIN
         INSERT INTO dispute_statuses (dispute_id, status, sort_due_at, opened_at, updated_at)
         VALUES (NEW.id, NEW.status, NEW.sort_due_at, NEW.opened_at, NEW.updated_at);
     END",
    "CREATE TRIGGER disputes_statuses_changed AFTER UPDATE ON disputes BEGIN
         UPDATE dispute_statuses
         SET status = NEW.status, sort_due_at = NEW.sort_due_at, opened_at = NEW.opened_at, updated_at = NEW.updated_at
         WHERE dispute_id = NEW.id;
     END",
    "CREATE TRIGGER disputes_statuses_removed AFTER DELETE ON disputes BEGIN
         DELETE FROM dispute_statuses WHERE dispute_id = OLD.id;
     END",
    "DROP INDEX disputes_status_order",
    "DROP INDEX disputes_updated",
];

const SQLITE_DOWN: &[&str] = &[
    "CREATE INDEX disputes_updated ON disputes (updated_at)",
    "CREATE INDEX disputes_status_order ON disputes (status, sort_due_at, id)",
    "DROP TRIGGER disputes_statuses_removed",
    "DROP TRIGGER disputes_statuses_changed",
    "DROP TRIGGER disputes_statuses_added",
    "DROP TABLE dispute_statuses",
];

/// Runs each statement as it is: the function bodies hold `;`, which `run_script` would split on.
async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let connection = manager.get_connection();
    for statement in statements {
        connection.execute_unprepared(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in TABLE {
            manager
                .get_connection()
                .execute_unprepared(&crate::dialect(manager, statement))
                .await?;
        }
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run(manager, POSTGRES_UP).await,
            _ => run(manager, SQLITE_UP).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run(manager, POSTGRES_DOWN).await,
            _ => run(manager, SQLITE_DOWN).await,
        }
    }
}
