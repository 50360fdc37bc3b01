//! Bridge: the cost of checking one receive's proof, and of executing blocks of receives.
//!
//! The source chain holds N funded accounts (default 100,000, so the state tree is as
//! deep as a busy chain's) and 1,000 locks to the destination; its state is finalized as
//! anchor 0. Side by side:
//! * `bridge::verify_proof/N=…`: what the destination ledger does for one receive's
//!   proof (`NativeLedger::verify_anchored`): decode the anchored proof, look the anchor
//!   up in the registry view, decode the state proof, recompute the path to the anchor's
//!   state root for exactly the message's outbox key and bytes. Target: ≤ 20 µs.
//! * `bridge::receive_block/N=…`: a block of 1,000 signed receives on the destination
//!   (signature stage, parallel executor: proof checks, receipts, mints), per receive.
//!
//! Run: `cargo bench -p lamina-benches --bench bridge` (`LAMINA_BENCH_N=1000,1000000`
//! sets N).

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lamina_benches::blocks::SCOPE;
use lamina_execution_core::StateRead;
use lamina_execution_core::block::execute_txs;
use lamina_execution_core::ledger::{self, AssetId, LedgerConfig, NativeLedger};
use lamina_execution_core::state::AuthenticatedState;
use lamina_interfaces::{AnchorList, AnchoredProof, BridgeMessage, BridgeSpec, FinalizedRoot, StepEnv};
use lamina_primitives::{ChainId, Digest, Height, Keypair, Transaction};

const SRC: ChainId = ChainId(1);
const DEST: ChainId = ChainId(2);
const MESSAGES: usize = 1_000;

struct Setup {
    dest_ledger: NativeLedger,
    dest_state: AuthenticatedState,
    /// (message, anchored proof bytes).
    proven: Vec<(BridgeMessage, Vec<u8>)>,
    receives: Vec<Transaction>,
}

fn config(chain: ChainId) -> LedgerConfig {
    let mut c = LedgerConfig::new(chain);
    c.network = Digest([7; 32]);
    c.bridge = BridgeSpec { enabled: true, ..BridgeSpec::default() };
    c
}

fn setup(n: u64) -> Setup {
    let b = lamina_benches::blocks::transfer_block(SRC, n, 0);
    let mut src = b.state;
    let src_ledger = NativeLedger::new(config(SRC)).at(StepEnv::without_anchors(Height(1), SCOPE));
    let senders: Vec<Keypair> =
        (0..MESSAGES as u64).map(|i| Keypair::for_testing(b.spec.funded_test_accounts_seed + i)).collect();
    let locks: Vec<Transaction> = senders
        .iter()
        .map(|k| ledger::bridge_lock(k, SCOPE, SRC, 0, AssetId::NATIVE, 10, DEST, k.public(), 1_000))
        .collect();
    let out = execute_txs(&src_ledger, SCOPE, &src, &locks);
    assert!(out.receipts.iter().all(|r| r.is_success()));
    let root = src.apply(&out.changes, true);
    let anchors: Arc<AnchorList> = Arc::new(
        [FinalizedRoot {
            chain: SRC,
            index: 0,
            to: Height(1),
            state_root: root,
            finalized_at: Height(1),
            usable_until: None,
        }]
        .into_iter()
        .collect(),
    );
    let proven: Vec<(BridgeMessage, Vec<u8>)> = senders
        .iter()
        .map(|k| {
            let key = ledger::outbox_key(DEST, &k.public(), 0);
            let m = BridgeMessage::decode(&src.data(&key).unwrap()).unwrap();
            let (_, p) = src.prove_data(&key).unwrap();
            (m, AnchoredProof { anchor_index: 0, state_proof: lamina_primitives::encode(&p).unwrap() }.encode())
        })
        .collect();
    let relayer = Keypair::for_testing(u64::MAX / 2);
    let receives = proven
        .iter()
        .enumerate()
        .map(|(i, (m, p))| ledger::bridge_receive(&relayer, SCOPE, DEST, i as u64, *m, p.clone()))
        .collect();
    let dest_ledger = NativeLedger::new(config(DEST)).at(StepEnv::new(Height(2), SCOPE, anchors));
    Setup { dest_ledger, dest_state: AuthenticatedState::new(), proven, receives }
}

fn bridge_group(c: &mut Criterion) {
    for n in lamina_benches::blocks::ns(&[100_000]) {
        let s = setup(n);
        let (m, p) = &s.proven[0];
        println!("bridge: one anchored proof is {} bytes (N = {n})", p.len());
        let mut g = c.benchmark_group(format!("bridge::verify_proof/N={n}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("verify_anchored", |b| {
            b.iter(|| s.dest_ledger.verify_anchored(SRC, p, &ledger::message_key(m), &m.encode()).unwrap())
        });
        g.finish();
        let mut g = c.benchmark_group(format!("bridge::receive_block/N={n}"));
        g.throughput(Throughput::Elements(MESSAGES as u64));
        g.sample_size(20).measurement_time(Duration::from_secs(10));
        g.bench_function("execute_1000_receives", |b| {
            b.iter(|| {
                let out = execute_txs(&s.dest_ledger, SCOPE, &s.dest_state, &s.receives);
                debug_assert!(out.receipts.iter().all(|r| r.is_success()));
                out
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bridge_group);
criterion_main!(benches);
