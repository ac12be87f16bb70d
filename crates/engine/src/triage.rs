//! Triage: the active policy applied to a dispute when it opens, when its order facts or evidence change and
//! when its stage advances, in the same commit as what triggered it.
//!
//! Each run gathers the [`TriageInput`] (the order's facts, the evidence as the log names it, Compelling
//! Evidence eligibility, seller liability, economics), evaluates the active policy and stores the run beside the
//! dispute. A decision that differs from the previous run's (or, on a dispute's first run, from what Verdict did
//! before policies: the queue of the reason category) is recorded as a `triage_decided` event by
//! `policy:VERSION`; the projection's queue and priority follow it. When the rule lets Verdict act alone and the
//! amount is within its limit, the action is decided in the same commit through the ordinary respond actions
//! (refund, accept, message), with their steps in the outbox; above the limit the run asks a lead's approval.
//!
//! Each action the policy takes (alone, at the act-by time, or on a lead's approval) is marked in the commit that
//! takes it, keyed by dispute and action: a decision that flips A, B, A does not refund or message twice, and an
//! approval is claimed in the same transaction as the action it performs, so no approval is ever left approved
//! with nothing done.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use verdict_domain::policy::{ApprovalClaim, ApprovalRequest, OrderSignals, PolicyActionMark, baseline};
use verdict_domain::{
    Action, Actor, Autonomy, Change, Command, Decision, Dispute, DisputeClaim, DisputeEvent, DomainError,
    EconomicsConfig, EventKind, EvidenceBand, EvidenceKind, MessageTemplate, Money, Policy, RecommendedAction,
    RefundRecord, Triage, TriageInput, TriageRun, WinRates, apply, decide,
};
use verdict_facts::OrderLookup;

use crate::{Engine, EngineError};

/// How long observed win rates are reused before they are counted again.
const WIN_RATES_TTL: StdDuration = StdDuration::from_secs(60);

/// What the customer is told when delivery is proven and the policy asks them to withdraw.
const WITHDRAWAL_TEXT: &str = "Our records show that your order was delivered, with the carrier's proof of \
     delivery. If the matter is settled, please ask your bank to withdraw the dispute; otherwise reply to this \
     message and tell us what went wrong.";

/// Observed win rates shared by an engine's clones, counted at most once per [`WIN_RATES_TTL`].
#[derive(Default)]
pub(crate) struct WinRateCache {
    cached: tokio::sync::Mutex<Option<(Instant, Arc<WinRates>)>>,
    /// The last active policy parsed, by its row's id: a stored version never changes, so a triage reads which
    /// version is active (another replica may have activated one) but parses it only when that changed.
    parsed: std::sync::Mutex<Option<(uuid::Uuid, Arc<Policy>)>>,
}

/// The policy a triage applies: the active stored version, or the built-in default (version 0).
#[derive(Debug, Clone)]
pub struct ActivePolicy {
    pub version: i64,
    pub policy: Arc<Policy>,
}

/// Whether `change` is one that triage follows: the dispute opened, its order facts or evidence changed, its
/// stage advanced.
fn triggers(change: &Change) -> bool {
    match change {
        Change::Opened { .. }
        | Change::OrderLinked { .. }
        | Change::EvidenceAdded { .. }
        | Change::EvidenceRemoved { .. }
        | Change::StageAdvanced { .. } => true,
        Change::ProcessorUpdated {
            stage_from, stage_to, ..
        } => stage_from != stage_to,
        Change::Transitioned { stage, .. } | Change::OutcomeReceived { stage, .. } => stage.is_some(),
        _ => false,
    }
}

/// Days left until `due_by`, rounded down (negative once past).
fn days_left(due_by: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<i64> {
    due_by.map(|due| (due - now).num_seconds().div_euclid(86_400))
}

/// The evidence kinds a dispute holds, read from its log (stored events, then the ones about to be committed).
fn evidence_kinds<'a>(changes: impl Iterator<Item = &'a Change>) -> Vec<EvidenceKind> {
    let mut items: Vec<(uuid::Uuid, EvidenceKind)> = Vec::new();
    for change in changes {
        match change {
            Change::EvidenceAdded { items: added, .. } => items.extend(added.iter().map(|i| (i.item_id, i.kind))),
            Change::EvidenceRemoved { item } => items.retain(|(id, _)| *id != item.item_id),
            _ => {}
        }
    }
    items.into_iter().map(|(_, kind)| kind).collect()
}

impl Engine {
    /// The same engine with other economics settings (`[policy]`).
    pub fn with_economics(mut self, economics: EconomicsConfig) -> Self {
        self.economics = Arc::new(economics);
        self
    }

    pub fn economics(&self) -> &EconomicsConfig {
        &self.economics
    }

    /// The active policy: the stored version a lead activated, or the built-in default.
    pub async fn active_policy(&self) -> Result<ActivePolicy, EngineError> {
        let Some(record) = self.store.active_policy().await? else {
            return Ok(ActivePolicy {
                version: 0,
                policy: Arc::new(Policy::builtin_default()),
            });
        };
        let parsed = self.win_rates.parsed.lock().ok().and_then(|cached| {
            cached
                .as_ref()
                .filter(|(id, _)| *id == record.id)
                .map(|(_, policy)| policy.clone())
        });
        let policy = match parsed {
            Some(policy) => policy,
            None => {
                let policy = Arc::new(Policy::from_toml(&record.source).map_err(|e| {
                    verdict_store::StoreError::Corrupt(format!("active policy version {}: {e}", record.version))
                })?);
                if let Ok(mut cached) = self.win_rates.parsed.lock() {
                    *cached = Some((record.id, policy.clone()));
                }
                policy
            }
        };
        Ok(ActivePolicy {
            version: record.version,
            policy,
        })
    }

    /// Won and decided disputes per reason category, processor and evidence band, counted at most once a minute.
    pub async fn win_rates(&self) -> Result<Arc<WinRates>, EngineError> {
        let mut cached = self.win_rates.cached.lock().await;
        if let Some((at, rates)) = cached.as_ref()
            && at.elapsed() < WIN_RATES_TTL
        {
            return Ok(rates.clone());
        }
        let rates = Arc::new(self.store.win_rates().await?);
        *cached = Some((Instant::now(), rates.clone()));
        Ok(rates)
    }

    /// What the policy reads about `dispute` at `now`, its evidence being `kinds`.
    pub async fn triage_input(
        &self,
        dispute: &Dispute,
        kinds: &[EvidenceKind],
        now: DateTime<Utc>,
    ) -> Result<TriageInput, EngineError> {
        let claim = DisputeClaim::of_dispute(dispute);
        let completeness = verdict_domain::completeness_of_kinds(claim, kinds);
        // Only a linked dispute has an order to read; a webhook's opening never waits for the marketplace.
        let order = if dispute.seller_id.is_some() {
            match self.facts.find_order(&OrderLookup::of_dispute(dispute)).await {
                Ok(order) => order,
                Err(err) => {
                    tracing::warn!(dispute_id = %dispute.id, %err, "triage without the order's facts");
                    None
                }
            }
        } else {
            None
        };
        let seller_liable = order
            .as_ref()
            .is_some_and(|o| verdict_domain::seller_liability(claim, &verdict_domain::LiabilityFacts::of(o)).is_some());
        let ce_eligible = order.as_ref().is_some_and(|o| {
            verdict_domain::compelling_evidence(
                &dispute.reason_code,
                &verdict_domain::DisputedPayment::of_order(o),
                &o.prior_transactions,
            )
            .eligible
        });
        let signals = order.as_ref().map(|o| OrderSignals {
            delivered: o.shipment.as_ref().is_some_and(|s| s.delivered_at.is_some()),
            tracked: o
                .shipment
                .as_ref()
                .is_some_and(|s| !s.tracking_number.trim().is_empty()),
            returned: !o.refunds.is_empty(),
            grade: o
                .lines
                .iter()
                .map(|l| l.grade.trim())
                .find(|g| !g.is_empty())
                .map(str::to_owned),
            customer_previous_orders: o.customer.previous_orders,
            customer_previous_disputes: o.customer.previous_disputes,
        });
        let category = dispute.reason_code.category();
        let rates = self.win_rates().await?;
        let economics = match self.economics.economics(
            dispute.amount,
            category,
            dispute.processor,
            EvidenceBand::of_score(completeness.score),
            seller_liable,
            &rates,
        ) {
            Ok(economics) => Some(economics),
            // Triage still runs (every dispute gets a decision); the economics conditions match neither way.
            Err(err) => {
                tracing::warn!(dispute_id = %dispute.id, %err, "triage without economics");
                None
            }
        };
        Ok(TriageInput {
            category,
            reason_code: dispute.reason_code.code().to_owned(),
            network: dispute.reason_code.network(),
            amount: dispute.amount,
            processor: dispute.processor,
            stage: dispute.stage,
            days_left: days_left(dispute.due_by, now),
            seller_id: dispute.seller_id.clone(),
            order: signals,
            evidence_score: completeness.score,
            evidence_complete: completeness.is_complete(),
            ce_eligible,
            seller_liable,
            economics,
        })
    }

    /// Runs the triage when `decision` (leaving the dispute as `after`; `existing`: on a dispute already stored,
    /// not one it opens) triggers it: adds the run, a `triage_decided` event when the decision changed, and
    /// what the policy does alone, to `decision`.
    pub(crate) async fn triage_into(
        &self,
        existing: bool,
        after: &mut Dispute,
        decision: &mut Decision,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if !after.status.is_open() || !decision.events.iter().any(|e| triggers(&e.change)) {
            return Ok(());
        }
        let stored = if existing {
            self.store.events(after.id).await?
        } else {
            Vec::new()
        };
        let stored_changes: Vec<Change> = stored
            .iter()
            .filter(|e| e.kind == EventKind::EvidenceAdded.as_str() || e.kind == EventKind::EvidenceRemoved.as_str())
            .filter_map(|e| serde_json::from_value::<Change>(e.change.clone()).ok())
            .collect();
        let kinds = evidence_kinds(stored_changes.iter().chain(decision.events.iter().map(|e| &e.change)));
        let input = self.triage_input(after, &kinds, now).await?;
        let active = self.active_policy().await?;
        let triage = active.policy.evaluate(&input);
        let previous = if stored.is_empty() {
            None
        } else {
            self.store.triage_run(after.id).await?.map(|run| run.triage)
        };
        let previous = previous.unwrap_or_else(|| baseline(input.category));
        let mut run = TriageRun {
            policy_version: active.version,
            input,
            triage: triage.clone(),
            at: now,
            approval: None,
        };
        if !triage.same_decision(&previous) {
            let actor = Actor::policy(active.version);
            let event = DisputeEvent {
                dispute_id: after.id,
                version: after.version + 1,
                at: now,
                actor: actor.clone(),
                reason: Some(triage.why.clone()),
                change: Change::TriageDecided {
                    policy_version: active.version,
                    triage: Box::new(triage.clone()),
                },
            };
            apply(after, &event);
            decision.events.push(event);
            // A dispute this decision opens has no policy actions yet.
            let taken = match triage.autonomy {
                Autonomy::Manual => false,
                _ if !existing => false,
                _ => self.store.policy_action_taken(after.id, triage.action.as_str()).await?,
            };
            match triage.autonomy {
                Autonomy::Manual => {}
                // Once per dispute and action: a decision that comes back does not act again.
                _ if taken => tracing::info!(
                    dispute_id = %after.id,
                    action = %triage.action,
                    "the policy already took this action on this dispute"
                ),
                // A defense waits for the act-by time (timers.rs).
                Autonomy::Act if !triage.action.acts_at_once() => {}
                Autonomy::Act => {
                    let refunded = refunds_of(&stored);
                    match self.act_alone(after, &triage, &actor, &refunded, now) {
                        Ok(mut acted) => {
                            for event in &acted.events {
                                apply(after, event);
                            }
                            acted.policy_action = Some(PolicyActionMark {
                                action: triage.action,
                                approval: None,
                            });
                            decision.then(acted);
                        }
                        // The rule asked for what this dispute cannot take (a chargeback cannot be refunded, a
                        // customer without an email cannot be written to): the triage stands, a person acts.
                        Err(err) => tracing::info!(dispute_id = %after.id, %err, "the policy cannot act alone"),
                    }
                }
                Autonomy::NeedsApproval { limit_minor } => {
                    // One approval per dispute and action, whatever the decisions in between.
                    run.approval = Some(ApprovalRequest {
                        action: triage.action,
                        amount: after.amount,
                        limit_minor,
                        key: format!("{}:{}:policy_approval", after.id, triage.action.as_str()),
                    });
                }
            }
        }
        decision.triage = Some(Box::new(run));
        Ok(())
    }

    /// Decides the action `triage` recommends, by `actor`, on `dispute` as it stands.
    pub(crate) fn act_alone(
        &self,
        dispute: &Dispute,
        triage: &Triage,
        actor: &Actor,
        refunded: &[RefundRecord],
        now: DateTime<Utc>,
    ) -> Result<Decision, DomainError> {
        let action = policy_action(dispute, triage.action, refunded)?;
        let command = Command::new(actor.clone(), action)
            .because(triage.why.clone())
            .expecting(dispute.version);
        Ok(self.timing.adjust(decide(dispute, &command, now)?, now))
    }

    /// Performs an approved action as `policy:VERSION`, the lead named in the reason, and claims the approval
    /// (pending to approved) in the same commit: either both happen or neither does. A refund's request id is the
    /// approval's, and the action is marked once per dispute, so an approval performs at most one action
    /// whatever happens. A defense is submitted only if the evidence was complete at the last triage.
    pub async fn perform_approved(
        &self,
        approval: &verdict_store::ApprovalRecord,
        lead: &str,
        note: Option<&str>,
    ) -> Result<Dispute, EngineError> {
        let id = verdict_domain::DisputeId::from_uuid(approval.dispute_id);
        let action: RecommendedAction = serde_json::from_value(serde_json::Value::String(approval.action.clone()))
            .map_err(|_| DomainError::InvalidInput(format!("approval {} names no known action", approval.id)))?;
        let dispute = self.store.load(id).await?.ok_or(EngineError::NotFound(id))?;
        let refunded = refunds_of(&self.store.events(id).await?);
        if action == RecommendedAction::Escalate {
            return Err(DomainError::InvalidInput(format!(
                "approval {} asks to {action}, which is not performed on approval",
                approval.id
            ))
            .into());
        }
        if self.store.policy_action_taken(id, action.as_str()).await? {
            return Err(DomainError::InvalidInput(format!(
                "the policy already took the action {action} on this dispute; reject approval {}",
                approval.id
            ))
            .into());
        }
        if action == RecommendedAction::Defend {
            let complete = self
                .store
                .triage_run(id)
                .await?
                .is_some_and(|run| run.input.evidence_complete);
            if !complete {
                return Err(DomainError::InvalidInput(
                    "the evidence is not complete: a defense with missing evidence is a person's".into(),
                )
                .into());
            }
        }
        let mark = PolicyActionMark {
            action,
            approval: Some(ApprovalClaim {
                id: approval.id,
                by: lead.to_owned(),
                note: note.map(str::to_owned),
            }),
        };
        let mut action = policy_action(&dispute, action, &refunded)?;
        if let Action::Refund { request_id, .. } = &mut action {
            *request_id = format!("policy-approval-{}", approval.id);
        }
        let command = Command::new(Actor::policy(approval.policy_version), action)
            .because(format!(
                "approved by {lead} (approval {}): {}",
                approval.id, approval.why
            ))
            .expecting(dispute.version);
        Ok(self.decide_commit_marked(id, command, None, Some(mark)).await?.0)
    }
}

/// The respond action behind a recommendation, on `dispute` as it stands.
fn policy_action(
    dispute: &Dispute,
    action: RecommendedAction,
    refunded: &[RefundRecord],
) -> Result<Action, DomainError> {
    Ok(match action {
        RecommendedAction::Refund => {
            let left = verdict_domain::respond::refundable(dispute.amount, refunded)
                .ok_or_else(|| DomainError::InvalidInput("the dispute is already refunded in full".into()))?;
            Action::Refund {
                request_id: format!("policy-{}", dispute.version),
                amount: Money::new(left, dispute.amount.currency())?,
                prior: refunded.to_vec(),
                resolve: true,
            }
        }
        RecommendedAction::Accept => Action::Accept,
        RecommendedAction::AskSeller => Action::SendMessage {
            template: MessageTemplate::SellerRequestEvidence,
            text: None,
            locale: None,
        },
        RecommendedAction::AskWithdrawal => Action::SendMessage {
            template: MessageTemplate::CustomerCaseUpdate,
            text: Some(WITHDRAWAL_TEXT.to_owned()),
            locale: None,
        },
        RecommendedAction::Defend => Action::SubmitDefense {
            missing: Vec::new(),
            override_reason: None,
        },
        RecommendedAction::Escalate => {
            return Err(DomainError::InvalidInput("escalating is a person's work".into()));
        }
    })
}

/// The refunds a dispute's stored log requested.
fn refunds_of(events: &[verdict_store::EventRecord]) -> Vec<RefundRecord> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::RefundRequested.as_str())
        .filter_map(|e| match serde_json::from_value::<Change>(e.change.clone()) {
            Ok(Change::RefundRequested { request_id, amount }) => Some(RefundRecord { request_id, amount }),
            _ => None,
        })
        .collect()
}
