//! The signed transaction envelope and the batch (a chain's blob).

use crate::hash::{Digest, domains};
use crate::ids::{ChainId, Namespace, TxId};
use crate::sig::{self, Keypair, PublicKey, Signature, SignatureError, SignedDigest};

/// A signed transaction: an opaque payload that a chain's state machine interprets,
/// wrapped with the fields every layer needs (who, which chain, which nonce).
///
/// Its id ([`Transaction::id`]) is the `lamina tx id v1` hash of
/// `chain_id ‖ sender ‖ nonce ‖ len(payload) ‖ payload` (integers little-endian). The
/// signature covers the id and, on a network whose genesis binds it, the network id
/// ([`TxScope`]): a transaction cannot be replayed on another chain, with another
/// nonce, or (where bound) on another network.
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
    /// ed25519 signature (ZIP-215 rules) over [`TxScope::message`] of the id.
    pub signature: Signature,
}

/// What a transaction's signature binds besides the transaction's own fields: a
/// property of the network (its genesis), the same for every transaction of it. Every
/// signer and verifier of a network must use the network's scope
/// (`Genesis::tx_scope`); a transaction signed under another scope fails verification.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TxScope {
    /// The signature covers the id only, which binds the chain id but not the network:
    /// a key used on two networks with the same chain id could have a transaction
    /// replayed from one to the other. Networks whose genesis predates network binding.
    ChainOnly,
    /// The signature covers the `lamina tx network v1` hash of this network id and the
    /// transaction id, so a transaction signed for one network fails on every other.
    Network(Digest),
}

impl TxScope {
    /// The message a transaction with id `id` is signed over in this scope.
    pub fn message(&self, id: &TxId) -> Digest {
        match self {
            TxScope::ChainOnly => id.0,
            TxScope::Network(network) => domains::TX_NETWORK.hash_parts(&[network.as_bytes(), id.0.as_bytes()]),
        }
    }
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
    /// Builds and signs a transaction for a network of scope `scope`.
    pub fn new_signed(keypair: &Keypair, scope: TxScope, chain_id: ChainId, nonce: u64, payload: Vec<u8>) -> Self {
        let sender = keypair.public();
        let id = tx_id(chain_id, &sender, nonce, &payload);
        let signature = keypair.sign(&scope.message(&id));
        Transaction { chain_id, sender, nonce, payload, signature }
    }

    /// The transaction id (independent of the scope and the signature).
    pub fn id(&self) -> TxId {
        tx_id(self.chain_id, &self.sender, self.nonce, &self.payload)
    }

    /// The (key, message, signature) triple for batch verification in `scope`.
    pub fn signed_digest(&self, scope: TxScope) -> SignedDigest {
        SignedDigest { public_key: self.sender, message: scope.message(&self.id()), signature: self.signature }
    }

    /// Verifies the signature in `scope` on its own (ZIP-215). Prefer batch
    /// verification for many.
    pub fn verify(&self, scope: TxScope) -> Result<(), SignatureError> {
        sig::verify(&self.sender, &scope.message(&self.id()), &self.signature)
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

    /// The (key, message, signature) triple of an archived transaction in `scope`.
    pub fn signed_digest(&self, scope: TxScope) -> SignedDigest {
        SignedDigest {
            public_key: PublicKey(self.sender.0),
            message: scope.message(&self.id()),
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
    /// Bytes a batch's encoding adds once, beyond its transactions' (the namespace and
    /// the list's header, with room for alignment). With [`Batch::ENCODING_PER_TX`] it
    /// bounds a blob's size before it is encoded ([`Batch::encoded_bound`]), so that a
    /// batcher can cut under a byte limit that applies to the encoded blobs.
    pub const ENCODING_PER_BATCH: usize = 32;
    /// Bytes the encoding adds per transaction beyond [`Transaction::approx_size`] (the
    /// payload's relative pointer and length, with room for alignment).
    pub const ENCODING_PER_TX: usize = 16;

    /// An upper bound of the encoded size of a batch of transactions whose
    /// [`Transaction::approx_size`] sum to `approx` (`txs` of them).
    pub fn encoded_bound(txs: usize, approx: usize) -> usize {
        Self::ENCODING_PER_BATCH + approx + txs * Self::ENCODING_PER_TX
    }

    /// Digest of the batch's encoded bytes (the blob).
    pub fn digest_of_blob(blob: &[u8]) -> Digest {
        domains::BATCH.hash(blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: TxScope = TxScope::Network(Digest([5; 32]));

    #[test]
    fn encoded_bound_bounds_every_batch_encoding() {
        let kp = Keypair::for_testing(2);
        let mut tightest = usize::MAX;
        for n in [0usize, 1, 2, 3, 7, 64, 300] {
            for base in [0usize, 1, 7, 8, 9, 63, 1000, 65_536] {
                // Payload sizes vary inside a batch, so alignment padding varies too.
                let txs: Vec<Transaction> = (0..n)
                    .map(|i| Transaction::new_signed(&kp, NET, ChainId(1), i as u64, vec![9; base + i % 11]))
                    .collect();
                let approx = txs.iter().map(Transaction::approx_size).sum();
                let encoded =
                    crate::codec::encode(&Batch { namespace: Namespace([0, 0, 0, 0, 0, 0, 0, 1]), txs }).unwrap().len();
                let bound = Batch::encoded_bound(n, approx);
                assert!(encoded <= bound, "{n} transactions of {base}+ bytes: {encoded} > {bound}");
                tightest = tightest.min(bound - encoded);
            }
        }
        // The bound is not loose by more than its own allowances.
        assert!(tightest <= Batch::ENCODING_PER_BATCH, "slack {tightest}");
    }

    #[test]
    fn signed_transaction_verifies_and_binds_every_field() {
        for scope in [TxScope::ChainOnly, NET] {
            let kp = Keypair::for_testing(1);
            let tx = Transaction::new_signed(&kp, scope, ChainId(7), 3, b"pay".to_vec());
            tx.verify(scope).unwrap();
            let mut t = tx.clone();
            t.chain_id = ChainId(8);
            assert!(t.verify(scope).is_err());
            let mut t = tx.clone();
            t.nonce = 4;
            assert!(t.verify(scope).is_err());
            let mut t = tx.clone();
            t.payload.push(0);
            assert!(t.verify(scope).is_err());
            let mut t = tx;
            t.sender = Keypair::for_testing(2).public();
            assert!(t.verify(scope).is_err());
        }
    }

    #[test]
    fn a_bound_signature_holds_on_its_network_only() {
        let kp = Keypair::for_testing(1);
        let tx = Transaction::new_signed(&kp, NET, ChainId(7), 3, b"pay".to_vec());
        tx.verify(NET).unwrap();
        assert!(tx.verify(TxScope::Network(Digest([6; 32]))).is_err(), "another network");
        assert!(tx.verify(TxScope::ChainOnly).is_err(), "a network that binds nothing");
        let legacy = Transaction::new_signed(&kp, TxScope::ChainOnly, ChainId(7), 3, b"pay".to_vec());
        assert!(legacy.verify(NET).is_err(), "an unbound signature on a bound network");
        assert_eq!(legacy.id(), tx.id(), "the id does not depend on the scope");
        let bytes = crate::codec::encode_aligned(&tx).unwrap();
        let a = crate::codec::access::<Transaction>(&bytes).unwrap();
        assert_eq!(a.signed_digest(NET), tx.signed_digest(NET));
    }

    #[test]
    fn id_does_not_depend_on_signature() {
        let kp = Keypair::for_testing(1);
        let tx = Transaction::new_signed(&kp, NET, ChainId(7), 3, b"pay".to_vec());
        let mut t = tx.clone();
        t.signature.0[0] ^= 1;
        assert_eq!(t.id(), tx.id());
    }
}
