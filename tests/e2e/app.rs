//! Starting and stopping the real app for a test.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use verdict_api::auth::{Role, create_api_key};
use verdict_engine::SystemClock;
use verdict_store::testing::TestDatabase;

pub use verdict_store::testing::test_databases;

/// The secret the test apps sign sellers' upload links with.
pub const SELLER_LINK_SECRET: &[u8] = b"e2e seller upload links, 32 bytes or more";

pub struct TestApp {
    pub addr: SocketAddr,
    pub label: &'static str,
    pub client: reqwest::Client,
    pub admin: String,
    pub lead: String,
    pub analyst: String,
    pub viewer: String,
    /// Where this app keeps evidence files (a temporary folder of its own).
    pub evidence_dir: std::path::PathBuf,
    _evidence: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    engine: verdict_engine::Engine,
}

/// A GraphQL answer: HTTP status and body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The data of an answer without errors: no GraphQL error, and no user error in a mutation's payload.
    pub fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        assert!(self.user_errors().is_empty(), "unexpected user errors: {}", self.body);
        &self.body["data"]
    }

    /// The `userErrors` of every field of the answer's data (a mutation's payload).
    pub fn user_errors(&self) -> Vec<Value> {
        let Some(fields) = self.body["data"].as_object() else {
            return Vec::new();
        };
        fields
            .values()
            .filter_map(|payload| payload.get("userErrors").and_then(Value::as_array))
            .flatten()
            .cloned()
            .collect()
    }

    /// Whether the request was refused: a GraphQL error, or a user error in a mutation's payload.
    pub fn refused(&self) -> bool {
        self.body.get("errors").is_some() || !self.user_errors().is_empty()
    }

    /// The message of the first error, or else of the first user error.
    pub fn error_message(&self) -> String {
        if let Some(message) = self.body["errors"][0]["message"].as_str() {
            return message.to_owned();
        }
        let refused = self.user_errors();
        refused
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or_else(|| panic!("no error in {}", self.body))
            .to_owned()
    }

    /// The `extensions.code` of the first error, or else the code of the first user error: the same names.
    pub fn error_code(&self) -> String {
        if let Some(code) = self.body["errors"][0]["extensions"]["code"].as_str() {
            return code.to_owned();
        }
        let refused = self.user_errors();
        refused
            .first()
            .and_then(|e| e["code"].as_str())
            .unwrap_or_else(|| panic!("no error in {}", self.body))
            .to_owned()
    }
}

impl TestApp {
    /// Starts the app on `db`, with one key per role (created on first start only).
    pub async fn start(db: &TestDatabase) -> TestApp {
        Self::start_with_keys(db, None).await
    }

    /// Starts the app on a database whose keys the test made itself.
    pub async fn start_without_keys(db: &TestDatabase) -> TestApp {
        let none = || String::new();
        Self::start_with_keys(db, Some([none(), none(), none(), none()])).await
    }

    async fn start_with_keys(db: &TestDatabase, keys: Option<[String; 4]>) -> TestApp {
        Self::start_configured(db, keys, verdict_api::webhooks::WebhookSecrets::default(), None).await
    }

    /// Starts the app reading order facts from `facts` (a test double of the marketplace).
    pub async fn start_with_facts(db: &TestDatabase, facts: Arc<dyn verdict_facts::MarketplaceFacts>) -> TestApp {
        Self::start_configured(db, None, verdict_api::webhooks::WebhookSecrets::default(), Some(facts)).await
    }

    /// Starts the app letting people sign in through `oidc` (a test's own provider), with the usual keys.
    pub async fn start_with_oidc(db: &TestDatabase, oidc: verdict_api::identity::OidcVerifier) -> TestApp {
        Self::start_full(
            db,
            None,
            webhooks_with(verdict_api::webhooks::WebhookSecrets::default()),
            None,
            None,
            None,
            verdict_api::graphql::RefundLimits::default(),
            Some(oidc),
        )
        .await
    }

    /// Starts the app with webhook secrets (and fresh keys).
    pub async fn start_with_webhooks(db: &TestDatabase, secrets: verdict_api::webhooks::WebhookSecrets) -> TestApp {
        Self::start_configured(db, None, secrets, None).await
    }

    /// Starts the app with webhook secrets and another source of marketplace facts (the order service).
    pub async fn start_with_marketplace(
        db: &TestDatabase,
        secrets: verdict_api::webhooks::WebhookSecrets,
        marketplace: &verdict_facts::MarketplaceConfig,
    ) -> TestApp {
        Self::start_full(
            db,
            None,
            webhooks_with(secrets),
            None,
            Some(marketplace),
            None,
            verdict_api::graphql::RefundLimits::default(),
            None,
        )
        .await
    }

    async fn start_configured(
        db: &TestDatabase,
        keys: Option<[String; 4]>,
        secrets: verdict_api::webhooks::WebhookSecrets,
        facts: Option<Arc<dyn verdict_facts::MarketplaceFacts>>,
    ) -> TestApp {
        Self::start_full(
            db,
            keys,
            webhooks_with(secrets),
            facts,
            None,
            None,
            verdict_api::graphql::RefundLimits::default(),
            None,
        )
        .await
    }

    /// Starts the app as `verdict serve` runs it: webhook secrets, the outside systems `effects` configures (real
    /// processor adapters at their configured base URLs, no sandbox unless it says so) and these refund limits.
    pub async fn start_serving(
        db: &TestDatabase,
        secrets: verdict_api::webhooks::WebhookSecrets,
        effects: verdict_engine::effects::EffectsConfig,
        refunds: verdict_api::graphql::RefundLimits,
    ) -> TestApp {
        Self::start_full(
            db,
            None,
            webhooks_with(secrets),
            None,
            None,
            Some(effects),
            refunds,
            None,
        )
        .await
    }

    /// As [`TestApp::start_serving`], with the webhooks' certificate cache given too (PayPal's certificates).
    pub async fn start_serving_webhooks(
        db: &TestDatabase,
        webhooks: verdict_api::webhooks::Webhooks,
        effects: verdict_engine::effects::EffectsConfig,
        refunds: verdict_api::graphql::RefundLimits,
    ) -> TestApp {
        Self::start_full(db, None, webhooks, None, None, Some(effects), refunds, None).await
    }

    // One place builds every test app; its options are plain arguments, each named at the call sites.
    #[allow(clippy::too_many_arguments)]
    async fn start_full(
        db: &TestDatabase,
        keys: Option<[String; 4]>,
        webhooks: verdict_api::webhooks::Webhooks,
        facts: Option<Arc<dyn verdict_facts::MarketplaceFacts>>,
        marketplace: Option<&verdict_facts::MarketplaceConfig>,
        effects: Option<verdict_engine::effects::EffectsConfig>,
        refunds: verdict_api::graphql::RefundLimits,
        oidc: Option<verdict_api::identity::OidcVerifier>,
    ) -> TestApp {
        verdict::install_crypto_provider();
        let mut engine = verdict::connect(&db.url, Arc::new(SystemClock)).await.unwrap();
        if let Some(marketplace) = marketplace {
            let facts = verdict_facts::from_config(marketplace, engine.store().db().clone()).unwrap();
            engine = engine.with_facts(facts);
        }
        let keys = match keys {
            Some(keys) => keys,
            None => {
                let now = engine.clock().now();
                let mut tokens = Vec::new();
                for (name, role) in [
                    ("root", Role::Admin),
                    ("lena", Role::Lead),
                    ("alice", Role::Analyst),
                    ("victor", Role::Viewer),
                ] {
                    tokens.push(
                        create_api_key(engine.store(), name, role, now)
                            .await
                            .map_err(|e| e.message())
                            .unwrap(),
                    );
                }
                tokens.try_into().unwrap()
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let evidence = tempfile::tempdir().unwrap();
        let evidence_dir = evidence.path().join("evidence");
        let engine = match facts {
            Some(facts) => engine.with_facts(facts),
            None => engine,
        };
        let state = verdict_api::AppState::new(engine)
            .with_oidc(oidc)
            .with_webhooks(webhooks)
            .with_refund_limits(refunds)
            .with_evidence_files(Arc::new(verdict_evidence::LocalDirStore::new(evidence_dir.clone())))
            .with_seller_links(Some(
                verdict_api::seller_links::SellerLinks::new(SELLER_LINK_SECRET, chrono::Duration::hours(72)).unwrap(),
            ));
        let engine = state.engine.clone();
        let shutdown = async {
            let _ = stopped.await;
        };
        let server = match effects {
            None => tokio::spawn(verdict::serve_with_sandbox(listener, state, shutdown)),
            Some(effects) => {
                let scheduling = verdict_engine::timers::SchedulingConfig::default();
                let worker = verdict::workers::configured_pool(
                    &state.engine,
                    &scheduling,
                    &effects,
                    state.evidence_files.clone(),
                )
                .await
                .unwrap();
                tokio::spawn(verdict::serve_with_workers(listener, state, Some(worker), shutdown))
            }
        };
        let [admin, lead, analyst, viewer] = keys;
        TestApp {
            addr,
            label: db.label,
            client: reqwest::Client::new(),
            admin,
            lead,
            analyst,
            viewer,
            evidence_dir,
            _evidence: evidence,
            stop: Some(stop),
            server: Some(server),
            engine,
        }
    }

    /// Waits until every webhook delivery answered before it was applied has been (a webhook's 2xx means
    /// stored; applying follows, see `Engine::receive_then_apply`).
    pub async fn applied(&self) {
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            self.engine.finish_applying_after_answer(),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: webhook deliveries still being applied after 120 s", self.label));
    }

    /// Stops the server gracefully and starts a new one on the same database, keeping the keys.
    pub async fn restart(mut self, db: &TestDatabase) -> TestApp {
        self.stop().await;
        let keys = [
            self.admin.clone(),
            self.lead.clone(),
            self.analyst.clone(),
            self.viewer.clone(),
        ];
        Self::start_with_keys(db, Some(keys)).await
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// The body of `GET path`, as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Answer {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap();
        Answer { status, body }
    }

    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Answer {
        self.gql_as(Some(token), query, variables).await
    }
}

pub const OPEN: &str = "mutation($input: OpenDisputeInput!) { openDispute(input: $input) { dispute { \
    id processor processorDisputeId status stage version network reasonCode reasonCategory queue assignee dueBy \
    amount { minorUnits currency formatted } customer { name email locale } \
    events { version type fromStatus toStatus actor reason at } } userErrors { code message } } }";

pub const TRANSITION: &str = "mutation($input: TransitionDisputeInput!) { transitionDispute(input: $input) { dispute { id status version stage queue } userErrors { code message } } }";

pub const GET: &str = "query($id: ID!) { dispute(id: $id) { \
    id processor processorDisputeId status stage version network reasonCode reasonCategory queue assignee dueBy \
    amount { minorUnits currency formatted } customer { name email locale } \
    events { version type fromStatus toStatus actor reason at } timers { kind dueAt status } steps { kind status idempotencyKey } } }";

/// Noon UTC `days` from today, RFC 3339: due dates must lie ahead, at most a year away.
pub fn due_in_days(days: i64) -> String {
    let day = (chrono::Utc::now() + chrono::Duration::days(days)).date_naive();
    format!("{day}T12:00:00Z")
}

pub fn open_input(processor_dispute_id: &str) -> Value {
    json!({
        "processor": "STRIPE",
        "processorDisputeId": processor_dispute_id,
        "paymentReference": "pi_3Nx",
        "orderReference": "ORD-731204",
        "sellerId": "seller-techrenew-fr",
        "customer": { "name": "Jeanne Dupont", "email": "jeanne.dupont@example.fr", "locale": "FR" },
        "amount": { "minorUnits": 48900, "currency": "EUR" },
        "network": "VISA",
        "reasonCode": " 10.4 ",
        "dueBy": due_in_days(45)
    })
}

/// Opens a dispute as the analyst and returns its id.
pub async fn open_dispute(app: &TestApp, processor_dispute_id: &str) -> String {
    let answer = app
        .gql(&app.analyst, OPEN, json!({ "input": open_input(processor_dispute_id) }))
        .await;
    answer.data()["openDispute"]["dispute"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The lead assigns the dispute to alice (the analyst's key) and waits until every step it has succeeded (the assignee's notice), so a
/// test can then put that step in whatever state it needs without racing the worker.
pub async fn assign_and_wait_for_the_notice(app: &TestApp, id: &str) {
    let assign = "mutation($input: AssignDisputeInput!) { assignDispute(input: $input) { dispute { version } userErrors { code message } } }";
    app.gql(&app.lead, assign, json!({"input": {"id": id, "assignee": "alice"}}))
        .await
        .data();
    let steps_query = "query($id: ID!) { dispute(id: $id) { steps { status } } }";
    for attempt in 0.. {
        let answer = app.gql(&app.viewer, steps_query, json!({ "id": id })).await;
        let steps = answer.data()["dispute"]["steps"].as_array().unwrap().clone();
        if !steps.is_empty() && steps.iter().all(|s| s["status"] == "SUCCEEDED") {
            break;
        }
        assert!(attempt < 200, "{}: the notify step never ran: {steps:?}", app.label);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Webhooks with these secrets and the default certificate cache.
fn webhooks_with(secrets: verdict_api::webhooks::WebhookSecrets) -> verdict_api::webhooks::Webhooks {
    verdict_api::webhooks::Webhooks {
        secrets: Arc::new(secrets),
        ..Default::default()
    }
}
