//! Bad-encoding fraud proofs.
//!
//! A square is correctly encoded when every row and every column is a codeword of the
//! committed codec *and* the row and column roots commit to the same cells. When row
//! `i` is not (its committed root is not the root of the codeword through its cells),
//! anyone holding `k` of its cells with their proofs against the **column** roots can
//! show it: decode the row from those `k` cells, hash it, and observe that the root
//! differs from the committed row root. Symmetrically for a column, with proofs against
//! the row roots.
//!
//! A [`BadEncodingProof`] carries: the square's roots, the claimed-bad axis root with
//! its path in its root tree, all `2k` roots of the orthogonal axis (checked against
//! their root tree; 8 KiB at k = 128), and exactly `k` cells, each in its 1 KiB chunk
//! with the chunk's path in its orthogonal axis tree. It is checked without any other
//! part of the square, in `O(k)` hashing plus one decode. About `k * 1.3 KiB`
//! (≈ 170 KiB at k = 128).
//!
//! Soundness: for a correctly encoded square, the cells proven against column roots
//! are the cells of row `i`, which is a codeword; decoding any `k` of them yields that
//! codeword, whose root is the committed row root — so [`BadEncodingProof::verify`]
//! returns [`Error::NotFraud`]. Settlement consumes these proofs later.
//!
//! **The canonical rule.** A proof must use exactly the *first* `k` cells of the axis
//! (the systematic part: positions `0..k`). A disperser can commit column roots whose
//! cells disagree with the row roots at some positions while every column is still a
//! codeword; then whether `k` cells "prove" a row bad depends on which `k` were fetched,
//! and two honest executors could disagree. Fixing the positions makes the verdict a
//! function of the commitment alone: row `i` is bad iff its first `k` cells, as the
//! column roots commit them, do not extend to the committed row root. Retrieval
//! (`lamina-da-service`) decides by the same rule, so an executor, a settlement verifier
//! and this check always agree.

use lamina_primitives::Digest;
use lamina_primitives::codec::Wire;

use crate::SHARE_SIZE;
use crate::codec::CodecId;
use crate::error::{Error, Result, malformed};
use crate::proof::SampleProof;
use crate::square::{CommittedSquare, DaHeader, ExtendedSquare, SquareRoots, encode_axis};
use crate::tree::{Axis, CHUNK, axis_root, bao_prove, bao_root, roots_prove, roots_root, roots_verify_root};

/// One cell of the bad axis, proven against its orthogonal axis root.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FraudCell {
    /// Position of the cell along the bad axis (= index of its orthogonal axis).
    pub position: u32,
    /// The 1 KiB chunk of the orthogonal axis holding the cell.
    pub chunk: Vec<u8>,
    /// The chunk's path in the orthogonal axis tree.
    pub nodes: Vec<[u8; 32]>,
}

/// Proof that one row or column of a committed square is not correctly encoded.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BadEncodingProof {
    /// What the data root is made of.
    pub roots: SquareRoots,
    /// The bad axis (0 row, 1 column).
    pub axis: u8,
    /// Its index.
    pub index: u32,
    /// Its committed root.
    pub axis_root: Digest,
    /// Path of that root in its root tree.
    pub axis_path: Vec<Digest>,
    /// All `2k` roots of the orthogonal axis.
    pub orthogonal_roots: Vec<Digest>,
    /// Exactly `k` cells of the bad axis at distinct positions.
    pub cells: Vec<FraudCell>,
}

impl Wire for BadEncodingProof {
    const NAME: &'static str = "BadEncodingProof";
    const MAX_SIZE: usize = crate::MAX_SQUARE_WIDTH * (CHUNK + 32 * 16 + 64) + 4 * crate::MAX_SQUARE_WIDTH * 32 + 4096;
}

impl BadEncodingProof {
    /// Checks the proof against `data_root`. `Ok(())` means the square committed by
    /// `data_root` is wrongly encoded; [`Error::NotFraud`] means the axis decodes to its
    /// committed root (the proof is false); other errors mean the proof is malformed.
    pub fn verify(&self, data_root: &Digest) -> Result<()> {
        let codec = self.roots.check(data_root)?;
        let axis = Axis::from_u8(self.axis)?;
        let orth = axis.orthogonal();
        let k = self.roots.k as usize;
        let w = 2 * k;
        if self.index as usize >= w {
            return Err(malformed("fraud proof", "axis index out of range"));
        }
        let (own_tree, orth_tree) = match axis {
            Axis::Row => (self.roots.rows_root, self.roots.cols_root),
            Axis::Col => (self.roots.cols_root, self.roots.rows_root),
        };
        if roots_verify_root(w as u64, self.index as u64, &[self.axis_root], &self.axis_path)? != own_tree {
            return Err(Error::ProofMismatch { what: "fraud proof axis root" });
        }
        if self.orthogonal_roots.len() != w || roots_root(&self.orthogonal_roots) != orth_tree {
            return Err(Error::ProofMismatch { what: "fraud proof orthogonal roots" });
        }
        if self.cells.len() != k {
            return Err(malformed("fraud proof", format!("{} cells, {k} required", self.cells.len())));
        }
        let mut axis_bytes = vec![0u8; w * SHARE_SIZE];
        let mut known = vec![false; w];
        let j = self.index as u64 / 2;
        let at = (self.index as usize % 2) * SHARE_SIZE;
        for cell in &self.cells {
            let p = cell.position as usize;
            if p >= w || known[p] {
                return Err(malformed("fraud proof", "cell positions out of range or repeated"));
            }
            if cell.chunk.len() != CHUNK
                || bao_root(orth, k as u64, j, &cell.chunk, &cell.nodes)? != self.orthogonal_roots[p]
            {
                return Err(Error::ProofMismatch { what: "fraud proof cell" });
            }
            axis_bytes[p * SHARE_SIZE..(p + 1) * SHARE_SIZE].copy_from_slice(&cell.chunk[at..at + SHARE_SIZE]);
            known[p] = true;
        }
        if !known[..k].iter().all(|&b| b) {
            return Err(malformed("fraud proof", "cells must be the first k of the axis (the canonical rule)"));
        }
        let mut shards: Vec<&mut [u8]> = axis_bytes.chunks_exact_mut(SHARE_SIZE).collect();
        codec.codec().reconstruct(&mut shards, &known, k)?;
        if axis_root(axis, &axis_bytes) == self.axis_root {
            return Err(Error::NotFraud { axis: axis.name(), index: self.index });
        }
        Ok(())
    }

    /// Builds a proof that axis `index` is badly encoded, using the cells at
    /// `positions` (exactly `k` of them) from `square`'s orthogonal axes. The proof
    /// verifies only if the axis really is bad and `positions` are `0..k` (the canonical
    /// rule); use [`find_bad_encoding`] to look.
    pub fn create(square: &CommittedSquare, axis: Axis, index: u32, positions: &[u32]) -> Result<Self> {
        let h = square.header();
        let (own_roots, orth_roots) = match axis {
            Axis::Row => (&h.row_roots, &h.col_roots),
            Axis::Col => (&h.col_roots, &h.row_roots),
        };
        let w = own_roots.len() as u32;
        if index >= w || positions.iter().any(|&p| p >= w) {
            return Err(malformed("fraud proof request", "index out of range"));
        }
        let j = index as u64 / 2;
        let mut cells = Vec::with_capacity(positions.len());
        for &p in positions {
            let orth_bytes = match axis {
                Axis::Row => square.eds().column(p as usize),
                Axis::Col => square.eds().row(p as usize).to_vec(),
            };
            let nodes = bao_prove(axis.orthogonal(), &orth_bytes, j, j + 1)?;
            let chunk = orth_bytes[j as usize * CHUNK..(j as usize + 1) * CHUNK].to_vec();
            cells.push(FraudCell { position: p, chunk, nodes });
        }
        Ok(BadEncodingProof {
            roots: *square.roots(),
            axis: axis.as_u8(),
            index,
            axis_root: own_roots[index as usize],
            axis_path: roots_prove(own_roots, index as u64, index as u64 + 1)?,
            orthogonal_roots: orth_roots.clone(),
            cells,
        })
    }
}

impl BadEncodingProof {
    /// Builds a proof that axis `index` is badly encoded from `k` [`SampleProof`]s of its
    /// cells taken through the **orthogonal** axis (what DA nodes serve from their
    /// columns) and the square's verified `header`. The proof verifies only if the axis
    /// really is bad.
    pub fn from_samples(header: &DaHeader, axis: Axis, index: u32, samples: &[SampleProof]) -> Result<Self> {
        let (own_roots, orth_roots) = match axis {
            Axis::Row => (&header.row_roots, &header.col_roots),
            Axis::Col => (&header.col_roots, &header.row_roots),
        };
        if index as usize >= own_roots.len() {
            return Err(malformed("fraud proof request", "index out of range"));
        }
        let orth = axis.orthogonal().as_u8();
        let mut cells = Vec::with_capacity(samples.len());
        for s in samples {
            if s.axis != orth || s.position != index {
                return Err(malformed(
                    "fraud proof request",
                    "sample is not a cell of the axis through its orthogonal root",
                ));
            }
            cells.push(FraudCell { position: s.axis_index, chunk: s.chunk.clone(), nodes: s.nodes.clone() });
        }
        Ok(BadEncodingProof {
            roots: header.roots(),
            axis: axis.as_u8(),
            index,
            axis_root: own_roots[index as usize],
            axis_path: roots_prove(own_roots, index as u64, index as u64 + 1)?,
            orthogonal_roots: orth_roots.clone(),
            cells,
        })
    }
}

/// True if `axis_bytes` (a row or a gathered column) is a codeword of `codec`.
pub fn is_codeword(codec: CodecId, k: usize, axis_bytes: &[u8]) -> Result<bool> {
    let mut copy = axis_bytes.to_vec();
    encode_axis(codec.codec(), k, &mut copy)?;
    Ok(copy == axis_bytes)
}

/// Checks every row and column of a committed square (whose header was computed from
/// its cells, e.g. by [`CommittedSquare::commit`]) and returns a fraud proof for the
/// first axis that is not a codeword, or `None` for a correctly encoded square.
pub fn find_bad_encoding(square: &CommittedSquare) -> Result<Option<BadEncodingProof>> {
    let eds: &ExtendedSquare = square.eds();
    let k = eds.k();
    let first_k: Vec<u32> = (0..k as u32).collect();
    for r in 0..eds.width() {
        if !is_codeword(eds.codec(), k, eds.row(r))? {
            return BadEncodingProof::create(square, Axis::Row, r as u32, &first_k).map(Some);
        }
    }
    for c in 0..eds.width() {
        if !is_codeword(eds.codec(), k, &eds.column(c))? {
            return BadEncodingProof::create(square, Axis::Col, c as u32, &first_k).map(Some);
        }
    }
    Ok(None)
}

/// **Fault injection (tests and demos only): a Byzantine disperser.** Rebuilds `square`
/// with row `row`'s first parity cell (`(row, k)`) flipped and every column re-extended
/// from its (now wrong) first half, then commits it again. Every column is still a
/// codeword that matches its root, so DA nodes checking their own columns store and
/// sign it; row `row` is wrongly encoded by the canonical rule (its first `k` cells do
/// not extend to its root), which retrieval of a namespace in that row proves.
pub fn corrupt_row_encoding(square: CommittedSquare, row: usize) -> Result<CommittedSquare> {
    let table = square.header().table.clone();
    let mut eds = square.into_eds();
    let (k, codec) = (eds.k(), eds.codec());
    let w = 2 * k;
    if row >= k {
        return Err(malformed("fault injection", "row must be in the original half"));
    }
    let cells = eds.cells_mut();
    let at = (row * w + k) * SHARE_SIZE;
    cells[at..at + SHARE_SIZE].iter_mut().for_each(|b| *b ^= 0x5A);
    let mut col = vec![0u8; w * SHARE_SIZE];
    for c in 0..w {
        for r in 0..w {
            col[r * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(&cells[(r * w + c) * SHARE_SIZE..][..SHARE_SIZE]);
        }
        encode_axis(codec.codec(), k, &mut col)?;
        for r in k..w {
            cells[(r * w + c) * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(&col[r * SHARE_SIZE..][..SHARE_SIZE]);
        }
    }
    CommittedSquare::commit(eds, &table, crate::Parallelism::Rayon)
}
