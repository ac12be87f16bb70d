use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dispute_triage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub dispute_id: Uuid,
    pub policy_version: i32,
    pub rule: String,
    pub evidence_band: String,
    pub input: Json,
    pub triage: Json,
    pub decided_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
