//! Seller liability: a dispute the seller owns opens a seller task due before the processor's deadline, and
//! when it is lost its amount is recovered from the seller's payout once, however often the step runs.

use std::sync::Arc;

use chrono::Duration;
use verdict_domain::{
    Action, Actor, Command, Locale, Processor, SellerLiability, SellerTask, Stage, StepKind, StepRequest,
};
use verdict_engine::Clock as _;
use verdict_engine::effects::{
    Effects, EffectsConfig, FakePayouts, StepContext, StepError, StepOutcome, StepPerformer,
};

use super::{Harness, harnesses, order_facts, t0};

/// A Visa 13.1 (merchandise not received) dispute, linked to an order the seller shipped itself.
pub(super) async fn seller_owned(h: &Harness, pid: &str) -> (verdict_domain::Dispute, SellerTask) {
    let dispute = h.dispute(pid, Locale::En, Stage::Chargeback, vec![]).await;
    let facts = order_facts();
    let task = SellerTask::for_order(&dispute, &facts, &h.engine.seller_tasks(), h.clock.now());
    let task = task.unwrap_or_else(|| panic!("{}: the seller shipped it, so owns the dispute", h.label));
    let link = Action::LinkOrder {
        order_reference: facts.order_reference.clone(),
        source: "tables".into(),
        seller_id: facts.seller.seller_id.clone(),
        customer: facts.dispute_customer(),
        seller_task: Some(task),
        profile: None,
    };
    let (dispute, decision) = h
        .engine
        .handle_decided(dispute.id, Command::new(Actor::analyst("test"), link))
        .await
        .unwrap();
    // The seller is asked for what is needed, by the task's due time.
    let message = decision.steps.iter().find(|s| s.kind == StepKind::SellerMessage);
    let payload = message.and_then(|s| s.payload.clone()).unwrap_or_default();
    assert_eq!(payload["template"], "seller_request_evidence", "{}", h.label);
    let text = payload["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("proof_of_delivery") && text.contains("tracking"),
        "{text}"
    );
    (dispute, task)
}

fn step_ctx(dispute: &verdict_domain::Dispute, step: &StepRequest, attempt: i32) -> StepContext {
    StepContext {
        step_id: uuid::Uuid::now_v7(),
        kind: step.kind,
        idempotency_key: step.idempotency_key.clone(),
        attempt,
        dispute: dispute.clone(),
        payload: step.payload.clone(),
    }
}

#[tokio::test]
async fn seller_tasks_get_deadlines_before_the_processors() {
    for h in harnesses().await {
        let (dispute, task) = seller_owned(&h, "dp_seller_task").await;
        assert_eq!(task.liability, SellerLiability::NotReceivedSellerShipped);
        let due_by = dispute.due_by.unwrap();
        assert!(
            task.due_at < due_by,
            "{}: {} is not before {due_by}",
            h.label,
            task.due_at
        );
        assert_eq!(task.due_at, due_by - Duration::hours(72));
        // The task is read back from the dispute's history.
        assert_eq!(
            h.engine.seller_task(dispute.id).await.unwrap(),
            Some(task),
            "{}",
            h.label
        );
    }
}

#[tokio::test]
async fn a_recovery_is_recorded_once_when_a_seller_owned_dispute_is_lost() {
    for h in harnesses().await {
        let (dispute, _) = seller_owned(&h, "dp_seller_lost").await;
        let lost = Command::new(
            Actor::processor(Processor::Stripe),
            Action::ReceiveOutcome {
                won: false,
                stage: None,
            },
        );
        let (dispute, decision) = h.engine.handle_decided(dispute.id, lost).await.unwrap();
        let recoveries: Vec<&StepRequest> = decision
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::SellerRecovery)
            .collect();
        assert_eq!(recoveries.len(), 1, "{}: {:?}", h.label, decision.steps);
        let step = recoveries[0];
        assert_eq!(step.payload.as_ref().unwrap()["amount_minor_units"], 48_900);

        // Without a payout service the recovery is recorded and the step waits, visibly.
        let store = h.engine.store().clone();
        let waiting = Effects::local(store.clone(), h.clock.clone());
        match waiting.perform(&step_ctx(&dispute, step, 1)).await {
            Err(StepError::Permanent(message)) => assert!(message.starts_with("waiting_for_adapter"), "{message}"),
            other => panic!("{}: {other:?}", h.label),
        }
        // With one, the retries (the answer lost, the step run again) debit once and record nothing twice.
        let payouts = FakePayouts::default();
        let effects = Effects::local(store.clone(), h.clock.clone()).with_payouts(Arc::new(payouts.clone()));
        for attempt in 2..5 {
            let done = effects.perform(&step_ctx(&dispute, step, attempt)).await.unwrap();
            assert_eq!(done, StepOutcome::done(), "{}", h.label);
        }
        let recorded = store.recoveries(Some(dispute.id.as_uuid()), 10).await.unwrap();
        assert_eq!(recorded.len(), 1, "{}: {recorded:?}", h.label);
        assert_eq!(recorded[0].amount_minor_units, 48_900);
        assert_eq!(recorded[0].seller_id, "seller-techrenew-fr");
        assert_eq!(recorded[0].liability, "not_received_seller_shipped");
        assert_eq!(recorded[0].outcome, "lost");
        assert!(recorded[0].payout_reference.is_some());
        assert_eq!(payouts.debits().len(), 1);
        assert_eq!(payouts.calls(), 1, "a recorded debit is not asked again");

        // A later word of the processor on the closed dispute asks for no second recovery.
        let again = Command::new(
            Actor::processor(Processor::Stripe),
            Action::ProcessorUpdate {
                status: None,
                stage: None,
                due_by: Some(t0() + Duration::days(30)),
            },
        );
        if let Ok((_, decision)) = h.engine.handle_decided(dispute.id, again).await {
            assert!(decision.steps.iter().all(|s| s.kind != StepKind::SellerRecovery));
        }
    }
}

#[tokio::test]
async fn a_dispute_the_seller_does_not_own_is_not_recovered() {
    for h in harnesses().await {
        let dispute = h.dispute("dp_not_seller", Locale::En, Stage::Chargeback, vec![]).await;
        let mut facts = order_facts();
        facts.seller.ships_itself = false;
        assert_eq!(
            SellerTask::for_order(&dispute, &facts, &h.engine.seller_tasks(), h.clock.now()),
            None
        );
        let lost = Command::new(
            Actor::processor(Processor::Stripe),
            Action::ReceiveOutcome {
                won: false,
                stage: None,
            },
        );
        let (_, decision) = h.engine.handle_decided(dispute.id, lost).await.unwrap();
        assert!(
            decision.steps.iter().all(|s| s.kind != StepKind::SellerRecovery),
            "{}",
            h.label
        );
    }
}

/// The demo (the sandbox) stands in for the payout service as it does for the processors, so its recoveries show
/// as debited; a configuration without sandbox and without `payout_url` leaves them waiting, visibly.
#[tokio::test]
async fn the_sandbox_debits_recoveries_and_a_real_configuration_waits_for_the_payout_service() {
    for h in harnesses().await {
        let (dispute, _) = seller_owned(&h, "dp_seller_sandbox").await;
        let lost = Command::new(
            Actor::processor(Processor::Stripe),
            Action::ReceiveOutcome {
                won: false,
                stage: None,
            },
        );
        let (dispute, decision) = h.engine.handle_decided(dispute.id, lost).await.unwrap();
        let step = decision
            .steps
            .iter()
            .find(|s| s.kind == StepKind::SellerRecovery)
            .unwrap();
        let store = h.engine.store().clone();

        let real = Effects::from_config(&EffectsConfig::default(), store.clone(), h.clock.clone()).unwrap();
        match real.perform(&step_ctx(&dispute, step, 1)).await {
            Err(StepError::Permanent(message)) => assert!(message.starts_with("waiting_for_adapter"), "{message}"),
            other => panic!("{}: {other:?}", h.label),
        }
        let sandbox = EffectsConfig {
            sandbox: true,
            ..EffectsConfig::default()
        };
        let demo = Effects::from_config(&sandbox, store.clone(), h.clock.clone()).unwrap();
        let done = demo.perform(&step_ctx(&dispute, step, 2)).await.unwrap();
        assert_eq!(done, StepOutcome::done(), "{}", h.label);
        let recorded = store.recoveries(Some(dispute.id.as_uuid()), 10).await.unwrap();
        assert_eq!(recorded.len(), 1, "{}", h.label);
        assert!(recorded[0].payout_reference.is_some(), "{}: {recorded:?}", h.label);
    }
}
