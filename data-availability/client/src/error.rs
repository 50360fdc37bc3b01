//! The client crate's error type.

use lamina_interfaces::DaError;
use lamina_primitives::CodecError;

/// What can stop a DA client operation (registering, dispersing, retrieving,
/// sampling).
///
/// Peer misbehaviour inside an operation (a node answering with bad data) is not an
/// error of the operation: it is blamed, counted, and the operation continues with
/// other nodes. It becomes an error only when too few honest answers remain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Transport failure (registering the protocol).
    #[error(transparent)]
    Net(#[from] lamina_net::NetError),
    /// DA computation failed (encoding a square).
    #[error(transparent)]
    Core(#[from] lamina_da_core::Error),
    /// Encoding failure.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An operation of the DA interface failed.
    #[error(transparent)]
    Da(#[from] DaError),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
