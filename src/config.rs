//! Configuration: defaults, then an optional verdict.toml, then `VERDICT_*` environment variables.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://verdict.db?mode=rwc` (default) or `postgres://user@host/db`.
    pub database_url: String,
    /// Address to listen on.
    pub listen: String,
    /// `text` or `json`.
    pub log_format: String,
    /// A tracing filter, e.g. `info` or `verdict=debug,info`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://verdict.db?mode=rwc".to_owned(),
            listen: "127.0.0.1:8080".to_owned(),
            log_format: "text".to_owned(),
            log_level: "info".to_owned(),
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
        Ok(config)
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
    fn unknown_keys_are_an_error() {
        assert!(toml::from_str::<Config>("listne = \"x\"").is_err());
    }
}
