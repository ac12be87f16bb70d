use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policy_backtest_changes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub backtest_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub dispute_id: Uuid,
    pub change: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
