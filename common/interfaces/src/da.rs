//! Data availability: put blobs in, get a certificate; get a namespace's blobs back.

use std::future::Future;

use lamina_primitives::{AvailabilityCertificate, DataCommitment, Digest, Namespace, NodeId};

/// A blob: bytes under a namespace. A chain's batch is one blob under its namespace.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Blob {
    /// Whose data this is.
    pub namespace: Namespace,
    /// The bytes (for a chain, an encoded [`lamina_primitives::Batch`]).
    pub data: Vec<u8>,
}

/// Why a DA operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaError {
    /// Blobs do not fit the largest square, or a blob is empty or uses a reserved
    /// namespace.
    #[error("blobs rejected: {0}")]
    Rejected(String),
    /// Not enough DA nodes answered to reach the certificate threshold, or to rebuild
    /// the data. Retrying later may succeed.
    #[error("not enough DA nodes: {have} of {need} answered")]
    InsufficientNodes {
        /// Nodes that answered correctly.
        have: usize,
        /// Nodes needed.
        need: usize,
    },
    /// The data is not retrievable (withheld or pruned).
    #[error("data unavailable: {0}")]
    Unavailable(String),
    /// A node served data that does not verify against the commitment. The node is
    /// named so callers can score it; the operation may still succeed from others.
    #[error("node {node:?} served invalid data: {reason}")]
    Misbehaving {
        /// The offending node.
        node: NodeId,
        /// What failed to verify.
        reason: String,
    },
    /// The commitment itself is unusable (unknown codec, impossible width).
    #[error("bad commitment: {0}")]
    BadCommitment(String),
    /// Transport failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The rows holding the namespace are wrongly encoded, by the canonical rule (the
    /// first `k` cells of a row, as committed by the column roots, do not extend to the
    /// committed row root). Final and the same for every caller: executors and
    /// settlement treat the namespace's data in this square as absent (no
    /// transactions), and keep `proof` (the DA layer's encoded bad-encoding proof,
    /// checked by [`crate::EncodingFraudVerifier`]) as evidence for settlement.
    #[error("square {data_root} is wrongly encoded (row {row}); fraud proof of {} bytes", .proof.len())]
    BadEncoding {
        /// The square.
        data_root: Digest,
        /// The first bad row found in the namespace's range.
        row: u32,
        /// The encoded proof.
        proof: Vec<u8>,
    },
}

impl DaError {
    /// True when the square is unusable for everyone, so the namespace's data in it
    /// counts as absent rather than being retried: a bad commitment, rejected blobs,
    /// or a proven bad encoding. Every execution replica and settlement verifier applies
    /// this same rule.
    pub fn is_final_for_everyone(&self) -> bool {
        matches!(self, DaError::BadCommitment(_) | DaError::Rejected(_) | DaError::BadEncoding { .. })
    }
}

/// A data-availability layer.
///
/// # Contract
///
/// * `submit` lays the blobs out in one square, disperses it to the DA nodes and
///   resolves once at least the configured threshold of DA nodes have signed an
///   attestation; the returned certificate verifies with
///   [`AvailabilityCertificate::verify`] against the DA committee. A certificate means:
///   any `k` of the square's `2k` columns, held by honest nodes among the signers, rebuild
///   every blob. Submitting the same blobs twice yields the same commitment.
/// * `get_namespace` returns every blob of `namespace` in the committed square, in
///   square order, each verified against `commitment.data_root` with a namespace range
///   proof that shows nothing was left out; an empty vector is a *proven* absence. It
///   rebuilds from any `k` columns when nodes are down, and never returns unverified
///   bytes. A wrongly encoded row in the namespace's range is answered with
///   [`DaError::BadEncoding`] (with its proof), decided by the canonical rule so that
///   every honest caller reaches the same verdict.
pub trait DataAvailability: Send + Sync {
    /// Disperses `blobs` as one square and returns its availability certificate.
    fn submit(&self, blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send;

    /// Returns the verified blobs of `namespace` in the square of `commitment`.
    fn get_namespace(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send;

    /// The key that dispersed the square `data_root`, when the layer can tell (the DA
    /// nodes' testimony; used to report the disperser of a wrongly encoded square).
    /// `None` by default.
    fn disperser(&self, data_root: &Digest) -> impl Future<Output = Option<NodeId>> + Send {
        let _ = data_root;
        std::future::ready(None)
    }
}

/// A shared handle serves like the layer it points to (so one client can be used by
/// concurrent tasks).
impl<T: DataAvailability + ?Sized> DataAvailability for std::sync::Arc<T> {
    fn submit(&self, blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send {
        (**self).submit(blobs)
    }

    fn get_namespace(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send {
        (**self).get_namespace(commitment, namespace)
    }

    fn disperser(&self, data_root: &Digest) -> impl Future<Output = Option<NodeId>> + Send {
        (**self).disperser(data_root)
    }
}
