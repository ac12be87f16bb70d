//! Outbound webhooks: dispute events POSTed to configured internal URLs (`[[outbound_webhooks]]`), for services
//! that react to changes without polling.
//!
//! The store writes one `outbound_webhook` step per event and webhook in the event's own transaction (a
//! transactional outbox, see `verdict_store::OutboundRoute`), so a delivery exists exactly when its event does;
//! the workers deliver it like any step: retried with backoff, dead-lettered after the webhook's
//! `max_attempts`, shown and retried in GraphQL like other dead letters.
//!
//! Each delivery is signed as the seller webhook is: `Verdict-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>`. Its idempotency key (`outbound:<webhook>:<dispute>:<version>`) is the
//! `Idempotency-Key` header and the body's `id`, the same on every retry, so a receiver drops redeliveries.
//! Bodies carry no personal data of the customer: the event as history shows it and the dispute's summary.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use verdict_store::Store;

use super::config::OutboundWebhookConfig;
use super::http::{base_url, client, send_error, status_error};
use super::seller::{dispute_summary, sign_webhook};
use super::{EffectsError, StepContext, StepError, StepOutcome};
use crate::Clock;

/// The header naming the event type of a delivery.
pub const EVENT_HEADER: &str = "Verdict-Event";

struct Target {
    url: String,
    secret: String,
}

/// Delivers `outbound_webhook` steps to the configured URLs.
#[derive(Clone)]
pub struct OutboundWebhooks {
    http: reqwest::Client,
    targets: Arc<HashMap<String, Target>>,
    store: Store,
    clock: Arc<dyn Clock>,
}

/// What an `outbound_webhook` step's payload names.
#[derive(Debug, serde::Deserialize)]
struct Delivery {
    webhook: String,
    version: i64,
}

impl OutboundWebhooks {
    pub fn new(webhooks: &[OutboundWebhookConfig], store: Store, clock: Arc<dyn Clock>) -> Result<Self, EffectsError> {
        // Validated as the store's routes are, so what is routed can be delivered.
        super::config::outbound_routes(webhooks)?;
        let targets = webhooks
            .iter()
            .map(|w| {
                Ok((
                    w.name.trim().to_owned(),
                    Target {
                        url: base_url("outbound_webhooks.url", &w.url)?,
                        secret: w.secret.clone(),
                    },
                ))
            })
            .collect::<Result<_, EffectsError>>()?;
        Ok(Self {
            http: client()?,
            targets: Arc::new(targets),
            store,
            clock,
        })
    }

    pub(crate) async fn deliver(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let delivery: Delivery = ctx
            .payload
            .clone()
            .ok_or_else(|| StepError::Permanent("an outbound delivery without its payload".into()))
            .and_then(|p| {
                serde_json::from_value(p)
                    .map_err(|e| StepError::Permanent(format!("the delivery's payload is malformed: {e}")))
            })?;
        let target = self.targets.get(&delivery.webhook).ok_or_else(|| {
            StepError::Permanent(format!(
                "outbound webhook {:?} is no longer configured; nothing was sent",
                delivery.webhook
            ))
        })?;
        let event = self
            .store
            .event(ctx.dispute.id, delivery.version)
            .await
            .map_err(|e| StepError::Transient(format!("reading the event: {e}")))?
            .ok_or_else(|| StepError::Permanent(format!("event {} of the dispute is not stored", delivery.version)))?
            .without_personal_data();
        let now = self.clock.now();
        let body = json!({
            "id": ctx.idempotency_key,
            "type": event.kind,
            "created": now.timestamp(),
            "event": {
                "version": event.version,
                "type": event.kind,
                "from_status": event.from_status,
                "to_status": event.to_status,
                "actor": event.actor,
                "reason": event.reason,
                "details": event.change,
                "at": event.at,
            },
            "dispute": dispute_summary(&ctx.dispute),
        });
        let body = serde_json::to_vec(&body).map_err(|e| StepError::Permanent(format!("encoding the event: {e}")))?;
        let signature = sign_webhook(&target.secret, now.timestamp(), &body)
            .map_err(|e| StepError::Permanent(format!("signing the delivery: {e}")))?;
        let what = format!("outbound webhook {}", delivery.webhook);
        let response = self
            .http
            .post(&target.url)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &ctx.idempotency_key)
            .header("Verdict-Signature", signature)
            .header(EVENT_HEADER, &event.kind)
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(&what, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(&what, status, None));
        }
        tracing::info!(webhook = %delivery.webhook, event = %event.kind, "event delivered");
        Ok(StepOutcome::done())
    }
}
