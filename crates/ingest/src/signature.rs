//! The one error type for authenticating webhooks, and the timestamped HMAC-SHA256 scheme shared by Stripe
//! and Verdict's own alert feed.
//!
//! Every comparison of a secret-derived value goes through `Mac::verify_slice`, which is constant time, so
//! a forger learns nothing from how long a rejection takes.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Stripe's documented default, also used for alerts: 5 minutes either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::seconds(300);

/// Why a webhook was not accepted as authentic. Every variant means "reject with 4xx and do not parse".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature element: {0}")]
    Missing(&'static str),
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp {timestamp} is older than the tolerance at {now}")]
    TooOld { timestamp: i64, now: i64 },
    #[error("timestamp {timestamp} is in the future beyond the tolerance at {now}")]
    InFuture { timestamp: i64, now: i64 },
    #[error("invalid verification key: {0}")]
    InvalidKey(String),
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("certificate URL not allowed: {0:?}")]
    CertUrlNotAllowed(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
}

pub(crate) type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac_sha256(key: &[u8]) -> Result<HmacSha256, SignatureError> {
    <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|e| SignatureError::InvalidKey(e.to_string()))
}

/// A parsed `t=...,v1=...,v1=...` header; unknown schemes such as Stripe's legacy `v0` are ignored.
struct TimestampedHeader {
    timestamp: i64,
    signatures: Vec<Vec<u8>>,
}

fn parse_header(header: &str) -> Result<TimestampedHeader, SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::Missing("signature header"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                let t = value.trim().parse::<i64>().map_err(|_| {
                    SignatureError::Malformed(format!("timestamp {:?} is not an integer", value.trim()))
                })?;
                timestamp = Some(t);
            }
            // A v1 that is not hex cannot match; skip it rather than fail, another v1 may be valid.
            "v1" => {
                if let Ok(bytes) = hex::decode(value.trim()) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Missing("t"))?;
    if signatures.is_empty() {
        return Err(SignatureError::Missing("v1"));
    }
    Ok(TimestampedHeader { timestamp, signatures })
}

/// Verifies `t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>` against any of `secrets` (several are
/// accepted at once so a secret can be rotated without downtime), then checks `t` is within `tolerance` of
/// `now` in both directions. The signature is checked first so an attacker cannot probe the clock.
pub(crate) fn verify_timestamped(
    header: &str,
    body: &[u8],
    secrets: &[String],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let parsed = parse_header(header)?;
    if secrets.is_empty() {
        return Err(SignatureError::InvalidKey("no secret configured".into()));
    }
    let mut matched = false;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut mac = hmac_sha256(secret.as_bytes())?;
        mac.update(parsed.timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // Check every candidate without early exit, so timing does not reveal which secret matched.
        for signature in &parsed.signatures {
            matched |= mac.clone().verify_slice(signature).is_ok();
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let now_secs = now.timestamp();
    let tolerance = tolerance.num_seconds().abs();
    if parsed.timestamp < now_secs.saturating_sub(tolerance) {
        return Err(SignatureError::TooOld {
            timestamp: parsed.timestamp,
            now: now_secs,
        });
    }
    if parsed.timestamp > now_secs.saturating_add(tolerance) {
        return Err(SignatureError::InFuture {
            timestamp: parsed.timestamp,
            now: now_secs,
        });
    }
    Ok(())
}

/// The header value that [`verify_timestamped`] accepts, for senders and tests.
pub(crate) fn sign_timestamped(body: &[u8], secret: &str, timestamp: i64) -> Result<String, SignatureError> {
    let mut mac = hmac_sha256(secret.as_bytes())?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes())))
}
