//! Two more mailbox channels: `queue` (a queue's shared inbox: digests, reminders of unassigned disputes) and
//! `lead` (a queue's leads: overdue outcomes). Digests written before this went to the `assignee` channel with
//! the recipient `queue:<name>`; they move to `queue`. SQLite cannot change a CHECK constraint, so there the
//! table is rebuilt.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::{dialect, run_script};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
ALTER TABLE mailbox DROP CONSTRAINT mailbox_channel_check;
ALTER TABLE mailbox ADD CONSTRAINT mailbox_channel_check
    CHECK (channel IN ('customer', 'seller', 'assignee', 'queue', 'lead'));
UPDATE mailbox SET channel = 'queue', recipient = substr(recipient, 7)
    WHERE channel = 'assignee' AND recipient LIKE 'queue:%'
"#;

const POSTGRES_DOWN: &str = r#"
UPDATE mailbox SET channel = 'assignee', recipient = 'queue:' || recipient WHERE channel = 'queue';
DELETE FROM mailbox WHERE channel = 'lead';
ALTER TABLE mailbox DROP CONSTRAINT mailbox_channel_check;
ALTER TABLE mailbox ADD CONSTRAINT mailbox_channel_check CHECK (channel IN ('customer', 'seller', 'assignee'))
"#;

const SQLITE_UP: &str = r#"
CREATE TABLE mailbox_new (
    id {uuid} PRIMARY KEY,
    dispute_id {uuid} REFERENCES disputes (id),
    channel TEXT NOT NULL CHECK (channel IN ('customer', 'seller', 'assignee', 'queue', 'lead')),
    transport TEXT NOT NULL,
    recipient TEXT NOT NULL,
    locale TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at {timestamp} NOT NULL
);
INSERT INTO mailbox_new (id, dispute_id, channel, transport, recipient, locale, subject, body, message_id, created_at)
    SELECT id, dispute_id, channel, transport, recipient, locale, subject, body, message_id, created_at FROM mailbox;
DROP TABLE mailbox;
ALTER TABLE mailbox_new RENAME TO mailbox;
CREATE UNIQUE INDEX mailbox_message_id ON mailbox (message_id);
CREATE INDEX mailbox_by_dispute ON mailbox (dispute_id, created_at);
CREATE INDEX mailbox_recent ON mailbox (created_at, id);
UPDATE mailbox SET channel = 'queue', recipient = substr(recipient, 7)
    WHERE channel = 'assignee' AND recipient LIKE 'queue:%'
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run_script(manager, POSTGRES_UP).await,
            // One call, so one connection and one transaction: another pooled connection could still see the
            // old table when the new one is renamed, and a half-done rebuild must not stay behind.
            _ => {
                let script = dialect(manager, SQLITE_UP);
                manager
                    .get_connection()
                    .execute_unprepared(&format!("BEGIN IMMEDIATE; {script}; COMMIT"))
                    .await
                    .map(|_| ())
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run_script(manager, POSTGRES_DOWN).await,
            // SQLite keeps the wider constraint; the data moves back.
            _ => run_script(
                manager,
                "UPDATE mailbox SET channel = 'assignee', recipient = 'queue:' || recipient WHERE channel = 'queue'; \
                     DELETE FROM mailbox WHERE channel = 'lead'",
            )
            .await,
        }
    }
}
