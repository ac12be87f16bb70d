//! The processor notifications behind a dispute: flagged ones for everybody who works disputes, raw payloads
//! (which can carry personal data) for leads and admins only.

use async_graphql::{Context, ID, SimpleObject};
use chrono::{DateTime, Utc};
use verdict_domain::Dispute;
use verdict_store::NotificationRecord;

use super::enums::{NotificationKind, NotificationStatus, label};
use super::loaders::{FlaggedNotificationsOf, NotificationsOf};
use super::query::principal;
use super::types::Processor;
use super::types::lists;
use crate::auth::Role;
use crate::error::ApiError;

/// One notification as received from a processor, and what Verdict did with it.
#[derive(SimpleObject)]
pub struct ProcessorNotification {
    /// The notification's id in Verdict.
    pub id: ID,
    /// The processor that sent it.
    pub processor: Processor,
    /// The processor's id of the notification (what makes a redelivery a duplicate).
    pub event_id: String,
    /// The processor's own name of the notification's type, as received (open-ended: each processor's
    /// vocabulary).
    pub event_type: String,
    /// What it says happened, in Verdict's words, when it concerns a dispute.
    pub kind: Option<NotificationKind>,
    /// When Verdict received it.
    pub received_at: DateTime<Utc>,
    /// When the processor says it happened.
    pub occurred_at: Option<DateTime<Utc>>,
    /// What Verdict did with it.
    pub status: NotificationStatus,
    /// Why it was flagged, ignored or failed, or what applying it did.
    pub note: Option<String>,
    /// Tries at applying it.
    pub attempts: i32,
    /// The body exactly as received; only on `rawNotifications`, and empty once purged.
    pub payload: Option<String>,
    /// When the body was blanked because it outlived the retention period (`payload_retention_days`).
    pub payload_purged_at: Option<DateTime<Utc>>,
}

fn view(record: NotificationRecord, with_payload: bool) -> Result<ProcessorNotification, ApiError> {
    let processor: verdict_domain::Processor = label(&record.processor, "processor")?;
    let kind = record
        .kind
        .as_deref()
        .map(|kind| label::<verdict_ingest::NotificationKind>(kind, "notification kind"))
        .transpose()?;
    Ok(ProcessorNotification {
        id: ID(record.id.to_string()),
        processor: processor.into(),
        event_id: record.event_id,
        event_type: record.event_type,
        kind: kind.map(Into::into),
        received_at: record.received_at,
        occurred_at: record.occurred_at,
        status: record.status.into(),
        note: record.note,
        attempts: record.attempts,
        payload: with_payload.then_some(record.payload),
        payload_purged_at: record.payload_purged_at,
    })
}

/// Notifications that contradicted the state machine: kept, never applied, shown to analysts.
pub(crate) async fn flagged(ctx: &Context<'_>, dispute: &Dispute) -> async_graphql::Result<Vec<ProcessorNotification>> {
    principal(ctx, Role::Viewer)?;
    let records = lists(ctx)?
        .load_one(FlaggedNotificationsOf(dispute.id))
        .await?
        .unwrap_or_default();
    Ok(records.into_iter().map(|r| view(r, false)).collect::<Result<_, _>>()?)
}

/// Every notification of the dispute with its raw payload: leads and admins only.
pub(crate) async fn raw(ctx: &Context<'_>, dispute: &Dispute) -> async_graphql::Result<Vec<ProcessorNotification>> {
    principal(ctx, Role::Lead)?;
    let records = lists(ctx)?
        .load_one(NotificationsOf(dispute.id))
        .await?
        .unwrap_or_default();
    Ok(records.into_iter().map(|r| view(r, true)).collect::<Result<_, _>>()?)
}
