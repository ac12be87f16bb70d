//! The PDF's blocks, built from the same view as the HTML templates and in the same order and words.

use crate::pdf::{Block, Span};
use crate::view::{CaseFileView, DefenseView, DisputeView, EvidenceView, TimelineView};

pub(crate) fn footer(dispute: &DisputeView, what: &str) -> String {
    format!(
        "{what} · {} case {} · dispute {} v{}",
        dispute.processor, dispute.processor_dispute_id, dispute.id, dispute.version
    )
}

fn timeline_table(entries: &[TimelineView], last: &str) -> Block {
    Block::Table {
        widths: vec![0.23, 0.25, 0.17, 0.35],
        header: vec!["When".into(), "What".into(), "By".into(), last.into()],
        rows: entries
            .iter()
            .map(|e| {
                vec![
                    e.at.clone(),
                    e.what.clone(),
                    e.by.clone(),
                    e.detail.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    }
}

fn dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "–".to_owned())
}

fn evidence_index(items: &[EvidenceView]) -> Block {
    Block::Table {
        widths: vec![0.04, 0.17, 0.29, 0.24, 0.09, 0.17],
        header: vec![
            "#".into(),
            "Kind".into(),
            "Description".into(),
            "File".into(),
            "Size".into(),
            "SHA-256".into(),
        ],
        rows: items
            .iter()
            .map(|i| {
                vec![
                    i.number.to_string(),
                    i.kind.clone(),
                    i.description.clone(),
                    dash(&i.file_name),
                    dash(&i.size),
                    i.sha256_prefix
                        .as_ref()
                        .map_or_else(|| "–".to_owned(), |s| format!("{s}…")),
                ]
            })
            .collect(),
    }
}

pub(crate) fn defense(view: &DefenseView) -> Vec<Block> {
    let d = &view.dispute;
    let mut subtitle = format!("Payment {}", d.payment_reference);
    if let Some(order) = &d.order_reference {
        subtitle.push_str(&format!(" · order {order}"));
    }
    subtitle.push_str(&format!(" · {} · reason code {}", d.amount, d.reason_code));
    if let Some(title) = &d.reason_title {
        subtitle.push_str(&format!(" ({title})"));
    }
    let mut blocks = vec![
        Block::Title(view.title.clone()),
        Block::Subtitle(subtitle),
        Block::Heading("Cover letter".into()),
        Block::Paragraph(vec![Span::regular(format!("To the {} disputes team,", d.processor))]),
    ];
    let opening = match &view.merchant {
        Some(m) => format!("On behalf of {m}, we contest dispute "),
        None => "We contest dispute ".to_owned(),
    };
    let mut reason = format!(
        "({}, {}, reason code {}",
        d.stage.to_lowercase(),
        d.amount,
        d.reason_code
    );
    if let Some(title) = &d.reason_title {
        reason.push_str(&format!(": {title}"));
    }
    reason.push_str("). ");
    blocks.push(Block::Paragraph(vec![
        Span::regular(opening),
        Span::bold(d.processor_dispute_id.clone()),
        Span::regular(format!(" {reason}")),
        Span::bold(view.position.clone()),
    ]));
    for paragraph in &view.paragraphs {
        blocks.push(Block::Paragraph(vec![Span::bold(paragraph.heading.clone())]));
        for point in &paragraph.points {
            blocks.push(Block::Bullet {
                spans: vec![Span::regular(point.statement.clone())],
                note: (!point.rests_on.is_empty()).then(|| format!("Rests on: {}", point.rests_on.join("; "))),
            });
        }
        blocks.push(Block::Space(4.0));
    }
    if !view.missing.is_empty() {
        blocks.push(Block::Callout {
            title: "Not available to us (stated so that nothing is implied):".into(),
            lines: view
                .missing
                .iter()
                .map(|m| format!("{} ({})", m.fact, m.needed_for))
                .collect(),
        });
    }
    blocks.push(Block::Paragraph(vec![Span::regular(
        "The evidence listed below is attached. We ask that the dispute be decided in the merchant's favour.",
    )]));
    let signature = match &view.merchant {
        Some(m) => format!("Dispute analysis team, for {m}"),
        None => "Dispute analysis team".to_owned(),
    };
    blocks.push(Block::Paragraph(vec![Span::regular(signature)]));
    blocks.push(Block::Heading("Evidence index".into()));
    if view.evidence.is_empty() {
        blocks.push(Block::Paragraph(vec![Span::regular("No evidence items are attached.")]));
    } else {
        blocks.push(evidence_index(&view.evidence));
    }
    if !view.messages.is_empty() {
        blocks.push(Block::Heading("Correspondence with the customer".into()));
        blocks.push(Block::Paragraph(vec![Span::regular(
            "Quoted as written; messages in another language than English are marked and not translated.",
        )]));
        for m in &view.messages {
            let mut label = format!("{}, {}", m.author, m.sent_at);
            if m.original_language {
                label.push_str(&format!(" · original language: {}", m.language));
            }
            blocks.push(Block::Quote {
                label,
                text: m.body.clone(),
            });
        }
    }
    blocks.push(Block::Heading("Timeline".into()));
    blocks.push(timeline_table(&view.timeline, "Detail"));
    blocks.push(Block::Paragraph(vec![Span::regular(format!(
        "Generated by Verdict on {} · dispute {} at version {}",
        view.generated_at, d.id, d.version
    ))]));
    blocks
}

pub(crate) fn case_file(view: &CaseFileView) -> Vec<Block> {
    let d = &view.dispute;
    let mut blocks = vec![
        Block::Title(view.title.clone()),
        Block::Subtitle(format!(
            "Internal: contains personal data · {} · {} · {} · reason code {}",
            d.status, d.stage, d.amount, d.reason_code
        )),
        Block::Heading("Dispute".into()),
        Block::Facts(vec![
            (
                "Processor case".into(),
                format!("{} {}", d.processor, d.processor_dispute_id),
            ),
            ("Payment".into(), d.payment_reference.clone()),
            (
                "Order".into(),
                d.order_reference.clone().unwrap_or_else(|| "not linked".into()),
            ),
            (
                "Reason".into(),
                match &d.reason_title {
                    Some(t) => format!("{} ({t})", d.reason_code),
                    None => d.reason_code.clone(),
                },
            ),
            ("Opened".into(), d.opened_at.clone()),
            (
                "Respond by".into(),
                d.due_by.clone().unwrap_or_else(|| "no deadline".into()),
            ),
            ("Queue".into(), d.queue.clone().unwrap_or_else(|| "not triaged".into())),
            ("Assignee".into(), d.assignee.clone().unwrap_or_else(|| "nobody".into())),
        ]),
        Block::Heading("Customer".into()),
        Block::Facts(view.customer.clone()),
        Block::Heading("Order".into()),
    ];
    match &view.order {
        Some(order) => {
            blocks.push(Block::Facts(order.facts.clone()));
            if !order.lines.is_empty() {
                blocks.push(Block::Table {
                    widths: vec![0.4, 0.15, 0.27, 0.18],
                    header: vec!["Device".into(), "Grade".into(), "IMEI / serial".into(), "Price".into()],
                    rows: order.lines.clone(),
                });
            }
        }
        None => blocks.push(Block::Paragraph(vec![Span::regular(
            "The dispute is not linked to an order.",
        )])),
    }
    blocks.push(Block::Heading("Argument".into()));
    blocks.push(Block::Paragraph(vec![Span::bold(view.position.clone())]));
    if !view.missing.is_empty() {
        blocks.push(Block::Callout {
            title: "Missing facts".into(),
            lines: view
                .missing
                .iter()
                .map(|m| format!("{} ({})", m.fact, m.needed_for))
                .collect(),
        });
    }
    blocks.push(Block::Heading("Evidence".into()));
    if view.evidence.is_empty() {
        blocks.push(Block::Paragraph(vec![Span::regular("No evidence yet.")]));
    } else {
        blocks.push(Block::Table {
            widths: vec![0.05, 0.2, 0.35, 0.22, 0.18],
            header: vec![
                "#".into(),
                "Kind".into(),
                "Description".into(),
                "File".into(),
                "Added".into(),
            ],
            rows: view
                .evidence
                .iter()
                .map(|i| {
                    vec![
                        i.number.to_string(),
                        i.kind.clone(),
                        i.description.clone(),
                        match (&i.file_name, &i.size, &i.sha256_prefix) {
                            (Some(f), Some(s), Some(h)) => format!("{f} ({s}, {h}…)"),
                            _ => "–".to_owned(),
                        },
                        format!("{} by {}", i.added_at, i.added_by),
                    ]
                })
                .collect(),
        });
    }
    blocks.push(Block::Heading("Decisions".into()));
    if view.decisions.is_empty() {
        blocks.push(Block::Paragraph(vec![Span::regular("No decisions recorded yet.")]));
    } else {
        blocks.push(timeline_table(&view.decisions, "Detail"));
    }
    blocks.push(Block::Heading("Timeline".into()));
    blocks.push(timeline_table(&view.timeline, "Detail"));
    blocks.push(Block::Paragraph(vec![Span::regular(format!(
        "Generated by Verdict on {} · dispute {} at version {}",
        view.generated_at, d.id, d.version
    ))]));
    blocks
}
