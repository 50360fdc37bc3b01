//! Test support: a genesis on free loopback ports, the shared in-memory DA layer signing
//! real availability certificates with the genesis DA keys, and helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lamina_consensus_service::{Config, Validator};
use lamina_interfaces::{Genesis, Health, NodeEntry, OrderedLog};
use lamina_net::{Endpoint, EndpointConfig, NodeContext};
use lamina_primitives::{Batch, ChainId, FinalizedBlock, Height, Keypair, Transaction, TxId, codec};
pub use lamina_test_utils::FakeDa;

pub const DA_BASE: u64 = 100;
pub const CLIENT_KEY: u64 = 900;

pub fn validator_key(i: usize) -> Keypair {
    Keypair::for_testing(i as u64)
}

pub fn da_key(i: usize) -> Keypair {
    Keypair::for_testing(DA_BASE + i as u64)
}

pub fn client_key() -> Keypair {
    Keypair::for_testing(CLIENT_KEY)
}

/// A genesis with `n` validators (with HTTP intake addresses) and 4 DA nodes.
pub fn genesis(n: usize) -> Genesis {
    use lamina_test_utils::{chain, genesis, node};
    Genesis {
        chains: vec![chain(1), chain(2)],
        validators: (0..n)
            .map(|i| NodeEntry {
                http: Some(lamina_net::ports::one_tcp()),
                ..node(format!("validator-{i}"), &validator_key(i), lamina_net::ports::one_udp())
            })
            .collect(),
        da_nodes: (0..4).map(|i| node(format!("da-{i}"), &da_key(i), lamina_net::ports::one_udp())).collect(),
        ..genesis("consensus-test")
    }
}

/// Fast timeouts for tests.
pub fn config() -> Config {
    let mut c = Config {
        leader_timeout_ms: 400,
        notarization_timeout_ms: 800,
        retry_interval_ms: 300,
        empty_block_delay_ms: 30,
        intake_clients: vec![client_key().public()],
        wal_segment_bytes: 16 << 20,
        log_segment_bytes: 16 << 20,
        ..Config::default()
    };
    c.batch.max_delay_ms = 5;
    c
}

/// The tests' DA layer: [`FakeDa`] signing with the genesis DA keys at the genesis
/// threshold (real signatures, so validators verify certificates as in production).
pub fn test_da(g: &Genesis) -> FakeDa {
    FakeDa::signed_by((0..g.da_nodes.len()).map(da_key).collect(), g.da_threshold())
}

pub fn context(g: &Arc<Genesis>, i: usize, dir: &Path) -> NodeContext {
    NodeContext::new(validator_key(i), g.clone(), dir.join(format!("v{i}")), Health::new())
}

/// Starts validator `i` on its genesis address.
pub async fn start(g: &Arc<Genesis>, i: usize, dir: &Path, config: Config, da: FakeDa) -> Validator {
    // A restarted validator's ports may still be held for a moment: its QUIC socket
    // until quinn has drained its connections (a few hundred ms), its HTTP port by a
    // closing connection or a short-lived socket of a test running beside it. Retry
    // both binds for a while instead of failing the test on a port race.
    let mut tries = 0;
    loop {
        let ctx = context(g, i, dir);
        let endpoint = match Endpoint::bind(&ctx.keypair, EndpointConfig::new(g.validators[i].addr)) {
            Ok(e) => e,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!("cannot bind validator {i}: {e}"),
        };
        match lamina_consensus_service::start(endpoint, ctx, config.clone(), da.clone()).await {
            Ok(v) => return v,
            Err(lamina_consensus_service::Error::Http { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && tries < 100 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot start validator {i}: {e}"),
        }
    }
}

/// Signed transactions from a few senders across both chains, for the network of `g`.
pub fn txs(g: &Genesis, start: u64, count: u64, payload: usize) -> Vec<Transaction> {
    let scope = g.tx_scope();
    (start..start + count)
        .map(|n| {
            let sender = Keypair::for_testing(1_000 + n % 16);
            Transaction::new_signed(&sender, scope, ChainId(1 + n % 2), n, vec![(n % 251) as u8; payload])
        })
        .collect()
}

/// Waits until `f` is true (polling), or panics with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The blocks without their certificates: validators agree on blocks; each forms its
/// own 2f+1 certificate (any 2f+1 signers), so certificates may differ.
pub fn blocks_only(v: &[FinalizedBlock]) -> Vec<lamina_primitives::Block> {
    v.iter().map(|fb| fb.block.clone()).collect()
}

/// Every block of `log` up to `height`.
pub async fn read_all(log: &impl OrderedLog, height: u64) -> Vec<FinalizedBlock> {
    let mut out = Vec::new();
    while (out.len() as u64) < height {
        let from = Height(out.len() as u64 + 1);
        out.extend(log.read(from, 1000).await.unwrap());
    }
    out.truncate(height as usize);
    out
}

/// The transaction ids ordered by `blocks`, in order (fetching blobs from `da`).
pub fn ordered_txs(blocks: &[FinalizedBlock], da: &FakeDa) -> Vec<TxId> {
    let mut out = Vec::new();
    for fb in blocks {
        for cert in &fb.block.batches {
            for blob in da.blobs(&cert.commitment.data_root).expect("square known to the test DA") {
                let batch: Batch = codec::decode(&blob.data).unwrap();
                assert_eq!(batch.namespace, blob.namespace);
                out.extend(batch.txs.iter().map(|t| t.id()));
            }
        }
    }
    out
}
