//! What a validator must remember across a crash so that it never signs conflicting
//! messages: its own proposals and votes.
//!
//! The core emits [`crate::Action::Persist`] before the [`crate::Action::Broadcast`] that
//! sends what it signed; the driver must make the record durable before it performs any
//! later action. On restart the driver hands the records back through
//! [`Recovered`], and the core refuses to sign anything that conflicts with them:
//!
//! * no second proposal or notarize vote in a view,
//! * no nullify vote in a view where it sent a finalize vote, and no finalize vote in a
//!   view it nullified.
//!
//! Records of views at or below the finalized tip are no longer needed
//! ([`crate::Action::PruneWal`]); a driver may drop them only once the tip they refer to
//! is itself durable in its ordered log (otherwise a crash could bring back an older
//! tip without the records that protected the views above it).

use lamina_primitives::{AvailabilityCertificate, Block, Digest, FinalizedBlock, View, Wire};

/// One durable record of something this validator signed.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum WalRecord {
    /// This validator proposed the block (its header names the view); implies a notarize
    /// vote for it.
    Proposed(Block),
    /// A notarize vote for the block digest in the view.
    Notarized(View, Digest),
    /// A nullify vote in the view.
    Nullified(View),
    /// A finalize vote for the block digest of the view (proper, because the block was
    /// notarized and the view not nullified here, or late, for an ancestor of a
    /// finalized block).
    Finalized(View, Digest),
}

impl WalRecord {
    /// The view the record is about.
    pub fn view(&self) -> View {
        match self {
            WalRecord::Proposed(b) => b.header.view,
            WalRecord::Notarized(view, _) | WalRecord::Nullified(view) | WalRecord::Finalized(view, _) => *view,
        }
    }
}

impl Wire for WalRecord {
    const NAME: &'static str = "consensus::WalRecord";
    const MAX_SIZE: usize = 512 + <lamina_primitives::Block as Wire>::MAX_SIZE;
}

/// What a restarting validator hands its core.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The most recent finalized blocks of the local ordered log, oldest first and
    /// consecutive; the last is the tip. Up to [`crate::Config::dedup_window`] of them are
    /// used to refuse batches ordered twice. Empty for a fresh node.
    pub finalized: Vec<FinalizedBlock>,
    /// Every WAL record not yet pruned, in the order written.
    pub wal: Vec<WalRecord>,
    /// This validator's own certified batches that it had not yet seen ordered (the
    /// driver keeps them durable from [`crate::Core::submit_batch`] until they appear
    /// in a finalized block). They are queued and announced again.
    pub batches: Vec<AvailabilityCertificate>,
}
