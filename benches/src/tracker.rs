//! Per-transaction timestamps of one point, and the sink targets report completions to.
//!
//! Before the clock starts, the [`Tracker`] indexes the point's pre-signed transactions
//! by id. During the run every stage writes one atomic slot per transaction (lock-free;
//! first observation wins): *sent* (handed to the target), *accepted* (the target's
//! submit answered), *finalized* (ordered by consensus), *executed* (receipt available,
//! with its status). Times are nanoseconds after the point's `t0` on the tokio clock
//! (so tests can run on paused, virtual time); 0 means "not yet".
//!
//! Targets never see the tracker: they get a [`CompletionSink`] at connect time, which
//! the runner points at each point's tracker in turn. Completions for ids the current
//! point does not know (late ones from an earlier point, other clients' transactions)
//! are counted as `unknown` and otherwise ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use lamina_primitives::{Transaction, TxId};
use tokio::time::Instant;

/// How the target's submit answered for one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitState {
    /// Not answered yet (or the point ended first).
    Pending = 0,
    /// Accepted into the mempool.
    Accepted = 1,
    /// Already known to the target (counts as accepted).
    Duplicate = 2,
    /// Refused with "busy" and not retried (or retries ran out).
    Busy = 3,
    /// Refused for another reason (bad signature, too large, transport, …).
    Rejected = 4,
}

impl SubmitState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => SubmitState::Accepted,
            2 => SubmitState::Duplicate,
            3 => SubmitState::Busy,
            4 => SubmitState::Rejected,
            _ => SubmitState::Pending,
        }
    }

    /// Accepted or duplicate: the target took the transaction.
    pub fn taken(self) -> bool {
        matches!(self, SubmitState::Accepted | SubmitState::Duplicate)
    }
}

/// The status of an executed transaction's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Applied.
    Success = 1,
    /// Included, but the operation failed (e.g. insufficient balance); fees paid.
    Failed = 2,
    /// Included and rejected without effect (bad nonce, malformed payload, …).
    Rejected = 3,
}

impl ExecStatus {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(ExecStatus::Success),
            2 => Some(ExecStatus::Failed),
            3 => Some(ExecStatus::Rejected),
            _ => None,
        }
    }
}

/// Per-transaction records of one point.
pub struct Tracker {
    index: HashMap<TxId, u32>,
    sizes: Vec<u32>,
    t0: OnceLock<Instant>,
    sent: Box<[AtomicU64]>,
    accepted: Box<[AtomicU64]>,
    finalized: Box<[AtomicU64]>,
    executed: Box<[AtomicU64]>,
    submit_state: Box<[AtomicU8]>,
    exec_state: Box<[AtomicU8]>,
    n_finalized: AtomicU64,
    n_executed: AtomicU64,
    n_closed: AtomicU64,
    n_unknown: AtomicU64,
    finalize_is_last: OnceLock<bool>,
    rejections: std::sync::Mutex<Rejections>,
}

/// Why receipts were rejected, as far as the target looked them up.
#[derive(Default)]
struct Rejections {
    by_reason: std::collections::BTreeMap<String, u64>,
    samples: Vec<String>,
    /// Lookups granted to the target this point ([`Tracker::take_lookup`]).
    lookups: usize,
}

/// Most rejection samples kept per point.
pub const MAX_REJECTION_SAMPLES: usize = 16;
/// Most rejected receipts a target looks up per point (each is one query to a node,
/// made while the point runs).
pub const MAX_REJECTION_LOOKUPS: usize = 1_000;

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("txs", &self.sizes.len())
            .field("finalized", &self.n_finalized.load(Ordering::Relaxed))
            .field("executed", &self.n_executed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn slots(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn bytes(n: usize) -> Box<[AtomicU8]> {
    (0..n).map(|_| AtomicU8::new(0)).collect()
}

impl Tracker {
    /// Indexes `txs` (in schedule order). Duplicate ids keep the first index.
    pub fn new(txs: &[Transaction]) -> Self {
        assert!(
            txs.len() < u32::MAX as usize,
            "a point holds fewer than 2^32 transactions (bounded by the memory limit)"
        );
        let n = txs.len();
        let mut index = HashMap::with_capacity(n);
        for (i, tx) in txs.iter().enumerate() {
            index.entry(tx.id()).or_insert(i as u32);
        }
        Tracker {
            index,
            sizes: txs.iter().map(|t| t.approx_size() as u32).collect(),
            t0: OnceLock::new(),
            sent: slots(n),
            accepted: slots(n),
            finalized: slots(n),
            executed: slots(n),
            submit_state: bytes(n),
            exec_state: bytes(n),
            n_finalized: AtomicU64::new(0),
            n_executed: AtomicU64::new(0),
            n_closed: AtomicU64::new(0),
            n_unknown: AtomicU64::new(0),
            finalize_is_last: OnceLock::new(),
            rejections: Default::default(),
        }
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// True for an empty point.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Fixes the point's time origin (once; later calls are ignored) and which
    /// completion ends a transaction's life (`true`: finalized; `false`: executed).
    pub fn start(&self, t0: Instant, finalize_is_last: bool) {
        let _ = self.t0.set(t0);
        let _ = self.finalize_is_last.set(finalize_is_last);
    }

    /// The time origin, once started.
    pub fn t0(&self) -> Option<Instant> {
        self.t0.get().copied()
    }

    /// Encodes `at` as the slot value: ns after t0, plus one (0 = unset).
    fn stamp(&self, at: Instant) -> u64 {
        let t0 = self.t0.get().copied().unwrap_or(at);
        (at.saturating_duration_since(t0).as_nanos() as u64).saturating_add(1)
    }

    /// Index of `id` in this point.
    pub fn index_of(&self, id: &TxId) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// Records that transactions `lo..hi` were handed to the target at `at`.
    pub fn mark_sent(&self, lo: usize, hi: usize, at: Instant) {
        let v = self.stamp(at);
        for s in &self.sent[lo..hi] {
            s.store(v, Ordering::Relaxed);
        }
    }

    /// Records the submit answer for transaction `i`.
    pub fn mark_submitted(&self, i: usize, state: SubmitState, at: Instant) {
        self.submit_state[i].store(state as u8, Ordering::Relaxed);
        if state.taken() {
            let _ = self.accepted[i].compare_exchange(0, self.stamp(at), Ordering::Relaxed, Ordering::Relaxed);
        } else if state != SubmitState::Pending {
            // Refused: its life ends here (unless a completion already ended it).
            let last = self.finalize_is_last.get().copied().unwrap_or(false);
            let (f, e) = self.completion_slots(i);
            if (if last { f } else { e }) == 0 {
                self.n_closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// True if the submit answer refused transaction `i` (its life was closed then; a
    /// later completion, possible after a transport error, must not close it twice).
    fn refused(&self, i: usize) -> bool {
        matches!(
            SubmitState::from_u8(self.submit_state[i].load(Ordering::Relaxed)),
            SubmitState::Busy | SubmitState::Rejected
        )
    }

    /// Records finalization of known transactions; returns how many were new.
    pub fn record_finalized(&self, events: &[(TxId, Instant)]) -> usize {
        let last = self.finalize_is_last.get().copied().unwrap_or(false);
        let mut new = 0;
        for (id, at) in events {
            let Some(i) = self.index_of(id) else {
                self.n_unknown.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if self.finalized[i as usize]
                .compare_exchange(0, self.stamp(*at), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                new += 1;
                if last && !self.refused(i as usize) {
                    self.n_closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.n_finalized.fetch_add(new as u64, Ordering::Relaxed);
        new
    }

    /// Records execution receipts of known transactions; returns how many were new.
    pub fn record_executed(&self, events: &[(TxId, ExecStatus, Instant)]) -> usize {
        let last = !self.finalize_is_last.get().copied().unwrap_or(false);
        let mut new = 0;
        for (id, status, at) in events {
            let Some(i) = self.index_of(id) else {
                self.n_unknown.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if self.executed[i as usize]
                .compare_exchange(0, self.stamp(*at), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.exec_state[i as usize].store(*status as u8, Ordering::Relaxed);
                new += 1;
                if last && !self.refused(i as usize) {
                    self.n_closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.n_executed.fetch_add(new as u64, Ordering::Relaxed);
        new
    }

    /// Transactions whose life is over: refused, or completed at the last observed
    /// stage. The point may end early once this reaches [`Tracker::len`].
    pub fn closed(&self) -> u64 {
        self.n_closed.load(Ordering::Relaxed)
    }

    /// Finalized so far.
    pub fn finalized_count(&self) -> u64 {
        self.n_finalized.load(Ordering::Relaxed)
    }

    /// Executed so far.
    pub fn executed_count(&self) -> u64 {
        self.n_executed.load(Ordering::Relaxed)
    }

    /// Completions for ids this point does not know.
    pub fn unknown_count(&self) -> u64 {
        self.n_unknown.load(Ordering::Relaxed)
    }

    /// True if the target may look up one more rejected receipt this point (at most
    /// [`MAX_REJECTION_LOOKUPS`]).
    pub fn take_lookup(&self) -> bool {
        let mut r = self.rejections.lock().unwrap_or_else(|e| e.into_inner());
        r.lookups += 1;
        r.lookups <= MAX_REJECTION_LOOKUPS
    }

    /// Records why the rejected receipt of `id` was rejected: `reason` is a short stable
    /// name (counted), `detail` a sample kept among the first [`MAX_REJECTION_SAMPLES`].
    /// Ids this point did not send are ignored.
    pub fn record_rejection(&self, id: &TxId, reason: &str, detail: String) {
        if self.index_of(id).is_none() {
            return;
        }
        let mut r = self.rejections.lock().unwrap_or_else(|e| e.into_inner());
        *r.by_reason.entry(reason.to_string()).or_default() += 1;
        if r.samples.len() < MAX_REJECTION_SAMPLES {
            r.samples.push(detail);
        }
    }

    /// Rejected receipts looked up so far, by reason, and the samples kept.
    pub fn rejections(&self) -> (std::collections::BTreeMap<String, u64>, Vec<String>) {
        let r = self.rejections.lock().unwrap_or_else(|e| e.into_inner());
        (r.by_reason.clone(), r.samples.clone())
    }

    /// A plain copy of every record (after the point, for statistics).
    pub fn snapshot(&self) -> Records {
        let load = |s: &[AtomicU64]| s.iter().map(|a| a.load(Ordering::Relaxed)).collect::<Vec<_>>();
        Records {
            sent: load(&self.sent),
            accepted: load(&self.accepted),
            finalized: load(&self.finalized),
            executed: load(&self.executed),
            submit: self.submit_state.iter().map(|a| SubmitState::from_u8(a.load(Ordering::Relaxed))).collect(),
            exec: self.exec_state.iter().map(|a| ExecStatus::from_u8(a.load(Ordering::Relaxed))).collect(),
            sizes: self.sizes.clone(),
            unknown: self.unknown_count(),
        }
    }

    /// Reads one record's (finalized, executed) slots without a full snapshot.
    pub fn completion_slots(&self, i: usize) -> (u64, u64) {
        (self.finalized[i].load(Ordering::Relaxed), self.executed[i].load(Ordering::Relaxed))
    }
}

/// Plain per-transaction records: times are ns after `t0` plus one (0 = never).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records {
    /// Handed to the target.
    pub sent: Vec<u64>,
    /// Submit answered "taken".
    pub accepted: Vec<u64>,
    /// Finalized.
    pub finalized: Vec<u64>,
    /// Executed (receipt).
    pub executed: Vec<u64>,
    /// Submit answers.
    pub submit: Vec<SubmitState>,
    /// Receipt statuses.
    pub exec: Vec<Option<ExecStatus>>,
    /// [`Transaction::approx_size`] of each.
    pub sizes: Vec<u32>,
    /// Completions for unknown ids.
    pub unknown: u64,
}

impl Records {
    /// Decodes a slot value into ns after t0.
    pub fn ns(slot: u64) -> Option<u64> {
        slot.checked_sub(1)
    }
}

/// Where a target reports completions. Cheap to clone; safe from any thread.
#[derive(Clone, Default)]
pub struct CompletionSink {
    current: Arc<RwLock<Option<Arc<Tracker>>>>,
}

impl std::fmt::Debug for CompletionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompletionSink")
    }
}

impl CompletionSink {
    /// A sink pointing nowhere (completions are dropped until a tracker is installed).
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self) -> Option<Arc<Tracker>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Points the sink at a point's tracker (runner only).
    pub fn install(&self, tracker: Arc<Tracker>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(tracker);
    }

    /// Detaches the current tracker (runner only).
    pub fn uninstall(&self) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Reports transactions ordered by consensus, each with the time it was observed
    /// (or, for a synthetic target, modelled) as finalized.
    pub fn finalized(&self, events: &[(TxId, Instant)]) {
        if let Some(t) = self.get() {
            t.record_finalized(events);
        }
    }

    /// Reports transactions finalized at one instant (e.g. one block).
    pub fn finalized_at(&self, ids: impl IntoIterator<Item = TxId>, at: Instant) {
        let ev: Vec<(TxId, Instant)> = ids.into_iter().map(|id| (id, at)).collect();
        self.finalized(&ev);
    }

    /// Reports receipts: transaction, status, time the receipt became available.
    pub fn executed(&self, events: &[(TxId, ExecStatus, Instant)]) {
        if let Some(t) = self.get() {
            t.record_executed(events);
        }
    }

    /// True if a rejected receipt may be looked up now (a point is running and its
    /// budget, [`Tracker::take_lookup`], is not spent).
    pub fn take_lookup(&self) -> bool {
        self.get().is_some_and(|t| t.take_lookup())
    }

    /// Reports why a rejected receipt was rejected (see [`Tracker::record_rejection`]).
    /// A lookup that ends after its point does not count for the next one: it is
    /// reported to whichever point runs then, which ignores ids it did not send.
    pub fn rejection(&self, id: &TxId, reason: &str, detail: String) {
        if let Some(t) = self.get() {
            t.record_rejection(id, reason, detail);
        }
    }
}
