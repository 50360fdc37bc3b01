//! Typed configuration of the protocol core, with documented defaults and `validate()`.

use std::time::Duration;

use lamina_primitives::codec::limits;
use lamina_primitives::{Committee, DaCommittee, Digest, Height};

use crate::error::ConfigError;

/// Configuration of one validator's protocol core.
///
/// The committee and network id come from the genesis; the rest are tuning knobs with
/// defaults chosen for a LAN / loopback deployment (see each field). Every validator
/// of a network must use the same `network`, `validators`, `da_committee`,
/// `da_threshold` and `max_batches_per_block` (validity rules); timeouts, the
/// proposer's `propose_batches` and the other limits may differ per node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Network id (the genesis digest). Bound into every notarize and nullify signature
    /// so that votes cannot be replayed across networks.
    pub network: Digest,
    /// The validators, in genesis order. Leader of view `v` is member `v mod n`.
    pub validators: Committee,
    /// The DA committee whose certificates make a batch proposable.
    pub da_committee: Committee,
    /// DA signatures required on an availability certificate.
    pub da_threshold: usize,
    /// Where the epoch's DA committee is one changed by vote, its id: its nodes'
    /// attestations bind it ([`lamina_primitives::DaCommittee`]). `None` for the genesis
    /// committee, whose attestations sign the plain digest.
    pub da_tag: Option<Digest>,
    /// The previous consensus epoch's DA committee, where it differs from this one's:
    /// its certificates still make a batch proposable in this epoch (batches certified
    /// before the switch, and those a core that ended handed over), and no later
    /// epoch's. `None` where the DA committee did not change.
    pub da_previous: Option<DaCommittee>,
    /// How long a validator waits in a view for the leader's proposal before it
    /// nullifies the view. Default 500 ms.
    pub leader_timeout: Duration,
    /// How long a validator waits in a view for a notarization before it nullifies the
    /// view. Must be at least `leader_timeout`. Default 1 s.
    pub notarization_timeout: Duration,
    /// Period of the retry timer: after nullifying a view, a validator re-broadcasts its
    /// nullify vote and the certificate that brought it into the view; a stalled commit
    /// re-broadcasts its finalize votes; an unanswered sync request goes to the next
    /// peer. Default 500 ms.
    pub retry_interval: Duration,
    /// The idle heartbeat: a leader with no batch to order waits up to this long for one
    /// before proposing an empty block, so an idle network makes about one block per
    /// `empty_block_delay` instead of spinning; a batch arriving meanwhile is proposed at
    /// once. Every validator adds it to the timeouts of a view that starts with nothing
    /// to order (a faulty leader of an idle view is therefore replaced after
    /// `empty_block_delay + leader_timeout`). Default 1 s.
    pub empty_block_delay: Duration,
    /// Under load, blocks grow instead of heights multiplying: a leader proposes no
    /// sooner than this after it entered its view, and orders everything pending then.
    /// Each height costs every validator the same whatever it holds (a proposal, two
    /// signed votes per validator and their checks, WAL syncs, a dozen messages), so this
    /// bounds that cost to one height per interval; a batch waits at most this long
    /// more. Zero proposes at once. Must be less than `leader_timeout`. Default 50 ms.
    pub min_block_interval: Duration,
    /// Most batches (availability certificates) one block may order: a validity rule,
    /// the same on every validator of a network (the service uses the network's cap,
    /// `limits::MAX_BATCHES_PER_BLOCK`). Default 4096.
    pub max_batches_per_block: usize,
    /// Most blob bytes one batch (one availability certificate's square) may carry, if
    /// governance set a limit (`set-param max_batch_bytes`): a validity rule of the
    /// epoch, checked on `blob_bytes` wherever a certificate is verified
    /// (announcements, proposals, batches handed over from the previous epoch, this
    /// validator's own). Default `None`: no limit but the square's.
    pub max_batch_bytes: Option<u64>,
    /// Most batches this validator's own proposals order (a proposer policy; never more
    /// than `max_batches_per_block`); governance may lower it network-wide
    /// ([`crate::Core::set_batch_limit`]). Default 512.
    pub propose_batches: usize,
    /// Most certified batches held for proposal per announcing validator; further
    /// announcements from that validator are refused until some are ordered. Default 8192.
    pub max_pending_batches_per_validator: usize,
    /// Votes and proposals more than this many views ahead of the current view are
    /// dropped (certificates are always accepted). Bounds memory under floods. Default 64.
    pub max_views_ahead: u64,
    /// Most finalized blocks returned by one catch-up response. Default 128.
    pub sync_max_blocks: u32,
    /// Most certificates and blocks returned by one sync response about views that are not
    /// finalized yet. Default 256.
    pub sync_max_certificates: usize,
    /// A peer is served at most one sync response per this interval. Default 20 ms.
    pub sync_min_interval: Duration,
    /// How many recent heights are remembered to reject a batch ordered twice. Default 4096.
    pub dedup_window: u64,
    /// The epoch this core runs ([`crate::epoch`]): `validators` is that epoch's
    /// committee, and the core acts only in the epoch's views. 0 (the genesis committee)
    /// unless the committee changed by vote.
    pub epoch: u64,
    /// The epoch's last height, if known when the core starts (later:
    /// [`crate::Core::end_epoch_at`]). `None` while no boundary is decided.
    pub last_height: Option<Height>,
    /// The horizon the core starts with ([`crate::Core::set_horizon`]): no block above
    /// it is output. `None`: no limit (a network whose committee never changes).
    pub horizon: Option<Height>,
}

impl Config {
    /// A configuration with the documented defaults for the given committees.
    pub fn new(network: Digest, validators: Committee, da_committee: Committee, da_threshold: usize) -> Self {
        Config {
            network,
            validators,
            da_committee,
            da_threshold,
            da_tag: None,
            da_previous: None,
            leader_timeout: Duration::from_millis(500),
            notarization_timeout: Duration::from_millis(1000),
            retry_interval: Duration::from_millis(500),
            empty_block_delay: Duration::from_secs(1),
            min_block_interval: Duration::from_millis(50),
            max_batches_per_block: limits::MAX_BATCHES_PER_BLOCK,
            max_batch_bytes: None,
            propose_batches: 512,
            max_pending_batches_per_validator: 8192,
            max_views_ahead: 64,
            sync_max_blocks: 128,
            sync_max_certificates: 256,
            sync_min_interval: Duration::from_millis(20),
            dedup_window: 4096,
            epoch: 0,
            last_height: None,
            horizon: None,
        }
    }

    /// Checks the configuration for values the protocol cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.validators.size();
        if n == 0 {
            return Err(ConfigError::EmptyCommittee("validators"));
        }
        if n > limits::MAX_COMMITTEE {
            return Err(ConfigError::CommitteeTooLarge { size: n, max: limits::MAX_COMMITTEE });
        }
        let mut keys = self.validators.members.clone();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateValidator);
        }
        if self.da_committee.size() == 0 {
            return Err(ConfigError::EmptyCommittee("DA nodes"));
        }
        if self.da_threshold == 0 || self.da_threshold > self.da_committee.size() {
            return Err(ConfigError::BadDaThreshold { threshold: self.da_threshold, size: self.da_committee.size() });
        }
        if self.leader_timeout.is_zero() || self.retry_interval.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.notarization_timeout < self.leader_timeout {
            return Err(ConfigError::TimeoutOrder("notarization_timeout must be >= leader_timeout"));
        }
        if self.min_block_interval >= self.leader_timeout {
            return Err(ConfigError::TimeoutOrder("min_block_interval must be less than leader_timeout"));
        }
        if self.empty_block_delay > Duration::from_secs(60) {
            return Err(ConfigError::TimeoutOrder("empty_block_delay must be at most 60 s"));
        }
        if self.max_batches_per_block == 0 || self.max_batches_per_block > limits::MAX_BATCHES_PER_BLOCK {
            return Err(ConfigError::BadLimit("max_batches_per_block"));
        }
        if self.max_batch_bytes == Some(0) {
            return Err(ConfigError::BadLimit("max_batch_bytes"));
        }
        if self.propose_batches == 0 {
            return Err(ConfigError::BadLimit("propose_batches"));
        }
        if self.max_pending_batches_per_validator == 0 {
            return Err(ConfigError::BadLimit("max_pending_batches_per_validator"));
        }
        if self.max_views_ahead == 0 {
            return Err(ConfigError::BadLimit("max_views_ahead"));
        }
        if self.sync_max_blocks == 0 || self.sync_max_certificates == 0 {
            return Err(ConfigError::BadLimit("sync_max_blocks / sync_max_certificates"));
        }
        Ok(())
    }

    /// Committee size `n`.
    pub fn n(&self) -> usize {
        self.validators.size()
    }

    /// Quorum `n - f` (2f+1 when n = 3f+1).
    pub fn quorum(&self) -> usize {
        self.validators.quorum()
    }

    /// Index of the leader of `view`.
    pub fn leader(&self, view: lamina_primitives::View) -> usize {
        (view.0 % self.n() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    fn committee(range: std::ops::Range<u64>) -> Committee {
        Committee::new(range.map(|i| Keypair::for_testing(i).public()).collect()).unwrap()
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        let c = Config::new(Digest::ZERO, committee(0..4), committee(10..14), 3);
        c.validate().unwrap();
        assert_eq!(c.leader(lamina_primitives::View(5)), 1);
        let mut bad = c.clone();
        bad.da_threshold = 5;
        assert!(matches!(bad.validate(), Err(ConfigError::BadDaThreshold { .. })));
        let mut bad = c.clone();
        bad.notarization_timeout = Duration::from_millis(1);
        assert!(matches!(bad.validate(), Err(ConfigError::TimeoutOrder(_))));
        let mut bad = c.clone();
        bad.empty_block_delay = Duration::from_secs(3600);
        assert!(matches!(bad.validate(), Err(ConfigError::TimeoutOrder(_))));
        let mut bad = c.clone();
        bad.min_block_interval = bad.leader_timeout;
        assert!(matches!(bad.validate(), Err(ConfigError::TimeoutOrder(_))));
        let mut bad = c.clone();
        bad.max_batches_per_block = 0;
        assert!(matches!(bad.validate(), Err(ConfigError::BadLimit(_))));
        let mut bad = c;
        bad.validators.members.push(bad.validators.members[0]);
        assert!(matches!(bad.validate(), Err(ConfigError::DuplicateValidator)));
    }
}
