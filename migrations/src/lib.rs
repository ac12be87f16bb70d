//! The database schema, for SQLite and PostgreSQL, as append-only sea-orm migrations.
//!
//! Each migration writes plain SQL per backend: the claim queries of timers and steps depend on partial
//! indexes and exact column types that a portable builder would blur. An applied migration is never edited;
//! changes come as new files.

pub use sea_orm_migration::prelude::*;

/// The `MigrationTrait` of a migration that runs the script `$up` (with the dialect's column types) and undoes
/// it with `$down`.
macro_rules! script_migration {
    ($up:expr, $down:expr) => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::run_script(manager, &crate::dialect(manager, $up)).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::run_script(manager, $down).await
            }
        }
    };
}

mod m20261125_000001_foundation;
mod m20261125_000002_inbox;
mod m20261125_000003_scheduling;
mod m20261125_000004_mailbox;
mod m20261125_000005_queue_fillfactor;
mod m20261125_000006_payload_retention;
mod m20261125_000007_mailbox_channels;
mod m20261130_000008_inbox_leases_and_raw_bodies;
mod m20261201_000009_marketplace_facts;
mod m20261201_000010_evidence;
mod m20261201_000011_documents;
mod m20261201_000012_hot_table_upkeep;
mod m20261202_000013_readiness_probe;
mod m20261202_000014_dispute_search;
mod m20261202_000015_bulk_jobs;
mod m20261202_000017_dispute_patterns;
mod m20261202_000018_change_feed;
mod m20261202_000019_users;
mod m20261202_000020_seller_recoveries;
mod m20261203_000021_policy;
mod m20261203_000022_policy_backtests;
mod m20261204_000024_policy_actions;
mod m20261205_000025_pattern_summary;
mod m20261206_000026_leases_end_with_pending;
mod m20261207_000027_dispute_statuses;
mod m20261207_000028_dispute_statuses_by_key;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_foundation::Migration),
            Box::new(m20261125_000002_inbox::Migration),
            Box::new(m20261125_000003_scheduling::Migration),
            Box::new(m20261125_000004_mailbox::Migration),
            Box::new(m20261125_000005_queue_fillfactor::Migration),
            Box::new(m20261125_000006_payload_retention::Migration),
            Box::new(m20261125_000007_mailbox_channels::Migration),
            Box::new(m20261130_000008_inbox_leases_and_raw_bodies::Migration),
            Box::new(m20261201_000009_marketplace_facts::Migration),
            Box::new(m20261201_000010_evidence::Migration),
            Box::new(m20261201_000011_documents::Migration),
            Box::new(m20261201_000012_hot_table_upkeep::Migration),
            Box::new(m20261202_000013_readiness_probe::Migration),
            Box::new(m20261202_000014_dispute_search::Migration),
            Box::new(m20261202_000015_bulk_jobs::Migration),
            Box::new(m20261202_000017_dispute_patterns::Migration),
            Box::new(m20261202_000018_change_feed::Migration),
            Box::new(m20261202_000019_users::Migration),
            Box::new(m20261202_000020_seller_recoveries::Migration),
            Box::new(m20261203_000021_policy::Migration),
            Box::new(m20261203_000022_policy_backtests::Migration),
            Box::new(m20261204_000024_policy_actions::Migration),
            Box::new(m20261205_000025_pattern_summary::Migration),
            Box::new(m20261206_000026_leases_end_with_pending::Migration),
            Box::new(m20261207_000027_dispute_statuses::Migration),
            Box::new(m20261207_000028_dispute_statuses_by_key::Migration),
        ]
    }
}

/// Runs each statement of a `;`-separated script on the current backend.
pub(crate) async fn run_script(manager: &SchemaManager<'_>, script: &str) -> Result<(), DbErr> {
    let connection = manager.get_connection();
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        connection.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Column types that differ between the two backends, substituted into the scripts.
pub(crate) fn dialect(manager: &SchemaManager<'_>, script: &str) -> String {
    let (uuid, timestamp, json) = match manager.get_database_backend() {
        sea_orm_migration::sea_orm::DatabaseBackend::Postgres => ("UUID", "TIMESTAMPTZ", "JSONB"),
        _ => ("BLOB", "TEXT", "TEXT"),
    };
    script
        .replace("{uuid}", uuid)
        .replace("{timestamp}", timestamp)
        .replace("{json}", json)
}
