//! What dispute patterns group and count by, kept in plain columns of `disputes` so that the patterns query is a
//! GROUP BY over one table, with no JSON read and no walk of the event log:
//!
//! - `order_device_model`, `order_grade`, `order_country`: the linked order's first line and shipping country
//!   (`order_linked` carries them; the store writes them with the event);
//! - `closed_at` and `resolution_seconds`: when the dispute last closed and how long after it opened (cleared
//!   when a second cycle reopens it);
//! - `deadline_missed`: 1 once the dispute expired with nothing submitted, kept even if a lead overrides the
//!   outcome afterwards.
//!
//! Existing rows are backfilled from the event log and Verdict's own order tables. Indexes serve the patterns'
//! filters (opened window, processor, currency) and the monitoring counts (network and month, orders by month).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::{dialect, run_script};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: &str = r#"
ALTER TABLE disputes ADD COLUMN order_device_model TEXT;
ALTER TABLE disputes ADD COLUMN order_grade TEXT;
ALTER TABLE disputes ADD COLUMN order_country TEXT;
ALTER TABLE disputes ADD COLUMN closed_at {timestamp};
ALTER TABLE disputes ADD COLUMN resolution_seconds BIGINT;
ALTER TABLE disputes ADD COLUMN deadline_missed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX disputes_patterns_opened ON disputes (opened_at, currency);
CREATE INDEX disputes_patterns_processor ON disputes (processor, opened_at);
CREATE INDEX disputes_monitoring ON disputes (network, opened_at, seller_id);
CREATE INDEX marketplace_orders_by_month ON marketplace_orders (placed_at, seller_id)
"#;

const CLOSED: &str = "('won', 'lost', 'accepted', 'expired', 'withdrawn', 'resolved')";

const BACKFILL_POSTGRES: &str = r#"
UPDATE disputes d SET closed_at = e.at
  FROM (SELECT dispute_id, MAX(at) AS at FROM dispute_events WHERE to_status IN {closed} GROUP BY dispute_id) e
  WHERE d.id = e.dispute_id AND d.status IN {closed};
UPDATE disputes SET resolution_seconds = CAST(EXTRACT(EPOCH FROM (closed_at - opened_at)) AS BIGINT)
  WHERE closed_at IS NOT NULL;
UPDATE disputes SET deadline_missed = 1 WHERE EXISTS
  (SELECT 1 FROM dispute_events e WHERE e.dispute_id = disputes.id AND e.to_status = 'expired');
UPDATE disputes d SET
    order_device_model = NULLIF(TRIM(o.facts -> 'lines' -> 0 ->> 'device_model'), ''),
    order_grade = NULLIF(LOWER(TRIM(o.facts -> 'lines' -> 0 ->> 'grade')), ''),
    order_country = NULLIF(UPPER(TRIM(o.facts -> 'shipment' -> 'address' ->> 'country')), '')
  FROM marketplace_orders o WHERE o.order_reference = d.order_reference
"#;

const BACKFILL_SQLITE: &str = r#"
UPDATE disputes SET closed_at = (SELECT MAX(e.at) FROM dispute_events e
    WHERE e.dispute_id = disputes.id AND e.to_status IN {closed})
  WHERE status IN {closed};
UPDATE disputes SET resolution_seconds = CAST(ROUND((julianday(closed_at) - julianday(opened_at)) * 86400) AS INTEGER)
  WHERE closed_at IS NOT NULL;
UPDATE disputes SET deadline_missed = 1 WHERE EXISTS
  (SELECT 1 FROM dispute_events e WHERE e.dispute_id = disputes.id AND e.to_status = 'expired');
UPDATE disputes SET
    order_device_model = (SELECT NULLIF(TRIM(json_extract(o.facts, '$.lines[0].device_model')), '')
      FROM marketplace_orders o WHERE o.order_reference = disputes.order_reference),
    order_grade = (SELECT NULLIF(LOWER(TRIM(json_extract(o.facts, '$.lines[0].grade'))), '')
      FROM marketplace_orders o WHERE o.order_reference = disputes.order_reference),
    order_country = (SELECT NULLIF(UPPER(TRIM(json_extract(o.facts, '$.shipment.address.country'))), '')
      FROM marketplace_orders o WHERE o.order_reference = disputes.order_reference)
  WHERE order_reference IN (SELECT order_reference FROM marketplace_orders)
"#;

const DOWN: &str = r#"
DROP INDEX marketplace_orders_by_month;
DROP INDEX disputes_monitoring;
DROP INDEX disputes_patterns_processor;
DROP INDEX disputes_patterns_opened;
ALTER TABLE disputes DROP COLUMN deadline_missed;
ALTER TABLE disputes DROP COLUMN resolution_seconds;
ALTER TABLE disputes DROP COLUMN closed_at;
ALTER TABLE disputes DROP COLUMN order_country;
ALTER TABLE disputes DROP COLUMN order_grade;
ALTER TABLE disputes DROP COLUMN order_device_model
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &dialect(manager, COLUMNS)).await?;
        let backfill = match manager.get_database_backend() {
            DatabaseBackend::Postgres => BACKFILL_POSTGRES,
            _ => BACKFILL_SQLITE,
        };
        run_script(manager, &backfill.replace("{closed}", CLOSED)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
