//! The three hash trees of a square and their range proofs.
//!
//! 1. **Axis trees** (one per row and per column): blake3's own tree, keyed with the
//!    row or column domain key, over the axis bytes. A leaf is a blake3 chunk (1 KiB =
//!    two consecutive 512-byte cells along the axis), so hashing an axis is one
//!    `blake3::keyed_hash` call that runs at full SIMD width, and the axis root *is*
//!    `Domain::hash(axis bytes)`. Proofs are Bao-style: chaining values of the subtrees
//!    next to the proven chunk range, merged with `blake3::hazmat`.
//! 2. **Root trees**: a binary Merkle tree over the `2k` row roots (and one over the `2k`
//!    column roots), of the shape below (perfect when `2k` is a power of two), inner node
//!    `H_axis_node(left ‖ right)`.
//! 3. **The namespace table tree** (see [`crate::table`]).
//!
//! All three use one shape rule, blake3's: the left subtree of a node over `n > 1`
//! leaves holds the largest power of two strictly below `n`. A range proof for leaves
//! `[a, b)` lists, in pre-order, the subtrees disjoint from the range; the verifier
//! walks the same shape (`fold_range`) and consumes them. The same walk with an empty
//! range (`a == b`) proves a *gap* (used for namespace absence).

use blake3::hazmat::{ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};
use lamina_primitives::{Digest, Domain};

use crate::error::{Error, Result, malformed};

/// Hash domains of the DA layer. Every hash in this crate is under one of these.
pub mod domains {
    use lamina_primitives::Domain;

    /// Key of the blake3 tree over a row's bytes (row roots).
    pub static ROW: Domain = Domain::new("lamina da row v1");
    /// Key of the blake3 tree over a column's bytes (column roots).
    pub static COLUMN: Domain = Domain::new("lamina da column v1");
    /// Inner node of the Merkle trees over row roots and over column roots.
    pub static AXIS_NODE: Domain = Domain::new("lamina da axis node v1");
    /// Leaf of the namespace table tree (one table entry).
    pub static TABLE_LEAF: Domain = Domain::new("lamina da table leaf v1");
    /// Inner node of the namespace table tree (carries min and max namespace).
    pub static TABLE_NODE: Domain = Domain::new("lamina da table node v1");
    /// Root of the namespace table (entry count, root node).
    pub static TABLE_ROOT: Domain = Domain::new("lamina da table root v1");
    /// The data root over (k, codec, rows root, columns root, table root).
    pub static DATA_ROOT: Domain = Domain::new("lamina da data root v1");
}

/// Size of a blake3 chunk, the leaf of an axis tree.
pub const CHUNK: usize = blake3::CHUNK_LEN;

/// Number of leaves in the left subtree of a node over `n >= 2` leaves.
#[inline]
pub(crate) fn left_len(n: u64) -> u64 {
    debug_assert!(n >= 2);
    n.div_ceil(2).next_power_of_two()
}

/// Callbacks of a range walk.
pub(crate) trait RangeWalk {
    /// A node value (a chaining value, a digest, a table node).
    type Node;
    /// A subtree `[lo, hi)` fully inside the proven range.
    fn included(&mut self, lo: u64, hi: u64, is_root: bool) -> Result<Self::Node>;
    /// A subtree `[lo, hi)` disjoint from the range (left of it when `hi <= a`).
    fn excluded(&mut self, lo: u64, hi: u64, is_root: bool) -> Result<Self::Node>;
    /// Parent of two subtrees.
    fn merge(&mut self, left: Self::Node, right: Self::Node, is_root: bool) -> Result<Self::Node>;
}

/// Walks the tree over `[0, n)` for the range `[a, b)` (possibly empty) and returns the
/// root node. The walk is the same for the prover (who computes excluded nodes) and the
/// verifier (who takes them from the proof), so their orders agree.
pub(crate) fn fold_range<W: RangeWalk>(n: u64, a: u64, b: u64, walk: &mut W) -> Result<W::Node> {
    if n == 0 || a > b || b > n {
        return Err(malformed("range", format!("[{a}, {b}) in a tree of {n} leaves")));
    }
    fold(0, n, a, b, true, walk)
}

fn fold<W: RangeWalk>(lo: u64, hi: u64, a: u64, b: u64, is_root: bool, walk: &mut W) -> Result<W::Node> {
    if b <= lo || hi <= a {
        walk.excluded(lo, hi, is_root)
    } else if a <= lo && hi <= b {
        walk.included(lo, hi, is_root)
    } else {
        let mid = lo + left_len(hi - lo);
        let l = fold(lo, mid, a, b, false, walk)?;
        let r = fold(mid, hi, a, b, false, walk)?;
        walk.merge(l, r, is_root)
    }
}

// ---------------------------------------------------------------------------------------
// Axis trees (blake3 Bao)

/// Row or column.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Axis {
    /// A row of the extended square.
    Row,
    /// A column of the extended square.
    Col,
}

impl Axis {
    /// The key domain of this axis's trees.
    pub fn domain(self) -> &'static Domain {
        match self {
            Axis::Row => &domains::ROW,
            Axis::Col => &domains::COLUMN,
        }
    }

    /// Wire byte (0 = row, 1 = column).
    pub fn as_u8(self) -> u8 {
        match self {
            Axis::Row => 0,
            Axis::Col => 1,
        }
    }

    /// Parses the wire byte.
    pub fn from_u8(b: u8) -> Result<Self> {
        match b {
            0 => Ok(Axis::Row),
            1 => Ok(Axis::Col),
            other => Err(malformed("axis", format!("byte {other}"))),
        }
    }

    /// `"row"` or `"column"`.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Row => "row",
            Axis::Col => "column",
        }
    }

    /// The other axis.
    pub fn orthogonal(self) -> Axis {
        match self {
            Axis::Row => Axis::Col,
            Axis::Col => Axis::Row,
        }
    }
}

/// Root of an axis tree: the keyed blake3 hash of the axis bytes.
#[inline]
pub fn axis_root(axis: Axis, bytes: &[u8]) -> Digest {
    axis.domain().hash(bytes)
}

/// Chaining value (or root, when `is_root`) of the subtree over `bytes`, which start at
/// byte `offset` of the axis.
fn subtree_cv(key: &[u8; 32], bytes: &[u8], offset: u64, is_root: bool) -> ChainingValue {
    if is_root {
        *blake3::keyed_hash(key, bytes).as_bytes()
    } else {
        let mut h = blake3::Hasher::new_keyed(key);
        h.set_input_offset(offset);
        h.update(bytes);
        h.finalize_non_root()
    }
}

fn merge_cv(key: &[u8; 32], l: &ChainingValue, r: &ChainingValue, is_root: bool) -> ChainingValue {
    if is_root {
        *merge_subtrees_root(l, r, Mode::KeyedHash(key)).as_bytes()
    } else {
        merge_subtrees_non_root(l, r, Mode::KeyedHash(key))
    }
}

struct BaoProver<'a> {
    key: &'a [u8; 32],
    axis: &'a [u8],
    out: Vec<[u8; 32]>,
}

impl RangeWalk for BaoProver<'_> {
    type Node = ();
    fn included(&mut self, _: u64, _: u64, _: bool) -> Result<()> {
        Ok(())
    }
    fn excluded(&mut self, lo: u64, hi: u64, is_root: bool) -> Result<()> {
        let bytes = &self.axis[lo as usize * CHUNK..hi as usize * CHUNK];
        self.out.push(subtree_cv(self.key, bytes, lo * CHUNK as u64, is_root));
        Ok(())
    }
    fn merge(&mut self, _: (), _: (), _: bool) -> Result<()> {
        Ok(())
    }
}

/// Proof nodes for chunks `[a, b)` of an axis whose bytes are `axis` (a whole number of
/// chunks).
pub(crate) fn bao_prove(axis_kind: Axis, axis: &[u8], a: u64, b: u64) -> Result<Vec<[u8; 32]>> {
    let n = (axis.len() / CHUNK) as u64;
    let mut p = BaoProver { key: axis_kind.domain().key(), axis, out: Vec::new() };
    fold_range(n, a, b, &mut p)?;
    Ok(p.out)
}

struct BaoVerifier<'a> {
    key: &'a [u8; 32],
    a: u64,
    chunks: &'a [u8],
    nodes: std::slice::Iter<'a, [u8; 32]>,
}

impl RangeWalk for BaoVerifier<'_> {
    type Node = ChainingValue;
    fn included(&mut self, lo: u64, hi: u64, is_root: bool) -> Result<ChainingValue> {
        let start = (lo - self.a) as usize * CHUNK;
        let end = (hi - self.a) as usize * CHUNK;
        Ok(subtree_cv(self.key, &self.chunks[start..end], lo * CHUNK as u64, is_root))
    }
    fn excluded(&mut self, _: u64, _: u64, _: bool) -> Result<ChainingValue> {
        self.nodes.next().copied().ok_or(Error::ProofMismatch { what: "axis (too few nodes)" })
    }
    fn merge(&mut self, l: ChainingValue, r: ChainingValue, is_root: bool) -> Result<ChainingValue> {
        Ok(merge_cv(self.key, &l, &r, is_root))
    }
}

/// Root implied by `chunks` (the bytes of chunks `[a, a + chunks.len() / CHUNK)`) of an
/// axis of `n_chunks` chunks, and the proof `nodes`.
pub(crate) fn bao_root(axis_kind: Axis, n_chunks: u64, a: u64, chunks: &[u8], nodes: &[[u8; 32]]) -> Result<Digest> {
    if chunks.is_empty() || !chunks.len().is_multiple_of(CHUNK) {
        return Err(malformed("axis proof", format!("{} bytes is not a positive number of chunks", chunks.len())));
    }
    let b = a + (chunks.len() / CHUNK) as u64;
    let mut v = BaoVerifier { key: axis_kind.domain().key(), a, chunks, nodes: nodes.iter() };
    let root = fold_range(n_chunks, a, b, &mut v)?;
    if v.nodes.next().is_some() {
        return Err(Error::ProofMismatch { what: "axis (extra nodes)" });
    }
    Ok(Digest(root))
}

// ---------------------------------------------------------------------------------------
// Root trees: Merkle trees over axis roots (blake3's shape rule)

/// Inner node of a root tree.
#[inline]
pub(crate) fn axis_node(l: &Digest, r: &Digest) -> Digest {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&l.0);
    buf[32..].copy_from_slice(&r.0);
    domains::AXIS_NODE.hash(&buf)
}

/// Root of a tree over `leaves` (any positive count; squares always have `2k`).
pub fn roots_root(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => Digest::ZERO,
        1 => leaves[0],
        n => {
            let mid = left_len(n as u64) as usize;
            axis_node(&roots_root(&leaves[..mid]), &roots_root(&leaves[mid..]))
        }
    }
}

struct RootsProver<'a> {
    leaves: &'a [Digest],
    out: Vec<Digest>,
}

impl RangeWalk for RootsProver<'_> {
    type Node = ();
    fn included(&mut self, _: u64, _: u64, _: bool) -> Result<()> {
        Ok(())
    }
    fn excluded(&mut self, lo: u64, hi: u64, _: bool) -> Result<()> {
        self.out.push(roots_root(&self.leaves[lo as usize..hi as usize]));
        Ok(())
    }
    fn merge(&mut self, _: (), _: (), _: bool) -> Result<()> {
        Ok(())
    }
}

/// Proof nodes for leaves `[a, b)` of the root tree over `leaves`.
pub(crate) fn roots_prove(leaves: &[Digest], a: u64, b: u64) -> Result<Vec<Digest>> {
    let mut p = RootsProver { leaves, out: Vec::new() };
    fold_range(leaves.len() as u64, a, b, &mut p)?;
    Ok(p.out)
}

struct RootsVerifier<'a> {
    a: u64,
    leaves: &'a [Digest],
    nodes: std::slice::Iter<'a, Digest>,
}

impl RangeWalk for RootsVerifier<'_> {
    type Node = Digest;
    fn included(&mut self, lo: u64, hi: u64, _: bool) -> Result<Digest> {
        Ok(roots_root(&self.leaves[(lo - self.a) as usize..(hi - self.a) as usize]))
    }
    fn excluded(&mut self, _: u64, _: u64, _: bool) -> Result<Digest> {
        self.nodes.next().copied().ok_or(Error::ProofMismatch { what: "root tree (too few nodes)" })
    }
    fn merge(&mut self, l: Digest, r: Digest, _: bool) -> Result<Digest> {
        Ok(axis_node(&l, &r))
    }
}

/// Root implied by `leaves` at positions `[a, a + leaves.len())` of a tree of `n` leaves.
pub(crate) fn roots_verify_root(n: u64, a: u64, leaves: &[Digest], nodes: &[Digest]) -> Result<Digest> {
    if leaves.is_empty() {
        return Err(malformed("root tree proof", "no leaves"));
    }
    let mut v = RootsVerifier { a, leaves, nodes: nodes.iter() };
    let root = fold_range(n, a, a + leaves.len() as u64, &mut v)?;
    if v.nodes.next().is_some() {
        return Err(Error::ProofMismatch { what: "root tree (extra nodes)" });
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 8) as u8).collect()
    }

    #[test]
    fn left_len_matches_blake3() {
        for n in 2u64..200 {
            assert_eq!(left_len(n) * CHUNK as u64, blake3::hazmat::left_subtree_len(n * CHUNK as u64), "n={n}");
        }
    }

    #[test]
    fn bao_range_proofs_verify_and_match_keyed_hash() {
        for chunks in [1usize, 2, 4, 8, 16] {
            let axis = bytes(chunks * CHUNK, chunks as u8);
            let root = axis_root(Axis::Row, &axis);
            assert_eq!(root, domains::ROW.hash(&axis));
            for a in 0..chunks {
                for b in a + 1..=chunks {
                    let nodes = bao_prove(Axis::Row, &axis, a as u64, b as u64).unwrap();
                    let got =
                        bao_root(Axis::Row, chunks as u64, a as u64, &axis[a * CHUNK..b * CHUNK], &nodes).unwrap();
                    assert_eq!(got, root, "chunks={chunks} [{a},{b})");
                    // The column key gives a different root: trees are domain-separated.
                    let other = bao_root(Axis::Col, chunks as u64, a as u64, &axis[a * CHUNK..b * CHUNK], &nodes);
                    assert_ne!(other.ok(), Some(root));
                    // A flipped bit anywhere fails.
                    let mut bad = axis[a * CHUNK..b * CHUNK].to_vec();
                    bad[7] ^= 1;
                    assert_ne!(bao_root(Axis::Row, chunks as u64, a as u64, &bad, &nodes).ok(), Some(root));
                    if let Some(first) = nodes.first() {
                        let mut n2 = nodes.clone();
                        n2[0] = {
                            let mut x = *first;
                            x[0] ^= 1;
                            x
                        };
                        assert_ne!(
                            bao_root(Axis::Row, chunks as u64, a as u64, &axis[a * CHUNK..b * CHUNK], &n2).ok(),
                            Some(root)
                        );
                        // Wrong position fails too.
                        if b < chunks {
                            assert_ne!(
                                bao_root(Axis::Row, chunks as u64, a as u64 + 1, &axis[a * CHUNK..b * CHUNK], &nodes)
                                    .ok(),
                                Some(root)
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn root_tree_range_proofs() {
        for n in 1usize..=16 {
            let leaves: Vec<Digest> = (0..n).map(|i| domains::ROW.hash(&[i as u8])).collect();
            let root = roots_root(&leaves);
            for a in 0..n {
                for b in a + 1..=n {
                    let nodes = roots_prove(&leaves, a as u64, b as u64).unwrap();
                    assert_eq!(roots_verify_root(n as u64, a as u64, &leaves[a..b], &nodes).unwrap(), root);
                    let mut bad = leaves[a..b].to_vec();
                    bad[0].0[1] ^= 1;
                    assert_ne!(roots_verify_root(n as u64, a as u64, &bad, &nodes).unwrap(), root);
                }
            }
        }
    }
}
