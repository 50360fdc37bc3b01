//! The committee schedule a validator follows when committees change by vote
//! ([`lamina_consensus_core::epoch`]).
//!
//! The schedule comes from the node's governance follower (a pure function of the
//! ordered log, so every validator computes the same one) and is handed to the
//! validator with [`crate::Validator::set_schedule`] whenever it grows. The driver runs
//! one core per epoch it is a member of, and follows the log (checking each block against
//! its epoch's committee) through the epochs it is not.

use lamina_consensus_core::{CommitteeSchedule, EpochInfo};
use lamina_interfaces::NodeEntry;
use lamina_net::PeerSet;
use lamina_primitives::{Committee, DaCommittee, Height, NodeId};

/// One consensus epoch: from `first_height` on, `validators` order the log and its DA
/// committee certifies the squares they order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledEpoch {
    /// Consensus epoch number (0: the genesis committee).
    pub epoch: u64,
    /// The first height it orders.
    pub first_height: Height,
    /// Its validators, in order, with the addresses to dial them at.
    pub validators: Vec<NodeEntry>,
    /// Its DA committee; `None`: the genesis one.
    pub da: Option<DaCommittee>,
    /// Most batches one of its blocks may order (a validity rule of the epoch, never
    /// above the network's cap); `None`: the cap.
    pub max_batches: Option<usize>,
    /// Most blob bytes one batch it orders may carry (a validity rule of the epoch);
    /// `None`: no limit but the square's.
    pub max_batch_bytes: Option<u64>,
}

impl ScheduledEpoch {
    /// The validators' keys, in order.
    pub fn keys(&self) -> Vec<NodeId> {
        self.validators.iter().map(|v| v.key).collect()
    }

    /// The epoch as the core's readers check it.
    pub fn info(&self) -> Option<EpochInfo> {
        Some(EpochInfo {
            epoch: self.epoch,
            first_height: self.first_height,
            validators: Committee::new(self.keys()).ok()?,
        })
    }
}

/// The epochs known so far, and how far ahead they are final.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Epochs, oldest first, by increasing number and first height (the first one kept
    /// may start after height 1 once older ones are forgotten).
    pub epochs: Vec<ScheduledEpoch>,
    /// Every boundary at or below this height is in `epochs`: the driver outputs no
    /// block above it.
    pub known_through: Height,
}

impl Schedule {
    /// Checks the order and sizes; `Err` names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs.is_empty() {
            return Err("a schedule needs at least one epoch".into());
        }
        for w in self.epochs.windows(2) {
            if w[1].epoch != w[0].epoch + 1 || w[1].first_height <= w[0].first_height {
                return Err(format!("epoch {} does not follow epoch {}", w[1].epoch, w[0].epoch));
            }
        }
        for e in &self.epochs {
            if e.info().is_none() || e.validators.is_empty() {
                return Err(format!("epoch {} has no usable committee", e.epoch));
            }
        }
        Ok(())
    }

    /// The epoch `height` belongs to, if known (`None` above
    /// [`Schedule::known_through`] or below the oldest epoch kept).
    pub fn epoch_for(&self, height: Height) -> Option<&ScheduledEpoch> {
        if height > self.known_through {
            return None;
        }
        self.epochs.iter().rev().find(|e| e.first_height <= height)
    }

    /// The epoch numbered `epoch`.
    pub fn get(&self, epoch: u64) -> Option<&ScheduledEpoch> {
        self.epochs.iter().find(|e| e.epoch == epoch)
    }

    /// The committees alone, for readers of the log ([`CommitteeSchedule::check`]).
    pub fn committees(&self) -> CommitteeSchedule {
        CommitteeSchedule {
            epochs: self.epochs.iter().filter_map(ScheduledEpoch::info).collect(),
            known_through: self.known_through,
        }
    }

    /// The last height of `epoch`, if the next epoch is known and starts within
    /// [`Schedule::known_through`] (one past it at most).
    pub fn last_height(&self, epoch: u64) -> Option<Height> {
        self.get(epoch.saturating_add(1))
            .map(|n| Height(n.first_height.0.saturating_sub(1)))
            .filter(|l| *l <= self.known_through)
    }

    /// A validator's schedule before its governance follower reports: the genesis
    /// committee, known through no height (no core starts until the follower says).
    pub fn unknown(genesis_validators: Vec<NodeEntry>) -> Self {
        Schedule {
            epochs: vec![ScheduledEpoch {
                epoch: 0,
                first_height: Height(1),
                validators: genesis_validators,
                da: None,
                max_batches: None,
                max_batch_bytes: None,
            }],
            known_through: Height(0),
        }
    }

    /// The validators to talk to when the log's next height is `next`: those of the
    /// epoch before that height's (to finish it with those still in it), of that epoch
    /// and of every later one known. Validators of older epochs only are left out.
    pub fn current_validators(&self, next: Height) -> Vec<&NodeEntry> {
        let current = self.epoch_for(next).or(self.epochs.last()).map_or(0, |e| e.epoch);
        self.epochs.iter().filter(|e| e.epoch + 1 >= current).flat_map(|e| e.validators.iter()).collect()
    }

    /// Who may connect on `lamina/consensus` ([`Schedule::current_validators`]), `me`
    /// excluded: the others are refused (and disconnected).
    pub fn peers(&self, next: Height, me: &NodeId) -> PeerSet {
        PeerSet::dial_entries(self.current_validators(next)).without(me)
    }
}
