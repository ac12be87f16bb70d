//! The mailbox: messages Verdict sent (or, with no mail server configured, keeps instead of sending) to
//! customers, sellers and assignees.
//!
//! `message_id` is the idempotency key of the step that wrote the message and is unique: storing the same
//! message twice is [`MailboxInsert::AlreadyStored`], not a second message, so a retried step never sends
//! twice.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;
use verdict_domain::DisputeId;

use crate::{Store, StoreError};

/// The table's rows; kept beside their repository because nothing else reads them.
pub(crate) mod row {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mailbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub dispute_id: Option<Uuid>,
        pub channel: String,
        pub transport: String,
        pub recipient: String,
        pub locale: String,
        pub subject: String,
        pub body: String,
        pub message_id: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailboxChannel {
    /// The cardholder; the recipient is their email address (personal data).
    Customer,
    /// The marketplace seller; the recipient is the seller id.
    Seller,
    /// The analyst the dispute is assigned to; the recipient is their name.
    Assignee,
    /// A queue's shared inbox (digests, reminders of unassigned disputes); the recipient is the queue's name.
    Queue,
    /// A queue's leads (escalations); the recipient is the queue's name.
    Lead,
}

impl MailboxChannel {
    pub fn as_str(&self) -> &'static str {
        match self {
            MailboxChannel::Customer => "customer",
            MailboxChannel::Seller => "seller",
            MailboxChannel::Assignee => "assignee",
            MailboxChannel::Queue => "queue",
            MailboxChannel::Lead => "lead",
        }
    }
}

impl FromStr for MailboxChannel {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "customer" => MailboxChannel::Customer,
            "seller" => MailboxChannel::Seller,
            "assignee" => MailboxChannel::Assignee,
            "queue" => MailboxChannel::Queue,
            "lead" => MailboxChannel::Lead,
            other => return Err(StoreError::Corrupt(format!("unknown mailbox channel {other:?}"))),
        })
    }
}

impl fmt::Display for MailboxChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to store. `Debug` masks the recipient, the subject and the body, which may name the customer.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMailboxMessage {
    pub dispute_id: Option<DisputeId>,
    pub channel: MailboxChannel,
    /// How it went out: `mailbox` (kept only), `smtp` or `webhook`.
    pub transport: String,
    pub recipient: String,
    /// `en`, `fr`, `es` or `it`.
    pub locale: String,
    pub subject: String,
    pub body: String,
    /// The step's idempotency key; unique.
    pub message_id: String,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for NewMailboxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMailboxMessage")
            .field("dispute_id", &self.dispute_id)
            .field("channel", &self.channel)
            .field("transport", &self.transport)
            .field("recipient", &"***")
            .field("locale", &self.locale)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxInsert {
    Stored(Uuid),
    /// A message with this id is already there; nothing was written.
    AlreadyStored,
}

/// A stored message. `Debug` masks the recipient, the subject and the body.
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxMessage {
    pub id: Uuid,
    pub dispute_id: Option<DisputeId>,
    pub channel: MailboxChannel,
    pub transport: String,
    pub recipient: String,
    pub locale: String,
    pub subject: String,
    pub body: String,
    pub message_id: String,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for MailboxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxMessage")
            .field("id", &self.id)
            .field("dispute_id", &self.dispute_id)
            .field("channel", &self.channel)
            .field("transport", &self.transport)
            .field("recipient", &"***")
            .field("locale", &self.locale)
            .field("message_id", &self.message_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

pub(crate) fn message(row: row::Model) -> Result<MailboxMessage, StoreError> {
    Ok(MailboxMessage {
        id: row.id,
        dispute_id: row.dispute_id.map(DisputeId::from_uuid),
        channel: row.channel.parse()?,
        transport: row.transport,
        recipient: row.recipient,
        locale: row.locale,
        subject: row.subject,
        body: row.body,
        message_id: row.message_id,
        created_at: row.created_at,
    })
}

impl Store {
    /// Stores a message unless one with the same `message_id` exists.
    pub async fn store_mail(&self, new: &NewMailboxMessage) -> Result<MailboxInsert, StoreError> {
        let id = Uuid::now_v7();
        let model = row::ActiveModel {
            id: Set(id),
            dispute_id: Set(new.dispute_id.map(|d| d.as_uuid())),
            channel: Set(new.channel.as_str().to_owned()),
            transport: Set(new.transport.clone()),
            recipient: Set(new.recipient.clone()),
            locale: Set(new.locale.clone()),
            subject: Set(new.subject.clone()),
            body: Set(new.body.clone()),
            message_id: Set(new.message_id.clone()),
            created_at: Set(new.created_at),
        };
        let inserted = row::Entity::insert(model)
            .on_conflict(OnConflict::column(row::Column::MessageId).do_nothing().to_owned())
            .exec_without_returning(self.db())
            .await?;
        Ok(if inserted == 0 {
            MailboxInsert::AlreadyStored
        } else {
            MailboxInsert::Stored(id)
        })
    }

    /// The message stored under `message_id`, if any.
    pub async fn mail_by_message_id(&self, message_id: &str) -> Result<Option<MailboxMessage>, StoreError> {
        row::Entity::find()
            .filter(row::Column::MessageId.eq(message_id))
            .one(self.db())
            .await?
            .map(message)
            .transpose()
    }

    /// The most recent messages, newest first.
    pub async fn mailbox(&self, first: u64) -> Result<Vec<MailboxMessage>, StoreError> {
        row::Entity::find()
            .order_by_desc(row::Column::CreatedAt)
            .order_by_desc(row::Column::Id)
            .limit(first)
            .all(self.db())
            .await?
            .into_iter()
            .map(message)
            .collect()
    }

    /// A dispute's messages, oldest first.
    pub async fn mailbox_of(&self, dispute_id: DisputeId) -> Result<Vec<MailboxMessage>, StoreError> {
        row::Entity::find()
            .filter(row::Column::DisputeId.eq(dispute_id.as_uuid()))
            .order_by_asc(row::Column::CreatedAt)
            .order_by_asc(row::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(message)
            .collect()
    }
}
