//! Per-process CPU and RSS from `/proc/<pid>/stat` (Linux; read with the `procfs` crate).
//!
//! CPU is the change of `utime + stime` (in clock ticks) over wall time between two
//! samples, in percent of one core (200% = two cores busy). RSS is resident pages times
//! the page size. Anonymous RSS (`RssAnon` of `/proc/<pid>/status`: heap and other
//! memory the process allocated, without its mapped files) is read beside it, because a
//! node that maps its store segments has an RSS that follows its disk window and the
//! kernel's page cache, not its allocations.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::BenchError;
use crate::cluster::ProcessRef;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// State letter (`R`, `S`, `T` stopped, `Z` zombie, …).
    pub state: char,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Anonymous resident memory, bytes (`None` when the kernel does not report it).
    pub rss_anon_bytes: Option<u64>,
}

/// CPU time so far on `clock`, in nanoseconds: `libc::CLOCK_THREAD_CPUTIME_ID` (the
/// calling thread) or `libc::CLOCK_PROCESS_CPUTIME_ID` (every thread of this process).
/// Unlike `/proc`'s ticks it resolves single benchmark iterations; 0 if the clock fails.
pub fn cpu_clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; on failure it stays zeroed.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks() -> u64 {
    procfs::ticks_per_second()
}

/// Reads one process (`procfs`: `/proc/<pid>/stat`).
pub fn read(pid: u32) -> Result<ProcStat, BenchError> {
    let err = |reason: String| BenchError::Proc { pid, reason };
    let pid = i32::try_from(pid).map_err(|_| err("not a pid".into()))?;
    let process = procfs::process::Process::new(pid).map_err(|e| err(e.to_string()))?;
    let stat = process.stat().map_err(|e| err(e.to_string()))?;
    let anon = process.status().ok().and_then(|s| s.rssanon).map(|kib| kib.saturating_mul(1024));
    Ok(ProcStat {
        state: stat.state,
        cpu_ticks: stat.utime.saturating_add(stat.stime),
        rss_bytes: stat.rss.saturating_mul(procfs::page_size()),
        rss_anon_bytes: anon,
    })
}

/// One process's sampled series.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessSeries {
    /// Instance name (`validator-0`, `harness`).
    pub name: String,
    /// Module (`consensus`, `da`, …, `harness`).
    pub module: String,
    /// Pids seen (more than one after a restart).
    pub pids: Vec<u32>,
    /// `(t_s, cpu_percent)` per interval between two readings of the same pid.
    pub cpu: Vec<(f64, f64)>,
    /// `(t_s, rss_bytes)` per reading.
    pub rss: Vec<(f64, u64)>,
    /// `(t_s, anonymous rss_bytes)` per reading where the kernel reported it (empty in
    /// results written before it was recorded).
    #[serde(default)]
    pub rss_anon: Vec<(f64, u64)>,
}

/// Summary of one process over a point.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessSummary {
    /// Instance name.
    pub name: String,
    /// Module.
    pub module: String,
    /// Pids seen.
    pub pids: Vec<u32>,
    /// Mean CPU, percent of one core.
    pub cpu_percent_mean: f64,
    /// Highest interval CPU.
    pub cpu_percent_max: f64,
    /// Mean RSS.
    pub rss_bytes_mean: u64,
    /// Highest RSS.
    pub rss_bytes_max: u64,
    /// Readings taken.
    pub samples: u64,
}

impl ProcessSeries {
    /// Mean/max over the series.
    pub fn summary(&self) -> ProcessSummary {
        let cpu_mean =
            if self.cpu.is_empty() { 0.0 } else { self.cpu.iter().map(|c| c.1).sum::<f64>() / self.cpu.len() as f64 };
        let rss_mean = if self.rss.is_empty() {
            0
        } else {
            (self.rss.iter().map(|r| u128::from(r.1)).sum::<u128>() / self.rss.len() as u128) as u64
        };
        ProcessSummary {
            name: self.name.clone(),
            module: self.module.clone(),
            pids: self.pids.clone(),
            cpu_percent_mean: cpu_mean,
            cpu_percent_max: self.cpu.iter().map(|c| c.1).fold(0.0, f64::max),
            rss_bytes_mean: rss_mean,
            rss_bytes_max: self.rss.iter().map(|r| r.1).max().unwrap_or(0),
            samples: self.rss.len() as u64,
        }
    }
}

/// Samples a changing set of processes; keeps each one's previous reading to turn CPU
/// ticks into a rate.
#[derive(Debug)]
pub struct Sampler {
    origin: Instant,
    ticks: f64,
    prev: BTreeMap<String, (u32, Instant, u64)>,
    series: BTreeMap<String, ProcessSeries>,
    /// Processes that could not be read (gone, not ours), by name: last error.
    pub errors: BTreeMap<String, String>,
}

impl Sampler {
    /// A sampler whose times are seconds after `origin`.
    pub fn new(origin: Instant) -> Self {
        Sampler {
            origin,
            ticks: clock_ticks() as f64,
            prev: BTreeMap::new(),
            series: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Reads every process once at `now`. A dead or vanished process is skipped (and
    /// noted in `errors`); a new pid for a name (a restart) starts a new CPU baseline.
    pub fn sample(&mut self, procs: &[ProcessRef], now: Instant) {
        let t = now.saturating_duration_since(self.origin).as_secs_f64();
        for p in procs {
            let s = match read(p.pid) {
                Ok(s) if s.state != 'Z' && s.state != 'X' => s,
                Ok(_) => {
                    self.errors.insert(p.name.clone(), format!("pid {} is a zombie", p.pid));
                    continue;
                }
                Err(e) => {
                    self.errors.insert(p.name.clone(), e.to_string());
                    continue;
                }
            };
            let series = self.series.entry(p.name.clone()).or_insert_with(|| ProcessSeries {
                name: p.name.clone(),
                module: p.module.clone(),
                ..Default::default()
            });
            if !series.pids.contains(&p.pid) {
                series.pids.push(p.pid);
            }
            series.rss.push((t, s.rss_bytes));
            if let Some(anon) = s.rss_anon_bytes {
                series.rss_anon.push((t, anon));
            }
            if let Some((pid, at, ticks)) = self.prev.get(&p.name)
                && *pid == p.pid
            {
                let dt = now.saturating_duration_since(*at).as_secs_f64();
                if dt > 0.0 {
                    let cpu = s.cpu_ticks.saturating_sub(*ticks) as f64 / self.ticks / dt * 100.0;
                    series.cpu.push((t, cpu));
                }
            }
            self.prev.insert(p.name.clone(), (p.pid, now, s.cpu_ticks));
        }
    }

    /// The series, by name.
    pub fn into_series(self) -> Vec<ProcessSeries> {
        self.series.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0);
        assert!(me.rss_anon_bytes.is_some_and(|a| a > 0 && a <= me.rss_bytes + (1 << 20)));
        assert!(matches!(me.state, 'R' | 'S' | 'D'));
        assert!(matches!(read(u32::MAX), Err(BenchError::Proc { .. })));
    }
}
