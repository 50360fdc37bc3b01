#![allow(clippy::unwrap_used)]
//! The follower on an in-process log and on the on-disk log fixture: executes exactly
//! like the reference, restarts where it stopped, rebuilds from a wiped store, answers
//! queries, posts claims.

mod common;

use std::time::Duration;

use common::*;
use lamina_execution_core::ledger::{self, AssetId};
use lamina_execution_core::state;
use lamina_execution_service::adapters::{FileLog, RecordingSettlement};
use lamina_execution_service::query::{self, QueryRequest, QueryResponse};
use lamina_execution_service::snapshot;
use lamina_execution_service::{Error, ExecutionNode};
use lamina_interfaces::{Health, InMemoryLog};
use lamina_primitives::{Height, Keypair};
use tokio_util::sync::CancellationToken;

async fn follow_until(
    node: &mut ExecutionNode,
    log: &impl lamina_interfaces::OrderedLog,
    da: &lamina_test_utils::FakeDa,
    settlement: &RecordingSettlement,
    target: u64,
) {
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        let shared = node.shared();
        tokio::spawn(async move {
            while shared.read().height.0 < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
        })
    };
    tokio::time::timeout(Duration::from_secs(60), node.follow(log, da, settlement, &Health::new(), &stop))
        .await
        .expect("follow timed out")
        .unwrap();
    watcher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_in_memory_log_and_matches_reference() {
    let f = fixture(24).await;
    let want = reference_roots(&f);
    let dir = tempfile::tempdir().unwrap();
    let log = InMemoryLog::new();
    for b in &f.blocks {
        log.append(b.clone()).unwrap();
    }
    let settlement = RecordingSettlement::default();
    let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config()).unwrap();
    follow_until(&mut node, &log, &f.da, &settlement, 24).await;
    let shared = node.shared();
    {
        let v = shared.read();
        assert_eq!(v.height, Height(24));
        assert_eq!(v.state_root, want[23]);
    }
    // Claims: one per height with data (claim_every 1), chained, with the reference
    // roots, the last one at 24; none dropped.
    let steps = reference_steps(&f);
    let claims = check_claim_chain(&settlement.0.lock().unwrap(), &steps, false);
    assert_eq!(claims.len(), steps.iter().flatten().count());
    assert_eq!(claims.last().unwrap().to, Height(24));
    assert_eq!(claims.last().unwrap().id(), node.last_claim());
    assert_eq!(claims.last().unwrap().params, f.genesis.chain(CHAIN).unwrap().params_digest());
    assert_eq!(claims.last().unwrap().network, f.genesis.network_id());
    // Queries: receipts of included transactions, balances with proofs, HTTP.
    let tx = &f.chain_txs[0][0];
    match query::answer(&shared, &QueryRequest::Receipt(tx.id())) {
        QueryResponse::Receipt(Some((h, r))) => {
            assert_eq!(h, Height(1));
            assert_eq!(r.tx_id, tx.id());
        }
        other => panic!("no receipt: {other:?}"),
    }
    // Outcomes: every committed receipt of heights >= 2, in height order, none of height 1.
    match query::answer(&shared, &QueryRequest::Outcomes(Height(2))) {
        QueryResponse::Outcomes(h, blocks) => {
            assert_eq!(h, Height(24));
            assert!(!blocks.is_empty());
            assert!(blocks.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(blocks.iter().all(|(bh, _)| bh.0 >= 2));
            let index = shared.read().index.clone();
            for (bh, list) in &blocks {
                for (id, kind) in list {
                    let e = index.get::<ledger::LedgerFailure>(id).unwrap().unwrap();
                    assert_eq!(e.height, *bh);
                    assert_eq!(*kind, e.receipt.commitment_bytes()[32]);
                }
            }
            assert!(!blocks.iter().any(|(_, l)| l.iter().any(|(id, _)| *id == tx.id())));
        }
        other => panic!("no outcomes: {other:?}"),
    }
    let acct = Keypair::for_testing(SEED + 3).public();
    match query::answer(&shared, &QueryRequest::BalanceProof(acct, AssetId::NATIVE)) {
        QueryResponse::BalanceProof(info, amount, proof) => {
            assert_eq!(info.state_root, want[23]);
            state::verify_counter(&info.state_root, &ledger::balance_key(&acct, AssetId::NATIVE), amount, &proof)
                .unwrap();
        }
        other => panic!("no proof: {other:?}"),
    }
    let (code, body) = query::route(&shared, &format!("/balance/{}", acct.to_hex()));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["height"], 24);
    let (code, _) = query::route(&shared, "/balance/zz");
    assert_eq!(code, 400);
    // Any key, as a chain builder's machine is read: the same balance as a raw counter.
    let key = ledger::balance_key(&acct, AssetId::NATIVE);
    let balance = ledger::balance(&shared.read().state, &acct, AssetId::NATIVE);
    assert!(balance > 0);
    assert_eq!(query::answer(&shared, &QueryRequest::Counter(key)), QueryResponse::Counter(Height(24), balance));
    let key_hex = hex::encode(key.raw().0);
    let (code, body) = query::route(&shared, &format!("/counter/{key_hex}"));
    assert_eq!((code, body["value"].as_str()), (200, Some(balance.to_string().as_str())), "{body}");
    let (code, body) = query::route(&shared, &format!("/data/{key_hex}"));
    assert_eq!(code, 400, "a counter key is not a data key: {body}");
    let (code, _) = query::route(&shared, "/counter/abcd");
    assert_eq!(code, 400);
    let (code, _) = query::route(&shared, &format!("/receipt/{}", lamina_primitives::Digest([7; 32]).to_hex()));
    assert_eq!(code, 404);
    // Real HTTP over a socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(query::serve_http(listener, shared.clone(), stop.clone()));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET /nonce/{} HTTP/1.1\r\nhost: x\r\n\r\n", acct.to_hex()).as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"nonce\""), "{resp}");
    stop.cancel();
    server.await.unwrap();
    node.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_where_it_stopped_and_rebuilds_after_wipe() {
    let f = fixture(30).await;
    let want = reference_roots(&f);
    let dir = tempfile::tempdir().unwrap();
    let logdir = tempfile::tempdir().unwrap();
    let log = FileLog::open(logdir.path()).unwrap();
    for b in &f.blocks[..12] {
        log.append(b).unwrap();
    }
    let settlement = RecordingSettlement::default();
    let data = dir.path().join("exec");
    {
        let mut node = ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config()).unwrap();
        follow_until(&mut node, &log, &f.da, &settlement, 12).await;
        node.close().unwrap();
    }
    // Restart: resumes at 12 without re-executing, then continues.
    for b in &f.blocks[12..] {
        log.append(b).unwrap();
    }
    {
        let mut node = ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config()).unwrap();
        assert_eq!(node.height(), Height(12));
        assert_eq!(node.shared().read().state_root, want[11]);
        follow_until(&mut node, &log, &f.da, &settlement, 30).await;
        assert_eq!(node.shared().read().state_root, want[29]);
        node.close().unwrap();
    }
    // Wipe: rebuild by replaying the log from height 1.
    std::fs::remove_dir_all(&data).unwrap();
    {
        let mut node = ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config()).unwrap();
        assert_eq!(node.height(), Height(0));
        follow_until(&mut node, &log, &f.da, &settlement, 30).await;
        assert_eq!(node.shared().read().state_root, want[29]);
        node.close().unwrap();
    }
    // A store written under another genesis is refused.
    let mut other = f.genesis.clone();
    other.network = "another".into();
    assert!(matches!(ExecutionNode::open(&data, &other, CHAIN, exec_key(), &config()), Err(Error::BadStore(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_blocks_with_bad_certificates_or_gaps() {
    let f = fixture(3).await;
    let dir = tempfile::tempdir().unwrap();
    let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config()).unwrap();
    let stop = CancellationToken::new();
    // A gap.
    assert!(matches!(node.process(&f.blocks[1], &f.da, &stop).await, Err(Error::Log(_))));
    // A forged finality certificate.
    let mut forged = f.blocks[0].clone();
    forged.certificate.signatures[0].0[0] ^= 1;
    assert!(matches!(node.process(&forged, &f.da, &stop).await, Err(Error::Log(_))));
    // A tampered payload (header no longer commits to the batches).
    let mut tampered = f.blocks[0].clone();
    tampered.block.batches.clear();
    assert!(matches!(node.process(&tampered, &f.da, &stop).await, Err(Error::Log(_))));
    assert_eq!(node.height(), Height(0));
    node.process(&f.blocks[0], &f.da, &stop).await.unwrap();
    assert_eq!(node.height(), Height(1));
}

/// Claims are a pure function of the records and the key: a node restarted mid-way
/// (between cut points, with steps pending) makes exactly the claims of a node that ran
/// straight through, and every claim lists exactly the heights with data. With
/// `faulty_claims`, the claims are wrong but self-consistent, and the state is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_makes_the_same_claims() {
    let f = fixture(30).await;
    let steps = reference_steps(&f);
    let roots = reference_roots(&f);
    for faulty in [false, true] {
        let config = lamina_execution_service::Config { claim_every: 4, faulty_claims: faulty, ..config() };
        // Straight through.
        let straight = RecordingSettlement::default();
        let dir = tempfile::tempdir().unwrap();
        let log = InMemoryLog::new();
        for b in &f.blocks {
            log.append(b.clone()).unwrap();
        }
        let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config).unwrap();
        follow_until(&mut node, &log, &f.da, &straight, 30).await;
        assert_eq!(node.shared().read().state_root, roots[29], "the node's own state stays right");
        node.close().unwrap();
        let a = check_claim_chain(&straight.0.lock().unwrap(), &steps, faulty);
        assert!(a.iter().all(|c| c.to.0 % 4 == 0));
        assert_eq!(a.last().unwrap().to, Height(28));
        assert!(a.iter().any(|c| c.steps.len() > 1));
        // Stopped at 13 (steps 13 pending), restarted.
        let restarted = RecordingSettlement::default();
        let dir = tempfile::tempdir().unwrap();
        let logdir = tempfile::tempdir().unwrap();
        let flog = FileLog::open(logdir.path()).unwrap();
        for b in &f.blocks[..13] {
            flog.append(b).unwrap();
        }
        {
            let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config).unwrap();
            follow_until(&mut node, &flog, &f.da, &restarted, 13).await;
            node.close().unwrap();
        }
        for b in &f.blocks[13..] {
            flog.append(b).unwrap();
        }
        let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config).unwrap();
        assert_eq!(node.last_claim(), a.iter().find(|c| c.to == Height(12)).unwrap().id());
        follow_until(&mut node, &flog, &f.da, &restarted, 30).await;
        node.close().unwrap();
        let posted = restarted.0.lock().unwrap().clone();
        assert!(posted.len() > a.len(), "the last claims are posted again after a restart");
        let b = check_claim_chain(&posted, &steps, faulty);
        assert_eq!(a.iter().map(|c| c.id()).collect::<Vec<_>>(), b.iter().map(|c| c.id()).collect::<Vec<_>>());
    }
}

/// Long-lived nodes: snapshots every 5 heights (2 kept) and a retention window of 6
/// heights. A restart loads the newest snapshot and replays only the records after it;
/// pruned heights answer "pruned" and their receipts are gone; a damaged newest snapshot
/// falls back to the older one; an exported snapshot imported into an empty home starts
/// a node at its height that then follows the log (and claims nothing when the snapshot
/// is another key's); without the snapshot the pruned records are missing and the node
/// refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_restart_and_pruning_keeps_what_is_needed() {
    let f = fixture(36).await;
    let want = reference_roots(&f);
    let config = lamina_execution_service::Config {
        snapshot_every: 5,
        keep_snapshots: 2,
        retain_heights: 6,
        segment_kib: 64,
        index_epoch_heights: 4,
        // Flushes from the follower too, not only at snapshots.
        index_flush_receipts: 8,
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("exec");
    let log = InMemoryLog::new();
    for b in &f.blocks[..30] {
        log.append(b.clone()).unwrap();
    }
    let settlement = RecordingSettlement::default();
    let first_tx = f.chain_txs[0][0].id();
    {
        let mut node = ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config).unwrap();
        follow_until(&mut node, &log, &f.da, &settlement, 30).await;
        node.close().unwrap();
    }
    let snaps = snapshot::list(&data.join("snapshots"));
    assert_eq!(snaps.iter().map(|s| s.0.0).collect::<Vec<_>>(), vec![30, 25]);
    let node = ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config).unwrap();
    let shared = node.shared();
    let retained_from = {
        let v = shared.read();
        assert_eq!((v.height, v.state_root), (Height(30), want[29]));
        // Pruned below min(oldest kept 25, 30 - 6) + 1 = 25 (after the snapshot of 30), by
        // whole index tables of at most 4 heights each (where a table starts depends on
        // when the snapshots flushed the index): the table holding height 24 starts at
        // 21 at the earliest.
        assert!((21..=25).contains(&v.retained_from.0), "retained from {}", v.retained_from);
        v.retained_from
    };
    assert_eq!(query::answer(&shared, &QueryRequest::Receipt(first_tx)), QueryResponse::Receipt(None));
    assert_eq!(
        query::answer(&shared, &QueryRequest::BlockReceipts(Height(3), 0)),
        QueryResponse::Pruned(retained_from)
    );
    let (code, body) = query::route(&shared, "/block/3/receipts");
    assert_eq!(code, 410, "{body}");
    match query::answer(&shared, &QueryRequest::BlockReceipts(Height(28), 0)) {
        QueryResponse::BlockReceipts(committed, h, total, receipts) => {
            assert_eq!((committed, h, total as usize), (Height(30), Height(28), receipts.len()));
            let index = shared.read().index.clone();
            for r in &receipts {
                let e = index.get::<ledger::LedgerFailure>(&r.tx_id).unwrap().unwrap();
                assert_eq!((e.height, &e.receipt), (Height(28), r));
            }
        }
        other => panic!("no block receipts: {other:?}"),
    }
    // Export now (height 30) for the import below.
    let exported = dir.path().join("exported");
    let manifest = node.export_snapshot(&exported).unwrap();
    assert_eq!((manifest.height, manifest.state_root), (Height(30), want[29]));
    node.close().unwrap();
    drop(shared); // the view holds the index open

    for b in &f.blocks[30..] {
        log.append(b.clone()).unwrap();
    }
    // A damaged newest snapshot: the older one (25) is loaded and records 26.. replayed.
    let newest = &snaps[0].1;
    let chunk = newest.join("chunk-000000");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[10] ^= 0xFF;
    std::fs::write(&chunk, &bytes).unwrap();
    {
        let mut node = ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config).unwrap();
        assert_eq!((node.height(), node.shared().read().state_root), (Height(30), want[29]));
        follow_until(&mut node, &log, &f.da, &settlement, 36).await;
        assert_eq!(node.shared().read().state_root, want[35]);
        node.close().unwrap();
    }
    // Without any snapshot the records that were pruned are missing: a clear refusal.
    std::fs::remove_dir_all(data.join("snapshots")).unwrap();
    match ExecutionNode::open(&data, &f.genesis, CHAIN, exec_key(), &config) {
        Err(Error::BadStore(m)) => assert!(m.contains("snapshot"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Import into an empty home: starts at 30, follows the log to 36.
    let home = dir.path().join("imported");
    let name = snapshot::dir_name(Height(30));
    snapshot::copy(&exported.join(&name), &home.join("snapshots").join(&name), &f.genesis.digest(), CHAIN).unwrap();
    let mut node = ExecutionNode::open(&home, &f.genesis, CHAIN, exec_key(), &config).unwrap();
    assert_eq!((node.height(), node.shared().read().state_root), (Height(30), want[29]));
    assert_eq!(node.shared().read().retained_from, Height(31));
    follow_until(&mut node, &log, &f.da, &settlement, 36).await;
    assert_eq!(node.shared().read().state_root, want[35]);
    node.close().unwrap();

    // Imported under another key: the state is the same, but the node does not continue
    // a claim chain it did not make, so it claims nothing.
    let home = dir.path().join("imported-other-key");
    snapshot::copy(&exported.join(&name), &home.join("snapshots").join(&name), &f.genesis.digest(), CHAIN).unwrap();
    let other = lamina_primitives::Keypair::for_testing(77);
    let mut node = ExecutionNode::open(&home, &f.genesis, CHAIN, other, &config).unwrap();
    let quiet = RecordingSettlement::default();
    follow_until(&mut node, &log, &f.da, &quiet, 36).await;
    assert_eq!(node.shared().read().state_root, want[35]);
    assert!(quiet.0.lock().unwrap().is_empty(), "no claims from another node's claim chain");
    node.close().unwrap();
}

/// A registry that keeps (weakly) the holds taken on it and says it serves from `serves`.
struct FakeRegistry {
    serves: Height,
    positions: std::sync::Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>>,
}

impl lamina_interfaces::AnchorView for FakeRegistry {
    fn anchor(&self, _: lamina_primitives::ChainId, _: u64) -> Option<lamina_interfaces::FinalizedRoot> {
        None
    }
}

impl lamina_interfaces::AnchorRegistry for FakeRegistry {
    fn applied(&self) -> Height {
        Height(u64::MAX - 1)
    }
    fn serves_from(&self) -> Height {
        self.serves
    }
    fn hold(&self, from: Height) -> lamina_interfaces::AnchorHold {
        let (hold, at) = lamina_interfaces::AnchorHold::new(from);
        self.positions.lock().unwrap().push(at);
        hold
    }
}

impl FakeRegistry {
    fn new(serves: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FakeRegistry { serves: Height(serves), positions: Default::default() })
    }
    fn positions(&self) -> Vec<u64> {
        self.positions
            .lock()
            .unwrap()
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }
}

/// The node holds the anchor registry at its next height and moves the hold up as it
/// commits; a registry that already forgot what the next height may need is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_holds_the_anchor_registry_at_its_next_height() {
    let f = fixture(12).await;
    let dir = tempfile::tempdir().unwrap();
    let log = InMemoryLog::new();
    for b in &f.blocks {
        log.append(b.clone()).unwrap();
    }
    let registry = FakeRegistry::new(0);
    let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config()).unwrap();
    node.set_anchors(registry.clone()).unwrap();
    assert_eq!(registry.positions(), vec![1], "held at the next height");
    follow_until(&mut node, &log, &f.da, &RecordingSettlement::default(), 12).await;
    assert_eq!(registry.positions(), vec![13], "moved up with every durable height");
    drop(node);
    assert!(registry.positions().is_empty(), "a node that stops releases its hold");

    // Restarted at height 12, it needs the anchors of height 13 on: a registry serving
    // only from 14 is refused, one serving from 13 is fine.
    let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &config()).unwrap();
    let err = node.set_anchors(FakeRegistry::new(14)).unwrap_err().to_string();
    assert!(err.contains("forgot anchors") && err.contains("registry"), "{err}");
    node.set_anchors(FakeRegistry::new(13)).unwrap();
}

/// A reader of a live node never sees a retained height whose receipts are gone: the
/// view's lower bound moves before pruning drops receipts, and records go last. A
/// snapshot and a prune every 2 heights, while a thread checks the lowest retained
/// height without pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reader_never_sees_a_retained_height_without_its_receipts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const HEIGHTS: u64 = 40;
    let f = fixture(HEIGHTS).await;
    let config = lamina_execution_service::Config {
        snapshot_every: 2,
        keep_snapshots: 1,
        retain_heights: 2,
        segment_kib: 64,
        index_epoch_heights: 1,
        // Flushes from the follower too, not only at snapshots.
        index_flush_receipts: 8,
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = InMemoryLog::new();
    for b in &f.blocks {
        log.append(b.clone()).unwrap();
    }
    let mut node = ExecutionNode::open(&dir.path().join("exec"), &f.genesis, CHAIN, exec_key(), &config).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (shared, done) = (node.shared(), done.clone());
        std::thread::spawn(move || {
            let (mut checked, mut bounds) = (0u64, std::collections::BTreeSet::new());
            while !done.load(Ordering::Acquire) {
                let v = shared.read();
                let h = v.retained_from;
                bounds.insert(h);
                let Some(r) = v.records.get::<ledger::LedgerFailure>(h).unwrap() else { continue };
                for rc in &r.receipts {
                    let got = v.index.get::<ledger::LedgerFailure>(&rc.tx_id).unwrap();
                    assert!(got.is_some(), "height {h} is retained, but its receipt {} is gone", rc.tx_id);
                    checked += 1;
                }
            }
            (checked, bounds.len())
        })
    };
    follow_until(&mut node, &log, &f.da, &RecordingSettlement::default(), HEIGHTS).await;
    node.close().unwrap(); // waits for the last snapshot and prune
    done.store(true, Ordering::Release);
    let (checked, bounds) = reader.join().unwrap();
    assert!(checked > 0 && bounds >= 5, "the reader saw {bounds} lower bounds and checked {checked} receipts");
}

/// [`lamina_test_utils::FakeDa`] whose answers for some squares wait until `open` is
/// true; it remembers which squares were asked for.
#[derive(Clone)]
struct GatedDa {
    inner: lamina_test_utils::FakeDa,
    held: std::sync::Arc<std::collections::HashSet<lamina_primitives::Digest>>,
    open: tokio::sync::watch::Receiver<bool>,
    asked: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<lamina_primitives::Digest>>>,
}

impl GatedDa {
    fn asked_for(&self, roots: &[lamina_primitives::Digest]) -> bool {
        let asked = self.asked.lock().unwrap();
        roots.iter().all(|r| asked.contains(r))
    }
}

impl lamina_interfaces::DataAvailability for GatedDa {
    fn submit(
        &self,
        blobs: Vec<lamina_interfaces::Blob>,
    ) -> impl std::future::Future<
        Output = Result<lamina_primitives::AvailabilityCertificate, lamina_interfaces::DaError>,
    > + Send {
        self.inner.submit(blobs)
    }

    fn get_namespace(
        &self,
        commitment: &lamina_primitives::DataCommitment,
        namespace: lamina_primitives::Namespace,
    ) -> impl std::future::Future<Output = Result<Vec<Vec<u8>>, lamina_interfaces::DaError>> + Send {
        self.asked.lock().unwrap().insert(commitment.data_root);
        let held = self.held.contains(&commitment.data_root);
        let mut open = self.open.clone();
        let answer = self.inner.get_namespace(commitment, namespace);
        async move {
            if held {
                let _ = open.wait_for(|o| *o).await;
            }
            answer.await
        }
    }
}

fn data_roots(b: &lamina_primitives::FinalizedBlock) -> Vec<lamina_primitives::Digest> {
    b.block.batches.iter().map(|c| c.commitment.data_root).collect()
}

/// Verifying ahead keeps block order. Blocks are fetched up to 8 ahead and those
/// fetched already are verified as one stage; still, while one block's data is late,
/// the blocks before it commit and none after it does (though they are fetched), and
/// the run ends with the reference roots. A fetch that fails for a later block surfaces
/// only in that block's turn, after every block before it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_ahead_commits_in_order_around_a_late_or_failing_fetch() {
    const LATE: u64 = 7; // Carries one square (h % 5 is neither 0 nor 3).
    let f = fixture(16).await;
    let want = reference_roots(&f);
    let late_roots = data_roots(&f.blocks[LATE as usize - 1]);
    assert_eq!(late_roots.len(), 1);
    let after_roots = data_roots(&f.blocks[LATE as usize]);
    assert!(!after_roots.is_empty());
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let da = GatedDa {
        inner: f.da.clone(),
        held: std::sync::Arc::new(late_roots.iter().copied().collect()),
        open: open_rx,
        asked: Default::default(),
    };
    let cfg = lamina_execution_service::Config { read_batch: 16, ..config() };

    // A late square: blocks before it commit, none after it, then all of them.
    let dir = tempfile::tempdir().unwrap();
    let log = InMemoryLog::new();
    for b in &f.blocks {
        log.append(b.clone()).unwrap();
    }
    let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &cfg).unwrap();
    let shared = node.shared();
    let stop = CancellationToken::new();
    let settlement = RecordingSettlement::default();
    let check = async {
        let wait = async {
            while !(shared.read().height == Height(LATE - 1) && da.asked_for(&after_roots)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait).await.expect("blocks before the late one not committed");
        // The block after the late one is fetched; give the follower room to run
        // ahead if it would (it must not).
        tokio::time::sleep(Duration::from_millis(200)).await;
        {
            let v = shared.read();
            assert_eq!(v.height, Height(LATE - 1), "a block after the late one was committed before it");
            assert_eq!(v.state_root, want[LATE as usize - 2]);
        }
        open_tx.send(true).unwrap();
        let wait = async {
            while shared.read().height < Height(16) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait).await.expect("follower stuck after the late square");
        stop.cancel();
    };
    let health = Health::new();
    let (followed, ()) = tokio::join!(node.follow(&log, &da, &settlement, &health, &stop), check);
    followed.unwrap();
    assert_eq!(node.height(), Height(16));
    assert_eq!(shared.read().state_root, want[15]);
    node.close().unwrap();

    // A square whose availability certificate does not verify (its block's finality
    // certificate does: the payload digest does not cover the DA signatures): the
    // follower stops with that error only after committing every block before it.
    let mut blocks = f.blocks.clone();
    blocks[LATE as usize - 1].block.batches[0].signatures.signatures[0].0[0] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let log = InMemoryLog::new();
    for b in blocks {
        log.append(b).unwrap();
    }
    let mut node = ExecutionNode::open(dir.path(), &f.genesis, CHAIN, exec_key(), &cfg).unwrap();
    let stop = CancellationToken::new();
    let followed =
        tokio::time::timeout(Duration::from_secs(60), node.follow(&log, &f.da, &settlement, &Health::new(), &stop))
            .await
            .expect("follower neither stopped nor failed");
    match followed {
        Err(Error::Log(m)) => assert!(m.contains(&format!("height {LATE}")) && m.contains("availability"), "{m}"),
        other => panic!("expected the late block's certificate error, got {other:?}"),
    }
    assert_eq!(node.height(), Height(LATE - 1));
    assert_eq!(node.shared().read().state_root, want[LATE as usize - 2]);
    node.close().unwrap();
}
