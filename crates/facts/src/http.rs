//! The marketplace's order service over HTTP: the contract is docs/marketplace-api.md.
//!
//! One request per lookup: `GET {url}/orders/lookup?processor=stripe&reference=A-17&reference=ch_...` with
//! the configured bearer token. 200 is the order's facts (the JSON of `OrderFacts`), 404 no order; 5xx, 429,
//! 408, 401/403 (a token being rotated), timeouts and refused connections mean the service is unavailable,
//! which the link step retries with backoff. An answer larger than [`MAX_RESPONSE_BYTES`] is refused while it
//! is read. Response bodies are never logged: they are personal data.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use verdict_domain::facts::OrderFacts;

use crate::{FactsError, MarketplaceFacts, OrderLookup};

/// The largest answer read: an order with hundreds of messages fits in far less.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The HTTP source; `Debug` never prints the token.
#[derive(Clone)]
pub struct HttpFacts {
    client: reqwest::Client,
    lookup_url: Url,
    token: String,
}

impl std::fmt::Debug for HttpFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFacts")
            .field("lookup_url", &self.lookup_url.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpFacts {
    /// `base_url` is the service's root (`https://orders.example.com/api`); `timeout` bounds each request
    /// from connecting to the last byte.
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Result<Self, FactsError> {
        let (lookup_url, token) = Self::settings(base_url, token)?;
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!("verdict/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FactsError::Invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            lookup_url,
            token,
        })
    }

    /// Checks the URL and the token without building a client (start-up checks run before TLS is set up).
    pub fn settings(base_url: &str, token: &str) -> Result<(Url, String), FactsError> {
        let base = base_url.trim().trim_end_matches('/');
        let parsed = Url::parse(base).map_err(|e| FactsError::Invalid(format!("[marketplace] url {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FactsError::Invalid("[marketplace] url must be an http(s) URL".into()));
        }
        let lookup_url = Url::parse(&format!("{base}/orders/lookup"))
            .map_err(|e| FactsError::Invalid(format!("[marketplace] url {base:?}: {e}")))?;
        let token = token.trim();
        if token.is_empty() || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(FactsError::Invalid(
                "[marketplace] token must be set, without spaces (or VERDICT_MARKETPLACE_TOKEN)".into(),
            ));
        }
        Ok((lookup_url, token.to_owned()))
    }

    fn url_for(&self, lookup: &OrderLookup) -> Url {
        let mut url = self.lookup_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("processor", lookup.processor.as_str());
            for reference in lookup.references() {
                query.append_pair("reference", reference);
            }
        }
        url
    }
}

fn send_error(err: &reqwest::Error) -> FactsError {
    if err.is_timeout() {
        FactsError::Unavailable("the order service timed out".into())
    } else {
        // Without the URL: it holds the references, which are ours, but nothing else is needed.
        FactsError::Unavailable(format!("the order service cannot be reached: {}", without_url(err)))
    }
}

fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<order service>");
    }
    text
}

/// Reads the body up to [`MAX_RESPONSE_BYTES`], refusing more as soon as it is seen.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, FactsError> {
    let too_large = || {
        FactsError::Malformed(format!(
            "the order service answered more than {MAX_RESPONSE_BYTES} bytes"
        ))
    };
    if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| send_error(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait::async_trait]
impl MarketplaceFacts for HttpFacts {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn find_order(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError> {
        if lookup.is_empty() {
            return Ok(None);
        }
        let response = self
            .client
            .get(self.url_for(lookup))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| send_error(&e))?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_server_error()
                || matches!(
                    s,
                    StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::REQUEST_TIMEOUT
                        | StatusCode::UNAUTHORIZED
                        | StatusCode::FORBIDDEN
                ) =>
            {
                tracing::warn!(status = s.as_u16(), "the order service is unavailable");
                return Err(FactsError::Unavailable(format!(
                    "the order service answered HTTP {}",
                    s.as_u16()
                )));
            }
            s => {
                tracing::warn!(status = s.as_u16(), "the order service refused the lookup");
                return Err(FactsError::Malformed(format!(
                    "the order service answered HTTP {} to a lookup",
                    s.as_u16()
                )));
            }
        }
        let body = bounded_body(response).await?;
        // serde's message may quote a value (a name, an address): only where and what kind of error.
        let facts: OrderFacts = serde_json::from_slice(&body).map_err(|e| {
            FactsError::Malformed(format!(
                "the order service's answer is not OrderFacts ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let facts = facts
            .validated()
            .map_err(|e| FactsError::Malformed(format!("the order service's answer is invalid: {e}")))?;
        // An order that none of the references names is another order: never link a dispute to it.
        let known = facts.references();
        if !lookup.references().iter().any(|r| known.iter().any(|k| k == r)) {
            return Err(FactsError::Malformed(
                "the order service answered an order that none of the references names".into(),
            ));
        }
        Ok(Some(facts))
    }
}
