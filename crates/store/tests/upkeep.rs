//! The hot queue tables carry their own autovacuum thresholds on PostgreSQL (migration 12); on SQLite the
//! migration is applied and changes nothing.

use sea_orm::{ConnectionTrait, Statement};
use verdict_store::testing::test_databases;

#[tokio::test]
async fn hot_queue_tables_vacuum_after_a_fixed_number_of_changes() -> anyhow::Result<()> {
    for db in test_databases().await? {
        let store = db.store().await?;
        let conn = store.db();
        let backend = conn.get_database_backend();
        let applied = conn
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations WHERE version = 'm20261201_000012_hot_table_upkeep'",
            ))
            .await?;
        assert_eq!(applied.len(), 1, "{}: migration 12 applied", db.label);
        if !store.is_postgres() {
            continue;
        }
        for table in ["timers", "steps", "notifications", "schedules"] {
            let rows = conn
                .query_all_raw(Statement::from_string(
                    backend,
                    format!("SELECT array_to_string(reloptions, ',') AS o FROM pg_class WHERE relname = '{table}'"),
                ))
                .await?;
            let options: String = rows
                .first()
                .map(|r| r.try_get("", "o"))
                .transpose()?
                .unwrap_or_default();
            for expected in ["autovacuum_vacuum_scale_factor=0.0", "autovacuum_vacuum_threshold=5000"] {
                assert!(options.contains(expected), "{}: {table} has {options:?}", db.label);
            }
        }
    }
    Ok(())
}
