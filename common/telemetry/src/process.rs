//! Cheap process metrics read from `/proc/self` at scrape time (Linux; nothing elsewhere).
//!
//! Rendered directly in the Prometheus text format rather than recorded through the
//! `metrics` facade, because CPU time is a fractional counter and these values are
//! only worth reading when someone scrapes.
//!
//! | metric | type | source |
//! |---|---|---|
//! | `lamina_process_cpu_seconds_total` | counter | `utime + stime` of `/proc/self/stat` |
//! | `lamina_process_resident_memory_bytes` | gauge | `rss` of `/proc/self/stat` × page size |
//! | `lamina_process_virtual_memory_bytes` | gauge | `vsize` of `/proc/self/stat` |
//! | `lamina_process_threads` | gauge | `num_threads` of `/proc/self/stat` |
//! | `lamina_process_open_fds` | gauge | entries of `/proc/self/fd` |
//! | `lamina_process_start_time_seconds` | gauge | `starttime` + `btime` of `/proc/stat` (Unix time) |

use std::fmt::Write as _;

/// One sample of the process's resource use.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Number of threads.
    pub threads: u64,
    /// Open file descriptors (None when `/proc/self/fd` cannot be listed).
    pub open_fds: Option<u64>,
    /// Process start time as Unix seconds (None when boot time is unknown).
    pub start_time_seconds: Option<f64>,
}

/// Reads the current process's stats (the `procfs` crate); None where `/proc` is
/// unavailable.
pub fn sample() -> Option<ProcessStats> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let start_time_seconds = procfs::boot_time_secs().ok().map(|btime| btime as f64 + stat.starttime as f64 / ticks);
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss.saturating_mul(procfs::page_size()),
        virtual_bytes: stat.vsize,
        threads: u64::try_from(stat.num_threads).unwrap_or(0),
        open_fds: me.fd_count().ok().map(|n| n as u64),
        start_time_seconds,
    })
}

impl ProcessStats {
    /// Appends these stats to `out` in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric(
            "lamina_process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent, in seconds.",
            self.cpu_seconds,
        );
        metric(
            "lamina_process_resident_memory_bytes",
            "gauge",
            "Resident memory size, in bytes.",
            self.resident_bytes as f64,
        );
        metric(
            "lamina_process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size, in bytes.",
            self.virtual_bytes as f64,
        );
        metric("lamina_process_threads", "gauge", "Number of OS threads.", self.threads as f64);
        if let Some(fds) = self.open_fds {
            metric("lamina_process_open_fds", "gauge", "Number of open file descriptors.", fds as f64);
        }
        if let Some(t) = self.start_time_seconds {
            metric(
                "lamina_process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process() {
        let s = sample().expect("/proc/self is readable on Linux");
        assert!(s.resident_bytes > 0);
        assert!(s.threads >= 1);
        assert!(s.open_fds.unwrap() >= 3);
        assert!(s.start_time_seconds.unwrap() > 1.6e9, "after 2020");
        let mut text = String::new();
        s.render(&mut text);
        assert!(text.contains("# TYPE lamina_process_cpu_seconds_total counter\n"));
        assert!(text.contains("\nlamina_process_resident_memory_bytes "));
    }
}
