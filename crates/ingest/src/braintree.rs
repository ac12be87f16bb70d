//! Braintree webhooks: `bt_signature` / `bt_payload` verification and the dispute notification XML.
//!
//! Braintree posts two form fields: `bt_payload`, base64 (MIME style, with newlines) of an XML
//! `<notification>`, and `bt_signature`, `public_key|hex(HMAC-SHA1(SHA1(private_key), bt_payload))`, possibly
//! several pairs joined by `&` while keys rotate. The scheme mirrors the official SDK, including its
//! acceptance of a payload whose trailing newline was lost in transit.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use roxmltree::{Document, Node};
use sha1::{Digest, Sha1};
use verdict_domain::facts::{ReferenceKind, TaggedReference};
use verdict_domain::{CardNetwork, Processor, ReasonCode, Stage};

use crate::common::{date_start_utc, money_decimal, network_from_brand, reason_code, required_time};
use crate::model::{Notification, NotificationKind, ParseError, Parsed};
use crate::signature::SignatureError;

type HmacSha1 = Hmac<Sha1>;

/// One Braintree API key pair. Only the private key is secret; the public key selects which pair signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BraintreeCredentials {
    pub public_key: String,
    pub private_key: String,
}

fn hmac_sha1(private_key: &[u8]) -> Result<HmacSha1, SignatureError> {
    // Braintree keys the HMAC with the SHA-1 of the private key, not the key itself.
    let key = Sha1::digest(private_key);
    <HmacSha1 as KeyInit>::new_from_slice(&key).map_err(|e| SignatureError::InvalidKey(e.to_string()))
}

/// `hex(HMAC-SHA1(SHA1(private_key), message))`, Braintree's `Digest.hexdigest`.
pub fn braintree_hexdigest(private_key: &[u8], message: &[u8]) -> Result<String, SignatureError> {
    let mut mac = hmac_sha1(private_key)?;
    mac.update(message);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Whether `challenge` has the shape Braintree sends: 20 to 32 lowercase hex digits, the check of its SDKs
/// (`/\A[a-f0-9]{20,32}\z/`).
///
/// The check is what keeps the challenge from being a signing oracle: the answer is
/// `public_key|HMAC(challenge)`, exactly the `bt_signature` of a payload equal to the challenge. A payload is
/// base64 of an XML document, which never is 20 to 32 hex digits, so no answer can sign a notification.
pub fn braintree_challenge_valid(challenge: &str) -> bool {
    (20..=32).contains(&challenge.len()) && challenge.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The answer to Braintree's webhook-URL verification challenge (`bt_challenge`); refuses (with
/// [`SignatureError::Malformed`]) anything that is not [`braintree_challenge_valid`], signing nothing.
pub fn braintree_verify_challenge(
    challenge: &str,
    public_key: &str,
    private_key: &str,
) -> Result<String, SignatureError> {
    if !braintree_challenge_valid(challenge) {
        return Err(SignatureError::Malformed(
            "bt_challenge must be 20 to 32 lowercase hex digits".into(),
        ));
    }
    signed(challenge, public_key, private_key)
}

fn signed(message: &str, public_key: &str, private_key: &str) -> Result<String, SignatureError> {
    Ok(format!(
        "{public_key}|{}",
        braintree_hexdigest(private_key.as_bytes(), message.as_bytes())?
    ))
}

/// The `bt_signature` Braintree would send for `bt_payload`; for tests and local simulators.
pub fn sign_braintree(bt_payload: &str, public_key: &str, private_key: &str) -> Result<String, SignatureError> {
    signed(bt_payload, public_key, private_key)
}

/// Verifies `bt_signature` over `bt_payload` with any of the configured key pairs.
pub fn verify_braintree(
    bt_signature: &str,
    bt_payload: &str,
    credentials: &[BraintreeCredentials],
) -> Result<(), SignatureError> {
    if bt_signature.trim().is_empty() {
        return Err(SignatureError::Missing("bt_signature"));
    }
    if bt_payload.is_empty() {
        return Err(SignatureError::Missing("bt_payload"));
    }
    // Same character check as the SDK: anything outside base64 + newline means the payload was tampered with.
    if !bt_payload
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b'/' | b'\n'))
    {
        return Err(SignatureError::Malformed(
            "bt_payload contains non-base64 characters".into(),
        ));
    }
    let mut saw_known_key = false;
    let mut matched = false;
    for pair in bt_signature.split('&') {
        let Some((public_key, signature)) = pair.trim().split_once('|') else {
            continue;
        };
        let Some(creds) = credentials.iter().find(|c| c.public_key == public_key) else {
            continue;
        };
        saw_known_key = true;
        let Ok(signature) = hex::decode(signature.trim()) else {
            continue;
        };
        let mac = hmac_sha1(creds.private_key.as_bytes())?;
        let mut plain = mac.clone();
        plain.update(bt_payload.as_bytes());
        let mut with_newline = mac;
        with_newline.update(bt_payload.as_bytes());
        with_newline.update(b"\n");
        matched |= plain.verify_slice(&signature).is_ok() | with_newline.verify_slice(&signature).is_ok();
    }
    if matched {
        Ok(())
    } else if saw_known_key {
        Err(SignatureError::Mismatch)
    } else {
        Err(SignatureError::InvalidKey(
            "no bt_signature pair uses a configured public key".into(),
        ))
    }
}

/// Base64 the way Braintree delivers it (newline every 60 characters and at the end); for tests.
pub fn braintree_payload(xml: &str) -> String {
    let encoded = BASE64.encode(xml.as_bytes());
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 60 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push('\n');
    out
}

/// Parses the form field `bt_payload` (base64 XML).
pub fn parse_braintree(bt_payload: &str) -> Result<Vec<Parsed>, ParseError> {
    let compact: String = bt_payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = BASE64.decode(compact).map_err(|e| ParseError::Base64(e.to_string()))?;
    let xml = String::from_utf8(bytes).map_err(|e| ParseError::Xml(format!("not UTF-8: {e}")))?;
    parse_braintree_xml(&xml)
}

/// Parses the decoded `<notification>` XML.
pub fn parse_braintree_xml(xml: &str) -> Result<Vec<Parsed>, ParseError> {
    parse_braintree_xml_unescaped(xml).map(crate::model::without_nul)
}

fn parse_braintree_xml_unescaped(xml: &str) -> Result<Vec<Parsed>, ParseError> {
    let doc = Document::parse(xml).map_err(|e| ParseError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "notification" {
        return Err(ParseError::invalid(
            "notification",
            format!("unexpected root <{}>", root.tag_name().name()),
        ));
    }
    let kind = text(root, "kind").ok_or_else(|| ParseError::missing("notification.kind"))?;
    let timestamp = text(root, "timestamp");
    let subject = child(root, "subject");
    const DISPUTE_KINDS: &[&str] = &[
        "dispute_opened",
        "dispute_lost",
        "dispute_won",
        "dispute_accepted",
        "dispute_auto_accepted",
        "dispute_disputed",
        "dispute_expired",
        "dispute_under_review",
    ];
    if !DISPUTE_KINDS.contains(&kind.as_str()) {
        let subject_id = subject
            .and_then(|s| s.children().find(Node::is_element))
            .and_then(|n| text(n, "id"))
            .unwrap_or_default();
        return Ok(vec![Parsed::Ignored {
            event_id: format!("{kind}:{subject_id}:{}", timestamp.unwrap_or_default()),
            event_type: kind,
        }]);
    }
    let dispute = subject
        .and_then(|s| child(s, "dispute"))
        .ok_or_else(|| ParseError::missing("notification.subject.dispute"))?;
    let dispute_id = text(dispute, "id").ok_or_else(|| ParseError::missing("dispute.id"))?;
    let occurred_at = required_time(timestamp.as_deref(), "notification.timestamp")?;
    let transaction = child(dispute, "transaction");
    let stage = match text(dispute, "kind").as_deref() {
        Some("retrieval") => Some(Stage::Inquiry),
        Some("pre_arbitration") => Some(Stage::PreArbitration),
        Some("chargeback") => Some(Stage::Chargeback),
        _ => None,
    };
    let pre_arbitration = stage == Some(Stage::PreArbitration);
    use NotificationKind as K;
    let notification_kind = match kind.as_str() {
        "dispute_opened" => match stage {
            Some(Stage::Inquiry) => K::Inquiry,
            Some(Stage::PreArbitration) => K::PreArbitrationOpened,
            _ => K::ChargebackOpened,
        },
        "dispute_won" if pre_arbitration => K::PreArbitrationWon,
        "dispute_won" => K::Won,
        "dispute_lost" if pre_arbitration => K::PreArbitrationLost,
        "dispute_lost" => K::Lost,
        "dispute_accepted" | "dispute_auto_accepted" => K::Accepted,
        "dispute_expired" => K::Expired,
        // `disputed` means the merchant submitted a defence; either way the issuer is now deciding.
        _ => K::UnderReview,
    };
    let network = transaction
        .and_then(|t| text(t, "payment-instrument-subtype").or_else(|| text(t, "card-type")))
        .and_then(|b| network_from_brand(&b));
    let processor_reason = text(dispute, "reason");
    let network_code = text(dispute, "reason-code");
    let (reason_code_raw, reason_code) = match network_code {
        Some(code) => {
            let normalised = reason_code(network, Some(&code)).or_else(|| generic_reason(processor_reason.as_deref()));
            (Some(code), normalised)
        }
        None => (processor_reason.clone(), generic_reason(processor_reason.as_deref())),
    };
    let amount_text = text(dispute, "amount-disputed").or_else(|| text(dispute, "amount"));
    let currency = text(dispute, "currency-iso-code");
    Ok(vec![Parsed::Dispute(Notification {
        processor: Processor::Braintree,
        event_id: format!("{kind}:{dispute_id}:{}", timestamp.unwrap_or_default()),
        event_type: kind,
        processor_dispute_id: dispute_id,
        kind: notification_kind,
        stage,
        amount: money_decimal(amount_text.as_deref(), currency.as_deref()),
        network,
        reason_code_raw,
        reason_code,
        processor_reason,
        due_by: text(dispute, "reply-by-date").and_then(|d| date_start_utc(&d)),
        payment_reference: transaction.and_then(|t| text(t, "id")),
        order_reference: transaction.and_then(|t| text(t, "order-id")),
        references: [
            (ReferenceKind::OrderId, transaction.and_then(|t| text(t, "order-id"))),
            (ReferenceKind::TransactionId, transaction.and_then(|t| text(t, "id"))),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.map(|v| TaggedReference::new(kind, v)))
        .collect(),
        occurred_at,
        raw_status: text(dispute, "status"),
    })])
}

/// Braintree's dispute reasons mapped onto the generic reasons the domain knows for network `other`.
fn generic_reason(reason: Option<&str>) -> Option<ReasonCode> {
    let generic = match reason? {
        "fraud" => "fraudulent",
        "duplicate" => "duplicate",
        "not_recognized" => "unrecognized",
        "product_not_received" | "not_received" => "product_not_received",
        "product_unsatisfactory" | "not_as_described" => "product_unacceptable",
        "credit_not_processed" => "credit_not_processed",
        "cancelled_recurring_transaction" => "subscription_canceled",
        "general" | "transaction_amount_differs" => "general",
        _ => return None,
    };
    ReasonCode::parse(CardNetwork::Other, generic).ok()
}

fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

/// Trimmed text of a direct child; `nil="true"` and empty elements are absent.
fn text(node: Node<'_, '_>, name: &str) -> Option<String> {
    let element = child(node, name)?;
    if element.attribute("nil") == Some("true") {
        return None;
    }
    let text = element.text()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
