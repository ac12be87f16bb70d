//! Stripe reconciliation against a local fake API (paging, bearer key, duplicates, failures), and daily
//! digests stored in the mailbox once per queue and day; on SQLite and (when configured) PostgreSQL.

use std::sync::Arc;

use chrono::Duration;
use serde_json::{Value, json};
use verdict_domain::{Locale, Processor, Stage, Status};
use verdict_engine::Clock;
use verdict_engine::effects::StripeReconciler;
use verdict_engine::schedules::{Job, MailboxDigests, Reconciler, ScheduleConfig, Scheduler};
use verdict_engine::worker::{TimerHandler, Worker, WorkerOptions};
use verdict_store::{MailboxChannel, NewTimer};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::effects::{Harness, harnesses, t0};

fn stripe_dispute(id: &str, status: &str, amount: i64, reason: &str, created_days_ago: i64) -> Value {
    json!({
        "id": id,
        "object": "dispute",
        "amount": amount,
        "currency": "eur",
        "charge": format!("ch_{id}"),
        "payment_intent": format!("pi_{id}"),
        "reason": reason,
        "status": status,
        "created": (t0() - Duration::days(created_days_ago)).timestamp(),
        "evidence_details": {"due_by": (t0() + Duration::days(7)).timestamp()},
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "network_reason_code": "10.4"}},
    })
}

/// Page 1: two disputes, `has_more`; page 2 (after `dp_rec_b`): one dispute, then the end.
async fn two_pages(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1/disputes"))
        .and(query_param("limit", "100"))
        .and(query_param_is_missing("starting_after"))
        .and(header("Authorization", "Bearer sk_test_rec"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "has_more": true,
            "data": [
                stripe_dispute("dp_rec_a", "needs_response", 4_990, "fraudulent", 1),
                stripe_dispute("dp_rec_b", "lost", 12_000, "product_not_received", 3),
            ],
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/disputes"))
        .and(query_param("limit", "100"))
        .and(query_param("starting_after", "dp_rec_b"))
        .and(header("Authorization", "Bearer sk_test_rec"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "has_more": false,
            "data": [stripe_dispute("dp_rec_c", "under_review", 700, "duplicate", 10)],
        })))
        .mount(server)
        .await;
}

async fn stripe_dispute_of(h: &Harness, id: &str) -> Option<verdict_domain::Dispute> {
    h.engine
        .store()
        .find_by_processor_id(Processor::Stripe, id)
        .await
        .unwrap()
}

#[tokio::test]
async fn stripe_reconciliation_pages_through_and_creates_missed_disputes_once() {
    for h in harnesses().await {
        let label = h.label;
        let server = MockServer::start().await;
        two_pages(&server).await;
        let reconciler = StripeReconciler::new(&server.uri(), "sk_test_rec").unwrap();
        let now = h.engine.clock().now();
        let touched = reconciler.reconcile(&h.engine, None, now).await.unwrap();
        assert_eq!(touched, 3, "{label}");
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2, "{label}: two pages");

        let a = stripe_dispute_of(&h, "dp_rec_a").await.expect("dp_rec_a created");
        assert!(a.status.is_open(), "{label}: {:?}", a.status);
        assert_eq!(a.amount.minor_units(), 4_990, "{label}");
        assert_eq!(a.amount.currency().code(), "EUR", "{label}");
        assert_eq!(a.reason_code.code(), "10.4", "{label}");
        let b = stripe_dispute_of(&h, "dp_rec_b").await.expect("dp_rec_b created");
        assert_eq!(b.status, Status::Lost, "{label}");
        assert_eq!(b.amount.minor_units(), 12_000, "{label}");
        let c = stripe_dispute_of(&h, "dp_rec_c").await.expect("dp_rec_c created");
        assert_eq!(c.amount.minor_units(), 700, "{label}");
        let versions = [a.version, b.version, c.version];

        // Nothing changed at Stripe: every synthetic event is a duplicate.
        let stats = h.engine.ingest_stats();
        let again = reconciler
            .reconcile(&h.engine, Some(now), now + Duration::minutes(15))
            .await
            .unwrap();
        assert_eq!(again, 0, "{label}");
        assert_eq!(h.engine.ingest_stats().duplicates, stats.duplicates + 3, "{label}");
        for (id, version) in ["dp_rec_a", "dp_rec_b", "dp_rec_c"].into_iter().zip(versions) {
            assert_eq!(
                stripe_dispute_of(&h, id).await.unwrap().version,
                version,
                "{label}: {id}"
            );
        }
    }
}

#[tokio::test]
async fn stripe_reconciliation_moves_a_known_dispute_the_webhook_missed() {
    for h in harnesses().await {
        let label = h.label;
        let server = MockServer::start().await;
        let listed = |status: &str| json!({"object": "list", "has_more": false, "data": [stripe_dispute("dp_rec_m", status, 2_500, "fraudulent", 2)]});
        Mock::given(method("GET"))
            .and(path("/v1/disputes"))
            .respond_with(ResponseTemplate::new(200).set_body_json(listed("needs_response")))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/disputes"))
            .respond_with(ResponseTemplate::new(200).set_body_json(listed("won")))
            .mount(&server)
            .await;
        let reconciler = StripeReconciler::new(&server.uri(), "sk_test_rec").unwrap();
        let now = h.engine.clock().now();
        assert_eq!(reconciler.reconcile(&h.engine, None, now).await.unwrap(), 1, "{label}");
        assert!(
            stripe_dispute_of(&h, "dp_rec_m").await.unwrap().status.is_open(),
            "{label}"
        );
        assert_eq!(
            reconciler.reconcile(&h.engine, Some(now), now).await.unwrap(),
            1,
            "{label}"
        );
        assert_eq!(
            stripe_dispute_of(&h, "dp_rec_m").await.unwrap().status,
            Status::Won,
            "{label}"
        );
    }
}

#[tokio::test]
async fn stripe_reconciliation_stops_at_disputes_older_than_the_lookback() {
    for h in harnesses().await {
        let label = h.label;
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/disputes"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "object": "list",
                "has_more": true,
                "data": [
                    stripe_dispute("dp_rec_new", "needs_response", 100, "fraudulent", 5),
                    stripe_dispute("dp_rec_old", "needs_response", 100, "fraudulent", 400),
                ],
            })))
            .expect(1)
            .mount(&server)
            .await;
        let reconciler = StripeReconciler::new(&server.uri(), "sk_test_rec").unwrap();
        let now = h.engine.clock().now();
        assert_eq!(
            reconciler.reconcile(&h.engine, Some(now), now).await.unwrap(),
            1,
            "{label}"
        );
        assert!(stripe_dispute_of(&h, "dp_rec_old").await.is_none(), "{label}");
    }
}

#[tokio::test]
async fn a_stripe_server_error_fails_the_reconciliation_and_stores_nothing() {
    for h in harnesses().await {
        let label = h.label;
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/disputes"))
            .and(query_param_is_missing("starting_after"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "object": "list",
                "has_more": true,
                "data": [stripe_dispute("dp_rec_x", "needs_response", 100, "fraudulent", 1)],
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/disputes"))
            .and(query_param("starting_after", "dp_rec_x"))
            .respond_with(
                ResponseTemplate::new(500).set_body_json(json!({"error": {"type": "api_error", "message": "secret"}})),
            )
            .mount(&server)
            .await;
        let reconciler = StripeReconciler::new(&server.uri(), "sk_test_rec").unwrap();
        let err = reconciler
            .reconcile(&h.engine, None, h.engine.clock().now())
            .await
            .unwrap_err();
        assert!(err.starts_with("transient:"), "{label}: {err}");
        assert!(err.contains("500"), "{label}: {err}");
        assert!(!err.contains("secret"), "{label}: {err}");
        assert!(stripe_dispute_of(&h, "dp_rec_x").await.is_none(), "{label}");
        assert_eq!(h.engine.ingest_stats().stored, 0, "{label}");
    }
}

#[tokio::test]
async fn the_reconcile_schedule_runs_the_stripe_reconciler() {
    for h in harnesses().await {
        let label = h.label;
        let server = MockServer::start().await;
        two_pages(&server).await;
        let configs = vec![ScheduleConfig {
            name: "reconcile".into(),
            cron: "0 */15 * * * *".into(),
            time_zone: "UTC".into(),
            job: Job::Reconcile,
        }];
        let reconciler = StripeReconciler::new(&server.uri(), "sk_test_rec").unwrap();
        let scheduler = Scheduler::new(h.engine.clone(), &configs, Duration::hours(72))
            .unwrap()
            .with_reconcilers(vec![std::sync::Arc::new(reconciler)]);
        scheduler.ensure().await.unwrap();
        h.clock.set(t0() + Duration::minutes(30));
        assert_eq!(
            scheduler.run_due("w").await.unwrap(),
            vec!["reconcile".to_owned()],
            "{label}"
        );
        assert!(stripe_dispute_of(&h, "dp_rec_c").await.is_some(), "{label}");
    }
}

#[tokio::test]
async fn mailbox_digests_store_one_message_per_queue_and_day() {
    for h in harnesses().await {
        let label = h.label;
        // Two disputes in two queues (one triaged, one not), due within the window.
        h.dispute(
            "dp_dig_1",
            verdict_domain::Locale::En,
            verdict_domain::Stage::Chargeback,
            vec![],
        )
        .await;
        let triaged = h
            .dispute(
                "dp_dig_2",
                verdict_domain::Locale::En,
                verdict_domain::Stage::Chargeback,
                vec![verdict_domain::Action::Triage {
                    queue: Some(verdict_domain::Queue::Seller),
                }],
            )
            .await;
        let queue = triaged.queue.expect("triaged into a queue").as_str().to_owned();
        let scheduler = Scheduler::new(h.engine.clone(), &[], Duration::days(30))
            .unwrap()
            .with_digest_sink(std::sync::Arc::new(MailboxDigests::new(h.engine.store().clone())));
        let now = h.engine.clock().now();
        assert_eq!(scheduler.digest(now).await.unwrap(), 2, "{label}");
        let digests: Vec<_> = h
            .engine
            .store()
            .mailbox(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.message_id.starts_with("digest:"))
            .collect();
        assert_eq!(digests.len(), 2, "{label}: {digests:?}");
        let mut recipients: Vec<_> = digests.iter().map(|m| m.recipient.clone()).collect();
        recipients.sort();
        let mut expected = vec![queue.clone(), "untriaged".to_owned()];
        expected.sort();
        assert_eq!(recipients, expected, "{label}");
        assert!(digests.iter().all(|m| m.channel == MailboxChannel::Queue), "{label}");
        let seller = h
            .engine
            .store()
            .mail_by_message_id(&MailboxDigests::message_id(&queue, now))
            .await
            .unwrap()
            .expect("the seller digest");
        assert!(seller.body.contains(&triaged.id.to_string()), "{label}");

        // The same day again: nothing new.
        assert_eq!(scheduler.digest(now + Duration::hours(2)).await.unwrap(), 2, "{label}");
        let count = h
            .engine
            .store()
            .mailbox(100)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.message_id.starts_with("digest:"))
            .count();
        assert_eq!(count, 2, "{label}");
    }
}

#[test]
fn a_synthetic_event_is_closed_for_final_statuses() {
    let now = t0();
    let lost =
        verdict_engine::effects::synthetic_event(&stripe_dispute("dp_s", "lost", 10, "fraudulent", 1), now).unwrap();
    assert_eq!(lost["id"], "reconcile_dp_s_lost_10");
    assert_eq!(lost["type"], "charge.dispute.closed");
    let open =
        verdict_engine::effects::synthetic_event(&stripe_dispute("dp_s", "needs_response", 10, "fraudulent", 1), now)
            .unwrap();
    assert_eq!(open["type"], "charge.dispute.updated");
}

/// A reconciliation that blocks until released, and says when it started.
struct Blocking {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Reconciler for Blocking {
    fn name(&self) -> &str {
        "blocking"
    }

    async fn reconcile(
        &self,
        _engine: &verdict_engine::Engine,
        _since: Option<chrono::DateTime<chrono::Utc>>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, String> {
        self.started.notify_one();
        self.release.notified().await;
        Ok(0)
    }
}

/// Counts the probe timers it fires.
#[derive(Default)]
struct Probe(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl TimerHandler for Probe {
    async fn fire(&self, _timer: &verdict_store::ClaimedTimer) -> Result<(), String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_blocked_reconciliation_does_not_hold_up_the_replicas_timers_and_steps() {
    for h in harnesses().await {
        let label = h.label;
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let configs = vec![ScheduleConfig {
            name: "reconcile_every_second".into(),
            cron: "* * * * * *".into(),
            time_zone: "UTC".into(),
            job: Job::Reconcile,
        }];
        let scheduler = Scheduler::new(h.engine.clone(), &configs, Duration::hours(72))
            .unwrap()
            .with_reconcilers(vec![Arc::new(Blocking {
                started: started.clone(),
                release: release.clone(),
            })]);
        scheduler.ensure().await.unwrap();
        h.clock.advance(Duration::seconds(2));
        let probe = Arc::new(Probe::default());
        let effects = verdict_engine::effects::Effects::local(h.engine.store().clone(), h.clock.clone());
        let worker = Worker::new(h.engine.clone(), Arc::new(effects), WorkerOptions::default())
            .with_scheduler(scheduler)
            .with_timer_handler("probe", probe.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let pool = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        tokio::time::timeout(std::time::Duration::from_secs(10), started.notified())
            .await
            .unwrap_or_else(|_| panic!("{label}: the reconciliation tick never started"));

        // The reconciliation now hangs (a slow Stripe). Work for the same replica arrives meanwhile.
        let now = h.clock.now();
        h.engine
            .store()
            .insert_timers(
                &[NewTimer {
                    dispute_id: None,
                    kind: "probe".into(),
                    due_at: now,
                    payload: None,
                }],
                now,
            )
            .await
            .unwrap();
        let assigned = h
            .dispute(
                "blk_assign",
                Locale::En,
                Stage::Chargeback,
                vec![verdict_domain::Action::Assign {
                    assignee: Some("jane".into()),
                }],
            )
            .await;
        let mut done = false;
        for _ in 0..600 {
            let steps = h.engine.store().steps(assigned.id).await.unwrap();
            let fired = probe.0.load(std::sync::atomic::Ordering::SeqCst);
            if fired == 1 && !steps.is_empty() && steps.iter().all(|s| s.status == "succeeded") {
                done = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(done, "{label}: timers and steps waited for the blocked reconciliation");

        release.notify_one();
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), pool)
            .await
            .unwrap_or_else(|_| panic!("{label}: the pool stops"))
            .unwrap();
    }
}
