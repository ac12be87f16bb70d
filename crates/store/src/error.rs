//! The store's one error type; database text stays inside it and never reaches a client.

use sea_orm::{DbErr, SqlErr};
use verdict_domain::DisputeId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("dispute {0} was changed by someone else; reload and try again")]
    Conflict(DisputeId),
    #[error("a dispute already exists for {processor} dispute {processor_dispute_id}")]
    DuplicateDispute {
        processor: String,
        processor_dispute_id: String,
    },
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("the lease on this timer or step was lost to another worker; nothing was written")]
    LeaseLost,
    /// The approval a decision performs was no longer pending (another lead decided it); nothing was written.
    #[error("approval {0} was decided meanwhile; nothing was done")]
    ApprovalDecided(uuid::Uuid),
    /// A notification would be applied after a later one of the same dispute; nothing was written.
    #[error("a later notification (of {last_applied}) was already applied to the dispute")]
    Superseded {
        last_applied: chrono::DateTime<chrono::Utc>,
    },
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// A read that would load more rows than one answer may hold; nothing was returned.
    #[error("{what} of these disputes come to more than {limit} rows: ask for fewer disputes")]
    TooManyRows { what: &'static str, limit: u64 },
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Why the database cannot take writes now: a state of the server or its disk that passes (once there is room,
/// the file is writable again, the lock is released, the server is back), as opposed to a fault of the request.
/// Callers answer 503 and "retry" for these; the process recovers by itself (no restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageFault {
    #[error("the database's disk is full")]
    Full,
    #[error("the database is read-only")]
    ReadOnly,
    #[error("the database is locked by another writer")]
    Locked,
    #[error("the database did not answer in time")]
    TimedOut,
    #[error("the database cannot be reached")]
    Unreachable,
    #[error("the database failed to read or write its files")]
    Io,
}

impl StoreError {
    /// The passing database condition behind this error, if it is one.
    pub fn storage_fault(&self) -> Option<StorageFault> {
        match self {
            StoreError::Database(err) => storage_fault(err),
            _ => None,
        }
    }
}

pub(crate) fn storage_fault(err: &DbErr) -> Option<StorageFault> {
    use sea_orm::{RuntimeErr, sqlx};
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(_) => return Some(StorageFault::Unreachable),
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    match &**sqlx_err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            Some(StorageFault::Unreachable)
        }
        sqlx::Error::PoolTimedOut => Some(StorageFault::TimedOut),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Extended result codes: the primary code is the low byte.
                match code.parse::<i32>().map(|c| c & 0xff) {
                    Ok(13) => Some(StorageFault::Full),
                    Ok(8) => Some(StorageFault::ReadOnly),
                    Ok(5 | 6) => Some(StorageFault::Locked),
                    Ok(10 | 14) => Some(StorageFault::Io),
                    _ => None,
                }
            } else {
                // PostgreSQL SQLSTATEs: insufficient resources, read-only transaction, lock and statement
                // timeouts, shutdowns and lost connections.
                match code.as_ref() {
                    "53100" => Some(StorageFault::Full),
                    "25006" => Some(StorageFault::ReadOnly),
                    "55P03" => Some(StorageFault::Locked),
                    "57014" => Some(StorageFault::TimedOut),
                    c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                        Some(StorageFault::Unreachable)
                    }
                    _ => None,
                }
            }
        }
        _ => None,
    }
}
