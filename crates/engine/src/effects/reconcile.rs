//! Stripe reconciliation: lists the account's disputes and feeds each one through the webhook path, so a
//! dispute whose notification never came is created or moved.
//!
//! `GET /v1/disputes?limit=100` (newest first), following `starting_after` while `has_more`, at most
//! [`MAX_PAGES`] pages and stopping at disputes created more than [`LOOKBACK_DAYS`] days before the last run.
//! Each dispute becomes a synthetic event `reconcile_<id>_<status>_<amount>`: a dispute already seen in that
//! state is a duplicate in the inbox and changes nothing. Response bodies are never logged.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::http::{base_url, client, json_body, json_str, send_error, status_error};
use super::{EffectsError, ProcessorsConfig, StepError};
use crate::schedules::Reconciler;
use crate::{Engine, Source};

/// Pages of 100 disputes read per run at most.
pub const MAX_PAGES: usize = 50;
/// How far before the last run the listing goes back.
pub const LOOKBACK_DAYS: i64 = 120;
const PAGE_SIZE: usize = 100;
/// Stripe's final dispute statuses, reported as `charge.dispute.closed`.
const FINAL_STATUSES: [&str; 4] = ["won", "lost", "warning_closed", "charge_refunded"];

pub struct StripeReconciler {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    max_pages: usize,
}

impl StripeReconciler {
    /// `base_url` is `https://api.stripe.com` in production (a local fake in tests).
    pub fn new(base_url_text: &str, api_key: &str) -> Result<Self, EffectsError> {
        Ok(Self {
            http: client()?,
            base_url: base_url("stripe_base_url", base_url_text)?,
            api_key: api_key.trim().to_owned(),
            max_pages: MAX_PAGES,
        })
    }

    /// The reconciler when a Stripe key is configured.
    pub fn from_config(config: &ProcessorsConfig) -> Result<Option<Self>, EffectsError> {
        match config.stripe_api_key.as_deref().filter(|k| !k.trim().is_empty()) {
            Some(key) => Ok(Some(Self::new(&config.stripe_base_url, key)?)),
            None => Ok(None),
        }
    }

    pub fn with_max_pages(mut self, max_pages: usize) -> Self {
        self.max_pages = max_pages.max(1);
        self
    }

    async fn page(&self, starting_after: Option<&str>) -> Result<Value, StepError> {
        let what = "stripe: listing disputes";
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(after) = starting_after {
                query.append_pair("starting_after", after);
            }
            query.finish()
        };
        let response = self
            .http
            .get(format!("{}/v1/disputes?{}", self.base_url, query))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let status = response.status();
        let json = json_body(response).await;
        if !status.is_success() {
            let code = json_str(&json, &["error", "code"]).or_else(|| json_str(&json, &["error", "type"]));
            return Err(status_error(what, status, code));
        }
        if !json.get("data").is_some_and(Value::is_array) {
            return Err(StepError::Transient(format!("{what}: the answer is not a list")));
        }
        Ok(json)
    }

    /// The disputes created since `cutoff`, newest first, across pages.
    async fn list(&self, cutoff: DateTime<Utc>) -> Result<Vec<Value>, StepError> {
        let mut disputes = Vec::new();
        let mut starting_after: Option<String> = None;
        for _ in 0..self.max_pages {
            let page = self.page(starting_after.as_deref()).await?;
            let data = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut reached_cutoff = false;
            for dispute in data {
                let created = dispute.get("created").and_then(Value::as_i64);
                if created
                    .and_then(|c| DateTime::from_timestamp(c, 0))
                    .is_some_and(|c| c < cutoff)
                {
                    reached_cutoff = true;
                    break;
                }
                starting_after = json_str(&dispute, &["id"]).or(starting_after);
                disputes.push(dispute);
            }
            let has_more = page.get("has_more").and_then(Value::as_bool).unwrap_or(false);
            if reached_cutoff || !has_more || starting_after.is_none() {
                return Ok(disputes);
            }
        }
        tracing::warn!(
            pages = self.max_pages,
            "stripe reconciliation stopped at the page limit"
        );
        Ok(disputes)
    }
}

/// The synthetic event a listed dispute is fed through the webhook path as.
pub fn synthetic_event(dispute: &Value, now: DateTime<Utc>) -> Option<Value> {
    let id = json_str(dispute, &["id"])?;
    let status = json_str(dispute, &["status"]).unwrap_or_default();
    let amount = dispute.get("amount").and_then(Value::as_i64).unwrap_or_default();
    let event_type = if FINAL_STATUSES.contains(&status.as_str()) {
        "charge.dispute.closed"
    } else {
        "charge.dispute.updated"
    };
    Some(json!({
        "id": format!("reconcile_{id}_{status}_{amount}"),
        "object": "event",
        "type": event_type,
        "created": now.timestamp(),
        "data": {"object": dispute},
    }))
}

#[async_trait::async_trait]
impl Reconciler for StripeReconciler {
    fn name(&self) -> &str {
        "stripe"
    }

    /// Returns how many synthetic events were new (each created or moved a dispute, or confirmed its state).
    async fn reconcile(
        &self,
        engine: &Engine,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<usize, String> {
        let cutoff = since.unwrap_or(now) - Duration::days(LOOKBACK_DAYS);
        let disputes = self.list(cutoff).await.map_err(|e| e.to_string())?;
        let mut touched = 0;
        for dispute in &disputes {
            let Some(event) = synthetic_event(dispute, now) else {
                tracing::warn!("stripe reconciliation: a listed dispute has no id; skipped");
                continue;
            };
            let body = event.to_string();
            let parsed = match verdict_ingest::parse_stripe(body.as_bytes()) {
                Ok(parsed) => parsed,
                Err(err) => {
                    tracing::warn!(event_id = ?json_str(&event, &["id"]), %err, "stripe reconciliation: unparsable dispute");
                    continue;
                }
            };
            let received = engine
                .receive(Source::Stripe, parsed, &body)
                .await
                .map_err(|e| format!("transient: stripe reconciliation: storing a dispute: {e}"))?;
            touched += received.stored;
        }
        tracing::info!(listed = disputes.len(), new = touched, "stripe reconciliation done");
        Ok(touched)
    }
}
