//! Database faults under load, without restarting Verdict: PostgreSQL backends paused (SIGSTOP), connections
//! cut (`pg_terminate_backend`), `statement_timeout` hit; SQLite's disk filled (a loop-mounted 24 MiB file
//! system). For each: what webhooks and `/readyz` answered during the fault, how long
//! recovery took once it was lifted, then the crash checks (nothing acknowledged lost, nothing twice).
//!
//! PostgreSQL is not restarted or paused as a whole here: the server is shared with other work on this
//! machine, so only this run's database's backends are touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::check;
use crate::fake::Fake;
use crate::load::{self, Ledger, lock};
use crate::modes::{Ctx, FAST_SCHEDULING, finish};
use crate::setup::{Db, Setup, exec, free_port, rows};

/// What `/readyz` answered during a fault: status code, or 0 for no answer within 2 s.
async fn readyz(http: &reqwest::Client, base: &str) -> u16 {
    match http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

fn sh(command: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("sh").arg("-c").arg(command).status()?;
    if !status.success() {
        bail!("`{command}` failed: {status}");
    }
    Ok(())
}

/// Holds a fault for `hold`, sampling `/readyz` and the webhook answers, then lifts it and measures recovery.
async fn episode(
    name: &str,
    http: &reqwest::Client,
    base: &str,
    ledger: &Ledger,
    hold: Duration,
    lift: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<String> {
    let before = *lock(&ledger.answers);
    let mut ready: BTreeMap<u16, usize> = BTreeMap::new();
    let start = Instant::now();
    while start.elapsed() < hold {
        *ready.entry(readyz(http, base).await).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let during = *lock(&ledger.answers);
    lift.await?;
    let lifted = Instant::now();
    let mut recovered = None;
    while lifted.elapsed() < Duration::from_secs(60) {
        let acked_since = lock(&ledger.answers).0 > during.0;
        if readyz(http, base).await == 200 && acked_since {
            recovered = Some(lifted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(recovered) = recovered else {
        bail!("{name}: not recovered 60 s after the fault was lifted");
    };
    let line = format!(
        "{name}: during {:.0} s webhooks got {} 2xx, {} 5xx, {} no answer; /readyz {:?} (0 = no answer in 2 s); \
         recovered {:.1} s after the fault was lifted, without a restart",
        hold.as_secs_f64(),
        during.0 - before.0,
        during.1 - before.1,
        during.2 - before.2,
        ready,
        recovered.as_secs_f64()
    );
    println!("{line}");
    Ok(line)
}

pub async fn db_faults(ctx: &Ctx) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let mount = db.dir.path().join("small");
    let result = db_faults_on(ctx, &db, &mount, started).await;
    if let Err(err) = &result {
        println!("db-faults: {err:#}");
    }
    if !db.postgres {
        let _ = sh(&format!(
            "chattr -i {0}/verdict.db {0}/verdict.db-wal 2>/dev/null; umount {0}",
            mount.display()
        ));
    }
    db.drop_database(ctx.keep || result.is_err()).await;
    result
}

async fn db_faults_on(ctx: &Ctx, db: &Db, mount: &std::path::Path, started: Instant) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    // SQLite lives on a 24 MiB tmpfs, so that its disk can be filled without touching the machine's.
    let url = if db.postgres {
        db.url.clone()
    } else {
        std::fs::create_dir_all(mount)?;
        sh(&format!(
            "mount -t tmpfs -o size=24m verdict-harness {}",
            mount.display()
        ))
        .context("mounting a small tmpfs (needs root)")?;
        format!("sqlite://{}/verdict.db?mode=rwc", mount.display())
    };
    let mut setup = Setup::new(ctx.binary.clone(), db, &fake_url, FAST_SCHEDULING)?;
    setup.db_url = url.clone();
    let token = setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut server = setup.spawn("db-faults", port, &[])?;
    server.wait_ready(&http, Duration::from_secs(60)).await?;
    let tag = format!("f{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    let ledger = Arc::new(Ledger::default());
    *lock(&ledger.deliveries) = load::plan(&tag, 60, Duration::from_secs(40), chrono::Duration::seconds(20));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let sender = tokio::spawn(load::deliver(ledger.clone(), vec![base.clone()], t0, stop.clone(), 0.0));
    let analysts = tokio::spawn(load::analysts(
        ledger.clone(),
        vec![base.clone()],
        token,
        stop.clone(),
        Duration::from_millis(100),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lines = Vec::new();
    if db.postgres {
        let admin_url = ctx.pg.clone().context("no PostgreSQL")?;
        let admin = sea_orm::Database::connect(&admin_url).await?;
        let name = reqwest::Url::parse(&db.url)?.path().trim_start_matches('/').to_owned();
        let backends = |admin: sea_orm::DatabaseConnection, name: String| async move {
            let sql = format!("SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()");
            let pids: Vec<i32> = rows(&admin, &sql)
                .await?
                .iter()
                .filter_map(|r| r.try_get::<i32>("", "pid").ok())
                .collect();
            anyhow::Ok(pids)
        };
        // 1. Every backend of the database paused (as if the server hung), then resumed.
        let pids = backends(admin.clone(), name.clone()).await?;
        for pid in &pids {
            sh(&format!("kill -STOP {pid}"))?;
        }
        let resume = {
            let pids = pids.clone();
            async move {
                for pid in &pids {
                    sh(&format!("kill -CONT {pid}"))?;
                }
                Ok(())
            }
        };
        lines.push(
            episode(
                "backends paused (SIGSTOP)",
                &http,
                &base,
                &ledger,
                Duration::from_secs(6),
                resume,
            )
            .await?,
        );
        // 2. Connections cut, three times a second apart.
        let cut = async {
            for _ in 0..3 {
                exec(
                    &admin,
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' \
                         AND pid <> pg_backend_pid()"
                    ),
                )
                .await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            anyhow::Ok(())
        };
        cut.await?;
        lines.push(
            episode(
                "connections cut (pg_terminate_backend x3)",
                &http,
                &base,
                &ledger,
                Duration::from_secs(1),
                async { Ok(()) },
            )
            .await?,
        );
        // 3. statement_timeout of 1 ms for the database (new connections take it; the old are cut).
        exec(&admin, &format!("ALTER DATABASE {name} SET statement_timeout = '1ms'")).await?;
        exec(
            &admin,
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
        )
        .await?;
        let reset = {
            let admin = admin.clone();
            let name = name.clone();
            async move {
                exec(&admin, &format!("ALTER DATABASE {name} RESET statement_timeout")).await?;
                exec(
                    &admin,
                    &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
                )
                .await?;
                Ok(())
            }
        };
        lines.push(
            episode(
                "statement_timeout = 1ms",
                &http,
                &base,
                &ledger,
                Duration::from_secs(6),
                reset,
            )
            .await?,
        );
    } else {
        // A read-only file mid-run cannot be made here: `chattr +i` does not stop writes through files SQLite
        // already has open, and a file system cannot be remounted read-only while files are open for writing.
        // Disk full: the file system filled up to its last byte, then the filler removed.
        let filler = mount.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=64k"])
            .stderr(std::process::Stdio::null())
            .status();
        let lift = async {
            std::fs::remove_file(&filler)?;
            Ok(())
        };
        lines.push(episode("SQLite disk full", &http, &base, &ledger, Duration::from_secs(6), lift).await?);
    }
    let store = verdict_store::Store::connect_sized(&url, 1, 2).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.unacked() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = analysts.await;
    let _ = sender.await;
    let settle = Instant::now();
    loop {
        let (n, s, t) = check::drained(store.db()).await?;
        if n == 0 && s == 0 && t == 0 && t0.elapsed() > Duration::from_secs(40 + 25) {
            break;
        }
        if settle.elapsed() > Duration::from_secs(120) {
            bail!("db-faults: not settled ({n} notifications, {s} steps, {t} timers due)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(status) = server.exited() {
        bail!(
            "the server exited during the faults ({status}):\n{}",
            server.log_tail(30)
        );
    }
    server.kill();
    let mut report = check::all(&store, &ledger, &fake).await?;
    if !db.postgres {
        let integrity = rows(store.db(), "PRAGMA integrity_check").await?;
        let ok = integrity
            .first()
            .and_then(|r| r.try_get_by_index::<String>(0).ok())
            .unwrap_or_default();
        if ok != "ok" {
            report.violations.push(format!("integrity_check: {ok}"));
        }
    }
    report.facts.insert("episodes", lines.len() as i64);
    finish("db-faults", db, &report, started, ctx.keep)
}
