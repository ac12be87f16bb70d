use chrono::{TimeZone, Utc};
use verdict_domain::Processor;
use verdict_facts::{FactsError, MarketplaceFacts, OrderLookup, Recorded, TablesFacts};
use verdict_store::testing::test_databases;

use crate::{another, example};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()
}

async fn each_database(test: impl AsyncFn(TablesFacts, &'static str)) {
    each_database_with(async |facts, _, label| test(facts, label).await).await;
}

async fn each_database_with(test: impl AsyncFn(TablesFacts, sea_orm::DatabaseConnection, &'static str)) {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        test(TablesFacts::new(store.db().clone()), store.db().clone(), db.label).await;
    }
}

fn lookup(order: Option<&str>, payments: &[&str]) -> OrderLookup {
    OrderLookup {
        processor: Processor::Stripe,
        order_reference: order.map(str::to_owned),
        payment_references: payments.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[tokio::test]
async fn an_order_is_found_by_its_number_or_any_payment_reference() {
    each_database(async |facts, label| {
        assert_eq!(
            facts.record(example(), now()).await.unwrap(),
            Recorded::Created,
            "{label}"
        );
        for (order, payments) in [
            (Some("A-17"), vec![]),
            (None, vec!["ch_3Ofacts17"]),
            (None, vec!["unknown", "pi_3Ofacts17"]),
            (Some("not-an-order"), vec!["pi_3Ofacts17"]),
        ] {
            let found = facts.find_order(&lookup(order, &payments)).await.unwrap();
            assert_eq!(
                found.as_ref().map(|f| f.order_reference.as_str()),
                Some("A-17"),
                "{label} {order:?}"
            );
            assert_eq!(found, Some(example()), "{label}: the facts come back whole");
        }
        assert_eq!(
            facts.find_order(&lookup(Some("B-1"), &["ch_other"])).await.unwrap(),
            None,
            "{label}"
        );
        assert_eq!(facts.find_order(&lookup(None, &[])).await.unwrap(), None, "{label}");
    })
    .await;
}

#[tokio::test]
async fn the_order_number_wins_over_a_payment_reference_of_another_order() {
    each_database(async |facts, label| {
        facts.record(another("A-1", &["ch_a1"]), now()).await.unwrap();
        facts.record(another("B-2", &["ch_b2"]), now()).await.unwrap();
        let found = facts
            .find_order(&lookup(Some("B-2"), &["ch_a1"]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.order_reference, "B-2", "{label}");
    })
    .await;
}

#[tokio::test]
async fn recording_again_replaces_the_facts_and_the_references_and_the_same_facts_change_nothing() {
    each_database_with(async |facts, db, label| {
        facts.record(example(), now()).await.unwrap();
        assert_eq!(
            facts.record(example(), now()).await.unwrap(),
            Recorded::Unchanged,
            "{label}"
        );
        let mut changed = example();
        changed.payment_references = vec!["ch_new".into()];
        changed.customer.previous_orders = 4;
        assert_eq!(
            facts.record(changed.clone(), now()).await.unwrap(),
            Recorded::Replaced,
            "{label}"
        );
        assert_eq!(
            facts.find_by_reference("ch_new").await.unwrap(),
            Some(changed),
            "{label}"
        );
        assert_eq!(
            facts.find_by_reference("ch_3Ofacts17").await.unwrap(),
            None,
            "{label}: a reference the order dropped finds nothing"
        );
        let (count,): (i64,) = {
            use sea_orm::{ConnectionTrait, Statement};
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT COUNT(*) AS n FROM marketplace_orders",
                ))
                .await
                .unwrap()
                .unwrap();
            (row.try_get::<i64>("", "n").unwrap(),)
        };
        assert_eq!(count, 1, "{label}: one row per order");
    })
    .await;
}

#[tokio::test]
async fn a_reference_of_another_order_is_refused_and_nothing_is_written() {
    each_database(async |facts, label| {
        facts.record(another("A-1", &["ch_shared"]), now()).await.unwrap();
        let err = facts
            .record(another("B-2", &["ch_b2", "ch_shared"]), now())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FactsError::Conflict(m) if m.contains("ch_shared") && m.contains("A-1")),
            "{label}: {err}"
        );
        assert_eq!(facts.find_by_reference("B-2").await.unwrap(), None, "{label}");
        assert_eq!(facts.find_by_reference("ch_b2").await.unwrap(), None, "{label}");
    })
    .await;
}

#[tokio::test]
async fn invalid_facts_are_refused_with_the_field_named_and_nothing_is_written() {
    each_database(async |facts, label| {
        let mut bad = example();
        bad.customer.email = "not an email".into();
        let err = facts.record(bad, now()).await.unwrap_err();
        assert!(
            matches!(&err, FactsError::Invalid(m) if m.contains("customer.email")),
            "{label}: {err}"
        );
        assert_eq!(facts.find_by_reference("A-17").await.unwrap(), None, "{label}");
    })
    .await;
}

/// Many orders recorded at once (the demo, an import and analysts together): none may fail with "database is
/// locked". On SQLite a transaction that reads before it writes fails so when another connection commits in
/// between, unless it took the write lock at BEGIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_recorded_concurrently_all_land() {
    each_database(async |facts, label| {
        let facts = std::sync::Arc::new(facts);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let facts = facts.clone();
            tasks.spawn(async move {
                let order = format!("A-concurrent-{i}");
                let payment = format!("pi_concurrent_{i}");
                facts.record(another(&order, &[payment.as_str()]), now()).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let recorded = joined.unwrap();
            assert!(matches!(recorded, Ok(Recorded::Created)), "{label}: {recorded:?}");
        }
    })
    .await;
}
