//! Lamina consensus clients: the intake and ordered-log protocols' messages, IntakeClient and LogClient (no validator internals).
//!
//! What a node or tool needs to talk to the validators, without linking a validator
//! (WAL, mempool, HTTP intake): [`IntakeClient`] submits transactions
//! (`lamina/intake/1`, a [`lamina_interfaces::TxSubmit`]), and [`LogClient`] reads the
//! ordered log (`lamina/log/1`, a [`lamina_interfaces::OrderedLog`] that verifies every
//! block against the genesis committee). [`protocol`] holds both protocols' messages,
//! which the validator's servers in `lamina-consensus-service` answer.

pub mod intake;
pub mod log;
pub mod protocol;

pub use intake::IntakeClient;
pub use log::LogClient;
pub use protocol::{IntakeProtocol, LogProtocol};
