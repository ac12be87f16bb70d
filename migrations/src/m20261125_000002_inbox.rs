//! The notification inbox: every processor message is stored here before Verdict answers 2xx, so that a
//! crash between receiving and applying never loses one, and any dispute can be replayed from its raw
//! payloads.
//!
//! One row per (processor, event_id): processors redeliver, and the unique index turns a redelivery into a
//! "duplicate" outcome instead of a second application. Flagged rows (notifications that contradict the state
//! machine) keep their `dispute_id` and `note`, which is how they are shown on the dispute.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE notifications (
    id {uuid} PRIMARY KEY,
    processor TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    kind TEXT,
    processor_dispute_id TEXT,
    received_at {timestamp} NOT NULL,
    occurred_at {timestamp},
    payload TEXT NOT NULL,
    notification {json},
    status TEXT NOT NULL,
    dispute_id {uuid} REFERENCES disputes (id),
    note TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_until {timestamp},
    applied_at {timestamp}
);
CREATE UNIQUE INDEX notifications_processor_event ON notifications (processor, event_id);
CREATE INDEX notifications_pending ON notifications (occurred_at, id) WHERE status = 'pending';
CREATE INDEX notifications_by_dispute ON notifications (dispute_id, status, occurred_at)
"#;

const DOWN: &str = r#"
DROP TABLE notifications
"#;

script_migration!(UP, DOWN);
