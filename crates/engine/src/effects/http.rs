//! What the HTTP adapters share: one client setup, and one rule for which failures are worth retrying.
//!
//! Response bodies are never logged nor put into errors whole: a processor may echo what it was sent, which
//! includes customers' names and addresses. Errors carry the status and the processor's error code only.

use std::time::Duration;

use reqwest::StatusCode;

use super::{EffectsError, StepError};

/// How long a processor call may take before it is given up (a transient failure).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn client() -> Result<reqwest::Client, EffectsError> {
    client_with_timeout(DEFAULT_TIMEOUT)
}

pub(crate) fn client_with_timeout(timeout: Duration) -> Result<reqwest::Client, EffectsError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
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
    status_error_after(what, status, code, None)
}

/// [`status_error`], honouring the answer's `Retry-After` (read with [`retry_after`]) when it is transient.
pub(crate) fn status_error_after(
    what: &str,
    status: StatusCode,
    code: Option<String>,
    retry_after: Option<Duration>,
) -> StepError {
    let code = code.map(|c| format!(" ({})", truncate(&c, 80))).unwrap_or_default();
    let message = format!("{what}: HTTP {}{code}", status.as_u16());
    tracing::warn!(
        status = status.as_u16(),
        retry_after_secs = retry_after.map(|d| d.as_secs()),
        "{message}"
    );
    match (is_transient(status), retry_after) {
        (true, Some(retry_after)) => StepError::RetryAfter { message, retry_after },
        (true, None) => StepError::Transient(message),
        (false, _) => StepError::Permanent(message),
    }
}

/// The longest `Retry-After` honoured; a processor asking for more is retried after this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The `Retry-After` of an answer: delay-seconds or an HTTP date (RFC 9110 10.2.3), at most
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let after = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// A `multipart/form-data` body (RFC 7578), built by hand so reqwest needs no `multipart` feature and tests
/// can read the parts back exactly.
pub(crate) struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

/// Quotes and line breaks would end a header's quoted string early, so they never reach one.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl Multipart {
    pub(crate) fn new() -> Self {
        Self {
            boundary: format!("verdict-{}", uuid::Uuid::now_v7().simple()),
            body: Vec::new(),
        }
    }

    fn part_head(&mut self, disposition: &str, content_type: Option<&str>) {
        self.body
            .extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
        self.body
            .extend_from_slice(format!("Content-Disposition: form-data; {disposition}\r\n").as_bytes());
        if let Some(content_type) = content_type {
            self.body
                .extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
    }

    /// A plain field.
    pub(crate) fn text(mut self, name: &str, value: &str) -> Self {
        self.part_head(&format!("name=\"{}\"", header_safe(name)), None);
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// A field with its own content type (a JSON part).
    pub(crate) fn typed(mut self, name: &str, content_type: &str, value: &[u8]) -> Self {
        self.part_head(&format!("name=\"{}\"", header_safe(name)), Some(content_type));
        self.body.extend_from_slice(value);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// A file part.
    pub(crate) fn file(mut self, name: &str, file_name: &str, content_type: &str, bytes: &[u8]) -> Self {
        self.part_head(
            &format!(
                "name=\"{}\"; filename=\"{}\"",
                header_safe(name),
                header_safe(file_name)
            ),
            Some(content_type),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `Content-Type` header and the body.
    pub(crate) fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (format!("multipart/form-data; boundary={}", self.boundary), self.body)
    }
}

/// Cuts `text` to at most `max` characters, marking the cut, for fields with a length limit.
pub(crate) fn at_most(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
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
