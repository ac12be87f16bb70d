//! Verdict's own tables of orders: the default source of marketplace facts.
//!
//! An order is one row (`marketplace_orders`) holding its facts as JSON, and one row per reference it is known
//! by (`marketplace_order_references`: the order number and each payment reference, unique), so that a lookup
//! by whatever reference a notification carried is one indexed query. Recording an order again replaces its
//! facts and its references in one transaction; recording the same facts again changes nothing.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, SqlErr, TransactionTrait,
};
use uuid::Uuid;
use verdict_domain::facts::OrderFacts;

use crate::{FactsError, MarketplaceFacts, OrderLookup};

pub(crate) mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "marketplace_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_reference: String,
        pub seller_id: String,
        pub customer_account_id: String,
        pub placed_at: DateTimeUtc,
        pub facts: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod reference {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "marketplace_order_references")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reference: String,
        pub order_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What recording an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Created,
    /// The order was known: its facts and references were replaced.
    Replaced,
    /// The order was known with exactly these facts: nothing was written.
    Unchanged,
}

impl Recorded {
    pub fn as_str(&self) -> &'static str {
        match self {
            Recorded::Created => "created",
            Recorded::Replaced => "replaced",
            Recorded::Unchanged => "unchanged",
        }
    }
}

/// Orders in Verdict's own database.
#[derive(Clone)]
pub struct TablesFacts {
    db: DatabaseConnection,
}

fn unavailable(err: DbErr) -> FactsError {
    FactsError::Unavailable(format!("reading the orders tables: {err}"))
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn read_facts(row: &order::Model) -> Result<OrderFacts, FactsError> {
    serde_json::from_value(row.facts.clone())
        .map_err(|err| FactsError::Malformed(format!("stored order {} does not read: {err}", row.id)))
}

impl TablesFacts {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The order known by `reference` (its number or one of its payment references).
    pub async fn find_by_reference(&self, reference: &str) -> Result<Option<OrderFacts>, FactsError> {
        let lookup = OrderLookup {
            processor: verdict_domain::Processor::Manual,
            order_reference: Some(reference.to_owned()),
            payment_references: Vec::new(),
        };
        self.find(&lookup).await
    }

    async fn find(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError> {
        let wanted = lookup.references();
        if wanted.is_empty() {
            return Ok(None);
        }
        let matches = reference::Entity::find()
            .filter(reference::Column::Reference.is_in(wanted.iter().copied()))
            .all(&self.db)
            .await
            .map_err(unavailable)?;
        // The most specific reference decides when several orders match (an order number before a payment).
        let Some(order_id) = wanted
            .iter()
            .find_map(|w| matches.iter().find(|m| m.reference == *w).map(|m| m.order_id))
        else {
            return Ok(None);
        };
        let row = order::Entity::find_by_id(order_id)
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(read_facts).transpose()
    }

    /// Validates and records `facts`, replacing what was recorded for the same order number.
    pub async fn record(&self, facts: OrderFacts, now: DateTime<Utc>) -> Result<Recorded, FactsError> {
        let facts = facts
            .validated()
            .map_err(|err| FactsError::Invalid(err.to_string().trim_start_matches("invalid input: ").to_owned()))?;
        match self.record_once(&facts, now).await {
            // Two callers recorded the same new order at once: the second finds it now.
            Err(RecordError::Db(err)) if is_unique_violation(&err) => {
                self.record_once(&facts, now).await.map_err(RecordError::into_facts)
            }
            other => other.map_err(RecordError::into_facts),
        }
    }

    async fn record_once(&self, facts: &OrderFacts, now: DateTime<Utc>) -> Result<Recorded, RecordError> {
        let json = serde_json::to_value(facts).map_err(|e| RecordError::Facts(FactsError::Malformed(e.to_string())))?;
        // It reads before it writes: SQLite must take the write lock at BEGIN, or a commit by another connection
        // since the first read makes the write fail at once with "database is locked" (PostgreSQL ignores it).
        let txn = self
            .db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..sea_orm::TransactionOptions::default()
            })
            .await?;
        let existing = order::Entity::find()
            .filter(order::Column::OrderReference.eq(facts.order_reference.as_str()))
            .one(&txn)
            .await?;
        if let Some(existing) = &existing
            && read_facts(existing).ok().as_ref() == Some(facts)
        {
            txn.rollback().await?;
            return Ok(Recorded::Unchanged);
        }
        let references = facts.references();
        let taken = reference::Entity::find()
            .filter(reference::Column::Reference.is_in(references.iter().map(String::as_str)))
            .all(&txn)
            .await?;
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |e| e.id);
        if let Some(clash) = taken.iter().find(|t| t.order_id != id) {
            let other = order::Entity::find_by_id(clash.order_id)
                .one(&txn)
                .await?
                .map(|o| o.order_reference)
                .unwrap_or_default();
            txn.rollback().await?;
            return Err(RecordError::Facts(FactsError::Conflict(format!(
                "reference {:?} already belongs to order {other:?}; an order's references must be its own",
                clash.reference
            ))));
        }
        let row = order::ActiveModel {
            id: Set(id),
            order_reference: Set(facts.order_reference.clone()),
            seller_id: Set(facts.seller.seller_id.clone()),
            customer_account_id: Set(facts.customer.account_id.clone()),
            placed_at: Set(facts.placed_at),
            facts: Set(json),
            created_at: Set(existing.as_ref().map_or(now, |e| e.created_at)),
            updated_at: Set(now),
        };
        let outcome = if existing.is_some() {
            order::Entity::update(row).exec(&txn).await?;
            reference::Entity::delete_many()
                .filter(reference::Column::OrderId.eq(id))
                .exec(&txn)
                .await?;
            Recorded::Replaced
        } else {
            order::Entity::insert(row).exec_without_returning(&txn).await?;
            Recorded::Created
        };
        reference::Entity::insert_many(references.into_iter().map(|reference| reference::ActiveModel {
            reference: Set(reference),
            order_id: Set(id),
        }))
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(outcome)
    }
}

enum RecordError {
    Db(DbErr),
    Facts(FactsError),
}

impl From<DbErr> for RecordError {
    fn from(err: DbErr) -> Self {
        RecordError::Db(err)
    }
}

impl RecordError {
    fn into_facts(self) -> FactsError {
        match self {
            RecordError::Db(err) if is_unique_violation(&err) => FactsError::Conflict(
                "the order or one of its references was recorded by someone else meanwhile; try again".into(),
            ),
            RecordError::Db(err) => FactsError::Unavailable(format!("writing the orders tables: {err}")),
            RecordError::Facts(err) => err,
        }
    }
}

#[async_trait::async_trait]
impl MarketplaceFacts for TablesFacts {
    fn name(&self) -> &'static str {
        "tables"
    }

    async fn find_order(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError> {
        self.find(lookup).await
    }

    async fn record_order(&self, facts: OrderFacts, now: DateTime<Utc>) -> Result<Recorded, FactsError> {
        self.record(facts, now).await
    }
}
