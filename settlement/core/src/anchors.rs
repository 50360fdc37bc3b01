//! Finalized anchors of a chain and Merkle proofs of them.
//!
//! Each finalization appends one [`Anchor`] to its chain's list. The chain's anchors
//! root is the [`lamina_primitives::merkle`] root over [`Anchor::leaf`] of every anchor
//! in order (the same tree shape as [`lamina_primitives::MerkleTree`], so proofs are
//! ordinary [`InclusionProof`]s). The tree is kept incrementally: an append costs
//! O(log n) hashes, the root O(1), a proof O(log n).

use std::collections::VecDeque;

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
    /// What the bridge reads of this anchor, without its window (`usable_until` is
    /// `None`; [`crate::SettlementState::anchor_root`] fills it in).
    pub fn finalized_root(&self) -> lamina_interfaces::FinalizedRoot {
        lamina_interfaces::FinalizedRoot {
            chain: self.chain,
            index: self.index,
            to: self.to,
            state_root: self.state_root,
            finalized_at: self.finalized_at,
            usable_until: None,
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

/// One level of a chain's anchors Merkle tree as a snapshot stores it: the nodes kept,
/// from absolute position `offset` on.
#[derive(Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TreeLevel {
    /// Absolute position of `nodes[0]` in the level.
    pub offset: u64,
    /// The level's nodes from `offset` to its end.
    pub nodes: Vec<Digest>,
}

/// An append-only Merkle tree (same shape as [`lamina_primitives::MerkleTree`]:
/// unpaired last nodes are promoted) that can forget its oldest leaves: after
/// [`AnchorTree::forget_below`]`(lo)` it still appends, gives the same root as the whole
/// tree, and proves every leaf from `lo` on, holding about twice as many nodes as
/// leaves kept plus two per level.
#[derive(Clone, Debug, Default)]
pub(crate) struct AnchorTree {
    levels: Vec<VecDeque<Digest>>,
    /// Absolute position of each level's first kept node.
    offsets: Vec<usize>,
    /// Lowest leaf that can still be proven.
    from: usize,
}

impl AnchorTree {
    /// Number of leaves ever appended (forgotten ones included).
    pub(crate) fn len(&self) -> usize {
        self.level_len(0)
    }

    fn level_len(&self, l: usize) -> usize {
        self.levels.get(l).map_or(0, |v| self.offsets[l] + v.len())
    }

    /// Lowest leaf [`AnchorTree::proof`] can prove.
    #[cfg(test)]
    pub(crate) fn proves_from(&self) -> usize {
        self.from
    }

    /// Leaf `i`, if kept.
    pub(crate) fn leaf(&self, i: usize) -> Option<Digest> {
        self.levels.first()?.get(i.checked_sub(self.offsets[0])?).copied()
    }

    fn node(&self, l: usize, i: usize) -> Digest {
        self.levels[l][i - self.offsets[l]]
    }

    pub(crate) fn push(&mut self, leaf: Digest) {
        if self.levels.is_empty() {
            self.levels.push(VecDeque::new());
            self.offsets.push(0);
        }
        self.levels[0].push_back(leaf);
        let mut i = 0;
        while self.level_len(i) > 1 {
            let last = self.level_len(i) - 1;
            let node = if last % 2 == 1 {
                node_hash(&self.node(i, last - 1), &self.node(i, last))
            } else {
                self.node(i, last)
            };
            let parent = last / 2;
            if self.levels.len() == i + 1 {
                self.levels.push(VecDeque::new());
                self.offsets.push(0);
            }
            if parent < self.level_len(i + 1) {
                let at = parent - self.offsets[i + 1];
                self.levels[i + 1][at] = node;
            } else {
                self.levels[i + 1].push_back(node);
            }
            i += 1;
        }
    }

    /// Forgets what only leaves below `lo` need (`lo` is clamped to the last leaf, so
    /// the newest leaf is always kept). Level `l` keeps its nodes from `(lo >> l)`
    /// rounded down to even: the nodes and siblings of every proof from `lo` on, and
    /// the last pair appending needs.
    pub(crate) fn forget_below(&mut self, lo: usize) {
        let lo = lo.min(self.len().saturating_sub(1));
        if lo <= self.from {
            return;
        }
        self.from = lo;
        for l in 0..self.levels.len() {
            let keep = (lo >> l) & !1;
            while self.offsets[l] < keep && !self.levels[l].is_empty() {
                self.levels[l].pop_front();
                self.offsets[l] += 1;
            }
        }
    }

    pub(crate) fn root(&self) -> Digest {
        match self.levels.last() {
            Some(top) if self.level_len(self.levels.len() - 1) == 1 => top[0],
            _ => merkle::empty_root(),
        }
    }

    pub(crate) fn proof(&self, index: usize) -> Option<InclusionProof> {
        if index >= self.len() || index < self.from {
            return None;
        }
        let mut siblings = Vec::new();
        let mut i = index;
        for l in 0..self.levels.len() - 1 {
            let sib = i ^ 1;
            if sib < self.level_len(l) {
                siblings.push(self.node(l, sib));
            }
            i /= 2;
        }
        Some(InclusionProof { index: index as u64, leaf_count: self.len() as u64, siblings })
    }

    /// The kept nodes, level by level (for snapshots).
    pub(crate) fn levels(&self) -> Vec<TreeLevel> {
        self.levels
            .iter()
            .zip(&self.offsets)
            .map(|(v, o)| TreeLevel { offset: *o as u64, nodes: v.iter().copied().collect() })
            .collect()
    }

    /// A tree from [`AnchorTree::levels`] whose provable leaves start at `from`.
    /// Checks the shape (each level half the one below, rounded up, up to a single
    /// root; each level kept from where `forget_below(from)` keeps it) and every parent
    /// whose children are both kept; the root itself is checked by the caller against
    /// the recorded state root.
    pub(crate) fn from_levels(levels: Vec<TreeLevel>, from: usize) -> Result<AnchorTree, String> {
        if levels.is_empty() {
            return if from == 0 { Ok(AnchorTree::default()) } else { Err("an empty tree proving from a leaf".into()) };
        }
        let mut t = AnchorTree::default();
        for lv in levels {
            let offset = usize::try_from(lv.offset)
                .ok()
                .filter(|o| o.checked_add(lv.nodes.len()).is_some_and(|end| end <= u64::MAX as usize / 2))
                .ok_or_else(|| "level offset out of range".to_string())?;
            t.offsets.push(offset);
            t.levels.push(lv.nodes.into_iter().collect());
        }
        let n = t.len();
        if from >= n {
            return Err(format!("provable leaves start at {from} of {n}"));
        }
        let top = t.levels.len() - 1;
        let mut want = n;
        for l in 0..=top {
            if t.level_len(l) != want || (want == 1) != (l == top) {
                return Err(format!("level {l} of {} has {} nodes, {want} expected", top + 1, t.level_len(l)));
            }
            let keep = (from >> l) & !1;
            if t.offsets[l] != keep {
                return Err(format!("level {l} is kept from {}, {keep} expected", t.offsets[l]));
            }
            if l < top {
                for p in t.offsets[l + 1]..t.level_len(l + 1) {
                    let (a, b) = (2 * p, 2 * p + 1);
                    if a < t.offsets[l] {
                        continue;
                    }
                    let node = if b < want { node_hash(&t.node(l, a), &t.node(l, b)) } else { t.node(l, a) };
                    if node != t.node(l + 1, p) {
                        return Err(format!("node {p} of level {} does not match its children", l + 1));
                    }
                }
            }
            want = want.div_ceil(2);
        }
        t.from = from;
        Ok(t)
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

    #[test]
    fn a_tree_that_forgets_keeps_its_root_and_the_proofs_it_kept() {
        for (n, step) in [(1u32, 1usize), (2, 1), (70, 3), (129, 7), (300, 50)] {
            let mut t = AnchorTree::default();
            let mut leaves = Vec::new();
            for k in 1..=n {
                let leaf = ANCHOR_LEAF.hash(&k.to_le_bytes());
                leaves.push(leaf);
                t.push(leaf);
                // Forget behind a moving floor (never the newest leaf).
                let lo = leaves.len().saturating_sub(step + 1);
                t.forget_below(lo);
                let full = MerkleTree::new(leaves.clone());
                assert_eq!(t.root(), full.root(), "n = {k}");
                assert_eq!(t.len(), leaves.len());
                for i in 0..leaves.len() {
                    if i < t.proves_from() {
                        assert!(t.proof(i).is_none(), "leaf {i} was forgotten");
                    } else {
                        assert_eq!(t.proof(i), full.proof(i), "n = {k}, i = {i}");
                    }
                }
                let kept: usize = t.levels.iter().map(VecDeque::len).sum();
                assert!(kept <= 2 * (leaves.len() - t.proves_from()) + 2 * t.levels.len() + 2, "{kept} nodes kept");
                // The kept levels rebuild the same tree.
                let back = AnchorTree::from_levels(t.levels(), t.proves_from()).unwrap();
                assert_eq!(back.root(), t.root());
                assert_eq!(back.levels(), t.levels());
            }
        }
    }

    #[test]
    fn kept_levels_that_do_not_fit_are_refused() {
        let mut t = AnchorTree::default();
        for k in 0..40u32 {
            t.push(ANCHOR_LEAF.hash(&k.to_le_bytes()));
        }
        t.forget_below(17);
        let good = t.levels();
        assert!(AnchorTree::from_levels(good.clone(), 17).is_ok());
        assert!(AnchorTree::from_levels(good.clone(), 3).is_err(), "offsets of another floor");
        assert!(AnchorTree::from_levels(good.clone(), 40).is_err(), "floor past the last leaf");
        let mut bad = good.clone();
        bad[1].nodes[2] = Digest([9; 32]);
        assert!(AnchorTree::from_levels(bad, 17).is_err(), "a parent that is not its children's");
        let mut short = good.clone();
        short.pop();
        assert!(AnchorTree::from_levels(short, 17).is_err(), "no single root");
        let mut extra = good;
        extra[0].nodes.push(Digest([1; 32]));
        assert!(AnchorTree::from_levels(extra, 17).is_err(), "a level of the wrong size");
    }
}
