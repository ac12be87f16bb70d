//! Disputes with their facts, evidence and history, one per customer language, with fixed ids and times so that
//! rendering is byte-for-byte reproducible.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use verdict_documents::DocumentInput;
use verdict_domain::facts::{
    Address, CheckoutPolicies, CustomerFacts, MessageAuthor, OrderFacts, OrderLine, OrderMessage, OrderRefund,
    PaymentChecks, PriorTransaction, SellerFacts, Shipment,
};
use verdict_domain::machine::{Action, Actor, Command, apply, decide, open, replay};
use verdict_domain::{
    CardNetwork, Currency, Customer, CustomerEmail, CustomerName, Dispute, DisputeEvent, DisputeId,
    EvidenceContentType, EvidenceFile, EvidenceItem, EvidenceKind, EvidenceSource, Locale, Money, NewDispute,
    Processor, ReasonCode, Stage,
};

pub fn at(day: i64, hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 9, 0, 0).single().unwrap_or_default() + Duration::days(day) + Duration::hours(hour)
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
}

/// A whole case: the dispute as its events leave it, with what the documents need.
pub struct Case {
    pub dispute: Dispute,
    pub facts: OrderFacts,
    pub evidence: Vec<EvidenceItem>,
    pub events: Vec<DisputeEvent>,
}

impl Case {
    pub fn input(&self) -> DocumentInput<'_> {
        DocumentInput {
            dispute: &self.dispute,
            facts: Some(&self.facts),
            evidence: &self.evidence,
            events: &self.events,
            generated_at: at(40, 0),
        }
    }
}

struct Person {
    name: &'static str,
    email: &'static str,
    street: &'static str,
    postal: &'static str,
    city: &'static str,
    country: &'static str,
    complaint: &'static str,
    reply: &'static str,
}

fn person(locale: Locale) -> Person {
    match locale {
        Locale::En => Person {
            name: "Oliver Bennett",
            email: "oliver.bennett@example.co.uk",
            street: "14 Wellington Road",
            postal: "M14 6AR",
            city: "Manchester",
            country: "GB",
            complaint: "I never made this purchase. Someone must have used my card.\nPlease cancel the order.",
            reply: "Hello Oliver, the order was placed from your account and delivered to your address. Could you \
                    check with the people in your household?",
        },
        Locale::Fr => Person {
            name: "Hélène Lefèvre",
            email: "helene.lefevre@example.fr",
            street: "27 rue de la Côte-d'Or",
            postal: "69003",
            city: "Lyon",
            country: "FR",
            complaint: "Bonjour, je n'ai jamais reçu le téléphone commandé. Le suivi indique « livré » mais je n'ai \
                        rien reçu. Où est mon colis ?",
            reply: "Bonjour Hélène, le transporteur a enregistré une livraison signée à votre adresse. Pouvez-vous \
                    vérifier auprès de vos voisins ou de votre gardien ?",
        },
        Locale::Es => Person {
            name: "Íñigo Muñoz Peña",
            email: "inigo.munoz@example.es",
            street: "Calle de Alcalá 123, 4º izq.",
            postal: "28009",
            city: "Madrid",
            country: "ES",
            complaint: "El móvil que recibí tiene arañazos en la pantalla y la batería dura muy poco. ¡No es lo que \
                        se anunciaba!",
            reply: "Hola Íñigo, lamentamos las molestias. Puede devolver el teléfono gratuitamente durante 30 días; \
                    le enviamos la etiqueta de devolución.",
        },
        Locale::It => Person {
            name: "Niccolò Bellini",
            email: "niccolo.bellini@example.it",
            street: "Via Po 12",
            postal: "10123",
            city: "Torino",
            country: "IT",
            complaint: "Ho restituito il telefono il 3 ottobre ma non ho ancora ricevuto il rimborso. Perché?",
            reply: "Buongiorno Niccolò, il rimborso di 349,00 € è stato effettuato il 10 ottobre; può richiedere \
                    cinque giorni lavorativi.",
        },
    }
}

/// The reason code each language's case disputes under: four different claims.
fn reason(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "10.4",
        Locale::Fr => "13.1",
        Locale::Es => "13.3",
        Locale::It => "13.6",
    }
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + n)
}

pub fn case(locale: Locale) -> Case {
    let p = person(locale);
    let code = reason(locale);
    let address = Address {
        lines: vec![p.street.to_owned()],
        postal_code: p.postal.to_owned(),
        city: p.city.to_owned(),
        country: p.country.to_owned(),
    };
    let new = NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: format!("dp_1Q{}", locale.as_str().to_uppercase()),
        payment_reference: format!("ch_3Q{}", locale.as_str().to_uppercase()),
        order_reference: Some(format!("BM-2026-0{}", 4711 + locale as u32)),
        seller_id: Some("seller-refurb-lyon".into()),
        customer: Customer {
            name: CustomerName::parse(p.name).ok(),
            email: CustomerEmail::parse(p.email).ok(),
            locale,
        },
        amount: eur(34_900),
        reason_code: ReasonCode::parse(CardNetwork::Visa, code).unwrap_or_else(|e| panic!("{e}")),
        reason_code_raw: code.to_owned(),
        stage: Stage::Chargeback,
        due_by: Some(at(45, 0)),
        opened_at: at(30, 0),
    };
    let id = DisputeId::from_uuid(uuid(1_000 + locale as u128));
    let processor = Actor::processor(Processor::Stripe);
    let decision =
        open(id, &Command::new(processor, Action::Open(Box::new(new))), at(30, 0)).unwrap_or_else(|e| panic!("{e}"));
    let mut events = decision.events;
    let mut dispute = replay(&events).unwrap_or_else(|| panic!("replay"));
    let analyst = Actor::analyst("camille");
    for (hour, command) in [
        (2, Command::new(Actor::system("triage"), Action::Triage { queue: None })),
        (
            3,
            Command::new(
                analyst.clone(),
                Action::Assign {
                    assignee: Some("camille".into()),
                },
            ),
        ),
        (
            5,
            Command::new(analyst.clone(), Action::StartEvidenceGathering).because("the order is delivered; we fight"),
        ),
        (
            6,
            Command::new(
                analyst.clone(),
                Action::AddNote {
                    note: "Carrier confirmed the signature by phone.".into(),
                },
            ),
        ),
    ] {
        let decision = decide(&dispute, &command, at(30, hour)).unwrap_or_else(|e| panic!("{e}"));
        for event in decision.events {
            apply(&mut dispute, &event);
            events.push(event);
        }
    }
    let facts = OrderFacts {
        order_reference: dispute.order_reference.clone().unwrap_or_default(),
        payment_references: vec![dispute.payment_reference.clone()],
        placed_at: at(0, 0),
        total: eur(34_900),
        seller: SellerFacts {
            seller_id: "seller-refurb-lyon".into(),
            name: "Atelier Reconditionné SARL".into(),
            email: Some("disputes@atelier.example".into()),
            ships_itself: true,
        },
        lines: vec![OrderLine {
            device_model: "iPhone 13 128 GB Midnight".into(),
            grade: "excellent".into(),
            imei_or_serial: Some("356789104563218".into()),
            price: eur(34_900),
            description: Some(
                "Refurbished iPhone 13, excellent condition: no visible scratches at arm's length, battery health \
                 at least 85%, unlocked, with a 12-month warranty."
                    .into(),
            ),
            grade_report: Some(
                "Battery health 91%. Screen: no scratches. Housing: two micro-marks on the frame. \
                                Face ID, cameras, speakers: pass."
                    .into(),
            ),
        }],
        shipment: Some(Shipment {
            carrier: "Colissimo".into(),
            tracking_number: "6A21983745012".into(),
            shipped_at: Some(at(1, 5)),
            delivered_at: Some(at(3, 2)),
            address: address.clone(),
            proof_of_delivery: Some("Signature captured at the door, GPS scan at the delivery address".into()),
            signed_by: Some(p.name.split(' ').next().unwrap_or_default().to_owned()),
        }),
        customer: CustomerFacts {
            account_id: format!("cust-{}", 88_000 + locale as u32),
            name: p.name.to_owned(),
            email: p.email.to_owned(),
            locale,
            account_created_at: at(-700, 0),
            previous_orders: 3,
            previous_disputes: 0,
        },
        payment_checks: PaymentChecks {
            avs_result: Some("Y".into()),
            cvv_result: Some("M".into()),
            three_d_secure: Some("authenticated".into()),
            ip_address: Some("203.0.113.24".into()),
            device_id: Some("dev-7f3a9c".into()),
        },
        prior_transactions: vec![
            PriorTransaction {
                payment_reference: "ch_prior_1".into(),
                paid_at: at(-200, 0),
                amount: eur(4_990),
                ip_address: Some("203.0.113.24".into()),
                device_id: Some("dev-7f3a9c".into()),
                shipping_address: Some(address.clone()),
                account_id: Some(format!("cust-{}", 88_000 + locale as u32)),
                disputed: false,
            },
            PriorTransaction {
                payment_reference: "ch_prior_2".into(),
                paid_at: at(-150, 0),
                amount: eur(1_990),
                ip_address: Some("203.0.113.24".into()),
                device_id: None,
                shipping_address: Some(address),
                account_id: Some(format!("cust-{}", 88_000 + locale as u32)),
                disputed: false,
            },
        ],
        messages: vec![
            OrderMessage {
                sent_at: at(20, 3),
                author: MessageAuthor::Customer,
                locale,
                body: p.complaint.to_owned(),
            },
            OrderMessage {
                sent_at: at(21, 1),
                author: MessageAuthor::Marketplace,
                locale,
                body: p.reply.to_owned(),
            },
        ],
        policies: CheckoutPolicies {
            refund_policy: Some(
                "Returns accepted within 30 days of delivery; refunds within 14 days of receiving \
                                 the return."
                    .into(),
            ),
            warranty_policy: Some("12-month warranty: repair, replacement or refund of a faulty device.".into()),
            terms_accepted_at: Some(at(0, 0)),
        },
        cancellation: None,
        refunds: if locale == Locale::It {
            vec![OrderRefund {
                refunded_at: at(39, 0),
                amount: eur(34_900),
                reference: Some("re_3QIT".into()),
            }]
        } else {
            Vec::new()
        },
    };
    let item = |n: u128, kind: EvidenceKind, text: Option<&str>, file: Option<(&str, u64, EvidenceContentType)>| {
        EvidenceItem {
            id: uuid(n),
            kind,
            text: text.map(str::to_owned),
            file: file.map(|(name, size, content_type)| EvidenceFile {
                sha256: hex::encode(Sha256::digest(name.as_bytes())),
                size_bytes: size,
                content_type,
                file_name: name.to_owned(),
            }),
            source: EvidenceSource::MarketplaceFacts,
            added_by: "system:facts".into(),
            added_at: at(31, n as i64 % 5),
        }
    };
    let evidence = vec![
        item(
            1,
            EvidenceKind::ProofOfDelivery,
            Some("Colissimo proof of delivery: signed at the door"),
            Some(("colissimo-pod-6A21983745012.pdf", 182_344, EvidenceContentType::Pdf)),
        ),
        item(
            2,
            EvidenceKind::Tracking,
            Some("Tracking 6A21983745012: shipped, in transit, delivered"),
            None,
        ),
        item(
            3,
            EvidenceKind::ProductDescription,
            Some("Listing and technician's grade report"),
            Some(("listing-and-grade-report.pdf", 96_210, EvidenceContentType::Pdf)),
        ),
        item(
            4,
            EvidenceKind::ImeiSerialRecord,
            Some("IMEI 356789104563218 recorded at dispatch"),
            None,
        ),
        item(
            5,
            EvidenceKind::Photos,
            Some("Device photographed before packing"),
            Some(("device-front.jpg", 1_482_113, EvidenceContentType::Jpeg)),
        ),
        item(
            6,
            EvidenceKind::PriorUndisputedTransactions,
            Some("Two earlier payments from the same IP address and device, never disputed"),
            None,
        ),
        item(
            7,
            EvidenceKind::RefundPolicy,
            Some("Refund policy shown at checkout"),
            None,
        ),
        item(
            8,
            EvidenceKind::CustomerCommunication,
            Some("Messages with the customer"),
            None,
        ),
    ];
    Case {
        dispute,
        facts,
        evidence,
        events,
    }
}
