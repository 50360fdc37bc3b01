//! Witnesses and stateless re-execution, for settlement's fraud proofs.
//!
//! A [`Witness`] for a block holds the pre-block value of every key the block reads or
//! writes, and one multiproof (the state tree pruned to those keys' paths) against the
//! pre-state root. [`execute_stateless`] needs nothing else: it rebuilds the partial tree,
//! checks it against the pre-state root, checks every witness value against the tree,
//! verifies the block's signatures, executes the block sequentially against the witness,
//! applies the changes to the partial tree and returns the post-state root. A verifier
//! that gets a different post-state root than a claim has a fraud proof.
//!
//! Any gap (a key the block touches that the witness does not prove) is an error, never
//! a guess; so is any value that does not match the tree.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lamina_primitives::{Digest, Transaction, TxScope};

use crate::key::{CounterKey, DataKey, KeyMap, RawKey, key_map};
use crate::machine::{StateMachine, StateRead, receipts_root};
use crate::sequential::{self, BlockOutput};
use crate::sigverify::{self, Verified};
use crate::smt::{Lookup, ProofNode, Smt, SmtError};
use crate::state::{AuthenticatedState, counter_value_hash, data_value_hash, tree_updates};

/// The pre-state a block touches, with a multiproof against the pre-state root.
#[derive(Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Witness {
    /// The state tree pruned to the touched paths (pre-order).
    pub nodes: Vec<ProofNode>,
    /// Pre-block values of the touched counters (0 = absent).
    pub counters: Vec<(CounterKey, u128)>,
    /// Pre-block values of the touched data keys.
    pub data: Vec<(DataKey, Option<Vec<u8>>)>,
}

impl lamina_primitives::Wire for Witness {
    const NAME: &'static str = "Witness";
    const MAX_SIZE: usize = 1 << 28;
}

/// Why stateless re-execution could not produce a root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The multiproof does not hash to the claimed pre-state root.
    #[error("witness root {actual} differs from pre-state root {expected}")]
    RootMismatch {
        /// The pre-state root given.
        expected: Digest,
        /// The multiproof's root.
        actual: Digest,
    },
    /// A witness value does not match the tree.
    #[error("witness value for {0:?} does not match the tree")]
    BadValue(RawKey),
    /// The block touches a key the witness does not cover.
    #[error("witness does not cover every key the block touches")]
    Incomplete,
    /// The multiproof is malformed, or an update reached an unproven subtree.
    #[error(transparent)]
    Tree(#[from] SmtError),
}

/// The result of a stateless re-execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatelessResult<F> {
    /// The post-state root.
    pub post_root: Digest,
    /// The block's receipts and changes.
    pub output: BlockOutput<F>,
}

/// Executes a block against the full state (without changing it) and builds its witness.
pub fn build<M: StateMachine>(
    sm: &M,
    state: &AuthenticatedState,
    txs: &[Transaction],
    verified: &Verified,
) -> Result<(BlockOutput<M::Failure>, Witness), SmtError> {
    let (output, touched) = sequential::execute_recording(sm, state, txs, verified);
    Ok((output, witness_for(state, &touched)?))
}

/// The witness for a set of keys.
pub fn witness_for(state: &AuthenticatedState, keys: &BTreeSet<RawKey>) -> Result<Witness, SmtError> {
    let paths: Vec<Digest> = keys.iter().map(RawKey::path).collect();
    let nodes = state.tree().prune(&paths)?;
    let mut w = Witness { nodes, ..Default::default() };
    for k in keys {
        if let Some(c) = CounterKey::from_raw(*k) {
            w.counters.push((c, state.counter(&c)));
        } else if let Some(d) = DataKey::from_raw(*k) {
            w.data.push((d, state.data(&d).map(|b| b.to_vec())));
        }
    }
    Ok(w)
}

struct WitnessState<'a> {
    tree: &'a Smt,
    counters: KeyMap<CounterKey, u128>,
    data: KeyMap<DataKey, Option<Arc<[u8]>>>,
    missing: AtomicBool,
}

impl StateRead for WitnessState<'_> {
    fn counter(&self, key: &CounterKey) -> u128 {
        if let Some(v) = self.counters.get(key) {
            return *v;
        }
        // Not listed: fine if the tree proves it absent.
        if self.tree.get(&key.raw().path()) != Lookup::Absent {
            self.missing.store(true, Ordering::Relaxed);
        }
        0
    }

    fn data(&self, key: &DataKey) -> Option<Arc<[u8]>> {
        if let Some(v) = self.data.get(key) {
            return v.clone();
        }
        if self.tree.get(&key.raw().path()) != Lookup::Absent {
            self.missing.store(true, Ordering::Relaxed);
        }
        None
    }
}

fn check(tree: &Smt, key: &RawKey, value_hash: Option<Digest>) -> Result<(), WitnessError> {
    let ok = match (tree.get(&key.path()), value_hash) {
        (Lookup::Present(h), Some(v)) => h == v,
        (Lookup::Absent, None) => true,
        _ => false,
    };
    if ok { Ok(()) } else { Err(WitnessError::BadValue(*key)) }
}

/// Re-executes a block from the pre-state root and a witness alone; returns the
/// post-state root. Verifies the block's signatures itself, in `scope` (on the current
/// rayon pool).
pub fn execute_stateless<M: StateMachine>(
    sm: &M,
    scope: TxScope,
    pre_root: &Digest,
    witness: &Witness,
    txs: &[Transaction],
) -> Result<StatelessResult<M::Failure>, WitnessError> {
    let mut tree = Smt::from_multiproof(&witness.nodes)?;
    if tree.root() != *pre_root {
        return Err(WitnessError::RootMismatch { expected: *pre_root, actual: tree.root() });
    }
    let mut counters = key_map(witness.counters.len());
    for (k, v) in &witness.counters {
        check(&tree, k.raw(), counter_value_hash(*v))?;
        counters.insert(*k, *v);
    }
    let mut data = key_map(witness.data.len());
    for (k, v) in &witness.data {
        check(&tree, k.raw(), data_value_hash(v.as_deref()))?;
        data.insert(*k, v.as_deref().map(Arc::from));
    }
    let verified = sigverify::verify_block(scope, txs);
    let output = {
        let pre = WitnessState { tree: &tree, counters, data, missing: AtomicBool::new(false) };
        let out = sequential::execute(sm, &pre, txs, &verified);
        if pre.missing.load(Ordering::Relaxed) {
            return Err(WitnessError::Incomplete);
        }
        out
    };
    let mut ups = tree_updates(&output.changes, false);
    let post_root = tree.apply(&mut ups, false)?;
    Ok(StatelessResult { post_root, output })
}

/// The receipts root of a stateless result (convenience for fraud-proof verifiers).
pub fn stateless_receipts_root<M: StateMachine>(r: &StatelessResult<M::Failure>) -> Digest {
    receipts_root(&r.output.receipts)
}
