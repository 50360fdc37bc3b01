//! Execution layer: the Block-STM/pevm workload (blocks of 10,000 signed transfers,
//! random sender != recipient among N accounts, N in {2, 10, 100, 1k, 10k, 100k}).
//!
//! Groups (comparisons side by side, so one run shows the ratios):
//! * `execution::exec/N=…`: `sequential`, `parallel threads=1`, `parallel threads=all`,
//!   execution alone (signatures verified beforehand), and the same three with the
//!   signature stage included (`+sig`: the sequential twin of the stage for `sequential`,
//!   the stage on the executor's pool otherwise).
//! * `execution::sigverify/N=…`: the signature stage beside raw ZIP-215 batch
//!   verification of the same signatures, both on all threads.
//! * `execution::state_root/N=…`: applying a block's change set to the authenticated
//!   state (flat maps + sparse Merkle tree) and computing the root, hashing in parallel
//!   and sequentially.
//! * `execution::merkle_updates`: merkleized state updates per second on an in-memory
//!   state of 1M keys.
//! * `execution::verify_ahead/blocks=…`: the signature stage of `blocks` consecutive
//!   blocks of 500 transfers (the size of a chain's block at 10,000 tx/s and 20
//!   heights a second), verified block by block (`one by one`, as a node that keeps up
//!   does) against all at once (`as one stage`, as a node that has fallen behind does:
//!   `sigverify::verify_blocks`), on all threads.
//! * `execution::receipt_index/...`: one height's receipts (500, random transaction ids)
//!   written to the on-disk receipt index holding 0.5 or 2 million receipts already, as
//!   the node does it: into the index's memory tail, and a flush when the insert says
//!   one is due (every 65,536 receipts), so the figure is the average over flushes.
//!   The time is the process's **CPU** time (`CLOCK_PROCESS_CPUTIME_ID`), so background
//!   work of an index store (an LSM's sorting, for one) would count too.
//!
//! Run: `cargo bench -p lamina-benches --bench execution`
//! (`LAMINA_BENCH_N=2,100` restricts N; `LAMINA_BENCH_THREADS=k` sets "all".)

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lamina_benches::blocks::SCOPE;
use lamina_execution_core::ledger::{LedgerConfig, NativeLedger};
use lamina_execution_core::sigverify::{self, Verified};
use lamina_execution_core::{AuthenticatedState, ChangeSet, CounterKey, parallel, sequential};
use lamina_primitives::{ChainId, Transaction, TxScope};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHAIN: ChainId = ChainId(1);
const BLOCK: usize = 10_000;

struct Workload {
    ledger: NativeLedger,
    state: AuthenticatedState,
    txs: Vec<Transaction>,
    verified: Verified,
}

fn workload(n: u64) -> Workload {
    let b = lamina_benches::blocks::transfer_block(CHAIN, n, BLOCK);
    let verified = sigverify::verify_block(SCOPE, &b.txs);
    assert!(verified.valid.iter().all(|v| *v));
    let ledger = NativeLedger::new(LedgerConfig::new(CHAIN));
    Workload { ledger, state: b.state, txs: b.txs, verified }
}

fn ns() -> Vec<u64> {
    lamina_benches::blocks::ns(&[2, 10, 100, 1_000, 10_000, 100_000])
}

fn all_threads() -> usize {
    lamina_benches::blocks::all_threads()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn exec_group(c: &mut Criterion) {
    let all = all_threads();
    let (p1, pall) = (pool(1), pool(all));
    for n in ns() {
        let w = workload(n);
        // Sanity: both executors agree and every transfer succeeds.
        let seq = sequential::execute(&w.ledger, &w.state, &w.txs, &w.verified);
        assert!(seq.receipts.iter().all(|r| r.is_success()));
        assert_eq!(pall.install(|| parallel::execute(&w.ledger, &w.state, &w.txs, &w.verified)), seq);

        let mut g = c.benchmark_group(format!("execution::exec/N={n}"));
        g.throughput(Throughput::Elements(BLOCK as u64));
        g.sample_size(20);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        g.bench_function("sequential", |b| b.iter(|| sequential::execute(&w.ledger, &w.state, &w.txs, &w.verified)));
        g.bench_function("parallel threads=1", |b| {
            b.iter(|| p1.install(|| parallel::execute(&w.ledger, &w.state, &w.txs, &w.verified)))
        });
        g.bench_function(format!("parallel threads={all}"), |b| {
            b.iter(|| pall.install(|| parallel::execute(&w.ledger, &w.state, &w.txs, &w.verified)))
        });
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(4));
        g.bench_function("sequential+sig", |b| {
            b.iter(|| {
                let v = sigverify::verify_block_sequential(SCOPE, &w.txs);
                sequential::execute(&w.ledger, &w.state, &w.txs, &v)
            })
        });
        g.bench_function("parallel+sig threads=1", |b| {
            b.iter(|| {
                p1.install(|| {
                    let v = sigverify::verify_block(SCOPE, &w.txs);
                    parallel::execute(&w.ledger, &w.state, &w.txs, &v)
                })
            })
        });
        g.bench_function(format!("parallel+sig threads={all}"), |b| {
            b.iter(|| {
                pall.install(|| {
                    let v = sigverify::verify_block(SCOPE, &w.txs);
                    parallel::execute(&w.ledger, &w.state, &w.txs, &v)
                })
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("execution::sigverify/N={n}"));
        g.throughput(Throughput::Elements(BLOCK as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(4));
        let items: Vec<_> = w.txs.iter().map(|t| t.signed_digest(SCOPE)).collect();
        g.bench_function(format!("raw batch verify threads={all}"), |b| {
            b.iter(|| assert_eq!(pall.install(|| sigverify::raw_batch_verify(&items)), BLOCK))
        });
        g.bench_function(format!("signature stage threads={all}"), |b| {
            b.iter(|| pall.install(|| sigverify::verify_block(SCOPE, &w.txs)))
        });
        // What binding the network adds per transaction: one more hash over the id.
        let ids: Vec<_> = w.txs.iter().map(Transaction::id).collect();
        g.bench_function("signed messages, chain only (threads=1)", |b| {
            b.iter(|| ids.iter().map(|id| TxScope::ChainOnly.message(id)).fold(0u8, |a, m| a ^ m.0[0]))
        });
        g.bench_function("signed messages, network bound (threads=1)", |b| {
            b.iter(|| ids.iter().map(|id| SCOPE.message(id)).fold(0u8, |a, m| a ^ m.0[0]))
        });
        g.finish();

        let mut g = c.benchmark_group(format!("execution::state_root/N={n}"));
        g.throughput(Throughput::Elements(seq.changes.len() as u64));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(3));
        for (name, par) in [(format!("apply+root threads={all}"), true), ("apply+root sequential".to_string(), false)] {
            g.bench_function(name, |b| {
                b.iter_batched_ref(
                    || w.state.clone(),
                    |s| pall.install(|| s.apply(&seq.changes, par)),
                    BatchSize::LargeInput,
                )
            });
        }
        g.finish();
    }
}

fn merkle_group(c: &mut Criterion) {
    let all = all_threads();
    let pall = pool(all);
    let size: u32 = std::env::var("LAMINA_BENCH_STATE_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let key = |i: u32| CounterKey::new(2, &[&i.to_le_bytes()]);
    let mut state = AuthenticatedState::new();
    let init = ChangeSet { counters: (0..size).map(|i| (key(i), 1)).collect(), data: vec![] };
    pall.install(|| state.apply(&init, true));
    let mut g = c.benchmark_group(format!("execution::merkle_updates/keys={size}"));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut round: u128 = 2;
    for updates in [20_000u32, 200_000] {
        g.throughput(Throughput::Elements(u64::from(updates)));
        for (name, par) in [(format!("threads={all}"), true), ("sequential".to_string(), false)] {
            g.bench_function(BenchmarkId::new(name, updates), |b| {
                b.iter_batched(
                    || {
                        round += 1;
                        let mut ks: Vec<u32> = (0..updates).map(|_| rng.random_range(0..size)).collect();
                        ks.sort_unstable();
                        ks.dedup();
                        ChangeSet { counters: ks.into_iter().map(|i| (key(i), round)).collect(), data: vec![] }
                    },
                    |ch| pall.install(|| state.apply(&ch, par)),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

/// CPU time of the whole process (every thread).
fn process_cpu() -> Duration {
    Duration::from_nanos(lamina_benches::procstat::cpu_clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID))
}

fn index_group(c: &mut Criterion) {
    use lamina_execution_core::ledger::LedgerFailure;
    use lamina_execution_core::{Receipt, Status};
    use lamina_execution_service::index::{self, ReceiptIndex};
    use lamina_execution_service::record::{Header, VERSION};
    use lamina_primitives::{Digest, Height, TxId};

    const PER_HEIGHT: u64 = 500;
    let header = Header { version: VERSION, chain: ChainId(1), genesis: Digest([7; 32]) };
    let mut next_id = 0u64;
    let mut receipts = move |n: u64| -> Vec<Receipt<LedgerFailure>> {
        (0..n)
            .map(|_| {
                next_id += 1;
                let id = lamina_primitives::domains::TX_ID.hash(&next_id.to_le_bytes());
                Receipt { tx_id: TxId(id), status: Status::Success }
            })
            .collect()
    };
    for held in [500_000u64, 2_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let (ix, _) =
            ReceiptIndex::open(&dir.path().join("index.redb"), &header, 32 << 20, index::EPOCH, index::FLUSH_RECEIPTS)
                .unwrap();
        let mut h = 0u64;
        while h * PER_HEIGHT < held {
            h += 1;
            if ix.insert(Height(h), &receipts(PER_HEIGHT)).unwrap() {
                ix.flush().unwrap();
            }
        }
        let mut g = c.benchmark_group(format!("execution::receipt_index/held={held}"));
        g.throughput(Throughput::Elements(PER_HEIGHT));
        g.bench_function("insert one height, process CPU", |b| {
            b.iter_custom(|iters| {
                let batches: Vec<_> = (0..iters).map(|_| receipts(PER_HEIGHT)).collect();
                let start = process_cpu();
                for r in &batches {
                    h += 1;
                    if ix.insert(Height(h), r).unwrap() {
                        ix.flush().unwrap();
                    }
                }
                process_cpu() - start
            })
        });
        g.finish();
    }
}

fn verify_ahead_group(c: &mut Criterion) {
    const SMALL: usize = 500;
    let pall = pool(all_threads());
    let b = lamina_benches::blocks::transfer_block(CHAIN, 1_000, 8 * SMALL);
    for blocks in [1usize, 2, 4, 8] {
        let group: Vec<&[Transaction]> = b.txs[..blocks * SMALL].chunks(SMALL).collect();
        let mut g = c.benchmark_group(format!("execution::verify_ahead/blocks={blocks}"));
        g.throughput(Throughput::Elements((blocks * SMALL) as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(3));
        g.bench_function("one by one", |bn| {
            bn.iter(|| pall.install(|| group.iter().map(|t| sigverify::verify_block(SCOPE, t)).collect::<Vec<_>>()))
        });
        g.bench_function("as one stage", |bn| bn.iter(|| pall.install(|| sigverify::verify_blocks(SCOPE, &group))));
        g.finish();
    }
}

criterion_group!(benches, exec_group, verify_ahead_group, merkle_group, index_group);
criterion_main!(benches);
