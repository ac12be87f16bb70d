//! Adyen "Standard webhook" notifications: per-item HMAC verification and dispute event codes.
//!
//! Adyen batches several `NotificationRequestItem`s in one POST and signs each item separately (not the
//! body), so verification and parsing both work item by item. Balance Platform webhooks are signed over the
//! raw body instead ([`verify_adyen_raw_body`]); their `balancePlatform.dispute.*` events concern disputes
//! raised by a platform's own cardholders (issuing), not chargebacks against us, so they are ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::Mac;
use serde_json::Value;
use verdict_domain::facts::{ReferenceKind, TaggedReference};
use verdict_domain::{Processor, Stage};

use crate::common::{
    at, int_at, money_minor, network_from_brand, owned, parse_json, reason_code, required_time, str_at,
};
use crate::model::{Notification, NotificationKind, ParseError, Parsed};
use crate::signature::{SignatureError, hmac_sha256};

/// Accepts either `{"NotificationRequestItem": {...}}` or the inner item.
fn inner(item: &Value) -> &Value {
    item.get("NotificationRequestItem").unwrap_or(item)
}

/// A scalar rendered the way Adyen's SDKs concatenate it: strings as-is, numbers and booleans as text.
fn scalar(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`,
/// missing fields empty and, as in current SDKs, no escaping.
pub fn adyen_signing_string(item: &Value) -> String {
    let item = inner(item);
    [
        scalar(item.get("pspReference")),
        scalar(item.get("originalReference")),
        scalar(item.get("merchantAccountCode")),
        scalar(item.get("merchantReference")),
        scalar(at(item, &["amount", "value"])),
        scalar(at(item, &["amount", "currency"])),
        scalar(item.get("eventCode")),
        scalar(item.get("success")),
    ]
    .join(":")
}

fn decode_key(hex_key: &str) -> Result<Vec<u8>, SignatureError> {
    let key =
        hex::decode(hex_key.trim()).map_err(|e| SignatureError::InvalidKey(format!("HMAC key is not hex: {e}")))?;
    if key.is_empty() {
        return Err(SignatureError::InvalidKey("empty HMAC key".into()));
    }
    Ok(key)
}

/// Base64 HMAC-SHA256 of `data` with the hex-encoded key, the primitive behind every Adyen scheme.
pub fn adyen_hmac(hex_key: &str, data: &[u8]) -> Result<String, SignatureError> {
    let mut mac = hmac_sha256(&decode_key(hex_key)?)?;
    mac.update(data);
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

/// The signature Adyen would put in `additionalData.hmacSignature` for this item.
pub fn adyen_item_signature(item: &Value, hex_key: &str) -> Result<String, SignatureError> {
    adyen_hmac(hex_key, adyen_signing_string(item).as_bytes())
}

fn verify_base64(hex_key: &str, data: &[u8], signature_b64: &str) -> Result<(), SignatureError> {
    let signature = BASE64
        .decode(signature_b64.trim())
        .map_err(|e| SignatureError::Malformed(format!("signature is not base64: {e}")))?;
    let mut mac = hmac_sha256(&decode_key(hex_key)?)?;
    mac.update(data);
    mac.verify_slice(&signature).map_err(|_| SignatureError::Mismatch)
}

/// Verifies one `NotificationRequestItem` against its `additionalData.hmacSignature`.
pub fn verify_adyen_item(item: &Value, hex_key: &str) -> Result<(), SignatureError> {
    let signature = str_at(inner(item), &["additionalData", "hmacSignature"])
        .ok_or(SignatureError::Missing("additionalData.hmacSignature"))?;
    verify_base64(hex_key, adyen_signing_string(item).as_bytes(), signature)
}

/// Verifies every item of a classic notification body; one bad item rejects the whole batch, because
/// Adyen will redeliver the batch as a unit.
pub fn verify_adyen_notification(body: &[u8], hex_key: &str) -> Result<(), SignatureError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| SignatureError::Malformed(format!("body is not JSON: {e}")))?;
    let items = value
        .get("notificationItems")
        .and_then(Value::as_array)
        .ok_or(SignatureError::Missing("notificationItems"))?;
    if items.is_empty() {
        return Err(SignatureError::Missing("notificationItems"));
    }
    items.iter().try_for_each(|item| verify_adyen_item(item, hex_key))
}

/// Verifies a Balance Platform / management webhook: HMAC-SHA256 of the exact body, header `HmacSignature`.
pub fn verify_adyen_raw_body(body: &[u8], hmac_signature_header: &str, hex_key: &str) -> Result<(), SignatureError> {
    if hmac_signature_header.trim().is_empty() {
        return Err(SignatureError::Missing("HmacSignature header"));
    }
    verify_base64(hex_key, body, hmac_signature_header)
}

/// The exact bytes of each entry of a classic body's `notificationItems`, in order; `None` for any other
/// body. Adyen signs item by item, so each entry is a self-contained, verifiable record of its notification.
pub fn adyen_raw_items(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(rename = "notificationItems", borrow)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    let batch: Batch<'_> = serde_json::from_slice(body).ok()?;
    Some(
        batch
            .items
            .into_iter()
            .map(|raw| raw.get().as_bytes().to_vec())
            .collect(),
    )
}

/// Parses a classic notification body (`notificationItems`), one result per item in order.
pub fn parse_adyen(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    parse_adyen_unescaped(body).map(crate::model::without_nul)
}

fn parse_adyen_unescaped(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let value = parse_json(body)?;
    if let Some(items) = value.get("notificationItems") {
        let items = items
            .as_array()
            .ok_or_else(|| ParseError::invalid("notificationItems", "not an array"))?;
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_item(inner(item)).map_err(|e| prefix(i, e)))
            .collect();
    }
    // Balance Platform format: {"type": ..., "data": {...}}.
    if let Some(event_type) = str_at(&value, &["type"]) {
        let id = str_at(&value, &["data", "id"]).unwrap_or_default();
        let stamp = str_at(&value, &["timestamp"]).unwrap_or_default();
        return Ok(vec![Parsed::Ignored {
            event_id: format!("{id}:{event_type}:{stamp}"),
            event_type: event_type.to_owned(),
        }]);
    }
    Err(ParseError::missing("notificationItems"))
}

fn prefix(index: usize, error: ParseError) -> ParseError {
    match error {
        ParseError::MissingField(f) => ParseError::MissingField(format!("notificationItems[{index}].{f}")),
        ParseError::InvalidField { field, reason } => ParseError::InvalidField {
            field: format!("notificationItems[{index}].{field}"),
            reason,
        },
        other => other,
    }
}

fn parse_item(item: &Value) -> Result<Parsed, ParseError> {
    if !item.is_object() {
        return Err(ParseError::invalid("NotificationRequestItem", "not an object"));
    }
    let event_code = str_at(item, &["eventCode"]).ok_or_else(|| ParseError::missing("eventCode"))?;
    let psp = str_at(item, &["pspReference"]).ok_or_else(|| ParseError::missing("pspReference"))?;
    let event_date = str_at(item, &["eventDate"]);
    // Adyen has no event id; these three together identify a delivery of one event.
    let event_id = format!("{psp}:{event_code}:{}", event_date.unwrap_or_default());
    let dispute_status = str_at(item, &["additionalData", "disputeStatus"]);
    use NotificationKind as K;
    let (kind, stage) = match event_code {
        "REQUEST_FOR_INFORMATION" => (K::Inquiry, Some(Stage::Inquiry)),
        "NOTIFICATION_OF_FRAUD" => (K::EarlyFraudWarning, Some(Stage::PreDispute)),
        "NOTIFICATION_OF_CHARGEBACK" | "CHARGEBACK" => (K::ChargebackOpened, Some(Stage::Chargeback)),
        "CHARGEBACK_REVERSED" => (K::Reversed, Some(Stage::Chargeback)),
        "SECOND_CHARGEBACK" | "PREARBITRATION_OPEN" => (K::PreArbitrationOpened, Some(Stage::PreArbitration)),
        "PREARBITRATION_WON" => (K::PreArbitrationWon, Some(Stage::PreArbitration)),
        "PREARBITRATION_LOST" => (K::PreArbitrationLost, Some(Stage::PreArbitration)),
        "PREARBITRATION_ACCEPTED" => (K::Accepted, Some(Stage::PreArbitration)),
        "PREARBITRATION_DECLINED" => (K::UnderReview, Some(Stage::PreArbitration)),
        "PREARBITRATION_ISSUER_WITHDRAWN" => (K::Withdrawn, Some(Stage::PreArbitration)),
        "SCHEME_ARBITRATION" => (K::UnderReview, Some(Stage::Arbitration)),
        "SCHEME_ARBITRATION_WON" => (K::Won, Some(Stage::Arbitration)),
        "SCHEME_ARBITRATION_LOST" => (K::Lost, Some(Stage::Arbitration)),
        "INFORMATION_SUPPLIED" | "ISSUER_COMMENTS" => (K::InformationOnly, None),
        // The issuer let its own deadline pass: the dispute is decided in our favour.
        "ISSUER_RESPONSE_TIMEFRAME_EXPIRED" => (K::Won, None),
        "DISPUTE_DEFENSE_PERIOD_ENDED" => (defense_period_ended(dispute_status), None),
        _ => {
            return Ok(Parsed::Ignored {
                event_id,
                event_type: event_code.to_owned(),
            });
        }
    };
    let network = str_at(item, &["paymentMethod"])
        .and_then(network_from_brand)
        .or_else(|| str_at(item, &["additionalData", "chargebackSchemeCode"]).and_then(network_from_brand))
        .or_else(|| str_at(item, &["additionalData", "nofSchemeCode"]).and_then(network_from_brand));
    let reason_code_raw = owned(item, &["additionalData", "chargebackReasonCode"])
        .or_else(|| owned(item, &["additionalData", "nofReasonCode"]));
    Ok(Parsed::Dispute(Notification {
        processor: Processor::Adyen,
        event_id,
        event_type: event_code.to_owned(),
        processor_dispute_id: psp.to_owned(),
        kind,
        stage,
        amount: money_minor(
            int_at(item, &["amount", "value"]),
            str_at(item, &["amount", "currency"]),
        ),
        network,
        reason_code: reason_code(network, reason_code_raw.as_deref()),
        reason_code_raw,
        processor_reason: owned(item, &["reason"]),
        due_by: str_at(item, &["additionalData", "defensePeriodEndsAt"]).and_then(crate::common::rfc3339),
        payment_reference: owned(item, &["originalReference"]),
        order_reference: owned(item, &["merchantReference"]),
        references: references(item),
        occurred_at: required_time(event_date, "eventDate")?,
        raw_status: dispute_status.map(str::to_owned),
    }))
}

/// The merchant reference (the order) and the PSP references of the payment and its capture; the capture's
/// merchant reference too, which merchants often set to the order number as well.
fn references(item: &serde_json::Value) -> Vec<TaggedReference> {
    let found = [
        (ReferenceKind::MerchantReference, &["merchantReference"][..]),
        (
            ReferenceKind::MerchantReference,
            &["additionalData", "captureMerchantReference"][..],
        ),
        (ReferenceKind::PspReference, &["originalReference"][..]),
        (
            ReferenceKind::PspReference,
            &["additionalData", "capturePspReference"][..],
        ),
    ];
    found
        .into_iter()
        .filter_map(|(kind, path)| owned(item, path).map(|value| TaggedReference::new(kind, value)))
        .collect()
}

/// The defence window closed; `disputeStatus` says how it ended. Without a known outcome the merchant simply
/// did not respond in time, which is an expiry.
fn defense_period_ended(status: Option<&str>) -> NotificationKind {
    match status.map(str::to_ascii_lowercase).as_deref() {
        Some("won") => NotificationKind::Won,
        Some("lost") => NotificationKind::Lost,
        Some("accepted") => NotificationKind::Accepted,
        Some("pending" | "responded") => NotificationKind::UnderReview,
        _ => NotificationKind::Expired,
    }
}
