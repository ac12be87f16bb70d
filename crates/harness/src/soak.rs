//! The soak: one `verdict serve` on PostgreSQL under a steady mix (webhooks of every processor at a fixed
//! rate, each chargeback due soon so its timers fire and its acceptance reaches the fake processor, analysts
//! over GraphQL), sampling the server's RSS, p50/p99 latencies per window and the hot tables' sizes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::fake::Fake;
use crate::load::{self, Ledger, lock};
use crate::modes::Ctx;
use crate::setup::{Db, Setup, free_port, rows};

const TABLES: [&str; 6] = [
    "disputes",
    "dispute_events",
    "timers",
    "steps",
    "notifications",
    "mailbox",
];

/// The soak's `[scheduling]`: the deadline accepts, failed steps retry soon, and the finished work of a
/// dispute closed two minutes ago leaves the queue tables at the next minute's purge (the defaults are a
/// day and ten minutes; a 30-minute soak would not reach them). The other default schedules stay.
const SOAK_SCHEDULING: &str = r#"deadline_default = "accept"
retry_base_seconds = 1
retry_max_seconds = 30
finished_work_retention_minutes = 2
[[scheduling.schedules]]
name = "timer_sweep"
cron = "0 17 * * * *"
job = "sweep"
[[scheduling.schedules]]
name = "reconcile"
cron = "0 */15 * * * *"
job = "reconcile"
[[scheduling.schedules]]
name = "finished_work_purge"
cron = "30 * * * * *"
job = "purge_finished_work"
"#;

/// Seconds after it opens that a soak dispute is closed by its processor (or falls due, for Stripe and Adyen).
const CLOSE_AFTER: Duration = Duration::from_secs(20);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn open_disputes_sql() -> String {
    let open: Vec<String> = verdict_domain::Status::ALL
        .iter()
        .filter(|s| s.is_open())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("SELECT COUNT(*) FROM disputes WHERE status IN ({})", open.join(", "))
}

/// `verdict_steps_succeeded_total` from the server's `/metrics`.
async fn steps_succeeded(base: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("{base}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("verdict_steps_succeeded_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub async fn soak(ctx: &Ctx, seconds: u64, rate: f64, every: u64) -> anyhow::Result<()> {
    let Some(pg) = ctx.pg.as_deref() else {
        bail!("the soak runs on PostgreSQL: pass --postgres or set VERDICT_TEST_DATABASE_URL");
    };
    let db = Db::fresh(Some(pg)).await?;
    let result = soak_on(ctx, &db, seconds, rate, every).await;
    db.drop_database(ctx.keep).await;
    result
}

async fn soak_on(ctx: &Ctx, db: &Db, seconds: u64, rate: f64, every: u64) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    let setup = Setup::new(ctx.binary.clone(), db, &fake_url, SOAK_SCHEDULING)?;
    let token = setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = setup.spawn("soak", port, &[])?;
    server
        .wait_ready(&reqwest::Client::new(), Duration::from_secs(60))
        .await?;
    let pid = server.pid();
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let analysts = tokio::spawn(load::analysts(
        ledger.clone(),
        vec![base.clone()],
        token.clone(),
        stop.clone(),
        Duration::from_millis(100),
    ));
    // Webhooks at `rate` per second: each round holds 8 deliveries (5 openings, 3 closings).
    let sender = {
        let (ledger, stop, base) = (ledger.clone(), stop.clone(), base.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default();
            let permits = Arc::new(tokio::sync::Semaphore::new(32));
            let started = Instant::now();
            let mut sent = 0u64;
            let mut k = 0u64;
            while !stop.load(Ordering::SeqCst) {
                k += 1;
                let round = load::closing_round(&format!("s{k}"), chrono::Duration::seconds(20), CLOSE_AFTER);
                for delivery in round {
                    let due = started + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    sent += 1;
                    // A closing notification goes out `release_at` after its round; the others wait for a
                    // permit here, so a server that falls behind slows the sender rather than piling up.
                    let early = if delivery.release_at.is_zero() {
                        match permits.clone().acquire_owned().await {
                            Ok(permit) => Some(permit),
                            Err(_) => return,
                        }
                    } else {
                        None
                    };
                    let (http, ledger, base, permits) = (http.clone(), ledger.clone(), base.clone(), permits.clone());
                    tokio::spawn(async move {
                        let _permit = match early {
                            Some(permit) => permit,
                            None => {
                                tokio::time::sleep(delivery.release_at).await;
                                match permits.acquire_owned().await {
                                    Ok(permit) => permit,
                                    Err(_) => return,
                                }
                            }
                        };
                        let (path, headers, body) = load::request(&delivery);
                        let mut req = http.post(format!("{base}{path}")).body(body);
                        for (k, v) in headers {
                            req = req.header(k, v);
                        }
                        let at = Instant::now();
                        let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
                        let mut answers = lock(&ledger.answers);
                        if ok {
                            answers.0 += 1;
                            lock(&ledger.latencies).push((at, "webhook", at.elapsed()));
                        } else {
                            answers.2 += 1;
                        }
                    });
                }
            }
        })
    };

    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    let started = Instant::now();
    let mut window_start = Instant::now();
    let (mut last_done, mut last_sample) = (steps_succeeded(&base).await, Instant::now());
    println!(
        "minute,rss_mib,webhooks,webhook_p50_ms,webhook_p99_ms,graphql_p50_ms,graphql_p99_ms,disputes_open,timers_pending,timers_finished,steps_pending,steps_finished,steps_done_per_s,{},{}",
        TABLES.map(|t| format!("{t}_kib")).join(","),
        TABLES.map(|t| format!("{t}_dead")).join(",")
    );
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(every)).await;
        if let Some(status) = server.exited() {
            bail!("the server exited during the soak ({status}):\n{}", server.log_tail(30));
        }
        let now = Instant::now();
        let mut by_kind: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        lock(&ledger.latencies).retain(|(at, kind, d)| {
            if *at >= window_start {
                by_kind[usize::from(*kind == "graphql")].push(*d);
            }
            false
        });
        window_start = now;
        for v in &mut by_kind {
            v.sort();
        }
        let mut sizes = Vec::new();
        for table in TABLES {
            let sql = format!("SELECT pg_total_relation_size('{table}')::BIGINT AS n");
            let n = rows(store.db(), &sql)
                .await?
                .first()
                .and_then(|r| r.try_get::<i64>("", "n").ok())
                .unwrap_or(0);
            sizes.push((n / 1024).to_string());
        }
        let mut dead_tuples = Vec::new();
        for table in TABLES {
            let sql = format!("SELECT n_dead_tup AS n FROM pg_stat_user_tables WHERE relname = '{table}'");
            dead_tuples.push(crate::setup::count(store.db(), &sql).await?.to_string());
        }
        let open = crate::setup::count(store.db(), &open_disputes_sql()).await?;
        let count = |status: &'static str, table: &'static str| {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE status IN ({status})");
            let db = store.db();
            async move { crate::setup::count(db, &sql).await }
        };
        let timers = count("'pending'", "timers").await?;
        let timers_finished = count("'fired', 'cancelled'", "timers").await?;
        let steps = count("'pending'", "steps").await?;
        let steps_finished = count("'succeeded', 'cancelled'", "steps").await?;
        // Steps brought to an end in the window, from the server's own counter (deleted ones included).
        let done = steps_succeeded(&base).await;
        let done_rate = done.saturating_sub(last_done) as f64 / now.duration_since(last_sample).as_secs_f64();
        (last_done, last_sample) = (done, now);
        println!(
            "{:.1},{:.1},{},{:.1},{:.1},{:.1},{:.1},{open},{timers},{timers_finished},{steps},{steps_finished},{done_rate:.1},{},{}",
            started.elapsed().as_secs_f64() / 60.0,
            rss_kib(pid) as f64 / 1024.0,
            by_kind[0].len(),
            percentile(&by_kind[0], 0.5),
            percentile(&by_kind[0], 0.99),
            percentile(&by_kind[1], 0.5),
            percentile(&by_kind[1], 0.99),
            sizes.join(","),
            dead_tuples.join(",")
        );
    }
    stop.store(true, Ordering::SeqCst);
    let _ = analysts.await;
    let _ = sender.await;
    let answers = *lock(&ledger.answers);
    let dead = crate::setup::count(store.db(), "SELECT COUNT(*) FROM steps WHERE status = 'dead'").await?;
    let keys = fake.keys_by_target();
    let twice = keys.values().filter(|k| k.len() > 1).count();
    println!(
        "soak: {} webhooks acknowledged, {} failed; {} processor effects, {twice} performed twice; {dead} dead steps",
        answers.0,
        answers.2,
        fake.effects()
    );
    server.kill();
    if twice > 0 || answers.2 > 0 {
        bail!("soak: {} webhooks failed, {twice} processor effects twice", answers.2);
    }
    Ok(())
}
