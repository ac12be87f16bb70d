//! The mailbox in GraphQL: messages Verdict sent (or, with no mail server configured, kept) to customers,
//! sellers and assignees. Viewers see customers' addresses and names masked.

use async_graphql::{Context, Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain as domain;
use verdict_engine::Engine;
use verdict_store::MailboxMessage as Stored;

use super::enums::{MessageTransport, label};
use super::types::Locale;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::graphql::query::principal;

const MAX_MESSAGES: i32 = 200;

/// Who a message went to.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "verdict_store::MailboxChannel")]
pub enum MailboxChannel {
    /// The cardholder.
    Customer,
    /// The order's seller.
    Seller,
    /// The person working the dispute.
    Assignee,
    /// A queue's shared inbox: digests and reminders of unassigned disputes.
    Queue,
    /// A queue's leads: escalations.
    Lead,
}

/// One message from Verdict to a customer, a seller, an assignee, a queue or its leads.
#[derive(SimpleObject)]
pub struct MailboxMessage {
    /// The message's id.
    pub id: ID,
    /// The dispute it is about.
    pub dispute_id: Option<ID>,
    /// Who it went to.
    pub channel: MailboxChannel,
    /// How it went out.
    pub transport: MessageTransport,
    /// The customer's email address (masked for viewers), the seller id or the assignee's name.
    pub recipient: String,
    /// The language it was written in.
    pub locale: Locale,
    /// Its subject (masked for viewers in customers' messages).
    pub subject: String,
    /// Its text (masked for viewers in customers' messages).
    pub body: String,
    /// The idempotency key of the step that sent it; a retried step never sends a second message.
    pub message_id: String,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

fn masked_text(text: &str, customer: &domain::Customer) -> String {
    let mut text = text.to_owned();
    if let Some(email) = &customer.email {
        text = text.replace(email.expose(), &email.masked());
    }
    if let Some(name) = &customer.name {
        text = text.replace(name.expose(), &name.masked());
    }
    text
}

/// A stored message as the caller may see it; `customer` is the dispute's, for masking.
fn view(message: Stored, unmasked: bool, customer: Option<&domain::Customer>) -> Result<MailboxMessage, ApiError> {
    let transport = label(&message.transport, "message transport")?;
    let locale: domain::Locale = label(&message.locale, "message locale")?;
    let (recipient, subject, body) = if unmasked || message.channel != verdict_store::MailboxChannel::Customer {
        (message.recipient, message.subject, message.body)
    } else {
        let recipient = domain::CustomerEmail::parse(&message.recipient)
            .map(|e| e.masked())
            .unwrap_or_else(|_| "***".to_owned());
        match customer {
            Some(customer) => (
                recipient,
                masked_text(&message.subject, customer),
                masked_text(&message.body, customer),
            ),
            // The dispute is gone: nothing to mask the text by, so the text is withheld.
            None => (recipient, "***".to_owned(), "***".to_owned()),
        }
    };
    Ok(MailboxMessage {
        id: ID(message.id.to_string()),
        dispute_id: message.dispute_id.map(|d| ID(d.to_string())),
        channel: message.channel.into(),
        transport,
        recipient,
        locale: locale.into(),
        subject,
        body,
        message_id: message.message_id,
        created_at: message.created_at,
    })
}

fn unmasked(ctx: &Context<'_>) -> bool {
    ctx.data_opt::<Principal>().is_some_and(Principal::sees_personal_data)
}

/// `Query.mailbox`: the most recent messages, newest first.
pub(crate) async fn recent(ctx: &Context<'_>, first: i32) -> async_graphql::Result<Vec<MailboxMessage>> {
    principal(ctx, Role::Viewer)?;
    if !(0..=MAX_MESSAGES).contains(&first) {
        return Err(ApiError::InvalidInput(format!("first must be between 0 and {MAX_MESSAGES}")).into());
    }
    let store = ctx.data::<Engine>()?.store();
    let messages = super::read(ctx, store.mailbox(first as u64)).await?;
    let unmasked = unmasked(ctx);
    // Viewers see customers' messages masked by the dispute's customer: those disputes are read at once.
    let to_mask: Vec<domain::DisputeId> = if unmasked {
        Vec::new()
    } else {
        messages
            .iter()
            .filter(|m| m.channel == verdict_store::MailboxChannel::Customer)
            .filter_map(|m| m.dispute_id)
            .collect()
    };
    let customers: std::collections::HashMap<domain::DisputeId, domain::Customer> =
        super::read(ctx, store.load_many(&to_mask))
            .await?
            .into_iter()
            .map(|d| (d.id, d.customer))
            .collect();
    Ok(messages
        .into_iter()
        .map(|message| {
            let customer = message.dispute_id.and_then(|id| customers.get(&id));
            view(message, unmasked, customer)
        })
        .collect::<Result<_, _>>()?)
}

/// `Dispute.messages`: the dispute's messages, oldest first.
pub(crate) async fn of_dispute(
    ctx: &Context<'_>,
    dispute: &domain::Dispute,
) -> async_graphql::Result<Vec<MailboxMessage>> {
    let messages = super::types::lists(ctx)?
        .load_one(super::loaders::MessagesOf(dispute.id))
        .await?
        .unwrap_or_default();
    let unmasked = unmasked(ctx);
    Ok(messages
        .into_iter()
        .map(|m| view(m, unmasked, Some(&dispute.customer)))
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stored(channel: verdict_store::MailboxChannel, recipient: &str) -> Stored {
        Stored {
            id: uuid::Uuid::now_v7(),
            dispute_id: Some(domain::DisputeId::new_v7()),
            channel,
            transport: "mailbox".into(),
            recipient: recipient.into(),
            locale: "fr".into(),
            subject: "Votre remboursement pour la commande ORD-1".into(),
            body: "Bonjour Jeanne Dupont,\n\nNous avons remboursé 12,00 EUR.\n".into(),
            message_id: "k".into(),
            created_at: chrono::Utc::now(),
        }
    }

    fn customer() -> domain::Customer {
        domain::Customer {
            name: Some(domain::CustomerName::parse("Jeanne Dupont").unwrap()),
            email: Some(domain::CustomerEmail::parse("jeanne@example.fr").unwrap()),
            locale: domain::Locale::Fr,
        }
    }

    #[test]
    fn viewers_see_customer_messages_masked_and_analysts_in_full() {
        let message = stored(verdict_store::MailboxChannel::Customer, "jeanne@example.fr");
        let masked = view(message.clone(), false, Some(&customer())).unwrap();
        assert_eq!(masked.recipient, "j***@example.fr");
        assert!(masked.body.starts_with("Bonjour J***,"), "{}", masked.body);
        assert!(!masked.body.contains("Jeanne"));
        let full = view(message.clone(), true, Some(&customer())).unwrap();
        assert_eq!(full.recipient, "jeanne@example.fr");
        assert!(full.body.contains("Jeanne Dupont"));
        let orphan = view(message, false, None).unwrap();
        assert_eq!((orphan.subject.as_str(), orphan.body.as_str()), ("***", "***"));
    }

    #[test]
    fn seller_and_assignee_messages_are_not_masked() {
        let message = stored(verdict_store::MailboxChannel::Seller, "seller-techrenew-fr");
        assert_eq!(view(message, false, None).unwrap().recipient, "seller-techrenew-fr");
    }
}
