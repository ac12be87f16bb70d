//! Configuration: defaults, then an optional verdict.toml, then `VERDICT_*` environment variables.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://verdict.db?mode=rwc` (default) or `postgres://user@host/db`.
    pub database_url: String,
    /// PostgreSQL connections kept open even when idle (1 to 32; default 32), so a burst of due timers waits
    /// for no new backend. `VERDICT_DATABASE_MIN_CONNECTIONS`.
    pub database_min_connections: u32,
    /// Address to listen on.
    pub listen: String,
    /// Browser origins allowed to call `/graphql` from other sites (CORS), e.g. `https://disputes.example.com`;
    /// none by default. `VERDICT_ALLOWED_ORIGINS` (comma-separated).
    pub allowed_origins: Vec<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// A tracing filter, e.g. `info` or `verdict=debug,info`.
    pub log_level: String,
    /// Processor webhook secrets (`[webhooks]` in the file); a processor without one answers 503.
    pub webhooks: WebhookConfig,
    /// Processor APIs (`[processors]`); a processor without credentials has no adapter: its steps wait.
    pub processors: verdict_engine::effects::ProcessorsConfig,
    /// Customer mail (`[mail]`); without `smtp_url`, messages stay in the mailbox (GraphQL `mailbox`).
    pub mail: verdict_engine::effects::MailConfig,
    /// Seller notices (`[seller_webhook]`); without `url` and `secret`, they stay in the mailbox.
    pub seller_webhook: verdict_engine::effects::SellerWebhookConfig,
    /// The sandbox processor for processors without an adapter: it invents refunds, acceptances and outcomes.
    /// Off by default; `verdict demo` turns it on and `verdict serve` refuses it.
    pub sandbox: bool,
    /// Seconds the sandbox processor takes to report an outcome after evidence is submitted (default 120).
    pub sandbox_outcome_delay_secs: u64,
    /// Timers, deadline policy, workers and cron schedules (`[scheduling]`).
    pub scheduling: verdict_engine::timers::SchedulingConfig,
    /// Limits of `/graphql` (`[graphql]`): body size, query cost and depth, time, answer size, and the share
    /// of the pool its reads may hold. `VERDICT_GRAPHQL_*`.
    pub graphql: verdict_api::GraphqlLimits,
    /// How much a dispute may be refunded in all, by role (`[refunds]`: `analyst_max_minor_units`, `lead_max_minor_units`, in
    /// minor units of the dispute's currency; admins have no limit of their own).
    pub refunds: verdict_api::graphql::RefundLimits,
    /// Where the marketplace's orders are read (`[marketplace]`): `source = "tables"` (default, Verdict's own
    /// tables) or `"http"` with `url`, `token` and `timeout_secs`. `VERDICT_MARKETPLACE_SOURCE`, `_URL`,
    /// `_TOKEN`, `_TIMEOUT_SECS`.
    pub marketplace: verdict_facts::MarketplaceConfig,
    /// A `VERDICT_MARKETPLACE_*` value that did not parse, refused by `check`.
    #[serde(skip)]
    pub marketplace_env_error: Option<String>,
    /// Evidence files (`[evidence]`): where uploads are kept.
    pub evidence: EvidenceConfig,
    /// People's sign-in through the organisation's OpenID Connect provider (`[oidc]`): `issuer`, `audience`
    /// (the client id), `role_claim` and `roles` (claim value to Verdict role). Without it, only API keys
    /// authenticate. `VERDICT_OIDC_ISSUER`, `VERDICT_OIDC_AUDIENCE`.
    pub oidc: verdict_api::identity::OidcConfig,
    /// Seller-owned disputes (`[sellers]`): how long before the processor's deadline a seller's answer is due
    /// (`task_margin_hours`), the marketplace's payout service that recoveries go to (`payout_url`,
    /// `payout_token`; `VERDICT_SELLERS_PAYOUT_URL`, `VERDICT_SELLERS_PAYOUT_TOKEN`) and the dispute rate above
    /// which a seller is flagged (`dispute_rate_threshold_bps`).
    pub sellers: verdict_engine::effects::SellersConfig,
    /// Triage economics (`[policy]`): the win rate assumed before enough disputes were decided
    /// (`prior_win_rate_bps`, `min_decided`), what defending costs per currency (`[policy.costs.EUR]`:
    /// `processor_fee_minor` per processor and `analyst_hourly_cost_minor`; `analyst_minutes` for all) and the
    /// share of a seller-owned dispute recovered from the seller (`seller_share_bps`); see docs/policy.md.
    pub policy: verdict_domain::EconomicsConfig,
    /// Internal URLs sent every dispute event, signed (`[[outbound_webhooks]]`: `name`, `url`, `secret`,
    /// optional `events` and `max_attempts`); none by default.
    pub outbound_webhooks: Vec<verdict_engine::effects::OutboundWebhookConfig>,
}

/// `[evidence]`: uploaded evidence files live under `dir` (default `evidence`, beside the working directory),
/// one file per sha256. `VERDICT_EVIDENCE_DIR`. Object storage can come later behind the same `FileStore` trait.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    pub dir: std::path::PathBuf,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            dir: std::path::PathBuf::from("evidence"),
        }
    }
}

/// Webhook secrets. `Debug` says what is set, never the values.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `VERDICT_STRIPE_WEBHOOK_SECRETS`: comma-separated `whsec_...` (several while rotating).
    pub stripe_secrets: Vec<String>,
    /// `VERDICT_ADYEN_HMAC_KEY`: the HMAC key, hex.
    pub adyen_hmac_key: Option<String>,
    /// `VERDICT_ADYEN_BASIC_AUTH`: `user:password`, required with the HMAC key.
    pub adyen_basic_auth: Option<String>,
    /// `VERDICT_BRAINTREE_PUBLIC_KEY`.
    pub braintree_public_key: Option<String>,
    /// `VERDICT_BRAINTREE_PRIVATE_KEY`.
    pub braintree_private_key: Option<String>,
    /// `VERDICT_PAYPAL_WEBHOOK_ID`.
    pub paypal_webhook_id: Option<String>,
    /// `VERDICT_PAYPAL_CERTIFICATES`: PayPal signing certificates known in advance, `URL=FILE` pairs separated
    /// by commas (in the file: a table of URL to file). Each PEM file is trusted for that `PAYPAL-CERT-URL`,
    /// which must still be one of PayPal's, so it is never fetched: for replicas without a way out, and for
    /// the fault harness's test signer (tests/fixtures/processors/paypal/verdict-test-signing).
    pub paypal_certificates: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// `VERDICT_ALERT_WEBHOOK_SECRETS`: comma-separated shared secrets of the alert feed.
    pub alert_secrets: Vec<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("WebhookConfig")
            .field("stripe_secrets", &self.stripe_secrets.len())
            .field("adyen_hmac_key", &set(&self.adyen_hmac_key))
            .field("adyen_basic_auth", &set(&self.adyen_basic_auth))
            .field("braintree_public_key", &self.braintree_public_key)
            .field("braintree_private_key", &set(&self.braintree_private_key))
            .field("paypal_webhook_id", &set(&self.paypal_webhook_id))
            .field("paypal_certificates", &self.paypal_certificates.len())
            .field("alert_secrets", &self.alert_secrets.len())
            .finish()
    }
}

fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl WebhookConfig {
    fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        let var = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = var("VERDICT_STRIPE_WEBHOOK_SECRETS") {
            self.stripe_secrets = comma_list(&v);
        }
        if let Some(v) = var("VERDICT_ALERT_WEBHOOK_SECRETS") {
            self.alert_secrets = comma_list(&v);
        }
        if let Some(v) = var("VERDICT_PAYPAL_CERTIFICATES") {
            self.paypal_certificates = comma_list(&v)
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(url, file)| (url.trim().to_owned(), std::path::PathBuf::from(file.trim())))
                .collect();
        }
        let optional: [(&str, &mut Option<String>); 5] = [
            ("VERDICT_ADYEN_HMAC_KEY", &mut self.adyen_hmac_key),
            ("VERDICT_ADYEN_BASIC_AUTH", &mut self.adyen_basic_auth),
            ("VERDICT_BRAINTREE_PUBLIC_KEY", &mut self.braintree_public_key),
            ("VERDICT_BRAINTREE_PRIVATE_KEY", &mut self.braintree_private_key),
            ("VERDICT_PAYPAL_WEBHOOK_ID", &mut self.paypal_webhook_id),
        ];
        for (name, field) in optional {
            if let Some(value) = var(name) {
                *field = Some(value);
            }
        }
    }

    /// One readable line of which processors can post webhooks, for the start-up log (never a secret).
    pub fn summary(&self) -> String {
        let count = |n: usize| {
            if n == 1 {
                "1 secret".to_owned()
            } else {
                format!("{n} secrets")
            }
        };
        let mut parts = Vec::new();
        let mut unset = Vec::new();
        match self.stripe_secrets.len() {
            0 => unset.push("stripe"),
            n => parts.push(format!("stripe ({})", count(n))),
        }
        match (&self.adyen_hmac_key, &self.adyen_basic_auth) {
            (None, _) => unset.push("adyen"),
            (Some(_), None) => parts.push("adyen (HMAC)".to_owned()),
            (Some(_), Some(_)) => parts.push("adyen (HMAC and basic auth)".to_owned()),
        }
        match &self.braintree_public_key {
            Some(public_key) if self.braintree_private_key.is_some() => {
                parts.push(format!("braintree (public key {public_key})"));
            }
            _ => unset.push("braintree"),
        }
        match (&self.paypal_webhook_id, self.paypal_certificates.len()) {
            (Some(_), 0) => parts.push("paypal".to_owned()),
            (Some(_), n) => parts.push(format!("paypal ({n} certificates preloaded)")),
            (None, _) => unset.push("paypal"),
        }
        match self.alert_secrets.len() {
            0 => unset.push("alerts"),
            n => parts.push(format!("alerts ({})", count(n))),
        }
        let accepted = if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        };
        if unset.is_empty() {
            format!("webhooks accepted from {accepted}")
        } else {
            format!(
                "webhooks accepted from {accepted}; not configured (answer 503): {}",
                unset.join(", ")
            )
        }
    }

    /// The secrets the API checks; refuses half-configured pairs rather than silently disabling a processor.
    /// PayPal's certificate cache with the configured certificates in it; it fetches any other (PayPal's
    /// own URLs only).
    pub fn paypal_certificates(&self) -> anyhow::Result<verdict_api::webhooks::CachedCertificates> {
        let certificates = verdict_api::webhooks::CachedCertificates::http();
        for (url, file) in &self.paypal_certificates {
            anyhow::ensure!(
                verdict_ingest::paypal_cert_url_allowed(url),
                "VERDICT_PAYPAL_CERTIFICATES: {url:?} is not a PayPal certificate URL"
            );
            let pem = std::fs::read(file)
                .map_err(|e| anyhow::anyhow!("VERDICT_PAYPAL_CERTIFICATES: reading {}: {e}", file.display()))?;
            certificates.preload(url, pem);
        }
        Ok(certificates)
    }

    pub fn secrets(&self) -> anyhow::Result<verdict_api::webhooks::WebhookSecrets> {
        let adyen_basic_auth = match &self.adyen_basic_auth {
            None => None,
            Some(pair) => {
                let (user, password) = pair
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("VERDICT_ADYEN_BASIC_AUTH must be user:password"))?;
                Some((user.to_owned(), password.to_owned()))
            }
        };
        if let Some(key) = &self.adyen_hmac_key {
            anyhow::ensure!(hex_ok(key), "VERDICT_ADYEN_HMAC_KEY must be hex");
            // Adyen recommends basic auth with the HMAC, which leaves eventDate, reason and additionalData
            // unsigned; the endpoint refuses to run without it, so say so at start-up.
            anyhow::ensure!(
                adyen_basic_auth.is_some(),
                "VERDICT_ADYEN_HMAC_KEY is set without VERDICT_ADYEN_BASIC_AUTH: Adyen webhooks need both (set \
                 VERDICT_ADYEN_BASIC_AUTH=user:password, the credentials configured in Adyen's Customer Area)"
            );
        }
        let braintree = match (&self.braintree_public_key, &self.braintree_private_key) {
            (Some(public_key), Some(private_key)) => vec![verdict_ingest::BraintreeCredentials {
                public_key: public_key.clone(),
                private_key: private_key.clone(),
            }],
            (None, None) => Vec::new(),
            _ => anyhow::bail!("set both VERDICT_BRAINTREE_PUBLIC_KEY and VERDICT_BRAINTREE_PRIVATE_KEY, or neither"),
        };
        Ok(verdict_api::webhooks::WebhookSecrets {
            stripe: self.stripe_secrets.clone(),
            adyen_hmac_key: self.adyen_hmac_key.clone(),
            adyen_basic_auth,
            braintree,
            paypal_webhook_id: self.paypal_webhook_id.clone(),
            alerts: self.alert_secrets.clone(),
        })
    }
}

impl Config {
    /// The CORS origins as the API needs them; each is `scheme://host[:port]`, exactly as browsers send it.
    pub fn cors_origins(&self) -> anyhow::Result<Vec<axum::http::HeaderValue>> {
        self.allowed_origins
            .iter()
            .map(|origin| {
                let origin = origin.trim().trim_end_matches('/');
                let refuse = || {
                    anyhow::anyhow!(
                        "allowed_origins / VERDICT_ALLOWED_ORIGINS: {origin:?} is not an origin; write \
                         scheme://host[:port], e.g. https://disputes.example.com (no path, no wildcard)"
                    )
                };
                let (scheme, rest) = origin.split_once("://").ok_or_else(refuse)?;
                let host_ok = !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
                if !matches!(scheme, "http" | "https") || !host_ok {
                    return Err(refuse());
                }
                axum::http::HeaderValue::from_str(origin).map_err(|_| refuse())
            })
            .collect()
    }
}

/// The levels a tracing filter knows.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// A tracing filter whose every directive names a level: `info`, or `verdict=debug,info`. A bare word that is
/// no level (a typo such as `inf` or `verbose`) would be read as a target name and silently log nothing
/// useful, so it is refused.
fn check_log_level(filter: &str) -> anyhow::Result<()> {
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "unknown log level {what:?} in {filter:?} (log_level / VERDICT_LOG_LEVEL): use one of {} or \
             target=level directives such as verdict=debug,info",
            LOG_LEVELS.join(", ")
        )
    };
    anyhow::ensure!(
        !filter.is_empty(),
        "log_level / VERDICT_LOG_LEVEL is empty: use info, for example"
    );
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None => directive,
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(refuse(directive));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|err| anyhow::anyhow!("{}: {err}", refuse(filter)))?;
    Ok(())
}

/// The database URL as it will be opened: a SQLite URL gets `mode=rwc` (create the file if missing) unless it
/// names a mode or an in-memory database.
fn database_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_owned());
    }
    anyhow::ensure!(
        url.starts_with("sqlite:"),
        "database_url / VERDICT_DATABASE_URL must start with sqlite:// or postgres://, not {:?}",
        url.split(':').next().unwrap_or_default()
    );
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    if url.contains(":memory:") || query.split('&').any(|p| p.starts_with("mode=")) {
        return Ok(url.to_owned());
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}mode=rwc"))
}

fn hex_ok(key: &str) -> bool {
    let key = key.trim();
    !key.is_empty() && key.len().is_multiple_of(2) && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://verdict.db?mode=rwc".to_owned(),
            database_min_connections: 32,
            listen: "127.0.0.1:8080".to_owned(),
            allowed_origins: Vec::new(),
            log_format: "text".to_owned(),
            log_level: "info".to_owned(),
            webhooks: WebhookConfig::default(),
            processors: Default::default(),
            mail: Default::default(),
            seller_webhook: Default::default(),
            sandbox: false,
            sandbox_outcome_delay_secs: verdict_engine::effects::EffectsConfig::default().sandbox_outcome_delay_secs,
            scheduling: Default::default(),
            graphql: Default::default(),
            evidence: Default::default(),
            outbound_webhooks: Vec::new(),
            marketplace: Default::default(),
            marketplace_env_error: None,
            refunds: Default::default(),
            oidc: Default::default(),
            sellers: Default::default(),
            policy: Default::default(),
        }
    }
}

impl Config {
    /// Reads `path` if given (it must exist) or `./verdict.toml` if present, then applies the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None if Path::new("verdict.toml").exists() => Self::from_file(Path::new("verdict.toml"))?,
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok());
        config.check()?;
        Ok(config)
    }

    /// Refuses what would otherwise be ignored or fail later with a worse message, and completes the SQLite
    /// URL so that a missing file is created (`mode=rwc`) rather than failing as "unable to open database
    /// file".
    pub fn check(&mut self) -> anyhow::Result<()> {
        self.log_format = self.log_format.trim().to_ascii_lowercase();
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "text" | "json"),
            "unknown log format {:?} (log_format / VERDICT_LOG_FORMAT): use text or json",
            self.log_format
        );
        self.log_level = self.log_level.trim().to_owned();
        check_log_level(&self.log_level)?;
        self.database_url = database_url(&self.database_url)?;
        self.cors_origins()?;
        anyhow::ensure!(
            (1..=32).contains(&self.database_min_connections),
            "database_min_connections / VERDICT_DATABASE_MIN_CONNECTIONS must be 1 to 32, not {}",
            self.database_min_connections
        );
        let refunds = &self.refunds;
        anyhow::ensure!(
            0 <= refunds.analyst_max_minor_units && refunds.analyst_max_minor_units <= refunds.lead_max_minor_units,
            "[refunds] limits must satisfy 0 <= analyst_max_minor_units ({}) <= lead_max_minor_units ({})",
            refunds.analyst_max_minor_units,
            refunds.lead_max_minor_units
        );
        if let Some(problem) = &self.marketplace_env_error {
            anyhow::bail!("{problem}");
        }
        self.marketplace.check().map_err(|err| anyhow::anyhow!("{err}"))?;
        self.oidc.check()?;
        self.sellers.task_policy()?;
        self.policy.validate()?;
        self.seller_links()?;
        verdict_engine::effects::outbound_routes(&self.outbound_webhooks).map_err(|err| anyhow::anyhow!("{err}"))?;
        Ok(())
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        let fields: [(&str, &mut String); 4] = [
            ("VERDICT_DATABASE_URL", &mut self.database_url),
            ("VERDICT_LISTEN", &mut self.listen),
            ("VERDICT_LOG_FORMAT", &mut self.log_format),
            ("VERDICT_LOG_LEVEL", &mut self.log_level),
        ];
        for (name, field) in fields {
            if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
                *field = value;
            }
        }
        if let Some(min) = var("VERDICT_DATABASE_MIN_CONNECTIONS").filter(|v| !v.trim().is_empty()) {
            // Not a number is refused by `check` (0 is out of range) rather than silently ignored.
            self.database_min_connections = min.trim().parse().unwrap_or(0);
        }
        if let Some(origins) = var("VERDICT_ALLOWED_ORIGINS") {
            self.allowed_origins = comma_list(&origins);
        }
        self.webhooks.apply_env(&var);
        self.apply_effects_env(&var);
        self.apply_graphql_env(&var);
        if let Some(dir) = var("VERDICT_EVIDENCE_DIR").filter(|v| !v.trim().is_empty()) {
            self.evidence.dir = std::path::PathBuf::from(dir.trim());
        }
        self.apply_marketplace_env(&var);
        let named = [
            ("VERDICT_OIDC_ISSUER", &mut self.oidc.issuer),
            ("VERDICT_OIDC_AUDIENCE", &mut self.oidc.audience),
            ("VERDICT_SELLERS_PAYOUT_URL", &mut self.sellers.payout_url),
            ("VERDICT_SELLERS_PAYOUT_TOKEN", &mut self.sellers.payout_token),
            ("VERDICT_SELLERS_UPLOAD_SECRET", &mut self.sellers.upload_secret),
        ];
        for (name, field) in named {
            if let Some(value) = var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                *field = Some(value);
            }
        }
    }

    /// `VERDICT_MARKETPLACE_SOURCE`, `_URL`, `_TOKEN` (the token belongs in the environment, not the file) and
    /// `_TIMEOUT_SECS`. A source or timeout that does not parse is refused by `check`, not ignored.
    fn apply_marketplace_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        let var = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let marketplace = &mut self.marketplace;
        if let Some(source) = var("VERDICT_MARKETPLACE_SOURCE") {
            match source.parse::<verdict_facts::FactsSource>() {
                Ok(source) => marketplace.source = source,
                Err(err) => self.marketplace_env_error = Some(format!("VERDICT_MARKETPLACE_SOURCE: {err}")),
            }
        }
        if let Some(url) = var("VERDICT_MARKETPLACE_URL") {
            marketplace.url = Some(url);
        }
        if let Some(token) = var("VERDICT_MARKETPLACE_TOKEN") {
            marketplace.token = Some(token);
        }
        if let Some(timeout) = var("VERDICT_MARKETPLACE_TIMEOUT_SECS") {
            match timeout.parse() {
                Ok(secs) => marketplace.timeout_secs = secs,
                Err(_) => {
                    self.marketplace_env_error = Some(format!(
                        "VERDICT_MARKETPLACE_TIMEOUT_SECS must be a number of seconds, not {timeout:?}"
                    ));
                }
            }
        }
    }

    /// `VERDICT_GRAPHQL_BODY_LIMIT_BYTES`, `_MAX_COMPLEXITY`, `_MAX_DEPTH`, `_TIMEOUT_SECS`,
    /// `_MAX_RESPONSE_BYTES` and `_READ_CONNECTIONS`; a value that is not a number is ignored.
    fn apply_graphql_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        let number = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok());
        let limits = &mut self.graphql;
        let sizes: [(&str, &mut usize); 4] = [
            ("VERDICT_GRAPHQL_BODY_LIMIT_BYTES", &mut limits.body_limit_bytes),
            ("VERDICT_GRAPHQL_MAX_COMPLEXITY", &mut limits.max_complexity),
            ("VERDICT_GRAPHQL_MAX_DEPTH", &mut limits.max_depth),
            ("VERDICT_GRAPHQL_MAX_RESPONSE_BYTES", &mut limits.max_response_bytes),
        ];
        for (name, field) in sizes {
            if let Some(n) = number(name).and_then(|n| usize::try_from(n).ok()) {
                *field = n;
            }
        }
        if let Some(n) = number("VERDICT_GRAPHQL_TIMEOUT_SECS") {
            limits.timeout_secs = n;
        }
        if let Some(n) = number("VERDICT_GRAPHQL_READ_CONNECTIONS").and_then(|n| u32::try_from(n).ok()) {
            limits.read_connections = Some(n);
        }
    }
}

impl Config {
    /// Sellers' upload links, when `[sellers] upload_secret` is set.
    pub fn seller_links(&self) -> anyhow::Result<Option<verdict_api::seller_links::SellerLinks>> {
        let Some(secret) = self.sellers.upload_secret.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        let lifetime = chrono::Duration::hours(self.sellers.upload_link_hours);
        verdict_api::seller_links::SellerLinks::new(secret.as_bytes(), lifetime)
            .map(Some)
            .map_err(|err| anyhow::anyhow!("[sellers] upload_secret / upload_link_hours: {err}"))
    }

    /// What the step handlers need: `Effects::from_config(&config.effects(), store, clock)`.
    pub fn effects(&self) -> verdict_engine::effects::EffectsConfig {
        verdict_engine::effects::EffectsConfig {
            processors: self.processors.clone(),
            mail: self.mail.clone(),
            seller_webhook: self.seller_webhook.clone(),
            sandbox: self.sandbox,
            sandbox_outcome_delay_secs: self.sandbox_outcome_delay_secs,
            sellers: self.sellers.clone(),
            outbound_webhooks: self.outbound_webhooks.clone(),
        }
    }

    /// Secrets of the outside systems may come from the environment rather than the file.
    fn apply_effects_env(&mut self, var: &impl Fn(&str) -> Option<String>) {
        let optional: [(&str, &mut Option<String>); 11] = [
            ("VERDICT_STRIPE_API_KEY", &mut self.processors.stripe_api_key),
            ("VERDICT_PAYPAL_CLIENT_ID", &mut self.processors.paypal_client_id),
            (
                "VERDICT_PAYPAL_CLIENT_SECRET",
                &mut self.processors.paypal_client_secret,
            ),
            (
                "VERDICT_BRAINTREE_MERCHANT_ID",
                &mut self.processors.braintree_merchant_id,
            ),
            (
                "VERDICT_BRAINTREE_PUBLIC_KEY",
                &mut self.processors.braintree_public_key,
            ),
            (
                "VERDICT_BRAINTREE_PRIVATE_KEY",
                &mut self.processors.braintree_private_key,
            ),
            ("VERDICT_ADYEN_API_KEY", &mut self.processors.adyen_api_key),
            (
                "VERDICT_ADYEN_MERCHANT_ACCOUNT",
                &mut self.processors.adyen_merchant_account,
            ),
            ("VERDICT_SMTP_URL", &mut self.mail.smtp_url),
            ("VERDICT_SELLER_WEBHOOK_URL", &mut self.seller_webhook.url),
            ("VERDICT_SELLER_WEBHOOK_SECRET", &mut self.seller_webhook.secret),
        ];
        for (name, field) in optional {
            if let Some(value) = var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                *field = Some(value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod effects_config_tests {
    use super::*;

    #[test]
    fn outside_systems_default_to_local_and_read_file_sections_and_environment() {
        let defaults = Config::default().effects();
        assert_eq!(defaults, verdict_engine::effects::EffectsConfig::default());
        assert_eq!(defaults.sandbox_outcome_delay_secs, 120);
        assert!(!defaults.sandbox, "the sandbox invents outcomes: never on by default");
        assert!(defaults.processors.stripe_api_key.is_none() && defaults.mail.smtp_url.is_none());

        let mut config: Config = toml::from_str(
            "sandbox_outcome_delay_secs = 5\n\
             [processors]\nstripe_base_url = \"http://127.0.0.1:9\"\nadyen_merchant_account = \"ShopECOM\"\n\
             [mail]\nfrom = \"Disputes <d@example.com>\"\n\
             [seller_webhook]\nurl = \"https://seller.example/hooks\"\n",
        )
        .unwrap();
        config.apply_env(|name| match name {
            "VERDICT_STRIPE_API_KEY" => Some("sk_test_secret".to_owned()),
            "VERDICT_SELLER_WEBHOOK_SECRET" => Some("whsec_seller".to_owned()),
            "VERDICT_PAYPAL_CLIENT_SECRET" => Some("paypal_secret_x".to_owned()),
            "VERDICT_BRAINTREE_PRIVATE_KEY" => Some("bt_private_x".to_owned()),
            _ => None,
        });
        let effects = config.effects();
        assert_eq!(effects.sandbox_outcome_delay_secs, 5);
        assert_eq!(effects.processors.stripe_api_key.as_deref(), Some("sk_test_secret"));
        assert_eq!(effects.processors.stripe_base_url, "http://127.0.0.1:9");
        assert_eq!(effects.processors.adyen_merchant_account.as_deref(), Some("ShopECOM"));
        assert_eq!(effects.mail.from, "Disputes <d@example.com>");
        assert_eq!(effects.seller_webhook.secret.as_deref(), Some("whsec_seller"));
        assert_eq!(
            effects.processors.paypal_client_secret.as_deref(),
            Some("paypal_secret_x")
        );
        assert_eq!(
            effects.processors.braintree_private_key.as_deref(),
            Some("bt_private_x")
        );
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("sk_test_secret")
                && !printed.contains("whsec_seller")
                && !printed.contains("paypal_secret_x")
                && !printed.contains("bt_private_x"),
            "{printed}"
        );
        assert!(toml::from_str::<Config>("[processors]\nstripe_key = \"x\"").is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_file() {
        let mut config: Config = toml::from_str("listen = \"0.0.0.0:9000\"\nlog_format = \"json\"").unwrap();
        config.apply_env(|name| (name == "VERDICT_LISTEN").then(|| "127.0.0.1:1".to_owned()));
        assert_eq!(config.listen, "127.0.0.1:1");
        assert_eq!(config.log_format, "json");
        assert_eq!(config.database_url, Config::default().database_url);
    }

    #[test]
    fn webhook_secrets_come_from_the_environment() {
        let mut config = Config::default();
        config.apply_env(|name| match name {
            "VERDICT_STRIPE_WEBHOOK_SECRETS" => Some("whsec_a, whsec_b".to_owned()),
            "VERDICT_ADYEN_HMAC_KEY" => Some("44782DEF".to_owned()),
            "VERDICT_ADYEN_BASIC_AUTH" => Some("adyen:pa:ss".to_owned()),
            _ => None,
        });
        let secrets = config.webhooks.secrets().unwrap();
        assert_eq!(secrets.stripe, vec!["whsec_a", "whsec_b"]);
        assert_eq!(secrets.adyen_basic_auth, Some(("adyen".to_owned(), "pa:ss".to_owned())));
        assert!(secrets.braintree.is_empty() && secrets.alerts.is_empty());
        assert!(!format!("{config:?}").contains("whsec_a"));
    }

    #[test]
    fn an_adyen_hmac_key_without_basic_auth_is_an_error() {
        let mut config = Config::default();
        config.apply_env(|name| (name == "VERDICT_ADYEN_HMAC_KEY").then(|| "44782DEF".to_owned()));
        let err = config.webhooks.secrets().unwrap_err().to_string();
        assert!(err.contains("VERDICT_ADYEN_BASIC_AUTH"), "{err}");
    }

    #[test]
    fn a_half_configured_braintree_is_an_error() {
        let mut config = Config::default();
        config.apply_env(|name| (name == "VERDICT_BRAINTREE_PUBLIC_KEY").then(|| "pk".to_owned()));
        assert!(config.webhooks.secrets().is_err());
    }

    #[test]
    fn graphql_limits_come_from_the_file_and_the_environment() {
        let mut config: Config = toml::from_str("[graphql]\nmax_complexity = 900\ntimeout_secs = 3").unwrap();
        assert_eq!(config.graphql.max_complexity, 900);
        assert_eq!(
            config.graphql.body_limit_bytes,
            verdict_api::GraphqlLimits::default().body_limit_bytes
        );
        config.apply_env(|name| match name {
            "VERDICT_GRAPHQL_READ_CONNECTIONS" => Some("3".to_owned()),
            "VERDICT_GRAPHQL_TIMEOUT_SECS" => Some("7".to_owned()),
            _ => None,
        });
        assert_eq!(
            (config.graphql.read_connections, config.graphql.timeout_secs),
            (Some(3), 7)
        );
        assert!(toml::from_str::<Config>("[graphql]\nmax_complexty = 1").is_err());
    }

    #[test]
    fn log_settings_are_checked_and_sqlite_urls_completed() {
        let checked = |f: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            f(&mut config);
            config.check().map(|()| config)
        };
        assert!(
            checked(&|c| c.log_level = "inf".into()).is_err(),
            "a typo is no target name"
        );
        assert!(checked(&|c| c.log_level = "verdict=debug,info".into()).is_ok());
        assert!(checked(&|c| c.log_format = "yaml".into()).is_err());
        assert_eq!(checked(&|c| c.log_format = " JSON ".into()).unwrap().log_format, "json");
        let url = |u: &str| checked(&|c| c.database_url = u.into()).map(|c| c.database_url);
        assert_eq!(url("sqlite://a.db").unwrap(), "sqlite://a.db?mode=rwc");
        assert_eq!(
            url("sqlite://a.db?cache=shared").unwrap(),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(url("sqlite://a.db?mode=ro").unwrap(), "sqlite://a.db?mode=ro");
        assert_eq!(url("sqlite::memory:").unwrap(), "sqlite::memory:");
        assert_eq!(url("postgres://u@h/db").unwrap(), "postgres://u@h/db");
        assert!(url("mysql://u:p@h/db").unwrap_err().to_string().contains("\"mysql\""));
        let mut config = Config::default();
        config.apply_env(|name| (name == "VERDICT_DATABASE_MIN_CONNECTIONS").then(|| "lots".to_owned()));
        assert!(config.check().is_err(), "not a number is refused, not ignored");
    }

    #[test]
    fn the_webhook_summary_is_one_readable_line_without_secrets() {
        let mut config = Config::default();
        config.apply_env(|name| match name {
            "VERDICT_STRIPE_WEBHOOK_SECRETS" => Some("whsec_a,whsec_b".to_owned()),
            "VERDICT_ADYEN_HMAC_KEY" => Some("44782DEF".to_owned()),
            _ => None,
        });
        assert_eq!(
            config.webhooks.summary(),
            "webhooks accepted from stripe (2 secrets), adyen (HMAC); not configured (answer 503): braintree, \
             paypal, alerts"
        );
    }

    #[test]
    fn cors_origins_are_plain_origins() {
        let mut config = Config::default();
        config.apply_env(|name| {
            (name == "VERDICT_ALLOWED_ORIGINS").then(|| "https://a.example.com, http://localhost:3000/".to_owned())
        });
        let origins = config.cors_origins().unwrap();
        assert_eq!(origins, ["https://a.example.com", "http://localhost:3000"]);
        for bad in ["*", "https://a.example.com/app", "a.example.com", "ftp://a.example.com"] {
            config.allowed_origins = vec![bad.to_owned()];
            assert!(config.check().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unknown_keys_are_an_error() {
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod marketplace_config_tests {
    use super::*;

    #[test]
    fn the_marketplace_defaults_to_the_own_tables_and_http_is_checked_at_start_up() {
        let mut config = Config::default();
        config.check().unwrap();
        assert_eq!(config.marketplace.source, verdict_facts::FactsSource::Tables);

        let mut config: Config = toml::from_str("[marketplace]\nsource = \"http\"\ntimeout_secs = 3\n").unwrap();
        let err = config.check().unwrap_err().to_string();
        assert!(err.contains("url"), "{err}");
        config.apply_env(|name| match name {
            "VERDICT_MARKETPLACE_URL" => Some("https://orders.example.com/api".to_owned()),
            "VERDICT_MARKETPLACE_TOKEN" => Some("tok_orders_secret".to_owned()),
            _ => None,
        });
        config.check().unwrap();
        assert_eq!(config.marketplace.timeout_secs, 3);
        assert!(!format!("{config:?}").contains("tok_orders_secret"));

        let mut config = Config::default();
        config.apply_env(|name| (name == "VERDICT_MARKETPLACE_SOURCE").then(|| "files".to_owned()));
        assert!(
            config
                .check()
                .unwrap_err()
                .to_string()
                .contains("VERDICT_MARKETPLACE_SOURCE")
        );
        assert!(toml::from_str::<Config>("[marketplace]\nsource = \"ftp\"\n").is_err());
        assert!(toml::from_str::<Config>("[marketplace]\ntimeout = 3\n").is_err());
    }

    #[test]
    fn oidc_comes_from_the_file_and_the_environment_and_half_of_it_is_refused() {
        let mut config: Config = toml::from_str(
            "[oidc]\nissuer = \"https://login.example.com/realms/care\"\naudience = \"verdict\"\n\
             role_claim = \"groups\"\nroles = { \"disputes-lead\" = \"lead\" }\n",
        )
        .unwrap();
        config.check().unwrap();
        assert_eq!(config.oidc.role_claim, "groups");
        assert_eq!(config.oidc.roles.get("disputes-lead").map(String::as_str), Some("lead"));
        let mut config = Config::default();
        config.apply_env(|name| (name == "VERDICT_OIDC_ISSUER").then(|| "https://login.example.com".to_owned()));
        let refused = config.check().unwrap_err().to_string();
        assert!(refused.contains("issuer and audience"), "{refused}");
        assert!(toml::from_str::<Config>("[oidc]\nrole_claims = \"x\"\n").is_err());
    }
}
