//! Timer policy: when deadline, reminder and outcome-check timers fire, and what each means when it does.
//!
//! The domain asks for a deadline timer at the processor's `due_by`, reminders before it and an outcome check
//! after submission. The engine moves those to the configured times before they are written ([`TimingPolicy::
//! adjust`]): the deadline fires at `due_by - submit_margin`, so that whatever the policy does reaches the
//! processor in time; reminders count back from that internal deadline. When a timer fires, [`TimingPolicy::
//! command_for`] turns it into an ordinary command with a timer actor, and the worker commits that command
//! together with the timer's completion (under its lease), so a timer's effect happens once.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use verdict_domain::{
    Action, Actor, ActorKind, Command, Decision, Dispute, DisputeId, DomainError, Status, TimerInstruction, TimerKind,
};
use verdict_store::{ClaimedTimer, Fence, StoreError};

use crate::{Engine, EngineError};

/// The timer kind of a delayed step follow-up; its payload is the [`Action`] as JSON.
pub const FOLLOW_UP_TIMER: &str = "follow_up";

/// What happens when a dispute's internal deadline passes with nothing submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineAction {
    /// Submit the evidence gathered so far (a dispute still being triaged has none: it expires).
    Submit,
    /// Accept liability at the processor.
    Accept,
    /// Let it expire (counts as lost).
    Expire,
}

impl DeadlineAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadlineAction::Submit => "submit",
            DeadlineAction::Accept => "accept",
            DeadlineAction::Expire => "expire",
        }
    }
}

/// One rule of the deadline policy; the first rule whose every given condition matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineRule {
    /// Reason category: `fraud`, `authorization`, `processing_error` or `consumer_dispute`.
    #[serde(default)]
    pub category: Option<String>,
    /// ISO 4217 code; amounts are compared in this currency's minor units only.
    #[serde(default)]
    pub currency: Option<String>,
    /// Matches amounts below this many minor units.
    #[serde(default)]
    pub below_minor: Option<i64>,
    /// Matches amounts at or above this many minor units.
    #[serde(default)]
    pub at_least_minor: Option<i64>,
    pub action: DeadlineAction,
}

impl DeadlineRule {
    fn matches(&self, dispute: &Dispute) -> bool {
        let category = dispute.reason_code.category().as_str();
        let amount = dispute.amount.minor_units();
        let currency = dispute.amount.currency().code();
        self.category.as_deref().is_none_or(|c| c.trim() == category)
            && self
                .currency
                .as_deref()
                .is_none_or(|c| c.trim().eq_ignore_ascii_case(currency))
            && self.below_minor.is_none_or(|limit| amount < limit)
            && self.at_least_minor.is_none_or(|limit| amount >= limit)
    }
}

/// Days raw notification bodies are kept unless configured otherwise.
pub const DEFAULT_PAYLOAD_RETENTION_DAYS: i64 = 180;

/// `[scheduling]` in verdict.toml: timer offsets, deadline policy, workers and cron schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulingConfig {
    /// Reminders this many hours before the internal deadline (`due_by - submit_margin_hours`).
    pub reminder_hours: Vec<i64>,
    /// The deadline policy acts this long before the processor's `due_by`.
    pub submit_margin_hours: i64,
    /// A submitted dispute without an outcome is escalated after this many days.
    pub outcome_check_days: i64,
    /// What the deadline does when no rule matches.
    pub deadline_default: DeadlineAction,
    /// Rules by reason category and amount, first match wins.
    pub deadline_rules: Vec<DeadlineRule>,
    /// Timers fired at once by each replica.
    pub worker_concurrency: usize,
    /// Steps performed at once by each replica; also the most steps one claim takes.
    pub step_concurrency: usize,
    /// Timers claimed per query.
    pub worker_batch_size: u64,
    /// How long a claim holds before another replica may take the work over.
    pub lease_seconds: i64,
    /// First retry delay of a failed step; doubles per attempt.
    pub retry_base_seconds: i64,
    /// Longest retry delay.
    pub retry_max_seconds: i64,
    /// Share of each retry delay randomised away, in percent.
    pub retry_jitter_percent: u32,
    /// Longest sleep of an idle worker (it also wakes on new work and at the next due time).
    pub max_idle_seconds: u64,
    /// Disputes the daily digest covers: those due within this many hours.
    pub digest_window_hours: i64,
    /// Raw notification bodies (customer data) are blanked this many days after they arrived, once applied.
    pub payload_retention_days: i64,
    /// Cron schedules; by default a daily digest at 07:00 UTC, an hourly timer sweep and a 15-minute
    /// reconciliation.
    pub schedules: Vec<crate::schedules::ScheduleConfig>,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        Self {
            reminder_hours: verdict_domain::machine::REMINDER_HOURS.to_vec(),
            submit_margin_hours: 24,
            outcome_check_days: verdict_domain::machine::OUTCOME_CHECK_DAYS,
            deadline_default: DeadlineAction::Expire,
            deadline_rules: Vec::new(),
            worker_concurrency: 8,
            step_concurrency: 32,
            worker_batch_size: 100,
            lease_seconds: 60,
            retry_base_seconds: 10,
            retry_max_seconds: 3_600,
            retry_jitter_percent: 25,
            max_idle_seconds: 30,
            digest_window_hours: 72,
            payload_retention_days: DEFAULT_PAYLOAD_RETENTION_DAYS,
            schedules: crate::schedules::ScheduleConfig::defaults(),
        }
    }
}

/// The pure timing rules taken from [`SchedulingConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingPolicy {
    pub reminder_hours: Vec<i64>,
    pub submit_margin: Duration,
    pub outcome_check: Duration,
    pub deadline_default: DeadlineAction,
    pub deadline_rules: Vec<DeadlineRule>,
}

impl Default for TimingPolicy {
    fn default() -> Self {
        Self::from_config(&SchedulingConfig::default())
    }
}

/// A timer as the policy understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiredTimer {
    Domain(TimerKind),
    FollowUp(Action),
    Other(String),
}

impl FiredTimer {
    /// Reads a stored timer's kind label (and payload, for follow-ups).
    pub fn parse(kind: &str, payload: Option<&serde_json::Value>) -> Self {
        match kind {
            "deadline" => FiredTimer::Domain(TimerKind::Deadline),
            "outcome_check" => FiredTimer::Domain(TimerKind::OutcomeCheck),
            FOLLOW_UP_TIMER => match payload.and_then(|p| serde_json::from_value::<Action>(p.clone()).ok()) {
                Some(action) => FiredTimer::FollowUp(action),
                None => FiredTimer::Other(kind.to_owned()),
            },
            other => match other
                .strip_prefix("reminder_")
                .and_then(|h| h.strip_suffix('h'))
                .and_then(|h| h.parse::<i64>().ok())
            {
                Some(hours_before) => FiredTimer::Domain(TimerKind::Reminder { hours_before }),
                None => FiredTimer::Other(other.to_owned()),
            },
        }
    }
}

impl TimingPolicy {
    pub fn from_config(config: &SchedulingConfig) -> Self {
        let mut reminder_hours: Vec<i64> = config.reminder_hours.iter().copied().filter(|h| *h > 0).collect();
        reminder_hours.sort_unstable_by(|a, b| b.cmp(a));
        reminder_hours.dedup();
        Self {
            reminder_hours,
            submit_margin: Duration::hours(config.submit_margin_hours.max(0)),
            outcome_check: Duration::days(config.outcome_check_days.max(1)),
            deadline_default: config.deadline_default,
            deadline_rules: config.deadline_rules.clone(),
        }
    }

    /// When the deadline policy acts for a dispute due at `due_by`, decided at `now`: `due_by - margin`, or,
    /// for a dispute that arrives with less than the margin left, halfway between now and `due_by` (so that a
    /// dispute opened 12 hours before its deadline is not acted on the instant it arrives).
    pub fn deadline_fire_at(&self, due_by: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        if due_by <= now {
            return due_by;
        }
        let internal = due_by - self.submit_margin;
        if internal > now {
            internal
        } else {
            now + (due_by - now) / 2
        }
    }

    /// The timers for a dispute due at `due_by`: reminders still ahead, then the deadline.
    pub fn deadline_timers(&self, due_by: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(TimerKind, DateTime<Utc>)> {
        let fire_at = self.deadline_fire_at(due_by, now);
        let mut timers: Vec<(TimerKind, DateTime<Utc>)> = self
            .reminder_hours
            .iter()
            .map(|h| (TimerKind::Reminder { hours_before: *h }, fire_at - Duration::hours(*h)))
            .filter(|(_, at)| *at > now)
            .collect();
        timers.push((TimerKind::Deadline, fire_at));
        timers
    }

    /// Moves the timers of a decision made at `now` to the configured times.
    pub fn adjust(&self, mut decision: Decision, now: DateTime<Utc>) -> Decision {
        let mut timers = Vec::with_capacity(decision.timers.len());
        for instruction in decision.timers {
            match instruction {
                TimerInstruction::CancelAll => timers.push(TimerInstruction::CancelAll),
                // Regenerated below from the deadline, at the configured offsets.
                TimerInstruction::Set {
                    kind: TimerKind::Reminder { .. },
                    ..
                } => {}
                TimerInstruction::Set {
                    kind: TimerKind::Deadline,
                    due_at,
                } => timers.extend(
                    self.deadline_timers(due_at, now)
                        .into_iter()
                        .map(|(kind, due_at)| TimerInstruction::Set { kind, due_at }),
                ),
                TimerInstruction::Set {
                    kind: TimerKind::OutcomeCheck,
                    ..
                } => timers.push(TimerInstruction::Set {
                    kind: TimerKind::OutcomeCheck,
                    due_at: now + self.outcome_check,
                }),
            }
        }
        decision.timers = timers;
        decision
    }

    /// The policy for a dispute whose internal deadline passed.
    pub fn deadline_action(&self, dispute: &Dispute) -> DeadlineAction {
        self.deadline_rules
            .iter()
            .find(|rule| rule.matches(dispute))
            .map_or(self.deadline_default, |rule| rule.action)
    }

    /// What a fired timer asks of its dispute; `None` when it no longer applies.
    pub fn command_for(&self, timer: &FiredTimer, dispute: &Dispute) -> Option<Command> {
        let actor = |name: String| Actor {
            kind: ActorKind::Timer,
            name,
        };
        match timer {
            FiredTimer::Domain(TimerKind::Deadline) => {
                let policy = self.deadline_action(dispute);
                let action = match (policy, dispute.status) {
                    (DeadlineAction::Submit, Status::EvidenceGathering) => Action::Submit,
                    (DeadlineAction::Submit, _) | (DeadlineAction::Expire, _) => Action::Expire,
                    (DeadlineAction::Accept, _) => Action::Accept,
                };
                Some(Command::new(actor("deadline".into()), action).because(format!(
                    "deadline policy {} ({} hours before the processor's deadline)",
                    policy.as_str(),
                    self.submit_margin.num_hours()
                )))
            }
            FiredTimer::Domain(TimerKind::Reminder { hours_before }) => Some(
                Command::new(
                    actor(format!("reminder_{hours_before}h")),
                    Action::RecordReminder {
                        hours_before: *hours_before,
                    },
                )
                .because(format!("{hours_before} hours left before the internal deadline")),
            ),
            FiredTimer::Domain(TimerKind::OutcomeCheck) => Some(
                Command::new(actor("outcome_check".into()), Action::EscalateOverdueOutcome).because(format!(
                    "no outcome {} days after submission; escalated to a lead",
                    self.outcome_check.num_days()
                )),
            ),
            FiredTimer::FollowUp(action) => Some(Command::new(
                Actor {
                    kind: ActorKind::Step,
                    name: "follow_up".into(),
                },
                action.clone(),
            )),
            FiredTimer::Other(_) => None,
        }
    }
}

/// What firing one timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Its command was committed together with the timer's completion.
    Committed,
    /// It no longer applies (the dispute moved on); the timer is to be completed without effect.
    NoEffect(String),
    /// Another worker holds it now; nothing was written.
    LeaseLost,
}

impl Engine {
    /// [`Engine::handle`] whose commit also completes a claimed timer or step, and writes nothing if that
    /// lease was lost.
    pub async fn handle_fenced(&self, id: DisputeId, command: Command, fence: Fence) -> Result<Dispute, EngineError> {
        self.decide_and_commit(id, command, Some(fence)).await
    }

    /// Fires one claimed timer that belongs to a dispute.
    pub async fn fire_timer(&self, timer: &ClaimedTimer) -> Result<Fired, EngineError> {
        let Some(dispute_id) = timer.dispute_id else {
            return Ok(Fired::NoEffect(format!("timer {} belongs to no dispute", timer.kind)));
        };
        let id = DisputeId::from_uuid(dispute_id);
        let Some(dispute) = self.store.load(id).await? else {
            return Ok(Fired::NoEffect(format!("dispute {id} is gone")));
        };
        let fired = FiredTimer::parse(&timer.kind, timer.payload.as_ref());
        let Some(command) = self.timing.command_for(&fired, &dispute) else {
            return Ok(Fired::NoEffect(format!("unknown timer kind {}", timer.kind)));
        };
        let fence = Fence::Timer(verdict_store::Leased {
            id: timer.id,
            lease_token: timer.lease_token,
        });
        match self.handle_fenced(id, command, fence).await {
            Ok(_) => Ok(Fired::Committed),
            Err(EngineError::Domain(err @ (DomainError::IllegalTransition { .. } | DomainError::InvalidInput(_)))) => {
                Ok(Fired::NoEffect(err.to_string()))
            }
            Err(EngineError::Store(StoreError::LeaseLost)) => Ok(Fired::LeaseLost),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn the_deadline_fires_the_margin_before_due_by() {
        let policy = TimingPolicy::default();
        assert_eq!(policy.deadline_fire_at(t(100), t(0)), t(76));
    }

    #[test]
    fn a_dispute_arriving_inside_the_margin_gets_half_of_what_is_left() {
        let policy = TimingPolicy::default();
        assert_eq!(policy.deadline_fire_at(t(12), t(0)), t(6));
    }

    #[test]
    fn a_deadline_already_passed_fires_at_once() {
        let policy = TimingPolicy::default();
        let fire = policy.deadline_fire_at(t(-5), t(0));
        assert!(fire <= t(0), "{fire}");
    }

    #[test]
    fn reminders_count_back_from_the_internal_deadline_and_skip_the_past() {
        let policy = TimingPolicy::default();
        let timers = policy.deadline_timers(t(100), t(0));
        assert_eq!(
            timers,
            vec![
                (TimerKind::Reminder { hours_before: 72 }, t(4)),
                (TimerKind::Reminder { hours_before: 24 }, t(52)),
                (TimerKind::Reminder { hours_before: 4 }, t(72)),
                (TimerKind::Deadline, t(76)),
            ]
        );
        let late = policy.deadline_timers(t(50), t(0));
        assert_eq!(late.len(), 3, "{late:?}: the 72-hour reminder is already past");
    }

    #[test]
    fn timer_labels_parse_back() {
        for kind in [
            TimerKind::Deadline,
            TimerKind::OutcomeCheck,
            TimerKind::Reminder { hours_before: 72 },
        ] {
            assert_eq!(FiredTimer::parse(&kind.label(), None), FiredTimer::Domain(kind));
        }
        let payload = serde_json::to_value(Action::RecordOutcome { won: true }).unwrap();
        assert_eq!(
            FiredTimer::parse(FOLLOW_UP_TIMER, Some(&payload)),
            FiredTimer::FollowUp(Action::RecordOutcome { won: true })
        );
        assert_eq!(FiredTimer::parse("digest", None), FiredTimer::Other("digest".into()));
    }

    #[test]
    fn the_policy_config_reads_from_toml_shape() {
        let config: SchedulingConfig = serde_json::from_value(serde_json::json!({
            "submit_margin_hours": 48,
            "deadline_default": "accept",
            "deadline_rules": [{"category": "fraud", "currency": "EUR", "below_minor": 2500, "action": "expire"}]
        }))
        .unwrap();
        let policy = TimingPolicy::from_config(&config);
        assert_eq!(policy.submit_margin, Duration::hours(48));
        assert_eq!(policy.deadline_default, DeadlineAction::Accept);
        assert_eq!(policy.deadline_rules.len(), 1);
    }
}
