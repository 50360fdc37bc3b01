//! The write-ahead log: everything this validator signed (the core's [`WalRecord`]s)
//! and its own certified batches not yet ordered, in a `lamina-store` log.
//!
//! A record is durable before any message sent after it (the outbox in
//! [`crate::driver`] syncs before it releases a send that follows a record). On restart
//! the core gets its records back and never signs anything conflicting.
//!
//! Pruning deletes whole segments whose records are all obsolete: core records of views
//! at or below a finalized view that is durable in the ordered log, and batches already
//! ordered.

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
    ordered: BTreeSet<Digest>,
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
        Ok((Wal { log, kept, ordered: BTreeSet::new(), pruned_through: View(0) }, replayed))
    }

    /// Appends an entry (buffered; not durable until [`Wal::sync`]).
    pub fn append(&mut self, entry: &WalEntry) -> Result<(), Error> {
        let bytes = codec::encode(entry).map_err(|e| Error::Decode { what: "wal", seq: 0, reason: e.to_string() })?;
        let seq = self.log.append(&bytes).map_err(Error::store("wal"))?;
        let keep = match entry {
            WalEntry::Core(r) => Keep::View(r.view()),
            WalEntry::Batch(c) => Keep::Batch(c.commitment.attestation_digest()),
        };
        self.kept.insert(seq, keep);
        Ok(())
    }

    /// Makes every appended entry durable (group commit; blocking).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.log.sync().map_err(Error::store("wal"))?;
        Ok(())
    }

    /// Records that batches were ordered (their entries become obsolete).
    pub fn batches_ordered(&mut self, attestations: impl IntoIterator<Item = Digest>) {
        self.ordered.extend(attestations);
    }

    /// Drops segments whose entries are all obsolete: core records of views up to
    /// `through` (the caller guarantees the block of that view is durable in the ordered
    /// log) and ordered batches.
    pub fn prune(&mut self, through: View) -> Result<(), Error> {
        self.pruned_through = self.pruned_through.max(through);
        let (pruned_through, ordered) = (self.pruned_through, &self.ordered);
        let obsolete = |k: &Keep| match k {
            Keep::View(v) => *v <= pruned_through,
            Keep::Batch(a) => ordered.contains(a),
        };
        let first_live = self.kept.iter().find(|(_, k)| !obsolete(k)).map(|(s, _)| *s).unwrap_or(self.log.next_seq());
        if first_live > self.log.first_seq() {
            self.log.prune_below(first_live).map_err(Error::store("wal"))?;
            let first = self.log.first_seq();
            self.kept = self.kept.split_off(&first);
            let live: BTreeSet<Digest> =
                self.kept.values().filter_map(|k| if let Keep::Batch(a) = k { Some(*a) } else { None }).collect();
            self.ordered.retain(|a| live.contains(a));
        }
        Ok(())
    }

    /// Syncs and closes.
    pub fn close(self) -> Result<(), Error> {
        self.log.close().map_err(Error::store("wal"))
    }
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
}
