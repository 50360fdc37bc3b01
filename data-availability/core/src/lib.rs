//! Lamina's data-availability core: 2D Reed-Solomon squares, namespaced commitments, proofs, sampling, repair, fraud proofs.
//!
//! Pure computation: no I/O, no clock, no async runtime, no threads of its own
//! (rayon is used for data-parallel work, always with a sequential twin). The service
//! crate (`lamina-da-service`) moves these values over QUIC and stores them.
//!
//! # The scheme
//!
//! | part | choice | why |
//! |---|---|---|
//! | share | [`SHARE_SIZE`] = 512 bytes | Celestia's size; a k = 128 square is 8 MiB, as the targets assume; small padding loss per blob |
//! | square | `k x k` original, any `k` in `1..=512` (powers of two only where the genesis's `da_any_width` is off), extended to `2k x 2k` (rows, then columns) | [`square`]: a width that fits the data closely instead of up to 4x its size ([`Widths`]) |
//! | codec | [`codec::ErasureCodec`]; id 1 = Leopard GF(2^16) (default), id 2 = Vandermonde GF(2^8) (k <= 128) | [`codec`] |
//! | axis roots | keyed blake3 *tree* over each row's / column's bytes; leaf = one 1 KiB blake3 chunk = two cells | hashing runs at blake3's SIMD speed instead of per-share trees ([`tree`]) |
//! | namespaces | a namespace table (blob → share range) committed in a namespaced Merkle tree | NMT completeness and absence at one leaf per blob ([`table`]) |
//! | data root | `H(k ‖ codec ‖ share size ‖ rows root ‖ columns root ‖ table root)` | [`square::SquareRoots`] |
//! | proofs | cell (sample), axis range, complete namespace, bad encoding | [`proof`], [`fraud`] |
//! | sampling | 32 samples by default (≥ 99.99 % per client for k <= 512) | [`sampling`] |
//! | repair | iterative row/column decoding | [`mod@repair`] |
//!
//! # Deviations from Celestia, and why
//!
//! * **No namespace in every tree node.** Celestia's NMTs over every row and column
//!   cost ~8x the RS extension (research note: 181 ms at k = 128). Here the row and
//!   column trees are plain (keyed blake3) trees, and NMT semantics live in a small
//!   tree over the namespace table. The guarantee a chain needs is the same: its
//!   entries are proven complete (a subtree left of them has `max < N`, one to the
//!   right `min > N`), and the entries say exactly which shares hold its data, which
//!   the share range proof then proves byte for byte. See [`table`].
//! * **Leaves are 1 KiB chunks, not 512-byte shares.** A sample therefore carries its
//!   neighbouring cell too (1 KiB + ~0.5 KiB of path, vs ~1.2 KB in Celestia); in
//!   exchange the commitment costs about as much as one extra pass of blake3 over the
//!   square, which is what lets extend + commit fit the 40 ms target.
//! * **Bad-encoding fraud proofs are kept** (Celestia removed its BEFPs in 2026). Note
//!   that DA nodes only check their own columns; a wrongly encoded *row* is caught by
//!   whoever rebuilds rows (retrieval clients, full nodes) and proven with a
//!   [`fraud::BadEncodingProof`].
//!
//! # Example
//!
//! ```
//! use lamina_da_core::{CodecId, CommittedSquare, Parallelism};
//! use lamina_interfaces::Blob;
//! use lamina_primitives::{ChainId, Namespace};
//!
//! let ns = Namespace::from(ChainId(7));
//! let blobs = vec![Blob { namespace: ns, data: b"batch bytes".to_vec() }];
//! let square = CommittedSquare::build(&blobs, CodecId::default(), Parallelism::Rayon).unwrap();
//! let proof = square.namespace_proof(ns).unwrap();
//! assert_eq!(proof.verify(&square.data_root(), ns).unwrap(), vec![b"batch bytes".to_vec()]);
//! ```

pub mod assignment;
pub mod codec;
pub mod error;
pub mod fraud;
pub mod inprocess;
pub mod proof;
pub mod repair;
pub mod sampling;
pub mod square;
pub mod table;
pub mod tree;

pub use assignment::Assignment;
pub use codec::{CodecId, ErasureCodec};
pub use error::{Error, Result};
pub use fraud::{BadEncodingProof, find_bad_encoding};
pub use inprocess::InProcessDa;
pub use proof::{AxisRangeProof, NamespaceProof, SampleProof};
pub use repair::{RepairReport, repair};
pub use sampling::{DEFAULT_SAMPLES, SamplingSession};
pub use square::{
    CommittedSquare, DaHeader, ExtendedSquare, OriginalSquare, PARALLEL_FROM_WIDTH, Parallelism, SquareRoots, Widths,
    commit, extend, extend_and_commit, extend_and_commit_into, extend_into, max_blob_bytes,
};
pub use table::{NamespaceTable, TableEntry};
pub use tree::Axis;

/// Bytes per share (cell) of a square.
pub const SHARE_SIZE: usize = 512;

/// Largest supported width `k` of an original square (128 MiB of data; the extended
/// square is 512 MiB).
pub const MAX_SQUARE_WIDTH: usize = 512;

/// Largest number of blobs in one square.
pub const MAX_BLOBS: usize = 1 << 16;
