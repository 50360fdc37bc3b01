//! The signing and verification seam of the core.
//!
//! The core signs and verifies through two small traits so that a driver can choose how
//! the work is done (a node uses [`Keypair`] and [`Zip215`]; the deterministic simulation
//! shares one memoizing wrapper around the same two between all simulated nodes, so a
//! signature checked by one node is not re-checked by the others). Whatever the
//! implementation, the answer must be the ZIP-215 answer of
//! [`lamina_primitives::sig`]: verification is a pure function.

use lamina_primitives::sig::{self, SignedDigest};
use lamina_primitives::{Digest, Keypair, PublicKey, Signature};

/// Produces this validator's signatures.
pub trait Signer: Send + Sync {
    /// The validator's public key.
    fn public_key(&self) -> PublicKey;
    /// Signs a domain-separated digest (deterministic ed25519).
    fn sign(&self, digest: &Digest) -> Signature;
}

impl Signer for Keypair {
    fn public_key(&self) -> PublicKey {
        self.public()
    }

    fn sign(&self, digest: &Digest) -> Signature {
        Keypair::sign(self, digest)
    }
}

/// Verifies signatures under the engine's one rule (ZIP-215).
pub trait Verifier: Send + Sync {
    /// For each entry, whether its signature is valid.
    fn verify_each(&self, items: &[SignedDigest]) -> Vec<bool>;

    /// Whether every entry is valid.
    fn verify_all(&self, items: &[SignedDigest]) -> bool {
        self.verify_each(items).iter().all(|ok| *ok)
    }
}

/// The real verifier: ZIP-215 through `lamina_primitives::sig`, batched.
#[derive(Clone, Copy, Debug, Default)]
pub struct Zip215;

impl Verifier for Zip215 {
    fn verify_each(&self, items: &[SignedDigest]) -> Vec<bool> {
        match items {
            [] => Vec::new(),
            [one] => vec![sig::verify(&one.public_key, &one.message, &one.signature).is_ok()],
            _ => sig::verify_batch_each(items),
        }
    }

    fn verify_all(&self, items: &[SignedDigest]) -> bool {
        sig::verify_batch(items).is_ok()
    }
}
