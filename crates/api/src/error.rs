//! The one place where internal errors become what a client sees: a GraphQL `extensions.code` or an HTTP
//! status. Causes are logged here; database text never reaches a client.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::ErrorExtensions as _;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use verdict_domain::DomainError;
use verdict_engine::EngineError;
use verdict_store::StoreError;

use crate::graphql::payloads::ErrorCode;

/// Deliberately not `Display`: that keeps async-graphql's blanket conversion away, so every error reaches
/// clients through the `From` below, with its code.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    IllegalTransition(String),
    VersionConflict(String),
    InvalidInput(String),
    AlreadyExists(String),
    /// A defense without the evidence its claim requires (a mutation's user error `MISSING_EVIDENCE`).
    MissingEvidence(String),
    /// The request body is larger than the configured limit (HTTP 413).
    PayloadTooLarge(String),
    /// The query costs more than the configured limit, counting list sizes.
    QueryTooComplex(String),
    /// The query nests selections deeper than the configured limit.
    QueryTooDeep(String),
    /// The answer would be larger than the configured limit.
    ResponseTooLarge(String),
    /// The request ran longer than the configured limit and was abandoned.
    Timeout(String),
    /// An outside system Verdict depends on (the marketplace's order service) cannot answer now (HTTP 503).
    Unavailable(String),
    /// A subscriber fell further behind than the server buffers; its subscription ends (resubscribe, and
    /// read what was missed with a query).
    SubscriberLagged(String),
    /// The cause is logged, never shown.
    Internal(String),
}

impl ApiError {
    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::IllegalTransition(m)
            | ApiError::VersionConflict(m)
            | ApiError::InvalidInput(m)
            | ApiError::AlreadyExists(m)
            | ApiError::MissingEvidence(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::QueryTooComplex(m)
            | ApiError::QueryTooDeep(m)
            | ApiError::ResponseTooLarge(m)
            | ApiError::Timeout(m)
            | ApiError::Unavailable(m)
            | ApiError::SubscriberLagged(m) => m.clone(),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    /// The code clients read in `extensions.code` (and `BulkItem.code`).
    pub fn code(&self) -> &'static str {
        self.error_code().name()
    }

    /// The code, typed: one list of codes for `extensions.code`, `userErrors` and bulk items.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::IllegalTransition(_) => ErrorCode::IllegalTransition,
            ApiError::VersionConflict(_) => ErrorCode::VersionConflict,
            ApiError::InvalidInput(_) => ErrorCode::InvalidInput,
            ApiError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            ApiError::MissingEvidence(_) => ErrorCode::MissingEvidence,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::QueryTooComplex(_) => ErrorCode::QueryTooComplex,
            ApiError::QueryTooDeep(_) => ErrorCode::QueryTooDeep,
            ApiError::ResponseTooLarge(_) => ErrorCode::ResponseTooLarge,
            ApiError::Timeout(_) => ErrorCode::Timeout,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::SubscriberLagged(_) => ErrorCode::SubscriberLagged,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::IllegalTransition(_) | ApiError::VersionConflict(_) | ApiError::AlreadyExists(_) => {
                StatusCode::CONFLICT
            }
            ApiError::InvalidInput(_)
            | ApiError::MissingEvidence(_)
            | ApiError::QueryTooComplex(_)
            | ApiError::QueryTooDeep(_)
            | ApiError::ResponseTooLarge(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) | ApiError::Unavailable(_) | ApiError::SubscriberLagged(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::IllegalTransition { .. } => ApiError::IllegalTransition(err.to_string()),
            DomainError::VersionConflict { .. } => ApiError::VersionConflict(err.to_string()),
            DomainError::InvalidInput(_) | DomainError::UnknownReasonCode { .. } | DomainError::UnknownCurrency(_) => {
                ApiError::InvalidInput(err.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let Some(fault) = err.storage_fault() {
            // A passing state of the database (full disk, read-only file, lock, outage), not a bug: the client
            // may retry once it passes. The cause is logged, at most once per interval.
            crate::error::log_limited(&format!("store:{fault}"), |suppressed| {
                tracing::warn!(error = %err, suppressed, "the database cannot serve this request");
            });
            return ApiError::Unavailable(format!("{fault}; retry later"));
        }
        match err {
            StoreError::Conflict(_) => ApiError::VersionConflict(err.to_string()),
            StoreError::DuplicateDispute { .. } | StoreError::Duplicate(_) => ApiError::AlreadyExists(err.to_string()),
            StoreError::TooManyRows { .. } => ApiError::ResponseTooLarge(err.to_string()),
            StoreError::ApprovalDecided(_) => ApiError::InvalidInput(err.to_string()),
            StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::LeaseLost
            | StoreError::Superseded { .. } => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<verdict_facts::FactsError> for ApiError {
    fn from(err: verdict_facts::FactsError) -> Self {
        use verdict_facts::FactsError;
        match err {
            FactsError::Unavailable(_) | FactsError::Malformed(_) => ApiError::Unavailable(err.to_string()),
            FactsError::Invalid(m) => ApiError::InvalidInput(format!("invalid order facts: {m}")),
            FactsError::Conflict(m) => ApiError::AlreadyExists(m),
            FactsError::ReadOnly(_) => ApiError::InvalidInput(err.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound(id) => ApiError::NotFound(format!("dispute {id} not found")),
            EngineError::Domain(err) => err.into(),
            EngineError::Store(err) => err.into(),
            EngineError::Document(cause) => ApiError::Internal(cause),
            EngineError::Facts(err) => err.into(),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        if let ApiError::Internal(cause) = &err {
            log_limited(cause, |suppressed| {
                tracing::error!(%cause, suppressed, "internal error answering a GraphQL request");
            });
        }
        let code = err.code();
        async_graphql::Error::new(err.message()).extend_with(|_, ext| ext.set("code", code))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            log_limited(
                cause,
                |suppressed| tracing::error!(%cause, suppressed, "internal error"),
            );
        }
        let body = serde_json::json!({
            "errors": [{ "message": self.message(), "extensions": { "code": self.code() } }]
        });
        (self.status(), Json(body)).into_response()
    }
}

/// How often the same error line is written at most.
pub const LOG_REPEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Keys remembered by [`log_limited`]; past this many the memory is cleared (and lines may repeat early).
const LOG_KEYS: usize = 1024;

struct Seen {
    at: Instant,
    suppressed: u64,
}

fn seen() -> &'static Mutex<HashMap<String, Seen>> {
    static SEEN: OnceLock<Mutex<HashMap<String, Seen>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// Writes a line (`log(suppressed)`) for `key` at most once per [`LOG_REPEAT_INTERVAL`]; repeats in between
/// are counted and the count is passed to the next line that is written. When the pool runs dry every
/// request fails with the same cause: one line per interval says so, with how many were left out, instead
/// of one line per request.
pub fn log_limited(key: &str, log: impl FnOnce(u64)) {
    if let Some(suppressed) = admit(key, Instant::now()) {
        log(suppressed);
    }
}

/// `Some(lines suppressed since the last one)` if a line for `key` may be written at `now`.
fn admit(key: &str, now: Instant) -> Option<u64> {
    let mut seen = seen().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(entry) = seen.get_mut(key) {
        if now.saturating_duration_since(entry.at) < LOG_REPEAT_INTERVAL {
            entry.suppressed += 1;
            return None;
        }
        let suppressed = entry.suppressed;
        *entry = Seen { at: now, suppressed: 0 };
        return Some(suppressed);
    }
    if seen.len() >= LOG_KEYS {
        seen.clear();
    }
    seen.insert(key.to_owned(), Seen { at: now, suppressed: 0 });
    Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_written_once_per_interval_with_the_count_left_out() {
        let key = "pool timed out (log_limited test)";
        let start = Instant::now();
        assert_eq!(admit(key, start), Some(0));
        assert_eq!(admit(key, start + Duration::from_secs(1)), None);
        assert_eq!(admit(key, start + Duration::from_secs(2)), None);
        assert_eq!(admit("another cause (log_limited test)", start), Some(0));
        assert_eq!(admit(key, start + LOG_REPEAT_INTERVAL), Some(2));
        assert_eq!(admit(key, start + LOG_REPEAT_INTERVAL + Duration::from_secs(1)), None);
    }
}
