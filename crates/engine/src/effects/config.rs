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
