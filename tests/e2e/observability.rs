//! What analysts and operators see of the machinery: notifications behind a dispute (by role), dead-lettered
//! steps, and Prometheus metrics, all through the running server.

use serde_json::{Value, json};
use verdict_api::webhooks::WebhookSecrets;
use verdict_store::testing::test_databases;

use crate::app::TestApp;

const SECRET: &str = "whsec_e2e_observability";

fn stripe_event(event_id: &str, kind: &str, status: &str, created: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": { "object": {
            "id": "dp_e2e_flag",
            "object": "dispute",
            "amount": 12900,
            "currency": "eur",
            "charge": "ch_e2e_flag",
            "payment_intent": "pi_e2e_flag",
            "reason": "product_not_received",
            "status": status,
            "created": created,
            "evidence_details": { "due_by": created + 14 * 86_400 },
            "payment_method_details": { "card": { "brand": "visa", "network_reason_code": "13.1" } }
        } }
    })
    .to_string()
}

async fn post_stripe(app: &TestApp, body: &str) -> u16 {
    let now = chrono::Utc::now().timestamp();
    let signature = verdict_ingest::sign_stripe(body.as_bytes(), SECRET, now).unwrap();
    let status = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    app.applied().await;
    status
}

#[tokio::test]
async fn flagged_notifications_show_on_the_dispute_and_raw_payloads_only_to_leads() {
    for db in test_databases().await.unwrap() {
        let secrets = WebhookSecrets {
            stripe: vec![SECRET.to_owned()],
            ..Default::default()
        };
        let mut app = TestApp::start_with_webhooks(&db, secrets).await;
        let created = chrono::Utc::now().timestamp() - 3_600;
        let closed_lost = stripe_event("evt_e2e_lost", "charge.dispute.closed", "lost", created);
        assert_eq!(post_stripe(&app, &closed_lost).await, 200, "{}", app.label);
        let won_later = stripe_event("evt_e2e_won", "charge.dispute.closed", "won", created + 60);
        assert_eq!(post_stripe(&app, &won_later).await, 200);
        assert_eq!(post_stripe(&app, &won_later).await, 200, "a redelivery is acknowledged");

        let query = "{ disputes(filter: {processor: STRIPE}) { edges { node { id status version \
            flaggedNotifications { eventId status note payload } } } } }";
        let answer = app.gql(&app.analyst, query, json!({})).await;
        let node = &answer.data()["disputes"]["edges"][0]["node"];
        assert_eq!(node["status"], "LOST", "{}", app.label);
        let flagged = node["flaggedNotifications"].as_array().unwrap();
        assert_eq!(flagged.len(), 1, "{}: {flagged:?}", app.label);
        assert_eq!(flagged[0]["eventId"], "evt_e2e_won");
        assert_eq!(flagged[0]["status"], "FLAGGED");
        assert_eq!(flagged[0]["payload"], Value::Null, "flagged views carry no raw payload");

        let raw = "query($id: ID!) { dispute(id: $id) { rawNotifications { eventId payload } } }";
        let id = node["id"].clone();
        let denied = app.gql(&app.analyst, raw, json!({ "id": id })).await;
        assert_eq!(denied.error_code(), "FORBIDDEN");
        let allowed = app.gql(&app.lead, raw, json!({ "id": id })).await;
        let notifications = allowed.data()["dispute"]["rawNotifications"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(notifications.len(), 2, "the duplicate was stored once");
        assert_eq!(
            notifications[0]["payload"],
            json!(closed_lost),
            "kept exactly as received"
        );
        let metrics = app.get_text("/metrics").await;
        for outcome in ["applied", "flagged", "duplicate"] {
            let series = format!("verdict_notifications_total{{processor=\"stripe\",outcome=\"{outcome}\"}}");
            assert!(metrics.contains(&series), "{series} missing from /metrics");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let mut app = TestApp::start(&db).await;
    crate::app::open_dispute(&app, "dp_metrics").await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    for metric in [
        "verdict_timers{status=\"pending\"}",
        "verdict_timers_due 0",
        "verdict_steps{status=\"pending\"}",
        "verdict_steps{status=\"dead\"}",
        "verdict_http_request_duration_seconds",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
    let pending: f64 = text
        .lines()
        .find(|l| l.starts_with("verdict_timers{status=\"pending\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(
        pending, 5.0,
        "three reminders, the act-by time and the deadline of the one dispute"
    );
    app.stop().await;
}

#[tokio::test]
async fn dead_lettered_steps_are_listed_and_only_leads_retry_or_cancel_them() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = crate::app::open_dispute(&app, "dp_dead_letter").await;
        // A step that ran: the lead assigns the dispute and the assignee's notice goes out.
        crate::app::assign_and_wait_for_the_notice(&app, &id).await;
        let store = db.store().await.unwrap();
        store
            .execute_unprepared(
                "UPDATE steps SET status = 'dead', attempts = max_attempts, last_error = 'mailbox unreachable'",
            )
            .await
            .unwrap();
        let list = "{ deadLetteredSteps { id kind attempts lastError } }";
        let dead = app.gql(&app.analyst, list, json!({})).await;
        let steps = dead.data()["deadLetteredSteps"].as_array().unwrap().clone();
        assert_eq!(steps.len(), 1, "{}: {steps:?}", app.label);
        assert_eq!(steps[0]["kind"], "NOTIFY_ASSIGNEE");
        assert_eq!(steps[0]["lastError"], "mailbox unreachable");
        let retry = "mutation($id: ID!) { retryStep(id: $id) { step { status } userErrors { code message } } }";
        let step_id = steps[0]["id"].clone();
        assert_eq!(
            app.gql(&app.analyst, retry, json!({ "id": step_id }))
                .await
                .error_code(),
            "FORBIDDEN"
        );
        let retried = app.gql(&app.lead, retry, json!({ "id": step_id })).await;
        // Back in the queue: a worker may already have performed it by the time the answer is read.
        let status = retried.data()["retryStep"]["step"]["status"].clone();
        assert!(status == "PENDING" || status == "SUCCEEDED", "{}: {status}", app.label);
        let dead = app.gql(&app.analyst, list, json!({})).await;
        assert_eq!(dead.data()["deadLetteredSteps"], json!([]), "{}", app.label);
        let unknown = app
            .gql(&app.lead, retry, json!({ "id": uuid::Uuid::now_v7().to_string() }))
            .await;
        assert_eq!(unknown.error_code(), "NOT_FOUND");
        app.stop().await;
    }
}

#[tokio::test]
async fn graphiql_loads_nothing_from_another_host_and_its_assets_are_served() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let mut app = TestApp::start(&db).await;
    let page = app.client.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("//"), "the page names another host: {html}");
    assert!(!html.contains("<script>"), "no inline script (the policy forbids it)");
    let assets: Vec<&str> = html.split('"').filter(|s| s.starts_with("/graphiql/assets/")).collect();
    assert_eq!(assets.len(), 6, "{html}");
    for asset in assets {
        let response = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        let body = response.bytes().await.unwrap();
        if asset.ends_with(".js") {
            assert!(kind.starts_with("text/javascript"), "{asset}: {kind}");
        } else {
            assert!(kind.starts_with("text/css"), "{asset}: {kind}");
        }
        assert!(!body.is_empty());
    }
    let graphiql = app.get_text("/graphiql/assets/graphiql-3.8.3.min.js").await;
    assert!(
        graphiql.contains("window.GraphiQL"),
        "the UMD build that defines the global"
    );
    let missing = app
        .client
        .get(app.url("/graphiql/assets/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    app.stop().await;
}

#[tokio::test]
async fn cors_preflights_are_answered_for_configured_origins_only() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let mut app = TestApp::start(&db).await;
    app.stop().await;
    // The same app, served with one allowed origin.
    let engine = verdict::connect(&db.url, std::sync::Arc::new(verdict_engine::SystemClock))
        .await
        .unwrap();
    let origin = "https://disputes.example.com";
    let state =
        verdict_api::AppState::new(engine).with_allowed_origins(vec![axum::http::HeaderValue::from_static(origin)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(verdict::serve_with_sandbox(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let preflight = |from: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", from)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight(origin).await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], origin);
    let allow_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("content-type"));
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let answer = client
        .post(&url)
        .header("Origin", origin)
        .bearer_auth(&app.viewer)
        .json(&json!({"query": "{ me { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["access-control-allow-origin"], origin);
    assert_eq!(answer.json::<Value>().await.unwrap()["data"]["me"]["name"], "victor");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_have_help_lines_and_one_series_of_step_successes() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let mut app = TestApp::start(&db).await;
    let id = crate::app::open_dispute(&app, "dp_metrics_help").await;
    // Submitting (as the deadline policy does) enqueues evidence submission, whose sandbox result comes with a
    // follow-up: recorded on the worker's other path than the assignee notice.
    let engine = verdict::connect(&db.url, std::sync::Arc::new(verdict_engine::SystemClock))
        .await
        .unwrap();
    let dispute_id: verdict_domain::DisputeId = id.parse().unwrap();
    for action in [
        verdict_domain::Action::Triage { queue: None },
        verdict_domain::Action::StartEvidenceGathering,
        verdict_domain::Action::Submit,
    ] {
        let command = verdict_domain::Command::new(verdict_domain::Actor::system("deadline"), action);
        engine.handle(dispute_id, command).await.unwrap();
    }
    // Committed through the server, the assignment wakes its workers (the engine above is another process's
    // view), which then run both steps.
    let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { version } userErrors { code message } } }";
    app.gql(&app.lead, assign, json!({"input": {"id": id, "assignee": "alice"}}))
        .await
        .data();
    let steps_query = "query($id: ID!) { dispute(id: $id) { steps { kind status } } }";
    for attempt in 0.. {
        let answer = app.gql(&app.viewer, steps_query, json!({ "id": id })).await;
        let steps = answer.data()["dispute"]["steps"].as_array().unwrap().clone();
        let status = |kind: &str| steps.iter().find(|s| s["kind"] == kind).map(|s| s["status"].clone());
        let notified = status("NOTIFY_ASSIGNEE") == Some(json!("SUCCEEDED"));
        let submitted = status("SUBMIT_EVIDENCE").is_some_and(|s| s != "PENDING");
        // Without a processor adapter the submission may stay pending (waiting); the notice must not.
        if notified && (submitted || attempt > 100) {
            break;
        }
        assert!(attempt < 200, "steps never ran: {steps:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = app.get_text("/metrics").await;
    for metric in [
        "verdict_timers",
        "verdict_steps",
        "verdict_http_request_duration_seconds",
        "verdict_steps_succeeded_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {metric} ")),
            "no HELP for {metric}:\n{text}"
        );
    }
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("verdict_steps_succeeded_total"))
        .collect();
    assert_eq!(
        series.len(),
        1,
        "one series, so a sum counts each step once: {series:?}"
    );
    let succeeded: f64 = series[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(succeeded >= 1.0, "{series:?}");
    app.stop().await;
}

/// Adyen cannot be asked whether a refund already happened and forgets an idempotency key after about 31 days:
/// a lead's retry of an older Adyen refund needs the lead's confirmation, or it could pay twice.
#[tokio::test]
async fn an_old_adyen_refund_is_retried_only_with_the_leads_confirmation() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let mut input = crate::app::open_input("dp_adyen_retry");
        input["processor"] = json!("ADYEN");
        input["paymentReference"] = json!("8815555555555555");
        let opened = app.gql(&app.analyst, crate::app::OPEN, json!({ "input": input })).await;
        let id = opened.data()["openDispute"]["dispute"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // A step that ran: the lead assigns the dispute and the assignee's notice goes out.
        crate::app::assign_and_wait_for_the_notice(&app, &id).await;
        // A refund that failed for good, enqueued forty days ago.
        let store = db.store().await.unwrap();
        store
            .execute_unprepared(
                "UPDATE steps SET kind = 'refund', status = 'dead', attempts = max_attempts, \
                 last_error = 'adyen: 500', created_at = '2020-01-01T00:00:00+00:00'",
            )
            .await
            .unwrap();
        let step_id = app
            .gql(&app.lead, "{ deadLetteredSteps { id } }", json!({}))
            .await
            .data()["deadLetteredSteps"][0]["id"]
            .clone();
        let retry = "mutation($id: ID!) { retryStep(id: $id) { step { status } userErrors { code message } } }";
        let confirmed = "mutation($id: ID!) { retryStep(id: $id, confirmedNotAtProcessor: true) { step { status } userErrors { code message } } }";
        let refused = app.gql(&app.lead, retry, json!({ "id": step_id })).await;
        assert_eq!(refused.error_code(), "ILLEGAL_TRANSITION", "{}", app.label);
        let dead = app.gql(&app.lead, "{ deadLetteredSteps { id } }", json!({})).await;
        assert_eq!(
            dead.data()["deadLetteredSteps"].as_array().unwrap().len(),
            1,
            "{}: the refused retry changed nothing",
            app.label
        );
        // Accepted once confirmed (the worker may already be running it again, so its status is not fixed).
        let retried = app.gql(&app.lead, confirmed, json!({ "id": step_id })).await;
        assert!(
            retried.data()["retryStep"]["step"]["status"].is_string(),
            "{}",
            app.label
        );
        app.stop().await;
    }
}
