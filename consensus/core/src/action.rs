//! What the core asks its driver to do, and the faults it reports.

use lamina_primitives::{CertError, Digest, FinalizedBlock, Height, Signature, View};

use crate::messages::{Message, VoteKind};
use crate::wal::WalRecord;

/// One thing for the driver to do. Actions must be performed **in order**:
/// a [`Action::Persist`] is a barrier, durable before any later action is performed
/// (that is what makes "signed implies durable before sent" true).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the record to the WAL and make it durable before any later action.
    Persist(WalRecord),
    /// Send to every other validator.
    Broadcast(Message),
    /// Send to one validator (by committee index).
    Send {
        /// Recipient index.
        to: usize,
        /// The message.
        message: Message,
    },
    /// Send validator `to` a [`Message::Finalized`] with the consecutive finalized
    /// blocks from height `from` on (at most `max`, and within the message size limit),
    /// read from the driver's ordered log.
    ServeFinalized {
        /// Recipient index.
        to: usize,
        /// First height wanted.
        from: Height,
        /// Most blocks.
        max: u32,
    },
    /// The next block of the ordered log (heights strictly consecutive across calls and
    /// restarts). Append it to the ordered log.
    Finalized(FinalizedBlock),
    /// WAL records of views at or below `through` are no longer needed once the
    /// finalized block of view `through` is durable in the ordered log.
    PruneWal {
        /// Highest view whose records may be dropped.
        through: View,
    },
    /// A peer misbehaved (the message was rejected); for metrics and peer scoring.
    Fault(Fault),
}

/// A rejected input and who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Committee index of the peer that sent it.
    pub peer: usize,
    /// What was wrong.
    pub kind: FaultKind,
}

/// What a peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A vote or proposal whose signature does not verify.
    InvalidSignature {
        /// Message kind.
        what: &'static str,
    },
    /// A vote signed (or claimed) by someone other than the sender.
    Impersonation {
        /// The signer index the vote names.
        claimed: u32,
    },
    /// Two validly signed, conflicting votes by one validator: slashable evidence.
    Equivocation(Evidence),
    /// A proposal that breaks a validity rule (recorded against the leader).
    InvalidProposal {
        /// The view.
        view: View,
        /// Which rule.
        reason: ProposalError,
    },
    /// A proposal from a validator that is not the view's leader.
    NotLeader {
        /// The view.
        view: View,
    },
    /// A certificate that does not verify.
    InvalidCertificate {
        /// Kind of certificate.
        kind: VoteKind,
        /// The view it names.
        view: View,
        /// Why.
        reason: CertError,
    },
    /// A finalized block (catch-up) that does not verify or link.
    InvalidFinalizedBlock {
        /// Its height.
        height: Height,
        /// Why.
        reason: CertError,
    },
    /// An announced batch whose availability certificate does not verify.
    InvalidBatch {
        /// Why.
        reason: CertError,
    },
    /// A structurally impossible message (nullify vote carrying a digest, ...).
    Malformed {
        /// What.
        what: &'static str,
    },
}

/// Two conflicting signed votes by one validator in one view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// Notarize or finalize.
    pub kind: VoteKind,
    /// The view.
    pub view: View,
    /// The equivocating validator.
    pub signer: u32,
    /// The first vote seen: (block digest, signature).
    pub first: (Digest, Signature),
    /// The conflicting vote: (block digest, signature).
    pub second: (Digest, Signature),
}

/// Why a proposal was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalError {
    /// The header's payload digest does not match the batches carried.
    PayloadMismatch,
    /// More batches than [`crate::Config::max_batches_per_block`].
    TooManyBatches {
        /// Carried.
        count: usize,
        /// Allowed.
        max: usize,
    },
    /// A batch's availability certificate does not verify against the DA committee.
    InvalidAvailability {
        /// Position in the block.
        index: usize,
        /// Why.
        reason: CertError,
    },
    /// A batch already ordered (in the block, an ancestor, or a recent finalized block).
    DuplicateBatch {
        /// Its attestation digest.
        attestation: Digest,
    },
    /// Height is not the parent's plus one.
    WrongHeight {
        /// Parent height + 1.
        expected: Height,
        /// In the header.
        actual: Height,
    },
    /// The parent is not from an earlier view, or is below the finalized tip.
    BadParent,
    /// The parent is a block other than the one notarized in its view.
    ParentNotNotarized,
    /// The timestamp is below the parent's.
    TimestampRegressed,
    /// `header.proposer` is not the view's leader.
    WrongProposer,
    /// A block above the epoch's last height that orders batches (blocks there are
    /// only an empty suffix that lets the boundary block be finalized: [`crate::epoch`]).
    BeyondEpochEnd,
}
