//! Consensus micro-benchmarks.
//!
//! * `consensus::order/n=4 …` vs `n=7 …`: the ordering capacity of the pure protocol
//!   core: `n` real cores (real ed25519 signing, ZIP-215 verification of every vote,
//!   certificate and availability certificate) exchange messages in memory with no
//!   network delay until 20 blocks of 16 batch certificates each are finalized at every
//!   validator. Throughput in batch certificates per second: what consensus can order
//!   when the network is free, to compare with the end-to-end benchmark.
//! * `consensus::intake/…`: checking and queueing 1,024 transactions of 512 bytes into
//!   the mempool, with signature checks (one batch verification) vs without.
//! * `consensus::mempool/…`: the mempool's bookkeeping per transaction once it holds a
//!   loaded validator's history (insert, cut with the batch's encoding, certify, order).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lamina_consensus_core::{Action, Config, Core, Message, Recovered, Zip215};
use lamina_consensus_service::mempool::Mempool;
use lamina_consensus_service::{Intake, MempoolConfig};
use lamina_primitives::{
    AvailabilityCertificate, ChainId, Committee, DataCommitment, Digest, Keypair, Namespace, QuorumCertificate,
    Signature, Transaction,
};
use parking_lot::Mutex;

const BLOCKS: u64 = 20;
const CERTS_PER_BLOCK: usize = 16;

fn da_keys() -> Vec<Keypair> {
    (0..4).map(|i| Keypair::for_testing(7_000 + i)).collect()
}

fn certs(count: usize, keys: &[Keypair]) -> Vec<AvailabilityCertificate> {
    (0..count)
        .map(|k| {
            let commitment = DataCommitment {
                data_root: lamina_primitives::domains::BATCH.hash(&(k as u64).to_le_bytes()),
                square_width: 64,
                codec: 1,
                namespaces: vec![Namespace::from(ChainId(1))],
                blob_bytes: 1 << 20,
            };
            let d = commitment.attestation_digest();
            let votes: Vec<(usize, Signature)> = (0..3).map(|i| (i, keys[i].sign(&d))).collect();
            AvailabilityCertificate { commitment, signatures: QuorumCertificate::from_votes(d, 4, &votes) }
        })
        .collect()
}

/// Runs `n` cores in memory until every one has finalized `BLOCKS` blocks; returns the
/// number of batches ordered.
fn order(n: usize, batches: &[AvailabilityCertificate]) -> usize {
    let keys: Vec<Keypair> = (0..n as u64).map(Keypair::for_testing).collect();
    let committee = Committee::new(keys.iter().map(|k| k.public()).collect()).unwrap();
    let da = Committee::new(da_keys().iter().map(|k| k.public()).collect()).unwrap();
    let mut cfg = Config::new(Digest([9; 32]), committee, da, 3);
    cfg.max_batches_per_block = CERTS_PER_BLOCK;
    let now = Duration::from_millis(1);
    let mut queue: VecDeque<(usize, usize, Message)> = VecDeque::new();
    let mut cores = Vec::new();
    let mut heights = vec![0u64; n];
    let mut ordered = 0usize;
    let route =
        |from: usize, actions: Vec<Action>, q: &mut VecDeque<(usize, usize, Message)>, h: &mut u64, o: &mut usize| {
            for a in actions {
                match a {
                    Action::Broadcast(m) => {
                        for to in 0..n {
                            if to != from {
                                q.push_back((from, to, m.clone()));
                            }
                        }
                    }
                    Action::Send { to, message } => q.push_back((from, to, message)),
                    Action::Finalized(fb) => {
                        *h = fb.height().0;
                        if from == 0 {
                            *o += fb.block.batches.len();
                        }
                    }
                    _ => {}
                }
            }
        };
    for (i, k) in keys.iter().enumerate() {
        let (c, actions) =
            Core::new(cfg.clone(), Arc::new(k.clone()), Arc::new(Zip215), Recovered::default(), now, 0).unwrap();
        cores.push(c);
        route(i, actions, &mut queue, &mut heights[i], &mut ordered);
    }
    // Every validator's batches are announced to all; leaders order them.
    for (k, cert) in batches.iter().enumerate() {
        let i = k % n;
        let actions = cores[i].submit_batch(now, cert.clone()).unwrap();
        route(i, actions, &mut queue, &mut heights[i], &mut ordered);
    }
    while heights.iter().any(|h| *h < BLOCKS) {
        let Some((from, to, msg)) = queue.pop_front() else {
            // Nothing in flight: let timers fire (an empty-block wait).
            for i in 0..n {
                let actions = cores[i].handle_timeout(Duration::from_secs(3600));
                route(i, actions, &mut queue, &mut heights[i], &mut ordered);
            }
            continue;
        };
        let actions = cores[to].handle_message(now, from, msg);
        route(to, actions, &mut queue, &mut heights[to], &mut ordered);
    }
    ordered
}

fn bench_order(c: &mut Criterion) {
    let keys = da_keys();
    let batches = certs(BLOCKS as usize * CERTS_PER_BLOCK, &keys);
    let mut g = c.benchmark_group("consensus::order");
    g.sample_size(10);
    g.throughput(Throughput::Elements(batches.len() as u64));
    for n in [4usize, 7] {
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("n={n} blocks={BLOCKS} certs/block={CERTS_PER_BLOCK}")),
            &n,
            |b, &n| b.iter(|| assert!(order(n, &batches) >= batches.len() / 2)),
        );
    }
    g.finish();
}

fn bench_intake(c: &mut Criterion) {
    let scope = lamina_primitives::TxScope::Network(lamina_primitives::Digest([1; 32]));
    let txs: Vec<Transaction> = (0..1024u64)
        .map(|i| Transaction::new_signed(&Keypair::for_testing(100 + i % 64), scope, ChainId(1), i, vec![7; 400]))
        .collect();
    assert_eq!(txs[0].approx_size(), 512);
    let mut g = c.benchmark_group("consensus::intake");
    g.throughput(Throughput::Elements(txs.len() as u64));
    for verify in [true, false] {
        let label =
            if verify { "1024 txs of 512 B, signatures checked" } else { "1024 txs of 512 B, no signature check" };
        g.bench_function(label, |b| {
            b.iter_batched(
                || {
                    let cfg = MempoolConfig { verify_signatures: verify, ..MempoolConfig::default() };
                    let mp = Arc::new(Mutex::new(Mempool::new(cfg.limits(), [ChainId(1)])));
                    (Intake::new(mp, cfg, scope, Arc::new(tokio::sync::Notify::new()), usize::MAX), txs.clone())
                },
                |(intake, txs)| intake.submit_now(txs),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// The mempool's bookkeeping for one validator's share of a loaded network: 1,024
/// transactions of 5,000 senders inserted, cut into one batch, certified and ordered,
/// with the duplicate window already holding 500,000 ordered ids (as after ~100 s at
/// 5,000 tx/s). Transactions are signed in setup (not measured; the mempool takes
/// transactions whose signatures were checked); the cut includes the batch's encoding.
fn bench_mempool_cycle(c: &mut Criterion) {
    const SENDERS: u64 = 5_000;
    const PER_CYCLE: usize = 1_024;
    let scope = lamina_primitives::TxScope::Network(lamina_primitives::Digest([1; 32]));
    let keys: Vec<Keypair> = (0..SENDERS).map(|i| Keypair::for_testing(1_000 + i)).collect();
    let cfg = MempoolConfig::default();
    let mut mp = Mempool::new(cfg.limits(), [ChainId(1)]);
    let mut nonces = vec![0u64; SENDERS as usize];
    let mut next = 0usize;
    let mut cycle = 0u64;
    // Each cycle signs fresh transactions (setup, not measured): every sender's next nonce.
    let mut make = |n: usize| -> Vec<(Transaction, lamina_primitives::TxId)> {
        (0..n)
            .map(|_| {
                let s = next % SENDERS as usize;
                next += 1;
                let tx = Transaction::new_signed(&keys[s], scope, ChainId(1), nonces[s], vec![7; 64]);
                nonces[s] += 1;
                let id = tx.id();
                (tx, id)
            })
            .collect()
    };
    let mut run = |mp: &mut Mempool, txs: Vec<(Transaction, lamina_primitives::TxId)>| {
        let now = Duration::from_secs(1);
        for (tx, id) in txs {
            mp.insert(tx, id, now).unwrap();
        }
        while let Some(cut) = mp.cut(usize::MAX) {
            cycle += 1;
            let att = lamina_primitives::Digest(*blake3::hash(&cycle.to_le_bytes()).as_bytes());
            mp.certified(cut.id, att);
            mp.ordered(&[att]);
        }
    };
    for _ in 0..(500_000 / PER_CYCLE) {
        let txs = make(PER_CYCLE);
        run(&mut mp, txs);
    }
    let mut g = c.benchmark_group("consensus::mempool");
    g.throughput(Throughput::Elements(PER_CYCLE as u64));
    g.sample_size(20);
    g.bench_function("insert, cut, order 1024 txs of 5000 senders, 500k recent ids", |b| {
        b.iter_batched(|| make(PER_CYCLE), |txs| run(&mut mp, txs), criterion::BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, bench_order, bench_intake, bench_mempool_cycle);
criterion_main!(benches);
