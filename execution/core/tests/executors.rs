#![allow(clippy::unwrap_used)]
//! Parallel == sequential on random blocks with tunable contention.

mod common;

use common::{Params, block, root_after};
use lamina_execution_core::machine::{AccessSet, StateMachine, TxState};
use lamina_execution_core::{Status, parallel, sequential};
use lamina_primitives::Transaction;
use proptest::prelude::*;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn check(seed: u64, p: &Params) -> parallel::ParallelStats {
    let s = block(seed, p);
    let seq = sequential::execute(&s.ledger, &s.state, &s.txs, &s.verified);
    let mut last = None;
    for threads in [1, 2, 4] {
        let (par, stats) =
            pool(threads).install(|| parallel::execute_with_stats(&s.ledger, &s.state, &s.txs, &s.verified));
        assert_eq!(par.receipts, seq.receipts, "receipts differ (seed {seed}, {threads} threads, {p:?})");
        assert_eq!(par.changes, seq.changes, "changes differ (seed {seed}, {threads} threads, {p:?})");
        assert!(!stats.fell_back, "native ledger declarations are exact");
        last = Some(stats);
    }
    assert_eq!(root_after(&s.state, &seq.changes, false), root_after(&s.state, &seq.changes, true));
    last.unwrap()
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop_oneof![Just(2u64), Just(3), Just(10), 2u64..200, Just(1000), Just(10_000)],
        1usize..400,
        0.0f64..0.9,
        0.0f64..0.2,
        0.0f64..0.3,
        0.0f64..0.1,
        0.0f64..0.4,
        prop_oneof![Just(0u64), Just(1), Just(7)],
        prop_oneof![Just(10u64), Just(100), Just(1_000_000)],
    )
        .prop_map(|(accounts, txs, hot, bad_nonce, overdraft, bad_sig, other_ops, fee, funding)| Params {
            accounts,
            txs,
            hot,
            bad_nonce,
            overdraft,
            bad_sig,
            other_ops,
            fee,
            funding,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn parallel_equals_sequential(seed in any::<u64>(), p in params()) {
        check(seed, &p);
    }
}

#[test]
fn contention_extremes_agree_and_defer_when_credits_matter() {
    // Two accounts with tiny balances: almost every debit depends on in-block credits.
    let p = Params { accounts: 2, txs: 2000, funding: 10, overdraft: 0.3, other_ops: 0.0, ..Params::default() };
    let stats = check(1, &p);
    assert!(stats.deferred > 0, "tiny balances must force deferrals: {stats:?}");
    assert_eq!(stats.groups, 2);
    // Rich accounts: nothing depends on in-block credits.
    // Rich accounts, few transactions each: no debit fails, so nothing can depend on
    // in-block credits and nothing is deferred.
    let p = Params {
        accounts: 1000,
        txs: 600,
        funding: 1 << 40,
        overdraft: 0.0,
        other_ops: 0.0,
        hot: 0.0,
        ..Params::default()
    };
    let s = block(2, &p);
    let seq = sequential::execute(&s.ledger, &s.state, &s.txs, &s.verified);
    assert!(!seq.receipts.iter().any(|r| matches!(r.status, Status::Failed(_))));
    let stats = check(2, &p);
    assert_eq!(stats.deferred, 0, "{stats:?}");
}

#[test]
fn large_account_sets_agree() {
    let n = if std::env::var("LAMINA_LONG_TESTS").is_ok() { 100_000 } else { 20_000 };
    check(3, &Params { accounts: n, txs: 5000, ..Params::default() });
}

/// The native ledger without declarations: exercises speculative derivation.
struct Undeclared(lamina_execution_core::NativeLedger);

impl StateMachine for Undeclared {
    type Call = <lamina_execution_core::NativeLedger as StateMachine>::Call;
    type Failure = <lamina_execution_core::NativeLedger as StateMachine>::Failure;
    fn chain_id(&self) -> lamina_primitives::ChainId {
        self.0.chain_id()
    }
    fn decode(&self, tx: &Transaction) -> Result<Self::Call, Self::Failure> {
        self.0.decode(tx)
    }
    fn admit<S: TxState>(&self, tx: &Transaction, c: &Self::Call, s: &mut S) -> Result<(), Self::Failure> {
        self.0.admit(tx, c, s)
    }
    fn apply<S: TxState>(&self, tx: &Transaction, c: &Self::Call, s: &mut S) -> Result<(), Self::Failure> {
        self.0.apply(tx, c, s)
    }
}

/// Declares only the nonce: every block with a transfer falls back.
struct Lying(lamina_execution_core::NativeLedger);

impl StateMachine for Lying {
    type Call = <lamina_execution_core::NativeLedger as StateMachine>::Call;
    type Failure = <lamina_execution_core::NativeLedger as StateMachine>::Failure;
    fn chain_id(&self) -> lamina_primitives::ChainId {
        self.0.chain_id()
    }
    fn decode(&self, tx: &Transaction) -> Result<Self::Call, Self::Failure> {
        self.0.decode(tx)
    }
    fn access(&self, tx: &Transaction, _: &Self::Call, a: &mut AccessSet) -> bool {
        a.counter(lamina_execution_core::ledger::nonce_key(&tx.sender), lamina_execution_core::Access::Write);
        true
    }
    fn admit<S: TxState>(&self, tx: &Transaction, c: &Self::Call, s: &mut S) -> Result<(), Self::Failure> {
        self.0.admit(tx, c, s)
    }
    fn apply<S: TxState>(&self, tx: &Transaction, c: &Self::Call, s: &mut S) -> Result<(), Self::Failure> {
        self.0.apply(tx, c, s)
    }
}

#[test]
fn undeclared_and_wrongly_declared_machines_still_agree() {
    for seed in 0..6 {
        let p = Params { accounts: 5 + seed * 20, txs: 600, ..Params::default() };
        let s = block(seed, &p);
        let seq = sequential::execute(&s.ledger, &s.state, &s.txs, &s.verified);
        let und = Undeclared(s.ledger.clone());
        let (out, stats) = pool(2).install(|| parallel::execute_with_stats(&und, &s.state, &s.txs, &s.verified));
        assert_eq!(out, seq, "undeclared, seed {seed}");
        assert!(stats.undeclared > 0);
        let lying = Lying(s.ledger.clone());
        let (out, stats) = pool(2).install(|| parallel::execute_with_stats(&lying, &s.state, &s.txs, &s.verified));
        assert_eq!(out, seq, "lying, seed {seed}");
        assert!(stats.fell_back);
    }
}

#[test]
fn receipts_cover_every_failure_kind() {
    let p = Params { accounts: 4, txs: 3000, other_ops: 0.5, fee: 3, funding: 50, ..Params::default() };
    let s = block(11, &p);
    let out = sequential::execute(&s.ledger, &s.state, &s.txs, &s.verified);
    let mut kinds = std::collections::BTreeSet::new();
    for r in &out.receipts {
        let k = match &r.status {
            Status::Success => "ok".to_string(),
            Status::Failed(f) => format!("failed {f:?}").split([' ', '{']).take(2).collect::<Vec<_>>().join(" "),
            Status::Rejected(f) => format!("rejected {f:?}").split([' ', '{']).take(2).collect::<Vec<_>>().join(" "),
        };
        kinds.insert(k);
    }
    for want in [
        "ok",
        "rejected BadSignature",
        "rejected WrongChain",
        "rejected Malformed",
        "rejected BadNonce",
        "rejected FeeUnpaid",
        "failed InsufficientBalance",
        "failed UnknownAsset",
    ] {
        assert!(kinds.contains(want), "missing {want} in {kinds:?}");
    }
}
