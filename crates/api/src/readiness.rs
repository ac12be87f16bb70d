//! `/readyz`: whether this replica can do its work, which means writing, not only reaching the database.
//!
//! `SELECT 1` answers on a full disk, a read-only SQLite file or behind a writer stuck holding a lock, so the
//! probe upserts this replica's row instead, bounded in time. Concurrent probes share the one write in flight,
//! but an answer is never reused by a probe that arrived after it was had: an answer kept for a second said
//! 200 for that second after the database had stopped answering (seen by the fault harness when the whole
//! PostgreSQL server was paused or stopped), and a load balancer probes rarely enough that one write per
//! probe costs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use verdict_store::{StorageFault, Store};

/// How long the write may take before the database counts as not ready.
const PROBE_WITHIN: Duration = Duration::from_secs(2);
/// Probe rows of replicas silent for this long are deleted (once per process).
const FORGET_AFTER_HOURS: i64 = 24;

pub struct Readiness {
    replica: String,
    /// The last answer and when it was had.
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
    /// The answer of a write probe that ended after this call began: the one in flight if it ends while this
    /// call waits for it, otherwise a new one.
    pub async fn check(&self, store: &Store) -> Result<(), StorageFault> {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && at > asked
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
