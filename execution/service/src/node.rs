//! The follower: a thin driver over the block state machine
//! ([`lamina_execution_core::block`]): fetch a block's inputs from DA, execute, persist,
//! publish, and queue the claims cut by the claim chain ([`crate::claims`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};

use lamina_execution_core::block::{self, ChainHead, ChainMachine, Outcome};
use lamina_execution_core::ledger::{LEDGER_VERSION, LedgerConfig, LedgerFailure, NativeLedger};
use lamina_execution_core::sigverify::{self, Verified};
use lamina_execution_core::{AuthenticatedState, ChainFailure, Status};
use lamina_interfaces::{
    AnchorRegistry, AnchorView, CheckpointClaim, DaError, DataAvailability, Genesis, Health, LogError, NoAnchors,
    OrderedLog, ParamsRegistry, Settlement, SettlementError, StepEnv, inputs,
};
use lamina_primitives::{ChainId, Committee, Digest, FinalizedBlock, Height, Keypair, Namespace, Transaction, TxId};
use lamina_store::{Config as StoreConfig, Log};
use tokio_util::sync::CancellationToken;

use crate::bridge::BridgeIndex;
use crate::claims::{ClaimChain, ClaimParams};
use crate::index::{Flusher, ReceiptIndex};
use crate::record::{BlockRecord, Header, Records, VERSION};
use crate::snapshot::{self, Capture, NodeImage};
use crate::{Config, Error};

/// Blocks whose data is fetched from DA concurrently while earlier ones execute.
const PREFETCH: usize = 8;
/// About the most transactions whose signatures are verified ahead as one stage, across
/// blocks already fetched (a group stops at the first block that reaches it, so it may
/// pass it by that block). The stage cuts it into one chunk per thread of at most
/// 1,024: on two threads, batches of 1,024 for a full group, against two of 250 for one
/// block of 500.
const VERIFY_AHEAD_TXS: usize = 4 * sigverify::MAX_BATCH;
/// Heights an execution node may trail the log tip and still report `caught_up`.
const CAUGHT_UP_LAG: u64 = 20;

/// Heights with transactions whose outcomes [`View::recent`] keeps.
pub const RECENT_BLOCKS: usize = 4096;
/// Claims rebuilt from the records that a restarted node posts again (settlement
/// ignores ids it has seen; the claims not yet posted before the restart are among them
/// unless settlement was unreachable for longer than this many claims).
pub const REPOST_ON_START: usize = 16;
/// How long a stopping node keeps trying to post the claims still queued (one attempt
/// each).
const DRAIN_ON_STOP: Duration = Duration::from_secs(5);

/// The committed (durable) state that queries read; `F` is the chain machine's failure
/// type.
#[derive(Debug)]
pub struct View<F = LedgerFailure> {
    /// The authenticated state after `height`.
    pub state: AuthenticatedState,
    /// Last committed log height (0: genesis).
    pub height: Height,
    /// State root after `height`.
    pub state_root: Digest,
    /// Receipts root after `height`, chained over every step (height with data).
    pub receipts_root: Digest,
    /// Data root of the last square with this chain's data.
    pub data_root: Digest,
    /// Every retained receipt by transaction id, on disk (the latest inclusion wins).
    pub index: Arc<ReceiptIndex>,
    /// The block records, on disk.
    pub records: Arc<Records>,
    /// Lowest height whose records and receipts are retained (1: nothing pruned).
    pub retained_from: Height,
    /// Transactions executed by this process (for rates).
    pub executed: u64,
    /// Outcomes of the last [`RECENT_BLOCKS`] committed heights that had transactions,
    /// oldest first: load generators learn "executed" from it without one query per
    /// transaction.
    pub recent: VecDeque<(Height, Vec<(TxId, Outcome)>)>,
    /// The chain.
    pub chain: ChainId,
    /// Outbound messages, inbound receipts, refunds and their proofs.
    pub bridge: BridgeIndex,
    /// The failure type of the receipts on disk.
    pub failure: std::marker::PhantomData<fn() -> F>,
}

impl<F> View<F> {
    /// The chain head the next height builds on.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            height: self.height,
            state_root: self.state_root,
            receipts_root: self.receipts_root,
            data_root: self.data_root,
        }
    }
}

/// The view shared between the follower and the query servers.
#[derive(Debug)]
pub struct Shared<F = LedgerFailure>(RwLock<View<F>>);

impl<F> Shared<F> {
    /// Read access (queries).
    pub fn read(&self) -> RwLockReadGuard<'_, View<F>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, View<F>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An execution node of one chain: its state, its store, its pipeline, its claim chain.
/// `M` is the chain's state machine: the native ledger by default
/// ([`ExecutionNode::open`]), or a chain builder's ([`ExecutionNode::open_with`]).
pub struct ExecutionNode<M: ChainMachine = NativeLedger> {
    chain: ChainId,
    machine: M,
    shared: Arc<Shared<M::Failure>>,
    store: Arc<Records>,
    key: Keypair,
    /// What the network's transaction signatures bind (`Genesis::tx_scope`).
    scope: lamina_primitives::TxScope,
    validators: Committee,
    /// Check each block's certificate against the genesis committee here too. Off where
    /// committees change by vote (`[governance] committee_changes`): this service does
    /// not know each height's committee; the log reader checks every block against it
    /// (`lamina_consensus_core::CommitteeSchedule`).
    verify_blocks: bool,
    read_batch: usize,
    pool: Arc<rayon::ThreadPool>,
    fetch: Arc<Fetch>,
    claims: ClaimChain,
    /// Claims made but not yet handed to the poster, oldest first.
    outbox: VecDeque<CheckpointClaim>,
    /// Settlement's anchor registry (required when the genesis enables the bridge).
    anchors: Option<Arc<dyn AnchorRegistry>>,
    /// This node's hold on the registry: at the next height to execute, moved up as
    /// heights are committed durably (so a crash never needs an anchor it released).
    anchor_hold: Option<lamina_interfaces::AnchorHold>,
    /// Governance's parameters (the fee at each height), if this node follows them.
    params: Option<Arc<dyn ParamsRegistry>>,
    /// The last claims made, oldest first (at most [`REPOST_ON_START`]): saved in
    /// snapshots to be posted again after a restart.
    made: VecDeque<CheckpointClaim>,
    snapshots: Snapshots,
    /// Writes the receipt index's due flushes off the follower's path.
    flusher: Flusher,
}

/// Clears a flag when dropped.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// When snapshots are written and what is pruned after them.
#[derive(Debug)]
struct Snapshots {
    dir: PathBuf,
    genesis: Digest,
    every: u64,
    /// Also after this many transactions since the last snapshot (0: no such rule).
    every_txs: u64,
    /// Transactions executed since the last snapshot (counted from the snapshot loaded
    /// at start, through the replayed records).
    since: u64,
    /// This node's key and effective `claim_every`, saved with its claim chain.
    claimer: lamina_primitives::PublicKey,
    claim_every: u64,
    keep: usize,
    retain: u64,
    /// A snapshot is being written (one at a time; a due one is skipped meanwhile).
    busy: Arc<AtomicBool>,
}

impl<M: ChainMachine> std::fmt::Debug for ExecutionNode<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionNode").field("chain", &self.chain).finish_non_exhaustive()
    }
}

fn head_of<F>(r: &BlockRecord<F>) -> ChainHead {
    ChainHead { height: r.height, state_root: r.state_root, receipts_root: r.receipts_root, data_root: r.data_root }
}

/// The native ledger of `chain`, with the parameters of its genesis chain spec.
pub fn native_ledger(genesis: &Genesis, chain: ChainId) -> Result<NativeLedger, Error> {
    let spec = genesis.chain(chain).ok_or_else(|| Error::Config(format!("chain {chain} not in genesis")))?;
    let config = LedgerConfig::from_genesis(genesis, chain).ok_or_else(|| {
        Error::Config(format!(
            "chain {chain} runs ledger version {}, the native ledger is version {LEDGER_VERSION}",
            spec.ledger_version
        ))
    })?;
    Ok(NativeLedger::new(config))
}

impl ExecutionNode<NativeLedger> {
    /// [`ExecutionNode::open_with`] the native ledger of `chain`, whose parameters come
    /// from the genesis chain spec.
    pub fn open(
        data_dir: &Path,
        genesis: &Genesis,
        chain: ChainId,
        key: Keypair,
        config: &Config,
    ) -> Result<Self, Error> {
        Self::open_with(native_ledger(genesis, chain)?, data_dir, genesis, key, config)
    }
}

impl<M: ChainMachine> ExecutionNode<M> {
    /// Opens (or creates) the store in `data_dir` for the chain `machine` executes
    /// ([`lamina_execution_core::StateMachine::chain_id`]): loads the newest snapshot
    /// that verifies (or the genesis state, [`ChainMachine::genesis`]), replays the
    /// records after it, re-indexes receipts the index lost in a crash, and queues the
    /// last [`REPOST_ON_START`] claims made to be posted again. Restart time depends on
    /// the state's size and the snapshot interval ([`Config::snapshot_every`],
    /// [`Config::snapshot_every_txs`]), not on the chain's history.
    pub fn open_with(
        machine: M,
        data_dir: &Path,
        genesis: &Genesis,
        key: Keypair,
        config: &Config,
    ) -> Result<Self, Error> {
        let chain = machine.chain_id();
        let spec = genesis.chain(chain).ok_or_else(|| Error::Config(format!("chain {chain} not in genesis")))?;
        std::fs::create_dir_all(data_dir)?;
        let header = Header { version: VERSION, chain, genesis: genesis.digest() };
        let (index, _) = ReceiptIndex::open(
            &data_dir.join("index.redb"),
            &header,
            config.index_cache_mib << 20,
            config.index_epoch_heights,
            config.index_flush_receipts,
        )?;
        let segment_size = (config.segment_kib << 10).min(u64::from(u32::MAX) - 4095);
        let log = Log::open(
            data_dir.join("blocks"),
            StoreConfig {
                name: format!("execution-{chain}"),
                segment_size,
                max_record_size: StoreConfig::capacity(segment_size).min(16 << 20),
                ..StoreConfig::default()
            },
        )?;
        let snapshots = Snapshots {
            dir: data_dir.join("snapshots"),
            genesis: header.genesis,
            every: config.snapshot_every,
            every_txs: config.snapshot_every_txs,
            since: 0,
            claimer: key.public(),
            claim_every: config.claim_every,
            keep: config.keep_snapshots,
            retain: config.retain_heights,
            busy: Arc::new(AtomicBool::new(false)),
        };
        let mut claims = ClaimChain::new(ClaimParams {
            network: genesis.network_id(),
            chain,
            params: spec.params_digest(),
            claim_every: config.claim_every,
            faulty: config.faulty_claims,
        });
        if config.faulty_claims {
            tracing::warn!(target: "lamina::execution", %chain, "faulty_claims is on: every claim this node posts is wrong (test/demo only)");
        }
        // The newest snapshot that verifies, else the genesis state.
        let mut start = None;
        for (height, dir) in snapshot::list(&snapshots.dir) {
            match snapshot::load(&dir, &header.genesis, chain) {
                Ok(l) => {
                    start = Some(l);
                    break;
                }
                Err(e) => {
                    tracing::warn!(target: "lamina::execution", %chain, %height, error = %e, "snapshot unusable: set aside; trying an older one");
                    if let Err(e) = snapshot::set_aside(&dir) {
                        tracing::warn!(target: "lamina::execution", path = %dir.display(), error = %e, "cannot set the unusable snapshot aside");
                    }
                }
            }
        }
        let mut made = VecDeque::new();
        let (state, head, mut bridge) = match start {
            Some(l) => {
                let m = &l.manifest;
                if l.node.claimer == key.public() && l.node.claim_every == config.claim_every {
                    claims.restore(l.node.claim_parent, l.node.claim_from, l.node.claim_pending.clone());
                    made.extend(l.node.reposts.iter().cloned());
                } else if config.claim_every != 0 {
                    // The pending steps and the last claim are another node's (an
                    // imported or state-synced snapshot), or were cut with another
                    // `claim_every`: continuing them could sign a claim this node never
                    // checked. Such a node claims nothing (its state and queries are
                    // unaffected); a node claims again once it has replayed from genesis.
                    tracing::warn!(target: "lamina::execution", %chain, height = %m.height, "started from a snapshot of another node's claim chain (or another claim_every): this node makes no claims");
                    claims = ClaimChain::new(ClaimParams {
                        network: genesis.network_id(),
                        chain,
                        params: spec.params_digest(),
                        claim_every: 0,
                        faulty: false,
                    });
                }
                let bridge = lamina_primitives::decode(&l.node.bridge)
                    .map_err(|e| Error::BadSnapshot(format!("bridge index: {e}")))
                    .and_then(|img| BridgeIndex::from_image(img).map_err(Error::BadSnapshot))?;
                tracing::info!(target: "lamina::execution", %chain, height = %m.height, keys = m.keys, root = %m.state_root, "state loaded from snapshot");
                let head = ChainHead {
                    height: m.height,
                    state_root: m.state_root,
                    receipts_root: m.receipts_root,
                    data_root: m.data_root,
                };
                (l.state, head, bridge)
            }
            None => {
                let mut state = AuthenticatedState::new();
                state.apply(&machine.genesis(spec), true);
                let head = ChainHead {
                    height: Height(0),
                    state_root: state.root(),
                    receipts_root: Digest::ZERO,
                    data_root: Digest::ZERO,
                };
                (state, head, BridgeIndex::default())
            }
        };
        let st = &genesis.settlement;
        bridge.set_refresh((st.anchor_window / 2).max(1), st.challenge_window.max(1).saturating_mul(2));
        let records = Records::new::<M::Failure>(log, head.height.next())?;
        let first = records.first_height();
        if first > head.height.next() {
            return Err(Error::BadStore(format!(
                "the state is at height {} but the records start at {first}: the snapshot they follow is missing or damaged; import a snapshot (lamina execution snapshot import) or wipe the data directory",
                head.height
            )));
        }
        if records.next_height() < head.height.next() {
            return Err(Error::BadStore(format!(
                "the snapshot is at height {} but the records end at {}: they cannot continue it; wipe {} to start from the snapshot",
                head.height,
                records.next_height().0.saturating_sub(1),
                data_dir.join("blocks").display()
            )));
        }
        let index = Arc::new(index);
        // Heights below both the index's window and the first record on disk are pruned
        // (for an imported snapshot with no records: everything up to it).
        let retained_from = index.retained_from()?.max(first);
        let mut view = View {
            state_root: head.state_root,
            state,
            height: head.height,
            receipts_root: head.receipts_root,
            data_root: head.data_root,
            index: index.clone(),
            records: Arc::new(records),
            retained_from,
            executed: 0,
            recent: VecDeque::new(),
            chain,
            bridge,
            failure: std::marker::PhantomData,
        };
        // Re-index the receipts the index lost in a crash (it returns to its last durable
        // commit, which may be older than the snapshot), then replay the records after
        // the start, indexing those the index lacks.
        let indexed = index.indexed()?;
        let mut h = indexed.next().max(view.retained_from);
        while h <= view.height {
            if let Some(r) = view.records.get::<M::Failure>(h)?
                && index.insert(r.height, &r.receipts)?
            {
                index.flush()?;
            }
            h = h.next();
        }
        h = view.height.next();
        let (mut replayed, mut replayed_txs) = (0u64, 0u64);
        while let Some(r) = view.records.get::<M::Failure>(h)? {
            let root = view.state.apply(&r.changes, true);
            if root != r.state_root || r.step.is_some_and(|s| s.state_root != root || s.height != r.height) {
                return Err(Error::BadStore(format!(
                    "height {}: replayed root {root} != recorded {} (or its step's)",
                    r.height, r.state_root
                )));
            }
            view.bridge.on_record(chain, r.height, &r.changes);
            if let Some(c) = claims.on_commit(r.step, &head_of(&r), &key) {
                view.bridge.on_cut(r.height, &view.state);
                if made.len() == REPOST_ON_START {
                    made.pop_front();
                }
                made.push_back(c);
            }
            if r.height > indexed && index.insert(r.height, &r.receipts)? {
                index.flush()?;
            }
            view.height = r.height;
            view.state_root = root;
            view.receipts_root = r.receipts_root;
            view.data_root = r.data_root;
            h = h.next();
            replayed += 1;
            replayed_txs += r.receipts.len() as u64;
        }
        index.sync()?;
        tracing::info!(target: "lamina::execution", %chain, height = %view.height, replayed, retained_from = %view.retained_from, root = %view.state_root, last_claim = %claims.last_claim(), "store opened");
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            config.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("exec-{i}"))
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let store = view.records.clone();
        let mut snapshots = snapshots;
        snapshots.since = replayed_txs;
        snapshots.claimer = key.public();
        snapshots.claim_every = claims.claim_every();
        Ok(ExecutionNode {
            chain,
            machine,
            shared: Arc::new(Shared(RwLock::new(view))),
            store,
            key,
            scope: genesis.tx_scope(),
            validators: genesis.validator_committee(),
            verify_blocks: config.verify_certificates && !genesis.governance.committee_changes,
            read_batch: config.read_batch,
            pool: Arc::new(pool),
            fetch: Arc::new(Fetch {
                evidence_dir: data_dir.join("evidence"),
                namespace: Namespace::from(chain),
                // Where committees change by vote, not against the genesis DA committee
                // (see `verify_blocks`): the epoch's core checked each certificate
                // against its DA committee.
                verify: config.verify_certificates && !genesis.governance.committee_changes,
                da_committee: genesis.da_committee(),
                da_threshold: genesis.da_threshold(),
            }),
            claims,
            outbox: made.clone(),
            anchors: None,
            anchor_hold: None,
            params: None,
            made,
            snapshots,
            flusher: Flusher::new(index),
        })
    }

    /// Gives the node settlement's anchor registry, which bridge receives and refunds
    /// are checked against. Required when the genesis enables the bridge: the node then
    /// executes height `h` only once the registry has applied `h - 1`. The node holds
    /// the registry at its next height ([`AnchorRegistry::hold`]); a registry that
    /// already forgot anchors that height may need is refused (its verdicts on bridge
    /// proofs could differ from the network's).
    pub fn set_anchors(&mut self, registry: Arc<dyn AnchorRegistry>) -> Result<(), Error> {
        let next = self.height().next();
        let hold = registry.hold(next);
        let serves = registry.serves_from();
        if serves > next {
            return Err(Error::Config(format!(
                "the anchor registry forgot anchors that height {next} may need (it serves heights from {serves}): \
                 move <data>/registry aside so it is rebuilt from the ordered log"
            )));
        }
        self.anchors = Some(registry);
        self.anchor_hold = Some(hold);
        Ok(())
    }

    /// Gives the node governance's parameters (a chain's fee changes by vote at epoch
    /// boundaries). The node then executes height `h` only once the registry's answers
    /// are final for `h` ([`ParamsRegistry::final_through`]), so every replica charges
    /// the same fee at `h`. A registry that no longer serves the next height is refused.
    pub fn set_params(&mut self, registry: Arc<dyn ParamsRegistry>) -> Result<(), Error> {
        let next = self.height().next();
        let serves = registry.serves_from();
        if serves > next {
            return Err(Error::Config(format!(
                "governance's parameter history starts at height {serves}, after this node's next height {next}: \
                 restore a newer snapshot of this chain"
            )));
        }
        self.params = Some(registry);
        Ok(())
    }

    /// The step environment of height `height`: its anchors ([`ExecutionNode::anchors_for`])
    /// and governance's parameters once the registry's answers are final for `height` (a
    /// height without transactions charges no fee, so it never waits).
    async fn env_for(
        &self,
        height: Height,
        txs: &[Transaction],
        shutdown: &CancellationToken,
    ) -> Result<StepEnv, Error> {
        let env = StepEnv::new(height, self.scope, self.anchors_for(height, txs, shutdown).await?);
        let Some(reg) = self.params.as_ref().filter(|_| !txs.is_empty()) else { return Ok(env) };
        wait_until(shutdown, "governance's parameters", height, || reg.final_through() >= height).await?;
        // Checked and used as one frozen view: the follower cannot forget what this
        // height needs between the check and the step.
        let view = reg.frozen();
        if view.serves_from() > height {
            return Err(Error::Config(format!(
                "governance's parameter history starts at height {}, after height {height}: this node cannot \
                 execute that height as the network did (restore a newer snapshot of this chain)",
                view.serves_from()
            )));
        }
        let view: Arc<dyn lamina_interfaces::ParamsView> = view;
        Ok(env.with_params(view))
    }

    /// The anchor view for height `height`, waiting until the registry covers it when
    /// the height's transactions read anchors (bridge receives and refunds); other
    /// heights execute the same with any view, so they never wait.
    async fn anchors_for(
        &self,
        height: Height,
        txs: &[Transaction],
        shutdown: &CancellationToken,
    ) -> Result<Arc<dyn AnchorView>, Error> {
        if !self.machine.reads_anchors(txs) {
            return Ok(Arc::new(NoAnchors));
        }
        let Some(reg) = &self.anchors else {
            return Err(Error::Config(
                "the genesis enables the bridge: this execution node needs settlement's anchor registry".into(),
            ));
        };
        wait_until(shutdown, "the anchor registry", height, || reg.applied().0 + 1 >= height.0).await?;
        let view: Arc<dyn AnchorView> = reg.clone();
        Ok(view)
    }

    /// The view queries read.
    pub fn shared(&self) -> Arc<Shared<M::Failure>> {
        self.shared.clone()
    }

    /// Last committed height.
    pub fn height(&self) -> Height {
        self.shared.read().height
    }

    /// Id of the last claim this node made ([`Digest::ZERO`] before the first).
    pub fn last_claim(&self) -> Digest {
        self.claims.last_claim()
    }

    /// Processes one finalized block: fetch, verify, execute, persist durably, publish.
    /// Returns the record (committed when this returns `Ok`). A claim cut at this
    /// height is queued for the next [`ExecutionNode::follow`].
    pub async fn process<D: DataAvailability>(
        &mut self,
        block: &FinalizedBlock,
        da: &D,
        shutdown: &CancellationToken,
    ) -> Result<BlockRecord<M::Failure>, Error> {
        let expected = self.height().next();
        if block.height() != expected {
            return Err(Error::Log(format!("got height {}, expected {expected}", block.height())));
        }
        let fetched = fetch_block(&self.fetch, block, da, shutdown).await?;
        self.commit(block, fetched, None, shutdown).await
    }

    /// Verifies the signatures of `group` (consecutive fetched blocks) as one stage on
    /// the node's pool; `None` for a single block, whose stage runs with its execution.
    async fn verify_ahead(&self, group: Vec<Fetched>) -> Result<Vec<(Fetched, Option<Verified>)>, Error> {
        if group.len() < 2 {
            return Ok(group.into_iter().map(|f| (f, None)).collect());
        }
        let (pool, scope) = (self.pool.clone(), self.scope);
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&[Transaction]> = group.iter().map(|f| f.txs.as_slice()).collect();
            let verified = pool.install(|| sigverify::verify_blocks(scope, &refs));
            group.into_iter().zip(verified.into_iter().map(Some)).collect()
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Verifies and executes `block` with its fetched inputs, persists durably,
    /// publishes, and advances the claim chain.
    async fn commit(
        &mut self,
        block: &FinalizedBlock,
        fetched: Fetched,
        verified: Option<Verified>,
        shutdown: &CancellationToken,
    ) -> Result<BlockRecord<M::Failure>, Error> {
        let expected = self.height().next();
        if block.height() != expected {
            return Err(Error::Log(format!("got height {}, expected {expected}", block.height())));
        }
        if self.verify_blocks {
            block.verify(&self.validators).map_err(|e| Error::Log(format!("height {}: {e}", block.height())))?;
        }
        let Fetched { txs, data_roots } = fetched;
        let height = block.height();
        let env = self.env_for(height, &txs, shutdown).await?;
        let (shared, store, pool, machine) =
            (self.shared.clone(), self.store.clone(), self.pool.clone(), self.machine.clone());
        let record = tokio::task::spawn_blocking(move || -> Result<(BlockRecord<M::Failure>, bool), Error> {
            let ntx = txs.len();
            let executed = {
                let view = shared.read();
                let head = view.head();
                pool.install(|| {
                    block::execute_block_verified(&machine, env, &view.state, &head, &data_roots, &txs, verified.as_ref())
                })
            };
            let mut view = shared.write();
            let st = &mut view.state;
            let result = pool.install(|| executed.apply(st, true));
            let record = BlockRecord {
                height,
                changes: result.changes,
                receipts: result.receipts,
                state_root: result.head.state_root,
                receipts_root: result.head.receipts_root,
                data_root: result.head.data_root,
                step: result.step,
            };
            let bytes = lamina_primitives::encode(&record).map_err(|e| Error::Internal(e.to_string()))?;
            // Durable before anyone can see it: the write lock is held until then.
            store.append_durable(height, &bytes)?;
            // Into the index's memory tail (readers see it at once); a due flush is
            // started below, after the lock, on the flusher's thread.
            let flush_due = view.index.insert(height, &record.receipts)?;
            for r in &record.receipts {
                let (status, failure) = match &r.status {
                    Status::Success => ("success", None),
                    Status::Failed(f) => ("failed", Some(f)),
                    Status::Rejected(f) => ("rejected", Some(f)),
                };
                if let Some(f) = failure {
                    metrics::counter!("lamina_execution_receipts_total", "status" => status, "reason" => f.label())
                        .increment(1);
                    tracing::debug!(target: "lamina::execution::outcomes", height = height.0, tx = %r.tx_id, status, reason = %f, "transaction not successful");
                }
            }
            if !result.outcomes.is_empty() {
                if view.recent.len() == RECENT_BLOCKS {
                    view.recent.pop_front();
                }
                view.recent.push_back((height, result.outcomes));
            }
            let chain = view.chain;
            view.bridge.on_record(chain, height, &record.changes);
            view.height = height;
            view.state_root = record.state_root;
            view.receipts_root = record.receipts_root;
            view.data_root = record.data_root;
            view.executed += ntx as u64;
            metrics::counter!("lamina_execution_transactions_total").increment(ntx as u64);
            Ok((record, flush_due))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let (record, flush_due) = record;
        if flush_due {
            self.flusher.start()?;
        }
        metrics::gauge!("lamina_execution_height").set(height.0 as f64);
        // The record is durable: a restart resumes above it, so the registry may forget
        // what only this height needed.
        if let Some(hold) = &self.anchor_hold {
            hold.advance(height.next());
        }
        if let Some(c) = self.claims.on_commit(record.step, &head_of(&record), &self.key) {
            // Only this task writes the view, so it still holds the state at the cut.
            let mut view = self.shared.write();
            let view = &mut *view;
            view.bridge.on_cut(record.height, &view.state);
            tracing::debug!(target: "lamina::execution", id = %c.id(), from = %c.from, to = %c.to, steps = c.steps.len(), "claim made");
            metrics::counter!("lamina_execution_claims_total").increment(1);
            if self.made.len() == REPOST_ON_START {
                self.made.pop_front();
            }
            self.made.push_back(c.clone());
            self.outbox.push_back(c);
        }
        self.snapshots.since += record.receipts.len() as u64;
        let by_height = self.snapshots.every > 0 && height.0.is_multiple_of(self.snapshots.every);
        let by_txs = self.snapshots.every_txs > 0 && self.snapshots.since >= self.snapshots.every_txs;
        if by_height || by_txs {
            // The previous snapshot finishes first (normally long done): every node then
            // has snapshots at the same heights, which state sync relies on to find
            // agreeing peers, and a restart replays at most one interval.
            let mut waited = false;
            while self.snapshots.busy.load(Ordering::Acquire) {
                if !waited {
                    tracing::warn!(target: "lamina::execution", %height, "snapshot due while the previous one is still being written; waiting for it");
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if self.snapshot_in_background() {
                self.snapshots.since = 0;
            }
        }
        Ok(record)
    }

    /// The header and the node file of a snapshot of `view` (the committed view, read
    /// under its lock) with this node's claim chain.
    fn snapshot_parts(&self, view: &View<M::Failure>) -> Result<(snapshot::Head, NodeImage), Error> {
        let head = view.head();
        let node = NodeImage {
            claim_parent: self.claims.last_claim(),
            claim_from: self.claims.from(),
            claim_pending: self.claims.pending().to_vec(),
            reposts: self.made.iter().cloned().collect(),
            bridge: lamina_primitives::encode(&view.bridge.image()).map_err(|e| Error::Internal(e.to_string()))?,
            claimer: self.snapshots.claimer,
            claim_every: self.snapshots.claim_every,
        };
        let s = snapshot::Head {
            genesis: self.snapshots.genesis,
            chain: self.chain,
            height: head.height,
            state_root: head.state_root,
            receipts_root: head.receipts_root,
            data_root: head.data_root,
        };
        Ok((s, node))
    }

    /// Captures the committed state and this node's progress and writes them as a
    /// snapshot on a thread of its own, then drops old snapshots and prunes records and
    /// receipts below the retention window ([`prune`]). `false` (logged) when no thread
    /// could be started, or one is still writing (the caller waits for it first).
    fn snapshot_in_background(&self) -> bool {
        if self.snapshots.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        let parts = {
            let v = self.shared.read();
            self.snapshot_parts(&v).map(|(head, node)| (head, Capture::of(&v.state), node))
        };
        let (s, capture, node) = match parts {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "lamina::execution", error = %e, "cannot capture a snapshot");
                self.snapshots.busy.store(false, Ordering::Release);
                return false;
            }
        };
        let (dir, keep, retain, busy) =
            (self.snapshots.dir.clone(), self.snapshots.keep, self.snapshots.retain, self.snapshots.busy.clone());
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new().name("exec-snapshot".into()).spawn(move || {
            // Clears `busy` however the thread ends (a panic included), and only after
            // this thread's hold on the view (and so on the index's file) is gone:
            // locals drop in reverse order, so `shared` goes first. A caller that
            // waits for `busy` and then reopens the data finds it free.
            let _busy = ClearOnDrop(busy);
            let shared = shared;
            let started = std::time::Instant::now();
            let result = std::fs::create_dir_all(&dir)
                .map_err(Error::from)
                .and_then(|()| snapshot::write(&dir, s, capture, &node))
                .and_then(|m| {
                    metrics::counter!("lamina_execution_snapshots_total").increment(1);
                    tracing::info!(target: "lamina::execution", height = %m.height, keys = m.keys, chunks = m.chunks.len(), ms = started.elapsed().as_millis() as u64, "snapshot written");
                    // Bounds what a crash makes the next start re-index.
                    let index = shared.read().index.clone();
                    index.sync()?;
                    snapshot::retain(&dir, keep)?;
                    prune(&shared, &dir, keep, retain, m.height)
                });
            if let Err(e) = result {
                metrics::counter!("lamina_execution_snapshot_failures_total").increment(1);
                tracing::error!(target: "lamina::execution", error = %e, "snapshot or pruning failed");
            }
        });
        if let Err(e) = spawned {
            tracing::error!(target: "lamina::execution", error = %e, "cannot start the snapshot thread");
            self.snapshots.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Follows the log from the next height until shutdown (returns `Ok`) or an error.
    ///
    /// Claims go, in order, to a concurrent poster: a slow settlement path queues claims
    /// instead of slowing execution down, and none is dropped, since each claim is a
    /// link of a chain. The poster retries a claim while settlement is unavailable; on
    /// stop, the claims still queued get one attempt each (bounded in time), and the
    /// last ones are posted again after a restart ([`REPOST_ON_START`]).
    pub async fn follow<L: OrderedLog, D: DataAvailability, S: Settlement>(
        &mut self,
        log: &L,
        da: &D,
        settlement: &S,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let (claims, mut queue) = tokio::sync::mpsc::unbounded_channel::<CheckpointClaim>();
        let mut current: Option<CheckpointClaim> = None;
        let result = {
            let poster = async {
                loop {
                    if current.is_none() {
                        current = queue.recv().await;
                    }
                    let Some(claim) = current.clone() else { return };
                    if !post_with_retry(settlement, claim, shutdown).await {
                        return;
                    }
                    current = None;
                }
            };
            tokio::select! {
                r = self.follow_inner(log, da, &claims, health, shutdown) => r,
                // Returns only on shutdown while a claim waits for settlement.
                () = poster => Ok(()),
            }
        };
        drop(claims);
        let mut left: Vec<CheckpointClaim> = current.into_iter().collect();
        while let Ok(c) = queue.try_recv() {
            left.push(c);
        }
        left.extend(self.outbox.drain(..));
        if !left.is_empty() {
            let n = left.len();
            let drain = async {
                for c in left {
                    if let Err(e) = settlement.post_claim(c).await {
                        tracing::warn!(target: "lamina::execution", error = %e, "queued claim not posted on stop");
                    }
                }
            };
            if tokio::time::timeout(DRAIN_ON_STOP, drain).await.is_err() {
                tracing::warn!(target: "lamina::execution", claims = n, "stopped before posting every queued claim");
            }
        }
        result
    }

    /// Hands the claims made so far to the poster, in order.
    fn send_claims(&mut self, claims: &tokio::sync::mpsc::UnboundedSender<CheckpointClaim>) {
        while let Some(c) = self.outbox.pop_front() {
            if let Err(e) = claims.send(c) {
                self.outbox.push_front(e.0);
                return;
            }
        }
    }

    async fn follow_inner<L: OrderedLog, D: DataAvailability>(
        &mut self,
        log: &L,
        da: &D,
        claims: &tokio::sync::mpsc::UnboundedSender<CheckpointClaim>,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(50);
        loop {
            self.send_claims(claims);
            let from = self.height().next();
            let read = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = log.read(from, self.read_batch) => r,
            };
            let blocks = match read {
                Ok(b) => {
                    backoff = Duration::from_millis(50);
                    b
                }
                Err(LogError::Closed) => return Ok(()),
                Err(e @ (LogError::Unavailable(_) | LogError::Pruned { .. })) => {
                    if let LogError::Pruned { oldest, .. } = e {
                        // No validator keeps the heights this node needs: replay cannot
                        // catch up. Said plainly, and retried (a validator may keep more).
                        let m = format!(
                            "the ordered log is pruned below height {oldest} and this node needs height {from}: it cannot catch up by replay; stop it, empty its data directory and start it again to state-sync from the chain's other execution nodes, or import a snapshot (lamina execution snapshot import)"
                        );
                        health.set_check("caught_up", false, m.clone());
                        tracing::error!(target: "lamina::execution", "{m}");
                    } else {
                        health.set_check("caught_up", false, e.to_string());
                        tracing::warn!(target: "lamina::execution", error = %e, "log read failed; retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => return Err(Error::Log(e.to_string())),
            };
            // Fetch up to PREFETCH blocks' data from DA concurrently; execute in order.
            let fetch = self.fetch.clone();
            let futs: Vec<_> = blocks.iter().map(|b| fetch_block(&fetch, b, da, shutdown)).collect();
            let mut fetched = futures::stream::iter(futs).buffered(PREFETCH);
            // Fetched blocks (or a fetch's error) not yet verified, in block order, and
            // blocks verified ahead waiting for their turn to execute: together at most
            // PREFETCH, while the stream fetches up to PREFETCH more (so at most twice
            // PREFETCH blocks' data in memory). An error surfaces in its block's turn,
            // after the blocks before it are committed.
            let mut pending: VecDeque<Result<Fetched, Error>> = VecDeque::new();
            let mut ready: VecDeque<(Fetched, Option<Verified>)> = VecDeque::new();
            for block in &blocks {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if ready.is_empty() {
                    // The next block's data (fetched already, or awaited), then every
                    // further block fetched already, up to VERIFY_AHEAD_TXS
                    // transactions, verified with it as one signature stage: a node that
                    // has fallen behind verifies in larger, cheaper batches.
                    let next = match pending.pop_front() {
                        Some(item) => Some(item),
                        None => fetched.next().await,
                    };
                    let Some(first) = next_fetched(next, shutdown)? else {
                        return Ok(()); // Stopped mid-block (logged by next_fetched).
                    };
                    let mut txs = first.txs.len();
                    let mut group = vec![first];
                    poll_fetched(&mut fetched, &mut pending, PREFETCH - 1);
                    while txs < VERIFY_AHEAD_TXS && matches!(pending.front(), Some(Ok(_))) {
                        if let Some(Ok(more)) = pending.pop_front() {
                            txs += more.txs.len();
                            group.push(more);
                        }
                    }
                    match self.verify_ahead(group).await {
                        Err(Error::Internal(m)) if shutdown.is_cancelled() => {
                            tracing::info!(target: "lamina::execution", reason = %m, "stopped mid-block");
                            return Ok(());
                        }
                        r => ready.extend(r?),
                    }
                }
                let Some((data, verified)) = ready.pop_front() else {
                    return Err(Error::Internal("prefetch ended early".into()));
                };
                let record = match self.commit(block, data, verified, shutdown).await {
                    Err(Error::Internal(m)) if shutdown.is_cancelled() => {
                        tracing::info!(target: "lamina::execution", reason = %m, "stopped mid-block");
                        return Ok(());
                    }
                    r => r?,
                };
                tracing::debug!(target: "lamina::execution", height = %record.height, txs = record.receipts.len(), root = %record.state_root, "committed");
                self.send_claims(claims);
                // Keep the fetches moving while blocks verified ahead execute.
                poll_fetched(&mut fetched, &mut pending, PREFETCH.saturating_sub(ready.len()));
            }
            let tip = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                t = log.tip() => t.unwrap_or(Height(0)),
            };
            let h = self.height();
            // Under load the tip moves while a block executes: within CAUGHT_UP_LAG
            // heights counts as caught up.
            health.set_check("caught_up", h.0 + CAUGHT_UP_LAG >= tip.0, format!("height {h}, log tip {tip}"));
            health.set_status("execution_height", h.0);
            health.set_status("execution_state_root", self.shared.read().state_root.to_hex());
            health.set_status("execution_last_claim", self.claims.last_claim().to_hex());
        }
    }

    /// Flushes and closes the store (waits for a snapshot being written).
    pub fn close(mut self) -> Result<(), Error> {
        while self.snapshots.busy.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.store.sync()?;
        self.flusher.wait()?;
        self.shared.read().index.sync()?;
        Ok(())
    }

    /// Writes a snapshot of the committed state now, as `dir/<height>` (see
    /// [`crate::snapshot::dir_name`]), without pruning anything.
    pub fn export_snapshot(&self, dir: &Path) -> Result<snapshot::Manifest, Error> {
        let v = self.shared.read();
        let (s, node) = self.snapshot_parts(&v)?;
        std::fs::create_dir_all(dir)?;
        snapshot::write(dir, s, Capture::of(&v.state), &node)
    }
}

/// Prunes, after the snapshot at `snapshot_height` was written, the records and receipts
/// of heights up to `min(oldest snapshot kept, snapshot height - retain)` (nothing when
/// `retain` is 0), at the index's granularity (its tables: [`crate::index`]): whole tables
/// of receipts first (one synced commit that moves `retained_from`), then whole record
/// segments below the new `retained_from`.
fn prune<F: ChainFailure>(
    shared: &Shared<F>,
    dir: &Path,
    keep: usize,
    retain: u64,
    snapshot_height: Height,
) -> Result<(), Error> {
    if retain == 0 {
        return Ok(());
    }
    let oldest_kept = snapshot::list(dir).into_iter().take(keep.max(1)).map(|(h, _)| h).min().unwrap_or(Height(0));
    let below = Height(oldest_kept.0.min(snapshot_height.0.saturating_sub(retain)) + 1);
    let (index, records, from) = {
        let v = shared.read();
        (v.index.clone(), v.records.clone(), v.retained_from)
    };
    if below <= from {
        return Ok(());
    }
    // Readers stop asking below the new lower bound first (they read under the view's
    // lock, so none is midway through a lookup), then whole tables of receipts go in
    // one cheap commit (no key by key deletes), then records below the first height
    // still indexed: records and receipts agree on what is retained at every moment.
    // The prune is bounded by the planned point, so a table that a flush adds in
    // between cannot make it drop more than readers were told.
    let point = index.prune_point(below)?;
    if point <= from {
        return Ok(());
    }
    shared.write().retained_from = point;
    // The same as `point` (this thread is the only pruner); the larger bound otherwise.
    let from = index.prune(point)?.max(point);
    if from > point {
        shared.write().retained_from = from;
    }
    let segments = records.prune_below(from)?;
    tracing::info!(target: "lamina::execution", retained_from = %from, segments, "pruned records and receipts");
    Ok(())
}

/// What fetching a block's data needs (shared with concurrent prefetches).
#[derive(Debug)]
struct Fetch {
    /// Where proofs of wrongly encoded squares are kept (`<data>/evidence`).
    evidence_dir: std::path::PathBuf,
    namespace: Namespace,
    verify: bool,
    da_committee: Committee,
    da_threshold: usize,
}

/// A block's inputs for this chain: the data roots of its squares listing the chain's
/// namespace and the transactions extracted from them, in block order.
#[derive(Debug)]
struct Fetched {
    txs: Vec<Transaction>,
    data_roots: Vec<Digest>,
}

/// One item of the prefetch stream: its data, `None` when the node is stopping (the
/// fetch was cut short), or the error that stops the follower.
fn next_fetched(item: Option<Result<Fetched, Error>>, shutdown: &CancellationToken) -> Result<Option<Fetched>, Error> {
    match item {
        Some(Ok(d)) => Ok(Some(d)),
        Some(Err(Error::Internal(m))) if shutdown.is_cancelled() => {
            tracing::info!(target: "lamina::execution", reason = %m, "stopped mid-block");
            Ok(None)
        }
        Some(Err(e)) => Err(e),
        None => Err(Error::Internal("prefetch ended early".into())),
    }
}

/// Moves the blocks the prefetch stream has ready, without waiting, into `pending`
/// while it holds fewer than `room`: fetches progress only while their stream is polled.
fn poll_fetched<S>(fetched: &mut S, pending: &mut VecDeque<Result<Fetched, Error>>, room: usize)
where
    S: futures::Stream<Item = Result<Fetched, Error>> + Unpin,
{
    while pending.len() < room {
        match fetched.next().now_or_never() {
            Some(Some(item)) => pending.push_back(item),
            // Nothing ready yet, or every block of this read taken.
            Some(None) | None => break,
        }
    }
}

/// Fetches this chain's inputs of a block from DA with the shared extraction rule
/// ([`inputs`]); the block's squares are fetched concurrently.
async fn fetch_block<D: DataAvailability>(
    f: &Fetch,
    block: &FinalizedBlock,
    da: &D,
    shutdown: &CancellationToken,
) -> Result<Fetched, Error> {
    let certs: Vec<_> = inputs::namespace_certs(block, f.namespace).collect();
    let squares =
        futures::future::try_join_all(certs.iter().map(|cert| fetch_square(f, block, cert, da, shutdown))).await?;
    let extracted = inputs::namespace_transactions(f.namespace, &squares);
    if extracted.skipped > 0 {
        tracing::warn!(target: "lamina::execution", height = %block.height(), skipped = extracted.skipped, "blobs that are not batches of this chain skipped");
        metrics::counter!("lamina_execution_skipped_blobs_total").increment(extracted.skipped as u64);
    }
    Ok(Fetched { txs: extracted.txs, data_roots: certs.iter().map(|c| c.commitment.data_root).collect() })
}

/// Posts `claim`, retrying with backoff while settlement is unavailable. Returns `false`
/// if shutdown came first (the claim is still unposted), `true` otherwise (posted, or
/// rejected: retrying a rejected claim cannot help).
async fn post_with_retry<S: Settlement>(settlement: &S, claim: CheckpointClaim, shutdown: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(100);
    let (to, id) = (claim.to, claim.id());
    loop {
        match settlement.post_claim(claim.clone()).await {
            Ok(()) => return true,
            Err(e @ SettlementError::Rejected(_)) => {
                metrics::counter!("lamina_execution_claim_failures_total").increment(1);
                tracing::error!(target: "lamina::execution", %to, %id, error = %e, "claim rejected by settlement");
                return true;
            }
            Err(e @ SettlementError::Unavailable(_)) => {
                metrics::counter!("lamina_execution_claim_failures_total").increment(1);
                tracing::warn!(target: "lamina::execution", %to, error = %e, "claim not posted; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Writes a bad-encoding proof to `dir/bad-encoding-<data root>.proof` (write, sync,
/// rename: a file that exists is whole) and returns its path; `None` (logged) if the
/// disk refuses. Evidence is kept for operators and settlement; the verdict does not
/// depend on it.
fn keep_evidence(dir: &Path, data_root: &Digest, proof: &[u8]) -> Option<String> {
    let path = dir.join(format!("bad-encoding-{}.proof", data_root.to_hex()));
    if path.exists() {
        return Some(path.display().to_string());
    }
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, proof)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    match write() {
        Ok(()) => Some(path.display().to_string()),
        Err(e) => {
            tracing::warn!(target: "lamina::execution", path = %path.display(), error = %e, "cannot keep bad-encoding evidence");
            None
        }
    }
}

/// One square's blobs of the chain's namespace (retried until available; empty if the
/// commitment is unusable for everyone, [`DaError::is_final_for_everyone`]: a bad
/// commitment, rejected blobs, or a square proven wrongly encoded by the canonical rule,
/// whose proof is kept under `<data>/evidence` for settlement).
async fn fetch_square<D: DataAvailability>(
    f: &Fetch,
    block: &FinalizedBlock,
    cert: &lamina_primitives::AvailabilityCertificate,
    da: &D,
    shutdown: &CancellationToken,
) -> Result<Vec<Vec<u8>>, Error> {
    if f.verify {
        cert.verify(&f.da_committee, f.da_threshold)
            .map_err(|e| Error::Log(format!("height {}: availability certificate: {e}", block.height())))?;
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        match da.get_namespace(&cert.commitment, f.namespace).await {
            Ok(b) => return Ok(b),
            Err(DaError::BadEncoding { data_root, row, proof }) => {
                // Deterministic (the canonical rule): every replica and every settlement
                // verifier sees this square's data for the chain as absent. The disperser
                // is only reported (the DA nodes' testimony), never part of the verdict.
                // Bounded: a slow or absent DA node must not hold up the verdict.
                let disperser =
                    tokio::time::timeout(Duration::from_secs(2), da.disperser(&data_root)).await.ok().flatten();
                let who = disperser.map_or_else(|| "unknown".to_string(), |k| k.to_hex());
                metrics::counter!("lamina_execution_bad_squares_total", "disperser" => who.get(..16).unwrap_or(&who).to_string())
                    .increment(1);
                let kept = keep_evidence(&f.evidence_dir, &data_root, &proof);
                tracing::error!(target: "lamina::execution", height = %block.height(), %data_root, row, disperser = %who, proof_bytes = proof.len(), evidence = %kept.as_deref().unwrap_or("not written"), "square is wrongly encoded: its data counts as absent for this chain; its disperser is faulty");
                return Ok(Vec::new());
            }
            Err(e) if e.is_final_for_everyone() => {
                // Deterministic: the commitment is unusable for everyone.
                tracing::warn!(target: "lamina::execution", height = %block.height(), error = %e, "square skipped");
                return Ok(Vec::new());
            }
            Err(e) => {
                tracing::warn!(target: "lamina::execution", height = %block.height(), error = %e, "DA fetch failed; retrying");
                metrics::counter!("lamina_execution_da_retries_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Error::Internal("shutdown during DA fetch".into())),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Waits (polling, 1 ms growing to 20 ms) until `ready()`, warning every 10 s that height
/// `height` waits for `what`; fails only on shutdown.
async fn wait_until(
    shutdown: &CancellationToken,
    what: &str,
    height: Height,
    ready: impl Fn() -> bool,
) -> Result<(), Error> {
    let mut wait = Duration::from_millis(1);
    let started = std::time::Instant::now();
    let mut warned = 0u64;
    while !ready() {
        tokio::select! {
            _ = shutdown.cancelled() => {
                return Err(Error::Internal(format!("stopped while waiting for {what}")));
            }
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_millis(20));
        let secs = started.elapsed().as_secs();
        if secs >= 10 * (warned + 1) {
            warned += 1;
            tracing::warn!(target: "lamina::execution", %height, waited_s = secs, "height waits for {what}");
        }
    }
    Ok(())
}
