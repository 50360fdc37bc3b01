//! rkyv encoding with validated decoding and per-type size limits.
//!
//! Every type that goes over the network or to disk implements [`Wire`], which names a
//! maximum encoded size. Untrusted bytes are decoded in this order, and only here:
//!
//! 1. size cap: inputs longer than [`Wire::MAX_SIZE`] are rejected before any parsing;
//! 2. `rkyv::access` validation (bytecheck): every relative pointer in bounds, every
//!    enum tag and `bool` valid, UTF-8 checked;
//! 3. deserialization, or zero-copy use of the validated archive.
//!
//! The archive format is pinned by workspace features: little-endian, 32-bit relative
//! pointers, unaligned (so bytes straight from a QUIC frame or an mmap need no copy).
//! Golden vectors in `tests/golden.rs` freeze the bytes of every type.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Why bytes could not be decoded (or, rarely, a value encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Input longer than the type allows; rejected before parsing.
    #[error("{type_name}: {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The type being decoded.
        type_name: &'static str,
        /// Input length.
        size: usize,
        /// The type's limit.
        max: usize,
    },
    /// Validation failed: the bytes are not a well-formed archive of the type.
    #[error("{type_name}: malformed input: {reason}")]
    Malformed {
        /// The type being decoded.
        type_name: &'static str,
        /// What the validator reported.
        reason: String,
    },
    /// Encoding failed (allocation), or the encoding exceeds the type's own limit.
    #[error("{type_name}: cannot encode: {reason}")]
    Encode {
        /// The type being encoded.
        type_name: &'static str,
        /// Why.
        reason: String,
    },
}

/// A type with an rkyv encoding that validated decoding can use: what a generic part of
/// a [`Wire`] type (a state machine's failure inside a receipt, say) must be. Every type
/// with these derives and validating archives has it.
pub trait Codec:
    Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Sized
{
}

impl<T> Codec for T where
    T: Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + Deserialize<T, HighDeserializer<rancor::Error>>,
        > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// A type with a frozen wire/disk encoding and a size limit.
pub trait Wire: Codec {
    /// Name used in errors and metrics.
    const NAME: &'static str;
    /// Largest accepted encoding, in bytes.
    const MAX_SIZE: usize;
}

/// Encodes a value. Fails only if the encoding would exceed the type's own limit.
pub fn encode<T: Wire>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = encode_aligned(value)?;
    Ok(bytes.into_vec())
}

/// Encodes into rkyv's aligned buffer (avoids a copy when the caller can use it).
pub fn encode_aligned<T: Wire>(value: &T) -> Result<AlignedVec, CodecError> {
    let bytes = rkyv::to_bytes::<rancor::Error>(value)
        .map_err(|e| CodecError::Encode { type_name: T::NAME, reason: e.to_string() })?;
    if bytes.len() > T::MAX_SIZE {
        return Err(CodecError::Encode {
            type_name: T::NAME,
            reason: format!("{} bytes exceeds the limit of {}", bytes.len(), T::MAX_SIZE),
        });
    }
    Ok(bytes)
}

/// Validates untrusted bytes and returns a zero-copy view of the archive.
pub fn access<T: Wire>(bytes: &[u8]) -> Result<&T::Archived, CodecError> {
    check_size::<T>(bytes)?;
    rkyv::access::<T::Archived, rancor::Error>(bytes)
        .map_err(|e| CodecError::Malformed { type_name: T::NAME, reason: e.to_string() })
}

/// Validates and deserializes untrusted bytes.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    let archived = access::<T>(bytes)?;
    rkyv::deserialize::<T, rancor::Error>(archived)
        .map_err(|e| CodecError::Malformed { type_name: T::NAME, reason: e.to_string() })
}

fn check_size<T: Wire>(bytes: &[u8]) -> Result<(), CodecError> {
    if bytes.len() > T::MAX_SIZE {
        return Err(CodecError::TooLarge { type_name: T::NAME, size: bytes.len(), max: T::MAX_SIZE });
    }
    Ok(())
}

/// Size limits, shared so that containers can derive theirs.
pub mod limits {
    /// Largest transaction payload accepted anywhere (intake may set a lower limit).
    pub const MAX_TX_PAYLOAD: usize = 1 << 20;
    /// Largest committee (validators or DA nodes).
    pub const MAX_COMMITTEE: usize = 1024;
    /// Largest number of namespaces in one square.
    pub const MAX_NAMESPACES_PER_SQUARE: usize = 1 << 16;
    /// Largest batch (one chain's blob in one square); a k = 256 square of 512-byte
    /// shares holds 32 MiB.
    pub const MAX_BATCH: usize = 64 << 20;
    /// Largest number of batches ordered by one block.
    pub const MAX_BATCHES_PER_BLOCK: usize = 4096;
}

macro_rules! wire {
    ($($t:ty => $max:expr),* $(,)?) => {
        $(impl Wire for $t {
            const NAME: &'static str = stringify!($t);
            const MAX_SIZE: usize = $max;
        })*
    };
}

use crate::block::{AvailabilityCertificate, Block, BlockHeader, DataCommitment, FinalizedBlock};
use crate::cert::{Committee, QuorumCertificate};
use crate::hash::Digest;
use crate::ids::{ChainId, Height, Namespace, TxId, View};
use crate::merkle::InclusionProof;
use crate::sig::{PublicKey, Signature};
use crate::tx::{Batch, Transaction};

const QC_MAX: usize = 64 + limits::MAX_COMMITTEE / 8 + 64 * limits::MAX_COMMITTEE + 64;
const COMMITMENT_MAX: usize = 128 + 8 * limits::MAX_NAMESPACES_PER_SQUARE;
const AVAIL_MAX: usize = COMMITMENT_MAX + QC_MAX;

wire! {
    Digest => 32,
    PublicKey => 32,
    Signature => 64,
    ChainId => 8,
    Height => 8,
    View => 8,
    Namespace => 8,
    TxId => 32,
    Transaction => limits::MAX_TX_PAYLOAD + 256,
    Batch => limits::MAX_BATCH,
    Committee => 64 + 32 * limits::MAX_COMMITTEE,
    QuorumCertificate => QC_MAX,
    InclusionProof => 64 + 32 * 64,
    DataCommitment => COMMITMENT_MAX,
    AvailabilityCertificate => AVAIL_MAX,
    BlockHeader => 256,
    Block => 256 + 64 * 1024 * 1024,
    FinalizedBlock => 256 + 64 * 1024 * 1024 + QC_MAX,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::Keypair;

    #[test]
    fn round_trip_and_access() {
        let kp = Keypair::for_testing(4);
        let tx = Transaction::new_signed(&kp, crate::TxScope::ChainOnly, ChainId(9), 1, vec![1, 2, 3]);
        let bytes = encode(&tx).unwrap();
        assert_eq!(decode::<Transaction>(&bytes).unwrap(), tx);
        let view = access::<Transaction>(&bytes).unwrap();
        assert_eq!(view.id(), tx.id());
    }

    #[test]
    fn oversize_rejected_before_parsing() {
        let big = vec![0u8; <BlockHeader as Wire>::MAX_SIZE + 1];
        assert!(matches!(decode::<BlockHeader>(&big), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn truncated_and_garbage_rejected() {
        let kp = Keypair::for_testing(4);
        let tx = Transaction::new_signed(&kp, crate::TxScope::ChainOnly, ChainId(9), 1, vec![7; 100]);
        let bytes = encode(&tx).unwrap();
        for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode::<Transaction>(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut garbage = bytes.clone();
        let n = garbage.len();
        // Corrupt the payload's relative pointer (near the end, in the root struct).
        garbage[n - 80..n - 60].iter_mut().for_each(|b| *b = 0xFF);
        assert!(decode::<Transaction>(&garbage).is_err());
    }
}
