//! Disputes through GraphQL: open, transition, history, pagination, roles, bad input, restarts.

use serde_json::{Value, json};

use crate::app::{GET, OPEN, TRANSITION, TestApp, open_dispute, open_input, test_databases};

async fn get(app: &TestApp, id: &str) -> Value {
    app.gql(&app.viewer, GET, json!({ "id": id })).await.data()["dispute"].clone()
}

async fn transition(app: &TestApp, token: &str, id: &str, to: &str, version: i64, reason: &str) -> crate::app::Answer {
    let input = json!({ "id": id, "to": to, "reason": reason, "expectedVersion": version });
    app.gql(token, TRANSITION, json!({ "input": input })).await
}

#[tokio::test]
async fn an_analyst_opens_and_works_a_dispute_and_its_history_is_recorded() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let answer = app
            .gql(&app.analyst, OPEN, json!({ "input": open_input("dp_e2e_1") }))
            .await;
        let opened = &answer.data()["openDispute"];
        assert_eq!(opened["status"], "NOTIFIED", "{}", app.label);
        assert_eq!(opened["version"], 1);
        assert_eq!(opened["reasonCode"], "10.4", "normalised from ' 10.4 '");
        assert_eq!(opened["reasonCategory"], "FRAUD");
        assert_eq!(opened["network"], "VISA");
        assert_eq!(
            opened["amount"],
            json!({"minorUnits": 48900, "currency": "EUR", "formatted": "489.00 EUR"})
        );
        assert_eq!(opened["dueBy"], "2030-01-15T12:00:00+00:00");
        assert_eq!(
            opened["customer"]["name"], "Jeanne Dupont",
            "analysts see personal data"
        );
        let id = opened["id"].as_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

        let triaged = transition(&app, &app.analyst, &id, "TRIAGED", 1, "fraud pattern, card absent").await;
        assert_eq!(triaged.data()["transitionDispute"]["queue"], "FRAUD");
        transition(
            &app,
            &app.analyst,
            &id,
            "EVIDENCE_GATHERING",
            2,
            "collecting AVS and delivery proof",
        )
        .await
        .data();
        let note = "mutation($input: AddNoteInput!) { addNote(input: $input) { version } }";
        let noted = app
            .gql(
                &app.analyst,
                note,
                json!({"input": {"id": id, "note": "Customer IP matches past orders"}}),
            )
            .await;
        assert_eq!(noted.data()["addNote"]["version"], 4);
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { assignee version } }";
        let taken = app
            .gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": "alice"}}))
            .await;
        assert_eq!(taken.data()["assignDispute"]["assignee"], "alice");
        transition(&app, &app.analyst, &id, "SUBMITTED", 5, "evidence complete")
            .await
            .data();

        let dispute = get(&app, &id).await;
        assert_eq!(dispute["status"], "SUBMITTED");
        assert_eq!(dispute["customer"]["name"], "J***", "viewers see masked personal data");
        assert_eq!(dispute["customer"]["email"], "j***@example.fr");
        let events = dispute["events"].as_array().unwrap();
        let summary: Vec<(String, Value, Value, String)> = events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["fromStatus"].clone(),
                    e["toStatus"].clone(),
                    e["actor"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("opened".into(), Value::Null, json!("NOTIFIED"), "analyst:alice".into()),
                (
                    "manually_transitioned".into(),
                    json!("NOTIFIED"),
                    json!("TRIAGED"),
                    "analyst:alice".into()
                ),
                (
                    "manually_transitioned".into(),
                    json!("TRIAGED"),
                    json!("EVIDENCE_GATHERING"),
                    "analyst:alice".into()
                ),
                ("note_added".into(), Value::Null, Value::Null, "analyst:alice".into()),
                ("assigned".into(), Value::Null, Value::Null, "analyst:alice".into()),
                (
                    "manually_transitioned".into(),
                    json!("EVIDENCE_GATHERING"),
                    json!("SUBMITTED"),
                    "analyst:alice".into()
                ),
            ],
            "{}",
            app.label
        );
        assert_eq!(events[1]["reason"], "fraud pattern, card absent");
        let history = serde_json::to_string(
            &app.gql(
                &app.viewer,
                "query($id: ID!) { dispute(id: $id) { events { details } } }",
                json!({"id": id}),
            )
            .await
            .body,
        )
        .unwrap();
        assert!(
            !history.contains("Jeanne") && !history.contains("jeanne.dupont"),
            "history leaks personal data: {history}"
        );
        let timers: Vec<_> = dispute["timers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["kind"].as_str().unwrap(), t["status"].as_str().unwrap()))
            .collect();
        assert!(
            timers.contains(&("deadline", "cancelled")),
            "submission cancels the deadline: {timers:?}"
        );
        assert!(
            dispute["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "notify_assignee")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_server_still_has_every_dispute_with_its_history() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_restart").await;
        transition(&app, &app.analyst, &id, "TRIAGED", 1, "first look")
            .await
            .data();
        let before = get(&app, &id).await;
        let mut app = app.restart(&db).await;
        let after = get(&app, &id).await;
        assert_eq!(after, before, "{}", app.label);
        assert_eq!(after["events"].as_array().unwrap().len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_transitions_at_one_version_give_one_success_and_one_conflict() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_race_api").await;
        let (a, b) = tokio::join!(
            transition(&app, &app.analyst, &id, "TRIAGED", 1, "first analyst"),
            transition(&app, &app.lead, &id, "ACCEPTED", 1, "second analyst")
        );
        let mut codes: Vec<String> = [&a, &b]
            .iter()
            .map(|answer| {
                if answer.body.get("errors").is_some() {
                    answer.error_code()
                } else {
                    "OK".into()
                }
            })
            .collect();
        codes.sort();
        assert_eq!(
            codes,
            vec!["OK".to_owned(), "VERSION_CONFLICT".to_owned()],
            "{}",
            app.label
        );
        let dispute = get(&app, &id).await;
        assert_eq!(dispute["version"], 2);
        assert_eq!(dispute["events"].as_array().unwrap().len(), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn queue_pages_walk_every_dispute_in_due_order() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let dues = [
            "2030-03-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
            "2030-04-01T00:00:00Z",
        ];
        for (i, due) in dues.iter().enumerate() {
            let mut input = open_input(&format!("dp_page_{i}"));
            input["dueBy"] = json!(due);
            input["sellerId"] = json!(if i % 2 == 0 { "seller-even" } else { "seller-odd" });
            app.gql(&app.analyst, OPEN, json!({ "input": input })).await.data();
        }
        let query = "query($after: String, $filter: DisputeFilter) { disputes(first: 3, after: $after, filter: $filter) { \
            totalCount edges { cursor node { processorDisputeId dueBy } } pageInfo { hasNextPage endCursor } } }";
        let first = app.gql(&app.viewer, query, json!({})).await;
        let page = &first.data()["disputes"];
        assert_eq!(page["totalCount"], 4, "{}", app.label);
        assert_eq!(page["pageInfo"]["hasNextPage"], true);
        let second = app
            .gql(&app.viewer, query, json!({ "after": page["pageInfo"]["endCursor"] }))
            .await;
        let rest = &second.data()["disputes"];
        assert_eq!(rest["pageInfo"]["hasNextPage"], false);
        let dues: Vec<String> = page["edges"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest["edges"].as_array().unwrap())
            .map(|e| e["node"]["dueBy"].as_str().unwrap().to_owned())
            .collect();
        let mut sorted = dues.clone();
        sorted.sort();
        assert_eq!(dues, sorted);
        assert_eq!(dues.len(), 4);
        let filtered = app
            .gql(
                &app.viewer,
                query,
                json!({ "filter": { "sellerId": "seller-odd", "dueBefore": "2030-02-15T00:00:00Z" } }),
            )
            .await;
        assert_eq!(filtered.data()["disputes"]["totalCount"], 1);
        let by_status = app
            .gql(&app.viewer, query, json!({ "filter": { "status": ["TRIAGED"] } }))
            .await;
        assert_eq!(by_status.data()["disputes"]["totalCount"], 0);
        let bad_cursor = app.gql(&app.viewer, query, json!({ "after": "not-a-cursor" })).await;
        assert_eq!(bad_cursor.error_code(), "INVALID_INPUT");
        app.stop().await;
    }
}

/// Asserts that `id` still has the version and event count it had.
async fn assert_unchanged(app: &TestApp, id: &str, version: i64, events: usize) {
    let dispute = get(app, id).await;
    assert_eq!(dispute["version"], version, "{}", app.label);
    assert_eq!(dispute["events"].as_array().unwrap().len(), events, "{}", app.label);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_bad_input").await;

        let illegal = transition(&app, &app.analyst, &id, "WON", 1, "skip ahead").await;
        assert_eq!(illegal.error_code(), "ILLEGAL_TRANSITION", "{}", app.label);
        let stale = transition(&app, &app.analyst, &id, "TRIAGED", 7, "old screen").await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT");
        let empty_reason = transition(&app, &app.analyst, &id, "TRIAGED", 1, "   ").await;
        assert_eq!(empty_reason.error_code(), "INVALID_INPUT");
        let viewer = transition(&app, &app.viewer, &id, "TRIAGED", 1, "I only read").await;
        assert_eq!(viewer.error_code(), "FORBIDDEN");
        let unknown = transition(
            &app,
            &app.analyst,
            &uuid::Uuid::now_v7().to_string(),
            "TRIAGED",
            1,
            "who",
        )
        .await;
        assert_eq!(unknown.error_code(), "NOT_FOUND");
        let malformed = transition(&app, &app.analyst, "dispute-42", "TRIAGED", 1, "typo").await;
        assert_eq!(malformed.error_code(), "INVALID_INPUT");
        let missing = app
            .gql(&app.viewer, GET, json!({ "id": uuid::Uuid::now_v7().to_string() }))
            .await;
        assert_eq!(missing.data()["dispute"], Value::Null);
        assert_unchanged(&app, &id, 1, 1).await;

        // Analysts cannot reassign someone else's dispute; leads can.
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { assignee } }";
        let for_bob = app
            .gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": "bob"}}))
            .await;
        assert_eq!(for_bob.error_code(), "FORBIDDEN");
        assert_unchanged(&app, &id, 1, 1).await;
        let by_lead = app
            .gql(&app.lead, assign, json!({"input": {"id": id, "assignee": "bob"}}))
            .await;
        assert_eq!(by_lead.data()["assignDispute"]["assignee"], "bob");

        let mut cases: Vec<(&str, Value)> = Vec::new();
        let mut negative = open_input("dp_negative");
        negative["amount"]["minorUnits"] = json!(-500);
        cases.push(("negative amount", negative));
        let mut huge = open_input("dp_huge");
        huge["amount"]["minorUnits"] = json!(9_000_000_000_000_000_i64);
        cases.push(("amount beyond the maximum", huge));
        let mut overflow = open_input("dp_overflow");
        overflow["amount"]["minorUnits"] = json!(1e30);
        cases.push(("amount beyond 64 bits", overflow));
        let mut currency = open_input("dp_currency");
        currency["amount"]["currency"] = json!("EUX");
        cases.push(("unknown currency", currency));
        let mut reason = open_input("dp_reason");
        reason["reasonCode"] = json!("4853");
        cases.push(("Mastercard code on Visa", reason));
        let mut email = open_input("dp_email");
        email["customer"]["email"] = json!("not an email");
        cases.push(("bad email", email));
        let mut blank = open_input("   ");
        blank["processorDisputeId"] = json!("   ");
        cases.push(("blank processor dispute id", blank));
        for (what, input) in cases {
            let answer = app.gql(&app.analyst, OPEN, json!({ "input": input })).await;
            assert_eq!(
                answer.error_code(),
                "INVALID_INPUT",
                "{what} on {}: {}",
                app.label,
                answer.body
            );
        }
        let duplicate = app
            .gql(&app.analyst, OPEN, json!({ "input": open_input("dp_bad_input") }))
            .await;
        assert_eq!(duplicate.error_code(), "ALREADY_EXISTS");
        let viewer_open = app
            .gql(&app.viewer, OPEN, json!({ "input": open_input("dp_viewer") }))
            .await;
        assert_eq!(viewer_open.error_code(), "FORBIDDEN");
        let count = app.gql(&app.viewer, "{ disputes { totalCount } }", json!({})).await;
        assert_eq!(
            count.data()["disputes"]["totalCount"],
            1,
            "no rejected input created a dispute"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        for token in [None, Some("vdk_0000"), Some("")] {
            let answer = app.gql_as(token, "{ me { name } }", json!({})).await;
            assert_eq!(answer.status, 401, "{}", app.label);
            assert_eq!(answer.error_code(), "UNAUTHENTICATED");
        }
        let raw = app
            .client
            .post(app.url("/graphql"))
            .header("Authorization", "Basic abc")
            .json(&json!({"query": "{ me { name } }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status().as_u16(), 401);
        let me = app.gql(&app.lead, "{ me { name role } }", json!({})).await;
        assert_eq!(me.data()["me"], json!({"name": "lena", "role": "LEAD"}));
        let page = app.client.get(app.url("/graphql")).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "GraphiQL loads without a key");
        assert!(page.text().await.unwrap().to_lowercase().contains("graphiql"));
        let create = "mutation { createApiKey(input: {name: \"ops\", role: VIEWER}) { token } }";
        assert_eq!(app.gql(&app.lead, create, json!({})).await.error_code(), "FORBIDDEN");
        let created = app.gql(&app.admin, create, json!({})).await;
        let token = created.data()["createApiKey"]["token"].as_str().unwrap().to_owned();
        assert_eq!(
            app.gql(&token, "{ me { role } }", json!({})).await.data()["me"]["role"],
            "VIEWER"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let db = verdict_store::testing::TestDatabase::sqlite().await.unwrap();
    let mut app = TestApp::start(&db).await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_lead_reopens_a_won_dispute_into_pre_arbitration() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_reopen").await;
        for (version, to) in ["TRIAGED", "EVIDENCE_GATHERING", "SUBMITTED", "WON"].iter().enumerate() {
            transition(&app, &app.analyst, &id, to, version as i64 + 1, "walk")
                .await
                .data();
        }
        let reopen = json!({ "input": { "id": id, "to": "EVIDENCE_GATHERING", "reason": "issuer filed pre-arbitration", "expectedVersion": 5, "stage": "PRE_ARBITRATION" } });
        assert_eq!(
            app.gql(&app.analyst, TRANSITION, reopen.clone()).await.error_code(),
            "FORBIDDEN"
        );
        let reopened = app.gql(&app.lead, TRANSITION, reopen).await;
        let dispute = &reopened.data()["transitionDispute"];
        assert_eq!(
            (dispute["status"].as_str(), dispute["stage"].as_str()),
            (Some("EVIDENCE_GATHERING"), Some("PRE_ARBITRATION")),
            "{}",
            app.label
        );
        app.stop().await;
    }
}
