//! Stripe: form-encoded requests with the secret key as a bearer token and the step's idempotency key in
//! `Idempotency-Key`.
//!
//! - evidence: each file uploaded (`POST {files}/v1/files`, multipart, `purpose=dispute_evidence`, key
//!   `<step key>:file:<document|item-N>`), then `POST /v1/disputes/{id}` with `evidence[...]` text fields (customer,
//!   shipping and policy fields from the order facts, items' texts by kind, the rest in `uncategorized_text`),
//!   file fields (one file id each: the defense document in `uncategorized_file`, items by kind in
//!   `shipping_documentation`, `customer_communication`, `refund_policy`, `cancellation_policy`...; a file
//!   with no free field is not sent and is logged as a count), Visa Compelling Evidence 3.0 when the dispute
//!   read first lists it in `enhanced_eligibility_types` ([`compelling_evidence_3`]), and `submit=true`
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
//! nothing left to accept; before evidence it reads the dispute too: once it is under review or closed the
//! evidence is not sent again. A refund answered `pending` is likewise not yet a success: the step succeeds (and
//! the customer is told) only once Stripe says `succeeded`.

use reqwest::header::CONTENT_TYPE;
use verdict_domain::{Dispute, Money};

use serde_json::Value;

use super::http::{
    Multipart, at_most, base_url, client, json_body, json_str, retry_after, send_error, status_error_after,
};
use std::collections::BTreeMap;

use verdict_domain::EvidenceKind;

use super::config::{DEFAULT_STRIPE_BASE_URL, DEFAULT_STRIPE_FILES_BASE_URL};

use super::{EffectsError, ProcessorApi, ProcessorReply, StepError, Submission, SubmissionFile};

pub struct StripeApi {
    http: reqwest::Client,
    base_url: String,
    /// Where files are uploaded: `https://files.stripe.com` beside the production API.
    files_base_url: String,
    api_key: String,
}

impl StripeApi {
    /// `base_url` is `https://api.stripe.com` in production (a local fake in tests). Files go to
    /// `https://files.stripe.com` when `base_url` is Stripe's own API, to `base_url` otherwise (a fake or a
    /// proxy serves both); [`StripeApi::with_files_base_url`] says otherwise.
    pub fn new(base_url_text: &str, api_key: &str) -> Result<Self, EffectsError> {
        let base_url = base_url("stripe_base_url", base_url_text)?;
        let files_base_url = if base_url == DEFAULT_STRIPE_BASE_URL {
            DEFAULT_STRIPE_FILES_BASE_URL.to_owned()
        } else {
            base_url.clone()
        };
        Ok(Self {
            http: client()?,
            base_url,
            files_base_url,
            api_key: api_key.trim().to_owned(),
        })
    }

    /// Gives up on an answer after `timeout` (30 s by default); a timeout is a transient failure.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Self, EffectsError> {
        self.http = super::http::client_with_timeout(timeout)?;
        Ok(self)
    }

    /// Uploads files to `files_base_url` (`stripe_files_base_url`).
    pub fn with_files_base_url(mut self, files_base_url: &str) -> Result<Self, EffectsError> {
        self.files_base_url = base_url("stripe_files_base_url", files_base_url)?;
        Ok(self)
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
    let retry = retry_after(response.headers());
    let json = json_body(response).await;
    if !status.is_success() {
        let code = json_str(&json, &["error", "code"]).or_else(|| json_str(&json, &["error", "type"]));
        return Err(status_error_after(what, status, code, retry));
    }
    Ok(json)
}

/// Refund pages read at most when looking for Verdict's refund of a payment (100 refunds each).
const MAX_REFUND_PAGES: usize = 10;
/// Dispute statuses in which the cardholder already has the money: an acceptance has nothing left to do.
const CONCEDED_DISPUTE_STATUSES: [&str; 2] = ["lost", "charge_refunded"];
/// Closed dispute statuses: nothing can be sent any more.
const CLOSED_DISPUTE_STATUSES: [&str; 5] = ["lost", "won", "warning_closed", "charge_refunded", "prevented"];
/// Dispute statuses in which Stripe holds submitted evidence.
const UNDER_REVIEW_STATUSES: [&str; 2] = ["under_review", "warning_under_review"];

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

/// Stripe's file-valued evidence fields each take one file id (from `POST /v1/files`).
const FILE_FIELDS_BY_KIND: &[(EvidenceKind, &[&str])] = &[
    (
        EvidenceKind::ProofOfDelivery,
        &["shipping_documentation", "customer_signature"],
    ),
    (EvidenceKind::Tracking, &["shipping_documentation"]),
    (EvidenceKind::CustomerCommunication, &["customer_communication"]),
    (EvidenceKind::RefundPolicy, &["refund_policy"]),
    (EvidenceKind::Cancellation, &["cancellation_policy"]),
    (EvidenceKind::TermsAccepted, &["refund_policy", "cancellation_policy"]),
];

/// The field a file goes to when its own fields are taken or it has none.
const FALLBACK_FILE_FIELD: &str = "uncategorized_file";

/// Text fields and their length limits (Stripe's `maxLength`).
const TEXT_LIMITS: &[(&str, usize)] = &[
    ("access_activity_log", 20_000),
    ("cancellation_rebuttal", 20_000),
    ("customer_email_address", 5_000),
    ("customer_name", 5_000),
    ("customer_purchase_ip", 5_000),
    ("product_description", 20_000),
    ("refund_policy_disclosure", 20_000),
    ("shipping_address", 5_000),
    ("shipping_carrier", 5_000),
    ("shipping_date", 5_000),
    ("shipping_tracking_number", 5_000),
    ("uncategorized_text", 20_000),
];

/// A file to upload and the evidence field its id goes to.
pub(crate) struct StripeUpload<'a> {
    pub field: &'static str,
    pub file: &'a SubmissionFile,
    /// Names the upload in its idempotency key: `document`, or `item-<index>`.
    pub slot: String,
}

/// A submission in Stripe's terms.
pub(crate) struct StripeEvidence<'a> {
    pub text: BTreeMap<&'static str, String>,
    pub files: Vec<StripeUpload<'a>>,
    /// Files for which no field was free; they are not sent.
    pub left_out: usize,
}

impl StripeEvidence<'_> {
    /// The form of `POST /v1/disputes/{id}` before the file ids are added: text fields, the dispute's id in
    /// metadata, and `submit=true`.
    pub(crate) fn form(&self, dispute: &Dispute) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = self
            .text
            .iter()
            .map(|(key, value)| (format!("evidence[{key}]"), value.clone()))
            .collect();
        form.push(("metadata[verdict_dispute_id]".to_owned(), dispute.id.to_string()));
        form.push(("submit".to_owned(), "true".to_owned()));
        form
    }
}

fn joined<'a>(texts: impl Iterator<Item = &'a str>) -> Option<String> {
    let text = texts.collect::<Vec<_>>().join("\n\n");
    (!text.is_empty()).then_some(text)
}

/// Maps a submission to Stripe's evidence: items by kind to text and file fields, order facts to the
/// customer and shipping fields; the defense document goes to `uncategorized_file`.
pub(crate) fn stripe_evidence<'a>(dispute: &Dispute, submission: &'a Submission) -> StripeEvidence<'a> {
    use EvidenceKind as K;
    let facts = submission.facts.as_ref();
    let mut text: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut put = |field: &'static str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            let limit = TEXT_LIMITS
                .iter()
                .find(|(name, _)| *name == field)
                .map_or(5_000, |(_, limit)| *limit);
            text.insert(field, at_most(value.trim(), limit));
        }
    };

    put(
        "customer_name",
        facts
            .map(|f| f.customer.name.clone())
            .or_else(|| dispute.customer.name.as_ref().map(|n| n.expose().to_owned())),
    );
    put(
        "customer_email_address",
        facts
            .map(|f| f.customer.email.clone())
            .or_else(|| dispute.customer.email.as_ref().map(|e| e.expose().to_owned())),
    );
    put(
        "customer_purchase_ip",
        facts.and_then(|f| f.payment_checks.ip_address.clone()),
    );

    let described = joined(
        submission
            .texts(K::ProductDescription)
            .chain(submission.texts(K::ImeiSerialRecord)),
    );
    put(
        "product_description",
        described.or_else(|| {
            facts.and_then(|f| {
                joined(
                    f.lines
                        .iter()
                        .map(|line| {
                            let mut parts = vec![format!("{} (grade: {})", line.device_model, line.grade)];
                            parts.extend(line.imei_or_serial.iter().map(|i| format!("IMEI/serial {i}")));
                            parts.extend(line.description.clone());
                            parts.extend(line.grade_report.clone());
                            parts.join(". ")
                        })
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                )
            })
        }),
    );

    let shipment = facts.and_then(|f| f.shipment.as_ref());
    let mut other: Vec<String> = Vec::new();
    match shipment {
        Some(shipment) => {
            put("shipping_carrier", Some(shipment.carrier.clone()));
            put("shipping_tracking_number", Some(shipment.tracking_number.clone()));
            put(
                "shipping_date",
                shipment.shipped_at.map(|at| at.format("%Y-%m-%d").to_string()),
            );
            put("shipping_address", Some(shipment.address.one_line()));
            let mut delivery = Vec::new();
            if let Some(at) = shipment.delivered_at {
                delivery.push(format!("Delivered on {}", at.format("%Y-%m-%d")));
            }
            if let Some(signed_by) = &shipment.signed_by {
                delivery.push(format!("signed for by {signed_by}"));
            }
            if let Some(proof) = &shipment.proof_of_delivery {
                delivery.push(proof.clone());
            }
            if !delivery.is_empty() {
                other.push(format!("Delivery: {}.", delivery.join("; ")));
            }
            other.extend(joined(submission.texts(K::Tracking)).map(|t| format!("Tracking:\n{t}")));
        }
        // Stripe takes several tracking numbers separated by commas.
        None => put(
            "shipping_tracking_number",
            Some(submission.texts(K::Tracking).collect::<Vec<_>>().join(", ")),
        ),
    }

    let refund_policy = joined(submission.texts(K::RefundPolicy)).or_else(|| {
        facts.and_then(|f| {
            let policy = f.policies.refund_policy.clone()?;
            Some(match f.policies.terms_accepted_at {
                Some(at) => format!(
                    "{policy}\n\nShown at checkout and accepted by the customer on {}.",
                    at.format("%Y-%m-%d")
                ),
                None => policy,
            })
        })
    });
    put("refund_policy_disclosure", refund_policy);
    put("cancellation_rebuttal", joined(submission.texts(K::Cancellation)));
    put(
        "access_activity_log",
        joined(submission.texts(K::PriorUndisputedTransactions)),
    );

    if let Some(checks) = facts.map(|f| &f.payment_checks) {
        let mut results = Vec::new();
        results.extend(checks.avs_result.as_ref().map(|r| format!("AVS {r}")));
        results.extend(checks.cvv_result.as_ref().map(|r| format!("CVV {r}")));
        results.extend(checks.three_d_secure.as_ref().map(|r| format!("3-D Secure {r}")));
        if !results.is_empty() {
            other.push(format!("Payment checks: {}.", results.join(", ")));
        }
    }
    for (kind, heading) in [
        (K::ProofOfDelivery, "Proof of delivery"),
        (K::CustomerCommunication, "Customer communication"),
        (K::TermsAccepted, "Terms accepted"),
        (K::Photos, "Photos"),
        (K::Uncategorised, "Other"),
    ] {
        other.extend(joined(submission.texts(kind)).map(|t| format!("{heading}:\n{t}")));
    }
    put("uncategorized_text", joined(other.iter().map(String::as_str)));

    let mut taken: Vec<&'static str> = Vec::new();
    let mut files = Vec::new();
    let mut left_out = 0;
    if let Some(document) = &submission.document {
        taken.push(FALLBACK_FILE_FIELD);
        files.push(StripeUpload {
            field: FALLBACK_FILE_FIELD,
            file: document,
            slot: "document".to_owned(),
        });
    }
    for (index, item) in submission.items.iter().enumerate() {
        let Some(file) = &item.file else { continue };
        let own = FILE_FIELDS_BY_KIND
            .iter()
            .find(|(kind, _)| *kind == item.kind)
            .map_or(&[][..], |(_, fields)| *fields);
        let free = own
            .iter()
            .copied()
            .chain([FALLBACK_FILE_FIELD])
            .find(|field| !taken.contains(field));
        match free {
            Some(field) => {
                taken.push(field);
                files.push(StripeUpload {
                    field,
                    file,
                    slot: format!("item-{index}"),
                });
            }
            None => left_out += 1,
        }
    }
    StripeEvidence { text, files, left_out }
}

/// Where Visa Compelling Evidence 3.0 fields go.
const CE3: &str = "evidence[enhanced_evidence][visa_compelling_evidence_3]";

fn address_fields(prefix: &str, address: &verdict_domain::facts::Address, out: &mut Vec<(String, String)>) {
    let mut lines = address.lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
    if let Some(line1) = lines.next() {
        out.push((format!("{prefix}[shipping_address][line1]"), at_most(line1, 5_000)));
    }
    let rest = lines.collect::<Vec<_>>().join(", ");
    if !rest.is_empty() {
        out.push((format!("{prefix}[shipping_address][line2]"), at_most(&rest, 5_000)));
    }
    for (field, value) in [
        ("postal_code", &address.postal_code),
        ("city", &address.city),
        ("country", &address.country),
    ] {
        if !value.trim().is_empty() {
            out.push((
                format!("{prefix}[shipping_address][{field}]"),
                at_most(value.trim(), 5_000),
            ));
        }
    }
}

/// Visa Compelling Evidence 3.0, sent only when Stripe lists the dispute as eligible
/// (`enhanced_eligibility_types`): the disputed payment's identifiers and exactly two prior undisputed
/// Stripe charges, paid 120 to 365 days before the order, that share its IP address or device id (the two
/// most recent). Without two such charges nothing is sent and the ordinary evidence stands alone.
pub(crate) fn compelling_evidence_3(submission: &Submission) -> Vec<(String, String)> {
    let Some(facts) = submission.facts.as_ref() else {
        return Vec::new();
    };
    let checks = &facts.payment_checks;
    let shares = |ip: &Option<String>, device: &Option<String>| {
        let same = |a: &Option<String>, b: &Option<String>| matches!((a.as_deref(), b.as_deref()), (Some(a), Some(b)) if !a.trim().is_empty() && a.trim() == b.trim());
        same(ip, &checks.ip_address) || same(device, &checks.device_id)
    };
    let mut priors: Vec<_> = facts
        .prior_transactions
        .iter()
        .filter(|p| !p.disputed)
        .filter(|p| p.payment_reference.starts_with("ch_") || p.payment_reference.starts_with("py_"))
        .filter(|p| {
            let age = facts.placed_at - p.paid_at;
            age >= chrono::Duration::days(120) && age <= chrono::Duration::days(365)
        })
        .filter(|p| shares(&p.ip_address, &p.device_id))
        .collect();
    if priors.len() < 2 {
        return Vec::new();
    }
    priors.sort_by_key(|p| std::cmp::Reverse(p.paid_at));
    let mut out = Vec::new();
    let disputed = format!("{CE3}[disputed_transaction]");
    let put = |out: &mut Vec<(String, String)>, prefix: &str, field: &str, value: Option<&str>| {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            out.push((format!("{prefix}[{field}]"), at_most(value, 5_000)));
        }
    };
    put(
        &mut out,
        &disputed,
        "customer_account_id",
        Some(&facts.customer.account_id),
    );
    put(&mut out, &disputed, "customer_device_id", checks.device_id.as_deref());
    put(
        &mut out,
        &disputed,
        "customer_email_address",
        Some(&facts.customer.email),
    );
    put(
        &mut out,
        &disputed,
        "customer_purchase_ip",
        checks.ip_address.as_deref(),
    );
    put(&mut out, &disputed, "merchandise_or_services", Some("merchandise"));
    put(
        &mut out,
        &disputed,
        "product_description",
        facts.lines.first().map(|l| l.device_model.as_str()),
    );
    if let Some(shipment) = &facts.shipment {
        address_fields(&disputed, &shipment.address, &mut out);
    }
    for (index, prior) in priors.into_iter().take(2).enumerate() {
        let prefix = format!("{CE3}[prior_undisputed_transactions][{index}]");
        put(&mut out, &prefix, "charge", Some(&prior.payment_reference));
        put(&mut out, &prefix, "customer_account_id", prior.account_id.as_deref());
        put(&mut out, &prefix, "customer_device_id", prior.device_id.as_deref());
        put(&mut out, &prefix, "customer_purchase_ip", prior.ip_address.as_deref());
        if let Some(address) = &prior.shipping_address {
            address_fields(&prefix, address, &mut out);
        }
    }
    out
}

impl StripeApi {
    /// Uploads one evidence file (`POST {files}/v1/files`, `purpose=dispute_evidence`); answers its id.
    async fn upload(&self, file: &SubmissionFile, idempotency_key: &str) -> Result<String, StepError> {
        let what = "stripe: uploading an evidence file";
        let (content_type, body) = Multipart::new()
            .text("purpose", "dispute_evidence")
            .file("file", &file.file_name, file.content_type.mime(), &file.bytes)
            .finish();
        let response = self
            .http
            .post(format!("{}/v1/files", self.files_base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let json = stripe_answer(what, response).await?;
        json_str(&json, &["id"])
            .filter(|id| id.starts_with("file_"))
            .ok_or_else(|| StepError::Transient(format!("{what}: the answer has no file id")))
    }
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
        // Asking before acting: evidence already under review (a retry whose first answer was lost, after
        // Stripe forgot the key) or a closed dispute is not sent again.
        let current = self
            .get("stripe: reading the dispute", &format!("/v1/disputes/{id}"))
            .await?;
        let status = json_str(&current, &["status"]).unwrap_or_default();
        let submissions = current
            .pointer("/evidence_details/submission_count")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        if submissions > 0 || UNDER_REVIEW_STATUSES.contains(&status.as_str()) {
            tracing::info!(%status, "the dispute's evidence is already with Stripe; not sending it again");
            return Ok(ProcessorReply {
                reference: json_str(&current, &["id"]),
                decided_outcome: None,
                acknowledged_only: false,
            });
        }
        if CLOSED_DISPUTE_STATUSES.contains(&status.as_str()) {
            // Closed before anything was sent (an auto-loss at the deadline, say): not a submission.
            return Err(StepError::Permanent(format!(
                "stripe: the dispute was closed ({status}) before any evidence was sent"
            )));
        }
        let evidence = stripe_evidence(dispute, submission);
        if evidence.left_out > 0 {
            tracing::warn!(
                left_out = evidence.left_out,
                "Stripe takes one file per evidence field: files without a free field are not sent (the defense \
                 document lists every item)"
            );
        }
        let mut form = evidence.form(dispute);
        let ce3_eligible = current
            .get("enhanced_eligibility_types")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("visa_compelling_evidence_3")));
        if ce3_eligible {
            form.extend(compelling_evidence_3(submission));
        }
        for upload in &evidence.files {
            let file_id = self
                .upload(upload.file, &format!("{idempotency_key}:file:{}", upload.slot))
                .await?;
            form.push((format!("evidence[{}]", upload.field), file_id));
        }
        let json = self
            .post(
                "stripe: submitting evidence",
                &format!("/v1/disputes/{id}"),
                &form,
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
        let status = json_str(&current, &["status"]).unwrap_or_default();
        if CONCEDED_DISPUTE_STATUSES.contains(&status.as_str()) {
            tracing::info!(%status, "the dispute is already closed for the cardholder at Stripe; nothing to accept");
            return Ok(ProcessorReply {
                reference: json_str(&current, &["id"]),
                decided_outcome: None,
                acknowledged_only: false,
            });
        }
        if CLOSED_DISPUTE_STATUSES.contains(&status.as_str()) {
            return Err(StepError::Permanent(format!(
                "stripe: the dispute was closed ({status}) before the acceptance was sent"
            )));
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
