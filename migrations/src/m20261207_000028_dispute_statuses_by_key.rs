//! The triggers of `dispute_statuses` (migration 27) find its rows by primary key whatever the statistics.
//!
//! A PL/pgSQL function plans its statements once per connection and keeps the plan. Planned while the table was
//! small (a fresh database), the update's join over the transition table was a sequential scan with a hash join,
//! and that connection kept scanning the whole table on every later statement as it grew: 8.7-10.5 ms per
//! eight-dispute update at 50,000 disputes, against 0.26 ms for a fresh plan. With sequential scans, hash and
//! merge joins off inside these functions, the plan is an index lookup per changed row at any size.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const FUNCTIONS: [&str; 2] = [
    "verdict_dispute_statuses_changed()",
    "verdict_dispute_statuses_removed()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        for function in FUNCTIONS {
            for setting in ["enable_seqscan", "enable_hashjoin", "enable_mergejoin"] {
                manager
                    .get_connection()
                    .execute_unprepared(&format!("ALTER FUNCTION {function} SET {setting} = off"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        for function in FUNCTIONS {
            manager
                .get_connection()
                .execute_unprepared(&format!("ALTER FUNCTION {function} RESET ALL"))
                .await?;
        }
        Ok(())
    }
}
