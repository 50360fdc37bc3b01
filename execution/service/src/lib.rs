//! The execution service: follows the ordered log, fetches batches from DA, executes, persists state, serves queries.
//!
//! One service executes one chain (namespace) with the native ledger
//! ([`lamina_execution_core::ledger`]) whose parameters (fee, fee collector, rules
//! version) come from the genesis chain spec ([`run`], [`run_on`]), or with a chain
//! builder's state machine ([`lamina_execution_core::ChainMachine`], [`run_machine_on`]:
//! everything below holds for it alike). For each finalized block of the ordered log, in
//! height order, it:
//!
//! 1. checks the block's finality certificate against the genesis validators (and each
//!    relevant availability certificate against the DA committee);
//! 2. fetches, from every square whose commitment lists the chain's namespace, the
//!    chain's blobs (`DataAvailability::get_namespace`) and extracts the transactions
//!    with the shared rule ([`lamina_interfaces::inputs`]: a blob that does not decode
//!    as a batch of the namespace is skipped, alike on every replica);
//! 3. runs the block state machine ([`lamina_execution_core::block`]): signatures,
//!    parallel execution, the change set applied to the authenticated state, and, when
//!    the height carried data for the chain, a claim step (receipts are chained only at
//!    steps);
//! 4. appends a [`record::BlockRecord`] (change set, receipts, roots, step) to its
//!    lamina-store log and waits until it is **durable**; only then does the block count
//!    as committed: queries see it, the `lamina_execution_height` gauge moves, and
//! 5. at the claim cut points ([`claims`]) a signed
//!    [`lamina_interfaces::CheckpointClaim`] over the steps since the previous claim is
//!    queued to the [`lamina_interfaces::Settlement`] seam; a poster sends the claims in
//!    order (each extends the previous one), retrying while settlement is unavailable.
//!
//! **Restart** replays the records from the genesis state (checking every recorded
//! state root), rebuilds the claim chain from the records' steps, re-posts the last
//! claims (settlement ignores ids it has seen) and resumes at the next height. **Wiped
//! data** means no records: the service rebuilds by replaying the log from height 1.
//! **Kill -9** loses at most the block being processed, which was never reported
//! committed; the torn tail of the store is discarded by lamina-store's recovery.
//!
//! Queries (balance, nonce, receipt, balance with a state proof, status) are served over
//! QUIC ([`query::QueryProtocol`], `lamina/execution/1`) and over HTTP/JSON
//! ([`query::serve_http`]); `lamina_execution_client::QueryClient` is the typed client.
//!
//! The service is generic over the seams it consumes: the `lamina` binary passes the
//! consensus layer's QUIC `OrderedLog` client, the DA layer's client and the settlement
//! layer's adapter. Tests use `InMemoryLog`, the on-disk [`adapters::FileLog`] fixture,
//! the shared in-memory DA (`lamina_test_utils::FakeDa`) and
//! [`adapters::RecordingSettlement`].

pub mod adapters;
pub mod bridge;
pub mod claims;
pub mod index;
pub mod node;
pub mod query;
pub mod record;
pub mod snapshot;
pub mod sync;

use std::net::SocketAddr;

use lamina_execution_core::ChainMachine;
use lamina_interfaces::{DataAvailability, OrderedLog, Settlement};
use lamina_net::NodeContext;
use lamina_primitives::{ChainId, PublicKey};
use tokio_util::sync::CancellationToken;

pub use node::{ExecutionNode, Shared, View};

/// Configuration of the execution service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The chain (id) to execute. Unset: the chain of this node's genesis entry.
    #[schemars(with = "Option<u64>", example = 1)]
    pub chain: Option<ChainId>,
    /// Blocks requested from the ordered log per read (1..=10000).
    pub read_batch: usize,
    /// Threads for signature verification and execution (0: all cores).
    pub threads: usize,
    /// Verify finality and availability certificates (turn off only for tests and for
    /// a trusted local log).
    pub verify_certificates: bool,
    /// Cut a checkpoint claim at every height divisible by this that has steps (heights
    /// with data for the chain) since the last claim; 1: a claim per step, and never one
    /// for an idle chain. 0 disables claims. Every claim extends the previous one, so
    /// the cut points depend on heights alone and a restarted node rebuilds the same
    /// claims (see [`claims`]). The claim's fee and ledger version come from the genesis
    /// chain spec.
    pub claim_every: u64,
    /// **TEST/DEMO ONLY:** post wrong (but self-consistent) claims, so that settlement's
    /// fraud proofs can be exercised: the state roots of every claim are corrupted
    /// deterministically; the node's own state and queries stay correct.
    pub faulty_claims: bool,
    /// HTTP/JSON query address (`GET /status`, `/balance/<account>`, `/nonce/<account>`,
    /// `/receipt/<tx id>`). Unset: this node's `http` address in the genesis, if any.
    #[schemars(example = SocketAddr::from(([127, 0, 0, 1], 8300)))]
    pub http_listen: Option<SocketAddr>,
    /// Public keys (hex) allowed to query over QUIC besides the genesis nodes, which
    /// always may (wallets, load generators, tools).
    #[schemars(with = "Vec<String>")]
    pub query_clients: Vec<PublicKey>,
    /// Write a state snapshot (under `<data>/snapshots`) after every height divisible by
    /// this (0: never). A restart loads the newest snapshot and replays only the block
    /// records after it (see [`snapshot`]); `lamina execution snapshot export|import`
    /// moves one to a new node.
    pub snapshot_every: u64,
    /// Also write a snapshot once this many transactions executed since the last one
    /// (0: heights only), so that a restart replays at most about this many
    /// transactions however full the blocks are.
    pub snapshot_every_txs: u64,
    /// Snapshots kept on disk (the newest; at least 1).
    pub keep_snapshots: usize,
    /// Heights of block records and receipts kept below the tip. Older ones are pruned
    /// after each snapshot (never above the oldest snapshot kept, which needs the records
    /// after it); queries for them answer "pruned". 0: keep everything.
    pub retain_heights: u64,
    /// With an empty data directory, fetch the newest snapshot of the chain from its
    /// other execution nodes (state sync, see [`sync`]) and start from it; otherwise (or
    /// when no peer offers one) replay the log from genesis.
    pub state_sync: bool,
    /// How many of the chain's execution nodes must offer the identical snapshot before
    /// state sync adopts it (1: any one genesis-listed execution node of the chain is
    /// trusted for the state it starts from).
    pub state_sync_quorum: usize,
    /// Page cache of the on-disk receipt index (see [`index`]), in MiB (1..=65536).
    pub index_cache_mib: usize,
    /// Most heights per receipt-index table (a table also takes no new height once it
    /// holds [`index::TABLE_RECEIPTS`] receipts): receipts are pruned a whole table at a
    /// time (an existing index keeps the value it was created with).
    pub index_epoch_heights: u64,
    /// Receipts the index buffers in memory before it writes them to disk, sorted
    /// (1..=1048576; see [`index`]): more costs memory, fewer costs CPU per receipt.
    pub index_flush_receipts: usize,
    /// Size of one segment file of the block records, in KiB (a multiple of 4 in
    /// 64..=4194304). Records are pruned by whole segments; a block record (at most
    /// 16 MiB) must fit in one.
    pub segment_kib: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chain: None,
            read_batch: 64,
            threads: 0,
            verify_certificates: true,
            claim_every: 1,
            faulty_claims: false,
            http_listen: None,
            query_clients: Vec::new(),
            snapshot_every: 10_000,
            snapshot_every_txs: 500_000,
            keep_snapshots: 2,
            retain_heights: 200_000,
            state_sync: true,
            state_sync_quorum: 1,
            index_cache_mib: 32,
            index_epoch_heights: index::EPOCH,
            index_flush_receipts: index::FLUSH_RECEIPTS,
            segment_kib: 64 * 1024,
        }
    }
}

impl Config {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), Error> {
        if self.read_batch == 0 || self.read_batch > 10_000 {
            return Err(Error::Config(format!("read_batch {} outside 1..=10000", self.read_batch)));
        }
        if self.segment_kib < 64 || !self.segment_kib.is_multiple_of(4) || self.segment_kib > 4 * 1024 * 1024 {
            return Err(Error::Config(format!(
                "segment_kib {} must be a multiple of 4 in 64..=4194304",
                self.segment_kib
            )));
        }
        if self.index_flush_receipts == 0 || self.index_flush_receipts > 1 << 20 {
            return Err(Error::Config(format!(
                "index_flush_receipts {} outside 1..=1048576",
                self.index_flush_receipts
            )));
        }
        if self.index_epoch_heights == 0 {
            return Err(Error::Config("index_epoch_heights must be at least 1".into()));
        }
        if self.state_sync_quorum == 0 {
            return Err(Error::Config("state_sync_quorum must be at least 1".into()));
        }
        if self.keep_snapshots == 0 {
            return Err(Error::Config("keep_snapshots must be at least 1".into()));
        }
        if self.index_cache_mib == 0 || self.index_cache_mib > 65_536 {
            return Err(Error::Config(format!("index_cache_mib {} outside 1..=65536", self.index_cache_mib)));
        }
        if let Some(c) = self.chain
            && !c.is_user_chain()
        {
            return Err(Error::Config(format!("chain {c} is reserved")));
        }
        Ok(())
    }
}

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
    /// The store failed (a local fault: fail-stop).
    #[error("store: {0}")]
    Store(#[from] lamina_store::Error),
    /// The store holds data that does not belong here or does not replay (another
    /// genesis or chain, a record that does not decode, a state root that does not
    /// match): refuse to run on it.
    #[error("store content invalid: {0}")]
    BadStore(String),
    /// The receipt index failed (a local fault: fail-stop).
    #[error("receipt index: {0}")]
    Index(String),
    /// A snapshot is damaged, foreign or unreadable: it is not used.
    #[error("snapshot: {0}")]
    BadSnapshot(String),
    /// The ordered log misbehaved (a gap, a wrong height, a bad certificate).
    #[error("ordered log: {0}")]
    Log(String),
    /// Networking failed at startup.
    #[error("net: {0}")]
    Net(#[from] lamina_net::NetError),
    /// I/O outside the store (HTTP listener).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A worker task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// The seams the service consumes, built by the binary.
pub struct Seams<L, D, S> {
    /// The ordered log (the consensus layer's client).
    pub log: L,
    /// Data availability (the DA layer's client).
    pub da: D,
    /// Where claims go (the settlement layer's adapter over transaction intake, or
    /// [`adapters::RecordingSettlement`]).
    pub settlement: S,
    /// Settlement's anchor registry, followed in-process (required when the genesis
    /// enables the bridge; see [`ExecutionNode::set_anchors`]).
    pub anchors: Option<std::sync::Arc<dyn lamina_interfaces::AnchorRegistry>>,
    /// Governance's parameters, followed in-process (see [`ExecutionNode::set_params`]);
    /// without it every height runs with the genesis parameters.
    pub params: Option<std::sync::Arc<dyn lamina_interfaces::ParamsRegistry>>,
}

impl<L, D, S> std::fmt::Debug for Seams<L, D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams")
            .field("anchors", &self.anchors.is_some())
            .field("params", &self.params.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs the execution service until `shutdown` is cancelled: opens (or rebuilds) the
/// store under `ctx.data_dir`, serves queries over QUIC (an endpoint bound with
/// `endpoint`, on the node's genesis address) and HTTP, and follows the log.
///
/// [`run_on`] with an endpoint bound here from `endpoint`. It takes the seams as an
/// argument: layers never import each other, so the binary constructs the consensus layer's log
/// client, the DA client and the settlement adapter and hands them in.
pub async fn run<L: OrderedLog, D: DataAvailability, S: Settlement>(
    ctx: NodeContext,
    config: Config,
    seams: Seams<L, D, S>,
    endpoint: lamina_net::EndpointConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let endpoint = ctx.bind_endpoint(endpoint)?;
    run_on(endpoint, ctx, config, seams, shutdown).await
}

/// [`run`] on an endpoint the caller bound (the binary registers the seams' clients —
/// log, DA, intake — on the same endpoint first). The endpoint is shut down on return.
pub async fn run_on<L: OrderedLog, D: DataAvailability, S: Settlement>(
    endpoint: lamina_net::Endpoint,
    ctx: NodeContext,
    config: Config,
    seams: Seams<L, D, S>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let ledger = config.validate().and_then(|()| node::native_ledger(&ctx.genesis, chain_of(&ctx, &config)?));
    match ledger {
        Ok(ledger) => run_machine_on(endpoint, ctx, config, seams, ledger, shutdown).await,
        Err(e) => {
            endpoint.shutdown().await;
            Err(e)
        }
    }
}

/// The chain a node executes: the configured one, or its genesis entry's.
pub fn chain_of(ctx: &NodeContext, config: &Config) -> Result<ChainId, Error> {
    config
        .chain
        .or_else(|| ctx.entry().and_then(|e| e.chain))
        .ok_or_else(|| Error::Config("no chain configured and none in the genesis entry".into()))
}

/// [`run_on`] with a chain builder's state machine instead of the native ledger: the
/// service executes the chain `machine` names ([`StateMachine::chain_id`], which must be
/// the chain of `config` or the node's genesis entry). Queries are served with `M`'s
/// failure type in receipts ([`query::QueryProtocol`]`<M::Failure>`).
///
/// [`StateMachine::chain_id`]: lamina_execution_core::StateMachine::chain_id
pub async fn run_machine_on<M: ChainMachine, L: OrderedLog, D: DataAvailability, S: Settlement>(
    endpoint: lamina_net::Endpoint,
    ctx: NodeContext,
    config: Config,
    seams: Seams<L, D, S>,
    machine: M,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let result = serve(&endpoint, ctx, config, seams, machine, &shutdown).await;
    shutdown.cancel();
    endpoint.shutdown().await;
    result
}

async fn serve<M: ChainMachine, L: OrderedLog, D: DataAvailability, S: Settlement>(
    endpoint: &lamina_net::Endpoint,
    ctx: NodeContext,
    config: Config,
    seams: Seams<L, D, S>,
    machine: M,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let Seams { log, da, settlement, anchors, params } = seams;
    config.validate()?;
    let chain = chain_of(&ctx, &config)?;
    if machine.chain_id() != chain {
        return Err(Error::Config(format!(
            "this node executes chain {chain}, but its state machine is for chain {}",
            machine.chain_id()
        )));
    }
    // Snapshots are served to the chain's other execution nodes (and any client); a node
    // with an empty data directory first fetches one (state sync).
    let chain_peers: Vec<_> = ctx
        .genesis
        .execution_nodes
        .iter()
        .filter(|n| n.chain == Some(chain) && n.key != ctx.node_id())
        .cloned()
        .collect();
    let syncing = config.state_sync && sync::is_empty(&ctx.data_dir) && !chain_peers.is_empty();
    let mut base = ctx.client_peers();
    if syncing {
        for n in &chain_peers {
            base = base.with_dial(n.key, n.addr);
        }
    }
    let snapshots = ctx.access.register(
        endpoint,
        sync::SnapshotServer { dir: ctx.data_dir.join("snapshots") },
        base,
        lamina_net::ProtocolConfig::for_protocol::<sync::SnapshotProtocol>(),
    )?;
    if syncing {
        let keys: Vec<_> = chain_peers.iter().map(|n| n.key).collect();
        let dir = ctx.data_dir.join("snapshots");
        std::fs::create_dir_all(&dir)?;
        let genesis = ctx.genesis.digest();
        let tip = tokio::time::timeout(std::time::Duration::from_secs(5), log.tip()).await.ok().and_then(|t| t.ok());
        let trust = sync::Trust { quorum: config.state_sync_quorum, max_height: tip };
        let synced = tokio::select! {
            r = sync::sync(&snapshots, &keys, &dir, &genesis, chain, trust, &ctx.health) => r?,
            () = shutdown.cancelled() => return Ok(()),
        };
        match synced {
            sync::Synced::Installed { manifest, rejected } => {
                tracing::info!(target: "lamina::execution", %chain, height = %manifest.height, keys = manifest.keys, root = %manifest.state_root, rejected_chunks = rejected, "state sync: snapshot fetched and installed");
            }
            sync::Synced::Fallback(why) => {
                tracing::warn!(target: "lamina::execution", %chain, reason = %why, "state sync: no snapshot; replaying the log from genesis");
            }
        }
    }
    let mut node = ExecutionNode::open_with(machine, &ctx.data_dir, &ctx.genesis, ctx.keypair.clone(), &config)?;
    if let Some(p) = params {
        node.set_params(p)?;
    }
    if let Some(a) = anchors {
        node.set_anchors(a)?;
    } else if ctx.genesis.bridge.enabled {
        return Err(Error::Config(
            "the genesis enables the bridge: the execution service needs settlement's anchor registry".into(),
        ));
    }
    ctx.health.set_check("caught_up", false, "starting");
    let shared = node.shared();

    // QUIC queries.
    let mut peers = ctx.client_peers();
    for k in &config.query_clients {
        peers = peers.with_accept(*k);
    }
    let _queries = ctx.access.register(
        endpoint,
        query::QuicQueries(shared.clone()),
        peers,
        lamina_net::ProtocolConfig::for_protocol::<query::QueryProtocol<M::Failure>>(),
    )?;

    // HTTP queries.
    let http_addr = config.http_listen.or_else(|| ctx.entry().and_then(|e| e.http));
    let http = match http_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(target: "lamina::execution", %addr, "HTTP queries");
            Some(tokio::spawn(query::serve_http(listener, shared.clone(), shutdown.clone())))
        }
        None => None,
    };

    let view = node.shared();
    let result = tokio::select! {
        r = node.follow(&log, &da, &settlement, &ctx.health, shutdown) => r,
        () = watch_progress(&log, &view, &ctx.health, shutdown) => Ok(()),
    };
    shutdown.cancel();
    if let Some(h) = http {
        let _ = h.await;
    }
    node.close()?;
    result
}

/// How long the executed height may stand still while the log is ahead before the node
/// reports not ready (`progress` check).
const STALL: std::time::Duration = std::time::Duration::from_secs(10);
/// Heights behind the log tip that still count as keeping up (blocks arrive while one
/// executes).
const KEEPING_UP: u64 = 20;

/// Watches the executed height against the log tip until `shutdown`: the `progress`
/// readiness check turns false when the chain cannot progress (the log is more than
/// [`KEEPING_UP`] heights ahead and nothing executed for [`STALL`]: DA data missing, a
/// wrong config, a stuck fetch), with the heights in its message; and one INFO line per
/// 10 s reports the height, heights/s and executed transactions/s.
async fn watch_progress<L: OrderedLog, F>(
    log: &L,
    view: &std::sync::Arc<node::Shared<F>>,
    health: &lamina_interfaces::Health,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let snapshot = || {
        let v = view.read();
        (v.height.0, v.executed as usize)
    };
    let (mut last_height, mut moved_at) = (snapshot().0, tokio::time::Instant::now());
    let (mut report_at, mut report_from) = (tokio::time::Instant::now(), snapshot());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let tip = tokio::select! {
            () = shutdown.cancelled() => return,
            t = tokio::time::timeout(std::time::Duration::from_secs(2), log.tip()) => match t {
                Ok(Ok(t)) => Some(t.0),
                _ => None,
            },
        };
        let now = tokio::time::Instant::now();
        let (height, txs) = snapshot();
        if height != last_height {
            (last_height, moved_at) = (height, now);
        }
        let still = now.duration_since(moved_at);
        match tip {
            Some(tip) if tip > height + KEEPING_UP && still >= STALL => health.set_check(
                "progress",
                false,
                format!(
                    "no block executed for {:.0?} at height {height}, log tip {tip}: waiting for this chain's data",
                    still
                ),
            ),
            Some(tip) => health.set_check("progress", true, format!("height {height}, log tip {tip}")),
            None => {}
        }
        let since = now.duration_since(report_at);
        if since >= std::time::Duration::from_secs(10) {
            let secs = since.as_secs_f64();
            tracing::info!(
                target: "lamina::execution",
                height,
                log_tip = tip.unwrap_or(0),
                heights_per_s = format!("{:.1}", height.saturating_sub(report_from.0) as f64 / secs),
                tx_per_s = format!("{:.0}", txs.saturating_sub(report_from.1) as f64 / secs),
                "progress"
            );
            (report_at, report_from) = (now, (height, txs));
        }
    }
}

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    lamina_store::describe_metrics();
    ::metrics::describe_counter!(
        "lamina_execution_bridge_proofs_refreshed_total",
        "Bridge key proofs made again at a claim cut because they were older than half the anchor window (so a relayer always has a proof against a usable anchor); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_execution_bad_squares_total",
        "Squares DA proved wrongly encoded while fetching this chain's data (their data counts as absent), by disperser (first 16 hex characters of its key, or unknown)."
    );
    ::metrics::describe_counter!(
        "lamina_execution_claim_failures_total",
        "Failed attempts to post a checkpoint claim to settlement (rejected, or settlement unavailable and retried); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_execution_claims_total",
        "Checkpoint claims this execution node made at a checkpoint cut and queued for posting; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_execution_da_retries_total",
        "DA fetches of this chain's data that failed and were retried; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_execution_height",
        "Height of the last block this execution node executed and committed durably; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_execution_receipts_total",
        "Unsuccessful transaction receipts committed, by status (failed, rejected) and reason (the ledger failure, e.g. bad_nonce, insufficient_balance); successful receipts are not counted."
    );
    ::metrics::describe_counter!(
        "lamina_execution_skipped_blobs_total",
        "Blobs in this chain's namespace skipped because they do not decode as a batch of the chain; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_execution_transactions_total",
        "Transactions executed in committed blocks, whatever their outcome; no labels."
    );
}
