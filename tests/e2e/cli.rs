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

/// The binary with `env` set and no VERDICT_* variable inherited from the test's environment.
fn verdict_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verdict"));
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("VERDICT_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Lines logged at ERROR (text format without colours: the level is its own word).
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("ERROR"))
        .collect()
}

#[tokio::test]
async fn demo_seeds_every_status_and_prints_a_working_admin_token() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let first = verdict_env(
        &["demo"],
        &[("VERDICT_DATABASE_URL", &db.url), ("VERDICT_LOG_LEVEL", "info")],
    );
    let old_token = last_line(&first);
    assert!(old_token.starts_with("vdk_"), "{old_token}");
    let again = verdict_env(
        &["demo"],
        &[("VERDICT_DATABASE_URL", &db.url), ("VERDICT_LOG_LEVEL", "info")],
    );
    let token = last_line(&again);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("Seeded 0 demo disputes (50 already there)"), "{stdout}");
    assert!(stdout.contains("no longer works"), "the rotation is said: {stdout}");
    assert!(
        error_lines(&stderr(&again)).is_empty(),
        "a second demo logs no ERROR:\n{}",
        stderr(&again)
    );
    let store = db.store().await.unwrap();
    let keys = store.list_api_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "one demo admin key, not one per run: {keys:?}");
    assert_eq!((keys[0].name.as_str(), keys[0].role.as_str()), ("demo-admin", "admin"));
    let mut app = TestApp::start_without_keys(&db).await;
    assert_eq!(
        app.gql(&old_token, "{ me { name } }", json!({})).await.status,
        401,
        "the previous demo token was rotated out"
    );
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

#[tokio::test]
async fn apikey_list_shows_keys_without_secrets_and_revoke_refuses_the_next_request() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let nora = last_line(&verdict(
        &db.url,
        &["apikey", "create", "--name", "nora", "--role", "analyst"],
    ));
    let olga = last_line(&verdict(
        &db.url,
        &["apikey", "create", "--name", "olga", "--role", "admin"],
    ));
    let mut app = TestApp::start_without_keys(&db).await;
    assert_eq!(app.gql(&nora, "{ me { name } }", json!({})).await.status, 200);

    let list = verdict(&db.url, &["apikey", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let table = String::from_utf8_lossy(&list.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("ROLE") && lines[0].contains("REVOKED"));
    assert!(lines[1].starts_with("nora ") && lines[1].contains("analyst"), "{table}");
    assert!(lines[2].starts_with("olga ") && lines[2].contains("admin"), "{table}");
    for token in [&nora, &olga] {
        assert!(!table.contains(token.as_str()) && !table.contains(&verdict_store::hash_token(token)));
    }

    // Revoked while the server runs: the very next request with that token is refused.
    let revoke = verdict(&db.url, &["apikey", "revoke", "--name", "nora"]);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    assert!(String::from_utf8_lossy(&revoke.stdout).contains("Revoked API key \"nora\""));
    let refused = app.gql(&nora, "{ me { name } }", json!({})).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "UNAUTHENTICATED");
    assert_eq!(app.gql(&olga, "{ me { name } }", json!({})).await.status, 200);

    let again = verdict(&db.url, &["apikey", "revoke", "--name", "nora"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already revoked"));
    let olga_id = String::from_utf8_lossy(&verdict(&db.url, &["apikey", "list"]).stdout)
        .lines()
        .find(|l| l.starts_with("olga "))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_owned();
    let by_id = verdict(&db.url, &["apikey", "revoke", "--id", &olga_id]);
    assert!(by_id.status.success(), "{}", stderr(&by_id));
    assert_eq!(app.gql(&olga, "{ me { name } }", json!({})).await.status, 401);
    let unknown = verdict(&db.url, &["apikey", "revoke", "--name", "nobody"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("not found"), "{}", stderr(&unknown));
    assert!(
        !verdict(&db.url, &["apikey", "revoke"]).status.success(),
        "a key must be named"
    );

    let table = String::from_utf8_lossy(&verdict(&db.url, &["apikey", "list"]).stdout).into_owned();
    assert!(
        table.lines().skip(1).all(|l| !l.contains(" - ")),
        "both show a revocation time:\n{table}"
    );
    app.stop().await;
}

#[test]
fn an_unknown_log_level_or_format_is_refused_with_what_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db", dir.path().display());
    for (name, value, expected) in [
        ("VERDICT_LOG_LEVEL", "verbose", "unknown log level \"verbose\""),
        (
            "VERDICT_LOG_LEVEL",
            "verdict=loud,info",
            "unknown log level \"verdict=loud\"",
        ),
        ("VERDICT_LOG_FORMAT", "xml", "unknown log format \"xml\""),
    ] {
        let output = verdict_env(&["migrate"], &[("VERDICT_DATABASE_URL", &url), (name, value)]);
        assert!(!output.status.success(), "{name}={value} was accepted");
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
    assert!(
        !dir.path().join("v.db").exists(),
        "refused before touching the database"
    );
    let fine = verdict_env(
        &["migrate"],
        &[
            ("VERDICT_DATABASE_URL", &url),
            ("VERDICT_LOG_LEVEL", "verdict=debug,WARN"),
        ],
    );
    assert!(fine.status.success(), "{}", stderr(&fine));
}

#[test]
fn a_sqlite_url_without_mode_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/fresh.db", dir.path().display());
    let output = verdict_env(&["migrate"], &[("VERDICT_DATABASE_URL", &url)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("fresh.db").exists());
    let missing_dir = format!("sqlite://{}/no/such/dir/v.db", dir.path().display());
    let output = verdict_env(&["migrate"], &[("VERDICT_DATABASE_URL", &missing_dir)]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Check that its directory exists"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_wrong_postgres_address_fails_at_once_naming_it() {
    let started = std::time::Instant::now();
    let output = verdict_env(
        &["apikey", "list"],
        &[("VERDICT_DATABASE_URL", "postgres://verdict:secret@127.0.0.1:1/verdict")],
    );
    let log = stderr(&output);
    assert!(!output.status.success());
    assert!(
        // The old code waited for its 10 s pool timeout; the probe gives up after at most 5 s.
        started.elapsed() < std::time::Duration::from_secs(9),
        "took {:?}",
        started.elapsed()
    );
    assert!(log.contains("127.0.0.1:1 (database verdict, user verdict)"), "{log}");
    assert!(log.contains("Check that the server is running"), "{log}");
    assert!(!log.contains("pool timed out") && !log.contains("secret"), "{log}");
}

#[test]
fn bench_refuses_the_configured_database_unless_named_or_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_verdict"));
    for (name, _) in std::env::vars() {
        if name.starts_with("VERDICT_") {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["bench", "--only", "queue", "--disputes", "10"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = stderr(&output);
    assert!(log.contains("--database-url") && log.contains("--yes"), "{log}");
    assert!(
        log.contains("SQLite file verdict.db"),
        "names what it would have filled: {log}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was written next to it"
    );
}

/// A served binary, its address and its log so far.
struct Served {
    child: std::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Served {
    /// Kills the server and returns everything it logged: the reader ends at the pipe's end, so no line is
    /// still in flight when the log is read.
    fn stop(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        self.log.lock().unwrap().clone()
    }
}

fn serve(db_url: &str, level: &str) -> Served {
    use std::io::BufRead as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_verdict"));
    for (name, _) in std::env::vars() {
        if name.starts_with("VERDICT_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("serve")
        .env("VERDICT_DATABASE_URL", db_url)
        .env("VERDICT_LISTEN", "127.0.0.1:0")
        .env("VERDICT_LOG_LEVEL", level)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = addr_tx.send(addr.split_whitespace().next().unwrap_or_default().to_owned());
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = addr_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the server did not start:\n{}", log.lock().unwrap()));
    Served {
        child,
        addr,
        log,
        reader,
    }
}

#[tokio::test]
async fn client_mistakes_are_not_logged_as_errors_and_the_start_up_line_is_readable() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let token = last_line(&verdict(
        &db.url,
        &["apikey", "create", "--name", "ana", "--role", "lead"],
    ));
    let served = serve(&db.url, "debug");
    let client = reqwest::Client::new();
    let gql = |query: &str, variables: serde_json::Value| {
        client
            .post(format!("http://{}/graphql", served.addr))
            .bearer_auth(&token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
    };
    let opened: serde_json::Value = gql(crate::app::OPEN, json!({"input": crate::app::open_input("dp_log")}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = opened["data"]["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut codes = Vec::new();
    for (query, variables) in [
        (crate::app::OPEN, json!({"input": crate::app::open_input("dp_log")})),
        (
            crate::app::TRANSITION,
            json!({"input": {"id": id, "to": "SUBMITTED", "reason": "sure", "expectedVersion": 1}}),
        ),
        (
            crate::app::TRANSITION,
            json!({"input": {"id": id, "to": "TRIAGED", "reason": " ", "expectedVersion": 1}}),
        ),
        (
            crate::app::TRANSITION,
            json!({"input": {"id": id, "to": "TRIAGED", "reason": "look", "expectedVersion": 7}}),
        ),
        (
            crate::app::TRANSITION,
            json!({"input": {"id": uuid::Uuid::now_v7().to_string(), "to": "TRIAGED", "reason": "x", "expectedVersion": 1}}),
        ),
    ] {
        let answer: serde_json::Value = gql(query, variables).await.unwrap().json().await.unwrap();
        // Refusals a screen handles are user errors in the payload; the others GraphQL errors.
        let payload = answer["data"].as_object().and_then(|d| d.values().next()).cloned();
        let refusal = payload.and_then(|p| p["userErrors"][0]["code"].as_str().map(str::to_owned));
        codes.push(
            answer["errors"][0]["extensions"]["code"]
                .as_str()
                .map(str::to_owned)
                .or(refusal)
                .unwrap_or_else(|| "none".to_owned()),
        );
    }
    assert_eq!(
        codes,
        [
            "ALREADY_EXISTS",
            "ILLEGAL_TRANSITION",
            "INVALID_INPUT",
            "VERSION_CONFLICT",
            "NOT_FOUND"
        ]
    );
    let log = served.stop();
    assert!(error_lines(&log).is_empty(), "client mistakes logged as errors:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("DEBUG") && l.contains("already exists")),
        "still visible at debug:\n{log}"
    );
    assert!(
        log.contains(
            "webhooks accepted from none; not configured (answer 503): stripe, adyen, braintree, paypal, alerts"
        ),
        "{log}"
    );
    assert!(!log.contains("WebhookSecrets {") && !log.contains("Some("), "{log}");
}
