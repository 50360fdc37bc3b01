//! Consensus: peer messages, votes and certificates, the core's WAL records, the
//! service's WAL entries and intake-log records (bytes read back from disk).
#![no_main]

use lamina_consensus_core::{Certificate, Message, Vote, WalRecord};
use lamina_consensus_service::intake_log::IntakeRecord;
use lamina_consensus_service::wal::WalEntry;
use lamina_fuzz::{roundtrip, select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 6) else { return };
    match which {
        0 => {
            roundtrip::<Message>(bytes);
        }
        1 => {
            roundtrip::<Vote>(bytes);
        }
        2 => {
            roundtrip::<Certificate>(bytes);
        }
        3 => {
            roundtrip::<WalRecord>(bytes);
        }
        4 => {
            roundtrip::<WalEntry>(bytes);
        }
        _ => {
            roundtrip::<IntakeRecord>(bytes);
        }
    }
});
