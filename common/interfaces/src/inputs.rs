//! The one rule that turns a finalized block into a namespace's transaction list.
//!
//! Execution replicas, settlement (for its own namespace and for fraud proofs) and
//! settlement verifiers all call these functions, so every party derives the same
//! inputs from the same log prefix:
//!
//! 1. the squares of a block that hold namespace `ns` are the block's availability
//!    certificates whose commitment lists `ns`, in block order ([`namespace_certs`]);
//! 2. each such square's blobs of `ns` are fetched from DA (the I/O part, done by the
//!    caller; a square whose commitment is unusable for everyone counts as no blobs);
//! 3. each blob must decode as a [`Batch`] whose namespace is `ns`; a blob that does
//!    not is skipped (it is data, so every party skips it alike), and the transactions
//!    of the remaining batches are concatenated in order ([`namespace_transactions`]).
//!
//! The step's [`crate::settlement::inputs_digest`] commits to the data roots of step 1.

use lamina_primitives::{AvailabilityCertificate, Batch, Digest, FinalizedBlock, Namespace, Transaction};

/// The certificates of `block` whose squares hold `ns`, in block order.
pub fn namespace_certs(block: &FinalizedBlock, ns: Namespace) -> impl Iterator<Item = &AvailabilityCertificate> {
    block.block.batches.iter().filter(move |c| c.commitment.namespaces.binary_search(&ns).is_ok())
}

/// The data roots of [`namespace_certs`], in block order (empty: the block carries
/// nothing for `ns`).
pub fn namespace_data_roots(block: &FinalizedBlock, ns: Namespace) -> Vec<Digest> {
    namespace_certs(block, ns).map(|c| c.commitment.data_root).collect()
}

/// What [`namespace_transactions`] extracted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The namespace's transactions, in order.
    pub txs: Vec<Transaction>,
    /// Blobs skipped because they do not decode as a batch of `ns`.
    pub skipped: usize,
}

/// Decodes the fetched blobs of `ns` (one list per square, in block order) into the
/// namespace's transactions (rule 3 of the module docs).
pub fn namespace_transactions<B: AsRef<[u8]>>(ns: Namespace, squares: &[Vec<B>]) -> Extracted {
    let mut out = Extracted::default();
    for blob in squares.iter().flatten() {
        match lamina_primitives::decode::<Batch>(blob.as_ref()) {
            Ok(b) if b.namespace == ns => out.txs.extend(b.txs),
            _ => out.skipped += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::{ChainId, Keypair};

    #[test]
    fn skips_undecodable_and_foreign_batches_in_order() {
        let ns = Namespace::from(ChainId(1));
        let kp = Keypair::for_testing(1);
        let tx = |n| Transaction::new_signed(&kp, lamina_primitives::TxScope::ChainOnly, ChainId(1), n, vec![n as u8]);
        let batch = |ns, txs| lamina_primitives::encode(&Batch { namespace: ns, txs }).unwrap();
        let squares = vec![
            vec![batch(ns, vec![tx(0), tx(1)]), b"garbage".to_vec()],
            vec![batch(Namespace::from(ChainId(2)), vec![tx(9)]), batch(ns, vec![tx(2)])],
        ];
        let got = namespace_transactions(ns, &squares);
        assert_eq!(got.skipped, 2);
        assert_eq!(got.txs.iter().map(|t| t.nonce).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
