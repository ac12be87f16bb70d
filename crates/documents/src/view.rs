//! What a document shows, as plain values: the one view both the HTML templates and the PDF layout render,
//! so that the two formats cannot say different things.

use chrono::{DateTime, Utc};
use serde::Serialize;
use verdict_domain::defense::{Basis, Defense, format_date, format_time};
use verdict_domain::facts::{MessageAuthor, OrderFacts};
use verdict_domain::machine::{ActorKind, Change};
use verdict_domain::{Dispute, DisputeEvent, EvidenceItem, EvidenceKind, Locale};

use crate::DocumentInput;

/// Characters of an item's text shown as its description in the index.
const DESCRIPTION_CHARS: usize = 160;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DisputeView {
    pub id: String,
    pub processor: String,
    pub processor_dispute_id: String,
    pub payment_reference: String,
    pub order_reference: Option<String>,
    pub amount: String,
    pub reason_code: String,
    pub reason_title: Option<String>,
    pub stage: String,
    pub status: String,
    pub opened_at: String,
    pub due_by: Option<String>,
    pub queue: Option<String>,
    pub assignee: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PointView {
    pub statement: String,
    /// `Carrier: Colissimo`, `Evidence 2 (proof of delivery)`.
    pub rests_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ParagraphView {
    pub heading: String,
    pub points: Vec<PointView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MissingView {
    pub fact: String,
    pub needed_for: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct EvidenceView {
    /// 1-based, as the letter cites it.
    pub number: usize,
    pub kind: String,
    pub description: String,
    pub file_name: Option<String>,
    pub size: Option<String>,
    pub sha256_prefix: Option<String>,
    pub added_by: String,
    pub added_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageView {
    pub sent_at: String,
    pub author: String,
    /// BCP 47 tag for the HTML `lang` attribute.
    pub lang: String,
    pub language: String,
    /// Set when the message is not in English, the document's language.
    pub original_language: bool,
    pub body: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimelineView {
    pub at: String,
    pub what: String,
    pub by: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrderView {
    pub facts: Vec<(String, String)>,
    pub lines: Vec<Vec<String>>,
}

/// The defense document: cover letter, evidence index, customer messages and timeline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DefenseView {
    pub title: String,
    pub generated_at: String,
    pub dispute: DisputeView,
    pub merchant: Option<String>,
    pub position: String,
    pub paragraphs: Vec<ParagraphView>,
    pub missing: Vec<MissingView>,
    pub evidence: Vec<EvidenceView>,
    pub messages: Vec<MessageView>,
    pub timeline: Vec<TimelineView>,
}

/// The case file: the dispute's facts, evidence, decisions and timeline on one page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseFileView {
    pub title: String,
    pub generated_at: String,
    pub dispute: DisputeView,
    pub customer: Vec<(String, String)>,
    pub order: Option<OrderView>,
    pub position: String,
    pub missing: Vec<MissingView>,
    pub evidence: Vec<EvidenceView>,
    pub decisions: Vec<TimelineView>,
    pub timeline: Vec<TimelineView>,
}

pub(crate) fn kind_label(kind: EvidenceKind) -> &'static str {
    match kind {
        EvidenceKind::ProofOfDelivery => "Proof of delivery",
        EvidenceKind::Tracking => "Tracking",
        EvidenceKind::CustomerCommunication => "Customer communication",
        EvidenceKind::ProductDescription => "Product description and grade report",
        EvidenceKind::ImeiSerialRecord => "IMEI / serial record",
        EvidenceKind::Photos => "Photos",
        EvidenceKind::RefundPolicy => "Refund policy",
        EvidenceKind::TermsAccepted => "Terms accepted",
        EvidenceKind::PriorUndisputedTransactions => "Prior undisputed transactions",
        EvidenceKind::Cancellation => "Cancellation",
        EvidenceKind::Uncategorised => "Other",
    }
}

fn language_name(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "English",
        Locale::Fr => "French",
        Locale::Es => "Spanish",
        Locale::It => "Italian",
    }
}

/// `1.2 MB`, `350 KB`, `812 bytes`.
pub(crate) fn human_size(bytes: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * 1024;
    if bytes >= MB {
        format!("{}.{} MB", bytes / MB, (bytes % MB) * 10 / MB)
    } else if bytes >= KB {
        format!("{} KB", bytes.div_ceil(KB))
    } else {
        format!("{bytes} bytes")
    }
}

fn title_case(s: &str) -> String {
    let text = s.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn dispute_view(dispute: &Dispute) -> DisputeView {
    DisputeView {
        id: dispute.id.to_string(),
        processor: processor_name(dispute),
        processor_dispute_id: dispute.processor_dispute_id.clone(),
        payment_reference: dispute.payment_reference.clone(),
        order_reference: dispute.order_reference.clone(),
        amount: dispute.amount.to_string(),
        reason_code: format!(
            "{} {}",
            title_case(dispute.reason_code.network().as_str()),
            dispute.reason_code.code()
        ),
        reason_title: dispute.reason_code.title().map(str::to_owned),
        stage: title_case(dispute.stage.as_str()),
        status: title_case(dispute.status.as_str()),
        opened_at: format_time(dispute.opened_at),
        due_by: dispute.due_by.map(format_time),
        queue: dispute.queue.map(|q| title_case(q.as_str())),
        assignee: dispute.assignee.clone(),
        version: dispute.version,
    }
}

fn processor_name(dispute: &Dispute) -> String {
    match dispute.processor {
        verdict_domain::Processor::Stripe => "Stripe",
        verdict_domain::Processor::Adyen => "Adyen",
        verdict_domain::Processor::Paypal => "PayPal",
        verdict_domain::Processor::Braintree => "Braintree",
        verdict_domain::Processor::Manual => "the card network",
    }
    .to_owned()
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{}…", cut.trim_end())
    }
}

pub(crate) fn evidence_views(items: &[EvidenceItem]) -> Vec<EvidenceView> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| EvidenceView {
            number: i + 1,
            kind: kind_label(item.kind).to_owned(),
            description: item
                .text
                .as_deref()
                .map(|t| one_line(t, DESCRIPTION_CHARS))
                .filter(|t| !t.is_empty())
                .or_else(|| item.file.as_ref().map(|f| format!("File: {}", f.content_type.mime())))
                .unwrap_or_default(),
            file_name: item.file.as_ref().map(|f| f.file_name.clone()),
            size: item.file.as_ref().map(|f| human_size(f.size_bytes)),
            sha256_prefix: item.file.as_ref().map(|f| f.sha256.chars().take(12).collect()),
            added_by: item.added_by.clone(),
            added_at: format_time(item.added_at),
        })
        .collect()
}

fn points(defense: &Defense, items: &[EvidenceItem]) -> Vec<ParagraphView> {
    defense
        .paragraphs
        .iter()
        .filter(|p| !p.points.is_empty())
        .map(|p| ParagraphView {
            heading: p.heading.clone(),
            points: p
                .points
                .iter()
                .map(|point| PointView {
                    statement: point.statement.clone(),
                    rests_on: point
                        .rests_on
                        .iter()
                        .map(|basis| match basis {
                            Basis::Fact { label, value } => format!("{label}: {value}"),
                            Basis::Evidence { item_id, kind } => match items.iter().position(|i| i.id == *item_id) {
                                Some(n) => format!("Evidence {} ({})", n + 1, kind_label(*kind)),
                                None => kind_label(*kind).to_owned(),
                            },
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

fn missing(defense: &Defense) -> Vec<MissingView> {
    defense
        .missing
        .iter()
        .map(|m| MissingView {
            fact: m.fact.clone(),
            needed_for: m.needed_for.clone(),
        })
        .collect()
}

fn messages(facts: Option<&OrderFacts>) -> Vec<MessageView> {
    let Some(facts) = facts else { return Vec::new() };
    let mut messages: Vec<_> = facts.messages.iter().collect();
    messages.sort_by_key(|m| m.sent_at);
    messages
        .into_iter()
        .map(|m| MessageView {
            sent_at: format_time(m.sent_at),
            author: match m.author {
                MessageAuthor::Customer => "Customer",
                MessageAuthor::Marketplace => "Marketplace",
                MessageAuthor::Seller => "Seller",
            }
            .to_owned(),
            lang: m.locale.as_str().to_owned(),
            language: language_name(m.locale).to_owned(),
            original_language: m.locale != Locale::En,
            body: m.body.trim().to_owned(),
        })
        .collect()
}

/// Who did something, as a processor may read it: roles, not people's key names.
fn public_actor(event: &DisputeEvent, dispute: &Dispute) -> String {
    match event.actor.kind {
        ActorKind::Analyst => "Dispute analyst".to_owned(),
        ActorKind::Processor => processor_name(dispute),
        ActorKind::Timer | ActorKind::Step | ActorKind::System | ActorKind::Policy => "Verdict (automatic)".to_owned(),
    }
}

/// What an event means in the timeline; `None` for what stays inside the house.
fn describe(change: &Change, internal: bool) -> Option<(String, Option<String>)> {
    let status = |s: verdict_domain::Status| title_case(s.as_str()).to_lowercase();
    Some(match change {
        Change::Opened { dispute } => (
            "Dispute opened".to_owned(),
            Some(format!(
                "{} for {}, reason code {} {}",
                title_case(dispute.stage.as_str()),
                dispute.amount,
                title_case(dispute.reason_code.network().as_str()),
                dispute.reason_code.code()
            )),
        ),
        Change::Transitioned { from, to, manual, .. } => (
            format!("Status: {} → {}", status(*from), status(*to)),
            (*manual && internal).then(|| "manual correction".to_owned()),
        ),
        Change::StageAdvanced { from, to, due_by } => (
            format!("Stage: {} → {}", status_stage(*from), status_stage(*to)),
            due_by.map(|d| format!("respond by {}", format_time(d))),
        ),
        Change::DueByChanged { to, .. } => (
            "Response deadline changed".to_owned(),
            to.map(|d| format!("respond by {}", format_time(d))),
        ),
        Change::ProcessorUpdated {
            from,
            to,
            stage_from,
            stage_to,
            due_by_to,
            ..
        } => {
            let mut parts = Vec::new();
            if from != to {
                parts.push(format!("status {} → {}", status(*from), status(*to)));
            }
            if stage_from != stage_to {
                parts.push(format!(
                    "stage {} → {}",
                    status_stage(*stage_from),
                    status_stage(*stage_to)
                ));
            }
            if let Some(d) = due_by_to {
                parts.push(format!("respond by {}", format_time(*d)));
            }
            (
                "Processor update".to_owned(),
                Some(parts.join("; ")).filter(|p| !p.is_empty()),
            )
        }
        Change::OutcomeReceived { to, .. } => (format!("Outcome: {}", status(*to)), None),
        Change::OutcomeOverridden { to, .. } if internal => {
            (format!("Outcome recorded by a lead: {}", status(*to)), None)
        }
        Change::Assigned { to, .. } if internal => (
            "Assigned".to_owned(),
            Some(to.clone().unwrap_or_else(|| "nobody".to_owned())),
        ),
        Change::NoteAdded { note } if internal => ("Note".to_owned(), Some(one_line(note, 400))),
        Change::ReminderRecorded { hours_before } if internal => (
            "Deadline reminder".to_owned(),
            Some(format!("{hours_before} h before acting")),
        ),
        Change::OutcomeEscalated if internal => ("Overdue outcome escalated".to_owned(), None),
        Change::DocumentGenerated { document } if internal => (
            match document.kind {
                verdict_domain::DocumentKind::Defense => "Defense document generated",
                verdict_domain::DocumentKind::CaseFile => "Case file generated",
            }
            .to_owned(),
            Some(format!(
                "version {}, SHA-256 {}…",
                document.version,
                document.sha256.chars().take(12).collect::<String>()
            )),
        ),
        Change::ActByPassed { .. } if internal => ("Act-by time passed".to_owned(), None),
        Change::SellerDidNotAnswer { due_at } if internal => (
            "The seller did not answer".to_owned(),
            Some(format!("seller task due {}", due_at.format("%Y-%m-%d %H:%M UTC"))),
        ),
        other if internal => (title_case(other.kind().as_str()), None),
        _ => return None,
    })
}

fn status_stage(stage: verdict_domain::Stage) -> String {
    title_case(stage.as_str()).to_lowercase()
}

fn dispute_timeline(
    input: &DocumentInput<'_>,
    internal: bool,
    keep: impl Fn(&DisputeEvent) -> bool,
) -> Vec<(DateTime<Utc>, TimelineView)> {
    input
        .events
        .iter()
        .filter(|e| keep(e))
        .filter_map(|event| {
            let (what, detail) = describe(&event.change, internal)?;
            let by = if internal {
                event.actor.label()
            } else {
                public_actor(event, input.dispute)
            };
            let detail = match (&event.reason, internal, detail) {
                (Some(reason), true, Some(d)) => Some(format!("{d} — {}", one_line(reason, 300))),
                (Some(reason), true, None) => Some(one_line(reason, 300)),
                (_, _, d) => d,
            };
            Some((
                event.at,
                TimelineView {
                    at: format_time(event.at),
                    what,
                    by,
                    detail,
                },
            ))
        })
        .collect()
}

/// The order's own history (placed, shipped, delivered, refunded, cancelled, messages), from the facts.
fn order_timeline(facts: &OrderFacts) -> Vec<(DateTime<Utc>, TimelineView)> {
    let entry = |at: DateTime<Utc>, what: &str, detail: Option<String>| {
        (
            at,
            TimelineView {
                at: format_time(at),
                what: what.to_owned(),
                by: "Marketplace".to_owned(),
                detail,
            },
        )
    };
    let mut out = vec![entry(
        facts.placed_at,
        "Order placed",
        Some(format!("order {}, {}", facts.order_reference, facts.total)),
    )];
    if let Some(at) = facts.policies.terms_accepted_at {
        out.push(entry(at, "Terms and refund policy accepted at checkout", None));
    }
    if let Some(shipment) = &facts.shipment {
        if let Some(at) = shipment.shipped_at {
            out.push(entry(
                at,
                "Shipped",
                Some(format!("{} tracking {}", shipment.carrier, shipment.tracking_number)),
            ));
        }
        if let Some(at) = shipment.delivered_at {
            out.push(entry(
                at,
                "Delivered",
                shipment.signed_by.as_ref().map(|s| format!("signed for by {s}")),
            ));
        }
    }
    for message in &facts.messages {
        let who = match message.author {
            MessageAuthor::Customer => "Message from the customer",
            MessageAuthor::Marketplace => "Message to the customer",
            MessageAuthor::Seller => "Message from the seller",
        };
        out.push(entry(
            message.sent_at,
            who,
            Some(format!("in {} (quoted below)", language_name(message.locale))),
        ));
    }
    for refund in &facts.refunds {
        out.push(entry(
            refund.refunded_at,
            "Refund issued",
            Some(refund.amount.to_string()),
        ));
    }
    if let Some(c) = &facts.cancellation {
        out.push(entry(c.cancelled_at, "Order cancelled", Some(one_line(&c.reason, 200))));
    }
    out
}

fn sorted(mut entries: Vec<(DateTime<Utc>, TimelineView)>) -> Vec<TimelineView> {
    // Stable: events of one instant keep their order.
    entries.sort_by_key(|(at, _)| *at);
    entries.into_iter().map(|(_, v)| v).collect()
}

pub(crate) fn defense(input: &DocumentInput<'_>, defense: &Defense) -> DefenseView {
    let dispute = dispute_view(input.dispute);
    let mut timeline = dispute_timeline(input, false, |_| true);
    if let Some(facts) = input.facts {
        timeline.extend(order_timeline(facts));
    }
    DefenseView {
        title: format!(
            "Dispute response – {} case {}",
            dispute.processor, dispute.processor_dispute_id
        ),
        generated_at: format_time(input.generated_at),
        merchant: input.facts.map(|f| f.seller.name.clone()),
        position: defense.position.clone(),
        paragraphs: points(defense, input.evidence),
        missing: missing(defense),
        evidence: evidence_views(input.evidence),
        messages: messages(input.facts),
        timeline: sorted(timeline),
        dispute,
    }
}

pub(crate) fn case_file(input: &DocumentInput<'_>, defense: &Defense) -> CaseFileView {
    let d = input.dispute;
    let mut customer = Vec::new();
    if let Some(name) = &d.customer.name {
        customer.push(("Name".to_owned(), name.expose().to_owned()));
    }
    if let Some(email) = &d.customer.email {
        customer.push(("Email".to_owned(), email.expose().to_owned()));
    }
    customer.push(("Language".to_owned(), language_name(d.customer.locale).to_owned()));
    let order = input.facts.map(|f| {
        if d.customer.name.is_none() {
            customer.push(("Name".to_owned(), f.customer.name.clone()));
        }
        customer.push(("Account".to_owned(), f.customer.account_id.clone()));
        customer.push(("Account opened".to_owned(), format_date(f.customer.account_created_at)));
        customer.push((
            "History".to_owned(),
            format!(
                "{} previous orders, {} previous disputes",
                f.customer.previous_orders, f.customer.previous_disputes
            ),
        ));
        let mut facts = vec![
            ("Order".to_owned(), f.order_reference.clone()),
            ("Placed".to_owned(), format_time(f.placed_at)),
            ("Total".to_owned(), f.total.to_string()),
            (
                "Seller".to_owned(),
                format!("{} ({})", f.seller.name, f.seller.seller_id),
            ),
        ];
        match &f.shipment {
            Some(s) => {
                facts.push(("Shipment".to_owned(), format!("{} {}", s.carrier, s.tracking_number)));
                facts.push(("Delivery address".to_owned(), s.address.one_line()));
                facts.push((
                    "Delivered".to_owned(),
                    s.delivered_at
                        .map(format_time)
                        .unwrap_or_else(|| "not recorded".to_owned()),
                ));
            }
            None => facts.push(("Shipment".to_owned(), "none recorded".to_owned())),
        }
        let checks = &f.payment_checks;
        let check = |v: &Option<String>| v.clone().unwrap_or_else(|| "not recorded".to_owned());
        facts.push((
            "Payment checks".to_owned(),
            format!(
                "AVS {}, CVV {}, 3-D Secure {}",
                check(&checks.avs_result),
                check(&checks.cvv_result),
                check(&checks.three_d_secure)
            ),
        ));
        OrderView {
            facts,
            lines: f
                .lines
                .iter()
                .map(|l| {
                    vec![
                        l.device_model.clone(),
                        l.grade.clone(),
                        l.imei_or_serial.clone().unwrap_or_else(|| "–".to_owned()),
                        l.price.to_string(),
                    ]
                })
                .collect(),
        }
    });
    // Decisions: what people did, and whatever was done with a stated reason.
    let decisions = dispute_timeline(input, true, |e| {
        e.actor.kind == ActorKind::Analyst || e.reason.is_some()
    })
    .into_iter()
    .map(|(_, view)| view)
    .collect();
    let mut timeline = dispute_timeline(input, true, |_| true);
    if let Some(facts) = input.facts {
        timeline.extend(order_timeline(facts));
    }
    let dispute = dispute_view(d);
    CaseFileView {
        title: format!(
            "Case file – {} case {}",
            dispute.processor, dispute.processor_dispute_id
        ),
        generated_at: format_time(input.generated_at),
        customer,
        order,
        position: defense.position.clone(),
        missing: missing(defense),
        evidence: evidence_views(input.evidence),
        decisions,
        timeline: sorted(timeline),
        dispute,
    }
}
