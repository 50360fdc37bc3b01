//! The settlement query protocol (`lamina/settlement/1`): what a settlement node answers
//! over QUIC. The server (`lamina-settlement-service`'s `query` module) answers from the
//! settlement state; [`crate::SettlementClient`] asks.

use lamina_net::{Empty, Protocol, ProtocolId};
use lamina_primitives::{ChainId, Digest, Height, PublicKey};

/// A query.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SettlementRequest {
    /// Every chain's status.
    Status,
    /// One chain's status.
    Chain(ChainId),
    /// A chain's recent claims.
    Claims(ChainId),
    /// One claim by id.
    Claim(Digest),
    /// The finalized root of a chain at or before a height, with its proof.
    Anchor(ChainId, Height),
    /// A settlement-ledger account.
    Account(PublicKey),
}

impl lamina_primitives::Wire for SettlementRequest {
    const NAME: &'static str = "SettlementRequest";
    const MAX_SIZE: usize = 128;
}

/// One chain's settlement status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChainStatus {
    /// The chain.
    pub chain: ChainId,
    /// Log height up to which the chain's state is final (0: nothing final yet).
    pub finalized_height: Height,
    /// The finalized state root (zero: none yet).
    pub finalized_root: Digest,
    /// The finalized chained receipts root.
    pub finalized_receipts_root: Digest,
    /// The claim that finalized it.
    pub finalized_claim: Digest,
    /// Settlement height at which it finalized.
    pub finalized_at: Height,
    /// Claims still inside their window.
    pub pending: u64,
    /// Root over the chain's finalized anchors (what anchor proofs verify against).
    pub anchors_root: Digest,
}

/// The service's status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatusInfo {
    /// Last processed log height.
    pub height: Height,
    /// Highest log height seen.
    pub log_tip: Height,
    /// Digest of the whole settlement state.
    pub state_root: Digest,
    /// Challenge window in force at `height`, in log heights (governance may change it;
    /// each claim keeps the deadline it got when included).
    pub window: u64,
    /// Per chain.
    pub chains: Vec<ChainStatus>,
    /// Squares proven wrongly encoded (verified [`lamina_settlement_core::Entry::BadEncoding`]
    /// proofs kept as evidence), in digest order; at most [`MAX_BAD_SQUARES`] listed.
    pub bad_squares: Vec<Digest>,
    /// How many squares have been proven wrongly encoded since genesis.
    pub bad_encodings: u64,
}

/// Most bad squares listed in a status answer.
pub const MAX_BAD_SQUARES: usize = 64;

/// A claim as settlement sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClaimInfo {
    /// Claim id.
    pub id: Digest,
    /// Chain.
    pub chain: ChainId,
    /// Parent claim id.
    pub parent: Digest,
    /// Range start (exclusive).
    pub from: Height,
    /// Range end (inclusive).
    pub to: Height,
    /// Claimed state root after `to`.
    pub state_root: Digest,
    /// Claimed chained receipts root.
    pub receipts_root: Digest,
    /// Steps in the claim.
    pub steps: u64,
    /// Claimer.
    pub claimer: PublicKey,
    /// Log height that included it.
    pub included_at: Height,
    /// Last height a challenge may be included (it finalizes after it).
    pub deadline: Height,
    /// `pending`, `finalized`, `slashed`, `orphaned` or `unavailable`.
    pub status: String,
}

/// A finalized root with its proof.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AnchorInfo {
    /// Chain.
    pub chain: ChainId,
    /// Log height the root describes.
    pub height: Height,
    /// Finalized state root.
    pub state_root: Digest,
    /// Finalized chained receipts root.
    pub receipts_root: Digest,
    /// The claim.
    pub claim: Digest,
    /// Settlement height at which it finalized.
    pub finalized_at: Height,
    /// The chain's anchors root the proof verifies against.
    pub anchors_root: Digest,
    /// Leaf index in the chain's anchor list.
    pub index: u64,
    /// Number of anchors.
    pub leaf_count: u64,
    /// Merkle siblings, leaf level upwards.
    pub siblings: Vec<Digest>,
}

/// A settlement-ledger account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AccountInfo {
    /// The key.
    pub account: PublicKey,
    /// Spendable for bonds.
    pub free: u64,
    /// Locked in bonds.
    pub bonded: u64,
    /// Smallest nonce its next settlement transaction may use.
    pub next_nonce: u64,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SettlementResponse {
    /// Status.
    Status(StatusInfo),
    /// A chain (`None`: unknown).
    Chain(Option<ChainStatus>),
    /// Claims, newest first.
    Claims(Vec<ClaimInfo>),
    /// A claim (`None`: unknown or pruned).
    Claim(Option<ClaimInfo>),
    /// An anchor (`None`: nothing final at or before that height).
    Anchor(Option<AnchorInfo>),
    /// An account.
    Account(AccountInfo),
}

impl lamina_primitives::Wire for SettlementResponse {
    const NAME: &'static str = "SettlementResponse";
    const MAX_SIZE: usize = 4 * 1024 * 1024;
}

/// The QUIC query protocol.
#[derive(Debug)]
pub struct SettlementProtocol;

impl Protocol for SettlementProtocol {
    const ID: ProtocolId = ProtocolId::new("settlement", 1);
    type Request = SettlementRequest;
    type Response = SettlementResponse;
    type Message = Empty;
}

/// Most claims one [`SettlementResponse::Claims`] lists.
pub const MAX_CLAIMS: usize = 256;
