//! The crate's one error type.

use lamina_primitives::{CodecError as WireError, Digest, Namespace};

/// Everything that can go wrong in the DA core.
///
/// Variants fall in two classes (see [`Error::is_invalid_input`]): *invalid input*
/// (a proof, column or commitment from someone else does not verify: reject it and
/// blame the sender) and *local* errors (the caller asked for something this codec or
/// square cannot represent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A codec id that no backend implements.
    #[error("unknown erasure codec id {0}")]
    UnknownCodec(u8),
    /// The codec cannot represent a code of this shape (e.g. GF(2^8) with more than 256
    /// shards, so a square wider than k = 128).
    #[error("codec {codec} cannot encode {data} data + {parity} parity shards: {reason}")]
    UnsupportedShape {
        /// Codec name.
        codec: &'static str,
        /// Data shards requested.
        data: usize,
        /// Parity shards requested.
        parity: usize,
        /// Why.
        reason: &'static str,
    },
    /// Shards of differing or invalid length were passed to a codec.
    #[error("shard of {got} bytes, expected {expected}")]
    ShardSize {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Fewer shards than data shards are present: the codeword cannot be decoded.
    #[error("{present} shards present, {needed} needed to decode")]
    TooFewShards {
        /// Present shards.
        present: usize,
        /// Required shards (the data shard count).
        needed: usize,
    },
    /// The codec backend failed unexpectedly.
    #[error("codec {codec} failed: {reason}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// Backend message.
        reason: String,
    },
    /// The blobs cannot form a square.
    #[error("blobs rejected: {0}")]
    BadBlobs(String),
    /// A square width that is zero or too large for the codec.
    #[error("invalid square width {k}: {reason}")]
    BadWidth {
        /// The width.
        k: u64,
        /// Why.
        reason: &'static str,
    },
    /// A namespace table that is not sorted, not contiguous or out of the square.
    #[error("malformed namespace table: {0}")]
    BadTable(String),
    /// A square header (roots and table) that does not match its data root.
    #[error("header does not match data root {expected:?}")]
    HeaderMismatch {
        /// The data root the caller expected.
        expected: Digest,
    },
    /// A header, proof or column whose shape is wrong (lengths, indices).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A proof that does not lead to the committed root.
    #[error("{what} proof does not verify")]
    ProofMismatch {
        /// Which proof.
        what: &'static str,
    },
    /// A namespace proof that does not show completeness for `namespace`.
    #[error("namespace proof for {namespace:?} invalid: {reason}")]
    BadNamespaceProof {
        /// The namespace.
        namespace: Namespace,
        /// Why.
        reason: &'static str,
    },
    /// A column that is not a codeword of the committed codec.
    #[error("column {index} is not a codeword")]
    NotCodeword {
        /// Column index.
        index: u32,
    },
    /// The erasure pattern cannot be decoded (it contains a stopping set: some rows and
    /// columns each miss more than k cells).
    #[error("square unrecoverable: {missing} cells still missing after iterative decoding")]
    Unrecoverable {
        /// Cells still missing.
        missing: usize,
    },
    /// A fraud proof was presented for an axis that is correctly encoded.
    #[error("no fraud: the {axis} {index} decodes to its committed root")]
    NotFraud {
        /// `"row"` or `"column"`.
        axis: &'static str,
        /// Index of the axis.
        index: u32,
    },
    /// Bytes that failed validated decoding.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl Error {
    /// True when the error means "the data or proof someone gave us is wrong" (blame the
    /// sender), as opposed to a local limitation or a caller mistake.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::HeaderMismatch { .. }
                | Error::Malformed { .. }
                | Error::ProofMismatch { .. }
                | Error::BadNamespaceProof { .. }
                | Error::NotCodeword { .. }
                | Error::BadTable(_)
                | Error::NotFraud { .. }
                | Error::Wire(_)
                | Error::UnknownCodec(_)
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed { what, reason: reason.into() }
}
