//! What crosses layers: DA commitments and certificates, batch references, blocks and
//! finalized blocks of the ordered log.

use crate::cert::{CertError, Committee, QuorumCertificate};
use crate::hash::{Digest, domains};
use crate::ids::{Height, Namespace, NodeId, View};

/// What a DA certificate attests: a square's data root and enough metadata to fetch and
/// check it. DA nodes sign [`DataCommitment::attestation_digest`].
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DataCommitment {
    /// Root over the square's row and column roots.
    pub data_root: Digest,
    /// Width `k` of the original (unextended) square.
    pub square_width: u32,
    /// Erasure codec id; codecs are not byte-compatible, so the id is committed.
    pub codec: u8,
    /// The namespaces present in the square, strictly increasing. Part of the attested
    /// statement: a DA node checks it against the namespace ranges of the row roots
    /// before signing, so executors may skip squares that do not hold their namespace.
    pub namespaces: Vec<Namespace>,
    /// Total bytes of blob data in the square (for accounting and metrics).
    pub blob_bytes: u64,
}

impl DataCommitment {
    /// The digest DA nodes sign.
    pub fn attestation_digest(&self) -> Digest {
        let mut h = domains::DA_ATTESTATION.hasher();
        h.update(self.data_root.as_bytes());
        h.update(&self.square_width.to_le_bytes());
        h.update(&[self.codec]);
        h.update(&(self.namespaces.len() as u64).to_le_bytes());
        for ns in &self.namespaces {
            h.update(&ns.0);
        }
        h.update(&self.blob_bytes.to_le_bytes());
        Digest(*h.finalize().as_bytes())
    }

    /// True if the namespace list is strictly increasing (no duplicates).
    pub fn namespaces_sorted(&self) -> bool {
        self.namespaces.windows(2).all(|w| w[0] < w[1])
    }
}

/// A data commitment together with the DA nodes' signatures: proof that the data can be
/// retrieved. Consensus proposals carry these; they are digests only, never payloads.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AvailabilityCertificate {
    /// What is attested.
    pub commitment: DataCommitment,
    /// DA-committee signatures over `commitment.attestation_digest()`.
    pub signatures: QuorumCertificate,
}

impl AvailabilityCertificate {
    /// Verifies the certificate against the DA committee and its threshold.
    pub fn verify(&self, da_committee: &Committee, threshold: usize) -> Result<(), CertError> {
        self.signatures.verify(da_committee, &self.commitment.attestation_digest(), threshold)
    }
}

/// A DA committee: the DA nodes that store squares and attest them, in order (their
/// index decides which columns each stores), and the signatures a certificate needs.
///
/// The genesis committee's nodes sign [`DataCommitment::attestation_digest`], as they
/// always did (`tag` is `None`), so the certificates of a log written before committees
/// could change keep verifying. A committee changed by vote has a `tag`, its id
/// ([`DaCommittee::id_of`]), and its nodes sign the attestation digest bound to it
/// ([`DaCommittee::digest_for`]): an attestation a node gave as a member of one committee
/// (holding that committee's columns) never counts for another, where its position, and
/// so its columns, may differ. A certificate carries the digest it signs, so the
/// committee it was made for is read off it ([`DaCommittee::made`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DaCommittee {
    /// The DA nodes, in order.
    pub members: Committee,
    /// Signatures a certificate needs (at most the committee's size).
    pub threshold: usize,
    /// `None` for the genesis committee; otherwise [`DaCommittee::id_of`] of it.
    pub tag: Option<Digest>,
}

impl DaCommittee {
    /// The genesis committee (attestations sign the plain digest).
    pub fn genesis(members: Committee, threshold: usize) -> Self {
        DaCommittee { members, threshold, tag: None }
    }

    /// A committee changed by vote (attestations bind its id).
    pub fn governed(members: Committee, threshold: usize) -> Self {
        let tag = Some(Self::id_of(&members, threshold));
        DaCommittee { members, threshold, tag }
    }

    /// The id of a committee: its threshold and its members, in order.
    pub fn id_of(members: &Committee, threshold: usize) -> Digest {
        let mut h = domains::DA_COMMITTEE.hasher();
        h.update(&(threshold as u64).to_le_bytes());
        h.update(&(members.members.len() as u64).to_le_bytes());
        for m in &members.members {
            h.update(&m.0);
        }
        Digest(*h.finalize().as_bytes())
    }

    /// The digest this committee's nodes sign for `commitment`.
    pub fn digest_for(&self, commitment: &DataCommitment) -> Digest {
        Self::digest_with(self.tag.as_ref(), commitment)
    }

    /// The digest the nodes of the committee tagged `tag` sign for `commitment`
    /// ([`DaCommittee::digest_for`]).
    pub fn digest_with(tag: Option<&Digest>, commitment: &DataCommitment) -> Digest {
        let plain = commitment.attestation_digest();
        match tag {
            None => plain,
            Some(id) => {
                let mut h = domains::DA_ATTESTATION_COMMITTEE.hasher();
                h.update(id.as_bytes());
                h.update(plain.as_bytes());
                Digest(*h.finalize().as_bytes())
            }
        }
    }

    /// True if `cert` was made for this committee (it signs this committee's digest);
    /// says nothing about its signatures ([`DaCommittee::verify`]).
    pub fn made(&self, cert: &AvailabilityCertificate) -> bool {
        cert.signatures.digest == self.digest_for(&cert.commitment)
    }

    /// Verifies `cert` against this committee and its threshold.
    pub fn verify(&self, cert: &AvailabilityCertificate) -> Result<(), CertError> {
        cert.signatures.verify(&self.members, &self.digest_for(&cert.commitment), self.threshold)
    }
}

/// A block header. Consensus votes on [`BlockHeader::digest`].
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BlockHeader {
    /// Position in the ordered log (genesis is 0; the first block is 1).
    pub height: Height,
    /// Consensus view in which the block was proposed.
    pub view: View,
    /// Digest of the parent block's header ([`Digest::ZERO`] for the first block).
    pub parent: Digest,
    /// The leader that proposed it.
    pub proposer: NodeId,
    /// [`Block::payload_digest`] of the block's batch references.
    pub payload: Digest,
    /// Proposer's wall clock in milliseconds since the Unix epoch. Informational only:
    /// nothing downstream of the log may depend on it for correctness.
    pub timestamp_ms: u64,
}

impl BlockHeader {
    /// The digest signed by votes and certificates.
    pub fn digest(&self) -> Digest {
        let mut h = domains::BLOCK_HEADER.hasher();
        h.update(&self.height.0.to_le_bytes());
        h.update(&self.view.0.to_le_bytes());
        h.update(self.parent.as_bytes());
        h.update(&self.proposer.0);
        h.update(self.payload.as_bytes());
        h.update(&self.timestamp_ms.to_le_bytes());
        Digest(*h.finalize().as_bytes())
    }

    /// The digest validators sign to finalize this block; a [`FinalizedBlock`]'s
    /// certificate is over exactly this digest.
    pub fn finalization_digest(&self) -> Digest {
        domains::CONSENSUS_FINALIZE.hash(self.digest().as_bytes())
    }
}

/// A block: a header and the availability certificates of the batches it orders.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// Batches ordered by this block, each with its availability certificate.
    pub batches: Vec<AvailabilityCertificate>,
}

impl Block {
    /// Commitment to a list of batches: the hash of their attestation digests in order.
    /// (Signatures are not committed: two certificates for the same data are equivalent.)
    pub fn payload_digest(batches: &[AvailabilityCertificate]) -> Digest {
        let mut h = domains::BLOCK_PAYLOAD.hasher();
        h.update(&(batches.len() as u64).to_le_bytes());
        for b in batches {
            h.update(b.commitment.attestation_digest().as_bytes());
        }
        Digest(*h.finalize().as_bytes())
    }

    /// True if the header's payload field matches the batches.
    pub fn payload_matches(&self) -> bool {
        self.header.payload == Self::payload_digest(&self.batches)
    }

    /// The header digest.
    pub fn digest(&self) -> Digest {
        self.header.digest()
    }
}

/// An entry of the ordered log: a block and the certificate that finalized it.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FinalizedBlock {
    /// The block.
    pub block: Block,
    /// 2f+1 validator signatures over [`BlockHeader::finalization_digest`].
    pub certificate: QuorumCertificate,
}

impl FinalizedBlock {
    /// Verifies the finality certificate against the validator committee (2f+1) and that
    /// the header commits to the batches carried. Anyone downstream of the log (execution,
    /// settlement, bridge relayers) checks blocks with this before using them.
    pub fn verify(&self, validators: &Committee) -> Result<(), CertError> {
        if !self.block.payload_matches() {
            return Err(CertError::WrongDigest {
                expected: self.block.header.payload,
                actual: Block::payload_digest(&self.block.batches),
            });
        }
        self.certificate.verify_quorum(validators, &self.block.header.finalization_digest())
    }

    /// The block's height.
    pub fn height(&self) -> Height {
        self.block.header.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::Keypair;

    #[test]
    fn digests_change_with_every_field() {
        let base = BlockHeader {
            height: Height(1),
            view: View(1),
            parent: Digest::ZERO,
            proposer: Keypair::for_testing(0).public(),
            payload: Digest::ZERO,
            timestamp_ms: 5,
        };
        let d = base.digest();
        let mut h = base.clone();
        h.height = Height(2);
        assert_ne!(h.digest(), d);
        let mut h = base.clone();
        h.view = View(2);
        assert_ne!(h.digest(), d);
        let mut h = base.clone();
        h.timestamp_ms = 6;
        assert_ne!(h.digest(), d);

        let c = DataCommitment { square_width: 32, ..Default::default() };
        let mut c2 = c.clone();
        c2.namespaces.push(Namespace::SETTLEMENT);
        assert_ne!(c.attestation_digest(), c2.attestation_digest());
    }

    fn certify(keys: &[Keypair], committee: &DaCommittee, commitment: &DataCommitment) -> AvailabilityCertificate {
        let digest = committee.digest_for(commitment);
        let votes: Vec<(usize, crate::Signature)> =
            keys.iter().enumerate().map(|(i, k)| (i, k.sign(&digest))).collect();
        AvailabilityCertificate {
            commitment: commitment.clone(),
            signatures: QuorumCertificate::from_votes(digest, keys.len(), &votes),
        }
    }

    #[test]
    fn an_attestation_counts_only_for_the_committee_it_was_made_for() {
        let keys: Vec<Keypair> = (0..4).map(Keypair::for_testing).collect();
        let members = Committee::new(keys.iter().map(|k| k.public()).collect()).unwrap();
        let genesis = DaCommittee::genesis(members.clone(), 3);
        let commitment = DataCommitment { square_width: 4, ..Default::default() };
        // The genesis committee signs the plain digest, as before committees changed.
        assert_eq!(genesis.digest_for(&commitment), commitment.attestation_digest());
        let old = certify(&keys, &genesis, &commitment);
        assert!(genesis.made(&old));
        genesis.verify(&old).unwrap();
        assert!(old.verify(&members, 3).is_ok());

        // The same keys as a committee changed by vote (another threshold, or the same
        // nodes in another order: other columns each) sign another digest.
        let voted = DaCommittee::governed(members.clone(), 2);
        let reordered = {
            let mut m = members.members.clone();
            m.swap(0, 1);
            DaCommittee::governed(Committee::new(m).unwrap(), 3)
        };
        let new = certify(&keys, &voted, &commitment);
        assert!(voted.made(&new) && !genesis.made(&new) && !reordered.made(&new));
        voted.verify(&new).unwrap();
        assert!(genesis.verify(&new).is_err(), "a certificate of another committee verifies");
        assert!(voted.verify(&old).is_err(), "the genesis committee's certificate verifies for another");
        assert!(reordered.verify(&new).is_err());
        assert_ne!(DaCommittee::id_of(&members, 2), DaCommittee::id_of(&members, 3));
    }
}
