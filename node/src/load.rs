//! Load against a real network: the harness ([`lamina_benches`]) wired to the devnet.
//!
//! * [`DevnetFactory`] connects a load target to a running network as a genesis client
//!   (the devnet's `client.key`): transactions go to the validators' QUIC intake
//!   ([`IntakeClient`]); **finalized** comes from following the ordered log and reading
//!   the chains' batches back from DA ([`lamina_benches::follow::follow_finalized`]); **executed**
//!   comes from each chain's execution node, which publishes the outcomes of every
//!   committed height ([`QueryRequest::Outcomes`]), so end-to-end latency is
//!   submit → durable receipt.
//! * [`AttachedCluster`] is the harness's cluster seam over a network that is already
//!   running (`lamina devnet up`): no faults, nothing to start or stop.
//! * [`devnet_cluster`] starts a fresh devnet (same layout as `devnet up`) per
//!   topology as child processes, for `lamina bench` sweeps with fault schedules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_benches::follow::{FollowConfig, FollowStats, follow_finalized};
use lamina_benches::{
    BenchError, Cluster, CompletionSink, Deployment, ExecStatus, FaultAction, Instance, Launch, LoadTarget, Observes,
    ProcessCluster, ProcessRef, ProcessSpec, SubmitAdapter, TargetFactory, TargetSample, Topology,
};
use lamina_consensus_client::{IntakeClient, LogClient};
use lamina_da_client::DaClient;
use lamina_execution_client::protocol::{QueryProtocol, QueryRequest, QueryResponse};
use lamina_execution_core::Status;
use lamina_interfaces::{Genesis, OrderedLog};
use lamina_net::{Endpoint, EndpointConfig, Network, PeerSet, ProtocolConfig};
use lamina_primitives::{ChainId, Height, Keypair, Namespace, NodeId, Transaction, TxId};
use tokio::task::JoinHandle;

use crate::devnet::layout::{self, Spec};
use crate::devnet::state::DevnetState;

/// How often each chain's execution node is asked for new outcomes.
const OUTCOME_POLL: Duration = Duration::from_millis(20);
/// How long `connect` waits for the network (validators connected, nodes ready).
const CONNECT_WITHIN: Duration = Duration::from_secs(120);
/// How long the load generator waits for every validator before it settles for a quorum.
const ALL_CONNECTED_WITHIN: Duration = Duration::from_secs(15);

/// What a target needs to reach a network.
#[derive(Clone, Debug)]
pub struct DevnetHandle {
    /// The network's genesis.
    pub genesis: Arc<Genesis>,
    /// A genesis client key.
    pub client: Keypair,
    /// Admin addresses of every node (`connect` waits until each `/readyz` is 200).
    pub admins: Vec<SocketAddr>,
}

impl DevnetHandle {
    /// The handle of a devnet directory's network.
    pub fn from_state(st: &DevnetState) -> anyhow::Result<Self> {
        let genesis = Arc::new(crate::genesis::load(&st.genesis)?);
        let client = crate::keys::read(&st.client_key)?;
        Ok(DevnetHandle { genesis, client, admins: st.nodes.iter().map(|n| n.admin).collect() })
    }
}

/// Connects [`DevnetTarget`]s (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct DevnetFactory;

/// A load target on a real network: QUIC intake, log + DA follower, execution outcomes.
pub struct DevnetTarget {
    submit: SubmitAdapter<IntakeClient>,
    endpoint: Endpoint,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DevnetTarget {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let ep = self.endpoint.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { ep.shutdown().await });
        }
    }
}

impl LoadTarget for DevnetTarget {
    fn observes(&self) -> Observes {
        self.submit.observes()
    }

    fn submit(&self, txs: Vec<Transaction>) -> impl Future<Output = lamina_benches::target::SubmitResults> + Send {
        self.submit.submit(txs)
    }

    fn sample(&self) -> impl Future<Output = TargetSample> + Send {
        self.submit.sample()
    }
}

fn bench_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> BenchError + '_ {
    move |e| BenchError::Target(format!("{what}: {e}"))
}

impl TargetFactory<DevnetHandle> for DevnetFactory {
    type Target = DevnetTarget;

    async fn connect(
        &self,
        deployment: &Deployment<DevnetHandle>,
        sink: CompletionSink,
    ) -> Result<DevnetTarget, BenchError> {
        let h = &deployment.handle;
        wait_ready(&h.admins).await?;
        let g = &h.genesis;
        // On loopback, like the devnet's nodes (`devnet::layout`): larger datagrams.
        let mut config = EndpointConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.limits.max_udp_payload = lamina_net::GSO_MAX_UDP_PAYLOAD;
        let endpoint =
            Endpoint::bind(&h.client, config).map_err(bench_err("cannot bind the load generator's endpoint"))?;
        let intake = IntakeClient::register(&endpoint, g).map_err(bench_err("intake client"))?;
        let log = LogClient::register(&endpoint, g).map_err(bench_err("log client"))?;
        let da = Arc::new(DaClient::register(&endpoint, g, Default::default()).map_err(bench_err("DA client"))?);
        let mut peers = PeerSet::new();
        for e in &g.execution_nodes {
            peers = peers.with_dial(e.key, e.addr);
        }
        let queries: Network<QueryProtocol> = endpoint
            .register_client(peers, ProtocolConfig::for_protocol::<QueryProtocol>())
            .map_err(bench_err("execution query client"))?;
        let committee = g.validator_committee();
        // Every validator when they all come up, so that the timed load starts with
        // every connection made: `IntakeClient` holds a sender routed to a validator it
        // has not connected to yet (up to FIRST_CONNECT_WAIT, so that its nonces are
        // not split between two validators), and those waits would land in the
        // measurement. A quorum is enough to run.
        if let Err(e) = intake.wait_for_validators(committee.size(), ALL_CONNECTED_WITHIN).await {
            tracing::warn!(target: "lamina::load", error = %e, "not every validator is connected; starting with a quorum (the missing validators' senders fail over)");
            intake
                .wait_for_validators(committee.quorum(), CONNECT_WITHIN)
                .await
                .map_err(bench_err("validators unreachable"))?;
        }
        // The log is another protocol with its own connections: wait for them too, or the
        // first tip read can find none yet ("no validator connected", a flake seen once).
        log.wait_for_validators(1, CONNECT_WITHIN).await.map_err(bench_err("validators' log unreachable"))?;

        let tip = log.tip().await.map_err(|e| BenchError::Target(format!("log tip: {e}")))?;
        let chains: Vec<ChainId> = deployment.chains.iter().map(|c| c.id).collect();
        let stats = Arc::new(FollowStats::default());
        let mut tasks = Vec::new();
        let config = FollowConfig {
            from: tip.next(),
            namespaces: chains.iter().map(|c| Namespace::from(*c)).collect(),
            committee: None, // LogClient verifies every block's certificate
            max_blocks: 64,
        };
        // Where committees change by vote, the log client checks each block against
        // its height's committee and the intake client routes among the current one,
        // both from a governance follower of the load's own.
        tasks.extend(crate::governed::spawn_committee_follower(g, &log, da.clone(), &intake));
        let (fs, fstats) = (sink.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = follow_finalized(log, da, config, fs, fstats).await {
                tracing::warn!(target: "lamina::load", error = %e, "finalized follower stopped");
            }
        }));
        for c in &chains {
            let Some(node) = g.execution_nodes.iter().find(|e| e.chain == Some(*c)) else {
                return Err(BenchError::Target(format!("chain {c} has no execution node")));
            };
            let start = current_height(&queries, &node.key).await?;
            tasks.push(tokio::spawn(follow_outcomes(queries.clone(), node.key, start.next(), sink.clone())));
        }
        let submit = SubmitAdapter::new(intake, Observes { finalized: true, executed: true })
            .with_sample(move || stats.sample());
        Ok(DevnetTarget { submit, endpoint, tasks })
    }
}

/// Waits until every admin address answers `/readyz` with 200.
async fn wait_ready(admins: &[SocketAddr]) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
    for a in admins {
        loop {
            match lamina_telemetry::client::get(*a, "/readyz", Duration::from_secs(2)).await {
                Ok(r) if r.status == 200 => break,
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(BenchError::Target(format!("node with admin {a} not ready")));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    Ok(())
}

async fn current_height(queries: &Network<QueryProtocol>, node: &NodeId) -> Result<Height, BenchError> {
    let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
    loop {
        match queries.request(node, &QueryRequest::Status).await {
            Ok(QueryResponse::Status(s)) => return Ok(s.height),
            Ok(other) => return Err(BenchError::Target(format!("unexpected status answer {other:?}"))),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(BenchError::Target(format!("execution node unreachable: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Reports every outcome the execution node commits from height `next` on.
async fn follow_outcomes(queries: Network<QueryProtocol>, node: NodeId, mut next: Height, sink: CompletionSink) {
    loop {
        let answer = queries.request(&node, &QueryRequest::Outcomes(next)).await;
        let now = tokio::time::Instant::now();
        let mut more = false;
        match answer {
            Ok(QueryResponse::Outcomes(committed, blocks)) => {
                // One answer is one consistent view: committed heights >= `next` that
                // are not listed had none of this chain's transactions.
                let mut events = Vec::new();
                let mut rejected = Vec::new();
                let mut last = None;
                for (h, list) in blocks {
                    for (id, kind) in list {
                        let status = match kind {
                            0 => ExecStatus::Success,
                            1 => ExecStatus::Failed,
                            _ => ExecStatus::Rejected,
                        };
                        if status == ExecStatus::Rejected && sink.take_lookup() {
                            rejected.push((h, id));
                        }
                        events.push((id, status, now));
                    }
                    last = Some(h);
                }
                if !events.is_empty() {
                    sink.executed(&events);
                }
                if !rejected.is_empty() {
                    tokio::spawn(explain_rejections(queries.clone(), node, rejected, sink.clone()));
                }
                match last {
                    // The answer may have stopped early: ask again at once.
                    Some(h) => {
                        next = h.next();
                        more = next <= committed;
                    }
                    None => next = next.max(committed.next()),
                }
            }
            Ok(other) => tracing::warn!(target: "lamina::load", answer = ?other, "unexpected outcomes answer"),
            Err(e) => tracing::debug!(target: "lamina::load", error = %e, "outcomes query failed"),
        }
        if !more {
            tokio::time::sleep(OUTCOME_POLL).await;
        }
    }
}

/// Asks the execution node why each of `rejected` (height, id) was rejected, and
/// reports it to the point's tracker (and the log): a rejected receipt of an accepted
/// transaction is what the bench's "rejected after accept" counts, and its reason is
/// the first thing to know about it. One query per receipt, during the point, at most
/// `lamina_benches::tracker::MAX_REJECTION_LOOKUPS` a point.
async fn explain_rejections(
    queries: Network<QueryProtocol>,
    node: NodeId,
    rejected: Vec<(Height, TxId)>,
    sink: CompletionSink,
) {
    for (height, id) in rejected {
        let (reason, detail) = match queries.request(&node, &QueryRequest::Receipt(id)).await {
            Ok(QueryResponse::Receipt(Some((_, receipt)))) => match receipt.status {
                Status::Rejected(f) => (f.label().to_string(), f.to_string()),
                other => ("not_rejected".to_string(), format!("{other:?}")),
            },
            Ok(QueryResponse::Receipt(None)) => ("receipt_unknown".to_string(), "no receipt".to_string()),
            Ok(other) => ("unexpected_answer".to_string(), format!("{other:?}")),
            Err(e) => ("lookup_failed".to_string(), e.to_string()),
        };
        tracing::warn!(target: "lamina::load", tx = %id, height = height.0, reason = %detail, "accepted transaction rejected");
        sink.rejection(&id, &reason, format!("{id} at height {}: {detail}", height.0));
    }
}

/// The cluster seam over a network that is already running: `start` describes it,
/// faults are refused, `stop` leaves it to its supervisor.
#[derive(Debug)]
pub struct AttachedCluster {
    /// The running network's state (pids for CPU/RSS sampling).
    pub state: DevnetState,
    /// Its handle.
    pub handle: DevnetHandle,
}

impl Cluster for AttachedCluster {
    type Handle = DevnetHandle;

    fn start(&mut self, topology: &Topology) -> Result<Deployment<DevnetHandle>, BenchError> {
        Ok(Deployment {
            topology: topology.clone(),
            chains: self.handle.genesis.chains.clone(),
            scope: self.handle.genesis.tx_scope(),
            handle: self.handle.clone(),
        })
    }

    fn processes(&self) -> Vec<ProcessRef> {
        self.state
            .nodes
            .iter()
            .filter_map(|n| {
                n.pid.map(|pid| ProcessRef { name: n.name.clone(), module: n.module.as_str().to_string(), pid })
            })
            .collect()
    }

    fn apply(&mut self, instance: &Instance, _action: FaultAction) -> Result<(), BenchError> {
        Err(BenchError::Cluster(format!("faults need `lamina bench` (the devnet's {instance} is not ours to signal)")))
    }

    fn stop(&mut self) -> Result<(), BenchError> {
        Ok(())
    }
}

/// A cluster that creates a fresh devnet under `root` for each topology (same layout as
/// `lamina devnet up`) and runs every node as a child process of this one.
/// Every network directory it creates is added to `created` (for
/// [`layout::drop_node_data`] once the run is over).
pub fn devnet_cluster(
    root: &Path,
    log_level: &str,
    created: Arc<Mutex<Vec<PathBuf>>>,
) -> anyhow::Result<ProcessCluster<DevnetHandle>> {
    let exe = std::env::current_exe()?;
    let root = root.to_path_buf();
    let log_level = log_level.to_string();
    let mut n = 0usize;
    Ok(ProcessCluster::new(move |t: &Topology| {
        n += 1;
        let dir: PathBuf = root.join(format!("net-{n}"));
        created.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(dir.clone());
        launch(&exe, &dir, t, &log_level).map_err(|e| BenchError::Cluster(format!("{e:#}")))
    }))
}

fn launch(exe: &Path, dir: &Path, t: &Topology, log_level: &str) -> anyhow::Result<Launch<DevnetHandle>> {
    layout::prepare_dir(dir)?;
    let spec = Spec {
        network: "bench".into(),
        validators: t.validators,
        da_nodes: t.da_nodes,
        execution: t.chains * t.execution_per_chain,
        settlement: 0,
        bridge: 0,
        chains: t.chains,
        funded_accounts: t.funded_accounts,
        log_level: log_level.into(),
        settlement_window: 32,
        anchor_window: lamina_interfaces::DEFAULT_ANCHOR_WINDOW,
        faulty_claims: Vec::new(),
        faulty_dispersal: Vec::new(),
        heartbeat: std::time::Duration::from_secs(1),
        ledger_version: lamina_execution_core::ledger::LEDGER_VERSION,
        epoch_length: lamina_interfaces::genesis::DEFAULT_EPOCH_LENGTH,
        voting_period: lamina_interfaces::genesis::DEFAULT_VOTING_PERIOD,
        closed_access: false,
        committee_changes: false,
    };
    let st = layout::create(dir, &spec)?;
    st.save()?;
    let handle = DevnetHandle::from_state(&st)?;
    let processes = st
        .nodes
        .iter()
        .map(|n| {
            let (role, index) = n.name.rsplit_once('-').unwrap_or((n.name.as_str(), "0"));
            ProcessSpec {
                instance: Instance::new(role, index.parse().unwrap_or(0)),
                module: n.module.as_str().to_string(),
                program: exe.to_path_buf(),
                args: vec![n.module.as_str().into(), "start".into(), "--home".into(), n.home.clone().into_os_string()],
                log: Some(n.log.clone()),
            }
        })
        .collect();
    Ok(Launch { chains: handle.genesis.chains.clone(), scope: handle.genesis.tx_scope(), processes, handle })
}

/// `lamina bench`: sweeps offered load (and topologies) against fresh devnets.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Offered loads (tx/s, comma-separated). Without it: an adaptive sweep from
    /// --start-rate up to --max-rate that stops when the latency goal is missed.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// First rate of the adaptive sweep (tx/s).
    #[arg(long, default_value_t = 5000.0)]
    pub start_rate: f64,
    /// Highest rate of the adaptive sweep (tx/s).
    #[arg(long, default_value_t = 200_000.0)]
    pub max_rate: f64,
    /// Latency goal (ms) for the stop rule: a point fails above it, or when it achieves
    /// less than 95% of the offered load.
    #[arg(long, default_value_t = 1000.0)]
    pub latency_goal_ms: f64,
    /// Latency the goal applies to: p50 or p99 (end to end, submit → executed).
    #[arg(long, default_value = "p99")]
    pub goal_metric: String,
    /// Committee sizes to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub validators: Vec<usize>,
    /// DA node counts to sweep.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub da_nodes: Vec<usize>,
    /// Chain counts to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub chains: Vec<usize>,
    /// Execution services per chain.
    #[arg(long, default_value_t = 1)]
    pub execution_per_chain: usize,
    /// Sending accounts per chain (fewer: more contention).
    #[arg(long, default_value_t = 10_000)]
    pub accounts: u64,
    /// Transaction size in bytes (padded transfers: finalize, but execution rejects them).
    #[arg(long)]
    pub tx_size: Option<usize>,
    /// Measured time per point.
    #[arg(long, default_value = "30s", value_parser = crate::args::parse_duration)]
    pub duration: Duration,
    /// Warm-up per point (load offered, not measured).
    #[arg(long, default_value = "5s", value_parser = crate::args::parse_duration)]
    pub warmup: Duration,
    /// Time after a point's load for the last transactions to complete.
    #[arg(long, default_value = "10s", value_parser = crate::args::parse_duration)]
    pub drain: Duration,
    /// A fault in every point: `<kill|terminate|pause>:<instance>@<t>[..<t2>]`, seconds
    /// after the point's start; at t2 the instance is restarted (resumed). Instances:
    /// `validator-0`, `da-1`, `execution-0`. Repeatable.
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Output directory (default: `bench-results/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Log filter of the nodes.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub load_threads: usize,
    /// Keep each network's node data after the run (about 2.7 GB per network with the
    /// default topology). Without it only configs and logs are kept, unless a
    /// configuration failed (then everything is kept).
    #[arg(long)]
    pub keep_data: bool,
}

/// Parses `kill:execution-0@10..20`.
pub fn parse_fault(s: &str) -> anyhow::Result<lamina_benches::Fault> {
    let bad = || anyhow::anyhow!("bad fault {s:?} (expected <kill|terminate|pause>:<instance>@<t>[..<t2>])");
    let (action, rest) = s.split_once(':').ok_or_else(bad)?;
    let (instance, times) = rest.split_once('@').ok_or_else(bad)?;
    let action = match action {
        "kill" => FaultAction::Kill,
        "terminate" => FaultAction::Terminate,
        "pause" => FaultAction::Pause,
        _ => return Err(bad()),
    };
    let (role, index) = instance.rsplit_once('-').ok_or_else(bad)?;
    let (at, recover) = match times.split_once("..") {
        Some((a, b)) => (a.parse::<f64>().map_err(|_| bad())?, Some(b.parse::<f64>().map_err(|_| bad())?)),
        None => (times.parse::<f64>().map_err(|_| bad())?, None),
    };
    let fault = lamina_benches::Fault {
        instance: Instance::new(role, index.parse().map_err(|_| bad())?),
        action,
        at_s: at,
        recover_at_s: recover,
    };
    fault.validate().map_err(|e| anyhow::anyhow!("{s}: {e}"))?;
    Ok(fault)
}

/// Runs `lamina bench`.
pub fn bench(a: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    use lamina_benches::{BenchSpec, GoalMetric, LoadSweep, OutputSpec, PointSpec, StopRule, TopologySweep};
    let metric = match a.goal_metric.as_str() {
        "p50" => GoalMetric::P50,
        "p99" => GoalMetric::P99,
        m => anyhow::bail!("--goal-metric {m:?}: expected p50 or p99"),
    };
    let load = if a.rates.is_empty() {
        LoadSweep::Adaptive {
            start: a.start_rate,
            coarse_factor: 2.0,
            fine_factor: 1.25,
            max_points: 10,
            max_rate: a.max_rate,
        }
    } else {
        LoadSweep::Fixed { rates: a.rates.clone() }
    };
    let out = match &a.out {
        Some(d) => d.clone(),
        None => PathBuf::from("bench-results").join(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string(),
        ),
    };
    let faults = a.faults.iter().map(|f| parse_fault(f)).collect::<anyhow::Result<Vec<_>>>()?;
    let spec = BenchSpec {
        name: "lamina bench".into(),
        topologies: TopologySweep {
            validators: a.validators.clone(),
            da_nodes: a.da_nodes.clone(),
            chains: a.chains.clone(),
            execution_per_chain: a.execution_per_chain,
            funded_accounts: a.accounts,
        },
        load,
        stop: Some(StopRule { latency_goal_ms: a.latency_goal_ms, metric, min_achieved_ratio: 0.95 }),
        point: PointSpec {
            warmup: a.warmup,
            duration: a.duration,
            drain: a.drain,
            burst: Duration::from_millis(5),
            ..PointSpec::default()
        },
        workload: lamina_benches::WorkloadSpec {
            accounts: a.accounts,
            tx_size: a.tx_size,
            payload: if a.tx_size.is_some() {
                lamina_benches::PayloadKind::PaddedTransfer
            } else {
                lamina_benches::PayloadKind::NativeTransfer
            },
            ..Default::default()
        },
        faults,
        load_threads: a.load_threads,
        output: OutputSpec { dir: out.clone(), plots: true, print_summary: true },
        // The revision this binary was built from, whatever directory it runs in.
        git: crate::build_info::git(),
        ..BenchSpec::default()
    };
    spec.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(&out)?;
    let out = crate::home::absolute(&out)?;
    let created = Arc::new(Mutex::new(Vec::new()));
    let mut cluster = devnet_cluster(&out.join("networks"), &a.log_level, created.clone())?;
    let results = lamina_benches::run_bench(&spec, &DevnetFactory, &mut cluster).map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(cluster);
    let failed = results.configurations.iter().any(|c| c.error.is_some());
    // The networks this run made, once stopped: their data (about 2.7 GB each) goes
    // unless asked to keep it or a configuration failed (then it is evidence).
    if !a.keep_data && !failed {
        for net in created.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            layout::drop_node_data(net);
        }
    }
    eprintln!("results: {}", out.join("results.json").display());
    Ok(if failed { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS })
}
