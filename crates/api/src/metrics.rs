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
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(%err, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The `# HELP` line of every metric Verdict records (the engine's included), given once when the recorder is
/// installed. Each metric keeps one set of labels wherever it is recorded, so sums over a label are right.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "verdict_timers",
        "Timers by status (pending), read from the database at each scrape."
    );
    describe_gauge!(
        "verdict_timers_due",
        "Pending timers whose due time has passed (work waiting for a worker), read at each scrape."
    );
    describe_gauge!(
        "verdict_steps",
        "Steps by status (pending, dead), read from the database at each scrape."
    );
    describe_histogram!(
        "verdict_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by matched route, method and status (/graphql is the GraphQL latency)."
    );
    describe_histogram!(
        "verdict_timer_firing_lag_seconds",
        Unit::Seconds,
        "How late timers fired after their due time."
    );
    describe_counter!("verdict_timers_fired_total", "Timers fired, by kind.");
    describe_counter!(
        "verdict_steps_succeeded_total",
        "Steps performed and recorded as succeeded (one series: no labels)."
    );
    describe_counter!(
        "verdict_step_retries_total",
        "Step attempts that failed and were rescheduled, by kind."
    );
    describe_counter!(
        "verdict_steps_dead_lettered_total",
        "Steps that failed for good (dead letters), by kind."
    );
    describe_counter!(
        "verdict_leases_lost_total",
        "Claimed timers or steps whose lease passed to another worker before they were recorded, by queue."
    );
    describe_counter!(
        "verdict_notifications_total",
        "Processor notifications received, by processor and outcome (applied, flagged, duplicate, ignored, ...)."
    );
    describe_counter!(
        "verdict_notification_payloads_purged_total",
        "Raw notification bodies blanked after the retention period."
    );
    describe_counter!(
        "verdict_schedule_ticks_total",
        "Cron schedule ticks fired, by schedule."
    );
    describe_counter!(
        "verdict_schedule_jobs_timed_out_total",
        "Cron jobs cut off at their tick's lease, by schedule."
    );
    describe_counter!(
        "verdict_step_results_unrecorded_total",
        "Step failures whose retry or dead letter could not be written (the step runs again after its lease), by kind."
    );
    describe_counter!(
        "verdict_step_failures_unrecorded_total",
        "Step failures that could not be written to the database at all, by kind; see the replica's log."
    );
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
