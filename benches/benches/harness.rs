#![allow(clippy::unwrap_used)]
//! The macro harness's own costs, so it is known not to be the bottleneck:
//!
//! * `harness::sign`: pre-signing the workload, parallel (rayon) vs its sequential twin;
//! * `harness::tracker`: recording finalized completions (the hot path of a target);
//! * `harness::stats`: statistics of a 100k-transaction point.
//!
//! Then, outside criterion, a **generator capacity probe**: `run_bench` against an
//! in-process target with zero service time at 50k–400k tx/s offered, printing the
//! generator's lag (sent − intended) and achieved rate per point, and leaving the
//! results directory (results.json, CSV, plots) in `target/bench-harness/`. Set
//! `LAMINA_BENCH_PROBE=0` to skip it.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use lamina_benches::cluster::devnet_chains;
use lamina_benches::stats::{self, Window};
use lamina_benches::*;
use lamina_primitives::TxId;

fn workload(accounts: u64) -> Workload {
    let topo = Topology { funded_accounts: accounts, ..Default::default() };
    Workload::new(
        &WorkloadSpec { accounts, ..Default::default() },
        &devnet_chains(&topo, 1),
        lamina_primitives::TxScope::ChainOnly,
    )
    .unwrap()
}

fn sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("harness::sign");
    let n = 10_000;
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    let mut w = workload(1000);
    let plan = w.plan(n);
    g.bench_function(BenchmarkId::new("native transfers", format!("n={n} parallel")), |b| {
        b.iter(|| w.sign_parallel(&plan))
    });
    g.bench_function(BenchmarkId::new("native transfers", format!("n={n} sequential")), |b| {
        b.iter(|| w.sign_sequential(&plan))
    });
    g.finish();
}

fn tracker(c: &mut Criterion) {
    let n = 100_000;
    let txs = workload(1000).generate(n);
    let ids: Vec<TxId> = txs.iter().map(|t| t.id()).collect();
    let mut g = c.benchmark_group("harness::tracker");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("index", format!("n={n}")), |b| b.iter(|| Tracker::new(&txs)));
    g.bench_function(BenchmarkId::new("record_finalized", format!("n={n} batches=1000")), |b| {
        b.iter_batched(
            || {
                let t = Tracker::new(&txs);
                t.start(tokio::time::Instant::now(), true);
                t
            },
            |t| {
                let now = tokio::time::Instant::now();
                for chunk in ids.chunks(1000) {
                    let ev: Vec<(TxId, tokio::time::Instant)> = chunk.iter().map(|id| (*id, now)).collect();
                    t.record_finalized(&ev);
                }
                t
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("harness::stats");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    let t = Tracker::new(&txs);
    let t0 = tokio::time::Instant::now();
    t.start(t0, false);
    let schedule = Schedule::new(10_000.0, n as u64);
    for (i, id) in ids.iter().enumerate() {
        let at = t0 + Duration::from_nanos(schedule.intended_ns(i as u64)) + Duration::from_millis(5 + (i % 50) as u64);
        t.mark_sent(i, i + 1, t0 + Duration::from_nanos(schedule.intended_ns(i as u64)));
        t.record_finalized(&[(*id, at)]);
        t.record_executed(&[(*id, ExecStatus::Success, at + Duration::from_millis(3))]);
    }
    let records = t.snapshot();
    let w = Window {
        schedule,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(6),
        end: Duration::from_secs(11),
        bucket: Duration::from_secs(1),
    };
    g.bench_function(BenchmarkId::new("compute", format!("n={n}")), |b| {
        b.iter(|| stats::compute(&records, &w, true, true))
    });
    g.finish();
}

/// Generator capacity: the real runner against a target that costs nothing.
fn probe() {
    if std::env::var("LAMINA_BENCH_PROBE").is_ok_and(|v| v == "0") {
        return;
    }
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-harness");
    let spec = BenchSpec {
        name: "harness capacity (zero-cost synthetic target)".into(),
        topologies: TopologySweep { funded_accounts: 10_000, ..Default::default() },
        load: LoadSweep::Fixed { rates: vec![50_000.0, 100_000.0, 200_000.0, 400_000.0] },
        stop: None,
        point: PointSpec {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(3),
            drain: Duration::from_secs(5),
            burst: Duration::from_millis(1),
            busy: BusyPolicy::Drop,
            pause_between: Duration::from_millis(500),
        },
        workload: WorkloadSpec { accounts: 10_000, ..Default::default() },
        output: OutputSpec { dir: dir.clone(), plots: true, print_summary: true },
        ..Default::default()
    };
    let factory = SyntheticFactory {
        config: SyntheticConfig {
            service_time: Duration::from_nanos(1),
            servers: 1,
            finalize_delay: Duration::from_millis(1),
            execute_delay: Some(Duration::from_millis(1)),
            ..Default::default()
        },
    };
    let r = run_bench_with(&spec, &factory, &mut InProcessCluster::default(), &mut StderrProgress).unwrap();
    println!("\nharness::open_loop capacity (offered → handed to target; generator lag = sent − intended):");
    for p in &r.configurations[0].points {
        let harness = p.processes.iter().find(|s| s.name == "harness");
        println!(
            "harness::open_loop/rate={:.0}: finalized {:.0} tx/s, lag p50 {:.3} ms p99 {:.3} ms max {:.3} ms, harness CPU {:.0}% RSS {:.0} MiB, pre-sign {:.1} s",
            p.offered_tps,
            p.finalized_tps,
            p.generator_lag.p50_ms,
            p.generator_lag.p99_ms,
            p.generator_lag.max_ms,
            harness.map_or(0.0, |h| h.cpu_percent_mean),
            harness.map_or(0.0, |h| h.rss_bytes_max as f64 / (1u64 << 20) as f64),
            p.memory.generate_s,
        );
    }
    println!("results: {}", dir.display());
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    sign(&mut c);
    tracker(&mut c);
    c.final_summary();
    probe();
}
