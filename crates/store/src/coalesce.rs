//! Coalesced reads: the reads by key that concurrent callers ask of one table, asked in one statement.
//!
//! Under load, half of the statements PostgreSQL ran were single-row reads by key (the dispute a GraphQL
//! transition decides on and its caller's API key; the dispute a webhook names): each a pool checkout, a
//! statement and its answer, which cost both processes far more than the row (docs/benchmarks.md). A read
//! here joins the reads of its kind waiting to start and is answered by one `IN (...)` statement. The first
//! read starts at once, so a quiet process waits for nothing; while the statement of a kind runs, the next
//! reads of that kind gather for the one after. A read sees everything committed before it was asked (its
//! statement starts later). A failed statement answers nobody: each of its callers reads alone, to get the
//! error of its own read.
//!
//! PostgreSQL only: SQLite reads in-process, with no round trip to save.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::repo::Backend;
use crate::{Store, StoreError};

/// Most keys one statement asks for.
pub(crate) const MAX_KEYS: usize = 64;

/// Statements of one kind running at once; more reads wait to join the next. With four, a read by primary key
/// rarely found all four busy, and 10,000 GraphQL transitions still took 7,693 statements for their API key
/// and 4,499 for their dispute; with one, 3,253 and under 1,186 (docs/benchmarks.md).
pub(crate) const IN_FLIGHT: usize = 1;

/// How long a shared statement may take before its callers stop waiting for it and each read alone: a statement
/// that never returns (a connection gone half-open) must not hold up every later read of its kind.
pub(crate) const SHARED_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The rows found for some keys, each with the key it answers (rows for keys not asked are ignored).
pub(crate) type Lookup<K, V> =
    fn(Store, Vec<K>) -> Pin<Box<dyn Future<Output = Result<Vec<(K, V)>, StoreError>> + Send>>;

/// `None` for a key with no row; a dropped sender for a failed statement.
type Reply<V> = oneshot::Sender<Option<V>>;

/// The queue of one kind of read, whose reader task starts with the first read.
pub(crate) struct Reads<K, V> {
    sender: OnceLock<mpsc::UnboundedSender<(K, Reply<V>)>>,
    /// Statements its reader ran.
    statements: Arc<AtomicU64>,
}

impl<K, V> Default for Reads<K, V> {
    fn default() -> Self {
        Self {
            sender: OnceLock::new(),
            statements: Arc::default(),
        }
    }
}

impl<K, V> Reads<K, V> {
    pub(crate) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

/// The number of keys a statement binds for `n` distinct keys: a power of two, so that a kind of read has a
/// handful of statement shapes (each prepared once per connection), not one per count.
fn padded(n: usize) -> usize {
    n.next_power_of_two().clamp(1, MAX_KEYS)
}

impl Store {
    /// The row of `key`, read with the other reads of `reads` waiting to start (PostgreSQL), or by `alone` (SQLite,
    /// a failed shared statement, a store carried over to another runtime).
    pub(crate) async fn read_coalesced<K, V, F>(
        &self,
        reads: &Reads<K, V>,
        key: K,
        lookup: Lookup<K, V>,
        alone: impl FnOnce() -> F,
    ) -> Result<Option<V>, StoreError>
    where
        K: Eq + Hash + Clone + Send + 'static,
        V: Clone + Send + 'static,
        F: Future<Output = Result<Option<V>, StoreError>>,
    {
        if self.backend() != Backend::Postgres {
            return alone().await;
        }
        let sender = reads.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            // The task's store has queues of its own that it never uses: holding these would keep the task
            // (and the pool) alive after the last handle on this store is dropped.
            tokio::spawn(reader(
                self.with_own_committer(),
                receiver,
                lookup,
                reads.statements.clone(),
            ));
            sender
        });
        let (reply, answer) = oneshot::channel();
        if sender.send((key, reply)).is_err() {
            return alone().await;
        }
        match answer.await {
            Ok(found) => Ok(found),
            Err(_) => alone().await,
        }
    }
}

async fn reader<K, V>(
    store: Store,
    mut receiver: mpsc::UnboundedReceiver<(K, Reply<V>)>,
    lookup: Lookup<K, V>,
    statements: Arc<AtomicU64>,
) where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut keys: Vec<K> = vec![batch[0].0.clone()];
        let mut seen: HashSet<K> = keys.iter().cloned().collect();
        while keys.len() < MAX_KEYS {
            let Ok(read) = receiver.try_recv() else { break };
            if seen.insert(read.0.clone()) {
                keys.push(read.0.clone());
            }
            batch.push(read);
        }
        // Padding repeats a key: the same rows, fewer statement shapes.
        let width = padded(keys.len());
        while keys.len() < width {
            keys.push(keys[0].clone());
        }
        let store = store.clone();
        statements.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(SHARED_READ_TIMEOUT, lookup(store, keys)).await {
                Ok(Ok(rows)) => {
                    let found: HashMap<K, V> = rows.into_iter().collect();
                    for (key, reply) in batch {
                        // A caller that stopped waiting needs no answer.
                        let _ = reply.send(found.get(&key).cloned());
                    }
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, reads = batch.len(), "a coalesced read failed; its callers read alone");
                }
                Err(_) => {
                    tracing::warn!(
                        reads = batch.len(),
                        "a coalesced read took too long; its callers read alone"
                    );
                }
            }
        });
    }
}

impl Store {
    /// How many statements the coalesced reads of this process ran (each answering one read or more).
    pub fn coalesced_read_statements(&self) -> u64 {
        self.committer.disputes.statements()
            + self.committer.disputes_by_processor_id.statements()
            + self.committer.api_keys.statements()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statements_bind_a_power_of_two_of_keys_up_to_the_most() {
        assert_eq!(padded(1), 1);
        assert_eq!(padded(2), 2);
        assert_eq!(padded(3), 4);
        assert_eq!(padded(17), 32);
        assert_eq!(padded(64), 64);
        assert_eq!(padded(65), 64);
    }

    #[tokio::test]
    async fn the_callers_of_a_failed_statement_each_read_alone() {
        for db in crate::testing::test_databases().await.unwrap() {
            let store = db.store().await.unwrap();
            let reads: Reads<u32, u32> = Reads::default();
            let failing: Lookup<u32, u32> =
                |_, _| Box::pin(async { Err(StoreError::Corrupt("the shared statement failed".into())) });
            let answers = futures::future::join_all((0..10u32).map(|k| {
                let store = &store;
                let reads = &reads;
                async move {
                    store
                        .read_coalesced(reads, k, failing, || async move { Ok(Some(k * 2)) })
                        .await
                }
            }))
            .await;
            for (k, answer) in answers.into_iter().enumerate() {
                assert_eq!(answer.unwrap(), Some(k as u32 * 2), "{}", db.label);
            }
        }
    }

    #[tokio::test]
    async fn a_statement_that_never_returns_lets_its_callers_and_later_ones_read_alone() {
        for db in crate::testing::test_databases().await.unwrap() {
            let store = db.store().await.unwrap();
            let reads: Reads<u32, u32> = Reads::default();
            let stuck: Lookup<u32, u32> = |_, _| Box::pin(std::future::pending());
            let started = std::time::Instant::now();
            let first = store.read_coalesced(&reads, 1, stuck, || async { Ok(Some(10)) }).await;
            let second = store.read_coalesced(&reads, 2, stuck, || async { Ok(Some(20)) }).await;
            assert_eq!((first.unwrap(), second.unwrap()), (Some(10), Some(20)), "{}", db.label);
            assert!(started.elapsed() < SHARED_READ_TIMEOUT * 3, "{}", db.label);
        }
    }
}
