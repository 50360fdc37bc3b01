//! What settlement transactions carry: claims, challenges and bad-encoding proofs.
//!
//! A settlement transaction is an ordinary [`Transaction`] with
//! `chain_id == `[`SETTLEMENT_CHAIN`] (the chain of [`Namespace::SETTLEMENT`](lamina_primitives::Namespace::SETTLEMENT)) whose
//! payload is the codec encoding of one [`Entry`]. The transaction's sender is the
//! account that bonds (claimer) or pays (challenger); its nonce protects against replay
//! (see [`crate::state`]).

use lamina_primitives::codec::limits;
use lamina_primitives::{ChainId, CodecError, Digest, Domain, Keypair, Transaction, TxScope, Wire};

use crate::Error;

/// The chain id of the settlement namespace ([`Namespace::SETTLEMENT`](lamina_primitives::Namespace::SETTLEMENT) as a chain).
pub const SETTLEMENT_CHAIN: ChainId = ChainId(0xFFFF_FFFF_FFFF_FF01);

/// Domain of [`witness_hash`].
pub static WITNESS: Domain = Domain::new("lamina settlement witness v1");

/// The hash a [`WitnessRef::Da`] binds: the witness bytes under [`WITNESS`].
pub fn witness_hash(witness: &[u8]) -> Digest {
    WITNESS.hash(witness)
}

pub use types::*;

// rkyv's derive generates undocumented items for the fields of enum variants.
#[allow(missing_docs)]
mod types {
    use lamina_interfaces::CheckpointClaim;
    use lamina_primitives::{DataCommitment, Digest, Namespace};

    /// One settlement action.
    #[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum Entry {
        /// A checkpoint claim; the transaction's sender must be its claimer, who bonds it.
        Claim(CheckpointClaim),
        /// A fraud proof against one step of a pending claim.
        Challenge(Challenge),
        /// A proof that the square under `data_root` is badly encoded: claims over it can
        /// never finalize.
        BadEncoding {
            /// The square's data root.
            data_root: Digest,
            /// The DA layer's bad-encoding proof
            /// ([`lamina_interfaces::EncodingFraudVerifier`]).
            proof: Vec<u8>,
        },
    }

    /// A challenge of one step of a claim: "re-executing this step from its pre-state with
    /// this witness gives other roots than the claim says".
    #[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct Challenge {
        /// The challenged claim's id.
        pub claim: Digest,
        /// Index into the claim's `steps`.
        pub step: u32,
        /// The witness of the step's pre-state (execution's encoding).
        pub witness: WitnessRef,
    }

    /// Where a challenge's witness is.
    #[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum WitnessRef {
        /// In the transaction itself.
        Inline(Vec<u8>),
        /// Too large for a transaction: the challenger put it in a DA blob. The settlement
        /// service fetches it and hands the bytes in ([`crate::ProofInputs::witness`]); the
        /// core checks them against `hash` and `len`.
        Da {
            /// The square holding the blob.
            commitment: DataCommitment,
            /// The blob's namespace.
            namespace: Namespace,
            /// [`witness_hash`](crate::witness_hash) of the witness bytes.
            hash: Digest,
            /// Length of the witness in bytes.
            len: u64,
        },
    }
}

impl Wire for Entry {
    const NAME: &'static str = "SettlementEntry";
    const MAX_SIZE: usize = limits::MAX_TX_PAYLOAD;
}

impl Entry {
    /// Builds the signed settlement transaction carrying `entry`, for a network of
    /// scope `scope` ([`lamina_interfaces::Genesis::tx_scope`]). Fails only if the entry
    /// is too large for a transaction.
    pub fn transaction(key: &Keypair, scope: TxScope, nonce: u64, entry: &Entry) -> Result<Transaction, Error> {
        let payload = lamina_primitives::encode(entry).map_err(|e| Error::Encode(e.to_string()))?;
        Ok(Transaction::new_signed(key, scope, SETTLEMENT_CHAIN, nonce, payload))
    }

    /// The entry a settlement transaction carries (the signature is not checked here).
    pub fn from_transaction(tx: &Transaction) -> Result<Entry, Error> {
        if tx.chain_id != SETTLEMENT_CHAIN {
            return Err(Error::NotSettlement(tx.chain_id));
        }
        lamina_primitives::decode::<Entry>(&tx.payload).map_err(|e| {
            // The validator's message names memory addresses: keep the error (and so the
            // events) a function of the bytes alone.
            Error::Malformed(match e {
                CodecError::TooLarge { size, max, .. } => format!("{size} bytes exceed the limit of {max}"),
                _ => "payload is not a valid settlement entry".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{DataCommitment, Namespace};

    #[test]
    fn settlement_chain_is_the_settlement_namespace() {
        assert_eq!(SETTLEMENT_CHAIN, ChainId::from(Namespace::SETTLEMENT));
        assert!(!SETTLEMENT_CHAIN.is_user_chain());
    }

    #[test]
    fn entries_round_trip_through_transactions() {
        let key = Keypair::for_testing(1);
        let entries = [
            Entry::Challenge(Challenge { claim: WITNESS.hash(b"c"), step: 3, witness: WitnessRef::Inline(vec![1, 2]) }),
            Entry::Challenge(Challenge {
                claim: WITNESS.hash(b"c"),
                step: 0,
                witness: WitnessRef::Da {
                    commitment: DataCommitment::default(),
                    namespace: Namespace::from(ChainId(4)),
                    hash: witness_hash(b"w"),
                    len: 1,
                },
            }),
            Entry::BadEncoding { data_root: WITNESS.hash(b"r"), proof: vec![9; 10] },
        ];
        for (i, e) in entries.iter().enumerate() {
            let tx = Entry::transaction(&key, TxScope::ChainOnly, i as u64, e).unwrap();
            tx.verify(TxScope::ChainOnly).unwrap();
            assert_eq!(&Entry::from_transaction(&tx).unwrap(), e);
        }
        let mut tx = Entry::transaction(&key, TxScope::ChainOnly, 0, &entries[0]).unwrap();
        tx.payload.truncate(3);
        assert!(matches!(Entry::from_transaction(&tx), Err(Error::Malformed(_))));
        tx.chain_id = ChainId(1);
        assert!(matches!(Entry::from_transaction(&tx), Err(Error::NotSettlement(_))));
    }
}
