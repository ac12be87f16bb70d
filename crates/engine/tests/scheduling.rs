//! Timers, steps, workers and cron schedules: deadline policy at the right time and once, retries and dead
//! letters, two replicas sharing a queue, fencing of expired leases, and one cron fire per tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, Dispute, Locale, Money, NewDispute, Processor, ReasonCode,
    Stage, Status,
};
use verdict_engine::effects::{StepContext, StepError, StepOutcome, StepPerformer};
use verdict_engine::schedules::{Digest, DigestSink, Job, ScheduleConfig, Scheduler};
use verdict_engine::timers::{DeadlineAction, DeadlineRule, SchedulingConfig, TimingPolicy};
use verdict_engine::worker::{Outcome, TimerHandler, Worker, WorkerOptions};
use verdict_engine::{Clock, Engine, ManualClock};
use verdict_store::testing::{TestDatabase, test_databases};
use verdict_store::{ClaimedTimer, Fence, Leased, NewTimer, StepFailure, Store};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 30, 0).unwrap()
}

/// Records what it was asked to do; fails the first `fail_first` tries of each key (or always).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, i32)>>,
    fail_first: Mutex<HashMap<String, i32>>,
    always_fail: Mutex<bool>,
    follow_up: Mutex<Option<(Action, Option<Duration>)>>,
    /// Done while a submission step is being performed (after its claim read the dispute).
    meanwhile: Mutex<Option<(Engine, Command)>>,
}

impl Recorder {
    fn calls_for(&self, kind: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with(kind))
            .count()
    }
}

#[async_trait::async_trait]
impl StepPerformer for Recorder {
    async fn perform(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        self.calls
            .lock()
            .unwrap()
            .push((ctx.idempotency_key.clone(), ctx.attempt));
        if *self.always_fail.lock().unwrap() {
            return Err(StepError::Transient("the outside system is down".into()));
        }
        let fail_first = self
            .fail_first
            .lock()
            .unwrap()
            .get(ctx.kind.as_str())
            .copied()
            .unwrap_or(0);
        if ctx.attempt <= fail_first {
            return Err(StepError::Transient(format!("try {} failed", ctx.attempt)));
        }
        let meanwhile = self.meanwhile.lock().unwrap().take();
        if ctx.kind == verdict_domain::StepKind::SubmitEvidence
            && let Some((engine, command)) = meanwhile
        {
            engine.handle(ctx.dispute.id, command).await.unwrap();
        }
        if ctx.kind == verdict_domain::StepKind::SubmitEvidence
            && let Some((action, after)) = self.follow_up.lock().unwrap().clone()
        {
            return Ok(StepOutcome::Done {
                follow_up: Some(action),
                follow_up_after: after,
            });
        }
        Ok(StepOutcome::done())
    }
}

struct Replica {
    engine: Engine,
    worker: Worker,
    performer: Arc<Recorder>,
}

struct Setup {
    clock: Arc<ManualClock>,
    db: TestDatabase,
}

impl Setup {
    async fn all() -> Vec<Setup> {
        test_databases()
            .await
            .unwrap()
            .into_iter()
            .map(|db| Setup {
                clock: Arc::new(ManualClock::new(t0())),
                db,
            })
            .collect()
    }

    async fn replica(&self, name: &str, config: &SchedulingConfig) -> Replica {
        let store = self.db.store().await.unwrap();
        let engine = Engine::new(store, self.clock.clone()).with_timing(TimingPolicy::from_config(config));
        let performer = Arc::new(Recorder::default());
        let mut options = WorkerOptions::from_config(config, name);
        options.backoff.jitter = 0.0;
        let worker = Worker::new(engine.clone(), performer.clone(), options);
        Replica {
            engine,
            worker,
            performer,
        }
    }
}

fn new_dispute(pid: &str, code: &str, minor: i64, due_in: Option<Duration>) -> NewDispute {
    NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: pid.into(),
        payment_reference: format!("pi_{pid}"),
        order_reference: None,
        // With its seller and the customer's email the dispute needs no link step: these tests count others.
        seller_id: Some("seller-1".into()),
        customer: Customer {
            name: None,
            email: Some(verdict_domain::CustomerEmail::parse("customer@example.com").unwrap()),
            locale: Locale::En,
        },
        amount: Money::new(minor, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(CardNetwork::Visa, code).unwrap(),
        reason_code_raw: code.into(),
        stage: Stage::Chargeback,
        due_by: due_in.map(|d| t0() + d),
        opened_at: t0(),
    }
}

async fn open(engine: &Engine, pid: &str, code: &str, minor: i64, due_in: Option<Duration>) -> Dispute {
    let command = Command::new(
        Actor::analyst("test"),
        Action::Open(Box::new(new_dispute(pid, code, minor, due_in))),
    );
    engine.open(command).await.unwrap()
}

async fn act(engine: &Engine, dispute: &Dispute, action: Action) -> Dispute {
    engine
        .handle(dispute.id, Command::new(Actor::analyst("test"), action).because("test"))
        .await
        .unwrap()
}

/// A dispute due in ten days, triaged, gathered and submitted by an analyst (its submission step enqueued).
async fn submitted(engine: &Engine, pid: &str) -> Dispute {
    let dispute = open(engine, pid, "13.1", 9_900, Some(Duration::days(10))).await;
    let dispute = act(engine, &dispute, Action::Triage { queue: None }).await;
    let dispute = act(engine, &dispute, Action::StartEvidenceGathering).await;
    act(engine, &dispute, Action::Submit).await
}

async fn status(engine: &Engine, dispute: &Dispute) -> Status {
    engine.store().load(dispute.id).await.unwrap().unwrap().status
}

async fn events_by(engine: &Engine, dispute: &Dispute, actor: &str) -> Vec<String> {
    engine
        .store()
        .events(dispute.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == actor)
        .map(|e| e.kind)
        .collect()
}

/// The policy acts at the act-by time (`due_by` minus the margin), but nothing expires before the processor's
/// own deadline: under the expire policy a dispute stays open, and evidence can still be submitted, until
/// `due_by` itself has passed.
#[tokio::test]
async fn the_policy_acts_once_at_the_act_by_time_and_nothing_expires_before_the_processor_deadline() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let fraud = ReasonCode::parse(CardNetwork::Visa, "10.4").unwrap().category();
        let config = SchedulingConfig {
            deadline_default: DeadlineAction::Expire,
            deadline_rules: vec![DeadlineRule {
                category: Some(fraud.as_str().to_owned()),
                currency: Some("EUR".into()),
                below_minor: Some(5_000),
                at_least_minor: None,
                action: DeadlineAction::Accept,
            }],
            ..SchedulingConfig::default()
        };
        let r = setup.replica("w1", &config).await;
        let due_in = Duration::days(10);
        let small_fraud = open(&r.engine, "dp_fraud", "10.4", 2_500, Some(due_in)).await;
        let other = open(&r.engine, "dp_other", "13.1", 2_500, Some(due_in)).await;
        let other = act(&r.engine, &other, Action::Triage { queue: None }).await;
        let due_by = t0() + due_in;
        let act_by = due_by - Duration::hours(24);
        let timers = r.engine.store().timers(small_fraud.id).await.unwrap();
        let due_at = |kind: &str| timers.iter().find(|t| t.kind == kind).unwrap().due_at;
        assert_eq!(due_at("act_by"), act_by, "{label}");
        assert_eq!(
            due_at("deadline"),
            due_by,
            "{label}: the deadline is the processor's own"
        );

        // Just before the act-by time only the reminders have fired.
        setup.clock.set(act_by - Duration::minutes(1));
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &small_fraud).await, Status::Notified, "{label}");
        assert_eq!(status(&r.engine, &other).await, Status::Triaged, "{label}");
        assert_eq!(
            events_by(&r.engine, &other, "timer:reminder_72h").await,
            vec!["reminder_recorded"],
            "{label}"
        );
        assert_eq!(
            events_by(&r.engine, &other, "timer:reminder_4h").await.len(),
            1,
            "{label}"
        );

        setup.clock.set(act_by);
        assert!(
            matches!(r.worker.run_once().await.unwrap(), Outcome::Worked(_)),
            "{label}"
        );
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &small_fraud).await, Status::Accepted, "{label}");
        assert!(
            r.engine
                .store()
                .steps(small_fraud.id)
                .await
                .unwrap()
                .iter()
                .any(|s| s.kind == "accept_at_processor" && s.status == "succeeded"),
            "{label}"
        );
        // The expire policy waits: the dispute is still open, and the assignee was told.
        assert_eq!(status(&r.engine, &other).await, Status::Triaged, "{label}");
        assert_eq!(
            events_by(&r.engine, &other, "timer:act_by").await,
            vec!["act_by_passed"],
            "{label}"
        );
        setup.clock.set(due_by - Duration::minutes(1));
        r.worker.drain().await.unwrap();
        assert_eq!(
            status(&r.engine, &other).await,
            Status::Triaged,
            "{label}: not expired while the processor accepts evidence"
        );
        setup.clock.set(due_by);
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &other).await, Status::Expired, "{label}");

        // Later rounds change nothing: each happened once.
        setup.clock.advance(Duration::days(30));
        r.worker.drain().await.unwrap();
        assert_eq!(
            events_by(&r.engine, &other, "timer:deadline").await,
            vec!["expired"],
            "{label}"
        );
        assert_eq!(
            events_by(&r.engine, &small_fraud, "timer:act_by").await,
            vec!["accepted"],
            "{label}"
        );
        assert!(
            events_by(&r.engine, &small_fraud, "timer:deadline").await.is_empty(),
            "{label}"
        );
        assert_eq!(r.worker.run_once().await.unwrap(), Outcome::Idle, "{label}");
    }
}

/// A deadline timer written before act-by timers existed sat at the act-by time: it acts as the act-by time
/// and sets the deadline again at the processor's due date, instead of expiring the dispute a day early.
#[tokio::test]
async fn a_deadline_timer_from_before_act_by_timers_does_not_expire_early() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        let dispute = open(&r.engine, "dp_legacy", "13.1", 9_900, Some(Duration::days(5))).await;
        let due_by = t0() + Duration::days(5);
        r.engine.store().execute_unprepared("DELETE FROM timers").await.unwrap();
        r.engine
            .store()
            .insert_timers(
                &[NewTimer {
                    dispute_id: Some(dispute.id.as_uuid()),
                    kind: "deadline".into(),
                    due_at: due_by - Duration::hours(24),
                    payload: None,
                }],
                t0(),
            )
            .await
            .unwrap();
        setup.clock.set(due_by - Duration::hours(24));
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Notified, "{label}");
        assert_eq!(
            events_by(&r.engine, &dispute, "timer:deadline").await,
            vec!["act_by_passed"],
            "{label}"
        );
        setup.clock.set(due_by);
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Expired, "{label}");
    }
}

/// A due date already past (a processor's, or one left from an old cycle) never makes the sweep recreate a
/// deadline that fires at once.
#[tokio::test]
async fn the_sweep_gives_a_past_due_date_the_grace_window() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        let command = Command::new(
            Actor::processor(Processor::Stripe),
            Action::Open(Box::new(new_dispute(
                "dp_past",
                "13.1",
                9_900,
                Some(-Duration::days(3)),
            ))),
        );
        let dispute = r.engine.open(command).await.unwrap();
        let events = r.engine.store().events(dispute.id).await.unwrap();
        assert!(
            events[0].reason.as_deref().unwrap_or_default().contains("flagged"),
            "{label}: {:?}",
            events[0].reason
        );
        r.engine.store().execute_unprepared("DELETE FROM timers").await.unwrap();
        verdict_engine::schedules::sweep_missing_timers(&r.engine, t0())
            .await
            .unwrap();
        let timers = r.engine.store().timers(dispute.id).await.unwrap();
        assert!(!timers.is_empty(), "{label}");
        assert!(timers.iter().all(|t| t.due_at > t0()), "{label}: {timers:?}");
        r.worker.drain().await.unwrap();
        setup.clock.advance(Duration::days(1));
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Notified, "{label}");
        setup.clock.advance(Duration::days(7));
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Expired, "{label}");
    }
}

#[tokio::test]
async fn submit_policy_submits_gathered_evidence_and_the_overdue_outcome_is_escalated() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let config = SchedulingConfig {
            deadline_default: DeadlineAction::Submit,
            outcome_check_days: 75,
            ..SchedulingConfig::default()
        };
        let r = setup.replica("w1", &config).await;
        let dispute = open(&r.engine, "dp_submit", "13.1", 9_900, Some(Duration::days(7))).await;
        let dispute = act(&r.engine, &dispute, Action::Triage { queue: None }).await;
        act(&r.engine, &dispute, Action::StartEvidenceGathering).await;
        setup.clock.set(t0() + Duration::days(6));
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Submitted, "{label}");
        assert_eq!(r.performer.calls_for("submit_evidence"), 1, "{label}");

        let notices_before = r.performer.calls_for("notify_assignee");
        let escalations_before = r.performer.calls_for("escalate_to_lead");
        setup.clock.advance(Duration::days(75) - Duration::minutes(1));
        r.worker.drain().await.unwrap();
        assert!(
            events_by(&r.engine, &dispute, "timer:outcome_check").await.is_empty(),
            "{label}"
        );
        setup.clock.advance(Duration::minutes(1));
        r.worker.drain().await.unwrap();
        assert_eq!(
            events_by(&r.engine, &dispute, "timer:outcome_check").await,
            vec!["outcome_escalated"],
            "{label}"
        );
        assert_eq!(
            r.performer.calls_for("escalate_to_lead"),
            escalations_before + 1,
            "{label}: to the leads"
        );
        assert_eq!(
            r.performer.calls_for("notify_assignee"),
            notices_before,
            "{label}: not the assignee"
        );
    }
}

#[tokio::test]
async fn changing_due_by_moves_the_deadline_and_closing_cancels_every_timer() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        let dispute = open(&r.engine, "dp_move", "13.1", 9_900, Some(Duration::days(10))).await;
        let new_due = t0() + Duration::days(20);
        let dispute = act(&r.engine, &dispute, Action::ChangeDueBy { due_by: Some(new_due) }).await;
        let timers = r.engine.store().timers(dispute.id).await.unwrap();
        let pending: Vec<_> = timers.iter().filter(|t| t.status == "pending").collect();
        assert_eq!(pending.len(), 5, "{label}: {timers:?}");
        assert!(
            pending
                .iter()
                .any(|t| t.kind == "act_by" && t.due_at == new_due - Duration::hours(24)),
            "{label}"
        );
        assert!(
            pending.iter().any(|t| t.kind == "deadline" && t.due_at == new_due),
            "{label}"
        );
        assert_eq!(timers.iter().filter(|t| t.status == "cancelled").count(), 5, "{label}");
        act(&r.engine, &dispute, Action::Withdraw).await;
        let timers = r.engine.store().timers(dispute.id).await.unwrap();
        assert!(timers.iter().all(|t| t.status == "cancelled"), "{label}: {timers:?}");
    }
}

#[tokio::test]
async fn a_delayed_follow_up_becomes_a_timer_that_feeds_the_engine() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        *r.performer.follow_up.lock().unwrap() = Some((Action::RecordOutcome { won: true }, Some(Duration::hours(2))));
        let dispute = submitted(&r.engine, "dp_follow").await;
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Submitted, "{label}");
        setup.clock.advance(Duration::hours(2));
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Won, "{label}");
        // A follow-up stored with the older `RecordOutcome` is recorded as the processor's outcome.
        assert_eq!(
            events_by(&r.engine, &dispute, "step:follow_up").await,
            vec!["outcome_received"],
            "{label}"
        );
    }
}

/// A step's follow-up is decided first on the dispute its claim read. When the dispute moved while the step
/// was performed, the commit's version check sends it back to the stored dispute: applied once, there.
#[tokio::test]
async fn a_follow_up_after_the_dispute_moved_is_decided_on_the_stored_dispute() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        // Legal on the claim's copy and on the stored dispute: a conflict, then applied on the stored one.
        *r.performer.follow_up.lock().unwrap() = Some((Action::RecordOutcome { won: true }, None));
        *r.performer.meanwhile.lock().unwrap() = Some((
            r.engine.clone(),
            Command::new(
                Actor::analyst("jane"),
                Action::AddNote {
                    note: "processor called".into(),
                },
            ),
        ));
        let dispute = submitted(&r.engine, "dp_moved_note").await;
        r.worker.drain().await.unwrap();
        assert_eq!(status(&r.engine, &dispute).await, Status::Won, "{label}");
        assert_eq!(
            events_by(&r.engine, &dispute, "step:submit_evidence").await,
            vec!["outcome_received"],
            "{label}"
        );

        // Refused on the claim's copy (a submitted dispute cannot reopen) but legal on the stored one (lost
        // meanwhile): the stored dispute decides.
        *r.performer.follow_up.lock().unwrap() = Some((
            Action::Reopen {
                stage: Stage::PreArbitration,
                due_by: Some(t0() + Duration::days(20)),
            },
            None,
        ));
        *r.performer.meanwhile.lock().unwrap() = Some((
            r.engine.clone(),
            Command::new(
                Actor::processor(Processor::Stripe),
                Action::ReceiveOutcome {
                    won: false,
                    stage: None,
                },
            ),
        ));
        let dispute = submitted(&r.engine, "dp_moved_lost").await;
        r.worker.drain().await.unwrap();
        let stored = r.engine.store().load(dispute.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.stage),
            (Status::EvidenceGathering, Stage::PreArbitration),
            "{label}"
        );
        assert_eq!(
            events_by(&r.engine, &dispute, "step:submit_evidence").await,
            vec!["reopened"],
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_backoff_and_then_succeeds() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        r.performer
            .fail_first
            .lock()
            .unwrap()
            .insert("notify_assignee".into(), 2);
        let dispute = open(&r.engine, "dp_retry", "13.1", 9_900, None).await;
        act(
            &r.engine,
            &dispute,
            Action::Assign {
                assignee: Some("jane".into()),
            },
        )
        .await;
        r.worker.drain().await.unwrap();
        let step = r.engine.store().steps(dispute.id).await.unwrap().remove(0);
        assert_eq!((step.status.as_str(), step.attempts), ("pending", 1), "{label}");
        // Base 10 s, no jitter: the second try is due 10 s later, the third 20 s after that.
        assert_eq!(step.next_attempt_at, t0() + Duration::seconds(10), "{label}");
        setup.clock.advance(Duration::seconds(9));
        assert_eq!(r.worker.run_once().await.unwrap(), Outcome::Idle, "{label}");
        setup.clock.advance(Duration::seconds(1));
        r.worker.drain().await.unwrap();
        setup.clock.advance(Duration::seconds(20));
        r.worker.drain().await.unwrap();
        let step = r.engine.store().steps(dispute.id).await.unwrap().remove(0);
        assert_eq!((step.status.as_str(), step.attempts), ("succeeded", 3), "{label}");
        let attempts: Vec<i32> = r.performer.calls.lock().unwrap().iter().map(|(_, a)| *a).collect();
        assert_eq!(attempts, vec![1, 2, 3], "{label}");
        let keys: std::collections::HashSet<_> = r
            .performer
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(keys.len(), 1, "{label}: the idempotency key is stable across retries");
    }
}

#[tokio::test]
async fn a_step_that_always_fails_is_dead_lettered_and_a_lead_can_retry_it() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("w1", &SchedulingConfig::default()).await;
        *r.performer.always_fail.lock().unwrap() = true;
        let dispute = open(&r.engine, "dp_dead", "13.1", 9_900, None).await;
        act(
            &r.engine,
            &dispute,
            Action::Assign {
                assignee: Some("jane".into()),
            },
        )
        .await;
        for _ in 0..20 {
            r.worker.drain().await.unwrap();
            setup.clock.advance(Duration::hours(1));
        }
        let dead = r.engine.store().dead_steps(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{label}");
        assert_eq!(dead[0].attempts, 8, "{label}");
        assert!(dead[0].last_error.as_deref().unwrap_or("").contains("down"), "{label}");
        assert_eq!(r.performer.calls.lock().unwrap().len(), 8, "{label}");

        *r.performer.always_fail.lock().unwrap() = false;
        let now = r.engine.clock().now();
        assert!(r.engine.store().retry_step(dead[0].id, now).await.unwrap(), "{label}");
        assert!(
            !r.engine.store().retry_step(dead[0].id, now).await.unwrap(),
            "{label}: only dead steps"
        );
        r.worker.drain().await.unwrap();
        let step = r.engine.store().step_row(dead[0].id).await.unwrap().unwrap();
        assert_eq!((step.status.as_str(), step.attempts), ("succeeded", 1), "{label}");
        assert!(r.engine.store().dead_steps(10).await.unwrap().is_empty(), "{label}");
        assert!(
            !r.engine.store().cancel_step(step.id, now).await.unwrap(),
            "{label}: succeeded stays"
        );
    }
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once_and_can_be_cancelled() {
    struct Refuses;
    #[async_trait::async_trait]
    impl StepPerformer for Refuses {
        async fn perform(&self, _ctx: &StepContext) -> Result<StepOutcome, StepError> {
            Err(StepError::Permanent("422 from the processor".into()))
        }
    }
    for setup in Setup::all().await {
        let label = setup.db.label;
        let store = setup.db.store().await.unwrap();
        let engine = Engine::new(store, setup.clock.clone());
        let worker = Worker::new(engine.clone(), Arc::new(Refuses), WorkerOptions::default());
        let dispute = open(&engine, "dp_perm", "13.1", 9_900, None).await;
        act(
            &engine,
            &dispute,
            Action::Assign {
                assignee: Some("jane".into()),
            },
        )
        .await;
        worker.drain().await.unwrap();
        let dead = engine.store().dead_steps(10).await.unwrap();
        assert_eq!((dead.len(), dead[0].attempts), (1, 1), "{label}");
        assert!(engine.store().cancel_step(dead[0].id, t0()).await.unwrap(), "{label}");
        assert!(engine.store().dead_steps(10).await.unwrap().is_empty(), "{label}");
    }
}

#[tokio::test]
async fn a_worker_whose_lease_expired_cannot_complete() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let a = setup.replica("a", &SchedulingConfig::default()).await;
        let b = setup.replica("b", &SchedulingConfig::default()).await;
        let store: &Store = a.engine.store();
        let dispute = open(&a.engine, "dp_fence", "13.1", 9_900, None).await;
        act(
            &a.engine,
            &dispute,
            Action::Assign {
                assignee: Some("jane".into()),
            },
        )
        .await;
        let lease = Duration::minutes(1);
        let held = store.claim_steps("a", t0(), 10, lease).await.unwrap();
        assert_eq!(held.len(), 1, "{label}");
        assert!(
            store.claim_steps("b", t0(), 10, lease).await.unwrap().is_empty(),
            "{label}: leased"
        );
        setup.clock.advance(Duration::minutes(2));
        let now = setup.clock.now();
        let taken = b.engine.store().claim_steps("b", now, 10, lease).await.unwrap();
        assert_eq!(taken.len(), 1, "{label}: an expired lease is taken over");
        assert_eq!(taken[0].attempts, 2, "{label}");
        let old = Leased {
            id: held[0].id,
            lease_token: held[0].lease_token,
        };
        let new = Leased {
            id: taken[0].id,
            lease_token: taken[0].lease_token,
        };
        let report = store.complete_steps(&[old], now).await.unwrap();
        assert_eq!((report.completed.len(), report.stale), (0, vec![old.id]), "{label}");
        assert_eq!(
            store
                .fail_step(old, "late", false, Duration::seconds(1), now)
                .await
                .unwrap(),
            StepFailure::Stale,
            "{label}"
        );
        assert!(
            !store.renew_lease(Fence::Step(old), now + lease).await.unwrap(),
            "{label}"
        );
        assert_eq!(
            store.step_row(old.id).await.unwrap().unwrap().status,
            "pending",
            "{label}"
        );
        let report = b.engine.store().complete_steps(&[new], now).await.unwrap();
        assert_eq!(report.completed, vec![new.id], "{label}");

        // A timer: the old holder's command is fenced off and writes no event.
        let due = open(&a.engine, "dp_fence_timer", "13.1", 9_900, Some(Duration::hours(30))).await;
        let fire_at = t0() + Duration::hours(30) - Duration::hours(24);
        setup.clock.set(fire_at);
        let claimed: Vec<ClaimedTimer> = store.claim_due_timers("a", fire_at, 10, lease).await.unwrap();
        let deadline = claimed.iter().find(|t| t.kind == "act_by").unwrap().clone();
        setup.clock.advance(Duration::minutes(2));
        b.worker.drain().await.unwrap();
        assert_eq!(
            events_by(&b.engine, &due, "timer:act_by").await,
            vec!["act_by_passed"],
            "{label}"
        );
        let versions = a.engine.store().events(due.id).await.unwrap().len();
        let late = a.engine.fire_timer(&deadline).await.unwrap();
        assert_ne!(late, verdict_engine::timers::Fired::Committed, "{label}");
        assert_eq!(
            a.engine.store().events(due.id).await.unwrap().len(),
            versions,
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_timer_fenced_mid_command_writes_nothing() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        let dispute = open(&r.engine, "dp_fenced_cmd", "13.1", 9_900, Some(Duration::hours(30))).await;
        let fire_at = t0() + Duration::hours(6);
        setup.clock.set(fire_at);
        let store = r.engine.store();
        let claimed = store
            .claim_due_timers("a", fire_at, 10, Duration::minutes(1))
            .await
            .unwrap();
        let deadline = claimed.iter().find(|t| t.kind == "act_by").unwrap().clone();
        setup.clock.advance(Duration::minutes(2));
        let retaken = store
            .claim_due_timers("b", setup.clock.now(), 10, Duration::minutes(1))
            .await
            .unwrap();
        assert!(retaken.iter().any(|t| t.id == deadline.id), "{label}");
        assert_eq!(
            r.engine.fire_timer(&deadline).await.unwrap(),
            verdict_engine::timers::Fired::LeaseLost,
            "{label}"
        );
        assert_eq!(status(&r.engine, &dispute).await, Status::Notified, "{label}");
    }
}

struct Probe {
    seen: Arc<Mutex<HashMap<uuid::Uuid, u32>>>,
    mine: AtomicUsize,
}

#[async_trait::async_trait]
impl TimerHandler for Probe {
    async fn fire(&self, timer: &ClaimedTimer) -> Result<(), String> {
        *self.seen.lock().unwrap().entry(timer.id).or_default() += 1;
        self.mine.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_fire_ten_thousand_timers_exactly_once_between_them() {
    for setup in Setup::all().await {
        if setup.db.label != "postgres" {
            continue;
        }
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let mut replicas = Vec::new();
        for name in ["replica-a", "replica-b"] {
            let r = setup.replica(name, &SchedulingConfig::default()).await;
            let probe = Arc::new(Probe {
                seen: seen.clone(),
                mine: AtomicUsize::new(0),
            });
            let worker = r.worker.clone().with_timer_handler("probe", probe.clone());
            replicas.push((r, worker, probe));
        }
        let timers: Vec<NewTimer> = (0..10_000)
            .map(|i| NewTimer {
                dispute_id: None,
                kind: "probe".into(),
                due_at: t0() - Duration::seconds(i % 600),
                payload: None,
            })
            .collect();
        replicas[0].0.engine.store().insert_timers(&timers, t0()).await.unwrap();
        let mut handles = Vec::new();
        for (_, worker, _) in &replicas {
            let worker = worker.clone();
            handles.push(tokio::spawn(async move {
                let mut idle = 0;
                while idle < 3 {
                    match worker.run_once().await.unwrap() {
                        Outcome::Worked(_) => idle = 0,
                        Outcome::Idle => {
                            idle += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let seen: HashMap<uuid::Uuid, u32> = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 10_000);
        assert!(seen.values().all(|n| *n == 1), "a timer fired twice");
        let a = replicas[0].2.mine.load(Ordering::SeqCst);
        let b = replicas[1].2.mine.load(Ordering::SeqCst);
        assert_eq!(a + b, 10_000);
        assert!(a > 0 && b > 0, "both replicas worked: {a} and {b}");
        let counts = replicas[0].0.engine.store().queue_counts().await.unwrap();
        assert!(
            counts.contains(&("timers".into(), "fired".into(), 10_000)),
            "{counts:?}"
        );
    }
}

#[derive(Default)]
struct CountingDigests(Mutex<Vec<Digest>>);

#[async_trait::async_trait]
impl DigestSink for CountingDigests {
    async fn deliver(&self, digest: &Digest) -> Result<(), String> {
        self.0.lock().unwrap().push(digest.clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_cron_tick_fires_once_across_replicas_and_once_after_downtime() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let digests = Arc::new(CountingDigests::default());
        let configs = vec![ScheduleConfig {
            name: "hourly_digest".into(),
            cron: "0 0 * * * *".into(),
            time_zone: "Europe/Rome".into(),
            job: Job::Digest,
        }];
        let mut schedulers = Vec::new();
        for name in ["a", "b"] {
            let r = setup.replica(name, &SchedulingConfig::default()).await;
            let scheduler = Scheduler::new(r.engine.clone(), &configs, Duration::hours(72))
                .unwrap()
                .with_digest_sink(digests.clone());
            scheduler.ensure().await.unwrap();
            schedulers.push((r, scheduler));
        }
        let engine = &schedulers[0].0.engine;
        open(engine, "dp_digest", "13.1", 9_900, Some(Duration::hours(30))).await;
        let run_both = || async {
            let mut fired = 0;
            for (_, scheduler) in &schedulers {
                fired += scheduler.run_due("x").await.unwrap().len();
            }
            fired
        };
        assert_eq!(run_both().await, 0, "{label}: nothing due at 09:30");
        setup.clock.set(Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap());
        assert_eq!(run_both().await, 1, "{label}: one fire for the 10:00 tick");
        assert_eq!(run_both().await, 0, "{label}");
        setup.clock.set(Utc.with_ymd_and_hms(2026, 11, 2, 10, 59, 59).unwrap());
        assert_eq!(run_both().await, 0, "{label}");
        // Down from 11:00 to 15:45: one catch-up fire, then the schedule resumes at 16:00.
        setup.clock.set(Utc.with_ymd_and_hms(2026, 11, 2, 15, 45, 0).unwrap());
        assert_eq!(run_both().await, 1, "{label}: a single catch-up");
        assert_eq!(run_both().await, 0, "{label}");
        let rows = engine.store().schedules().await.unwrap();
        assert_eq!(
            rows[0].next_fire_at,
            Utc.with_ymd_and_hms(2026, 11, 2, 16, 0, 0).unwrap(),
            "{label}"
        );
        let delivered = digests.0.lock().unwrap();
        assert_eq!(delivered.len(), 2, "{label}");
        assert_eq!(delivered[0].queue, "untriaged", "{label}");
        assert_eq!(delivered[0].disputes.len(), 1, "{label}");
    }
}

#[tokio::test]
async fn the_sweep_recreates_missing_timers_of_open_disputes() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        let dispute = open(&r.engine, "dp_sweep", "13.1", 9_900, Some(Duration::days(10))).await;
        let closed = open(&r.engine, "dp_sweep_closed", "13.1", 9_900, Some(Duration::days(10))).await;
        act(&r.engine, &closed, Action::Withdraw).await;
        r.engine.store().execute_unprepared("DELETE FROM timers").await.unwrap();
        let swept = verdict_engine::schedules::sweep_missing_timers(&r.engine, setup.clock.now())
            .await
            .unwrap();
        assert_eq!(swept, 1, "{label}");
        let timers = r.engine.store().timers(dispute.id).await.unwrap();
        assert_eq!(timers.len(), 5, "{label}: {timers:?}");
        assert!(r.engine.store().timers(closed.id).await.unwrap().is_empty(), "{label}");
        let again = verdict_engine::schedules::sweep_missing_timers(&r.engine, setup.clock.now())
            .await
            .unwrap();
        assert_eq!(again, 0, "{label}");
    }
}

#[tokio::test]
async fn an_idle_worker_sleeps_until_the_next_due_time_and_wakes_on_new_work() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        assert_eq!(r.engine.store().next_due_at().await.unwrap(), None, "{label}");
        let dispute = open(&r.engine, "dp_wake", "13.1", 9_900, Some(Duration::days(10))).await;
        let next = r.engine.store().next_due_at().await.unwrap().unwrap();
        assert_eq!(
            next,
            t0() + Duration::days(10) - Duration::hours(24) - Duration::hours(72),
            "{label}"
        );
        let signal = r.engine.store().work_signal();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), signal.notified()).await;
        act(
            &r.engine,
            &dispute,
            Action::Assign {
                assignee: Some("jane".into()),
            },
        )
        .await;
        tokio::time::timeout(std::time::Duration::from_secs(2), signal.notified())
            .await
            .unwrap_or_else(|_| panic!("{label}: a commit with a step wakes the workers"));
    }
}

#[tokio::test]
async fn the_run_loop_works_and_stops_gracefully() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(r.worker.clone().run(async {
            let _ = stopped.await;
        }));
        let dispute = open(&r.engine, "dp_loop", "13.1", 9_900, None).await;
        act(
            &r.engine,
            &dispute,
            Action::Assign {
                assignee: Some("jane".into()),
            },
        )
        .await;
        let mut done = false;
        for _ in 0..100 {
            let steps = r.engine.store().steps(dispute.id).await.unwrap();
            if steps.iter().all(|s| s.status == "succeeded") {
                done = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(done, "{label}: the step ran without run_once being called");
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), handle)
            .await
            .unwrap_or_else(|_| panic!("{label}: the pool stops"))
            .unwrap();
    }
}

/// Marks every timer fired and every step succeeded, as if all the work had been done.
async fn finish_all_work(store: &Store) {
    store
        .execute_unprepared("UPDATE timers SET status = 'fired'")
        .await
        .unwrap();
    store
        .execute_unprepared("UPDATE steps SET status = 'succeeded'")
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_deletes_finished_timers_and_steps_of_long_closed_disputes_only() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        let open_one = open(&r.engine, "dp_keep", "13.1", 9_900, Some(Duration::days(10))).await;
        let closed = open(&r.engine, "dp_gone", "13.1", 9_900, Some(Duration::days(10))).await;
        act(&r.engine, &closed, Action::Withdraw).await;
        let store = r.engine.store();
        // Every timer and step counts as finished, and both disputes last changed long ago.
        finish_all_work(store).await;
        store
            .execute_unprepared("UPDATE disputes SET updated_at = '2020-01-01 00:00:00+00'")
            .await
            .unwrap();
        let closed_timers = store.timers(closed.id).await.unwrap().len();
        let open_timers = store.timers(open_one.id).await.unwrap().len();
        assert!(closed_timers > 0 && open_timers > 0, "{label}");

        // Closed after the cut-off: nothing goes.
        let before = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            store.purge_finished_work(before, 1_000).await.unwrap(),
            (0, 0),
            "{label}"
        );

        let before = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
        let (timers, _steps) = store.purge_finished_work(before, 1_000).await.unwrap();
        assert_eq!(timers as usize, closed_timers, "{label}");
        assert!(store.timers(closed.id).await.unwrap().is_empty(), "{label}");
        // The open dispute keeps its fired timers: the sweep reads them to know none is missing.
        assert_eq!(store.timers(open_one.id).await.unwrap().len(), open_timers, "{label}");
        assert_eq!(
            verdict_engine::schedules::sweep_missing_timers(&r.engine, setup.clock.now())
                .await
                .unwrap(),
            0,
            "{label}"
        );
    }
}

#[tokio::test]
async fn the_finished_work_purge_keeps_a_closed_disputes_work_for_its_own_retention() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        let closed = open(&r.engine, "dp_purge", "13.1", 9_900, Some(Duration::days(10))).await;
        act(&r.engine, &closed, Action::Withdraw).await;
        let store = r.engine.store();
        finish_all_work(store).await;
        let timers = store.timers(closed.id).await.unwrap().len();
        assert!(timers > 0, "{label}");
        let scheduler = Scheduler::new(r.engine.clone(), &[], Duration::days(3))
            .unwrap()
            .with_payload_retention(Duration::days(180))
            .with_finished_work_retention(Duration::minutes(5));
        let closed_at = store.load(closed.id).await.unwrap().unwrap().updated_at;

        // Four minutes after the dispute closed its work stays, whatever the payload retention says.
        let purged = scheduler
            .purge_finished_work(closed_at + Duration::minutes(4))
            .await
            .unwrap();
        assert_eq!(purged, 0, "{label}");
        assert_eq!(store.timers(closed.id).await.unwrap().len(), timers, "{label}");

        // Six minutes after, the job deletes it, and only once.
        let purged = scheduler
            .purge_finished_work(closed_at + Duration::minutes(6))
            .await
            .unwrap();
        assert!(purged >= timers, "{label}: {purged} rows for {timers} timers");
        assert!(store.timers(closed.id).await.unwrap().is_empty(), "{label}");
        let again = scheduler
            .purge_finished_work(closed_at + Duration::minutes(7))
            .await
            .unwrap();
        assert_eq!(again, 0, "{label}");
    }
}

#[tokio::test]
async fn the_queue_vacuum_cleans_a_queue_table_full_of_dead_rows_once() {
    for setup in Setup::all().await {
        let label = setup.db.label;
        let r = setup.replica("a", &SchedulingConfig::default()).await;
        let store = r.engine.store();
        let scheduler = Scheduler::new(r.engine.clone(), &[], Duration::days(3)).unwrap();
        if !store.is_postgres() {
            // SQLite reuses freed pages by itself: nothing to vacuum, nothing done.
            assert_eq!(scheduler.vacuum_queues().await.unwrap(), 0, "{label}");
            assert!(store.queue_dead_rows().await.unwrap().is_empty(), "{label}");
            continue;
        }
        // A burst of steps, all completed: every one leaves a dead row behind. The forced flush makes the
        // server's statistics count them when this statement ends rather than seconds later.
        store
            .execute_unprepared(
                "INSERT INTO steps (id, kind, idempotency_key, status, attempts, max_attempts, next_attempt_at, \
                 created_at, updated_at) SELECT gen_random_uuid(), 'notify_assignee', 'vacuum-' || n, 'pending', \
                 0, 8, now(), now(), now() FROM generate_series(1, 25000) AS n; \
                 UPDATE steps SET status = 'succeeded' WHERE idempotency_key LIKE 'vacuum-%'; \
                 SELECT pg_stat_force_next_flush()",
            )
            .await
            .unwrap();
        let steps_dead = || async {
            store
                .queue_dead_rows()
                .await
                .unwrap()
                .into_iter()
                .find(|(table, _)| table == "steps")
                .map_or(0, |(_, dead)| dead)
        };
        let mut waited = 0;
        while steps_dead().await < verdict_engine::schedules::QUEUE_VACUUM_DEAD_ROWS && waited < 300 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            waited += 1;
        }
        assert!(
            steps_dead().await >= verdict_engine::schedules::QUEUE_VACUUM_DEAD_ROWS,
            "{label}: the statistics never counted the dead rows"
        );

        assert!(scheduler.vacuum_queues().await.unwrap() >= 1, "{label}");
        assert!(
            steps_dead().await < verdict_engine::schedules::QUEUE_VACUUM_DEAD_ROWS,
            "{label}: steps still counts its dead rows after the vacuum"
        );
        // Nothing left over the threshold: the next run vacuums nothing.
        assert_eq!(scheduler.vacuum_queues().await.unwrap(), 0, "{label}");
    }
}
