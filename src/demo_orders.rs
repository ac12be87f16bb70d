//! The marketplace orders behind the demo disputes: what `verdict demo` records in Verdict's own tables so
//! that every demo dispute finds its order (shipment, messages in the customer's language, prior payments,
//! policies), and the evidence and documents built from it have realistic material.

use chrono::{DateTime, Duration, Utc};
use verdict_domain::facts::{
    Address, CheckoutPolicies, CustomerFacts, MessageAuthor, OrderFacts, OrderLine, OrderMessage, PaymentChecks,
    PriorTransaction, SellerFacts, Shipment,
};
use verdict_domain::{Locale, Money};

/// What one demo order is made of.
pub(crate) struct DemoOrder<'a> {
    pub index: usize,
    pub order_reference: String,
    pub payment_reference: String,
    pub seller_id: &'a str,
    pub customer: (&'a str, &'a str, Locale),
    pub item: &'a str,
    pub amount: Money,
    pub placed_at: DateTime<Utc>,
    /// A fraud reason: the order gets earlier undisputed payments from the same device and IP.
    pub fraud: bool,
}

fn address(locale: Locale, i: usize) -> Address {
    let (line, postal_code, city, country) = match locale {
        Locale::Fr => (format!("{} rue des Lilas", 3 + i % 40), "69003", "Lyon", "FR"),
        Locale::Es => (format!("Calle Mayor {}", 5 + i % 30), "28013", "Madrid", "ES"),
        Locale::It => (format!("Via Roma {}", 21 + i % 50), "20121", "Milano", "IT"),
        Locale::En => (format!("{} Baker Street", 200 + i % 30), "NW1 6XE", "London", "GB"),
    };
    Address {
        lines: vec![line],
        postal_code: postal_code.to_owned(),
        city: city.to_owned(),
        country: country.to_owned(),
    }
}

fn carrier(locale: Locale) -> &'static str {
    match locale {
        Locale::Fr => "Colissimo",
        Locale::Es => "Correos Express",
        Locale::It => "Poste Italiane",
        Locale::En => "Royal Mail",
    }
}

/// The customer's question and the marketplace's answer, in the customer's language.
fn conversation(locale: Locale, order: &str, delivered: Option<DateTime<Utc>>) -> (String, String) {
    let day = delivered.map(|d| d.format("%d/%m/%Y").to_string());
    match (locale, day) {
        (Locale::Fr, Some(day)) => (
            format!("Bonjour, je ne retrouve pas ma commande {order}. Pouvez-vous vérifier la livraison ?"),
            format!(
                "Bonjour, le transporteur indique une livraison le {day} à votre adresse. Nous restons à votre disposition."
            ),
        ),
        (Locale::Fr, None) => (
            format!("Bonjour, ma commande {order} n'est toujours pas arrivée. Où en est-elle ?"),
            "Bonjour, votre colis est en cours d'acheminement ; nous suivons la livraison de près.".to_owned(),
        ),
        (Locale::Es, Some(day)) => (
            format!("Hola, no encuentro mi pedido {order}. ¿Pueden comprobar la entrega?"),
            format!("Hola, el transportista indica la entrega el {day} en su dirección. Quedamos a su disposición."),
        ),
        (Locale::Es, None) => (
            format!("Hola, mi pedido {order} todavía no ha llegado. ¿Dónde está?"),
            "Hola, su paquete está en camino; seguimos la entrega de cerca.".to_owned(),
        ),
        (Locale::It, Some(day)) => (
            format!("Buongiorno, non trovo l'ordine {order}. Potete verificare la consegna?"),
            format!("Buongiorno, il corriere indica la consegna il {day} al suo indirizzo. Restiamo a disposizione."),
        ),
        (Locale::It, None) => (
            format!("Buongiorno, l'ordine {order} non è ancora arrivato. A che punto è?"),
            "Buongiorno, il pacco è in viaggio; seguiamo la consegna da vicino.".to_owned(),
        ),
        (Locale::En, Some(day)) => (
            format!("Hello, I cannot find order {order}. Could you check the delivery?"),
            format!("Hello, the carrier shows delivery to your address on {day}. Let us know if we can help."),
        ),
        (Locale::En, None) => (
            format!("Hello, order {order} still has not arrived. Where is it?"),
            "Hello, your parcel is on its way; we are following the delivery closely.".to_owned(),
        ),
    }
}

/// The order behind one demo dispute.
pub(crate) fn order(o: &DemoOrder<'_>) -> OrderFacts {
    let i = o.index;
    let (name, email, locale) = o.customer;
    let phone = ["iPhone", "Galaxy", "Pixel", "Watch"]
        .iter()
        .any(|p| o.item.contains(p));
    let grade = if o.item.contains("grade B") {
        "good"
    } else {
        "excellent"
    };
    let shipped_at = o.placed_at + Duration::hours(20);
    // Every seventh order is still in transit: "not received" is then not disproved by tracking.
    let delivered_at = (i % 7 != 3).then(|| shipped_at + Duration::hours(46));
    let address = address(locale, i);
    let device_id = format!("dev-{:06x}", 0x5a_0000 + i * 97);
    let ip = format!("198.51.100.{}", 10 + i % 200);
    let (question, answer) = conversation(locale, &o.order_reference, delivered_at);
    let prior = |days: i64, n: usize| PriorTransaction {
        payment_reference: format!("pay-demo-prior-{i:03}-{n}"),
        paid_at: o.placed_at - Duration::days(days),
        amount: o.amount,
        ip_address: Some(ip.clone()),
        device_id: Some(device_id.clone()),
        shipping_address: Some(address.clone()),
        account_id: Some(format!("cust-demo-{:04}", i % 7)),
        disputed: false,
    };
    OrderFacts {
        order_reference: o.order_reference.clone(),
        payment_references: vec![o.payment_reference.clone()],
        placed_at: o.placed_at,
        total: o.amount,
        seller: SellerFacts {
            seller_id: o.seller_id.to_owned(),
            name: o.seller_id.trim_start_matches("seller-").replace('-', " "),
            email: Some(format!(
                "disputes@{}.example",
                o.seller_id.trim_start_matches("seller-")
            )),
            ships_itself: i.is_multiple_of(2),
        },
        lines: vec![OrderLine {
            device_model: o.item.trim_start_matches("Refurbished ").to_owned(),
            grade: grade.to_owned(),
            imei_or_serial: Some(if phone {
                format!("35{:013}", 6_938_035_643_809_u64 + i as u64 * 7_919)
            } else {
                format!("C02{:08X}", 0x1A2B_3C00 + i * 4_099)
            }),
            price: o.amount,
            description: Some(format!("{}, tested and cleaned, 12-month warranty.", o.item)),
            grade_report: Some(format!(
                "Technician check: battery {}%, screen without defect, {} cosmetic marks.",
                86 + i % 12,
                if grade == "good" { "light" } else { "no visible" }
            )),
        }],
        shipment: Some(Shipment {
            carrier: carrier(locale).to_owned(),
            tracking_number: format!("TRK{:010}", 4_200_000_000_u64 + i as u64 * 1_013),
            shipped_at: Some(shipped_at),
            delivered_at,
            address: address.clone(),
            proof_of_delivery: delivered_at
                .map(|_| "Delivered, photo of the parcel at the door and GPS scan".to_owned()),
            signed_by: delivered_at.filter(|_| i.is_multiple_of(3)).map(|_| name.to_owned()),
        }),
        customer: CustomerFacts {
            account_id: format!("cust-demo-{:04}", i % 7),
            name: name.to_owned(),
            email: email.to_owned(),
            locale,
            account_created_at: o.placed_at - Duration::days(400 + (i as i64 % 7) * 90),
            previous_orders: (2 + i % 5) as u32,
            previous_disputes: u32::from(i.is_multiple_of(13)),
        },
        payment_checks: PaymentChecks {
            avs_result: Some("Y".to_owned()),
            cvv_result: Some("M".to_owned()),
            three_d_secure: Some(
                if i.is_multiple_of(4) {
                    "attempted"
                } else {
                    "authenticated"
                }
                .to_owned(),
            ),
            ip_address: Some(ip.clone()),
            device_id: Some(device_id.clone()),
        },
        // Fraud claims get two earlier undisputed payments from the same device and IP, 150 and 300 days old.
        prior_transactions: if o.fraud {
            vec![prior(150, 1), prior(300, 2)]
        } else {
            Vec::new()
        },
        messages: vec![
            OrderMessage {
                sent_at: o.placed_at + Duration::days(5),
                author: MessageAuthor::Customer,
                locale,
                body: question,
            },
            OrderMessage {
                sent_at: o.placed_at + Duration::days(5) + Duration::hours(3),
                author: MessageAuthor::Marketplace,
                locale,
                body: answer,
            },
        ],
        policies: CheckoutPolicies {
            refund_policy: Some(
                "Returns accepted within 30 days of delivery; refund within 14 days of the return.".to_owned(),
            ),
            warranty_policy: Some("12-month warranty on every refurbished device.".to_owned()),
            terms_accepted_at: Some(o.placed_at - Duration::minutes(2)),
        },
        cancellation: None,
        refunds: Vec::new(),
    }
}
