//! Lamina's durable storage: a memmap2 segmented append-only log with checksums, group commit and crash recovery.
//!
//! Used by the consensus WAL, the DA node's column storage and execution's state and
//! receipt persistence. One [`Log`] is a directory of segment files holding records
//! (opaque byte strings) numbered 0, 1, 2, … ([`Seq`]).
//!
//! ```
//! use lamina_store::{Config, Log};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path(), Config { name: "example".into(), ..Config::default() })?;
//! let a = log.append(b"first")?; // buffered, readable, not yet durable
//! let b = log.append_durable(b"second")?; // group commit: durable on return (covers `a` too)
//! assert_eq!(log.durable_seq(), Some(b));
//! assert_eq!(&*log.read(a)?.expect("present"), b"first");
//! let all: Vec<_> = log.iter_from(0).collect::<Result<_, _>>()?;
//! assert_eq!(all.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the log promises
//!
//! 1. **Durable means acknowledged.** A record is durable once [`Log::sync`],
//!    [`Log::wait_durable`] or [`Log::append_durable`] covering it has returned `Ok`;
//!    [`Log::durable_seq`] tells how far that reaches. A durable record survives a process
//!    crash and a power loss (as far as the disk honours `fdatasync`), byte for byte, at
//!    the same sequence number, until it is pruned. Nothing is promised for records that
//!    were appended but not yet acknowledged: after a crash some prefix of them survives.
//! 2. **The recovered log is a prefix.** After any crash, reopening yields records
//!    `first_seq..next_seq` with no holes, each exactly as appended, and the log is
//!    appendable again at `next_seq`.
//! 3. **Damage is never silently dropped.** If a record that was acknowledged as durable
//!    is damaged or missing (bit rot, a lost or misdirected write, a segment missing
//!    between others, a segment of another log), the log reports [`Error::Corruption`]
//!    and never truncates it away: [`Log::open`] fails for damage in the active segment
//!    and in the structure of any segment; damage inside the payload of a sealed
//!    (older, fully synced) segment is reported when that record is read, or at open
//!    with [`Config::verify_sealed_on_open`]. Only a *torn tail* (bytes after the last
//!    valid record that were never acknowledged) is discarded, and the
//!    [`RecoveryReport`] says what was discarded. One narrow exception after a power
//!    loss is described under *Limits* below.
//! 4. **Fail-stop.** If a write or an fsync fails, the log acknowledges nothing more: the
//!    failed call and every later append or sync return an error. It never retries a
//!    failed fsync (after `EIO` the page cache may claim pages are clean that never
//!    reached the disk: "fsyncgate", Rebello et al., ATC'20). The process restarts and
//!    recovers from what is on disk.
//! 5. **One owner.** A directory is locked with `flock` while a log is open in it, so a
//!    second process (or a second open in this one) gets [`Error::Locked`].
//!
//! # How
//!
//! **Segments.** Records are appended to the active segment, a file of
//! [`Config::segment_size`] bytes preallocated with `fallocate` at creation. A segment is
//! created under a temporary name, written, fsynced, renamed into place and the directory
//! fsynced, so a segment file either exists complete or not at all. When a record does
//! not fit in the active segment, the log *rotates*: it fsyncs the segment, writes a
//! *sealed* watermark slot, fsyncs again and creates the next segment, whose header
//! repeats the sequence number and chain checksum where the previous one ended. A record
//! never spans segments: one larger than [`Config::max_record_size`] (at most what fits
//! in an empty segment) is rejected with [`Error::RecordTooLarge`]. [`Log::prune_below`]
//! deletes whole segments, oldest first, then fsyncs the directory. Files are mode 0600.
//!
//! **Records** carry their length, sequence number, a *durable claim* and a 128-bit
//! blake3 checksum chained to the previous record's checksum and keyed by the log's
//! random id (the format is in [`format`](mod@format)). The chain and the sequence number make a
//! misdirected write, a stale record of an older history and a record of another log
//! fail validation, not only a flipped bit.
//!
//! **Write path: explicit I/O, not a writable mapping.** Appends are framed into a buffer
//! and written with `pwrite`; durability comes from `fdatasync`. A writable mapping
//! would let the kernel write dirty pages back at any time and in any order, turn a full
//! disk or a media error into SIGBUS instead of an error, and `msync` does not persist
//! file metadata; TigerBeetle and Crotty, Leis & Pavlo (CIDR'22) argue for explicit I/O
//! for these reasons. Preallocation means a `pwrite` into a segment cannot run out of
//! space.
//!
//! **Read path: memmap2.** Every segment is mapped read-only and shared
//! (`memmap2::MmapRaw`); Linux's unified page cache makes our own `pwrite`s visible
//! through it. [`Log::read`] returns a [`Record`] that points into the mapping (zero
//! copy) and keeps it alive, so it stays valid even if the segment is pruned. Only
//! ranges that were written before are ever sliced, and a record is never rewritten, so
//! no slice observes a concurrent write. Files are never shrunk (recovery zeroes a torn
//! tail instead), so no mapped page can vanish under a reader (SIGBUS).
//!
//! **Group commit.** [`Log::append`] only buffers. [`Log::wait_durable`] makes the caller
//! the *leader* if no sync is running: it writes the buffer, issues one `fdatasync` and
//! advances the durable mark for every record appended before it, by any thread. Callers
//! that arrive while a sync runs wait and, if it did not cover them, one of them leads
//! the next. Appends continue during an fsync. Async code calls these from a blocking
//! task.
//!
//! **The durable watermark** (what recovery may not lose) is known from two sources:
//! * *Watermark slots*: each segment has two slots on their own pages. After every
//!   successful sync the log writes the new watermark to the older slot (alternating,
//!   each checksummed, so a torn slot write leaves the other intact). The slot is not
//!   fsynced by itself: the next sync persists it. After a process crash it is exact;
//!   after a power loss it may lag by one sync. [`Log::close`] makes it exact.
//! * *Claims in records*: each record carries the durable mark at the time it was
//!   appended. A valid record found after a damaged one (located through the damaged
//!   record's length field) that claims durability beyond it proves the damage is
//!   corruption, not a torn write, even when the slot lags.
//!
//! **Recovery on open** validates every record after the last known-good point
//! (checksum, chain, sequence number, bounds), never trusting a length on its own. The
//! known-good points are sealed segments: a segment's seal slot is written only after
//! the segment was fsynced, so open walks a sealed segment's record headers to rebuild
//! its index and checks that they end exactly at the seal (offset, count and last
//! checksum); payload checksums there are verified on read
//! ([`Config::verify_sealed_on_open`] verifies them at open too). A non-final segment
//! must be intact to its end and continue exactly into the next (rotation synced it);
//! otherwise it is corruption. In the final segment, the first invalid record ends the
//! log: if it lies below the watermark, or a later valid record claims it was durable,
//! that is [`Error::Corruption`]; otherwise it is a torn tail, which is zeroed and
//! fsynced (so stale bytes can never resurface) and reported as a [`Truncation`].
//!
//! **Limits.** A damaged record in the very last acknowledged group commit, followed by
//! nothing written later, after a power loss that also lost that commit's watermark
//! slot write, is indistinguishable from a torn tail and is truncated; closing that gap
//! would cost a second fsync per commit. Open still touches every record header of
//! sealed segments (an index of offsets is kept in memory, 4 bytes per record; it is not
//! persisted). Deleting the *newest* segment file(s) by hand
//! is not detected (nothing outside them records that they existed). A media error under
//! a mapped page raises SIGBUS on read, as with any mmap reader.
//!
//! **Metrics** are listed in [`metrics`]; events use the tracing target `lamina::store`.
//!
//! **Fault seam.** The log touches the disk only through [`Storage`] / [`StorageFile`].
//! [`FsStorage`] is the real one; [`mem::MemStorage`] keeps a volatile cache and a disk
//! image per file and injects torn and lost unsynced writes at a crash, and failed writes
//! and syncs, for simulation tests.

pub mod error;
mod file;
pub mod format;
pub mod log;
pub mod mem;
pub mod metrics;
pub mod storage;

pub use error::{Error, Result};
pub use file::{replace_file, sync_dir, write_synced};
pub use log::{Config, Iter, Log, Record, RecoveryReport, Seq, Truncation};
pub use mem::{CrashMode, Faults, MemStorage};
pub use storage::{FsFile, FsStorage, ReadView, Storage, StorageFile};

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    ::metrics::describe_counter!("lamina_store_appended_records_total", "Records written to segment files, by log.");
    ::metrics::describe_gauge!("lamina_store_durable_seq", "Highest durable (synced) record sequence number, by log.");
    ::metrics::describe_counter!(
        "lamina_store_failures_total",
        "Fatal write or sync errors after which the log refuses further writes, by log."
    );
    ::metrics::describe_counter!("lamina_store_segments_created_total", "Segment files created by rotation, by log.");
    ::metrics::describe_counter!("lamina_store_segments_pruned_total", "Segment files deleted by pruning, by log.");
    ::metrics::describe_histogram!(
        "lamina_store_sync_seconds",
        "Duration of each group-commit fdatasync, in seconds, by log."
    );
    ::metrics::describe_counter!("lamina_store_syncs_total", "Group-commit fdatasyncs performed, by log.");
    ::metrics::describe_counter!(
        "lamina_store_truncated_bytes_total",
        "Torn-tail bytes discarded when the log was opened, by log."
    );
    ::metrics::describe_counter!(
        "lamina_store_written_bytes_total",
        "Record bytes written to segment files (headers included), by log."
    );
}
