//! The intake log: what makes "accepted" durable.
//!
//! Intake answers `Accepted` only once the transaction is in this `lamina-store` log and
//! the log is synced (group commit: concurrent requests share one fdatasync). When a
//! batch is certified by DA, a `Certified` record with the certificate and the batch's
//! transaction ids is made durable before the certificate goes to the core, in cut
//! order (so a certified batch implies every earlier batch is certified too: a sender's
//! nonce order survives a crash). When such a batch is ordered, an `Ordered` record
//! names it (appended without a sync of its own: it is durable with the next group
//! commit, and survives a killed process at once). After a crash, the certificates
//! with no `Ordered` record are given back to the core (it proposes them again; one
//! whose `Ordered` record was lost with the machine is still recognised by attestation
//! in the last `dedup_window` heights of the ordered log), and the transactions of
//! `Accepted` records that no `Certified` record names are put back in the mempool. So a
//! transaction acknowledged by a validator that is then killed is ordered once it
//! restarts, and not twice, however long ago its batch was ordered.
//!
//! Pruning: the lowest record still needed — an `Accepted` record with a transaction
//! not yet certified, or a `Certified` record whose batch is not yet ordered — bounds
//! what is kept (a `Certified` record always follows the `Accepted` records of its
//! transactions); whole segments below it are deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use lamina_primitives::{AvailabilityCertificate, ChainId, Digest, PublicKey, Transaction, TxId, Wire, codec};
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
}

impl Wire for IntakeRecord {
    const NAME: &'static str = "consensus::IntakeRecord";
    const MAX_SIZE: usize = crate::protocol::MAX_SUBMIT_BYTES + (1 << 20);
}

/// The intake log. Cheap to share (`Arc`); appends from any thread.
pub struct IntakeLog {
    log: Log,
    /// Per `Accepted` record: how many of its transactions are not yet certified.
    uncertified: Mutex<Uncertified>,
}

#[derive(Default)]
struct Uncertified {
    by_record: BTreeMap<u64, usize>,
    record_of: HashMap<TxId, u64>,
    /// `Certified` records whose batch is not yet ordered.
    unordered: BTreeMap<u64, Digest>,
    record_of_batch: HashMap<Digest, u64>,
}

impl Uncertified {
    fn lowest_needed(&self) -> Option<u64> {
        let a = self.by_record.keys().next().copied();
        let b = self.unordered.keys().next().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What the log held at open.
#[derive(Debug, Default)]
pub struct Restored {
    /// Accepted, never certified: to queue again, in acceptance order.
    pub transactions: Vec<Transaction>,
    /// Certified, not known to be ordered: to give back to the core.
    pub certificates: Vec<AvailabilityCertificate>,
    /// For each of `certificates` (by attestation digest): the (sender, chain) sequences
    /// its transactions belong to, as far as the log still holds them, so the mempool
    /// holds those senders' next transactions until it is ordered.
    pub in_flight: Vec<(Digest, Vec<(PublicKey, ChainId)>)>,
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
        let log = Log::open(dir, cfg).map_err(Error::store("intake log"))?;
        let mut accepted: Vec<(u64, Transaction)> = Vec::new();
        let mut certified: HashSet<TxId> = HashSet::new();
        let mut batch_ids: Vec<(Digest, Vec<TxId>)> = Vec::new();
        let mut u = Uncertified::default();
        let mut restored = Restored::default();
        for rec in log.iter_from(log.first_seq()) {
            let rec = rec.map_err(Error::store("intake log"))?;
            let entry: IntakeRecord = codec::decode(&rec).map_err(|e| Error::Decode {
                what: "intake log",
                seq: rec.seq(),
                reason: e.to_string(),
            })?;
            match entry {
                IntakeRecord::Accepted(txs) => accepted.extend(txs.into_iter().map(|t| (rec.seq(), t))),
                IntakeRecord::Certified(cert, ids) => {
                    let a = cert.commitment.attestation_digest();
                    batch_ids.push((a, ids.clone()));
                    certified.extend(ids);
                    u.unordered.insert(rec.seq(), a);
                    u.record_of_batch.insert(a, rec.seq());
                    restored.certificates.push(cert);
                }
                IntakeRecord::Ordered(attestations) => {
                    for a in attestations {
                        if let Some(seq) = u.record_of_batch.remove(&a) {
                            u.unordered.remove(&seq);
                        }
                    }
                }
            }
        }
        // Only the batches with no `Ordered` record go back to the core.
        restored.certificates.retain(|c| u.record_of_batch.contains_key(&c.commitment.attestation_digest()));
        batch_ids.retain(|(a, _)| u.record_of_batch.contains_key(a));
        let sequence_of: HashMap<TxId, (PublicKey, ChainId)> =
            accepted.iter().map(|(_, t)| (t.id(), (t.sender, t.chain_id))).collect();
        for (a, ids) in batch_ids {
            let sequences = ids.iter().filter_map(|id| sequence_of.get(id).copied()).collect();
            restored.in_flight.push((a, sequences));
        }
        for (seq, tx) in accepted {
            let id = tx.id();
            if certified.contains(&id) || u.record_of.contains_key(&id) {
                continue;
            }
            *u.by_record.entry(seq).or_default() += 1;
            u.record_of.insert(id, seq);
            restored.transactions.push(tx);
        }
        let this = IntakeLog { log, uncertified: Mutex::new(u) };
        this.prune()?;
        Ok((this, restored))
    }

    /// Appends the transactions just accepted (not yet durable: call
    /// [`IntakeLog::wait_durable`] before acknowledging them). Returns the record's
    /// sequence number.
    pub fn accepted(&self, txs: &[Transaction]) -> Result<u64, Error> {
        let bytes = encode(&IntakeRecord::Accepted(txs.to_vec()))?;
        let mut u = self.uncertified.lock();
        let seq = self.log.append(&bytes).map_err(Error::store("intake log"))?;
        u.by_record.insert(seq, txs.len());
        for t in txs {
            u.record_of.insert(t.id(), seq);
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
        {
            let mut u = self.uncertified.lock();
            for id in ids {
                if let Some(s) = u.record_of.remove(id)
                    && let Some(n) = u.by_record.get_mut(&s)
                {
                    *n -= 1;
                    if *n == 0 {
                        u.by_record.remove(&s);
                    }
                }
            }
            let a = cert.commitment.attestation_digest();
            u.unordered.insert(seq, a);
            u.record_of_batch.insert(a, seq);
        }
        self.prune()
    }

    /// Batches were ordered: their `Certified` records are no longer needed (the
    /// segments go at the next [`IntakeLog::certified`]), and an `Ordered` record names
    /// those of them this log certified, so that a restart does not give them back.
    /// Never waits for a sync (the record is durable with the next group commit).
    pub fn ordered(&self, attestations: &[Digest]) -> Result<(), Error> {
        let mut u = self.uncertified.lock();
        let mut mine = Vec::new();
        for a in attestations {
            if let Some(seq) = u.record_of_batch.remove(a) {
                u.unordered.remove(&seq);
                mine.push(*a);
            }
        }
        if !mine.is_empty() {
            self.log.append(&encode(&IntakeRecord::Ordered(mine))?).map_err(Error::store("intake log"))?;
        }
        Ok(())
    }

    fn prune(&self) -> Result<(), Error> {
        let below = self.uncertified.lock().lowest_needed().unwrap_or(self.log.next_seq());
        self.log.prune_below(below).map_err(Error::store("intake log"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{ChainId, DataCommitment, Keypair, Namespace, QuorumCertificate, TxScope};

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
            let s = log.accepted(&[tx(0), tx(1)]).unwrap();
            log.wait_durable(s).unwrap();
            let s = log.accepted(&[tx(2)]).unwrap();
            log.wait_durable(s).unwrap();
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
        // Each certificate names the senders its transactions came from (the mempool
        // holds their next transactions until it is ordered).
        let a2 = cert(2).commitment.attestation_digest();
        let (_, seqs) = r.in_flight.iter().find(|(a, _)| *a == a2).unwrap();
        assert_eq!(seqs, &vec![(tx(2).sender, tx(2).chain_id)]);
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
            let s = log.accepted(&txs).unwrap();
            log.wait_durable(s).unwrap();
            let c = cert((round % 250) as u8);
            log.certified(&c, &txs.iter().map(Transaction::id).collect::<Vec<_>>()).unwrap();
            log.ordered(&[c.commitment.attestation_digest()]).unwrap();
        }
        assert!(files() <= 4, "{} files left for a log whose batches are all ordered", files());
        // An unordered batch holds its segment (and everything after it).
        let (log2, _) = (log, ());
        let c = cert(251);
        let s = log2.accepted(&[tx(9999)]).unwrap();
        log2.wait_durable(s).unwrap();
        log2.certified(&c, &[tx(9999).id()]).unwrap();
        drop(log2);
        let (_, r) = IntakeLog::open(dir.path(), 64 << 10).unwrap();
        assert!(r.certificates.iter().any(|x| x.commitment.attestation_digest() == c.commitment.attestation_digest()));
    }
}
