//! Serde helper: a [`Duration`] as (fractional) seconds in JSON, so `results.json` is
//! readable by any tool (`"warmup_s": 2.0`). Use with `#[serde(with = "crate::serde_secs")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serializes as seconds.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parses non-negative, finite seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = f64::deserialize(d)?;
    Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
}
