//! Triage policy as versioned data: ordered rules that route a dispute, rank it, recommend what to do and say
//! whether Verdict may do it alone.
//!
//! Leads write policies in TOML and store them as numbered versions; exactly one is active. [`Policy::evaluate`]
//! is pure and total: the first rule whose every condition holds decides, and when none does the built-in
//! fallback (the queue of the reason category, as Verdict always did) decides, so every dispute gets exactly one
//! [`Triage`], with the values the deciding rule read and why. The engine gathers the [`TriageInput`] (order
//! facts, evidence, economics) and records the triage as an event; the backtest evaluates two policies on the
//! same inputs in memory.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::economics::Economics;
use crate::{CardNetwork, Money, Processor, Queue, ReasonCategory, Stage};

/// The most rules one policy may hold: a policy is read by people, and evaluated for every dispute.
pub const MAX_RULES: usize = 200;
/// Priorities run from 1 (most urgent) to this.
pub const LOWEST_PRIORITY: u8 = 5;
/// The priority of the fallback and of a rule that names none.
pub const DEFAULT_PRIORITY: u8 = 3;

/// What a policy recommends doing with a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendedAction {
    /// Gather the evidence and submit a defense (alone: a complete defense at the act-by time).
    Defend,
    /// Accept liability at the processor.
    Accept,
    /// Refund an inquiry or pre-dispute alert before it becomes a chargeback.
    Refund,
    /// Ask the seller for what only the seller has.
    AskSeller,
    /// Ask the customer to withdraw the dispute (delivery is proven).
    AskWithdrawal,
    /// Hand the dispute to a lead.
    Escalate,
}

impl RecommendedAction {
    pub const ALL: [RecommendedAction; 6] = [
        RecommendedAction::Defend,
        RecommendedAction::Accept,
        RecommendedAction::Refund,
        RecommendedAction::AskSeller,
        RecommendedAction::AskWithdrawal,
        RecommendedAction::Escalate,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RecommendedAction::Defend => "defend",
            RecommendedAction::Accept => "accept",
            RecommendedAction::Refund => "refund",
            RecommendedAction::AskSeller => "ask_seller",
            RecommendedAction::AskWithdrawal => "ask_withdrawal",
            RecommendedAction::Escalate => "escalate",
        }
    }

    /// Whether Verdict can perform the action itself (escalating is a person's work).
    pub fn can_act_alone(&self) -> bool {
        !matches!(self, RecommendedAction::Escalate)
    }
}

impl fmt::Display for RecommendedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order's facts a rule may test, when the dispute is linked to its order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrderSignals {
    pub delivered: bool,
    pub tracked: bool,
    /// The goods came back (a refund was recorded on the order).
    pub returned: bool,
    /// The grade of the order's first graded device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<String>,
    pub customer_previous_orders: u32,
    pub customer_previous_disputes: u32,
}

/// Everything a policy reads about one dispute, gathered by the engine (or read back by the backtest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageInput {
    pub category: ReasonCategory,
    pub reason_code: String,
    pub network: CardNetwork,
    pub amount: Money,
    pub processor: Processor,
    pub stage: Stage,
    /// Whole days until the processor's deadline (negative once past); none without a deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    /// None until the dispute is linked to its order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderSignals>,
    /// 0 to 100 (see evidence.rs); 100 exactly when nothing required is missing.
    pub evidence_score: u8,
    pub evidence_complete: bool,
    /// Visa Compelling Evidence 3.0 or Mastercard First-Party Trust applies.
    pub ce_eligible: bool,
    pub seller_liable: bool,
    /// None when no cost of defending is configured for the dispute's currency: the economics conditions then
    /// match neither way, as unknown order facts do.
    pub economics: Option<Economics>,
}

/// Conditions of a rule; each given one must hold (lists: any of their values). A rule without conditions
/// matches every dispute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Conditions {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<ReasonCategory>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reason_code: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<CardNetwork>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processor: Vec<Processor>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stage: Vec<Stage>,
    /// ISO 4217; required with an amount bound, which is in this currency's minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_at_least_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_below_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left_at_most: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left_at_least: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seller: Vec<String>,
    /// Whether the dispute is linked to its order (the order conditions below need one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_linked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grade: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_score_at_least: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ce_eligible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_previous_disputes_at_least: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_previous_orders_at_least: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_liable: Option<bool>,
    /// Accepting is expected to cost less than defending (economics.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cheaper_to_accept: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_recovery_at_least_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win_rate_at_least_percent: Option<u8>,
}

/// One rule: its conditions and what it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub when: Conditions,
    pub queue: Queue,
    #[serde(default = "default_priority")]
    pub priority: u8,
    pub action: RecommendedAction,
    /// Verdict may perform the action itself...
    #[serde(default)]
    pub autonomous: bool,
    /// ...on disputes up to this amount (minor units of the dispute's currency); above it a lead approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonomy_limit_minor: Option<i64>,
}

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

/// An ordered list of rules; the first that matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// A policy that cannot be used, naming the rule (1-based, and its name when it has one) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct PolicyError {
    /// `rule 2 ("big fraud")`, or `policy` for what is outside the rules.
    pub location: String,
    /// `when.currency`, `priority`.
    pub field: String,
    pub message: String,
}

impl PolicyError {
    fn new(location: &str, field: &str, message: impl Into<String>) -> Self {
        let field = field.to_owned();
        Self {
            location: format!("{location}, field `{field}`"),
            field,
            message: message.into(),
        }
    }
}

fn rule_location(index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("rule {} ({name:?})", index + 1),
        None => format!("rule {}", index + 1),
    }
}

/// What the policy decided for one dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triage {
    /// 1-based index of the rule that fired; none when the fallback decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    pub rule: String,
    pub queue: Queue,
    pub priority: u8,
    pub action: RecommendedAction,
    pub autonomy: Autonomy,
    /// The values the deciding rule read, by condition.
    pub read: BTreeMap<String, String>,
    /// Why, in a sentence an analyst can read.
    pub why: String,
}

impl Triage {
    /// Whether two triages decide the same (which rule, and the explanation, aside): an unchanged decision is
    /// not recorded again.
    pub fn same_decision(&self, other: &Triage) -> bool {
        self.queue == other.queue
            && self.priority == other.priority
            && self.action == other.action
            && self.autonomy == other.autonomy
    }
}

/// One run of the triage: the policy version, what it read and what it decided. Stored beside the dispute on
/// every run; recorded as a `triage_decided` event only when its decision differs from the previous run's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageRun {
    pub policy_version: i64,
    pub input: TriageInput,
    pub triage: Triage,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The lead's approval this run asks for (the action is above the rule's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequest>,
}

/// An action the policy would take alone but for its limit: a lead approves it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub action: RecommendedAction,
    pub amount: Money,
    pub limit_minor: i64,
    /// One approval per key: `<dispute>:<action>:policy_approval`, so at most one per dispute and action.
    pub key: String,
}

/// An action the policy takes on a dispute, alone or on a lead's approval, recorded in the commit that takes it:
/// at most once per dispute and action, so a decision that flips away and back does not act twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyActionMark {
    pub action: RecommendedAction,
    /// The approval this performs, moved from pending to approved in the same transaction (none when the
    /// policy acts alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalClaim>,
}

/// A lead's approval claimed by the commit that performs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClaim {
    pub id: uuid::Uuid,
    /// The lead's actor label.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RecommendedAction {
    /// Whether Verdict acts as soon as it decides (a defense waits for the act-by time).
    pub fn acts_at_once(&self) -> bool {
        match self {
            RecommendedAction::Accept
            | RecommendedAction::Refund
            | RecommendedAction::AskSeller
            | RecommendedAction::AskWithdrawal => true,
            RecommendedAction::Defend | RecommendedAction::Escalate => false,
        }
    }
}

/// What Verdict did before policies, as a triage: the reason category's queue, the default priority, a
/// defense prepared by a person. A dispute's first triage is compared with it, so that a policy deciding the
/// same (the built-in default) adds no event to any dispute's history.
pub fn baseline(category: ReasonCategory) -> Triage {
    let queue = Queue::for_category(category);
    Triage {
        rule_index: None,
        rule: FALLBACK_RULE.to_owned(),
        queue,
        priority: DEFAULT_PRIORITY,
        action: RecommendedAction::Defend,
        autonomy: Autonomy::Manual,
        read: BTreeMap::new(),
        why: format!("the {} category goes to the {queue} queue", category.as_str()),
    }
}

/// Whether Verdict may perform the recommended action itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Autonomy {
    /// A person acts.
    Manual,
    /// Verdict acts alone.
    Act,
    /// Verdict would act, but the amount is above the rule's limit: a lead approves first.
    NeedsApproval { limit_minor: i64 },
}

impl Autonomy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Autonomy::Manual => "manual",
            Autonomy::Act => "act",
            Autonomy::NeedsApproval { .. } => "needs_approval",
        }
    }
}

impl Policy {
    /// Reads a policy from TOML and validates it; errors name the rule and the field.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| PolicyError::new("policy", "(syntax)", e.message().to_owned()))?;
        let mut policy = Policy::default();
        for (key, value) in value {
            match key.as_str() {
                "description" => policy.description = Some(field("policy", "description", value)?),
                "rule" => {
                    let toml::Value::Array(rules) = value else {
                        return Err(PolicyError::new(
                            "policy",
                            "rule",
                            "must be an array of tables ([[rule]])",
                        ));
                    };
                    for (index, rule) in rules.into_iter().enumerate() {
                        policy.rules.push(parse_rule(index, rule)?);
                    }
                }
                other => {
                    return Err(PolicyError::new(
                        "policy",
                        other,
                        "unknown field (expected `description` or `rule`)",
                    ));
                }
            }
        }
        policy.validate()?;
        Ok(policy)
    }

    /// The policy as TOML, which [`Policy::from_toml`] reads back to the same policy.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# the policy could not be written as TOML: {e}\n"))
    }

    /// Checks what types alone cannot: names, ranges, amounts with their currency, limits with autonomy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.rules.len() > MAX_RULES {
            return Err(PolicyError::new(
                "policy",
                "rule",
                format!("{} rules; at most {MAX_RULES}", self.rules.len()),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let name = rule.name.trim();
            let at = rule_location(index, (!name.is_empty()).then_some(name));
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                return Err(PolicyError::new(&at, "name", "must be 1 to 100 printable characters"));
            }
            if !names.insert(name.to_owned()) {
                return Err(PolicyError::new(&at, "name", "another rule has the same name"));
            }
            if !(1..=LOWEST_PRIORITY).contains(&rule.priority) {
                return Err(PolicyError::new(
                    &at,
                    "priority",
                    format!("{} is not between 1 (most urgent) and {LOWEST_PRIORITY}", rule.priority),
                ));
            }
            match (rule.autonomous, rule.autonomy_limit_minor) {
                (true, None) => {
                    return Err(PolicyError::new(
                        &at,
                        "autonomy_limit_minor",
                        "an autonomous rule needs the amount up to which Verdict acts alone",
                    ));
                }
                (false, Some(_)) => {
                    return Err(PolicyError::new(
                        &at,
                        "autonomy_limit_minor",
                        "a limit only applies to an autonomous rule (autonomous = true)",
                    ));
                }
                (_, Some(limit)) if limit < 0 => {
                    return Err(PolicyError::new(&at, "autonomy_limit_minor", "must not be negative"));
                }
                _ => {}
            }
            if rule.autonomous && !rule.action.can_act_alone() {
                return Err(PolicyError::new(
                    &at,
                    "autonomous",
                    format!("Verdict cannot {} alone", rule.action),
                ));
            }
            let when = &rule.when;
            if let Some(currency) = &when.currency
                && crate::Currency::parse(currency).is_err()
            {
                return Err(PolicyError::new(
                    &at,
                    "when.currency",
                    format!("{currency:?} is not an ISO 4217 currency"),
                ));
            }
            for (bound, value) in [
                ("when.amount_at_least_minor", when.amount_at_least_minor),
                ("when.amount_below_minor", when.amount_below_minor),
            ] {
                if value.is_some() && when.currency.is_none() {
                    return Err(PolicyError::new(
                        &at,
                        bound,
                        "an amount needs `when.currency`: amounts are compared in one currency's minor units",
                    ));
                }
                if value.is_some_and(|v| v < 0) {
                    return Err(PolicyError::new(&at, bound, "must not be negative"));
                }
            }
            if let (Some(low), Some(high)) = (when.amount_at_least_minor, when.amount_below_minor)
                && low >= high
            {
                return Err(PolicyError::new(
                    &at,
                    "when.amount_below_minor",
                    format!("{high} is not above amount_at_least_minor {low}: no amount matches"),
                ));
            }
            if let (Some(low), Some(high)) = (when.days_left_at_least, when.days_left_at_most)
                && low > high
            {
                return Err(PolicyError::new(
                    &at,
                    "when.days_left_at_most",
                    format!("{high} is below days_left_at_least {low}: no dispute matches"),
                ));
            }
            if when.evidence_score_at_least.is_some_and(|s| s > 100) {
                return Err(PolicyError::new(
                    &at,
                    "when.evidence_score_at_least",
                    "a score is 0 to 100",
                ));
            }
            if when.win_rate_at_least_percent.is_some_and(|s| s > 100) {
                return Err(PolicyError::new(
                    &at,
                    "when.win_rate_at_least_percent",
                    "a rate is 0 to 100",
                ));
            }
            for (list, values) in [
                ("when.reason_code", &when.reason_code),
                ("when.seller", &when.seller),
                ("when.grade", &when.grade),
            ] {
                if values.iter().any(|v| v.trim().is_empty()) {
                    return Err(PolicyError::new(&at, list, "an empty value matches nothing"));
                }
            }
        }
        Ok(())
    }

    /// The first matching rule's decision, or the fallback's; total: every input gets one.
    pub fn evaluate(&self, input: &TriageInput) -> Triage {
        for (index, rule) in self.rules.iter().enumerate() {
            if let Some(read) = rule.when.check(input) {
                let autonomy = autonomy(rule, input);
                let why = explain(&rule_location(index, Some(&rule.name)), rule, &read, autonomy, input);
                return Triage {
                    rule_index: Some(index + 1),
                    rule: rule.name.clone(),
                    queue: rule.queue,
                    priority: rule.priority,
                    action: rule.action,
                    autonomy,
                    read,
                    why,
                };
            }
        }
        let queue = Queue::for_category(input.category);
        let mut read = BTreeMap::new();
        read.insert("category".to_owned(), input.category.as_str().to_owned());
        Triage {
            rule_index: None,
            rule: FALLBACK_RULE.to_owned(),
            queue,
            priority: DEFAULT_PRIORITY,
            action: RecommendedAction::Defend,
            autonomy: Autonomy::Manual,
            read,
            why: format!(
                "no rule matched; the {} category goes to the {queue} queue",
                input.category.as_str()
            ),
        }
    }

    /// Today's behaviour as a policy: the queue follows the reason category, a person acts.
    pub fn builtin_default() -> Policy {
        let rule = |name: &str, category: ReasonCategory, queue: Queue| Rule {
            name: name.to_owned(),
            when: Conditions {
                category: vec![category],
                ..Conditions::default()
            },
            queue,
            priority: DEFAULT_PRIORITY,
            action: RecommendedAction::Defend,
            autonomous: false,
            autonomy_limit_minor: None,
        };
        Policy {
            description: Some("Verdict's default: the queue follows the reason category; analysts act.".into()),
            rules: vec![
                rule("fraud to the fraud queue", ReasonCategory::Fraud, Queue::Fraud),
                rule(
                    "consumer disputes to the seller queue",
                    ReasonCategory::ConsumerDispute,
                    Queue::Seller,
                ),
                rule("authorization to care", ReasonCategory::Authorization, Queue::Care),
                rule(
                    "processing errors to care",
                    ReasonCategory::ProcessingError,
                    Queue::Care,
                ),
            ],
        }
    }
}

/// The name the fallback decision carries.
pub const FALLBACK_RULE: &str = "(no rule matched)";

fn autonomy(rule: &Rule, input: &TriageInput) -> Autonomy {
    match (rule.autonomous, rule.autonomy_limit_minor) {
        (true, Some(limit)) if input.amount.minor_units() <= limit => Autonomy::Act,
        (true, Some(limit)) => Autonomy::NeedsApproval { limit_minor: limit },
        _ => Autonomy::Manual,
    }
}

fn explain(
    location: &str,
    rule: &Rule,
    read: &BTreeMap<String, String>,
    autonomy: Autonomy,
    input: &TriageInput,
) -> String {
    let conditions = if read.is_empty() {
        "it has no conditions".to_owned()
    } else {
        read.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let alone = match autonomy {
        Autonomy::Manual => "a person acts".to_owned(),
        Autonomy::Act => format!("Verdict may {} alone", rule.action),
        Autonomy::NeedsApproval { limit_minor } => format!(
            "Verdict would {} but {} is above the rule's limit of {limit_minor} minor units: a lead approves first",
            rule.action,
            input.amount.minor_units()
        ),
    };
    format!(
        "{location} matched ({conditions}): {} queue, priority {}, {}; {alone}",
        rule.queue, rule.priority, rule.action
    )
}

fn field<T: serde::de::DeserializeOwned>(location: &str, name: &str, value: toml::Value) -> Result<T, PolicyError> {
    value
        .try_into()
        .map_err(|e: toml::de::Error| PolicyError::new(location, name, e.message().to_owned()))
}

/// Reads one rule key by key, so that an error names its field.
fn parse_rule(index: usize, value: toml::Value) -> Result<Rule, PolicyError> {
    let toml::Value::Table(table) = value else {
        return Err(PolicyError::new(&rule_location(index, None), "rule", "must be a table"));
    };
    let name = table.get("name").and_then(|n| n.as_str()).map(str::to_owned);
    let at = rule_location(index, name.as_deref());
    let mut rule = Rule {
        name: String::new(),
        when: Conditions::default(),
        queue: Queue::Care,
        priority: DEFAULT_PRIORITY,
        action: RecommendedAction::Defend,
        autonomous: false,
        autonomy_limit_minor: None,
    };
    let (mut has_name, mut has_queue, mut has_action) = (false, false, false);
    for (key, value) in table {
        match key.as_str() {
            "name" => {
                rule.name = field(&at, "name", value)?;
                has_name = true;
            }
            "queue" => {
                rule.queue = field(&at, "queue", value)?;
                has_queue = true;
            }
            "priority" => rule.priority = field(&at, "priority", value)?,
            "action" => {
                rule.action = field(&at, "action", value)?;
                has_action = true;
            }
            "autonomous" => rule.autonomous = field(&at, "autonomous", value)?,
            "autonomy_limit_minor" => rule.autonomy_limit_minor = Some(field(&at, "autonomy_limit_minor", value)?),
            "when" => rule.when = parse_conditions(&at, value)?,
            other => {
                return Err(PolicyError::new(
                    &at,
                    other,
                    "unknown field (expected name, when, queue, priority, action, autonomous, autonomy_limit_minor)",
                ));
            }
        }
    }
    for (present, missing) in [(has_name, "name"), (has_queue, "queue"), (has_action, "action")] {
        if !present {
            return Err(PolicyError::new(&at, missing, "is required"));
        }
    }
    Ok(rule)
}

fn parse_conditions(at: &str, value: toml::Value) -> Result<Conditions, PolicyError> {
    let toml::Value::Table(table) = value else {
        return Err(PolicyError::new(at, "when", "must be a table of conditions"));
    };
    let mut when = Conditions::default();
    for (key, value) in table {
        let path = format!("when.{key}");
        let p = path.as_str();
        match key.as_str() {
            "category" => when.category = list(at, p, value)?,
            "reason_code" => when.reason_code = list(at, p, value)?,
            "network" => when.network = list(at, p, value)?,
            "processor" => when.processor = list(at, p, value)?,
            "stage" => when.stage = list(at, p, value)?,
            "currency" => when.currency = Some(field(at, p, value)?),
            "amount_at_least_minor" => when.amount_at_least_minor = Some(field(at, p, value)?),
            "amount_below_minor" => when.amount_below_minor = Some(field(at, p, value)?),
            "days_left_at_most" => when.days_left_at_most = Some(field(at, p, value)?),
            "days_left_at_least" => when.days_left_at_least = Some(field(at, p, value)?),
            "seller" => when.seller = list(at, p, value)?,
            "order_linked" => when.order_linked = Some(field(at, p, value)?),
            "delivered" => when.delivered = Some(field(at, p, value)?),
            "tracked" => when.tracked = Some(field(at, p, value)?),
            "returned" => when.returned = Some(field(at, p, value)?),
            "grade" => when.grade = list(at, p, value)?,
            "evidence_complete" => when.evidence_complete = Some(field(at, p, value)?),
            "evidence_score_at_least" => when.evidence_score_at_least = Some(field(at, p, value)?),
            "ce_eligible" => when.ce_eligible = Some(field(at, p, value)?),
            "customer_previous_disputes_at_least" => {
                when.customer_previous_disputes_at_least = Some(field(at, p, value)?)
            }
            "customer_previous_orders_at_least" => when.customer_previous_orders_at_least = Some(field(at, p, value)?),
            "seller_liable" => when.seller_liable = Some(field(at, p, value)?),
            "cheaper_to_accept" => when.cheaper_to_accept = Some(field(at, p, value)?),
            "expected_recovery_at_least_minor" => when.expected_recovery_at_least_minor = Some(field(at, p, value)?),
            "win_rate_at_least_percent" => when.win_rate_at_least_percent = Some(field(at, p, value)?),
            _ => return Err(PolicyError::new(at, p, "unknown condition")),
        }
    }
    Ok(when)
}

/// A list condition, also written as a single value (`category = "fraud"`).
fn list<T: serde::de::DeserializeOwned>(at: &str, path: &str, value: toml::Value) -> Result<Vec<T>, PolicyError> {
    match value {
        toml::Value::Array(_) => field(at, path, value),
        single => Ok(vec![field(at, path, single)?]),
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes".into() } else { "no".into() }
}

impl Conditions {
    /// The values read when every condition holds; `None` at the first that does not.
    pub fn check(&self, input: &TriageInput) -> Option<BTreeMap<String, String>> {
        let mut read = BTreeMap::new();
        let mut note = |key: &str, value: String, holds: bool| {
            read.insert(key.to_owned(), value);
            holds
        };
        let amount = input.amount.minor_units();
        let order = input.order.as_ref();
        let economics = input.economics.as_ref();
        let same_currency = self
            .currency
            .as_deref()
            .is_none_or(|c| c.trim().eq_ignore_ascii_case(input.amount.currency().code()));
        let holds = (self.category.is_empty()
            || note(
                "category",
                input.category.as_str().to_owned(),
                self.category.contains(&input.category),
            ))
            && (self.reason_code.is_empty()
                || note(
                    "reason_code",
                    input.reason_code.clone(),
                    self.reason_code.iter().any(|c| c.trim() == input.reason_code),
                ))
            && (self.network.is_empty()
                || note(
                    "network",
                    input.network.as_str().to_owned(),
                    self.network.contains(&input.network),
                ))
            && (self.processor.is_empty()
                || note(
                    "processor",
                    input.processor.as_str().to_owned(),
                    self.processor.contains(&input.processor),
                ))
            && (self.stage.is_empty()
                || note(
                    "stage",
                    input.stage.as_str().to_owned(),
                    self.stage.contains(&input.stage),
                ))
            && (self.currency.is_none() || note("currency", input.amount.currency().code().to_owned(), same_currency))
            && self
                .amount_at_least_minor
                .is_none_or(|v| note("amount_minor", amount.to_string(), amount >= v))
            && self
                .amount_below_minor
                .is_none_or(|v| note("amount_minor", amount.to_string(), amount < v))
            && self.days_left_at_most.is_none_or(|v| {
                note(
                    "days_left",
                    input.days_left.map_or("none".into(), |d| d.to_string()),
                    input.days_left.is_some_and(|d| d <= v),
                )
            })
            && self.days_left_at_least.is_none_or(|v| {
                note(
                    "days_left",
                    input.days_left.map_or("none".into(), |d| d.to_string()),
                    input.days_left.is_some_and(|d| d >= v),
                )
            })
            && (self.seller.is_empty()
                || note(
                    "seller",
                    input.seller_id.clone().unwrap_or_else(|| "none".into()),
                    input
                        .seller_id
                        .as_deref()
                        .is_some_and(|s| self.seller.iter().any(|x| x.trim() == s)),
                ))
            && self
                .order_linked
                .is_none_or(|v| note("order_linked", yes_no(order.is_some()), order.is_some() == v))
            && self.delivered.is_none_or(|v| {
                note(
                    "delivered",
                    order.map_or("unknown".into(), |o| yes_no(o.delivered)),
                    order.is_some_and(|o| o.delivered == v),
                )
            })
            && self.tracked.is_none_or(|v| {
                note(
                    "tracked",
                    order.map_or("unknown".into(), |o| yes_no(o.tracked)),
                    order.is_some_and(|o| o.tracked == v),
                )
            })
            && self.returned.is_none_or(|v| {
                note(
                    "returned",
                    order.map_or("unknown".into(), |o| yes_no(o.returned)),
                    order.is_some_and(|o| o.returned == v),
                )
            })
            && (self.grade.is_empty() || {
                let grade = order.and_then(|o| o.grade.clone());
                note(
                    "grade",
                    grade.clone().unwrap_or_else(|| "none".into()),
                    grade.is_some_and(|g| self.grade.iter().any(|x| x.trim().eq_ignore_ascii_case(g.trim()))),
                )
            })
            && self.evidence_complete.is_none_or(|v| {
                note(
                    "evidence_complete",
                    yes_no(input.evidence_complete),
                    input.evidence_complete == v,
                )
            })
            && self.evidence_score_at_least.is_none_or(|v| {
                note(
                    "evidence_score",
                    input.evidence_score.to_string(),
                    input.evidence_score >= v,
                )
            })
            && self
                .ce_eligible
                .is_none_or(|v| note("ce_eligible", yes_no(input.ce_eligible), input.ce_eligible == v))
            && self.customer_previous_disputes_at_least.is_none_or(|v| {
                note(
                    "customer_previous_disputes",
                    order.map_or("unknown".into(), |o| o.customer_previous_disputes.to_string()),
                    order.is_some_and(|o| o.customer_previous_disputes >= v),
                )
            })
            && self.customer_previous_orders_at_least.is_none_or(|v| {
                note(
                    "customer_previous_orders",
                    order.map_or("unknown".into(), |o| o.customer_previous_orders.to_string()),
                    order.is_some_and(|o| o.customer_previous_orders >= v),
                )
            })
            && self
                .seller_liable
                .is_none_or(|v| note("seller_liable", yes_no(input.seller_liable), input.seller_liable == v))
            && self.cheaper_to_accept.is_none_or(|v| {
                let cheaper = economics.map(Economics::cheaper_to_accept);
                note(
                    "cheaper_to_accept",
                    cheaper.map_or("unknown".into(), yes_no),
                    cheaper == Some(v),
                )
            })
            && self.expected_recovery_at_least_minor.is_none_or(|v| {
                note(
                    "expected_recovery_minor",
                    economics.map_or("unknown".into(), |e| e.expected_recovery_minor.to_string()),
                    economics.is_some_and(|e| e.expected_recovery_minor >= v),
                )
            })
            && self.win_rate_at_least_percent.is_none_or(|v| {
                note(
                    "win_rate_bps",
                    economics.map_or("unknown".into(), |e| e.win_rate_bps.to_string()),
                    economics.is_some_and(|e| e.win_rate_bps >= u32::from(v) * 100),
                )
            });
        holds.then_some(read)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
