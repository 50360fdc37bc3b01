//! The write-ahead log: everything this validator signed (the core's [`WalRecord`]s)
//! and its own certified batches not yet ordered, in a `lamina-store` log.
//!
//! A record is durable before any message sent after it (the outbox in
//! [`crate::driver`] syncs before it releases a send that follows a record). On restart
//! the core gets its records back and never signs anything conflicting.
//!
//! Pruning deletes whole segments whose records are all obsolete: core records of views
//! at or below a finalized view that is durable in the ordered log, and batches
//! settled: ordered, refused by the core, or (at open) not given back to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lamina_consensus_core::WalRecord;
use lamina_primitives::{AvailabilityCertificate, Digest, View, Wire, codec};
use lamina_store::{Config as StoreConfig, Log};

use crate::error::Error;

/// One WAL entry.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum WalEntry {
    /// Something the core signed.
    Core(WalRecord),
    /// One of this validator's batches, certified by DA, not yet seen ordered.
    Batch(AvailabilityCertificate),
}

impl Wire for WalEntry {
    const NAME: &'static str = "consensus::WalEntry";
    const MAX_SIZE: usize = <WalRecord as Wire>::MAX_SIZE;
}

/// What a WAL record is kept for.
#[derive(Clone, Copy, Debug)]
enum Keep {
    View(View),
    Batch(Digest),
}

/// The WAL (owned by the outbox thread).
pub struct Wal {
    log: Log,
    kept: BTreeMap<u64, Keep>,
    settled: BTreeSet<Digest>,
    pruned_through: View,
}

/// What the WAL held at open.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Core records, in order.
    pub records: Vec<WalRecord>,
    /// Own certified batches (the caller drops those already ordered).
    pub batches: Vec<AvailabilityCertificate>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` and replays it.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Replayed), Error> {
        let cfg = StoreConfig {
            segment_size: segment_bytes,
            max_record_size: StoreConfig::capacity(segment_bytes).min(<WalEntry as Wire>::MAX_SIZE),
            name: "consensus-wal".into(),
            ..StoreConfig::default()
        };
        let log = Log::open(dir, cfg).map_err(Error::store("wal"))?;
        let mut replayed = Replayed::default();
        let mut kept = BTreeMap::new();
        for rec in log.iter_from(log.first_seq()) {
            let rec = rec.map_err(Error::store("wal"))?;
            let entry: WalEntry = codec::decode(&rec).map_err(|e| Error::Decode {
                what: "wal",
                seq: rec.seq(),
                reason: e.to_string(),
            })?;
            match entry {
                WalEntry::Core(r) => {
                    kept.insert(rec.seq(), Keep::View(r.view()));
                    replayed.records.push(r);
                }
                WalEntry::Batch(c) => {
                    kept.insert(rec.seq(), Keep::Batch(c.commitment.attestation_digest()));
                    replayed.batches.push(c);
                }
            }
        }
        Ok((Wal { log, kept, settled: BTreeSet::new(), pruned_through: View(0) }, replayed))
    }

    /// Appends an entry (buffered; not durable until [`Wal::sync`]).
    pub fn append(&mut self, entry: &WalEntry) -> Result<(), Error> {
        let bytes = codec::encode(entry).map_err(|e| Error::Decode { what: "wal", seq: 0, reason: e.to_string() })?;
        let seq = self.log.append(&bytes).map_err(Error::store("wal"))?;
        let keep = match entry {
            WalEntry::Core(r) => Keep::View(r.view()),
            WalEntry::Batch(c) => {
                // The same bytes certified again (a refused batch queued again and cut
                // the same) are live again.
                let a = c.commitment.attestation_digest();
                self.settled.remove(&a);
                Keep::Batch(a)
            }
        };
        self.kept.insert(seq, keep);
        Ok(())
    }

    /// Makes every appended entry durable (group commit; blocking).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.log.sync().map_err(Error::store("wal"))?;
        Ok(())
    }

    /// Records that batches were ordered, or refused (their entries become obsolete: a
    /// restart does not give them back).
    pub fn batches_settled(&mut self, attestations: impl IntoIterator<Item = Digest>) {
        self.settled.extend(attestations);
    }

    /// Drops segments whose entries are all obsolete: core records of views up to
    /// `through` (the caller guarantees the block of that view is durable in the ordered
    /// log) and settled batches.
    pub fn prune(&mut self, through: View) -> Result<(), Error> {
        self.pruned_through = self.pruned_through.max(through);
        let (pruned_through, settled) = (self.pruned_through, &self.settled);
        let obsolete = |k: &Keep| match k {
            Keep::View(v) => *v <= pruned_through,
            Keep::Batch(a) => settled.contains(a),
        };
        let first_live = self.kept.iter().find(|(_, k)| !obsolete(k)).map(|(s, _)| *s).unwrap_or(self.log.next_seq());
        if first_live > self.log.first_seq() {
            self.log.prune_below(first_live).map_err(Error::store("wal"))?;
            let first = self.log.first_seq();
            self.kept = self.kept.split_off(&first);
            let live: BTreeSet<Digest> =
                self.kept.values().filter_map(|k| if let Keep::Batch(a) = k { Some(*a) } else { None }).collect();
            self.settled.retain(|a| live.contains(a));
        }
        Ok(())
    }

    /// Syncs and closes.
    pub fn close(self) -> Result<(), Error> {
        self.log.close().map_err(Error::store("wal"))
    }
}

/// At open: the own certified batches to give back to the core, and the WAL's batches
/// to settle. `intake` is what the intake log gives back, if the node keeps one;
/// `ordered` the batches of the ordered log's last `dedup_window` heights.
///
/// With an intake log, it knows every batch still to order (a certificate is durable
/// there before the WAL gets it, and its record stays until ordered or refused), so a
/// WAL batch it does not give back was ordered or refused, perhaps longer ago than the
/// dedup window reaches: it must not be proposed again, and it is settled, or the WAL
/// would keep it, and every record after it, until the next restart (which would keep it
/// again). A certificate in the intake log only (durable there just before a crash,
/// not yet in the WAL) is given back too. Without an intake log, every WAL batch not
/// in `ordered` is given back.
pub(crate) fn batches_to_restore(
    wal: Vec<AvailabilityCertificate>,
    intake: Option<Vec<AvailabilityCertificate>>,
    ordered: &BTreeSet<Digest>,
) -> (Vec<AvailabilityCertificate>, Vec<Digest>) {
    let digest = |c: &AvailabilityCertificate| c.commitment.attestation_digest();
    let in_wal: Vec<Digest> = wal.iter().map(digest).collect();
    let given_back: Option<BTreeSet<Digest>> = intake.as_ref().map(|i| i.iter().map(digest).collect());
    let mut seen = BTreeSet::new();
    let batches: Vec<AvailabilityCertificate> = wal
        .into_iter()
        .filter(|c| given_back.as_ref().is_none_or(|g| g.contains(&digest(c))))
        .chain(intake.into_iter().flatten())
        .filter(|c| !ordered.contains(&digest(c)) && seen.insert(digest(c)))
        .collect();
    let settled = in_wal.into_iter().filter(|a| !seen.contains(a)).collect();
    (batches, settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Block;

    #[test]
    fn entries_replay_in_order_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            WalRecord::Proposed(Block::default()),
            WalRecord::Notarized(View(3), Digest([1; 32])),
            WalRecord::Nullified(View(4)),
            WalRecord::Finalized(View(3), Digest([1; 32])),
        ];
        {
            let (mut wal, r) = Wal::open(dir.path(), 16 << 20).unwrap();
            assert!(r.records.is_empty());
            for rec in &records {
                wal.append(&WalEntry::Core(rec.clone())).unwrap();
            }
            wal.append(&WalEntry::Batch(AvailabilityCertificate::default())).unwrap();
            wal.sync().unwrap();
            wal.prune(View(1)).unwrap();
        }
        let (_, r) = Wal::open(dir.path(), 16 << 20).unwrap();
        assert_eq!(r.records, records);
        assert_eq!(r.batches.len(), 1);
    }

    fn cert(tag: u8) -> AvailabilityCertificate {
        let mut c = AvailabilityCertificate::default();
        c.commitment.data_root = Digest([tag; 32]);
        c
    }

    fn digests(cs: &[AvailabilityCertificate]) -> Vec<Digest> {
        cs.iter().map(|c| c.commitment.attestation_digest()).collect()
    }

    #[test]
    fn a_restart_settles_the_wal_batches_the_intake_log_no_longer_gives_back() {
        let d = |t: u8| cert(t).commitment.attestation_digest();
        // 1: ordered in the dedup window; 2: ordered long ago (the intake log settled
        // it); 3: still to order; 4: in the intake log only (crash before the WAL).
        let wal = vec![cert(1), cert(2), cert(3)];
        let ordered: BTreeSet<Digest> = [d(1)].into();
        let (batches, settled) = batches_to_restore(wal.clone(), Some(vec![cert(1), cert(3), cert(4)]), &ordered);
        assert_eq!(digests(&batches), vec![d(3), d(4)]);
        assert_eq!(settled, vec![d(1), d(2)]);
        // Without an intake log, the WAL alone says what is still to order.
        let (batches, settled) = batches_to_restore(wal, None, &ordered);
        assert_eq!(digests(&batches), vec![d(2), d(3)]);
        assert_eq!(settled, vec![d(1)]);
    }

    #[test]
    fn a_batch_replayed_at_a_restart_and_settled_no_longer_holds_pruning_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        {
            let (mut wal, _) = Wal::open(dir.path(), 16 << 10).unwrap();
            wal.append(&WalEntry::Batch(cert(1))).unwrap();
            wal.batches_settled(digests(&[cert(1)]));
            for v in 1..2_000u64 {
                wal.append(&WalEntry::Core(WalRecord::Nullified(View(v)))).unwrap();
            }
            wal.sync().unwrap();
        }
        // A restart replays the batch (ordered before it, so the intake log does not
        // give it back): unless settled again, it keeps its segment and all after it.
        let (mut wal, replayed) = Wal::open(dir.path(), 16 << 10).unwrap();
        let before = files();
        assert!(before > 2, "{before}");
        wal.prune(View(2_000)).unwrap();
        assert_eq!(files(), before, "an unsettled batch keeps its segment and every one after it");
        let (batches, settled) = batches_to_restore(replayed.batches, Some(Vec::new()), &BTreeSet::new());
        assert!(batches.is_empty());
        wal.batches_settled(settled);
        wal.prune(View(2_000)).unwrap();
        assert!(files() <= 2, "{} segments left", files());
        // The same bytes certified again are live again.
        wal.append(&WalEntry::Batch(cert(1))).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path(), 16 << 10).unwrap();
        assert_eq!(digests(&replayed.batches), digests(&[cert(1)]));
    }
}
