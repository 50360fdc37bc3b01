//! The service crate's error type.

use lamina_interfaces::DaError;
use lamina_primitives::CodecError;

/// What can stop a DA service operation (a client's error converts into it).
///
/// Peer misbehaviour inside an operation (a node answering with bad data) is not an
/// error of the operation: it is blamed, counted, and the operation continues with
/// other nodes. It becomes an error only when too few honest answers remain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Transport failure (bind, shutdown).
    #[error(transparent)]
    Net(#[from] lamina_net::NetError),
    /// Storage failure (fail-stop: the node must restart and recover).
    #[error(transparent)]
    Store(#[from] lamina_store::Error),
    /// A stored record that does not decode: written by another version or damaged
    /// past its checksum (fail-stop).
    #[error("stored record {seq} unreadable: {reason}")]
    BadRecord {
        /// Record sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// DA computation failed.
    #[error(transparent)]
    Core(#[from] lamina_da_core::Error),
    /// Encoding failure.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A client's store would pass its quota ([`crate::Config::client_quota_bytes`]).
    #[error(
        "client {client} holds {used} bytes here; {wanted} more would pass its quota of {quota} bytes (space comes back as its squares leave the retention window)"
    )]
    QuotaExceeded {
        /// The client key.
        client: lamina_primitives::PublicKey,
        /// Bytes it holds now.
        used: u64,
        /// Bytes this store would add.
        wanted: u64,
        /// Its quota.
        quota: u64,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
    /// The ordered log could not be read while following it (the node keeps serving
    /// and retries at the next prune tick).
    #[error("ordered log: {0}")]
    Log(String),
    /// An operation of the DA interface failed.
    #[error(transparent)]
    Da(#[from] DaError),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn task_err(e: tokio::task::JoinError) -> Error {
    Error::Task(e.to_string())
}

impl From<lamina_da_client::Error> for Error {
    fn from(e: lamina_da_client::Error) -> Self {
        use lamina_da_client::Error as C;
        match e {
            C::Config(m) => Error::Config(m),
            C::Net(e) => Error::Net(e),
            C::Core(e) => Error::Core(e),
            C::Codec(e) => Error::Codec(e),
            C::Da(e) => Error::Da(e),
        }
    }
}
