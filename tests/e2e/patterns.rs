//! Dispute patterns and card-network monitoring over GraphQL and CSV: figures of a small seeded dataset worked
//! out by hand, the product profile an analyst's order link brings, an ECM flag, and who may read them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, CustomerEmail, Dispute, DisputeId, Locale, Money,
    NewDispute, Processor, ReasonCode, Stage, decide, open, replay,
};
use verdict_store::Store;

use crate::app::{TestApp, test_databases};

const PATTERNS: &str = "query($by: [PatternDimension!]!, $filter: PatternFilter) { disputePatterns(groupBy: $by, \
    filter: $filter) { sellerId productModel grade country month network reasonCode currency disputes \
    disputedAmount { formatted } won lost accepted open winRate recoveredAmount { minorUnits } \
    lostAmount { minorUnits } acceptedAmount { minorUnits } deadlineMisses resolved medianHoursToResolution } }";
const MONITORING: &str = "query($filter: MonitoringFilter) { disputeMonitoring(filter: $filter) { program sellerId \
    month disputes orders ordersMonth ratioPercent flagged { program level minimumRatioPercent minimumCount source } } }";
const ORDER: &str = include_str!("../fixtures/orders/order-a17.json");

fn october(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, day, 8, 0, 0).unwrap()
}

struct Seed {
    pid: String,
    network: CardNetwork,
    code: &'static str,
    minor: i64,
    currency: &'static str,
    seller: &'static str,
    opened: DateTime<Utc>,
}

/// Opens a dispute (with its seller and customer, so no link step runs) and applies `then` `after` its opening.
async fn seed(store: &Store, seed: Seed, then: Option<(Action, Duration)>) -> Dispute {
    let new = NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: seed.pid.clone(),
        payment_reference: format!("pi_{}", seed.pid),
        order_reference: None,
        seller_id: Some(seed.seller.into()),
        customer: Customer {
            name: None,
            email: Some(CustomerEmail::parse("buyer@example.com").unwrap()),
            locale: Locale::En,
        },
        amount: Money::new(seed.minor, Currency::parse(seed.currency).unwrap()).unwrap(),
        reason_code: ReasonCode::parse(seed.network, seed.code).unwrap(),
        reason_code_raw: seed.code.into(),
        stage: Stage::Chargeback,
        // Far ahead: no deadline timer fires during the test.
        due_by: Some(Utc::now() + Duration::days(60)),
        opened_at: seed.opened,
    };
    let command = Command::new(Actor::processor(Processor::Stripe), Action::Open(Box::new(new)));
    let decision = open(DisputeId::new_v7(), &command, seed.opened).unwrap();
    let mut dispute = replay(&decision.events).unwrap();
    store.commit(None, &dispute, &decision).await.unwrap();
    if let Some((action, after)) = then {
        let actor = match action {
            Action::ReceiveOutcome { .. } => Actor::processor(Processor::Stripe),
            _ => Actor::system("test"),
        };
        let decision = decide(&dispute, &Command::new(actor, action), seed.opened + after).unwrap();
        let before = dispute.version;
        for event in &decision.events {
            verdict_domain::apply(&mut dispute, event);
        }
        store.commit(Some(before), &dispute, &decision).await.unwrap();
    }
    dispute
}

fn visa(pid: &str, minor: i64, day: u32) -> Seed {
    Seed {
        pid: pid.into(),
        network: CardNetwork::Visa,
        code: "10.4",
        minor,
        currency: "EUR",
        seller: "seller-x",
        opened: october(day),
    }
}

async fn csv(app: &TestApp, token: Option<&str>, path: &str) -> (u16, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn patterns_answer_the_hand_computed_figures_over_graphql_and_csv() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let store = db.store().await.unwrap();
        // p1 won after 48 h, p2 lost after 96 h, p3 expired after 240 h (a miss): seller-x, 450.00 EUR in all.
        seed(
            &store,
            visa("p1", 10_000, 1),
            Some((Action::ReceiveOutcome { won: true, stage: None }, Duration::hours(48))),
        )
        .await;
        seed(
            &store,
            visa("p2", 30_000, 2),
            Some((
                Action::ReceiveOutcome {
                    won: false,
                    stage: None,
                },
                Duration::hours(96),
            )),
        )
        .await;
        seed(
            &store,
            visa("p3", 5_000, 3),
            Some((Action::Expire, Duration::hours(240))),
        )
        .await;
        // p4 is open, in dollars; an analyst links it to order A-17, which brings its seller, device and country.
        let p4 = seed(
            &store,
            Seed {
                code: "13.1",
                currency: "USD",
                minor: 2_000,
                seller: "seller-y",
                ..visa("p4", 0, 4)
            },
            None,
        )
        .await;
        let facts: Value = serde_json::from_str(ORDER).unwrap();
        let record = "mutation($input: RecordOrderInput!) { recordOrder(input: $input) { outcome userErrors { code message } } }";
        app.gql(&app.lead, record, json!({"input": {"facts": facts}}))
            .await
            .data();
        let link = "mutation($input: LinkOrderInput!) { linkOrder(input: $input) { dispute { version } userErrors { code message } } }";
        app.gql(
            &app.analyst,
            link,
            json!({"input": {"id": p4.id.to_string(), "expectedVersion": p4.version, "orderReference": "A-17"}}),
        )
        .await
        .data();

        let by_seller = app.gql(&app.analyst, PATTERNS, json!({"by": ["SELLER"]})).await;
        let rows = by_seller.data()["disputePatterns"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 2, "{}: {rows:?}", app.label);
        let linked = &rows[0];
        assert_eq!(linked["sellerId"], "seller-refurb-lyon", "{}", app.label);
        assert_eq!(
            (
                &linked["currency"],
                &linked["disputes"],
                &linked["open"],
                &linked["winRate"],
                &linked["medianHoursToResolution"]
            ),
            (&json!("USD"), &json!(1), &json!(1), &Value::Null, &Value::Null),
            "{}",
            app.label
        );
        let x = &rows[1];
        assert_eq!(x["sellerId"], "seller-x", "{}", app.label);
        assert_eq!(x["currency"], "EUR");
        assert_eq!(x["disputes"], 3);
        assert_eq!(x["disputedAmount"]["formatted"], "450.00 EUR", "{}", app.label);
        assert_eq!(
            (&x["won"], &x["lost"], &x["accepted"], &x["open"]),
            (&json!(1), &json!(2), &json!(0), &json!(0))
        );
        // Won 1 of 3 decided (the expiry counts as lost).
        assert!(
            (x["winRate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
            "{}",
            app.label
        );
        assert_eq!(x["recoveredAmount"]["minorUnits"], 10_000, "{}", app.label);
        assert_eq!(x["lostAmount"]["minorUnits"], 35_000, "{}", app.label);
        assert_eq!(x["acceptedAmount"]["minorUnits"], 0, "{}", app.label);
        assert_eq!(x["deadlineMisses"], 1);
        assert_eq!(x["resolved"], 3);
        // Median of 48, 96 and 240 hours.
        assert_eq!(x["medianHoursToResolution"], 96.0, "{}", app.label);

        // The analyst's link carried the order's first line and shipping country.
        let by_product = app
            .gql(
                &app.analyst,
                PATTERNS,
                json!({"by": ["PRODUCT_MODEL", "GRADE", "COUNTRY"], "filter": {"currencies": ["usd"]}}),
            )
            .await;
        let rows = by_product.data()["disputePatterns"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 1, "{}: {rows:?}", app.label);
        assert_eq!(
            (&rows[0]["productModel"], &rows[0]["grade"], &rows[0]["country"]),
            (&json!("iPhone 13 128 GB Midnight"), &json!("excellent"), &json!("FR")),
            "{}",
            app.label
        );

        // The same pattern as CSV, exactly.
        let (status, body) = csv(
            &app,
            Some(&app.analyst),
            "/patterns.csv?groupBy=seller,month&currency=EUR",
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", app.label);
        assert_eq!(
            body,
            "seller,month,currency,disputes,disputed_minor,won,lost,accepted,open,win_rate,recovered_minor,\
             lost_minor,accepted_minor,deadline_misses,resolved,median_resolution_hours\n\
             seller-x,2026-10,EUR,3,45000,1,2,0,0,0.3333,10000,35000,0,1,3,96.00\n",
            "{}",
            app.label
        );
        // No personal data: the customer's email is nowhere in any grouping.
        let (_, all) = csv(
            &app,
            Some(&app.analyst),
            "/patterns.csv?groupBy=seller,product_model,country,reason_code",
        )
        .await;
        assert!(!all.contains('@'), "{}: {all}", app.label);
        assert!(
            all.contains("seller-refurb-lyon,iPhone 13 128 GB Midnight,FR,13.1,USD,1,2000"),
            "{}: {all}",
            app.label
        );
        let (status, _) = csv(&app, Some(&app.analyst), "/patterns.csv?groupBy=customer_email").await;
        assert_eq!(status, 400, "{}", app.label);
        let (status, _) = csv(&app, Some(&app.analyst), "/patterns.csv?openedFrom=yesterday").await;
        assert_eq!(status, 400, "{}", app.label);
        let inverted = app
            .gql(&app.analyst, PATTERNS, json!({"by": [], "filter": {"openedFrom": "2026-11-01T00:00:00Z", "openedBefore": "2026-10-01T00:00:00Z"}}))
            .await;
        assert_eq!(inverted.error_code(), "INVALID_INPUT", "{}", app.label);
    }
}

async fn insert_orders(store: &Store, seller: &str, placed_at: DateTime<Utc>, count: usize) {
    use sea_orm::ConnectionTrait;
    let backend = store.db().get_database_backend();
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut rows = Vec::new();
    for i in 0..count {
        let n = values.len();
        rows.push(format!(
            "(${}, ${}, ${}, 'acct', ${}, '{{}}', ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 4,
            n + 4
        ));
        values.push(uuid::Uuid::now_v7().into());
        values.push(format!("{seller}-{i}").into());
        values.push(seller.into());
        values.push(placed_at.into());
    }
    let sql = format!(
        "INSERT INTO marketplace_orders (id, order_reference, seller_id, customer_account_id, placed_at, facts, \
         created_at, updated_at) VALUES {}",
        rows.join(", ")
    );
    let sql = if store.is_postgres() {
        sql
    } else {
        sql.replace('$', "?")
    };
    store
        .db()
        .execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_seller_over_the_ecm_threshold_is_flagged_with_the_level_and_source() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let store = db.store().await.unwrap();
        // 100 Mastercard chargebacks in October over 600 September orders: 1,667 bps, ECM (not HECM: < 300).
        for i in 0..100 {
            let seed_of = Seed {
                pid: format!("mc{i}"),
                network: CardNetwork::Mastercard,
                code: "4837",
                minor: 1_000,
                currency: "EUR",
                seller: "seller-c",
                opened: october(1) + Duration::minutes(i),
            };
            seed(&store, seed_of, None).await;
        }
        // Seller d: 99 chargebacks would be under ECM's count; one Visa dispute stays far under VAMP.
        seed(
            &store,
            Seed {
                seller: "seller-d",
                ..visa("v1", 1_000, 5)
            },
            None,
        )
        .await;
        insert_orders(
            &store,
            "seller-c",
            Utc.with_ymd_and_hms(2026, 9, 15, 0, 0, 0).unwrap(),
            600,
        )
        .await;
        insert_orders(&store, "seller-d", october(20), 10).await;

        let answer = app
            .gql(&app.analyst, MONITORING, json!({"filter": {"flaggedOnly": true}}))
            .await;
        let rows = answer.data()["disputeMonitoring"].as_array().unwrap().clone();
        let flagged: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r["program"].clone(),
                    r["sellerId"].clone(),
                    r["flagged"]["level"].clone(),
                    r["disputes"].clone(),
                    r["orders"].clone(),
                )
            })
            .collect();
        // The whole marketplace too: the same 100 chargebacks over the same 600 orders.
        assert_eq!(
            flagged,
            vec![
                (
                    json!("MASTERCARD_ECM"),
                    Value::Null,
                    json!("ECM"),
                    json!(100),
                    json!(600)
                ),
                (
                    json!("MASTERCARD_ECM"),
                    json!("seller-c"),
                    json!("ECM"),
                    json!(100),
                    json!(600)
                ),
            ],
            "{}",
            app.label
        );
        let c = &rows[1];
        assert_eq!(c["month"], "2026-10");
        assert_eq!(c["ordersMonth"], "2026-09");
        assert_eq!(c["ratioPercent"], 16.67, "{}", app.label);
        assert_eq!(c["flagged"]["minimumRatioPercent"], 1.5);
        assert_eq!(c["flagged"]["minimumCount"], 100);
        assert!(
            c["flagged"]["source"].as_str().unwrap().contains("https://"),
            "{}",
            app.label
        );

        // Seller d's Visa dispute: 1 of 10 orders is 10 %, but far under VAMP's count of 1,501: not flagged.
        let all = app
            .gql(&app.analyst, MONITORING, json!({"filter": {"sellerId": "seller-d"}}))
            .await;
        let d = all.data()["disputeMonitoring"].as_array().unwrap().clone();
        assert_eq!(d.len(), 1, "{}: {d:?}", app.label);
        assert_eq!(
            (&d[0]["program"], &d[0]["ratioPercent"], &d[0]["flagged"]),
            (&json!("VISA_VAMP"), &json!(10.0), &Value::Null)
        );

        let (status, body) = csv(&app, Some(&app.lead), "/monitoring.csv?flaggedOnly=true").await;
        assert_eq!(status, 200, "{}", app.label);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 3, "{}: {body}", app.label);
        assert!(
            lines[1].starts_with("mastercard_ecm,,2026-10,100,600,2026-09,16.6700,ecm,1.50,100,"),
            "{}: {body}",
            app.label
        );
        assert!(
            lines[2].starts_with("mastercard_ecm,seller-c,2026-10,100,600,2026-09,16.6700,ecm,1.50,100,"),
            "{}",
            app.label
        );
    }
}

#[tokio::test]
async fn patterns_and_monitoring_need_an_analyst() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        for query in [PATTERNS, MONITORING] {
            let viewer = app.gql(&app.viewer, query, json!({"by": ["SELLER"]})).await;
            assert_eq!(viewer.error_code(), "FORBIDDEN", "{}", app.label);
            let nobody = app.gql_as(None, query, json!({"by": ["SELLER"]})).await;
            assert_eq!(nobody.status, 401, "{}: {}", app.label, nobody.body);
            for token in [&app.analyst, &app.lead, &app.admin] {
                app.gql(token, query, json!({"by": ["SELLER"]})).await.data();
            }
        }
        for path in ["/patterns.csv?groupBy=seller", "/monitoring.csv"] {
            assert_eq!(csv(&app, None, path).await.0, 401, "{}", app.label);
            assert_eq!(csv(&app, Some(&app.viewer), path).await.0, 403, "{}", app.label);
            let (status, body) = csv(&app, Some(&app.analyst), path).await;
            assert_eq!(status, 200, "{}", app.label);
            // Nothing opened yet: the header alone.
            assert_eq!(body.lines().count(), 1, "{}: {body}", app.label);
        }
    }
}
