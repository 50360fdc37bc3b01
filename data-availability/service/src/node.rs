//! The DA storage node: verifies, stores and attests to its columns; serves headers,
//! columns, column ranges and samples; prunes by retention.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lamina_da_core::fraud::is_codeword;
use lamina_da_core::square::check_width_allowed;
use lamina_da_core::tree::{Axis, axis_root};
use lamina_da_core::{Assignment, AxisRangeProof, Parallelism, SHARE_SIZE, SampleProof};
use lamina_interfaces::{InMemoryLog, LogError, OrderedLog};
use lamina_net::{Endpoint, Handler, NodeContext, PeerSet, Reject};
use lamina_primitives::{DaCommittee, Digest, Height, Keypair, NodeId};
use rayon::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, Result, task_err};
use crate::metrics as m;
use crate::protocol::{
    CellRef, ColumnData, ColumnRef, ColumnSlice, CommitteeStore, DaProtocol, DaRequest, DaResponse, MAX_RANGES_BYTES,
    RangesRequest, StoreRequest, StoreResponse, protocol_config,
};
use crate::store::ColumnStore;

const TARGET: &str = "lamina::da";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What a node's governance follower tells it about membership changed by vote: the DA
/// committees it knows ([`DaCommittees::set`]), so that it stores for them
/// ([`DaRequest::StoreFor`]), and the validators added by vote
/// ([`DaCommittees::set_validators`]), whose stores count against no client quota, as
/// the genesis nodes' do not. Cloning shares them. The genesis committee is always known.
#[derive(Clone, Debug, Default)]
pub struct DaCommittees(Arc<parking_lot::RwLock<Governed>>);

#[derive(Debug, Default)]
struct Governed {
    committees: Vec<DaCommittee>,
    validators: std::collections::HashSet<NodeId>,
}

impl DaCommittees {
    /// Replaces the committees known (those without a tag, the genesis one, are left
    /// out: it is always known).
    pub fn set(&self, committees: Vec<DaCommittee>) {
        self.0.write().committees = committees.into_iter().filter(|c| c.tag.is_some()).collect();
    }

    /// The committee changed by vote whose id is `tag`, if known.
    pub fn get(&self, tag: &Digest) -> Option<DaCommittee> {
        self.0.read().committees.iter().find(|c| c.tag.as_ref() == Some(tag)).cloned()
    }

    /// Replaces the validators added by vote (their batches are stored without a
    /// client quota).
    pub fn set_validators(&self, validators: impl IntoIterator<Item = NodeId>) {
        self.0.write().validators = validators.into_iter().collect();
    }

    /// True if `key` is a validator added by vote.
    pub fn is_validator(&self, key: &NodeId) -> bool {
        self.0.read().validators.contains(key)
    }
}

/// Serves [`DaProtocol`] for one DA node.
pub struct DaNode {
    keypair: Keypair,
    /// The genesis DA committee ([`DaRequest::Store`]).
    genesis: DaCommittee,
    /// Committees changed by vote ([`DaRequest::StoreFor`]).
    committees: DaCommittees,
    store: Arc<ColumnStore>,
    health: lamina_interfaces::Health,
    /// Genesis node keys: their stores count against no quota.
    nodes: std::collections::HashSet<NodeId>,
    /// [`crate::Config::client_quota_bytes`].
    client_quota: u64,
    /// Genesis client keys: they may store (within the quota) as well as read.
    clients: std::collections::HashSet<NodeId>,
    /// The node's client-access policy: its `allowed_clients` may store too.
    access: lamina_net::Access,
    /// The genesis allows squares of any width ([`lamina_interfaces::Genesis::da_any_width`]);
    /// otherwise a store of a width other than a power of two is refused.
    any_width: bool,
}

impl std::fmt::Debug for DaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaNode").field("key", &self.keypair.public()).field("store", &self.store).finish()
    }
}

fn reject(reason: &'static str, detail: impl std::fmt::Display) -> Reject {
    metrics::counter!(m::REJECTED, "reason" => reason).increment(1);
    tracing::debug!(target: TARGET, reason, %detail, "request rejected");
    Reject::bad_request(format!("{reason}: {detail}"))
}

fn unknown(data_root: &lamina_primitives::Digest) -> Reject {
    metrics::counter!(m::REJECTED, "reason" => "unknown_square").increment(1);
    Reject::unavailable(format!("no square {data_root}"))
}

fn internal(e: Error) -> Reject {
    tracing::error!(target: TARGET, error = %e, "local fault while serving");
    Reject::internal(e.to_string())
}

impl DaNode {
    /// A node with its key and store. It stores for the genesis committee where it is
    /// a member, and for the committees changed by vote it is given
    /// ([`DaNode::with_committees`]) where it is one of theirs; a node in none (one
    /// started before the vote that adds it) serves reads only.
    pub fn new(ctx: &NodeContext, store: Arc<ColumnStore>) -> Result<Self> {
        Ok(DaNode {
            keypair: ctx.keypair.clone(),
            genesis: ctx.genesis.da(),
            committees: DaCommittees::default(),
            store,
            health: ctx.health.clone(),
            nodes: ctx.genesis.all_nodes().map(|n| n.key).collect(),
            client_quota: crate::Config::default().client_quota_bytes,
            clients: ctx.genesis.clients.iter().map(|c| c.key).collect(),
            access: ctx.access.clone(),
            any_width: ctx.genesis.da_any_width,
        })
    }

    /// Stores for `committees` too (shared: later changes apply).
    pub fn with_committees(mut self, committees: DaCommittees) -> Self {
        self.committees = committees;
        self
    }

    /// Sets the bytes a client key may hold here ([`crate::Config::client_quota_bytes`]).
    pub fn with_client_quota(mut self, bytes: u64) -> Self {
        self.client_quota = bytes;
        self
    }

    /// Verifies and stores columns for `peer`, as the member of `committee` it is; signs
    /// `committee`'s attestation once all columns assigned to it there are held.
    fn store(&self, peer: NodeId, req: StoreRequest, committee: &DaCommittee) -> Result<StoreResponse, Reject> {
        let StoreRequest { commitment, header, columns } = req;
        let Some(my_index) = committee.members.index_of(&self.keypair.public()) else {
            return Err(reject(
                "not_in_committee",
                format!(
                    "{} is not a member of the DA committee this store is for ({})",
                    self.keypair.public(),
                    committee.tag.map_or("the genesis committee".to_string(), |t| format!("committee {t}"))
                ),
            ));
        };
        // Reads are open; storing costs this node disk, so it needs a known key: a
        // genesis node, a client of the current governance epoch (genesis clients not
        // removed by vote, and those added), or one the operator allows.
        let governed = self.access.governed_clients();
        let client =
            (self.clients.contains(&peer) && !governed.removed.contains(&peer)) || governed.added.contains(&peer);
        if !self.nodes.contains(&peer) && !client && !self.access.policy().allowed_clients.contains(&peer) {
            return Err(reject(
                "not_a_writer",
                format!(
                    "key {peer} may read but not store on {}: storing needs a genesis node key, a client key of \
                     the genesis or added by governance, or one in this node's [access] allowed_clients",
                    self.keypair.public()
                ),
            ));
        }
        let roots = header.verify(&commitment.data_root).map_err(|e| reject("bad_header", e))?;
        check_width_allowed(u64::from(header.k), self.any_width).map_err(|e| reject("bad_header", e))?;
        header.check_commitment(&commitment).map_err(|e| reject("bad_commitment", e))?;
        let k = header.k as usize;
        let codec = header.codec_id().map_err(|e| reject("bad_header", e))?;
        let assignment = Assignment::new(committee.members.size(), committee.threshold, k);
        let assigned = assignment.columns_of(my_index);
        let col_len = 2 * k * SHARE_SIZE;
        // Check every column before storing any (spread over the rayon pool for wide
        // squares only: see `Parallelism::for_width`).
        let check = |col: &ColumnData| {
            if col.index as usize >= 2 * k {
                return Err(reject(
                    "bad_column",
                    format!("column {} outside the square's {} columns", col.index, 2 * k),
                ));
            }
            if !assignment.holds(my_index, col.index) {
                return Err(reject("not_assigned", format!("column {} is not assigned to this node", col.index)));
            }
            if col.bytes.len() != col_len {
                return Err(reject(
                    "bad_column",
                    format!("column {} has {} bytes, expected {col_len}", col.index, col.bytes.len()),
                ));
            }
            if axis_root(Axis::Col, &col.bytes) != header.col_roots[col.index as usize] {
                return Err(reject("bad_column", format!("column {} does not match its root", col.index)));
            }
            match is_codeword(codec, k, &col.bytes) {
                Ok(true) => Ok(()),
                Ok(false) => Err(reject("not_codeword", format!("column {} is not a codeword", col.index))),
                Err(e) => Err(reject("bad_column", e)),
            }
        };
        match Parallelism::for_width(k) {
            Parallelism::Rayon => columns.par_iter().try_for_each(check)?,
            Parallelism::Sequential => columns.iter().try_for_each(check)?,
        }
        // Validators (of the genesis or added by vote) disperse every batch: their
        // volume is bounded by consensus, not by a quota.
        let quota = (!self.nodes.contains(&peer) && !self.committees.is_validator(&peer)).then_some(self.client_quota);
        let held = match self.store.insert(&commitment, &header, roots, &columns, now_ms(), Some((peer, quota))) {
            Ok(held) => held,
            Err(e @ Error::QuotaExceeded { .. }) => {
                metrics::counter!(m::REJECTED, "reason" => "quota_exceeded").increment(1);
                tracing::info!(target: TARGET, %peer, error = %e, "store refused: client quota");
                return Err(Reject::unavailable(format!("quota_exceeded: {e}")));
            }
            Err(e) => return Err(internal(e)),
        };
        metrics::counter!(m::COLUMNS_STORED).increment(columns.len() as u64);
        metrics::gauge!(m::SQUARES).set(self.store.len() as f64);
        self.health.set_status("da_squares", self.store.len());
        let held_assigned = assigned.iter().filter(|c| held.contains(c)).count();
        let attestation = if held_assigned == assigned.len() {
            metrics::counter!(m::ATTESTATIONS).increment(1);
            self.health.set_status("da_last_attested", commitment.data_root.to_hex());
            tracing::debug!(target: TARGET, data_root = %commitment.data_root, columns = held_assigned, "attested");
            Some(self.keypair.sign(&committee.digest_for(&commitment)))
        } else {
            None
        };
        Ok(StoreResponse { assigned: assigned.len() as u32, held: held_assigned as u32, attestation })
    }

    /// Answers one request from `peer` (blocking: disk reads, hashing, fsync). [`run`]
    /// calls it from the blocking pool for every request of the protocol.
    pub fn handle(&self, peer: NodeId, req: DaRequest) -> Result<DaResponse, Reject> {
        match req {
            DaRequest::Store(s) => self.store(peer, s, &self.genesis).map(DaResponse::Stored),
            DaRequest::StoreFor(CommitteeStore { committee, store }) => {
                let Some(c) = self.committees.get(&committee) else {
                    metrics::counter!(m::REJECTED, "reason" => "unknown_committee").increment(1);
                    // Retryable: this node's governance follower may not have reached it.
                    return Err(Reject::unavailable(format!(
                        "unknown_committee: DA committee {committee} is not one this node knows (its governance \
                         follower may not have reached the vote yet)"
                    )));
                };
                self.store(peer, store, &c).map(DaResponse::Stored)
            }
            DaRequest::Header(data_root) => {
                let info = self.store.square(&data_root).ok_or_else(|| unknown(&data_root))?;
                metrics::counter!(m::SERVED, "kind" => "header").increment(1);
                Ok(DaResponse::Header((*info.header).clone()))
            }
            DaRequest::Roots(data_root) => {
                let info = self.store.square(&data_root).ok_or_else(|| unknown(&data_root))?;
                metrics::counter!(m::SERVED, "kind" => "roots").increment(1);
                Ok(DaResponse::Roots(info.roots))
            }
            DaRequest::Column(ColumnRef { data_root, index }) => {
                let col = self
                    .store
                    .with_column(&data_root, index, <[u8]>::to_vec)
                    .map_err(internal)?
                    .ok_or_else(|| Reject::unavailable(format!("column {index} of {data_root} not held")))?;
                metrics::counter!(m::SERVED, "kind" => "column").increment(1);
                Ok(DaResponse::Column(col))
            }
            DaRequest::ColumnRanges(RangesRequest { data_root, first_row, end_row, columns }) => {
                let info = self.store.square(&data_root).ok_or_else(|| unknown(&data_root))?;
                let w = 2 * info.header.k;
                if first_row >= end_row || end_row > w || columns.len() > w as usize {
                    return Err(reject("bad_request", format!("rows [{first_row}, {end_row}) of {w}")));
                }
                let per = (end_row - first_row) as usize * SHARE_SIZE + 2048;
                if per * columns.len() > MAX_RANGES_BYTES {
                    return Err(reject("bad_request", "range answer too large; ask for fewer columns"));
                }
                let mut out = Vec::new();
                for c in columns {
                    if c >= w || !info.holds(c) {
                        continue;
                    }
                    let proof = self
                        .store
                        .with_column(&data_root, c, |col| AxisRangeProof::prove(Axis::Col, col, first_row, end_row))
                        .map_err(internal)?
                        .ok_or_else(|| unknown(&data_root))?
                        .map_err(|e| reject("bad_request", e))?;
                    out.push(ColumnSlice { index: c, proof });
                }
                metrics::counter!(m::SERVED, "kind" => "ranges").increment(1);
                Ok(DaResponse::Ranges(out))
            }
            DaRequest::Disperser(data_root) => {
                metrics::counter!(m::SERVED, "kind" => "disperser").increment(1);
                Ok(DaResponse::Disperser(self.store.square(&data_root).and_then(|i| i.owner)))
            }
            DaRequest::Sample(CellRef { data_root, row, col }) => {
                let info = self.store.square(&data_root).ok_or_else(|| unknown(&data_root))?;
                let proof = self
                    .store
                    .with_column(&data_root, col, |bytes| {
                        SampleProof::from_axis(info.roots, Axis::Col, col, bytes, &info.header.col_roots, row)
                    })
                    .map_err(internal)?
                    .ok_or_else(|| Reject::unavailable(format!("column {col} of {data_root} not held")))?
                    .map_err(|e| reject("bad_request", e))?;
                metrics::counter!(m::SERVED, "kind" => "sample").increment(1);
                Ok(DaResponse::Sample(proof))
            }
        }
    }
}

/// Async adapter: requests run on the blocking pool (disk reads, hashing, fsync).
#[derive(Clone, Debug)]
struct Serve(Arc<DaNode>);

impl Handler<DaProtocol> for Serve {
    async fn request(&self, peer: NodeId, request: DaRequest) -> Result<DaResponse, Reject> {
        let node = self.0.clone();
        tokio::task::spawn_blocking(move || node.handle(peer, request))
            .await
            .map_err(|e| Reject::internal(format!("handler task failed: {e}")))?
    }
}

/// The keys a DA node always admits: every genesis node and genesis client (validators
/// disperse, execution nodes retrieve, clients submit blobs and sample); DA nodes dial
/// no one here (a node given a [`ReadHandle`] dials the other DA nodes). Others may connect as the access policy says (open by default: reads are
/// public; storing needs one of these keys or an `allowed_clients` one).
pub fn accepted_peers(ctx: &NodeContext) -> PeerSet {
    ctx.client_peers()
}

/// Where a DA node that reads the DA layer itself (its governance follower) gets its
/// handle: the node's own `lamina/da` registration, whose requests go to the other DA
/// nodes on the same connections (no second endpoint, no second port). A node given
/// one also dials the other DA nodes ([`run_following`]).
pub type ReadHandle = tokio::sync::oneshot::Sender<lamina_net::Network<DaProtocol>>;

/// Runs a DA storage node until `shutdown`: binds the endpoint (genesis address unless
/// `config.net` names a port) and calls [`run_on`].
pub async fn run(ctx: NodeContext, config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.validate()?;
    let mut net = config.net.clone();
    if net.listen.port() == 0
        && let Some(addr) = ctx.listen_addr()
    {
        net.listen = addr;
    }
    let endpoint = Endpoint::bind(&ctx.keypair, net)?;
    run_on(endpoint, ctx, config, shutdown).await
}

/// Runs a DA storage node on an endpoint the caller bound (and may serve other
/// protocols on) until `shutdown`: opens the column store under
/// `ctx.data_dir/columns`, serves [`DaProtocol`], prunes every `prune_interval`. On
/// shutdown: stop intake and drain (endpoint shutdown), then close the store.
///
/// This node follows no log, so every square is kept for the wall-clock
/// `retention_secs`; [`run_following`] is the node that prunes by log heights.
pub async fn run_on(
    endpoint: Endpoint,
    ctx: NodeContext,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_inner(endpoint, ctx, config, None::<InMemoryLog>, None, DaCommittees::default(), shutdown).await
}

/// [`run_on`] for a node that follows the ordered log `log` (the binary gives it the
/// consensus layer's verifying QUIC client): at each prune tick it reads the blocks
/// finalized since the last tick, records the height that ordered each square it
/// holds, and drops squares ordered more than `retain_heights` below the followed tip.
/// Squares no block carried keep the wall-clock `retention_secs`. Refuses to start
/// with a `retain_heights` under [`min_retain_heights`] for this genesis (settlement's
/// challenge window plus a margin).
///
/// With `reads`, the node also dials the other DA nodes and sends its registration's
/// handle there once it serves, for the process's own DA reads ([`ReadHandle`]). It
/// stores for the genesis committee and for `committees` (its governance follower's).
pub async fn run_following<L: OrderedLog>(
    endpoint: Endpoint,
    ctx: NodeContext,
    config: Config,
    log: L,
    reads: Option<ReadHandle>,
    committees: DaCommittees,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let floor = min_retain_heights(&ctx.genesis);
    if config.retain_heights < floor {
        endpoint.shutdown().await;
        return Err(Error::Config(format!(
            "retain_heights = {} is under {floor}: squares must outlive settlement's challenge window ({} heights) \
             by a margin, so that every challenged step's data can still be fetched",
            config.retain_heights, ctx.genesis.settlement.challenge_window
        )));
    }
    // Governance may raise the window up to a quarter of the anchor window.
    let governable = governable_retain_heights(&ctx.genesis);
    if config.retain_heights < governable {
        tracing::warn!(
            target: "lamina::da",
            retain_heights = config.retain_heights,
            needed = governable,
            "governance may raise settlement's challenge window to a quarter of the anchor window; squares would then \
             need {governable} heights of retention"
        );
    }
    run_inner(endpoint, ctx, config, Some(log), reads, committees, shutdown).await
}

/// [`min_retain_heights`] for the largest challenge window governance may set (a
/// quarter of the anchor window).
pub fn governable_retain_heights(genesis: &lamina_interfaces::Genesis) -> u64 {
    let w = (genesis.settlement.anchor_window / 4).max(genesis.settlement.challenge_window);
    w.saturating_add(w.max(1_000))
}

/// The least `retain_heights` a DA node following the log accepts: settlement's
/// challenge window `W` plus a margin of `max(W, 1000)` heights (a challenge filed at
/// the window's last height is ordered and judged after it, and a lagging verifier or
/// executor still fetches the step's data).
pub fn min_retain_heights(genesis: &lamina_interfaces::Genesis) -> u64 {
    let w = genesis.settlement.challenge_window;
    w.saturating_add(w.max(1_000))
}

async fn run_inner<L: OrderedLog>(
    endpoint: Endpoint,
    ctx: NodeContext,
    config: Config,
    log: Option<L>,
    reads: Option<ReadHandle>,
    committees: DaCommittees,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if let Err(e) = config.validate() {
        endpoint.shutdown().await;
        return Err(e);
    }
    let result = serve(&endpoint, &ctx, &config, log.as_ref(), reads, committees, &shutdown).await;
    ctx.health.set_check("endpoint", false, "shutting down");
    endpoint.shutdown().await;
    tracing::info!(target: TARGET, "DA node stopped");
    result
}

/// Most blocks asked for in one log read while following.
const FOLLOW_READ: usize = 512;

/// Reads the log from the store's followed height to the tip and records which held
/// squares each block ordered. Cancel-safe: what was recorded stays recorded, and
/// re-reading a height is harmless.
async fn follow<L: OrderedLog>(
    log: &L,
    store: &Arc<ColumnStore>,
    health: &lamina_interfaces::Health,
) -> Result<(), Error> {
    let log_err = |e: LogError| Error::Log(e.to_string());
    let tip = log.tip().await.map_err(log_err)?.0;
    let mut from = store.followed() + 1;
    while from <= tip {
        let blocks = match log.read(Height(from), FOLLOW_READ).await {
            Ok(b) => b,
            Err(LogError::Pruned { oldest, .. }) if oldest.0 > from => {
                tracing::warn!(target: TARGET, from, oldest = oldest.0, "log pruned below the followed height; squares ordered in the gap keep the wall-clock retention");
                from = oldest.0;
                continue;
            }
            Err(e) => return Err(log_err(e)),
        };
        let Some(last) = blocks.last().map(|b| b.height().0) else { break };
        let ordered: Vec<(u64, Digest)> = blocks
            .iter()
            .flat_map(|b| b.block.batches.iter().map(move |c| (b.height().0, c.commitment.data_root)))
            .collect();
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.mark_ordered(last, &ordered)).await.map_err(task_err)??;
        metrics::gauge!(m::FOLLOWED).set(last as f64);
        health.set_status("followed_height", last);
        from = last + 1;
    }
    Ok(())
}

async fn serve<L: OrderedLog>(
    endpoint: &Endpoint,
    ctx: &NodeContext,
    config: &Config,
    log: Option<&L>,
    reads: Option<ReadHandle>,
    committees: DaCommittees,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let dir = ctx.data_dir.join("columns");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    let store_config = config.store_config();
    let (store, report) =
        tokio::task::spawn_blocking(move || ColumnStore::open(&dir, store_config)).await.map_err(task_err)??;
    tracing::info!(target: TARGET, squares = report.squares, columns = report.columns, orphans = report.orphans, followed = report.followed, "column store open");
    metrics::gauge!(m::FOLLOWED).set(report.followed as f64);
    ctx.health.set_status("followed_height", report.followed);
    let store = Arc::new(store);
    ctx.health.set_check("store", true, format!("{} squares", report.squares));
    metrics::gauge!(m::SQUARES).set(store.len() as f64);
    let node = Arc::new(
        DaNode::new(ctx, store.clone())?.with_committees(committees).with_client_quota(config.client_quota_bytes),
    );
    let mut peers = accepted_peers(ctx);
    if reads.is_some() {
        let others = PeerSet::dial_entries(&ctx.genesis.da_nodes).without(&ctx.node_id());
        peers = peers.union(&others);
    }
    let net = ctx.access.register::<DaProtocol, _>(endpoint, Serve(node), peers, protocol_config())?;
    if let Some(reads) = reads {
        // The reader may be gone already (its node stopping): nothing to hand over then.
        let _ = reads.send(net);
    }
    endpoint.report_to(ctx.health.clone(), Duration::from_secs(2));
    ctx.health.set_check("endpoint", true, format!("serving lamina/da/1..2 on {}", endpoint.local_addr()));
    tracing::info!(target: TARGET, addr = %endpoint.local_addr(), "DA node serving");

    let mut tick = tokio::time::interval(config.prune_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut follow_failed = false;
    // Every insert was synced before it was acknowledged; dropping the store's last
    // reference (when the endpoint's handlers go) closes the log.
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            _ = tick.tick() => {
                if let Some(log) = log {
                    tokio::select! {
                        () = shutdown.cancelled() => break Ok(()),
                        r = follow(log, &store, &ctx.health) => match r {
                            Ok(()) => follow_failed = false,
                            // Once (validators still starting) is routine; twice in a row is not.
                            Err(e) if !follow_failed => {
                                follow_failed = true;
                                tracing::debug!(target: TARGET, error = %e, "cannot follow the log yet");
                            }
                            Err(e) => tracing::warn!(target: TARGET, error = %e, followed = store.followed(), "cannot follow the log; squares ordered since are kept until it can"),
                        },
                    }
                }
                let cutoff = now_ms().saturating_sub(config.retention.as_millis() as u64);
                let below = store.followed().saturating_sub(config.retain_heights);
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.prune(cutoff, below)).await.map_err(task_err) {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => {
                        metrics::counter!(m::PRUNED).increment(n as u64);
                        metrics::gauge!(m::SQUARES).set(store.len() as f64);
                        tracing::info!(target: TARGET, squares = n, "pruned by retention");
                    }
                    Ok(Err(e)) | Err(e) => break Err(e),
                }
            }
        }
    }
}
