//! Which DA node stores which columns: deterministic from the committee size, the
//! certificate threshold and the square width.
//!
//! Column `c` of a `2k`-column square is stored by the `r` nodes
//! `(c mod n), (c mod n) - 1, ..., (c mod n) - r + 1` (mod `n`), i.e. node `i` holds the
//! columns whose residue mod `n` is in `i, i+1, ..., i+r-1`. The replication `r` is the
//! smallest that makes **any `m = threshold - f` nodes** (the honest signers of a
//! certificate when `f` of them lie; `f = ⌊(n-1)/3⌋`) hold at least `k` distinct
//! columns, enough to rebuild the square:
//!
//! * `m` nodes cover at least `min(n, m + r - 1)` residues (the minimum is reached by
//!   consecutive nodes), and every residue has at least `q = ⌊2k / n⌋` columns, so they
//!   hold at least `min(n, m + r - 1) * q` columns; when `m + r - 1 >= n` they hold all
//!   `2k`.
//!
//! Examples: n = 4, threshold 3 (f = 1, m = 2), k = 128: r = 1, each node stores 64 of
//! the 256 columns and any 2 nodes hold 128. n = 7, threshold 5 (m = 3), k = 128: r = 2
//! (each node stores ~73 columns). Tiny squares with fewer columns than nodes get full
//! coverage replication. The same rule also bounds retrieval: with every honest node
//! up, as long as at least `m` of them answer, the data can be rebuilt.

/// The column assignment of one square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Committee size `n`.
    pub nodes: usize,
    /// Width `k` of the original square (`2k` columns).
    pub k: usize,
    /// Nodes per column.
    pub replication: usize,
}

impl Assignment {
    /// The assignment for `nodes` DA nodes, a certificate `threshold` and width `k`.
    pub fn new(nodes: usize, threshold: usize, k: usize) -> Self {
        let n = nodes.max(1);
        let f = (n - 1) / 3;
        let m = threshold.saturating_sub(f).clamp(1, n);
        let mut r = 1;
        while r < n && guaranteed(n, k, m, r) < k {
            r += 1;
        }
        Assignment { nodes: n, k, replication: r }
    }

    /// Columns stored by node `node` (increasing).
    pub fn columns_of(&self, node: usize) -> Vec<u32> {
        (0..2 * self.k as u32).filter(|&c| self.holds(node, c)).collect()
    }

    /// True if `node` stores column `c` (false for a column outside the `2k` of the
    /// square).
    pub fn holds(&self, node: usize, c: u32) -> bool {
        if c as usize >= 2 * self.k {
            return false;
        }
        let residue = c as usize % self.nodes;
        (residue + self.nodes - node % self.nodes) % self.nodes < self.replication
    }

    /// Nodes storing column `c`, primary first.
    pub fn nodes_of(&self, c: u32) -> Vec<usize> {
        let residue = c as usize % self.nodes;
        (0..self.replication).map(|j| (residue + self.nodes - j) % self.nodes).collect()
    }

    /// Distinct columns any `m` nodes are guaranteed to hold.
    pub fn guaranteed_columns(&self, m: usize) -> usize {
        guaranteed(self.nodes, self.k, m, self.replication)
    }
}

fn guaranteed(n: usize, k: usize, m: usize, r: usize) -> usize {
    if m == 0 {
        return 0;
    }
    let covered = (m + r - 1).min(n);
    if covered == n { 2 * k } else { covered * (2 * k / n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_outside_the_square_are_nobodys() {
        let a = Assignment::new(4, 3, 8);
        for node in 0..4 {
            for c in [16u32, 17, 31, 1000, u32::MAX] {
                assert!(!a.holds(node, c), "node {node} holds column {c}");
            }
        }
        assert!(a.nodes_of(3).iter().all(|&n| a.holds(n, 3)));
    }

    /// Exhaustive check for small committees: every subset of `m` nodes holds at least
    /// the guaranteed number of distinct columns, which is at least `k`.
    #[test]
    fn every_set_of_honest_signers_can_rebuild() {
        for n in 1..=9usize {
            let f = (n - 1) / 3;
            for threshold in (f + 1)..=n {
                for k in [1usize, 2, 3, 4, 5, 7, 8, 10, 16, 21, 64] {
                    let a = Assignment::new(n, threshold, k);
                    let m = threshold - f;
                    assert!(a.guaranteed_columns(m) >= k, "n={n} t={threshold} k={k}");
                    for subset in 0u32..(1 << n) {
                        if subset.count_ones() as usize != m {
                            continue;
                        }
                        let mut held = vec![false; 2 * k];
                        for node in (0..n).filter(|i| subset & (1 << i) != 0) {
                            for c in a.columns_of(node) {
                                held[c as usize] = true;
                            }
                        }
                        let have = held.iter().filter(|h| **h).count();
                        assert!(have >= a.guaranteed_columns(m), "n={n} t={threshold} k={k} subset={subset:b}");
                    }
                    // nodes_of and holds agree, and every column is stored somewhere.
                    for c in 0..2 * k as u32 {
                        let owners = a.nodes_of(c);
                        assert_eq!(owners.len(), a.replication);
                        assert!(owners.iter().all(|&o| a.holds(o, c)));
                        assert_eq!((0..n).filter(|&o| a.holds(o, c)).count(), a.replication.min(n));
                    }
                }
            }
        }
    }

    #[test]
    fn documented_examples() {
        assert_eq!(Assignment::new(4, 3, 128).replication, 1);
        assert_eq!(Assignment::new(4, 3, 128).columns_of(0).len(), 64);
        assert_eq!(Assignment::new(7, 5, 128).replication, 2);
    }
}
