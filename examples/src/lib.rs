//! Examples for chain builders: a custom state machine (a counter chain) on a devnet, and a whole network composed in one process.
//!
//! * [`counter`]: a chain builder's state machine, written against the same seam as the
//!   native ledger ([`lamina_execution_core::ChainMachine`]).
//! * `counter-chain` (binary): the `lamina` binary with the counter machine registered
//!   as ledger version [`counter::COUNTER_LEDGER_VERSION`]
//!   ([`lamina_node::machines::register`]). Every `lamina` command works, and
//!   `counter-chain devnet up --ledger-version 100` runs a multi-process devnet of it.
//! * `counter-client` (binary): a wallet for that devnet, with a fresh key no genesis
//!   lists: submits counter operations through consensus intake and reads receipts and
//!   counters from the execution nodes ([`scenario`]).
//! * `one-process` (binary): validators, DA nodes and an execution node running the
//!   counter machine, all in one process and one tokio runtime, joined by the same seams
//!   (`OrderedLog`, `DataAvailability`, `Settlement`) over QUIC on loopback, then the
//!   same scenario against it.
//!
//! `.ci/run` builds and runs both (`examples/run.sh`).

pub mod counter;
pub mod scenario;
