use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "evidence_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub dispute_id: Uuid,
    pub kind: String,
    pub text: Option<String>,
    pub file_id: Option<Uuid>,
    pub file_sha256: Option<String>,
    pub file_size_bytes: Option<i64>,
    pub file_content_type: Option<String>,
    pub file_name: Option<String>,
    pub source: String,
    pub added_by: String,
    pub added_at: DateTimeUtc,
    pub removed_at: Option<DateTimeUtc>,
    pub removed_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
