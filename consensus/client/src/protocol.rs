//! The two QUIC protocols a validator serves to clients:
//!
//! | ALPN | who may connect | what |
//! |---|---|---|
//! | `lamina/intake/1..2` | any key (access policy) | [`SubmitRequest`] → [`SubmitResponse`] |
//! | `lamina/log/1` | every genesis node | [`LogRequest`] → [`LogResponse`]: the ordered log |

use lamina_interfaces::{SubmitError, SubmitOutcome};
use std::time::Duration;

// Intake versions: 1, and 2, which adds [`WireOutcome::NotAdmitted`]. A validator answers
// a version-1 client with `Malformed("not admitted: …")` instead ([`WireOutcome::for_version`]),
// so clients of either version work against validators of either version.

use lamina_net::{Empty, Protocol, ProtocolId};
use lamina_primitives::{FinalizedBlock, Height, Transaction, Wire};

/// Transaction intake, versions 1 and 2 (see [`WireOutcome::NotAdmitted`]).
pub struct IntakeProtocol;

impl Protocol for IntakeProtocol {
    const ID: ProtocolId = ProtocolId::range("intake", 1, 2);
    type Request = SubmitRequest;
    type Response = SubmitResponse;
    type Message = Empty;
}

/// The ordered log, read by height.
pub struct LogProtocol;

impl Protocol for LogProtocol {
    const ID: ProtocolId = ProtocolId::new("log", 1);
    type Request = LogRequest;
    type Response = LogResponse;
    type Message = Empty;
}

/// Most transactions in one intake request.
pub const MAX_SUBMIT_TXS: usize = 4096;
/// Largest intake request (bytes).
pub const MAX_SUBMIT_BYTES: usize = 16 << 20;

/// Transactions to submit, checked and answered one by one.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SubmitRequest {
    /// At most [`MAX_SUBMIT_TXS`].
    pub txs: Vec<Transaction>,
}

impl Wire for SubmitRequest {
    const NAME: &'static str = "consensus::SubmitRequest";
    const MAX_SIZE: usize = MAX_SUBMIT_BYTES;
}

/// One answer per submitted transaction, in order.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SubmitResponse {
    /// The outcomes.
    pub results: Vec<WireOutcome>,
}

impl Wire for SubmitResponse {
    const NAME: &'static str = "consensus::SubmitResponse";
    const MAX_SIZE: usize = 64 + MAX_SUBMIT_TXS * 256;
}

/// [`SubmitOutcome`] / [`SubmitError`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum WireOutcome {
    /// Accepted (transaction id).
    Accepted([u8; 32]),
    /// Already known (transaction id).
    Duplicate([u8; 32]),
    /// Mempool or sender share full: retry later.
    Busy(String),
    /// Too large: (size, limit).
    TooLarge(u64, u64),
    /// Unknown chain id.
    UnknownChain(u64),
    /// Signature invalid.
    BadSignature,
    /// Malformed.
    Malformed(String),
    /// Not admitted by the network's rules (version 2 of the intake protocol).
    NotAdmitted(String),
}

impl WireOutcome {
    /// This outcome as intake protocol `version` can carry it: version 1 has no
    /// `NotAdmitted`, which it gets as `Malformed("not admitted: …")`.
    pub fn for_version(self, version: u32) -> WireOutcome {
        match self {
            WireOutcome::NotAdmitted(why) if version < 2 => WireOutcome::Malformed(format!("not admitted: {why}")),
            other => other,
        }
    }
}

impl From<&Result<SubmitOutcome, SubmitError>> for WireOutcome {
    fn from(r: &Result<SubmitOutcome, SubmitError>) -> Self {
        match r {
            Ok(SubmitOutcome::Accepted(id)) => WireOutcome::Accepted(id.0.0),
            Ok(SubmitOutcome::Duplicate(id)) => WireOutcome::Duplicate(id.0.0),
            Err(SubmitError::Busy(s)) => WireOutcome::Busy(s.clone()),
            Err(SubmitError::TooLarge { size, max }) => WireOutcome::TooLarge(*size as u64, *max as u64),
            Err(SubmitError::UnknownChain(c)) => WireOutcome::UnknownChain(*c),
            Err(SubmitError::BadSignature) => WireOutcome::BadSignature,
            Err(SubmitError::Malformed(s)) => WireOutcome::Malformed(s.clone()),
            Err(SubmitError::Transport(s)) => WireOutcome::Malformed(format!("transport: {s}")),
            Err(SubmitError::NotAdmitted(s)) => WireOutcome::NotAdmitted(s.clone()),
        }
    }
}

impl From<WireOutcome> for Result<SubmitOutcome, SubmitError> {
    fn from(w: WireOutcome) -> Self {
        use lamina_primitives::{Digest, TxId};
        match w {
            WireOutcome::Accepted(id) => Ok(SubmitOutcome::Accepted(TxId(Digest(id)))),
            WireOutcome::Duplicate(id) => Ok(SubmitOutcome::Duplicate(TxId(Digest(id)))),
            WireOutcome::Busy(s) => Err(SubmitError::Busy(s)),
            WireOutcome::TooLarge(size, max) => Err(SubmitError::TooLarge { size: size as usize, max: max as usize }),
            WireOutcome::UnknownChain(c) => Err(SubmitError::UnknownChain(c)),
            WireOutcome::BadSignature => Err(SubmitError::BadSignature),
            WireOutcome::Malformed(s) => Err(SubmitError::Malformed(s)),
            WireOutcome::NotAdmitted(s) => Err(SubmitError::NotAdmitted(s)),
        }
    }
}

/// A read of the ordered log.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadRequest {
    /// First height.
    pub from: u64,
    /// Most blocks (the server caps it, and cuts the answer to its size limit, but always
    /// returns at least one block when `from` is finalized).
    pub max: u32,
    /// How long to wait for block `from` if it is not finalized yet (ms); the answer is
    /// empty if it still is not.
    pub wait_ms: u32,
}

/// Read the ordered log.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum LogRequest {
    /// Blocks from a height.
    Read(ReadRequest),
    /// The finalized tip height.
    Tip,
}

impl Wire for LogRequest {
    const NAME: &'static str = "consensus::LogRequest";
    const MAX_SIZE: usize = 64;
}

/// Answer to a [`LogRequest`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum LogResponse {
    /// Consecutive finalized blocks (empty: not finalized yet within the wait).
    Blocks(Vec<FinalizedBlock>),
    /// The tip height.
    Tip(u64),
    /// The heights asked for were pruned here; the oldest served height.
    Pruned(u64),
}

/// Largest log response; reads are cut to fit.
pub const MAX_LOG_RESPONSE: usize = 32 << 20;

impl Wire for LogResponse {
    const NAME: &'static str = "consensus::LogResponse";
    // A read always returns at least one block, however large.
    const MAX_SIZE: usize = MAX_LOG_RESPONSE + <FinalizedBlock as Wire>::MAX_SIZE;
}

impl LogRequest {
    /// The height asked for, if a read.
    pub fn from_height(&self) -> Option<Height> {
        match self {
            LogRequest::Read(r) => Some(Height(r.from)),
            LogRequest::Tip => None,
        }
    }
}

/// Longest a read request waits for a block not yet finalized (the server caps
/// `wait_ms` to it; the client's request timeout allows for it).
pub const MAX_READ_WAIT: Duration = Duration::from_secs(20);
