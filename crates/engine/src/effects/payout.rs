//! Recovering a seller-owned dispute's amount from the seller: when such a dispute is lost or accepted, the
//! `seller_recovery` step records the recovery (once per dispute and cycle, whatever the retries) and asks the
//! marketplace's payout service to debit it from the seller's next payout.
//!
//! The real adapter POSTs the recovery as JSON to `[sellers] payout_url` with the step's idempotency key as
//! `Idempotency-Key`, so a retried request debits once. Without a payout service the step is dead-lettered
//! at once as waiting for one (visible in `deadLetteredSteps`), and a lead retries it once configured.
//! [`FakePayouts`] is for tests and the demo.

use std::sync::{Arc, Mutex};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use verdict_domain::SellerTaskPolicy;

use super::http::{base_url, client, is_transient, send_error, status_error};
use super::{EffectsError, StepError};

/// What is debited from a seller, as the payout service receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    /// The step's idempotency key: one debit per key.
    pub recovery_id: String,
    pub dispute_id: String,
    pub seller_id: String,
    pub amount_minor_units: i64,
    pub currency: String,
    /// Why the seller owns the dispute (`not_received_seller_shipped`, ...).
    pub liability: String,
    /// `lost` or `accepted`.
    pub outcome: String,
}

/// The marketplace's payout service.
#[async_trait::async_trait]
pub trait PayoutService: Send + Sync {
    /// Debits the recovery from the seller's payout; the same `recovery_id` twice debits once. Returns the
    /// payout service's reference for the debit.
    async fn debit(&self, recovery: &RecoveryRequest) -> Result<String, StepError>;
}

/// `[sellers]`: seller tasks' deadlines, the payout service that recoveries go to, and the dispute rate above
/// which a seller is flagged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SellersConfig {
    /// A seller's answer is due this many hours before the processor's deadline (default 72).
    pub task_margin_hours: i64,
    /// When the processor gave no deadline, the seller has this many hours (default 120).
    pub task_without_deadline_hours: i64,
    /// The marketplace's payout service (`POST URL` with the recovery as JSON); recoveries wait without one.
    pub payout_url: Option<String>,
    /// Bearer token for the payout service; `VERDICT_SELLERS_PAYOUT_TOKEN`.
    pub payout_token: Option<String>,
    /// Sellers with more disputes than this per 10,000 orders are flagged (default 100, i.e. 1%).
    pub dispute_rate_threshold_bps: u64,
    /// Signs sellers' upload links (at least 32 characters); without it there are none.
    /// `VERDICT_SELLERS_UPLOAD_SECRET`.
    pub upload_secret: Option<String>,
    /// How long an upload link works, in hours (default 72).
    pub upload_link_hours: i64,
}

impl Default for SellersConfig {
    fn default() -> Self {
        let policy = SellerTaskPolicy::default();
        Self {
            task_margin_hours: policy.margin.num_hours(),
            task_without_deadline_hours: policy.without_deadline.num_hours(),
            payout_url: None,
            payout_token: None,
            dispute_rate_threshold_bps: 100,
            upload_secret: None,
            upload_link_hours: 72,
        }
    }
}

impl std::fmt::Debug for SellersConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SellersConfig")
            .field("task_margin_hours", &self.task_margin_hours)
            .field("task_without_deadline_hours", &self.task_without_deadline_hours)
            .field("payout_url", &self.payout_url)
            .field("payout_token", &self.payout_token.as_ref().map(|_| "<set>"))
            .field("dispute_rate_threshold_bps", &self.dispute_rate_threshold_bps)
            .field("upload_secret", &self.upload_secret.as_ref().map(|_| "<set>"))
            .field("upload_link_hours", &self.upload_link_hours)
            .finish()
    }
}

impl SellersConfig {
    /// The deadlines' policy; refuses margins that are not positive.
    pub fn task_policy(&self) -> Result<SellerTaskPolicy, EffectsError> {
        if self.task_margin_hours <= 0 || self.task_without_deadline_hours <= 0 {
            return Err(EffectsError::Config(
                "[sellers] task_margin_hours and task_without_deadline_hours must be positive".into(),
            ));
        }
        Ok(SellerTaskPolicy {
            margin: chrono::Duration::hours(self.task_margin_hours),
            without_deadline: chrono::Duration::hours(self.task_without_deadline_hours),
        })
    }
}

/// The payout service over HTTP.
pub struct HttpPayouts {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl HttpPayouts {
    pub fn new(url: &str, token: Option<&str>) -> Result<Self, EffectsError> {
        Ok(Self {
            url: base_url("payout_url", url)?,
            token: token.filter(|t| !t.trim().is_empty()).map(str::to_owned),
            http: client()?,
        })
    }
}

#[derive(Deserialize)]
struct DebitAnswer {
    reference: String,
}

#[async_trait::async_trait]
impl PayoutService for HttpPayouts {
    async fn debit(&self, recovery: &RecoveryRequest) -> Result<String, StepError> {
        let mut request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &recovery.recovery_id)
            .json(recovery);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request.send().await.map_err(|err| send_error("payout service", err))?;
        let status = response.status();
        if !status.is_success() {
            let error = status_error("payout service", status, None);
            return Err(if is_transient(status) {
                error
            } else {
                StepError::Permanent(error.message().to_owned())
            });
        }
        let answer: DebitAnswer = response
            .json()
            .await
            .map_err(|err| StepError::Permanent(format!("payout service: unreadable answer: {err}")))?;
        Ok(answer.reference)
    }
}

/// A payout service in memory, for tests and the demo: it debits each recovery id once and remembers it.
#[derive(Default, Clone)]
pub struct FakePayouts {
    debits: Arc<Mutex<Vec<RecoveryRequest>>>,
    calls: Arc<Mutex<usize>>,
}

impl FakePayouts {
    /// The debits made, one per recovery id.
    pub fn debits(&self) -> Vec<RecoveryRequest> {
        self.debits.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// How many times it was asked (retries included).
    pub fn calls(&self) -> usize {
        self.calls.lock().map(|c| *c).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl PayoutService for FakePayouts {
    async fn debit(&self, recovery: &RecoveryRequest) -> Result<String, StepError> {
        if let Ok(mut calls) = self.calls.lock() {
            *calls += 1;
        }
        let mut debits = self
            .debits
            .lock()
            .map_err(|_| StepError::Transient("fake payouts poisoned".into()))?;
        if !debits.iter().any(|d| d.recovery_id == recovery.recovery_id) {
            debits.push(recovery.clone());
        }
        Ok(format!("fake-debit-{}", recovery.recovery_id))
    }
}
