//! A SQLite file that was read-only for a while: once it is writable again, writes work on the same pool,
//! without a restart.
//!
//! SQLite opens a file it may not write read-only, silently, and such a connection stays read-only. Before
//! the fix the pool kept the connections it had opened during the episode, and every write that drew one
//! failed with "attempt to write a readonly database" until the process restarted (found by `verdict-harness
//! --sqlite db-faults`, which makes the file immutable with `chattr +i`). Here the file is made unwritable
//! with `chmod 444` when the tests do not run as root, and with `chattr +i` when they do (root ignores
//! permissions; `chattr` needs ext4 or a similar file system). Where neither can make the file unwritable the
//! test says so and stops; the same mechanism is checked without either by the unit tests of
//! `crates/store/src/sqlite_pool.rs`, which open connections read-only as SQLite does here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use sea_orm::sqlx;
use verdict_domain::{
    Action, Actor, CardNetwork, Command as DomainCommand, Currency, Customer, DisputeId, Locale, Money, NewDispute,
    Processor, ReasonCode, Stage, open, replay,
};
use verdict_store::testing::TestDatabase;
use verdict_store::{Store, StoreError};

/// The SQLite pool's size (see `Store::connect_sized`).
const POOL: usize = 4;

async fn open_one(store: &Store, pid: &str) -> Result<(), StoreError> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
    let new = NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: pid.into(),
        payment_reference: format!("pi_{pid}"),
        order_reference: None,
        seller_id: None,
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount: Money::new(1_200, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap(),
        reason_code_raw: "13.1".into(),
        stage: Stage::Chargeback,
        due_by: Some(t0 + chrono::Duration::days(10)),
        opened_at: t0,
    };
    let command = DomainCommand::new(Actor::analyst("test"), Action::Open(Box::new(new)));
    let decision = open(DisputeId::new_v7(), &command, t0).unwrap();
    let dispute = replay(&decision.events).unwrap();
    store.commit(None, &dispute, &decision).await
}

/// The database file and its WAL.
fn files(url: &str) -> Vec<PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    vec![PathBuf::from(&path), PathBuf::from(format!("{path}-wal"))]
}

fn can_open_for_writing(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

/// Makes the files unwritable; false if this process cannot.
fn lock(files: &[PathBuf]) -> bool {
    for file in files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    if !can_open_for_writing(&files[0]) {
        return true;
    }
    // Root: permissions do not bind it, an immutable file does.
    for file in files {
        let done = Command::new("chattr").arg("+i").arg(file).status();
        if !done.is_ok_and(|s| s.success()) {
            unlock(files);
            return false;
        }
    }
    true
}

fn unlock(files: &[PathBuf]) {
    for file in files {
        let _ = Command::new("chattr").arg("-i").arg(file).status();
        let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644));
    }
}

/// Makes the files writable again even if the test fails, so that its folder can be deleted.
struct Unlock(Vec<PathBuf>);

impl Drop for Unlock {
    fn drop(&mut self) {
        unlock(&self.0);
    }
}

#[tokio::test]
async fn writes_work_again_on_the_same_pool_once_a_read_only_sqlite_file_is_writable() {
    let db = TestDatabase::sqlite().await.unwrap();
    let store = db.store().await.unwrap();
    open_one(&store, "dp_before").await.unwrap();
    let files = files(&db.url);
    if !lock(&files) {
        eprintln!(
            "skipped: neither chmod nor chattr +i makes {} unwritable here",
            files[0].display()
        );
        return;
    }
    let guard = Unlock(files);

    // While the file is read-only the pool opens new connections: close the ones it has (opened writable)
    // so that it must.
    let pool = store.db().get_sqlite_connection_pool();
    let mut open = Vec::new();
    for _ in 0..POOL {
        open.push(pool.acquire().await.unwrap());
    }
    for conn in open {
        conn.close().await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..POOL {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &mut held {
        let err = sqlx::query("DELETE FROM readiness_probe WHERE 0")
            .execute(&mut **conn)
            .await
            .expect_err("a connection opened while the file is read-only wrote");
        let code = err.as_database_error().and_then(|e| e.code()).unwrap_or_default();
        assert_eq!(code.parse::<i32>().unwrap() & 0xff, 8, "not SQLITE_READONLY: {err}");
    }
    drop(held);
    let during = open_one(&store, "dp_during").await;
    assert_eq!(
        during.as_ref().err().and_then(StoreError::storage_fault),
        Some(verdict_store::StorageFault::ReadOnly),
        "{during:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    drop(guard);
    // Every connection of the pool is drawn several times.
    for n in 0..3 * POOL {
        open_one(&store, &format!("dp_after_{n}")).await.unwrap();
    }
    store
        .probe_write("test", std::time::Duration::from_secs(2))
        .await
        .unwrap();
}
