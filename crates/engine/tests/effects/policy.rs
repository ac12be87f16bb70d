//! The policy acting alone and on approval: a defense above the limit waits for a lead and is submitted once;
//! an action is taken at most once per dispute and action, however the decision flips; an approval and the
//! action it performs commit together, so a failure between them leaves the approval pending and nothing done.

use std::sync::Arc;

use chrono::Duration;
use verdict_domain::{
    Actor, DisputeClaim, EvidenceKind, EvidenceSource, Locale, RecommendedAction, Stage, Status, StepKind,
};
use verdict_engine::Clock as _;
use verdict_engine::effects::Effects;
use verdict_engine::evidence::NewEvidence;
use verdict_engine::worker::{Worker, WorkerOptions};
use verdict_store::{APPROVAL_APPROVED, APPROVAL_PENDING, ApprovalRecord, EventRecord};

use super::{Harness, harnesses};

const LEAD: &str = "analyst:lena";

async fn activate(h: &Harness, source: &str) {
    let store = h.engine.store();
    let saved = store.save_policy(source, None, LEAD, h.clock.now()).await.unwrap();
    store
        .activate_policy(saved.version, LEAD, h.clock.now())
        .await
        .unwrap()
        .unwrap();
}

async fn events(h: &Harness, id: verdict_domain::DisputeId) -> Vec<EventRecord> {
    h.engine.store().events(id).await.unwrap()
}

fn count(events: &[EventRecord], kind: &str, actor_prefix: &str) -> usize {
    events
        .iter()
        .filter(|e| e.kind == kind && e.actor.starts_with(actor_prefix))
        .count()
}

async fn pending(h: &Harness) -> Vec<ApprovalRecord> {
    h.engine.store().approvals(Some(APPROVAL_PENDING), 100).await.unwrap()
}

/// Every kind the dispute's claim requires, as typed evidence; returns the items' ids.
async fn complete_evidence(h: &Harness, id: verdict_domain::DisputeId) -> Vec<uuid::Uuid> {
    let dispute = h.engine.store().load(id).await.unwrap().unwrap();
    let required: Vec<EvidenceKind> =
        verdict_domain::completeness_of_kinds(DisputeClaim::of_dispute(&dispute), &[]).required;
    assert!(!required.is_empty());
    let new = required
        .into_iter()
        .map(|kind| NewEvidence {
            kind,
            text: Some(format!("the {} for the test", kind.as_str())),
            file_id: None,
        })
        .collect();
    let (_, items) = h
        .engine
        .add_evidence(
            id,
            Actor::analyst("test"),
            dispute.version,
            EvidenceSource::Analyst,
            new,
        )
        .await
        .unwrap();
    items.into_iter().map(|i| i.id).collect()
}

/// A policy that defends complete cases alone up to `limit_minor`.
fn defend_complete_up_to(limit_minor: i64) -> String {
    format!(
        "[[rule]]\nname = \"complete defenses\"\nwhen = {{ evidence_complete = true }}\nqueue = \"care\"\n\
         action = \"defend\"\nautonomous = true\nautonomy_limit_minor = {limit_minor}\n"
    )
}

#[tokio::test]
async fn a_complete_defense_above_the_limit_waits_for_a_lead_and_is_submitted_once_when_approved() {
    for h in harnesses().await {
        let label = h.label;
        activate(&h, &defend_complete_up_to(10_000)).await;
        // 489.00: above the 100.00 limit.
        let dispute = h
            .dispute("dp_defend_approval", Locale::En, Stage::Chargeback, vec![])
            .await;
        assert!(
            pending(&h).await.is_empty(),
            "{label}: incomplete evidence asks nothing"
        );
        complete_evidence(&h, dispute.id).await;
        let waiting = pending(&h).await;
        assert_eq!(waiting.len(), 1, "{label}: {waiting:?}");
        assert_eq!(waiting[0].action, "defend", "{label}");
        assert_eq!(waiting[0].limit_minor, 10_000, "{label}");
        let before = h.engine.store().load(dispute.id).await.unwrap().unwrap();
        assert_ne!(
            before.status,
            Status::Submitted,
            "{label}: nothing submitted before the lead approves"
        );

        let submitted = h
            .engine
            .perform_approved(&waiting[0], LEAD, Some("strong case"))
            .await
            .unwrap();
        assert_eq!(submitted.status, Status::Submitted, "{label}");
        let log = events(&h, dispute.id).await;
        assert_eq!(count(&log, "defense_submitted", "policy:1"), 1, "{label}");
        let reason = log
            .iter()
            .find(|e| e.kind == "defense_submitted")
            .and_then(|e| e.reason.clone())
            .unwrap_or_default();
        assert!(reason.starts_with("approved by analyst:lena"), "{label}: {reason}");
        let approval = h.engine.store().approval(waiting[0].id).await.unwrap().unwrap();
        assert_eq!(approval.status, APPROVAL_APPROVED, "{label}");
        assert_eq!(approval.decided_by.as_deref(), Some(LEAD), "{label}");
        assert_eq!(approval.decision_note.as_deref(), Some("strong case"), "{label}");

        // Once: the same approval again performs nothing.
        assert!(
            h.engine.perform_approved(&waiting[0], LEAD, None).await.is_err(),
            "{label}"
        );
        let steps = h.engine.store().steps(dispute.id).await.unwrap();
        let submissions = steps
            .iter()
            .filter(|s| s.kind == StepKind::SubmitEvidence.as_str())
            .count();
        assert_eq!(submissions, 1, "{label}: {steps:?}");
    }
}

#[tokio::test]
async fn the_policy_submits_a_complete_defense_alone_at_the_act_by_time_once_through_the_workers_claim() {
    for h in harnesses().await {
        let label = h.label;
        activate(&h, &defend_complete_up_to(100_000)).await;
        let worker = Worker::new(
            h.engine.clone(),
            Arc::new(Effects::local(h.engine.store().clone(), h.clock.clone())),
            WorkerOptions::default(),
        );
        // Two disputes at once, so that one claim carries both: one complete, one not.
        let complete = h
            .dispute("dp_defend_alone", Locale::En, Stage::Chargeback, vec![])
            .await;
        let incomplete = h
            .dispute("dp_defend_alone_not", Locale::En, Stage::Chargeback, vec![])
            .await;
        complete_evidence(&h, complete.id).await;
        worker.drain().await.unwrap();
        let waiting = h.engine.store().load(complete.id).await.unwrap().unwrap();
        assert_ne!(
            waiting.status,
            Status::Submitted,
            "{label}: a defense waits for the act-by time"
        );
        assert!(
            pending(&h).await.is_empty(),
            "{label}: within the limit, no lead is asked"
        );

        // Past the act-by time (a day before the processor's deadline, 20 days out).
        h.clock.advance(Duration::days(19) + Duration::hours(1));
        worker.drain().await.unwrap();
        worker.drain().await.unwrap();
        let submitted = h.engine.store().load(complete.id).await.unwrap().unwrap();
        assert_eq!(submitted.status, Status::Submitted, "{label}");
        let log = events(&h, complete.id).await;
        assert_eq!(count(&log, "defense_submitted", "policy:1"), 1, "{label}");
        assert_eq!(count(&log, "defense_submitted", "timer:"), 0, "{label}");
        let steps = h.engine.store().steps(complete.id).await.unwrap();
        let submissions = steps
            .iter()
            .filter(|s| s.kind == StepKind::SubmitEvidence.as_str())
            .count();
        assert_eq!(submissions, 1, "{label}: {steps:?}");
        assert!(
            h.engine
                .store()
                .policy_action_taken(complete.id, RecommendedAction::Defend.as_str())
                .await
                .unwrap(),
            "{label}: the defense is marked as the policy's"
        );
        let marked = h
            .engine
            .store()
            .policy_actions_taken(&[complete.id, incomplete.id], RecommendedAction::Defend.as_str())
            .await
            .unwrap();
        assert_eq!(marked, [complete.id.as_uuid()].into_iter().collect(), "{label}");
        let runs = h
            .engine
            .store()
            .triage_runs(&[complete.id, incomplete.id])
            .await
            .unwrap();
        assert_eq!(runs.len(), 2, "{label}");
        assert!(runs[&complete.id.as_uuid()].input.evidence_complete, "{label}");
        assert!(!runs[&incomplete.id.as_uuid()].input.evidence_complete, "{label}");
        // The dispute without complete evidence gets the deadline policy (expire by default: it only records
        // that the act-by time passed) and no defense of the policy's.
        let other = events(&h, incomplete.id).await;
        assert_eq!(count(&other, "defense_submitted", ""), 0, "{label}");
        assert_eq!(count(&other, "act_by_passed", "timer:act_by"), 1, "{label}: {other:?}");
    }
}

const FLIP: &str = r#"
[[rule]]
name = "ask the seller while incomplete"
when = { evidence_complete = false }
queue = "seller"
action = "ask_seller"
autonomous = true
autonomy_limit_minor = 100000

[[rule]]
name = "defend when complete"
when = { evidence_complete = true }
queue = "care"
action = "defend"
"#;

#[tokio::test]
async fn a_decision_flipping_back_does_not_act_twice() {
    for h in harnesses().await {
        let label = h.label;
        activate(&h, FLIP).await;
        // A: the seller is asked at once.
        let dispute = h.dispute("dp_flip", Locale::En, Stage::Chargeback, vec![]).await;
        let log = events(&h, dispute.id).await;
        assert_eq!(count(&log, "message_requested", "policy:1"), 1, "{label}");
        // B: complete, a person defends.
        let items = complete_evidence(&h, dispute.id).await;
        // A again: an item withdrawn makes it incomplete; the decision comes back, the seller is not asked again.
        let current = h.engine.store().load(dispute.id).await.unwrap().unwrap();
        h.engine
            .remove_evidence(dispute.id, Actor::analyst("test"), current.version, items[0], None)
            .await
            .unwrap();
        let log = events(&h, dispute.id).await;
        assert_eq!(
            count(&log, "triage_decided", "policy:1"),
            3,
            "{label}: A, B, A: {:?}",
            log.iter().map(|e| &e.kind).collect::<Vec<_>>()
        );
        assert_eq!(count(&log, "message_requested", "policy:1"), 1, "{label}: asked once");
        let steps = h.engine.store().steps(dispute.id).await.unwrap();
        let messages = steps
            .iter()
            .filter(|s| s.kind == StepKind::SellerMessage.as_str())
            .count();
        assert_eq!(messages, 1, "{label}: {steps:?}");
        assert!(
            h.engine
                .store()
                .policy_action_taken(dispute.id, RecommendedAction::AskSeller.as_str())
                .await
                .unwrap(),
            "{label}"
        );
    }
}

const REFUND_ABOVE_LIMIT: &str = r#"
[[rule]]
name = "refund alerts"
when = { stage = "pre_dispute" }
queue = "care"
action = "refund"
autonomous = true
autonomy_limit_minor = 10000
"#;

#[tokio::test]
async fn a_failure_between_claiming_an_approval_and_performing_it_leaves_it_pending_with_nothing_done() {
    for h in harnesses().await {
        let label = h.label;
        activate(&h, REFUND_ABOVE_LIMIT).await;
        let dispute = h
            .dispute("dp_refund_crash", Locale::En, Stage::PreDispute, vec![])
            .await;
        let waiting = pending(&h).await;
        assert_eq!(waiting.len(), 1, "{label}: {waiting:?}");
        let approval = &waiting[0];
        let before = events(&h, dispute.id).await.len();

        // The claim succeeds inside the transaction, then the transaction fails before the action is written.
        verdict_store::fail_after_claiming(approval.id);
        let failed = h.engine.perform_approved(approval, LEAD, Some("first try")).await;
        assert!(failed.is_err(), "{label}: the injected failure surfaces");
        let stored = h.engine.store().approval(approval.id).await.unwrap().unwrap();
        assert_eq!(stored.status, APPROVAL_PENDING, "{label}: not stuck as approved");
        assert_eq!(stored.decided_by, None, "{label}");
        assert_eq!(events(&h, dispute.id).await.len(), before, "{label}: no event");
        let steps = h.engine.store().steps(dispute.id).await.unwrap();
        assert!(
            steps.iter().all(|s| s.kind != StepKind::Refund.as_str()),
            "{label}: {steps:?}"
        );

        // The lead approves again: performed once, approved once.
        let resolved = h.engine.perform_approved(approval, LEAD, None).await.unwrap();
        assert_eq!(resolved.status, Status::Resolved, "{label}");
        let stored = h.engine.store().approval(approval.id).await.unwrap().unwrap();
        assert_eq!(stored.status, APPROVAL_APPROVED, "{label}");
        let log = events(&h, dispute.id).await;
        assert_eq!(count(&log, "refund_requested", "policy:1"), 1, "{label}");
        // A second claim of the same approval finds it decided and writes nothing.
        assert!(
            h.engine.perform_approved(approval, LEAD, None).await.is_err(),
            "{label}"
        );
        assert_eq!(
            count(&events(&h, dispute.id).await, "refund_requested", ""),
            1,
            "{label}"
        );
    }
}

#[tokio::test]
async fn the_seller_is_reminded_once_before_the_task_is_due_and_a_missed_task_is_recorded() {
    for h in harnesses().await {
        let label = h.label;
        let worker = Worker::new(
            h.engine.clone(),
            Arc::new(Effects::local(h.engine.store().clone(), h.clock.clone())),
            WorkerOptions::default(),
        );
        let (silent, task) = super::sellers::seller_owned(&h, "dp_seller_silent").await;
        let (answers, _) = super::sellers::seller_owned(&h, "dp_seller_answers").await;
        let timers: Vec<(String, chrono::DateTime<chrono::Utc>)> = h
            .engine
            .store()
            .timers(silent.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.kind.starts_with("seller_"))
            .map(|t| (t.kind, t.due_at))
            .collect();
        let remind_at = task.due_at - Duration::days(1);
        assert_eq!(
            timers,
            vec![
                ("seller_reminder".to_owned(), remind_at),
                ("seller_due".to_owned(), task.due_at)
            ],
            "{label}"
        );
        // The second seller answers before the reminder.
        let current = h.engine.store().load(answers.id).await.unwrap().unwrap();
        h.engine
            .add_evidence(
                answers.id,
                Actor::analyst("seller-desk"),
                current.version,
                EvidenceSource::Analyst,
                vec![NewEvidence {
                    kind: EvidenceKind::ProofOfDelivery,
                    text: Some("the seller's proof of delivery".into()),
                    file_id: None,
                }],
            )
            .await
            .unwrap();

        worker.drain().await.unwrap();
        h.clock.advance(remind_at - h.clock.now() + Duration::minutes(1));
        worker.drain().await.unwrap();
        worker.drain().await.unwrap();
        let log = events(&h, silent.id).await;
        assert_eq!(
            count(&log, "message_requested", "timer:seller_reminder"),
            1,
            "{label}: {:?} {:?}",
            log.iter().map(|e| (&e.kind, &e.actor)).collect::<Vec<_>>(),
            h.engine.store().timers(silent.id).await.unwrap()
        );
        let reminder = log.iter().find(|e| e.actor == "timer:seller_reminder").unwrap();
        assert_eq!(reminder.change["template"], "seller_request_evidence", "{label}");
        assert_eq!(count(&log, "seller_did_not_answer", ""), 0, "{label}: not yet due");
        assert_eq!(
            count(&events(&h, answers.id).await, "message_requested", "timer:"),
            0,
            "{label}: the seller who answered is not reminded"
        );

        // At the task's deadline: the silence is recorded for the analyst; the reminder is not sent again.
        h.clock.advance(task.due_at - h.clock.now() + Duration::minutes(1));
        worker.drain().await.unwrap();
        let log = events(&h, silent.id).await;
        assert_eq!(count(&log, "seller_did_not_answer", "timer:seller_due"), 1, "{label}");
        assert_eq!(count(&log, "message_requested", "timer:seller_reminder"), 1, "{label}");
        let answered = events(&h, answers.id).await;
        assert_eq!(count(&answered, "seller_did_not_answer", ""), 0, "{label}");
        assert_eq!(count(&answered, "message_requested", "timer:"), 0, "{label}");
        // Nothing of the seller task is left pending.
        for id in [silent.id, answers.id] {
            let left = h.engine.store().timers(id).await.unwrap();
            assert!(
                left.iter()
                    .filter(|t| t.kind.starts_with("seller_"))
                    .all(|t| t.status != "pending"),
                "{label}: {left:?}"
            );
        }
    }
}
