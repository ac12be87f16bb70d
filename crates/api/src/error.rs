//! The one place where internal errors become what a client sees: a GraphQL `extensions.code` or an HTTP
//! status. Causes are logged here; database text never reaches a client.

use async_graphql::ErrorExtensions as _;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use verdict_domain::DomainError;
use verdict_engine::EngineError;
use verdict_store::StoreError;

/// Deliberately not `Display`: that keeps async-graphql's blanket conversion away, so every error reaches
/// clients through the `From` below, with its code.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    IllegalTransition(String),
    VersionConflict(String),
    InvalidInput(String),
    AlreadyExists(String),
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
            | ApiError::AlreadyExists(m) => m.clone(),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::IllegalTransition(_) => "ILLEGAL_TRANSITION",
            ApiError::VersionConflict(_) => "VERSION_CONFLICT",
            ApiError::InvalidInput(_) => "INVALID_INPUT",
            ApiError::AlreadyExists(_) => "ALREADY_EXISTS",
            ApiError::Internal(_) => "INTERNAL",
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
            ApiError::InvalidInput(_) => StatusCode::BAD_REQUEST,
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
        match err {
            StoreError::Conflict(_) => ApiError::VersionConflict(err.to_string()),
            StoreError::DuplicateDispute { .. } | StoreError::Duplicate(_) => ApiError::AlreadyExists(err.to_string()),
            StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::LeaseLost
            | StoreError::Superseded { .. } => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound(id) => ApiError::NotFound(format!("dispute {id} not found")),
            EngineError::Domain(err) => err.into(),
            EngineError::Store(err) => err.into(),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        if let ApiError::Internal(cause) = &err {
            tracing::error!(%cause, "internal error answering a GraphQL request");
        }
        let code = err.code();
        async_graphql::Error::new(err.message()).extend_with(|_, ext| ext.set("code", code))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let body = serde_json::json!({
            "errors": [{ "message": self.message(), "extensions": { "code": self.code() } }]
        });
        (self.status(), Json(body)).into_response()
    }
}
