//! Outbound webhooks (`[[outbound_webhooks]]`): each event reaches a local receiver signed, through the step
//! queue, retried after a failure with the same idempotency key, and dead-lettered after repeated failure.

use std::time::Duration;

use serde_json::{Value, json};
use verdict_api::graphql::RefundLimits;
use verdict_api::webhooks::WebhookSecrets;
use verdict_engine::effects::{EffectsConfig, OutboundWebhookConfig, verify_webhook_signature};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::app::{TestApp, open_dispute, test_databases};

const SECRET: &str = "whsec_outbound_e2e";

fn webhook(name: &str, url: String, max_attempts: i32) -> OutboundWebhookConfig {
    OutboundWebhookConfig {
        name: name.to_owned(),
        url,
        secret: SECRET.to_owned(),
        events: vec!["note_added".to_owned()],
        max_attempts,
    }
}

async fn outbound_steps(app: &TestApp, id: &str) -> Vec<Value> {
    let query = "query($id: ID!) { dispute(id: $id) { steps { kind status attempts idempotencyKey lastError } } }";
    let answer = app.gql(&app.lead, query, json!({ "id": id })).await;
    answer.data()["dispute"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "OUTBOUND_WEBHOOK")
        .cloned()
        .collect()
}

fn requests_to(received: &[Request], route: &str) -> Vec<Request> {
    received.iter().filter(|r| r.url.path() == route).cloned().collect()
}

#[tokio::test]
async fn events_reach_outbound_webhooks_signed_retried_and_dead_lettered() {
    for db in test_databases().await.unwrap() {
        let receiver = MockServer::start().await;
        // `flaky` fails once, then accepts; `down` always fails.
        Mock::given(method("POST"))
            .and(path("/flaky"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(1)
            .mount(&receiver)
            .await;
        Mock::given(method("POST"))
            .and(path("/flaky"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&receiver)
            .await;
        Mock::given(method("POST"))
            .and(path("/down"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&receiver)
            .await;
        let effects = EffectsConfig {
            sandbox: true,
            outbound_webhooks: vec![
                webhook("flaky", format!("{}/flaky", receiver.uri()), 5),
                webhook("down", format!("{}/down", receiver.uri()), 2),
            ],
            ..EffectsConfig::default()
        };
        let app = TestApp::start_serving(&db, WebhookSecrets::default(), effects, RefundLimits::default()).await;
        let id = open_dispute(&app, &format!("dp_outbound_{}", db.label)).await;
        let add_note = "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { __typename } userErrors { code message } } }";
        app.gql(
            &app.analyst,
            add_note,
            json!({ "input": { "id": id, "note": "call the bank" } }),
        )
        .await
        .data();

        // Only the note is routed (the webhooks' event filter), once per webhook, written with the event.
        let steps = outbound_steps(&app, &id).await;
        assert_eq!(steps.len(), 2, "{}: {steps:?}", db.label);

        // The first attempt fails with 500 and is retried after the backoff (about 10 s); then both settle.
        let mut settled = Vec::new();
        for _ in 0..120 {
            settled = outbound_steps(&app, &id).await;
            if settled
                .iter()
                .all(|s| s["status"] == "SUCCEEDED" || s["status"] == "DEAD")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let status_of = |key_part: &str| {
            settled
                .iter()
                .find(|s| s["idempotencyKey"].as_str().unwrap().starts_with(key_part))
                .unwrap_or_else(|| panic!("no step for {key_part}: {settled:?}"))
                .clone()
        };
        let flaky = status_of("outbound:flaky:");
        assert_eq!(flaky["status"], "SUCCEEDED", "{}: {settled:?}", db.label);
        assert_eq!(flaky["attempts"], 2, "{}: retried once after the 500", db.label);
        let down = status_of("outbound:down:");
        assert_eq!(down["status"], "DEAD", "{}: {settled:?}", db.label);
        assert_eq!(down["attempts"], 2, "{}", db.label);
        assert!(down["lastError"].as_str().unwrap().contains("HTTP 503"), "{down}");

        // The dead letter is visible where leads look for them.
        let dead = app
            .gql(&app.lead, "{ deadLetteredSteps { kind idempotencyKey } }", json!({}))
            .await;
        assert!(
            dead.data()["deadLetteredSteps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "OUTBOUND_WEBHOOK" && s["idempotencyKey"] == down["idempotencyKey"]),
            "{}: {}",
            db.label,
            dead.body
        );

        // Both attempts at `flaky` carried the same idempotency key and a valid signature over the body.
        let received = receiver.received_requests().await.unwrap();
        let deliveries = requests_to(&received, "/flaky");
        assert_eq!(deliveries.len(), 2, "{}", db.label);
        for delivery in &deliveries {
            let key = delivery.headers.get("idempotency-key").unwrap().to_str().unwrap();
            assert_eq!(key, flaky["idempotencyKey"].as_str().unwrap());
            assert_eq!(delivery.headers.get("verdict-event").unwrap(), "note_added");
            let signature = delivery.headers.get("verdict-signature").unwrap().to_str().unwrap();
            assert!(
                verify_webhook_signature(
                    SECRET,
                    signature,
                    &delivery.body,
                    chrono::Utc::now(),
                    chrono::Duration::minutes(5)
                ),
                "{}: the signature verifies",
                db.label
            );
            assert!(!verify_webhook_signature(
                "another secret",
                signature,
                &delivery.body,
                chrono::Utc::now(),
                chrono::Duration::minutes(5)
            ));
            let body: Value = serde_json::from_slice(&delivery.body).unwrap();
            assert_eq!(body["id"], key);
            assert_eq!(body["type"], "note_added");
            assert_eq!(body["event"]["details"]["note"], "call the bank");
            assert_eq!(body["dispute"]["dispute_id"], id.as_str());
            assert!(
                !String::from_utf8_lossy(&delivery.body).contains("jeanne"),
                "no personal data"
            );
        }
        assert_eq!(requests_to(&received, "/down").len(), 2, "{}", db.label);
    }
}
