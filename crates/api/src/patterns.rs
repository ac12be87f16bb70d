//! Dispute patterns and card-network monitoring for leads and analysts: the reports GraphQL answers
//! (`disputePatterns`, `disputeMonitoring`) and their CSV exports over HTTP (`GET /patterns.csv`,
//! `GET /monitoring.csv`), built once here so the two say the same.
//!
//! Both need an analyst key (no token is 401, a viewer 403). They carry aggregates and seller ids, never a
//! customer: no personal data. The CSV cells that come from outside (product models, seller ids) are
//! neutralised against spreadsheet formulas.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use verdict_domain::patterns::{MonitoringThresholds, PatternDimension, Threshold, win_rate};
use verdict_domain::{CardNetwork, Processor};
use verdict_store::{MonitoringCount, MonitoringQuery, PatternQuery, PatternRow, Store};

use crate::AppState;
use crate::auth::Role;
use crate::error::ApiError;

/// The least role that reads patterns and monitoring.
pub const PATTERNS_ROLE: Role = Role::Analyst;

/// The figures of one pattern group, with the rates worked out.
pub(crate) fn pattern_win_rate(row: &PatternRow) -> Option<f64> {
    win_rate(
        u64::try_from(row.won).unwrap_or(0),
        u64::try_from(row.lost).unwrap_or(0),
    )
}

/// One program's ratio for a seller (or the whole marketplace) in a month, and the level it reaches.
#[derive(Debug, Clone)]
pub(crate) struct MonitoringLine {
    pub count: MonitoringCount,
    pub ratio_bps: Option<f64>,
    pub flag: Option<Threshold>,
}

/// Every seller's and the marketplace's monthly ratios, each held against the thresholds in force that month.
pub(crate) async fn monitoring(
    store: &Store,
    query: &MonitoringQuery,
    flagged_only: bool,
) -> Result<Vec<MonitoringLine>, ApiError> {
    let thresholds = MonitoringThresholds::reference();
    let counts = store.monitoring_counts(query).await?;
    Ok(counts
        .into_iter()
        .map(|count| MonitoringLine {
            ratio_bps: count.program.ratio_bps(count.disputes, count.orders),
            flag: thresholds
                .flag(count.program, count.month, count.disputes, count.orders)
                .cloned(),
            count,
        })
        .filter(|line| !flagged_only || line.flag.is_some())
        .collect())
}

/// An opened window must be a window.
pub(crate) fn check_window(from: Option<DateTime<Utc>>, before: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    if let (Some(from), Some(before)) = (from, before)
        && from >= before
    {
        return Err(ApiError::InvalidInput("openedFrom must be before openedBefore".into()));
    }
    Ok(())
}

/// A seller filter: trimmed, and none when blank.
pub(crate) fn seller(text: Option<&str>) -> Option<String> {
    text.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Currency codes as the store holds them, each checked.
pub(crate) fn currencies(codes: &[String]) -> Result<Vec<String>, ApiError> {
    codes
        .iter()
        .map(|code| Ok(verdict_domain::Currency::parse(code)?.code().to_owned()))
        .collect()
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patterns.csv", get(patterns_csv))
        .route("/monitoring.csv", get(monitoring_csv))
}

/// The query string of `/patterns.csv`: lists are comma-separated, names as in GraphQL's enums in lower case
/// (`groupBy=seller,month&processor=adyen&currency=EUR&openedFrom=2026-10-01T00:00:00Z`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatternParams {
    group_by: Option<String>,
    opened_from: Option<String>,
    opened_before: Option<String>,
    processor: Option<String>,
    currency: Option<String>,
    network: Option<String>,
    seller: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MonitoringParams {
    opened_from: Option<String>,
    opened_before: Option<String>,
    seller: Option<String>,
    flagged_only: Option<bool>,
}

fn list(text: &Option<String>) -> Vec<&str> {
    text.as_deref()
        .map(|t| t.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn time(name: &str, text: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t.trim()).map(|t| t.to_utc()).map_err(|_| {
                ApiError::InvalidInput(format!("{name} must be an RFC 3339 time such as 2026-10-01T00:00:00Z"))
            })
        })
        .transpose()
}

fn parsed<T: std::str::FromStr<Err = verdict_domain::DomainError>>(items: Vec<&str>) -> Result<Vec<T>, ApiError> {
    items
        .into_iter()
        .map(|item| item.to_ascii_lowercase().parse::<T>().map_err(ApiError::from))
        .collect()
}

impl MonitoringParams {
    fn query(&self) -> Result<MonitoringQuery, ApiError> {
        let query = MonitoringQuery {
            opened_from: time("openedFrom", &self.opened_from)?,
            opened_before: time("openedBefore", &self.opened_before)?,
            seller_id: seller(self.seller.as_deref()),
        };
        check_window(query.opened_from, query.opened_before)?;
        Ok(query)
    }
}

impl PatternParams {
    fn query(&self) -> Result<PatternQuery, ApiError> {
        let mut group_by: Vec<PatternDimension> = parsed(list(&self.group_by))?;
        group_by.dedup();
        let query = PatternQuery {
            group_by,
            opened_from: time("openedFrom", &self.opened_from)?,
            opened_before: time("openedBefore", &self.opened_before)?,
            processors: parsed::<Processor>(list(&self.processor))?,
            currencies: currencies(&list(&self.currency).into_iter().map(str::to_owned).collect::<Vec<_>>())?,
            networks: parsed::<CardNetwork>(list(&self.network))?,
            seller_id: seller(self.seller.as_deref()),
        };
        check_window(query.opened_from, query.opened_before)?;
        Ok(query)
    }
}

/// The caller, if they may read patterns.
async fn authorised(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let principal = state.caller(headers).await?;
    principal.require(PATTERNS_ROLE)
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break; a text starting like a formula gets a
/// leading `'` so that a spreadsheet shows it instead of running it.
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn number(value: Option<f64>, decimals: usize) -> String {
    value.map(|v| format!("{v:.decimals$}")).unwrap_or_default()
}

fn csv_answer(name: &str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, private"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The pattern rows as CSV: one column per grouping asked for, then the currency and the figures (amounts in
/// minor units, the win rate as a fraction, the median in hours).
pub(crate) fn patterns_to_csv(group_by: &[PatternDimension], rows: &[PatternRow]) -> String {
    let mut out = String::new();
    let mut header: Vec<&str> = group_by.iter().map(|d| d.as_str()).collect();
    header.extend([
        "currency",
        "disputes",
        "disputed_minor",
        "won",
        "lost",
        "accepted",
        "open",
        "win_rate",
        "recovered_minor",
        "lost_minor",
        "accepted_minor",
        "deadline_misses",
        "resolved",
        "median_resolution_hours",
    ]);
    out.push_str(&header.join(","));
    out.push('\n');
    for row in rows {
        let mut cells: Vec<String> = group_by
            .iter()
            .map(|d| cell(row.key.get(*d).unwrap_or_default()))
            .collect();
        cells.push(cell(&row.currency));
        cells.extend(
            [
                row.disputes,
                row.disputed_minor,
                row.won,
                row.lost,
                row.accepted,
                row.open,
            ]
            .iter()
            .map(i64::to_string),
        );
        cells.push(number(pattern_win_rate(row), 4));
        cells.extend(
            [
                row.recovered_minor,
                row.lost_minor,
                row.accepted_minor,
                row.deadline_misses,
                row.resolved,
            ]
            .iter()
            .map(i64::to_string),
        );
        cells.push(number(row.median_resolution_seconds.map(|s| s / 3600.0), 2));
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

pub(crate) fn monitoring_to_csv(lines: &[MonitoringLine]) -> String {
    let mut out = String::from(
        "program,seller,month,disputes,orders,orders_month,ratio_percent,level,threshold_percent,threshold_count,source\n",
    );
    for line in lines {
        let count = &line.count;
        let flag = line.flag.as_ref();
        let cells = [
            count.program.as_str().to_owned(),
            // An empty seller is the whole marketplace.
            cell(count.seller_id.as_deref().unwrap_or_default()),
            month_text(count.month),
            count.disputes.to_string(),
            count.orders.to_string(),
            month_text(count.program.orders_month(count.month)),
            number(line.ratio_bps.map(|bps| bps / 100.0), 4),
            flag.map(|f| f.level.as_str().to_owned()).unwrap_or_default(),
            number(flag.map(|f| f.min_ratio_bps as f64 / 100.0), 2),
            flag.map(|f| f.min_count.to_string()).unwrap_or_default(),
            cell(flag.map(|f| f.source.as_str()).unwrap_or_default()),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

pub(crate) fn month_text(month: NaiveDate) -> String {
    month.format("%Y-%m").to_string()
}

/// `GET /patterns.csv`: any pattern `disputePatterns` answers, as CSV.
async fn patterns_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<PatternParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(err) = authorised(&state, &headers).await {
        return err.into_response();
    }
    let query = match params
        .map_err(|err| ApiError::InvalidInput(err.body_text()))
        .and_then(|Query(params)| params.query())
    {
        Ok(query) => query,
        Err(err) => return err.into_response(),
    };
    match state
        .graphql_reads
        .run(state.engine.store().dispute_patterns(&query))
        .await
    {
        Ok(rows) => csv_answer("dispute-patterns", patterns_to_csv(&query.group_by, &rows)),
        Err(err) => err.into_response(),
    }
}

/// `GET /monitoring.csv`: the monthly VAMP and ECM ratios per seller and for the whole marketplace, as CSV.
async fn monitoring_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<MonitoringParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(err) = authorised(&state, &headers).await {
        return err.into_response();
    }
    let params = match params {
        Ok(Query(params)) => params,
        Err(err) => return ApiError::InvalidInput(err.body_text()).into_response(),
    };
    let query = match params.query() {
        Ok(query) => query,
        Err(err) => return err.into_response(),
    };
    let flagged_only = params.flagged_only.unwrap_or(false);
    match state
        .graphql_reads
        .run(monitoring(state.engine.store(), &query, flagged_only))
        .await
    {
        Ok(lines) => csv_answer("dispute-monitoring", monitoring_to_csv(&lines)),
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_never_formulas() {
        assert_eq!(cell("iPhone 13"), "iPhone 13");
        assert_eq!(cell("Galaxy S21, 5G"), "\"Galaxy S21, 5G\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1"), "'-1");
    }
}
