//! Multi-process test: 4 validators as separate processes (this test binary,
//! re-executed), over real QUIC on 127.0.0.1 with their WAL and ordered log in real
//! files; load from a QUIC intake client. One validator is killed with SIGKILL under
//! load: the others keep finalizing. It is restarted from its files: it catches up, and
//! the logs of all four agree block for block (each verified against the committee).
//!
//! Each validator process has its own in-process DA layer (the real DA nodes are run
//! with the validators by the `lamina` binary and the benchmark harness).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use lamina_consensus_client::{IntakeClient, LogClient};
use lamina_interfaces::{Genesis, SubmitOutcome, TxSubmit};
use lamina_net::{Endpoint, EndpointConfig};
use lamina_primitives::{Height, NodeId};
use lamina_test_utils::child::{self, TestChild};

/// What a validator process runs: validator `index` of `genesis`, its files under `dir`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Spec {
    index: usize,
    genesis: Genesis,
    dir: PathBuf,
}

/// The child-process entry point: an empty test unless started by [`TestChild`]. Runs
/// one validator until `SIGTERM` (graceful stop) or `SIGKILL`.
#[test]
fn validator_child() {
    let Some(spec) = child::spec::<Spec>("validator_child") else { return };
    let g = Arc::new(spec.genesis);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let v = start(&g, spec.index, &spec.dir, config(), test_da(&g)).await;
        term.recv().await;
        v.stop().await.unwrap();
    });
}

fn validator(g: &Genesis, index: usize, dir: &std::path::Path) -> TestChild {
    let spec = Spec { index, genesis: g.clone(), dir: dir.to_path_buf() };
    TestChild::logged("validator_child", &spec, &dir.join(format!("validator{index}.log")))
}

#[test]
fn kill9_one_validator_under_load_then_restart_catches_up_and_logs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(4);
    let mut procs: Vec<TestChild> = (0..4).map(|i| validator(&g, i, dir.path())).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let ep = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let intake = IntakeClient::register(&ep, &g).unwrap();
        let log = LogClient::register(&ep, &g).unwrap();
        let ids: Vec<NodeId> = g.validators.iter().map(|v| v.key).collect();
        intake.wait_for_validators(4, Duration::from_secs(60)).await.unwrap();
        log.wait_for_validators(4, Duration::from_secs(60)).await.unwrap();
        let tip = |i: usize| {
            let (log, id) = (log.clone(), ids[i]);
            async move { log.tip_of(&id).await.map(|h| h.0).unwrap_or(0) }
        };
        let wait_tip = |i: usize, at_least: u64, what: &'static str| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                let t = tip(i).await;
                if t >= at_least {
                    return t;
                }
                assert!(tokio::time::Instant::now() < deadline, "{what}: validator {i} at {t}, want {at_least}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        for i in 0..4 {
            wait_tip(i, 3, "start").await;
        }

        // Load: 100 transactions every 50 ms (~2,000 tx/s), through the QUIC intake.
        let running = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(AtomicU64::new(0));
        let load = tokio::spawn({
            let (intake, running, accepted, g) = (intake.clone(), running.clone(), accepted.clone(), g.clone());
            async move {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    let out = intake.submit_many(txs(&g, n, 100, 200)).await;
                    n += 100;
                    let ok = out.iter().filter(|r| matches!(r, Ok(SubmitOutcome::Accepted(_)))).count();
                    accepted.fetch_add(ok as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;

        // kill -9 validator 3 under load: the others keep finalizing.
        procs[3].kill();
        let h = tip(0).await;
        for i in 0..3 {
            wait_tip(i, h + 20, "progress without validator 3").await;
        }
        // Restart it from its files: it catches up.
        procs[3].restart();
        let target = tip(0).await;
        wait_tip(3, target, "catch-up after restart").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        running.store(false, Ordering::Relaxed);
        load.await.unwrap();
        assert!(accepted.load(Ordering::Relaxed) > 1_000, "load was accepted");

        // The logs agree block for block, and every block verifies.
        let common_height = {
            let mut m = u64::MAX;
            for i in 0..4 {
                m = m.min(tip(i).await);
            }
            m
        };
        assert!(common_height >= target);
        let committee = g.validator_committee();
        let mut reference = Vec::new();
        while (reference.len() as u64) < common_height {
            let got = log.read_from(&ids[0], Height(reference.len() as u64 + 1), 256).await.unwrap();
            reference.extend(got);
        }
        reference.truncate(common_height as usize);
        let batches: usize = reference.iter().map(|b| b.block.batches.len()).sum();
        assert!(batches > 0, "the load was ordered");
        for fb in &reference {
            fb.verify(&committee).unwrap();
        }
        for (i, id) in ids.iter().enumerate().skip(1) {
            let mut got = Vec::new();
            while (got.len() as u64) < common_height {
                got.extend(log.read_from(id, Height(got.len() as u64 + 1), 256).await.unwrap());
            }
            got.truncate(common_height as usize);
            assert!(blocks_only(&got) == blocks_only(&reference), "validator {i}'s log differs");
            for fb in &got {
                fb.verify(&committee).unwrap();
            }
        }
        ep.shutdown().await;
    });
    for (i, p) in procs.iter_mut().enumerate() {
        let status = p.terminate(Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "validator {i} did not stop cleanly: {status:?}");
    }
}
