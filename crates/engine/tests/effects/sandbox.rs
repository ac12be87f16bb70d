//! The sandbox processor: a fixed rule, the same answer every time.

use serde_json::json;
use verdict_domain::{Action, CardNetwork, Processor, Stage, Status, StepKind};
use verdict_engine::effects::{
    Effects, StepError, StepOutcome, StepPerformer, Submission, SubmissionItem, sandbox_outcome,
};

use super::{ctx, dispute, harnesses};

fn with_item(kind: verdict_domain::EvidenceKind, text: &str) -> Submission {
    Submission {
        items: vec![SubmissionItem {
            kind,
            text: Some(text.into()),
            file: None,
        }],
        ..Submission::default()
    }
}

/// A submission whose order facts hold the payment's authorisation checks.
fn with_checks(avs: Option<&str>, three_d_secure: Option<&str>) -> Submission {
    let mut facts = super::order_facts();
    facts.payment_checks.avs_result = avs.map(str::to_owned);
    facts.payment_checks.cvv_result = None;
    facts.payment_checks.three_d_secure = three_d_secure.map(str::to_owned);
    Submission {
        facts: Some(facts),
        ..Submission::default()
    }
}

#[test]
fn the_sandbox_rule_decides_by_reason_category_and_evidence() {
    use verdict_domain::EvidenceKind as K;
    let none = Submission::default();
    let tracked = with_item(K::Tracking, "1Z999");
    let described = with_item(K::ProductDescription, "Refurbished iPhone 13, grade A");
    let avs_only = with_checks(Some("Y"), None);
    let secured = with_checks(None, Some("authenticated"));
    let unchecked = with_checks(None, None);
    let cases = [
        // consumer disputes and processing errors are won
        (CardNetwork::Visa, "13.1", &none, true),
        (CardNetwork::Mastercard, "4853", &none, true),
        (CardNetwork::Visa, "12.6", &none, true),
        // fraud is won only with proof of the cardholder
        (CardNetwork::Visa, "10.4", &none, false),
        (CardNetwork::Visa, "10.4", &described, false),
        (CardNetwork::Visa, "10.4", &tracked, true),
        (CardNetwork::Visa, "10.4", &secured, true),
        (CardNetwork::Mastercard, "4837", &avs_only, false),
        // authorization disputes need the authorisation checks
        (CardNetwork::Visa, "11.3", &none, false),
        (CardNetwork::Visa, "11.3", &unchecked, false),
        (CardNetwork::Visa, "11.3", &avs_only, true),
    ];
    for (network, code, submission, won) in cases {
        let d = dispute(Processor::Manual, network, code, Stage::Chargeback, Status::Submitted);
        for _ in 0..3 {
            assert_eq!(sandbox_outcome(&d, submission), won, "{network} {code} {submission:?}");
        }
    }
}

#[tokio::test]
async fn an_old_evidence_payload_reaches_the_sandbox_as_a_submission() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let fraud = dispute(
            Processor::Manual,
            CardNetwork::Visa,
            "10.4",
            Stage::Chargeback,
            Status::Submitted,
        );
        for (payload, won) in [
            (json!({"evidence": {"shipping_tracking_number": "1Z999"}}), true),
            (json!({"evidence": {"product_description": "iPhone"}}), false),
        ] {
            let outcome = effects
                .perform(&ctx(StepKind::SubmitEvidence, fraud.clone(), Some(payload)))
                .await
                .unwrap();
            let StepOutcome::Done { follow_up, .. } = outcome else {
                panic!("{}: {outcome:?}", h.label)
            };
            assert_eq!(
                follow_up,
                Some(Action::ReceiveOutcome { won, stage: None }),
                "{}",
                h.label
            );
        }
    }
}

#[tokio::test]
async fn sandbox_evidence_schedules_the_outcome_after_the_configured_delay() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let won = dispute(
            Processor::Paypal,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Submitted,
        );
        let lost = dispute(
            Processor::Stripe,
            CardNetwork::Visa,
            "10.4",
            Stage::Chargeback,
            Status::Submitted,
        );
        for (d, expected) in [(won.clone(), true), (lost, false)] {
            let outcome = effects.perform(&ctx(StepKind::SubmitEvidence, d, None)).await.unwrap();
            assert_eq!(
                outcome,
                StepOutcome::Done {
                    follow_up: Some(Action::ReceiveOutcome {
                        won: expected,
                        stage: None
                    }),
                    follow_up_after: Some(chrono::Duration::minutes(2)),
                },
                "{}",
                h.label
            );
        }
        let quick = effects.with_sandbox_outcome_delay(chrono::Duration::seconds(5));
        let StepOutcome::Done { follow_up_after, .. } =
            quick.perform(&ctx(StepKind::SubmitEvidence, won, None)).await.unwrap()
        else {
            panic!("evidence at the sandbox is done with a follow-up")
        };
        assert_eq!(follow_up_after, Some(chrono::Duration::seconds(5)));
    }
}

#[tokio::test]
async fn a_refund_settles_a_pre_dispute_alert_but_never_a_chargeback() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let alert = dispute(
            Processor::Stripe,
            CardNetwork::Visa,
            "10.4",
            Stage::PreDispute,
            Status::Resolved,
        );
        let outcome = effects.perform(&ctx(StepKind::Refund, alert, None)).await.unwrap();
        assert!(matches!(outcome, StepOutcome::DoneThen { .. }), "{}", h.label);

        let accepted_inquiry = dispute(
            Processor::Adyen,
            CardNetwork::Visa,
            "13.1",
            Stage::Inquiry,
            Status::Accepted,
        );
        let outcome = effects
            .perform(&ctx(StepKind::Refund, accepted_inquiry, None))
            .await
            .unwrap();
        assert!(matches!(outcome, StepOutcome::DoneThen { .. }), "{}", h.label);

        let chargeback = dispute(
            Processor::Stripe,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Accepted,
        );
        let err = effects
            .perform(&ctx(StepKind::Refund, chargeback, None))
            .await
            .unwrap_err();
        assert!(matches!(err, StepError::Permanent(_)), "{}: {err}", h.label);
    }
}

#[tokio::test]
async fn accepting_at_the_sandbox_is_done_without_a_follow_up() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let d = dispute(
            Processor::Braintree,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Accepted,
        );
        let outcome = effects
            .perform(&ctx(StepKind::AcceptAtProcessor, d, None))
            .await
            .unwrap();
        assert_eq!(outcome, StepOutcome::done(), "{}", h.label);
    }
}

#[tokio::test]
async fn a_malformed_evidence_payload_is_permanent() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let d = dispute(
            Processor::Manual,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Submitted,
        );
        let err = effects
            .perform(&ctx(
                StepKind::SubmitEvidence,
                d,
                Some(json!({"evidence": "not a map"})),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, StepError::Permanent(_)), "{}: {err}", h.label);
    }
}

#[test]
fn a_submission_prints_no_text_file_name_or_customer_detail() {
    let printed = format!("{:?}", super::full_submission());
    // (The order facts' own `Debug`, in the domain, is theirs to keep clean; the shipment's `signed_by` shows today.)
    for personal in [
        "confirmed receipt",
        "Jeanne",
        "jeanne.dupont",
        "rue des Lilas",
        "203.0.113.7",
        "chat.pdf",
    ] {
        assert!(!printed.contains(personal), "{personal} in {printed}");
    }
    assert!(printed.contains("CustomerCommunication"), "{printed}");
}
