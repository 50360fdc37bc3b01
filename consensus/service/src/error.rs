//! The service's error type. Peer misbehaviour is counted and logged, never returned:
//! these are local faults (fail-stop) and configuration problems.

/// Why the service could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration.
    #[error("config: {0}")]
    Config(String),
    /// This node's key is not a validator of the genesis.
    #[error("this node is not a validator in the genesis")]
    NotAValidator,
    /// The protocol core refused to start (bad WAL, broken log).
    #[error("consensus core: {0}")]
    Core(#[from] lamina_consensus_core::Error),
    /// A store (WAL or ordered log) failed: fail-stop.
    #[error("store {what}: {source}")]
    Store {
        /// Which store.
        what: &'static str,
        /// The store's error.
        source: lamina_store::Error,
    },
    /// Bytes read back from our own store do not decode: the data directory is corrupt
    /// or was written by other software.
    #[error("store {what} record {seq} does not decode: {reason}")]
    Decode {
        /// Which store.
        what: &'static str,
        /// Record sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The heights asked for were pruned from this validator's ordered log; the oldest
    /// height it keeps.
    #[error("heights below {0} were pruned from this validator's ordered log")]
    Pruned(u64),
    /// The ordered log on disk does not chain (wrong height or parent).
    #[error("ordered log is inconsistent at height {0}")]
    BrokenLog(u64),
    /// Transport setup failed.
    #[error("network: {0}")]
    Net(#[from] lamina_net::NetError),
    /// The HTTP intake could not bind.
    #[error("http intake on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A worker task ended unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn store(what: &'static str) -> impl FnOnce(lamina_store::Error) -> Error {
        move |source| Error::Store { what, source }
    }
}
