//! The one error type of the domain: every way a command or a value can be refused.

use crate::dispute::Status;

/// Why the domain refused a value or a command. Refusal never changes a dispute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("illegal transition from {from} to {to}")]
    IllegalTransition { from: Status, to: Status },
    #[error("stale version: expected {expected}, dispute is at {actual}")]
    VersionConflict { expected: i64, actual: i64 },
    #[error("unknown reason code {code:?} for network {network}")]
    UnknownReasonCode { network: String, code: String },
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
}

impl DomainError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }
}
