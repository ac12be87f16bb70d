//! Three replicas on one PostgreSQL, killed at random (one at a time, and now and then all at once), under
//! timer-heavy load with two cron schedules every few seconds. Checks: the crash checks (nothing acknowledged
//! lost, nothing twice, folds equal projections), each cron tick run by exactly one replica, no tick missed
//! while a replica was up, and timers fired within their lease of falling due (downtime of all replicas aside).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::Rng as _;

use crate::check;
use crate::fake::Fake;
use crate::load::{self, Ledger, lock};
use crate::modes::{Ctx, FAST_SCHEDULING, finish};
use crate::setup::{Db, Server, Setup, free_port, rows};

const SCHEDULES: &str = "\n[[scheduling.schedules]]\nname = \"harness-sweep\"\ncron = \"*/2 * * * * *\"\ntime_zone = \"UTC\"\njob = \"sweep\"\n\
     \n[[scheduling.schedules]]\nname = \"harness-digest\"\ncron = \"*/3 * * * * *\"\ntime_zone = \"UTC\"\njob = \"digest\"\n";
/// The lease of the fast scheduling (`lease_seconds`).
const LEASE: Duration = Duration::from_secs(5);

pub async fn replicas(ctx: &Ctx, seconds: u64) -> anyhow::Result<()> {
    let Some(pg) = ctx.pg.as_deref() else {
        bail!("replicas share one PostgreSQL: pass --postgres or set VERDICT_TEST_DATABASE_URL");
    };
    let started = Instant::now();
    let db = Db::fresh(Some(pg)).await?;
    let result = replicas_on(ctx, &db, seconds, started).await;
    db.drop_database(ctx.keep || result.is_err()).await;
    result
}

struct Replica {
    port: u16,
    server: Option<Server>,
    runs: usize,
}

async fn replicas_on(ctx: &Ctx, db: &Db, seconds: u64, started: Instant) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    let setup = Setup::new(
        ctx.binary.clone(),
        db,
        &fake_url,
        &format!("{FAST_SCHEDULING}{SCHEDULES}"),
    )?;
    let token = setup.prepare()?;
    let http = reqwest::Client::new();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica {
            port: free_port()?,
            server: None,
            runs: 0,
        });
    }
    let bases: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://127.0.0.1:{}", r.port))
        .collect();
    let mut logs = Vec::new();
    let start = |r: &mut Replica, i: usize, logs: &mut Vec<std::path::PathBuf>| -> anyhow::Result<()> {
        r.runs += 1;
        let server = setup.spawn(&format!("replica-{i}-{}", r.runs), r.port, &[])?;
        logs.push(server.log.clone());
        r.server = Some(server);
        Ok(())
    };
    for (i, r) in replicas.iter_mut().enumerate() {
        start(r, i, &mut logs)?;
    }
    for r in &mut replicas {
        if let Some(s) = r.server.as_mut() {
            s.wait_ready(&http, Duration::from_secs(60)).await?;
        }
    }

    let tag = format!("r{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    let spread = Duration::from_secs(seconds * 2 / 3);
    let ledger = Arc::new(Ledger::default());
    *lock(&ledger.deliveries) = load::plan(&tag, (seconds as usize).max(20), spread, chrono::Duration::seconds(30));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let sender = tokio::spawn(load::deliver(ledger.clone(), bases.clone(), t0, stop.clone(), 0.05));
    let analysts = tokio::spawn(load::analysts(
        ledger.clone(),
        bases.clone(),
        token.clone(),
        stop.clone(),
        Duration::from_millis(60),
    ));

    // Kill at random: mostly one replica (restarted 1 to 3 s later), every fifth time all of them.
    let mut all_down: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let (mut single, mut total) = (0, 0);
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(1000..4000))).await;
        if rand::rng().random_bool(0.2) {
            total += 1;
            let down = chrono::Utc::now();
            for r in &mut replicas {
                if let Some(mut s) = r.server.take() {
                    s.kill();
                }
            }
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..2500))).await;
            for (i, r) in replicas.iter_mut().enumerate() {
                start(r, i, &mut logs)?;
            }
            // Until the first is ready again, nothing can run.
            let mut first = None;
            while first.is_none() {
                for r in &mut replicas {
                    if let Some(s) = r.server.as_mut()
                        && let Ok(resp) = http.get(format!("http://127.0.0.1:{}/readyz", s.port)).send().await
                        && resp.status().is_success()
                    {
                        first = Some(chrono::Utc::now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            all_down.push((down, first.unwrap_or_else(chrono::Utc::now)));
        } else {
            single += 1;
            let i = rand::rng().random_range(0..replicas.len());
            if let Some(mut s) = replicas[i].server.take() {
                s.kill();
            }
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(1000..3000))).await;
            start(&mut replicas[i], i, &mut logs)?;
        }
        for r in &mut replicas {
            if let Some(s) = r.server.as_mut()
                && let Some(status) = s.exited()
            {
                bail!("{} exited on its own ({status}):\n{}", s.name, s.log_tail(30));
            }
        }
    }
    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.unacked() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = analysts.await;
    let _ = sender.await;
    let settle_from = Instant::now();
    loop {
        let (n, s, t) = check::drained(store.db()).await?;
        if n == 0 && s == 0 && t == 0 && t0.elapsed() > spread + Duration::from_secs(40) {
            break;
        }
        if settle_from.elapsed() > Duration::from_secs(120) {
            bail!("replicas: not settled ({n} notifications, {s} steps, {t} timers due)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end = chrono::Utc::now();
    for r in &mut replicas {
        if let Some(mut s) = r.server.take() {
            s.kill();
        }
    }
    let mut report = check::all(&store, &ledger, &fake).await?;

    // Cron ticks: from every replica's log, each (schedule, tick) fired once.
    let mut ticks: BTreeMap<(String, String), usize> = BTreeMap::new();
    for log in &logs {
        let text = std::fs::read_to_string(log).with_context(|| log.display().to_string())?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["fields"]["message"] == "schedule fired" {
                let schedule = v["fields"]["schedule"].as_str().unwrap_or_default().to_owned();
                let tick = v["fields"]["tick"].as_str().unwrap_or_default().to_owned();
                *ticks.entry((schedule, tick)).or_default() += 1;
            }
        }
    }
    for ((schedule, tick), n) in &ticks {
        if *n > 1 {
            report
                .violations
                .push(format!("cron {schedule} tick {tick} ran on {n} replicas"));
        }
    }
    let down_overlap = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
        all_down
            .iter()
            .map(|(a, b)| (to.min(*b) - from.max(*a)).max(chrono::Duration::zero()))
            .sum::<chrono::Duration>()
    };
    // No tick missed while a replica was up: consecutive ticks of a schedule at most a period and the time
    // everything was down apart (a tick claimed by a replica killed before it logged counts as missed here).
    let mut worst_gap = chrono::Duration::zero();
    for (name, period) in [("harness-sweep", 2), ("harness-digest", 3)] {
        let mut times: Vec<chrono::DateTime<chrono::Utc>> = ticks
            .keys()
            .filter(|(s, _)| s == name)
            .filter_map(|(_, t)| t.parse().ok())
            .collect();
        times.sort();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0] - down_overlap(pair[0], pair[1]);
            worst_gap = worst_gap.max(gap);
            // One more period for a tick whose replica was killed after claiming it.
            if gap > chrono::Duration::seconds(2 * period + 4) {
                report
                    .violations
                    .push(format!("cron {name}: no tick between {} and {}", pair[0], pair[1]));
            }
        }
        report.facts.insert(
            if name == "harness-sweep" {
                "cron ticks (every 2 s)"
            } else {
                "cron ticks (every 3 s)"
            },
            times.len() as i64,
        );
    }
    report
        .facts
        .insert("worst cron gap ms (downtime aside)", worst_gap.num_milliseconds());
    // Timers fired within their lease of falling due, time with every replica down aside.
    let mut worst = chrono::Duration::zero();
    for row in rows(store.db(), "SELECT due_at, fired_at FROM timers WHERE status = 'fired'").await? {
        let (Ok(due), Ok(Some(fired))) = (
            row.try_get::<chrono::DateTime<chrono::Utc>>("", "due_at"),
            row.try_get::<Option<chrono::DateTime<chrono::Utc>>>("", "fired_at"),
        ) else {
            continue;
        };
        if due > end {
            continue;
        }
        let lag = fired - due - down_overlap(due, fired);
        worst = worst.max(lag);
    }
    let bound = chrono::Duration::from_std(LEASE)? + chrono::Duration::seconds(4);
    if worst > bound {
        report.violations.push(format!(
            "a timer fired {} ms after falling due (lease 5 s)",
            worst.num_milliseconds()
        ));
    }
    report
        .facts
        .insert("worst timer lag ms (downtime aside)", worst.num_milliseconds());
    report.facts.insert("single kills", single);
    report.facts.insert("kills of all three", total);
    finish("replicas", db, &report, started, ctx.keep)
}
