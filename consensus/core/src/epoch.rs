//! Epochs: the validator committee changes at boundary heights, one protocol instance per
//! epoch.
//!
//! # The model
//!
//! Epoch `e` orders the heights `first_height(e) ..= last_height(e)` with its own
//! committee; epoch 0 starts at height 1 with the genesis committee. Who is in epoch
//! `e + 1`, and where epoch `e` ends, is decided on the ordered log (by governance) well
//! before the boundary, so every validator learns it from the same log prefix. A
//! validator runs one [`crate::Core`] per epoch ([`crate::Config::epoch`]):
//!
//! * **Views carry their epoch.** Epoch `e` uses the views
//!   `e · VIEWS_PER_EPOCH + 1 .. (e + 1) · VIEWS_PER_EPOCH` ([`epoch_of`],
//!   [`first_view`]). Every signature already binds the view (notarize and nullify votes
//!   through [`crate::vote_digest`], finalize votes through the header), so no vote,
//!   certificate or finalized block of one epoch can pass for another's, even when the
//!   two committees share keys. Epoch 0's views are the views the protocol always used.
//! * **The old committee finalizes the boundary block.** A core told its epoch's last
//!   height ([`crate::Core::end_epoch_at`]) keeps running the unchanged protocol, but
//!   blocks above that height must be empty (a *suffix*, as in Aptos' reconfiguration)
//!   and are never output: they only exist so that the boundary block is finalized even
//!   when its own view was nullified (a descendant's finalization finalizes it). Once
//!   the boundary block is output the core is done ([`crate::Core::epoch_done`]) and
//!   does nothing more.
//! * **The new committee starts from the boundary block.** The next epoch's core is
//!   created with the boundary block as the tip of its recovered log (its certificate
//!   is the old committee's) and starts at the epoch's first view; views between the
//!   tip's view and that one belong to the old epoch and count as skipped.
//! * **A core outputs nothing it cannot place.** Until the driver knows the schedule
//!   through a height (its governance follower has read far enough), the core holds
//!   finalized blocks above it ([`crate::Core::set_horizon`]); otherwise a late-learnt
//!   boundary could come after the core output blocks of the next epoch under the old
//!   committee. A leader proposes nothing above its horizon (it cannot tell whether the
//!   height is past the boundary), so nothing grows above it while it stalls. What the
//!   driver knows at start goes in [`crate::Config::last_height`] and
//!   [`crate::Config::horizon`], so that a restarted core never acts before it is told.
//!
//! # What the driver must do
//!
//! * Name the epoch's end ([`crate::Core::end_epoch_at`]) before moving the horizon
//!   past it: a Byzantine leader may have extended the chain above the horizon, and
//!   those blocks would be output under this committee.
//! * Route each message by the epoch of its view ([`epoch_of`]) to that epoch's core,
//!   with the sender's index in *that* epoch's committee. A core ignores other epochs'
//!   messages without blaming anyone, so misrouting costs liveness, not safety.
//! * Answer a peer still in an ended epoch from its ordered log: a finished core
//!   ignores everything, including [`crate::SyncRequest`]s, and the peer may need the
//!   boundary block (with its certificate) from this node to finish that epoch.
//! * Hand the finished core's waiting batches ([`crate::Core::pending`]) to the next
//!   core (through [`crate::Recovered::batches`]; they count against this validator's
//!   own pending limit there); a validator that leaves the committee must give its own
//!   batches to one that stays, or they are lost.
//! * Readers of the log call [`check_finalized`] with the epoch of the block's height,
//!   which they know only as far as their own horizon: a reader must not accept a block
//!   above it.
//!
//! Safety across the switch: within an epoch this is the unchanged protocol (the suffix
//! rule only makes validity stricter, identically on every honest validator). Epoch
//! `e`'s log ends at its boundary block, final under epoch `e`'s committee; epoch
//! `e + 1`'s blocks all descend from it (its cores start there and never go below their
//! tip) and are finalized under the new committee in views no other epoch uses. A reader
//! of the log ([`check_finalized`]) checks each block against the committee of its
//! height's epoch *and* that its view is in that epoch, which a suffix block of the old
//! epoch (same height, old view) fails.

use lamina_primitives::{CertError, Committee, FinalizedBlock, Height, View};

/// How many views each epoch owns. 2^32 views at the fastest view rate (one per
/// `min_block_interval`, 50 ms) last about 6.8 years; an epoch that runs out of views
/// stops making progress (its core never enters a view of the next epoch).
pub const VIEWS_PER_EPOCH: u64 = 1 << 32;

/// The epoch a view belongs to.
pub fn epoch_of(view: View) -> u64 {
    // View 0 (the genesis tip's) and views 1 .. 2^32 are epoch 0's.
    view.0.saturating_sub(1) / VIEWS_PER_EPOCH
}

/// The first view of `epoch`.
pub fn first_view(epoch: u64) -> View {
    View(epoch.saturating_mul(VIEWS_PER_EPOCH).saturating_add(1))
}

/// The last view of `epoch`.
pub fn last_view(epoch: u64) -> View {
    View(epoch.saturating_add(1).saturating_mul(VIEWS_PER_EPOCH))
}

/// One epoch of a network's schedule: from which height its committee orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochInfo {
    /// The epoch number (0 for the genesis committee).
    pub epoch: u64,
    /// The first height this epoch orders (1 for epoch 0); the previous epoch's last
    /// height is the one before.
    pub first_height: Height,
    /// The validators of this epoch, in order (leader of view `v` is `v mod n`).
    pub validators: Committee,
}

/// Why a finalized block does not belong to the log under a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochCheckError {
    /// The block's view is not one of its height's epoch.
    #[error("block at height {height} has view {view}, outside epoch {epoch}")]
    WrongEpoch {
        /// The block's height.
        height: Height,
        /// Its view.
        view: View,
        /// The epoch its height belongs to.
        epoch: u64,
    },
    /// The reader does not know the committee of this height yet (its schedule reaches
    /// only so far): not the block's fault; read it again later.
    #[error("the committee of height {height} is not known yet (known through {known_through})")]
    Unknown {
        /// The block's height.
        height: Height,
        /// How far the reader's schedule reaches.
        known_through: Height,
    },
    /// The certificate does not verify against the epoch's committee.
    #[error("block at height {height}: {reason}")]
    Certificate {
        /// The block's height.
        height: Height,
        /// Why.
        reason: CertError,
    },
}

/// Checks a finalized block against the epoch its height belongs to (`info`, found by
/// the reader from the schedule): its view must be one of that epoch's, and its
/// certificate a quorum of that epoch's committee over its header. This is the check
/// every reader of the ordered log makes once committees change; the parent link and
/// payload digest are checked as before.
pub fn check_finalized(block: &FinalizedBlock, info: &EpochInfo) -> Result<(), EpochCheckError> {
    let height = block.height();
    let view = block.block.header.view;
    if epoch_of(view) != info.epoch || view == View(0) {
        return Err(EpochCheckError::WrongEpoch { height, view, epoch: info.epoch });
    }
    block.verify(&info.validators).map_err(|reason| EpochCheckError::Certificate { height, reason })
}

/// The committee of each height as far as a reader of the log knows it (from its
/// governance follower): what [`check_finalized`] needs for every block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitteeSchedule {
    /// Epochs, oldest first, by increasing first height.
    pub epochs: Vec<EpochInfo>,
    /// Every boundary at or below this height is in `epochs`.
    pub known_through: Height,
}

impl CommitteeSchedule {
    /// The genesis committee, for every height (a network whose committee never changes).
    pub fn fixed(validators: Committee) -> Self {
        CommitteeSchedule {
            epochs: vec![EpochInfo { epoch: 0, first_height: Height(1), validators }],
            known_through: Height(u64::MAX),
        }
    }

    /// The epoch `height` belongs to, if known.
    pub fn epoch_for(&self, height: Height) -> Option<&EpochInfo> {
        if height > self.known_through {
            return None;
        }
        self.epochs.iter().rev().find(|e| e.first_height <= height)
    }

    /// [`check_finalized`] against the epoch of the block's height.
    pub fn check(&self, block: &FinalizedBlock) -> Result<(), EpochCheckError> {
        let height = block.height();
        let info =
            self.epoch_for(height).ok_or(EpochCheckError::Unknown { height, known_through: self.known_through })?;
        check_finalized(block, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_partition_into_epochs() {
        assert_eq!(epoch_of(View(0)), 0);
        assert_eq!(epoch_of(View(1)), 0);
        assert_eq!(epoch_of(last_view(0)), 0);
        assert_eq!(epoch_of(first_view(1)), 1);
        assert_eq!(first_view(1), View(last_view(0).0 + 1));
        assert_eq!(epoch_of(last_view(7)), 7);
        assert_eq!(epoch_of(first_view(8)), 8);
        assert_eq!(first_view(0), View(1));
    }
}
