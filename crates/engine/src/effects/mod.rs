//! Step handlers: the side effects that decisions ask for, performed by workers against outside systems.
//!
//! Each outside system is a trait with a real adapter and a local default, so Verdict runs end to end with
//! nothing installed:
//!
//! | system | trait | real adapter | local default |
//! |---|---|---|---|
//! | processor API (evidence, accept, refund) | [`ProcessorApi`] | [`StripeApi`], [`AdyenApi`], [`PaypalApi`], [`BraintreeApi`] | none: the step waits for an adapter ([`WAITING_FOR_ADAPTER`]); [`SandboxProcessor`] only with `sandbox` (demo, tests) |
//! | mail to customers | [`Mailer`] | [`SmtpMailer`] | [`Mailbox`] (a table shown in GraphQL) |
//! | seller channel | [`SellerChannel`] | [`SellerWebhook`] (HMAC-signed) | [`Mailbox`] |
//! | assignee notices | — | — | [`Mailbox`] |
//!
//! The sandbox processor invents outcomes (every refund and acceptance done, won or lost by a fixed rule), so
//! it is used only when the configuration says `sandbox = true`, which `verdict demo` does and `verdict serve`
//! refuses. Without it, a processor step for a processor that has no adapter (manual disputes, or any
//! processor without credentials) is dead-lettered at once with a `waiting_for_adapter: ...`
//! reason, visible in GraphQL (`deadLetteredSteps`, `Dispute.steps`): nothing is sent, nothing succeeds, no
//! outcome is invented, and a lead retries it once the adapter is configured.
//!
//! A refund's success enqueues the customer's "we have refunded you" message in the same transaction that
//! records the refund ([`StepOutcome::DoneThen`]), so the message exists only once the refund is known done.
//!
//! Every call carries the step's idempotency key where the outside system sees it (the processor's
//! `Idempotency-Key` header, the mailbox's unique message id, the webhook's header and body), so a step that
//! is retried after a crash is performed effectively once.
//!
//! ## Submissions and processors
//! Evidence reaches a processor as one processor-neutral [`Submission`] (the defense document, typed evidence
//! items, the order facts); each adapter maps it to its processor's format:
//!
//! | processor | evidence | accept | refund | idempotency; what is read before re-sending |
//! |---|---|---|---|---|
//! | Stripe | each file `POST files.stripe.com/v1/files`, then `POST /v1/disputes/{id}` with `evidence[...]` text and file fields, `submit=true` | `POST /v1/disputes/{id}/close` | `POST /v1/refunds` | `Idempotency-Key` (~24 h; uploads `<key>:file:<slot>`); the dispute (evidence, acceptance), the payment's refunds |
//! | Adyen | `supplyDefenseDocument` (base64, type codes of the reason chosen from `retrieveApplicableDefenseReasons`), `defendDispute` | `acceptDispute` | Checkout `payments/{psp}/refunds` | `Idempotency-Key` (≤ 64 chars, 31 days; not declared by the Disputes API); the reasons' `available` document types |
//! | PayPal | `provide-evidence` (multipart `input` JSON + `evidence-file`) | `accept-claim` | `POST /v2/payments/captures/{id}/refund` | `PayPal-Request-Id` (refunds: 45 days); the dispute's status |
//! | Braintree | text evidence, document upload + file evidence, `finalize` (XML as the Ruby SDK renders it) | `PUT /disputes/{id}/accept` | `POST /transactions/{id}/refund` | refund `api-request-key`; the dispute's status and its attached evidence |
//!
//! A processor's `Retry-After` becomes [`StepError::RetryAfter`], and the worker does not try again sooner.

mod adyen;
mod braintree;
mod config;
mod http;
mod mailer;
mod outbound;
mod payout;
mod paypal;
mod processor;
mod reconcile;
mod sandbox;
mod seller;
mod stripe;
mod submission;
mod templates;

use std::sync::Arc;

use chrono::Duration;
use tracing::instrument;
use verdict_domain::{Action, Dispute, Processor, StepKind};
use verdict_facts::{FactsError, MarketplaceFacts, OrderLookup, TablesFacts};
use verdict_store::Store;

use crate::Clock;

pub use adyen::{AdyenApi, DOCUMENT_TYPES_BY_KIND, GENERIC_DOCUMENT_TYPE};
pub use braintree::{BraintreeApi, api_request_key as braintree_api_request_key};
pub use config::{
    DEFAULT_OUTBOUND_MAX_ATTEMPTS, EffectsConfig, MailConfig, OutboundWebhookConfig, ProcessorsConfig,
    SellerWebhookConfig, outbound_routes,
};
pub use mailer::{Delivery, Mailbox, Mailer, OutgoingMail, SmtpMailer};
pub use outbound::{EVENT_HEADER, OutboundWebhooks};
pub use payout::{FakePayouts, HttpPayouts, PayoutService, RecoveryRequest, SellersConfig};
pub use paypal::PaypalApi;
pub use processor::{
    DefenseDocument, Evidence, ProcessorApi, ProcessorReply, Submission, SubmissionFile, SubmissionItem,
};
pub use reconcile::{LOOKBACK_DAYS, MAX_PAGES, StripeReconciler, synthetic_event};
pub use sandbox::{SandboxProcessor, sandbox_outcome};
pub use seller::{SellerChannel, SellerNotice, SellerWebhook, sign_webhook, verify_webhook_signature};
pub use stripe::StripeApi;
pub use submission::{StoredSubmission, SubmissionSource};
pub use templates::{MessageExtras, MessageKind, RenderedMessage, Templates, format_amount};

fn nonblank(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

/// What a worker hands to a step handler: the step and the dispute as it is now.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub step_id: uuid::Uuid,
    pub kind: StepKind,
    /// Stable across retries; the outside system sees it, which makes the step effectively once.
    pub idempotency_key: String,
    /// 1 for the first try.
    pub attempt: i32,
    pub dispute: Dispute,
    pub payload: Option<serde_json::Value>,
}

/// A performed step, and optionally a command to feed back into the engine later.
// One lives per performed step, briefly: boxing the follow-up would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Done {
        follow_up: Option<Action>,
        follow_up_after: Option<Duration>,
    },
    /// Done, and these steps of the same dispute are enqueued in the transaction that records it: they exist
    /// exactly when this step is known to have succeeded (the customer's refund message after the refund).
    DoneThen { next: Vec<NextStep> },
}

/// A step enqueued by another step's success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    pub kind: StepKind,
    pub idempotency_key: String,
    pub payload: Option<serde_json::Value>,
}

/// The reason a processor step is dead-lettered when its processor has no adapter (and no sandbox is
/// configured); `last_error` starts with it.
pub const WAITING_FOR_ADAPTER: &str = "waiting_for_adapter";

/// The idempotency key of the customer message that follows a refund: the refund's key with its step kind
/// replaced, as the decision would have named it (`<dispute>:<version>:customer_message`).
pub fn refund_message_key(refund_key: &str) -> String {
    let stem = refund_key
        .strip_suffix(StepKind::Refund.as_str())
        .and_then(|k| k.strip_suffix(':'))
        .unwrap_or(refund_key);
    format!("{stem}:{}", StepKind::CustomerMessage.as_str())
}

/// What an analyst's message or refund step carries beyond the dispute (see `decide`'s step payloads).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct StepPayload {
    /// The message template's name.
    template: Option<String>,
    /// The analyst's free text.
    text: Option<String>,
    locale: Option<verdict_domain::Locale>,
    /// A refund's own amount (partial refunds); the disputed amount otherwise.
    amount: Option<PayloadAmount>,
    /// The refund's message is recorded as sent (`record_message`), or this message is (`record_sent`).
    record_message: bool,
    record_sent: bool,
}

#[derive(Debug, serde::Deserialize)]
struct PayloadAmount {
    minor_units: i64,
    currency: String,
}

impl StepPayload {
    fn read(payload: Option<&serde_json::Value>) -> Result<Self, StepError> {
        match payload {
            None | Some(serde_json::Value::Null) => Ok(Self::default()),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| StepError::Permanent(format!("the step's payload is malformed: {e}"))),
        }
    }

    fn amount(&self) -> Result<Option<verdict_domain::Money>, StepError> {
        self.amount
            .as_ref()
            .map(|a| {
                verdict_domain::Currency::parse(&a.currency)
                    .and_then(|c| verdict_domain::Money::new(a.minor_units, c))
                    .map_err(|e| StepError::Permanent(format!("the step's amount is malformed: {e}")))
            })
            .transpose()
    }

    fn extras(&self) -> Result<MessageExtras, StepError> {
        Ok(MessageExtras {
            text: self.text.clone().filter(|t| !t.trim().is_empty()),
            amount: self.amount()?,
        })
    }
}

/// The follow-up that records a message as sent, when its step asks for it: the event exists only once the
/// message went out.
fn sent(record: bool, channel: verdict_domain::MessageChannel, kind: MessageKind, message_id: &str) -> StepOutcome {
    if !record {
        return StepOutcome::done();
    }
    StepOutcome::Done {
        follow_up: Some(Action::RecordMessageSent {
            channel,
            template: kind.name().to_owned(),
            message_id: message_id.to_owned(),
        }),
        follow_up_after: None,
    }
}

impl StepOutcome {
    /// Done, nothing further to do.
    pub fn done() -> Self {
        StepOutcome::Done {
            follow_up: None,
            follow_up_after: None,
        }
    }
}

/// Why a step failed: a transient failure is retried with backoff, a permanent one is dead-lettered at once.
///
/// The text is stored as the step's `last_error` and shown in GraphQL, so it never carries personal data or
/// response bodies: only statuses, error codes and what Verdict was doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
    /// Transient, and the outside system said when to come back (HTTP 429 or 503 with `Retry-After`): the
    /// next attempt is not made before `retry_after`.
    #[error("transient: {message} (retry after {}s)", retry_after.as_secs())]
    RetryAfter {
        message: String,
        retry_after: std::time::Duration,
    },
}

impl StepError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StepError::Transient(_) | StepError::RetryAfter { .. })
    }

    /// What failed, without the transient/permanent prefix (stored as the step's `last_error`).
    pub fn message(&self) -> &str {
        match self {
            StepError::Transient(m) | StepError::Permanent(m) | StepError::RetryAfter { message: m, .. } => m,
        }
    }

    /// The earliest time to try again that the outside system asked for, if it asked.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            StepError::RetryAfter { retry_after, .. } => Some(*retry_after),
            StepError::Transient(_) | StepError::Permanent(_) => None,
        }
    }
}

/// Performs one step; the worker pool calls it and turns the result into retries or follow-up commands.
#[async_trait::async_trait]
pub trait StepPerformer: Send + Sync + 'static {
    async fn perform(&self, ctx: &StepContext) -> Result<StepOutcome, StepError>;
}

/// A configuration that cannot work (a malformed URL, an unusable TLS setup).
#[derive(Debug, thiserror::Error)]
pub enum EffectsError {
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The step handlers, dispatching by [`StepKind`] to the configured outside systems.
#[derive(Clone)]
pub struct Effects {
    stripe: Option<Arc<dyn ProcessorApi>>,
    adyen: Option<Arc<dyn ProcessorApi>>,
    paypal: Option<Arc<dyn ProcessorApi>>,
    braintree: Option<Arc<dyn ProcessorApi>>,
    /// The adapter for processors without a configured one: manual disputes, and Stripe, Adyen, PayPal or
    /// Braintree without credentials. `None` (serve): their steps wait for an adapter.
    sandbox: Option<Arc<dyn ProcessorApi>>,
    mailer: Arc<dyn Mailer>,
    seller: Arc<dyn SellerChannel>,
    mailbox: Mailbox,
    templates: Arc<Templates>,
    sandbox_outcome_delay: Duration,
    /// Builds what a submission sends from stored evidence, the defense document and the order facts; without
    /// one, a submission sends what its step's payload holds.
    submissions: Option<Arc<dyn SubmissionSource>>,
    /// Where the link step finds a dispute's order.
    facts: Arc<dyn MarketplaceFacts>,
    /// When a seller's answer is due, for the seller task a link opens.
    seller_tasks: verdict_domain::SellerTaskPolicy,
    /// The marketplace's payout service; without one, recoveries wait (dead-lettered, visible).
    payouts: Option<Arc<dyn PayoutService>>,
    /// Where recoveries are recorded.
    store: Store,
    clock: Arc<dyn Clock>,
    /// The configured `[[outbound_webhooks]]`; none: their steps (from an earlier configuration) fail.
    outbound: Option<OutboundWebhooks>,
}

impl Effects {
    /// Real adapters where the configuration names them, the mailbox for messages that have no transport
    /// configured, and the sandbox processor only when `config.sandbox` is set (demo and tests).
    pub fn from_config(config: &EffectsConfig, store: Store, clock: Arc<dyn Clock>) -> Result<Self, EffectsError> {
        let mut effects = Self::local(store.clone(), clock.clone());
        if !config.sandbox {
            effects.sandbox = None;
        }
        effects.sandbox_outcome_delay =
            Duration::seconds(config.sandbox_outcome_delay_secs.min(i64::MAX as u64) as i64);
        let processors = &config.processors;
        if let Some(key) = processors.stripe_api_key.as_deref().filter(|k| !k.trim().is_empty()) {
            let mut stripe = StripeApi::new(&processors.stripe_base_url, key)?;
            if let Some(files) = processors
                .stripe_files_base_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
            {
                stripe = stripe.with_files_base_url(files)?;
            }
            effects.stripe = Some(Arc::new(stripe));
        }
        if let (Some(id), Some(secret)) = (
            nonblank(&processors.paypal_client_id),
            nonblank(&processors.paypal_client_secret),
        ) {
            effects.paypal = Some(Arc::new(PaypalApi::new(&processors.paypal_base_url, id, secret)?));
        }
        if let (Some(merchant), Some(public), Some(private)) = (
            nonblank(&processors.braintree_merchant_id),
            nonblank(&processors.braintree_public_key),
            nonblank(&processors.braintree_private_key),
        ) {
            effects.braintree = Some(Arc::new(BraintreeApi::new(
                &processors.braintree_base_url,
                merchant,
                public,
                private,
            )?));
        }
        if let (Some(key), Some(merchant)) = (
            processors.adyen_api_key.as_deref().filter(|k| !k.trim().is_empty()),
            processors
                .adyen_merchant_account
                .as_deref()
                .filter(|m| !m.trim().is_empty()),
        ) {
            effects.adyen = Some(Arc::new(AdyenApi::new(
                &processors.adyen_disputes_base_url,
                &processors.adyen_checkout_base_url,
                key,
                merchant,
            )?));
        }
        if let Some(url) = config.mail.smtp_url.as_deref().filter(|u| !u.trim().is_empty()) {
            effects.mailer = Arc::new(SmtpMailer::new(url, &config.mail.from, Some(effects.mailbox.clone()))?);
        }
        if let (Some(url), Some(secret)) = (
            config.seller_webhook.url.as_deref().filter(|u| !u.trim().is_empty()),
            config.seller_webhook.secret.as_deref().filter(|s| !s.is_empty()),
        ) {
            effects.seller =
                Arc::new(SellerWebhook::new(url, secret, clock.clone())?.with_log(effects.mailbox.clone()));
        }
        if !config.outbound_webhooks.is_empty() {
            effects.outbound = Some(OutboundWebhooks::new(&config.outbound_webhooks, store, clock)?);
        }
        effects.seller_tasks = config.sellers.task_policy()?;
        if let Some(url) = config.sellers.payout_url.as_deref().filter(|u| !u.trim().is_empty()) {
            effects.payouts = Some(Arc::new(HttpPayouts::new(url, config.sellers.payout_token.as_deref())?));
        } else if config.sandbox {
            // The demo's stand-in, like the sandbox processor: recoveries show as debited. Never in `serve`.
            effects.payouts = Some(Arc::new(FakePayouts::default()));
        }
        tracing::info!(
            payouts = effects.payouts.is_some(),
            stripe = effects.stripe.is_some(),
            adyen = effects.adyen.is_some(),
            paypal = effects.paypal.is_some(),
            braintree = effects.braintree.is_some(),
            sandbox = config.sandbox,
            smtp = config.mail.smtp_url.is_some(),
            seller_webhook = config.seller_webhook.url.is_some(),
            outbound_webhooks = config.outbound_webhooks.len(),
            "step handlers configured (messages without a transport go to the mailbox)"
        );
        if config.sandbox {
            tracing::warn!(
                "SANDBOX PROCESSOR ON: processors without an adapter report every refund and acceptance as done, \
                 outcomes are invented by a fixed rule, and seller recoveries are debited from no real payout \
                 (unless [sellers] payout_url is set); for demos and tests only"
            );
        }
        Ok(effects)
    }

    /// Every outside system replaced by its local stand-in: the sandbox processor and the mailbox. For tests and
    /// the demo only: the sandbox invents outcomes.
    pub fn local(store: Store, clock: Arc<dyn Clock>) -> Self {
        let facts: Arc<dyn MarketplaceFacts> = Arc::new(TablesFacts::new(store.db().clone()));
        let mailbox = Mailbox::new(store.clone(), clock.clone());
        Self {
            stripe: None,
            adyen: None,
            paypal: None,
            braintree: None,
            sandbox: Some(Arc::new(SandboxProcessor)),
            mailer: Arc::new(mailbox.clone()),
            seller: Arc::new(mailbox.clone()),
            mailbox,
            templates: Arc::new(Templates::new()),
            sandbox_outcome_delay: Duration::seconds(config::DEFAULT_SANDBOX_OUTCOME_DELAY_SECS as i64),
            submissions: None,
            facts,
            seller_tasks: verdict_domain::SellerTaskPolicy::default(),
            payouts: None,
            store,
            clock,
            outbound: None,
        }
    }

    /// Seller tasks opened by the link step are due as `policy` says.
    pub fn with_seller_tasks(mut self, policy: verdict_domain::SellerTaskPolicy) -> Self {
        self.seller_tasks = policy;
        self
    }

    /// Recoveries are debited through `payouts`.
    pub fn with_payouts(mut self, payouts: Arc<dyn PayoutService>) -> Self {
        self.payouts = Some(payouts);
        self
    }

    /// The marketplace facts the link step asks (the engine's, as configured by `[marketplace]`).
    pub fn with_facts(mut self, facts: Arc<dyn MarketplaceFacts>) -> Self {
        self.facts = facts;
        self
    }

    /// Replaces the adapter used for one processor's disputes (manual disputes use the sandbox's place).
    pub fn with_processor(mut self, processor: Processor, api: Arc<dyn ProcessorApi>) -> Self {
        match processor {
            Processor::Stripe => self.stripe = Some(api),
            Processor::Adyen => self.adyen = Some(api),
            Processor::Paypal => self.paypal = Some(api),
            Processor::Braintree => self.braintree = Some(api),
            Processor::Manual => self.sandbox = Some(api),
        }
        self
    }

    /// Without the sandbox: processor steps of processors that have no adapter wait for one (as `serve` runs).
    pub fn without_sandbox(mut self) -> Self {
        self.sandbox = None;
        self
    }

    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    pub fn with_seller_channel(mut self, seller: Arc<dyn SellerChannel>) -> Self {
        self.seller = seller;
        self
    }

    /// Submissions are built from stored evidence, the defense document and the order facts.
    pub fn with_submissions(mut self, submissions: Arc<dyn SubmissionSource>) -> Self {
        self.submissions = Some(submissions);
        self
    }

    pub fn with_sandbox_outcome_delay(mut self, delay: Duration) -> Self {
        self.sandbox_outcome_delay = delay;
        self
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// The processor adapter for a dispute: the real one when configured, otherwise the sandbox if there is
    /// one, otherwise a permanent [`WAITING_FOR_ADAPTER`] failure: the step is dead-lettered with that reason
    /// and nothing is sent. Manual disputes have no real adapter: they are acted on outside Verdict.
    fn processor_for(&self, dispute: &Dispute) -> Result<&Arc<dyn ProcessorApi>, StepError> {
        let (configured, how) = match dispute.processor {
            Processor::Stripe => (self.stripe.as_ref(), "set [processors] stripe_api_key"),
            Processor::Adyen => (
                self.adyen.as_ref(),
                "set [processors] adyen_api_key and adyen_merchant_account",
            ),
            Processor::Paypal => (
                self.paypal.as_ref(),
                "set [processors] paypal_client_id and paypal_client_secret",
            ),
            Processor::Braintree => (
                self.braintree.as_ref(),
                "set [processors] braintree_merchant_id, braintree_public_key and braintree_private_key",
            ),
            Processor::Manual => (None, "a manual dispute is acted on outside Verdict"),
        };
        configured.or(self.sandbox.as_ref()).ok_or_else(|| {
            StepError::Permanent(format!(
                "{WAITING_FOR_ADAPTER}: no {} adapter is configured ({how}); nothing was sent to the processor; \
                 retry the step once an adapter is configured, or cancel it",
                dispute.processor
            ))
        })
    }

    async fn submit_evidence(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        // The processor first: a step that waits for an adapter reads and renders nothing.
        let api = self.processor_for(&ctx.dispute)?;
        // A step with its own evidence payload sends that; otherwise the stored evidence, the defense document and
        // the order facts, read now.
        let has_payload = ctx.payload.as_ref().is_some_and(|p| !p.is_null());
        let submission = match &self.submissions {
            Some(source) if !has_payload => source.submission(&ctx.dispute).await?,
            _ => Evidence::from_payload(ctx.payload.as_ref())?.into_submission()?,
        };
        let reply = api
            .submit_evidence(&ctx.dispute, &submission, &ctx.idempotency_key)
            .await?;
        tracing::info!(processor = api.name(), reference = ?reply.reference, "evidence submitted");
        Ok(match reply.decided_outcome {
            // The sandbox decides at once; the outcome is recorded later, as a processor's would be.
            Some(won) => StepOutcome::Done {
                follow_up: Some(Action::ReceiveOutcome { won, stage: None }),
                follow_up_after: Some(self.sandbox_outcome_delay),
            },
            // A real processor reports the outcome through its webhook.
            None => StepOutcome::done(),
        })
    }

    async fn accept(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let api = self.processor_for(&ctx.dispute)?;
        let reply = api.accept_dispute(&ctx.dispute, &ctx.idempotency_key).await?;
        tracing::info!(processor = api.name(), reference = ?reply.reference, "dispute accepted at the processor");
        Ok(StepOutcome::done())
    }

    async fn refund(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        // A chargeback has already taken the money back from the merchant: refunding as well would pay the
        // customer twice. Refunds settle inquiries and pre-dispute alerts only.
        if !ctx.dispute.stage.is_pre_chargeback() {
            return Err(StepError::Permanent(format!(
                "refusing to refund a dispute at stage {}: the chargeback already returned the funds",
                ctx.dispute.stage
            )));
        }
        let payload = StepPayload::read(ctx.payload.as_ref())?;
        // A partial refund names its amount; older refund steps (resolving) refund the disputed amount.
        let amount = payload.amount()?.unwrap_or(ctx.dispute.amount);
        if amount.currency() != ctx.dispute.amount.currency() || amount.minor_units() > ctx.dispute.amount.minor_units()
        {
            return Err(StepError::Permanent(format!(
                "refusing to refund {amount} on a dispute of {}",
                ctx.dispute.amount
            )));
        }
        let api = self.processor_for(&ctx.dispute)?;
        let reply = api.refund(&ctx.dispute, amount, &ctx.idempotency_key).await?;
        tracing::info!(processor = api.name(), reference = ?reply.reference, "refund issued");
        // The adapter answers Ok only once the refund has succeeded at the processor (a pending one is a
        // transient failure, checked again later), or, where the processor only acknowledges refunds and reports
        // their result later (Adyen), once it has acknowledged it: the customer is told what is known now.
        let told = if reply.acknowledged_only {
            templates::MessageKind::CustomerRefundRequested
        } else {
            templates::MessageKind::CustomerRefundIssued
        };
        Ok(StepOutcome::DoneThen {
            next: vec![NextStep {
                kind: StepKind::CustomerMessage,
                idempotency_key: refund_message_key(&ctx.idempotency_key),
                payload: Some(serde_json::json!({
                    "template": told.name(),
                    "refund_reference": reply.reference,
                    "amount": payload.amount.as_ref().map(|a| serde_json::json!({
                        "minor_units": a.minor_units, "currency": a.currency,
                    })),
                    "record_sent": payload.record_message,
                })),
            }],
        })
    }

    async fn customer_message(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let dispute = &ctx.dispute;
        let Some(email) = dispute.customer.email.as_ref() else {
            tracing::info!("the customer has no email address; nothing to send");
            return Ok(StepOutcome::done());
        };
        let payload = StepPayload::read(ctx.payload.as_ref())?;
        let kind = MessageKind::for_customer(dispute, ctx.payload.as_ref());
        if let Some(name) = payload.template.as_deref()
            && name != kind.name()
        {
            return Err(StepError::Permanent(format!(
                "unknown customer message template `{name}`"
            )));
        }
        let locale = payload.locale.unwrap_or(dispute.customer.locale);
        let rendered = self.templates.render_with(kind, locale, dispute, &payload.extras()?)?;
        let mail = OutgoingMail {
            dispute_id: dispute.id,
            channel: verdict_store::MailboxChannel::Customer,
            recipient: email.expose().to_owned(),
            locale,
            subject: rendered.subject,
            body: rendered.body,
            message_id: ctx.idempotency_key.clone(),
        };
        let delivery = self.mailer.send(&mail).await?;
        tracing::info!(
            kind = kind.name(),
            locale = locale.as_str(),
            ?delivery,
            "customer message"
        );
        Ok(sent(
            payload.record_sent,
            verdict_domain::MessageChannel::Customer,
            kind,
            &ctx.idempotency_key,
        ))
    }

    async fn seller_message(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let mut notice = SellerNotice::for_dispute(&ctx.dispute, &ctx.idempotency_key, &self.templates)?;
        let payload = StepPayload::read(ctx.payload.as_ref())?;
        // An analyst's message names its template; the outcome notice is the default.
        let kind = match payload.template.as_deref() {
            None => MessageKind::SellerOutcome,
            Some(name) => {
                let template: verdict_domain::MessageTemplate =
                    name.parse().map_err(|e| StepError::Permanent(format!("{e}")))?;
                if template.channel() != verdict_domain::MessageChannel::Seller {
                    return Err(StepError::Permanent(format!("`{name}` is not a message to the seller")));
                }
                let kind = MessageKind::of_template(template);
                let locale = payload.locale.unwrap_or_default();
                let rendered = self
                    .templates
                    .render_with(kind, locale, &ctx.dispute, &payload.extras()?)?;
                notice.event = "dispute.message".to_owned();
                notice.subject = rendered.subject;
                notice.body = rendered.body;
                kind
            }
        };
        let delivery = self.seller.notify(&notice).await?;
        tracing::info!(event = %notice.event, ?delivery, "seller message");
        Ok(sent(
            payload.record_sent,
            verdict_domain::MessageChannel::Seller,
            kind,
            &ctx.idempotency_key,
        ))
    }

    /// Finds the dispute's order by the references its notification carried and records what came of it: the
    /// link (seller and customer from the order) or that no order matched. An unavailable source is a transient
    /// failure, retried with backoff and dead-lettered like any step; an answer that cannot be read is permanent.
    async fn link_order(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let references = verdict_domain::link_references(ctx.payload.as_ref());
        let lookup = OrderLookup::from_references(ctx.dispute.processor, &references);
        let source = self.facts.name().to_owned();
        let found = self.facts.find_order(&lookup).await.map_err(|err| match err {
            FactsError::Unavailable(message) => StepError::Transient(message),
            other => StepError::Permanent(other.to_string()),
        })?;
        let action = match found {
            Some(order) => {
                tracing::info!(source = %source, "order found");
                let seller_task =
                    verdict_domain::SellerTask::for_order(&ctx.dispute, &order, &self.seller_tasks, self.clock.now());
                Action::LinkOrder {
                    customer: order.dispute_customer(),
                    profile: Some(order.profile()),
                    order_reference: order.order_reference,
                    source,
                    seller_id: order.seller.seller_id,
                    seller_task,
                }
            }
            None => {
                let tried: Vec<_> = references.iter().map(|r| r.kind).collect();
                tracing::info!(source = %source, tried = tried.len(), "no order matches the dispute's references");
                Action::RecordOrderNotFound { source, tried }
            }
        };
        Ok(StepOutcome::Done {
            follow_up: Some(action),
            follow_up_after: None,
        })
    }

    /// Records the recovery of a lost or accepted seller-owned dispute (once: the step's key is unique among
    /// recoveries) and debits it from the seller's payout through the payout service, whose idempotency key is
    /// the same; a retry after a lost answer debits nothing twice. Without a payout service the recovery is
    /// recorded and the step dead-lettered as waiting for one.
    async fn seller_recovery(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let payload = ctx
            .payload
            .clone()
            .ok_or_else(|| StepError::Permanent("a seller recovery step without its recovery".into()))?;
        let mut payload = payload;
        if let Some(map) = payload.as_object_mut() {
            map.insert(
                "recovery_id".into(),
                serde_json::Value::String(ctx.idempotency_key.clone()),
            );
        }
        let request: RecoveryRequest = serde_json::from_value(payload)
            .map_err(|err| StepError::Permanent(format!("unreadable recovery: {err}")))?;
        let recorded = self
            .store
            .record_recovery(
                &verdict_store::NewRecovery {
                    recovery_key: request.recovery_id.clone(),
                    dispute_id: ctx.dispute.id.as_uuid(),
                    seller_id: request.seller_id.clone(),
                    amount_minor_units: request.amount_minor_units,
                    currency: request.currency.clone(),
                    liability: request.liability.clone(),
                    outcome: request.outcome.clone(),
                },
                self.clock.now(),
            )
            .await
            .map_err(|err| StepError::Transient(format!("recording the recovery: {err}")))?;
        if recorded.payout_reference.is_some() {
            return Ok(StepOutcome::done());
        }
        let Some(payouts) = &self.payouts else {
            return Err(StepError::Permanent(format!(
                "{WAITING_FOR_ADAPTER}: no payout service is configured ([sellers] payout_url); the recovery is \
                 recorded and waits"
            )));
        };
        let reference = payouts.debit(&request).await?;
        self.store
            .mark_recovery_sent(&request.recovery_id, &reference, self.clock.now())
            .await
            .map_err(|err| StepError::Transient(format!("recording the debit: {err}")))?;
        tracing::info!(amount = request.amount_minor_units, "seller recovery debited");
        Ok(StepOutcome::done())
    }

    /// The assignee, or the dispute's queue while nobody is assigned (staff messages are in English).
    async fn notify_assignee(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let dispute = &ctx.dispute;
        let (kind, channel, recipient) = match dispute.assignee.as_deref() {
            Some(assignee) => (
                MessageKind::AssigneeAssigned,
                verdict_store::MailboxChannel::Assignee,
                assignee.to_owned(),
            ),
            None => (
                MessageKind::QueueAttention,
                verdict_store::MailboxChannel::Queue,
                templates::queue_name(dispute),
            ),
        };
        self.staff_message(ctx, kind, channel, recipient).await
    }

    /// An overdue outcome goes to the leads of the dispute's queue.
    async fn escalate_to_lead(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let queue = templates::queue_name(&ctx.dispute);
        self.staff_message(
            ctx,
            MessageKind::LeadEscalation,
            verdict_store::MailboxChannel::Lead,
            queue,
        )
        .await
    }

    async fn staff_message(
        &self,
        ctx: &StepContext,
        kind: MessageKind,
        channel: verdict_store::MailboxChannel,
        recipient: String,
    ) -> Result<StepOutcome, StepError> {
        let dispute = &ctx.dispute;
        let locale = verdict_domain::Locale::En;
        let rendered = self.templates.render(kind, locale, dispute)?;
        let mail = OutgoingMail {
            dispute_id: dispute.id,
            channel,
            recipient,
            locale,
            subject: rendered.subject,
            body: rendered.body,
            message_id: ctx.idempotency_key.clone(),
        };
        let delivery = self.mailbox.send(&mail).await?;
        tracing::info!(?delivery, channel = channel.as_str(), "staff notified");
        Ok(StepOutcome::done())
    }
}

#[async_trait::async_trait]
impl StepPerformer for Effects {
    #[instrument(
        skip_all,
        fields(dispute_id = %ctx.dispute.id, step = ctx.kind.as_str(), attempt = ctx.attempt),
        err
    )]
    async fn perform(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        match ctx.kind {
            StepKind::NotifyAssignee => self.notify_assignee(ctx).await,
            StepKind::EscalateToLead => self.escalate_to_lead(ctx).await,
            StepKind::AcceptAtProcessor => self.accept(ctx).await,
            StepKind::SubmitEvidence => self.submit_evidence(ctx).await,
            StepKind::Refund => self.refund(ctx).await,
            StepKind::CustomerMessage => self.customer_message(ctx).await,
            StepKind::SellerMessage => self.seller_message(ctx).await,
            StepKind::LinkOrder => self.link_order(ctx).await,
            StepKind::SellerRecovery => self.seller_recovery(ctx).await,
            StepKind::OutboundWebhook => match &self.outbound {
                Some(outbound) => outbound.deliver(ctx).await,
                None => Err(StepError::Permanent(
                    "no [[outbound_webhooks]] are configured any more; nothing was sent".into(),
                )),
            },
        }
    }
}
