//! Transaction intake: how clients hand signed transactions to the sequencer.

use std::future::Future;

use lamina_primitives::{Transaction, TxId};

/// What intake did with a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SubmitOutcome {
    /// Accepted into the mempool; it will be batched, made available and ordered.
    Accepted(TxId),
    /// Already in the mempool (or recently ordered); not added twice.
    Duplicate(TxId),
}

/// Why intake refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SubmitError {
    /// The mempool (or this sender's share of it) is full: back off and retry. Nothing
    /// was dropped silently; the transaction was not taken.
    #[error("busy: {0}")]
    Busy(String),
    /// Larger than the intake limit.
    #[error("transaction of {size} bytes exceeds limit {max}")]
    TooLarge {
        /// Size of the transaction.
        size: usize,
        /// Intake limit.
        max: usize,
    },
    /// The chain id is not served by this network.
    #[error("unknown chain {0}")]
    UnknownChain(u64),
    /// The signature does not verify (ZIP-215) in the network's scope
    /// (`Genesis::tx_scope`): a transaction signed for another network, or without the
    /// network id where the genesis binds it, fails too.
    #[error("invalid signature (a transaction signed for another network fails here too)")]
    BadSignature,
    /// Malformed request bytes.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Transport failure; the transaction may or may not have been taken. Resubmitting
    /// is safe: intake deduplicates by transaction id.
    #[error("transport: {0}")]
    Transport(String),
    /// The network's rules do not admit this sender's transaction (a governance
    /// transaction from a key that is not a voting member): resubmitting will not help
    /// until the rules change.
    #[error("not admitted: {0}")]
    NotAdmitted(String),
}

/// Marker in a [`SubmitError::Busy`] reason from a validator outside the committee that
/// orders next: it follows the log, or a vote removed it and it leaves at a known
/// height. Nothing it accepted would be ordered, so a client submits to another
/// validator instead of waiting for it ([`SubmitError::is_outside_committee`]). (A
/// marker, not a variant: older clients decode the reason as plain `Busy`.)
pub const OUTSIDE_COMMITTEE: &str = "outside the committee";

impl SubmitError {
    /// True for a refusal from a validator outside the committee ([`OUTSIDE_COMMITTEE`]):
    /// submit to another validator.
    pub fn is_outside_committee(&self) -> bool {
        matches!(self, SubmitError::Busy(why) if why.contains(OUTSIDE_COMMITTEE))
    }
}

/// Intake of signed transactions.
///
/// # Contract
///
/// `submit` returns only after the transaction was checked (size, chain id, signature,
/// duplicate id) and either taken into the mempool or refused. `Accepted` means the
/// sequencer will keep trying to order it; `Busy` is backpressure, not loss.
/// Submitting the same transaction again is idempotent.
pub trait TxSubmit: Send + Sync {
    /// Submits one transaction.
    fn submit(&self, tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send;

    /// Submits many; one outcome per transaction, in order.
    fn submit_many(
        &self,
        txs: Vec<Transaction>,
    ) -> impl Future<Output = Vec<Result<SubmitOutcome, SubmitError>>> + Send;

    /// Submits `tx` so that no single validator can keep it out of the log: to every
    /// validator the implementation can reach, accepted when one accepts it. For what
    /// must not be censored (fraud proofs, bad-encoding evidence); the copies ordered
    /// after the first are rejected harmlessly (same id, used nonce). Default: `submit`.
    fn submit_widely(&self, tx: Transaction) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
        self.submit(tx)
    }
}
