//! The DA node's column store: squares' headers and the node's columns in a
//! `lamina-store` log, with an in-memory index rebuilt at open.
//!
//! Records (rkyv, decoded through `lamina_primitives::codec` on every read, since disk
//! bytes are untrusted):
//! * `Square`: data root, arrival time, the signed commitment and the header; written
//!   once per square, before its columns;
//! * `Column`: data root, column index, the column's bytes;
//! * `Owner`: the key whose store brought the square here;
//! * `Ordered`: the log heights at which held squares were ordered, and how far the node
//!   has followed the log (written by the node's log follower; see [`ColumnStore::mark_ordered`]).
//!
//! A square's columns are durable (`fdatasync`) before the node signs for them. The log
//! is append-only in arrival order, so retention prunes a prefix: every segment below
//! the first record of the oldest retained square. Expired squares leave the index at
//! once, even when their records share a segment with younger ones. A square's
//! `Ordered` record always comes after its `Square` record, so it survives as long as
//! the square does.
//!
//! Retention ([`ColumnStore::prune`]): a square the log ordered at height `h` is kept
//! until the followed tip passes `h + retain_heights`; a square never seen ordered (a
//! dispersal that no block carried, or a node that follows no log) is kept for the
//! wall-clock retention.
//!
//! All methods block on disk I/O; async callers use `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use lamina_da_core::{DaHeader, SquareRoots};
use lamina_primitives::codec::{self, Wire};
use lamina_primitives::{DataCommitment, Digest, PublicKey};
use lamina_store::{Log, Seq};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::protocol::ColumnData;

pub use record::{ArchivedStoredRecord, StoredRecord};

// The archived twin rkyv derives has undocumented fields; the record itself is documented.
#[allow(missing_docs)]
mod record {
    use lamina_da_core::DaHeader;
    use lamina_primitives::{DataCommitment, Digest, PublicKey};

    /// One record of the column store (public so that its decoder can be fuzzed).
    #[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum StoredRecord {
        /// A square's verified header, when its first columns arrive.
        Square {
            /// The square.
            data_root: Digest,
            /// Wall-clock arrival (ms since the epoch), for retention.
            received_at_ms: u64,
            /// What DA nodes attest.
            commitment: DataCommitment,
            /// The verified header.
            header: DaHeader,
        },
        /// One stored column.
        Column {
            /// The square.
            data_root: Digest,
            /// The column index.
            index: u32,
            /// The column's cells.
            bytes: Vec<u8>,
        },
        /// The key whose store brought the square here (written after its `Square`
        /// record): the disperser, and for a client key the one its bytes count against.
        Owner {
            /// The square.
            data_root: Digest,
            /// The storing key.
            key: PublicKey,
        },
        /// Squares held here that the log ordered, each with the height of the block
        /// that carried it, and the highest height followed when this was written (the
        /// follower resumes after it).
        Ordered {
            /// Last log height followed.
            followed: u64,
            /// (height, data root) for held squares ordered since the previous record.
            squares: Vec<(u64, Digest)>,
        },
    }
}

impl Wire for StoredRecord {
    const NAME: &'static str = "StoredRecord";
    const MAX_SIZE: usize = <DaHeader as Wire>::MAX_SIZE + <DataCommitment as Wire>::MAX_SIZE + (2 << 20);
}

/// What the node knows about one square.
#[derive(Clone, Debug)]
pub struct SquareInfo {
    /// The verified header.
    pub header: Arc<DaHeader>,
    /// Its roots (what proofs carry).
    pub roots: SquareRoots,
    /// The commitment the node was asked to sign.
    pub commitment: DataCommitment,
    /// Arrival time, ms since the Unix epoch.
    pub received_at_ms: u64,
    first_seq: Seq,
    columns: BTreeMap<u32, Seq>,
    /// The key whose store brought it here (the disperser; for a client key, the one
    /// its bytes count against). `None` for squares stored without one.
    pub owner: Option<PublicKey>,
    /// Column bytes held for it.
    pub bytes: u64,
    /// Log height of the block that ordered it, once the node's follower saw it.
    pub ordered_at: Option<u64>,
}

impl SquareInfo {
    /// Columns held.
    pub fn columns(&self) -> Vec<u32> {
        self.columns.keys().copied().collect()
    }

    /// True if column `c` is held.
    pub fn holds(&self, c: u32) -> bool {
        self.columns.contains_key(&c)
    }
}

/// What opening the store found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Squares indexed.
    pub squares: usize,
    /// Columns indexed.
    pub columns: usize,
    /// Column records whose square record was already pruned (ignored).
    pub orphans: usize,
    /// Highest log height the follower had recorded (0: none).
    pub followed: u64,
}

/// Most (height, root) pairs in one `Ordered` record (36 bytes each, well under the
/// record bound).
pub const MAX_ORDERED_PER_RECORD: usize = 16_384;

/// The column store (see the module docs).
pub struct ColumnStore {
    log: Log,
    index: Mutex<HashMap<Digest, SquareInfo>>,
    /// Highest log height the follower recorded (0: none).
    followed: std::sync::atomic::AtomicU64,
    /// The last `Ordered` record: pruning keeps it, so that `followed` survives a
    /// reopen even when every square has expired.
    last_mark: Mutex<Option<Seq>>,
    /// Bytes held per storing key (the sum of its squares' `bytes`); locked after
    /// `index`.
    usage: Mutex<HashMap<PublicKey, u64>>,
}

impl std::fmt::Debug for ColumnStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnStore").field("squares", &self.index.lock().len()).finish()
    }
}

fn bad(seq: Seq, e: impl std::fmt::Display) -> Error {
    Error::BadRecord { seq, reason: e.to_string() }
}

impl ColumnStore {
    /// Opens (or creates) the store in `dir` and rebuilds the index from its records.
    pub fn open(dir: &Path, config: lamina_store::Config) -> Result<(Self, OpenReport)> {
        let log = Log::open(dir, config)?;
        let mut index: HashMap<Digest, SquareInfo> = HashMap::new();
        let mut report = OpenReport::default();
        let mut followed = 0u64;
        let mut last_mark = None;
        for rec in log.iter_from(log.first_seq()) {
            let rec = rec?;
            let seq = rec.seq();
            match codec::decode::<StoredRecord>(&rec).map_err(|e| bad(seq, e))? {
                StoredRecord::Square { data_root, received_at_ms, commitment, header } => {
                    let roots = header.verify(&data_root).map_err(|e| bad(seq, e))?;
                    index.entry(data_root).or_insert(SquareInfo {
                        header: Arc::new(header),
                        roots,
                        commitment,
                        received_at_ms,
                        first_seq: seq,
                        columns: BTreeMap::new(),
                        owner: None,
                        bytes: 0,
                        ordered_at: None,
                    });
                    report.squares = index.len();
                }
                StoredRecord::Column { data_root, index: c, bytes } => match index.get_mut(&data_root) {
                    Some(info) => {
                        if info.columns.insert(c, seq).is_none() {
                            report.columns += 1;
                            info.bytes += bytes.len() as u64;
                        }
                    }
                    None => report.orphans += 1,
                },
                StoredRecord::Owner { data_root, key } => {
                    if let Some(info) = index.get_mut(&data_root) {
                        info.owner.get_or_insert(key);
                    }
                }
                StoredRecord::Ordered { followed: f, squares } => {
                    if squares.len() > MAX_ORDERED_PER_RECORD {
                        return Err(bad(seq, "ordered record over its bound"));
                    }
                    followed = followed.max(f);
                    last_mark = Some(seq);
                    for (h, root) in squares {
                        if let Some(info) = index.get_mut(&root) {
                            info.ordered_at = Some(info.ordered_at.map_or(h, |o| o.max(h)));
                        }
                    }
                }
            }
        }
        let mut usage: HashMap<PublicKey, u64> = HashMap::new();
        for info in index.values() {
            if let Some(o) = info.owner {
                *usage.entry(o).or_default() += info.bytes;
            }
        }
        report.followed = followed;
        let store = ColumnStore {
            log,
            index: Mutex::new(index),
            followed: std::sync::atomic::AtomicU64::new(followed),
            last_mark: Mutex::new(last_mark),
            usage: Mutex::new(usage),
        };
        Ok((store, report))
    }

    /// The square's info, if held.
    pub fn square(&self, data_root: &Digest) -> Option<SquareInfo> {
        self.index.lock().get(data_root).cloned()
    }

    /// Number of squares held.
    pub fn len(&self) -> usize {
        self.index.lock().len()
    }

    /// True when no square is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held for the squares `key` stored first.
    pub fn usage(&self, client: &PublicKey) -> u64 {
        self.usage.lock().get(client).copied().unwrap_or(0)
    }

    /// Stores a square's header (once) and those of `columns` not yet held, durably,
    /// and returns the columns now held. The caller has verified everything.
    /// `storer`: the key storing, and its quota when it is a client (not a genesis
    /// node). A square records the key that stored it first (its disperser) and its
    /// bytes count against that key; a store by a client that would take it past its
    /// quota is refused ([`Error::QuotaExceeded`]) before anything is written.
    pub fn insert(
        &self,
        commitment: &DataCommitment,
        header: &DaHeader,
        roots: SquareRoots,
        columns: &[ColumnData],
        now_ms: u64,
        storer: Option<(PublicKey, Option<u64>)>,
    ) -> Result<Vec<u32>> {
        let data_root = commitment.data_root;
        let (known, owner) = match self.index.lock().get(&data_root) {
            Some(i) => (Some(i.columns.keys().copied().collect::<Vec<_>>()), i.owner),
            None => (None, storer.map(|(k, _)| k)),
        };
        let client = storer.and_then(|(k, q)| q.map(|q| (k, q)));
        let mut fresh_cols: Vec<u32> = Vec::new();
        let mut fresh = 0u64;
        for c in columns {
            if !known.as_ref().is_some_and(|k| k.contains(&c.index)) && !fresh_cols.contains(&c.index) {
                fresh_cols.push(c.index);
                fresh += c.bytes.len() as u64;
            }
        }
        if let (Some(o), Some((k, quota))) = (owner, client)
            && o == k
        {
            let used = self.usage(&o);
            if used.saturating_add(fresh) > quota {
                return Err(Error::QuotaExceeded { client: o, used, wanted: fresh, quota });
            }
        }
        let mut appended: Vec<(u32, Seq)> = Vec::new();
        let mut square_seq = None;
        if known.is_none() {
            let rec = StoredRecord::Square {
                data_root,
                received_at_ms: now_ms,
                commitment: commitment.clone(),
                header: header.clone(),
            };
            square_seq = Some(self.log.append(&codec::encode(&rec)?)?);
            if let Some(key) = owner {
                self.log.append(&codec::encode(&StoredRecord::Owner { data_root, key })?)?;
            }
        }
        let known = known.unwrap_or_default();
        for col in columns {
            if known.contains(&col.index) || appended.iter().any(|(c, _)| *c == col.index) {
                continue;
            }
            let rec = StoredRecord::Column { data_root, index: col.index, bytes: col.bytes.clone() };
            appended.push((col.index, self.log.append(&codec::encode(&rec)?)?));
        }
        if square_seq.is_some() || !appended.is_empty() {
            self.log.sync()?;
        }
        let mut index = self.index.lock();
        let info = index.entry(data_root).or_insert_with(|| SquareInfo {
            header: Arc::new(header.clone()),
            roots,
            commitment: commitment.clone(),
            received_at_ms: now_ms,
            first_seq: square_seq.unwrap_or(0),
            columns: BTreeMap::new(),
            owner,
            bytes: 0,
            ordered_at: None,
        });
        let col_bytes = |c: u32| columns.iter().find(|d| d.index == c).map_or(0, |d| d.bytes.len() as u64);
        let mut added = 0;
        for (c, seq) in appended {
            if info.columns.insert(c, seq).is_none() {
                added += col_bytes(c);
            }
        }
        info.bytes += added;
        if let Some(o) = info.owner
            && added > 0
        {
            *self.usage.lock().entry(o).or_default() += added;
        }
        Ok(info.columns.keys().copied().collect())
    }

    /// Runs `f` on column `c` of the square, read zero-copy from the log.
    pub fn with_column<R>(&self, data_root: &Digest, c: u32, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let Some(seq) = self.index.lock().get(data_root).and_then(|i| i.columns.get(&c).copied()) else {
            return Ok(None);
        };
        let Some(rec) = self.log.read(seq)? else { return Ok(None) };
        let archived = codec::access::<StoredRecord>(&rec).map_err(|e| bad(seq, e))?;
        match archived {
            ArchivedStoredRecord::Column { data_root: d, index, bytes }
                if d.0 == data_root.0 && index.to_native() == c =>
            {
                Ok(Some(f(bytes.as_slice())))
            }
            _ => Err(bad(seq, "index points at another record")),
        }
    }

    /// Highest log height the follower recorded (0: none); the follower resumes after it.
    pub fn followed(&self) -> u64 {
        self.followed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that the log was followed through height `followed` and that each
    /// `(height, data root)` in `ordered` was carried by the block at that height.
    /// Roots not held here are skipped (a square that arrives after its block was
    /// followed is never marked, and falls to the wall-clock retention). Not synced:
    /// the next column store syncs it, and a crash only makes the follower read again
    /// from an earlier height (marking is idempotent). Heights at or below what was
    /// already followed are accepted (re-reads after a crash).
    pub fn mark_ordered(&self, followed: u64, ordered: &[(u64, Digest)]) -> Result<()> {
        let held: Vec<(u64, Digest)> = {
            let index = self.index.lock();
            ordered.iter().filter(|(_, r)| index.contains_key(r)).copied().collect()
        };
        if held.is_empty() && followed <= self.followed() {
            return Ok(());
        }
        let mut chunks: Vec<&[(u64, Digest)]> = held.chunks(MAX_ORDERED_PER_RECORD).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let rec = StoredRecord::Ordered { followed, squares: chunk.to_vec() };
            let seq = self.log.append(&codec::encode(&rec)?)?;
            *self.last_mark.lock() = Some(seq);
        }
        self.log.sync()?;
        let mut index = self.index.lock();
        for (h, root) in held {
            if let Some(info) = index.get_mut(&root) {
                info.ordered_at = Some(info.ordered_at.map_or(h, |o| o.max(h)));
            }
        }
        self.followed.fetch_max(followed, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Drops expired squares from the index and deletes the log segments that hold only
    /// such squares. A square is expired when it was ordered at a height below
    /// `below_height`, or, never seen ordered, arrived before `cutoff_ms`. Returns the
    /// squares dropped.
    pub fn prune(&self, cutoff_ms: u64, below_height: u64) -> Result<usize> {
        let (dropped, keep_from) = {
            let mut index = self.index.lock();
            let before = index.len();
            let mut usage = self.usage.lock();
            index.retain(|_, i| {
                let keep = match i.ordered_at {
                    Some(h) => h >= below_height,
                    None => i.received_at_ms >= cutoff_ms,
                };
                if !keep && let Some(o) = i.owner {
                    let left = usage.get(&o).copied().unwrap_or(0).saturating_sub(i.bytes);
                    if left == 0 {
                        usage.remove(&o);
                    } else {
                        usage.insert(o, left);
                    }
                }
                keep
            });
            drop(usage);
            let oldest = index.values().map(|i| i.first_seq).min().unwrap_or_else(|| self.log.next_seq());
            let keep_from = match *self.last_mark.lock() {
                Some(mark) => oldest.min(mark),
                None => oldest,
            };
            (before - index.len(), keep_from)
        };
        if dropped > 0 {
            self.log.prune_below(keep_from)?;
        }
        Ok(dropped)
    }

    /// Makes everything appended durable and closes the log.
    pub fn close(self) -> Result<()> {
        self.log.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_da_core::{CodecId, CommittedSquare, Parallelism};
    use lamina_interfaces::Blob;
    use lamina_primitives::Namespace;

    fn square(seed: u8) -> CommittedSquare {
        let blobs = vec![Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 1]), data: vec![seed; 9000] }];
        CommittedSquare::build(&blobs, CodecId::Leopard16, Parallelism::Sequential).unwrap()
    }

    fn cols(sq: &CommittedSquare, which: &[u32]) -> Vec<ColumnData> {
        which.iter().map(|&c| ColumnData { index: c, bytes: sq.eds().column(c as usize) }).collect()
    }

    fn small() -> lamina_store::Config {
        lamina_store::Config { segment_size: 1 << 20, max_record_size: 512 << 10, ..Default::default() }
    }

    #[test]
    fn columns_survive_reopen_and_retention_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let a = square(1);
        let b = square(2);
        {
            let (store, report) = ColumnStore::open(dir.path(), small()).unwrap();
            assert_eq!(report, OpenReport::default());
            let held = store.insert(&a.commitment(), a.header(), *a.roots(), &cols(&a, &[0, 3]), 1_000, None).unwrap();
            assert_eq!(held, vec![0, 3]);
            // Idempotent, and later batches add to the set.
            let held = store.insert(&a.commitment(), a.header(), *a.roots(), &cols(&a, &[3, 5]), 1_500, None).unwrap();
            assert_eq!(held, vec![0, 3, 5]);
            store.insert(&b.commitment(), b.header(), *b.roots(), &cols(&b, &[1]), 5_000, None).unwrap();
            store.close().unwrap();
        }
        let (store, report) = ColumnStore::open(dir.path(), small()).unwrap();
        assert_eq!((report.squares, report.columns), (2, 4));
        let info = store.square(&a.data_root()).unwrap();
        assert_eq!(info.columns(), vec![0, 3, 5]);
        assert_eq!(info.received_at_ms, 1_000);
        let got = store.with_column(&a.data_root(), 5, <[u8]>::to_vec).unwrap().unwrap();
        assert_eq!(got, a.eds().column(5));
        assert_eq!(store.with_column(&a.data_root(), 6, |_| ()).unwrap(), None);
        assert_eq!(store.prune(2_000, 0).unwrap(), 1);
        assert!(store.square(&a.data_root()).is_none());
        assert!(store.square(&b.data_root()).is_some());
        assert_eq!(store.with_column(&b.data_root(), 1, <[u8]>::to_vec).unwrap().unwrap(), b.eds().column(1));
    }

    #[test]
    fn storers_are_recorded_and_a_client_quota_holds_across_reopen_and_frees_with_retention() {
        let dir = tempfile::tempdir().unwrap();
        let client = lamina_primitives::Keypair::for_testing(77).public();
        let other = lamina_primitives::Keypair::for_testing(78).public();
        let node = lamina_primitives::Keypair::for_testing(79).public();
        let (a, b, c) = (square(1), square(2), square(3));
        let col = a.eds().column(0).len() as u64;
        // Room for three columns.
        let quota = 3 * col;
        let q = |k| Some((k, Some(quota)));
        {
            let (store, _) = ColumnStore::open(dir.path(), small()).unwrap();
            store.insert(&a.commitment(), a.header(), *a.roots(), &cols(&a, &[0, 1]), 1_000, q(client)).unwrap();
            assert_eq!(store.usage(&client), 2 * col);
            // Columns already held cost nothing; a node's store of another square is not
            // counted against anyone.
            store.insert(&a.commitment(), a.header(), *a.roots(), &cols(&a, &[1]), 1_000, q(client)).unwrap();
            store
                .insert(&c.commitment(), c.header(), *c.roots(), &cols(&c, &[0, 1, 2, 3]), 1_000, Some((node, None)))
                .unwrap();
            assert_eq!(store.usage(&client), 2 * col);
            // Every square records who stored it first (its disperser).
            assert_eq!(store.square(&c.data_root()).unwrap().owner, Some(node));
            assert_eq!(store.square(&a.data_root()).unwrap().owner, Some(client));
            // Two more columns would pass the quota: refused, nothing written.
            let err = store
                .insert(&b.commitment(), b.header(), *b.roots(), &cols(&b, &[0, 1]), 3_000, q(client))
                .unwrap_err();
            assert!(
                matches!(err, Error::QuotaExceeded { used, wanted, .. } if used == 2 * col && wanted == 2 * col),
                "{err}"
            );
            assert!(store.square(&b.data_root()).is_none());
            // Another client has its own quota.
            store.insert(&b.commitment(), b.header(), *b.roots(), &cols(&b, &[0, 1]), 3_000, q(other)).unwrap();
            store.close().unwrap();
        }
        // Usage and storers are rebuilt from the records.
        let (store, _) = ColumnStore::open(dir.path(), small()).unwrap();
        assert_eq!(store.square(&c.data_root()).unwrap().owner, Some(node));
        assert_eq!((store.usage(&client), store.usage(&other)), (2 * col, 2 * col));
        // Retention frees the client's space.
        assert_eq!(store.prune(2_000, 0).unwrap(), 2);
        assert_eq!(store.usage(&client), 0);
        let d = square(4);
        store.insert(&d.commitment(), d.header(), *d.roots(), &cols(&d, &[0, 1, 2]), 4_000, q(client)).unwrap();
        assert_eq!(store.usage(&client), 3 * col);
        let e = square(5);
        store.insert(&e.commitment(), e.header(), *e.roots(), &cols(&e, &[0]), 4_000, q(client)).unwrap_err();
    }
}
