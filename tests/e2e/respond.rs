//! Responding for real, end to end: a signed notification opens a dispute, the analyst's actions
//! (`submitDefense`, `refund`, `resolveWithRefund`, messages) commit their steps, and the workers reach the
//! processor's API, here a local mock configured as the real adapter's base URL (never the sandbox).

use std::time::Duration;

use serde_json::{Value, json};
use verdict_api::graphql::RefundLimits;
use verdict_api::webhooks::WebhookSecrets;
use verdict_engine::effects::EffectsConfig;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::app::{Answer, TestApp, due_in_days, test_databases};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/processors/");
const STRIPE_WEBHOOK_SECRET: &str = "whsec_e2e_respond";
const STRIPE_API_KEY: &str = "sk_test_e2e_respond";

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{file}")).unwrap_or_else(|e| panic!("fixture {file}: {e}"))
}

const DISPUTE: &str = "id processorDisputeId status stage version \
    customer { name email locale } events { version type actor reason details } \
    steps { kind status idempotencyKey lastError } messages { channel recipient subject body }";

async fn dispute(app: &TestApp, id: &str) -> Value {
    let query = format!("query($id: ID!) {{ dispute(id: $id) {{ {DISPUTE} }} }}");
    app.gql(&app.lead, &query, json!({ "id": id })).await.data()["dispute"].clone()
}

/// The Verdict id of the dispute the processor knows as `processor_dispute_id`.
async fn dispute_id_of(app: &TestApp, processor_dispute_id: &str) -> String {
    let query = "{ disputes(first: 100) { edges { node { id processorDisputeId } } } }";
    let answer = app.gql(&app.lead, query, json!({})).await;
    answer.data()["disputes"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["processorDisputeId"] == processor_dispute_id)
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{}: no dispute {processor_dispute_id}", app.label))
}

/// Polls the dispute until `done` holds (the workers run in the background), at most ten seconds.
async fn wait_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let current = dispute(app, id).await;
        if done(&current) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}: {what} never happened: {}", app.label, dispute(app, id).await);
}

fn step<'a>(dispute: &'a Value, kind: &str) -> Option<&'a Value> {
    dispute["steps"].as_array().unwrap().iter().find(|s| s["kind"] == kind)
}

fn event_types(dispute: &Value) -> Vec<String> {
    dispute["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn stripe_secrets() -> WebhookSecrets {
    WebhookSecrets {
        stripe: vec![STRIPE_WEBHOOK_SECRET.into()],
        ..WebhookSecrets::default()
    }
}

fn stripe_effects(mock: &MockServer) -> EffectsConfig {
    let mut effects = EffectsConfig::default();
    effects.processors.stripe_api_key = Some(STRIPE_API_KEY.into());
    effects.processors.stripe_base_url = mock.uri();
    effects
}

/// A Stripe event built from the published `charge.dispute.*` fixture with this test's ids, reason, amount
/// and due date.
fn stripe_event(kind: &str, event_id: &str, dispute_id: &str, status: &str, reason: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&fixture(
        "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.funds_withdrawn.json",
    ))
    .unwrap();
    let now = chrono::Utc::now();
    event["id"] = json!(event_id);
    event["type"] = json!(kind);
    event["created"] = json!(now.timestamp());
    let object = &mut event["data"]["object"];
    object["id"] = json!(dispute_id);
    object["charge"] = json!("ch_e2e_respond");
    object["payment_intent"] = json!("pi_e2e_respond");
    object["amount"] = json!(45_900);
    object["currency"] = json!("eur");
    object["status"] = json!(status);
    object["reason"] = json!(reason);
    object["created"] = json!(now.timestamp());
    object["metadata"] = json!({ "order_id": "ORD-E2E-1" });
    object["evidence_details"]["due_by"] = json!((now + chrono::Duration::days(20)).timestamp());
    serde_json::to_vec(&event).unwrap()
}

async fn post_stripe(app: &TestApp, body: Vec<u8>) {
    let signature = verdict_ingest::sign_stripe(&body, STRIPE_WEBHOOK_SECRET, chrono::Utc::now().timestamp()).unwrap();
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}: {}", app.label, response.status());
    app.applied().await;
}

const SUBMIT: &str = "mutation($input: SubmitDefenseInput!) { submitDefense(input: $input) { \
    dispute { id status version } steps { kind status idempotencyKey } userErrors { code message } } }";
const REFUND: &str = "mutation($input: RefundInput!) { refund(input: $input) { \
    dispute { id status version } steps { kind status idempotencyKey } userErrors { code message } } }";
const RESOLVE: &str = "mutation($input: ResolveWithRefundInput!) { resolveWithRefund(input: $input) { \
    dispute { id status version } steps { kind status idempotencyKey } userErrors { code message } } }";
const MESSAGE_CUSTOMER: &str = "mutation($input: MessageCustomerInput!) { messageCustomer(input: $input) { \
    dispute { id version } steps { kind status idempotencyKey } userErrors { code message } } }";
const ACCEPT: &str = "mutation($input: AcceptDisputeInput!) { acceptDispute(input: $input) { \
    dispute { id status version } steps { kind status idempotencyKey } userErrors { code message } } }";

/// Waits until the dispute's order link step has run (it records `order_linked` or `order_not_found`), and
/// answers the dispute's version then.
async fn settled_version(app: &TestApp, id: &str) -> i64 {
    wait_until(app, id, "the order link step run", |d| {
        step(d, "LINK_ORDER").is_none_or(|s| s["status"] != "PENDING")
    })
    .await;
    // Read once more: the answer that showed the step done may hold the version read before it committed.
    dispute(app, id).await["version"].as_i64().unwrap()
}

/// Waits until none of the dispute's steps is pending (refunds made, their messages sent and recorded) and
/// answers its version then.
async fn quiet_version(app: &TestApp, id: &str) -> i64 {
    wait_until(app, id, "every step done", |d| {
        d["steps"].as_array().unwrap().iter().all(|s| s["status"] != "PENDING")
    })
    .await;
    // A dispute's fields are read one after another: the answer that showed the last step done may hold the
    // version read just before that step's completion (which moves it) committed. Read once more.
    dispute(app, id).await["version"].as_i64().unwrap()
}

/// An inquiry opened by hand for a Stripe payment, with the customer's email (refunds settle inquiries); its id
/// and its version once the order link step has run.
async fn open_stripe_inquiry(app: &TestApp, processor_dispute_id: &str, minor_units: i64) -> (String, i64) {
    let open = "mutation($input: OpenDisputeInput!) { openDispute(input: $input) { dispute { id } userErrors { code message } } }";
    let input = json!({
        "processor": "STRIPE",
        "processorDisputeId": processor_dispute_id,
        "paymentReference": "pi_e2e_refund",
        "orderReference": "ORD-E2E-REFUND",
        "sellerId": "seller-techrenew-fr",
        "customer": { "name": "Jeanne Dupont", "email": "jeanne.dupont@example.fr", "locale": "FR" },
        "amount": { "minorUnits": minor_units, "currency": "EUR" },
        "network": "VISA",
        "reasonCode": "13.1",
        "stage": "INQUIRY",
        "dueBy": due_in_days(10)
    });
    let answer = app.gql(&app.analyst, open, json!({ "input": input })).await;
    let id = answer.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let version = settled_version(app, &id).await;
    (id, version)
}

fn refund_input(id: &str, version: i64, request_id: &str, minor_units: Option<i64>) -> Value {
    let mut input = json!({ "id": id, "expectedVersion": version, "requestId": request_id });
    if let Some(minor_units) = minor_units {
        input["amount"] = json!({ "minorUnits": minor_units, "currency": "EUR" });
    }
    json!({ "input": input })
}

/// Stripe answers that the payment has no refund of Verdict's yet (the adapter asks before it refunds).
async fn no_prior_refunds(mock: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "object": "list", "data": [], "has_more": false })),
        )
        .mount(mock)
        .await;
}

fn received_to<'a>(requests: &'a [Request], verb: &str, at: &str) -> Vec<&'a Request> {
    requests
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == at)
        .collect()
}

fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

#[tokio::test]
async fn a_refused_refund_sends_the_customer_no_message_and_a_confirmed_one_does_after_it() {
    for db in test_databases().await.unwrap() {
        let stripe = MockServer::start().await;
        no_prior_refunds(&stripe).await;
        let mut app =
            TestApp::start_serving(&db, stripe_secrets(), stripe_effects(&stripe), RefundLimits::default()).await;

        // Stripe refuses the first refund: the step is dead-lettered and nobody tells the customer anything.
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": { "type": "invalid_request_error", "code": "charge_disputed" }
            })))
            .up_to_n_times(1)
            .mount(&stripe)
            .await;
        let (id, v) = open_stripe_inquiry(&app, "dp_e2e_refund_refused", 4_000).await;
        let resolved = app
            .gql(&app.analyst, RESOLVE, refund_input(&id, v, "goodwill-1", None))
            .await;
        let payload = &resolved.data()["resolveWithRefund"];
        assert_eq!(payload["dispute"]["status"], "RESOLVED", "{}", app.label);
        let steps = payload["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1, "{}: the refund alone is enqueued: {steps:?}", app.label);
        assert_eq!(steps[0]["kind"], "REFUND");
        assert_eq!(steps[0]["status"], "PENDING");
        let failed = wait_until(&app, &id, "the refused refund dead-lettered", |d| {
            step(d, "REFUND").is_some_and(|s| s["status"] == "DEAD")
        })
        .await;
        assert!(
            step(&failed, "REFUND").unwrap()["lastError"]
                .as_str()
                .unwrap()
                .contains("charge_disputed"),
            "{}: {failed}",
            app.label
        );
        // Give a wrongly enqueued message every chance to show up before saying it did not.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = dispute(&app, &id).await;
        assert!(step(&after, "CUSTOMER_MESSAGE").is_none(), "{}: {after}", app.label);
        assert!(
            after["messages"].as_array().unwrap().is_empty(),
            "{}: {after}",
            app.label
        );
        assert!(!event_types(&after).contains(&"MESSAGE_SENT".to_owned()));

        // The next refund succeeds: then, and only then, the customer is told, in French, with the amount refunded.
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "re_e2e_1", "status": "succeeded" })))
            .mount(&stripe)
            .await;
        let (id, v) = open_stripe_inquiry(&app, "dp_e2e_refund_ok", 10_000).await;
        let refunded = app
            .gql(&app.analyst, REFUND, refund_input(&id, v, "partial-1", Some(2_550)))
            .await;
        assert_eq!(
            refunded.data()["refund"]["dispute"]["status"],
            "NOTIFIED",
            "a refund alone leaves it open"
        );
        let told = wait_until(&app, &id, "the refund's message recorded as sent", |d| {
            event_types(d).contains(&"MESSAGE_SENT".to_owned())
        })
        .await;
        assert_eq!(step(&told, "REFUND").unwrap()["status"], "SUCCEEDED");
        let messages = told["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{}: {told}", app.label);
        assert_eq!(messages[0]["channel"], "CUSTOMER");
        assert!(
            messages[0]["body"].as_str().unwrap().contains("25,50 EUR"),
            "{}: the partial amount, written the French way: {}",
            app.label,
            messages[0]["body"]
        );
        let posted = stripe.received_requests().await.unwrap();
        let refunds = received_to(&posted, "POST", "/v1/refunds");
        let last = form(refunds.last().unwrap());
        assert!(last.contains(&("amount".into(), "2550".into())), "{last:?}");
        assert!(
            last.contains(&("payment_intent".into(), "pi_e2e_refund".into())),
            "{last:?}"
        );
        assert!(refunds.last().unwrap().headers.get("idempotency-key").is_some());
        app.stop().await;
    }
}

#[tokio::test]
async fn refunds_are_limited_by_role_by_what_is_left_and_never_made_twice_for_one_request() {
    for db in test_databases().await.unwrap() {
        let stripe = MockServer::start().await;
        no_prior_refunds(&stripe).await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "re_e2e", "status": "succeeded" })))
            .mount(&stripe)
            .await;
        let limits = RefundLimits {
            analyst_max_minor_units: 5_000,
            lead_max_minor_units: 20_000,
        };
        let mut app = TestApp::start_serving(&db, stripe_secrets(), stripe_effects(&stripe), limits).await;
        let (id, v) = open_stripe_inquiry(&app, "dp_e2e_limits", 100_000).await;

        let over = app
            .gql(&app.analyst, REFUND, refund_input(&id, v, "r1", Some(5_001)))
            .await;
        assert_eq!(over.error_code(), "FORBIDDEN", "{}: {}", app.label, over.body);
        let over = app
            .gql(&app.lead, REFUND, refund_input(&id, v, "r1", Some(20_001)))
            .await;
        assert_eq!(over.error_code(), "FORBIDDEN", "{}", app.label);
        let viewer = app.gql(&app.viewer, REFUND, refund_input(&id, v, "r1", Some(1))).await;
        assert_eq!(viewer.error_code(), "FORBIDDEN");
        assert_eq!(
            dispute(&app, &id).await["version"],
            v,
            "{}: refusals change nothing",
            app.label
        );

        let analyst = app
            .gql(&app.analyst, REFUND, refund_input(&id, v, "r1", Some(5_000)))
            .await;
        assert_eq!(analyst.data()["refund"]["dispute"]["version"], v + 1);
        // Each refund's message is recorded as sent once it went out: the version moves on by itself.
        let v = quiet_version(&app, &id).await;
        // The limit is on what the dispute is refunded in all: splitting does not get past it.
        let split = app
            .gql(&app.analyst, REFUND, refund_input(&id, v, "r1b", Some(1)))
            .await;
        assert_eq!(split.error_code(), "FORBIDDEN", "{}: {}", app.label, split.body);
        let over = app
            .gql(&app.lead, REFUND, refund_input(&id, v, "r2", Some(15_001)))
            .await;
        assert_eq!(over.error_code(), "FORBIDDEN", "{}", app.label);
        let lead = app
            .gql(&app.lead, REFUND, refund_input(&id, v, "r2", Some(15_000)))
            .await;
        assert_eq!(lead.data()["refund"]["dispute"]["version"], v + 1);
        let v = quiet_version(&app, &id).await;
        // The same request again is refused, whoever sends it.
        let twice = app.gql(&app.admin, REFUND, refund_input(&id, v, "r1", Some(100))).await;
        assert_eq!(twice.error_code(), "INVALID_INPUT", "{}: {}", app.label, twice.body);
        // An admin has no limit of their own, but never beyond what is left of the disputed 1,000.00 EUR.
        let beyond = app
            .gql(&app.admin, REFUND, refund_input(&id, v, "r3", Some(80_001)))
            .await;
        assert_eq!(beyond.error_code(), "INVALID_INPUT", "{}", app.label);
        // Without an amount, everything left is refunded.
        let rest = app.gql(&app.admin, REFUND, refund_input(&id, v, "r3", None)).await;
        assert_eq!(rest.data()["refund"]["dispute"]["version"], v + 1);
        let v = quiet_version(&app, &id).await;
        let done = app.gql(&app.admin, REFUND, refund_input(&id, v, "r4", Some(1))).await;
        assert_eq!(done.error_code(), "INVALID_INPUT", "{}", app.label);

        let settled = wait_until(&app, &id, "three refunds made", |d| {
            d["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == "REFUND" && s["status"] == "SUCCEEDED")
                .count()
                == 3
        })
        .await;
        let requested: Vec<i64> = settled["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "REFUND_REQUESTED")
            .map(|e| e["details"]["amount"]["minor_units"].as_i64().unwrap())
            .collect();
        assert_eq!(requested, [5_000, 15_000, 80_000], "{}", app.label);
        let posted = stripe.received_requests().await.unwrap();
        let amounts: Vec<String> = received_to(&posted, "POST", "/v1/refunds")
            .iter()
            .filter_map(|r| form(r).into_iter().find(|(k, _)| k == "amount").map(|(_, v)| v))
            .collect();
        let mut sorted = amounts.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["15000", "5000", "80000"],
            "{}: one refund per request",
            app.label
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_and_changes_nothing() {
    for db in test_databases().await.unwrap() {
        let stripe = MockServer::start().await;
        let mut app =
            TestApp::start_serving(&db, stripe_secrets(), stripe_effects(&stripe), RefundLimits::default()).await;
        let (id, v) = open_stripe_inquiry(&app, "dp_e2e_stale", 10_000).await;
        let note = "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { version } userErrors { code message } } }";
        app.gql(
            &app.analyst,
            note,
            json!({"input": {"id": id, "note": "called the customer"}}),
        )
        .await
        .data();
        let before = dispute(&app, &id).await;
        assert_eq!(before["version"], v + 1);
        let stale: Vec<Answer> = vec![
            app.gql(&app.analyst, REFUND, refund_input(&id, v, "r1", Some(100)))
                .await,
            app.gql(&app.analyst, RESOLVE, refund_input(&id, v, "r1", None)).await,
            app.gql(
                &app.lead,
                SUBMIT,
                json!({"input": {"id": id, "expectedVersion": v, "overrideReason": "paper proof"}}),
            )
            .await,
            app.gql(&app.analyst, ACCEPT, json!({"input": {"id": id, "expectedVersion": v}}))
                .await,
            app.gql(
                &app.analyst,
                MESSAGE_CUSTOMER,
                json!({"input": {"id": id, "expectedVersion": v, "template": "CASE_UPDATE", "text": "x"}}),
            )
            .await,
        ];
        for answer in &stale {
            assert_eq!(
                answer.error_code(),
                "VERSION_CONFLICT",
                "{}: {}",
                app.label,
                answer.body
            );
        }
        let after = dispute(&app, &id).await;
        assert_eq!(after["version"], v + 1, "{}", app.label);
        assert_eq!(after["events"], before["events"]);
        let keys = |d: &Value| {
            d["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["idempotencyKey"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(&after),
            keys(&before),
            "{}: nothing enqueued by a refused action",
            app.label
        );
        assert!(
            stripe.received_requests().await.unwrap().is_empty(),
            "nothing reached Stripe"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_customer_message_goes_out_in_their_language_with_the_free_text_and_is_then_recorded_as_sent() {
    for db in test_databases().await.unwrap() {
        let stripe = MockServer::start().await;
        let mut app =
            TestApp::start_serving(&db, stripe_secrets(), stripe_effects(&stripe), RefundLimits::default()).await;
        let (id, v) = open_stripe_inquiry(&app, "dp_e2e_message", 10_000).await;
        let text = "Nous pouvons vous envoyer une étiquette de retour dès aujourd'hui.";
        let sent = app
            .gql(
                &app.analyst,
                MESSAGE_CUSTOMER,
                json!({"input": {"id": id, "expectedVersion": v, "template": "REQUEST_INFORMATION", "text": text}}),
            )
            .await;
        let steps = sent.data()["messageCustomer"]["steps"].as_array().unwrap().clone();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0]["kind"], "CUSTOMER_MESSAGE");
        let done = wait_until(&app, &id, "the message recorded as sent", |d| {
            event_types(d).contains(&"MESSAGE_SENT".to_owned())
        })
        .await;
        let types = event_types(&done);
        let requested = types.iter().position(|t| t == "MESSAGE_REQUESTED").unwrap();
        let recorded = types.iter().position(|t| t == "MESSAGE_SENT").unwrap();
        assert!(requested < recorded);
        assert!(
            !done["events"].to_string().contains("étiquette"),
            "{}: the free text stays out of the history",
            app.label
        );
        let message = &done["messages"][0];
        assert!(message["subject"].as_str().unwrap().contains("ORD-E2E-REFUND"));
        assert!(message["body"].as_str().unwrap().contains(text), "{message}");
        assert!(
            message["body"].as_str().unwrap().contains("Bonjour Jeanne Dupont"),
            "{message}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn transition_dispute_is_a_leads_correction() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = crate::app::open_dispute(&app, "dp_e2e_correction").await;
        let v = settled_version(&app, &id).await;
        let input = json!({"input": {"id": id, "to": "TRIAGED", "reason": "wrong queue", "expectedVersion": v}});
        let refused = app.gql(&app.analyst, crate::app::TRANSITION, input.clone()).await;
        assert_eq!(refused.error_code(), "FORBIDDEN", "{}", app.label);
        app.gql(&app.lead, crate::app::TRANSITION, input).await.data();
        let after = dispute(&app, &id).await;
        let last = after["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["type"], "CORRECTED", "{}", app.label);
        assert_eq!(last["actor"], "analyst:lena");
        assert_eq!(last["reason"], "wrong queue");
        app.stop().await;
    }
}

/// A 1×1 PNG: the carrier's delivery photo, as far as the sniffer and the processor can tell.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d,
    0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The marketplace's order behind this test's payments, recorded in Verdict's own tables (the default source),
/// from the facts fixture with this test's references.
async fn record_order(db: &verdict_store::testing::TestDatabase, order_reference: &str, payments: &[&str]) {
    let mut order: verdict_domain::facts::OrderFacts = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/orders/order-a17.json"
        ))
        .unwrap(),
    )
    .unwrap();
    order.order_reference = order_reference.to_owned();
    order.payment_references = payments.iter().map(|p| (*p).to_owned()).collect();
    let store = db.store().await.unwrap();
    verdict_facts::TablesFacts::new(store.db().clone())
        .record(order, chrono::Utc::now())
        .await
        .unwrap();
}

const COMPLETENESS: &str =
    "query($id: ID!) { dispute(id: $id) { version evidenceCompleteness { score missing { kind required } } } }";

/// Draws the evidence the order facts give, uploads a photo and adds it, and answers the completeness then.
async fn gather_evidence(app: &TestApp, id: &str) -> Value {
    let version = dispute(app, id).await["version"].clone();
    let draw = "mutation($input: DrawEvidenceFromFactsInput!) { drawEvidenceFromFacts(input: $input) { \
        dispute { version } items { kind source } userErrors { code message } } }";
    let drawn = app
        .gql(
            &app.analyst,
            draw,
            json!({"input": {"id": id, "expectedVersion": version}}),
        )
        .await;
    let items = drawn.data()["drawEvidenceFromFacts"]["items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        items.iter().any(|i| i["kind"] == "TRACKING"),
        "{}: tracking drawn from the shipment: {items:?}",
        app.label
    );
    let upload = app
        .client
        .post(app.url(&format!("/disputes/{id}/evidence-files")))
        .bearer_auth(&app.analyst)
        .header("x-file-name", "delivery-photo.png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        upload.status().is_success(),
        "{}: upload {}",
        app.label,
        upload.status()
    );
    let uploaded: Value = upload.json().await.unwrap();
    let file_id = uploaded["fileId"].as_str().unwrap().to_owned();
    let version = dispute(app, id).await["version"].clone();
    let add = "mutation($input: AddEvidenceInput!) { addEvidence(input: $input) { dispute { version } userErrors { code message } } }";
    app.gql(
        &app.analyst,
        add,
        json!({"input": {"id": id, "expectedVersion": version, "kind": "PROOF_OF_DELIVERY", "fileId": file_id,
                         "text": "The carrier's photo of the parcel at the door"}}),
    )
    .await
    .data();
    app.gql(&app.analyst, COMPLETENESS, json!({ "id": id })).await.data()["dispute"].clone()
}

/// Stripe, end to end: the signed `charge.dispute.created` opens the dispute and links it to its order (customer
/// and seller); evidence is drawn from the facts and a photo uploaded until the evidence is complete; the
/// defense goes to Stripe's API (files uploaded, evidence fields, `submit=true`) and the signed
/// `charge.dispute.closed` (won) closes it.
#[tokio::test]
async fn stripe_a_signed_dispute_is_linked_gathered_defended_at_stripe_and_closed_by_its_outcome() {
    for db in test_databases().await.unwrap() {
        record_order(&db, "ORD-E2E-1", &["ch_e2e_respond", "pi_e2e_respond"]).await;
        let stripe = MockServer::start().await;
        let bearer = format!("Bearer {STRIPE_API_KEY}");
        Mock::given(method("GET"))
            .and(path("/v1/disputes/dp_e2e_stripe"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "dp_e2e_stripe", "object": "dispute", "status": "needs_response",
                "enhanced_eligibility_types": []
            })))
            .mount(&stripe)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/files"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "file_e2e", "object": "file" })))
            .mount(&stripe)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/disputes/dp_e2e_stripe"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "id": "dp_e2e_stripe", "object": "dispute", "status": "under_review" })),
            )
            .mount(&stripe)
            .await;
        let mut effects = stripe_effects(&stripe);
        effects.processors.stripe_files_base_url = Some(stripe.uri());
        let mut app = TestApp::start_serving(&db, stripe_secrets(), effects, RefundLimits::default()).await;
        post_stripe(
            &app,
            stripe_event(
                "charge.dispute.created",
                "evt_e2e_stripe_1",
                "dp_e2e_stripe",
                "needs_response",
                "product_not_received",
            ),
        )
        .await;
        let id = dispute_id_of(&app, "dp_e2e_stripe").await;
        // The projection is read before its history: wait for both to show the link.
        let linked = wait_until(&app, &id, "the dispute linked to its order", |d| {
            event_types(d).contains(&"ORDER_LINKED".to_owned()) && !d["customer"]["email"].is_null()
        })
        .await;
        assert_eq!(linked["status"], "NOTIFIED", "{}", app.label);
        assert_eq!(
            linked["customer"]["email"], "jeanne.dupont@example.fr",
            "{}: {linked}",
            app.label
        );
        assert_eq!(linked["customer"]["locale"], "FR");

        // Nothing gathered yet: the defense is refused.
        let refused = app
            .gql(
                &app.analyst,
                SUBMIT,
                json!({"input": {"id": id, "expectedVersion": linked["version"]}}),
            )
            .await;
        assert_eq!(
            refused.error_code(),
            "MISSING_EVIDENCE",
            "{}: {}",
            app.label,
            refused.body
        );
        assert!(refused.body.to_string().contains("missing"), "{}", refused.body);

        let complete = gather_evidence(&app, &id).await;
        assert_eq!(
            complete["evidenceCompleteness"]["score"], 100,
            "{}: {complete}",
            app.label
        );
        let submitted = app
            .gql(
                &app.analyst,
                SUBMIT,
                json!({"input": {"id": id, "expectedVersion": complete["version"]}}),
            )
            .await;
        let payload = &submitted.data()["submitDefense"];
        assert_eq!(payload["dispute"]["status"], "SUBMITTED", "{}", app.label);
        assert_eq!(payload["steps"][0]["kind"], "SUBMIT_EVIDENCE");
        let sent = wait_until(&app, &id, "the submission sent to Stripe", |d| {
            step(d, "SUBMIT_EVIDENCE").is_some_and(|s| s["status"] != "PENDING")
        })
        .await;
        assert_eq!(
            step(&sent, "SUBMIT_EVIDENCE").unwrap()["status"],
            "SUCCEEDED",
            "{}: {sent}",
            app.label
        );
        // The document sent was generated and recorded just before the submission, so the history names it.
        let types = event_types(&sent);
        let submitted_at = types.iter().position(|t| t == "DEFENSE_SUBMITTED").unwrap();
        let generated_at = types[..submitted_at]
            .iter()
            .rposition(|t| t == "DOCUMENT_GENERATED")
            .unwrap_or_else(|| panic!("{}: no document before the submission: {types:?}", app.label));
        assert!(
            types[generated_at + 1..submitted_at]
                .iter()
                .all(|t| t == "TRIAGED" || t == "EVIDENCE_GATHERING_STARTED"),
            "{}: {types:?}",
            app.label
        );
        let timers = "query($id: ID!) { dispute(id: $id) { timers { kind status } } }";
        let timers = app.gql(&app.viewer, timers, json!({ "id": id })).await.data()["dispute"]["timers"].clone();
        assert!(
            timers
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["kind"] == "OUTCOME_CHECK" && t["status"] == "PENDING"),
            "{}: {timers}",
            app.label
        );

        let posted = stripe.received_requests().await.unwrap();
        let files = received_to(&posted, "POST", "/v1/files");
        assert!(
            files.iter().any(|f| f.body.windows(5).any(|w| w == b"%PDF-")),
            "{}: the defense document was uploaded",
            app.label
        );
        assert!(
            files.iter().any(|f| f.body.windows(PNG.len()).any(|w| w == PNG)),
            "{}: the uploaded delivery photo was sent",
            app.label
        );
        let submissions = received_to(&posted, "POST", "/v1/disputes/dp_e2e_stripe");
        assert_eq!(submissions.len(), 1, "{}", app.label);
        let fields = form(submissions[0]);
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(field("submit").as_deref(), Some("true"), "{fields:?}");
        assert_eq!(
            field("evidence[shipping_tracking_number]").as_deref(),
            Some("6A12345678901"),
            "{fields:?}"
        );
        assert_eq!(
            field("evidence[shipping_carrier]").as_deref(),
            Some("Colissimo"),
            "{fields:?}"
        );
        assert_eq!(
            field("evidence[uncategorized_file]").as_deref(),
            Some("file_e2e"),
            "{fields:?}"
        );
        assert_eq!(
            field("evidence[shipping_documentation]").as_deref(),
            Some("file_e2e"),
            "{fields:?}"
        );
        let key = submissions[0].headers.get("idempotency-key").unwrap().to_str().unwrap();
        assert_eq!(key, step(&sent, "SUBMIT_EVIDENCE").unwrap()["idempotencyKey"]);

        post_stripe(
            &app,
            stripe_event(
                "charge.dispute.closed",
                "evt_e2e_stripe_2",
                "dp_e2e_stripe",
                "won",
                "product_not_received",
            ),
        )
        .await;
        let closed = dispute(&app, &id).await;
        assert_eq!(closed["status"], "WON", "{}: {}", app.label, closed);
        app.stop().await;
    }
}

const ADYEN_HMAC_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
const ADYEN_API_KEY: &str = "adyen_e2e_api_key";
const ADYEN_MERCHANT: &str = "VerdictShopECOM";

fn adyen_secrets() -> WebhookSecrets {
    WebhookSecrets {
        adyen_hmac_key: Some(ADYEN_HMAC_KEY.into()),
        adyen_basic_auth: Some(("adyen".into(), "s3cret".into())),
        ..WebhookSecrets::default()
    }
}

/// One Adyen notification item built from the published CHARGEBACK example with this test's references, a Visa
/// "merchandise not received" reason and a due date ahead, signed with the test key.
fn adyen_item(event_code: &str, psp: &str, event_date: chrono::DateTime<chrono::Utc>) -> Value {
    let example: Value = serde_json::from_slice(&fixture("adyen/openapi-webhooks-v1-chargeback.json")).unwrap();
    let mut item = example["notificationItems"][0]["NotificationRequestItem"].clone();
    item["eventCode"] = json!(event_code);
    item["eventDate"] = json!(event_date.to_rfc3339());
    item["pspReference"] = json!(psp);
    item["originalReference"] = json!("9913140798220028");
    item["merchantReference"] = json!("ORD-E2E-ADYEN");
    item["merchantAccountCode"] = json!(ADYEN_MERCHANT);
    item["paymentMethod"] = json!("visa");
    item["amount"] = json!({ "currency": "EUR", "value": 45_900 });
    let data = &mut item["additionalData"];
    data["chargebackReasonCode"] = json!("13.1");
    data["chargebackSchemeCode"] = json!("visa");
    data["defensePeriodEndsAt"] = json!((chrono::Utc::now() + chrono::Duration::days(20)).to_rfc3339());
    let signature = verdict_ingest::adyen_item_signature(&item, ADYEN_HMAC_KEY).unwrap();
    item["additionalData"]["hmacSignature"] = json!(signature);
    item
}

async fn post_adyen(app: &TestApp, item: Value) {
    let body = json!({ "live": "false", "notificationItems": [{ "NotificationRequestItem": item }] });
    let response = app
        .client
        .post(app.url("/webhooks/adyen"))
        .basic_auth("adyen", Some("s3cret"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}: {}", app.label, response.status());
}

/// Adyen batches are applied after the answer: waits for the dispute to appear.
async fn wait_for_dispute(app: &TestApp, processor_dispute_id: &str) -> String {
    let query = "{ disputes(first: 100) { edges { node { id processorDisputeId } } } }";
    for _ in 0..200 {
        let answer = app.gql(&app.lead, query, json!({})).await;
        if let Some(id) = answer.data()["disputes"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["processorDisputeId"] == processor_dispute_id)
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}: no dispute {processor_dispute_id}", app.label);
}

/// Adyen, end to end: the signed CHARGEBACK opens the dispute linked by its merchant reference; evidence is
/// drawn and uploaded to 100%; the defense goes to Adyen's Disputes API (the defense document supplied as
/// `DefenseMaterial`, then `defendDispute`), and the signed CHARGEBACK_REVERSED closes it as won.
/// The analyst's path once a signed notification opened `processor_dispute_id`: the dispute is linked to its
/// recorded order (customer and seller), the evidence gathered to 100%, the defense submitted and its step
/// performed (`what` names it). Answers the dispute's id.
async fn link_gather_and_submit(app: &TestApp, processor_dispute_id: &str, what: &str) -> String {
    let id = wait_for_dispute(app, processor_dispute_id).await;
    // The projection is read before its history: wait for both to show the link.
    let linked = wait_until(app, &id, "the dispute linked to its order", |d| {
        event_types(d).contains(&"ORDER_LINKED".to_owned()) && !d["customer"]["email"].is_null()
    })
    .await;
    assert_eq!(
        linked["customer"]["email"], "jeanne.dupont@example.fr",
        "{}: {linked}",
        app.label
    );
    let complete = gather_evidence(app, &id).await;
    assert_eq!(
        complete["evidenceCompleteness"]["score"], 100,
        "{}: {complete}",
        app.label
    );
    let submitted = app
        .gql(
            &app.analyst,
            SUBMIT,
            json!({"input": {"id": id, "expectedVersion": complete["version"]}}),
        )
        .await;
    assert_eq!(
        submitted.data()["submitDefense"]["dispute"]["status"],
        "SUBMITTED",
        "{}",
        app.label
    );
    let sent = wait_until(app, &id, what, |d| {
        step(d, "SUBMIT_EVIDENCE").is_some_and(|s| s["status"] != "PENDING")
    })
    .await;
    assert_eq!(
        step(&sent, "SUBMIT_EVIDENCE").unwrap()["status"],
        "SUCCEEDED",
        "{}: {sent}",
        app.label
    );
    id
}

#[tokio::test]
async fn adyen_a_signed_chargeback_is_linked_gathered_defended_at_adyen_and_closed_by_its_outcome() {
    for db in test_databases().await.unwrap() {
        record_order(&db, "ORD-E2E-ADYEN", &["9913140798220028"]).await;
        let adyen = MockServer::start().await;
        let ok = json!({ "disputeServiceResult": { "success": true } });
        Mock::given(method("POST"))
            .and(path("/disputes/v30/retrieveApplicableDefenseReasons"))
            .and(header("x-api-key", ADYEN_API_KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "defenseReasons": [{
                    "defenseReasonCode": "SupplyDefenseMaterial", "satisfied": false,
                    "defenseDocumentTypes": [
                        { "defenseDocumentTypeCode": "DefenseMaterial", "requirementLevel": "Required", "available": false }
                    ]
                }],
                "disputeServiceResult": { "success": true }
            })))
            .mount(&adyen)
            .await;
        for operation in ["supplyDefenseDocument", "defendDispute"] {
            Mock::given(method("POST"))
                .and(path(format!("/disputes/v30/{operation}")))
                .and(header("x-api-key", ADYEN_API_KEY))
                .respond_with(ResponseTemplate::new(200).set_body_json(ok.clone()))
                .mount(&adyen)
                .await;
        }
        let mut effects = EffectsConfig::default();
        effects.processors.adyen_api_key = Some(ADYEN_API_KEY.into());
        effects.processors.adyen_merchant_account = Some(ADYEN_MERCHANT.into());
        effects.processors.adyen_disputes_base_url = format!("{}/disputes/v30", adyen.uri());
        effects.processors.adyen_checkout_base_url = format!("{}/checkout/v71", adyen.uri());
        let mut app = TestApp::start_serving(&db, adyen_secrets(), effects, RefundLimits::default()).await;
        let opened_at = chrono::Utc::now() - chrono::Duration::minutes(5);
        post_adyen(&app, adyen_item("CHARGEBACK", "E2EADYENPSP00001", opened_at)).await;
        let id = link_gather_and_submit(&app, "E2EADYENPSP00001", "the defense sent to Adyen").await;
        let posted = adyen.received_requests().await.unwrap();
        let paths: Vec<&str> = posted.iter().map(|r| r.url.path()).collect();
        assert_eq!(
            paths,
            [
                "/disputes/v30/retrieveApplicableDefenseReasons",
                "/disputes/v30/supplyDefenseDocument",
                "/disputes/v30/defendDispute"
            ],
            "{}",
            app.label
        );
        let supplied: Value = serde_json::from_slice(&posted[1].body).unwrap();
        assert_eq!(supplied["disputePspReference"], "E2EADYENPSP00001");
        assert_eq!(supplied["merchantAccountCode"], ADYEN_MERCHANT);
        let document = &supplied["defenseDocuments"][0];
        assert_eq!(document["defenseDocumentTypeCode"], "DefenseMaterial");
        assert_eq!(document["contentType"], "application/pdf");
        assert!(
            document["content"].as_str().unwrap().starts_with("JVBERi"),
            "a PDF, base64"
        );
        let defended: Value = serde_json::from_slice(&posted[2].body).unwrap();
        assert_eq!(defended["defenseReasonCode"], "SupplyDefenseMaterial");

        post_adyen(
            &app,
            adyen_item("CHARGEBACK_REVERSED", "E2EADYENPSP00001", chrono::Utc::now()),
        )
        .await;
        wait_until(&app, &id, "the dispute won", |d| d["status"] == "WON").await;
        app.stop().await;
    }
}

const BT_PUBLIC: &str = "bt_e2e_public";
const BT_PRIVATE: &str = "bt_e2e_private";
const BT_MERCHANT: &str = "m_e2e";

fn braintree_secrets() -> WebhookSecrets {
    WebhookSecrets {
        braintree: vec![verdict_ingest::BraintreeCredentials {
            public_key: BT_PUBLIC.into(),
            private_key: BT_PRIVATE.into(),
        }],
        ..WebhookSecrets::default()
    }
}

/// A Braintree notification from the SDK's `dispute_opened` sample with this test's dispute, transaction,
/// order, amount, reason and reply-by date.
fn braintree_notification(kind: &str, status: &str) -> String {
    let sample = String::from_utf8(fixture("braintree/ruby-sdk-sample-notification-dispute_opened.xml")).unwrap();
    let now = chrono::Utc::now();
    sample
        .replacen("<id>my_id</id>", "<id>bt_e2e_dispute</id>", 1)
        .replacen("<id>my_id</id>", "<id>bt_e2e_txn</id>", 1)
        .replace("<kind>dispute_opened</kind>", &format!("<kind>{kind}</kind>"))
        .replace(
            "<timestamp type=\"datetime\">2024-01-01T00:00:00Z</timestamp>",
            &format!(
                "<timestamp type=\"datetime\">{}</timestamp>",
                now.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        )
        .replace(
            "<status>open</status>\n          <updated-at",
            &format!("<status>{status}</status>\n          <updated-at"),
        )
        .replace("100.00", "459.00")
        .replace(
            "<currency-iso-code>USD</currency-iso-code>",
            "<currency-iso-code>EUR</currency-iso-code>",
        )
        .replace("<reason>fraud</reason>", "<reason>product_not_received</reason>")
        .replace("<order-id nil=\"true\"/>", "<order-id>ORD-E2E-BT</order-id>")
        .replace(
            "<reply-by-date type=\"date\">2016-02-22</reply-by-date>",
            &format!(
                "<reply-by-date type=\"date\">{}</reply-by-date>",
                (now + chrono::Duration::days(20)).format("%Y-%m-%d")
            ),
        )
}

async fn post_braintree(app: &TestApp, xml: &str) {
    let payload = verdict_ingest::braintree_payload(xml);
    let signature = verdict_ingest::sign_braintree(&payload, BT_PUBLIC, BT_PRIVATE).unwrap();
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("bt_signature", &signature)
        .append_pair("bt_payload", &payload)
        .finish();
    let response = app
        .client
        .post(app.url("/webhooks/braintree"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}: {}", app.label, response.status());
    app.applied().await;
}

/// Braintree, end to end: the signed `dispute_opened` opens the dispute linked by its order id; evidence is drawn
/// and uploaded to 100%; the defense goes to the gateway (documents uploaded, text and file evidence, then
/// finalize) and the signed `dispute_won` closes it.
#[tokio::test]
async fn braintree_a_signed_dispute_is_linked_gathered_defended_at_braintree_and_closed_by_its_outcome() {
    for db in test_databases().await.unwrap() {
        record_order(&db, "ORD-E2E-BT", &["bt_e2e_txn"]).await;
        let gateway = MockServer::start().await;
        let base = format!("/merchants/{BT_MERCHANT}");
        let xml = |body: &str| {
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/xml")
                .set_body_string(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"))
        };
        Mock::given(method("GET"))
            .and(path(format!("{base}/disputes/bt_e2e_dispute")))
            .respond_with(xml(
                "<dispute><id>bt_e2e_dispute</id><status>open</status><evidence type=\"array\"/></dispute>",
            ))
            .mount(&gateway)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{base}/document_uploads")))
            .respond_with(xml("<document-upload><id>doc_e2e</id></document-upload>"))
            .mount(&gateway)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{base}/disputes/bt_e2e_dispute/evidence")))
            .respond_with(xml("<evidence><id>ev_e2e</id></evidence>"))
            .mount(&gateway)
            .await;
        Mock::given(method("PUT"))
            .and(path(format!("{base}/disputes/bt_e2e_dispute/finalize")))
            .respond_with(xml("<success type=\"boolean\">true</success>"))
            .mount(&gateway)
            .await;
        let mut effects = EffectsConfig::default();
        effects.processors.braintree_merchant_id = Some(BT_MERCHANT.into());
        effects.processors.braintree_public_key = Some(BT_PUBLIC.into());
        effects.processors.braintree_private_key = Some(BT_PRIVATE.into());
        effects.processors.braintree_base_url = gateway.uri();
        let mut app = TestApp::start_serving(&db, braintree_secrets(), effects, RefundLimits::default()).await;
        post_braintree(&app, &braintree_notification("dispute_opened", "open")).await;
        let id = link_gather_and_submit(&app, "bt_e2e_dispute", "the defense sent to Braintree").await;
        let posted = gateway.received_requests().await.unwrap();
        let auth = posted[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(auth.starts_with("Basic "), "{}", app.label);
        let uploads = received_to(&posted, "POST", &format!("{base}/document_uploads"));
        assert!(
            uploads.iter().any(|u| u.body.windows(5).any(|w| w == b"%PDF-")),
            "{}: the defense document was uploaded",
            app.label
        );
        assert!(
            uploads.iter().any(|u| u.body.windows(PNG.len()).any(|w| w == PNG)),
            "{}",
            app.label
        );
        let evidence: Vec<String> = received_to(&posted, "POST", &format!("{base}/disputes/bt_e2e_dispute/evidence"))
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        assert!(
            evidence
                .iter()
                .any(|e| e.contains("6A12345678901") && e.contains("TRACKING_NUMBER")),
            "{}: {evidence:?}",
            app.label
        );
        assert!(
            evidence.iter().any(|e| e.contains("doc_e2e")),
            "{}: {evidence:?}",
            app.label
        );
        assert_eq!(
            posted.last().unwrap().url.path(),
            format!("{base}/disputes/bt_e2e_dispute/finalize")
        );

        post_braintree(&app, &braintree_notification("dispute_won", "won")).await;
        wait_until(&app, &id, "the dispute won", |d| d["status"] == "WON").await;
        app.stop().await;
    }
}

const PAYPAL_WEBHOOK_ID: &str = "WH-VERDICT-E2E";
const PAYPAL_CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-verdict-e2e-test";
const PAYPAL_DISPUTE: &str = "PP-D-E2E-1";

/// Webhooks that verify PayPal with the test signer's certificate (tests/fixtures/processors/paypal/
/// verdict-test-signing), cached under a PayPal certificate URL as Verdict caches PayPal's own.
fn paypal_webhooks() -> verdict_api::webhooks::Webhooks {
    let certificates = verdict_api::webhooks::CachedCertificates::offline();
    certificates.preload(PAYPAL_CERT_URL, fixture("paypal/verdict-test-signing/test-cert.pem"));
    verdict_api::webhooks::Webhooks {
        secrets: std::sync::Arc::new(WebhookSecrets {
            paypal_webhook_id: Some(PAYPAL_WEBHOOK_ID.into()),
            ..Default::default()
        }),
        certificates: std::sync::Arc::new(certificates),
    }
}

/// PayPal's dispute sample as a chargeback on a Verdict test order: `event_type` and the resource's status and
/// outcome as given.
fn paypal_event(event_id: &str, event_type: &str, status: &str, outcome: Option<&str>) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&fixture(
        "paypal/unofficial-mirror/customer-dispute-created-sample.json",
    ))
    .unwrap();
    event["id"] = json!(event_id);
    event["event_type"] = json!(event_type);
    event["create_time"] = json!(chrono::Utc::now().to_rfc3339());
    let resource = &mut event["resource"];
    resource["dispute_id"] = json!(PAYPAL_DISPUTE);
    resource["status"] = json!(status);
    resource["dispute_life_cycle_stage"] = json!("CHARGEBACK");
    resource["dispute_amount"] = json!({"currency_code": "EUR", "value": "329.00"});
    resource["disputed_transactions"][0]["seller_transaction_id"] = json!("pp_e2e_capture");
    resource["seller_response_due_date"] = json!(due_in_days(10));
    if let Some(outcome) = outcome {
        resource["dispute_outcome"] = json!({ "outcome_code": outcome });
    }
    serde_json::to_vec(&event).unwrap()
}

/// Posts `body` signed as PayPal signs (SHA256withRSA over `id|time|webhook id|crc32(body)`), with the test key.
async fn post_paypal(app: &TestApp, body: Vec<u8>) {
    use base64::Engine as _;
    let key = ring::signature::RsaKeyPair::from_der(&fixture("paypal/verdict-test-signing/test-key.der")).unwrap();
    let transmission_id = uuid::Uuid::now_v7().to_string();
    let transmission_time = chrono::Utc::now().to_rfc3339();
    let message = format!(
        "{transmission_id}|{transmission_time}|{PAYPAL_WEBHOOK_ID}|{}",
        crc32fast::hash(&body)
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    let response = app
        .client
        .post(app.url("/webhooks/paypal"))
        .header("content-type", "application/json")
        .header("paypal-transmission-id", transmission_id)
        .header("paypal-transmission-time", transmission_time)
        .header("paypal-auth-algo", "SHA256withRSA")
        .header("paypal-cert-url", PAYPAL_CERT_URL)
        .header(
            "paypal-transmission-sig",
            base64::engine::general_purpose::STANDARD.encode(signature),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}: {}", app.label, response.status());
    app.applied().await;
}

/// PayPal, end to end: the signed `CUSTOMER.DISPUTE.CREATED` opens the dispute linked by its seller transaction
/// id; evidence is drawn and uploaded to 100%; the defense goes to PayPal (OAuth token, the dispute read, then
/// provide-evidence with the input JSON and the files) and the signed `CUSTOMER.DISPUTE.RESOLVED` in the
/// seller's favour closes it as won.
#[tokio::test]
async fn paypal_a_signed_dispute_is_linked_gathered_defended_at_paypal_and_closed_by_its_outcome() {
    for db in test_databases().await.unwrap() {
        record_order(&db, "ORD-E2E-PP", &["pp_e2e_capture"]).await;
        let paypal = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/oauth2/token"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"access_token": "A21AAe2e", "expires_in": 32400})),
            )
            .mount(&paypal)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v1/customer/disputes/{PAYPAL_DISPUTE}")))
            .and(header("authorization", "Bearer A21AAe2e"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"dispute_id": PAYPAL_DISPUTE, "status": "WAITING_FOR_SELLER_RESPONSE", "evidences": []}),
            ))
            .mount(&paypal)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/v1/customer/disputes/{PAYPAL_DISPUTE}/provide-evidence")))
            .and(header("authorization", "Bearer A21AAe2e"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"links": []})))
            .mount(&paypal)
            .await;
        let mut effects = EffectsConfig::default();
        effects.processors.paypal_client_id = Some("client-e2e".into());
        effects.processors.paypal_client_secret = Some("secret-e2e".into());
        effects.processors.paypal_base_url = paypal.uri();
        let mut app = TestApp::start_serving_webhooks(&db, paypal_webhooks(), effects, RefundLimits::default()).await;
        post_paypal(
            &app,
            paypal_event("WH-E2E-CREATED", "CUSTOMER.DISPUTE.CREATED", "OPEN", None),
        )
        .await;
        let id = link_gather_and_submit(&app, PAYPAL_DISPUTE, "the defense sent to PayPal").await;
        let posted = paypal.received_requests().await.unwrap();
        let provided = received_to(
            &posted,
            "POST",
            &format!("/v1/customer/disputes/{PAYPAL_DISPUTE}/provide-evidence"),
        );
        assert_eq!(provided.len(), 1, "{}", app.label);
        let request = provided[0];
        assert!(
            request.headers.get("paypal-request-id").is_some(),
            "{}: the idempotency header",
            app.label
        );
        let content_type = request
            .headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("multipart/form-data"), "{}", app.label);
        let body = &request.body;
        assert!(
            body.windows(5).any(|w| w == b"%PDF-"),
            "{}: the defense document is attached",
            app.label
        );
        assert!(body.windows(PNG.len()).any(|w| w == PNG), "{}: the photo", app.label);
        let text = String::from_utf8_lossy(body);
        assert!(
            text.contains("name=\"input\"") && text.contains("evidence_type"),
            "{}: the input part",
            app.label
        );
        assert!(text.contains("6A12345678901"), "{}: the tracking number", app.label);

        post_paypal(
            &app,
            paypal_event(
                "WH-E2E-RESOLVED",
                "CUSTOMER.DISPUTE.RESOLVED",
                "RESOLVED",
                Some("RESOLVED_SELLER_FAVOUR"),
            ),
        )
        .await;
        wait_until(&app, &id, "the dispute won", |d| d["status"] == "WON").await;
        app.stop().await;
    }
}
