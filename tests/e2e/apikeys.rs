//! API keys over HTTP: admins list and revoke them, and a revoked key is refused on its very next request.

use serde_json::json;

use crate::app::{TestApp, test_databases};

const LIST: &str = "{ apiKeys { id name role createdAt revokedAt } }";
const REVOKE: &str = "mutation($input: RevokeApiKeyInput!) { revokeApiKey(input: $input) { apiKey { id name role revokedAt } userErrors { code message } } }";

#[tokio::test]
async fn admins_list_and_revoke_keys_and_a_revoked_key_fails_on_its_next_request() {
    for db in test_databases().await.unwrap() {
        let mut app = TestApp::start(&db).await;
        let listed = app.gql(&app.admin, LIST, json!({})).await;
        let keys = listed.data()["apiKeys"].as_array().unwrap().clone();
        let names: Vec<&str> = keys.iter().map(|k| k["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["root", "lena", "alice", "victor"], "{}", app.label);
        assert_eq!(keys[2]["role"], "ANALYST");
        assert!(keys.iter().all(|k| k["revokedAt"].is_null()));
        let text = listed.body.to_string();
        for token in [&app.admin, &app.lead, &app.analyst, &app.viewer] {
            assert!(!text.contains(token.as_str()), "a token leaked into apiKeys");
            assert!(
                !text.contains(&verdict_store::hash_token(token)),
                "a token hash leaked into apiKeys"
            );
        }
        for token in [&app.lead, &app.analyst, &app.viewer] {
            assert_eq!(app.gql(token, LIST, json!({})).await.error_code(), "FORBIDDEN");
            let denied = app.gql(token, REVOKE, json!({"input": {"name": "root"}})).await;
            assert_eq!(denied.error_code(), "FORBIDDEN");
        }

        // The analyst works, is revoked, and the same token is refused right after: nothing caches a key.
        assert_eq!(app.gql(&app.analyst, "{ me { name } }", json!({})).await.status, 200);
        let revoked = app.gql(&app.admin, REVOKE, json!({"input": {"name": "alice"}})).await;
        let alice = revoked.data()["revokeApiKey"]["apiKey"].clone();
        assert_eq!(alice["name"], "alice");
        let revoked_at = alice["revokedAt"].as_str().unwrap().to_owned();
        let refused = app.gql(&app.analyst, "{ me { name } }", json!({})).await;
        assert_eq!(refused.status, 401, "{}: {}", app.label, refused.body);
        assert_eq!(refused.error_code(), "UNAUTHENTICATED");
        assert_eq!(
            app.gql(
                &app.analyst,
                crate::app::OPEN,
                json!({"input": crate::app::open_input("dp_revoked")})
            )
            .await
            .status,
            401
        );

        // Revoking again changes nothing and keeps the first time; by id works as well as by name.
        let again = app.gql(&app.admin, REVOKE, json!({"input": {"id": alice["id"]}})).await;
        assert_eq!(again.data()["revokeApiKey"]["apiKey"]["revokedAt"], revoked_at.as_str());
        let victor = keys[3]["id"].clone();
        let by_id = app.gql(&app.admin, REVOKE, json!({"input": {"id": victor}})).await;
        assert_eq!(by_id.data()["revokeApiKey"]["apiKey"]["name"], "victor");
        assert_eq!(app.gql(&app.viewer, "{ me { name } }", json!({})).await.status, 401);
        assert_eq!(
            app.gql(&app.lead, "{ me { name } }", json!({})).await.status,
            200,
            "others still work"
        );

        let unknown = app.gql(&app.admin, REVOKE, json!({"input": {"name": "nobody"}})).await;
        assert_eq!(unknown.error_code(), "NOT_FOUND");
        for input in [
            json!({}),
            json!({"name": "alice", "id": alice["id"]}),
            json!({"id": "not-a-uuid"}),
        ] {
            let bad = app.gql(&app.admin, REVOKE, json!({ "input": input })).await;
            assert_eq!(bad.error_code(), "INVALID_INPUT", "{input}");
        }

        let listed = app.gql(&app.admin, LIST, json!({})).await;
        let keys = listed.data()["apiKeys"].as_array().unwrap().clone();
        let revoked: Vec<&str> = keys
            .iter()
            .filter(|k| !k["revokedAt"].is_null())
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        assert_eq!(revoked, ["alice", "victor"], "{}", app.label);
        app.stop().await;
    }
}
