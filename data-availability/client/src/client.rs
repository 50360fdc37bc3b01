//! The DA client over QUIC: the disperser (`submit`), retrieval (`get_namespace`) and the
//! light sampler, implementing [`DataAvailability`].
//!
//! * **Disperse**: lay out, extend and commit the square (rayon, recycled buffer), send
//!   each DA node its assigned columns ([`Assignment`]) with the header, collect
//!   attestations, check each signature, and return once the threshold is reached. The
//!   remaining nodes keep receiving their columns in the background.
//! * **Retrieve**: fetch and verify the header (any node), find the namespace's rows
//!   from the verified table (absence is proven by the table itself), fetch those rows
//!   from at least `k` columns — original columns first, then any other columns when
//!   nodes are down or lie — each slice checked against its column root. Rows missing
//!   original cells are decoded; **every row used is re-encoded and checked against its
//!   row root**. A row that does not match is decided by the canonical rule (its first
//!   `k` cells, fetched as sample proofs): either those extend to the root (the row is
//!   used) or the square is wrongly encoded and answered with a [`BadEncodingProof`]
//!   built from exactly those cells, so every honest caller reaches the same verdict. A
//!   node whose answer fails verification is blamed ([`DaClient::misbehaving`], metrics) and ignored for the rest
//!   of the operation.
//! * **Sample**: fetch the roots, draw cells ([`SamplingSession`]), fetch each from a node
//!   holding its column, verify against the data root, report the confidence.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lamina_da_core::proof::namespace_rows;
use lamina_da_core::sampling::SamplingOutcome;
use lamina_da_core::square::check_width_allowed;
use lamina_da_core::tree::{Axis, axis_root};
use lamina_da_core::{
    Assignment, BadEncodingProof, CommittedSquare, DaHeader, OriginalSquare, Parallelism, SHARE_SIZE, SampleProof,
    SamplingSession, SquareRoots, Widths, extend_and_commit_into,
};
use lamina_interfaces::{Blob, DaError, DataAvailability, Genesis, NodeEntry};
use lamina_net::{Endpoint, EndpointConfig, NetError, Network, PeerSet};
use lamina_primitives::{
    AvailabilityCertificate, DaCommittee, DataCommitment, Digest, Keypair, Namespace, NodeId, QuorumCertificate,
    Signature, sig,
};
use parking_lot::Mutex;
use tokio::task::JoinSet;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::protocol::{
    CellRef, ColumnData, CommitteeStore, DaProtocol, DaRequest, DaResponse, MAX_RANGES_BYTES, MAX_STORE_BYTES,
    RangesRequest, StoreRequest, StoreResponse, protocol_config,
};

const TARGET: &str = "lamina::da";

/// Why a retrieval failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// Not enough honest answers, unknown square, transport.
    #[error(transparent)]
    Da(#[from] DaError),
    /// The square is wrongly encoded; here is the proof (for settlement).
    #[error("row {} of the square is wrongly encoded (fraud proof attached)", .0.index)]
    BadEncoding(Box<BadEncodingProof>),
}

/// One cell drawn by [`DaClient::sample_cells`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSample {
    /// Row in the extended square.
    pub row: u32,
    /// Column in the extended square.
    pub col: u32,
    /// The node whose proof of the cell verified against the data root (`None`: no node
    /// served a valid proof).
    pub served_by: Option<NodeId>,
}

/// A verified header and its roots.
#[derive(Debug)]
struct Verified {
    header: DaHeader,
    roots: SquareRoots,
}

/// The DA committees a client knows: the first is the one it disperses to, and a square
/// is looked for under each in list order (a committee changed by vote keeps serving
/// the squares it stored until they are pruned).
#[derive(Debug)]
struct Committees {
    list: Vec<DaCommittee>,
}

impl Committees {
    fn dispersal(&self) -> &DaCommittee {
        &self.list[0]
    }

    /// Every node of every committee, in list order, each once.
    fn nodes(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for n in self.list.iter().flat_map(|c| c.members.members.iter()) {
            if !out.contains(n) {
                out.push(*n);
            }
        }
        out
    }

    /// The nodes that store column `c` of a width-`k` square under some committee.
    fn owners(&self, k: usize, c: u32) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for committee in &self.list {
            let a = Assignment::new(committee.members.size(), committee.threshold, k);
            for i in a.nodes_of(c) {
                let n = committee.members.members[i];
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}

/// The QUIC DA client (see the module docs).
pub struct DaClient {
    net: Network<DaProtocol>,
    /// The committees ([`DaClient::set_committees`]); the genesis one until then.
    committees: parking_lot::RwLock<Arc<Committees>>,
    /// Whether this client registered the protocol itself (then it dials the nodes of
    /// the committees it knows); a DA node's own registration is the node's to manage.
    owns_registration: bool,
    /// This client's own key: a DA node's own process (its governance follower) reading
    /// through its registration is never served by itself, so reads skip it at once.
    me: NodeId,
    config: ClientConfig,
    headers: Mutex<VecDeque<(Digest, Arc<Verified>)>>,
    blamed: Mutex<BTreeMap<NodeId, u64>>,
    buffer: Mutex<Option<Vec<u8>>>,
    /// The genesis allows squares of any width ([`Genesis::da_any_width`]): dispersals
    /// then take the width their committee stores in the fewest cells, else the next
    /// power of two.
    any_width: bool,
}

impl std::fmt::Debug for DaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaClient").field("committees", &self.committees.read().list.len()).finish()
    }
}

fn transport(e: NetError) -> DaError {
    DaError::Transport(e.to_string())
}

impl DaClient {
    /// Registers the DA protocol on `endpoint` (dialing the genesis DA nodes) and
    /// returns the client. The endpoint's key must be a genesis node (DA nodes accept
    /// every genesis key and nothing else).
    pub fn register(endpoint: &Endpoint, genesis: &Genesis, config: ClientConfig) -> Result<Self> {
        config.validate()?;
        let peers = PeerSet::dial_entries(&genesis.da_nodes);
        let net = endpoint.register_client::<DaProtocol>(peers, protocol_config())?;
        let mut client = Self::over(net, endpoint.node_id(), genesis, config)?;
        client.owns_registration = true;
        Ok(client)
    }

    /// A client over a registration of the DA protocol that already exists: a DA node's
    /// own (`lamina_da_service::ReadHandle`), which also serves requests. `me` is the
    /// registering endpoint's key: reads never ask it (a node does not connect to
    /// itself), so they need enough of the other DA nodes.
    pub fn over(net: Network<DaProtocol>, me: NodeId, genesis: &Genesis, config: ClientConfig) -> Result<Self> {
        config.validate()?;
        Ok(DaClient {
            net,
            committees: parking_lot::RwLock::new(Arc::new(Committees { list: vec![genesis.da()] })),
            owns_registration: false,
            me,
            config,
            headers: Mutex::new(VecDeque::new()),
            blamed: Mutex::new(BTreeMap::new()),
            buffer: Mutex::new(None),
            any_width: genesis.da_any_width,
        })
    }

    /// Binds an endpoint of its own on `listen` with `keypair` and registers a client on
    /// it (for tools such as `lamina da sample`, and tests).
    pub fn bind(
        keypair: &Keypair,
        genesis: &Genesis,
        listen: SocketAddr,
        config: ClientConfig,
    ) -> Result<(Self, Endpoint)> {
        let endpoint = Endpoint::bind(keypair, EndpointConfig::new(listen))?;
        let client = Self::register(&endpoint, genesis, config)?;
        Ok((client, endpoint))
    }

    /// Replaces the committees this client knows: it disperses to the first and looks
    /// for a square under each in list order (a node's governance follower gives the
    /// committee of its next heights first, then the later ones known, then the older
    /// ones, newest first: `lamina-node`'s `governed::da_committees`). `nodes` are the addresses of
    /// their members: a client that registered the protocol itself dials exactly them;
    /// one over a DA node's registration adds them to the node's peers. An empty list
    /// is ignored.
    pub fn set_committees(&self, committees: Vec<DaCommittee>, nodes: &[NodeEntry]) {
        if committees.is_empty() {
            return;
        }
        {
            let mut current = self.committees.write();
            if current.list == committees {
                return;
            }
            *current = Arc::new(Committees { list: committees });
        }
        let dial = PeerSet::dial_entries(nodes);
        if self.owns_registration {
            self.net.set_peers(dial);
        } else {
            self.net.set_peers(self.net.peers().union(&dial));
        }
    }

    /// The committees this client knows, in list order (the first disperses).
    pub fn committees(&self) -> Vec<DaCommittee> {
        self.committees.read().list.clone()
    }

    fn view(&self) -> Arc<Committees> {
        self.committees.read().clone()
    }

    /// Waits until at least `n` DA nodes are connected (or `timeout`).
    pub async fn wait_for_nodes(&self, n: usize, timeout: Duration) -> Result<()> {
        self.net.wait_for_peers(n, timeout).await?;
        Ok(())
    }

    /// Nodes blamed so far for answers that failed verification, with counts.
    pub fn misbehaving(&self) -> BTreeMap<NodeId, u64> {
        self.blamed.lock().clone()
    }

    fn blame(&self, node: &NodeId, what: &str, reason: impl std::fmt::Display) {
        *self.blamed.lock().entry(*node).or_default() += 1;
        metrics::counter!(m::MISBEHAVING, "node" => node.to_hex()[..16].to_string()).increment(1);
        tracing::warn!(target: TARGET, node = %node, what, %reason, "DA node served invalid data");
    }

    async fn ask(&self, node: &NodeId, req: &DaRequest) -> Result<DaResponse, NetError> {
        ask(&self.net, &self.config, node, req).await
    }

    // ------------------------------------------------------------------ dispersal

    /// Builds the square for `blobs`, disperses it, and returns the certificate.
    pub async fn disperse(&self, blobs: Vec<Blob>) -> Result<AvailabilityCertificate, DaError> {
        let started = Instant::now();
        let out = self.disperse_inner(blobs).await;
        let outcome = if out.is_ok() { "certified" } else { "failed" };
        metrics::counter!(m::DISPERSALS, "outcome" => outcome).increment(1);
        metrics::histogram!(m::DISPERSE_SECONDS).record(started.elapsed().as_secs_f64());
        out
    }

    async fn disperse_inner(&self, blobs: Vec<Blob>) -> Result<AvailabilityCertificate, DaError> {
        let codec = self.config.codec_id();
        let buf = self.buffer.lock().take().unwrap_or_default();
        let faulty = self.config.faulty_encoding;
        let view = self.view();
        let committee = view.dispersal();
        let widths = if self.any_width {
            Widths::LeastStored { nodes: committee.members.members.len(), threshold: committee.threshold }
        } else {
            Widths::PowersOfTwo
        };
        let square = tokio::task::spawn_blocking(move || -> Result<CommittedSquare, lamina_da_core::Error> {
            let ods = OriginalSquare::from_blobs_with(&blobs, codec, widths)?;
            let square = extend_and_commit_into(&ods, codec, Parallelism::for_width(ods.k()), buf)?;
            if faulty {
                return lamina_da_core::fraud::corrupt_row_encoding(square, 0);
            }
            Ok(square)
        })
        .await
        .map_err(|e| DaError::Transport(format!("encoder task failed: {e}")))?
        .map_err(lamina_da_core::inprocess::to_da_error)?;
        let square = Arc::new(square);
        let commitment = square.commitment();
        let (nodes, threshold) = (&committee.members.members, committee.threshold);
        let digest = committee.digest_for(&commitment);
        let k = square.eds().k();
        let assignment = Assignment::new(nodes.len(), threshold, k);

        let mut tasks = JoinSet::new();
        for (i, node) in nodes.iter().enumerate() {
            let (net, config, square, commitment) =
                (self.net.clone(), self.config.clone(), square.clone(), commitment.clone());
            let (node, columns, tag) = (*node, assignment.columns_of(i), committee.tag);
            tasks.spawn(async move {
                let r = disperse_to(&net, &config, &node, &square, &commitment, &columns, tag).await;
                (i, node, r)
            });
        }
        let mut votes: Vec<(usize, Signature)> = Vec::new();
        let mut failures = Vec::new();
        let mut refusals = Vec::new();
        let deadline = tokio::time::sleep(self.config.disperse_timeout);
        tokio::pin!(deadline);
        while votes.len() < threshold {
            tokio::select! {
                next = tasks.join_next() => match next {
                    None => break,
                    Some(Err(e)) => failures.push(format!("task: {e}")),
                    Some(Ok((i, node, Ok(signature)))) => {
                        if sig::verify(&node, &digest, &signature).is_ok() {
                            votes.push((i, signature));
                        } else {
                            self.blame(&node, "attestation", "signature does not verify");
                        }
                    }
                    Some(Ok((_, node, Err(e)))) => {
                        tracing::debug!(target: TARGET, node = %node, error = %e, "dispersal to node failed");
                        if let DaError::Rejected(why) = &e {
                            refusals.push(why.clone());
                        }
                        failures.push(format!("{node}: {e}"));
                    }
                },
                () = &mut deadline => break,
            }
        }
        if votes.len() < threshold {
            tasks.abort_all();
            // So many nodes refused the square that the threshold is out of reach: the
            // caller needs their reason, not a count.
            if refusals.len() > nodes.len() - threshold {
                return Err(DaError::Rejected(refusals.join("; ")));
            }
            tracing::debug!(target: TARGET, failures = ?failures, "dispersal short of the threshold");
            return Err(DaError::InsufficientNodes { have: votes.len(), need: threshold });
        }
        if tasks.is_empty() {
            drop(tasks);
            if let Ok(sq) = Arc::try_unwrap(square) {
                *self.buffer.lock() = Some(sq.into_eds().into_cells());
            }
        } else {
            // The rest of the committee keeps receiving its columns.
            tasks.detach_all();
        }
        let signatures = QuorumCertificate::from_votes(digest, nodes.len(), &votes);
        tracing::debug!(target: TARGET, data_root = %commitment.data_root, k, signers = votes.len(), "square certified");
        Ok(AvailabilityCertificate { commitment, signatures })
    }

    // ------------------------------------------------------------------ headers

    /// `roots` if their width is one the genesis allows ([`Genesis::da_any_width`]; where
    /// it is off, powers of two only, as releases before it read them), else the error
    /// those releases gave, so that a node serving such a square is blamed the same way.
    fn width_allowed(&self, roots: SquareRoots) -> Result<SquareRoots, lamina_da_core::Error> {
        check_width_allowed(u64::from(roots.k), self.any_width).map(|()| roots)
    }

    async fn verified_header(&self, commitment: &DataCommitment) -> Result<Arc<Verified>, DaError> {
        if let Some((_, v)) = self.headers.lock().iter().find(|(d, _)| d == &commitment.data_root) {
            return Ok(v.clone());
        }
        let mut errors = Vec::new();
        for node in self.view().nodes().iter().filter(|n| **n != self.me) {
            match self.ask(node, &DaRequest::Header(commitment.data_root)).await {
                Ok(DaResponse::Header(header)) => {
                    let checked = header
                        .verify(&commitment.data_root)
                        .and_then(|roots| self.width_allowed(roots))
                        .and_then(|roots| header.check_commitment(commitment).map(|_| roots));
                    match checked {
                        Ok(roots) => {
                            let v = Arc::new(Verified { header, roots });
                            let mut cache = self.headers.lock();
                            cache.push_back((commitment.data_root, v.clone()));
                            while cache.len() > self.config.header_cache.max(1) {
                                cache.pop_front();
                            }
                            return Ok(v);
                        }
                        Err(e) => self.blame(node, "header", e),
                    }
                }
                Ok(_) => self.blame(node, "header", "wrong answer type"),
                Err(e) => errors.push(format!("{node}: {e}")),
            }
        }
        Err(DaError::Unavailable(format!("no DA node served a valid header for {}: {errors:?}", commitment.data_root)))
    }

    // ------------------------------------------------------------------ retrieval

    /// The verified blobs of `namespace` in the square of `commitment` (empty: proven
    /// absent).
    pub async fn retrieve(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> Result<Vec<Vec<u8>>, RetrieveError> {
        let out = self.retrieve_inner(commitment, namespace).await;
        let outcome = match &out {
            Ok(b) if b.is_empty() => "absent",
            Ok(_) => "ok",
            Err(RetrieveError::BadEncoding(_)) => "bad_encoding",
            Err(_) => "failed",
        };
        metrics::counter!(m::RETRIEVALS, "outcome" => outcome).increment(1);
        out
    }

    async fn retrieve_inner(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> Result<Vec<Vec<u8>>, RetrieveError> {
        let v = self.verified_header(commitment).await?;
        let header = &v.header;
        let core_err = |e: lamina_da_core::Error| DaError::Unavailable(e.to_string());
        let Some((r0, r1)) = namespace_rows(header, namespace) else {
            // The verified table proves absence.
            let entries = header.table.prove(namespace).and_then(|p| p.verify(&v.roots.table_root, namespace));
            return match entries.map_err(core_err)? {
                e if e.is_empty() => Ok(vec![]),
                _ => Err(DaError::Unavailable("table disagrees with itself".into()).into()),
            };
        };
        let k = header.k as usize;
        let codec = header.codec_id().map_err(core_err)?;
        let columns = self.fetch_rows(header, r0, r1).await?;
        // Rebuild and check every row.
        let w = 2 * k;
        let mut rows: Vec<Vec<u8>> = Vec::with_capacity((r1 - r0) as usize);
        for r in r0..r1 {
            let i = (r - r0) as usize;
            let mut row = vec![0u8; w * SHARE_SIZE];
            let mut present = vec![false; w];
            for (&c, cells) in &columns {
                row[c as usize * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(&cells[i * SHARE_SIZE..][..SHARE_SIZE]);
                present[c as usize] = true;
            }
            if present[..k].iter().all(|p| *p) {
                lamina_da_core::square::encode_axis(codec.codec(), k, &mut row).map_err(core_err)?;
            } else {
                let mut shards: Vec<&mut [u8]> = row.chunks_exact_mut(SHARE_SIZE).collect();
                codec.codec().reconstruct(&mut shards, &present, k).map_err(core_err)?;
                metrics::counter!(m::ROWS_REBUILT).increment(1);
            }
            if axis_root(Axis::Row, &row) != header.row_roots[r as usize] {
                // The cells fetched do not extend to the row root. Which cells were
                // fetched must not decide the verdict: settle it by the canonical rule
                // (the row's first k cells), the same for every caller.
                row = self.canonical_row(&v, r).await?;
            }
            row.truncate(k * SHARE_SIZE);
            rows.push(row);
        }
        let (a, b) = header.table.entry_range(namespace);
        let first = header.table.entries[a].start as usize;
        Ok(header.table.entries[a..b]
            .iter()
            .map(|e| {
                let mut out = Vec::with_capacity(e.len as usize);
                for s in e.start as usize..e.end() as usize {
                    let (r, c) = (s / k, s % k);
                    let row = &rows[r - first / k];
                    out.extend_from_slice(&row[c * SHARE_SIZE..(c + 1) * SHARE_SIZE]);
                }
                out.truncate(e.len as usize);
                out
            })
            .collect())
    }

    /// Rows `[r0, r1)` of at least `k` distinct columns, each slice verified against its
    /// column root: original columns first, then others as nodes fail, under each
    /// committee the client knows in turn (newest first) until enough are held. Under a
    /// committee that did not store the square its nodes answer that they do not hold
    /// it, which blames no one.
    async fn fetch_rows(&self, header: &DaHeader, r0: u32, r1: u32) -> Result<BTreeMap<u32, Vec<u8>>, DaError> {
        let k = header.k as usize;
        let mut have: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        // Never ask ourselves (see `me`).
        let mut bad: HashSet<NodeId> = HashSet::from([self.me]);
        let view = self.view();
        for committee in &view.list {
            self.fetch_rows_from(committee, header, (r0, r1), &mut have, &mut bad).await;
            if have.len() >= k {
                return Ok(have);
            }
        }
        Err(DaError::InsufficientNodes { have: have.len(), need: k })
    }

    /// [`DaClient::fetch_rows`] under one committee's assignment, adding to `have` until
    /// it holds `k` columns or no node of `committee` is left to ask.
    async fn fetch_rows_from(
        &self,
        committee: &DaCommittee,
        header: &DaHeader,
        (r0, r1): (u32, u32),
        have: &mut BTreeMap<u32, Vec<u8>>,
        bad: &mut HashSet<NodeId>,
    ) {
        let k = header.k as usize;
        let w = 2 * k as u32;
        let nodes = &committee.members.members;
        let assignment = Assignment::new(nodes.len(), committee.threshold, k);
        let mut tried: HashSet<(usize, u32)> = HashSet::new();
        let per_col = (r1 - r0) as usize * SHARE_SIZE + 2048;
        let max_cols = (MAX_RANGES_BYTES / per_col).max(1);
        let data_root = header.data_root();
        loop {
            if have.len() >= k {
                return;
            }
            // Plan: the next columns we lack, each from an owner not yet tried.
            let mut plan: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            let mut planned = 0;
            for c in 0..w {
                if planned >= k - have.len() {
                    break;
                }
                if have.contains_key(&c) {
                    continue;
                }
                if let Some(&node) =
                    assignment.nodes_of(c).iter().find(|&&o| !bad.contains(&nodes[o]) && !tried.contains(&(o, c)))
                {
                    tried.insert((node, c));
                    plan.entry(node).or_default().push(c);
                    planned += 1;
                }
            }
            if plan.is_empty() {
                return;
            }
            let mut set = JoinSet::new();
            for (node, cols) in plan {
                for chunk in cols.chunks(max_cols) {
                    let req = DaRequest::ColumnRanges(RangesRequest {
                        data_root,
                        first_row: r0,
                        end_row: r1,
                        columns: chunk.to_vec(),
                    });
                    let (net, config, id) = (self.net.clone(), self.config.clone(), nodes[node]);
                    set.spawn(async move { (node, ask(&net, &config, &id, &req).await) });
                }
            }
            while let Some(joined) = set.join_next().await {
                let Ok((node, answer)) = joined else { continue };
                let id = nodes[node];
                match answer {
                    Ok(DaResponse::Ranges(slices)) => {
                        for s in slices {
                            let c = s.index;
                            let cells = if c < w && assignment.holds(node, c) {
                                s.proof.verify(Axis::Col, header.k, &header.col_roots[c as usize], r0, r1).ok()
                            } else {
                                None
                            };
                            match cells {
                                // A verified slice is correct whoever sent it.
                                Some(cells) => {
                                    have.entry(c).or_insert_with(|| cells.to_vec());
                                }
                                None => {
                                    self.blame(&id, "column range", format!("column {c} does not verify"));
                                    bad.insert(id);
                                    break;
                                }
                            }
                        }
                    }
                    Ok(_) => {
                        self.blame(&id, "column range", "wrong answer type");
                        bad.insert(id);
                    }
                    Err(e) => {
                        tracing::debug!(target: TARGET, node = %id, error = %e, "column ranges unavailable");
                        // A refusal or a node still starting (its protocol not yet served)
                        // is not invalid data.
                        let refusal = matches!(
                            e,
                            NetError::Rejected(_) | NetError::AccessDenied { .. } | NetError::ProtocolMismatch { .. }
                        );
                        if e.is_peer_fault() && !refusal {
                            self.blame(&id, "column range", &e);
                            bad.insert(id);
                        }
                    }
                }
            }
        }
    }

    /// Decides row `r` by the canonical rule: its first `k` cells, each fetched with a
    /// sample proof through its column root, extended by the codec, either give the
    /// committed row root (the row, all `2k` cells, is returned) or do not (a
    /// [`BadEncodingProof`] built from exactly those cells is returned, which verifies
    /// from the data root alone). The verdict depends only on the commitment, never on
    /// which columns a caller happened to fetch first, so every honest executor and
    /// verifier agrees. A cell no node serves leaves the row undecided: `Unavailable`
    /// (retry later), never a verdict.
    async fn canonical_row(&self, v: &Verified, r: u32) -> Result<Vec<u8>, RetrieveError> {
        let k = v.header.k as usize;
        let view = self.view();
        let data_root = v.roots.data_root();
        let codec = v.header.codec_id().map_err(|e| DaError::BadCommitment(e.to_string()))?;
        let mut samples = Vec::with_capacity(k);
        let mut row = vec![0u8; 2 * k * SHARE_SIZE];
        for c in 0..k as u32 {
            let mut got = None;
            for id in view.owners(k, c).into_iter().filter(|n| *n != self.me) {
                let req = DaRequest::Sample(CellRef { data_root, row: r, col: c });
                match self.ask(&id, &req).await {
                    Ok(DaResponse::Sample(p)) => match p.verify(&data_root) {
                        Ok(cell) if p.coordinates() == (r, c) && p.axis == Axis::Col.as_u8() => {
                            row[c as usize * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(cell);
                            got = Some(p);
                            break;
                        }
                        _ => self.blame(&id, "sample", format!("cell ({r}, {c}) does not verify")),
                    },
                    Ok(_) => self.blame(&id, "sample", "wrong answer type"),
                    Err(e) => tracing::debug!(target: TARGET, node = %id, error = %e, "sample unavailable"),
                }
            }
            match got {
                Some(p) => samples.push(p),
                None => {
                    return Err(DaError::Unavailable(format!(
                        "row {r} of {data_root}: the fetched cells do not match the row root and cell ({r}, {c}) \
                         is unavailable, so the canonical verdict cannot be reached yet"
                    ))
                    .into());
                }
            }
        }
        lamina_da_core::square::encode_axis(codec.codec(), k, &mut row)
            .map_err(|e| DaError::Unavailable(e.to_string()))?;
        if axis_root(Axis::Row, &row) == v.header.row_roots[r as usize] {
            // Canonically good: the columns used first disagree with the row root
            // elsewhere in the row; the first k cells decide.
            metrics::counter!(m::ROWS_REBUILT).increment(1);
            return Ok(row);
        }
        match BadEncodingProof::from_samples(&v.header, Axis::Row, r, &samples) {
            Ok(proof) if proof.verify(&data_root).is_ok() => {
                tracing::warn!(target: TARGET, %data_root, row = r, "square is wrongly encoded; fraud proof built");
                Err(RetrieveError::BadEncoding(Box::new(proof)))
            }
            _ => Err(DaError::Unavailable(format!(
                "row {r} of {data_root} does not match its root, and no fraud proof could be assembled"
            ))
            .into()),
        }
    }

    // ------------------------------------------------------------------ sampling

    /// Light sampling of the square `data_root`: `samples` random cells, each verified
    /// against the data root.
    pub async fn sample(&self, data_root: Digest, samples: u32) -> Result<SamplingOutcome, DaError> {
        Ok(self.sample_cells(data_root, samples).await?.0)
    }

    /// [`DaClient::sample`], also reporting each drawn cell (in row, column order): which
    /// node served a proof that verified, if any.
    pub async fn sample_cells(
        &self,
        data_root: Digest,
        samples: u32,
    ) -> Result<(SamplingOutcome, Vec<CellSample>), DaError> {
        let roots = self.roots(data_root).await?;
        let k = roots.k as usize;
        let mut session = {
            let mut rng = rand::rng();
            SamplingSession::new(data_root, roots.k, samples, &mut rng)
        };
        let view = self.view();
        let mut set = JoinSet::new();
        for (r, c) in session.cells() {
            let owners = view.owners(k, c);
            let (net, config) = (self.net.clone(), self.config.clone());
            set.spawn(async move {
                let mut answers = Vec::new();
                for node in owners {
                    match ask(&net, &config, &node, &DaRequest::Sample(CellRef { data_root, row: r, col: c })).await {
                        Ok(DaResponse::Sample(p)) => {
                            let good = p.verify(&data_root).is_ok() && p.coordinates() == (r, c);
                            answers.push((node, Some(p)));
                            if good {
                                break;
                            }
                        }
                        Ok(_) => answers.push((node, None)),
                        Err(_) => {}
                    }
                }
                ((r, c), answers)
            });
        }
        let mut cells = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((cell, answers)) = joined else { continue };
            let mut verified = false;
            let mut served_by = None;
            for (node, answer) in answers {
                match answer.map(|p| session.handle_proof(cell, &p)) {
                    Some(Ok(_)) => {
                        verified = true;
                        served_by.get_or_insert(node);
                        metrics::counter!(m::SAMPLES, "outcome" => "verified").increment(1);
                    }
                    Some(Err(e)) => {
                        metrics::counter!(m::SAMPLES, "outcome" => "invalid").increment(1);
                        self.blame(&node, "sample", e);
                    }
                    None => self.blame(&node, "sample", "wrong answer type"),
                }
            }
            if !verified {
                metrics::counter!(m::SAMPLES, "outcome" => "missing").increment(1);
                session.handle_missing(cell);
            }
            cells.push(CellSample { row: cell.0, col: cell.1, served_by });
        }
        let outcome = session.outcome();
        metrics::gauge!(m::SAMPLING_CONFIDENCE).set(outcome.confidence);
        cells.sort_by_key(|c| (c.row, c.col));
        Ok((outcome, cells))
    }

    /// The key that dispersed the square `data_root`, as the DA nodes that hold it
    /// testify (each records the key whose store brought the square): the answer most
    /// nodes give, `None` if none knows. Testimony, not proof: the certificate does not
    /// carry the disperser's signature, and a lying DA node may answer anything.
    pub async fn disperser_of(&self, data_root: Digest) -> Option<NodeId> {
        let mut votes: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut set = JoinSet::new();
        for node in self.view().nodes() {
            let (net, config) = (self.net.clone(), self.config.clone());
            set.spawn(async move { ask(&net, &config, &node, &DaRequest::Disperser(data_root)).await });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok(Ok(DaResponse::Disperser(Some(key)))) = joined {
                *votes.entry(key).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k)
    }

    /// The commitment of the square `data_root`, derived from a header that a DA node
    /// served and that verifies against `data_root` (for clients that know only the root,
    /// such as `lamina blob get --data-root`). The header is cached for [`DaClient::retrieve`].
    pub async fn commitment_of(&self, data_root: Digest) -> Result<DataCommitment, DaError> {
        if let Some((_, v)) = self.headers.lock().iter().find(|(d, _)| d == &data_root) {
            return Ok(v.header.commitment());
        }
        let mut errors = Vec::new();
        for node in &self.view().nodes() {
            match self.ask(node, &DaRequest::Header(data_root)).await {
                Ok(DaResponse::Header(header)) => match header.verify(&data_root).and_then(|r| self.width_allowed(r)) {
                    Ok(roots) => {
                        let commitment = header.commitment();
                        let mut cache = self.headers.lock();
                        cache.push_back((data_root, Arc::new(Verified { header, roots })));
                        while cache.len() > self.config.header_cache.max(1) {
                            cache.pop_front();
                        }
                        return Ok(commitment);
                    }
                    Err(e) => self.blame(node, "header", e),
                },
                Ok(_) => self.blame(node, "header", "wrong answer type"),
                Err(e) => errors.push(format!("{node}: {e}")),
            }
        }
        Err(DaError::Unavailable(format!("no DA node served a valid header for {data_root}: {errors:?}")))
    }

    async fn roots(&self, data_root: Digest) -> Result<SquareRoots, DaError> {
        for node in &self.view().nodes() {
            match self.ask(node, &DaRequest::Roots(data_root)).await {
                Ok(DaResponse::Roots(r)) => match r.check(&data_root).and_then(|_| self.width_allowed(r)) {
                    Ok(_) => return Ok(r),
                    Err(e) => self.blame(node, "roots", e),
                },
                Ok(_) => self.blame(node, "roots", "wrong answer type"),
                Err(_) => {}
            }
        }
        Err(DaError::Unavailable(format!("no DA node knows {data_root}")))
    }

    /// One verified sample (used by tests and tools).
    pub async fn fetch_sample(
        &self,
        node: &NodeId,
        data_root: Digest,
        row: u32,
        col: u32,
    ) -> Result<SampleProof, Error> {
        match self.ask(node, &DaRequest::Sample(CellRef { data_root, row, col })).await? {
            DaResponse::Sample(p) => {
                p.verify(&data_root)?;
                Ok(p)
            }
            _ => Err(DaError::Misbehaving { node: *node, reason: "wrong answer type".into() }.into()),
        }
    }
}

async fn ask(
    net: &Network<DaProtocol>,
    config: &ClientConfig,
    node: &NodeId,
    req: &DaRequest,
) -> Result<DaResponse, NetError> {
    if !net.is_connected(node) {
        net.wait_connected(node, config.connect_wait).await?;
    }
    net.request_with_timeout(node, req, config.request_timeout).await
}

/// Sends `node` its columns in batches; returns its attestation. `committee` is the
/// tag of a committee changed by vote ([`DaCommittee::tag`]): such stores need
/// `lamina/da/2`.
async fn disperse_to(
    net: &Network<DaProtocol>,
    config: &ClientConfig,
    node: &NodeId,
    square: &CommittedSquare,
    commitment: &DataCommitment,
    columns: &[u32],
    committee: Option<Digest>,
) -> Result<Signature, DaError> {
    if committee.is_some() {
        if !net.is_connected(node) {
            net.wait_connected(node, config.connect_wait).await.map_err(transport)?;
        }
        if net.version(node).is_some_and(|v| v < 2) {
            return Err(DaError::Rejected(format!(
                "{node} speaks only lamina/da/1, which cannot store for a DA committee changed by vote"
            )));
        }
    }
    let col_len = square.eds().row_len();
    let per_batch = (MAX_STORE_BYTES / col_len).max(1);
    let batches: Vec<&[u32]> = if columns.is_empty() { vec![&[]] } else { columns.chunks(per_batch).collect() };
    let mut last: Option<StoreResponse> = None;
    for batch in batches {
        let store = StoreRequest {
            commitment: commitment.clone(),
            header: square.header().clone(),
            columns: batch.iter().map(|&c| ColumnData { index: c, bytes: square.eds().column(c as usize) }).collect(),
        };
        let req = match committee {
            None => DaRequest::Store(store),
            Some(committee) => DaRequest::StoreFor(CommitteeStore { committee, store }),
        };
        let answer = ask(net, config, node, &req).await.map_err(|e| match e {
            // The node refused the request itself (not the transport): say why.
            NetError::Rejected(r) => DaError::Rejected(format!("{node}: {}", r.reason)),
            e => transport(e),
        })?;
        match answer {
            DaResponse::Stored(s) => last = Some(s),
            _ => return Err(DaError::Misbehaving { node: *node, reason: "wrong answer to store".into() }),
        }
    }
    match last.and_then(|s| s.attestation) {
        Some(sig) => Ok(sig),
        None => Err(DaError::Misbehaving { node: *node, reason: "stored the columns but did not attest".into() }),
    }
}

impl DataAvailability for DaClient {
    fn submit(&self, blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send {
        self.disperse(blobs)
    }

    fn get_namespace(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send {
        let commitment = commitment.clone();
        async move {
            self.retrieve(&commitment, namespace).await.map_err(|e| match e {
                RetrieveError::Da(d) => d,
                RetrieveError::BadEncoding(p) => match lamina_primitives::codec::encode(&*p) {
                    Ok(proof) => DaError::BadEncoding { data_root: commitment.data_root, row: p.index, proof },
                    Err(e) => DaError::Unavailable(format!("fraud proof does not encode: {e}")),
                },
            })
        }
    }

    fn disperser(&self, data_root: &Digest) -> impl Future<Output = Option<NodeId>> + Send {
        self.disperser_of(*data_root)
    }
}

/// Samples `data_root` as a light client would: binds an ephemeral endpoint with
/// `keypair` (a genesis key), samples `samples` cells and reports (the body of
/// `lamina da sample <data-root>`).
pub async fn sample_once(
    keypair: &Keypair,
    genesis: &Genesis,
    data_root: Digest,
    samples: u32,
    config: ClientConfig,
) -> Result<SamplingOutcome> {
    let (client, endpoint) = DaClient::bind(keypair, genesis, SocketAddr::from(([0, 0, 0, 0], 0)), config)?;
    let wanted = genesis.da_nodes.len().min(1);
    let _ = client.wait_for_nodes(wanted, Duration::from_secs(5)).await;
    let out = client.sample(data_root, samples).await;
    endpoint.shutdown().await;
    Ok(out?)
}

const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<DaClient>();
};
