//! Group commit (group.rs): concurrent decisions written together give exactly what serial execution gives,
//! each caller gets its own answer, and nothing is acknowledged that is not stored.

use std::collections::HashMap;

use verdict_domain::{Action, Actor, Command, Decision, Dispute, DisputeId, decide, open, replay};
use verdict_store::testing::test_databases;
use verdict_store::{CommitRequest, Fence, Leased, Store, StoreError};

use super::{act, new_dispute, open_in, pending_row, t0};

fn note(dispute: &Dispute, text: &str) -> (Dispute, Decision) {
    let command = Command::new(Actor::analyst("test"), Action::AddNote { note: text.into() });
    let decision = decide(dispute, &command, t0() + chrono::Duration::hours(1)).unwrap();
    let mut after = dispute.clone();
    for event in &decision.events {
        verdict_domain::apply(&mut after, event);
    }
    (after, decision)
}

fn request(dispute: &Dispute, text: &str) -> CommitRequest {
    let (after, decision) = note(dispute, text);
    CommitRequest {
        expected_version: Some(dispute.version),
        after,
        decision,
        fence: None,
        finish: None,
    }
}

/// Load, decide, commit; again on a conflict, as the engine does. Returns the conflicts this caller saw.
async fn note_until_stored(store: Store, id: DisputeId, text: String) -> usize {
    let mut conflicts = 0;
    loop {
        let dispute = store.load(id).await.unwrap().unwrap();
        let (after, decision) = note(&dispute, &text);
        match store.commit(Some(dispute.version), &after, &decision).await {
            Ok(()) => return conflicts,
            Err(StoreError::Conflict(conflicted)) => {
                assert_eq!(conflicted, id, "a conflict reported for another dispute");
                conflicts += 1;
            }
            Err(err) => panic!("{err}"),
        }
    }
}

#[tokio::test]
async fn concurrent_commands_end_as_serial_execution_would() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let mut disputes = Vec::new();
        for i in 0..5 {
            disputes.push(open_in(&store, &format!("dp_group_{i}"), Some(10)).await.id);
        }
        // 120 callers: a third on the first dispute, the rest spread over the others.
        let mut tasks = tokio::task::JoinSet::new();
        let mut expected: HashMap<DisputeId, usize> = HashMap::new();
        for n in 0..120 {
            let id = if n % 3 == 0 { disputes[0] } else { disputes[1 + n % 4] };
            *expected.entry(id).or_default() += 1;
            tasks.spawn(note_until_stored(store.clone(), id, format!("note {n}")));
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        for (id, notes) in expected {
            let events = store.events(id).await.unwrap();
            let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
            assert_eq!(
                versions,
                (1..=notes as i64 + 1).collect::<Vec<_>>(),
                "{}: versions contiguous, no note lost",
                db.label
            );
            let texts: std::collections::HashSet<_> =
                events.iter().skip(1).map(|e| e.change["note"].to_string()).collect();
            assert_eq!(texts.len(), notes, "{}: every note once", db.label);
            let dispute = store.load(id).await.unwrap().unwrap();
            assert_eq!(dispute.version, notes as i64 + 1, "{}", db.label);
        }
    }
}

#[tokio::test]
async fn of_concurrent_decisions_on_one_version_exactly_one_wins_and_the_others_hear_of_it() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let a = open_in(&store, "dp_race_a", Some(10)).await;
        let b = open_in(&store, "dp_race_b", Some(10)).await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            let dispute = if n % 2 == 0 { a.clone() } else { b.clone() };
            let store = store.clone();
            tasks.spawn(async move {
                let (after, decision) = note(&dispute, &format!("racing {n}"));
                (dispute.id, store.commit(Some(dispute.version), &after, &decision).await)
            });
        }
        let mut won: HashMap<DisputeId, usize> = HashMap::new();
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                (id, Ok(())) => *won.entry(id).or_default() += 1,
                (id, Err(StoreError::Conflict(conflicted))) => assert_eq!(id, conflicted, "{}", db.label),
                (_, Err(err)) => panic!("{}: {err}", db.label),
            }
        }
        assert_eq!(won.get(&a.id), Some(&1), "{}", db.label);
        assert_eq!(won.get(&b.id), Some(&1), "{}", db.label);
        for id in [a.id, b.id] {
            assert_eq!(store.events(id).await.unwrap().len(), 2, "{}", db.label);
        }
    }
}

#[tokio::test]
async fn a_refused_or_failing_decision_leaves_its_neighbours_committed() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let good_a = open_in(&store, "dp_n_a", Some(10)).await;
        let good_b = open_in(&store, "dp_n_b", Some(10)).await;
        let stale = open_in(&store, "dp_n_stale", Some(10)).await;
        let fenced = open_in(&store, "dp_n_fenced", Some(10)).await;
        let broken = open_in(&store, "dp_n_broken", Some(10)).await;
        open_in(&store, "dp_n_twice", Some(10)).await;

        let mut stale_request = request(&stale, "on a stale version");
        stale_request.expected_version = Some(stale.version + 5);
        // A lease nobody holds: the step row does not exist.
        let mut fenced_request = request(&fenced, "under a lost lease");
        fenced_request.fence = Some(Fence::Step(Leased {
            id: uuid::Uuid::now_v7(),
            lease_token: uuid::Uuid::now_v7(),
        }));
        // Two events with one version: the batch's event insert fails on it.
        let mut broken_request = request(&broken, "twice the same version");
        let duplicate = broken_request.decision.events[0].clone();
        broken_request.decision.events.push(duplicate);
        let command = Command::new(
            Actor::analyst("test"),
            Action::Open(Box::new(new_dispute("dp_n_twice", Some(3)))),
        );
        let decision = open(DisputeId::new_v7(), &command, t0()).unwrap();
        let twice_request = CommitRequest {
            expected_version: None,
            after: replay(&decision.events).unwrap(),
            decision,
            fence: None,
            finish: None,
        };

        let results = store
            .commit_many(vec![
                request(&good_a, "first neighbour"),
                stale_request,
                fenced_request,
                twice_request,
                broken_request,
                request(&good_b, "second neighbour"),
            ])
            .await;
        assert!(results[0].is_ok(), "{}: {:?}", db.label, results[0]);
        assert!(
            matches!(results[1], Err(StoreError::Conflict(id)) if id == stale.id),
            "{}: {:?}",
            db.label,
            results[1]
        );
        assert!(
            matches!(results[2], Err(StoreError::LeaseLost)),
            "{}: {:?}",
            db.label,
            results[2]
        );
        assert!(
            matches!(results[3], Err(StoreError::DuplicateDispute { .. })),
            "{}: {:?}",
            db.label,
            results[3]
        );
        assert!(
            matches!(results[4], Err(StoreError::Conflict(id)) if id == broken.id),
            "{}: {:?}",
            db.label,
            results[4]
        );
        assert!(results[5].is_ok(), "{}: {:?}", db.label, results[5]);
        for (dispute, versions) in [(&good_a, 2), (&good_b, 2), (&stale, 1), (&fenced, 1), (&broken, 1)] {
            assert_eq!(store.events(dispute.id).await.unwrap().len(), versions, "{}", db.label);
            assert_eq!(
                store.load(dispute.id).await.unwrap().unwrap().version,
                versions as i64,
                "{}",
                db.label
            );
        }
    }
}

#[tokio::test]
async fn a_database_error_fails_every_caller_and_stores_nothing() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let mut disputes = Vec::new();
        for i in 0..4 {
            disputes.push(open_in(&store, &format!("dp_down_{i}"), Some(10)).await);
        }
        // Events cannot be written while their table is away.
        store
            .execute_unprepared("ALTER TABLE dispute_events RENAME TO dispute_events_away")
            .await
            .unwrap();
        let results = store
            .commit_many(disputes.iter().map(|d| request(d, "lost")).collect())
            .await;
        let mut tasks = tokio::task::JoinSet::new();
        for dispute in &disputes {
            let (store, dispute) = (store.clone(), dispute.clone());
            tasks.spawn(async move {
                let (after, decision) = note(&dispute, "also lost");
                store.commit(Some(dispute.version), &after, &decision).await
            });
        }
        let mut concurrent = Vec::new();
        while let Some(done) = tasks.join_next().await {
            concurrent.push(done.unwrap());
        }
        store
            .execute_unprepared("ALTER TABLE dispute_events_away RENAME TO dispute_events")
            .await
            .unwrap();
        for result in results.iter().chain(&concurrent) {
            assert!(
                matches!(result, Err(StoreError::Database(_))),
                "{}: {result:?}",
                db.label
            );
        }
        for dispute in &disputes {
            assert_eq!(
                store.load(dispute.id).await.unwrap().unwrap().version,
                1,
                "{}",
                db.label
            );
        }
        // And the committer goes on once the database is back.
        let (after, decision) = note(&disputes[0], "stored");
        store.commit(Some(1), &after, &decision).await.unwrap();
        assert_eq!(store.events(disputes[0].id).await.unwrap().len(), 2, "{}", db.label);
    }
}

#[tokio::test]
async fn concurrent_deliveries_store_each_event_once_as_serial_inserts_would() {
    use verdict_store::{InboxInsert, InboxLease};
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let row = |event_id: String| pending_row(&event_id, "dp_inbox");
        // 60 deliveries of two events each, over 30 distinct event ids: every id arrives four times.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..60 {
            let store = store.clone();
            let rows = vec![row(format!("evt_{}", n % 30)), row(format!("evt_{}", (n + 15) % 30))];
            tasks.spawn(async move {
                let lease = InboxLease {
                    token: uuid::Uuid::now_v7(),
                    until: t0() + chrono::Duration::seconds(20),
                };
                store.insert_notifications(&rows, lease).await.unwrap()
            });
        }
        let mut inserted = 0;
        let mut retaken = 0;
        while let Some(done) = tasks.join_next().await {
            for insert in done.unwrap() {
                match insert {
                    InboxInsert::Inserted(_) => inserted += 1,
                    InboxInsert::Retaken(_) => retaken += 1,
                    InboxInsert::Duplicate => panic!("{}: a pending row is retaken, never a duplicate", db.label),
                }
            }
        }
        assert_eq!((inserted, retaken), (30, 90), "{}", db.label);
        for n in 0..30 {
            let rows = store
                .find_notifications("stripe", Some(&format!("evt_{n}")))
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{}: evt_{n}", db.label);
        }
    }
}

/// Asserts that a claimed row's dispute is the one it names, as stored (none for a row of no dispute); the id.
async fn claimed_as_stored(
    store: &Store,
    label: &str,
    dispute_id: Option<uuid::Uuid>,
    dispute: &Option<Dispute>,
) -> Option<uuid::Uuid> {
    let Some(id) = dispute_id else {
        assert!(dispute.is_none(), "{label}");
        return None;
    };
    let dispute = dispute.as_ref().expect("the claimed row's dispute");
    assert_eq!(dispute.id.as_uuid(), id, "{label}");
    assert_eq!(Some(dispute), store.load(dispute.id).await.unwrap().as_ref(), "{label}");
    Some(id)
}

/// Steps are claimed with their disputes (one statement on PostgreSQL): each claimed step comes with its
/// dispute as stored, a step of no dispute with none, and a claimed step is not claimed again within its lease.
#[tokio::test]
async fn a_claim_brings_each_steps_dispute() {
    use verdict_store::NewStep;
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let mut opened = Vec::new();
        for i in 0..3 {
            // An accepted dispute has a step: the acceptance at the processor.
            let dispute = open_in(&store, &format!("dp_claim_{i}"), Some(10)).await;
            let triaged = act(&store, &dispute, Action::Triage { queue: None }).await.unwrap();
            opened.push(act(&store, &triaged, Action::Accept).await.unwrap());
        }
        // A step of no dispute, enqueued as one step's follow-up.
        let later = chrono::Utc::now() + chrono::Duration::days(400);
        let lease = chrono::Duration::seconds(30);
        let first = store.claim_steps_with_disputes("w0", later, 1, lease).await.unwrap();
        let [(step, Some(_))] = &first[..] else {
            panic!("{}: {first:?}", db.label);
        };
        let leased = Leased {
            id: step.id,
            lease_token: step.lease_token,
        };
        let follow_up = NewStep {
            dispute_id: None,
            kind: "digest".into(),
            idempotency_key: "claim-test-no-dispute".into(),
            payload: None,
        };
        assert!(
            store
                .complete_step_with_steps(leased, &[follow_up], later)
                .await
                .unwrap()
        );
        let claimed = store.claim_steps_with_disputes("w1", later, 100, lease).await.unwrap();
        let mut with_dispute = 0;
        for (step, dispute) in &claimed {
            if claimed_as_stored(&store, db.label, step.dispute_id, dispute)
                .await
                .is_some()
            {
                with_dispute += 1;
            }
            assert_eq!(step.attempts, 1, "{}", db.label);
        }
        assert!(with_dispute >= opened.len() - 1, "{}: {with_dispute}", db.label);
        assert!(claimed.iter().any(|(s, _)| s.dispute_id.is_none()), "{}", db.label);
        let again = store.claim_steps_with_disputes("w2", later, 100, lease).await.unwrap();
        assert!(again.is_empty(), "{}: claimed twice within the lease", db.label);
    }
}

/// Due timers are claimed with their disputes the same way, in due order: each timer with its dispute as
/// stored, a timer of no dispute with none, and none claimed twice within its lease.
#[tokio::test]
async fn a_timer_claim_brings_each_timers_dispute_in_due_order() {
    use verdict_store::NewTimer;
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        for i in 0..3 {
            open_in(&store, &format!("dp_timer_claim_{i}"), Some(10)).await;
        }
        let later = chrono::Utc::now() + chrono::Duration::days(400);
        store
            .insert_timers(
                &[NewTimer {
                    dispute_id: None,
                    kind: "custom_report".into(),
                    due_at: t0(),
                    payload: None,
                }],
                t0(),
            )
            .await
            .unwrap();
        let lease = chrono::Duration::seconds(30);
        let claimed = store
            .claim_due_timers_with_disputes("w1", later, 1_000, lease)
            .await
            .unwrap();
        assert!(claimed.len() > 3, "{}: {} timers", db.label, claimed.len());
        let mut disputes = std::collections::HashSet::new();
        for (timer, dispute) in &claimed {
            disputes.extend(claimed_as_stored(&store, db.label, timer.dispute_id, dispute).await);
            assert_eq!(timer.attempts, 1, "{}", db.label);
        }
        assert_eq!(disputes.len(), 3, "{}", db.label);
        assert!(claimed.iter().any(|(t, _)| t.kind == "custom_report"), "{}", db.label);
        assert!(
            claimed
                .windows(2)
                .all(|w| (w[0].0.due_at, w[0].0.id) <= (w[1].0.due_at, w[1].0.id)),
            "{}: in due order",
            db.label
        );
        let again = store
            .claim_due_timers_with_disputes("w2", later, 1_000, lease)
            .await
            .unwrap();
        assert!(again.is_empty(), "{}: claimed twice within the lease", db.label);
    }
}

/// A delivery that fits one insert is stored by that statement alone; when taking over one of its events
/// (stored before, still pending) fails after it, the delivery is refused although its new rows are stored,
/// and its redelivery takes every row over: nothing is lost or stored twice.
#[tokio::test]
async fn a_failed_take_over_refuses_its_delivery_and_the_redelivery_takes_its_rows_over() {
    use verdict_store::{InboxInsert, InboxLease, InboxStatus};
    for db in test_databases().await.unwrap() {
        if db.label != "postgres" {
            continue;
        }
        let store = db.store().await.unwrap();
        let row = |event_id: &str| pending_row(event_id, "dp_take_over");
        let lease = || InboxLease {
            token: uuid::Uuid::now_v7(),
            until: t0() + chrono::Duration::seconds(20),
        };
        let first = store.insert_notifications(&[row("evt_held")], lease()).await.unwrap();
        assert!(matches!(first[..], [InboxInsert::Inserted(_)]));
        store
            .execute_unprepared(
                "CREATE FUNCTION refuse_take_over() RETURNS trigger AS $$ BEGIN \
                 IF NEW.event_id = 'evt_held' THEN RAISE EXCEPTION 'take-over refused'; END IF; RETURN NEW; \
                 END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_take_over BEFORE UPDATE ON notifications \
                 FOR EACH ROW EXECUTE FUNCTION refuse_take_over()",
            )
            .await
            .unwrap();

        let refused = store
            .insert_notifications(&[row("evt_held"), row("evt_new")], lease())
            .await;
        assert!(refused.is_err(), "{refused:?}");
        let stored = store.find_notifications("stripe", Some("evt_new")).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].status, InboxStatus::Pending);

        store
            .execute_unprepared("DROP TRIGGER refuse_take_over ON notifications")
            .await
            .unwrap();
        let again = store
            .insert_notifications(&[row("evt_held"), row("evt_new")], lease())
            .await
            .unwrap();
        assert!(
            matches!(again[..], [InboxInsert::Retaken(_), InboxInsert::Retaken(_)]),
            "{again:?}"
        );
        for event in ["evt_held", "evt_new"] {
            assert_eq!(store.find_notifications("stripe", Some(event)).await.unwrap().len(), 1);
        }
    }
}
