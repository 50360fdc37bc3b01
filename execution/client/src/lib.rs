//! Lamina execution client: the query protocol's messages and QueryClient, a typed client of a chain's execution nodes (no executor internals).
//!
//! What a wallet, a relayer or an operator's tool needs to read a chain: balances (with
//! proofs), nonces, receipts, outcomes, bridge entries, over `lamina/execution/1`,
//! without linking an execution node (store, executor, HTTP server).

pub mod client;
pub mod protocol;

pub use client::{QueryClient, QueryError};
pub use protocol::{BridgeItem, QueryProtocol, QueryRequest, QueryResponse, StatusInfo};
