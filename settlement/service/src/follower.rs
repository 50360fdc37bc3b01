//! The follower: reads the ordered log, gathers each height's inputs, persists them,
//! and applies them to the settlement state machine.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt as _;

use lamina_interfaces::inputs::namespace_data_roots;
use lamina_interfaces::{
    AnchorView, DataAvailability, EncodingFraudVerifier, FinalizedRoot, GenesisParams, Health, LogError, OrderedLog,
    ParamsRegistry, ParamsView, StatelessExecutor,
};
use lamina_net::NodeContext;
use lamina_primitives::{ChainId, Committee, FinalizedBlock, Height, Namespace};
use lamina_settlement_core::{Entry, Event, Params, SettlementState, WitnessRef};
use lamina_store::Log;
use tokio_util::sync::CancellationToken;

use crate::record::{ChainData, Header, HeightRecord, StoredInput, VERSION};
use crate::snapshot::Snapshots;
use crate::verifier::{Feed, FeedItem};
use crate::{Config, Error, fetch};

/// Heights the service may trail the log tip and still report `caught_up`.
const CAUGHT_UP_LAG: u64 = 20;
/// Blocks whose settlement data is fetched from DA concurrently while earlier ones apply.
const PREFETCH: usize = 16;

/// The settlement state shared between the follower and the query servers.
#[derive(Debug)]
pub struct Shared {
    state: RwLock<SettlementState>,
    /// Highest log height known to exist (for lag reporting).
    tip: std::sync::atomic::AtomicU64,
    /// Readers' holds on the anchors ([`lamina_interfaces::AnchorRegistry::hold`]).
    holds: std::sync::Mutex<Holds>,
}

/// The live holds on a registry's anchors.
#[derive(Debug, Default)]
struct Holds {
    positions: Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>,
    /// Forget nothing until the first hold arrives ([`Shared::wait_for_hold`]).
    waiting: bool,
}

impl Shared {
    /// Read access (queries).
    pub fn read(&self) -> RwLockReadGuard<'_, SettlementState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SettlementState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The log tip the follower last saw.
    pub fn log_tip(&self) -> Height {
        Height(self.tip.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn new(state: SettlementState) -> Self {
        Shared { state: RwLock::new(state), tip: Default::default(), holds: Default::default() }
    }

    /// Makes the follower forget no anchor until a reader takes its first hold (an
    /// execution node's registry, started before the node knows its height).
    pub fn wait_for_hold(&self) {
        self.holds.lock().unwrap_or_else(|e| e.into_inner()).waiting = true;
    }

    /// The lowest position of the live holds (`Some(0)` while waiting for the first).
    fn held_from(&self) -> Option<Height> {
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        if holds.waiting {
            return Some(Height(0));
        }
        let mut low = None;
        holds.positions.retain(|w| match w.upgrade() {
            Some(at) => {
                let h = Height(at.load(std::sync::atomic::Ordering::Relaxed));
                low = Some(low.map_or(h, |l: Height| l.min(h)));
                true
            }
            None => false,
        });
        low
    }

    /// Forgets the anchors no step can use any more: below the rules' own floor and
    /// every reader's hold.
    fn forget_anchors(&self) {
        // Holds are read under the write lock: a reader that takes its hold and then
        // reads `serves_from` either is counted here or sees what this forgot.
        let mut state = self.write();
        let held = self.held_from();
        let floor = state.anchor_floor();
        let below = held.map_or(floor, |h| floor.min(h));
        state.forget_anchors(below);
        metrics::gauge!("lamina_settlement_anchors_kept").set(state.anchors_kept() as f64);
    }
}

/// Settlement's anchor registry as the follower has built it so far (append-only, so a
/// reader at log height `h` gets the same answers once the follower has applied `h - 1`).
impl AnchorView for Shared {
    fn anchor(&self, chain: ChainId, index: u64) -> Option<FinalizedRoot> {
        self.read().anchor_root(chain, index)
    }
}

impl lamina_interfaces::AnchorRegistry for Shared {
    fn applied(&self) -> Height {
        self.read().height()
    }

    fn serves_from(&self) -> Height {
        self.read().serves_from()
    }

    fn hold(&self, from: Height) -> lamina_interfaces::AnchorHold {
        let (hold, position) = lamina_interfaces::AnchorHold::new(from);
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.positions.push(position);
        holds.waiting = false;
        hold
    }
}

/// The follower of one settlement node.
pub struct Follower {
    shared: Arc<Shared>,
    store: Log,
    exec: Arc<dyn StatelessExecutor>,
    encoding: Arc<dyn EncodingFraudVerifier>,
    verify: bool,
    /// Check each block's certificate against the genesis committee here too. Off where
    /// committees change by vote: the log reader checks every block against its
    /// height's committee, which this service does not know.
    verify_blocks: bool,
    validators: Committee,
    da_committee: Committee,
    da_threshold: usize,
    chains: Vec<ChainId>,
    read_batch: usize,
    snapshots: Snapshots,
    snapshot_every: u64,
    keep_snapshots: usize,
    /// Height of the last snapshot written or loaded.
    last_snapshot: Height,
    network: lamina_primitives::Digest,
    /// Ids of the settlement transactions of the last heights applied here (at most
    /// [`RECENT_IDS`]): a rejected entry whose id is among them is a copy of one already
    /// ordered (claims and proofs go to every validator), reported quietly. Logging
    /// only: the state does not depend on it.
    recent: RecentIds,
    /// Governance's parameters that `exec` charges by, if the node follows them.
    params: Option<Arc<dyn ParamsRegistry>>,
}

/// How many recent settlement transaction ids the follower remembers to tell copies
/// from other rejected entries.
const RECENT_IDS: usize = 4096;

/// A bounded set of transaction ids, oldest evicted first.
#[derive(Default)]
struct RecentIds {
    set: std::collections::HashSet<lamina_primitives::TxId>,
    order: std::collections::VecDeque<lamina_primitives::TxId>,
}

impl RecentIds {
    /// Remembers `id`; `true` if it was already known.
    fn insert(&mut self, id: lamina_primitives::TxId) -> bool {
        if !self.set.insert(id) {
            return true;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        false
    }
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").field("height", &self.shared.read().height()).finish_non_exhaustive()
    }
}

impl Follower {
    /// Opens (or creates) the store in `data_dir/settlement` and rebuilds the state: from
    /// the newest snapshot that loads (see [`crate::snapshot`]) and the records after
    /// it, else by replaying the records from genesis. Refuses a store whose early
    /// records were pruned when no snapshot loads.
    ///
    /// With `governed` (governance's parameters, which `exec` charges by), every height
    /// whose chains' steps settlement may re-execute is applied only once the registry's
    /// answers are final for it (see [`Follower::follow`]); the replay here waits for
    /// that at heights holding a challenge, and fails on `shutdown`.
    pub async fn open(
        ctx: &NodeContext,
        config: &Config,
        exec: Arc<dyn StatelessExecutor>,
        encoding: Arc<dyn EncodingFraudVerifier>,
        governed: Option<Arc<dyn ParamsRegistry>>,
        shutdown: &CancellationToken,
    ) -> Result<Self, Error> {
        let genesis = &ctx.genesis;
        let store = Log::open(ctx.data_dir.join("settlement"), config.store_config())?;
        let network = genesis.network_id();
        let header = Header { version: VERSION, network };
        if store.next_seq() == 0 {
            let bytes = lamina_primitives::encode(&header).map_err(|e| Error::Internal(e.to_string()))?;
            store.append_durable(&bytes)?;
        } else if store.first_seq() == 0 {
            let rec = store.read(0)?.ok_or_else(|| Error::BadStore("missing header record".into()))?;
            let got: Header = lamina_primitives::decode(rec.bytes()).map_err(|e| Error::BadStore(e.to_string()))?;
            if got != header {
                return Err(Error::BadStore(format!(
                    "store was written for network {} (version {}), this node runs {} (version {VERSION})",
                    got.network, got.version, header.network
                )));
            }
        }
        // Else the header was pruned with the oldest records: the snapshot that must
        // load below binds the network instead.
        let params = Params::from_genesis(genesis);
        let snapshots = Snapshots::new(&ctx.data_dir);
        let first = store.first_seq().max(1);
        let mut loaded = None;
        for (h, path) in
            snapshots.list().map_err(|e| Error::BadStore(format!("cannot list snapshots: {e}")))?.into_iter().rev()
        {
            match Snapshots::load(&path, network, &params) {
                // Usable only if every record after it is still in the store.
                Ok(l) if l.records_from >= first || first <= 1 => {
                    loaded = Some(l);
                    break;
                }
                Ok(l) => {
                    tracing::warn!(target: "lamina::settlement", height = %h, records_from = l.records_from, first_record = first, "snapshot older than the store's first record; not used");
                }
                Err(e) => {
                    tracing::warn!(target: "lamina::settlement", path = %path.display(), error = %e, "snapshot does not load; set aside");
                    Snapshots::set_aside(&path);
                }
            }
        }
        let (mut state, from, last_snapshot) = match loaded {
            Some(l) => {
                tracing::info!(target: "lamina::settlement", height = %l.height, "state loaded from snapshot");
                (l.state, l.records_from.max(first), l.height)
            }
            None if first > 1 => {
                return Err(Error::BadStore(format!(
                    "records before {first} were pruned and no snapshot under {} loads: move {} aside to rebuild \
                     settlement from the ordered log",
                    snapshots.dir().display(),
                    ctx.data_dir.join("settlement").display()
                )));
            }
            None => (SettlementState::new(params), 1, Height(0)),
        };
        let mut replayed = 0usize;
        for item in store.iter_from(from) {
            let rec = item?;
            let r: HeightRecord = lamina_primitives::decode(rec.bytes()).map_err(|e| Error::BadStore(e.to_string()))?;
            if r.height <= state.height() {
                if r.height <= last_snapshot {
                    continue; // Already in the snapshot.
                }
                return Err(Error::BadStore(format!("record for height {} after {}", r.height, state.height())));
            }
            // Re-executed steps read governance's parameters, and so does every claim's
            // deadline (the challenge window in force at its height).
            if !r.entries.is_empty() {
                wait_for_params(governed.as_deref(), r.height, shutdown).await?;
            }
            let frozen = governed.as_ref().map(|g| g.frozen());
            let view = view_of(frozen.as_deref());
            apply_gap(&mut state, r.height, exec.as_ref(), encoding.as_ref(), view);
            state.observe_block(r.height, &r.observed());
            state.apply_entries_governed(
                r.height,
                r.entries.iter().map(StoredInput::to_input).collect(),
                &*exec,
                &*encoding,
                view,
            );
            replayed += 1;
        }
        tracing::info!(target: "lamina::settlement", height = %state.height(), records = replayed, root = %state.state_root(), "store replayed");
        Ok(Follower {
            shared: Arc::new(Shared::new(state)),
            store,
            exec,
            encoding,
            // Where committees change by vote, neither the block certificates nor the
            // availability certificates are checked again here against the genesis
            // committees: the log client checks each block against its height's
            // validators, whose core checked each availability certificate against the
            // epoch's DA committee.
            verify: config.verify_certificates && !genesis.governance.committee_changes,
            verify_blocks: config.verify_certificates && !genesis.governance.committee_changes,
            validators: genesis.validator_committee(),
            da_committee: genesis.da_committee(),
            da_threshold: genesis.da_threshold(),
            chains: genesis.chains.iter().map(|c| c.id).collect(),
            read_batch: config.read_batch,
            snapshots,
            snapshot_every: config.snapshot_every,
            keep_snapshots: config.keep_snapshots.max(1),
            last_snapshot,
            network,
            recent: RecentIds::default(),
            params: governed,
        })
    }

    /// Writes a snapshot when `snapshot_every` heights have passed since the last one,
    /// then deletes older snapshots and the records below the oldest kept one. Called
    /// right after the store's sync, so the snapshot's `records_from` is exact. A
    /// snapshot that cannot be written is logged and tried again one interval later
    /// (the records stay); a store that fails to prune stops the node (fail-stop).
    async fn maybe_snapshot(&mut self) -> Result<(), Error> {
        let (height, image, root) = {
            let state = self.shared.read();
            let h = state.height();
            if self.snapshot_every == 0 || h.0 < self.last_snapshot.0.saturating_add(self.snapshot_every) {
                return Ok(());
            }
            (h, state.image(), state.state_root())
        };
        let records_from = self.store.next_seq();
        let (snapshots, network, keep) = (self.snapshots.clone(), self.network, self.keep_snapshots);
        let written = tokio::task::spawn_blocking(move || -> Result<Option<u64>, String> {
            snapshots.write(network, root, height, records_from, image)?;
            snapshots.retain(keep).map_err(|e| format!("cannot delete old snapshots: {e}"))
        })
        .await
        .map_err(|e| Error::Internal(format!("snapshot task: {e}")))?;
        match written {
            Ok(keep_from) => {
                self.last_snapshot = height;
                metrics::gauge!("lamina_settlement_snapshot_height").set(height.0 as f64);
                tracing::info!(target: "lamina::settlement", %height, %root, "snapshot written");
                if let Some(seq) = keep_from {
                    self.store.prune_below(seq)?;
                }
            }
            Err(e) => {
                tracing::warn!(target: "lamina::settlement", %height, error = %e, "snapshot not written; records kept");
                // Try again after another full interval rather than at every batch.
                self.last_snapshot = height;
            }
        }
        Ok(())
    }

    /// The state queries read.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Last processed log height.
    pub fn height(&self) -> Height {
        self.shared.read().height()
    }

    /// Follows the log from the next height until shutdown (returns `Ok`) or an error.
    ///
    /// With `feed`, every block and the events of applying it are also sent to a
    /// verifier task ([`crate::verifier::Verifier::run`]), which runs beside the follower
    /// so that re-executing chains never holds back the settlement height.
    pub async fn follow<L: OrderedLog, D: DataAvailability>(
        &mut self,
        log: &L,
        da: &D,
        mut feed: Option<Feed>,
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
                    tracing::warn!(target: "lamina::settlement", error = %e, "log read failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => return Err(Error::Log(e.to_string())),
            };
            // Fetch the settlement namespace of up to PREFETCH blocks concurrently;
            // apply in order.
            let (verify, committee, threshold) = (self.verify, self.da_committee.clone(), self.da_threshold);
            let futs: Vec<_> =
                blocks.iter().map(|b| settlement_entries(b, verify, &committee, threshold, da, shutdown)).collect();
            let mut fetched = futures::stream::iter(futs).buffered(PREFETCH);
            for block in &blocks {
                let expected = self.height().next();
                if block.height() != expected {
                    return Err(Error::Log(format!("got height {}, expected {expected}", block.height())));
                }
                let extracted = match fetched.next().await {
                    Some(r) => r,
                    None => return Err(Error::Internal("prefetch ended early".into())),
                };
                let record = match async { self.gather(block, extracted?, log, da, shutdown).await }.await {
                    Err(Error::Internal(m)) if shutdown.is_cancelled() => {
                        tracing::info!(target: "lamina::settlement", reason = %m, "stopped mid-block");
                        return Ok(());
                    }
                    r => r?,
                };
                // Steps settlement may re-execute at this height, and every step the
                // verifier executes up to it (it backfills from genesis after a restart),
                // need governance's parameters final through it.
                match wait_for_params(self.params.as_deref(), record.height, shutdown).await {
                    Err(_) if shutdown.is_cancelled() => return Ok(()),
                    r => r?,
                }
                let events = self.apply(&record)?;
                if let Some(f) = &feed {
                    // A closed feed means the verifier stopped; the follower goes on. A
                    // full one means it fell FEED_CAPACITY items behind: dropping the
                    // feed ends it, so the node does not hold every block since.
                    let mut sent = f.try_send(FeedItem::Block(Box::new(block.clone())));
                    if sent.is_ok() && !events.is_empty() {
                        sent = f.try_send(FeedItem::Events(events));
                    }
                    if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = sent {
                        tracing::error!(
                            target: "lamina::settlement",
                            height = %block.height(),
                            backlog = crate::verifier::FEED_CAPACITY,
                            "the verifier fell too far behind (it re-executes every chain, or waits on data DA no \
                             longer holds); it stops here, and claims after this height are not checked by this node \
                             (a restart replays the chains from genesis, which needs DA to still hold them)"
                        );
                        metrics::counter!("lamina_settlement_verifier_dropped_total").increment(1);
                        health.set_status("verifier", "stopped: fell too far behind the follower");
                        feed = None;
                    }
                }
            }
            // Records are appended per height and synced once per read batch: a kill -9
            // loses at most this batch, which the restart reads again from the log.
            self.store.sync()?;
            self.shared.forget_anchors();
            self.maybe_snapshot().await?;
            let tip = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                t = log.tip() => t.unwrap_or(Height(0)),
            };
            self.shared.tip.store(tip.0, std::sync::atomic::Ordering::Relaxed);
            self.report(tip, health);
        }
    }

    /// Verifies `block` and gathers what settlement needs of it (`extracted`: its
    /// settlement-namespace transactions, fetched by [`settlement_entries`]).
    async fn gather<L: OrderedLog, D: DataAvailability>(
        &self,
        block: &FinalizedBlock,
        extracted: lamina_interfaces::inputs::Extracted,
        log: &L,
        da: &D,
        shutdown: &CancellationToken,
    ) -> Result<HeightRecord, Error> {
        let height = block.height();
        if self.verify_blocks {
            block.verify(&self.validators).map_err(|e| Error::Log(format!("height {height}: {e}")))?;
        }
        let mut chains = Vec::new();
        for &chain in &self.chains {
            let ns = Namespace::from(chain);
            let data_roots = namespace_data_roots(block, ns);
            if data_roots.is_empty() {
                continue;
            }
            let available = !self.verify
                || lamina_interfaces::inputs::namespace_certs(block, ns)
                    .all(|c| c.verify(&self.da_committee, self.da_threshold).is_ok());
            chains.push(ChainData { chain, data_roots, available });
        }
        if extracted.skipped > 0 {
            metrics::counter!("lamina_settlement_blobs_skipped_total").increment(extracted.skipped as u64);
        }
        let mut entries = Vec::with_capacity(extracted.txs.len());
        for tx in extracted.txs {
            let mut input = StoredInput { tx, step_txs: None, witness: None };
            if let Ok(Entry::Challenge(c)) = Entry::from_transaction(&input.tx) {
                let target = self.shared.read().challenge_target(&c);
                if let Some((chain, at)) = target {
                    input.step_txs = Some(self.step_transactions(chain, at, log, da, shutdown).await?);
                    input.witness = Some(witness_bytes(&c.witness, da, shutdown).await?);
                }
            }
            entries.push(input);
        }
        Ok(HeightRecord { height, chains, entries })
    }

    /// The transactions of `chain` at log height `at` (for judging a challenge).
    async fn step_transactions<L: OrderedLog, D: DataAvailability>(
        &self,
        chain: ChainId,
        at: Height,
        log: &L,
        da: &D,
        shutdown: &CancellationToken,
    ) -> Result<Vec<lamina_primitives::Transaction>, Error> {
        let blocks = tokio::select! {
            _ = shutdown.cancelled() => return Err(Error::Internal("shutdown during log read".into())),
            r = log.read(at, 1) => r.map_err(|e| Error::Log(format!("reading height {at} for a challenge: {e}")))?,
        };
        let block = blocks
            .into_iter()
            .next()
            .filter(|b| b.height() == at)
            .ok_or_else(|| Error::Log(format!("no block {at}")))?;
        let ns = Namespace::from(chain);
        Ok(fetch::namespace(da, &fetch::certs(&block, ns), ns, shutdown).await?.txs)
    }

    /// Persists (unsynced) and applies one height; returns the core's events.
    fn apply(&mut self, record: &HeightRecord) -> Result<Vec<Event>, Error> {
        if !record.is_empty() {
            let bytes = lamina_primitives::encode(record).map_err(|e| Error::Internal(e.to_string()))?;
            self.store.append(&bytes)?;
        }
        let inputs = record.entries.iter().map(StoredInput::to_input).collect();
        let frozen = self.params.as_ref().map(|g| g.frozen());
        let events = {
            let mut state = self.shared.write();
            state.observe_block(record.height, &record.observed());
            state.apply_entries_governed(
                record.height,
                inputs,
                &*self.exec,
                &*self.encoding,
                view_of(frozen.as_deref()),
            )
        };
        // Per id, how many of this height's entries are copies of one ordered before
        // (earlier here, or at an earlier height): that many of its rejections for a
        // used nonce or a known claim are the copies', reported quietly. The first
        // copy's own rejection, for any other reason, is logged as usual.
        let mut copies: std::collections::HashMap<lamina_primitives::TxId, usize> = Default::default();
        for e in &record.entries {
            let id = e.tx.id();
            if self.recent.insert(id) {
                *copies.entry(id).or_default() += 1;
            }
        }
        for e in &events {
            let copy = match e {
                Event::EntryRejected {
                    tx,
                    error:
                        lamina_settlement_core::Error::StaleNonce { .. } | lamina_settlement_core::Error::Duplicate(_),
                    ..
                } => copies.get_mut(tx).filter(|n| **n > 0).map(|n| *n -= 1).is_some(),
                _ => false,
            };
            match e {
                e if copy => {
                    metrics::counter!("lamina_settlement_entry_copies_total").increment(1);
                    tracing::debug!(target: "lamina::settlement", event = ?e, "copy of an entry already ordered");
                }
                e => log_event(e),
            }
        }
        metrics::gauge!("lamina_settlement_height").set(record.height.0 as f64);
        Ok(events)
    }

    fn report(&self, tip: Height, health: &Health) {
        let state = self.shared.read();
        let h = state.height();
        health.set_check("caught_up", h.0 + CAUGHT_UP_LAG >= tip.0, format!("height {h}, log tip {tip}"));
        health.set_status("settlement_height", h.0);
        let mut finalized = std::collections::BTreeMap::new();
        for &chain in &self.chains {
            let to = state.finalized(chain).map_or(0, |a| a.to.0);
            metrics::gauge!("lamina_settlement_finalized_height", "chain" => chain.0.to_string()).set(to as f64);
            finalized.insert(chain.0.to_string(), to);
        }
        health.set_status("finalized_height", finalized);
        health.set_status("anchors_kept", state.anchors_kept());
        health.set_status("anchors_serve_from", state.serves_from().0);
    }

    /// Flushes and closes the store.
    pub fn close(self) -> Result<(), Error> {
        self.store.sync()?;
        Ok(())
    }
}

/// The settlement namespace's transactions of `block` (its availability certificates
/// checked first when `verify`).
async fn settlement_entries<D: DataAvailability>(
    block: &FinalizedBlock,
    verify: bool,
    da_committee: &Committee,
    da_threshold: usize,
    da: &D,
    shutdown: &CancellationToken,
) -> Result<lamina_interfaces::inputs::Extracted, Error> {
    let certs = fetch::certs(block, Namespace::SETTLEMENT);
    if verify {
        for c in &certs {
            c.verify(da_committee, da_threshold)
                .map_err(|e| Error::Log(format!("height {}: availability certificate: {e}", block.height())))?;
        }
    }
    fetch::namespace(da, &certs, Namespace::SETTLEMENT, shutdown).await
}

/// Governance's answers as the core reads them: the genesis values without a follower.
fn view_of(governed: Option<&dyn ParamsRegistry>) -> &dyn ParamsView {
    match governed {
        Some(g) => g,
        None => &GenesisParams,
    }
}

/// Waits until the answers of `params` (if any) are final for `height`, polling (1 ms
/// growing to 20 ms) and warning every 10 s; fails on `shutdown`.
async fn wait_for_params(
    params: Option<&dyn ParamsRegistry>,
    height: Height,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let Some(reg) = params else { return Ok(()) };
    if reg.serves_from() > height {
        return Err(Error::Config(format!(
            "governance's parameter history starts at height {}, after height {height}: this node cannot \
             re-execute that height as the network did",
            reg.serves_from()
        )));
    }
    let mut wait = Duration::from_millis(1);
    let started = std::time::Instant::now();
    let mut warned = 0u64;
    while reg.final_through() < height {
        tokio::select! {
            _ = shutdown.cancelled() => {
                return Err(Error::Internal("stopped while waiting for governance's parameters".into()));
            }
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_millis(20));
        let secs = started.elapsed().as_secs();
        if secs >= 10 * (warned + 1) {
            warned += 1;
            tracing::warn!(target: "lamina::settlement", %height, governance_final_through = %reg.final_through(), waited_s = secs, "height waits for governance's parameters");
        }
    }
    Ok(())
}

/// Applies the empty heights between the state's height and `next` (exclusive), so
/// finalization runs at every height exactly as it did live.
fn apply_gap(
    state: &mut SettlementState,
    next: Height,
    exec: &dyn StatelessExecutor,
    enc: &dyn EncodingFraudVerifier,
    governed: &dyn ParamsView,
) {
    let mut h = state.height().next();
    while h < next {
        state.observe_block(h, &[]);
        state.apply_entries_governed(h, Vec::new(), exec, enc, governed);
        h = h.next();
    }
}

/// The witness bytes a challenge refers to: inline, or fetched from DA and checked
/// against its hash. `Ok(Err(_))` is the challenger's fault (unavailable, wrong hash).
async fn witness_bytes<D: DataAvailability>(
    w: &WitnessRef,
    da: &D,
    shutdown: &CancellationToken,
) -> Result<Result<Vec<u8>, String>, Error> {
    match w {
        WitnessRef::Inline(b) => Ok(Ok(b.clone())),
        WitnessRef::Da { commitment, namespace, hash, len } => {
            let fetched = tokio::select! {
                _ = shutdown.cancelled() => return Err(Error::Internal("shutdown during DA fetch".into())),
                r = tokio::time::timeout(Duration::from_secs(30), fetch::square(da, commitment, *namespace, shutdown)) => r,
            };
            let blobs = match fetched {
                Ok(b) => b?,
                Err(_) => return Ok(Err(format!("witness square {} unavailable", commitment.data_root))),
            };
            Ok(blobs
                .into_iter()
                .find(|b| b.len() as u64 == *len && lamina_settlement_core::witness_hash(b) == *hash)
                .ok_or_else(|| format!("no blob with the witness hash in square {}", commitment.data_root)))
        }
    }
}

fn log_event(e: &Event) {
    match e {
        Event::EntryRejected { .. } => {
            metrics::counter!("lamina_settlement_entries_rejected_total").increment(1);
            tracing::warn!(target: "lamina::settlement", event = ?e, "entry rejected");
        }
        Event::ClaimAccepted { .. } => {
            metrics::counter!("lamina_settlement_claims_total").increment(1);
            tracing::debug!(target: "lamina::settlement", event = ?e, "claim");
        }
        Event::Finalized { .. } => {
            metrics::counter!("lamina_settlement_finalized_total").increment(1);
            tracing::debug!(target: "lamina::settlement", event = ?e, "finalized");
        }
        Event::Duplicate { .. } => {
            metrics::counter!("lamina_settlement_duplicates_total").increment(1);
            tracing::debug!(target: "lamina::settlement", event = ?e, "duplicate of the anchored claim");
        }
        Event::Slashed { .. } => {
            metrics::counter!("lamina_settlement_slashed_total").increment(1);
            tracing::warn!(target: "lamina::settlement", event = ?e, "claim slashed");
        }
        _ => tracing::info!(target: "lamina::settlement", event = ?e, "settlement event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_interfaces::AnchorRegistry;

    fn shared() -> Shared {
        Shared::new(SettlementState::new(Params {
            network: lamina_primitives::Digest::ZERO,
            scope: lamina_primitives::TxScope::ChainOnly,
            window: 1,
            claim_bond: 0,
            challenge_bond: 0,
            challenger_reward_percent: 0,
            anchor_window: 1,
            chains: Default::default(),
            balances: vec![],
        }))
    }

    #[test]
    fn the_lowest_live_hold_bounds_forgetting_and_a_dropped_one_releases_it() {
        let s = shared();
        assert_eq!(s.held_from(), None, "no reader: the rules' floor alone");
        let a = s.hold(Height(10));
        let b = s.hold(Height(7));
        assert_eq!(s.held_from(), Some(Height(7)));
        b.advance(Height(12));
        assert_eq!(s.held_from(), Some(Height(10)));
        drop(a);
        assert_eq!(s.held_from(), Some(Height(12)));
        drop(b);
        assert_eq!(s.held_from(), None);
        assert!(s.holds.lock().unwrap().positions.is_empty(), "dead holds are swept");
    }

    #[test]
    fn a_registry_waiting_for_its_reader_forgets_nothing_until_the_first_hold() {
        let s = shared();
        s.wait_for_hold();
        assert_eq!(s.held_from(), Some(Height(0)));
        let h = s.hold(Height(500));
        assert_eq!(s.held_from(), Some(Height(500)));
        drop(h);
        assert_eq!(s.held_from(), None);
    }
}
