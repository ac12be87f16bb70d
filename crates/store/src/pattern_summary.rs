//! The pattern summary: dispute figures per opened month, so patterns and monitoring answer over a million
//! disputes by reading a few thousand rows.
//!
//! A scheduled job ([`Store::refresh_pattern_summary`]) summarises each month whose disputes changed since its
//! last run into a few fixed groupings (cuboids): per month, currency and group, the counts and amounts, which
//! add up, and a [`ResolutionHistogram`], which merges; and per month, program and seller, the disputes
//! monitoring counts. A query whose groupings and filters one cuboid keeps reads that cuboid for the months
//! summarised and unchanged since, and reads the rest of its window (months changed since the last run, months
//! cut by the window) from `disputes` itself, in one snapshot. So figures are never stale: a dispute changed a
//! second ago is read from `disputes`. The cost of a read is then the summary's rows plus the disputes of the
//! recently changed months. Counts and amounts are exact either way; a median read through the summary is within
//! 1% (exact when the middle times are equal), one read from `disputes` alone is exact.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::{AccessMode, ConnectionTrait, DatabaseTransaction, IsolationLevel, QueryResult, TransactionTrait, Value};
use uuid::Uuid;
use verdict_domain::patterns::{MonitoringProgram, OutcomeClass, PatternDimension};
use verdict_domain::resolution_histogram::ResolutionHistogram;
use verdict_domain::{Stage, Status};

use crate::patterns::{
    MAX_PATTERN_GROUPS, MonitoringQuery, PatternKey, PatternQuery, PatternRow, figures_select, key_clauses,
    month_expression, placeholders, read_key,
};
use crate::{Backend, Store, StoreError};

/// How long after a change is stamped (`updated_at`, from the writing replica's clock) its transaction may still
/// commit: a run covers the changes stamped up to this long before it started, and reads treat later ones as
/// changes to read from `disputes`.
const COMMIT_MARGIN_SECONDS: i64 = 60;

/// Disputes read per statement while summarising or reading a window live.
const PAGE: u64 = 10_000;

/// The advisory lock a month's summariser holds on PostgreSQL (an arbitrary key of Verdict's).
const SUMMARY_LOCK: i64 = 0x5644_5053_554d_4d31;

/// Summary rows per `INSERT` (23 values each: under SQLite's 32,766 placeholders).
const INSERT_ROWS: usize = 500;

/// A fixed grouping the summary keeps; month and currency are in every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cuboid {
    Countries,
    Reasons,
    Products,
    Sellers,
}

impl Cuboid {
    /// Smallest first: a query reads the first one that keeps what it needs.
    const ALL: [Cuboid; 4] = [Cuboid::Countries, Cuboid::Reasons, Cuboid::Products, Cuboid::Sellers];

    fn as_str(self) -> &'static str {
        match self {
            Cuboid::Countries => "countries",
            Cuboid::Reasons => "reasons",
            Cuboid::Products => "products",
            Cuboid::Sellers => "sellers",
        }
    }

    fn dimensions(self) -> &'static [PatternDimension] {
        use PatternDimension as D;
        match self {
            Cuboid::Countries => &[D::Country, D::ReasonCategory],
            Cuboid::Reasons => &[D::ReasonCategory, D::ReasonCode, D::Processor, D::Network],
            Cuboid::Products => &[D::ProductModel, D::Grade, D::ReasonCategory],
            Cuboid::Sellers => &[D::Seller, D::ReasonCategory],
        }
    }

    fn keeps(self, dimension: PatternDimension) -> bool {
        dimension == PatternDimension::Month || self.dimensions().contains(&dimension)
    }

    /// The smallest cuboid keeping every grouping and filter of `query`; none when no cuboid does.
    pub(crate) fn covering(query: &PatternQuery) -> Option<Cuboid> {
        let mut needed = query.group_by.clone();
        if !query.processors.is_empty() {
            needed.push(PatternDimension::Processor);
        }
        if !query.networks.is_empty() {
            needed.push(PatternDimension::Network);
        }
        if query.seller_id.is_some() {
            needed.push(PatternDimension::Seller);
        }
        Cuboid::ALL.into_iter().find(|c| needed.iter().all(|d| c.keeps(*d)))
    }

    /// A dispute's values of this cuboid's groupings; the others `None`.
    fn project(self, facts: &Facts) -> Grain {
        let keep = |dimension: PatternDimension, value: &Option<String>| {
            if self.keeps(dimension) { value.clone() } else { None }
        };
        Grain {
            processor: keep(PatternDimension::Processor, &Some(facts.processor.clone())),
            // A reason code is a code within its network, so keeping the code keeps the network.
            network: if self.keeps(PatternDimension::Network) || self.keeps(PatternDimension::ReasonCode) {
                Some(facts.network.clone())
            } else {
                None
            },
            reason_category: keep(PatternDimension::ReasonCategory, &Some(facts.reason_category.clone())),
            reason_code: keep(PatternDimension::ReasonCode, &Some(facts.reason_code.clone())),
            seller_id: keep(PatternDimension::Seller, &facts.seller_id),
            product_model: keep(PatternDimension::ProductModel, &facts.product_model),
            grade: keep(PatternDimension::Grade, &facts.grade),
            country: keep(PatternDimension::Country, &facts.country),
        }
    }
}

/// The grouping values of one summary row (or one dispute projected on a cuboid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Grain {
    processor: Option<String>,
    network: Option<String>,
    reason_category: Option<String>,
    reason_code: Option<String>,
    seller_id: Option<String>,
    product_model: Option<String>,
    grade: Option<String>,
    country: Option<String>,
}

/// What the summary needs of one dispute.
#[derive(Debug, Clone)]
struct Facts {
    id: Uuid,
    opened_at: DateTime<Utc>,
    processor: String,
    network: String,
    reason_category: String,
    reason_code: String,
    seller_id: Option<String>,
    product_model: Option<String>,
    grade: Option<String>,
    country: Option<String>,
    currency: String,
    status: Status,
    stage: Stage,
    amount_minor: i64,
    deadline_missed: bool,
    resolution_seconds: Option<i64>,
}

const FACT_COLUMNS: &str = "id, opened_at, processor, network, reason_category, reason_code, seller_id, \
    order_device_model, order_grade, order_country, currency, status, stage, amount_minor, deadline_missed, \
    resolution_seconds";

impl Facts {
    fn read(row: &QueryResult) -> Result<Self, StoreError> {
        let text = |column: &str| -> Result<String, StoreError> { Ok(row.try_get::<String>("", column)?) };
        let status = text("status")?;
        let stage = text("stage")?;
        Ok(Facts {
            id: row.try_get("", "id")?,
            opened_at: row.try_get("", "opened_at")?,
            processor: text("processor")?,
            network: text("network")?,
            reason_category: text("reason_category")?,
            reason_code: text("reason_code")?,
            seller_id: row.try_get("", "seller_id")?,
            product_model: row.try_get("", "order_device_model")?,
            grade: row.try_get("", "order_grade")?,
            country: row.try_get("", "order_country")?,
            currency: text("currency")?,
            status: Status::from_str(&status).map_err(|_| StoreError::Corrupt(format!("status {status:?}")))?,
            stage: Stage::from_str(&stage).map_err(|_| StoreError::Corrupt(format!("stage {stage:?}")))?,
            amount_minor: row.try_get("", "amount_minor")?,
            deadline_missed: row.try_get::<i32>("", "deadline_missed")? != 0,
            resolution_seconds: row.try_get("", "resolution_seconds")?,
        })
    }

    fn month(&self) -> String {
        month_label(self.opened_at)
    }

    /// The monitoring programs that count this dispute.
    fn programs(&self) -> impl Iterator<Item = MonitoringProgram> + '_ {
        MonitoringProgram::ALL.into_iter().filter(|program| {
            program.network().to_string() == self.network && program.counts(self.stage, self.reason_category == "fraud")
        })
    }
}

/// The additive figures of a group, and its times to resolution.
#[derive(Debug, Clone, Default)]
struct Figures {
    disputes: i64,
    disputed_minor: i64,
    won: i64,
    lost: i64,
    accepted: i64,
    open: i64,
    recovered_minor: i64,
    lost_minor: i64,
    accepted_minor: i64,
    deadline_misses: i64,
    resolved: i64,
    histogram: ResolutionHistogram,
}

impl Figures {
    fn count(&mut self, facts: &Facts) {
        self.disputes += 1;
        self.disputed_minor += facts.amount_minor;
        match OutcomeClass::of(facts.status) {
            OutcomeClass::Open => self.open += 1,
            OutcomeClass::Won => {
                self.won += 1;
                self.recovered_minor += facts.amount_minor;
            }
            OutcomeClass::Lost => {
                self.lost += 1;
                self.lost_minor += facts.amount_minor;
            }
            OutcomeClass::Accepted => {
                self.accepted += 1;
                self.accepted_minor += facts.amount_minor;
            }
        }
        if facts.deadline_missed {
            self.deadline_misses += 1;
        }
        if let Some(seconds) = facts.resolution_seconds {
            self.resolved += 1;
            self.histogram.record(seconds);
        }
    }

    fn add(&mut self, other: &Figures) {
        self.disputes += other.disputes;
        self.disputed_minor += other.disputed_minor;
        self.won += other.won;
        self.lost += other.lost;
        self.accepted += other.accepted;
        self.open += other.open;
        self.recovered_minor += other.recovered_minor;
        self.lost_minor += other.lost_minor;
        self.accepted_minor += other.accepted_minor;
        self.deadline_misses += other.deadline_misses;
        self.resolved += other.resolved;
        self.histogram.merge(&other.histogram);
    }

    fn read(row: &QueryResult) -> Result<Self, StoreError> {
        let histogram: String = row.try_get("", "resolution_histogram")?;
        Ok(Figures {
            histogram: ResolutionHistogram::decode(&histogram)
                .map_err(|err| StoreError::Corrupt(format!("pattern summary: {err}")))?,
            ..Figures::read_additive(row)?
        })
    }

    /// The additive figures of a row with the summary's column names; no times.
    fn read_additive(row: &QueryResult) -> Result<Self, StoreError> {
        Ok(Figures {
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
            histogram: ResolutionHistogram::default(),
        })
    }

    fn into_row(self, key: PatternKey, currency: String) -> PatternRow {
        PatternRow {
            key,
            currency,
            disputes: self.disputes,
            disputed_minor: self.disputed_minor,
            won: self.won,
            lost: self.lost,
            accepted: self.accepted,
            open: self.open,
            recovered_minor: self.recovered_minor,
            lost_minor: self.lost_minor,
            accepted_minor: self.accepted_minor,
            deadline_misses: self.deadline_misses,
            resolved: self.resolved,
            median_resolution_seconds: self.histogram.median(),
        }
    }
}

/// `YYYY-MM` of a UTC time, as the month columns and expressions write it.
fn month_label(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// The first instant of a `YYYY-MM` month and of the month after.
fn month_bounds(label: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), StoreError> {
    let first = NaiveDate::parse_from_str(&format!("{label}-01"), "%Y-%m-%d")
        .map_err(|_| StoreError::Corrupt(format!("month {label:?} does not read")))?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| StoreError::Corrupt(format!("month {label:?} has no successor")))?;
    let at = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    match (at(first), at(next)) {
        (Some(start), Some(end)) => Ok((start, end)),
        _ => Err(StoreError::Corrupt(format!("month {label:?} has no midnight"))),
    }
}

/// The summarised monitoring counts `(program, seller, month, disputes)` of a query, and the windows left to
/// count from `disputes`.
pub(crate) struct MonitoringFromSummary {
    pub counts: Vec<(MonitoringProgram, Option<String>, NaiveDate, u64)>,
    pub live: Vec<Window>,
}

/// An opened window, either end open.
pub(crate) type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Where a query's figures come from: the summary's rows for `months`, `disputes` for the `live` windows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    months: Vec<String>,
    live: Vec<Window>,
}

impl Plan {
    /// Summarised months not changed since and wholly inside `window`; the rest of the window read live. None
    /// when the summary can serve none of it.
    fn new(
        summarised: &BTreeSet<String>,
        changed: &BTreeSet<String>,
        window: Window,
    ) -> Result<Option<Self>, StoreError> {
        let (from, before) = window;
        let mut months = Vec::new();
        let mut live = Vec::new();
        let mut cursor = from;
        for month in summarised.difference(changed) {
            let (start, end) = month_bounds(month)?;
            if from.is_some_and(|from| start < from) || before.is_some_and(|before| end > before) {
                continue;
            }
            if cursor.is_none_or(|cursor| cursor < start) {
                live.push((cursor, Some(start)));
            }
            cursor = Some(end);
            months.push(month.clone());
        }
        if months.is_empty() {
            return Ok(None);
        }
        if before.is_none() || cursor < before {
            live.push((cursor, before));
        }
        Ok(Some(Plan { months, live }))
    }
}

/// `(opened_at >= $a AND opened_at < $b) OR ...` for the live windows, values appended.
fn window_condition(windows: &[Window], values: &mut Vec<Value>) -> String {
    let parts: Vec<String> = windows
        .iter()
        .map(|(from, before)| {
            let mut conditions = vec!["1 = 1".to_owned()];
            if let Some(from) = from {
                values.push((*from).into());
                conditions.push(format!("opened_at >= ${}", values.len()));
            }
            if let Some(before) = before {
                values.push((*before).into());
                conditions.push(format!("opened_at < ${}", values.len()));
            }
            format!("({})", conditions.join(" AND "))
        })
        .collect();
    if parts.is_empty() {
        "1 = 0".to_owned()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// The key of a pattern group from its values.
fn pattern_key(group_by: &[PatternDimension], grain: &Grain, month: &str) -> PatternKey {
    let mut key = PatternKey::default();
    for dimension in group_by {
        match dimension {
            PatternDimension::ReasonCategory => key.reason_category = grain.reason_category.clone(),
            PatternDimension::ReasonCode => {
                key.reason_code = grain.reason_code.clone();
                key.network = grain.network.clone();
            }
            PatternDimension::Processor => key.processor = grain.processor.clone(),
            PatternDimension::Network => key.network = grain.network.clone(),
            PatternDimension::Seller => key.seller_id = grain.seller_id.clone(),
            PatternDimension::ProductModel => key.product_model = grain.product_model.clone(),
            PatternDimension::Grade => key.grade = grain.grade.clone(),
            PatternDimension::Country => key.country = grain.country.clone(),
            PatternDimension::Month => key.month = Some(month.to_owned()),
        }
    }
    key
}

/// Every grouping of a dispute, for keys built from disputes read live.
fn full_grain(facts: &Facts) -> Grain {
    Grain {
        processor: Some(facts.processor.clone()),
        network: Some(facts.network.clone()),
        reason_category: Some(facts.reason_category.clone()),
        reason_code: Some(facts.reason_code.clone()),
        seller_id: facts.seller_id.clone(),
        product_model: facts.product_model.clone(),
        grade: facts.grade.clone(),
        country: facts.country.clone(),
    }
}

/// The grouping values of a summary row.
fn grain_of_row(row: &QueryResult) -> Result<Grain, StoreError> {
    Ok(Grain {
        processor: row.try_get("", "processor")?,
        network: row.try_get("", "network")?,
        reason_category: row.try_get("", "reason_category")?,
        reason_code: row.try_get("", "reason_code")?,
        seller_id: row.try_get("", "seller_id")?,
        product_model: row.try_get("", "order_device_model")?,
        grade: row.try_get("", "order_grade")?,
        country: row.try_get("", "order_country")?,
    })
}

impl Store {
    /// Summarises every month whose disputes changed since the last run (every month with disputes the first
    /// time), each in its own transaction, then records the run. Returns the months summarised.
    pub async fn refresh_pattern_summary(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let covers_until = now - Duration::seconds(COMMIT_MARGIN_SECONDS);
        let since = self.summary_covers_until(self.db()).await?;
        let months = self.changed_months(self.db(), since).await?;
        for month in &months {
            self.summarise_month(month, now).await?;
        }
        self.db()
            .execute_raw(self.stmt(
                "INSERT INTO pattern_summary_state (id, covers_until, refreshed_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET covers_until = excluded.covers_until, \
                 refreshed_at = excluded.refreshed_at",
                vec![covers_until.into(), now.into()],
            ))
            .await?;
        Ok(months.len())
    }

    /// Up to when the summary covers changes; none before its first run.
    async fn summary_covers_until(&self, conn: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = conn
            .query_one_raw(self.stmt("SELECT covers_until FROM pattern_summary_state WHERE id = 1", vec![]))
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("", "covers_until")?),
            None => None,
        })
    }

    /// The opened months of the disputes changed at or after `since` (of every dispute without it), read from
    /// `dispute_statuses`, which has the index on `updated_at` that `disputes` no longer keeps (migration 27).
    async fn changed_months(
        &self,
        conn: &impl ConnectionTrait,
        since: Option<DateTime<Utc>>,
    ) -> Result<BTreeSet<String>, StoreError> {
        let month = month_expression(self.backend(), "opened_at");
        let (condition, values) = match since {
            Some(since) => ("WHERE updated_at >= $1", vec![since.into()]),
            None => ("", vec![]),
        };
        let rows = conn
            .query_all_raw(self.stmt(
                &format!("SELECT DISTINCT {month} AS month FROM dispute_statuses {condition}"),
                values,
            ))
            .await?;
        rows.iter().map(|row| Ok(row.try_get::<String>("", "month")?)).collect()
    }

    /// Reads the disputes matching `conditions` page by page in `(opened_at, id)` order, handing each over.
    async fn visit_disputes(
        &self,
        conn: &impl ConnectionTrait,
        conditions: &str,
        values: &[Value],
        mut visit: impl FnMut(Facts),
    ) -> Result<(), StoreError> {
        let mut after: Option<(DateTime<Utc>, Uuid)> = None;
        loop {
            let mut values = values.to_vec();
            let keyset = match after {
                Some((opened_at, id)) => {
                    values.push(opened_at.into());
                    let at = values.len();
                    values.push(id.into());
                    format!("AND (opened_at > ${at} OR (opened_at = ${at} AND id > ${}))", at + 1)
                }
                None => String::new(),
            };
            let sql = format!(
                "SELECT {FACT_COLUMNS} FROM disputes WHERE {conditions} {keyset} ORDER BY opened_at, id LIMIT {PAGE}"
            );
            let rows = conn.query_all_raw(self.stmt(&sql, values)).await?;
            let full = rows.len() as u64 == PAGE;
            for row in &rows {
                let facts = Facts::read(row)?;
                after = Some((facts.opened_at, facts.id));
                visit(facts);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Replaces one month's summary rows with its disputes' figures as they are now.
    async fn summarise_month(&self, month: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (start, end) = month_bounds(month)?;
        let mut groups: HashMap<(Cuboid, Grain, String), Figures> = HashMap::new();
        let mut monitored: HashMap<(MonitoringProgram, Option<String>), i64> = HashMap::new();
        let mut disputes = 0_i64;
        let txn = crate::write::begin_write(self.db()).await?;
        if self.backend() == Backend::Postgres {
            // Two runs at once (a run that outlived its schedule lease) would each delete the month's rows before
            // the other's commit and both insert theirs: one summariser at a time. (SQLite's write lock already
            // is one.)
            txn.execute_raw(self.stmt("SELECT pg_advisory_xact_lock($1)", vec![SUMMARY_LOCK.into()]))
                .await?;
        }
        self.visit_disputes(
            &txn,
            "opened_at >= $1 AND opened_at < $2",
            &[start.into(), end.into()],
            |facts| {
                disputes += 1;
                for cuboid in Cuboid::ALL {
                    groups
                        .entry((cuboid, cuboid.project(&facts), facts.currency.clone()))
                        .or_default()
                        .count(&facts);
                }
                for program in facts.programs() {
                    *monitored.entry((program, facts.seller_id.clone())).or_default() += 1;
                }
            },
        )
        .await?;
        for table in ["pattern_summary", "monitoring_summary"] {
            txn.execute_raw(self.stmt(&format!("DELETE FROM {table} WHERE month = $1"), vec![month.into()]))
                .await?;
        }
        let rows: Vec<Vec<Value>> = groups
            .into_iter()
            .map(|((cuboid, grain, currency), f)| {
                vec![
                    cuboid.as_str().into(),
                    month.into(),
                    currency.into(),
                    grain.processor.into(),
                    grain.network.into(),
                    grain.reason_category.into(),
                    grain.reason_code.into(),
                    grain.seller_id.into(),
                    grain.product_model.into(),
                    grain.grade.into(),
                    grain.country.into(),
                    f.disputes.into(),
                    f.disputed_minor.into(),
                    f.won.into(),
                    f.lost.into(),
                    f.accepted.into(),
                    f.open.into(),
                    f.recovered_minor.into(),
                    f.lost_minor.into(),
                    f.accepted_minor.into(),
                    f.deadline_misses.into(),
                    f.resolved.into(),
                    f.histogram.encode().into(),
                ]
            })
            .collect();
        self.insert_rows(
            &txn,
            "pattern_summary (cuboid, month, currency, processor, network, reason_category, reason_code, seller_id, \
             order_device_model, order_grade, order_country, disputes, disputed_minor, won, lost, accepted, open, \
             recovered_minor, lost_minor, accepted_minor, deadline_misses, resolved, resolution_histogram)",
            rows,
        )
        .await?;
        let rows: Vec<Vec<Value>> = monitored
            .into_iter()
            .map(|((program, seller), count)| vec![month.into(), program.as_str().into(), seller.into(), count.into()])
            .collect();
        self.insert_rows(&txn, "monitoring_summary (month, program, seller_id, disputes)", rows)
            .await?;
        txn.execute_raw(self.stmt(
            "INSERT INTO pattern_summary_months (month, disputes, computed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (month) DO UPDATE SET disputes = excluded.disputes, computed_at = excluded.computed_at",
            vec![month.into(), disputes.into(), now.into()],
        ))
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// `rows` into `table (columns)`, [`INSERT_ROWS`] to a statement.
    async fn insert_rows(
        &self,
        txn: &DatabaseTransaction,
        into: &str,
        rows: Vec<Vec<Value>>,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut values: Vec<Value> = Vec::new();
            let tuples: Vec<String> = chunk
                .iter()
                .map(|row| format!("({})", placeholders(&mut values, row.iter().cloned())))
                .collect();
            txn.execute_raw(self.stmt(&format!("INSERT INTO {into} VALUES {}", tuples.join(", ")), values))
                .await?;
        }
        Ok(())
    }

    /// A read-only transaction with one snapshot for every statement (PostgreSQL's repeatable read; SQLite's
    /// read transactions already are).
    pub(crate) async fn snapshot(&self) -> Result<DatabaseTransaction, StoreError> {
        Ok(match self.backend() {
            Backend::Postgres => {
                self.db()
                    .begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly))
                    .await?
            }
            Backend::Sqlite => self.db().begin().await?,
        })
    }

    /// Which months of `window` the summary can serve now, and which parts to read from `disputes`.
    async fn plan(&self, conn: &impl ConnectionTrait, window: Window) -> Result<Option<Plan>, StoreError> {
        let Some(covers_until) = self.summary_covers_until(conn).await? else {
            return Ok(None);
        };
        let changed = self.changed_months(conn, Some(covers_until)).await?;
        let summarised: BTreeSet<String> = conn
            .query_all_raw(self.stmt("SELECT month FROM pattern_summary_months", vec![]))
            .await?
            .iter()
            .map(|row| row.try_get::<String>("", "month"))
            .collect::<Result<_, _>>()?;
        Plan::new(&summarised, &changed, window)
    }

    /// [`Store::dispute_patterns`] through the summary, when a cuboid keeps the query's groupings and filters and
    /// some of its window is summarised; none otherwise.
    pub(crate) async fn patterns_from_summary(
        &self,
        query: &PatternQuery,
    ) -> Result<Option<Vec<PatternRow>>, StoreError> {
        let Some(cuboid) = Cuboid::covering(query) else {
            return Ok(None);
        };
        let txn = self.snapshot().await?;
        let Some(plan) = self.plan(&txn, (query.opened_from, query.opened_before)).await? else {
            return Ok(None);
        };
        let mut groups: HashMap<(PatternKey, String), Figures> = HashMap::new();
        let too_many = || StoreError::TooManyRows {
            what: "the groups",
            limit: MAX_PATTERN_GROUPS,
        };

        // The summarised months.
        let mut values: Vec<Value> = vec![cuboid.as_str().into()];
        let months = placeholders(&mut values, plan.months.iter().map(|m| Value::from(m.clone())));
        let mut conditions = vec![format!("cuboid = $1 AND month IN ({months})")];
        conditions.extend(query.group_filters(&mut values));
        let sql = format!("SELECT * FROM pattern_summary WHERE {}", conditions.join(" AND "));
        for row in txn.query_all_raw(self.stmt(&sql, values)).await? {
            let month: String = row.try_get("", "month")?;
            let key = pattern_key(&query.group_by, &grain_of_row(&row)?, &month);
            let currency: String = row.try_get("", "currency")?;
            groups.entry((key, currency)).or_default().add(&Figures::read(&row)?);
            if groups.len() as u64 > MAX_PATTERN_GROUPS {
                return Err(too_many());
            }
        }

        // The rest of the window, from the disputes.
        if !plan.live.is_empty() {
            let (filters, mut values) = query.filters();
            let windows = window_condition(&plan.live, &mut values);
            let conditions = format!("{filters} AND {windows}");
            match self.backend() {
                Backend::Postgres => {
                    self.live_groups_postgres(&txn, query, &conditions, values, &mut groups)
                        .await?
                }
                Backend::Sqlite => {
                    // SQLite has no logarithm to bucket with: the disputes' own times, one by one.
                    self.visit_disputes(&txn, &conditions, &values, |facts| {
                        let key = pattern_key(&query.group_by, &full_grain(&facts), &facts.month());
                        groups.entry((key, facts.currency.clone())).or_default().count(&facts);
                    })
                    .await?
                }
            }
            if groups.len() as u64 > MAX_PATTERN_GROUPS {
                return Err(too_many());
            }
        }
        txn.commit().await?;
        Ok(Some(
            groups
                .into_iter()
                .map(|((key, currency), figures)| figures.into_row(key, currency))
                .collect(),
        ))
    }

    /// Adds the figures of the disputes matching `conditions` to `groups`, aggregated by PostgreSQL per group and
    /// histogram bucket (a month of disputes is then a few thousand rows, not its disputes).
    async fn live_groups_postgres(
        &self,
        conn: &impl ConnectionTrait,
        query: &PatternQuery,
        conditions: &str,
        values: Vec<Value>,
        groups: &mut HashMap<(PatternKey, String), Figures>,
    ) -> Result<(), StoreError> {
        let keys = query.keys(Backend::Postgres);
        let (key_select, group) = key_clauses(&keys);
        let bucket = format!(
            "CASE WHEN resolution_seconds IS NULL THEN NULL WHEN resolution_seconds < 1 THEN 0 ELSE 1 + \
             CAST(floor(ln(CAST(resolution_seconds AS double precision)) / ln(CAST({} AS double precision))) \
             AS INTEGER) END",
            ResolutionHistogram::GROWTH
        );
        let sql = format!(
            "SELECT {key_select}currency, {bucket} AS bucket, {figures}, \
             CAST(COALESCE(SUM(resolution_seconds), 0) AS BIGINT) AS seconds \
             FROM disputes WHERE {conditions} GROUP BY {group}currency, bucket",
            figures = figures_select(),
        );
        for row in conn.query_all_raw(self.stmt(&sql, values)).await? {
            let mut figures = Figures::read_additive(&row)?;
            if let Some(bucket) = row.try_get::<Option<i32>>("", "bucket")? {
                let resolved = u64::try_from(figures.resolved).unwrap_or(0);
                figures.histogram.add_bucket(
                    u32::try_from(bucket).unwrap_or(0),
                    resolved,
                    row.try_get("", "seconds")?,
                );
            }
            let key = read_key(&row, &keys)?;
            groups
                .entry((key, row.try_get("", "currency")?))
                .or_default()
                .add(&figures);
        }
        Ok(())
    }

    /// The monitoring counts of the summarised months inside `query`'s window, and the windows left to count from
    /// `disputes`; none when the summary can serve none of it.
    pub(crate) async fn monitoring_from_summary(
        &self,
        conn: &impl ConnectionTrait,
        query: &MonitoringQuery,
    ) -> Result<Option<MonitoringFromSummary>, StoreError> {
        let Some(plan) = self.plan(conn, (query.opened_from, query.opened_before)).await? else {
            return Ok(None);
        };
        let mut values: Vec<Value> = Vec::new();
        let months = placeholders(&mut values, plan.months.iter().map(|m| Value::from(m.clone())));
        let mut sql =
            format!("SELECT month, program, seller_id, disputes FROM monitoring_summary WHERE month IN ({months})");
        if let Some(seller) = &query.seller_id {
            values.push(seller.clone().into());
            sql.push_str(&format!(" AND seller_id = ${}", values.len()));
        }
        let mut counts = Vec::new();
        for row in conn.query_all_raw(self.stmt(&sql, values)).await? {
            let program: String = row.try_get("", "program")?;
            let program = MonitoringProgram::from_str(&program)
                .map_err(|_| StoreError::Corrupt(format!("monitoring summary program {program:?}")))?;
            let (start, _) = month_bounds(&row.try_get::<String>("", "month")?)?;
            let count = u64::try_from(row.try_get::<i64>("", "disputes")?).unwrap_or(0);
            counts.push((program, row.try_get("", "seller_id")?, start.date_naive(), count));
        }
        Ok(Some(MonitoringFromSummary {
            counts,
            live: plan.live,
        }))
    }

    /// The live windows as a condition on `opened_at`, for the monitoring statement.
    pub(crate) fn live_windows(windows: &[Window], values: &mut Vec<Value>) -> String {
        window_condition(windows, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn months(labels: &[&str]) -> BTreeSet<String> {
        labels.iter().map(|m| (*m).to_owned()).collect()
    }

    fn at(label: &str) -> DateTime<Utc> {
        month_bounds(label).map(|(start, _)| start).unwrap_or_default()
    }

    #[test]
    fn a_plan_reads_changed_and_cut_months_live() {
        let summarised = months(&["2026-01", "2026-02", "2026-03", "2026-04"]);
        // Nothing changed, no window: every month from the summary, before and after them live.
        assert_eq!(
            Plan::new(&summarised, &BTreeSet::new(), (None, None)).ok().flatten(),
            Some(Plan {
                months: vec!["2026-01".into(), "2026-02".into(), "2026-03".into(), "2026-04".into()],
                live: vec![(None, Some(at("2026-01"))), (Some(at("2026-05")), None)],
            })
        );
        // February changed; the window starts mid-January and ends with April.
        let from = at("2026-01") + Duration::days(10);
        assert_eq!(
            Plan::new(&summarised, &months(&["2026-02"]), (Some(from), Some(at("2026-05"))))
                .ok()
                .flatten(),
            Some(Plan {
                months: vec!["2026-03".into(), "2026-04".into()],
                live: vec![(Some(from), Some(at("2026-03")))],
            })
        );
        // Everything changed: no plan, the query reads `disputes` alone.
        assert_eq!(Plan::new(&summarised, &summarised, (None, None)).ok().flatten(), None);
    }

    #[test]
    fn the_smallest_cuboid_that_keeps_the_query_answers_it() {
        use PatternDimension as D;
        let query = |group_by: Vec<D>| PatternQuery {
            group_by,
            ..Default::default()
        };
        assert_eq!(
            Cuboid::covering(&query(vec![D::ReasonCategory, D::Month])),
            Some(Cuboid::Countries)
        );
        assert_eq!(Cuboid::covering(&query(vec![D::ReasonCode])), Some(Cuboid::Reasons));
        assert_eq!(Cuboid::covering(&query(vec![D::Seller])), Some(Cuboid::Sellers));
        assert_eq!(Cuboid::covering(&query(vec![D::Seller, D::Processor])), None);
        let mut by_seller = query(vec![D::Grade]);
        by_seller.seller_id = Some("s".into());
        assert_eq!(Cuboid::covering(&by_seller), None);
        let mut one_processor = query(vec![D::ReasonCategory]);
        one_processor.processors = vec![verdict_domain::Processor::Stripe];
        assert_eq!(Cuboid::covering(&one_processor), Some(Cuboid::Reasons));
    }
}
