//! A sparse binary Merkle tree over blake3, keyed by 256-bit paths.
//!
//! # Why this design
//!
//! The state is a key-value map whose keys are hashed to 256-bit paths. A binary tree
//! over those paths gives the shortest proofs per hash (one sibling per level), and with
//! **single-leaf subtrees collapsed** into the leaf (as in Diem's and Aptos's sparse
//! Merkle trees) a tree of `n` keys is about `log2 n` deep, not 256. Binary beats a
//! 16-ary tree (Jellyfish) for proof size and hashes per update on an in-memory state;
//! an append-only twig design (QMDB) pays off when the state lives on SSD, which is the
//! persistence layer's concern, not this one's (the service persists change sets and
//! rebuilds the tree on start).
//!
//! * Leaf: `H_leaf(path ‖ value_hash)`; inner node: `H_node(left ‖ right)`; empty
//!   subtree: [`EMPTY`] (all zeros, never a hash output in practice). Leaf and node use
//!   different domains, so neither can pass for the other.
//! * Invariant: an inner node has at least two leaves below it. A subtree with one leaf
//!   *is* that leaf, wherever it sits on its path; a subtree with none is empty.
//! * Updates are batched: a block's changes are sorted by path and applied in one
//!   descent that rehashes only the touched paths, each shared upper node once. Disjoint
//!   subtrees are updated in parallel with `rayon::join` near the top; the sequential
//!   twin is the same code with parallelism off, and a property test checks both give
//!   the same root as a rebuild from scratch.
//! * Proofs: [`StateProof`] (siblings top-down, then the terminal: the leaf reached or
//!   empty) proves inclusion of a value or non-inclusion of a key. [`Smt::prune`]
//!   produces a multiproof for many keys at once (the pruned tree, untouched subtrees
//!   replaced by their hashes), which is what witnesses carry.
//!
//! Partial trees (rebuilt from a multiproof) contain [`Node::Opaque`] subtrees whose
//! content is unknown; reading or updating through one is an
//! [`SmtError::Incomplete`] error. Opaque subtrees always stand for *inner* nodes
//! (pruning keeps leaves as leaves), so collapsing after a deletion never needs to know
//! what is inside them.

use lamina_primitives::{Digest, Domain};

static LEAF: Domain = Domain::new("lamina execution smt leaf v1");
static NODE: Domain = Domain::new("lamina execution smt node v1");

/// Hash of an empty subtree (and root of the empty tree).
pub const EMPTY: Digest = Digest::ZERO;

/// Depth limit: paths are 256 bits.
pub const MAX_DEPTH: usize = 256;

const PAR_DEPTH: usize = 8;
const PAR_MIN: usize = 64;

/// Hash of a leaf.
#[inline]
pub fn leaf_hash(path: &Digest, value_hash: &Digest) -> Digest {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&path.0);
    buf[32..].copy_from_slice(&value_hash.0);
    leaf_hash_kv(&buf)
}

/// Hash of a leaf given as `path ‖ value_hash`.
#[inline]
pub(crate) fn leaf_hash_kv(kv: &[u8; 64]) -> Digest {
    LEAF.hash(kv)
}

/// Hash of an inner node.
#[inline]
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&left.0);
    buf[32..].copy_from_slice(&right.0);
    node_hash_pair(&buf)
}

/// Hash of an inner node given as `left ‖ right`.
#[inline]
pub(crate) fn node_hash_pair(pair: &[u8; 64]) -> Digest {
    NODE.hash(pair)
}

/// Bit `depth` of a path (most significant bit of byte 0 first); 1 goes right.
#[inline]
pub fn bit(path: &Digest, depth: usize) -> bool {
    (path.0[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// Why a tree operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtError {
    /// The operation needs a part of a partial tree that the witness did not include.
    #[error("witness does not cover path at depth {depth}")]
    Incomplete {
        /// Depth of the opaque subtree reached.
        depth: usize,
    },
    /// A malformed multiproof (truncated, too deep, trailing nodes).
    #[error("malformed multiproof: {0}")]
    Malformed(&'static str),
}

/// A leaf: a path and the hash of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The key's path.
    pub path: Digest,
    /// The value's hash.
    pub value_hash: Digest,
    hash: Digest,
}

/// An inner node.
#[derive(Clone, Debug)]
pub struct Inner {
    hash: Digest,
    left: Node,
    right: Node,
}

/// A subtree.
#[derive(Clone, Debug, Default)]
pub enum Node {
    /// No leaves.
    #[default]
    Empty,
    /// Exactly one leaf.
    Leaf(Box<Leaf>),
    /// Two or more leaves.
    Inner(Box<Inner>),
    /// An inner node known only by its hash (partial trees only).
    Opaque(Digest),
}

impl Node {
    fn leaf(path: Digest, value_hash: Digest) -> Node {
        Node::Leaf(Box::new(Leaf { path, value_hash, hash: leaf_hash(&path, &value_hash) }))
    }

    /// This subtree's hash.
    pub fn hash(&self) -> Digest {
        match self {
            Node::Empty => EMPTY,
            Node::Leaf(l) => l.hash,
            Node::Inner(i) => i.hash,
            Node::Opaque(h) => *h,
        }
    }
}

/// One change: a path and its new value hash (`None` deletes).
pub type Update = (Digest, Option<Digest>);

fn normalize(node: &mut Node) {
    let Node::Inner(inner) = node else { return };
    let replacement = match (&mut inner.left, &mut inner.right) {
        (Node::Empty, Node::Empty) => Some(Node::Empty),
        (l @ Node::Leaf(_), Node::Empty) | (Node::Empty, l @ Node::Leaf(_)) => Some(std::mem::take(l)),
        (l, r) => {
            inner.hash = node_hash(&l.hash(), &r.hash());
            None
        }
    };
    if let Some(r) = replacement {
        *node = r;
    }
}

fn update(node: &mut Node, depth: usize, ups: &[Update], par: bool) -> Result<(), SmtError> {
    if ups.is_empty() {
        return Ok(());
    }
    match node {
        Node::Opaque(_) => return Err(SmtError::Incomplete { depth }),
        Node::Empty if ups.len() == 1 => {
            if let Some(vh) = ups[0].1 {
                *node = Node::leaf(ups[0].0, vh);
            }
            return Ok(());
        }
        Node::Leaf(l) if ups.len() == 1 && ups[0].0 == l.path => {
            *node = match ups[0].1 {
                Some(vh) => Node::leaf(ups[0].0, vh),
                None => Node::Empty,
            };
            return Ok(());
        }
        Node::Leaf(l) if ups.len() == 1 && ups[0].1.is_none() => {
            // Deleting an absent key under a lone leaf changes nothing.
            let _ = l;
            return Ok(());
        }
        _ => {}
    }
    if depth >= MAX_DEPTH {
        return Err(SmtError::Malformed("paths collide over 256 bits"));
    }
    if !matches!(node, Node::Inner(_)) {
        let (left, right) = match std::mem::take(node) {
            Node::Leaf(l) if bit(&l.path, depth) => (Node::Empty, Node::Leaf(l)),
            Node::Leaf(l) => (Node::Leaf(l), Node::Empty),
            _ => (Node::Empty, Node::Empty),
        };
        *node = Node::Inner(Box::new(Inner { hash: EMPTY, left, right }));
    }
    let Node::Inner(inner) = node else {
        return Err(SmtError::Malformed("unreachable: node was made inner"));
    };
    let split = ups.partition_point(|u| !bit(&u.0, depth));
    let (lu, ru) = ups.split_at(split);
    if par && depth < PAR_DEPTH && lu.len() >= PAR_MIN && ru.len() >= PAR_MIN {
        let (a, b) = rayon::join(
            || update(&mut inner.left, depth + 1, lu, par),
            || update(&mut inner.right, depth + 1, ru, par),
        );
        a?;
        b?;
    } else {
        update(&mut inner.left, depth + 1, lu, par)?;
        update(&mut inner.right, depth + 1, ru, par)?;
    }
    normalize(node);
    Ok(())
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key is present with this value hash.
    Present(Digest),
    /// The key is provably absent.
    Absent,
    /// The path runs into an opaque subtree (partial trees only).
    Unknown,
}

pub use terminal::*;

// rkyv's derive generates undocumented items for the fields of enum variants.
#[allow(missing_docs)]
mod terminal {
    use lamina_primitives::Digest;
    /// The terminal of a single-key proof: what the path reaches.
    #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize)]
    pub enum Terminal {
        /// An empty subtree.
        Empty,
        /// A leaf (the key itself for inclusion, another key for non-inclusion).
        Leaf {
            /// Its path.
            path: Digest,
            /// Its value hash.
            value_hash: Digest,
        },
    }
}

/// A proof of inclusion or non-inclusion of one key.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize)]
pub struct StateProof {
    /// Sibling hashes from the root down (the sibling at depth `d` is the other child
    /// of the node at depth `d`).
    pub siblings: Vec<Digest>,
    /// What the path reaches.
    pub terminal: Terminal,
}

impl lamina_primitives::Wire for StateProof {
    const NAME: &'static str = "StateProof";
    const MAX_SIZE: usize = 64 + 32 * MAX_DEPTH + 128;
}

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// More siblings than path bits.
    #[error("proof deeper than 256")]
    TooDeep,
    /// The terminal does not match the claim (wrong key or value, or a leaf that could
    /// not sit on this path).
    #[error("terminal does not match the claimed key and value")]
    WrongTerminal,
    /// The recomputed root differs.
    #[error("root mismatch")]
    RootMismatch,
}

impl StateProof {
    /// Verifies that under `root`, the key with `path` has value hash `value_hash`
    /// (`None`: the key is absent).
    pub fn verify(&self, root: &Digest, path: &Digest, value_hash: Option<&Digest>) -> Result<(), ProofError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(ProofError::TooDeep);
        }
        let mut acc = match (&self.terminal, value_hash) {
            (Terminal::Leaf { path: p, value_hash: vh }, Some(want)) if p == path && vh == want => leaf_hash(p, vh),
            (Terminal::Leaf { path: p, value_hash: vh }, None) if p != path => {
                // The other leaf must share our first `depth` bits to sit here.
                if (0..depth).any(|d| bit(p, d) != bit(path, d)) {
                    return Err(ProofError::WrongTerminal);
                }
                leaf_hash(p, vh)
            }
            (Terminal::Empty, None) => EMPTY,
            _ => return Err(ProofError::WrongTerminal),
        };
        for d in (0..depth).rev() {
            let sib = &self.siblings[d];
            acc = if bit(path, d) { node_hash(sib, &acc) } else { node_hash(&acc, sib) };
        }
        if &acc == root { Ok(()) } else { Err(ProofError::RootMismatch) }
    }
}

pub use proof_node::*;

// rkyv's derive generates undocumented items for the fields of enum variants.
#[allow(missing_docs)]
mod proof_node {
    use lamina_primitives::Digest;
    /// A node of a multiproof, in pre-order (an `Inner` is followed by its left then its
    /// right subtree).
    #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum ProofNode {
        /// An empty subtree.
        Empty,
        /// A leaf.
        Leaf {
            /// Path.
            path: Digest,
            /// Value hash.
            value_hash: Digest,
        },
        /// An inner node whose children follow.
        Inner,
        /// An inner node given by hash only.
        Opaque(Digest),
    }
}

/// A sparse Merkle tree (full, or partial when rebuilt from a multiproof).
#[derive(Clone, Debug, Default)]
pub struct Smt {
    root: Node,
}

impl Smt {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The root hash ([`EMPTY`] for the empty tree).
    pub fn root(&self) -> Digest {
        self.root.hash()
    }

    /// Applies a batch of updates. `updates` is sorted by path and deduplicated here.
    /// With `parallel`, disjoint subtrees are rehashed on the rayon pool; the result is
    /// identical either way. On error (partial trees only) the tree is left partly
    /// updated and must be discarded.
    pub fn apply(&mut self, updates: &mut Vec<Update>, parallel: bool) -> Result<Digest, SmtError> {
        updates.sort_by_key(|e| e.0);
        // Keep the last update per path.
        let mut w = 0;
        for r in 0..updates.len() {
            if w > 0 && updates[w - 1].0 == updates[r].0 {
                updates[w - 1] = updates[r];
            } else {
                updates[w] = updates[r];
                w += 1;
            }
        }
        updates.truncate(w);
        update(&mut self.root, 0, updates, parallel)?;
        Ok(self.root())
    }

    /// Looks a path up.
    pub fn get(&self, path: &Digest) -> Lookup {
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => return Lookup::Absent,
                Node::Leaf(l) => {
                    return if l.path == *path { Lookup::Present(l.value_hash) } else { Lookup::Absent };
                }
                Node::Opaque(_) => return Lookup::Unknown,
                Node::Inner(i) => {
                    node = if bit(path, depth) { &i.right } else { &i.left };
                    depth += 1;
                }
            }
        }
    }

    /// A proof for `path` (inclusion if present, non-inclusion otherwise).
    pub fn prove(&self, path: &Digest) -> Result<StateProof, SmtError> {
        let mut siblings = Vec::new();
        let mut node = &self.root;
        loop {
            match node {
                Node::Empty => return Ok(StateProof { siblings, terminal: Terminal::Empty }),
                Node::Leaf(l) => {
                    return Ok(StateProof {
                        siblings,
                        terminal: Terminal::Leaf { path: l.path, value_hash: l.value_hash },
                    });
                }
                Node::Opaque(_) => return Err(SmtError::Incomplete { depth: siblings.len() }),
                Node::Inner(i) => {
                    let right = bit(path, siblings.len());
                    let (next, sib) = if right { (&i.right, &i.left) } else { (&i.left, &i.right) };
                    siblings.push(sib.hash());
                    node = next;
                }
            }
        }
    }

    /// A multiproof for `paths` (sorted or not): the tree pruned to the nodes on their
    /// paths, every other subtree replaced by its hash (leaves are kept as leaves).
    pub fn prune(&self, paths: &[Digest]) -> Result<Vec<ProofNode>, SmtError> {
        let mut sorted = paths.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut out = Vec::new();
        prune(&self.root, 0, &sorted, &mut out)?;
        Ok(out)
    }

    /// Rebuilds a partial tree from a multiproof. Check [`Smt::root`] against the
    /// trusted root before using it.
    pub fn from_multiproof(nodes: &[ProofNode]) -> Result<Smt, SmtError> {
        let mut at = 0;
        let root = build(nodes, &mut at, 0)?;
        if at != nodes.len() {
            return Err(SmtError::Malformed("trailing nodes"));
        }
        Ok(Smt { root })
    }

    /// Number of leaves (walks the tree; for tests and statistics).
    pub fn len(&self) -> usize {
        fn count(n: &Node) -> usize {
            match n {
                Node::Empty | Node::Opaque(_) => 0,
                Node::Leaf(_) => 1,
                Node::Inner(i) => count(&i.left) + count(&i.right),
            }
        }
        count(&self.root)
    }

    /// True for the empty tree.
    pub fn is_empty(&self) -> bool {
        matches!(self.root, Node::Empty)
    }
}

fn prune(node: &Node, depth: usize, paths: &[Digest], out: &mut Vec<ProofNode>) -> Result<(), SmtError> {
    match node {
        Node::Empty => out.push(ProofNode::Empty),
        Node::Leaf(l) => out.push(ProofNode::Leaf { path: l.path, value_hash: l.value_hash }),
        Node::Opaque(h) if paths.is_empty() => out.push(ProofNode::Opaque(*h)),
        Node::Opaque(_) => return Err(SmtError::Incomplete { depth }),
        Node::Inner(i) if paths.is_empty() => out.push(ProofNode::Opaque(i.hash)),
        Node::Inner(i) => {
            out.push(ProofNode::Inner);
            let split = paths.partition_point(|p| !bit(p, depth));
            prune(&i.left, depth + 1, &paths[..split], out)?;
            prune(&i.right, depth + 1, &paths[split..], out)?;
        }
    }
    Ok(())
}

fn build(nodes: &[ProofNode], at: &mut usize, depth: usize) -> Result<Node, SmtError> {
    if depth > MAX_DEPTH {
        return Err(SmtError::Malformed("deeper than 256"));
    }
    let n = nodes.get(*at).ok_or(SmtError::Malformed("truncated"))?;
    *at += 1;
    Ok(match n {
        ProofNode::Empty => Node::Empty,
        ProofNode::Leaf { path, value_hash } => Node::leaf(*path, *value_hash),
        ProofNode::Opaque(h) => Node::Opaque(*h),
        ProofNode::Inner => {
            let left = build(nodes, at, depth + 1)?;
            let right = build(nodes, at, depth + 1)?;
            let hash = node_hash(&left.hash(), &right.hash());
            Node::Inner(Box::new(Inner { hash, left, right }))
        }
    })
}
