//! Verdict's own pre-dispute alert feed (Verifi CDRN / RDR, Ethoca), documented in `ALERTS.md`.
//!
//! Alert networks have no common wire format, so an adapter in front of Verdict translates them into one
//! small JSON document and signs it like Stripe does (`Verdict-Signature: t=...,v1=...`). An alert is the
//! last chance to refund before a chargeback, so it maps to [`NotificationKind::PreDisputeAlert`] at
//! [`Stage::PreDispute`] with its (short) response deadline.

use chrono::{DateTime, Duration, Utc};
use verdict_domain::facts::{ReferenceKind, TaggedReference};
use verdict_domain::{Processor, Stage};

use crate::common::{
    int_at, money_minor, network_from_brand, owned, parse_json, reason_code, required, required_time, rfc3339, str_at,
};
use crate::model::{Notification, NotificationKind, ParseError, Parsed};
use crate::signature::{SignatureError, sign_timestamped, verify_timestamped};

/// The HTTP header carrying the alert signature.
pub const ALERT_SIGNATURE_HEADER: &str = "Verdict-Signature";

/// Verifies `Verdict-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`.
pub fn verify_alert(
    header: &str,
    body: &[u8],
    secrets: &[String],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_timestamped(header, body, secrets, now, tolerance)
}

/// The `Verdict-Signature` value for `body` at `timestamp`, for alert adapters and tests.
pub fn sign_alert(body: &[u8], secret: &str, timestamp: i64) -> Result<String, SignatureError> {
    sign_timestamped(body, secret, timestamp)
}

const PROVIDERS: &[&str] = &["verifi_cdrn", "verifi_rdr", "ethoca"];

/// Parses one alert document (see `ALERTS.md`).
pub fn parse_alert(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    parse_alert_unescaped(body).map(crate::model::without_nul)
}

fn parse_alert_unescaped(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let doc = parse_json(body)?;
    if !doc.is_object() {
        return Err(ParseError::invalid("alert", "not a JSON object"));
    }
    let alert_id = required(&doc, &["alert_id"])?;
    let event_type = required(&doc, &["type"])?.to_owned();
    let provider = required(&doc, &["provider"])?;
    if !PROVIDERS.contains(&provider) {
        return Err(ParseError::invalid(
            "provider",
            format!("expected one of {PROVIDERS:?}, got {provider:?}"),
        ));
    }
    let occurred_at_text = str_at(&doc, &["occurred_at"]);
    let event_id = owned(&doc, &["event_id"]).unwrap_or_else(|| {
        format!(
            "{provider}:{alert_id}:{event_type}:{}",
            occurred_at_text.unwrap_or_default()
        )
    });
    let outcome = str_at(&doc, &["outcome"]);
    let kind = match event_type.as_str() {
        "alert.created" | "alert.updated" => NotificationKind::PreDisputeAlert,
        // A refunded alert is a dispute avoided by giving the money back: the loss is accepted.
        "alert.resolved" => match outcome {
            Some("refunded") => NotificationKind::Accepted,
            Some("declined") | None => NotificationKind::InformationOnly,
            Some(other) => {
                return Err(ParseError::invalid("outcome", format!("unknown outcome {other:?}")));
            }
        },
        _ => return Ok(vec![Parsed::Ignored { event_id, event_type }]),
    };
    let processor = match str_at(&doc, &["processor"]) {
        Some(p) => p
            .parse::<Processor>()
            .map_err(|e| ParseError::invalid("processor", e.to_string()))?,
        None => Processor::Manual,
    };
    let network = match str_at(&doc, &["card_network"]) {
        Some(n) => Some(network_from_brand(n).ok_or_else(|| ParseError::invalid("card_network", format!("{n:?}")))?),
        None => None,
    };
    let reason_code_raw = owned(&doc, &["reason_code"]);
    let due_by = match str_at(&doc, &["respond_by"]) {
        Some(t) => Some(rfc3339(t).ok_or_else(|| ParseError::invalid("respond_by", "not an RFC 3339 timestamp"))?),
        None => None,
    };
    Ok(vec![Parsed::Dispute(Notification {
        processor,
        event_id,
        event_type,
        processor_dispute_id: owned(&doc, &["processor_dispute_id"]).unwrap_or_else(|| alert_id.to_owned()),
        kind,
        stage: Some(Stage::PreDispute),
        amount: money_minor(
            int_at(&doc, &["amount", "minor_units"]),
            str_at(&doc, &["amount", "currency"]),
        ),
        network,
        reason_code: reason_code(network, reason_code_raw.as_deref()),
        reason_code_raw,
        processor_reason: Some(provider.to_owned()),
        due_by,
        payment_reference: owned(&doc, &["payment_reference"]),
        order_reference: owned(&doc, &["order_reference"]),
        references: [
            (ReferenceKind::OrderReference, owned(&doc, &["order_reference"])),
            (ReferenceKind::PaymentReference, owned(&doc, &["payment_reference"])),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.map(|v| TaggedReference::new(kind, v)))
        .collect(),
        occurred_at: required_time(occurred_at_text, "occurred_at")?,
        raw_status: outcome.map(str::to_owned),
    })])
}
