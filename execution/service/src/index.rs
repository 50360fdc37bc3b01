//! The receipt index: every retained receipt by transaction id, on disk.
//!
//! A redb database in `<data>/index.redb` holds, for every transaction of a retained
//! height, its receipt and the height that included it, plus three facts about the
//! store: the [`Header`] (format, chain, genesis) the data was written under, the
//! highest height indexed, and the lowest height retained (`retained_from`: receipts
//! and records below it were pruned).
//!
//! The index is derived data: block records ([`crate::record`]) are the source of
//! truth. Each height's receipts are inserted in one transaction that also moves
//! `indexed`; those commits are not synced ([`redb::Durability::None`]), because the
//! record itself was already made durable. [`ReceiptIndex::prune`] commits durably,
//! which also makes every earlier commit durable. After a crash redb returns to its last
//! durable commit, and the node re-indexes the records above `indexed` on open. Memory
//! is redb's page cache, bounded by [`crate::Config::index_cache_mib`].

use std::path::Path;

use lamina_execution_core::{ChainFailure, Receipt};
use lamina_primitives::{Height, TxId};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::record::Header;

const RECEIPTS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("receipts");
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

/// The receipt index (see the module docs).
pub struct ReceiptIndex {
    db: Database,
}

impl std::fmt::Debug for ReceiptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptIndex").finish_non_exhaustive()
    }
}

impl ReceiptIndex {
    /// Opens (or creates) the index at `path` with a page cache of `cache_bytes`, and
    /// checks that it was written under `header`; a new index records it. Returns the
    /// index and whether it was new.
    pub fn open(path: &Path, header: &Header, cache_bytes: usize) -> Result<(Self, bool), Error> {
        let db = redb::Builder::new().set_cache_size(cache_bytes).create(path).map_err(db_err)?;
        let index = ReceiptIndex { db };
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
                    tx.open_table(RECEIPTS).map_err(db_err)?;
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

    /// Indexes `height`'s receipts and moves `indexed` to it, in one (unsynced) commit.
    pub fn insert<F: ChainFailure>(&self, height: Height, receipts: &[Receipt<F>]) -> Result<(), Error> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::None).map_err(db_err)?;
        {
            let mut table = tx.open_table(RECEIPTS).map_err(db_err)?;
            for r in receipts {
                let entry = Indexed { height, receipt: r.clone() };
                let mut bytes = height.0.to_le_bytes().to_vec();
                bytes.extend(lamina_primitives::encode(&entry).map_err(|e| Error::Internal(e.to_string()))?);
                table.insert(&r.tx_id.0.0, bytes.as_slice()).map_err(db_err)?;
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(INDEXED, height.0.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The receipt of `id` and the height that included it, if indexed.
    pub fn get<F: ChainFailure>(&self, id: &TxId) -> Result<Option<Indexed<F>>, Error> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(RECEIPTS).map_err(db_err)?;
        let Some(v) = table.get(&id.0.0).map_err(db_err)? else { return Ok(None) };
        let entry: Indexed<F> = lamina_primitives::decode(v.value().get(8..).unwrap_or_default())
            .map_err(|e| Error::BadStore(format!("receipt index: {e}")))?;
        Ok(Some(entry))
    }

    /// Removes the receipts of `ids` included below `from` (a transaction included
    /// again later keeps its later receipt) and moves `retained_from` to `from`, in one
    /// commit; with `durable`, a synced one (which makes every earlier commit durable
    /// too). An unsynced prune lost in a crash only brings receipts back: the records
    /// they came from are deleted after a durable one.
    pub fn prune(&self, ids: impl IntoIterator<Item = TxId>, from: Height, durable: bool) -> Result<(), Error> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        let d = if durable { Durability::Immediate } else { Durability::None };
        tx.set_durability(d).map_err(db_err)?;
        {
            let mut table = tx.open_table(RECEIPTS).map_err(db_err)?;
            for id in ids {
                let old = match table.get(&id.0.0).map_err(db_err)? {
                    // A value is the height (8 bytes, little endian), then the
                    // encoded entry; a damaged one is dropped with the pruned ones.
                    Some(v) => v.value().get(..8).map(u64_of).transpose()?.is_none_or(|h| h < from.0),
                    None => false,
                };
                if old {
                    table.remove(&id.0.0).map_err(db_err)?;
                }
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(RETAINED_FROM, from.0.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Makes every commit so far durable.
    pub fn sync(&self) -> Result<(), Error> {
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Number of receipts indexed.
    pub fn len(&self) -> Result<u64, Error> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(RECEIPTS).map_err(db_err)?;
        table.len().map_err(db_err)
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

    /// Receipts survive a reopen once synced, prune removes them and moves
    /// `retained_from`, and an index of another chain is refused.
    #[test]
    fn index_round_trips_prunes_and_refuses_a_foreign_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        {
            let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20).unwrap();
            assert!(fresh);
            ix.insert(Height(1), &[receipt(1), receipt(2)]).unwrap();
            ix.insert(Height(2), &[receipt(3)]).unwrap();
            ix.sync().unwrap();
        }
        let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20).unwrap();
        assert!(!fresh);
        assert_eq!(ix.indexed().unwrap(), Height(2));
        assert_eq!(ix.retained_from().unwrap(), Height(1));
        let got = ix.get::<LedgerFailure>(&receipt(3).tx_id).unwrap().unwrap();
        assert_eq!((got.height, got.receipt), (Height(2), receipt(3)));
        ix.prune([receipt(1).tx_id, receipt(2).tx_id], Height(2), true).unwrap();
        assert!(ix.get::<LedgerFailure>(&receipt(1).tx_id).unwrap().is_none());
        assert_eq!(ix.retained_from().unwrap(), Height(2));
        assert_eq!(ix.len().unwrap(), 1);
        drop(ix);
        let err = ReceiptIndex::open(&path, &header(2), 1 << 20).unwrap_err();
        assert!(matches!(err, Error::BadStore(_)), "{err}");
    }
}
