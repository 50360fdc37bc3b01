//! The receipt index: every retained receipt by transaction id, on disk.
//!
//! A redb database in `<data>/index.redb` holds, for every transaction of a retained
//! height, its receipt and the height that included it, plus three facts about the
//! store: the [`Header`] (format, chain, genesis) the data was written under, the
//! highest height indexed, and the lowest height retained (`retained_from`: receipts
//! and records below it were pruned).
//!
//! Receipts are kept in one table per epoch of heights (`receipts-<epoch>`;
//! [`crate::Config::index_epoch_heights`], default [`EPOCH`]), so that
//! pruning drops whole tables instead of deleting keys one by one: random deletes in a
//! B-tree of millions of keys cost seconds of CPU and hold redb's single writer, which
//! the follower needs at every height (a soak showed 10–20 s stalls). A lookup asks
//! the tables newest first (a few dozen at most with the default window), so the latest
//! inclusion of a transaction wins.
//!
//! The index is derived data: block records ([`crate::record`]) are the source of
//! truth. Each height's receipts are inserted in one transaction that also moves
//! `indexed`; those commits are not synced ([`redb::Durability::None`]), because the
//! record itself was already made durable. [`ReceiptIndex::prune`] and
//! [`ReceiptIndex::sync`] commit durably, which also makes every earlier commit durable.
//! After a crash redb returns to its last durable commit, and the node re-indexes the
//! records above `indexed` on open. Memory is redb's page cache, bounded by
//! [`crate::Config::index_cache_mib`], and the set of epochs.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Mutex;

use lamina_execution_core::{ChainFailure, Receipt, Status};
use lamina_primitives::{Height, TxId};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::record::Header;

/// Default heights per receipts table: the granularity of pruning
/// ([`crate::Config::index_epoch_heights`]; an index keeps the value it was created with).
pub const EPOCH: u64 = 4096;
const EPOCH_SIZE: &str = "epoch_heights";
const EPOCH_PREFIX: &str = "receipts-";
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

const HEADER: &str = "header";
const INDEXED: &str = "indexed";
const RETAINED_FROM: &str = "retained_from";

/// A receipt as the index stores it (after its height, 8 bytes little endian, which
/// pruning reads without decoding).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Indexed<F> {
    /// Height that included the transaction.
    pub height: Height,
    /// The receipt.
    pub receipt: Receipt<F>,
}

impl<F: ChainFailure> lamina_primitives::Wire for Indexed<F> {
    const NAME: &'static str = "ExecIndexedReceipt";
    const MAX_SIZE: usize = 16 * 1024;
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Index(e.to_string())
}

fn u64_of(bytes: &[u8]) -> Result<u64, Error> {
    let b: [u8; 8] =
        bytes.try_into().map_err(|_| Error::BadStore(format!("index: {} bytes for a height", bytes.len())))?;
    Ok(u64::from_le_bytes(b))
}

fn epoch_name(epoch: u64) -> String {
    format!("{EPOCH_PREFIX}{epoch:016x}")
}

/// The epochs that have a receipts table, among `tables`.
fn epochs_of(tables: impl IntoIterator<Item = impl redb::TableHandle>) -> Result<BTreeSet<u64>, Error> {
    let mut epochs = BTreeSet::new();
    for t in tables {
        if let Some(hex) = t.name().strip_prefix(EPOCH_PREFIX) {
            let e = u64::from_str_radix(hex, 16).map_err(|_| Error::BadStore(format!("index: table {}", t.name())))?;
            epochs.insert(e);
        }
    }
    Ok(epochs)
}

/// What pruning below `below` does to an index of `epochs` (each of `n` heights) retained
/// from `current`: the epochs to drop (every one entirely below `below`) and the new
/// `retained_from` (the first height still indexed, at most `below`, never backwards).
fn plan(epochs: &BTreeSet<u64>, n: u64, below: Height, current: u64) -> (Vec<u64>, u64) {
    let drop = epochs.iter().copied().filter(|e| (e + 1) * n <= below.0).collect();
    let first_kept = epochs.iter().copied().find(|e| (e + 1) * n > below.0);
    (drop, first_kept.map_or(below.0, |e| (e * n).clamp(1, below.0)).max(current))
}

fn epoch_def(name: &str) -> TableDefinition<'_, &'static [u8; 32], &'static [u8]> {
    TableDefinition::new(name)
}

/// The receipt index (see the module docs).
pub struct ReceiptIndex {
    db: Database,
    /// Epochs with a table, oldest first.
    epochs: Mutex<BTreeSet<u64>>,
    /// Heights per epoch.
    epoch: u64,
}

impl std::fmt::Debug for ReceiptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptIndex").finish_non_exhaustive()
    }
}

impl ReceiptIndex {
    /// Opens (or creates) the index at `path` with a page cache of `cache_bytes`, and
    /// checks that it was written under `header`; a new index records it, and `epoch`
    /// heights per table (an existing index keeps its own). Returns the index and
    /// whether it was new.
    pub fn open(path: &Path, header: &Header, cache_bytes: usize, epoch: u64) -> Result<(Self, bool), Error> {
        let db = redb::Builder::new().set_cache_size(cache_bytes).create(path).map_err(db_err)?;
        let epochs = epochs_of(db.begin_read().map_err(db_err)?.list_tables().map_err(db_err)?)?;
        let mut index = ReceiptIndex { db, epochs: Mutex::new(epochs), epoch: epoch.max(1) };
        if let Some(b) = index.meta(EPOCH_SIZE)? {
            index.epoch = u64_of(&b)?.max(1);
        }
        let stored = index.meta(HEADER)?;
        let fresh = match stored {
            Some(bytes) => {
                let got: Header = lamina_primitives::decode(&bytes).map_err(|e| Error::BadStore(e.to_string()))?;
                if &got != header {
                    return Err(Error::BadStore(format!(
                        "data was written (format {}) for chain {} under genesis {}; this node runs format {}, chain {} under {}",
                        got.version, got.chain, got.genesis, header.version, header.chain, header.genesis
                    )));
                }
                false
            }
            None => {
                let bytes = lamina_primitives::encode(header).map_err(|e| Error::Internal(e.to_string()))?;
                let mut tx = index.db.begin_write().map_err(db_err)?;
                tx.set_durability(Durability::Immediate).map_err(db_err)?;
                {
                    let mut meta = tx.open_table(META).map_err(db_err)?;
                    meta.insert(HEADER, bytes.as_slice()).map_err(db_err)?;
                    meta.insert(EPOCH_SIZE, index.epoch.to_le_bytes().as_slice()).map_err(db_err)?;
                }
                tx.commit().map_err(db_err)?;
                true
            }
        };
        Ok((index, fresh))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        Ok(table.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Highest height whose receipts are indexed (0: none).
    pub fn indexed(&self) -> Result<Height, Error> {
        Ok(Height(self.meta(INDEXED)?.map(|b| u64_of(&b)).transpose()?.unwrap_or(0)))
    }

    /// Lowest retained height: receipts and records below it were pruned (1: nothing
    /// pruned).
    pub fn retained_from(&self) -> Result<Height, Error> {
        Ok(Height(self.meta(RETAINED_FROM)?.map(|b| u64_of(&b)).transpose()?.unwrap_or(1)))
    }

    fn epochs(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.epochs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Indexes `height`'s receipts and moves `indexed` to it, in one (unsynced) commit.
    ///
    /// A later inclusion of a transaction replaces its receipt, except that a rejection
    /// never replaces an execution: a transaction ordered twice (a client resubmitted it
    /// to another validator, or a removed validator handed it over) is executed once and
    /// rejected the second time for its used nonce, and its sender must be told that it
    /// executed. (Its id binds the nonce, so once executed it can only be rejected.)
    pub fn insert<F: ChainFailure>(&self, height: Height, receipts: &[Receipt<F>]) -> Result<(), Error> {
        let epoch = height.0 / self.epoch;
        let name = epoch_name(epoch);
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::None).map_err(db_err)?;
        // Only rejections look for an earlier execution (rare: replays, nonce gaps).
        let executed: HashSet<TxId> = {
            let rejected: Vec<&TxId> =
                receipts.iter().filter(|r| matches!(r.status, Status::Rejected(_))).map(|r| &r.tx_id).collect();
            if rejected.is_empty() { HashSet::new() } else { self.executed_among::<F>(&tx, receipts, &rejected)? }
        };
        {
            let mut table = tx.open_table(epoch_def(&name)).map_err(db_err)?;
            for r in receipts {
                if matches!(r.status, Status::Rejected(_)) && executed.contains(&r.tx_id) {
                    continue;
                }
                let entry = Indexed { height, receipt: r.clone() };
                let mut bytes = height.0.to_le_bytes().to_vec();
                bytes.extend(lamina_primitives::encode(&entry).map_err(|e| Error::Internal(e.to_string()))?);
                table.insert(&r.tx_id.0.0, bytes.as_slice()).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(INDEXED, height.0.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        self.epochs().insert(epoch);
        Ok(())
    }

    /// Which of `ids` executed (succeeded or failed, not rejected) at an indexed height,
    /// or earlier among `receipts` (the height being inserted).
    fn executed_among<F: ChainFailure>(
        &self,
        tx: &redb::WriteTransaction,
        receipts: &[Receipt<F>],
        ids: &[&TxId],
    ) -> Result<HashSet<TxId>, Error> {
        let ran = |s: &Status<F>| !matches!(s, Status::Rejected(_));
        let mut out: HashSet<TxId> = HashSet::new();
        // Within the height: an execution before the rejection (a batch ordered twice in
        // one block).
        let mut seen = HashSet::new();
        for r in receipts {
            if ran(&r.status) {
                seen.insert(r.tx_id);
            } else if seen.contains(&r.tx_id) {
                out.insert(r.tx_id);
            }
        }
        let epochs: Vec<u64> = self.epochs().iter().rev().copied().collect();
        for e in epochs {
            let name = epoch_name(e);
            let table = match tx.open_table(epoch_def(&name)) {
                Ok(t) => t,
                Err(e) => return Err(db_err(e)),
            };
            for id in ids {
                if out.contains(*id) {
                    continue;
                }
                if let Some(v) = table.get(&id.0.0).map_err(db_err)? {
                    let entry: Indexed<F> = lamina_primitives::decode(v.value().get(8..).unwrap_or_default())
                        .map_err(|e| Error::BadStore(format!("receipt index: {e}")))?;
                    if ran(&entry.receipt.status) {
                        out.insert(**id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The receipt of `id` and the height that included it (its latest inclusion, or
    /// the execution a later rejection did not replace: [`ReceiptIndex::insert`]), if
    /// indexed.
    pub fn get<F: ChainFailure>(&self, id: &TxId) -> Result<Option<Indexed<F>>, Error> {
        let epochs: Vec<u64> = self.epochs().iter().rev().copied().collect();
        let tx = self.db.begin_read().map_err(db_err)?;
        for e in epochs {
            let name = epoch_name(e);
            let table = match tx.open_table(epoch_def(&name)) {
                Ok(t) => t,
                // Dropped by a prune since the list was read.
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(db_err(e)),
            };
            if let Some(v) = table.get(&id.0.0).map_err(db_err)? {
                let entry: Indexed<F> = lamina_primitives::decode(v.value().get(8..).unwrap_or_default())
                    .map_err(|e| Error::BadStore(format!("receipt index: {e}")))?;
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// The `retained_from` that [`ReceiptIndex::prune`] with `below` would set now,
    /// without changing anything: a caller moves its readers' lower bound there first,
    /// so that none of them asks for a receipt while its epoch is being dropped.
    pub fn prune_point(&self, below: Height) -> Result<Height, Error> {
        let current = self.retained_from()?;
        let tx = self.db.begin_read().map_err(db_err)?;
        let (_, from) = plan(&epochs_of(tx.list_tables().map_err(db_err)?)?, self.epoch, below, current.0);
        Ok(Height(from))
    }

    /// Drops the receipts of every epoch entirely below `below` and moves
    /// `retained_from` to the first height still indexed (at most `below`; never
    /// backwards), in one durable commit (which makes every earlier commit durable too).
    /// Returns the new `retained_from`: records below it may go.
    ///
    /// What to drop is read inside the write transaction (redb serialises writers), so
    /// prunes racing each other cannot leave `retained_from` below a dropped epoch.
    pub fn prune(&self, below: Height) -> Result<Height, Error> {
        let n = self.epoch;
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        let current = {
            let meta = tx.open_table(META).map_err(db_err)?;
            let v = meta.get(RETAINED_FROM).map_err(db_err)?;
            v.map(|b| u64_of(b.value())).transpose()?.unwrap_or(1)
        };
        let (drop, from) = plan(&epochs_of(tx.list_tables().map_err(db_err)?)?, n, below, current);
        if drop.is_empty() && from == current {
            tx.abort().map_err(db_err)?;
            return Ok(Height(current));
        }
        for e in &drop {
            let name = epoch_name(*e);
            tx.delete_table(epoch_def(&name)).map_err(db_err)?;
        }
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(RETAINED_FROM, from.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut epochs = self.epochs();
        for e in drop {
            epochs.remove(&e);
        }
        Ok(Height(from))
    }

    /// Makes every commit so far durable.
    pub fn sync(&self) -> Result<(), Error> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Number of receipts indexed.
    pub fn len(&self) -> Result<u64, Error> {
        let epochs: Vec<u64> = self.epochs().iter().copied().collect();
        let tx = self.db.begin_read().map_err(db_err)?;
        let mut n = 0;
        for e in epochs {
            let name = epoch_name(e);
            match tx.open_table(epoch_def(&name)) {
                Ok(t) => n += t.len().map_err(db_err)?,
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(db_err(e)),
            }
        }
        Ok(n)
    }

    /// True when no receipt is indexed.
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_execution_core::Status;
    use lamina_execution_core::ledger::LedgerFailure;
    use lamina_primitives::{ChainId, Digest};

    fn header(chain: u64) -> Header {
        Header { version: crate::record::VERSION, chain: ChainId(chain), genesis: Digest([7; 32]) }
    }

    fn receipt(i: u8) -> Receipt<LedgerFailure> {
        Receipt { tx_id: TxId(Digest([i; 32])), status: Status::Success }
    }

    fn rejected(i: u8, got: u64) -> Receipt<LedgerFailure> {
        Receipt { tx_id: TxId(Digest([i; 32])), status: Status::Rejected(LedgerFailure::BadNonce { expected: 9, got }) }
    }

    /// A transaction ordered twice: its second inclusion is rejected for its used nonce,
    /// and the index keeps the execution, whether the two are in one height, in two, or
    /// in two epochs of tables. A rejection followed by an execution (a nonce gap filled
    /// later) ends as the execution; two rejections keep the latest.
    #[test]
    fn a_rejection_never_replaces_an_execution() {
        let dir = tempfile::tempdir().unwrap();
        let (ix, _) = ReceiptIndex::open(&dir.path().join("index.redb"), &header(1), 1 << 20, EPOCH).unwrap();
        let get = |i: u8| ix.get::<LedgerFailure>(&receipt(i).tx_id).unwrap().unwrap();
        ix.insert(Height(1), &[receipt(1), receipt(2), rejected(2, 2), rejected(3, 1)]).unwrap();
        assert_eq!((get(2).height, get(2).receipt), (Height(1), receipt(2)), "same height");
        ix.insert(Height(2), &[rejected(1, 1), rejected(3, 2), receipt(4)]).unwrap();
        assert_eq!((get(1).height, get(1).receipt), (Height(1), receipt(1)), "later height");
        assert_eq!((get(3).height, get(3).receipt), (Height(2), rejected(3, 2)), "two rejections: the latest");
        ix.insert(Height(EPOCH + 1), &[rejected(4, 4), rejected(1, 1), receipt(3)]).unwrap();
        assert_eq!((get(4).height, get(4).receipt), (Height(2), receipt(4)), "later epoch");
        assert_eq!((get(1).height, get(1).receipt), (Height(1), receipt(1)));
        assert_eq!((get(3).height, get(3).receipt), (Height(EPOCH + 1), receipt(3)), "rejected, then executed");
        // A rejection of a transaction never executed is indexed as before.
        ix.insert(Height(EPOCH + 2), &[rejected(5, 0)]).unwrap();
        assert_eq!(get(5).receipt, rejected(5, 0));
    }

    /// Receipts survive a reopen once synced; prune drops whole epochs and moves
    /// `retained_from` to the first height still indexed; the latest inclusion of a
    /// transaction wins; an index of another chain is refused.
    #[test]
    fn index_round_trips_prunes_and_refuses_a_foreign_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        {
            let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH).unwrap();
            assert!(fresh);
            ix.insert(Height(1), &[receipt(1), receipt(2)]).unwrap();
            ix.insert(Height(2), &[receipt(3)]).unwrap();
            ix.sync().unwrap();
        }
        let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH).unwrap();
        assert!(!fresh);
        assert_eq!(ix.indexed().unwrap(), Height(2));
        assert_eq!(ix.retained_from().unwrap(), Height(1));
        let got = ix.get::<LedgerFailure>(&receipt(3).tx_id).unwrap().unwrap();
        assert_eq!((got.height, got.receipt), (Height(2), receipt(3)));
        // Epochs: receipt 4 in the next one, receipt 1 included again there (latest wins).
        ix.insert(Height(EPOCH + 5), &[receipt(4), receipt(1)]).unwrap();
        assert_eq!(ix.get::<LedgerFailure>(&receipt(1).tx_id).unwrap().unwrap().height, Height(EPOCH + 5));
        // Below a height inside the first epoch: nothing dropped, nothing moves.
        assert_eq!(ix.prune(Height(100)).unwrap(), Height(1));
        assert_eq!(ix.len().unwrap(), 5);
        // Below the second epoch's middle: the first epoch goes, retained from its end
        // (as planned beforehand).
        assert_eq!(ix.prune_point(Height(EPOCH + 10)).unwrap(), Height(EPOCH));
        assert_eq!(ix.len().unwrap(), 5, "planning changes nothing");
        assert_eq!(ix.prune(Height(EPOCH + 10)).unwrap(), Height(EPOCH));
        // A lower bound below the current one moves nothing back.
        assert_eq!(ix.prune_point(Height(3)).unwrap(), Height(EPOCH));
        assert_eq!(ix.prune(Height(3)).unwrap(), Height(EPOCH));
        assert!(ix.get::<LedgerFailure>(&receipt(3).tx_id).unwrap().is_none());
        assert_eq!(ix.get::<LedgerFailure>(&receipt(1).tx_id).unwrap().unwrap().height, Height(EPOCH + 5));
        assert_eq!(ix.retained_from().unwrap(), Height(EPOCH));
        assert_eq!(ix.len().unwrap(), 2);
        drop(ix);
        let (ix, _) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH).unwrap();
        assert_eq!((ix.len().unwrap(), ix.retained_from().unwrap()), (2, Height(EPOCH)));
        drop(ix);
        let err = ReceiptIndex::open(&path, &header(2), 1 << 20, EPOCH).unwrap_err();
        assert!(matches!(err, Error::BadStore(_)), "{err}");
    }
}
