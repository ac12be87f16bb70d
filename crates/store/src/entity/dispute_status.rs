//! `dispute_statuses`: a dispute's status, due order, opening and last change, kept by triggers (migration 27).
//! Read only: it serves one status's disputes in due order and the disputes changed since a time.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dispute_statuses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub dispute_id: Uuid,
    pub status: String,
    pub sort_due_at: DateTimeUtc,
    pub opened_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::dispute::Entity",
        from = "Column::DisputeId",
        to = "super::dispute::Column::Id"
    )]
    Dispute,
}

impl ActiveModelBehavior for ActiveModel {}
