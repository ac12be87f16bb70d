//! Bulk work too large to run inside one request: a job names the action and the caller, and one item per
//! dispute records that dispute's result once it is known. Items without an outcome are the work left, so a
//! job resumes after a restart where it stopped; the lease lets exactly one replica work a job at a time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE bulk_jobs (
    id {uuid} PRIMARY KEY,
    action TEXT NOT NULL,
    input {json} NOT NULL,
    actor_name TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    locked_by TEXT,
    locked_until {timestamp},
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL,
    finished_at {timestamp}
);
CREATE INDEX bulk_jobs_open ON bulk_jobs (created_at) WHERE status = 'running';

CREATE TABLE bulk_job_items (
    job_id {uuid} NOT NULL REFERENCES bulk_jobs (id),
    position INTEGER NOT NULL,
    dispute_id {uuid} NOT NULL,
    outcome TEXT,
    code TEXT,
    message TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX bulk_job_items_left ON bulk_job_items (job_id, position) WHERE outcome IS NULL;
CREATE INDEX bulk_job_items_outcome ON bulk_job_items (job_id, outcome)
"#;

const DOWN: &str = r#"
DROP TABLE bulk_job_items;
DROP TABLE bulk_jobs
"#;

script_migration!(UP, DOWN);
