//! The settlement service: follows the ordered log, applies claims and fraud proofs, serves finalized roots, and verifies claims.
//!
//! One service replays the whole network's settlement namespace with
//! [`lamina_settlement_core::SettlementState`], the pure state machine that decides
//! claims, bonds, challenges and finality in log heights. For each finalized block of
//! the ordered log, in height order, it:
//!
//! 1. checks the block's finality certificate (and every availability certificate that
//!    lists a chain's or the settlement namespace) against the genesis committees;
//! 2. tells the core which chains had data at this height and under which data roots
//!    ([`lamina_interfaces::inputs::namespace_data_roots`]), so claims are checked
//!    against what the log ordered (the DA gate);
//! 3. fetches the settlement namespace's blobs from DA and extracts its transactions
//!    with the one shared rule ([`lamina_interfaces::inputs::namespace_transactions`]);
//!    for each challenge it also fetches the challenged step's chain transactions (and
//!    a DA-referenced witness), so the core's verdict is a pure function of the log;
//! 4. appends the height's inputs to its lamina-store log (a restart replays them
//!    instead of refetching; a `kill -9` loses at most the unsynced tail, which is read
//!    again from the ordered log), then applies them to the core.
//!
//! Every [`Config::snapshot_every`] heights it writes a snapshot of the state
//! ([`snapshot`]); a restart loads the newest good one and replays only the records
//! after it, and records below the oldest kept snapshot are deleted.
//!
//! Queries (status, a chain's finalized root with a proof, claims, accounts) are served
//! over QUIC ([`query::SettlementProtocol`], `lamina/settlement/1`) and HTTP/JSON
//! ([`query::serve_http`]). In **verifier mode** ([`Config::verifier`]) the service also
//! replays every chain ([`lamina_interfaces::ChainReplica`]), compares each claim's
//! steps with its own results and challenges the first wrong step with a fraud proof
//! ([`verifier`]).
//!
//! `lamina_settlement_client::LogSettlement` is the settlement seam execution nodes post claims through
//! (a signed [`lamina_settlement_core::Entry::Claim`] transaction via consensus intake);
//! `lamina_settlement_client::SettlementClient` is the typed QUIC query client.

pub mod fetch;
pub mod follower;
pub mod query;
pub mod record;
pub mod snapshot;
pub mod verifier;

use std::net::SocketAddr;
use std::sync::Arc;

use lamina_interfaces::{DataAvailability, EncodingFraudVerifier, OrderedLog, StatelessExecutor, TxSubmit};
use lamina_net::NodeContext;
use lamina_primitives::ChainId;
use tokio_util::sync::CancellationToken;

pub use follower::{Follower, Shared};

/// Configuration of the settlement service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Blocks requested from the ordered log per read (1..=10000).
    pub read_batch: usize,
    /// Verify finality and availability certificates (turn off only for a trusted local
    /// log).
    pub verify_certificates: bool,
    /// Verifier mode: replay every chain, compare each claim, and post a fraud proof
    /// against wrong ones (needs a funded key in the genesis `[settlement]` balances to
    /// bond challenges).
    pub verifier: bool,
    /// Chains the verifier replays (empty: every chain of the genesis).
    #[schemars(with = "Vec<u64>")]
    pub verify_chains: Vec<ChainId>,
    /// Witnesses up to this many bytes travel inside the challenge transaction; larger
    /// ones are dispersed to DA and the challenge carries their commitment. At most
    /// 60 KiB.
    pub inline_witness_limit: usize,
    /// HTTP/JSON query address (`GET /status`, `/chain/<id>`, `/claims/<chain>`,
    /// `/claim/<id>`, `/anchor/<chain>/<height>`, `/account/<key>`). Unset: this node's
    /// `http` address in the genesis, if any.
    #[schemars(example = SocketAddr::from(([127, 0, 0, 1], 8400)))]
    pub http_listen: Option<SocketAddr>,
    /// Write a snapshot of the settlement state under `data/settlement-snapshots` every
    /// this many log heights (0: never), so that a restart loads the newest and replays
    /// only the records after it (see [`snapshot`]). Default 10,000.
    pub snapshot_every: u64,
    /// Snapshots kept (at least 1). The store's records below the oldest kept one are
    /// deleted: disk stays bounded by the snapshots plus `keep_snapshots ×
    /// snapshot_every` heights of records. Default 2.
    pub keep_snapshots: usize,
    /// Size of each settlement store segment file (bytes; a multiple of 4096, at least
    /// 17 MiB so that a height's record of up to 16 MiB fits). Pruning deletes whole
    /// segments. Default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            read_batch: 64,
            verify_certificates: true,
            verifier: false,
            verify_chains: Vec::new(),
            inline_witness_limit: 48 * 1024,
            http_listen: None,
            snapshot_every: 10_000,
            keep_snapshots: 2,
            segment_bytes: 64 << 20,
        }
    }
}

impl Config {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), Error> {
        if self.read_batch == 0 || self.read_batch > 10_000 {
            return Err(Error::Config(format!("read_batch {} outside 1..=10000", self.read_batch)));
        }
        if self.keep_snapshots == 0 {
            return Err(Error::Config("keep_snapshots must be at least 1".into()));
        }
        if self.segment_bytes < 17 << 20 {
            return Err(Error::Config(format!("segment_bytes {} is under 17 MiB", self.segment_bytes)));
        }
        self.store_config().validate().map_err(|e| Error::Config(format!("segment_bytes: {e}")))?;
        if self.inline_witness_limit > 60 * 1024 {
            return Err(Error::Config(
                "inline_witness_limit above 60 KiB would exceed intake's transaction limit".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The settlement store's log configuration.
    pub fn store_config(&self) -> lamina_store::Config {
        lamina_store::Config {
            name: "settlement".into(),
            segment_size: self.segment_bytes,
            max_record_size: lamina_store::Config::capacity(self.segment_bytes).min(16 << 20),
            ..lamina_store::Config::default()
        }
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
    /// The store holds data that does not belong here (another network) or does not
    /// decode: refuse to run on it.
    #[error("store content invalid: {0}")]
    BadStore(String),
    /// The ordered log misbehaved (a gap, a wrong height, a bad certificate).
    #[error("ordered log: {0}")]
    Log(String),
    /// Networking failed at startup.
    #[error("net: {0}")]
    Net(#[from] lamina_net::NetError),
    /// I/O outside the store (HTTP listener).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A worker task failed, or the service stopped mid-way.
    #[error("internal: {0}")]
    Internal(String),
}

/// The seams the service consumes, built by the binary (layers never import each
/// other: the binary hands in the consensus log client, the DA client, the intake
/// client, the execution layer's stateless executor and the DA layer's bad-encoding
/// verifier).
pub struct Seams<L, D, T> {
    /// The ordered log.
    pub log: L,
    /// Data availability (settlement entries, challenged steps' data, witnesses).
    pub da: D,
    /// Transaction intake (the verifier posts its challenges through it).
    pub submit: T,
    /// Stateless re-execution and replicas of every chain.
    pub exec: Arc<dyn StatelessExecutor>,
    /// Bad-encoding proof checks.
    pub encoding: Arc<dyn EncodingFraudVerifier>,
    /// Governance's parameters that `exec` charges by (see [`Follower::open`]); without
    /// it, settlement assumes `exec` reads none.
    pub params: Option<Arc<dyn lamina_interfaces::ParamsRegistry>>,
}

impl<L, D, T> std::fmt::Debug for Seams<L, D, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams").finish_non_exhaustive()
    }
}

/// Runs the settlement service on an endpoint the caller bound (the binary registers
/// the seams' clients on it first) until `shutdown`: opens (or replays) the store,
/// serves queries over QUIC and HTTP, follows the log. The endpoint is shut down on
/// return.
pub async fn run_on<L, D, T>(
    endpoint: lamina_net::Endpoint,
    ctx: NodeContext,
    config: Config,
    seams: Seams<L, D, T>,
    shutdown: CancellationToken,
) -> Result<(), Error>
where
    L: OrderedLog + 'static,
    D: DataAvailability + Clone + 'static,
    T: TxSubmit + Clone + 'static,
{
    let result = serve(&endpoint, ctx, config, seams, &shutdown).await;
    shutdown.cancel();
    endpoint.shutdown().await;
    result
}

async fn serve<L, D, T>(
    endpoint: &lamina_net::Endpoint,
    ctx: NodeContext,
    config: Config,
    seams: Seams<L, D, T>,
    shutdown: &CancellationToken,
) -> Result<(), Error>
where
    L: OrderedLog + 'static,
    D: DataAvailability + Clone + 'static,
    T: TxSubmit + Clone + 'static,
{
    config.validate()?;
    ctx.health.set_check("caught_up", false, "starting");
    let opened =
        Follower::open(&ctx, &config, seams.exec.clone(), seams.encoding.clone(), seams.params.clone(), shutdown).await;
    let mut follower = match opened {
        // Stopped while the replay waited for governance: a clean stop, not a failure.
        Err(_) if shutdown.is_cancelled() => return Ok(()),
        r => r?,
    };
    let shared = follower.shared();

    let _queries = ctx.access.register(
        endpoint,
        query::QuicQueries(shared.clone()),
        ctx.client_peers(),
        lamina_net::ProtocolConfig::for_protocol::<query::SettlementProtocol>(),
    )?;

    let http_addr = config.http_listen.or_else(|| ctx.entry().and_then(|e| e.http));
    let http = match http_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(target: "lamina::settlement", %addr, "HTTP queries");
            Some(tokio::spawn(query::serve_http(listener, shared.clone(), shutdown.clone())))
        }
        None => None,
    };

    let (feed, verifier) = if config.verifier {
        // The replicas replay from genesis (the verifier module's docs); below what
        // governance's parameter history still answers they cannot charge what the
        // network charged.
        if let Some(serves) = seams.params.as_ref().map(|p| p.serves_from()).filter(|s| s.0 > 1) {
            tracing::warn!(target: "lamina::settlement", serves_from = %serves, "verifier replays from genesis, but governance's parameter history starts later; a step below it may be charged differently, after which the replica disagrees with every later claim's pre-state and challenges nothing (no false challenge)");
            ctx.health.set_status("verifier_params_blind_below", serves.0);
        }
        let v = verifier::Verifier::new(
            &ctx,
            &config,
            seams.exec.clone(),
            shared.clone(),
            seams.da.clone(),
            seams.submit.clone(),
        )?;
        let (tx, rx) = verifier::feed();
        (Some(tx), Some((v, rx)))
    } else {
        (None, None)
    };
    // The follower drops the feed when it returns, which ends the verifier.
    let follow = follower.follow(&seams.log, &seams.da, feed, &ctx.health, shutdown);
    let verify = async {
        match verifier {
            Some((v, rx)) => v.run(rx, &shared, &seams.log, shutdown).await,
            None => Ok(()),
        }
    };
    let result = tokio::try_join!(follow, verify).map(|_| ());
    shutdown.cancel();
    if let Some(h) = http {
        let _ = h.await;
    }
    follower.close()?;
    result
}

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    lamina_store::describe_metrics();
    ::metrics::describe_gauge!(
        "lamina_settlement_anchors_kept",
        "Anchors this node keeps over all chains: those a bridge proof may still use (the anchor window after the next anchor of their chain), plus each chain's newest; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_bad_encodings_posted_total",
        "Bad-encoding proofs of wrongly encoded squares the settlement verifier submitted to the validators successfully; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_blobs_skipped_total",
        "Blobs in the settlement namespace skipped because they do not decode as a settlement batch; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_challenges_posted_total",
        "Fraud-proof challenges the settlement verifier submitted to the validators successfully; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_claims_total",
        "Checkpoint claims accepted and bonded by settlement; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_da_retries_total",
        "DA fetches by settlement (follower or verifier) that failed and were retried; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_duplicates_total",
        "Claims finalized as duplicates of the claim just anchored (bond returned, no anchor of their own); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_entries_rejected_total",
        "Settlement entries rejected by the settlement state machine, not counting copies of already ordered entries; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_entry_copies_total",
        "Rejected settlement entries that were copies of an entry already ordered (used nonce or duplicate); no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_settlement_finalized_height",
        "Range end of the latest claim finalized and anchored for each chain (0 before any), by chain."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_finalized_total",
        "Claims finalized and anchored by settlement; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_settlement_height",
        "Last consensus log height applied by the settlement follower; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_slashed_total",
        "Claims slashed after a successful challenge; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_settlement_verifier_height",
        "Height through which the settlement verifier has re-executed each chain, by chain."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_verifier_steps_ok_total",
        "Claim steps the settlement verifier re-executed and found matching the claimed result; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_settlement_verifier_unprovable_total",
        "Wrong claim steps the verifier found but could not prove because they are older than the replica's retained history (1024 steps); no labels."
    );
}
