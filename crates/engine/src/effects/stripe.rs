//! Stripe: form-encoded requests with the secret key as a bearer token and the step's idempotency key in
//! `Idempotency-Key`.
//!
//! - evidence: `POST /v1/disputes/{id}` with `evidence[...]` fields and `submit=true`
//! - accept: `POST /v1/disputes/{id}/close`
//! - refund: `POST /v1/refunds` with `payment_intent` (`pi_...`) or `charge` (`ch_...`, `py_...`), `amount`
//!   and `metadata[verdict_dispute_id]`
//!
//! ## Asking before acting
//! Stripe keeps an idempotency key for about 24 hours, so a key alone does not protect a refund retried days
//! later (a lead's retry of a dead letter): a second POST would pay the customer twice. Before every refund
//! Verdict lists the payment's refunds (`GET /v1/refunds?payment_intent=...` or `charge=...`) and looks for one
//! whose `metadata[verdict_dispute_id]` is this dispute: a `succeeded` one is the refund already made, a
//! `pending` or `requires_action` one is waited for (a transient failure, checked again at the next try); a
//! `failed` or `canceled` one paid nothing and does not count. Before an acceptance Verdict reads the dispute
//! (`GET /v1/disputes/{id}`): once it is closed (`lost`, `won`, `warning_closed`, `charge_refunded`) there is
//! nothing left to accept. A refund answered `pending` is likewise not yet a success: the step succeeds (and
//! the customer is told) only once Stripe says `succeeded`.

use reqwest::header::CONTENT_TYPE;
use verdict_domain::{Dispute, Money};

use serde_json::Value;

use super::http::{base_url, client, json_body, json_str, send_error, status_error};
use std::collections::BTreeMap;

use super::{EffectsError, ProcessorApi, ProcessorReply, StepError, Submission};

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
        stripe_answer(what, response).await
    }
}

/// The JSON of a successful answer, or the error Stripe named (`error.code`, else `error.type`).
async fn stripe_answer(what: &str, response: reqwest::Response) -> Result<Value, StepError> {
    let status = response.status();
    let json = json_body(response).await;
    if !status.is_success() {
        let code = json_str(&json, &["error", "code"]).or_else(|| json_str(&json, &["error", "type"]));
        return Err(status_error(what, status, code));
    }
    Ok(json)
}

/// Refund pages read at most when looking for Verdict's refund of a payment (100 refunds each).
const MAX_REFUND_PAGES: usize = 10;
/// Dispute statuses after which there is nothing left to accept.
const CLOSED_DISPUTE_STATUSES: [&str; 4] = ["lost", "won", "warning_closed", "charge_refunded"];

/// What the payment's refunds say about the refund Verdict would make.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prior {
    /// No refund of this dispute that paid or may still pay.
    None,
    Succeeded(String),
    /// Made, not settled yet (`pending`, `requires_action`).
    Pending(String, String),
}

/// How a refund object's status decides the step.
fn refund_result(refund: &Value) -> Result<ProcessorReply, StepError> {
    let id = json_str(refund, &["id"]).unwrap_or_default();
    match json_str(refund, &["status"]).as_deref() {
        Some("succeeded") => Ok(ProcessorReply {
            reference: Some(id),
            decided_outcome: None,
            acknowledged_only: false,
        }),
        Some(status @ ("pending" | "requires_action")) => Err(StepError::Transient(format!(
            "stripe: refund {id} is {status}; the customer is told once it has succeeded"
        ))),
        Some(status) => Err(StepError::Permanent(format!("stripe: refund {id} is {status}"))),
        // An older API version without a status: a 2xx refund is a refund.
        None => Ok(ProcessorReply {
            reference: Some(id),
            decided_outcome: None,
            acknowledged_only: false,
        }),
    }
}

impl StripeApi {
    async fn get(&self, what: &str, path_and_query: &str) -> Result<Value, StepError> {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        stripe_answer(what, response).await
    }

    /// Looks through the payment's refunds for one Verdict made for `dispute`.
    async fn prior_refund(&self, dispute: &Dispute, field: &str, payment: &str) -> Result<Prior, StepError> {
        let what = "stripe: listing the payment's refunds";
        let dispute_id = dispute.id.to_string();
        let mut starting_after: Option<String> = None;
        let mut pending = None;
        for _ in 0..MAX_REFUND_PAGES {
            let query = {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair(field, payment).append_pair("limit", "100");
                if let Some(after) = &starting_after {
                    query.append_pair("starting_after", after);
                }
                query.finish()
            };
            let page = self.get(what, &format!("/v1/refunds?{query}")).await?;
            let Some(data) = page.get("data").and_then(Value::as_array) else {
                return Err(StepError::Transient(format!("{what}: the answer is not a list")));
            };
            for refund in data {
                if json_str(refund, &["metadata", "verdict_dispute_id"]).as_deref() != Some(dispute_id.as_str()) {
                    continue;
                }
                let id = json_str(refund, &["id"]).unwrap_or_default();
                match json_str(refund, &["status"]).as_deref() {
                    Some("succeeded") | None => return Ok(Prior::Succeeded(id)),
                    Some(status @ ("pending" | "requires_action")) => {
                        pending = Some(Prior::Pending(id, status.to_owned()));
                    }
                    // Failed or canceled: it paid nothing.
                    Some(_) => {}
                }
            }
            let has_more = page.get("has_more").and_then(Value::as_bool).unwrap_or(false);
            starting_after = data.last().and_then(|r| json_str(r, &["id"]));
            if !has_more || starting_after.is_none() {
                return Ok(pending.unwrap_or(Prior::None));
            }
        }
        // Not seen to the end: refunding now could be the second refund.
        Err(StepError::Permanent(format!(
            "{what}: more than {} refunds; check the payment at Stripe before retrying",
            MAX_REFUND_PAGES * 100
        )))
    }
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else would change the path, so it is refused.
fn path_id(what: &str, id: &str) -> Result<String, StepError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(StepError::Permanent(format!("{what} is not a Stripe id")));
    }
    Ok(id.to_owned())
}

/// The form fields of an evidence submission: the items' texts under Stripe's evidence fields, the customer's
/// name and email from the dispute, and `submit=true`.
pub(crate) fn evidence_form(dispute: &Dispute, submission: &Submission) -> Vec<(String, String)> {
    use verdict_domain::EvidenceKind as K;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (kind, field) in [
        (K::ProductDescription, "product_description"),
        (K::Tracking, "shipping_tracking_number"),
        (K::RefundPolicy, "refund_policy_disclosure"),
        (K::Cancellation, "cancellation_rebuttal"),
        (K::PriorUndisputedTransactions, "access_activity_log"),
    ] {
        let text = submission.texts(kind).collect::<Vec<_>>().join("\n\n");
        if !text.is_empty() {
            fields.insert(field.to_owned(), text);
        }
    }
    if let Some(name) = &dispute.customer.name {
        fields.insert("customer_name".to_owned(), name.expose().to_owned());
    }
    if let Some(email) = &dispute.customer.email {
        fields.insert("customer_email_address".to_owned(), email.expose().to_owned());
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
        submission: &Submission,
        idempotency_key: &str,
    ) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let json = self
            .post(
                "stripe: submitting evidence",
                &format!("/v1/disputes/{id}"),
                &evidence_form(dispute, submission),
                idempotency_key,
            )
            .await?;
        Ok(ProcessorReply {
            reference: json_str(&json, &["id"]),
            decided_outcome: None,
            acknowledged_only: false,
        })
    }

    async fn accept_dispute(&self, dispute: &Dispute, idempotency_key: &str) -> Result<ProcessorReply, StepError> {
        let id = path_id("the processor dispute id", &dispute.processor_dispute_id)?;
        let current = self
            .get("stripe: reading the dispute", &format!("/v1/disputes/{id}"))
            .await?;
        if let Some(status) = json_str(&current, &["status"])
            && CLOSED_DISPUTE_STATUSES.contains(&status.as_str())
        {
            tracing::info!(%status, "the dispute is already closed at Stripe; nothing to accept");
            return Ok(ProcessorReply {
                reference: json_str(&current, &["id"]),
                decided_outcome: None,
                acknowledged_only: false,
            });
        }
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
            acknowledged_only: false,
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
        match self.prior_refund(dispute, field, &payment).await? {
            Prior::Succeeded(id) => {
                tracing::info!(refund = %id, "the refund was already made; not sending it again");
                return Ok(ProcessorReply {
                    reference: Some(id),
                    decided_outcome: None,
                    acknowledged_only: false,
                });
            }
            Prior::Pending(id, status) => {
                return Err(StepError::Transient(format!(
                    "stripe: refund {id} is {status}; the customer is told once it has succeeded"
                )));
            }
            Prior::None => {}
        }
        let form = vec![
            (field.to_owned(), payment),
            ("amount".to_owned(), amount.minor_units().to_string()),
            ("metadata[verdict_dispute_id]".to_owned(), dispute.id.to_string()),
            ("metadata[verdict_step]".to_owned(), idempotency_key.to_owned()),
        ];
        let json = self
            .post("stripe: refunding", "/v1/refunds", &form, idempotency_key)
            .await?;
        refund_result(&json)
    }
}
