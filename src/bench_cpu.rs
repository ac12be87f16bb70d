//! Where a benchmark's CPU went: the whole machine, this process, and the PostgreSQL server's processes, read
//! from Linux's `/proc` before and after a measurement. Verdict and a local PostgreSQL share the machine's
//! cores, so a rate that stops growing with a second replica is explained by who was using them; elsewhere
//! (no `/proc`, or a server on another host) the figures are simply not printed.

use std::collections::HashMap;

/// Cumulative CPU counters at one moment, in clock ticks.
pub(crate) struct CpuSample {
    /// All CPUs: busy (everything but idle and iowait) and in all.
    busy: u64,
    total: u64,
    iowait: u64,
    cpus: u64,
    this_process: u64,
    /// Per `postgres` process id: user and system ticks.
    postgres: HashMap<u32, u64>,
}

/// CPU used between two samples, in cores (1.0 is one core busy for the whole interval).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuUse {
    pub machine_busy: f64,
    pub cpus: u64,
    pub iowait: f64,
    pub this_process: f64,
    pub postgres: f64,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine {:.2} of {} cores busy (iowait {:.2}): this process {:.2}, PostgreSQL {:.2}, other {:.2}",
            self.machine_busy,
            self.cpus,
            self.iowait,
            self.this_process,
            self.postgres,
            (self.machine_busy - self.this_process - self.postgres).max(0.0)
        )
    }
}

impl CpuSample {
    /// Reads the counters now; `None` where `/proc` is not Linux's.
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (busy, total, iowait, cpus) = parse_proc_stat(&stat)?;
        let this_process = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
        let mut postgres = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
                continue;
            };
            // A process may end between the listing and the read: it is skipped.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = process_ticks(&stat)
                && name == "postgres"
            {
                postgres.insert(pid, ticks);
            }
        }
        Some(Self {
            busy,
            total,
            iowait,
            cpus,
            this_process,
            postgres,
        })
    }

    /// The CPU used from `before` (a sample taken with [`CpuSample::now`]) until now.
    pub(crate) fn since(before: Option<Self>) -> Option<CpuUse> {
        before?.until(&Self::now()?)
    }

    /// The CPU used from `self` to `later`.
    pub(crate) fn until(&self, later: &Self) -> Option<CpuUse> {
        let total = later.total.checked_sub(self.total)?;
        if total == 0 || later.cpus == 0 {
            return None;
        }
        // Ticks of one core over the interval: the all-CPU total divided among the cores.
        let per_core = total as f64 / later.cpus as f64;
        let postgres: u64 = later
            .postgres
            .iter()
            .map(|(pid, ticks)| ticks.saturating_sub(self.postgres.get(pid).copied().unwrap_or(0)))
            .sum();
        Some(CpuUse {
            machine_busy: later.busy.saturating_sub(self.busy) as f64 / per_core,
            cpus: later.cpus,
            iowait: later.iowait.saturating_sub(self.iowait) as f64 / per_core,
            this_process: later.this_process.saturating_sub(self.this_process) as f64 / per_core,
            postgres: postgres as f64 / per_core,
        })
    }
}

/// From `/proc/stat`: busy, total and iowait ticks over all CPUs, and the number of CPUs.
fn parse_proc_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let mut lines = stat.lines();
    let all = lines.next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = all.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = *fields.get(3)?;
    let iowait = *fields.get(4)?;
    let cpus = lines
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    Some((total - idle - iowait, total, iowait, cpus))
}

/// From `/proc/<pid>/stat`: the command name and its user plus system ticks.
fn process_ticks(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may itself hold spaces or parentheses: it ends at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15 (1-based), so 11 and 12 here.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_busy_total_and_the_cpus() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\ncpu1 50 3 25 400 10 2 1 0 0 0\n\
                    intr 1 2 3\nctxt 99\n";
        assert_eq!(parse_proc_stat(stat), Some((160, 980, 20, 2)));
        assert_eq!(parse_proc_stat("intr 1 2\n"), None);
    }

    #[test]
    fn a_process_name_with_spaces_and_parentheses_is_read_whole() {
        let stat = "4242 (postgres: a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 12 0 0 20 0 1 0 5 0 0";
        assert_eq!(process_ticks(stat), Some(("postgres: a (b) c", 49)));
        assert_eq!(process_ticks("4242 (postgres) S 1"), None);
    }

    #[test]
    fn use_is_counted_in_cores_over_the_interval() {
        let before = CpuSample {
            busy: 100,
            total: 1_000,
            iowait: 0,
            cpus: 2,
            this_process: 10,
            postgres: HashMap::from([(1, 50), (2, 5)]),
        };
        // 200 ticks over two cores is 100 ticks of one core: 150 busy ticks are 1.5 cores.
        let after = CpuSample {
            busy: 250,
            total: 1_200,
            iowait: 10,
            cpus: 2,
            this_process: 60,
            // Process 2 ended; process 3 started during the interval and counts whole.
            postgres: HashMap::from([(1, 80), (3, 20)]),
        };
        let used = before.until(&after).unwrap();
        assert_eq!(
            used,
            CpuUse {
                machine_busy: 1.5,
                cpus: 2,
                iowait: 0.1,
                this_process: 0.5,
                postgres: 0.5
            }
        );
        assert!(after.until(&before).is_none());
        assert!(CpuSample::now().is_none_or(|now| now.cpus >= 1));
    }
}
