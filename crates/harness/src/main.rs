//! `verdict-harness`: Verdict's fault harness. It runs the real `verdict serve` binary as child processes
//! against a fresh database, drives it with signed webhooks of every processor and analysts over GraphQL,
//! points its processor adapters at a local fake that records idempotency keys, injects faults (kill -9,
//! replicas killed at random, database and network faults), and then checks from the database and the fake's
//! record that nothing acknowledged was lost and nothing happened twice. See docs/reliability.md.

mod check;
mod cluster;
mod dbfaults;
mod fake;
mod faults;
mod http_load;
mod load;
mod modes;
mod points;
mod replicas;
mod setup;
mod soak;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "verdict-harness", about = "Fault harness for Verdict (docs/reliability.md)")]
struct Cli {
    /// The `verdict` binary (default: beside this one, so build both with the same profile).
    #[arg(long, global = true)]
    verdict: Option<PathBuf>,
    /// PostgreSQL server to create a fresh database on (`verdict_test_harness_*`); SQLite without it.
    #[arg(long, global = true, env = "VERDICT_TEST_DATABASE_URL")]
    postgres: Option<String>,
    /// Run on SQLite even if VERDICT_TEST_DATABASE_URL is set.
    #[arg(long, global = true)]
    sqlite: bool,
    /// Keep the database and logs after the run (printed at the end).
    #[arg(long, global = true)]
    keep: bool,
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// kill -9 a `verdict serve` at random moments (every fourth round during start-up) under load, then check.
    Crash {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Disputes per processor.
        #[arg(long, default_value_t = 40)]
        disputes: usize,
        /// Longest time a round runs before its kill, in milliseconds.
        #[arg(long, default_value_t = 4000)]
        max_uptime_ms: u64,
    },
    /// A crash right after each of the first N commits in turn (VERDICT_CRASH_AFTER_COMMIT), one chargeback each.
    CrashPoints {
        #[arg(long, default_value_t = 6)]
        points: u64,
    },
    /// Three replicas on one PostgreSQL killed at random (sometimes all) under timer-heavy load, cron every 2-3 s.
    Replicas {
        #[arg(long, default_value_t = 90)]
        seconds: u64,
    },
    /// Database faults: PostgreSQL backends paused (SIGSTOP) and cut, statement_timeout; SQLite read-only and full.
    DbFaults,
    /// Network faults toward the processor: slow, reset, 429 with Retry-After, 5xx bursts, a dead processor.
    NetFaults,
    /// Backup, restore into a fresh database, replay the inbox since the backup, compare the disputes.
    Backup,
    /// Mixed load at a fixed rate for a while, sampling RSS, p99 latencies and table sizes.
    Soak {
        #[arg(long, default_value_t = 1800)]
        seconds: u64,
        /// Webhooks per second (half the measured capacity: docs/reliability.md).
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        #[arg(long, default_value_t = 60)]
        sample_every: u64,
    },
    /// Load over HTTP from this process (docs/benchmarks.md): signed Stripe webhooks as fast as acknowledged, then
    /// at half that rate, then GraphQL transitions of the disputes they opened. A benchmark, not a check.
    HttpLoad {
        /// Webhooks of the saturation phase (each opens a dispute that the transitions phase then moves twice).
        #[arg(long, default_value_t = 20_000)]
        webhooks: u64,
        /// Connections sending at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Length of the half-rate phase.
        #[arg(long, default_value_t = 20.0)]
        half_rate_seconds: f64,
    },
    /// The short form CI runs: crash points, crash (12 rounds) and backup on SQLite and PostgreSQL (if set), network faults.
    Ci,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let binary = setup::verdict_binary(cli.verdict.clone())?;
        let pg = if cli.sqlite { None } else { cli.postgres.clone() };
        let ctx = modes::Ctx {
            binary,
            pg,
            keep: cli.keep,
        };
        match cli.command {
            Mode::Crash {
                rounds,
                disputes,
                max_uptime_ms,
            } => modes::crash(&ctx, rounds, disputes, max_uptime_ms).await,
            Mode::CrashPoints { points } => points::commit_points(&ctx, points).await,
            Mode::Replicas { seconds } => replicas::replicas(&ctx, seconds).await,
            Mode::DbFaults => dbfaults::db_faults(&ctx).await,
            Mode::NetFaults => faults::net_faults(&ctx).await,
            Mode::Backup => faults::backup(&ctx).await,
            Mode::Soak {
                seconds,
                rate,
                sample_every,
            } => soak::soak(&ctx, seconds, rate, sample_every).await,
            Mode::HttpLoad {
                webhooks,
                concurrency,
                half_rate_seconds,
            } => http_load::http_load(&ctx, webhooks, concurrency.max(1), half_rate_seconds).await,
            Mode::Ci => modes::ci(&ctx).await,
        }
    })
}
