//! Small helpers shared by the processor modules: tolerant field access and exact money parsing.
//!
//! Processors disagree on types (Adyen sends numbers as strings, Stripe sends `0` for "no date"), so every
//! accessor here returns `Option` and the caller decides whether a field is required.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use verdict_domain::{CardNetwork, Currency, Money, ReasonCode};

use crate::model::ParseError;

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))
}

/// The value at `path`, if every step exists.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// A non-empty string at `path`.
pub(crate) fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(crate) fn owned(value: &Value, path: &[&str]) -> Option<String> {
    str_at(value, path).map(str::to_owned)
}

pub(crate) fn required<'a>(value: &'a Value, path: &[&str]) -> Result<&'a str, ParseError> {
    str_at(value, path).ok_or_else(|| ParseError::missing(path.join(".")))
}

/// An integer sent either as a JSON number or as a decimal string.
pub(crate) fn int_at(value: &Value, path: &[&str]) -> Option<i64> {
    match at(value, path)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Money from integer minor units; an unknown currency or a non-positive amount yields `None`, because a
/// notification is still worth recording when its amount is unusable.
pub(crate) fn money_minor(minor: Option<i64>, currency: Option<&str>) -> Option<Money> {
    let currency = Currency::parse(currency?).ok()?;
    Money::new(minor?, currency).ok()
}

/// Money from a decimal major-unit string such as `"100.00"`, without floating point.
pub(crate) fn money_decimal(amount: Option<&str>, currency: Option<&str>) -> Option<Money> {
    let currency = Currency::parse(currency?).ok()?;
    let minor = decimal_to_minor(amount?, currency.exponent())?;
    Money::new(minor, currency).ok()
}

/// `"12.5"` with exponent 2 is 1250; more fraction digits than the currency has are refused unless zero.
pub(crate) fn decimal_to_minor(text: &str, exponent: u32) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exp = usize::try_from(exponent).ok()?;
    let (kept, dropped) = if fraction.len() > exp {
        fraction.split_at(exp)
    } else {
        (fraction, "")
    };
    if dropped.bytes().any(|b| b != b'0') {
        return None;
    }
    let scale = 10_i64.checked_pow(exponent)?;
    let whole: i64 = whole.parse().ok()?;
    let mut frac: i64 = if kept.is_empty() { 0 } else { kept.parse().ok()? };
    for _ in kept.len()..exp {
        frac = frac.checked_mul(10)?;
    }
    whole.checked_mul(scale)?.checked_add(frac)
}

pub(crate) fn unix_seconds(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

pub(crate) fn rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A date-only deadline is read as the start of that day in UTC: the earliest reading, so we never act late.
pub(crate) fn date_start_utc(text: &str) -> Option<DateTime<Utc>> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

pub(crate) fn required_time(value: Option<&str>, field: &str) -> Result<DateTime<Utc>, ParseError> {
    let text = value.ok_or_else(|| ParseError::missing(field))?;
    rfc3339(text).ok_or_else(|| ParseError::invalid(field, format!("not an RFC 3339 timestamp: {text:?}")))
}

/// The card network named by a processor's brand or payment-method string. Card schemes the domain does
/// not model (JCB, UnionPay...) become `Other`; non-card methods yield `None`.
pub(crate) fn network_from_brand(brand: &str) -> Option<CardNetwork> {
    let lower = brand.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    if let Ok(network) = lower.parse::<CardNetwork>() {
        return Some(network);
    }
    // Processor variants such as "visa_applepay", "mc_googlepay", "visadebit", "mccredit".
    let prefix = lower.split(['_', '-', ' ']).next().unwrap_or_default();
    if let Ok(network) = prefix.parse::<CardNetwork>() {
        return Some(network);
    }
    for (start, network) in [
        ("visa", CardNetwork::Visa),
        ("mc", CardNetwork::Mastercard),
        ("master", CardNetwork::Mastercard),
        ("maestro", CardNetwork::Mastercard),
        ("amex", CardNetwork::Amex),
        ("american", CardNetwork::Amex),
        ("discover", CardNetwork::Discover),
        ("diners", CardNetwork::Discover),
    ] {
        if lower.starts_with(start) {
            return Some(network);
        }
    }
    const OTHER_CARD_SCHEMES: &[&str] = &["jcb", "cup", "unionpay", "elo", "hipercard", "cartebancaire", "rupay"];
    OTHER_CARD_SCHEMES
        .iter()
        .any(|s| prefix == *s || lower == *s)
        .then_some(CardNetwork::Other)
}

/// Normalised reason code, or `None` when the network or the catalogue does not know it.
pub(crate) fn reason_code(network: Option<CardNetwork>, raw: Option<&str>) -> Option<ReasonCode> {
    ReasonCode::parse(network?, raw?).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_exactly() {
        assert_eq!(decimal_to_minor("100.00", 2), Some(10_000));
        assert_eq!(decimal_to_minor("3", 2), Some(300));
        assert_eq!(decimal_to_minor("3.5", 2), Some(350));
        assert_eq!(decimal_to_minor("0.10", 2), Some(10));
        assert_eq!(decimal_to_minor("5000", 0), Some(5000));
        assert_eq!(decimal_to_minor("5000.00", 0), Some(5000));
        assert_eq!(decimal_to_minor("1.005", 3), Some(1005));
        assert_eq!(
            decimal_to_minor("1.005", 2),
            None,
            "sub-minor amounts are refused, not rounded"
        );
        for bad in ["", ".5", "-1.00", "1e3", "1.2.3", "abc", "99999999999999999999"] {
            assert_eq!(decimal_to_minor(bad, 2), None, "{bad}");
        }
    }

    #[test]
    fn money_helpers_drop_unusable_amounts() {
        assert_eq!(money_minor(Some(0), Some("USD")), None);
        assert_eq!(money_minor(Some(100), Some("XXY")), None);
        assert_eq!(money_minor(Some(100), None), None);
        assert_eq!(
            money_decimal(Some("3.00"), Some("usd")).map(|m| m.minor_units()),
            Some(300)
        );
    }

    #[test]
    fn brands_map_to_networks() {
        for (brand, network) in [
            ("visa", Some(CardNetwork::Visa)),
            ("Visa", Some(CardNetwork::Visa)),
            ("mc", Some(CardNetwork::Mastercard)),
            ("mastercard", Some(CardNetwork::Mastercard)),
            ("visa_applepay", Some(CardNetwork::Visa)),
            ("mccredit", Some(CardNetwork::Mastercard)),
            ("American Express", Some(CardNetwork::Amex)),
            ("diners", Some(CardNetwork::Discover)),
            ("jcb", Some(CardNetwork::Other)),
            ("cup", Some(CardNetwork::Other)),
            ("bankTransfer_IBAN", None),
            ("paypal", None),
            ("", None),
        ] {
            assert_eq!(network_from_brand(brand), network, "{brand}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(
            date_start_utc("2016-02-22").map(|d| d.to_rfc3339()),
            Some("2016-02-22T00:00:00+00:00".into())
        );
        assert_eq!(date_start_utc("22/02/2016"), None);
        assert_eq!(
            rfc3339("2021-07-31T03:03:07+02:00").map(|d| d.to_rfc3339()),
            Some("2021-07-31T01:03:07+00:00".into())
        );
        assert!(required_time(None, "x").is_err());
        assert!(required_time(Some("nope"), "x").is_err());
    }
}
