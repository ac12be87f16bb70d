//! Demo data: about fifty realistic disputes of a refurbished-electronics marketplace, spread over
//! processors, currencies, networks, reason codes, sellers and every status, so a new user has a queue to
//! look at. Deterministic: the same seed data on every run; disputes that already exist are skipped.

use chrono::Duration;
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, CustomerEmail, CustomerName, Locale, Money, NewDispute,
    Processor, ReasonCode, Stage, Status,
};
use verdict_engine::{Engine, EngineError};
use verdict_store::StoreError;

const ITEMS: &[(&str, i64)] = &[
    ("Refurbished iPhone 13, 128 GB, grade A", 48_900),
    ("Refurbished iPhone 14 Pro, 256 GB, grade B", 82_900),
    ("Refurbished Samsung Galaxy S22, 128 GB", 39_900),
    ("Refurbished MacBook Air M1, 8 GB / 256 GB", 74_900),
    ("Refurbished MacBook Pro 14\" M1 Pro", 149_900),
    ("Refurbished Dell XPS 13, i7, 16 GB", 89_900),
    ("Refurbished iPad Air (5th gen), 64 GB", 46_900),
    ("Refurbished iPad Pro 11\", 256 GB", 69_900),
    ("Refurbished Google Pixel 7, 128 GB", 32_900),
    ("Refurbished Lenovo ThinkPad T14, Ryzen 5", 54_900),
    ("Refurbished Samsung Galaxy Tab S8", 44_900),
    ("Refurbished Apple Watch Series 8", 24_900),
];

const SELLERS: &[&str] = &[
    "seller-techrenew-fr",
    "seller-phonecycle-es",
    "seller-ricondizionati-it",
    "seller-backtolife-us",
    "seller-greengadgets-uk",
];

const CUSTOMERS: &[(&str, &str, Locale)] = &[
    ("Jeanne Dupont", "jeanne.dupont@example.fr", Locale::Fr),
    ("Lucía García", "lucia.garcia@example.es", Locale::Es),
    ("Marco Bianchi", "marco.bianchi@example.it", Locale::It),
    ("Emily Carter", "emily.carter@example.com", Locale::En),
    ("Thomas Martin", "t.martin@example.fr", Locale::Fr),
    ("Giulia Romano", "giulia.romano@example.it", Locale::It),
    ("James O'Neill", "james.oneill@example.co.uk", Locale::En),
];

const REASONS: &[(CardNetwork, &str)] = &[
    (CardNetwork::Visa, "10.4"),
    (CardNetwork::Visa, "13.1"),
    (CardNetwork::Visa, "13.3"),
    (CardNetwork::Visa, "12.6"),
    (CardNetwork::Visa, "11.3"),
    (CardNetwork::Mastercard, "4837"),
    (CardNetwork::Mastercard, " 4853"),
    (CardNetwork::Mastercard, "4834"),
    (CardNetwork::Mastercard, "4808"),
    (CardNetwork::Visa, "13.6"),
];

const STATUSES: &[Status] = &[
    Status::Notified,
    Status::Triaged,
    Status::EvidenceGathering,
    Status::Submitted,
    Status::Won,
    Status::Lost,
    Status::Accepted,
    Status::Expired,
    Status::Withdrawn,
    Status::Resolved,
    Status::Notified,
    Status::EvidenceGathering,
];

/// The processor reports that the dispute moved to `status`.
fn reported(status: Status) -> Action {
    Action::ProcessorUpdate {
        status: Some(status),
        stage: None,
        due_by: None,
    }
}

/// The actions that bring a fresh dispute to `status`.
fn path_to(status: Status) -> Vec<Action> {
    use Action::*;
    let prepared = vec![Triage { queue: None }, StartEvidenceGathering];
    match status {
        Status::Notified => vec![],
        Status::Triaged => vec![Triage { queue: None }],
        Status::EvidenceGathering => prepared,
        Status::Submitted => [prepared, vec![Submit]].concat(),
        Status::Won => [prepared, vec![Submit, ReceiveOutcome { won: true, stage: None }]].concat(),
        Status::Lost => [
            prepared,
            vec![
                Submit,
                ReceiveOutcome {
                    won: false,
                    stage: None,
                },
            ],
        ]
        .concat(),
        Status::Accepted => vec![Triage { queue: None }, Accept],
        Status::Expired => vec![Triage { queue: None }, reported(Status::Expired)],
        Status::Withdrawn => [prepared, vec![reported(Status::Withdrawn)]].concat(),
        Status::Resolved => vec![Triage { queue: None }, Resolve],
    }
}

/// The name of the demo's admin key: one key, whose token each run of `demo` replaces.
pub const DEMO_ADMIN_KEY: &str = "demo-admin";

/// The demo admin key's new token, and whether an earlier token was replaced.
pub struct DemoKey {
    pub token: String,
    pub rotated: bool,
}

/// Gives the demo admin key a new token: the first run creates the key, later runs rotate it (the previous
/// token stops working) rather than piling up one admin key per run. A token cannot be shown again, so
/// reusing the old one is not possible.
pub async fn admin_key(engine: &Engine) -> anyhow::Result<DemoKey> {
    let token = verdict_api::auth::generate_token();
    let hash = verdict_store::hash_token(&token);
    if engine.store().rotate_api_key(DEMO_ADMIN_KEY, &hash).await?.is_some() {
        return Ok(DemoKey { token, rotated: true });
    }
    engine
        .store()
        .create_api_key(
            DEMO_ADMIN_KEY,
            verdict_api::auth::Role::Admin.as_str(),
            &hash,
            engine.clock().now(),
        )
        .await?;
    Ok(DemoKey { token, rotated: false })
}

pub struct Seeded {
    pub created: usize,
    pub skipped: usize,
}

/// Seeds the demo disputes through the engine, exactly as analysts and processors would create them.
pub async fn seed(engine: &Engine) -> Result<Seeded, EngineError> {
    let now = engine.clock().now();
    let processors = [
        Processor::Stripe,
        Processor::Adyen,
        Processor::Paypal,
        Processor::Braintree,
        Processor::Manual,
    ];
    let currencies = ["EUR", "USD", "GBP", "EUR"];
    let mut seeded = Seeded { created: 0, skipped: 0 };
    let mut orders_recorded = true;
    for i in 0..50_usize {
        let processor = processors[i % processors.len()];
        let (item, price) = ITEMS[i % ITEMS.len()];
        let (name, email, locale) = CUSTOMERS[i % CUSTOMERS.len()];
        let (network, code) = REASONS[(i * 7) % REASONS.len()];
        let status = STATUSES[i % STATUSES.len()];
        let stage = match status {
            Status::Resolved => Stage::PreDispute,
            _ if i % 11 == 5 => Stage::Inquiry,
            _ => Stage::Chargeback,
        };
        let currency = Currency::parse(currencies[i % currencies.len()]).map_err(EngineError::Domain)?;
        let due_in = Duration::hours(((i as i64 * 37) % (21 * 24)) - 24);
        // Analysts cannot enter a due date in the past: only processors' disputes are seeded overdue.
        let due_in = if processor == Processor::Manual {
            due_in.abs().max(Duration::hours(1))
        } else {
            due_in
        };
        let amount = Money::new(price + (i as i64 % 5) * 100, currency).map_err(EngineError::Domain)?;
        let opened_at = now - Duration::days(2 + (i as i64 % 9));
        let order = crate::demo_orders::order(&crate::demo_orders::DemoOrder {
            index: i,
            order_reference: format!("ORD-{:06}", 731_000 + i * 7),
            payment_reference: format!("pay-demo-{:06}", 204_800 + i * 13),
            seller_id: SELLERS[i % SELLERS.len()],
            customer: (name, email, locale),
            item,
            amount,
            placed_at: opened_at - Duration::days(20),
            fraud: network_category_is_fraud(network, code),
        });
        if orders_recorded {
            orders_recorded = record_order(engine, order.clone()).await?;
        }
        // New Stripe disputes arrive as a webhook opens them (references only): the link step finds their
        // order, seller and customer. The others come with them, as before.
        let as_webhook = processor == Processor::Stripe && status == Status::Notified;
        let new = NewDispute {
            processor,
            processor_dispute_id: format!("demo-{}-{:04}", processor.as_str(), 1000 + i),
            payment_reference: order.payment_references[0].clone(),
            order_reference: (!as_webhook).then(|| order.order_reference.clone()),
            seller_id: (!as_webhook).then(|| order.seller.seller_id.clone()),
            customer: if as_webhook {
                Customer {
                    name: None,
                    email: None,
                    locale: Locale::En,
                }
            } else {
                Customer {
                    name: Some(CustomerName::parse(name).map_err(EngineError::Domain)?),
                    email: Some(CustomerEmail::parse(email).map_err(EngineError::Domain)?),
                    locale,
                }
            },
            amount,
            reason_code: ReasonCode::parse(network, code).map_err(EngineError::Domain)?,
            reason_code_raw: code.to_owned(),
            stage,
            due_by: Some(now + due_in),
            opened_at,
        };
        let actor = if processor == Processor::Manual {
            Actor::analyst("demo-analyst")
        } else {
            Actor::processor(processor)
        };
        let open = Command::new(actor, Action::Open(Box::new(new)));
        let dispute = match engine.open(open).await {
            Ok(dispute) => dispute,
            Err(EngineError::Store(StoreError::DuplicateDispute { .. })) => {
                seeded.skipped += 1;
                continue;
            }
            Err(err) => return Err(err),
        };
        let analyst = Actor::analyst(["demo-analyst", "camille.care", "diego.fraud"][i % 3]);
        let note = Command::new(
            analyst.clone(),
            Action::AddNote {
                note: format!("Item: {item}"),
            },
        );
        engine.handle(dispute.id, note).await?;
        if i % 4 == 1 {
            let assign = Command::new(
                analyst.clone(),
                Action::Assign {
                    assignee: Some(analyst.name.clone()),
                },
            );
            engine.handle(dispute.id, assign).await?;
        }
        for action in path_to(status) {
            // What the processor decides or reports is recorded as its word, as it would be in production.
            let by = match action {
                Action::ReceiveOutcome { .. } | Action::ProcessorUpdate { .. } => Actor::processor(processor),
                _ => analyst.clone(),
            };
            let command = Command::new(by, action).because("demo walk-through");
            engine.handle(dispute.id, command).await?;
        }
        if status == Status::Won && i % 24 == 4 {
            let reopen = Action::ProcessorUpdate {
                status: Some(Status::EvidenceGathering),
                stage: Some(Stage::PreArbitration),
                due_by: Some(now + Duration::days(20)),
            };
            engine
                .handle(dispute.id, Command::new(Actor::processor(processor), reopen))
                .await?;
        }
        seeded.created += 1;
    }
    Ok(seeded)
}

fn network_category_is_fraud(network: CardNetwork, code: &str) -> bool {
    ReasonCode::parse(network, code).is_ok_and(|c| c.category() == verdict_domain::ReasonCategory::Fraud)
}

/// Records a demo order in the own tables; `false` (and a warning, once) when the configured source does not
/// record orders (the marketplace's order service over HTTP), so the demo seeds its disputes without them.
async fn record_order(engine: &Engine, order: verdict_domain::facts::OrderFacts) -> Result<bool, EngineError> {
    match engine.facts().record_order(order, engine.clock().now()).await {
        Ok(_) => Ok(true),
        Err(verdict_facts::FactsError::ReadOnly(source)) => {
            tracing::warn!(
                source,
                "the marketplace facts come from the order service: no demo orders recorded"
            );
            Ok(false)
        }
        Err(err) => Err(EngineError::Store(StoreError::Corrupt(format!(
            "recording a demo order: {err}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_path_and_the_mix_covers_them_all() {
        for status in Status::ALL {
            assert!(STATUSES.contains(status), "{status} missing from the demo");
            let _ = path_to(*status);
        }
    }

    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn every_demo_dispute_finds_its_order_and_webhook_style_ones_are_linked() {
        use std::sync::Arc;
        use verdict_engine::effects::Effects;
        use verdict_engine::worker::{Worker, WorkerOptions};
        use verdict_facts::OrderLookup;

        for db in verdict_store::testing::test_databases().await.unwrap() {
            let clock = Arc::new(verdict_engine::SystemClock);
            let engine = Engine::new(db.store().await.unwrap(), clock.clone());
            seed(&engine).await.unwrap();
            let effects = Effects::local(engine.store().clone(), clock).with_facts(engine.facts().clone());
            let worker = Worker::new(engine.clone(), Arc::new(effects), WorkerOptions::default());
            worker.drain().await.unwrap();
            let page = engine
                .store()
                .list(&verdict_store::DisputeFilter::default(), 100, None)
                .await
                .unwrap();
            assert_eq!(page.items.len(), 50, "{}", db.label);
            let mut linked = 0;
            for (_, dispute) in &page.items {
                let lookup = OrderLookup {
                    processor: dispute.processor,
                    order_reference: dispute.order_reference.clone(),
                    payment_references: vec![dispute.payment_reference.clone()],
                };
                let order = engine.facts().find_order(&lookup).await.unwrap().unwrap();
                assert_eq!(
                    dispute.seller_id.as_deref(),
                    Some(order.seller.seller_id.as_str()),
                    "{}",
                    db.label
                );
                assert_eq!(dispute.customer.locale, order.customer.locale);
                assert_eq!(
                    order.messages[0].locale, order.customer.locale,
                    "messages in the customer's language"
                );
                let kinds: Vec<String> = engine
                    .store()
                    .events(dispute.id)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.kind)
                    .collect();
                if kinds.iter().any(|k| k == "order_linked") {
                    linked += 1;
                }
            }
            assert!(
                linked >= 2,
                "{}: the webhook-style Stripe disputes are linked by the step",
                db.label
            );
        }
    }
}
