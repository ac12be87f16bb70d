//! PayPal webhooks: RSA-SHA256 transmission signatures and `CUSTOMER.DISPUTE.*` events.
//!
//! PayPal signs `transmission_id|transmission_time|webhook_id|crc32(body)` with the key of a certificate
//! it hosts at `PAYPAL-CERT-URL`. Fetching and caching that certificate is the caller's job (this crate
//! does no I/O); [`paypal_cert_url_allowed`] decides whether the URL may be fetched at all, since an
//! attacker who picks the certificate picks the key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use verdict_domain::facts::{ReferenceKind, TaggedReference};
use verdict_domain::{CardNetwork, Processor, ReasonCode, Stage};

use crate::common::{money_decimal, owned, parse_json, required, required_time, rfc3339, str_at};
use crate::model::{Notification, NotificationKind, ParseError, Parsed};
use crate::signature::SignatureError;

/// The PayPal headers of one delivery, as plain strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaypalTransmission<'a> {
    /// `PAYPAL-TRANSMISSION-ID`
    pub transmission_id: &'a str,
    /// `PAYPAL-TRANSMISSION-TIME`
    pub transmission_time: &'a str,
    /// `PAYPAL-TRANSMISSION-SIG` (base64)
    pub transmission_sig: &'a str,
    /// `PAYPAL-CERT-URL`
    pub cert_url: &'a str,
    /// `PAYPAL-AUTH-ALGO`, e.g. `SHA256withRSA`
    pub auth_algo: &'a str,
}

const PAYPAL_CERT_HOSTS: &[&str] = &[
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
];

/// Where PayPal serves its signing certificates, e.g.
/// `https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270`.
const PAYPAL_CERT_PATH: &str = "/v1/notifications/certs/";
/// Longer than any certificate name PayPal uses; bounds what a forged header can make us request.
const MAX_CERT_NAME: usize = 128;

/// True only for `https://` URLs whose host is exactly one of PayPal's API hosts (optionally `:443`) and
/// whose path has the shape of PayPal's certificate URLs: `/v1/notifications/certs/` and one name of letters,
/// digits, `-` and `_` (no further segments, no query, no fragment). Anything unusual (userinfo, other ports,
/// look-alike suffixes, escapes, other API paths) is refused rather than interpreted, so a forged header can
/// only ever point at a PayPal certificate.
pub fn paypal_cert_url_allowed(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') || authority.contains(['@', '%']) {
        return false;
    }
    let host = match authority.split_once(':') {
        Some((host, "443")) => host,
        Some(_) => return false,
        None => authority,
    };
    let host = host.to_ascii_lowercase();
    let Some(name) = path.strip_prefix(PAYPAL_CERT_PATH) else {
        return false;
    };
    PAYPAL_CERT_HOSTS.contains(&host.as_str())
        && (1..=MAX_CERT_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The first certificate of a PEM bundle (the leaf), as DER.
fn first_pem_certificate(pem: &[u8]) -> Result<Vec<u8>, SignatureError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem).map_err(|_| SignatureError::InvalidCertificate("PEM is not UTF-8".into()))?;
    let start = text
        .find(BEGIN)
        .ok_or_else(|| SignatureError::InvalidCertificate("no BEGIN CERTIFICATE".into()))?
        + BEGIN.len();
    let len = text[start..]
        .find(END)
        .ok_or_else(|| SignatureError::InvalidCertificate("no END CERTIFICATE".into()))?;
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    BASE64
        .decode(body)
        .map_err(|e| SignatureError::InvalidCertificate(format!("PEM body is not base64: {e}")))
}

/// Verifies a PayPal delivery against the PEM certificate fetched from `transmission.cert_url`.
///
/// The certificate's validity period and chain are not checked here: the caller must only ever fetch from
/// an allowed PayPal host over TLS, which is what vouches for it (and PayPal's published test vector uses
/// an expired certificate). No freshness window is applied to the transmission time either: replays are
/// harmless because notifications are deduplicated by event id.
pub fn verify_paypal(
    transmission: &PaypalTransmission<'_>,
    body: &[u8],
    webhook_id: &str,
    cert_pem: &[u8],
) -> Result<(), SignatureError> {
    for (value, name) in [
        (transmission.transmission_id, "PAYPAL-TRANSMISSION-ID"),
        (transmission.transmission_time, "PAYPAL-TRANSMISSION-TIME"),
        (transmission.transmission_sig, "PAYPAL-TRANSMISSION-SIG"),
        (transmission.cert_url, "PAYPAL-CERT-URL"),
        (transmission.auth_algo, "PAYPAL-AUTH-ALGO"),
    ] {
        if value.trim().is_empty() {
            return Err(SignatureError::Missing(name));
        }
    }
    if !transmission.auth_algo.trim().eq_ignore_ascii_case("SHA256withRSA") {
        return Err(SignatureError::UnsupportedAlgorithm(transmission.auth_algo.to_owned()));
    }
    if !paypal_cert_url_allowed(transmission.cert_url) {
        return Err(SignatureError::CertUrlNotAllowed(transmission.cert_url.to_owned()));
    }
    if webhook_id.trim().is_empty() {
        return Err(SignatureError::InvalidKey("empty webhook id".into()));
    }
    let signature = BASE64
        .decode(transmission.transmission_sig.trim())
        .map_err(|e| SignatureError::Malformed(format!("transmission signature is not base64: {e}")))?;
    let message = format!(
        "{}|{}|{}|{}",
        transmission.transmission_id,
        transmission.transmission_time,
        webhook_id,
        crc32fast::hash(body)
    );
    let der = CertificateDer::from(first_pem_certificate(cert_pem)?);
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|e| SignatureError::InvalidCertificate(format!("{e:?}")))?;
    cert.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Parses one PayPal webhook event.
pub fn parse_paypal(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    parse_paypal_unescaped(body).map(crate::model::without_nul)
}

fn parse_paypal_unescaped(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let event = parse_json(body)?;
    if !event.is_object() {
        return Err(ParseError::invalid("event", "not a JSON object"));
    }
    let event_id = required(&event, &["id"])?.to_owned();
    let event_type = required(&event, &["event_type"])?.to_owned();
    if !matches!(
        event_type.as_str(),
        "CUSTOMER.DISPUTE.CREATED" | "CUSTOMER.DISPUTE.UPDATED" | "CUSTOMER.DISPUTE.RESOLVED"
    ) {
        return Ok(vec![Parsed::Ignored { event_id, event_type }]);
    }
    let resource = event
        .get("resource")
        .filter(|r| r.is_object())
        .ok_or_else(|| ParseError::missing("resource"))?;
    let dispute_id = required(resource, &["dispute_id"])?.to_owned();
    let status = owned(resource, &["status"]);
    let stage = match str_at(resource, &["dispute_life_cycle_stage"]) {
        Some("INQUIRY") => Some(Stage::Inquiry),
        Some("CHARGEBACK") => Some(Stage::Chargeback),
        Some("PRE_ARBITRATION") => Some(Stage::PreArbitration),
        Some("ARBITRATION") => Some(Stage::Arbitration),
        _ => None,
    };
    let opened = match stage {
        Some(Stage::Inquiry) => NotificationKind::Inquiry,
        Some(Stage::PreArbitration | Stage::Arbitration) => NotificationKind::PreArbitrationOpened,
        _ => NotificationKind::ChargebackOpened,
    };
    let kind = match event_type.as_str() {
        "CUSTOMER.DISPUTE.CREATED" => opened,
        "CUSTOMER.DISPUTE.RESOLVED" => resolved(str_at(resource, &["dispute_outcome", "outcome_code"])),
        // UPDATED carries no "what changed"; the status says what is expected of us now. An update that is
        // still merely open is most often an escalation to the stage it now reports.
        _ => match status.as_deref() {
            Some("WAITING_FOR_SELLER_RESPONSE") => NotificationKind::EvidenceRequired,
            Some("UNDER_REVIEW" | "WAITING_FOR_BUYER_RESPONSE") => NotificationKind::UnderReview,
            Some("RESOLVED") => resolved(str_at(resource, &["dispute_outcome", "outcome_code"])),
            _ => opened,
        },
    };
    let transaction = resource
        .get("disputed_transactions")
        .and_then(Value::as_array)
        .and_then(|t| t.first());
    let reason = owned(resource, &["reason"]);
    let occurred_at = required_time(
        str_at(&event, &["create_time"]).or_else(|| str_at(resource, &["update_time"])),
        "create_time",
    )?;
    Ok(vec![Parsed::Dispute(Notification {
        processor: Processor::Paypal,
        event_id,
        event_type,
        processor_dispute_id: dispute_id,
        kind,
        stage,
        amount: money_decimal(
            str_at(resource, &["dispute_amount", "value"]),
            str_at(resource, &["dispute_amount", "currency_code"]),
        ),
        // PayPal does not say which card network (if any) funded the payment.
        network: None,
        reason_code: generic_reason(reason.as_deref()),
        reason_code_raw: reason.clone(),
        processor_reason: reason,
        due_by: str_at(resource, &["seller_response_due_date"]).and_then(rfc3339),
        payment_reference: transaction.and_then(|t| owned(t, &["seller_transaction_id"])),
        order_reference: transaction
            .and_then(|t| owned(t, &["invoice_number"]).or_else(|| owned(t, &["invoice_id"])))
            .or_else(|| owned(resource, &["invoice_id"])),
        references: references(resource),
        occurred_at,
        raw_status: status,
    })])
}

/// Of each disputed transaction: the invoice id (the order, as the merchant sent it to PayPal), the custom id
/// (free merchant data, often the order too) and the seller's transaction id (the capture).
fn references(resource: &Value) -> Vec<TaggedReference> {
    let mut references = Vec::new();
    let transactions = resource
        .get("disputed_transactions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for t in transactions {
        let found = [
            (
                ReferenceKind::InvoiceId,
                owned(t, &["invoice_number"]).or_else(|| owned(t, &["invoice_id"])),
            ),
            (
                ReferenceKind::CustomId,
                owned(t, &["custom"]).or_else(|| owned(t, &["custom_id"])),
            ),
            (ReferenceKind::TransactionId, owned(t, &["seller_transaction_id"])),
        ];
        references.extend(
            found
                .into_iter()
                .filter_map(|(kind, v)| v.map(|v| TaggedReference::new(kind, v))),
        );
    }
    if let Some(invoice) = owned(resource, &["invoice_id"]) {
        references.push(TaggedReference::new(ReferenceKind::InvoiceId, invoice));
    }
    references
}

fn resolved(outcome: Option<&str>) -> NotificationKind {
    match outcome {
        Some("RESOLVED_BUYER_FAVOUR") => NotificationKind::Lost,
        // The seller wins, or PayPal paid the buyer itself (seller protection): no loss for us either way.
        Some("RESOLVED_SELLER_FAVOUR" | "RESOLVED_WITH_PAYOUT" | "DENIED") => NotificationKind::Won,
        Some("CANCELED_BY_BUYER") => NotificationKind::Withdrawn,
        Some("ACCEPTED") => NotificationKind::Accepted,
        _ => NotificationKind::InformationOnly,
    }
}

/// PayPal's dispute reasons mapped onto the generic reasons the domain knows for network `other`.
fn generic_reason(reason: Option<&str>) -> Option<ReasonCode> {
    let generic = match reason? {
        "UNAUTHORISED" => "fraudulent",
        "MERCHANDISE_OR_SERVICE_NOT_RECEIVED" => "product_not_received",
        "MERCHANDISE_OR_SERVICE_NOT_AS_DESCRIBED" => "product_unacceptable",
        "CREDIT_NOT_PROCESSED" => "credit_not_processed",
        "DUPLICATE_TRANSACTION" | "PAYMENT_BY_OTHER_MEANS" => "duplicate",
        "CANCELED_RECURRING_BILLING" => "subscription_canceled",
        "INCORRECT_AMOUNT" | "PROBLEM_WITH_REMITTANCE" | "OTHER" => "general",
        _ => return None,
    };
    ReasonCode::parse(CardNetwork::Other, generic).ok()
}
