//! Scheduling: fencing tokens on timers and steps, and the cron schedules table.
//!
//! A worker that claims a timer or a step writes a fresh `lease_token`; completing or failing it requires the
//! same token, so a worker whose lease expired (and whose row was taken over) cannot commit a stale result.
//! `schedules` holds one row per cron schedule: replicas claim a tick with a compare-and-set on
//! `next_fire_at`, so each tick fires once across replicas and a long downtime fires one catch-up tick.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE timers ADD COLUMN lease_token {uuid};
ALTER TABLE steps ADD COLUMN lease_token {uuid};
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    next_fire_at {timestamp} NOT NULL,
    last_fired_at {timestamp},
    locked_by TEXT,
    locked_until {timestamp},
    lease_token {uuid},
    updated_at {timestamp} NOT NULL
)
"#;

const DOWN: &str = r#"
DROP TABLE schedules;
ALTER TABLE steps DROP COLUMN lease_token;
ALTER TABLE timers DROP COLUMN lease_token
"#;

script_migration!(UP, DOWN);
