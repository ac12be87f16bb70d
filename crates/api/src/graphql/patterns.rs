//! `disputePatterns` and `disputeMonitoring`: what leads watch, computed in the database (see
//! `crate::patterns`, which the CSV exports share).

use async_graphql::{Context, Enum, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain as domain;
use verdict_engine::Engine;
use verdict_store::{MonitoringQuery, PatternQuery, PatternRow};

use super::query::principal;
use super::types::{CardNetwork, MinorUnits, Money, Processor, ReasonCategory};
use crate::error::ApiError;
use crate::patterns::{MonitoringLine, PATTERNS_ROLE, check_window, currencies, month_text, pattern_win_rate, seller};

/// What dispute patterns can be grouped by; any combination.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::patterns::PatternDimension")]
pub enum PatternDimension {
    /// Fraud, authorization, processing error, consumer dispute.
    ReasonCategory,
    /// The network's reason code (grouped within its network, which the group then names too).
    ReasonCode,
    /// The processor that reported the dispute.
    Processor,
    /// The card network.
    Network,
    /// The seller of the linked order (none while the dispute is not linked).
    Seller,
    /// The device model of the linked order's first line.
    ProductModel,
    /// The cosmetic grade of the linked order's first line.
    Grade,
    /// The country the linked order was shipped to.
    Country,
    /// The calendar month (UTC) the dispute was opened in.
    Month,
}

/// A card network's monitoring program.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::patterns::MonitoringProgram")]
pub enum MonitoringProgram {
    /// Visa Acquirer Monitoring Program: (fraud reports + disputes) / orders of the same month.
    VisaVamp,
    /// Mastercard Excessive Chargeback Program: chargebacks / orders of the preceding month.
    MastercardEcm,
}

/// A level of a monitoring program.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_domain::patterns::MonitoringLevel")]
pub enum MonitoringLevel {
    /// VAMP acquirer level (never applied to a merchant; listed for completeness).
    AboveStandard,
    /// VAMP merchant "excessive".
    Excessive,
    /// Mastercard Excessive Chargeback Merchant.
    Ecm,
    /// Mastercard High Excessive Chargeback Merchant.
    Hecm,
}

/// Which disputes a pattern covers; every field narrows it.
#[derive(InputObject, Default)]
pub struct PatternFilter {
    /// Opened at or after this time.
    pub opened_from: Option<DateTime<Utc>>,
    /// Opened before this time.
    pub opened_before: Option<DateTime<Utc>>,
    /// Any of these processors.
    pub processors: Option<Vec<Processor>>,
    /// Any of these ISO 4217 currencies.
    pub currencies: Option<Vec<String>>,
    /// Any of these card networks.
    pub networks: Option<Vec<CardNetwork>>,
    /// One seller's disputes.
    pub seller_id: Option<String>,
}

/// The figures of one group of disputes in one currency (amounts are never summed across currencies). A
/// grouping field is null when the pattern is not grouped by it, or when the disputes have no value for it.
#[derive(SimpleObject)]
pub struct DisputePattern {
    /// Set when grouped by reason category.
    pub reason_category: Option<ReasonCategory>,
    /// Set when grouped by reason code.
    pub reason_code: Option<String>,
    /// Set when grouped by processor.
    pub processor: Option<Processor>,
    /// Set when grouped by network or by reason code.
    pub network: Option<CardNetwork>,
    /// Set when grouped by seller.
    pub seller_id: Option<String>,
    /// Set when grouped by product model.
    pub product_model: Option<String>,
    /// Set when grouped by grade.
    pub grade: Option<String>,
    /// Set when grouped by country (ISO 3166-1 alpha-2).
    pub country: Option<String>,
    /// Set when grouped by month: `YYYY-MM`, UTC.
    pub month: Option<String>,
    /// ISO 4217 code of every amount of this group.
    pub currency: String,
    /// Disputes in the group.
    pub disputes: i32,
    /// Their disputed amounts, summed.
    pub disputed_amount: Money,
    /// Won, or withdrawn by the cardholder or issuer.
    pub won: i32,
    /// Lost, or expired with nothing submitted.
    pub lost: i32,
    /// Accepted, or refunded before a chargeback (inquiries, alerts).
    pub accepted: i32,
    /// Not decided yet.
    pub open: i32,
    /// Won / (won + lost), from 0 to 1; null while none was decided. Accepted disputes were never fought.
    pub win_rate: Option<f64>,
    /// The amount of the won disputes.
    pub recovered_amount: Money,
    /// The amount of the lost disputes.
    pub lost_amount: Money,
    /// The amount of the accepted disputes.
    pub accepted_amount: Money,
    /// Disputes that expired with nothing submitted (kept even if a lead overrode the outcome afterwards).
    pub deadline_misses: i32,
    /// Closed disputes, which the median is taken over.
    pub resolved: i32,
    /// Median hours from opening to the last close, over the closed disputes; null when none closed. Exact when
    /// the figures are read from the disputes, within 1% when read through the pattern summary.
    pub median_hours_to_resolution: Option<f64>,
}

/// Which months and sellers monitoring covers.
#[derive(InputObject, Default)]
pub struct MonitoringFilter {
    /// Disputes opened at or after this time.
    pub opened_from: Option<DateTime<Utc>>,
    /// Disputes opened before this time.
    pub opened_before: Option<DateTime<Utc>>,
    /// One seller (no marketplace-wide rows then).
    pub seller_id: Option<String>,
    /// Only the rows over a threshold.
    #[graphql(default)]
    pub flagged_only: bool,
}

/// A threshold of a monitoring program, from Verdict's reference data (with its source).
#[derive(SimpleObject)]
pub struct MonitoringThreshold {
    /// The programme.
    pub program: MonitoringProgram,
    /// The level.
    pub level: MonitoringLevel,
    /// The ratio must be at least this, in percent.
    pub minimum_ratio_percent: f64,
    /// The month's count must be at least this.
    pub minimum_count: i32,
    /// Where the figure comes from (processor or third-party pages; verify with the acquirer).
    pub source: String,
}

/// One program's ratio of disputes to orders for a seller, or the whole marketplace, in one month.
#[derive(SimpleObject)]
pub struct MonitoringRatio {
    /// The programme.
    pub program: MonitoringProgram,
    /// Null for the whole marketplace (every dispute, linked to a seller or not).
    pub seller_id: Option<String>,
    /// The month the disputes were opened in: `YYYY-MM`, UTC.
    pub month: String,
    /// Disputes the program counts (Visa: chargebacks and fraud reports; Mastercard: chargebacks).
    pub disputes: i32,
    /// Orders of `ordersMonth` in Verdict's order tables.
    pub orders: i32,
    /// The month of the orders divided by: the same month for VAMP, the preceding one for ECM.
    pub orders_month: String,
    /// Disputes / orders in percent (ECM in whole basis points, rounded half up); null without orders.
    pub ratio_percent: Option<f64>,
    /// The most severe level reached, if any.
    pub flagged: Option<MonitoringThreshold>,
}

fn int(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

/// A sum of amounts; unlike a dispute's amount it may be zero (no disputes of a group were won).
fn money(minor: i64, currency: &str) -> Result<Money, ApiError> {
    let currency = domain::Currency::parse(currency)?;
    if minor > 0 {
        return Ok(domain::Money::new(minor, currency)?.into());
    }
    let decimals = currency.exponent() as usize;
    let zero = if decimals == 0 {
        "0".to_owned()
    } else {
        format!("0.{}", "0".repeat(decimals))
    };
    Ok(Money {
        minor_units: MinorUnits(0),
        currency: currency.code().to_owned(),
        formatted: format!("{zero} {}", currency.code()),
    })
}

fn parsed<T: std::str::FromStr<Err = domain::DomainError>>(text: Option<&str>) -> Result<Option<T>, ApiError> {
    text.map(|t| t.parse::<T>())
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))
}

impl DisputePattern {
    fn from_row(row: PatternRow) -> Result<Self, ApiError> {
        let key = &row.key;
        Ok(Self {
            reason_category: parsed::<domain::ReasonCategory>(key.reason_category.as_deref())?.map(Into::into),
            reason_code: key.reason_code.clone(),
            processor: parsed::<domain::Processor>(key.processor.as_deref())?.map(Into::into),
            network: parsed::<domain::CardNetwork>(key.network.as_deref())?.map(Into::into),
            seller_id: key.seller_id.clone(),
            product_model: key.product_model.clone(),
            grade: key.grade.clone(),
            country: key.country.clone(),
            month: key.month.clone(),
            disputes: int(row.disputes),
            disputed_amount: money(row.disputed_minor, &row.currency)?,
            won: int(row.won),
            lost: int(row.lost),
            accepted: int(row.accepted),
            open: int(row.open),
            win_rate: pattern_win_rate(&row),
            recovered_amount: money(row.recovered_minor, &row.currency)?,
            lost_amount: money(row.lost_minor, &row.currency)?,
            accepted_amount: money(row.accepted_minor, &row.currency)?,
            deadline_misses: int(row.deadline_misses),
            resolved: int(row.resolved),
            median_hours_to_resolution: row.median_resolution_seconds.map(|s| s / 3600.0),
            currency: row.currency,
        })
    }
}

impl From<MonitoringLine> for MonitoringRatio {
    fn from(line: MonitoringLine) -> Self {
        let count = line.count;
        Self {
            program: count.program.into(),
            month: month_text(count.month),
            orders_month: month_text(count.program.orders_month(count.month)),
            disputes: int(count.disputes),
            orders: int(count.orders),
            ratio_percent: line.ratio_bps.map(|bps| bps / 100.0),
            flagged: line.flag.map(|t| MonitoringThreshold {
                program: t.program.into(),
                level: t.level.into(),
                minimum_ratio_percent: t.min_ratio_bps as f64 / 100.0,
                minimum_count: int(t.min_count),
                source: t.source,
            }),
            seller_id: count.seller_id,
        }
    }
}

pub(crate) async fn dispute_patterns(
    ctx: &Context<'_>,
    group_by: Vec<PatternDimension>,
    filter: Option<PatternFilter>,
) -> async_graphql::Result<Vec<DisputePattern>> {
    principal(ctx, PATTERNS_ROLE)?;
    let filter = filter.unwrap_or_default();
    let mut dimensions: Vec<domain::PatternDimension> = Vec::new();
    for dimension in group_by {
        let dimension = dimension.into();
        if !dimensions.contains(&dimension) {
            dimensions.push(dimension);
        }
    }
    check_window(filter.opened_from, filter.opened_before)?;
    let query = PatternQuery {
        group_by: dimensions,
        opened_from: filter.opened_from,
        opened_before: filter.opened_before,
        processors: filter
            .processors
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
        currencies: currencies(&filter.currencies.unwrap_or_default())?,
        networks: filter
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
        seller_id: seller(filter.seller_id.as_deref()),
    };
    let rows = super::read(ctx, ctx.data::<Engine>()?.store().dispute_patterns(&query)).await?;
    Ok(rows
        .into_iter()
        .map(DisputePattern::from_row)
        .collect::<Result<_, _>>()?)
}

pub(crate) async fn dispute_monitoring(
    ctx: &Context<'_>,
    filter: Option<MonitoringFilter>,
) -> async_graphql::Result<Vec<MonitoringRatio>> {
    principal(ctx, PATTERNS_ROLE)?;
    let filter = filter.unwrap_or_default();
    check_window(filter.opened_from, filter.opened_before)?;
    let query = MonitoringQuery {
        opened_from: filter.opened_from,
        opened_before: filter.opened_before,
        seller_id: seller(filter.seller_id.as_deref()),
    };
    let store = ctx.data::<Engine>()?.store();
    let lines = super::read(ctx, crate::patterns::monitoring(store, &query, filter.flagged_only)).await?;
    Ok(lines.into_iter().map(MonitoringRatio::from).collect())
}
