//! The harness's modes. Each makes a fresh database, runs the real binary, and fails (exit 1) with the list
//! of violations when an invariant does not hold.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::Rng as _;

use crate::check::{self, Report};
use crate::fake::Fake;
use crate::load::{self, Ledger, lock};
use crate::setup::{Db, Setup, free_port};

pub struct Ctx {
    pub binary: PathBuf,
    pub pg: Option<String>,
    pub keep: bool,
}

/// Scheduling for fault runs: short leases and retries so that takeovers and retries happen within seconds;
/// act-by timers accept (an acceptance at the processor).
pub const FAST_SCHEDULING: &str = "deadline_default = \"accept\"\n\
     worker_concurrency = 4\n\
     worker_batch_size = 10\n\
     lease_seconds = 5\n\
     retry_base_seconds = 1\n\
     retry_max_seconds = 2\n\
     max_idle_seconds = 1\n";

fn label(db: &Db) -> &'static str {
    if db.postgres { "postgres" } else { "sqlite" }
}

pub fn finish(name: &str, db: &Db, report: &Report, started: Instant, keep: bool) -> anyhow::Result<()> {
    let facts: Vec<String> = report.facts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!(
        "{name} [{}]: {} in {:.1} s; {}",
        label(db),
        if report.violations.is_empty() { "PASS" } else { "FAIL" },
        started.elapsed().as_secs_f64(),
        facts.join(", ")
    );
    if keep {
        println!("  kept: {} ({})", db.dir.path().display(), db.url);
    }
    if !report.violations.is_empty() {
        for v in &report.violations {
            println!("  violation: {v}");
        }
        bail!("{name}: {} violations", report.violations.len());
    }
    Ok(())
}

/// Waits until every notification is delivered and the database has nothing left to do.
/// `not_before`: when the timers the load set to fall due (the Stripe chargebacks' act-by times) are due.
async fn settle(
    store: &verdict_store::Store,
    ledger: &Ledger,
    not_before: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let (n, s, t) = check::drained(store.db()).await?;
        if ledger.unacked() == 0 && n == 0 && s == 0 && t == 0 && Instant::now() >= not_before {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "not settled after {timeout:?}: {} notifications unacknowledged, {n} pending in the inbox, {s} steps \
                 pending, {t} timers overdue",
                ledger.unacked()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn crash(ctx: &Ctx, rounds: usize, disputes: usize, max_uptime_ms: u64) -> anyhow::Result<()> {
    crash_with(ctx, rounds, disputes, max_uptime_ms, 40).await
}

/// `due_in`: seconds from a chargeback's arrival to its due date (its act-by time is halfway there).
async fn crash_with(ctx: &Ctx, rounds: usize, disputes: usize, max_uptime_ms: u64, due_in: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let result = crash_on(ctx, &db, rounds, disputes, max_uptime_ms, due_in, started).await;
    db.drop_database(ctx.keep || result.is_err()).await;
    result
}

async fn crash_on(
    ctx: &Ctx,
    db: &Db,
    rounds: usize,
    disputes: usize,
    max_uptime_ms: u64,
    due_in: i64,
    started: Instant,
) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    let setup = Setup::new(ctx.binary.clone(), db, &fake_url, FAST_SCHEDULING)?;
    let token = setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let tag = format!("c{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    load::import_orders(&setup, &tag, disputes)?;
    // Spread the load over the rounds; chargebacks due soon enough that their act-by timers fire during them.
    let spread = Duration::from_millis(max_uptime_ms * rounds as u64 / 2).max(Duration::from_secs(5));
    let ledger = Arc::new(Ledger::default());
    *lock(&ledger.deliveries) = load::plan(&tag, disputes, spread, chrono::Duration::seconds(due_in));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let sender = tokio::spawn(load::deliver(
        ledger.clone(),
        vec![base.clone()],
        t0,
        stop.clone(),
        0.05,
    ));
    let analysts = tokio::spawn(load::analysts(
        ledger.clone(),
        vec![base.clone()],
        token.clone(),
        stop.clone(),
        Duration::from_millis(40),
    ));

    let mut kills = Vec::new();
    let mut paypal_from = 0;
    for round in 1..=rounds {
        let mut server = setup.spawn(&format!("run-{round}"), port, &[])?;
        let during_startup = round % 4 == 1;
        if during_startup {
            // Start-up: before /readyz answers (migrations, the first sweep, the schedules' rows).
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..250))).await;
        } else {
            server.wait_ready(&http, Duration::from_secs(60)).await?;
            if round % 3 == 0 {
                // PayPal exports through the operator's path while the server runs.
                let (text, ids) = load::paypal_export(&tag, paypal_from, 3);
                paypal_from += 3;
                let file = db.dir.path().join(format!("paypal-{round}.jsonl"));
                std::fs::write(&file, text)?;
                setup.run(&["import", "--processor", "paypal", &file.display().to_string()])?;
                lock(&ledger.paypal).extend(ids);
            }
            tokio::time::sleep(Duration::from_millis(
                rand::rng().random_range(100..max_uptime_ms.max(101)),
            ))
            .await;
        }
        if let Some(status) = server.exited() {
            bail!(
                "round {round}: the server exited on its own ({status}):\n{}",
                server.log_tail(30)
            );
        }
        let uptime = server.started.elapsed();
        server.kill();
        kills.push(format!(
            "{}{:.1}s",
            if during_startup { "startup@" } else { "" },
            uptime.as_secs_f64()
        ));
    }

    // The last run works off the rest; the processors keep redelivering what was not acknowledged.
    let mut server = setup.spawn("final", port, &[])?;
    server.wait_ready(&http, Duration::from_secs(60)).await?;
    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while ledger.unacked() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = analysts.await;
    let _ = sender.await;
    // The last chargeback is due `due_in` + 18 s after the plan, its act-by time halfway.
    let last_act_by = Duration::from_secs((due_in.max(0) as u64 + 18) / 2 + 5);
    settle(&store, &ledger, t0 + spread + last_act_by, Duration::from_secs(180))
        .await
        .with_context(|| server.log_tail(20))?;
    server.kill();
    let mut report = check::all(&store, &ledger, &fake).await?;
    let answers = *lock(&ledger.answers);
    report.facts.insert("kills", kills.len() as i64);
    report.facts.insert(
        "kills during start-up",
        kills.iter().filter(|k| k.starts_with("startup")).count() as i64,
    );
    report.facts.insert("webhook answers 2xx", answers.0 as i64);
    report.facts.insert("webhook answers 5xx", answers.1 as i64);
    report.facts.insert("webhooks unanswered", answers.2 as i64);
    println!("kills (uptime at kill): {}", kills.join(" "));
    finish("crash", db, &report, started, ctx.keep)
}

pub async fn ci(ctx: &Ctx) -> anyhow::Result<()> {
    let mut databases = vec![None];
    if ctx.pg.is_some() {
        databases.push(ctx.pg.clone());
    }
    for pg in databases {
        let postgres = pg.is_some();
        let ctx = Ctx {
            binary: ctx.binary.clone(),
            pg,
            keep: ctx.keep,
        };
        // A crash right after each commit of one notification's processing: deterministic (crash-points).
        crate::points::commit_points(&ctx, 4).await?;
        // Kills every 0.1 to 1.5 s while webhooks arrive densely: this catches an event committed without its
        // timers (docs/reliability.md), which sparser kills miss.
        crash_with(&ctx, 12, 24, 1500, 10).await?;
        // Network faults concern the processor, not the database: once is enough.
        if !postgres {
            crate::faults::net_faults(&ctx).await?;
        }
        crate::faults::backup(&ctx).await?;
    }
    Ok(())
}
