//! Evidence end to end: uploads (sniffed, bounded, stored by content), items added and removed as events,
//! completeness for the dispute's claim, drawing from the order facts, and Compelling Evidence 3.0.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use verdict_domain::facts::{
    Address, CheckoutPolicies, CustomerFacts, MessageAuthor, OrderFacts, OrderLine, OrderMessage, PaymentChecks,
    PriorTransaction, SellerFacts, Shipment,
};
use verdict_domain::{Currency, Locale, Money};
use verdict_facts::{FactsError, MarketplaceFacts, OrderLookup};

use crate::app::{OPEN, TestApp, open_input, test_databases};

const PDF: &[u8] = include_bytes!("../fixtures/evidence/note.pdf");
const PNG: &[u8] = include_bytes!("../fixtures/evidence/pixel.png");

const ADD: &str = "mutation($input: AddEvidenceInput!) { addEvidence(input: $input) { \
    dispute { version } items { id kind text source file { fileId sha256 sizeBytes contentType fileName downloadPath } } userErrors { code message } } }";
const REMOVE: &str = "mutation($input: RemoveEvidenceInput!) { removeEvidence(input: $input) { dispute { version } userErrors { code message } } }";
const DRAW: &str = "mutation($input: DrawEvidenceFromFactsInput!) { drawEvidenceFromFacts(input: $input) { \
    dispute { version } items { id kind text source } userErrors { code message } } }";
const EVIDENCE: &str = "query($id: ID!) { dispute(id: $id) { version claim \
    evidence { id kind text source addedBy file { fileId contentType fileName } } \
    evidenceCompleteness { claim score required missing { kind required expectation } } \
    compellingEvidence { eligible program reason qualifyingTransactions { paymentReference daysBefore shared amount { minorUnits } } } \
    events { type details } } }";

/// The marketplace as a test double: one order, found by its order or payment reference.
pub(crate) struct OneOrder(pub(crate) OrderFacts);

#[async_trait::async_trait]
impl MarketplaceFacts for OneOrder {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn find_order(&self, lookup: &OrderLookup) -> Result<Option<OrderFacts>, FactsError> {
        let order = &self.0;
        let found = lookup.order_reference.as_deref() == Some(order.order_reference.as_str())
            || lookup
                .payment_references
                .iter()
                .any(|r| order.payment_references.contains(r));
        Ok(found.then(|| order.clone()))
    }
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
}

fn home() -> Address {
    Address {
        lines: vec!["12 rue des Lilas".into()],
        postal_code: "69003".into(),
        city: "Lyon".into(),
        country: "FR".into(),
    }
}

/// The order behind `open_input`'s dispute (payment `pi_3Nx`), with two priors that qualify for CE 3.0, one
/// too recent, and one disputed.
pub(crate) fn order() -> OrderFacts {
    let placed = Utc::now() - Duration::days(20);
    let prior = |reference: &str, days: i64, ip: &str, disputed: bool| PriorTransaction {
        payment_reference: reference.into(),
        paid_at: placed - Duration::days(days),
        amount: eur(12_900),
        ip_address: Some(ip.into()),
        device_id: None,
        shipping_address: Some(home()),
        account_id: Some("cust-881".into()),
        disputed,
    };
    OrderFacts {
        order_reference: "ORD-731204".into(),
        payment_references: vec!["pi_3Nx".into()],
        placed_at: placed,
        total: eur(48_900),
        seller: SellerFacts {
            seller_id: "seller-techrenew-fr".into(),
            name: "TechRenew".into(),
            email: None,
            ships_itself: true,
        },
        lines: vec![OrderLine {
            device_model: "iPhone 13 128 GB Midnight".into(),
            grade: "excellent".into(),
            imei_or_serial: Some("356789104512345".into()),
            price: eur(48_900),
            description: Some("Excellent condition, battery 90%+".into()),
            grade_report: Some("Battery 93%, screen flawless".into()),
        }],
        shipment: Some(Shipment {
            carrier: "Colissimo".into(),
            tracking_number: "6A19283746".into(),
            shipped_at: Some(placed + Duration::days(1)),
            delivered_at: Some(placed + Duration::days(3)),
            address: home(),
            proof_of_delivery: Some("signature scan".into()),
            signed_by: Some("J. Dupont".into()),
        }),
        customer: CustomerFacts {
            account_id: "cust-881".into(),
            name: "Jeanne Dupont".into(),
            email: "jeanne.dupont@example.fr".into(),
            locale: Locale::Fr,
            account_created_at: placed - Duration::days(600),
            previous_orders: 4,
            previous_disputes: 0,
        },
        payment_checks: PaymentChecks {
            avs_result: Some("Y".into()),
            cvv_result: Some("M".into()),
            three_d_secure: None,
            ip_address: Some("203.0.113.24".into()),
            device_id: Some("dev-7f3a9c".into()),
        },
        prior_transactions: vec![
            prior("ch_prior_a", 300, "203.0.113.24", false),
            prior("ch_prior_b", 150, "203.0.113.24", false),
            prior("ch_prior_recent", 60, "203.0.113.24", false),
            prior("ch_prior_disputed", 200, "203.0.113.24", true),
        ],
        messages: vec![OrderMessage {
            sent_at: placed + Duration::days(4),
            author: MessageAuthor::Customer,
            locale: Locale::Fr,
            body: "Reçu, merci !".into(),
        }],
        policies: CheckoutPolicies {
            refund_policy: Some("Returns within 30 days".into()),
            warranty_policy: Some("12-month warranty".into()),
            terms_accepted_at: Some(placed),
        },
        cancellation: None,
        refunds: vec![],
    }
}

async fn open_with(app: &TestApp, pid: &str, reason_code: &str) -> (String, i64) {
    let mut input = open_input(pid);
    input["reasonCode"] = json!(reason_code);
    let answer = app.gql(&app.analyst, OPEN, json!({ "input": input })).await;
    let opened = &answer.data()["openDispute"]["dispute"];
    (
        opened["id"].as_str().unwrap().to_owned(),
        opened["version"].as_i64().unwrap(),
    )
}

async fn view(app: &TestApp, token: &str, id: &str) -> Value {
    app.gql(token, EVIDENCE, json!({ "id": id })).await.data()["dispute"].clone()
}

struct Upload {
    status: u16,
    body: Value,
}

async fn upload(app: &TestApp, token: Option<&str>, id: &str, name: &str, bytes: Vec<u8>) -> Upload {
    let mut request = app
        .client
        .post(app.url(&format!("/disputes/{id}/evidence-files")))
        .header("x-file-name", name)
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Upload { status, body }
}

/// Stored files under the app's evidence folder (temporary `.part` files included).
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(shards) = std::fs::read_dir(&app.evidence_dir) else {
        return found;
    };
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
            found.push(file.path());
        }
    }
    found
}

async fn add(
    app: &TestApp,
    id: &str,
    version: i64,
    kind: &str,
    text: Option<&str>,
    file_id: Option<&str>,
) -> crate::app::Answer {
    let input = json!({ "id": id, "expectedVersion": version, "kind": kind, "text": text, "fileId": file_id });
    app.gql(&app.analyst, ADD, json!({ "input": input })).await
}

#[tokio::test]
async fn pdf_and_png_uploads_are_stored_by_content_and_served_to_analysts_only() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let (id, version) = open_with(&app, "dp_evidence_upload", "13.1").await;

        let pdf = upload(&app, Some(&app.analyst), &id, "..%2Fpreuve-livraison.pdf", PDF.to_vec()).await;
        assert_eq!(pdf.status, 201, "{}: {}", app.label, pdf.body);
        assert_eq!(pdf.body["contentType"], "application/pdf");
        assert_eq!(pdf.body["sizeBytes"], PDF.len());
        assert_eq!(pdf.body["fileName"], "preuve-livraison.pdf", "the path is never kept");
        let png = upload(&app, Some(&app.analyst), &id, "photo.png", PNG.to_vec()).await;
        assert_eq!(png.status, 201, "{}", png.body);
        assert_eq!(png.body["contentType"], "image/png");
        // The same bytes again: a second upload record, one stored file.
        let again = upload(&app, Some(&app.analyst), &id, "copy.pdf", PDF.to_vec()).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.body["sha256"], pdf.body["sha256"]);
        assert_eq!(stored_files(&app).len(), 2, "{}", app.label);
        let sha = pdf.body["sha256"].as_str().unwrap();
        assert!(app.evidence_dir.join(&sha[..2]).join(sha).is_file());

        // What is not a PDF, PNG or JPEG is refused whatever its name, and nothing is stored.
        for (name, bytes) in [
            ("invoice.pdf", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00".to_vec()),
            (
                "proof.png",
                b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec(),
            ),
        ] {
            let refused = upload(&app, Some(&app.analyst), &id, name, bytes).await;
            assert_eq!(refused.status, 415, "{}: {}", name, refused.body);
            assert_eq!(
                refused.body["errors"][0]["extensions"]["code"],
                "UNSUPPORTED_MEDIA_TYPE"
            );
            assert!(
                refused.body["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("PDF, PNG and JPEG")
            );
        }
        assert_eq!(stored_files(&app).len(), 2);

        // Only analysts and above upload or download; nobody without a key.
        assert_eq!(upload(&app, None, &id, "x.pdf", PDF.to_vec()).await.status, 401);
        assert_eq!(
            upload(&app, Some(&app.viewer), &id, "x.pdf", PDF.to_vec()).await.status,
            403
        );
        let file_id = pdf.body["fileId"].as_str().unwrap();
        let path = format!("/disputes/{id}/evidence-files/{file_id}");
        let download = app
            .client
            .get(app.url(&path))
            .bearer_auth(&app.analyst)
            .send()
            .await
            .unwrap();
        assert_eq!(download.status(), 200);
        assert_eq!(download.headers()["content-type"], "application/pdf");
        assert_eq!(download.headers()["x-content-type-options"], "nosniff");
        assert_eq!(download.bytes().await.unwrap().as_ref(), PDF);
        let as_viewer = app
            .client
            .get(app.url(&path))
            .bearer_auth(&app.viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(as_viewer.status(), 403);
        let anonymous = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let (other, _) = open_with(&app, "dp_evidence_upload_other", "13.1").await;
        let elsewhere = format!("/disputes/{other}/evidence-files/{file_id}");
        let wrong_dispute = app
            .client
            .get(app.url(&elsewhere))
            .bearer_auth(&app.analyst)
            .send()
            .await
            .unwrap();
        assert_eq!(
            wrong_dispute.status(),
            404,
            "a file is served only under its own dispute"
        );

        // The upload becomes evidence when an item references it.
        let added = add(
            &app,
            &id,
            version,
            "PROOF_OF_DELIVERY",
            Some("Signed for at the door"),
            Some(file_id),
        )
        .await;
        let added = &added.data()["addEvidence"];
        assert_eq!(added["dispute"]["version"], version + 1);
        assert_eq!(added["items"][0]["file"]["contentType"], "PDF");
        assert_eq!(added["items"][0]["file"]["fileName"], "preuve-livraison.pdf");
        assert_eq!(added["items"][0]["file"]["downloadPath"], path);
        // Another dispute's upload cannot be referenced.
        let foreign = add(
            &app,
            &other,
            1,
            "PHOTOS",
            None,
            Some(png.body["fileId"].as_str().unwrap()),
        )
        .await;
        assert_eq!(foreign.error_code(), "INVALID_INPUT");
        // A stale version adds nothing.
        let stale = add(&app, &id, version, "TRACKING", Some("Colissimo 6A19283746"), None).await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT", "{}", app.label);
        let seen = view(&app, &app.viewer, &id).await;
        assert_eq!(seen["evidence"].as_array().unwrap().len(), 1);
        assert_eq!(
            seen["evidence"][0]["text"],
            Value::Null,
            "viewers never see evidence text"
        );
        assert_eq!(seen["evidence"][0]["file"]["fileName"], Value::Null);
    }
}

#[tokio::test]
async fn oversized_files_and_files_past_the_disputes_total_are_refused() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        // A Stripe dispute: at most 5 MB per file and 5 MB of files per dispute.
        let (id, version) = open_with(&app, "dp_evidence_limits", "13.1").await;
        let pdf_of = |size: usize| {
            let mut bytes = PDF.to_vec();
            bytes.resize(size, b' ');
            bytes
        };
        let oversized = upload(&app, Some(&app.analyst), &id, "big.pdf", pdf_of(5_000_001)).await;
        assert_eq!(oversized.status, 413, "{}: {}", app.label, oversized.body);
        assert_eq!(oversized.body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
        assert!(
            oversized.body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("5000000")
        );

        let first = upload(&app, Some(&app.analyst), &id, "a.pdf", pdf_of(3_000_000)).await;
        assert_eq!(first.status, 201, "{}", first.body);
        let second = upload(&app, Some(&app.analyst), &id, "b.pdf", pdf_of(3_000_001)).await;
        assert_eq!(second.status, 413, "{}", second.body);
        assert!(
            second.body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("per dispute")
        );
        assert_eq!(
            stored_files(&app).len(),
            1,
            "{}: the refused file is not stored",
            app.label
        );

        // Withdrawing the item that uses the first file frees the dispute's budget.
        let file_id = first.body["fileId"].as_str().unwrap();
        let added = add(&app, &id, version, "PROOF_OF_DELIVERY", None, Some(file_id)).await;
        let item_id = added.data()["addEvidence"]["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let removed = app
            .gql(
                &app.analyst,
                REMOVE,
                json!({ "input": { "id": id, "expectedVersion": version + 1, "itemId": item_id, "reason": "wrong scan" } }),
            )
            .await;
        assert_eq!(removed.data()["removeEvidence"]["dispute"]["version"], version + 2);
        let retried = upload(&app, Some(&app.analyst), &id, "b.pdf", pdf_of(3_000_001)).await;
        assert_eq!(retried.status, 201, "{}", retried.body);
    }
}

#[tokio::test]
async fn completeness_reaches_100_as_the_required_items_are_added() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let (id, mut version) = open_with(&app, "dp_evidence_complete", "13.1").await;
        let start = view(&app, &app.analyst, &id).await;
        assert_eq!(start["claim"], "NOT_RECEIVED");
        let completeness = &start["evidenceCompleteness"];
        assert_eq!(completeness["score"], 0);
        assert_eq!(completeness["required"], json!(["PROOF_OF_DELIVERY", "TRACKING"]));
        assert_eq!(completeness["missing"][0]["kind"], "PROOF_OF_DELIVERY");
        assert_eq!(completeness["missing"][0]["required"], true);
        assert!(!completeness["missing"][0]["expectation"].as_str().unwrap().is_empty());

        let tracking = add(
            &app,
            &id,
            version,
            "TRACKING",
            Some("Colissimo 6A19283746, delivered"),
            None,
        )
        .await;
        let tracking_id = tracking.data()["addEvidence"]["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        version += 1;
        assert_eq!(view(&app, &app.analyst, &id).await["evidenceCompleteness"]["score"], 40);
        add(
            &app,
            &id,
            version,
            "CUSTOMER_COMMUNICATION",
            Some("« Reçu, merci ! »"),
            None,
        )
        .await
        .data();
        version += 1;
        assert_eq!(view(&app, &app.analyst, &id).await["evidenceCompleteness"]["score"], 46);
        let file = upload(&app, Some(&app.analyst), &id, "pod.png", PNG.to_vec()).await;
        add(
            &app,
            &id,
            version,
            "PROOF_OF_DELIVERY",
            None,
            file.body["fileId"].as_str(),
        )
        .await
        .data();
        version += 1;
        let done = view(&app, &app.analyst, &id).await;
        assert_eq!(done["evidenceCompleteness"]["score"], 100, "{}", app.label);
        assert!(
            done["evidenceCompleteness"]["missing"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["required"] == false)
        );

        // Withdrawing a required item drops the score again; both are events that name no content.
        app.gql(
            &app.analyst,
            REMOVE,
            json!({ "input": { "id": id, "expectedVersion": version, "itemId": tracking_id } }),
        )
        .await
        .data();
        let after = view(&app, &app.analyst, &id).await;
        assert_eq!(after["evidenceCompleteness"]["score"], 46);
        let events = after["events"].as_array().unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            vec![
                "OPENED",
                "EVIDENCE_ADDED",
                "EVIDENCE_ADDED",
                "EVIDENCE_ADDED",
                "EVIDENCE_REMOVED"
            ]
        );
        let details = serde_json::to_string(&events[1..]).unwrap();
        assert!(details.contains("tracking") && !details.contains("Colissimo") && !details.contains("Reçu"));
        // Removing the same item twice is refused.
        let twice = app
            .gql(
                &app.analyst,
                REMOVE,
                json!({ "input": { "id": id, "expectedVersion": version + 1, "itemId": tracking_id } }),
            )
            .await;
        assert_eq!(twice.error_code(), "INVALID_INPUT");
    }
}

#[tokio::test]
async fn a_10_4_dispute_draws_its_evidence_from_the_order_and_shows_compelling_evidence_3() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start_with_facts(&db, Arc::new(OneOrder(order()))).await;
        // open_input is a Stripe Visa 10.4 dispute on payment pi_3Nx.
        let (id, version) = open_with(&app, "dp_evidence_ce3", "10.4").await;
        let before = view(&app, &app.analyst, &id).await;
        assert_eq!(before["claim"], "FRAUD");
        let ce = &before["compellingEvidence"];
        assert_eq!(ce["program"], "VISA_CE3", "{}", app.label);
        assert_eq!(ce["eligible"], true, "{ce}");
        let qualifying: Vec<&str> = ce["qualifyingTransactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["paymentReference"].as_str().unwrap())
            .collect();
        assert_eq!(
            qualifying,
            vec!["ch_prior_a", "ch_prior_b"],
            "too recent and disputed ones never count"
        );
        assert_eq!(
            ce["qualifyingTransactions"][1]["shared"],
            json!(["IP_ADDRESS", "ACCOUNT_ID", "SHIPPING_ADDRESS"])
        );
        assert!(
            ce["reason"]
                .as_str()
                .unwrap()
                .starts_with("eligible for Visa Compelling Evidence 3.0")
        );
        assert!(before["evidenceCompleteness"]["score"].as_i64().unwrap() < 100);

        let drawn = app
            .gql(
                &app.analyst,
                DRAW,
                json!({ "input": { "id": id, "expectedVersion": version } }),
            )
            .await;
        let drawn = &drawn.data()["drawEvidenceFromFacts"];
        assert_eq!(drawn["dispute"]["version"], version + 1, "one action, one event");
        let kinds: Vec<&str> = drawn["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            vec![
                "PROOF_OF_DELIVERY",
                "TRACKING",
                "PRODUCT_DESCRIPTION",
                "IMEI_SERIAL_RECORD",
                "CUSTOMER_COMMUNICATION",
                "REFUND_POLICY",
                "TERMS_ACCEPTED",
                "PRIOR_UNDISPUTED_TRANSACTIONS"
            ]
        );
        assert!(
            drawn["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["source"] == "MARKETPLACE_FACTS")
        );
        assert!(drawn["items"][3]["text"].as_str().unwrap().contains("356789104512345"));
        let after = view(&app, &app.analyst, &id).await;
        assert_eq!(after["evidenceCompleteness"]["score"], 100, "{}", app.label);
        assert_eq!(
            after["events"].as_array().unwrap().last().unwrap()["type"],
            "EVIDENCE_ADDED"
        );
        // Drawing again adds nothing new.
        let again = app
            .gql(
                &app.analyst,
                DRAW,
                json!({ "input": { "id": id, "expectedVersion": version + 1 } }),
            )
            .await;
        assert_eq!(again.error_code(), "INVALID_INPUT");
        // A dispute under no programme says so.
        let (other, _) = open_with(&app, "dp_evidence_ce3_other", "13.1").await;
        let other = view(&app, &app.analyst, &other).await;
        assert_eq!(other["compellingEvidence"]["program"], Value::Null);
        assert_eq!(other["compellingEvidence"]["eligible"], false);
    }
}

#[tokio::test]
async fn without_a_known_order_drawing_is_refused_and_nothing_changes() {
    for db in test_databases().await.unwrap() {
        // Verdict's own tables, where no order was recorded.
        let app = TestApp::start(&db).await;
        let (id, version) = open_with(&app, "dp_evidence_no_order", "10.4").await;
        let refused = app
            .gql(
                &app.analyst,
                DRAW,
                json!({ "input": { "id": id, "expectedVersion": version } }),
            )
            .await;
        assert_eq!(refused.error_code(), "NOT_FOUND", "{}", app.label);
        let seen = view(&app, &app.analyst, &id).await;
        assert_eq!(seen["version"], version);
        assert_eq!(seen["evidence"], json!([]));
        assert_eq!(seen["compellingEvidence"]["eligible"], false);
        assert_eq!(seen["compellingEvidence"]["program"], "VISA_CE3");
        assert!(
            seen["compellingEvidence"]["reason"]
                .as_str()
                .unwrap()
                .contains("no order")
        );
    }
}

#[tokio::test]
async fn an_order_recorded_in_verdicts_own_tables_gives_the_evidence() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let record =
            "mutation($facts: JSON!) { recordOrder(input: { facts: $facts }) { outcome userErrors { code message } } }";
        let facts = serde_json::to_value(order()).unwrap();
        app.gql(&app.lead, record, json!({ "facts": facts })).await.data();
        let (id, version) = open_with(&app, "dp_evidence_tables", "13.1").await;
        let drawn = app
            .gql(
                &app.analyst,
                DRAW,
                json!({ "input": { "id": id, "expectedVersion": version } }),
            )
            .await;
        assert_eq!(
            drawn.data()["drawEvidenceFromFacts"]["items"].as_array().unwrap().len(),
            8,
            "{}",
            app.label
        );
        let seen = view(&app, &app.analyst, &id).await;
        assert_eq!(seen["claim"], "NOT_RECEIVED");
        assert_eq!(seen["evidenceCompleteness"]["score"], 100);
        // 13.1 falls under no Compelling Evidence programme, whatever the priors.
        assert_eq!(seen["compellingEvidence"]["program"], Value::Null);
    }
}
