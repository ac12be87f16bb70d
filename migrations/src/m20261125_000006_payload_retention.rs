//! Raw notification bodies carry customer data (names, emails, addresses) and are kept only as long as the
//! retention setting says: after that a daily job blanks them and records when. The partial index finds what
//! is still to purge without scanning what already was.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE notifications ADD COLUMN payload_purged_at {timestamp};
CREATE INDEX notifications_unpurged ON notifications (received_at) WHERE payload_purged_at IS NULL
"#;

const DOWN: &str = r#"
DROP INDEX notifications_unpurged;
ALTER TABLE notifications DROP COLUMN payload_purged_at
"#;

script_migration!(UP, DOWN);
