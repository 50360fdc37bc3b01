//! The follower: state, persistence, recovery, and the per-block pipeline.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt as _;

use lamina_execution_core::ledger::{self, LedgerConfig, LedgerFailure, NativeLedger};
use lamina_execution_core::{AuthenticatedState, Receipt, parallel, sigverify};
use lamina_interfaces::{
    CheckpointClaim, DaError, DataAvailability, Genesis, Health, LogError, OrderedLog, Settlement,
};
use lamina_primitives::{Batch, ChainId, Committee, Digest, Domain, FinalizedBlock, Height, Keypair, Namespace, TxId};
use lamina_store::{Config as StoreConfig, Log};
use tokio_util::sync::CancellationToken;

use crate::record::{BlockRecord, Header, VERSION};
use crate::{Config, Error};

/// Blocks whose data is fetched from DA concurrently while earlier ones execute.
const PREFETCH: usize = 8;
/// Heights an execution node may trail the log tip and still report `caught_up`.
const CAUGHT_UP_LAG: u64 = 20;

/// Heights with transactions whose outcomes [`View::recent`] keeps.
pub const RECENT_BLOCKS: usize = 4096;

static RECEIPTS_CHAIN: Domain = Domain::new("lamina execution receipts chain v1");

/// Where a committed receipt lives.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptEntry {
    /// Log height of the block that included it.
    pub height: Height,
    /// The receipt.
    pub receipt: Receipt<LedgerFailure>,
}

/// The committed (durable) state that queries read.
#[derive(Debug)]
pub struct View {
    /// The authenticated state after `height`.
    pub state: AuthenticatedState,
    /// Last committed log height (0: genesis).
    pub height: Height,
    /// State root after `height`.
    pub state_root: Digest,
    /// Chained receipts root after `height`.
    pub receipts_root: Digest,
    /// Data root of the last square with this chain's data.
    pub data_root: Digest,
    /// Every committed receipt by transaction id (the latest inclusion wins).
    pub receipts: HashMap<TxId, ReceiptEntry>,
    /// Outcomes (tx id, 0 success / 1 failed / 2 rejected) of the last
    /// [`RECENT_BLOCKS`] committed heights that had transactions, oldest first: load
    /// generators learn "executed" from it without one query per transaction.
    pub recent: VecDeque<(Height, Vec<(TxId, u8)>)>,
    /// The chain.
    pub chain: ChainId,
}

/// The view shared between the follower and the query servers.
#[derive(Debug)]
pub struct Shared(RwLock<View>);

impl Shared {
    /// Read access (queries).
    pub fn read(&self) -> RwLockReadGuard<'_, View> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An execution node of one chain: its state, its store, its pipeline.
pub struct ExecutionNode {
    chain: ChainId,
    ledger: NativeLedger,
    shared: Arc<Shared>,
    store: Arc<Log>,
    key: Keypair,
    validators: Committee,
    verify: bool,
    read_batch: usize,
    claim_every: u64,
    pool: Arc<rayon::ThreadPool>,
    fetch: Arc<Fetch>,
}

impl std::fmt::Debug for ExecutionNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionNode").field("chain", &self.chain).finish_non_exhaustive()
    }
}

fn chain_receipts(prev: &Digest, height: Height, block_root: &Digest) -> Digest {
    RECEIPTS_CHAIN.hash_parts(&[prev.as_bytes(), &height.0.to_le_bytes(), block_root.as_bytes()])
}

impl ExecutionNode {
    /// Opens (or creates) the store in `data_dir/blocks` and rebuilds the state by
    /// replaying it from the genesis state.
    pub fn open(
        data_dir: &Path,
        genesis: &Genesis,
        chain: ChainId,
        key: Keypair,
        config: &Config,
    ) -> Result<Self, Error> {
        let spec = genesis.chain(chain).ok_or_else(|| Error::Config(format!("chain {chain} not in genesis")))?;
        let store = Log::open(
            data_dir.join("blocks"),
            StoreConfig { name: format!("execution-{chain}"), ..StoreConfig::default() },
        )?;
        let header = Header { version: VERSION, chain, genesis: genesis.digest() };
        if store.next_seq() == 0 {
            let bytes = lamina_primitives::encode(&header).map_err(|e| Error::Internal(e.to_string()))?;
            store.append_durable(&bytes)?;
        } else {
            let rec = store.read(0)?.ok_or_else(|| Error::BadStore("missing header record".into()))?;
            let got: Header = lamina_primitives::decode(rec.bytes()).map_err(|e| Error::BadStore(e.to_string()))?;
            if got != header {
                return Err(Error::BadStore(format!(
                    "store was written for chain {} under genesis {}, this node runs chain {chain} under {}",
                    got.chain, got.genesis, header.genesis
                )));
            }
        }
        let mut state = AuthenticatedState::new();
        state.apply(&ledger::genesis(spec), true);
        let mut view = View {
            state_root: state.root(),
            state,
            height: Height(0),
            receipts_root: Digest::ZERO,
            data_root: Digest::ZERO,
            receipts: HashMap::new(),
            recent: VecDeque::new(),
            chain,
        };
        // Replay.
        for item in store.iter_from(1) {
            let rec = item?;
            let r: BlockRecord = lamina_primitives::decode(rec.bytes()).map_err(|e| Error::BadStore(e.to_string()))?;
            if r.height != view.height.next() {
                return Err(Error::BadStore(format!("record for height {} after {}", r.height, view.height)));
            }
            let root = view.state.apply(&r.changes, true);
            if root != r.state_root {
                return Err(Error::BadStore(format!(
                    "height {}: replayed root {root} != recorded {}",
                    r.height, r.state_root
                )));
            }
            for receipt in r.receipts {
                view.receipts.insert(receipt.tx_id, ReceiptEntry { height: r.height, receipt });
            }
            view.height = r.height;
            view.state_root = root;
            view.receipts_root = r.receipts_root;
            view.data_root = r.data_root;
        }
        tracing::info!(target: "lamina::execution", %chain, height = %view.height, root = %view.state_root, "store replayed");
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
        let fee_collector = config.fee_collector;
        Ok(ExecutionNode {
            chain,
            ledger: NativeLedger::new(LedgerConfig { chain_id: chain, fee: config.fee, fee_collector }),
            shared: Arc::new(Shared(RwLock::new(view))),
            store: Arc::new(store),
            key,
            validators: genesis.validator_committee(),
            verify: config.verify_certificates,
            read_batch: config.read_batch,
            claim_every: config.claim_every,
            pool: Arc::new(pool),
            fetch: Arc::new(Fetch {
                namespace: Namespace::from(chain),
                verify: config.verify_certificates,
                da_committee: genesis.da_committee(),
                da_threshold: genesis.da_threshold(),
            }),
        })
    }

    /// The view queries read.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Last committed height.
    pub fn height(&self) -> Height {
        self.shared.read().height
    }

    /// Processes one finalized block: fetch, verify, execute, persist durably, publish.
    /// Returns the record (committed when this returns `Ok`).
    pub async fn process<D: DataAvailability>(
        &mut self,
        block: &FinalizedBlock,
        da: &D,
        shutdown: &CancellationToken,
    ) -> Result<BlockRecord, Error> {
        let expected = self.height().next();
        if block.height() != expected {
            return Err(Error::Log(format!("got height {}, expected {expected}", block.height())));
        }
        let fetched = fetch_block(&self.fetch, block, da, shutdown).await?;
        self.commit(block, fetched).await
    }

    /// Verifies and executes `block` with its fetched data, persists durably, publishes.
    async fn commit(&mut self, block: &FinalizedBlock, fetched: Fetched) -> Result<BlockRecord, Error> {
        let expected = self.height().next();
        if block.height() != expected {
            return Err(Error::Log(format!("got height {}, expected {expected}", block.height())));
        }
        if self.verify {
            block.verify(&self.validators).map_err(|e| Error::Log(format!("height {}: {e}", block.height())))?;
        }
        let (txs, data_root) = fetched;
        let height = block.height();
        let (shared, store, pool, ledger) =
            (self.shared.clone(), self.store.clone(), self.pool.clone(), self.ledger.clone());
        let record = tokio::task::spawn_blocking(move || -> Result<BlockRecord, Error> {
            let ntx = txs.len();
            let (out, prev_receipts, prev_data) = {
                let view = shared.read();
                let out = pool.install(|| {
                    let verified = sigverify::verify_block(&txs);
                    parallel::execute(&ledger, &view.state, &txs, &verified)
                });
                (out, view.receipts_root, view.data_root)
            };
            let block_root = lamina_execution_core::machine::receipts_root(&out.receipts);
            let mut view = shared.write();
            let st = &mut view.state;
            let state_root = pool.install(|| st.apply(&out.changes, true));
            let record = BlockRecord {
                height,
                changes: out.changes,
                receipts: out.receipts,
                state_root,
                receipts_root: chain_receipts(&prev_receipts, height, &block_root),
                data_root: data_root.unwrap_or(prev_data),
            };
            let bytes = lamina_primitives::encode(&record).map_err(|e| Error::Internal(e.to_string()))?;
            // Durable before anyone can see it: the write lock is held until then.
            store.append_durable(&bytes)?;
            for r in &record.receipts {
                view.receipts.insert(r.tx_id, ReceiptEntry { height, receipt: r.clone() });
            }
            if !record.receipts.is_empty() {
                if view.recent.len() == RECENT_BLOCKS {
                    view.recent.pop_front();
                }
                let outcomes = record.receipts.iter().map(|r| (r.tx_id, r.commitment_bytes()[32])).collect();
                view.recent.push_back((height, outcomes));
            }
            view.height = height;
            view.state_root = state_root;
            view.receipts_root = record.receipts_root;
            view.data_root = record.data_root;
            metrics::counter!("lamina_execution_transactions_total").increment(ntx as u64);
            Ok(record)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        metrics::gauge!("lamina_execution_height").set(height.0 as f64);
        Ok(record)
    }

    /// A signed claim for the current committed state.
    pub fn claim(&self) -> CheckpointClaim {
        let v = self.shared.read();
        CheckpointClaim {
            chain_id: self.chain,
            height: v.height,
            state_root: v.state_root,
            data_root: v.data_root,
            receipts_root: v.receipts_root,
            claimer: self.key.public(),
            signature: Default::default(),
        }
        .sign(&self.key)
    }

    /// Follows the log from the next height until shutdown (returns `Ok`) or an error.
    ///
    /// Claims are posted by a concurrent poster that always sends the newest one (a
    /// slow settlement path coalesces claims instead of slowing execution down).
    pub async fn follow<L: OrderedLog, D: DataAvailability, S: Settlement>(
        &mut self,
        log: &L,
        da: &D,
        settlement: &S,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let (claims, mut latest) = tokio::sync::watch::channel::<Option<CheckpointClaim>>(None);
        let poster = async move {
            while latest.changed().await.is_ok() {
                let Some(claim) = latest.borrow_and_update().clone() else { continue };
                let height = claim.height;
                if let Err(e) = settlement.post_claim(claim).await {
                    metrics::counter!("lamina_execution_claim_failures_total").increment(1);
                    tracing::warn!(target: "lamina::execution", height = %height, error = %e, "claim not posted");
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            r = self.follow_inner(log, da, &claims, health, shutdown) => r,
            () = poster => Ok(()),
        }
    }

    async fn follow_inner<L: OrderedLog, D: DataAvailability>(
        &mut self,
        log: &L,
        da: &D,
        claims: &tokio::sync::watch::Sender<Option<CheckpointClaim>>,
        health: &Health,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(50);
        loop {
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
                    health.set_check("caught_up", false, e.to_string());
                    tracing::warn!(target: "lamina::execution", error = %e, "log read failed; retrying");
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
            for block in &blocks {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let data = match fetched.next().await {
                    Some(Ok(d)) => d,
                    Some(Err(Error::Internal(m))) if shutdown.is_cancelled() => {
                        tracing::info!(target: "lamina::execution", reason = %m, "stopped mid-block");
                        return Ok(());
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err(Error::Internal("prefetch ended early".into())),
                };
                let record = match self.commit(block, data).await {
                    Err(Error::Internal(m)) if shutdown.is_cancelled() => {
                        tracing::info!(target: "lamina::execution", reason = %m, "stopped mid-block");
                        return Ok(());
                    }
                    r => r?,
                };
                tracing::debug!(target: "lamina::execution", height = %record.height, txs = record.receipts.len(), root = %record.state_root, "committed");
                if self.claim_every > 0 && record.height.0 % self.claim_every == 0 {
                    claims.send_replace(Some(self.claim()));
                }
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
        }
    }

    /// Flushes and closes the store.
    pub fn close(self) -> Result<(), Error> {
        self.store.sync()?;
        Ok(())
    }
}

/// What fetching a block's data needs (shared with concurrent prefetches).
#[derive(Debug)]
struct Fetch {
    namespace: Namespace,
    verify: bool,
    da_committee: Committee,
    da_threshold: usize,
}

/// A block's transactions for this chain (in block order) and the data root of the last
/// square with the chain's data.
type Fetched = (Vec<lamina_primitives::Transaction>, Option<Digest>);

/// Fetches this chain's transactions of a block from DA, in block order; the block's
/// squares are fetched concurrently.
async fn fetch_block<D: DataAvailability>(
    f: &Fetch,
    block: &FinalizedBlock,
    da: &D,
    shutdown: &CancellationToken,
) -> Result<Fetched, Error> {
    let certs: Vec<_> =
        block.block.batches.iter().filter(|c| c.commitment.namespaces.binary_search(&f.namespace).is_ok()).collect();
    let squares =
        futures::future::try_join_all(certs.iter().map(|cert| fetch_square(f, block, cert, da, shutdown))).await?;
    let mut txs = Vec::new();
    for blobs in squares {
        for blob in blobs {
            match lamina_primitives::decode::<Batch>(&blob) {
                Ok(b) if b.namespace == f.namespace => txs.extend(b.txs),
                Ok(b) => {
                    tracing::warn!(target: "lamina::execution", ns = %b.namespace, "batch of another namespace skipped")
                }
                Err(e) => tracing::warn!(target: "lamina::execution", error = %e, "undecodable batch skipped"),
            }
        }
    }
    Ok((txs, certs.last().map(|c| c.commitment.data_root)))
}

/// One square's blobs of the chain's namespace (retried until available; empty if the
/// commitment is unusable for everyone).
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
            Err(e @ (DaError::BadCommitment(_) | DaError::Rejected(_))) => {
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
