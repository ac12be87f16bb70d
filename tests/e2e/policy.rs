//! The triage policy end to end: leads save, validate and activate versions; triage explains itself on the
//! dispute and orders the queue; the policy acts alone within its limit and waits for a lead above it.

use serde_json::{Value, json};

use crate::app::{TestApp, open_input, test_databases};

const SAVE: &str = "mutation($input: SavePolicyInput!) { savePolicy(input: $input) { policy { version active ruleCount toml } userErrors { code message field } } }";
const OPEN: &str = "mutation($input: OpenDisputeInput!) { openDispute(input: $input) { dispute { id version status queue priority } } }";
const TRIAGE: &str = "query($id: ID!) { dispute(id: $id) { status queue priority version \
    triage { policyVersion ruleIndex rule queue priority recommendedAction autonomy autonomyLimitMinorUnits why read { field value } economicsUnavailable } \
    economics { winRateBasisPoints winRateBasis expectedRecovery { minorUnits } defenseCost { minorUnits } \
      processorFee { minorUnits currency } analystCost { minorUnits currency } cheaperToAccept } \
    events { type actor reason } steps { kind status idempotencyKey } } }";
const APPROVALS: &str =
    "query { policyApprovals { id disputeId rule action status limitMinorUnits amount { minorUnits } } }";
const APPROVE: &str = "mutation($input: DecidePolicyActionInput!) { approvePolicyAction(input: $input) { \
    approval { status decidedBy note } dispute { status version } userErrors { code message field } } }";

const TRIAGE_POLICY: &str = r#"
description = "large fraud first"

[[rule]]
name = "large fraud"
when = { category = "fraud", currency = "EUR", amount_at_least_minor = 40000 }
queue = "fraud"
priority = 1
action = "escalate"

[[rule]]
name = "refund alerts"
when = { stage = ["inquiry", "pre_dispute"] }
queue = "care"
priority = 2
action = "refund"
autonomous = true
autonomy_limit_minor = 10000
"#;

async fn save(app: &TestApp, token: &str, source: &str, activate: bool) -> crate::app::Answer {
    app.gql(
        token,
        SAVE,
        json!({"input": {"source": source, "activate": activate, "note": "test"}}),
    )
    .await
}

async fn open(app: &TestApp, pid: &str, minor: i64, stage: Option<&str>) -> Value {
    let mut input = open_input(pid);
    input["amount"]["minorUnits"] = json!(minor);
    if let Some(stage) = stage {
        input["stage"] = json!(stage);
    }
    app.gql(&app.analyst, OPEN, json!({ "input": input })).await.data()["openDispute"]["dispute"].clone()
}

async fn triage(app: &TestApp, id: &str) -> Value {
    app.gql(&app.analyst, TRIAGE, json!({ "id": id })).await.data()["dispute"].clone()
}

#[tokio::test]
async fn leads_save_validated_policies_and_triage_explains_and_orders_the_queue() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let label = app.label;

        // Before any version: the built-in default, which routes as Verdict always did and records nothing.
        let active = app
            .gql(&app.analyst, "{ policy { version active ruleCount } }", json!({}))
            .await;
        assert_eq!(
            active.data()["policy"],
            json!({"version": 0, "active": true, "ruleCount": 4}),
            "{label}"
        );
        let plain = open(&app, "dp_policy_default", 48_900, None).await;
        let plain_id = plain["id"].as_str().unwrap().to_owned();
        let before = triage(&app, &plain_id).await;
        assert_eq!(before["triage"]["rule"], "fraud to the fraud queue", "{label}");
        assert_eq!(before["triage"]["policyVersion"], 0, "{label}");
        assert!(
            before["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["type"] != "TRIAGE_DECIDED" && e["type"] != "triage_decided"),
            "{label}: the default decides what Verdict did anyway: {}",
            before["events"]
        );

        // Refused: analysts, and a policy naming an amount without its currency (the rule and field named).
        let forbidden = save(&app, &app.analyst, TRIAGE_POLICY, true).await;
        assert_eq!(forbidden.error_code(), "FORBIDDEN", "{label}");
        let bad = save(
            &app,
            &app.lead,
            "[[rule]]\nname = \"big\"\nqueue = \"fraud\"\naction = \"defend\"\nwhen = { amount_below_minor = 5 }\n",
            true,
        )
        .await;
        assert_eq!(bad.error_code(), "INVALID_INPUT", "{label}");
        let refused = bad.user_errors();
        assert_eq!(refused[0]["field"], json!(["input"]), "{label}");
        let message = refused[0]["message"].as_str().unwrap();
        assert!(
            message.contains("rule 1 (\"big\"), field `when.amount_below_minor`"),
            "{label}: {message}"
        );

        let saved = save(&app, &app.lead, TRIAGE_POLICY, true).await;
        let policy = &saved.data()["savePolicy"]["policy"];
        assert_eq!(
            (policy["version"].clone(), policy["active"].clone()),
            (json!(1), json!(true)),
            "{label}"
        );
        assert_eq!(policy["ruleCount"], 2, "{label}");

        // A large fraud chargeback: the first rule fires, recorded by policy:1 with what it read and why.
        let large = open(&app, "dp_policy_large", 48_900, None).await;
        assert_eq!(
            (large["queue"].clone(), large["priority"].clone()),
            (json!("FRAUD"), json!(1)),
            "{label}"
        );
        let large_id = large["id"].as_str().unwrap().to_owned();
        let seen = triage(&app, &large_id).await;
        let t = &seen["triage"];
        assert_eq!(t["rule"], "large fraud", "{label}");
        assert_eq!(t["ruleIndex"], 1, "{label}");
        assert_eq!(t["recommendedAction"], "ESCALATE", "{label}");
        assert_eq!(t["autonomy"], "MANUAL", "{label}");
        let read: Vec<(String, String)> = t["read"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["field"].as_str().unwrap().to_owned(),
                    r["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(
            read.contains(&("amount_minor".into(), "48900".into())),
            "{label}: {read:?}"
        );
        assert!(read.contains(&("category".into(), "fraud".into())), "{label}: {read:?}");
        assert!(
            t["why"]
                .as_str()
                .unwrap()
                .starts_with("rule 1 (\"large fraud\") matched"),
            "{label}: {t}"
        );
        let decided: Vec<&Value> = seen["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == "policy:1")
            .collect();
        assert_eq!(decided.len(), 1, "{label}: {}", seen["events"]);
        assert_eq!(decided[0]["reason"], t["why"], "{label}");
        // The economics the rules can read: 489.00 at the 40% prior, against Stripe's fee and analyst time.
        let e = &seen["economics"];
        assert_eq!(e["winRateBasis"], "prior", "{label}");
        assert_eq!(e["expectedRecovery"]["minorUnits"], json!(19_560), "{label}: {e}");
        assert_eq!(e["defenseCost"]["minorUnits"], json!(3_500), "{label}: {e}");
        assert_eq!(e["processorFee"]["minorUnits"], json!(1_500), "{label}: {e}");
        assert_eq!(e["analystCost"]["minorUnits"], json!(2_000), "{label}: {e}");
        assert_eq!(e["analystCost"]["currency"], "EUR", "{label}: {e}");
        assert_eq!(t["economicsUnavailable"], Value::Null, "{label}");

        // A small one falls through every rule to the fallback, which decides what Verdict did anyway: no
        // event, the queue set when the dispute is triaged, priority 3.
        let small = open(&app, "dp_policy_small", 2_000, None).await;
        assert_eq!(
            (small["queue"].clone(), small["priority"].clone()),
            (Value::Null, json!(3)),
            "{label}"
        );
        let small = triage(&app, small["id"].as_str().unwrap()).await;
        assert_eq!(small["triage"]["rule"], "(no rule matched)", "{label}");
        assert_eq!(small["triage"]["queue"], "FRAUD", "{label}");

        // The queue sorted by priority: the large fraud first.
        let list = app
            .gql(
                &app.analyst,
                "{ disputes(first: 10, sort: {by: PRIORITY, direction: ASC}) { edges { node { id priority } } } }",
                json!({}),
            )
            .await;
        let priorities: Vec<i64> = list.data()["disputes"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["priority"].as_i64().unwrap())
            .collect();
        assert_eq!(priorities, vec![1, 3, 3], "{label}");
        assert_eq!(
            list.data()["disputes"]["edges"][0]["node"]["id"],
            json!(large_id),
            "{label}"
        );
    }
}

#[tokio::test]
async fn an_autonomous_refund_above_the_limit_waits_for_a_lead_and_is_performed_once_after_approval() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let label = app.label;
        save(&app, &app.lead, TRIAGE_POLICY, true).await.data();

        // Within the 100.00 limit: refunded at once by the policy, through the refund action and its step.
        let within = open(&app, "dp_alert_small", 5_000, Some("PRE_DISPUTE")).await;
        assert_eq!(within["status"], "RESOLVED", "{label}: {within}");
        let within = triage(&app, within["id"].as_str().unwrap()).await;
        let by_policy: Vec<&str> = within["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == "policy:1")
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            by_policy.len(),
            4,
            "{label}: triage, triaged, resolved, refund requested: {by_policy:?}"
        );
        assert!(
            within["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "REFUND" || s["kind"] == "refund"),
            "{label}: {}",
            within["steps"]
        );

        // Above it: nothing is refunded; a lead's approval is requested.
        let above = open(&app, "dp_alert_large", 30_000, Some("PRE_DISPUTE")).await;
        let id = above["id"].as_str().unwrap().to_owned();
        assert_eq!(above["status"], "NOTIFIED", "{label}: {above}");
        let waiting = triage(&app, &id).await;
        assert_eq!(waiting["triage"]["autonomy"], "NEEDS_APPROVAL", "{label}");
        assert_eq!(waiting["triage"]["autonomyLimitMinorUnits"], 10_000, "{label}");
        assert!(
            waiting["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["kind"] != "REFUND" && s["kind"] != "refund")
        );

        let analysts = app.gql(&app.analyst, APPROVALS, json!({})).await;
        assert_eq!(analysts.error_code(), "FORBIDDEN", "{label}");
        let pending = app.gql(&app.lead, APPROVALS, json!({})).await;
        let pending = pending.data()["policyApprovals"].as_array().unwrap().clone();
        assert_eq!(pending.len(), 1, "{label}: {pending:?}");
        assert_eq!(pending[0]["disputeId"], json!(id), "{label}");
        assert_eq!(pending[0]["action"], "REFUND", "{label}");
        assert_eq!(pending[0]["amount"]["minorUnits"], json!(30_000), "{label}");
        let approval_id = pending[0]["id"].as_str().unwrap().to_owned();

        let approved = app
            .gql(
                &app.lead,
                APPROVE,
                json!({"input": {"id": approval_id, "note": "known customer"}}),
            )
            .await;
        let approved = approved.data()["approvePolicyAction"].clone();
        assert_eq!(approved["approval"]["status"], "APPROVED", "{label}");
        assert_eq!(approved["approval"]["decidedBy"], "analyst:lena", "{label}");
        assert_eq!(approved["dispute"]["status"], "RESOLVED", "{label}");

        // Once: approving again is refused and nothing more is enqueued.
        let again = app.gql(&app.lead, APPROVE, json!({"input": {"id": approval_id}})).await;
        assert_eq!(again.error_code(), "INVALID_INPUT", "{label}");
        let done = triage(&app, &id).await;
        let refunds: Vec<&Value> = done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "REFUND" || s["kind"] == "refund")
            .collect();
        assert_eq!(refunds.len(), 1, "{label}: {}", done["steps"]);
        assert!(
            refunds[0]["idempotencyKey"]
                .as_str()
                .unwrap()
                .ends_with(&format!("policy-approval-{approval_id}")),
            "{label}: {}",
            refunds[0]
        );
        let reasons: Vec<&str> = done["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "REFUND_REQUESTED" || e["type"] == "refund_requested")
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons.len(), 1, "{label}");
        assert!(
            reasons[0].starts_with("approved by analyst:lena"),
            "{label}: {reasons:?}"
        );
        let left = app.gql(&app.lead, APPROVALS, json!({})).await;
        assert_eq!(left.data()["policyApprovals"], json!([]), "{label}");
    }
}

#[tokio::test]
async fn a_dispute_in_a_currency_without_costs_has_no_economics_and_says_why() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let label = app.label;
        let mut input = open_input("dp_policy_chf");
        input["amount"] = json!({"minorUnits": 20_000, "currency": "CHF"});
        let opened = app.gql(&app.analyst, OPEN, json!({ "input": input })).await;
        let id = opened.data()["openDispute"]["dispute"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let seen = triage(&app, &id).await;
        assert_eq!(seen["economics"], Value::Null, "{label}: {seen}");
        assert_eq!(
            seen["triage"]["economicsUnavailable"],
            "no cost of defending is configured for CHF: add [policy.costs.CHF] to verdict.toml",
            "{label}"
        );
        // Triage still decides (the fallback: fraud to the fraud queue).
        assert_eq!(seen["triage"]["queue"], "FRAUD", "{label}");
    }
}

const START_BACKTEST: &str = "mutation($input: StartPolicyBacktestInput!) { startPolicyBacktest(input: $input) { backtest { id status total } userErrors { code message field } } }";
const BACKTEST: &str = "query($id: ID!) { policyBacktest(id: $id) { status processed total error \
    result { disputes changed routedDifferently refundedDifferently acceptedDifferently defendedDifferently \
      active { autonomous approvalsNeeded analystDisputes } draft { autonomous approvalsNeeded analystDisputes routed { key count } } } \
    changes { disputeId differences active { rule action } draft { rule action autonomy } } } }";

async fn backtest_of(app: &TestApp, source: &str) -> Value {
    let started = app
        .gql(
            &app.lead,
            START_BACKTEST,
            json!({"input": {"source": source, "months": 1}}),
        )
        .await;
    let id = started.data()["startPolicyBacktest"]["backtest"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..100 {
        let answer = app.gql(&app.lead, BACKTEST, json!({ "id": id })).await;
        let backtest = answer.data()["policyBacktest"].clone();
        if backtest["status"] != "running" {
            return backtest;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{}: the backtest did not finish", app.label);
}

#[tokio::test]
async fn a_backtest_replays_a_draft_against_the_active_policy_without_side_effects() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let label = app.label;
        let large = open(&app, "dp_bt_large", 48_900, None).await;
        let alert = open(&app, "dp_bt_alert", 5_000, Some("PRE_DISPUTE")).await;
        open(&app, "dp_bt_small", 1_000, None).await;

        let refused = app
            .gql(
                &app.analyst,
                START_BACKTEST,
                json!({"input": {"source": TRIAGE_POLICY, "months": 1}}),
            )
            .await;
        assert_eq!(refused.error_code(), "FORBIDDEN", "{label}");

        // The active policy against itself: nothing changes.
        let active = app.gql(&app.lead, "{ policy { toml } }", json!({})).await;
        let same = backtest_of(&app, active.data()["policy"]["toml"].as_str().unwrap()).await;
        assert_eq!(same["status"], "done", "{label}: {same}");
        assert_eq!(same["result"]["disputes"], 3, "{label}");
        assert_eq!(same["result"]["changed"], 0, "{label}");
        assert_eq!(same["changes"], json!([]), "{label}");

        // The stricter draft: the large fraud escalated, the alert refunded alone; the small one unchanged.
        let draft = backtest_of(&app, TRIAGE_POLICY).await;
        let r = &draft["result"];
        assert_eq!(
            (r["disputes"].clone(), r["changed"].clone()),
            (json!(3), json!(2)),
            "{label}: {r}"
        );
        assert_eq!(r["routedDifferently"], 1, "{label}: the alert goes to care");
        assert_eq!(r["refundedDifferently"], 1, "{label}");
        assert_eq!(r["acceptedDifferently"], 0, "{label}");
        assert_eq!(r["defendedDifferently"], 2, "{label}");
        assert_eq!(r["active"]["analystDisputes"], 3, "{label}");
        assert_eq!(r["draft"]["autonomous"], 1, "{label}");
        assert_eq!(r["draft"]["analystDisputes"], 2, "{label}");
        let changed: Vec<&str> = draft["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["disputeId"].as_str().unwrap())
            .collect();
        let mut expected = vec![large["id"].as_str().unwrap(), alert["id"].as_str().unwrap()];
        expected.sort_unstable();
        assert_eq!(changed, expected, "{label}");

        // No side effect: the disputes are as they were.
        let after = triage(&app, alert["id"].as_str().unwrap()).await;
        assert_eq!(after["version"], alert["version"], "{label}");
        assert_eq!(after["status"], "NOTIFIED", "{label}");
    }
}
