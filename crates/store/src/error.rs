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
