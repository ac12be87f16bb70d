//! A private PostgreSQL server for the faults that hit the whole server (restart, pause): the machine's
//! shared server on 5432 serves other work and is never restarted or stopped by the harness.
//!
//! `initdb` into a temporary folder as the `postgres` OS user (the server refuses to run as root), started
//! with `pg_ctl` on a free port, listening on 127.0.0.1 only, trust authentication; stopped and deleted with
//! the run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::setup::free_port;

/// The OS user PostgreSQL runs as.
const OS_USER: &str = "postgres";

pub struct Cluster {
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// Runs a PostgreSQL tool as the `postgres` OS user.
fn as_postgres(tool: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("runuser")
        .args(["-u", OS_USER, "--", tool])
        .args(args)
        .output()
        .with_context(|| format!("running {tool} as {OS_USER} (needs root and PostgreSQL's binaries)"))?;
    if !output.status.success() {
        bail!(
            "{tool} {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Cluster {
    pub fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("verdict-harness-pg-").tempdir()?;
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let owner = format!("{OS_USER}:{OS_USER}");
        let chown = Command::new("chown").args(["-R", &owner]).arg(dir.path()).status()?;
        if !chown.success() {
            bail!("chown {} failed", dir.path().display());
        }
        as_postgres(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )?;
        let cluster = Cluster {
            data,
            log,
            port: free_port()?,
            _dir: dir,
        };
        cluster.pg_ctl(&["start"])?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, action: &[&str]) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.data.display()
        );
        let (data, log) = (self.data.display().to_string(), self.log.display().to_string());
        let mut args = vec!["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60"];
        args.extend_from_slice(action);
        as_postgres("pg_ctl", &args)
    }

    /// Stops the server as a crash would (`-m immediate`: no checkpoint, clients cut).
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate"])
    }

    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["start"])
    }

    /// The postmaster and every process it started (backends, checkpointer, WAL writer...).
    pub fn processes(&self) -> anyhow::Result<Vec<u32>> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))?;
        let postmaster: u32 = pid_file.lines().next().unwrap_or_default().trim().parse()?;
        let children = Command::new("pgrep").args(["-P", &postmaster.to_string()]).output()?;
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
        Ok(pids)
    }

    /// SIGSTOP (`pause`) or SIGCONT the whole server: it hangs with every connection open.
    pub fn signal_all(&self, pause: bool) -> anyhow::Result<()> {
        let signal = if pause { "-STOP" } else { "-CONT" };
        for pid in self.processes()? {
            let _ = Command::new("kill").args([signal, &pid.to_string()]).status();
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.signal_all(false);
        let _ = self.stop_immediate();
        std::thread::sleep(Duration::from_millis(100));
    }
}
