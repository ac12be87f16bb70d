//! Policy backtests: a lead's draft replayed against the active policy over the inputs past disputes were
//! triaged with. A backtest is a job row with its progress (the last dispute replayed, the tallies so far) so it
//! resumes where it stopped under a lease, like bulk jobs; the disputes whose decision changes are rows of their
//! own.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE policy_backtests (
    id {uuid} PRIMARY KEY,
    draft_source TEXT NOT NULL,
    active_version INTEGER NOT NULL,
    active_source TEXT NOT NULL,
    months INTEGER NOT NULL,
    since {timestamp} NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    processed BIGINT NOT NULL,
    last_dispute {uuid},
    tally {json} NOT NULL,
    error TEXT,
    created_by TEXT NOT NULL,
    locked_by TEXT,
    locked_until {timestamp},
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL,
    finished_at {timestamp}
);
CREATE INDEX policy_backtests_running ON policy_backtests (created_at) WHERE status = 'running';

CREATE TABLE policy_backtest_changes (
    backtest_id {uuid} NOT NULL REFERENCES policy_backtests (id),
    dispute_id {uuid} NOT NULL,
    change {json} NOT NULL,
    PRIMARY KEY (backtest_id, dispute_id)
)
"#;

const DOWN: &str = r#"
DROP TABLE policy_backtest_changes;
DROP TABLE policy_backtests
"#;

script_migration!(UP, DOWN);
