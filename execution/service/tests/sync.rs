#![allow(clippy::unwrap_used)]
//! State sync over real QUIC between in-process endpoints, with real snapshot files: a
//! fresh node fetches the newest snapshot from two peers, one of which has a damaged
//! chunk on disk; the damaged chunk is rejected and fetched from the other peer, the
//! node opens at the snapshot's height with the reference root and follows the log from
//! there. Too few agreeing peers, or offers above the log tip, fetch nothing. With no
//! snapshot anywhere, the sync says so and the node replays from genesis.

mod common;

use std::time::Duration;

use common::*;
use lamina_execution_service::adapters::RecordingSettlement;
use lamina_execution_service::snapshot;
use lamina_execution_service::sync::{self, SnapshotProtocol, SnapshotServer, Synced, Trust};
use lamina_execution_service::{Config, ExecutionNode};
use lamina_interfaces::{Health, InMemoryLog};
use lamina_net::{Endpoint, EndpointConfig, PeerSet, ProtocolConfig};
use lamina_primitives::{Height, Keypair};
use tokio_util::sync::CancellationToken;

async fn follow_to(node: &mut ExecutionNode, log: &InMemoryLog, f: &Fixture, target: u64) {
    let stop = CancellationToken::new();
    let shared = node.shared();
    let s2 = stop.clone();
    let w = tokio::spawn(async move {
        while shared.read().height.0 < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s2.cancel();
    });
    tokio::time::timeout(
        Duration::from_secs(60),
        node.follow(log, &f.da, &RecordingSettlement::default(), &Health::new(), &stop),
    )
    .await
    .unwrap()
    .unwrap();
    w.await.unwrap();
}

fn bind(seed: u64) -> Endpoint {
    Endpoint::bind(&Keypair::for_testing(seed), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_node_syncs_from_peers_and_rejects_a_damaged_chunk() {
    let f = fixture(36).await;
    let want = reference_roots(&f);
    let config = Config { snapshot_every: 10, ..config() };
    let log = InMemoryLog::new();
    for b in &f.blocks[..30] {
        log.append(b.clone()).unwrap();
    }
    // Two peers that executed to 30 (snapshots at 10, 20, 30).
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for d in &dirs {
        let mut node = ExecutionNode::open(d.path(), &f.genesis, CHAIN, exec_key(), &config).unwrap();
        follow_to(&mut node, &log, &f, 30).await;
        node.close().unwrap();
    }
    // Peer 0's disk damaged one chunk of its newest snapshot.
    let newest = snapshot::list(&dirs[0].path().join("snapshots"))[0].1.clone();
    assert!(newest.ends_with(snapshot::dir_name(Height(30))));
    let chunk = newest.join(snapshot::chunk_name(0));
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&chunk, bytes).unwrap();

    let syncer = bind(500);
    let peers: Vec<Endpoint> = (0..2).map(|i| bind(501 + i)).collect();
    let mut nets = Vec::new();
    for (p, d) in peers.iter().zip(&dirs) {
        nets.push(
            p.register(
                SnapshotServer { dir: d.path().join("snapshots") },
                PeerSet::new().with_accept(syncer.node_id()),
                ProtocolConfig::for_protocol::<SnapshotProtocol>(),
            )
            .unwrap(),
        );
    }
    let mut dial = PeerSet::new();
    for p in &peers {
        dial = dial.with_dial(p.node_id(), p.local_addr());
    }
    let home = tempfile::tempdir().unwrap();
    let snaps = home.path().join("snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    let net = syncer
        .register(SnapshotServer { dir: snaps.clone() }, dial, ProtocolConfig::for_protocol::<SnapshotProtocol>())
        .unwrap();
    let keys: Vec<_> = peers.iter().map(|p| p.node_id()).collect();
    // Trust: more agreeing peers than exist, or a log tip below what they offer, and
    // nothing is fetched.
    for trust in [Trust { quorum: 3, max_height: None }, Trust { quorum: 1, max_height: Some(Height(29)) }] {
        let r = sync::sync(&net, &keys, &snaps, &f.genesis.digest(), CHAIN, trust, &Health::new()).await.unwrap();
        assert!(matches!(r, Synced::Fallback(_)), "{trust:?}: {r:?}");
        assert!(snapshot::list(&snaps).is_empty());
    }
    let health = Health::new();
    let trust = Trust { quorum: 2, max_height: Some(Height(30)) };
    match sync::sync(&net, &keys, &snaps, &f.genesis.digest(), CHAIN, trust, &health).await.unwrap() {
        Synced::Installed { manifest, rejected } => {
            assert_eq!((manifest.height, manifest.state_root), (Height(30), want[29]));
            assert_eq!(rejected, 1, "the damaged chunk from peer 0 is rejected once");
        }
        other => panic!("not synced: {other:?}"),
    }
    assert!(health.is_ready(), "{:?}", health.checks());
    let mut node = ExecutionNode::open(home.path(), &f.genesis, CHAIN, exec_key(), &config).unwrap();
    assert_eq!((node.height(), node.shared().read().state_root), (Height(30), want[29]));
    for b in &f.blocks[30..] {
        log.append(b.clone()).unwrap();
    }
    follow_to(&mut node, &log, &f, 36).await;
    assert_eq!(node.shared().read().state_root, want[35]);
    node.close().unwrap();

    // Nothing to fetch: peers without snapshots make the node fall back to replay.
    let empty = tempfile::tempdir().unwrap();
    let lonely = bind(600);
    let server = bind(601);
    let _s = server
        .register(
            SnapshotServer { dir: empty.path().join("snapshots") },
            PeerSet::new().with_accept(lonely.node_id()),
            ProtocolConfig::for_protocol::<SnapshotProtocol>(),
        )
        .unwrap();
    let lnet = lonely
        .register(
            SnapshotServer { dir: empty.path().join("mine") },
            PeerSet::new().with_dial(server.node_id(), server.local_addr()),
            ProtocolConfig::for_protocol::<SnapshotProtocol>(),
        )
        .unwrap();
    let r = sync::sync(
        &lnet,
        &[server.node_id()],
        empty.path(),
        &f.genesis.digest(),
        CHAIN,
        Trust { quorum: 1, max_height: None },
        &Health::new(),
    )
    .await
    .unwrap();
    assert!(matches!(r, Synced::Fallback(_)), "{r:?}");
    for e in peers.iter().chain([&syncer, &lonely, &server]) {
        e.shutdown().await;
    }
}
