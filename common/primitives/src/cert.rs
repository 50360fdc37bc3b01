//! Committees and quorum certificates.
//!
//! A [`QuorumCertificate`] is a set of ed25519 signatures, by members of a [`Committee`],
//! over one domain-separated digest, with a bitmap saying who signed. Consensus uses
//! them for votes (2f+1 of the validators); DA uses them for availability certificates
//! (a configurable threshold of the DA nodes).

use crate::hash::Digest;
use crate::sig::{self, PublicKey, Signature, SignedDigest};

/// An ordered set of members; a member's position is its bit in signer bitmaps.
#[derive(
    Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Committee {
    /// Members in bitmap order. No duplicates (enforced by [`Committee::new`]).
    pub members: Vec<PublicKey>,
}

/// Why a committee or certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// A committee listed the same key twice.
    #[error("committee lists key {0:?} twice")]
    DuplicateMember(PublicKey),
    /// A committee had no members.
    #[error("committee is empty")]
    EmptyCommittee,
    /// The certificate is over a different digest than the one expected.
    #[error("certificate signs {actual:?}, expected {expected:?}")]
    WrongDigest {
        /// The digest the verifier expected.
        expected: Digest,
        /// The digest in the certificate.
        actual: Digest,
    },
    /// The bitmap names a signer outside the committee.
    #[error("signer bitmap has bits beyond committee size {size}")]
    BitmapOutOfRange {
        /// The committee size.
        size: usize,
    },
    /// Not enough distinct signers.
    #[error("{signers} signers, {threshold} required")]
    BelowThreshold {
        /// Distinct signers in the certificate.
        signers: usize,
        /// Required signers.
        threshold: usize,
    },
    /// Signature count does not match the bitmap.
    #[error("{signatures} signatures for {signers} signers")]
    CountMismatch {
        /// Set bits.
        signers: usize,
        /// Signatures present.
        signatures: usize,
    },
    /// At least one signature is invalid.
    #[error("invalid signature in certificate")]
    BadSignature,
    /// The square certifies more blob bytes than the rules of its epoch allow (the
    /// batch size limit governance sets).
    #[error("batch of {blob_bytes} blob bytes exceeds the limit of {max}")]
    BatchTooLarge {
        /// The certified square's blob bytes.
        blob_bytes: u64,
        /// The limit.
        max: u64,
    },
}

impl Committee {
    /// A committee of distinct members.
    pub fn new(members: Vec<PublicKey>) -> Result<Self, CertError> {
        if members.is_empty() {
            return Err(CertError::EmptyCommittee);
        }
        let mut sorted = members.clone();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(CertError::DuplicateMember(w[0]));
        }
        Ok(Committee { members })
    }

    /// Number of members, `n`.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Faults tolerated, `f = ⌊(n-1)/3⌋`.
    pub fn max_faulty(&self) -> usize {
        (self.members.len().saturating_sub(1)) / 3
    }

    /// BFT quorum `n - f` (= 2f+1 when n = 3f+1).
    pub fn quorum(&self) -> usize {
        self.members.len() - self.max_faulty()
    }

    /// A member's bitmap position.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.members.iter().position(|m| m == key)
    }

    /// The member at `index`.
    pub fn member(&self, index: usize) -> Option<&PublicKey> {
        self.members.get(index)
    }
}

/// Signatures by committee members over one digest.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct QuorumCertificate {
    /// The domain-separated digest every signer signed.
    pub digest: Digest,
    /// Bit `i` (byte `i/8`, bit `i%8`) set when member `i` signed.
    pub signers: Vec<u8>,
    /// One signature per set bit, in increasing member order.
    pub signatures: Vec<Signature>,
}

impl QuorumCertificate {
    /// Assembles a certificate from `(member index, signature)` pairs (any order;
    /// duplicates of an index keep the first signature).
    pub fn from_votes(digest: Digest, committee_size: usize, votes: &[(usize, Signature)]) -> Self {
        let mut sorted: Vec<(usize, Signature)> = votes.iter().copied().filter(|(i, _)| *i < committee_size).collect();
        sorted.sort_by_key(|(i, _)| *i);
        sorted.dedup_by_key(|(i, _)| *i);
        let mut signers = vec![0u8; committee_size.div_ceil(8)];
        for (i, _) in &sorted {
            signers[i / 8] |= 1 << (i % 8);
        }
        QuorumCertificate { digest, signers, signatures: sorted.into_iter().map(|(_, s)| s).collect() }
    }

    /// Member indices that signed, increasing.
    pub fn signer_indices(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (byte_idx, byte) in self.signers.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    out.push(byte_idx * 8 + bit);
                }
            }
        }
        out
    }

    /// Checks shape and threshold without checking signatures: cheap, for early
    /// rejection before the expensive part.
    pub fn check_shape(
        &self,
        committee: &Committee,
        expected: &Digest,
        threshold: usize,
    ) -> Result<Vec<usize>, CertError> {
        if &self.digest != expected {
            return Err(CertError::WrongDigest { expected: *expected, actual: self.digest });
        }
        let signers = self.signer_indices();
        if signers.last().is_some_and(|&i| i >= committee.size()) || self.signers.len() > committee.size().div_ceil(8) {
            return Err(CertError::BitmapOutOfRange { size: committee.size() });
        }
        if signers.len() != self.signatures.len() {
            return Err(CertError::CountMismatch { signers: signers.len(), signatures: self.signatures.len() });
        }
        if signers.len() < threshold {
            return Err(CertError::BelowThreshold { signers: signers.len(), threshold });
        }
        Ok(signers)
    }

    /// Verifies that at least `threshold` distinct members of `committee` signed
    /// `expected` (one batch verification).
    pub fn verify(&self, committee: &Committee, expected: &Digest, threshold: usize) -> Result<(), CertError> {
        let signers = self.check_shape(committee, expected, threshold)?;
        let items: Vec<SignedDigest> = signers
            .iter()
            .zip(&self.signatures)
            .map(|(&i, s)| SignedDigest { public_key: committee.members[i], message: *expected, signature: *s })
            .collect();
        sig::verify_batch(&items).map_err(|_| CertError::BadSignature)
    }

    /// Verifies against the committee's BFT quorum (2f+1).
    pub fn verify_quorum(&self, committee: &Committee, expected: &Digest) -> Result<(), CertError> {
        self.verify(committee, expected, committee.quorum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::domains;
    use crate::sig::Keypair;

    fn setup(n: u64) -> (Vec<Keypair>, Committee) {
        let keys: Vec<Keypair> = (0..n).map(Keypair::for_testing).collect();
        let c = Committee::new(keys.iter().map(|k| k.public()).collect()).unwrap();
        (keys, c)
    }

    #[test]
    fn quorum_sizes() {
        for (n, q) in [(1, 1), (4, 3), (5, 4), (7, 5), (10, 7)] {
            let (_, c) = setup(n);
            assert_eq!(c.quorum(), q, "n={n}");
        }
    }

    #[test]
    fn certificate_verifies_and_rejects_tampering() {
        let (keys, c) = setup(4);
        let d = domains::BLOCK_HEADER.hash(b"block");
        let votes: Vec<(usize, Signature)> = [3usize, 0, 2].iter().map(|&i| (i, keys[i].sign(&d))).collect();
        let qc = QuorumCertificate::from_votes(d, 4, &votes);
        assert_eq!(qc.signer_indices(), vec![0, 2, 3]);
        qc.verify_quorum(&c, &d).unwrap();

        let other = domains::BLOCK_HEADER.hash(b"other");
        assert!(matches!(qc.verify_quorum(&c, &other), Err(CertError::WrongDigest { .. })));

        let mut few = qc.clone();
        few.signers = vec![0b0000_0101];
        few.signatures.pop();
        assert!(matches!(few.verify_quorum(&c, &d), Err(CertError::BelowThreshold { .. })));

        let mut bad = qc.clone();
        bad.signatures.swap(0, 1);
        assert_eq!(bad.verify_quorum(&c, &d), Err(CertError::BadSignature));

        let mut out = qc.clone();
        out.signers = vec![0b1000_1101];
        out.signatures.push(out.signatures[0]);
        assert!(matches!(out.verify_quorum(&c, &d), Err(CertError::BitmapOutOfRange { .. })));

        let mut mismatch = qc;
        mismatch.signatures.push(mismatch.signatures[0]);
        assert!(matches!(mismatch.verify_quorum(&c, &d), Err(CertError::CountMismatch { .. })));
    }

    #[test]
    fn duplicate_members_rejected() {
        let k = Keypair::for_testing(1).public();
        assert!(matches!(Committee::new(vec![k, k]), Err(CertError::DuplicateMember(_))));
        assert_eq!(Committee::new(vec![]), Err(CertError::EmptyCommittee));
    }
}
