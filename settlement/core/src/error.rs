//! The crate's one error type.

use lamina_primitives::{ChainId, Digest, Height, PublicKey};

/// Why a settlement transaction was rejected (or, for [`Error::Encode`], could not be
/// built; for the `Anchor*` variants, why an [`crate::AnchorProof`] did not verify).
///
/// Every variant except [`Error::Encode`] is "the submitter misbehaved": the entry is
/// rejected, reported in [`crate::Event::EntryRejected`], and the state is left exactly
/// as it was (no bond moves, no nonce advances; a claim rejected when its hold expires
/// or when it is released only leaves the held set). Nothing here is a local fault: the
/// state machine has none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The transaction is not addressed to the settlement namespace.
    #[error("transaction for chain {0} is not a settlement transaction")]
    NotSettlement(ChainId),
    /// The payload does not decode as an [`crate::Entry`].
    #[error("malformed entry: {0}")]
    Malformed(String),
    /// An entry could not be encoded (too large for a transaction).
    #[error("cannot encode entry: {0}")]
    Encode(String),
    /// The transaction's signature does not verify.
    #[error("bad transaction signature")]
    BadSignature,
    /// The transaction's nonce was already used (replay protection: nonces of a sender
    /// must increase; gaps are allowed).
    #[error("stale nonce {nonce} for {sender:?}: next usable is {next}")]
    StaleNonce {
        /// The sender.
        sender: PublicKey,
        /// The transaction's nonce.
        nonce: u64,
        /// Smallest nonce still usable.
        next: u64,
    },
    /// A claim was posted by someone other than its claimer.
    #[error("claim by {claimer:?} posted by {sender:?}")]
    SenderMismatch {
        /// Transaction sender.
        sender: PublicKey,
        /// The claim's claimer.
        claimer: PublicKey,
    },
    /// The claim's own signature does not verify.
    #[error("bad claim signature")]
    BadClaimSignature,
    /// The claim binds another network.
    #[error("claim for network {got}, this network is {want}")]
    WrongNetwork {
        /// The claim's network id.
        got: Digest,
        /// This network's id.
        want: Digest,
    },
    /// The chain is not in the genesis.
    #[error("unknown chain {0}")]
    UnknownChain(ChainId),
    /// The claim binds other ledger parameters than the chain's genesis spec.
    #[error("claim for chain {chain} binds ledger params {got}, genesis says {want}")]
    WrongParams {
        /// The chain.
        chain: ChainId,
        /// The claim's params digest.
        got: Digest,
        /// The genesis params digest.
        want: Digest,
    },
    /// A claim with this id was already accepted.
    #[error("duplicate claim {0}")]
    Duplicate(Digest),
    /// The claim covers heights not ordered before its inclusion height.
    #[error("claim covers height {to}, which is not before inclusion height {height}")]
    Future {
        /// The claim's `to`.
        to: Height,
        /// Inclusion height (or the last observed height, if lower).
        height: Height,
    },
    /// A claim root is [`Digest::ZERO`], which is never a root of anything.
    #[error("claim names the zero digest as a root")]
    ZeroRoot,
    /// A genesis-parent claim while the chain already has a finalized anchor, or one
    /// whose range does not start at 0.
    #[error("genesis-parent claim not allowed: {0}")]
    BadGenesisClaim(&'static str),
    /// The parent is neither the chain's finalized head, nor a duplicate of it, nor a
    /// pending claim of the chain (it is of another chain, ended slashed, orphaned or
    /// unavailable, or ends below the finalized head). A claim whose parent is not
    /// known at all is held instead ([`crate::Event::ClaimHeld`]).
    #[error("parent {0} is neither the finalized head (or a duplicate of it) nor a pending claim of the chain")]
    BadParent(Digest),
    /// The claim's parent is unknown and it cannot be held: its claimer already has
    /// [`crate::state::MAX_HELD_PER_CLAIMER`] claims held, or [`crate::state::MAX_HELD`]
    /// claims are held in all.
    #[error("parent {parent} unknown and no room to hold the claim of {claimer:?} (limit {limit})")]
    TooManyHeld {
        /// The unknown parent.
        parent: Digest,
        /// The claimer.
        claimer: PublicKey,
        /// The limit that was reached.
        limit: usize,
    },
    /// A held claim's parent was not accepted within the challenge window W of the
    /// height that held it: the claim is dropped (reported at the end of height
    /// `held_at + W`). It never bonded nor used its nonce.
    #[error("claim {claim} held at {held_at}: its parent {parent} was not accepted within the window")]
    HoldExpired {
        /// The held claim.
        claim: Digest,
        /// Its parent, still unknown.
        parent: Digest,
        /// The height that held it.
        held_at: Height,
    },
    /// The range does not start where the parent's ended.
    #[error("range starts at {from}, parent ends at {parent_to}")]
    RangeMismatch {
        /// The claim's `from`.
        from: Height,
        /// The parent's `to`.
        parent_to: Height,
    },
    /// The executor does not know the chain's genesis state root.
    #[error("no genesis root for chain {chain}: {reason}")]
    NoGenesisRoot {
        /// The chain.
        chain: ChainId,
        /// The executor's error.
        reason: String,
    },
    /// The claim is internally inconsistent ([`lamina_interfaces::CheckpointClaim::check_shape`]).
    #[error("malformed claim: {0}")]
    Shape(String),
    /// The steps do not list exactly the log's heights with data for the chain in
    /// `(from, to]`, with their inputs digests (the DA gate).
    #[error("steps disagree with the log at height {height}: {reason}")]
    InputsMismatch {
        /// First height where claim and log disagree.
        height: Height,
        /// How.
        reason: &'static str,
    },
    /// A step covers data whose availability certificates did not verify or whose
    /// square was proven badly encoded.
    #[error("step at height {0} covers unavailable or badly encoded data")]
    Unavailable(Height),
    /// The account's free balance cannot cover the bond.
    #[error("{account:?} has {have} free, needs {need}")]
    InsufficientBalance {
        /// The account.
        account: PublicKey,
        /// Free balance.
        have: u64,
        /// Bond required.
        need: u64,
    },
    /// No claim with this id is known (or it was pruned long after ending).
    #[error("unknown claim {0}")]
    UnknownClaim(Digest),
    /// The claim is no longer pending.
    #[error("claim {claim} is {status:?}, not pending")]
    NotPending {
        /// The claim.
        claim: Digest,
        /// Its status.
        status: crate::ClaimStatus,
    },
    /// A challenge in the same height as its claim (the service resolves every
    /// challenge's target before applying a height).
    #[error("challenge of claim {0} in the height that included it")]
    TooEarly(Digest),
    /// The challenge window of the claim has closed.
    #[error("challenge at height {height} after claim {claim}'s deadline {deadline}")]
    TooLate {
        /// The claim.
        claim: Digest,
        /// Its deadline (last height a challenge is accepted).
        deadline: Height,
        /// The challenge's height.
        height: Height,
    },
    /// The step index is outside the claim's steps.
    #[error("step {step} out of range: claim has {steps} steps")]
    BadStep {
        /// The challenged index.
        step: u32,
        /// Number of steps.
        steps: usize,
    },
    /// The challenge carries an empty witness (nothing to check; refused for free).
    #[error("empty witness")]
    EmptyWitness,
    /// The service supplied no proof inputs (step transactions and witness) for a
    /// challenge.
    #[error("no proof inputs supplied for the challenge")]
    MissingProof,
    /// The bad-encoding proof does not verify.
    #[error("bad-encoding proof rejected: {0}")]
    BadEncodingProof(String),
    /// The data root is already known to be badly encoded.
    #[error("data root {0} already proven badly encoded")]
    AlreadyBad(Digest),
    /// An anchor proof's position is not its anchor's index.
    #[error("anchor proof is for index {proof}, anchor says {anchor}")]
    AnchorIndexMismatch {
        /// Index in the proof.
        proof: u64,
        /// Index in the anchor.
        anchor: u64,
    },
    /// An anchor proof's Merkle path does not lead to the anchors root.
    #[error("anchor proof: {0}")]
    AnchorProof(lamina_primitives::ProofError),
}
