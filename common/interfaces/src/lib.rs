//! The seams between Lamina's layers: traits with written contracts and their request/response types.
//!
//! Layers never import each other; they meet here. Each trait has an in-process
//! implementation (for chain builders composing layers in one process, and for tests)
//! and a QUIC client implementing the same trait in the owning layer's service crate
//! (for operators running layers as separate processes). The `lamina` binary wires
//! concrete types together.
//!
//! | trait | provided by | used by |
//! |---|---|---|
//! | [`OrderedLog`] | consensus | execution, settlement, bridge relayer |
//! | [`DataAvailability`] | data availability | consensus (submit), execution (fetch) |
//! | [`TxSubmit`] | consensus (mempool intake) | clients, load generators, execution (claims) |
//! | [`Settlement`] | settlement (via the log) | execution |
//! | [`StatelessExecutor`] | execution (stateless re-execution) | settlement (fraud proofs) |
//! | [`ParamsView`] | governance (a node's follower) | execution, settlement (a chain's fee at a height) |
//!
//! The traits use `async fn`-style methods returning `Send` futures and do not depend
//! on any runtime, so this crate stays pure.

pub mod bridge;
pub mod da;
pub mod fraud;
pub mod genesis;
pub mod governed;
pub mod health;
pub mod inputs;
pub mod log;
pub mod settlement;
pub mod submit;

pub use bridge::{
    AnchorHold, AnchorList, AnchorRegistry, AnchorView, AnchoredProof, BridgeCounters, BridgeMessage, BridgeSpec,
    FinalizedRoot, NoAnchors, Origin, ReceiptKind, StepEnv,
};
pub use da::{Blob, DaError, DataAvailability};
pub use fraud::{ChainReplica, EncodingFraudVerifier, StatelessError, StatelessExecutor, StepOutcome};
pub use genesis::{
    ChainSpec, ClientEntry, DEFAULT_ANCHOR_WINDOW, Genesis, GenesisBalance, GenesisError, GovernanceSpec,
    MAX_MEMBER_WEIGHT, MemberEntry, NodeEntry, SettlementSpec,
};
pub use governed::{GenesisParams, GovernedParam, ParamsRegistry, ParamsView};
pub use health::Health;
pub use log::{InMemoryLog, LogError, OrderedLog};
pub use settlement::{CheckpointClaim, ClaimStep, LedgerParams, Settlement, SettlementError};
pub use submit::{OUTSIDE_COMMITTEE, SubmitError, SubmitOutcome, TxSubmit};
