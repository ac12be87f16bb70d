//! sea-orm entities: one module per table, rows only; conversion to domain types lives in `convert`.

pub mod api_key;
pub mod bulk_job;
pub mod bulk_job_item;
pub mod dispute;
pub mod dispute_event;
pub mod dispute_status;
pub mod dispute_triage;
pub mod document;
pub mod evidence_file;
pub mod evidence_item;
pub mod notification;
pub mod policy_approval;
pub mod policy_backtest;
pub mod policy_backtest_change;
pub mod policy_version;
pub mod seller_recovery;
pub mod step;
pub mod timer;
pub mod user;
