//! The QUIC stream framing every protocol shares: bytes pushed in arbitrary chunks into
//! the frame decoder (headers validated before any body is buffered), with a limit
//! taken from the input.
#![no_main]

use lamina_net::frame::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else { return };
    let max = 1usize << (cfg % 24);
    let chunk = usize::from(cfg / 24).max(1);
    let mut dec = FrameDecoder::new(max);
    for part in rest.chunks(chunk) {
        dec.push(part);
        loop {
            if dec.peek_header().is_err() {
                return;
            }
            match dec.next_frame() {
                Ok(Some(frame)) => assert!(frame.body.len() <= max, "a frame over the limit was accepted"),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = dec.finish();
});
