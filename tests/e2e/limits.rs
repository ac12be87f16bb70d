//! `/graphql` under abuse: unauthenticated and oversized bodies, amplified queries, slow and huge answers,
//! NUL characters, and a burst of reads that must not take the connection pool from webhooks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use verdict_api::auth::{Role, create_api_key};
use verdict_api::webhooks::{WebhookSecrets, Webhooks};
use verdict_api::{AppState, GraphqlLimits};
use verdict_engine::SystemClock;
use verdict_store::testing::{TestDatabase, test_databases};

use crate::app::{Answer, OPEN, open_input};

const SECRET: &str = "whsec_e2e_limits";

/// The real server with the given GraphQL limits; its state is kept to look at the read gate.
struct App {
    addr: SocketAddr,
    label: &'static str,
    client: reqwest::Client,
    analyst: String,
    viewer: String,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl App {
    async fn start(db: &TestDatabase, limits: GraphqlLimits) -> App {
        verdict::install_crypto_provider();
        let engine = verdict::connect(&db.url, Arc::new(SystemClock)).await.unwrap();
        let now = engine.clock().now();
        let analyst = create_api_key(engine.store(), "alice", Role::Analyst, now)
            .await
            .map_err(|e| e.message())
            .unwrap();
        let viewer = create_api_key(engine.store(), "victor", Role::Viewer, now)
            .await
            .map_err(|e| e.message())
            .unwrap();
        let webhooks = Webhooks {
            secrets: Arc::new(WebhookSecrets {
                stripe: vec![SECRET.to_owned()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let state = AppState::new(engine)
            .with_webhooks(webhooks)
            .with_graphql_limits(limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(verdict::serve_with_sandbox(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        App {
            addr,
            label: db.label,
            client: reqwest::Client::new(),
            analyst,
            viewer,
            state,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn gql(&self, token: &str, query: &str, variables: Value) -> Answer {
        let response = self
            .client
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap();
        Answer { status, body }
    }

    async fn open(&self, processor_dispute_id: &str) -> String {
        let answer = self
            .gql(
                &self.analyst,
                OPEN,
                json!({ "input": open_input(processor_dispute_id) }),
            )
            .await;
        answer.data()["openDispute"]["dispute"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Writes `head` and `body` on a fresh connection and returns the status line of the answer, which must
    /// come within five seconds (the rest of the body is never sent).
    async fn raw_status(&self, head: &str, body: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut answer = vec![0_u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .expect("answered without waiting for the rest of the body")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        text.lines().next().unwrap_or_default().to_owned()
    }
}

fn post_head(token: Option<&str>, length: &str) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("POST /graphql HTTP/1.1\r\nHost: verdict\r\nContent-Type: application/json\r\n{auth}{length}\r\n\r\n")
}

#[tokio::test]
async fn bodies_are_refused_before_they_are_read_unauthenticated_401_oversized_413() {
    let db = TestDatabase::sqlite().await.unwrap();
    let limits = GraphqlLimits {
        body_limit_bytes: 64 * 1024,
        ..GraphqlLimits::default()
    };
    let mut app = App::start(&db, limits).await;
    let thirty_mib = format!("Content-Length: {}", 30 * 1024 * 1024);

    // 30 MiB announced, a few bytes sent: the answer comes at once, so the body was never waited for.
    let status = app.raw_status(&post_head(None, &thirty_mib), b"{\"query\":").await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    let status = app
        .raw_status(&post_head(Some("vdk_unknown"), &thirty_mib), b"{\"query\":")
        .await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");

    // Authenticated: an announced length over the limit is 413 unread.
    let status = app
        .raw_status(&post_head(Some(&app.viewer), &thirty_mib), b"{\"query\":")
        .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Without a length (chunked), reading stops at the limit.
    let chunk = vec![b' '; 100 * 1024];
    let mut body = format!("{:x}\r\n", chunk.len()).into_bytes();
    body.extend_from_slice(&chunk);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let status = app
        .raw_status(&post_head(Some(&app.viewer), "Transfer-Encoding: chunked"), &body)
        .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Within the limit, the same request works.
    let answer = app.gql(&app.viewer, "{ me { name role } }", json!({})).await;
    assert_eq!(answer.data()["me"]["role"], "VIEWER");
    app.stop().await;
}

const NESTED: &str = "events { type actor at details } timers { kind dueAt status } steps { kind status } \
    messages { subject body } flaggedNotifications { eventId note }";

#[tokio::test]
async fn the_amplified_query_is_refused_with_its_code_and_a_page_with_history_is_not() {
    let db = TestDatabase::sqlite().await.unwrap();
    let mut app = App::start(&db, GraphqlLimits::default()).await;
    app.open("dp_limits_amplified").await;

    // The query of the report: 40 aliases of disputes(first: 500), five nested lists each.
    let one = format!("disputes(first: 500) {{ edges {{ node {{ id {NESTED} }} }} }}");
    let aliases: Vec<String> = (0..40).map(|i| format!("a{i}: {one}")).collect();
    let amplified = format!("{{ {} }}", aliases.join(" "));
    let before = app.state.graphql_reads.reads();
    let refused = app.gql(&app.viewer, &amplified, json!({})).await;
    assert_eq!(refused.error_code(), "QUERY_TOO_COMPLEX", "{}", refused.body);
    assert_eq!(refused.body["data"], Value::Null);
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("25000"), "the message names the limit: {message}");
    assert_eq!(
        app.state.graphql_reads.reads(),
        before + 1,
        "nothing but the key was read"
    );

    // One alias with a page of 500 and its history is still too much; a page of 50 with it is fine.
    let single = app.gql(&app.viewer, &format!("{{ {one} }}"), json!({})).await;
    assert_eq!(single.error_code(), "QUERY_TOO_COMPLEX");
    let page = format!("{{ disputes(first: 50) {{ totalCount edges {{ node {{ id {NESTED} }} }} }} }}");
    let answer = app.gql(&app.viewer, &page, json!({})).await;
    assert_eq!(answer.data()["disputes"]["totalCount"], 1);

    // The limit applies to variables too.
    let by_variable = format!("query($n: Int!) {{ disputes(first: $n) {{ edges {{ node {{ id {NESTED} }} }} }} }}");
    let by_variable = by_variable.as_str();
    let refused = app.gql(&app.viewer, by_variable, json!({ "n": 500 })).await;
    assert_eq!(refused.error_code(), "QUERY_TOO_COMPLEX");
    let allowed = app.gql(&app.viewer, by_variable, json!({ "n": 20 })).await;
    assert_eq!(allowed.data()["disputes"]["edges"].as_array().unwrap().len(), 1);

    app.stop().await;
}

#[tokio::test]
async fn nested_lists_of_a_page_are_read_once_per_list_not_once_per_dispute() {
    for db in test_databases().await.unwrap() {
        let mut app = App::start(&db, GraphqlLimits::default()).await;
        let query = format!("{{ disputes(first: 50) {{ edges {{ node {{ id {NESTED} }} }} }} }}");
        app.open("dp_limits_batch_0").await;
        let before = app.state.graphql_reads.reads();
        app.gql(&app.viewer, &query, json!({})).await.data();
        let one_dispute = app.state.graphql_reads.reads() - before;

        for i in 1..6 {
            app.open(&format!("dp_limits_batch_{i}")).await;
        }
        let before = app.state.graphql_reads.reads();
        let answer = app.gql(&app.viewer, &query, json!({})).await;
        let six_disputes = app.state.graphql_reads.reads() - before;
        // The key, the page, and one read per nested list, however many disputes the page holds.
        assert_eq!(one_dispute, 7, "{}", app.label);
        assert_eq!(six_disputes, one_dispute, "{}", app.label);

        // Each dispute got its own rows.
        let store = app.state.engine.store();
        let edges = answer.data()["disputes"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 6);
        for edge in edges {
            let node = &edge["node"];
            let id: verdict_domain::DisputeId = node["id"].as_str().unwrap().parse().unwrap();
            let events = store.events(id).await.unwrap();
            let shown: Vec<&str> = node["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap())
                .collect();
            let stored: Vec<String> = events.iter().map(|e| e.kind.to_uppercase()).collect();
            assert_eq!(shown, stored, "{}", app.label);
            let timers = store.timers(id).await.unwrap();
            assert_eq!(node["timers"].as_array().unwrap().len(), timers.len());
            let steps = store.steps(id).await.unwrap();
            assert_eq!(node["steps"].as_array().unwrap().len(), steps.len());
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_request_that_cannot_finish_in_time_gets_timeout_and_a_huge_answer_is_refused() {
    let db = TestDatabase::sqlite().await.unwrap();
    let limits = GraphqlLimits {
        timeout_secs: 1,
        max_response_bytes: 2_000,
        ..GraphqlLimits::default()
    };
    let mut app = App::start(&db, limits).await;
    for i in 0..10 {
        app.open(&format!("dp_limits_size_{i}")).await;
    }

    // Every read permit is taken: the request cannot read, and is told so when its time is up.
    let held = app.state.graphql_reads.hold_all().await.unwrap();
    let started = std::time::Instant::now();
    let answer = app.gql(&app.viewer, "{ me { name } }", json!({})).await;
    assert_eq!(answer.error_code(), "TIMEOUT", "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(held);
    assert_eq!(
        app.gql(&app.viewer, "{ me { name } }", json!({})).await.data()["me"]["name"],
        "victor"
    );

    // Ten disputes with their history are more than 2 000 bytes.
    let query = "{ disputes { edges { node { id processorDisputeId events { type actor at details } } } } }";
    let answer = app.gql(&app.viewer, query, json!({})).await;
    assert_eq!(answer.error_code(), "RESPONSE_TOO_LARGE", "{}", answer.body);
    let small = app
        .gql(
            &app.viewer,
            "{ disputes(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(small.data()["disputes"]["edges"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn nul_in_any_string_input_is_invalid_input_and_stores_nothing() {
    for db in test_databases().await.unwrap() {
        let mut app = App::start(&db, GraphqlLimits::default()).await;

        // In a variable.
        let mut input = open_input("dp_nul\u{0}_variable");
        let answer = app.gql(&app.analyst, OPEN, json!({ "input": input.clone() })).await;
        assert_eq!(answer.error_code(), "INVALID_INPUT", "{}: {}", app.label, answer.body);
        input["processorDisputeId"] = json!("dp_nul_customer");
        input["customer"]["name"] = json!("Jeanne\u{0}Dupont");
        let answer = app.gql(&app.analyst, OPEN, json!({ "input": input })).await;
        assert_eq!(answer.error_code(), "INVALID_INPUT", "{}: {}", app.label, answer.body);

        // In a literal of the query (GraphQL's \u0000 escape).
        let literal = r#"mutation { openDispute(input: { processor: STRIPE, processorDisputeId: "dp_nul\u0000_literal",
            paymentReference: "pi_nul", amount: { minorUnits: 100, currency: "EUR" }, network: VISA,
            reasonCode: "10.4" }) { dispute { id } userErrors { code message } } }"#;
        let answer = app.gql(&app.analyst, literal, json!({})).await;
        assert_eq!(answer.error_code(), "INVALID_INPUT", "{}: {}", app.label, answer.body);

        // In a filter of a read.
        let read = "query($s: String) { disputes(filter: { sellerId: $s }) { totalCount } }";
        let answer = app.gql(&app.viewer, read, json!({ "s": "seller\u{0}" })).await;
        assert_eq!(answer.error_code(), "INVALID_INPUT", "{}: {}", app.label, answer.body);

        // Nothing was stored; a backslash-u text that is not a NUL is fine.
        let count = app.gql(&app.viewer, "{ disputes { totalCount } }", json!({})).await;
        assert_eq!(count.data()["disputes"]["totalCount"], 0, "{}", app.label);
        app.open("dp_not_nul_\\u0000").await;
        app.stop().await;
    }
}

fn stripe_dispute_created(dispute_id: &str) -> String {
    let created = chrono::Utc::now().timestamp() - 60;
    json!({
        "id": format!("evt_{dispute_id}"),
        "object": "event",
        "type": "charge.dispute.created",
        "created": created,
        "data": { "object": {
            "id": dispute_id,
            "object": "dispute",
            "amount": 12900,
            "currency": "eur",
            "charge": "ch_limits",
            "payment_intent": "pi_limits",
            "reason": "fraudulent",
            "status": "needs_response",
            "created": created,
            "evidence_details": { "due_by": created + 14 * 86_400 },
            "payment_method_details": { "card": { "brand": "visa", "network_reason_code": "10.4" } }
        } }
    })
    .to_string()
}

/// While GraphQL reads cannot finish, more GraphQL requests than the pool has connections are in flight;
/// a signed webhook is still stored and applied at once, because GraphQL holds at most its share.
///
/// PostgreSQL: the test locks `api_keys`, so each GraphQL request blocks in its first read (the key) while
/// holding a connection. Without the gate, 40 requests hold all 32 connections and the webhook waits for
/// the pool until it fails; with it, exactly the gate's limit of connections is held (observed, not timed)
/// and the webhook is answered 200. SQLite cannot block a reader that way: there the test takes the gate's
/// permits itself and shows that waiting GraphQL requests hold nothing a webhook needs.
#[tokio::test]
async fn a_burst_of_graphql_reads_cannot_starve_a_webhook() {
    for db in test_databases().await.unwrap() {
        let mut app = App::start(&db, GraphqlLimits::default()).await;
        let gate = app.state.graphql_reads.clone();
        let blocker = verdict_store::Store::connect(&db.url).await.unwrap();
        let lock = if blocker.is_postgres() {
            let tx = blocker.db().begin().await.unwrap();
            tx.execute_unprepared("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            Some(tx)
        } else {
            None
        };
        let held = if lock.is_none() {
            Some(gate.hold_all().await.unwrap())
        } else {
            None
        };
        let pool = app.state.engine.store().max_connections() as usize;
        let burst: Vec<_> = (0..pool + 8)
            .map(|_| {
                let client = app.client.clone();
                let url = app.url("/graphql");
                let token = app.viewer.clone();
                tokio::spawn(async move {
                    client
                        .post(url)
                        .bearer_auth(token)
                        .json(&json!({ "query": "{ disputes { totalCount } }" }))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
            .collect();
        // Every permit is taken (by blocked GraphQL reads, or by the test) before the webhook is sent.
        tokio::time::timeout(Duration::from_secs(10), async {
            while gate.in_use() < gate.limit() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the GraphQL burst takes every read permit");
        assert!(
            gate.limit() < pool,
            "{}: GraphQL gets a share of the pool, not all of it",
            app.label
        );

        let body = stripe_dispute_created("dp_limits_burst");
        let signature = verdict_ingest::sign_stripe(body.as_bytes(), SECRET, chrono::Utc::now().timestamp()).unwrap();
        let webhook = tokio::time::timeout(
            Duration::from_secs(5),
            app.client
                .post(app.url("/webhooks/stripe"))
                .header("Stripe-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body)
                .send(),
        )
        .await
        .expect("the webhook is answered while GraphQL is blocked")
        .unwrap();
        assert_eq!(webhook.status().as_u16(), 200, "{}", app.label);
        assert_eq!(gate.in_use(), gate.limit(), "{}: GraphQL is still blocked", app.label);
        // Answered once stored; applying it follows the answer.
        tokio::time::timeout(Duration::from_secs(10), app.state.engine.finish_applying_after_answer())
            .await
            .expect("the webhook is applied while GraphQL is blocked");
        let stored = app
            .state
            .engine
            .store()
            .find_by_processor_id(verdict_domain::Processor::Stripe, "dp_limits_burst")
            .await
            .unwrap();
        assert!(stored.is_some(), "{}: the dispute arrived", app.label);

        if let Some(tx) = lock {
            tx.rollback().await.unwrap();
        }
        drop(held);
        for request in burst {
            assert_eq!(request.await.unwrap().unwrap(), 200, "{}", app.label);
        }
        app.stop().await;
    }
}
