//! Stateless re-execution and replicas: how settlement checks an execution claim without
//! importing the execution layer (fraud proofs, the verifier), and how it checks a
//! bad-encoding proof without importing the DA layer.

use lamina_primitives::{ChainId, Digest, Transaction};

use crate::StepEnv;

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

/// What executing one step (one log height's transactions of a chain) produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    /// State root after the step.
    pub state_root: Digest,
    /// Receipts root of the step's transactions alone (not chained).
    pub receipts_root: Digest,
}

/// A chain's full state, replayed step by step: what a settlement verifier runs to
/// check every claim and to build the witness of a fraud proof.
///
/// # Contract
///
/// Starts at the chain's genesis state. `execute_step` applies one step's
/// transactions (as [`crate::inputs::namespace_transactions`] extracted them) exactly as
/// every execution replica does, and returns the outcome. When `expected` is given and
/// differs from the outcome, it also returns the witness of the *pre-step* state for
/// those transactions (the bytes [`StatelessExecutor::reexecute`] accepts).
pub trait ChainReplica: Send {
    /// The chain.
    fn chain(&self) -> ChainId;
    /// Current state root.
    fn state_root(&self) -> Digest;
    /// Executes the next step (at `env.height`, with the anchors `env` shows); see the
    /// trait contract.
    fn execute_step(
        &mut self,
        env: &StepEnv,
        txs: &[Transaction],
        expected: Option<&StepOutcome>,
    ) -> (StepOutcome, Option<Vec<u8>>);

    /// Keeps what is needed to prove any of the last `steps` executed steps (0, the
    /// default, keeps nothing): a verifier facing several claims of the same range
    /// executes each height once, then may have to prove a later claim wrong.
    fn retain_history(&mut self, steps: usize);

    /// The witness of the pre-state of the step executed `back` steps before the latest
    /// one (0: the latest), for that step's transactions `txs`; `None` if that step is
    /// no longer retained. The replica's current state is unchanged afterwards.
    fn past_witness(&mut self, back: usize, env: &StepEnv, txs: &[Transaction]) -> Option<Vec<u8>>;
}

/// Re-executes one chain's step from a pre-state root and a witness alone.
///
/// # Contract
///
/// * `reexecute` is a pure, deterministic function of its arguments: signature checks
///   included, no I/O, no clock. Given the pre-state root of a step, a witness
///   produced by the execution layer for that step, and the step's transactions of
///   `chain` in order, it returns the outcome every honest executor computes.
/// * A witness that does not prove every value the step reads against
///   `pre_state_root` is an error ([`StatelessError::BadWitness`]), never a guess.
/// * The witness encoding belongs to the execution layer (for the native ledger:
///   `lamina_execution_core::witness::Witness` in the codec).
/// * `genesis_root` is the state root of the chain's genesis state (what the first
///   claim of a chain extends); `replica` starts a full replica at genesis.
pub trait StatelessExecutor: Send + Sync {
    /// The outcome of `txs` applied to the state committed by `pre_state_root`.
    fn reexecute(
        &self,
        chain: ChainId,
        env: &StepEnv,
        pre_state_root: &Digest,
        witness: &[u8],
        txs: &[Transaction],
    ) -> Result<StepOutcome, StatelessError>;

    /// The chain's genesis state root.
    fn genesis_root(&self, chain: ChainId) -> Result<Digest, StatelessError>;

    /// A full replica of `chain` at its genesis state.
    fn replica(&self, chain: ChainId) -> Result<Box<dyn ChainReplica>, StatelessError>;
}

/// Checks a bad-encoding proof against a square's data root (implemented by the DA
/// layer; settlement uses it to block claims over badly encoded squares).
pub trait EncodingFraudVerifier: Send + Sync {
    /// `Ok` if `proof` (the DA layer's encoding) proves the square under `data_root`
    /// badly encoded.
    fn verify_bad_encoding(&self, data_root: &Digest, proof: &[u8]) -> Result<(), String>;
}
