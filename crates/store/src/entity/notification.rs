use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub processor: String,
    pub event_id: String,
    pub event_type: String,
    pub kind: Option<String>,
    pub processor_dispute_id: Option<String>,
    pub received_at: DateTimeUtc,
    pub occurred_at: Option<DateTimeUtc>,
    pub payload: String,
    pub notification: Option<Json>,
    pub status: String,
    pub dispute_id: Option<Uuid>,
    pub note: Option<String>,
    pub attempts: i32,
    pub locked_until: Option<DateTimeUtc>,
    pub applied_at: Option<DateTimeUtc>,
    pub payload_purged_at: Option<DateTimeUtc>,
    pub lease_token: Option<Uuid>,
    pub body: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
