//! The HTTP edge of Verdict: GraphQL for analysts and frontends, health checks, and (later) webhooks.
//!
//! Authentication and the mapping of internal errors to client-facing codes happen here and only here.

pub mod auth;
pub mod error;
pub mod graphiql;
pub mod graphql;
pub mod metrics;
pub mod webhooks;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use verdict_engine::Engine;

pub use graphql::{VerdictSchema, build_schema, schema_sdl};

/// Largest request body accepted anywhere (processors' webhooks included).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub schema: VerdictSchema,
    /// Webhook secrets and PayPal certificates; by default nothing is configured and webhooks answer 503.
    pub webhooks: webhooks::Webhooks,
    /// Browser origins allowed to call `/graphql` from another site (CORS); none by default.
    pub allowed_origins: Vec<HeaderValue>,
}

impl AppState {
    pub fn new(engine: Engine) -> Self {
        let schema = build_schema(engine.clone());
        Self {
            engine,
            schema,
            webhooks: webhooks::Webhooks::default(),
            allowed_origins: Vec::new(),
        }
    }

    /// The same state with these CORS origins (`https://app.example.com`) allowed on `/graphql`.
    pub fn with_allowed_origins(mut self, origins: Vec<HeaderValue>) -> Self {
        self.allowed_origins = origins;
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

async fn graphql_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: async_graphql_axum::GraphQLRequest,
) -> Response {
    let principal = match auth::authenticate(state.engine.store(), &headers).await {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    let request = request.into_inner().data(principal);
    let mut response = state.schema.execute(request).await;
    // Resolver errors carry their code already; what is left are async-graphql's own parse and
    // validation errors, which are always the client's input.
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "INVALID_INPUT");
        }
    }
    async_graphql_axum::GraphQLResponse::from(response).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "database not reachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "database unreachable"})),
            )
                .into_response()
        }
    }
}
