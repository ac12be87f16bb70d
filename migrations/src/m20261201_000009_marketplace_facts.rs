//! Verdict's own copy of the marketplace's orders: the default source of marketplace facts, fed by GraphQL
//! (`recordOrder`), `verdict import orders` and the demo.
//!
//! `marketplace_orders` holds one row per order with its facts as JSON (they are read whole, never queried
//! inside); `marketplace_order_references` maps every reference the order is known by (its order number and
//! each payment reference) to the order, unique, so that linking a dispute by any reference its notification
//! carried is one indexed query.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE marketplace_orders (
    id {uuid} PRIMARY KEY,
    order_reference TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    customer_account_id TEXT NOT NULL,
    placed_at {timestamp} NOT NULL,
    facts {json} NOT NULL,
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL
);
CREATE UNIQUE INDEX marketplace_orders_reference ON marketplace_orders (order_reference);
CREATE INDEX marketplace_orders_by_seller ON marketplace_orders (seller_id, placed_at);
CREATE TABLE marketplace_order_references (
    reference TEXT PRIMARY KEY,
    order_id {uuid} NOT NULL REFERENCES marketplace_orders (id) ON DELETE CASCADE
);
CREATE INDEX marketplace_order_references_by_order ON marketplace_order_references (order_id)
"#;

const DOWN: &str = r#"
DROP TABLE marketplace_order_references;
DROP TABLE marketplace_orders
"#;

script_migration!(UP, DOWN);
