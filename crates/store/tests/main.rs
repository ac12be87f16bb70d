//! Store tests against a fresh SQLite database and, when configured, a fresh PostgreSQL database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, CustomerEmail, CustomerName, Dispute, DisputeId, Locale,
    Money, NewDispute, Processor, ReasonCode, Stage, Status, decide, open, replay,
};
use verdict_store::testing::test_databases;
use verdict_store::{DisputeFilter, Fence, Leased, Store, StoreError};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
}

fn new_dispute(pid: &str, due_in_days: Option<i64>) -> NewDispute {
    NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: pid.into(),
        payment_reference: format!("pi_{pid}"),
        order_reference: Some("order-9".into()),
        seller_id: Some("seller-a".into()),
        customer: Customer {
            name: Some(CustomerName::parse("Lucia Rossi").unwrap()),
            email: Some(CustomerEmail::parse("lucia@example.it").unwrap()),
            locale: Locale::It,
        },
        amount: Money::new(45_900, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap(),
        reason_code_raw: "13.1".into(),
        stage: Stage::Chargeback,
        due_by: due_in_days.map(|d| t0() + Duration::days(d)),
        opened_at: t0(),
    }
}

async fn open_in(store: &Store, pid: &str, due_in_days: Option<i64>) -> Dispute {
    let command = Command::new(
        Actor::analyst("test"),
        Action::Open(Box::new(new_dispute(pid, due_in_days))),
    );
    let decision = open(DisputeId::new_v7(), &command, t0()).unwrap();
    let dispute = replay(&decision.events).unwrap();
    store.commit(None, &dispute, &decision).await.unwrap();
    dispute
}

/// A pending Stripe notification opening `dispute`, as the inbox stores it.
fn pending_row(event_id: &str, dispute: &str) -> verdict_store::NewNotification {
    verdict_store::NewNotification {
        processor: "stripe".into(),
        event_id: event_id.into(),
        event_type: "charge.dispute.created".into(),
        kind: Some("chargeback_opened".into()),
        processor_dispute_id: Some(dispute.into()),
        received_at: t0(),
        occurred_at: Some(t0()),
        body: b"{}".to_vec(),
        notification: None,
        status: verdict_store::InboxStatus::Pending,
        note: None,
    }
}

/// The column `v` of the one row `sql` answers.
async fn scalar<T: sea_orm::TryGetable>(store: &Store, sql: &str) -> T {
    scalar_on(store.db(), sql).await
}

/// [`scalar`] on a given connection or transaction.
async fn scalar_on<T: sea_orm::TryGetable>(conn: &impl ConnectionTrait, sql: &str) -> T {
    conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap()
        .try_get::<T>("", "v")
        .unwrap()
}

async fn act(store: &Store, dispute: &Dispute, action: Action) -> Result<Dispute, StoreError> {
    let command = Command::new(Actor::analyst("test"), action).because("test");
    let decision = decide(dispute, &command, t0() + Duration::hours(1)).unwrap();
    let mut after = dispute.clone();
    for event in &decision.events {
        verdict_domain::apply(&mut after, event);
    }
    store.commit(Some(dispute.version), &after, &decision).await?;
    Ok(after)
}

#[tokio::test]
async fn a_committed_dispute_loads_back_with_its_history() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_round_trip", Some(10)).await;
        let triaged = act(&store, &dispute, Action::Triage { queue: None }).await.unwrap();
        let loaded = store.load(dispute.id).await.unwrap().unwrap();
        assert_eq!(loaded, triaged, "{}", db.label);
        assert_eq!(loaded.customer.name.as_ref().map(|n| n.expose()), Some("Lucia Rossi"));
        let events = store.events(dispute.id).await.unwrap();
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.version, e.kind.as_str(), e.to_status.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![(1, "opened", Some("notified")), (2, "triaged", Some("triaged"))],
            "{}",
            db.label
        );
        assert_eq!(events[1].from_status.as_deref(), Some("notified"));
        assert_eq!(events[1].actor, "analyst:test");
    }
}

#[tokio::test]
async fn of_concurrent_writers_at_one_version_exactly_one_commits() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = Arc::new(open_in(&store, "dp_race", Some(10)).await);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (store, dispute) = (store.clone(), dispute.clone());
            tasks.push(tokio::spawn(async move {
                act(
                    &store,
                    &dispute,
                    Action::AddNote {
                        note: format!("writer {i}"),
                    },
                )
                .await
            }));
        }
        let mut committed = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => committed += 1,
                Err(StoreError::Conflict(id)) => {
                    assert_eq!(id, dispute.id);
                    conflicts += 1
                }
                Err(other) => panic!("{}: unexpected {other:?}", db.label),
            }
        }
        assert_eq!((committed, conflicts), (1, 7), "{}", db.label);
        assert_eq!(store.load(dispute.id).await.unwrap().unwrap().version, 2);
        assert_eq!(store.events(dispute.id).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn a_stale_writer_changes_nothing() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_stale", Some(10)).await;
        act(&store, &dispute, Action::Triage { queue: None }).await.unwrap();
        let before = store.load(dispute.id).await.unwrap();
        let err = act(&store, &dispute, Action::Accept).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err:?}", db.label);
        assert_eq!(store.load(dispute.id).await.unwrap(), before);
        assert_eq!(store.events(dispute.id).await.unwrap().len(), 2);
        assert!(
            store.steps(dispute.id).await.unwrap().is_empty(),
            "the rejected accept left no step"
        );
    }
}

#[tokio::test]
async fn timers_are_written_with_the_dispute_and_cancelled_when_it_closes() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_timers", Some(10)).await;
        let timers = store.timers(dispute.id).await.unwrap();
        let kinds: Vec<_> = timers.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec!["reminder_72h", "reminder_24h", "reminder_4h", "act_by", "deadline"],
            "{}",
            db.label
        );
        assert_eq!(timers[4].due_at, t0() + Duration::days(10));
        let live = store.live_queue_counts(t0()).await.unwrap();
        assert_eq!((live.timers_pending, live.timers_due), (5, 0), "{}", db.label);
        let live = store.live_queue_counts(t0() + Duration::days(11)).await.unwrap();
        assert_eq!((live.timers_pending, live.timers_due), (5, 5), "{}", db.label);
        let triaged = act(&store, &dispute, Action::Triage { queue: None }).await.unwrap();
        act(&store, &triaged, Action::Accept).await.unwrap();
        let timers = store.timers(dispute.id).await.unwrap();
        assert!(
            timers.iter().all(|t| t.status == "cancelled"),
            "{}: {timers:?}",
            db.label
        );
        let steps = store.steps(dispute.id).await.unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(
            (steps[0].kind.as_str(), steps[0].status.as_str()),
            ("accept_at_processor", "pending")
        );
        let live = store.live_queue_counts(t0()).await.unwrap();
        assert_eq!(
            (live.timers_pending, live.steps_pending, live.steps_dead),
            (0, 1, 0),
            "{}",
            db.label
        );
    }
}

/// A timer cancelled while a worker holds it (its dispute closed meanwhile) ends that lease: the holder can
/// neither complete, renew nor release it, and it stays cancelled with no lease left on it.
#[tokio::test]
async fn a_timer_cancelled_while_leased_is_fenced_off_from_its_holder() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_cancel_leased", Some(10)).await;
        let claimed = store
            .claim_due_timers("w1", t0() + Duration::days(11), 10, Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 5, "{}", db.label);
        let triaged = act(&store, &dispute, Action::Triage { queue: None }).await.unwrap();
        act(&store, &triaged, Action::Accept).await.unwrap();
        let leased: Vec<Leased> = claimed
            .iter()
            .map(|t| Leased {
                id: t.id,
                lease_token: t.lease_token,
            })
            .collect();
        let done = store.complete_timers(&leased, t0()).await.unwrap();
        assert!(done.completed.is_empty(), "{}: {done:?}", db.label);
        assert_eq!(done.stale.len(), 5, "{}", db.label);
        let fence = Fence::Timer(leased[0]);
        assert!(!store.renew_lease(fence, t0() + Duration::days(12)).await.unwrap());
        assert!(!store.release(fence).await.unwrap());
        assert!(!store.retry_timer(leased[1], Duration::minutes(1), t0()).await.unwrap());
        let timers = store.timers(dispute.id).await.unwrap();
        assert!(
            timers.iter().all(|t| t.status == "cancelled"),
            "{}: {timers:?}",
            db.label
        );
        let leases: i64 = scalar(
            &store,
            "SELECT COUNT(*) AS v FROM timers WHERE lease_token IS NOT NULL OR locked_by IS NOT NULL",
        )
        .await;
        assert_eq!(leases, 0, "{}", db.label);
    }
}

#[tokio::test]
async fn the_same_processor_dispute_cannot_be_opened_twice() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        open_in(&store, "dp_twice", None).await;
        let command = Command::new(
            Actor::analyst("t"),
            Action::Open(Box::new(new_dispute("dp_twice", None))),
        );
        let decision = open(DisputeId::new_v7(), &command, t0()).unwrap();
        let err = store
            .commit(None, &replay(&decision.events).unwrap(), &decision)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::DuplicateDispute { .. }),
            "{}: {err:?}",
            db.label
        );
    }
}

/// Every page of `filter` in due order, `page` at a time, through `list`.
async fn list_all(store: &Store, filter: &DisputeFilter, page: u64) -> Vec<DisputeId> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let listed = store.list(filter, page, after).await.unwrap();
        seen.extend(listed.items.iter().map(|(_, d)| d.id));
        after = listed.items.last().map(|(c, _)| *c);
        if !listed.has_next_page {
            return seen;
        }
    }
}

/// Every page of `filter` in ascending due order through `search`, read forwards or backwards.
async fn search_all(store: &Store, filter: &DisputeFilter, forwards: bool) -> Vec<DisputeId> {
    use verdict_store::{DisputeSort, PageWindow, SortDirection};
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let window = if forwards {
            PageWindow::Forward {
                first: 1,
                after: cursor,
            }
        } else {
            PageWindow::Backward {
                last: 2,
                before: cursor,
            }
        };
        let page = store
            .search(filter, DisputeSort::DueBy, SortDirection::Ascending, window)
            .await
            .unwrap();
        let ids = page.items.iter().map(|(_, d)| d.id);
        if forwards {
            seen.extend(ids);
            cursor = page.items.last().map(|(c, _)| *c);
            if !page.has_next_page {
                return seen;
            }
        } else {
            seen.splice(0..0, ids);
            cursor = page.items.first().map(|(c, _)| *c);
            if !page.has_previous_page {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn queue_pages_follow_due_date_then_id_and_respect_filters() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let mut ids = Vec::new();
        for (i, due) in [Some(5), None, Some(1), Some(3), Some(3), Some(20)]
            .into_iter()
            .enumerate()
        {
            ids.push((due, open_in(&store, &format!("dp_page_{i}"), due).await.id));
        }
        let mut expected = ids.clone();
        expected.sort_by_key(|(due, id)| (due.unwrap_or(i64::MAX), *id));
        let expected: Vec<_> = expected.into_iter().map(|(_, id)| id).collect();
        let filter = DisputeFilter::default();
        assert_eq!(list_all(&store, &filter, 2).await, expected, "{}", db.label);
        assert_eq!(store.count(&filter).await.unwrap(), 6);
        let due_soon = DisputeFilter {
            due: vec![verdict_store::TimeWindow {
                from: None,
                to: Some(t0() + Duration::days(4)),
            }],
            ..Default::default()
        };
        assert_eq!(store.count(&due_soon).await.unwrap(), 3);
        let triaged = DisputeFilter {
            statuses: vec![Status::Triaged],
            ..Default::default()
        };
        assert_eq!(store.count(&triaged).await.unwrap(), 0);
    }
}

/// A status's disputes in due order come from `dispute_statuses`, which triggers keep in step with every
/// opening, status change and due-date change of the dispute rows.
#[tokio::test]
async fn one_status_reads_in_due_order_through_every_change() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let mut triaged = Vec::new();
        for (i, due) in [Some(5), None, Some(1), Some(3), Some(20), Some(4)]
            .into_iter()
            .enumerate()
        {
            let dispute = open_in(&store, &format!("dp_status_{i}"), due).await;
            if i % 2 == 1 {
                triaged.push(act(&store, &dispute, Action::Triage { queue: None }).await.unwrap());
            }
        }
        // Triaged: due none, 3 and 4 days; the 4-day one moves to 2 days, and a notified one leaves the set.
        let moved = act(
            &store,
            &triaged[2],
            Action::ChangeDueBy {
                due_by: Some(t0() + Duration::days(2)),
            },
        )
        .await
        .unwrap();
        let expected = vec![moved.id, triaged[1].id, triaged[0].id];
        let filter = DisputeFilter {
            statuses: vec![Status::Triaged],
            ..Default::default()
        };
        assert_eq!(store.count(&filter).await.unwrap(), 3, "{}", db.label);
        assert_eq!(search_all(&store, &filter, true).await, expected, "{}", db.label);
        assert_eq!(search_all(&store, &filter, false).await, expected, "{}", db.label);
        assert_eq!(list_all(&store, &filter, 2).await, expected, "{}", db.label);
        let accepted = act(&store, &moved, Action::Accept).await.unwrap();
        assert_eq!(accepted.status, Status::Accepted);
        assert_eq!(store.count(&filter).await.unwrap(), 2, "{}", db.label);
        let of_seller = DisputeFilter {
            seller_id: Some("seller-a".into()),
            ..filter.clone()
        };
        assert_eq!(store.count(&of_seller).await.unwrap(), 2, "{}", db.label);
        let out_of_step: i64 = scalar(
            &store,
            "SELECT COUNT(*) AS v FROM disputes d LEFT JOIN dispute_statuses s ON s.dispute_id = d.id \
             WHERE s.dispute_id IS NULL OR s.status <> d.status OR s.sort_due_at <> d.sort_due_at \
             OR s.opened_at <> d.opened_at OR s.updated_at <> d.updated_at",
        )
        .await;
        assert_eq!(out_of_step, 0, "{}", db.label);
        let rows: i64 = scalar(&store, "SELECT COUNT(*) AS v FROM dispute_statuses").await;
        assert_eq!(rows, 6, "{}", db.label);
    }
}

/// The trigger that keeps `dispute_statuses` in step finds its rows by key even when its plan was made while the
/// table was tiny (a PL/pgSQL plan lives as long as its connection): no sequential scan of the table, whose cost
/// would grow with every dispute (migration 28).
#[tokio::test]
async fn the_status_trigger_updates_by_key_on_a_tiny_table() {
    use sea_orm::TransactionTrait;
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        if store.backend() != verdict_store::Backend::Postgres {
            continue;
        }
        // Six changed rows: with three the planner already chose the index for so few.
        for i in 0..6 {
            open_in(&store, &format!("dp_trigger_{i}"), Some(i + 1)).await;
        }
        let txn = store.db().begin().await.unwrap();
        let backend = store.db().get_database_backend();
        txn.execute_raw(Statement::from_string(
            backend,
            "UPDATE disputes SET status = 'triaged', updated_at = updated_at + interval '1 second'",
        ))
        .await
        .unwrap();
        let scans: i64 = scalar_on(
            &txn,
            "SELECT seq_scan AS v FROM pg_stat_xact_user_tables WHERE relname = 'dispute_statuses'",
        )
        .await;
        txn.rollback().await.unwrap();
        assert_eq!(scans, 0, "{}", db.label);
    }
}

#[tokio::test]
async fn replicas_starting_together_migrate_once_without_failing() {
    for db in test_databases().await.unwrap() {
        let (a, b) = (
            Store::connect(&db.url).await.unwrap(),
            Store::connect(&db.url).await.unwrap(),
        );
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        ra.unwrap();
        rb.unwrap();
        open_in(&a, "dp_after_migrate", Some(3)).await;
        assert_eq!(b.count(&DisputeFilter::default()).await.unwrap(), 1, "{}", db.label);
    }
}

#[tokio::test]
async fn a_timer_leased_by_a_dead_replica_does_not_hide_sooner_work() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let dispute = open_in(&store, "dp_next_due", Some(10)).await;
        let timers = store.timers(dispute.id).await.unwrap();
        assert_eq!(
            store.next_due_at().await.unwrap(),
            Some(timers[0].due_at),
            "{}",
            db.label
        );
        // The earliest timer is held by a replica that died, its lease ending long after the next timer.
        let lease_end = "'2099-01-01T00:00:00+00:00'";
        let id = timers[0].id;
        let id_literal = if store.is_postgres() {
            format!("'{id}'")
        } else {
            format!("X'{}'", id.simple())
        };
        store
            .execute_unprepared(&format!(
                "UPDATE timers SET locked_until = {lease_end} WHERE id = {id_literal}"
            ))
            .await
            .unwrap();
        assert_eq!(
            store.next_due_at().await.unwrap(),
            Some(timers[1].due_at),
            "{}",
            db.label
        );
    }
}

/// A claim turns off the wait for its WAL flush for its own commit only: the connection it ran on commits the
/// next write durably again (a leaked setting would make completions and commands asynchronous too).
#[tokio::test]
async fn a_claims_asynchronous_commit_ends_with_the_claim() {
    for db in test_databases().await.unwrap() {
        db.store().await.unwrap();
        // One connection, so the reads below run on the connection that claimed.
        let store = Store::connect_sized(&db.url, 1, 1).await.unwrap();
        open_in(&store, "dp_async_claim", Some(10)).await;
        let claimed = store
            .claim_due_timers("w1", t0() + Duration::days(11), 10, Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 5, "{}", db.label);
        store
            .claim_steps("w1", t0() + Duration::days(11), 10, Duration::minutes(5))
            .await
            .unwrap();
        if store.is_postgres() {
            let setting: String = scalar(&store, "SELECT current_setting('synchronous_commit') AS v").await;
            assert_eq!(setting, "on");
        }
        // The claim itself holds: claimed again at once, nothing is due.
        let again = store
            .claim_due_timers("w2", t0() + Duration::days(11), 10, Duration::minutes(5))
            .await
            .unwrap();
        assert!(again.is_empty(), "{}: {again:?}", db.label);
    }
}

/// Claimers racing over one backlog (on PostgreSQL each picks with `SKIP LOCKED` and updates what it picked by
/// its place in the table) take every due timer exactly once between them and leave none unclaimed.
#[tokio::test]
async fn racing_claimers_take_each_due_timer_exactly_once() {
    use verdict_store::NewTimer;
    for db in test_databases().await.unwrap() {
        let store = Arc::new(db.store().await.unwrap());
        let dispute = open_in(&store, "dp_racing_claims", None).await;
        let backlog: Vec<NewTimer> = (0..1_500)
            .map(|i| NewTimer {
                dispute_id: Some(dispute.id.as_uuid()),
                kind: "follow_up".into(),
                due_at: t0() + Duration::milliseconds(i % 7),
                payload: None,
            })
            .collect();
        store.insert_timers(&backlog, t0()).await.unwrap();
        let claimers: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let batch = store
                            .claim_due_timers(&format!("w{n}"), t0() + Duration::seconds(1), 37, Duration::minutes(5))
                            .await
                            .unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        mine.extend(batch.into_iter().map(|timer| timer.id));
                    }
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for claimer in claimers {
            claimed.extend(claimer.await.unwrap());
        }
        let distinct: std::collections::HashSet<_> = claimed.iter().collect();
        assert_eq!(distinct.len(), claimed.len(), "{}: a timer was claimed twice", db.label);
        assert_eq!(claimed.len(), backlog.len(), "{}", db.label);
        let unclaimed = store
            .claim_due_timers("late", t0() + Duration::seconds(1), 100, Duration::minutes(5))
            .await
            .unwrap();
        assert!(unclaimed.is_empty(), "{}: {unclaimed:?}", db.label);
    }
}

/// The webhook path plans several commands in memory and commits them as one decision with the inbox row's
/// outcome: the timers the opening set are cancelled by the later accept, and a refused commit (stale version)
/// leaves the inbox row pending.
#[tokio::test]
async fn chained_decisions_commit_as_one_with_the_inbox_outcome() {
    use verdict_store::{InboxFinish, InboxInsert, InboxLease, InboxStatus, NewNotification};
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let row = |event_id: &str| NewNotification {
            event_type: "charge.dispute.closed".into(),
            kind: Some("accepted".into()),
            ..pending_row(event_id, "dp_chain")
        };
        let lease = InboxLease {
            token: uuid::Uuid::now_v7(),
            until: t0() + chrono::Duration::seconds(20),
        };
        let inserted = store.insert_notifications(&[row("evt_chain")], lease).await.unwrap();
        let [InboxInsert::Inserted(inbox_id)] = inserted[..] else {
            panic!("{}: not inserted", db.label);
        };
        let command = Command::new(
            Actor::analyst("test"),
            Action::Open(Box::new(new_dispute("dp_chain", Some(10)))),
        );
        let mut plan = open(DisputeId::new_v7(), &command, t0()).unwrap();
        let mut current = replay(&plan.events).unwrap();
        for action in [Action::Triage { queue: None }, Action::Accept] {
            let decision = decide(&current, &Command::new(Actor::analyst("test"), action), t0()).unwrap();
            for event in &decision.events {
                verdict_domain::apply(&mut current, event);
            }
            plan.then(decision);
        }
        let finish = InboxFinish {
            id: inbox_id,
            lease_token: lease.token,
            status: InboxStatus::Applied,
            dispute_id: Some(current.id),
            note: Some("open, triage, accept".into()),
            at: t0(),
            not_before_applied: Some(t0()),
        };

        // Refused as a whole when the version it was planned on is stale: no dispute, the row still pending.
        let stale = store.commit_applying(Some(7), &current, &plan, &finish).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}: {stale:?}", db.label);
        assert!(store.load(current.id).await.unwrap().is_none(), "{}", db.label);
        let rows = store.find_notifications("stripe", Some("evt_chain")).await.unwrap();
        assert_eq!(rows[0].status, InboxStatus::Pending, "{}", db.label);

        store.commit_applying(None, &current, &plan, &finish).await.unwrap();
        let loaded = store.load(current.id).await.unwrap().unwrap();
        assert_eq!((loaded.status, loaded.version), (Status::Accepted, 3), "{}", db.label);
        assert_eq!(store.events(current.id).await.unwrap().len(), 3, "{}", db.label);
        let timers = store.timers(current.id).await.unwrap();
        assert!(
            timers.is_empty(),
            "{}: the accept cancels what the opening set: {timers:?}",
            db.label
        );
        let rows = store.find_notifications("stripe", Some("evt_chain")).await.unwrap();
        assert_eq!(
            (rows[0].status, rows[0].dispute_id),
            (InboxStatus::Applied, Some(current.id)),
            "{}",
            db.label
        );
    }
}

/// A pool of one connection, so that each use gets the connection the one before left behind.
async fn one_connection_pool(url: &str) -> sea_orm::DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options.max_connections(1).min_connections(1);
    sea_orm::Database::connect(options).await.unwrap()
}

/// A connection goes back to the pool clean whatever its user left behind: a transaction dropped before its
/// commit, a statement dropped while the server was still running it (the pool skips its ping on release for
/// a PostgreSQL connection with nothing left to send: vendor/sqlx-core/VERDICT.md).
#[tokio::test]
async fn a_connection_returns_to_the_pool_clean_after_a_dropped_transaction_or_statement() {
    for db in test_databases().await.unwrap() {
        let label = db.label;
        let conn = one_connection_pool(&db.url).await;
        conn.execute_unprepared("CREATE TABLE pool_probe (n INTEGER)")
            .await
            .unwrap();
        {
            let txn = conn.begin().await.unwrap();
            txn.execute_unprepared("INSERT INTO pool_probe VALUES (1)")
                .await
                .unwrap();
        }
        // Rolled back, and not left inside that transaction (its row would be seen here).
        assert_eq!(
            scalar_on::<i64>(&conn, "SELECT COUNT(*) AS v FROM pool_probe").await,
            0,
            "{label}"
        );
        if label == "postgres" {
            let sleeping = conn.execute_unprepared("SELECT pg_sleep(0.3)");
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(50), sleeping)
                    .await
                    .is_err(),
                "{label}"
            );
            assert_eq!(scalar_on::<i32>(&conn, "SELECT 7 AS v").await, 7, "{label}");
        }
        let txn = conn.begin().await.unwrap();
        txn.execute_unprepared("INSERT INTO pool_probe VALUES (2)")
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(
            scalar_on::<i64>(&conn, "SELECT COUNT(*) AS v FROM pool_probe").await,
            1,
            "{label}"
        );
    }
}

/// A transaction whose `BEGIN` was sent but whose answer was never read (a request timed out right then) is
/// rolled back before its connection serves anyone else: the next statement on that connection runs in a
/// transaction of its own (vendor/sqlx-postgres/VERDICT.md).
#[tokio::test]
async fn a_begin_cancelled_in_flight_leaves_no_transaction_open_on_its_connection() {
    let Some(db) = test_databases()
        .await
        .unwrap()
        .into_iter()
        .find(|db| db.label == "postgres")
    else {
        return;
    };
    let conn = one_connection_pool(&db.url).await;
    let mut cancelled_in_flight = 0;
    for i in 0..200 {
        // Polled once: the connection is taken, `BEGIN` written and sent, and the future dropped while it
        // waits for the answer (or earlier, which leaves nothing to clean up).
        if tokio::time::timeout(std::time::Duration::ZERO, conn.begin())
            .await
            .is_err()
        {
            cancelled_in_flight += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        // Two statements outside a transaction are two transactions; inside one a cancelled BEGIN left open,
        // they are the same.
        let first: i64 = scalar_on(&conn, "SELECT txid_current() AS v").await;
        let second: i64 = scalar_on(&conn, "SELECT txid_current() AS v").await;
        assert_ne!(
            first, second,
            "{i}: statements ran inside a transaction a cancelled BEGIN left open"
        );
    }
    assert!(
        cancelled_in_flight > 0,
        "no BEGIN was cancelled: the test tried nothing"
    );
}

/// Triage reads the active policy version for every dispute; the store reuses a read for a moment. An
/// activation through the store is seen at once, one through another replica's store within
/// `ACTIVE_POLICY_REUSED_FOR`.
#[tokio::test]
async fn the_active_policy_is_read_again_after_an_activation() {
    for db in test_databases().await.unwrap() {
        let label = db.label;
        let here = db.store().await.unwrap();
        let elsewhere = db.store().await.unwrap();
        assert_eq!(here.active_policy().await.unwrap(), None, "{label}");
        let first = here.save_policy("# first", None, "lead", t0()).await.unwrap();
        here.activate_policy(first.version, "lead", t0()).await.unwrap();
        let active = |record: Option<verdict_store::PolicyVersionRecord>| record.map(|r| r.version);
        assert_eq!(
            active(here.active_policy().await.unwrap()),
            Some(first.version),
            "{label}"
        );

        let second = elsewhere.save_policy("# second", None, "lead", t0()).await.unwrap();
        elsewhere.activate_policy(second.version, "lead", t0()).await.unwrap();
        assert_eq!(
            active(elsewhere.active_policy().await.unwrap()),
            Some(second.version),
            "{label}"
        );
        tokio::time::sleep(verdict_store::ACTIVE_POLICY_REUSED_FOR).await;
        assert_eq!(
            active(here.active_policy().await.unwrap()),
            Some(second.version),
            "{label}"
        );
    }
}

mod evidence;
mod group_commit;
mod patterns;

/// Reads by key that arrive together are answered by a few shared statements on PostgreSQL (coalesce.rs), each
/// with its own row: a dispute by id or by processor id, none for an unknown key or another processor, an API
/// key only while it is not revoked. SQLite reads each alone, with the same answers.
#[tokio::test]
async fn reads_by_key_asked_together_each_get_their_own_row() {
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let mut disputes = Vec::new();
        for i in 0..20 {
            disputes.push(open_in(&store, &format!("dp_together_{i}"), Some(10)).await);
        }
        let active = verdict_store::hash_token("token-active");
        let revoked = verdict_store::hash_token("token-revoked");
        store.create_api_key("active", "analyst", &active, t0()).await.unwrap();
        store
            .create_api_key("revoked", "analyst", &revoked, t0())
            .await
            .unwrap();
        store
            .revoke_api_key(&verdict_store::KeySelector::Name("revoked".into()), t0())
            .await
            .unwrap();
        let before = store.coalesced_read_statements();

        let by_id = futures::future::join_all((0..100).map(|i| {
            let id = if i % 5 == 4 {
                DisputeId::new_v7()
            } else {
                disputes[i % disputes.len()].id
            };
            let store = &store;
            async move { (id, store.load(id).await.unwrap()) }
        }));
        let by_processor_id = futures::future::join_all((0..100).map(|i| {
            let processor = if i % 7 == 6 {
                Processor::Paypal
            } else {
                Processor::Stripe
            };
            let pid = format!("dp_together_{}", i % 25);
            let store = &store;
            async move {
                let found = store.find_by_processor_id(processor, &pid).await.unwrap();
                (processor, pid, found)
            }
        }));
        let keys = futures::future::join_all((0..100).map(|i| {
            let hash = if i % 2 == 0 { active.clone() } else { revoked.clone() };
            let store = &store;
            async move {
                let found = store.find_api_key(&hash).await.unwrap();
                (hash, found)
            }
        }));
        let (by_id, by_processor_id, keys) = tokio::join!(by_id, by_processor_id, keys);

        for (id, found) in by_id {
            let expected = disputes.iter().find(|d| d.id == id);
            assert_eq!(found.as_ref(), expected, "{}", db.label);
        }
        for (processor, pid, found) in by_processor_id {
            let expected = disputes
                .iter()
                .find(|d| processor == Processor::Stripe && d.processor_dispute_id == pid);
            assert_eq!(found.as_ref(), expected, "{} {processor} {pid}", db.label);
        }
        for (hash, found) in keys {
            let name = found.map(|key| key.name);
            let expected = (hash == active).then(|| "active".to_owned());
            assert_eq!(name, expected, "{}", db.label);
        }
        let statements = store.coalesced_read_statements() - before;
        if db.label == "postgres" {
            assert!(
                (3..=12).contains(&statements),
                "300 reads asked together took {statements} statements"
            );
        } else {
            assert_eq!(statements, 0);
        }
    }
}

/// A commit that adds work due now wakes the workers of another replica, and its change reaches that replica's
/// change listener (both notices are sent by the change feed's insert statement).
#[tokio::test]
async fn a_commit_with_work_due_now_wakes_another_replica() {
    for db in test_databases().await.unwrap() {
        if db.label != "postgres" {
            continue;
        }
        let listening = db.store().await.unwrap();
        let committing = Store::connect(&db.url).await.unwrap();
        let _listener = listening.listen_for_work().await.unwrap().unwrap();
        let woken = listening.work_signal();
        let mut changes = listening.subscribe_changes();
        tokio::spawn(listening.clone().run_change_listener());
        // The listeners are up once a commit's notices reach them; earlier ones would be lost.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        let command = Command::new(
            Actor::analyst("test"),
            Action::Open(Box::new(new_dispute("dp_wakes_another", Some(10)))),
        );
        let mut decision = open(DisputeId::new_v7(), &command, t0()).unwrap();
        decision.steps.push(verdict_domain::StepRequest {
            kind: verdict_domain::StepKind::LinkOrder,
            idempotency_key: "wakes-another".into(),
            payload: None,
        });
        let dispute = replay(&decision.events).unwrap();
        committing.commit(None, &dispute, &decision).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), woken.notified())
            .await
            .expect("the other replica's workers were not woken");
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
            .await
            .expect("the change did not reach the other replica")
            .unwrap();
        assert_eq!(change.dispute.id, dispute.id);
    }
}
