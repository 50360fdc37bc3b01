//! Consensus macro benchmark: 4 validators and 4 DA nodes as separate processes on
//! 127.0.0.1 (this binary, re-executed), open-loop load of signed 512-byte
//! transactions through the QUIC intake, latency from intended send time to
//! finalization (HdrHistogram, via `lamina_benches::run_bench`).
//!
//! ```text
//! cargo bench -p lamina-benches --bench consensus_e2e                       # txs, signatures checked
//! LAMINA_BENCH_VERIFY=0 cargo bench -p lamina-benches --bench consensus_e2e # txs, intake checks without signatures
//! LAMINA_BENCH_MODE=digests cargo bench -p lamina-benches --bench consensus_e2e
//! ```
//!
//! Environment: `LAMINA_BENCH_RATES` (offered tx/s, comma-separated; default
//! 10000,50000,100000,150000,200000), `LAMINA_BENCH_DURATION_S` (measurement window per
//! point, default 8), `LAMINA_BENCH_OUT` (results directory, default
//! `target/bench-results/consensus-<mode>`).
//!
//! * **txs** (default): client → validator intake (size, chain, signature, duplicate
//!   checks) → mempool → batcher → DA dispersal to the 4 DA node processes (real
//!   erasure coding, real attestations) → consensus → finalized; the follower reads
//!   each finalized block's batches back from DA and reports their transactions.
//! * **digests**: the ordering capacity alone. No transactions and no DA: each validator
//!   process hands its core availability certificates (real DA-committee signatures) at
//!   a fixed rate, each standing for a 1 MiB batch (2,048 transactions of 512 bytes),
//!   and measures submit → finalized per certificate on its own log.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lamina_benches::follow::FollowStats;
use lamina_benches::{
    BenchError, BenchSpec, BusyPolicy, CompletionSink, Deployment, Instance, Launch, LoadSweep, Observes, OutputSpec,
    PayloadKind, PointSpec, ProcessCluster, ProcessSpec, SubmitAdapter, TargetFactory, Topology, TopologySweep,
    WorkloadSpec, run_bench,
};
use lamina_consensus_client::{IntakeClient, LogClient};
use lamina_consensus_service::Config;
use lamina_interfaces::{Blob, DaError, DataAvailability, Genesis, Health, NodeEntry, OrderedLog};
use lamina_net::{Endpoint, EndpointConfig, NodeContext};
use lamina_primitives::{
    AvailabilityCertificate, ChainId, DataCommitment, Digest, Height, Keypair, Namespace, QuorumCertificate, Signature,
};
use tokio_util::sync::CancellationToken;

const CHILD: &str = "LAMINA_BENCH_CHILD";
const VALIDATOR_KEY: u64 = 50_000;
const DA_KEY: u64 = 60_000;
const CLIENT_KEY: u64 = 70_000;
const TXS_PER_DIGEST: u64 = 2048;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn node(name: String, key: &Keypair, chain: Option<ChainId>) -> NodeEntry {
    NodeEntry { chain, ..lamina_test_utils::node(name, key, lamina_net::ports::one_udp()) }
}

/// The benchmark network: validators, DA nodes, and the load client as an execution
/// node (so that DA nodes serve it retrievals).
fn genesis(t: &Topology) -> Genesis {
    Genesis {
        chains: lamina_benches::cluster::devnet_chains(t, 1_000_000_000),
        validators: (0..t.validators)
            .map(|i| node(format!("validator-{i}"), &Keypair::for_testing(VALIDATOR_KEY + i as u64), None))
            .collect(),
        da_nodes: (0..t.da_nodes)
            .map(|i| node(format!("da-{i}"), &Keypair::for_testing(DA_KEY + i as u64), None))
            .collect(),
        execution_nodes: vec![node("bench-client".into(), &Keypair::for_testing(CLIENT_KEY), Some(ChainId(1)))],
        ..lamina_test_utils::genesis("consensus-bench")
    }
}

fn validator_config(verify: bool) -> Config {
    let mut c = Config {
        intake_clients: vec![Keypair::for_testing(CLIENT_KEY).public()],
        wal_segment_bytes: 64 << 20,
        log_segment_bytes: 64 << 20,
        ..Config::default()
    };
    c.mempool.verify_signatures = verify;
    c.mempool.max_per_sender = 100_000;
    c.batch.max_bytes = 1 << 20;
    c.batch.max_delay_ms = 20;
    c.batch.max_inflight = 4;
    c
}

// ------------------------------------------------------------------ children

fn child(spec: String) {
    if let Ok(filter) = std::env::var("LAMINA_BENCH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let parts: Vec<String> = spec.split(';').map(String::from).collect();
    let (role, index, dir) = (parts[0].clone(), parts[1].parse::<u64>().unwrap(), PathBuf::from(&parts[3]));
    let g: Arc<Genesis> = Arc::new(serde_json::from_slice(&std::fs::read(&parts[2]).unwrap()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
            stop.cancel();
        });
        match role.as_str() {
            "da" => {
                let ctx = NodeContext::new(
                    Keypair::for_testing(DA_KEY + index),
                    g,
                    dir.join(format!("da-{index}")),
                    Health::new(),
                );
                let cfg = lamina_da_service::Config { segment_bytes: 64 << 20, ..Default::default() };
                lamina_da_service::run(ctx, cfg, shutdown).await.unwrap();
            }
            "validator" => {
                let verify = parts[4] == "1";
                let ctx = NodeContext::new(
                    Keypair::for_testing(VALIDATOR_KEY + index),
                    g.clone(),
                    dir.join(format!("validator-{index}")),
                    Health::new(),
                );
                let endpoint = ctx.bind_endpoint(EndpointConfig::default()).unwrap();
                let da = lamina_da_client::DaClient::register(&endpoint, &g, Default::default()).unwrap();
                lamina_consensus_service::run_on(endpoint, ctx, validator_config(verify), da, shutdown).await.unwrap();
            }
            "digests" => {
                let rate: f64 = parts[4].parse().unwrap();
                let secs: f64 = parts[5].parse().unwrap();
                let out = PathBuf::from(&parts[6]);
                digests_child(g, index, dir, rate, Duration::from_secs_f64(secs), &out, shutdown).await;
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

/// A DA layer that is never reached (digests mode: no transactions).
struct NoDa;
impl DataAvailability for NoDa {
    fn submit(&self, _blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send {
        std::future::ready(Err(DaError::Rejected("digests-only benchmark: no DA".into())))
    }
    fn get_namespace(
        &self,
        _c: &DataCommitment,
        _n: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send {
        std::future::ready(Err(DaError::Unavailable("digests-only benchmark: no DA".into())))
    }
}

fn digest_cert(keys: &[Keypair], threshold: usize, tag: u64) -> AvailabilityCertificate {
    let commitment = DataCommitment {
        data_root: lamina_primitives::domains::BATCH.hash(&tag.to_le_bytes()),
        square_width: 64,
        codec: 1,
        namespaces: vec![Namespace::from(ChainId(1))],
        blob_bytes: TXS_PER_DIGEST * 512,
    };
    let d = commitment.attestation_digest();
    let votes: Vec<(usize, Signature)> = (0..threshold).map(|i| (i, keys[i].sign(&d))).collect();
    AvailabilityCertificate { commitment, signatures: QuorumCertificate::from_votes(d, keys.len(), &votes) }
}

async fn digests_child(
    g: Arc<Genesis>,
    index: u64,
    dir: PathBuf,
    rate: f64,
    duration: Duration,
    out: &Path,
    shutdown: CancellationToken,
) {
    let ctx = NodeContext::new(
        Keypair::for_testing(VALIDATOR_KEY + index),
        g.clone(),
        dir.join(format!("validator-{index}")),
        Health::new(),
    );
    let endpoint = ctx.bind_endpoint(EndpointConfig::default()).unwrap();
    let v = lamina_consensus_service::start(endpoint, ctx, validator_config(true), NoDa).await.unwrap();
    let keys: Vec<Keypair> = (0..g.da_nodes.len() as u64).map(|i| Keypair::for_testing(DA_KEY + i)).collect();
    // Pre-sign the certificates (signing is the DA's work, not consensus's).
    let count = (rate * duration.as_secs_f64()).ceil() as u64;
    let certs: Vec<AvailabilityCertificate> =
        (0..count).map(|k| digest_cert(&keys, g.da_threshold(), index << 40 | k)).collect();
    // Wait until the network finalizes (all validators up).
    while v.height() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent: Arc<parking_lot::Mutex<HashMap<Digest, Instant>>> = Default::default();
    let latencies: Arc<parking_lot::Mutex<Vec<u64>>> = Default::default();
    let follow = tokio::spawn({
        let (log, sent, latencies) = (v.log(), sent.clone(), latencies.clone());
        let from = Height(v.height() + 1);
        async move {
            let mut next = from;
            loop {
                let Ok(blocks) = log.read(next, 256).await else { return };
                let now = Instant::now();
                for fb in &blocks {
                    for c in &fb.block.batches {
                        if let Some(t) = sent.lock().remove(&c.commitment.attestation_digest()) {
                            latencies.lock().push(now.duration_since(t).as_micros() as u64);
                        }
                    }
                }
                next = Height(next.0 + blocks.len() as u64);
            }
        }
    });
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    for (k, cert) in certs.into_iter().enumerate() {
        let due = start + period.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        sent.lock().insert(cert.commitment.attestation_digest(), due);
        v.order_certified(cert).await.unwrap();
    }
    let sent_all = Instant::now();
    // Drain: wait for the rest to be ordered (bounded).
    while !sent.lock().is_empty() && sent_all.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lat = latencies.lock().clone();
    let report = serde_json::json!({
        "submitted": count,
        "finalized": lat.len(),
        "send_secs": sent_all.duration_since(start).as_secs_f64(),
        "latencies_us": lat,
    });
    std::fs::write(out, report.to_string()).unwrap();
    follow.abort();
    shutdown.cancelled().await;
    v.stop().await.unwrap();
}

// ------------------------------------------------------------------ txs mode

struct Handle {
    genesis: Genesis,
}

struct Factory;

impl TargetFactory<Handle> for Factory {
    type Target = SubmitAdapter<IntakeClient>;

    async fn connect(&self, d: &Deployment<Handle>, sink: CompletionSink) -> Result<Self::Target, BenchError> {
        let g = &d.handle.genesis;
        let err = |e: &dyn std::fmt::Display| BenchError::Target(e.to_string());
        let ep = Endpoint::bind(&Keypair::for_testing(CLIENT_KEY), EndpointConfig::new("127.0.0.1:0".parse().unwrap()))
            .map_err(|e| err(&e))?;
        let intake = IntakeClient::register(&ep, g).map_err(|e| err(&e))?;
        let log = LogClient::register(&ep, g).map_err(|e| err(&e))?;
        let da = lamina_da_client::DaClient::register(&ep, g, Default::default()).map_err(|e| err(&e))?;
        let n = g.validators.len();
        intake.wait_for_validators(n, Duration::from_secs(60)).await.map_err(|e| err(&e))?;
        log.wait_for_validators(n, Duration::from_secs(60)).await.map_err(|e| err(&e))?;
        da.wait_for_nodes(g.da_nodes.len(), Duration::from_secs(60)).await.map_err(|e| err(&e))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let tip = loop {
            let t = log.tip().await.map(|h| h.0).unwrap_or(0);
            if t >= 2 {
                break t;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Target("consensus produced no block in 60 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stats = Arc::new(FollowStats::default());
        let namespaces: Vec<Namespace> = g.chains.iter().map(|c| Namespace::from(c.id)).collect();
        tokio::spawn(follow(log, Arc::new(da), Height(tip + 1), namespaces, sink, stats.clone()));
        // The clients keep the endpoint's connections; the handle itself may go.
        drop(ep);
        Ok(SubmitAdapter::new(intake, Observes::FINALIZED).with_sample(move || stats.sample()))
    }
}

/// Follows the log: each block is timestamped when read (its finalization as a client
/// sees it) and its batches are fetched from DA concurrently (bounded), so a slow fetch
/// never delays the timestamps of later blocks. Transactions are reported with their
/// block's read time. (`lamina_benches::follow` fetches before reading on, which on this
/// box lags behind the log under load.)
async fn follow(
    log: LogClient,
    da: Arc<lamina_da_client::DaClient>,
    from: Height,
    namespaces: Vec<Namespace>,
    sink: CompletionSink,
    stats: Arc<FollowStats>,
) {
    use std::sync::atomic::Ordering;
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut next = from;
    loop {
        let blocks = match log.read(next, 256).await {
            Ok(b) => b,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let read_at = tokio::time::Instant::now();
        for fb in &blocks {
            stats.height.store(fb.height().0, Ordering::Relaxed);
            for cert in &fb.block.batches {
                stats.da_bytes.fetch_add(cert.commitment.blob_bytes, Ordering::Relaxed);
                for ns in namespaces.iter().filter(|ns| cert.commitment.namespaces.contains(ns)) {
                    let permit = limit.clone().acquire_owned().await.unwrap();
                    let (da, sink, stats, c, ns) =
                        (da.clone(), sink.clone(), stats.clone(), cert.commitment.clone(), *ns);
                    tokio::spawn(async move {
                        let _permit = permit;
                        match da.get_namespace(&c, ns).await {
                            Ok(blobs) => {
                                let mut ids = Vec::new();
                                for b in &blobs {
                                    match lamina_primitives::codec::access::<lamina_primitives::Batch>(b) {
                                        Ok(batch) => ids.extend(batch.txs.iter().map(|t| t.id())),
                                        Err(_) => {
                                            stats.batch_errors.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                }
                                stats.txs.fetch_add(ids.len() as u64, Ordering::Relaxed);
                                sink.finalized_at(ids, read_at);
                            }
                            Err(_) => {
                                stats.batch_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
        }
        next = Height(next.0 + blocks.len() as u64);
    }
}

fn run_txs(dir: &Path, rates: Vec<f64>, duration: Duration, verify: bool, out: PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let root = dir.to_path_buf();
    let mut started = 0u32;
    let mut cluster = ProcessCluster::new(move |t: &Topology| {
        let g = genesis(t);
        started += 1;
        let net = root.join(format!("net-{started}"));
        std::fs::create_dir_all(&net).map_err(|e| BenchError::io(&net, e))?;
        let gpath = net.join("genesis.json");
        std::fs::write(&gpath, serde_json::to_vec(&g).unwrap()).map_err(|e| BenchError::io(&gpath, e))?;
        let mut processes = Vec::new();
        let spawn = |role: &str, i: usize, extra: &str| {
            let spec = format!("{role};{i};{};{}{extra}", gpath.display(), net.display());
            ProcessSpec {
                instance: Instance::new(if role == "da" { "da" } else { "validator" }, i),
                module: if role == "da" { "da".into() } else { "consensus".into() },
                program: exe.clone(),
                args: vec![std::ffi::OsString::from("--child"), std::ffi::OsString::from(spec)],
                log: Some(net.join(format!("{role}-{i}.log"))),
            }
        };
        for i in 0..t.da_nodes {
            processes.push(spawn("da", i, ""));
        }
        let v = if verify { ";1" } else { ";0" };
        for i in 0..t.validators {
            processes.push(spawn("validator", i, v));
        }
        Ok(Launch { chains: g.chains.clone(), scope: g.tx_scope(), processes, handle: Handle { genesis: g } })
    });
    let spec = BenchSpec {
        name: format!(
            "consensus: 4 validators + 4 DA nodes as processes, 512-byte txs, intake signature checks {}",
            if verify { "on" } else { "off" }
        ),
        topologies: TopologySweep {
            validators: vec![4],
            da_nodes: vec![4],
            chains: vec![1],
            execution_per_chain: 0,
            funded_accounts: 4096,
        },
        load: LoadSweep::Fixed { rates },
        stop: None,
        point: PointSpec {
            warmup: Duration::from_secs(2),
            duration,
            drain: Duration::from_secs(10),
            burst: Duration::from_millis(2),
            busy: BusyPolicy::Retry { backoff_ms: 5 },
            pause_between: Duration::from_secs(3),
        },
        workload: WorkloadSpec {
            accounts: 4096,
            tx_size: Some(512),
            payload: PayloadKind::PaddedTransfer,
            amount: 1,
            seed: 7,
        },
        output: OutputSpec { dir: out, plots: true, print_summary: true },
        load_threads: 2,
        ..BenchSpec::default()
    };
    let results = run_bench(&spec, &Factory, &mut cluster).unwrap();
    drop(results);
}

// ------------------------------------------------------------------ digests mode

fn run_digests(dir: &Path, rates: Vec<f64>, duration: Duration, out: PathBuf) {
    std::fs::create_dir_all(&out).unwrap();
    let exe = std::env::current_exe().unwrap();
    let t = Topology { validators: 4, da_nodes: 4, chains: 1, execution_per_chain: 0, funded_accounts: 2 };
    let mut rows = Vec::new();
    for rate in rates {
        // Offered tx/s → certificates per second across the 4 validators.
        let certs = rate / TXS_PER_DIGEST as f64;
        let per_validator = certs / t.validators as f64;
        let g = genesis(&t);
        let net = dir.join(format!("digests-{rate}"));
        std::fs::create_dir_all(&net).unwrap();
        let gpath = net.join("genesis.json");
        std::fs::write(&gpath, serde_json::to_vec(&g).unwrap()).unwrap();
        let mut children = Vec::new();
        for i in 0..t.validators {
            let report = net.join(format!("report-{i}.json"));
            let spec = format!(
                "digests;{i};{};{};{per_validator};{};{}",
                gpath.display(),
                net.display(),
                duration.as_secs_f64(),
                report.display()
            );
            let log = std::fs::File::create(net.join(format!("validator-{i}.log"))).unwrap();
            let child = std::process::Command::new(&exe)
                .args(["--child", &spec])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            children.push((child, report));
        }
        // Wait for every report, then stop the validators.
        let deadline = Instant::now() + duration + Duration::from_secs(90);
        while children.iter().any(|(_, r)| !r.exists()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
        let (mut submitted, mut finalized, mut secs) = (0u64, 0u64, 0f64);
        for (child, report) in &mut children {
            let v: serde_json::Value = std::fs::read(&*report)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::json!({}));
            submitted += v["submitted"].as_u64().unwrap_or(0);
            finalized += v["finalized"].as_u64().unwrap_or(0);
            secs = f64::max(secs, v["send_secs"].as_f64().unwrap_or(0.0));
            for l in v["latencies_us"].as_array().map(|a| a.to_vec()).unwrap_or_default() {
                let _ = hist.record(l.as_u64().unwrap_or(1).max(1));
            }
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        for (mut child, _) in children {
            let _ = child.wait();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        let row = serde_json::json!({
            "offered_tx_per_s": rate,
            "certificates_per_s": certs,
            "finalized_certificates": finalized,
            "submitted_certificates": submitted,
            "achieved_tx_per_s": finalized as f64 * TXS_PER_DIGEST as f64 / secs.max(1e-9),
            "mean_ms": hist.mean() / 1000.0,
            "p50_ms": ms(hist.value_at_quantile(0.5)),
            "p99_ms": ms(hist.value_at_quantile(0.99)),
        });
        println!("{row}");
        rows.push(row);
    }
    let mut f = std::fs::File::create(out.join("digests.json")).unwrap();
    writeln!(f, "{}", serde_json::Value::Array(rows)).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(args[i + 1].clone());
    }
    if let Ok(spec) = std::env::var(CHILD) {
        return child(spec);
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` / criterion listing: nothing to list
    }
    if !args.iter().any(|a| a == "--bench") {
        return; // built or run as a test: the benchmark runs only under `cargo bench`
    }
    let mode = std::env::var("LAMINA_BENCH_MODE").unwrap_or_else(|_| "txs".into());
    let rates: Vec<f64> = std::env::var("LAMINA_BENCH_RATES")
        .unwrap_or_else(|_| "10000,50000,100000,150000,200000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let duration = Duration::from_secs(env_or("LAMINA_BENCH_DURATION_S", 8));
    let verify = env_or("LAMINA_BENCH_VERIFY", 1u8) == 1;
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = std::env::var("LAMINA_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|_| tmp.path().to_path_buf());
    let suffix = if mode == "digests" { "digests".to_string() } else { format!("txs-verify{}", u8::from(verify)) };
    let out = std::env::var("LAMINA_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(format!("target/bench-results/consensus-{suffix}")));
    match mode.as_str() {
        "digests" => run_digests(&tmp_path, rates, duration, out),
        _ => run_txs(&tmp_path, rates, duration, verify, out),
    }
}
