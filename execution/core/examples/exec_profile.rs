#![allow(clippy::unwrap_used, missing_docs)]
use lamina_execution_core::ledger::{self, AssetId, LedgerConfig, NativeLedger};
use lamina_execution_core::sigverify::{self, Verified};
use lamina_execution_core::{AuthenticatedState, parallel, sequential};
use lamina_interfaces::{ChainSpec, GenesisBalance};
use lamina_primitives::{ChainId, Keypair, Transaction};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let ns: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let p1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let p2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for n in ns {
        let keys: Vec<Keypair> = (0..n).into_par_iter().map(Keypair::for_testing).collect();
        let spec = ChainSpec {
            id: ChainId(1),
            name: "b".into(),
            balances: keys.iter().map(|k| GenesisBalance { account: k.public(), amount: 1 << 50 }).collect(),
            funded_test_accounts: 0,
            funded_test_accounts_seed: 0,
            funded_test_amount: 0,
        };
        let mut state = AuthenticatedState::new();
        state.apply(&ledger::genesis(&spec), true);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n);
        let mut nonces = vec![0u64; n as usize];
        let txs: Vec<Transaction> = (0..10_000)
            .map(|_| {
                let s = rng.random_range(0..n) as usize;
                let mut r = rng.random_range(0..n - 1) as usize;
                if r >= s {
                    r += 1;
                }
                let t = ledger::transfer(&keys[s], ChainId(1), nonces[s], keys[r].public(), AssetId::NATIVE, 5);
                nonces[s] += 1;
                t
            })
            .collect();
        let v = Verified::assume_valid(&txs);
        let l = NativeLedger::new(LedgerConfig::new(ChainId(1)));
        let best = |f: &dyn Fn()| {
            let mut b = f64::MAX;
            for _ in 0..25 {
                let t = Instant::now();
                f();
                b = b.min(t.elapsed().as_secs_f64());
            }
            b * 1e3
        };
        let reps: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(40);
        if std::env::var("ONLY0").is_ok() {
            continue;
        }
        if std::env::var("ONLYSEQ").is_ok() {
            for _ in 0..reps {
                sequential::execute(&l, &state, &txs, &v);
            }
            continue;
        }
        if std::env::var("ONLY1").is_ok() {
            for _ in 0..reps {
                p1.install(|| parallel::execute(&l, &state, &txs, &v));
            }
            continue;
        }
        if std::env::var("ONLY2").is_ok() {
            for _ in 0..reps {
                p2.install(|| parallel::execute(&l, &state, &txs, &v));
            }
            continue;
        }
        let seq = best(&|| {
            sequential::execute(&l, &state, &txs, &v);
        });
        let par1 = best(&|| {
            p1.install(|| parallel::execute(&l, &state, &txs, &v));
        });
        let par2 = best(&|| {
            p2.install(|| parallel::execute(&l, &state, &txs, &v));
        });
        let sig = if std::env::var("SIG").is_ok() {
            best(&|| {
                p2.install(|| sigverify::verify_block(&txs));
            })
        } else {
            0.0
        };
        let out = sequential::execute(&l, &state, &txs, &v);
        let root_p = best(&|| {
            let mut s = state.clone();
            p2.install(|| s.apply(&out.changes, true));
        });
        let clone = best(&|| {
            let _s = state.clone();
        });
        println!(
            "N={n}: seq {seq:.2} ms  par1 {par1:.2}  par2 {par2:.2}  ratio {:.2}  sig2 {sig:.1}  root(par, incl clone) {root_p:.2} clone {clone:.2}",
            seq / par2
        );
    }
}
