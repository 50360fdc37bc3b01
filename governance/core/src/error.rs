//! The crate's one error type.

use lamina_primitives::{ChainId, Digest, Height, PublicKey};

/// Why a governance transaction was rejected (or, for [`Error::Encode`], could not be
/// built; for [`Error::OutOfOrder`], why a block was not applied).
///
/// Every rejection leaves the state exactly as it was: no nonce advances, no vote is
/// counted, no proposal opens. The state machine has no local faults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Error {
    /// The transaction is not addressed to the governance namespace.
    #[error("transaction for chain {0} is not a governance transaction")]
    NotGovernance(ChainId),
    /// The entry was signed for another network.
    #[error("entry is for network {got}, not this network {want}")]
    WrongNetwork {
        /// The network the entry names.
        got: Digest,
        /// This network.
        want: Digest,
    },
    /// The payload does not decode as an [`crate::entry::Envelope`].
    #[error("malformed entry: {0}")]
    Malformed(String),
    /// An entry could not be encoded (too large for a transaction).
    #[error("cannot encode entry: {0}")]
    Encode(String),
    /// The transaction's signature does not verify.
    #[error("bad transaction signature")]
    BadSignature,
    /// The sender is not a voting member of the current epoch.
    #[error("{0} is not a voting member")]
    NotMember(PublicKey),
    /// The nonce was already used: nonces of a sender must increase (gaps are allowed).
    #[error("stale nonce {nonce} for {sender}: next usable is {next}")]
    StaleNonce {
        /// The sender.
        sender: PublicKey,
        /// The transaction's nonce.
        nonce: u64,
        /// Smallest nonce still usable.
        next: u64,
    },
    /// A key in the action is not a valid ed25519 public key.
    #[error("{0} is not a valid ed25519 public key")]
    MalformedKey(PublicKey),
    /// A field of the action is malformed or out of range (names, addresses, values).
    #[error("invalid action: {0}")]
    InvalidAction(String),
    /// The action cannot apply to the current membership (the key is already in use, the
    /// node to remove is not there, the committee would be left empty ...).
    #[error("action does not apply: {0}")]
    Inapplicable(String),
    /// Too many proposals are open (for this member, or in total).
    #[error("too many open proposals: {0}")]
    TooManyProposals(String),
    /// No proposal has this id (never opened, or closed long ago and forgotten).
    #[error("no proposal {0}")]
    UnknownProposal(u64),
    /// The proposal no longer takes votes (its period ended or its outcome is decided).
    #[error("proposal {id} is not open for votes: it is {status}")]
    NotOpen {
        /// The proposal.
        id: u64,
        /// Its status, in words.
        status: String,
    },
    /// The member already voted on this proposal (votes are final).
    #[error("{voter} already voted on proposal {id}")]
    AlreadyVoted {
        /// The proposal.
        id: u64,
        /// The member.
        voter: PublicKey,
    },
    /// The member was not a voting member when the proposal opened.
    #[error("{voter} was not a voting member when proposal {id} opened")]
    NotInElectorate {
        /// The proposal.
        id: u64,
        /// The key.
        voter: PublicKey,
    },
    /// The entry's `valid_until` height has passed (a late or replayed transaction).
    #[error("valid until height {valid_until}, applied at {height}")]
    Expired {
        /// Its last valid height.
        valid_until: u64,
        /// The height it reached the log at.
        height: Height,
    },
    /// The vote names another transaction than the one that opened the proposal.
    #[error("the vote was signed for another proposal than {id}")]
    WrongProposal {
        /// The proposal id it named.
        id: u64,
    },
    /// Blocks must be applied at increasing heights.
    #[error("height {height} applied after {last}")]
    OutOfOrder {
        /// The height given.
        height: Height,
        /// The last height applied.
        last: Height,
    },
}
