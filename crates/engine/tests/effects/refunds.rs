//! Money steps (issue 7): a refund or acceptance is checked at the processor before it is sent again, the
//! customer is told only after the refund succeeded, a step without an adapter waits visibly under the serve
//! configuration (no sandbox), and a running step cannot be reported cancelled. Against a local fake Stripe
//! whose answers start from stripe-mock's fixtures (tests/fixtures/README.md).

use std::sync::Arc;

use chrono::Duration;
use serde_json::{Value, json};
use verdict_domain::{Action, CardNetwork, Locale, Processor, Stage, Status, StepKind};
use verdict_engine::Clock;
use verdict_engine::effects::ProcessorApi as _;
use verdict_engine::effects::{
    Effects, EffectsConfig, StepError, StepPerformer, StripeApi, WAITING_FOR_ADAPTER, refund_message_key,
};
use verdict_engine::worker::{Worker, WorkerOptions};
use verdict_store::{Leased, MailboxChannel};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{Harness, ctx, dispute, harnesses, install_crypto};

const FIXTURES: &str = include_str!("../fixtures/stripe/openapi-fixtures3-dispute-refund-file.json");

/// stripe-mock's refund object with the given id, status, payment intent and Verdict dispute id.
fn refund(id: &str, status: &str, payment_intent: &str, dispute_id: Option<&str>) -> Value {
    let fixtures: Value = serde_json::from_str(FIXTURES).unwrap();
    let mut refund = fixtures["resources"]["refund"].clone();
    refund["id"] = json!(id);
    refund["status"] = json!(status);
    refund["payment_intent"] = json!(payment_intent);
    refund["charge"] = Value::Null;
    if let Some(dispute_id) = dispute_id {
        refund["metadata"] = json!({"verdict_dispute_id": dispute_id});
    }
    refund
}

/// stripe-mock's dispute object with the given id and status.
fn stripe_dispute_object(id: &str, status: &str) -> Value {
    let fixtures: Value = serde_json::from_str(FIXTURES).unwrap();
    let mut dispute = fixtures["resources"]["dispute"].clone();
    dispute["id"] = json!(id);
    dispute["status"] = json!(status);
    dispute
}

fn list(data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "url": "/v1/refunds", "has_more": has_more, "data": data})
}

fn posts(requests: &[Request]) -> usize {
    requests.iter().filter(|r| r.method.as_str() == "POST").count()
}

fn inquiry() -> verdict_domain::Dispute {
    dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "13.1",
        Stage::Inquiry,
        Status::Resolved,
    )
}

#[tokio::test]
async fn a_refund_retried_after_stripe_forgot_the_key_is_found_and_not_sent_again() {
    install_crypto();
    let server = MockServer::start().await;
    let d = inquiry();
    let ours = d.id.to_string();
    // Days later, under the same key: Stripe no longer knows the key, but the refund is on the payment.
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .and(query_param("payment_intent", "pi_3Pq9Zx"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            vec![
                refund("re_someone_else", "succeeded", "pi_3Pq9Zx", None),
                refund("re_verdict", "succeeded", "pi_3Pq9Zx", Some(&ours)),
            ],
            false,
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(refund("re_twice", "succeeded", "pi_3Pq9Zx", None)))
        .expect(0)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let reply = api.refund(&d, d.amount, "key-forgotten").await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("re_verdict"));
}

#[tokio::test]
async fn the_refund_check_reads_every_page_of_the_payments_refunds() {
    install_crypto();
    let server = MockServer::start().await;
    let d = inquiry();
    let ours = d.id.to_string();
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .and(query_param("payment_intent", "pi_3Pq9Zx"))
        .and(query_param("starting_after", "re_page1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            vec![refund("re_verdict", "succeeded", "pi_3Pq9Zx", Some(&ours))],
            false,
        )))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .and(query_param("payment_intent", "pi_3Pq9Zx"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(list(vec![refund("re_page1", "succeeded", "pi_3Pq9Zx", None)], true)),
        )
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let reply = api.refund(&d, d.amount, "key-paged").await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("re_verdict"));
    assert_eq!(posts(&server.received_requests().await.unwrap()), 0);
}

#[tokio::test]
async fn a_failed_refund_does_not_count_and_a_pending_one_is_waited_for() {
    install_crypto();
    let d = inquiry();
    let ours = d.id.to_string();

    // A failed refund paid nothing: a new one is made, tagged with the dispute.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            vec![refund("re_failed", "failed", "pi_3Pq9Zx", Some(&ours))],
            false,
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(refund("re_new", "succeeded", "pi_3Pq9Zx", Some(&ours))))
        .expect(1)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let reply = api.refund(&d, d.amount, "key-after-failure").await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("re_new"));
    let sent = server.received_requests().await.unwrap();
    let post = sent.iter().find(|r| r.method.as_str() == "POST").unwrap();
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&post.body).into_owned().collect();
    assert_eq!(form.get("metadata[verdict_dispute_id]"), Some(&ours));
    assert_eq!(
        form.get("metadata[verdict_step]").map(String::as_str),
        Some("key-after-failure")
    );

    // A pending refund is not sent again, and is not a success yet.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(
            vec![refund("re_pending", "pending", "pi_3Pq9Zx", Some(&ours))],
            false,
        )))
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let err = api.refund(&d, d.amount, "key-pending").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("re_pending"), "{err}");
    assert_eq!(posts(&server.received_requests().await.unwrap()), 0);

    // A refund Stripe answers `pending` is not a success either.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list(vec![], false)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(refund("re_slow", "pending", "pi_3Pq9Zx", Some(&ours))))
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let err = api.refund(&d, d.amount, "key-slow").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn an_acceptance_is_not_sent_for_a_dispute_already_closed_at_stripe() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/disputes/dp_1Q2w3E4r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stripe_dispute_object("dp_1Q2w3E4r", "lost")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/disputes/dp_1Q2w3E4r/close"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stripe_dispute_object("dp_1Q2w3E4r", "lost")))
        .expect(0)
        .mount(&server)
        .await;
    let api = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
    let d = dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "13.1",
        Stage::Chargeback,
        Status::Accepted,
    );
    let reply = api.accept_dispute(&d, "key-accept-again").await.unwrap();
    assert_eq!(reply.reference.as_deref(), Some("dp_1Q2w3E4r"));
}

async fn resolved(h: &Harness, pid: &str) -> verdict_domain::Dispute {
    h.dispute(
        pid,
        Locale::En,
        Stage::Inquiry,
        vec![Action::Triage { queue: None }, Action::Resolve],
    )
    .await
}

/// A chargeback whose evidence was submitted (its `submit_evidence` step enqueued).
async fn submitted(h: &Harness, pid: &str) -> verdict_domain::Dispute {
    h.dispute(
        pid,
        Locale::En,
        Stage::Chargeback,
        vec![
            Action::Triage { queue: None },
            Action::StartEvidenceGathering,
            Action::Submit,
        ],
    )
    .await
}

async fn kinds(h: &Harness, d: &verdict_domain::Dispute) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = h
        .engine
        .store()
        .steps(d.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.kind, s.status))
        .collect();
    steps.sort();
    steps
}

async fn customer_mail(h: &Harness, d: &verdict_domain::Dispute) -> usize {
    h.engine
        .store()
        .mailbox_of(d.id)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.channel == MailboxChannel::Customer)
        .count()
}

#[tokio::test]
async fn the_customer_is_told_of_the_refund_only_after_it_succeeded() {
    for h in harnesses().await {
        let label = h.label;
        let server = MockServer::start().await;
        let pending = resolved(&h, "rf_pending").await;
        let refused = resolved(&h, "rf_refused").await;
        // Resolving enqueues the refund alone: no message can go out before the refund's result is known.
        for d in [&pending, &refused] {
            assert_eq!(kinds(&h, d).await, [("refund".into(), "pending".into())], "{label}");
        }
        Mock::given(method("GET"))
            .and(path("/v1/refunds"))
            .respond_with(ResponseTemplate::new(200).set_body_json(list(vec![], false)))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .and(wiremock::matchers::body_string_contains("payment_intent=pi_rf_pending"))
            .respond_with(ResponseTemplate::new(200).set_body_json(refund(
                "re_rf_pending",
                "pending",
                "pi_rf_pending",
                Some(&pending.id.to_string()),
            )))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .and(wiremock::matchers::body_string_contains("payment_intent=pi_rf_refused"))
            .respond_with(
                ResponseTemplate::new(402).set_body_json(
                    json!({"error": {"type": "invalid_request_error", "code": "charge_already_refunded"}}),
                ),
            )
            .mount(&server)
            .await;
        let stripe = StripeApi::new(&server.uri(), "sk_test_123").unwrap();
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone())
            .without_sandbox()
            .with_processor(Processor::Stripe, Arc::new(stripe));
        let worker = Worker::new(h.engine.clone(), Arc::new(effects), WorkerOptions::default());
        worker.drain().await.unwrap();

        // Pending at Stripe: retried later, and no message. Refused: dead-lettered, and no message.
        assert_eq!(
            kinds(&h, &pending).await,
            [("refund".into(), "pending".into())],
            "{label}"
        );
        assert_eq!(kinds(&h, &refused).await, [("refund".into(), "dead".into())], "{label}");
        for d in [&pending, &refused] {
            assert_eq!(
                customer_mail(&h, d).await,
                0,
                "{label}: told before the refund succeeded"
            );
        }

        // Stripe settles the refund; the next try finds it and sends nothing again.
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/v1/refunds"))
            .and(query_param("payment_intent", "pi_rf_pending"))
            .respond_with(ResponseTemplate::new(200).set_body_json(list(
                vec![refund(
                    "re_rf_pending",
                    "succeeded",
                    "pi_rf_pending",
                    Some(&pending.id.to_string()),
                )],
                false,
            )))
            .mount(&server)
            .await;
        h.clock.advance(Duration::hours(2));
        worker.drain().await.unwrap();
        assert_eq!(posts(&server.received_requests().await.unwrap()), 0, "{label}");
        assert_eq!(
            kinds(&h, &pending).await,
            [
                ("customer_message".into(), "succeeded".into()),
                ("refund".into(), "succeeded".into())
            ],
            "{label}"
        );
        let steps = h.engine.store().steps(pending.id).await.unwrap();
        let refund_key = &steps.iter().find(|s| s.kind == "refund").unwrap().idempotency_key;
        let mail = h.engine.store().mailbox_of(pending.id).await.unwrap();
        let customer: Vec<_> = mail.iter().filter(|m| m.channel == MailboxChannel::Customer).collect();
        assert_eq!(customer.len(), 1, "{label}");
        assert_eq!(customer[0].message_id, refund_message_key(refund_key), "{label}");
        assert!(
            customer[0].subject.to_lowercase().contains("refund"),
            "{label}: {}",
            customer[0].subject
        );
        assert_eq!(customer_mail(&h, &refused).await, 0, "{label}");
    }
}

#[tokio::test]
async fn under_the_serve_configuration_a_step_without_an_adapter_waits_and_invents_nothing() {
    for h in harnesses().await {
        let label = h.label;
        // `serve`: no Stripe key, no sandbox.
        let serve = Effects::from_config(&EffectsConfig::default(), h.engine.store().clone(), h.clock.clone()).unwrap();
        let refunded = resolved(&h, "wa_refund").await;
        let submitted = submitted(&h, "wa_submit").await;
        let worker = Worker::new(h.engine.clone(), Arc::new(serve), WorkerOptions::default());
        worker.drain().await.unwrap();
        h.clock.advance(Duration::days(1));
        worker.drain().await.unwrap();

        for (d, kind) in [(&refunded, "refund"), (&submitted, "submit_evidence")] {
            let steps = h.engine.store().steps(d.id).await.unwrap();
            let step = steps.iter().find(|s| s.kind == kind).unwrap();
            assert_eq!(step.status, "dead", "{label}: {kind} never succeeds without an adapter");
            let row = h.engine.store().step_row(step.id).await.unwrap().unwrap();
            let reason = row.last_error.unwrap_or_default();
            assert!(reason.starts_with(WAITING_FOR_ADAPTER), "{label}: {reason}");
            assert!(reason.contains("stripe_api_key"), "{label}: {reason}");
            assert_eq!(row.attempts, 1, "{label}: dead-lettered at once, not retried in vain");
        }
        // Visible where leads look (GraphQL `deadLetteredSteps` reads this).
        assert_eq!(h.engine.store().dead_steps(10).await.unwrap().len(), 2, "{label}");
        // No message about a refund that never happened, and no outcome invented for the submission.
        assert!(
            !kinds(&h, &refunded).await.iter().any(|(k, _)| k == "customer_message"),
            "{label}"
        );
        assert_eq!(customer_mail(&h, &refunded).await, 0, "{label}");
        let after = h.engine.store().load(submitted.id).await.unwrap().unwrap();
        assert_eq!(after.status, Status::Submitted, "{label}: an outcome was invented");
        assert!(
            !kinds(&h, &submitted).await.iter().any(|(k, _)| k == "seller_message"),
            "{label}"
        );
    }
}

#[tokio::test]
async fn with_the_sandbox_on_the_demo_still_runs_to_its_end() {
    for h in harnesses().await {
        let label = h.label;
        let config = EffectsConfig {
            sandbox: true,
            sandbox_outcome_delay_secs: 60,
            ..EffectsConfig::default()
        };
        let demo = Effects::from_config(&config, h.engine.store().clone(), h.clock.clone()).unwrap();
        let refunded = resolved(&h, "demo_refund").await;
        let submitted = submitted(&h, "demo_submit").await;
        let worker = Worker::new(h.engine.clone(), Arc::new(demo), WorkerOptions::default());
        worker.drain().await.unwrap();
        h.clock.advance(Duration::minutes(2));
        worker.drain().await.unwrap();
        assert_eq!(
            kinds(&h, &refunded).await,
            [
                ("customer_message".into(), "succeeded".into()),
                ("refund".into(), "succeeded".into())
            ],
            "{label}"
        );
        assert_eq!(customer_mail(&h, &refunded).await, 1, "{label}");
        let after = h.engine.store().load(submitted.id).await.unwrap().unwrap();
        assert_eq!(after.status, Status::Won, "{label}: the sandbox decides (13.1 is won)");
    }
}

#[tokio::test]
async fn a_running_step_is_not_reported_cancelled_while_it_completes() {
    for h in harnesses().await {
        let label = h.label;
        let running = resolved(&h, "cx_running").await;
        let store = h.engine.store();
        let claimed = store
            .claim_steps("worker-a", h.clock.now(), 10, Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{label}");
        let step = &claimed[0];
        // The refund may be reaching Stripe right now: a lead's cancel is refused, nothing changes.
        assert!(!store.cancel_step(step.id, h.clock.now()).await.unwrap(), "{label}");
        let row = store.step_row(step.id).await.unwrap().unwrap();
        assert_eq!(row.status, "pending", "{label}");
        assert!(row.is_running(h.clock.now()), "{label}");
        // The holder records what really happened.
        let done = store
            .complete_steps(
                &[Leased {
                    id: step.id,
                    lease_token: step.lease_token,
                }],
                h.clock.now(),
            )
            .await
            .unwrap();
        assert_eq!(done.completed, vec![step.id], "{label}");
        assert_eq!(
            kinds(&h, &running).await,
            [("refund".into(), "succeeded".into())],
            "{label}"
        );

        // A step nobody holds (waiting for its next try, or whose holder's lease ran out) can be cancelled.
        let idle = resolved(&h, "cx_idle").await;
        let idle_step = store.steps(idle.id).await.unwrap().remove(0);
        assert!(store.cancel_step(idle_step.id, h.clock.now()).await.unwrap(), "{label}");
        assert_eq!(
            kinds(&h, &idle).await,
            [("refund".into(), "cancelled".into())],
            "{label}"
        );
        let expired = resolved(&h, "cx_expired").await;
        let claimed = store
            .claim_steps("worker-b", h.clock.now(), 10, Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{label}");
        h.clock.advance(Duration::seconds(61));
        assert!(
            store.cancel_step(claimed[0].id, h.clock.now()).await.unwrap(),
            "{label}"
        );
        assert_eq!(
            kinds(&h, &expired).await,
            [("refund".into(), "cancelled".into())],
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_processor_step_without_an_adapter_is_a_permanent_waiting_for_adapter_failure() {
    for h in harnesses().await {
        // What `serve` builds: the default configuration, no adapter configured, no sandbox.
        let serve = Effects::from_config(
            &verdict_engine::effects::EffectsConfig::default(),
            h.engine.store().clone(),
            h.clock.clone(),
        )
        .unwrap();
        for (processor, kind) in [
            (Processor::Stripe, StepKind::Refund),
            (Processor::Paypal, StepKind::Refund),
            (Processor::Braintree, StepKind::AcceptAtProcessor),
            (Processor::Manual, StepKind::SubmitEvidence),
            (Processor::Adyen, StepKind::Refund),
        ] {
            let d = dispute(processor, CardNetwork::Visa, "13.1", Stage::Inquiry, Status::Resolved);
            let err = serve.perform(&ctx(kind, d, None)).await.unwrap_err();
            assert!(
                matches!(&err, StepError::Permanent(m) if m.starts_with(WAITING_FOR_ADAPTER)),
                "{}: {err}",
                h.label
            );
        }
    }
}

/// Adyen only acknowledges a refund (`received`) and reports its result later: the customer is told it was
/// requested, never that it was made.
#[tokio::test]
async fn an_adyen_refund_it_only_acknowledged_tells_the_customer_it_was_requested_not_made() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex("^/checkout/v71/payments/[^/]+/refunds$"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"pspReference": "REF0001", "status": "received"})),
        )
        .mount(&server)
        .await;
    for h in harnesses().await {
        let adyen = verdict_engine::effects::AdyenApi::new(
            &format!("{}/disputes/v30", server.uri()),
            &format!("{}/checkout/v71/", server.uri()),
            "adyen_key",
            "VerdictShopECOM",
        )
        .unwrap();
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone())
            .without_sandbox()
            .with_processor(Processor::Adyen, Arc::new(adyen));
        let mut d = dispute(
            Processor::Adyen,
            CardNetwork::Visa,
            "13.1",
            Stage::Inquiry,
            Status::Resolved,
        );
        d.payment_reference = "8815555555555555".into();
        let outcome = effects.perform(&ctx(StepKind::Refund, d, None)).await.unwrap();
        let verdict_engine::effects::StepOutcome::DoneThen { next } = outcome else {
            panic!("{}: {outcome:?}", h.label)
        };
        assert_eq!(next.len(), 1, "{}", h.label);
        assert_eq!(next[0].kind, StepKind::CustomerMessage, "{}", h.label);
        assert_eq!(
            next[0].payload.as_ref().unwrap()["template"],
            "customer_refund_requested",
            "{}",
            h.label
        );
    }
}
