//! Group commit: the decisions of concurrent callers written together, one transaction for many.
//!
//! A durable commit costs far more than the statements inside it (docs/benchmarks.md: this machine commits
//! about 1,900 small transactions a second). So [`Store::commit`] and its fenced and inbox variants hand their
//! decision to one committer task per process, which takes whatever is queued (up to [`MAX_BATCH`]; no wait
//! when nothing else is) and writes it in one transaction: a version-checked multi-row `UPDATE` of the
//! projections, multi-row inserts of events, timers and steps, one change-feed insert and `NOTIFY` for the
//! batch. Every caller gets its own answer:
//!
//! - a stale version, a lost lease, a dispute opened twice or a later notification already applied refuses
//!   only that caller's decision: the transaction is rolled back and the rest written again without it;
//! - a batch whose statement fails (a constraint only one decision breaks) is retried one decision per
//!   transaction, concurrently, so each caller gets the error of its own decision and nothing else;
//! - two decisions on one dispute are never in one batch: the second waits for the next, where its version
//!   check sees the first (its caller re-decides on fresh state, as after any conflict).
//!
//! Nothing is answered `Ok` before the transaction holding it has committed. The inbox insert before a
//! webhook's 2xx goes through a queue of its own with the same writer ([`Store::insert_notifications`]).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IdenStatic,
    IntoActiveModel, Iterable, QueryFilter, TransactionTrait, Value,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use verdict_domain::{Decision, Dispute, TimerInstruction};

use crate::convert::to_row;
use crate::entity::{dispute, dispute_event, step, timer};
use crate::error::is_unique_violation;
use crate::patterns::{PATTERN_ASSIGNMENTS, PATTERN_VALUES, PatternColumns};
use crate::queue::{Fence, Leased};
use crate::repo::{Backend, DEFAULT_MAX_ATTEMPTS, WAKE_HORIZON_SECONDS};
use crate::{EventRecord, InboxFinish, Store, StoreError};

/// Most decisions one transaction writes. PostgreSQL takes 65,535 parameters per statement; the projection
/// update binds 34 per decision.
pub const MAX_BATCH: usize = 64;

/// A decision to commit: what [`Store::commit`], [`Store::commit_fenced`] and [`Store::commit_applying`] take,
/// owned so that it can wait in the committer's queue.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The version the decision was made on; `None` opens a new dispute.
    pub expected_version: Option<i64>,
    pub after: Dispute,
    pub decision: Decision,
    /// A claimed timer or step completed in the same transaction (nothing is written if its lease was lost).
    pub fence: Option<Fence>,
    /// The outcome of the inbox row the decision came from.
    pub finish: Option<InboxFinish>,
}

/// One decision as the writer sees it; evidence rows and documents are written by their own callers' commits,
/// never queued.
pub(crate) struct Write<'a> {
    pub expected_version: Option<i64>,
    pub after: &'a Dispute,
    pub decision: &'a Decision,
    pub fence: Option<Fence>,
    pub finish: Option<&'a InboxFinish>,
    pub evidence: &'a [crate::evidence::EvidenceWrite],
    pub document: Option<&'a crate::documents::NewDocument>,
}

impl<'a> From<&'a CommitRequest> for Write<'a> {
    fn from(r: &'a CommitRequest) -> Self {
        Self {
            expected_version: r.expected_version,
            after: &r.after,
            decision: &r.decision,
            fence: r.fence,
            finish: r.finish.as_ref(),
            evidence: &[],
            document: None,
        }
    }
}

type Reply<R> = oneshot::Sender<Result<R, StoreError>>;
type Run<T, R> = fn(Store, Vec<T>) -> Pin<Box<dyn Future<Output = Vec<Result<R, StoreError>>> + Send>>;

/// One queue of jobs for a writer task, which starts with the first job.
pub(crate) struct Queue<T, R> {
    sender: OnceLock<mpsc::UnboundedSender<(T, Reply<R>)>>,
}

impl<T, R> Default for Queue<T, R> {
    fn default() -> Self {
        Self {
            sender: OnceLock::new(),
        }
    }
}

/// The writer queues of one process, shared by every clone of a store: decisions, and the inbox inserts
/// that come before a webhook's 2xx; and its queues of coalesced reads (coalesce.rs).
#[derive(Default)]
pub(crate) struct Committer {
    decisions: Queue<CommitRequest, ()>,
    pub(crate) inbox: Queue<crate::inbox::Delivery, Vec<crate::inbox::InboxInsert>>,
    /// Disputes by id.
    pub(crate) disputes: crate::coalesce::Reads<Uuid, crate::entity::dispute::Model>,
    /// Disputes by processor and the processor's dispute id.
    pub(crate) disputes_by_processor_id: crate::coalesce::Reads<(String, String), crate::entity::dispute::Model>,
    /// Active API keys by the hash of their token.
    pub(crate) api_keys: crate::coalesce::Reads<String, crate::entity::api_key::Model>,
}

/// What one transaction did: committed everything, or refused some decisions (by their index) and wrote
/// nothing.
enum Attempt {
    Committed,
    Refused(Vec<(usize, StoreError)>),
}

impl Store {
    /// Queues `request` for the committer and waits for its own answer.
    pub(crate) async fn commit_grouped(&self, request: CommitRequest) -> Result<(), StoreError> {
        self.queued(
            &self.committer.decisions,
            request,
            |r| Some(r.after.id.as_uuid()),
            // A fired timer or a step's result: background work that nobody waits on.
            |r| r.fence.is_some(),
            |store, batch| Box::pin(async move { store.commit_many(batch).await }),
        )
        .await
    }

    /// Hands `job` to the writer task of `queue` (started here by the first job) and waits for its answer.
    /// The task takes what is queued, at most [`MAX_BATCH`] jobs with distinct keys, runs them together with
    /// `run`, answers each, and repeats; a job whose key is already in the batch waits for the next. A
    /// `patient` job (background work: nobody waits on its answer) that finds a batch of patient jobs in
    /// flight waits for that one to finish, unless a full batch is waiting, so that a claim's decisions are
    /// written together instead of the first of them alone.
    pub(crate) async fn queued<T: Send + 'static, R: Send + 'static>(
        &self,
        queue: &Queue<T, R>,
        job: T,
        key: fn(&T) -> Option<Uuid>,
        patient: fn(&T) -> bool,
        run: Run<T, R>,
    ) -> Result<R, StoreError> {
        let sender = queue.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            // The task's store has queues of its own that it never uses: holding these would keep them (and
            // the pool) alive after the last handle on the store is dropped.
            let most = match self.backend() {
                Backend::Postgres => IN_FLIGHT_POSTGRES,
                Backend::Sqlite => 1,
            };
            tokio::spawn(writer(self.with_own_committer(), receiver, key, patient, run, most));
            sender
        });
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((job, _))) = sender.send((job, reply)) {
            // The writer's runtime has shut down (a store carried over to another runtime): run alone.
            return run(self.clone(), vec![job])
                .await
                .pop()
                .unwrap_or_else(|| Err(stopped()));
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Writes decisions on distinct disputes in as few transactions as their outcomes allow, and answers each:
    /// see the module documentation. What the group committer runs; public for tests that need a batch of
    /// known composition.
    pub async fn commit_many(&self, requests: Vec<CommitRequest>) -> Vec<Result<(), StoreError>> {
        together_or_alone(self, requests, |store, requests| {
            Box::pin(async move {
                let writes: Vec<Write<'_>> = requests.iter().map(Write::from).collect();
                store.write_all(&writes).await
            })
        })
        .await
    }

    /// Writes `writes` (distinct disputes) in one transaction, again without those refused until none is;
    /// `Err` when a statement fails (nothing of the batch is then stored).
    pub(crate) async fn write_all(&self, writes: &[Write<'_>]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::new();
        results.resize_with(writes.len(), || None);
        let mut live: Vec<usize> = (0..writes.len()).collect();
        while !live.is_empty() {
            let batch: Vec<&Write<'_>> = live.iter().map(|&i| &writes[i]).collect();
            match self.write_once(&batch).await? {
                Attempt::Committed => {
                    for i in live.drain(..) {
                        results[i] = Some(Ok(()));
                    }
                }
                Attempt::Refused(refusals) => {
                    for (k, err) in refusals {
                        results[live[k]] = Some(Err(err));
                    }
                    live.retain(|&i| results[i].is_none());
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    async fn write_once(&self, batch: &[&Write<'_>]) -> Result<Attempt, StoreError> {
        let txn = self.db().begin().await?;
        let mut refused = Vec::new();
        // The projections first, so that SQLite takes the write lock before anything is read.
        let updates: Vec<usize> = (0..batch.len())
            .filter(|&k| batch[k].expected_version.is_some())
            .collect();
        if !updates.is_empty() {
            let matched = self.update_projections(&txn, batch, &updates).await?;
            for k in updates {
                if !matched.contains(&batch[k].after.id.as_uuid()) {
                    refused.push((k, StoreError::Conflict(batch[k].after.id)));
                }
            }
        }
        let opens: Vec<usize> = (0..batch.len())
            .filter(|&k| batch[k].expected_version.is_none())
            .collect();
        if !opens.is_empty() {
            let rows = opens.iter().map(|&k| to_row(batch[k].after).into_active_model());
            // A dispute opened twice (two deliveries racing) refuses only its own decision.
            let inserted: HashSet<Uuid> = match dispute::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([dispute::Column::Processor, dispute::Column::ProcessorDisputeId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_with_returning_keys(&txn)
                .await
            {
                Ok(keys) => keys.into_iter().collect(),
                Err(sea_orm::DbErr::RecordNotInserted) => HashSet::new(),
                Err(err) => return Err(err.into()),
            };
            for k in opens {
                let after = batch[k].after;
                if !inserted.contains(&after.id.as_uuid()) {
                    refused.push((
                        k,
                        StoreError::DuplicateDispute {
                            processor: after.processor.to_string(),
                            processor_dispute_id: after.processor_dispute_id.clone(),
                        },
                    ));
                }
            }
        }
        // Fenced rows before the timer instructions: a firing timer is completed first, so that its own
        // command's CancelAll does not cancel it. One statement per table for the whole batch, at the latest
        // decision's time (the moment closest to the commit that completes them all).
        for (table, set, fenced) in [
            (
                "timers",
                "status = 'fired', fired_at = $1",
                fenced(batch, |f| matches!(f, Fence::Timer(_))),
            ),
            (
                "steps",
                "status = 'succeeded', updated_at = $1",
                fenced(batch, |f| matches!(f, Fence::Step(_))),
            ),
        ] {
            // A decision already refused writes nothing more (its rows may not exist).
            let fenced: Vec<(usize, Leased)> = fenced
                .into_iter()
                .filter(|(k, _)| !refused.iter().any(|(r, _)| r == k))
                .collect();
            let Some(at) = fenced.iter().map(|(k, _)| batch[*k].after.updated_at).max() else {
                continue;
            };
            let leased: Vec<_> = fenced.iter().map(|(_, l)| *l).collect();
            let done = self.complete_batch_on(&txn, table, set, &leased, at).await?;
            for (k, l) in fenced {
                if !done.completed.contains(&l.id) {
                    refused.push((k, StoreError::LeaseLost));
                }
            }
        }
        // After the dispute rows are locked: each order check then sees every commit before ours. A dispute
        // this batch opens has no notification applied to it yet, so only the others are checked.
        let finishes: Vec<(usize, &InboxFinish, bool)> = batch
            .iter()
            .enumerate()
            .filter(|(k, _)| !refused.iter().any(|(r, _)| r == k))
            .filter_map(|(k, w)| w.finish.map(|f| (k, f, w.expected_version.is_some())))
            .collect();
        if !finishes.is_empty() {
            refused.extend(crate::inbox::write_finishes(self, &txn, &finishes).await?);
        }
        // The policy's action marks and the approvals they perform, in the transaction of the action itself.
        for (k, write) in batch.iter().enumerate() {
            if refused.iter().any(|(r, _)| *r == k) {
                continue;
            }
            if let Some(mark) = &write.decision.policy_action
                && let Some(refusal) = crate::policy::write_mark(self, &txn, write.after, mark).await?
            {
                refused.push((k, refusal));
            }
        }
        if !refused.is_empty() {
            txn.rollback().await?;
            return Ok(Attempt::Refused(refused));
        }
        let records = batch
            .iter()
            .map(|w| event_records(w.after, w.decision))
            .collect::<Result<Vec<_>, _>>()?;
        let adds_work = self.write_rest(&txn, batch, &records).await?;
        crate::crash::commit(txn).await?;
        if adds_work {
            self.work_signal().notify_one();
        }
        if self.backend() == Backend::Sqlite {
            // One process: its subscribers hear of each change once it is committed. (PostgreSQL's come
            // through the listener, from whichever replica committed.)
            for (write, events) in batch.iter().zip(records) {
                if !events.is_empty() {
                    self.publish_change(crate::changes::Change {
                        dispute: write.after.clone(),
                        events,
                    });
                }
            }
        }
        Ok(Attempt::Committed)
    }

    /// One version-checked `UPDATE` of every listed projection; the ids whose version matched.
    async fn update_projections(
        &self,
        txn: &DatabaseTransaction,
        batch: &[&Write<'_>],
        listed: &[usize],
    ) -> Result<HashSet<Uuid>, StoreError> {
        let columns: Vec<dispute::Column> = dispute::Column::iter()
            .filter(|c| !matches!(c, dispute::Column::Id | dispute::Column::CreatedAt))
            .collect();
        let mut values: Vec<Value> = Vec::new();
        let mut tuples = Vec::with_capacity(listed.len());
        for &k in listed {
            let write = batch[k];
            let model = to_row(write.after).into_active_model();
            let mut slots = Vec::with_capacity(columns.len() + 2);
            values.push(write.after.id.as_uuid().into());
            slots.push(format!("${}", values.len()));
            values.push(write.expected_version.into());
            slots.push(format!("${}", values.len()));
            for column in &columns {
                let value = model
                    .get(*column)
                    .into_value()
                    .ok_or_else(|| StoreError::Corrupt(format!("projection column {} unset", column.as_str())))?;
                values.push(value);
                slots.push(format!("${}", values.len()));
            }
            // The patterns' columns in the same row version: a closing decision costs no second update.
            for value in PatternColumns::of(write.after, write.decision).values() {
                values.push(value);
                slots.push(format!("${}", values.len()));
            }
            tuples.push(format!("({})", slots.join(", ")));
        }
        let names: Vec<&str> = columns.iter().map(|c| c.as_str()).collect();
        let sql = format!(
            "WITH v (id, expected, {}, {PATTERN_VALUES}) AS (VALUES {}) UPDATE disputes SET {}, {PATTERN_ASSIGNMENTS} \
             FROM v WHERE disputes.id = v.id AND disputes.version = v.expected RETURNING disputes.id",
            names.join(", "),
            tuples.join(", "),
            names
                .iter()
                .map(|n| format!("{n} = v.{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = txn.query_all_raw(self.stmt(&sql, values)).await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<Uuid>("", "id"))
            .collect::<Result<_, _>>()?)
    }

    /// Everything of an accepted batch after the projections: events, pattern columns, evidence rows,
    /// documents, timers, steps, the change feed and the wake-up. Whether it added timers or steps.
    async fn write_rest(
        &self,
        txn: &DatabaseTransaction,
        batch: &[&Write<'_>],
        records: &[Vec<EventRecord>],
    ) -> Result<bool, StoreError> {
        let events: Vec<dispute_event::ActiveModel> = batch
            .iter()
            .zip(records)
            .flat_map(|(w, records)| {
                records.iter().map(|r| dispute_event::ActiveModel {
                    dispute_id: Set(w.after.id.as_uuid()),
                    version: Set(r.version),
                    kind: Set(r.kind.clone()),
                    from_status: Set(r.from_status.clone()),
                    to_status: Set(r.to_status.clone()),
                    actor: Set(r.actor.clone()),
                    reason: Set(r.reason.clone()),
                    change: Set(r.change.clone()),
                    at: Set(r.at),
                })
            })
            .collect();
        if !events.is_empty() {
            let single = (batch.len() == 1).then(|| batch[0].after.id);
            dispute_event::Entity::insert_many(events)
                .exec_without_returning(txn)
                .await
                .map_err(|err| conflict_if_unique(err, single))?;
        }
        // The triage runs the decisions carry, beside their events (an unchanged decision has none).
        let runs: Vec<_> = batch
            .iter()
            .filter_map(|w| Some((w.after.id, &**w.decision.triage.as_ref()?)))
            .collect();
        crate::policy::write_runs(txn, &runs).await?;
        for write in batch {
            // The patterns' grouping and outcome columns of an opened dispute follow its events in the same
            // transaction (an update's were written with its projection).
            if write.expected_version.is_none() {
                crate::patterns::write_pattern_columns(self, txn, write.after, write.decision).await?;
            }
            // The evidence rows the events name, in the same transaction as the events.
            crate::evidence::write(txn, write.after.id, write.evidence).await?;
            if let Some(document) = write.document {
                // Another generation that took this version first is a conflict like a stale dispute version.
                crate::entity::document::Entity::insert(crate::documents::active_model(document))
                    .exec_without_returning(txn)
                    .await
                    .map_err(|err| conflict_if_unique(err, Some(write.after.id)))?;
            }
        }
        let cancelling: Vec<Uuid> = batch
            .iter()
            .filter(|w| {
                w.decision
                    .timers
                    .iter()
                    .any(|t| matches!(t, TimerInstruction::CancelAll))
            })
            .map(|w| w.after.id.as_uuid())
            .collect();
        if !cancelling.is_empty() {
            timer::Entity::update_many()
                .col_expr(timer::Column::Status, Expr::value("cancelled"))
                // Its holder's lease ends with it (see crate::queue: a token lives only on a pending row).
                .col_expr(timer::Column::LockedBy, Expr::value(Option::<String>::None))
                .col_expr(timer::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
                .col_expr(Alias::new("lease_token"), Expr::value(Option::<Uuid>::None))
                .filter(timer::Column::DisputeId.is_in(cancelling))
                .filter(timer::Column::Status.eq("pending"))
                .exec(txn)
                .await?;
        }
        let mut new_timers = Vec::new();
        let mut new_steps = Vec::new();
        let mut wakes_replicas = false;
        for (write, records) in batch.iter().zip(records) {
            let (after, decision) = (write.after, write.decision);
            let now = after.updated_at;
            let due_soon = now + chrono::Duration::seconds(WAKE_HORIZON_SECONDS);
            let timers = timers_after_cancels(after, decision, now);
            wakes_replicas |= timers.iter().any(|t| matches!(t.due_at, Set(due) if due <= due_soon));
            new_timers.extend(timers);
            wakes_replicas |= !decision.steps.is_empty();
            new_steps.extend(decision.steps.iter().map(|s| step::ActiveModel {
                id: Set(Uuid::now_v7()),
                dispute_id: Set(Some(after.id.as_uuid())),
                kind: Set(s.kind.as_str().to_owned()),
                idempotency_key: Set(s.idempotency_key.clone()),
                status: Set("pending".to_owned()),
                attempts: Set(0),
                max_attempts: Set(DEFAULT_MAX_ATTEMPTS),
                next_attempt_at: Set(now),
                locked_by: Set(None),
                locked_until: Set(None),
                last_error: Set(None),
                payload: Set(s.payload.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            }));
            // The outbox of the outbound webhooks: one step per event and webhook that wants it, in the events'
            // transaction, so a delivery exists exactly when its event does.
            let outbound = self.outbound_steps(after, records, now);
            wakes_replicas |= !outbound.is_empty();
            new_steps.extend(outbound);
        }
        let adds_work = !new_timers.is_empty() || !new_steps.is_empty();
        if !new_timers.is_empty() {
            timer::Entity::insert_many(new_timers)
                .exec_without_returning(txn)
                .await?;
        }
        if !new_steps.is_empty() {
            step::Entity::insert_many(new_steps)
                .on_conflict(OnConflict::column(step::Column::IdempotencyKey).do_nothing().to_owned())
                .exec_without_returning(txn)
                .await?;
        }
        if self.backend() == Backend::Postgres {
            let changes: Vec<_> = batch
                .iter()
                .zip(records)
                .filter_map(|(w, r)| Some((w.after.id, r.first()?.version, r.last()?.version)))
                .collect();
            // The work notice is delivered to every replica's listener when (and only if) the transaction
            // commits. Only for work due soon: NOTIFY serialises committing transactions on a database-wide
            // lock, and a replica never sleeps past WAKE_HORIZON_SECONDS anyway.
            self.record_changes(txn, &changes, wakes_replicas).await?;
        }
        Ok(adds_work)
    }
}

type Together<T, R> =
    fn(Store, Vec<T>) -> Pin<Box<dyn Future<Output = Result<Vec<Result<R, StoreError>>, StoreError>> + Send>>;

/// Runs `jobs` in one transaction with `together`; if that fails as a whole, runs each alone (concurrently),
/// so that each gets the error of its own job and a job that fails never fails the others.
pub(crate) async fn together_or_alone<T: Clone + Send + 'static, R: Send + 'static>(
    store: &Store,
    jobs: Vec<T>,
    together: Together<T, R>,
) -> Vec<Result<R, StoreError>> {
    let count = jobs.len();
    let err = match together(store.clone(), jobs.clone()).await {
        Ok(results) => return results,
        Err(err) if count == 1 => return vec![Err(err)],
        Err(err) => err,
    };
    tracing::debug!(%err, jobs = count, "a batch failed; writing its jobs one by one");
    let mut singles = tokio::task::JoinSet::new();
    for (index, job) in jobs.into_iter().enumerate() {
        let store = store.clone();
        singles.spawn(async move {
            let result = match together(store, vec![job]).await {
                Ok(mut results) => results.pop().unwrap_or_else(|| Err(stopped())),
                Err(err) => Err(err),
            };
            (index, result)
        });
    }
    let mut results: Vec<Option<Result<R, StoreError>>> = Vec::new();
    results.resize_with(count, || None);
    while let Some(joined) = singles.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            Err(panic) => tracing::error!(%panic, "a single write panicked"),
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(stopped())))
        .collect()
}

fn stopped() -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(
        "the writer task stopped before answering; the write may or may not be stored".into(),
    ))
}

/// Transactions a writer keeps in flight at once on PostgreSQL. One transaction's round trips (and its
/// commit's flush) leave the database and this process mostly waiting; a few batches on distinct keys side by
/// side keep both busy. SQLite has one writer whatever this says, so it runs one.
const IN_FLIGHT_POSTGRES: usize = 4;

async fn writer<T: Send + 'static, R: Send + 'static>(
    store: Store,
    mut receiver: mpsc::UnboundedReceiver<(T, Reply<R>)>,
    key: fn(&T) -> Option<Uuid>,
    patient: fn(&T) -> bool,
    run: Run<T, R>,
    most: usize,
) {
    let mut waiting: VecDeque<(T, Reply<R>)> = VecDeque::new();
    // The keys of the batches in flight: a job on one of them waits until that batch is answered.
    let mut busy: HashSet<Uuid> = HashSet::new();
    let mut running = tokio::task::JoinSet::new();
    // The running batches of patient jobs only.
    let mut patient_running: HashSet<tokio::task::Id> = HashSet::new();
    let mut open = true;
    loop {
        while waiting.len() < 4 * MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            }
        }
        // Start what may start: the first job of each free key, in arrival order; the others keep their place.
        // No threshold for a second transaction beside one in flight: waiting for 16 decisions first made
        // the timer claims' commits larger (+39%) but cost callers that wait for their answer one by one
        // (GraphQL transitions over HTTP -22%, webhook ack p99 +50%; docs/benchmarks.md).
        while running.len() < most && !waiting.is_empty() {
            let mut keys = HashSet::new();
            let mut batch = Vec::new();
            let mut later = VecDeque::new();
            for job in waiting.drain(..) {
                let free = key(&job.0).is_none_or(|k| !busy.contains(&k) && keys.insert(k));
                if batch.len() < MAX_BATCH && free {
                    batch.push(job);
                } else {
                    later.push_back(job);
                }
            }
            let all_patient = batch.iter().all(|job| patient(&job.0));
            // A job someone waits on behind one of these (same dispute) must not wait for their deferral.
            let holds_up_impatient = later
                .iter()
                .any(|job| !patient(&job.0) && key(&job.0).is_some_and(|k| keys.contains(&k)));
            if all_patient && !holds_up_impatient && !patient_running.is_empty() && batch.len() < MAX_BATCH {
                // Joined by the decisions still coming when the patient batch in flight finishes: timer
                // claims otherwise wrote their first decision alone, ~8% of rows in 90% of transactions.
                batch.append(&mut later.into());
                waiting = batch.into();
                break;
            }
            waiting = later;
            if batch.is_empty() {
                break;
            }
            busy.extend(keys.iter().copied());
            let (jobs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let store = store.clone();
            let handle = running.spawn(async move {
                let results = run(store, jobs).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that stopped waiting (a dropped request) gets its write stored all the same.
                    let _ = reply.send(result);
                }
                keys
            });
            if all_patient {
                patient_running.insert(handle.id());
            }
        }
        if !open && waiting.is_empty() && running.is_empty() {
            return;
        }
        tokio::select! {
            received = receiver.recv(), if open => match received {
                Some(job) => waiting.push_back(job),
                None => open = false,
            },
            Some(done) = running.join_next_with_id() => match done {
                Ok((id, keys)) => {
                    patient_running.remove(&id);
                    for k in keys {
                        busy.remove(&k);
                    }
                }
                // Its callers see their answers dropped (`stopped`); its keys stay busy rather than risk two
                // transactions on one dispute.
                Err(err) => {
                    patient_running.remove(&err.id());
                    tracing::error!(%err, "a group commit panicked");
                }
            },
            else => {}
        }
    }
}

/// The fenced rows of one table, by the index of their decision.
fn fenced(batch: &[&Write<'_>], table: impl Fn(&Fence) -> bool) -> Vec<(usize, Leased)> {
    batch
        .iter()
        .enumerate()
        .filter_map(|(k, w)| match w.fence {
            Some(f @ (Fence::Timer(l) | Fence::Step(l))) if table(&f) => Some((k, l)),
            _ => None,
        })
        .collect()
}

/// The timers a decision sets that no later `CancelAll` of the same decision cancels (those are never written).
fn timers_after_cancels(after: &Dispute, decision: &Decision, now: DateTime<Utc>) -> Vec<timer::ActiveModel> {
    let mut timers = Vec::new();
    for instruction in &decision.timers {
        match instruction {
            TimerInstruction::CancelAll => timers.clear(),
            TimerInstruction::Set { kind, due_at } => timers.push(timer::ActiveModel {
                id: Set(Uuid::now_v7()),
                dispute_id: Set(Some(after.id.as_uuid())),
                kind: Set(kind.label()),
                due_at: Set(*due_at),
                status: Set("pending".to_owned()),
                attempts: Set(0),
                locked_by: Set(None),
                locked_until: Set(None),
                payload: Set(None),
                created_at: Set(now),
                fired_at: Set(None),
            }),
        }
    }
    timers
}

/// A unique violation of one decision's rows (its events, its document) is a conflict: someone else wrote
/// that version first. In a batch it fails the statement, and the decisions are retried one by one.
fn conflict_if_unique(err: sea_orm::DbErr, single: Option<verdict_domain::DisputeId>) -> StoreError {
    match single {
        Some(id) if is_unique_violation(&err) => StoreError::Conflict(id),
        _ => err.into(),
    }
}

/// The events of a decision as stored.
fn event_records(after: &Dispute, decision: &Decision) -> Result<Vec<EventRecord>, StoreError> {
    decision
        .events
        .iter()
        .map(|event| {
            let (from, to) = event.change.status_change().unwrap_or((None, after.status));
            let moved = event.change.status_change().is_some();
            Ok(EventRecord {
                version: event.version,
                kind: event.change.kind().as_str().to_owned(),
                from_status: from.map(|s| s.to_string()),
                to_status: moved.then(|| to.to_string()),
                actor: event.actor.label(),
                reason: event.reason.clone(),
                change: serde_json::to_value(&event.change)
                    .map_err(|e| StoreError::Corrupt(format!("event does not serialise: {e}")))?,
                at: event.at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{Semaphore, mpsc};

    use super::*;

    /// A job that reports the batch it ran in and holds its transaction open until its gate opens.
    struct Probe {
        name: &'static str,
        patient: bool,
        started: mpsc::UnboundedSender<Vec<&'static str>>,
        gate: Arc<Semaphore>,
    }

    type Answers = Pin<Box<dyn Future<Output = Vec<Result<(), StoreError>>> + Send>>;

    fn run_probes(_: Store, jobs: Vec<Probe>) -> Answers {
        Box::pin(async move {
            let names = jobs.iter().map(|j| j.name).collect();
            let _ = jobs[0].started.send(names);
            let _open = jobs[0].gate.acquire().await;
            jobs.iter().map(|_| Ok(())).collect()
        })
    }

    async fn next(started: &mut mpsc::UnboundedReceiver<Vec<&'static str>>) -> Vec<&'static str> {
        tokio::time::timeout(Duration::from_secs(5), started.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_patient_job_waits_for_the_patient_batch_in_flight_and_an_impatient_one_never_does()
    -> Result<(), StoreError> {
        let db = crate::testing::TestDatabase::sqlite().await?;
        let store = db.store().await?;
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, receiver, |_| None, |p: &Probe| p.patient, run_probes, 4));
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let send = |name, patient, gate: &Arc<Semaphore>| {
            let (reply, answer) = oneshot::channel();
            let probe = Probe {
                name,
                patient,
                started: started_tx.clone(),
                gate: gate.clone(),
            };
            assert!(jobs.send((probe, reply)).is_ok(), "the writer stopped");
            answer
        };
        let first_gate = Arc::new(Semaphore::new(0));
        let _first = send("first timer", true, &first_gate);
        assert_eq!(next(&mut started).await, vec!["first timer"]);

        // A second patient job waits while the first batch is in flight...
        let second_gate = Arc::new(Semaphore::new(0));
        let second = send("second timer", true, &second_gate);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            started.try_recv().is_err(),
            "a patient job started beside a patient batch"
        );
        // ...and starts once it is done.
        first_gate.add_permits(1);
        assert_eq!(next(&mut started).await, vec!["second timer"]);

        // An impatient job starts at once, beside the patient batch still in flight.
        let open = Arc::new(Semaphore::new(1));
        let request = send("graphql transition", false, &open);
        assert_eq!(next(&mut started).await, vec!["graphql transition"]);
        assert!(matches!(request.await, Ok(Ok(()))));
        second_gate.add_permits(1);
        assert!(matches!(second.await, Ok(Ok(()))));
        Ok(())
    }
}
