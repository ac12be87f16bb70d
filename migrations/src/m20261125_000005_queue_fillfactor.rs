//! Room on each page of the work queues, so that a claim (which changes no indexed column) is a heap-only
//! update on PostgreSQL: no new index entries for every lease taken and renewed. SQLite has no such setting.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::run_script;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        run_script(
            manager,
            "ALTER TABLE steps SET (fillfactor = 50); ALTER TABLE timers SET (fillfactor = 70)",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        run_script(
            manager,
            "ALTER TABLE steps RESET (fillfactor); ALTER TABLE timers RESET (fillfactor)",
        )
        .await
    }
}
