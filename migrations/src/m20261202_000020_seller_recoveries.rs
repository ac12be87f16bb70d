//! Recoveries of seller-owned disputes that were lost or accepted: the amount to debit from the seller's
//! payout. `recovery_key` is the recovery step's idempotency key, unique, so a retried step records nothing
//! twice; `payout_reference` is set once the marketplace's payout service has taken the debit.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE seller_recoveries (
    id {uuid} PRIMARY KEY,
    recovery_key TEXT NOT NULL,
    dispute_id {uuid} NOT NULL,
    seller_id TEXT NOT NULL,
    amount_minor_units BIGINT NOT NULL,
    currency TEXT NOT NULL,
    liability TEXT NOT NULL,
    outcome TEXT NOT NULL,
    payout_reference TEXT,
    created_at {timestamp} NOT NULL,
    sent_at {timestamp}
);
CREATE UNIQUE INDEX seller_recoveries_by_key ON seller_recoveries (recovery_key);
CREATE INDEX seller_recoveries_by_seller ON seller_recoveries (seller_id, created_at)
"#;

const DOWN: &str = r#"
DROP TABLE seller_recoveries
"#;

script_migration!(UP, DOWN);
