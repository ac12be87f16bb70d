//! Durable storage of disputes on SQLite or PostgreSQL through sea-orm.
//!
//! A dispute is an append-only event log plus a projection of its current state. [`Store::commit`] writes a
//! whole [`Decision`](verdict_domain::Decision) — events, projection, timers and outbox steps — in one
//! transaction guarded by an optimistic version check, so concurrent writers get a conflict instead of a
//! lost update.

mod backtests;
mod batch;
mod bulk;
mod changes;
mod coalesce;
mod convert;
mod crash;
mod documents;
pub mod entity;
mod error;
mod evidence;
mod group;
mod inbox;
mod keys;
mod mailbox;
mod pattern_summary;
mod patterns;
mod policy;
mod queue;
mod repo;
mod schedules;
mod search;
mod sellers;
mod sqlite_pool;
pub mod testing;
mod users;
mod write;

pub use backtests::{BACKTEST_DONE, BACKTEST_FAILED, BACKTEST_RUNNING, BacktestPage, BacktestRecord, NewBacktest};
pub use bulk::{BULK_DONE, BULK_RUNNING, BulkItemResult, BulkJobRecord, BulkProgress, NewBulkJob};
pub use changes::{CHANGE_BUFFER, CHANGE_CHANNEL, Change, OutboundRoute, outbound_delivery_key};
pub use documents::{DocumentRecord, NewDocument, StoredDocument};
pub use error::{StorageFault, StoreError};
pub use evidence::{EvidenceFileRecord, EvidenceItemRecord, EvidenceWrite, FileRecorded, NewEvidenceFile};
pub use group::{CommitRequest, MAX_BATCH};
pub use inbox::{
    ClaimedNotifications, InboxFinish, InboxInsert, InboxLease, InboxStatus, NewNotification, NotificationRecord,
};
pub use keys::{ApiKeyRecord, KeySelector, Revocation, hash_token};
pub use mailbox::{MailboxChannel, MailboxInsert, MailboxMessage, NewMailboxMessage};
pub use patterns::{MAX_PATTERN_GROUPS, MonitoringCount, MonitoringQuery, PatternKey, PatternQuery, PatternRow};
pub use policy::{
    ACTIVE_POLICY_REUSED_FOR, APPROVAL_APPROVED, APPROVAL_PENDING, APPROVAL_REJECTED, ApprovalRecord, NewApproval,
    PolicyVersionRecord, fail_after_claiming,
};
pub use queue::{
    Backoff, ClaimedStep, ClaimedTimer, Completion, Fence, Leased, LiveCounts, NewStep, NewTimer, StepFailure, StepRow,
    WORK_CHANNEL,
};
pub use repo::{Backend, EventRecord, Page, PageCursor, StepRecord, Store, TimerRecord, WAKE_HORIZON_SECONDS};
pub use schedules::{DueSoon, QUEUE_TABLES, ScheduleClaim, ScheduleRow};
pub use search::{
    AmountRange, AssigneeMatch, AuditCursor, AuditFilter, AuditPage, DisputeFilter, DisputeSort, PageWindow,
    SearchPage, SortCursor, SortDirection, SortValue, TimeWindow,
};
pub use sellers::{NewRecovery, RecoveryRecord, SellerCounts};
pub use users::{SignIn, UserRecord};
pub use write::begin_write;
