//! The binary itself, as the README tells a new user to run it.

use std::process::Command;

use serde_json::json;

use crate::app::TestApp;

fn verdict(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .env("VERDICT_DATABASE_URL", db_url)
        .env("VERDICT_LOG_LEVEL", "warn")
        .output()
        .unwrap()
}

fn last_line(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn demo_seeds_every_status_and_prints_a_working_admin_token() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let token = last_line(&verdict(&db.url, &["demo"]));
    assert!(token.starts_with("vdk_"), "{token}");
    let again = verdict(&db.url, &["demo"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("Seeded 0 demo disputes (50 already there)"));
    let mut app = TestApp::start_without_keys(&db).await;
    let query = "query($s: [DisputeStatus!]) { disputes(filter: {status: $s}) { totalCount } }";
    let all = app.gql(&token, query, json!({})).await;
    assert_eq!(all.data()["disputes"]["totalCount"], 50);
    for status in [
        "NOTIFIED",
        "TRIAGED",
        "EVIDENCE_GATHERING",
        "SUBMITTED",
        "WON",
        "LOST",
        "ACCEPTED",
        "EXPIRED",
        "WITHDRAWN",
        "RESOLVED",
    ] {
        let answer = app.gql(&token, query, json!({ "s": [status] })).await;
        assert!(
            answer.data()["disputes"]["totalCount"].as_u64().unwrap() > 0,
            "no demo dispute is {status}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn apikey_create_prints_the_token_last_and_stores_only_its_hash() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let token = last_line(&verdict(
        &db.url,
        &["apikey", "create", "--name", "nora", "--role", "analyst"],
    ));
    let bad_role = verdict(&db.url, &["apikey", "create", "--name", "x", "--role", "superuser"]);
    assert!(!bad_role.status.success());
    let duplicate = verdict(&db.url, &["apikey", "create", "--name", "nora", "--role", "viewer"]);
    assert!(!duplicate.status.success());
    let store = db.store().await.unwrap();
    let key = store
        .find_api_key(&verdict_store::hash_token(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((key.name.as_str(), key.role.as_str()), ("nora", "analyst"));
    let file = std::fs::read(db.url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc")).unwrap();
    assert!(
        !String::from_utf8_lossy(&file).contains(&token),
        "the token itself is never stored"
    );
    let mut app = TestApp::start_without_keys(&db).await;
    assert_eq!(
        app.gql(&token, "{ me { name role } }", json!({})).await.data()["me"],
        json!({"name": "nora", "role": "ANALYST"})
    );
    app.stop().await;
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let output = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .arg("schema")
        .output()
        .unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/graphql/schema.graphql")).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), committed);
}
