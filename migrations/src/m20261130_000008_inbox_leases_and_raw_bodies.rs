//! The inbox gets what the timer and step queues have, and keeps bodies byte for byte.
//!
//! - `lease_token`: written by every claim of a pending notification (the receiving request, a redelivery,
//!   the sweep). Finishing a row requires the token, so of two appliers (a replica presumed dead and the one
//!   that took over) only the current holder commits. Leases are short and renewed while applying, so a dead
//!   replica's rows are free again within one lease.
//! - `body`: the raw request body as bytes (`BYTEA`/`BLOB`). PostgreSQL refuses a NUL character in `TEXT`,
//!   which made a validly signed notification carrying `\u0000` fail to store on every redelivery; bytes store
//!   anything. `payload` (TEXT) stays for rows written before this migration and is left empty on new ones.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::{dialect, run_script};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE notifications ADD COLUMN lease_token {uuid};
ALTER TABLE notifications ADD COLUMN body {bytes};
CREATE INDEX notifications_leases ON notifications (lease_token) WHERE status = 'pending'
"#;

const DOWN: &str = r#"
DROP INDEX notifications_leases;
ALTER TABLE notifications DROP COLUMN body;
ALTER TABLE notifications DROP COLUMN lease_token
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let bytes = match manager.get_database_backend() {
            DatabaseBackend::Postgres => "BYTEA",
            _ => "BLOB",
        };
        run_script(manager, &dialect(manager, UP).replace("{bytes}", bytes)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
