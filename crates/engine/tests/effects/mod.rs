//! Step handlers against fake outside systems: processor APIs and the seller webhook on a local wiremock
//! server, the mailbox on SQLite and (when configured) PostgreSQL, and the message templates.

mod braintree;
mod failures;
mod messages;
mod paypal;
mod policy;
mod processors;
mod refunds;
mod sandbox;
mod sellers;

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
        priority: 3,
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

/// One part of a `multipart/form-data` body, read back exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of a multipart request, in order (RFC 7578); panics on anything malformed.
pub fn multipart_parts(request: &wiremock::Request) -> Vec<Part> {
    let content_type = request.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let boundary = content_type.split("boundary=").nth(1).unwrap();
    let delimiter = format!("--{boundary}");
    let body = &request.body;
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).expect("a first boundary");
    assert_eq!(at, 0, "the body starts with the boundary");
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            assert_eq!(&body[at..], b"--\r\n", "the body ends with the closing boundary");
            return parts;
        }
        assert!(body[at..].starts_with(b"\r\n"));
        at += 2;
        let head_end = find(body, b"\r\n\r\n", at).unwrap();
        let head = std::str::from_utf8(&body[at..head_end]).unwrap();
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), head_end).unwrap();
        let mut part = Part {
            name: String::new(),
            file_name: None,
            content_type: None,
            body: body[head_end + 4..next].to_vec(),
        };
        for line in head.split("\r\n") {
            if let Some(disposition) = line.strip_prefix("Content-Disposition: form-data; ") {
                for attribute in disposition.split("; ") {
                    if let Some(v) = attribute.strip_prefix("name=") {
                        part.name = v.trim_matches('"').to_owned();
                    } else if let Some(v) = attribute.strip_prefix("filename=") {
                        part.file_name = Some(v.trim_matches('"').to_owned());
                    }
                }
            } else if let Some(v) = line.strip_prefix("Content-Type: ") {
                part.content_type = Some(v.to_owned());
            } else {
                panic!("unexpected part header {line:?}");
            }
        }
        parts.push(part);
        at = next + 2;
    }
}

/// A submission as the actions build it: the defense document, texts and files of several kinds, the
/// order facts.
pub fn full_submission() -> verdict_engine::effects::Submission {
    use verdict_domain::{EvidenceContentType, EvidenceKind as K};
    use verdict_engine::effects::{Submission, SubmissionFile, SubmissionItem};
    let file = |name: &str, content_type, bytes: &[u8]| SubmissionFile {
        file_name: name.into(),
        content_type,
        bytes: bytes.to_vec(),
    };
    Submission {
        document: Some(file(
            "defense-v2.pdf",
            EvidenceContentType::Pdf,
            b"%PDF-1.7 defense document",
        )),
        items: vec![
            SubmissionItem {
                kind: K::ProofOfDelivery,
                text: None,
                file: Some(file("pod.png", EvidenceContentType::Png, b"\x89PNG proof of delivery")),
            },
            SubmissionItem {
                kind: K::CustomerCommunication,
                text: Some("The customer confirmed receipt on 27 September.".into()),
                file: Some(file("chat.pdf", EvidenceContentType::Pdf, b"%PDF-1.7 chat")),
            },
            SubmissionItem {
                kind: K::ProductDescription,
                text: Some("iPhone 13 128 GB, grade excellent, battery 91%.".into()),
                file: None,
            },
            SubmissionItem {
                kind: K::Photos,
                text: None,
                file: Some(file("photo.jpg", EvidenceContentType::Jpeg, b"\xff\xd8\xff photo")),
            },
        ],
        facts: Some(order_facts()),
    }
}

/// The `Idempotency-Key`-like header of a request, as text.
pub fn header_of(request: &wiremock::Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
