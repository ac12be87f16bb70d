//! `[marketplace]`: which source of marketplace facts Verdict asks. Checked at start-up; `Debug` never prints
//! the token.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde::Deserialize;

use crate::{FactsError, HttpFacts, MarketplaceFacts, TablesFacts};

pub const DEFAULT_TIMEOUT_SECS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FactsSource {
    /// Verdict's own tables (GraphQL `recordOrder`, `verdict import orders`, the demo).
    #[default]
    Tables,
    /// The marketplace's order service (docs/marketplace-api.md).
    Http,
}

impl FactsSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            FactsSource::Tables => "tables",
            FactsSource::Http => "http",
        }
    }
}

impl std::str::FromStr for FactsSource {
    type Err = FactsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tables" => Ok(FactsSource::Tables),
            "http" => Ok(FactsSource::Http),
            other => Err(FactsError::Invalid(format!(
                "[marketplace] source must be tables or http, not {other:?}"
            ))),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketplaceConfig {
    /// `tables` (default) or `http`. `VERDICT_MARKETPLACE_SOURCE`.
    pub source: FactsSource,
    /// The order service's base URL (http only). `VERDICT_MARKETPLACE_URL`.
    pub url: Option<String>,
    /// Its bearer token (http only); better given as `VERDICT_MARKETPLACE_TOKEN`.
    pub token: Option<String>,
    /// Seconds one lookup may take, connection included (1 to 60; default 5).
    /// `VERDICT_MARKETPLACE_TIMEOUT_SECS`.
    pub timeout_secs: u64,
}

impl Default for MarketplaceConfig {
    fn default() -> Self {
        Self {
            source: FactsSource::Tables,
            url: None,
            token: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl std::fmt::Debug for MarketplaceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketplaceConfig")
            .field("source", &self.source)
            .field("url", &self.url)
            .field("token", &if self.token.is_some() { "set" } else { "unset" })
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl MarketplaceConfig {
    /// Refuses a configuration that could not work: http without a URL or a token, a timeout out of range.
    pub fn check(&self) -> Result<(), FactsError> {
        if self.source == FactsSource::Http && self.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
            return Err(FactsError::Invalid(
                "[marketplace] source = \"http\" needs url (or VERDICT_MARKETPLACE_URL)".into(),
            ));
        }
        if !(1..=60).contains(&self.timeout_secs) {
            return Err(FactsError::Invalid(format!(
                "[marketplace] timeout_secs must be 1 to 60, not {}",
                self.timeout_secs
            )));
        }
        match self.source {
            FactsSource::Tables => Ok(()),
            FactsSource::Http => HttpFacts::settings(
                self.url.as_deref().unwrap_or_default(),
                self.token.as_deref().unwrap_or_default(),
            )
            .map(|_| ()),
        }
    }

    fn http(&self) -> Result<HttpFacts, FactsError> {
        let url = self.url.as_deref().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            FactsError::Invalid("[marketplace] source = \"http\" needs url (or VERDICT_MARKETPLACE_URL)".into())
        })?;
        let token = self.token.as_deref().unwrap_or_default();
        HttpFacts::new(url, token, Duration::from_secs(self.timeout_secs))
    }
}

/// The configured source; the tables live in `db`.
pub fn from_config(
    config: &MarketplaceConfig,
    db: DatabaseConnection,
) -> Result<Arc<dyn MarketplaceFacts>, FactsError> {
    config.check()?;
    Ok(match config.source {
        FactsSource::Tables => Arc::new(TablesFacts::new(db)),
        FactsSource::Http => Arc::new(config.http()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_needs_a_url_and_a_token() {
        let mut config = MarketplaceConfig {
            source: FactsSource::Http,
            ..MarketplaceConfig::default()
        };
        assert!(config.check().is_err());
        config.url = Some("https://orders.example.com/api".into());
        assert!(config.check().is_err(), "no token");
        config.token = Some("secret-token".into());
        assert!(config.check().is_ok());
        config.url = Some("ftp://orders.example.com".into());
        assert!(config.check().is_err());
    }

    #[test]
    fn the_timeout_is_bounded_and_the_token_never_printed() {
        let config = MarketplaceConfig {
            timeout_secs: 0,
            token: Some("secret-token".into()),
            ..MarketplaceConfig::default()
        };
        assert!(config.check().is_err());
        assert!(!format!("{config:?}").contains("secret-token"));
    }

    #[test]
    fn sources_parse() {
        assert_eq!("HTTP".parse::<FactsSource>().ok(), Some(FactsSource::Http));
        assert!("files".parse::<FactsSource>().is_err());
    }
}
