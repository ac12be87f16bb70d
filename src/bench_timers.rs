//! `verdict bench --only timer-transitions`: a backlog of due act-by timers whose deadline policy submits or
//! accepts, fired by one replica's worker pool and then by two. Each firing is a real transition (the
//! dispute's event, its projection, the timers it cancels and sets, the step that reaches the processor),
//! committed with the timer's completion; the steps are drained by a no-op performer alongside, as a replica
//! drains its own. A second replica is a second engine with its own connection pool and committer in this
//! process: what two `verdict serve` processes share is the database, and so do these.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, Statement};
use verdict_engine::Engine;
use verdict_engine::timers::{DeadlineAction, DeadlineRule, TimingPolicy};
use verdict_engine::worker::{Worker, WorkerOptions};
use verdict_store::{Backend, Store};

use crate::bench::{BenchOptions, NoopPerformer};
use crate::bench_cpu::CpuSample;

/// The deadline policy of the measurement: fraud disputes are accepted, the rest submitted.
fn timing() -> TimingPolicy {
    TimingPolicy {
        deadline_default: DeadlineAction::Submit,
        deadline_rules: vec![DeadlineRule {
            category: Some("fraud".to_owned()),
            currency: None,
            below_minor: None,
            at_least_minor: None,
            action: DeadlineAction::Accept,
        }],
        ..TimingPolicy::default()
    }
}

/// Loads `count` open disputes (half fraud, triaged: accepted; half consumer disputes gathering evidence:
/// submitted) tagged `tag`, each with an act-by timer that fell due a second ago.
async fn seed(store: &Store, tag: &str, count: u64) -> anyhow::Result<()> {
    let columns = "id, processor, processor_dispute_id, payment_reference, customer_locale, amount_minor, currency, \
        network, reason_code, reason_code_raw, reason_category, stage, status, due_by, sort_due_at, opened_at, \
        version, created_at, updated_at";
    let values = |id: &str, due: &str, opened: &str, now: &str| {
        format!(
            "{id}, 'stripe', 'due-{tag}-' || g, 'pi_due_' || g, 'en', 1000 + g % 90000, 'EUR', 'visa', \
             CASE WHEN g % 2 = 0 THEN '10.4' ELSE '13.1' END, CASE WHEN g % 2 = 0 THEN '10.4' ELSE '13.1' END, \
             CASE WHEN g % 2 = 0 THEN 'fraud' ELSE 'consumer_dispute' END, 'chargeback', \
             CASE WHEN g % 2 = 0 THEN 'triaged' ELSE 'evidence_gathering' END, {due}, {due}, {opened}, 1, {now}, {now}"
        )
    };
    let (disputes, timers) = match store.backend() {
        Backend::Postgres => (
            format!(
                "INSERT INTO disputes ({columns}) SELECT {} FROM generate_series(1::bigint, {count}::bigint) AS g",
                values(
                    "gen_random_uuid()",
                    "now() + interval '3 days'",
                    "now() - interval '10 days'",
                    "now() - interval '1 minute'"
                )
            ),
            format!(
                "INSERT INTO timers (id, dispute_id, kind, due_at, status, attempts, created_at) \
                 SELECT gen_random_uuid(), id, 'act_by', now() - interval '1 second', 'pending', 0, now() \
                 FROM disputes WHERE processor_dispute_id LIKE 'due-{tag}-%'"
            ),
        ),
        Backend::Sqlite => (
            format!(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {count}) \
                 INSERT INTO disputes ({columns}) SELECT {} FROM s",
                values(
                    "randomblob(16)",
                    "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+3 days')",
                    "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-10 days')",
                    "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 minutes')"
                )
            ),
            format!(
                "INSERT INTO timers (id, dispute_id, kind, due_at, status, attempts, created_at) \
                 SELECT randomblob(16), id, 'act_by', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 seconds'), \
                 'pending', 0, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') \
                 FROM disputes WHERE processor_dispute_id LIKE 'due-{tag}-%'"
            ),
        ),
    };
    store.execute_unprepared(&disputes).await.context("loading disputes")?;
    store
        .execute_unprepared(&timers)
        .await
        .context("loading act-by timers")?;
    if store.backend() == Backend::Postgres {
        store.execute_unprepared("ANALYZE disputes").await?;
        store.execute_unprepared("ANALYZE timers").await?;
    }
    Ok(())
}

async fn count(store: &Store, sql: &str) -> anyhow::Result<i64> {
    let statement = Statement::from_string(store.db().get_database_backend(), sql.to_owned());
    let row = store
        .db()
        .query_one_raw(statement)
        .await?
        .context("a count returned no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The tagged disputes by status, as `status: n` pairs.
async fn statuses(store: &Store, tag: &str) -> anyhow::Result<String> {
    let sql = format!(
        "SELECT status, COUNT(*) AS n FROM disputes WHERE processor_dispute_id LIKE 'due-{tag}-%' \
         GROUP BY status ORDER BY status"
    );
    let rows = store
        .db()
        .query_all_raw(Statement::from_string(store.db().get_database_backend(), sql))
        .await?;
    let mut parts = Vec::new();
    for row in rows {
        let status: String = row.try_get("", "status")?;
        let n: i64 = row.try_get("", "n")?;
        parts.push(format!("{status} {n}"));
    }
    Ok(parts.join(", "))
}

/// Fires `options.due_timers` due act-by timers with one replica, then another backlog with two.
pub(crate) async fn timer_transitions(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    for replicas in [1, 2] {
        run(engine, options, replicas).await?;
    }
    Ok(())
}

async fn run(engine: &Engine, options: &BenchOptions, replicas: usize) -> anyhow::Result<()> {
    let store = engine.store();
    let tag = chrono::Utc::now().format("%H%M%S%f").to_string();
    let n = options.due_timers;
    let loading = Instant::now();
    seed(store, &tag, n).await?;
    println!(
        "timer-transitions: loaded {n} disputes with a due act-by timer in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let cutoff = chrono::Utc::now();
    // Whether any is left, not how many: a count of a large backlog every poll would load the database it measures.
    let pending_sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM timers WHERE status = 'pending' AND kind = 'act_by' AND due_at <= '{}' \
         LIMIT 1) AS left_over",
        match store.backend() {
            Backend::Postgres => cutoff.to_rfc3339(),
            Backend::Sqlite => cutoff.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        }
    );
    let mut engines = vec![engine.clone().with_timing(timing())];
    for _ in 1..replicas {
        let own = Store::connect_with(&options.database_url, 8)
            .await
            .context("connecting a second replica")?;
        engines.push(Engine::new(own, engine.clock().clone()).with_timing(timing()));
    }
    let mut stops = Vec::new();
    let mut running = Vec::new();
    let cpu_before = CpuSample::now();
    let started = Instant::now();
    for (i, engine) in engines.iter().enumerate() {
        let mut worker_options = WorkerOptions::from_config(
            &verdict_engine::timers::SchedulingConfig::default(),
            format!("bench-replica-{i}-{}", uuid::Uuid::now_v7()),
        );
        if let Some(concurrency) = options.timer_concurrency {
            worker_options.concurrency = concurrency;
            worker_options.batch_size = (concurrency as u64) * 4;
        }
        let worker = Worker::new(engine.clone(), Arc::new(NoopPerformer), worker_options);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        running.push(tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        })));
    }
    let deadline = started + Duration::from_secs(600);
    while count(store, &pending_sql).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let cpu = CpuSample::since(cpu_before);
    for stop in stops {
        let _ = stop.send(());
    }
    for task in running {
        let _ = task.await;
    }
    let left = count(
        store,
        &format!(
            "SELECT COUNT(*) FROM timers t JOIN disputes d ON d.id = t.dispute_id \
             WHERE d.processor_dispute_id LIKE 'due-{tag}-%' AND t.kind = 'act_by' AND t.status = 'pending'"
        ),
    )
    .await?;
    let fired = n as i64 - left;
    println!(
        "timer-transitions: {fired} of {n} due act-by timers fired by {replicas} replica(s) in {:.2} s = {:.0} \
         transitions/s (each an event, the projection, its timers and a processor step, with the timer's \
         completion); disputes now: {}",
        elapsed.as_secs_f64(),
        fired as f64 / elapsed.as_secs_f64(),
        statuses(store, &tag).await?
    );
    if let Some(cpu) = cpu {
        println!("timer-transitions: CPU while firing, {replicas} replica(s): {cpu}");
    }
    Ok(())
}
