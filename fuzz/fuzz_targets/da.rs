//! Data availability: DA protocol requests and responses, the column store's records
//! (read back from disk) and square headers.
#![no_main]

use lamina_da_core::DaHeader;
use lamina_da_client::protocol::{DaRequest, DaResponse};
use lamina_da_service::store::StoredRecord;
use lamina_fuzz::{roundtrip, select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 4) else { return };
    match which {
        0 => {
            roundtrip::<DaRequest>(bytes);
        }
        1 => {
            roundtrip::<DaResponse>(bytes);
        }
        2 => {
            roundtrip::<StoredRecord>(bytes);
        }
        _ => {
            if let Some(h) = roundtrip::<DaHeader>(bytes) {
                let _ = h.data_root();
            }
        }
    }
});
