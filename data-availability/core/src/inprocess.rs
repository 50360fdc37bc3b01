//! An in-process [`DataAvailability`]: the whole DA layer in one process, for chain
//! builders composing layers in one binary and for other layers' tests.
//!
//! `submit` builds and commits the square as a disperser does (the smallest width that
//! holds the blobs: there are no DA nodes to store it, so no committee to fit), has every
//! in-process DA member (a keypair) sign the attestation digest, and keeps the square
//! in memory. `get_namespace` builds a [`NamespaceProof`] and *verifies* it against the
//! commitment's data root before returning anything, so callers get the same guarantee
//! as from the networked client. Nothing is pruned; memory grows with every square.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use lamina_interfaces::{Blob, DaError, DataAvailability};
use lamina_primitives::{
    AvailabilityCertificate, Committee, DataCommitment, Digest, Keypair, Namespace, QuorumCertificate,
};

use crate::codec::CodecId;
use crate::error::Error;
use crate::proof::NamespaceProof;
use crate::square::{CommittedSquare, Parallelism};

/// Maps a core error to the interface error.
pub fn to_da_error(e: Error) -> DaError {
    match e {
        Error::BadBlobs(m) => DaError::Rejected(m),
        Error::UnknownCodec(_) | Error::BadWidth { .. } | Error::UnsupportedShape { .. } => {
            DaError::BadCommitment(e.to_string())
        }
        Error::Unrecoverable { .. } => DaError::Unavailable(e.to_string()),
        other => DaError::Unavailable(other.to_string()),
    }
}

/// The DA layer in one process (see the module docs).
#[derive(Debug)]
pub struct InProcessDa {
    keys: Vec<Keypair>,
    committee: Committee,
    threshold: usize,
    codec: CodecId,
    par: Parallelism,
    squares: Mutex<HashMap<Digest, Arc<CommittedSquare>>>,
}

impl InProcessDa {
    /// A DA layer whose committee is `keys` (in order) and whose certificates carry
    /// `threshold` signatures.
    pub fn new(keys: Vec<Keypair>, threshold: usize, codec: CodecId) -> Result<Self, DaError> {
        let committee = Committee::new(keys.iter().map(Keypair::public).collect())
            .map_err(|e| DaError::BadCommitment(e.to_string()))?;
        if threshold == 0 || threshold > keys.len() {
            return Err(DaError::BadCommitment(format!("threshold {threshold} outside 1..={}", keys.len())));
        }
        Ok(InProcessDa { keys, committee, threshold, codec, par: Parallelism::Rayon, squares: Mutex::default() })
    }

    /// A committee of `n` deterministic test keys with the BFT quorum threshold.
    pub fn for_testing(n: u64) -> Self {
        let keys: Vec<Keypair> = (0..n).map(|i| Keypair::for_testing(10_000 + i)).collect();
        let committee_quorum = n as usize - (n as usize).saturating_sub(1) / 3;
        // Keys are distinct and the threshold is in range, so this cannot fail.
        Self::new(keys, committee_quorum, CodecId::default()).expect("test committee is valid")
    }

    /// The DA committee certificates verify against.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The certificate threshold.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The stored square for `data_root`, if any.
    pub fn square(&self, data_root: &Digest) -> Option<Arc<CommittedSquare>> {
        self.squares.lock().unwrap_or_else(|e| e.into_inner()).get(data_root).cloned()
    }

    fn submit_now(&self, blobs: Vec<Blob>) -> Result<AvailabilityCertificate, DaError> {
        let square = CommittedSquare::build(&blobs, self.codec, self.par).map_err(to_da_error)?;
        let commitment = square.commitment();
        let digest = commitment.attestation_digest();
        let votes: Vec<(usize, lamina_primitives::Signature)> =
            self.keys.iter().enumerate().take(self.threshold).map(|(i, k)| (i, k.sign(&digest))).collect();
        let signatures = QuorumCertificate::from_votes(digest, self.keys.len(), &votes);
        self.squares.lock().unwrap_or_else(|e| e.into_inner()).insert(square.data_root(), Arc::new(square));
        Ok(AvailabilityCertificate { commitment, signatures })
    }

    fn get_now(&self, commitment: &DataCommitment, namespace: Namespace) -> Result<Vec<Vec<u8>>, DaError> {
        let square = self
            .square(&commitment.data_root)
            .ok_or_else(|| DaError::Unavailable(format!("no square {:?}", commitment.data_root)))?;
        square.header().check_commitment(commitment).map_err(|e| DaError::BadCommitment(e.to_string()))?;
        let proof = NamespaceProof::build(&square, namespace).map_err(to_da_error)?;
        proof.verify(&commitment.data_root, namespace).map_err(to_da_error)
    }
}

impl DataAvailability for InProcessDa {
    fn submit(&self, blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send {
        let out = self.submit_now(blobs);
        async move { out }
    }

    fn get_namespace(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send {
        let out = self.get_now(commitment, namespace);
        async move { out }
    }
}
