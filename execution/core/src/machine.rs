//! The state-machine seam: what a chain builder implements to run their own transactions
//! on Lamina's executors.
//!
//! # Contract
//!
//! A [`StateMachine`] interprets the opaque payload of [`Transaction`]s. The executors
//! ([`crate::sequential`], [`crate::parallel`], [`crate::witness::execute_stateless`])
//! call it as follows for every transaction, in block order, and the result must be a
//! deterministic function of the transaction and the state it reads (no clock, no
//! randomness, no global mutable state, no I/O):
//!
//! 1. The executor rejects transactions with an invalid signature or another chain's id
//!    ([`Rejection`]); the state machine never sees them.
//! 2. [`StateMachine::decode`] parses the payload. An error is a *rejection*: the
//!    transaction has no effect at all.
//! 3. [`StateMachine::admit`] performs the checks and charges that make a transaction
//!    *includable* (nonce, fee). An error is a rejection: every write `admit` made is
//!    undone.
//! 4. [`StateMachine::apply`] performs the operation. An error is a *failure*: the writes
//!    of `apply` are undone, those of `admit` are kept (the nonce advances, the fee is
//!    paid), and the receipt carries the typed failure.
//!
//! All state goes through [`TxState`]: counters (`u128`, commutative [`TxState::credit`],
//! checked [`TxState::debit`]) and data (bytes). Two obligations make the parallel
//! executor's shortcuts sound:
//!
//! * **Credits never overflow.** A state machine must bound every counter's total
//!   (for example by an asset supply cap) so that no sequence of credits exceeds
//!   `u128::MAX`; credits are then order-independent. Implementations saturate, so a
//!   violation gives wrong (but identical across executors only in the sequential order)
//!   balances, never a panic.
//! * **Monotone debits.** The outcome of a transaction that only *debits* and *credits* a
//!   counter (never reads it with [`TxState::counter`]) may depend on that counter only
//!   through whether each debit succeeded. This is what lets the parallel executor treat
//!   in-block credits as commutative.
//!
//! # Declared access sets
//!
//! [`StateMachine::access`] may return the keys a transaction will touch and how
//! ([`AccessSet`]). The parallel executor schedules with it and never speculates for such
//! transactions. A declaration must cover every key `admit` and `apply` touch, with at
//! least the access class used (`Read` < `Credit` < `Debit` < `Write`, where `Write`
//! covers everything). If a transaction touches a key outside its declaration, the
//! parallel executor notices, discards its schedule and re-executes the block
//! sequentially: a wrong declaration costs time, never correctness. Returning `None` is
//! always allowed: the executor then derives the set by executing the transaction
//! speculatively against the pre-block state.

use std::fmt::Debug;
use std::sync::Arc;

use lamina_primitives::{ChainId, Transaction, TxId};

use crate::key::{CounterKey, DataKey};

/// How a transaction accesses a key. Ordered from weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Only reads it ([`TxState::counter`] or [`TxState::data`]).
    Read,
    /// Only credits it ([`TxState::credit`]); counters only.
    Credit,
    /// Debits it, and may also credit it ([`TxState::debit`]); counters only.
    Debit,
    /// Anything: reads, sets, credits, debits.
    Write,
}

/// The keys a transaction touches, with the strongest access to each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessSet {
    /// Counter keys.
    pub counters: Vec<(CounterKey, Access)>,
    /// Data keys (`Credit` and `Debit` are treated as `Write`).
    pub data: Vec<(DataKey, Access)>,
}

impl AccessSet {
    /// Empties the set, keeping its allocations.
    pub fn clear(&mut self) {
        self.counters.clear();
        self.data.clear();
    }

    /// Adds a counter access, keeping the strongest access per key.
    pub fn counter(&mut self, key: CounterKey, access: Access) -> &mut Self {
        match self.counters.iter_mut().find(|(k, _)| *k == key) {
            Some((_, a)) => *a = (*a).max(access),
            None => self.counters.push((key, access)),
        }
        self
    }

    /// Adds a data access, keeping the strongest access per key.
    pub fn data(&mut self, key: DataKey, access: Access) -> &mut Self {
        let access = if access == Access::Read { Access::Read } else { Access::Write };
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, a)) => *a = (*a).max(access),
            None => self.data.push((key, access)),
        }
        self
    }
}

/// A transaction's view of the state while it executes.
pub trait TxState {
    /// Current value of a counter (0 when absent).
    fn counter(&mut self, key: &CounterKey) -> u128;
    /// Sets a counter (0 deletes it).
    fn set_counter(&mut self, key: &CounterKey, value: u128);
    /// Adds `amount` to a counter (commutative; saturates, see the module contract).
    fn credit(&mut self, key: &CounterKey, amount: u128);
    /// Subtracts `amount` if the counter holds at least that much and returns `true`;
    /// otherwise changes nothing and returns `false`.
    fn debit(&mut self, key: &CounterKey, amount: u128) -> bool;
    /// Current value of a data key.
    fn data(&mut self, key: &DataKey) -> Option<Arc<[u8]>>;
    /// Sets (`Some`) or deletes (`None`) a data key.
    fn set_data(&mut self, key: &DataKey, value: Option<Arc<[u8]>>);
}

/// Read access to the state before a block (the committed state, or a witness).
pub trait StateRead: Sync {
    /// A counter's value (0 when absent).
    fn counter(&self, key: &CounterKey) -> u128;
    /// A data key's value.
    fn data(&self, key: &DataKey) -> Option<Arc<[u8]>>;
}

/// Why the executor refused a transaction before the state machine saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature does not verify (ZIP-215).
    #[error("invalid signature")]
    BadSignature,
    /// The transaction names another chain.
    #[error("wrong chain id")]
    WrongChain,
}

/// A typed failure that can be committed to in a receipts root.
pub trait FailureCode {
    /// A stable numeric code for this failure (part of the receipt hash).
    fn code(&self) -> u32;
}

/// A failure type the execution service can persist in its records, serve to clients and
/// count in metrics: a [`StateMachine::Failure`] of a chain the service runs
/// ([`crate::block::ChainMachine`]).
pub trait ChainFailure:
    FailureCode
    + Clone
    + Debug
    + std::fmt::Display
    + Eq
    + Send
    + Sync
    + serde::Serialize
    + lamina_primitives::Codec
    + 'static
{
    /// A short stable name (a metrics label, log field), e.g. `bad_nonce`.
    fn label(&self) -> &'static str;
}

/// A chain's transaction logic. See the module documentation for the contract.
pub trait StateMachine: Send + Sync {
    /// A decoded payload.
    type Call: Send + Sync;
    /// Typed reasons for rejection and failure.
    type Failure: Clone + Debug + PartialEq + Eq + Send + Sync + From<Rejection> + FailureCode;

    /// The chain this state machine executes; transactions for other chains are rejected.
    fn chain_id(&self) -> ChainId;

    /// Parses a transaction's payload. Errors reject the transaction.
    fn decode(&self, tx: &Transaction) -> Result<Self::Call, Self::Failure>;

    /// Adds the keys the transaction will touch to `set` (which the caller passes in
    /// empty, to reuse its allocation) and returns `true`; or returns `false` if they are
    /// not known without executing it.
    fn access(&self, _tx: &Transaction, _call: &Self::Call, _set: &mut AccessSet) -> bool {
        false
    }

    /// Inclusion checks and charges (nonce, fee). Errors reject the transaction and undo
    /// every write made here.
    fn admit<S: TxState>(&self, tx: &Transaction, call: &Self::Call, state: &mut S) -> Result<(), Self::Failure>;

    /// The operation. Errors undo the writes made here (not those of `admit`).
    fn apply<S: TxState>(&self, tx: &Transaction, call: &Self::Call, state: &mut S) -> Result<(), Self::Failure>;
}

/// What happened to a transaction.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize)]
pub enum Status<F> {
    /// Executed; all its effects are in the state.
    Success,
    /// Included: nonce advanced and fee paid, but the operation failed and left no other
    /// effect.
    Failed(F),
    /// Not included: no effect at all.
    Rejected(F),
}

/// The outcome of one transaction of a block.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize)]
pub struct Receipt<F> {
    /// The transaction.
    pub tx_id: TxId,
    /// What happened.
    pub status: Status<F>,
}

impl<F: FailureCode> Receipt<F> {
    /// Bytes committed to by the receipts root: `tx id ‖ kind ‖ code` (kind 0 success,
    /// 1 failed, 2 rejected; integers little-endian).
    pub fn commitment_bytes(&self) -> [u8; 37] {
        let mut out = [0u8; 37];
        out[..32].copy_from_slice(self.tx_id.0.as_bytes());
        let (kind, code) = match &self.status {
            Status::Success => (0u8, 0u32),
            Status::Failed(f) => (1, f.code()),
            Status::Rejected(f) => (2, f.code()),
        };
        out[32] = kind;
        out[33..].copy_from_slice(&code.to_le_bytes());
        out
    }

    /// True for [`Status::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self.status, Status::Success)
    }
}

/// Root over a block's receipts (generic binary Merkle tree of their commitment bytes).
pub fn receipts_root<F: FailureCode>(receipts: &[Receipt<F>]) -> lamina_primitives::Digest {
    let leaves: Vec<_> = receipts.iter().map(|r| lamina_primitives::merkle::leaf_hash(&r.commitment_bytes())).collect();
    lamina_primitives::merkle::root(&leaves)
}
