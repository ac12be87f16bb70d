//! A policy backtest: a draft policy and the active one evaluated side by side on the inputs past disputes were
//! triaged with, with no side effect. Pure: the engine streams the stored inputs through [`Backtest::add`] and
//! stores the tallies and the disputes whose decision changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{Autonomy, Policy, RecommendedAction, Triage, TriageInput};

/// What one policy would have done over the disputes replayed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyTally {
    /// Disputes per queue.
    pub routed: BTreeMap<String, u64>,
    /// Disputes per recommended action.
    pub actions: BTreeMap<String, u64>,
    /// Disputes Verdict would have acted on alone.
    pub autonomous: u64,
    /// Disputes whose action would have waited for a lead's approval.
    pub approvals_needed: u64,
    /// Disputes a person works (not acted on alone).
    pub analyst_disputes: u64,
    /// Their analyst time, in minutes.
    pub analyst_minutes: i64,
    /// Expected recovery of the disputes the policy defends, by currency, in minor units.
    pub expected_recovery: BTreeMap<String, i64>,
    /// Cost of defending them (fee and analyst time), by currency, in minor units.
    pub defense_cost: BTreeMap<String, i64>,
}

impl PolicyTally {
    fn add(&mut self, input: &TriageInput, triage: &Triage, analyst_minutes: i64) {
        *self.routed.entry(triage.queue.as_str().to_owned()).or_default() += 1;
        *self.actions.entry(triage.action.as_str().to_owned()).or_default() += 1;
        match triage.autonomy {
            Autonomy::Act => self.autonomous += 1,
            Autonomy::NeedsApproval { .. } => self.approvals_needed += 1,
            Autonomy::Manual => {}
        }
        if triage.autonomy != Autonomy::Act {
            self.analyst_disputes += 1;
            self.analyst_minutes += analyst_minutes;
        }
        // A dispute in a currency without configured costs has no figures to add.
        if triage.action == RecommendedAction::Defend
            && let Some(economics) = &input.economics
        {
            let currency = input.amount.currency().code().to_owned();
            *self.expected_recovery.entry(currency.clone()).or_default() += economics.expected_recovery_minor;
            *self.defense_cost.entry(currency).or_default() += economics.defense_cost_minor;
        }
    }
}

/// One dispute whose decision differs between the two policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedDispute {
    pub active: Triage,
    pub draft: Triage,
    /// `queue`, `priority`, `action`, `autonomy`: what differs.
    pub differences: Vec<String>,
}

/// The comparison so far; added to page by page, and stored between pages so a job resumes where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Backtest {
    pub disputes: u64,
    pub active: PolicyTally,
    pub draft: PolicyTally,
    /// Disputes whose decision differs at all.
    pub changed: u64,
    pub routed_differently: u64,
    pub refunded_differently: u64,
    pub accepted_differently: u64,
    pub defended_differently: u64,
}

impl Backtest {
    /// Evaluates both policies on one dispute's inputs; the change, when the decisions differ.
    pub fn add(
        &mut self,
        active: &Policy,
        draft: &Policy,
        input: &TriageInput,
        analyst_minutes: i64,
    ) -> Option<ChangedDispute> {
        let a = active.evaluate(input);
        let d = draft.evaluate(input);
        self.disputes += 1;
        self.active.add(input, &a, analyst_minutes);
        self.draft.add(input, &d, analyst_minutes);
        if a.same_decision(&d) {
            return None;
        }
        self.changed += 1;
        let mut differences = Vec::new();
        if a.queue != d.queue {
            self.routed_differently += 1;
            differences.push("queue".to_owned());
        }
        if a.priority != d.priority {
            differences.push("priority".to_owned());
        }
        if a.action != d.action {
            differences.push("action".to_owned());
            let differs = |action: RecommendedAction| (a.action == action) != (d.action == action);
            self.refunded_differently += u64::from(differs(RecommendedAction::Refund));
            self.accepted_differently += u64::from(differs(RecommendedAction::Accept));
            self.defended_differently += u64::from(differs(RecommendedAction::Defend));
        }
        if a.autonomy != d.autonomy {
            differences.push("autonomy".to_owned());
        }
        Some(ChangedDispute {
            active: a,
            draft: d,
            differences,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::economics::{EconomicsConfig, EvidenceBand, WinRates};
    use crate::{CardNetwork, Currency, Money, Processor, ReasonCategory, Stage};

    fn input(category: ReasonCategory, minor: i64, stage: Stage) -> TriageInput {
        let amount = Money::new(minor, Currency::parse("EUR").unwrap()).unwrap();
        TriageInput {
            category,
            reason_code: "10.4".into(),
            network: CardNetwork::Visa,
            amount,
            processor: Processor::Stripe,
            stage,
            days_left: Some(20),
            seller_id: None,
            order: None,
            evidence_score: 0,
            evidence_complete: false,
            ce_eligible: false,
            seller_liable: false,
            economics: EconomicsConfig::default()
                .economics(
                    amount,
                    category,
                    Processor::Stripe,
                    EvidenceBand::Low,
                    false,
                    &WinRates::default(),
                )
                .ok(),
        }
    }

    /// Six disputes: three fraud chargebacks (10.00, 300.00, 800.00), two pre-dispute alerts (50.00, 150.00)
    /// and one consumer dispute (200.00), each at the 40% prior, Stripe's 15.00 fee and 20.00 of analyst time.
    fn fixture() -> Vec<TriageInput> {
        vec![
            input(ReasonCategory::Fraud, 1_000, Stage::Chargeback),
            input(ReasonCategory::Fraud, 30_000, Stage::Chargeback),
            input(ReasonCategory::Fraud, 80_000, Stage::Chargeback),
            input(ReasonCategory::Fraud, 5_000, Stage::PreDispute),
            input(ReasonCategory::Fraud, 15_000, Stage::PreDispute),
            input(ReasonCategory::ConsumerDispute, 20_000, Stage::Chargeback),
        ]
    }

    const STRICTER: &str = r#"
[[rule]]
name = "refund small alerts"
when = { stage = "pre_dispute" }
queue = "care"
priority = 2
action = "refund"
autonomous = true
autonomy_limit_minor = 10000

[[rule]]
name = "accept what is not worth it"
when = { cheaper_to_accept = true }
queue = "fraud"
action = "accept"
autonomous = true
autonomy_limit_minor = 5000

[[rule]]
name = "large fraud to a lead"
when = { category = "fraud", currency = "EUR", amount_at_least_minor = 50000 }
queue = "fraud"
priority = 1
action = "escalate"
"#;

    #[test]
    fn a_backtest_of_the_active_policy_changes_nothing() {
        let active = Policy::builtin_default();
        let mut backtest = Backtest::default();
        for input in fixture() {
            assert!(backtest.add(&active, &active, &input, 30).is_none());
        }
        assert_eq!(backtest.disputes, 6);
        assert_eq!(backtest.changed, 0);
        assert_eq!(backtest.active, backtest.draft);
    }

    #[test]
    fn a_stricter_policy_reports_the_differences_computed_by_hand() {
        let active = Policy::builtin_default();
        let draft = Policy::from_toml(STRICTER).unwrap();
        let mut backtest = Backtest::default();
        let changed: Vec<ChangedDispute> = fixture()
            .iter()
            .filter_map(|input| backtest.add(&active, &draft, input, 30))
            .collect();
        // By hand, under the draft:
        // - 10.00 fraud chargeback: accepting costs 10.00, defending 35.00 + 6.00: accept, alone (≤ 50.00).
        // - 300.00 fraud: defending costs 35.00 + 180.00 < 300.00: no rule, the fallback (fraud, defend).
        // - 800.00 fraud: escalated to a lead, priority 1.
        // - 50.00 alert: refunded alone (≤ 100.00).
        // - 150.00 alert: refund above the limit, waits for approval.
        // - 200.00 consumer dispute: the fallback (seller, defend), as the active policy.
        assert_eq!(backtest.changed, 4);
        assert_eq!(changed.len(), 4);
        // The two alerts go to care instead of fraud.
        assert_eq!(backtest.routed_differently, 2);
        assert_eq!(backtest.refunded_differently, 2);
        assert_eq!(backtest.accepted_differently, 1);
        // The accepted chargeback, the escalated one and the two refunded alerts are no longer defended.
        assert_eq!(backtest.defended_differently, 4);
        assert_eq!(backtest.draft.autonomous, 2);
        assert_eq!(backtest.draft.approvals_needed, 1);
        assert_eq!(backtest.draft.analyst_disputes, 4);
        assert_eq!(backtest.draft.analyst_minutes, 120);
        assert_eq!(backtest.active.analyst_disputes, 6);
        assert_eq!(backtest.active.analyst_minutes, 180);
        // Active: every dispute defended, 40% of 10.00 + 300.00 + 800.00 + 50.00 + 150.00 + 200.00 = 604.00,
        // at 35.00 each. Draft: 300.00 and 200.00 defended: 200.00, at 70.00.
        assert_eq!(backtest.active.expected_recovery.get("EUR"), Some(&60_400));
        assert_eq!(backtest.active.defense_cost.get("EUR"), Some(&21_000));
        assert_eq!(backtest.draft.expected_recovery.get("EUR"), Some(&20_000));
        assert_eq!(backtest.draft.defense_cost.get("EUR"), Some(&7_000));
        assert_eq!(backtest.draft.routed.get("care"), Some(&2));
        assert_eq!(backtest.draft.actions.get("escalate"), Some(&1));
        assert_eq!(changed[0].differences, vec!["action", "autonomy"]);
        assert_eq!(changed[2].differences, vec!["queue", "priority", "action", "autonomy"]);
    }
}
