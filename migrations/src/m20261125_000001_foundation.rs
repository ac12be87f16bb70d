//! Disputes (the projection), their append-only event log, timers, outbox steps and API keys.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE disputes (
    id {uuid} PRIMARY KEY,
    processor TEXT NOT NULL,
    processor_dispute_id TEXT NOT NULL,
    payment_reference TEXT NOT NULL,
    order_reference TEXT,
    seller_id TEXT,
    customer_name TEXT,
    customer_email TEXT,
    customer_locale TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    network TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    reason_code_raw TEXT NOT NULL,
    reason_category TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    due_by {timestamp},
    sort_due_at {timestamp} NOT NULL,
    opened_at {timestamp} NOT NULL,
    queue TEXT,
    assignee TEXT,
    version BIGINT NOT NULL,
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL
);
CREATE UNIQUE INDEX disputes_processor_dispute ON disputes (processor, processor_dispute_id);
CREATE INDEX disputes_queue_order ON disputes (sort_due_at, id);
CREATE INDEX disputes_status_order ON disputes (status, sort_due_at, id);
CREATE INDEX disputes_seller_order ON disputes (seller_id, sort_due_at, id);

CREATE TABLE dispute_events (
    dispute_id {uuid} NOT NULL REFERENCES disputes (id),
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    actor TEXT NOT NULL,
    reason TEXT,
    change {json} NOT NULL,
    at {timestamp} NOT NULL,
    PRIMARY KEY (dispute_id, version)
);

CREATE TABLE timers (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} REFERENCES disputes (id),
    kind TEXT NOT NULL,
    due_at {timestamp} NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_until {timestamp},
    payload {json},
    created_at {timestamp} NOT NULL,
    fired_at {timestamp}
);
CREATE INDEX timers_pending_due ON timers (due_at) WHERE status = 'pending';
CREATE INDEX timers_by_dispute ON timers (dispute_id, status);

CREATE TABLE steps (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} REFERENCES disputes (id),
    kind TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    next_attempt_at {timestamp} NOT NULL,
    locked_by TEXT,
    locked_until {timestamp},
    last_error TEXT,
    payload {json},
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL
);
CREATE UNIQUE INDEX steps_idempotency_key ON steps (idempotency_key);
CREATE INDEX steps_pending_next ON steps (next_attempt_at) WHERE status = 'pending';
CREATE INDEX steps_by_dispute ON steps (dispute_id);
CREATE INDEX steps_dead ON steps (updated_at) WHERE status = 'dead';

CREATE TABLE api_keys (
    id {uuid} PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at {timestamp} NOT NULL,
    revoked_at {timestamp}
);
CREATE UNIQUE INDEX api_keys_name ON api_keys (name);
CREATE UNIQUE INDEX api_keys_token_hash ON api_keys (token_hash)
"#;

const DOWN: &str = r#"
DROP TABLE api_keys;
DROP TABLE steps;
DROP TABLE timers;
DROP TABLE dispute_events;
DROP TABLE disputes
"#;

script_migration!(UP, DOWN);
