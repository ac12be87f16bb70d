//! `verdict-harness http-load`: issue 10's load from a separate process. One `verdict serve` on a fresh
//! database (SQLite, or PostgreSQL with `--postgres`) takes, over HTTP, after a warm-up of 2,000 webhooks and an
//! `ANALYZE` (a fresh database has no planner statistics yet; a live one has):
//!
//! 1. signed Stripe `charge.dispute.created` webhooks for distinct disputes from `concurrency` connections as
//!    fast as it acknowledges them: throughput, and acknowledgement latency under that load;
//! 2. the same at half that rate, open loop (each request sent on schedule, whether or not the earlier ones
//!    were answered): acknowledgement latency percentiles at half capacity;
//! 3. GraphQL `transitionDispute` mutations on the disputes those webhooks opened (each moved to triaged,
//!    then to evidence gathering, with the version its previous answer returned), from `concurrency`
//!    connections: throughput and latency.
//!
//! A webhook's 2xx means stored durably; the server applies it after answering (before, when it is already
//! applying as many as it allows), so phases 1 and 2 also wait for every notification to be applied and report
//! the rate at which they were (from the first request to the last one applied) and each one's time from stored
//! to applied, read from the inbox. Every answer is checked, and the run fails if anything was refused or lost.
//! Figures go in docs/benchmarks.md; this is a benchmark, never a test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::fake::Fake;
use crate::load::{Delivery, Outcome, Source, graphql, request};
use crate::modes::Ctx;
use crate::setup::{Db, Setup, count, free_port, rows};

/// Scheduling of the measured server: the defaults, with the act-by times of these disputes days away (so
/// no timer fires during the run) and the cron jobs left as they are.
const SCHEDULING: &str = "";

/// Webhooks sent (and their work done) before anything is measured.
const WARM_UP: u64 = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort();
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(latencies, 0.5),
        percentile(latencies, 0.9),
        percentile(latencies, 0.99),
        percentile(latencies, 1.0)
    )
}

/// A Stripe dispute opening for dispute `i` of run `tag`, due in ten days.
fn opening(tag: &str, i: u64) -> Delivery {
    let now = chrono::Utc::now();
    let fraud = i.is_multiple_of(2);
    let body = json!({
        "id": format!("evt_{tag}_{i}"), "object": "event", "api_version": "2020-08-27",
        "created": now.timestamp(), "type": "charge.dispute.created", "livemode": false,
        "data": {"object": {
            "id": format!("dp_{tag}_{i}"), "object": "dispute", "amount": 4_890 + (i % 50_000) as i64,
            "charge": format!("ch_{tag}_{i}"), "payment_intent": format!("pi_{tag}_{i}"),
            "created": now.timestamp(), "currency": "eur",
            "evidence_details": {"due_by": (now + chrono::Duration::days(10)).timestamp(), "has_evidence": false,
                                 "past_due": false, "submission_count": 0},
            "is_charge_refundable": false, "livemode": false, "metadata": {},
            "reason": if fraud { "fraudulent" } else { "product_not_received" },
            "status": "needs_response",
            "payment_method_details": {"card": {"brand": "visa", "network_reason_code": if fraud { "10.4" } else { "13.1" }}}
        }}
    });
    Delivery {
        source: Source::Stripe,
        disputes: vec![format!("dp_{tag}_{i}")],
        body: body.to_string(),
        release_at: Duration::ZERO,
        acked: false,
        attempts: 0,
    }
}

/// Sends one webhook; its latency if acknowledged (2xx), else why not.
async fn send(http: &reqwest::Client, base: &str, delivery: &Delivery) -> Result<Duration, String> {
    let (path, headers, body) = request(delivery);
    let mut req = http.post(format!("{base}{path}")).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let sent = Instant::now();
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(sent.elapsed()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(err) => Err(err.to_string()),
    }
}

fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()?)
}

/// Phase 1: `total` openings from `concurrency` connections, closed loop. Returns the rate and latencies.
async fn saturate(base: &str, tag: &str, total: u64, concurrency: usize) -> anyhow::Result<(f64, Vec<Duration>)> {
    let http = client(concurrency)?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, base, tag) = (http.clone(), next.clone(), base.to_owned(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, String>(latencies);
                }
                latencies.push(send(&http, &base, &opening(&tag, i)).await?);
            }
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(
            task.await?
                .map_err(|e| anyhow::anyhow!("a webhook was not acknowledged: {e}"))?,
        );
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

/// Phase 2: openings at `rate` a second for `seconds`, each sent on schedule (open loop).
async fn at_rate(base: &str, tag: &str, rate: f64, seconds: f64) -> anyhow::Result<(u64, Vec<Duration>)> {
    let http = client(256)?;
    let total = (rate * seconds).round() as u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (http, base, delivery) = (http.clone(), base.to_owned(), opening(tag, i));
        tasks.spawn(async move { send(&http, &base, &delivery).await });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(joined) = tasks.join_next().await {
        latencies.push(joined?.map_err(|e| anyhow::anyhow!("a webhook was not acknowledged: {e}"))?);
    }
    Ok((total, latencies))
}

/// Waits until every webhook of run `tag` (`total` of them, the first sent at `started`) is applied, then
/// gives the rate at which they were (up to the last one applied) and each one's time from stored to applied.
async fn applying(
    store: &verdict_store::Store,
    tag: &str,
    total: u64,
    started: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let of_run = format!("FROM notifications WHERE event_id LIKE 'evt_{tag}_%'");
    let waiting = Instant::now();
    while count(store.db(), &format!("SELECT COUNT(*) {of_run} AND status = 'pending'")).await? > 0 {
        if waiting.elapsed() > Duration::from_secs(600) {
            bail!("webhooks of {tag} still pending 10 minutes after they were acknowledged");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last = started;
    let mut lags = Vec::with_capacity(total as usize);
    for row in rows(store.db(), &format!("SELECT received_at, applied_at {of_run}")).await? {
        let received: chrono::DateTime<chrono::Utc> = row.try_get("", "received_at")?;
        let applied: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "applied_at")?;
        let applied = applied.context("a webhook's notification was acknowledged but not applied")?;
        last = last.max(applied);
        lags.push((applied - received).to_std().unwrap_or_default());
    }
    if lags.len() as u64 != total {
        bail!("{total} webhooks of {tag} acknowledged but {} stored", lags.len());
    }
    let seconds = (last - started).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;
    Ok((total as f64 / seconds, lags))
}

const CURRENT: &str = "query($id: ID!) { dispute(id: $id) { version } }";
const TRANSITION: &str = "mutation($i: TransitionDisputeInput!) { transitionDispute(input: $i) { dispute { status version } userErrors { code message } } }";

/// Phase 3: every listed dispute moved to triaged (if it is not yet) and then to evidence gathering, each
/// with the version its previous answer returned, from `concurrency` connections.
async fn transitions(
    base: &str,
    token: &str,
    disputes: Vec<(String, String, i64)>,
    concurrency: usize,
) -> anyhow::Result<(u64, u64, f64, Vec<Duration>)> {
    let http = client(concurrency)?;
    let conflicts = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(std::sync::Mutex::new(disputes));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, queue, base, token) = (http.clone(), queue.clone(), base.to_owned(), token.to_owned());
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().map_err(|_| "poisoned".to_owned())?.pop();
                let Some((id, status, mut version)) = next else {
                    return Ok::<_, String>(latencies);
                };
                let steps: &[&str] = if status == "notified" {
                    &["TRIAGED", "EVIDENCE_GATHERING"]
                } else {
                    &["EVIDENCE_GATHERING"]
                };
                for to in steps {
                    // The server's own work (its triage, the order lookup) may move the dispute first: a
                    // stale version is refused, and asked again with the version the dispute is at.
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        let variables =
                            json!({"i": {"id": id, "to": to, "reason": "http load", "expectedVersion": version}});
                        let sent = Instant::now();
                        let (outcome, data) = graphql(&http, &base, &token, TRANSITION, variables).await;
                        latencies.push(sent.elapsed());
                        if outcome == Outcome::Acked {
                            version = data["transitionDispute"]["dispute"]["version"]
                                .as_i64()
                                .ok_or_else(|| format!("no version in {data}"))?;
                            break;
                        }
                        let conflict = data.to_string().contains("VERSION_CONFLICT");
                        if !conflict || tries >= 5 {
                            return Err(format!("transition of {id} to {to}: {outcome:?} {data}"));
                        }
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        let (_, now) = graphql(&http, &base, &token, CURRENT, json!({"id": id})).await;
                        version = now["dispute"]["version"].as_i64().unwrap_or(version);
                    }
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let n = latencies.len() as u64;
    Ok((
        n,
        conflicts.load(Ordering::Relaxed),
        n as f64 / started.elapsed().as_secs_f64(),
        latencies,
    ))
}

/// Waits until the server has done the work the webhooks so far gave it (each opening's order lookup step),
/// so that the next phase measures its own load, not the previous phase's backlog.
async fn drained(store: &verdict_store::Store, after: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let sql = "SELECT COUNT(*) FROM steps WHERE status = 'pending'";
    while count(store.db(), sql).await? > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the server's steps were not done 10 minutes after {after}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "http-load: the server's steps after {after} were done {:.1} s later",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn http_load(ctx: &Ctx, webhooks: u64, concurrency: usize, half_rate_seconds: f64) -> anyhow::Result<()> {
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let result = run(ctx, &db, webhooks, concurrency, half_rate_seconds).await;
    db.drop_database(ctx.keep).await;
    result
}

async fn run(ctx: &Ctx, db: &Db, webhooks: u64, concurrency: usize, half_rate_seconds: f64) -> anyhow::Result<()> {
    let backend = if db.postgres { "postgres" } else { "sqlite" };
    let (_fake, fake_url) = Fake::start().await?;
    let mut setup = Setup::new(ctx.binary.clone(), db, &fake_url, SCHEDULING)?;
    setup.min_connections = 32;
    let token = setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = setup.spawn("http-load", port, &[("VERDICT_LOG_LEVEL", "warn".to_owned())])?;
    server
        .wait_ready(&reqwest::Client::new(), Duration::from_secs(60))
        .await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    // A fresh database has no statistics: until autovacuum's first ANALYZE (a minute or more) its planner
    // scans tables it believes empty. A live system's has them, so the run starts from a warmed, analysed one.
    saturate(&base, &format!("{tag}w"), WARM_UP, concurrency).await?;
    drained(&store, "the warm-up").await?;
    if db.postgres {
        store.execute_unprepared("ANALYZE").await?;
    }

    let started = chrono::Utc::now();
    let (acked, mut latencies) = saturate(&base, &format!("{tag}a"), webhooks, concurrency).await?;
    let (rate, mut lags) = applying(&store, &format!("{tag}a"), webhooks, started).await?;
    println!(
        "http-load [{backend}]: {webhooks} Stripe webhooks from {concurrency} connections, acknowledged (verified, \
         stored, deduplicated) at {acked:.0}/s and applied at {rate:.0}/s; ack {}; stored to applied {}",
        summary(&mut latencies),
        summary(&mut lags)
    );
    drained(&store, "the saturation phase").await?;
    let half = rate / 2.0;
    let started = chrono::Utc::now();
    let (sent, mut latencies) = at_rate(&base, &format!("{tag}b"), half, half_rate_seconds).await?;
    let (_, mut lags) = applying(&store, &format!("{tag}b"), sent, started).await?;
    println!(
        "http-load [{backend}]: {sent} webhooks at {half:.0}/s (half the applied rate, open loop, \
         {half_rate_seconds:.0} s); ack {}; stored to applied {}",
        summary(&mut latencies),
        summary(&mut lags)
    );

    let opened = count(store.db(), "SELECT COUNT(*) FROM disputes").await?;
    let applied = count(
        store.db(),
        "SELECT COUNT(*) FROM notifications WHERE status = 'applied'",
    )
    .await?;
    let expected = WARM_UP + webhooks + sent;
    if opened as u64 != expected || applied as u64 != expected {
        bail!("{expected} webhooks acknowledged but {opened} disputes and {applied} applied notifications stored");
    }
    let listed = rows(
        store.db(),
        &format!("SELECT id, status, version FROM disputes WHERE processor_dispute_id LIKE 'dp_{tag}a_%'"),
    )
    .await?;
    let mut disputes = Vec::with_capacity(listed.len());
    for row in listed {
        let id: uuid::Uuid = row.try_get("", "id")?;
        let status: String = row.try_get("", "status")?;
        let version: i64 = row.try_get("", "version")?;
        disputes.push((id.to_string(), status, version));
    }
    drained(&store, "the half-rate phase").await?;
    let (n, conflicts, rate, mut latencies) = transitions(&base, &token, disputes, concurrency)
        .await
        .context("GraphQL transitions")?;
    println!(
        "http-load [{backend}]: {n} GraphQL transitions (transitionDispute, version-checked; {conflicts} of them \
         refused as stale after the server's own work moved the dispute, and asked again) from {concurrency} \
         connections at {rate:.0}/s; {}",
        summary(&mut latencies)
    );
    if let Some(status) = server.exited() {
        bail!("the server exited during the run ({status}):\n{}", server.log_tail(30));
    }
    server.kill();
    Ok(())
}
