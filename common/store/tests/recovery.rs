#![allow(clippy::unwrap_used)]
//! Recovery: torn tails are truncated to a prefix, damage below the durable watermark is
//! a typed error, arbitrary disk bytes never panic.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lamina_store::{Config, CrashMode, Error, Log, MemStorage, format::DATA_START};
use proptest::prelude::*;

const RECORD_HEADER: u64 = 40;

fn cfg(segment_size: u64) -> Config {
    Config { segment_size, max_record_size: 4 << 10, write_buffer: 4 << 10, verify_reads: true, ..Config::default() }
}

fn payload(seq: u64) -> Vec<u8> {
    let len = (seq as usize * 131) % 700;
    (0..len).map(|i| (seq as usize * 31 + i * 7) as u8).collect()
}

fn seg0(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.seg", 0))
}

/// Appends `n` records in one 1 MiB segment without syncing, then drops the log: the file
/// holds them, but no watermark or claim covers any of them.
fn unsynced_log(dir: &Path, n: u64) -> Vec<u64> {
    let log = Log::open(dir, cfg(1 << 20)).unwrap();
    let mut ends = Vec::new();
    let mut end = DATA_START;
    for seq in 0..n {
        log.append(&payload(seq)).unwrap();
        end += RECORD_HEADER + payload(seq).len() as u64;
        ends.push(end);
    }
    drop(log);
    ends
}

fn check_prefix<S: lamina_store::Storage>(log: &Log<S>, n: u64) {
    assert_eq!(log.next_seq(), n);
    for seq in log.first_seq()..n {
        assert_eq!(&*log.read(seq).unwrap().unwrap(), &payload(seq)[..], "seq {seq}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Cutting the file at any byte after the segment header keeps exactly the records
    /// that lie wholly before the cut, reports the partial one, and stays appendable.
    #[test]
    fn truncation_at_any_byte_keeps_a_prefix(n in 1u64..60, cut_frac in 0.0f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let ends = unsynced_log(dir.path(), n);
        let total = *ends.last().unwrap();
        let cut = DATA_START + ((total - DATA_START) as f64 * cut_frac) as u64;
        let f = OpenOptions::new().write(true).open(seg0(dir.path())).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let log = Log::open(dir.path(), cfg(1 << 20)).unwrap();
        let kept = ends.iter().filter(|&&e| e <= cut).count() as u64;
        check_prefix(&log, kept);
        let kept_end = if kept == 0 { DATA_START } else { ends[kept as usize - 1] };
        let rep = log.recovery().clone();
        // The partial record's bytes (if any non-zero survived the cut) are reported.
        if cut >= kept_end + 8 {
            prop_assert!(rep.truncated.is_some(), "a partial record with its magic was discarded");
        }
        if let Some(t) = rep.truncated {
            prop_assert_eq!((t.offset, t.seq), (kept_end, kept));
            prop_assert!(t.bytes > 0 && t.bytes <= cut - kept_end);
        } else {
            prop_assert!(cut < kept_end + 8);
        }
        // Appendable, and the new record survives a reopen.
        prop_assert_eq!(log.append_durable(&payload(kept)).unwrap(), kept);
        drop(log);
        let log = Log::open(dir.path(), cfg(1 << 20)).unwrap();
        check_prefix(&log, kept + 1);
    }

    /// Flipping any bit of any durable record is reported as corruption at open.
    #[test]
    fn a_flipped_bit_below_the_watermark_is_corruption(n in 2u64..40, pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), cfg(1 << 20)).unwrap();
        let mut end = DATA_START;
        for seq in 0..n {
            log.append(&payload(seq)).unwrap();
            end += RECORD_HEADER + payload(seq).len() as u64;
        }
        log.sync().unwrap();
        drop(log);
        let at = DATA_START + pick.index((end - DATA_START) as usize) as u64;
        let f = OpenOptions::new().read(true).write(true).open(seg0(dir.path())).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 1 << bit;
        f.write_all_at(&b, at).unwrap();
        drop(f);
        match Log::open(dir.path(), cfg(1 << 20)) {
            Err(Error::Corruption { segment: 0, .. }) => {}
            other => prop_assert!(false, "expected corruption, got {:?}", other.map(|l| l.recovery().clone())),
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes in segment files never panic recovery; whatever opens yields only
    /// records that were really appended.
    #[test]
    fn arbitrary_segment_bytes_never_panic(
        n in 0u64..40,
        sync_at in 0u64..40,
        damage in prop::collection::vec((0usize..70_000, prop::collection::vec(any::<u8>(), 1..64)), 0..6),
        random_file in prop::option::of(prop::collection::vec(any::<u8>(), 0..20_000)),
    ) {
        let storage = MemStorage::new();
        {
            let log = Log::open_with(storage.clone(), cfg(32 << 10)).unwrap();
            for seq in 0..n {
                log.append(&payload(seq)).unwrap();
                if seq == sync_at {
                    log.sync().unwrap();
                }
            }
        }
        let ids = storage.ids();
        for (i, (at, bytes)) in damage.iter().enumerate() {
            let id = ids[i % ids.len()];
            let mut file = storage.contents(id).unwrap();
            let at = at % file.len();
            let end = (at + bytes.len()).min(file.len());
            file[at..end].copy_from_slice(&bytes[..end - at]);
            storage.put(id, &file);
        }
        if let Some(bytes) = random_file {
            storage.put(ids.last().unwrap() + 1, &bytes);
        }
        if let Ok(log) = Log::open_with(storage.clone(), cfg(32 << 10)) {
            for r in log.iter_from(0) {
                match r {
                    Ok(r) => prop_assert_eq!(&*r, &payload(r.seq())[..]),
                    Err(e) => prop_assert!(e.is_corruption()),
                }
            }
            // Still appendable unless a read-back error made us stop early.
            let next = log.next_seq();
            prop_assert_eq!(log.append(b"x").unwrap(), next);
        }
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_detected() {
    let storage = MemStorage::new();
    {
        let log = Log::open_with(storage.clone(), cfg(32 << 10)).unwrap();
        for seq in 0..300 {
            log.append(&payload(seq)).unwrap();
        }
        log.close().unwrap();
    }
    assert!(storage.ids().len() > 3);
    let clean = storage.contents(1).unwrap();
    let last_nonzero = clean.iter().rposition(|&b| b != 0).unwrap();
    // A payload byte of the last record of segment 1 (followed by segment 2).
    let mut f = clean.clone();
    f[last_nonzero] ^= 0x10;
    storage.put(1, &f);
    let verify_all = Config { verify_sealed_on_open: true, ..cfg(32 << 10) };
    assert!(matches!(Log::open_with(storage.clone(), verify_all), Err(Error::Corruption { segment: 1, .. })));
    // Default: the sealed segment is a known-good point; the damage is found on read.
    let log = Log::open_with(storage.clone(), cfg(32 << 10)).unwrap();
    let errors: Vec<_> = log.iter_from(0).filter_map(Result::err).collect();
    assert!(matches!(errors.as_slice(), [Error::Corruption { segment: 1, .. }]), "{errors:?}");
    drop(log);
    // A damaged record header breaks the walk to the seal: corruption at open.
    let mut f = clean.clone();
    let second =
        DATA_START as usize + 40 + u32::from_le_bytes(f[DATA_START as usize..][..4].try_into().unwrap()) as usize;
    f[second + 8] ^= 1; // its sequence number
    storage.put(1, &f);
    assert!(matches!(Log::open_with(storage.clone(), cfg(32 << 10)), Err(Error::Corruption { segment: 1, .. })));
    // Restored, everything opens and verifies.
    storage.put(1, &clean);
    let log = Log::open_with(storage, cfg(32 << 10)).unwrap();
    assert_eq!(log.iter_from(0).filter(|r| r.is_ok()).count(), 300);
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let storage = MemStorage::new();
    {
        let log = Log::open_with(storage.clone(), cfg(32 << 10)).unwrap();
        for seq in 0..300 {
            log.append(&payload(seq)).unwrap();
        }
        log.close().unwrap();
    }
    lamina_store::Storage::remove(&storage, &[2]).unwrap();
    assert!(matches!(Log::open_with(storage, cfg(32 << 10)), Err(Error::Corruption { .. })));
}

#[test]
fn a_segment_of_another_log_is_rejected() {
    let a = MemStorage::new();
    let b = MemStorage::new();
    for s in [&a, &b] {
        let log = Log::open_with(s.clone(), cfg(32 << 10)).unwrap();
        for seq in 0..300 {
            log.append(&payload(seq)).unwrap();
        }
        log.close().unwrap();
    }
    a.put(1, &b.contents(1).unwrap());
    assert!(matches!(Log::open_with(a, cfg(32 << 10)), Err(Error::Corruption { segment: 1, .. })));
}

/// The watermark slots were lost (as after a power loss that dropped their writes), but
/// records written after a damaged one still claim it was durable.
#[test]
fn later_records_prove_durability_when_the_watermark_slots_are_lost() {
    let make = |damage: bool| {
        let storage = MemStorage::new();
        {
            let log = Log::open_with(storage.clone(), cfg(1 << 20)).unwrap();
            for seq in 0..10 {
                log.append(&payload(seq)).unwrap();
            }
            log.sync().unwrap();
            for seq in 10..20 {
                log.append(&payload(seq)).unwrap();
            }
            // Dropped unsynced: the slot after the first sync is the only watermark.
        }
        let mut f = storage.contents(0).unwrap();
        f[4096..3 * 4096].fill(0);
        if damage {
            // A payload byte of record 5 (payload(5) is 655 bytes long).
            let mut at = DATA_START as usize;
            for seq in 0..5 {
                at += 40 + payload(seq).len();
            }
            f[at + 40 + 100] ^= 1;
        }
        storage.put(0, &f);
        Log::open_with(storage, cfg(1 << 20))
    };
    let clean = make(false).unwrap();
    assert_eq!(clean.next_seq(), 20);
    assert_eq!(clean.recovery().durable_watermark, 10, "claims of records 10.. say 0..10 were durable");
    match make(true) {
        Err(Error::Corruption { seq: Some(5), .. }) => {}
        other => panic!("expected corruption at 5, got {:?}", other.map(|l| l.recovery().clone())),
    }
}

#[test]
fn a_read_of_damaged_bytes_is_corruption_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), cfg(1 << 20)).unwrap();
    for seq in 0..10 {
        log.append(&payload(seq)).unwrap();
    }
    log.sync().unwrap();
    // Damage record 3's payload behind the log's back (no slice of it is alive).
    let mut at = DATA_START;
    for seq in 0..3 {
        at += RECORD_HEADER + payload(seq).len() as u64;
    }
    let f = OpenOptions::new().write(true).open(seg0(dir.path())).unwrap();
    f.write_all_at(&[0xAA], at + RECORD_HEADER + 10).unwrap();
    assert!(matches!(log.read(3), Err(Error::Corruption { seq: Some(3), .. })));
    assert!(log.read(2).unwrap().is_some());
    let errs: Vec<_> = log.iter_from(0).filter_map(|r| r.err()).collect();
    assert_eq!(errs.len(), 1);
}

#[test]
fn crash_modes_keep_every_acknowledged_record() {
    for mode in [CrashMode::KeepAll, CrashMode::DropAll, CrashMode::TornPrefix, CrashMode::RandomSectors] {
        for seed in 0..40u64 {
            let mut storage = MemStorage::new();
            let mut acked: u64 = 0; // records below this are acknowledged durable
            let mut next = 0u64;
            for round in 0..3u64 {
                let log = Log::open_with(storage.clone(), cfg(32 << 10)).unwrap();
                assert!(log.next_seq() >= acked, "{mode:?} seed {seed}: lost acknowledged records");
                next = log.next_seq();
                check_prefix(&log, next);
                let ops = 20 + (seed * 7 + round * 13) % 60;
                for i in 0..ops {
                    assert_eq!(log.append(&payload(next)).unwrap(), next);
                    next += 1;
                    if (i + seed + round) % 9 == 0 {
                        acked = log.sync().unwrap().unwrap() + 1;
                    }
                }
                storage = storage.crash(mode, seed * 3 + round);
            }
            let log = Log::open_with(storage, cfg(32 << 10)).unwrap();
            assert!(log.next_seq() >= acked && log.next_seq() <= next);
            check_prefix(&log, log.next_seq());
        }
    }
}
