//! Authenticated state: the flat key-value state plus its sparse Merkle tree.
//!
//! Executors read the flat maps (one hash lookup per key, no tree walk); the tree is
//! updated once per block from the block's [`ChangeSet`], rehashing only the touched
//! paths, and yields the block's state root. Values are committed as
//! `H_value(kind ‖ bytes)`: counters as kind 0 and 16 little-endian bytes, data as kind 1
//! and the bytes.

use std::sync::Arc;

use lamina_primitives::{Digest, Domain};
use rayon::prelude::*;

use crate::changes::ChangeSet;
use crate::key::{CounterKey, DataKey, KeyMap, key_map};
use crate::machine::StateRead;
use crate::smt::{Lookup, ProofError, SmtError, StateProof, Update};
use crate::state_tree::StateTree;

static VALUE: Domain = Domain::new("lamina execution state value v1");

/// The committed hash of a counter value (`None` for 0, which is stored as absent).
pub fn counter_value_hash(v: u128) -> Option<Digest> {
    (v != 0).then(|| {
        let mut b = [0u8; 17];
        b[1..].copy_from_slice(&v.to_le_bytes());
        VALUE.hash(&b)
    })
}

/// The committed hash of a data value (`None` when absent).
pub fn data_value_hash(v: Option<&[u8]>) -> Option<Digest> {
    v.map(|b| VALUE.hash_parts(&[&[1u8], b]))
}

/// A data value and its proof.
pub type DataProof = (Option<Arc<[u8]>>, StateProof);

/// The flat state and its Merkle tree, always in agreement.
#[derive(Clone, Debug)]
pub struct AuthenticatedState {
    counters: KeyMap<CounterKey, u128>,
    data: KeyMap<DataKey, Arc<[u8]>>,
    tree: StateTree,
}

impl Default for AuthenticatedState {
    fn default() -> Self {
        Self::new()
    }
}

impl StateRead for AuthenticatedState {
    #[inline]
    fn counter(&self, key: &CounterKey) -> u128 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    #[inline]
    fn data(&self, key: &DataKey) -> Option<Arc<[u8]>> {
        self.data.get(key).cloned()
    }
}

/// Updates (path, value hash) for a change set, computed in parallel or sequentially.
pub fn tree_updates(changes: &ChangeSet, parallel: bool) -> Vec<Update> {
    let c = |(k, v): &(CounterKey, u128)| (k.raw().path(), counter_value_hash(*v));
    let d = |(k, v): &(DataKey, Option<Vec<u8>>)| (k.raw().path(), data_value_hash(v.as_deref()));
    if parallel {
        let mut out: Vec<Update> = changes.counters.par_iter().map(c).collect();
        out.par_extend(changes.data.par_iter().map(d));
        out
    } else {
        changes.counters.iter().map(c).chain(changes.data.iter().map(d)).collect()
    }
}

impl AuthenticatedState {
    /// The empty state.
    pub fn new() -> Self {
        AuthenticatedState { counters: key_map(1024), data: key_map(64), tree: StateTree::new() }
    }

    /// The state root.
    pub fn root(&self) -> Digest {
        self.tree.root()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.counters.len() + self.data.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a block's changes to the flat state and the tree; returns the new root.
    /// With `parallel`, hashing runs on the rayon pool (same root either way).
    pub fn apply(&mut self, changes: &ChangeSet, parallel: bool) -> Digest {
        for (k, v) in &changes.counters {
            if *v == 0 {
                self.counters.remove(k);
            } else {
                self.counters.insert(*k, *v);
            }
        }
        for (k, v) in &changes.data {
            match v {
                Some(b) => {
                    self.data.insert(*k, Arc::from(b.as_slice()));
                }
                None => {
                    self.data.remove(k);
                }
            }
        }
        let mut ups = tree_updates(changes, parallel);
        match self.tree.apply(&mut ups, parallel) {
            Ok(root) => root,
            // A full tree has no opaque nodes, and distinct keys have distinct paths
            // (blake3 collision), so the update cannot fail.
            Err(e) => panic!("full state tree update failed: {e}"),
        }
    }

    /// The tree (for multiproofs).
    pub fn tree(&self) -> &StateTree {
        &self.tree
    }

    /// A counter's value and a proof of it (non-inclusion when 0).
    pub fn prove_counter(&self, key: &CounterKey) -> Result<(u128, StateProof), SmtError> {
        Ok((self.counter(key), self.tree.prove(&key.raw().path())))
    }

    /// A data key's value and a proof of it (non-inclusion when absent).
    pub fn prove_data(&self, key: &DataKey) -> Result<DataProof, SmtError> {
        Ok((self.data(key), self.tree.prove(&key.raw().path())))
    }

    /// Every counter (unordered), for snapshots.
    pub fn counters(&self) -> impl Iterator<Item = (&CounterKey, &u128)> {
        self.counters.iter()
    }

    /// Every data entry (unordered), for snapshots.
    pub fn data_entries(&self) -> impl Iterator<Item = (&DataKey, &Arc<[u8]>)> {
        self.data.iter()
    }

    /// Looks a key's path up in the tree (consistency checks).
    pub fn lookup(&self, path: &Digest) -> Lookup {
        self.tree.get(path)
    }
}

/// Verifies a counter proof: under `root`, `key` holds `value` (0: absent).
pub fn verify_counter(root: &Digest, key: &CounterKey, value: u128, proof: &StateProof) -> Result<(), ProofError> {
    proof.verify(root, &key.raw().path(), counter_value_hash(value).as_ref())
}

/// Verifies a data proof: under `root`, `key` holds `value` (`None`: absent).
pub fn verify_data(root: &Digest, key: &DataKey, value: Option<&[u8]>, proof: &StateProof) -> Result<(), ProofError> {
    proof.verify(root, &key.raw().path(), data_value_hash(value).as_ref())
}
