//! The link step: a dispute opened without its seller and customer is linked to its marketplace order by the
//! references its notification carried, through the worker and the real step handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, TimeZone, Utc};
use verdict_domain::facts::{OrderFacts, ReferenceKind, TaggedReference};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, Dispute, Locale, Money, NewDispute, Processor, ReasonCode,
    Stage,
};
use verdict_engine::effects::Effects;
use verdict_engine::worker::{Worker, WorkerOptions};
use verdict_engine::{Engine, ManualClock};
use verdict_facts::{FactsError, MarketplaceFacts, OrderLookup, TablesFacts};
use verdict_store::testing::test_databases;

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()
}

fn order() -> OrderFacts {
    serde_json::from_str(include_str!("../../facts/tests/fixtures/order-a17.json")).unwrap()
}

/// As a webhook opens it: a payment reference, no seller, no customer.
fn webhook_dispute(pid: &str, payment_reference: &str) -> NewDispute {
    NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: pid.into(),
        payment_reference: payment_reference.into(),
        order_reference: None,
        seller_id: None,
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount: Money::new(45_900, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap(),
        reason_code_raw: "13.1".into(),
        stage: Stage::Chargeback,
        due_by: Some(t0() + Duration::days(20)),
        opened_at: t0(),
    }
}

async fn open(engine: &Engine, new: NewDispute) -> Dispute {
    engine
        .open(Command::new(
            Actor::processor(Processor::Stripe),
            Action::Open(Box::new(new)),
        ))
        .await
        .unwrap()
}

async fn kinds(engine: &Engine, dispute: &Dispute) -> Vec<String> {
    engine
        .store()
        .events(dispute.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn worker(engine: &Engine, clock: &Arc<ManualClock>, facts: Arc<dyn MarketplaceFacts>) -> Worker {
    let effects = Effects::local(engine.store().clone(), clock.clone()).with_facts(facts);
    Worker::new(engine.clone(), Arc::new(effects), WorkerOptions::default())
}

#[tokio::test]
async fn a_recorded_order_links_the_dispute_to_its_seller_and_customer() {
    for db in test_databases().await.unwrap() {
        let label = db.label;
        let store = db.store().await.unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::new(store.clone(), clock.clone());
        let tables = TablesFacts::new(store.db().clone());
        tables.record(order(), t0()).await.unwrap();
        let dispute = open(&engine, webhook_dispute("dp_link", "pi_3Ofacts17")).await;
        worker(&engine, &clock, engine.facts().clone()).drain().await.unwrap();
        let linked = store.load(dispute.id).await.unwrap().unwrap();
        assert_eq!(linked.seller_id.as_deref(), Some("seller-refurb-lyon"), "{label}");
        assert_eq!(linked.order_reference.as_deref(), Some("A-17"), "{label}");
        assert_eq!(
            linked.customer.email.as_ref().map(|e| e.expose()),
            Some("jeanne.dupont@example.fr"),
            "{label}"
        );
        assert_eq!(linked.customer.locale, Locale::Fr, "{label}");
        assert_eq!(
            kinds(&engine, &dispute).await,
            vec!["opened", "order_linked"],
            "{label}"
        );
        let event = store.events(dispute.id).await.unwrap().pop().unwrap();
        assert_eq!(event.actor, "step:link_order", "{label}");
        assert_eq!(event.change["order_reference"], "A-17", "{label}");
        assert_eq!(event.change["source"], "tables", "{label}");
    }
}

#[tokio::test]
async fn the_references_of_the_notification_are_tried_and_named_when_nothing_matches() {
    for db in test_databases().await.unwrap() {
        let label = db.label;
        let store = db.store().await.unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::new(store.clone(), clock.clone());
        let command = Command::new(
            Actor::processor(Processor::Stripe),
            Action::Open(Box::new(webhook_dispute("dp_none", "ch_unknown"))),
        );
        let mut decision = verdict_domain::open(verdict_domain::DisputeId::new_v7(), &command, t0()).unwrap();
        decision.link_by(vec![
            TaggedReference::new(ReferenceKind::Charge, "ch_unknown"),
            TaggedReference::new(ReferenceKind::OrderId, "Z-404"),
        ]);
        let dispute = verdict_domain::replay(&decision.events).unwrap();
        store.commit(None, &dispute, &decision).await.unwrap();
        worker(&engine, &clock, engine.facts().clone()).drain().await.unwrap();
        assert_eq!(
            kinds(&engine, &dispute).await,
            vec!["opened", "order_not_found"],
            "{label}"
        );
        let event = store.events(dispute.id).await.unwrap().pop().unwrap();
        assert_eq!(
            event.change["tried"],
            serde_json::json!(["order_id", "charge"]),
            "{label}"
        );
        let text = event.change.to_string();
        assert!(
            !text.contains("ch_unknown") && !text.contains("Z-404"),
            "{label}: kinds only, {text}"
        );
        let after = store.load(dispute.id).await.unwrap().unwrap();
        assert_eq!(after.seller_id, None, "{label}");
    }
}

/// A source that is down for the first `down` lookups.
struct Flaky {
    down: usize,
    calls: AtomicUsize,
    inner: TablesFacts,
}

#[async_trait::async_trait]
impl MarketplaceFacts for Flaky {
    fn name(&self) -> &'static str {
        "http"
    }
    async fn find_order(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.down {
            return Err(FactsError::Unavailable("the order service answered HTTP 503".into()));
        }
        self.inner.find_order(lookup).await
    }
}

#[tokio::test]
async fn an_unavailable_source_is_retried_with_backoff_then_dead_lettered_visibly() {
    for db in test_databases().await.unwrap() {
        let label = db.label;
        let store = db.store().await.unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::new(store.clone(), clock.clone());
        let tables = TablesFacts::new(store.db().clone());
        tables.record(order(), t0()).await.unwrap();

        // Down twice, then up: linked on the third try.
        let flaky = Arc::new(Flaky {
            down: 2,
            calls: AtomicUsize::new(0),
            inner: tables.clone(),
        });
        let w = worker(&engine, &clock, flaky.clone());
        let dispute = open(&engine, webhook_dispute("dp_flaky", "ch_3Ofacts17")).await;
        w.drain().await.unwrap();
        let step = store.steps(dispute.id).await.unwrap().remove(0);
        assert_eq!(
            (step.kind.as_str(), step.status.as_str()),
            ("link_order", "pending"),
            "{label}"
        );
        assert!(
            step.last_error.as_deref().unwrap_or_default().contains("503"),
            "{label}"
        );
        assert_eq!(
            kinds(&engine, &dispute).await,
            vec!["opened"],
            "{label}: nothing recorded while down"
        );
        for _ in 0..3 {
            clock.advance(Duration::minutes(5));
            w.drain().await.unwrap();
        }
        assert_eq!(
            kinds(&engine, &dispute).await,
            vec!["opened", "order_linked"],
            "{label}"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3, "{label}");

        // Down for good: dead-lettered, visible among the dead steps.
        let down = Arc::new(Flaky {
            down: usize::MAX,
            calls: AtomicUsize::new(0),
            inner: tables.clone(),
        });
        let w = worker(&engine, &clock, down);
        let other = open(&engine, webhook_dispute("dp_down", "pi_3Ofacts17")).await;
        for _ in 0..20 {
            w.drain().await.unwrap();
            clock.advance(Duration::hours(1));
        }
        let dead = store.dead_steps(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{label}");
        assert_eq!(dead[0].kind, "link_order", "{label}");
        assert_eq!(kinds(&engine, &other).await, vec!["opened"], "{label}");
    }
}
