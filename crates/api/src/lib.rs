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
pub mod identity;
pub mod metrics;
pub mod patterns;
mod readiness;
pub mod seller_links;
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
    /// The organisation's OpenID Connect provider (`[oidc]`); without one, only API keys authenticate.
    pub oidc: Option<identity::OidcVerifier>,
    /// Signs and checks sellers' upload links (`[sellers] upload_secret`); without it there are none.
    pub seller_links: Option<seller_links::SellerLinks>,
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
            oidc: None,
            seller_links: None,
            readiness: std::sync::Arc::default(),
        }
    }

    /// The same state with other GraphQL limits (`[graphql]` in the configuration).
    pub fn with_graphql_limits(self, limits: GraphqlLimits) -> Self {
        let (webhooks, allowed_origins) = (self.webhooks, self.allowed_origins);
        let (evidence_files, oidc, seller_links) = (self.evidence_files, self.oidc, self.seller_links);
        Self {
            webhooks,
            allowed_origins,
            evidence_files,
            oidc,
            seller_links,
            ..Self::with_limits(self.engine, limits, self.refund_limits)
        }
    }

    /// The same state with other refund limits by role (`[refunds]` in the configuration).
    pub fn with_refund_limits(self, refunds: graphql::RefundLimits) -> Self {
        let (webhooks, allowed_origins) = (self.webhooks, self.allowed_origins);
        let (evidence_files, oidc, seller_links) = (self.evidence_files, self.oidc, self.seller_links);
        Self {
            webhooks,
            allowed_origins,
            evidence_files,
            oidc,
            seller_links,
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

    /// The same state letting people sign in through this OpenID Connect provider.
    pub fn with_oidc(mut self, oidc: Option<identity::OidcVerifier>) -> Self {
        self.oidc = oidc;
        self
    }

    /// The same state letting sellers upload evidence through links signed by `links`.
    pub fn with_seller_links(mut self, links: Option<seller_links::SellerLinks>) -> Self {
        self.seller_links = links;
        self
    }

    /// The caller of a request (API key or ID token), authenticated within the read gate.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<auth::Principal, ApiError> {
        let now = self.engine.clock().now();
        self.graphql_reads
            .run(auth::authenticate(
                self.engine.store(),
                self.oidc.as_ref(),
                headers,
                now,
            ))
            .await
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
        .route(SUBSCRIPTIONS_PATH, get(graphql_subscriptions))
        .route(&format!("{}/{{name}}", graphiql::ASSETS_PATH), get(graphiql::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .merge(webhooks::routes())
        .merge(evidence_files::routes())
        .merge(documents::routes())
        .merge(patterns::routes())
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
    let principal = match state.caller(headers).await {
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
    let mut request = request.data(principal);
    if let Some(links) = &state.seller_links {
        request = request.data(links.clone());
    }
    let mut response = state.schema.execute(request).await;
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

/// Where GraphQL subscriptions are served over WebSocket.
pub const SUBSCRIPTIONS_PATH: &str = "/graphql/ws";

/// `GET /graphql/ws`: GraphQL subscriptions over WebSocket, in graphql-transport-ws (graphql-ws) or the older
/// subscriptions-transport-ws, as the client's `Sec-WebSocket-Protocol` asks. The caller authenticates in
/// `connection_init` with the same API keys as HTTP: `{"Authorization": "Bearer TOKEN"}` (or
/// `{"authorization": ...}`, or `{"token": "TOKEN"}`); an unknown key closes the connection before any
/// subscription starts. A message is at most `body_limit_bytes`.
async fn graphql_subscriptions(
    State(state): State<AppState>,
    protocol: async_graphql_axum::GraphQLProtocol,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    let max_message_size = state.graphql_limits.body_limit_bytes;
    upgrade
        .max_message_size(max_message_size)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            async_graphql_axum::GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let headers = connection_init_headers(&payload);
                    let principal = state.caller(&headers).await?;
                    let mut data = async_graphql::Data::default();
                    data.insert(principal);
                    Ok(data)
                })
                .serve()
        })
}

/// The `Authorization` header a `connection_init` payload carries, in the forms clients send it.
fn connection_init_headers(payload: &serde_json::Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let authorization = ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        .or_else(|| {
            payload
                .get("headers")
                .and_then(|h| h.get("Authorization").or_else(|| h.get("authorization")))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .or_else(|| {
            payload
                .get("token")
                .and_then(|v| v.as_str())
                .map(|t| format!("Bearer {t}"))
        });
    if let Some(value) = authorization.and_then(|a| HeaderValue::from_str(&a).ok()) {
        headers.insert(header::AUTHORIZATION, value);
    }
    headers
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_init_carries_the_key_in_the_forms_clients_send() {
        for payload in [
            serde_json::json!({ "Authorization": "Bearer vdk_1" }),
            serde_json::json!({ "authorization": "Bearer vdk_1" }),
            serde_json::json!({ "headers": { "Authorization": "Bearer vdk_1" } }),
            serde_json::json!({ "token": "vdk_1" }),
        ] {
            let headers = connection_init_headers(&payload);
            assert_eq!(headers.get(header::AUTHORIZATION).unwrap(), "Bearer vdk_1", "{payload}");
        }
        assert!(connection_init_headers(&serde_json::json!({})).is_empty());
        assert!(connection_init_headers(&serde_json::Value::Null).is_empty());
    }
}
