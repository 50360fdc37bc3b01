//! DA proof verifiers: sample, axis-range, namespace and bad-encoding proofs, each
//! decoded from untrusted bytes and verified against the data root its own roots give
//! (so verification runs past the first check) and against a root taken from the input.
#![no_main]

use lamina_da_core::tree::Axis;
use lamina_da_core::{AxisRangeProof, BadEncodingProof, NamespaceProof, SampleProof};
use lamina_fuzz::{roundtrip, select};
use lamina_primitives::{Digest, Namespace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = select(data, 4) else { return };
    let other = Digest(bytes.get(..32).and_then(|b| b.try_into().ok()).unwrap_or([7; 32]));
    match which {
        0 => {
            if let Some(p) = roundtrip::<SampleProof>(bytes) {
                let _ = p.verify(&p.roots.data_root());
                let _ = p.verify(&other);
            }
        }
        1 => {
            if let Some(p) = roundtrip::<AxisRangeProof>(bytes) {
                let k = (bytes.len() as u32 % 300) + 1;
                let _ = p.verify(Axis::Row, k, &other, 0, k);
                let _ = p.verify(Axis::Col, k, &other, 1, 2);
            }
        }
        2 => {
            if let Some(p) = roundtrip::<NamespaceProof>(bytes) {
                let ns = Namespace((bytes.len() as u64).to_le_bytes());
                let _ = p.verify(&other, ns);
            }
        }
        _ => {
            if let Some(p) = roundtrip::<BadEncodingProof>(bytes) {
                let _ = p.verify(&p.roots.data_root());
                let _ = p.verify(&other);
            }
        }
    }
});
