//! Finalized anchors of a chain and Merkle proofs of them.
//!
//! Each finalization appends one [`Anchor`] to its chain's list. The chain's anchors
//! root is the [`lamina_primitives::merkle`] root over [`Anchor::leaf`] of every anchor
//! in order (the same tree shape as [`lamina_primitives::MerkleTree`], so proofs are
//! ordinary [`InclusionProof`]s). The tree is kept incrementally: an append costs
//! O(log n) hashes, the root O(1), a proof O(log n).

use lamina_primitives::merkle::{self, node_hash};
use lamina_primitives::{ChainId, Digest, Domain, Height, InclusionProof, Wire};

use crate::Error;

/// Domain of [`Anchor::leaf`].
pub static ANCHOR_LEAF: Domain = Domain::new("lamina settlement anchor v1");

/// A finalized claim's commitment: what bridges and light clients trust.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Anchor {
    /// The chain.
    pub chain: ChainId,
    /// Position in the chain's anchor list (0 for the first finalized claim).
    pub index: u64,
    /// Last log height the claim covered.
    pub to: Height,
    /// The finalized claim's id.
    pub claim: Digest,
    /// The chain's state root after `to`.
    pub state_root: Digest,
    /// The chain's chained receipts root after `to`.
    pub receipts_root: Digest,
    /// Log height at whose end the claim finalized.
    pub finalized_at: Height,
}

impl Anchor {
    /// What the bridge reads of this anchor.
    pub fn finalized_root(&self) -> lamina_interfaces::FinalizedRoot {
        lamina_interfaces::FinalizedRoot {
            chain: self.chain,
            index: self.index,
            to: self.to,
            state_root: self.state_root,
            finalized_at: self.finalized_at,
        }
    }

    /// The anchor's Merkle leaf: every field under [`ANCHOR_LEAF`].
    pub fn leaf(&self) -> Digest {
        ANCHOR_LEAF.hash_parts(&[
            &self.chain.0.to_le_bytes(),
            &self.index.to_le_bytes(),
            &self.to.0.to_le_bytes(),
            self.claim.as_bytes(),
            self.state_root.as_bytes(),
            self.receipts_root.as_bytes(),
            &self.finalized_at.0.to_le_bytes(),
        ])
    }
}

/// An anchor with its inclusion proof against its chain's anchors root.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AnchorProof {
    /// The anchor.
    pub anchor: Anchor,
    /// Proof of [`Anchor::leaf`] at `anchor.index`.
    pub proof: InclusionProof,
}

impl Wire for AnchorProof {
    const NAME: &'static str = "AnchorProof";
    const MAX_SIZE: usize = 512 + <InclusionProof as Wire>::MAX_SIZE;
}

impl AnchorProof {
    /// Checks that the anchor is at its index under `anchors_root`.
    pub fn verify(&self, anchors_root: &Digest) -> Result<(), Error> {
        verify_anchor(anchors_root, &self.anchor, &self.proof)
    }
}

/// Checks that `anchor` is at `proof.index` under `anchors_root` (the same check as
/// [`AnchorProof::verify`], for callers holding the parts).
pub fn verify_anchor(anchors_root: &Digest, anchor: &Anchor, proof: &InclusionProof) -> Result<(), Error> {
    if proof.index != anchor.index {
        return Err(Error::AnchorIndexMismatch { proof: proof.index, anchor: anchor.index });
    }
    proof.verify(anchors_root, &anchor.leaf()).map_err(Error::AnchorProof)
}

/// An append-only Merkle tree with every level kept (same shape as
/// [`lamina_primitives::MerkleTree`]: unpaired last nodes are promoted).
#[derive(Clone, Debug, Default)]
pub(crate) struct AnchorTree {
    levels: Vec<Vec<Digest>>,
}

impl AnchorTree {
    pub(crate) fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    pub(crate) fn push(&mut self, leaf: Digest) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut i = 0;
        while self.levels[i].len() > 1 {
            let level = &self.levels[i];
            let last = level.len() - 1;
            let node = if last % 2 == 1 { node_hash(&level[last - 1], &level[last]) } else { level[last] };
            let parent = last / 2;
            if self.levels.len() == i + 1 {
                self.levels.push(Vec::new());
            }
            let up = &mut self.levels[i + 1];
            if parent < up.len() {
                up[parent] = node;
            } else {
                up.push(node);
            }
            i += 1;
        }
    }

    pub(crate) fn root(&self) -> Digest {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => merkle::empty_root(),
        }
    }

    pub(crate) fn proof(&self, index: usize) -> Option<InclusionProof> {
        if index >= self.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sib = i ^ 1;
            if sib < level.len() {
                siblings.push(level[sib]);
            }
            i /= 2;
        }
        Some(InclusionProof { index: index as u64, leaf_count: self.len() as u64, siblings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::MerkleTree;

    #[test]
    fn incremental_tree_matches_merkle_tree() {
        let mut t = AnchorTree::default();
        assert_eq!(t.root(), merkle::empty_root());
        let mut leaves = Vec::new();
        for n in 1..=70u32 {
            let leaf = ANCHOR_LEAF.hash(&n.to_le_bytes());
            leaves.push(leaf);
            t.push(leaf);
            let full = MerkleTree::new(leaves.clone());
            assert_eq!(t.root(), full.root(), "n = {n}");
            for i in 0..leaves.len() {
                assert_eq!(t.proof(i), full.proof(i), "n = {n}, i = {i}");
            }
            assert!(t.proof(leaves.len()).is_none());
        }
    }
}
