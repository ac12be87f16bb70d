//! Documents: generating the defense document (versioned, recorded as an event) and serving documents and the
//! case file only to roles that see personal data.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::{TestApp, open_dispute, test_databases};

const GENERATE: &str = "mutation($input: GenerateDefenseDocumentInput!) { generateDefenseDocument(input: $input) { \
    dispute { version events { type actor } } \
    document { id kind version sha256 sizeBytes createdBy pdfUrl htmlUrl } userErrors { code message } } }";

const DOCUMENTS: &str = "query($id: ID!) { dispute(id: $id) { documents { id kind version sha256 } } }";

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn generating_the_defense_document_stores_a_new_version_and_records_it() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_docs_1").await;

        let stale = app
            .gql(
                &app.analyst,
                GENERATE,
                json!({"input": {"id": id, "expectedVersion": 7}}),
            )
            .await;
        assert_eq!(stale.error_code(), "VERSION_CONFLICT", "{}", app.label);
        let viewer = app
            .gql(
                &app.viewer,
                GENERATE,
                json!({"input": {"id": id, "expectedVersion": 1}}),
            )
            .await;
        assert_eq!(viewer.error_code(), "FORBIDDEN");

        let first = app
            .gql(
                &app.analyst,
                GENERATE,
                json!({"input": {"id": id, "expectedVersion": 1}}),
            )
            .await;
        let payload = &first.data()["generateDefenseDocument"];
        assert_eq!(payload["dispute"]["version"], 2, "{}", app.label);
        let events = payload["dispute"]["events"].as_array().unwrap();
        assert_eq!(events.last().unwrap()["type"], "DOCUMENT_GENERATED");
        assert_eq!(events.last().unwrap()["actor"], "analyst:alice");
        let document = &payload["document"];
        assert_eq!(document["kind"], "DEFENSE");
        assert_eq!(document["version"], 1);
        assert_eq!(document["createdBy"], "analyst:alice");
        let doc_id = document["id"].as_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&doc_id).unwrap().get_version_num(), 7);
        assert_eq!(document["pdfUrl"], format!("/documents/{doc_id}.pdf"));

        let second = app
            .gql(
                &app.analyst,
                GENERATE,
                json!({"input": {"id": id, "expectedVersion": 2}}),
            )
            .await;
        assert_eq!(second.data()["generateDefenseDocument"]["document"]["version"], 2);

        let listed = app.gql(&app.viewer, DOCUMENTS, json!({"id": id})).await;
        let documents = listed.data()["dispute"]["documents"].as_array().unwrap().clone();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0]["version"], 2, "newest first");
        assert_eq!(documents[1]["id"], doc_id.as_str());

        // The stored PDF is the one the hash names, served to an analyst and never cached.
        let response = get(&app, Some(&app.analyst), &format!("/documents/{doc_id}.pdf")).await;
        assert_eq!(response.status(), 200, "{}", app.label);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/pdf");
        assert!(headers["cache-control"].to_str().unwrap().contains("no-store"));
        assert!(headers["content-disposition"].to_str().unwrap().contains("-v1.pdf"));
        let pdf = response.bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(hex::encode(Sha256::digest(&pdf)), document["sha256"].as_str().unwrap());
        assert_eq!(document["sizeBytes"], pdf.len());

        let html = get(&app, Some(&app.lead), &format!("/documents/{doc_id}.html")).await;
        assert_eq!(html.status(), 200);
        assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
        assert!(
            html.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let text = html.text().await.unwrap();
        assert!(text.contains("Dispute response"), "{text}");
        assert!(text.contains("dp_docs_1"));
        // Without an order linked, the letter says so rather than inventing one.
        assert!(text.contains("not yet linked to an order"), "{text}");
        app.stop().await;
    }
}

#[tokio::test]
async fn documents_are_served_only_to_roles_that_see_personal_data() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_docs_2").await;
        let generated = app
            .gql(
                &app.analyst,
                GENERATE,
                json!({"input": {"id": id, "expectedVersion": 1}}),
            )
            .await;
        let doc_id = generated.data()["generateDefenseDocument"]["document"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let pdf = format!("/documents/{doc_id}.pdf");

        assert_eq!(get(&app, None, &pdf).await.status(), 401, "{}", app.label);
        assert_eq!(get(&app, Some("vdk_not_a_key"), &pdf).await.status(), 401);
        let refused = get(&app, Some(&app.viewer), &pdf).await;
        assert_eq!(refused.status(), 403);
        assert!(!refused.bytes().await.unwrap().starts_with(b"%PDF"));
        assert_eq!(get(&app, Some(&app.analyst), &pdf).await.status(), 200);

        let unknown = uuid::Uuid::now_v7();
        for path in [
            format!("/documents/{unknown}.pdf"),
            format!("/documents/{unknown}.html"),
            format!("/documents/{doc_id}.docx"),
            "/documents/not-an-id.pdf".to_owned(),
        ] {
            assert_eq!(get(&app, Some(&app.analyst), &path).await.status(), 404, "{path}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_case_file_is_rendered_on_request_for_roles_that_see_personal_data() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let id = open_dispute(&app, "dp_docs_3").await;

        let html = get(&app, Some(&app.analyst), &format!("/disputes/{id}/case-file.html")).await;
        assert_eq!(html.status(), 200, "{}", app.label);
        assert!(html.headers()["cache-control"].to_str().unwrap().contains("no-store"));
        let text = html.text().await.unwrap();
        assert!(text.contains("Case file"), "{text}");
        assert!(
            text.contains("Jeanne Dupont"),
            "the case file is for people who see personal data"
        );
        assert!(text.contains("dp_docs_3"));

        let pdf = get(&app, Some(&app.lead), &format!("/disputes/{id}/case-file.pdf")).await;
        assert_eq!(pdf.status(), 200);
        assert_eq!(pdf.headers()["content-type"], "application/pdf");
        assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));

        assert_eq!(
            get(&app, Some(&app.viewer), &format!("/disputes/{id}/case-file.pdf"))
                .await
                .status(),
            403
        );
        assert_eq!(
            get(&app, None, &format!("/disputes/{id}/case-file.pdf")).await.status(),
            401
        );
        let unknown = uuid::Uuid::now_v7();
        assert_eq!(
            get(&app, Some(&app.analyst), &format!("/disputes/{unknown}/case-file.pdf"))
                .await
                .status(),
            404
        );
        assert_eq!(
            get(&app, Some(&app.analyst), &format!("/disputes/{id}/other.pdf"))
                .await
                .status(),
            404
        );
        // An export changes nothing: the dispute is still at its first version.
        let version = app
            .gql(
                &app.viewer,
                "query($id: ID!) { dispute(id: $id) { version } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(version.data()["dispute"]["version"], 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_defense_document_argues_from_the_linked_order_and_the_drawn_evidence() {
    use std::sync::Arc;

    use crate::evidence::{OneOrder, order};

    let draw = "mutation($input: DrawEvidenceFromFactsInput!) { drawEvidenceFromFacts(input: $input) { \
        dispute { version } userErrors { code message } } }";
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start_with_facts(&db, Arc::new(OneOrder(order()))).await;
        // A Stripe Visa 10.4 (fraud) dispute on the order's payment pi_3Nx.
        let id = open_dispute(&app, "dp_docs_4").await;
        let drawn = app
            .gql(&app.analyst, draw, json!({"input": {"id": id, "expectedVersion": 1}}))
            .await;
        let version = drawn.data()["drawEvidenceFromFacts"]["dispute"]["version"]
            .as_i64()
            .unwrap();
        let generated = app
            .gql(
                &app.analyst,
                GENERATE,
                json!({"input": {"id": id, "expectedVersion": version}}),
            )
            .await;
        let doc_id = generated.data()["generateDefenseDocument"]["document"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let html = get(&app, Some(&app.analyst), &format!("/documents/{doc_id}.html")).await;
        let text = html.text().await.unwrap();
        for expected in [
            "On behalf of TechRenew, we contest dispute",
            "AVS result at authorisation: Y (street address and postal code match)",
            "qualifies for Visa Compelling Evidence 3.0",
            "Payment ch_prior_a",
            "The 3-D Secure result",
            "Prior undisputed transactions",
            "356789104512345",
            r#"<blockquote lang="fr">"#,
            "original language: French",
            "Reçu, merci !",
        ] {
            assert!(
                text.contains(expected),
                "{}: `{expected}` missing from\n{text}",
                app.label
            );
        }
        assert!(!text.contains("ch_prior_disputed"), "a disputed payment is never cited");
        app.stop().await;
    }
}
