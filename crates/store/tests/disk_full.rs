//! A full SQLite file: once there is room again, writes work on the same pool, without a restart.
//!
//! `PRAGMA max_page_count` makes the file "full" without root or a small file system: past it a write fails
//! with `SQLITE_FULL` and SQLite rolls the whole transaction back by itself, as on a full disk. Before the fix
//! the connection went back to the pool counted as inside a transaction, and the next failed transaction on
//! it kept SQLite's write lock for good ("database is locked" everywhere until a restart).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use sea_orm::sqlx::{self, Connection as _};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, DisputeId, Locale, Money, NewDispute, Processor,
    ReasonCode, Stage, open, replay,
};
use verdict_store::testing::TestDatabase;
use verdict_store::{DisputeFilter, StorageFault, Store, StoreError};

/// The SQLite pool's size (see `Store::connect_sized`).
const POOL: usize = 4;

async fn open_one(store: &Store, pid: &str) -> Result<(), StoreError> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
    let new = NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: pid.into(),
        // Long enough that a few disputes fill a page.
        payment_reference: format!("pi_{pid}_{}", "x".repeat(200)),
        order_reference: Some("order-9".into()),
        seller_id: Some("seller-a".into()),
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount: Money::new(45_900, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap(),
        reason_code_raw: "13.1".into(),
        stage: Stage::Chargeback,
        due_by: Some(t0 + chrono::Duration::days(10)),
        opened_at: t0,
    };
    let command = Command::new(Actor::analyst("test"), Action::Open(Box::new(new)));
    let decision = open(DisputeId::new_v7(), &command, t0).unwrap();
    let dispute = replay(&decision.events).unwrap();
    store.commit(None, &dispute, &decision).await
}

/// Sets `max_page_count` on every connection of the pool (it is a per-connection setting): `extra` pages
/// beyond the current size, or SQLite's default when `None`. Returns how many connections sqlx still counted
/// as inside a transaction.
async fn limit_pages(store: &Store, extra: Option<i64>) -> usize {
    let pool = store.db().get_sqlite_connection_pool();
    let mut held = Vec::new();
    for _ in 0..POOL {
        held.push(pool.acquire().await.unwrap());
    }
    let mut in_transaction = 0;
    for conn in &mut held {
        in_transaction += usize::from(conn.is_in_transaction());
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        let max = extra.map_or(4_294_967_294, |extra| pages + extra);
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {max}")))
            .execute(&mut **conn)
            .await
            .unwrap();
    }
    in_transaction
}

async fn ballast(store: &Store) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let txn = store.db().begin().await?;
    txn.execute_unprepared("INSERT INTO ballast (data) VALUES (randomblob(20000))")
        .await?;
    txn.commit().await
}

#[tokio::test]
async fn writes_work_again_on_the_same_pool_once_a_full_sqlite_file_has_room() {
    let db = TestDatabase::sqlite().await.unwrap();
    let store = db.store().await.unwrap();
    open_one(&store, "dp_0").await.unwrap();
    assert_eq!(limit_pages(&store, Some(20)).await, 0);

    // Ballast written the way `Store::commit` writes: in a transaction. A row of a table without indexes needs
    // no statement journal, so SQLite answers SQLITE_FULL by rolling the whole transaction back, as it does
    // when a COMMIT cannot write to a full disk.
    store
        .execute_unprepared("CREATE TABLE ballast (data BLOB NOT NULL)")
        .await
        .unwrap();
    let mut failures = 0;
    for _ in 0..4 * POOL {
        if let Err(err) = ballast(&store).await {
            assert!(err.to_string().contains("full"), "{err}");
            failures += 1;
        }
    }
    assert!(failures >= POOL, "the page limit never bit");
    let mut opened = 1;
    for n in 0..POOL {
        match open_one(&store, &format!("dp_full_{n}")).await {
            Ok(()) => opened += 1,
            Err(err) => assert_eq!(err.storage_fault(), Some(StorageFault::Full), "{err}"),
        }
    }

    // Room again. No connection may still count as inside a transaction.
    assert_eq!(
        limit_pages(&store, None).await,
        0,
        "a connection went back to the pool mid-transaction"
    );
    // A failed transaction (a duplicate) must not keep the write lock...
    let duplicate = open_one(&store, "dp_0").await;
    assert!(
        matches!(duplicate, Err(StoreError::DuplicateDispute { .. })),
        "{duplicate:?}"
    );
    // ...so writes on every connection of the pool go through and are durable.
    for n in 0..2 * POOL {
        open_one(&store, &format!("dp_after_{n}")).await.unwrap();
    }
    let fresh = Store::connect(&db.url).await.unwrap();
    let stored = fresh.count(&DisputeFilter::default()).await.unwrap();
    assert_eq!(stored, (opened + 2 * POOL) as u64);
}
