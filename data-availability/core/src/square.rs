//! Squares: laying blobs out, extending `k x k` to `2k x 2k`, and committing.
//!
//! * [`OriginalSquare::from_blobs`] sorts blobs by namespace (stable), packs them into
//!   512-byte shares from share 0 (row-major), zero-pads the last share of each blob and
//!   the rest of the square, and picks `k` by a [`Widths`] rule: the smallest that fits,
//!   the smallest power of two (networks whose genesis does not allow other widths), or
//!   the one a DA committee stores in the fewest cells.
//! * [`extend`] computes the extended square: each original row is RS-extended to `2k`
//!   cells (Q2), then each of the `2k` columns (Q3, Q4). Rows and column bands are
//!   independent work items, run by [`Parallelism::Rayon`] or [`Parallelism::Sequential`]
//!   with identical bytes.
//! * [`commit`] hashes every row and column (the axis roots), the two root trees and the
//!   data root. [`extend_and_commit`] fuses both so that each row is hashed right after
//!   it is encoded and each column while its band is still in cache — the hot path of a
//!   disperser.
//!
//! The extended square is stored row-major in one buffer (`cells`), so a row is one
//! contiguous slice and hashes in a single blake3 call. The column phase works on
//! bands of [`BAND`] adjacent columns (4 or 2 when `2k` is not a multiple of 8): the
//! band's `k` original row segments (4 KiB each at 8 columns) are encoded as **one**
//! codeword with wide shards — Reed-Solomon is position-wise, so this equals the band's
//! column codewords side by side, with up to 8x fewer codec calls and no gather — and
//! the parity lands directly in rows `k..2k`. Each band's `2k x band` cells are then
//! copied column-major into a scratch buffer (1 MiB at k = 128, cache-resident) and
//! each column is hashed there.
//!
//! **Buffer reuse.** On the reference VM, first-touch page faults on a fresh 32 MiB
//! square cost about as much as the hashing; [`extend_into`] and
//! [`extend_and_commit_into`] take a recycled buffer (the disperser keeps one).

use lamina_interfaces::Blob;
use lamina_primitives::{DataCommitment, Digest, Namespace};
use rayon::prelude::*;

use crate::codec::{CodecId, ErasureCodec};
use crate::error::{Error, Result, malformed};
use crate::table::{NamespaceTable, TableEntry};
use crate::tree::{Axis, axis_root, domains, roots_root};
use crate::{MAX_BLOBS, MAX_SQUARE_WIDTH, SHARE_SIZE};

/// Columns processed together in the column phase.
pub const BAND: usize = 8;

/// How to run data-parallel work. Both give identical results (property-tested).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Parallelism {
    /// One item after another on the calling thread (the sequential twin).
    Sequential,
    /// Items spread over the current rayon pool (install a pool to choose its size).
    #[default]
    Rayon,
}

/// Squares narrower than this (original width `k`; 32 is 512 KiB of shares) are encoded
/// and checked on the calling thread. Their work is a millisecond or less, and handing it
/// to rayon costs more than it saves on a busy machine: idle rayon workers spin (yield in
/// a loop) before they sleep, which on a loaded 2-core box cost a DA node about a fifth
/// of its CPU with squares of a few KiB (issue 10, measured with `perf`).
pub const PARALLEL_FROM_WIDTH: usize = 32;

impl Parallelism {
    /// Rayon for squares of original width `k` at least [`PARALLEL_FROM_WIDTH`], the
    /// calling thread below it. Both give identical results.
    pub fn for_width(k: usize) -> Self {
        if k >= PARALLEL_FROM_WIDTH { Parallelism::Rayon } else { Parallelism::Sequential }
    }

    /// Maps `f` over `items` sequentially or on rayon, keeping order.
    pub(crate) fn map<T: Send, R: Send>(
        self,
        items: Vec<T>,
        f: impl Fn(T) -> Result<R> + Sync + Send,
    ) -> Result<Vec<R>> {
        match self {
            Parallelism::Sequential => items.into_iter().map(f).collect(),
            Parallelism::Rayon => items.into_par_iter().map(f).collect(),
        }
    }
}

/// Checks that `k` is a supported width for `codec`.
pub fn check_width(k: u64, codec: CodecId) -> Result<()> {
    if k == 0 {
        return Err(Error::BadWidth { k, reason: "zero" });
    }
    if k > MAX_SQUARE_WIDTH as u64 {
        return Err(Error::BadWidth { k, reason: "above the largest supported square" });
    }
    codec.codec().check_shape(k as usize, k as usize, SHARE_SIZE)
}

/// The largest blob (bytes) one square can hold with `codec`: the widest square the
/// codec supports, all of it one blob. Clients check against it before reading a blob
/// into memory.
pub fn max_blob_bytes(codec: CodecId) -> u64 {
    let mut k = MAX_SQUARE_WIDTH as u64;
    while k > 1 && check_width(k, codec).is_err() {
        k /= 2;
    }
    k * k * SHARE_SIZE as u64
}

/// How a disperser picks a square's width. Every width in `1..=512` that the codec
/// supports can be encoded, proven and repaired; which widths a network accepts is its
/// genesis's rule (`Genesis::da_any_width`: where it is off, powers of two only).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Widths {
    /// The smallest `k` with `k^2` shares at least the data (fewer than `2k - 1` shares
    /// of padding).
    #[default]
    Any,
    /// The smallest power of two (up to 4x the data in padding).
    PowersOfTwo,
    /// The width, from [`Widths::Any`]'s up to [`Widths::PowersOfTwo`]'s, whose square a
    /// committee of `nodes` DA nodes with certificate threshold `threshold` stores in the
    /// fewest cells (`k^2` times the [`Assignment`](crate::Assignment)'s replication; the
    /// smaller width on a tie). A width that does not split evenly over the nodes can need
    /// each column stored twice (4 nodes: every odd `k`), which costs more than the
    /// padding it saves; this picks the next width instead.
    LeastStored {
        /// DA nodes of the committee.
        nodes: usize,
        /// Its certificate threshold.
        threshold: usize,
    },
}

impl Widths {
    /// The width of this kind for `shares` shares.
    pub fn width_for(self, shares: u64) -> u64 {
        match self {
            Widths::Any => {
                let k = shares.isqrt().max(1);
                if k * k < shares { k + 1 } else { k }
            }
            Widths::PowersOfTwo => {
                let mut k = 1u64;
                while k * k < shares {
                    k *= 2;
                }
                k
            }
            Widths::LeastStored { nodes, threshold } => {
                let stored = |k: u64| k * k * crate::Assignment::new(nodes, threshold, k as usize).replication as u64;
                let (lo, hi) = (Widths::Any.width_for(shares), Widths::PowersOfTwo.width_for(shares));
                (lo..=hi).min_by_key(|&k| (stored(k), k)).unwrap_or(lo)
            }
        }
    }
}

/// Checks that width `k` is one a network accepts: any, where its genesis allows squares
/// of any width (`Genesis::da_any_width`), else a power of two, as releases before that
/// rule accepted. DA nodes (stores), readers (headers, roots) and settlement
/// (bad-encoding proofs) all apply it, so that nodes of either release agree.
pub fn check_width_allowed(k: u64, any_width: bool) -> Result<()> {
    if any_width || k.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::BadWidth { k, reason: "not a power of two, which this network's genesis does not allow" })
    }
}

/// The original `k x k` square: blob data in shares, and the table that says where.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OriginalSquare {
    k: usize,
    shares: Vec<u8>,
    table: NamespaceTable,
}

impl OriginalSquare {
    /// Lays `blobs` out in namespace order in the smallest square of any width
    /// ([`Widths::Any`]). Rejects empty blobs, the padding and parity namespaces, too many
    /// blobs, and data that does not fit the largest square `codec` supports.
    pub fn from_blobs(blobs: &[Blob], codec: CodecId) -> Result<Self> {
        Self::from_blobs_with(blobs, codec, Widths::Any)
    }

    /// [`OriginalSquare::from_blobs`] in the smallest square whose width is of the kind
    /// `widths`.
    pub fn from_blobs_with(blobs: &[Blob], codec: CodecId, widths: Widths) -> Result<Self> {
        if blobs.is_empty() {
            return Err(Error::BadBlobs("no blobs".into()));
        }
        if blobs.len() > MAX_BLOBS {
            return Err(Error::BadBlobs(format!("{} blobs exceed {MAX_BLOBS}", blobs.len())));
        }
        let mut order: Vec<usize> = (0..blobs.len()).collect();
        order.sort_by_key(|&i| blobs[i].namespace);
        let mut entries = Vec::with_capacity(blobs.len());
        let mut next = 0u64;
        for &i in &order {
            let b = &blobs[i];
            if b.namespace == Namespace::PADDING || b.namespace == Namespace::PARITY {
                return Err(Error::BadBlobs(format!("namespace {:?} is reserved", b.namespace)));
            }
            if b.data.is_empty() {
                return Err(Error::BadBlobs(format!("empty blob under {:?}", b.namespace)));
            }
            let len = u32::try_from(b.data.len()).map_err(|_| Error::BadBlobs("blob over 4 GiB".into()))?;
            let e = TableEntry { namespace: b.namespace, start: next as u32, len };
            next = e.end();
            if next > (MAX_SQUARE_WIDTH * MAX_SQUARE_WIDTH) as u64 {
                return Err(Error::BadBlobs(format!("blobs exceed the largest square ({MAX_SQUARE_WIDTH}^2 shares)")));
            }
            entries.push(e);
        }
        let k = widths.width_for(next);
        check_width(k, codec).map_err(|e| Error::BadBlobs(format!("{next} shares need k = {k}: {e}")))?;
        let k = k as usize;
        let mut shares = vec![0u8; k * k * SHARE_SIZE];
        for (e, &i) in entries.iter().zip(&order) {
            let at = e.start as usize * SHARE_SIZE;
            shares[at..at + blobs[i].data.len()].copy_from_slice(&blobs[i].data);
        }
        Ok(OriginalSquare { k, shares, table: NamespaceTable { entries } })
    }

    /// A square from raw shares and a table (validated).
    pub fn from_parts(k: usize, shares: Vec<u8>, table: NamespaceTable) -> Result<Self> {
        if k == 0 || k > MAX_SQUARE_WIDTH {
            return Err(Error::BadWidth { k: k as u64, reason: "outside 1..=512" });
        }
        if shares.len() != k * k * SHARE_SIZE {
            return Err(malformed("original square", format!("{} bytes for k = {k}", shares.len())));
        }
        table.validate(k as u32)?;
        Ok(OriginalSquare { k, shares, table })
    }

    /// Width `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// All `k * k` shares, row-major.
    pub fn shares(&self) -> &[u8] {
        &self.shares
    }

    /// Original row `r` (`k` shares).
    pub fn row(&self, r: usize) -> &[u8] {
        let len = self.k * SHARE_SIZE;
        &self.shares[r * len..(r + 1) * len]
    }

    /// The namespace table.
    pub fn table(&self) -> &NamespaceTable {
        &self.table
    }
}

/// The `2k x 2k` extended square, row-major, without commitments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExtendedSquare {
    k: usize,
    codec: CodecId,
    cells: Vec<u8>,
}

impl ExtendedSquare {
    /// Wraps `cells` (row-major, `4k^2` cells) of an extended square. Does not check the
    /// encoding (see [`crate::fraud::find_bad_encoding`]).
    pub fn from_cells(k: usize, codec: CodecId, cells: Vec<u8>) -> Result<Self> {
        check_width(k as u64, codec)?;
        if cells.len() != 4 * k * k * SHARE_SIZE {
            return Err(malformed("extended square", format!("{} bytes for k = {k}", cells.len())));
        }
        Ok(ExtendedSquare { k, codec, cells })
    }

    /// Width `k` of the original square.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Width `2k` of the extended square.
    pub fn width(&self) -> usize {
        2 * self.k
    }

    /// The codec.
    pub fn codec(&self) -> CodecId {
        self.codec
    }

    /// All cells, row-major.
    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    /// Mutable cells (used by tests to build wrongly encoded squares).
    pub fn cells_mut(&mut self) -> &mut [u8] {
        &mut self.cells
    }

    /// Consumes the square, returning its cells.
    pub fn into_cells(self) -> Vec<u8> {
        self.cells
    }

    /// Bytes of one row (`2k` cells).
    pub fn row_len(&self) -> usize {
        self.width() * SHARE_SIZE
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let len = self.row_len();
        &self.cells[r * len..(r + 1) * len]
    }

    /// Cell `(r, c)`.
    pub fn cell(&self, r: usize, c: usize) -> &[u8] {
        let at = (r * self.width() + c) * SHARE_SIZE;
        &self.cells[at..at + SHARE_SIZE]
    }

    /// Column `c` as contiguous bytes (`2k` cells, top to bottom).
    pub fn column(&self, c: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.row_len());
        for r in 0..self.width() {
            out.extend_from_slice(self.cell(r, c));
        }
        out
    }

    /// The original square's shares (rows `0..k`, columns `0..k`), row-major.
    pub fn original_shares(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.k * self.k * SHARE_SIZE);
        for r in 0..self.k {
            out.extend_from_slice(&self.row(r)[..self.k * SHARE_SIZE]);
        }
        out
    }
}

/// Encodes the first `k` cells of `axis` (a row or a gathered column) into its last `k`.
pub fn encode_axis(codec: &dyn ErasureCodec, k: usize, axis: &mut [u8]) -> Result<()> {
    let (data, parity) = axis.split_at_mut(k * SHARE_SIZE);
    let data: Vec<&[u8]> = data.chunks_exact(SHARE_SIZE).collect();
    let mut parity: Vec<&mut [u8]> = parity.chunks_exact_mut(SHARE_SIZE).collect();
    codec.encode(&data, &mut parity)
}

thread_local! {
    static BAND_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's band scratch buffer, sized to `len` bytes.
pub(crate) fn with_band_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    BAND_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        f(&mut buf[..len])
    })
}

/// Splits the rows in `rows` (each `row_len` bytes) into per-band segments of `bw`
/// cells: `out[b][i]` is row `i`'s segment of band `b`.
pub(crate) fn band_segments(rows: &mut [u8], row_len: usize, bw: usize) -> Vec<Vec<&mut [u8]>> {
    let bands = row_len / (bw * SHARE_SIZE);
    let nrows = rows.len() / row_len;
    let mut out: Vec<Vec<&mut [u8]>> = (0..bands).map(|_| Vec::with_capacity(nrows)).collect();
    for row in rows.chunks_exact_mut(row_len) {
        for (b, seg) in row.chunks_exact_mut(bw * SHARE_SIZE).enumerate() {
            out[b].push(seg);
        }
    }
    out
}

/// Column phase for one band of `bw` columns: the band's original cells are `k` row
/// segments of `top`, encoded as **one** codeword with `bw * 512`-byte shards (Reed-Solomon
/// works position by position, and both codecs split shards at 64-byte granularity or
/// finer, so a wide shard is exactly `bw` side-by-side column codewords — checked by
/// `extension_is_a_product_code_and_fused_equals_separate`); the parity lands directly in
/// the `k` row segments `bottom`. When `hash`, the band's `2k` cells per column are then
/// gathered column-major into a scratch buffer and each column hashed.
fn extend_band(
    codec: &dyn ErasureCodec,
    k: usize,
    top: &[u8],
    band: usize,
    bw: usize,
    mut bottom: Vec<&mut [u8]>,
    hash: bool,
) -> Result<Vec<Digest>> {
    let w = 2 * k;
    let row_len = w * SHARE_SIZE;
    let seg = bw * SHARE_SIZE;
    let data: Vec<&[u8]> = (0..k).map(|r| &top[r * row_len + band * seg..][..seg]).collect();
    codec.encode(&data, &mut bottom)?;
    if !hash {
        return Ok(Vec::new());
    }
    let col_len = w * SHARE_SIZE;
    Ok(with_band_buf(bw * col_len, |buf| {
        let rows = data.iter().copied().chain(bottom.iter().map(|s| &**s));
        for (r, src) in rows.enumerate() {
            for (j, cell) in src.chunks_exact(SHARE_SIZE).enumerate() {
                buf[j * col_len + r * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(cell);
            }
        }
        buf.chunks_exact(col_len).map(|col| axis_root(Axis::Col, col)).collect()
    }))
}

/// Columns per band for width `k`: the largest power of two up to [`BAND`] that divides
/// `2k`, so that bands tile the row exactly (8 when `k` is a multiple of 4, else 4 or 2).
pub(crate) fn band_width(k: usize) -> usize {
    let w = 2 * k;
    if w.is_multiple_of(BAND) {
        BAND
    } else if w.is_multiple_of(4) {
        4
    } else {
        2
    }
}

/// Makes `buf` exactly `len` bytes, reusing its allocation. Stale contents are left in
/// place: the extension overwrites every byte.
fn sized(mut buf: Vec<u8>, len: usize) -> Vec<u8> {
    if buf.len() >= len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0);
    }
    buf
}

/// Shared body of [`extend`] and [`extend_and_commit`]; returns the cells and, when
/// `hash`, the row and column roots.
fn extend_inner(
    ods: &OriginalSquare,
    codec: CodecId,
    par: Parallelism,
    hash: bool,
    buf: Vec<u8>,
) -> Result<(Vec<u8>, Vec<Digest>, Vec<Digest>)> {
    let k = ods.k;
    check_width(k as u64, codec)?;
    let c = codec.codec();
    let w = 2 * k;
    let row_len = w * SHARE_SIZE;
    let mut cells = sized(buf, w * row_len);
    let (top, bottom) = cells.split_at_mut(k * row_len);

    // Phase 1: original rows -> Q1 | Q2, hashed while hot.
    let rows: Vec<(usize, &mut [u8])> = top.chunks_exact_mut(row_len).enumerate().collect();
    let top_roots = par.map(rows, |(r, row)| {
        row[..k * SHARE_SIZE].copy_from_slice(ods.row(r));
        encode_axis(c, k, row)?;
        Ok(if hash { Some(axis_root(Axis::Row, row)) } else { None })
    })?;

    // Phase 2: column bands -> Q3 | Q4, each column hashed from the band buffer.
    let bw = band_width(k);
    let top: &[u8] = top;
    let bands: Vec<(usize, Vec<&mut [u8]>)> = band_segments(bottom, row_len, bw).into_iter().enumerate().collect();
    let band_roots = par.map(bands, |(b, segs)| extend_band(c, k, top, b, bw, segs, hash))?;

    // Phase 3: hash rows k..2k.
    let mut row_roots: Vec<Digest> = top_roots.into_iter().flatten().collect();
    let col_roots: Vec<Digest> = band_roots.into_iter().flatten().collect();
    if hash {
        let bottom_rows: Vec<&[u8]> = cells[k * row_len..].chunks_exact(row_len).collect();
        row_roots.extend(par.map(bottom_rows, |row| Ok(axis_root(Axis::Row, row)))?);
    }
    Ok((cells, row_roots, col_roots))
}

/// Extends `ods` to the `2k x 2k` square with `codec` (no hashing).
pub fn extend(ods: &OriginalSquare, codec: CodecId, par: Parallelism) -> Result<ExtendedSquare> {
    extend_into(ods, codec, par, Vec::new())
}

/// [`extend`] into a recycled buffer (see [`ExtendedSquare::into_cells`]). Reusing one
/// buffer per disperser avoids first-touch page faults on a fresh 32 MiB allocation per
/// square, which cost as much as the hashing on the reference VM.
pub fn extend_into(ods: &OriginalSquare, codec: CodecId, par: Parallelism, buf: Vec<u8>) -> Result<ExtendedSquare> {
    let (cells, _, _) = extend_inner(ods, codec, par, false, buf)?;
    Ok(ExtendedSquare { k: ods.k, codec, cells })
}

/// Row roots and column roots of an extended square.
pub fn axis_roots(eds: &ExtendedSquare, par: Parallelism) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let k = eds.k;
    let w = 2 * k;
    let row_len = eds.row_len();
    let rows: Vec<&[u8]> = eds.cells.chunks_exact(row_len).collect();
    let row_roots = par.map(rows, |row| Ok(axis_root(Axis::Row, row)))?;
    let bw = band_width(k);
    let bands: Vec<usize> = (0..w / bw).collect();
    let col_len = w * SHARE_SIZE;
    let band_roots = par.map(bands, |b| {
        Ok(with_band_buf(bw * col_len, |buf| {
            for r in 0..w {
                let src = &eds.cells[r * row_len + b * bw * SHARE_SIZE..][..bw * SHARE_SIZE];
                for (j, cell) in src.chunks_exact(SHARE_SIZE).enumerate() {
                    buf[j * col_len + r * SHARE_SIZE..][..SHARE_SIZE].copy_from_slice(cell);
                }
            }
            buf.chunks_exact(col_len).map(|col| axis_root(Axis::Col, col)).collect::<Vec<_>>()
        }))
    })?;
    Ok((row_roots, band_roots.into_iter().flatten().collect()))
}

/// Computes every commitment of `eds` whose original shares are described by `table`.
pub fn commit(eds: &ExtendedSquare, table: &NamespaceTable, par: Parallelism) -> Result<DaHeader> {
    table.validate(eds.k as u32)?;
    let (row_roots, col_roots) = axis_roots(eds, par)?;
    Ok(DaHeader { k: eds.k as u32, codec: eds.codec.as_u8(), row_roots, col_roots, table: table.clone() })
}

/// Extends and commits in one pass (the disperser's hot path).
pub fn extend_and_commit(ods: &OriginalSquare, codec: CodecId, par: Parallelism) -> Result<CommittedSquare> {
    extend_and_commit_into(ods, codec, par, Vec::new())
}

/// [`extend_and_commit`] into a recycled buffer (see [`CommittedSquare::into_eds`]).
pub fn extend_and_commit_into(
    ods: &OriginalSquare,
    codec: CodecId,
    par: Parallelism,
    buf: Vec<u8>,
) -> Result<CommittedSquare> {
    let (cells, row_roots, col_roots) = extend_inner(ods, codec, par, true, buf)?;
    let header = DaHeader { k: ods.k as u32, codec: codec.as_u8(), row_roots, col_roots, table: ods.table.clone() };
    Ok(CommittedSquare::from_parts_unchecked(ExtendedSquare { k: ods.k, codec, cells }, header))
}

/// The five values the data root hashes; each proof carries them so that a verifier
/// needs nothing but the data root.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct SquareRoots {
    /// Width of the original square.
    pub k: u32,
    /// Codec id.
    pub codec: u8,
    /// Root of the tree over the `2k` row roots.
    pub rows_root: Digest,
    /// Root of the tree over the `2k` column roots.
    pub cols_root: Digest,
    /// Root of the namespace table.
    pub table_root: Digest,
}

impl SquareRoots {
    /// `H_data_root(k ‖ codec ‖ share size ‖ rows root ‖ columns root ‖ table root)`.
    pub fn data_root(&self) -> Digest {
        let mut h = domains::DATA_ROOT.hasher();
        h.update(&self.k.to_le_bytes());
        h.update(&[self.codec]);
        h.update(&(SHARE_SIZE as u32).to_le_bytes());
        h.update(&self.rows_root.0);
        h.update(&self.cols_root.0);
        h.update(&self.table_root.0);
        Digest(*h.finalize().as_bytes())
    }

    /// Checks that these roots hash to `data_root` and describe a supported square.
    pub fn check(&self, data_root: &Digest) -> Result<CodecId> {
        if &self.data_root() != data_root {
            return Err(Error::HeaderMismatch { expected: *data_root });
        }
        let codec = CodecId::from_u8(self.codec)?;
        check_width(self.k as u64, codec)?;
        Ok(codec)
    }
}

impl From<&ArchivedSquareRoots> for SquareRoots {
    fn from(a: &ArchivedSquareRoots) -> Self {
        SquareRoots {
            k: a.k.to_native(),
            codec: a.codec,
            rows_root: Digest(a.rows_root.0),
            cols_root: Digest(a.cols_root.0),
            table_root: Digest(a.table_root.0),
        }
    }
}

/// Every commitment of a square: all axis roots and the namespace table. Small (16 KiB
/// of roots at k = 128, plus 16 bytes per blob); DA nodes keep it next to their columns
/// and serve it, and it hashes to the data root.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DaHeader {
    /// Width of the original square.
    pub k: u32,
    /// Codec id.
    pub codec: u8,
    /// The `2k` row roots.
    pub row_roots: Vec<Digest>,
    /// The `2k` column roots.
    pub col_roots: Vec<Digest>,
    /// The namespace table.
    pub table: NamespaceTable,
}

impl DaHeader {
    /// The roots the data root is computed from.
    pub fn roots(&self) -> SquareRoots {
        SquareRoots {
            k: self.k,
            codec: self.codec,
            rows_root: roots_root(&self.row_roots),
            cols_root: roots_root(&self.col_roots),
            table_root: self.table.root(),
        }
    }

    /// The data root.
    pub fn data_root(&self) -> Digest {
        self.roots().data_root()
    }

    /// The codec.
    pub fn codec_id(&self) -> Result<CodecId> {
        CodecId::from_u8(self.codec)
    }

    /// Checks shape (supported k and codec, `2k` roots per axis, a valid table) and that
    /// the header hashes to `data_root`. Use on every header received from a peer.
    pub fn verify(&self, data_root: &Digest) -> Result<SquareRoots> {
        let codec = self.codec_id()?;
        check_width(self.k as u64, codec)?;
        let w = 2 * self.k as usize;
        if self.row_roots.len() != w || self.col_roots.len() != w {
            return Err(malformed(
                "header",
                format!("{} row and {} column roots for k = {}", self.row_roots.len(), self.col_roots.len(), self.k),
            ));
        }
        self.table.validate(self.k)?;
        let roots = self.roots();
        if &roots.data_root() != data_root {
            return Err(Error::HeaderMismatch { expected: *data_root });
        }
        Ok(roots)
    }

    /// The commitment DA nodes sign.
    pub fn commitment(&self) -> DataCommitment {
        DataCommitment {
            data_root: self.data_root(),
            square_width: self.k,
            codec: self.codec,
            namespaces: self.table.namespaces(),
            blob_bytes: self.table.blob_bytes(),
        }
    }

    /// Checks that `commitment` states exactly what this (already verified) header
    /// commits to: the data root, width, codec, namespace list and blob bytes. A DA node
    /// runs this before signing.
    pub fn check_commitment(&self, commitment: &DataCommitment) -> Result<()> {
        let want = self.commitment();
        if commitment != &want {
            return Err(malformed("data commitment", "does not match the square's header"));
        }
        Ok(())
    }
}

/// An extended square with its header: what a disperser holds, and what proofs are
/// made from.
#[derive(Clone, Debug)]
pub struct CommittedSquare {
    eds: ExtendedSquare,
    header: DaHeader,
    roots: SquareRoots,
    data_root: Digest,
}

impl CommittedSquare {
    /// Lays out, extends and commits `blobs`.
    pub fn build(blobs: &[Blob], codec: CodecId, par: Parallelism) -> Result<Self> {
        let ods = OriginalSquare::from_blobs(blobs, codec)?;
        extend_and_commit(&ods, codec, par)
    }

    /// Pairs a square with a header computed from it.
    pub(crate) fn from_parts_unchecked(eds: ExtendedSquare, header: DaHeader) -> Self {
        let roots = header.roots();
        let data_root = roots.data_root();
        CommittedSquare { eds, header, roots, data_root }
    }

    /// Pairs a square with its commitments, recomputing them.
    pub fn commit(eds: ExtendedSquare, table: &NamespaceTable, par: Parallelism) -> Result<Self> {
        let header = commit(&eds, table, par)?;
        Ok(Self::from_parts_unchecked(eds, header))
    }

    /// The extended square.
    pub fn eds(&self) -> &ExtendedSquare {
        &self.eds
    }

    /// Gives the extended square back (e.g. to recycle its buffer).
    pub fn into_eds(self) -> ExtendedSquare {
        self.eds
    }

    /// The header.
    pub fn header(&self) -> &DaHeader {
        &self.header
    }

    /// The roots behind the data root.
    pub fn roots(&self) -> &SquareRoots {
        &self.roots
    }

    /// The data root.
    pub fn data_root(&self) -> Digest {
        self.data_root
    }

    /// The commitment DA nodes sign.
    pub fn commitment(&self) -> DataCommitment {
        self.header.commitment()
    }

    /// The blobs of `namespace`, in square order (no proof; see
    /// [`crate::proof::NamespaceProof`]).
    pub fn blobs(&self, namespace: Namespace) -> Vec<Vec<u8>> {
        let (a, b) = self.header.table.entry_range(namespace);
        let k = self.eds.k;
        self.header.table.entries[a..b]
            .iter()
            .map(|e| {
                let mut out = Vec::with_capacity(e.len as usize);
                for s in e.start as usize..e.end() as usize {
                    out.extend_from_slice(self.eds.cell(s / k, s % k));
                }
                out.truncate(e.len as usize);
                out
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(ns: u64, len: usize, seed: u8) -> Blob {
        Blob {
            namespace: Namespace(ns.to_be_bytes()),
            data: (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect(),
        }
    }

    #[test]
    fn layout_sorts_by_namespace_and_picks_the_smallest_width() {
        let blobs = vec![blob(9, 1000, 1), blob(3, 512, 2), blob(9, 1, 3), blob(3, 513, 4)];
        let ods = OriginalSquare::from_blobs(&blobs, CodecId::Leopard16).unwrap();
        // 1 + 2 + 2 + 1 = 6 shares -> k = 3 (k = 4 in powers of two).
        assert_eq!(ods.k(), 3);
        assert_eq!(OriginalSquare::from_blobs_with(&blobs, CodecId::Leopard16, Widths::PowersOfTwo).unwrap().k(), 4);
        let e = &ods.table().entries;
        assert_eq!(
            e.iter().map(|e| (e.namespace.as_u64(), e.start, e.len)).collect::<Vec<_>>(),
            vec![(3, 0, 512), (3, 1, 513), (9, 3, 1000), (9, 5, 1)]
        );
        assert_eq!(&ods.shares()[512..1025], &blobs[3].data[..]);
        assert!(ods.shares()[1025..1536].iter().all(|&b| b == 0));
        assert!(OriginalSquare::from_blobs(&[blob(1, 0, 0)], CodecId::Leopard16).is_err());
        assert!(
            OriginalSquare::from_blobs(&[Blob { namespace: Namespace::PARITY, data: vec![1] }], CodecId::Leopard16)
                .is_err()
        );
        // 128 x 128 + 1 shares need k = 129 (256 in powers of two): fine for Leopard,
        // rejected by GF(2^8) (at most 256 shards per codeword).
        let big = vec![blob(1, 128 * 128 * 512 + 1, 0)];
        assert_eq!(OriginalSquare::from_blobs(&big, CodecId::Leopard16).unwrap().k(), 129);
        let pow2 = OriginalSquare::from_blobs_with(&big, CodecId::Leopard16, Widths::PowersOfTwo).unwrap();
        assert_eq!(pow2.k(), 256);
        assert!(matches!(OriginalSquare::from_blobs(&big, CodecId::Vandermonde8), Err(Error::BadBlobs(_))));
    }

    #[test]
    fn widths_are_the_smallest_that_hold_the_shares() {
        for (shares, any, pow2) in
            [(0u64, 1u64, 1u64), (1, 1, 1), (2, 2, 2), (4, 2, 2), (5, 3, 4), (9, 3, 4), (10, 4, 4)].into_iter().chain([
                (17, 5, 8),
                (65, 9, 16),
                (290, 18, 32),
                (1025, 33, 64),
                (262_144, 512, 512),
            ])
        {
            assert_eq!(Widths::Any.width_for(shares), any, "{shares} shares");
            assert_eq!(Widths::PowersOfTwo.width_for(shares), pow2, "{shares} shares");
        }
        for shares in 1..5_000u64 {
            let k = Widths::Any.width_for(shares);
            assert!(k * k >= shares && (k - 1) * (k - 1) < shares, "{shares} shares, k = {k}");
        }
        // Four DA nodes, threshold 3: an odd width would store every column twice.
        let four = Widths::LeastStored { nodes: 4, threshold: 3 };
        for (shares, k) in [(1u64, 1u64), (5, 4), (9, 4), (17, 6), (65, 10), (290, 18), (401, 22), (1025, 34)] {
            assert_eq!(four.width_for(shares), k, "{shares} shares");
        }
        for shares in 1..5_000u64 {
            let k = four.width_for(shares);
            assert!(k * k >= shares && k <= Widths::PowersOfTwo.width_for(shares), "{shares} shares, k = {k}");
            assert!(k == 1 || k.is_multiple_of(2), "{shares} shares, k = {k}");
        }
        // Seven nodes, threshold 5: the fewest cells stored of every width that holds
        // the shares, up to 512 (found by brute force), and the smaller width on a tie.
        let seven = Widths::LeastStored { nodes: 7, threshold: 5 };
        let stored = |k: u64| k * k * crate::Assignment::new(7, 5, k as usize).replication as u64;
        for shares in 1..3_000u64 {
            let k = seven.width_for(shares);
            let best = (1..=512u64).filter(|&w| w * w >= shares).min_by_key(|&w| (stored(w), w)).unwrap();
            assert_eq!(k, best, "{shares} shares");
        }
        for k in 1..=64usize {
            let bw = band_width(k);
            assert!((2 * k).is_multiple_of(bw) && (2..=BAND).contains(&bw), "k = {k}, band {bw}");
        }
    }

    #[test]
    fn extension_is_a_product_code_and_fused_equals_separate() {
        for codec in CodecId::ALL {
            let blobs = vec![blob(1, 9000, 1), blob(2, 3000, 2)];
            let ods = OriginalSquare::from_blobs(&blobs, codec).unwrap();
            let k = ods.k();
            let eds = extend(&ods, codec, Parallelism::Sequential).unwrap();
            let c = codec.codec();
            // Every row and every column is a codeword.
            for i in 0..2 * k {
                let mut row = eds.row(i).to_vec();
                let want = row.clone();
                encode_axis(c, k, &mut row).unwrap();
                assert_eq!(row, want, "row {i}");
                let mut col = eds.column(i);
                let want = col.clone();
                encode_axis(c, k, &mut col).unwrap();
                assert_eq!(col, want, "col {i}");
            }
            assert_eq!(eds.original_shares(), ods.shares());
            let fused = extend_and_commit(&ods, codec, Parallelism::Sequential).unwrap();
            assert_eq!(fused.eds(), &eds);
            let separate = commit(&eds, ods.table(), Parallelism::Sequential).unwrap();
            assert_eq!(fused.header(), &separate);
            let roots = fused.header().verify(&fused.data_root()).unwrap();
            assert_eq!(roots, *fused.roots());
            assert_eq!(fused.blobs(Namespace(1u64.to_be_bytes())), vec![blobs[0].data.clone()]);
        }
    }

    #[test]
    fn header_verification_rejects_tampering() {
        let sq = CommittedSquare::build(&[blob(5, 4000, 1)], CodecId::Leopard16, Parallelism::Rayon).unwrap();
        let root = sq.data_root();
        let mut h = sq.header().clone();
        h.verify(&root).unwrap();
        h.row_roots[1].0[0] ^= 1;
        assert!(matches!(h.verify(&root), Err(Error::HeaderMismatch { .. })));
        let mut h = sq.header().clone();
        h.col_roots.pop();
        assert!(matches!(h.verify(&root), Err(Error::Malformed { .. })));
        let mut h = sq.header().clone();
        h.codec = 2;
        assert!(h.verify(&root).is_err());
        let mut h = sq.header().clone();
        h.table.entries[0].len += 1;
        assert!(h.verify(&root).is_err());
        let c = sq.commitment();
        sq.header().check_commitment(&c).unwrap();
        let mut c2 = c.clone();
        c2.namespaces.push(Namespace([1; 8]));
        assert!(sq.header().check_commitment(&c2).is_err());
    }
}
