#![allow(clippy::unwrap_used)]
//! Behaviour of the macro harness: open-loop generation (on tokio's paused clock, so
//! every latency is exact), statistics on a target with a known service time, sweeps,
//! results files, plots, process sampling and faults on real child processes, and the
//! ordered-log follower.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lamina_benches::cluster::{FaultAction, Instance, devnet_chains};
use lamina_benches::follow::{FollowConfig, FollowStats, follow_finalized};
use lamina_benches::procstat;
use lamina_benches::results::{POINTS_CSV_HEADER, TIMESERIES_CSV_HEADER};
use lamina_benches::stats::{self, Window};
use lamina_benches::tracker::{Records, SubmitState};
use lamina_benches::*;
use lamina_interfaces::{Blob, InMemoryLog, OrderedLog};
use lamina_primitives::{
    AvailabilityCertificate, Block, BlockHeader, ChainId, DataCommitment, Digest, FinalizedBlock, Height, Namespace,
    Transaction, TxScope,
};
use proptest::prelude::*;

fn txs(n: usize, accounts: u64) -> Vec<Transaction> {
    let topo = Topology { chains: 1, funded_accounts: accounts, ..Default::default() };
    let spec = WorkloadSpec { accounts, ..Default::default() };
    Workload::new(&spec, &devnet_chains(&topo, 1_000_000), TxScope::ChainOnly).unwrap().generate(n)
}

/// Runs one point against a synthetic target on the current (paused) runtime.
async fn run_point(cfg: SyntheticConfig, rate: f64, n: usize, busy: BusyPolicy) -> (Arc<Tracker>, LoadRun, Schedule) {
    let sink = CompletionSink::new();
    let target = Arc::new(SyntheticTarget::start(cfg, sink.clone()));
    let txs = txs(n, 50);
    let tracker = Arc::new(Tracker::new(&txs));
    sink.install(tracker.clone());
    let t0 = tokio::time::Instant::now() + Duration::from_millis(10);
    let plan = LoadPlan { rate, t0, burst: Duration::from_millis(1), drain: Duration::from_secs(30), busy };
    let run = run_open_loop(target, txs, plan, tracker.clone()).await;
    (tracker, run, Schedule::new(rate, n as u64))
}

#[tokio::test(start_paused = true)]
async fn known_service_time_gives_exact_percentiles_and_throughput() {
    // Ample capacity (64 servers of 1 ms); 20 ms to finalize, 30 more to execute.
    let cfg = SyntheticConfig {
        service_time: Duration::from_millis(1),
        servers: 64,
        finalize_delay: Duration::from_millis(20),
        execute_delay: Some(Duration::from_millis(30)),
        ..Default::default()
    };
    let (tracker, run, schedule) = run_point(cfg, 1000.0, 2000, BusyPolicy::Drop).await;
    assert!(run.drained);
    let r = tracker.snapshot();
    let w = Window {
        schedule,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(1),
        end: run.end - run.t0,
        bucket: Duration::from_millis(250),
    };
    let st = stats::compute(&r, &w, true, true);
    let c = st.consensus.summary();
    let e = st.e2e.summary();
    // Intended times fall on burst boundaries, so every latency is exactly
    // service + delays: 21 ms to finalize, 51 ms end to end.
    assert_eq!(c.count, 1000);
    for (got, want) in
        [(c.p50_ms, 21.0), (c.p99_ms, 21.0), (c.min_ms, 21.0), (c.max_ms, 21.0), (e.p50_ms, 51.0), (e.p99_ms, 51.0)]
    {
        assert!((got - want).abs() < 0.05, "{got} != {want}: {c:?} {e:?}");
    }
    assert!((st.finalized_tps - 1000.0).abs() <= 1.0, "{}", st.finalized_tps);
    assert!((st.executed_tps - 1000.0).abs() <= 1.0, "{}", st.executed_tps);
    assert_eq!(st.lag.summary().max_ms, 0.001, "sent exactly on time (1 µs floor of the histogram)");
    assert_eq!(st.submit.accepted, 2000);
}

#[tokio::test(start_paused = true)]
async fn open_loop_keeps_the_offered_rate_against_a_slow_target() {
    // One server of 2 ms: capacity 500 tx/s, offered 1000 tx/s. A closed-loop client
    // would slow to 500 tx/s; the open loop keeps sending on schedule and the queue
    // (and the latency) grows.
    let cfg = SyntheticConfig {
        service_time: Duration::from_millis(2),
        servers: 1,
        finalize_delay: Duration::ZERO,
        execute_delay: None,
        ..Default::default()
    };
    let n = 1000;
    let (tracker, run, schedule) = run_point(cfg, 1000.0, n, BusyPolicy::Drop).await;
    assert!(run.drained);
    let r = tracker.snapshot();
    for i in 0..n {
        let intended = schedule.intended_ns(i as u64);
        let sent = Records::ns(r.sent[i]).unwrap();
        assert!(sent >= intended && sent - intended <= 1_000_000, "tx {i} sent {sent} for {intended}");
        // FIFO with one server: tx i cannot finish before (i + 1) service times.
        let fin = Records::ns(r.finalized[i]).unwrap();
        assert!(fin >= (i as u64 + 1) * 2_000_000, "tx {i} finalized at {fin}");
        assert!(fin - intended >= (i as u64 + 1) * 2_000_000 - intended);
    }
    // Every transaction was handed over within the send span (1 s), none waited for the
    // slow target, and the last one's latency shows the whole queue (~1 s).
    assert!(run.send_end - run.t0 <= Duration::from_millis(1000));
    let last = Records::ns(r.finalized[n - 1]).unwrap() - schedule.intended_ns(n as u64 - 1);
    assert!(last >= 999_000_000, "last latency {last} ns");
}

#[tokio::test(start_paused = true)]
async fn a_stall_shows_up_in_the_latencies_of_transactions_scheduled_during_it() {
    // Fast target that stalls from 200 ms to 500 ms after its first submit (which is at
    // t0: transaction 0 is due immediately).
    let cfg = SyntheticConfig {
        service_time: Duration::from_micros(10),
        servers: 1,
        finalize_delay: Duration::ZERO,
        execute_delay: None,
        stall: Some(Stall { after: Duration::from_millis(200), length: Duration::from_millis(300) }),
        ..Default::default()
    };
    let n = 1000;
    let (tracker, run, schedule) = run_point(cfg, 1000.0, n, BusyPolicy::Drop).await;
    assert!(run.drained);
    let r = tracker.snapshot();
    let (s0, s1) = (200_000_000u64, 500_000_000u64);
    let mut in_stall = 0;
    for i in 0..n {
        let intended = schedule.intended_ns(i as u64);
        let sent = Records::ns(r.sent[i]).unwrap();
        let fin = Records::ns(r.finalized[i]).unwrap();
        // The generator kept sending during the stall (submit calls were hanging).
        assert!(sent - intended <= 1_000_000, "tx {i} held back by the stall");
        if (s0..s1).contains(&intended) {
            in_stall += 1;
            assert!(
                fin - intended >= s1 - intended,
                "tx {i}: latency {} < stall remaining {}",
                fin - intended,
                s1 - intended
            );
        } else if intended >= s1 + 10_000_000 {
            // The 300-transaction backlog clears in 3 ms; then latency is the service time.
            assert!(fin - intended < 1_000_000, "tx {i}: after the stall, latency returns to the service time");
        }
    }
    assert_eq!(in_stall, 300);
    // The percentiles see it: 30% of the transactions waited, the worst ~300 ms.
    let w = Window {
        schedule,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(1),
        end: run.end - run.t0,
        bucket: Duration::from_millis(100),
    };
    let st = stats::compute(&r, &w, true, false);
    let c = st.consensus.summary();
    assert!(c.max_ms >= 299.0, "{c:?}");
    assert!(c.p90_ms >= 100.0, "{c:?}");
    // In the time series, the buckets intended during the stall carry the latency.
    let b = &st.series[3]; // 300–400 ms
    assert!(b.consensus_p50_ms.unwrap() >= 100.0, "{b:?}");
    assert!(st.series[7].consensus_p99_ms.unwrap() < 1.0);
}

#[tokio::test(start_paused = true)]
async fn busy_is_retried_until_taken_or_counted_as_refused() {
    // Queue of at most 5 on a 500 tx/s server, offered 1000 tx/s: many busy answers.
    let cfg = SyntheticConfig {
        service_time: Duration::from_millis(2),
        servers: 1,
        queue_limit: Some(5),
        finalize_delay: Duration::ZERO,
        execute_delay: None,
        ..Default::default()
    };
    let (tracker, run, _) = run_point(cfg.clone(), 1000.0, 400, BusyPolicy::Drop).await;
    let r = tracker.snapshot();
    let busy = r.submit.iter().filter(|s| **s == SubmitState::Busy).count();
    let fin = r.finalized.iter().filter(|f| **f != 0).count();
    assert!(busy > 0 && run.drained);
    assert_eq!(busy + fin, 400, "every transaction is either refused or finalized");

    let (tracker, run, _) = run_point(cfg, 1000.0, 400, BusyPolicy::Retry { backoff_ms: 1 }).await;
    let r = tracker.snapshot();
    assert!(run.drained);
    assert!(r.submit.iter().all(|s| s.taken()), "retries get every transaction in");
    assert!(r.finalized.iter().all(|f| *f != 0));
}

#[test]
fn rejection_reasons_reach_the_point_through_the_sink_and_samples_stay_bounded() {
    use lamina_benches::tracker::{MAX_REJECTION_LOOKUPS, MAX_REJECTION_SAMPLES};
    let sent = txs(30, 2);
    let tracker = Arc::new(Tracker::new(&sent));
    let sink = CompletionSink::new();
    assert!(!sink.take_lookup(), "no point running: nothing to look up for");
    sink.rejection(&sent[0].id(), "bad_nonce", "dropped: no tracker installed".into());
    sink.install(tracker.clone());
    for (i, tx) in sent.iter().enumerate().take(20) {
        sink.rejection(&tx.id(), "bad_nonce", format!("tx {i}: bad nonce: expected {i}, got {}", i + 2));
    }
    sink.rejection(&sent[25].id(), "lookup_failed", "timed out".into());
    let other = txs(40, 2)[35].clone();
    assert!(!sent.iter().any(|t| t.id() == other.id()));
    sink.rejection(&other.id(), "bad_nonce", "not sent in this point: ignored".into());
    let granted = (0..MAX_REJECTION_LOOKUPS + 5).filter(|_| sink.take_lookup()).count();
    assert_eq!(granted, MAX_REJECTION_LOOKUPS);
    sink.uninstall();
    sink.rejection(&sent[1].id(), "bad_nonce", "dropped: uninstalled".into());
    let (by_reason, samples) = tracker.rejections();
    assert_eq!(
        by_reason.into_iter().collect::<Vec<_>>(),
        vec![("bad_nonce".to_string(), 20), ("lookup_failed".to_string(), 1)]
    );
    assert_eq!(samples.len(), MAX_REJECTION_SAMPLES);
    assert_eq!(samples[0], "tx 0: bad nonce: expected 0, got 2");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn parallel_signing_equals_sequential(accounts in 2u64..20, chains in 1usize..4, n in 0usize..60, seed in any::<u64>(), padded in any::<bool>()) {
        let topo = Topology { chains, funded_accounts: accounts, ..Default::default() };
        let spec = WorkloadSpec {
            accounts,
            seed,
            payload: if padded { PayloadKind::PaddedTransfer } else { PayloadKind::NativeTransfer },
            tx_size: padded.then_some(300),
            ..Default::default()
        };
        let mut w = Workload::new(&spec, &devnet_chains(&topo, 10), TxScope::ChainOnly).unwrap();
        let _ = w.plan(7); // nonces continue from an earlier point
        let plan = w.plan(n);
        prop_assert_eq!(w.sign_parallel(&plan), w.sign_sequential(&plan));
    }
}

/// Minimal XML well-formedness check: balanced tags, one root `<svg>`, quoted
/// attributes balanced.
fn assert_well_formed_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text.as_str();
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        if rest.starts_with("<!--") {
            let end = rest.find("-->").expect("unterminated comment");
            rest = &rest[end + 3..];
            continue;
        }
        let end = rest.find('>').unwrap_or_else(|| panic!("{}: unterminated tag", path.display()));
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        assert_eq!(tag.matches('"').count() % 2, 0, "{}: unbalanced quotes in <{tag}>", path.display());
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().unwrap_or_else(|| panic!("{}: stray </{name}>", path.display()));
            assert_eq!(top, name.trim(), "{}: mismatched tags", path.display());
        } else {
            let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap().to_string();
            if stack.is_empty() {
                roots += 1;
                assert_eq!(name, "svg", "{}: root element", path.display());
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
    }
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", path.display());
    assert_eq!(roots, 1);
    assert!(text.contains("<polyline") || text.contains("<path"), "{}: no lines drawn", path.display());
}

fn sleeper_cluster() -> ProcessCluster<()> {
    ProcessCluster::new(|t: &Topology| {
        let processes = (0..t.da_nodes)
            .map(|i| ProcessSpec {
                instance: Instance::new("da", i),
                module: "da".into(),
                program: "sleep".into(),
                args: vec!["60".into()],
                log: None,
            })
            .collect();
        Ok(Launch { chains: devnet_chains(t, 1_000_000), scope: TxScope::ChainOnly, processes, handle: () })
    })
}

#[test]
fn run_bench_sweeps_to_the_stop_rule_and_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    // Capacity 4000 tx/s (one server, 250 µs); adaptive from 500 tx/s, x4 then x1.25.
    let factory = SyntheticFactory {
        config: SyntheticConfig {
            service_time: Duration::from_micros(250),
            servers: 1,
            finalize_delay: Duration::from_millis(2),
            execute_delay: Some(Duration::from_millis(3)),
            ..Default::default()
        },
    };
    let spec = BenchSpec {
        name: "synthetic".into(),
        topologies: TopologySweep { da_nodes: vec![2], funded_accounts: 100, ..Default::default() },
        load: LoadSweep::Adaptive { start: 500.0, coarse_factor: 4.0, fine_factor: 1.25, max_points: 4, max_rate: 1e6 },
        stop: Some(StopRule { latency_goal_ms: 150.0, metric: GoalMetric::P50, min_achieved_ratio: 0.8 }),
        point: PointSpec {
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(500),
            drain: Duration::from_secs(3),
            burst: Duration::from_millis(2),
            busy: BusyPolicy::Drop,
            pause_between: Duration::from_millis(50),
        },
        workload: WorkloadSpec { accounts: 100, ..Default::default() },
        faults: vec![Fault {
            instance: Instance::new("da", 0),
            action: FaultAction::Pause,
            at_s: 0.1,
            recover_at_s: Some(0.3),
        }],
        sample_interval: Duration::from_millis(100),
        timeseries_bucket: Duration::from_millis(100),
        output: OutputSpec { dir: dir.path().to_path_buf(), plots: true, print_summary: false },
        git: Some(lamina_benches::results::GitInfo { revision: "0123456789abcdef".into(), dirty: false }),
        ..Default::default()
    };
    let mut cluster = sleeper_cluster();
    let results = run_bench_with(&spec, &factory, &mut cluster, &mut Quiet).unwrap();

    assert_eq!(results.configurations.len(), 1);
    let conf = &results.configurations[0];
    assert!(conf.error.is_none(), "{:?}", conf.error);
    assert!(conf.observes.executed && conf.observes.finalized);
    let points = &conf.points;
    assert!(!points.is_empty() && points.len() <= 4);
    // Adaptive: a failure in the coarse phase is followed only by lower (finer) rates,
    // and the sweep ends at the next failure.
    let fails: Vec<usize> = (0..points.len()).filter(|&i| points[i].verdict != Some(Verdict::Pass)).collect();
    assert!(fails.len() <= 2, "{fails:?}");
    if let Some(&f) = fails.first() {
        assert!(points[f + 1..].iter().all(|p| p.offered_tps < points[f].offered_tps));
    }
    if fails.len() == 2 {
        assert_eq!(fails[1], points.len() - 1, "the second failure ends the sweep");
    }
    let last = points.last().unwrap();
    if last.verdict != Some(Verdict::Pass) {
        assert!(conf.stop_reason.contains("tx/s"), "{}", conf.stop_reason);
    } else {
        assert!(
            conf.stop_reason.contains("max_points") || conf.stop_reason.contains("bracketed"),
            "{}",
            conf.stop_reason
        );
    }
    // Rates follow the adaptive rule: x4 while passing.
    assert_eq!(points[0].offered_tps, 500.0);
    if points.len() > 1 && points[0].verdict == Some(Verdict::Pass) {
        assert_eq!(points[1].offered_tps, 2000.0);
    }
    for p in points {
        // Completions in the window cannot outrun what was sent up to its end: the load
        // of the warmup too, whose backlog a stall (the paused process, or this shared
        // box descheduling the synthetic service) can push into the window (allowing
        // for window edges). Against the window's load alone this was flaky: a 100-ms
        // stall at the end of the warmup made 2,380 completions/s of 2,000 offered.
        let sent_by_end = (p.warmup_s + p.duration_s) / p.duration_s;
        assert!(p.achieved_tps <= p.offered_tps * sent_by_end * 1.1 + 10.0, "{p:?}");
        let e = p.e2e.as_ref().unwrap();
        let c = p.consensus.as_ref().unwrap();
        // End to end includes consensus plus execution (3 ms); both percentiles are
        // HdrHistogram values with 3 significant digits (up to 0.1% each).
        assert!(e.p50_ms * 1.002 >= c.p50_ms + 2.9, "{e:?} {c:?}");
        assert!(c.min_ms >= 2.25 - 0.01, "never below service + finalize delay: {c:?}");
        assert!(p.da_bytes_per_s.unwrap() > 0.0);
        // Faults: paused and resumed, on a real process.
        let actions: Vec<FaultAction> = p.faults.iter().map(|f| f.action).collect();
        assert_eq!(actions, vec![FaultAction::Pause, FaultAction::Resume], "{:?}", p.faults);
        assert!(p.faults.iter().all(|f| f.ok && f.at_s >= f.planned_s - 0.001));
        // Processes: the two DA sleepers and the harness itself, with RSS.
        let names: Vec<&str> = p.processes.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"da-0") && names.contains(&"da-1") && names.contains(&"harness"), "{names:?}");
        assert!(p.processes.iter().all(|s| s.rss_bytes_max > 0));
        assert!(p.memory.pregenerated_bytes_estimate > 0);
    }

    // results.json round trip and schema.
    let text = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
    let back = Results::from_json(&text).unwrap();
    assert_eq!(back, results);
    assert_eq!(back.schema_version, SCHEMA_VERSION);
    assert!(back.machine.cores >= 1 && back.machine.memory_bytes > 0);
    // The signature floor is measured with the run, and the summary shows it.
    let floor = back.machine.sig_floor_us.expect("the run measured the signature floor");
    assert!(floor.is_finite() && floor > 0.0, "{floor}");

    // CSVs.
    let csv = std::fs::read_to_string(dir.path().join("points.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(POINTS_CSV_HEADER));
    let cols = POINTS_CSV_HEADER.split(',').count();
    assert_eq!(lines.count(), points.len());
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), points.len());
    assert!(rows.iter().all(|r| r.len() == cols && &r[0] == "v4 da2 c1"), "{rows:?}");
    let ts = std::fs::read_to_string(dir.path().join("timeseries.csv")).unwrap();
    assert_eq!(ts.lines().next(), Some(TIMESERIES_CSV_HEADER));

    // Summary and plots.
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("| v4 da2 c1 |") && md.contains("0123456789ab"), "{md}");
    let header = md.lines().find(|l| l.starts_with("| config |")).expect("summary table");
    assert!(header.contains("rejected after accept") && header.contains("CPU µs / executed tx"), "{header}");
    assert!(md.contains("signature floor: "), "{md}");
    for row in md.lines().filter(|l| l.starts_with("| v4 da2 c1 |")) {
        assert_eq!(row.matches('|').count(), header.matches('|').count(), "{row}");
    }
    let svgs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    // throughput-latency + one CDF + one time series per point + one memory plot per
    // point with sampled processes.
    let with_rss = points.iter().filter(|p| p.process_series.iter().any(|s| !s.rss.is_empty())).count();
    assert!(with_rss > 0, "the sampler saw the processes");
    assert_eq!(svgs.len(), 2 + points.len() + with_rss, "{svgs:?}");
    for s in &svgs {
        assert_well_formed_svg(s);
    }
    let ts_svg = std::fs::read_to_string(dir.path().join("timeseries-v4-da2-c1-500tps.svg")).unwrap();
    assert!(ts_svg.contains("pause da-0") && ts_svg.contains("resume da-0"), "fault markers are labelled");
}

#[test]
fn results_schema_rejects_other_versions_and_missing_fields() {
    let dir = tempfile::tempdir().unwrap();
    let spec = BenchSpec {
        topologies: TopologySweep { funded_accounts: 10, ..Default::default() },
        load: LoadSweep::Fixed { rates: vec![200.0] },
        point: PointSpec {
            warmup: Duration::ZERO,
            duration: Duration::from_millis(200),
            drain: Duration::from_secs(2),
            pause_between: Duration::ZERO,
            ..Default::default()
        },
        workload: WorkloadSpec { accounts: 10, ..Default::default() },
        output: OutputSpec { dir: dir.path().to_path_buf(), plots: false, print_summary: false },
        ..Default::default()
    };
    let results =
        run_bench_with(&spec, &SyntheticFactory::default(), &mut InProcessCluster::default(), &mut Quiet).unwrap();
    let json = results.to_json().unwrap();
    check_schema(&serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(Results::from_json(&json).unwrap(), results);

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["schema_version"] = 2.into();
    assert!(check_schema(&v).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["configurations"][0]["points"][0].as_object_mut().unwrap().remove("offered_tps");
    let err = check_schema(&v).unwrap_err().to_string();
    assert!(err.contains("points[0].offered_tps"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["schema"] = "something-else".into();
    assert!(Results::from_json(&v.to_string()).is_err());
    // Additions within a version are allowed.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["future_field"] = 1.into();
    check_schema(&v).unwrap();
}

#[test]
fn spec_errors_are_reported_before_anything_starts() {
    let bad = BenchSpec { load: LoadSweep::Fixed { rates: vec![] }, ..Default::default() };
    assert!(matches!(bad.validate(), Err(BenchError::Spec(_))));
    let bad = BenchSpec { workload: WorkloadSpec { accounts: 5000, ..Default::default() }, ..Default::default() };
    assert!(bad.validate().is_err(), "more accounts than funded");
    let bad = BenchSpec {
        faults: vec![Fault {
            instance: Instance::new("da", 0),
            action: FaultAction::Restart,
            at_s: 1.0,
            recover_at_s: None,
        }],
        ..Default::default()
    };
    assert!(bad.validate().is_err());
    // A point above the memory limit ends the configuration's sweep, recorded.
    let dir = tempfile::tempdir().unwrap();
    let spec = BenchSpec {
        memory_limit_bytes: 1000,
        output: OutputSpec { dir: dir.path().to_path_buf(), plots: false, print_summary: false },
        ..Default::default()
    };
    let r = run_bench_with(&spec, &SyntheticFactory::default(), &mut InProcessCluster::default(), &mut Quiet).unwrap();
    assert!(r.configurations[0].points.is_empty());
    assert!(r.configurations[0].stop_reason.contains("limit"), "{}", r.configurations[0].stop_reason);
}

#[test]
fn samples_cpu_and_rss_of_a_real_child_and_faults_it() {
    let mut cluster = ProcessCluster::new(|t: &Topology| {
        Ok(Launch {
            chains: devnet_chains(t, 1),
            scope: TxScope::ChainOnly,
            processes: vec![ProcessSpec {
                instance: Instance::new("execution", 0),
                module: "execution".into(),
                program: "sh".into(),
                args: vec!["-c".into(), "while :; do :; done".into()],
                log: None,
            }],
            handle: (),
        })
    });
    cluster.grace = Duration::from_secs(2);
    cluster.start(&Topology::default()).unwrap();
    let procs = cluster.processes();
    assert_eq!(procs.len(), 1);
    let pid = procs[0].pid;

    // CPU time of a busy child increases; its RSS is positive. `spawn` returns as soon as
    // the exec began, when the new image may not have touched a page yet: wait for one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let r = procstat::read(pid).unwrap();
        if r.rss_bytes > 0 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(first.rss_bytes > 0);
    let origin = std::time::Instant::now();
    let mut sampler = procstat::Sampler::new(origin);
    sampler.sample(&procs, std::time::Instant::now());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if procstat::read(pid).unwrap().cpu_ticks > first.cpu_ticks || std::time::Instant::now() > deadline {
            break;
        }
    }
    sampler.sample(&procs, std::time::Instant::now());
    let series = sampler.into_series();
    assert_eq!(series.len(), 1);
    let s = series[0].summary();
    assert!(s.cpu_percent_max > 0.0, "{s:?}");
    assert!(s.rss_bytes_max > 0 && s.samples == 2 && s.pids == vec![pid]);

    // Pause → stopped ('T'); resume → running again.
    let inst = Instance::new("execution", 0);
    cluster.apply(&inst, FaultAction::Pause).unwrap();
    let wait_state = |want: &dyn Fn(char) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let st = procstat::read(pid).unwrap().state;
            if want(st) || std::time::Instant::now() > deadline {
                return st;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(wait_state(&|c| c == 'T'), 'T');
    cluster.apply(&inst, FaultAction::Resume).unwrap();
    assert_ne!(wait_state(&|c| c != 'T'), 'T');
    // Kill → gone; restart → a new pid; restart while running is refused.
    cluster.apply(&inst, FaultAction::Kill).unwrap();
    assert!(cluster.processes().is_empty());
    assert!(procstat::read(pid).is_err(), "killed and reaped");
    cluster.apply(&inst, FaultAction::Restart).unwrap();
    let again = cluster.processes();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].pid, pid);
    assert!(cluster.apply(&inst, FaultAction::Restart).is_err());
    assert!(cluster.apply(&Instance::new("da", 9), FaultAction::Kill).is_err());
    cluster.stop().unwrap();
    assert!(cluster.processes().is_empty());
}

#[tokio::test]
async fn follower_reports_every_transaction_of_the_benchmarked_chain() {
    let all = txs(30, 5);
    let tracker = Arc::new(Tracker::new(&all));
    tracker.start(tokio::time::Instant::now(), true);
    let sink = CompletionSink::new();
    sink.install(tracker.clone());
    let ns = Namespace::from(ChainId(1));
    let other = Namespace::from(ChainId(2));
    let da = lamina_test_utils::FakeDa::new();
    let log = InMemoryLog::new();
    let mut parent = Digest::ZERO;
    // 3 blocks of 10 transactions; each square also holds another chain's blob.
    for (h, chunk) in all.chunks(10).enumerate() {
        let batch = lamina_primitives::Batch { namespace: ns, txs: chunk.to_vec() };
        let data = lamina_primitives::encode(&batch).unwrap();
        let foreign = lamina_primitives::encode(&lamina_primitives::Batch { namespace: other, txs: vec![] }).unwrap();
        let root = Digest([h as u8 + 1; 32]);
        let bytes = (data.len() + foreign.len()) as u64;
        da.insert(root, vec![Blob { namespace: ns, data }, Blob { namespace: other, data: foreign }]);
        let cert = AvailabilityCertificate {
            commitment: DataCommitment {
                data_root: root,
                square_width: 2,
                codec: 0,
                namespaces: vec![ns, other],
                blob_bytes: bytes,
            },
            signatures: Default::default(),
        };
        let header = BlockHeader {
            height: Height(h as u64 + 1),
            parent,
            payload: Block::payload_digest(std::slice::from_ref(&cert)),
            ..Default::default()
        };
        parent = header.digest();
        log.append(FinalizedBlock { block: Block { header, batches: vec![cert] }, certificate: Default::default() })
            .unwrap();
    }
    let stats = Arc::new(FollowStats::default());
    let cfg = FollowConfig { from: Height(1), namespaces: vec![ns], committee: None, max_blocks: 2 };
    let task = tokio::spawn(follow_finalized(log.clone(), da, cfg, sink, stats.clone()));
    while stats.height.load(std::sync::atomic::Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    log.close();
    task.await.unwrap().unwrap();
    assert_eq!(tracker.finalized_count(), 30);
    assert_eq!(tracker.unknown_count(), 0);
    assert_eq!(stats.txs.load(std::sync::atomic::Ordering::Relaxed), 30);
    assert!(stats.sample().da_bytes.unwrap() > 0);
    assert_eq!(log.tip().await.unwrap(), Height(3));
}
