//! Marketplace facts end to end: a signed Stripe notification opens a dispute that the link step ties to its
//! recorded order (customer and seller), an unknown reference ends with `order_not_found`, analysts see the
//! order (viewers masked) and link by hand, and the order service over HTTP answers the same way.

use serde_json::{Value, json};
use verdict_api::webhooks::WebhookSecrets;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::app::{TestApp, test_databases};

const SECRET: &str = "whsec_e2e_facts";
const ORDER: &str = include_str!("../fixtures/orders/order-a17.json");
const FIXTURE: &str =
    include_str!("../fixtures/processors/stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json");

const RECORD: &str = "mutation($input: RecordOrderInput!) { recordOrder(input: $input) { outcome order { orderReference seller { sellerId } customer { name email } } userErrors { code message } } }";
const DISPUTE: &str = "query($id: ID!) { dispute(id: $id) { id version sellerId orderReference \
    customer { name email locale } events { type actor details } steps { kind status lastError } \
    order { orderReference seller { sellerId } customer { name email locale } \
    shipment { carrier trackingNumber address { lines city country } } messages { locale body } \
    paymentChecks { ipAddress } } } }";
const DISPUTES: &str = "{ disputes(first: 10) { edges { node { id processorDisputeId } } } }";

fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        stripe: vec![SECRET.to_owned()],
        ..Default::default()
    }
}

/// The published `charge.dispute.created` fixture as our dispute: its own ids, the order's charge, and
/// `metadata[order_id]` when given.
fn stripe_event(event_id: &str, dispute_id: &str, charge: &str, order_id: Option<&str>) -> String {
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    event["id"] = json!(event_id);
    event["data"]["object"]["id"] = json!(dispute_id);
    event["data"]["object"]["charge"] = json!(charge);
    // Due in three weeks: no deadline timer fires during the test and moves the version.
    event["data"]["object"]["evidence_details"]["due_by"] = json!(chrono::Utc::now().timestamp() + 21 * 86_400);
    event["data"]["object"]["metadata"] = match order_id {
        Some(order) => json!({ "order_id": order }),
        None => json!({}),
    };
    event.to_string()
}

async fn post_stripe(app: &TestApp, body: &str) {
    let signature = verdict_ingest::sign_stripe(body.as_bytes(), SECRET, chrono::Utc::now().timestamp()).unwrap();
    let status = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200, "{}", app.label);
    app.applied().await;
}

async fn dispute_id(app: &TestApp, processor_dispute_id: &str) -> String {
    let answer = app.gql(&app.viewer, DISPUTES, json!({})).await;
    answer.data()["disputes"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["processorDisputeId"] == processor_dispute_id)
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{}: no dispute {processor_dispute_id}", app.label))
}

/// The dispute as `token` sees it once its link step has recorded what it found. (A dispute's fields are read
/// one after the other: the step may show succeeded in an answer whose events were read just before.)
async fn after_the_link(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..200 {
        let answer = app.gql(token, DISPUTE, json!({ "id": id })).await;
        let dispute = answer.data()["dispute"].clone();
        let recorded = event_types(&dispute)
            .iter()
            .any(|t| t == "ORDER_LINKED" || t == "ORDER_NOT_FOUND");
        let dead = dispute["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "LINK_ORDER" && s["status"] == "DEAD");
        if recorded || dead {
            return app.gql(token, DISPUTE, json!({ "id": id })).await.data()["dispute"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{}: the link step never finished", app.label);
}

fn event_types(dispute: &Value) -> Vec<String> {
    dispute["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_stripe_dispute_is_linked_to_its_recorded_order_with_its_customer_and_seller() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start_with_webhooks(&db, secrets()).await;
        let facts: Value = serde_json::from_str(ORDER).unwrap();
        let analyst_refused = app.gql(&app.analyst, RECORD, json!({"input": {"facts": facts}})).await;
        assert_eq!(
            analyst_refused.error_code(),
            "FORBIDDEN",
            "{}: recording orders is a lead's",
            app.label
        );
        let recorded = app.gql(&app.lead, RECORD, json!({"input": {"facts": facts}})).await;
        assert_eq!(recorded.data()["recordOrder"]["outcome"], "CREATED", "{}", app.label);
        let again = app.gql(&app.lead, RECORD, json!({"input": {"facts": facts}})).await;
        assert_eq!(again.data()["recordOrder"]["outcome"], "UNCHANGED", "{}", app.label);

        // The notification names the order's charge only: the link goes by the payment reference.
        post_stripe(&app, &stripe_event("evt_facts_1", "dp_facts_1", "ch_3Ofacts17", None)).await;
        let id = dispute_id(&app, "dp_facts_1").await;
        let dispute = after_the_link(&app, &app.analyst, &id).await;
        assert_eq!(
            event_types(&dispute),
            vec!["OPENED", "ORDER_LINKED"],
            "{}: {dispute}",
            app.label
        );
        assert_eq!(dispute["sellerId"], "seller-refurb-lyon", "{}", app.label);
        assert_eq!(dispute["orderReference"], "A-17", "{}", app.label);
        assert_eq!(
            dispute["customer"],
            json!({"name": "Jeanne Dupont", "email": "jeanne.dupont@example.fr", "locale": "FR"}),
            "{}",
            app.label
        );
        let linked = &dispute["events"][1];
        assert_eq!(linked["actor"], "step:link_order", "{}", app.label);
        assert_eq!(linked["details"]["order_reference"], "A-17", "{}", app.label);
        assert_eq!(linked["details"]["source"], "tables", "{}", app.label);
        assert!(
            !linked["details"].to_string().contains("jeanne"),
            "{}: history never shows the customer: {}",
            app.label,
            linked["details"]
        );
        let order = &dispute["order"];
        assert_eq!(order["shipment"]["carrier"], "Colissimo", "{}", app.label);
        assert_eq!(order["messages"][0]["locale"], "FR", "{}", app.label);
        assert_eq!(order["paymentChecks"]["ipAddress"], "198.51.100.23", "{}", app.label);

        // Viewers see the order with personal data masked, as they see the dispute's customer.
        let masked = app.gql(&app.viewer, DISPUTE, json!({ "id": id })).await;
        let masked = &masked.data()["dispute"];
        assert_eq!(masked["customer"]["email"], "j***@example.fr", "{}", app.label);
        assert_eq!(masked["order"]["customer"]["name"], "J***", "{}", app.label);
        assert_eq!(masked["order"]["customer"]["email"], "j***@example.fr", "{}", app.label);
        assert_eq!(
            masked["order"]["shipment"]["address"]["lines"],
            json!(["***"]),
            "{}",
            app.label
        );
        assert_eq!(masked["order"]["shipment"]["address"]["city"], "Lyon", "{}", app.label);
        assert_eq!(masked["order"]["messages"][0]["body"], Value::Null, "{}", app.label);
        assert_eq!(masked["order"]["paymentChecks"]["ipAddress"], "***", "{}", app.label);

        // The order by any of its references.
        let by_intent = app
            .gql(
                &app.viewer,
                "query { order(reference: \"pi_3Ofacts17\") { orderReference } }",
                json!({}),
            )
            .await;
        assert_eq!(by_intent.data()["order"]["orderReference"], "A-17", "{}", app.label);
        let none = app
            .gql(
                &app.viewer,
                "query { order(reference: \"nope\") { orderReference } }",
                json!({}),
            )
            .await;
        assert_eq!(none.data()["order"], Value::Null, "{}", app.label);
        app.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_reference_ends_with_order_not_found_and_an_analyst_links_by_hand() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start_with_webhooks(&db, secrets()).await;
        post_stripe(
            &app,
            &stripe_event("evt_facts_2", "dp_facts_2", "ch_unknown_2", Some("Z-404")),
        )
        .await;
        let id = dispute_id(&app, "dp_facts_2").await;
        let dispute = after_the_link(&app, &app.analyst, &id).await;
        assert_eq!(
            event_types(&dispute),
            vec!["OPENED", "ORDER_NOT_FOUND"],
            "{}: {dispute}",
            app.label
        );
        let details = &dispute["events"][1]["details"];
        assert_eq!(details["tried"], json!(["order_id", "charge"]), "{}", app.label);
        assert!(
            !details.to_string().contains("Z-404"),
            "{}: kinds, never values",
            app.label
        );
        assert_eq!(dispute["sellerId"], Value::Null, "{}", app.label);
        assert_eq!(dispute["order"], Value::Null, "{}", app.label);

        // The order turns up later; an analyst links it by hand, with the version they saw.
        let facts: Value = serde_json::from_str(ORDER).unwrap();
        app.gql(&app.lead, RECORD, json!({"input": {"facts": facts}}))
            .await
            .data();
        let link = "mutation($input: LinkOrderInput!) { linkOrder(input: $input) { dispute { version sellerId customer { email } } userErrors { code message } } }";
        let version = dispute["version"].as_i64().unwrap();
        let stale = app
            .gql(
                &app.analyst,
                link,
                json!({"input": {"id": id, "expectedVersion": version - 1, "orderReference": "A-17"}}),
            )
            .await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT", "{}", app.label);
        let unknown = app
            .gql(
                &app.analyst,
                link,
                json!({"input": {"id": id, "expectedVersion": version, "orderReference": "B-0"}}),
            )
            .await;
        assert_eq!(unknown.error_code(), "NOT_FOUND", "{}", app.label);
        let viewer = app
            .gql(
                &app.viewer,
                link,
                json!({"input": {"id": id, "expectedVersion": version, "orderReference": "A-17"}}),
            )
            .await;
        assert_eq!(viewer.error_code(), "FORBIDDEN", "{}", app.label);
        let linked = app
            .gql(
                &app.analyst,
                link,
                json!({"input": {"id": id, "expectedVersion": version, "orderReference": "A-17"}}),
            )
            .await;
        let linked = &linked.data()["linkOrder"]["dispute"];
        assert_eq!(linked["version"], version + 1, "{}", app.label);
        assert_eq!(linked["sellerId"], "seller-refurb-lyon", "{}", app.label);
        assert_eq!(linked["customer"]["email"], "jeanne.dupont@example.fr", "{}", app.label);
        let after = app.gql(&app.analyst, DISPUTE, json!({ "id": id })).await;
        assert_eq!(
            event_types(&after.data()["dispute"]),
            vec!["OPENED", "ORDER_NOT_FOUND", "ORDER_LINKED"],
            "{}",
            app.label
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn with_the_order_service_configured_the_link_asks_it_over_http() {
    for db in test_databases().await.unwrap() {
        let service = MockServer::start().await;
        let facts: Value = serde_json::from_str(ORDER).unwrap();
        Mock::given(method("GET"))
            .and(path("/orders/lookup"))
            .and(header("authorization", "Bearer tok_orders"))
            .and(query_param("processor", "stripe"))
            .and(query_param("reference", "ch_3Ofacts17"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&facts))
            .mount(&service)
            .await;
        Mock::given(method("GET"))
            .and(path("/orders/lookup"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&service)
            .await;
        let marketplace = verdict_facts::MarketplaceConfig {
            source: verdict_facts::FactsSource::Http,
            url: Some(service.uri()),
            token: Some("tok_orders".into()),
            timeout_secs: 5,
        };
        let mut app = TestApp::start_with_marketplace(&db, secrets(), &marketplace).await;
        post_stripe(&app, &stripe_event("evt_facts_3", "dp_facts_3", "ch_3Ofacts17", None)).await;
        let id = dispute_id(&app, "dp_facts_3").await;
        let dispute = after_the_link(&app, &app.analyst, &id).await;
        assert_eq!(
            event_types(&dispute),
            vec!["OPENED", "ORDER_LINKED"],
            "{}: {dispute}",
            app.label
        );
        assert_eq!(dispute["events"][1]["details"]["source"], "http", "{}", app.label);
        assert_eq!(dispute["sellerId"], "seller-refurb-lyon", "{}", app.label);
        let lookups: Vec<_> = service
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == "/orders/lookup")
            .collect();
        assert!(!lookups.is_empty());
        assert_eq!(
            lookups[0].url.query(),
            Some("processor=stripe&reference=ch_3Ofacts17"),
            "{}: exactly the references the notification carried",
            app.label
        );

        post_stripe(&app, &stripe_event("evt_facts_4", "dp_facts_4", "ch_elsewhere", None)).await;
        let other = dispute_id(&app, "dp_facts_4").await;
        let other = after_the_link(&app, &app.analyst, &other).await;
        assert_eq!(event_types(&other), vec!["OPENED", "ORDER_NOT_FOUND"], "{}", app.label);

        // Orders live in the order service: recording them in Verdict is refused.
        let refused = app.gql(&app.lead, RECORD, json!({"input": {"facts": facts}})).await;
        assert_eq!(refused.error_code(), "INVALID_INPUT", "{}", app.label);
        app.stop().await;
    }
}
