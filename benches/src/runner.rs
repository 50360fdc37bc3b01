//! `run_bench`: sweeps topologies and offered loads, runs each point open-loop, samples
//! processes, injects faults, and writes the results directory.
//!
//! For each topology of the spec: [`Cluster::start`] → [`TargetFactory::connect`] →
//! a fresh [`Workload`] (nonces start at 0 on a fresh genesis) → points at the rates
//! the [`crate::sweep::SweepDriver`] yields → [`Cluster::stop`]. For each point:
//!
//! 1. plan and sign every transaction of the point (rayon, before the clock; refused if
//!    the estimate exceeds `memory_limit_bytes`), index them in a [`Tracker`];
//! 2. spawn [`run_open_loop`] on the load runtime, with `t0` a few ms ahead;
//! 3. on the calling thread, until the load ends: issue fault actions at their times,
//!    sample every process's CPU/RSS and the target's counters, report live status;
//! 4. issue pending recoveries (restart/resume) so the next point starts healthy;
//! 5. compute statistics, judge the point against the stop rule.
//!
//! Results are rewritten after every point (a crash leaves the points so far), and at
//! the end: `results.json`, `points.csv`, `timeseries.csv`, `summary.md` and the SVG
//! plots; the markdown summary is printed to standard output if asked.
//!
//! Call `run_bench` from a plain thread, not from inside a tokio runtime: it owns its
//! load runtime and blocks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::BenchError;
use crate::cluster::{Cluster, Fault, FaultAction, ProcessRef, Topology};
use crate::generator::{BusyPolicy, LoadPlan, run_open_loop};
use crate::procstat::Sampler;
use crate::results::{
    Cdfs, ConfigurationResult, FaultMarker, GitInfo, MachineInfo, MemoryInfo, PointResult, Results, SCHEMA,
    SCHEMA_VERSION, SampleRecord, unix_ms, write_atomic,
};
use crate::schedule::Schedule;
use crate::stats::{self, ExecCounts, Window};
use crate::sweep::{Judged, LoadSweep, StopRule, TopologySweep, Verdict};
use crate::target::{LoadTarget, TargetFactory};
use crate::tracker::{CompletionSink, Records, Tracker};
use crate::workload::{Workload, WorkloadSpec, tx_memory_bytes};

/// Timing of every point.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointSpec {
    /// Load before the measurement window (excluded from statistics).
    #[serde(rename = "warmup_s", with = "crate::serde_secs")]
    pub warmup: Duration,
    /// Measurement window.
    #[serde(rename = "duration_s", with = "crate::serde_secs")]
    pub duration: Duration,
    /// Longest wait for completions after the last send.
    #[serde(rename = "drain_s", with = "crate::serde_secs")]
    pub drain: Duration,
    /// Burst interval of the generator (1–5 ms for high rates).
    #[serde(rename = "burst_s", with = "crate::serde_secs")]
    pub burst: Duration,
    /// Busy handling.
    pub busy: BusyPolicy,
    /// Pause between points (lets the system drain).
    #[serde(rename = "pause_between_s", with = "crate::serde_secs")]
    pub pause_between: Duration,
}

impl Default for PointSpec {
    fn default() -> Self {
        PointSpec {
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            burst: Duration::from_millis(1),
            busy: BusyPolicy::default(),
            pause_between: Duration::from_secs(1),
        }
    }
}

/// Where and what to write.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutputSpec {
    /// The results directory (created if missing).
    pub dir: PathBuf,
    /// Draw SVG plots.
    pub plots: bool,
    /// Print the markdown summary to standard output at the end.
    pub print_summary: bool,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec { dir: PathBuf::from("bench-results"), plots: true, print_summary: true }
    }
}

/// Everything a run needs besides the cluster and the target.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchSpec {
    /// Run name (plot titles, summary).
    pub name: String,
    /// Topologies to run.
    pub topologies: TopologySweep,
    /// Offered loads.
    pub load: LoadSweep,
    /// When a point fails (and the sweep stops); `None`: run every rate.
    pub stop: Option<StopRule>,
    /// Point timing.
    pub point: PointSpec,
    /// What to send.
    pub workload: WorkloadSpec,
    /// Fault schedule, applied in every point (times after the point's t0).
    pub faults: Vec<Fault>,
    /// Process and counter sampling interval.
    #[serde(rename = "sample_interval_s", with = "crate::serde_secs")]
    pub sample_interval: Duration,
    /// Time-series bucket.
    #[serde(rename = "timeseries_bucket_s", with = "crate::serde_secs")]
    pub timeseries_bucket: Duration,
    /// Refuse points whose pre-signed transactions would exceed this many bytes.
    pub memory_limit_bytes: u64,
    /// Worker threads of the load runtime.
    pub load_threads: usize,
    /// Output.
    pub output: OutputSpec,
    /// Source revision to record (`None`: detect with git).
    pub git: Option<GitInfo>,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            name: "bench".into(),
            topologies: TopologySweep::default(),
            load: LoadSweep::Fixed { rates: vec![1000.0] },
            stop: None,
            point: PointSpec::default(),
            workload: WorkloadSpec::default(),
            faults: Vec::new(),
            sample_interval: Duration::from_millis(500),
            timeseries_bucket: Duration::from_secs(1),
            memory_limit_bytes: 8 << 30,
            load_threads: 2,
            output: OutputSpec::default(),
            git: None,
        }
    }
}

impl BenchSpec {
    /// Checks the spec (before anything starts).
    pub fn validate(&self) -> Result<(), BenchError> {
        self.topologies.validate()?;
        self.load.validate()?;
        if let Some(s) = &self.stop {
            s.validate()?;
        }
        self.workload.validate()?;
        for f in &self.faults {
            f.validate()?;
        }
        if self.point.duration.is_zero() {
            return Err(BenchError::Spec("point duration must be > 0".into()));
        }
        if self.point.burst.is_zero() || self.point.burst > Duration::from_secs(1) {
            return Err(BenchError::Spec("burst interval must be in (0, 1 s]".into()));
        }
        if self.sample_interval.is_zero() || self.timeseries_bucket.is_zero() {
            return Err(BenchError::Spec("sample interval and time-series bucket must be > 0".into()));
        }
        if self.load_threads == 0 {
            return Err(BenchError::Spec("load_threads must be >= 1".into()));
        }
        for t in self.topologies.topologies() {
            if t.funded_accounts < self.workload.accounts {
                return Err(BenchError::Spec(format!(
                    "{}: funded_accounts {} < workload accounts {}",
                    t.label(),
                    t.funded_accounts,
                    self.workload.accounts
                )));
            }
        }
        Ok(())
    }
}

/// What is known while a point runs (for a live status line).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveStatus {
    /// Configuration label.
    pub config: String,
    /// Offered tx/s.
    pub offered_tps: f64,
    /// Seconds since t0.
    pub elapsed_s: f64,
    /// Transactions scheduled for the point.
    pub scheduled: u64,
    /// Finalized so far.
    pub finalized: u64,
    /// Executed so far.
    pub executed: u64,
    /// Finalized per second since the previous status.
    pub finalized_tps: f64,
    /// Executed per second since the previous status.
    pub executed_tps: f64,
    /// p50 latency (ms, end to end if observed) of the transactions intended 1–2 s ago.
    pub recent_p50_ms: Option<f64>,
    /// p99 of the same.
    pub recent_p99_ms: Option<f64>,
    /// DA bytes counter, if the target reports it.
    pub da_bytes: Option<u64>,
    /// Height, if the target reports it.
    pub height: Option<u64>,
}

/// Progress callbacks (all optional).
pub trait Observer {
    /// A configuration's cluster is being started.
    fn configuration_started(&mut self, _topology: &Topology) {}
    /// A point starts (after pre-generation).
    fn point_started(&mut self, _config: &str, _offered_tps: f64) {}
    /// About once per sample interval during a point.
    fn tick(&mut self, _live: &LiveStatus) {}
    /// A point ended.
    fn point_finished(&mut self, _config: &str, _point: &PointResult) {}
}

/// Observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// Observer that prints one line per point (and per configuration) to standard error.
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrProgress;

impl Observer for StderrProgress {
    fn configuration_started(&mut self, topology: &Topology) {
        eprintln!("bench: starting {}", topology.label());
    }

    fn point_finished(&mut self, config: &str, p: &PointResult) {
        let lat = p.e2e.as_ref().or(p.consensus.as_ref());
        eprintln!(
            "bench: {config} offered {:.0} tx/s → finalized {:.0} tx/s, executed {:.0} tx/s, p50 {} ms, p99 {} ms{}",
            p.offered_tps,
            p.finalized_tps,
            p.executed_tps,
            lat.map_or("–".into(), |l| format!("{:.1}", l.p50_ms)),
            lat.map_or("–".into(), |l| format!("{:.1}", l.p99_ms)),
            match &p.verdict {
                Some(Verdict::Fail(w)) => format!(" [fail: {w}]"),
                _ => String::new(),
            }
        );
    }
}

/// Runs the benchmark `spec` against targets from `factory` on networks from
/// `cluster`, writes the results directory, and returns the results. Progress goes to
/// standard error.
pub fn run_bench<C, F>(spec: &BenchSpec, factory: &F, cluster: &mut C) -> Result<Results, BenchError>
where
    C: Cluster,
    F: TargetFactory<C::Handle>,
{
    run_bench_with(spec, factory, cluster, &mut StderrProgress)
}

/// [`run_bench`] with a progress observer.
pub fn run_bench_with<C, F>(
    spec: &BenchSpec,
    factory: &F,
    cluster: &mut C,
    observer: &mut dyn Observer,
) -> Result<Results, BenchError>
where
    C: Cluster,
    F: TargetFactory<C::Handle>,
{
    spec.validate()?;
    let dir = &spec.output.dir;
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.load_threads)
        .thread_name("lamina-bench-load")
        .enable_all()
        .build()
        .map_err(|e| BenchError::Runtime(e.to_string()))?;

    let mut results = Results {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        name: spec.name.clone(),
        started_unix_ms: unix_ms(),
        finished_unix_ms: 0,
        lamina_version: env!("CARGO_PKG_VERSION").into(),
        git: spec.git.clone().or_else(GitInfo::detect),
        // Measured first, before any network of the run loads the machine.
        machine: MachineInfo { sig_floor_us: Some(crate::results::measure_sig_floor_us()), ..MachineInfo::detect() },
        spec: spec.clone(),
        configurations: Vec::new(),
    };

    for topology in spec.topologies.topologies() {
        observer.configuration_started(&topology);
        let mut conf = ConfigurationResult {
            label: topology.label(),
            topology: topology.clone(),
            observes: crate::target::Observes { finalized: false, executed: false },
            stop_reason: String::new(),
            error: None,
            points: Vec::new(),
        };
        let outcome = run_configuration(spec, factory, cluster, &rt, &topology, &mut conf, observer, &mut results);
        if let Err(e) = outcome {
            conf.error = Some(e.to_string());
            if conf.stop_reason.is_empty() {
                conf.stop_reason = format!("error: {e}");
            }
        }
        if let Err(e) = cluster.stop() {
            conf.error.get_or_insert(format!("stopping the cluster: {e}"));
        }
        results.configurations.push(conf);
        results.finished_unix_ms = unix_ms();
        results.write_json(&dir.join("results.json"))?;
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    results.finished_unix_ms = unix_ms();
    write_outputs(&results, dir, spec.output.plots)?;
    if spec.output.print_summary {
        print!("{}", results.summary_markdown());
    }
    Ok(results)
}

/// Writes `results.json`, `points.csv`, `timeseries.csv`, `summary.md` and (with
/// `plots`) the SVG plots into `dir`; returns the files written.
pub fn write_outputs(results: &Results, dir: &std::path::Path, plots: bool) -> Result<Vec<PathBuf>, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let mut files = Vec::new();
    let path = dir.join("results.json");
    results.write_json(&path)?;
    files.push(path);
    for (name, text) in [
        ("points.csv", results.points_csv()),
        ("timeseries.csv", results.timeseries_csv()),
        ("summary.md", results.summary_markdown()),
    ] {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        files.push(path);
    }
    if plots {
        files.extend(crate::plots::write_all(results, dir)?);
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn run_configuration<C, F>(
    spec: &BenchSpec,
    factory: &F,
    cluster: &mut C,
    rt: &Runtime,
    topology: &Topology,
    conf: &mut ConfigurationResult,
    observer: &mut dyn Observer,
    results: &mut Results,
) -> Result<(), BenchError>
where
    C: Cluster,
    F: TargetFactory<C::Handle>,
{
    let deployment = cluster.start(topology)?;
    let sink = CompletionSink::new();
    let target = Arc::new(rt.block_on(factory.connect(&deployment, sink.clone()))?);
    conf.observes = target.observes();
    if !conf.observes.finalized && !conf.observes.executed {
        return Err(BenchError::Target("the target observes neither finalization nor execution".into()));
    }
    let mut workload = Workload::new(&spec.workload, &deployment.chains, deployment.scope)?;
    let mut driver = spec.load.driver(spec.stop.clone());
    let mut rate = driver.first();
    while let Some(r) = rate {
        let point = match run_point(spec, rt, &target, &sink, &mut workload, r, cluster, &conf.label, observer) {
            Ok(p) => p,
            Err(e @ BenchError::Memory { .. }) => {
                conf.stop_reason = format!("stopped before {r:.0} tx/s: {e}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        observer.point_finished(&conf.label, &point);
        let verdict = point.verdict.clone().unwrap_or(Verdict::Pass);
        conf.points.push(point);
        // Partial results after every point.
        let mut partial = results.clone();
        partial.configurations.push(conf.clone());
        partial.finished_unix_ms = unix_ms();
        partial.write_json(&spec.output.dir.join("results.json"))?;
        rate = driver.next(r, &verdict);
        if rate.is_some() {
            std::thread::sleep(spec.point.pause_between);
        }
    }
    conf.stop_reason = driver.finish_reason().unwrap_or("sweep complete").to_string();
    Ok(())
}

/// Lead time between pre-generation and t0, so the first burst is not late.
const LEAD: Duration = Duration::from_millis(50);

#[allow(clippy::too_many_arguments)]
fn run_point<C: Cluster, T: LoadTarget>(
    spec: &BenchSpec,
    rt: &Runtime,
    target: &Arc<T>,
    sink: &CompletionSink,
    workload: &mut Workload,
    rate: f64,
    cluster: &mut C,
    label: &str,
    observer: &mut dyn Observer,
) -> Result<PointResult, BenchError> {
    let ps = &spec.point;
    let n = Schedule::count_for(rate, (ps.warmup + ps.duration).as_secs_f64()).max(1);
    let need = n.saturating_mul(tx_memory_bytes(workload.payload_len()));
    if need > spec.memory_limit_bytes {
        return Err(BenchError::Memory { rate, need, limit: spec.memory_limit_bytes });
    }
    let gen_start = std::time::Instant::now();
    let txs = workload.generate(n as usize);
    let tracker = Arc::new(Tracker::new(&txs));
    let generate_s = gen_start.elapsed().as_secs_f64();
    sink.install(tracker.clone());
    observer.point_started(label, rate);

    let _guard = rt.enter();
    let t0 = tokio::time::Instant::now() + LEAD;
    let t0_std = t0.into_std();
    let plan = LoadPlan { rate, t0, burst: ps.burst, drain: ps.drain, busy: ps.busy };
    let handle = rt.spawn(run_open_loop(target.clone(), txs, plan, tracker.clone()));

    let observes = target.observes();
    let schedule = Schedule::new(rate, n);
    let events = crate::cluster::schedule(&spec.faults);
    let mut next_event = 0usize;
    let mut markers: Vec<FaultMarker> = Vec::new();
    let mut sampler = Sampler::new(t0_std);
    let mut samples: Vec<SampleRecord> = Vec::new();
    let mut next_sample = std::time::Instant::now();
    let mut last_counts = (0u64, 0u64, t0_std);
    let harness = ProcessRef { name: "harness".into(), module: "harness".into(), pid: std::process::id() };
    let since_t0 = |at: std::time::Instant| at.saturating_duration_since(t0_std).as_secs_f64();
    let issue = |cluster: &mut C, ev: &crate::cluster::FaultEvent, markers: &mut Vec<FaultMarker>| {
        let r = cluster.apply(&ev.instance, ev.action);
        markers.push(FaultMarker {
            planned_s: ev.at_s,
            at_s: since_t0(std::time::Instant::now()),
            instance: ev.instance.clone(),
            action: ev.action,
            ok: r.is_ok(),
            error: r.err().map(|e| e.to_string()),
        });
    };

    while !handle.is_finished() {
        let now = std::time::Instant::now();
        while next_event < events.len() && now >= t0_std + Duration::from_secs_f64(events[next_event].at_s) {
            issue(cluster, &events[next_event], &mut markers);
            next_event += 1;
        }
        if now >= next_sample {
            let mut procs = cluster.processes();
            procs.push(harness.clone());
            sampler.sample(&procs, now);
            let s = rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(500), target.sample()).await.unwrap_or_default()
            });
            let t_s = since_t0(now);
            samples.push(SampleRecord { t_s, sample: s.clone() });
            let live =
                live_status(label, rate, &schedule, &tracker, observes.executed, &mut last_counts, now, t0_std, &s);
            observer.tick(&live);
            next_sample = now + spec.sample_interval;
        }
        let mut wake = next_sample;
        if let Some(ev) = events.get(next_event) {
            wake = wake.min(t0_std + Duration::from_secs_f64(ev.at_s));
        }
        let wait = wake.saturating_duration_since(std::time::Instant::now()).min(Duration::from_millis(10));
        std::thread::sleep(wait);
    }
    let run = rt.block_on(handle).map_err(|e| BenchError::Runtime(format!("load task: {e}")))?;
    // Recover what is still faulty, so the next point starts healthy.
    for ev in &events[next_event..] {
        if matches!(ev.action, FaultAction::Restart | FaultAction::Resume)
            && markers.iter().any(|m| m.instance == ev.instance && m.ok)
        {
            issue(cluster, ev, &mut markers);
        }
    }
    let final_sample = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(500), target.sample()).await.unwrap_or_default()
    });
    samples.push(SampleRecord { t_s: since_t0(std::time::Instant::now()), sample: final_sample });
    sink.uninstall();

    let records = tracker.snapshot();
    let end = run.end.saturating_duration_since(run.t0);
    let window = Window { schedule, warmup: ps.warmup, duration: ps.duration, end, bucket: spec.timeseries_bucket };
    let st = stats::compute(&records, &window, observes.finalized, observes.executed);
    let da_bytes_per_s = da_rate(&samples, ps.warmup.as_secs_f64(), (ps.warmup + ps.duration).as_secs_f64());
    let consensus = observes.finalized.then(|| st.consensus.summary());
    let e2e = observes.executed.then(|| st.e2e.summary());
    let achieved = if observes.executed { st.executed_tps } else { st.finalized_tps };
    let verdict = spec.stop.as_ref().map(|rule| {
        rule.judge(&Judged {
            offered: rate,
            achieved,
            e2e: e2e.as_ref().map(|l| (l.p50_ms, l.p99_ms)),
            consensus: consensus.as_ref().map(|l| (l.p50_ms, l.p99_ms)),
        })
    });
    let process_series = sampler.into_series();
    Ok(PointResult {
        offered_tps: rate,
        achieved_tps: achieved,
        finalized_tps: st.finalized_tps,
        executed_tps: st.executed_tps,
        da_bytes_per_s,
        finalized_bytes_per_s: st.finalized_bytes_per_s,
        warmup_s: ps.warmup.as_secs_f64(),
        duration_s: ps.duration.as_secs_f64(),
        drain_s: ps.drain.as_secs_f64(),
        elapsed_s: end.as_secs_f64(),
        drained: run.drained,
        submit: st.submit.clone(),
        exec: {
            let (rejected_reasons, rejected_samples) = tracker.rejections();
            ExecCounts { rejected_reasons, rejected_samples, ..st.exec.clone() }
        },
        unknown_completions: records.unknown,
        consensus,
        e2e,
        generator_lag: st.lag.summary(),
        cdf: Cdfs {
            consensus: if observes.finalized { st.consensus.cdf() } else { Vec::new() },
            e2e: if observes.executed { st.e2e.cdf() } else { Vec::new() },
        },
        timeseries: st.series.clone(),
        samples,
        processes: process_series.iter().map(|s| s.summary()).collect(),
        process_series,
        faults: markers,
        verdict,
        memory: MemoryInfo { pregenerated_bytes_estimate: need, generate_s },
    })
}

/// DA bytes/s over `[w0, w1]` seconds from cumulative counter samples: the slope
/// between the first and last samples inside the window (or, with fewer than two
/// there, over all samples).
pub fn da_rate(samples: &[SampleRecord], w0: f64, w1: f64) -> Option<f64> {
    let with: Vec<(f64, u64)> = samples.iter().filter_map(|s| s.sample.da_bytes.map(|b| (s.t_s, b))).collect();
    let inside: Vec<(f64, u64)> = with.iter().copied().filter(|s| s.0 >= w0 && s.0 <= w1).collect();
    let use_ = if inside.len() >= 2 { inside } else { with };
    let (first, last) = (use_.first()?, use_.last()?);
    let dt = last.0 - first.0;
    (dt > 0.0).then(|| last.1.saturating_sub(first.1) as f64 / dt)
}

#[allow(clippy::too_many_arguments)]
fn live_status(
    label: &str,
    rate: f64,
    schedule: &Schedule,
    tracker: &Tracker,
    e2e: bool,
    last: &mut (u64, u64, std::time::Instant),
    now: std::time::Instant,
    t0: std::time::Instant,
    sample: &crate::target::TargetSample,
) -> LiveStatus {
    let fin = tracker.finalized_count();
    let exe = tracker.executed_count();
    let dt = now.saturating_duration_since(last.2).as_secs_f64();
    let (ftps, etps) = if dt > 0.0 {
        (fin.saturating_sub(last.0) as f64 / dt, exe.saturating_sub(last.1) as f64 / dt)
    } else {
        (0.0, 0.0)
    };
    *last = (fin, exe, now);
    // Latency of the transactions intended 1–2 s ago (censored at now).
    let el = now.saturating_duration_since(t0).as_nanos() as u64;
    let (lo, hi) = schedule.range_intended(el.saturating_sub(2_000_000_000), el.saturating_sub(1_000_000_000));
    let mut h = stats::LatencyHistogram::new();
    for i in lo..hi {
        let (f, x) = tracker.completion_slots(i as usize);
        let slot = if e2e { x } else { f };
        let intended = schedule.intended_ns(i);
        let t = Records::ns(slot).unwrap_or(el);
        h.record_ns(t.saturating_sub(intended), slot == 0);
    }
    LiveStatus {
        config: label.to_string(),
        offered_tps: rate,
        elapsed_s: now.saturating_duration_since(t0).as_secs_f64(),
        scheduled: tracker.len() as u64,
        finalized: fin,
        executed: exe,
        finalized_tps: ftps,
        executed_tps: etps,
        recent_p50_ms: (!h.is_empty()).then(|| h.quantile_ms(0.5)),
        recent_p99_ms: (!h.is_empty()).then(|| h.quantile_ms(0.99)),
        da_bytes: sample.da_bytes,
        height: sample.height,
    }
}
