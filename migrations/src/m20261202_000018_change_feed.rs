//! The change feed: one row per committed change of a dispute (its first and last event version), numbered by
//! a database-wide position. On PostgreSQL every commit with events writes a row and `NOTIFY`s its position;
//! a replica whose listener lost its connection (and with it the notifications sent meanwhile) catches up by
//! reading the rows past the last position it saw. SQLite serves one process, which publishes its changes in
//! memory, so the table stays empty there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::run_script;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES: &str = r#"
CREATE TABLE change_feed (
    position BIGSERIAL PRIMARY KEY,
    dispute_id UUID NOT NULL,
    first_version BIGINT NOT NULL,
    last_version BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL
)
"#;

const SQLITE: &str = r#"
CREATE TABLE change_feed (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id BLOB NOT NULL,
    first_version BIGINT NOT NULL,
    last_version BIGINT NOT NULL,
    committed_at TEXT NOT NULL
)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let script = match manager.get_database_backend() {
            DatabaseBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        run_script(manager, script).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "DROP TABLE change_feed").await
    }
}
