//! Transaction intake: the in-process [`Intake`] (a [`TxSubmit`]) and its QUIC server
//! (`lamina/intake/1`). The QUIC client, `IntakeClient` (also a [`TxSubmit`]), lives in
//! `lamina-consensus-client`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lamina_interfaces::{SubmitError, SubmitOutcome, TxSubmit};
use lamina_net::{Handler, Reject};
use lamina_primitives::sig::{self, SignedDigest};
use lamina_primitives::{ChainId, NodeId, PublicKey, Transaction, TxId, TxScope};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::MempoolConfig;
use crate::intake_log::IntakeLog;
use crate::mempool::{Mempool, MempoolLimits};
use crate::metrics as m;
use crate::protocol::{IntakeProtocol, MAX_SUBMIT_TXS, SubmitRequest, SubmitResponse, WireOutcome};
use crate::sigcheck::SigChecker;

/// Why the validator cannot order now, if it cannot ([`Intake::set_readiness`]).
type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;
type Admission = Arc<dyn Fn(&Transaction) -> Option<String> + Send + Sync>;

/// Requests with at least this many transactions are checked on a blocking thread.
const BLOCKING_AT: usize = 32;

/// In-process intake: checks transactions and puts them in the mempool. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

struct Inner {
    mempool: Arc<Mutex<Mempool>>,
    cfg: MempoolConfig,
    /// `cfg`'s limits, as the mempool's prechecks read them.
    limits: MempoolLimits,
    chains: BTreeSet<ChainId>,
    /// What the network's transaction signatures bind (`Genesis::tx_scope`).
    scope: TxScope,
    open: AtomicBool,
    /// Says why this validator cannot order transactions now (`None`: it can), asked
    /// at each submission: while it answers, submissions are answered `Busy` with the
    /// reason instead of queueing behind a validator that is not ready.
    readiness: Mutex<Option<Readiness>>,
    /// Says why a transaction is not admitted (`None`: it is), asked per transaction
    /// after the size and chain checks; see [`Intake::set_admission`].
    admission: Mutex<Option<Admission>>,
    batcher: Arc<Notify>,
    batch_bytes: usize,
    /// The intake log; `None` without one, and after [`Intake::close`] (which releases
    /// it, so that a validator restarted in the same process can reopen it).
    log: Mutex<Option<Arc<IntakeLog>>>,
    /// Checks the signatures of concurrent async submissions as one batch.
    checker: SigChecker,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("open", &self.inner.open.load(Ordering::Relaxed)).finish()
    }
}

impl Intake {
    /// Intake into `mempool`, checking signatures in `scope` (the network's,
    /// `Genesis::tx_scope`); `batcher` is woken when `batch_bytes` are queued.
    pub fn new(
        mempool: Arc<Mutex<Mempool>>,
        cfg: MempoolConfig,
        scope: TxScope,
        batcher: Arc<Notify>,
        batch_bytes: usize,
    ) -> Self {
        let chains = mempool.lock().chains().clone();
        let threads = match cfg.signature_threads {
            0 => SigChecker::default_threads(),
            n => n,
        };
        Intake {
            inner: Arc::new(Inner {
                mempool,
                limits: cfg.limits(),
                cfg,
                chains,
                scope,
                open: AtomicBool::new(true),
                readiness: Mutex::new(None),
                admission: Mutex::new(None),
                batcher,
                batch_bytes,
                log: Mutex::new(None),
                checker: SigChecker::start(threads),
            }),
        }
    }

    /// The same intake, acknowledging only what is durable in `log` (see
    /// [`crate::intake_log`]). Call before sharing it.
    pub fn with_log(self, log: Option<Arc<IntakeLog>>) -> Self {
        *self.inner.log.lock() = log;
        self
    }

    /// Sets the readiness test asked at each submission: while it returns a reason, every
    /// submission is answered `Busy` with it, so a client learns it at once and can go to
    /// another validator. Without one (the default) intake is always ready.
    pub fn set_readiness(&self, readiness: impl Fn() -> Option<String> + Send + Sync + 'static) {
        *self.inner.readiness.lock() = Some(Arc::new(readiness));
    }

    /// Sets the admission rule asked for each transaction that passed the size and chain
    /// checks: a reason refuses it as [`SubmitError::NotAdmitted`] (the node uses it to
    /// refuse governance transactions from keys that are not voting members, so that
    /// strangers cannot make every node fetch and check them). Without one every
    /// transaction is admitted.
    pub fn set_admission(&self, admission: impl Fn(&Transaction) -> Option<String> + Send + Sync + 'static) {
        *self.inner.admission.lock() = Some(Arc::new(admission));
    }

    /// Sets governance's limit on one batch's blob bytes (`None`: none): the batcher
    /// cuts within it, and intake refuses a transaction too large to fit in a batch
    /// alone (`TooLarge`, with the room left) instead of holding it forever
    /// ([`crate::mempool::Mempool::set_batch_bytes`]).
    pub fn set_batch_bytes(&self, limit: Option<u64>) {
        let changed = {
            let mut mp = self.inner.mempool.lock();
            let changed = mp.batch_bytes() != limit;
            mp.set_batch_bytes(limit);
            changed
        };
        if changed {
            tracing::info!(target: "lamina::consensus", limit = ?limit, "governance's batch size limit applies to this validator's batches");
            // A lower limit may make what is queued a full batch now.
            self.inner.batcher.notify_one();
        }
    }

    /// Stops intake: every later submission is answered `Busy` (shutdown), and the
    /// intake log is released.
    pub fn close(&self) {
        self.inner.open.store(false, Ordering::Release);
        self.inner.readiness.lock().take();
        self.inner.log.lock().take();
    }

    /// Checks and inserts transactions on the calling thread (signature checks are one
    /// batch verification of this request alone). One result per transaction, in order.
    pub fn submit_now(&self, txs: Vec<Transaction>) -> Vec<Result<SubmitOutcome, SubmitError>> {
        let mut p = match self.prepare(txs) {
            Ok(p) => p,
            Err(answer) => return answer,
        };
        if let Some(items) = p.signed(self.inner.scope).filter(|_| self.inner.cfg.verify_signatures) {
            let ok = sig::verify_batch_each(&items);
            p.apply_verdicts(&ok);
        }
        self.finish(p)
    }

    /// The open, readiness and per-transaction checks (size, chain, id) that come before
    /// signatures; `Err` is the whole answer when the request cannot be taken at all.
    fn prepare(&self, txs: Vec<Transaction>) -> Result<Prepared, Vec<Result<SubmitOutcome, SubmitError>>> {
        let inner = &self.inner;
        if !inner.open.load(Ordering::Acquire) {
            return Err(txs.iter().map(|_| Err(SubmitError::Busy("validator is shutting down".into()))).collect());
        }
        let readiness = inner.readiness.lock().clone();
        if let Some(why) = readiness.and_then(|r| r()) {
            let msg = format!("validator not ready: {why}");
            return Err(txs.iter().map(|_| Err(SubmitError::Busy(msg.clone()))).collect());
        }
        let mut results: Vec<Option<Result<SubmitOutcome, SubmitError>>> = vec![None; txs.len()];
        let mut ids = Vec::with_capacity(txs.len());
        let admission = inner.admission.lock().clone();
        for (i, tx) in txs.iter().enumerate() {
            let checked = Mempool::precheck(&inner.limits, &inner.chains, tx).and_then(|id| {
                match admission.as_ref().and_then(|a| a(tx)) {
                    Some(why) => Err(SubmitError::NotAdmitted(why)),
                    None => Ok(id),
                }
            });
            match checked {
                Ok(id) => ids.push(Some(id)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    ids.push(None);
                }
            }
        }
        // Until `finish` inserts or refuses them, the mempool keeps open the gaps these
        // could fill (one may be the missing nonce; signatures can queue under load).
        let sequences: Vec<(PublicKey, ChainId, u64)> = txs
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_some())
            .map(|(tx, _)| (tx.sender, tx.chain_id, tx.nonce))
            .collect();
        if !sequences.is_empty() {
            inner.mempool.lock().checking(&sequences);
        }
        let checking = Checking { mempool: inner.mempool.clone(), sequences };
        Ok(Prepared { txs, ids, results, checking })
    }

    /// Inserts what passed every check into the mempool, logs it, waits until it is
    /// durable (with an intake log) and answers. Blocks on the intake log's sync.
    fn finish(&self, mut p: Prepared) -> Vec<Result<SubmitOutcome, SubmitError>> {
        let inner = &self.inner;
        // The log first, then `open`: `close` clears `open` before it releases the log,
        // so a request that still sees intake open also holds the log, and one that
        // waited for its signatures while intake closed is refused, never acknowledged
        // without its intake-log record.
        let log = inner.log.lock().clone();
        if !inner.open.load(Ordering::Acquire) {
            p.refuse_standing("validator is shutting down");
        }
        let Prepared { txs, ids, mut results, mut checking } = p;
        let sequences = std::mem::take(&mut checking.sequences);
        let now = crate::mempool::now();
        let (queued, was_idle, idle, record) = {
            let mut mp = inner.mempool.lock();
            // In the inserts' critical section: no gap is released between the two.
            mp.checked(&sequences);
            let was_idle = mp.is_idle();
            let mut accepted = Vec::new();
            for (i, tx) in txs.into_iter().enumerate() {
                if let Some(id) = ids[i] {
                    let keep = log.is_some().then(|| tx.clone());
                    let r = mp.insert(tx, id, now);
                    if let (Ok(SubmitOutcome::Accepted(_)), Some(tx)) = (&r, keep) {
                        accepted.push((i, tx));
                    }
                    results[i] = Some(r);
                }
            }
            // Logged under the mempool lock, so the record precedes any `Certified`
            // record of a batch that cuts these transactions.
            let record = match &log {
                Some(log) if !accepted.is_empty() => {
                    let txs: Vec<Transaction> = accepted.iter().map(|(_, t)| t.clone()).collect();
                    Some((log.accepted(&txs), accepted))
                }
                _ => None,
            };
            (mp.queued_bytes(), was_idle, mp.is_idle(), record)
        };
        if let (Some(log), Some((appended, accepted))) = (&log, record) {
            let durable = appended.and_then(|seq| log.wait_durable(seq));
            if let Err(e) = durable {
                // Not acknowledged: they may still be ordered (they are in the mempool),
                // as after a timeout; the client may resubmit (a duplicate is harmless).
                tracing::error!(target: "lamina::consensus", error = %e, "intake log write failed");
                for (i, _) in accepted {
                    results[i] = Some(Err(SubmitError::Busy(format!("intake log not durable: {e}"))));
                }
            }
        }
        // Wake the batcher when a square's worth is queued, or when the mempool stops
        // being idle (the batcher sleeps without a timer while it is).
        if queued >= inner.batch_bytes || (was_idle && !idle) {
            inner.batcher.notify_one();
        }
        let out: Vec<Result<SubmitOutcome, SubmitError>> =
            results.into_iter().map(|r| r.unwrap_or_else(|| Err(SubmitError::Malformed("unchecked".into())))).collect();
        for r in &out {
            let label = match r {
                Ok(SubmitOutcome::Accepted(_)) => "accepted",
                Ok(SubmitOutcome::Duplicate(_)) => "duplicate",
                Err(SubmitError::Busy(_)) => "busy",
                Err(SubmitError::TooLarge { .. }) => "too_large",
                Err(SubmitError::UnknownChain(_)) => "unknown_chain",
                Err(SubmitError::BadSignature) => "bad_signature",
                Err(SubmitError::NotAdmitted(_)) => "not_admitted",
                Err(_) => "malformed",
            };
            metrics::counter!(m::INTAKE, "outcome" => label).increment(1);
        }
        out
    }

    /// [`Intake::submit_now`] for async callers: signatures go to a checker shared by
    /// every request (`sigcheck`), which checks concurrent requests as one batch. Large
    /// requests are prepared on a blocking thread, and so is the mempool insert when the
    /// request is large or the intake log must be synced.
    pub async fn submit_async(&self, txs: Vec<Transaction>) -> Vec<Result<SubmitOutcome, SubmitError>> {
        let n = txs.len();
        let failed = |e: tokio::task::JoinError| {
            (0..n).map(|_| Err(SubmitError::Transport(format!("intake task failed: {e}")))).collect()
        };
        let prepared = if n < BLOCKING_AT {
            self.prepare(txs)
        } else {
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.prepare(txs)).await {
                Ok(p) => p,
                Err(e) => return failed(e),
            }
        };
        let mut p = match prepared {
            Ok(p) => p,
            Err(answer) => return answer,
        };
        if let Some(items) = p.signed(self.inner.scope).filter(|_| self.inner.cfg.verify_signatures) {
            match self.inner.checker.check(items).await {
                Ok(ok) => p.apply_verdicts(&ok),
                Err(why) => p.refuse_standing(&why),
            }
        }
        if n < BLOCKING_AT && self.inner.log.lock().is_none() {
            return self.finish(p);
        }
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.finish(p)).await {
            Ok(r) => r,
            Err(e) => failed(e),
        }
    }
}

/// A request between its checks: the transactions, their ids (`None`: refused, with its
/// answer in `results`).
struct Prepared {
    txs: Vec<Transaction>,
    ids: Vec<Option<TxId>>,
    results: Vec<Option<Result<SubmitOutcome, SubmitError>>>,
    checking: Checking,
}

/// The (sender, chain, nonce) of a request's transactions that passed the prechecks,
/// marked [`Mempool::checking`] until `finish` ends them; dropped earlier (a failed
/// task, a cancelled request), it ends them itself.
struct Checking {
    mempool: Arc<Mutex<Mempool>>,
    sequences: Vec<(PublicKey, ChainId, u64)>,
}

impl Drop for Checking {
    fn drop(&mut self) {
        if !self.sequences.is_empty() {
            self.mempool.lock().checked(&self.sequences);
        }
    }
}

impl Prepared {
    /// What to verify, in the order of the transactions still standing; `None` when
    /// nothing is left to check.
    fn signed(&self, scope: TxScope) -> Option<Vec<SignedDigest>> {
        let items: Vec<SignedDigest> = self
            .txs
            .iter()
            .zip(&self.ids)
            .filter_map(|(tx, id)| {
                id.map(|id| SignedDigest {
                    public_key: tx.sender,
                    message: scope.message(&id),
                    signature: tx.signature,
                })
            })
            .collect();
        (!items.is_empty()).then_some(items)
    }

    /// Answers `Busy` with `why` to every transaction still standing.
    fn refuse_standing(&mut self, why: &str) {
        for (i, id) in self.ids.iter_mut().enumerate() {
            if id.take().is_some() {
                self.results[i] = Some(Err(SubmitError::Busy(why.to_string())));
            }
        }
    }

    /// Refuses the transactions whose signature failed (`ok` in [`Prepared::signed`]
    /// order; a short answer refuses the rest).
    fn apply_verdicts(&mut self, ok: &[bool]) {
        let mut verdicts = ok.iter();
        for (i, id) in self.ids.iter_mut().enumerate() {
            if id.is_some() && !verdicts.next().copied().unwrap_or(false) {
                self.results[i] = Some(Err(SubmitError::BadSignature));
                *id = None;
            }
        }
    }
}

impl TxSubmit for Intake {
    fn submit(&self, tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
        let r = self.submit_now(vec![tx]).pop().unwrap_or_else(|| Err(SubmitError::Malformed("empty".into())));
        std::future::ready(r)
    }

    fn submit_many(
        &self,
        txs: Vec<Transaction>,
    ) -> impl Future<Output = Vec<Result<SubmitOutcome, SubmitError>>> + Send {
        let this = self.clone();
        async move { this.submit_async(txs).await }
    }
}

/// Serves `lamina/intake/1..2`.
pub(crate) struct IntakeHandler {
    pub(crate) intake: Intake,
}

impl Handler<IntakeProtocol> for IntakeHandler {
    async fn request(&self, _peer: NodeId, req: SubmitRequest) -> Result<SubmitResponse, Reject> {
        if req.txs.len() > MAX_SUBMIT_TXS {
            return Err(Reject::bad_request(format!(
                "{} transactions exceed the limit {MAX_SUBMIT_TXS}",
                req.txs.len()
            )));
        }
        let results = self.intake.submit_async(req.txs).await;
        // Answer in what this connection's version can decode (1 has no NotAdmitted).
        let version = lamina_net::request_version().unwrap_or(1);
        Ok(SubmitResponse { results: results.iter().map(|r| WireOutcome::from(r).for_version(version)).collect() })
    }
}
