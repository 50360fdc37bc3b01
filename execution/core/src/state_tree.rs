//! The full state's sparse Merkle tree, laid out for speed.
//!
//! [`StateTree`] is the same tree as [`Smt`](crate::smt::Smt): same leaves, same
//! collapsing of single-leaf subtrees, same node and leaf hashes, so the same root and
//! the same proofs and multiproofs for the same key set. Only the storage differs:
//!
//! * **Sharded by the top [`TOP`] path bits.** The subtree under each 8-bit prefix (a
//!   *shard*) lives in its own arena. A batch is bucketed by prefix and the shards are
//!   updated independently, in parallel on the rayon pool or one after another (the
//!   sequential twin: same code, same result). The `2^TOP - 1` nodes above the shards
//!   are kept as a small array of summaries and rehashed once per batch, only above
//!   shards that changed.
//! * **Arenas, not boxes.** A shard's inner nodes and leaves sit in two `Vec`s and refer
//!   to each other by `u32` index; freed slots are reused. There is no allocation per
//!   node and no pointer per node, and a whole tree clones as a handful of `memcpy`s.
//! * **Child hashes are stored in the parent.** An inner node holds its two children's
//!   hashes side by side (the 64 bytes its own hash is computed over) and their indices.
//!   Rehashing a node on an updated path touches that node only, never its sibling; a
//!   leaf holds `path ‖ value_hash`, the 64 bytes of its hash input.
//! * **Batched, sorted descent.** Within a shard, a batch is sorted by path and applied
//!   in one descent that rehashes every touched node once, however many updates pass
//!   through it (the upper levels of a batch are shared).
//!
//! Partial trees (rebuilt from a multiproof, with opaque subtrees) stay with
//! [`Smt`](crate::smt::Smt): they are witness-sized, and that simpler structure is also
//! the reference the tests hold this one to.

use lamina_primitives::Digest;
use rayon::prelude::*;

use crate::smt::{
    EMPTY, Lookup, MAX_DEPTH, ProofNode, SmtError, StateProof, Terminal, Update, bit, leaf_hash_kv, node_hash_pair,
};

/// Depth of the shard roots: the tree is split into `2^TOP` shards by the first `TOP`
/// bits (the first byte) of the path.
pub const TOP: usize = 8;
const SHARDS: usize = 1 << TOP;

/// A node reference within a shard: 0 is the empty subtree, `2i + 1` leaf `i`, `2i + 2`
/// inner node `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Ref(u32);

#[derive(Clone, Copy)]
enum Kind {
    Empty,
    Leaf(usize),
    Inner(usize),
}

impl Ref {
    const EMPTY: Ref = Ref(0);

    #[inline]
    fn leaf(i: usize) -> Ref {
        Ref(u32::try_from(2 * i + 1).expect("fewer than 2^31 leaves per shard (memory bound)"))
    }

    #[inline]
    fn inner(i: usize) -> Ref {
        Ref(u32::try_from(2 * i + 2).expect("fewer than 2^31 inner nodes per shard (memory bound)"))
    }

    #[inline]
    fn kind(self) -> Kind {
        match self.0 {
            0 => Kind::Empty,
            r if r & 1 == 1 => Kind::Leaf((r >> 1) as usize),
            r => Kind::Inner(((r >> 1) - 1) as usize),
        }
    }
}

/// An inner node: its children's hashes (left ‖ right, the input of its own hash) and
/// their references.
#[derive(Clone, Copy, Debug)]
struct Inner {
    pair: [u8; 64],
    kids: [Ref; 2],
}

#[inline]
fn half(pair: &[u8; 64], side: usize) -> Digest {
    let mut d = [0u8; 32];
    d.copy_from_slice(&pair[side * 32..side * 32 + 32]);
    Digest(d)
}

#[inline]
fn set_half(pair: &mut [u8; 64], side: usize, h: &Digest) {
    pair[side * 32..side * 32 + 32].copy_from_slice(&h.0);
}

#[inline]
fn kv_path(kv: &[u8; 64]) -> Digest {
    half(kv, 0)
}

/// One shard: the subtree under one `TOP`-bit prefix.
#[derive(Clone, Debug, Default)]
struct Shard {
    inners: Vec<Inner>,
    /// Leaves as `path ‖ value_hash` (the input of the leaf hash).
    leaves: Vec<[u8; 64]>,
    free_inners: Vec<u32>,
    free_leaves: Vec<u32>,
    root: Ref,
    root_hash: Digest,
    len: usize,
}

impl Shard {
    fn new_leaf(&mut self, path: &Digest, value_hash: &Digest) -> (Ref, Digest) {
        let mut kv = [0u8; 64];
        set_half(&mut kv, 0, path);
        set_half(&mut kv, 1, value_hash);
        let hash = leaf_hash_kv(&kv);
        let i = match self.free_leaves.pop() {
            Some(i) => {
                self.leaves[i as usize] = kv;
                i as usize
            }
            None => {
                self.leaves.push(kv);
                self.leaves.len() - 1
            }
        };
        self.len += 1;
        (Ref::leaf(i), hash)
    }

    fn new_inner(&mut self, node: Inner) -> usize {
        match self.free_inners.pop() {
            Some(i) => {
                self.inners[i as usize] = node;
                i as usize
            }
            None => {
                self.inners.push(node);
                self.inners.len() - 1
            }
        }
    }

    /// Applies sorted, deduplicated updates to the subtree `r` (whose hash is `h`) at
    /// `depth`; returns the new subtree and its hash. `ups` is not empty.
    fn update(&mut self, r: Ref, h: Digest, depth: usize, ups: &[Update]) -> Result<(Ref, Digest), SmtError> {
        match r.kind() {
            Kind::Empty if ups.len() == 1 => {
                return Ok(match &ups[0].1 {
                    Some(vh) => self.new_leaf(&ups[0].0, vh),
                    None => (Ref::EMPTY, EMPTY),
                });
            }
            Kind::Leaf(i) if ups.len() == 1 => {
                if self.leaves[i][..32] == ups[0].0.0 {
                    return Ok(match &ups[0].1 {
                        Some(vh) => {
                            let kv = &mut self.leaves[i];
                            set_half(kv, 1, vh);
                            (r, leaf_hash_kv(kv))
                        }
                        None => {
                            self.free_leaves.push(i as u32);
                            self.len -= 1;
                            (Ref::EMPTY, EMPTY)
                        }
                    });
                }
                if ups[0].1.is_none() {
                    // Deleting an absent key under a lone leaf changes nothing.
                    return Ok((r, h));
                }
            }
            _ => {}
        }
        if depth >= MAX_DEPTH {
            return Err(SmtError::Malformed("paths collide over 256 bits"));
        }
        let idx = match r.kind() {
            Kind::Inner(i) => i,
            Kind::Leaf(i) => {
                // Push the lone leaf one level down, on its side.
                let side = usize::from(bit(&kv_path(&self.leaves[i]), depth));
                let mut node = Inner { pair: [0u8; 64], kids: [Ref::EMPTY; 2] };
                node.kids[side] = r;
                set_half(&mut node.pair, side, &h);
                self.new_inner(node)
            }
            Kind::Empty => self.new_inner(Inner { pair: [0u8; 64], kids: [Ref::EMPTY; 2] }),
        };
        let split = ups.partition_point(|u| !bit(&u.0, depth));
        let Inner { mut pair, mut kids } = self.inners[idx];
        for (side, part) in [(0, &ups[..split]), (1, &ups[split..])] {
            if !part.is_empty() {
                let (k, kh) = self.update(kids[side], half(&pair, side), depth + 1, part)?;
                kids[side] = k;
                set_half(&mut pair, side, &kh);
            }
        }
        // Keep the invariant: an inner node has at least two leaves below it.
        let collapsed = match (kids[0].kind(), kids[1].kind()) {
            (Kind::Empty, Kind::Empty) => Some((Ref::EMPTY, EMPTY)),
            (Kind::Leaf(_), Kind::Empty) => Some((kids[0], half(&pair, 0))),
            (Kind::Empty, Kind::Leaf(_)) => Some((kids[1], half(&pair, 1))),
            _ => None,
        };
        if let Some(c) = collapsed {
            self.free_inners.push(idx as u32);
            return Ok(c);
        }
        self.inners[idx] = Inner { pair, kids };
        Ok((Ref::inner(idx), node_hash_pair(&pair)))
    }

    /// Applies a shard's sorted, deduplicated updates.
    fn apply(&mut self, ups: &[Update]) -> Result<(), SmtError> {
        if ups.is_empty() {
            return Ok(());
        }
        let (r, h) = self.update(self.root, self.root_hash, TOP, ups)?;
        self.root = r;
        self.root_hash = h;
        Ok(())
    }

    fn summary(&self) -> Summary {
        let kind = match self.root.kind() {
            Kind::Empty => SumKind::Empty,
            Kind::Leaf(_) => SumKind::Leaf,
            Kind::Inner(_) => SumKind::Inner,
        };
        Summary { kind, hash: self.root_hash }
    }

    /// Walks `path` from the shard root, pushing siblings; returns the terminal.
    fn walk(&self, path: &Digest, siblings: &mut Vec<Digest>) -> Option<&[u8; 64]> {
        let mut r = self.root;
        let mut depth = TOP;
        loop {
            match r.kind() {
                Kind::Empty => return None,
                Kind::Leaf(i) => return Some(&self.leaves[i]),
                Kind::Inner(i) => {
                    let node = &self.inners[i];
                    let side = usize::from(bit(path, depth));
                    siblings.push(half(&node.pair, 1 - side));
                    r = node.kids[side];
                    depth += 1;
                }
            }
        }
    }

    fn get(&self, path: &Digest) -> Lookup {
        let mut r = self.root;
        let mut depth = TOP;
        loop {
            match r.kind() {
                Kind::Empty => return Lookup::Absent,
                Kind::Leaf(i) => {
                    let kv = &self.leaves[i];
                    return if kv[..32] == path.0 { Lookup::Present(half(kv, 1)) } else { Lookup::Absent };
                }
                Kind::Inner(i) => {
                    r = self.inners[i].kids[usize::from(bit(path, depth))];
                    depth += 1;
                }
            }
        }
    }

    fn prune(&self, r: Ref, h: &Digest, depth: usize, paths: &[Digest], out: &mut Vec<ProofNode>) {
        match r.kind() {
            Kind::Empty => out.push(ProofNode::Empty),
            Kind::Leaf(i) => {
                let kv = &self.leaves[i];
                out.push(ProofNode::Leaf { path: kv_path(kv), value_hash: half(kv, 1) });
            }
            Kind::Inner(_) if paths.is_empty() => out.push(ProofNode::Opaque(*h)),
            Kind::Inner(i) => {
                out.push(ProofNode::Inner);
                let node = &self.inners[i];
                let split = paths.partition_point(|p| !bit(p, depth));
                self.prune(node.kids[0], &half(&node.pair, 0), depth + 1, &paths[..split], out);
                self.prune(node.kids[1], &half(&node.pair, 1), depth + 1, &paths[split..], out);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum SumKind {
    #[default]
    Empty,
    Leaf,
    Inner,
}

/// A subtree above the shards, as far as its parent needs to know: empty, one leaf
/// (which then *is* the subtree, wherever it sits below), or an inner node.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    kind: SumKind,
    hash: Digest,
}

fn combine(l: &Summary, r: &Summary) -> Summary {
    match (l.kind, r.kind) {
        (SumKind::Empty, SumKind::Empty) => Summary::default(),
        (SumKind::Leaf, SumKind::Empty) => *l,
        (SumKind::Empty, SumKind::Leaf) => *r,
        _ => {
            let mut pair = [0u8; 64];
            set_half(&mut pair, 0, &l.hash);
            set_half(&mut pair, 1, &r.hash);
            Summary { kind: SumKind::Inner, hash: node_hash_pair(&pair) }
        }
    }
}

/// The full state's sparse Merkle tree. See the module documentation.
#[derive(Clone, Debug)]
pub struct StateTree {
    shards: Vec<Shard>,
    /// Summaries of the nodes above the shards, heap-ordered: depth `d`, prefix `p` at
    /// `2^d - 1 + p`.
    top: Vec<Summary>,
}

impl Default for StateTree {
    fn default() -> Self {
        Self::new()
    }
}

impl StateTree {
    /// An empty tree.
    pub fn new() -> Self {
        StateTree { shards: vec![Shard::default(); SHARDS], top: vec![Summary::default(); SHARDS - 1] }
    }

    /// The root hash ([`EMPTY`] for the empty tree).
    pub fn root(&self) -> Digest {
        self.top[0].hash
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }

    /// True for the empty tree.
    pub fn is_empty(&self) -> bool {
        self.top[0].kind == SumKind::Empty
    }

    #[inline]
    fn summary(&self, depth: usize, prefix: usize) -> Summary {
        if depth == TOP { self.shards[prefix].summary() } else { self.top[(1 << depth) - 1 + prefix] }
    }

    /// Applies a batch of updates. `updates` is sorted by path and deduplicated here
    /// (the last update of a path wins). With `parallel`, shards are updated on the rayon
    /// pool; the result is identical either way. A full tree only fails on two distinct
    /// paths equal in all 256 bits, which blake3 makes impossible in practice; on error
    /// the tree is left partly updated and must be discarded.
    pub fn apply(&mut self, updates: &mut [Update], parallel: bool) -> Result<Digest, SmtError> {
        if updates.is_empty() {
            return Ok(self.root());
        }
        // Stable counting sort by shard (the first path byte).
        let mut starts = [0usize; SHARDS + 1];
        for u in updates.iter() {
            starts[usize::from(u.0.0[0]) + 1] += 1;
        }
        for k in 0..SHARDS {
            starts[k + 1] += starts[k];
        }
        let mut fill = starts;
        let mut sorted: Vec<Update> = vec![(EMPTY, None); updates.len()];
        for u in updates.iter() {
            let k = usize::from(u.0.0[0]);
            sorted[fill[k]] = *u;
            fill[k] += 1;
        }
        let mut buckets: Vec<&mut [Update]> = Vec::with_capacity(SHARDS);
        let mut rest: &mut [Update] = &mut sorted;
        for k in 0..SHARDS {
            let (b, r) = rest.split_at_mut(starts[k + 1] - starts[k]);
            buckets.push(b);
            rest = r;
        }
        let work = |(shard, ups): (&mut Shard, &mut [Update])| -> Result<bool, SmtError> {
            if ups.is_empty() {
                return Ok(false);
            }
            let n = sort_dedup(ups);
            shard.apply(&ups[..n])?;
            Ok(true)
        };
        let dirty: Vec<bool> = if parallel {
            self.shards.par_iter_mut().zip(buckets.into_par_iter()).map(work).collect::<Result<_, _>>()?
        } else {
            self.shards.iter_mut().zip(buckets).map(work).collect::<Result<_, _>>()?
        };
        self.rehash_top(&dirty);
        Ok(self.root())
    }

    /// Recomputes the summaries above the shards that changed.
    fn rehash_top(&mut self, dirty_shards: &[bool]) {
        let mut dirty: Vec<bool> = dirty_shards.to_vec();
        for depth in (0..TOP).rev() {
            let width = 1usize << depth;
            let mut up = vec![false; width];
            for (p, u) in up.iter_mut().enumerate() {
                if dirty[2 * p] || dirty[2 * p + 1] {
                    let s = combine(&self.summary(depth + 1, 2 * p), &self.summary(depth + 1, 2 * p + 1));
                    self.top[width - 1 + p] = s;
                    *u = true;
                }
            }
            dirty = up;
        }
    }

    /// The single leaf of the subtree at (`depth`, `prefix`), whose summary is a leaf.
    fn lone_leaf(&self, mut depth: usize, mut prefix: usize) -> Terminal {
        while depth < TOP {
            prefix =
                if self.summary(depth + 1, 2 * prefix).kind == SumKind::Empty { 2 * prefix + 1 } else { 2 * prefix };
            depth += 1;
        }
        let shard = &self.shards[prefix];
        match shard.root.kind() {
            Kind::Leaf(i) => {
                let kv = &shard.leaves[i];
                Terminal::Leaf { path: kv_path(kv), value_hash: half(kv, 1) }
            }
            // A leaf summary always ends in a shard whose root is that leaf.
            _ => Terminal::Empty,
        }
    }

    /// Looks a path up.
    pub fn get(&self, path: &Digest) -> Lookup {
        let mut prefix = 0;
        for depth in 0..TOP {
            match self.summary(depth, prefix).kind {
                SumKind::Empty => return Lookup::Absent,
                SumKind::Leaf => {
                    return match self.lone_leaf(depth, prefix) {
                        Terminal::Leaf { path: p, value_hash } if p == *path => Lookup::Present(value_hash),
                        _ => Lookup::Absent,
                    };
                }
                SumKind::Inner => prefix = 2 * prefix + usize::from(bit(path, depth)),
            }
        }
        self.shards[prefix].get(path)
    }

    /// A proof for `path` (inclusion if present, non-inclusion otherwise).
    pub fn prove(&self, path: &Digest) -> StateProof {
        let mut siblings = Vec::with_capacity(32);
        let mut prefix = 0;
        for depth in 0..TOP {
            match self.summary(depth, prefix).kind {
                SumKind::Empty => return StateProof { siblings, terminal: Terminal::Empty },
                SumKind::Leaf => return StateProof { siblings, terminal: self.lone_leaf(depth, prefix) },
                SumKind::Inner => {
                    let side = usize::from(bit(path, depth));
                    siblings.push(self.summary(depth + 1, 2 * prefix + 1 - side).hash);
                    prefix = 2 * prefix + side;
                }
            }
        }
        let terminal = match self.shards[prefix].walk(path, &mut siblings) {
            None => Terminal::Empty,
            Some(kv) => Terminal::Leaf { path: kv_path(kv), value_hash: half(kv, 1) },
        };
        StateProof { siblings, terminal }
    }

    /// A multiproof for `paths` (sorted or not), identical to
    /// [`Smt::prune`](crate::smt::Smt::prune) on the same tree. A full tree always has
    /// the whole path, so this never fails; the `Result` keeps the two trees' signatures
    /// alike.
    pub fn prune(&self, paths: &[Digest]) -> Result<Vec<ProofNode>, SmtError> {
        let mut sorted = paths.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut out = Vec::new();
        self.prune_top(0, 0, &sorted, &mut out);
        Ok(out)
    }

    fn prune_top(&self, depth: usize, prefix: usize, paths: &[Digest], out: &mut Vec<ProofNode>) {
        if depth == TOP {
            let s = &self.shards[prefix];
            s.prune(s.root, &s.root_hash, TOP, paths, out);
            return;
        }
        let s = self.summary(depth, prefix);
        match s.kind {
            SumKind::Empty => out.push(ProofNode::Empty),
            SumKind::Leaf => match self.lone_leaf(depth, prefix) {
                Terminal::Leaf { path, value_hash } => out.push(ProofNode::Leaf { path, value_hash }),
                Terminal::Empty => out.push(ProofNode::Empty),
            },
            SumKind::Inner if paths.is_empty() => out.push(ProofNode::Opaque(s.hash)),
            SumKind::Inner => {
                out.push(ProofNode::Inner);
                let split = paths.partition_point(|p| !bit(p, depth));
                self.prune_top(depth + 1, 2 * prefix, &paths[..split], out);
                self.prune_top(depth + 1, 2 * prefix + 1, &paths[split..], out);
            }
        }
    }
}

/// Sorts updates by path, keeping the last of equal paths (stable); returns how many
/// remain at the front.
fn sort_dedup(ups: &mut [Update]) -> usize {
    ups.sort_by_key(|e| e.0);
    let mut w = 0;
    for r in 0..ups.len() {
        if w > 0 && ups[w - 1].0 == ups[r].0 {
            ups[w - 1] = ups[r];
        } else {
            ups[w] = ups[r];
            w += 1;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smt::Smt;

    fn path(i: u32) -> Digest {
        Digest(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    fn vh(v: u32) -> Digest {
        Digest(*blake3::hash(&(v ^ 0xdead_beef).to_le_bytes()).as_bytes())
    }

    /// Paths sharing long prefixes (deep chains of one-sided inner nodes), and paths
    /// in one shard only.
    fn near(i: u32, bits: usize) -> Digest {
        let mut p = Digest([0x5a; 32]);
        // Flip one bit at `bits + (i % (256 - bits))`, so paths agree on the first `bits`.
        let b = bits + (i as usize % (256 - bits));
        p.0[b / 8] ^= 0x80 >> (b % 8);
        p.0[31] ^= (i >> 8) as u8;
        p
    }

    #[test]
    fn matches_the_boxed_tree_on_random_batches() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..4 {
            let mut fast = StateTree::new();
            let mut slow = Smt::new();
            for batch in 0..12 {
                let n = [1usize, 2, 3, 40, 700][(next() % 5) as usize];
                let universe = [4u64, 50, 3000][round % 3];
                let mut ups: Vec<Update> = (0..n)
                    .map(|_| {
                        let k = (next() % universe) as u32;
                        let p = if round == 3 { near(k, 200) } else { path(k) };
                        let v = (next() % 4 != 0).then(|| vh(next() as u32));
                        (p, v)
                    })
                    .collect();
                let mut ups2 = ups.clone();
                let parallel = batch % 2 == 0;
                let a = fast.apply(&mut ups, parallel).unwrap();
                let b = slow.apply(&mut ups2, false).unwrap();
                assert_eq!(a, b, "round {round} batch {batch}");
                assert_eq!(fast.len(), slow.len());
                for k in 0..universe.min(60) as u32 {
                    let p = if round == 3 { near(k, 200) } else { path(k) };
                    assert_eq!(fast.get(&p), slow.get(&p));
                    assert_eq!(fast.prove(&p), slow.prove(&p).unwrap());
                }
                let ps: Vec<Digest> = (0..10u32).map(|k| if round == 3 { near(k, 200) } else { path(k) }).collect();
                assert_eq!(fast.prune(&ps).unwrap(), slow.prune(&ps).unwrap());
            }
        }
    }

    #[test]
    fn empty_and_single_leaf_trees() {
        let mut t = StateTree::new();
        assert_eq!(t.root(), EMPTY);
        assert!(t.is_empty());
        let mut ups = vec![(path(1), Some(vh(1)))];
        let r = t.apply(&mut ups, true).unwrap();
        assert_eq!(r, crate::smt::leaf_hash(&path(1), &vh(1)));
        assert_eq!(t.prove(&path(1)).siblings.len(), 0);
        let mut ups = vec![(path(1), None)];
        assert_eq!(t.apply(&mut ups, false).unwrap(), EMPTY);
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn slots_are_reused_after_deletes() {
        let mut t = StateTree::new();
        let mut ups: Vec<Update> = (0..5000).map(|i| (path(i), Some(vh(i)))).collect();
        t.apply(&mut ups, true).unwrap();
        let cap: usize = t.shards.iter().map(|s| s.inners.len() + s.leaves.len()).sum();
        for round in 0..5u32 {
            let mut del: Vec<Update> = (0..5000).filter(|i| i % 5 == round).map(|i| (path(i), None)).collect();
            t.apply(&mut del, round % 2 == 0).unwrap();
            let mut ins: Vec<Update> = (0..5000).filter(|i| i % 5 == round).map(|i| (path(i), Some(vh(i)))).collect();
            t.apply(&mut ins, true).unwrap();
        }
        let after: usize = t.shards.iter().map(|s| s.inners.len() + s.leaves.len()).sum();
        assert!(after <= cap + cap / 10, "arenas grew from {cap} to {after}");
        assert_eq!(t.len(), 5000);
    }
}
