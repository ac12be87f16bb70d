//! A seller answers through a signed upload link: the link takes a file for its own dispute only, without an
//! API key, records it as the seller's, and refuses a changed or forged token.

use serde_json::json;

use crate::app::{OPEN, TestApp, open_input, test_databases};

const PNG: &[u8] = include_bytes!("../fixtures/evidence/pixel.png");

const LINK: &str = "mutation($input: CreateSellerUploadLinkInput!) { createSellerUploadLink(input: $input) { \
    link { uploadPath expiresAt } userErrors { code message } } }";

async fn open(app: &TestApp, processor_dispute_id: &str, seller: Option<&str>) -> String {
    let mut input = open_input(processor_dispute_id);
    input["sellerId"] = seller.map_or(serde_json::Value::Null, |s| json!(s));
    let answer = app.gql(&app.analyst, OPEN, json!({ "input": input })).await;
    answer.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post(app: &TestApp, path: &str, bytes: &[u8]) -> (u16, serde_json::Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("x-file-name", "grade-b-photo.png")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_seller_uploads_through_a_signed_link_for_that_dispute_only() {
    for db in test_databases().await.unwrap() {
        let app = TestApp::start(&db).await;
        let label = app.label;
        let id = open(&app, "dp_e2e_seller_link", Some("seller-techrenew-fr")).await;

        // Viewers may not make links; analysts may.
        let refused = app.gql(&app.viewer, LINK, json!({ "input": { "id": id } })).await;
        assert_eq!(refused.error_code(), "FORBIDDEN", "{label}: {}", refused.body);
        let link = app.gql(&app.analyst, LINK, json!({ "input": { "id": id } })).await;
        let path = link.data()["createSellerUploadLink"]["link"]["uploadPath"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(path.starts_with(&format!("/seller-uploads/{id}.")), "{label}: {path}");

        // The seller needs no key: the link is the credential, and the file is recorded as the seller's.
        let (status, body) = post(&app, &path, PNG).await;
        assert_eq!(status, 201, "{label}: {body}");
        let file_id: uuid::Uuid = body["fileId"].as_str().unwrap().parse().unwrap();
        let store = verdict_store::Store::connect(&db.url).await.unwrap();
        let file = store.evidence_file(file_id).await.unwrap().unwrap();
        assert_eq!(file.uploaded_by, "seller:seller-techrenew-fr", "{label}");
        assert_eq!(file.dispute_id.to_string(), id, "{label}");

        // A changed signature, or the token pointed at another dispute, is refused and stores nothing.
        let other = open(&app, "dp_e2e_seller_link_other", Some("seller-other")).await;
        let last = if path.ends_with('0') { '1' } else { '0' };
        let tampered = format!("{}{last}", &path[..path.len() - 1]);
        let forged = path.replacen(&id, &other, 1);
        for bad in [tampered, forged, "/seller-uploads/not-a-token".to_owned()] {
            let (status, body) = post(&app, &bad, PNG).await;
            assert_eq!(status, 401, "{label}: {bad} answered {body}");
        }
        let (used, count) = store
            .evidence_files_in_use(verdict_domain::DisputeId::from_uuid(other.parse().unwrap()))
            .await
            .unwrap();
        assert_eq!((used, count), (0, 0), "{label}");

        // A dispute without a seller gets no link.
        let no_seller = open(&app, "dp_e2e_seller_link_none", None).await;
        let none = app
            .gql(&app.analyst, LINK, json!({ "input": { "id": no_seller } }))
            .await;
        assert_eq!(none.error_code(), "INVALID_INPUT", "{label}");
    }
}
