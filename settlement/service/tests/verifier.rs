#![allow(clippy::unwrap_used)]
//! The settlement service in one process over an in-memory ordered log and the
//! in-process DA layer, with the execution layer's real executors (`NativeChains`):
//! an honest and a faulty claimer of one chain, and the service's verifier.
//!
//! What must hold: the verifier challenges the faulty claim (built from its retained
//! history, since the honest claim for the same height was checked first), the fraud
//! proof slashes it, the honest claim finalizes exactly at its window end, and a
//! restarted service replays its store to the identical settlement state.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_execution_core::NativeChains;
use lamina_execution_core::ledger::{self, AssetId};
use lamina_interfaces::settlement::{chain_receipts, inputs_digest};
use lamina_interfaces::{
    Blob, ChainSpec, CheckpointClaim, ClaimStep, DataAvailability, EncodingFraudVerifier, Genesis, GenesisBalance,
    Health, InMemoryLog, NodeEntry, StatelessExecutor, SubmitError, SubmitOutcome, TxSubmit,
};
use lamina_primitives::{
    Batch, Block, BlockHeader, ChainId, Digest, FinalizedBlock, Height, Keypair, Namespace, PublicKey, Signature,
    Transaction,
};
use lamina_settlement_core::{ClaimStatus, Entry};
use lamina_settlement_service::verifier::Verifier;
use lamina_settlement_service::{Config, Follower};
use lamina_test_utils::FakeDa;
use tokio_util::sync::CancellationToken;

const CHAIN: ChainId = ChainId(1);
const WINDOW: u64 = 6;
const SEED: u64 = 500;

fn honest() -> Keypair {
    Keypair::for_testing(40)
}
fn faulty() -> Keypair {
    Keypair::for_testing(41)
}
fn verifier_key() -> Keypair {
    Keypair::for_testing(42)
}

fn entry(i: u64) -> NodeEntry {
    lamina_test_utils::node(format!("n{i}"), &Keypair::for_testing(i), lamina_test_utils::localhost(0))
}

fn genesis() -> Genesis {
    let mut g = Genesis {
        chains: vec![ChainSpec {
            id: CHAIN,
            name: "one".into(),
            funded_test_accounts: 8,
            funded_test_accounts_seed: SEED,
            funded_test_amount: 1_000_000,
            ..ChainSpec::default()
        }],
        validators: (0..4).map(entry).collect(),
        da_nodes: (10..14).map(entry).collect(),
        settlement_nodes: vec![NodeEntry { name: "s".into(), ..entry(42) }],
        ..lamina_test_utils::genesis("settlement-test")
    };
    g.settlement.challenge_window = WINDOW;
    for k in [honest(), faulty(), verifier_key()] {
        g.settlement.balances.push(GenesisBalance { account: k.public(), amount: 100_000 });
    }
    g
}

/// Collects what the verifier submits (the test orders it into the next block).
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Transaction>>>);

impl TxSubmit for Collect {
    async fn submit(&self, tx: Transaction) -> Result<SubmitOutcome, SubmitError> {
        let id = tx.id();
        self.0.lock().unwrap().push(tx);
        Ok(SubmitOutcome::Accepted(id))
    }

    async fn submit_many(&self, txs: Vec<Transaction>) -> Vec<Result<SubmitOutcome, SubmitError>> {
        let mut out = Vec::new();
        for tx in txs {
            out.push(self.submit(tx).await);
        }
        out
    }
}

struct NoBadEncoding;
impl EncodingFraudVerifier for NoBadEncoding {
    fn verify_bad_encoding(&self, _: &Digest, _: &[u8]) -> Result<(), String> {
        Err("no bad-encoding proofs in this test".into())
    }
}

/// A sequencer: each block carries at most one square for the chain and one for the
/// settlement namespace (certificates unsigned: the service runs with certificate
/// checks off, as the fixture's log is trusted).
struct Sequencer {
    log: InMemoryLog,
    da: FakeDa,
    height: u64,
    parent: Digest,
}

impl Sequencer {
    async fn block(&mut self, chain_txs: Vec<Transaction>, settle: Vec<Transaction>) -> (Height, Vec<Digest>) {
        let mut batches = Vec::new();
        for (ns, txs) in [(Namespace::from(CHAIN), chain_txs), (Namespace::SETTLEMENT, settle)] {
            if txs.is_empty() {
                continue;
            }
            let data = lamina_primitives::encode(&Batch { namespace: ns, txs }).unwrap();
            batches.push(self.da.submit(vec![Blob { namespace: ns, data }]).await.unwrap());
        }
        self.height += 1;
        let header = BlockHeader {
            height: Height(self.height),
            parent: self.parent,
            payload: Block::payload_digest(&batches),
            ..Default::default()
        };
        let roots = batches
            .iter()
            .filter(|c| c.commitment.namespaces.contains(&Namespace::from(CHAIN)))
            .map(|c| c.commitment.data_root)
            .collect();
        let block = Block { header, batches };
        self.parent = block.digest();
        self.log.append(FinalizedBlock { block, certificate: Default::default() }).unwrap();
        (Height(self.height), roots)
    }
}

fn claim(g: &Genesis, key: &Keypair, step: ClaimStep, to: Height, corrupt: bool) -> CheckpointClaim {
    let mut step = step;
    if corrupt {
        step.state_root.0[0] ^= 1;
    }
    CheckpointClaim {
        network: g.network_id(),
        chain_id: CHAIN,
        parent: Digest::ZERO,
        from: Height(0),
        to,
        steps: vec![step],
        state_root: step.state_root,
        receipts_root: chain_receipts(&Digest::ZERO, step.height, &step.receipts_root),
        params: g.chains[0].params_digest(),
        claimer: PublicKey::default(),
        signature: Signature::default(),
    }
    .sign(key)
}

/// What every test here starts from: a data directory, the genesis, the executors, the
/// verifier's node context, an in-memory log and DA, and a sequencer over them.
struct Fixture {
    dir: tempfile::TempDir,
    g: Genesis,
    exec: Arc<NativeChains>,
    ctx: lamina_net::NodeContext,
    log: InMemoryLog,
    da: FakeDa,
    seq: Sequencer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis();
    let exec = Arc::new(NativeChains::new(&g));
    let ctx =
        lamina_net::NodeContext::new(verifier_key(), Arc::new(g.clone()), dir.path().to_path_buf(), Health::new());
    let log = InMemoryLog::new();
    let da = FakeDa::new();
    let seq = Sequencer { log: log.clone(), da: da.clone(), height: 0, parent: Digest::ZERO };
    Fixture { dir, g, exec, ctx, log, da, seq }
}

async fn open(ctx: &lamina_net::NodeContext, exec: &Arc<NativeChains>) -> Follower {
    let config = Config { verifier: true, verify_certificates: false, ..Config::default() };
    Follower::open(ctx, &config, exec.clone(), Arc::new(NoBadEncoding), None, &CancellationToken::new()).await.unwrap()
}

/// A minimal HTTP GET: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_slashes_the_faulty_claim_and_a_restart_replays_the_same_state() {
    let Fixture { dir: _dir, g, exec, ctx, log, da, mut seq } = fixture();
    let submitted = Collect::default();

    let mut follower = open(&ctx, &exec).await;
    let shared = follower.shared();
    let config = Config { verifier: true, verify_certificates: false, ..Config::default() };
    let verifier = Verifier::new(&ctx, &config, exec.clone(), shared.clone(), da.clone(), submitted.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let (feed, rx) = lamina_settlement_service::verifier::feed();
    let task = {
        let (log, da, shutdown, health) = (log.clone(), da.clone(), shutdown.clone(), ctx.health.clone());
        tokio::spawn(async move {
            follower.follow(&log, &da, Some(feed), &health, &shutdown).await.unwrap();
            follower
        })
    };
    let verifying = {
        let (log, shutdown, shared) = (log.clone(), shutdown.clone(), shared.clone());
        tokio::spawn(async move { verifier.run(rx, &shared, &log, &shutdown).await.unwrap() })
    };

    // Height 1: transfers on the chain.
    let accounts: Vec<Keypair> = (0..8).map(|i| Keypair::for_testing(SEED + i)).collect();
    let txs: Vec<Transaction> = (0..6)
        .map(|i| {
            ledger::transfer(
                &accounts[i],
                g.tx_scope(),
                CHAIN,
                0,
                accounts[(i + 1) % 8].public(),
                AssetId::NATIVE,
                10 + i as u64,
            )
        })
        .collect();
    let (h1, roots) = seq.block(txs.clone(), vec![]).await;
    // The honest outcome of that step, from a fresh replica (the execution layer's code).
    let mut replica = exec.replica(CHAIN).unwrap();
    let (outcome, _) = replica.execute_step(&lamina_interfaces::StepEnv::without_anchors(h1, g.tx_scope()), &txs, None);
    let step = ClaimStep {
        height: h1,
        inputs: inputs_digest(&roots),
        state_root: outcome.state_root,
        receipts_root: outcome.receipts_root,
    };

    // Height 2: the honest claim first, then the faulty one for the same range.
    let good = claim(&g, &honest(), step, h1, false);
    let bad = claim(&g, &faulty(), step, h1, true);
    let entries = vec![
        Entry::transaction(&honest(), g.tx_scope(), 1, &Entry::Claim(good.clone())).unwrap(),
        Entry::transaction(&faulty(), g.tx_scope(), 1, &Entry::Claim(bad.clone())).unwrap(),
    ];
    let (h2, _) = seq.block(vec![], entries).await;

    // The verifier checks the honest claim, then proves the faulty one wrong from its
    // retained history, and submits the challenge; the sequencer orders it next.
    wait_for("a challenge", || !submitted.0.lock().unwrap().is_empty()).await;
    let challenge = submitted.0.lock().unwrap().remove(0);
    match Entry::from_transaction(&challenge).unwrap() {
        Entry::Challenge(c) => {
            assert_eq!(c.claim, bad.id());
            assert_eq!(c.step, 0);
        }
        other => panic!("verifier submitted {other:?}"),
    }
    seq.block(vec![], vec![challenge]).await;
    wait_for("the slash", || shared.read().claim(&bad.id()).is_some_and(|r| r.status == ClaimStatus::Slashed)).await;

    // Empty heights up to the honest claim's window end: final exactly there.
    while seq.height < h2.0 + WINDOW {
        seq.block(vec![], vec![]).await;
    }
    wait_for("height", || shared.read().height().0 == seq.height).await;
    {
        let s = shared.read();
        let rec = s.claim(&good.id()).unwrap();
        assert_eq!(rec.status, ClaimStatus::Finalized);
        assert_eq!(rec.ended_at, Some(Height(h2.0 + WINDOW)));
        let anchor = s.finalized(CHAIN).unwrap();
        assert_eq!((anchor.to, anchor.state_root, anchor.claim), (h1, outcome.state_root, good.id()));
        // The faulty claimer lost its bond; the challenger was rewarded.
        assert!(s.account(&faulty().public()).free < 100_000);
        assert!(s.account(&verifier_key().public()).free > 100_000);
        assert!(s.burned() > 0);
        assert_eq!(s.total_supply(), 300_000, "free + bonded + burned is conserved");
    }
    let root = shared.read().state_root();
    let height = shared.read().height();

    // The HTTP/JSON queries answer from the same state.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(lamina_settlement_service::query::serve_http(listener, shared.clone(), http_stop.clone()));
    let (code, body) = http_get(addr, "/chain/1").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["finalized_height"], h1.0);
    assert_eq!(v["finalized_root"], outcome.state_root.to_hex());
    let (code, body) = http_get(addr, &format!("/claim/{}", bad.id().to_hex())).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"slashed\""), "{body}");
    let (code, body) = http_get(addr, &format!("/anchor/1/{}", seq.height)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&good.id().to_hex()), "{body}");
    assert_eq!(http_get(addr, "/chain/9").await.0, 404);
    assert_eq!(http_get(addr, "/claim/zz").await.0, 400);
    assert_eq!(http_get(addr, "/nowhere").await.0, 404);
    http_stop.cancel();
    http.await.unwrap();

    // Restart: the store replays to the same state, then the log tops it up.
    shutdown.cancel();
    let follower = task.await.unwrap();
    verifying.await.unwrap();
    follower.close().unwrap();
    let mut again = open(&ctx, &exec).await;
    let shared2 = again.shared();
    let shutdown = CancellationToken::new();
    let task = {
        let (log, da, shutdown, health) = (log.clone(), da.clone(), shutdown.clone(), ctx.health.clone());
        tokio::spawn(async move {
            again.follow(&log, &da, None, &health, &shutdown).await.unwrap();
        })
    };
    wait_for("the restarted follower", || shared2.read().height() == height).await;
    assert_eq!(shared2.read().state_root(), root);
    shutdown.cancel();
    task.await.unwrap();
}

/// Snapshots bound the store: every `snapshot_every` heights the follower writes one,
/// keeps the newest two and deletes the records below the oldest kept. A restart loads
/// the newest snapshot (the store's first records, header included, are gone) and
/// reaches the same state; a damaged snapshot is set aside and the older one used; with
/// no snapshot left the node refuses the pruned store with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_store_and_a_restart_resumes_from_the_newest_good_one() {
    let Fixture { dir, g: _, exec, ctx, log, da, mut seq } = fixture();
    // Tiny segments (16 KiB, about 40 records each; 200 records fill 7 without
    // pruning), so that pruning shows; the service's own validation asks for 17 MiB.
    // Reads of at most 5 blocks: a snapshot lands within 5 heights of every tenth.
    let config = Config {
        verify_certificates: false,
        read_batch: 5,
        snapshot_every: 10,
        keep_snapshots: 2,
        segment_bytes: 16 << 10,
        ..Config::default()
    };
    let never = CancellationToken::new();
    let open = || Follower::open(&ctx, &config, exec.clone(), Arc::new(NoBadEncoding), None, &never);
    let run = |mut f: Follower| {
        let shutdown = CancellationToken::new();
        let (log, da, s, health) = (log.clone(), da.clone(), shutdown.clone(), ctx.health.clone());
        let task = tokio::spawn(async move {
            f.follow(&log, &da, None, &health, &s).await.unwrap();
            f
        });
        (shutdown, task)
    };
    let stop = |(shutdown, task): (CancellationToken, tokio::task::JoinHandle<Follower>)| async move {
        shutdown.cancel();
        task.await.unwrap().close().unwrap();
    };
    let segments = || {
        std::fs::read_dir(dir.path().join("settlement"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    };
    let snapshots = || lamina_settlement_service::snapshot::Snapshots::new(dir.path()).list().unwrap();

    let follower = open().await.unwrap();
    let shared = follower.shared();
    let running = run(follower);
    let payer = Keypair::for_testing(SEED);
    let scope = genesis().tx_scope();
    let pay =
        |n| ledger::transfer(&payer, scope, CHAIN, n, Keypair::for_testing(SEED + 1).public(), AssetId::NATIVE, 1);
    for n in 0..200u64 {
        seq.block(vec![pay(n)], vec![]).await;
    }
    wait_for("height 200", || shared.read().height() == Height(200)).await;
    let root = shared.read().state_root();
    stop(running).await;

    let kept = snapshots();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[1].0.0 > 185, "newest snapshot at {}", kept[1].0);
    // Only the records after the older kept snapshot remain (at most ~30 records: the
    // segments holding them, and the one being written).
    assert!(segments() <= 3, "{} segment files", segments());

    // Restart: loads the newest snapshot (the header record was pruned: a replay from
    // genesis is impossible), replays the records after it.
    let again = open().await.unwrap();
    assert_eq!(again.shared().read().state_root(), root);
    assert_eq!(again.height(), Height(200));
    again.close().unwrap();

    // A damaged newest snapshot is set aside; the older one plus its records give the
    // same state.
    let newest = kept[1].1.clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&newest, bytes).unwrap();
    let third = open().await.unwrap();
    assert_eq!(third.shared().read().state_root(), root);
    assert!(!newest.exists());
    assert!(newest.with_extension("snap.bad").exists());
    // It goes on following and snapshotting.
    let shared3 = third.shared();
    let running = run(third);
    for n in 200..230u64 {
        seq.block(vec![pay(n)], vec![]).await;
    }
    wait_for("height 230", || shared3.read().height() == Height(230)).await;
    stop(running).await;
    assert!(snapshots().last().unwrap().0 > Height(215));

    // No snapshot left: the pruned store is refused, with what to do.
    for (_, p) in snapshots() {
        std::fs::remove_file(p).unwrap();
    }
    let err = open().await.unwrap_err().to_string();
    assert!(err.contains("pruned") && err.contains("no snapshot"), "{err}");
}

/// A verifier that stops taking blocks (stuck on data DA no longer holds, or too slow)
/// is dropped once the feed is full, and the follower goes on: the node does not hold
/// every block since in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_that_falls_too_far_behind_is_dropped_and_the_follower_goes_on() {
    let Fixture { dir: _dir, g: _, exec, ctx, log, da, mut seq } = fixture();
    let mut follower = open(&ctx, &exec).await;
    let shared = follower.shared();
    let (feed, mut rx) = lamina_settlement_service::verifier::feed();
    let shutdown = CancellationToken::new();
    let task = {
        let (log, da, shutdown, health) = (log.clone(), da.clone(), shutdown.clone(), ctx.health.clone());
        tokio::spawn(async move { follower.follow(&log, &da, Some(feed), &health, &shutdown).await.unwrap() })
    };
    // Nobody reads the feed. Empty blocks send one item each.
    let blocks = lamina_settlement_service::verifier::FEED_CAPACITY as u64 + 100;
    for _ in 0..blocks {
        seq.block(vec![], vec![]).await;
    }
    wait_for("the follower", || shared.read().height() == Height(blocks)).await;
    assert!(ctx.health.status_json()["verifier"].as_str().unwrap().contains("fell too far behind"));
    // The feed was dropped: the verifier's end drains what it holds, then ends.
    let mut held = 0;
    while rx.recv().await.is_some() {
        held += 1;
    }
    assert_eq!(held, lamina_settlement_service::verifier::FEED_CAPACITY);
    shutdown.cancel();
    task.await.unwrap();
}
