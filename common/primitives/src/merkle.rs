//! A binary Merkle tree over blake3 with inclusion proofs.
//!
//! * Leaf hash: `H_leaf(data)`; inner node: `H_node(left ‖ right)`; empty tree:
//!   `H_empty("")`. The three are distinct [`Domain`](crate::hash::Domain)s, so a leaf
//!   can never pass for an inner node (no second-preimage by reinterpretation).
//! * Levels are built bottom-up by pairing neighbours; an unpaired last node is
//!   **promoted** unchanged to the next level (never duplicated, which would let two
//!   different leaf lists share a root, as in CVE-2012-2459).
//! * A proof carries the leaf index, the leaf count and the siblings; the verifier
//!   recomputes the path shape from index and count, and requires every sibling to be
//!   used exactly once.

use crate::hash::{Digest, domains};

/// Largest leaf count a proof may claim (bounds verifier work on hostile input).
pub const MAX_LEAVES: u64 = 1 << 40;

/// Hash of a leaf's data.
#[inline]
pub fn leaf_hash(data: &[u8]) -> Digest {
    domains::MERKLE_LEAF.hash(data)
}

/// Hash of an inner node.
#[inline]
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left.as_bytes());
    buf[32..].copy_from_slice(right.as_bytes());
    domains::MERKLE_NODE.hash(&buf)
}

/// Root of an empty tree.
pub fn empty_root() -> Digest {
    domains::MERKLE_EMPTY.hash(b"")
}

/// Computes the root of `leaves` (already leaf-hashed) without keeping the levels.
pub fn root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level: Vec<Digest> = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

fn next_level(level: &[Digest]) -> Vec<Digest> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [single] => *single,
            _ => unreachable!("chunks(2) yields 1 or 2 items"),
        })
        .collect()
}

/// A tree with every level kept, for producing proofs.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    levels: Vec<Vec<Digest>>,
}

/// Proof that a leaf is at `index` of a tree with `leaf_count` leaves.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf.
    pub index: u64,
    /// Number of leaves in the tree.
    pub leaf_count: u64,
    /// Sibling hashes from the leaf level upwards (promoted levels contribute none).
    pub siblings: Vec<Digest>,
}

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Index not below the leaf count, or the count is zero or absurd.
    #[error("index {index} invalid for {leaf_count} leaves")]
    BadIndex {
        /// Claimed index.
        index: u64,
        /// Claimed leaf count.
        leaf_count: u64,
    },
    /// Too few or too many siblings for the tree shape.
    #[error("proof has {got} siblings, shape needs {want}")]
    WrongLength {
        /// Siblings present.
        got: usize,
        /// Siblings the shape requires.
        want: usize,
    },
    /// The recomputed root differs.
    #[error("recomputed root does not match")]
    RootMismatch,
}

impl MerkleTree {
    /// Builds a tree over already-hashed leaves.
    pub fn new(leaves: Vec<Digest>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let next = next_level(levels.last().map(Vec::as_slice).unwrap_or(&[]));
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// Builds a tree over raw leaf data.
    pub fn from_data<T: AsRef<[u8]>>(items: &[T]) -> Self {
        Self::new(items.iter().map(|d| leaf_hash(d.as_ref())).collect())
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// True for an empty tree.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root ([`empty_root`] for no leaves).
    pub fn root(&self) -> Digest {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => empty_root(),
        }
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Digest] {
        &self.levels[0]
    }

    /// Inclusion proof for leaf `index`, or `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<InclusionProof> {
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

impl InclusionProof {
    /// Recomputes the root implied by `leaf` (a leaf hash) and this proof.
    pub fn compute_root(&self, leaf: &Digest) -> Result<Digest, ProofError> {
        if self.leaf_count == 0 || self.leaf_count > MAX_LEAVES || self.index >= self.leaf_count {
            return Err(ProofError::BadIndex { index: self.index, leaf_count: self.leaf_count });
        }
        let want = path_length(self.index, self.leaf_count);
        if want != self.siblings.len() {
            return Err(ProofError::WrongLength { got: self.siblings.len(), want });
        }
        let mut acc = *leaf;
        let (mut i, mut count) = (self.index, self.leaf_count);
        let mut sib = self.siblings.iter();
        while count > 1 {
            if i % 2 == 1 {
                acc = node_hash(sib.next().ok_or(ProofError::RootMismatch)?, &acc);
            } else if i + 1 < count {
                acc = node_hash(&acc, sib.next().ok_or(ProofError::RootMismatch)?);
            }
            i /= 2;
            count = count.div_ceil(2);
        }
        Ok(acc)
    }

    /// Verifies that `leaf` (a leaf hash) is at `self.index` under `root`.
    pub fn verify(&self, root: &Digest, leaf: &Digest) -> Result<(), ProofError> {
        if &self.compute_root(leaf)? == root { Ok(()) } else { Err(ProofError::RootMismatch) }
    }
}

fn path_length(mut i: u64, mut count: u64) -> usize {
    let mut n = 0;
    while count > 1 {
        if i % 2 == 1 || i + 1 < count {
            n += 1;
        }
        i /= 2;
        count = count.div_ceil(2);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| (i as u32).to_le_bytes().to_vec()).collect()
    }

    #[test]
    fn every_proof_verifies_for_sizes_1_to_40() {
        for n in 1..=40 {
            let t = MerkleTree::from_data(&data(n));
            assert_eq!(t.root(), root(t.leaves()));
            for i in 0..n {
                let p = t.proof(i).unwrap();
                p.verify(&t.root(), &t.leaves()[i]).unwrap();
                // Wrong leaf fails.
                let wrong = leaf_hash(b"nope");
                assert_eq!(p.verify(&t.root(), &wrong), Err(ProofError::RootMismatch));
            }
            assert!(t.proof(n).is_none());
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        let t = MerkleTree::from_data(&data(13));
        let p = t.proof(6).unwrap();
        let leaf = t.leaves()[6];
        let mut q = p.clone();
        q.index = 7;
        assert!(q.verify(&t.root(), &leaf).is_err());
        let mut q = p.clone();
        q.siblings.push(Digest::ZERO);
        assert!(matches!(q.verify(&t.root(), &leaf), Err(ProofError::WrongLength { .. })));
        let mut q = p.clone();
        q.leaf_count = 0;
        assert!(matches!(q.verify(&t.root(), &leaf), Err(ProofError::BadIndex { .. })));
        let mut q = p;
        q.siblings[0].0[0] ^= 1;
        assert_eq!(q.verify(&t.root(), &leaf), Err(ProofError::RootMismatch));
    }

    #[test]
    fn no_duplication_collision() {
        // [a, b, c] and [a, b, c, c] must have different roots.
        let three = MerkleTree::from_data(&data(3)).root();
        let mut d = data(3);
        d.push(d[2].clone());
        assert_ne!(three, MerkleTree::from_data(&d).root());
        assert_ne!(root(&[]), root(&[leaf_hash(b"")]));
    }
}
