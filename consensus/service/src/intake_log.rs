//! The intake log: what makes "accepted" durable.
//!
//! Intake answers `Accepted` only once the transaction is in this `lamina-store` log and
//! the log is synced (group commit: concurrent requests share one fdatasync). When a
//! batch is certified by DA, a `Certified` record with the certificate and the batch's
//! transaction ids is made durable before the certificate goes to the core, in cut
//! order (so a certified batch implies every earlier batch is certified too: a sender's
//! nonce order survives a crash). When such a batch is ordered, an `Ordered` record
//! names it (appended without a sync of its own: it is durable with the next group
//! commit; the log buffers appends, so a killed process can lose it until then, and then
//! the dedup window below covers it). When the core refuses one (see
//! [`IntakeLog::requeued`]), a durable `Requeued` record holds the transactions queued
//! again. After a crash, the certificates with no `Ordered` or `Requeued` record are
//! given back to the core with their transactions (it proposes them again; one whose
//! `Ordered` record was lost with the machine is still recognised by attestation in the
//! last `dedup_window` heights of the ordered log), and the transactions of `Accepted`
//! and `Requeued` records that no later `Certified` record names are put back in the
//! mempool. So a transaction acknowledged by a validator that is then killed is ordered
//! once it restarts, and not twice, however long ago its batch was ordered.
//!
//! Pruning: the lowest record still needed — an `Accepted` or `Requeued` record with a
//! transaction not yet ordered, or a `Certified` record whose batch is not yet ordered
//! nor requeued — bounds what is kept; whole segments below it are deleted. An ordering
//! releases every record holding the batch's transactions; a requeue those below its
//! first part. A transaction's record is
//! kept until its batch is ordered, not only until it is certified, so that a
//! certificate given back after a restart comes with its transactions, and a core that
//! refuses it can have them queued again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use lamina_primitives::{AvailabilityCertificate, Digest, Transaction, TxId, Wire, codec};
use lamina_store::{Config as StoreConfig, Log};
use parking_lot::Mutex;

use crate::error::Error;

/// One intake-log record.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum IntakeRecord {
    /// Transactions intake accepted (one request's worth).
    Accepted(Vec<Transaction>),
    /// A batch DA certified: its availability certificate and its transactions.
    Certified(AvailabilityCertificate, Vec<TxId>),
    /// Batches of earlier `Certified` records that were ordered (attestation digests).
    Ordered(Vec<Digest>),
    /// `(batch, parts_from, txs)`: the batch of an earlier `Certified` record (its
    /// attestation digest) that the core refused. It is not given back, and these of
    /// its transactions were queued again, with those of the `Accepted` records written
    /// just before it, from record `parts_from` (this requeue's first) on, for a batch
    /// larger than a record (the others could never be ordered: dropped).
    Requeued(Digest, u64, Vec<Transaction>),
}

impl Wire for IntakeRecord {
    const NAME: &'static str = "consensus::IntakeRecord";
    const MAX_SIZE: usize = crate::protocol::MAX_SUBMIT_BYTES + (1 << 20);
}

/// The intake log. Cheap to share (`Arc`); appends from any thread.
pub struct IntakeLog {
    log: Log,
    /// The transaction bytes ([`Transaction::approx_size`], plus 64 each) one record
    /// of requeued transactions holds at most: half the largest record.
    max_part: usize,
    /// What the log still needs, by record.
    needed: Mutex<Needed>,
}

/// The records still needed: the same bookkeeping replays the log at open and follows
/// appends afterwards.
#[derive(Default)]
struct Needed {
    /// Per `Accepted` or `Requeued` record: how many of its transactions are not yet
    /// ordered (nor dropped).
    by_record: BTreeMap<u64, usize>,
    /// The record holding each transaction not yet ordered (the latest, if several).
    record_of: HashMap<TxId, u64>,
    /// `Certified` records whose batch is not yet ordered nor requeued.
    unordered: BTreeMap<u64, Digest>,
    /// For each such batch: its record and its transactions.
    batch: HashMap<Digest, (u64, Vec<TxId>)>,
}

impl Needed {
    fn lowest(&self) -> Option<u64> {
        let a = self.by_record.keys().next().copied();
        let b = self.unordered.keys().next().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Transaction `id` is held by record `seq` (no longer by an earlier one).
    fn hold(&mut self, id: TxId, seq: u64) {
        self.settle(&id);
        self.record_of.insert(id, seq);
        *self.by_record.entry(seq).or_default() += 1;
    }

    /// Transaction `id` no longer needs its record.
    fn settle(&mut self, id: &TxId) {
        if let Some(s) = self.record_of.remove(id)
            && let Some(n) = self.by_record.get_mut(&s)
        {
            *n -= 1;
            if *n == 0 {
                self.by_record.remove(&s);
            }
        }
    }

    /// Record `seq` certified batch `a` of `ids`.
    fn certified(&mut self, a: Digest, seq: u64, ids: Vec<TxId>) {
        // The same bytes certified again (a resubmitted transaction cut again) while the
        // first is unordered: one ordering settles both, so the newer record stands for
        // both (the older must not hold pruning back for ever).
        if let Some((older, _)) = self.batch.insert(a, (seq, ids)) {
            self.unordered.remove(&older);
        }
        self.unordered.insert(seq, a);
    }

    /// Batch `a` will not be given back: its transactions no longer need their
    /// records, except those at or after `kept_from` (the parts of this requeue, which
    /// hold them again; `u64::MAX` for an ordering, which settles them all, also parts
    /// an earlier requeue left behind when it crashed halfway, and, in a log of an
    /// earlier version, a client's retry accepted again since). False if it is not a
    /// batch of this log.
    fn settle_batch(&mut self, a: &Digest, kept_from: u64) -> bool {
        let Some((seq, ids)) = self.batch.remove(a) else { return false };
        self.unordered.remove(&seq);
        for id in &ids {
            if self.record_of.get(id).is_some_and(|r| *r < kept_from) {
                self.settle(id);
            }
        }
        true
    }
}

/// What the log held at open.
#[derive(Debug, Default)]
pub struct Restored {
    /// Accepted (or requeued), never certified since: to queue again, in the order of
    /// the records holding them (acceptance order; a requeued batch's at its requeue).
    pub transactions: Vec<Transaction>,
    /// Certified, not known to be ordered: to give back to the core.
    pub certificates: Vec<AvailabilityCertificate>,
    /// For each of `certificates` (by attestation digest): its transactions, as far as
    /// the log still holds them (all, for a log written since records were kept until
    /// ordered), so the mempool holds them and their senders' next transactions until
    /// it is ordered, and queues them again if the core refuses it.
    pub in_flight: Vec<(Digest, Vec<Transaction>)>,
}

impl std::fmt::Debug for IntakeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeLog").field("next_seq", &self.log.next_seq()).finish()
    }
}

fn encode(r: &IntakeRecord) -> Result<Vec<u8>, Error> {
    codec::encode(r).map_err(|e| Error::Decode { what: "intake log", seq: 0, reason: e.to_string() })
}

impl IntakeLog {
    /// Opens (or creates) the log in `dir`; returns it with what to restore.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Restored), Error> {
        let cfg = StoreConfig {
            segment_size: segment_bytes,
            max_record_size: StoreConfig::capacity(segment_bytes).min(<IntakeRecord as Wire>::MAX_SIZE),
            name: "consensus-intake".into(),
            ..StoreConfig::default()
        };
        let max_part = cfg.max_record_size / 2;
        let log = Log::open(dir, cfg).map_err(Error::store("intake log"))?;
        // Every transaction a record holds, in log order.
        let mut accepted: Vec<(u64, Transaction)> = Vec::new();
        let mut certificates: HashMap<Digest, AvailabilityCertificate> = HashMap::new();
        let mut n = Needed::default();
        for rec in log.iter_from(log.first_seq()) {
            let rec = rec.map_err(Error::store("intake log"))?;
            let seq = rec.seq();
            let entry: IntakeRecord =
                codec::decode(&rec).map_err(|e| Error::Decode { what: "intake log", seq, reason: e.to_string() })?;
            match entry {
                IntakeRecord::Accepted(txs) => {
                    for t in txs {
                        n.hold(t.id(), seq);
                        accepted.push((seq, t));
                    }
                }
                IntakeRecord::Certified(cert, ids) => {
                    let a = cert.commitment.attestation_digest();
                    n.certified(a, seq, ids);
                    certificates.insert(a, cert);
                }
                IntakeRecord::Ordered(attestations) => {
                    for a in attestations {
                        n.settle_batch(&a, u64::MAX);
                    }
                }
                IntakeRecord::Requeued(batch, parts_from, txs) => {
                    n.settle_batch(&batch, parts_from);
                    for t in txs {
                        n.hold(t.id(), seq);
                        accepted.push((seq, t));
                    }
                }
            }
        }
        let mut restored = Restored::default();
        // The transactions still needed, each from the record holding it now.
        let mut body: HashMap<TxId, Transaction> = HashMap::new();
        let mut order: Vec<TxId> = Vec::new();
        for (seq, tx) in accepted {
            let id = tx.id();
            if n.record_of.get(&id) == Some(&seq) && !body.contains_key(&id) {
                order.push(id);
                body.insert(id, tx);
            }
        }
        // Certificates not ordered nor requeued go back to the core, in cut order, with
        // their transactions.
        let mut in_batch: HashSet<TxId> = HashSet::new();
        for a in n.unordered.values() {
            let Some((_, ids)) = n.batch.get(a) else { continue };
            let txs = ids.iter().filter_map(|id| body.get(id).cloned()).collect();
            in_batch.extend(ids.iter().copied());
            restored.in_flight.push((*a, txs));
            restored.certificates.extend(certificates.remove(a));
        }
        // The rest were accepted and not certified since.
        restored.transactions =
            order.into_iter().filter(|id| !in_batch.contains(id)).filter_map(|id| body.remove(&id)).collect();
        let this = IntakeLog { log, max_part, needed: Mutex::new(n) };
        this.prune()?;
        Ok((this, restored))
    }

    /// Appends the transactions just accepted (not yet durable: call
    /// [`IntakeLog::wait_durable`] before acknowledging them). Returns the record's
    /// sequence number.
    pub fn accepted(&self, txs: &[Transaction]) -> Result<u64, Error> {
        let bytes = encode(&IntakeRecord::Accepted(txs.to_vec()))?;
        let mut n = self.needed.lock();
        let seq = self.log.append(&bytes).map_err(Error::store("intake log"))?;
        for t in txs {
            n.hold(t.id(), seq);
        }
        Ok(seq)
    }

    /// Blocks until record `seq` is durable (group commit).
    pub fn wait_durable(&self, seq: u64) -> Result<(), Error> {
        self.log.wait_durable(seq).map_err(Error::store("intake log"))
    }

    /// Records, durably (blocking), that the batch of `ids` was certified under `cert`;
    /// then deletes the segments no longer needed. Call in cut order.
    pub fn certified(&self, cert: &AvailabilityCertificate, ids: &[TxId]) -> Result<(), Error> {
        let bytes = encode(&IntakeRecord::Certified(cert.clone(), ids.to_vec()))?;
        let seq = self.log.append_durable(&bytes).map_err(Error::store("intake log"))?;
        self.needed.lock().certified(cert.commitment.attestation_digest(), seq, ids.to_vec());
        self.prune()
    }

    /// Batches were ordered: their records are no longer needed (the segments go at the
    /// next [`IntakeLog::certified`]), and an `Ordered` record names those of them this
    /// log certified, so that a restart does not give them back. Never waits for a sync
    /// (the record is durable with the next group commit).
    pub fn ordered(&self, attestations: &[Digest]) -> Result<(), Error> {
        let mut n = self.needed.lock();
        let mine: Vec<Digest> = attestations.iter().copied().filter(|a| n.settle_batch(a, u64::MAX)).collect();
        if !mine.is_empty() {
            self.log.append(&encode(&IntakeRecord::Ordered(mine))?).map_err(Error::store("intake log"))?;
        }
        Ok(())
    }

    /// The core refused certified batch `attestation`, and the mempool queued `txs` of
    /// it again ([`crate::mempool::Mempool::requeue`]): records, durably (blocking),
    /// that the certificate is not to be given back and that these transactions are
    /// accepted and not certified, so that a restart queues them again until a later
    /// batch is certified with them. Does nothing for a batch this log did not certify.
    pub fn requeued(&self, attestation: Digest, txs: &[Transaction]) -> Result<(), Error> {
        if !self.needed.lock().batch.contains_key(&attestation) {
            return Ok(());
        }
        // A batch may be larger than a record: all but the last part go as `Accepted`
        // records, then the `Requeued` record with the last part settles the batch. The
        // log recovers a prefix, so a crash before the last part is durable leaves the
        // certificate to be given back with all its transactions.
        let mut parts: Vec<&[Transaction]> = Vec::new();
        let (mut from, mut bytes) = (0, 0);
        for (i, t) in txs.iter().enumerate() {
            let size = t.approx_size() + 64;
            if i > from && bytes + size > self.max_part {
                parts.push(&txs[from..i]);
                (from, bytes) = (i, 0);
            }
            bytes += size;
        }
        parts.push(&txs[from..]);
        let last = parts.len() - 1;
        let mut seqs = Vec::with_capacity(parts.len());
        // Until the batch is settled below, its unordered `Certified` record (below these)
        // keeps a concurrent prune from reaching them. Every record holding the batch's
        // transactions before this requeue is below `parts_from` (a `Certified` record
        // of the batcher's may land among the parts: it holds no transaction).
        let parts_from = self.log.next_seq();
        for (i, part) in parts.iter().enumerate() {
            let record = if i == last {
                IntakeRecord::Requeued(attestation, parts_from, part.to_vec())
            } else {
                IntakeRecord::Accepted(part.to_vec())
            };
            seqs.push(self.log.append(&encode(&record)?).map_err(Error::store("intake log"))?);
        }
        self.log.wait_durable(seqs[last]).map_err(Error::store("intake log"))?;
        let mut n = self.needed.lock();
        n.settle_batch(&attestation, parts_from);
        for (part, seq) in parts.iter().zip(seqs) {
            for t in *part {
                n.hold(t.id(), seq);
            }
        }
        // The segments go at the next `certified` (this runs on the core task, under the
        // mempool lock: no more I/O than the record).
        Ok(())
    }

    /// Restored transactions the mempool refused at a restart (a limit lowered since):
    /// they no longer hold their records, which would otherwise hold pruning back for
    /// the whole run. Not recorded: a restart before their segment is pruned tries
    /// them again.
    pub fn forget(&self, ids: &[TxId]) {
        let mut n = self.needed.lock();
        for id in ids {
            n.settle(id);
        }
    }

    fn prune(&self) -> Result<(), Error> {
        let below = self.needed.lock().lowest().unwrap_or(self.log.next_seq());
        self.log.prune_below(below).map_err(Error::store("intake log"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{ChainId, DataCommitment, Keypair, Namespace, QuorumCertificate, TxScope};

    fn ids(txs: &[Transaction]) -> Vec<TxId> {
        txs.iter().map(Transaction::id).collect()
    }

    /// Appends `txs` as accepted and waits until they are durable.
    fn accept(log: &IntakeLog, txs: &[Transaction]) {
        let s = log.accepted(txs).unwrap();
        log.wait_durable(s).unwrap();
    }

    /// Certifies `txs` as one batch (certificate `tag`) and orders it.
    fn certified_and_ordered(log: &IntakeLog, txs: &[Transaction], tag: u8) {
        let c = cert(tag);
        log.certified(&c, &ids(txs)).unwrap();
        log.ordered(&[c.commitment.attestation_digest()]).unwrap();
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    fn tx(n: u64) -> Transaction {
        Transaction::new_signed(&Keypair::for_testing(1), TxScope::ChainOnly, ChainId(1), n, vec![1; 10])
    }

    fn cert(tag: u8) -> AvailabilityCertificate {
        let commitment = DataCommitment {
            data_root: Digest([tag; 32]),
            square_width: 2,
            codec: 0,
            namespaces: vec![Namespace::from(ChainId(1))],
            blob_bytes: 100,
        };
        let d = commitment.attestation_digest();
        AvailabilityCertificate { commitment, signatures: QuorumCertificate::from_votes(d, 4, &[]) }
    }

    #[test]
    fn a_restart_gives_back_uncertified_transactions_and_unordered_certificates() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
            assert!(r.transactions.is_empty() && r.certificates.is_empty());
            accept(&log, &[tx(0), tx(1)]);
            accept(&log, &[tx(2)]);
            log.certified(&cert(1), &[tx(0).id()]).unwrap();
            log.certified(&cert(2), &[tx(2).id()]).unwrap();
            log.ordered(&[cert(1).commitment.attestation_digest()]).unwrap();
        }
        let (log, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(r.transactions, vec![tx(1)], "only the accepted, uncertified one");
        // The ordered batch is not given back, however long ago it was ordered.
        let a1 = cert(1).commitment.attestation_digest();
        assert_eq!(r.certificates, vec![cert(2)]);
        assert!(r.in_flight.iter().all(|(a, _)| *a != a1));
        // Each certificate comes with its transactions (the mempool holds them and their
        // senders' next ones until it is ordered, and queues them again if refused).
        let a2 = cert(2).commitment.attestation_digest();
        let (_, txs) = r.in_flight.iter().find(|(a, _)| *a == a2).unwrap();
        assert_eq!(txs, &vec![tx(2)]);
        log.certified(&cert(3), &[tx(1).id()]).unwrap();
        drop(log);
        let (_, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
        assert!(r.transactions.is_empty());
    }

    #[test]
    fn segments_of_certified_and_ordered_batches_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        for round in 0..200u64 {
            let txs: Vec<Transaction> = (0..10).map(|i| tx(round * 10 + i)).collect();
            accept(&log, &txs);
            let c = cert((round % 250) as u8);
            log.certified(&c, &txs.iter().map(Transaction::id).collect::<Vec<_>>()).unwrap();
            log.ordered(&[c.commitment.attestation_digest()]).unwrap();
        }
        assert!(files() <= 4, "{} files left for a log whose batches are all ordered", files());
        // An unordered batch holds its segment (and everything after it).
        let (log2, _) = (log, ());
        let c = cert(251);
        accept(&log2, &[tx(9999)]);
        log2.certified(&c, &[tx(9999).id()]).unwrap();
        drop(log2);
        let (_, r) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        assert!(r.certificates.iter().any(|x| x.commitment.attestation_digest() == c.commitment.attestation_digest()));
    }

    #[test]
    fn a_certificate_given_back_comes_with_its_transactions_however_much_was_logged_since() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        let first: Vec<Transaction> = (0..5).map(tx).collect();
        accept(&log, &first);
        // Segments of other batches, certified and ordered, come and go meanwhile, before
        // and after `first` is certified: its record stays until it is ordered.
        for round in 0..100u64 {
            if round == 50 {
                log.certified(&cert(1), &ids(&first)).unwrap();
            }
            let txs: Vec<Transaction> = (0..10).map(|i| tx(1_000 + round * 10 + i)).collect();
            accept(&log, &txs);
            certified_and_ordered(&log, &txs, 2 + (round % 200) as u8);
        }
        drop(log);
        let (_, r) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(r.certificates, vec![cert(1)]);
        assert_eq!(r.in_flight, vec![(cert(1).commitment.attestation_digest(), first)]);
        assert!(r.transactions.is_empty());
    }

    #[test]
    fn a_requeued_batch_is_not_given_back_and_its_transactions_come_back_until_certified_again() {
        let dir = tempfile::tempdir().unwrap();
        let a1 = cert(1).commitment.attestation_digest();
        let batch: Vec<Transaction> = (0..3).map(tx).collect();
        {
            let (log, _) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
            accept(&log, &batch);
            log.certified(&cert(1), &ids(&batch)).unwrap();
            // The core refused it: two of its three were queued again (one was dropped).
            log.requeued(a1, &batch[..2]).unwrap();
            // A batch this log never certified is not recorded.
            log.requeued(cert(9).commitment.attestation_digest(), &[tx(50)]).unwrap();
        }
        let (log, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
        assert!(r.certificates.is_empty() && r.in_flight.is_empty(), "the refused certificate is not given back");
        assert_eq!(r.transactions, batch[..2].to_vec(), "the requeued ones, not the dropped one");
        // Certified again in a new batch: a restart gives that back, with them.
        log.certified(&cert(2), &ids(&batch[..2])).unwrap();
        drop(log);
        let (log, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
        assert!(r.transactions.is_empty());
        assert_eq!(r.in_flight, vec![(cert(2).commitment.attestation_digest(), batch[..2].to_vec())]);
        // Once that is ordered, nothing is needed: everything below the next record goes.
        log.ordered(&[cert(2).commitment.attestation_digest()]).unwrap();
        assert_eq!(log.needed.lock().lowest(), None);
    }

    #[test]
    fn a_large_requeued_batch_takes_several_records_and_survives_a_restart_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = |n: u64| {
            Transaction::new_signed(&Keypair::for_testing(2), TxScope::ChainOnly, ChainId(1), n, vec![3; 4_000])
        };
        let batch: Vec<Transaction> = (0..40).map(big).collect();
        {
            let (log, _) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
            // Never certified: holds every record after it, the batch's `Certified` too.
            accept(&log, &[tx(0)]);
            for part in batch.chunks(8) {
                accept(&log, part);
            }
            log.certified(&cert(1), &ids(&batch)).unwrap();
            log.requeued(cert(1).commitment.attestation_digest(), &batch).unwrap();
            assert!(log.log.next_seq() >= 1 + 5 + 1 + 5, "160 KB of transactions in records of at most 32 KB");
        }
        let (_, r) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        assert!(r.certificates.is_empty());
        assert_eq!(r.transactions, [vec![tx(0)], batch].concat());
    }

    #[test]
    fn the_same_bytes_certified_twice_do_not_hold_pruning_back() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        accept(&log, &[tx(0)]);
        // Certified twice to one attestation (the same bytes cut again), ordered once.
        log.certified(&cert(1), &[tx(0).id()]).unwrap();
        log.certified(&cert(1), &[tx(0).id()]).unwrap();
        log.ordered(&[cert(1).commitment.attestation_digest()]).unwrap();
        assert_eq!(log.needed.lock().lowest(), None);
        for round in 0..200u64 {
            let txs: Vec<Transaction> = (0..10).map(|i| tx(100 + round * 10 + i)).collect();
            accept(&log, &txs);
            certified_and_ordered(&log, &txs, 2 + (round % 200) as u8);
        }
        assert!(files(dir.path()) <= 4, "{} files left", files(dir.path()));
        drop(log);
        let (_, r) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        assert!(r.certificates.is_empty() && r.transactions.is_empty());
    }

    #[test]
    fn an_ordering_releases_the_parts_a_requeue_left_when_it_crashed_halfway() {
        let dir = tempfile::tempdir().unwrap();
        let a = cert(1).commitment.attestation_digest();
        let batch: Vec<Transaction> = (0..4).map(tx).collect();
        {
            let (log, _) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
            accept(&log, &batch);
            log.certified(&cert(1), &ids(&batch)).unwrap();
            // A requeue's first part reached the disk, its `Requeued` record did not.
            accept(&log, &batch[..2]);
        }
        let (log, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(r.in_flight, vec![(a, batch.clone())], "given back whole");
        assert!(r.transactions.is_empty());
        // The core took it back and ordered it: nothing is needed any more.
        log.ordered(&[a]).unwrap();
        assert_eq!(log.needed.lock().lowest(), None);
        drop(log);
        let (_, r) = IntakeLog::open(dir.path(), 1 << 20).unwrap();
        assert!(r.transactions.is_empty() && r.certificates.is_empty(), "not ordered twice");
    }
}
