//! The receipt index: every retained receipt by transaction id, on disk.
//!
//! A redb database in `<data>/index.redb` holds, for every transaction of a retained
//! height, its receipt and the height that included it, plus facts about the store:
//! the [`Header`] (format, chain, genesis) the data was written under, its layout, the
//! highest height written (`indexed`), and the lowest height retained (`retained_from`:
//! receipts and records below it were pruned).
//!
//! **Written in sorted runs, not key by key.** Transaction ids are hashes, so inserting
//! each height's receipts into one big B-tree lands every insert on its own leaf, and
//! once the tree outgrows the page cache each insert reads, copies and rewrites a 4 KiB
//! page (10–22 µs of CPU per receipt at 0.5–2 million receipts held). Instead, receipts
//! are first buffered in memory (the *tail*), and written when [`ReceiptIndex::insert`]
//! says a flush is due ([`crate::Config::index_flush_receipts`], default
//! [`FLUSH_RECEIPTS`], receipts or [`FLUSH_HEIGHTS`] heights buffered): sorted, in one
//! commit, into tables that stay small ([`TABLE_RECEIPTS`] receipts or
//! [`crate::Config::index_epoch_heights`] heights each), so a flush touches each leaf of
//! its table many times and writes it once (2.8–3.1 µs of CPU per receipt against
//! 13–22 µs key by key in the same run, `--bench execution receipt_index`; BENCHMARKS.md, "the receipt
//! index written in sorted runs").
//!
//! Each table (`receipts-from-<first height>`) holds the receipts of a range of whole
//! heights, from its first height to the next table's; pruning drops whole tables
//! instead of deleting keys one by one (random deletes in a B-tree of millions of keys
//! cost seconds of redb's single writer). A lookup asks the tail, then the tables newest
//! first, so the latest inclusion of a transaction wins. Pruning drops a table once all
//! its heights are below the bound, the newest too (a quiet chain's records can go);
//! heights in the tail are never declared pruned. A table closes at whichever limit it
//! reaches first, so there are at most retained heights / `index_epoch_heights` plus
//! retained receipts / [`TABLE_RECEIPTS`] of them (plus one); a lookup of an unknown id
//! asks each.
//!
//! The index is derived data: block records ([`crate::record`]) are the source of
//! truth. Flushes are not synced ([`redb::Durability::None`]), because the records
//! were already made durable; [`ReceiptIndex::sync`] and [`ReceiptIndex::prune`] commit
//! durably, which makes every earlier commit durable too. After a crash (the tail is
//! lost, and redb returns to its last durable commit) the node re-indexes the records
//! above `indexed` on open: after a clean stop nothing, after a crash what came after
//! the last durable commit (the sync after each snapshot). Memory is the tail (at most
//! four times the flush threshold, plus the tail being written) and redb's page cache,
//! bounded by [`crate::Config::index_cache_mib`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use lamina_execution_core::{ChainFailure, Receipt, Status};
use lamina_primitives::{Height, TxId};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::record::Header;

/// Default most heights per receipts table: the granularity of pruning on a quiet chain
/// ([`crate::Config::index_epoch_heights`]; an index keeps the value it was created with).
pub const EPOCH: u64 = 4096;
/// A table takes no new height once it holds this many receipts: small tables keep a
/// flush's sorted writes dense (a flush into a table of millions of keys would again
/// rewrite a page per receipt).
pub const TABLE_RECEIPTS: u64 = 262_144;
/// Default receipts buffered before [`ReceiptIndex::insert`] says a flush is due
/// ([`crate::Config::index_flush_receipts`]).
pub const FLUSH_RECEIPTS: usize = 65_536;
/// Heights buffered before a flush is due, whatever they hold: a quiet chain's tail
/// still reaches disk (and `indexed` moves, so pruning can proceed).
pub const FLUSH_HEIGHTS: u64 = 1024;
/// Beyond this many times the flush threshold buffered, an insert flushes by itself,
/// so a caller that never flushes, or flushes slower than it inserts, cannot grow the
/// tail without bound. (The node flushes when due on a thread of its own, [`Flusher`];
/// this one would run inside the node's state lock.)
const TAIL_LIMIT: usize = 4;

/// The on-disk layout this code writes: 2 is sorted runs into small tables. Layout 1
/// (one table per epoch, named by epoch number, no `layout` key) is rebuilt from the
/// records on open.
const LAYOUT_VERSION: u64 = 2;
const EPOCH_SIZE: &str = "epoch_heights";
const TABLE_PREFIX: &str = "receipts-from-";
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

const HEADER: &str = "header";
const LAYOUT: &str = "layout";
const INDEXED: &str = "indexed";
const RETAINED_FROM: &str = "retained_from";

/// A receipt as the index stores it (after its height, 8 bytes little endian, which a
/// flush reads without decoding).
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

fn decode_entry<F: ChainFailure>(bytes: &[u8]) -> Result<Indexed<F>, Error> {
    lamina_primitives::decode(bytes.get(8..).unwrap_or_default())
        .map_err(|e| Error::BadStore(format!("receipt index: {e}")))
}

fn table_name(first: u64) -> String {
    format!("{TABLE_PREFIX}{first:016x}")
}

/// The first heights of the receipts tables among `tables`.
fn tables_of(tables: impl IntoIterator<Item = impl redb::TableHandle>) -> Result<BTreeSet<u64>, Error> {
    let mut firsts = BTreeSet::new();
    for t in tables {
        if let Some(hex) = t.name().strip_prefix(TABLE_PREFIX) {
            let h = u64::from_str_radix(hex, 16).map_err(|_| Error::BadStore(format!("index: table {}", t.name())))?;
            firsts.insert(h);
        }
    }
    Ok(firsts)
}

/// What pruning below `below` does to an index of `tables` (their first heights) of at
/// most `epoch` heights each, retained from `current`: the tables to drop (every one
/// whose heights are all below `below`) and the new `retained_from`: the first height of
/// the oldest table kept, or with none kept the height after `indexed` (heights above
/// it are in the memory tail, and their records are what a restart re-indexes them
/// from); at most `below`, never backwards.
///
/// A table holds receipts of heights below the next table's first, below its own first
/// plus `epoch` (a flush opens a new table there), and up to `indexed`; so a table
/// whose heights are long past goes even when no newer table follows it (a chain that
/// went quiet).
fn plan(tables: &BTreeSet<u64>, epoch: u64, below: Height, current: u64, indexed: Height) -> (Vec<u64>, u64) {
    let firsts: Vec<u64> = tables.iter().copied().collect();
    let end = |i: usize| {
        let next = firsts.get(i + 1).copied().unwrap_or(u64::MAX);
        next.min(firsts[i].saturating_add(epoch)).min(indexed.0.saturating_add(1))
    };
    let drop: Vec<u64> = (0..firsts.len()).take_while(|&i| end(i) <= below.0).map(|i| firsts[i]).collect();
    let first_kept = firsts.get(drop.len()).copied().unwrap_or(indexed.0.saturating_add(1));
    (drop, first_kept.clamp(1, below.0.max(1)).max(current))
}

fn table_def(name: &str) -> TableDefinition<'_, &'static [u8; 32], &'static [u8]> {
    TableDefinition::new(name)
}

/// One stored receipt: its transaction id and its bytes.
type Entry<'a> = (&'a [u8; 32], &'a [u8]);

/// Receipts buffered in memory, not yet written to a table.
#[derive(Clone, Debug, Default)]
struct Tail {
    /// The stored bytes (height, then the encoded [`Indexed`]) by transaction id: the
    /// latest inclusion of each.
    entries: HashMap<[u8; 32], Vec<u8>>,
    /// The lowest and highest heights inserted since the last flush (`None`: none).
    heights: Option<(Height, Height)>,
}

/// The tail being filled, and the one a flush is writing (readers still see it).
#[derive(Debug, Default)]
struct Buffer {
    current: Tail,
    frozen: Option<Arc<Tail>>,
}

/// What the single writer knows: the newest table's first height and receipts.
#[derive(Debug)]
struct Writer {
    newest: Option<(u64, u64)>,
}

/// The receipt index (see the module docs).
pub struct ReceiptIndex {
    db: Database,
    /// First heights of the tables, oldest first.
    tables: Mutex<BTreeSet<u64>>,
    buffer: Mutex<Buffer>,
    /// Serialises flushes, syncs and prunes (redb serialises its writers anyway; this
    /// keeps tails written in order and the newest table's count exact).
    writer: Mutex<Writer>,
    /// Most heights per table.
    epoch: u64,
    /// Receipts buffered when a flush is due.
    flush_receipts: usize,
}

impl std::fmt::Debug for ReceiptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptIndex").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReceiptIndex {
    /// Opens (or creates) the index at `path` with a page cache of `cache_bytes`, and
    /// checks that it was written under `header`; a new index records it, and `epoch`
    /// most heights per table (an existing index keeps its own). A file redb cannot read
    /// is renamed to `<name>.unreadable-<n>`, and an index in an older layout removed;
    /// either way the index is created again empty (the caller re-indexes it from the
    /// records). Returns the index and whether it was new.
    pub fn open(
        path: &Path,
        header: &Header,
        cache_bytes: usize,
        epoch: u64,
        flush_receipts: usize,
    ) -> Result<(Self, bool), Error> {
        let create = || redb::Builder::new().set_cache_size(cache_bytes).create(path);
        let mut db = match create() {
            Ok(db) => db,
            // Derived data: a file redb cannot read is kept aside for inspection, and the
            // index is rebuilt from the records. (Any other error, such as another
            // process holding the file, stops the node.)
            Err(e) if unreadable(&e) => {
                let aside = set_aside(path)?;
                tracing::warn!(target: "lamina::execution", error = %e, aside = %aside.display(), "the receipt index cannot be read; it is kept aside and rebuilt from the block records");
                create().map_err(db_err)?
            }
            Err(e) => return Err(db_err(e)),
        };
        let stored = meta_of(&db, HEADER)?;
        if let Some(bytes) = &stored {
            check_header(bytes, header)?;
        }
        if stored.is_some() && meta_of(&db, LAYOUT)?.is_none() {
            tracing::warn!(target: "lamina::execution", path = %path.display(), "the receipt index is in an older layout; rebuilding it from the block records");
            drop(db);
            std::fs::remove_file(path)?;
            db = create().map_err(db_err)?;
        }
        let tables = tables_of(db.begin_read().map_err(db_err)?.list_tables().map_err(db_err)?)?;
        let mut index = ReceiptIndex {
            db,
            tables: Mutex::new(tables),
            buffer: Mutex::new(Buffer::default()),
            writer: Mutex::new(Writer { newest: None }),
            epoch: epoch.max(1),
            flush_receipts: flush_receipts.max(1),
        };
        if let Some(b) = index.meta(EPOCH_SIZE)? {
            index.epoch = u64_of(&b)?.max(1);
        }
        let stored = index.meta(HEADER)?;
        let fresh = match stored {
            Some(_) => {
                match index.meta(LAYOUT)?.map(|b| u64_of(&b)).transpose()? {
                    Some(LAYOUT_VERSION) => {}
                    other => {
                        return Err(Error::BadStore(format!(
                            "receipt index layout {other:?}; this node writes layout {LAYOUT_VERSION}"
                        )));
                    }
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
                    meta.insert(LAYOUT, LAYOUT_VERSION.to_le_bytes().as_slice()).map_err(db_err)?;
                    meta.insert(EPOCH_SIZE, index.epoch.to_le_bytes().as_slice()).map_err(db_err)?;
                }
                tx.commit().map_err(db_err)?;
                true
            }
        };
        let newest = lock(&index.tables).last().copied();
        if let Some(first) = newest {
            let tx = index.db.begin_read().map_err(db_err)?;
            let name = table_name(first);
            let n = tx.open_table(table_def(&name)).map_err(db_err)?.len().map_err(db_err)?;
            lock(&index.writer).newest = Some((first, n));
        }
        Ok((index, fresh))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        meta_of(&self.db, key)
    }

    /// Highest height whose receipts are written to a table (0: none). Heights above it
    /// are in the memory tail or not inserted yet.
    pub fn indexed(&self) -> Result<Height, Error> {
        Ok(Height(self.meta(INDEXED)?.map(|b| u64_of(&b)).transpose()?.unwrap_or(0)))
    }

    /// Lowest retained height: receipts and records below it were pruned (1: nothing
    /// pruned).
    pub fn retained_from(&self) -> Result<Height, Error> {
        Ok(Height(self.meta(RETAINED_FROM)?.map(|b| u64_of(&b)).transpose()?.unwrap_or(1)))
    }

    /// Adds `height`'s receipts to the memory tail (readers see them at once) and
    /// returns whether a flush is due: the caller then calls [`ReceiptIndex::flush`],
    /// outside any lock its readers need. Heights come in increasing order, each above
    /// [`ReceiptIndex::indexed`]. (Past four times the flush threshold buffered, the
    /// insert flushes by itself.)
    ///
    /// A later inclusion of a transaction replaces its receipt, except that a rejection
    /// never replaces an execution: a transaction ordered twice (a client resubmitted it
    /// to another validator, or a removed validator handed it over) is executed once and
    /// rejected the second time for its used nonce, and its sender must be told that it
    /// executed. (Its id binds the nonce, so once executed it can only be rejected.)
    pub fn insert<F: ChainFailure>(&self, height: Height, receipts: &[Receipt<F>]) -> Result<bool, Error> {
        // Only rejections look for an earlier execution (rare: replays, nonce gaps).
        let executed: HashSet<TxId> = if receipts.iter().any(|r| matches!(r.status, Status::Rejected(_))) {
            self.executed_among(receipts)?
        } else {
            HashSet::new()
        };
        let mut encoded = Vec::with_capacity(receipts.len());
        for r in receipts {
            if matches!(r.status, Status::Rejected(_)) && executed.contains(&r.tx_id) {
                continue;
            }
            let entry = Indexed { height, receipt: r.clone() };
            let mut bytes = height.0.to_le_bytes().to_vec();
            bytes.extend(lamina_primitives::encode(&entry).map_err(|e| Error::Internal(e.to_string()))?);
            encoded.push((r.tx_id.0.0, bytes));
        }
        let (due, over) = {
            let mut b = lock(&self.buffer);
            let tail = &mut b.current;
            tail.entries.extend(encoded);
            let (low, _) = tail.heights.unwrap_or((height, height));
            tail.heights = Some((low, height));
            let n = tail.entries.len();
            let due = n >= self.flush_receipts || height.0.saturating_sub(low.0) + 1 >= FLUSH_HEIGHTS;
            (due, n >= TAIL_LIMIT.saturating_mul(self.flush_receipts))
        };
        if over {
            self.flush()?;
            return Ok(false);
        }
        Ok(due)
    }

    /// Which of the rejected transactions among `receipts` executed (succeeded or
    /// failed, not rejected): earlier in `receipts` (a batch ordered twice in one
    /// block), or at a height already inserted.
    fn executed_among<F: ChainFailure>(&self, receipts: &[Receipt<F>]) -> Result<HashSet<TxId>, Error> {
        let ran = |s: &Status<F>| !matches!(s, Status::Rejected(_));
        let mut out: HashSet<TxId> = HashSet::new();
        let mut seen = HashSet::new();
        for r in receipts {
            if ran(&r.status) {
                seen.insert(r.tx_id);
            } else if seen.contains(&r.tx_id) || out.contains(&r.tx_id) {
                out.insert(r.tx_id);
            } else if let Some(e) = self.get::<F>(&r.tx_id)?
                && ran(&e.receipt.status)
            {
                out.insert(r.tx_id);
            }
        }
        Ok(out)
    }

    /// Writes the memory tail to the tables, sorted, in one unsynced commit that moves
    /// `indexed` to the highest height inserted. Readers see the tail until the commit
    /// is visible. On an error the tail is put back (readers keep seeing it, and the
    /// next flush writes it); the node stops on the error, and re-indexes from the
    /// records when it starts again.
    pub fn flush(&self) -> Result<(), Error> {
        let mut w = lock(&self.writer);
        self.flush_locked(&mut w)
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<(), Error> {
        let tail = {
            let mut b = lock(&self.buffer);
            // A tail still frozen here was left by a flush that panicked: write it too.
            if let Some(stale) = b.frozen.take() {
                put_back(&mut b, stale);
            }
            if b.current.heights.is_none() {
                return Ok(());
            }
            let t = Arc::new(std::mem::take(&mut b.current));
            b.frozen = Some(t.clone());
            t
        };
        match self.write_tail(w, &tail) {
            Ok(()) => {
                lock(&self.buffer).frozen = None;
                Ok(())
            }
            Err(e) => {
                // Readers keep seeing it, and a later flush writes it.
                let mut b = lock(&self.buffer);
                b.frozen = None;
                put_back(&mut b, tail);
                Err(e)
            }
        }
    }

    /// Writes `tail` to the tables in one unsynced commit, and lists the tables it made.
    fn write_tail(&self, w: &mut Writer, tail: &Tail) -> Result<(), Error> {
        let Some((_, last)) = tail.heights else { return Ok(()) };
        // Whole heights, in order, into the newest table until it is full or spans
        // `epoch` heights; then into a new table named by its first height.
        let mut by_height: BTreeMap<u64, Vec<Entry<'_>>> = BTreeMap::new();
        for (k, v) in &tail.entries {
            by_height.entry(u64_of(v.get(..8).unwrap_or_default())?).or_default().push((k, v.as_slice()));
        }
        let mut newest = w.newest;
        let mut runs: Vec<(u64, Vec<Entry<'_>>)> = Vec::new();
        for (h, items) in by_height {
            let open_new = match newest {
                None => true,
                Some((first, n)) => n >= TABLE_RECEIPTS || h >= first.saturating_add(self.epoch),
            };
            if open_new {
                newest = Some((h, 0));
            }
            let (first, n) = newest.get_or_insert((h, 0));
            *n += items.len() as u64;
            match runs.last_mut() {
                Some((f, run)) if f == first => run.extend(items),
                _ => runs.push((*first, items)),
            }
        }
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::None).map_err(db_err)?;
        for (first, run) in &mut runs {
            run.sort_unstable_by_key(|(k, _)| **k);
            let name = table_name(*first);
            let mut table = tx.open_table(table_def(&name)).map_err(db_err)?;
            for (k, v) in run.iter() {
                table.insert(*k, *v).map_err(db_err)?;
            }
        }
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(INDEXED, last.0.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        w.newest = newest;
        lock(&self.tables).extend(runs.iter().map(|(f, _)| *f));
        Ok(())
    }

    /// The stored bytes of `id`'s latest receipt: the tail, the tail being flushed,
    /// then the tables newest first. (A flush makes its commit visible and lists its
    /// tables before it lets go of its tail, and the tables are read after the tail,
    /// so a receipt moving from the tail to a table is never missed.)
    fn lookup(&self, id: &TxId) -> Result<Option<Vec<u8>>, Error> {
        {
            let b = lock(&self.buffer);
            if let Some(v) = b.current.entries.get(&id.0.0) {
                return Ok(Some(v.clone()));
            }
            if let Some(v) = b.frozen.as_ref().and_then(|f| f.entries.get(&id.0.0)) {
                return Ok(Some(v.clone()));
            }
        }
        let tables: Vec<u64> = lock(&self.tables).iter().rev().copied().collect();
        let tx = self.db.begin_read().map_err(db_err)?;
        for first in tables {
            let name = table_name(first);
            let table = match tx.open_table(table_def(&name)) {
                Ok(t) => t,
                // Dropped by a prune since the list was read.
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(db_err(e)),
            };
            if let Some(v) = table.get(&id.0.0).map_err(db_err)? {
                return Ok(Some(v.value().to_vec()));
            }
        }
        Ok(None)
    }

    /// The receipt of `id` and the height that included it (its latest inclusion, or
    /// the execution a later rejection did not replace: [`ReceiptIndex::insert`]), if
    /// indexed.
    pub fn get<F: ChainFailure>(&self, id: &TxId) -> Result<Option<Indexed<F>>, Error> {
        self.lookup(id)?.map(|v| decode_entry(&v)).transpose()
    }

    /// The `retained_from` that [`ReceiptIndex::prune`] with `below` would set now,
    /// without changing anything: a caller moves its readers' lower bound there first,
    /// so that none of them asks for a receipt while its table is being dropped, and
    /// then prunes below this point (a table a flush adds in between then changes
    /// nothing).
    pub fn prune_point(&self, below: Height) -> Result<Height, Error> {
        // Under the writer's lock, from one read transaction: no flush or prune moves
        // what the plan reads meanwhile.
        let _w = lock(&self.writer);
        let tx = self.db.begin_read().map_err(db_err)?;
        let (current, indexed) = read_bounds(&tx)?;
        let (_, from) = plan(&tables_of(tx.list_tables().map_err(db_err)?)?, self.epoch, below, current, indexed);
        Ok(Height(from))
    }

    /// Drops the receipts of every table whose heights are all below `below` and moves
    /// `retained_from` to the first height still indexed (at most `below` and the height
    /// after [`ReceiptIndex::indexed`]; never backwards), in one durable commit (which
    /// makes every earlier commit durable too; none when nothing changes). Returns the
    /// new `retained_from`: records below it may go.
    pub fn prune(&self, below: Height) -> Result<Height, Error> {
        let mut w = lock(&self.writer);
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        let (current, indexed) = bounds_of(&tx.open_table(META).map_err(db_err)?)?;
        let (drop, from) = plan(&tables_of(tx.list_tables().map_err(db_err)?)?, self.epoch, below, current, indexed);
        if drop.is_empty() && from == current {
            tx.abort().map_err(db_err)?;
            return Ok(Height(current));
        }
        for first in &drop {
            let name = table_name(*first);
            tx.delete_table(table_def(&name)).map_err(db_err)?;
        }
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(RETAINED_FROM, from.to_le_bytes().as_slice()).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut tables = lock(&self.tables);
        for first in drop {
            tables.remove(&first);
        }
        if w.newest.is_some_and(|(first, _)| !tables.contains(&first)) {
            // The newest table went too: the next flush opens a new one.
            w.newest = None;
        }
        Ok(Height(from))
    }

    /// Writes the tail and makes every commit so far durable.
    pub fn sync(&self) -> Result<(), Error> {
        let mut w = lock(&self.writer);
        self.flush_locked(&mut w)?;
        let mut tx = self.db.begin_write().map_err(db_err)?;
        tx.set_durability(Durability::Immediate).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Number of receipts held: in the tables and the tail (a transaction included
    /// again after its first receipt was written counts twice).
    pub fn len(&self) -> Result<u64, Error> {
        let buffered = {
            let b = lock(&self.buffer);
            b.current.entries.len() + b.frozen.as_ref().map_or(0, |f| f.entries.len())
        };
        let tables: Vec<u64> = lock(&self.tables).iter().copied().collect();
        let tx = self.db.begin_read().map_err(db_err)?;
        let mut n = buffered as u64;
        for first in tables {
            let name = table_name(first);
            match tx.open_table(table_def(&name)) {
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

    /// Number of receipts tables (for tests and operators' curiosity).
    pub fn tables(&self) -> usize {
        lock(&self.tables).len()
    }
}

/// Puts `older`, a tail that was not written, back under the tail being filled: the
/// receipts inserted since win, and the heights span both.
fn put_back(b: &mut Buffer, older: Arc<Tail>) {
    let newer = std::mem::take(&mut b.current);
    let mut back = Arc::unwrap_or_clone(older);
    back.entries.extend(newer.entries);
    back.heights = match (back.heights, newer.heights) {
        (Some((low, _)), Some((_, high))) => Some((low, high)),
        (old, new) => old.or(new),
    };
    b.current = back;
}

/// Refuses an index written under another header (format, chain, genesis).
fn check_header(stored: &[u8], header: &Header) -> Result<(), Error> {
    let got: Header = lamina_primitives::decode(stored).map_err(|e| Error::BadStore(e.to_string()))?;
    if &got != header {
        return Err(Error::BadStore(format!(
            "data was written (format {}) for chain {} under genesis {}; this node runs format {}, chain {} under {}",
            got.version, got.chain, got.genesis, header.version, header.chain, header.genesis
        )));
    }
    Ok(())
}

/// Whether redb refused the file for what it holds (corrupted, not a redb file, a
/// format too old), not for a fault of the moment (another process holds it, an I/O
/// error).
fn unreadable(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) | redb::DatabaseError::UpgradeRequired(_) => {
            true
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// Renames the index file at `path` to the first free `<name>.unreadable-<n>` and
/// returns the new path.
fn set_aside(path: &Path) -> Result<std::path::PathBuf, Error> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = (0u32..)
        .map(|n| path.with_file_name(format!("{name}.unreadable-{n}")))
        .find(|p| !p.exists())
        .ok_or_else(|| Error::Internal("no free name to set the index aside".into()))?;
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

/// `retained_from` (1 when unset) and `indexed` (0 when unset), as `tx` sees them.
fn read_bounds(tx: &redb::ReadTransaction) -> Result<(u64, Height), Error> {
    match tx.open_table(META) {
        Ok(meta) => bounds_of(&meta),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok((1, Height(0))),
        Err(e) => Err(db_err(e)),
    }
}

/// `retained_from` (1 when unset) and `indexed` (0 when unset) in `meta`, in a read or
/// a write transaction.
fn bounds_of(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<(u64, Height), Error> {
    let get =
        |key| -> Result<Option<u64>, Error> { meta.get(key).map_err(db_err)?.map(|b| u64_of(b.value())).transpose() };
    Ok((get(RETAINED_FROM)?.unwrap_or(1), Height(get(INDEXED)?.unwrap_or(0))))
}

/// Runs an index's due flushes on a thread of their own, one at a time, so the follower
/// does not wait for them (a flush of 65,536 receipts is about 0.2 s of CPU here).
/// Dropping it waits for the running flush, so no flush thread holds the index after
/// its owner is gone.
#[derive(Debug)]
pub struct Flusher {
    index: Arc<ReceiptIndex>,
    running: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Flusher {
    /// A flusher of `index`, idle.
    pub fn new(index: Arc<ReceiptIndex>) -> Self {
        Flusher { index, running: None }
    }

    /// Starts a flush unless one is still running (the tail then keeps growing, and the
    /// next due insert asks again). Returns the error of a finished flush, if it failed:
    /// the index's errors stop the follower.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        self.wait()?;
        let index = self.index.clone();
        let handle = std::thread::Builder::new().name("exec-index-flush".into()).spawn(move || index.flush())?;
        self.running = Some(handle);
        Ok(())
    }

    /// Waits for the running flush, if any, and returns its outcome.
    pub fn wait(&mut self) -> Result<(), Error> {
        match self.running.take() {
            None => Ok(()),
            Some(h) => h.join().unwrap_or_else(|_| Err(Error::Internal("the index flush thread panicked".into()))),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Err(e) = self.wait() {
            tracing::error!(target: "lamina::execution", error = %e, "receipt index flush failed");
        }
    }
}

fn meta_of(db: &Database, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let tx = db.begin_read().map_err(db_err)?;
    let table = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(db_err(e)),
    };
    Ok(table.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
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
    /// and the index keeps the execution, whether the two are in one height, in two, in
    /// the tail or in tables. A rejection followed by an execution (a nonce gap filled
    /// later) ends as the execution; two rejections keep the latest.
    #[test]
    fn a_rejection_never_replaces_an_execution() {
        for flush_between in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (ix, _) =
                ReceiptIndex::open(&dir.path().join("index.redb"), &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
            let get = |i: u8| ix.get::<LedgerFailure>(&receipt(i).tx_id).unwrap().unwrap();
            let insert = |h: u64, r: &[Receipt<LedgerFailure>]| {
                ix.insert(Height(h), r).unwrap();
                if flush_between {
                    ix.flush().unwrap();
                }
            };
            insert(1, &[receipt(1), receipt(2), rejected(2, 2), rejected(3, 1)]);
            assert_eq!((get(2).height, get(2).receipt), (Height(1), receipt(2)), "same height");
            insert(2, &[rejected(1, 1), rejected(3, 2), receipt(4)]);
            assert_eq!((get(1).height, get(1).receipt), (Height(1), receipt(1)), "later height");
            assert_eq!((get(3).height, get(3).receipt), (Height(2), rejected(3, 2)), "two rejections: the latest");
            insert(EPOCH + 1, &[rejected(4, 4), rejected(1, 1), receipt(3)]);
            assert_eq!((get(4).height, get(4).receipt), (Height(2), receipt(4)), "later table");
            assert_eq!((get(1).height, get(1).receipt), (Height(1), receipt(1)));
            assert_eq!((get(3).height, get(3).receipt), (Height(EPOCH + 1), receipt(3)), "rejected, then executed");
            // A rejection of a transaction never executed is indexed as before.
            insert(EPOCH + 2, &[rejected(5, 0)]);
            assert_eq!(get(5).receipt, rejected(5, 0));
            ix.sync().unwrap();
            assert_eq!(ix.tables(), 2, "a new table once a table spans `epoch` heights");
            assert_eq!((get(1).height, get(3).height, get(4).height), (Height(1), Height(EPOCH + 1), Height(2)));
        }
    }

    /// Receipts survive a reopen once synced; prune drops whole tables (the newest too,
    /// once its heights are all below the bound, but never the tail's) and moves
    /// `retained_from` to the first height still indexed; the latest inclusion of a
    /// transaction wins; an index of another chain is refused.
    #[test]
    fn index_round_trips_prunes_and_refuses_a_foreign_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        {
            let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
            assert!(fresh);
            assert!(!ix.insert(Height(1), &[receipt(1), receipt(2)]).unwrap(), "one small height is not due");
            ix.insert(Height(2), &[receipt(3)]).unwrap();
            assert_eq!(ix.indexed().unwrap(), Height(0), "in the tail");
            assert_eq!(ix.get::<LedgerFailure>(&receipt(3).tx_id).unwrap().unwrap().height, Height(2));
            ix.sync().unwrap();
            ix.insert(Height(3), &[receipt(9)]).unwrap();
            // Dropped without a sync: height 3 is lost, as after a crash.
        }
        let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
        assert!(!fresh);
        assert_eq!(ix.indexed().unwrap(), Height(2));
        assert_eq!(ix.retained_from().unwrap(), Height(1));
        assert!(ix.get::<LedgerFailure>(&receipt(9).tx_id).unwrap().is_none());
        let got = ix.get::<LedgerFailure>(&receipt(3).tx_id).unwrap().unwrap();
        assert_eq!((got.height, got.receipt), (Height(2), receipt(3)));
        // The next table: receipt 4, and receipt 1 included again (latest wins).
        ix.insert(Height(EPOCH + 5), &[receipt(4), receipt(1)]).unwrap();
        ix.flush().unwrap();
        assert_eq!(ix.tables(), 2);
        assert_eq!(ix.get::<LedgerFailure>(&receipt(1).tx_id).unwrap().unwrap().height, Height(EPOCH + 5));
        // Below a height inside the first table: nothing dropped, nothing moves.
        assert_eq!(ix.prune(Height(100)).unwrap(), Height(1));
        assert_eq!(ix.len().unwrap(), 5);
        // Past the second table's first height: the first table goes, retained from the
        // second's first height (as planned beforehand). The newest table holds heights
        // up to `indexed` (EPOCH + 5), so it stays.
        assert_eq!(ix.prune_point(Height(EPOCH + 5)).unwrap(), Height(EPOCH + 5));
        assert_eq!(ix.len().unwrap(), 5, "planning changes nothing");
        assert_eq!(ix.prune(Height(EPOCH + 5)).unwrap(), Height(EPOCH + 5));
        // A lower bound below the current one moves nothing back.
        assert_eq!(ix.prune_point(Height(3)).unwrap(), Height(EPOCH + 5));
        assert_eq!(ix.prune(Height(3)).unwrap(), Height(EPOCH + 5));
        assert!(ix.get::<LedgerFailure>(&receipt(3).tx_id).unwrap().is_none());
        assert_eq!(ix.get::<LedgerFailure>(&receipt(1).tx_id).unwrap().unwrap().height, Height(EPOCH + 5));
        assert_eq!(ix.retained_from().unwrap(), Height(EPOCH + 5));
        assert_eq!(ix.len().unwrap(), 2);
        drop(ix);
        let (ix, _) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
        assert_eq!((ix.len().unwrap(), ix.retained_from().unwrap()), (2, Height(EPOCH + 5)));
        // A quiet stretch (heights with no receipts, in the tail): nothing past `indexed`
        // is pruned, whatever the bound.
        let quiet = EPOCH + 6..EPOCH + 20;
        for h in quiet.clone() {
            ix.insert::<LedgerFailure>(Height(h), &[]).unwrap();
        }
        assert_eq!(ix.prune(Height(u64::MAX)).unwrap(), Height(EPOCH + 6), "the newest table goes, the tail stays");
        assert_eq!((ix.len().unwrap(), ix.tables()), (0, 0));
        ix.flush().unwrap();
        assert_eq!(ix.prune(Height(u64::MAX)).unwrap(), Height(quiet.end), "records of a quiet chain can go");
        // The next receipts open a new table.
        ix.insert(Height(quiet.end + 1), &[receipt(7)]).unwrap();
        ix.flush().unwrap();
        assert_eq!(ix.tables(), 1);
        assert_eq!(ix.get::<LedgerFailure>(&receipt(7).tx_id).unwrap().unwrap().height, Height(quiet.end + 1));
        drop(ix);
        let err = ReceiptIndex::open(&path, &header(2), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap_err();
        assert!(matches!(err, Error::BadStore(_)), "{err}");
    }

    /// Flushes are due at `FLUSH_RECEIPTS` receipts or `FLUSH_HEIGHTS` heights; a table
    /// takes no new height past `TABLE_RECEIPTS` receipts, and never splits a height;
    /// every receipt is found, from the tail and from the tables, before and after a
    /// reopen.
    #[test]
    fn flushes_fill_tables_by_receipts_and_heights() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let id = |h: u64, i: u64| {
            let mut d = [0u8; 32];
            // Spread like hashes: the first bytes decide a key's place.
            d[..8].copy_from_slice(&(h << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            d[8..16].copy_from_slice(&h.to_le_bytes());
            d[16..24].copy_from_slice(&i.to_le_bytes());
            TxId(Digest(d))
        };
        let per = 40_000u64;
        let (ix, _) = ReceiptIndex::open(&path, &header(1), 8 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
        let mut dues = 0;
        for h in 1..=10u64 {
            let rs: Vec<Receipt<LedgerFailure>> =
                (0..per).map(|i| Receipt { tx_id: id(h, i), status: Status::Success }).collect();
            if ix.insert(Height(h), &rs).unwrap() {
                dues += 1;
                ix.flush().unwrap();
            }
        }
        assert_eq!(dues, 5, "due every second height of 40,000 receipts");
        // 80,000 per flush. A table takes whole heights until it holds 262,144: heights
        // 1-7 (280,000) are in the first, heights 8-10 (120,000) in the second.
        assert_eq!(ix.tables(), 2);
        assert_eq!(ix.len().unwrap(), 10 * per);
        for h in [1, 7, 8, 10] {
            let got = ix.get::<LedgerFailure>(&id(h, per - 1)).unwrap().unwrap();
            assert_eq!(got.height, Height(h));
        }
        // Quiet heights: due after FLUSH_HEIGHTS of them.
        let mut due_at = None;
        for h in 11..11 + FLUSH_HEIGHTS + 5 {
            if ix.insert::<LedgerFailure>(Height(h), &[]).unwrap() && due_at.is_none() {
                due_at = Some(h);
                ix.flush().unwrap();
            }
        }
        assert_eq!(due_at, Some(10 + FLUSH_HEIGHTS));
        assert_eq!(ix.indexed().unwrap(), Height(10 + FLUSH_HEIGHTS));
        ix.sync().unwrap();
        assert_eq!(ix.indexed().unwrap(), Height(15 + FLUSH_HEIGHTS));
        drop(ix);
        let (ix, _) = ReceiptIndex::open(&path, &header(1), 8 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
        assert_eq!(ix.len().unwrap(), 10 * per);
        assert_eq!(ix.get::<LedgerFailure>(&id(3, 17)).unwrap().unwrap().height, Height(3));
        // The newest table's count survives the reopen: two more heights of 100,000 go
        // into it (120,000, then 220,000, both below 262,144), and the third opens a
        // table.
        let (h0, per) = (20 + FLUSH_HEIGHTS, 100_000);
        for h in [h0, h0 + 1, h0 + 2] {
            let rs: Vec<Receipt<LedgerFailure>> =
                (0..per).map(|i| Receipt { tx_id: id(h, i), status: Status::Success }).collect();
            ix.insert(Height(h), &rs).unwrap();
            ix.flush().unwrap();
        }
        assert_eq!(ix.tables(), 3);
        // Pruning below the third table's first height drops the first two.
        assert_eq!(ix.prune(Height(h0 + 2)).unwrap(), Height(h0 + 2));
        assert_eq!(ix.len().unwrap(), per);
    }

    /// An index written in the first layout (tables per epoch, no layout key) is
    /// removed and created again, empty, so the node re-indexes it from its records.
    #[test]
    fn an_index_in_the_old_layout_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                let bytes = lamina_primitives::encode(&header(1)).unwrap();
                meta.insert(HEADER, bytes.as_slice()).unwrap();
                meta.insert(INDEXED, 9u64.to_le_bytes().as_slice()).unwrap();
                let mut old = tx.open_table(table_def("receipts-0000000000000000")).unwrap();
                old.insert(&[1; 32], [0u8; 12].as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
        assert!(fresh);
        assert_eq!((ix.indexed().unwrap(), ix.len().unwrap(), ix.tables()), (Height(0), 0, 0));
    }

    /// A tail left frozen by a flush that panicked is written by the next flush, under
    /// what was inserted since (the newer receipt of a transaction wins), and `indexed`
    /// covers both.
    #[test]
    fn a_tail_left_by_a_panicked_flush_is_written_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (ix, _) =
            ReceiptIndex::open(&dir.path().join("index.redb"), &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
        ix.insert(Height(1), &[receipt(1), rejected(2, 0)]).unwrap();
        {
            // What a flush that panicked in `write_tail` leaves behind.
            let mut b = lock(&ix.buffer);
            let t = Arc::new(std::mem::take(&mut b.current));
            b.frozen = Some(t);
        }
        assert_eq!(ix.get::<LedgerFailure>(&receipt(1).tx_id).unwrap().unwrap().height, Height(1), "still seen");
        ix.insert(Height(2), &[receipt(2), receipt(3)]).unwrap();
        ix.sync().unwrap();
        assert_eq!(ix.indexed().unwrap(), Height(2));
        assert_eq!(ix.len().unwrap(), 3);
        let got = |i: u8| ix.get::<LedgerFailure>(&receipt(i).tx_id).unwrap().unwrap();
        assert_eq!((got(1).height, got(2).height, got(2).receipt), (Height(1), Height(2), receipt(2)));
        assert!(lock(&ix.buffer).frozen.is_none());
    }

    /// A file redb cannot read (here: not a redb file at all) is kept aside and the
    /// index starts again empty, to be rebuilt from the records; a second one is kept
    /// beside the first.
    #[test]
    fn an_unreadable_index_is_set_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        for n in 0..2 {
            std::fs::write(&path, vec![0xAB; 8192]).unwrap();
            let (ix, fresh) = ReceiptIndex::open(&path, &header(1), 1 << 20, EPOCH, FLUSH_RECEIPTS).unwrap();
            assert!(fresh);
            assert_eq!((ix.indexed().unwrap(), ix.len().unwrap()), (Height(0), 0));
            drop(ix);
            let aside = dir.path().join(format!("index.redb.unreadable-{n}"));
            assert_eq!(std::fs::read(&aside).unwrap(), vec![0xAB; 8192]);
        }
    }

    /// The pruning plan: every table whose heights are all below the bound goes (the
    /// newest holds heights up to `indexed`); nothing above `indexed` is declared
    /// pruned; the bound never moves back.
    #[test]
    fn plan_drops_whole_tables_and_never_the_tail() {
        let t: BTreeSet<u64> = [1, 100, 300].into_iter().collect();
        let (e, ix) = (1_000, Height(350));
        assert_eq!(plan(&t, e, Height(50), 1, ix), (vec![], 1));
        assert_eq!(plan(&t, e, Height(100), 1, ix), (vec![1], 100));
        assert_eq!(plan(&t, e, Height(299), 1, ix), (vec![1], 100));
        assert_eq!(plan(&t, e, Height(350), 1, ix), (vec![1, 100], 300), "the newest holds 350");
        assert_eq!(plan(&t, e, Height(350), 320, ix), (vec![1, 100], 320), "never backwards");
        assert_eq!(plan(&t, e, Height(351), 1, ix), (vec![1, 100, 300], 351));
        assert_eq!(plan(&t, e, Height(1_000), 1, ix), (vec![1, 100, 300], 351), "not past indexed");
        assert_eq!(plan(&BTreeSet::new(), e, Height(1_000), 7, ix), (vec![], 351));
        assert_eq!(plan(&BTreeSet::new(), e, Height(200), 7, ix), (vec![], 200));
        assert_eq!(plan(&BTreeSet::new(), e, Height(5), 7, ix), (vec![], 7));
        let late: BTreeSet<u64> = [500].into_iter().collect();
        assert_eq!(plan(&late, e, Height(200), 1, Height(600)), (vec![], 200), "at most the bound");
        // A chain that went quiet: receipts at 10 only, a million empty heights since.
        // The table's heights end at 10 + epoch, so it goes; retained from the bound.
        let quiet: BTreeSet<u64> = [10].into_iter().collect();
        let tip = Height(1_000_000);
        assert_eq!(plan(&quiet, 4096, Height(900_000), 10, tip), (vec![10], 900_000));
        assert_eq!(plan(&quiet, 4096, Height(4_106), 10, tip), (vec![10], 4_106));
        assert_eq!(plan(&quiet, 4096, Height(4_105), 10, tip), (vec![], 10));
    }
}
