//! `verdict`: serve the API, migrate, seed demo data, print the schema, manage API keys.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use verdict::{Config, connect_configured, connect_one_off, demo, install_crypto_provider, shutdown_signal};
use verdict_api::auth::{Role, create_api_key};

#[derive(Parser)]
#[command(name = "verdict", version, about = "Payment disputes as durable state machines")]
struct Cli {
    /// Configuration file (default: ./verdict.toml if present). VERDICT_* variables override it.
    #[arg(long, global = true, env = "VERDICT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<CommandLine>,
}

#[derive(Subcommand)]
enum CommandLine {
    /// Serve GraphQL, health checks and webhooks (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Seed about fifty demo disputes, create an admin key and print its token.
    Demo {
        /// Keep serving after seeding.
        #[arg(long)]
        serve: bool,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Measure event throughput and queue-page latency; bulk-loads up to `--disputes` rows.
    ///
    /// Refuses to run unless the database is named explicitly (`--database-url` or VERDICT_DATABASE_URL) or
    /// `--yes` confirms the configured one: it writes a million synthetic disputes by default.
    Bench {
        /// The database to fill and measure (overrides the configuration).
        #[arg(long)]
        database_url: Option<String>,
        /// Run on the configured database although it was not named explicitly.
        #[arg(long)]
        yes: bool,
        /// Disputes in the table for the queue-page measurement (bulk-loaded if missing).
        #[arg(long, default_value_t = 1_000_000)]
        disputes: u64,
        /// Events appended in the throughput measurement.
        #[arg(long, default_value_t = 20_000)]
        transitions: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Timers due over a 10 s window, fired live while the table holds `disputes` pending timers.
        #[arg(long, default_value_t = 2_000)]
        timer_probes: u64,
        /// No-op steps drained by one worker pool.
        #[arg(long, default_value_t = 20_000)]
        steps: u64,
        /// Stripe notifications received (each opens a dispute).
        #[arg(long, default_value_t = 10_000)]
        notifications: u64,
        /// Step slots of the pool in the no-op drain (steps performed at once, and claimed per query).
        #[arg(long, default_value_t = 512)]
        step_concurrency: usize,
        /// Disputes each writer of the transitions measurement takes turns on (1: one hot row per writer).
        #[arg(long, default_value_t = 64)]
        disputes_per_writer: usize,
        /// Single steps added one at a time in the step-latency measurement.
        #[arg(long, default_value_t = 500)]
        latency_probes: u64,
        /// Steps added per second in the step-latency measurement (1 to 1,000).
        #[arg(long, default_value_t = 50)]
        latency_rate: u64,
        /// Due act-by timers fired in the timer-transitions measurement (by one replica, then by two).
        #[arg(long, default_value_t = 200_000)]
        due_timers: u64,
        /// Timers a pool fires at once in the timer-transitions measurement (default: `worker_concurrency`).
        #[arg(long)]
        timer_concurrency: Option<usize>,
        /// Only these measurements: transitions, notifications, queue, steps, step-latency, timers,
        /// timer-transitions, backtest, api.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Runs of each example operation in the api measurement, at most.
        #[arg(long, default_value_t = 150)]
        api_runs: u64,
        /// Seconds one example operation is run at most (a slow one makes fewer runs).
        #[arg(long, default_value_t = 60)]
        api_seconds: u64,
        /// The example operations the api measurement runs.
        #[arg(long, default_value = "graphql/examples")]
        examples: PathBuf,
    },
    /// Re-ingest exported processor notifications through the webhook path (inbox, then apply).
    ///
    /// Signatures are NOT verified on import: exports carry none that can be checked, so the operator
    /// vouches for the files. Stripe, Adyen, PayPal and alert files hold one JSON event per line (an Adyen
    /// line may be a whole notification body or one item). Braintree files hold one XML document per file, or
    /// one base64 bt_payload per line. Events already received are skipped (deduplicated by event id).
    ///
    /// `verdict import orders FILE...` imports marketplace orders instead (one OrderFacts JSON per line).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Import {
        #[command(subcommand)]
        what: Option<ImportCommand>,
        /// stripe, adyen, paypal, braintree or alerts.
        #[arg(long, required = true)]
        processor: Option<String>,
        /// Files to import, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a key; its token is printed once, as the last line.
    Create {
        #[arg(long)]
        name: String,
        /// viewer, analyst, lead or admin.
        #[arg(long)]
        role: String,
    },
    /// List every key: name, role, created, revoked (never a token).
    List,
    /// Revoke a key: its token is refused from the next request on.
    Revoke {
        /// The key's name.
        #[arg(long, required_unless_present = "id", conflicts_with = "id")]
        name: Option<String>,
        /// The key's id (as `apikey list` shows it).
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Marketplace orders into Verdict's own tables: one OrderFacts JSON object per line (docs/marketplace-api.md).
    /// A line that is refused is reported as file:line and the import goes on; importing twice changes nothing.
    Orders {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Logs to stderr at the configured level (checked by `Config::load`, so a typo is refused, not ignored).
fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(format!(
        "{},sqlx=warn,sea_orm=warn,sea_orm_migration=warn",
        config.log_level
    ))
    .with_context(|| format!("log level {:?}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Serves the API with the configured webhook secrets, timing policy, workers and outside systems.
async fn serve_configured(
    config: &Config,
    engine: verdict_engine::Engine,
    listener: TcpListener,
) -> anyhow::Result<()> {
    let webhooks = verdict_api::webhooks::Webhooks {
        secrets: std::sync::Arc::new(config.webhooks.secrets()?),
        certificates: std::sync::Arc::new(config.webhooks.paypal_certificates()?),
    };
    tracing::info!("{}", config.webhooks.summary());
    let engine = verdict::workers::with_timing(engine, &config.scheduling)
        .with_seller_tasks(config.sellers.task_policy()?)
        .with_seller_rate_threshold(config.sellers.dispute_rate_threshold_bps)
        .with_economics(config.policy.clone());
    let state = verdict_api::AppState::new(engine)
        .with_webhooks(webhooks)
        .with_graphql_limits(config.graphql.clone())
        .with_refund_limits(config.refunds)
        .with_allowed_origins(config.cors_origins()?)
        .with_oidc(verdict_api::identity::OidcVerifier::from_config(&config.oidc)?)
        .with_seller_links(config.seller_links()?)
        .with_evidence_files(std::sync::Arc::new(verdict_evidence::LocalDirStore::new(
            config.evidence.dir.clone(),
        )));
    let worker = verdict::workers::configured_pool(
        &state.engine,
        &config.scheduling,
        &config.effects(),
        state.evidence_files.clone(),
    )
    .await?;
    verdict::serve_with_workers(listener, state, Some(worker), shutdown_signal()).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    install_crypto_provider();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(CommandLine::Serve) {
        CommandLine::Schema => {
            print!("{}", verdict_api::schema_sdl());
        }
        CommandLine::Bench {
            database_url,
            yes,
            disputes,
            transitions,
            concurrency,
            timer_probes,
            steps,
            notifications,
            step_concurrency,
            disputes_per_writer,
            latency_probes,
            latency_rate,
            due_timers,
            timer_concurrency,
            only,
            api_runs,
            api_seconds,
            examples,
        } => {
            let mut config = config;
            let explicit =
                database_url.is_some() || std::env::var("VERDICT_DATABASE_URL").is_ok_and(|url| !url.trim().is_empty());
            if let Some(url) = database_url {
                config.database_url = url;
                config.check()?;
            }
            anyhow::ensure!(
                explicit || yes,
                "bench writes up to {disputes} synthetic disputes into the database it measures, here the \
                 configured {}. Name a scratch database with --database-url (or VERDICT_DATABASE_URL), or pass \
                 --yes to use the configured one",
                verdict::database::describe(&config.database_url)
            );
            init_tracing(&config)?;
            let engine = connect_configured(&config).await?;
            let options = verdict::bench::BenchOptions {
                disputes,
                transitions,
                concurrency: concurrency.max(1),
                timer_probes,
                steps,
                notifications,
                step_concurrency,
                disputes_per_writer,
                latency_probes: latency_probes.max(1),
                latency_rate: latency_rate.clamp(1, 1_000),
                due_timers,
                timer_concurrency: timer_concurrency.map(|c| c.max(1)),
                database_url: config.database_url.clone(),
                only,
                api_runs,
                api_budget: std::time::Duration::from_secs(api_seconds),
                examples_dir: examples,
            };
            verdict::bench::run(std::sync::Arc::new(engine), options).await?;
        }
        CommandLine::Migrate => {
            init_tracing(&config)?;
            connect_one_off(&config).await?;
            tracing::info!("migrations applied");
        }
        CommandLine::Serve => {
            init_tracing(&config)?;
            if config.sandbox {
                anyhow::bail!(
                    "sandbox = true is for `verdict demo` and tests: the sandbox processor invents refunds, \
                     acceptances and outcomes. Remove it to serve; steps of processors without an adapter then wait \
                     for one (dead-lettered as waiting_for_adapter)"
                );
            }
            let engine = connect_configured(&config).await?;
            let listener = TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            serve_configured(&config, engine, listener).await?;
        }
        CommandLine::Import {
            what: Some(ImportCommand::Orders { files }),
            ..
        } => {
            init_tracing(&config)?;
            let engine = connect_one_off(&config).await?;
            let report = verdict::import_orders::import_orders(&engine, &files).await?;
            for problem in &report.refused {
                eprintln!("skipped {problem}");
            }
            println!(
                "{} orders: {} created, {} replaced, {} unchanged, {} refused",
                report.lines,
                report.created,
                report.replaced,
                report.unchanged,
                report.refused.len()
            );
        }
        CommandLine::Import {
            what: None,
            processor,
            files,
        } => {
            init_tracing(&config)?;
            let processor = processor.unwrap_or_default();
            let source: verdict_engine::Source = processor.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let engine = connect_one_off(&config).await?;
            let report = verdict::import::import(&engine, source, &files, std::io::stderr().is_terminal()).await?;
            for problem in &report.malformed {
                eprintln!("skipped {problem}");
            }
            println!(
                "{} records: {} stored, {} already received, {} ignored types, {} malformed",
                report.records,
                report.stored,
                report.duplicates,
                report.ignored,
                report.malformed.len()
            );
        }
        CommandLine::Demo { serve: keep_serving } => {
            init_tracing(&config)?;
            // The demo runs to its end with nothing installed: the sandbox stands in for the processors.
            let config = Config {
                sandbox: true,
                ..config
            };
            let engine = if keep_serving {
                connect_configured(&config).await?
            } else {
                connect_one_off(&config).await?
            };
            let seeded = demo::seed(&engine).await?;
            let key = demo::admin_key(&engine).await.context("creating the demo admin key")?;
            let listener = if keep_serving {
                Some(
                    TcpListener::bind(&config.listen)
                        .await
                        .with_context(|| format!("binding {}", config.listen))?,
                )
            } else {
                None
            };
            println!(
                "Seeded {} demo disputes ({} already there).",
                seeded.created, seeded.skipped
            );
            if let Some(listener) = &listener {
                let addr = listener.local_addr()?;
                println!("GraphiQL: http://{addr}/graphql  (send the header Authorization: Bearer <token>)");
            }
            let name = demo::DEMO_ADMIN_KEY;
            if key.rotated {
                println!("Admin API key {name}: new token below; the token an earlier demo printed no longer works.");
            } else {
                println!("Admin API key {name} created; its token (shown once):");
            }
            println!("{}", key.token);
            if let Some(listener) = listener {
                serve_configured(&config, engine, listener).await?;
            }
        }
        CommandLine::Apikey {
            command: ApikeyCommand::Create { name, role },
        } => {
            let role: Role = role
                .parse()
                .map_err(|e: verdict_api::error::ApiError| anyhow::anyhow!(e.message()))?;
            let engine = connect_one_off(&config).await?;
            let token = create_api_key(engine.store(), &name, role, engine.clock().now())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            println!("Created API key {name:?} with role {role}. Its token, shown only now:");
            println!("{token}");
        }
        CommandLine::Apikey {
            command: ApikeyCommand::List,
        } => {
            let engine = connect_one_off(&config).await?;
            let keys = verdict_api::auth::list_api_keys(engine.store())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            print!("{}", apikey_table(&keys));
        }
        CommandLine::Apikey {
            command: ApikeyCommand::Revoke { name, id },
        } => {
            let which = verdict_api::auth::key_selector(id.as_deref(), name.as_deref())
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            let engine = connect_one_off(&config).await?;
            let (key, revoked_now) = verdict_api::auth::revoke_api_key(engine.store(), &which, engine.clock().now())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            let at = key.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            if revoked_now {
                println!(
                    "Revoked API key {:?} ({}); its token is refused from now on.",
                    key.name, key.id
                );
            } else {
                println!("API key {:?} ({}) was already revoked at {at}.", key.name, key.id);
            }
        }
    }
    Ok(())
}

/// `apikey list`: one key a line, aligned; never a token or its hash. Verdict does not record when a key was
/// last used (that would be a write on every request).
fn apikey_table(keys: &[verdict_store::ApiKeyRecord]) -> String {
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut rows = vec![[
        "NAME".to_owned(),
        "ROLE".to_owned(),
        "CREATED".to_owned(),
        "REVOKED".to_owned(),
        "ID".to_owned(),
    ]];
    for key in keys {
        rows.push([
            key.name.clone(),
            key.role.clone(),
            time(key.created_at),
            key.revoked_at.map_or_else(|| "-".to_owned(), time),
            key.id.to_string(),
        ]);
    }
    let mut widths = [0_usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if keys.is_empty() {
        out.push_str("(no API keys: create one with `verdict apikey create --name NAME --role ROLE`)\n");
    }
    out
}
