//! An in-memory [`Storage`] that models a disk with a volatile cache, for fault injection.
//!
//! Every file keeps two images: what the process sees (the "page cache") and what would
//! survive a power loss (the "disk"). A write changes the first image at once and is
//! queued as pending; [`StorageFile::sync_data`] moves the pending writes of that file to
//! the disk image. [`MemStorage::crash`] returns the storage as a restarted machine would
//! find it: the disk images, plus whatever each pending write left behind according to a
//! [`CrashMode`], in the style of FoundationDB's `AsyncFileNonDurable` (pages of unsynced
//! writes written, dropped or torn per 512-byte sector).
//!
//! [`Faults`] makes syncs or writes fail with `EIO` from a chosen operation on, so tests
//! can check that the log fails stop and never acknowledges after a failed sync.
//!
//! Directory operations (`create`, `remove`) are atomic and durable at once, as
//! [`FsStorage`](crate::FsStorage) makes them with rename + directory fsync.
//! There is no lock: two logs on one `MemStorage` are the caller's mistake.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::storage::{ReadView, Storage, StorageFile};

/// What happens to writes that were not yet synced when the machine crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every write reached the disk (a process crash: the page cache survives).
    KeepAll,
    /// No unsynced write reached the disk.
    DropAll,
    /// Unsynced writes reached the disk in order up to a random point, the write at that
    /// point torn at a random 512-byte sector boundary.
    TornPrefix,
    /// Each 512-byte sector of each unsynced write independently reached the disk, did
    /// not, or was replaced by garbage (out-of-order write-back plus torn sectors).
    RandomSectors,
}

/// Injected failures, counted over the whole storage (every file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// The n-th `sync_data` call (0-based) and every later one fail with `EIO`, and
    /// persist nothing.
    pub fail_sync_from: Option<u64>,
    /// The n-th `write_at` call (0-based) and every later one fail with `EIO`; the failing
    /// write leaves a random prefix of its sectors in the page cache.
    pub fail_write_from: Option<u64>,
}

const SECTOR: usize = 512;

/// A tiny deterministic generator (splitmix64), so crashes replay from a seed without a
/// dependency.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// A fixed-size byte buffer that can be written through a shared reference.
///
/// Writes go only to ranges no reader holds a slice of (the [`ReadView`] contract that
/// the log follows); the buffer is never reallocated, so slices stay valid.
struct Buf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is a plain heap allocation owned by `Buf`; concurrent access is
// governed by the `ReadView` contract (disjoint ranges for writers and readers) and by
// the `MemFile` mutex for writers.
unsafe impl Send for Buf {}
// SAFETY: as above.
unsafe impl Sync for Buf {}

impl Buf {
    fn new(init: &[u8]) -> Buf {
        let boxed: Box<[u8]> = init.to_vec().into_boxed_slice();
        let len = boxed.len();
        let ptr = Box::into_raw(boxed) as *mut u8;
        Buf { ptr, len }
    }
    /// Copies `data` to `offset`. Caller holds the file's write mutex.
    fn write(&self, offset: usize, data: &[u8]) {
        debug_assert!(offset + data.len() <= self.len);
        // SAFETY: in bounds (checked by the caller against `len`); no slice of this
        // range is alive (ReadView contract); writers are serialized by the file mutex.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) }
    }
    fn snapshot(&self) -> Vec<u8> {
        // SAFETY: whole buffer, read while the file mutex is held, so no write races.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice of this length.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

impl ReadView for Buf {
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds; by the ReadView contract the range is not written while
        // the returned slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) })
    }
    fn len(&self) -> usize {
        self.len
    }
}

struct FileState {
    /// What survives a crash.
    disk: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(u64, Vec<u8>)>,
}

/// A file of a [`MemStorage`].
pub struct MemFile {
    /// What the process sees. Replaced (never resized in place) when the file grows.
    cache: Mutex<Arc<Buf>>,
    state: Mutex<FileState>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemFile").field("len", &self.cache.lock().len).finish()
    }
}

struct Shared {
    faults: Mutex<Faults>,
    syncs: AtomicU64,
    writes: AtomicU64,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO on {what}"))
}

impl StorageFile for MemFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.cache.lock().len as u64)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let n = self.shared.writes.fetch_add(1, Ordering::SeqCst);
        let cache = self.cache.lock();
        let mut st = self.state.lock();
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset overflow"))?;
        if start.checked_add(buf.len()).is_none_or(|end| end > cache.len) {
            // A preallocated file is never written past its end by the log.
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write past the end of a MemFile"));
        }
        if self.shared.faults.lock().fail_write_from.is_some_and(|from| n >= from) {
            // A failed write may still have changed part of the range.
            let keep = (SplitMix(n).below((buf.len() / SECTOR + 1) as u64) as usize * SECTOR).min(buf.len());
            cache.write(start, &buf[..keep]);
            st.pending.push((offset, buf[..keep].to_vec()));
            return Err(eio("write"));
        }
        cache.write(start, buf);
        st.pending.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let n = self.shared.syncs.fetch_add(1, Ordering::SeqCst);
        if self.shared.faults.lock().fail_sync_from.is_some_and(|from| n >= from) {
            return Err(eio("sync"));
        }
        let mut st = self.state.lock();
        let pending = std::mem::take(&mut st.pending);
        for (off, data) in pending {
            apply(&mut st.disk, off as usize, &data);
        }
        Ok(())
    }

    fn grow(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length overflow"))?;
        let mut cache = self.cache.lock();
        if len <= cache.len {
            return Ok(());
        }
        let mut bytes = cache.snapshot();
        bytes.resize(len, 0);
        *cache = Arc::new(Buf::new(&bytes));
        // Growth is made durable at once (the real one fsyncs).
        let mut st = self.state.lock();
        if st.disk.len() < len {
            st.disk.resize(len, 0);
        }
        Ok(())
    }

    fn view(&self) -> io::Result<Arc<dyn ReadView>> {
        Ok(self.cache.lock().clone())
    }
}

fn apply(disk: &mut Vec<u8>, off: usize, data: &[u8]) {
    if disk.len() < off + data.len() {
        disk.resize(off + data.len(), 0);
    }
    disk[off..off + data.len()].copy_from_slice(data);
}

/// An in-memory directory of segment files with a volatile cache and injected faults.
/// Clones share the same files.
#[derive(Clone)]
pub struct MemStorage {
    files: Arc<Mutex<BTreeMap<u64, Arc<MemFile>>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStorage").field("files", &self.files.lock().keys().collect::<Vec<_>>()).finish()
    }
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStorage {
    /// An empty storage with no faults.
    pub fn new() -> Self {
        MemStorage {
            files: Arc::new(Mutex::new(BTreeMap::new())),
            shared: Arc::new(Shared {
                faults: Mutex::new(Faults::default()),
                syncs: AtomicU64::new(0),
                writes: AtomicU64::new(0),
            }),
        }
    }

    /// Sets the injected faults. Operation counters are not reset: use
    /// [`MemStorage::sync_count`] and [`MemStorage::write_count`] to aim.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock() = faults;
    }

    /// Number of `sync_data` calls so far.
    pub fn sync_count(&self) -> u64 {
        self.shared.syncs.load(Ordering::SeqCst)
    }

    /// Number of `write_at` calls so far.
    pub fn write_count(&self) -> u64 {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Ids of the files present.
    pub fn ids(&self) -> Vec<u64> {
        self.files.lock().keys().copied().collect()
    }

    /// What the process currently sees in file `id` (cache image), if it exists.
    pub fn contents(&self, id: u64) -> Option<Vec<u8>> {
        self.files.lock().get(&id).map(|f| f.cache.lock().snapshot())
    }

    /// Replaces file `id` (cache and disk image alike, nothing pending) with `bytes`, as
    /// if the disk had been changed behind the log's back. Only for a storage no log has
    /// open.
    pub fn put(&self, id: u64, bytes: &[u8]) {
        let file = self.new_file(bytes.to_vec());
        self.files.lock().insert(id, Arc::new(file));
    }

    fn new_file(&self, disk: Vec<u8>) -> MemFile {
        MemFile {
            cache: Mutex::new(Arc::new(Buf::new(&disk))),
            state: Mutex::new(FileState { disk, pending: Vec::new() }),
            shared: self.shared.clone(),
        }
    }

    /// The storage a restarted machine would find after a crash now: each file's disk
    /// image plus what `mode` lets through of its unsynced writes, chosen by `seed`. The
    /// result shares nothing with `self` and has no faults set.
    pub fn crash(&self, mode: CrashMode, seed: u64) -> MemStorage {
        let mut rng = SplitMix(seed);
        let out = MemStorage::new();
        let files = self.files.lock();
        for (&id, file) in files.iter() {
            let cache = file.cache.lock();
            let st = file.state.lock();
            let mut disk = st.disk.clone();
            match mode {
                CrashMode::KeepAll => {
                    for (off, data) in &st.pending {
                        apply(&mut disk, *off as usize, data);
                    }
                }
                CrashMode::DropAll => {}
                CrashMode::TornPrefix => {
                    let cut = rng.below(st.pending.len() as u64 + 1) as usize;
                    for (i, (off, data)) in st.pending.iter().enumerate() {
                        if i < cut {
                            apply(&mut disk, *off as usize, data);
                        } else if i == cut {
                            let sectors = data.len().div_ceil(SECTOR) as u64;
                            let keep = (rng.below(sectors + 1) as usize * SECTOR).min(data.len());
                            apply(&mut disk, *off as usize, &data[..keep]);
                        }
                    }
                }
                CrashMode::RandomSectors => {
                    for (off, data) in &st.pending {
                        for (i, chunk) in data.chunks(SECTOR).enumerate() {
                            let at = *off as usize + i * SECTOR;
                            match rng.below(3) {
                                0 => apply(&mut disk, at, chunk),
                                1 => {}
                                _ => {
                                    let garbage: Vec<u8> = (0..chunk.len()).map(|_| rng.next() as u8).collect();
                                    apply(&mut disk, at, &garbage);
                                }
                            }
                        }
                    }
                }
            }
            disk.resize(cache.len.max(disk.len()), 0);
            out.files.lock().insert(id, Arc::new(out.new_file(disk)));
        }
        out
    }
}

impl Storage for MemStorage {
    type File = Arc<MemFile>;

    fn location(&self) -> String {
        "memory".to_string()
    }

    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self.ids())
    }

    fn create(&self, id: u64, len: u64, header: &[u8]) -> io::Result<Arc<MemFile>> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length overflow"))?;
        let mut bytes = vec![0u8; len.max(header.len())];
        bytes[..header.len()].copy_from_slice(header);
        let file = Arc::new(self.new_file(bytes));
        let mut files = self.files.lock();
        if files.contains_key(&id) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("segment {id} exists")));
        }
        files.insert(id, file.clone());
        Ok(file)
    }

    fn open(&self, id: u64) -> io::Result<Arc<MemFile>> {
        self.files.lock().get(&id).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))
    }

    fn remove(&self, ids: &[u64]) -> io::Result<()> {
        let mut files = self.files.lock();
        for id in ids {
            files.remove(id);
        }
        Ok(())
    }
}

impl StorageFile for Arc<MemFile> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        (**self).sync_data()
    }
    fn grow(&self, len: u64) -> io::Result<()> {
        (**self).grow(len)
    }
    fn view(&self) -> io::Result<Arc<dyn ReadView>> {
        (**self).view()
    }
}
