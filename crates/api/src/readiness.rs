//! `/readyz`: whether this replica can do its work, which means writing, not only reaching the database.
//!
//! `SELECT 1` answers on a full disk, a read-only SQLite file or behind a writer stuck holding a lock, so the
//! probe upserts this replica's row instead, bounded in time. Its answer is kept for a second: load balancers
//! and orchestrators probe often, and concurrent probes share the one write in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use verdict_store::{StorageFault, Store};

/// How long one answer is reused.
const CACHED_FOR: Duration = Duration::from_secs(1);
/// How long the write may take before the database counts as not ready.
const PROBE_WITHIN: Duration = Duration::from_secs(2);
/// Probe rows of replicas silent for this long are deleted (once per process).
const FORGET_AFTER_HOURS: i64 = 24;

pub struct Readiness {
    replica: String,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), StorageFault>)>>,
    forgot_old_rows: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            replica: format!("replica-{}", uuid::Uuid::now_v7()),
            last: tokio::sync::Mutex::default(),
            forgot_old_rows: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// The cached answer if it is fresh, otherwise a new write probe.
    pub async fn check(&self, store: &Store) -> Result<(), StorageFault> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && at.elapsed() < CACHED_FOR
        {
            return answer;
        }
        let answer = store.probe_write(&self.replica, PROBE_WITHIN).await;
        if answer.is_ok() && !self.forgot_old_rows.swap(true, Ordering::Relaxed) {
            let before = chrono::Utc::now() - chrono::Duration::hours(FORGET_AFTER_HOURS);
            if let Err(err) = store.forget_probes_before(before).await {
                tracing::warn!(error = %err, "deleting old readiness probe rows failed");
            }
        }
        *last = Some((Instant::now(), answer));
        answer
    }

    pub async fn respond(&self, store: &Store) -> Response {
        match self.check(store).await {
            Ok(()) => (StatusCode::OK, "ready").into_response(),
            Err(fault) => {
                crate::error::log_limited(&format!("readyz:{fault}"), |suppressed| {
                    tracing::warn!(reason = %fault, suppressed, "not ready: the database cannot write");
                });
                let status = if fault == StorageFault::Unreachable {
                    "database unreachable"
                } else {
                    "database cannot write"
                };
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({"status": status, "reason": fault.to_string()})),
                )
                    .into_response()
            }
        }
    }
}
