#![allow(clippy::unwrap_used)]
//! Behaviour of the log on real files: append, read, iterate, rotate, prune, reopen,
//! locking, group commit from many threads.

use std::sync::Arc;

use lamina_store::{Config, Error, Log};

fn small() -> Config {
    Config {
        segment_size: 64 << 10,
        max_record_size: 16 << 10,
        write_buffer: 8 << 10,
        verify_reads: true,
        ..Config::default()
    }
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn len_of(seq: u64) -> usize {
    (seq as usize * 7919) % 3000
}

#[test]
fn append_read_iterate_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Config { segment_size: 1 << 20, ..small() }).unwrap();
    assert!(log.recovery().created);
    assert_eq!((log.first_seq(), log.next_seq(), log.durable_seq()), (0, 0, None));
    for seq in 0..100 {
        assert_eq!(log.append(&payload(seq, len_of(seq))).unwrap(), seq);
    }
    // Readable before durable, including records still in the write buffer (one segment,
    // so no rotation has synced anything).
    assert_eq!(log.durable_seq(), None);
    assert_eq!(&*log.read(99).unwrap().unwrap(), &payload(99, len_of(99))[..]);
    assert_eq!(log.sync().unwrap(), Some(99));
    assert_eq!(log.durable_seq(), Some(99));
    for seq in 0..100 {
        let r = log.read(seq).unwrap().unwrap();
        assert_eq!(r.seq(), seq);
        assert_eq!(&*r, &payload(seq, len_of(seq))[..]);
    }
    assert!(log.read(100).unwrap().is_none());
    let got: Vec<_> = log.iter_from(40).map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 60);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.seq(), 40 + i as u64);
        assert_eq!(&**r, &payload(r.seq(), len_of(r.seq()))[..]);
    }
}

#[test]
fn rotates_segments_and_reopens_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400u64; // about 600 KiB: about ten 64 KiB segments
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for seq in 0..n {
            log.append(&payload(seq, len_of(seq))).unwrap();
        }
        log.sync().unwrap();
        log.close().unwrap();
    }
    let segs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert!(segs >= 8, "expected rotation, found {segs} segments");
    let log = Log::open(dir.path(), small()).unwrap();
    let rep = log.recovery().clone();
    assert_eq!((rep.first_seq, rep.next_seq, rep.segments, rep.truncated), (0, n, segs, None));
    assert_eq!(rep.durable_watermark, n);
    assert_eq!(log.durable_seq(), Some(n - 1));
    let mut count = 0;
    for r in log.iter_from(0) {
        let r = r.unwrap();
        assert_eq!(&*r, &payload(r.seq(), len_of(r.seq()))[..]);
        count += 1;
    }
    assert_eq!(count, n);
    // Appendable after reopen, continuing the chain across the old tail.
    assert_eq!(log.append_durable(b"after").unwrap(), n);
    drop(log);
    let log = Log::open(dir.path(), small()).unwrap();
    assert_eq!(&*log.read(n).unwrap().unwrap(), b"after");
}

#[test]
fn records_too_large_are_rejected_and_max_size_fits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { max_record_size: Config::capacity(64 << 10), ..small() };
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    let max = cfg.max_record_size;
    assert!(
        matches!(log.append(&vec![1u8; max + 1]), Err(Error::RecordTooLarge { len, max: m }) if len == max + 1 && m == max)
    );
    log.append(b"small").unwrap();
    // A record that fills a whole segment forces a rotation and still works.
    let big = payload(7, max);
    let seq = log.append_durable(&big).unwrap();
    assert_eq!(seq, 1);
    assert_eq!(&*log.read(1).unwrap().unwrap(), &big[..]);
    log.append_durable(b"next").unwrap();
    drop(log);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(&*log.read(1).unwrap().unwrap(), &big[..]);
    assert_eq!(&*log.read(2).unwrap().unwrap(), b"next");
    // Config rejects a maximum that cannot fit.
    let bad = Config { max_record_size: Config::capacity(64 << 10) + 1, ..small() };
    assert!(matches!(Log::open(tempfile::tempdir().unwrap().path(), bad), Err(Error::Config(_))));
}

#[test]
fn prune_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    for seq in 0..400 {
        log.append(&payload(seq, len_of(seq))).unwrap();
    }
    log.sync().unwrap();
    let held = log.read(5).unwrap().unwrap();
    let removed = log.prune_below(200).unwrap();
    assert!(removed > 0);
    let first = log.first_seq();
    assert!(first > 5 && first <= 200, "first_seq {first}");
    assert!(log.read(first - 1).unwrap().is_none());
    assert!(log.read(first).unwrap().is_some());
    // A record read before pruning stays valid (the mapping outlives the file).
    assert_eq!(&*held, &payload(5, len_of(5))[..]);
    // Iterating from a pruned position starts at the first retained record.
    assert_eq!(log.iter_from(0).next().unwrap().unwrap().seq(), first);
    // Pruning everything keeps the active segment.
    log.prune_below(u64::MAX).unwrap();
    assert!(log.read(399).unwrap().is_some());
    drop(log);
    let log = Log::open(dir.path(), small()).unwrap();
    assert!(log.first_seq() >= first);
    assert_eq!(log.next_seq(), 400);
    assert_eq!(&*log.read(399).unwrap().unwrap(), &payload(399, len_of(399))[..]);
}

#[test]
fn a_directory_is_locked_by_its_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    assert!(matches!(Log::open(dir.path(), small()), Err(Error::Locked { .. })));
    drop(log);
    Log::open(dir.path(), small()).unwrap();
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    log.append_durable(b"x").unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn group_commit_from_many_threads_acknowledges_only_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..200u64 {
                    let body = format!("thread {t} record {i}");
                    let seq = log.append_durable(body.as_bytes()).unwrap();
                    // Acknowledged means durable.
                    assert!(log.durable_seq().unwrap() >= seq);
                    mine.push((seq, body));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(u64, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    assert_eq!(all.len(), 800);
    for (i, (seq, _)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64, "sequence numbers are dense and unique");
    }
    drop(log);
    let log = Log::open(dir.path(), small()).unwrap();
    for (seq, body) in all {
        assert_eq!(&*log.read(seq).unwrap().unwrap(), body.as_bytes());
    }
}

#[test]
fn wait_durable_on_an_unappended_seq_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small()).unwrap();
    assert!(matches!(log.wait_durable(0), Err(Error::NotAppended { seq: 0, next: 0 })));
    assert_eq!(log.sync().unwrap(), None);
}

/// Readers iterate and read while writers append and a pruner deletes old segments:
/// every record a reader sees is exactly what was appended at that sequence number.
#[test]
fn concurrent_readers_writers_and_pruning_see_consistent_records() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Config { segment_size: 32 << 10, ..small() }).unwrap());
    let body = |seq: u64| payload(seq, (seq as usize * 37) % 900);
    let done = Arc::new(AtomicBool::new(false));
    // Sequence numbers are assigned under the log's lock, so a writer must know its seq
    // before choosing the payload: one writer appends, the other syncs.
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for seq in 0..3000u64 {
                assert_eq!(log.append(&body(seq)).unwrap(), seq);
                if seq % 7 == 0 {
                    log.sync().unwrap();
                }
            }
        })
    };
    let syncer = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                log.sync().unwrap();
                std::thread::yield_now();
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !done.load(Ordering::Acquire) {
                    let from = log.first_seq() + k;
                    for r in log.iter_from(from).take(200) {
                        let r = r.unwrap();
                        assert_eq!(&*r, &body(r.seq())[..], "seq {}", r.seq());
                        seen += 1;
                    }
                    let n = log.next_seq();
                    if n > 0
                        && let Some(r) = log.read(n - 1).unwrap()
                    {
                        assert_eq!(&*r, &body(n - 1)[..]);
                    }
                }
                seen
            })
        })
        .collect();
    let pruner = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut pruned = 0;
            while !done.load(Ordering::Acquire) {
                pruned += log.prune_below(log.durable_seq().unwrap_or(0).saturating_sub(500)).unwrap();
                std::thread::yield_now();
            }
            pruned
        })
    };
    writer.join().unwrap();
    done.store(true, Ordering::Release);
    syncer.join().unwrap();
    let seen: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let pruned = pruner.join().unwrap();
    assert!(seen > 0 && pruned > 0, "seen {seen}, pruned {pruned}");
    log.sync().unwrap();
    assert_eq!(log.next_seq(), 3000);
    for r in log.iter_from(0) {
        let r = r.unwrap();
        assert_eq!(&*r, &body(r.seq())[..]);
    }
}

#[test]
fn log_and_records_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Log>();
    send_sync::<Log<lamina_store::MemStorage>>();
    send_sync::<lamina_store::Record>();
}

#[test]
fn a_changed_segment_size_applies_to_new_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for seq in 0..100 {
            log.append(&payload(seq, len_of(seq))).unwrap();
        }
        log.close().unwrap();
    }
    let bigger = Config { segment_size: 256 << 10, max_record_size: 64 << 10, ..small() };
    let log = Log::open(dir.path(), bigger.clone()).unwrap();
    for seq in 100..400 {
        log.append(&payload(seq, len_of(seq))).unwrap();
    }
    log.append(&vec![9u8; 64 << 10]).unwrap();
    log.close().unwrap();
    let log = Log::open(dir.path(), bigger).unwrap();
    for seq in 0..400 {
        assert_eq!(&*log.read(seq).unwrap().unwrap(), &payload(seq, len_of(seq))[..]);
    }
    assert_eq!(log.read(400).unwrap().unwrap().len(), 64 << 10);
    let sizes: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.contains(&(64 << 10)) && sizes.contains(&(256 << 10)), "{sizes:?}");
}
