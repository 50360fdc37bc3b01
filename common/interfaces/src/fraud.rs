//! Stateless re-execution: how settlement checks an execution claim without the chain's
//! state (fraud proofs).

use lamina_primitives::{ChainId, Digest, Transaction};

/// Why a stateless re-execution produced no root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatelessError {
    /// This executor does not run that chain.
    #[error("chain {0} not executed here")]
    UnknownChain(ChainId),
    /// The witness does not decode, does not hash to the pre-state root, or does not
    /// cover what the block touches. The party that supplied it is at fault.
    #[error("bad witness: {0}")]
    BadWitness(String),
}

/// Re-executes one chain's block from a pre-state root and a witness alone.
///
/// # Contract
///
/// * `reexecute` is a pure, deterministic function of its arguments: signature checks
///   included, no I/O, no clock. Given the pre-state root of a block, a witness
///   produced by the execution layer for that block, and the block's transactions of
///   `chain` in order, it returns the post-state root every honest executor computes.
/// * A witness that does not prove every value the block reads against
///   `pre_state_root` is an error ([`StatelessError::BadWitness`]), never a guess.
/// * The witness encoding belongs to the execution layer (for the native ledger:
///   `lamina_execution_core::witness::Witness` in the codec).
pub trait StatelessExecutor: Send + Sync {
    /// The post-state root of `txs` applied to the state committed by `pre_state_root`.
    fn reexecute(
        &self,
        chain: ChainId,
        pre_state_root: &Digest,
        witness: &[u8],
        txs: &[Transaction],
    ) -> Result<Digest, StatelessError>;
}
