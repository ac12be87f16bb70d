//! `verdict bench --only api`: every example operation of graphql/examples, run through the GraphQL schema (the
//! executor the endpoint calls, with its limits) as an admin, over the bulk-loaded disputes, each many times;
//! the latency of each is what docs/benchmarks.md records.
//!
//! The examples hold placeholder ids; each run gets real ones. Every run of a mutation acts on its own dispute,
//! opened beforehand through the engine (so it has a real event log) in the state the mutation needs, at the
//! version it is at now, so that each run changes something real. Queries read disputes the mutations changed.
//! Whatever a run answers (a change, a user error, a GraphQL error) is counted and printed beside its timing:
//! a figure measured on refusals says so.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};
use verdict_api::auth::{Principal, PrincipalKind, Role};
use verdict_domain::{
    Action, Actor, CardNetwork, Command, Currency, Customer, CustomerEmail, CustomerName, DisputeId, EvidenceKind,
    EvidenceSource, Locale, Money, NewDispute, Processor, ReasonCode, Stage, Status,
};
use verdict_engine::Engine;
use verdict_engine::evidence::NewEvidence;

use crate::bench::{BenchOptions, percentile, seed_projection};

/// The state a mutation's disputes are prepared in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prep {
    /// A chargeback as a notification opens it.
    Chargeback,
    /// An inquiry (refunds settle inquiries).
    Inquiry,
    /// A chargeback whose order reference is the recorded order of the record-order example.
    WithOrder,
    /// A chargeback with one evidence item (its id is the run's `itemId`).
    WithEvidence,
    /// A chargeback lost (in the processor's stead), to reopen.
    Lost,
    /// A chargeback whose acceptance waits for a lead's approval (the approval's id is the run's target).
    PendingApproval,
    /// A chargeback with a dead-lettered step (the step's id is the run's target).
    DeadStep,
}

/// The examples that change one dispute named by `input.id` (or `input.target.ids`), and how to prepare it.
fn dispute_mutation(name: &str) -> Option<Prep> {
    Some(match name {
        "accept-dispute"
        | "add-evidence"
        | "add-note"
        | "assign-dispute"
        | "change-due-by"
        | "generate-defense-document"
        | "message-customer"
        | "message-seller"
        | "submit-defense"
        | "transition-dispute"
        | "link-order"
        | "create-seller-upload-link"
        | "bulk-message"
        | "bulk-transition" => Prep::Chargeback,
        "refund" | "resolve-with-refund" => Prep::Inquiry,
        "draw-evidence-from-facts" => Prep::WithOrder,
        "remove-evidence" => Prep::WithEvidence,
        "reopen-dispute" => Prep::Lost,
        "approve-policy-action" | "reject-policy-action" => Prep::PendingApproval,
        "retry-step" => Prep::DeadStep,
        _ => return None,
    })
}

/// The order the examples operate in: what others need first (the recorded order, saved policies, created
/// keys, steps to cancel), then the rest of the mutations, then the queries (on the disputes they changed).
fn rank(name: &str, is_query: bool) -> u8 {
    match name {
        "record-order" | "save-policy" | "create-api-key" | "accept-dispute" | "start-policy-backtest" => 0,
        "activate-policy" | "revoke-api-key" | "cancel-step" => 2,
        _ if is_query => 3,
        _ => 1,
    }
}

struct Example {
    name: String,
    source: String,
    variables: Value,
}

fn examples(dir: &Path) -> anyhow::Result<Vec<Example>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("graphql") {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let source = std::fs::read_to_string(&path)?;
        let variables = serde_json::from_str(&std::fs::read_to_string(path.with_extension("json"))?)
            .with_context(|| format!("{name}.json"))?;
        found.push(Example {
            name,
            source,
            variables,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn kind_of(source: &str) -> &'static str {
    let body: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let body = body.trim_start();
    if body.starts_with("mutation") {
        "mutation"
    } else if body.starts_with("subscription") {
        "subscription"
    } else {
        "query"
    }
}

fn new_dispute(tag: &str, i: usize, prep: Prep) -> anyhow::Result<NewDispute> {
    Ok(NewDispute {
        processor: Processor::Stripe,
        processor_dispute_id: format!("api-{tag}-{i}"),
        payment_reference: format!("pi_api_{tag}_{i}"),
        order_reference: (prep == Prep::WithOrder).then(|| "A-17".to_owned()),
        seller_id: Some(format!("seller-{}", i % 50)),
        customer: Customer {
            name: Some(CustomerName::parse("Jeanne Dupont")?),
            email: Some(CustomerEmail::parse(&format!("jeanne.{i}@example.fr"))?),
            locale: Locale::Fr,
        },
        amount: Money::new(4_000 + (i as i64 % 5_000), Currency::parse("EUR")?)?,
        reason_code: ReasonCode::parse(CardNetwork::Visa, "13.1")?,
        reason_code_raw: "13.1".into(),
        stage: if prep == Prep::Inquiry {
            Stage::Inquiry
        } else {
            Stage::Chargeback
        },
        due_by: Some(Utc::now() + Span::days(20)),
        opened_at: Utc::now(),
    })
}

/// `runs` disputes opened through the engine and brought into `prep`'s state; with the evidence item's id for
/// [`Prep::WithEvidence`].
async fn prepare(
    engine: &Engine,
    tag: &str,
    prep: Prep,
    runs: usize,
) -> anyhow::Result<Vec<(DisputeId, Option<String>)>> {
    let actor = Actor::system("bench");
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let opened = engine
            .open(Command::new(
                actor.clone(),
                Action::Open(Box::new(new_dispute(tag, i, prep)?)),
            ))
            .await?;
        let id = opened.id;
        let mut item = None;
        match prep {
            Prep::WithEvidence => {
                let current = load(engine, id).await?;
                let (_, added) = engine
                    .add_evidence(
                        id,
                        actor.clone(),
                        current.version,
                        EvidenceSource::Analyst,
                        vec![NewEvidence {
                            kind: EvidenceKind::Tracking,
                            text: Some("DHL 00340434161094042557".into()),
                            file_id: None,
                        }],
                    )
                    .await?;
                item = added.first().map(|i| i.id.to_string());
            }
            Prep::Lost => {
                let current = load(engine, id).await?;
                let action = Action::OverrideOutcome {
                    to: Status::Lost,
                    expected_version: current.version,
                };
                engine
                    .handle(
                        id,
                        Command::new(actor.clone(), action).because("bench: a lost dispute to reopen"),
                    )
                    .await?;
            }
            Prep::PendingApproval => {
                let current = load(engine, id).await?;
                let new = verdict_store::NewApproval {
                    dispute_id: id.as_uuid(),
                    policy_version: 1,
                    rule: "bench".into(),
                    action: "accept".into(),
                    amount_minor: current.amount.minor_units(),
                    currency: current.amount.currency().code().to_owned(),
                    limit_minor: 0,
                    request_key: format!("bench-{tag}-{i}"),
                    why: "bench: an acceptance above the policy's limit".into(),
                };
                let approval = engine.store().request_approval(&new, Utc::now()).await?;
                item = Some(approval.id.to_string());
            }
            Prep::DeadStep => item = Some(dead_step(engine, id, &format!("{tag}-{i}")).await?),
            Prep::Chargeback | Prep::Inquiry | Prep::WithOrder => {}
        }
        out.push((id, item));
    }
    Ok(out)
}

/// A step of the dispute that ran out of attempts (as the worker leaves one), for `retryStep`.
async fn dead_step(engine: &Engine, dispute: DisputeId, key: &str) -> anyhow::Result<String> {
    use sea_orm::ConnectionTrait;
    let id = uuid::Uuid::now_v7();
    let now = Utc::now();
    let backend = engine.store().db().get_database_backend();
    let sql = "INSERT INTO steps (id, dispute_id, kind, idempotency_key, status, attempts, max_attempts, \
               next_attempt_at, last_error, created_at, updated_at) \
               VALUES ($1, $2, 'notify_assignee', $3, 'dead', 8, 8, $4, 'bench: the mail server refused it', $4, $4)";
    let sql = match engine.store().backend() {
        verdict_store::Backend::Postgres => sql.to_owned(),
        verdict_store::Backend::Sqlite => sql.replace('$', "?"),
    };
    engine
        .store()
        .db()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [
                id.into(),
                dispute.as_uuid().into(),
                format!("bench-dead-{key}").into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(id.to_string())
}

async fn load(engine: &Engine, id: DisputeId) -> anyhow::Result<verdict_domain::Dispute> {
    engine
        .store()
        .load(id)
        .await?
        .with_context(|| format!("dispute {id} vanished"))
}

/// What one run answered: `ok`, `user error CODE` or `error CODE`.
fn outcome(response: &async_graphql::Response, data: &Value) -> String {
    if let Some(error) = response.errors.first() {
        let code = error
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .map_or_else(|| "?".to_owned(), |c| c.to_string().trim_matches('"').to_owned());
        return format!("error {code}");
    }
    let refusal = data
        .as_object()
        .into_iter()
        .flat_map(|root| root.values())
        .find_map(|payload| payload.get("userErrors")?.as_array()?.first().cloned());
    match refusal {
        Some(refusal) => format!("user error {}", refusal["code"].as_str().unwrap_or("?")),
        None => "ok".to_owned(),
    }
}

/// What the runs of one example left for the others.
#[derive(Default)]
struct Made {
    /// Disputes the mutations changed, for the queries to read.
    disputes: Vec<DisputeId>,
    /// Steps the acceptances enqueued (pending), for `cancelStep`.
    steps: Vec<String>,
    /// Keys created, for `revokeApiKey`.
    keys: Vec<String>,
    /// Policy versions saved, for `activatePolicy`.
    policy_versions: Vec<i64>,
    backtest: Option<String>,
    bulk_job: Option<String>,
}

/// Runs every example `options.api_runs` times and prints p50/p99 of each.
pub(crate) async fn api_operations(engine: &Engine, options: &BenchOptions) -> anyhow::Result<()> {
    seed_projection(engine, options.disputes).await?;
    let total = engine.store().count(&verdict_store::DisputeFilter::default()).await?;
    // As the `pattern_summary` schedule would have (every minute) before the run; the months the runs change
    // are read from the disputes again, as in production.
    let started = Instant::now();
    let months = engine.store().refresh_pattern_summary(Utc::now()).await?;
    println!(
        "api: pattern summary refreshed: {months} months in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let schema = verdict_api::graphql::build_schema(engine.clone());
    let admin = Principal {
        name: "bench-admin".into(),
        role: Role::Admin,
        kind: PrincipalKind::ApiKey,
    };
    // The upload links are signed as `serve` signs them; the bench's links are never served.
    let links = verdict_api::seller_links::SellerLinks::new(
        b"verdict bench: seller upload links, never served",
        Span::hours(72),
    )
    .map_err(anyhow::Error::msg)?;
    // The examples assign to "alice": an assignee must be a known person or key.
    match verdict_api::auth::create_api_key(engine.store(), "alice", Role::Analyst, Utc::now()).await {
        Ok(_) | Err(verdict_api::error::ApiError::AlreadyExists(_)) => {}
        Err(err) => anyhow::bail!("creating the key alice: {}", err.message()),
    }
    let runs = options.api_runs.max(1) as usize;
    let tag = Utc::now().format("%H%M%S%f").to_string();
    let mut all = examples(&options.examples_dir)?;
    let subscriptions: Vec<Example> = all
        .iter()
        .filter(|e| kind_of(&e.source) == "subscription")
        .map(|e| Example {
            name: e.name.clone(),
            source: e.source.clone(),
            variables: e.variables.clone(),
        })
        .collect();
    all.retain(|e| kind_of(&e.source) != "subscription");
    all.sort_by_key(|e| (rank(&e.name, kind_of(&e.source) == "query"), e.name.clone()));
    println!(
        "api: {} example operations, {runs} runs each, as an admin through the schema executor, over {total} disputes",
        all.len()
    );
    let mut made = Made::default();
    let mut rows = Vec::new();
    for example in &all {
        let prepared = match dispute_mutation(&example.name) {
            Some(prep) => {
                let started = Instant::now();
                let pool = prepare(engine, &format!("{tag}-{}", example.name), prep, runs).await?;
                tracing::info!(example = %example.name, secs = started.elapsed().as_secs_f64(), "prepared");
                pool
            }
            None => Vec::new(),
        };
        let mut samples = Vec::with_capacity(runs);
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        let budget = Instant::now();
        for run in 0..runs {
            // A slow operation stops after its time budget, with the runs it made (printed beside it).
            if run > 0 && budget.elapsed() > options.api_budget {
                break;
            }
            let variables = variables_for(engine, example, run, &prepared, &made, &tag).await?;
            let request = async_graphql::Request::new(example.source.clone())
                .variables(async_graphql::Variables::from_json(variables))
                .data(admin.clone())
                .data(links.clone());
            let started = Instant::now();
            let response = schema.execute(request).await;
            samples.push(started.elapsed());
            let data = response.data.clone().into_json().unwrap_or(Value::Null);
            *outcomes.entry(outcome(&response, &data)).or_default() += 1;
            collect(&example.name, &data, &prepared, run, &mut made, &tag);
        }
        samples.sort();
        rows.push((example.name.clone(), samples, outcomes));
        if example.name == "accept-dispute" {
            // The acceptances' pending steps, for cancelStep (read outside the timings).
            for (id, _) in &prepared {
                for step in engine.store().steps(*id).await? {
                    if step.status == "pending" {
                        made.steps.push(step.id.to_string());
                    }
                }
            }
        }
        if example.name == "bulk-message" && made.bulk_job.is_none() {
            made.bulk_job = Some(bulk_job(engine, &schema, &admin, &tag).await?);
        }
    }
    // The subscriptions, each one long-lived subscriber fed as `serve` feeds it (on PostgreSQL through this
    // process's change listener, from the NOTIFY of each commit).
    let listener = tokio::spawn(engine.store().clone().run_change_listener());
    for example in &subscriptions {
        let (samples, outcomes) = subscription_latency(engine, &schema, &admin, example, runs, options, &tag).await?;
        rows.push((example.name.clone(), samples, outcomes));
    }
    listener.abort();
    println!("| operation | p50 ms | p99 ms | max ms | runs | answers |");
    println!("|---|---|---|---|---|---|");
    for (name, samples, outcomes) in rows {
        let answers: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o}: {n}")).collect();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} | {} |",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.last().copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1000.0,
            samples.len(),
            answers.join(", ")
        );
    }
    Ok(())
}

/// For a subscription example: how long from a change's command to its delivery to a subscriber that has been
/// listening since before (the commit, the notice, the listener's load and the broadcast), over `runs`
/// changes: notes added through the engine to disputes the subscription selects (`disputeEvents`: one dispute,
/// as a detail screen watches it; `queueChanges`: disputes triaged into the example's queue).
async fn subscription_latency(
    engine: &Engine,
    schema: &verdict_api::graphql::VerdictSchema,
    admin: &Principal,
    example: &Example,
    runs: usize,
    options: &BenchOptions,
    tag: &str,
) -> anyhow::Result<(Vec<Duration>, BTreeMap<String, usize>)> {
    use async_graphql::futures_util::StreamExt;
    let actor = Actor::system("bench");
    let pool = prepare(engine, &format!("{tag}-{}", example.name), Prep::Chargeback, runs).await?;
    let mut variables = example.variables.clone();
    if example.name == "queue-changes" {
        for (id, _) in &pool {
            let queue = variables["queue"].as_str().unwrap_or("CARE").to_lowercase().parse()?;
            engine
                .handle(*id, Command::new(actor.clone(), Action::Triage { queue: Some(queue) }))
                .await?;
        }
    }
    let targets: Vec<DisputeId> = match example.name.as_str() {
        "dispute-events" => {
            let first = pool.first().map(|(id, _)| *id).context("no dispute to watch")?;
            variables["id"] = json!(first.to_string());
            vec![first; runs]
        }
        _ => pool.iter().map(|(id, _)| *id).collect(),
    };
    let mut stream = schema.execute_stream(
        async_graphql::Request::new(example.source.clone())
            .variables(async_graphql::Variables::from_json(variables))
            .data(admin.clone()),
    );
    // The stream subscribes when first polled: a task polls it and hands each delivery over with its time.
    let (deliveries, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(response) = stream.next().await {
            if deliveries.send((Instant::now(), response)).is_err() {
                break;
            }
        }
    });
    let note = |text: &str| Command::new(actor.clone(), Action::AddNote { note: text.to_owned() });
    // Until a first change arrives, the subscriber may not be listening yet.
    let mut listening = false;
    for _ in 0..50 {
        let target = targets.first().copied().context("no dispute to change")?;
        engine
            .handle(target, note("bench: is the subscriber listening?"))
            .await?;
        if tokio::time::timeout(Duration::from_millis(200), delivered.recv())
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
    }
    anyhow::ensure!(listening, "{}: the subscriber received nothing", example.name);
    while delivered.try_recv().is_ok() {}
    let mut samples = Vec::with_capacity(runs);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let budget = Instant::now();
    for target in targets {
        if !samples.is_empty() && budget.elapsed() > options.api_budget {
            break;
        }
        let started = Instant::now();
        let after = engine.handle(target, note("bench: a change to deliver")).await?;
        // The delivery of this change (a late one of the warm-up may come first).
        let (id, version) = (after.id.to_string(), after.version);
        loop {
            let (at, response) = tokio::time::timeout(Duration::from_secs(10), delivered.recv())
                .await
                .with_context(|| format!("{}: no delivery within 10 s", example.name))?
                .with_context(|| format!("{}: the subscription ended", example.name))?;
            let data = response.data.clone().into_json().unwrap_or(Value::Null);
            let dispute = data
                .as_object()
                .and_then(|root| root.values().next())
                .map(|change| &change["dispute"]);
            let ours = dispute.is_some_and(|d| d["id"] == json!(id) && d["version"].as_i64() >= Some(version));
            if ours || !response.errors.is_empty() {
                samples.push(at.duration_since(started));
                *outcomes.entry(outcome(&response, &data)).or_default() += 1;
                break;
            }
        }
    }
    reader.abort();
    samples.sort();
    Ok((samples, outcomes))
}

/// A bulk job to read with the bulk-job example: a bulk message to 101 fresh disputes (more than run inline).
async fn bulk_job(
    engine: &Engine,
    schema: &verdict_api::graphql::VerdictSchema,
    admin: &Principal,
    tag: &str,
) -> anyhow::Result<String> {
    let pool = prepare(engine, &format!("{tag}-job"), Prep::Chargeback, 101).await?;
    let ids: Vec<String> = pool.iter().map(|(id, _)| id.to_string()).collect();
    let query =
        "mutation($input: BulkMessageInput!) { bulkMessage(input: $input) { job { id } userErrors { message } } }";
    let variables = json!({"input": {"target": {"ids": ids}, "template": "CUSTOMER_CASE_UPDATE", "text": "bench"}});
    let response = schema
        .execute(
            async_graphql::Request::new(query)
                .variables(async_graphql::Variables::from_json(variables))
                .data(admin.clone()),
        )
        .await;
    let data = response.data.into_json()?;
    data["bulkMessage"]["job"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no bulk job: {data} {:?}", response.errors))
}

/// Keeps what later examples need from one run's answer.
fn collect(name: &str, data: &Value, prepared: &[(DisputeId, Option<String>)], run: usize, made: &mut Made, tag: &str) {
    if let Some((id, _)) = prepared.get(run) {
        made.disputes.push(*id);
    }
    match name {
        "save-policy" => {
            if let Some(v) = data["savePolicy"]["policy"]["version"].as_i64() {
                made.policy_versions.push(v);
            }
        }
        "create-api-key" if data["createApiKey"]["apiKey"].is_object() => {
            made.keys.push(format!("ledger-sync-{tag}-{run}"));
        }
        "start-policy-backtest" => {
            if let Some(id) = data["startPolicyBacktest"]["backtest"]["id"].as_str() {
                made.backtest.get_or_insert_with(|| id.to_owned());
            }
        }
        _ => {}
    }
}

/// The example's variables with real ids, versions and names for run `run`.
async fn variables_for(
    engine: &Engine,
    example: &Example,
    run: usize,
    prepared: &[(DisputeId, Option<String>)],
    made: &Made,
    tag: &str,
) -> anyhow::Result<Value> {
    let mut v = example.variables.clone();
    if matches!(
        dispute_mutation(&example.name),
        Some(Prep::PendingApproval | Prep::DeadStep)
    ) {
        // The target is the approval or the step, not the dispute.
        if let Some((_, Some(target))) = prepared.get(run) {
            match v.get_mut("input") {
                Some(input) => input["id"] = json!(target),
                None => v["id"] = json!(target),
            }
        }
        return Ok(v);
    }
    if let Some((id, item)) = prepared.get(run) {
        let id_text = id.to_string();
        if let Some(target) = v.pointer_mut("/input/target") {
            *target = json!({ "ids": [id_text] });
        } else if let Some(input) = v.get_mut("input") {
            input["id"] = json!(id_text);
            if input.get("expectedVersion").is_some() {
                input["expectedVersion"] = json!(load(engine, *id).await?.version);
            }
            if input.get("expectedAssignee").is_some() {
                input["expectedAssignee"] = Value::Null;
            }
            if let Some(item) = item {
                input["itemId"] = json!(item);
            }
        }
    } else if v.get("id").is_some() && !made.disputes.is_empty() && example.name.starts_with("dispute-") {
        let id = made.disputes[(run * 7919) % made.disputes.len()];
        v["id"] = json!(id.to_string());
    }
    match example.name.as_str() {
        "open-dispute" => v["input"]["processorDisputeId"] = json!(format!("man-{tag}-{run}")),
        "create-api-key" => v["input"]["name"] = json!(format!("ledger-sync-{tag}-{run}")),
        "revoke-api-key" => {
            if let Some(name) = made.keys.get(run) {
                v["input"]["name"] = json!(name);
            }
        }
        "activate-policy" => {
            if let Some(version) = made.policy_versions.get(run % made.policy_versions.len().max(1)) {
                v["input"]["version"] = json!(version);
            }
        }
        "refund" | "resolve-with-refund" => v["input"]["requestId"] = json!(format!("bench-{tag}-{run}")),
        // The bench disputes hold no evidence: an admin submits with the lead's override, as the example
        // cannot without the items its claim requires.
        "submit-defense" => v["input"]["overrideReason"] = json!("bench: submitted without the required evidence"),
        "cancel-step" => {
            if let Some(step) = made.steps.get(run) {
                v["id"] = json!(step);
            }
        }
        "bulk-job" => {
            if let Some(job) = &made.bulk_job {
                v["id"] = json!(job);
            }
        }
        "policy-backtest" => {
            if let Some(id) = &made.backtest {
                v["id"] = json!(id);
            }
        }
        _ => {}
    }
    Ok(v)
}
