//! `/readyz` answers 200 only when the database takes a write, within bounded time, and says why not.

use std::time::Duration;

use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use serde_json::Value;

use crate::app::{TestApp, test_databases};

async fn ready(app: &TestApp) -> (u16, Value) {
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn readiness_needs_a_write_and_says_why_not() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        assert_eq!(ready(&app).await.0, 200, "{}", db.label);

        // Another writer holds the lock the probe needs (SQLite: the write lock; PostgreSQL: the table).
        let holder = verdict_store::Store::connect(&db.url).await.unwrap();
        let txn = holder.db().begin().await.unwrap();
        let lock = if db.label == "postgres" {
            "LOCK TABLE readiness_probe IN EXCLUSIVE MODE"
        } else {
            "DELETE FROM readiness_probe WHERE replica = 'none'"
        };
        txn.execute_unprepared(lock).await.unwrap();
        // At once: the 200 of a moment ago is not given again (an answer kept for a second said 200 for that
        // second after the database stopped answering).
        let started = std::time::Instant::now();
        let (status, body) = ready(&app).await;
        assert_eq!(status, 503, "{}: {body}", db.label);
        assert_eq!(body["status"], "database cannot write", "{}", db.label);
        assert_eq!(body["reason"], "the database did not answer in time", "{}", db.label);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}: the probe is bounded",
            db.label
        );

        txn.rollback().await.unwrap();
        // Nor is the 503: the next probe writes again.
        assert_eq!(ready(&app).await.0, 200, "{}: ready again without a restart", db.label);
        app.stop().await;
    }
}
