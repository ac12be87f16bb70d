//! `verdict bench`: the throughput and latency figures that docs/benchmarks.md records, measured against
//! the configured database (run it on PostgreSQL for the production figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Duration as Span, Utc};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, Locale, Money, NewDispute, Processor, ReasonCode, Stage,
    Status,
};
use verdict_engine::Engine;
use verdict_store::{Backend, DisputeFilter};

pub struct BenchOptions {
    pub disputes: u64,
    pub transitions: u64,
    pub concurrency: usize,
    /// Timers due within the measurement window, fired live by a worker pool.
    pub timer_probes: u64,
    /// No-op steps drained to measure the queue.
    pub steps: u64,
    /// Webhook notifications received.
    pub notifications: u64,
    /// Steps one worker pool performs at once (and claims per query) in the no-op drain.
    pub step_concurrency: usize,
    /// Disputes each writer of the transitions measurement takes turns on (1: every event on one hot row).
    pub disputes_per_writer: usize,
    /// Single steps added one at a time, `latency_rate` a second, in the step-latency measurement.
    pub latency_probes: u64,
    pub latency_rate: u64,
    /// Measurements to run (transitions, notifications, queue, steps, step-latency, timers, timer-transitions,
    /// backtest, api); empty
    /// for all.
    pub only: Vec<String>,
    /// Runs of each example operation in the api measurement, at most (see `api_budget`).
    pub api_runs: u64,
    /// How long one example operation is run at most; a slow one makes fewer runs.
    pub api_budget: Duration,
    /// Where the example operations are (graphql/examples of the repository).
    pub examples_dir: std::path::PathBuf,
    /// The measured database, for the second replica of the timer-transitions measurement.
    pub database_url: String,
    /// Due act-by timers fired in the timer-transitions measurement (once by one replica, once by two).
    pub due_timers: u64,
    /// Timers one pool fires at once in the timer-transitions measurement (claimed four times as many per
    /// query); the configured defaults without it.
    pub timer_concurrency: Option<usize>,
}

impl BenchOptions {
    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

fn new_dispute(tag: &str, i: u64) -> anyhow::Result<NewDispute> {
    Ok(NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: format!("bench-{tag}-{i}"),
        payment_reference: format!("pi_bench_{i}"),
        order_reference: None,
        seller_id: Some(format!("seller-{}", i % 50)),
        customer: Customer {
            name: None,
            email: None,
            locale: Locale::En,
        },
        amount: Money::new(10_000 + (i as i64 % 5_000), Currency::parse("EUR")?)?,
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1")?,
        reason_code_raw: "13.1".into(),
        stage: Stage::Chargeback,
        due_by: Some(Utc::now() + Span::days(10 + (i as i64 % 20))),
        opened_at: Utc::now(),
    })
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Opens `disputes_per_writer` disputes per writer, then each writer appends events to its own disputes, in
/// turn, as fast as it can (1 dispute per writer is the worst case: every event updates the same hot rows).
async fn transitions(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    let tag = Utc::now().format("%H%M%S%f").to_string();
    let started = Instant::now();
    let per_writer = options.disputes_per_writer.max(1) as u64;
    let mut writers = Vec::new();
    for w in 0..options.concurrency as u64 {
        let mut ids = Vec::new();
        for i in 0..per_writer {
            let command = Command::new(
                Actor::system("bench"),
                Action::Open(Box::new(new_dispute(&tag, w * per_writer + i)?)),
            );
            ids.push(engine.open(command).await?.id);
        }
        writers.push(ids);
    }
    let per_worker = options.transitions / options.concurrency as u64;
    let started_events = Instant::now();
    let mut tasks = Vec::new();
    for ids in writers {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_worker {
                let id = ids[(n % ids.len() as u64) as usize];
                let action = if n % 2 == 0 {
                    Action::AddNote {
                        note: format!("bench note {n}"),
                    }
                } else {
                    Action::ChangeDueBy {
                        due_by: Some(Utc::now() + Span::days(5 + (n as i64 % 9))),
                    }
                };
                engine.handle(id, Command::new(Actor::system("bench"), action)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started_events.elapsed();
    let total = per_worker * options.concurrency as u64;
    println!(
        "transitions: {total} events on {} disputes by {} writers in {:.2} s = {:.0} events/s (each: load, version-checked update, event insert, timers)",
        options.concurrency as u64 * per_writer,
        options.concurrency,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let _ = started;
    Ok(())
}

/// Bulk-loads synthetic disputes straight into the projection (the queue query is what is measured).
pub(crate) async fn seed_projection(engine: &Engine, count: u64) -> anyhow::Result<()> {
    let existing = engine.store().count(&DisputeFilter::default()).await?;
    if existing >= count {
        println!("queue: {existing} disputes already present");
        return Ok(());
    }
    let missing = count - existing;
    let started = Instant::now();
    // Spread as a marketplace's disputes are, so the patterns measured group many values: two years of opening
    // dates, four processors, six network reason codes, three currencies, 500 sellers, 40 device models, four
    // grades and eight countries (a fifth not linked to an order), half of them closed with a time to resolution.
    // Stamped two minutes back, as rows written before the run (the pattern summary then covers them).
    let case = |expr: &str, values: &[&str]| {
        let arms: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("WHEN {i} THEN '{v}'"))
            .collect();
        format!("CASE ({expr}) % {} {} END", values.len(), arms.join(" "))
    };
    let status = case(
        "g",
        &[
            "notified",
            "triaged",
            "evidence_gathering",
            "submitted",
            "won",
            "lost",
            "accepted",
            "expired",
        ],
    );
    let processor = case("g * 3", &["stripe", "adyen", "paypal", "braintree"]);
    let network = case("g", &["visa", "visa", "visa", "visa", "mastercard", "mastercard"]);
    let code = case("g", &["10.4", "13.1", "13.3", "11.3", "4837", "4853"]);
    let category = case(
        "g",
        &[
            "fraud",
            "consumer_dispute",
            "consumer_dispute",
            "authorization",
            "fraud",
            "consumer_dispute",
        ],
    );
    let currency = case("g * 11", &["EUR", "EUR", "USD", "GBP"]);
    let grade = case("g * 19", &["fair", "good", "excellent", "premium"]);
    let country = case("g * 23", &["FR", "ES", "IT", "DE", "US", "GB", "BE", "NL"]);
    let linked = "g % 5 <> 0";
    let closed = "g % 8 >= 4";
    let resolution = format!("CASE WHEN {closed} THEN 3600 * (24 + (g * 7919) % 2000) END");
    let missed = "CASE WHEN g % 8 = 7 THEN 1 ELSE 0 END";
    let columns = "id, processor, processor_dispute_id, payment_reference, customer_locale, amount_minor, currency, \
        network, reason_code, reason_code_raw, reason_category, stage, status, due_by, sort_due_at, opened_at, seller_id, \
        version, created_at, updated_at, order_device_model, order_grade, order_country, resolution_seconds, deadline_missed";
    let values = |id: &str, suffix: &str, due: &str, opened: &str, now: &str| {
        format!(
            "{id}, {processor}, 'bulk-' || g || '-' || {suffix}, 'pi_' || g, 'en', 1000 + g % 90000, {currency}, \
             {network}, {code}, {code}, {category}, 'chargeback', {status}, {due}, {due}, {opened}, 'seller-' || (g % 500), \
             1, {now}, {now}, CASE WHEN {linked} THEN 'model-' || ((g * 53) % 40) END, CASE WHEN {linked} THEN {grade} END, \
             CASE WHEN {linked} THEN {country} END, {resolution}, {missed}"
        )
    };
    // In the order they were opened, as a live system writes them (a month's disputes then share pages).
    let oldest_first = "ORDER BY (g * 7) % 730 DESC, g % 86400 DESC";
    let sql = match engine.store().backend() {
        Backend::Postgres => format!(
            "INSERT INTO disputes ({columns}) SELECT {} FROM generate_series(1::bigint, {missing}::bigint) AS g {oldest_first}",
            values(
                "gen_random_uuid()",
                "md5(random()::text)",
                "now() + (g % 43200) * interval '1 minute'",
                "now() - ((g * 7) % 730) * interval '1 day' - (g % 86400) * interval '1 second'",
                "now() - interval '2 minutes'",
            )
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {missing}) \
             INSERT INTO disputes ({columns}) SELECT {} FROM s {oldest_first}",
            values(
                "randomblob(16)",
                "hex(randomblob(4))",
                "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+' || (g % 43200) || ' minutes')",
                "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-' || ((g * 7) % 730) || ' days', '-' || (g % 86400) || ' seconds')",
                "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-2 minutes')",
            )
        ),
    };
    engine
        .store()
        .execute_unprepared(&sql)
        .await
        .context("bulk-loading disputes")?;
    if engine.store().backend() == Backend::Postgres {
        engine.store().execute_unprepared("ANALYZE disputes").await?;
    }
    println!(
        "queue: loaded {missing} disputes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Queue pages at the head, deep behind a cursor, and filtered by status (three, and one), over the whole table.
async fn queue_pages(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    seed_projection(engine, options.disputes).await?;
    let store = engine.store();
    let total = store.count(&DisputeFilter::default()).await?;
    let open = DisputeFilter {
        statuses: vec![Status::Notified, Status::Triaged, Status::EvidenceGathering],
        ..DisputeFilter::default()
    };
    // One status reads `dispute_statuses_order` joined to the disputes (migration 27).
    let won = DisputeFilter {
        statuses: vec![Status::Won],
        ..DisputeFilter::default()
    };
    // Cursors spread through the table, collected by walking with big pages.
    let mut cursors = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = store.list(&DisputeFilter::default(), 500, after).await?;
        after = page.items.last().map(|(c, _)| *c);
        cursors.extend(after);
        if !page.has_next_page {
            break;
        }
    }
    let mut cases: Vec<(&str, Vec<Duration>)> = Vec::new();
    for (name, filter, use_cursor) in [
        ("head page", DisputeFilter::default(), false),
        ("page after a cursor", DisputeFilter::default(), true),
        ("open statuses", open, false),
        ("one status", won, false),
    ] {
        let mut samples = Vec::new();
        for round in 0..200 {
            let cursor = if use_cursor && !cursors.is_empty() {
                Some(cursors[round % cursors.len()])
            } else {
                None
            };
            let started = Instant::now();
            let page = store.list(&filter, 50, cursor).await?;
            samples.push(started.elapsed());
            anyhow::ensure!(!page.items.is_empty(), "{name}: empty page");
        }
        samples.sort();
        cases.push((name, samples));
    }
    for (name, samples) in cases {
        println!(
            "queue page of 50 over {total} disputes, {name}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        );
    }
    Ok(())
}

/// Fills the timer table with one far-future pending timer per bulk-loaded dispute, then adds `probes` timers
/// due over the next seconds and lets a worker pool fire them live: the lag of each probe (fired minus due,
/// including the command it runs) is what the figure reports.
async fn timers(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use verdict_store::entity::timer;
    let store = engine.store();
    let pending_before = timer::Entity::find()
        .filter(timer::Column::Status.eq("pending"))
        .count(store.db())
        .await?;
    if pending_before < options.disputes {
        let started = Instant::now();
        let sql = match store.backend() {
            Backend::Postgres => format!(
                "INSERT INTO timers (id, dispute_id, kind, due_at, status, attempts, created_at)                  SELECT gen_random_uuid(), id, 'reminder_72h', now() + interval '400 days' + random() * interval '300 days',                  'pending', 0, now() FROM disputes WHERE processor_dispute_id LIKE 'bulk-%' LIMIT {}",
                options.disputes - pending_before
            ),
            Backend::Sqlite => format!(
                "INSERT INTO timers (id, dispute_id, kind, due_at, status, attempts, created_at)                  SELECT randomblob(16), id, 'reminder_72h', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+' || (400 + abs(random()) % 300) || ' days'),                  'pending', 0, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') FROM disputes WHERE processor_dispute_id LIKE 'bulk-%' LIMIT {}",
                options.disputes - pending_before
            ),
        };
        store.execute_unprepared(&sql).await.context("bulk-loading timers")?;
        if store.backend() == Backend::Postgres {
            store.execute_unprepared("ANALYZE timers").await?;
        }
        println!(
            "timers: loaded {} far-future timers in {:.1} s",
            options.disputes - pending_before,
            started.elapsed().as_secs_f64()
        );
    }
    let pending = timer::Entity::find()
        .filter(timer::Column::Status.eq("pending"))
        .count(store.db())
        .await?;
    // Probe timers on fresh disputes, spread evenly over the window, each firing a real reminder command.
    let tag = Utc::now().format("%H%M%S%f").to_string();
    let probes = options.timer_probes;
    let window = Span::seconds(10);
    let mut ids = Vec::new();
    for i in 0..probes {
        let command = Command::new(
            Actor::system("bench"),
            Action::Open(Box::new(new_dispute(&format!("t{tag}"), i)?)),
        );
        ids.push(engine.open(command).await?.id);
    }
    let worker = crate::workers::local_pool(engine, None).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let start = engine.clock().now() + Span::milliseconds(3_000);
    let new_timers: Vec<verdict_store::NewTimer> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| verdict_store::NewTimer {
            dispute_id: Some(id.as_uuid()),
            kind: "reminder_4h".to_owned(),
            due_at: start + window * (i as i32) / (probes.max(1) as i32),
            payload: None,
        })
        .collect();
    store.insert_timers(&new_timers, engine.clock().now()).await?;
    let end = start + window;
    let probe_ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let fired = loop {
        let rows = timer::Entity::find()
            .filter(timer::Column::DisputeId.is_in(probe_ids.clone()))
            .filter(timer::Column::Kind.eq("reminder_4h"))
            .filter(timer::Column::Status.eq("fired"))
            .all(store.db())
            .await?;
        if rows.len() as u64 >= probes || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop.send(());
    let _ = running.await;
    let mut lags: Vec<Duration> = fired
        .iter()
        .filter_map(|t| t.fired_at.map(|f| (f - t.due_at).to_std().unwrap_or_default()))
        .collect();
    lags.sort();
    println!(
        "timers: {} of {probes} probe reminders due over {} s fired, with {pending} timers pending; lag (fired - due, including the reminder command): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        fired.len(),
        window.num_seconds(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default()
    );
    let _ = end;
    Ok(())
}

/// Stripe `charge.dispute.created` notifications for distinct disputes, each parsed, stored in the inbox and
/// applied (opening its dispute) as the webhook endpoint does after the signature check.
async fn notifications(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    let tag = Utc::now().format("%H%M%S%f").to_string();
    let per_worker = options.notifications / options.concurrency as u64;
    let now = Utc::now().timestamp();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..options.concurrency as u64 {
        let engine = engine.clone();
        let tag = tag.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_worker {
                let body = serde_json::json!({
                    "id": format!("evt_{tag}_{worker}_{n}"), "object": "event", "type": "charge.dispute.created",
                    "created": now,
                    "data": { "object": {
                        "id": format!("dp_{tag}_{worker}_{n}"), "object": "dispute", "amount": 4_999 + n as i64,
                        "currency": "usd", "charge": format!("ch_{worker}_{n}"), "reason": "fraudulent",
                        "status": "needs_response", "created": now,
                        "evidence_details": { "due_by": now + 14 * 86_400 },
                        "payment_method_details": { "card": { "brand": "visa", "network_reason_code": "10.4" } }
                    } }
                })
                .to_string();
                let parsed = verdict_ingest::parse_stripe(body.as_bytes())?;
                engine.receive(verdict_engine::Source::Stripe, parsed, &body).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let total = per_worker * options.concurrency as u64;
    println!(
        "notifications: {total} Stripe disputes received (parsed, stored in the inbox, applied) by {} concurrent \
         requests in {:.2} s = {:.0} notifications/s",
        options.concurrency,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// A step handler that does nothing: what is left is the queue itself (claim, load, complete).
pub(crate) struct NoopPerformer;

#[async_trait::async_trait]
impl verdict_engine::effects::StepPerformer for NoopPerformer {
    async fn perform(
        &self,
        _ctx: &verdict_engine::effects::StepContext,
    ) -> Result<verdict_engine::effects::StepOutcome, verdict_engine::effects::StepError> {
        Ok(verdict_engine::effects::StepOutcome::Done {
            follow_up: None,
            follow_up_after: None,
        })
    }
}

fn insert_steps_sql(backend: Backend, tag: &str, n: u64) -> String {
    match backend {
        Backend::Postgres => format!(
            "INSERT INTO steps (id, dispute_id, kind, idempotency_key, status, attempts, max_attempts, next_attempt_at, \
             created_at, updated_at) SELECT gen_random_uuid(), id, 'notify_assignee', 'bench-{tag}-' || id, 'pending', 0, 8, \
             now(), now(), now() FROM disputes WHERE processor_dispute_id LIKE 'bulk-%' LIMIT {n}"
        ),
        Backend::Sqlite => format!(
            "INSERT INTO steps (id, dispute_id, kind, idempotency_key, status, attempts, max_attempts, next_attempt_at, \
             created_at, updated_at) SELECT randomblob(16), id, 'notify_assignee', 'bench-{tag}-' || hex(id), 'pending', 0, 8, \
             strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 second'), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), \
             strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') FROM disputes WHERE processor_dispute_id LIKE 'bulk-%' LIMIT {n}"
        ),
    }
}

fn step_pool(
    engine: &Engine,
    performer: Arc<dyn verdict_engine::effects::StepPerformer>,
    step_concurrency: usize,
) -> verdict_engine::worker::Worker {
    let mut worker_options = verdict_engine::worker::WorkerOptions::from_config(
        &verdict_engine::timers::SchedulingConfig::default(),
        format!("bench-{}", uuid::Uuid::now_v7()),
    );
    worker_options.step_concurrency = step_concurrency.max(1);
    verdict_engine::worker::Worker::new(engine.clone(), performer, worker_options)
}

/// Drains `steps` pending no-op steps with one worker pool running as in production (`Worker::run`: claims
/// as slots come free, completions recorded in batches) and reports steps per second.
async fn noop_steps(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    let store = engine.store();
    seed_projection(engine, options.steps).await?;
    let tag = Utc::now().format("%H%M%S%f").to_string();
    store
        .execute_unprepared(&insert_steps_sql(store.backend(), &tag, options.steps))
        .await
        .context("loading no-op steps")?;
    if store.backend() == Backend::Postgres {
        store.execute_unprepared("ANALYZE steps").await?;
    }
    let n = {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        use verdict_store::entity::step;
        step::Entity::find()
            .filter(step::Column::IdempotencyKey.starts_with(format!("bench-{tag}-")))
            .count(store.db())
            .await?
    };
    let worker = step_pool(engine, Arc::new(NoopPerformer), options.step_concurrency);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cpu_before = crate::bench_cpu::CpuSample::now();
    let started = Instant::now();
    let running = tokio::spawn(worker.clone().run(async move {
        let _ = stopped.await;
    }));
    let deadline = started + Duration::from_secs(300);
    while worker.steps_finished() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Completions are written in batches: the drain ends when every step is recorded as done, as the peer's
    // ends when its jobs table is empty.
    while unfinished_steps(store, &tag).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu = crate::bench_cpu::CpuSample::since(cpu_before);
    let done = worker.steps_finished();
    let _ = stop.send(());
    let _ = running.await;
    println!(
        "steps: {done} of {n} no-op steps drained (performed and recorded as done) by one pool of {} slots in {:.2} s = \
         {:.0} steps/s (claims as slots come free, the batch's disputes in one query, completions in batches)",
        options.step_concurrency,
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    println!(
        "steps: {} claims, {:.0} steps per claim",
        worker.step_claims(),
        done as f64 / worker.step_claims().max(1) as f64
    );
    if let Some(cpu) = cpu {
        println!("steps: CPU while draining: {cpu}");
    }
    Ok(())
}

/// The bench's steps (by tag) not yet recorded as done.
async fn unfinished_steps(store: &verdict_store::Store, tag: &str) -> anyhow::Result<u64> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use verdict_store::entity::step;
    Ok(step::Entity::find()
        .filter(step::Column::IdempotencyKey.starts_with(format!("bench-{tag}-")))
        .filter(step::Column::Status.eq("pending"))
        .count(store.db())
        .await?)
}

/// Records when each step started, by idempotency key.
struct StartRecorder(tokio::sync::mpsc::UnboundedSender<(String, Instant)>);

#[async_trait::async_trait]
impl verdict_engine::effects::StepPerformer for StartRecorder {
    async fn perform(
        &self,
        ctx: &verdict_engine::effects::StepContext,
    ) -> Result<verdict_engine::effects::StepOutcome, verdict_engine::effects::StepError> {
        let _ = self.0.send((ctx.idempotency_key.clone(), Instant::now()));
        Ok(verdict_engine::effects::StepOutcome::Done {
            follow_up: None,
            follow_up_after: None,
        })
    }
}

/// How long after it is added a step starts on an idle pool: one step at a time, `latency_rate` a second, each
/// inserted and announced the way a replica's commit adds work (`NOTIFY` in the adding transaction on
/// PostgreSQL, then the committing process's own wake-up), timed from the moment its commit returned.
async fn step_latency(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    let store = engine.store();
    seed_projection(engine, 1_000).await?;
    // What a replica's `queue_vacuum` job does within a minute where autovacuum is off (as on this machine's
    // server): an earlier drain's dead rows leave the pending indexes the claims walk.
    let vacuumed = store
        .vacuum_queue_tables(verdict_engine::schedules::QUEUE_VACUUM_DEAD_ROWS)
        .await?;
    if !vacuumed.is_empty() {
        println!(
            "vacuumed before the probes, as the queue_vacuum job would: {}",
            vacuumed.join(", ")
        );
    }
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = step_pool(engine, Arc::new(StartRecorder(started_tx)), options.step_concurrency);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.clone().run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probes = options.latency_probes;
    let interval = Duration::from_secs(1) / u32::try_from(options.latency_rate.max(1)).unwrap_or(1_000);
    let mut latencies = Vec::with_capacity(usize::try_from(probes).unwrap_or_default());
    let tag = Utc::now().format("%H%M%S%f").to_string();
    for i in 0..probes {
        let due = Instant::now() + interval;
        let key_tag = format!("{tag}-{i}");
        let insert = insert_steps_sql(store.backend(), &key_tag, 1);
        let add = match store.backend() {
            // As a replica's commit adds work, and as the peer's `add_job` does: the NOTIFY in the adding
            // transaction, delivered to every listener when it commits; one round trip.
            Backend::Postgres => format!("BEGIN; {insert}; NOTIFY {}; COMMIT", verdict_store::WORK_CHANNEL),
            Backend::Sqlite => insert,
        };
        store.execute_unprepared(&add).await?;
        let added = Instant::now();
        // The committing replica also wakes its own workers at once (as the group committer does).
        store.work_signal().notify_one();
        let prefix = format!("bench-{key_tag}-");
        let started = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some((key, at)) = started_rx.recv().await {
                if key.starts_with(&prefix) {
                    return Some(at);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .context("a probe step did not start within 5 s")?;
        latencies.push(started.saturating_duration_since(added));
        tokio::time::sleep_until(due.into()).await;
    }
    let _ = stop.send(());
    let _ = running.await;
    latencies.sort();
    println!(
        "step start latency ({probes} single steps added to an idle pool and announced, {}/s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        options.latency_rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default()
    );
    Ok(())
}

pub async fn run(engine: Arc<Engine>, options: BenchOptions) -> anyhow::Result<()> {
    println!("backend: {:?}", engine.store().backend());
    if options.runs("transitions") {
        transitions(&engine, &options).await?;
    }
    if options.runs("notifications") {
        notifications(&engine, &options).await?;
    }
    if options.runs("queue") {
        queue_pages(&engine, &options).await?;
    }
    if options.runs("steps") {
        noop_steps(&engine, &options).await?;
    }
    if options.runs("step-latency") {
        step_latency(&engine, &options).await?;
    }
    if options.runs("timers") {
        timers(&engine, &options).await?;
    }
    if options.runs("timer-transitions") {
        crate::bench_timers::timer_transitions(&engine, &options).await?;
    }
    if options.runs("backtest") {
        backtest(&engine, &options).await?;
    }
    if options.runs("api") {
        crate::bench_api::api_operations(&engine, &options).await?;
    }
    Ok(())
}

/// The draft the backtest measurement replays: stricter than the default on every dispute the bench loads.
const BENCH_DRAFT: &str = r#"
[[rule]]
name = "accept small consumer disputes"
when = { category = "consumer_dispute", currency = "EUR", amount_below_minor = 20000 }
queue = "care"
priority = 4
action = "accept"
autonomous = true
autonomy_limit_minor = 10000

[[rule]]
name = "large ones to a lead"
when = { currency = "EUR", amount_at_least_minor = 60000 }
queue = "seller"
priority = 1
action = "escalate"
"#;

/// Gives every bulk-loaded dispute a stored triage run (four input templates by amount), then replays a draft
/// over them as a backtest job and reports how long the job took.
async fn backtest(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    seed_projection(engine, options.disputes).await?;
    let store = engine.store();
    let templates: Vec<String> = [5_000_i64, 15_000, 40_000, 80_000]
        .into_iter()
        .map(|minor| -> anyhow::Result<String> {
            let amount = Money::new(minor, Currency::parse("EUR")?)?;
            let input = verdict_domain::TriageInput {
                category: verdict_domain::ReasonCategory::ConsumerDispute,
                reason_code: "13.1".into(),
                network: CardNetwork::Visa,
                amount,
                processor: Processor::Stripe,
                stage: Stage::Chargeback,
                days_left: Some(12),
                seller_id: Some("seller-1".into()),
                order: None,
                evidence_score: 60,
                evidence_complete: false,
                ce_eligible: false,
                seller_liable: false,
                economics: Some(engine.economics().economics(
                    amount,
                    verdict_domain::ReasonCategory::ConsumerDispute,
                    Processor::Stripe,
                    verdict_domain::EvidenceBand::Partial,
                    false,
                    &verdict_domain::WinRates::default(),
                )?),
            };
            Ok(serde_json::to_string(&input)?.replace('\'', "''"))
        })
        .collect::<anyhow::Result<_>>()?;
    let case = templates
        .iter()
        .enumerate()
        .map(|(i, t)| format!("WHEN {i} THEN '{t}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let triage = r#"{"rule":"bench","queue":"seller","priority":3,"action":"defend","autonomy":{"mode":"manual"},"read":{},"why":"bench"}"#;
    let started = Instant::now();
    let sql = match store.backend() {
        Backend::Postgres => format!(
            "INSERT INTO dispute_triage (dispute_id, policy_version, rule, evidence_band, input, triage, decided_at)              SELECT id, 0, 'bench', 'partial', (CASE amount_minor % 4 {case} END)::jsonb, '{triage}'::jsonb, now()              FROM disputes WHERE processor_dispute_id LIKE 'bulk-%' ON CONFLICT (dispute_id) DO NOTHING"
        ),
        Backend::Sqlite => format!(
            "INSERT INTO dispute_triage (dispute_id, policy_version, rule, evidence_band, input, triage, decided_at)              SELECT id, 0, 'bench', 'partial', CASE amount_minor % 4 {case} END, '{triage}',              strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')              FROM disputes WHERE processor_dispute_id LIKE 'bulk-%' ON CONFLICT (dispute_id) DO NOTHING"
        ),
    };
    store.execute_unprepared(&sql).await.context("loading triage runs")?;
    println!(
        "backtest: triage runs loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let job = engine.start_backtest(BENCH_DRAFT, 1, "bench").await?;
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    engine.work_one_backtest("bench", &stopping).await?;
    let elapsed = started.elapsed();
    let done = store.backtest(job.id).await?.context("the backtest vanished")?;
    let tally: verdict_domain::backtest::Backtest = serde_json::from_value(done.tally)?;
    println!(
        "backtest: {} disputes replayed in {:.1} s ({:.0}/s), {} changed, status {}",
        tally.disputes,
        elapsed.as_secs_f64(),
        tally.disputes as f64 / elapsed.as_secs_f64().max(0.001),
        tally.changed,
        done.status
    );
    Ok(())
}
