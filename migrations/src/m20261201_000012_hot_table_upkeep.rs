//! Autovacuum for the hot queue tables on PostgreSQL. Timers, steps, the inbox and cron schedules are updated
//! on every claim, lease renewal and completion, so their dead tuples pile up far faster than the default
//! thresholds (20 % of the table) notice on a table that keeps growing with history: vacuum them after a fixed
//! number of changes instead, and analyse them often, so that the claim queries keep using their partial
//! indexes and the tables and indexes stay near their live size. SQLite has no autovacuum thresholds.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::run_script;

#[derive(DeriveMigrationName)]
pub struct Migration;

const HOT_TABLES: [&str; 4] = ["timers", "steps", "notifications", "schedules"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let script: Vec<String> = HOT_TABLES
            .iter()
            .map(|table| {
                format!(
                    "ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.0, \
                     autovacuum_vacuum_threshold = 5000, autovacuum_analyze_scale_factor = 0.0, \
                     autovacuum_analyze_threshold = 5000, autovacuum_vacuum_cost_delay = 0)"
                )
            })
            .collect();
        run_script(manager, &script.join("; ")).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let script: Vec<String> = HOT_TABLES
            .iter()
            .map(|table| {
                format!(
                    "ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, \
                     autovacuum_analyze_scale_factor, autovacuum_analyze_threshold, autovacuum_vacuum_cost_delay)"
                )
            })
            .collect();
        run_script(manager, &script.join("; ")).await
    }
}
