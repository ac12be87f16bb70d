//! `verdict`: serve the API, migrate, seed demo data, print the schema, manage API keys.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use verdict::{Config, connect_configured, demo, install_crypto_provider, shutdown_signal};
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
    /// Measure event throughput and queue-page latency on the configured database.
    Bench {
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
        /// Only these measurements: transitions, notifications, queue, steps, step-latency, timers.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Re-ingest exported processor notifications through the webhook path (inbox, then apply).
    ///
    /// Signatures are NOT verified on import: exports carry none that can be checked, so the operator
    /// vouches for the files. Stripe, Adyen, PayPal and alert files hold one JSON event per line (an Adyen
    /// line may be a whole notification body or one item). Braintree files hold one XML document per file, or
    /// one base64 bt_payload per line. Events already received are skipped (deduplicated by event id).
    Import {
        /// stripe, adyen, paypal, braintree or alerts.
        #[arg(long)]
        processor: String,
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
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(format!(
        "{},sqlx=warn,sea_orm=warn,sea_orm_migration=warn",
        config.log_level
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Serves the API with the configured webhook secrets, timing policy, workers and outside systems.
async fn serve_configured(
    config: &Config,
    engine: verdict_engine::Engine,
    listener: TcpListener,
) -> anyhow::Result<()> {
    let webhooks = verdict_api::webhooks::Webhooks {
        secrets: std::sync::Arc::new(config.webhooks.secrets()?),
        ..Default::default()
    };
    tracing::info!(secrets = ?webhooks.secrets, "webhooks configured");
    let engine = verdict::workers::with_timing(engine, &config.scheduling);
    let state = verdict_api::AppState::new(engine)
        .with_webhooks(webhooks)
        .with_graphql_limits(config.graphql.clone());
    let worker = verdict::workers::configured_pool(&state.engine, &config.scheduling, &config.effects()).await?;
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
            disputes,
            transitions,
            concurrency,
            timer_probes,
            steps,
            notifications,
            step_concurrency,
            disputes_per_writer,
            only,
        } => {
            init_tracing(&config);
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
                only,
            };
            verdict::bench::run(std::sync::Arc::new(engine), options).await?;
        }
        CommandLine::Migrate => {
            init_tracing(&config);
            connect_configured(&config).await?;
            tracing::info!("migrations applied");
        }
        CommandLine::Serve => {
            init_tracing(&config);
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
        CommandLine::Import { processor, files } => {
            init_tracing(&config);
            let source: verdict_engine::Source = processor.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let engine = connect_configured(&config).await?;
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
            init_tracing(&config);
            // The demo runs to its end with nothing installed: the sandbox stands in for the processors.
            let config = Config {
                sandbox: true,
                ..config
            };
            let engine = connect_configured(&config).await?;
            let seeded = demo::seed(&engine).await?;
            let name = format!("demo-admin-{}", engine.clock().now().format("%Y%m%d%H%M%S%3f"));
            let token = create_api_key(engine.store(), &name, Role::Admin, engine.clock().now())
                .await
                .map_err(|e| anyhow::anyhow!("creating the demo admin key: {}", e.message()))?;
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
            println!("Admin API key {name}; its token (shown once):");
            println!("{token}");
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
            let engine = connect_configured(&config).await?;
            let token = create_api_key(engine.store(), &name, role, engine.clock().now())
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            println!("Created API key {name:?} with role {role}. Its token, shown only now:");
            println!("{token}");
        }
    }
    Ok(())
}
