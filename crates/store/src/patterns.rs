//! Dispute patterns and card-network monitoring, computed in the database.
//!
//! Leads ask for win rates, amounts and deadline misses grouped by any mix of reason, processor, network,
//! seller, product, grade, country and month, over a million disputes: one `GROUP BY` over `disputes` (the
//! grouping columns are plain columns, migration 17, written with the events by [`write_pattern_columns`]),
//! never a load of the rows. Amounts are summed per currency, never across. The median time to resolution is
//! `percentile_cont` on PostgreSQL and a window-function statement on SQLite, which has no median aggregate.
//! The monitoring counts are two grouped counts (disputes by network, seller and month; orders by seller and
//! month) that the domain's thresholds are then applied to.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, Value};
use verdict_domain::patterns::{MonitoringProgram, OutcomeClass, PatternDimension};
use verdict_domain::{CardNetwork, Change, Decision, Dispute, Processor, Stage, Status};

use crate::{Backend, Store, StoreError};

/// Which disputes a pattern covers and how they are grouped.
#[derive(Debug, Clone, Default)]
pub struct PatternQuery {
    /// The groupings, in the order asked (duplicates ignored); the currency is always one more.
    pub group_by: Vec<PatternDimension>,
    /// Opened at or after.
    pub opened_from: Option<DateTime<Utc>>,
    /// Opened before.
    pub opened_before: Option<DateTime<Utc>>,
    pub processors: Vec<Processor>,
    /// ISO codes, upper case.
    pub currencies: Vec<String>,
    pub networks: Vec<CardNetwork>,
    pub seller_id: Option<String>,
}

/// Groups one pattern answer may hold: more means the grouping is too fine for a screen or a file (narrow the
/// window or group by less).
pub const MAX_PATTERN_GROUPS: u64 = 10_000;

/// The values of one group; a field is `None` when not grouped by, or when the disputes have no value for it
/// (a dispute not linked to an order has no seller, product, grade or country).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PatternKey {
    pub reason_category: Option<String>,
    pub reason_code: Option<String>,
    pub processor: Option<String>,
    pub network: Option<String>,
    pub seller_id: Option<String>,
    pub product_model: Option<String>,
    pub grade: Option<String>,
    pub country: Option<String>,
    /// `YYYY-MM`, UTC.
    pub month: Option<String>,
}

impl PatternKey {
    /// The value of one grouping.
    pub fn get(&self, dimension: PatternDimension) -> Option<&str> {
        match dimension {
            PatternDimension::ReasonCategory => self.reason_category.as_deref(),
            PatternDimension::ReasonCode => self.reason_code.as_deref(),
            PatternDimension::Processor => self.processor.as_deref(),
            PatternDimension::Network => self.network.as_deref(),
            PatternDimension::Seller => self.seller_id.as_deref(),
            PatternDimension::ProductModel => self.product_model.as_deref(),
            PatternDimension::Grade => self.grade.as_deref(),
            PatternDimension::Country => self.country.as_deref(),
            PatternDimension::Month => self.month.as_deref(),
        }
    }

    fn slot(&mut self, dimension: PatternDimension) -> &mut Option<String> {
        match dimension {
            PatternDimension::ReasonCategory => &mut self.reason_category,
            PatternDimension::ReasonCode => &mut self.reason_code,
            PatternDimension::Processor => &mut self.processor,
            PatternDimension::Network => &mut self.network,
            PatternDimension::Seller => &mut self.seller_id,
            PatternDimension::ProductModel => &mut self.product_model,
            PatternDimension::Grade => &mut self.grade,
            PatternDimension::Country => &mut self.country,
            PatternDimension::Month => &mut self.month,
        }
    }
}

/// The figures of one group in one currency.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternRow {
    pub key: PatternKey,
    pub currency: String,
    pub disputes: i64,
    pub disputed_minor: i64,
    pub won: i64,
    pub lost: i64,
    pub accepted: i64,
    /// Still open (not yet decided).
    pub open: i64,
    /// Amount of the won disputes.
    pub recovered_minor: i64,
    /// Amount of the lost disputes.
    pub lost_minor: i64,
    /// Amount of the accepted disputes (given back without a defense).
    pub accepted_minor: i64,
    /// Disputes that expired with nothing submitted.
    pub deadline_misses: i64,
    /// Closed disputes, which the median is over.
    pub resolved: i64,
    /// Median seconds from opening to the last close, over the closed disputes.
    pub median_resolution_seconds: Option<f64>,
}

/// One program's count of a seller's (or the whole marketplace's) disputes in a month, and the orders it is
/// divided by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringCount {
    pub program: MonitoringProgram,
    /// `None`: the whole marketplace (every dispute, linked to a seller or not).
    pub seller_id: Option<String>,
    /// First day of the month the disputes were opened in.
    pub month: NaiveDate,
    pub disputes: u64,
    /// Orders of the program's denominator month (the same month for VAMP, the one before for ECM).
    pub orders: u64,
}

/// Which months and sellers monitoring covers.
#[derive(Debug, Clone, Default)]
pub struct MonitoringQuery {
    pub opened_from: Option<DateTime<Utc>>,
    pub opened_before: Option<DateTime<Utc>>,
    pub seller_id: Option<String>,
}

/// The columns behind a grouping (a reason code is only a code within its network, so it groups by both).
fn columns(dimension: PatternDimension, backend: Backend) -> &'static [(&'static str, &'static str)] {
    match (dimension, backend) {
        (PatternDimension::ReasonCategory, _) => &[("k_reason_category", "reason_category")],
        (PatternDimension::ReasonCode, _) => &[("k_reason_code", "reason_code"), ("k_network", "network")],
        (PatternDimension::Processor, _) => &[("k_processor", "processor")],
        (PatternDimension::Network, _) => &[("k_network", "network")],
        (PatternDimension::Seller, _) => &[("k_seller", "seller_id")],
        (PatternDimension::ProductModel, _) => &[("k_product_model", "order_device_model")],
        (PatternDimension::Grade, _) => &[("k_grade", "order_grade")],
        (PatternDimension::Country, _) => &[("k_country", "order_country")],
        (PatternDimension::Month, Backend::Postgres) => &[("k_month", MONTH_POSTGRES)],
        (PatternDimension::Month, Backend::Sqlite) => &[("k_month", MONTH_SQLITE)],
    }
}

const MONTH_POSTGRES: &str = "to_char(opened_at AT TIME ZONE 'UTC', 'YYYY-MM')";
const MONTH_SQLITE: &str = "strftime('%Y-%m', opened_at)";

/// `YYYY-MM` (UTC) of a timestamp column, in the backend's SQL.
pub(crate) fn month_expression(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')"),
        Backend::Sqlite => format!("strftime('%Y-%m', {column})"),
    }
}

fn dimension_of_alias(alias: &str) -> Option<PatternDimension> {
    Some(match alias {
        "k_reason_category" => PatternDimension::ReasonCategory,
        "k_reason_code" => PatternDimension::ReasonCode,
        "k_processor" => PatternDimension::Processor,
        "k_network" => PatternDimension::Network,
        "k_seller" => PatternDimension::Seller,
        "k_product_model" => PatternDimension::ProductModel,
        "k_grade" => PatternDimension::Grade,
        "k_country" => PatternDimension::Country,
        "k_month" => PatternDimension::Month,
        _ => return None,
    })
}

/// `'a', 'b'` of statuses, from the domain's classes (fixed words, never input).
fn status_list(statuses: &[Status]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn class_list(class: OutcomeClass) -> String {
    status_list(&class.statuses())
}

/// `$n` placeholders for a list of values, appended to `values`.
pub(crate) fn placeholders(values: &mut Vec<Value>, items: impl IntoIterator<Item = Value>) -> String {
    items
        .into_iter()
        .map(|item| {
            values.push(item);
            format!("${}", values.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl PatternQuery {
    /// The `WHERE` clause and its values.
    pub(crate) fn filters(&self) -> (String, Vec<Value>) {
        let mut values: Vec<Value> = Vec::new();
        let mut conditions = vec!["1 = 1".to_owned()];
        if let Some(from) = self.opened_from {
            values.push(from.into());
            conditions.push(format!("opened_at >= ${}", values.len()));
        }
        if let Some(before) = self.opened_before {
            values.push(before.into());
            conditions.push(format!("opened_at < ${}", values.len()));
        }
        conditions.extend(self.group_filters(&mut values));
        (conditions.join(" AND "), values)
    }

    /// The conditions on the grouping columns (processors, currencies, networks, seller), values appended: the
    /// same on `disputes` and on the pattern summary.
    pub(crate) fn group_filters(&self, values: &mut Vec<Value>) -> Vec<String> {
        let mut conditions = Vec::new();
        if !self.processors.is_empty() {
            let list = placeholders(values, self.processors.iter().map(|p| p.as_str().into()));
            conditions.push(format!("processor IN ({list})"));
        }
        if !self.currencies.is_empty() {
            let list = placeholders(values, self.currencies.iter().map(|c| c.clone().into()));
            conditions.push(format!("currency IN ({list})"));
        }
        if !self.networks.is_empty() {
            let list = placeholders(values, self.networks.iter().map(|n| n.to_string().into()));
            conditions.push(format!("network IN ({list})"));
        }
        if let Some(seller) = &self.seller_id {
            values.push(seller.clone().into());
            conditions.push(format!("seller_id = ${}", values.len()));
        }
        conditions
    }

    /// The grouping columns, each once: `(alias, expression)`.
    pub(crate) fn keys(&self, backend: Backend) -> Vec<(&'static str, &'static str)> {
        let mut keys: Vec<(&'static str, &'static str)> = Vec::new();
        for dimension in &self.group_by {
            for column in columns(*dimension, backend) {
                if !keys.iter().any(|(alias, _)| *alias == column.0) {
                    keys.push(*column);
                }
            }
        }
        keys
    }
}

/// `expr AS alias, ` and `alias, ` for the grouping columns: the start of a select list and of a `GROUP BY`.
pub(crate) fn key_clauses(keys: &[(&'static str, &'static str)]) -> (String, String) {
    let select = keys
        .iter()
        .map(|(alias, expr)| format!("{expr} AS {alias}, "))
        .collect();
    let group = keys.iter().map(|(alias, _)| format!("{alias}, ")).collect();
    (select, group)
}

/// The additive figures of a group of disputes as a select list, named as the pattern summary's columns.
pub(crate) fn figures_select() -> String {
    let sum = |class: OutcomeClass, what: &str| {
        format!(
            "CAST(COALESCE(SUM(CASE WHEN status IN ({}) THEN {what} ELSE 0 END), 0) AS BIGINT)",
            class_list(class)
        )
    };
    format!(
        "COUNT(*) AS disputes, CAST(SUM(amount_minor) AS BIGINT) AS disputed_minor, {won} AS won, {lost} AS lost, \
         {accepted} AS accepted, {open} AS open, {recovered} AS recovered_minor, {lost_minor} AS lost_minor, \
         {accepted_minor} AS accepted_minor, CAST(SUM(deadline_missed) AS BIGINT) AS deadline_misses, \
         COUNT(resolution_seconds) AS resolved",
        won = sum(OutcomeClass::Won, "1"),
        lost = sum(OutcomeClass::Lost, "1"),
        accepted = sum(OutcomeClass::Accepted, "1"),
        open = sum(OutcomeClass::Open, "1"),
        recovered = sum(OutcomeClass::Won, "amount_minor"),
        lost_minor = sum(OutcomeClass::Lost, "amount_minor"),
        accepted_minor = sum(OutcomeClass::Accepted, "amount_minor"),
    )
}

pub(crate) fn read_key(row: &QueryResult, keys: &[(&'static str, &'static str)]) -> Result<PatternKey, StoreError> {
    let mut key = PatternKey::default();
    for (alias, _) in keys {
        if let Some(dimension) = dimension_of_alias(alias) {
            *key.slot(dimension) = row.try_get("", alias)?;
        }
    }
    Ok(key)
}

impl Store {
    /// The figures of every group of disputes `query` selects, ordered by the groupings then the currency:
    /// through the pattern summary where it serves the query (module `pattern_summary`), else from the disputes.
    pub async fn dispute_patterns(&self, query: &PatternQuery) -> Result<Vec<PatternRow>, StoreError> {
        let mut patterns = match self.patterns_from_summary(query).await? {
            Some(patterns) => patterns,
            None => self.dispute_patterns_from_disputes(query).await?,
        };
        // In the groupings' order, unknown values first, on both backends (they order NULL differently).
        patterns.sort_by_cached_key(|row| {
            (
                query
                    .group_by
                    .iter()
                    .map(|d| row.key.get(*d).map(str::to_owned))
                    .collect::<Vec<_>>(),
                row.currency.clone(),
            )
        });
        Ok(patterns)
    }

    /// The same figures read from every dispute `query` selects, never the summary (medians exact), unordered.
    pub async fn dispute_patterns_from_disputes(&self, query: &PatternQuery) -> Result<Vec<PatternRow>, StoreError> {
        let backend = self.backend();
        let keys = self.keys_for(query);
        let (conditions, values) = query.filters();
        let (key_select, group) = key_clauses(&keys);
        let median = match backend {
            Backend::Postgres => "percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_seconds)",
            Backend::Sqlite => "CAST(NULL AS REAL)",
        };
        let sql = format!(
            "SELECT {key_select}currency, {figures}, {median} AS median \
             FROM disputes WHERE {conditions} GROUP BY {group}currency ORDER BY {group}currency LIMIT {limit}",
            figures = figures_select(),
            limit = MAX_PATTERN_GROUPS + 1,
        );
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        if rows.len() as u64 > MAX_PATTERN_GROUPS {
            return Err(StoreError::TooManyRows {
                what: "the groups",
                limit: MAX_PATTERN_GROUPS,
            });
        }
        let mut patterns = rows
            .iter()
            .map(|row| {
                Ok(PatternRow {
                    key: read_key(row, &keys)?,
                    currency: row.try_get("", "currency")?,
                    disputes: row.try_get("", "disputes")?,
                    disputed_minor: row.try_get("", "disputed_minor")?,
                    won: row.try_get("", "won")?,
                    lost: row.try_get("", "lost")?,
                    accepted: row.try_get("", "accepted")?,
                    open: row.try_get("", "open")?,
                    recovered_minor: row.try_get("", "recovered_minor")?,
                    lost_minor: row.try_get("", "lost_minor")?,
                    accepted_minor: row.try_get("", "accepted_minor")?,
                    deadline_misses: row.try_get("", "deadline_misses")?,
                    resolved: row.try_get("", "resolved")?,
                    median_resolution_seconds: row.try_get("", "median")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if backend == Backend::Sqlite {
            let medians = self.sqlite_medians(query, &keys).await?;
            for pattern in &mut patterns {
                pattern.median_resolution_seconds =
                    medians.get(&(pattern.key.clone(), pattern.currency.clone())).copied();
            }
        }
        Ok(patterns)
    }

    fn keys_for(&self, query: &PatternQuery) -> Vec<(&'static str, &'static str)> {
        query.keys(self.backend())
    }

    /// SQLite has no median aggregate: the middle one or two durations of each group by row number.
    async fn sqlite_medians(
        &self,
        query: &PatternQuery,
        keys: &[(&'static str, &'static str)],
    ) -> Result<HashMap<(PatternKey, String), f64>, StoreError> {
        let (conditions, values) = query.filters();
        let key_select: String = keys
            .iter()
            .map(|(alias, expr)| format!("{expr} AS {alias}, "))
            .collect();
        let partition: String = keys.iter().map(|(_, expr)| format!("{expr}, ")).collect();
        let group: String = keys.iter().map(|(alias, _)| format!("{alias}, ")).collect();
        let sql = format!(
            "SELECT {group}currency, AVG(resolution_seconds) AS median FROM ( \
               SELECT {key_select}currency, resolution_seconds, \
                 ROW_NUMBER() OVER (PARTITION BY {partition}currency ORDER BY resolution_seconds) AS rn, \
                 COUNT(*) OVER (PARTITION BY {partition}currency) AS n \
               FROM disputes WHERE {conditions} AND resolution_seconds IS NOT NULL \
             ) ranked WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY {group}currency"
        );
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    (read_key(row, keys)?, row.try_get::<String>("", "currency")?),
                    row.try_get::<f64>("", "median")?,
                ))
            })
            .collect()
    }

    /// Each program's monthly count of disputes per seller and for the whole marketplace, with the orders it is
    /// divided by (orders from Verdict's own order tables). Only months with disputes are returned.
    pub async fn monitoring_counts(&self, query: &MonitoringQuery) -> Result<Vec<MonitoringCount>, StoreError> {
        let month = |column: &str| month_expression(self.backend(), column);
        // The summarised months from the summary, the rest counted here, in one snapshot.
        let txn = self.snapshot().await?;
        let summary = self.monitoring_from_summary(&txn, query).await?;
        let mut values: Vec<Value> = Vec::new();
        let mut conditions = Vec::new();
        if let Some(from) = query.opened_from {
            values.push(from.into());
            conditions.push(format!("opened_at >= ${}", values.len()));
        }
        if let Some(before) = query.opened_before {
            values.push(before.into());
            conditions.push(format!("opened_at < ${}", values.len()));
        }
        if let Some(seller) = &query.seller_id {
            values.push(seller.clone().into());
            conditions.push(format!("seller_id = ${}", values.len()));
        }
        // What each program counts, from the domain's rule, as fixed words.
        let counted: Vec<String> = MonitoringProgram::ALL
            .iter()
            .map(|program| {
                let always: Vec<&str> = Stage::ALL
                    .iter()
                    .filter(|s| program.counts(**s, false))
                    .map(|s| s.as_str())
                    .collect();
                let fraud_only: Vec<&str> = Stage::ALL
                    .iter()
                    .filter(|s| program.counts(**s, true) && !program.counts(**s, false))
                    .map(|s| s.as_str())
                    .collect();
                let quoted = |stages: &[&str]| stages.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
                let mut stage_rule = format!("stage IN ({})", quoted(&always));
                if !fraud_only.is_empty() {
                    stage_rule = format!(
                        "({stage_rule} OR (stage IN ({}) AND reason_category = 'fraud'))",
                        quoted(&fraud_only)
                    );
                }
                format!("(network = '{}' AND {stage_rule})", program.network())
            })
            .collect();
        conditions.push(format!("({})", counted.join(" OR ")));
        let mut counted_rows: Vec<(MonitoringProgram, Option<String>, NaiveDate, u64)> = Vec::new();
        let read_live = match summary {
            Some(summary) if summary.live.is_empty() => {
                counted_rows = summary.counts;
                false
            }
            Some(summary) => {
                counted_rows = summary.counts;
                conditions.push(Store::live_windows(&summary.live, &mut values));
                true
            }
            None => true,
        };
        if read_live {
            let sql = format!(
                "SELECT network, seller_id, {month} AS month, COUNT(*) AS disputes FROM disputes \
                 WHERE {conditions} GROUP BY network, seller_id, {month}",
                month = month("opened_at"),
                conditions = conditions.join(" AND "),
            );
            for row in txn.query_all_raw(self.stmt(&sql, values)).await? {
                let network: String = row.try_get("", "network")?;
                let Some(program) = MonitoringProgram::ALL
                    .into_iter()
                    .find(|p| p.network().to_string() == network)
                else {
                    continue;
                };
                let month = parse_month(&row.try_get::<String>("", "month")?)?;
                let count = u64::try_from(row.try_get::<i64>("", "disputes")?).unwrap_or(0);
                counted_rows.push((program, row.try_get("", "seller_id")?, month, count));
            }
        }
        txn.commit().await?;
        let mut disputes: HashMap<(MonitoringProgram, Option<String>, NaiveDate), u64> = HashMap::new();
        let mut first_month: Option<NaiveDate> = None;
        let mut last_month: Option<NaiveDate> = None;
        for (program, seller, month, count) in counted_rows {
            *disputes.entry((program, seller.clone(), month)).or_default() += count;
            // The whole marketplace counts every dispute, a seller's or not.
            if seller.is_some() {
                *disputes.entry((program, None, month)).or_default() += count;
            }
            first_month = Some(first_month.map_or(month, |m| m.min(month)));
            last_month = Some(last_month.map_or(month, |m| m.max(month)));
        }
        let (Some(first), Some(last)) = (first_month, last_month) else {
            return Ok(Vec::new());
        };
        let orders = self.orders_by_month(first, last, &month("placed_at")).await?;
        let mut counts: Vec<MonitoringCount> = disputes
            .into_iter()
            .map(|((program, seller_id, month), disputes)| {
                let orders_month = program.orders_month(month);
                let orders = orders.get(&(seller_id.clone(), orders_month)).copied().unwrap_or(0);
                MonitoringCount {
                    program,
                    seller_id,
                    month,
                    disputes,
                    orders,
                }
            })
            .filter(|c| query.seller_id.is_none() || c.seller_id.is_some())
            .collect();
        counts.sort_by_key(|c| (c.month, c.program, c.seller_id.clone()));
        Ok(counts)
    }

    /// Orders placed per seller and month from the month before `first` to `last`, and per month for all sellers
    /// (seller `None`).
    async fn orders_by_month(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        month: &str,
    ) -> Result<HashMap<(Option<String>, NaiveDate), u64>, StoreError> {
        let from = MonitoringProgram::MastercardEcm.orders_month(first);
        let until = last.checked_add_months(chrono::Months::new(1)).unwrap_or(last);
        let at = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let (Some(from), Some(until)) = (at(from), at(until)) else {
            return Ok(HashMap::new());
        };
        let sql = format!(
            "SELECT seller_id, {month} AS month, COUNT(*) AS orders FROM marketplace_orders \
             WHERE placed_at >= $1 AND placed_at < $2 GROUP BY seller_id, {month}"
        );
        let rows = self
            .db()
            .query_all_raw(self.stmt(&sql, vec![from.into(), until.into()]))
            .await?;
        let mut orders: HashMap<(Option<String>, NaiveDate), u64> = HashMap::new();
        for row in &rows {
            let seller: String = row.try_get("", "seller_id")?;
            let month = parse_month(&row.try_get::<String>("", "month")?)?;
            let count = u64::try_from(row.try_get::<i64>("", "orders")?).unwrap_or(0);
            *orders.entry((Some(seller), month)).or_default() += count;
            *orders.entry((None, month)).or_default() += count;
        }
        Ok(orders)
    }
}

fn parse_month(text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
        .map_err(|_| StoreError::Corrupt(format!("month {text:?} does not read")))
}

/// What a commit's events change in the patterns' columns (migration 17): the linked order's profile, when the
/// dispute last closed and how long it took, and whether it ever expired. `None` for a column the events leave.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PatternColumns {
    /// `order_device_model`, `order_grade`, `order_country`.
    pub order: Option<(Option<String>, Option<String>, Option<String>)>,
    /// `closed_at` and `resolution_seconds` (both cleared when the dispute opens again).
    pub close: Option<(Option<DateTime<Utc>>, Option<i64>)>,
    /// `deadline_missed` becomes 1 (it is never cleared).
    pub deadline_missed: bool,
}

impl PatternColumns {
    pub(crate) fn of(after: &Dispute, decision: &Decision) -> Self {
        let mut columns = Self::default();
        for event in &decision.events {
            if let Change::OrderLinked { profile, .. } = &event.change {
                let profile = profile.clone().unwrap_or_default();
                columns.order = Some((profile.device_model, profile.grade, profile.country));
            }
            if let Some((from, to)) = event.change.status_change() {
                // A dispute opened, or moved between open statuses, has no close to clear.
                let was_open = from.is_none_or(|from| from.is_open());
                if to.is_open() && was_open {
                    continue;
                }
                columns.close = Some(if to.is_open() {
                    (None, None)
                } else {
                    (Some(event.at), Some((event.at - after.opened_at).num_seconds().max(0)))
                });
                if to == Status::Expired {
                    columns.deadline_missed = true;
                }
            }
        }
        columns
    }

    /// The values of [`PATTERN_VALUES`] for one row of the batched projection update.
    pub(crate) fn values(&self) -> Vec<Value> {
        let (order, (device, grade, country)) = match &self.order {
            Some(order) => (1_i32, order.clone()),
            None => (0, (None, None, None)),
        };
        let (close, (closed_at, seconds)) = match self.close {
            Some(close) => (1_i32, close),
            None => (0, (None, None)),
        };
        vec![
            order.into(),
            device.into(),
            grade.into(),
            country.into(),
            close.into(),
            closed_at.into(),
            seconds.into(),
            i32::from(self.deadline_missed).into(),
        ]
    }
}

/// The columns [`PatternColumns::values`] adds to each row of the batched projection update, and the
/// assignments that take them (a flag of 0 keeps the stored value).
pub(crate) const PATTERN_VALUES: &str =
    "p_order, p_device, p_grade, p_country, p_close, p_closed_at, p_resolution, p_missed";
pub(crate) const PATTERN_ASSIGNMENTS: &str = "order_device_model = CASE WHEN v.p_order = 1 THEN v.p_device \
     ELSE disputes.order_device_model END, \
     order_grade = CASE WHEN v.p_order = 1 THEN v.p_grade ELSE disputes.order_grade END, \
     order_country = CASE WHEN v.p_order = 1 THEN v.p_country ELSE disputes.order_country END, \
     closed_at = CASE WHEN v.p_close = 1 THEN v.p_closed_at ELSE disputes.closed_at END, \
     resolution_seconds = CASE WHEN v.p_close = 1 THEN v.p_resolution ELSE disputes.resolution_seconds END, \
     deadline_missed = CASE WHEN v.p_missed = 1 THEN 1 ELSE disputes.deadline_missed END";

/// Keeps the patterns' columns true to the events of a dispute this commit opens (an update carries them in
/// the batched projection update instead). One statement, only when one of them is set.
pub(crate) async fn write_pattern_columns(
    store: &Store,
    txn: &DatabaseTransaction,
    after: &Dispute,
    decision: &Decision,
) -> Result<(), StoreError> {
    let columns = PatternColumns::of(after, decision);
    let mut sets: Vec<(&str, Value)> = Vec::new();
    if let Some((device, grade, country)) = columns.order {
        sets.push(("order_device_model", device.into()));
        sets.push(("order_grade", grade.into()));
        sets.push(("order_country", country.into()));
    }
    if let Some((closed_at, seconds)) = columns.close {
        sets.push(("closed_at", closed_at.into()));
        sets.push(("resolution_seconds", seconds.into()));
    }
    if columns.deadline_missed {
        sets.push(("deadline_missed", 1_i32.into()));
    }
    if sets.is_empty() {
        return Ok(());
    }
    let mut values: Vec<Value> = Vec::new();
    let assignments: Vec<String> = sets
        .into_iter()
        .map(|(column, value)| {
            values.push(value);
            format!("{column} = ${}", values.len())
        })
        .collect();
    values.push(after.id.as_uuid().into());
    let sql = format!(
        "UPDATE disputes SET {} WHERE id = ${}",
        assignments.join(", "),
        values.len()
    );
    txn.execute_raw(store.stmt(&sql, values)).await?;
    Ok(())
}
