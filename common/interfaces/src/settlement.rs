//! Settlement: where execution's claims about state become final.

use std::future::Future;

use lamina_primitives::{ChainId, Digest, Height, Keypair, PublicKey, Signature, domains, sig};

/// An execution node's claim: "after applying every block of the log up to `height`,
/// chain `chain_id`'s state root is `state_root`".
#[derive(
    Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct CheckpointClaim {
    /// The chain.
    pub chain_id: ChainId,
    /// Log height up to and including which the chain was executed.
    pub height: Height,
    /// Authenticated state root after that height.
    pub state_root: Digest,
    /// Data root of the last DA square at or below `height` that held this chain's data
    /// (zero if none yet): lets a verifier fetch the inputs.
    pub data_root: Digest,
    /// Root over the receipts of every transaction executed up to `height`, chained
    /// block by block.
    pub receipts_root: Digest,
    /// The execution node that makes the claim.
    pub claimer: PublicKey,
    /// Claimer's signature over [`CheckpointClaim::digest`].
    pub signature: Signature,
}

impl CheckpointClaim {
    /// The signed digest (every field except the signature).
    pub fn digest(&self) -> Digest {
        let mut h = domains::CHECKPOINT_CLAIM.hasher();
        h.update(&self.chain_id.0.to_le_bytes());
        h.update(&self.height.0.to_le_bytes());
        h.update(self.state_root.as_bytes());
        h.update(self.data_root.as_bytes());
        h.update(self.receipts_root.as_bytes());
        h.update(&self.claimer.0);
        Digest(*h.finalize().as_bytes())
    }

    /// Fills `claimer` and `signature` with `key`.
    pub fn sign(mut self, key: &Keypair) -> Self {
        self.claimer = key.public();
        self.signature = key.sign(&self.digest());
        self
    }

    /// Checks the claimer's signature.
    pub fn verify_signature(&self) -> Result<(), sig::SignatureError> {
        sig::verify(&self.claimer, &self.digest(), &self.signature)
    }
}

impl lamina_primitives::Wire for CheckpointClaim {
    const NAME: &'static str = "CheckpointClaim";
    const MAX_SIZE: usize = 512;
}

/// Why a claim could not be posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// Settlement is unreachable or busy; retrying may succeed.
    #[error("settlement unavailable: {0}")]
    Unavailable(String),
    /// The claim was refused (bad signature, unknown chain, not newer than the last).
    #[error("claim rejected: {0}")]
    Rejected(String),
}

/// Where execution posts its checkpoint claims.
///
/// # Contract
///
/// `post_claim` returns once the claim is durably on its way to the settlement layer
/// (for the log-based implementation: accepted by consensus intake under the settlement
/// namespace). Posting the same claim twice is harmless. A claim's height must increase
/// per chain and claimer; settlement decides finality in log heights, not wall time.
pub trait Settlement: Send + Sync {
    /// Posts a signed claim.
    fn post_claim(&self, claim: CheckpointClaim) -> impl Future<Output = Result<(), SettlementError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_claim_verifies_and_binds_fields() {
        let key = Keypair::for_testing(3);
        let claim = CheckpointClaim {
            chain_id: ChainId(1),
            height: Height(10),
            state_root: domains::BATCH.hash(b"s"),
            data_root: Digest::ZERO,
            receipts_root: Digest::ZERO,
            claimer: PublicKey::default(),
            signature: Signature::default(),
        }
        .sign(&key);
        claim.verify_signature().unwrap();
        let mut c = claim.clone();
        c.height = Height(11);
        assert!(c.verify_signature().is_err());
        let bytes = lamina_primitives::encode(&claim).unwrap();
        assert_eq!(lamina_primitives::decode::<CheckpointClaim>(&bytes).unwrap(), claim);
    }
}
