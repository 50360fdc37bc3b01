#![allow(clippy::unwrap_used)]
//! The fault seam: failed syncs and writes are fatal (fail-stop) and never acknowledged.

use std::sync::Arc;

use lamina_store::{Config, CrashMode, Error, Faults, Log, MemStorage};

fn cfg() -> Config {
    Config {
        segment_size: 32 << 10,
        max_record_size: 4 << 10,
        write_buffer: 2 << 10,
        verify_reads: true,
        ..Config::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    format!("record {seq} ").repeat(1 + (seq as usize % 40)).into_bytes()
}

#[test]
fn a_failed_sync_is_fatal_and_acknowledges_nothing() {
    let storage = MemStorage::new();
    let log = Log::open_with(storage.clone(), cfg()).unwrap();
    for seq in 0..10 {
        log.append(&payload(seq)).unwrap();
    }
    assert_eq!(log.sync().unwrap(), Some(9));
    storage.set_faults(Faults { fail_sync_from: Some(storage.sync_count()), ..Faults::default() });
    for seq in 10..20 {
        log.append(&payload(seq)).unwrap();
    }
    assert!(matches!(log.sync(), Err(Error::Io { .. })));
    assert!(log.is_failed());
    assert_eq!(log.durable_seq(), Some(9), "the failed sync acknowledged nothing");
    // Fail-stop: no retry, no further appends or syncs, even after the disk "recovers".
    storage.set_faults(Faults::default());
    assert!(matches!(log.sync(), Err(Error::Failed { .. })));
    assert!(matches!(log.append(b"more"), Err(Error::Failed { .. })));
    assert!(matches!(log.wait_durable(15), Err(Error::Failed { .. })));
    // What was durable stays readable and durable.
    assert!(log.wait_durable(9).is_ok());
    assert_eq!(&*log.read(3).unwrap().unwrap(), &payload(3)[..]);
    drop(log);
    let log = Log::open_with(storage.crash(CrashMode::DropAll, 1), cfg()).unwrap();
    assert_eq!(log.next_seq(), 10);
    for seq in 0..10 {
        assert_eq!(&*log.read(seq).unwrap().unwrap(), &payload(seq)[..]);
    }
}

#[test]
fn a_failed_sync_during_rotation_is_fatal() {
    let storage = MemStorage::new();
    let log = Log::open_with(storage.clone(), cfg()).unwrap();
    storage.set_faults(Faults { fail_sync_from: Some(storage.sync_count()), ..Faults::default() });
    let mut err = None;
    for seq in 0..1000 {
        if let Err(e) = log.append(&payload(seq)) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(Error::Io { .. })), "rotation must sync and fail: {err:?}");
    assert_eq!(log.durable_seq(), None);
    assert!(matches!(log.append(b"x"), Err(Error::Failed { .. })));
    assert_eq!(storage.ids(), vec![0], "no new segment after a failed sync");
}

#[test]
fn a_failed_write_is_fatal() {
    let storage = MemStorage::new();
    let log = Log::open_with(storage.clone(), cfg()).unwrap();
    log.append_durable(&payload(0)).unwrap();
    storage.set_faults(Faults { fail_write_from: Some(storage.write_count()), ..Faults::default() });
    log.append(&payload(1)).unwrap(); // buffered only
    assert!(matches!(log.sync(), Err(Error::Io { .. })));
    assert!(matches!(log.append(b"x"), Err(Error::Failed { .. })));
    assert_eq!(log.durable_seq(), Some(0));
    drop(log);
    for mode in [CrashMode::KeepAll, CrashMode::RandomSectors] {
        let log = Log::open_with(storage.crash(mode, 7), cfg()).unwrap();
        assert_eq!(log.next_seq(), 1, "the half-written record is a torn tail");
        assert_eq!(&*log.read(0).unwrap().unwrap(), &payload(0)[..]);
    }
}

/// Many threads in group commit when the disk starts failing: every thread gets an error,
/// and everything any thread saw acknowledged survives a crash that drops unsynced data.
#[test]
fn group_commit_under_sync_failure_never_acknowledges_lost_records() {
    for seed in 0..20u64 {
        let storage = MemStorage::new();
        let log = Arc::new(Log::open_with(storage.clone(), cfg()).unwrap());
        storage.set_faults(Faults { fail_sync_from: Some(storage.sync_count() + 3 + seed % 17), ..Faults::default() });
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..10_000u64 {
                        let body = format!("t{t} i{i}");
                        match log.append_durable(body.as_bytes()) {
                            Ok(seq) => acked.push((seq, body)),
                            Err(Error::Io { .. } | Error::Failed { .. }) => return acked,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                    panic!("the injected sync failure never surfaced");
                })
            })
            .collect();
        let acked: Vec<_> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let durable = log.durable_seq();
        assert!(acked.iter().all(|(s, _)| Some(*s) <= durable));
        drop(log);
        let log = Log::open_with(storage.crash(CrashMode::DropAll, seed), cfg()).unwrap();
        for (seq, body) in acked {
            assert_eq!(&*log.read(seq).unwrap().unwrap(), body.as_bytes(), "seed {seed}");
        }
    }
}
