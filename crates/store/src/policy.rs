//! Policy versions (exactly one active), each dispute's last triage run, the win rates observed per reason
//! category, processor and evidence band, and the approvals leads give before the policy acts above its limit.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
};
use uuid::Uuid;
use verdict_domain::{DisputeId, EvidenceBand, TriageRun, WinRates};

use crate::entity::{dispute_triage, policy_approval, policy_version};
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

/// How long a read of the active policy version is used again. Triage reads it for every dispute it decides (a
/// round trip per webhook), and it changes only when a lead activates another version: this process sees that
/// at once, other replicas within this long. Each triage run records the version it used.
pub const ACTIVE_POLICY_REUSED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The last read of the active policy version, shared by a store's clones.
#[derive(Debug, Default)]
pub(crate) struct ActivePolicyCache(std::sync::Mutex<CachedActivePolicy>);

#[derive(Debug, Default)]
struct CachedActivePolicy {
    /// Counts activations made here: a read that started before one is not kept.
    activations: u64,
    read: Option<(std::time::Instant, Option<PolicyVersionRecord>)>,
}

impl ActivePolicyCache {
    /// The cached read while it is fresh, else the activation count to hand back to [`Self::keep`].
    fn fresh(&self) -> Result<Option<PolicyVersionRecord>, u64> {
        let cached = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &cached.read {
            Some((at, record)) if at.elapsed() < ACTIVE_POLICY_REUSED_FOR => Ok(record.clone()),
            _ => Err(cached.activations),
        }
    }

    fn keep(&self, activations: u64, read_at: std::time::Instant, record: &Option<PolicyVersionRecord>) {
        let mut cached = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.activations == activations {
            cached.read = Some((read_at, record.clone()));
        }
    }

    fn activated(&self) {
        let mut cached = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cached.activations += 1;
        cached.read = None;
    }
}

/// Counts an activation when dropped.
struct ActivationGuard<'a>(&'a ActivePolicyCache);

impl Drop for ActivationGuard<'_> {
    fn drop(&mut self) {
        self.0.activated();
    }
}

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRecord {
    pub version: i64,
    pub id: Uuid,
    /// The policy as the lead wrote it (TOML), validated when saved.
    pub source: String,
    pub note: Option<String>,
    pub active: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub activated_by: Option<String>,
    pub activated_at: Option<DateTime<Utc>>,
}

impl From<policy_version::Model> for PolicyVersionRecord {
    fn from(m: policy_version::Model) -> Self {
        Self {
            version: i64::from(m.version),
            id: m.id,
            source: m.source,
            note: m.note,
            active: m.active,
            created_by: m.created_by,
            created_at: m.created_at,
            activated_by: m.activated_by,
            activated_at: m.activated_at,
        }
    }
}

/// An action the policy would take above its limit, waiting for (or decided by) a lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub id: Uuid,
    pub dispute_id: Uuid,
    pub policy_version: i64,
    pub rule: String,
    pub action: String,
    pub amount_minor: i64,
    pub currency: String,
    pub limit_minor: i64,
    pub request_key: String,
    pub why: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub requested_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_note: Option<String>,
}

impl From<policy_approval::Model> for ApprovalRecord {
    fn from(m: policy_approval::Model) -> Self {
        Self {
            id: m.id,
            dispute_id: m.dispute_id,
            policy_version: i64::from(m.policy_version),
            rule: m.rule,
            action: m.action,
            amount_minor: m.amount_minor,
            currency: m.currency,
            limit_minor: m.limit_minor,
            request_key: m.request_key,
            why: m.why,
            status: m.status,
            requested_at: m.requested_at,
            decided_by: m.decided_by,
            decided_at: m.decided_at,
            decision_note: m.decision_note,
        }
    }
}

/// An approval to request; one per request key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    pub dispute_id: Uuid,
    pub policy_version: i64,
    pub rule: String,
    pub action: String,
    pub amount_minor: i64,
    pub currency: String,
    pub limit_minor: i64,
    pub request_key: String,
    pub why: String,
}

pub const APPROVAL_PENDING: &str = "pending";
pub const APPROVAL_APPROVED: &str = "approved";
pub const APPROVAL_REJECTED: &str = "rejected";

fn version_i32(version: i64) -> Result<i32, StoreError> {
    i32::try_from(version).map_err(|_| StoreError::Corrupt(format!("policy version {version} is out of range")))
}

/// Writes the triage runs of a batch of decisions beside their events (group.rs): one multi-row upsert for
/// the runs, then the approvals that some of them request.
pub(crate) async fn write_runs(txn: &DatabaseTransaction, runs: &[(DisputeId, &TriageRun)]) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let encode = |what: &str, value: Result<serde_json::Value, serde_json::Error>| {
        value.map_err(|e| StoreError::Corrupt(format!("the triage {what} does not serialise: {e}")))
    };
    let rows = runs
        .iter()
        .map(|(dispute, run)| {
            Ok(dispute_triage::ActiveModel {
                dispute_id: Set(dispute.as_uuid()),
                policy_version: Set(version_i32(run.policy_version)?),
                rule: Set(run.triage.rule.clone()),
                evidence_band: Set(EvidenceBand::of_score(run.input.evidence_score).as_str().to_owned()),
                input: Set(encode("input", serde_json::to_value(&run.input))?),
                triage: Set(encode("result", serde_json::to_value(&run.triage))?),
                decided_at: Set(run.at),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    dispute_triage::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(dispute_triage::Column::DisputeId)
                .update_columns([
                    dispute_triage::Column::PolicyVersion,
                    dispute_triage::Column::Rule,
                    dispute_triage::Column::EvidenceBand,
                    dispute_triage::Column::Input,
                    dispute_triage::Column::Triage,
                    dispute_triage::Column::DecidedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    for (dispute, run) in runs {
        let Some(approval) = &run.approval else {
            continue;
        };
        insert_approval(
            txn,
            &NewApproval {
                dispute_id: dispute.as_uuid(),
                policy_version: run.policy_version,
                rule: run.triage.rule.clone(),
                action: approval.action.as_str().to_owned(),
                amount_minor: approval.amount.minor_units(),
                currency: approval.amount.currency().code().to_owned(),
                limit_minor: approval.limit_minor,
                request_key: approval.key.clone(),
                why: run.triage.why.clone(),
            },
            run.at,
        )
        .await?;
    }
    Ok(())
}

async fn insert_approval(conn: &impl ConnectionTrait, new: &NewApproval, now: DateTime<Utc>) -> Result<(), StoreError> {
    let row = policy_approval::ActiveModel {
        id: Set(Uuid::now_v7()),
        dispute_id: Set(new.dispute_id),
        policy_version: Set(version_i32(new.policy_version)?),
        rule: Set(new.rule.clone()),
        action: Set(new.action.clone()),
        amount_minor: Set(new.amount_minor),
        currency: Set(new.currency.clone()),
        limit_minor: Set(new.limit_minor),
        request_key: Set(new.request_key.clone()),
        why: Set(new.why.clone()),
        status: Set(APPROVAL_PENDING.to_owned()),
        requested_at: Set(now),
        decided_by: Set(None),
        decided_at: Set(None),
        decision_note: Set(None),
    };
    policy_approval::Entity::insert(row)
        .on_conflict(
            OnConflict::column(policy_approval::Column::RequestKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Approvals whose next claim fails right after the claim, inside its transaction (tests only): what a crash
/// between claiming an approval and performing its action would do if the two were separate commits.
static FAIL_AFTER_CLAIM: std::sync::Mutex<Vec<Uuid>> = std::sync::Mutex::new(Vec::new());

/// Makes the next commit that claims `approval` fail after the claim statement (tests only).
#[doc(hidden)]
pub fn fail_after_claiming(approval: Uuid) {
    if let Ok(mut ids) = FAIL_AFTER_CLAIM.lock() {
        ids.push(approval);
    }
}

fn injected_failure(approval: Uuid) -> bool {
    FAIL_AFTER_CLAIM.lock().is_ok_and(|mut ids| {
        let before = ids.len();
        ids.retain(|id| *id != approval);
        ids.len() != before
    })
}

/// Writes the policy's mark of `mark.action` on `dispute` and claims the approval it performs, inside the
/// decision's transaction. `Some` refusal when the approval was no longer pending, or the policy already took
/// this action on this dispute (a conflict: the engine decides again on fresh state and finds it done).
pub(crate) async fn write_mark(
    store: &Store,
    txn: &DatabaseTransaction,
    dispute: &verdict_domain::Dispute,
    mark: &verdict_domain::PolicyActionMark,
) -> Result<Option<StoreError>, StoreError> {
    let now = dispute.updated_at;
    let mut actor = "policy".to_owned();
    if let Some(claim) = &mark.approval {
        let claimed = txn
            .execute_raw(store.stmt(
                "UPDATE policy_approvals SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4 \
                 WHERE id = $5 AND status = $6",
                vec![
                    APPROVAL_APPROVED.into(),
                    claim.by.clone().into(),
                    now.into(),
                    claim.note.clone().into(),
                    claim.id.into(),
                    APPROVAL_PENDING.into(),
                ],
            ))
            .await?;
        if claimed.rows_affected() != 1 {
            return Ok(Some(StoreError::ApprovalDecided(claim.id)));
        }
        if injected_failure(claim.id) {
            return Err(StoreError::Database(sea_orm::DbErr::Custom(format!(
                "injected failure after claiming approval {}",
                claim.id
            ))));
        }
        actor = claim.by.clone();
    }
    let marked = txn
        .execute_raw(store.stmt(
            "INSERT INTO policy_actions (dispute_id, action, approval_id, actor, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (dispute_id, action) DO NOTHING",
            vec![
                dispute.id.as_uuid().into(),
                mark.action.as_str().into(),
                mark.approval.as_ref().map(|c| c.id).into(),
                actor.into(),
                now.into(),
            ],
        ))
        .await?;
    if marked.rows_affected() != 1 {
        return Ok(Some(StoreError::Conflict(dispute.id)));
    }
    Ok(None)
}

/// A stored triage row back into its run.
pub(crate) fn run_of(m: dispute_triage::Model) -> Result<TriageRun, StoreError> {
    let corrupt = |what: &str, e: serde_json::Error| {
        StoreError::Corrupt(format!("triage {what} of dispute {}: {e}", m.dispute_id))
    };
    Ok(TriageRun {
        policy_version: i64::from(m.policy_version),
        input: serde_json::from_value(m.input.clone()).map_err(|e| corrupt("input", e))?,
        triage: serde_json::from_value(m.triage.clone()).map_err(|e| corrupt("result", e))?,
        at: m.decided_at,
        approval: None,
    })
}

impl Store {
    /// Stores a new policy version (inactive) and returns it; versions are numbered 1, 2, ...
    pub async fn save_policy(
        &self,
        source: &str,
        note: Option<&str>,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> Result<PolicyVersionRecord, StoreError> {
        // Two leads saving at once both read the same maximum: the loser's insert hits the key and retries.
        for _ in 0..5 {
            let last = policy_version::Entity::find()
                .order_by_desc(policy_version::Column::Version)
                .one(self.db())
                .await?
                .map_or(0, |m| m.version);
            let row = policy_version::Model {
                version: last + 1,
                id: Uuid::now_v7(),
                source: source.to_owned(),
                note: note.map(str::to_owned),
                active: false,
                created_by: created_by.to_owned(),
                created_at: now,
                activated_by: None,
                activated_at: None,
            };
            let active: policy_version::ActiveModel = row.clone().into();
            match policy_version::Entity::insert(active)
                .exec_without_returning(self.db())
                .await
            {
                Ok(_) => return Ok(row.into()),
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Duplicate("a policy version saved at the same time".into()))
    }

    /// Makes `version` the one active version; `None` when there is no such version.
    pub async fn activate_policy(
        &self,
        version: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PolicyVersionRecord>, StoreError> {
        let version = version_i32(version)?;
        let txn = self.db().begin().await?;
        let Some(row) = policy_version::Entity::find_by_id(version).one(&txn).await? else {
            return Ok(None);
        };
        policy_version::Entity::update_many()
            .col_expr(policy_version::Column::Active, false.into())
            .filter(policy_version::Column::Active.eq(true))
            .filter(policy_version::Column::Version.ne(version))
            .exec(&txn)
            .await?;
        let mut model: policy_version::ActiveModel = row.into();
        model.active = Set(true);
        model.activated_by = Set(Some(by.to_owned()));
        model.activated_at = Set(Some(now));
        let updated = sea_orm::ActiveModelTrait::update(model, &txn).await?;
        // Counted once the commit is done, or cancelled: a read kept before then is forgotten, and one that
        // started before then is not kept.
        let _after_the_commit = ActivationGuard(&self.active_policy);
        txn.commit().await?;
        Ok(Some(updated.into()))
    }

    /// The active policy version; `None` before a lead activated one (the built-in default applies). Read again
    /// at most every [`ACTIVE_POLICY_REUSED_FOR`], and at once after an activation through this store.
    pub async fn active_policy(&self) -> Result<Option<PolicyVersionRecord>, StoreError> {
        let activations = match self.active_policy.fresh() {
            Ok(record) => return Ok(record),
            Err(activations) => activations,
        };
        let read_at = std::time::Instant::now();
        let record: Option<PolicyVersionRecord> = policy_version::Entity::find()
            .filter(policy_version::Column::Active.eq(true))
            .one(self.db())
            .await?
            .map(Into::into);
        self.active_policy.keep(activations, read_at, &record);
        Ok(record)
    }

    pub async fn policy_version(&self, version: i64) -> Result<Option<PolicyVersionRecord>, StoreError> {
        Ok(policy_version::Entity::find_by_id(version_i32(version)?)
            .one(self.db())
            .await?
            .map(Into::into))
    }

    /// Every version, newest first.
    pub async fn policy_versions(&self, limit: u64) -> Result<Vec<PolicyVersionRecord>, StoreError> {
        Ok(policy_version::Entity::find()
            .order_by_desc(policy_version::Column::Version)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The dispute's last triage run.
    pub async fn triage_run(&self, dispute: DisputeId) -> Result<Option<TriageRun>, StoreError> {
        dispute_triage::Entity::find_by_id(dispute.as_uuid())
            .one(self.db())
            .await?
            .map(run_of)
            .transpose()
    }

    /// The last triage runs of `disputes`, by dispute: [`Store::triage_run`] for a whole claim in one query.
    pub async fn triage_runs(
        &self,
        disputes: &[DisputeId],
    ) -> Result<std::collections::HashMap<Uuid, TriageRun>, StoreError> {
        if disputes.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        dispute_triage::Entity::find()
            .filter(dispute_triage::Column::DisputeId.is_in(disputes.iter().map(|id| id.as_uuid())))
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| Ok((m.dispute_id, run_of(m)?)))
            .collect()
    }

    /// Won and decided disputes by reason category, processor and the evidence band of their last triage.
    /// Won and withdrawn count as won; lost and expired as lost; accepted and refunded disputes were never
    /// defended and do not count.
    pub async fn win_rates(&self) -> Result<WinRates, StoreError> {
        let sql = "SELECT d.reason_category, d.processor, t.evidence_band, \
                   SUM(CASE WHEN d.status IN ('won', 'withdrawn') THEN 1 ELSE 0 END) AS won, COUNT(*) AS decided \
                   FROM disputes d JOIN dispute_triage t ON t.dispute_id = d.id \
                   WHERE d.status IN ('won', 'withdrawn', 'lost', 'expired') \
                   GROUP BY d.reason_category, d.processor, t.evidence_band";
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(self.db().get_database_backend(), sql))
            .await?;
        let mut rates = WinRates::default();
        for row in rows {
            let category: String = row.try_get("", "reason_category")?;
            let processor: String = row.try_get("", "processor")?;
            let band: String = row.try_get("", "evidence_band")?;
            let won: i64 = row.try_get("", "won")?;
            let decided: i64 = row.try_get("", "decided")?;
            let (Ok(category), Ok(processor), Ok(band)) = (
                serde_json::from_value(serde_json::Value::String(category)),
                processor.parse(),
                band.parse(),
            ) else {
                continue;
            };
            rates.counts.insert(
                (category, processor, band),
                (
                    u32::try_from(won).unwrap_or(u32::MAX),
                    u32::try_from(decided).unwrap_or(u32::MAX),
                ),
            );
        }
        Ok(rates)
    }

    /// Whether the policy already took `action` on `dispute` (alone or on approval).
    pub async fn policy_action_taken(&self, dispute: DisputeId, action: &str) -> Result<bool, StoreError> {
        let row = self
            .db()
            .query_one_raw(self.stmt(
                "SELECT COUNT(*) AS n FROM policy_actions WHERE dispute_id = $1 AND action = $2",
                vec![dispute.as_uuid().into(), action.into()],
            ))
            .await?;
        let n: i64 = match row {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        };
        Ok(n > 0)
    }

    /// Which of `disputes` the policy already took `action` on: [`Store::policy_action_taken`] for a whole
    /// claim in one query.
    pub async fn policy_actions_taken(
        &self,
        disputes: &[DisputeId],
        action: &str,
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        if disputes.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let mut values: Vec<sea_orm::Value> = vec![action.into()];
        values.extend(disputes.iter().map(|id| sea_orm::Value::from(id.as_uuid())));
        let sql = format!(
            "SELECT DISTINCT dispute_id FROM policy_actions WHERE action = $1 AND dispute_id IN ({})",
            (2..=values.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = self.db().query_all_raw(self.stmt(&sql, values)).await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<Uuid>("", "dispute_id"))
            .collect::<Result<_, _>>()?)
    }

    /// Requests a lead's approval; a request key already used returns the approval it made.
    pub async fn request_approval(&self, new: &NewApproval, now: DateTime<Utc>) -> Result<ApprovalRecord, StoreError> {
        insert_approval(self.db(), new, now).await?;
        policy_approval::Entity::find()
            .filter(policy_approval::Column::RequestKey.eq(new.request_key.as_str()))
            .one(self.db())
            .await?
            .map(Into::into)
            .ok_or_else(|| StoreError::Corrupt(format!("approval {} vanished", new.request_key)))
    }

    pub async fn approval(&self, id: Uuid) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(policy_approval::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .map(Into::into))
    }

    /// Approvals with `status` (all when none), oldest first.
    pub async fn approvals(&self, status: Option<&str>, limit: u64) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut query = policy_approval::Entity::find();
        if let Some(status) = status {
            query = query.filter(policy_approval::Column::Status.eq(status));
        }
        Ok(query
            .order_by_asc(policy_approval::Column::RequestedAt)
            .order_by_asc(policy_approval::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Moves a pending approval to `status`; false when it was no longer pending (another lead decided).
    pub async fn decide_approval(
        &self,
        id: Uuid,
        status: &str,
        by: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let updated = policy_approval::Entity::update_many()
            .col_expr(policy_approval::Column::Status, status.into())
            .col_expr(policy_approval::Column::DecidedBy, Some(by.to_owned()).into())
            .col_expr(policy_approval::Column::DecidedAt, Some(now).into())
            .col_expr(policy_approval::Column::DecisionNote, note.map(str::to_owned).into())
            .filter(policy_approval::Column::Id.eq(id))
            .filter(policy_approval::Column::Status.eq(APPROVAL_PENDING))
            .exec(self.db())
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Notes on a still pending approval why its action could not be performed when a lead approved it (the
    /// approval and the action commit together, so it stayed pending).
    pub async fn note_unperformed_approval(&self, id: Uuid, why: &str) -> Result<(), StoreError> {
        policy_approval::Entity::update_many()
            .col_expr(policy_approval::Column::DecisionNote, Some(why.to_owned()).into())
            .filter(policy_approval::Column::Id.eq(id))
            .filter(policy_approval::Column::Status.eq(APPROVAL_PENDING))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Files the dispute's seller uploaded through a signed link at or after `since`.
    pub async fn seller_uploads_since(&self, dispute: DisputeId, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = self
            .db()
            .query_one_raw(self.stmt(
                "SELECT COUNT(*) AS n FROM evidence_files WHERE dispute_id = $1 AND uploaded_by LIKE 'seller:%' \
                 AND uploaded_at >= $2",
                vec![dispute.as_uuid().into(), since.into()],
            ))
            .await?;
        Ok(match row {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn record(version: i64) -> Option<PolicyVersionRecord> {
        Some(PolicyVersionRecord {
            version,
            id: Uuid::now_v7(),
            source: String::new(),
            note: None,
            active: true,
            created_by: "lead".into(),
            created_at: Utc::now(),
            activated_by: None,
            activated_at: None,
        })
    }

    #[test]
    fn a_fresh_read_is_reused_and_an_old_one_is_not() {
        let cache = ActivePolicyCache::default();
        let activations = cache.fresh().unwrap_err();
        cache.keep(activations, Instant::now(), &record(3));
        assert_eq!(cache.fresh().unwrap().map(|r| r.version), Some(3));

        let cache = ActivePolicyCache::default();
        let long_ago = Instant::now()
            .checked_sub(ACTIVE_POLICY_REUSED_FOR + Duration::from_millis(1))
            .unwrap();
        cache.keep(cache.fresh().unwrap_err(), long_ago, &record(3));
        assert!(cache.fresh().is_err());
    }

    #[test]
    fn a_read_that_an_activation_overtook_is_not_kept() {
        let cache = ActivePolicyCache::default();
        cache.keep(cache.fresh().unwrap_err(), Instant::now(), &record(1));
        cache.activated();
        assert!(cache.fresh().is_err(), "an activation forgets the last read");

        let activations = cache.fresh().unwrap_err();
        cache.activated();
        cache.keep(activations, Instant::now(), &record(1));
        assert!(cache.fresh().is_err(), "read before the activation");
    }
}
