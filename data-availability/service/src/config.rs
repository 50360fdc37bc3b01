//! Typed configuration: the DA node's `[da]` section. The client's settings
//! (`ClientConfig`) live in `lamina-da-client`.

use std::time::Duration;

use lamina_net::EndpointConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Settings of a DA storage node (the `[da]` section of its `config.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A square that a block of the ordered log carried is kept until the log's tip
    /// passes that block's height plus this many heights, then pruned and no longer
    /// served. Applies when the node follows the log (the binary's DA node does); at
    /// least settlement's challenge window plus max(window, 1000)
    /// ([`crate::min_retain_heights`]). Default 200,000 heights (execution's default
    /// record window, so that a lagging executor or a node syncing from its peers'
    /// snapshots can still fetch).
    pub retain_heights: u64,
    /// Squares that no followed block carried (dispersed but never ordered, or every
    /// square of a node that follows no log) are pruned this long after they arrived
    /// (seconds). Default 7 days, the light-client sampling window (as Celestia's).
    #[serde(rename = "retention_secs", with = "secs")]
    #[schemars(with = "u64")]
    pub retention: Duration,
    /// How often the node follows the log and prunes (seconds). Default 60.
    #[serde(rename = "prune_interval_secs", with = "secs")]
    #[schemars(with = "u64")]
    pub prune_interval: Duration,
    /// Size of each column-store segment file under `data/columns` (bytes; a multiple of
    /// 4096). Default 256 MiB (a k = 128 square spread over 4 nodes is 8 MiB per node).
    /// Pruning deletes whole segments.
    pub segment_bytes: u64,
    /// Most column bytes this node holds, within the retention window, for squares
    /// first stored by one *client* key (any key that is not a genesis node: wallets,
    /// `lamina blob submit`). Genesis nodes (validators dispersing batches, settlement
    /// verifiers dispersing witnesses) are not counted. A store past the quota is refused
    /// with the figures; the client's space comes back as its squares age out. Default
    /// 1 GiB.
    pub client_quota_bytes: u64,
    /// QUIC endpoint settings. Not part of the `[da]` section: the binary fills them from
    /// `[net]` (listen address, limits). A zero port means "the genesis address".
    #[serde(skip)]
    pub net: EndpointConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retain_heights: 200_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(60),
            segment_bytes: 256 << 20,
            client_quota_bytes: 1 << 30,
            net: EndpointConfig::default(),
        }
    }
}

impl Config {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.retention.is_zero() || self.prune_interval.is_zero() || self.retain_heights == 0 {
            return Err(Error::Config(
                "retain_heights, retention_secs and prune_interval_secs must be positive".into(),
            ));
        }
        self.store_config().validate().map_err(|e| Error::Config(format!("segment_bytes: {e}")))?;
        self.net.validate().map_err(|e| Error::Config(format!("net: {e}")))?;
        Ok(())
    }

    /// The column store's log configuration.
    pub fn store_config(&self) -> lamina_store::Config {
        let max_record = lamina_store::Config::capacity(self.segment_bytes).min(8 << 20);
        lamina_store::Config { segment_size: self.segment_bytes, max_record_size: max_record, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml_form() {
        Config::default().validate().unwrap();
        let json = serde_json::to_string(&Config::default()).unwrap();
        assert!(json.contains("retention_secs"));
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Config::default());
        let bad = Config { segment_bytes: 1000, ..Config::default() };
        assert!(bad.validate().is_err());
    }
}
