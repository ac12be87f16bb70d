//! Message templates in English, French, Spanish and Italian, compiled into the binary.
//!
//! One file per language and kind, `templates/{locale}/{kind}.txt`: the first line is `Subject: ...`, then a
//! blank line, then the body. Undefined variables are errors, so a template never goes out with a hole.

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior, Value, context};
use verdict_domain::{Dispute, Locale, Money, Status};

use super::StepError;

/// The messages Verdict writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// To the customer: a pre-dispute alert or inquiry was settled by refunding them.
    CustomerRefundIssued,
    /// To the customer: the processor has accepted the refund request and will report its result later.
    CustomerRefundRequested,
    /// To the customer: their dispute is being looked at.
    CustomerCaseUpdate,
    /// To the seller: the dispute was won or lost (or otherwise moved).
    SellerOutcome,
    /// To an analyst: a dispute was assigned to them.
    AssigneeAssigned,
    /// To a queue: one of its disputes has no assignee and its deadline is near.
    QueueAttention,
    /// To a queue's leads: a submitted dispute has waited too long for the processor's outcome.
    LeadEscalation,
    /// To the customer, by an analyst: what would settle the matter without the bank.
    CustomerRequestInformation,
    /// To the seller, by an analyst: the proof the defense needs from them.
    SellerRequestEvidence,
    /// To the seller, by an analyst: where the dispute stands.
    SellerCaseUpdate,
}

impl MessageKind {
    pub const ALL: [MessageKind; 10] = [
        MessageKind::CustomerRefundIssued,
        MessageKind::CustomerRefundRequested,
        MessageKind::CustomerCaseUpdate,
        MessageKind::SellerOutcome,
        MessageKind::AssigneeAssigned,
        MessageKind::QueueAttention,
        MessageKind::LeadEscalation,
        MessageKind::CustomerRequestInformation,
        MessageKind::SellerRequestEvidence,
        MessageKind::SellerCaseUpdate,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            MessageKind::CustomerRefundIssued => "customer_refund_issued",
            MessageKind::CustomerRefundRequested => "customer_refund_requested",
            MessageKind::CustomerCaseUpdate => "customer_case_update",
            MessageKind::SellerOutcome => "seller_outcome",
            MessageKind::AssigneeAssigned => "assignee_assigned",
            MessageKind::QueueAttention => "queue_attention",
            MessageKind::LeadEscalation => "lead_escalation",
            MessageKind::CustomerRequestInformation => "customer_request_information",
            MessageKind::SellerRequestEvidence => "seller_request_evidence",
            MessageKind::SellerCaseUpdate => "seller_case_update",
        }
    }

    /// The template an analyst's message names.
    pub fn of_template(template: verdict_domain::MessageTemplate) -> Self {
        match template {
            verdict_domain::MessageTemplate::CustomerCaseUpdate => MessageKind::CustomerCaseUpdate,
            verdict_domain::MessageTemplate::CustomerRequestInformation => MessageKind::CustomerRequestInformation,
            verdict_domain::MessageTemplate::SellerRequestEvidence => MessageKind::SellerRequestEvidence,
            verdict_domain::MessageTemplate::SellerCaseUpdate => MessageKind::SellerCaseUpdate,
        }
    }

    /// The customer message for the dispute as it stands; a payload `{"template": "customer_case_update"}`
    /// chooses explicitly.
    pub fn for_customer(dispute: &Dispute, payload: Option<&serde_json::Value>) -> Self {
        let named = payload
            .and_then(|p| p.get("template"))
            .and_then(|t| t.as_str())
            .and_then(|name| {
                [
                    MessageKind::CustomerRefundIssued,
                    MessageKind::CustomerRefundRequested,
                    MessageKind::CustomerCaseUpdate,
                    MessageKind::CustomerRequestInformation,
                ]
                .into_iter()
                .find(|k| k.name() == name)
            });
        named.unwrap_or(match dispute.status {
            Status::Resolved => MessageKind::CustomerRefundIssued,
            Status::Notified
            | Status::Triaged
            | Status::EvidenceGathering
            | Status::Submitted
            | Status::Won
            | Status::Lost
            | Status::Accepted
            | Status::Expired
            | Status::Withdrawn => MessageKind::CustomerCaseUpdate,
        })
    }
}

macro_rules! sources {
    ($($locale:literal),+) => {
        &[$(
            (concat!($locale, "/customer_refund_issued.txt"), include_str!(concat!("templates/", $locale, "/customer_refund_issued.txt"))),
            (concat!($locale, "/customer_refund_requested.txt"), include_str!(concat!("templates/", $locale, "/customer_refund_requested.txt"))),
            (concat!($locale, "/customer_case_update.txt"), include_str!(concat!("templates/", $locale, "/customer_case_update.txt"))),
            (concat!($locale, "/seller_outcome.txt"), include_str!(concat!("templates/", $locale, "/seller_outcome.txt"))),
            (concat!($locale, "/assignee_assigned.txt"), include_str!(concat!("templates/", $locale, "/assignee_assigned.txt"))),
            (concat!($locale, "/queue_attention.txt"), include_str!(concat!("templates/", $locale, "/queue_attention.txt"))),
            (concat!($locale, "/lead_escalation.txt"), include_str!(concat!("templates/", $locale, "/lead_escalation.txt"))),
            (concat!($locale, "/customer_request_information.txt"), include_str!(concat!("templates/", $locale, "/customer_request_information.txt"))),
            (concat!($locale, "/seller_request_evidence.txt"), include_str!(concat!("templates/", $locale, "/seller_request_evidence.txt"))),
            (concat!($locale, "/seller_case_update.txt"), include_str!(concat!("templates/", $locale, "/seller_case_update.txt"))),
        )+]
    };
}

const SOURCES: &[(&str, &str)] = sources!("en", "fr", "es", "it");

/// What an analyst's message or a partial refund adds to the dispute's own variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageExtras {
    /// The analyst's free text, placed where each template keeps it.
    pub text: Option<String>,
    /// The amount the message is about when it is not the disputed one (a partial refund).
    pub amount: Option<Money>,
}

impl std::fmt::Debug for MessageExtras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text may name the customer.
        f.debug_struct("MessageExtras")
            .field("text_chars", &self.text.as_ref().map(|t| t.chars().count()))
            .field("amount", &self.amount)
            .finish()
    }
}

/// A rendered message.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for RenderedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text may name the customer.
        f.write_str("RenderedMessage(***)")
    }
}

pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in SOURCES {
            if let Err(err) = env.add_template(name, source) {
                // Compiled in and covered by tests; a broken template is a build mistake, reported at render.
                tracing::error!(template = name, %err, "a message template does not parse");
            }
        }
        Self { env }
    }

    /// Renders `kind` in `locale` for `dispute`.
    pub fn render(&self, kind: MessageKind, locale: Locale, dispute: &Dispute) -> Result<RenderedMessage, StepError> {
        self.render_with(kind, locale, dispute, &MessageExtras::default())
    }

    /// Renders `kind` with an analyst's free text, or a refund's own amount in place of the disputed one.
    pub fn render_with(
        &self,
        kind: MessageKind,
        locale: Locale,
        dispute: &Dispute,
        extras: &MessageExtras,
    ) -> Result<RenderedMessage, StepError> {
        let name = format!("{}/{}.txt", locale.as_str(), kind.name());
        let template = self
            .env
            .get_template(&name)
            .map_err(|e| StepError::Permanent(format!("template {name}: {e}")))?;
        let text = template
            .render(variables(dispute, locale, extras))
            .map_err(|e| StepError::Permanent(format!("rendering {name}: {e}")))?;
        let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = first
            .strip_prefix("Subject:")
            .ok_or_else(|| StepError::Permanent(format!("template {name} does not start with 'Subject:'")))?;
        Ok(RenderedMessage {
            subject: subject.trim().to_owned(),
            body: format!("{}\n", body.trim()),
        })
    }
}

fn optional(text: Option<String>) -> Value {
    text.map(Value::from).unwrap_or(Value::from(()))
}

fn variables(dispute: &Dispute, locale: Locale, extras: &MessageExtras) -> Value {
    let outcome = match dispute.status {
        Status::Won | Status::Withdrawn => "won",
        Status::Lost | Status::Expired => "lost",
        Status::Notified
        | Status::Triaged
        | Status::EvidenceGathering
        | Status::Submitted
        | Status::Accepted
        | Status::Resolved => "other",
    };
    let reason = dispute
        .reason_code
        .title()
        .map(|t| format!("{t} ({})", dispute.reason_code))
        .unwrap_or_else(|| dispute.reason_code.to_string());
    context! {
        customer_name => optional(dispute.customer.name.as_ref().map(|n| n.expose().to_owned())),
        amount => format_amount(extras.amount.unwrap_or(dispute.amount), locale),
        text => optional(extras.text.clone()),
        reference => reference(dispute),
        case_id => dispute.id.to_string(),
        processor => dispute.processor.as_str(),
        processor_dispute_id => dispute.processor_dispute_id.clone(),
        status => dispute.status.as_str(),
        outcome => outcome,
        seller_id => optional(dispute.seller_id.clone()),
        assignee => dispute.assignee.clone().unwrap_or_default(),
        queue => queue_name(dispute),
        reason => reason,
        due_by => optional(dispute.due_by.map(|d| format_date(d, locale))),
    }
}

/// The queue a dispute waits in; `untriaged` before triage.
pub fn queue_name(dispute: &Dispute) -> String {
    dispute
        .queue
        .map_or_else(|| "untriaged".to_owned(), |q| q.as_str().to_owned())
}

/// What the customer and the seller know the payment by: the order reference, else the payment reference.
pub(crate) fn reference(dispute: &Dispute) -> String {
    dispute
        .order_reference
        .clone()
        .unwrap_or_else(|| dispute.payment_reference.clone())
}

fn format_date(at: DateTime<Utc>, locale: Locale) -> String {
    match locale {
        Locale::En => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        Locale::Fr | Locale::Es | Locale::It => at.format("%d/%m/%Y %H:%M UTC").to_string(),
    }
}

/// An amount as readers of `locale` write it: `EUR 1,234.50`, `1 234,50 EUR`, `1.234,50 EUR`.
pub fn format_amount(money: Money, locale: Locale) -> String {
    let decimal = money.decimal();
    let (whole, fraction) = decimal.split_once('.').unwrap_or((&decimal, ""));
    let (group, point) = match locale {
        Locale::En => (",", "."),
        // French groups with a narrow no-break space.
        Locale::Fr => ("\u{202f}", ","),
        Locale::Es | Locale::It => (".", ","),
    };
    let digits: Vec<char> = whole.chars().collect();
    let mut grouped = String::new();
    for (i, digit) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push_str(group);
        }
        grouped.push(*digit);
    }
    let number = if fraction.is_empty() {
        grouped
    } else {
        format!("{grouped}{point}{fraction}")
    };
    let code = money.currency().code();
    match locale {
        Locale::En => format!("{code} {number}"),
        Locale::Fr | Locale::Es | Locale::It => format!("{number} {code}"),
    }
}
