//! The service's typed configuration (the `[consensus]` section of a validator's
//! `config.toml`), with documented defaults and `validate()`.

use std::net::SocketAddr;
use std::time::Duration;

use lamina_interfaces::Genesis;
use lamina_primitives::PublicKey;

use crate::error::Error;

/// Mempool limits and intake checks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Most transactions held (queued, being made available, or certified but not yet
    /// ordered). A full mempool answers `Busy`. Default 1,000,000.
    pub max_txs: usize,
    /// Most payload bytes held. Default 1 GiB.
    pub max_bytes: usize,
    /// Most transactions held per sender, so one client cannot fill the mempool.
    /// Default 20,000.
    pub max_per_sender: usize,
    /// Largest transaction accepted, in bytes (`Transaction::approx_size`). Default 64 KiB.
    pub max_tx_bytes: usize,
    /// Verify each transaction's signature (ZIP-215) on intake. Default true. Turning it
    /// off is for measuring ordering capacity only: execution verifies signatures again.
    pub verify_signatures: bool,
    /// Remembered ids of recently ordered transactions (duplicate detection after a
    /// batch was ordered). Default 1,000,000.
    pub recent_ids: usize,
    /// Senders (per chain) whose next expected nonce is remembered after they have
    /// nothing held, so that their next transactions keep nonce order. Default 262,144
    /// (by arithmetic, not measured: about 25–30 MiB for the idle list at the limit,
    /// plus the sequences themselves, about 120 bytes each with no transaction parked).
    pub max_tracked_senders: usize,
    /// How long a transaction parked behind a nonce gap waits for the missing nonce
    /// before it is queued anyway (ms). Default 1000.
    pub nonce_gap_ms: u64,
    /// How long the first transaction of a sender the mempool does not know, with a
    /// nonce above 0, waits for lower nonces still in flight (ms). Default 100: longer
    /// than intake takes to check one full request on a loaded validator.
    pub new_sender_wait_ms: u64,
    /// Make "accepted" durable: intake answers `Accepted` only once the transaction is
    /// synced to the validator's intake log, and a restarted validator queues again what
    /// it had acknowledged but not yet had certified. Default true. Off: acceptance is
    /// mempool admission only (a killed validator loses what it had not yet certified).
    pub durable_intake: bool,
    /// Threads that check intake's signatures (each checks everything queued as one
    /// batch). 0, the default: one per core, at most 4. Where several validators share
    /// a machine (a devnet, a benchmark), give each its share of the cores: more
    /// verifier threads than cores kept every process waiting for a core under load
    /// (BENCHMARKS.md, "one intake signature thread per validator").
    pub signature_threads: usize,
}

impl MempoolConfig {
    /// The limits the mempool state machine reads.
    pub fn limits(&self) -> lamina_consensus_core::MempoolLimits {
        lamina_consensus_core::MempoolLimits {
            max_txs: self.max_txs,
            max_bytes: self.max_bytes,
            max_per_sender: self.max_per_sender,
            max_tx_bytes: self.max_tx_bytes,
            recent_ids: self.recent_ids,
            max_tracked_senders: self.max_tracked_senders,
            nonce_gap_ms: self.nonce_gap_ms,
            new_sender_wait_ms: self.new_sender_wait_ms,
        }
    }
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 1_000_000,
            max_bytes: 1 << 30,
            max_per_sender: 20_000,
            max_tx_bytes: 64 << 10,
            verify_signatures: true,
            recent_ids: 1_000_000,
            max_tracked_senders: 262_144,
            nonce_gap_ms: 1000,
            new_sender_wait_ms: 100,
            durable_intake: true,
            signature_threads: 0,
        }
    }
}

/// How batches are cut and made available.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// A square is cut when this many transaction bytes are queued (all namespaces
    /// together; one blob per chain's namespace). At most 32 MiB. Default 1 MiB.
    pub max_bytes: usize,
    /// ... or when the oldest queued transaction has waited this long (ms). Default 50:
    /// every square costs each DA node a store, a sync and a signature and every
    /// validator a certificate check whatever its size, so on a loaded network fewer,
    /// larger squares lower latency as well as CPU (4,000 tx/s on the 2-core box: e2e
    /// p50 78 ms at 50 ms against 230 ms at 5 ms; BENCHMARKS.md, issue 10). The cost is
    /// up to this much added to a lone transaction's latency.
    pub max_delay_ms: u64,
    /// Dispersals to DA in flight at once; more queued batches wait (and the mempool
    /// fills, which pushes back on intake). Default 4.
    pub max_inflight: usize,
    /// Under load (at least `busy_bytes` queued), while this many of this validator's
    /// batches are cut and not yet ordered, the next cut waits for one of them to be
    /// ordered, or for the oldest transaction that may be cut to have waited
    /// `busy_delay_ms`, instead of `max_delay_ms` (a full square is still cut at once).
    /// 0 turns the rule off, and so does `max_delay_ms = 0` (cut at once). Default 1.
    ///
    /// A batch cannot be ordered before the block after it is certified, so under load
    /// cutting faster than blocks order only makes more, emptier squares, each costing
    /// every DA node a store, a sync and a signature and every validator a certificate
    /// check; waiting for the previous batch lets the next one grow with the load
    /// instead (DESIGN.md, "Efficiency").
    pub max_unordered: usize,
    /// Bytes queued from which `max_unordered` applies. Below it a batch is cut after
    /// `max_delay_ms` as before: on a light load squares are cheap and latency matters.
    /// At 4,000 tx/s a validator of the 2-core devnet queues 9–13 KiB between cuts, at
    /// 16,000 about 40 KiB. Default 16 KiB.
    pub busy_bytes: usize,
    /// How long the oldest transaction that may be cut waits for a cut while the
    /// `max_unordered` rule applies (ms); a value below `max_delay_ms` counts as
    /// `max_delay_ms`. Default 200.
    pub busy_delay_ms: u64,
    /// Wait before retrying a failed dispersal (doubling up to 5 s). Default 200 ms.
    pub retry_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_bytes: 1 << 20,
            max_delay_ms: 50,
            max_inflight: 4,
            max_unordered: 1,
            busy_bytes: 16 << 10,
            busy_delay_ms: 200,
            retry_ms: 200,
        }
    }
}

/// Settings of a consensus validator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Time to wait for a view's proposal before voting to skip (nullify) the view (ms).
    /// Default 500.
    pub leader_timeout_ms: u64,
    /// Time to wait for a view's notarization before voting to skip (nullify) it (ms; at
    /// least `leader_timeout_ms`). Default 1000.
    pub notarization_timeout_ms: u64,
    /// Retry period: re-send skip (nullify) votes and certificates, re-ask peers for
    /// missing blocks (ms). Default 500.
    pub retry_interval_ms: u64,
    /// The idle heartbeat: a leader with nothing to order waits this long before an
    /// empty block (ms; at most 60000); an idle network makes one block per interval.
    /// Default 1000.
    pub empty_block_delay_ms: u64,
    /// Under load, blocks grow instead of heights multiplying: a leader proposes no
    /// sooner than this after its view began (ms; less than `leader_timeout_ms`; 0
    /// proposes at once). Every height costs each validator votes, signatures, WAL
    /// syncs and messages whatever it holds; this bounds how many a second it pays for,
    /// at up to this much more latency per transaction. Default 50.
    pub min_block_interval_ms: u64,
    /// Most batches (DA squares) this validator's own blocks order. Default 512. A
    /// proposer policy: governance may lower it network-wide (`lamina gov propose
    /// set-param max_batches_per_block N`), and a block from another validator is valid
    /// with up to the network's cap of 4,096.
    pub max_batches_per_block: usize,
    /// Mempool limits and intake checks. A full mempool answers "busy" (backpressure).
    pub mempool: MempoolConfig,
    /// Batching: one DA square per cut, one blob per chain (namespace).
    pub batch: BatchConfig,
    /// HTTP/JSON intake address (`POST /v1/tx`, `/v1/txs`; `GET /v1/tip`). Unset: this
    /// validator's `http` address in the genesis; no HTTP intake if neither is set.
    #[schemars(example = SocketAddr::from(([127, 0, 0, 1], 8100)))]
    pub http_listen: Option<SocketAddr>,
    /// Public keys (hex) of clients allowed to use the QUIC intake and ordered log
    /// besides the genesis nodes (load generators, wallets' gateways).
    #[schemars(with = "Vec<String>")]
    pub intake_clients: Vec<PublicKey>,
    /// WAL segment size under `data/consensus/wal` (bytes; a multiple of 4096, at least
    /// 16 MiB). Default 64 MiB.
    pub wal_segment_bytes: u64,
    /// Ordered-log segment size under `data/consensus/log` (bytes; a multiple of 4096, at
    /// least 16 MiB). Default 256 MiB.
    pub log_segment_bytes: u64,
    /// Most blocks per ordered-log read and per catch-up answer. Default 256.
    pub log_max_blocks: u32,
    /// Finalized blocks kept below the tip in the ordered log (0: all, the default).
    /// Older segments are deleted; reads below the oldest kept height answer "pruned",
    /// so a lagging execution node must state-sync. Every reader that starts from
    /// genesis (a new settlement node, an execution node's anchor registry, a validator
    /// far behind) then needs another validator that keeps more. 0 or at least
    /// [`MIN_LOG_RETAIN`] (10,000).
    pub log_retain_heights: u64,
    /// **TEST/DEMO ONLY: a Byzantine disperser.** Every square this validator disperses
    /// has a wrongly encoded row (DA nodes still certify it), to show that execution and
    /// settlement reach the same final verdict instead of stalling. Read by the node
    /// binary, which builds the validator's DA client.
    pub faulty_dispersal: bool,
}

/// Smallest nonzero [`Config::log_retain_heights`]: a restarting core reads the last
/// `dedup_window` blocks (4,096 by default) back from the ordered log.
pub const MIN_LOG_RETAIN: u64 = 10_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            leader_timeout_ms: 500,
            notarization_timeout_ms: 1000,
            retry_interval_ms: 500,
            empty_block_delay_ms: 1000,
            min_block_interval_ms: 50,
            max_batches_per_block: 512,
            mempool: MempoolConfig::default(),
            batch: BatchConfig::default(),
            http_listen: None,
            intake_clients: Vec::new(),
            wal_segment_bytes: 64 << 20,
            log_segment_bytes: 256 << 20,
            log_max_blocks: 256,
            log_retain_heights: 0,
            faulty_dispersal: false,
        }
    }
}

impl Config {
    /// Checks values the service cannot run with (the protocol part is checked again
    /// with the genesis by [`Config::core_config`]).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.leader_timeout_ms == 0 || self.retry_interval_ms == 0 {
            return bad("leader_timeout_ms and retry_interval_ms must be positive");
        }
        if self.notarization_timeout_ms < self.leader_timeout_ms {
            return bad("notarization_timeout_ms must be >= leader_timeout_ms");
        }
        if self.min_block_interval_ms >= self.leader_timeout_ms {
            return bad("min_block_interval_ms must be less than leader_timeout_ms");
        }
        if self.empty_block_delay_ms > 60_000 {
            return bad("empty_block_delay_ms must be at most 60000");
        }
        let m = &self.mempool;
        if m.max_txs == 0 || m.max_bytes == 0 || m.max_per_sender == 0 || m.max_tx_bytes == 0 {
            return bad("mempool limits must be positive");
        }
        if m.signature_threads > crate::sigcheck::MAX_THREADS {
            return bad("mempool.signature_threads must be at most 4 (0: one per core)");
        }
        if m.max_tx_bytes > lamina_primitives::codec::limits::MAX_TX_PAYLOAD + 112 {
            return bad("mempool.max_tx_bytes exceeds the engine's transaction limit");
        }
        let b = &self.batch;
        if b.max_bytes == 0 || b.max_bytes > 32 << 20 || b.max_inflight == 0 || b.retry_ms == 0 {
            return bad("batch: need 0 < max_bytes <= 32 MiB, max_inflight > 0, retry_ms > 0");
        }
        for (what, v) in [("wal_segment_bytes", self.wal_segment_bytes), ("log_segment_bytes", self.log_segment_bytes)]
        {
            if v % 4096 != 0 || v < 16 << 20 {
                return Err(Error::Config(format!("{what} must be a multiple of 4096 and at least 16 MiB")));
            }
        }
        if self.log_max_blocks == 0 {
            return bad("log_max_blocks must be positive");
        }
        if self.log_retain_heights != 0 && self.log_retain_heights < MIN_LOG_RETAIN {
            return Err(Error::Config(format!("log_retain_heights must be 0 (keep all) or at least {MIN_LOG_RETAIN}")));
        }
        Ok(())
    }

    /// The protocol core's configuration for this network.
    pub fn core_config(&self, genesis: &Genesis) -> Result<lamina_consensus_core::Config, Error> {
        let mut c = lamina_consensus_core::Config::new(
            genesis.digest(),
            genesis.validator_committee(),
            genesis.da_committee(),
            genesis.da_threshold(),
        );
        c.leader_timeout = Duration::from_millis(self.leader_timeout_ms);
        c.notarization_timeout = Duration::from_millis(self.notarization_timeout_ms);
        c.retry_interval = Duration::from_millis(self.retry_interval_ms);
        c.empty_block_delay = Duration::from_millis(self.empty_block_delay_ms);
        c.min_block_interval = Duration::from_millis(self.min_block_interval_ms);
        // The validity cap is the network's; this node's setting is how many its own
        // proposals order.
        c.propose_batches = self.max_batches_per_block;
        c.sync_max_blocks = self.log_max_blocks;
        c.validate().map_err(|e| Error::Config(e.to_string()))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: Config =
            toml::from_str("leader_timeout_ms = 300\n[mempool]\nverify_signatures = false\n").unwrap();
        assert_eq!(partial.leader_timeout_ms, 300);
        assert!(!partial.mempool.verify_signatures);
        assert_eq!(partial.batch, BatchConfig::default());
        assert!(toml::from_str::<Config>("no_such_field = 1").is_err());
        let mut bad = c;
        bad.empty_block_delay_ms = 3_600_000;
        assert!(bad.validate().is_err());
    }
}
