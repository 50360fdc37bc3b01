//! The three QUIC protocols a validator serves, on one endpoint:
//!
//! | ALPN | who may connect | what |
//! |---|---|---|
//! | `lamina/consensus/1` | validators | one-way [`lamina_consensus_core::Message`]s |
//! | `lamina/intake/1` | every genesis node, plus configured client keys | [`SubmitRequest`] → [`SubmitResponse`] |
//! | `lamina/log/1` | every genesis node | [`LogRequest`] → [`LogResponse`]: the ordered log |
//!
//! The intake and log protocols' messages live with their clients in
//! `lamina-consensus-client` (re-exported here for the servers).

use lamina_consensus_core::Message;
use lamina_net::{Empty, Protocol, ProtocolId};

pub use lamina_consensus_client::protocol::*;

/// Validator-to-validator consensus messages.
pub struct ConsensusProtocol;

impl Protocol for ConsensusProtocol {
    const ID: ProtocolId = ProtocolId::new("consensus", 1);
    type Request = Empty;
    type Response = Empty;
    type Message = Message;
}
