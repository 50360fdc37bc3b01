//! Random blocks with tunable contention for the executor property tests.
#![allow(dead_code)]

use std::collections::HashMap;

use lamina_execution_core::ledger::{self, AssetId, Call, LedgerConfig, NativeLedger};
use lamina_execution_core::{AuthenticatedState, ChangeSet, Verified};
use lamina_interfaces::{ChainSpec, Genesis, GenesisBalance};
use lamina_primitives::{ChainId, Digest, Keypair, Transaction, TxScope};

/// What the tests' transactions bind: a network of their own (every layer that
/// verifies them is given the same scope).
pub const SCOPE: TxScope = TxScope::Network(Digest([0x5c; 32]));
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const CHAIN: ChainId = ChainId(7);

/// Test keypairs for accounts `0..n` (real keys: blocks carry real signatures).
pub fn keys(n: u64) -> Vec<Keypair> {
    use rayon::prelude::*;
    (0..n).into_par_iter().map(Keypair::for_testing).collect()
}

#[derive(Clone, Debug)]
pub struct Params {
    pub accounts: u64,
    pub txs: usize,
    /// Probability that a sender is drawn from a hot set of 2 accounts.
    pub hot: f64,
    pub bad_nonce: f64,
    pub overdraft: f64,
    pub bad_sig: f64,
    pub other_ops: f64,
    pub fee: u64,
    /// Balance of each account (small balances make overdrafts and dependence on
    /// in-block credits frequent).
    pub funding: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            accounts: 100,
            txs: 500,
            hot: 0.1,
            bad_nonce: 0.05,
            overdraft: 0.05,
            bad_sig: 0.02,
            other_ops: 0.1,
            fee: 0,
            funding: 1_000,
        }
    }
}

pub struct Setup {
    pub ledger: NativeLedger,
    pub state: AuthenticatedState,
    pub txs: Vec<Transaction>,
    pub verified: Verified,
    pub keys: Vec<Keypair>,
}

/// The chain spec of a test block: `p.accounts` funded accounts, fee `p.fee` paid to
/// account 1.
pub fn spec(p: &Params, keys: &[Keypair]) -> ChainSpec {
    let account = |i: u64| keys[i as usize].public();
    ChainSpec {
        id: CHAIN,
        name: "test".into(),
        balances: (0..p.accounts).map(|i| GenesisBalance { account: account(i), amount: p.funding }).collect(),
        funded_test_accounts: 0,
        funded_test_accounts_seed: 0,
        funded_test_amount: 0,
        fee: p.fee,
        fee_collector: account(1 % p.accounts),
        ledger_version: 1,
    }
}

/// A genesis holding only `spec` (enough for `NativeChains`).
pub fn genesis_of(spec: ChainSpec) -> Genesis {
    Genesis {
        bridge: lamina_interfaces::BridgeSpec { enabled: true, ..Default::default() },
        chains: vec![spec],
        ..lamina_test_utils::genesis("exec-core-test")
    }
}

pub fn genesis_state(p: &Params, keys: &[Keypair]) -> AuthenticatedState {
    let mut s = AuthenticatedState::new();
    s.apply(&ledger::genesis(&spec(p, keys)), true);
    s
}

fn tx(sender: &Keypair, nonce: u64, call: &Call) -> Transaction {
    Transaction::new_signed(sender, SCOPE, CHAIN, nonce, call.encode())
}

pub fn block(seed: u64, p: &Params) -> Setup {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys = keys(p.accounts);
    let account = |i: u64| keys[i as usize].public();
    // The ledger every replica of the test genesis runs (bridge on, its network id).
    let ledger = NativeLedger::new(LedgerConfig::from_genesis(&genesis_of(spec(p, &keys)), CHAIN).unwrap());
    let state = genesis_state(p, &keys);
    let mut nonces: HashMap<u64, u64> = HashMap::new();
    let mut assets: Vec<(u64, AssetId)> = Vec::new();
    let mut txs = Vec::with_capacity(p.txs);
    let pick = |rng: &mut ChaCha8Rng| -> u64 {
        if rng.random_bool(p.hot) { rng.random_range(0..p.accounts.min(2)) } else { rng.random_range(0..p.accounts) }
    };
    for _ in 0..p.txs {
        let s = pick(&mut rng);
        let mut r = pick(&mut rng);
        if r == s && p.accounts > 1 {
            r = (s + 1) % p.accounts;
        }
        let n = nonces.entry(s).or_insert(0);
        let mut nonce = *n;
        if rng.random_bool(p.bad_nonce) {
            nonce = if rng.random_bool(0.5) { nonce + 1 + rng.random_range(0..3) } else { nonce.saturating_sub(1) };
        }
        let amount = if rng.random_bool(p.overdraft) {
            p.funding + rng.random_range(1..p.funding + 2)
        } else {
            rng.random_range(0..=p.funding / 4)
        };
        let call = if rng.random_bool(p.other_ops) {
            match rng.random_range(0..7) {
                0 => {
                    assets.push((s, ledger::created_asset_id(CHAIN, &account(s), nonce)));
                    Call::CreateAsset { symbol: *b"tok\0\0\0\0\0" }
                }
                1 if !assets.is_empty() => {
                    // Mint: by the issuer most of the time, by someone else sometimes.
                    let (issuer, a) = assets[rng.random_range(0..assets.len())];
                    let _ = issuer;
                    Call::Mint { asset: a, to: account(r), amount }
                }
                2 if !assets.is_empty() => {
                    let (_, a) = assets[rng.random_range(0..assets.len())];
                    Call::Transfer { to: account(r), asset: a, amount: amount / 2 }
                }
                3 => Call::Burn { asset: AssetId::NATIVE, amount: amount / 3 },
                4 => Call::BridgeLock {
                    asset: AssetId::NATIVE,
                    amount: amount / 2,
                    dest_chain: ChainId(9),
                    recipient: account(r),
                    timeout_heights: 10,
                },
                5 => Call::Transfer { to: account(r), asset: AssetId(12345), amount: 1 },
                _ => Call::Transfer { to: account(s), asset: AssetId::NATIVE, amount },
            }
        } else {
            Call::Transfer { to: account(r), asset: AssetId::NATIVE, amount }
        };
        let mut t = tx(&keys[s as usize], nonce, &call);
        // Occasional malformed payloads and wrong chains.
        if rng.random_bool(0.01) {
            t.payload.truncate(t.payload.len() / 2);
            t = Transaction::new_signed(&keys[s as usize], SCOPE, CHAIN, t.nonce, t.payload);
        }
        if rng.random_bool(0.01) {
            t = Transaction::new_signed(&keys[s as usize], SCOPE, ChainId(8), t.nonce, t.payload);
        }
        // Mints by a non-issuer: swap the sender in sometimes.
        if matches!(call, Call::Mint { .. }) && rng.random_bool(0.7) {
            if let Some((issuer, _)) =
                assets.iter().find(|(_, a)| matches!(call, Call::Mint { asset, .. } if asset == *a))
            {
                let inonce = nonces.entry(*issuer).or_insert(0);
                t = tx(&keys[*issuer as usize], *inonce, &call);
                *inonce += 1;
            }
        } else if nonce == *nonces.get(&s).unwrap_or(&0) {
            *nonces.entry(s).or_insert(0) += 1;
        }
        if rng.random_bool(p.bad_sig) {
            t.signature.0[rng.random_range(0..64)] ^= 1 << rng.random_range(0..8);
        }
        txs.push(t);
    }
    let verified = lamina_execution_core::sigverify::verify_block(SCOPE, &txs);
    Setup { ledger, state, txs, verified, keys }
}

/// Applies a change set to a clone and returns the root (sequential hashing).
pub fn root_after(state: &AuthenticatedState, changes: &ChangeSet, parallel: bool) -> lamina_primitives::Digest {
    let mut s = state.clone();
    s.apply(changes, parallel)
}
