//! Notifications from the inbox to the dispute: creation on first sight, outcomes, ordering, duplicates,
//! contradictions and recovery of rows left pending by a crash.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use verdict_domain::{Action, Actor, Dispute, Processor, Stage, Status};
use verdict_engine::ingest::INBOX_LEASE;
use verdict_engine::{ApplyOutcome, Engine, ManualClock, Source};
use verdict_ingest::{Notification, NotificationKind, Parsed};
use verdict_store::testing::test_databases;
use verdict_store::{InboxFinish, InboxStatus, Store, StoreError};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/processors/");

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{path}")).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
}

fn at(secs_after: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + Duration::seconds(secs_after)
}

struct Harness {
    engine: Engine,
    clock: Arc<ManualClock>,
    label: &'static str,
    _db: verdict_store::testing::TestDatabase,
}

async fn harnesses() -> Vec<Harness> {
    let mut out = Vec::new();
    for db in test_databases().await.unwrap() {
        let store: Store = db.store().await.unwrap();
        let clock = Arc::new(ManualClock::new(now()));
        out.push(Harness {
            engine: Engine::new(store, clock.clone()),
            clock,
            label: db.label,
            _db: db,
        });
    }
    out
}

/// A Stripe-like notification built from the ingest parser's output shape.
fn stripe(event_id: &str, dispute: &str, kind: NotificationKind, stage: Stage, occurred: i64) -> Notification {
    let mut n = match verdict_ingest::parse_stripe(&fixture(
        "stripe/unofficial-stripe-ruby-mock/event-charge.dispute.created.json",
    ))
    .unwrap()
    .remove(0)
    {
        Parsed::Dispute(n) => n,
        other => panic!("{other:?}"),
    };
    n.event_id = event_id.into();
    n.processor_dispute_id = dispute.into();
    n.kind = kind;
    n.stage = Some(stage);
    n.occurred_at = at(occurred);
    n.due_by = Some(now() + Duration::days(10));
    n
}

async fn receive(h: &Harness, n: Notification) -> verdict_engine::Received {
    h.engine
        .receive(Source::Stripe, vec![Parsed::Dispute(n)], "{}")
        .await
        .unwrap()
}

async fn dispute(h: &Harness, id: &str) -> Dispute {
    h.engine
        .store()
        .find_by_processor_id(Processor::Stripe, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{}: no dispute {id}", h.label))
}

#[tokio::test]
async fn a_chargeback_creates_the_dispute_from_what_the_notification_carries() {
    for h in harnesses().await {
        let body = fixture("adyen/openapi-webhooks-v1-chargeback.json");
        let parsed = verdict_ingest::parse_adyen(&body).unwrap();
        let received = h.engine.receive(Source::Adyen, parsed, &body).await.unwrap();
        assert_eq!((received.stored, received.duplicates), (1, 0), "{}", h.label);
        assert!(
            matches!(received.outcomes[0].1, ApplyOutcome::Applied { .. }),
            "{}",
            h.label
        );
        let d = h
            .engine
            .store()
            .find_by_processor_id(Processor::Adyen, "QFQTPCQ8HXSKGK82")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.status, d.stage),
            (Status::Notified, Stage::Chargeback),
            "{}",
            h.label
        );
        assert_eq!(d.amount.to_string(), "10.00 EUR");
        assert_eq!(d.reason_code.to_string(), "mastercard 4853");
        assert_eq!(d.reason_code_raw, " 4853");
        assert_eq!(d.payment_reference, "9913140798220028");
        let rows = h.engine.store().notifications_of_dispute(d.id).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, InboxStatus::Applied);
        assert_eq!(
            rows[0].payload.as_bytes(),
            &body[..],
            "the raw body is kept as received"
        );
        let events = h.engine.store().events(d.id).await.unwrap();
        assert_eq!(events[0].actor, "processor:adyen");
    }
}

#[tokio::test]
async fn a_redelivered_notification_changes_nothing() {
    for h in harnesses().await {
        let n = stripe(
            "evt_1",
            "dp_dup",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            0,
        );
        receive(&h, n.clone()).await;
        let before = dispute(&h, "dp_dup").await;
        let again = receive(&h, n).await;
        assert_eq!((again.stored, again.duplicates), (0, 1), "{}", h.label);
        assert_eq!(dispute(&h, "dp_dup").await, before, "{}", h.label);
        assert_eq!(
            h.engine
                .store()
                .find_notifications("stripe", Some("evt_1"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(h.engine.ingest_stats().duplicates, 1);
    }
}

#[tokio::test]
async fn a_closing_event_first_creates_the_dispute_and_an_older_event_then_changes_nothing() {
    for h in harnesses().await {
        let won = stripe("evt_closed", "dp_ooo", NotificationKind::Won, Stage::Chargeback, 100);
        receive(&h, won).await;
        let d = dispute(&h, "dp_ooo").await;
        assert_eq!((d.status, d.stage), (Status::Won, Stage::Chargeback), "{}", h.label);
        // The processor's word, as it said it: no invented triage, evidence gathering or manual submission.
        let events: Vec<_> = h
            .engine
            .store()
            .events(d.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.actor))
            .collect();
        assert_eq!(
            events,
            [
                ("opened".to_owned(), "processor:stripe".to_owned()),
                ("outcome_received".to_owned(), "processor:stripe".to_owned()),
            ],
            "{}",
            h.label
        );
        // Processor-driven submission must not enqueue our own evidence submission.
        let steps: Vec<_> = h
            .engine
            .store()
            .steps(d.id)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.kind)
            .collect();
        assert!(!steps.iter().any(|k| k == "submit_evidence"), "{steps:?}");

        let created = stripe(
            "evt_created",
            "dp_ooo",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            10,
        );
        let received = receive(&h, created).await;
        assert!(
            matches!(received.outcomes[0].1, ApplyOutcome::Ignored { .. }),
            "{:?}",
            received.outcomes
        );
        assert_eq!(dispute(&h, "dp_ooo").await, d, "{}", h.label);
        let row = &h
            .engine
            .store()
            .find_notifications("stripe", Some("evt_created"))
            .await
            .unwrap()[0];
        assert_eq!(row.status, InboxStatus::Ignored);
        assert!(
            row.note.as_deref().unwrap_or_default().contains("older"),
            "{:?}",
            row.note
        );
    }
}

#[tokio::test]
async fn a_won_dispute_reopens_at_pre_arbitration() {
    for h in harnesses().await {
        receive(
            &h,
            stripe("evt_a", "dp_pa", NotificationKind::Won, Stage::Chargeback, 0),
        )
        .await;
        let mut pre_arb = stripe(
            "evt_b",
            "dp_pa",
            NotificationKind::PreArbitrationOpened,
            Stage::PreArbitration,
            50,
        );
        pre_arb.due_by = Some(now() + Duration::days(20));
        receive(&h, pre_arb).await;
        let d = dispute(&h, "dp_pa").await;
        assert_eq!(
            (d.status, d.stage),
            (Status::EvidenceGathering, Stage::PreArbitration),
            "{}",
            h.label
        );
        assert_eq!(d.due_by, Some(now() + Duration::days(20)));
        receive(
            &h,
            stripe(
                "evt_c",
                "dp_pa",
                NotificationKind::PreArbitrationLost,
                Stage::PreArbitration,
                90,
            ),
        )
        .await;
        let d = dispute(&h, "dp_pa").await;
        assert_eq!(
            (d.status, d.stage),
            (Status::Lost, Stage::PreArbitration),
            "{}",
            h.label
        );
    }
}

#[tokio::test]
async fn an_inquiry_becomes_a_chargeback_and_moves_its_deadline() {
    for h in harnesses().await {
        receive(
            &h,
            stripe("evt_i", "dp_inq", NotificationKind::Inquiry, Stage::Inquiry, 0),
        )
        .await;
        let mut cb = stripe(
            "evt_cb",
            "dp_inq",
            NotificationKind::EvidenceRequired,
            Stage::Chargeback,
            10,
        );
        cb.due_by = Some(now() + Duration::days(30));
        receive(&h, cb).await;
        let d = dispute(&h, "dp_inq").await;
        assert_eq!(
            (d.status, d.stage),
            (Status::Notified, Stage::Chargeback),
            "{}",
            h.label
        );
        assert_eq!(d.due_by, Some(now() + Duration::days(30)));
    }
}

#[tokio::test]
async fn a_contradicting_notification_is_flagged_and_kept() {
    for h in harnesses().await {
        receive(
            &h,
            stripe("evt_acc", "dp_flag", NotificationKind::Accepted, Stage::Chargeback, 0),
        )
        .await;
        let accepted = dispute(&h, "dp_flag").await;
        assert_eq!(accepted.status, Status::Accepted, "{}", h.label);
        // Accepting at the processor's word must not ask the processor to accept again.
        let steps = h.engine.store().steps(accepted.id).await.unwrap();
        assert!(steps.iter().all(|s| s.kind != "accept_at_processor"), "{steps:?}");

        let received = receive(
            &h,
            stripe("evt_won", "dp_flag", NotificationKind::Won, Stage::Chargeback, 10),
        )
        .await;
        assert!(
            matches!(received.outcomes[0].1, ApplyOutcome::Flagged { .. }),
            "{:?}",
            received.outcomes
        );
        assert_eq!(dispute(&h, "dp_flag").await, accepted, "{}", h.label);
        let flagged = h
            .engine
            .store()
            .flagged_notifications_of_dispute(accepted.id)
            .await
            .unwrap();
        assert_eq!(flagged.len(), 1, "{}", h.label);
        assert_eq!(flagged[0].event_id, "evt_won");
        assert!(
            flagged[0]
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("illegal transition"),
            "{:?}",
            flagged[0].note
        );
        assert_eq!(h.engine.ingest_stats().flagged, 1);
        assert_eq!(
            h.engine
                .store()
                .notifications_of_dispute(accepted.id)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}

/// History says what happened: a processor's stage advance, new due date, acceptance and second-cycle
/// reopening are `processor_update` events by the processor, never manual transitions.
#[tokio::test]
async fn processor_changes_are_recorded_as_processor_updates() {
    for h in harnesses().await {
        receive(
            &h,
            stripe("evt_pi", "dp_pu", NotificationKind::Inquiry, Stage::Inquiry, 0),
        )
        .await;
        let mut cb = stripe(
            "evt_pc",
            "dp_pu",
            NotificationKind::EvidenceRequired,
            Stage::Chargeback,
            10,
        );
        cb.due_by = Some(now() + Duration::days(30));
        receive(&h, cb).await;
        receive(
            &h,
            stripe("evt_pa", "dp_pu", NotificationKind::Accepted, Stage::Chargeback, 20),
        )
        .await;
        let d = dispute(&h, "dp_pu").await;
        assert_eq!(
            (d.status, d.stage),
            (Status::Accepted, Stage::Chargeback),
            "{}",
            h.label
        );
        let events = h.engine.store().events(d.id).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["opened", "processor_update", "processor_update"], "{}", h.label);
        assert!(events.iter().all(|e| e.actor == "processor:stripe"), "{}", h.label);
        assert_eq!(events[1].change["stage_to"], "chargeback");
        assert_eq!(events[2].to_status.as_deref(), Some("accepted"));
        let steps = h.engine.store().steps(d.id).await.unwrap();
        assert!(steps.iter().all(|s| s.kind != "accept_at_processor"), "{steps:?}");
        // Stored events replay to the stored projection.
        let log: Vec<verdict_domain::DisputeEvent> = events
            .iter()
            .map(|e| verdict_domain::DisputeEvent {
                dispute_id: d.id,
                version: e.version,
                at: e.at,
                actor: Actor::processor(Processor::Stripe),
                reason: e.reason.clone(),
                change: serde_json::from_value(e.change.clone()).unwrap(),
            })
            .collect();
        let replayed = verdict_domain::replay(&log).unwrap();
        assert_eq!(
            (replayed.status, replayed.stage, replayed.due_by),
            (d.status, d.stage, d.due_by)
        );
    }
}

/// Stripe's `due_by=1`: the dispute opens (a notification cannot be refused), the past due date is flagged in
/// the history, and it does not expire before the grace window.
#[tokio::test]
async fn a_past_due_date_from_the_processor_is_flagged_and_does_not_expire_at_once() {
    for h in harnesses().await {
        let mut n = stripe(
            "evt_past",
            "dp_past",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            0,
        );
        n.due_by = DateTime::from_timestamp(1, 0);
        receive(&h, n).await;
        let d = dispute(&h, "dp_past").await;
        assert_eq!(d.status, Status::Notified, "{}", h.label);
        let opened = &h.engine.store().events(d.id).await.unwrap()[0];
        assert!(
            opened
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("flagged: due date 1970"),
            "{:?}",
            opened.reason
        );
        let timers = h.engine.store().timers(d.id).await.unwrap();
        assert!(!timers.is_empty());
        assert!(timers.iter().all(|t| t.due_at > now()), "{}: {timers:?}", h.label);
        let deadline = timers.iter().find(|t| t.kind == "deadline").unwrap();
        assert_eq!(deadline.due_at, now() + Duration::days(7), "{}", h.label);
    }
}

#[tokio::test]
async fn informational_notifications_are_recorded_as_notes() {
    for h in harnesses().await {
        receive(
            &h,
            stripe(
                "evt_o",
                "dp_note",
                NotificationKind::ChargebackOpened,
                Stage::Chargeback,
                0,
            ),
        )
        .await;
        receive(
            &h,
            stripe(
                "evt_f",
                "dp_note",
                NotificationKind::FundsWithdrawn,
                Stage::Chargeback,
                5,
            ),
        )
        .await;
        let d = dispute(&h, "dp_note").await;
        assert_eq!(d.status, Status::Notified);
        let events = h.engine.store().events(d.id).await.unwrap();
        assert_eq!(
            events.last().map(|e| e.kind.as_str()),
            Some("note_added"),
            "{}",
            h.label
        );
    }
}

#[tokio::test]
async fn a_notification_without_amount_or_reason_opens_with_documented_fallbacks() {
    for h in harnesses().await {
        let mut n = stripe("evt_bare", "dp_bare", NotificationKind::Lost, Stage::Chargeback, 0);
        n.amount = None;
        n.reason_code = None;
        n.reason_code_raw = None;
        n.processor_reason = None;
        n.payment_reference = None;
        receive(&h, n).await;
        let d = dispute(&h, "dp_bare").await;
        assert_eq!(d.status, Status::Lost, "{}", h.label);
        assert_eq!(d.amount.to_string(), "1 XXX");
        assert_eq!(d.reason_code.to_string(), "other general");
        assert_eq!(d.payment_reference, "dp_bare");
        let opened = &h.engine.store().events(d.id).await.unwrap()[0];
        assert!(
            opened.reason.as_deref().unwrap_or_default().contains("amount unknown"),
            "{:?}",
            opened.reason
        );
    }
}

#[tokio::test]
async fn a_notification_left_pending_by_a_crash_is_applied_by_the_sweep() {
    for h in harnesses().await {
        let n = stripe("evt_crash", "dp_crash", NotificationKind::Lost, Stage::Chargeback, 0);
        // Stored, then "crash" before applying.
        let (received, pending) = h
            .engine
            .record(Source::Stripe, &[Parsed::Dispute(n)], "{}")
            .await
            .unwrap();
        assert_eq!((received.stored, pending.rows.len()), (1, 1));
        assert!(
            h.engine
                .store()
                .find_by_processor_id(Processor::Stripe, "dp_crash")
                .await
                .unwrap()
                .is_none()
        );
        // The storing request still owns the row: the sweep leaves it alone until the lease lapses, which (no
        // longer renewed by the "crashed" request) is well under the two minutes it used to be.
        assert_eq!(h.engine.apply_pending(10).await.unwrap(), 0, "{}", h.label);
        assert!(INBOX_LEASE <= Duration::seconds(30));
        h.clock.advance(INBOX_LEASE + Duration::seconds(1));
        assert_eq!(h.engine.apply_pending(10).await.unwrap(), 1, "{}", h.label);
        assert_eq!(dispute(&h, "dp_crash").await.status, Status::Lost, "{}", h.label);
        let row = &h
            .engine
            .store()
            .find_notifications("stripe", Some("evt_crash"))
            .await
            .unwrap()[0];
        assert_eq!(row.status, InboxStatus::Applied);
        assert_eq!(h.engine.apply_pending(10).await.unwrap(), 0, "nothing left");
        assert_eq!(
            h.engine
                .store()
                .count_notifications(Some(InboxStatus::Pending))
                .await
                .unwrap(),
            0
        );
    }
}

#[tokio::test]
async fn pending_rows_are_applied_in_the_order_they_happened() {
    for h in harnesses().await {
        // Recorded newest first; the sweep must apply the opening before the outcome.
        let won = stripe("evt_2", "dp_order", NotificationKind::Won, Stage::Chargeback, 20);
        let opened = stripe(
            "evt_1",
            "dp_order",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            10,
        );
        h.engine
            .record(Source::Stripe, &[Parsed::Dispute(won)], "{}")
            .await
            .unwrap();
        h.engine
            .record(Source::Stripe, &[Parsed::Dispute(opened)], "{}")
            .await
            .unwrap();
        h.clock.advance(INBOX_LEASE + Duration::seconds(1));
        assert_eq!(h.engine.apply_pending(10).await.unwrap(), 2);
        assert_eq!(dispute(&h, "dp_order").await.status, Status::Won, "{}", h.label);
        for event in ["evt_1", "evt_2"] {
            let row = &h
                .engine
                .store()
                .find_notifications("stripe", Some(event))
                .await
                .unwrap()[0];
            assert_eq!(row.status, InboxStatus::Applied, "{event} {}", h.label);
        }
    }
}

#[tokio::test]
async fn an_analyst_change_between_notifications_is_respected() {
    for h in harnesses().await {
        receive(
            &h,
            stripe(
                "evt_x",
                "dp_an",
                NotificationKind::ChargebackOpened,
                Stage::Chargeback,
                0,
            ),
        )
        .await;
        let d = dispute(&h, "dp_an").await;
        h.engine
            .handle(
                d.id,
                verdict_domain::Command::new(Actor::analyst("ana"), Action::Triage { queue: None }),
            )
            .await
            .unwrap();
        h.engine
            .handle(
                d.id,
                verdict_domain::Command::new(Actor::analyst("ana"), Action::StartEvidenceGathering),
            )
            .await
            .unwrap();
        receive(
            &h,
            stripe("evt_y", "dp_an", NotificationKind::Won, Stage::Chargeback, 30),
        )
        .await;
        assert_eq!(dispute(&h, "dp_an").await.status, Status::Won, "{}", h.label);
    }
}

#[tokio::test]
async fn ignored_event_types_are_stored_but_apply_nothing() {
    for h in harnesses().await {
        let body = fixture("stripe/dotnet-sdk-event_test_signature.raw.json");
        let parsed = verdict_ingest::parse_stripe(&body).unwrap();
        let received = h.engine.receive(Source::Stripe, parsed, "x").await.unwrap();
        assert_eq!(
            (received.stored, received.ignored, received.outcomes.len()),
            (1, 1, 0),
            "{}",
            h.label
        );
        let rows = h
            .engine
            .store()
            .find_notifications("stripe", Some("evt_123"))
            .await
            .unwrap();
        assert_eq!(rows[0].status, InboxStatus::Ignored);
    }
}

/// Raw bodies carry customer data: past the retention period the daily job blanks those of finished rows
/// (applied, ignored, flagged) and records when; pending rows and younger ones keep theirs.
#[tokio::test]
async fn raw_bodies_past_retention_are_purged_but_pending_ones_are_kept() {
    use verdict_engine::schedules::Scheduler;
    for h in harnesses().await {
        let label = h.label;
        let engine = &h.engine;
        let old = stripe(
            "evt_ret_old",
            "dp_ret_1",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            0,
        );
        engine
            .receive(
                Source::Stripe,
                vec![
                    Parsed::Dispute(old),
                    Parsed::Ignored {
                        event_id: "evt_ret_ignored".into(),
                        event_type: "charge.succeeded".into(),
                    },
                ],
                r#"{"billing_details":{"email":"lucia@example.it"}}"#,
            )
            .await
            .unwrap();
        let pending = stripe(
            "evt_ret_pending",
            "dp_ret_2",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            1,
        );
        engine
            .record(Source::Stripe, &[Parsed::Dispute(pending)], r#"{"pending":"body"}"#)
            .await
            .unwrap();
        h.clock.advance(Duration::days(181));
        let young = stripe(
            "evt_ret_young",
            "dp_ret_3",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            2,
        );
        engine
            .receive(Source::Stripe, vec![Parsed::Dispute(young)], r#"{"young":"body"}"#)
            .await
            .unwrap();

        let scheduler = Scheduler::new(engine.clone(), &[], Duration::days(3))
            .unwrap()
            .with_payload_retention(Duration::days(180));
        let now = engine.clock().now();
        assert_eq!(scheduler.purge_payloads(now).await.unwrap(), 2, "{label}");
        assert_eq!(
            scheduler.purge_payloads(now).await.unwrap(),
            0,
            "{label}: nothing twice"
        );

        let row = |event_id: &'static str| async move {
            let rows = engine
                .store()
                .find_notifications("stripe", Some(event_id))
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{label}: {event_id}");
            rows.into_iter().next().unwrap()
        };
        for purged in ["evt_ret_old", "evt_ret_ignored"] {
            let record = row(purged).await;
            assert_eq!(record.payload, "", "{label}: {purged}");
            assert_eq!(record.payload_purged_at, Some(now), "{label}: {purged}");
            assert_ne!(record.status, InboxStatus::Pending, "{label}: {purged}");
        }
        let kept = row("evt_ret_pending").await;
        assert_eq!(
            (kept.status, kept.payload.as_str(), kept.payload_purged_at),
            (InboxStatus::Pending, r#"{"pending":"body"}"#, None),
            "{label}"
        );
        let young = row("evt_ret_young").await;
        assert_eq!(
            (young.payload.as_str(), young.payload_purged_at),
            (r#"{"young":"body"}"#, None),
            "{label}"
        );
    }
}

/// A processor redelivers what it got no answer for (or a 5xx): when the row was stored before a crash and
/// is still pending, the redelivery applies it at once instead of answering "duplicate" and waiting for the
/// lease.
#[tokio::test]
async fn a_redelivery_of_a_stored_but_unapplied_notification_applies_it_now() {
    for h in harnesses().await {
        let n = stripe(
            "evt_redeliver",
            "dp_redeliver",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            0,
        );
        // Stored, then "crash" before applying: the row is pending and leased.
        let (_, crashed) = h
            .engine
            .record(Source::Stripe, &[Parsed::Dispute(n.clone())], "{}")
            .await
            .unwrap();
        assert_eq!(crashed.rows.len(), 1);
        // The redelivery, well inside the dead request's lease.
        h.clock.advance(Duration::seconds(1));
        let received = receive(&h, n.clone()).await;
        assert_eq!(
            (received.stored, received.duplicates, received.retaken),
            (0, 1, 1),
            "{}",
            h.label
        );
        assert!(
            matches!(received.outcomes[..], [(_, ApplyOutcome::Applied { .. })]),
            "{}: {:?}",
            h.label,
            received.outcomes
        );
        let d = dispute(&h, "dp_redeliver").await;
        assert_eq!(d.status, Status::Notified, "{}", h.label);
        let row = &h
            .engine
            .store()
            .find_notifications("stripe", Some("evt_redeliver"))
            .await
            .unwrap()[0];
        assert_eq!(row.status, InboxStatus::Applied, "{}", h.label);
        // A third delivery of an applied row is an ordinary duplicate.
        let again = receive(&h, n).await;
        assert_eq!((again.duplicates, again.retaken, again.outcomes.len()), (1, 0, 0));
    }
}

/// The request a redelivery took a row from may still be alive (slow, not dead): whichever applier holds
/// the older lease commits nothing, so the dispute is opened once.
#[tokio::test]
async fn an_applier_whose_row_was_taken_over_commits_nothing() {
    for h in harnesses().await {
        let n = stripe("evt_fenced", "dp_fenced", NotificationKind::Lost, Stage::Chargeback, 0);
        let (_, first) = h
            .engine
            .record(Source::Stripe, &[Parsed::Dispute(n.clone())], "{}")
            .await
            .unwrap();
        let (received, second) = h
            .engine
            .record(Source::Stripe, &[Parsed::Dispute(n)], "{}")
            .await
            .unwrap();
        assert_eq!((received.retaken, second.rows.len()), (1, 1), "{}", h.label);
        assert_ne!(first.lease_token, second.lease_token);
        // The first applier goes on with its old lease: its whole commit is refused.
        let outcomes = h.engine.apply_claim(Source::Stripe, first).await;
        assert!(
            matches!(outcomes[..], [(_, ApplyOutcome::Retry { .. })]),
            "{}: {outcomes:?}",
            h.label
        );
        assert!(
            h.engine
                .store()
                .find_by_processor_id(Processor::Stripe, "dp_fenced")
                .await
                .unwrap()
                .is_none(),
            "{}: nothing committed under a lost lease",
            h.label
        );
        let outcomes = h.engine.apply_claim(Source::Stripe, second).await;
        assert!(
            matches!(outcomes[..], [(_, ApplyOutcome::Applied { .. })]),
            "{outcomes:?}"
        );
        let d = dispute(&h, "dp_fenced").await;
        assert_eq!(d.status, Status::Lost, "{}", h.label);
    }
}

/// Sweeps running at the same moment (two replicas) claim disjoint rows in one batch each, and every row is
/// applied exactly once.
#[tokio::test]
async fn concurrent_sweeps_claim_disjoint_rows() {
    for h in harnesses().await {
        for i in 0..12 {
            let n = stripe(
                &format!("evt_sweep_{i}"),
                &format!("dp_sweep_{i}"),
                NotificationKind::ChargebackOpened,
                Stage::Chargeback,
                i,
            );
            h.engine
                .record(Source::Stripe, &[Parsed::Dispute(n)], "{}")
                .await
                .unwrap();
        }
        h.clock.advance(INBOX_LEASE + Duration::seconds(1));
        let store = h.engine.store();
        let now = h.engine.clock().now();
        let (a, b) = tokio::join!(
            store.claim_pending_notifications(now, INBOX_LEASE, 8),
            store.claim_pending_notifications(now, INBOX_LEASE, 8)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.rows.len() + b.rows.len(), 12, "{}", h.label);
        assert!(
            a.rows.iter().all(|row| b.rows.iter().all(|other| other.id != row.id)),
            "{}: a row claimed twice",
            h.label
        );
        // Claimed rows are not claimed again while the lease holds, and the lease can be renewed.
        assert!(
            store
                .claim_pending_notifications(now, INBOX_LEASE, 100)
                .await
                .unwrap()
                .rows
                .is_empty()
        );
        let renewed = store
            .renew_notification_leases(a.lease_token, now + INBOX_LEASE + Duration::seconds(10))
            .await
            .unwrap();
        assert_eq!(renewed as usize, a.rows.len());
        h.clock.advance(INBOX_LEASE + Duration::seconds(1));
        let retaken = store
            .claim_pending_notifications(h.engine.clock().now(), INBOX_LEASE, 100)
            .await
            .unwrap();
        assert_eq!(
            retaken.rows.len(),
            b.rows.len(),
            "{}: only the unrenewed lease lapsed",
            h.label
        );
        h.clock.advance(INBOX_LEASE * 2);
        assert_eq!(h.engine.apply_pending(100).await.unwrap(), 12, "{}", h.label);
        assert_eq!(store.count_notifications(Some(InboxStatus::Applied)).await.unwrap(), 12);
    }
}

/// Whether a notification is older than what its dispute already reflects is decided by the transaction
/// that commits it, after the dispute row is locked: a later notification committed in between (by another
/// replica) makes the commit refuse, writing nothing.
#[tokio::test]
async fn the_out_of_order_decision_is_made_in_the_committing_transaction() {
    for h in harnesses().await {
        let opened = stripe(
            "evt_o1",
            "dp_o",
            NotificationKind::ChargebackOpened,
            Stage::Chargeback,
            10,
        );
        receive(&h, opened).await;
        let won = stripe("evt_o3", "dp_o", NotificationKind::Won, Stage::Chargeback, 30);
        receive(&h, won).await;
        let d = dispute(&h, "dp_o").await;
        assert_eq!(d.status, Status::Won);
        // An older notification, planned on the current dispute as if the newer one had not been seen yet.
        let older = stripe("evt_o2", "dp_o", NotificationKind::Lost, Stage::Chargeback, 20);
        let (_, claim) = h
            .engine
            .record(Source::Stripe, &[Parsed::Dispute(older)], "{}")
            .await
            .unwrap();
        let (inbox_id, _) = claim.rows[0];
        let command = verdict_domain::Command::new(Actor::analyst("ana"), Action::AddNote { note: "x".into() });
        let decision = verdict_domain::decide(&d, &command, h.engine.clock().now()).unwrap();
        let mut after = d.clone();
        for event in &decision.events {
            verdict_domain::apply(&mut after, event);
        }
        let finish = InboxFinish {
            id: inbox_id,
            lease_token: claim.lease_token,
            status: InboxStatus::Applied,
            dispute_id: Some(d.id),
            note: Some("lost".into()),
            at: h.engine.clock().now(),
            not_before_applied: Some(at(20)),
        };
        let refused = h
            .engine
            .store()
            .commit_applying(Some(d.version), &after, &decision, &finish)
            .await;
        assert!(
            matches!(refused, Err(StoreError::Superseded { .. })),
            "{}: {refused:?}",
            h.label
        );
        assert_eq!(
            dispute(&h, "dp_o").await.version,
            d.version,
            "{}: nothing written",
            h.label
        );
        // Through the engine the same notification ends ignored, the dispute still won.
        let outcomes = h.engine.apply_claim(Source::Stripe, claim).await;
        assert!(
            matches!(outcomes[..], [(_, ApplyOutcome::Ignored { .. })]),
            "{outcomes:?}"
        );
        assert_eq!(dispute(&h, "dp_o").await.status, Status::Won, "{}", h.label);
    }
}
