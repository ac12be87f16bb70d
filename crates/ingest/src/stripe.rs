//! Stripe webhooks: `Stripe-Signature` verification and `charge.dispute.*` / `radar.early_fraud_warning.*`
//! events.
//!
//! Stripe models an inquiry as a dispute whose status starts with `warning_` (and, on newer API versions,
//! `payment_method_details.card.case_type = inquiry`), so the stage is derived from both.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use verdict_domain::facts::{ReferenceKind, TaggedReference};
use verdict_domain::{CardNetwork, Processor, ReasonCode, Stage};

use crate::common::{at, int_at, money_minor, network_from_brand, owned, parse_json, required, str_at, unix_seconds};
use crate::model::{Notification, NotificationKind, ParseError, Parsed};
use crate::signature::{SignatureError, sign_timestamped, verify_timestamped};

/// Verifies a `Stripe-Signature` header (`t=...,v1=...[,v1=...][,v0=...]`) over the raw body.
///
/// `secrets` are the endpoint's signing secrets (`whsec_...`); any one matching is enough, which allows
/// rotation. `tolerance` is usually [`crate::DEFAULT_TOLERANCE`] and applies to both past and future.
pub fn verify_stripe(
    header: &str,
    body: &[u8],
    secrets: &[String],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_timestamped(header, body, secrets, now, tolerance)
}

/// The `Stripe-Signature` value Stripe would send for `body` at `timestamp`; for tests and local simulators.
pub fn sign_stripe(body: &[u8], secret: &str, timestamp: i64) -> Result<String, SignatureError> {
    sign_timestamped(body, secret, timestamp)
}

/// Parses one Stripe event. A Stripe webhook always carries exactly one event; the `Vec` keeps the same
/// shape as the processors that batch.
pub fn parse_stripe(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    parse_stripe_unescaped(body).map(crate::model::without_nul)
}

fn parse_stripe_unescaped(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let event = parse_json(body)?;
    if !event.is_object() {
        return Err(ParseError::invalid("event", "not a JSON object"));
    }
    let event_id = required(&event, &["id"])?.to_owned();
    let event_type = required(&event, &["type"])?.to_owned();
    let parsed = match event_type.as_str() {
        "charge.dispute.created"
        | "charge.dispute.updated"
        | "charge.dispute.closed"
        | "charge.dispute.funds_withdrawn"
        | "charge.dispute.funds_reinstated" => Parsed::Dispute(dispute(&event, event_id, event_type)?),
        "radar.early_fraud_warning.created" | "radar.early_fraud_warning.updated" => {
            Parsed::Dispute(early_fraud_warning(&event, event_id, event_type)?)
        }
        _ => Parsed::Ignored { event_id, event_type },
    };
    Ok(vec![parsed])
}

fn occurred_at(event: &Value) -> Result<DateTime<Utc>, ParseError> {
    let created = int_at(event, &["created"]).ok_or_else(|| ParseError::missing("created"))?;
    unix_seconds(created).ok_or_else(|| ParseError::invalid("created", "timestamp out of range"))
}

fn data_object(event: &Value) -> Result<&Value, ParseError> {
    at(event, &["data", "object"])
        .filter(|o| o.is_object())
        .ok_or_else(|| ParseError::missing("data.object"))
}

/// A field that may be an id string or an expanded object with an `id`.
fn id_or_object(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        obj @ Value::Object(_) => owned(obj, &["id"]),
        _ => None,
    }
}

/// Brand from the dispute's own card details, else from an expanded charge (current or legacy shape).
fn network(object: &Value) -> Option<CardNetwork> {
    let charge = object.get("charge").filter(|c| c.is_object());
    let brand = str_at(object, &["payment_method_details", "card", "brand"])
        .or_else(|| charge.and_then(|c| str_at(c, &["payment_method_details", "card", "brand"])))
        .or_else(|| charge.and_then(|c| str_at(c, &["source", "brand"])))
        .or_else(|| charge.and_then(|c| str_at(c, &["card", "brand"])))
        .or_else(|| charge.and_then(|c| str_at(c, &["card", "type"])))?;
    Some(network_from_brand(brand).unwrap_or(CardNetwork::Other))
}

fn is_inquiry(object: &Value) -> bool {
    let status = str_at(object, &["status"]).unwrap_or_default();
    status.starts_with("warning_")
        || str_at(object, &["payment_method_details", "card", "case_type"]) == Some("inquiry")
}

fn order_reference(object: &Value) -> Option<String> {
    owned(object, &["metadata", "order_id"]).or_else(|| {
        ["charge", "payment_intent"].into_iter().find_map(|key| {
            object
                .get(key)
                .filter(|c| c.is_object())
                .and_then(|c| owned(c, &["metadata", "order_id"]))
        })
    })
}

/// Every reference the order may be known by: `metadata[order_id]` (the dispute's, or an expanded charge's or
/// payment intent's), the charge and the payment intent (an expanded charge names its payment intent).
fn references(object: &Value) -> Vec<TaggedReference> {
    let mut references = Vec::new();
    if let Some(order) = order_reference(object) {
        references.push(TaggedReference::new(ReferenceKind::OrderId, order));
    }
    if let Some(charge) = id_or_object(object, "charge") {
        references.push(TaggedReference::new(ReferenceKind::Charge, charge));
    }
    let intent = id_or_object(object, "payment_intent").or_else(|| {
        object
            .get("charge")
            .filter(|c| c.is_object())
            .and_then(|c| id_or_object(c, "payment_intent"))
    });
    if let Some(intent) = intent {
        references.push(TaggedReference::new(ReferenceKind::PaymentIntent, intent));
    }
    references
}

fn dispute(event: &Value, event_id: String, event_type: String) -> Result<Notification, ParseError> {
    let object = data_object(event)?;
    let status = owned(object, &["status"]);
    // Disputes from before 2014 had no id of their own and were identified by their charge.
    let processor_dispute_id = owned(object, &["id"])
        .or_else(|| id_or_object(object, "charge"))
        .ok_or_else(|| ParseError::missing("data.object.id"))?;
    let inquiry = is_inquiry(object);
    let stage = Some(if inquiry { Stage::Inquiry } else { Stage::Chargeback });
    let status_str = status.as_deref().unwrap_or_default();
    let kind = match event_type.as_str() {
        "charge.dispute.created" if inquiry => NotificationKind::Inquiry,
        "charge.dispute.created" => NotificationKind::ChargebackOpened,
        "charge.dispute.funds_withdrawn" => NotificationKind::FundsWithdrawn,
        "charge.dispute.funds_reinstated" => NotificationKind::FundsReinstated,
        _ => match status_str {
            "won" => NotificationKind::Won,
            "lost" => NotificationKind::Lost,
            // An inquiry closed without becoming a chargeback, or a dispute stopped by a pre-dispute alert.
            "warning_closed" | "prevented" => NotificationKind::Withdrawn,
            // The merchant refunded instead of fighting: the loss is accepted.
            "charge_refunded" => NotificationKind::Accepted,
            "needs_response" | "warning_needs_response" => NotificationKind::EvidenceRequired,
            "under_review" | "warning_under_review" => NotificationKind::UnderReview,
            _ => NotificationKind::InformationOnly,
        },
    };
    let network = network(object);
    let processor_reason = owned(object, &["reason"]);
    let network_code = owned(object, &["payment_method_details", "card", "network_reason_code"]);
    let (reason_code_raw, reason_code) = match network_code {
        Some(code) => {
            let normalised = network
                .filter(|n| *n != CardNetwork::Other)
                .and_then(|n| ReasonCode::parse(n, &code).ok())
                .or_else(|| generic_reason(processor_reason.as_deref()));
            (Some(code), normalised)
        }
        None => (processor_reason.clone(), generic_reason(processor_reason.as_deref())),
    };
    // Stripe sends 0 or null when there is no deadline; 2013-era events used `evidence_due_by`.
    let due_by = int_at(object, &["evidence_details", "due_by"])
        .or_else(|| int_at(object, &["evidence_due_by"]))
        .filter(|t| *t > 0)
        .and_then(unix_seconds);
    Ok(Notification {
        processor: Processor::Stripe,
        event_id,
        event_type,
        processor_dispute_id,
        kind,
        stage,
        amount: money_minor(int_at(object, &["amount"]), str_at(object, &["currency"])),
        network,
        reason_code_raw,
        reason_code,
        processor_reason,
        due_by,
        payment_reference: id_or_object(object, "charge").or_else(|| id_or_object(object, "payment_intent")),
        order_reference: order_reference(object),
        references: references(object),
        occurred_at: occurred_at(event)?,
        raw_status: status,
    })
}

fn generic_reason(reason: Option<&str>) -> Option<ReasonCode> {
    ReasonCode::parse(CardNetwork::Other, reason?).ok()
}

fn early_fraud_warning(event: &Value, event_id: String, event_type: String) -> Result<Notification, ParseError> {
    let object = data_object(event)?;
    let fraud_type = owned(object, &["fraud_type"]);
    Ok(Notification {
        processor: Processor::Stripe,
        event_id,
        event_type,
        processor_dispute_id: required(object, &["id"])?.to_owned(),
        kind: NotificationKind::EarlyFraudWarning,
        stage: Some(Stage::PreDispute),
        // An early fraud warning carries no amount; the charge has it.
        amount: None,
        network: network(object),
        reason_code_raw: fraud_type.clone(),
        // Every early fraud warning is a fraud report, whatever its fraud_type, so it triages as fraud.
        reason_code: generic_reason(Some("fraudulent")),
        processor_reason: fraud_type,
        due_by: None,
        payment_reference: id_or_object(object, "charge").or_else(|| id_or_object(object, "payment_intent")),
        order_reference: order_reference(object),
        references: references(object),
        occurred_at: occurred_at(event)?,
        raw_status: object
            .get("actionable")
            .and_then(Value::as_bool)
            .map(|a| if a { "actionable" } else { "not_actionable" }.to_owned()),
    })
}
