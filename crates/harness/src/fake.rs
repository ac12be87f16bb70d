//! A local fake processor (Stripe and Adyen) that records every call with its idempotency key and, like the
//! real ones, performs one refund or acceptance per key. Verdict is pointed at it through
//! `stripe_base_url`, `adyen_disputes_base_url` and `adyen_checkout_base_url`.
//!
//! Faults are switched at run time: a delay before answering, a connection reset (a TCP proxy in front of
//! the HTTP server drops connections with RST), an error status (429 with `Retry-After`, 5xx) for the next
//! N requests or until cleared.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub idempotency_key: String,
    /// The payment a refund is for, or the dispute an acceptance is for.
    pub target: String,
    pub at: Instant,
    /// What the fake answered.
    pub status: u16,
}

impl Call {
    pub fn is_refund(&self) -> bool {
        self.method == "POST" && (self.path == "/v1/refunds" || self.path.ends_with("/refunds"))
    }
    pub fn is_accept(&self) -> bool {
        self.method == "POST" && (self.path.ends_with("/close") || self.path.ends_with("/acceptDispute"))
    }
    pub fn moves_money(&self) -> bool {
        self.is_refund() || self.is_accept()
    }
}

/// The fault applied to requests while it is set.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub delay: Duration,
    /// Reset connections (RST) instead of answering.
    pub reset: bool,
    /// Answer with this status (and `Retry-After` seconds) instead of doing the work.
    pub status: Option<(u16, Option<u64>)>,
    /// How many requests the fault applies to (None: until cleared).
    pub remaining: Option<u32>,
}

#[derive(Default)]
pub struct Fake {
    calls: Mutex<Vec<Call>>,
    /// Effects performed: one per idempotency key (key -> refund object or accepted dispute).
    effects: Mutex<HashMap<String, Value>>,
    closed: Mutex<BTreeSet<String>>,
    fault: Mutex<Fault>,
}

impl Fake {
    /// Starts the fake; returns it and its base URL.
    pub async fn start() -> anyhow::Result<(Arc<Fake>, String)> {
        let fake = Arc::new(Fake::default());
        let app = Router::new().fallback(endpoint).with_state(fake.clone());
        let inner = TcpListener::bind("127.0.0.1:0").await?;
        let inner_addr = inner.local_addr()?;
        tokio::spawn(async move { axum::serve(inner, app).await });
        let outer = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", outer.local_addr()?);
        let proxy = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = outer.accept().await {
                let fake = proxy.clone();
                tokio::spawn(async move { fake.forward(stream, inner_addr).await });
            }
        });
        Ok((fake, url))
    }

    async fn forward(&self, mut stream: TcpStream, inner: SocketAddr) {
        if self.take_reset() {
            // Linger 0: close sends RST, as a middlebox or a crashing processor would.
            let _ = stream.set_zero_linger();
            drop(stream);
            return;
        }
        if let Ok(mut backend) = TcpStream::connect(inner).await {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut backend).await;
        }
    }

    fn take_reset(&self) -> bool {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        if !fault.reset {
            return false;
        }
        consume(&mut fault);
        true
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    pub fn clear_fault(&self) {
        self.set_fault(Fault::default());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Effects performed (one per idempotency key).
    pub fn effects(&self) -> usize {
        self.effects.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Money-moving calls grouped by what they act on: target -> the idempotency keys used.
    pub fn keys_by_target(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for call in self.calls().iter().filter(|c| c.moves_money() && c.status < 300) {
            let what = if call.is_refund() { "refund" } else { "accept" };
            out.entry(format!("{what}:{}", call.target))
                .or_default()
                .insert(call.idempotency_key.clone());
        }
        out
    }
}

fn consume(fault: &mut Fault) {
    if let Some(n) = fault.remaining.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            *fault = Fault::default();
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn form_field(body: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn endpoint(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    let idempotency_key = header(&headers, "idempotency-key");
    let (delay, status) = {
        let mut fault = fake.fault.lock().unwrap_or_else(|e| e.into_inner());
        let out = (fault.delay, fault.status);
        if fault.status.is_some() || !fault.delay.is_zero() {
            consume(&mut fault);
        }
        out
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let json_body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let target = if path == "/v1/refunds" && method == Method::POST {
        form_field(&body, "payment_intent")
            .or_else(|| form_field(&body, "charge"))
            .unwrap_or_default()
    } else if let Some(rest) = path.strip_prefix("/v1/disputes/") {
        rest.trim_end_matches("/close").to_owned()
    } else if let Some(rest) = path.strip_prefix("/adyen/checkout/payments/") {
        rest.trim_end_matches("/refunds").to_owned()
    } else {
        json_body["disputePspReference"].as_str().unwrap_or_default().to_owned()
    };
    let mut call = Call {
        method: method.to_string(),
        path: path.clone(),
        idempotency_key: idempotency_key.clone(),
        target: target.clone(),
        at: Instant::now(),
        status: 200,
    };
    if let Some((code, retry_after)) = status {
        call.status = code;
        fake.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            code,
            axum::Json(json!({"error": {"type": "api_error", "code": "harness_fault"}})),
        )
            .into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
            .headers_mut()
            .insert("connection", axum::http::HeaderValue::from_static("close"));
        return response;
    }
    let (code, answer) = answer(
        &fake,
        &method,
        &uri,
        &path,
        &body,
        &json_body,
        &idempotency_key,
        &target,
    );
    call.status = code.as_u16();
    fake.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    let mut response = (code, axum::Json(answer)).into_response();
    // One request per connection, so that a reset fault hits requests rather than only new connections.
    response
        .headers_mut()
        .insert("connection", axum::http::HeaderValue::from_static("close"));
    response
}

#[allow(clippy::too_many_arguments)]
fn answer(
    fake: &Fake,
    method: &Method,
    uri: &Uri,
    path: &str,
    body: &str,
    json_body: &Value,
    key: &str,
    target: &str,
) -> (StatusCode, Value) {
    let missing = json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}});
    let mut effects = fake.effects.lock().unwrap_or_else(|e| e.into_inner());
    if *method == Method::GET {
        if path == "/v1/refunds" {
            let payment = uri
                .query()
                .and_then(|q| form_field(q, "payment_intent").or_else(|| form_field(q, "charge")))
                .unwrap_or_default();
            let data: Vec<Value> = effects
                .values()
                .filter(|r| r["object"] == "refund" && r["payment_intent"].as_str() == Some(payment.as_str()))
                .cloned()
                .collect();
            return (
                StatusCode::OK,
                json!({"object": "list", "has_more": false, "data": data}),
            );
        }
        if path == "/v1/disputes" {
            return (StatusCode::OK, json!({"object": "list", "has_more": false, "data": []}));
        }
        if let Some(id) = path.strip_prefix("/v1/disputes/") {
            let closed = fake.closed.lock().unwrap_or_else(|e| e.into_inner()).contains(id);
            let status = if closed { "lost" } else { "needs_response" };
            return (StatusCode::OK, json!({"id": id, "object": "dispute", "status": status}));
        }
        return (StatusCode::NOT_FOUND, missing);
    }
    if path == "/v1/refunds" {
        let dispute = form_field(body, "metadata[verdict_dispute_id]");
        let next = format!("re_h{}", effects.len() + 1);
        let refund = effects.entry(key.to_owned()).or_insert_with(|| {
            json!({"id": next, "object": "refund", "status": "succeeded", "payment_intent": target,
                   "metadata": {"verdict_dispute_id": dispute}})
        });
        return (StatusCode::OK, refund.clone());
    }
    if path.starts_with("/v1/disputes/") && path.ends_with("/close") {
        effects
            .entry(key.to_owned())
            .or_insert_with(|| json!({"object": "dispute", "id": target}));
        fake.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target.to_owned());
        return (
            StatusCode::OK,
            json!({"id": target, "object": "dispute", "status": "lost"}),
        );
    }
    if path.starts_with("/adyen/checkout/payments/") && path.ends_with("/refunds") {
        let next = format!("RF{:014}", effects.len() + 1);
        let refund = effects.entry(key.to_owned()).or_insert_with(|| {
            json!({"object": "refund", "pspReference": next, "paymentPspReference": target, "status": "received",
                   "amount": json_body["amount"]})
        });
        return (StatusCode::CREATED, refund.clone());
    }
    if path.starts_with("/adyen/disputes/") {
        effects
            .entry(key.to_owned())
            .or_insert_with(|| json!({"object": "dispute", "id": target}));
        return (StatusCode::OK, json!({"disputeServiceResult": {"success": true}}));
    }
    (StatusCode::NOT_FOUND, missing)
}
