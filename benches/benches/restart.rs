//! Restart time of an execution node against the length of its history (issue 13).
//!
//! Builds a synthetic history directly in an execution node's data directory, with the
//! service's own store pieces: `LAMINA_RESTART_TXS` transactions (default 1,000,000;
//! the issue's figure is 10,000,000) in heights of `LAMINA_RESTART_PER_HEIGHT` (5,000)
//! over `LAMINA_RESTART_ACCOUNTS` accounts (1,000,000). Each transaction is a transfer's
//! effect: two balances and a nonce change, and a receipt. Every record's state root is
//! the real root after it, so a restart checks them as it would a real store.
//!
//! It then measures `ExecutionNode::open` (load the newest snapshot, replay the records
//! after it, rebuild the claim chain, check every root) in four cases:
//!
//! * no snapshot: every record replayed from genesis (what every restart did before
//!   snapshots);
//! * a snapshot 1,000,000, 500,000 (the default `snapshot_every_txs`) and 100,000
//!   transactions below the tip, and one at the tip.
//!
//! and the time to verify and load the snapshot alone (what a node importing it pays).
//! Results are printed as a table; the figures are in BENCHMARKS.md. Not a criterion
//! benchmark: each case is one cold-ish open (the page cache is warm, as after a
//! process restart), measured three times, median reported.
//!
//! ```text
//! cargo bench -p lamina-benches --bench restart
//! LAMINA_RESTART_TXS=10000000 cargo bench -p lamina-benches --bench restart
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use lamina_execution_core::ledger::{self, AssetId, LedgerFailure};
use lamina_execution_core::{AuthenticatedState, ChangeSet, Receipt, Status};
use lamina_execution_service::bridge::BridgeImage;
use lamina_execution_service::index::{self, ReceiptIndex};
use lamina_execution_service::record::{BlockRecord, Header, Records, VERSION};
use lamina_execution_service::snapshot::{self, Capture, NodeImage};
use lamina_execution_service::{Config, ExecutionNode};
use lamina_interfaces::{ChainSpec, Genesis};
use lamina_primitives::{ChainId, Digest, Height, Keypair, PublicKey, TxId};
use lamina_store::{Config as StoreConfig, Log};

const CHAIN: ChainId = ChainId(1);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn genesis() -> Genesis {
    Genesis {
        chains: vec![ChainSpec {
            name: "bench".into(),
            ledger_version: ledger::LEDGER_VERSION,
            ..lamina_test_utils::chain(CHAIN.0)
        }],
        ..lamina_test_utils::genesis("restart-bench")
    }
}

fn account(i: u64) -> PublicKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b[8] = 0xA5;
    PublicKey(b)
}

/// Writes the history; returns the heights at which snapshots were taken.
fn build(data: &Path, g: &Genesis, txs: u64, per_height: u64, accounts: u64, snap_below: &[u64]) -> Vec<Height> {
    let header = Header { version: VERSION, chain: CHAIN, genesis: g.digest() };
    let (index, _) =
        ReceiptIndex::open(&data.join("index.redb"), &header, 64 << 20, index::EPOCH, index::FLUSH_RECEIPTS).unwrap();
    let log =
        Log::open(data.join("blocks"), StoreConfig { name: "execution-1".into(), ..StoreConfig::default() }).unwrap();
    let records = Records::new::<LedgerFailure>(log, Height(1)).unwrap();
    let mut state = AuthenticatedState::new();
    state.apply(&ledger::genesis(&g.chains[0]), true);
    let heights = txs.div_ceil(per_height);
    let snap_at: Vec<u64> = snap_below.iter().map(|b| heights.saturating_sub(b.div_ceil(per_height))).collect();
    let mut taken = Vec::new();
    let (mut receipts_root, started) = (Digest::ZERO, Instant::now());
    let mut done = 0u64;
    for h in 1..=heights {
        let n = per_height.min(txs - done);
        let mut counters = Vec::with_capacity(3 * n as usize);
        let mut receipts = Vec::with_capacity(n as usize);
        for i in 0..n {
            let t = done + i;
            let (from, to) = (t % accounts, (t * 7 + 1) % accounts);
            counters.push((ledger::balance_key(&account(from), AssetId::NATIVE), u128::from(t) + 1));
            counters.push((ledger::balance_key(&account(to), AssetId::NATIVE), u128::from(t) + 2));
            counters.push((ledger::nonce_key(&account(from)), u128::from(t / accounts) + 1));
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&t.to_le_bytes());
            receipts.push(Receipt::<LedgerFailure> { tx_id: TxId(Digest(id)), status: Status::Success });
        }
        done += n;
        counters.sort_unstable_by_key(|e| e.0);
        counters.dedup_by(|a, b| a.0 == b.0);
        let changes = ChangeSet { counters, data: vec![] };
        let root = state.apply(&changes, true);
        receipts_root = Digest(*blake3::hash(&[receipts_root.0, root.0].concat()).as_bytes());
        let record = BlockRecord {
            height: Height(h),
            changes,
            receipts,
            state_root: root,
            receipts_root,
            data_root: Digest::ZERO,
            step: None,
        };
        let bytes = lamina_primitives::encode(&record).unwrap();
        records.append_durable(Height(h), &bytes).unwrap();
        if index.insert(Height(h), &record.receipts).unwrap() {
            index.flush().unwrap();
        }
        if snap_at.contains(&h) {
            let head = snapshot::Head {
                genesis: g.digest(),
                chain: CHAIN,
                height: Height(h),
                state_root: root,
                receipts_root,
                data_root: Digest::ZERO,
            };
            let node = NodeImage {
                bridge: lamina_primitives::encode(&BridgeImage::default()).unwrap(),
                ..NodeImage::default()
            };
            let dir = data.join("snapshots");
            std::fs::create_dir_all(&dir).unwrap();
            snapshot::write(&dir, head, Capture::of(&state), &node).unwrap();
            taken.push(Height(h));
        }
        if h % 200 == 0 {
            eprintln!(
                "  built {h}/{heights} heights, {done} transactions, {} keys, {:.0?}",
                state.len(),
                started.elapsed()
            );
        }
    }
    index.sync().unwrap();
    records.sync().unwrap();
    eprintln!("built {heights} heights, {done} transactions, {} keys in {:.0?}", state.len(), started.elapsed());
    taken
}

fn config() -> Config {
    Config { chain: Some(CHAIN), snapshot_every: 0, retain_heights: 0, ..Config::default() }
}

/// Median of three opens of `data`.
fn open_time(data: &Path, g: &Genesis) -> (Duration, Height) {
    let mut times = Vec::new();
    let mut height = Height(0);
    for _ in 0..3 {
        let t = Instant::now();
        let node = ExecutionNode::open(data, g, CHAIN, Keypair::for_testing(1), &config()).unwrap();
        times.push(t.elapsed());
        height = node.height();
        node.close().unwrap();
    }
    times.sort();
    (times[1], height)
}

fn du(path: &Path) -> u64 {
    walk(path)
}

fn walk(p: &Path) -> u64 {
    let Ok(m) = std::fs::metadata(p) else { return 0 };
    if m.is_file() {
        return m.len();
    }
    std::fs::read_dir(p).map_or(0, |d| d.filter_map(|e| e.ok()).map(|e| walk(&e.path())).sum())
}

/// State sync of the newest snapshot in `served` between two endpoints on loopback
/// (real QUIC): the fetch (every chunk checked against the manifest), then the load a
/// starting node does (tree rebuilt, root checked).
fn sync_over_quic(served: &Path, g: &Genesis, tmp: &Path) {
    use lamina_execution_service::sync::{self, SnapshotProtocol, SnapshotServer, Synced};
    use lamina_net::{Endpoint, EndpointConfig, PeerSet, ProtocolConfig};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let bind = |seed| Endpoint::bind(&Keypair::for_testing(seed), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let (peer, syncer) = (bind(11), bind(12));
        let _served = peer
            .register(
                SnapshotServer { dir: served.to_path_buf() },
                PeerSet::new().with_accept(syncer.node_id()),
                ProtocolConfig::for_protocol::<SnapshotProtocol>(),
            )
            .unwrap();
        let into = tmp.join("synced");
        std::fs::create_dir_all(&into).unwrap();
        let net = syncer
            .register(
                SnapshotServer { dir: into.clone() },
                PeerSet::new().with_dial(peer.node_id(), peer.local_addr()),
                ProtocolConfig::for_protocol::<SnapshotProtocol>(),
            )
            .unwrap();
        let t = Instant::now();
        let trust = sync::Trust { quorum: 1, max_height: None };
        let r = sync::sync(&net, &[peer.node_id()], &into, &g.digest(), CHAIN, trust, &lamina_interfaces::Health::new())
            .await
            .unwrap();
        let fetch = t.elapsed(); // includes the whole check (tree rebuilt) before install
        let Synced::Installed { manifest, .. } = r else { panic!("not synced: {r:?}") };
        let t = Instant::now();
        let dir = into.join(snapshot::dir_name(manifest.height));
        snapshot::load(&dir, &g.digest(), CHAIN).unwrap();
        let load = t.elapsed();
        println!(
            "state sync over QUIC (loopback) of {} keys at height {}: fetch {fetch:.2?}, verify and load {load:.2?}, total {:.2?}",
            manifest.keys,
            manifest.height,
            fetch + load
        );
        peer.shutdown().await;
        syncer.shutdown().await;
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let txs = env("LAMINA_RESTART_TXS", 1_000_000);
    let per_height = env("LAMINA_RESTART_PER_HEIGHT", 5_000).max(1);
    let accounts = env("LAMINA_RESTART_ACCOUNTS", 1_000_000).max(2);
    let g = genesis();
    let tmp = tempfile::tempdir_in(std::env::var("LAMINA_RESTART_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    eprintln!("history: {txs} transactions, {per_height} per height, {accounts} accounts");
    let below = [1_000_000u64, 500_000, 100_000, 0];
    let taken = build(&data, &g, txs, per_height, accounts, &below);
    println!("| case | records replayed | open time | height |");
    println!("|---|---|---|---|");
    let snaps = data.join("snapshots");
    let moved = tmp.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    // Newest first: at the tip, then further and further below it.
    let mut by_height: Vec<(Height, std::path::PathBuf)> = snapshot::list(&snaps);
    let tip = Height(txs.div_ceil(per_height));
    for (h, dir) in by_height.clone() {
        let (t, at) = open_time(&data, &g);
        println!(
            "| snapshot at {h} | {} heights ({} tx) | {:.2?} | {at} |",
            tip.0 - h.0,
            (tip.0 - h.0) * per_height,
            t
        );
        std::fs::rename(&dir, moved.join(dir.file_name().unwrap())).unwrap();
    }
    let (t, at) = open_time(&data, &g);
    println!("| no snapshot (replay from genesis) | {} heights ({txs} tx) | {t:.2?} | {at} |", tip.0);
    by_height.truncate(1);
    if let Some((h, dir)) = by_height.pop() {
        let dir = moved.join(dir.file_name().unwrap());
        let t = Instant::now();
        let loaded = snapshot::load(&dir, &g.digest(), CHAIN).unwrap();
        let load = t.elapsed();
        println!(
            "\nsnapshot at {h}: {} keys, {} chunks, {} bytes; verify and load: {load:.2?}",
            loaded.manifest.keys,
            loaded.manifest.chunks.len(),
            du(&dir)
        );
    }
    sync_over_quic(&moved, &g, tmp.path());
    println!(
        "data: records {} bytes, receipt index {} bytes; snapshots taken at {:?}",
        du(&data.join("blocks")),
        du(&data.join("index.redb")),
        taken
    );
}
