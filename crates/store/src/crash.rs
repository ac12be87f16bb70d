//! Crash points at commit boundaries, for the fault harness (docs/reliability.md).
//!
//! A `kill -9` from outside lands between two commits only by luck; a change that splits one logical write
//! into two transactions leaves a window of about a millisecond. With `VERDICT_CRASH_AFTER_COMMIT=N` set,
//! the process aborts (as abruptly as `kill -9`: no destructor, no flush) right after its Nth write
//! transaction has committed, so the harness can stop a run at each commit in turn and check what a crash
//! there leaves behind. Unset, a commit costs one load of a cached `None`.
//!
//! Every writing transaction of the store commits through [`commit`], and a write that commits by itself (the
//! inbox insert outside a transaction) calls [`after_commit`], so that each commit is a crash point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{DatabaseTransaction, DbErr};

/// The environment variable the harness sets; never set in production.
pub const CRASH_AFTER_COMMIT: &str = "VERDICT_CRASH_AFTER_COMMIT";

static TARGET: OnceLock<Option<u64>> = OnceLock::new();
static COMMITS: AtomicU64 = AtomicU64::new(0);

/// Commits `txn`; then, if this was the Nth commit of the process and a crash point is set at N, aborts.
pub(crate) async fn commit(txn: DatabaseTransaction) -> Result<(), DbErr> {
    txn.commit().await?;
    after_commit();
    Ok(())
}

/// The crash point after a write that committed by itself (one statement outside a transaction).
pub(crate) fn after_commit() {
    let target = TARGET.get_or_init(|| {
        std::env::var(CRASH_AFTER_COMMIT)
            .ok()
            .and_then(|n| n.trim().parse().ok())
    });
    if let Some(target) = *target
        && COMMITS.fetch_add(1, Ordering::SeqCst) + 1 == target
    {
        eprintln!("{CRASH_AFTER_COMMIT}={target}: aborting right after commit {target}");
        std::process::abort();
    }
}
