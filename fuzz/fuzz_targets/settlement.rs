//! Settlement: entries (claims, challenges, bad-encoding proofs) as they arrive in the
//! log, checkpoint claims (shape and signature checks), anchor proofs (verified against
//! their own root and another), the query protocol, and the service's store records.
#![no_main]

use lamina_fuzz::{roundtrip, select};
use lamina_interfaces::CheckpointClaim;
use lamina_primitives::Digest;
use lamina_settlement_core::anchors::AnchorProof;
use lamina_settlement_core::Entry;
use lamina_settlement_client::protocol::{SettlementRequest, SettlementResponse};
use lamina_settlement_service::record::{Header, HeightRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 7) else { return };
    match which {
        0 => {
            if let Some(Entry::Claim(c)) = roundtrip::<Entry>(bytes) {
                let _ = c.check_shape(&Digest::ZERO);
                let _ = c.verify_signature();
            }
        }
        1 => {
            if let Some(c) = roundtrip::<CheckpointClaim>(bytes) {
                let _ = c.id();
                let _ = c.check_shape(&c.receipts_root);
                let _ = c.verify_signature();
            }
        }
        2 => {
            if let Some(p) = roundtrip::<AnchorProof>(bytes) {
                let _ = p.verify(&Digest::ZERO);
                let _ = p.verify(&Digest([3; 32]));
            }
        }
        3 => {
            roundtrip::<SettlementRequest>(bytes);
        }
        4 => {
            roundtrip::<SettlementResponse>(bytes);
        }
        5 => {
            roundtrip::<Header>(bytes);
        }
        _ => {
            roundtrip::<HeightRecord>(bytes);
        }
    }
});
