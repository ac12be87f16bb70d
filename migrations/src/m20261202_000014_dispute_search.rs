//! Indexes behind the queue's filters, searches and sort orders, and the audit trail across disputes.
//!
//! Every sort order is a keyset on `(key, id)`, so each sort key gets an index ending in `id`: a page is then
//! an index range scan at any depth. The filters analysts combine with the due-date order most (queue and
//! assignee, "mine" and "unassigned") get `(column, sort_due_at, id)` like status and seller already have.
//! The searches are exact matches: the processor's dispute id without its processor, the payment and order
//! references, and the customer's email, compared case-insensitively through `lower(customer_email)`. The
//! email is stored as the processor sent it, in clear, in the projection; an index of the same value adds no
//! copy a reader of the table could not already see. (If it is ever stored encrypted, this index becomes one
//! over a keyed hash of the normalised address.)

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX disputes_processor_dispute_id ON disputes (processor_dispute_id);
CREATE INDEX disputes_payment_reference ON disputes (payment_reference);
CREATE INDEX disputes_order_reference ON disputes (order_reference);
CREATE INDEX disputes_customer_email ON disputes (lower(customer_email));
CREATE INDEX disputes_assignee_order ON disputes (assignee, sort_due_at, id);
CREATE INDEX disputes_by_queue_order ON disputes (queue, sort_due_at, id);
CREATE INDEX disputes_amount_order ON disputes (amount_minor, id);
CREATE INDEX disputes_opened_order ON disputes (opened_at, id);
CREATE INDEX dispute_events_at ON dispute_events (at, dispute_id, version);
CREATE INDEX dispute_events_actor_at ON dispute_events (actor, at, dispute_id, version)
"#;

const DOWN: &str = r#"
DROP INDEX dispute_events_actor_at;
DROP INDEX dispute_events_at;
DROP INDEX disputes_opened_order;
DROP INDEX disputes_amount_order;
DROP INDEX disputes_by_queue_order;
DROP INDEX disputes_assignee_order;
DROP INDEX disputes_customer_email;
DROP INDEX disputes_order_reference;
DROP INDEX disputes_payment_reference;
DROP INDEX disputes_processor_dispute_id
"#;

script_migration!(UP, DOWN);
