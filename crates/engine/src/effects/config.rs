//! Which outside systems the step handlers talk to. Everything is optional: messages without a configured
//! transport go to the mailbox; processor steps without an adapter wait for one, unless `sandbox` is set
//! (demo and tests only), in which case the sandbox processor stands in and invents outcomes.
//!
//! `Debug` never prints a key or a secret.

use std::fmt;

use serde::Deserialize;

pub const DEFAULT_SANDBOX_OUTCOME_DELAY_SECS: u64 = 120;
pub const DEFAULT_STRIPE_BASE_URL: &str = "https://api.stripe.com";
/// Stripe's file uploads go to their own host (the spec's `servers` for `POST /v1/files`).
pub const DEFAULT_STRIPE_FILES_BASE_URL: &str = "https://files.stripe.com";
/// Adyen's test Disputes API; live accounts use their own prefix (see Adyen's "live endpoints" page).
pub const DEFAULT_ADYEN_DISPUTES_BASE_URL: &str = "https://ca-test.adyen.com/ca/services/DisputeService/v30";
/// Adyen's test Checkout API, where refunds are made.
pub const DEFAULT_ADYEN_CHECKOUT_BASE_URL: &str = "https://checkout-test.adyen.com/v71";
/// PayPal's sandbox REST API; live is `https://api-m.paypal.com`.
pub const DEFAULT_PAYPAL_BASE_URL: &str = "https://api-m.sandbox.paypal.com";
/// Braintree's sandbox gateway; production is `https://api.braintreegateway.com:443`.
pub const DEFAULT_BRAINTREE_BASE_URL: &str = "https://api.sandbox.braintreegateway.com:443";

/// Everything [`Effects::from_config`](super::Effects::from_config) needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectsConfig {
    pub processors: ProcessorsConfig,
    pub mail: MailConfig,
    pub seller_webhook: SellerWebhookConfig,
    /// Use the sandbox processor for processors without an adapter. It reports every refund and acceptance as
    /// done and invents won or lost by a fixed rule: `verdict demo` sets it, `verdict serve` refuses it.
    pub sandbox: bool,
    /// How long after evidence is submitted the sandbox processor reports its outcome.
    pub sandbox_outcome_delay_secs: u64,
    /// Seller tasks and recoveries (`[sellers]`): the payout service recoveries are sent to.
    pub sellers: super::payout::SellersConfig,
    /// Internal URLs that receive the dispute events (`[[outbound_webhooks]]`).
    pub outbound_webhooks: Vec<OutboundWebhookConfig>,
}

impl Default for EffectsConfig {
    fn default() -> Self {
        Self {
            processors: ProcessorsConfig::default(),
            mail: MailConfig::default(),
            seller_webhook: SellerWebhookConfig::default(),
            sandbox: false,
            sandbox_outcome_delay_secs: DEFAULT_SANDBOX_OUTCOME_DELAY_SECS,
            sellers: Default::default(),
            outbound_webhooks: Vec::new(),
        }
    }
}

/// `[processors]`: processor API credentials; a processor without them has no adapter (its steps wait).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorsConfig {
    /// Stripe secret key (`sk_...`); the Stripe adapter is used when set.
    pub stripe_api_key: Option<String>,
    pub stripe_base_url: String,
    /// Adyen API key (`X-API-Key`); the Adyen adapter is used when this and the merchant account are set.
    pub adyen_api_key: Option<String>,
    pub adyen_merchant_account: Option<String>,
    /// Disputes API base, up to and including the version (`.../DisputeService/v30`).
    pub adyen_disputes_base_url: String,
    /// Checkout API base, up to and including the version (`.../v71`); refunds go there.
    pub adyen_checkout_base_url: String,
    /// Where Stripe files are uploaded; unset: `https://files.stripe.com` beside Stripe's own API, the
    /// `stripe_base_url` otherwise.
    pub stripe_files_base_url: Option<String>,
    /// PayPal REST app credentials; the PayPal adapter is used when both are set.
    pub paypal_client_id: Option<String>,
    pub paypal_client_secret: Option<String>,
    /// `https://api-m.sandbox.paypal.com` (the default) or `https://api-m.paypal.com` (live).
    pub paypal_base_url: String,
    /// Braintree gateway credentials; the Braintree adapter is used when all three are set.
    pub braintree_merchant_id: Option<String>,
    pub braintree_public_key: Option<String>,
    pub braintree_private_key: Option<String>,
    /// `https://api.sandbox.braintreegateway.com:443` (the default) or
    /// `https://api.braintreegateway.com:443` (production).
    pub braintree_base_url: String,
}

impl Default for ProcessorsConfig {
    fn default() -> Self {
        Self {
            stripe_api_key: None,
            stripe_base_url: DEFAULT_STRIPE_BASE_URL.to_owned(),
            adyen_api_key: None,
            adyen_merchant_account: None,
            adyen_disputes_base_url: DEFAULT_ADYEN_DISPUTES_BASE_URL.to_owned(),
            adyen_checkout_base_url: DEFAULT_ADYEN_CHECKOUT_BASE_URL.to_owned(),
            stripe_files_base_url: None,
            paypal_client_id: None,
            paypal_client_secret: None,
            paypal_base_url: DEFAULT_PAYPAL_BASE_URL.to_owned(),
            braintree_merchant_id: None,
            braintree_public_key: None,
            braintree_private_key: None,
            braintree_base_url: DEFAULT_BRAINTREE_BASE_URL.to_owned(),
        }
    }
}

fn redacted(secret: &Option<String>) -> &'static str {
    if secret.is_some() { "Some(***)" } else { "None" }
}

impl fmt::Debug for ProcessorsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorsConfig")
            .field("stripe_api_key", &redacted(&self.stripe_api_key))
            .field("stripe_base_url", &self.stripe_base_url)
            .field("adyen_api_key", &redacted(&self.adyen_api_key))
            .field("adyen_merchant_account", &self.adyen_merchant_account)
            .field("adyen_disputes_base_url", &self.adyen_disputes_base_url)
            .field("adyen_checkout_base_url", &self.adyen_checkout_base_url)
            .field("stripe_files_base_url", &self.stripe_files_base_url)
            .field("paypal_client_id", &self.paypal_client_id)
            .field("paypal_client_secret", &redacted(&self.paypal_client_secret))
            .field("paypal_base_url", &self.paypal_base_url)
            .field("braintree_merchant_id", &self.braintree_merchant_id)
            .field("braintree_public_key", &self.braintree_public_key)
            .field("braintree_private_key", &redacted(&self.braintree_private_key))
            .field("braintree_base_url", &self.braintree_base_url)
            .finish()
    }
}

/// `[mail]`: customer mail goes through SMTP when `smtp_url` is set, into the mailbox otherwise.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `smtps://user:password@host:465` or `smtp://user:password@host:587?tls=required` (lettre's URL form).
    pub smtp_url: Option<String>,
    /// The sender, e.g. `Disputes <disputes@example.com>`.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Verdict <disputes@verdict.localhost>".to_owned(),
        }
    }
}

impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailConfig")
            .field("smtp_url", &redacted(&self.smtp_url))
            .field("from", &self.from)
            .finish()
    }
}

/// `[seller_webhook]`: seller messages are POSTed here, signed with `secret`, when both are set.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SellerWebhookConfig {
    pub url: Option<String>,
    pub secret: Option<String>,
}

impl fmt::Debug for SellerWebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SellerWebhookConfig")
            .field("url", &self.url)
            .field("secret", &redacted(&self.secret))
            .finish()
    }
}

/// Attempts of one outbound delivery before it is dead-lettered, unless the webhook says otherwise.
pub const DEFAULT_OUTBOUND_MAX_ATTEMPTS: i32 = 8;

/// One `[[outbound_webhooks]]` entry: an internal URL that is sent the dispute events, signed with `secret`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundWebhookConfig {
    /// Names the webhook in deliveries' idempotency keys and steps; keep it when the URL moves.
    pub name: String,
    pub url: String,
    /// Signs each delivery (`Verdict-Signature`, HMAC-SHA256 over `<timestamp>.<body>`).
    pub secret: String,
    /// Event types to send (`won`, `note_added`, ...); empty or absent: every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// Attempts before a delivery is dead-lettered (retried with the workers' backoff in between).
    #[serde(default = "default_outbound_max_attempts")]
    pub max_attempts: i32,
}

fn default_outbound_max_attempts() -> i32 {
    DEFAULT_OUTBOUND_MAX_ATTEMPTS
}

impl fmt::Debug for OutboundWebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundWebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"***")
            .field("events", &self.events)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl OutboundWebhookConfig {
    /// How the store routes events to this webhook; an unknown event type, a blank name or secret, or a
    /// non-positive attempt count is a configuration error.
    pub fn route(&self) -> Result<verdict_store::OutboundRoute, super::EffectsError> {
        let bad = |why: String| super::EffectsError::Config(format!("outbound_webhooks {:?}: {why}", self.name));
        let name = self.name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
            return Err(bad("a name is 1 to 64 characters without spaces or colons".into()));
        }
        if self.secret.trim().is_empty() {
            return Err(bad("secret must not be empty".into()));
        }
        super::http::base_url("outbound_webhooks.url", &self.url)?;
        if self.max_attempts < 1 {
            return Err(bad("max_attempts must be at least 1".into()));
        }
        let events = self
            .events
            .iter()
            .map(|e| {
                serde_json::from_value::<verdict_domain::EventKind>(serde_json::Value::String(e.trim().to_owned()))
                    .map_err(|_| bad(format!("unknown event type {e:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(verdict_store::OutboundRoute {
            name: name.to_owned(),
            events,
            max_attempts: self.max_attempts,
        })
    }
}

/// The routes of every configured outbound webhook; two with one name are a configuration error.
pub fn outbound_routes(
    webhooks: &[OutboundWebhookConfig],
) -> Result<Vec<verdict_store::OutboundRoute>, super::EffectsError> {
    let mut routes: Vec<verdict_store::OutboundRoute> = Vec::new();
    for webhook in webhooks {
        let route = webhook.route()?;
        if routes.iter().any(|r| r.name == route.name) {
            return Err(super::EffectsError::Config(format!(
                "two outbound_webhooks are named {:?}",
                route.name
            )));
        }
        routes.push(route);
    }
    Ok(routes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod outbound_tests {
    use super::*;

    fn webhook() -> OutboundWebhookConfig {
        OutboundWebhookConfig {
            name: "ledger".into(),
            url: "http://ledger.internal/hooks".into(),
            secret: "s3cret".into(),
            events: vec!["won".into(), "lost".into()],
            max_attempts: 3,
        }
    }

    #[test]
    fn a_webhook_routes_its_event_types() {
        let route = webhook().route().unwrap();
        assert_eq!(route.name, "ledger");
        assert!(route.wants("won") && !route.wants("note_added"));
        assert!(!format!("{:?}", webhook()).contains("s3cret"));
    }

    #[test]
    fn bad_webhooks_are_refused() {
        let unknown = OutboundWebhookConfig {
            events: vec!["wonn".into()],
            ..webhook()
        };
        assert!(unknown.route().unwrap_err().to_string().contains("wonn"));
        let blank = OutboundWebhookConfig {
            secret: " ".into(),
            ..webhook()
        };
        assert!(blank.route().is_err());
        let ftp = OutboundWebhookConfig {
            url: "ftp://x".into(),
            ..webhook()
        };
        assert!(ftp.route().is_err());
        assert!(outbound_routes(&[webhook(), webhook()]).is_err());
    }
}
