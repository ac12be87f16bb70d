//! Stripe: form-encoded requests with the secret key as a bearer token and the step's idempotency key in
//! `Idempotency-Key`.
//!
//! - evidence: `POST /v1/disputes/{id}` with `evidence[...]` fields and `submit=true`
//! - accept: `POST /v1/disputes/{id}/close`
//! - refund: `POST /v1/refunds` with `payment_intent` (`pi_...`) or `charge` (`ch_...`, `py_...`) and `amount`

use reqwest::header::CONTENT_TYPE;
use verdict_domain::{Dispute, Money};

use super::http::{base_url, client, json_body, json_str, send_error, status_error};
use super::{EffectsError, Evidence, ProcessorApi, ProcessorReply, StepError};

pub struct StripeApi {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl StripeApi {
    /// `base_url` is `https://api.stripe.com` in production (a local fake in tests).
    pub fn new(base_url_text: &str, api_key: &str) -> Result<Self, EffectsError> {
        Ok(Self {
            http: client()?,
            base_url: base_url("stripe_base_url", base_url_text)?,
            api_key: api_key.trim().to_owned(),
        })
    }

    async fn post(
        &self,
        what: &str,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<serde_json::Value, StepError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let status = response.status();
        let json = json_body(response).await;
        if !status.is_success() {
            let code = json_str(&json, &["error", "code"]).or_else(|| json_str(&json, &["error", "type"]));
            return Err(status_error(what, status, code));
        }
        Ok(json)
    }
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else would change the path, so it is refused.
fn path_id(what: &str, id: &str) -> Result<String, StepError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(StepError::Permanent(format!("{what} is not a Stripe id")));
    }
    Ok(id.to_owned())
}

/// The form fields of an evidence submission: the payload's fields, the customer's name and email from the
/// dispute when the payload does not give them, and `submit=true`.
pub(crate) fn evidence_form(dispute: &Dispute, evidence: &Evidence) -> Vec<(String, String)> {
    let mut fields = evidence.evidence.clone();
    if let Some(name) = &dispute.customer.name {
        fields
            .entry("customer_name".to_owned())
            .or_insert_with(|| name.expose().to_owned());
    }
    if let Some(email) = &dispute.customer.email {
        fields
            .entry("customer_email_address".to_owned())
            .or_insert_with(|| email.expose().to_owned());
    }
    let mut form: Vec<(String, String)> = fields
        .into_iter()
        .map(|(key, value)| (format!("evidence[{key}]"), value))
        .collect();
    form.push(("metadata[verdict_dispute_id]".to_owned(), dispute.id.to_string()));
    form.push(("submit".to_owned(), "true".to_owned()));
    form
}

#[async_trait::async_trait]
impl ProcessorApi for StripeApi {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn submit_evidence(
        &self,
        dispute: &Dispute,
        evidence: &Evidence,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let json = self
            .post(
                "stripe: submitting evidence",
                &format!("/v1/disputes/{id}"),
                &evidence_form(dispute, evidence),
                idempotency_key,
            )
            .await?;
        Ok(ProcessorReply {
            reference: json_str(&json, &["id"]),
            decided_outcome: None,
        })
    }

    async fn accept_dispute(&self, dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let json = self
            .post(
                "stripe: closing the dispute",
                &format!("/v1/disputes/{id}/close"),
                &[],
                idempotency_key,
            )
            .await?;
        Ok(ProcessorReply {
            reference: json_str(&json, &["id"]),
            decided_outcome: None,
        })
    }

    async fn refund(
        &self,
        dispute: &Dispute,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let payment = path_id("the payment reference", &dispute.payment_reference)?;
        let field = if payment.starts_with("ch_") || payment.starts_with("py_") {
            "charge"
        } else {
            "payment_intent"
        };
        let form = vec![
            (field.to_owned(), payment),
            ("amount".to_owned(), amount.minor_units().to_string()),
            ("metadata[verdict_dispute_id]".to_owned(), dispute.id.to_string()),
        ];
        let json = self
            .post("stripe: refunding", "/v1/refunds", &form, idempotency_key)
            .await?;
        Ok(ProcessorReply {
            reference: json_str(&json, &["id"]),
            decided_outcome: None,
        })
    }
}
