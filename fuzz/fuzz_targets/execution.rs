//! Execution: the query protocol, block records read back from disk, change sets,
//! state proofs, and stateless re-execution from an untrusted witness (what a
//! settlement verifier runs on a challenger's bytes).
#![no_main]

use lamina_execution_core::changes::ChangeSet;
use lamina_execution_core::ledger::{LedgerConfig, NativeLedger};
use lamina_execution_core::smt::StateProof;
use lamina_execution_core::witness::{Witness, execute_stateless};
use lamina_execution_client::protocol::{QueryRequest, QueryResponse};
use lamina_execution_service::record::{BlockRecord, Header};
use lamina_fuzz::{roundtrip, select};
use lamina_primitives::{ChainId, Digest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 7) else { return };
    match which {
        0 => {
            roundtrip::<QueryRequest>(bytes);
        }
        1 => {
            roundtrip::<QueryResponse>(bytes);
        }
        2 => {
            roundtrip::<BlockRecord>(bytes);
        }
        3 => {
            roundtrip::<Header>(bytes);
        }
        4 => {
            roundtrip::<ChangeSet>(bytes);
        }
        5 => {
            if let Some(p) = roundtrip::<StateProof>(bytes) {
                let _ = p.verify(&Digest::ZERO, &Digest([1; 32]), None);
                let _ = p.verify(&Digest([2; 32]), &Digest([1; 32]), Some(&Digest([4; 32])));
            }
        }
        _ => {
            if let Some(w) = roundtrip::<Witness>(bytes) {
                let ledger = NativeLedger::new(LedgerConfig::new(ChainId(1)));
                let _ = execute_stateless(&ledger, lamina_primitives::TxScope::ChainOnly, &Digest::ZERO, &w, &[]);
            }
        }
    }
});
