//! Database faults under load, without restarting Verdict: PostgreSQL backends paused (SIGSTOP), connections
//! cut (`pg_terminate_backend`), `statement_timeout` hit; SQLite's file made read-only and its disk filled (a
//! loop-mounted 32 MiB ext4 file system). For each: what webhooks and `/readyz` answered during the fault, how long
//! recovery took once it was lifted, then the crash checks (nothing acknowledged lost, nothing twice).
//!
//! On PostgreSQL the run uses a private server (cluster.rs) so that the whole server can also be paused
//! (SIGSTOP to every process of it) and restarted (`pg_ctl stop -m immediate`, down for a few seconds, start):
//! the machine's shared server is never touched.

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

/// What `/readyz` answered during a fault: its status and reason, or "no answer" within 3 s (Verdict's own
/// probe gives up after 2 s and says so).
async fn readyz(http: &reqwest::Client, base: &str) -> String {
    match http
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => "200".to_owned(),
        Ok(r) => {
            let status = r.status().as_u16();
            let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
            format!("{status} {}", body["reason"].as_str().unwrap_or("(no reason)"))
        }
        Err(_) => "no answer".to_owned(),
    }
}

fn sh(command: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("sh").arg("-c").arg(command).status()?;
    if !status.success() {
        bail!("`{command}` failed: {status}");
    }
    Ok(())
}

/// Whether `/readyz` may answer 200 while a fault lasts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// Writes may still go through (a fresh backend, a statement fast enough, WAL space SQLite reuses).
    Maybe,
    /// No write can: a 200 is a violation.
    Never,
}

/// Holds a fault for `hold`, sampling `/readyz` and the webhook answers, then lifts it and measures recovery.
/// A 200 from `/readyz` during a fault under which no write can succeed is added to `violations`.
async fn episode(
    name: &str,
    http: &reqwest::Client,
    base: &str,
    ledger: &Ledger,
    (hold, expected): (Duration, Ready),
    violations: &mut Vec<String>,
    lift: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<String> {
    let before = *lock(&ledger.answers);
    let mut ready: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    while start.elapsed() < hold {
        *ready.entry(readyz(http, base).await).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let during = *lock(&ledger.answers);
    if expected == Ready::Never
        && let Some(n) = ready.get("200")
    {
        violations.push(format!(
            "{name}: /readyz answered 200 {n} times while no write could succeed"
        ));
    }
    lift.await?;
    let lifted = Instant::now();
    let mut recovered = None;
    while lifted.elapsed() < Duration::from_secs(60) {
        let acked_since = lock(&ledger.answers).0 > during.0;
        if readyz(http, base).await == "200" && acked_since {
            recovered = Some(lifted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(recovered) = recovered else {
        bail!("{name}: not recovered 60 s after the fault was lifted");
    };
    let line = format!(
        "{name}: during {:.0} s webhooks got {} 2xx, {} 5xx, {} no answer; /readyz {:?}; \
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
    let cluster = match ctx.pg {
        Some(_) => Some(crate::cluster::Cluster::start().context("starting a private PostgreSQL server")?),
        None => None,
    };
    let ctx = &Ctx {
        binary: ctx.binary.clone(),
        pg: cluster.as_ref().map(crate::cluster::Cluster::url),
        keep: ctx.keep,
    };
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let mount = db.dir.path().join("small");
    let result = db_faults_on(ctx, &db, &mount, cluster.as_ref(), started).await;
    if let Err(err) = &result {
        println!("db-faults: {err:#}");
    }
    if !db.postgres {
        let _ = sh(&format!(
            "chattr -i {0}/verdict.db {0}/verdict.db-wal 2>/dev/null; umount {0} 2>/dev/null || umount -l {0}",
            mount.display()
        ));
    }
    db.drop_database(ctx.keep || result.is_err()).await;
    result
}

async fn db_faults_on(
    ctx: &Ctx,
    db: &Db,
    mount: &std::path::Path,
    cluster: Option<&crate::cluster::Cluster>,
    started: Instant,
) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    // SQLite lives on a 32 MiB ext4 file system in a file (a loop device), so that its disk can be filled
    // without touching the machine's, and its file made read-only: ext4, unlike tmpfs, refuses writes to an
    // immutable file even through descriptors opened before.
    let url = if db.postgres {
        db.url.clone()
    } else {
        std::fs::create_dir_all(mount)?;
        let image = db.dir.path().join("small.ext4");
        sh(&format!(
            "truncate -s 32M {0} && mkfs.ext4 -q -F {0} && mount -o loop {0} {1}",
            image.display(),
            mount.display()
        ))
        .context("mounting a small ext4 file system on a loop device (needs root)")?;
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
    load::import_orders(&setup, &tag, 60)?;
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
    let mut violations = Vec::new();
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
                (Duration::from_secs(6), Ready::Maybe),
                &mut violations,
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
                (Duration::from_secs(1), Ready::Maybe),
                &mut violations,
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
                (Duration::from_secs(6), Ready::Maybe),
                &mut violations,
                reset,
            )
            .await?,
        );
        // 4. The whole server paused: the postmaster and every process it started stopped, so connections
        // hang and new ones get no answer; then resumed.
        let cluster = cluster.context("no private PostgreSQL server")?;
        cluster.signal_all(true)?;
        lines.push(
            episode(
                "whole server paused (SIGSTOP to all its processes)",
                &http,
                &base,
                &ledger,
                (Duration::from_secs(6), Ready::Never),
                &mut violations,
                async { cluster.signal_all(false) },
            )
            .await?,
        );
        // 5. The whole server restarted as after a crash: stopped at once (`-m immediate`), down for 4 s, and
        // started again (crash recovery from its WAL); Verdict's pool reconnects by itself.
        cluster.stop_immediate()?;
        lines.push(
            episode(
                "whole server restarted (pg_ctl stop -m immediate, 4 s down, start)",
                &http,
                &base,
                &ledger,
                (Duration::from_secs(4), Ready::Never),
                &mut violations,
                async { cluster.start_again() },
            )
            .await?,
        );
    } else {
        // Read-only file: the database and its WAL made immutable (`chattr +i`). Connections already open get
        // "disk I/O error" on their next write (SQLite rolls the transaction back), new ones open the file
        // read-only ("attempt to write a readonly database"). Then writable again.
        let files = format!("{0}/verdict.db {0}/verdict.db-wal", mount.display());
        sh(&format!("chattr +i {files}"))?;
        let writable = async {
            sh(&format!("chattr -i {files}"))?;
            Ok(())
        };
        lines.push(
            episode(
                "SQLite file read-only (chattr +i)",
                &http,
                &base,
                &ledger,
                (Duration::from_secs(6), Ready::Never),
                &mut violations,
                writable,
            )
            .await?,
        );
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
        lines.push(
            episode(
                "SQLite disk full",
                &http,
                &base,
                &ledger,
                (Duration::from_secs(6), Ready::Maybe),
                &mut violations,
                lift,
            )
            .await?,
        );
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
    report.violations.extend(violations);
    finish("db-faults", db, &report, started, ctx.keep)
}
