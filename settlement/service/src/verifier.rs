//! Verifier mode: replay every chain, compare each claim with the replay, and challenge
//! the first wrong step with a fraud proof.
//!
//! For each verified chain the verifier keeps a full replica
//! ([`lamina_interfaces::ChainReplica`], the execution layer's own block code). When a
//! claim is accepted by settlement, the verifier executes the claim's steps on its
//! replica (fetching each step's transactions by the shared extraction rule; data of
//! new blocks is prefetched as blocks arrive) and compares. At the first step whose
//! outcome differs, if the claim's pre-state root for that step equals the replica's
//! (so the fault is in this step, not an ancestor), the replica hands back the witness
//! of its pre-state and the verifier posts a challenge: inline when small, otherwise
//! dispersed to DA with the challenge carrying its commitment. A claim whose pre-state
//! root already differs extends a wrong ancestor; it is left alone (it is orphaned when
//! the ancestor is slashed).
//!
//! After a restart the replica starts from genesis and replays the chain from the
//! log (backfill) before checking the claims that are still pending, so a verifier that
//! was offline for part of a window still challenges in time if it returns before the
//! window ends.
//!
//! The replica executes each height once. When several claims cover the same heights
//! (several claimers of one chain), a later claim is compared with the recorded
//! results; if it is wrong, the replica restores the step's pre-state from its retained
//! undo history (the last 1024 steps), builds the witness and rolls forward again. A
//! wrong step older than that is reported (`lamina_settlement_verifier_unprovable_total`)
//! but cannot be proven.
//!
//! A square the DA layer proves wrongly encoded (its rows for a chain fail the canonical
//! rule) counts as no transactions for that chain, as it does for execution; the
//! verifier posts the proof it received as an [`Entry::BadEncoding`] (once per square),
//! so settlement keeps the evidence against the square.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_interfaces::{
    AnchorRegistry, AnchorView, Blob, ChainReplica, DaError, DataAvailability, OrderedLog, StatelessExecutor, StepEnv,
    StepOutcome, TxSubmit,
};
use lamina_net::NodeContext;
use lamina_primitives::{
    AvailabilityCertificate, ChainId, DataCommitment, Digest, FinalizedBlock, Height, Keypair, Namespace, Transaction,
    TxScope,
};
use lamina_settlement_core::{Challenge, ClaimStatus, Entry, Event, WitnessRef};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::follower::Shared;
use crate::{Config, Error, fetch};

type Prefetch = JoinHandle<Result<Vec<Transaction>, Error>>;

struct ChainVerifier {
    chain: ChainId,
    /// What the network's transaction signatures bind: the replica verifies in it.
    scope: TxScope,
    /// Settlement's anchor registry (the follower's state, always at or ahead of the
    /// heights executed here): each step sees the anchors final before its height.
    anchors: Arc<dyn AnchorView>,
    /// Keeps the registry from forgetting anchors the replica's next steps may read.
    hold: lamina_interfaces::AnchorHold,
    replica: Option<Box<dyn ChainReplica>>,
    /// Last height the replica executed (0: genesis).
    executed_to: Height,
    /// Heights with data for the chain, observed but not yet executed, with their
    /// certificates and prefetched transactions.
    pending: BTreeMap<Height, (Vec<AvailabilityCertificate>, Prefetch)>,
    /// The replica's own results: height → (pre-state root, outcome, step ordinal).
    results: BTreeMap<Height, (Digest, StepOutcome, u64)>,
    /// Certificates of the executed heights still in `results` (to refetch a step's
    /// transactions when a later claim must be proven wrong).
    certs: BTreeMap<Height, Vec<AvailabilityCertificate>>,
    /// Steps executed so far.
    steps: u64,
}

/// What the follower sends the verifier, in log order.
#[derive(Debug)]
pub enum FeedItem {
    /// A block the follower applied.
    Block(Box<FinalizedBlock>),
    /// The events of applying it.
    Events(Vec<Event>),
}

/// The follower's end of the verifier feed.
pub type Feed = tokio::sync::mpsc::Sender<FeedItem>;

/// The verifier's end of the feed.
pub type FeedReceiver = tokio::sync::mpsc::Receiver<FeedItem>;

/// Items the feed holds before the follower gives up on the verifier: about 4,000
/// blocks (a block and its events are two items), a few tens of MB. A verifier that
/// falls this far behind (it re-executes every chain, or waits on data that is gone)
/// is dropped with an error instead of making the node hold every block since.
pub const FEED_CAPACITY: usize = 8_192;

/// A verifier feed of [`FEED_CAPACITY`] items.
pub fn feed() -> (Feed, FeedReceiver) {
    tokio::sync::mpsc::channel(FEED_CAPACITY)
}

/// A claim waiting to be checked.
#[derive(Clone, Copy, Debug)]
struct Todo {
    claim: Digest,
    chain: ChainId,
}

/// The verifier of one settlement node (see the module docs).
pub struct Verifier<D, T> {
    key: Keypair,
    /// What the network's transaction signatures bind: the entries it posts are signed
    /// in it.
    scope: TxScope,
    exec: Arc<dyn StatelessExecutor>,
    da: Noting<D>,
    submit: T,
    inline_limit: usize,
    chains: BTreeMap<ChainId, ChainVerifier>,
    /// Log heights observed live (`None` until the first block): heights before the
    /// first observed one are backfilled from the log.
    first_observed: Option<Height>,
    todo: VecDeque<Todo>,
    started: bool,
    /// Nonce of the last entry posted (each entry needs a higher one).
    last_nonce: u64,
    /// Squares whose bad-encoding proof this process already posted.
    posted_evidence: HashSet<Digest>,
}

/// The verifier's DA handle: passes every call through and notes each bad-encoding
/// proof a retrieval answers with, for the verifier to post to settlement.
#[derive(Clone)]
pub struct Noting<D> {
    inner: D,
    seen: Arc<Mutex<Vec<Evidence>>>,
}

/// A square's data root and the encoded proof that it is wrongly encoded.
type Evidence = (Digest, Vec<u8>);

impl<D> Noting<D> {
    fn take(&self) -> Vec<Evidence> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<D: DataAvailability> DataAvailability for Noting<D> {
    fn submit(&self, blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send {
        self.inner.submit(blobs)
    }

    fn get_namespace(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send {
        let fetch = self.inner.get_namespace(commitment, namespace);
        let seen = self.seen.clone();
        async move {
            let r = fetch.await;
            if let Err(DaError::BadEncoding { data_root, proof, .. }) = &r {
                seen.lock().unwrap_or_else(|p| p.into_inner()).push((*data_root, proof.clone()));
            }
            r
        }
    }

    fn disperser(&self, data_root: &Digest) -> impl Future<Output = Option<lamina_primitives::NodeId>> + Send {
        self.inner.disperser(data_root)
    }
}

impl<D, T> std::fmt::Debug for Verifier<D, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("chains", &self.chains.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// Counter of challenges this verifier got accepted by intake.
const CHALLENGES_POSTED: &str = "lamina_settlement_challenges_posted_total";
/// Counter of bad-encoding proofs this verifier got accepted by intake.
const BAD_ENCODINGS_POSTED: &str = "lamina_settlement_bad_encodings_posted_total";

/// Most observed-but-unclaimed heights a chain keeps prefetched; older ones execute
/// without a claim to compare (a chain nobody claims must not grow memory).
const MAX_PENDING: usize = 512;
/// Executed steps whose pre-state the replica can still restore to prove a later,
/// conflicting claim wrong.
const RETAINED_STEPS: usize = 1024;

impl<D: DataAvailability + Clone + 'static, T: TxSubmit + Clone + 'static> Verifier<D, T> {
    /// A verifier for the configured chains (every genesis chain by default).
    pub fn new(
        ctx: &NodeContext,
        config: &Config,
        exec: Arc<dyn StatelessExecutor>,
        anchors: Arc<dyn AnchorRegistry>,
        da: D,
        submit: T,
    ) -> Result<Self, Error> {
        // The replicas start from genesis (see the module docs).
        let serves = anchors.serves_from();
        if serves > Height(1) {
            tracing::warn!(target: "lamina::settlement", serves_from = %serves, "verifier replays from genesis, but this node loaded a snapshot that forgot the anchors of heights below this; a bridge step there may replay differently, after which the replica disagrees with every later claim's pre-state and challenges nothing (no false challenge)");
            ctx.health.set_status("verifier_blind_below", serves.0);
        }
        let view: Arc<dyn AnchorView> = anchors.clone();
        let every = config.verify_chains.is_empty();
        let ids: Vec<ChainId> =
            if every { ctx.genesis.chains.iter().map(|c| c.id).collect() } else { config.verify_chains.clone() };
        let mut chains = BTreeMap::new();
        for chain in ids {
            let mut replica = match exec.replica(chain) {
                Ok(r) => r,
                // By default, a chain whose state machine this build cannot re-execute (a
                // chain builder's, not the native ledger) is left unverified, said once;
                // one named in `verify_chains` is a configuration error.
                Err(e @ lamina_interfaces::StatelessError::UnknownChain(_)) if every => {
                    tracing::warn!(target: "lamina::settlement", %chain, error = %e, "chain not verified: this verifier cannot re-execute its state machine; its claims finalize unchallenged by this node");
                    continue;
                }
                Err(e) => return Err(Error::Config(format!("verifier: {e}"))),
            };
            replica.retain_history(RETAINED_STEPS);
            chains.insert(
                chain,
                ChainVerifier {
                    chain,
                    scope: ctx.genesis.tx_scope(),
                    anchors: view.clone(),
                    // What is forgotten already cannot be held.
                    hold: anchors.hold(serves.max(Height(1))),
                    replica: Some(replica),
                    executed_to: Height(0),
                    pending: BTreeMap::new(),
                    results: BTreeMap::new(),
                    certs: BTreeMap::new(),
                    steps: 0,
                },
            );
        }
        tracing::info!(target: "lamina::settlement", chains = ?chains.keys().collect::<Vec<_>>(), "verifier mode");
        Ok(Verifier {
            key: ctx.keypair.clone(),
            scope: ctx.genesis.tx_scope(),
            exec,
            da: Noting { inner: da, seen: Arc::default() },
            submit,
            inline_limit: config.inline_witness_limit,
            chains,
            first_observed: None,
            todo: VecDeque::new(),
            started: false,
            last_nonce: 0,
            posted_evidence: HashSet::new(),
        })
    }

    /// Runs until the feed closes or `shutdown`: observes each block, checks the claims
    /// its events accept. It may fall behind the follower under load (it re-executes
    /// every chain); `lamina_settlement_verifier_height` shows where it is. A verifier
    /// more than a window behind can no longer challenge in time.
    pub async fn run<L: OrderedLog>(
        mut self,
        mut feed: FeedReceiver,
        shared: &Shared,
        log: &L,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                i = feed.recv() => i,
            };
            let r = match item {
                None => return Ok(()),
                Some(FeedItem::Block(b)) => {
                    self.observe(&b, shutdown);
                    Ok(())
                }
                Some(FeedItem::Events(e)) => self.on_events(&e, shared, log, shutdown).await,
            };
            match r {
                Err(Error::Internal(m)) if shutdown.is_cancelled() => {
                    tracing::info!(target: "lamina::settlement", reason = %m, "verifier stopped mid-check");
                    return Ok(());
                }
                r => r?,
            }
        }
    }

    /// A new block: prefetch each verified chain's data of it.
    pub fn observe(&mut self, block: &FinalizedBlock, shutdown: &CancellationToken) {
        let h = block.height();
        let first = *self.first_observed.get_or_insert(h);
        for cv in self.chains.values_mut() {
            let ns = Namespace::from(cv.chain);
            let certs = fetch::certs(block, ns);
            if certs.is_empty() {
                // Nothing of this chain here: when nothing observed is left to execute
                // (and the backfill is done), the replica's next step is above `h`.
                if cv.pending.is_empty() && cv.executed_to.next() >= first {
                    cv.hold.advance(h.next());
                }
                continue;
            }
            let (da, shutdown, c) = (self.da.clone(), shutdown.clone(), certs.clone());
            let prefetch = tokio::spawn(async move { Ok(fetch::namespace(&da, &c, ns, &shutdown).await?.txs) });
            cv.pending.insert(h, (certs, prefetch));
        }
    }

    /// Reacts to one height's settlement events: checks new claims, prunes what
    /// finality made unnecessary.
    pub async fn on_events<L: OrderedLog>(
        &mut self,
        events: &[Event],
        shared: &Shared,
        log: &L,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        if !self.started {
            // Claims accepted before this process started (replayed from the store).
            self.started = true;
            let state = shared.read();
            for chain in self.chains.keys() {
                let mut pending: Vec<_> =
                    state.claims(*chain).filter(|r| r.status == ClaimStatus::Pending).map(|r| (r.seq, r.id)).collect();
                pending.sort_unstable();
                for (_, id) in pending {
                    self.todo.push_back(Todo { claim: id, chain: *chain });
                }
            }
        }
        for e in events {
            match e {
                Event::ClaimAccepted { id, chain, .. } if self.chains.contains_key(chain) => {
                    self.todo.push_back(Todo { claim: *id, chain: *chain })
                }
                Event::Finalized { chain, to, .. } => {
                    if let Some(cv) = self.chains.get_mut(chain) {
                        cv.results = cv.results.split_off(&to.next());
                        cv.certs = cv.certs.split_off(&to.next());
                    }
                }
                _ => {}
            }
        }
        while let Some(t) = self.todo.pop_front() {
            self.check(t, shared, log, shutdown).await?;
        }
        self.post_evidence(shared, shutdown);
        for cv in self.chains.values_mut() {
            while cv.pending.len() > MAX_PENDING {
                let Some((&h, _)) = cv.pending.iter().next() else { break };
                execute(cv, h, None, self.exec.as_ref(), log, &self.da, self.first_observed, shutdown).await?;
            }
        }
        Ok(())
    }

    async fn check<L: OrderedLog>(
        &mut self,
        t: Todo,
        shared: &Shared,
        log: &L,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let (claim, parent_root) = {
            let state = shared.read();
            let Some(rec) = state.claim(&t.claim) else { return Ok(()) };
            if rec.status != ClaimStatus::Pending {
                return Ok(());
            }
            (rec.claim.clone(), Some(rec.pre_state_root))
        };
        let Some(parent_root) = parent_root else { return Ok(()) };
        let Some(cv) = self.chains.get_mut(&t.chain) else { return Ok(()) };
        let mut claimed_pre = parent_root;
        for (i, step) in claim.steps.iter().enumerate() {
            let expected = StepOutcome { state_root: step.state_root, receipts_root: step.receipts_root };
            let (pre, got, witness) = match cv.results.get(&step.height) {
                Some(&(pre, got, ordinal)) => {
                    let witness = if got != expected && pre == claimed_pre {
                        past_witness(cv, step.height, ordinal, &self.da, shutdown).await?
                    } else {
                        None
                    };
                    (pre, got, witness)
                }
                None if step.height <= cv.executed_to => {
                    // Pruned (finalized) or before a replica that moved on: nothing to compare.
                    return Ok(());
                }
                None => {
                    // Execute everything before the step without expectations, then the step.
                    while let Some((&h, _)) = cv.pending.range(..step.height).next() {
                        execute(cv, h, None, self.exec.as_ref(), log, &self.da, self.first_observed, shutdown).await?;
                    }
                    execute(
                        cv,
                        step.height,
                        Some(expected),
                        self.exec.as_ref(),
                        log,
                        &self.da,
                        self.first_observed,
                        shutdown,
                    )
                    .await?
                }
            };
            if got == expected {
                metrics::counter!("lamina_settlement_verifier_steps_ok_total").increment(1);
                claimed_pre = step.state_root;
                continue;
            }
            if pre != claimed_pre {
                tracing::info!(target: "lamina::settlement", claim = %t.claim, height = %step.height, "claim extends a wrong pre-state; its ancestor is the one to challenge");
                return Ok(());
            }
            let Some(witness) = witness else {
                metrics::counter!("lamina_settlement_verifier_unprovable_total").increment(1);
                tracing::warn!(target: "lamina::settlement", claim = %t.claim, height = %step.height, "wrong step older than the replica's retained history: cannot build a witness");
                return Ok(());
            };
            tracing::warn!(target: "lamina::settlement", claim = %t.claim, chain = %t.chain, height = %step.height, claimed = %step.state_root, replayed = %got.state_root, "wrong claim: challenging");
            // Nonces only need to increase per key: the settlement height, or one past
            // the previous challenge when several are posted in one height.
            let nonce = self.next_nonce(shared);
            self.challenge(t.claim, i as u32, witness, nonce, shutdown);
            return Ok(());
        }
        Ok(())
    }

    /// The nonce for the next entry: the settlement height, or one past the previous
    /// entry when several are posted in one height (nonces only need to increase per
    /// key).
    fn next_nonce(&mut self, shared: &Shared) -> Height {
        let (height, next) = {
            let s = shared.read();
            (s.height().0, s.account(&self.key.public()).next_nonce)
        };
        self.last_nonce = height.max(next).max(self.last_nonce + 1);
        Height(self.last_nonce)
    }

    /// Posts every bad-encoding proof the DA layer answered with since the last call,
    /// once per square and only if settlement does not already hold one for it.
    fn post_evidence(&mut self, shared: &Shared, shutdown: &CancellationToken) {
        for (data_root, proof) in self.da.take() {
            if !self.posted_evidence.insert(data_root) || shared.read().bad_data_roots().any(|r| *r == data_root) {
                continue;
            }
            tracing::warn!(target: "lamina::settlement", %data_root, proof_bytes = proof.len(), "square proven wrongly encoded: posting the proof");
            let nonce = self.next_nonce(shared);
            let entry = Entry::BadEncoding { data_root, proof };
            match Entry::transaction(&self.key, self.scope, nonce.0, &entry) {
                Ok(tx) => post_in_background(
                    self.submit.clone(),
                    tx,
                    "bad-encoding proof",
                    metrics::counter!(BAD_ENCODINGS_POSTED),
                    shutdown,
                ),
                Err(e) => {
                    tracing::error!(target: "lamina::settlement", error = %e, "cannot encode a bad-encoding entry")
                }
            }
        }
    }

    /// Posts a challenge in the background (dispersing a large witness to DA first).
    fn challenge(&self, claim: Digest, step: u32, witness: Vec<u8>, nonce: Height, shutdown: &CancellationToken) {
        let (key, da, submit, inline) = (self.key.clone(), self.da.clone(), self.submit.clone(), self.inline_limit);
        let scope = self.scope;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let witness_ref = if witness.len() <= inline {
                WitnessRef::Inline(witness)
            } else {
                let hash = lamina_settlement_core::witness_hash(&witness);
                let len = witness.len() as u64;
                loop {
                    let blob = Blob { namespace: Namespace::SETTLEMENT, data: witness.clone() };
                    match da.submit(vec![blob]).await {
                        Ok(cert) => {
                            break WitnessRef::Da {
                                commitment: cert.commitment,
                                namespace: Namespace::SETTLEMENT,
                                hash,
                                len,
                            };
                        }
                        Err(e) => {
                            tracing::warn!(target: "lamina::settlement", error = %e, "witness dispersal failed; retrying");
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            };
            let entry = Entry::Challenge(Challenge { claim, step, witness: witness_ref });
            let tx = match Entry::transaction(&key, scope, nonce.0, &entry) {
                Ok(tx) => tx,
                Err(e) => {
                    tracing::error!(target: "lamina::settlement", error = %e, "cannot encode challenge");
                    return;
                }
            };
            tracing::info!(target: "lamina::settlement", %claim, step, "posting challenge");
            post_in_background(submit, tx, "challenge", metrics::counter!(CHALLENGES_POSTED), &shutdown);
        });
    }
}

/// Submits `tx` to every validator ([`TxSubmit::submit_widely`]) in a background task,
/// retrying with backoff until one takes it or `shutdown`; counts `posted` on success.
fn post_in_background<T: TxSubmit + 'static>(
    submit: T,
    tx: Transaction,
    what: &'static str,
    posted: metrics::Counter,
    shutdown: &CancellationToken,
) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            // To every validator: a faulty one must not be able to censor a fraud proof
            // or evidence against itself.
            match submit.submit_widely(tx.clone()).await {
                Ok(_) => {
                    posted.increment(1);
                    tracing::info!(target: "lamina::settlement", what, "posted");
                    return;
                }
                Err(e) => {
                    tracing::warn!(target: "lamina::settlement", what, error = %e, "not accepted; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

/// Executes the replica's next step at height `h` (backfilling earlier heights from the
/// log when this process never observed them). Returns (pre-state root, outcome,
/// witness when `expected` differs).
#[allow(clippy::too_many_arguments)]
async fn execute<L: OrderedLog, D: DataAvailability>(
    cv: &mut ChainVerifier,
    h: Height,
    expected: Option<StepOutcome>,
    exec: &dyn StatelessExecutor,
    log: &L,
    da: &D,
    first_observed: Option<Height>,
    shutdown: &CancellationToken,
) -> Result<(Digest, StepOutcome, Option<Vec<u8>>), Error> {
    let _ = exec;
    // Backfill: heights below the first observed one were never prefetched.
    let first = first_observed.unwrap_or(Height(1));
    let mut at = cv.executed_to.next();
    while at < first.min(h.next()) {
        let blocks = tokio::select! {
            _ = shutdown.cancelled() => return Err(Error::Internal("shutdown during backfill".into())),
            r = log.read(at, 64) => r.map_err(|e| Error::Log(format!("verifier backfill at {at}: {e}")))?,
        };
        if blocks.is_empty() {
            break;
        }
        for block in blocks {
            let bh = block.height();
            if bh >= first || bh > h {
                break;
            }
            let ns = Namespace::from(cv.chain);
            let certs = fetch::certs(&block, ns);
            if !certs.is_empty() {
                let txs = fetch::namespace(da, &certs, ns, shutdown).await?.txs;
                let exp = if bh == h { expected } else { None };
                let r = run_step(cv, bh, certs, txs, exp).await?;
                if bh == h {
                    return Ok(r);
                }
            }
            cv.executed_to = cv.executed_to.max(bh);
            cv.hold.advance(cv.executed_to.next());
            at = bh.next();
        }
    }
    let (certs, txs) = match cv.pending.remove(&h) {
        Some((certs, handle)) => (certs, handle.await.map_err(|e| Error::Internal(e.to_string()))??),
        None => (Vec::new(), Vec::new()),
    };
    run_step(cv, h, certs, txs, expected).await
}

/// The witness of the pre-state of the already executed step at `h` (its transactions
/// fetched again from DA), or `None` when the replica no longer retains it.
async fn past_witness<D: DataAvailability>(
    cv: &mut ChainVerifier,
    h: Height,
    ordinal: u64,
    da: &D,
    shutdown: &CancellationToken,
) -> Result<Option<Vec<u8>>, Error> {
    let back = (cv.steps - 1 - ordinal) as usize;
    if back >= RETAINED_STEPS {
        return Ok(None);
    }
    let Some(certs) = cv.certs.get(&h) else { return Ok(None) };
    let txs = fetch::namespace(da, certs, Namespace::from(cv.chain), shutdown).await?.txs;
    let mut replica = cv.replica.take().ok_or_else(|| Error::Internal("replica lost".into()))?;
    let env = StepEnv::new(h, cv.scope, cv.anchors.clone());
    let (replica, witness) = tokio::task::spawn_blocking(move || {
        let w = replica.past_witness(back, &env, &txs);
        (replica, w)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    cv.replica = Some(replica);
    Ok(witness)
}

async fn run_step(
    cv: &mut ChainVerifier,
    h: Height,
    certs: Vec<AvailabilityCertificate>,
    txs: Vec<Transaction>,
    expected: Option<StepOutcome>,
) -> Result<(Digest, StepOutcome, Option<Vec<u8>>), Error> {
    let mut replica = cv.replica.take().ok_or_else(|| Error::Internal("replica lost".into()))?;
    let env = StepEnv::new(h, cv.scope, cv.anchors.clone());
    let (replica, pre, out, witness) = tokio::task::spawn_blocking(move || {
        let pre = replica.state_root();
        let (out, witness) = replica.execute_step(&env, &txs, expected.as_ref());
        (replica, pre, out, witness)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    cv.replica = Some(replica);
    cv.executed_to = h;
    cv.hold.advance(h.next());
    cv.results.insert(h, (pre, out, cv.steps));
    cv.certs.insert(h, certs);
    cv.steps += 1;
    // Results are pruned at finality; a chain that never finalizes keeps only what the
    // replica could still prove.
    while cv.results.len() > RETAINED_STEPS {
        cv.results.pop_first();
        cv.certs.pop_first();
    }
    metrics::gauge!("lamina_settlement_verifier_height", "chain" => cv.chain.0.to_string()).set(h.0 as f64);
    Ok((pre, out, witness))
}
