//! blake3 digests with domain separation.
//!
//! Every hash in Lamina is computed under a [`Domain`]: a context string such as
//! `"lamina tx id v1"` from which a 32-byte key is derived once with
//! `blake3::derive_key`; data is then hashed with `blake3::keyed_hash` under that key.
//! Two domains never produce related outputs, so a leaf can never be confused with an
//! inner node, a vote with a transaction, and so on. Keyed hashing costs the same as
//! plain hashing, so there is no per-call overhead for the separation.

use std::fmt;
use std::sync::OnceLock;

/// A 32-byte blake3 output.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest. Never the output of a real hash in practice; used only as a
    /// sentinel (for example the parent of the genesis block). Verifiers must not accept
    /// it as a root of anything (the "zero root" lesson of the Nomad bridge).
    pub const ZERO: Digest = Digest([0u8; 32]);

    /// Bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex form (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64-character hex form.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Digest(out))
    }

    /// True for [`Digest::ZERO`].
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; 32]> for Digest {
    fn from(b: [u8; 32]) -> Self {
        Digest(b)
    }
}

impl From<&ArchivedDigest> for Digest {
    fn from(a: &ArchivedDigest) -> Self {
        Digest(a.0)
    }
}

crate::hex_serde!(Digest, 32);

/// A hashing context. Create one `static` per purpose with [`Domain::new`]; the key is
/// derived on first use and cached.
pub struct Domain {
    context: &'static str,
    key: OnceLock<[u8; 32]>,
}

impl Domain {
    /// A domain for `context`, which must be unique in the whole engine and should end
    /// with a version (`"lamina merkle leaf v1"`).
    pub const fn new(context: &'static str) -> Self {
        Domain { context, key: OnceLock::new() }
    }

    /// The context string.
    pub fn context(&self) -> &'static str {
        self.context
    }

    /// The derived 32-byte key (`blake3::derive_key(context, b"")`).
    pub fn key(&self) -> &[u8; 32] {
        self.key.get_or_init(|| blake3::derive_key(self.context, b""))
    }

    /// Hashes `data` under this domain.
    #[inline]
    pub fn hash(&self, data: &[u8]) -> Digest {
        Digest(*blake3::keyed_hash(self.key(), data).as_bytes())
    }

    /// Hashes the concatenation of `parts` under this domain, without copying.
    #[inline]
    pub fn hash_parts(&self, parts: &[&[u8]]) -> Digest {
        let mut h = self.hasher();
        for p in parts {
            h.update(p);
        }
        Digest(*h.finalize().as_bytes())
    }

    /// An incremental hasher keyed with this domain.
    #[inline]
    pub fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.key())
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({:?})", self.context)
    }
}

/// Every domain the engine uses, in one place so that none is reused by accident.
/// A later layer may define its own under `"lamina <layer> <purpose> v<N>"`.
pub mod domains {
    use super::Domain;

    /// Transaction id: hash of a transaction's signing bytes.
    pub static TX_ID: Domain = Domain::new("lamina tx id v1");
    /// What a transaction's signature covers on a network whose transactions bind the
    /// network id ([`crate::TxScope::Network`]): hash of the network id and the tx id.
    pub static TX_NETWORK: Domain = Domain::new("lamina tx network v1");
    /// Leaf of the generic binary Merkle tree.
    pub static MERKLE_LEAF: Domain = Domain::new("lamina merkle leaf v1");
    /// Inner node of the generic binary Merkle tree.
    pub static MERKLE_NODE: Domain = Domain::new("lamina merkle node v1");
    /// Root of an empty generic Merkle tree.
    pub static MERKLE_EMPTY: Domain = Domain::new("lamina merkle empty v1");
    /// What validators sign to finalize a block (over the header digest). Defined here,
    /// not in consensus, so every layer can verify the ordered log's certificates.
    pub static CONSENSUS_FINALIZE: Domain = Domain::new("lamina consensus finalize v1");
    /// Block header digest (what a consensus vote refers to).
    pub static BLOCK_HEADER: Domain = Domain::new("lamina block header v1");
    /// Digest of the list of batch references carried by a block.
    pub static BLOCK_PAYLOAD: Domain = Domain::new("lamina block payload v1");
    /// What a DA node signs when it attests that it stores its part of a square.
    pub static DA_ATTESTATION: Domain = Domain::new("lamina da attestation v1");
    /// What a DA node of a committee changed by vote signs: the attestation digest bound
    /// to the committee's id ([`crate::DaCommittee`]).
    pub static DA_ATTESTATION_COMMITTEE: Domain = Domain::new("lamina da attestation committee v1");
    /// A DA committee's id: its threshold and members, in order.
    pub static DA_COMMITTEE: Domain = Domain::new("lamina da committee v1");
    /// Batch contents (a chain's blob) digest.
    pub static BATCH: Domain = Domain::new("lamina batch v1");
    /// Transcript from which batch-verification coefficients are drawn.
    pub static SIG_BATCH_TRANSCRIPT: Domain = Domain::new("lamina ed25519 batch transcript v1");
    /// Execution checkpoint claim digest.
    pub static CHECKPOINT_CLAIM: Domain = Domain::new("lamina checkpoint claim v1");
    /// Genesis file digest.
    pub static GENESIS: Domain = Domain::new("lamina genesis v1");
    /// Network handshake binding (node certificate to node key).
    pub static NET_IDENTITY: Domain = Domain::new("lamina net identity v1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_identical_inputs() {
        let a = domains::MERKLE_LEAF.hash(b"x");
        let b = domains::MERKLE_NODE.hash(b"x");
        assert_ne!(a, b);
        assert_eq!(a, domains::MERKLE_LEAF.hash(b"x"));
    }

    #[test]
    fn hash_parts_equals_concatenation() {
        let d = &domains::BATCH;
        assert_eq!(d.hash_parts(&[b"ab", b"", b"cd"]), d.hash(b"abcd"));
    }

    #[test]
    fn keyed_hash_matches_derive_key_definition() {
        let key = blake3::derive_key("lamina tx id v1", b"");
        let want = blake3::keyed_hash(&key, b"payload");
        assert_eq!(domains::TX_ID.hash(b"payload").0, *want.as_bytes());
    }

    #[test]
    fn hex_round_trip() {
        let d = domains::BATCH.hash(b"q");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(Digest::from_hex("zz").is_err());
    }
}
