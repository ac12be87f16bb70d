//! sea-orm entities: one module per table, rows only; conversion to domain types lives in `convert`.

pub mod api_key;
pub mod bulk_job;
pub mod bulk_job_item;
pub mod dispute;
pub mod dispute_event;
pub mod document;
pub mod evidence_file;
pub mod evidence_item;
pub mod notification;
pub mod seller_recovery;
pub mod step;
pub mod timer;
pub mod user;
