//! The client-facing consensus protocols: intake submissions and the ordered-log reads
//! (requests a node decodes from any allowed peer, responses a client decodes).
#![no_main]

use lamina_consensus_client::protocol::{LogRequest, LogResponse, SubmitRequest, SubmitResponse};
use lamina_fuzz::{roundtrip, select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 4) else { return };
    match which {
        0 => {
            roundtrip::<SubmitRequest>(bytes);
        }
        1 => {
            roundtrip::<SubmitResponse>(bytes);
        }
        2 => {
            roundtrip::<LogRequest>(bytes);
        }
        _ => {
            roundtrip::<LogResponse>(bytes);
        }
    }
});
