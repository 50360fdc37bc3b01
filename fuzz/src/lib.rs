//! Helpers shared by the fuzz targets: every target feeds untrusted bytes to the same
//! validated decoder the nodes use (`lamina_primitives::decode`), and checks that what
//! decodes survives a round trip unchanged. A panic, an abort or a sanitizer report is
//! a finding; a clean `Err` is the expected answer to garbage.

use std::fmt::Debug;

use lamina_primitives::Wire;

/// Decodes `data` as `T`; when it decodes, re-encodes and decodes again and requires the
/// same value. Returns the value for deeper checks (proof verification).
pub fn roundtrip<T: Wire + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value = lamina_primitives::decode::<T>(data).ok()?;
    let bytes = lamina_primitives::encode(&value).expect("a decoded value encodes");
    let again = lamina_primitives::decode::<T>(&bytes).expect("an encoded value decodes");
    assert_eq!(value, again, "{} does not survive a round trip", T::NAME);
    Some(value)
}

/// Splits off the first byte as a selector among `n` decoders.
pub fn select(data: &[u8], n: u8) -> Option<(u8, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((first % n, rest))
}
