//! `results.json`: the versioned record of a benchmark run, plus its CSV and markdown
//! forms.
//!
//! # Schema (`"schema": "lamina-bench-results"`, `"schema_version": 1`)
//!
//! ```text
//! {
//!   "schema": "lamina-bench-results", "schema_version": 1,
//!   "name": str, "started_unix_ms": int, "finished_unix_ms": int, "lamina_version": str,
//!   "git": {"revision": str, "dirty": bool} | null,
//!   "machine": {"hostname", "cores", "memory_bytes", "cpu_model", "kernel", "os", "arch",
//!               "sig_floor_us" (µs per signature, batched ZIP-215, one core) | null},
//!   "spec": BenchSpec (as given, durations in seconds),
//!   "configurations": [{
//!     "label": "v4 da4 c1", "topology": {...}, "observes": {"finalized", "executed"},
//!     "stop_reason": str, "error": str | null,
//!     "points": [Point]
//!   }]
//! }
//! Point = {
//!   "offered_tps", "achieved_tps" (last observed stage, in the window),
//!   "finalized_tps", "executed_tps", "da_bytes_per_s" (target counter, or null),
//!   "finalized_bytes_per_s" (bytes of the transactions finalized in the window),
//!   "warmup_s", "duration_s", "drain_s", "elapsed_s", "drained",
//!   "submit": {"scheduled","sent","accepted","busy","rejected","unanswered"},
//!   "exec": {"success","failed","rejected", "rejected_reasons" (by reason, where the
//!     target looked receipts up; absent if none), "rejected_samples" (the first few)},
//!   "unknown_completions",
//!   "consensus": Latency | null, "e2e": Latency | null, "generator_lag": Latency,
//!     Latency = {"count","censored","mean_ms","p50_ms","p90_ms","p99_ms","p999_ms","min_ms","max_ms"}
//!   "cdf": {"consensus": [[ms, fraction]], "e2e": [[ms, fraction]]},
//!   "timeseries": [{"t_s","offered_tps","sent_tps","finalized_tps","executed_tps",
//!                   "consensus_p50_ms","consensus_p99_ms","e2e_p50_ms","e2e_p99_ms"}],
//!   "samples": [{"t_s","da_bytes","height"}],
//!   "processes": [{"name","module","pids","cpu_percent_mean","cpu_percent_max",
//!                  "rss_bytes_mean","rss_bytes_max","samples"}],
//!   "process_series": [{"name","module","pids","cpu":[[t_s,%]],"rss":[[t_s,bytes]]}],
//!   "faults": [{"planned_s","at_s","instance","action","ok","error"}],
//!   "verdict": {"verdict":"pass"} | {"verdict":"fail","reason":str} | null,
//!   "memory": {"pregenerated_bytes_estimate", "generate_s"}
//! }
//! ```
//!
//! Times in the point (`t_s`, `at_s`) are seconds after the point's `t0`, the intended
//! send time of its first transaction. Definitions of the figures: [`crate::stats`].
//!
//! Versioning: fields may be *added* within a version (readers ignore unknown fields);
//! renaming, removing or changing the meaning of a field bumps `schema_version`.
//! [`check_schema`] validates a document against version 1.

use std::io::Write as _;
use std::path::Path;

use crate::BenchError;
use crate::cluster::{FaultAction, Instance, Topology};
use crate::procstat::{ProcessSeries, ProcessSummary};
use crate::runner::BenchSpec;
use crate::stats::{ExecCounts, LatencySummary, SubmitCounts, TimeBucket};
use crate::sweep::Verdict;
use crate::target::{Observes, TargetSample};

/// The schema name.
pub const SCHEMA: &str = "lamina-bench-results";
/// The schema version this crate writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Source revision of the code under test.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitInfo {
    /// Commit id.
    pub revision: String,
    /// True if tracked files had uncommitted changes.
    pub dirty: bool,
}

impl GitInfo {
    /// `git rev-parse HEAD` and `git status --porcelain --untracked-files=no` in the
    /// current directory; `None` outside a repository or without git.
    pub fn detect() -> Option<Self> {
        let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let revision = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dirty = std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false);
        Some(GitInfo { revision, dirty })
    }
}

/// The machine the run was measured on.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineInfo {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Total memory in bytes (`MemTotal`).
    pub memory_bytes: u64,
    /// CPU model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub arch: String,
    /// Microseconds of one core per signature in a batched ZIP-215 verification of
    /// [`SIG_FLOOR_BATCH`] signatures (keys decoded once and cached, as nodes run it; the
    /// best of three), measured at the start of the run on this machine: the physical
    /// floor of what one signed transfer can cost (issue 10). `None` in results written
    /// before it was measured.
    #[serde(default)]
    pub sig_floor_us: Option<f64>,
}

/// Signatures per batch in the [`MachineInfo::sig_floor_us`] measurement.
pub const SIG_FLOOR_BATCH: usize = 1024;

/// Measures [`MachineInfo::sig_floor_us`] on the calling thread.
pub fn measure_sig_floor_us() -> f64 {
    use lamina_primitives::sig::SignedDigest;
    use lamina_primitives::{Digest, Keypair};
    let items: Vec<SignedDigest> = (0..SIG_FLOOR_BATCH as u64)
        .map(|i| {
            let key = Keypair::for_testing(1_000_000 + i);
            let message = Digest([(i % 251) as u8; 32]);
            SignedDigest { public_key: key.public(), message, signature: key.sign(&message) }
        })
        .collect();
    let once = || {
        let start = std::time::Instant::now();
        assert!(lamina_primitives::sig::verify_batch(&items).is_ok(), "the floor's signatures verify");
        start.elapsed().as_secs_f64() * 1e6 / SIG_FLOOR_BATCH as f64
    };
    once(); // decodes and caches the keys: not counted
    (0..3).map(|_| once()).fold(f64::INFINITY, f64::min)
}

impl MachineInfo {
    /// Reads `/proc` (fields stay empty where unavailable).
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        MachineInfo {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_bytes,
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            sig_floor_us: None,
        }
    }
}

/// A fault action as it happened.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaultMarker {
    /// When it was planned (s after t0).
    pub planned_s: f64,
    /// When it was issued (s after t0).
    pub at_s: f64,
    /// The instance.
    pub instance: Instance,
    /// The action.
    pub action: FaultAction,
    /// Whether the cluster carried it out.
    pub ok: bool,
    /// The cluster's error, if not.
    pub error: Option<String>,
}

/// A target counter reading.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleRecord {
    /// Seconds after t0.
    pub t_s: f64,
    /// The reading.
    #[serde(flatten)]
    pub sample: TargetSample,
}

/// Latency CDFs of a point.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cdfs {
    /// Consensus latency: `(ms, fraction)`.
    pub consensus: Vec<(f64, f64)>,
    /// End-to-end latency: `(ms, fraction)`.
    pub e2e: Vec<(f64, f64)>,
}

/// Memory spent on pre-generation.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryInfo {
    /// Estimated bytes of pre-signed transactions and their records.
    pub pregenerated_bytes_estimate: u64,
    /// Seconds spent planning and signing (before the clock).
    pub generate_s: f64,
}

/// One point of a sweep.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointResult {
    /// Offered tx/s.
    pub offered_tps: f64,
    /// Achieved tx/s at the last observed stage (executed if observed, else finalized).
    pub achieved_tps: f64,
    /// Finalized tx/s in the window.
    pub finalized_tps: f64,
    /// Executed tx/s in the window.
    pub executed_tps: f64,
    /// DA bytes/s from the target's counter over the window (null if not reported).
    pub da_bytes_per_s: Option<f64>,
    /// Bytes/s of the transactions finalized in the window.
    pub finalized_bytes_per_s: f64,
    /// Warm-up (s).
    pub warmup_s: f64,
    /// Measurement window (s).
    pub duration_s: f64,
    /// Drain limit (s).
    pub drain_s: f64,
    /// From t0 to the end of the point (s).
    pub elapsed_s: f64,
    /// Every transaction completed or was refused before the drain limit.
    pub drained: bool,
    /// Submit answers.
    pub submit: SubmitCounts,
    /// Receipt statuses.
    pub exec: ExecCounts,
    /// Completions for ids not in this point.
    pub unknown_completions: u64,
    /// Consensus latency (null if the target does not observe finalization).
    pub consensus: Option<LatencySummary>,
    /// End-to-end latency (null if the target does not observe execution).
    pub e2e: Option<LatencySummary>,
    /// Generator lag (sent − intended).
    pub generator_lag: LatencySummary,
    /// CDFs.
    pub cdf: Cdfs,
    /// Time series.
    pub timeseries: Vec<TimeBucket>,
    /// Target counter readings.
    pub samples: Vec<SampleRecord>,
    /// Per-process CPU and RSS summaries.
    pub processes: Vec<ProcessSummary>,
    /// Per-process series.
    pub process_series: Vec<ProcessSeries>,
    /// Fault markers.
    pub faults: Vec<FaultMarker>,
    /// Stop-rule verdict (null without a rule).
    pub verdict: Option<Verdict>,
    /// Pre-generation memory and time.
    pub memory: MemoryInfo,
}

impl PointResult {
    /// CPU time of the network's processes (every sampled process but the load
    /// harness, summed) per executed transaction, in microseconds: mean CPU over the
    /// point divided by the executed rate. `None` without processes or executions.
    pub fn cpu_us_per_executed_tx(&self) -> Option<f64> {
        let cores: f64 =
            self.processes.iter().filter(|p| p.module != "harness").map(|p| p.cpu_percent_mean / 100.0).sum();
        (cores > 0.0 && self.executed_tps > 0.0).then(|| cores / self.executed_tps * 1e6)
    }
}

/// One topology's points.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfigurationResult {
    /// Short label.
    pub label: String,
    /// The topology.
    pub topology: Topology,
    /// What the target observed.
    pub observes: Observes,
    /// Why the load sweep ended.
    pub stop_reason: String,
    /// Set if the configuration could not run to the end (cluster or target failure).
    pub error: Option<String>,
    /// Points, in the order run.
    pub points: Vec<PointResult>,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Results {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    /// Run name.
    pub name: String,
    /// Start (Unix ms).
    pub started_unix_ms: u64,
    /// End (Unix ms).
    pub finished_unix_ms: u64,
    /// Version of the lamina crates.
    pub lamina_version: String,
    /// Source revision.
    pub git: Option<GitInfo>,
    /// Machine.
    pub machine: MachineInfo,
    /// The spec that produced it.
    pub spec: BenchSpec,
    /// One entry per topology.
    pub configurations: Vec<ConfigurationResult>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Results {
    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, BenchError> {
        serde_json::to_string_pretty(self).map_err(|e| BenchError::Results(e.to_string()))
    }

    /// Parses and checks a `results.json`.
    pub fn from_json(text: &str) -> Result<Self, BenchError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| BenchError::Results(e.to_string()))?;
        check_schema(&v)?;
        serde_json::from_value(v).map_err(|e| BenchError::Results(e.to_string()))
    }

    /// Writes `path` atomically (temp file + rename).
    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let mut text = self.to_json()?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// The points table as CSV (one row per point; header first).
    pub fn points_csv(&self) -> String {
        let mut w = csv_writer(POINTS_CSV_HEADER);
        let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
        for c in &self.configurations {
            for p in &c.points {
                let cons = p.consensus.as_ref();
                let e2e = p.e2e.as_ref();
                let row = [
                    c.label.clone(),
                    c.topology.validators.to_string(),
                    c.topology.da_nodes.to_string(),
                    c.topology.chains.to_string(),
                    format!("{:.1}", p.offered_tps),
                    format!("{:.1}", p.achieved_tps),
                    format!("{:.1}", p.finalized_tps),
                    format!("{:.1}", p.executed_tps),
                    f(p.da_bytes_per_s),
                    f(cons.map(|l| l.mean_ms)),
                    f(cons.map(|l| l.p50_ms)),
                    f(cons.map(|l| l.p90_ms)),
                    f(cons.map(|l| l.p99_ms)),
                    f(e2e.map(|l| l.mean_ms)),
                    f(e2e.map(|l| l.p50_ms)),
                    f(e2e.map(|l| l.p90_ms)),
                    f(e2e.map(|l| l.p99_ms)),
                    p.submit.accepted.to_string(),
                    (p.submit.busy + p.submit.rejected).to_string(),
                    cons.map_or(0, |l| l.censored).max(e2e.map_or(0, |l| l.censored)).to_string(),
                    format!("{:.3}", p.generator_lag.p99_ms),
                    p.faults.len().to_string(),
                    match &p.verdict {
                        Some(Verdict::Pass) => "pass".into(),
                        Some(Verdict::Fail(_)) => "fail".into(),
                        None => String::new(),
                    },
                ];
                write_row(&mut w, &row);
            }
        }
        finish_csv(w)
    }

    /// Every point's time series as CSV.
    pub fn timeseries_csv(&self) -> String {
        let mut w = csv_writer(TIMESERIES_CSV_HEADER);
        let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
        for c in &self.configurations {
            for p in &c.points {
                for b in &p.timeseries {
                    let row = [
                        c.label.clone(),
                        format!("{:.1}", p.offered_tps),
                        format!("{:.3}", b.t_s),
                        format!("{:.1}", b.offered_tps),
                        format!("{:.1}", b.sent_tps),
                        format!("{:.1}", b.finalized_tps),
                        format!("{:.1}", b.executed_tps),
                        f(b.consensus_p50_ms),
                        f(b.consensus_p99_ms),
                        f(b.e2e_p50_ms),
                        f(b.e2e_p99_ms),
                    ];
                    write_row(&mut w, &row);
                }
            }
        }
        finish_csv(w)
    }

    /// A markdown summary: run header and one table row per point.
    pub fn summary_markdown(&self) -> String {
        let mut s = format!("## lamina bench: {}\n\n", self.name);
        s += &format!(
            "machine: {} cores, {:.1} GiB, {} (kernel {}); revision {}\n\n",
            self.machine.cores,
            self.machine.memory_bytes as f64 / (1u64 << 30) as f64,
            if self.machine.cpu_model.is_empty() { "unknown CPU" } else { &self.machine.cpu_model },
            self.machine.kernel,
            self.git.as_ref().map_or("unknown".to_string(), |g| format!(
                "{}{}",
                &g.revision[..g.revision.len().min(12)],
                if g.dirty { " (dirty)" } else { "" }
            )),
        );
        if let Some(floor) = self.machine.sig_floor_us {
            s += &format!(
                "signature floor: {floor:.1} µs of one core per batched ZIP-215 check ({SIG_FLOOR_BATCH} signatures); \
                 CPU per executed tx is shown with its multiple of it\n\n"
            );
        }
        s += "| config | offered tx/s | finalized tx/s | executed tx/s | consensus p50 / p99 ms | e2e p50 / p99 ms | DA MB/s | refused | rejected after accept | CPU µs / executed tx | censored | verdict |\n";
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
        let lat = |l: &Option<LatencySummary>| match l {
            Some(l) if l.count > 0 => format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms),
            _ => "–".into(),
        };
        for c in &self.configurations {
            for p in &c.points {
                let censored =
                    p.consensus.as_ref().map_or(0, |l| l.censored).max(p.e2e.as_ref().map_or(0, |l| l.censored));
                s += &format!(
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    c.label,
                    p.offered_tps,
                    p.finalized_tps,
                    if c.observes.executed { format!("{:.0}", p.executed_tps) } else { "–".into() },
                    lat(&p.consensus),
                    lat(&p.e2e),
                    p.da_bytes_per_s.map_or("–".into(), |b| format!("{:.2}", b / 1e6)),
                    p.submit.busy + p.submit.rejected,
                    if c.observes.executed { p.exec.rejected.to_string() } else { "–".into() },
                    p.cpu_us_per_executed_tx().map_or("–".into(), |u| match self.machine.sig_floor_us {
                        Some(floor) if floor > 0.0 => format!("{u:.0} ({:.1}x)", u / floor),
                        _ => format!("{u:.0}"),
                    }),
                    censored,
                    match &p.verdict {
                        Some(Verdict::Pass) => "pass".to_string(),
                        Some(Verdict::Fail(why)) => format!("fail: {why}"),
                        None => String::new(),
                    }
                );
            }
        }
        for c in &self.configurations {
            s += &format!("\n{}: {}", c.label, c.stop_reason);
            if let Some(e) = &c.error {
                s += &format!(" (error: {e})");
            }
            for p in &c.points {
                if !p.exec.rejected_reasons.is_empty() {
                    let reasons: Vec<String> =
                        p.exec.rejected_reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
                    s += &format!("\n  at {:.0} tx/s, rejected after accept: {}", p.offered_tps, reasons.join(", "));
                    for d in &p.exec.rejected_samples {
                        s += &format!("\n    {d}");
                    }
                }
                for f in &p.faults {
                    s += &format!(
                        "\n  at {:.0} tx/s: {:?} {} at {:.2}s{}",
                        p.offered_tps,
                        f.action,
                        f.instance,
                        f.at_s,
                        f.error.as_ref().map(|e| format!(" FAILED: {e}")).unwrap_or_default()
                    );
                }
            }
        }
        s.push('\n');
        s
    }
}

/// Header of `points.csv`.
pub const POINTS_CSV_HEADER: &str = "config,validators,da_nodes,chains,offered_tps,achieved_tps,finalized_tps,executed_tps,da_bytes_per_s,consensus_mean_ms,consensus_p50_ms,consensus_p90_ms,consensus_p99_ms,e2e_mean_ms,e2e_p50_ms,e2e_p90_ms,e2e_p99_ms,accepted,refused,censored,generator_lag_p99_ms,faults,verdict";
/// Header of `timeseries.csv`.
pub const TIMESERIES_CSV_HEADER: &str = "config,point_offered_tps,t_s,offered_tps,sent_tps,finalized_tps,executed_tps,consensus_p50_ms,consensus_p99_ms,e2e_p50_ms,e2e_p99_ms";

/// A CSV writer (the `csv` crate: RFC 4180 quoting, `\n` line ends) into memory, with
/// `header` (comma-separated names) written.
fn csv_writer(header: &str) -> csv::Writer<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    write_row(&mut w, &header.split(',').collect::<Vec<_>>());
    w
}

fn write_row<T: AsRef<[u8]>>(w: &mut csv::Writer<Vec<u8>>, row: &[T]) {
    // Writing to memory cannot fail (no I/O); a failure would be a bug in csv.
    w.write_record(row).expect("CSV into memory");
}

fn finish_csv(w: csv::Writer<Vec<u8>>) -> String {
    let bytes = w.into_inner().expect("CSV into memory");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

/// Writes `path` via a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| BenchError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| BenchError::io(&tmp, e))?;
    f.sync_all().map_err(|e| BenchError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BenchError::io(path, e))
}

/// Checks that `v` is a version-1 results document: the schema name and version, and
/// the presence and JSON type of every required field (recursively for
/// configurations and points). Unknown extra fields are allowed.
pub fn check_schema(v: &serde_json::Value) -> Result<(), BenchError> {
    use serde_json::Value;
    let fail = |path: &str, what: &str| Err(BenchError::Results(format!("schema: {path}: {what}")));
    if v.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
        return fail("schema", &format!("expected {SCHEMA:?}"));
    }
    match v.get("schema_version").and_then(Value::as_u64) {
        Some(1) => {}
        Some(n) => return fail("schema_version", &format!("version {n} is not supported (this reader knows 1)")),
        None => return fail("schema_version", "missing"),
    }
    #[derive(Clone, Copy)]
    enum T {
        Str,
        Num,
        Bool,
        Arr,
        Obj,
        OptNum,
        OptObj,
        OptStr,
    }
    fn check(v: &Value, path: &str, fields: &[(&str, T)]) -> Result<(), BenchError> {
        for (name, t) in fields {
            let f = v.get(*name);
            let ok = match (t, f) {
                (_, None) => false,
                (T::Str, Some(x)) => x.is_string(),
                (T::Num, Some(x)) => x.is_number(),
                (T::Bool, Some(x)) => x.is_boolean(),
                (T::Arr, Some(x)) => x.is_array(),
                (T::Obj, Some(x)) => x.is_object(),
                (T::OptNum, Some(x)) => x.is_number() || x.is_null(),
                (T::OptObj, Some(x)) => x.is_object() || x.is_null(),
                (T::OptStr, Some(x)) => x.is_string() || x.is_null(),
            };
            if !ok {
                return Err(BenchError::Results(format!("schema: {path}.{name}: missing or wrong type")));
            }
        }
        Ok(())
    }
    check(
        v,
        "$",
        &[
            ("name", T::Str),
            ("started_unix_ms", T::Num),
            ("finished_unix_ms", T::Num),
            ("lamina_version", T::Str),
            ("git", T::OptObj),
            ("machine", T::Obj),
            ("spec", T::Obj),
            ("configurations", T::Arr),
        ],
    )?;
    check(
        &v["machine"],
        "$.machine",
        &[("cores", T::Num), ("memory_bytes", T::Num), ("cpu_model", T::Str), ("kernel", T::Str)],
    )?;
    let latency = [
        ("count", T::Num),
        ("censored", T::Num),
        ("mean_ms", T::Num),
        ("p50_ms", T::Num),
        ("p90_ms", T::Num),
        ("p99_ms", T::Num),
        ("max_ms", T::Num),
    ];
    for (ci, c) in v["configurations"].as_array().into_iter().flatten().enumerate() {
        let cp = format!("$.configurations[{ci}]");
        check(
            c,
            &cp,
            &[
                ("label", T::Str),
                ("topology", T::Obj),
                ("observes", T::Obj),
                ("stop_reason", T::Str),
                ("error", T::OptStr),
                ("points", T::Arr),
            ],
        )?;
        for (pi, p) in c["points"].as_array().into_iter().flatten().enumerate() {
            let pp = format!("{cp}.points[{pi}]");
            check(
                p,
                &pp,
                &[
                    ("offered_tps", T::Num),
                    ("achieved_tps", T::Num),
                    ("finalized_tps", T::Num),
                    ("executed_tps", T::Num),
                    ("da_bytes_per_s", T::OptNum),
                    ("duration_s", T::Num),
                    ("submit", T::Obj),
                    ("exec", T::Obj),
                    ("consensus", T::OptObj),
                    ("e2e", T::OptObj),
                    ("generator_lag", T::Obj),
                    ("cdf", T::Obj),
                    ("timeseries", T::Arr),
                    ("processes", T::Arr),
                    ("faults", T::Arr),
                ],
            )?;
            for key in ["consensus", "e2e"] {
                if p[key].is_object() {
                    check(&p[key], &format!("{pp}.{key}"), &latency)?;
                }
            }
            for (k, pr) in p["processes"].as_array().into_iter().flatten().enumerate() {
                check(
                    pr,
                    &format!("{pp}.processes[{k}]"),
                    &[("name", T::Str), ("module", T::Str), ("cpu_percent_mean", T::Num), ("rss_bytes_max", T::Num)],
                )?;
            }
            for (k, f) in p["faults"].as_array().into_iter().flatten().enumerate() {
                check(
                    f,
                    &format!("{pp}.faults[{k}]"),
                    &[("at_s", T::Num), ("instance", T::Obj), ("action", T::Str), ("ok", T::Bool)],
                )?;
            }
        }
    }
    Ok(())
}
