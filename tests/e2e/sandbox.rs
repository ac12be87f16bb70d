//! The sandbox processor invents outcomes, so the binary's `serve` refuses a configuration that turns it on
//! (issue 7, item 6); `demo` turns it on by itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn serve_refuses_to_start_with_the_sandbox_on() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("verdict.toml");
    std::fs::write(&config, "sandbox = true\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_verdict"));
    for (name, _) in std::env::vars() {
        if name.starts_with("VERDICT_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .current_dir(dir.path())
        .env("VERDICT_DATABASE_URL", &db.url)
        .env("VERDICT_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with the sandbox on: it would invent refunds and outcomes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("sandbox = true is for `verdict demo`"), "{stderr}");
}

/// A lead's `cancelStep` of a step a worker is performing is refused and changes nothing: the step may be
/// completing at the processor, and its holder records what really happened (issue 7, item 8).
#[tokio::test]
async fn cancelling_a_running_step_is_refused_over_graphql() {
    use sea_orm::{ConnectionTrait, Statement};
    use serde_json::json;
    use verdict_engine::Clock;

    for db in verdict_store::testing::test_databases().await.unwrap() {
        let mut app = crate::app::TestApp::start(&db).await;
        let id = crate::app::open_dispute(&app, "dp_cancel_running").await;
        // A step that ran: the lead assigns the dispute and the assignee's notice goes out.
        crate::app::assign_and_wait_for_the_notice(&app, &id).await;
        // Put the step back in the state of one another replica is performing right now.
        let store = db.store().await.unwrap();
        let until = verdict_engine::SystemClock.now() + chrono::Duration::hours(1);
        let backend = store.db().get_database_backend();
        let sql = if backend == sea_orm::DatabaseBackend::Postgres {
            "UPDATE steps SET status = 'pending', locked_by = 'replica-b', locked_until = $1, lease_token = $2"
        } else {
            "UPDATE steps SET status = 'pending', locked_by = 'replica-b', locked_until = ?, lease_token = ?"
        };
        store
            .db()
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![until.into(), uuid::Uuid::now_v7().into()],
            ))
            .await
            .unwrap();
        let step_id = store
            .steps(verdict_domain::DisputeId::from_uuid(id.parse().unwrap()))
            .await
            .unwrap()
            .remove(0)
            .id;
        let cancel = "mutation($id: ID!) { cancelStep(id: $id) { step { status } userErrors { code message } } }";
        let refused = app.gql(&app.lead, cancel, json!({ "id": step_id.to_string() })).await;
        assert_eq!(
            refused.error_code(),
            "ILLEGAL_TRANSITION",
            "{}: {}",
            app.label,
            refused.body
        );
        assert!(refused.body.to_string().contains("running"), "{}", refused.body);
        let row = store.step_row(step_id).await.unwrap().unwrap();
        assert_eq!(row.status, "pending", "{}: reported cancelled while it runs", app.label);
        app.stop().await;
    }
}
