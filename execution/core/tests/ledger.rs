#![allow(clippy::unwrap_used)]
//! Native ledger behaviour: nonces, fees, assets, typed failures (the bridge calls are in
//! `tests/bridge.rs`); and the
//! signature stage's verdicts.

use lamina_execution_core::ledger::{self, AssetId, LedgerConfig, LedgerFailure, NativeLedger, balance, nonce};
use lamina_execution_core::machine::StateMachine;
use lamina_execution_core::state::AuthenticatedState;
use lamina_execution_core::{ChangeSet, StateRead, Status, parallel, sequential, sigverify};
use lamina_interfaces::{ChainSpec, GenesisBalance};
use lamina_primitives::{ChainId, Digest, Keypair, Transaction, TxScope};

/// What the tests' transactions bind: a network of their own.
const SCOPE: TxScope = TxScope::Network(Digest([0x5c; 32]));

const CHAIN: ChainId = ChainId(3);

fn setup(fee: u64) -> (NativeLedger, AuthenticatedState, Vec<Keypair>) {
    let keys: Vec<Keypair> = (0..4).map(Keypair::for_testing).collect();
    let spec = ChainSpec {
        id: CHAIN,
        name: "t".into(),
        balances: keys.iter().take(3).map(|k| GenesisBalance { account: k.public(), amount: 100 }).collect(),
        funded_test_accounts: 0,
        funded_test_accounts_seed: 0,
        funded_test_amount: 0,
        fee: 0,
        fee_collector: Default::default(),
        ledger_version: 1,
    };
    let mut st = AuthenticatedState::new();
    st.apply(&ledger::genesis(&spec), false);
    let l = NativeLedger::new(LedgerConfig { fee, fee_collector: keys[3].public(), ..LedgerConfig::new(CHAIN) });
    (l, st, keys)
}

/// Runs a block with both executors (they must agree), applies it, returns statuses.
fn run<M: StateMachine>(l: &M, st: &mut AuthenticatedState, txs: &[Transaction]) -> Vec<Status<M::Failure>> {
    let v = sigverify::verify_block(SCOPE, txs);
    let seq = sequential::execute(l, st, txs, &v);
    let par = parallel::execute(l, st, txs, &v);
    assert_eq!(seq, par);
    st.apply(&seq.changes, true);
    seq.receipts.into_iter().map(|r| r.status).collect()
}

#[test]
fn transfers_nonces_and_fees() {
    let (l, mut st, k) = setup(2);
    let (a, b, c) = (&k[0], &k[1], &k[3]);
    let txs = vec![
        ledger::transfer(a, SCOPE, CHAIN, 0, b.public(), AssetId::NATIVE, 30),
        ledger::transfer(a, SCOPE, CHAIN, 0, b.public(), AssetId::NATIVE, 30), // used nonce
        ledger::transfer(a, SCOPE, CHAIN, 5, b.public(), AssetId::NATIVE, 30), // skipped nonce
        ledger::transfer(a, SCOPE, CHAIN, 1, b.public(), AssetId::NATIVE, 1000), // overdraft: fails, pays fee
        ledger::transfer(c, SCOPE, CHAIN, 0, b.public(), AssetId::NATIVE, 1),  // collector has 2 fees: pays 2, sends 1
        ledger::transfer(a, SCOPE, ChainId(4), 2, b.public(), AssetId::NATIVE, 1), // wrong chain
        ledger::transfer(a, SCOPE, CHAIN, 2, b.public(), AssetId(77), 1),      // unknown asset: fails, pays fee
    ];
    let s = run(&l, &mut st, &txs);
    assert_eq!(s[0], Status::Success);
    assert_eq!(s[1], Status::Rejected(LedgerFailure::BadNonce { expected: 1, got: 0 }));
    assert_eq!(s[2], Status::Rejected(LedgerFailure::BadNonce { expected: 1, got: 5 }));
    assert_eq!(s[3], Status::Failed(LedgerFailure::InsufficientBalance));
    assert_eq!(s[4], Status::Success);
    assert_eq!(s[5], Status::Rejected(LedgerFailure::WrongChain));
    assert_eq!(s[6], Status::Failed(LedgerFailure::UnknownAsset));
    // a: 100 - 30 - 2 (tx0) - 2 (tx3) - 2 (tx6) = 64
    assert_eq!(balance(&st, &a.public(), AssetId::NATIVE), 64);
    assert_eq!(nonce(&st, &a.public()), 3);
    assert_eq!(balance(&st, &b.public(), AssetId::NATIVE), 131);
    // collector: 4 fees received (2 each) - own fee 2 - 1 sent = 5
    assert_eq!(balance(&st, &c.public(), AssetId::NATIVE), 5);
    // A fee-less account cannot pay: rejected, no state change.
    let poor = Keypair::for_testing(50);
    let s = run(&l, &mut st, &[ledger::transfer(&poor, SCOPE, CHAIN, 0, b.public(), AssetId::NATIVE, 0)]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::FeeUnpaid));
    assert_eq!(nonce(&st, &poor.public()), 0);
}

#[test]
fn bad_signatures_are_rejected_without_effect() {
    let (l, mut st, k) = setup(0);
    let mut t = ledger::transfer(&k[0], SCOPE, CHAIN, 0, k[1].public(), AssetId::NATIVE, 10);
    t.signature.0[10] ^= 4;
    let root = st.root();
    let s = run(&l, &mut st, &[t]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::BadSignature));
    assert_eq!(st.root(), root);
}

#[test]
fn transactions_signed_for_another_network_are_rejected_without_effect() {
    let (l, mut st, k) = setup(0);
    let root = st.root();
    // The same transfer, validly signed for another network and without any network:
    // neither verifies here (the ids are this network's, the signatures are not).
    let elsewhere =
        ledger::transfer(&k[0], TxScope::Network(Digest([1; 32])), CHAIN, 0, k[1].public(), AssetId::NATIVE, 10);
    let unbound = ledger::transfer(&k[0], TxScope::ChainOnly, CHAIN, 0, k[1].public(), AssetId::NATIVE, 10);
    assert_eq!(elsewhere.id(), unbound.id());
    let s = run(&l, &mut st, &[elsewhere, unbound]);
    assert_eq!(s, vec![Status::Rejected(LedgerFailure::BadSignature); 2]);
    assert_eq!(st.root(), root);
    // Signed for this network, it executes.
    let here = ledger::transfer(&k[0], SCOPE, CHAIN, 0, k[1].public(), AssetId::NATIVE, 10);
    assert_eq!(run(&l, &mut st, &[here])[0], Status::Success);
}

#[test]
fn asset_lifecycle() {
    let (l, mut st, k) = setup(0);
    let (issuer, x) = (&k[0], &k[1]);
    let (create, id) = ledger::create_asset(issuer, SCOPE, CHAIN, 0, *b"GOLD\0\0\0\0");
    let txs = vec![
        create,
        ledger::mint(issuer, SCOPE, CHAIN, 1, id, x.public(), 500),
        ledger::mint(x, SCOPE, CHAIN, 0, id, x.public(), 500), // not issuer
        ledger::transfer(x, SCOPE, CHAIN, 1, issuer.public(), id, 200),
        ledger::burn(x, SCOPE, CHAIN, 2, id, 250),
        ledger::burn(x, SCOPE, CHAIN, 3, id, 51), // only 50 left
        ledger::mint(issuer, SCOPE, CHAIN, 2, AssetId::NATIVE, x.public(), 1), // native has no issuer
    ];
    let s = run(&l, &mut st, &txs);
    assert_eq!(
        s,
        vec![
            Status::Success,
            Status::Success,
            Status::Failed(LedgerFailure::NotIssuer),
            Status::Success,
            Status::Success,
            Status::Failed(LedgerFailure::InsufficientBalance),
            Status::Failed(LedgerFailure::NotIssuer),
        ]
    );
    assert_eq!(balance(&st, &x.public(), id), 50);
    assert_eq!(balance(&st, &issuer.public(), id), 200);
    assert_eq!(st.counter(&ledger::minted_key(id)) - st.counter(&ledger::burned_key(id)), 250);
    // Creating the same id again is impossible (nonce is part of it); a mint near the cap fails.
    let mut big = Vec::new();
    for n in 3..6 {
        big.push(ledger::mint(issuer, SCOPE, CHAIN, n, id, x.public(), u64::MAX));
    }
    let s = run(&l, &mut st, &big);
    assert!(s.iter().all(|s| *s == Status::Success));
    assert_eq!(balance(&st, &x.public(), id), 50 + 3 * u128::from(u64::MAX));
}

#[test]
fn payload_decoding_is_strict() {
    use ledger::Call;
    let c = Call::Transfer { to: Keypair::for_testing(1).public(), asset: AssetId(5), amount: 9 };
    let b = c.encode();
    assert_eq!(Call::decode(&b).unwrap(), c);
    for cut in 0..b.len() {
        assert_eq!(Call::decode(&b[..cut]), Err(LedgerFailure::Malformed), "cut {cut}");
    }
    let mut long = b.clone();
    long.push(0);
    assert_eq!(Call::decode(&long), Err(LedgerFailure::Malformed));
    assert_eq!(Call::decode(&[99]), Err(LedgerFailure::Malformed));
    assert_eq!(Call::decode(&[]), Err(LedgerFailure::Malformed));
}

#[test]
fn signature_stage_verdicts_do_not_depend_on_threads_or_batching() {
    let keys: Vec<Keypair> = (0..20).map(Keypair::for_testing).collect();
    let mut txs: Vec<Transaction> = (0..3000u64)
        .map(|i| {
            ledger::transfer(
                &keys[(i % 20) as usize],
                SCOPE,
                CHAIN,
                i / 20,
                keys[((i + 1) % 20) as usize].public(),
                AssetId::NATIVE,
                1,
            )
        })
        .collect();
    for i in [0usize, 17, 1023, 1024, 2999] {
        txs[i].signature.0[33] ^= 1;
    }
    txs[500].payload.push(1); // signature no longer matches the payload
    let seq = sigverify::verify_block_sequential(SCOPE, &txs);
    // With one chunk per thread, 16 threads cut 3,000 into chunks of 188: small chunks
    // and their boundaries are exercised too.
    for threads in [1, 2, 3, 16] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        assert_eq!(pool.install(|| sigverify::verify_block(SCOPE, &txs)), seq);
    }
    let bad: Vec<usize> = seq.valid.iter().enumerate().filter(|(_, v)| !**v).map(|(i, _)| i).collect();
    assert_eq!(bad, vec![0, 17, 500, 1023, 1024, 2999]);
    for (i, t) in txs.iter().enumerate() {
        assert_eq!(seq.ids[i], t.id());
    }
    // Several blocks verified as one stage (an execution node that has fallen behind):
    // each block gets exactly its own verdicts and ids, empty blocks included.
    let cuts = [0usize, 0, 17, 18, 1000, 1000, 2500, 3000];
    let blocks: Vec<&[Transaction]> = cuts.windows(2).map(|w| &txs[w[0]..w[1]]).collect();
    for threads in [1, 2, 16] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let each = pool.install(|| sigverify::verify_blocks(SCOPE, &blocks));
        assert_eq!(each.len(), blocks.len());
        for (b, v) in blocks.iter().zip(&each) {
            assert_eq!(*v, sigverify::verify_block_sequential(SCOPE, b));
        }
    }
    let _ = ChangeSet::default();
}
