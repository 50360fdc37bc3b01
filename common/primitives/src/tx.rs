//! The signed transaction envelope and the batch (a chain's blob).

use crate::hash::{Digest, domains};
use crate::ids::{ChainId, Namespace, TxId};
use crate::sig::{self, Keypair, PublicKey, Signature, SignatureError, SignedDigest};

/// A signed transaction: an opaque payload that a chain's state machine interprets,
/// wrapped with the fields every layer needs (who, which chain, which nonce).
///
/// The signature covers [`Transaction::id`], the `lamina tx id v1` hash of
/// `chain_id ‖ sender ‖ nonce ‖ len(payload) ‖ payload` (integers little-endian), so a
/// transaction cannot be replayed on another chain or with another nonce.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Transaction {
    /// The chain this transaction is for.
    pub chain_id: ChainId,
    /// The signer, who also pays fees and whose nonce advances.
    pub sender: PublicKey,
    /// Sender's sequence number; each nonce is used once, in order.
    pub nonce: u64,
    /// State-machine specific bytes.
    pub payload: Vec<u8>,
    /// ed25519 signature (ZIP-215 rules) over [`Transaction::id`].
    pub signature: Signature,
}

/// Computes the id (= signed digest) of the given transaction fields.
pub fn tx_id(chain_id: ChainId, sender: &PublicKey, nonce: u64, payload: &[u8]) -> TxId {
    let mut h = domains::TX_ID.hasher();
    h.update(&chain_id.0.to_le_bytes());
    h.update(&sender.0);
    h.update(&nonce.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    TxId(Digest(*h.finalize().as_bytes()))
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn new_signed(keypair: &Keypair, chain_id: ChainId, nonce: u64, payload: Vec<u8>) -> Self {
        let sender = keypair.public();
        let id = tx_id(chain_id, &sender, nonce, &payload);
        let signature = keypair.sign(&id.0);
        Transaction { chain_id, sender, nonce, payload, signature }
    }

    /// The transaction id: the digest the sender signed.
    pub fn id(&self) -> TxId {
        tx_id(self.chain_id, &self.sender, self.nonce, &self.payload)
    }

    /// The (key, digest, signature) triple for batch verification.
    pub fn signed_digest(&self) -> SignedDigest {
        SignedDigest { public_key: self.sender, message: self.id().0, signature: self.signature }
    }

    /// Verifies the signature on its own (ZIP-215). Prefer batch verification for many.
    pub fn verify(&self) -> Result<(), SignatureError> {
        sig::verify(&self.sender, &self.id().0, &self.signature)
    }

    /// Size of the fields that the sender controls, for intake limits.
    pub fn approx_size(&self) -> usize {
        8 + 32 + 8 + self.payload.len() + 64
    }
}

impl ArchivedTransaction {
    /// The id of an archived (zero-copy) transaction, without deserializing it.
    pub fn id(&self) -> TxId {
        tx_id(ChainId(self.chain_id.0.to_native()), &PublicKey(self.sender.0), self.nonce.to_native(), &self.payload)
    }

    /// The (key, digest, signature) triple of an archived transaction.
    pub fn signed_digest(&self) -> SignedDigest {
        SignedDigest {
            public_key: PublicKey(self.sender.0),
            message: self.id().0,
            signature: Signature(self.signature.0),
        }
    }
}

/// A batch: the transactions of one chain, in order, as stored in one DA blob under the
/// chain's namespace. Executors decode a blob back into a `Batch`.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Batch {
    /// The chain (namespace) every transaction in the batch belongs to.
    pub namespace: Namespace,
    /// Transactions in the order they must execute.
    pub txs: Vec<Transaction>,
}

impl Batch {
    /// Digest of the batch's encoded bytes (the blob).
    pub fn digest_of_blob(blob: &[u8]) -> Digest {
        domains::BATCH.hash(blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_transaction_verifies_and_binds_every_field() {
        let kp = Keypair::for_testing(1);
        let tx = Transaction::new_signed(&kp, ChainId(7), 3, b"pay".to_vec());
        tx.verify().unwrap();
        let mut t = tx.clone();
        t.chain_id = ChainId(8);
        assert!(t.verify().is_err());
        let mut t = tx.clone();
        t.nonce = 4;
        assert!(t.verify().is_err());
        let mut t = tx.clone();
        t.payload.push(0);
        assert!(t.verify().is_err());
        let mut t = tx;
        t.sender = Keypair::for_testing(2).public();
        assert!(t.verify().is_err());
    }

    #[test]
    fn id_does_not_depend_on_signature() {
        let kp = Keypair::for_testing(1);
        let tx = Transaction::new_signed(&kp, ChainId(7), 3, b"pay".to_vec());
        let mut t = tx.clone();
        t.signature.0[0] ^= 1;
        assert_eq!(t.id(), tx.id());
    }
}
