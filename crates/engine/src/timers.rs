//! Timer policy: when deadline, reminder and outcome-check timers fire, and what each means when it does.
//!
//! The domain asks for an act-by timer and a deadline timer at the processor's `due_by`, reminders before them
//! and an outcome check after submission. The engine moves those to the configured times before they are
//! written ([`TimingPolicy::adjust`]): the act-by timer fires at the internal act-by time, `due_by -
//! submit_margin` (shown as `actBy`), so that whatever the deadline policy submits or accepts reaches the
//! processor in time, and reminders count back from it. The deadline timer stays at `due_by` itself: a dispute
//! only expires when the processor's own deadline has passed (or the processor says so), never while the
//! processor still accepts evidence. When a timer fires, [`TimingPolicy::command_for`] turns it into an
//! ordinary command with a timer actor, and the worker commits that command together with the timer's
//! completion (under its lease), so a timer's effect happens once.
//!
//! A seller task has timers of its own, set with the order link: a reminder to the seller before the task's
//! deadline and the deadline itself. Both look at the dispute when they fire: once the seller answered (evidence
//! added, or a file uploaded through the seller's link) they do nothing; otherwise the reminder sends a seller
//! message through the ordinary message step and the deadline records `seller_did_not_answer` for the analyst.
//! A decision that cancels a dispute's timers while the task is still open sets these again (a reminder only if
//! none was sent).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use verdict_domain::{
    Action, Actor, ActorKind, Command, Decision, Dispute, DisputeId, DomainError, Status, TimerInstruction, TimerKind,
};
use verdict_store::{ClaimedTimer, Fence, StoreError};

use crate::{Engine, EngineError};

/// The timer kind of a delayed step follow-up; its payload is the [`Action`] as JSON.
pub const FOLLOW_UP_TIMER: &str = "follow_up";

/// What happens when a dispute's act-by time passes with nothing submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineAction {
    /// Submit the evidence gathered so far (a dispute still being triaged has none: it is left to expire at
    /// the processor's deadline).
    Submit,
    /// Accept liability at the processor.
    Accept,
    /// Do nothing at the act-by time but tell the assignee; the dispute expires (counts as lost) when the
    /// processor's deadline has passed.
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

/// Minutes the finished timers and steps of a closed dispute stay in the queue tables unless configured
/// otherwise: a day, for looking at what just happened; the dispute's events keep the history for good.
pub const DEFAULT_FINISHED_WORK_RETENTION_MINUTES: i64 = 24 * 60;

/// `[scheduling]` in verdict.toml: timer offsets, deadline policy, workers and cron schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulingConfig {
    /// Reminders this many hours before the act-by time (`due_by - submit_margin_hours`).
    pub reminder_hours: Vec<i64>,
    /// The act-by time, when the deadline policy acts, is this long before the processor's `due_by`.
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
    /// The finished timers and steps of a dispute closed this many minutes ago are deleted by the
    /// `purge_finished_work` job, so the queue tables stay small.
    pub finished_work_retention_minutes: i64,
    /// Cron schedules; by default a daily digest at 07:00 UTC, an hourly timer sweep, a 15-minute
    /// reconciliation, the daily payload retention and the finished-work purge every 10 minutes. Configuring
    /// any replaces them all.
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
            // With 128 fired at once and 256 per claim, a replica's commits ran mostly one after the other
            // (PostgreSQL busy on one core, the other idle); twice as many keep two in flight
            // (docs/benchmarks.md, 2026-12-02).
            worker_concurrency: 256,
            step_concurrency: 32,
            worker_batch_size: 1_024,
            lease_seconds: 60,
            retry_base_seconds: 10,
            retry_max_seconds: 3_600,
            retry_jitter_percent: 25,
            max_idle_seconds: 30,
            digest_window_hours: 72,
            payload_retention_days: DEFAULT_PAYLOAD_RETENTION_DAYS,
            finished_work_retention_minutes: DEFAULT_FINISHED_WORK_RETENTION_MINUTES,
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
            "act_by" => FiredTimer::Domain(TimerKind::ActBy),
            "outcome_check" => FiredTimer::Domain(TimerKind::OutcomeCheck),
            "seller_reminder" => FiredTimer::Domain(TimerKind::SellerReminder),
            "seller_due" => FiredTimer::Domain(TimerKind::SellerDue),
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

    /// The internal act-by time of a dispute due at `due_by`: `due_by - submit_margin`. Shown as `actBy`.
    pub fn act_by(&self, due_by: DateTime<Utc>) -> DateTime<Utc> {
        due_by - self.submit_margin
    }

    /// When the deadline policy acts for a dispute due at `due_by`, decided at `now`: at the act-by time, or,
    /// for a dispute that arrives with less than the margin left, halfway between now and `due_by` (so that a
    /// dispute opened 12 hours before its deadline is not acted on the instant it arrives); for a due date
    /// already past, halfway through the grace window before it expires.
    pub fn act_by_fire_at(&self, due_by: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let act_by = self.act_by(due_by);
        if act_by > now {
            act_by
        } else if due_by > now {
            now + (due_by - now) / 2
        } else {
            now + Duration::hours(verdict_domain::machine::PAST_DUE_GRACE_HOURS) / 2
        }
    }

    /// When a dispute due at `due_by` expires, decided at `now`: at `due_by`, never before; a due date already
    /// past gets the domain's grace window ([`verdict_domain::expiry_at`]), so it never expires at once.
    pub fn deadline_fire_at(&self, due_by: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        verdict_domain::expiry_at(due_by, now)
    }

    fn act_by_timers(&self, due_by: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(TimerKind, DateTime<Utc>)> {
        let fire_at = self.act_by_fire_at(due_by, now);
        let mut timers: Vec<(TimerKind, DateTime<Utc>)> = self
            .reminder_hours
            .iter()
            .map(|h| (TimerKind::Reminder { hours_before: *h }, fire_at - Duration::hours(*h)))
            .filter(|(_, at)| *at > now)
            .collect();
        timers.push((TimerKind::ActBy, fire_at));
        timers
    }

    /// The timers for a dispute due at `due_by`: reminders still ahead, the act-by time, then the deadline.
    pub fn deadline_timers(&self, due_by: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(TimerKind, DateTime<Utc>)> {
        let mut timers = self.act_by_timers(due_by, now);
        timers.push((TimerKind::Deadline, self.deadline_fire_at(due_by, now)));
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
                // The domain asks for it at `due_by`; the reminders count back from where it lands.
                TimerInstruction::Set {
                    kind: TimerKind::ActBy,
                    due_at,
                } => timers.extend(
                    self.act_by_timers(due_at, now)
                        .into_iter()
                        .map(|(kind, due_at)| TimerInstruction::Set { kind, due_at }),
                ),
                // The processor's deadline (or the grace window after a past one) as the domain set it.
                deadline @ TimerInstruction::Set {
                    kind: TimerKind::Deadline,
                    ..
                } => timers.push(deadline),
                TimerInstruction::Set {
                    kind: TimerKind::OutcomeCheck,
                    ..
                } => timers.push(TimerInstruction::Set {
                    kind: TimerKind::OutcomeCheck,
                    due_at: now + self.outcome_check,
                }),
                // The seller task's own times, as the domain set them.
                seller @ TimerInstruction::Set {
                    kind: TimerKind::SellerReminder | TimerKind::SellerDue,
                    ..
                } => timers.push(seller),
            }
        }
        decision.timers = timers;
        decision
    }

    /// The policy for a dispute whose act-by time passed.
    pub fn deadline_action(&self, dispute: &Dispute) -> DeadlineAction {
        self.deadline_rules
            .iter()
            .find(|rule| rule.matches(dispute))
            .map_or(self.deadline_default, |rule| rule.action)
    }

    /// What the deadline policy does when the act-by time passes: submit what is gathered, accept, or (nothing
    /// to submit, or the expire policy) only record it and tell the assignee. Never anything terminal but an
    /// acceptance the policy asks for: expiring waits for the processor's deadline.
    fn act_by_command(&self, dispute: &Dispute, timer_name: &str) -> Command {
        let policy = self.deadline_action(dispute);
        let action = match (policy, dispute.status) {
            (DeadlineAction::Submit, Status::EvidenceGathering) => Action::Submit,
            (DeadlineAction::Accept, status) if status.is_open() && status != Status::Submitted => Action::Accept,
            _ => Action::RecordActByPassed,
        };
        let due_by = dispute.due_by.map_or_else(|| "unknown".to_owned(), |d| d.to_rfc3339());
        Command::new(
            Actor {
                kind: ActorKind::Timer,
                name: timer_name.to_owned(),
            },
            action,
        )
        .because(format!(
            "act-by time passed ({} hours before the processor's deadline {due_by}); deadline policy {}",
            self.submit_margin.num_hours(),
            policy.as_str(),
        ))
    }

    /// What a fired timer asks of its dispute at `now`; `None` when it no longer applies.
    pub fn command_for(&self, timer: &FiredTimer, dispute: &Dispute, now: DateTime<Utc>) -> Option<Command> {
        let actor = |name: String| Actor {
            kind: ActorKind::Timer,
            name,
        };
        match timer {
            FiredTimer::Domain(TimerKind::ActBy) => Some(self.act_by_command(dispute, "act_by")),
            FiredTimer::Domain(TimerKind::Deadline) => match dispute.due_by {
                // A deadline timer written before act-by timers existed sat at the act-by time: it acts as one,
                // and the deadline is set again at the processor's due date.
                Some(due_by) if due_by > now => Some(self.act_by_command(dispute, "deadline")),
                Some(due_by) => Some(Command::new(actor("deadline".into()), Action::Expire).because(format!(
                    "the processor's deadline {} passed with nothing submitted",
                    due_by.to_rfc3339()
                ))),
                None => None,
            },
            FiredTimer::Domain(TimerKind::Reminder { hours_before }) => Some(
                Command::new(
                    actor(format!("reminder_{hours_before}h")),
                    Action::RecordReminder {
                        hours_before: *hours_before,
                    },
                )
                .because(format!("{hours_before} hours left before the act-by time")),
            ),
            FiredTimer::Domain(TimerKind::OutcomeCheck) => Some(
                Command::new(actor("outcome_check".into()), Action::EscalateOverdueOutcome).because(format!(
                    "no outcome {} days after submission; escalated to a lead",
                    self.outcome_check.num_days()
                )),
            ),
            // The engine decides these from the seller task and whether the seller answered (fire_timer).
            FiredTimer::Domain(TimerKind::SellerReminder | TimerKind::SellerDue) => None,
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

/// What a claim of timers read for all of its act-by timers at once ([`Engine::read_for_timers`]).
#[derive(Debug, Clone, Default)]
pub struct TimerClaimReads {
    /// Disputes the policy already submitted a defense for.
    defended: HashSet<Uuid>,
    /// The last triage run of each dispute that has one.
    runs: HashMap<Uuid, verdict_domain::TriageRun>,
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
    /// At the act-by time, a defense the policy may submit alone (its rule defends autonomously, the amount is
    /// within the limit, and the evidence was complete at the last triage) is submitted by `policy:VERSION`
    /// instead of what the deadline policy would do. `reads` holds what the claim already read for this
    /// dispute; without it the policy mark and the triage run are read here.
    async fn policy_defense(
        &self,
        dispute: &Dispute,
        reads: Option<&TimerClaimReads>,
    ) -> Result<Option<Command>, EngineError> {
        if !matches!(
            dispute.status,
            Status::Notified | Status::Triaged | Status::EvidenceGathering
        ) {
            return Ok(None);
        }
        let defend = verdict_domain::RecommendedAction::Defend.as_str();
        let (defended, run) = match reads {
            Some(reads) => (
                reads.defended.contains(&dispute.id.as_uuid()),
                reads.runs.get(&dispute.id.as_uuid()).cloned(),
            ),
            None => (
                self.store.policy_action_taken(dispute.id, defend).await?,
                self.store.triage_run(dispute.id).await?,
            ),
        };
        let Some(run) = run.filter(|_| !defended) else {
            return Ok(None);
        };
        let defends_alone = run.triage.action == verdict_domain::RecommendedAction::Defend
            && run.triage.autonomy == verdict_domain::Autonomy::Act;
        if !defends_alone || !run.input.evidence_complete {
            return Ok(None);
        }
        Ok(Some(
            Command::new(
                Actor::policy(run.policy_version),
                Action::SubmitDefense {
                    missing: Vec::new(),
                    override_reason: None,
                },
            )
            .because(format!(
                "act-by time: the policy submits the complete defense; {}",
                run.triage.why
            )),
        ))
    }

    /// What the act-by timers of a claim need beyond their disputes, read for the whole claim in two queries:
    /// the policy's defense marks and the last triage runs of the disputes it may defend.
    pub async fn read_for_timers(
        &self,
        claimed: &[(ClaimedTimer, Option<Dispute>)],
    ) -> Result<TimerClaimReads, EngineError> {
        let ids: Vec<DisputeId> = claimed
            .iter()
            .filter(|(timer, _)| timer.kind == "act_by")
            .filter_map(|(_, dispute)| dispute.as_ref())
            .filter(|d| matches!(d.status, Status::Notified | Status::Triaged | Status::EvidenceGathering))
            .map(|d| d.id)
            .collect();
        if ids.is_empty() {
            return Ok(TimerClaimReads::default());
        }
        let defend = verdict_domain::RecommendedAction::Defend.as_str();
        Ok(TimerClaimReads {
            defended: self.store.policy_actions_taken(&ids, defend).await?,
            runs: self.store.triage_runs(&ids).await?,
        })
    }

    /// [`Engine::handle`] whose commit also completes a claimed timer or step (nothing is written if that lease
    /// was lost), deciding first on `loaded`, the dispute as the claim read it: it is read again only if the
    /// commit finds it moved or that copy refuses the command.
    pub async fn handle_fenced(&self, loaded: Dispute, command: Command, fence: Fence) -> Result<Dispute, EngineError> {
        Ok(self
            .decide_commit_from(loaded.id, command, Some(fence), None, Some(loaded))
            .await?
            .0)
    }

    /// Fires one claimed timer that belongs to a dispute, reading its dispute first.
    pub async fn fire_timer(&self, timer: &ClaimedTimer) -> Result<Fired, EngineError> {
        self.fire_claimed_timer(timer, None, None).await
    }

    /// Fires one claimed timer on `loaded`, its dispute as the claim read it (`None`: read it here), with
    /// `reads` of the same claim ([`Engine::read_for_timers`]). Both are only for the first timer of a dispute
    /// in a claim: the ones after it see what it committed.
    pub async fn fire_claimed_timer(
        &self,
        timer: &ClaimedTimer,
        loaded: Option<Dispute>,
        reads: Option<&TimerClaimReads>,
    ) -> Result<Fired, EngineError> {
        let Some(dispute_id) = timer.dispute_id else {
            return Ok(Fired::NoEffect(format!("timer {} belongs to no dispute", timer.kind)));
        };
        let id = DisputeId::from_uuid(dispute_id);
        let (dispute, reads) = match loaded.filter(|d| d.id == id) {
            Some(dispute) => (dispute, reads),
            None => match self.store.load(id).await? {
                Some(dispute) => (dispute, None),
                None => return Ok(Fired::NoEffect(format!("dispute {id} is gone"))),
            },
        };
        let fired = FiredTimer::parse(&timer.kind, timer.payload.as_ref());
        let fence = Fence::Timer(verdict_store::Leased {
            id: timer.id,
            lease_token: timer.lease_token,
        });
        if let FiredTimer::Domain(kind @ (TimerKind::SellerReminder | TimerKind::SellerDue)) = fired {
            let Some(command) = self.seller_timer_command(kind, &dispute).await? else {
                return Ok(Fired::NoEffect(format!(
                    "{}: the seller answered, or the dispute awaits no seller",
                    timer.kind
                )));
            };
            return self.commit_fired(id, command, fence, None, dispute).await;
        }
        let Some(command) = self.timing.command_for(&fired, &dispute, self.clock.now()) else {
            return Ok(Fired::NoEffect(format!(
                "timer {} does not apply to a {} dispute without a due date",
                timer.kind, dispute.status
            )));
        };
        // The policy's own defense is marked in its commit, once per dispute.
        let (command, mark) = match fired {
            FiredTimer::Domain(TimerKind::ActBy) => match self.policy_defense(&dispute, reads).await? {
                Some(defense) => (
                    defense,
                    Some(verdict_domain::PolicyActionMark {
                        action: verdict_domain::RecommendedAction::Defend,
                        approval: None,
                    }),
                ),
                None => (command, None),
            },
            _ => (command, None),
        };
        self.commit_fired(id, command, fence, mark, dispute).await
    }

    /// Commits a fired timer's command with the timer's completion.
    async fn commit_fired(
        &self,
        id: DisputeId,
        command: Command,
        fence: Fence,
        mark: Option<verdict_domain::PolicyActionMark>,
        loaded: Dispute,
    ) -> Result<Fired, EngineError> {
        match self
            .decide_commit_from(id, command, Some(fence), mark, Some(loaded))
            .await
        {
            Ok(_) => Ok(Fired::Committed),
            Err(EngineError::Domain(err @ (DomainError::IllegalTransition { .. } | DomainError::InvalidInput(_)))) => {
                Ok(Fired::NoEffect(err.to_string()))
            }
            Err(EngineError::Store(StoreError::LeaseLost)) => Ok(Fired::LeaseLost),
            Err(err) => Err(err),
        }
    }
}

/// A seller task as its dispute's log tells it: the task, when it opened, whether the seller answered since
/// (evidence added) and whether the reminder was sent.
struct SellerTaskState {
    task: verdict_domain::SellerTask,
    opened_at: DateTime<Utc>,
    evidence_added: bool,
    reminded: bool,
}

/// The actor of the seller reminder timer.
const SELLER_REMINDER: &str = "seller_reminder";

impl Engine {
    async fn seller_task_state(&self, id: DisputeId) -> Result<Option<SellerTaskState>, EngineError> {
        let events = self.store.events(id).await?;
        let Some(at) = events.iter().rposition(|e| {
            e.kind == verdict_domain::EventKind::OrderLinked.as_str() && e.change.get("seller_task").is_some()
        }) else {
            return Ok(None);
        };
        let Some(task) = events[at]
            .change
            .get("seller_task")
            .and_then(|task| serde_json::from_value::<verdict_domain::SellerTask>(task.clone()).ok())
        else {
            return Ok(None);
        };
        let later = &events[at + 1..];
        Ok(Some(SellerTaskState {
            task,
            opened_at: events[at].at,
            evidence_added: later
                .iter()
                .any(|e| e.kind == verdict_domain::EventKind::EvidenceAdded.as_str()),
            reminded: later.iter().any(|e| {
                e.kind == verdict_domain::EventKind::MessageRequested.as_str()
                    && e.actor == format!("timer:{SELLER_REMINDER}")
            }),
        }))
    }

    /// Whether the dispute still waits for its seller: open, not submitted, with a seller task the seller has not
    /// answered (no evidence added since the task opened, no file uploaded through the seller's link).
    async fn awaited_seller_task(&self, dispute: &Dispute) -> Result<Option<SellerTaskState>, EngineError> {
        if !dispute.status.is_open() || dispute.status == Status::Submitted || dispute.seller_id.is_none() {
            return Ok(None);
        }
        let Some(state) = self.seller_task_state(dispute.id).await? else {
            return Ok(None);
        };
        if state.evidence_added || self.store.seller_uploads_since(dispute.id, state.opened_at).await? > 0 {
            return Ok(None);
        }
        Ok(Some(state))
    }

    /// What a seller task timer does now; `None` once the seller answered or the dispute awaits no seller.
    async fn seller_timer_command(&self, kind: TimerKind, dispute: &Dispute) -> Result<Option<Command>, EngineError> {
        let Some(state) = self.awaited_seller_task(dispute).await? else {
            return Ok(None);
        };
        let due = state.task.due_at.to_rfc3339();
        Ok(Some(match kind {
            TimerKind::SellerReminder if state.reminded => return Ok(None),
            TimerKind::SellerReminder => Command::new(
                Actor {
                    kind: ActorKind::Timer,
                    name: SELLER_REMINDER.to_owned(),
                },
                Action::SendMessage {
                    template: verdict_domain::MessageTemplate::SellerRequestEvidence,
                    text: Some(state.task.reminder_text()),
                    locale: None,
                },
            )
            .because(format!("the seller has not answered; their task is due at {due}")),
            _ => Command::new(
                Actor {
                    kind: ActorKind::Timer,
                    name: "seller_due".to_owned(),
                },
                Action::RecordSellerNoAnswer {
                    due_at: state.task.due_at,
                },
            )
            .because(format!("the seller task was due at {due} and the seller sent nothing")),
        }))
    }

    /// Sets the seller task's timers again when `decision` cancels the dispute's timers and the task is still
    /// awaited: its deadline if ahead, and its reminder if none was sent.
    pub(crate) async fn keep_seller_timers(
        &self,
        after: &Dispute,
        decision: &mut Decision,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if !decision.timers.iter().any(|t| matches!(t, TimerInstruction::CancelAll)) {
            return Ok(());
        }
        let Some(state) = self.awaited_seller_task(after).await? else {
            return Ok(());
        };
        if state.task.due_at <= now {
            return Ok(());
        }
        if !state.reminded
            && let Some(remind_at) = state.task.reminder_at(now)
        {
            decision.timers.push(TimerInstruction::Set {
                kind: TimerKind::SellerReminder,
                due_at: remind_at,
            });
        }
        decision.timers.push(TimerInstruction::Set {
            kind: TimerKind::SellerDue,
            due_at: state.task.due_at,
        });
        Ok(())
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
    fn the_policy_acts_the_margin_before_due_by_and_the_deadline_is_due_by_itself() {
        let policy = TimingPolicy::default();
        assert_eq!(policy.act_by(t(100)), t(76));
        assert_eq!(policy.act_by_fire_at(t(100), t(0)), t(76));
        assert_eq!(policy.deadline_fire_at(t(100), t(0)), t(100));
    }

    #[test]
    fn a_dispute_arriving_inside_the_margin_gets_half_of_what_is_left() {
        let policy = TimingPolicy::default();
        assert_eq!(policy.act_by_fire_at(t(12), t(0)), t(6));
        assert_eq!(policy.deadline_fire_at(t(12), t(0)), t(12));
    }

    #[test]
    fn a_deadline_already_passed_gets_the_grace_window_and_never_fires_at_once() {
        let policy = TimingPolicy::default();
        let grace = verdict_domain::machine::PAST_DUE_GRACE_HOURS;
        assert_eq!(policy.deadline_fire_at(t(-5), t(0)), t(grace));
        assert_eq!(policy.act_by_fire_at(t(-5), t(0)), t(grace / 2));
    }

    #[test]
    fn reminders_count_back_from_the_act_by_time_and_skip_the_past() {
        let policy = TimingPolicy::default();
        let timers = policy.deadline_timers(t(100), t(0));
        assert_eq!(
            timers,
            vec![
                (TimerKind::Reminder { hours_before: 72 }, t(4)),
                (TimerKind::Reminder { hours_before: 24 }, t(52)),
                (TimerKind::Reminder { hours_before: 4 }, t(72)),
                (TimerKind::ActBy, t(76)),
                (TimerKind::Deadline, t(100)),
            ]
        );
        let late = policy.deadline_timers(t(50), t(0));
        assert_eq!(late.len(), 4, "{late:?}: the 72-hour reminder is already past");
    }

    fn dispute(status: Status, due_by: Option<DateTime<Utc>>) -> Dispute {
        let new = verdict_domain::NewDispute {
            processor: verdict_domain::Processor::Stripe,
            processor_dispute_id: "dp_1".into(),
            payment_reference: "pi_1".into(),
            order_reference: None,
            seller_id: None,
            customer: verdict_domain::Customer {
                name: None,
                email: None,
                locale: verdict_domain::Locale::En,
            },
            amount: verdict_domain::Money::new(2_500, verdict_domain::Currency::parse("EUR").unwrap()).unwrap(),
            reason_code: verdict_domain::ReasonCode::parse(verdict_domain::CardNetwork::Visa, "10.4").unwrap(),
            reason_code_raw: "10.4".into(),
            stage: verdict_domain::Stage::Chargeback,
            due_by,
            opened_at: t(0),
        };
        let command = Command::new(Actor::system("test"), Action::Open(Box::new(new)));
        let decision = verdict_domain::open(DisputeId::new_v7(), &command, t(0)).unwrap();
        let mut dispute = verdict_domain::replay(&decision.events).unwrap();
        dispute.status = status;
        dispute
    }

    /// Exhaustively over policies, statuses, timer kinds and firing times around the due date: no timer
    /// expires a dispute before the processor's deadline has passed, and at the act-by time only the policy's
    /// own submission or acceptance happens.
    #[test]
    fn no_timer_expires_a_dispute_before_its_due_date() {
        let kinds = [
            FiredTimer::Domain(TimerKind::ActBy),
            FiredTimer::Domain(TimerKind::Deadline),
            FiredTimer::Domain(TimerKind::Reminder { hours_before: 24 }),
            FiredTimer::Domain(TimerKind::OutcomeCheck),
        ];
        for policy in [DeadlineAction::Submit, DeadlineAction::Accept, DeadlineAction::Expire] {
            let timing = TimingPolicy {
                deadline_default: policy,
                ..TimingPolicy::default()
            };
            for status in Status::ALL {
                for due_in in [-48, -1, 0, 1, 12, 23, 24, 25, 100] {
                    let d = dispute(*status, Some(t(due_in)));
                    for now in [-30, 0, 1, 12, 24, 48, 99, 100, 101, 200] {
                        for kind in &kinds {
                            let Some(command) = timing.command_for(kind, &d, t(now)) else {
                                continue;
                            };
                            if command.action == Action::Expire {
                                assert!(
                                    t(now) >= t(due_in),
                                    "{policy:?} {status} due {due_in} at {now}: {kind:?}"
                                );
                            }
                            if *kind == FiredTimer::Domain(TimerKind::ActBy) {
                                let allowed = match policy {
                                    DeadlineAction::Submit => Action::Submit,
                                    DeadlineAction::Accept => Action::Accept,
                                    DeadlineAction::Expire => Action::RecordActByPassed,
                                };
                                assert!(
                                    command.action == allowed || command.action == Action::RecordActByPassed,
                                    "{policy:?} {status}: {:?}",
                                    command.action
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_adjusted_timers_of_a_past_due_date_never_fire_at_once() {
        let policy = TimingPolicy::default();
        let d = dispute(Status::Notified, Some(t(-100)));
        let command = Command::new(Actor::system("test"), Action::ChangeDueBy { due_by: Some(t(-50)) });
        let decision = policy.adjust(verdict_domain::decide(&d, &command, t(0)).unwrap(), t(0));
        for timer in &decision.timers {
            if let TimerInstruction::Set { due_at, .. } = timer {
                assert!(*due_at > t(0), "{timer:?}");
            }
        }
    }

    #[test]
    fn timer_labels_parse_back() {
        for kind in [
            TimerKind::Deadline,
            TimerKind::ActBy,
            TimerKind::OutcomeCheck,
            TimerKind::Reminder { hours_before: 72 },
            TimerKind::SellerReminder,
            TimerKind::SellerDue,
        ] {
            assert_eq!(FiredTimer::parse(&kind.label(), None), FiredTimer::Domain(kind));
            assert_eq!(TimerKind::from_label(&kind.label()), Some(kind));
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
