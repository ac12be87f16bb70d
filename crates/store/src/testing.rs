//! Fresh databases for tests: a SQLite file in a temporary folder, and, when `VERDICT_TEST_DATABASE_URL`
//! names a PostgreSQL server, a uniquely named database on it. Every test gets its own.

use sea_orm::{ConnectionTrait, Database};

use crate::{Store, StoreError};

/// A database that exists for one test; the SQLite folder goes away with it.
pub struct TestDatabase {
    pub url: String,
    pub label: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn sqlite() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(format!("temporary folder: {e}")))?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("verdict.db").display());
        Ok(Self {
            url,
            label: "sqlite",
            _dir: Some(dir),
        })
    }

    /// Creates `verdict_test_<uuid>` on the server that `base_url` points to, as a copy of a migrated template.
    pub async fn postgres(base_url: &str) -> Result<Self, StoreError> {
        let template = postgres_template(base_url).await?;
        let admin = Database::connect(base_url).await?;
        let name = format!("verdict_test_{}", uuid::Uuid::now_v7().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await?;
        admin.close().await?;
        let (server, _) = base_url.rsplit_once('/').unwrap_or((base_url, ""));
        Ok(Self {
            url: format!("{server}/{name}"),
            label: "postgres",
            _dir: None,
        })
    }

    /// Connects and migrates.
    pub async fn store(&self) -> Result<Store, StoreError> {
        let store = Store::connect(&self.url).await?;
        store.migrate().await?;
        Ok(store)
    }
}

/// A database migrated once per test binary and build, which each test's database copies: copying takes a
/// fifth of the time the migrations take, and hundreds of tests each start from one. Its name carries the
/// binary's size and time, so a rebuilt binary (maybe with a new or edited migration) never reuses a stale one.
/// `.ci/run` drops leftovers with the other `verdict_test_` databases.
async fn postgres_template(base_url: &str) -> Result<String, StoreError> {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_try_init(|| async {
            let name = format!("verdict_test_template_{:016x}", build_key());
            let admin = Database::connect(base_url).await?;
            let exists = admin
                .query_one_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT 1 AS found FROM pg_database WHERE datname = $1",
                    [name.clone().into()],
                ))
                .await?
                .is_some();
            if !exists {
                // Migrated under a scratch name and renamed when done: another process never copies a half one.
                let scratch = format!("verdict_test_scratch_{}", uuid::Uuid::now_v7().simple());
                admin.execute_unprepared(&format!("CREATE DATABASE {scratch}")).await?;
                let (server, _) = base_url.rsplit_once('/').unwrap_or((base_url, ""));
                let store = Store::connect(&format!("{server}/{scratch}")).await?;
                store.migrate().await?;
                store.db().clone().close().await?;
                if admin
                    .execute_unprepared(&format!("ALTER DATABASE {scratch} RENAME TO {name}"))
                    .await
                    .is_err()
                {
                    // Another test binary made it first.
                    admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {scratch}"))
                        .await?;
                }
            }
            admin.close().await?;
            Ok::<_, StoreError>(name)
        })
        .await
        .cloned()
}

/// Identifies this build of the running binary.
fn build_key() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Ok(meta) = std::env::current_exe().and_then(std::fs::metadata) {
        meta.len().hash(&mut hasher);
        meta.modified().ok().hash(&mut hasher);
    }
    hasher.finish()
}

/// SQLite always; PostgreSQL too when `VERDICT_TEST_DATABASE_URL` is set.
pub async fn test_databases() -> Result<Vec<TestDatabase>, StoreError> {
    let mut databases = vec![TestDatabase::sqlite().await?];
    if let Ok(url) = std::env::var("VERDICT_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        databases.push(TestDatabase::postgres(url.trim()).await?);
    }
    Ok(databases)
}
