//! Reconstruction: iterative row/column ("crossword") decoding of a partial square.
//!
//! Each sweep decodes every row that has at least `k` known cells and some missing,
//! then every such column; sweeps repeat while they make progress. The decoder fails
//! exactly when the missing cells contain a *stopping set* — rows and columns each
//! missing more than `k` cells — the smallest of which is a `(k+1) x (k+1)` sub-grid.
//! So any pattern of fewer than `(k+1)^2` missing cells always decodes, and a withholder
//! must hide at least `(k+1)^2` of the `4k^2` cells (about 25%), which is what sampling
//! detects ([`crate::sampling`]).
//!
//! Rows are decoded in place; columns are gathered a band at a time into a scratch
//! buffer, decoded, and the restored cells written back. Rows (and column bands) of a
//! sweep are independent, run by [`Parallelism`]; both strategies give the same bytes.
//!
//! Reconstruction does not check commitments: afterwards, recompute the roots
//! ([`crate::square::axis_roots`]) and compare, or look for a fraud proof
//! ([`crate::fraud`]).

use crate::SHARE_SIZE;
use crate::codec::{CodecId, ErasureCodec};
use crate::error::{Error, Result, malformed};
use crate::square::{Parallelism, band_segments, band_width, check_width, with_band_buf};

/// One band's per-row cell segments and flag segments.
type Band<'a> = (Vec<&'a mut [u8]>, Vec<&'a mut [bool]>);

/// What a repair did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RepairReport {
    /// Cells missing before the repair.
    pub missing_before: usize,
    /// Row decodes performed.
    pub rows_decoded: usize,
    /// Column decodes performed.
    pub cols_decoded: usize,
    /// Sweeps (row pass + column pass) run.
    pub sweeps: usize,
}

fn decode_axis(codec: &dyn ErasureCodec, k: usize, cells: &mut [u8], known: &mut [bool]) -> Result<bool> {
    let have = known.iter().filter(|x| **x).count();
    if have == known.len() || have < k {
        return Ok(false);
    }
    let mut shards: Vec<&mut [u8]> = cells.chunks_exact_mut(SHARE_SIZE).collect();
    codec.reconstruct(&mut shards, known, k)?;
    known.iter_mut().for_each(|x| *x = true);
    Ok(true)
}

/// Restores every missing cell of a `2k x 2k` square in place. `cells` is row-major,
/// `known[r * 2k + c]` says whether cell `(r, c)` holds data; on success every flag is
/// set. Returns [`Error::Unrecoverable`] (with cells restored so far kept) when the
/// pattern cannot be decoded.
pub fn repair(
    k: usize,
    codec: CodecId,
    cells: &mut [u8],
    known: &mut [bool],
    par: Parallelism,
) -> Result<RepairReport> {
    check_width(k as u64, codec)?;
    let w = 2 * k;
    if cells.len() != w * w * SHARE_SIZE || known.len() != w * w {
        return Err(malformed("partial square", format!("{} bytes, {} flags for k = {k}", cells.len(), known.len())));
    }
    let c = codec.codec();
    let row_len = w * SHARE_SIZE;
    let bw = band_width(k);
    let col_len = w * SHARE_SIZE;
    let mut report = RepairReport { missing_before: known.iter().filter(|x| !**x).count(), ..Default::default() };
    loop {
        let missing = known.iter().filter(|x| !**x).count();
        if missing == 0 {
            return Ok(report);
        }
        report.sweeps += 1;

        let rows: Vec<(&mut [u8], &mut [bool])> =
            cells.chunks_exact_mut(row_len).zip(known.chunks_exact_mut(w)).collect();
        let decoded = par.map(rows, |(row, flags)| decode_axis(c, k, row, flags))?;
        let rows_decoded = decoded.into_iter().filter(|d| *d).count();
        report.rows_decoded += rows_decoded;

        let cell_bands = band_segments(cells, row_len, bw);
        let mut flag_bands: Vec<Vec<&mut [bool]>> = (0..w / bw).map(|_| Vec::with_capacity(w)).collect();
        for row in known.chunks_exact_mut(w) {
            for (b, seg) in row.chunks_exact_mut(bw).enumerate() {
                flag_bands[b].push(seg);
            }
        }
        let bands: Vec<Band<'_>> = cell_bands.into_iter().zip(flag_bands).collect();
        let decoded = par.map(bands, |(mut segs, mut flags)| {
            // Only columns with something to do are gathered.
            let todo: Vec<usize> = (0..bw)
                .filter(|&j| {
                    let have = flags.iter().filter(|f| f[j]).count();
                    have < w && have >= k
                })
                .collect();
            if todo.is_empty() {
                return Ok(0usize);
            }
            with_band_buf(col_len, |col| -> Result<usize> {
                let mut col_known = vec![false; w];
                for &j in &todo {
                    for r in 0..w {
                        col_known[r] = flags[r][j];
                        if col_known[r] {
                            col[r * SHARE_SIZE..][..SHARE_SIZE]
                                .copy_from_slice(&segs[r][j * SHARE_SIZE..][..SHARE_SIZE]);
                        }
                    }
                    let before = col_known.clone();
                    decode_axis(c, k, col, &mut col_known)?;
                    for r in 0..w {
                        if !before[r] {
                            segs[r][j * SHARE_SIZE..][..SHARE_SIZE]
                                .copy_from_slice(&col[r * SHARE_SIZE..][..SHARE_SIZE]);
                            flags[r][j] = true;
                        }
                    }
                }
                Ok(todo.len())
            })
        })?;
        let cols_decoded: usize = decoded.into_iter().sum();
        report.cols_decoded += cols_decoded;

        if rows_decoded == 0 && cols_decoded == 0 {
            return Err(Error::Unrecoverable { missing });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::square::{OriginalSquare, extend};
    use lamina_interfaces::Blob;
    use lamina_primitives::Namespace;

    #[test]
    fn grid_of_k_plus_one_is_unrecoverable_but_one_cell_less_decodes() {
        let blobs =
            vec![Blob { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 1]), data: (0..7000).map(|i| i as u8).collect() }];
        let ods = OriginalSquare::from_blobs(&blobs, CodecId::Leopard16).unwrap();
        let eds = extend(&ods, CodecId::Leopard16, Parallelism::Sequential).unwrap();
        let k = eds.k();
        let w = 2 * k;
        let grid = |skip: Option<(usize, usize)>| {
            let mut known = vec![true; w * w];
            for r in 0..=k {
                for c in 0..=k {
                    if Some((r, c)) != skip {
                        known[((r * 5 + 1) % w) * w + (c * 3) % w] = false;
                    }
                }
            }
            known
        };
        let mut cells = eds.cells().to_vec();
        let mut known = grid(None);
        for (i, k) in known.iter().enumerate() {
            if !k {
                cells[i * SHARE_SIZE..(i + 1) * SHARE_SIZE].fill(0xAB);
            }
        }
        let err = repair(k, CodecId::Leopard16, &mut cells, &mut known, Parallelism::Sequential).unwrap_err();
        assert_eq!(err, Error::Unrecoverable { missing: (k + 1) * (k + 1) });

        let mut cells = eds.cells().to_vec();
        let mut known = grid(Some((0, 0)));
        for (i, k) in known.iter().enumerate() {
            if !k {
                cells[i * SHARE_SIZE..(i + 1) * SHARE_SIZE].fill(0xCD);
            }
        }
        let rep = repair(k, CodecId::Leopard16, &mut cells, &mut known, Parallelism::Rayon).unwrap();
        assert_eq!(rep.missing_before, (k + 1) * (k + 1) - 1);
        assert_eq!(cells, eds.cells());
    }
}
