//! Runs policy backtests: a draft and the active policy (as it was when the backtest started) evaluated on the
//! stored triage inputs of the disputes opened in the window, page by page, in memory, with no side effect. A
//! page's tallies and changed disputes are written with the progress under the job's lease, so a backtest
//! resumes after a restart where it stopped and only one replica works it at a time.

use chrono::{Duration, Months};
use uuid::Uuid;
use verdict_domain::backtest::Backtest;
use verdict_domain::{Policy, TriageInput};
use verdict_store::{BacktestPage, BacktestRecord, NewBacktest, StoreError};

use crate::{Engine, EngineError};

/// Disputes read and evaluated per page.
pub const BACKTEST_PAGE: u64 = 5_000;
/// The longest window a backtest replays.
pub const MAX_BACKTEST_MONTHS: u32 = 36;
const LEASE_SECONDS: i64 = 60;
/// How often an idle worker looks for a backtest another replica created (one created here wakes it at once).
const POLL: std::time::Duration = std::time::Duration::from_secs(30);
/// How soon the worker tries again after failing to read or work a backtest (the database was away).
const RETRY_AFTER_ERROR: std::time::Duration = std::time::Duration::from_secs(2);

impl Engine {
    /// Starts a backtest of `draft` (TOML, validated) over the disputes opened in the last `months` months,
    /// against the policy active now.
    pub async fn start_backtest(&self, draft: &str, months: u32, by: &str) -> Result<BacktestRecord, EngineError> {
        Policy::from_toml(draft)
            .map_err(|e| verdict_domain::DomainError::InvalidInput(format!("draft refused: {e}")))?;
        if !(1..=MAX_BACKTEST_MONTHS).contains(&months) {
            return Err(verdict_domain::DomainError::InvalidInput(format!(
                "months must be between 1 and {MAX_BACKTEST_MONTHS}"
            ))
            .into());
        }
        let active = self.active_policy().await?;
        let now = self.clock.now();
        let since = now.checked_sub_months(Months::new(months)).unwrap_or(now);
        let new = NewBacktest {
            draft_source: draft.to_owned(),
            active_version: active.version,
            active_source: active.policy.to_toml(),
            months: i32::try_from(months).unwrap_or(i32::MAX),
            since,
            created_by: by.to_owned(),
        };
        let tally = serde_json::to_value(Backtest::default())
            .map_err(|e| StoreError::Corrupt(format!("an empty backtest does not serialise: {e}")))?;
        Ok(self.store.create_backtest(&new, tally, now).await?)
    }

    /// Works one backtest to its end if one is free; whether there was one. Stops between pages when `stop`
    /// says so, releasing it for the next start.
    pub async fn work_one_backtest(
        &self,
        worker: &str,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<bool, EngineError> {
        let lease = Duration::seconds(LEASE_SECONDS);
        let Some(job) = self.store.claim_backtest(worker, self.clock.now(), lease).await? else {
            return Ok(false);
        };
        let policies =
            Policy::from_toml(&job.active_source).and_then(|a| Ok((a, Policy::from_toml(&job.draft_source)?)));
        let (active, draft) = match policies {
            Ok(both) => both,
            Err(err) => {
                self.store
                    .fail_backtest(job.id, &format!("a policy no longer reads: {err}"), self.clock.now())
                    .await?;
                return Ok(true);
            }
        };
        let mut tally: Backtest = match serde_json::from_value(job.tally.clone()) {
            Ok(tally) => tally,
            Err(err) => {
                self.store
                    .fail_backtest(
                        job.id,
                        &format!("its progress does not read back: {err}"),
                        self.clock.now(),
                    )
                    .await?;
                return Ok(true);
            }
        };
        let minutes = self.economics.analyst_minutes.max(0);
        let mut last: Option<Uuid> = job.last_dispute;
        let mut processed = job.processed;
        loop {
            if *stop.borrow() {
                self.store.release_backtest(job.id, worker).await?;
                return Ok(true);
            }
            let rows = self.store.triage_inputs_page(job.since, last, BACKTEST_PAGE).await?;
            let finished = (rows.len() as u64) < BACKTEST_PAGE;
            let mut changes = Vec::new();
            for (dispute_id, input) in rows {
                last = Some(dispute_id);
                processed += 1;
                let Ok(input) = serde_json::from_value::<TriageInput>(input) else {
                    tracing::warn!(%dispute_id, "a stored triage input does not read back; left out of the backtest");
                    continue;
                };
                if let Some(change) = tally.add(&active, &draft, &input, minutes) {
                    let change = serde_json::to_value(change)
                        .map_err(|e| StoreError::Corrupt(format!("a backtest change does not serialise: {e}")))?;
                    changes.push((dispute_id, change));
                }
            }
            let page = BacktestPage {
                processed,
                last_dispute: last,
                tally: serde_json::to_value(&tally)
                    .map_err(|e| StoreError::Corrupt(format!("backtest tallies do not serialise: {e}")))?,
                changes,
            };
            let now = self.clock.now();
            if !self
                .store
                .record_backtest_page(job.id, worker, &page, finished, now, lease)
                .await?
            {
                tracing::warn!(backtest = %job.id, "backtest taken over by another worker");
                return Ok(true);
            }
            if finished {
                tracing::info!(backtest = %job.id, disputes = tally.disputes, changed = tally.changed, "backtest done");
                return Ok(true);
            }
        }
    }
}

/// Works backtests until `stop`: one at a time, polling when there is none.
pub async fn run_backtests(engine: Engine, worker: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let added = engine.store().backtests_added();
    while !*stop.borrow() {
        let wait = match engine.work_one_backtest(&worker, &stop).await {
            Ok(true) => continue,
            Ok(false) => POLL,
            Err(err) => {
                tracing::warn!(%err, "working a backtest failed; retrying");
                RETRY_AFTER_ERROR
            }
        };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = added.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
