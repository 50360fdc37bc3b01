//! Errors of the protocol core.
//!
//! Peer misbehaviour never surfaces as an `Err`: the core reports it as an
//! [`crate::Action::Fault`] (reject, count, score the peer) and carries on. `Err` is
//! for local faults only: a bad configuration, an unusable recovered state, or a local
//! caller handing in something invalid.

use lamina_primitives::{CertError, Digest, Height, View};

/// Why a configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A committee has no members.
    #[error("{0} committee is empty")]
    EmptyCommittee(&'static str),
    /// More validators than certificates can name.
    #[error("committee of {size} exceeds the maximum {max}")]
    CommitteeTooLarge {
        /// Committee size.
        size: usize,
        /// Largest supported.
        max: usize,
    },
    /// A validator key appears twice.
    #[error("a validator key appears twice")]
    DuplicateValidator,
    /// DA threshold outside `1..=size`.
    #[error("DA threshold {threshold} outside 1..={size}")]
    BadDaThreshold {
        /// The threshold.
        threshold: usize,
        /// DA committee size.
        size: usize,
    },
    /// A timeout is zero.
    #[error("timeouts must be non-zero")]
    ZeroTimeout,
    /// Timeouts in the wrong order.
    #[error("{0}")]
    TimeoutOrder(&'static str),
    /// A limit is zero or above what the wire format allows.
    #[error("limit {0} out of range")]
    BadLimit(&'static str),
    /// This node's key is not in the validator committee.
    #[error("own key is not a validator")]
    NotAValidator,
}

/// Local errors of the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// The recovered finalized blocks do not form a chain.
    #[error("recovered log is not a chain at height {height}")]
    BrokenRecoveredLog {
        /// First height that does not link.
        height: Height,
    },
    /// A WAL record contradicts another one (two different notarize votes in a view):
    /// the WAL is corrupt or was written by different software. Fail-stop.
    #[error("WAL has conflicting records for view {view}")]
    ConflictingWal {
        /// The view.
        view: View,
    },
    /// A locally submitted availability certificate does not verify.
    #[error("availability certificate {attestation:?} is invalid: {source}")]
    InvalidAvailability {
        /// Its attestation digest.
        attestation: Digest,
        /// Why.
        source: CertError,
    },
    /// Too many batches are pending; retry after some are ordered.
    #[error("pending batch queue is full ({0})")]
    PendingFull(usize),
    /// [`crate::Core::end_epoch_at`] named a height the core already output past (the
    /// driver learnt the boundary too late: it must hold outputs with
    /// [`crate::Core::set_horizon`] until it knows the schedule), or a different last
    /// height than it named before.
    #[error("epoch cannot end at height {last}: the core is at height {tip}, or was told another end")]
    EpochEnd {
        /// The last height named.
        last: Height,
        /// The core's finalized height.
        tip: Height,
    },
    /// The recovered log's tip cannot start this epoch: an epoch after the first needs
    /// the previous epoch's last block, and a tip of a later epoch belongs to a later
    /// core.
    #[error("epoch {epoch} cannot start from the log's tip at height {tip}")]
    WrongEpochTip {
        /// The epoch of the core.
        epoch: u64,
        /// The tip's height.
        tip: Height,
    },
    /// This core's epoch has ended ([`crate::Core::epoch_done`]): the next epoch's core
    /// takes batches.
    #[error("epoch {0} has ended")]
    EpochEnded(u64),
}
