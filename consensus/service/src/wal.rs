//! The write-ahead log: everything this validator signed (the core's [`WalRecord`]s)
//! and its own certified batches not yet ordered, in a `lamina-store` log.
//!
//! A record is durable before any message sent after it (the outbox in
//! [`crate::driver`] syncs before it releases a send that follows a record). On restart
//! the core gets its records back and never signs anything conflicting.
//!
//! Pruning deletes whole segments whose records are all obsolete: core records of views
//! at or below a finalized view that is durable in the ordered log, and batches
//! settled: ordered or refused by the core (a `Settled` record names them, so that a
//! restart does not give them back), or found ordered in the dedup window at open.

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
    /// Earlier `Batch` entries (attestation digests) that were ordered or refused: a
    /// restart does not give them back.
    Settled(Vec<Digest>),
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
    /// A `Settled` record: never needed by itself (the entries it settles are older).
    Nothing,
}

/// The WAL (owned by the outbox thread).
pub struct Wal {
    log: Log,
    kept: BTreeMap<u64, Keep>,
    /// The digests of the `Batch` entries in `kept`.
    batches: BTreeSet<Digest>,
    settled: BTreeSet<Digest>,
    pruned_through: View,
}

/// What the WAL held at open.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Core records, in order.
    pub records: Vec<WalRecord>,
    /// Own certified batches not settled since (the caller drops those it finds
    /// ordered).
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
        let mut settled = BTreeSet::new();
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
                    let a = c.commitment.attestation_digest();
                    settled.remove(&a);
                    kept.insert(rec.seq(), Keep::Batch(a));
                    replayed.batches.push(c);
                }
                WalEntry::Settled(digests) => {
                    kept.insert(rec.seq(), Keep::Nothing);
                    replayed.batches.retain(|c| !digests.contains(&c.commitment.attestation_digest()));
                    settled.extend(digests);
                }
            }
        }
        let batches = batch_digests(&kept);
        Ok((Wal { log, kept, batches, settled, pruned_through: View(0) }, replayed))
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
                self.batches.insert(a);
                Keep::Batch(a)
            }
            WalEntry::Settled(_) => Keep::Nothing,
        };
        self.kept.insert(seq, keep);
        Ok(())
    }

    /// Makes every appended entry durable (group commit; blocking).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.log.sync().map_err(Error::store("wal"))?;
        Ok(())
    }

    /// Records that batches were ordered, or refused: their entries become obsolete,
    /// and a `Settled` record (buffered, durable with the next sync) keeps a restart
    /// from giving them back, however long ago that was. Digests of no batch of this
    /// WAL are ignored.
    pub fn batches_settled(&mut self, attestations: impl IntoIterator<Item = Digest>) -> Result<(), Error> {
        let mine: Vec<Digest> =
            attestations.into_iter().filter(|a| self.batches.contains(a) && !self.settled.contains(a)).collect();
        if mine.is_empty() {
            return Ok(());
        }
        self.append(&WalEntry::Settled(mine.clone()))?;
        self.settled.extend(mine);
        Ok(())
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
            Keep::Nothing => true,
        };
        let first_live = self.kept.iter().find(|(_, k)| !obsolete(k)).map(|(s, _)| *s).unwrap_or(self.log.next_seq());
        if first_live > self.log.first_seq() {
            self.log.prune_below(first_live).map_err(Error::store("wal"))?;
            let first = self.log.first_seq();
            self.kept = self.kept.split_off(&first);
            self.batches = batch_digests(&self.kept);
            let live = &self.batches;
            self.settled.retain(|a| live.contains(a));
        }
        Ok(())
    }

    /// Syncs and closes.
    pub fn close(self) -> Result<(), Error> {
        self.log.close().map_err(Error::store("wal"))
    }
}

/// The digests of the `Batch` entries among `kept`.
fn batch_digests(kept: &BTreeMap<u64, Keep>) -> BTreeSet<Digest> {
    kept.values().filter_map(|k| if let Keep::Batch(a) = k { Some(*a) } else { None }).collect()
}

/// At open: the own certified batches to give back to the core, and the WAL's batches
/// to settle. `wal` are the WAL's batches not settled (see [`WalEntry::Settled`]),
/// `intake` what the intake log gives back (certificates made durable there just
/// before a crash may not have reached the WAL), `ordered` the batches of the ordered
/// log's last `dedup_window` heights: those are not given back, and the WAL's among
/// them are settled (their `Settled` record was lost with the crash, or they were
/// written by a version without those records), or the WAL would keep them, and every
/// record after them, until the next restart (which would keep them again).
pub(crate) fn batches_to_restore(
    wal: Vec<AvailabilityCertificate>,
    intake: Vec<AvailabilityCertificate>,
    ordered: &BTreeSet<Digest>,
) -> (Vec<AvailabilityCertificate>, Vec<Digest>) {
    let digest = |c: &AvailabilityCertificate| c.commitment.attestation_digest();
    let settled = wal.iter().map(digest).filter(|a| ordered.contains(a)).collect();
    let mut seen = BTreeSet::new();
    let batches =
        wal.into_iter().chain(intake).filter(|c| !ordered.contains(&digest(c)) && seen.insert(digest(c))).collect();
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
    fn a_restart_gives_back_what_is_not_ordered_and_settles_the_rest() {
        let d = |t: u8| cert(t).commitment.attestation_digest();
        // 1: ordered in the dedup window (its `Settled` record lost with a crash);
        // 2: still to order; 3: in the intake log only (a crash before the WAL had it).
        let ordered: BTreeSet<Digest> = [d(1)].into();
        let (batches, settled) = batches_to_restore(vec![cert(1), cert(2)], vec![cert(1), cert(2), cert(3)], &ordered);
        assert_eq!(digests(&batches), vec![d(2), d(3)]);
        assert_eq!(settled, vec![d(1)]);
    }

    #[test]
    fn a_settled_batch_is_not_given_back_however_long_ago_and_holds_no_segment() {
        let dir = tempfile::tempdir().unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        {
            let (mut wal, _) = Wal::open(dir.path(), 16 << 10).unwrap();
            wal.append(&WalEntry::Batch(cert(1))).unwrap();
            wal.append(&WalEntry::Batch(cert(2))).unwrap();
            wal.batches_settled(digests(&[cert(1), cert(9)])).unwrap();
            for v in 1..2_000u64 {
                wal.append(&WalEntry::Core(WalRecord::Nullified(View(v)))).unwrap();
            }
            wal.sync().unwrap();
        }
        // Before `Settled` records, a restart replayed every batch of the WAL's
        // segments, ordered or not, and none was settled again: the WAL pruned nothing
        // more until the next restart, which replayed them again.
        let (mut wal, replayed) = Wal::open(dir.path(), 16 << 10).unwrap();
        assert_eq!(digests(&replayed.batches), digests(&[cert(2)]), "the settled one is not given back");
        let before = files();
        assert!(before > 2, "{before}");
        wal.prune(View(2_000)).unwrap();
        assert_eq!(files(), before, "an unsettled batch keeps its segment and every one after it");
        // Batch 2 was ordered in the dedup window before the crash.
        let (batches, settled) =
            batches_to_restore(replayed.batches, Vec::new(), &digests(&[cert(2)]).into_iter().collect());
        assert!(batches.is_empty());
        wal.batches_settled(settled).unwrap();
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
