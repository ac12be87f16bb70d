//! The processor notifications behind a dispute: flagged ones for everybody who works disputes, raw payloads
//! (which can carry personal data) for leads and admins only.

use async_graphql::{Context, ID, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::Dispute;
use verdict_store::NotificationRecord;

use super::loaders::{FlaggedNotificationsOf, NotificationsOf};
use super::query::principal;
use super::types::lists;
use crate::auth::Role;

/// One notification as received from a processor, and what Verdict did with it.
#[derive(SimpleObject)]
pub struct ProcessorNotification {
    pub id: ID,
    pub processor: String,
    pub event_id: String,
    pub event_type: String,
    /// The normalised kind (chargeback_opened, won, pre_arbitration_opened, ...), when it concerns a dispute.
    pub kind: Option<String>,
    pub received_at: DateTime<Utc>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// pending, applied, ignored, flagged or failed.
    pub status: String,
    /// Why it was flagged, ignored or failed, or what applying it did.
    pub note: Option<String>,
    pub attempts: i32,
    /// The body exactly as received; only on `rawNotifications`, and empty once purged.
    pub payload: Option<String>,
    /// When the body was blanked because it outlived the retention period (`payload_retention_days`).
    pub payload_purged_at: Option<DateTime<Utc>>,
}

fn view(record: NotificationRecord, with_payload: bool) -> ProcessorNotification {
    ProcessorNotification {
        id: ID(record.id.to_string()),
        processor: record.processor,
        event_id: record.event_id,
        event_type: record.event_type,
        kind: record.kind,
        received_at: record.received_at,
        occurred_at: record.occurred_at,
        status: record.status.as_str().to_owned(),
        note: record.note,
        attempts: record.attempts,
        payload: with_payload.then_some(record.payload),
        payload_purged_at: record.payload_purged_at,
    }
}

/// Notifications that contradicted the state machine: kept, never applied, shown to analysts.
pub(crate) async fn flagged(ctx: &Context<'_>, dispute: &Dispute) -> async_graphql::Result<Vec<ProcessorNotification>> {
    principal(ctx, Role::Viewer)?;
    let records = lists(ctx)?
        .load_one(FlaggedNotificationsOf(dispute.id))
        .await?
        .unwrap_or_default();
    Ok(records.into_iter().map(|r| view(r, false)).collect())
}

/// Every notification of the dispute with its raw payload: leads and admins only.
pub(crate) async fn raw(ctx: &Context<'_>, dispute: &Dispute) -> async_graphql::Result<Vec<ProcessorNotification>> {
    principal(ctx, Role::Lead)?;
    let records = lists(ctx)?
        .load_one(NotificationsOf(dispute.id))
        .await?
        .unwrap_or_default();
    Ok(records.into_iter().map(|r| view(r, true)).collect())
}
