//! Step handlers against fake outside systems: processor APIs and the seller webhook on a local wiremock
//! server, the mailbox on SQLite and (when configured) PostgreSQL, and the message templates.

mod messages;
mod processors;
mod refunds;
mod sandbox;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, CustomerEmail, CustomerName, Dispute, DisputeId, Locale,
    Money, NewDispute, Processor, Queue, ReasonCode, Stage, Status, StepKind,
};
use verdict_engine::effects::StepContext;
use verdict_engine::{Engine, ManualClock};
use verdict_store::testing::{TestDatabase, test_databases};

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 30, 0).unwrap()
}

/// A dispute as the handlers receive it, never stored.
pub fn dispute(processor: Processor, network: CardNetwork, code: &str, stage: Stage, status: Status) -> Dispute {
    Dispute {
        id: DisputeId::new_v7(),
        processor,
        processor_dispute_id: "dp_1Q2w3E4r".into(),
        payment_reference: "pi_3Pq9Zx".into(),
        order_reference: Some("ORD-2026-10417".into()),
        seller_id: Some("seller-techrenew-fr".into()),
        customer: Customer {
            name: Some(CustomerName::parse("Jeanne Dupont").unwrap()),
            email: Some(CustomerEmail::parse("jeanne.dupont@example.fr").unwrap()),
            locale: Locale::Fr,
        },
        amount: Money::new(123_450, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(network, code).unwrap(),
        reason_code_raw: code.into(),
        stage,
        status,
        due_by: Some(t0() + Duration::days(10)),
        opened_at: t0(),
        queue: Some(Queue::Seller),
        assignee: Some("marie".into()),
        version: 5,
        created_at: t0(),
        updated_at: t0(),
    }
}

pub fn ctx(kind: StepKind, dispute: Dispute, payload: Option<serde_json::Value>) -> StepContext {
    StepContext {
        step_id: uuid::Uuid::now_v7(),
        kind,
        idempotency_key: format!("{}:{}:{}", dispute.id, dispute.version, kind.as_str()),
        attempt: 1,
        dispute,
        payload,
    }
}

/// An engine on a fresh database, with a manual clock.
pub struct Harness {
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub label: &'static str,
    _db: TestDatabase,
}

pub async fn harnesses() -> Vec<Harness> {
    install_crypto();
    let mut out = Vec::new();
    for db in test_databases().await.unwrap() {
        let store = db.store().await.unwrap();
        let clock = Arc::new(ManualClock::new(t0()));
        out.push(Harness {
            engine: Engine::new(store, clock.clone()),
            clock,
            label: db.label,
            _db: db,
        });
    }
    out
}

impl Harness {
    /// Opens a stored dispute and moves it through `actions`.
    pub async fn dispute(&self, pid: &str, locale: Locale, stage: Stage, actions: Vec<Action>) -> Dispute {
        let new = NewDispute {
            processor: Processor::Stripe,
            processor_dispute_id: pid.into(),
            payment_reference: format!("pi_{pid}"),
            order_reference: Some(format!("ORD-{pid}")),
            seller_id: Some("seller-ricondizionati-it".into()),
            customer: Customer {
                name: Some(CustomerName::parse("Marco Bianchi").unwrap()),
                email: Some(CustomerEmail::parse("marco.bianchi@example.it").unwrap()),
                locale,
            },
            amount: Money::new(48_900, Currency::parse("EUR").unwrap()).unwrap(),
            reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap(),
            reason_code_raw: "13.1".into(),
            stage,
            due_by: Some(t0() + Duration::days(20)),
            opened_at: t0(),
        };
        let mut dispute = self
            .engine
            .open(Command::new(Actor::analyst("test"), Action::Open(Box::new(new))))
            .await
            .unwrap();
        for action in actions {
            // Outcomes are the processor's word; everything else is the analyst's.
            let actor = match action {
                Action::RecordOutcome { .. } | Action::ReceiveOutcome { .. } | Action::ProcessorUpdate { .. } => {
                    Actor::processor(verdict_domain::Processor::Stripe)
                }
                _ => Actor::analyst("test"),
            };
            dispute = self
                .engine
                .handle(dispute.id, Command::new(actor, action).because("test"))
                .await
                .unwrap();
        }
        dispute
    }
}

/// The facts of the order behind [`dispute`]: a refurbished phone shipped by Colissimo and delivered.
pub fn order_facts() -> verdict_domain::facts::OrderFacts {
    use verdict_domain::facts::*;
    let eur = |minor| Money::new(minor, Currency::parse("EUR").unwrap()).unwrap();
    let address = Address {
        lines: vec!["12 rue des Lilas".into()],
        postal_code: "69003".into(),
        city: "Lyon".into(),
        country: "FR".into(),
    };
    OrderFacts {
        order_reference: "ORD-2026-10417".into(),
        payment_references: vec!["pi_3Pq9Zx".into()],
        placed_at: t0() - Duration::days(40),
        total: eur(123_450),
        seller: SellerFacts {
            seller_id: "seller-techrenew-fr".into(),
            name: "TechRenew".into(),
            email: None,
            ships_itself: true,
        },
        lines: vec![OrderLine {
            device_model: "iPhone 13 128 GB Midnight".into(),
            grade: "excellent".into(),
            imei_or_serial: Some("356789104563217".into()),
            price: eur(123_450),
            description: Some("Refurbished, battery above 90%".into()),
            grade_report: None,
        }],
        shipment: Some(Shipment {
            carrier: "Colissimo".into(),
            tracking_number: "6A12345678901".into(),
            shipped_at: Some(Utc.with_ymd_and_hms(2026, 9, 24, 8, 0, 0).unwrap()),
            delivered_at: Some(Utc.with_ymd_and_hms(2026, 9, 26, 11, 5, 0).unwrap()),
            address: address.clone(),
            proof_of_delivery: Some("Signed at delivery".into()),
            signed_by: Some("J. Dupont".into()),
        }),
        customer: CustomerFacts {
            account_id: "cust-4411".into(),
            name: "Jeanne Dupont".into(),
            email: "jeanne.dupont@example.fr".into(),
            locale: Locale::Fr,
            account_created_at: t0() - Duration::days(800),
            previous_orders: 3,
            previous_disputes: 0,
        },
        payment_checks: PaymentChecks {
            avs_result: Some("Y".into()),
            cvv_result: Some("M".into()),
            three_d_secure: Some("authenticated".into()),
            ip_address: Some("203.0.113.7".into()),
            device_id: Some("dev-88".into()),
        },
        prior_transactions: vec![],
        messages: vec![],
        policies: CheckoutPolicies {
            refund_policy: Some("30-day returns, refund within 14 days of receipt".into()),
            warranty_policy: Some("12-month warranty".into()),
            terms_accepted_at: Some(t0() - Duration::days(40)),
        },
        cancellation: None,
        refunds: vec![],
    }
}
