//! Card networks and their chargeback reason codes, with the category that drives triage and evidence.
//!
//! The catalogue is `data/reason-codes.csv`, compiled in. Processors send codes with stray spaces and in
//! legacy forms, so codes are normalised before lookup; the code as received is kept by callers.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardNetwork {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Other,
}

impl CardNetwork {
    pub const ALL: [CardNetwork; 5] = [
        CardNetwork::Visa,
        CardNetwork::Mastercard,
        CardNetwork::Amex,
        CardNetwork::Discover,
        CardNetwork::Other,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CardNetwork::Visa => "visa",
            CardNetwork::Mastercard => "mastercard",
            CardNetwork::Amex => "amex",
            CardNetwork::Discover => "discover",
            CardNetwork::Other => "other",
        }
    }

    /// Default response window of the network in calendar days, used only when a processor sends no due date.
    pub fn default_response_days(&self) -> i64 {
        match self {
            CardNetwork::Visa | CardNetwork::Discover | CardNetwork::Other => 30,
            CardNetwork::Mastercard => 45,
            CardNetwork::Amex => 20,
        }
    }
}

impl FromStr for CardNetwork {
    type Err = DomainError;
    /// Accepts the names processors use: `visa`, `mc`, `mastercard`, `amex`, `american_express`, `discover`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Ok(match name.as_str() {
            "visa" => CardNetwork::Visa,
            "mc" | "mastercard" | "master_card" | "maestro" => CardNetwork::Mastercard,
            "amex" | "american_express" | "americanexpress" => CardNetwork::Amex,
            "discover" | "diners" | "discover_diners" => CardNetwork::Discover,
            "other" | "unknown" => CardNetwork::Other,
            _ => return Err(DomainError::invalid(format!("unknown card network {s:?}"))),
        })
    }
}

impl fmt::Display for CardNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of dispute a reason code describes; it decides the queue and the evidence a defense needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCategory {
    Fraud,
    Authorization,
    ProcessingError,
    ConsumerDispute,
}

impl ReasonCategory {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReasonCategory::Fraud => "fraud",
            ReasonCategory::Authorization => "authorization",
            ReasonCategory::ProcessingError => "processing_error",
            ReasonCategory::ConsumerDispute => "consumer_dispute",
        }
    }
}

impl FromStr for ReasonCategory {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "fraud" => ReasonCategory::Fraud,
            "authorization" => ReasonCategory::Authorization,
            "processing_error" => ReasonCategory::ProcessingError,
            "consumer_dispute" => ReasonCategory::ConsumerDispute,
            other => return Err(DomainError::invalid(format!("unknown reason category {other:?}"))),
        })
    }
}

/// A reason code known to the catalogue for its network, in normalised form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReasonCode {
    network: CardNetwork,
    code: String,
    category: ReasonCategory,
}

#[derive(Debug, Clone)]
struct CatalogueEntry {
    title: String,
    category: ReasonCategory,
    /// Stripe's generic reason for the code (the catalogue's last column): what the cardholder claims.
    stripe_reason: String,
}

type Catalogue = HashMap<(CardNetwork, String), CatalogueEntry>;

const CATALOGUE_CSV: &str = include_str!("../data/reason-codes.csv");

/// Pre-2018 Visa codes still seen in feeds and their Visa Claims Resolution equivalents.
const VISA_LEGACY: &[(&str, &str)] = &[
    ("30", "13.1"),
    ("41", "13.2"),
    ("53", "13.3"),
    ("57", "10.5"),
    ("62", "10.1"),
    ("70", "11.1"),
    ("71", "11.2"),
    ("72", "11.3"),
    ("74", "12.1"),
    ("75", "10.4"),
    ("76", "12.3"),
    ("77", "12.4"),
    ("80", "12.5"),
    ("81", "10.3"),
    ("82", "12.6"),
    ("83", "10.4"),
    ("85", "13.6"),
    ("86", "12.6"),
];

/// Processor-level reasons (Stripe's `reason` values) accepted for network `other`, where no network code exists.
const GENERIC_REASONS: &[(&str, ReasonCategory)] = &[
    ("fraudulent", ReasonCategory::Fraud),
    ("unrecognized", ReasonCategory::Fraud),
    ("debit_not_authorized", ReasonCategory::Fraud),
    ("duplicate", ReasonCategory::ProcessingError),
    ("incorrect_account_details", ReasonCategory::ProcessingError),
    ("bank_cannot_process", ReasonCategory::ProcessingError),
    ("insufficient_funds", ReasonCategory::Authorization),
    ("credit_not_processed", ReasonCategory::ConsumerDispute),
    ("product_not_received", ReasonCategory::ConsumerDispute),
    ("product_unacceptable", ReasonCategory::ConsumerDispute),
    ("subscription_canceled", ReasonCategory::ConsumerDispute),
    ("customer_initiated", ReasonCategory::ConsumerDispute),
    ("general", ReasonCategory::ConsumerDispute),
];

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut map = Catalogue::new();
        for line in CATALOGUE_CSV.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            // The file is ours and checked by a test; a malformed row is skipped rather than aborting start-up.
            if let [network, code, title @ .., category, stripe_reason] = fields.as_slice()
                && let (Ok(network), Ok(category)) = (network.parse::<CardNetwork>(), category.parse())
            {
                map.insert(
                    (network, (*code).to_owned()),
                    CatalogueEntry {
                        title: title.join(","),
                        category,
                        stripe_reason: stripe_reason.trim().to_owned(),
                    },
                );
            }
        }
        map
    })
}

fn normalise(network: CardNetwork, raw: &str) -> String {
    let code: String = raw
        .trim()
        .to_ascii_uppercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match network {
        CardNetwork::Visa => {
            let code = code.trim_start_matches("VISA").to_owned();
            if let Some((_, modern)) = VISA_LEGACY.iter().find(|(legacy, _)| *legacy == code) {
                return (*modern).to_owned();
            }
            // "10.40" and "1040" both mean 10.4
            let digits: String = code.chars().filter(char::is_ascii_digit).collect();
            if code.chars().all(|c| c.is_ascii_digit() || c == '.') && digits.len() >= 3 {
                let sub = digits[2..].trim_end_matches('0');
                return format!("{}.{}", &digits[..2], if sub.is_empty() { "0" } else { sub });
            }
            code
        }
        CardNetwork::Mastercard => code.trim_start_matches("MC").to_owned(),
        CardNetwork::Amex | CardNetwork::Discover => code,
        CardNetwork::Other => raw.trim().to_ascii_lowercase(),
    }
}

impl ReasonCode {
    /// Normalises `raw` for `network` and looks it up; unknown codes are refused.
    pub fn parse(network: CardNetwork, raw: &str) -> Result<Self, DomainError> {
        let code = normalise(network, raw);
        let unknown = || DomainError::UnknownReasonCode {
            network: network.to_string(),
            code: raw.trim().to_owned(),
        };
        if code.is_empty() {
            return Err(unknown());
        }
        if network == CardNetwork::Other {
            if let Some((_, category)) = GENERIC_REASONS.iter().find(|(name, _)| *name == code) {
                return Ok(Self {
                    network,
                    code,
                    category: *category,
                });
            }
            // A network code sent without its network: accept it if exactly one network knows it.
            let upper = code.to_ascii_uppercase();
            let mut found = catalogue().iter().filter(|((_, c), _)| *c == upper);
            return match (found.next(), found.next()) {
                (Some((_, entry)), None) => Ok(Self {
                    network,
                    code: upper,
                    category: entry.category,
                }),
                _ => Err(unknown()),
            };
        }
        catalogue()
            .get(&(network, code.clone()))
            .map(|entry| Self {
                network,
                code,
                category: entry.category,
            })
            .ok_or_else(unknown)
    }

    pub fn network(&self) -> CardNetwork {
        self.network
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn category(&self) -> ReasonCategory {
        self.category
    }

    /// The network's title for the code, where the catalogue has one.
    pub fn title(&self) -> Option<&'static str> {
        catalogue()
            .get(&(self.network, self.code.clone()))
            .map(|entry| entry.title.as_str())
    }

    /// Stripe's generic reason for the code (`fraudulent`, `product_not_received`, ...), where the catalogue
    /// has the code; for network `other` the code is itself the generic reason.
    pub fn stripe_reason(&self) -> Option<&str> {
        if self.network == CardNetwork::Other && GENERIC_REASONS.iter().any(|(name, _)| *name == self.code) {
            return Some(self.code.as_str());
        }
        catalogue()
            .get(&(self.network, self.code.clone()))
            .map(|entry| entry.stripe_reason.as_str())
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.network, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_row_is_loaded() {
        let rows = CATALOGUE_CSV.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
        assert_eq!(catalogue().len(), rows);
        assert!(rows > 80);
    }

    #[test]
    fn adyen_leading_space_is_trimmed() {
        let code = ReasonCode::parse(CardNetwork::Mastercard, " 4853").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code.code(), "4853");
        assert_eq!(code.category(), ReasonCategory::ConsumerDispute);
        assert_eq!(code.title(), Some("Cardholder Dispute"));
    }

    #[test]
    fn legacy_visa_codes_map_to_visa_claims_resolution() {
        let code = ReasonCode::parse(CardNetwork::Visa, "83").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code.code(), "10.4");
        assert_eq!(code.category(), ReasonCategory::Fraud);
        assert_eq!(
            ReasonCode::parse(CardNetwork::Visa, "1040").map(|c| c.code().to_owned()),
            Ok("10.4".into())
        );
    }

    #[test]
    fn an_unknown_code_for_the_network_is_rejected() {
        assert!(matches!(
            ReasonCode::parse(CardNetwork::Visa, "4853"),
            Err(DomainError::UnknownReasonCode { .. })
        ));
        assert!(ReasonCode::parse(CardNetwork::Mastercard, "").is_err());
    }

    #[test]
    fn other_network_takes_generic_reasons() {
        let code = ReasonCode::parse(CardNetwork::Other, "Fraudulent").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code.category(), ReasonCategory::Fraud);
        assert!(ReasonCode::parse(CardNetwork::Other, "whatever").is_err());
    }

    #[test]
    fn amex_and_discover_codes_are_case_insensitive() {
        assert_eq!(
            ReasonCode::parse(CardNetwork::Amex, "c08").map(|c| c.category()),
            Ok(ReasonCategory::ConsumerDispute)
        );
        assert_eq!(
            ReasonCode::parse(CardNetwork::Discover, "ua02").map(|c| c.category()),
            Ok(ReasonCategory::Fraud)
        );
    }
}
