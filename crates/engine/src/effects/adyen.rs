//! Adyen: JSON requests with `X-API-Key` and the step's idempotency key in `Idempotency-Key`.
//!
//! - evidence: Disputes API `POST {disputes}/supplyDefenseDocument` (when the payload carries documents), then
//!   `POST {disputes}/defendDispute` with a defense reason code. The two calls use the step's key with
//!   `:documents` and `:defend` appended, so each is idempotent on its own and a retry repeats neither.
//! - accept: `POST {disputes}/acceptDispute`
//! - refund: Checkout API `POST {checkout}/payments/{paymentPspReference}/refunds` with `amount` and
//!   `merchantAccount`
//!
//! ## What Adyen cannot be asked
//! Unlike Stripe, Adyen offers no call that lists a payment's refunds or reads a dispute's status, so a refund
//! or acceptance cannot be checked before it is sent again. What protects a retry is the idempotency key, which
//! Adyen keeps for at least 31 days (its API idempotency documentation): a lead's retry within that time is
//! harmless, a retry after it could refund twice. A refund is also asynchronous at Adyen (`status: received`;
//! the result comes in a `REFUND` webhook, which Verdict does not process yet), so a received refund is
//! recorded as done and the customer is told that it was requested (`customer_refund_requested`), never that
//! it was made. Both limits are stated in the README.
//!
//! The Disputes API answers some refusals with HTTP 200 and `disputeServiceResult.success = false`; those are
//! permanent failures.

use serde_json::{Value, json};
use verdict_domain::{Dispute, Money};

use super::http::{base_url, client, json_body, json_str, send_error, status_error};
use super::{EffectsError, ProcessorApi, ProcessorReply, StepError, Submission};

/// Defense reason used when the payload names none. The applicable codes depend on the dispute (Adyen lists
/// them through `retrieveApplicableDefenseReasons`); an analyst's payload should name the right one.
pub const DEFAULT_DEFENSE_REASON: &str = "SupplyDefenseMaterial";

pub struct AdyenApi {
    http: reqwest::Client,
    disputes_url: String,
    checkout_url: String,
    api_key: String,
    merchant_account: String,
}

impl AdyenApi {
    pub fn new(
        disputes_base_url: &str,
        checkout_base_url: &str,
        api_key: &str,
        merchant_account: &str,
    ) -> Result<Self, EffectsError> {
        Ok(Self {
            http: client()?,
            disputes_url: base_url("adyen_disputes_base_url", disputes_base_url)?,
            checkout_url: base_url("adyen_checkout_base_url", checkout_base_url)?,
            api_key: api_key.trim().to_owned(),
            merchant_account: merchant_account.trim().to_owned(),
        })
    }

    async fn post(&self, what: &str, url: String, body: &Value, idempotency_key: &str) -> Result<Value, StepError> {
        let response = self
            .http
            .post(url)
            .header("X-API-Key", &self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let status = response.status();
        let json = json_body(response).await;
        if !status.is_success() {
            return Err(status_error(what, status, json_str(&json, &["errorCode"])));
        }
        if json.pointer("/disputeServiceResult/success") == Some(&Value::Bool(false)) {
            let message: String = json_str(&json, &["disputeServiceResult", "errorMessage"])
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect();
            tracing::warn!("{what}: refused by Adyen");
            return Err(StepError::Permanent(format!("{what}: refused by Adyen: {message}")));
        }
        Ok(json)
    }

    fn dispute_body(&self, dispute: &Dispute) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        body.insert("disputePspReference".into(), json!(dispute.processor_dispute_id));
        body.insert("merchantAccountCode".into(), json!(self.merchant_account));
        body
    }
}

/// PSP references are alphanumeric; anything else would change the path, so it is refused.
fn psp_reference(what: &str, reference: &str) -> Result<String, StepError> {
    if reference.is_empty() || !reference.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(StepError::Permanent(format!("{what} is not an Adyen PSP reference")));
    }
    Ok(reference.to_owned())
}

#[async_trait::async_trait]
impl ProcessorApi for AdyenApi {
    fn name(&self) -> &'static str {
        "adyen"
    }

    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        submission: &Submission,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        use base64::Engine as _;
        let files: Vec<&super::SubmissionFile> = submission
            .document
            .iter()
            .chain(submission.items.iter().filter_map(|item| item.file.as_ref()))
            .collect();
        if !files.is_empty() {
            let mut body = self.dispute_body(dispute);
            let documents: Vec<Value> = files
                .iter()
                .map(|f| {
                    json!({
                        "content": base64::engine::general_purpose::STANDARD.encode(&f.bytes),
                        "contentType": f.content_type.mime(),
                        "defenseDocumentTypeCode": "DefenseMaterial",
                    })
                })
                .collect();
            body.insert("defenseDocuments".into(), Value::Array(documents));
            self.post(
                "adyen: supplying defense documents",
                format!("{}/supplyDefenseDocument", self.disputes_url),
                &Value::Object(body),
                &format!("{idempotency_key}:documents"),
            )
            .await?;
        }
        let mut body = self.dispute_body(dispute);
        let reason = DEFAULT_DEFENSE_REASON.to_owned();
        body.insert("defenseReasonCode".into(), json!(reason));
        self.post(
            "adyen: defending the dispute",
            format!("{}/defendDispute", self.disputes_url),
            &Value::Object(body),
            &format!("{idempotency_key}:defend"),
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(dispute.processor_dispute_id.clone()),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn accept_dispute(&self, dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        self.post(
            "adyen: accepting the dispute",
            format!("{}/acceptDispute", self.disputes_url),
            &Value::Object(self.dispute_body(dispute)),
            idempotency_key,
        )
        .await?;
        Ok(ProcessorReply {
            reference: Some(dispute.processor_dispute_id.clone()),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn refund(
        &self,
        dispute: &Dispute,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let payment = psp_reference("the payment reference", &dispute.payment_reference)?;
        let body = json!({
            "amount": { "value": amount.minor_units(), "currency": amount.currency().code() },
            "merchantAccount": self.merchant_account,
            "reference": idempotency_key,
        });
        let json = self
            .post(
                "adyen: refunding",
                format!("{}/payments/{payment}/refunds", self.checkout_url),
                &body,
                idempotency_key,
            )
            .await?;
        Ok(ProcessorReply {
            reference: json_str(&json, &["pspReference"]),
            decided_outcome: None,
            // `received`: Adyen reports the result later, in a `REFUND` webhook.
            acknowledged_only: true,
        })
    }
}
