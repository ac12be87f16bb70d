//! What the policy did on each dispute, once per dispute and action: a triage decision that flips away and back
//! (A, B, A) must not refund, accept or message twice, and an approval must not be performed twice. The row is
//! written in the commit that performs the action, and its key refuses a second one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE policy_actions (
    dispute_id {uuid} NOT NULL,
    action TEXT NOT NULL,
    approval_id {uuid},
    actor TEXT NOT NULL,
    at {timestamp} NOT NULL,
    PRIMARY KEY (dispute_id, action)
)
"#;

const DOWN: &str = r#"
DROP TABLE policy_actions
"#;

script_migration!(UP, DOWN);
