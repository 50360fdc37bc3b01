#![allow(clippy::unwrap_used)]
//! Kill -9 at random points loses nothing that was reported committed, including while
//! snapshots are written and records and receipts pruned (a snapshot every 4 heights,
//! a retention window of 6, small record segments).
//!
//! The test re-runs its own binary as a child (`exec_child`, through `TestChild`) that
//! follows an on-disk log fixture and prints `COMMITTED <height> <state root>` whenever
//! its committed height moves. The parent SIGKILLs it after a random number of lines,
//! reopens the store in-process, and checks that the node is at or past every reported
//! height with the reference root; then the next child continues on the same store.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use lamina_execution_core::ledger;
use lamina_execution_service::ExecutionNode;
use lamina_execution_service::adapters::{FileLog, RecordingSettlement};
use lamina_interfaces::Health;
use lamina_primitives::Height;
use lamina_test_utils::child::{self, TestChild};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

const HEIGHTS: u64 = 60;

fn crash_config() -> lamina_execution_service::Config {
    lamina_execution_service::Config {
        snapshot_every: 4,
        keep_snapshots: 2,
        retain_heights: 6,
        segment_kib: 64,
        index_epoch_heights: 2,
        // Flushes from the follower too, not only at snapshots.
        index_flush_receipts: 8,
        ..config()
    }
}

/// Every receipt of every retained record is in the index, at its height or a later
/// one (a transaction included again).
fn index_matches_records(node: &ExecutionNode) {
    let shared = node.shared();
    let v = shared.read();
    let (mut h, mut n) = (v.retained_from, 0);
    while h <= v.height {
        if let Some(r) = v.records.get::<ledger::LedgerFailure>(h).unwrap() {
            for rc in &r.receipts {
                let e = v.index.get::<ledger::LedgerFailure>(&rc.tx_id).unwrap().unwrap_or_else(|| {
                    panic!(
                        "receipt {} of height {h} not indexed (retained {}..={}, index retained from {}, indexed to {})",
                        rc.tx_id,
                        v.retained_from,
                        v.height,
                        v.index.retained_from().unwrap(),
                        v.index.indexed().unwrap()
                    )
                });
                assert!(e.height >= h, "receipt of {} indexed at {}", h, e.height);
                n += 1;
            }
        }
        h = h.next();
    }
    assert!(v.height.0 < 8 || n > 0, "retained heights hold receipts");
}

/// The child: follows the log fixture under the directory it is started with and
/// reports each committed height, until killed. An empty test in a normal run.
#[test]
fn exec_child() {
    let Some(dir) = child::spec::<PathBuf>("exec_child") else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let f = fixture(HEIGHTS).await;
        let base = dir.as_path();
        let log = FileLog::open(&base.join("log")).unwrap();
        let mut node = ExecutionNode::open(&base.join("exec"), &f.genesis, CHAIN, exec_key(), &crash_config()).unwrap();
        let shared = node.shared();
        tokio::spawn(async move {
            let mut last = u64::MAX;
            loop {
                let (h, root) = {
                    let v = shared.read();
                    (v.height.0, v.state_root)
                };
                if h != last {
                    println!("COMMITTED {h} {root}");
                    last = h;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let stop = CancellationToken::new();
        node.follow(&log, &f.da, &RecordingSettlement::default(), &Health::new(), &stop).await.unwrap();
    });
}

#[test]
fn kill_9_loses_nothing_reported_committed() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = rt.block_on(fixture(HEIGHTS));
    let want = reference_roots(&f);
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileLog::open(&dir.path().join("log")).unwrap();
        for b in &f.blocks {
            log.append(b).unwrap();
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(std::process::id() as u64);
    let rounds = if std::env::var("LAMINA_LONG_TESTS").is_ok() { 12 } else { 4 };
    let mut reached = 0;
    for round in 0..rounds {
        let mut child = TestChild::piped("exec_child", &dir.path());
        let kill_after = rng.random_range(2..12);
        let mut reported: Option<(u64, String)> = None;
        let mut seen = 0;
        while let Some(rest) = child.wait_for("COMMITTED ", Duration::from_secs(120)) {
            let mut it = rest.split(' ');
            let h: u64 = it.next().unwrap().parse().unwrap();
            reported = Some((h, it.next().unwrap().to_string()));
            seen += 1;
            if seen >= kill_after || h == HEIGHTS {
                break;
            }
        }
        child.kill(); // SIGKILL
        let (h, root) = reported.expect("child reported nothing");
        if h > 0 {
            assert_eq!(root, want[h as usize - 1].to_hex(), "round {round}: reported root at {h}");
        }
        // Reopen: nothing reported is lost, and the store replays to the reference.
        let node =
            ExecutionNode::open(&dir.path().join("exec"), &f.genesis, CHAIN, exec_key(), &crash_config()).unwrap();
        let now = node.height().0;
        assert!(now >= h, "round {round}: reported {h}, recovered {now}");
        if now > 0 {
            assert_eq!(node.shared().read().state_root, want[now as usize - 1]);
        }
        eprintln!("round {round}: killed after reporting {h}, recovered at {now}");
        assert!(now >= reached);
        index_matches_records(&node);
        reached = now;
        node.close().unwrap();
    }
    // Finish in-process.
    rt.block_on(async {
        let log = FileLog::open(&dir.path().join("log")).unwrap();
        let mut node =
            ExecutionNode::open(&dir.path().join("exec"), &f.genesis, CHAIN, exec_key(), &crash_config()).unwrap();
        let stop = CancellationToken::new();
        let shared = node.shared();
        let s2 = stop.clone();
        let w = tokio::spawn(async move {
            while shared.read().height < Height(HEIGHTS) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s2.cancel();
        });
        node.follow(&log, &f.da, &RecordingSettlement::default(), &Health::new(), &stop).await.unwrap();
        w.await.unwrap();
        assert_eq!(node.shared().read().state_root, want[HEIGHTS as usize - 1]);
        index_matches_records(&node);
    });
}
