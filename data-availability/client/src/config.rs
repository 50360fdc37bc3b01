//! The DA client's settings: the disperser, retrieval and the light sampler.

use std::time::Duration;

use lamina_da_core::{CodecId, DEFAULT_SAMPLES};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Settings of a DA client: the disperser, retrieval and the light sampler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Codec id for new squares (1 = Leopard GF(2^16), 2 = Vandermonde GF(2^8)).
    pub codec: u8,
    /// Time allowed per request to a DA node. Default 10 s.
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
    /// How long to wait for a connection to a node that is not connected before
    /// skipping it. Default 1 s.
    #[serde(rename = "connect_wait_ms", with = "millis")]
    pub connect_wait: Duration,
    /// How long `submit` waits for attestations before giving up. Default 30 s.
    #[serde(rename = "disperse_timeout_ms", with = "millis")]
    pub disperse_timeout: Duration,
    /// Samples per light-sampling run. Default 32 (>= 99.99 % confidence for k <= 512).
    pub samples: u32,
    /// Verified headers kept in memory. Default 64.
    pub header_cache: usize,
    /// **Test and demo only: a Byzantine disperser.** Every square this client
    /// disperses has its first row wrongly encoded
    /// ([`lamina_da_core::fraud::corrupt_row_encoding`]): DA nodes still certify it, and
    /// retrieval of the namespace in that row answers with a bad-encoding proof.
    pub faulty_encoding: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            codec: CodecId::default().as_u8(),
            request_timeout: Duration::from_secs(10),
            connect_wait: Duration::from_secs(1),
            disperse_timeout: Duration::from_secs(30),
            samples: DEFAULT_SAMPLES,
            header_cache: 64,
            faulty_encoding: false,
        }
    }
}

impl ClientConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        CodecId::from_u8(self.codec).map_err(|e| Error::Config(e.to_string()))?;
        if self.request_timeout.is_zero() || self.disperse_timeout.is_zero() || self.samples == 0 {
            return Err(Error::Config("timeouts and samples must be positive".into()));
        }
        Ok(())
    }

    /// The codec.
    pub fn codec_id(&self) -> CodecId {
        CodecId::from_u8(self.codec).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_a_bad_codec_is_refused() {
        ClientConfig::default().validate().unwrap();
        assert!(ClientConfig { codec: 9, ..ClientConfig::default() }.validate().is_err());
        assert!(ClientConfig { samples: 0, ..ClientConfig::default() }.validate().is_err());
    }
}
