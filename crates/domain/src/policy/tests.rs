use proptest::prelude::*;

use super::*;
use crate::Currency;
use crate::economics::{EconomicsConfig, EvidenceBand, WinRates};

fn input(category: ReasonCategory, minor: i64) -> TriageInput {
    let amount = Money::new(minor, Currency::parse("EUR").unwrap()).unwrap();
    TriageInput {
        category,
        reason_code: "10.4".into(),
        network: CardNetwork::Visa,
        amount,
        processor: Processor::Stripe,
        stage: Stage::Chargeback,
        days_left: Some(10),
        seller_id: Some("s-1".into()),
        order: Some(OrderSignals {
            delivered: true,
            tracked: true,
            returned: false,
            grade: Some("A".into()),
            customer_previous_orders: 3,
            customer_previous_disputes: 0,
        }),
        evidence_score: 60,
        evidence_complete: false,
        ce_eligible: false,
        seller_liable: false,
        economics: EconomicsConfig::default()
            .economics(
                amount,
                category,
                Processor::Stripe,
                EvidenceBand::Partial,
                false,
                &WinRates::default(),
            )
            .ok(),
    }
}

const STRICT: &str = r#"
description = "large fraud to a lead, small ones accepted"

[[rule]]
name = "large fraud"
when = { category = "fraud", currency = "EUR", amount_at_least_minor = 50000 }
queue = "fraud"
priority = 1
action = "escalate"

[[rule]]
name = "small fraud"
when = { category = ["fraud"], cheaper_to_accept = true }
queue = "fraud"
priority = 4
action = "accept"
autonomous = true
autonomy_limit_minor = 3000

[[rule]]
name = "any fraud"
when = { category = "fraud" }
queue = "fraud"
action = "defend"
"#;

#[test]
fn rules_fire_in_order_and_explain_what_they_read() {
    let policy = Policy::from_toml(STRICT).unwrap();
    let large = policy.evaluate(&input(ReasonCategory::Fraud, 60_000));
    assert_eq!(large.rule_index, Some(1));
    assert_eq!(large.rule, "large fraud");
    assert_eq!(
        (large.queue, large.priority, large.action),
        (Queue::Fraud, 1, RecommendedAction::Escalate)
    );
    assert_eq!(large.read.get("amount_minor").map(String::as_str), Some("60000"));
    assert_eq!(large.read.get("category").map(String::as_str), Some("fraud"));
    assert!(
        large.why.starts_with("rule 1 (\"large fraud\") matched"),
        "{}",
        large.why
    );

    // 20.00 is cheaper to accept than to defend, and under the 30.00 limit: Verdict acts alone.
    let small = policy.evaluate(&input(ReasonCategory::Fraud, 2_000));
    assert_eq!(small.rule, "small fraud");
    assert_eq!(small.autonomy, Autonomy::Act);
    assert_eq!(small.read.get("cheaper_to_accept").map(String::as_str), Some("yes"));
    assert!(small.why.contains("Verdict may accept alone"), "{}", small.why);

    // 40.00 is still cheaper to accept, but above the limit: a lead approves.
    let above = policy.evaluate(&input(ReasonCategory::Fraud, 4_000));
    assert_eq!(above.rule, "small fraud");
    assert_eq!(above.autonomy, Autonomy::NeedsApproval { limit_minor: 3_000 });
    assert!(above.why.contains("a lead approves first"), "{}", above.why);

    // 400.00 is worth defending: the third rule.
    let mid = policy.evaluate(&input(ReasonCategory::Fraud, 40_000));
    assert_eq!((mid.rule_index, mid.action), (Some(3), RecommendedAction::Defend));

    let other = policy.evaluate(&input(ReasonCategory::ConsumerDispute, 40_000));
    assert_eq!(other.rule_index, None);
    assert_eq!(other.queue, Queue::Seller);
    assert!(other.why.starts_with("no rule matched"), "{}", other.why);
}

fn error_of(text: &str) -> PolicyError {
    Policy::from_toml(text).unwrap_err()
}

#[test]
fn validation_errors_name_the_rule_and_the_field() {
    let e = error_of(
        "[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"defend\"\nwhen = { amount_below_minor = 100 }\n",
    );
    assert_eq!(e.field, "when.amount_below_minor");
    assert!(
        e.to_string()
            .starts_with("rule 1 (\"a\"), field `when.amount_below_minor`"),
        "{e}"
    );

    let e = error_of(
        "[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"defend\"\n[[rule]]\nname = \"b\"\nqueue = \"nowhere\"\naction = \"defend\"\n",
    );
    assert_eq!(e.field, "queue");
    assert!(e.to_string().starts_with("rule 2 (\"b\"), field `queue`"), "{e}");

    let e = error_of("[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"refund\"\nautonomous = true\n");
    assert_eq!(e.field, "autonomy_limit_minor");
    let e = error_of("[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"defend\"\npriority = 9\n");
    assert_eq!(e.field, "priority");
    let e = error_of("[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"defend\"\nwhen = { colour = \"red\" }\n");
    assert_eq!(e.field, "when.colour");
    let e = error_of("[[rule]]\nqueue = \"care\"\naction = \"defend\"\n");
    assert!(e.to_string().starts_with("rule 1, field `name`"), "{e}");
    let e = error_of(
        "[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"escalate\"\nautonomous = true\nautonomy_limit_minor = 5\n",
    );
    assert_eq!(e.field, "autonomous");
    let e = error_of(
        "[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"defend\"\n[[rule]]\nname = \"a\"\nqueue = \"care\"\naction = \"defend\"\n",
    );
    assert!(e.to_string().starts_with("rule 2 (\"a\"), field `name`"), "{e}");
    let e = error_of("rules = 3");
    assert!(e.to_string().starts_with("policy, field `rules`"), "{e}");
}

#[test]
fn a_policy_reads_back_from_its_own_toml() {
    for policy in [Policy::from_toml(STRICT).unwrap(), Policy::builtin_default()] {
        assert_eq!(Policy::from_toml(&policy.to_toml()).unwrap(), policy);
    }
}

fn any_category() -> impl Strategy<Value = ReasonCategory> {
    prop_oneof![
        Just(ReasonCategory::Fraud),
        Just(ReasonCategory::Authorization),
        Just(ReasonCategory::ProcessingError),
        Just(ReasonCategory::ConsumerDispute),
    ]
}

fn any_input() -> impl Strategy<Value = TriageInput> {
    (
        any_category(),
        0i64..1_000_000,
        proptest::option::of(-5i64..60),
        any::<bool>(),
        any::<bool>(),
        0u8..=100,
        any::<bool>(),
        proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>(), 0u32..5)),
    )
        .prop_map(|(category, minor, days_left, ce, liable, score, gbp, order)| {
            let mut i = input(category, minor);
            if gbp {
                i.amount = Money::new(minor, Currency::parse("GBP").unwrap()).unwrap();
            }
            i.days_left = days_left;
            i.ce_eligible = ce;
            i.seller_liable = liable;
            i.evidence_score = score;
            i.evidence_complete = score == 100;
            i.order = order.map(|(delivered, tracked, returned, disputes)| OrderSignals {
                delivered,
                tracked,
                returned,
                grade: None,
                customer_previous_orders: 2,
                customer_previous_disputes: disputes,
            });
            i
        })
}

fn any_rule(index: usize) -> impl Strategy<Value = Rule> {
    (
        proptest::collection::vec(any_category(), 0..2),
        proptest::option::of(0i64..500_000),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0i64..30),
        1u8..=5,
        proptest::option::of(0i64..100_000),
    )
        .prop_map(move |(category, below, delivered, ce, days, priority, limit)| Rule {
            name: format!("r{index}"),
            when: Conditions {
                category,
                currency: below.map(|_| "EUR".into()),
                amount_below_minor: below,
                delivered,
                ce_eligible: ce,
                days_left_at_most: days,
                ..Conditions::default()
            },
            queue: Queue::Care,
            priority,
            action: RecommendedAction::Refund,
            autonomous: limit.is_some(),
            autonomy_limit_minor: limit,
        })
}

fn any_policy() -> impl Strategy<Value = Policy> {
    (0usize..6).prop_flat_map(|n| {
        (0..n).map(any_rule).collect::<Vec<_>>().prop_map(|rules| Policy {
            description: None,
            rules,
        })
    })
}

proptest! {
    #[test]
    fn the_first_matching_rule_wins_and_every_input_gets_a_decision(policy in any_policy(), input in any_input()) {
        prop_assert!(policy.validate().is_ok());
        let triage = policy.evaluate(&input);
        let first = policy.rules.iter().position(|r| r.when.check(&input).is_some());
        prop_assert_eq!(triage.rule_index, first.map(|i| i + 1));
        match first {
            Some(i) => {
                let rule = &policy.rules[i];
                prop_assert_eq!(triage.priority, rule.priority);
                let within = rule.autonomy_limit_minor.map(|l| input.amount.minor_units() <= l);
                let expected = match within {
                    None => Autonomy::Manual,
                    Some(true) => Autonomy::Act,
                    Some(false) => Autonomy::NeedsApproval { limit_minor: rule.autonomy_limit_minor.unwrap_or(0) },
                };
                prop_assert_eq!(triage.autonomy, expected);
            }
            None => prop_assert_eq!(triage.queue, Queue::for_category(input.category)),
        }
        prop_assert!((1..=LOWEST_PRIORITY).contains(&triage.priority));
        prop_assert!(!triage.why.is_empty());
    }

    #[test]
    fn the_default_policy_routes_as_verdict_always_did(input in any_input()) {
        let triage = Policy::builtin_default().evaluate(&input);
        prop_assert_eq!(triage.queue, Queue::for_category(input.category));
        prop_assert_eq!(triage.autonomy, Autonomy::Manual);
        prop_assert!(triage.rule_index.is_some());
    }

    #[test]
    fn any_valid_policy_survives_its_toml(policy in any_policy()) {
        prop_assert_eq!(Policy::from_toml(&policy.to_toml()).unwrap(), policy);
    }
}

#[test]
fn without_economics_the_economics_conditions_match_neither_way() {
    let policy = Policy::from_toml(
        r#"
[[rule]]
name = "cheap"
when = { cheaper_to_accept = true }
queue = "care"
action = "accept"

[[rule]]
name = "dear"
when = { cheaper_to_accept = false }
queue = "care"
action = "defend"

[[rule]]
name = "likely won"
when = { win_rate_at_least_percent = 1 }
queue = "care"
action = "defend"
"#,
    )
    .unwrap();
    let mut no_costs = input(ReasonCategory::Fraud, 1_000);
    no_costs.economics = None;
    let triage = policy.evaluate(&no_costs);
    assert_eq!(triage.rule_index, None, "{triage:?}");
    let with_costs = policy.evaluate(&input(ReasonCategory::Fraud, 1_000));
    assert_eq!(with_costs.rule, "cheap");
}

#[test]
fn the_documented_example_is_a_valid_policy() {
    let doc = include_str!("../../../../docs/policy.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let policy = Policy::from_toml(&doc[start..end]).unwrap();
    assert_eq!(policy.rules.len(), 5);
    assert_eq!(policy.rules[0].autonomy_limit_minor, Some(10_000));
}
