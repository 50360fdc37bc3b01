//! A settlement state as plain data ([`StateImage`]), for snapshots: a node writes one
//! every so many heights and restarts from it instead of replaying from genesis.
//!
//! The image holds what the rules read and nothing they can rebuild: the indexes of
//! held claims are rebuilt on load, the cache of genesis roots starts empty. The
//! anchors' Merkle tree is stored as the nodes it kept (its forgotten part is only
//! frontier nodes, which cannot be rebuilt from the kept anchors); its leaves and every
//! parent with both children kept are checked on load. Maps become lists sorted by key, so two nodes at the same height
//! write identical bytes. [`SettlementState::from_image`] checks that the image is
//! consistent (every referenced claim present, the chains and balances of the genesis,
//! bonds conserved); the caller then compares [`SettlementState::state_root`] with the
//! root recorded beside the image.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use lamina_primitives::{ChainId, Digest, Height, PublicKey, Wire};

use super::{Account, ChainState, ClaimRecord, HeightRecord, HeldClaim, SettlementState, Stats};
use crate::Params;
use crate::anchors::{Anchor, AnchorTree, TreeLevel};

/// Why an image was refused by [`SettlementState::from_image`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("settlement state image refused: {0}")]
pub struct ImageError(pub String);

/// One chain's part of a [`StateImage`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChainImage {
    /// The chain.
    pub chain: ChainId,
    /// Digest of its ledger parameters (as in the genesis).
    pub params: Digest,
    /// Heights above the head's `to` that carried data for it: (height, inputs digest,
    /// every certificate verified).
    pub records: Vec<(Height, Digest, bool)>,
    /// Its kept anchors, oldest first (contiguous indexes).
    pub anchors: Vec<Anchor>,
    /// The anchors' Merkle tree: the nodes kept per level.
    pub tree: Vec<TreeLevel>,
    /// Pending claims by inclusion sequence.
    pub pending: Vec<(u64, Digest)>,
    /// Claims finalized as duplicates of the head.
    pub head_duplicates: Vec<Digest>,
    /// Ended claims still kept, oldest first.
    pub terminal: Vec<Digest>,
}

/// A [`SettlementState`] as plain data (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StateImage {
    /// Last height processed.
    pub height: Option<Height>,
    /// Last height observed.
    pub observed: Option<Height>,
    /// Accounts, by key.
    pub accounts: Vec<(PublicKey, Account)>,
    /// Bond burned so far.
    pub burned: u64,
    /// Claims kept (pending and recently ended), by id.
    pub claims: Vec<ClaimRecord>,
    /// Pending children per (chain, parent id), by key.
    pub children: Vec<(ChainId, Digest, Vec<Digest>)>,
    /// Per chain, by id.
    pub chains: Vec<ChainImage>,
    /// (deadline, claim) in deadline order (inclusion order among equal deadlines).
    pub queue: Vec<(Height, Digest)>,
    /// Data roots proven badly encoded.
    pub bad_roots: Vec<Digest>,
    /// Next inclusion sequence.
    pub next_seq: u64,
    /// Held claims by hold sequence.
    pub held: Vec<(u64, HeldClaim)>,
    /// Next hold sequence.
    pub next_hold: u64,
    /// Counters.
    pub stats: Stats,
}

impl Wire for StateImage {
    const NAME: &'static str = "SettlementStateImage";
    const MAX_SIZE: usize = 1 << 30;
}

fn inconsistent(what: impl std::fmt::Display) -> ImageError {
    ImageError(what.to_string())
}

impl SettlementState {
    /// The state as plain data.
    pub fn image(&self) -> StateImage {
        let mut accounts: Vec<(PublicKey, Account)> = self.accounts.iter().map(|(k, a)| (*k, *a)).collect();
        accounts.sort_unstable_by_key(|(k, _)| *k);
        let mut claims: Vec<ClaimRecord> = self.claims.values().cloned().collect();
        claims.sort_unstable_by_key(|c| c.id);
        let mut children: Vec<(ChainId, Digest, Vec<Digest>)> =
            self.children.iter().map(|((c, p), v)| (*c, *p, v.clone())).collect();
        children.sort_unstable_by_key(|(c, p, _)| (*c, *p));
        let chains = self
            .chains
            .iter()
            .map(|(id, cs)| ChainImage {
                chain: *id,
                params: cs.params,
                records: cs.records.iter().map(|(h, r)| (*h, r.inputs, r.available)).collect(),
                anchors: cs.anchors.iter().copied().collect(),
                tree: cs.tree.levels(),
                pending: cs.pending.iter().map(|(s, d)| (*s, *d)).collect(),
                head_duplicates: cs.head_duplicates.iter().copied().collect(),
                terminal: cs.terminal.iter().copied().collect(),
            })
            .collect();
        StateImage {
            height: self.height,
            observed: self.observed,
            accounts,
            burned: self.burned,
            claims,
            children,
            chains,
            queue: self.queue.iter().copied().collect(),
            bad_roots: self.bad_roots.iter().copied().collect(),
            next_seq: self.next_seq,
            held: self.held.iter().map(|(s, h)| (*s, h.clone())).collect(),
            next_hold: self.next_hold,
            stats: self.stats,
        }
    }

    /// The state an [`image`](SettlementState::image) was taken of, under `params`
    /// (the genesis's). Refuses an image that does not fit them or is not consistent
    /// ([`ImageError`]); it does not check the state root (the caller compares it
    /// with the one recorded beside the image).
    pub fn from_image(params: Params, image: StateImage) -> Result<Self, ImageError> {
        let mut state = SettlementState::new(params);
        let StateImage {
            height,
            observed,
            accounts,
            burned,
            claims,
            children,
            chains,
            queue,
            bad_roots,
            next_seq,
            held,
            next_hold,
            stats,
        } = image;
        if height.is_some() && observed < height {
            return Err(inconsistent("processed height above the observed one"));
        }
        state.height = height;
        state.observed = observed;
        // Accounts: every key once; bonds conserved against the genesis supply.
        let supply = state.total_supply();
        let mut map = HashMap::with_capacity(accounts.len());
        for (k, a) in accounts {
            if map.insert(k, a).is_some() {
                return Err(inconsistent(format!("account {k} listed twice")));
            }
        }
        state.accounts = map;
        state.burned = burned;
        if state.total_supply() != supply {
            return Err(inconsistent(format!("supply {} is not the genesis's {supply}", state.total_supply())));
        }
        for c in claims {
            if c.id != c.claim.id() {
                return Err(inconsistent(format!("claim {} stored under id {}", c.claim.id(), c.id)));
            }
            if state.claims.insert(c.id, c).is_some() {
                return Err(inconsistent("a claim listed twice"));
            }
        }
        let known = |state: &SettlementState, id: &Digest| -> Result<(), ImageError> {
            if state.claims.contains_key(id) { Ok(()) } else { Err(inconsistent(format!("unknown claim {id}"))) }
        };
        for (chain, parent, kids) in children {
            for k in &kids {
                known(&state, k)?;
            }
            state.children.insert((chain, parent), kids);
        }
        if chains.len() != state.chains.len() {
            return Err(inconsistent(format!("{} chains, the genesis has {}", chains.len(), state.chains.len())));
        }
        for ci in chains {
            let cs = state
                .chains
                .get(&ci.chain)
                .ok_or_else(|| inconsistent(format!("chain {} is not in the genesis", ci.chain)))?;
            if cs.params != ci.params {
                return Err(inconsistent(format!("chain {} has other ledger parameters", ci.chain)));
            }
            let first = ci.anchors.first().map_or(0, |a| a.index);
            let from = usize::try_from(first).map_err(|_| inconsistent("anchor index out of range"))?;
            let tree = AnchorTree::from_levels(ci.tree, if ci.anchors.is_empty() { 0 } else { from })
                .map_err(|e| inconsistent(format!("chain {}: anchors tree: {e}", ci.chain)))?;
            if tree.len() as u64 != first + ci.anchors.len() as u64 {
                return Err(inconsistent(format!(
                    "chain {}: {} anchors from index {first}, the tree has {} leaves",
                    ci.chain,
                    ci.anchors.len(),
                    tree.len()
                )));
            }
            for (k, a) in ci.anchors.iter().enumerate() {
                if a.chain != ci.chain {
                    return Err(inconsistent(format!("an anchor of chain {} listed under {}", a.chain, ci.chain)));
                }
                if a.index != first + k as u64 || tree.leaf(from + k) != Some(a.leaf()) {
                    return Err(inconsistent(format!("chain {}: anchor {} is not the tree's leaf", ci.chain, a.index)));
                }
            }
            for (_, id) in &ci.pending {
                known(&state, id)?;
            }
            for id in ci.terminal.iter().chain(&ci.head_duplicates) {
                known(&state, id)?;
            }
            let rebuilt = ChainState {
                params: ci.params,
                records: ci
                    .records
                    .into_iter()
                    .map(|(h, inputs, available)| (h, HeightRecord { inputs, available }))
                    .collect::<BTreeMap<_, _>>(),
                anchors: ci.anchors.into_iter().collect(),
                tree,
                pending: ci.pending.into_iter().collect(),
                head_duplicates: ci.head_duplicates.into_iter().collect::<BTreeSet<_>>(),
                terminal: ci.terminal.into_iter().collect::<VecDeque<_>>(),
            };
            state.chains.insert(ci.chain, rebuilt);
        }
        for (_, id) in &queue {
            known(&state, id)?;
        }
        if queue.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err(inconsistent("the finalization queue is not in deadline order"));
        }
        state.queue = queue.into_iter().collect();
        state.bad_roots = bad_roots.into_iter().collect();
        state.next_seq = next_seq;
        for (seq, h) in held {
            if seq >= next_hold || h.id != h.claim.id() {
                return Err(inconsistent(format!("held claim {} out of place", h.id)));
            }
            if state.held_ids.insert(h.id, seq).is_some() {
                return Err(inconsistent(format!("claim {} held twice", h.id)));
            }
            state.held_children.entry(h.claim.parent).or_default().push(seq);
            *state.held_per_claimer.entry(h.claim.claimer).or_default() += 1;
            state.held.insert(seq, h);
        }
        state.next_hold = next_hold;
        state.stats = stats;
        Ok(state)
    }
}
