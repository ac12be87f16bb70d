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

    /// Creates `verdict_test_<uuid>` on the server that `base_url` points to.
    pub async fn postgres(base_url: &str) -> Result<Self, StoreError> {
        let admin = Database::connect(base_url).await?;
        let name = format!("verdict_test_{}", uuid::Uuid::now_v7().simple());
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
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
