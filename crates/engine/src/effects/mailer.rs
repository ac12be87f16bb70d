//! Mail: the [`Mailer`] trait, the SMTP adapter and the mailbox that stands in for a mail server.

use std::fmt;
use std::sync::Arc;

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use verdict_domain::{DisputeId, Locale};
use verdict_store::{MailboxChannel, MailboxInsert, NewMailboxMessage, Store};

use super::{EffectsError, StepError};
use crate::Clock;

/// A message to deliver. `Debug` masks the recipient and the text.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub dispute_id: DisputeId,
    pub channel: MailboxChannel,
    /// An email address for customers, a seller id for sellers, an analyst's name for assignees.
    pub recipient: String,
    pub locale: Locale,
    pub subject: String,
    pub body: String,
    /// The step's idempotency key: the same message id is delivered once.
    pub message_id: String,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("dispute_id", &self.dispute_id)
            .field("channel", &self.channel)
            .field("recipient", &"***")
            .field("locale", &self.locale)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// What delivering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// This message id went out before (a retried step); nothing was sent again.
    AlreadySent,
}

/// Delivers messages to people.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: &OutgoingMail) -> Result<Delivery, StepError>;
}

/// The local default: messages are kept in the `mailbox` table (shown in GraphQL) instead of being sent.
/// The unique message id makes a retried step store one message.
#[derive(Clone)]
pub struct Mailbox {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Mailbox {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records `mail` as delivered by `transport` (`mailbox`, `smtp`, `webhook`).
    pub async fn record(&self, mail: &OutgoingMail, transport: &str) -> Result<Delivery, StepError> {
        let new = NewMailboxMessage {
            dispute_id: Some(mail.dispute_id),
            channel: mail.channel,
            transport: transport.to_owned(),
            recipient: mail.recipient.clone(),
            locale: mail.locale.as_str().to_owned(),
            subject: mail.subject.clone(),
            body: mail.body.clone(),
            message_id: mail.message_id.clone(),
            created_at: self.clock.now(),
        };
        match self.store.store_mail(&new).await {
            Ok(MailboxInsert::Stored(_)) => Ok(Delivery::Sent),
            Ok(MailboxInsert::AlreadyStored) => Ok(Delivery::AlreadySent),
            Err(err) => Err(StepError::Transient(format!("storing the message: {err}"))),
        }
    }

    /// Whether a message with this id was delivered already.
    pub async fn contains(&self, message_id: &str) -> Result<bool, StepError> {
        self.store
            .mail_by_message_id(message_id)
            .await
            .map(|m| m.is_some())
            .map_err(|err| StepError::Transient(format!("reading the mailbox: {err}")))
    }
}

#[async_trait::async_trait]
impl Mailer for Mailbox {
    async fn send(&self, mail: &OutgoingMail) -> Result<Delivery, StepError> {
        self.record(mail, "mailbox").await
    }
}

/// Sends through an SMTP server (TLS by rustls on ring). With a mailbox as its log, a message id found there
/// is not sent again, and each sent message is recorded (transport `smtp`); SMTP itself cannot deduplicate,
/// so a crash between sending and recording can still send twice. The `Message-ID` header carries the step's
/// idempotency key, so mail clients show such a duplicate once.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    log: Option<Mailbox>,
}

impl SmtpMailer {
    /// `url` in lettre's form: `smtps://user:pass@host:465`, `smtp://host:587?tls=required`, `smtp://localhost:25`.
    pub fn new(url: &str, from: &str, log: Option<Mailbox>) -> Result<Self, EffectsError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.trim())
            .map_err(|_| EffectsError::Config("mail.smtp_url is not a valid SMTP URL".into()))?
            .build();
        let from = from
            .parse()
            .map_err(|e| EffectsError::Config(format!("mail.from {from:?}: {e}")))?;
        Ok(Self { transport, from, log })
    }
}

/// `dispute:version:kind` as a valid `Message-ID`: colons are not allowed on its left-hand side.
fn message_id_header(message_id: &str) -> String {
    let local: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@verdict>")
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<Delivery, StepError> {
        if let Some(log) = &self.log
            && log.contains(&mail.message_id).await?
        {
            return Ok(Delivery::AlreadySent);
        }
        // The address is personal data: errors name the problem, never the address.
        let to: lettre::message::Mailbox = mail
            .recipient
            .parse()
            .map_err(|_| StepError::Permanent("the recipient is not a deliverable email address".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(message_id_header(&mail.message_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| StepError::Permanent(format!("building the message: {e}")))?;
        if let Err(err) = self.transport.send(message).await {
            let code = err
                .status()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "no reply code".into());
            tracing::warn!(code = %code, "SMTP delivery failed");
            return Err(if err.is_permanent() {
                StepError::Permanent(format!("smtp: rejected ({code})"))
            } else {
                StepError::Transient(format!("smtp: not delivered ({code})"))
            });
        }
        if let Some(log) = &self.log
            && let Err(err) = log.record(mail, "smtp").await
        {
            // Sent already: failing the step now would send it again.
            tracing::warn!(%err, "the message was sent but could not be recorded in the mailbox");
        }
        Ok(Delivery::Sent)
    }
}
