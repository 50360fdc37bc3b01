//! Proofs against the data root: one cell (a sample), a contiguous range of an axis
//! (what a DA node serves from a column), and a namespace's complete data.
//!
//! Every proof that stands alone carries the [`SquareRoots`] (k, codec, rows root,
//! columns root, table root: 105 bytes) so a verifier needs only the data root.

use lamina_primitives::codec::Wire;
use lamina_primitives::{Digest, Namespace};

use crate::error::{Error, Result, malformed};
use crate::square::{CommittedSquare, DaHeader, SquareRoots};
use crate::table::TableProof;
use crate::tree::{Axis, CHUNK, bao_prove, bao_root, roots_prove, roots_verify_root};
use crate::{MAX_SQUARE_WIDTH, SHARE_SIZE};

/// Cells per blake3 chunk.
const CELLS_PER_CHUNK: usize = CHUNK / SHARE_SIZE;

/// Chunk range `[a, b)` covering cells `[ca, cb)` of an axis.
fn chunk_cover(ca: u64, cb: u64) -> (u64, u64) {
    (ca / CELLS_PER_CHUNK as u64, cb.div_ceil(CELLS_PER_CHUNK as u64))
}

/// A sampled cell with its proof against the data root.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SampleProof {
    /// What the data root is made of.
    pub roots: SquareRoots,
    /// Axis the proof goes through (0 row, 1 column).
    pub axis: u8,
    /// Index of that axis (the row for a row proof, the column for a column proof).
    pub axis_index: u32,
    /// Position of the cell along the axis.
    pub position: u32,
    /// The 1 KiB chunk holding the cell (two neighbouring cells along the axis).
    pub chunk: Vec<u8>,
    /// Chaining values of the subtrees next to the chunk (axis tree).
    pub nodes: Vec<[u8; 32]>,
    /// Path of the axis root in the rows or columns root tree.
    pub axis_path: Vec<Digest>,
}

impl SampleProof {
    /// Builds a proof for the cell at `position` of axis `axis_index`, from the axis
    /// bytes and all `2k` roots of that axis. A DA node uses this with one column it
    /// stores.
    pub fn from_axis(
        roots: SquareRoots,
        axis: Axis,
        axis_index: u32,
        axis_bytes: &[u8],
        axis_roots: &[Digest],
        position: u32,
    ) -> Result<Self> {
        let w = 2 * roots.k as usize;
        if axis_bytes.len() != w * SHARE_SIZE || axis_roots.len() != w || axis_index as usize >= w {
            return Err(malformed("sample request", "axis shape does not match k"));
        }
        if position as usize >= w {
            return Err(malformed("sample request", format!("position {position} outside width {w}")));
        }
        let j = position as u64 / CELLS_PER_CHUNK as u64;
        let nodes = bao_prove(axis, axis_bytes, j, j + 1)?;
        let chunk = axis_bytes[j as usize * CHUNK..(j as usize + 1) * CHUNK].to_vec();
        let axis_path = roots_prove(axis_roots, axis_index as u64, axis_index as u64 + 1)?;
        Ok(SampleProof { roots, axis: axis.as_u8(), axis_index, position, chunk, nodes, axis_path })
    }

    /// The cell's `(row, column)`.
    pub fn coordinates(&self) -> (u32, u32) {
        if self.axis == Axis::Row.as_u8() { (self.axis_index, self.position) } else { (self.position, self.axis_index) }
    }

    /// Verifies against `data_root` and returns the cell.
    pub fn verify(&self, data_root: &Digest) -> Result<&[u8]> {
        self.roots.check(data_root)?;
        self.verify_with_roots(&self.roots.clone())
    }

    /// Verifies against already-checked `roots` (cheaper when a light client checks many
    /// samples of one square) and returns the cell.
    pub fn verify_with_roots(&self, roots: &SquareRoots) -> Result<&[u8]> {
        if &self.roots != roots {
            return Err(Error::HeaderMismatch { expected: roots.data_root() });
        }
        let axis = Axis::from_u8(self.axis)?;
        let k = roots.k as u64;
        if k == 0 || k > MAX_SQUARE_WIDTH as u64 {
            return Err(malformed("sample", "bad width"));
        }
        let w = 2 * k;
        if self.axis_index as u64 >= w || self.position as u64 >= w || self.chunk.len() != CHUNK {
            return Err(malformed("sample", "indices or chunk length out of range"));
        }
        let j = self.position as u64 / CELLS_PER_CHUNK as u64;
        let axis_root = bao_root(axis, k, j, &self.chunk, &self.nodes)?;
        let tree_root = roots_verify_root(w, self.axis_index as u64, &[axis_root], &self.axis_path)?;
        let want = match axis {
            Axis::Row => roots.rows_root,
            Axis::Col => roots.cols_root,
        };
        if tree_root != want {
            return Err(Error::ProofMismatch { what: "sample" });
        }
        let at = (self.position as usize % CELLS_PER_CHUNK) * SHARE_SIZE;
        Ok(&self.chunk[at..at + SHARE_SIZE])
    }
}

/// A contiguous range of cells of one axis with its proof against that axis's root
/// (the caller holds the verified [`DaHeader`]). DA nodes answer column-range requests
/// with these.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AxisRangeProof {
    /// First chunk of the range.
    pub first_chunk: u32,
    /// Whole chunks covering the requested cells.
    pub chunks: Vec<u8>,
    /// Subtrees next to the range.
    pub nodes: Vec<[u8; 32]>,
}

impl AxisRangeProof {
    /// Proves cells `[ca, cb)` of an axis whose bytes are `axis_bytes`.
    pub fn prove(axis: Axis, axis_bytes: &[u8], ca: u32, cb: u32) -> Result<Self> {
        let w = axis_bytes.len() / SHARE_SIZE;
        if ca >= cb || cb as usize > w || !axis_bytes.len().is_multiple_of(CHUNK) {
            return Err(malformed("range request", format!("cells [{ca}, {cb}) of {w}")));
        }
        let (a, b) = chunk_cover(ca as u64, cb as u64);
        let nodes = bao_prove(axis, axis_bytes, a, b)?;
        Ok(AxisRangeProof {
            first_chunk: a as u32,
            chunks: axis_bytes[a as usize * CHUNK..b as usize * CHUNK].to_vec(),
            nodes,
        })
    }

    /// Verifies that this proves cells `[ca, cb)` of an axis with root `root` in a
    /// square of width `k`, and returns those cells' bytes.
    pub fn verify(&self, axis: Axis, k: u32, root: &Digest, ca: u32, cb: u32) -> Result<&[u8]> {
        let w = 2 * k as u64;
        if ca >= cb || cb as u64 > w {
            return Err(malformed("range proof", format!("cells [{ca}, {cb}) of {w}")));
        }
        let (a, b) = chunk_cover(ca as u64, cb as u64);
        if self.first_chunk as u64 != a || self.chunks.len() as u64 != (b - a) * CHUNK as u64 {
            return Err(malformed("range proof", "chunk range does not cover the requested cells"));
        }
        if &bao_root(axis, k as u64, a, &self.chunks, &self.nodes)? != root {
            return Err(Error::ProofMismatch { what: "axis range" });
        }
        let off = (ca as usize - a as usize * CELLS_PER_CHUNK) * SHARE_SIZE;
        Ok(&self.chunks[off..off + (cb - ca) as usize * SHARE_SIZE])
    }
}

/// One row's part of a namespace proof: the chunks covering the namespace's cells in
/// that row and the row-tree nodes around them.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RowSegment {
    /// First chunk.
    pub first_chunk: u32,
    /// The chunks.
    pub chunks: Vec<u8>,
    /// Row-tree nodes.
    pub nodes: Vec<[u8; 32]>,
}

/// Proof of a namespace's complete data (or its absence) in a square.
///
/// The table part proves exactly which blobs the namespace has (all of them, or none);
/// the rows part proves their shares' bytes against the row roots. Together: a chain
/// gets exactly its shares and can check none were omitted.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NamespaceProof {
    /// What the data root is made of.
    pub roots: SquareRoots,
    /// The namespace's table entries and their completeness proof.
    pub table: TableProof,
    /// First original row holding the namespace's shares.
    pub first_row: u32,
    /// Roots of rows `first_row ..= last row`.
    pub row_roots: Vec<Digest>,
    /// Rows-root-tree nodes around those rows.
    pub row_nodes: Vec<Digest>,
    /// One segment per row.
    pub segments: Vec<RowSegment>,
}

/// Cells `[ca, cb)` of original row `r` that the share range `[s, e)` covers.
fn row_cells(k: u64, s: u64, e: u64, r: u64) -> (u64, u64) {
    let ca = if r == s / k { s % k } else { 0 };
    let cb = if r == (e - 1) / k { (e - 1) % k + 1 } else { k };
    (ca, cb)
}

impl NamespaceProof {
    /// Builds the proof from a committed square.
    pub fn build(square: &CommittedSquare, namespace: Namespace) -> Result<Self> {
        let header = square.header();
        let table = header.table.prove(namespace)?;
        let roots = *square.roots();
        if table.entries.is_empty() {
            return Ok(NamespaceProof {
                roots,
                table,
                first_row: 0,
                row_roots: vec![],
                row_nodes: vec![],
                segments: vec![],
            });
        }
        let k = header.k as u64;
        let s = table.entries[0].start as u64;
        let e = table.entries[table.entries.len() - 1].end();
        let (r0, r1) = (s / k, (e - 1) / k);
        let row_roots = header.row_roots[r0 as usize..=r1 as usize].to_vec();
        let row_nodes = roots_prove(&header.row_roots, r0, r1 + 1)?;
        let mut segments = Vec::with_capacity((r1 - r0 + 1) as usize);
        for r in r0..=r1 {
            let (ca, cb) = row_cells(k, s, e, r);
            let p = AxisRangeProof::prove(Axis::Row, square.eds().row(r as usize), ca as u32, cb as u32)?;
            segments.push(RowSegment { first_chunk: p.first_chunk, chunks: p.chunks, nodes: p.nodes });
        }
        Ok(NamespaceProof { roots, table, first_row: r0 as u32, row_roots, row_nodes, segments })
    }

    /// Verifies against `data_root` and returns the namespace's blobs in square order
    /// (empty: proven absent).
    pub fn verify(&self, data_root: &Digest, namespace: Namespace) -> Result<Vec<Vec<u8>>> {
        self.roots.check(data_root)?;
        let entries = self.table.verify(&self.roots.table_root, namespace)?;
        let bad = |reason| Error::BadNamespaceProof { namespace, reason };
        if entries.is_empty() {
            if !self.row_roots.is_empty() || !self.segments.is_empty() || !self.row_nodes.is_empty() {
                return Err(bad("absence proof carries rows"));
            }
            return Ok(vec![]);
        }
        let k = self.roots.k as u64;
        let s = entries[0].start as u64;
        let e = entries[entries.len() - 1].end();
        if e > k * k {
            return Err(bad("entries outside the square"));
        }
        let (r0, r1) = (s / k, (e - 1) / k);
        let nrows = (r1 - r0 + 1) as usize;
        if self.first_row as u64 != r0 || self.row_roots.len() != nrows || self.segments.len() != nrows {
            return Err(bad("rows do not match the entries"));
        }
        if roots_verify_root(2 * k, r0, &self.row_roots, &self.row_nodes)? != self.roots.rows_root {
            return Err(Error::ProofMismatch { what: "namespace rows" });
        }
        let mut data = Vec::with_capacity(((e - s) as usize) * SHARE_SIZE);
        for (i, seg) in self.segments.iter().enumerate() {
            let r = r0 + i as u64;
            let (ca, cb) = row_cells(k, s, e, r);
            let p =
                AxisRangeProof { first_chunk: seg.first_chunk, chunks: seg.chunks.clone(), nodes: seg.nodes.clone() };
            data.extend_from_slice(p.verify(Axis::Row, k as u32, &self.row_roots[i], ca as u32, cb as u32)?);
        }
        Ok(entries
            .iter()
            .map(|en| {
                let at = (en.start as u64 - s) as usize * SHARE_SIZE;
                data[at..at + en.len as usize].to_vec()
            })
            .collect())
    }
}

impl CommittedSquare {
    /// A sample proof for cell `(r, c)` through `axis`.
    pub fn sample_proof(&self, r: u32, c: u32, axis: Axis) -> Result<SampleProof> {
        let h = self.header();
        match axis {
            Axis::Row => {
                let row = self.eds().row(r as usize);
                SampleProof::from_axis(*self.roots(), Axis::Row, r, row, &h.row_roots, c)
            }
            Axis::Col => {
                let col = self.eds().column(c as usize);
                SampleProof::from_axis(*self.roots(), Axis::Col, c, &col, &h.col_roots, r)
            }
        }
    }

    /// The complete-namespace proof for `namespace`.
    pub fn namespace_proof(&self, namespace: Namespace) -> Result<NamespaceProof> {
        NamespaceProof::build(self, namespace)
    }
}

/// Columns a namespace's shares touch and the rows they span: a retrieval client asks
/// each DA node for rows `rows` of the columns it holds.
pub fn namespace_rows(header: &DaHeader, namespace: Namespace) -> Option<(u32, u32)> {
    let (a, b) = header.table.entry_range(namespace);
    if a == b {
        return None;
    }
    let k = header.k as u64;
    let s = header.table.entries[a].start as u64;
    let e = header.table.entries[b - 1].end();
    Some(((s / k) as u32, ((e - 1) / k + 1) as u32))
}

impl Wire for SampleProof {
    const NAME: &'static str = "SampleProof";
    const MAX_SIZE: usize = 4096;
}

impl Wire for AxisRangeProof {
    const NAME: &'static str = "AxisRangeProof";
    const MAX_SIZE: usize = MAX_SQUARE_WIDTH * SHARE_SIZE * 2 + 64 * 32 + 256;
}

impl Wire for NamespaceProof {
    const NAME: &'static str = "NamespaceProof";
    // Up to the whole original square, plus per-row overhead and the table proof.
    const MAX_SIZE: usize = MAX_SQUARE_WIDTH * MAX_SQUARE_WIDTH * SHARE_SIZE + (16 << 20);
}

impl Wire for DaHeader {
    const NAME: &'static str = "DaHeader";
    const MAX_SIZE: usize = 4 * MAX_SQUARE_WIDTH * 32 + crate::MAX_BLOBS * 16 + 256;
}

#[cfg(test)]
mod tests {
    use lamina_interfaces::Blob;
    use lamina_primitives::codec;

    use super::*;
    use crate::codec::CodecId;
    use crate::square::Parallelism;

    fn square() -> CommittedSquare {
        let blobs = vec![
            Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 2]), data: vec![2; 5000] },
            Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 4]), data: (0..20_000).map(|i| i as u8).collect() },
            Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 4]), data: vec![9; 700] },
            Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 7]), data: vec![7; 1] },
        ];
        CommittedSquare::build(&blobs, CodecId::Leopard16, Parallelism::Sequential).unwrap()
    }

    #[test]
    fn every_sample_proof_verifies_through_both_axes() {
        let sq = square();
        let root = sq.data_root();
        let w = sq.eds().width() as u32;
        for r in 0..w {
            for c in 0..w {
                for axis in [Axis::Row, Axis::Col] {
                    let p = sq.sample_proof(r, c, axis).unwrap();
                    assert_eq!(p.verify(&root).unwrap(), sq.eds().cell(r as usize, c as usize));
                    assert_eq!(p.coordinates(), (r, c));
                }
            }
        }
    }

    #[test]
    fn tampered_sample_proofs_fail() {
        let sq = square();
        let root = sq.data_root();
        let p = sq.sample_proof(3, 5, Axis::Col).unwrap();
        let bytes = codec::encode(&p).unwrap();
        assert_eq!(codec::decode::<SampleProof>(&bytes).unwrap(), p);
        let mut q = p.clone();
        q.chunk[600] ^= 1;
        assert!(q.verify(&root).is_err());
        let mut q = p.clone();
        q.position ^= 2;
        assert!(q.verify(&root).is_err());
        let mut q = p.clone();
        q.axis_index += 1;
        assert!(q.verify(&root).is_err());
        let mut q = p.clone();
        q.axis = 0;
        assert!(q.verify(&root).is_err());
        let mut q = p.clone();
        q.nodes[0][5] ^= 1;
        assert!(q.verify(&root).is_err());
        let mut q = p.clone();
        q.axis_path.pop();
        assert!(q.verify(&root).is_err());
        let mut q = p.clone();
        q.roots.table_root.0[0] ^= 1;
        assert!(matches!(q.verify(&root), Err(Error::HeaderMismatch { .. })));
        let mut q = p;
        q.chunk.push(0);
        assert!(q.verify(&root).is_err());
    }

    #[test]
    fn namespace_proofs_return_exactly_the_blobs_and_prove_absence() {
        let sq = square();
        let root = sq.data_root();
        for n in 0..10u8 {
            let ns = Namespace([0, 0, 0, 0, 0, 0, 0, n]);
            let p = sq.namespace_proof(ns).unwrap();
            let bytes = codec::encode(&p).unwrap();
            let p: NamespaceProof = codec::decode(&bytes).unwrap();
            assert_eq!(p.verify(&root, ns).unwrap(), sq.blobs(ns), "ns {n}");
            // A proof for one namespace never verifies for another.
            if !p.table.entries.is_empty() {
                assert!(p.verify(&root, Namespace([0, 0, 0, 0, 0, 0, 0, n + 1])).is_err());
                let mut q = p.clone();
                let last = q.segments.len() - 1;
                q.segments[last].chunks[3] ^= 1;
                assert!(q.verify(&root, ns).is_err());
                // Omitting a blob is caught.
                let mut q = p.clone();
                q.table.entries.pop();
                assert!(q.verify(&root, ns).is_err());
                let mut q = p.clone();
                q.row_roots[0].0[0] ^= 1;
                assert!(q.verify(&root, ns).is_err());
            }
        }
        assert_eq!(sq.blobs(Namespace([0, 0, 0, 0, 0, 0, 0, 4])).len(), 2);
    }

    #[test]
    fn axis_range_proofs() {
        let sq = square();
        let k = sq.eds().k() as u32;
        let col = sq.eds().column(3);
        for ca in 0..2 * k {
            for cb in ca + 1..=2 * k {
                let p = AxisRangeProof::prove(Axis::Col, &col, ca, cb).unwrap();
                let got = p.verify(Axis::Col, k, &sq.header().col_roots[3], ca, cb).unwrap();
                assert_eq!(got, &col[ca as usize * SHARE_SIZE..cb as usize * SHARE_SIZE]);
                assert!(p.verify(Axis::Col, k, &sq.header().col_roots[4], ca, cb).is_err());
            }
        }
    }
}
