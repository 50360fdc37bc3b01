//! The DA wire protocol, `lamina/da/1..2`: typed requests and responses between
//! dispersers, retrieval clients, light samplers and DA storage nodes.
//!
//! Version 2 adds [`DaRequest::StoreFor`]: a store for a DA committee changed by vote,
//! named by its id, so that the node knows its position (and so its columns) in it and
//! signs the attestation bound to it ([`lamina_primitives::DaCommittee`]). A version-1
//! node stores for the genesis committee only; a client stores for another committee
//! only over version 2. Everything else is the same in both versions.
//!
//! | request | answer | who asks |
//! |---|---|---|
//! | [`DaRequest::Store`] | [`DaResponse::Stored`]: columns held, and the node's attestation signature once it durably holds every column assigned to it (genesis committee) | disperser |
//! | [`DaRequest::StoreFor`] (v2) | [`DaResponse::Stored`], as `Store`, for the committee it names | disperser |
//! | [`DaRequest::Header`] | [`DaResponse::Header`]: all axis roots and the namespace table | retrieval |
//! | [`DaRequest::Roots`] | [`DaResponse::Roots`]: the five values behind the data root | light sampler |
//! | [`DaRequest::Column`] | [`DaResponse::Column`]: a whole column | repair, audits |
//! | [`DaRequest::ColumnRanges`] | [`DaResponse::Ranges`]: rows `[first_row, end_row)` of some columns, each with a range proof against its column root (a namespace's rows) | retrieval |
//! | [`DaRequest::Sample`] | [`DaResponse::Sample`]: one cell with its proof to the data root | light sampler |
//!
//! Every answer is verified by the client against the commitment before use; a node
//! that answers with data that does not verify is blamed. Requests that are malformed
//! or invalid get [`lamina_net::Reject::bad_request`]; data the node does not hold gets
//! [`lamina_net::Reject::unavailable`].

use lamina_da_core::{AxisRangeProof, DaHeader, MAX_SQUARE_WIDTH, SHARE_SIZE, SampleProof, SquareRoots};
use std::time::Duration;

use lamina_net::{Empty, Protocol, ProtocolConfig, ProtocolId};
use lamina_primitives::codec::Wire;
use lamina_primitives::{DataCommitment, Digest, PublicKey, Signature};

/// The DA protocol.
pub struct DaProtocol;

impl Protocol for DaProtocol {
    const ID: ProtocolId = ProtocolId::range("da", 1, 2);
    type Request = DaRequest;
    type Response = DaResponse;
    type Message = Empty;
}

/// Largest column payload of one [`StoreRequest`]; dispersers split a node's columns
/// into requests of at most this many bytes (several per node for big squares).
pub const MAX_STORE_BYTES: usize = 32 << 20;

/// Largest [`DaRequest::ColumnRanges`] answer a node builds; clients ask for fewer
/// columns per request when rows are long.
pub const MAX_RANGES_BYTES: usize = 16 << 20;

/// One column of an extended square.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ColumnData {
    /// Column index in `0..2k`.
    pub index: u32,
    /// The `2k` cells, top to bottom.
    pub bytes: Vec<u8>,
}

/// Dispersal of some of a node's columns.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoreRequest {
    /// What the node is asked to attest.
    pub commitment: DataCommitment,
    /// Every root of the square and its namespace table.
    pub header: DaHeader,
    /// Columns assigned to the node (all, or a batch of them).
    pub columns: Vec<ColumnData>,
}

/// A node's answer to a [`StoreRequest`].
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoreResponse {
    /// Columns assigned to this node.
    pub assigned: u32,
    /// Of those, columns it holds durably.
    pub held: u32,
    /// Its signature over `commitment.attestation_digest()`, once `held == assigned`.
    pub attestation: Option<Signature>,
}

/// A column of a square.
#[derive(Clone, Copy, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ColumnRef {
    /// The square.
    pub data_root: Digest,
    /// Column index.
    pub index: u32,
}

/// Rows `[first_row, end_row)` of some columns of a square.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RangesRequest {
    /// The square.
    pub data_root: Digest,
    /// First row.
    pub first_row: u32,
    /// One past the last row.
    pub end_row: u32,
    /// Columns wanted (the node answers those it holds).
    pub columns: Vec<u32>,
}

/// One cell of a square.
#[derive(Clone, Copy, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CellRef {
    /// The square.
    pub data_root: Digest,
    /// Row.
    pub row: u32,
    /// Column.
    pub col: u32,
}

/// Requests a DA node serves.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DaRequest {
    /// Store columns and attest once all assigned columns are held.
    Store(StoreRequest),
    /// The header of the square with this data root.
    Header(Digest),
    /// The roots behind this data root.
    Roots(Digest),
    /// A whole column.
    Column(ColumnRef),
    /// Rows of some columns, with range proofs.
    ColumnRanges(RangesRequest),
    /// One cell with its proof.
    Sample(CellRef),
    /// Which key stored this square here first: for a square dispersed by a validator,
    /// the disperser. (This node's testimony, not a proof: the certificate does not carry
    /// the disperser's signature.)
    Disperser(Digest),
    /// (Version 2.) Store columns for the DA committee whose id this names, and attest
    /// for it once all columns assigned to this node in it are held.
    StoreFor(CommitteeStore),
}

/// A store for a DA committee changed by vote ([`DaRequest::StoreFor`]).
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CommitteeStore {
    /// The committee's id ([`lamina_primitives::DaCommittee::tag`]).
    pub committee: Digest,
    /// The columns.
    pub store: StoreRequest,
}

/// A proven slice of one column.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ColumnSlice {
    /// Column index.
    pub index: u32,
    /// The slice and its proof against the column root.
    pub proof: AxisRangeProof,
}

/// Answers.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DaResponse {
    /// Answer to [`DaRequest::Store`].
    Stored(StoreResponse),
    /// Answer to [`DaRequest::Header`].
    Header(DaHeader),
    /// Answer to [`DaRequest::Roots`].
    Roots(SquareRoots),
    /// Answer to [`DaRequest::Column`].
    Column(Vec<u8>),
    /// Answer to [`DaRequest::ColumnRanges`]: the requested columns this node holds.
    Ranges(Vec<ColumnSlice>),
    /// Answer to [`DaRequest::Sample`].
    Sample(SampleProof),
    /// Answer to [`DaRequest::Disperser`] (`None`: unknown square, or stored before
    /// this node recorded storers).
    Disperser(Option<PublicKey>),
}

const HEADER_MAX: usize = <DaHeader as Wire>::MAX_SIZE;

impl Wire for DaRequest {
    const NAME: &'static str = "DaRequest";
    const MAX_SIZE: usize = MAX_STORE_BYTES + HEADER_MAX + (1 << 20);
}

impl Wire for DaResponse {
    const NAME: &'static str = "DaResponse";
    const MAX_SIZE: usize = {
        let column = 2 * MAX_SQUARE_WIDTH * SHARE_SIZE + 64;
        let a = if HEADER_MAX > column { HEADER_MAX } else { column };
        if a > MAX_RANGES_BYTES + (1 << 20) { a } else { MAX_RANGES_BYTES + (1 << 20) }
    };
}

/// The protocol settings of `lamina/da/1..2`, on both sides (the node's server and every
/// client): timeouts, and how many requests one connection may have in flight.
pub fn protocol_config() -> ProtocolConfig {
    ProtocolConfig {
        request_timeout: Duration::from_secs(30),
        handler_timeout: Duration::from_secs(60),
        // A store request may carry 32 MiB: bound what one peer can have in memory.
        max_inflight_per_connection: 64,
        ..ProtocolConfig::for_protocol::<DaProtocol>()
    }
}
