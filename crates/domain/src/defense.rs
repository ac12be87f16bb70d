//! Which argument a defense makes: from the claim, the marketplace facts and the evidence gathered, the points
//! a cover letter puts to the processor, each with the facts it rests on.
//!
//! The rules are pure so that what Verdict asserts to a card network can be tested for every claim. A point is
//! made only from facts that exist; a fact the argument needs but nobody has is listed as missing, never
//! filled in, so an analyst sees what to gather and the letter never claims more than the file shows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EvidenceKind;

/// What a point of the argument rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Basis {
    /// A marketplace fact, named and quoted: `Carrier: Colissimo`.
    Fact { label: String, value: String },
    /// An evidence item in the file.
    Evidence { item_id: Uuid, kind: EvidenceKind },
}

/// One assertion of the argument and what it rests on; a point never rests on nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub statement: String,
    pub rests_on: Vec<Basis>,
}

/// A paragraph of the cover letter: a heading and its points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paragraph {
    pub heading: String,
    pub points: Vec<Point>,
}

/// A fact the argument needs and the file does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFact {
    pub fact: String,
    /// Why the argument needs it.
    pub needed_for: String,
}

/// The argument of a defense.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defense {
    /// One sentence: the position taken (`The order was delivered to the address the cardholder gave.`).
    pub position: String,
    pub paragraphs: Vec<Paragraph>,
    pub missing: Vec<MissingFact>,
}

impl Defense {
    /// Whether the argument has at least one point.
    pub fn has_argument(&self) -> bool {
        self.paragraphs.iter().any(|p| !p.points.is_empty())
    }
}

/// A time as documents show it: `2026-10-02 14:05 UTC`.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A date as documents show it: `2026-10-02`.
pub fn format_date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

// ---------------------------------------------------------------------------------------------------------
// The rules.
// ---------------------------------------------------------------------------------------------------------

use crate::evidence::{
    CE_MAX_DAYS_BEFORE, CE_MIN_DAYS_BEFORE, CE_MIN_QUALIFYING, CompellingEvidence, CompellingEvidenceProgram,
    DisputedPayment, SharedIdentifier, compelling_evidence, shared_identifiers,
};
use crate::facts::{MessageAuthor, OrderFacts};
use crate::{Dispute, DisputeClaim, EvidenceItem};

/// Characters of a quoted text (a listing, a policy) kept in a point.
const QUOTE_CHARS: usize = 300;

fn quote(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // A quoted sentence's own full stop would run into the next basis (`…return.; Evidence 7`).
    let flat = flat.strip_suffix('.').map(str::to_owned).unwrap_or(flat);
    if flat.chars().count() <= QUOTE_CHARS {
        flat
    } else {
        let cut: String = flat.chars().take(QUOTE_CHARS).collect();
        format!("{}…", cut.trim_end())
    }
}

fn fact(label: &str, value: impl Into<String>) -> Basis {
    Basis::Fact {
        label: label.to_owned(),
        value: value.into(),
    }
}

/// Collects the argument while it is made: points that rest on something, and what is missing.
struct Builder<'a> {
    evidence: &'a [EvidenceItem],
    paragraphs: Vec<Paragraph>,
    missing: Vec<MissingFact>,
}

impl<'a> Builder<'a> {
    fn evidence_of(&self, kinds: &[EvidenceKind]) -> Vec<Basis> {
        self.evidence
            .iter()
            .filter(|i| kinds.contains(&i.kind))
            .map(|i| Basis::Evidence {
                item_id: i.id,
                kind: i.kind,
            })
            .collect()
    }

    fn has(&self, kind: EvidenceKind) -> bool {
        self.evidence.iter().any(|i| i.kind == kind)
    }

    fn paragraph(&mut self, heading: &str) -> usize {
        self.paragraphs.push(Paragraph {
            heading: heading.to_owned(),
            points: Vec::new(),
        });
        self.paragraphs.len() - 1
    }

    /// Adds a point to paragraph `p`; a point with nothing to rest on is not made.
    fn point(&mut self, p: usize, statement: String, rests_on: Vec<Basis>) {
        if rests_on.is_empty() {
            return;
        }
        if let Some(paragraph) = self.paragraphs.get_mut(p) {
            paragraph.points.push(Point { statement, rests_on });
        }
    }

    fn missing(&mut self, fact: &str, needed_for: &str) {
        if !self.missing.iter().any(|m| m.fact == fact) {
            self.missing.push(MissingFact {
                fact: fact.to_owned(),
                needed_for: needed_for.to_owned(),
            });
        }
    }

    /// Notes an evidence kind the argument cites but the file lacks.
    fn expect_evidence(&mut self, kind: EvidenceKind, what: &str, needed_for: &str) {
        if !self.has(kind) {
            self.missing(what, needed_for);
        }
    }
}

/// The argument a defense of `dispute` makes, from what the file holds.
pub fn argue(dispute: &Dispute, facts: Option<&OrderFacts>, evidence: &[EvidenceItem]) -> Defense {
    let claim = DisputeClaim::of_dispute(dispute);
    let mut b = Builder {
        evidence,
        paragraphs: Vec::new(),
        missing: Vec::new(),
    };
    let Some(facts) = facts else {
        b.missing(
            "The order behind the payment",
            "every argument rests on the order: what was sold, where it went, what the customer agreed to",
        );
        return Defense {
            position: "The dispute is not yet linked to an order, so no argument can be made from the order's facts."
                .to_owned(),
            paragraphs: Vec::new(),
            missing: b.missing,
        };
    };
    let position = match claim {
        DisputeClaim::NotReceived => not_received(&mut b, facts),
        DisputeClaim::NotAsDescribed => not_as_described(&mut b, facts),
        DisputeClaim::Fraud => fraud(&mut b, facts, dispute),
        DisputeClaim::CreditNotProcessed => credit_not_processed(&mut b, facts, dispute),
        DisputeClaim::Cancelled => cancelled(&mut b, facts),
        DisputeClaim::DuplicateOrProcessingError => processing_error(&mut b, facts, dispute),
        DisputeClaim::Authorization => authorization(&mut b, facts),
        DisputeClaim::General => general(&mut b, facts),
    };
    correspondence(&mut b, facts);
    Defense {
        position,
        paragraphs: b.paragraphs.into_iter().filter(|p| !p.points.is_empty()).collect(),
        missing: b.missing,
    }
}

/// Delivery points; returns whether delivery is shown.
fn delivery(b: &mut Builder<'_>, facts: &OrderFacts) -> bool {
    let p = b.paragraph("Delivery to the address on the order");
    let Some(shipment) = &facts.shipment else {
        b.missing(
            "The shipment: carrier and tracking number",
            "to show the order was sent",
        );
        b.missing(
            "The delivery date and the carrier's proof of delivery",
            "to show the order arrived",
        );
        return false;
    };
    let address = shipment.address.one_line();
    b.point(
        p,
        format!(
            "Order {} was placed on {} for delivery to {address}, the address the cardholder entered at checkout.",
            facts.order_reference,
            format_date(facts.placed_at)
        ),
        vec![
            fact("Order", facts.order_reference.clone()),
            fact("Delivery address", address.clone()),
        ],
    );
    let mut sent = vec![
        fact("Carrier", shipment.carrier.clone()),
        fact("Tracking number", shipment.tracking_number.clone()),
    ];
    let shipped = match shipment.shipped_at {
        Some(at) => {
            sent.push(fact("Shipped", format_time(at)));
            format!(", shipped on {}", format_date(at))
        }
        None => String::new(),
    };
    sent.extend(b.evidence_of(&[EvidenceKind::Tracking]));
    b.point(
        p,
        format!(
            "{} carried it under tracking number {}{shipped}.",
            shipment.carrier, shipment.tracking_number
        ),
        sent,
    );
    b.expect_evidence(
        EvidenceKind::Tracking,
        "The carrier's tracking record as an evidence item",
        "the processor reads the tracking history from the file, not from a number",
    );
    let delivered = match shipment.delivered_at {
        Some(at) => {
            let mut rests = vec![fact("Delivered", format_time(at))];
            let mut statement = format!(
                "{} recorded the delivery to that address on {}",
                shipment.carrier,
                format_time(at)
            );
            if let Some(signed) = &shipment.signed_by {
                statement.push_str(&format!(", signed for by {signed}"));
                rests.push(fact("Signed by", signed.clone()));
            }
            if let Some(proof) = &shipment.proof_of_delivery {
                rests.push(fact("Proof of delivery", quote(proof)));
            }
            statement.push('.');
            rests.extend(b.evidence_of(&[EvidenceKind::ProofOfDelivery]));
            b.point(p, statement, rests);
            true
        }
        None => {
            b.missing("The delivery date", "to show when the order arrived");
            false
        }
    };
    if shipment.proof_of_delivery.is_none() && shipment.signed_by.is_none() && !b.has(EvidenceKind::ProofOfDelivery) {
        b.missing(
            "The carrier's proof of delivery or signature",
            "to show the parcel was handed over at the address",
        );
    } else {
        b.expect_evidence(
            EvidenceKind::ProofOfDelivery,
            "The carrier's proof of delivery as an evidence item",
            "to attach what the carrier recorded",
        );
    }
    delivered
}

fn not_received(b: &mut Builder<'_>, facts: &OrderFacts) -> String {
    let delivered = delivery(b, facts);
    match (&facts.shipment, delivered) {
        (Some(s), true) => format!(
            "The order was delivered by {} to the address the cardholder gave on the order.",
            s.carrier
        ),
        (Some(s), false) => format!(
            "The order was shipped by {} to the address on the order; the file does not yet show its delivery.",
            s.carrier
        ),
        (None, _) => "The file does not yet show that the order was shipped.".to_owned(),
    }
}

fn not_as_described(b: &mut Builder<'_>, facts: &OrderFacts) -> String {
    let listing = b.paragraph("The listing the customer bought from");
    let listing_evidence = b.evidence_of(&[EvidenceKind::ProductDescription]);
    for line in &facts.lines {
        let mut rests = vec![
            fact("Device", line.device_model.clone()),
            fact("Grade listed", line.grade.clone()),
            fact("Price", line.price.to_string()),
        ];
        if let Some(description) = &line.description {
            rests.push(fact("Listing", quote(description)));
        }
        rests.extend(listing_evidence.iter().cloned());
        b.point(
            listing,
            format!(
                "The customer bought a refurbished {} listed in grade \"{}\" for {}.",
                line.device_model, line.grade, line.price
            ),
            rests,
        );
        if line.description.is_none() {
            b.missing(
                &format!("The listing's description of the {}", line.device_model),
                "to show what the customer was told",
            );
        }
    }
    b.expect_evidence(
        EvidenceKind::ProductDescription,
        "The listing and grade report as an evidence item",
        "to attach what the customer saw",
    );
    let condition = b.paragraph("Condition and identity of the device shipped");
    for line in &facts.lines {
        match &line.grade_report {
            Some(report) => b.point(
                condition,
                format!(
                    "Before dispatch, a technician graded the {}: {}.",
                    line.device_model,
                    quote(report)
                ),
                vec![fact("Grade report", quote(report))],
            ),
            None => b.missing(
                &format!("The technician's grade report for the {}", line.device_model),
                "to show the condition at dispatch matched the grade listed",
            ),
        }
        match &line.imei_or_serial {
            Some(id) => {
                let mut rests = vec![fact("IMEI / serial", id.clone())];
                rests.extend(b.evidence_of(&[EvidenceKind::ImeiSerialRecord]));
                b.point(
                    condition,
                    format!(
                        "The device shipped is identified by IMEI or serial number {id}, recorded before dispatch."
                    ),
                    rests,
                );
            }
            None => b.missing(
                &format!("The IMEI or serial number of the {}", line.device_model),
                "to show the device returned or complained about is the one sold",
            ),
        }
    }
    let photos = b.evidence_of(&[EvidenceKind::Photos]);
    b.point(
        condition,
        "Photos of the device taken before dispatch are attached.".to_owned(),
        photos,
    );
    let ret = b.paragraph("The return offered");
    let policies = &facts.policies;
    let mut offered = false;
    if let Some(warranty) = &policies.warranty_policy {
        offered = true;
        b.point(
            ret,
            format!(
                "The warranty shown at checkout offers a repair, replacement or return: \"{}\".",
                quote(warranty)
            ),
            vec![fact("Warranty policy", quote(warranty))],
        );
    }
    if let Some(refund) = &policies.refund_policy {
        offered = true;
        let mut rests = vec![fact("Refund policy", quote(refund))];
        rests.extend(b.evidence_of(&[EvidenceKind::RefundPolicy]));
        b.point(
            ret,
            format!(
                "The refund policy shown at checkout lets the customer return the device: \"{}\".",
                quote(refund)
            ),
            rests,
        );
    }
    if let Some(at) = policies.terms_accepted_at {
        let mut rests = vec![fact("Terms accepted", format_time(at))];
        rests.extend(b.evidence_of(&[EvidenceKind::TermsAccepted]));
        b.point(
            ret,
            format!("The customer accepted these terms on {}.", format_time(at)),
            rests,
        );
    }
    if !offered {
        b.missing(
            "The return and warranty terms offered to the customer",
            "to show a return was offered",
        );
    }
    if facts.shipment.as_ref().and_then(|s| s.delivered_at).is_some() {
        delivery(b, facts);
    }
    "The device delivered is the one listed, in the condition its grade describes, and the customer was offered a \
     return under the terms accepted at checkout."
        .to_owned()
}

/// AVS, CVV and 3-D Secure results as a reader understands them.
fn check_meaning(check: &str, value: &str) -> String {
    let v = value.trim();
    let meaning = match (check, v.to_ascii_uppercase().as_str()) {
        ("AVS", "Y" | "X" | "D" | "F" | "M") => Some("street address and postal code match"),
        ("AVS", "A" | "B") => Some("street address matches"),
        ("AVS", "Z" | "W" | "P") => Some("postal code matches"),
        ("AVS", "N") => Some("no match"),
        ("CVV", "M" | "Y" | "PASS" | "MATCH") => Some("the security code matches"),
        ("CVV", "N" | "FAIL") => Some("the security code does not match"),
        ("3-D Secure", "AUTHENTICATED" | "Y" | "SUCCEEDED") => Some("the cardholder was authenticated by the issuer"),
        ("3-D Secure", "ATTEMPTED" | "A") => Some("authentication was attempted"),
        _ => None,
    };
    match meaning {
        Some(m) => format!("{v} ({m})"),
        None => v.to_owned(),
    }
}

/// A shared identifier as a fact of the disputed purchase.
fn shared_fact(shared: SharedIdentifier, facts: &OrderFacts) -> (String, Basis) {
    let value = |v: Option<&String>| v.cloned().unwrap_or_default();
    match shared {
        SharedIdentifier::IpAddress => (
            "IP address".to_owned(),
            fact("IP address", value(facts.payment_checks.ip_address.as_ref())),
        ),
        SharedIdentifier::DeviceId => (
            "device".to_owned(),
            fact("Device", value(facts.payment_checks.device_id.as_ref())),
        ),
        SharedIdentifier::AccountId => ("account".to_owned(), fact("Account", facts.customer.account_id.clone())),
        SharedIdentifier::ShippingAddress => (
            "shipping address".to_owned(),
            fact(
                "Shipping address",
                facts
                    .shipment
                    .as_ref()
                    .map(|s| s.address.one_line())
                    .unwrap_or_default(),
            ),
        ),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The compelling-evidence programme's verdict, stated only when the reason code falls under one.
fn compelling(b: &mut Builder<'_>, p: usize, ce: &CompellingEvidence) {
    let Some(program) = ce.program else { return };
    let name = match program {
        CompellingEvidenceProgram::VisaCe3 => "Visa Compelling Evidence 3.0",
        CompellingEvidenceProgram::MastercardFirstPartyTrust => "Mastercard First-Party Trust",
    };
    if ce.eligible {
        let mut rests: Vec<Basis> = ce
            .qualifying
            .iter()
            .map(|q| {
                fact(
                    "Qualifying payment",
                    format!("{} ({} days before)", q.payment_reference, q.days_before),
                )
            })
            .collect();
        rests.push(fact("Programme", name));
        b.point(
            p,
            format!(
                "{} of these payments were made {CE_MIN_DAYS_BEFORE} to {CE_MAX_DAYS_BEFORE} days before the disputed \
                 one and share its IP address or device and another identifier: the dispute qualifies for {name}.",
                ce.qualifying.len()
            ),
            rests,
        );
    } else {
        b.missing(
            &format!("{CE_MIN_QUALIFYING} earlier payments that qualify for {name}"),
            &ce.reason,
        );
    }
}

fn fraud(b: &mut Builder<'_>, facts: &OrderFacts, dispute: &Dispute) -> String {
    let auth = b.paragraph("How the payment was authenticated");
    let checks = &facts.payment_checks;
    let mut authenticated = false;
    for (label, value, missing) in [
        ("AVS", &checks.avs_result, "The address verification (AVS) result"),
        ("CVV", &checks.cvv_result, "The card security code (CVV) result"),
        ("3-D Secure", &checks.three_d_secure, "The 3-D Secure result"),
    ] {
        match value {
            Some(v) => {
                let meaning = check_meaning(label, v);
                if label == "3-D Secure" && meaning.contains("authenticated by the issuer") {
                    authenticated = true;
                }
                b.point(
                    auth,
                    format!("{label} result at authorisation: {meaning}."),
                    vec![fact(label, v.clone())],
                );
            }
            None => b.missing(missing, "to show the payment passed the issuer's checks"),
        }
    }
    let history = b.paragraph("The cardholder's device, network and account history");
    if let Some(ip) = &checks.ip_address {
        b.point(
            history,
            format!("The order was placed from IP address {ip}."),
            vec![fact("IP address", ip.clone())],
        );
    }
    if let Some(device) = &checks.device_id {
        b.point(
            history,
            format!("The order was placed from device {device}."),
            vec![fact("Device", device.clone())],
        );
    }
    if checks.ip_address.is_none() && checks.device_id.is_none() {
        b.missing(
            "The IP address and device of the purchase",
            "to compare the purchase with the cardholder's history",
        );
    }
    let c = &facts.customer;
    b.point(
        history,
        format!(
            "The customer's account was opened on {} and has {} earlier orders and {} earlier disputes.",
            format_date(c.account_created_at),
            c.previous_orders,
            c.previous_disputes
        ),
        vec![
            fact("Account opened", format_date(c.account_created_at)),
            fact("Previous orders", c.previous_orders.to_string()),
            fact("Previous disputes", c.previous_disputes.to_string()),
        ],
    );
    let priors = b.paragraph("Earlier undisputed payments by the same cardholder");
    let disputed = DisputedPayment::of_order(facts);
    let prior_evidence = b.evidence_of(&[EvidenceKind::PriorUndisputedTransactions]);
    let mut sharing = 0;
    for prior in facts.prior_transactions.iter().filter(|p| !p.disputed) {
        let shared = shared_identifiers(&disputed, prior);
        if shared.is_empty() {
            continue;
        }
        sharing += 1;
        let (names, bases): (Vec<String>, Vec<Basis>) = shared.iter().map(|s| shared_fact(*s, facts)).unzip();
        let mut rests = vec![
            fact("Payment", prior.payment_reference.clone()),
            fact("Paid", format_date(prior.paid_at)),
        ];
        rests.extend(bases);
        rests.extend(prior_evidence.iter().cloned());
        b.point(
            priors,
            format!(
                "Payment {} of {} on {} was never disputed and shares its {} with this purchase.",
                prior.payment_reference,
                prior.amount,
                format_date(prior.paid_at),
                english_list(&names)
            ),
            rests,
        );
    }
    let ce = compelling_evidence(&dispute.reason_code, &disputed, &facts.prior_transactions);
    compelling(b, priors, &ce);
    if sharing == 0 {
        b.missing(
            "Earlier undisputed payments sharing the purchase's IP address, device or address",
            "to show the cardholder made this purchase as they made earlier ones",
        );
    }
    b.expect_evidence(
        EvidenceKind::PriorUndisputedTransactions,
        "The earlier undisputed payments as an evidence item",
        "to attach the payment history",
    );
    let delivered = facts.shipment.as_ref().and_then(|s| s.delivered_at).is_some();
    if delivered {
        delivery(b, facts);
    }
    if authenticated {
        "The payment was authenticated by the card issuer with 3-D Secure and made by the cardholder.".to_owned()
    } else if sharing > 0 {
        "The purchase was made by the cardholder: it shares its device, network or address with earlier payments \
         the cardholder never disputed."
            .to_owned()
    } else {
        "The payment passed the checks the file records; the cardholder's history is not yet in the file.".to_owned()
    }
}

fn refund_points(b: &mut Builder<'_>, facts: &OrderFacts, p: usize) -> i64 {
    let mut refunded = 0;
    for refund in &facts.refunds {
        refunded += refund.amount.minor_units();
        let mut rests = vec![
            fact("Refunded", format_time(refund.refunded_at)),
            fact("Amount", refund.amount.to_string()),
        ];
        if let Some(r) = &refund.reference {
            rests.push(fact("Refund reference", r.clone()));
        }
        b.point(
            p,
            format!(
                "A refund of {} was made on {}{}.",
                refund.amount,
                format_date(refund.refunded_at),
                refund
                    .reference
                    .as_ref()
                    .map(|r| format!(" (reference {r})"))
                    .unwrap_or_default()
            ),
            rests,
        );
    }
    refunded
}

fn policy_points(b: &mut Builder<'_>, facts: &OrderFacts, p: usize) -> bool {
    let policies = &facts.policies;
    let Some(policy) = &policies.refund_policy else {
        b.missing(
            "The refund policy shown at checkout",
            "to show which refunds the customer is owed",
        );
        return false;
    };
    let mut rests = vec![fact("Refund policy", quote(policy))];
    rests.extend(b.evidence_of(&[EvidenceKind::RefundPolicy]));
    b.point(
        p,
        format!("The refund policy shown at checkout says: \"{}\".", quote(policy)),
        rests,
    );
    match policies.terms_accepted_at {
        Some(at) => {
            let mut rests = vec![fact("Terms accepted", format_time(at))];
            rests.extend(b.evidence_of(&[EvidenceKind::TermsAccepted]));
            b.point(
                p,
                format!("The customer accepted it on {} before paying.", format_time(at)),
                rests,
            );
        }
        None => b.missing(
            "When the customer accepted the terms",
            "to show the policy was agreed to",
        ),
    }
    true
}

fn credit_not_processed(b: &mut Builder<'_>, facts: &OrderFacts, dispute: &Dispute) -> String {
    let p = b.paragraph("Refund");
    let refunded = refund_points(b, facts, p);
    let policy = b.paragraph("Refund policy");
    let has_policy = policy_points(b, facts, policy);
    let currency_matches = facts
        .refunds
        .iter()
        .all(|r| r.amount.currency() == dispute.amount.currency());
    if refunded > 0 && currency_matches && refunded >= dispute.amount.minor_units() {
        "The disputed amount was already refunded to the cardholder; no credit remains due.".to_owned()
    } else if refunded > 0 {
        "A refund was already made to the cardholder; any further credit is governed by the refund policy accepted at \
         checkout."
            .to_owned()
    } else if has_policy {
        "No credit is due: the refund policy the cardholder accepted at checkout does not provide for one.".to_owned()
    } else {
        "The file does not yet show a refund or the refund policy that would answer this claim.".to_owned()
    }
}

fn cancelled(b: &mut Builder<'_>, facts: &OrderFacts) -> String {
    let p = b.paragraph("Cancellation");
    match &facts.cancellation {
        Some(c) => {
            let mut rests = vec![
                fact("Cancelled", format_time(c.cancelled_at)),
                fact("Recorded reason", quote(&c.reason)),
            ];
            rests.extend(b.evidence_of(&[EvidenceKind::Cancellation]));
            b.point(
                p,
                format!(
                    "The order was cancelled on {}: {}.",
                    format_time(c.cancelled_at),
                    quote(&c.reason)
                ),
                rests,
            );
            if let Some(shipped) = facts.shipment.as_ref().and_then(|s| s.shipped_at)
                && shipped < c.cancelled_at
            {
                b.point(
                    p,
                    format!(
                        "The order had already shipped on {}, before the cancellation.",
                        format_date(shipped)
                    ),
                    vec![fact("Shipped", format_time(shipped))],
                );
            }
        }
        None => b.point(
            p,
            "The marketplace has no cancellation recorded for this order.".to_owned(),
            vec![fact("Order", facts.order_reference.clone())],
        ),
    }
    refund_points(b, facts, p);
    let policy = b.paragraph("Cancellation and refund policy");
    let has_policy = policy_points(b, facts, policy);
    match (&facts.cancellation, has_policy) {
        (None, _) => "The order was not cancelled: the marketplace has no cancellation request for it.".to_owned(),
        (Some(_), true) => {
            "The cancellation was handled under the policy the cardholder accepted at checkout.".to_owned()
        }
        (Some(_), false) => {
            "The order's cancellation is recorded; the policy that governs it is not yet in the file.".to_owned()
        }
    }
}

fn processing_error(b: &mut Builder<'_>, facts: &OrderFacts, dispute: &Dispute) -> String {
    let p = b.paragraph("The payment and the order it paid");
    b.point(
        p,
        format!(
            "Payment {} of {} paid order {} ({}), placed on {}.",
            dispute.payment_reference,
            dispute.amount,
            facts.order_reference,
            facts.total,
            format_date(facts.placed_at)
        ),
        vec![
            fact("Payment", dispute.payment_reference.clone()),
            fact("Order", facts.order_reference.clone()),
            fact("Order total", facts.total.to_string()),
        ],
    );
    if facts.total.currency() == dispute.amount.currency() && facts.total.minor_units() == dispute.amount.minor_units()
    {
        b.point(
            p,
            "The amount charged is the order's total.".to_owned(),
            vec![fact("Order total", facts.total.to_string())],
        );
    }
    refund_points(b, facts, p);
    b.missing(
        "The other charge the cardholder considers a duplicate, if any",
        "to show each charge paid a different order",
    );
    "The amount charged is the order's own, charged once for the order the cardholder placed.".to_owned()
}

fn authorization(b: &mut Builder<'_>, facts: &OrderFacts) -> String {
    let p = b.paragraph("Authorisation");
    let checks = &facts.payment_checks;
    for (label, value) in [
        ("AVS", &checks.avs_result),
        ("CVV", &checks.cvv_result),
        ("3-D Secure", &checks.three_d_secure),
    ] {
        if let Some(v) = value {
            b.point(
                p,
                format!("{label} result at authorisation: {}.", check_meaning(label, v)),
                vec![fact(label, v.clone())],
            );
        }
    }
    b.missing(
        "The authorisation code and date of the payment",
        "to show the issuer approved the payment",
    );
    "The payment was approved by the card issuer at authorisation.".to_owned()
}

fn general(b: &mut Builder<'_>, facts: &OrderFacts) -> String {
    let delivered = delivery(b, facts);
    let p = b.paragraph("The terms agreed");
    policy_points(b, facts, p);
    if delivered {
        "The order was delivered as agreed, under the terms the cardholder accepted at checkout.".to_owned()
    } else {
        "The order was placed under the terms the cardholder accepted at checkout.".to_owned()
    }
}

fn correspondence(b: &mut Builder<'_>, facts: &OrderFacts) {
    let from_customer: Vec<_> = facts
        .messages
        .iter()
        .filter(|m| m.author == MessageAuthor::Customer)
        .collect();
    let p = b.paragraph("Correspondence");
    if let Some(first) = from_customer.first() {
        let mut rests = vec![
            fact("Messages from the customer", from_customer.len().to_string()),
            fact("First", format_time(first.sent_at)),
        ];
        rests.extend(b.evidence_of(&[EvidenceKind::CustomerCommunication]));
        b.point(
            p,
            format!(
                "The customer wrote to us {}; the messages are quoted below in the language they were written in.",
                match from_customer.len() {
                    1 => "once".to_owned(),
                    2 => "twice".to_owned(),
                    n => format!("{n} times"),
                }
            ),
            rests,
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    use super::*;
    use crate::facts::{
        Address, Cancellation, CheckoutPolicies, CustomerFacts, OrderLine, OrderMessage, OrderRefund, PaymentChecks,
        PriorTransaction, SellerFacts, Shipment,
    };
    use crate::machine::{Action, Actor, Command, open, replay};
    use crate::{CardNetwork, Currency, Customer, DisputeId, EvidenceSource, Locale, Money, NewDispute, Processor};
    use crate::{ReasonCode, Stage};

    fn at(day: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 9, 1, 9, 0, 0).single().unwrap_or_default() + Duration::days(day)
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
    }

    fn dispute(network: CardNetwork, code: &str) -> Dispute {
        let new = NewDispute {
            processor: Processor::Stripe,
            processor_dispute_id: "dp_1".into(),
            payment_reference: "ch_1".into(),
            order_reference: Some("BM-1".into()),
            seller_id: None,
            customer: Customer {
                name: None,
                email: None,
                locale: Locale::Fr,
            },
            amount: eur(34_900),
            reason_code: ReasonCode::parse(network, code).unwrap_or_else(|e| panic!("{e}")),
            reason_code_raw: code.into(),
            stage: Stage::Chargeback,
            due_by: None,
            opened_at: at(30),
        };
        let command = Command::new(Actor::system("test"), Action::Open(Box::new(new)));
        let decision = open(DisputeId::new_v7(), &command, at(30)).unwrap_or_else(|e| panic!("{e}"));
        replay(&decision.events).unwrap_or_else(|| panic!("no dispute"))
    }

    fn address() -> Address {
        Address {
            lines: vec!["27 rue de la Côte-d'Or".into()],
            postal_code: "69003".into(),
            city: "Lyon".into(),
            country: "FR".into(),
        }
    }

    fn prior(reference: &str, day: i64, ip: Option<&str>, device: Option<&str>) -> PriorTransaction {
        PriorTransaction {
            payment_reference: reference.into(),
            paid_at: at(day),
            amount: eur(1_990),
            ip_address: ip.map(str::to_owned),
            device_id: device.map(str::to_owned),
            shipping_address: Some(address()),
            account_id: Some("cust-1".into()),
            disputed: false,
        }
    }

    fn facts() -> OrderFacts {
        OrderFacts {
            order_reference: "BM-1".into(),
            payment_references: vec!["ch_1".into()],
            placed_at: at(0),
            total: eur(34_900),
            seller: SellerFacts {
                seller_id: "s-1".into(),
                name: "Atelier".into(),
                email: None,
                ships_itself: true,
            },
            lines: vec![OrderLine {
                device_model: "iPhone 13".into(),
                grade: "excellent".into(),
                imei_or_serial: Some("356789104563218".into()),
                price: eur(34_900),
                description: Some("Excellent condition, battery at least 85%".into()),
                grade_report: Some("Battery 91%, no scratches".into()),
            }],
            shipment: Some(Shipment {
                carrier: "Colissimo".into(),
                tracking_number: "6A219".into(),
                shipped_at: Some(at(1)),
                delivered_at: Some(at(3)),
                address: address(),
                proof_of_delivery: Some("signature at the door".into()),
                signed_by: Some("Hélène".into()),
            }),
            customer: CustomerFacts {
                account_id: "cust-1".into(),
                name: "Hélène Lefèvre".into(),
                email: "helene@example.fr".into(),
                locale: Locale::Fr,
                account_created_at: at(-700),
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
                prior("ch_prior_1", -200, Some("203.0.113.24"), Some("dev-7f3a9c")),
                prior("ch_prior_2", -150, Some("203.0.113.24"), None),
            ],
            messages: vec![OrderMessage {
                sent_at: at(20),
                author: MessageAuthor::Customer,
                locale: Locale::Fr,
                body: "Je n'ai rien reçu".into(),
            }],
            policies: CheckoutPolicies {
                refund_policy: Some("Returns within 30 days".into()),
                warranty_policy: Some("12-month warranty".into()),
                terms_accepted_at: Some(at(0)),
            },
            cancellation: None,
            refunds: Vec::new(),
        }
    }

    fn item(kind: EvidenceKind) -> EvidenceItem {
        EvidenceItem {
            id: Uuid::now_v7(),
            kind,
            text: Some(kind.as_str().to_owned()),
            file: None,
            source: EvidenceSource::Analyst,
            added_by: "analyst:test".into(),
            added_at: at(31),
        }
    }

    fn statements(defense: &Defense) -> Vec<&str> {
        defense
            .paragraphs
            .iter()
            .flat_map(|p| p.points.iter().map(|pt| pt.statement.as_str()))
            .collect()
    }

    fn missing(defense: &Defense) -> Vec<&str> {
        defense.missing.iter().map(|m| m.fact.as_str()).collect()
    }

    #[test]
    fn not_received_argues_delivery_to_the_address_on_the_order_with_tracking_and_proof() {
        let evidence = [item(EvidenceKind::ProofOfDelivery), item(EvidenceKind::Tracking)];
        let defense = argue(&dispute(CardNetwork::Visa, "13.1"), Some(&facts()), &evidence);
        assert!(
            defense.position.contains("delivered by Colissimo"),
            "{}",
            defense.position
        );
        let all = statements(&defense).join("\n");
        assert!(all.contains("27 rue de la Côte-d'Or, 69003 Lyon, FR"), "{all}");
        assert!(all.contains("tracking number 6A219"));
        assert!(all.contains("recorded the delivery to that address on 2026-09-04"));
        assert!(all.contains("signed for by Hélène"));
        assert!(missing(&defense).is_empty(), "{:?}", defense.missing);
        // The delivery point cites the proof of delivery item.
        let cites = defense.paragraphs[0].points.iter().any(|p| {
            p.rests_on.iter().any(|b| {
                matches!(
                    b,
                    Basis::Evidence {
                        kind: EvidenceKind::ProofOfDelivery,
                        ..
                    }
                )
            })
        });
        assert!(cites);
    }

    #[test]
    fn not_received_without_a_delivery_never_claims_one_and_says_what_is_missing() {
        let mut f = facts();
        if let Some(s) = f.shipment.as_mut() {
            s.delivered_at = None;
            s.proof_of_delivery = None;
            s.signed_by = None;
        }
        let defense = argue(&dispute(CardNetwork::Visa, "13.1"), Some(&f), &[]);
        assert!(
            defense.position.contains("does not yet show its delivery"),
            "{}",
            defense.position
        );
        assert!(!statements(&defense).iter().any(|s| s.contains("recorded the delivery")));
        let missing = missing(&defense);
        assert!(missing.contains(&"The delivery date"), "{missing:?}");
        assert!(missing.contains(&"The carrier's proof of delivery or signature"));
        assert!(missing.contains(&"The carrier's tracking record as an evidence item"));

        f.shipment = None;
        let defense = argue(&dispute(CardNetwork::Visa, "13.1"), Some(&f), &[]);
        assert_eq!(
            defense.position,
            "The file does not yet show that the order was shipped."
        );
        assert!(missing_has(&defense, "The shipment"));
    }

    fn missing_has(defense: &Defense, prefix: &str) -> bool {
        defense.missing.iter().any(|m| m.fact.starts_with(prefix))
    }

    #[test]
    fn not_as_described_argues_the_listing_the_grade_report_the_imei_and_the_return_offer() {
        let evidence = [
            item(EvidenceKind::ProductDescription),
            item(EvidenceKind::ImeiSerialRecord),
            item(EvidenceKind::Photos),
        ];
        let defense = argue(&dispute(CardNetwork::Visa, "13.3"), Some(&facts()), &evidence);
        let headings: Vec<&str> = defense.paragraphs.iter().map(|p| p.heading.as_str()).collect();
        assert_eq!(
            &headings[..3],
            [
                "The listing the customer bought from",
                "Condition and identity of the device shipped",
                "The return offered"
            ]
        );
        let all = statements(&defense).join("\n");
        assert!(all.contains("listed in grade \"excellent\""), "{all}");
        assert!(all.contains("Battery 91%, no scratches"));
        assert!(all.contains("IMEI or serial number 356789104563218"));
        assert!(all.contains("Photos of the device"));
        assert!(all.contains("Returns within 30 days"));

        let mut f = facts();
        f.lines[0].grade_report = None;
        f.lines[0].imei_or_serial = None;
        f.policies = CheckoutPolicies::default();
        let defense = argue(&dispute(CardNetwork::Visa, "13.3"), Some(&f), &[]);
        assert!(missing_has(&defense, "The technician's grade report"));
        assert!(missing_has(&defense, "The IMEI or serial number"));
        assert!(missing_has(&defense, "The return and warranty terms"));
        assert!(!statements(&defense).iter().any(|s| s.contains("IMEI")));
        assert!(
            !statements(&defense).iter().any(|s| s.contains("Photos")),
            "no photos, no claim of photos"
        );
    }

    #[test]
    fn fraud_argues_the_checks_the_history_and_compelling_evidence_when_eligible() {
        let d = dispute(CardNetwork::Visa, "10.4");
        let defense = argue(&d, Some(&facts()), &[item(EvidenceKind::PriorUndisputedTransactions)]);
        assert!(defense.position.contains("3-D Secure"), "{}", defense.position);
        let all = statements(&defense).join("\n");
        assert!(
            all.contains("AVS result at authorisation: Y (street address and postal code match)"),
            "{all}"
        );
        assert!(all.contains("CVV result at authorisation: M"));
        assert!(all.contains("IP address 203.0.113.24"));
        assert!(all.contains("Payment ch_prior_1"));
        assert!(all.contains("qualifies for Visa Compelling Evidence 3.0"), "{all}");

        // One qualifying prior payment is not enough: CE 3.0 is listed as missing, never claimed.
        let mut f = facts();
        f.prior_transactions.truncate(1);
        let defense = argue(&d, Some(&f), &[]);
        assert!(!statements(&defense).join("\n").contains("qualifies for"));
        assert!(missing_has(
            &defense,
            "2 earlier payments that qualify for Visa Compelling Evidence 3.0"
        ));

        // Without 3-D Secure, the position does not claim authentication.
        let mut f = facts();
        f.payment_checks.three_d_secure = None;
        let defense = argue(&d, Some(&f), &[]);
        assert!(!defense.position.contains("3-D Secure"), "{}", defense.position);
        assert!(missing_has(&defense, "The 3-D Secure result"));
    }

    #[test]
    fn compelling_evidence_is_mentioned_only_for_the_codes_it_covers() {
        let defense = argue(&dispute(CardNetwork::Visa, "10.5"), Some(&facts()), &[]);
        let all = statements(&defense).join("\n");
        assert!(!all.contains("Compelling Evidence"), "{all}");
        assert!(!defense.missing.iter().any(|m| m.fact.contains("Compelling Evidence")));
    }

    #[test]
    fn credit_not_processed_answers_with_the_refund_or_the_policy() {
        let d = dispute(CardNetwork::Visa, "13.6");
        let mut f = facts();
        f.refunds = vec![OrderRefund {
            refunded_at: at(10),
            amount: eur(34_900),
            reference: Some("re_1".into()),
        }];
        let defense = argue(&d, Some(&f), &[]);
        assert!(defense.position.contains("already refunded"), "{}", defense.position);
        assert!(
            statements(&defense)
                .join("\n")
                .contains("A refund of 349.00 EUR was made on 2026-09-11 (reference re_1).")
        );

        let defense = argue(&d, Some(&facts()), &[]);
        assert!(defense.position.starts_with("No credit is due"), "{}", defense.position);

        let mut f = facts();
        f.policies = CheckoutPolicies::default();
        let defense = argue(&d, Some(&f), &[]);
        assert!(defense.position.contains("does not yet show"), "{}", defense.position);
        assert!(missing_has(&defense, "The refund policy shown at checkout"));
    }

    #[test]
    fn a_cancellation_is_answered_with_its_dates_and_the_policy() {
        let d = dispute(CardNetwork::Visa, "13.2");
        let mut f = facts();
        f.cancellation = Some(Cancellation {
            cancelled_at: at(5),
            reason: "customer asked after delivery".into(),
        });
        let defense = argue(&d, Some(&f), &[]);
        let all = statements(&defense).join("\n");
        assert!(all.contains("The order was cancelled on 2026-09-06"), "{all}");
        assert!(all.contains("already shipped on 2026-09-02, before the cancellation"));
        assert!(all.contains("Returns within 30 days"));
        let defense = argue(&d, Some(&facts()), &[]);
        assert!(
            defense.position.starts_with("The order was not cancelled"),
            "{}",
            defense.position
        );
    }

    #[test]
    fn without_an_order_no_argument_is_made_and_the_order_is_missing() {
        let defense = argue(&dispute(CardNetwork::Visa, "13.1"), None, &[]);
        assert!(!defense.has_argument());
        assert!(missing_has(&defense, "The order behind the payment"));
    }

    const CODES: [&str; 9] = ["10.4", "10.5", "11.3", "12.6", "13.1", "13.2", "13.3", "13.6", "13.8"];

    proptest! {
        /// Whatever the claim and whichever facts are known, every point rests on something, every fact it
        /// rests on has a value, and no statement mentions a fact the file does not hold.
        #[test]
        fn every_point_rests_on_facts_that_exist(
            code in 0..CODES.len(),
            shipped in any::<bool>(),
            delivered in any::<bool>(),
            checks in any::<bool>(),
            policies in any::<bool>(),
            imei in any::<bool>(),
            priors in any::<bool>(),
        ) {
            let mut f = facts();
            if !shipped {
                f.shipment = None;
            } else if let (false, Some(s)) = (delivered, f.shipment.as_mut()) {
                s.delivered_at = None;
            }
            if !checks {
                f.payment_checks = PaymentChecks::default();
            }
            if !policies {
                f.policies = CheckoutPolicies::default();
            }
            if !imei {
                f.lines[0].imei_or_serial = None;
            }
            if !priors {
                f.prior_transactions.clear();
            }
            let defense = argue(&dispute(CardNetwork::Visa, CODES[code]), Some(&f), &[]);
            for point in defense.paragraphs.iter().flat_map(|p| &p.points) {
                prop_assert!(!point.rests_on.is_empty(), "{}", point.statement);
                for basis in &point.rests_on {
                    if let Basis::Fact { label, value } = basis {
                        prop_assert!(!value.trim().is_empty(), "{label} is empty in `{}`", point.statement);
                    }
                }
                let s = &point.statement;
                prop_assert!(shipped || !s.contains("tracking number"), "{s}");
                prop_assert!(delivered && shipped || !s.contains("recorded the delivery"), "{s}");
                prop_assert!(imei || !s.contains("IMEI"), "{s}");
                prop_assert!(checks || !s.contains("result at authorisation"), "{s}");
                prop_assert!(priors || !s.contains("never disputed"), "{s}");
            }
            prop_assert!(defense.paragraphs.iter().all(|p| !p.points.is_empty()));
        }
    }
}
