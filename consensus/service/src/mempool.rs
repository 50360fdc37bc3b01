//! The mempool: checked transactions waiting to be batched, and the bookkeeping of
//! batches until they are ordered.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use lamina_interfaces::{Blob, SubmitError, SubmitOutcome};
use lamina_primitives::{Batch, ChainId, Digest, Namespace, PublicKey, Transaction, TxId, codec};

use crate::config::MempoolConfig;

/// One transaction's bookkeeping while held.
#[derive(Clone, Copy, Debug)]
struct Held {
    sender: PublicKey,
    bytes: usize,
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
}

/// The mempool (callers wrap it in a mutex).
#[derive(Debug)]
pub struct Mempool {
    cfg: MempoolConfig,
    chains: BTreeSet<ChainId>,
    queues: BTreeMap<Namespace, VecDeque<(Transaction, TxId, Instant)>>,
    queued: usize,
    queued_bytes: usize,
    held: HashMap<TxId, Held>,
    held_bytes: usize,
    per_sender: HashMap<PublicKey, usize>,
    batches: HashMap<u64, Vec<TxId>>,
    by_attestation: HashMap<Digest, u64>,
    next_batch: u64,
    recent: VecDeque<TxId>,
    recent_set: HashSet<TxId>,
}

impl Mempool {
    /// An empty mempool accepting the given chains (plus the settlement namespace).
    pub fn new(cfg: MempoolConfig, chains: impl IntoIterator<Item = ChainId>) -> Self {
        let mut chains: BTreeSet<ChainId> = chains.into_iter().collect();
        chains.insert(ChainId::from(Namespace::SETTLEMENT));
        Mempool {
            cfg,
            chains,
            queues: BTreeMap::new(),
            queued: 0,
            queued_bytes: 0,
            held: HashMap::new(),
            held_bytes: 0,
            per_sender: HashMap::new(),
            batches: HashMap::new(),
            by_attestation: HashMap::new(),
            next_batch: 0,
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
        }
    }

    /// The checks that need no lock and no signature: size and chain. `Ok` carries the id.
    pub fn precheck(cfg: &MempoolConfig, chains: &BTreeSet<ChainId>, tx: &Transaction) -> Result<TxId, SubmitError> {
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
    pub fn insert(&mut self, tx: Transaction, id: TxId, now: Instant) -> Result<SubmitOutcome, SubmitError> {
        if self.held.contains_key(&id) || self.recent_set.contains(&id) {
            return Ok(SubmitOutcome::Duplicate(id));
        }
        let bytes = tx.approx_size();
        if self.held.len() >= self.cfg.max_txs || self.held_bytes + bytes > self.cfg.max_bytes {
            return Err(SubmitError::Busy(format!("mempool full ({} transactions held)", self.held.len())));
        }
        let count = self.per_sender.entry(tx.sender).or_default();
        if *count >= self.cfg.max_per_sender {
            return Err(SubmitError::Busy(format!("sender has {} transactions pending (limit)", *count)));
        }
        *count += 1;
        self.held.insert(id, Held { sender: tx.sender, bytes });
        self.held_bytes += bytes;
        self.queued += 1;
        self.queued_bytes += bytes;
        self.queues.entry(Namespace::from(tx.chain_id)).or_default().push_back((tx, id, now));
        Ok(SubmitOutcome::Accepted(id))
    }

    /// True if a batch should be cut now: enough bytes queued, or the oldest queued
    /// transaction waited `max_delay`.
    pub fn ready(&self, max_bytes: usize, max_delay: std::time::Duration, now: Instant) -> bool {
        self.queued > 0
            && (self.queued_bytes >= max_bytes
                || self.queues.values().filter_map(|q| q.front()).any(|(_, _, t)| now.duration_since(*t) >= max_delay))
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Cuts a batch of up to `max_bytes` (at least one transaction), oldest first per
    /// namespace; `None` if nothing is queued.
    pub fn cut(&mut self, max_bytes: usize) -> Option<Cut> {
        if self.queued == 0 {
            return None;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let mut ids = Vec::new();
        let mut blobs = Vec::new();
        let mut per_namespace = Vec::new();
        let mut bytes = 0usize;
        // Share the budget fairly: take round-robin one transaction per namespace.
        let mut taken: BTreeMap<Namespace, Vec<Transaction>> = BTreeMap::new();
        loop {
            let mut progressed = false;
            for (ns, q) in self.queues.iter_mut() {
                let Some((tx, _, _)) = q.front() else { continue };
                let size = tx.approx_size();
                if !ids.is_empty() && bytes + size > max_bytes {
                    continue;
                }
                let Some((tx, txid, _)) = q.pop_front() else { continue };
                bytes += size;
                ids.push(txid);
                taken.entry(*ns).or_default().push(tx);
                progressed = true;
            }
            if !progressed || bytes >= max_bytes {
                break;
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        self.queued -= ids.len();
        self.queued_bytes -= bytes;
        for (ns, txs) in taken {
            per_namespace.push((ns, txs.len()));
            let batch = Batch { namespace: ns, txs };
            // Within MAX_BATCH by construction (max_bytes <= 32 MiB).
            let data = codec::encode(&batch).unwrap_or_default();
            blobs.push(Blob { namespace: ns, data });
        }
        let txs = ids.len();
        self.batches.insert(id, ids);
        Some(Cut { id, blobs, txs, bytes, per_namespace })
    }

    /// A batch was certified by DA under `attestation`.
    pub fn certified(&mut self, batch: u64, attestation: Digest) {
        if self.batches.contains_key(&batch) {
            self.by_attestation.insert(attestation, batch);
        }
    }

    /// Blocks ordered these attestations: release the transactions of our batches among
    /// them. Returns how many transactions were released.
    pub fn ordered(&mut self, attestations: &[Digest]) -> usize {
        let mut released = 0;
        for a in attestations {
            let Some(batch) = self.by_attestation.remove(a) else { continue };
            let Some(ids) = self.batches.remove(&batch) else { continue };
            for id in ids {
                if let Some(h) = self.held.remove(&id) {
                    self.held_bytes -= h.bytes;
                    if let Some(c) = self.per_sender.get_mut(&h.sender) {
                        *c -= 1;
                        if *c == 0 {
                            self.per_sender.remove(&h.sender);
                        }
                    }
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

    /// Counters.
    pub fn stats(&self) -> MempoolStats {
        MempoolStats {
            held: self.held.len(),
            held_bytes: self.held_bytes,
            queued: self.queued,
            batches: self.batches.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    fn tx(k: u64, chain: u64, nonce: u64, len: usize) -> Transaction {
        Transaction::new_signed(&Keypair::for_testing(k), ChainId(chain), nonce, vec![7; len])
    }

    fn cfg() -> MempoolConfig {
        MempoolConfig { max_txs: 10, max_per_sender: 4, ..MempoolConfig::default() }
    }

    fn add(m: &mut Mempool, t: Transaction) -> Result<SubmitOutcome, SubmitError> {
        let id = Mempool::precheck(&cfg(), m.chains(), &t)?;
        m.insert(t, id, Instant::now())
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
        let claim = Transaction::new_signed(&Keypair::for_testing(3), ChainId::from(Namespace::SETTLEMENT), 0, vec![1]);
        assert!(add(&mut m2, claim).is_ok());
    }

    #[test]
    fn batches_hold_until_ordered_then_release_and_remember_ids() {
        let mut m = Mempool::new(cfg(), [ChainId(1), ChainId(2)]);
        let a = tx(1, 1, 0, 10);
        add(&mut m, a.clone()).unwrap();
        add(&mut m, tx(2, 2, 0, 10)).unwrap();
        add(&mut m, tx(3, 2, 0, 10)).unwrap();
        assert!(m.ready(1, std::time::Duration::from_secs(100), Instant::now()));
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
    fn cut_respects_the_byte_budget() {
        let mut m = Mempool::new(MempoolConfig::default(), [ChainId(1)]);
        for n in 0..10 {
            add(&mut m, tx(1, 1, n, 400)).unwrap();
        }
        let cut = m.cut(1000).unwrap();
        assert_eq!(cut.txs, 1, "512-byte txs: one fits in 1000 bytes, a second does not");
        assert_eq!(m.stats().queued, 9);
    }
}
