//! Dispute patterns and card-network monitoring: the rules behind the figures leads watch.
//!
//! The figures themselves are computed in the database (a million disputes are never loaded); this module holds
//! what those queries must agree on and what is decided after them: the closed set of groupings, which statuses
//! count as won, lost or accepted, the win rate, and the Visa VAMP and Mastercard ECM thresholds (reference data
//! in `data/monitoring-thresholds.csv`, with sources) that a seller's or the marketplace's monthly ratio of
//! disputes to orders is held against.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};

use crate::{CardNetwork, DomainError, Stage, Status};

/// What a pattern can be grouped by; any combination may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternDimension {
    ReasonCategory,
    ReasonCode,
    Processor,
    Network,
    Seller,
    /// The device model of the order's first line (from the marketplace order facts).
    ProductModel,
    /// The cosmetic grade of the order's first line.
    Grade,
    /// The country the order was shipped to.
    Country,
    /// The calendar month (UTC) the dispute was opened in, `YYYY-MM`.
    Month,
}

impl PatternDimension {
    pub const ALL: [PatternDimension; 9] = [
        PatternDimension::ReasonCategory,
        PatternDimension::ReasonCode,
        PatternDimension::Processor,
        PatternDimension::Network,
        PatternDimension::Seller,
        PatternDimension::ProductModel,
        PatternDimension::Grade,
        PatternDimension::Country,
        PatternDimension::Month,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PatternDimension::ReasonCategory => "reason_category",
            PatternDimension::ReasonCode => "reason_code",
            PatternDimension::Processor => "processor",
            PatternDimension::Network => "network",
            PatternDimension::Seller => "seller",
            PatternDimension::ProductModel => "product_model",
            PatternDimension::Grade => "grade",
            PatternDimension::Country => "country",
            PatternDimension::Month => "month",
        }
    }
}

impl FromStr for PatternDimension {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        PatternDimension::ALL
            .into_iter()
            .find(|d| d.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = PatternDimension::ALL.iter().map(|d| d.as_str()).collect();
                DomainError::InvalidInput(format!("unknown pattern grouping {s:?} (one of {})", names.join(", ")))
            })
    }
}

impl fmt::Display for PatternDimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a dispute's status counts in patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    Open,
    /// Won, or withdrawn by the cardholder or issuer: the money stays.
    Won,
    /// Lost, or expired with nothing submitted: the money is gone after a defense that failed or never came.
    Lost,
    /// Liability accepted, or (inquiries and alerts) refunded before a chargeback: the money was given back
    /// without a defense.
    Accepted,
}

impl OutcomeClass {
    pub fn of(status: Status) -> Self {
        match status {
            Status::Notified | Status::Triaged | Status::EvidenceGathering | Status::Submitted => OutcomeClass::Open,
            Status::Won | Status::Withdrawn => OutcomeClass::Won,
            Status::Lost | Status::Expired => OutcomeClass::Lost,
            Status::Accepted | Status::Resolved => OutcomeClass::Accepted,
        }
    }

    /// The statuses of this class, for the queries' `IN` lists.
    pub fn statuses(&self) -> Vec<Status> {
        Status::ALL
            .iter()
            .copied()
            .filter(|s| OutcomeClass::of(*s) == *self)
            .collect()
    }
}

/// Won over decided-by-a-defense (won plus lost); accepted disputes were never fought. `None` when nothing was
/// decided yet.
pub fn win_rate(won: u64, lost: u64) -> Option<f64> {
    let decided = won + lost;
    (decided > 0).then(|| won as f64 / decided as f64)
}

/// The card networks' monitoring programs Verdict reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MonitoringProgram {
    /// Visa Acquirer Monitoring Program: (TC40 fraud reports + TC15 disputes) / settled card-not-present sales,
    /// the same month.
    VisaVamp,
    /// Mastercard Excessive Chargeback Program: chargebacks in a month / sales in the preceding month.
    MastercardEcm,
}

impl MonitoringProgram {
    pub const ALL: [MonitoringProgram; 2] = [MonitoringProgram::VisaVamp, MonitoringProgram::MastercardEcm];

    pub fn as_str(&self) -> &'static str {
        match self {
            MonitoringProgram::VisaVamp => "visa_vamp",
            MonitoringProgram::MastercardEcm => "mastercard_ecm",
        }
    }

    pub fn network(&self) -> CardNetwork {
        match self {
            MonitoringProgram::VisaVamp => CardNetwork::Visa,
            MonitoringProgram::MastercardEcm => CardNetwork::Mastercard,
        }
    }

    /// Whether a dispute at `stage` counts towards the program. VAMP counts disputes (TC15) and fraud reports
    /// (TC40, which Verdict receives as early fraud warnings: pre-dispute, fraud); ECM counts chargebacks.
    /// Inquiries and pre-dispute alerts never reached the network's dispute count.
    pub fn counts(&self, stage: Stage, fraud: bool) -> bool {
        match self {
            MonitoringProgram::VisaVamp => !stage.is_pre_chargeback() || (stage == Stage::PreDispute && fraud),
            MonitoringProgram::MastercardEcm => !stage.is_pre_chargeback(),
        }
    }

    /// The month whose orders are the ratio's denominator: the same month for VAMP, the one before for ECM.
    pub fn orders_month(&self, month: NaiveDate) -> NaiveDate {
        match self {
            MonitoringProgram::VisaVamp => first_of_month(month),
            MonitoringProgram::MastercardEcm => {
                let first = first_of_month(month);
                first.pred_opt().map(first_of_month).unwrap_or(first)
            }
        }
    }

    /// The ratio as the program states it, in basis points: exact for VAMP, whole basis points rounded half up
    /// for ECM (185 / 7,500 is 246.66, so 247). `None` without orders.
    pub fn ratio_bps(&self, disputes: u64, orders: u64) -> Option<f64> {
        if orders == 0 {
            return None;
        }
        Some(match self {
            MonitoringProgram::VisaVamp => disputes as f64 * 10_000.0 / orders as f64,
            MonitoringProgram::MastercardEcm => rounded_bps(disputes, orders) as f64,
        })
    }
}

impl fmt::Display for MonitoringProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MonitoringProgram {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MonitoringProgram::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| DomainError::InvalidInput(format!("unknown monitoring program {s:?}")))
    }
}

/// Whole basis points, half up, in integers (no float rounding at the boundary).
fn rounded_bps(disputes: u64, orders: u64) -> u64 {
    (disputes.saturating_mul(20_000) + orders) / orders.saturating_mul(2).max(1)
}

pub fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// A level of a monitoring program, as the reference data names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MonitoringLevel {
    /// VAMP: acquirer "above standard" (kept for reference; not applied to merchants).
    AboveStandard,
    /// VAMP: "excessive".
    Excessive,
    /// Mastercard: Excessive Chargeback Merchant.
    Ecm,
    /// Mastercard: High Excessive Chargeback Merchant.
    Hecm,
}

impl MonitoringLevel {
    pub const ALL: [MonitoringLevel; 4] = [
        MonitoringLevel::AboveStandard,
        MonitoringLevel::Excessive,
        MonitoringLevel::Ecm,
        MonitoringLevel::Hecm,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            MonitoringLevel::AboveStandard => "above_standard",
            MonitoringLevel::Excessive => "excessive",
            MonitoringLevel::Ecm => "ecm",
            MonitoringLevel::Hecm => "hecm",
        }
    }
}

impl FromStr for MonitoringLevel {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MonitoringLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == s.trim())
            .ok_or_else(|| DomainError::InvalidInput(format!("unknown monitoring level {s:?}")))
    }
}

impl fmt::Display for MonitoringLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One level of a program (a row of the reference data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub program: MonitoringProgram,
    pub level: MonitoringLevel,
    /// Only `merchant` rows are applied; `acquirer` rows bound an acquirer's whole portfolio.
    pub applies_to_merchants: bool,
    pub effective_from: NaiveDate,
    pub effective_until: Option<NaiveDate>,
    pub min_ratio_bps: u64,
    pub min_count: u64,
    pub source: String,
}

impl Threshold {
    fn in_force(&self, month: NaiveDate) -> bool {
        let month = first_of_month(month);
        let last_day = month
            .checked_add_months(chrono::Months::new(1))
            .and_then(|next| next.pred_opt())
            .unwrap_or(month);
        self.effective_from <= last_day && self.effective_until.is_none_or(|until| month <= until)
    }

    /// Whether `disputes` over `orders` reach this level: both the count and the ratio, compared in integers
    /// (VAMP exactly, ECM in whole basis points rounded half up).
    pub fn met(&self, disputes: u64, orders: u64) -> bool {
        if orders == 0 || disputes < self.min_count {
            return false;
        }
        match self.program {
            MonitoringProgram::VisaVamp => {
                u128::from(disputes) * 10_000 >= u128::from(self.min_ratio_bps) * u128::from(orders)
            }
            MonitoringProgram::MastercardEcm => rounded_bps(disputes, orders) >= self.min_ratio_bps,
        }
    }
}

/// The monitoring thresholds of the reference data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringThresholds {
    pub thresholds: Vec<Threshold>,
}

const THRESHOLDS_CSV: &str = include_str!("../data/monitoring-thresholds.csv");

impl MonitoringThresholds {
    /// Parses the reference file's format (header, then `program,level,scope,from,until,bps,count,source`).
    pub fn parse(csv: &str) -> Result<Self, DomainError> {
        let mut thresholds = Vec::new();
        for (index, line) in csv.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |what: &str| DomainError::InvalidInput(format!("thresholds line {}: {what}", index + 1));
            let fields: Vec<&str> = line.splitn(8, ',').collect();
            let [program, level, scope, from, until, bps, count, source] = fields.as_slice() else {
                return Err(bad("expected 8 fields"));
            };
            let date = |text: &str| NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| bad("bad date"));
            thresholds.push(Threshold {
                program: program.parse()?,
                level: level.parse()?,
                applies_to_merchants: match scope.trim() {
                    "merchant" => true,
                    "acquirer" => false,
                    _ => return Err(bad("scope is merchant or acquirer")),
                },
                effective_from: date(from)?,
                effective_until: (!until.trim().is_empty()).then(|| date(until)).transpose()?,
                min_ratio_bps: bps.trim().parse().map_err(|_| bad("bad basis points"))?,
                min_count: count.trim().parse().map_err(|_| bad("bad count"))?,
                source: source.trim().to_owned(),
            });
        }
        Ok(Self { thresholds })
    }

    /// The thresholds shipped with Verdict (a test checks the file parses; a broken file gives no thresholds
    /// rather than aborting a query).
    pub fn reference() -> &'static MonitoringThresholds {
        static REFERENCE: OnceLock<MonitoringThresholds> = OnceLock::new();
        REFERENCE.get_or_init(|| {
            MonitoringThresholds::parse(THRESHOLDS_CSV).unwrap_or(MonitoringThresholds { thresholds: Vec::new() })
        })
    }

    /// The merchant levels of `program` in force for `month`.
    pub fn in_force(&self, program: MonitoringProgram, month: NaiveDate) -> impl Iterator<Item = &Threshold> {
        self.thresholds
            .iter()
            .filter(move |t| t.program == program && t.applies_to_merchants && t.in_force(month))
    }

    /// The most severe merchant level of `program` that `disputes` over `orders` reach in `month`, if any
    /// (HECM before ECM: the higher ratio wins).
    pub fn flag(&self, program: MonitoringProgram, month: NaiveDate, disputes: u64, orders: u64) -> Option<&Threshold> {
        self.in_force(program, month)
            .filter(|t| t.met(disputes, orders))
            .max_by_key(|t| (t.min_ratio_bps, t.min_count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(y: i32, m: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default()
    }

    #[test]
    fn the_reference_file_parses_whole() {
        let parsed = MonitoringThresholds::parse(THRESHOLDS_CSV).map_err(|e| e.to_string());
        assert_eq!(parsed.as_ref().map(|t| t.thresholds.len()), Ok(6));
        assert_eq!(MonitoringThresholds::reference().thresholds.len(), 6);
        assert!(
            MonitoringThresholds::reference()
                .thresholds
                .iter()
                .all(|t| t.source.contains("https://"))
        );
    }

    #[test]
    fn statuses_fall_into_one_class_each() {
        assert_eq!(OutcomeClass::Won.statuses(), vec![Status::Won, Status::Withdrawn]);
        assert_eq!(OutcomeClass::Lost.statuses(), vec![Status::Lost, Status::Expired]);
        assert_eq!(
            OutcomeClass::Accepted.statuses(),
            vec![Status::Accepted, Status::Resolved]
        );
        assert_eq!(OutcomeClass::Open.statuses().len(), 4);
        assert_eq!(win_rate(0, 0), None);
        assert_eq!(win_rate(3, 1), Some(0.75));
    }

    #[test]
    fn vamp_merchant_level_from_april_2026_is_150_bps_over_1500_disputes() {
        let t = MonitoringThresholds::reference();
        let april = month(2026, 4);
        // 1,501 disputes: the minimum count. 1.50 % of 100,066 orders is 1,500.99: just over, flagged.
        let flagged = t.flag(MonitoringProgram::VisaVamp, april, 1_501, 100_066);
        assert_eq!(
            flagged.map(|f| (f.level, f.min_ratio_bps)),
            Some((MonitoringLevel::Excessive, 150))
        );
        // Exactly 1.50 %: 1,650 of 110,000. At the threshold counts ("at least").
        assert!(t.flag(MonitoringProgram::VisaVamp, april, 1_650, 110_000).is_some());
        // One order more and the ratio is just under.
        assert!(t.flag(MonitoringProgram::VisaVamp, april, 1_650, 110_001).is_none());
        // 1,500 disputes is not "more than 1,500", whatever the ratio.
        assert!(t.flag(MonitoringProgram::VisaVamp, april, 1_500, 1_500).is_none());
        // In March 2026 the level was 2.20 %: 1.50 % is not flagged, 2.20 % is.
        let march = month(2026, 3);
        assert!(t.flag(MonitoringProgram::VisaVamp, march, 1_650, 110_000).is_none());
        assert!(t.flag(MonitoringProgram::VisaVamp, march, 2_200, 100_000).is_some());
        assert!(t.flag(MonitoringProgram::VisaVamp, march, 2_199, 100_000).is_none());
        // Before June 2025 no merchant level was in force.
        assert!(
            t.flag(MonitoringProgram::VisaVamp, month(2025, 5), 5_000, 10_000)
                .is_none()
        );
        // Acquirer rows are never applied to a merchant.
        assert!(
            t.in_force(MonitoringProgram::VisaVamp, april)
                .all(|l| l.applies_to_merchants)
        );
    }

    #[test]
    fn ecm_and_hecm_need_both_the_count_and_the_rounded_ratio() {
        let t = MonitoringThresholds::reference();
        let june = month(2026, 6);
        let level = |disputes, orders| {
            t.flag(MonitoringProgram::MastercardEcm, june, disputes, orders)
                .map(|l| l.level.as_str().to_owned())
        };
        // The sources' example: 185 / 7,500 = 246.66 -> 247 bps, ECM.
        assert_eq!(MonitoringProgram::MastercardEcm.ratio_bps(185, 7_500), Some(247.0));
        assert_eq!(level(185, 7_500).as_deref(), Some("ecm"));
        // 149.5 bps rounds to 150: ECM; 149.4 rounds to 149: nothing.
        assert_eq!(level(299, 20_000).as_deref(), Some("ecm"));
        assert_eq!(level(100, 6_690).as_deref(), None);
        assert_eq!(level(100, 6_688).as_deref(), Some("ecm"));
        // 99 chargebacks never reach ECM, whatever the ratio.
        assert_eq!(level(99, 100).as_deref(), None);
        // 300 at 3.00 %: HECM, not ECM; 299 at 5 %: ECM; 300 at 2.99 %: ECM.
        assert_eq!(level(300, 10_000).as_deref(), Some("hecm"));
        assert_eq!(level(299, 5_980).as_deref(), Some("ecm"));
        assert_eq!(level(300, 10_034).as_deref(), Some("ecm"));
        assert_eq!(level(300, 0), None);
    }

    #[test]
    fn ecm_divides_by_the_previous_months_orders() {
        assert_eq!(
            MonitoringProgram::MastercardEcm.orders_month(month(2026, 1)),
            month(2025, 12)
        );
        assert_eq!(MonitoringProgram::VisaVamp.orders_month(month(2026, 1)), month(2026, 1));
        assert!(MonitoringProgram::VisaVamp.counts(Stage::PreDispute, true));
        assert!(!MonitoringProgram::VisaVamp.counts(Stage::PreDispute, false));
        assert!(!MonitoringProgram::MastercardEcm.counts(Stage::PreDispute, true));
        assert!(MonitoringProgram::MastercardEcm.counts(Stage::Arbitration, false));
        assert!(!MonitoringProgram::VisaVamp.counts(Stage::Inquiry, true));
    }

    #[test]
    fn groupings_parse_by_name() {
        assert_eq!(
            "product_model".parse::<PatternDimension>().ok(),
            Some(PatternDimension::ProductModel)
        );
        assert!("customer_email".parse::<PatternDimension>().is_err());
    }
}
