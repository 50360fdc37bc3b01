//! Settlement: the cost of checking a fraud proof against the cost of executing.
//!
//! Group `settlement::fraud_proof/N=…` (one block of 10,000 signed native transfers,
//! random sender != recipient among N accounts, built like `execution.rs`'s), side by
//! side:
//! * `sequential_execute`: what a replica does for the step: the signature stage,
//!   `sequential::execute` against the full state, applying the change set to the
//!   authenticated state (a fresh clone per iteration, not timed) and its root;
//! * `stateless_verify`: what settlement does for a fraud proof:
//!   `NativeChains::reexecute` from the pre-state root and the encoded witness (decode,
//!   rebuild the partial tree, check every value, signature stage, sequential execution,
//!   post-state root, receipts root).
//!
//! The witness size per transaction is printed once per N. Target: `stateless_verify`
//! at most 2x `sequential_execute`.
//!
//! Group `settlement::replay/claims_per_height=…`: the settlement state machine replaying
//! a log of 10,000 signed one-step claims (4 or 16 chains, one claimer each, claims chained
//! through their parents, every height also observed with data for each chain and
//! finalizing the claims of W heights ago) on **one core** (a one-thread rayon pool:
//! the per-height batch signature check included). Target: ≥ 10,000 claims/s.
//!
//! Run: `cargo bench -p lamina-benches --bench settlement`
//! (`LAMINA_BENCH_N=1000,100000` sets N, default 10000; `LAMINA_BENCH_THREADS=k` sets
//! the signature stage's threads, default all).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lamina_execution_core::ledger::{LedgerConfig, NativeLedger};
use lamina_execution_core::machine::receipts_root;
use lamina_execution_core::{AuthenticatedState, NativeChains, sequential, sigverify, witness};
use lamina_interfaces::{ChainSpec, Genesis, GenesisBalance, StatelessExecutor, StepOutcome};
use lamina_primitives::{ChainId, Keypair, Transaction, TxScope};
use rayon::prelude::*;

const CHAIN: ChainId = ChainId(1);
const BLOCK: usize = 10_000;

/// What the block's transfers (`lamina_benches::blocks`) bind.
const SCOPE: TxScope = lamina_benches::blocks::SCOPE;

fn genesis(spec: ChainSpec) -> Genesis {
    Genesis { chains: vec![spec], ..lamina_test_utils::genesis("bench") }
}

struct Workload {
    chains: NativeChains,
    ledger: NativeLedger,
    state: AuthenticatedState,
    txs: Vec<Transaction>,
}

fn workload(n: u64) -> Workload {
    let b = lamina_benches::blocks::transfer_block(CHAIN, n, BLOCK);
    let ledger = NativeLedger::new(LedgerConfig::from_spec(&b.spec).unwrap());
    Workload { chains: NativeChains::new(&genesis(b.spec)), ledger, state: b.state, txs: b.txs }
}

fn ns() -> Vec<u64> {
    lamina_benches::blocks::ns(&[10_000])
}

fn all_threads() -> usize {
    lamina_benches::blocks::all_threads()
}

fn fraud_proof_group(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(all_threads()).build().unwrap();
    for n in ns() {
        let w = workload(n);
        let env = lamina_interfaces::StepEnv::without_anchors(lamina_primitives::Height(0), SCOPE);
        let pre_root = w.state.root();
        let verified = pool.install(|| sigverify::verify_block(SCOPE, &w.txs));
        let (out, wit) = witness::build(&w.ledger, &w.state, &w.txs, &verified).unwrap();
        assert!(out.receipts.iter().all(|r| r.is_success()));
        let bytes = lamina_primitives::encode(&wit).unwrap();
        let want = StepOutcome {
            state_root: w.state.clone().apply(&out.changes, false),
            receipts_root: receipts_root(&out.receipts),
        };
        assert_eq!(pool.install(|| w.chains.reexecute(CHAIN, &env, &pre_root, &bytes, &w.txs)), Ok(want));
        eprintln!(
            "settlement::fraud_proof/N={n}: witness {} bytes for {BLOCK} transfers ({:.1} bytes/tx, {} keys)",
            bytes.len(),
            bytes.len() as f64 / BLOCK as f64,
            wit.counters.len() + wit.data.len()
        );

        let mut g = c.benchmark_group(format!("settlement::fraud_proof/N={n}"));
        g.throughput(Throughput::Elements(BLOCK as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(4));
        g.bench_function("sequential_execute", |b| {
            b.iter_batched_ref(
                || w.state.clone(),
                |s| {
                    pool.install(|| {
                        let v = sigverify::verify_block(SCOPE, &w.txs);
                        let out = sequential::execute(&w.ledger, &*s, &w.txs, &v);
                        s.apply(&out.changes, false)
                    })
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("stateless_verify", |b| {
            b.iter(|| pool.install(|| w.chains.reexecute(CHAIN, &env, &pre_root, &bytes, &w.txs).unwrap()))
        });
        g.finish();
    }
}

struct NoBadEncoding;
impl lamina_interfaces::EncodingFraudVerifier for NoBadEncoding {
    fn verify_bad_encoding(&self, _: &lamina_primitives::Digest, _: &[u8]) -> Result<(), String> {
        Err("none".into())
    }
}

/// One height of the replay log: the chains' data roots and the settlement entries.
type ReplayHeight = (lamina_primitives::Height, Vec<(ChainId, Vec<lamina_primitives::Digest>, bool)>, Vec<Transaction>);

/// A log of `claims` one-step claims over `chains` chains, one per chain per height.
fn replay_log(chains: u64, claims: usize) -> (Genesis, Vec<ReplayHeight>) {
    use lamina_interfaces::settlement::{chain_receipts, inputs_digest};
    use lamina_interfaces::{CheckpointClaim, ClaimStep};
    use lamina_primitives::{Digest, Height, PublicKey, Signature, domains};
    let claimers: Vec<Keypair> = (0..chains).map(|i| Keypair::for_testing(900 + i)).collect();
    let mut g = genesis(ChainSpec { id: CHAIN, name: "c".into(), ..ChainSpec::default() });
    g.chains =
        (1..=chains).map(|id| ChainSpec { id: ChainId(id), name: format!("c{id}"), ..g.chains[0].clone() }).collect();
    g.settlement.challenge_window = 16;
    g.settlement.balances = claimers.iter().map(|k| GenesisBalance { account: k.public(), amount: 1 << 40 }).collect();
    let exec = NativeChains::new(&g);
    let heights = claims / chains as usize;
    // Per chain: (parent id, to, state root, receipts root).
    let mut heads: Vec<(Digest, Height, Digest, Digest)> =
        (1..=chains).map(|c| (Digest::ZERO, Height(0), exec.genesis_root(ChainId(c)).unwrap(), Digest::ZERO)).collect();
    let mut log = Vec::with_capacity(heights + 1);
    let scope = g.tx_scope();
    let root_of = |c: u64, h: u64| domains::BATCH.hash(&[c.to_le_bytes(), h.to_le_bytes()].concat());
    for h in 1..=heights as u64 + 1 {
        let observed = (1..=chains).map(|c| (ChainId(c), vec![root_of(c, h)], true)).collect();
        let mut entries = Vec::new();
        if h > 1 {
            // Claim the previous height's step of every chain.
            let (parent_h, hs) = (Height(h - 1), &mut heads);
            entries = (0..chains as usize)
                .into_par_iter()
                .zip(hs.par_iter_mut())
                .map(|(i, head)| {
                    let c = ChainId(i as u64 + 1);
                    let step = ClaimStep {
                        height: parent_h,
                        inputs: inputs_digest(&[root_of(c.0, parent_h.0)]),
                        state_root: domains::BATCH.hash(&[head.2.0, [i as u8; 32]].concat()),
                        receipts_root: domains::BATCH.hash(&parent_h.0.to_le_bytes()),
                    };
                    let claim = CheckpointClaim {
                        network: g.network_id(),
                        chain_id: c,
                        parent: head.0,
                        from: head.1,
                        to: parent_h,
                        steps: vec![step],
                        state_root: step.state_root,
                        receipts_root: chain_receipts(&head.3, parent_h, &step.receipts_root),
                        params: g.chains[i].params_digest(),
                        claimer: PublicKey::default(),
                        signature: Signature::default(),
                    }
                    .sign(&claimers[i]);
                    *head = (claim.id(), claim.to, claim.state_root, claim.receipts_root);
                    lamina_settlement_core::Entry::transaction(
                        &claimers[i],
                        scope,
                        h,
                        &lamina_settlement_core::Entry::Claim(claim),
                    )
                    .unwrap()
                })
                .collect();
        }
        log.push((Height(h), observed, entries));
    }
    (g, log)
}

fn replay_group(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for chains in [4u64, 16] {
        let (g, log) = replay_log(chains, 10_000);
        let exec = NativeChains::new(&g);
        let params = lamina_settlement_core::Params::from_genesis(&g);
        let run = || {
            let mut st = lamina_settlement_core::SettlementState::new(params.clone());
            let mut accepted = 0usize;
            for (h, observed, entries) in &log {
                st.observe_block(*h, observed);
                let inputs =
                    entries.iter().map(|tx| lamina_settlement_core::Input { tx: tx.clone(), proof: None }).collect();
                for e in st.apply_entries(*h, inputs, &exec, &NoBadEncoding) {
                    if matches!(e, lamina_settlement_core::Event::ClaimAccepted { .. }) {
                        accepted += 1;
                    }
                }
            }
            (accepted, st.stats().finalized)
        };
        let (accepted, finalized) = one.install(run);
        let total: usize = log.iter().map(|l| l.2.len()).sum();
        assert_eq!(accepted, total, "every claim of the replay log is accepted");
        eprintln!("settlement::replay: {total} claims accepted, {finalized} finalized");
        let mut g = c.benchmark_group(format!("settlement::replay/claims_per_height={chains}"));
        g.throughput(Throughput::Elements(total as u64));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("one_core", |b| b.iter(|| one.install(run)));
        g.finish();
    }
}

criterion_group!(benches, fraud_proof_group, replay_group);
criterion_main!(benches);
