//! A lease token now exists only on a `pending` timer or step (see `verdict_store::queue`). Timers cancelled
//! while leased kept their token until now; this clears it, so a finished row carries no lease.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

script_migration!(
    r#"
UPDATE timers SET locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE status <> 'pending' AND lease_token IS NOT NULL;
UPDATE steps SET locked_by = NULL, locked_until = NULL, lease_token = NULL
WHERE status <> 'pending' AND lease_token IS NOT NULL
"#,
    // Nothing to undo: a cleared lease was already over.
    "SELECT 1"
);
