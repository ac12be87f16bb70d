//! What defending a dispute is worth: the recovery to expect against the cost of defending, and what the
//! seller would repay when the seller owns the dispute.
//!
//! The win rate is the one observed for disputes like this one (reason category, processor, evidence
//! completeness band) once enough of them were decided, and a configured prior before. Costs are configured per
//! currency, in that currency's minor units: a processor's fee or an analyst's hour is not the same figure in
//! euros and in yen, and a dispute in a currency without configured costs has no economics (a clear error)
//! rather than a figure read in the wrong unit.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Money, Processor, ReasonCategory};

/// How complete a dispute's evidence is, in three bands: the win rate is observed per band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceBand {
    /// Under 50.
    Low,
    /// 50 to 99: something required is still missing.
    Partial,
    /// 100: nothing required is missing.
    Complete,
}

impl EvidenceBand {
    pub const ALL: [EvidenceBand; 3] = [EvidenceBand::Low, EvidenceBand::Partial, EvidenceBand::Complete];

    pub fn of_score(score: u8) -> Self {
        match score {
            0..=49 => EvidenceBand::Low,
            50..=99 => EvidenceBand::Partial,
            _ => EvidenceBand::Complete,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            EvidenceBand::Low => "low",
            EvidenceBand::Partial => "partial",
            EvidenceBand::Complete => "complete",
        }
    }
}

impl std::str::FromStr for EvidenceBand {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidenceBand::ALL
            .into_iter()
            .find(|b| b.as_str() == s.trim())
            .ok_or_else(|| crate::DomainError::invalid(format!("unknown evidence band {s:?}")))
    }
}

impl fmt::Display for EvidenceBand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What defending costs in one currency, in its minor units (`[policy.costs.EUR]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyCosts {
    /// The processor's fee for a dispute, by processor (kept whatever the outcome); a processor not listed
    /// charges none.
    #[serde(default)]
    pub processor_fee_minor: BTreeMap<Processor, i64>,
    /// What an analyst's hour costs.
    pub analyst_hourly_cost_minor: i64,
}

impl CurrencyCosts {
    /// The figures of the default configuration: the same amounts in EUR, USD and GBP.
    fn default_figures() -> Self {
        Self {
            processor_fee_minor: [
                (Processor::Stripe, 1_500),
                (Processor::Adyen, 2_000),
                (Processor::Paypal, 2_000),
                (Processor::Braintree, 1_500),
                (Processor::Manual, 0),
            ]
            .into_iter()
            .collect(),
            analyst_hourly_cost_minor: 4_000,
        }
    }
}

/// Why a dispute has no economics, or the economics settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EconomicsError {
    #[error("no cost of defending is configured for {currency}: add [policy.costs.{currency}] to verdict.toml")]
    NoCosts { currency: String },
    #[error("[policy.costs.{code}]: {why}")]
    InvalidCosts { code: String, why: String },
}

/// `[policy]` economics settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EconomicsConfig {
    /// Win rate assumed before enough disputes like this one were decided, in basis points.
    pub prior_win_rate_bps: u32,
    /// Decided disputes needed before the observed win rate replaces the prior.
    pub min_decided: u32,
    /// Analyst time one defense takes (the same in every currency; its cost is per currency).
    pub analyst_minutes: i64,
    /// What defending costs, by ISO 4217 code; EUR, USD and GBP by default.
    pub costs: BTreeMap<String, CurrencyCosts>,
    /// Share of a seller-owned dispute recovered from the seller's payout, in basis points.
    pub seller_share_bps: u32,
}

impl Default for EconomicsConfig {
    fn default() -> Self {
        Self {
            prior_win_rate_bps: 4_000,
            min_decided: 30,
            analyst_minutes: 30,
            costs: ["EUR", "USD", "GBP"]
                .into_iter()
                .map(|code| (code.to_owned(), CurrencyCosts::default_figures()))
                .collect(),
            seller_share_bps: 10_000,
        }
    }
}

/// Won and decided disputes by (reason category, processor, evidence band).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WinRates {
    pub counts: BTreeMap<(ReasonCategory, Processor, EvidenceBand), (u32, u32)>,
}

/// Where a win rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum WinRateBasis {
    /// `won` of `decided` disputes like this one.
    Observed { won: u32, decided: u32 },
    /// Too few decided (`decided` so far): the configured prior.
    Prior { decided: u32 },
}

/// The figures of one dispute, in minor units of its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Economics {
    pub win_rate_bps: u32,
    pub basis: WinRateBasis,
    /// Amount times win rate.
    pub expected_recovery_minor: i64,
    /// Processor fee plus analyst time.
    pub defense_cost_minor: i64,
    /// The processor's fee alone, in the dispute's currency (absent from runs stored before costs were per
    /// currency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_fee_minor: Option<i64>,
    /// The analyst's time alone, in the dispute's currency (likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyst_cost_minor: Option<i64>,
    /// What the seller repays if the dispute is lost or accepted (none unless the seller owns it).
    pub seller_recoverable_minor: i64,
    pub amount_minor: i64,
}

impl Economics {
    /// What accepting is expected to cost the marketplace: the amount less what the seller repays.
    pub fn accept_cost_minor(&self) -> i64 {
        self.amount_minor - self.seller_recoverable_minor
    }

    /// What defending is expected to cost: its cost, plus the unrecovered share of the exposure when lost.
    pub fn defend_cost_minor(&self) -> i64 {
        let exposure = i128::from(self.accept_cost_minor());
        let lose = i128::from(10_000 - self.win_rate_bps.min(10_000));
        let expected_loss = (exposure * lose / 10_000) as i64;
        self.defense_cost_minor + expected_loss
    }

    /// Accepting is expected to cost less than defending.
    pub fn cheaper_to_accept(&self) -> bool {
        self.accept_cost_minor() < self.defend_cost_minor()
    }
}

impl EconomicsConfig {
    /// Refuses costs that cannot be right: a code that is no ISO 4217 currency, a negative figure.
    pub fn validate(&self) -> Result<(), EconomicsError> {
        for (code, costs) in &self.costs {
            let invalid = |why: String| EconomicsError::InvalidCosts {
                code: code.clone(),
                why,
            };
            let currency = crate::Currency::parse(code).map_err(|e| invalid(e.to_string()))?;
            if currency.code() != code {
                return Err(invalid(format!("write the code as {}", currency.code())));
            }
            if costs.analyst_hourly_cost_minor < 0 {
                return Err(invalid("analyst_hourly_cost_minor is negative".into()));
            }
            if let Some((processor, _)) = costs.processor_fee_minor.iter().find(|(_, fee)| **fee < 0) {
                return Err(invalid(format!("processor_fee_minor.{processor} is negative")));
            }
        }
        Ok(())
    }

    /// What defending costs in `currency`; an error naming it when none is configured.
    pub fn costs(&self, currency: crate::Currency) -> Result<&CurrencyCosts, EconomicsError> {
        self.costs.get(currency.code()).ok_or_else(|| EconomicsError::NoCosts {
            currency: currency.code().to_owned(),
        })
    }

    /// The economics of a dispute of `amount` like the ones `rates` counts, its costs read in the amount's
    /// currency.
    pub fn economics(
        &self,
        amount: Money,
        category: ReasonCategory,
        processor: Processor,
        band: EvidenceBand,
        seller_liable: bool,
        rates: &WinRates,
    ) -> Result<Economics, EconomicsError> {
        let costs = self.costs(amount.currency())?;
        let (won, decided) = rates
            .counts
            .get(&(category, processor, band))
            .copied()
            .unwrap_or((0, 0));
        let (win_rate_bps, basis) = if decided >= self.min_decided.max(1) {
            let rate = (u64::from(won.min(decided)) * 10_000 / u64::from(decided)) as u32;
            (rate, WinRateBasis::Observed { won, decided })
        } else {
            (self.prior_win_rate_bps.min(10_000), WinRateBasis::Prior { decided })
        };
        let minor = i128::from(amount.minor_units());
        let expected_recovery_minor = (minor * i128::from(win_rate_bps) / 10_000) as i64;
        let fee = costs.processor_fee_minor.get(&processor).copied().unwrap_or(0).max(0);
        let analyst = self
            .analyst_minutes
            .max(0)
            .saturating_mul(costs.analyst_hourly_cost_minor.max(0))
            / 60;
        let seller_recoverable_minor = if seller_liable {
            (minor * i128::from(self.seller_share_bps.min(10_000)) / 10_000) as i64
        } else {
            0
        };
        Ok(Economics {
            win_rate_bps,
            basis,
            expected_recovery_minor,
            defense_cost_minor: fee.saturating_add(analyst),
            processor_fee_minor: Some(fee),
            analyst_cost_minor: Some(analyst),
            seller_recoverable_minor,
            amount_minor: amount.minor_units(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Currency;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
    }

    #[test]
    fn the_prior_holds_until_enough_disputes_were_decided() {
        let config = EconomicsConfig::default();
        let mut rates = WinRates::default();
        let key = (ReasonCategory::Fraud, Processor::Stripe, EvidenceBand::Complete);
        rates.counts.insert(key, (29, 29));
        let e = config
            .economics(eur(10_000), key.0, key.1, key.2, false, &rates)
            .unwrap();
        assert_eq!(e.win_rate_bps, 4_000);
        assert_eq!(e.basis, WinRateBasis::Prior { decided: 29 });
        assert_eq!(e.expected_recovery_minor, 4_000);
        rates.counts.insert(key, (24, 30));
        let e = config
            .economics(eur(10_000), key.0, key.1, key.2, false, &rates)
            .unwrap();
        assert_eq!(e.win_rate_bps, 8_000);
        assert_eq!(e.expected_recovery_minor, 8_000);
        // 15.00 Stripe fee and 30 minutes at 40.00 an hour.
        assert_eq!(e.defense_cost_minor, 1_500 + 2_000);
    }

    #[test]
    fn a_small_dispute_is_cheaper_to_accept_and_a_large_one_is_not() {
        let config = EconomicsConfig::default();
        let small = fraud_at(&config, eur(2_000)).unwrap();
        // Accept: 20.00. Defend: 35.00 plus 60% of 20.00.
        assert_eq!(small.accept_cost_minor(), 2_000);
        assert_eq!(small.defend_cost_minor(), 3_500 + 1_200);
        assert!(small.cheaper_to_accept());
        let large = fraud_at(&config, eur(50_000)).unwrap();
        assert!(!large.cheaper_to_accept());
    }

    #[test]
    fn a_seller_owned_dispute_costs_the_marketplace_what_the_seller_does_not_repay() {
        let config = EconomicsConfig::default();
        let e = config
            .economics(
                eur(50_000),
                ReasonCategory::ConsumerDispute,
                Processor::Adyen,
                EvidenceBand::Partial,
                true,
                &WinRates::default(),
            )
            .unwrap();
        assert_eq!(e.seller_recoverable_minor, 50_000);
        assert_eq!(e.accept_cost_minor(), 0);
        assert!(e.cheaper_to_accept());
    }

    fn money(minor: i64, code: &str) -> Money {
        Money::new(minor, Currency::parse(code).unwrap()).unwrap()
    }

    fn fraud_at(config: &EconomicsConfig, amount: Money) -> Result<Economics, EconomicsError> {
        config.economics(
            amount,
            ReasonCategory::Fraud,
            Processor::Stripe,
            EvidenceBand::Low,
            false,
            &WinRates::default(),
        )
    }

    #[test]
    fn costs_are_read_in_the_disputes_currency() {
        let mut config = EconomicsConfig::default();
        config.costs.insert(
            "USD".into(),
            CurrencyCosts {
                processor_fee_minor: [(Processor::Stripe, 1_500)].into_iter().collect(),
                analyst_hourly_cost_minor: 6_000,
            },
        );
        config.costs.insert(
            "JPY".into(),
            CurrencyCosts {
                processor_fee_minor: [(Processor::Stripe, 2_000)].into_iter().collect(),
                analyst_hourly_cost_minor: 7_000,
            },
        );
        config.validate().unwrap();
        // EUR keeps the defaults: 15.00 fee and 30 minutes at 40.00.
        let eur = fraud_at(&config, money(10_000, "EUR")).unwrap();
        assert_eq!(
            (eur.processor_fee_minor, eur.analyst_cost_minor),
            (Some(1_500), Some(2_000))
        );
        assert_eq!(eur.defense_cost_minor, 3_500);
        // USD: 15.00 fee and 30 minutes at 60.00.
        let usd = fraud_at(&config, money(10_000, "USD")).unwrap();
        assert_eq!(usd.defense_cost_minor, 1_500 + 3_000);
        // JPY has no minor unit: 2,000 yen and 30 minutes at 7,000 yen.
        let jpy = fraud_at(&config, money(10_000, "JPY")).unwrap();
        assert_eq!(jpy.defense_cost_minor, 2_000 + 3_500);
        assert_eq!(jpy.expected_recovery_minor, 4_000);
        // A processor not listed for a currency charges no fee there.
        let paypal = config
            .economics(
                money(10_000, "USD"),
                ReasonCategory::Fraud,
                Processor::Paypal,
                EvidenceBand::Low,
                false,
                &WinRates::default(),
            )
            .unwrap();
        assert_eq!(paypal.processor_fee_minor, Some(0));
    }

    #[test]
    fn the_default_costs_cover_eur_usd_and_gbp() {
        let config = EconomicsConfig::default();
        config.validate().unwrap();
        for code in ["EUR", "USD", "GBP"] {
            assert_eq!(
                fraud_at(&config, money(2_000, code)).unwrap().defense_cost_minor,
                3_500,
                "{code}"
            );
        }
    }

    #[test]
    fn a_currency_without_costs_is_a_clear_error() {
        let config = EconomicsConfig::default();
        let err = fraud_at(&config, money(2_000, "CHF")).unwrap_err();
        assert_eq!(err, EconomicsError::NoCosts { currency: "CHF".into() });
        assert_eq!(
            err.to_string(),
            "no cost of defending is configured for CHF: add [policy.costs.CHF] to verdict.toml"
        );
    }

    #[test]
    fn costs_with_a_wrong_code_or_a_negative_figure_are_refused() {
        let mut config = EconomicsConfig::default();
        config.costs.insert("XYZ".into(), CurrencyCosts::default_figures());
        assert!(matches!(config.validate(), Err(EconomicsError::InvalidCosts { code, .. }) if code == "XYZ"));
        let mut config = EconomicsConfig::default();
        config.costs.insert("eur".into(), CurrencyCosts::default_figures());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("write the code as EUR")
        );
        let mut config = EconomicsConfig::default();
        if let Some(costs) = config.costs.get_mut("GBP") {
            costs.processor_fee_minor.insert(Processor::Adyen, -1);
        }
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "[policy.costs.GBP]: processor_fee_minor.adyen is negative"
        );
    }

    #[test]
    fn the_costs_read_from_toml_shape() {
        let config: EconomicsConfig = serde_json::from_value(serde_json::json!({
            "analyst_minutes": 20,
            "costs": {"EUR": {"processor_fee_minor": {"stripe": 1000}, "analyst_hourly_cost_minor": 3000}}
        }))
        .unwrap();
        assert_eq!(config.costs.len(), 1, "configured costs replace the defaults");
        let e = fraud_at(&config, money(2_000, "EUR")).unwrap();
        assert_eq!(e.defense_cost_minor, 1_000 + 1_000);
        assert!(fraud_at(&config, money(2_000, "USD")).is_err());
    }

    #[test]
    fn bands_split_scores_at_50_and_100() {
        assert_eq!(EvidenceBand::of_score(0), EvidenceBand::Low);
        assert_eq!(EvidenceBand::of_score(49), EvidenceBand::Low);
        assert_eq!(EvidenceBand::of_score(50), EvidenceBand::Partial);
        assert_eq!(EvidenceBand::of_score(99), EvidenceBand::Partial);
        assert_eq!(EvidenceBand::of_score(100), EvidenceBand::Complete);
    }
}
