use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policy_backtests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub draft_source: String,
    pub active_version: i32,
    pub active_source: String,
    pub months: i32,
    pub since: DateTimeUtc,
    pub status: String,
    pub total: i64,
    pub processed: i64,
    pub last_dispute: Option<Uuid>,
    pub tally: Json,
    pub error: Option<String>,
    pub created_by: String,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
