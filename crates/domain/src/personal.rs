//! Personal data of customers, in wrapper types that mask themselves in `Debug` and `Display`, so that no
//! log line or error message can carry a customer's name or email by accident.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A customer's name. `Debug`/`Display` print a mask; [`CustomerName::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerName(String);

/// A customer's email address, validated loosely (one `@`, something on each side).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerEmail(String);

impl CustomerName {
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(DomainError::invalid("customer name must be 1 to 200 characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First letter and a mask, e.g. `J***`: what roles without access to personal data see.
    pub fn masked(&self) -> String {
        let first: String = self.0.chars().take(1).collect();
        format!("{first}***")
    }
}

impl CustomerEmail {
    pub fn parse(email: &str) -> Result<Self, DomainError> {
        let email = email.trim();
        let valid = email.len() <= 254
            && email.split('@').count() == 2
            && email.split('@').all(|part| !part.is_empty())
            && !email.chars().any(char::is_whitespace);
        if !valid {
            return Err(DomainError::invalid("customer email is not a valid address"));
        }
        Ok(Self(email.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `j***@example.com`: the domain stays readable for triage, the mailbox does not.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_owned(),
        }
    }
}

impl fmt::Debug for CustomerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerName(***)")
    }
}
impl fmt::Display for CustomerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}
impl fmt::Debug for CustomerEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerEmail(***)")
    }
}
impl fmt::Display for CustomerEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The languages Verdict writes to customers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    Fr,
    Es,
    It,
}

impl Locale {
    pub const ALL: [Locale; 4] = [Locale::En, Locale::Fr, Locale::Es, Locale::It];

    pub fn as_str(&self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
            Locale::Es => "es",
            Locale::It => "it",
        }
    }
}

impl FromStr for Locale {
    type Err = DomainError;
    /// Accepts `fr`, `FR`, `fr-FR`, `fr_CA`: the language part decides.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lang = s
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Locale::ALL
            .into_iter()
            .find(|l| l.as_str() == lang)
            .ok_or_else(|| DomainError::invalid(format!("unsupported locale {s:?} (en, fr, es, it)")))
    }
}

/// The cardholder as far as a dispute needs to know them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: Option<CustomerName>,
    pub email: Option<CustomerEmail>,
    pub locale: Locale,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_never_shows_in_debug_or_display() {
        let customer = Customer {
            name: CustomerName::parse("Jeanne Dupont").ok(),
            email: CustomerEmail::parse("jeanne@example.fr").ok(),
            locale: Locale::Fr,
        };
        let printed = format!(
            "{customer:?} {}",
            customer.email.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        assert!(!printed.contains("Jeanne"), "{printed}");
        assert!(!printed.contains("jeanne@"), "{printed}");
        assert!(printed.contains("j***@example.fr"));
    }

    #[test]
    fn an_invalid_email_is_rejected() {
        for bad in ["", "no-at", "a@b@c", "@x", "x@", "a b@c.d"] {
            assert!(CustomerEmail::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locales_accept_region_tags() {
        assert_eq!("fr-CA".parse::<Locale>(), Ok(Locale::Fr));
        assert_eq!("IT".parse::<Locale>(), Ok(Locale::It));
        assert!("de".parse::<Locale>().is_err());
    }
}
