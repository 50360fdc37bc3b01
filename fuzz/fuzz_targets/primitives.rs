//! Shared primitives: transactions, batches, blocks, certificates, Merkle proofs.
#![no_main]

use lamina_fuzz::{roundtrip, select};
use lamina_primitives::{
    AvailabilityCertificate, Batch, Block, DataCommitment, Digest, FinalizedBlock, QuorumCertificate, Transaction,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 7) else { return };
    match which {
        0 => {
            if let Some(tx) = roundtrip::<Transaction>(bytes) {
                let _ = tx.id();
                let _ = tx.verify(lamina_primitives::TxScope::ChainOnly);
                let _ = tx.verify(lamina_primitives::TxScope::Network(Digest([1; 32])));
            }
        }
        1 => {
            roundtrip::<Batch>(bytes);
        }
        2 => {
            if let Some(b) = roundtrip::<Block>(bytes) {
                let _ = b.payload_matches();
            }
        }
        3 => {
            roundtrip::<FinalizedBlock>(bytes);
        }
        4 => {
            if let Some(c) = roundtrip::<AvailabilityCertificate>(bytes) {
                let _ = c.commitment.attestation_digest();
            }
        }
        5 => {
            roundtrip::<QuorumCertificate>(bytes);
        }
        _ => {
            roundtrip::<DataCommitment>(bytes);
            roundtrip::<Digest>(bytes);
        }
    }
});
