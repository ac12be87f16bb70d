//! The seller channel: how a marketplace seller hears about their disputes.
//!
//! The real adapter POSTs a JSON notice to the seller platform's webhook, signed like Stripe signs its own:
//! `Verdict-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The step's idempotency
//! key is the `Idempotency-Key` header and the notice's `id`, so a receiver drops redeliveries. The local
//! default keeps the notice in the mailbox (channel `seller`).
//!
//! Notices carry no personal data of the customer: ids, amount, reason and status only.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use verdict_domain::{Dispute, DisputeId, Locale, Status};
use verdict_store::MailboxChannel;

use super::http::{base_url, client, send_error, status_error};
use super::mailer::{Delivery, Mailbox, OutgoingMail};
use super::templates::{MessageKind, Templates, reference};
use super::{EffectsError, StepError};
use crate::Clock;

/// What a seller is told about a dispute.
#[derive(Debug, Clone, PartialEq)]
pub struct SellerNotice {
    pub dispute_id: DisputeId,
    pub seller_id: Option<String>,
    /// `dispute.won`, `dispute.lost`, or `dispute.<status>` otherwise.
    pub event: String,
    pub idempotency_key: String,
    /// The readable message (English), for channels that show text.
    pub subject: String,
    pub body: String,
    /// The structured notice, as the webhook sends it.
    pub data: serde_json::Value,
}

impl SellerNotice {
    pub fn for_dispute(dispute: &Dispute, idempotency_key: &str, templates: &Templates) -> Result<Self, StepError> {
        let event = match dispute.status {
            Status::Won => "dispute.won".to_owned(),
            Status::Lost => "dispute.lost".to_owned(),
            other => format!("dispute.{other}"),
        };
        let rendered = templates.render(MessageKind::SellerOutcome, Locale::En, dispute)?;
        let data = dispute_summary(dispute);
        Ok(Self {
            dispute_id: dispute.id,
            seller_id: dispute.seller_id.clone(),
            event,
            idempotency_key: idempotency_key.to_owned(),
            subject: rendered.subject,
            body: rendered.body,
            data,
        })
    }
}

/// A dispute as webhooks describe it: ids, amount, reason and status, no personal data of the customer.
pub(crate) fn dispute_summary(dispute: &Dispute) -> serde_json::Value {
    json!({
            "dispute_id": dispute.id.to_string(),
            "seller_id": dispute.seller_id,
            "processor": dispute.processor.as_str(),
            "processor_dispute_id": dispute.processor_dispute_id,
            "payment_reference": dispute.payment_reference,
            "order_reference": dispute.order_reference,
            "reference": reference(dispute),
            "amount": { "minor_units": dispute.amount.minor_units(), "currency": dispute.amount.currency().code() },
            "status": dispute.status.as_str(),
            "stage": dispute.stage.as_str(),
            "reason_code": dispute.reason_code.code(),
            "network": dispute.reason_code.network().as_str(),
            "reason_category": dispute.reason_code.category().as_str(),
    })
}

/// Tells sellers about their disputes.
#[async_trait::async_trait]
pub trait SellerChannel: Send + Sync + 'static {
    async fn notify(&self, notice: &SellerNotice) -> Result<Delivery, StepError>;
}

#[async_trait::async_trait]
impl SellerChannel for Mailbox {
    async fn notify(&self, notice: &SellerNotice) -> Result<Delivery, StepError> {
        self.record(&as_mail(notice), "mailbox").await
    }
}

/// The `Verdict-Signature` header value for `body` sent at `timestamp` (unix seconds). The scheme is the one
/// Verdict's own alert feed uses, so it is implemented once, in the ingest crate.
pub fn sign_webhook(secret: &str, timestamp: i64, body: &[u8]) -> Result<String, verdict_ingest::SignatureError> {
    verdict_ingest::sign_alert(body, secret, timestamp)
}

/// What a receiver does: checks `header` against `body` in constant time, and that the timestamp is within
/// `tolerance` of `now` (which stops replays of old notices).
pub fn verify_webhook_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> bool {
    verdict_ingest::verify_alert(header, body, &[secret.to_owned()], now, tolerance).is_ok()
}

/// POSTs signed notices to one webhook URL. With a mailbox as its log, each delivered notice is recorded
/// there (transport `webhook`, channel `seller`) so it shows on the dispute, and a notice already recorded is
/// not posted again.
pub struct SellerWebhook {
    http: reqwest::Client,
    url: String,
    secret: String,
    clock: Arc<dyn Clock>,
    log: Option<Mailbox>,
}

impl SellerWebhook {
    pub fn new(url: &str, secret: &str, clock: Arc<dyn Clock>) -> Result<Self, EffectsError> {
        if secret.is_empty() {
            return Err(EffectsError::Config("seller_webhook.secret must not be empty".into()));
        }
        Ok(Self {
            http: client()?,
            url: base_url("seller_webhook.url", url)?,
            secret: secret.to_owned(),
            clock,
            log: None,
        })
    }

    pub fn with_log(mut self, log: Mailbox) -> Self {
        self.log = Some(log);
        self
    }
}

fn as_mail(notice: &SellerNotice) -> OutgoingMail {
    OutgoingMail {
        dispute_id: notice.dispute_id,
        channel: MailboxChannel::Seller,
        recipient: notice.seller_id.clone().unwrap_or_else(|| "(no seller)".to_owned()),
        locale: Locale::En,
        subject: notice.subject.clone(),
        body: notice.body.clone(),
        message_id: notice.idempotency_key.clone(),
    }
}

#[async_trait::async_trait]
impl SellerChannel for SellerWebhook {
    async fn notify(&self, notice: &SellerNotice) -> Result<Delivery, StepError> {
        if let Some(log) = &self.log
            && log.contains(&notice.idempotency_key).await?
        {
            return Ok(Delivery::AlreadySent);
        }
        let now = self.clock.now();
        let body = json!({
            "id": notice.idempotency_key,
            "idempotency_key": notice.idempotency_key,
            "type": notice.event,
            "created": now.timestamp(),
            "data": notice.data,
            "message": { "subject": notice.subject, "body": notice.body },
        });
        let body = serde_json::to_vec(&body).map_err(|e| StepError::Permanent(format!("encoding the notice: {e}")))?;
        let signature = sign_webhook(&self.secret, now.timestamp(), &body)
            .map_err(|e| StepError::Permanent(format!("signing the notice: {e}")))?;
        let what = "seller webhook";
        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &notice.idempotency_key)
            .header("Verdict-Signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(what, status, None));
        }
        if let Some(log) = &self.log
            && let Err(err) = log.record(&as_mail(notice), "webhook").await
        {
            // Delivered already: failing the step now would deliver it again (harmless, but noisy).
            tracing::warn!(%err, "the seller notice was delivered but could not be recorded in the mailbox");
        }
        Ok(Delivery::Sent)
    }
}
