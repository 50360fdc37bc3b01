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

/// The fields of `/proc/<pid>/stat` that we use, parsed from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFields {
    /// User-mode CPU time in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks.
    pub stime: u64,
    /// Number of threads.
    pub num_threads: u64,
    /// Start time after boot in clock ticks.
    pub starttime: u64,
    /// Virtual memory size in bytes.
    pub vsize: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(StatFields {
        utime: get(14)?,
        stime: get(15)?,
        num_threads: get(20)?,
        starttime: get(22)?,
        vsize: get(23)?,
        rss_pages: get(24)?,
    })
}

/// Parses `btime` (boot time, Unix seconds) from the text of `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety
    // preconditions.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

/// Reads the current process's stats; None where `/proc` is unavailable.
pub fn sample() -> Option<ProcessStats> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let ticks = sysconf(libc::_SC_CLK_TCK)? as f64;
    let page = sysconf(libc::_SC_PAGESIZE)?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    let start_time_seconds = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_btime(&t))
        .map(|btime| btime as f64 + stat.starttime as f64 / ticks);
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss_pages * page,
        virtual_bytes: stat.vsize,
        threads: stat.num_threads,
        open_fds,
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

    #[test]
    fn parses_stat_with_awkward_command_names() {
        // Fields 3.. of a real line; the comm contains a space and a parenthesis.
        let line = "4242 (lamina (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let f = parse_stat(line).unwrap();
        assert_eq!(
            f,
            StatFields { utime: 250, stime: 75, num_threads: 9, starttime: 123456, vsize: 987654321, rss_pages: 2048 }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_btime() {
        assert_eq!(parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process() {
        let s = sample().expect("/proc/self is readable on Linux");
        assert!(s.resident_bytes > 0);
        assert!(s.threads >= 1);
        assert!(s.open_fds.unwrap() >= 3);
        let mut text = String::new();
        s.render(&mut text);
        assert!(text.contains("# TYPE lamina_process_cpu_seconds_total counter\n"));
        assert!(text.contains("\nlamina_process_resident_memory_bytes "));
    }
}
