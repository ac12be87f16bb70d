//! The readiness probe's table: `/readyz` proves the database can still write by upserting this replica's row
//! (at most once a second). `SELECT 1` answers on a full disk, a read-only SQLite file or a database whose
//! writers are stuck behind a lock; a write does not. One small row per replica process; rows of replicas
//! gone for a day are deleted by the probe itself.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

script_migration!(
    r#"
CREATE TABLE readiness_probe (
    replica TEXT PRIMARY KEY,
    probed_at {timestamp} NOT NULL
)
"#,
    "DROP TABLE readiness_probe"
);
