#![allow(clippy::unwrap_used)]
//! Native ledger behaviour: nonces, fees, assets, bridge hooks, typed failures; and the
//! signature stage's verdicts.

use std::sync::Arc;

use lamina_execution_core::ledger::{
    self, AssetId, BridgeMessage, InboundVerifier, LedgerConfig, LedgerFailure, NativeLedger, balance, nonce,
};
use lamina_execution_core::machine::StateMachine;
use lamina_execution_core::state::{self, AuthenticatedState};
use lamina_execution_core::{ChangeSet, StateRead, Status, parallel, sequential, sigverify};
use lamina_interfaces::{ChainSpec, GenesisBalance};
use lamina_primitives::{ChainId, Digest, Keypair, Transaction};

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
    let l = NativeLedger::new(LedgerConfig { chain_id: CHAIN, fee, fee_collector: keys[3].public() });
    (l, st, keys)
}

/// Runs a block with both executors (they must agree), applies it, returns statuses.
fn run<M: StateMachine>(l: &M, st: &mut AuthenticatedState, txs: &[Transaction]) -> Vec<Status<M::Failure>> {
    let v = sigverify::verify_block(txs);
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
        ledger::transfer(a, CHAIN, 0, b.public(), AssetId::NATIVE, 30),
        ledger::transfer(a, CHAIN, 0, b.public(), AssetId::NATIVE, 30), // used nonce
        ledger::transfer(a, CHAIN, 5, b.public(), AssetId::NATIVE, 30), // skipped nonce
        ledger::transfer(a, CHAIN, 1, b.public(), AssetId::NATIVE, 1000), // overdraft: fails, pays fee
        ledger::transfer(c, CHAIN, 0, b.public(), AssetId::NATIVE, 1),  // collector has 2 fees: pays 2, sends 1
        ledger::transfer(a, ChainId(4), 2, b.public(), AssetId::NATIVE, 1), // wrong chain
        ledger::transfer(a, CHAIN, 2, b.public(), AssetId(77), 1),      // unknown asset: fails, pays fee
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
    let s = run(&l, &mut st, &[ledger::transfer(&poor, CHAIN, 0, b.public(), AssetId::NATIVE, 0)]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::FeeUnpaid));
    assert_eq!(nonce(&st, &poor.public()), 0);
}

#[test]
fn bad_signatures_are_rejected_without_effect() {
    let (l, mut st, k) = setup(0);
    let mut t = ledger::transfer(&k[0], CHAIN, 0, k[1].public(), AssetId::NATIVE, 10);
    t.signature.0[10] ^= 4;
    let root = st.root();
    let s = run(&l, &mut st, &[t]);
    assert_eq!(s[0], Status::Rejected(LedgerFailure::BadSignature));
    assert_eq!(st.root(), root);
}

#[test]
fn asset_lifecycle() {
    let (l, mut st, k) = setup(0);
    let (issuer, x) = (&k[0], &k[1]);
    let (create, id) = ledger::create_asset(issuer, CHAIN, 0, *b"GOLD\0\0\0\0");
    let txs = vec![
        create,
        ledger::mint(issuer, CHAIN, 1, id, x.public(), 500),
        ledger::mint(x, CHAIN, 0, id, x.public(), 500), // not issuer
        ledger::transfer(x, CHAIN, 1, issuer.public(), id, 200),
        ledger::burn(x, CHAIN, 2, id, 250),
        ledger::burn(x, CHAIN, 3, id, 51),                              // only 50 left
        ledger::mint(issuer, CHAIN, 2, AssetId::NATIVE, x.public(), 1), // native has no issuer
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
        big.push(ledger::mint(issuer, CHAIN, n, id, x.public(), u64::MAX));
    }
    let s = run(&l, &mut st, &big);
    assert!(s.iter().all(|s| *s == Status::Success));
    assert_eq!(balance(&st, &x.public(), id), 50 + 3 * u128::from(u64::MAX));
}

/// A verifier that accepts messages whose proof is the message id (stands in for the
/// bridge's proof check against finalized roots).
struct IdProof;
impl InboundVerifier for IdProof {
    fn verify(&self, m: &BridgeMessage, proof: &[u8]) -> bool {
        proof == m.id().as_bytes()
    }
}

#[test]
fn bridge_lock_receive_and_return() {
    let (home_ledger, mut home, k) = setup(0);
    let away_chain = ChainId(9);
    let away_ledger = NativeLedger::with_bridge(LedgerConfig::new(away_chain), Arc::new(IdProof));
    let home_ledger = NativeLedger::with_bridge(home_ledger.config().clone(), Arc::new(IdProof));
    let mut away = AuthenticatedState::new();
    let (alice, bob) = (&k[0], &k[1]);

    // Lock 40 at home for bob on the away chain; the outbox holds the message, provably.
    let s = run(
        &home_ledger,
        &mut home,
        &[ledger::bridge_lock(alice, CHAIN, 0, AssetId::NATIVE, 40, away_chain, bob.public())],
    );
    assert_eq!(s[0], Status::Success);
    assert_eq!(home.counter(&ledger::escrow_key(away_chain, AssetId::NATIVE)), 40);
    let msg = BridgeMessage {
        source_chain: CHAIN,
        dest_chain: away_chain,
        sender: alice.public(),
        nonce: 0,
        recipient: bob.public(),
        origin_chain: CHAIN,
        origin_asset: AssetId::NATIVE,
        amount: 40,
    };
    let (stored, proof) = home.prove_data(&msg.outbox_key()).unwrap();
    assert_eq!(stored.as_deref(), Some(msg.encode().as_slice()));
    state::verify_data(&home.root(), &msg.outbox_key(), Some(&msg.encode()), &proof).unwrap();

    // Receive on the away chain: wrapped asset minted once; replay and bad proofs fail.
    let relayer = Keypair::for_testing(70);
    let good = msg.id().0.to_vec();
    let s = run(
        &away_ledger,
        &mut away,
        &[
            ledger::bridge_receive(&relayer, away_chain, 0, msg, vec![0; 32]),
            ledger::bridge_receive(&relayer, away_chain, 1, msg, good.clone()),
            ledger::bridge_receive(&relayer, away_chain, 2, msg, good.clone()),
        ],
    );
    assert_eq!(
        s,
        vec![
            Status::Failed(LedgerFailure::BridgeProofInvalid),
            Status::Success,
            Status::Failed(LedgerFailure::AlreadyReceived),
        ]
    );
    let wrapped = ledger::wrapped_asset_id(CHAIN, AssetId::NATIVE);
    assert_eq!(balance(&away, &bob.public(), wrapped), 40);

    // Bob sends 15 home: burned away, unlocked at home from escrow.
    let s =
        run(&away_ledger, &mut away, &[ledger::bridge_lock(bob, away_chain, 0, wrapped, 15, CHAIN, alice.public())]);
    assert_eq!(s[0], Status::Success);
    assert_eq!(balance(&away, &bob.public(), wrapped), 25);
    let back = BridgeMessage {
        source_chain: away_chain,
        dest_chain: CHAIN,
        sender: bob.public(),
        nonce: 0,
        recipient: alice.public(),
        origin_chain: CHAIN,
        origin_asset: AssetId::NATIVE,
        amount: 15,
    };
    assert_eq!(away.data(&back.outbox_key()).as_deref(), Some(back.encode().as_slice()));
    let s = run(&home_ledger, &mut home, &[ledger::bridge_receive(&relayer, CHAIN, 0, back, back.id().0.to_vec())]);
    assert_eq!(s[0], Status::Success);
    assert_eq!(balance(&home, &alice.public(), AssetId::NATIVE), 100 - 40 + 15);
    assert_eq!(home.counter(&ledger::escrow_key(away_chain, AssetId::NATIVE)), 25);
    // Without a bridge configured, receives always fail.
    let (plain, mut st, _) = setup(0);
    let s = run(&plain, &mut st, &[ledger::bridge_receive(&relayer, CHAIN, 0, back, back.id().0.to_vec())]);
    assert_eq!(s[0], Status::Failed(LedgerFailure::BridgeProofInvalid));
    let _ = Digest::ZERO;
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
    let seq = sigverify::verify_block_sequential(&txs);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        assert_eq!(pool.install(|| sigverify::verify_block(&txs)), seq);
    }
    let bad: Vec<usize> = seq.valid.iter().enumerate().filter(|(_, v)| !**v).map(|(i, _)| i).collect();
    assert_eq!(bad, vec![0, 17, 500, 1023, 1024, 2999]);
    for (i, t) in txs.iter().enumerate() {
        assert_eq!(seq.ids[i], t.id());
    }
    let _ = ChangeSet::default();
}
