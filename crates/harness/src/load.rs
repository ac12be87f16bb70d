//! The load: signed webhooks of every processor (redelivered until acknowledged, and now and then after),
//! PayPal exports through `verdict import`, and analysts acting over GraphQL. Everything acknowledged is
//! recorded for the checks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng as _;
use serde_json::{Value, json};

use crate::setup::{
    ADYEN_KEY, ADYEN_PASSWORD, ADYEN_USER, ALERT_SECRET, BT_PRIVATE, BT_PUBLIC, PAYPAL_CERT_URL, PAYPAL_WEBHOOK_ID,
    STRIPE_SECRET,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Stripe,
    Adyen,
    Braintree,
    Alerts,
    Paypal,
}

/// One notification to deliver: the dispute ids it concerns (an Adyen batch concerns several).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub source: Source,
    pub disputes: Vec<String>,
    /// Unsigned body: JSON, Braintree XML, or an Adyen batch (items signed when sent).
    pub body: String,
    pub release_at: Duration,
    pub acked: bool,
    pub attempts: u32,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The notifications of a run: `per` disputes per processor, released over `spread`.
/// Stripe disputes alternate between inquiries (analysts resolve them: a refund) and chargebacks due
/// `due_in` from now (the act-by timer accepts them: an acceptance at the processor).
pub fn plan(tag: &str, per: usize, spread: Duration, due_in: chrono::Duration) -> Vec<Delivery> {
    let now = Utc::now();
    let mut out = Vec::new();
    let at = |i: usize| spread.mul_f64(i as f64 / per.max(1) as f64);
    for i in 0..per {
        // Stripe: created, and for every third a closing event as well.
        let inquiry = i % 2 == 0;
        let id = format!("dp_{tag}_{i}");
        let due = now + due_in + chrono::Duration::seconds((i % 7) as i64 * 3);
        let body = json!({
            "id": format!("evt_{tag}_{i}_created"), "object": "event", "api_version": "2020-08-27",
            "created": now.timestamp(), "type": "charge.dispute.created", "livemode": false,
            "data": {"object": {
                "id": id, "object": "dispute", "amount": 4890 + i, "charge": format!("ch_{tag}_{i}"),
                "payment_intent": format!("pi_{tag}_{i}"), "created": now.timestamp(), "currency": "eur",
                "evidence_details": {"due_by": due.timestamp(), "has_evidence": false, "past_due": false, "submission_count": 0},
                "is_charge_refundable": true, "livemode": false, "metadata": {},
                "reason": if inquiry { "product_not_received" } else { "fraudulent" },
                "status": if inquiry { "warning_needs_response" } else { "needs_response" }
            }}
        });
        out.push(Delivery {
            source: Source::Stripe,
            disputes: vec![id.clone()],
            body: body.to_string(),
            release_at: at(i),
            acked: false,
            attempts: 0,
        });
        if i % 3 == 1 {
            let mut closed = body.clone();
            closed["id"] = json!(format!("evt_{tag}_{i}_updated"));
            closed["type"] = json!("charge.dispute.updated");
            closed["created"] = json!(now.timestamp() + 1);
            closed["data"]["object"]["status"] = json!("under_review");
            out.push(Delivery {
                source: Source::Stripe,
                disputes: vec![id],
                body: closed.to_string(),
                release_at: at(i) + Duration::from_millis(700),
                acked: false,
                attempts: 0,
            });
        }
        // Braintree: one opening per dispute.
        let bt = format!("bt{tag}x{i}");
        out.push(Delivery {
            source: Source::Braintree,
            disputes: vec![bt.clone()],
            body: braintree_xml(&bt, "dispute_opened", now, now + due_in + chrono::Duration::days(2)),
            release_at: at(i),
            acked: false,
            attempts: 0,
        });
        // Alerts: a pre-dispute alert on a Stripe payment.
        let alert = format!("cdrn_{tag}_{i}");
        out.push(Delivery {
            source: Source::Alerts,
            disputes: vec![alert.clone()],
            body: json!({"alert_id": alert, "provider": "verifi_cdrn", "type": "alert.created",
                         "occurred_at": rfc3339(now), "processor": "stripe",
                         "payment_reference": format!("pi_{tag}_alert_{i}"), "order_reference": format!("order-{i}"),
                         "amount": {"minor_units": 2500 + i, "currency": "USD"}, "card_network": "visa",
                         "reason_code": "10.4", "respond_by": rfc3339(now + chrono::Duration::days(2))})
            .to_string(),
            release_at: at(i),
            acked: false,
            attempts: 0,
        });
        // PayPal: an inquiry, signed with the test signer.
        let pp = format!("PP-{tag}-W{i:04}");
        out.push(Delivery {
            source: Source::Paypal,
            disputes: vec![pp.clone()],
            body: paypal_event(tag, &pp, &format!("WH-{tag}-W{i}"), now),
            release_at: at(i),
            acked: false,
            attempts: 0,
        });
    }
    // Adyen: batches of up to four items.
    for (batch, chunk) in (0..per).collect::<Vec<_>>().chunks(4).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"NotificationRequestItem": {
                    "additionalData": {"chargebackReasonCode": "10.4", "chargebackSchemeCode": "visa",
                                       "defensePeriodEndsAt": rfc3339(now + due_in)},
                    "amount": {"currency": "EUR", "value": 1000 + i},
                    "eventCode": "NOTIFICATION_OF_CHARGEBACK", "eventDate": rfc3339(now),
                    "merchantAccountCode": "HarnessMerchant", "merchantReference": format!("ORD{tag}{i}"),
                    "originalReference": format!("PAY{}{i}", tag.to_uppercase()),
                    "paymentMethod": "visa", "pspReference": format!("DS{}{i}", tag.to_uppercase()),
                    "reason": "fraud", "success": "true"}})
            })
            .collect();
        out.push(Delivery {
            source: Source::Adyen,
            disputes: chunk.iter().map(|i| format!("DS{}{i}", tag.to_uppercase())).collect(),
            body: json!({"live": "false", "notificationItems": items}).to_string(),
            release_at: at(batch * 4),
            acked: false,
            attempts: 0,
        });
    }
    out.sort_by_key(|d| d.release_at);
    out
}

fn braintree_xml(id: &str, kind: &str, now: DateTime<Utc>, reply_by: DateTime<Utc>) -> String {
    format!(
        "<notification><timestamp type=\"datetime\">{ts}</timestamp><kind>{kind}</kind><subject><dispute>\
         <id>{id}</id><amount>12.00</amount><amount-disputed>12.00</amount-disputed><case-number>CASE-{id}</case-number>\
         <created-at type=\"datetime\">{ts}</created-at><currency-iso-code>USD</currency-iso-code><kind>chargeback</kind>\
         <merchant-account-id>harness</merchant-account-id><reason>fraud</reason><reason-code>10.4</reason-code>\
         <received-date type=\"date\">{day}</received-date><reference-number>REF-{id}</reference-number>\
         <reply-by-date type=\"date\">{reply}</reply-by-date><status>open</status><updated-at type=\"datetime\">{ts}</updated-at>\
         <transaction><id>tx{id}</id><amount>12.00</amount><created-at>{ts}</created-at><order-id>order-{id}</order-id>\
         <payment-instrument-subtype>Visa</payment-instrument-subtype></transaction><date-opened type=\"date\">{day}</date-opened>\
         </dispute></subject></notification>",
        ts = rfc3339(now),
        day = now.format("%Y-%m-%d"),
        reply = reply_by.format("%Y-%m-%d"),
    )
}

/// The marketplace order every test order copies (docs/marketplace-api.md), with a customer email.
const ORDER_TEMPLATE: &str = include_str!("../../../tests/fixtures/orders/order-a17.json");

/// Orders (one OrderFacts JSON a line, for `verdict import orders`) behind the Stripe inquiries and the alerts
/// of `plan(tag, per, ..)`: their disputes are linked to them and take their customer, whose email the
/// customer messages (after a refund) are sent to.
pub fn orders(tag: &str, per: usize) -> anyhow::Result<String> {
    let template: Value = serde_json::from_str(ORDER_TEMPLATE)?;
    let mut lines = Vec::new();
    for i in 0..per {
        let mut refs = vec![format!("pi_{tag}_alert_{i}")];
        if i % 2 == 0 {
            refs.push(format!("pi_{tag}_{i}"));
        }
        let mut order = template.clone();
        order["order_reference"] = json!(format!("order-{tag}-{i}"));
        order["payment_references"] = json!(refs);
        order["customer"]["account_id"] = json!(format!("cust-{tag}-{i}"));
        order["customer"]["email"] = json!(format!("customer-{i}@{tag}.example"));
        // The seller is the template's: a refunded dispute asks it to pay back (a seller recovery), which waits,
        // dead-lettered, for the payout service the harness does not run.
        order["prior_transactions"] = json!([]);
        lines.push(order.to_string());
    }
    Ok(lines.join("\n") + "\n")
}

/// Imports `orders(tag, per)` through `verdict import orders`, before the notifications arrive.
pub fn import_orders(setup: &crate::setup::Setup, tag: &str, per: usize) -> anyhow::Result<()> {
    let file = setup.dir.join(format!("orders-{tag}.jsonl"));
    std::fs::write(&file, orders(tag, per)?)?;
    setup.run(&["import", "orders", &file.display().to_string()])?;
    Ok(())
}

/// A PayPal `CUSTOMER.DISPUTE.CREATED` event for an inquiry.
/// One round of the soak: `plan(tag, 1, ..)`, with every dispute brought to an end after `close_after`
/// (Braintree won, PayPal resolved for the seller, the alert refunded at the source), and the Stripe and
/// Adyen ones due in `due_in` so the deadline policy ends them. Disputes then close as fast as they open, so
/// the queue tables can reach a steady state within a soak.
pub fn closing_round(tag: &str, due_in: chrono::Duration, close_after: Duration) -> Vec<Delivery> {
    let mut out = plan(tag, 1, Duration::ZERO, due_in);
    let later = Utc::now() + chrono::Duration::from_std(close_after).unwrap_or_default();
    let mut closers = Vec::new();
    for delivery in &out {
        let Some(id) = delivery.disputes.first().cloned() else {
            continue;
        };
        let body = match delivery.source {
            Source::Braintree => braintree_xml(&id, "dispute_won", later, later),
            Source::Paypal => paypal_resolved(&id, &format!("WH-{tag}-R"), later),
            Source::Alerts => {
                let Ok(mut alert) = serde_json::from_str::<Value>(&delivery.body) else {
                    continue;
                };
                alert["type"] = json!("alert.resolved");
                alert["outcome"] = json!("refunded");
                alert["occurred_at"] = json!(rfc3339(later));
                alert.to_string()
            }
            Source::Stripe | Source::Adyen => continue,
        };
        closers.push(Delivery {
            source: delivery.source,
            disputes: vec![id],
            body,
            release_at: close_after,
            acked: false,
            attempts: 0,
        });
    }
    out.extend(closers);
    out
}

fn paypal_resolved(id: &str, event_id: &str, at: DateTime<Utc>) -> String {
    json!({"id": event_id, "create_time": rfc3339(at), "resource_type": "dispute",
           "event_type": "CUSTOMER.DISPUTE.RESOLVED", "event_version": "1.0",
           "resource": {"dispute_id": id, "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
                        "status": "RESOLVED", "dispute_life_cycle_stage": "INQUIRY", "dispute_channel": "INTERNAL",
                        "create_time": rfc3339(at), "update_time": rfc3339(at),
                        "dispute_outcome": {"outcome_code": "RESOLVED_SELLER_FAVOUR"},
                        "dispute_amount": {"currency_code": "USD", "value": "3.00"}}})
    .to_string()
}

fn paypal_event(tag: &str, id: &str, event_id: &str, now: DateTime<Utc>) -> String {
    json!({"id": event_id, "create_time": rfc3339(now), "resource_type": "dispute",
           "event_type": "CUSTOMER.DISPUTE.CREATED", "event_version": "1.0",
           "resource": {"dispute_id": id, "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
                        "status": "OPEN", "dispute_life_cycle_stage": "INQUIRY", "dispute_channel": "INTERNAL",
                        "create_time": rfc3339(now), "update_time": rfc3339(now),
                        "dispute_amount": {"currency_code": "USD", "value": "3.00"},
                        "disputed_transactions": [{"seller_transaction_id": format!("TX{tag}{id}")}]}})
    .to_string()
}

/// A PayPal export (one event per line) for `verdict import`, the operator's path for PayPal notifications.
pub fn paypal_export(tag: &str, from: usize, n: usize) -> (String, Vec<String>) {
    let now = Utc::now();
    let mut lines = Vec::new();
    let mut ids = Vec::new();
    for i in from..from + n {
        let id = format!("PP-{tag}-{i:06}");
        lines.push(paypal_event(tag, &id, &format!("WH-{tag}-{i}"), now));
        ids.push(id);
    }
    (lines.join("\n") + "\n", ids)
}

/// The test signer's key (tests/fixtures/processors/paypal/verdict-test-signing): PayPal signs with the key
/// of a certificate only it holds, so Verdict is given this one's certificate instead (setup.rs).
const PAYPAL_TEST_KEY: &[u8] =
    include_bytes!("../../../tests/fixtures/processors/paypal/verdict-test-signing/test-key.der");

/// Headers of a PayPal notification signed as PayPal signs: SHA256withRSA over
/// `transmission id|transmission time|webhook id|crc32(body)`.
fn paypal_headers(body: &[u8]) -> Vec<(String, String)> {
    let transmission_id = uuid::Uuid::now_v7().to_string();
    let transmission_time = rfc3339(Utc::now());
    let message = format!(
        "{transmission_id}|{transmission_time}|{PAYPAL_WEBHOOK_ID}|{}",
        crc32fast::hash(body)
    );
    let signature = ring::signature::RsaKeyPair::from_der(PAYPAL_TEST_KEY)
        .ok()
        .and_then(|key| {
            let mut signature = vec![0; key.public().modulus_len()];
            key.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .ok()
            .map(|()| signature)
        })
        .unwrap_or_default();
    vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("paypal-transmission-id".to_owned(), transmission_id),
        ("paypal-transmission-time".to_owned(), transmission_time),
        ("paypal-auth-algo".to_owned(), "SHA256withRSA".to_owned()),
        ("paypal-cert-url".to_owned(), PAYPAL_CERT_URL.to_owned()),
        (
            "paypal-transmission-sig".to_owned(),
            base64::engine::general_purpose::STANDARD.encode(signature),
        ),
    ]
}

/// The request a delivery makes: path, headers, body (signed now, as a processor signs each attempt).
pub fn request(d: &Delivery) -> (String, Vec<(String, String)>, Vec<u8>) {
    let now = Utc::now().timestamp();
    let json_headers = |name: &str, sig: String| {
        vec![
            (name.to_owned(), sig),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]
    };
    match d.source {
        Source::Stripe => {
            let sig = verdict_ingest::sign_stripe(d.body.as_bytes(), STRIPE_SECRET, now).unwrap_or_default();
            (
                "/webhooks/stripe".into(),
                json_headers("stripe-signature", sig),
                d.body.clone().into_bytes(),
            )
        }
        Source::Alerts => {
            let sig = verdict_ingest::sign_alert(d.body.as_bytes(), ALERT_SECRET, now).unwrap_or_default();
            (
                "/webhooks/alerts".into(),
                json_headers("verdict-signature", sig),
                d.body.clone().into_bytes(),
            )
        }
        Source::Adyen => {
            let mut value: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
            if let Some(items) = value["notificationItems"].as_array_mut() {
                for item in items {
                    let inner = &mut item["NotificationRequestItem"];
                    let sig = verdict_ingest::adyen_item_signature(inner, ADYEN_KEY).unwrap_or_default();
                    inner["additionalData"]["hmacSignature"] = Value::String(sig);
                }
            }
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ADYEN_USER}:{ADYEN_PASSWORD}"));
            let headers = vec![
                ("authorization".to_owned(), format!("Basic {auth}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ];
            ("/webhooks/adyen".into(), headers, value.to_string().into_bytes())
        }
        Source::Paypal => (
            "/webhooks/paypal".into(),
            paypal_headers(d.body.as_bytes()),
            d.body.clone().into_bytes(),
        ),
        Source::Braintree => {
            let payload = verdict_ingest::braintree_payload(&d.body);
            let sig = verdict_ingest::sign_braintree(&payload, BT_PUBLIC, BT_PRIVATE).unwrap_or_default();
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("bt_signature", &sig)
                .append_pair("bt_payload", &payload)
                .finish();
            let headers = vec![(
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            )];
            ("/webhooks/braintree".into(), headers, form.into_bytes())
        }
    }
}

/// What a GraphQL command came to, as the analyst saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with data: the command was applied.
    Acked,
    /// A GraphQL error code: refused, nothing changed.
    Refused,
    /// No answer (the server died mid-request): applied or not.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct GraphqlCommand {
    pub token: String,
    pub dispute: String,
    pub outcome: Outcome,
}

/// The record of a run's load.
#[derive(Default)]
pub struct Ledger {
    pub deliveries: Mutex<Vec<Delivery>>,
    pub commands: Mutex<Vec<GraphqlCommand>>,
    /// PayPal disputes imported (the import exited 0).
    pub paypal: Mutex<Vec<String>>,
    /// Webhook answers: (2xx, 5xx, refused connections or no answer).
    pub answers: Mutex<(u64, u64, u64)>,
    /// Latencies of acknowledged webhooks and GraphQL commands, for the soak.
    pub latencies: Mutex<Vec<(Instant, &'static str, Duration)>>,
}

impl Ledger {
    pub fn unacked(&self) -> usize {
        lock(&self.deliveries).iter().filter(|d| !d.acked).count()
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Delivers the ledger's notifications to `base` until `stop` and every one is acknowledged.
/// Each attempt goes to one of `bases` at random (replicas behind a load balancer).
pub async fn deliver(ledger: Arc<Ledger>, bases: Vec<String>, started: Instant, stop: Arc<AtomicBool>, redeliver: f64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let queue: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..lock(&ledger.deliveries).len()).collect()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (ledger, bases, queue, stop, http) =
            (ledger.clone(), bases.clone(), queue.clone(), stop.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = lock(&queue).pop_front();
                let Some(index) = next else {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let delivery = lock(&ledger.deliveries)[index].clone();
                if delivery.acked && rand::rng().random_bool(1.0 - redeliver) {
                    continue;
                }
                if started.elapsed() < delivery.release_at {
                    lock(&queue).push_back(index);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let (path, headers, body) = request(&delivery);
                let base = &bases[rand::rng().random_range(0..bases.len())];
                let mut req = http.post(format!("{base}{path}")).body(body);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let sent = Instant::now();
                let answer = req.send().await;
                let ok = matches!(&answer, Ok(r) if r.status().is_success());
                {
                    let mut answers = lock(&ledger.answers);
                    match &answer {
                        Ok(r) if r.status().is_success() => answers.0 += 1,
                        Ok(r) if r.status().is_server_error() => answers.1 += 1,
                        _ => answers.2 += 1,
                    }
                }
                if let Ok(r) = &answer
                    && r.status().is_client_error()
                {
                    eprintln!("harness: {path} refused with {} (a harness bug?)", r.status());
                }
                {
                    let mut all = lock(&ledger.deliveries);
                    all[index].attempts += 1;
                    if ok {
                        all[index].acked = true;
                    }
                }
                if ok {
                    lock(&ledger.latencies).push((sent, "webhook", sent.elapsed()));
                    // Processors redeliver now and then even what was acknowledged.
                    if rand::rng().random_bool(redeliver) {
                        lock(&queue).push_back(index);
                    }
                } else {
                    lock(&queue).push_back(index);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if stop.load(Ordering::SeqCst) && lock(&ledger.deliveries).iter().all(|d| d.acked) {
                    return;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Sends a GraphQL request; returns the outcome and the `data`.
pub async fn graphql(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> (Outcome, Value) {
    let answer = http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await;
    let Ok(response) = answer else {
        return (Outcome::Unknown, Value::Null);
    };
    if response.status().is_server_error() {
        return (Outcome::Unknown, Value::Null);
    }
    let Ok(body) = response.json::<Value>().await else {
        return (Outcome::Unknown, Value::Null);
    };
    if body.get("errors").is_some_and(|e| !e.is_null()) {
        let internal = body["errors"].as_array().is_some_and(|es| {
            es.iter()
                .any(|e| matches!(e["extensions"]["code"].as_str(), Some("INTERNAL" | "TIMEOUT")))
        });
        return (if internal { Outcome::Unknown } else { Outcome::Refused }, body);
    }
    // A mutation refused with user errors in its payload changed nothing, as one refused with an error.
    let refused = body["data"].as_object().is_some_and(|fields| {
        fields
            .values()
            .any(|p| p["userErrors"].as_array().is_some_and(|e| !e.is_empty()))
    });
    if refused {
        return (Outcome::Refused, body);
    }
    (Outcome::Acked, body["data"].clone())
}

/// Analysts: triage what is new, resolve inquiries and alerts (by hand, or with a refund at the processor and
/// a message to the customer), refund some without resolving, accept chargebacks (an acceptance at the
/// processor), add notes; each command carries a unique token in its reason or note (and a refund's request id).
pub async fn analysts(ledger: Arc<Ledger>, bases: Vec<String>, token: String, stop: Arc<AtomicBool>, pause: Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(pause).await;
        let base = bases[rand::rng().random_range(0..bases.len())].clone();
        let (outcome, data) = graphql(
            &http,
            &base,
            &token,
            "{ disputes(first: 50, filter: {status: [NOTIFIED, TRIAGED]}) { edges { node { id status stage version processor assignee } } } }",
            json!({}),
        )
        .await;
        if outcome != Outcome::Acked {
            continue;
        }
        let nodes: Vec<Value> = data["disputes"]["edges"]
            .as_array()
            .map(|es| es.iter().map(|e| e["node"].clone()).collect())
            .unwrap_or_default();
        if nodes.is_empty() {
            continue;
        }
        let node = &nodes[rand::rng().random_range(0..nodes.len())];
        let id = node["id"].as_str().unwrap_or_default().to_owned();
        let version = node["version"].as_i64().unwrap_or(0);
        n += 1;
        let command_token = format!("harness-cmd-{}-{n}", uuid::Uuid::now_v7().simple());
        // Stripe and Adyen chargebacks are left to their act-by timers (an acceptance at the fake processor);
        // the rest are triaged, assigned (a notice to the assignee), resolved or accepted by hand.
        let by_timer = matches!(node["processor"].as_str(), Some("STRIPE" | "ADYEN"))
            && !matches!(node["stage"].as_str(), Some("INQUIRY" | "PRE_DISPUTE"));
        // Inquiries and alerts at Stripe may be refunded (the fake records the refund); PayPal and Braintree
        // ones have no processor here to refund them.
        let refundable = node["processor"].as_str() == Some("STRIPE")
            && matches!(node["stage"].as_str(), Some("INQUIRY" | "PRE_DISPUTE"));
        let roll: f64 = rand::rng().random();
        let (query, variables) = if roll < 0.25 {
            (
                "mutation($i: AddNoteInput!) { addNote(input: $i) { dispute { version } userErrors { code message } } }",
                json!({"i": {"id": id, "note": command_token}}),
            )
        } else if roll < 0.45 && node["assignee"].is_null() {
            (
                "mutation($i: AssignDisputeInput!) { assignDispute(input: $i) { dispute { version } userErrors { code message } } }",
                json!({"i": {"id": id, "assignee": format!("analyst-{}", n % 3), "reason": command_token,
                             "expectedAssignee": null, "expectedVersion": version}}),
            )
        } else if roll < 0.75 && refundable {
            // A refund at the fake Stripe, then the customer's message; the token is the request id too.
            let input = json!({"i": {"id": id, "expectedVersion": version, "requestId": command_token,
                                     "reason": command_token}});
            if roll < 0.6 {
                (
                    "mutation($i: ResolveWithRefundInput!) { resolveWithRefund(input: $i) { dispute { version } userErrors { code message } } }",
                    input,
                )
            } else {
                (
                    "mutation($i: RefundInput!) { refund(input: $i) { dispute { version } userErrors { code message } } }",
                    input,
                )
            }
        } else {
            let to = match (node["status"].as_str(), node["stage"].as_str()) {
                (Some("NOTIFIED"), _) => "TRIAGED",
                (_, Some("INQUIRY" | "PRE_DISPUTE")) => "RESOLVED",
                _ if by_timer => continue,
                _ => "ACCEPTED",
            };
            (
                "mutation($i: TransitionDisputeInput!) { transitionDispute(input: $i) { dispute { version } userErrors { code message } } }",
                json!({"i": {"id": id, "to": to, "reason": command_token, "expectedVersion": version}}),
            )
        };
        let sent = Instant::now();
        let (outcome, _) = graphql(&http, &base, &token, query, variables).await;
        if outcome == Outcome::Acked {
            lock(&ledger.latencies).push((sent, "graphql", sent.elapsed()));
        }
        lock(&ledger.commands).push(GraphqlCommand {
            token: command_token,
            dispute: id,
            outcome,
        });
    }
}
