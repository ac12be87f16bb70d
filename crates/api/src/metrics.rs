//! `/metrics` in the Prometheus text format, and request latency by route.
//!
//! Counters and histograms are recorded where things happen (the worker pool records timers fired, firing lag,
//! step retries, dead letters and lost leases through the `metrics` facade); gauges of queue depth are read
//! from the database when Prometheus scrapes, so every replica reports the same totals.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// Buckets in seconds, for latencies (requests) and lags (timers fire within a second normally, hours after
/// an outage).
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3_600.0, 21_600.0, 86_400.0,
];

/// The process-wide recorder, installed on first use; `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("lag_seconds".into()), LAG_BUCKETS));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(%err, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Records the latency of every request by matched route (`/graphql` is the GraphQL latency).
pub async fn track(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "verdict_http_request_duration_seconds",
        "path" => path,
        "method" => method,
        "status" => status
    )
    .record(started.elapsed().as_secs_f64());
    response
}

pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = handle() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics are not available").into_response();
    };
    let now = state.engine.clock().now();
    match state.engine.store().live_queue_counts(now).await {
        Ok(counts) => {
            metrics::gauge!("verdict_timers", "status" => "pending").set(counts.timers_pending as f64);
            metrics::gauge!("verdict_timers_due").set(counts.timers_due as f64);
            metrics::gauge!("verdict_steps", "status" => "pending").set(counts.steps_pending as f64);
            metrics::gauge!("verdict_steps", "status" => "dead").set(counts.steps_dead as f64);
        }
        Err(err) => tracing::warn!(%err, "cannot count timers and steps for /metrics"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}
