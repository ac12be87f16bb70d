//! The pattern summary: dispute figures per opened month, kept by a scheduled job, so that patterns and
//! monitoring over a million disputes read a few thousand rows instead of every dispute.
//!
//! `pattern_summary` holds one row per month, currency and group of one of a few fixed groupings (cuboids); the
//! columns outside the row's cuboid are NULL. `monitoring_summary` holds each program's counted disputes per
//! month and seller. `pattern_summary_months` says which months are summarised, and `pattern_summary_state`
//! up to when: a dispute changed since (`updated_at`, hence the index) makes its month read from `disputes`
//! again until the next run, so the figures are never stale.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE pattern_summary (
    cuboid TEXT NOT NULL,
    month TEXT NOT NULL,
    currency TEXT NOT NULL,
    processor TEXT,
    network TEXT,
    reason_category TEXT,
    reason_code TEXT,
    seller_id TEXT,
    order_device_model TEXT,
    order_grade TEXT,
    order_country TEXT,
    disputes BIGINT NOT NULL,
    disputed_minor BIGINT NOT NULL,
    won BIGINT NOT NULL,
    lost BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    open BIGINT NOT NULL,
    recovered_minor BIGINT NOT NULL,
    lost_minor BIGINT NOT NULL,
    accepted_minor BIGINT NOT NULL,
    deadline_misses BIGINT NOT NULL,
    resolved BIGINT NOT NULL,
    resolution_histogram TEXT NOT NULL
);
CREATE INDEX pattern_summary_by_month ON pattern_summary (cuboid, month);
CREATE TABLE monitoring_summary (
    month TEXT NOT NULL,
    program TEXT NOT NULL,
    seller_id TEXT,
    disputes BIGINT NOT NULL
);
CREATE INDEX monitoring_summary_by_month ON monitoring_summary (month);
CREATE TABLE pattern_summary_months (
    month TEXT PRIMARY KEY,
    disputes BIGINT NOT NULL,
    computed_at {timestamp} NOT NULL
);
CREATE TABLE pattern_summary_state (
    id INTEGER PRIMARY KEY,
    covers_until {timestamp} NOT NULL,
    refreshed_at {timestamp} NOT NULL
);
CREATE INDEX disputes_updated ON disputes (updated_at)
"#;

const DOWN: &str = r#"
DROP INDEX disputes_updated;
DROP TABLE pattern_summary_state;
DROP TABLE pattern_summary_months;
DROP TABLE monitoring_summary;
DROP TABLE pattern_summary
"#;

script_migration!(UP, DOWN);
