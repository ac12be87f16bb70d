//! Opening the configured database, with messages that say what to check.
//!
//! A pool on its own reports an unreachable PostgreSQL only when its acquire timeout ends, as "pool timed
//! out", and SQLite reports a missing directory as "unable to open database file". A replica or a one-off
//! command therefore first opens one PostgreSQL connection itself (bounded by [`PROBE_TIMEOUT`]) and names
//! the address, database and user it tried; SQLite errors name the file.
//!
//! Pool sizes: a replica keeps `database_min_connections` of its 32 connections open (a burst of due timers
//! then waits for no new backend); a one-off command (`apikey`, `migrate`, `import`, `demo` without
//! `--serve`) does one thing at a time and uses [`ONE_OFF_CONNECTIONS`], so running one next to busy
//! replicas does not take 32 more of PostgreSQL's connections.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::sqlx::Connection as _;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use verdict_engine::{Engine, SystemClock};
use verdict_store::Store;

use crate::Config;

/// How long the first PostgreSQL connection may take before start-up gives up.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a one-off command's pool.
pub const ONE_OFF_CONNECTIONS: u32 = 2;

/// Connections of a replica's pool (PostgreSQL).
pub const REPLICA_CONNECTIONS: u32 = 32;

/// What the process does with its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSize {
    /// `serve`, `demo --serve`, `bench`: the full pool, `database_min_connections` of it kept open.
    Replica,
    /// One command and exit: [`ONE_OFF_CONNECTIONS`], one kept open.
    OneOff,
}

/// Opens the configured database with a pool of `size`, migrates it and builds the engine.
pub async fn connect(config: &Config, size: PoolSize) -> anyhow::Result<Engine> {
    let url = config.database_url.as_str();
    let (min, max) = match size {
        PoolSize::Replica => (config.database_min_connections, REPLICA_CONNECTIONS),
        PoolSize::OneOff => (1, ONE_OFF_CONNECTIONS),
    };
    let store = if is_postgres(url) {
        probe_postgres(url).await?;
        Store::connect_sized(url, min, max)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", postgres_target(url)))?
    } else {
        Store::connect_sized(url, min, max).await.map_err(|err| {
            anyhow::anyhow!(
                "cannot open the SQLite database {}: {err}. Check that its directory exists and is writable, or \
                 set database_url / VERDICT_DATABASE_URL",
                sqlite_path(url)
            )
        })?
    };
    store.migrate().await.context("applying migrations")?;
    let facts = verdict_facts::from_config(&config.marketplace, store.db().clone())
        .map_err(|err| anyhow::anyhow!("configuring the marketplace facts: {err}"))?;
    tracing::info!(source = facts.name(), "marketplace facts");
    Ok(Engine::new(store, Arc::new(SystemClock)).with_facts(facts))
}

/// What a URL points at, for messages: the SQLite file or the PostgreSQL address (never a password).
pub fn describe(url: &str) -> String {
    if is_postgres(url) {
        format!("PostgreSQL database at {}", postgres_target(url))
    } else {
        format!("SQLite file {}", sqlite_path(url))
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn sqlite_path(url: &str) -> &str {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    path.split('?').next().unwrap_or(path)
}

/// `host:port (database D, user U)` of a PostgreSQL URL, never its password.
pub fn postgres_target(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => format!(
            "{}:{} (database {}, user {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(the user's)"),
            options.get_username()
        ),
        Err(_) => "the configured address".to_owned(),
    }
}

/// Opens and closes one connection, so that a wrong address, a stopped server, a wrong password or a missing
/// database fails at once with what to check, instead of a pool timing out.
pub async fn probe_postgres(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|err| anyhow::anyhow!("database_url / VERDICT_DATABASE_URL is not a PostgreSQL URL: {err}"))?;
    let target = postgres_target(url);
    let connection = match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_) => anyhow::bail!(
            "PostgreSQL at {target} did not answer within {} s. Check the host and port in \
             database_url / VERDICT_DATABASE_URL and that no firewall drops the connection",
            PROBE_TIMEOUT.as_secs()
        ),
        Ok(Err(sea_orm::sqlx::Error::Database(err))) => anyhow::bail!(
            "PostgreSQL at {target} refused the connection: {}. Check the user, password and database name in \
             database_url / VERDICT_DATABASE_URL (the database must exist: createdb)",
            err.message()
        ),
        Ok(Err(err)) => anyhow::bail!(
            "cannot reach PostgreSQL at {target}: {err}. Check that the server is running and listens there, \
             and the host and port in database_url / VERDICT_DATABASE_URL"
        ),
        Ok(Ok(connection)) => connection,
    };
    let _ = connection.close().await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_host_port_database_and_user_but_not_the_password() {
        let target = postgres_target("postgres://app:s3cret@db.internal:6543/verdict");
        assert_eq!(target, "db.internal:6543 (database verdict, user app)");
        assert_eq!(sqlite_path("sqlite://data/v.db?mode=rwc"), "data/v.db");
    }

    #[tokio::test]
    async fn a_closed_port_fails_at_once_naming_the_address() {
        let started = std::time::Instant::now();
        let err = probe_postgres("postgres://postgres:pw@127.0.0.1:1/verdict")
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("127.0.0.1:1 (database verdict, user postgres)"),
            "{message}"
        );
        assert!(message.contains("Check that the server is running"), "{message}");
        assert!(!message.contains("pw"), "{message}");
        assert!(started.elapsed() < PROBE_TIMEOUT, "took {:?}", started.elapsed());
    }
}
