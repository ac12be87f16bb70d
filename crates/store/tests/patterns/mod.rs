//! Dispute patterns and monitoring counts against a small dataset whose figures were worked out by hand (in the
//! comments), on SQLite and PostgreSQL.

use chrono::{DateTime, Duration, TimeZone, Utc};
use verdict_domain::facts::OrderProfile;
use verdict_domain::patterns::{MonitoringProgram, PatternDimension};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, Dispute, DisputeId, Locale, Money, NewDispute, Processor,
    ReasonCode, Stage, decide, open, replay,
};
use verdict_store::{MonitoringQuery, PatternQuery, PatternRow, Store};

fn at(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
}

struct Case {
    pid: &'static str,
    processor: Processor,
    network: CardNetwork,
    code: &'static str,
    minor: i64,
    currency: &'static str,
    seller: &'static str,
    opened: DateTime<Utc>,
    profile: Option<(&'static str, &'static str, &'static str)>,
    /// The outcome action and how many days after opening it came.
    outcome: Option<(Action, i64)>,
}

async fn commit(store: &Store, dispute: &Dispute, command: Command, now: DateTime<Utc>) -> Dispute {
    let decision = decide(dispute, &command, now).unwrap_or_else(|e| panic!("{:?}: {e}", command.action));
    let mut after = dispute.clone();
    for event in &decision.events {
        verdict_domain::apply(&mut after, event);
    }
    store.commit(Some(dispute.version), &after, &decision).await.unwrap();
    after
}

async fn seed(store: &Store, case: Case) -> Dispute {
    let new = NewDispute {
        processor: case.processor,
        processor_dispute_id: case.pid.into(),
        payment_reference: format!("pay_{}", case.pid),
        order_reference: None,
        seller_id: Some(case.seller.into()),
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount: Money::new(case.minor, Currency::parse(case.currency).unwrap()).unwrap(),
        reason_code: ReasonCode::parse(case.network, case.code).unwrap(),
        reason_code_raw: case.code.into(),
        stage: Stage::Chargeback,
        due_by: Some(case.opened + Duration::days(40)),
        opened_at: case.opened,
    };
    let command = Command::new(Actor::processor(case.processor), Action::Open(Box::new(new)));
    let decision = open(DisputeId::new_v7(), &command, case.opened).unwrap();
    let mut dispute = replay(&decision.events).unwrap();
    store.commit(None, &dispute, &decision).await.unwrap();
    if let Some((model, grade, country)) = case.profile {
        let link = Action::LinkOrder {
            order_reference: format!("order-{}", case.pid),
            source: "tables".into(),
            seller_id: case.seller.into(),
            customer: dispute.customer.clone(),
            seller_task: None,
            profile: Some(OrderProfile {
                device_model: Some(model.into()),
                grade: Some(grade.into()),
                country: Some(country.into()),
            }),
        };
        let now = case.opened + Duration::hours(1);
        dispute = commit(store, &dispute, Command::new(Actor::system("link"), link), now).await;
    }
    if let Some((action, days)) = case.outcome {
        let actor = match action {
            Action::ReceiveOutcome { .. } => Actor::processor(case.processor),
            _ => Actor::system("test"),
        };
        let now = case.opened + Duration::days(days);
        dispute = commit(store, &dispute, Command::new(actor, action), now).await;
    }
    dispute
}

fn visa_a(pid: &'static str, minor: i64, opened: DateTime<Utc>) -> Case {
    Case {
        pid,
        processor: Processor::Stripe,
        network: CardNetwork::Visa,
        code: "10.4",
        minor,
        currency: "EUR",
        seller: "seller-a",
        opened,
        profile: None,
        outcome: None,
    }
}

/// Seven disputes:
///
/// | id | seller | network | amount | opened | product, grade, country | outcome after |
/// |----|--------|---------|--------|--------|--------------------------|---------------|
/// | d1 | a | visa 10.4 | 100.00 EUR | 1 Oct | iPhone 13, good, FR | won, 10 days (864,000 s) |
/// | d2 | a | visa 10.4 | 200.00 EUR | 5 Oct | iPhone 13, good, FR | lost, 20 days (1,728,000 s) |
/// | d3 | a | visa 10.4 | 50.00 EUR | 10 Oct | iPhone 12, fair, DE | accepted, 2 days (172,800 s) |
/// | d4 | a | visa 10.4 | 80.00 EUR | 2 Nov | iPhone 13, good, FR | expired, 30 days (2,592,000 s; a miss) |
/// | d5 | a | visa 10.4 | 70.00 EUR | 3 Nov | iPhone 12, fair, DE | open |
/// | d6 | b | mastercard 4837 (adyen) | 300.00 EUR | 15 Oct | not linked | won, 4 days (345,600 s) |
/// | d7 | b | mastercard 4837 (adyen) | 120.00 USD | 20 Oct | not linked | withdrawn, 6 days (518,400 s) |
async fn dataset(store: &Store) {
    let cases = [
        Case {
            profile: Some(("iPhone 13", "good", "FR")),
            outcome: Some((Action::ReceiveOutcome { won: true, stage: None }, 10)),
            ..visa_a("d1", 10_000, at(10, 1))
        },
        Case {
            profile: Some(("iPhone 13", "good", "FR")),
            outcome: Some((
                Action::ReceiveOutcome {
                    won: false,
                    stage: None,
                },
                20,
            )),
            ..visa_a("d2", 20_000, at(10, 5))
        },
        Case {
            profile: Some(("iPhone 12", "fair", "DE")),
            outcome: Some((Action::Accept, 2)),
            ..visa_a("d3", 5_000, at(10, 10))
        },
        Case {
            profile: Some(("iPhone 13", "good", "FR")),
            outcome: Some((Action::Expire, 30)),
            ..visa_a("d4", 8_000, at(11, 2))
        },
        Case {
            profile: Some(("iPhone 12", "fair", "DE")),
            ..visa_a("d5", 7_000, at(11, 3))
        },
        Case {
            processor: Processor::Adyen,
            network: CardNetwork::Mastercard,
            code: "4837",
            seller: "seller-b",
            outcome: Some((Action::ReceiveOutcome { won: true, stage: None }, 4)),
            ..visa_a("d6", 30_000, at(10, 15))
        },
        Case {
            processor: Processor::Adyen,
            network: CardNetwork::Mastercard,
            code: "4837",
            seller: "seller-b",
            currency: "USD",
            outcome: Some((Action::Withdraw, 6)),
            ..visa_a("d7", 12_000, at(10, 20))
        },
    ];
    for case in cases {
        seed(store, case).await;
    }
}

/// `(key values, currency, disputes, disputed, won, lost, accepted, open, recovered, lost amount, accepted
/// amount, misses, median seconds)`.
type Figures = (Vec<Option<String>>, String, [i64; 11], Option<f64>);

fn figures(rows: &[PatternRow], group_by: &[PatternDimension]) -> Vec<Figures> {
    rows.iter()
        .map(|r| {
            (
                group_by.iter().map(|d| r.key.get(*d).map(str::to_owned)).collect(),
                r.currency.clone(),
                [
                    r.disputes,
                    r.disputed_minor,
                    r.won,
                    r.lost,
                    r.accepted,
                    r.open,
                    r.recovered_minor,
                    r.lost_minor,
                    r.accepted_minor,
                    r.deadline_misses,
                    r.resolved,
                ],
                r.median_resolution_seconds,
            )
        })
        .collect()
}

fn key(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

#[tokio::test]
async fn pattern_figures_match_the_hand_computed_ones() {
    for db in verdict_store::testing::test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        dataset(&store).await;
        let label = db.label;

        // By seller: amounts per currency, never summed across.
        let by = vec![PatternDimension::Seller];
        let rows = store
            .dispute_patterns(&PatternQuery {
                group_by: by.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            figures(&rows, &by),
            vec![
                // d1-d5: won d1; lost d2, d4; accepted d3; open d5. Median of 172,800, 864,000, 1,728,000 and
                // 2,592,000 is (864,000 + 1,728,000) / 2.
                (
                    key(&[Some("seller-a")]),
                    "EUR".into(),
                    [5, 50_000, 1, 2, 1, 1, 10_000, 28_000, 5_000, 1, 4],
                    Some(1_296_000.0)
                ),
                (
                    key(&[Some("seller-b")]),
                    "EUR".into(),
                    [1, 30_000, 1, 0, 0, 0, 30_000, 0, 0, 0, 1],
                    Some(345_600.0)
                ),
                // Withdrawn counts as won.
                (
                    key(&[Some("seller-b")]),
                    "USD".into(),
                    [1, 12_000, 1, 0, 0, 0, 12_000, 0, 0, 0, 1],
                    Some(518_400.0)
                ),
            ],
            "{label}"
        );

        // By product and grade, euros only; d6 has no order, so no product.
        let by = vec![PatternDimension::ProductModel, PatternDimension::Grade];
        let rows = store
            .dispute_patterns(&PatternQuery {
                group_by: by.clone(),
                currencies: vec!["EUR".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            figures(&rows, &by),
            vec![
                (
                    key(&[None, None]),
                    "EUR".into(),
                    [1, 30_000, 1, 0, 0, 0, 30_000, 0, 0, 0, 1],
                    Some(345_600.0)
                ),
                // d3 and d5: one accepted after 2 days, one open.
                (
                    key(&[Some("iPhone 12"), Some("fair")]),
                    "EUR".into(),
                    [2, 12_000, 0, 0, 1, 1, 0, 0, 5_000, 0, 1],
                    Some(172_800.0)
                ),
                // d1, d2, d4: the middle of 864,000, 1,728,000, 2,592,000.
                (
                    key(&[Some("iPhone 13"), Some("good")]),
                    "EUR".into(),
                    [3, 38_000, 1, 2, 0, 0, 10_000, 28_000, 0, 1, 3],
                    Some(1_728_000.0)
                ),
            ],
            "{label}"
        );

        // By month: October EUR is d1, d2, d3, d6 (median of 172,800, 345,600, 864,000, 1,728,000).
        let by = vec![PatternDimension::Month];
        let rows = store
            .dispute_patterns(&PatternQuery {
                group_by: by.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            figures(&rows, &by),
            vec![
                (
                    key(&[Some("2026-10")]),
                    "EUR".into(),
                    [4, 65_000, 2, 1, 1, 0, 40_000, 20_000, 5_000, 0, 4],
                    Some(604_800.0)
                ),
                (
                    key(&[Some("2026-10")]),
                    "USD".into(),
                    [1, 12_000, 1, 0, 0, 0, 12_000, 0, 0, 0, 1],
                    Some(518_400.0)
                ),
                (
                    key(&[Some("2026-11")]),
                    "EUR".into(),
                    [2, 15_000, 0, 1, 0, 1, 0, 8_000, 0, 1, 1],
                    Some(2_592_000.0)
                ),
            ],
            "{label}"
        );

        // Filters: Adyen only, by reason code (a code is grouped within its network) and country.
        let by = vec![PatternDimension::ReasonCode, PatternDimension::Network];
        let rows = store
            .dispute_patterns(&PatternQuery {
                group_by: by.clone(),
                processors: vec![Processor::Adyen],
                ..Default::default()
            })
            .await
            .unwrap();
        let keys: Vec<_> = figures(&rows, &by).into_iter().map(|f| (f.0, f.1, f.2[0])).collect();
        assert_eq!(
            keys,
            vec![
                (key(&[Some("4837"), Some("mastercard")]), "EUR".into(), 1),
                (key(&[Some("4837"), Some("mastercard")]), "USD".into(), 1),
            ],
            "{label}"
        );

        // Opened in November, by country and reason category: d4 (FR) and d5 (DE).
        let by = vec![PatternDimension::Country, PatternDimension::ReasonCategory];
        let rows = store
            .dispute_patterns(&PatternQuery {
                group_by: by.clone(),
                opened_from: Some(at(11, 1)),
                opened_before: Some(at(12, 1)),
                ..Default::default()
            })
            .await
            .unwrap();
        let keys: Vec<_> = figures(&rows, &by).into_iter().map(|f| (f.0, f.2[0], f.2[9])).collect();
        assert_eq!(
            keys,
            vec![
                (key(&[Some("DE"), Some("fraud")]), 1, 0),
                (key(&[Some("FR"), Some("fraud")]), 1, 1),
            ],
            "{label}"
        );

        // No grouping at all: one row per currency.
        let rows = store.dispute_patterns(&PatternQuery::default()).await.unwrap();
        let totals: Vec<_> = rows
            .iter()
            .map(|r| (r.currency.as_str(), r.disputes, r.disputed_minor))
            .collect();
        assert_eq!(totals, vec![("EUR", 6, 80_000), ("USD", 1, 12_000)], "{label}");
    }
}

async fn insert_orders(store: &Store, seller: &str, placed_at: DateTime<Utc>, count: usize) {
    use sea_orm::ConnectionTrait;
    let backend = store.db().get_database_backend();
    for i in 0..count {
        let sql = "INSERT INTO marketplace_orders (id, order_reference, seller_id, customer_account_id, placed_at, \
                   facts, created_at, updated_at) VALUES ($1, $2, $3, 'acct', $4, $5, $4, $4)";
        let sql = if store.is_postgres() {
            sql.to_owned()
        } else {
            sql.replace('$', "?")
        };
        let values: Vec<sea_orm::Value> = vec![
            uuid::Uuid::now_v7().into(),
            format!("{seller}-{}-{i}", placed_at.format("%Y%m")).into(),
            seller.into(),
            placed_at.into(),
            serde_json::json!({}).into(),
        ];
        store
            .db()
            .execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn monitoring_counts_divide_by_the_programs_order_months() {
    for db in verdict_store::testing::test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        dataset(&store).await;
        // Seller a: 100 orders in October, 50 in November. Seller b: 40 in September, 10 in October.
        insert_orders(&store, "seller-a", at(10, 3), 100).await;
        insert_orders(&store, "seller-a", at(11, 20), 50).await;
        insert_orders(&store, "seller-b", at(9, 30), 40).await;
        insert_orders(&store, "seller-b", at(10, 30), 10).await;
        let counts = store.monitoring_counts(&MonitoringQuery::default()).await.unwrap();
        let got: Vec<_> = counts
            .iter()
            .map(|c| {
                (
                    c.month.format("%Y-%m").to_string(),
                    c.program,
                    c.seller_id.clone(),
                    c.disputes,
                    c.orders,
                )
            })
            .collect();
        let a = Some("seller-a".to_owned());
        let b = Some("seller-b".to_owned());
        assert_eq!(
            got,
            vec![
                // VAMP, October: d1-d3 over the same month's orders (seller a 100; everyone 110).
                ("2026-10".into(), MonitoringProgram::VisaVamp, None, 3, 110),
                ("2026-10".into(), MonitoringProgram::VisaVamp, a.clone(), 3, 100),
                // ECM, October: d6 and d7 over September's orders (seller b 40, everyone 40).
                ("2026-10".into(), MonitoringProgram::MastercardEcm, None, 2, 40),
                ("2026-10".into(), MonitoringProgram::MastercardEcm, b, 2, 40),
                ("2026-11".into(), MonitoringProgram::VisaVamp, None, 2, 50),
                ("2026-11".into(), MonitoringProgram::VisaVamp, a, 2, 50),
            ],
            "{}",
            db.label
        );
        // One seller asked for: no marketplace-wide rows.
        let only_b = store
            .monitoring_counts(&MonitoringQuery {
                seller_id: Some("seller-b".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(only_b.len(), 1, "{}", db.label);
    }
}

/// The order rows of the dataset's linked disputes, with the facts' shape the backfill reads.
async fn record_orders_of_the_dataset(store: &Store) {
    use sea_orm::ConnectionTrait;
    let backend = store.db().get_database_backend();
    let orders = [
        ("d1", "iPhone 13", "good", "FR"),
        ("d2", "iPhone 13", "good", "FR"),
        ("d3", "iPhone 12", "fair", "DE"),
        ("d4", "iPhone 13", "good", "FR"),
        ("d5", "iPhone 12", "fair", "DE"),
    ];
    for (pid, model, grade, country) in orders {
        let facts = serde_json::json!({
            "lines": [{ "device_model": model, "grade": grade }],
            "shipment": { "address": { "country": country } },
        });
        let sql = "INSERT INTO marketplace_orders (id, order_reference, seller_id, customer_account_id, placed_at, \
                   facts, created_at, updated_at) VALUES ($1, $2, 'seller-a', 'acct', $3, $4, $3, $3)";
        let sql = if store.is_postgres() {
            sql.to_owned()
        } else {
            sql.replace('$', "?")
        };
        let values: Vec<sea_orm::Value> = vec![
            uuid::Uuid::now_v7().into(),
            format!("order-{pid}").into(),
            at(9, 1).into(),
            facts.into(),
        ];
        store
            .db()
            .execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_migration_backfills_the_same_figures_from_the_log_and_the_orders() {
    use verdict_migrations::{Migrator, MigratorTrait};
    for db in verdict_store::testing::test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        dataset(&store).await;
        record_orders_of_the_dataset(&store).await;
        let every = vec![
            PatternDimension::Seller,
            PatternDimension::ProductModel,
            PatternDimension::Grade,
            PatternDimension::Country,
            PatternDimension::Month,
        ];
        let query = PatternQuery {
            group_by: every,
            ..Default::default()
        };
        let written = store.dispute_patterns(&query).await.unwrap();
        // Undo migration 17 and every later one (its columns go) and apply them again: the backfill alone
        // fills them.
        let migrations = Migrator::migrations();
        let seventeen = migrations
            .iter()
            .position(|m| m.name() == "m20261202_000017_dispute_patterns")
            .unwrap();
        Migrator::down(store.db(), Some((migrations.len() - seventeen) as u32))
            .await
            .unwrap();
        let columns = store.execute_unprepared("SELECT order_grade FROM disputes").await;
        assert!(columns.is_err(), "{}: migration 17 was not undone", db.label);
        Migrator::up(store.db(), None).await.unwrap();
        let backfilled = store.dispute_patterns(&query).await.unwrap();
        assert_eq!(backfilled, written, "{}", db.label);
        assert_eq!(written.len(), 6, "{}", db.label);
    }
}

/// Every shape the summary serves (and some it does not), by the figures it gives before and after a run.
fn summary_queries() -> Vec<(&'static str, PatternQuery)> {
    use PatternDimension as D;
    let by = |group_by: Vec<D>| PatternQuery {
        group_by,
        ..Default::default()
    };
    let mut shapes = vec![
        ("nothing", by(vec![])),
        ("category and month", by(vec![D::ReasonCategory, D::Month])),
        ("code", by(vec![D::ReasonCode])),
        ("processor and network", by(vec![D::Processor, D::Network])),
        ("seller and category", by(vec![D::Seller, D::ReasonCategory])),
        ("product and grade", by(vec![D::ProductModel, D::Grade, D::Month])),
        ("country", by(vec![D::Country])),
        ("seller and processor (no cuboid)", by(vec![D::Seller, D::Processor])),
    ];
    let mut euros = by(vec![D::Month]);
    euros.currencies = vec!["EUR".into()];
    shapes.push(("euros by month", euros));
    let mut adyen = by(vec![D::Network]);
    adyen.processors = vec![Processor::Adyen];
    shapes.push(("adyen by network", adyen));
    let mut visa = by(vec![D::ReasonCode]);
    visa.networks = vec![CardNetwork::Visa];
    shapes.push(("visa by code", visa));
    let mut seller = by(vec![D::Month]);
    seller.seller_id = Some("seller-a".into());
    shapes.push(("seller a by month", seller));
    let mut october = by(vec![D::ReasonCategory]);
    october.opened_from = Some(at(10, 1));
    october.opened_before = Some(at(11, 1));
    shapes.push(("October, whole", october));
    let mut cut = by(vec![D::Month]);
    cut.opened_from = Some(at(10, 5));
    cut.opened_before = Some(at(11, 3));
    shapes.push(("cut window", cut));
    shapes
}

/// The figures in a comparable order, medians apart.
fn comparable(mut rows: Vec<PatternRow>) -> Vec<(PatternRow, Option<f64>)> {
    rows.sort_by_key(|r| format!("{:?}{}", r.key, r.currency));
    rows.into_iter()
        .map(|mut r| {
            let median = r.median_resolution_seconds.take();
            (r, median)
        })
        .collect()
}

fn assert_same_figures(summary: Vec<PatternRow>, disputes: Vec<PatternRow>, what: &str) {
    let (summary, disputes) = (comparable(summary), comparable(disputes));
    assert_eq!(
        summary.iter().map(|(r, _)| r).collect::<Vec<_>>(),
        disputes.iter().map(|(r, _)| r).collect::<Vec<_>>(),
        "{what}"
    );
    for ((row, a), (_, b)) in summary.iter().zip(&disputes) {
        match (a, b) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= b * 0.01, "{what}: {:?} median {a} vs {b}", row.key),
            _ => assert_eq!(a, b, "{what}: {:?}", row.key),
        }
    }
}

#[tokio::test]
async fn the_summary_gives_the_figures_the_disputes_give() {
    for db in verdict_store::testing::test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        dataset(&store).await;
        let label = db.label;
        // Before the first run there is no summary: every query reads the disputes.
        for (what, query) in summary_queries() {
            let rows = store.dispute_patterns(&query).await.unwrap();
            assert_same_figures(rows, store.dispute_patterns_from_disputes(&query).await.unwrap(), what);
        }
        // The first run summarises both months; a second finds nothing changed. (After the dataset's last
        // event, 2 December.)
        let now = at(12, 31);
        assert_eq!(store.refresh_pattern_summary(now).await.unwrap(), 2, "{label}");
        assert_eq!(store.refresh_pattern_summary(now).await.unwrap(), 0, "{label}");
        for (what, query) in summary_queries() {
            let rows = store.dispute_patterns(&query).await.unwrap();
            assert_same_figures(
                rows,
                store.dispute_patterns_from_disputes(&query).await.unwrap(),
                &format!("{label}: {what}"),
            );
        }
        // The whole-dataset answer of the hand-computed test, through the summary.
        let rows = store
            .dispute_patterns(&PatternQuery {
                group_by: vec![PatternDimension::Seller],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].median_resolution_seconds, Some(1_296_000.0), "{label}");
    }
}

/// Adds `extra` disputes to October's summary (what a stale summary would say: to the French row of the country
/// cuboid, and to each monitoring row), so a test can tell which months were read from the summary.
async fn inflate_october(store: &Store, extra: i64) {
    store
        .execute_unprepared(&format!(
            "UPDATE pattern_summary SET disputes = disputes + {extra} WHERE month = '2026-10' \
             AND cuboid = 'countries' AND order_country = 'FR'; \
             UPDATE monitoring_summary SET disputes = disputes + {extra} WHERE month = '2026-10'"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_month_changed_after_the_run_is_read_from_the_disputes() {
    for db in verdict_store::testing::test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        dataset(&store).await;
        let label = db.label;
        let now = at(12, 31);
        store.refresh_pattern_summary(now).await.unwrap();
        let by_month = PatternQuery {
            group_by: vec![PatternDimension::Month],
            currencies: vec!["EUR".into()],
            ..Default::default()
        };
        let disputes = |rows: &[PatternRow]| {
            rows.iter()
                .map(|r| (r.key.month.clone(), r.disputes))
                .collect::<Vec<_>>()
        };
        let october = || Some("2026-10".to_owned());
        let november = || Some("2026-11".to_owned());
        // The summary is what October is read from: inflating it shows (EUR October is d1, d2, d3, d6).
        inflate_october(&store, 100).await;
        let rows = store.dispute_patterns(&by_month).await.unwrap();
        assert_eq!(disputes(&rows), vec![(october(), 104), (november(), 2)], "{label}");
        let vamp_october = |counts: &[verdict_store::MonitoringCount]| {
            counts
                .iter()
                .find(|c| {
                    c.program == MonitoringProgram::VisaVamp
                        && c.seller_id.is_none()
                        && c.month == at(10, 1).date_naive()
                })
                .map(|c| c.disputes)
        };
        let counts = store.monitoring_counts(&MonitoringQuery::default()).await.unwrap();
        assert_eq!(vamp_october(&counts), Some(103), "{label}");

        // A dispute opened in October after the run: October is read from the disputes until the next run.
        seed(
            &store,
            Case {
                opened: at(10, 25),
                ..visa_a("d8", 1_000, at(10, 25))
            },
        )
        .await;
        // As a change made now would be stamped (the seed stamps its own, October, time).
        use sea_orm::ConnectionTrait;
        let backend = store.db().get_database_backend();
        let placeholder = if store.backend() == verdict_store::Backend::Postgres {
            "$1"
        } else {
            "?1"
        };
        store
            .db()
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                format!("UPDATE disputes SET updated_at = {placeholder} WHERE processor_dispute_id = 'd8'"),
                [sea_orm::Value::from(now + Duration::minutes(5))],
            ))
            .await
            .unwrap();
        let rows = store.dispute_patterns(&by_month).await.unwrap();
        assert_eq!(disputes(&rows), vec![(october(), 5), (november(), 2)], "{label}");
        let counts = store.monitoring_counts(&MonitoringQuery::default()).await.unwrap();
        assert_eq!(vamp_october(&counts), Some(4), "{label}");
        // Every shape, with October read from the disputes (medians included) and November from the summary.
        store
            .execute_unprepared("UPDATE pattern_summary SET disputes = disputes - 100 WHERE disputes > 100")
            .await
            .unwrap();
        for (what, query) in summary_queries() {
            let rows = store.dispute_patterns(&query).await.unwrap();
            let expected = store.dispute_patterns_from_disputes(&query).await.unwrap();
            assert_same_figures(rows, expected, &format!("{label}: October changed: {what}"));
        }

        // The next run summarises October again, d8 with it; November stays as it was.
        assert_eq!(
            store
                .refresh_pattern_summary(now + Duration::minutes(10))
                .await
                .unwrap(),
            1,
            "{label}"
        );
        let rows = store.dispute_patterns(&by_month).await.unwrap();
        assert_eq!(disputes(&rows), vec![(october(), 5), (november(), 2)], "{label}");
        assert_same_figures(
            rows,
            store.dispute_patterns_from_disputes(&by_month).await.unwrap(),
            &format!("{label}: after the second run"),
        );
    }
}
