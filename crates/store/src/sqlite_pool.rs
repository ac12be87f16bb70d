//! The SQLite pool's hooks: which connections may serve again after a storage fault, so that Verdict recovers
//! from a full disk or a read-only file without a restart (docs/reliability.md, "Defects the harness found").

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sea_orm::sqlx::pool::PoolOptions;
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::sqlx::{self, Connection as _, Sqlite};

/// Installs both hooks on the pool's options.
pub(crate) fn with_hooks(pool: PoolOptions<Sqlite>) -> PoolOptions<Sqlite> {
    let read_only = Arc::new(ReadOnlyConnections::default());
    let (on_connect, on_acquire) = (read_only.clone(), read_only.clone());
    pool.after_connect(move |conn, _| {
        let read_only = on_connect.clone();
        Box::pin(async move { read_only.note(conn).await })
    })
    // One the pool opened by itself (to keep its minimum) never served: closed before it would.
    .before_acquire(move |conn, _| {
        let read_only = on_acquire.clone();
        Box::pin(async move { Ok(!read_only.take(conn).await?) })
    })
    .after_release(move |conn, _| {
        let read_only = read_only.clone();
        Box::pin(async move { Ok(!read_only.take(conn).await? && reusable(conn).await?) })
    })
}

/// Whether a SQLite connection handed back to the pool may serve again, or must be closed.
///
/// When a write fails with `SQLITE_FULL` or an I/O error (a full disk), SQLite rolls the whole transaction back
/// by itself; the `ROLLBACK` sqlx then sends fails ("no transaction is active") and sqlx keeps counting the
/// connection as inside a transaction. Its next `BEGIN` becomes a `SAVEPOINT` and a failed transaction's
/// rollback a `ROLLBACK TO`, which leaves SQLite's transaction open with the write lock held: every other
/// connection then gets "database is locked" until the process restarts. Such a connection is closed instead
/// (closing rolls back whatever it holds); the pool opens a fresh one. The ping first lets a rollback queued
/// by a dropped transaction run, so a healthy connection is never counted as inside one.
async fn reusable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    conn.ping().await?;
    let reusable = !conn.is_in_transaction();
    if !reusable {
        tracing::warn!("closing a SQLite connection left inside a failed transaction (disk full or I/O error)");
    }
    Ok(reusable)
}

/// The connections that were opened read-only, by their handle's address; each is closed when it first
/// comes back to the pool, or, if the pool opened it to keep its minimum, when it would first be handed out.
///
/// SQLite opens a file it may not write (made immutable, on a read-only mount, without write permission)
/// read-only without a word, and that connection stays read-only when the file is writable again: before
/// this, a pool that opened connections while the file was read-only kept answering "attempt to write a
/// readonly database" until the process restarted. A read-only connection still serves the request it was
/// opened for (reads work; a write fails with a clear `SQLITE_READONLY`), then goes; once the file is
/// writable the next connections are.
#[derive(Default)]
struct ReadOnlyConnections(Mutex<HashSet<usize>>);

impl ReadOnlyConnections {
    async fn note(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        if !writable(conn).await? {
            tracing::warn!("a new SQLite connection opened the database read-only; it will not be kept");
            let handle = address(conn).await?;
            self.set().insert(handle);
        }
        Ok(())
    }

    /// True (and forgotten) if `conn` was opened read-only.
    async fn take(&self, conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
        if self.set().is_empty() {
            return Ok(false);
        }
        let handle = address(conn).await?;
        Ok(self.set().remove(&handle))
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn address(conn: &mut SqliteConnection) -> Result<usize, sqlx::Error> {
    Ok(conn.lock_handle().await?.as_raw_handle().as_ptr().addr())
}

/// Whether `conn` can write its main database: a write that changes nothing (`DELETE ... WHERE 0` on the
/// migrations' table) still opens a write transaction, which a connection that opened the file read-only is
/// refused with `SQLITE_READONLY`, before any lock is asked for. It runs without a busy timeout: "busy" means
/// another connection writes, so the file can be written. A database not migrated yet (no such table) counts
/// as writable. (`BEGIN IMMEDIATE` does not tell, nor does a checkpoint when the WAL holds nothing.)
async fn writable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await?;
    sqlx::query("PRAGMA busy_timeout = 0").execute(&mut *conn).await?;
    let probe = sqlx::query("DELETE FROM seaql_migrations WHERE 0")
        .execute(&mut *conn)
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {busy_timeout}")))
        .execute(&mut *conn)
        .await?;
    match probe {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(err)) => Ok(err
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_none_or(|code| code & 0xff != SQLITE_READONLY)),
        Err(err) => Err(err),
    }
}

/// SQLite's primary result code for a write refused on a read-only database.
const SQLITE_READONLY: i32 = 8;

#[cfg(test)]
mod tests {
    //! Without root a file cannot be made unwritable for the process (root ignores permissions, and
    //! `chattr +i` needs ext4 and root), so these tests model what SQLite does when it opens a file it may not
    //! write: they open connections with `SQLITE_OPEN_READONLY` (`read_only(true)`), which is exactly the mode
    //! SQLite falls back to then. The whole episode, file made immutable and writable again, is run by
    //! `verdict-harness --sqlite db-faults` (root, a loop-mounted ext4).
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sea_orm::sqlx::{self, Pool, Sqlite};

    use super::*;

    async fn database(dir: &std::path::Path) -> SqliteConnectOptions {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = Pool::<Sqlite>::connect_with(options.clone()).await.unwrap();
        // The migrations' table, which the check writes to (nothing).
        sqlx::query("CREATE TABLE seaql_migrations (version TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&pool).await.unwrap();
        pool.close().await;
        options.create_if_missing(false)
    }

    async fn pool(options: SqliteConnectOptions) -> Pool<Sqlite> {
        with_hooks(PoolOptions::new().min_connections(0).max_connections(1))
            .connect_with(options)
            .await
            .unwrap()
    }

    /// The connection goes back to the pool in a task of its own.
    async fn settled_size(pool: &Pool<Sqlite>) -> u32 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pool.size()
    }

    #[tokio::test]
    async fn a_connection_opened_read_only_serves_its_request_with_a_clear_error_then_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let options = database(dir.path()).await;
        let pool = pool(options.read_only(true)).await;
        let mut conn = pool.acquire().await.unwrap();
        assert!(!writable(&mut conn).await.unwrap());
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(count, 1, "reads work on it");
        let err = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *conn)
            .await
            .unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).unwrap_or_default();
        assert_eq!(code.parse::<i32>().unwrap() & 0xff, SQLITE_READONLY, "{err}");
        drop(conn);
        assert_eq!(settled_size(&pool).await, 0, "the read-only connection was kept");
    }

    #[tokio::test]
    async fn a_writable_connection_is_kept_and_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(database(dir.path()).await).await;
        let mut conn = pool.acquire().await.unwrap();
        assert!(writable(&mut conn).await.unwrap());
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(settled_size(&pool).await, 1);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 2);
    }

    /// `query_only` is SQLite's other way for a connection to refuse writes; the check sees it too.
    #[tokio::test]
    async fn query_only_counts_as_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let options = database(dir.path()).await.pragma("query_only", "1");
        let pool = pool(options).await;
        let mut conn = pool.acquire().await.unwrap();
        assert!(!writable(&mut conn).await.unwrap());
    }
}
