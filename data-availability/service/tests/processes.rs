//! Multi-process tests: DA nodes run as separate processes (this test binary,
//! re-executed), over real QUIC on 127.0.0.1, with their column stores in real files.
//!
//! * `crash_tolerance_and_restart`: 4 DA nodes (threshold 3, tolerates 1 fault); blobs
//!   from 2 namespaces are certified; after a SIGKILL of one node each namespace is still
//!   retrieved and verified (rows rebuilt from parity), sampling still reaches 99.99 %;
//!   the killed node restarts from its files and serves its stored columns again.
//! * `lying_node_is_detected_and_data_still_retrieved`: one of 4 nodes serves altered
//!   cells; retrieval detects it by proof verification, blames it, and rebuilds from
//!   the others.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use lamina_da_core::Assignment;
use lamina_interfaces::DataAvailability;
use lamina_primitives::{Batch, ChainId, Namespace, codec};
use lamina_test_utils::child::TestChild;

/// The child-process entry point (an empty test unless started by `start_child`).
#[test]
fn da_child() {
    child_main();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn crash_tolerance_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(4);
    let mut nodes: Vec<TestChild> = (0..4).map(|i| start_child(&g, i, dir.path(), false)).collect();
    rt().block_on(async {
        let (client, endpoint) = client(&g, 0);
        client.wait_for_nodes(4, Duration::from_secs(20)).await.unwrap();

        // Two chains' batches: ~150 KiB and ~60 KiB.
        let (b1, blob1) = batch(1, 300, 500);
        let (b2, blob2) = batch(2, 120, 480);
        let cert = client.submit(vec![blob1, blob2]).await.unwrap();
        cert.verify(&g.da_committee(), g.da_threshold()).unwrap();
        let c = cert.commitment.clone();
        assert_eq!(c.namespaces, vec![Namespace::from(ChainId(1)), Namespace::from(ChainId(2))]);
        let k = c.square_width as usize;
        assert!(k >= 16, "square is big enough to span several rows (k = {k})");
        let fetch = |ns: u64| {
            let (client, c) = (&client, c.clone());
            async move {
                let blobs = client.get_namespace(&c, Namespace::from(ChainId(ns))).await.unwrap();
                blobs.iter().map(|b| codec::decode::<Batch>(b).unwrap()).collect::<Vec<_>>()
            }
        };
        assert_eq!(fetch(1).await, vec![b1.clone()]);
        assert_eq!(fetch(2).await, vec![b2.clone()]);
        assert!(fetch(3).await.is_empty(), "proven absence");

        // Kill the node holding original columns 0, 4, 8, ... (SIGKILL: no shutdown).
        let f = g.da_committee().max_faulty();
        assert_eq!(f, 1);
        nodes[0].kill();
        assert_eq!(fetch(1).await, vec![b1.clone()]);
        assert_eq!(fetch(2).await, vec![b2.clone()]);
        // Cells in node 0's columns (a quarter of them; no replicas at n = 4) cannot be
        // sampled while it is down: with 128 samples some land there (all miss with
        // probability 0.75^128 < 1e-15), and the sampler reports them missing.
        let a = Assignment::new(4, g.da_threshold(), k);
        assert_eq!(a.replication, 1);
        let outcome = client.sample(c.data_root, 128).await.unwrap();
        assert_eq!(outcome.requested, 128);
        assert!(outcome.missing > 0, "{outcome:?}");
        assert_eq!(outcome.verified + outcome.missing, 128);
        assert!(!outcome.available);
        assert_eq!(outcome.confidence, 0.0);

        // Restart it on the same files: it serves its stored columns again.
        nodes[0].restart();
        let node0 = g.da_nodes[0].key;
        let mut served = None;
        for _ in 0..100 {
            if let Ok(p) = client.fetch_sample(&node0, c.data_root, 3, 0).await {
                served = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = served.expect("restarted node serves column 0");
        assert_eq!(p.coordinates(), (3, 0));
        // With every node up again, sampling sees every cell.
        let outcome = client.sample(c.data_root, 32).await.unwrap();
        assert!(outcome.available, "{outcome:?}");
        assert!(outcome.confidence >= 0.9999);
        // Another node fails: data still there, now using the restarted node's columns.
        nodes[1].kill();
        assert_eq!(fetch(1).await, vec![b1]);
        assert_eq!(fetch(2).await, vec![b2]);
        assert!(client.misbehaving().is_empty());
        endpoint.shutdown().await;
    });
}

#[test]
fn lying_node_is_detected_and_data_still_retrieved() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(4);
    let liar = 2;
    let _nodes: Vec<TestChild> = (0..4).map(|i| start_child(&g, i, dir.path(), i == liar)).collect();
    rt().block_on(async {
        let (client, endpoint) = client(&g, 1);
        client.wait_for_nodes(4, Duration::from_secs(20)).await.unwrap();
        let (b1, blob1) = batch(7, 200, 500);
        let (b2, blob2) = batch(9, 50, 300);
        let cert = client.submit(vec![blob1, blob2]).await.unwrap();
        cert.verify(&g.da_committee(), g.da_threshold()).unwrap();
        let c = cert.commitment;
        // The certificate needs 3 of the 4 nodes, so the liar may still be storing its
        // columns when the first reads come: it then answers that it has none, which is
        // no fault. Read (correctly, every time) until it has served its altered cells.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = client.get_namespace(&c, Namespace::from(ChainId(7))).await.unwrap();
            assert_eq!(codec::decode::<Batch>(&got[0]).unwrap(), b1);
            let got = client.get_namespace(&c, Namespace::from(ChainId(9))).await.unwrap();
            assert_eq!(codec::decode::<Batch>(&got[0]).unwrap(), b2);
            if !client.misbehaving().is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let blamed = client.misbehaving();
        assert_eq!(blamed.keys().copied().collect::<Vec<_>>(), vec![g.da_nodes[liar].key], "{blamed:?}");
        // Its samples fail verification too: counted as invalid, never accepted (with
        // 128 samples some land in its columns, except with probability < 1e-15). An
        // honest node may also still be storing its columns (the certificate needed 3
        // of 4): its cells are missing until it holds them, so sample until it does.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let outcome = loop {
            let outcome = client.sample(c.data_root, 128).await.unwrap();
            if outcome.missing == outcome.invalid_answers || std::time::Instant::now() > deadline {
                break outcome;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(outcome.invalid_answers > 0, "{outcome:?}");
        assert_eq!(outcome.missing, outcome.invalid_answers);
        assert_eq!(outcome.verified + outcome.missing, 128);
        assert!(!outcome.available);
        endpoint.shutdown().await;
    });
}
