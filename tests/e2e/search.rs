//! The queue as a frontend uses it: every filter and search key, every sort order, pages both ways with their
//! edge cases, the audit trail, the CSV export and bulk work, on SQLite and PostgreSQL.

use serde_json::{Value, json};

use crate::app::{OPEN, TestApp, due_in_days, test_databases};

const PAGE: &str = "query($filter: DisputeFilter, $sort: DisputeSortInput, $first: Int, $after: String, \
    $last: Int, $before: String) { disputes(filter: $filter, sort: $sort, first: $first, after: $after, \
    last: $last, before: $before) { totalCount edges { cursor node { id processorDisputeId } } \
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

/// Six disputes that differ in every filtered field; `dp_4` ends withdrawn (needs no action).
struct Seeded {
    ids: Vec<String>,
}

/// processor, network, reason code, amount, currency, seller, email, days to due, stage.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<i64>,
    &'static str,
);

fn input(i: usize) -> Value {
    let (processor, network, code, minor, currency, seller, email, due, stage): Case = match i {
        0 => (
            "STRIPE",
            "VISA",
            "10.4",
            48_900,
            "EUR",
            "seller-a",
            Some("jeanne@example.fr"),
            Some(45),
            "CHARGEBACK",
        ),
        1 => (
            "ADYEN",
            "MASTERCARD",
            "4853",
            1_500,
            "USD",
            "seller-b",
            Some("Max.Muster@Example.com"),
            Some(10),
            "INQUIRY",
        ),
        2 => (
            "PAYPAL",
            "VISA",
            "13.1",
            12_000,
            "EUR",
            "seller-a",
            None,
            Some(90),
            "CHARGEBACK",
        ),
        3 => (
            "BRAINTREE",
            "MASTERCARD",
            "4837",
            99_900,
            "EUR",
            "seller-b",
            None,
            None,
            "CHARGEBACK",
        ),
        4 => (
            "STRIPE",
            "VISA",
            "13.1",
            5_000,
            "EUR",
            "seller-c",
            None,
            Some(20),
            "CHARGEBACK",
        ),
        _ => (
            "STRIPE",
            "VISA",
            "13.1",
            12_000,
            "EUR",
            "seller-c",
            None,
            Some(30),
            "CHARGEBACK",
        ),
    };
    let mut input = json!({
        "processor": processor,
        "processorDisputeId": format!("dp_{i}"),
        "paymentReference": format!("pi_{i}"),
        "orderReference": format!("ORD-{i}"),
        "sellerId": seller,
        "customer": { "name": "Jeanne Dupont", "email": email, "locale": "FR" },
        "amount": { "minorUnits": minor, "currency": currency },
        "network": network,
        "reasonCode": code,
        "stage": stage,
    });
    if let Some(days) = due {
        input["dueBy"] = json!(due_in_days(days));
    }
    input
}

/// Bob and Carol, whom the tests assign disputes to: assignees must be known to Verdict, and an active key's
/// name is.
async fn colleagues(db: &verdict_store::testing::TestDatabase) {
    let store = db.store().await.unwrap();
    for name in ["bob", "carol"] {
        verdict_api::auth::create_api_key(&store, name, verdict_api::auth::Role::Analyst, chrono::Utc::now())
            .await
            .unwrap();
    }
}

async fn seed(app: &TestApp) -> Seeded {
    let mut ids = Vec::new();
    for i in 0..6 {
        let answer = app.gql(&app.analyst, OPEN, json!({ "input": input(i) })).await;
        ids.push(
            answer.data()["openDispute"]["dispute"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { assignee } userErrors { code message } } }";
    app.gql(
        &app.analyst,
        assign,
        json!({"input": {"id": ids[0], "assignee": "alice"}}),
    )
    .await
    .data();
    app.gql(&app.lead, assign, json!({"input": {"id": ids[1], "assignee": "bob"}}))
        .await
        .data();
    // The worker may move the new dispute on meanwhile (a version conflict): read the version again.
    for attempt in 0.. {
        let version = app
            .gql(
                &app.viewer,
                "query($id: ID!) { dispute(id: $id) { version } }",
                json!({"id": ids[4]}),
            )
            .await
            .data()["dispute"]["version"]
            .as_i64()
            .unwrap();
        let withdraw = json!({"input": {"id": ids[4], "to": "WITHDRAWN", "reason": "cardholder withdrew", "expectedVersion": version}});
        let answer = app.gql(&app.lead, crate::app::TRANSITION, withdraw).await;
        if !answer.refused() {
            break;
        }
        assert!(
            attempt < 20 && answer.error_code() == "VERSION_CONFLICT",
            "{}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Seeded { ids }
}

/// The processor dispute ids of a page, in order.
fn names(answer: &crate::app::Answer) -> Vec<String> {
    answer.data()["disputes"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["processorDisputeId"].as_str().unwrap().to_owned())
        .collect()
}

async fn matching(app: &TestApp, token: &str, filter: Value) -> Vec<String> {
    let answer = app.gql(token, PAGE, json!({ "filter": filter, "first": 50 })).await;
    let mut found = names(&answer);
    assert_eq!(
        answer.data()["disputes"]["totalCount"].as_u64().unwrap() as usize,
        found.len(),
        "{}: totalCount of {filter}",
        app.label
    );
    found.sort();
    found
}

#[tokio::test]
async fn every_filter_and_search_key_narrows_the_queue() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        seed(&app).await;
        let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let v = &app.viewer;
        let cases: Vec<(Value, &[&str])> = vec![
            (json!({}), &["dp_0", "dp_1", "dp_2", "dp_3", "dp_4", "dp_5"]),
            (json!({"status": ["WITHDRAWN"]}), &["dp_4"]),
            (json!({"stage": ["INQUIRY"]}), &["dp_1"]),
            (json!({"processor": ["ADYEN", "PAYPAL"]}), &["dp_1", "dp_2"]),
            (json!({"network": ["MASTERCARD"]}), &["dp_1", "dp_3"]),
            (json!({"reasonCategory": ["FRAUD"]}), &["dp_0", "dp_3"]),
            (json!({"reasonCode": ["13.1"]}), &["dp_2", "dp_4", "dp_5"]),
            (json!({"assignee": {"user": "bob"}}), &["dp_1"]),
            (json!({"assignee": {"nobody": true}}), &["dp_2", "dp_3", "dp_4", "dp_5"]),
            (json!({"sellerId": "seller-a"}), &["dp_0", "dp_2"]),
            (json!({"currency": ["usd"]}), &["dp_1"]),
            (
                json!({"amount": {"currency": "EUR", "min": 5000, "max": 12000}}),
                &["dp_2", "dp_4", "dp_5"],
            ),
            (json!({"amount": {"currency": "EUR", "min": 50000}}), &["dp_3"]),
            (
                json!({"opened": {"from": hour_ago}}),
                &["dp_0", "dp_1", "dp_2", "dp_3", "dp_4", "dp_5"],
            ),
            (json!({"opened": {"to": hour_ago}}), &[]),
            (
                json!({"due": {"from": due_in_days(15), "to": due_in_days(50)}}),
                &["dp_0", "dp_4", "dp_5"],
            ),
            // act-by is a day before the due date: a window ending at due+0 (exclusive) still holds the dispute
            // due that day, whose act-by time lies a day earlier.
            (
                json!({"actBy": {"from": due_in_days(9), "to": due_in_days(10)}}),
                &["dp_1"],
            ),
            (
                json!({"actBy": {"from": due_in_days(10)}, "due": {"to": due_in_days(21)}}),
                &["dp_4"],
            ),
            (json!({"dueBefore": due_in_days(15)}), &["dp_1"]),
            (json!({"needsAction": false}), &["dp_4"]),
            (
                json!({"needsAction": true, "network": ["VISA"]}),
                &["dp_0", "dp_2", "dp_5"],
            ),
            (json!({"processorDisputeId": "dp_3"}), &["dp_3"]),
            (json!({"paymentReference": "pi_2"}), &["dp_2"]),
            (json!({"orderReference": " ORD-5 "}), &["dp_5"]),
        ];
        for (filter, expected) in cases {
            assert_eq!(
                matching(&app, v, filter.clone()).await,
                expected,
                "{}: {filter}",
                app.label
            );
        }
        // "me" is the caller; the email search ignores case and is for roles that see emails.
        assert_eq!(
            matching(&app, &app.analyst, json!({"assignee": {"me": true}})).await,
            ["dp_0"]
        );
        assert_eq!(
            matching(&app, &app.analyst, json!({"customerEmail": "max.muster@example.COM"})).await,
            ["dp_1"]
        );
        let probing = app
            .gql(v, PAGE, json!({"filter": {"customerEmail": "jeanne@example.fr"}}))
            .await;
        assert_eq!(probing.error_code(), "FORBIDDEN", "{}", app.label);
        for bad in [
            json!({"assignee": {"me": true, "nobody": true}}),
            json!({"amount": {"currency": "EUR", "min": 10, "max": 5}}),
            json!({"amount": {"currency": "XXQ"}}),
            json!({"opened": {"from": due_in_days(2), "to": due_in_days(1)}}),
            json!({"paymentReference": "   "}),
        ] {
            let answer = app.gql(v, PAGE, json!({ "filter": bad })).await;
            assert_eq!(answer.error_code(), "INVALID_INPUT", "{}: {bad}", app.label);
        }
        app.stop().await;
    }
}

async fn ordered(app: &TestApp, sort: Value) -> Vec<String> {
    names(&app.gql(&app.viewer, PAGE, json!({ "sort": sort, "first": 50 })).await)
}

#[tokio::test]
async fn each_sort_order_is_total_and_reverses() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        seed(&app).await;
        // dp_2 and dp_5 have the same amount: the id (creation order, UUID v7) breaks the tie.
        let by_amount = ["dp_1", "dp_4", "dp_2", "dp_5", "dp_0", "dp_3"];
        assert_eq!(ordered(&app, json!({"by": "AMOUNT"})).await, by_amount, "{}", app.label);
        let mut reversed = by_amount;
        reversed.reverse();
        assert_eq!(
            ordered(&app, json!({"by": "AMOUNT", "direction": "DESC"})).await,
            reversed
        );
        let by_due = ["dp_1", "dp_4", "dp_5", "dp_0", "dp_2", "dp_3"];
        assert_eq!(ordered(&app, json!({"by": "DUE_BY"})).await, by_due);
        assert_eq!(ordered(&app, json!({"by": "ACT_BY"})).await, by_due);
        assert_eq!(
            ordered(&app, json!(null)).await,
            by_due,
            "the default order is by due date"
        );
        let by_opened = ["dp_0", "dp_1", "dp_2", "dp_3", "dp_4", "dp_5"];
        assert_eq!(ordered(&app, json!({"by": "OPENED_AT"})).await, by_opened);
        app.stop().await;
    }
}

#[tokio::test]
async fn pages_walk_both_ways_with_clear_edges() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        seed(&app).await;
        let v = &app.viewer;
        let sort = json!({"by": "AMOUNT"});
        let all = ordered(&app, sort.clone()).await;
        // Forwards, two at a time.
        let mut walked = Vec::new();
        let mut after = Value::Null;
        let mut pages = 0;
        loop {
            let answer = app
                .gql(v, PAGE, json!({"sort": sort, "first": 2, "after": after}))
                .await;
            let info = answer.data()["disputes"]["pageInfo"].clone();
            assert_eq!(info["hasPreviousPage"], json!(pages > 0), "{}", app.label);
            walked.extend(names(&answer));
            pages += 1;
            after = info["endCursor"].clone();
            if info["hasNextPage"] == json!(false) {
                break;
            }
        }
        assert_eq!((walked.clone(), pages), (all.clone(), 3), "{}", app.label);
        // After the last row: an empty page that knows what lies before it.
        let past = app
            .gql(v, PAGE, json!({"sort": sort, "first": 2, "after": after}))
            .await;
        assert!(names(&past).is_empty());
        let info = &past.data()["disputes"]["pageInfo"];
        assert_eq!(
            (info["hasNextPage"].clone(), info["hasPreviousPage"].clone()),
            (json!(false), json!(true))
        );
        assert_eq!(info["startCursor"], Value::Null);
        // Backwards from the end, two at a time.
        let mut back = Vec::new();
        let mut before = Value::Null;
        loop {
            let answer = app
                .gql(v, PAGE, json!({"sort": sort, "last": 2, "before": before}))
                .await;
            let info = answer.data()["disputes"]["pageInfo"].clone();
            let mut page = names(&answer);
            assert_eq!(page.len(), 2, "{}", app.label);
            page.extend(back);
            back = page;
            before = info["startCursor"].clone();
            assert_eq!(info["hasNextPage"], json!(back.len() > 2), "{}", app.label);
            if info["hasPreviousPage"] == json!(false) {
                break;
            }
        }
        assert_eq!(back, all, "{}", app.label);
        // The page before the third row, from its cursor: the first two.
        let third =
            app.gql(v, PAGE, json!({"sort": sort, "first": 3})).await.data()["disputes"]["edges"][2]["cursor"].clone();
        let before_third = app
            .gql(v, PAGE, json!({"sort": sort, "last": 5, "before": third}))
            .await;
        assert_eq!(names(&before_third), all[..2].to_vec());
        assert_eq!(before_third.data()["disputes"]["pageInfo"]["hasPreviousPage"], false);
        assert_eq!(before_third.data()["disputes"]["pageInfo"]["hasNextPage"], true);
        // An empty page asked for, and an empty result.
        let none = app.gql(v, PAGE, json!({"first": 0})).await;
        assert!(names(&none).is_empty());
        assert_eq!(none.data()["disputes"]["pageInfo"]["hasNextPage"], true);
        let nothing = app
            .gql(
                v,
                PAGE,
                json!({"filter": {"sellerId": "nobody-sells-this"}, "last": 10}),
            )
            .await;
        assert!(names(&nothing).is_empty());
        assert_eq!(nothing.data()["disputes"]["totalCount"], 0);
        // The cap, mixed directions, and a cursor of another order are clear errors.
        // (a small selection, so that the query's cost stays under its own limit and the cap itself answers)
        let small =
            "query($first: Int, $last: Int) { disputes(first: $first, last: $last) { pageInfo { hasNextPage } } }";
        let capped = app.gql(v, small, json!({"first": 501})).await;
        assert_eq!(capped.error_code(), "INVALID_INPUT");
        assert!(capped.body["errors"][0]["message"].as_str().unwrap().contains("500"));
        assert_eq!(
            app.gql(v, small, json!({"last": 501})).await.error_code(),
            "INVALID_INPUT"
        );
        assert_eq!(
            app.gql(v, PAGE, json!({"first": 1, "last": 1})).await.error_code(),
            "INVALID_INPUT"
        );
        assert_eq!(
            app.gql(v, PAGE, json!({"first": 1, "before": third}))
                .await
                .error_code(),
            "INVALID_INPUT"
        );
        let other_order = app
            .gql(
                v,
                PAGE,
                json!({"sort": {"by": "OPENED_AT"}, "first": 1, "after": third}),
            )
            .await;
        assert_eq!(other_order.error_code(), "INVALID_INPUT");
        app.stop().await;
    }
}

const AUDIT: &str = "query($filter: AuditFilter, $first: Int = 50, $after: String) { audit(filter: $filter, first: $first, \
    after: $after) { edges { cursor node { disputeId event { type actor details at } } } pageInfo { hasNextPage endCursor } } }";

fn audit_types(answer: &crate::app::Answer) -> Vec<String> {
    answer.data()["audit"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["event"]["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_audit_trail_tells_who_did_what_to_leads_only() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        let seeded = seed(&app).await;
        let lead = &app.lead;
        let by_alice = app
            .gql(lead, AUDIT, json!({"filter": {"actor": "analyst:alice"}, "first": 100}))
            .await;
        let kinds = audit_types(&by_alice);
        assert_eq!(
            kinds.iter().filter(|k| *k == "OPENED").count(),
            6,
            "{}: {kinds:?}",
            app.label
        );
        assert_eq!(kinds.iter().filter(|k| *k == "ASSIGNED").count(), 1);
        let text = by_alice.body.to_string();
        assert!(
            !text.contains("jeanne@example.fr") && !text.contains("Jeanne"),
            "{text}"
        );
        let assigned = app.gql(lead, AUDIT, json!({"filter": {"types": ["ASSIGNED"]}})).await;
        let entries = assigned.data()["audit"]["edges"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 2);
        // Newest first: lena assigned bob after alice took hers.
        assert_eq!(entries[0]["node"]["event"]["actor"], "analyst:lena");
        assert_eq!(entries[0]["node"]["disputeId"], json!(seeded.ids[1]));
        let by_lena = app
            .gql(lead, AUDIT, json!({"filter": {"actor": "analyst:lena"}, "first": 1}))
            .await;
        assert_eq!(by_lena.data()["audit"]["pageInfo"]["hasNextPage"], true);
        let rest = app
            .gql(
                lead,
                AUDIT,
                json!({"filter": {"actor": "analyst:lena"}, "first": 10, "after": by_lena.data()["audit"]["pageInfo"]["endCursor"]}),
            )
            .await;
        assert_eq!(
            audit_types(&by_lena).len() + audit_types(&rest).len(),
            2,
            "assigned and withdrawn"
        );
        let future = app
            .gql(lead, AUDIT, json!({"filter": {"at": {"from": due_in_days(1)}}}))
            .await;
        assert!(audit_types(&future).is_empty());
        assert_eq!(app.gql(&app.analyst, AUDIT, json!({})).await.error_code(), "FORBIDDEN");
        assert!(
            app.gql(&app.admin, AUDIT, json!({})).await.data()["audit"]["edges"]
                .as_array()
                .unwrap()
                .len()
                > 6
        );
        assert_eq!(
            app.gql(lead, AUDIT, json!({"filter": {"types": ["made_up"]}}))
                .await
                .error_code(),
            "INVALID_INPUT"
        );
        app.stop().await;
    }
}

async fn export(app: &TestApp, token: Option<&str>, query: &[(&str, String)]) -> (u16, String) {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    let mut request = app
        .client
        .get(app.url(&format!("/exports/disputes.csv?{}", pairs.join("&"))));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_filtered_list_exports_as_csv_masked_per_role() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        seed(&app).await;
        let filter = json!({"network": ["MASTERCARD"]}).to_string();
        let sort = json!({"by": "AMOUNT", "direction": "DESC"}).to_string();
        let query = [("filter", filter.clone()), ("sort", sort)];
        let (status, viewer) = export(&app, Some(&app.viewer), &query).await;
        assert_eq!(status, 200, "{}: {viewer}", app.label);
        let lines: Vec<&str> = viewer.lines().collect();
        assert_eq!(lines.len(), 3, "{viewer}");
        assert!(lines[0].starts_with("id,processor,processor_dispute_id,"));
        assert!(lines[1].contains(",dp_3,") && lines[2].contains(",dp_1,"), "{viewer}");
        assert!(
            lines[2].contains("M***@Example.com") && !viewer.contains("Max.Muster"),
            "{viewer}"
        );
        let (_, analyst) = export(&app, Some(&app.analyst), &query).await;
        assert!(analyst.contains("Max.Muster@Example.com"), "{analyst}");
        // A list longer than one page of the stream comes whole.
        let (_, everything) = export(&app, Some(&app.viewer), &[]).await;
        assert_eq!(everything.lines().count(), 7);
        assert_eq!(export(&app, None, &query).await.0, 401);
        let bad = [(
            "filter",
            json!({"amount": {"currency": "EUR", "min": 9, "max": 1}}).to_string(),
        )];
        assert_eq!(export(&app, Some(&app.viewer), &bad).await.0, 400);
        assert_eq!(
            export(&app, Some(&app.viewer), &[("filter", "{not json".to_owned())])
                .await
                .0,
            400
        );
        assert_eq!(
            export(&app, Some(&app.viewer), &[("page", "2".to_owned())]).await.0,
            400
        );
        let probing = [("filter", json!({"customerEmail": "jeanne@example.fr"}).to_string())];
        assert_eq!(export(&app, Some(&app.viewer), &probing).await.0, 403);
        app.stop().await;
    }
}

const BULK_ASSIGN: &str = "mutation($input: BulkAssignInput!) { bulkAssign(input: $input) { \
    results { disputeId outcome code message } job { id status total processed } userErrors { code message } } }";

#[tokio::test]
async fn bulk_actions_report_each_item_and_refusals_spare_neighbours() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        let seeded = seed(&app).await;
        // The analyst takes every dispute of seller-a and seller-b: dp_0 is already theirs, dp_1 is bob's.
        let input = json!({"target": {"filter": {"sellerId": "seller-b"}}, "assignee": "alice"});
        let answer = app.gql(&app.analyst, BULK_ASSIGN, json!({ "input": input })).await;
        let results = answer.data()["bulkAssign"]["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), 2, "{}: {results:?}", app.label);
        let by_id = |id: &str| results.iter().find(|r| r["disputeId"] == json!(id)).unwrap().clone();
        assert_eq!(by_id(&seeded.ids[1])["outcome"], "CONFLICT", "bob's dispute");
        assert_eq!(by_id(&seeded.ids[1])["code"], "VERSION_CONFLICT");
        assert_eq!(by_id(&seeded.ids[3])["outcome"], "OK");
        // A list of ids with one unknown: the others still happen.
        let unknown = uuid::Uuid::now_v7().to_string();
        let input =
            json!({"target": {"ids": [seeded.ids[2], unknown, seeded.ids[5]]}, "assignee": "carol", "reason": "sweep"});
        let answer = app.gql(&app.lead, BULK_ASSIGN, json!({ "input": input })).await;
        let outcomes: Vec<Value> = answer.data()["bulkAssign"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].clone())
            .collect();
        assert_eq!(outcomes, [json!("OK"), json!("ERROR"), json!("OK")]);
        // Each item's code is an `ErrorCode`, the one the single mutation answers (NOT_FOUND for the unknown id).
        let codes: Vec<Value> = answer.data()["bulkAssign"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].clone())
            .collect();
        assert_eq!(codes, [Value::Null, json!("NOT_FOUND"), Value::Null]);
        let carol = matching(&app, &app.viewer, json!({"assignee": {"user": "carol"}})).await;
        assert_eq!(carol, ["dp_2", "dp_5"]);
        // Analysts may not assign others, item by item; leads' corrections and messages report the same way.
        let others = json!({"target": {"ids": [seeded.ids[2]]}, "assignee": "dave"});
        let answer = app.gql(&app.analyst, BULK_ASSIGN, json!({ "input": others })).await;
        assert_eq!(answer.data()["bulkAssign"]["results"][0]["outcome"], "NOT_ALLOWED");
        assert_eq!(answer.data()["bulkAssign"]["results"][0]["code"], "FORBIDDEN");
        let transition = "mutation($input: BulkTransitionInput!) { bulkTransition(input: $input) { results { disputeId outcome code } userErrors { code message } } }";
        let input = json!({"target": {"ids": [seeded.ids[4], seeded.ids[5]]}, "to": "TRIAGED", "reason": "batch"});
        assert_eq!(
            app.gql(&app.analyst, transition, json!({ "input": input.clone() }))
                .await
                .error_code(),
            "FORBIDDEN"
        );
        let answer = app.gql(&app.lead, transition, json!({ "input": input })).await;
        let results = answer.data()["bulkTransition"]["results"].as_array().unwrap().clone();
        // The app's own worker may move dp_5 on meanwhile (as `seed` says): a conflict is that item's own answer,
        // and asking again moves it.
        let mut outcome = results[1]["outcome"].clone();
        for _ in 0..20 {
            if outcome != "CONFLICT" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let again = json!({"target": {"ids": [seeded.ids[5]]}, "to": "TRIAGED", "reason": "batch"});
            let answer = app.gql(&app.lead, transition, json!({ "input": again })).await;
            outcome = answer.data()["bulkTransition"]["results"][0]["outcome"].clone();
        }
        assert_eq!(outcome, "OK", "{}: {results:?}", app.label);
        assert_ne!(
            results[0]["outcome"], "OK",
            "a withdrawn dispute is not triaged again: {results:?}"
        );
        let message = "mutation($input: BulkMessageInput!) { bulkMessage(input: $input) { results { outcome code } userErrors { code message } } }";
        let input = json!({"target": {"filter": {"processorDisputeId": "dp_0"}}, "template": "SELLER_CASE_UPDATE", "text": "Update"});
        let answer = app.gql(&app.analyst, message, json!({ "input": input })).await;
        assert_eq!(
            answer.data()["bulkMessage"]["results"][0]["outcome"],
            "OK",
            "{}",
            app.label
        );
        let both = json!({"target": {"ids": [seeded.ids[0]], "filter": {}}, "assignee": "alice"});
        assert_eq!(
            app.gql(&app.lead, BULK_ASSIGN, json!({ "input": both }))
                .await
                .error_code(),
            "INVALID_INPUT"
        );
        // Every change is in history with its actor.
        let audit = app
            .gql(
                &app.lead,
                AUDIT,
                json!({"filter": {"actor": "analyst:lena", "types": ["ASSIGNED"]}, "first": 50}),
            )
            .await;
        assert_eq!(audit_types(&audit).len(), 3, "bob's, and carol's two");
        app.stop().await;
    }
}

/// 10,000 open disputes written straight into the projection, as `verdict bench` loads them.
async fn seed_many(db: &verdict_store::testing::TestDatabase, count: u32) {
    let store = db.store().await.unwrap();
    let sql = if store.is_postgres() {
        format!(
            "INSERT INTO disputes (id, processor, processor_dispute_id, payment_reference, customer_locale, amount_minor, \
             currency, network, reason_code, reason_code_raw, reason_category, stage, status, due_by, sort_due_at, opened_at, \
             seller_id, version, created_at, updated_at) \
             SELECT gen_random_uuid(), 'stripe', 'many-' || g, 'pi_many_' || g, 'en', 1000 + g, 'EUR', 'visa', '13.1', \
             '13.1', 'consumer_dispute', 'chargeback', 'notified', now() + interval '30 days', now() + interval '30 days', \
             now(), 'seller-many', 1, now(), now() FROM generate_series(1, {count}) AS g"
        )
    } else {
        format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {count}) \
             INSERT INTO disputes (id, processor, processor_dispute_id, payment_reference, customer_locale, amount_minor, \
             currency, network, reason_code, reason_code_raw, reason_category, stage, status, due_by, sort_due_at, opened_at, \
             seller_id, version, created_at, updated_at) \
             SELECT randomblob(16), 'stripe', 'many-' || x, 'pi_many_' || x, 'en', 1000 + x, 'EUR', 'visa', '13.1', '13.1', \
             'consumer_dispute', 'chargeback', 'notified', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+30 days'), \
             strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+30 days'), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), \
             'seller-many', 1, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') FROM g"
        )
    };
    store.execute_unprepared(&sql).await.unwrap();
}

#[tokio::test]
async fn a_bulk_assign_of_ten_thousand_disputes_runs_as_a_job_to_the_end() {
    // On PostgreSQL, the database of the scale-out replicas; SQLite runs the 600-dispute job that resumes after a
    // restart (below), which keeps CI within its time budget.
    let databases = test_databases().await.unwrap();
    let postgres: Vec<_> = databases
        .into_iter()
        .filter(|db| db.url.starts_with("postgres"))
        .collect();
    for db in postgres {
        let mut app = TestApp::start(&db).await;
        colleagues(&db).await;
        seed_many(&db, 10_000).await;
        // One of them is already someone else's, for the analyst taking them all.
        let taken = app
            .gql(&app.viewer, PAGE, json!({"filter": {"processorDisputeId": "many-77"}}))
            .await
            .data()["disputes"]["edges"][0]["node"]["id"]
            .clone();
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { assignee } userErrors { code message } } }";
        app.gql(&app.lead, assign, json!({"input": {"id": taken, "assignee": "bob"}}))
            .await
            .data();
        let input = json!({"target": {"filter": {"sellerId": "seller-many"}}, "assignee": "alice"});
        let answer = app.gql(&app.analyst, BULK_ASSIGN, json!({ "input": input })).await;
        let job = answer.data()["bulkAssign"]["job"].clone();
        assert_eq!(job["total"], 10_000, "{}: {job}", app.label);
        assert_eq!(answer.data()["bulkAssign"]["results"], Value::Null);
        let progress = "query($id: ID!) { bulkJob(id: $id) { status total processed succeeded conflicts notAllowed errors \
            items(failuresOnly: true) { position result { disputeId outcome code } } } }";
        let mut last = 0;
        let done = loop {
            let answer = app.gql(&app.analyst, progress, json!({"id": job["id"]})).await;
            let state = answer.data()["bulkJob"].clone();
            let processed = state["processed"].as_i64().unwrap();
            assert!(processed >= last, "progress only grows");
            last = processed;
            if state["status"] == "DONE" {
                break state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        assert_eq!(done["processed"], 10_000, "{}: {done}", app.label);
        assert_eq!(done["succeeded"], 9_999);
        assert_eq!(done["conflicts"], 1);
        assert_eq!(done["items"][0]["result"]["disputeId"], taken);
        assert_eq!(done["items"][0]["result"]["code"], "VERSION_CONFLICT");
        let mine = app
            .gql(
                &app.analyst,
                PAGE,
                json!({"filter": {"assignee": {"me": true}}, "first": 1}),
            )
            .await;
        assert_eq!(mine.data()["disputes"]["totalCount"], 9_999);
        // Someone else's job is not the viewer's to read.
        assert_eq!(
            app.gql(&app.viewer, progress, json!({"id": job["id"]}))
                .await
                .error_code(),
            "FORBIDDEN"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_bulk_job_interrupted_by_a_restart_resumes_where_it_stopped() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        colleagues(&db).await;
        seed_many(&db, 600).await;
        let input = json!({"target": {"filter": {"sellerId": "seller-many"}}, "assignee": "carol"});
        let answer = app.gql(&app.lead, BULK_ASSIGN, json!({ "input": input })).await;
        let id = answer.data()["bulkAssign"]["job"]["id"].clone();
        let mut app = app.restart(&db).await;
        let progress = "query($id: ID!) { bulkJob(id: $id) { status processed succeeded } }";
        let done = loop {
            let state = app.gql(&app.lead, progress, json!({"id": id})).await.data()["bulkJob"].clone();
            if state["status"] == "DONE" {
                break state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        };
        assert_eq!(
            (done["processed"].clone(), done["succeeded"].clone()),
            (json!(600), json!(600)),
            "{}",
            app.label
        );
        let events = app
            .gql(
                &app.lead,
                AUDIT,
                json!({"filter": {"types": ["ASSIGNED"]}, "first": 500}),
            )
            .await;
        let more = app
            .gql(
                &app.lead,
                AUDIT,
                json!({"filter": {"types": ["ASSIGNED"]}, "first": 500, "after": events.data()["audit"]["pageInfo"]["endCursor"]}),
            )
            .await;
        assert_eq!(
            audit_types(&events).len() + audit_types(&more).len(),
            600,
            "each dispute assigned once, none twice across the restart"
        );
        app.stop().await;
    }
}
