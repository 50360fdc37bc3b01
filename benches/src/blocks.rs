//! Blocks of signed native transfers for the criterion benchmarks (execution, settlement):
//! one shape, built once here, so the benches compare the same workload.

use lamina_execution_core::AuthenticatedState;
use lamina_execution_core::ledger::{self, AssetId};
use lamina_interfaces::{ChainSpec, GenesisBalance};
use lamina_primitives::{ChainId, Digest, Keypair, Transaction, TxScope};

/// What the blocks' transfers are signed for: a network of their own, as every new
/// network's transactions bind one (verifiers of these blocks use the same scope).
pub const SCOPE: TxScope = TxScope::Network(Digest([0xbe; 32]));
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A funded chain and one block of transfers on it.
#[derive(Debug)]
pub struct TransferBlock {
    /// The `n` accounts (`Keypair::for_testing(0..n)`).
    pub keys: Vec<Keypair>,
    /// The chain spec funding every account with 2^50 of the native asset.
    pub spec: ChainSpec,
    /// The genesis state of `spec`.
    pub state: AuthenticatedState,
    /// `block` signed transfers, random sender != recipient among the `n` accounts, in
    /// nonce order per sender (seeded by `n`, so the same arguments give the same block).
    pub txs: Vec<Transaction>,
}

/// Builds a [`TransferBlock`] of `block` transfers among `n >= 2` accounts of `chain`.
pub fn transfer_block(chain: ChainId, n: u64, block: usize) -> TransferBlock {
    let keys: Vec<Keypair> = (0..n).into_par_iter().map(Keypair::for_testing).collect();
    let spec = ChainSpec {
        id: chain,
        name: "bench".into(),
        balances: keys.iter().map(|k| GenesisBalance { account: k.public(), amount: 1 << 50 }).collect(),
        ..ChainSpec::default()
    };
    let mut state = AuthenticatedState::new();
    state.apply(&ledger::genesis(&spec), true);
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let mut nonces = vec![0u64; n as usize];
    let mut picks = Vec::with_capacity(block);
    for _ in 0..block {
        let s = rng.random_range(0..n) as usize;
        let mut r = rng.random_range(0..n - 1) as usize;
        if r >= s {
            r += 1;
        }
        picks.push((s, r, nonces[s], rng.random_range(1..1000u64)));
        nonces[s] += 1;
    }
    let txs = picks
        .par_iter()
        .map(|&(s, r, nonce, amount)| {
            ledger::transfer(&keys[s], SCOPE, chain, nonce, keys[r].public(), AssetId::NATIVE, amount)
        })
        .collect();
    TransferBlock { keys, spec, state, txs }
}

/// The account counts to run: `LAMINA_BENCH_N` (comma-separated), else `default`.
pub fn ns(default: &[u64]) -> Vec<u64> {
    match std::env::var("LAMINA_BENCH_N") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

/// Threads for "all threads": `LAMINA_BENCH_THREADS`, else every core.
pub fn all_threads() -> usize {
    std::env::var("LAMINA_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
