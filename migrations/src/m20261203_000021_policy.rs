//! Triage policy as versioned data: the policy versions leads write (exactly one active), each dispute's last
//! triage run (its inputs and result, which the backtest replays and the win rates group by), the priority the
//! policy gives a dispute on its projection (sorted by the queue), and the approvals a lead gives before the
//! policy acts above its limit.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE policy_versions (
    version INTEGER PRIMARY KEY,
    id {uuid} NOT NULL UNIQUE,
    source TEXT NOT NULL,
    note TEXT,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    created_by TEXT NOT NULL,
    created_at {timestamp} NOT NULL,
    activated_by TEXT,
    activated_at {timestamp}
);
CREATE UNIQUE INDEX policy_versions_one_active ON policy_versions (active) WHERE active;

CREATE TABLE dispute_triage (
    dispute_id {uuid} PRIMARY KEY,
    policy_version INTEGER NOT NULL,
    rule TEXT NOT NULL,
    evidence_band TEXT NOT NULL,
    input {json} NOT NULL,
    triage {json} NOT NULL,
    decided_at {timestamp} NOT NULL
);

ALTER TABLE disputes ADD COLUMN priority INTEGER NOT NULL DEFAULT 3;
CREATE INDEX disputes_priority ON disputes (priority, sort_due_at, id);

CREATE TABLE policy_approvals (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} NOT NULL,
    policy_version INTEGER NOT NULL,
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    limit_minor BIGINT NOT NULL,
    request_key TEXT NOT NULL UNIQUE,
    why TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_at {timestamp} NOT NULL,
    decided_by TEXT,
    decided_at {timestamp},
    decision_note TEXT
);
CREATE INDEX policy_approvals_pending ON policy_approvals (requested_at) WHERE status = 'pending'
"#;

const DOWN: &str = r#"
DROP TABLE policy_approvals;
DROP INDEX disputes_priority;
ALTER TABLE disputes DROP COLUMN priority;
DROP TABLE dispute_triage;
DROP TABLE policy_versions
"#;

script_migration!(UP, DOWN);
