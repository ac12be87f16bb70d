//! The HTTP edge of Verdict: GraphQL for analysts and frontends, health checks, and (later) webhooks.
//!
//! Authentication and the mapping of internal errors to client-facing codes happen here and only here.

pub mod auth;
mod documents;
pub mod error;
pub mod evidence_files;
mod exports;
pub mod graphiql;
pub mod graphql;
pub mod metrics;
mod readiness;
pub mod webhooks;

use std::time::Duration;

use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use verdict_engine::Engine;

use crate::error::ApiError;

pub use graphql::{GraphqlLimits, ReadGate, VerdictSchema, build_schema, build_schema_with, schema_sdl};

/// Largest request body accepted anywhere (processors' webhooks included).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub schema: VerdictSchema,
    /// Webhook secrets and PayPal certificates; by default nothing is configured and webhooks answer 503.
    pub webhooks: webhooks::Webhooks,
    /// Body, cost, time and size limits of `/graphql`.
    pub graphql_limits: GraphqlLimits,
    /// The share of the pool GraphQL reads may hold (see graphql/limits.rs).
    pub graphql_reads: ReadGate,
    /// Browser origins allowed to call `/graphql` from another site (CORS); none by default.
    pub allowed_origins: Vec<HeaderValue>,
    /// How much one refund may be, by role (`[refunds]`).
    pub refund_limits: graphql::RefundLimits,
    /// Where evidence files are kept (`[evidence] dir`); without one, uploads and downloads answer an error.
    pub evidence_files: Option<std::sync::Arc<dyn verdict_evidence::FileStore>>,
    /// `/readyz`'s write probe and its cached answer.
    readiness: std::sync::Arc<readiness::Readiness>,
}

impl AppState {
    pub fn new(engine: Engine) -> Self {
        Self::with_limits(engine, GraphqlLimits::default(), graphql::RefundLimits::default())
    }

    fn with_limits(engine: Engine, graphql_limits: GraphqlLimits, refund_limits: graphql::RefundLimits) -> Self {
        let graphql_reads = ReadGate::new(graphql_limits.read_connections_of(engine.store().max_connections()));
        let schema = graphql::build_schema_full(engine.clone(), &graphql_limits, graphql_reads.clone(), refund_limits);
        Self {
            refund_limits,
            engine,
            schema,
            webhooks: webhooks::Webhooks::default(),
            graphql_limits,
            graphql_reads,
            allowed_origins: Vec::new(),
            evidence_files: None,
            readiness: std::sync::Arc::default(),
        }
    }

    /// The same state with other GraphQL limits (`[graphql]` in the configuration).
    pub fn with_graphql_limits(self, limits: GraphqlLimits) -> Self {
        let (webhooks, allowed_origins) = (self.webhooks, self.allowed_origins);
        let evidence_files = self.evidence_files;
        Self {
            webhooks,
            allowed_origins,
            evidence_files,
            ..Self::with_limits(self.engine, limits, self.refund_limits)
        }
    }

    /// The same state with other refund limits by role (`[refunds]` in the configuration).
    pub fn with_refund_limits(self, refunds: graphql::RefundLimits) -> Self {
        let (webhooks, allowed_origins) = (self.webhooks, self.allowed_origins);
        let evidence_files = self.evidence_files;
        Self {
            webhooks,
            allowed_origins,
            evidence_files,
            ..Self::with_limits(self.engine, self.graphql_limits, refunds)
        }
    }

    /// The same state with these CORS origins (`https://app.example.com`) allowed on `/graphql`.
    pub fn with_allowed_origins(mut self, origins: Vec<HeaderValue>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// The same state keeping evidence files in `files`.
    pub fn with_evidence_files(mut self, files: std::sync::Arc<dyn verdict_evidence::FileStore>) -> Self {
        self.evidence_files = Some(files);
        self
    }

    /// The same state with webhooks configured.
    pub fn with_webhooks(mut self, webhooks: webhooks::Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }
}

pub fn router(state: AppState) -> Router {
    // Installs the metrics recorder before any worker or request records into it.
    let _ = metrics::handle();
    let cors = cors(&state.allowed_origins);
    Router::new()
        .route("/graphql", get(graphiql::page).post(graphql_handler).layer(cors))
        .route(&format!("{}/{{name}}", graphiql::ASSETS_PATH), get(graphiql::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .merge(webhooks::routes())
        .merge(evidence_files::routes())
        .merge(documents::routes())
        .merge(exports::routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Cross-origin calls to `/graphql` from the configured origins only. A preflight from any other origin is
/// answered without `Access-Control-Allow-Origin`, so the browser refuses the call; requests without an
/// `Origin` (curl, servers) are unaffected. Tokens travel in `Authorization`, never in cookies, so no
/// credentials mode is needed.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// `POST /graphql`: authenticates from the `Authorization` header before the body is read (an unknown
/// caller gets 401 and its body is never read), reads at most `body_limit_bytes` (413 past it), executes
/// within `timeout_secs` and answers at most `max_response_bytes`.
async fn graphql_handler(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let timeout = Duration::from_secs(state.graphql_limits.timeout_secs);
    // The deadline covers the wait for the read gate too: under a burst, a request that cannot get a
    // connection share in time is told so instead of queueing until the client gives up.
    match tokio::time::timeout(timeout, graphql_answer(&state, &headers, body)).await {
        Ok(response) => response,
        Err(_) => graphql_error(ApiError::Timeout(format!(
            "the request took longer than {} s and was abandoned; ask for fewer disputes or fields, or retry \
             when the server is less busy",
            timeout.as_secs()
        ))),
    }
}

async fn graphql_answer(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let limits = &state.graphql_limits;
    let principal = match state
        .graphql_reads
        .run(auth::authenticate(state.engine.store(), headers))
        .await
    {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "a GraphQL request body is at most {} bytes",
            limits.body_limit_bytes
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body_limit_bytes as u64) {
        return too_large().into_response();
    }
    let bytes = match axum::body::to_bytes(body, limits.body_limit_bytes).await {
        Ok(bytes) => bytes,
        Err(err) if is_length_limit(&err) => return too_large().into_response(),
        Err(err) => return ApiError::InvalidInput(format!("reading the request body failed: {err}")).into_response(),
    };
    // The body is authenticated and bounded by now; async-graphql-axum parses it as it would any request
    // (JSON, or multipart for uploads), from the bytes already read.
    let mut parsed = axum::http::Request::new(Body::from(bytes));
    *parsed.headers_mut() = headers.clone();
    *parsed.method_mut() = axum::http::Method::POST;
    let request = match GraphQLRequest::<GraphQLRejection>::from_request(parsed, state).await {
        Ok(request) => request.into_inner(),
        Err(rejection) => {
            return ApiError::InvalidInput(format!(
                "the body must be a GraphQL request ({{\"query\": ..., \"variables\": ...}}): {}",
                rejection.0
            ))
            .into_response();
        }
    };
    let mut response = state.schema.execute(request.data(principal)).await;
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_some() {
            continue;
        }
        // Resolver errors carry their code already; what is left are async-graphql's own parse and
        // validation errors, which are always the client's input. The cost and depth refusals get their own
        // codes and say what the limit is.
        let refused = match error.message.as_str() {
            "Query is too complex." => Some(ApiError::QueryTooComplex(format!(
                "the query costs more than {} (a list counts its page size, `first`, times its fields; a \
                 dispute's nested lists count {} entries each): ask for fewer disputes, aliases or fields",
                limits.max_complexity,
                graphql::limits::NESTED_LIST_ESTIMATE
            ))),
            "Query is nested too deep." => Some(ApiError::QueryTooDeep(format!(
                "the query nests more than {} levels",
                limits.max_depth
            ))),
            _ => None,
        };
        match refused {
            Some(refused) => {
                error.message = refused.message();
                extensions.set("code", refused.code());
            }
            None => extensions.set("code", "INVALID_INPUT"),
        }
    }
    let mut buffer = graphql::limits::BoundedBuffer::new(limits.max_response_bytes);
    if serde_json::to_writer(&mut buffer, &response).is_err() {
        return graphql_error(ApiError::ResponseTooLarge(format!(
            "the answer would be larger than {} bytes; ask for fewer disputes (first) or fields",
            limits.max_response_bytes
        )));
    }
    ([(header::CONTENT_TYPE, "application/json")], buffer.bytes).into_response()
}

/// An execution-level refusal in GraphQL's shape (`errors[0].extensions.code`), answered 200 as GraphQL
/// errors are.
fn graphql_error(err: ApiError) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": err.message(), "extensions": { "code": err.code() } }]
    });
    Json(body).into_response()
}

pub(crate) fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// 200 when the database takes a write (see readiness.rs), else 503 with the reason.
async fn readyz(State(state): State<AppState>) -> Response {
    state.readiness.respond(state.engine.store()).await
}
