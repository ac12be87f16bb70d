//! The mailbox: every message Verdict sends to customers, sellers and assignees, whichever way it went out.
//!
//! With no mail server or seller webhook configured the mailbox *is* the delivery (shown in GraphQL); with
//! them configured it is the log of what was sent. `message_id` is the step's idempotency key and unique, so a
//! retried step stores, and sends, one message.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE mailbox (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} REFERENCES disputes (id),
    channel TEXT NOT NULL CHECK (channel IN ('customer', 'seller', 'assignee')),
    transport TEXT NOT NULL,
    recipient TEXT NOT NULL,
    locale TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at {timestamp} NOT NULL
);
CREATE UNIQUE INDEX mailbox_message_id ON mailbox (message_id);
CREATE INDEX mailbox_by_dispute ON mailbox (dispute_id, created_at);
CREATE INDEX mailbox_recent ON mailbox (created_at, id)
"#;

const DOWN: &str = r#"
DROP TABLE mailbox
"#;

script_migration!(UP, DOWN);
