//! State sync: a new execution node (empty data directory) fetches the newest snapshot
//! of its chain from the chain's other execution nodes over QUIC, verifies it, and
//! starts from its height instead of re-executing the whole log.
//!
//! Every execution node serves its snapshot directory ([`crate::snapshot`]) with
//! [`SnapshotProtocol`] (`lamina/execution-snapshot/1`): the newest manifest, then any
//! file of a snapshot it still holds. Files are served as they are on disk. The
//! fetching side checks every byte against a manifest, but **which state it adopts is a
//! matter of trust**: the peers are the chain's execution nodes listed in the genesis,
//! and [`Trust::quorum`] of them (`state_sync_quorum`, 1 by default) must offer the
//! identical state. Checking the snapshot's root against a claim finalized on
//! settlement is not done yet.
//!
//! 1. it asks every peer for its newest manifest, keeps those of its genesis and chain
//!    that are not above the log tip and within bounds, and picks the state offered by
//!    the most peers (same height, root, keys and chunks), the highest among equals;
//! 2. it fetches each chunk from the peers that offered that same state, in turn,
//!    checking each against the manifest's digest and size. A chunk that does not
//!    match is rejected (logged with the peer) and fetched from the next peer; keys
//!    must increase across chunks;
//! 3. it fetches the node file (bridge index; the peer's claim chain, which the node
//!    does not continue: a node started from another node's snapshot makes no claims)
//!    from the peer whose manifest it picked, writes the snapshot like a local one
//!    (`<name>.tmp`, fsync), loads it whole (tree rebuilt, root checked against the
//!    manifest) and only then renames it into place.
//!
//! If no peer offers a usable snapshot, too few agree, or its files cannot all be
//! fetched (after asking again up to three times: a peer may prune a snapshot
//! mid-sync), the node falls back to replaying the log from genesis (logged). The `state_sync` readiness
//! check says which phase it is in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lamina_interfaces::Health;
use lamina_net::{Empty, Handler, Network, Protocol, ProtocolId, Reject, RejectKind};
use lamina_primitives::{ChainId, Digest, Height, NodeId};

use crate::Error;
use crate::snapshot::{self, FileInfo, Manifest};

/// Largest file served or accepted (a manifest, a chunk, a node file).
pub const MAX_FILE: usize = 40 << 20;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to connect before it is skipped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which file of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum FileId {
    /// The manifest.
    Manifest,
    /// Chunk `i`.
    Chunk(u32),
    /// The node file.
    Node,
}

/// A request of [`SnapshotProtocol`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SnapshotRequest {
    /// The newest snapshot's manifest.
    Latest,
    /// A file of the snapshot at a height.
    File(Height, FileId),
}

impl lamina_primitives::Wire for SnapshotRequest {
    const NAME: &'static str = "ExecSnapshotRequest";
    const MAX_SIZE: usize = 64;
}

/// An answer of [`SnapshotProtocol`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SnapshotResponse {
    /// The file's bytes (for `Latest`: the newest manifest's).
    File(Vec<u8>),
    /// No such snapshot or file here (never written, or pruned meanwhile).
    Missing,
}

impl lamina_primitives::Wire for SnapshotResponse {
    const NAME: &'static str = "ExecSnapshotResponse";
    const MAX_SIZE: usize = MAX_FILE + 1024;
}

/// The snapshot protocol (see the module docs).
#[derive(Debug)]
pub struct SnapshotProtocol;

impl Protocol for SnapshotProtocol {
    const ID: ProtocolId = ProtocolId::new("execution-snapshot", 1);
    type Request = SnapshotRequest;
    type Response = SnapshotResponse;
    type Message = Empty;
}

/// Serves the snapshots under a directory.
#[derive(Clone, Debug)]
pub struct SnapshotServer {
    /// `<data>/snapshots`.
    pub dir: PathBuf,
}

fn read_small(path: &Path) -> Option<Vec<u8>> {
    let len = std::fs::metadata(path).ok()?.len();
    if len > MAX_FILE as u64 {
        tracing::warn!(target: "lamina::execution", path = %path.display(), len, "snapshot file too large to serve");
        return None;
    }
    std::fs::read(path).ok()
}

impl SnapshotServer {
    fn answer(&self, req: &SnapshotRequest) -> SnapshotResponse {
        let file = match req {
            SnapshotRequest::Latest => {
                snapshot::list(&self.dir).into_iter().next().and_then(|(_, d)| read_small(&d.join("manifest")))
            }
            SnapshotRequest::File(h, id) => {
                let dir = self.dir.join(snapshot::dir_name(*h));
                let name = match id {
                    FileId::Manifest => "manifest".to_string(),
                    FileId::Chunk(i) => snapshot::chunk_name(*i as usize),
                    FileId::Node => "node".to_string(),
                };
                read_small(&dir.join(name))
            }
        };
        file.map_or(SnapshotResponse::Missing, SnapshotResponse::File)
    }
}

impl Handler<SnapshotProtocol> for SnapshotServer {
    async fn request(&self, _peer: NodeId, request: SnapshotRequest) -> Result<SnapshotResponse, Reject> {
        let server = self.clone();
        tokio::task::spawn_blocking(move || server.answer(&request))
            .await
            .map_err(|e| Reject::new(RejectKind::Internal, e.to_string()))
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// A snapshot was fetched and installed: its manifest, and how many chunks were
    /// rejected (and fetched again from another peer).
    Installed {
        /// The manifest.
        manifest: Box<Manifest>,
        /// Chunks rejected on the way.
        rejected: usize,
    },
    /// No peer offered a usable snapshot, or its files could not all be fetched: the
    /// node replays the log from genesis. The reason.
    Fallback(String),
}

async fn ask(net: &Network<SnapshotProtocol>, peer: &NodeId, req: &SnapshotRequest) -> Option<Vec<u8>> {
    if !net.is_connected(peer) && net.wait_connected(peer, CONNECT_TIMEOUT).await.is_err() {
        return None;
    }
    match net.request_with_timeout(peer, req, REQUEST_TIMEOUT).await {
        Ok(SnapshotResponse::File(b)) => Some(b),
        Ok(SnapshotResponse::Missing) => None,
        Err(e) => {
            tracing::warn!(target: "lamina::execution", %peer, error = %e, "snapshot request failed");
            None
        }
    }
}

/// Same state: same height, root, keys and chunks (node files differ between peers).
fn same_state(a: &Manifest, b: &Manifest) -> bool {
    (a.height, a.state_root, a.keys, &a.chunks) == (b.height, b.state_root, b.keys, &b.chunks)
}

/// What a sync may accept.
#[derive(Clone, Copy, Debug)]
pub struct Trust {
    /// Peers that must offer the identical state (height, root, keys, chunks) before it
    /// is fetched (at least 1).
    pub quorum: usize,
    /// Highest height a snapshot may have (the log tip when known): a manifest beyond
    /// it is a lie.
    pub max_height: Option<Height>,
}

/// Fetches a snapshot of `chain` from `peers` into `dir` (see the module docs): the state
/// offered by the most peers (at least `trust.quorum`; the highest height among equals),
/// verified whole before it is installed. A file that no peer serves any more (it was
/// pruned meanwhile) makes it ask again, up to three times. `health`'s `state_sync`
/// check follows the phases.
pub async fn sync(
    net: &Network<SnapshotProtocol>,
    peers: &[NodeId],
    dir: &Path,
    genesis: &Digest,
    chain: ChainId,
    trust: Trust,
    health: &Health,
) -> Result<Synced, Error> {
    let mut why = String::new();
    for attempt in 0..3 {
        match sync_once(net, peers, dir, genesis, chain, trust, health).await? {
            Ok(s) => return Ok(s),
            Err((reason, retry)) => {
                tracing::warn!(target: "lamina::execution", attempt, reason = %reason, "state sync attempt failed");
                why = reason;
                if !retry {
                    break;
                }
            }
        }
    }
    health.set_check("state_sync", true, format!("{why}: replaying the log"));
    Ok(Synced::Fallback(why))
}

/// One attempt: `Ok(Err((reason, worth retrying)))` when nothing was installed.
#[allow(clippy::type_complexity)]
async fn sync_once(
    net: &Network<SnapshotProtocol>,
    peers: &[NodeId],
    dir: &Path,
    genesis: &Digest,
    chain: ChainId,
    trust: Trust,
    health: &Health,
) -> Result<Result<Synced, (String, bool)>, Error> {
    health.set_check("state_sync", false, "asking peers for their newest snapshot");
    let mut offers: Vec<(NodeId, Manifest)> = Vec::new();
    for p in peers {
        let Some(bytes) = ask(net, p, &SnapshotRequest::Latest).await else { continue };
        match lamina_primitives::decode::<Manifest>(&bytes) {
            Ok(m) if m.genesis != *genesis || m.chain != chain || m.version != snapshot::SNAPSHOT_VERSION => {
                tracing::warn!(target: "lamina::execution", peer = %p, chain = %m.chain, version = m.version, "peer offers a snapshot of another chain, genesis or format; ignored");
            }
            Ok(m) if trust.max_height.is_some_and(|t| m.height > t) => {
                tracing::warn!(target: "lamina::execution", peer = %p, height = %m.height, tip = ?trust.max_height, "peer offers a snapshot above the log tip; ignored");
            }
            Ok(m) => match snapshot::check_manifest(&m) {
                Ok(()) => offers.push((*p, m)),
                Err(e) => {
                    tracing::warn!(target: "lamina::execution", peer = %p, error = %e, "peer's manifest is out of bounds; ignored")
                }
            },
            Err(e) => {
                tracing::warn!(target: "lamina::execution", peer = %p, error = %e, "peer's manifest does not decode; ignored")
            }
        }
    }
    // The state offered by the most peers; among equals, the highest.
    let support = |m: &Manifest| offers.iter().filter(|(_, o)| same_state(m, o)).count();
    let Some((chosen_peer, chosen)) =
        offers.iter().max_by_key(|(_, m)| (support(m), m.height)).map(|(p, m)| (*p, m.clone()))
    else {
        return Ok(Err((format!("no snapshot offered by {} peer(s)", peers.len()), false)));
    };
    let sources: Vec<NodeId> = offers.iter().filter(|(_, m)| same_state(m, &chosen)).map(|(p, _)| *p).collect();
    if sources.len() < trust.quorum.max(1) {
        return Ok(Err((
            format!(
                "the best snapshot (height {}) is offered by {} peer(s), fewer than the quorum of {}",
                chosen.height,
                sources.len(),
                trust.quorum
            ),
            false,
        )));
    }
    tracing::info!(target: "lamina::execution", %chain, height = %chosen.height, keys = chosen.keys, chunks = chosen.chunks.len(), peers = sources.len(), "state sync: fetching snapshot");

    let tmp = dir.join(format!("{}.tmp", snapshot::dir_name(chosen.height)));
    let io = |e: std::io::Error| Error::BadSnapshot(format!("writing {}: {e}", tmp.display()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io)?;
    }
    std::fs::create_dir_all(&tmp).map_err(io)?;
    let give_up = |why: String| {
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(Err((why, true)))
    };
    let mut rejected = 0;
    let mut after = (None, None);
    let n = chosen.chunks.len();
    let bytes_total: u64 = chosen.chunks.iter().map(|c| c.bytes).sum();
    let mut bytes_done = 0u64;
    for (i, info) in chosen.chunks.iter().enumerate() {
        health.set_check("state_sync", false, format!("height {}: chunk {}/{n}", chosen.height, i + 1));
        health.set_status(
            "state_sync",
            Progress { height: chosen.height.0, chunks_done: i, chunks: n, bytes_done, bytes: bytes_total },
        );
        let mut got = None;
        for k in 0..sources.len() {
            let peer = &sources[(i + k) % sources.len()];
            let Some(bytes) = ask(net, peer, &SnapshotRequest::File(chosen.height, FileId::Chunk(i as u32))).await
            else {
                continue;
            };
            let mut next = after;
            match snapshot::check_chunk(info, i, &bytes, &mut next) {
                Ok(_) => {
                    after = next;
                    got = Some(bytes);
                    break;
                }
                Err(e) => {
                    rejected += 1;
                    metrics::counter!("lamina_execution_sync_rejected_chunks_total").increment(1);
                    tracing::warn!(target: "lamina::execution", %peer, chunk = i, error = %e, "state sync: chunk rejected; asking another peer");
                }
            }
        }
        let Some(bytes) = got else {
            return give_up(format!(
                "chunk {i} of the snapshot at {} could not be fetched from any peer",
                chosen.height
            ));
        };
        snapshot::write_file(&tmp.join(snapshot::chunk_name(i)), &bytes).map_err(io)?;
        bytes_done += bytes.len() as u64;
    }
    health.set_status(
        "state_sync",
        Progress { height: chosen.height.0, chunks_done: n, chunks: n, bytes_done, bytes: bytes_total },
    );
    let node = ask(net, &chosen_peer, &SnapshotRequest::File(chosen.height, FileId::Node)).await;
    let Some(node) = node.filter(|b| check(&chosen.node, b)) else {
        return give_up(format!("the node file of the snapshot at {} could not be fetched", chosen.height));
    };
    snapshot::write_file(&tmp.join("node"), &node).map_err(io)?;
    let manifest_bytes = lamina_primitives::encode(&chosen).map_err(|e| Error::Internal(e.to_string()))?;
    snapshot::write_file(&tmp.join("manifest"), &manifest_bytes).map_err(io)?;
    snapshot::sync_dir(&tmp).map_err(io)?;
    // The whole snapshot (tree rebuilt, root checked) before it can be the node's newest:
    // a bad one is never installed, served or kept.
    health.set_check("state_sync", false, format!("height {}: verifying the state root", chosen.height));
    let verify = {
        let (tmp, genesis) = (tmp.clone(), *genesis);
        tokio::task::spawn_blocking(move || snapshot::load(&tmp, &genesis, chain).map(|_| ()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    };
    if let Err(e) = verify {
        metrics::counter!("lamina_execution_sync_rejected_snapshots_total").increment(1);
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(Err((format!("the snapshot at {} does not verify: {e}", chosen.height), false)));
    }
    let to = dir.join(snapshot::dir_name(chosen.height));
    std::fs::rename(&tmp, &to).map_err(io)?;
    snapshot::sync_dir(dir).map_err(io)?;
    health.set_check("state_sync", true, format!("synced from a snapshot at height {}", chosen.height));
    Ok(Ok(Synced::Installed { manifest: Box::new(chosen), rejected }))
}

/// The `state_sync` field of the node's `/status` while chunks are fetched (what
/// `lamina execution sync-status` draws its bar from).
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Progress {
    /// Height of the snapshot being fetched.
    height: u64,
    /// Chunks fetched and checked.
    chunks_done: usize,
    /// Chunks in all.
    chunks: usize,
    /// Bytes of the chunks fetched.
    bytes_done: u64,
    /// Bytes of all chunks.
    bytes: u64,
}

fn check(info: &FileInfo, bytes: &[u8]) -> bool {
    info.check("node", bytes).is_ok()
}

/// True when `data_dir` holds no execution data yet (no records, no index, no
/// snapshot): a node that may state-sync.
pub fn is_empty(data_dir: &Path) -> bool {
    !data_dir.join("blocks").exists()
        && !data_dir.join("index.redb").exists()
        && snapshot::list(&data_dir.join("snapshots")).is_empty()
}
