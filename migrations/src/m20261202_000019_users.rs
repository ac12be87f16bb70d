//! People who signed in through the organisation's OpenID Connect provider. A row is keyed by the provider's
//! (issuer, subject) pair, which never changes for a person; `username` is the handle Verdict shows and records
//! (event actors, assignees), unique so that an assignment names exactly one person. Name and email are
//! personal data, refreshed from each sign-in's token; `last_seen_at` is the time of the latest request.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE users (
    id {uuid} PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    username TEXT NOT NULL,
    name TEXT,
    email TEXT,
    role TEXT NOT NULL,
    created_at {timestamp} NOT NULL,
    last_seen_at {timestamp} NOT NULL
);
CREATE UNIQUE INDEX users_by_subject ON users (issuer, subject);
CREATE UNIQUE INDEX users_by_username ON users (username)
"#;

const DOWN: &str = r#"
DROP TABLE users
"#;

script_migration!(UP, DOWN);
