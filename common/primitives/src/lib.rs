//! Lamina's pure building blocks: hashes, keys, signatures, ids, core types, Merkle trees, validated codec.
//!
//! Everything here is deterministic computation: no I/O, no clock, no threads, no OS
//! randomness. Every other crate builds on these types.
//!
//! * [`hash`]: blake3 [`Digest`]s under domain-separated [`Domain`]s.
//! * [`sig`]: ed25519 keys and the engine's one verification rule (ZIP-215), single and
//!   batch, which always agree.
//! * [`ids`]: [`ChainId`], [`Namespace`], [`Height`], [`View`], [`NodeId`], [`TxId`].
//! * [`tx`]: the signed [`Transaction`] envelope and the [`Batch`] (a chain's blob).
//! * [`cert`]: [`Committee`] and [`QuorumCertificate`].
//! * [`block`]: DA commitments and certificates, blocks and finalized blocks.
//! * [`merkle`]: a binary Merkle tree with inclusion proofs.
//! * [`codec`]: rkyv encoding, validated decoding with per-type size limits.

pub mod block;
pub mod cert;
pub mod codec;
pub mod hash;
pub mod ids;
pub mod merkle;
pub mod sig;
pub mod tx;

pub use block::{AvailabilityCertificate, Block, BlockHeader, DaCommittee, DataCommitment, FinalizedBlock};
pub use cert::{CertError, Committee, QuorumCertificate};
pub use codec::{Codec, CodecError, Wire, decode, encode};
pub use hash::{Digest, Domain, domains};
pub use ids::{ChainId, Height, Namespace, NodeId, Round, TxId, View};
pub use merkle::{InclusionProof, MerkleTree, ProofError};
pub use sig::{Keypair, PublicKey, SecretKey, Signature, SignatureError, SignedDigest, VerifyingKey};
pub use tx::{Batch, Transaction, TxScope};

/// Implements serde for a fixed-size byte newtype as a lowercase hex string.
#[doc(hidden)]
#[macro_export]
macro_rules! hex_serde {
    ($t:ty, $n:expr) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                let mut out = [0u8; $n];
                hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
                Ok(Self(out))
            }
        }
    };
}
