//! Generated documents: each defense document and case file rendered for a dispute, kept as rendered.
//!
//! A generation is a new row (never an update), numbered per dispute and kind, so that what was sent to a
//! processor can be shown again byte for byte; the dispute's event log records each one (`document_generated`,
//! with the id, version and hash). The PDF and HTML are stored in the row: a few tens of kilobytes each, and
//! written in the transaction of the event, so there is never an event without its document or the reverse.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::{dialect, run_script};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE documents (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} NOT NULL REFERENCES disputes (id),
    kind TEXT NOT NULL CHECK (kind IN ('defense', 'case_file')),
    version INTEGER NOT NULL CHECK (version > 0),
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    pdf {bytes} NOT NULL,
    html TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at {timestamp} NOT NULL
);
CREATE UNIQUE INDEX documents_version ON documents (dispute_id, kind, version)
"#;

const DOWN: &str = r#"
DROP TABLE documents
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let bytes = match manager.get_database_backend() {
            DatabaseBackend::Postgres => "BYTEA",
            _ => "BLOB",
        };
        run_script(manager, &dialect(manager, UP).replace("{bytes}", bytes)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }
}
