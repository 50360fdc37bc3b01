//! The execution query protocol (`lamina/execution/1`): what a chain's execution node
//! answers over QUIC. The server (`lamina-execution-service`'s `query` module) answers
//! from its committed view; [`crate::QueryClient`] asks.

use std::marker::PhantomData;

use lamina_execution_core::ledger::{AssetId, LedgerFailure};
use lamina_execution_core::smt::StateProof;
use lamina_execution_core::{ChainFailure, CounterKey, DataKey, Receipt};
use lamina_interfaces::BridgeCounters;
use lamina_net::{Empty, Protocol, ProtocolId};
use lamina_primitives::{ChainId, Digest, Height, PublicKey, TxId};

/// A query.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum QueryRequest {
    /// Heights and roots.
    Status,
    /// An account's balance of an asset.
    Balance(PublicKey, AssetId),
    /// An account's next nonce.
    Nonce(PublicKey),
    /// A transaction's receipt.
    Receipt(TxId),
    /// The receipts of a committed height, in block order, skipping the first `n`.
    BlockReceipts(Height, u32),
    /// A balance with its proof against the state root.
    BalanceProof(PublicKey, AssetId),
    /// Outcomes of the committed heights from this one on (as many as fit in one
    /// answer; see the execution service's `View::recent`).
    Outcomes(Height),
    /// Outbound bridge messages to a chain from a sequence on, with their proofs.
    BridgeOutbox(ChainId, u64),
    /// Receipts of bridge messages from a chain from a sequence on, with their proofs.
    BridgeInbound(ChainId, u64),
    /// The bridge counters of every (peer chain, local asset) pair bridged so far.
    BridgeTotals,
    /// Any counter key's value (a chain builder's machine's state).
    Counter(CounterKey),
    /// Any data key's value.
    Data(DataKey),
}

impl lamina_primitives::Wire for QueryRequest {
    const NAME: &'static str = "ExecQueryRequest";
    const MAX_SIZE: usize = 128;
}

/// The committed heights and roots.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatusInfo {
    /// The chain.
    pub chain: ChainId,
    /// Last committed log height.
    pub height: Height,
    /// State root after it.
    pub state_root: Digest,
    /// Chained receipts root after it.
    pub receipts_root: Digest,
    /// Data root of the last square with the chain's data.
    pub data_root: Digest,
}

/// An answer; every variant carries the height it describes. `F` is the chain machine's
/// failure type (in receipts).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum QueryResponse<F = LedgerFailure> {
    /// Status.
    Status(StatusInfo),
    /// A balance (height, amount).
    Balance(Height, u128),
    /// A nonce (height, next nonce).
    Nonce(Height, u64),
    /// A receipt and the height that included it, or `None` if unknown among the
    /// retained heights.
    Receipt(Option<(Height, Receipt<F>)>),
    /// (committed height, asked height, receipts in the block, at most
    /// [`MAX_BLOCK_RECEIPTS`] of them from the asked position on). A height above the
    /// committed one has no receipts yet.
    BlockReceipts(Height, Height, u32, Vec<Receipt<F>>),
    /// The asked height was pruned: records and receipts are kept from this height on.
    Pruned(Height),
    /// The node could not read its own store (a local fault, logged there).
    Failed(String),
    /// A balance with its proof against `status.state_root`.
    BalanceProof(StatusInfo, u128, StateProof),
    /// (committed height, [(height, [(tx id, outcome code)])]) for the asked heights
    /// that had transactions, oldest first. Heights before the oldest one kept are
    /// absent; the answer stops after [`MAX_OUTCOMES`] entries, so ask again from the
    /// last height + 1 while it is below the committed height. Outcome codes are
    /// [`lamina_execution_core::Outcome::as_u8`]: 0 success, 1 failed, 2 rejected.
    Outcomes(Height, Vec<(Height, Vec<(TxId, u8)>)>),
    /// (committed height, items in sequence order, at most [`MAX_BRIDGE_ITEMS`]).
    Bridge(Height, Vec<BridgeItem>),
    /// (committed height, [(peer, local asset, origin chain, origin asset, counters)]).
    BridgeTotals(Height, Vec<(ChainId, AssetId, ChainId, u64, BridgeCounters)>),
    /// A counter's value (0 when absent).
    Counter(Height, u128),
    /// A data key's value, `None` when absent (at most [`MAX_DATA_VALUE`] bytes are
    /// served: a longer value also answers `None`).
    Data(Height, Option<Vec<u8>>),
}

/// Longest data value a [`QueryResponse::Data`] carries.
pub const MAX_DATA_VALUE: usize = 1 << 20;

/// Most items in one [`QueryResponse::Bridge`].
pub const MAX_BRIDGE_ITEMS: usize = 512;

/// Most receipts in one [`QueryResponse::BlockReceipts`].
pub const MAX_BLOCK_RECEIPTS: usize = 16_384;

/// Most transaction outcomes in one [`QueryResponse::Outcomes`].
pub const MAX_OUTCOMES: usize = 60_000;

impl<F: ChainFailure> lamina_primitives::Wire for QueryResponse<F> {
    const NAME: &'static str = "ExecQueryResponse";
    // Outcomes: 60k entries of 33 bytes (plus framing) at most.
    const MAX_SIZE: usize = 4 * 1024 * 1024;
}

/// The QUIC query protocol of a chain whose machine fails with `F` (the native ledger's
/// by default; a client of another machine names its failure type).
pub struct QueryProtocol<F = LedgerFailure>(PhantomData<fn() -> F>);

impl<F> std::fmt::Debug for QueryProtocol<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryProtocol")
    }
}

impl<F: ChainFailure> Protocol for QueryProtocol<F> {
    const ID: ProtocolId = ProtocolId::new("execution", 1);
    type Request = QueryRequest;
    type Response = QueryResponse<F>;
    type Message = Empty;
}

/// One bridge entry as the query protocol returns it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BridgeItem {
    /// The message ([`lamina_interfaces::BridgeMessage::encode`]).
    pub message: Vec<u8>,
    /// Height that wrote the entry (the lock, or the receive).
    pub written_at: Height,
    /// For receipts: [`lamina_interfaces::ReceiptKind::as_u8`]; 0 for outbound messages.
    pub receipt: u8,
    /// (cut height, encoded state proof) of the entry, once a claim cut covered it.
    pub proof: Option<(Height, Vec<u8>)>,
    /// For outbound messages: the height that refunded it.
    pub refunded_at: Option<Height>,
}
