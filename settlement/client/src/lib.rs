//! Lamina settlement clients: the query protocol's messages, SettlementClient, and LogSettlement (claims posted through intake), without settlement internals.
//!
//! [`LogSettlement`] is the seam an execution node posts its checkpoint claims through
//! (as settlement transactions, over any [`lamina_interfaces::TxSubmit`]);
//! [`SettlementClient`] queries settlement nodes over `lamina/settlement/1` (status,
//! claims, anchors with proofs, accounts). Neither links a settlement node (store,
//! follower, verifier).

pub mod client;
pub mod protocol;

pub use client::{LogSettlement, SettlementClient};
pub use protocol::{SettlementProtocol, SettlementRequest, SettlementResponse};
