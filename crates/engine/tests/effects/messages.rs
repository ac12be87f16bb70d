//! Messages: templates in four languages, the mailbox (one message per idempotency key), assignee notices,
//! and the signed seller webhook.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;
use verdict_domain::{Action, CardNetwork, Locale, Processor, Stage, Status, StepKind};
use verdict_engine::effects::{
    Effects, MessageKind, SellerWebhook, StepOutcome, StepPerformer, Templates, format_amount, verify_webhook_signature,
};
use verdict_engine::{Clock, ManualClock};
use verdict_store::MailboxChannel;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{ctx, dispute, harnesses, install_crypto, t0};

#[test]
fn amounts_are_written_the_way_each_language_writes_them() {
    let d = dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "13.1",
        Stage::Chargeback,
        Status::Won,
    );
    assert_eq!(format_amount(d.amount, Locale::En), "EUR 1,234.50");
    assert_eq!(format_amount(d.amount, Locale::Fr), "1\u{202f}234,50 EUR");
    assert_eq!(format_amount(d.amount, Locale::Es), "1.234,50 EUR");
    assert_eq!(format_amount(d.amount, Locale::It), "1.234,50 EUR");
    let yen = verdict_domain::Money::new(5_000, verdict_domain::Currency::parse("JPY").unwrap()).unwrap();
    assert_eq!(format_amount(yen, Locale::En), "JPY 5,000");
}

#[test]
fn every_template_renders_in_every_language_with_amount_and_reference_and_no_placeholder_left() {
    let templates = Templates::new();
    for status in [Status::Won, Status::Lost, Status::Resolved, Status::Triaged] {
        let mut d = dispute(Processor::Stripe, CardNetwork::Visa, "13.1", Stage::PreDispute, status);
        for locale in Locale::ALL {
            let mut subjects = Vec::new();
            for kind in MessageKind::ALL {
                let message = templates.render(kind, locale, &d).unwrap();
                let text = format!("{}\n{}", message.subject, message.body);
                let amount = format_amount(d.amount, locale);
                assert!(
                    text.contains(&amount),
                    "{kind:?} {locale:?}: no amount {amount} in\n{text}"
                );
                assert!(
                    text.contains("ORD-2026-10417"),
                    "{kind:?} {locale:?}: no reference in\n{text}"
                );
                for leftover in ["{{", "}}", "{%", "%}", "Subject:"] {
                    assert!(
                        !text.contains(leftover),
                        "{kind:?} {locale:?}: {leftover} left in\n{text}"
                    );
                }
                assert!(!message.subject.is_empty() && !message.subject.contains('\n'));
                assert!(
                    !text.contains("jeanne.dupont@"),
                    "the email must not appear in messages"
                );
                subjects.push(message.subject);
            }
            assert_eq!(subjects.len(), MessageKind::ALL.len());
        }
        // Without a name or an order reference, messages still read well.
        d.customer.name = None;
        d.order_reference = None;
        for locale in Locale::ALL {
            let message = templates.render(MessageKind::CustomerRefundIssued, locale, &d).unwrap();
            assert!(message.body.contains("pi_3Pq9Zx"), "{locale:?}");
        }
    }
}

#[test]
fn each_language_has_its_own_text() {
    let templates = Templates::new();
    let d = dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "13.1",
        Stage::PreDispute,
        Status::Resolved,
    );
    let greeting = |locale| {
        templates
            .render(MessageKind::CustomerRefundIssued, locale, &d)
            .unwrap()
            .body
            .lines()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(greeting(Locale::En), "Dear Jeanne Dupont,");
    assert_eq!(greeting(Locale::Fr), "Bonjour Jeanne Dupont,");
    assert_eq!(greeting(Locale::Es), "Hola, Jeanne Dupont:");
    assert_eq!(greeting(Locale::It), "Gentile Jeanne Dupont,");
    let subject = |status, locale| {
        let d = dispute(Processor::Stripe, CardNetwork::Visa, "13.1", Stage::Chargeback, status);
        templates
            .render(MessageKind::SellerOutcome, locale, &d)
            .unwrap()
            .subject
    };
    assert!(subject(Status::Won, Locale::En).starts_with("Dispute won"));
    assert!(subject(Status::Lost, Locale::Fr).starts_with("Litige perdu"));
    assert!(subject(Status::Won, Locale::Es).starts_with("Disputa ganada"));
    assert!(subject(Status::Lost, Locale::It).starts_with("Contestazione persa"));
}

#[tokio::test]
async fn a_retried_customer_message_is_stored_once_in_the_customers_language() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let d = h
            .dispute(
                "mb_retry",
                Locale::It,
                Stage::PreDispute,
                vec![Action::Triage { queue: None }, Action::Resolve],
            )
            .await;
        // The message follows the refund: its key is the one the refund's success enqueues it under.
        let steps = h.engine.store().steps(d.id).await.unwrap();
        let refund = steps.iter().find(|s| s.kind == "refund").unwrap();
        let message_key = verdict_engine::effects::refund_message_key(&refund.idempotency_key);
        let mut context = ctx(StepKind::CustomerMessage, d.clone(), None);
        context.idempotency_key = message_key.clone();
        for attempt in 1..=3 {
            context.attempt = attempt;
            let outcome = effects.perform(&context).await.unwrap();
            assert_eq!(outcome, StepOutcome::done(), "{}", h.label);
            h.clock.advance(Duration::seconds(30));
        }
        let messages = h.engine.store().mailbox_of(d.id).await.unwrap();
        assert_eq!(messages.len(), 1, "{}: {messages:?}", h.label);
        let message = &messages[0];
        assert_eq!(message.channel, MailboxChannel::Customer);
        assert_eq!(message.transport, "mailbox");
        assert_eq!(message.recipient, "marco.bianchi@example.it");
        assert_eq!(message.locale, "it");
        assert_eq!(message.message_id, message_key);
        assert_eq!(message.created_at, t0(), "{}: the first delivery is kept", h.label);
        assert!(message.subject.contains("ORD-mb_retry"), "{}", message.subject);
        assert!(message.body.contains("489,00 EUR"), "{}", message.body);
        assert!(message.body.starts_with("Gentile Marco Bianchi,"), "{}", message.body);
        let printed = format!("{message:?}");
        assert!(
            !printed.contains("marco.bianchi@"),
            "Debug leaks the recipient: {printed}"
        );
        let recent = h.engine.store().mailbox(10).await.unwrap();
        assert_eq!(recent.len(), 1);
    }
}

#[tokio::test]
async fn a_customer_without_email_gets_nothing_and_the_step_is_done() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let mut d = h
            .dispute(
                "mb_noemail",
                Locale::En,
                Stage::Inquiry,
                vec![Action::Triage { queue: None }, Action::Resolve],
            )
            .await;
        d.customer.email = None;
        let outcome = effects
            .perform(&ctx(StepKind::CustomerMessage, d.clone(), None))
            .await
            .unwrap();
        assert_eq!(outcome, StepOutcome::done());
        assert!(
            h.engine.store().mailbox_of(d.id).await.unwrap().is_empty(),
            "{}",
            h.label
        );
    }
}

#[tokio::test]
async fn assignee_and_seller_messages_go_to_the_mailbox_by_default() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let d = h
            .dispute(
                "mb_assign",
                Locale::Fr,
                Stage::Chargeback,
                vec![
                    Action::Triage { queue: None },
                    Action::Assign {
                        assignee: Some("marie".into()),
                    },
                    Action::StartEvidenceGathering,
                    Action::Submit,
                    Action::RecordOutcome { won: true },
                ],
            )
            .await;
        for step in h.engine.store().steps(d.id).await.unwrap() {
            let kind = match step.kind.as_str() {
                "notify_assignee" => StepKind::NotifyAssignee,
                "seller_message" => StepKind::SellerMessage,
                _ => continue,
            };
            let mut context = ctx(kind, d.clone(), None);
            context.idempotency_key = step.idempotency_key.clone();
            effects.perform(&context).await.unwrap();
            effects.perform(&context).await.unwrap();
        }
        let messages = h.engine.store().mailbox_of(d.id).await.unwrap();
        let channels: Vec<_> = messages.iter().map(|m| (m.channel, m.recipient.as_str())).collect();
        assert_eq!(
            channels,
            vec![
                (MailboxChannel::Assignee, "marie"),
                (MailboxChannel::Seller, "seller-ricondizionati-it")
            ],
            "{}",
            h.label
        );
        assert!(messages[0].body.contains("Hello marie,"), "{}", messages[0].body);
        assert!(
            messages[1].subject.starts_with("Dispute won"),
            "{}",
            messages[1].subject
        );
        assert!(
            !messages[1].body.contains("Marco"),
            "seller notices carry no customer data"
        );
    }
}

/// Staff messages: a reminder for a dispute nobody is assigned to goes to its queue, an overdue outcome to the
/// queue's leads.
#[tokio::test]
async fn unassigned_reminders_go_to_the_queue_and_escalations_to_its_leads() {
    for h in harnesses().await {
        let effects = Effects::local(h.engine.store().clone(), h.clock.clone());
        let d = h
            .dispute(
                "dp_staff",
                Locale::Fr,
                Stage::Chargeback,
                vec![Action::Triage {
                    queue: Some(verdict_domain::Queue::Fraud),
                }],
            )
            .await;
        let mut reminder = ctx(StepKind::NotifyAssignee, d.clone(), None);
        reminder.idempotency_key = "staff-reminder".into();
        effects.perform(&reminder).await.unwrap();
        let mut escalation = ctx(StepKind::EscalateToLead, d.clone(), None);
        escalation.idempotency_key = "staff-escalation".into();
        effects.perform(&escalation).await.unwrap();
        effects.perform(&escalation).await.unwrap();

        let messages = h.engine.store().mailbox_of(d.id).await.unwrap();
        let channels: Vec<_> = messages.iter().map(|m| (m.channel, m.recipient.as_str())).collect();
        assert_eq!(
            channels,
            vec![(MailboxChannel::Queue, "fraud"), (MailboxChannel::Lead, "fraud")],
            "{}: one message per key",
            h.label
        );
        assert!(messages[0].body.contains("has no assignee"), "{}", messages[0].body);
        assert!(messages[1].subject.starts_with("Escalation"), "{}", messages[1].subject);
    }
}

#[tokio::test]
async fn the_seller_webhook_is_signed_verifiably_and_carries_the_idempotency_key() {
    install_crypto();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/verdict"))
        .and(header("Idempotency-Key", "key-seller-1"))
        .and(header("Content-Type", "application/json"))
        .and(header_exists("Verdict-Signature"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let clock = Arc::new(ManualClock::new(t0()));
    let webhook = SellerWebhook::new(&format!("{}/hooks/verdict", server.uri()), "whsec_test", clock.clone()).unwrap();
    let d = dispute(
        Processor::Stripe,
        CardNetwork::Visa,
        "13.1",
        Stage::Chargeback,
        Status::Lost,
    );
    let notice = verdict_engine::effects::SellerNotice::for_dispute(&d, "key-seller-1", &Templates::new()).unwrap();
    verdict_engine::effects::SellerChannel::notify(&webhook, &notice)
        .await
        .unwrap();

    let request = &server.received_requests().await.unwrap()[0];
    let signature = request.headers.get("Verdict-Signature").unwrap().to_str().unwrap();
    assert_eq!(
        signature,
        verdict_engine::effects::sign_webhook("whsec_test", t0().timestamp(), &request.body).unwrap()
    );
    assert!(signature.starts_with(&format!("t={},v1=", t0().timestamp())));
    let now = clock.now();
    assert!(verify_webhook_signature(
        "whsec_test",
        signature,
        &request.body,
        now,
        Duration::minutes(5)
    ));
    assert!(!verify_webhook_signature(
        "other",
        signature,
        &request.body,
        now,
        Duration::minutes(5)
    ));
    let mut tampered = request.body.clone();
    tampered[10] ^= 1;
    assert!(!verify_webhook_signature(
        "whsec_test",
        signature,
        &tampered,
        now,
        Duration::minutes(5)
    ));
    assert!(!verify_webhook_signature(
        "whsec_test",
        signature,
        &request.body,
        now + Duration::minutes(6),
        Duration::minutes(5)
    ));

    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["id"], json!("key-seller-1"));
    assert_eq!(body["idempotency_key"], json!("key-seller-1"));
    assert_eq!(body["type"], json!("dispute.lost"));
    assert_eq!(
        body["data"]["amount"],
        json!({"minor_units": 123450, "currency": "EUR"})
    );
    assert_eq!(body["data"]["order_reference"], json!("ORD-2026-10417"));
    let text = String::from_utf8_lossy(&request.body);
    assert!(!text.contains("Jeanne") && !text.contains("jeanne.dupont@"), "{text}");
}

#[tokio::test]
async fn a_failing_seller_webhook_is_retried_on_5xx_and_dead_lettered_on_4xx() {
    install_crypto();
    for (status, transient) in [(503, true), (410, false)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let clock = Arc::new(ManualClock::new(t0()));
        let webhook = SellerWebhook::new(&server.uri(), "whsec_test", clock).unwrap();
        let d = dispute(
            Processor::Stripe,
            CardNetwork::Visa,
            "13.1",
            Stage::Chargeback,
            Status::Won,
        );
        let notice = verdict_engine::effects::SellerNotice::for_dispute(&d, "k", &Templates::new()).unwrap();
        let err = verdict_engine::effects::SellerChannel::notify(&webhook, &notice)
            .await
            .unwrap_err();
        assert_eq!(err.is_transient(), transient, "{status}: {err}");
    }
}

#[tokio::test]
async fn a_configured_seller_webhook_is_posted_once_and_logged_in_the_mailbox() {
    for h in harnesses().await {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hooks"))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;
        let mut config = verdict_engine::effects::EffectsConfig::default();
        config.seller_webhook.url = Some(format!("{}/hooks", server.uri()));
        config.seller_webhook.secret = Some("whsec_cfg".into());
        let effects = Effects::from_config(&config, h.engine.store().clone(), h.clock.clone()).unwrap();
        let d = h
            .dispute(
                "mb_webhook",
                Locale::Es,
                Stage::Chargeback,
                vec![
                    Action::Triage { queue: None },
                    Action::StartEvidenceGathering,
                    Action::Submit,
                    Action::RecordOutcome { won: false },
                ],
            )
            .await;
        let steps = h.engine.store().steps(d.id).await.unwrap();
        let step = steps.iter().find(|s| s.kind == "seller_message").unwrap();
        let mut context = ctx(StepKind::SellerMessage, d.clone(), None);
        context.idempotency_key = step.idempotency_key.clone();
        effects.perform(&context).await.unwrap();
        effects.perform(&context).await.unwrap();
        let messages = h.engine.store().mailbox_of(d.id).await.unwrap();
        assert_eq!(messages.len(), 1, "{}", h.label);
        assert_eq!(messages[0].transport, "webhook");
        assert_eq!(messages[0].channel, MailboxChannel::Seller);
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{}", h.label);
    }
}
