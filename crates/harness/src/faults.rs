//! Network faults toward the processor, and backup and restore.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::check::Report;
use crate::fake::{Fake, Fault};
use crate::load::{self, Delivery, Outcome, Source};
use crate::modes::{Ctx, FAST_SCHEDULING, finish};
use crate::setup::{Db, Setup, count, free_port, rows};

/// An `https://` endpoint whose server answers the TLS ClientHello with plain-text garbage (a middlebox, a
/// wrong port, a broken terminator); counts the handshakes it refused.
async fn tls_garbage() -> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut hello = [0_u8; 1024];
                let _ = stream.read(&mut hello).await;
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS\n").await;
            });
        }
    });
    Ok((url, handshakes))
}

/// Delivers each notification until it is acknowledged.
async fn deliver_all(base: &str, deliveries: &[Delivery]) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for d in deliveries {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (path, headers, body) = load::request(d);
            let mut req = http.post(format!("{base}{path}")).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) if r.status().is_client_error() => bail!("{path} refused: {}", r.status()),
                _ if Instant::now() > deadline => bail!("{path} not acknowledged within 60 s"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// The acceptance steps of one group's disputes: (status, attempts) by step id.
async fn group_steps(db: &sea_orm::DatabaseConnection, tag: &str) -> anyhow::Result<BTreeMap<String, (String, i64)>> {
    let sql = format!(
        "SELECT s.id, s.status, CAST(s.attempts AS BIGINT) AS attempts FROM steps s \
         JOIN disputes d ON d.id = s.dispute_id \
         WHERE s.kind = 'accept_at_processor' AND (d.processor_dispute_id LIKE 'dp\\_{tag}\\_%' ESCAPE '\\' \
         OR d.processor_dispute_id LIKE 'DS{}%')",
        tag.to_uppercase()
    );
    Ok(rows(db, &sql)
        .await?
        .iter()
        .map(|r| {
            (
                notification_id(r).unwrap_or_default(),
                (
                    r.try_get::<String>("", "status").unwrap_or_default(),
                    r.try_get::<i64>("", "attempts").unwrap_or_default(),
                ),
            )
        })
        .collect())
}

async fn wait_group(
    db: &sea_orm::DatabaseConnection,
    tag: &str,
    expected: usize,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, (String, i64)>> {
    let start = Instant::now();
    loop {
        let steps = group_steps(db, tag).await?;
        if steps.len() >= expected && steps.values().all(|(s, _)| s == status) {
            return Ok(steps);
        }
        if start.elapsed() > timeout {
            bail!("group {tag}: expected {expected} acceptances {status} within {timeout:?}, have {steps:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Stripe chargebacks (due in seconds: the act-by timer accepts them at once) and Adyen chargebacks of a
/// group.
fn group(tag: &str) -> Vec<Delivery> {
    load::plan(tag, 8, Duration::ZERO, chrono::Duration::seconds(2))
        .into_iter()
        .filter(|d| {
            d.source == Source::Adyen
                || (d.source == Source::Stripe
                    && d.body.contains("\"needs_response\"")
                    && d.body.contains("charge.dispute.created"))
        })
        .collect()
}

pub async fn net_faults(ctx: &Ctx) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let result = net_faults_on(ctx, &db, started).await;
    db.drop_database(ctx.keep || result.is_err()).await;
    result
}

async fn net_faults_on(ctx: &Ctx, db: &Db, started: Instant) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    let setup = Setup::new(ctx.binary.clone(), db, &fake_url, FAST_SCHEDULING)?;
    let token = setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = setup.spawn("net", port, &[])?;
    server
        .wait_ready(&reqwest::Client::new(), Duration::from_secs(60))
        .await?;
    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    let mut report = Report::default();
    // Four Stripe and eight Adyen acceptances per group.
    let expected = 12;
    let phases: [(&str, Fault); 4] = [
        (
            "slow",
            Fault {
                delay: Duration::from_secs(2),
                remaining: Some(12),
                ..Fault::default()
            },
        ),
        (
            "reset",
            Fault {
                reset: true,
                remaining: Some(10),
                ..Fault::default()
            },
        ),
        (
            "429",
            Fault {
                status: Some((429, Some(3))),
                remaining: Some(10),
                ..Fault::default()
            },
        ),
        (
            "5xx",
            Fault {
                status: Some((503, None)),
                remaining: Some(15),
                ..Fault::default()
            },
        ),
    ];
    for (i, (name, fault)) in phases.into_iter().enumerate() {
        let tag = format!("n{i}{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
        fake.set_fault(fault);
        let phase = Instant::now();
        deliver_all(&base, &group(&tag)).await?;
        let steps = wait_group(store.db(), &tag, expected, "succeeded", Duration::from_secs(90))
            .await
            .with_context(|| server.log_tail(20))?;
        fake.clear_fault();
        let retries: i64 = steps.values().map(|(_, a)| a - 1).sum();
        report.facts.insert(
            match name {
                "slow" => "retries after slow answers",
                "reset" => "retries after resets",
                "429" => "retries after 429",
                _ => "retries after 5xx",
            },
            retries,
        );
        println!(
            "phase {name}: {expected} acceptances done in {:.1} s, {retries} retries",
            phase.elapsed().as_secs_f64()
        );
    }

    // A processor down for longer than the retries last: dead letters, visible to leads, retried by hand.
    let tag = format!("nd{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    fake.set_fault(Fault {
        status: Some((500, None)),
        ..Fault::default()
    });
    deliver_all(&base, &group(&tag)).await?;
    let dead = wait_group(store.db(), &tag, expected, "dead", Duration::from_secs(120))
        .await
        .with_context(|| server.log_tail(20))?;
    let http = reqwest::Client::new();
    let (outcome, data) = load::graphql(
        &http,
        &base,
        &token,
        "{ deadLetteredSteps(first: 100) { id kind status lastError } }",
        json!({}),
    )
    .await;
    let listed: Vec<String> = data["deadLetteredSteps"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if outcome != Outcome::Acked || !dead.keys().all(|id| listed.contains(id)) {
        report
            .violations
            .push(format!("dead letters not all listed in deadLetteredSteps: {data}"));
    }
    report.facts.insert("dead letters", dead.len() as i64);
    fake.clear_fault();
    let retried_at = Instant::now();
    for id in dead.keys() {
        let (outcome, data) = load::graphql(
            &http,
            &base,
            &token,
            "mutation($id: ID!) { retryStep(id: $id) { step { status } userErrors { code message } } }",
            json!({"id": id}),
        )
        .await;
        if outcome != Outcome::Acked {
            report.violations.push(format!("retryStep {id}: {data}"));
        }
    }
    wait_group(store.db(), &tag, expected, "succeeded", Duration::from_secs(60)).await?;

    // TLS failure: Verdict restarted with the processors' URLs on https, at an endpoint that answers garbage to
    // the ClientHello. Every attempt fails the handshake; the steps back off, are dead-lettered, and once the
    // endpoint works again (restarted with the fake's URL) a lead's retry performs each once.
    server.kill();
    let (tls_url, handshakes) = tls_garbage().await?;
    let tls_setup = Setup::new(ctx.binary.clone(), db, &tls_url, FAST_SCHEDULING)?;
    let mut tls_server = tls_setup.spawn("net-tls", port, &[])?;
    tls_server.wait_ready(&http, Duration::from_secs(60)).await?;
    let tag = format!("nt{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    let tls_started = Instant::now();
    deliver_all(&base, &group(&tag)).await?;
    let dead = wait_group(store.db(), &tag, expected, "dead", Duration::from_secs(120))
        .await
        .with_context(|| tls_server.log_tail(20))?;
    let tls_took = tls_started.elapsed();
    tls_server.kill();
    let min_attempts = dead.values().map(|(_, a)| *a).min().unwrap_or_default();
    // Each attempt waits at least the smallest retry delay (1 s less 25 % jitter) after the one before.
    let floor = Duration::from_millis(750) * u32::try_from(min_attempts.max(1) - 1).unwrap_or_default();
    if min_attempts < 2 || tls_took < floor {
        report.violations.push(format!(
            "TLS failures: {min_attempts} attempts in {tls_took:?}: not retried with backoff"
        ));
    }
    let errors = rows(
        store.db(),
        "SELECT COALESCE(last_error, '') AS e FROM steps WHERE status = 'dead' AND kind = 'accept_at_processor'",
    )
    .await?;
    let tls_errors = errors
        .iter()
        .filter_map(|r| r.try_get::<String>("", "e").ok())
        .filter(|e| e.to_lowercase().contains("tls") || e.to_lowercase().contains("connect"))
        .count();
    println!(
        "phase TLS failure: {} steps dead-lettered after {min_attempts} attempts each in {:.1} s, {} handshakes \
         refused, {tls_errors} dead steps name a connection or TLS error",
        dead.len(),
        tls_took.as_secs_f64(),
        handshakes.load(std::sync::atomic::Ordering::SeqCst)
    );
    report.facts.insert("TLS failures: dead letters", dead.len() as i64);
    report.facts.insert(
        "TLS failures: handshakes refused",
        handshakes.load(std::sync::atomic::Ordering::SeqCst) as i64,
    );
    let setup = Setup::new(ctx.binary.clone(), db, &fake_url, FAST_SCHEDULING)?;
    server = setup.spawn("net-after-tls", port, &[])?;
    server.wait_ready(&http, Duration::from_secs(60)).await?;
    for id in dead.keys() {
        let (outcome, data) = load::graphql(
            &http,
            &base,
            &token,
            "mutation($id: ID!) { retryStep(id: $id) { step { status } userErrors { code message } } }",
            json!({"id": id}),
        )
        .await;
        if outcome != Outcome::Acked {
            report.violations.push(format!("retryStep {id}: {data}"));
        }
    }
    wait_group(store.db(), &tag, expected, "succeeded", Duration::from_secs(60)).await?;

    // Backoff: after an error answer, the next call for the same dispute comes no sooner than the smallest
    // retry delay (1 s less 25 % jitter). A lead's retry of a dead letter is immediate by design: not counted.
    let calls: Vec<_> = fake.calls().into_iter().filter(|c| c.at < retried_at).collect();
    let mut closest = Duration::MAX;
    let mut after_429 = Duration::MAX;
    for (i, call) in calls.iter().enumerate().filter(|(_, c)| c.status >= 429) {
        let Some(next) = calls[i + 1..].iter().find(|c| c.target == call.target) else {
            continue;
        };
        let gap = next.at - call.at;
        closest = closest.min(gap);
        if call.status == 429 {
            after_429 = after_429.min(gap);
        }
    }
    if closest < Duration::from_millis(740) {
        report.violations.push(format!(
            "a retry {closest:?} after an error answer: backoff not honoured"
        ));
    }
    report.facts.insert(
        "closest retry after an error, ms",
        closest.as_millis().min(i64::MAX as u128) as i64,
    );
    report.facts.insert(
        "closest retry after a 429 with Retry-After: 3, ms",
        after_429.as_millis().min(i64::MAX as u128) as i64,
    );
    let calls = fake.calls();
    // No money moved twice: one key per acceptance, the step's own.
    for (target, keys) in fake.keys_by_target() {
        if keys.len() > 1 {
            report
                .violations
                .push(format!("{target} performed under keys {keys:?}"));
        }
    }
    let accepted = fake.keys_by_target().len();
    if accepted != expected * 6 {
        report.violations.push(format!(
            "{accepted} acceptances at the processor, {} expected",
            expected * 6
        ));
    }
    report.facts.insert("acceptances at the processor", accepted as i64);
    report.facts.insert("processor calls", calls.len() as i64);
    server.kill();
    finish("net-faults", db, &report, started, ctx.keep)
}

/// The disputes as a comparable map: processor dispute id -> (status, stage, due date, amount, events).
/// Each dispute's state and the number of its events, leaving out the order link's result: the link step runs
/// after a notification is applied, by the worker, so a restored copy links its replayed disputes once it
/// serves again, not during the import this compares right after.
async fn disputes(db: &sea_orm::DatabaseConnection) -> anyhow::Result<BTreeMap<String, String>> {
    let sql = "SELECT d.processor_dispute_id AS pid, d.status, d.stage, CAST(d.amount_minor AS BIGINT) AS amount, \
               (SELECT COUNT(*) FROM dispute_events e WHERE e.dispute_id = d.id \
                AND e.kind NOT IN ('order_linked', 'order_not_found')) AS events FROM disputes d";
    Ok(rows(db, sql)
        .await?
        .iter()
        .map(|r| {
            let s = |c: &str| r.try_get::<String>("", c).unwrap_or_default();
            let n = |c: &str| r.try_get::<i64>("", c).unwrap_or_default();
            (
                s("pid"),
                format!("{} {} {} {} events", s("status"), s("stage"), n("amount"), n("events")),
            )
        })
        .collect())
}

/// Backup while serving (PostgreSQL: pg_dump; SQLite: VACUUM INTO), more notifications, restore into a fresh
/// database, replay the inbox received since the backup with `verdict import`, and compare.
pub async fn backup(ctx: &Ctx) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = Db::fresh(ctx.pg.as_deref()).await?;
    let restored = Db::fresh(ctx.pg.as_deref()).await?;
    let result = backup_on(ctx, &db, &restored, started).await;
    let failed = result.is_err();
    db.drop_database(ctx.keep || failed).await;
    restored.drop_database(ctx.keep || failed).await;
    result
}

async fn backup_on(ctx: &Ctx, db: &Db, restored: &Db, started: Instant) -> anyhow::Result<()> {
    let (fake, fake_url) = Fake::start().await?;
    let setup = Setup::new(ctx.binary.clone(), db, &fake_url, FAST_SCHEDULING)?;
    setup.prepare()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = setup.spawn("backup", port, &[])?;
    server
        .wait_ready(&reqwest::Client::new(), Duration::from_secs(60))
        .await?;
    let store = verdict_store::Store::connect_sized(&db.url, 1, 2).await?;
    let tag = format!("b{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    let due = chrono::Duration::days(3);
    let before = load::plan(&format!("{tag}a"), 10, Duration::ZERO, due);
    deliver_all(&base, &before).await?;
    settle_inbox(store.db()).await?;

    // The backup, online.
    let dump = db
        .dir
        .path()
        .join(if db.postgres { "verdict.dump" } else { "backup.db" });
    let ids = |rows: Vec<sea_orm::QueryResult>| -> std::collections::BTreeSet<String> {
        rows.iter().filter_map(notification_id).collect()
    };
    let in_backup = ids(rows(store.db(), "SELECT id FROM notifications").await?);
    if db.postgres {
        run(
            "pg_dump",
            &[
                "--format=custom",
                "--file",
                &dump.display().to_string(),
                "--dbname",
                &db.url,
            ],
        )?;
    } else {
        crate::setup::exec(store.db(), &format!("VACUUM INTO '{}'", dump.display())).await?;
    }
    // What arrives after it: new disputes and updates of old ones.
    let after = load::plan(&format!("{tag}b"), 10, Duration::ZERO, due);
    let mut updates = load::plan(&format!("{tag}a"), 10, Duration::ZERO, due);
    for d in &mut updates {
        d.body = d
            .body
            .replace("_created\"", "_closed\"")
            .replace("charge.dispute.created", "charge.dispute.closed");
        d.body = d
            .body
            .replace("\"warning_needs_response\"", "\"warning_closed\"")
            .replace("\"needs_response\"", "\"lost\"");
    }
    updates.retain(|d| d.source == Source::Stripe && d.body.contains("charge.dispute.closed"));
    deliver_all(&base, &after).await?;
    deliver_all(&base, &updates).await?;
    settle_inbox(store.db()).await?;
    server.kill();
    let original = disputes(store.db()).await?;

    // Restore into a fresh database.
    if restored.postgres {
        run(
            "pg_restore",
            &["--no-owner", "--dbname", &restored.url, &dump.display().to_string()],
        )?;
    } else {
        std::fs::copy(&dump, restored.sqlite_path())?;
    }
    // Replay what the inbox received since the backup (here read from the old inbox; in a real loss, from the
    // processors' exports) through `verdict import`, in the order received.
    let since: Vec<sea_orm::QueryResult> = rows(
        store.db(),
        "SELECT id, processor, body FROM notifications ORDER BY received_at, id",
    )
    .await?
    .into_iter()
    .filter(|r| notification_id(r).is_some_and(|id| !in_backup.contains(&id)))
    .collect();
    let restored_setup = Setup::new(ctx.binary.clone(), restored, &fake_url, FAST_SCHEDULING)?;
    let mut replayed = 0;
    for (i, row) in since.iter().enumerate() {
        let processor: String = row.try_get("", "processor")?;
        let body: Vec<u8> = row.try_get("", "body")?;
        let mut text = String::from_utf8(body)?;
        if processor == "braintree" {
            text = form_urlencoded::parse(text.as_bytes())
                .find(|(k, _)| k == "bt_payload")
                .map(|(_, v)| v.replace(['\n', '\r'], ""))
                .context("a Braintree body without bt_payload")?;
        }
        let file = restored.dir.path().join(format!("replay-{i}.jsonl"));
        std::fs::write(&file, text + "\n")?;
        restored_setup.run(&["import", "--processor", &processor, &file.display().to_string()])?;
        replayed += 1;
    }
    let restored_store = verdict_store::Store::connect_sized(&restored.url, 1, 2).await?;
    settle_inbox(restored_store.db()).await?;
    let again = disputes(restored_store.db()).await?;
    let mut report = Report::default();
    for (pid, state) in &original {
        match again.get(pid) {
            Some(s) if s == state => {}
            other => report
                .violations
                .push(format!("{pid}: {state} before, {other:?} after restore and replay")),
        }
    }
    if again.len() != original.len() {
        report
            .violations
            .push(format!("{} disputes before, {} after", original.len(), again.len()));
    }
    report.facts.insert("disputes compared", original.len() as i64);
    report.facts.insert("notifications replayed", replayed);
    let _ = fake;
    finish(
        if db.postgres {
            "backup (pg_dump)"
        } else {
            "backup (VACUUM INTO)"
        },
        db,
        &report,
        started,
        ctx.keep,
    )
}

/// A UUID column as text, whichever way the backend returns it.
fn notification_id(row: &sea_orm::QueryResult) -> Option<String> {
    row.try_get::<uuid::Uuid>("", "id")
        .map(|u| u.to_string())
        .or_else(|_| row.try_get::<String>("", "id"))
        .ok()
}

async fn settle_inbox(db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
    for _ in 0..600 {
        if count(db, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'").await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("notifications still pending after 60 s")
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
