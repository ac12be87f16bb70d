//! The Verdict service as a library: configuration, wiring and the server loop, so that `main` stays thin
//! and end-to-end tests start the very same app on a random port.

pub mod bench;
mod bench_api;
mod bench_cpu;
mod bench_timers;
pub mod config;
pub mod database;
pub mod demo;
mod demo_orders;
pub mod import;
pub mod import_orders;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use verdict_api::AppState;
use verdict_engine::{Clock, Engine, SystemClock};
use verdict_store::Store;

pub use config::Config;

/// Connects to the database, applies migrations and builds the engine.
pub async fn connect(database_url: &str, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    connect_pool(database_url, 1, clock).await
}

async fn connect_pool(database_url: &str, min_connections: u32, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    let store = Store::connect_with(database_url, min_connections)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(Engine::new(store, clock))
}

pub async fn connect_system(database_url: &str) -> anyhow::Result<Engine> {
    connect(database_url, Arc::new(SystemClock)).await
}

/// The engine of a running replica: the configured database, its pool kept warm, migrated.
pub async fn connect_configured(config: &Config) -> anyhow::Result<Engine> {
    database::connect(config, database::PoolSize::Replica).await
}

/// The engine of a one-off command (`apikey`, `migrate`, `import`, `demo`): the configured database with a
/// small pool.
pub async fn connect_one_off(config: &Config) -> anyhow::Result<Engine> {
    database::connect(config, database::PoolSize::OneOff).await
}

/// How often the inbox is swept for notifications that were stored but not applied (crash, outage). Half the
/// inbox lease, so what a dead replica held is applied soon after its lease lapses; a sweep that finds nothing
/// is one indexed query.
pub const INBOX_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `state` on `listener` until `shutdown` completes, with the inbox sweeper running alongside: it
/// applies pending notifications once at start-up and then every [`INBOX_SWEEP_INTERVAL`]. The worker pool
/// runs with default settings and the local stand-ins (the sandbox processor, which invents outcomes, and the
/// mailbox): for tests and benchmarks only; `verdict serve` uses [`serve_with_workers`] with its configuration.
pub async fn serve_with_sandbox(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let worker = workers::local_pool(&state.engine, state.evidence_files.clone()).await?;
    serve_with_workers(listener, state, Some(worker), shutdown).await
}

/// How long a graceful shutdown waits for running steps to finish.
pub const WORKER_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// [`serve_with_sandbox`] with a given worker pool (`None`: no workers in this process). On shutdown the pool stops
/// claiming, releases what it has not started and finishes what runs, within [`WORKER_SHUTDOWN_GRACE`].
pub async fn serve_with_workers(
    listener: TcpListener,
    state: AppState,
    worker: Option<verdict_engine::worker::Worker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_workers, workers_stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_workers.send(true);
    };
    let pool = worker.map(|worker| {
        let mut stopping = workers_stopping.clone();
        tokio::spawn(worker.run(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }))
    });
    let served = serve_http(listener, state, shutdown).await;
    if let Some(pool) = pool
        && tokio::time::timeout(WORKER_SHUTDOWN_GRACE, pool).await.is_err()
    {
        tracing::warn!("workers did not finish in time; their leases will expire");
    }
    served
}

async fn serve_http(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "verdict listening");
    let sweeper = tokio::spawn(sweep_inbox(state.engine.clone()));
    // PostgreSQL: this replica's one listener for changes committed anywhere (subscriptions).
    let changes = tokio::spawn(state.engine.store().clone().run_change_listener());
    let (stop_bulk, bulk_stopping) = tokio::sync::watch::channel(false);
    let bulk = tokio::spawn(verdict_api::graphql::run_bulk_jobs(
        state.engine.clone(),
        format!("bulk-{}", uuid::Uuid::now_v7()),
        bulk_stopping,
    ));
    let backtests = tokio::spawn(verdict_engine::backtest::run_backtests(
        state.engine.clone(),
        format!("backtest-{}", uuid::Uuid::now_v7()),
        stop_bulk.subscribe(),
    ));
    let engine = state.engine.clone();
    let app = verdict_api::router(state);
    // Without TCP_NODELAY a response written in two parts waits for the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on a connection");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
    if tokio::time::timeout(WORKER_SHUTDOWN_GRACE, engine.finish_applying_after_answer())
        .await
        .is_err()
    {
        tracing::warn!("webhooks answered before this stop are still being applied; the sweep will finish them");
    }
    sweeper.abort();
    changes.abort();
    // The running batch finishes and records its results; the job is released for the next start.
    let _ = stop_bulk.send(true);
    if tokio::time::timeout(WORKER_SHUTDOWN_GRACE, bulk).await.is_err() {
        tracing::warn!("the bulk job worker did not stop in time; its lease will expire");
    }
    if tokio::time::timeout(WORKER_SHUTDOWN_GRACE, backtests).await.is_err() {
        tracing::warn!("the backtest worker did not stop in time; its lease will expire");
    }
    served?;
    tracing::info!("verdict stopped");
    Ok(())
}

async fn sweep_inbox(engine: Engine) {
    loop {
        // Drain in batches so a backlog after an outage is worked off promptly, not 100 rows per interval.
        loop {
            match engine.apply_pending(100).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(notifications = n, "applied pending notifications"),
                Err(err) => {
                    tracing::warn!(error = %err, "sweeping the notification inbox failed");
                    break;
                }
            }
        }
        tokio::time::sleep(INBOX_SWEEP_INTERVAL).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

/// Installs the process-wide TLS provider (ring) before anything opens a TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
