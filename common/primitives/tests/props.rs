//! Property tests: every wire type round-trips, and arbitrary or mutated bytes never
//! panic a decoder (they yield a typed error or a valid value).

#![allow(clippy::unwrap_used)]

use lamina_primitives::merkle::{MerkleTree, leaf_hash};
use lamina_primitives::{
    AvailabilityCertificate, Batch, Block, BlockHeader, ChainId, Committee, DataCommitment, Digest, FinalizedBlock,
    Height, InclusionProof, Keypair, Namespace, QuorumCertificate, Transaction, TxScope, View, Wire, decode, encode,
};
use proptest::prelude::*;

const SCOPE: TxScope = TxScope::Network(Digest([3; 32]));

fn arb_tx() -> impl Strategy<Value = Transaction> {
    (0u64..8, 1u64..1000, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(
        |(k, chain, nonce, payload)| {
            Transaction::new_signed(&Keypair::for_testing(k), SCOPE, ChainId(chain), nonce, payload)
        },
    )
}

fn arb_digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn arb_commitment() -> impl Strategy<Value = DataCommitment> {
    (arb_digest(), any::<u32>(), any::<u8>(), proptest::collection::vec(any::<[u8; 8]>(), 0..10), any::<u64>())
        .prop_map(|(data_root, square_width, codec, ns, blob_bytes)| DataCommitment {
            data_root,
            square_width,
            codec,
            namespaces: ns.into_iter().map(Namespace).collect(),
            blob_bytes,
        })
}

fn arb_qc() -> impl Strategy<Value = QuorumCertificate> {
    (arb_digest(), proptest::collection::vec(any::<u8>(), 0..4), proptest::collection::vec(any::<[u8; 32]>(), 0..5))
        .prop_map(|(digest, signers, sigs)| QuorumCertificate {
            digest,
            signers,
            signatures: sigs
                .into_iter()
                .map(|h| {
                    let mut s = [0u8; 64];
                    s[..32].copy_from_slice(&h);
                    lamina_primitives::Signature(s)
                })
                .collect(),
        })
}

fn arb_block() -> impl Strategy<Value = FinalizedBlock> {
    (
        any::<u64>(),
        any::<u64>(),
        arb_digest(),
        proptest::collection::vec((arb_commitment(), arb_qc()), 0..4),
        arb_qc(),
        any::<u64>(),
    )
        .prop_map(|(h, v, parent, batches, qc, ts)| {
            let batches: Vec<AvailabilityCertificate> = batches
                .into_iter()
                .map(|(commitment, signatures)| AvailabilityCertificate { commitment, signatures })
                .collect();
            let header = BlockHeader {
                height: Height(h),
                view: View(v),
                parent,
                proposer: Keypair::for_testing(h % 4).public(),
                payload: Block::payload_digest(&batches),
                timestamp_ms: ts,
            };
            FinalizedBlock { block: Block { header, batches }, certificate: qc }
        })
}

fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
    let bytes = encode(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, v);
    Ok(())
}

/// Decoding must never panic; it may succeed (some byte strings are valid archives).
fn no_panic(bytes: &[u8]) {
    let _ = decode::<Transaction>(bytes);
    let _ = decode::<Batch>(bytes);
    let _ = decode::<Committee>(bytes);
    let _ = decode::<QuorumCertificate>(bytes);
    let _ = decode::<DataCommitment>(bytes);
    let _ = decode::<AvailabilityCertificate>(bytes);
    let _ = decode::<BlockHeader>(bytes);
    let _ = decode::<Block>(bytes);
    let _ = decode::<FinalizedBlock>(bytes);
    let _ = decode::<InclusionProof>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn transactions_round_trip(tx in arb_tx()) {
        round_trip(&tx)?;
        prop_assert!(tx.verify(SCOPE).is_ok());
    }

    #[test]
    fn batches_round_trip(txs in proptest::collection::vec(arb_tx(), 0..6), ns in any::<[u8; 8]>()) {
        round_trip(&Batch { namespace: Namespace(ns), txs })?;
    }

    #[test]
    fn blocks_round_trip(b in arb_block()) {
        round_trip(&b)?;
        round_trip(&b.block.header)?;
        prop_assert!(b.block.payload_matches());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        no_panic(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(b in arb_block(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = encode(&b).unwrap();
        for (pos, x) in flips {
            let n = bytes.len();
            bytes[pos % n] ^= x;
        }
        no_panic(&bytes);
        let n = bytes.len();
        no_panic(&bytes[..cut % n]);
    }

    #[test]
    fn merkle_proofs_verify_and_detect_tampering(n in 1usize..200, pick in any::<usize>(), flip in any::<usize>()) {
        let leaves: Vec<Digest> = (0..n).map(|i| leaf_hash(&(i as u64).to_le_bytes())).collect();
        let t = MerkleTree::new(leaves.clone());
        let i = pick % n;
        let p = t.proof(i).unwrap();
        prop_assert!(p.verify(&t.root(), &leaves[i]).is_ok());
        if !p.siblings.is_empty() {
            let mut q = p.clone();
            let j = flip % q.siblings.len();
            q.siblings[j].0[flip % 32] ^= 1;
            prop_assert!(q.verify(&t.root(), &leaves[i]).is_err());
        }
        if n > 1 {
            let other = (i + 1 + flip % (n - 1)) % n;
            prop_assert!(p.verify(&t.root(), &leaves[other]).is_err());
        }
    }
}
