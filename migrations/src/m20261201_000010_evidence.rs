//! Evidence: the files uploaded for a dispute, and the items of its defense.
//!
//! `evidence_files` records each upload for one dispute (the bytes live in the file store under `sha256`; the
//! same bytes uploaded twice share one stored file). `evidence_items` holds what a defense shows: text, a
//! file, or both. An item is never deleted: removing it sets `removed_at`, and the adding and removing are
//! events on the dispute (`evidence_added`, `evidence_removed`) that name kinds and ids, never content.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE evidence_files (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} NOT NULL REFERENCES disputes (id),
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    size_bytes BIGINT NOT NULL CHECK (size_bytes > 0),
    content_type TEXT NOT NULL CHECK (content_type IN ('pdf', 'png', 'jpeg')),
    file_name TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at {timestamp} NOT NULL
);
CREATE INDEX evidence_files_by_dispute ON evidence_files (dispute_id, uploaded_at);
CREATE TABLE evidence_items (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} NOT NULL REFERENCES disputes (id),
    kind TEXT NOT NULL,
    text TEXT,
    file_id {uuid} REFERENCES evidence_files (id),
    file_sha256 TEXT,
    file_size_bytes BIGINT,
    file_content_type TEXT,
    file_name TEXT,
    source TEXT NOT NULL CHECK (source IN ('analyst', 'marketplace_facts')),
    added_by TEXT NOT NULL,
    added_at {timestamp} NOT NULL,
    removed_at {timestamp},
    removed_by TEXT,
    CHECK (text IS NOT NULL OR file_id IS NOT NULL)
);
CREATE INDEX evidence_items_by_dispute ON evidence_items (dispute_id, added_at);
CREATE INDEX evidence_items_by_file ON evidence_items (file_id)
"#;

const DOWN: &str = r#"
DROP TABLE evidence_items;
DROP TABLE evidence_files
"#;

script_migration!(UP, DOWN);
