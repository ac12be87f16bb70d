//! People signing in through an OpenID Connect provider: a local provider started by the test (an axum
//! server serving the discovery document and the JWKS) signs ID tokens with the test keys of
//! tests/fixtures/oidc, and Verdict is configured to trust it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use verdict_api::identity::{OidcConfig, OidcVerifier};

use crate::app::{GET, TestApp, open_dispute, test_databases};

const AUDIENCE: &str = "verdict-web";

fn private_key(n: u8) -> EncodingKey {
    let pem = match n {
        1 => include_bytes!("../fixtures/oidc/test-key-1.pem").as_slice(),
        2 => include_bytes!("../fixtures/oidc/test-key-2.pem").as_slice(),
        _ => include_bytes!("../fixtures/oidc/test-key-3.pem").as_slice(),
    };
    EncodingKey::from_rsa_pem(pem).unwrap()
}

fn public_jwk(n: u8) -> Value {
    let text = match n {
        1 => include_str!("../fixtures/oidc/test-key-1.jwk.json"),
        2 => include_str!("../fixtures/oidc/test-key-2.jwk.json"),
        _ => include_str!("../fixtures/oidc/test-key-3.jwk.json"),
    };
    serde_json::from_str(text).unwrap()
}

#[derive(Clone)]
struct ProviderState {
    issuer: String,
    jwks: Arc<RwLock<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
}

/// The organisation's identity provider, as far as Verdict sees it.
struct Provider {
    issuer: String,
    state: ProviderState,
    server: tokio::task::JoinHandle<()>,
}

impl Provider {
    /// Serves the discovery document and a JWKS holding the public halves of `keys`.
    async fn start(keys: &[u8]) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/realms/care", listener.local_addr().unwrap());
        let state = ProviderState {
            issuer: issuer.clone(),
            jwks: Arc::new(RwLock::new(jwks(keys))),
            jwks_fetches: Arc::default(),
        };
        let router = axum::Router::new()
            .route(
                "/realms/care/.well-known/openid-configuration",
                get(|State(s): State<ProviderState>| async move {
                    Json(json!({
                        "issuer": s.issuer,
                        "jwks_uri": format!("{}/protocol/openid-connect/certs", s.issuer),
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }))
                }),
            )
            .route(
                "/realms/care/protocol/openid-connect/certs",
                get(|State(s): State<ProviderState>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    Json(s.jwks.read().await.clone())
                }),
            )
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Provider { issuer, state, server }
    }

    /// Verdict's `[oidc]` for this provider: groups map to roles.
    fn config(&self) -> OidcConfig {
        let roles: BTreeMap<String, String> = [
            ("disputes-viewer", "viewer"),
            ("disputes-analyst", "analyst"),
            ("disputes-lead", "lead"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        OidcConfig {
            issuer: Some(self.issuer.clone()),
            audience: Some(AUDIENCE.to_owned()),
            role_claim: "groups".to_owned(),
            roles,
            // The rotation test publishes a new key between two requests.
            jwks_refresh_min_secs: 0,
            ..OidcConfig::default()
        }
    }

    fn verifier(&self) -> OidcVerifier {
        OidcVerifier::from_config(&self.config()).unwrap().unwrap()
    }

    async fn publish(&self, keys: &[u8]) {
        *self.state.jwks.write().await = jwks(keys);
    }

    fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn jwks(keys: &[u8]) -> Value {
    json!({ "keys": keys.iter().map(|n| public_jwk(*n)).collect::<Vec<_>>() })
}

/// The claims of a valid token of `username` in `groups`, issued by `issuer`.
fn claims(issuer: &str, username: &str, groups: &[&str]) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": format!("sub-{username}"),
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
        "preferred_username": username,
        "name": format!("{username} Martin"),
        "email": format!("{username}@example.com"),
        "groups": groups,
    })
}

/// `claims` signed with test key `key`, its header naming key `kid`.
fn sign(claims: &Value, key: u8, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &private_key(key)).unwrap()
}

const ME: &str = "{ me { name role kind } }";

#[tokio::test]
async fn people_sign_in_with_the_providers_tokens_and_forged_or_stale_ones_are_refused() {
    for db in test_databases().await.unwrap() {
        let provider = Provider::start(&[1]).await;
        let mut app = TestApp::start_with_oidc(&db, provider.verifier()).await;
        let issuer = provider.issuer.clone();

        let valid = sign(
            &claims(&issuer, "jeanne", &["staff", "disputes-analyst"]),
            1,
            "test-key-1",
        );
        let me = app.gql(&valid, ME, json!({})).await;
        assert_eq!(
            me.data()["me"],
            json!({"name": "jeanne", "role": "ANALYST", "kind": "USER"}),
            "{}",
            app.label
        );
        let lead = sign(
            &claims(&issuer, "lena.m", &["disputes-analyst", "disputes-lead"]),
            1,
            "test-key-1",
        );
        assert_eq!(app.gql(&lead, ME, json!({})).await.data()["me"]["role"], "LEAD");
        // API keys keep working beside tokens.
        assert_eq!(
            app.gql(&app.viewer, ME, json!({})).await.data()["me"]["kind"],
            "API_KEY"
        );

        let refused = |mut claims: Value, change: &dyn Fn(&mut Value)| {
            change(&mut claims);
            claims
        };
        let base = claims(&issuer, "jeanne", &["disputes-analyst"]);
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "wrong issuer",
                sign(
                    &refused(base.clone(), &|c| c["iss"] = json!("https://evil.example.com")),
                    1,
                    "test-key-1",
                ),
                "another issuer",
            ),
            (
                "wrong audience",
                sign(
                    &refused(base.clone(), &|c| c["aud"] = json!("another-app")),
                    1,
                    "test-key-1",
                ),
                "another client",
            ),
            (
                "expired beyond the leeway",
                sign(
                    &refused(base.clone(), &|c| {
                        c["exp"] = json!(chrono::Utc::now().timestamp() - 300)
                    }),
                    1,
                    "test-key-1",
                ),
                "expired",
            ),
            (
                "not valid yet",
                sign(
                    &refused(base.clone(), &|c| {
                        c["nbf"] = json!(chrono::Utc::now().timestamp() + 600)
                    }),
                    1,
                    "test-key-1",
                ),
                "not valid yet",
            ),
            // Signed with a key the provider never published, under the id of one it did.
            ("bad signature", sign(&base, 3, "test-key-1"), "signature"),
            ("garbage", "a.b.c".to_owned(), "well-formed"),
        ];
        for (case, token, says) in cases {
            let answer = app.gql(&token, ME, json!({})).await;
            assert_eq!(answer.status, 401, "{case} on {}: {}", app.label, answer.body);
            assert_eq!(answer.error_code(), "UNAUTHENTICATED", "{case}");
            let message = answer.body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(says), "{case}: {message}");
        }
        // Expired within the leeway (60 s) still passes: clocks drift.
        let late = sign(
            &refused(base.clone(), &|c| c["exp"] = json!(chrono::Utc::now().timestamp() - 20)),
            1,
            "test-key-1",
        );
        assert_eq!(app.gql(&late, ME, json!({})).await.data()["me"]["name"], "jeanne");

        // A valid token whose groups map to no role is refused as such.
        let outsider = sign(&claims(&issuer, "omar", &["staff"]), 1, "test-key-1");
        let answer = app.gql(&outsider, ME, json!({})).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert!(answer.body["errors"][0]["message"].as_str().unwrap().contains("staff"));

        // The people who signed in are users; their emails are whole for admins only.
        let users = "{ users { username name email role issuer } }";
        let as_lead = app.gql(&lead, users, json!({})).await;
        let listed = as_lead.data()["users"].as_array().unwrap().clone();
        let names: Vec<&str> = listed.iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names, ["jeanne", "lena.m"], "{}", app.label);
        assert_eq!(listed[0]["email"], "j***@example.com");
        assert_eq!(listed[0]["role"], "ANALYST");
        assert_eq!(listed[0]["issuer"], issuer);
        let as_admin = app.gql(&app.admin, users, json!({})).await;
        assert_eq!(as_admin.data()["users"][0]["email"], "jeanne@example.com");
        assert_eq!(app.gql(&valid, users, json!({})).await.error_code(), "FORBIDDEN");

        // A later token with another role updates the person, not a second row.
        let promoted = sign(&claims(&issuer, "jeanne", &["disputes-lead"]), 1, "test-key-1");
        assert_eq!(app.gql(&promoted, ME, json!({})).await.data()["me"]["role"], "LEAD");
        let listed = app.gql(&app.admin, users, json!({})).await;
        assert_eq!(listed.data()["users"].as_array().unwrap().len(), 2);
        assert_eq!(listed.data()["users"][0]["role"], "LEAD");

        // The keys were fetched once for all of the above.
        assert_eq!(provider.fetches(), 1, "{}", app.label);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_token_signed_with_an_unknown_key_makes_verdict_fetch_the_keys_again_after_a_rotation() {
    for db in test_databases().await.unwrap() {
        let provider = Provider::start(&[1]).await;
        let mut app = TestApp::start_with_oidc(&db, provider.verifier()).await;
        let claims = claims(&provider.issuer, "jeanne", &["disputes-analyst"]);
        let old = sign(&claims, 1, "test-key-1");
        assert_eq!(app.gql(&old, ME, json!({})).await.data()["me"]["name"], "jeanne");

        // Key 2 is not published yet: its tokens are refused, after one more look at the JWKS.
        let new = sign(&claims, 2, "test-key-2");
        let answer = app.gql(&new, ME, json!({})).await;
        assert_eq!(answer.error_code(), "UNAUTHENTICATED", "{}", answer.body);
        assert!(
            answer.body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("test-key-2")
        );
        assert_eq!(provider.fetches(), 2);

        // The provider rotates to key 2 and withdraws key 1.
        provider.publish(&[2]).await;
        assert_eq!(
            app.gql(&new, ME, json!({})).await.data()["me"]["name"],
            "jeanne",
            "{}",
            app.label
        );
        assert_eq!(provider.fetches(), 3);
        assert_eq!(app.gql(&new, ME, json!({})).await.data()["me"]["name"], "jeanne");
        assert_eq!(provider.fetches(), 3, "a known key is not fetched again");
        assert_eq!(app.gql(&old, ME, json!({})).await.error_code(), "UNAUTHENTICATED");
        app.stop().await;
    }
}

#[tokio::test]
async fn assigning_needs_a_known_person_and_events_name_the_people_who_acted() {
    for db in test_databases().await.unwrap() {
        let provider = Provider::start(&[1]).await;
        let mut app = TestApp::start_with_oidc(&db, provider.verifier()).await;
        let lead = sign(&claims(&provider.issuer, "lena.m", &["disputes-lead"]), 1, "test-key-1");
        let analyst = sign(
            &claims(&provider.issuer, "jeanne", &["disputes-analyst"]),
            1,
            "test-key-1",
        );
        let id = open_dispute(&app, "dp_identity_1").await;
        let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { assignee version } userErrors { code message } } }";

        // Nobody called "jeanne" has signed in yet.
        let answer = app
            .gql(&lead, assign, json!({"input": {"id": id, "assignee": "jeanne"}}))
            .await;
        assert_eq!(answer.error_code(), "INVALID_INPUT", "{}", answer.body);
        assert!(answer.error_message().contains("\"jeanne\""));
        let unchanged = app.gql(&app.viewer, GET, json!({"id": id})).await;
        assert_eq!(unchanged.data()["dispute"]["assignee"], Value::Null, "{}", app.label);
        assert_eq!(unchanged.data()["dispute"]["version"], 1);

        // Once she has signed in, the lead can assign her, and an analyst key's name is still assignable.
        app.gql(&analyst, ME, json!({})).await.data();
        let assigned = app
            .gql(&lead, assign, json!({"input": {"id": id, "assignee": "jeanne"}}))
            .await;
        assert_eq!(assigned.data()["assignDispute"]["dispute"]["assignee"], "jeanne");
        let note = "mutation($input: AddNoteInput!) { addNote(input: $input) { dispute { version } userErrors { code message } } }";
        app.gql(
            &analyst,
            note,
            json!({"input": {"id": id, "note": "Calling the seller."}}),
        )
        .await
        .data();
        let reassigned = app
            .gql(&lead, assign, json!({"input": {"id": id, "assignee": "alice"}}))
            .await;
        assert_eq!(reassigned.data()["assignDispute"]["dispute"]["assignee"], "alice");

        let dispute = app.gql(&app.viewer, GET, json!({"id": id})).await;
        let actors: Vec<(String, String)> = dispute.data()["dispute"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["actor"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let after_open: Vec<(&str, &str)> = actors[1..].iter().map(|(t, a)| (t.as_str(), a.as_str())).collect();
        assert_eq!(
            after_open,
            [
                ("ASSIGNED", "analyst:lena.m"),
                ("NOTE_ADDED", "analyst:jeanne"),
                ("ASSIGNED", "analyst:lena.m")
            ],
            "{}",
            app.label
        );
        app.stop().await;
    }
}
