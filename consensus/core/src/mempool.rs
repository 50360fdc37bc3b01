//! The mempool: checked transactions waiting to be batched, and the bookkeeping of
//! batches until they are ordered. A pure state machine, like the consensus [`crate::Core`]:
//! time comes in as an argument (`now`, a [`Duration`] since any fixed start), so the
//! deterministic simulation drives it with simulated time and the service with the clock.
//!
//! A transaction is *held* from intake until the block ordering its batch is finalized:
//! queued (per namespace), then in a batch being made available, then in a certified
//! batch waiting for a leader. Limits apply to everything held, so a DA outage or a
//! slow consensus fills the mempool and intake answers `Busy` (backpressure), never a
//! silent drop. Per-sender limits keep one client from taking it all.
//!
//! Checks on intake: size, chain id (a genesis chain or the settlement namespace),
//! signature (ZIP-215, batch-verified outside the lock by the caller), duplicate id
//! (held, or ordered recently).
//!
//! # Nonce order per sender
//!
//! Each chain's ledger (and settlement) rejects a skipped nonce, so a sender's
//! transactions must leave in nonce order, whatever order concurrent intake requests
//! reach the lock in. The mempool remembers, per (sender, chain), the nonce it expects
//! next (one past the highest it queued in order), and:
//!
//! * the expected nonce is queued, followed by any parked ones it makes contiguous;
//! * a nonce beyond a gap is **parked** (accepted, held, not queued) until the gap is
//!   filled; if the gap is still open after `nonce_gap_ms`, the parked transactions are
//!   queued anyway in nonce order (the missing one went to another validator, or will
//!   never come: then the ledger rejects the skip, as the sender asked for);
//! * a sender the mempool does not know is expected from nonce 0 (a new account); a
//!   higher first nonce (a returning sender) is parked for at most `new_sender_wait_ms`,
//!   so that lower nonces still in flight in concurrent requests can overtake it;
//! * after a (re)start ([`Mempool::recover_from`]), every sender is unknown while its
//!   clients retry what the stopped validator did not acknowledge: for `nonce_gap_ms`,
//!   a sender's first transaction waits as long as a known sender's gap;
//! * a gap is not given up on while intake is still checking (signatures, which queue
//!   under load: [`Mempool::checking`]) a transaction of the sequence whose nonce could
//!   fill it, up to `nonce_gap_ms` past the gap's own timeout;
//! * a nonce lower than expected (after a gap was given up on) is queued, and each cut
//!   batch lists every sender's transactions in nonce order.
//!
//! # Batches in flight
//!
//! Consensus orders the batches of one validator in the order leaders learn of them,
//! and a leader can learn of a later batch first (announcements are reordered or lost
//! and re-sent). So a sequence (sender, chain) with transactions in a cut batch that is
//! not yet ordered has no further transactions cut: they stay queued (other senders'
//! go by them) until [`Mempool::ordered`] reports that batch. A sender's transactions
//! are thus in at most one unordered batch, and their log order is their nonce order
//! whatever order consensus gives the validator's batches. The cost: a busy sender's
//! next transactions wait for its previous batch to be ordered (a few message delays);
//! the deterministic simulation (`tests/mempool_sim.rs`) checks the property under
//! reordering, loss, partitions and crashes.
//!
//! The expected nonce outlives the sender's held transactions (the last
//! `max_tracked_senders` idle senders are remembered), so that a steady stream of one
//! sender keeps its order across batches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use lamina_interfaces::{Blob, SubmitError, SubmitOutcome};
use lamina_primitives::{Batch, ChainId, Digest, Namespace, PublicKey, Transaction, TxId, codec};

/// The mempool's limits and nonce-order timeouts (the service's `[consensus.mempool]`
/// settings that the state machine reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Most transactions held (queued, being made available, or certified but not yet
    /// ordered).
    pub max_txs: usize,
    /// Most payload bytes held.
    pub max_bytes: usize,
    /// Most transactions held per sender.
    pub max_per_sender: usize,
    /// Largest transaction accepted (bytes).
    pub max_tx_bytes: usize,
    /// Remembered ids of recently ordered transactions (duplicate detection).
    pub recent_ids: usize,
    /// Senders (per chain) whose next expected nonce is remembered while they hold nothing.
    pub max_tracked_senders: usize,
    /// How long a transaction beyond a nonce gap waits for the missing nonce (ms).
    pub nonce_gap_ms: u64,
    /// How long a sender's first transaction, if its nonce is above 0, waits for lower
    /// ones in flight (ms).
    pub new_sender_wait_ms: u64,
}

impl Default for MempoolLimits {
    /// The service's defaults.
    fn default() -> Self {
        MempoolLimits {
            max_txs: 1_000_000,
            max_bytes: 1 << 30,
            max_per_sender: 20_000,
            max_tx_bytes: 64 << 10,
            recent_ids: 1_000_000,
            max_tracked_senders: 262_144,
            nonce_gap_ms: 1000,
            new_sender_wait_ms: 100,
        }
    }
}

/// The mempool's hash maps: foldhash, seeded randomly per map, as execution's state-key
/// maps. Hashing 32-byte keys was the bulk of the mempool's bookkeeping per transaction
/// (SipHash: 2.0 µs, foldhash: 1.6 µs in `consensus::mempool`). Their keys (ids, public
/// keys) are chosen by clients; foldhash's random seed gives only minimal resistance to
/// keys aimed at one bucket (it makes no claim against an attacker who can time
/// lookups), and every map here is bounded (`max_txs`, `max_tracked_senders`, the
/// recent-id window; `checking` by the requests intake has in hand), so the worst case
/// is a slower mempool, not an unbounded one.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// How far into a queue [`Mempool::ready`] looks for a transaction that is not waiting
/// for a batch in flight (beyond it, the age check waits for the next batch).
const READY_SCAN: usize = 256;

/// Where a (sender, chain) is in nonce order.
#[derive(Clone, Debug, Default)]
struct Sequence {
    /// The nonce expected next: one past the highest queued in order (0 for a sender
    /// seen for the first time).
    next: u64,
    /// Transactions beyond a gap, by nonce.
    parked: BTreeMap<u64, (Transaction, TxId, Duration)>,
    /// The id of the open gap, if one is open. Entries of the gap lists name their gap
    /// by id, not by when it was found: one request's transactions share a `now`, so a
    /// gap can be filled and another opened at the same time, and the first one's
    /// entry must not release the second.
    gap: Option<u64>,
    /// The mark of this sequence's entry in the mempool's idle list (0: none).
    idle_mark: u64,
}

/// One transaction's bookkeeping while held.
#[derive(Clone, Copy, Debug)]
struct Held {
    sender: PublicKey,
    bytes: usize,
}

/// One of this validator's batches not yet ordered (cut, or a certificate restored from
/// the intake log): its transactions' ids, and the transactions themselves, so that a
/// batch the core refuses can be queued again ([`Mempool::requeue`]).
#[derive(Clone, Debug, Default)]
struct Unordered {
    ids: Vec<TxId>,
    txs: Vec<Transaction>,
}

/// A cut batch: the blobs to disperse (one per namespace) and the ids it holds.
#[derive(Debug)]
pub struct Cut {
    /// Local batch id.
    pub id: u64,
    /// One blob per namespace (`codec::encode(&Batch)`), in namespace order.
    pub blobs: Vec<Blob>,
    /// Transactions in the batch.
    pub txs: usize,
    /// Bytes of transactions in the batch.
    pub bytes: usize,
    /// (namespace, transactions) per blob, for metrics.
    pub per_namespace: Vec<(Namespace, usize)>,
}

/// What [`Mempool::requeue`] did with a refused batch.
#[derive(Debug, Default)]
pub struct Requeued {
    /// Queued again, in the order they were cut.
    pub queued: Vec<Transaction>,
    /// Too large for a batch under the limit of now: no longer held.
    pub dropped: Vec<TxId>,
}

/// Counters for metrics and `/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolStats {
    /// Transactions held.
    pub held: usize,
    /// Bytes held.
    pub held_bytes: usize,
    /// Transactions queued (not yet in a batch).
    pub queued: usize,
    /// Batches cut and not yet ordered.
    pub batches: usize,
    /// Transactions parked behind a nonce gap.
    pub parked: usize,
}

/// The mempool (callers wrap it in a mutex).
#[derive(Clone, Debug)]
pub struct Mempool {
    cfg: MempoolLimits,
    chains: BTreeSet<ChainId>,
    queues: BTreeMap<Namespace, VecDeque<(Transaction, TxId, Duration)>>,
    queued: usize,
    queued_bytes: usize,
    held: Map<TxId, Held>,
    held_bytes: usize,
    per_sender: Map<PublicKey, usize>,
    batches: Map<u64, Unordered>,
    by_attestation: Map<Digest, u64>,
    next_batch: u64,
    recent: VecDeque<TxId>,
    recent_set: Set<TxId>,
    sequences: Map<(PublicKey, ChainId), Sequence>,
    /// Sequences whose sender went idle (nothing held), by the mark they got when they
    /// last did (increasing, so oldest first): forgotten beyond `max_tracked_senders`.
    /// One entry per sequence, moved to the end each time it goes idle again (see
    /// [`Mempool::went_idle`]).
    idle: BTreeMap<u64, (PublicKey, ChainId)>,
    /// The last mark given to an `idle` entry.
    idle_marks: u64,
    /// Open gaps of known sequences, oldest first: (when found, sequence, gap id).
    gaps: VecDeque<(Duration, (PublicKey, ChainId), u64)>,
    /// Open gaps of senders seen for the first time, oldest first (shorter timeout).
    first_gaps: VecDeque<(Duration, (PublicKey, ChainId), u64)>,
    parked: usize,
    /// Sequences with transactions in a cut batch not yet ordered: how many such
    /// batches. Their further transactions wait in the queue (see "Batches in flight").
    in_flight: Map<(PublicKey, ChainId), usize>,
    /// Until then, a sender seen for the first time waits `nonce_gap_ms` (not
    /// `new_sender_wait_ms`) for lower nonces: see [`Mempool::recover_from`].
    recovering_until: Duration,
    /// The sequences each cut batch (or restored certificate) holds, until ordered.
    batch_sequences: Map<u64, Vec<(PublicKey, ChainId)>>,
    /// Governance's limit on a batch's blob bytes as encoded (`None`: none set): a cut
    /// stays within it, and a transaction that cannot fit in a batch alone is refused.
    batch_bytes: Option<usize>,
    /// The nonces (with their counts) of each sequence's transactions that intake has
    /// taken and not yet inserted or refused (their signatures are being checked): see
    /// [`Mempool::checking`]. Ordered, so that a gap's question is one range lookup
    /// however many a client puts in flight.
    checking: Map<(PublicKey, ChainId), BTreeMap<u64, u32>>,
    /// Gaps past their timeout kept open because a nonce that could fill them is being
    /// checked: (when found, sequence, gap id, first gap).
    held_gaps: Vec<(Duration, (PublicKey, ChainId), u64, bool)>,
    /// The last id given to a gap.
    gap_ids: u64,
}

impl Mempool {
    /// An empty mempool accepting the given chains (plus the settlement and governance
    /// namespaces).
    pub fn new(cfg: MempoolLimits, chains: impl IntoIterator<Item = ChainId>) -> Self {
        let mut chains: BTreeSet<ChainId> = chains.into_iter().collect();
        chains.insert(ChainId::from(Namespace::SETTLEMENT));
        chains.insert(ChainId::from(Namespace::GOVERNANCE));
        Mempool {
            cfg,
            chains,
            queues: BTreeMap::new(),
            queued: 0,
            queued_bytes: 0,
            held: Map::default(),
            held_bytes: 0,
            per_sender: Map::default(),
            batches: Map::default(),
            by_attestation: Map::default(),
            next_batch: 0,
            recent: VecDeque::new(),
            recent_set: Set::default(),
            sequences: Map::default(),
            idle: BTreeMap::new(),
            idle_marks: 0,
            gaps: VecDeque::new(),
            first_gaps: VecDeque::new(),
            parked: 0,
            in_flight: Map::default(),
            recovering_until: Duration::ZERO,
            batch_sequences: Map::default(),
            batch_bytes: None,
            checking: Map::default(),
            held_gaps: Vec::new(),
            gap_ids: 0,
        }
    }

    /// Intake has taken these transactions (sender, chain, nonce) and is checking them
    /// before it inserts them. A gap that one of them could fill (its nonce is at least
    /// the one expected and below the lowest parked) is not given up on at its timeout
    /// while it is checked, for at most `nonce_gap_ms` more. Every entry must be ended
    /// by [`Mempool::checked`], whatever the outcome.
    pub fn checking<'a>(&mut self, txs: impl IntoIterator<Item = &'a (PublicKey, ChainId, u64)>) {
        for (sender, chain, nonce) in txs {
            *self.checking.entry((*sender, *chain)).or_default().entry(*nonce).or_default() += 1;
        }
    }

    /// Ends [`Mempool::checking`] for these transactions (inserted or refused). Call it
    /// in the same critical section as the inserts, so that no gap is released between
    /// the two. An entry not being checked is ignored.
    pub fn checked<'a>(&mut self, txs: impl IntoIterator<Item = &'a (PublicKey, ChainId, u64)>) {
        for (sender, chain, nonce) in txs {
            let key = (*sender, *chain);
            let Some(nonces) = self.checking.get_mut(&key) else { continue };
            if let Some(n) = nonces.get_mut(nonce) {
                *n -= 1;
                if *n == 0 {
                    nonces.remove(nonce);
                }
            }
            if nonces.is_empty() {
                self.checking.remove(&key);
            }
        }
    }

    /// True if intake is checking a transaction that could fill the gap `gap` (its id)
    /// of `key` (the gap is still open and the nonce lies in it).
    fn gap_fillable(&self, key: &(PublicKey, ChainId), gap: u64) -> bool {
        let Some(nonces) = self.checking.get(key) else { return false };
        let Some(seq) = self.sequences.get(key).filter(|s| s.gap == Some(gap)) else { return false };
        let below = seq.parked.keys().next().copied().unwrap_or(u64::MAX);
        seq.next < below && nonces.range(seq.next..below).next().is_some()
    }

    /// Sets governance's limit on the blob bytes of one batch (`set-param
    /// max_batch_bytes`; `None`: none): every later cut's blobs, encoded, stay within it,
    /// and [`Mempool::insert`] refuses a transaction too large to fit alone. The caller
    /// passes the smallest limit of the consensus epochs a batch cut now may be ordered
    /// in, so that its certificate stays valid whichever orders it.
    pub fn set_batch_bytes(&mut self, limit: Option<u64>) {
        self.batch_bytes = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    }

    /// Governance's batch limit as set ([`Mempool::set_batch_bytes`]).
    pub fn batch_bytes(&self) -> Option<u64> {
        self.batch_bytes.map(|l| l as u64)
    }

    /// The largest transaction ([`Transaction::approx_size`]) the batch limit leaves room
    /// for, `None` without one.
    pub fn batch_room(&self) -> Option<usize> {
        self.batch_bytes.map(|l| l.saturating_sub(Batch::encoded_bound(1, 0)))
    }

    /// This validator's batches cut (or restored from its intake log) and not yet
    /// ordered, nor refused. The service's batcher waits longer before cutting more
    /// while there are enough of them (`[consensus.batch] max_unordered`).
    pub fn unordered_batches(&self) -> usize {
        self.batch_sequences.len()
    }

    /// True if nothing waits to be cut: no queued and no parked transaction (the batcher
    /// then sleeps until intake wakes it).
    pub fn is_idle(&self) -> bool {
        self.queued == 0 && self.parked == 0
    }

    /// The checks that need no lock and no signature: size and chain. `Ok` carries the id.
    pub fn precheck(cfg: &MempoolLimits, chains: &BTreeSet<ChainId>, tx: &Transaction) -> Result<TxId, SubmitError> {
        let size = tx.approx_size();
        if size > cfg.max_tx_bytes {
            return Err(SubmitError::TooLarge { size, max: cfg.max_tx_bytes });
        }
        if !chains.contains(&tx.chain_id) {
            return Err(SubmitError::UnknownChain(tx.chain_id.0));
        }
        Ok(tx.id())
    }

    /// The chains accepted.
    pub fn chains(&self) -> &BTreeSet<ChainId> {
        &self.chains
    }

    /// Inserts a prechecked, signature-checked transaction.
    pub fn insert(&mut self, tx: Transaction, id: TxId, now: Duration) -> Result<SubmitOutcome, SubmitError> {
        if self.held.contains_key(&id) || self.recent_set.contains(&id) {
            return Ok(SubmitOutcome::Duplicate(id));
        }
        let bytes = tx.approx_size();
        if let Some(max) = self.batch_room()
            && bytes > max
        {
            return Err(SubmitError::TooLarge { size: bytes, max });
        }
        if self.held.len() >= self.cfg.max_txs || self.held_bytes + bytes > self.cfg.max_bytes {
            return Err(SubmitError::Busy(format!("mempool full ({} transactions held)", self.held.len())));
        }
        let count = self.per_sender.entry(tx.sender).or_default();
        if *count >= self.cfg.max_per_sender {
            return Err(SubmitError::Busy(format!("sender has {} transactions pending (limit)", *count)));
        }
        let key = (tx.sender, tx.chain_id);
        let nonce = tx.nonce;
        let seq = self.sequences.get_mut(&key);
        if let Some(seq) = &seq
            && nonce > seq.next
            && seq.parked.contains_key(&nonce)
        {
            return Err(SubmitError::Malformed(format!(
                "another transaction with nonce {nonce} of this sender is already waiting"
            )));
        }
        *count += 1;
        self.held.insert(id, Held { sender: tx.sender, bytes });
        self.held_bytes += bytes;
        // A sender seen for the first time is expected from nonce 0 (a new account); a
        // higher first nonce waits `new_sender_wait_ms` for lower ones in flight.
        // While recovering (see `recover_from`), every gap waits the full `nonce_gap_ms`.
        let recovering = now < self.recovering_until;
        let (seq, first) = match seq {
            Some(seq) => (seq, false),
            None => (self.sequences.entry(key).or_default(), !recovering),
        };
        if nonce == seq.next {
            seq.next = nonce.saturating_add(1);
            let mut ready = Vec::new();
            while let Some(entry) = seq.parked.remove(&seq.next) {
                seq.next = seq.next.saturating_add(1);
                ready.push(entry);
            }
            if seq.parked.is_empty() {
                seq.gap = None;
            }
            self.parked -= ready.len();
            self.enqueue(tx, id, now);
            for (tx, id, t) in ready {
                self.enqueue(tx, id, t);
            }
        } else if nonce > seq.next {
            if seq.gap.is_none() {
                self.gap_ids += 1;
                seq.gap = Some(self.gap_ids);
                let fifo = if first { &mut self.first_gaps } else { &mut self.gaps };
                fifo.push_back((now, key, self.gap_ids));
            }
            seq.parked.insert(nonce, (tx, id, now));
            self.parked += 1;
        } else {
            // Lower than expected: a late transaction of a sequence whose gap was given
            // up on, or one sent through another validator. Queued; `cut` puts it before
            // its successors if they are in the same batch.
            self.enqueue(tx, id, now);
        }
        Ok(SubmitOutcome::Accepted(id))
    }

    fn enqueue(&mut self, tx: Transaction, id: TxId, at: Duration) {
        self.queued += 1;
        self.queued_bytes += tx.approx_size();
        self.queues.entry(Namespace::from(tx.chain_id)).or_default().push_back((tx, id, at));
    }

    /// Queues, in nonce order, the parked transactions of every gap open for longer
    /// than its timeout (`nonce_gap_ms`, or `new_sender_wait_ms` for a sender's first
    /// gap); the sequence continues after them. Returns how many were queued.
    pub fn release_gaps(&mut self, now: Duration) -> usize {
        let timeouts =
            [Duration::from_millis(self.cfg.nonce_gap_ms), Duration::from_millis(self.cfg.new_sender_wait_ms)];
        self.release(now, timeouts, true)
    }

    /// Queues every parked transaction now, whatever its gap's age, in nonce order per
    /// sender: for a validator that takes no more transactions (it leaves the
    /// committee), so no lower nonce can arrive here to fill a gap. Returns how many.
    pub fn release_all_gaps(&mut self, now: Duration) -> usize {
        self.release(now, [Duration::ZERO; 2], false)
    }

    /// Releases the gaps open at least `timeouts` (known senders', first gaps'). With
    /// `hold`, a gap that a transaction still in intake's checks could fill is kept, up
    /// to `nonce_gap_ms` past its timeout ([`Mempool::checking`]).
    fn release(&mut self, now: Duration, timeouts: [Duration; 2], hold: bool) -> usize {
        let extra = Duration::from_millis(self.cfg.nonce_gap_ms);
        let held_on = |this: &Self, since: Duration, id: u64, key: &(PublicKey, ChainId), timeout: Duration| {
            hold && now.saturating_sub(since) < timeout + extra && this.gap_fillable(key, id)
        };
        let mut released = 0;
        let mut i = 0;
        while i < self.held_gaps.len() {
            let (since, key, id, first) = self.held_gaps[i];
            if held_on(self, since, id, &key, timeouts[usize::from(first)]) {
                i += 1;
                continue;
            }
            self.held_gaps.swap_remove(i);
            released += self.release_gap(key, id, now);
        }
        for (first, timeout) in [false, true].into_iter().zip(timeouts) {
            loop {
                let fifo = if first { &mut self.first_gaps } else { &mut self.gaps };
                let Some((since, key, id)) = fifo.front().copied() else { break };
                if now.saturating_sub(since) < timeout {
                    break;
                }
                fifo.pop_front();
                if held_on(self, since, id, &key, timeout) {
                    self.held_gaps.push((since, key, id, first));
                    continue;
                }
                released += self.release_gap(key, id, now);
            }
        }
        released
    }

    /// Gives up on the gap `gap` (its id) of `key`, if it is still open: its parked
    /// transactions are queued in nonce order and the sequence continues after them.
    fn release_gap(&mut self, key: (PublicKey, ChainId), gap: u64, now: Duration) -> usize {
        // Skip entries of gaps that were filled since (a later gap of the same sequence
        // has its own entry, even one found at the same time).
        let Some(seq) = self.sequences.get_mut(&key).filter(|s| s.gap == Some(gap)) else {
            return 0;
        };
        let parked = std::mem::take(&mut seq.parked);
        seq.gap = None;
        if let Some((&last, _)) = parked.last_key_value() {
            seq.next = last.saturating_add(1);
        }
        self.parked -= parked.len();
        let released = parked.len();
        for (tx, id, _) in parked.into_values() {
            // Their age counts from the release, so the batcher does not cut them ahead
            // of what is already queued for being old.
            self.enqueue(tx, id, now);
        }
        released
    }

    /// When the oldest transaction that may go into a batch now (not waiting for a
    /// batch in flight) was queued, looking a bounded way into each queue; `None` if
    /// there is none.
    fn oldest_eligible(&self) -> Option<Duration> {
        self.queues
            .values()
            .filter_map(|q| {
                q.iter()
                    .take(READY_SCAN)
                    .find(|(tx, _, _)| !self.in_flight.contains_key(&(tx.sender, tx.chain_id)))
                    .map(|(_, _, t)| *t)
            })
            .min()
    }

    /// True if a batch should be cut now: enough bytes queued, or the oldest queued
    /// transaction waited `max_delay`.
    pub fn ready(&self, max_bytes: usize, max_delay: Duration, now: Duration) -> bool {
        let eligible_aged = self.oldest_eligible().is_some_and(|t| now.saturating_sub(t) >= max_delay);
        let full = self.queued_bytes >= max_bytes || self.batch_room().is_some_and(|r| self.queued_bytes >= r);
        self.queued > 0 && (full || eligible_aged)
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Cuts a batch of up to `max_bytes` (at least one transaction), oldest first per
    /// namespace, whose blobs stay within the batch limit ([`Mempool::set_batch_bytes`]);
    /// `None` if nothing is queued.
    pub fn cut(&mut self, max_bytes: usize) -> Option<Cut> {
        if self.queued == 0 {
            return None;
        }
        let id = self.next_batch;
        let mut ids = Vec::new();
        let mut blobs = Vec::new();
        let mut per_namespace = Vec::new();
        let mut bytes = 0usize;
        let mut encoded = 0usize;
        // Share the budget fairly: take round-robin one transaction per namespace.
        // First choose (by queue position), then take the chosen out of each queue in one
        // pass: a transaction waiting for a batch in flight is skipped, not moved.
        let mut chosen: BTreeMap<Namespace, Vec<usize>> = BTreeMap::new();
        // Per namespace, the next queue position to look at.
        let mut at: BTreeMap<Namespace, usize> = BTreeMap::new();
        loop {
            let mut progressed = false;
            for (ns, q) in self.queues.iter() {
                let i = at.entry(*ns).or_default();
                while q.get(*i).is_some_and(|(tx, _, _)| self.in_flight.contains_key(&(tx.sender, tx.chain_id))) {
                    *i += 1;
                }
                let Some((tx, txid, _)) = q.get(*i) else { continue };
                let size = tx.approx_size();
                // The blobs' encoded size if it is taken: each transaction's encoding,
                // and each namespace's batch header.
                let grown = encoded
                    + size
                    + Batch::ENCODING_PER_TX
                    + if chosen.contains_key(ns) { 0 } else { Batch::ENCODING_PER_BATCH };
                if !ids.is_empty() && (bytes + size > max_bytes || self.batch_bytes.is_some_and(|l| grown > l)) {
                    continue;
                }
                encoded = grown;
                bytes += size;
                ids.push(*txid);
                chosen.entry(*ns).or_default().push(*i);
                *i += 1;
                progressed = true;
            }
            if !progressed || bytes >= max_bytes {
                break;
            }
        }
        if ids.is_empty() {
            // Everything queued waits for batches in flight.
            return None;
        }
        let mut taken: BTreeMap<Namespace, Vec<Transaction>> = BTreeMap::new();
        for (ns, positions) in chosen {
            let Some(q) = self.queues.get_mut(&ns) else { continue };
            let mut next = positions.into_iter().peekable();
            let mut kept = VecDeque::with_capacity(q.len());
            for (i, entry) in std::mem::take(q).into_iter().enumerate() {
                if next.peek() == Some(&i) {
                    next.next();
                    taken.entry(ns).or_default().push(entry.0);
                } else {
                    kept.push_back(entry);
                }
            }
            *q = kept;
        }
        self.next_batch += 1;
        self.queues.retain(|_, q| !q.is_empty());
        self.queued -= ids.len();
        self.queued_bytes -= bytes;
        let mut sequences: Vec<(PublicKey, ChainId)> =
            taken.values().flatten().map(|tx| (tx.sender, tx.chain_id)).collect();
        sequences.sort_unstable_by_key(|(s, c)| (s.0, c.0));
        sequences.dedup();
        for s in &sequences {
            *self.in_flight.entry(*s).or_default() += 1;
        }
        self.batch_sequences.insert(id, sequences);
        let mut kept = Vec::with_capacity(ids.len());
        for (ns, mut txs) in taken {
            in_nonce_order(&mut txs);
            per_namespace.push((ns, txs.len()));
            let batch = Batch { namespace: ns, txs };
            // Within MAX_BATCH by construction (max_bytes <= 32 MiB).
            let data = codec::encode(&batch).unwrap_or_default();
            blobs.push(Blob { namespace: ns, data });
            kept.extend(batch.txs);
        }
        let txs = ids.len();
        self.batches.insert(id, Unordered { ids, txs: kept });
        Some(Cut { id, blobs, txs, bytes, per_namespace })
    }

    /// A batch of ours was ordered: its sequences may go into the next cut again.
    fn land(&mut self, batch: u64) {
        for s in self.batch_sequences.remove(&batch).unwrap_or_default() {
            if let Some(n) = self.in_flight.get_mut(&s) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(&s);
                }
            }
        }
    }

    /// A validator (re)started at `now`: it does not know which nonce its senders are at,
    /// and their next transactions may be on their way again (clients retry what a
    /// stopped validator did not acknowledge, and may retry them out of order). For
    /// `nonce_gap_ms` from `now`, a sender seen for the first time is therefore parked
    /// as long as a known sender's gap would be, rather than `new_sender_wait_ms`.
    pub fn recover_from(&mut self, now: Duration) {
        self.recovering_until = now + Duration::from_millis(self.cfg.nonce_gap_ms);
    }

    /// After a restart: a batch this validator had certified before it stopped and that
    /// is not known to be ordered (the intake log's certificate, given back to the core)
    /// holds these transactions (as far as the intake log still has them). They are
    /// held (a client's retry is a duplicate), their (sender, chain) sequences expect
    /// the nonce after theirs, and those sequences' queued
    /// transactions wait until the block ordering `attestation` is reported to
    /// [`Mempool::ordered`], and if the core refuses the certificate,
    /// [`Mempool::requeue`] queues them again.
    pub fn in_flight_until_ordered(&mut self, attestation: Digest, txs: Vec<Transaction>) {
        let id = self.next_batch;
        self.next_batch += 1;
        let mut batch = Unordered::default();
        for tx in txs {
            let txid = tx.id();
            if self.held.contains_key(&txid) {
                continue;
            }
            let bytes = tx.approx_size();
            self.held.insert(txid, Held { sender: tx.sender, bytes });
            self.held_bytes += bytes;
            *self.per_sender.entry(tx.sender).or_default() += 1;
            let seq = self.sequences.entry((tx.sender, tx.chain_id)).or_default();
            seq.next = seq.next.max(tx.nonce.saturating_add(1));
            batch.ids.push(txid);
            batch.txs.push(tx);
        }
        let mut sequences: Vec<(PublicKey, ChainId)> = batch.txs.iter().map(|t| (t.sender, t.chain_id)).collect();
        sequences.sort_unstable_by_key(|(s, c)| (s.0, c.0));
        sequences.dedup();
        for s in &sequences {
            *self.in_flight.entry(*s).or_default() += 1;
        }
        self.batch_sequences.insert(id, sequences);
        self.batches.insert(id, batch);
        self.by_attestation.insert(attestation, id);
    }

    /// The transactions of cut batch `batch` (empty if unknown).
    pub fn batch_ids(&self, batch: u64) -> Vec<TxId> {
        self.batches.get(&batch).map(|b| b.ids.clone()).unwrap_or_default()
    }

    /// A batch was certified by DA under `attestation`.
    pub fn certified(&mut self, batch: u64, attestation: Digest) {
        if self.batches.contains_key(&batch)
            && let Some(older) = self.by_attestation.insert(attestation, batch)
            && older != batch
        {
            // The same bytes cut again (a resubmitted transaction) certify to the same
            // attestation: one ordering releases both, so release the older hold now
            // (the same bytes are the same transactions: the newer batch holds them).
            self.land(older);
            self.batches.remove(&older);
        }
    }

    /// Our batch certified under `attestation` will not be ordered: the core refused
    /// it (certified by a DA committee the epoch no longer accepts, or over a batch
    /// limit lowered since it was cut). Its transactions go back to the front of their
    /// queues, in the order they were cut, still held, to be cut again under the rules
    /// of now; its senders' later transactions stay queued behind them, so nonce order
    /// holds. `limit` is the refusing core's batch limit: later cuts keep within it
    /// when it is lower than the one set (governance's next
    /// [`Mempool::set_batch_bytes`] replaces it), so that they are not refused again.
    /// A transaction too large to fit in a batch alone under the limit could never be
    /// ordered: it is dropped (no longer held). Returns the transactions queued again
    /// (the caller makes them durable again in the intake log) and those dropped;
    /// `None` if `attestation` is not a batch of ours.
    pub fn requeue(&mut self, attestation: &Digest, now: Duration, limit: Option<u64>) -> Option<Requeued> {
        let batch = self.by_attestation.remove(attestation)?;
        if let Some(l) = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX))
            && self.batch_bytes.is_none_or(|b| l < b)
        {
            self.batch_bytes = Some(l);
        }
        self.land(batch);
        let Unordered { txs, .. } = self.batches.remove(&batch).unwrap_or_default();
        let room = self.batch_room();
        let (queued, dropped): (Vec<Transaction>, Vec<Transaction>) =
            txs.into_iter().partition(|tx| room.is_none_or(|r| tx.approx_size() <= r));
        for tx in &dropped {
            self.unhold(&tx.id());
        }
        for tx in queued.iter().rev() {
            self.queued += 1;
            self.queued_bytes += tx.approx_size();
            let id = tx.id();
            self.queues.entry(Namespace::from(tx.chain_id)).or_default().push_front((tx.clone(), id, now));
        }
        Some(Requeued { queued, dropped: dropped.iter().map(Transaction::id).collect() })
    }

    /// Blocks ordered these attestations: release the transactions of our batches among
    /// them. Returns how many transactions were released.
    pub fn ordered(&mut self, attestations: &[Digest]) -> usize {
        let mut released = 0;
        for a in attestations {
            let Some(batch) = self.by_attestation.remove(a) else { continue };
            self.land(batch);
            let Some(Unordered { ids, .. }) = self.batches.remove(&batch) else { continue };
            for id in ids {
                if self.unhold(&id) {
                    released += 1;
                }
                if self.cfg.recent_ids > 0 {
                    if self.recent.len() >= self.cfg.recent_ids
                        && let Some(old) = self.recent.pop_front()
                    {
                        self.recent_set.remove(&old);
                    }
                    self.recent.push_back(id);
                    self.recent_set.insert(id);
                }
            }
        }
        released
    }

    /// Stops holding transaction `id` (false if it was not held).
    fn unhold(&mut self, id: &TxId) -> bool {
        let Some(h) = self.held.remove(id) else { return false };
        self.held_bytes -= h.bytes;
        if let Some(c) = self.per_sender.get_mut(&h.sender) {
            *c -= 1;
            if *c == 0 {
                self.per_sender.remove(&h.sender);
                self.went_idle(h.sender);
            }
        }
        true
    }

    /// A sender has nothing held any more: remember its sequences for a while, and
    /// forget the oldest idle ones beyond `max_tracked_senders`.
    ///
    /// "Oldest idle" counts senders, not idle spells: a steady sender goes idle after
    /// every batch of its, and each spell moves its one entry to the end. (Counting
    /// spells forgot active senders once the spells of a busy network passed the limit,
    /// about 44 s at 6,000 transactions a second per validator, and each of their next
    /// transactions then waited as a new sender's.)
    fn went_idle(&mut self, sender: PublicKey) {
        // The sender's chains: usually one; the chain set is small.
        for chain in &self.chains {
            let key = (sender, *chain);
            let Some(seq) = self.sequences.get_mut(&key) else { continue };
            if seq.idle_mark != 0 {
                self.idle.remove(&seq.idle_mark);
            }
            self.idle_marks += 1;
            seq.idle_mark = self.idle_marks;
            self.idle.insert(self.idle_marks, key);
        }
        while self.idle.len() > self.cfg.max_tracked_senders {
            let Some((_, key)) = self.idle.pop_first() else { break };
            let Some(seq) = self.sequences.get_mut(&key) else { continue };
            seq.idle_mark = 0;
            // A sender busy again since it went idle is kept (it goes idle again later).
            let busy = self.per_sender.contains_key(&key.0);
            if !busy && seq.parked.is_empty() {
                self.sequences.remove(&key);
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> MempoolStats {
        MempoolStats {
            held: self.held.len(),
            held_bytes: self.held_bytes,
            queued: self.queued,
            batches: self.batches.len(),
            parked: self.parked,
        }
    }
}

/// Puts every sender's transactions of one batch in nonce order, in the positions its
/// transactions already take (other senders' positions are unchanged). Costs one pass
/// when nothing is out of order.
fn in_nonce_order(txs: &mut [Transaction]) {
    let mut last: HashMap<PublicKey, u64> = HashMap::new();
    let mut sorted = true;
    for tx in txs.iter() {
        if let Some(prev) = last.insert(tx.sender, tx.nonce)
            && prev > tx.nonce
        {
            sorted = false;
        }
    }
    if sorted {
        return;
    }
    let mut positions: HashMap<PublicKey, Vec<usize>> = HashMap::new();
    for (i, tx) in txs.iter().enumerate() {
        positions.entry(tx.sender).or_default().push(i);
    }
    for idx in positions.into_values().filter(|p| p.len() > 1) {
        let mut group: Vec<Transaction> = idx.iter().map(|&i| txs[i].clone()).collect();
        group.sort_by_key(|t| t.nonce);
        for (&i, tx) in idx.iter().zip(group) {
            txs[i] = tx;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{Keypair, TxScope};

    fn tx(k: u64, chain: u64, nonce: u64, len: usize) -> Transaction {
        Transaction::new_signed(&Keypair::for_testing(k), TxScope::ChainOnly, ChainId(chain), nonce, vec![7; len])
    }

    fn cfg() -> MempoolLimits {
        MempoolLimits { max_txs: 10, max_per_sender: 4, ..MempoolLimits::default() }
    }

    fn add(m: &mut Mempool, t: Transaction) -> Result<SubmitOutcome, SubmitError> {
        let id = Mempool::precheck(&cfg(), m.chains(), &t)?;
        m.insert(t, id, Duration::ZERO)
    }

    #[test]
    fn checks_limits_and_duplicates() {
        let mut m = Mempool::new(cfg(), [ChainId(1), ChainId(2)]);
        assert!(matches!(add(&mut m, tx(1, 1, 0, 10)), Ok(SubmitOutcome::Accepted(_))));
        assert!(matches!(add(&mut m, tx(1, 1, 0, 10)), Ok(SubmitOutcome::Duplicate(_))));
        assert_eq!(add(&mut m, tx(1, 9, 0, 10)), Err(SubmitError::UnknownChain(9)));
        assert!(matches!(add(&mut m, tx(1, 1, 1, 100_000)), Err(SubmitError::TooLarge { .. })));
        for n in 1..4 {
            add(&mut m, tx(1, 1, n, 10)).unwrap();
        }
        assert!(matches!(add(&mut m, tx(1, 1, 9, 10)), Err(SubmitError::Busy(_))), "per-sender limit");
        for k in 2..8 {
            add(&mut m, tx(k, 2, 0, 10)).unwrap();
        }
        assert_eq!(m.stats().held, 10);
        assert!(matches!(add(&mut m, tx(20, 2, 0, 10)), Err(SubmitError::Busy(_))), "mempool full");
        // Settlement claims are accepted under the settlement namespace.
        let mut m2 = Mempool::new(cfg(), [ChainId(1)]);
        let claim = Transaction::new_signed(
            &Keypair::for_testing(3),
            TxScope::ChainOnly,
            ChainId::from(Namespace::SETTLEMENT),
            0,
            vec![1],
        );
        assert!(add(&mut m2, claim).is_ok());
    }

    #[test]
    fn batches_hold_until_ordered_then_release_and_remember_ids() {
        let mut m = Mempool::new(cfg(), [ChainId(1), ChainId(2)]);
        let a = tx(1, 1, 0, 10);
        add(&mut m, a.clone()).unwrap();
        add(&mut m, tx(2, 2, 0, 10)).unwrap();
        add(&mut m, tx(3, 2, 0, 10)).unwrap();
        assert!(m.ready(1, std::time::Duration::from_secs(100), Duration::ZERO));
        let cut = m.cut(1 << 20).unwrap();
        assert_eq!(cut.txs, 3);
        assert_eq!(cut.blobs.len(), 2);
        let b: Batch = codec::decode(&cut.blobs[1].data).unwrap();
        assert_eq!((b.namespace, b.txs.len()), (Namespace::from(ChainId(2)), 2));
        assert_eq!(m.stats().held, 3, "held until ordered");
        assert!(m.cut(1 << 20).is_none());
        m.certified(cut.id, Digest([5; 32]));
        assert_eq!(m.ordered(&[Digest([6; 32])]), 0);
        assert_eq!(m.ordered(&[Digest([5; 32])]), 3);
        assert_eq!(m.stats(), MempoolStats::default());
        assert!(matches!(add(&mut m, a), Ok(SubmitOutcome::Duplicate(_))), "recently ordered");
    }

    #[test]
    fn governed_batch_limit_bounds_every_cut_and_refuses_what_cannot_fit() {
        let mut m =
            Mempool::new(MempoolLimits { max_per_sender: 1000, ..MempoolLimits::default() }, [ChainId(1), ChainId(2)]);
        const LIMIT: u64 = 4_000;
        m.set_batch_bytes(Some(LIMIT));
        let room = m.batch_room().unwrap();
        assert_eq!(room, LIMIT as usize - Batch::ENCODING_PER_BATCH - Batch::ENCODING_PER_TX);
        // A transaction that cannot fit in a batch alone is refused at once, with the room.
        let big = tx(9, 1, 0, room - 111);
        assert_eq!(add(&mut m, big), Err(SubmitError::TooLarge { size: room + 1, max: room }));
        add(&mut m, tx(9, 1, 0, room - 112)).unwrap();
        // Two chains, varied sizes: every cut's blobs, encoded, stay within the limit,
        // though the node's own budget (1 MiB) would take everything at once.
        for n in 0..60u64 {
            add(&mut m, tx(1, 1 + n % 2, n / 2, 10 + (n as usize * 37) % 300)).unwrap();
        }
        assert!(m.ready(1 << 20, Duration::from_secs(100), Duration::ZERO), "a full batch is ready");
        let mut cuts = 0;
        while let Some(cut) = m.cut(1 << 20) {
            let encoded: usize = cut.blobs.iter().map(|b| b.data.len()).sum();
            assert!(encoded as u64 <= LIMIT, "cut of {} transactions: {encoded} bytes", cut.txs);
            // Not cut needlessly small either, unless it took the rest.
            assert!(m.stats().queued == 0 || encoded as u64 > LIMIT / 2, "{encoded}");
            cuts += 1;
            m.certified(cut.id, Digest([cuts as u8; 32]));
            m.ordered(&[Digest([cuts as u8; 32])]);
        }
        assert!(cuts >= 6, "{cuts} cuts");
        assert_eq!(m.stats().queued, 0);
        // Lifted: one cut takes what is queued.
        m.set_batch_bytes(None);
        for n in 30..90u64 {
            add(&mut m, tx(1, 1, n, 200)).unwrap();
        }
        assert_eq!(m.cut(1 << 20).map(|c| c.txs), Some(60));
    }

    #[test]
    fn cut_respects_the_byte_budget() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        for n in 0..10 {
            add(&mut m, tx(1, 1, n, 400)).unwrap();
        }
        let cut = m.cut(1000).unwrap();
        assert_eq!(cut.txs, 1, "512-byte txs: one fits in 1000 bytes, a second does not");
        assert_eq!(m.stats().queued, 9);
    }

    /// A unique attestation for cut `id`.
    fn attestation(id: u64) -> Digest {
        lamina_primitives::domains::BATCH.hash(&id.to_le_bytes())
    }

    fn txs_of(cut: &Cut) -> Vec<Transaction> {
        cut.blobs.iter().flat_map(|b| codec::decode::<Batch>(&b.data).unwrap().txs).collect()
    }

    /// Every transaction of every cut, in log order (each cut certified and ordered
    /// before the next).
    fn drain_all(m: &mut Mempool) -> Vec<Transaction> {
        let mut out = Vec::new();
        while let Some(cut) = m.cut(1 << 20) {
            out.extend(txs_of(&cut));
            m.certified(cut.id, attestation(cut.id));
            m.ordered(&[attestation(cut.id)]);
        }
        out
    }

    #[test]
    fn a_senders_next_transactions_wait_until_its_batch_in_flight_is_ordered() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        add(&mut m, tx(1, 1, 0, 10)).unwrap();
        add(&mut m, tx(2, 1, 0, 10)).unwrap();
        assert_eq!(m.unordered_batches(), 0);
        let first = m.cut(1 << 20).unwrap();
        assert_eq!(first.txs, 2);
        assert_eq!(m.unordered_batches(), 1);
        m.certified(first.id, attestation(first.id));
        // Sender 1's nonce 1 waits for the first batch; sender 3 goes by it.
        add(&mut m, tx(1, 1, 1, 10)).unwrap();
        add(&mut m, tx(3, 1, 0, 10)).unwrap();
        let second = m.cut(1 << 20).unwrap();
        assert_eq!(nonces_of(&txs_of(&second), 3), vec![0]);
        assert!(nonces_of(&txs_of(&second), 1).is_empty(), "nonce 1 must not race nonce 0's batch");
        assert!(m.cut(1 << 20).is_none(), "only a waiting transaction is queued");
        assert_eq!(m.stats().queued, 1);
        assert_eq!(m.unordered_batches(), 2);
        // Ordering another validator's batch changes nothing; ordering ours releases it.
        m.ordered(&[attestation(99)]);
        assert!(m.cut(1 << 20).is_none());
        assert_eq!(m.unordered_batches(), 2);
        m.ordered(&[attestation(first.id)]);
        assert_eq!(m.unordered_batches(), 1, "the second batch is not ordered yet");
        assert_eq!(nonces_of(&txs_of(&m.cut(1 << 20).unwrap()), 1), vec![1]);
    }

    #[test]
    fn a_refused_batch_is_queued_again_ahead_of_its_senders_next_transactions() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        add(&mut m, tx(1, 1, 0, 10)).unwrap();
        add(&mut m, tx(2, 1, 0, 10)).unwrap();
        add(&mut m, tx(1, 1, 1, 10)).unwrap();
        let first = m.cut(1 << 20).unwrap();
        m.certified(first.id, attestation(first.id));
        add(&mut m, tx(1, 1, 2, 10)).unwrap();
        add(&mut m, tx(3, 1, 0, 10)).unwrap();
        assert_eq!(m.unordered_batches(), 1);
        // The core refused the certificate: its transactions come back, still held (a
        // retry is a duplicate), and the batch no longer counts as unordered.
        let held = m.stats().held;
        let again = m.requeue(&attestation(first.id), Duration::ZERO, None).unwrap();
        assert_eq!(again.queued.len(), 3);
        assert!(again.dropped.is_empty());
        assert_eq!(m.unordered_batches(), 0);
        assert_eq!(m.stats().held, held);
        assert!(matches!(add(&mut m, tx(1, 1, 1, 10)), Ok(SubmitOutcome::Duplicate(_))));
        // Sender 1's nonces 0 and 1 go before its nonce 2, which was waiting for them.
        let txs = drain_all(&mut m);
        assert_eq!(nonces_of(&txs, 1), vec![0, 1, 2]);
        assert_eq!(nonces_of(&txs, 2), vec![0]);
        assert_eq!(nonces_of(&txs, 3), vec![0]);
        assert_eq!(m.stats().held, 0);
        // A later report of the refused batch changes nothing (no double release).
        m.ordered(&[attestation(first.id)]);
        assert!(m.requeue(&attestation(first.id), Duration::ZERO, None).is_none());
    }

    #[test]
    fn a_refused_transaction_too_large_for_the_limit_of_now_is_dropped() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        add(&mut m, tx(1, 1, 0, 2_000)).unwrap();
        add(&mut m, tx(2, 1, 0, 10)).unwrap();
        let first = m.cut(1 << 20).unwrap();
        m.certified(first.id, attestation(first.id));
        // Governance lowered the batch limit below the large transaction's size: it
        // could never be ordered again, and a cut would take it alone over the limit.
        // The refusing core's limit applies even before governance's reaches the mempool.
        let again = m.requeue(&attestation(first.id), Duration::ZERO, Some(1_000)).unwrap();
        assert_eq!(m.batch_bytes(), Some(1_000));
        assert_eq!(again.queued, vec![tx(2, 1, 0, 10)]);
        assert_eq!(again.dropped, vec![tx(1, 1, 0, 2_000).id()]);
        assert_eq!(m.stats().held, 1);
        assert_eq!(drain_all(&mut m), vec![tx(2, 1, 0, 10)]);
    }

    #[test]
    fn a_restored_certificate_holds_its_senders_until_ordered() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        m.in_flight_until_ordered(attestation(500), vec![tx(1, 1, 0, 10)]);
        assert_eq!(m.unordered_batches(), 1);
        assert_eq!(m.stats().held, 1);
        // A client's retry of the restored transaction is a duplicate; its next nonce
        // waits for the certificate to be ordered.
        assert!(matches!(add(&mut m, tx(1, 1, 0, 10)), Ok(SubmitOutcome::Duplicate(_))));
        add(&mut m, tx(1, 1, 1, 10)).unwrap();
        assert!(m.cut(1 << 20).is_none());
        m.ordered(&[attestation(500)]);
        assert_eq!(m.unordered_batches(), 0);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![1]);
        assert_eq!(m.stats().held, 0);
    }

    #[test]
    fn a_restored_certificate_the_core_refuses_is_queued_again() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        m.in_flight_until_ordered(attestation(500), vec![tx(1, 1, 0, 10), tx(1, 1, 1, 10)]);
        add(&mut m, tx(1, 1, 2, 10)).unwrap();
        let again = m.requeue(&attestation(500), Duration::ZERO, None).unwrap();
        assert_eq!(again.queued.len(), 2);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![0, 1, 2]);
        assert_eq!(m.stats().held, 0);
    }

    fn nonces_of(txs: &[Transaction], k: u64) -> Vec<u64> {
        let key = Keypair::for_testing(k).public();
        txs.iter().filter(|t| t.sender == key).map(|t| t.nonce).collect()
    }

    #[test]
    fn a_nonce_beyond_a_gap_is_parked_until_the_gap_fills() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        add(&mut m, tx(1, 1, 0, 10)).unwrap();
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![0]);
        // Two concurrent requests reached the lock in the wrong order: 3 and 2 before 1.
        assert!(matches!(add(&mut m, tx(1, 1, 3, 10)), Ok(SubmitOutcome::Accepted(_))));
        assert!(matches!(add(&mut m, tx(1, 1, 2, 10)), Ok(SubmitOutcome::Accepted(_))));
        assert_eq!(m.stats().parked, 2);
        assert!(m.cut(1 << 20).is_none(), "nothing is cut across a gap");
        assert!(!m.is_idle());
        add(&mut m, tx(1, 1, 1, 10)).unwrap();
        assert_eq!(m.stats().parked, 0);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![1, 2, 3]);
        // A second transaction for a parked nonce is refused: it could never execute.
        add(&mut m, tx(1, 1, 6, 10)).unwrap();
        let other = tx(1, 1, 6, 11);
        assert!(matches!(add(&mut m, other), Err(SubmitError::Malformed(_))));
    }

    #[test]
    fn a_gap_that_never_fills_is_released_after_the_timeout() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        let t0 = Duration::ZERO;
        m.insert(tx(1, 1, 0, 10), tx(1, 1, 0, 10).id(), t0).unwrap();
        let late = tx(1, 1, 5, 10);
        m.insert(late.clone(), late.id(), t0).unwrap();
        let later = tx(1, 1, 6, 10);
        m.insert(later.clone(), later.id(), t0).unwrap();
        assert_eq!(m.release_gaps(t0 + Duration::from_millis(500)), 0);
        assert_eq!(m.release_gaps(t0 + Duration::from_secs(2)), 2);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![0, 5, 6]);
        // The sequence continues after the released ones.
        add(&mut m, tx(1, 1, 7, 10)).unwrap();
        assert_eq!(m.stats().parked, 0);
    }

    #[test]
    fn a_validator_that_takes_no_more_releases_every_gap_at_once() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        let t0 = Duration::ZERO;
        m.insert(tx(1, 1, 0, 10), tx(1, 1, 0, 10).id(), t0).unwrap();
        for (k, n) in [(1, 5), (1, 6), (2, 3)] {
            let t = tx(k, 1, n, 10);
            m.insert(t.clone(), t.id(), t0).unwrap();
        }
        assert_eq!(m.stats().parked, 3, "a known sender's gap and a new sender's first nonce");
        assert_eq!(m.release_gaps(t0), 0, "no timeout has passed");
        assert_eq!(m.release_all_gaps(t0), 3);
        assert_eq!(m.stats().parked, 0);
        let all = drain_all(&mut m);
        assert_eq!((nonces_of(&all, 1), nonces_of(&all, 2)), (vec![0, 5, 6], vec![3]));
    }

    #[test]
    fn idle_senders_are_remembered_up_to_the_limit() {
        let cfg = MempoolLimits { max_tracked_senders: 2, ..MempoolLimits::default() };
        let mut m = Mempool::new(cfg, [ChainId(1)]);
        for k in 1..=5 {
            add(&mut m, tx(k, 1, 0, 10)).unwrap();
        }
        let cut = m.cut(1 << 20).unwrap();
        assert_eq!(m.sequences.len(), 5, "senders with transactions held are all tracked");
        m.certified(cut.id, Digest([1; 32]));
        m.ordered(&[Digest([1; 32])]);
        assert_eq!(m.sequences.len(), 2, "idle senders beyond the limit are forgotten");
        // A remembered sender keeps its order: its nonce 2 waits for 1.
        add(&mut m, tx(5, 1, 2, 10)).unwrap();
        assert_eq!(m.stats().parked, 1);
    }

    /// Every sequence with an idle mark has exactly the one entry of that mark.
    fn check_idle(m: &Mempool) {
        let marked = m.sequences.values().filter(|s| s.idle_mark != 0).count();
        assert_eq!(m.idle.len(), marked);
        for (mark, key) in &m.idle {
            assert_eq!(m.sequences[key].idle_mark, *mark);
        }
    }

    #[test]
    fn a_steady_sender_is_not_forgotten_however_often_it_goes_idle() {
        // Senders 1 and 2 each send a transaction per batch, and go idle after each is
        // ordered: many more idle spells than the limit, but only two senders.
        let cfg = MempoolLimits { max_tracked_senders: 2, ..MempoolLimits::default() };
        let mut m = Mempool::new(cfg, [ChainId(1)]);
        let order_one = |m: &mut Mempool, k: u64, nonce: u64| {
            add(m, tx(k, 1, nonce, 10)).unwrap();
            let cut = m.cut(1 << 20).expect("a known sender's next nonce is queued, not parked");
            m.certified(cut.id, attestation(cut.id));
            m.ordered(&[attestation(cut.id)]);
        };
        for nonce in 0..20 {
            order_one(&mut m, 1, nonce);
            order_one(&mut m, 2, nonce);
        }
        let key = |k: u64| (tx(k, 1, 0, 10).sender, ChainId(1));
        assert_eq!(m.sequences.len(), 2, "both senders are remembered");
        assert_eq!(m.sequences[&key(1)].next, 20, "sender 1 is known, expected at nonce 20");
        check_idle(&m);
        // Sender 1's nonce 21 (20 missing) waits for its gap.
        add(&mut m, tx(1, 1, 21, 10)).unwrap();
        assert_eq!(m.stats().parked, 1);
        // A third idle sender: the oldest entry is sender 1's, which is busy again (its
        // nonce 21 is held), so it is kept and only its entry goes.
        order_one(&mut m, 3, 0);
        assert_eq!(m.sequences.len(), 3);
        check_idle(&m);
        // A fourth: now sender 2, idle the longest, is forgotten.
        order_one(&mut m, 4, 0);
        assert!(!m.sequences.contains_key(&key(2)), "the sender idle the longest is forgotten");
        assert!([1, 3, 4].iter().all(|k| m.sequences.contains_key(&key(*k))));
        assert_eq!(m.idle.len(), 2);
        check_idle(&m);
    }

    #[test]
    fn a_gap_found_as_another_is_filled_keeps_its_own_timeout() {
        // One request of a new sender carries nonces 1, 0 and 3, inserted at the same
        // time: 1 opens a new sender's gap, 0 fills it, 3 opens a known sender's gap.
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        let t0 = Duration::from_secs(1);
        for n in [1, 0, 3] {
            let t = tx(1, 1, n, 10);
            m.insert(t.clone(), t.id(), t0).unwrap();
        }
        assert_eq!(m.stats().parked, 1);
        // Past a new sender's wait, within a known sender's gap timeout: the filled
        // gap's entry, found at the same time, must not release the new gap.
        let wait = Duration::from_millis(MempoolLimits::default().new_sender_wait_ms);
        assert_eq!(m.release_gaps(t0 + wait * 2), 0);
        let t = tx(1, 1, 2, 10);
        m.insert(t.clone(), t.id(), t0 + wait * 3).unwrap();
        assert_eq!(m.stats().parked, 0);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_new_sender_waits_briefly_for_lower_nonces_in_flight() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        let t0 = Duration::ZERO;
        let ins = |m: &mut Mempool, t: Transaction, at: Duration| m.insert(t.clone(), t.id(), at).unwrap();
        // A new account's nonce 1 overtakes its nonce 0: it waits, then both go in order.
        ins(&mut m, tx(1, 1, 1, 10), t0);
        assert!(m.cut(1 << 20).is_none());
        ins(&mut m, tx(1, 1, 0, 10), t0);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![0, 1]);
        // A returning sender (first seen at nonce 7) waits new_sender_wait_ms at most...
        ins(&mut m, tx(2, 1, 7, 10), t0);
        ins(&mut m, tx(2, 1, 8, 10), t0);
        assert_eq!(m.release_gaps(t0 + Duration::from_millis(50)), 0);
        // ...and a lower nonce that arrives meanwhile goes first.
        ins(&mut m, tx(2, 1, 6, 10), t0 + Duration::from_millis(60));
        assert_eq!(m.release_gaps(t0 + Duration::from_millis(150)), 3);
        assert_eq!(nonces_of(&drain_all(&mut m), 2), vec![6, 7, 8]);
        // Its sequence then continues without waiting.
        ins(&mut m, tx(2, 1, 9, 10), t0);
        assert_eq!(nonces_of(&drain_all(&mut m), 2), vec![9]);
    }

    #[test]
    fn a_gap_is_held_while_a_nonce_that_could_fill_it_is_still_being_checked() {
        let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1)]);
        let ms = Duration::from_millis;
        let ins = |m: &mut Mempool, t: Transaction, at: Duration| m.insert(t.clone(), t.id(), at).unwrap();
        let key = |k: u64, nonce: u64| (Keypair::for_testing(k).public(), ChainId(1), nonce);
        // A new sender's nonce 1 arrives while its nonce 0 is still in intake's
        // signature checks (a loaded validator): past new_sender_wait_ms it still waits.
        m.checking(&[key(1, 0)]);
        ins(&mut m, tx(1, 1, 1, 10), ms(0));
        assert_eq!(m.release_gaps(ms(150)), 0);
        assert_eq!(m.release_gaps(ms(900)), 0);
        // Nonce 0 is checked and inserted (in one critical section): both go in order.
        m.checked(&[key(1, 0)]);
        ins(&mut m, tx(1, 1, 0, 10), ms(950));
        assert_eq!(m.release_gaps(ms(960)), 0);
        assert_eq!(nonces_of(&drain_all(&mut m), 1), vec![0, 1]);
        // Checks that end without filling the gap (nonce 0 refused): released at once.
        m.checking(&[key(2, 0)]);
        ins(&mut m, tx(2, 1, 1, 10), ms(0));
        assert_eq!(m.release_gaps(ms(150)), 0);
        m.checked(&[key(2, 0)]);
        assert_eq!(m.release_gaps(ms(160)), 1);
        assert_eq!(nonces_of(&drain_all(&mut m), 2), vec![1]);
        // Checks that never end hold a first gap at most nonce_gap_ms past its timeout.
        m.checking(&[key(3, 0)]);
        ins(&mut m, tx(3, 1, 1, 10), ms(0));
        assert_eq!(m.release_gaps(ms(1_099)), 0);
        assert_eq!(m.release_gaps(ms(1_100)), 1);
        m.checked(&[key(3, 0)]);
        // Only a nonce inside the gap holds it: a sender's later nonces (above what is
        // parked) and other senders' checks hold nothing.
        m.checking(&[key(4, 2), key(4, 3), key(6, 0)]);
        ins(&mut m, tx(4, 1, 1, 10), ms(2_000));
        ins(&mut m, tx(5, 1, 1, 10), ms(2_000));
        assert_eq!(m.release_gaps(ms(2_100)), 2);
        m.checked(&[key(4, 2), key(4, 3), key(6, 0)]);
        // A leaving validator releases every gap, held or not.
        m.checking(&[key(7, 0)]);
        ins(&mut m, tx(7, 1, 1, 10), ms(3_000));
        assert_eq!(m.release_all_gaps(ms(3_001)), 1);
        assert_eq!(m.stats().parked, 0);
    }

    #[test]
    fn a_late_lower_nonce_is_sorted_within_its_batch() {
        let mut txs = vec![tx(1, 1, 5, 10), tx(2, 1, 0, 10), tx(1, 1, 4, 10), tx(2, 1, 1, 10)];
        in_nonce_order(&mut txs);
        assert_eq!(nonces_of(&txs, 1), vec![4, 5]);
        assert_eq!(nonces_of(&txs, 2), vec![0, 1]);
        assert_eq!(txs[1].sender, Keypair::for_testing(2).public(), "other senders keep their places");
    }

    #[test]
    fn nonce_order_survives_any_arrival_order_and_any_cut_points() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut m = Mempool::new(MempoolLimits::default(), [ChainId(1), ChainId(2)]);
            let senders = 1..=12u64;
            // New accounts: every nonce from 0 arrives in random order within a window
            // (requests of 2..24 transactions checked concurrently), with cuts and
            // ordering at random points.
            let mut log = Vec::new();
            let mut rest: Vec<(u64, u64)> = senders.clone().flat_map(|k| (0..=40).map(move |n| (k, n))).collect();
            // Mostly in order, with local reordering (as concurrent requests produce).
            rest.sort_by_key(|&(k, n)| (n, k));
            for w in rest.chunks_mut(rng.random_range(2..24)) {
                w.shuffle(&mut rng);
            }
            for (k, n) in rest {
                add(&mut m, tx(k, 1 + k % 2, n, 10)).unwrap();
                if rng.random_bool(0.05) {
                    log.extend(drain_all(&mut m));
                    // Order what was cut: senders go idle and must keep their place.
                    let ids: Vec<u64> = m.batches.keys().copied().collect();
                    for b in ids {
                        let a = Digest([b as u8; 32]);
                        m.certified(b, a);
                        m.ordered(&[a]);
                    }
                    check_idle(&m);
                }
            }
            assert_eq!(m.stats().parked, 0, "seed {seed}: every gap filled");
            log.extend(drain_all(&mut m));
            for k in senders.clone() {
                assert_eq!(nonces_of(&log, k), (0..=40).collect::<Vec<_>>(), "seed {seed}, sender {k}");
            }
        }
    }
}
