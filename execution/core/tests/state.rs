#![allow(clippy::unwrap_used)]
//! Authenticated state: parallel == sequential == rebuild; proofs verify and tampered
//! proofs fail; stateless re-execution == stateful.

mod common;

use std::collections::BTreeMap;

use common::{Params, SCOPE, block};
use lamina_execution_core::block::{self, ChainHead};
use lamina_execution_core::machine::receipts_root;
use lamina_execution_core::smt::{self, ProofError, Smt, StateProof, Terminal};
use lamina_execution_core::state::{self, AuthenticatedState};
use lamina_execution_core::witness::{self, WitnessError};
use lamina_execution_core::{ChangeSet, CounterKey, DataKey, NativeChains, sequential};
use lamina_interfaces::{ChainReplica, StatelessExecutor, StepOutcome};
use lamina_primitives::{Digest, Keypair, decode, encode};
use proptest::prelude::*;

fn ckey(i: u32) -> CounterKey {
    CounterKey::new(2, &[&i.to_le_bytes()])
}

fn dkey(i: u32) -> DataKey {
    DataKey::new(3, &[&i.to_le_bytes()])
}

/// A random sequence of change sets over a small key universe (so deletes and
/// re-inserts collide often).
fn change_sets() -> impl Strategy<Value = Vec<Vec<(u32, u128)>>> {
    prop::collection::vec(
        prop::collection::vec((0u32..300, prop_oneof![Just(0u128), 1u128..5, any::<u128>()]), 0..200),
        1..6,
    )
}

fn to_changes(v: &[(u32, u128)]) -> ChangeSet {
    let mut m: BTreeMap<CounterKey, u128> = BTreeMap::new();
    for (k, val) in v {
        m.insert(ckey(*k), *val);
    }
    let data = v
        .iter()
        .filter(|(k, _)| k % 7 == 0)
        .map(|(k, val)| (dkey(*k), (val % 3 != 0).then(|| val.to_le_bytes().to_vec())))
        .collect::<BTreeMap<_, _>>();
    ChangeSet { counters: m.into_iter().collect(), data: data.into_iter().collect() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_parallel_sequential_and_rebuild_agree(sets in change_sets()) {
        let mut par = AuthenticatedState::new();
        let mut seq = AuthenticatedState::new();
        let mut model_c: BTreeMap<CounterKey, u128> = BTreeMap::new();
        let mut model_d: BTreeMap<DataKey, Vec<u8>> = BTreeMap::new();
        for s in &sets {
            let ch = to_changes(s);
            let a = par.apply(&ch, true);
            let b = seq.apply(&ch, false);
            prop_assert_eq!(a, b);
            for (k, v) in &ch.counters { if *v == 0 { model_c.remove(k); } else { model_c.insert(*k, *v); } }
            for (k, v) in &ch.data { match v { Some(b) => { model_d.insert(*k, b.clone()); } None => { model_d.remove(k); } } }
        }
        // Rebuild from scratch in one batch.
        let mut fresh = AuthenticatedState::new();
        let all = ChangeSet {
            counters: model_c.iter().map(|(k, v)| (*k, *v)).collect(),
            data: model_d.iter().map(|(k, v)| (*k, Some(v.clone()))).collect(),
        };
        prop_assert_eq!(fresh.apply(&all, false), par.root());
        prop_assert_eq!(par.tree().len(), model_c.len() + model_d.len());
        // Every key of the universe has a verifying proof of its current value.
        let root = par.root();
        for i in 0..300u32 {
            let (v, p) = par.prove_counter(&ckey(i)).unwrap();
            prop_assert_eq!(v, model_c.get(&ckey(i)).copied().unwrap_or(0));
            state::verify_counter(&root, &ckey(i), v, &p).unwrap();
            // The wrong value fails.
            prop_assert!(state::verify_counter(&root, &ckey(i), v.wrapping_add(1), &p).is_err());
            let (d, p) = par.prove_data(&dkey(i)).unwrap();
            state::verify_data(&root, &dkey(i), d.as_deref(), &p).unwrap();
        }
    }
}

#[test]
fn empty_tree_root_and_proofs() {
    let s = AuthenticatedState::new();
    assert_eq!(s.root(), smt::EMPTY);
    let (v, p) = s.prove_counter(&ckey(1)).unwrap();
    assert_eq!(v, 0);
    state::verify_counter(&s.root(), &ckey(1), 0, &p).unwrap();
    assert!(state::verify_counter(&s.root(), &ckey(1), 5, &p).is_err());
}

#[test]
fn tampered_proofs_fail() {
    let mut s = AuthenticatedState::new();
    let ch = ChangeSet { counters: (0..500).map(|i| (ckey(i), u128::from(i) + 1)).collect(), data: vec![] };
    s.apply(&ch, true);
    let root = s.root();
    let (v, p) = s.prove_counter(&ckey(42)).unwrap();
    state::verify_counter(&root, &ckey(42), v, &p).unwrap();
    assert!(p.siblings.len() >= 8, "500 keys need a deep-ish path");
    // Flip a sibling bit.
    for d in 0..p.siblings.len() {
        let mut q = p.clone();
        q.siblings[d].0[d % 32] ^= 1;
        assert_eq!(state::verify_counter(&root, &ckey(42), v, &q), Err(ProofError::RootMismatch));
    }
    // Drop or add a sibling.
    let mut q = p.clone();
    q.siblings.pop();
    assert!(state::verify_counter(&root, &ckey(42), v, &q).is_err());
    let mut q = p.clone();
    q.siblings.push(Digest::ZERO);
    assert!(state::verify_counter(&root, &ckey(42), v, &q).is_err());
    // Another key's proof does not prove this key.
    let (_, other) = s.prove_counter(&ckey(43)).unwrap();
    assert!(state::verify_counter(&root, &ckey(42), v, &other).is_err());
    // An inclusion proof cannot be turned into a non-inclusion proof of the same key.
    assert_eq!(state::verify_counter(&root, &ckey(42), 0, &p), Err(ProofError::WrongTerminal));
    // Non-inclusion of an absent key; tampering with its terminal leaf fails.
    let absent = ckey(10_000);
    let (z, np) = s.prove_counter(&absent).unwrap();
    assert_eq!(z, 0);
    state::verify_counter(&root, &absent, 0, &np).unwrap();
    if let Terminal::Leaf { path, value_hash: _ } = np.terminal {
        let mut q = np.clone();
        q.terminal = Terminal::Leaf { path, value_hash: Digest([9; 32]) };
        assert!(state::verify_counter(&root, &absent, 0, &q).is_err());
    }
    // Too deep.
    let q = StateProof { siblings: vec![Digest::ZERO; 257], terminal: Terminal::Empty };
    assert_eq!(q.verify(&root, &absent.raw().path(), None), Err(ProofError::TooDeep));
    // Proofs survive the wire.
    let bytes = encode(&p).unwrap();
    assert_eq!(decode::<StateProof>(&bytes).unwrap(), p);
}

#[test]
fn multiproof_rebuilds_root_and_rejects_garbage() {
    let mut s = AuthenticatedState::new();
    s.apply(&ChangeSet { counters: (0..1000).map(|i| (ckey(i), 7)).collect(), data: vec![] }, true);
    let paths: Vec<Digest> = [1u32, 5, 999, 5000].iter().map(|i| ckey(*i).raw().path()).collect();
    let nodes = s.tree().prune(&paths).unwrap();
    let t = Smt::from_multiproof(&nodes).unwrap();
    assert_eq!(t.root(), s.root());
    assert!(Smt::from_multiproof(&nodes[..nodes.len() - 1]).is_err());
    let mut extra = nodes.clone();
    extra.push(smt::ProofNode::Empty);
    assert!(Smt::from_multiproof(&extra).is_err());
}

#[test]
fn stateless_reexecution_equals_stateful() {
    for (seed, accounts) in [(1u64, 2u64), (2, 10), (3, 100), (4, 3000)] {
        let p = Params { accounts, txs: 600, other_ops: 0.3, fee: 2, ..Params::default() };
        let s = block(seed, &p);
        let pre_root = s.state.root();
        let (out, w) = witness::build(&s.ledger, &s.state, &s.txs, &s.verified).unwrap();
        assert_eq!(out, sequential::execute(&s.ledger, &s.state, &s.txs, &s.verified));
        let want = {
            let mut post = s.state.clone();
            post.apply(&out.changes, true)
        };
        let r = witness::execute_stateless(&s.ledger, SCOPE, &pre_root, &w, &s.txs).unwrap();
        assert_eq!(r.output, out, "seed {seed}");
        assert_eq!(r.post_root, want, "seed {seed}");
        // The witness survives the wire, and the interfaces seam settlement uses gives
        // the same outcome from the encoded witness.
        let bytes = encode(&w).unwrap();
        assert_eq!(decode::<witness::Witness>(&bytes).unwrap(), w);
        use lamina_interfaces::StatelessError;
        let chains = NativeChains::new(&common::genesis_of(common::spec(&p, &s.keys)));
        let outcome = StepOutcome { state_root: want, receipts_root: receipts_root(&out.receipts) };
        assert_eq!(chains.reexecute(common::CHAIN, &env(), &pre_root, &bytes, &s.txs), Ok(outcome));
        assert!(matches!(
            chains.reexecute(common::CHAIN, &env(), &pre_root, &bytes[..bytes.len() / 2], &s.txs),
            Err(StatelessError::BadWitness(_))
        ));
        assert_eq!(
            chains.reexecute(lamina_primitives::ChainId(99), &env(), &pre_root, &bytes, &s.txs),
            Err(StatelessError::UnknownChain(lamina_primitives::ChainId(99)))
        );
        assert!(matches!(
            chains.reexecute(common::CHAIN, &env(), &Digest([1; 32]), &bytes, &s.txs),
            Err(StatelessError::BadWitness(_))
        ));

        // Wrong pre-state root.
        let bad_root = Digest([1; 32]);
        assert!(matches!(
            witness::execute_stateless(&s.ledger, SCOPE, &bad_root, &w, &s.txs),
            Err(WitnessError::RootMismatch { .. })
        ));
        // A tampered value.
        let mut t = w.clone();
        if let Some(e) = t.counters.iter_mut().find(|e| e.1 > 0) {
            e.1 += 1;
            assert!(matches!(
                witness::execute_stateless(&s.ledger, SCOPE, &pre_root, &t, &s.txs),
                Err(WitnessError::BadValue(_))
            ));
        }
        // A missing value: the block touches it, the tree does not prove it absent.
        let mut t = w.clone();
        let pos = t.counters.iter().position(|e| e.1 > 0).unwrap();
        t.counters.remove(pos);
        assert_eq!(witness::execute_stateless(&s.ledger, SCOPE, &pre_root, &t, &s.txs), Err(WitnessError::Incomplete));
        // A tampered multiproof.
        let mut t = w.clone();
        if let Some(n) = t.nodes.iter_mut().find(|n| matches!(n, smt::ProofNode::Opaque(_))) {
            *n = smt::ProofNode::Opaque(Digest([3; 32]));
            assert!(matches!(
                witness::execute_stateless(&s.ledger, SCOPE, &pre_root, &t, &s.txs),
                Err(WitnessError::RootMismatch { .. })
            ));
        }
        // A different block under the same witness does not give the claimed root.
        let mut other = s.txs.clone();
        other.reverse();
        if let Ok(r2) = witness::execute_stateless(&s.ledger, SCOPE, &pre_root, &w, &other) {
            assert!(r2.post_root != want || r2.output.receipts != out.receipts);
        }
        let _ = &s.keys;
    }
}

#[test]
fn genesis_funds_test_accounts() {
    let spec = lamina_interfaces::ChainSpec {
        id: common::CHAIN,
        name: "g".into(),
        balances: vec![lamina_interfaces::GenesisBalance { account: Keypair::for_testing(999).public(), amount: 5 }],
        funded_test_accounts: 3,
        funded_test_accounts_seed: 100,
        funded_test_amount: 40,
        fee: 0,
        fee_collector: Default::default(),
        ledger_version: 1,
    };
    let mut s = AuthenticatedState::new();
    s.apply(&lamina_execution_core::ledger::genesis(&spec), false);
    use lamina_execution_core::StateRead;
    use lamina_execution_core::ledger::{AssetId, balance, minted_key};
    assert_eq!(balance(&s, &Keypair::for_testing(999).public(), AssetId::NATIVE), 5);
    for i in 100..103 {
        assert_eq!(balance(&s, &Keypair::for_testing(i).public(), AssetId::NATIVE), 40);
    }
    assert_eq!(balance(&s, &Keypair::for_testing(103).public(), AssetId::NATIVE), 0);
    assert_eq!(s.counter(&minted_key(AssetId::NATIVE)), 125);
}

fn random_params() -> impl Strategy<Value = (u64, Params)> {
    (any::<u64>(), 1u64..40, 0usize..160, 0.0f64..0.5, 0u64..3, 1u64..3000).prop_map(
        |(seed, accounts, txs, other_ops, fee, funding)| {
            (seed, Params { accounts, txs, other_ops, fee, funding, ..Params::default() })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// S11: for random blocks (two steps in a row, the second mostly stale nonces), the
    /// full executor (the block machine: signature stage, parallel executor, authenticated
    /// state) and stateless re-execution from its witness give exactly the same state
    /// root and receipts root; the replica proves its outcome when the claim is wrong.
    #[test]
    fn stateless_equals_full_executor_on_random_blocks((seed, p) in random_params()) {
        let first = block(seed, &p);
        let second = block(seed.wrapping_add(1), &p);
        let chains = NativeChains::new(&common::genesis_of(common::spec(&p, &first.keys)));
        prop_assert_eq!(chains.genesis_root(common::CHAIN).unwrap(), first.state.root());
        let mut replica = chains.replica(common::CHAIN).unwrap();
        let mut state = first.state.clone();
        let mut head = ChainHead::genesis(state.root());
        for (i, txs) in [&first.txs, &second.txs].into_iter().enumerate() {
            let pre_root = state.root();
            prop_assert_eq!(replica.state_root(), pre_root);
            let height = lamina_primitives::Height(2 * i as u64 + 1);
            let e = env_at(height);
            let r = block::execute_block(&first.ledger, e.clone(), &state, &head, &[Digest([i as u8; 32])], txs)
                .apply(&mut state, true);
            let full = r.step_outcome().unwrap();
            prop_assert_eq!(full.state_root, state.root());
            // Stateless from the witness of the pre-state.
            let mut pre = first.state.clone();
            if i == 1 {
                pre = replica_pre_state(&chains, &first.txs);
            }
            let verified = lamina_execution_core::sigverify::verify_block(SCOPE, txs);
            let (_, w) = witness::build(&first.ledger.at(e.clone()), &pre, txs, &verified).unwrap();
            let bytes = encode(&w).unwrap();
            prop_assert_eq!(chains.reexecute(common::CHAIN, &e, &pre_root, &bytes, txs).unwrap(), full);
            // The replica (same code path as the service) agrees, and with a wrong
            // expectation returns a witness that re-executes to its own outcome.
            let wrong = StepOutcome { state_root: Digest([0xAB; 32]), ..full };
            let (got, proof) = replica.execute_step(&e, txs, Some(&wrong));
            prop_assert_eq!(got, full);
            let proof = proof.expect("a witness for a wrong claim");
            prop_assert_eq!(chains.reexecute(common::CHAIN, &e, &pre_root, &proof, txs).unwrap(), full);
            // The same witness under a wrong pre-root is refused.
            prop_assert!(chains.reexecute(common::CHAIN, &e, &wrong.state_root, &proof, txs).is_err());
            head = r.head;
        }
        // With history retained, a step already passed is still provable: the witness
        // of the first step, built two steps later, re-executes to the first outcome,
        // and the replica's state is unchanged by building it.
        let mut hist = chains.replica(common::CHAIN).unwrap();
        hist.retain_history(4);
        let (o1, _) = hist.execute_step(&env(), &first.txs, None);
        let (o2, _) = hist.execute_step(&env(), &second.txs, None);
        let genesis_root = chains.genesis_root(common::CHAIN).unwrap();
        let w1 = hist.past_witness(1, &env(), &first.txs).expect("retained");
        prop_assert_eq!(chains.reexecute(common::CHAIN, &env(), &genesis_root, &w1, &first.txs).unwrap(), o1);
        let w2 = hist.past_witness(0, &env(), &second.txs).expect("retained");
        prop_assert_eq!(chains.reexecute(common::CHAIN, &env(), &o1.state_root, &w2, &second.txs).unwrap(), o2);
        prop_assert_eq!(hist.state_root(), o2.state_root);
        prop_assert!(hist.past_witness(2, &env(), &first.txs).is_none());
        // A right expectation produces no witness.
        let mut again = chains.replica(common::CHAIN).unwrap();
        let (o, _) = again.execute_step(&env(), &first.txs, None);
        let (o2, none) = chains.replica(common::CHAIN).unwrap().execute_step(&env(), &first.txs, Some(&o));
        prop_assert_eq!(o, o2);
        prop_assert!(none.is_none());
    }
}

/// The state after `txs` from genesis, by a fresh replica.
fn replica_pre_state(chains: &NativeChains, txs: &[lamina_primitives::Transaction]) -> state::AuthenticatedState {
    let mut r = chains.native_replica(common::CHAIN).unwrap();
    r.execute_step(&env_at(lamina_primitives::Height(1)), txs, None);
    r.state().clone()
}

/// The environment the tests' ledgers run at (height 0, no anchors).
fn env() -> lamina_interfaces::StepEnv {
    env_at(lamina_primitives::Height(0))
}

/// The environment of a step at `height` (no anchors).
fn env_at(height: lamina_primitives::Height) -> lamina_interfaces::StepEnv {
    lamina_interfaces::StepEnv::without_anchors(height, SCOPE)
}
