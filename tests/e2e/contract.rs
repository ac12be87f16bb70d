//! The typed contract, checked from the schema itself: every type, field, argument and enum value is
//! described; every query field and mutation is called by every role and answers as the rule table below says
//! (so a new root field without a rule fails here); personal fields are masked by role; mutations answer
//! refusals as `userErrors` and authorization as GraphQL errors.

use apollo_compiler::Schema;
use apollo_compiler::ast::Type;
use apollo_compiler::schema::ExtendedType;
use serde_json::json;

use crate::app::{OPEN, TestApp, open_input, test_databases};

fn schema() -> Schema {
    Schema::parse_and_validate(verdict_api::schema_sdl(), "schema.graphql")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
}

fn missing(description: &Option<apollo_compiler::Node<str>>) -> bool {
    description.as_deref().is_none_or(|d| d.trim().is_empty())
}

#[test]
fn every_type_field_argument_and_enum_value_is_described() {
    let schema = schema();
    let mut undocumented = Vec::new();
    for (name, ty) in &schema.types {
        if ty.is_built_in() {
            continue;
        }
        let described = match ty {
            ExtendedType::Scalar(t) => !missing(&t.description),
            ExtendedType::Object(t) => !missing(&t.description),
            ExtendedType::Interface(t) => !missing(&t.description),
            ExtendedType::Union(t) => !missing(&t.description),
            ExtendedType::Enum(t) => !missing(&t.description),
            ExtendedType::InputObject(t) => !missing(&t.description),
        };
        if !described {
            undocumented.push(format!("type {name}"));
        }
        let fields = match ty {
            ExtendedType::Object(t) => Some(&t.fields),
            ExtendedType::Interface(t) => Some(&t.fields),
            _ => None,
        };
        for (field, def) in fields.into_iter().flatten() {
            if missing(&def.description) {
                undocumented.push(format!("field {name}.{field}"));
            }
            for arg in &def.arguments {
                if missing(&arg.description) {
                    undocumented.push(format!("argument {name}.{field}({})", arg.name));
                }
            }
        }
        if let ExtendedType::InputObject(t) = ty {
            for (field, def) in &t.fields {
                if missing(&def.description) {
                    undocumented.push(format!("input field {name}.{field}"));
                }
            }
        }
        if let ExtendedType::Enum(t) = ty {
            for (value, def) in &t.values {
                if missing(&def.description) {
                    undocumented.push(format!("enum value {name}.{value}"));
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "{} undocumented schema items (add a doc comment or `desc`):\n{}",
        undocumented.len(),
        undocumented.join("\n")
    );
}

#[test]
fn every_mutation_answers_a_payload_with_user_errors() {
    let schema = schema();
    let ExtendedType::Object(mutation) = &schema.types["Mutation"] else {
        panic!("no Mutation root");
    };
    for (name, field) in &mutation.fields {
        let payload = field.ty.inner_named_type();
        assert!(field.ty.is_non_null(), "{name} may answer null");
        assert!(
            payload.as_str().ends_with("Payload"),
            "{name} answers {payload}, not a payload type"
        );
        let ExtendedType::Object(object) = &schema.types[payload] else {
            panic!("{payload} is not an object");
        };
        let user_errors = object
            .fields
            .get("userErrors")
            .unwrap_or_else(|| panic!("{payload} has no userErrors"));
        assert_eq!(user_errors.ty.to_string(), "[UserError!]!", "{payload}.userErrors");
    }
    for root in ["Query", "Mutation", "Subscription"] {
        assert!(schema.types.contains_key(root), "no {root} root type");
    }
}

/// The least role each root field needs. A field of the schema missing here, or a rule naming no field, fails
/// `every_root_field_is_authorized_as_its_rule_says`: a new query or mutation needs a rule first.
const RULES: &[(&str, Role)] = &[
    ("Query.dispute", Role::Viewer),
    ("Query.disputes", Role::Viewer),
    ("Query.audit", Role::Lead),
    ("Query.bulkJob", Role::Analyst),
    ("Query.mailbox", Role::Viewer),
    ("Query.deadLetteredSteps", Role::Analyst),
    ("Query.apiKeys", Role::Admin),
    ("Query.sellerRecoveries", Role::Lead),
    ("Query.sellerDisputeRates", Role::Lead),
    ("Query.users", Role::Lead),
    ("Query.me", Role::Viewer),
    ("Query.order", Role::Viewer),
    ("Query.disputePatterns", Role::Analyst),
    ("Query.disputeMonitoring", Role::Analyst),
    ("Query.policy", Role::Analyst),
    ("Query.policies", Role::Lead),
    ("Query.policyApprovals", Role::Lead),
    ("Query.policyBacktest", Role::Lead),
    ("Mutation.openDispute", Role::Analyst),
    ("Mutation.transitionDispute", Role::Lead),
    ("Mutation.changeDueBy", Role::Analyst),
    ("Mutation.assignDispute", Role::Analyst),
    ("Mutation.createSellerUploadLink", Role::Analyst),
    ("Mutation.addNote", Role::Analyst),
    ("Mutation.retryStep", Role::Lead),
    ("Mutation.cancelStep", Role::Lead),
    ("Mutation.revokeApiKey", Role::Admin),
    ("Mutation.addEvidence", Role::Analyst),
    ("Mutation.removeEvidence", Role::Analyst),
    ("Mutation.drawEvidenceFromFacts", Role::Analyst),
    ("Mutation.createApiKey", Role::Admin),
    ("Mutation.recordOrder", Role::Lead),
    ("Mutation.linkOrder", Role::Analyst),
    ("Mutation.submitDefense", Role::Analyst),
    ("Mutation.acceptDispute", Role::Analyst),
    ("Mutation.refund", Role::Analyst),
    ("Mutation.resolveWithRefund", Role::Analyst),
    ("Mutation.messageCustomer", Role::Analyst),
    ("Mutation.messageSeller", Role::Analyst),
    ("Mutation.generateDefenseDocument", Role::Analyst),
    ("Mutation.bulkAssign", Role::Analyst),
    ("Mutation.bulkTransition", Role::Lead),
    ("Mutation.bulkMessage", Role::Analyst),
    ("Mutation.savePolicy", Role::Lead),
    ("Mutation.activatePolicy", Role::Lead),
    ("Mutation.approvePolicyAction", Role::Lead),
    ("Mutation.rejectPolicyAction", Role::Lead),
    ("Mutation.startPolicyBacktest", Role::Lead),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Analyst,
    Lead,
    Admin,
}

/// A literal of `ty` with every required part filled in: `id` for IDs, the first value of enums, the
/// required fields of input objects. Enough to reach the resolver, which checks the role first.
fn literal(schema: &Schema, ty: &Type, id: &str) -> String {
    match ty {
        Type::List(inner) | Type::NonNullList(inner) => format!("[{}]", literal(schema, inner, id)),
        Type::Named(name) | Type::NonNullNamed(name) => match name.as_str() {
            "ID" => format!("{id:?}"),
            "String" => "\"x\"".to_owned(),
            "Int" | "MinorUnits" => "1".to_owned(),
            "Float" => "1.0".to_owned(),
            "Boolean" => "false".to_owned(),
            "DateTime" => "\"2026-12-24T12:00:00Z\"".to_owned(),
            "JSON" => "{}".to_owned(),
            other => match &schema.types[other] {
                ExtendedType::Enum(e) => e.values.keys().next().unwrap().to_string(),
                ExtendedType::InputObject(input) => {
                    let fields: Vec<String> = input
                        .fields
                        .iter()
                        .filter(|(_, f)| f.ty.is_non_null() && f.default_value.is_none())
                        .map(|(n, f)| format!("{n}: {}", literal(schema, &f.ty, id)))
                        .collect();
                    format!("{{ {} }}", fields.join(", "))
                }
                _ => panic!("no literal for {other}"),
            },
        },
    }
}

/// `root { field(required args) { __typename } }` for every field of `root`.
fn root_calls(schema: &Schema, root: &str, id: &str) -> Vec<(String, String)> {
    let ExtendedType::Object(object) = &schema.types[root] else {
        panic!("no {root}");
    };
    let keyword = if root == "Mutation" { "mutation" } else { "query" };
    object
        .fields
        .iter()
        .map(|(name, field)| {
            let args: Vec<String> = field
                .arguments
                .iter()
                .filter(|a| a.ty.is_non_null() && a.default_value.is_none())
                .map(|a| format!("{}: {}", a.name, literal(schema, &a.ty, id)))
                .collect();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({})", args.join(", "))
            };
            let selection = match &schema.types[field.ty.inner_named_type()] {
                ExtendedType::Object(_) | ExtendedType::Interface(_) | ExtendedType::Union(_) => "{ __typename }",
                _ => "",
            };
            (
                format!("{root}.{name}"),
                format!("{keyword} {{ {name}{args} {selection} }}"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_root_field_is_authorized_as_its_rule_says() {
    let schema = schema();
    let dbs = test_databases().await.unwrap();
    // One app and one dispute serve every call: the matrix is about who may call, not what a call changes.
    let db = &dbs[0];
    let app = TestApp::start(db).await;
    let opened = app
        .gql(&app.analyst, OPEN, json!({"input": open_input("dp_contract_matrix")}))
        .await;
    let id = opened.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let calls: Vec<(String, String)> = ["Query", "Mutation"]
        .iter()
        .flat_map(|root| root_calls(&schema, root, &id))
        .collect();
    let named: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    let without_rule: Vec<&&str> = named.iter().filter(|n| !RULES.iter().any(|(r, _)| r == *n)).collect();
    assert!(
        without_rule.is_empty(),
        "root fields without an authorization rule: {without_rule:?}"
    );
    let stale: Vec<&str> = RULES.iter().map(|(r, _)| *r).filter(|r| !named.contains(r)).collect();
    assert!(stale.is_empty(), "rules naming no field of the schema: {stale:?}");

    let roles = [
        (Role::Viewer, app.viewer.clone()),
        (Role::Analyst, app.analyst.clone()),
        (Role::Lead, app.lead.clone()),
        (Role::Admin, app.admin.clone()),
    ];
    let mut wrong = Vec::new();
    for (name, operation) in &calls {
        let least = RULES.iter().find(|(r, _)| r == name).unwrap().1;
        let anonymous = app.gql_as(None, operation, json!({})).await;
        if anonymous.status != 401 || anonymous.error_code() != "UNAUTHENTICATED" {
            wrong.push(format!(
                "{name} without a token: {} {}",
                anonymous.status, anonymous.body
            ));
        }
        for (role, token) in &roles {
            let answer = app.gql(token, operation, json!({})).await;
            let codes: Vec<&str> = answer.body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("(no code)"))
                .collect();
            // Every error must be a resolver's (with a path): the generated call itself must be valid.
            let invalid = answer.body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e.get("path").is_none());
            assert!(
                !codes.contains(&"(no code)") && !invalid,
                "{name} as {role:?}: the generated operation is not valid: {}",
                answer.body
            );
            let forbidden = codes.contains(&"FORBIDDEN");
            match (*role >= least, forbidden) {
                (true, true) => wrong.push(format!("{name} as {role:?} is refused: {}", answer.body)),
                (false, false) => wrong.push(format!("{name} as {role:?} is not refused: {}", answer.body)),
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} on {}:\n{}",
        wrong.len(),
        app.label,
        wrong.join("\n")
    );
}

#[tokio::test]
async fn personal_fields_are_masked_below_analyst_and_whole_above() {
    let db = &test_databases().await.unwrap()[0];
    let app = TestApp::start(db).await;
    let opened = app
        .gql(&app.analyst, OPEN, json!({"input": open_input("dp_contract_masking")}))
        .await;
    let id = opened.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let add = "mutation($input: AddEvidenceInput!) { addEvidence(input: $input) { dispute { version } userErrors { code } } }";
    let version = opened.data()["openDispute"]["dispute"]["version"].as_i64().unwrap();
    app.gql(
        &app.analyst,
        add,
        json!({"input": {"id": id, "expectedVersion": version, "kind": "CUSTOMER_COMMUNICATION",
                         "text": "Jeanne Dupont wrote on 2 October"}}),
    )
    .await
    .data();
    let facts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::schema::repo_file("tests/fixtures/orders/order-a17.json")).unwrap(),
    )
    .unwrap();
    let record = "mutation($input: RecordOrderInput!) { recordOrder(input: $input) { outcome userErrors { code } } }";
    app.gql(&app.lead, record, json!({"input": {"facts": facts}}))
        .await
        .data();
    let read = "query($id: ID!) { dispute(id: $id) { customer { name email } evidence { text } } \
                order(reference: \"A-17\") { customer { name email } messages { body } } }";
    for (role, token, masked) in [
        ("viewer", &app.viewer, true),
        ("analyst", &app.analyst, false),
        ("lead", &app.lead, false),
        ("admin", &app.admin, false),
    ] {
        let answer = app.gql(token, read, json!({"id": id})).await;
        let data = answer.data();
        let customer = &data["dispute"]["customer"];
        let order = &data["order"];
        if masked {
            assert_eq!(customer["name"], "J***", "{role}");
            assert_eq!(customer["email"], "j***@example.fr", "{role}");
            assert!(data["dispute"]["evidence"][0]["text"].is_null(), "{role}: {data}");
            assert!(
                !order["customer"]["email"].as_str().unwrap().starts_with("jeanne"),
                "{role}: {order}"
            );
            assert!(
                order["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m["body"].is_null()),
                "{role}"
            );
        } else {
            assert_eq!(customer["name"], "Jeanne Dupont", "{role}");
            assert_eq!(customer["email"], "jeanne.dupont@example.fr", "{role}");
            assert_eq!(
                data["dispute"]["evidence"][0]["text"], "Jeanne Dupont wrote on 2 October",
                "{role}"
            );
            assert!(order["customer"]["email"].as_str().unwrap().contains('@'), "{role}");
        }
        let text = answer.body.to_string();
        assert_eq!(text.contains("jeanne.dupont@example.fr"), !masked, "{role}: {text}");
    }
}

#[tokio::test]
async fn refusals_are_user_errors_and_authorization_stays_an_error() {
    let db = &test_databases().await.unwrap()[0];
    let app = TestApp::start(db).await;
    let opened = app
        .gql(&app.analyst, OPEN, json!({"input": open_input("dp_contract_refusals")}))
        .await;
    let dispute = opened.data()["openDispute"]["dispute"].clone();
    assert!(opened.user_errors().is_empty());
    let id = dispute["id"].as_str().unwrap();
    let note = "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { version } \
                steps { kind } timers { kind } userErrors { code message field } } }";
    let accept = "mutation($input: AcceptDisputeInput!) { acceptDispute(input: $input) { dispute { status } \
                  steps { kind status } timers { kind } userErrors { code message field } } }";

    // A stale version: a user error naming the argument, no dispute, nothing changed.
    let stale = app
        .gql(
            &app.analyst,
            accept,
            json!({"input": {"id": id, "expectedVersion": 99}}),
        )
        .await;
    assert!(stale.body.get("errors").is_none(), "{}", stale.body);
    let payload = &stale.body["data"]["acceptDispute"];
    assert!(payload["dispute"].is_null());
    assert_eq!(payload["userErrors"][0]["code"], "VERSION_CONFLICT");
    assert_eq!(payload["userErrors"][0]["field"], json!(["input", "expectedVersion"]));
    assert_eq!(payload["steps"], json!([]));

    // An unknown dispute: NOT_FOUND on the id.
    let unknown = app
        .gql(
            &app.analyst,
            note,
            json!({"input": {"id": "0193a3c0-0000-7000-8000-000000000009", "note": "x"}}),
        )
        .await;
    assert_eq!(unknown.body["data"]["addNote"]["userErrors"][0]["code"], "NOT_FOUND");
    assert_eq!(
        unknown.body["data"]["addNote"]["userErrors"][0]["field"],
        json!(["input", "id"])
    );

    // A viewer is not allowed: a GraphQL error with its code, no payload.
    let viewer = app
        .gql(&app.viewer, note, json!({"input": {"id": id, "note": "x"}}))
        .await;
    assert_eq!(viewer.body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert!(viewer.body["data"].is_null(), "{}", viewer.body);

    // Accepting at the version seen: the acceptance step is in the payload, and accepting again is illegal.
    let version = dispute["version"].as_i64().unwrap();
    let accepted = app
        .gql(
            &app.analyst,
            accept,
            json!({"input": {"id": id, "expectedVersion": version}}),
        )
        .await;
    let payload = &accepted.data()["acceptDispute"];
    assert_eq!(payload["dispute"]["status"], "ACCEPTED");
    assert_eq!(payload["steps"][0]["kind"], "ACCEPT_AT_PROCESSOR", "{payload}");
    assert_eq!(payload["steps"][0]["status"], "PENDING");
    let again = app
        .gql(
            &app.analyst,
            accept,
            json!({"input": {"id": id, "expectedVersion": version + 1}}),
        )
        .await;
    let code = again.body["data"]["acceptDispute"]["userErrors"][0]["code"].clone();
    assert!(
        code == "ILLEGAL_TRANSITION" || code == "INVALID_INPUT",
        "{}",
        again.body
    );

    // The opening's timers are in its payload, typed.
    let timers = "mutation($input: OpenDisputeInput!) { openDispute(input: $input) { \
                  timers { kind hoursBefore status } userErrors { code } } }";
    let second = app
        .gql(&app.analyst, timers, json!({"input": open_input("dp_contract_timers")}))
        .await;
    let set = second.data()["openDispute"]["timers"].as_array().unwrap().clone();
    assert!(
        set.iter().any(|t| t["kind"] == "DEADLINE" && t["status"] == "PENDING"),
        "{set:?}"
    );
    assert!(
        set.iter().any(|t| t["kind"] == "REMINDER" && t["hoursBefore"].is_i64()),
        "{set:?}"
    );
}

#[tokio::test]
async fn available_actions_follow_the_role_and_the_state_machine() {
    let db = &test_databases().await.unwrap()[0];
    let app = TestApp::start(db).await;
    let opened = app
        .gql(&app.analyst, OPEN, json!({"input": open_input("dp_contract_actions")}))
        .await;
    let id = opened.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = "query($id: ID!) { dispute(id: $id) { availableActions { action allowed reason statuses } } }";
    let actions = |answer: &crate::app::Answer| -> Vec<serde_json::Value> {
        answer.data()["dispute"]["availableActions"].as_array().unwrap().clone()
    };
    let find = |actions: &[serde_json::Value], name: &str| -> serde_json::Value {
        actions.iter().find(|a| a["action"] == name).unwrap().clone()
    };

    let viewer = actions(&app.gql(&app.viewer, read, json!({"id": id})).await);
    assert!(viewer.iter().all(|a| a["allowed"] == false), "{viewer:?}");
    assert_eq!(find(&viewer, "ADD_NOTE")["reason"], "needs the analyst role");

    let analyst = actions(&app.gql(&app.analyst, read, json!({"id": id})).await);
    for allowed in [
        "SUBMIT_DEFENSE",
        "ACCEPT_DISPUTE",
        "ADD_NOTE",
        "TAKE",
        "MESSAGE_CUSTOMER",
    ] {
        assert_eq!(find(&analyst, allowed)["allowed"], true, "{allowed}: {analyst:?}");
    }
    // A chargeback is not refunded through `refund` (inquiries and alerts are): the machine says why.
    let refund = find(&analyst, "REFUND");
    assert_eq!(refund["allowed"], false);
    assert!(!refund["reason"].as_str().unwrap().is_empty());
    assert_eq!(find(&analyst, "CORRECT")["reason"], "needs the lead role");
    assert_eq!(find(&analyst, "RELEASE")["allowed"], false);

    let lead = actions(&app.gql(&app.lead, read, json!({"id": id})).await);
    let correct = find(&lead, "CORRECT");
    assert_eq!(correct["allowed"], true, "{correct}");
    assert!(
        correct["statuses"].as_array().unwrap().contains(&json!("TRIAGED")),
        "{correct}"
    );
    assert!(!correct["statuses"].as_array().unwrap().contains(&json!("WON")));
}

#[tokio::test]
async fn events_carry_typed_details_for_the_common_kinds() {
    let db = &test_databases().await.unwrap()[0];
    let app = TestApp::start(db).await;
    let opened = app
        .gql(&app.analyst, OPEN, json!({"input": open_input("dp_contract_events")}))
        .await;
    let id = opened.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let note = "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { version } userErrors { code } } }";
    app.gql(
        &app.analyst,
        note,
        json!({"input": {"id": id, "note": "called the bank"}}),
    )
    .await
    .data();
    let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { version } userErrors { code } } }";
    let assigned = app
        .gql(&app.lead, assign, json!({"input": {"id": id, "assignee": "alice"}}))
        .await;
    let version = assigned.data()["assignDispute"]["dispute"]["version"].as_i64().unwrap();
    let add = "mutation($input: AddEvidenceInput!) { addEvidence(input: $input) { items { id } userErrors { code } } }";
    let added = app
        .gql(
            &app.analyst,
            add,
            json!({"input": {"id": id, "expectedVersion": version, "kind": "TRACKING", "text": "DHL 123"}}),
        )
        .await;
    let item = added.data()["addEvidence"]["items"][0]["id"].clone();
    let history = "query($id: ID!) { dispute(id: $id) { events { type change { __typename \
                   ... on NoteChange { note } ... on AssignmentChange { previousAssignee assignee } \
                   ... on EvidenceChange { itemIds kinds } } } } }";
    let answer = app.gql(&app.viewer, history, json!({"id": id})).await;
    let events = answer.data()["dispute"]["events"].as_array().unwrap().clone();
    let of = |kind: &str| events.iter().find(|e| e["type"] == kind).unwrap()["change"].clone();
    assert!(of("OPENED").is_null(), "{events:?}");
    assert_eq!(
        of("NOTE_ADDED"),
        json!({"__typename": "NoteChange", "note": "called the bank"})
    );
    assert_eq!(
        of("ASSIGNED"),
        json!({"__typename": "AssignmentChange", "previousAssignee": null, "assignee": "alice"})
    );
    assert_eq!(
        of("EVIDENCE_ADDED"),
        json!({"__typename": "EvidenceChange", "itemIds": [item], "kinds": ["TRACKING"]})
    );
}

/// `users.email`, the people who signed in: leads see each email masked (`j***@example.fr`; `***` when it is
/// not an address), admins see it whole, and analysts and viewers may not list users at all.
#[tokio::test]
async fn user_emails_are_masked_for_leads_and_whole_for_admins() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let store = verdict_store::Store::connect(&db.url).await.unwrap();
        let people = [
            ("sub-1", "jeanne", "jeanne.dupont@example.fr", "j***@example.fr"),
            ("sub-2", "omar", "o@example.com", "o***@example.com"),
            ("sub-3", "lena", "lena-at-example", "***"),
        ];
        for (subject, username, email, _) in people {
            let who = verdict_store::SignIn {
                issuer: "https://login.example.com/realms/care".into(),
                subject: subject.into(),
                username: username.into(),
                name: Some(format!("{username} (name)")),
                email: Some(email.into()),
                role: "analyst".into(),
            };
            store
                .record_sign_in(&who, chrono::Utc::now(), chrono::Duration::minutes(1))
                .await
                .unwrap();
        }
        let users = "{ users { username email } }";
        let email_of = |answer: &crate::app::Answer, username: &str| -> serde_json::Value {
            let listed = answer.data()["users"].as_array().unwrap().clone();
            listed.iter().find(|u| u["username"] == username).unwrap()["email"].clone()
        };
        let as_lead = app.gql(&app.lead, users, json!({})).await;
        let as_admin = app.gql(&app.admin, users, json!({})).await;
        for (_, username, email, masked) in people {
            assert_eq!(email_of(&as_lead, username), masked, "lead, {username} on {}", db.label);
            assert!(
                !as_lead.body.to_string().contains(email),
                "a lead sees {email} on {}: {}",
                db.label,
                as_lead.body
            );
            assert_eq!(
                email_of(&as_admin, username),
                email,
                "admin, {username} on {}",
                db.label
            );
        }
        for token in [&app.analyst, &app.viewer] {
            let refused = app.gql(token, users, json!({})).await;
            assert_eq!(refused.error_code(), "FORBIDDEN", "{}", refused.body);
            assert!(!refused.body.to_string().contains("example.fr"), "{}", refused.body);
        }
    }
}

const ACTIONS: &str = "query($id: ID!) { dispute(id: $id) { version availableActions { action allowed reason } } }";

/// The caller's `availableActions` entry for `action`, and the dispute's version.
async fn action_of(app: &TestApp, token: &str, id: &str, action: &str) -> (serde_json::Value, i64) {
    let answer = app.gql(token, ACTIONS, json!({"id": id})).await;
    let dispute = &answer.data()["dispute"];
    let found = dispute["availableActions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == action)
        .unwrap_or_else(|| panic!("no {action}: {dispute}"))
        .clone();
    (found, dispute["version"].as_i64().unwrap())
}

/// An inquiry (refunds settle inquiries) of `minor_units` EUR, opened by the analyst.
async fn open_inquiry(app: &TestApp, processor_dispute_id: &str, minor_units: i64) -> String {
    let mut input = open_input(processor_dispute_id);
    input["stage"] = json!("INQUIRY");
    input["reasonCode"] = json!("13.1");
    input["amount"] = json!({"minorUnits": minor_units, "currency": "EUR"});
    let opened = app.gql(&app.analyst, OPEN, json!({ "input": input })).await;
    opened.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `REFUND` and `RESOLVE_WITH_REFUND` apply the refund limit of the caller's role as the mutations do (250.00
/// for analysts, 2,500.00 for leads by default), counting what was refunded already: over it, not allowed with
/// the limit as the reason, and the mutation refuses it too; within it, allowed, and the mutation goes through.
#[tokio::test]
async fn available_refunds_follow_the_callers_refund_limit() {
    const REFUND: &str = "mutation($input: RefundInput!) { refund(input: $input) { \
                          dispute { version } userErrors { code message } } }";
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let large = open_inquiry(&app, "dp_contract_refund_large", 30_000).await;
        for action in ["REFUND", "RESOLVE_WITH_REFUND"] {
            let (analyst, _) = action_of(&app, &app.analyst, &large, action).await;
            assert_eq!(analyst["allowed"], false, "{action} on {}: {analyst}", db.label);
            let reason = analyst["reason"].as_str().unwrap();
            assert!(reason.contains("limit of 25000"), "{action}: {reason}");
            let (lead, _) = action_of(&app, &app.lead, &large, action).await;
            assert_eq!(lead["allowed"], true, "{action} on {}: {lead}", db.label);
            let (viewer, _) = action_of(&app, &app.viewer, &large, action).await;
            assert_eq!(viewer["reason"], "needs the analyst role");
        }
        // The mutation agrees: the analyst's whole refund is refused for the limit, nothing is refunded.
        let (first, version) = action_of(&app, &app.analyst, &large, "REFUND").await;
        let first_reason = first["reason"].as_str().unwrap().to_owned();
        let whole = json!({"input": {"id": large, "expectedVersion": version, "requestId": "contract-1"}});
        let refused = app.gql(&app.analyst, REFUND, whole).await;
        assert_eq!(refused.error_code(), "FORBIDDEN", "{}", refused.body);
        assert!(refused.error_message().contains("limit"), "{}", refused.body);

        // A lead refunds 100.00 of it: the 200.00 left would bring the analyst's refunds to 300.00, still over.
        let part = json!({"input": {"id": large, "expectedVersion": version, "requestId": "contract-2",
                                    "amount": {"minorUnits": 10_000, "currency": "EUR"}}});
        let refunded = app.gql(&app.lead, REFUND, part).await;
        assert!(refunded.user_errors().is_empty(), "{}", refunded.body);
        // The lead's refund step records its result on the dispute when the processor answers: a version read
        // before that is stale by the time the analyst asks, so a stale one is read again.
        let mut refusal = String::new();
        for attempt in 0..10 {
            let (analyst, version) = action_of(&app, &app.analyst, &large, "REFUND").await;
            assert_eq!(analyst["allowed"], false, "{analyst}");
            let reason = analyst["reason"].as_str().unwrap();
            assert!(
                reason.contains("30000 minor units") && reason != first_reason,
                "the rest, 200.00, with the 100.00 refunded: {reason}"
            );
            let rest = json!({"input": {"id": large, "expectedVersion": version,
                                        "requestId": format!("contract-3-{attempt}")}});
            refusal = app.gql(&app.analyst, REFUND, rest).await.error_code();
            if refusal != "VERSION_CONFLICT" {
                break;
            }
        }
        assert_eq!(refusal, "FORBIDDEN");

        // Within the analyst's limit: allowed, and the mutation goes through.
        let small = open_inquiry(&app, "dp_contract_refund_small", 4_000).await;
        let (analyst, version) = action_of(&app, &app.analyst, &small, "REFUND").await;
        assert_eq!(analyst["allowed"], true, "{} on {}", analyst, db.label);
        assert!(analyst["reason"].is_null());
        let whole = json!({"input": {"id": small, "expectedVersion": version, "requestId": "contract-4"}});
        let made = app.gql(&app.analyst, REFUND, whole).await;
        assert!(made.user_errors().is_empty(), "{}", made.body);
        assert!(made.data()["refund"]["dispute"]["version"].as_i64().unwrap() > version);
        // Refunded in full: nothing is left to refund, for anyone.
        let (admin, _) = action_of(&app, &app.admin, &small, "REFUND").await;
        assert_eq!(admin["allowed"], false, "{admin}");
        assert!(
            admin["reason"].as_str().unwrap().contains("refunded in full"),
            "{admin}"
        );
    }
}

/// `LINK_ORDER`, `ADD_EVIDENCE` and `GENERATE_DEFENSE_DOCUMENT`: analysts and up, while the dispute's state
/// allows them; once the dispute is accepted, evidence and the defense document are refused with the machine's
/// reason, as the mutations refuse them.
#[tokio::test]
async fn available_actions_cover_linking_evidence_and_the_defense_document() {
    const ADD: &str = "mutation($input: AddEvidenceInput!) { addEvidence(input: $input) { \
                       dispute { version } userErrors { code message } } }";
    const GENERATE: &str = "mutation($input: GenerateDefenseDocumentInput!) { generateDefenseDocument(input: $input) { \
                            document { id } userErrors { code message } } }";
    const ACCEPT: &str = "mutation($input: AcceptDisputeInput!) { acceptDispute(input: $input) { \
                          dispute { version status } userErrors { code message } } }";
    const NEW: [&str; 3] = ["LINK_ORDER", "ADD_EVIDENCE", "GENERATE_DEFENSE_DOCUMENT"];
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let opened = app
            .gql(
                &app.analyst,
                OPEN,
                json!({"input": open_input("dp_contract_actions_more")}),
            )
            .await;
        let id = opened.data()["openDispute"]["dispute"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for action in NEW {
            let (viewer, _) = action_of(&app, &app.viewer, &id, action).await;
            assert_eq!(viewer["allowed"], false, "{action}");
            assert_eq!(viewer["reason"], "needs the analyst role", "{action}");
            let (analyst, _) = action_of(&app, &app.analyst, &id, action).await;
            assert_eq!(analyst["allowed"], true, "{action} on {}: {analyst}", db.label);
            assert!(analyst["reason"].is_null(), "{action}");
        }
        // Allowed means the mutations go through.
        let (_, version) = action_of(&app, &app.analyst, &id, "ADD_EVIDENCE").await;
        let add = json!({"input": {"id": id, "expectedVersion": version, "kind": "TRACKING", "text": "DHL 1"}});
        let added = app.gql(&app.analyst, ADD, add).await;
        assert!(added.user_errors().is_empty(), "{}", added.body);
        let version = added.data()["addEvidence"]["dispute"]["version"].as_i64().unwrap();
        let generate = json!({"input": {"id": id, "expectedVersion": version}});
        let generated = app.gql(&app.analyst, GENERATE, generate).await;
        assert!(generated.user_errors().is_empty(), "{}", generated.body);

        // Accepted: the defense is over, and both are refused with the machine's reason, by the mutations too.
        let (_, version) = action_of(&app, &app.analyst, &id, "ACCEPT_DISPUTE").await;
        let accepted = app
            .gql(
                &app.analyst,
                ACCEPT,
                json!({"input": {"id": id, "expectedVersion": version}}),
            )
            .await;
        assert_eq!(accepted.data()["acceptDispute"]["dispute"]["status"], "ACCEPTED");
        for action in ["ADD_EVIDENCE", "GENERATE_DEFENSE_DOCUMENT"] {
            let (analyst, _) = action_of(&app, &app.analyst, &id, action).await;
            assert_eq!(analyst["allowed"], false, "{action} on {}: {analyst}", db.label);
            assert!(!analyst["reason"].as_str().unwrap().is_empty(), "{action}");
        }
        let (_, version) = action_of(&app, &app.analyst, &id, "ADD_EVIDENCE").await;
        let add = json!({"input": {"id": id, "expectedVersion": version, "kind": "TRACKING", "text": "DHL 2"}});
        let refused = app.gql(&app.analyst, ADD, add).await;
        assert_eq!(refused.user_errors().len(), 1, "{}", refused.body);
        let generate = json!({"input": {"id": id, "expectedVersion": version}});
        let refused = app.gql(&app.analyst, GENERATE, generate).await;
        assert_eq!(refused.user_errors().len(), 1, "{}", refused.body);
    }
}
