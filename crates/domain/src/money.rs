//! Money as integer minor units with an ISO 4217 currency: no floating point ever touches an amount.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// An ISO 4217 currency that exists (checked against the full code list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, DomainError> {
        let code = code.trim().to_ascii_uppercase();
        iso_currency::Currency::from_code(&code)
            .map(Self)
            .ok_or(DomainError::UnknownCurrency(code))
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point (JPY 0, EUR 2, BHD 3); currencies without one count as 0.
    pub fn exponent(&self) -> u32 {
        self.0.exponent().map(u32::from).unwrap_or(0)
    }
}

impl FromStr for Currency {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// A disputed amount: strictly positive minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor_units: i64,
    currency: Currency,
}

/// Largest amount Verdict accepts: far above any card payment, far below i64 overflow in sums.
pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000;

impl Money {
    pub fn new(minor_units: i64, currency: Currency) -> Result<Self, DomainError> {
        if minor_units <= 0 {
            return Err(DomainError::invalid(format!(
                "amount must be positive, got {minor_units}"
            )));
        }
        if minor_units > MAX_MINOR_UNITS {
            return Err(DomainError::invalid(format!(
                "amount {minor_units} exceeds the maximum of {MAX_MINOR_UNITS} minor units"
            )));
        }
        Ok(Self { minor_units, currency })
    }

    pub fn minor_units(&self) -> i64 {
        self.minor_units
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in major units as exact decimal text, e.g. `1234.50`.
    pub fn decimal(&self) -> String {
        let exp = self.currency.exponent();
        if exp == 0 {
            return self.minor_units.to_string();
        }
        let scale = 10_i64.pow(exp);
        format!(
            "{}.{:0width$}",
            self.minor_units / scale,
            self.minor_units % scale,
            width = exp as usize
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_unknown_currency_is_rejected() {
        assert_eq!(Currency::parse("XYZ"), Err(DomainError::UnknownCurrency("XYZ".into())));
    }

    #[test]
    fn currency_codes_are_normalised() {
        assert_eq!(Currency::parse(" usd").map(|c| c.code()), Ok("USD"));
    }

    #[test]
    fn a_negative_amount_is_rejected() {
        assert!(Money::new(-1, eur()).is_err());
        assert!(Money::new(0, eur()).is_err());
    }

    #[test]
    fn an_overflowing_amount_is_rejected() {
        assert!(Money::new(i64::MAX, eur()).is_err());
    }

    #[test]
    fn amounts_format_with_the_currency_exponent() {
        assert_eq!(
            Money::new(123_405, eur()).map(|m| m.to_string()),
            Ok("1234.05 EUR".into())
        );
        let jpy = Currency::parse("JPY").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Money::new(5000, jpy).map(|m| m.to_string()), Ok("5000 JPY".into()));
        let bhd = Currency::parse("BHD").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Money::new(1_005, bhd).map(|m| m.decimal()), Ok("1.005".into()));
    }
}
