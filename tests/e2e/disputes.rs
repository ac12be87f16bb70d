//! Disputes through GraphQL: open, transition, history, pagination, roles, bad input, restarts.

use serde_json::{Value, json};

use crate::app::{GET, OPEN, TRANSITION, TestApp, due_in_days, open_dispute, open_input, test_databases};

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
        let opened = &answer.data()["openDispute"]["dispute"];
        assert_eq!(opened["status"], "NOTIFIED", "{}", app.label);
        assert_eq!(opened["version"], 1);
        assert_eq!(opened["reasonCode"], "10.4", "normalised from ' 10.4 '");
        assert_eq!(opened["reasonCategory"], "FRAUD");
        assert_eq!(opened["network"], "VISA");
        assert_eq!(
            opened["amount"],
            json!({"minorUnits": 48900, "currency": "EUR", "formatted": "489.00 EUR"})
        );
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(opened["dueBy"].as_str().unwrap()).unwrap(),
            chrono::DateTime::parse_from_rfc3339(&due_in_days(45)).unwrap()
        );
        assert_eq!(
            opened["customer"]["name"], "Jeanne Dupont",
            "analysts see personal data"
        );
        let id = opened["id"].as_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

        let triaged = transition(&app, &app.lead, &id, "TRIAGED", 1, "fraud pattern, card absent").await;
        assert_eq!(triaged.data()["transitionDispute"]["dispute"]["queue"], "FRAUD");
        transition(
            &app,
            &app.lead,
            &id,
            "EVIDENCE_GATHERING",
            2,
            "collecting AVS and delivery proof",
        )
        .await
        .data();
        let note = "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { version } userErrors { code message } } }";
        let noted = app
            .gql(
                &app.analyst,
                note,
                json!({"input": {"id": id, "note": "Customer IP matches past orders"}}),
            )
            .await;
        assert_eq!(noted.data()["addNote"]["dispute"]["version"], 4);
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { assignee version } userErrors { code message } } }";
        let taken = app
            .gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": "alice"}}))
            .await;
        assert_eq!(taken.data()["assignDispute"]["dispute"]["assignee"], "alice");
        transition(&app, &app.lead, &id, "SUBMITTED", 5, "evidence complete")
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
                ("OPENED".into(), Value::Null, json!("NOTIFIED"), "analyst:alice".into()),
                (
                    "CORRECTED".into(),
                    json!("NOTIFIED"),
                    json!("TRIAGED"),
                    "analyst:lena".into()
                ),
                (
                    "CORRECTED".into(),
                    json!("TRIAGED"),
                    json!("EVIDENCE_GATHERING"),
                    "analyst:lena".into()
                ),
                ("NOTE_ADDED".into(), Value::Null, Value::Null, "analyst:alice".into()),
                ("ASSIGNED".into(), Value::Null, Value::Null, "analyst:alice".into()),
                (
                    "CORRECTED".into(),
                    json!("EVIDENCE_GATHERING"),
                    json!("SUBMITTED"),
                    "analyst:lena".into()
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
            timers.contains(&("DEADLINE", "CANCELLED")),
            "submission cancels the deadline: {timers:?}"
        );
        assert!(
            dispute["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "NOTIFY_ASSIGNEE")
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_restarted_server_still_has_every_dispute_with_its_history() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_restart").await;
        transition(&app, &app.lead, &id, "TRIAGED", 1, "first look")
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
            transition(&app, &app.lead, &id, "TRIAGED", 1, "first lead"),
            transition(&app, &app.lead, &id, "ACCEPTED", 1, "second lead")
        );
        let mut codes: Vec<String> = [&a, &b]
            .iter()
            .map(|answer| {
                if answer.refused() {
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
        let dues = [due_in_days(60), due_in_days(10), due_in_days(10), due_in_days(90)];
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
                json!({ "filter": { "sellerId": "seller-odd", "dueBefore": due_in_days(45) } }),
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

        let illegal = transition(&app, &app.lead, &id, "SUBMITTED", 1, "skip ahead").await;
        assert_eq!(illegal.error_code(), "ILLEGAL_TRANSITION", "{}", app.label);
        let stale = transition(&app, &app.lead, &id, "TRIAGED", 7, "old screen").await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT");
        let empty_reason = transition(&app, &app.lead, &id, "TRIAGED", 1, "   ").await;
        assert_eq!(empty_reason.error_code(), "INVALID_INPUT");
        let viewer = transition(&app, &app.viewer, &id, "TRIAGED", 1, "I only read").await;
        assert_eq!(viewer.error_code(), "FORBIDDEN");
        let unknown = transition(&app, &app.lead, &uuid::Uuid::now_v7().to_string(), "TRIAGED", 1, "who").await;
        assert_eq!(unknown.error_code(), "NOT_FOUND");
        let malformed = transition(&app, &app.lead, "dispute-42", "TRIAGED", 1, "typo").await;
        assert_eq!(malformed.error_code(), "INVALID_INPUT");
        let missing = app
            .gql(&app.viewer, GET, json!({ "id": uuid::Uuid::now_v7().to_string() }))
            .await;
        assert_eq!(missing.data()["dispute"], Value::Null);
        assert_unchanged(&app, &id, 1, 1).await;

        // Analysts cannot reassign someone else's dispute; leads can.
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { assignee } userErrors { code message } } }";
        let for_bob = app
            .gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": "bob"}}))
            .await;
        assert_eq!(for_bob.error_code(), "FORBIDDEN");
        assert_unchanged(&app, &id, 1, 1).await;
        // Nobody called bob has signed in or holds a key: assigning him is refused.
        let nobody = app
            .gql(&app.lead, assign, json!({"input": {"id": id, "assignee": "bob"}}))
            .await;
        assert_eq!(nobody.error_code(), "INVALID_INPUT", "{}", nobody.body);
        assert_unchanged(&app, &id, 1, 1).await;
        let by_lead = app
            .gql(&app.lead, assign, json!({"input": {"id": id, "assignee": "alice"}}))
            .await;
        assert_eq!(by_lead.data()["assignDispute"]["dispute"]["assignee"], "alice");

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
        let mut far = open_input("dp_far");
        far["dueBy"] = json!("9999-12-31T00:00:00Z");
        cases.push(("due date in year 9999", far));
        let mut past = open_input("dp_past");
        past["dueBy"] = json!("2020-01-01T00:00:00Z");
        cases.push(("due date in the past", past));
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
        let create = "mutation { createApiKey(input: {name: \"ops\", role: VIEWER}) { apiKey { token } userErrors { code message } } }";
        assert_eq!(app.gql(&app.lead, create, json!({})).await.error_code(), "FORBIDDEN");
        let created = app.gql(&app.admin, create, json!({})).await;
        let token = created.data()["createApiKey"]["apiKey"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
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

/// Walks a dispute to SUBMITTED by a lead's corrections; returns its id (at version 4).
async fn submitted_dispute(app: &TestApp, processor_dispute_id: &str) -> String {
    let id = open_dispute(app, processor_dispute_id).await;
    for (version, to) in ["TRIAGED", "EVIDENCE_GATHERING", "SUBMITTED"].iter().enumerate() {
        transition(app, &app.lead, &id, to, version as i64 + 1, "walk")
            .await
            .data();
    }
    id
}

#[tokio::test]
async fn outcomes_by_hand_are_a_leads_override_with_a_reason() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = submitted_dispute(&app, "dp_override").await;
        for to in ["WON", "LOST", "EXPIRED"] {
            let refused = transition(&app, &app.analyst, &id, to, 4, "the customer told me").await;
            assert_eq!(refused.error_code(), "FORBIDDEN", "{to} on {}", app.label);
            let message = refused.body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("processor") && message.contains("lead"), "{message}");
        }
        assert_unchanged(&app, &id, 4, 4).await;
        let empty = transition(&app, &app.lead, &id, "WON", 4, "  ").await;
        assert_eq!(empty.error_code(), "INVALID_INPUT", "{}", app.label);
        assert_unchanged(&app, &id, 4, 4).await;
        let won = transition(
            &app,
            &app.lead,
            &id,
            "WON",
            4,
            "won per the Stripe dashboard; webhook missed",
        )
        .await;
        assert_eq!(
            won.data()["transitionDispute"]["dispute"]["status"],
            "WON",
            "{}",
            app.label
        );
        let dispute = get(&app, &id).await;
        let last = dispute["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["type"], "OUTCOME_OVERRIDDEN", "{}", app.label);
        assert_eq!(last["actor"], "analyst:lena");
        assert_eq!(last["reason"], "won per the Stripe dashboard; webhook missed");
        assert_eq!(
            (last["fromStatus"].as_str(), last["toStatus"].as_str()),
            (Some("SUBMITTED"), Some("WON"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_lead_reopens_a_won_dispute_into_pre_arbitration_with_a_new_due_date() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = submitted_dispute(&app, "dp_reopen").await;
        transition(&app, &app.lead, &id, "WON", 4, "won at the processor")
            .await
            .data();
        let reopen = |due_by: Option<String>| {
            let mut input = json!({ "id": id, "to": "EVIDENCE_GATHERING", "reason": "issuer filed pre-arbitration", "expectedVersion": 5, "stage": "PRE_ARBITRATION" });
            if let Some(due_by) = due_by {
                input["dueBy"] = json!(due_by);
            }
            json!({ "input": input })
        };
        assert_eq!(
            app.gql(&app.analyst, TRANSITION, reopen(Some(due_in_days(20))))
                .await
                .error_code(),
            "FORBIDDEN"
        );
        for (what, due_by) in [
            ("no due date", None),
            ("a past due date", Some("2021-03-01T00:00:00Z".to_owned())),
            ("an absurd due date", Some("9999-12-31T00:00:00Z".to_owned())),
        ] {
            let refused = app.gql(&app.lead, TRANSITION, reopen(due_by)).await;
            assert_eq!(refused.error_code(), "INVALID_INPUT", "{what} on {}", app.label);
        }
        assert_unchanged(&app, &id, 5, 5).await;
        let due_by = due_in_days(20);
        let reopened = app.gql(&app.lead, TRANSITION, reopen(Some(due_by.clone()))).await;
        let dispute = &reopened.data()["transitionDispute"]["dispute"];
        assert_eq!(
            (dispute["status"].as_str(), dispute["stage"].as_str()),
            (Some("EVIDENCE_GATHERING"), Some("PRE_ARBITRATION")),
            "{}",
            app.label
        );
        let query = "query($id: ID!) { dispute(id: $id) { dueBy actBy timers { kind dueAt status } } }";
        let dispute = app.gql(&app.viewer, query, json!({"id": id})).await.data()["dispute"].clone();
        let due = chrono::DateTime::parse_from_rfc3339(&due_by).unwrap();
        let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(at(&dispute["dueBy"]), due, "{}", app.label);
        assert_eq!(at(&dispute["actBy"]), due - chrono::Duration::hours(24));
        let pending: Vec<(String, chrono::DateTime<chrono::FixedOffset>)> = dispute["timers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "PENDING")
            .map(|t| (t["kind"].as_str().unwrap().to_owned(), at(&t["dueAt"])))
            .collect();
        assert!(
            pending.contains(&("DEADLINE".to_owned(), due)),
            "the new cycle's deadline is at its due date: {pending:?}"
        );
        assert!(pending.contains(&("ACT_BY".to_owned(), due - chrono::Duration::hours(24))));
        assert!(pending.iter().all(|(_, at)| *at > chrono::Utc::now()), "{pending:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn change_due_by_moves_the_timers_and_refuses_absurd_dates() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_due").await;
        let change = "mutation($input: ChangeDueByInput!) { changeDueBy(input: $input) { dispute { dueBy actBy version \
            timers { kind dueAt status } } userErrors { code message } } }";
        let input = |due_by: &str, version: i64| json!({ "input": { "id": id, "dueBy": due_by, "reason": "the processor extended it", "expectedVersion": version } });
        for (what, due_by, code) in [
            ("year 9999", "9999-12-31T00:00:00Z".to_owned(), "INVALID_INPUT"),
            ("the past", "2020-01-01T00:00:00Z".to_owned(), "INVALID_INPUT"),
        ] {
            let refused = app.gql(&app.analyst, change, input(&due_by, 1)).await;
            assert_eq!(refused.error_code(), code, "{what} on {}", app.label);
        }
        let stale = app.gql(&app.analyst, change, input(&due_in_days(60), 0)).await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT", "{}", app.label);
        let viewer = app.gql(&app.viewer, change, input(&due_in_days(60), 1)).await;
        assert_eq!(viewer.error_code(), "FORBIDDEN");
        assert_unchanged(&app, &id, 1, 1).await;
        let new_due = due_in_days(60);
        let changed = app.gql(&app.analyst, change, input(&new_due, 1)).await;
        let dispute = &changed.data()["changeDueBy"]["dispute"];
        let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        let due = chrono::DateTime::parse_from_rfc3339(&new_due).unwrap();
        assert_eq!(at(&dispute["dueBy"]), due, "{}", app.label);
        assert_eq!(at(&dispute["actBy"]), due - chrono::Duration::hours(24));
        let pending: Vec<(&str, chrono::DateTime<chrono::FixedOffset>)> = dispute["timers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "PENDING")
            .map(|t| (t["kind"].as_str().unwrap(), at(&t["dueAt"])))
            .collect();
        assert!(pending.contains(&("DEADLINE", due)), "{pending:?}");
        assert!(
            pending.contains(&("ACT_BY", due - chrono::Duration::hours(24))),
            "{pending:?}"
        );
        let dispute = get(&app, &id).await;
        let last = dispute["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["type"], "DUE_BY_CHANGED");
        app.stop().await;
    }
}

#[tokio::test]
async fn two_analysts_taking_one_dispute_exactly_one_wins() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let create = "mutation { createApiKey(input: {name: \"bruno\", role: ANALYST}) { apiKey { token } userErrors { code message } } }";
        let bruno = app.gql(&app.admin, create, json!({})).await.data()["createApiKey"]["apiKey"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { assignee version } userErrors { code message } } }";
        for round in 0..5 {
            let id = open_dispute(&app, &format!("dp_take_{round}")).await;
            let (a, b) = tokio::join!(
                app.gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": "alice"}})),
                app.gql(&bruno, assign, json!({"input": {"id": id, "assignee": "bruno"}}))
            );
            let winners: Vec<&str> = [(&a, "alice"), (&b, "bruno")]
                .iter()
                .filter(|(answer, _)| !answer.refused())
                .map(|(_, name)| *name)
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "round {round} on {}: {} / {}",
                app.label,
                a.body,
                b.body
            );
            let loser = if winners[0] == "alice" { &b } else { &a };
            assert_eq!(loser.error_code(), "VERSION_CONFLICT", "{}", loser.body);
            let dispute = get(&app, &id).await;
            assert_eq!(dispute["assignee"], winners[0], "{}", app.label);
            let assigned = dispute["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "ASSIGNED")
                .count();
            assert_eq!(assigned, 1, "the loser's take was not written");
        }
        // Stating whom one expects: a stale expectation is a conflict, also for a lead.
        let id = open_dispute(&app, "dp_take_expect").await;
        app.gql(&bruno, assign, json!({"input": {"id": id, "assignee": "bruno"}}))
            .await
            .data();
        let stale = app
            .gql(
                &app.lead,
                assign,
                json!({"input": {"id": id, "assignee": "alice", "expectedAssignee": null}}),
            )
            .await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT", "{}", app.label);
        // An analyst releases their own dispute, not someone else's.
        let not_hers = app
            .gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": null}}))
            .await;
        assert_eq!(not_hers.error_code(), "VERSION_CONFLICT", "{}", not_hers.body);
        let released = app
            .gql(&bruno, assign, json!({"input": {"id": id, "assignee": null}}))
            .await;
        assert_eq!(released.data()["assignDispute"]["dispute"]["assignee"], Value::Null);
        let taken = app
            .gql(&app.analyst, assign, json!({"input": {"id": id, "assignee": "alice"}}))
            .await;
        assert_eq!(taken.data()["assignDispute"]["dispute"]["assignee"], "alice");
        app.stop().await;
    }
}
