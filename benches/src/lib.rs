//! Lamina benchmarks: criterion micro-benchmarks and the macro harness (load generator, sweeps, results, plots).
//!
//! The criterion micro-benchmarks live in `benches/benches/*.rs`. This library is the
//! **macro harness** behind `lamina bench`: an open-loop load generator and the
//! machinery around it, generic over the system under test.
//!
//! ```text
//!  BenchSpec ──▶ run_bench ──▶ Cluster::start(topology) ──▶ Deployment { chains, handle }
//!                   │          TargetFactory::connect(deployment, sink) ──▶ LoadTarget
//!                   │  per offered rate (SweepDriver):
//!                   │    Workload: plan + sign (rayon) before the clock ──▶ Tracker
//!                   │    run_open_loop: bursts at intended times ──▶ LoadTarget::submit
//!                   │    target ──▶ CompletionSink: finalized / executed (+ time)
//!                   │    this thread: faults (Cluster::apply), /proc CPU+RSS, counters
//!                   │    stats: HdrHistogram from intended time, window throughput
//!                   ▼
//!      results.json · points.csv · timeseries.csv · summary.md · *.svg
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`runner`] | [`run_bench`], [`BenchSpec`]: the entry point `lamina bench` calls |
//! | [`target`] | the system-under-test seam: [`LoadTarget`], [`TargetFactory`], [`SubmitAdapter`] |
//! | [`cluster`] | the cluster-control seam: [`Cluster`], faults, [`ProcessCluster`], [`InProcessCluster`] |
//! | [`workload`] | signed transfers among funded test accounts, pre-signed in parallel |
//! | [`schedule`], [`generator`] | open-loop schedule and generator (no coordinated omission) |
//! | [`tracker`] | per-transaction timestamps; the [`CompletionSink`] targets report to |
//! | [`stats`] | percentiles, throughput, time series, CDF |
//! | [`sweep`] | fixed/adaptive load sweeps, stop rule, topology sweeps |
//! | [`procstat`] | CPU and RSS per process from `/proc` |
//! | [`results`] | the versioned `results.json` schema, CSV, markdown |
//! | [`plots`] | SVG plots (plotters) |
//! | [`synthetic`] | in-process targets with known service time, capacity and stalls |
//! | [`follow`] | finalized-transaction reporting from an [`lamina_interfaces::OrderedLog`] and DA |
//!
//! # Wiring a real cluster
//!
//! The `lamina` binary implements [`Cluster`] over its devnet supervisor (start a
//! topology as processes, report pids, signal instances) and a [`TargetFactory`] whose
//! target submits through the consensus intake client ([`SubmitAdapter`] over any
//! `TxSubmit`) and feeds the sink from the ordered log ([`follow::follow_finalized`])
//! and from execution receipts. Then:
//!
//! ```no_run
//! # use lamina_benches::*;
//! # fn wire<C: Cluster, F: TargetFactory<C::Handle>>(cluster: &mut C, factory: &F) -> Result<(), BenchError> {
//! let spec = BenchSpec {
//!     load: LoadSweep::Adaptive { start: 5_000.0, coarse_factor: 4.0, fine_factor: 1.25, max_points: 12, max_rate: 400_000.0 },
//!     stop: Some(StopRule { latency_goal_ms: 1000.0, metric: GoalMetric::P50, min_achieved_ratio: 0.95 }),
//!     ..BenchSpec::default()
//! };
//! let results = run_bench(&spec, factory, cluster)?;
//! # Ok(()) }
//! ```

pub mod blocks;
pub mod cluster;
mod error;
pub mod follow;
pub mod generator;
pub mod plots;
pub mod procstat;
pub mod results;
pub mod runner;
pub mod schedule;
mod serde_secs;
pub mod stats;
pub mod sweep;
pub mod synthetic;
pub mod target;
pub mod tracker;
pub mod workload;

pub use cluster::{
    Cluster, Deployment, Fault, FaultAction, InProcessCluster, Instance, Launch, ProcessCluster, ProcessRef,
    ProcessSpec, Topology,
};
pub use error::BenchError;
pub use generator::{BusyPolicy, LoadPlan, LoadRun, run_open_loop};
pub use results::{Results, SCHEMA, SCHEMA_VERSION, check_schema};
pub use runner::{
    BenchSpec, LiveStatus, Observer, OutputSpec, PointSpec, Quiet, StderrProgress, run_bench, run_bench_with,
    write_outputs,
};
pub use schedule::Schedule;
pub use sweep::{GoalMetric, LoadSweep, StopRule, TopologySweep, Verdict};
pub use synthetic::{Stall, SyntheticConfig, SyntheticFactory, SyntheticTarget};
pub use target::{LoadTarget, Observes, SubmitAdapter, TargetFactory, TargetSample};
pub use tracker::{CompletionSink, ExecStatus, Tracker};
pub use workload::{PayloadBuilder, PayloadKind, Workload, WorkloadSpec};
