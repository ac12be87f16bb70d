use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "disputes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub processor: String,
    pub processor_dispute_id: String,
    pub payment_reference: String,
    pub order_reference: Option<String>,
    pub seller_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_locale: String,
    pub amount_minor: i64,
    pub currency: String,
    pub network: String,
    pub reason_code: String,
    pub reason_code_raw: String,
    pub reason_category: String,
    pub stage: String,
    pub status: String,
    pub due_by: Option<DateTimeUtc>,
    pub sort_due_at: DateTimeUtc,
    pub opened_at: DateTimeUtc,
    pub queue: Option<String>,
    pub priority: i32,
    pub assignee: Option<String>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
