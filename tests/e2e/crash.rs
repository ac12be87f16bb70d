//! Crash safety of the real binary (issue 4): kill -9 the server while timers fire and steps run, restart it on
//! the same database, and check that every due timer fired once in effect, that no refund reached the
//! processor twice (counted by idempotency key) and that no event was lost.
//!
//! The processor is a fake Stripe on a random port that records every POST (path, `Idempotency-Key`,
//! payment) and, like Stripe, creates one refund per idempotency key: a request retried after a crash with the
//! same key is harmless, a second key for the same payment would be a second refund. It also answers the
//! look-ups Verdict makes before a refund or an acceptance (`GET /v1/refunds?payment_intent=...` with the
//! refunds made so far and their `metadata`, `GET /v1/disputes/{id}` with `lost` once closed). It answers
//! slowly, so that requests are in flight when the kill lands.
//!
//! Two groups of Stripe disputes are seeded through the engine with a clock five days back:
//! - refunds: inquiries, triaged and resolved, so each has a pending `refund` step, whose success enqueues the
//!   `customer_message` step;
//! - timers: chargebacks due in twelve hours, so each has three reminders and its act-by time (a day before
//!   `due_by`) due, and its deadline ahead; the server's deadline policy is `accept`, so each act-by timer
//!   enqueues an `accept_at_processor` step (a `POST /v1/disputes/{id}/close` at the fake).
//!
//! The server is killed three times, each time at a moment it holds claimed work it has not completed: while
//! refunds are in flight at the fake, while a batch of timers is firing, and while the deadlines' accept calls
//! are in flight. A fourth run works off the rest (taking over the dead runs' leases once they expire), then
//! the database and the fake's record are checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::{Json, Router};
use chrono::Duration;
use sea_orm::{ConnectionTrait, QueryResult, Statement};
use serde_json::{Value, json};
use uuid::Uuid;
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, CustomerEmail, CustomerName, Dispute, Locale, Money,
    NewDispute, Processor, ReasonCode, Stage,
};
use verdict_engine::{Clock, Engine, ManualClock, SystemClock};
use verdict_store::Store;
use verdict_store::testing::test_databases;

/// Disputes resolved with a refund, and disputes whose deadline timers are due.
const REFUNDS: usize = 100;
const DEADLINES: usize = 100;
/// How long the fake takes to answer each request.
const STRIPE_DELAY: StdDuration = StdDuration::from_millis(100);
const API_KEY: &str = "sk_test_crash";

// ---------------------------------------------------------------------------------------------------------
// The fake Stripe.

#[derive(Debug, Clone)]
struct Call {
    path: String,
    idempotency_key: String,
    /// `payment_intent` of a refund.
    payment: Option<String>,
    authorized: bool,
}

#[derive(Default)]
struct FakeStripe {
    calls: Mutex<Vec<Call>>,
    /// Refunds effected: one per idempotency key, as Stripe does (key -> refund object).
    refunds: Mutex<HashMap<String, Value>>,
    /// Disputes closed (accepted).
    closed: Mutex<BTreeSet<String>>,
    /// Requests received and not answered yet: [other, refunds].
    in_flight: [AtomicUsize; 2],
}

/// Counts a request in flight until it is answered or its client goes away.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeStripe {
    async fn start() -> (Arc<FakeStripe>, String) {
        let fake = Arc::new(FakeStripe::default());
        let app = Router::new().fallback(stripe_endpoint).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, url)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn in_flight(&self, refunds: bool) -> usize {
        self.in_flight[usize::from(refunds)].load(Ordering::SeqCst)
    }

    fn count(&self, refunds: bool) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| (c.path == "/v1/refunds") == refunds)
            .count()
    }
}

async fn stripe_endpoint(
    State(fake): State<Arc<FakeStripe>>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    if method == axum::http::Method::GET {
        return stripe_lookup(&fake, &uri, &headers).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let path = uri.path().to_owned();
    let idempotency_key = header("idempotency-key");
    let payment = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("payment_intent="))
        .map(str::to_owned);
    let authorized = header("authorization") == format!("Bearer {API_KEY}");
    let _in_flight = InFlight::new(&fake.in_flight[usize::from(path == "/v1/refunds")]);
    let refund = (path == "/v1/refunds").then(|| {
        // Ids and UUIDs only: no percent-decoding needed beyond the brackets of the key.
        let dispute_id = body
            .split('&')
            .find_map(|pair| pair.strip_prefix("metadata%5Bverdict_dispute_id%5D="))
            .map(str::to_owned);
        let mut refunds = fake.refunds.lock().unwrap();
        let next = format!("re_crash{}", refunds.len() + 1);
        refunds
            .entry(idempotency_key.clone())
            .or_insert_with(|| {
                json!({"id": next, "object": "refund", "status": "succeeded", "payment_intent": payment,
                       "metadata": {"verdict_dispute_id": dispute_id}})
            })
            .clone()
    });
    fake.calls.lock().unwrap().push(Call {
        path: path.clone(),
        idempotency_key,
        payment: payment.clone(),
        authorized,
    });
    tokio::time::sleep(STRIPE_DELAY).await;
    if !authorized {
        let error = json!({"error": {"type": "invalid_request_error", "code": "api_key_invalid"}});
        return (StatusCode::UNAUTHORIZED, Json(error));
    }
    if let Some(refund) = refund {
        return (StatusCode::OK, Json(refund));
    }
    match path
        .strip_prefix("/v1/disputes/")
        .and_then(|rest| rest.strip_suffix("/close"))
    {
        Some(id) => {
            fake.closed.lock().unwrap().insert(id.to_owned());
            (
                StatusCode::OK,
                Json(json!({"id": id, "object": "dispute", "status": "lost"})),
            )
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})),
        ),
    }
}

/// The GETs Verdict makes before a refund or an acceptance: the payment's refunds, the dispute's status.
async fn stripe_lookup(fake: &FakeStripe, uri: &Uri, headers: &HeaderMap) -> (StatusCode, Json<Value>) {
    tokio::time::sleep(STRIPE_DELAY).await;
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {API_KEY}"));
    if !authorized {
        let error = json!({"error": {"type": "invalid_request_error", "code": "api_key_invalid"}});
        return (StatusCode::UNAUTHORIZED, Json(error));
    }
    if uri.path() == "/v1/refunds" {
        let payment = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("payment_intent="))
            .map(str::to_owned);
        let data: Vec<Value> = fake
            .refunds
            .lock()
            .unwrap()
            .values()
            .filter(|r| r["payment_intent"].as_str() == payment.as_deref())
            .cloned()
            .collect();
        return (
            StatusCode::OK,
            Json(json!({"object": "list", "url": "/v1/refunds", "has_more": false, "data": data})),
        );
    }
    match uri.path().strip_prefix("/v1/disputes/") {
        Some(id) if !id.contains('/') => {
            let status = if fake.closed.lock().unwrap().contains(id) {
                "lost"
            } else {
                "needs_response"
            };
            (
                StatusCode::OK,
                Json(json!({"id": id, "object": "dispute", "status": status})),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})),
        ),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The real binary as a child process.

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, db_url: &str, config: &Path, run: usize) -> Server {
        let log = dir.join(format!("server-{run}.log"));
        let mut command = Process::new(env!("CARGO_BIN_EXE_verdict"));
        for (name, _) in std::env::vars() {
            if name.starts_with("VERDICT_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .current_dir(dir)
            .env("VERDICT_DATABASE_URL", db_url)
            .env("VERDICT_LISTEN", "127.0.0.1:0")
            .env("VERDICT_STRIPE_API_KEY", API_KEY)
            .env("VERDICT_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Server { child, log }
    }

    /// The end of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Fails the test (with the log) if the server exited by itself.
    fn assert_running(&mut self, label: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{label}: the server exited on its own ({status}):\n{}", self.log_tail());
        }
    }

    /// SIGKILL: no shutdown hook, no graceful drain.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 20 ms until it holds, failing after `timeout` or if the server dies.
async fn wait_for<F, Fut>(label: &str, what: &str, server: &mut Server, timeout: StdDuration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        server.assert_running(label);
        if done().await {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "{label}: timed out after {timeout:?} waiting for {what}:\n{}",
                server.log_tail()
            );
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Seeding, through the engine's commands.

fn new_dispute(
    pid: &str,
    payment: &str,
    stage: Stage,
    due_by: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> NewDispute {
    NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: pid.to_owned(),
        payment_reference: payment.to_owned(),
        order_reference: Some(format!("ORD-{pid}")),
        seller_id: Some("seller-crash".to_owned()),
        customer: Customer {
            name: Some(CustomerName::parse("Jeanne Dupont").unwrap()),
            email: Some(CustomerEmail::parse("jeanne.dupont@example.fr").unwrap()),
            locale: Locale::Fr,
        },
        amount: Money::new(4_890, Currency::parse("EUR").unwrap()).unwrap(),
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1").unwrap(),
        reason_code_raw: "13.1".to_owned(),
        stage,
        due_by,
        opened_at: now,
    }
}

async fn act(engine: &Engine, dispute: &Dispute, action: Action) -> Dispute {
    let command = Command::new(Actor::analyst("crash-test"), action).because("crash test");
    engine.handle(dispute.id, command).await.unwrap()
}

/// Seeds both groups five days in the past; returns (payment -> dispute id) for the refunds and (processor
/// dispute id -> dispute id) for the deadlines.
async fn seed(engine: &Engine, clock: &ManualClock) -> (BTreeMap<String, Uuid>, BTreeMap<String, Uuid>) {
    let now = clock.now();
    let open = |new: NewDispute| Command::new(Actor::analyst("crash-test"), Action::Open(Box::new(new)));
    let mut refunds = BTreeMap::new();
    for i in 0..REFUNDS {
        let payment = format!("pi_crash_refund_{i:03}");
        let new = new_dispute(&format!("du_crash_{i:03}"), &payment, Stage::Inquiry, None, now);
        let dispute = engine.open(open(new)).await.unwrap();
        let dispute = act(engine, &dispute, Action::Triage { queue: None }).await;
        let dispute = act(engine, &dispute, Action::Resolve).await;
        refunds.insert(payment, dispute.id.as_uuid());
    }
    // Due in twelve hours: the act-by time (a day before) and the reminders before it are due, the processor's
    // deadline is not, so the policy's acceptance and nothing else closes each dispute.
    let due_by = now + Duration::days(5) + Duration::hours(12);
    let mut deadlines = BTreeMap::new();
    for i in 0..DEADLINES {
        let pid = format!("dp_crash_{i:03}");
        let new = new_dispute(
            &pid,
            &format!("pi_crash_deadline_{i:03}"),
            Stage::Chargeback,
            Some(due_by),
            now,
        );
        let dispute = engine.open(open(new)).await.unwrap();
        deadlines.insert(pid, dispute.id.as_uuid());
    }
    (refunds, deadlines)
}

// ---------------------------------------------------------------------------------------------------------
// Reading the database (read-only, while the server runs or after).

async fn query(store: &Store, sql: &str) -> Vec<QueryResult> {
    let backend = store.db().get_database_backend();
    store
        .db()
        .query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
}

async fn count(store: &Store, sql: &str) -> i64 {
    query(store, sql).await[0].try_get("", "n").unwrap()
}

fn text(row: &QueryResult, column: &str) -> String {
    row.try_get("", column).unwrap()
}

fn id(row: &QueryResult, column: &str) -> Uuid {
    row.try_get("", column).unwrap()
}

async fn pending(store: &Store, table: &str, kind: Option<&str>) -> i64 {
    let kind = kind.map(|k| format!(" AND kind = '{k}'")).unwrap_or_default();
    count(
        store,
        &format!("SELECT COUNT(*) AS n FROM {table} WHERE status = 'pending'{kind}"),
    )
    .await
}

/// Each dispute's version, to check that nothing committed before a kill is gone after it.
async fn versions(store: &Store) -> BTreeMap<Uuid, i64> {
    query(store, "SELECT id, version FROM disputes")
        .await
        .iter()
        .map(|row| (id(row, "id"), row.try_get("", "version").unwrap()))
        .collect()
}

async fn assert_nothing_lost(label: &str, store: &Store, before: &BTreeMap<Uuid, i64>) {
    let after = versions(store).await;
    for (dispute, version) in before {
        let now = after.get(dispute).copied().unwrap_or(0);
        assert!(
            now >= *version,
            "{label}: dispute {dispute} was at version {version} before the kill and is at {now} after it"
        );
    }
}

#[derive(Default, Debug)]
struct DisputeRows {
    status: String,
    version: i64,
    /// (version, kind, actor), in version order.
    events: Vec<(i64, String, String)>,
    /// (kind, status)
    timers: Vec<(String, String)>,
    /// (kind, status, idempotency key)
    steps: Vec<(String, String, String)>,
    /// (channel, message id)
    mail: Vec<(String, String)>,
}

async fn everything(store: &Store) -> BTreeMap<Uuid, DisputeRows> {
    let mut all: BTreeMap<Uuid, DisputeRows> = BTreeMap::new();
    for row in query(store, "SELECT id, status, version FROM disputes").await {
        let rows = all.entry(id(&row, "id")).or_default();
        rows.status = text(&row, "status");
        rows.version = row.try_get("", "version").unwrap();
    }
    for row in query(
        store,
        "SELECT dispute_id, version, kind, actor FROM dispute_events ORDER BY dispute_id, version",
    )
    .await
    {
        all.entry(id(&row, "dispute_id")).or_default().events.push((
            row.try_get("", "version").unwrap(),
            text(&row, "kind"),
            text(&row, "actor"),
        ));
    }
    for row in query(store, "SELECT dispute_id, kind, status FROM timers").await {
        all.entry(id(&row, "dispute_id"))
            .or_default()
            .timers
            .push((text(&row, "kind"), text(&row, "status")));
    }
    for row in query(store, "SELECT dispute_id, kind, status, idempotency_key FROM steps").await {
        all.entry(id(&row, "dispute_id")).or_default().steps.push((
            text(&row, "kind"),
            text(&row, "status"),
            text(&row, "idempotency_key"),
        ));
    }
    for row in query(store, "SELECT dispute_id, channel, message_id FROM mailbox").await {
        all.entry(id(&row, "dispute_id"))
            .or_default()
            .mail
            .push((text(&row, "channel"), text(&row, "message_id")));
    }
    all
}

/// The keys a set of calls used, grouped by what they were for.
fn keys_by<'a>(calls: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (target, key) in calls {
        keys.entry(target.to_owned()).or_default().insert(key.to_owned());
    }
    keys
}

/// When to kill a run: once the fake saw enough calls of one kind, at a moment such calls are in flight at
/// the fake; without calls, at a moment the server holds claimed rows of `table` it has not completed, some
/// of them done already (a batch of timers partly fired).
struct KillPoint {
    what: &'static str,
    /// (refund calls?, at least this many in all)
    calls: Option<(bool, usize)>,
    table: &'static str,
    kind: Option<&'static str>,
}

const KILLS: [KillPoint; 3] = [
    KillPoint {
        what: "refunds in flight",
        calls: Some((true, REFUNDS / 5)),
        table: "steps",
        kind: Some("refund"),
    },
    KillPoint {
        what: "timers firing",
        calls: None,
        table: "timers",
        kind: None,
    },
    KillPoint {
        what: "accept calls in flight",
        calls: Some((false, DEADLINES / 5)),
        table: "steps",
        kind: Some("accept_at_processor"),
    },
];

/// The workers holding claimed rows of `table` (and `kind`), one entry per row.
async fn holders(store: &Store, table: &str, kind: Option<&str>) -> Vec<String> {
    let kind = kind.map(|k| format!(" AND kind = '{k}'")).unwrap_or_default();
    let sql = format!("SELECT locked_by FROM {table} WHERE status = 'pending' AND locked_by IS NOT NULL{kind}");
    query(store, &sql)
        .await
        .iter()
        .map(|row| text(row, "locked_by"))
        .collect()
}

/// Kills `server` (SIGKILL) at `target`, checks that the kill landed mid-work and that nothing committed before
/// it is gone, and says what was in flight. Workers of killed runs are added to `dead`.
async fn kill_mid_flight(
    label: &str,
    mut server: Server,
    store: &Store,
    fake: &FakeStripe,
    target: &KillPoint,
    dead: &mut BTreeSet<String>,
) -> String {
    if let Some((refunds, at_least)) = target.calls {
        wait_for(label, target.what, &mut server, StdDuration::from_secs(45), || async {
            fake.count(refunds) >= at_least
        })
        .await;
    }
    // Wait for work in flight; a missed moment weakens this run, it does not fail it.
    let ready = Instant::now();
    let left_when_ready = pending(store, target.table, target.kind).await;
    let before = loop {
        server.assert_running(label);
        let before = versions(store).await;
        let in_flight = match target.calls {
            Some((refunds, _)) => fake.in_flight(refunds) > 0,
            None => {
                let live = holders(store, target.table, target.kind).await;
                live.iter().any(|worker| !dead.contains(worker))
                    && pending(store, target.table, target.kind).await < left_when_ready
            }
        };
        if in_flight || ready.elapsed() > StdDuration::from_secs(5) {
            break before;
        }
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    };
    server.kill();
    assert_nothing_lost(label, store, &before).await;
    let left = pending(store, target.table, target.kind).await;
    assert!(
        left > 0,
        "{label}: the kill for {} must land mid-work, but no {} {} are left",
        target.what,
        target.kind.unwrap_or(""),
        target.table
    );
    let mut held = BTreeMap::new();
    for table in ["timers", "steps"] {
        let workers = holders(store, table, None).await;
        held.insert(table, workers.iter().filter(|w| !dead.contains(*w)).count());
        dead.extend(workers);
    }
    format!(
        "{} ({} refund and {} accept requests so far; {left} {}{} left; {} timers and {} steps held)",
        target.what,
        fake.count(true),
        fake.count(false),
        target.kind.map(|k| format!("{k} ")).unwrap_or_default(),
        target.table,
        held["timers"],
        held["steps"],
    )
}

// ---------------------------------------------------------------------------------------------------------
// The test.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_timers_fire_and_steps_run_loses_nothing_and_refunds_once() {
    verdict::install_crypto_provider();
    for db in test_databases().await.unwrap() {
        let label = db.label;
        let started = Instant::now();
        let (fake, stripe_url) = FakeStripe::start().await;

        let clock = Arc::new(ManualClock::new(SystemClock.now() - Duration::days(5)));
        let engine = verdict::connect(&db.url, clock.clone()).await.unwrap();
        let store = engine.store().clone();
        let (refunded, deadlines) = seed(&engine, &clock).await;
        let seeded_in = started.elapsed();

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("verdict.toml");
        // The disputes were closed five days ago by the seed's clock: a retention shorter than that would let
        // the ten-minute finished-work purge delete the steps this test reads back if a run crosses its tick.
        std::fs::write(
            &config,
            format!(
                "[processors]\n\
                 stripe_base_url = \"{stripe_url}\"\n\
                 [scheduling]\n\
                 deadline_default = \"accept\"\n\
                 worker_concurrency = 4\n\
                 worker_batch_size = 10\n\
                 lease_seconds = 5\n\
                 retry_base_seconds = 1\n\
                 retry_max_seconds = 2\n\
                 max_idle_seconds = 1\n\
                 finished_work_retention_minutes = 43200\n"
            ),
        )
        .unwrap();

        // Three runs killed with work in flight, then a fourth that works off the rest.
        let mut dead_workers = BTreeSet::new();
        let mut kills = Vec::new();
        for (run, target) in KILLS.iter().enumerate() {
            let server = Server::start(dir.path(), &db.url, &config, run + 1);
            kills.push(kill_mid_flight(label, server, &store, &fake, target, &mut dead_workers).await);
        }

        // The last run works off the rest, including what the killed runs held leases on.
        let mut server = Server::start(dir.path(), &db.url, &config, KILLS.len() + 1);
        let drain = Instant::now();
        wait_for(
            label,
            "every timer and step to be done",
            &mut server,
            StdDuration::from_secs(60),
            || async { pending(&store, "timers", None).await == 0 && pending(&store, "steps", None).await == 0 },
        )
        .await;
        let drained_in = drain.elapsed();
        server.kill();

        let all = everything(&store).await;
        let calls = fake.calls();
        assert!(calls.iter().all(|c| c.authorized), "{label}: unauthorized call");

        // No refund reached the processor twice: one idempotency key per payment, the refund step's own, and
        // every resolved dispute refunded.
        let refund_calls: Vec<&Call> = calls.iter().filter(|c| c.path == "/v1/refunds").collect();
        let refund_keys = keys_by(
            refund_calls
                .iter()
                .map(|c| (c.payment.as_deref().unwrap_or("none"), c.idempotency_key.as_str())),
        );
        assert_eq!(
            refund_keys.keys().cloned().collect::<Vec<_>>(),
            refunded.keys().cloned().collect::<Vec<_>>(),
            "{label}: every resolved dispute is refunded, nothing else is"
        );
        for (payment, keys) in &refund_keys {
            let rows = &all[&refunded[payment]];
            let step_keys: BTreeSet<String> = rows
                .steps
                .iter()
                .filter(|(kind, _, _)| kind == "refund")
                .map(|(_, _, key)| key.clone())
                .collect();
            assert_eq!(keys, &step_keys, "{label}: refund of {payment} sent under other keys");
            assert_eq!(keys.len(), 1, "{label}: {payment} refunded twice: {keys:?}");
        }
        assert_eq!(fake.refunds.lock().unwrap().len(), REFUNDS, "{label}: refunds effected");

        // The same for the deadlines' accept calls, keyed by the processor dispute id in the path.
        let close_keys = keys_by(calls.iter().filter(|c| c.path != "/v1/refunds").map(|c| {
            let pid = c.path.trim_start_matches("/v1/disputes/").trim_end_matches("/close");
            (pid, c.idempotency_key.as_str())
        }));
        assert_eq!(
            close_keys.keys().cloned().collect::<Vec<_>>(),
            deadlines.keys().cloned().collect::<Vec<_>>(),
            "{label}: every deadline accepted at the processor, nothing else"
        );
        for (pid, keys) in &close_keys {
            let rows = &all[&deadlines[pid]];
            let step_keys: BTreeSet<String> = rows
                .steps
                .iter()
                .filter(|(kind, _, _)| kind == "accept_at_processor")
                .map(|(_, _, key)| key.clone())
                .collect();
            assert_eq!(keys, &step_keys, "{label}: {pid} accepted under other keys");
            assert_eq!(keys.len(), 1, "{label}: {pid} accepted twice: {keys:?}");
        }

        for (dispute, rows) in &all {
            let context = || format!("{label}: dispute {dispute}: {rows:?}");
            // No event lost: versions 1..=n without gaps, and the projection at the last one.
            let event_versions: Vec<i64> = rows.events.iter().map(|(v, _, _)| *v).collect();
            assert_eq!(event_versions, (1..=rows.version).collect::<Vec<_>>(), "{}", context());
            // Every step done, none dead, one per idempotency key.
            assert!(
                rows.steps.iter().all(|(_, status, _)| status == "succeeded"),
                "{}",
                context()
            );
            let step_keys: BTreeSet<&String> = rows.steps.iter().map(|(_, _, key)| key).collect();
            assert_eq!(step_keys.len(), rows.steps.len(), "{}", context());
            let kinds: Vec<&str> = rows.events.iter().map(|(_, kind, _)| kind.as_str()).collect();
            let steps_of = |kind: &str| rows.steps.iter().filter(|(k, _, _)| k == kind).count();
            if refunded.values().any(|id| id == dispute) {
                assert_eq!(rows.status, "resolved", "{}", context());
                assert_eq!(kinds, ["opened", "triaged", "resolved"], "{}", context());
                assert_eq!(
                    (steps_of("refund"), steps_of("customer_message")),
                    (1, 1),
                    "{}",
                    context()
                );
                // The customer was written to once.
                let customer: Vec<&(String, String)> =
                    rows.mail.iter().filter(|(channel, _)| channel == "customer").collect();
                assert_eq!(customer.len(), 1, "{}", context());
                assert!(rows.timers.is_empty(), "{}", context());
                continue;
            }
            assert!(deadlines.values().any(|id| id == dispute), "{}", context());
            // Every due timer fired once in effect: none left pending, no duplicate timer, the act-by time's
            // acceptance recorded once, and each reminder recorded once if it fired, never if it was cancelled
            // (the act-by timer acted first because the reminder's lease was still held by a killed server).
            assert_eq!(rows.status, "accepted", "{}", context());
            let timer_kinds: BTreeSet<&str> = rows.timers.iter().map(|(kind, _)| kind.as_str()).collect();
            assert_eq!(
                timer_kinds,
                BTreeSet::from(["act_by", "deadline", "reminder_72h", "reminder_24h", "reminder_4h"]),
                "{}",
                context()
            );
            assert_eq!(rows.timers.len(), 5, "{}", context());
            for (kind, status) in &rows.timers {
                let actor = format!("timer:{kind}");
                let effects = rows.events.iter().filter(|(_, _, a)| *a == actor).count();
                let expected = match (kind.as_str(), status.as_str()) {
                    ("act_by", "fired") => 1,
                    ("act_by", _) => panic!("{}: the act-by timer is {status}", context()),
                    ("deadline", "cancelled") => 0,
                    ("deadline", _) => panic!("{}: the deadline timer is {status}", context()),
                    (_, "fired") => 1,
                    (_, "cancelled") => 0,
                    _ => panic!("{}: timer {kind} is {status}", context()),
                };
                assert_eq!(effects, expected, "{}: effects of {kind}", context());
            }
            assert_eq!(kinds.first(), Some(&"opened"), "{}", context());
            assert_eq!(kinds.last(), Some(&"accepted"), "{}", context());
            assert_eq!(
                rows.events.last().map(|(_, _, actor)| actor.as_str()),
                Some("timer:act_by"),
                "{}",
                context()
            );
            let reminders = kinds.iter().filter(|k| **k == "reminder_recorded").count();
            assert_eq!(kinds.len(), 2 + reminders, "{}", context());
            assert_eq!(steps_of("accept_at_processor"), 1, "{}", context());
            assert_eq!(steps_of("notify_assignee"), reminders, "{}", context());
        }
        assert_eq!(all.len(), REFUNDS + DEADLINES, "{label}: disputes");

        let resent =
            |calls: &[&Call]| calls.len() - calls.iter().map(|c| &c.idempotency_key).collect::<BTreeSet<_>>().len();
        let close_calls: Vec<&Call> = calls.iter().filter(|c| c.path != "/v1/refunds").collect();
        eprintln!(
            "{label}: seeded in {seeded_in:?}; killed with {}; drained in {drained_in:?}; \
             {} refund requests for {REFUNDS} refunds ({} re-sent), {} accept requests ({} re-sent); {:?} in all",
            kills.join("; "),
            refund_calls.len(),
            resent(&refund_calls),
            close_calls.len(),
            resent(&close_calls),
            started.elapsed(),
        );
    }
}
