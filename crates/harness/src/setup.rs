//! A fresh database, the configuration Verdict runs with, and the real `verdict` binary as child processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement};

pub const STRIPE_SECRET: &str = "whsec_harness";
pub const ADYEN_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
pub const ADYEN_USER: &str = "adyen";
pub const ADYEN_PASSWORD: &str = "harness-s3cret";
pub const BT_PUBLIC: &str = "harness_public_key";
pub const BT_PRIVATE: &str = "harness_private_key";
pub const ALERT_SECRET: &str = "alert_harness";
pub const STRIPE_API_KEY: &str = "sk_test_harness";
pub const PAYPAL_WEBHOOK_ID: &str = "WH-VERDICT-HARNESS";
/// A PayPal certificate URL (Verdict trusts only PayPal's); Verdict is given the test signer's certificate for
/// it (`VERDICT_PAYPAL_CERTIFICATES`) and never fetches it.
pub const PAYPAL_CERT_URL: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-verdict-harness";
const PAYPAL_TEST_CERT: &str =
    include_str!("../../../tests/fixtures/processors/paypal/verdict-test-signing/test-cert.pem");

/// A database made for one harness run (PostgreSQL: `verdict_test_harness_*`, dropped by `.ci/run` if left).
pub struct Db {
    pub url: String,
    pub postgres: bool,
    admin: Option<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Db {
    pub async fn fresh(pg_admin: Option<&str>) -> anyhow::Result<Db> {
        let dir = tempfile::Builder::new().prefix("verdict-harness-").tempdir()?;
        match pg_admin {
            None => Ok(Db {
                url: format!("sqlite://{}?mode=rwc", dir.path().join("verdict.db").display()),
                postgres: false,
                admin: None,
                dir,
            }),
            Some(admin) => {
                let name = format!("verdict_test_harness_{}", uuid::Uuid::now_v7().simple());
                let conn = sea_orm::Database::connect(admin)
                    .await
                    .context("connecting to PostgreSQL")?;
                conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
                conn.close().await?;
                Ok(Db {
                    url: with_database(admin, &name)?,
                    postgres: true,
                    admin: Some((admin.to_owned(), name)),
                    dir,
                })
            }
        }
    }

    /// The SQLite file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("verdict.db")
    }

    /// Drops the PostgreSQL database (kept when `keep` is set, for a look after a failure).
    pub async fn drop_database(self, keep: bool) {
        if keep {
            let _ = self.dir.keep();
            return;
        }
        if let Some((admin, name)) = &self.admin
            && let Ok(conn) = sea_orm::Database::connect(admin).await
        {
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url)?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

pub async fn rows(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<QueryResult>> {
    let statement = Statement::from_string(db.get_database_backend(), sql.to_owned());
    Ok(db.query_all_raw(statement).await?)
}

pub async fn exec(db: &DatabaseConnection, sql: &str) -> anyhow::Result<()> {
    db.execute_unprepared(sql).await?;
    Ok(())
}

pub async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let rows = rows(db, sql).await?;
    let row = rows.first().context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// Where the `verdict` binary is: `--verdict`, else beside the harness's own executable.
pub fn verdict_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the harness has no directory")?
            .join("verdict"),
    };
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p verdict -p verdict-harness) or pass --verdict",
            path.display()
        );
    }
    Ok(path)
}

/// Everything a run of `verdict` needs: binary, database, configuration file, port.
#[derive(Clone)]
pub struct Setup {
    pub binary: PathBuf,
    pub db_url: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub min_connections: u32,
}

impl Setup {
    pub fn new(binary: PathBuf, db: &Db, fake_url: &str, scheduling: &str) -> anyhow::Result<Setup> {
        let config = db.dir.path().join("verdict.toml");
        std::fs::write(
            &config,
            format!(
                "[processors]\n\
                 stripe_base_url = \"{fake_url}\"\n\
                 adyen_disputes_base_url = \"{fake_url}/adyen/disputes\"\n\
                 adyen_checkout_base_url = \"{fake_url}/adyen/checkout\"\n\
                 [scheduling]\n{scheduling}\n"
            ),
        )?;
        std::fs::write(db.dir.path().join("paypal-test-cert.pem"), PAYPAL_TEST_CERT)?;
        Ok(Setup {
            binary,
            db_url: db.url.clone(),
            dir: db.dir.path().to_owned(),
            config,
            min_connections: 4,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars() {
            if name.starts_with("VERDICT_") {
                command.env_remove(name);
            }
        }
        command
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env("VERDICT_DATABASE_URL", &self.db_url)
            .env("VERDICT_DATABASE_MIN_CONNECTIONS", self.min_connections.to_string())
            .env("VERDICT_LOG_LEVEL", "info")
            .env("VERDICT_LOG_FORMAT", "json")
            .env("VERDICT_STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET)
            .env("VERDICT_ADYEN_HMAC_KEY", ADYEN_KEY)
            .env("VERDICT_ADYEN_BASIC_AUTH", format!("{ADYEN_USER}:{ADYEN_PASSWORD}"))
            .env("VERDICT_BRAINTREE_PUBLIC_KEY", BT_PUBLIC)
            .env("VERDICT_BRAINTREE_PRIVATE_KEY", BT_PRIVATE)
            .env("VERDICT_ALERT_WEBHOOK_SECRETS", ALERT_SECRET)
            .env("VERDICT_PAYPAL_WEBHOOK_ID", PAYPAL_WEBHOOK_ID)
            .env(
                "VERDICT_PAYPAL_CERTIFICATES",
                format!("{PAYPAL_CERT_URL}={}", self.dir.join("paypal-test-cert.pem").display()),
            )
            .env("VERDICT_STRIPE_API_KEY", STRIPE_API_KEY)
            .env("VERDICT_ADYEN_API_KEY", "adyen_harness_key")
            .env("VERDICT_ADYEN_MERCHANT_ACCOUNT", "HarnessMerchant")
            .stdin(Stdio::null());
        command
    }

    /// Runs a one-off command (`migrate`, `apikey create`, `import`) and returns its stdout.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.command().args(args).output()?;
        if !output.status.success() {
            bail!(
                "verdict {}: {}\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Migrates and creates a lead's key; returns its token.
    pub fn prepare(&self) -> anyhow::Result<String> {
        self.run(&["migrate"])?;
        let out = self.run(&["apikey", "create", "--name", "harness-lead", "--role", "lead"])?;
        out.lines()
            .last()
            .map(|l| l.trim().to_owned())
            .context("apikey create printed no token")
    }

    pub fn spawn(&self, name: &str, port: u16, extra: &[(&str, String)]) -> anyhow::Result<Server> {
        let log = self.dir.join(format!("{name}.log"));
        let mut command = self.command();
        command
            .arg("serve")
            .env("VERDICT_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn()?;
        Ok(Server {
            child,
            log,
            port,
            name: name.to_owned(),
            started: Instant::now(),
        })
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub struct Server {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
    pub name: String,
    pub started: Instant,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no drain, no shutdown hook.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                bail!("{} exited on its own ({status}):\n{}", self.name, self.log_tail(30));
            }
            if let Ok(r) = http.get(format!("http://127.0.0.1:{}/readyz", self.port)).send().await
                && r.status().is_success()
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("{} not ready after {timeout:?}:\n{}", self.name, self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
