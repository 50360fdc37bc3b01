//! Storage-log benchmarks (issue 2, lamina-store).
//!
//! Group `store::append`: one iteration is one commit of `n` records of `size` bytes:
//!
//! * `log group-commit/...`: `Log::append` × n, then `Log::sync` (one pwrite of the
//!   framed batch, one fdatasync, the watermark slot write), segments rotating as the log
//!   grows (64 MiB segments, preallocated);
//! * `log append_durable 64 threads/...`: 64 threads released together, each calling
//!   `append_durable` once per iteration: the concurrent group-commit path (how many
//!   fdatasyncs cover the 64 depends on timing; ideally one or two);
//! * `raw pwrite+fdatasync fresh/...`: the same payload bytes written with one `pwrite`
//!   per record, sequentially, into 64 MiB files preallocated exactly as segments are
//!   (`fallocate`; a new file when one is full), then one `fdatasync`: the like-for-like
//!   baseline (target: group-commit >= 80% of it);
//! * `raw pwrite+fdatasync overwrite/...`: the same, overwriting one file written in full
//!   beforehand (no block allocation or unwritten-extent conversion: the best case for
//!   raw I/O, which an append-only log that keeps its data cannot have);
//! * `raw write+fdatasync append/...`: the same payload bytes appended with `write` to a
//!   file that is not preallocated (each fdatasync also persists the new file size).
//!
//! Group `store::read`: iterate a 32 MiB log of 1 KiB records with and without checksum
//! verification, beside `read` of the same file in 1 MiB chunks (page-cache bandwidth).
//!
//! Throughput is payload bytes. Files go to `$LAMINA_BENCH_DIR` (default: the system
//! temp directory), which must be a real disk for fdatasync to mean anything. Run:
//!
//! ```text
//! cargo bench -p lamina-benches --bench store
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lamina_store::{Config, FsStorage, Log, Storage, StorageFile};

const SEGMENT: u64 = 64 << 20;
const RAW_FILE: u64 = 64 << 20;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("LAMINA_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn config() -> Config {
    Config { segment_size: SEGMENT, max_record_size: 1 << 20, ..Config::default() }
}

/// Preallocated files written sequentially with one `pwrite` per record.
struct Raw {
    storage: FsStorage,
    file: Box<dyn StorageFile>,
    id: u64,
    pos: u64,
    /// Wrap around and overwrite the same file (else move on to a fresh one).
    wrap: bool,
}

impl Raw {
    /// `fallocate`d like a log segment (unwritten extents: the first write of each block
    /// also converts it, as in the log).
    /// Moves on to a new file when one is full (deleting the old one), so every
    /// write lands in fresh preallocated space: the log's own pattern.
    fn fresh(dir: &tempfile::TempDir) -> Raw {
        let storage = FsStorage::open(dir.path().join("raw-fresh")).unwrap();
        let file = storage.create(0, RAW_FILE, &[]).unwrap();
        Raw { storage, file: Box::new(file), id: 0, pos: 0, wrap: false }
    }

    /// One file written in full beforehand and overwritten in a loop: no block
    /// allocation or extent conversion at all (the best case for raw I/O).
    fn overwrite(dir: &tempfile::TempDir) -> Raw {
        let storage = FsStorage::open(dir.path().join("raw-overwrite")).unwrap();
        let file = storage.create(0, RAW_FILE, &[]).unwrap();
        let chunk = vec![1u8; 1 << 20];
        for i in 0..(RAW_FILE >> 20) {
            file.write_at(i << 20, &chunk).unwrap();
        }
        file.sync_data().unwrap();
        Raw { storage, file: Box::new(file), id: 0, pos: 0, wrap: true }
    }

    fn commit(&mut self, records: &[Vec<u8>]) {
        let total: u64 = records.iter().map(|r| r.len() as u64).sum();
        if self.pos + total > RAW_FILE {
            self.pos = 0;
            if !self.wrap {
                self.id += 1;
                self.file = Box::new(self.storage.create(self.id, RAW_FILE, &[]).unwrap());
                self.storage.remove(&[self.id - 1]).unwrap();
            }
        }
        for r in records {
            self.file.write_at(self.pos, r).unwrap();
            self.pos += r.len() as u64;
        }
        self.file.sync_data().unwrap();
    }
}

/// A plain file grown by `write` (no preallocation: each fdatasync also persists the new
/// size), a new file every 64 MiB.
struct Append {
    dir: PathBuf,
    file: File,
    id: u64,
    len: u64,
}

impl Append {
    fn new(dir: &tempfile::TempDir) -> Append {
        let dir = dir.path().join("raw-append");
        std::fs::create_dir_all(&dir).unwrap();
        Append { file: File::create(dir.join("0")).unwrap(), dir, id: 0, len: 0 }
    }

    fn commit(&mut self, records: &[Vec<u8>]) {
        if self.len >= RAW_FILE {
            std::fs::remove_file(self.dir.join(self.id.to_string())).unwrap();
            self.id += 1;
            self.file = File::create(self.dir.join(self.id.to_string())).unwrap();
            self.len = 0;
        }
        for r in records {
            self.file.write_all(r).unwrap();
            self.len += r.len() as u64;
        }
        self.file.sync_data().unwrap();
    }
}

fn records(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| (0..size).map(|j| (i * 31 + j * 7) as u8).collect()).collect()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("store::append");
    g.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    for (size, n) in [(1usize << 10, 64usize), (16 << 10, 64)] {
        let batch = records(n, size);
        let label = format!("record={}KiB x{n} per sync", size >> 10);
        g.throughput(Throughput::Bytes((size * n) as u64));

        let dir = bench_dir();
        let log = Log::open(dir.path().join("log"), config()).unwrap();
        g.bench_function(BenchmarkId::new("log group-commit", &label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for r in &batch {
                        log.append(r).unwrap();
                    }
                    log.sync().unwrap();
                }
                let elapsed = start.elapsed();
                // Keep the log from filling the disk: prune outside the timed region.
                log.prune_below(log.next_seq().saturating_sub(1)).unwrap();
                elapsed
            });
        });
        drop(log);

        // n threads, each appending one record with `append_durable` per iteration, all
        // released together: group commit should cover them with one or two fdatasyncs.
        let log = Arc::new(Log::open(dir.path().join("log-threads"), config()).unwrap());
        let barrier = Arc::new(Barrier::new(n + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = batch
            .iter()
            .cloned()
            .map(|r| {
                let (log, barrier, stop) = (log.clone(), barrier.clone(), stop.clone());
                std::thread::spawn(move || {
                    loop {
                        barrier.wait();
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        log.append_durable(&r).unwrap();
                        barrier.wait();
                    }
                })
            })
            .collect();
        g.bench_function(BenchmarkId::new(format!("log append_durable {n} threads"), &label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    barrier.wait();
                    barrier.wait();
                }
                let elapsed = start.elapsed();
                log.prune_below(log.next_seq().saturating_sub(1)).unwrap();
                elapsed
            });
        });
        stop.store(true, Ordering::Release);
        barrier.wait();
        for w in workers {
            w.join().unwrap();
        }
        drop(log);

        for (id, mut raw) in
            [("raw pwrite+fdatasync fresh", Raw::fresh(&dir)), ("raw pwrite+fdatasync overwrite", Raw::overwrite(&dir))]
        {
            g.bench_function(BenchmarkId::new(id, &label), |b| b.iter(|| raw.commit(&batch)));
        }
        let mut append = Append::new(&dir);
        g.bench_function(BenchmarkId::new("raw write+fdatasync append", &label), |b| b.iter(|| append.commit(&batch)));
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("store::read");
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    let size = 1usize << 10;
    let n = 32 << 10; // 32 MiB of payload
    let dir = bench_dir();
    let path = dir.path().join("log");
    {
        let log = Log::open(&path, config()).unwrap();
        let r = vec![0x5Au8; size];
        for _ in 0..n {
            log.append(&r).unwrap();
        }
        log.close().unwrap();
    }
    g.throughput(Throughput::Bytes((size * n) as u64));
    for verify in [true, false] {
        let log = Log::open(&path, Config { verify_reads: verify, ..config() }).unwrap();
        let id = if verify { "iterate verify" } else { "iterate no-verify" };
        g.bench_function(BenchmarkId::new(id, "record=1KiB"), |b| {
            b.iter(|| {
                let mut sum = 0usize;
                for r in log.iter_from(0) {
                    sum += r.unwrap().len();
                }
                assert_eq!(sum, size * n);
            });
        });
    }
    let seg = path.join(format!("{:020}.seg", 0));
    g.bench_function(BenchmarkId::new("raw read 1MiB chunks", "record=1KiB"), |b| {
        let mut buf = vec![0u8; 1 << 20];
        b.iter(|| {
            let mut f = File::open(&seg).unwrap();
            let mut left = (size * n) as u64;
            while left > 0 {
                let k = f.read(&mut buf[..(left.min(1 << 20)) as usize]).unwrap();
                assert!(k > 0);
                left -= k as u64;
            }
        });
    });
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
