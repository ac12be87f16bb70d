//! What the HTTP adapters share: one client setup, and one rule for which failures are worth retrying.
//!
//! Response bodies are never logged nor put into errors whole: a processor may echo what it was sent, which
//! includes customers' names and addresses. Errors carry the status and the processor's error code only.

use std::time::Duration;

use reqwest::StatusCode;

use super::{EffectsError, StepError};

pub(crate) fn client() -> Result<reqwest::Client, EffectsError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("verdict/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| EffectsError::Config(format!("building the HTTP client: {e}")))
}

/// A base URL without its trailing slash; it must be http(s).
pub(crate) fn base_url(what: &str, url: &str) -> Result<String, EffectsError> {
    let url = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|e| EffectsError::Config(format!("{what} {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EffectsError::Config(format!("{what} must be an http(s) URL")));
    }
    Ok(url.to_owned())
}

/// A request that never got an answer: timeouts and connection failures are transient.
pub(crate) fn send_error(what: &str, err: reqwest::Error) -> StepError {
    // reqwest's Display includes the URL, which holds only ids of ours; never the body.
    if err.is_timeout() {
        StepError::Transient(format!("{what}: timed out"))
    } else if err.is_connect() || err.is_request() || err.is_body() {
        StepError::Transient(format!("{what}: {}", err.without_url()))
    } else {
        StepError::Permanent(format!("{what}: {}", err.without_url()))
    }
}

/// Retry on server errors, rate limits, timeouts and conflicts; give up on the other client errors.
///
/// 409 is retried because Stripe answers it while a request with the same idempotency key is still in
/// flight; a retry later gets the first request's result.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_EARLY
        )
}

/// Turns a non-2xx answer into a step error; `code` is the processor's error code, if it sent one.
pub(crate) fn status_error(what: &str, status: StatusCode, code: Option<String>) -> StepError {
    let code = code.map(|c| format!(" ({})", truncate(&c, 80))).unwrap_or_default();
    let message = format!("{what}: HTTP {}{code}", status.as_u16());
    tracing::warn!(status = status.as_u16(), "{message}");
    if is_transient(status) {
        StepError::Transient(message)
    } else {
        StepError::Permanent(message)
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Reads a JSON body without failing: a processor that answers 2xx has done the work even if its body is odd.
pub(crate) async fn json_body(response: reqwest::Response) -> serde_json::Value {
    response
        .json::<serde_json::Value>()
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// A string field of a JSON object, following `path`.
pub(crate) fn json_str(value: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    current.as_str().map(str::to_owned)
}
