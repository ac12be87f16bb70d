//! Processor webhooks: `POST /webhooks/{stripe,adyen,paypal,braintree,alerts}`.
//!
//! Each handler authenticates the raw body with the processor's scheme (verdict-ingest), parses it, and hands
//! the result to [`Engine::receive_then_apply`](verdict_engine::Engine::receive_then_apply), which stores it
//! before anything is applied. The answer is 2xx as soon as the notification is stored, so processors stop
//! retrying, and applying follows (before the answer only when the replica is already busy applying); 401 for a
//! bad signature or missing/wrong Adyen basic auth (nothing stored), 400 for a body that cannot be read, 413
//! above the body limit, 503 when the processor's secret is not configured (for Adyen: the HMAC key and basic
//! auth), 500 when storing failed (the processor retries).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;
use verdict_engine::{Received, Source};
use verdict_ingest::{
    ALERT_SIGNATURE_HEADER, BraintreeCredentials, DEFAULT_TOLERANCE, ParseError, Parsed, PaypalTransmission,
    SignatureError, paypal_cert_url_allowed,
};

use crate::AppState;

/// The secrets that authenticate each processor. A processor without one is refused (503): an endpoint that
/// accepted unsigned notifications would let anyone close disputes.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    /// Stripe endpoint signing secrets (`whsec_...`); several while rotating.
    pub stripe: Vec<String>,
    /// Adyen HMAC key, hex.
    pub adyen_hmac_key: Option<String>,
    /// Adyen basic-auth credentials (`user`, `password`), required in addition to the HMAC: without them the
    /// Adyen endpoint answers 503.
    pub adyen_basic_auth: Option<(String, String)>,
    /// Braintree API key pairs.
    pub braintree: Vec<BraintreeCredentials>,
    /// The PayPal webhook id, part of what PayPal signs.
    pub paypal_webhook_id: Option<String>,
    /// Shared secrets of Verdict's alert feed; several while rotating.
    pub alerts: Vec<String>,
}

impl fmt::Debug for WebhookSecrets {
    /// Says what is configured, never the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("stripe", &format!("{} secret(s)", self.stripe.len()))
            .field("adyen_hmac_key", &self.adyen_hmac_key.as_ref().map(|_| "***"))
            .field("adyen_basic_auth", &self.adyen_basic_auth.as_ref().map(|_| "***"))
            .field("braintree", &format!("{} key pair(s)", self.braintree.len()))
            .field("paypal_webhook_id", &self.paypal_webhook_id.as_ref().map(|_| "***"))
            .field("alerts", &format!("{} secret(s)", self.alerts.len()))
            .finish()
    }
}

/// Why a PayPal signing certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("certificate URL not allowed: {0:?}")]
    NotAllowed(String),
    #[error("fetching the certificate failed: {0}")]
    Fetch(String),
    /// More new certificate URLs than PayPal ever uses in a window: whoever sends them is not PayPal (the
    /// request is unverified until the certificate is had), so nothing more is fetched until the window ends.
    #[error("too many new certificate URLs; not fetching {0:?} now")]
    Budget(String),
}

/// Where PayPal signing certificates come from. The trait keeps tests off the network.
#[async_trait::async_trait]
pub trait CertificateSource: Send + Sync {
    /// The PEM at `url`. Implementations must refuse URLs that [`paypal_cert_url_allowed`] refuses.
    async fn certificate(&self, url: &str) -> Result<Arc<Vec<u8>>, CertificateError>;
}

/// Downloads one certificate; [`CachedCertificates`] decides whether it may be asked.
#[async_trait::async_trait]
pub trait CertificateFetcher: Send + Sync {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, CertificateError>;
}

/// Largest certificate bundle accepted; PayPal's are a few KiB.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;
/// Distinct certificate URLs kept (least recently used evicted first); PayPal rotates rarely, so this only bounds what a
/// forger can make us hold.
const MAX_CACHED_CERTIFICATES: usize = 32;
/// Fetches of URLs not in the cache allowed per [`FETCH_WINDOW`]. A PayPal account uses one certificate for
/// months; every new URL arrives on a request nobody has verified yet, so this caps how many requests to
/// PayPal a forger can make Verdict send. Over budget, PayPal's own deliveries get 503 and are redelivered.
const MAX_FETCHES_PER_WINDOW: u32 = 5;
const FETCH_WINDOW: Duration = Duration::from_secs(600);

/// How many fetches the current window has used.
struct FetchBudget {
    window_start: Option<std::time::Instant>,
    used: u32,
}

impl FetchBudget {
    fn take(&mut self, now: std::time::Instant) -> bool {
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= FETCH_WINDOW)
        {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used >= MAX_FETCHES_PER_WINDOW {
            return false;
        }
        self.used += 1;
        true
    }
}

/// The cache: entries by URL and their insertion order, for evicting the oldest.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, Arc<Vec<u8>>>,
    order: std::collections::VecDeque<String>,
}

impl Cache {
    /// The certificate at `url`, marked as the most recently used (so that forged URLs fetched later evict
    /// it last).
    fn get(&mut self, url: &str) -> Option<Arc<Vec<u8>>> {
        let pem = self.entries.get(url).cloned()?;
        if let Some(at) = self.order.iter().position(|u| u == url) {
            self.order.remove(at);
            self.order.push_back(url.to_owned());
        }
        Some(pem)
    }

    fn insert(&mut self, url: &str, pem: Arc<Vec<u8>>) {
        if self.entries.insert(url.to_owned(), pem).is_none() {
            self.order.push_back(url.to_owned());
        }
        while self.order.len() > MAX_CACHED_CERTIFICATES {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }
}

/// Certificates cached in memory by URL, fetched over HTTPS on a miss (unless offline), at most
/// [`MAX_FETCHES_PER_WINDOW`] misses per window.
pub struct CachedCertificates {
    cache: RwLock<Cache>,
    fetcher: Option<Arc<dyn CertificateFetcher>>,
    budget: std::sync::Mutex<FetchBudget>,
}

/// Fetches over HTTPS without following redirects.
#[derive(Default)]
pub struct HttpCertificates {
    client: tokio::sync::OnceCell<reqwest::Client>,
}

impl HttpCertificates {
    async fn client(&self) -> Result<&reqwest::Client, CertificateError> {
        self.client
            .get_or_try_init(|| async {
                // reqwest is built without a default TLS provider; make sure one is installed (a no-op when the
                // binary already did it).
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| CertificateError::Fetch(e.to_string()))
            })
            .await
    }
}

#[async_trait::async_trait]
impl CertificateFetcher for HttpCertificates {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, CertificateError> {
        let response = self
            .client()
            .await?
            .get(url)
            .send()
            .await
            .map_err(|e| CertificateError::Fetch(e.to_string()))?;
        if !response.status().is_success() {
            return Err(CertificateError::Fetch(format!("status {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| CertificateError::Fetch(e.to_string()))?;
        if body.len() > MAX_CERTIFICATE_BYTES {
            return Err(CertificateError::Fetch(format!("{} bytes is too large", body.len())));
        }
        Ok(body.to_vec())
    }
}

impl CachedCertificates {
    /// Fetches from PayPal on a cache miss.
    pub fn http() -> Self {
        Self::with_fetcher(Arc::new(HttpCertificates::default()))
    }

    /// Fetches with `fetcher` on a cache miss (tests count what would have been fetched).
    pub fn with_fetcher(fetcher: Arc<dyn CertificateFetcher>) -> Self {
        Self {
            cache: RwLock::default(),
            fetcher: Some(fetcher),
            budget: std::sync::Mutex::new(FetchBudget {
                window_start: None,
                used: 0,
            }),
        }
    }

    /// Never fetches: only preloaded certificates exist. For tests and air-gapped replays.
    pub fn offline() -> Self {
        Self {
            fetcher: None,
            ..Self::http()
        }
    }

    /// Puts a certificate in the cache as if it had been fetched from `url`.
    pub fn preload(&self, url: &str, pem: impl Into<Vec<u8>>) {
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(url, Arc::new(pem.into()));
        }
    }

    fn cached(&self, url: &str) -> Option<Arc<Vec<u8>>> {
        self.cache.write().ok().and_then(|mut cache| cache.get(url))
    }

    fn take_budget(&self) -> bool {
        self.budget
            .lock()
            .is_ok_and(|mut budget| budget.take(std::time::Instant::now()))
    }
}

#[async_trait::async_trait]
impl CertificateSource for CachedCertificates {
    async fn certificate(&self, url: &str) -> Result<Arc<Vec<u8>>, CertificateError> {
        // Checked before the cache too, so a preloaded entry can never widen what is trusted.
        if !paypal_cert_url_allowed(url) {
            return Err(CertificateError::NotAllowed(url.to_owned()));
        }
        if let Some(pem) = self.cached(url) {
            return Ok(pem);
        }
        let Some(fetcher) = &self.fetcher else {
            return Err(CertificateError::Fetch(format!(
                "{url} is not cached and fetching is off"
            )));
        };
        if !self.take_budget() {
            return Err(CertificateError::Budget(url.to_owned()));
        }
        let pem = Arc::new(fetcher.fetch(url).await?);
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(url, pem.clone());
        }
        Ok(pem)
    }
}

/// The webhook configuration of a running app.
#[derive(Clone)]
pub struct Webhooks {
    pub secrets: Arc<WebhookSecrets>,
    pub certificates: Arc<dyn CertificateSource>,
}

impl Default for Webhooks {
    /// Nothing configured: every webhook answers 503.
    fn default() -> Self {
        Self {
            secrets: Arc::new(WebhookSecrets::default()),
            certificates: Arc::new(CachedCertificates::http()),
        }
    }
}

/// The webhook routes, to be merged under the router's body limit.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/stripe", post(stripe))
        .route("/webhooks/adyen", post(adyen))
        .route("/webhooks/paypal", post(paypal))
        .route("/webhooks/braintree", post(braintree).get(braintree_challenge))
        .route("/webhooks/alerts", post(alerts))
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "error": text }))).into_response()
}

fn not_configured(source: Source) -> Response {
    tracing::warn!(%source, "webhook received but its secret is not configured; refused");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{source} webhooks are not configured"),
    )
}

/// Logged without the body: it can carry personal data, and a forged one is attacker-controlled text.
fn unauthorized(source: Source, err: &dyn fmt::Display) -> Response {
    tracing::warn!(%source, error = %err, "webhook signature rejected");
    message(StatusCode::UNAUTHORIZED, "invalid signature")
}

fn malformed(source: Source, err: &ParseError) -> Response {
    tracing::warn!(%source, error = %err, "webhook body rejected as malformed");
    message(StatusCode::BAD_REQUEST, &format!("malformed notification: {err}"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Stores (the raw body byte for byte), then applies; the processor gets 2xx once stored (applying goes on
/// after the answer), 500 if storing failed so it redelivers.
async fn receive(state: &AppState, source: Source, parsed: Vec<Parsed>, body: &[u8]) -> Result<Received, Response> {
    state
        .engine
        .receive_then_apply(source, parsed, body)
        .await
        .map_err(|err| not_stored(source, &err))
}

fn not_stored(source: Source, err: &verdict_engine::EngineError) -> Response {
    // A database outage fails every delivery the same way: one line per interval, with the count left out.
    let cause = err.to_string();
    crate::error::log_limited(&format!("webhook:{source}:{cause}"), |suppressed| {
        tracing::error!(%source, error = %cause, suppressed, "storing a notification failed");
    });
    // A database that cannot write for now (full disk, read-only file, lock, outage) is a 503: the processor
    // redelivers either way, and the status tells operators it is not Verdict's own fault.
    if let verdict_engine::EngineError::Store(store) = err
        && let Some(fault) = store.storage_fault()
    {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("notification not stored: {fault}; retry"),
        );
    }
    message(StatusCode::INTERNAL_SERVER_ERROR, "notification not stored; retry")
}

fn accepted(received: &Received) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({
            "stored": received.stored,
            "duplicates": received.duplicates,
            "retaken": received.retaken,
            "ignored": received.ignored,
        })),
    )
        .into_response()
}

async fn stripe(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let source = Source::Stripe;
    let secrets = &state.webhooks.secrets.stripe;
    if secrets.is_empty() {
        return not_configured(source);
    }
    let now = state.engine.clock().now();
    if let Err(err) = verdict_ingest::verify_stripe(
        header_str(&headers, "stripe-signature"),
        &body,
        secrets,
        now,
        DEFAULT_TOLERANCE,
    ) {
        return unauthorized(source, &err);
    }
    let parsed = match verdict_ingest::parse_stripe(&body) {
        Ok(parsed) => parsed,
        Err(err) => return malformed(source, &err),
    };
    match receive(&state, source, parsed, &body).await {
        Ok(received) => accepted(&received),
        Err(response) => response,
    }
}

async fn alerts(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let source = Source::Alerts;
    let secrets = &state.webhooks.secrets.alerts;
    if secrets.is_empty() {
        return not_configured(source);
    }
    let now = state.engine.clock().now();
    if let Err(err) = verdict_ingest::verify_alert(
        header_str(&headers, ALERT_SIGNATURE_HEADER),
        &body,
        secrets,
        now,
        DEFAULT_TOLERANCE,
    ) {
        return unauthorized(source, &err);
    }
    let parsed = match verdict_ingest::parse_alert(&body) {
        Ok(parsed) => parsed,
        Err(err) => return malformed(source, &err),
    };
    match receive(&state, source, parsed, &body).await {
        Ok(received) => accepted(&received),
        Err(response) => response,
    }
}

/// Compares the SHA-256 digests without an early exit: fixed-length inputs, so neither how much of a secret
/// matched nor its length shows in the time taken.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest as _;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn basic_auth_matches(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(encoded) = header_str(headers, header::AUTHORIZATION.as_str()).strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    constant_time_eq(&decoded, format!("{user}:{password}").as_bytes())
}

async fn adyen(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let source = Source::Adyen;
    let secrets = &state.webhooks.secrets;
    let Some(key) = &secrets.adyen_hmac_key else {
        return not_configured(source);
    };
    // Adyen recommends basic authentication together with the HMAC, and the HMAC leaves fields that decide
    // what a notification means unsigned (eventDate, reason, additionalData such as disputeStatus and
    // defensePeriodEndsAt; see the README): without basic auth a replayed, edited item would be accepted.
    // So the endpoint is refused until both are configured (start-up refuses that configuration too).
    let Some((user, password)) = &secrets.adyen_basic_auth else {
        tracing::warn!(%source, "Adyen HMAC key configured without basic auth; refused");
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "adyen webhooks need basic authentication (adyen_basic_auth) as well as the HMAC key",
        );
    };
    if !basic_auth_matches(&headers, user, password) {
        return unauthorized(source, &"basic authentication missing or wrong");
    }
    // Adyen signs each item, not the body, so the body must be JSON before anything can be verified.
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return malformed(source, &ParseError::Json("body is not JSON".into()));
    }
    if let Err(err) = verdict_ingest::verify_adyen_notification(&body, key) {
        return unauthorized(source, &err);
    }
    let parsed = match verdict_ingest::parse_adyen(&body) {
        Ok(parsed) => parsed,
        Err(err) => return malformed(source, &err),
    };
    // Each row keeps its own item's bytes (which carry the item's signature), not the whole batch once per
    // item; a body that is not a classic batch keeps the whole body.
    let raws = verdict_ingest::adyen_raw_items(&body).filter(|raws| raws.len() == parsed.len());
    let items: Vec<(Parsed, Vec<u8>)> = match raws {
        Some(raws) => parsed.into_iter().zip(raws).collect(),
        None => parsed.into_iter().map(|p| (p, body.to_vec())).collect(),
    };
    // A batch can hold hundreds of items: it is stored in one transaction, acknowledged, and applied after
    // the answer, so the request does not run into Adyen's timeout.
    match state.engine.receive_later(source, items).await {
        // Adyen's documented acknowledgement; anything else makes it retry.
        Ok(_) => (StatusCode::OK, "[accepted]").into_response(),
        Err(err) => not_stored(source, &err),
    }
}

async fn paypal(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let source = Source::Paypal;
    let Some(webhook_id) = &state.webhooks.secrets.paypal_webhook_id else {
        return not_configured(source);
    };
    let transmission = PaypalTransmission {
        transmission_id: header_str(&headers, "paypal-transmission-id"),
        transmission_time: header_str(&headers, "paypal-transmission-time"),
        transmission_sig: header_str(&headers, "paypal-transmission-sig"),
        cert_url: header_str(&headers, "paypal-cert-url"),
        auth_algo: header_str(&headers, "paypal-auth-algo"),
    };
    if !paypal_cert_url_allowed(transmission.cert_url) {
        return unauthorized(
            source,
            &SignatureError::CertUrlNotAllowed(transmission.cert_url.to_owned()),
        );
    }
    let certificate = match state.webhooks.certificates.certificate(transmission.cert_url).await {
        Ok(pem) => pem,
        Err(CertificateError::NotAllowed(url)) => {
            return unauthorized(source, &SignatureError::CertUrlNotAllowed(url));
        }
        Err(err @ CertificateError::Budget(_)) => {
            tracing::warn!(%source, error = %err, "PayPal certificate fetch budget spent; refused for now");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "signing certificate unavailable; retry",
            );
        }
        Err(err) => {
            // Our problem, not the sender's: PayPal retries on 5xx.
            tracing::error!(%source, error = %err, "PayPal certificate unavailable");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "signing certificate unavailable; retry",
            );
        }
    };
    if let Err(err) = verdict_ingest::verify_paypal(&transmission, &body, webhook_id, &certificate) {
        return unauthorized(source, &err);
    }
    let parsed = match verdict_ingest::parse_paypal(&body) {
        Ok(parsed) => parsed,
        Err(err) => return malformed(source, &err),
    };
    match receive(&state, source, parsed, &body).await {
        Ok(received) => accepted(&received),
        Err(response) => response,
    }
}

/// The two form fields of a Braintree delivery.
fn braintree_form(body: &[u8]) -> Option<(String, String)> {
    let mut signature = None;
    let mut payload = None;
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "bt_signature" => signature = Some(value.into_owned()),
            "bt_payload" => payload = Some(value.into_owned()),
            _ => {}
        }
    }
    Some((signature?, payload?))
}

async fn braintree(State(state): State<AppState>, body: Bytes) -> Response {
    let source = Source::Braintree;
    let credentials = &state.webhooks.secrets.braintree;
    if credentials.is_empty() {
        return not_configured(source);
    }
    let Some((signature, payload)) = braintree_form(&body) else {
        return malformed(
            source,
            &ParseError::MissingField("bt_signature and bt_payload form fields".into()),
        );
    };
    if let Err(err) = verdict_ingest::verify_braintree(&signature, &payload, credentials) {
        return unauthorized(source, &err);
    }
    let parsed = match verdict_ingest::parse_braintree(&payload) {
        Ok(parsed) => parsed,
        Err(err) => return malformed(source, &err),
    };
    match receive(&state, source, parsed, &body).await {
        Ok(received) => accepted(&received),
        Err(response) => response,
    }
}

#[derive(serde::Deserialize)]
struct Challenge {
    bt_challenge: String,
}

/// Braintree's check that we own the URL: answer the challenge signed with our first key pair.
///
/// Only a challenge of the shape Braintree sends is answered (400 otherwise, nothing signed): the answer is
/// the `bt_signature` of a payload equal to the challenge, so answering anything would sign forged
/// notifications.
async fn braintree_challenge(State(state): State<AppState>, Query(challenge): Query<Challenge>) -> Response {
    let Some(creds) = state.webhooks.secrets.braintree.first() else {
        return not_configured(Source::Braintree);
    };
    if !verdict_ingest::braintree_challenge_valid(&challenge.bt_challenge) {
        tracing::warn!(source = %Source::Braintree, "bt_challenge of the wrong shape refused");
        return message(
            StatusCode::BAD_REQUEST,
            "bt_challenge must be 20 to 32 lowercase hex digits",
        );
    }
    match verdict_ingest::braintree_verify_challenge(&challenge.bt_challenge, &creds.public_key, &creds.private_key) {
        Ok(answer) => (StatusCode::OK, answer).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "Braintree challenge failed");
            message(StatusCode::INTERNAL_SERVER_ERROR, "cannot answer the challenge")
        }
    }
}
