//! The segmented append-only log: appends, group commit, reads, pruning, recovery.

use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::format::{
    Checksum, DATA_START, PAGE, RECORD_HEADER, RecordHeader, SEGMENT_HEADER, SLOT_OFFSETS, SLOT_SIZE, SegmentHeader,
    Slot, frame_record,
};
use crate::metrics::Metrics;
use crate::storage::{FsStorage, ReadView, Storage, StorageFile};

/// A record's sequence number: 0 for the first record ever appended, then +1 per record.
pub type Seq = u64;

const TARGET: &str = "lamina::store";

/// Log configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Size of each segment file in bytes, preallocated at creation. A multiple of 4096,
    /// at least 16 KiB, at most 4 GiB − 4 KiB. Only new segments use a changed value.
    /// Default 64 MiB.
    pub segment_size: u64,
    /// Largest payload accepted by [`Log::append`]; larger ones get
    /// [`Error::RecordTooLarge`]. Must fit in an empty segment
    /// (`segment_size − 12 KiB − 40`). Default 16 MiB.
    pub max_record_size: usize,
    /// Appended records are framed into a buffer of about this size and written with one
    /// `pwrite` when it fills, at a sync, or when a reader asks for a buffered record.
    /// Default 256 KiB.
    pub write_buffer: usize,
    /// Verify each record's checksum (and its link to the previous one) on every read.
    /// Default true; turning it off trusts the scan done at open for the bytes after it.
    pub verify_reads: bool,
    /// At open, verify every record of sealed segments too (checksums and chain), not
    /// only of the last segment. Default false: a sealed segment is a known-good point
    /// (it was fsynced before its seal was written), so open only walks its record
    /// headers to rebuild the index, and damage in it is found when the record is read
    /// (with [`Config::verify_reads`]). True makes open read and hash the whole log.
    pub verify_sealed_on_open: bool,
    /// Name of the log in metrics (label `log`) and logs, e.g. `"consensus-wal"`.
    /// Default `"log"`.
    pub name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_size: 64 << 20,
            max_record_size: 16 << 20,
            write_buffer: 256 << 10,
            verify_reads: true,
            verify_sealed_on_open: false,
            name: "log".to_string(),
        }
    }
}

impl Config {
    /// Largest payload that fits in an empty segment of `segment_size` bytes.
    pub fn capacity(segment_size: u64) -> usize {
        segment_size.saturating_sub(DATA_START + RECORD_HEADER as u64) as usize
    }

    /// Checks the limits documented on each field.
    pub fn validate(&self) -> Result<()> {
        if !self.segment_size.is_multiple_of(PAGE) || self.segment_size < 4 * PAGE {
            return Err(Error::Config(format!(
                "segment_size {} must be a multiple of 4096 and at least 16384",
                self.segment_size
            )));
        }
        if self.segment_size > u64::from(u32::MAX) - PAGE + 1 {
            return Err(Error::Config(format!("segment_size {} exceeds 4 GiB - 4 KiB", self.segment_size)));
        }
        if self.max_record_size > Self::capacity(self.segment_size) {
            return Err(Error::Config(format!(
                "max_record_size {} does not fit in a segment of {} bytes (at most {})",
                self.max_record_size,
                self.segment_size,
                Self::capacity(self.segment_size)
            )));
        }
        if self.write_buffer == 0 {
            return Err(Error::Config("write_buffer must be positive".into()));
        }
        Ok(())
    }
}

/// What recovery found when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// The directory held no log; a new one was created.
    pub created: bool,
    /// Segments present after recovery.
    pub segments: usize,
    /// Lowest retained sequence number (== `next_seq` when the log is empty).
    pub first_seq: Seq,
    /// Sequence number the next append gets.
    pub next_seq: Seq,
    /// The durable watermark found on disk: every record below it had been acknowledged
    /// as durable (from the watermark slots and the claims carried by records). Recovery
    /// verified that all of them are present and intact.
    pub durable_watermark: Seq,
    /// The torn tail that was discarded, if any.
    pub truncated: Option<Truncation>,
}

/// A discarded torn tail: bytes after the last valid record that were not a valid
/// record (a write interrupted by a crash, never acknowledged as durable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Segment id.
    pub segment: u64,
    /// Offset of the first discarded byte (the end of the last valid record).
    pub offset: u64,
    /// Sequence number the first invalid record would have had.
    pub seq: Seq,
    /// Non-zero bytes discarded (zeroed on disk).
    pub bytes: u64,
}

struct Segment<F> {
    id: u64,
    base_seq: Seq,
    prev_checksum: Checksum,
    len: u64,
    file: F,
    view: Arc<dyn ReadView>,
    /// Offsets of the records written to the file so far, in order.
    index: RwLock<Vec<u32>>,
}

struct Writer<F> {
    active: Arc<Segment<F>>,
    /// Next free byte in the active segment (after buffered records).
    end: u64,
    /// Bytes `[flushed, end)` are in `buf`, not yet written.
    flushed: u64,
    buf: Vec<u8>,
    buf_offsets: Vec<u32>,
    next_seq: Seq,
    /// Checksum of the last appended record (the chain head).
    last_checksum: Checksum,
    /// Generation of the last watermark slot written to the active segment.
    slot_generation: u64,
}

/// A segmented append-only log; see the crate documentation for its promises.
///
/// All methods take `&self`; share a log between threads with `Arc<Log>`.
pub struct Log<S: Storage = FsStorage> {
    storage: S,
    config: Config,
    log_id: [u8; 16],
    writer: Mutex<Writer<S::File>>,
    segments: RwLock<Vec<Arc<Segment<S::File>>>>,
    /// Records with a smaller sequence number are in a file (readable through a view).
    written: AtomicU64,
    /// Sequence number of the next append.
    appended: AtomicU64,
    /// Records with a smaller sequence number are durable.
    durable: AtomicU64,
    /// Whether a group-commit leader is syncing.
    syncing: Mutex<bool>,
    synced: Condvar,
    failed: OnceLock<String>,
    report: RecoveryReport,
    metrics: Metrics,
}

impl<S: Storage> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("location", &self.storage.location())
            .field("first_seq", &self.first_seq())
            .field("next_seq", &self.next_seq())
            .field("durable_seq", &self.durable_seq())
            .field("failed", &self.failed.get())
            .finish()
    }
}

impl Log<FsStorage> {
    /// Opens (or creates) the log in directory `dir`, locking it, and recovers it.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Self> {
        Self::open_with(FsStorage::open(dir)?, config)
    }
}

impl<S: Storage> Log<S> {
    /// Opens the log kept in `storage` and recovers it: validates every record, discards
    /// a torn tail, and fails with [`Error::Corruption`] if anything acknowledged as
    /// durable is damaged or missing.
    pub fn open_with(storage: S, config: Config) -> Result<Self> {
        config.validate()?;
        let rec = recover(&storage, &config)?;
        let durable = rec.next_seq;
        let sealed = rec.last_sealed;
        let segments: Vec<_> = rec.segments;
        let Some(active) = segments.last().cloned() else {
            return Err(Error::Corruption {
                segment: 0,
                offset: 0,
                seq: None,
                reason: "recovery produced no segment".into(),
            });
        };
        let log = Log {
            log_id: rec.log_id,
            writer: Mutex::new(Writer {
                active,
                end: rec.end,
                flushed: rec.end,
                buf: Vec::with_capacity(config.write_buffer + RECORD_HEADER),
                buf_offsets: Vec::new(),
                next_seq: rec.next_seq,
                last_checksum: rec.last_checksum,
                slot_generation: rec.slot_generation,
            }),
            segments: RwLock::new(segments),
            written: AtomicU64::new(rec.next_seq),
            appended: AtomicU64::new(rec.next_seq),
            durable: AtomicU64::new(durable),
            syncing: Mutex::new(false),
            synced: Condvar::new(),
            failed: OnceLock::new(),
            metrics: Metrics::new(&config.name),
            report: rec.report,
            storage,
            config,
        };
        if let Some(t) = &log.report.truncated {
            log.metrics.truncated_bytes.increment(t.bytes);
        }
        if let Some(d) = log.durable_seq() {
            log.metrics.durable_seq.set(d as f64);
        }
        if sealed {
            // The previous process sealed the last segment but did not live to create the
            // next one: do it now, so a sealed segment is never appended to.
            let mut w = log.writer.lock();
            log.rotate(&mut w)?;
        }
        Ok(log)
    }

    /// What recovery found when this log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.report
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sequence number the next append gets.
    pub fn next_seq(&self) -> Seq {
        self.appended.load(Ordering::Acquire)
    }

    /// Lowest retained sequence number (records below it were pruned). Equals
    /// [`Log::next_seq`] when the log holds no record.
    pub fn first_seq(&self) -> Seq {
        self.segments.read().first().map_or(0, |s| s.base_seq)
    }

    /// Highest sequence number known durable, `None` if no record is.
    pub fn durable_seq(&self) -> Option<Seq> {
        self.durable.load(Ordering::Acquire).checked_sub(1)
    }

    /// True once a write or sync has failed: the log refuses all further writes.
    pub fn is_failed(&self) -> bool {
        self.failed.get().is_some()
    }

    fn check_failed(&self) -> Result<()> {
        match self.failed.get() {
            Some(reason) => Err(Error::Failed { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Records a fatal I/O error (fail-stop) and returns it.
    fn fail(&self, op: &'static str, source: std::io::Error) -> Error {
        let reason = format!("{op}: {source}");
        if self.failed.set(reason.clone()).is_ok() {
            self.metrics.failures.increment(1);
            tracing::error!(target: TARGET, location = %self.storage.location(), %reason, "log failed; refusing further writes");
        }
        // Wake waiters so they observe the failure.
        drop(self.syncing.lock());
        self.synced.notify_all();
        Error::Io { op, source }
    }

    /// Appends `payload` and returns its sequence number. The record is readable at once
    /// but **not durable** until a [`Log::sync`] or [`Log::wait_durable`] covering it
    /// returns `Ok`.
    pub fn append(&self, payload: &[u8]) -> Result<Seq> {
        if payload.len() > self.config.max_record_size {
            return Err(Error::RecordTooLarge { len: payload.len(), max: self.config.max_record_size });
        }
        let mut w = self.writer.lock();
        self.check_failed()?;
        let framed = (RECORD_HEADER + payload.len()) as u64;
        if w.end + framed > w.active.len {
            self.rotate(&mut w)?;
        }
        let seq = w.next_seq;
        let offset = w.end as u32;
        let prev = w.last_checksum;
        let claim = self.durable.load(Ordering::Acquire);
        w.last_checksum = frame_record(&mut w.buf, &self.log_id, &prev, seq, claim, payload);
        w.buf_offsets.push(offset);
        w.end += framed;
        w.next_seq += 1;
        self.appended.store(w.next_seq, Ordering::Release);
        if w.buf.len() >= self.config.write_buffer {
            self.flush(&mut w)?;
        }
        Ok(seq)
    }

    /// Appends `payload` and waits until it is durable (group commit: concurrent callers
    /// share one fdatasync). Returns its sequence number once durable.
    pub fn append_durable(&self, payload: &[u8]) -> Result<Seq> {
        let seq = self.append(payload)?;
        self.wait_durable(seq)?;
        Ok(seq)
    }

    /// Makes every record appended so far durable; returns the durable sequence number.
    pub fn sync(&self) -> Result<Option<Seq>> {
        if let Some(last) = self.next_seq().checked_sub(1) {
            self.wait_durable(last)?;
        } else {
            self.check_failed()?;
        }
        Ok(self.durable_seq())
    }

    /// Blocks until record `seq` is durable. This is the group-commit path: if no sync is
    /// running, the caller becomes the leader and issues one fdatasync covering every
    /// record appended so far (by any thread); otherwise it waits for the running sync
    /// and, if that did not cover `seq`, leads the next one.
    ///
    /// Returns `Ok` only if the record is durable. After a failed sync every waiter gets
    /// the error and the log is failed. Waiting for a sequence number not yet appended is
    /// an error ([`Error::NotAppended`]) rather than a wait.
    pub fn wait_durable(&self, seq: Seq) -> Result<()> {
        let mut syncing = self.syncing.lock();
        loop {
            if self.durable.load(Ordering::Acquire) > seq {
                return Ok(());
            }
            self.check_failed()?;
            let next = self.next_seq();
            if seq >= next {
                return Err(Error::NotAppended { seq, next });
            }
            if *syncing {
                self.synced.wait(&mut syncing);
                continue;
            }
            *syncing = true;
            let result = MutexGuard::unlocked(&mut syncing, || self.sync_round());
            *syncing = false;
            self.synced.notify_all();
            result?;
        }
    }

    /// One group-commit round: write the buffer, fdatasync, advance the durable mark,
    /// then record it in the active segment's watermark slot.
    fn sync_round(&self) -> Result<()> {
        let (segment, target, end, last) = {
            let mut w = self.writer.lock();
            self.check_failed()?;
            self.flush(&mut w)?;
            (w.active.clone(), w.next_seq, w.end, w.last_checksum)
        };
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let started = std::time::Instant::now();
        segment.file.sync_data().map_err(|e| self.fail("fdatasync", e))?;
        self.metrics.sync_seconds.record(started.elapsed().as_secs_f64());
        self.metrics.syncs.increment(1);
        self.mark_durable(target);
        // Persist the watermark lazily: the next sync makes this slot durable. Skipped if
        // the segment was sealed meanwhile (its seal slot is newer).
        let mut w = self.writer.lock();
        if Arc::ptr_eq(&w.active, &segment) && self.failed.get().is_none() {
            let slot = Slot {
                generation: w.slot_generation + 1,
                durable_count: target,
                end_offset: end,
                sealed: false,
                last_checksum: last,
            };
            self.write_slot(&mut w, slot)?;
        }
        Ok(())
    }

    fn write_slot(&self, w: &mut Writer<S::File>, slot: Slot) -> Result<()> {
        let at = SLOT_OFFSETS[(slot.generation % 2) as usize];
        w.active.file.write_at(at, &slot.encode(&self.log_id)).map_err(|e| self.fail("write watermark", e))?;
        w.slot_generation = slot.generation;
        Ok(())
    }

    fn mark_durable(&self, count: u64) {
        let g = self.syncing.lock();
        let before = self.durable.fetch_max(count, Ordering::AcqRel);
        drop(g);
        if count > before {
            self.metrics.durable_seq.set((count - 1) as f64);
        }
        self.synced.notify_all();
    }

    /// Writes the buffered records to the active segment (not durable yet).
    fn flush(&self, w: &mut Writer<S::File>) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        w.active.file.write_at(w.flushed, &w.buf).map_err(|e| self.fail("write", e))?;
        w.active.index.write().extend_from_slice(&w.buf_offsets);
        self.metrics.appended.increment(w.buf_offsets.len() as u64);
        self.metrics.written_bytes.increment(w.buf.len() as u64);
        w.flushed = w.end;
        w.buf.clear();
        w.buf_offsets.clear();
        self.written.store(w.next_seq, Ordering::Release);
        Ok(())
    }

    /// Seals the active segment (all of it durable, a sealed watermark slot) and starts
    /// the next one. Any failure is fatal.
    fn rotate(&self, w: &mut Writer<S::File>) -> Result<()> {
        self.flush(w)?;
        let old = w.active.clone();
        old.file.sync_data().map_err(|e| self.fail("fdatasync before rotation", e))?;
        self.mark_durable(w.next_seq);
        let seal = Slot {
            generation: w.slot_generation + 1,
            durable_count: w.next_seq,
            end_offset: w.end,
            sealed: true,
            last_checksum: w.last_checksum,
        };
        self.write_slot(w, seal)?;
        old.file.sync_data().map_err(|e| self.fail("fdatasync of seal", e))?;
        let id = old.id + 1;
        let header = SegmentHeader {
            log_id: self.log_id,
            segment_id: id,
            base_seq: w.next_seq,
            prev_checksum: w.last_checksum,
            segment_len: self.config.segment_size,
        };
        let file = self
            .storage
            .create(id, self.config.segment_size, &header.encode())
            .map_err(|e| self.fail("create segment", e))?;
        let view = file.view().map_err(|e| self.fail("map segment", e))?;
        let segment = Arc::new(Segment {
            id,
            base_seq: w.next_seq,
            prev_checksum: w.last_checksum,
            len: self.config.segment_size.min(view.len() as u64),
            file,
            view,
            index: RwLock::new(Vec::new()),
        });
        self.segments.write().push(segment.clone());
        self.metrics.segments_created.increment(1);
        w.active = segment;
        w.end = DATA_START;
        w.flushed = DATA_START;
        w.slot_generation = 0;
        tracing::debug!(target: TARGET, segment = id, base_seq = w.next_seq, "rotated to a new segment");
        Ok(())
    }

    /// Syncs, writes an exact watermark and syncs it too, then closes the log. Dropping a
    /// log without `close` loses nothing that was acknowledged, but leaves the watermark
    /// one sync behind (which only weakens corruption detection after a power loss).
    pub fn close(self) -> Result<()> {
        self.sync()?;
        let mut w = self.writer.lock();
        let slot = Slot {
            generation: w.slot_generation + 1,
            durable_count: w.next_seq,
            end_offset: w.end,
            sealed: false,
            last_checksum: w.last_checksum,
        };
        self.write_slot(&mut w, slot)?;
        w.active.file.sync_data().map_err(|e| self.fail("fdatasync of watermark", e))?;
        Ok(())
    }

    /// The record with sequence number `seq`: `Ok(None)` if it was pruned or not yet
    /// appended. The returned [`Record`] borrows the segment's mapping (zero-copy) and
    /// stays valid even if the segment is pruned meanwhile. With
    /// [`Config::verify_reads`], the checksum is verified first and a mismatch is
    /// [`Error::Corruption`].
    pub fn read(&self, seq: Seq) -> Result<Option<Record>> {
        if seq >= self.written.load(Ordering::Acquire) {
            let mut w = self.writer.lock();
            if seq >= w.next_seq {
                return Ok(None);
            }
            if seq >= self.written.load(Ordering::Acquire) {
                self.check_failed()?;
                self.flush(&mut w)?;
            }
        }
        let Some(segment) = self.segment_of(seq) else { return Ok(None) };
        self.read_in(&segment, seq).map(Some)
    }

    fn segment_of(&self, seq: Seq) -> Option<Arc<Segment<S::File>>> {
        let segments = self.segments.read();
        let i = segments.partition_point(|s| s.base_seq <= seq);
        i.checked_sub(1).map(|i| segments[i].clone())
    }

    fn read_in(&self, segment: &Arc<Segment<S::File>>, seq: Seq) -> Result<Record> {
        let i = (seq - segment.base_seq) as usize;
        let (offset, prev_offset) = {
            let index = segment.index.read();
            (index.get(i).copied(), i.checked_sub(1).and_then(|j| index.get(j).copied()))
        };
        let corrupt = |offset: u64, reason: &str| Error::Corruption {
            segment: segment.id,
            offset,
            seq: Some(seq),
            reason: reason.to_string(),
        };
        let Some(offset) = offset else {
            return Err(corrupt(0, "record missing from the segment index"));
        };
        let off = offset as usize;
        let header = segment
            .view
            .bytes(off, RECORD_HEADER)
            .and_then(RecordHeader::parse)
            .ok_or_else(|| corrupt(offset.into(), "record header unreadable"))?;
        if header.seq != seq {
            return Err(corrupt(offset.into(), "record header carries another sequence number"));
        }
        let len = header.len as usize;
        let payload = segment
            .view
            .bytes(off + RECORD_HEADER, len)
            .ok_or_else(|| corrupt(offset.into(), "record length runs past the segment"))?;
        if self.config.verify_reads {
            let prev = match prev_offset {
                None => segment.prev_checksum,
                Some(p) => segment
                    .view
                    .bytes(p as usize, RECORD_HEADER)
                    .and_then(RecordHeader::parse)
                    .map(|h| h.checksum)
                    .ok_or_else(|| corrupt(p.into(), "previous record header unreadable"))?,
            };
            if !header.verify(&self.log_id, &prev, payload) {
                return Err(corrupt(offset.into(), "checksum mismatch on read"));
            }
        }
        Ok(Record { view: segment.view.clone(), offset: off + RECORD_HEADER, len, seq })
    }

    /// Iterates over records from `seq` (or from [`Log::first_seq`] if `seq` was pruned)
    /// to the end of the log, including records appended while iterating. Stops after
    /// yielding the first error.
    pub fn iter_from(&self, seq: Seq) -> Iter<'_, S> {
        Iter { log: self, next: seq.max(self.first_seq()), current: None, done: false }
    }

    /// Deletes every segment all of whose records have sequence numbers below `seq`
    /// (whole segments only; the active segment is never deleted), oldest first, and
    /// makes the deletion durable (directory fsync). Returns the number of segments
    /// deleted. Records at or above `seq` are kept; some below it may remain.
    pub fn prune_below(&self, seq: Seq) -> Result<usize> {
        let _w = self.writer.lock();
        self.check_failed()?;
        let ids: Vec<u64> = {
            let segments = self.segments.read();
            segments.windows(2).take_while(|pair| pair[1].base_seq <= seq).map(|pair| pair[0].id).collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        self.storage.remove(&ids).map_err(|e| self.fail("remove segments", e))?;
        self.segments.write().drain(..ids.len());
        self.metrics.segments_pruned.increment(ids.len() as u64);
        tracing::debug!(target: TARGET, segments = ids.len(), below = seq, "pruned");
        Ok(ids.len())
    }
}

impl<S: Storage> Drop for Log<S> {
    fn drop(&mut self) {
        // Hand buffered records to the OS (no sync: nothing unacknowledged is promised).
        if self.failed.get().is_none() {
            let mut w = self.writer.lock();
            let _ = self.flush(&mut w);
        }
    }
}

/// A record's payload, borrowed from the segment's mapping without copying.
///
/// Holds the mapping alive, so it stays valid after the segment is pruned.
#[derive(Clone)]
pub struct Record {
    view: Arc<dyn ReadView>,
    offset: usize,
    len: usize,
    seq: Seq,
}

impl Record {
    /// The record's sequence number.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// The payload.
    pub fn bytes(&self) -> &[u8] {
        self.view.bytes(self.offset, self.len).expect("record range was bounds-checked against the view when read")
    }
}

impl Deref for Record {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl AsRef<[u8]> for Record {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("seq", &self.seq).field("len", &self.len).finish()
    }
}

/// Iterator returned by [`Log::iter_from`].
pub struct Iter<'a, S: Storage> {
    log: &'a Log<S>,
    next: Seq,
    current: Option<Arc<Segment<S::File>>>,
    done: bool,
}

impl<S: Storage> Iterator for Iter<'_, S> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let seq = self.next;
        // Fast path: the record is already indexed in the segment we are walking.
        let hit = self
            .current
            .as_ref()
            .is_some_and(|s| seq >= s.base_seq && ((seq - s.base_seq) as usize) < s.index.read().len());
        let result = if hit {
            let segment = self.current.clone().expect("hit implies a current segment");
            self.log.read_in(&segment, seq).map(Some)
        } else {
            match self.log.read(seq) {
                Ok(Some(r)) => {
                    self.current = self.log.segment_of(seq);
                    Ok(Some(r))
                }
                other => other,
            }
        };
        match result {
            Ok(Some(r)) => {
                self.next += 1;
                Some(Ok(r))
            }
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------------------

struct Recovered<F> {
    log_id: [u8; 16],
    segments: Vec<Arc<Segment<F>>>,
    end: u64,
    next_seq: Seq,
    last_checksum: Checksum,
    slot_generation: u64,
    last_sealed: bool,
    report: RecoveryReport,
}

fn new_log_id(location: &str) -> [u8; 16] {
    // Not a secret: it only has to differ between logs, so that a record or slot of one
    // log never validates in another.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(b"lamina store log id v1");
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(location.as_bytes());
    let stack_marker = 0u8;
    h.update(&(std::ptr::addr_of!(stack_marker) as usize).to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

fn segment_arc<F: StorageFile>(
    id: u64,
    header: &SegmentHeader,
    len: u64,
    file: F,
    view: Arc<dyn ReadView>,
    index: Vec<u32>,
) -> Arc<Segment<F>> {
    Arc::new(Segment {
        id,
        base_seq: header.base_seq,
        prev_checksum: header.prev_checksum,
        len,
        file,
        view,
        index: RwLock::new(index),
    })
}

/// A record parsed and validated at `offset`, or `None`.
fn valid_record(
    view: &dyn ReadView,
    len: u64,
    offset: u64,
    seq: Seq,
    prev: &Checksum,
    log_id: &[u8; 16],
) -> Option<RecordHeader> {
    let off = usize::try_from(offset).ok()?;
    let header = RecordHeader::parse(view.bytes(off, RECORD_HEADER)?)?;
    let end = offset.checked_add(RECORD_HEADER as u64)?.checked_add(u64::from(header.len))?;
    if header.seq != seq || end > len {
        return None;
    }
    let payload = view.bytes(off + RECORD_HEADER, header.len as usize)?;
    header.verify(log_id, prev, payload).then_some(header)
}

/// Offset just past the last non-zero byte in `[from, len)`, or `from` if all zero.
fn dirty_end(view: &dyn ReadView, from: u64, len: u64) -> u64 {
    const CHUNK: u64 = 64 << 10;
    let mut hi = len;
    while hi > from {
        let lo = hi.saturating_sub(CHUNK).max(from);
        if let Some(bytes) = view.bytes(lo as usize, (hi - lo) as usize)
            && let Some(p) = bytes.iter().rposition(|&b| b != 0)
        {
            return lo + p as u64 + 1;
        }
        hi = lo;
    }
    from
}

fn recover<S: Storage>(storage: &S, config: &Config) -> Result<Recovered<S::File>> {
    let io = |op: &'static str| Error::io(op);
    let ids = storage.list().map_err(io("list segments"))?;
    if ids.is_empty() {
        let log_id = new_log_id(&storage.location());
        let header = SegmentHeader {
            log_id,
            segment_id: 0,
            base_seq: 0,
            prev_checksum: [0; 16],
            segment_len: config.segment_size,
        };
        let file = storage.create(0, config.segment_size, &header.encode()).map_err(io("create segment"))?;
        let view = file.view().map_err(io("map segment"))?;
        let len = config.segment_size.min(view.len() as u64);
        tracing::info!(target: TARGET, location = %storage.location(), "created a new log");
        return Ok(Recovered {
            log_id,
            segments: vec![segment_arc(0, &header, len, file, view, Vec::new())],
            end: DATA_START,
            next_seq: 0,
            last_checksum: [0; 16],
            slot_generation: 0,
            last_sealed: false,
            report: RecoveryReport { created: true, segments: 1, ..RecoveryReport::default() },
        });
    }
    for pair in ids.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(Error::Corruption {
                segment: pair[0] + 1,
                offset: 0,
                seq: None,
                reason: format!("segment {} is missing between {} and {}", pair[0] + 1, pair[0], pair[1]),
            });
        }
    }

    let mut log_id: Option<[u8; 16]> = None;
    let mut watermark: u64 = 0;
    let mut segments = Vec::with_capacity(ids.len());
    let mut expect: Option<(Seq, Checksum)> = None;
    let mut truncated = None;
    let mut tail = (DATA_START, 0u64, [0u8; 16], 0u64, false); // end, next_seq, last checksum, slot gen, sealed
    for (k, &id) in ids.iter().enumerate() {
        let is_last = k + 1 == ids.len();
        let corrupt =
            |offset: u64, seq: Option<Seq>, reason: String| Error::Corruption { segment: id, offset, seq, reason };
        let file = storage.open(id).map_err(io("open segment"))?;
        let file_len = file.size().map_err(io("stat segment"))?;
        let header = {
            let view = file.view().map_err(io("map segment"))?;
            let bytes = view.bytes(0, SEGMENT_HEADER.min(view.len())).unwrap_or(&[]);
            SegmentHeader::decode(bytes).map_err(|why| corrupt(0, None, why.to_string()))?
        };
        if header.segment_id != id {
            return Err(corrupt(0, None, format!("header names segment {}", header.segment_id)));
        }
        match log_id {
            None => log_id = Some(header.log_id),
            Some(l) if l != header.log_id => return Err(corrupt(0, None, "segment belongs to another log".into())),
            Some(_) => {}
        }
        let log_id = header.log_id;
        if header.segment_len < 4 * PAGE || header.segment_len > u64::from(u32::MAX) {
            return Err(corrupt(0, None, format!("implausible segment length {}", header.segment_len)));
        }
        if let Some((seq, prev)) = expect
            && (header.base_seq != seq || header.prev_checksum != prev)
        {
            return Err(corrupt(
                0,
                Some(seq),
                format!(
                    "segment starts at seq {} but the previous one ends at {} (or the chain is broken): \
                     records are missing",
                    header.base_seq, seq
                ),
            ));
        }
        if file_len < header.segment_len {
            // Shortened behind our back (or by a crash during creation on a filesystem
            // without fallocate): restore the length; missing bytes read as zero.
            file.grow(header.segment_len).map_err(io("restore segment length"))?;
        }
        let view = file.view().map_err(io("map segment"))?;
        let len = header.segment_len.min(view.len() as u64);

        // Watermark slots.
        let mut newest: Option<Slot> = None;
        for at in SLOT_OFFSETS {
            if let Some(slot) = view.bytes(at as usize, SLOT_SIZE).and_then(|b| Slot::decode(b, &log_id)) {
                watermark = watermark.max(slot.durable_count);
                if newest.is_none_or(|n| slot.generation > n.generation) {
                    newest = Some(slot);
                }
            }
        }

        // A sealed segment that is not the last one is a known-good point: its seal was
        // written after the segment was fsynced. Unless asked to verify it, only walk its
        // record headers to rebuild the index (reads still verify every checksum); fall
        // back to the full scan if the walk does not end exactly where the seal says.
        let walked = match newest {
            Some(slot) if slot.sealed && !is_last && !config.verify_sealed_on_open => {
                walk_sealed(&*view, len, &header, &slot)
            }
            _ => None,
        };
        let (index, offset, seq, prev) = match walked {
            Some(index) => {
                let slot = newest.expect("walked implies a seal slot");
                watermark = watermark.max(slot.durable_count);
                (index, slot.end_offset, slot.durable_count, slot.last_checksum)
            }
            None => {
                // Full scan: every record's checksum, chain link, sequence number, bounds.
                let mut index = Vec::new();
                let mut offset = DATA_START;
                let mut seq = header.base_seq;
                let mut prev = header.prev_checksum;
                while let Some(h) = valid_record(&*view, len, offset, seq, &prev, &log_id) {
                    watermark = watermark.max(h.claim);
                    index.push(offset as u32);
                    offset += RECORD_HEADER as u64 + u64::from(h.len);
                    prev = h.checksum;
                    seq += 1;
                }
                (index, offset, seq, prev)
            }
        };
        if let Some(slot) = newest
            && slot.sealed
            && (slot.end_offset != offset || slot.durable_count != seq || slot.last_checksum != prev)
        {
            return Err(corrupt(
                offset,
                Some(seq),
                format!(
                    "sealed segment ends at offset {} seq {}, but its records end at offset {offset} seq {seq}",
                    slot.end_offset, slot.durable_count
                ),
            ));
        }
        if !is_last {
            // The next segment's header (checked on the next turn) must continue here;
            // anything after the last valid record of a non-last segment is ignored, since
            // rotation synced the whole segment before the next one was created.
            expect = Some((seq, prev));
        } else {
            if seq < watermark {
                return Err(corrupt(
                    offset,
                    Some(seq),
                    format!(
                        "record {seq} is missing or damaged, but records below {watermark} were acknowledged durable"
                    ),
                ));
            }
            // Claims carried by valid records after the bad one prove how far durability
            // reached; look past it if its length field is still usable.
            if let Some(later) = later_claim(&*view, len, offset, seq, &log_id)
                && later > seq
            {
                return Err(corrupt(
                    offset,
                    Some(seq),
                    format!("record {seq} is damaged, but a later record shows records below {later} were durable"),
                ));
            }
            let dirty = dirty_end(&*view, offset, len);
            if dirty > offset {
                // Drop every slice of the tail before zeroing it (ReadView contract): the
                // scan's slices are gone by now.
                zero_range(&file, offset, dirty).map_err(io("zero torn tail"))?;
                file.sync_data().map_err(io("fdatasync after truncation"))?;
                let t = Truncation { segment: id, offset, seq, bytes: dirty - offset };
                tracing::warn!(target: TARGET, location = %storage.location(), ?t, "discarded a torn tail");
                truncated = Some(t);
            } else {
                // Everything recovered becomes durable before anything new is acknowledged.
                file.sync_data().map_err(io("fdatasync at open"))?;
            }
            tail = (offset, seq, prev, newest.map_or(0, |s| s.generation), newest.is_some_and(|s| s.sealed));
        }
        segments.push(segment_arc(id, &header, len, file, view, index));
    }
    let Some(log_id) = log_id else {
        return Err(Error::Corruption { segment: 0, offset: 0, seq: None, reason: "no segment header".into() });
    };
    let (end, next_seq, last_checksum, slot_generation, last_sealed) = tail;
    let first_seq = segments.first().map_or(next_seq, |s| s.base_seq);
    let report = RecoveryReport {
        created: false,
        segments: segments.len(),
        first_seq,
        next_seq,
        durable_watermark: watermark,
        truncated,
    };
    tracing::info!(target: TARGET, location = %storage.location(), ?report, "recovered log");
    Ok(Recovered { log_id, segments, end, next_seq, last_checksum, slot_generation, last_sealed, report })
}

/// Rebuilds a sealed segment's index from its record headers alone (no payload
/// hashing): `None` unless the headers form an unbroken run of sequence numbers that ends
/// exactly at the seal's offset, count and last checksum.
fn walk_sealed(view: &dyn ReadView, len: u64, header: &SegmentHeader, slot: &Slot) -> Option<Vec<u32>> {
    if slot.end_offset > len || slot.durable_count < header.base_seq {
        return None;
    }
    let mut index = Vec::with_capacity(usize::try_from(slot.durable_count - header.base_seq).ok()?.min(1 << 24));
    let mut offset = DATA_START;
    let mut seq = header.base_seq;
    let mut last = header.prev_checksum;
    while offset < slot.end_offset {
        let h = RecordHeader::parse(view.bytes(usize::try_from(offset).ok()?, RECORD_HEADER)?)?;
        let end = offset + RECORD_HEADER as u64 + u64::from(h.len);
        if h.seq != seq || end > slot.end_offset {
            return None;
        }
        index.push(offset as u32);
        last = h.checksum;
        offset = end;
        seq += 1;
    }
    (offset == slot.end_offset && seq == slot.durable_count && last == slot.last_checksum).then_some(index)
}

/// Largest durable claim among valid records after an invalid one at `offset` (with
/// expected `seq`), found by trusting the invalid record's length field.
fn later_claim(view: &dyn ReadView, len: u64, offset: u64, seq: Seq, log_id: &[u8; 16]) -> Option<u64> {
    let bad = RecordHeader::parse(view.bytes(usize::try_from(offset).ok()?, RECORD_HEADER)?)?;
    let mut at = offset.checked_add(RECORD_HEADER as u64)?.checked_add(u64::from(bad.len))?;
    let mut prev = bad.checksum;
    let mut expect = seq + 1;
    let mut best = None;
    while let Some(h) = valid_record(view, len, at, expect, &prev, log_id) {
        best = Some(best.map_or(h.claim, |b: u64| b.max(h.claim)));
        at += RECORD_HEADER as u64 + u64::from(h.len);
        prev = h.checksum;
        expect += 1;
    }
    best
}

fn zero_range<F: StorageFile>(file: &F, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 64 << 10;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        file.write_at(at, &zeros[..n])?;
        at += n as u64;
    }
    Ok(())
}
