//! The storage seam: what the log needs from a filesystem, with the real implementation.
//!
//! [`Log`](crate::Log) touches the disk only through [`Storage`] and [`StorageFile`].
//! [`FsStorage`] is the production implementation (explicit `pwrite` + `fdatasync` for
//! writes, a read-only memmap2 mapping for reads, `flock`, 0600 files, directory fsync);
//! [`MemStorage`](crate::mem::MemStorage) is an in-memory one that injects torn writes,
//! lost unsynced writes and failed syncs, for tests and simulation.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};

/// A stable, read-only view of a whole segment file.
///
/// Contract (relied on for soundness): the log only asks for ranges that were completely
/// written before the request (happens-before through the log's own locks), and never
/// writes a range while a slice of it obtained here is alive (records are written once;
/// recovery zeroes a discarded tail only after dropping every slice of it). An implementation must return bytes that
/// stay unchanged and valid for as long as the view lives, even after the file is removed.
pub trait ReadView: Send + Sync + 'static {
    /// The bytes in `offset..offset + len`, or `None` if the range is outside the view.
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]>;
    /// Length of the view (the file's length when it was mapped).
    fn len(&self) -> usize;
    /// True if the view is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One open segment file.
pub trait StorageFile: Send + Sync + 'static {
    /// Current size of the file in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Writes all of `buf` at `offset`. Durable only after [`StorageFile::sync_data`].
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`). An error is fatal to the
    /// caller: the log never retries a failed sync.
    fn sync_data(&self) -> io::Result<()>;
    /// Extends the file to `len` bytes (never shrinks it) and makes the new length durable.
    fn grow(&self, len: u64) -> io::Result<()>;
    /// A read view of the first `size()` bytes.
    fn view(&self) -> io::Result<Arc<dyn ReadView>>;
}

/// A directory of segment files named by a `u64` id.
pub trait Storage: Send + Sync + 'static {
    /// The file type.
    type File: StorageFile;
    /// A human-readable location, for errors and logs.
    fn location(&self) -> String;
    /// Ids of all complete segments, ascending. Leftovers of interrupted creations are
    /// removed.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// Creates segment `id` atomically and durably: on return a file of `len` bytes
    /// exists, starting with `header` (the rest zero), and its name and contents survive
    /// a crash; after a crash during the call, either the complete file or nothing is
    /// there.
    fn create(&self, id: u64, len: u64, header: &[u8]) -> io::Result<Self::File>;
    /// Opens existing segment `id` for reading and writing.
    fn open(&self, id: u64) -> io::Result<Self::File>;
    /// Removes the segments `ids` (in the order given) and makes the removal durable.
    fn remove(&self, ids: &[u64]) -> io::Result<()>;
}

/// The production storage: one directory, one file per segment.
///
/// Opening takes an exclusive lock (`flock` on Linux) on `<dir>/LOCK`, held until the value is dropped,
/// so two processes (or two logs in one process) can never open the same directory.
/// Files are created with mode 0600 and the directory with 0700.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    dir_handle: File,
    _lock: File,
}

const SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".seg.tmp";

impl FsStorage {
    /// Opens (creating if needed) the log directory `dir` and locks it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(Error::io("create log directory"))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("LOCK"))
            .map_err(Error::io("open lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir }),
            Err(fs::TryLockError::Error(e)) => return Err(Error::Io { op: "lock log directory", source: e }),
        }
        let dir_handle = File::open(&dir).map_err(Error::io("open log directory"))?;
        Ok(FsStorage { dir, dir_handle, _lock: lock })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of segment `id`.
    pub fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}{SUFFIX}"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.dir_handle.sync_all()
    }
}

impl Storage for FsStorage {
    type File = FsFile;

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn list(&self) -> io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut removed = false;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TMP_SUFFIX) {
                // An interrupted `create`: the segment never existed.
                fs::remove_file(entry.path())?;
                removed = true;
            } else if let Some(stem) = name.strip_suffix(SUFFIX)
                && stem.len() == 20
                && stem.bytes().all(|b| b.is_ascii_digit())
                && let Ok(id) = stem.parse::<u64>()
            {
                ids.push(id);
            }
        }
        if removed {
            self.sync_dir()?;
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn create(&self, id: u64, len: u64, header: &[u8]) -> io::Result<FsFile> {
        let tmp = self.dir.join(format!("{id:020}{TMP_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all_at(header, 0)?;
        preallocate(&file, len)?;
        file.sync_all()?;
        fs::rename(&tmp, self.segment_path(id))?;
        self.sync_dir()?;
        Ok(FsFile { file })
    }

    fn open(&self, id: u64) -> io::Result<FsFile> {
        let file = OpenOptions::new().read(true).write(true).open(self.segment_path(id))?;
        Ok(FsFile { file })
    }

    fn remove(&self, ids: &[u64]) -> io::Result<()> {
        for &id in ids {
            fs::remove_file(self.segment_path(id))?;
        }
        self.sync_dir()
    }
}

/// Reserves `len` bytes of disk for `file` (so later writes cannot fail for lack of
/// space) and sets its length; falls back to `set_len` where `fallocate` is unsupported.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let current = file.metadata()?.len();
    if len <= current {
        return Ok(());
    }
    let Ok(off_len) = libc::off_t::try_from(len) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "segment length overflows off_t"));
    };
    // SAFETY: fallocate on a valid, owned descriptor; no memory is involved.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) { file.set_len(len) } else { Err(e) }
}

/// A segment file on disk.
#[derive(Debug)]
pub struct FsFile {
    file: File,
}

impl StorageFile for FsFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn grow(&self, len: u64) -> io::Result<()> {
        preallocate(&self.file, len)?;
        self.file.sync_all()
    }

    fn view(&self) -> io::Result<Arc<dyn ReadView>> {
        let len = usize::try_from(self.size()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large to map"))?;
        if len == 0 {
            return Ok(Arc::new(EmptyView));
        }
        // A shared, read-only mapping: it sees our own `pwrite`s through the page cache
        // (Linux has a unified page cache), and we never write through it.
        let map = MmapOptions::new().len(len).map_raw_read_only(&self.file)?;
        Ok(Arc::new(MmapView { map }))
    }
}

struct EmptyView;

impl ReadView for EmptyView {
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        (offset == 0 && len == 0).then_some(&[][..])
    }
    fn len(&self) -> usize {
        0
    }
}

/// A read-only shared mapping of a segment file.
///
/// `MmapRaw` never hands out a slice of the whole file, so the only references that
/// exist are to ranges the log has finished writing (see [`ReadView`]). The file is
/// never shrunk while mapped (the log only grows files and zeroes bytes it discards), so
/// no access past the end of the file (SIGBUS) can happen through the log. Another
/// process truncating the file is excluded by the directory lock; a media error while
/// reading a mapped page still raises SIGBUS, as with any mmap reader.
struct MmapView {
    map: MmapRaw,
}

impl ReadView for MmapView {
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        // SAFETY: the range is inside the live mapping (checked above), the mapping lives
        // as long as `self`, and by the `ReadView` contract the log only requests ranges
        // whose bytes were written before and are never written again while mapped.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) })
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}
