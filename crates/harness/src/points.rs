//! Crash points: a crash right after each commit in turn, so that a guarantee broken between two commits
//! fails every run instead of when a random `kill -9` happens to land in a millisecond window.
//!
//! Round N starts `verdict serve` with `VERDICT_CRASH_AFTER_COMMIT=N` (crates/store/src/crash.rs: the process
//! aborts right after its Nth write transaction commits) on a settled database, and delivers one new Stripe
//! chargeback, alone, so the commits come in the same order every time: the inbox row, then the dispute's
//! transaction (events, projection, timers, steps, the inbox outcome), then its steps. A recovery run without
//! the crash point then redelivers what was not acknowledged and works everything off. After all rounds the
//! usual checks run: an event committed in one transaction and its timers in another leaves, at one of the
//! points, a dispute without its deadline timer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::check;
use crate::fake::Fake;
use crate::load::{self, Ledger, Source, lock};
use crate::modes::{Ctx, FAST_SCHEDULING, finish};
use crate::setup::{Db, Server, Setup, free_port};

/// The store's crash point variable (crates/store/src/crash.rs).
const CRASH_AFTER_COMMIT: &str = "VERDICT_CRASH_AFTER_COMMIT";

pub async fn commit_points(ctx: &Ctx, points: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let result = run(ctx, &db, points, started).await;
    db.drop_database(ctx.keep || result.is_err()).await;
    result
}

async fn run(ctx: &Ctx, db: &Db, points: u64, started: Instant) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    let setup = Setup::new(ctx.binary.clone(), db, &fake_url, FAST_SCHEDULING)?;
    setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    let ledger = Arc::new(Ledger::default());
    let tag = format!("p{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let mut crashed = Vec::new();
    for n in 1..=points {
        // Plan index 1 is a chargeback (index 0 an inquiry), due in three days: its act-by time (the due date
        // less the submission margin, a day) is two days away, so no timer falls due during the run. With a
        // day, the act-by timer fired seconds later, in the next round, and its commit took that round's crash
        // point: on PostgreSQL the split point was then sometimes never hit.
        let chargeback = load::plan(&format!("{tag}n{n}"), 2, Duration::ZERO, chrono::Duration::days(3))
            .into_iter()
            .filter(|d| d.source == Source::Stripe && d.disputes[0].ends_with("_1"))
            .take(1);
        lock(&ledger.deliveries).extend(chargeback);

        let mut server = setup.spawn(&format!("point-{n}"), port, &[(CRASH_AFTER_COMMIT, n.to_string())])?;
        if ready_or_exited(&mut server, &http).await? {
            deliver_in_turn(&ledger, &http, &base, &mut server).await;
            // The crash may come after the answer (the steps' commits).
            let until = Instant::now() + Duration::from_millis(1500);
            while server.exited().is_none() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if server.exited().is_some() {
            if !std::fs::read_to_string(&server.log)?.contains("aborting right after commit") {
                bail!(
                    "point {n}: the server exited without its crash point:\n{}",
                    server.log_tail(30)
                );
            }
            crashed.push(n);
        }
        server.kill();

        // Recovery: redeliver, work everything off, so the next round starts from a settled database.
        let mut server = setup.spawn(&format!("recover-{n}"), port, &[])?;
        server.wait_ready(&http, Duration::from_secs(60)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            deliver_in_turn(&ledger, &http, &base, &mut server).await;
            let (pending, steps, timers) = check::drained(store.db()).await?;
            if ledger.unacked() == 0 && pending + steps + timers == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("point {n}: not settled after recovery:\n{}", server.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.kill();
    }
    let mut report = check::all(&store, &ledger, &fake).await.context("checks")?;
    report.facts.insert("crash points", points as i64);
    report.facts.insert("crashed at a point", crashed.len() as i64);
    println!(
        "crash points hit (the process aborted right after that commit): {:?}",
        crashed
    );
    finish("crash-points", db, &report, started, ctx.keep)
}

/// Waits for `/readyz`; false if the server exited first (a crash point hit during start-up).
async fn ready_or_exited(server: &mut Server, http: &reqwest::Client) -> anyhow::Result<bool> {
    let start = Instant::now();
    loop {
        if server.exited().is_some() {
            return Ok(false);
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{}/readyz", server.port))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(true);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{} not ready:\n{}", server.name, server.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends every unacknowledged notification once, one after the other, while the server lives.
async fn deliver_in_turn(ledger: &Ledger, http: &reqwest::Client, base: &str, server: &mut Server) {
    let pending: Vec<usize> = lock(&ledger.deliveries)
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.acked)
        .map(|(i, _)| i)
        .collect();
    for index in pending {
        if server.exited().is_some() {
            return;
        }
        let delivery = lock(&ledger.deliveries)[index].clone();
        let (path, headers, body) = load::request(&delivery);
        let mut request = http.post(format!("{base}{path}")).body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let answer = request.send().await;
        let mut answers = lock(&ledger.answers);
        match &answer {
            Ok(r) if r.status().is_success() => {
                answers.0 += 1;
                let mut deliveries = lock(&ledger.deliveries);
                deliveries[index].acked = true;
                deliveries[index].attempts += 1;
            }
            Ok(r) if r.status().is_server_error() => answers.1 += 1,
            _ => answers.2 += 1,
        }
    }
}
