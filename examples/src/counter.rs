//! A counter chain: the smallest useful state machine on Lamina, written against the
//! same seam as the native ledger ([`StateMachine`] and [`ChainMachine`]).
//!
//! Every account has a counter. A transaction's payload is one operation:
//!
//! | payload | effect | fails (included, nonce advances) when |
//! |---|---|---|
//! | `0x01 ‖ amount u64 LE` | add `amount` to the sender's counter | never |
//! | `0x02 ‖ amount u64 LE` | subtract `amount` | the counter holds less ([`CounterFailure::Underflow`]) |
//! | `0x03 ‖ bytes (≤ 256)` | set the sender's note to `bytes` | never |
//!
//! The chain also keeps the sum of all counters. Nonces work as on the native ledger:
//! each sender's transactions run in nonce order, a used or skipped nonce is rejected.
//! There are no fees. The genesis chain spec's `balances` seed the counters.
//!
//! Each operation declares the keys it touches ([`StateMachine::access`]), so the parallel
//! executor schedules it without speculation; adds and subtracts touch counters only
//! through commutative credits and checked debits, the two shortcuts the parallel
//! executor's contract allows.

use std::sync::Arc;

use lamina_execution_core::machine::{FailureCode, Rejection};
use lamina_execution_core::{
    Access, AccessSet, ChainFailure, ChainMachine, ChangeSet, CounterKey, DataKey, StateMachine, StateRead, TxState,
};
use lamina_interfaces::ChainSpec;
use lamina_primitives::{ChainId, Keypair, PublicKey, Transaction, TxScope};

/// The ledger version a genesis chain spec names to run this machine.
pub const COUNTER_LEDGER_VERSION: u32 = 100;

/// Longest note.
pub const MAX_NOTE: usize = 256;

const TAG_NONCE: u8 = 1;
const TAG_COUNT: u8 = 2;
const TAG_TOTAL: u8 = 3;
const TAG_NOTE: u8 = 4;

const OP_ADD: u8 = 1;
const OP_SUB: u8 = 2;
const OP_NOTE: u8 = 3;

/// An account's counter.
pub fn counter_key(account: &PublicKey) -> CounterKey {
    CounterKey::new(TAG_COUNT, &[&account.0])
}

/// The sum of every counter.
pub fn total_key() -> CounterKey {
    CounterKey::new(TAG_TOTAL, &[])
}

/// An account's next nonce.
pub fn nonce_key(account: &PublicKey) -> CounterKey {
    CounterKey::new(TAG_NONCE, &[&account.0])
}

/// An account's note.
pub fn note_key(account: &PublicKey) -> DataKey {
    DataKey::new(TAG_NOTE, &[&account.0])
}

/// A decoded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Add to the sender's counter.
    Add(u64),
    /// Subtract from the sender's counter.
    Sub(u64),
    /// Set the sender's note.
    Note(Vec<u8>),
}

impl Call {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Call::Add(n) => [&[OP_ADD][..], &n.to_le_bytes()].concat(),
            Call::Sub(n) => [&[OP_SUB][..], &n.to_le_bytes()].concat(),
            Call::Note(b) => [&[OP_NOTE][..], b].concat(),
        }
    }

    /// Parses a payload; `None` if it is not exactly one operation.
    pub fn decode(payload: &[u8]) -> Option<Call> {
        let (&op, rest) = payload.split_first()?;
        let amount = || rest.try_into().ok().map(u64::from_le_bytes);
        match op {
            OP_ADD => amount().map(Call::Add),
            OP_SUB => amount().map(Call::Sub),
            OP_NOTE if rest.len() <= MAX_NOTE => Some(Call::Note(rest.to_vec())),
            _ => None,
        }
    }

    /// A signed transaction of this operation, for a network of scope `scope`
    /// (`Genesis::tx_scope`).
    pub fn sign(&self, key: &Keypair, scope: TxScope, chain: ChainId, nonce: u64) -> Transaction {
        Transaction::new_signed(key, scope, chain, nonce, self.encode())
    }
}

pub use failure::CounterFailure;

// rkyv's derive generates undocumented items for the fields of enum variants.
#[allow(missing_docs)]
mod failure {
    /// Why a counter transaction was rejected or failed.
    #[derive(
        Clone,
        Debug,
        PartialEq,
        Eq,
        thiserror::Error,
        serde::Serialize,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
    )]
    pub enum CounterFailure {
        /// The signature does not verify (rejection).
        #[error("invalid signature")]
        BadSignature,
        /// The transaction is for another chain (rejection).
        #[error("wrong chain id")]
        WrongChain,
        /// The payload is not one operation (rejection).
        #[error("malformed payload")]
        Malformed,
        /// Used or skipped nonce (rejection).
        #[error("bad nonce: expected {expected}, got {got}")]
        BadNonce {
            /// The account's next nonce.
            expected: u64,
            /// The transaction's nonce.
            got: u64,
        },
        /// A subtraction larger than the counter (failure).
        #[error("counter underflow")]
        Underflow,
    }
}

impl From<Rejection> for CounterFailure {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::BadSignature => CounterFailure::BadSignature,
            Rejection::WrongChain => CounterFailure::WrongChain,
        }
    }
}

impl FailureCode for CounterFailure {
    fn code(&self) -> u32 {
        match self {
            CounterFailure::BadSignature => 1,
            CounterFailure::WrongChain => 2,
            CounterFailure::Malformed => 3,
            CounterFailure::BadNonce { .. } => 4,
            CounterFailure::Underflow => 5,
        }
    }
}

impl ChainFailure for CounterFailure {
    fn label(&self) -> &'static str {
        match self {
            CounterFailure::BadSignature => "bad_signature",
            CounterFailure::WrongChain => "wrong_chain",
            CounterFailure::Malformed => "malformed",
            CounterFailure::BadNonce { .. } => "bad_nonce",
            CounterFailure::Underflow => "underflow",
        }
    }
}

/// The counter chain's state machine.
#[derive(Clone, Debug)]
pub struct CounterMachine {
    chain: ChainId,
}

impl CounterMachine {
    /// The machine of chain `chain`.
    pub fn new(chain: ChainId) -> Self {
        CounterMachine { chain }
    }
}

impl StateMachine for CounterMachine {
    type Call = Call;
    type Failure = CounterFailure;

    fn chain_id(&self) -> ChainId {
        self.chain
    }

    fn decode(&self, tx: &Transaction) -> Result<Call, CounterFailure> {
        Call::decode(&tx.payload).ok_or(CounterFailure::Malformed)
    }

    fn access(&self, tx: &Transaction, call: &Call, set: &mut AccessSet) -> bool {
        set.counter(nonce_key(&tx.sender), Access::Write);
        match call {
            Call::Add(_) => {
                set.counter(counter_key(&tx.sender), Access::Credit).counter(total_key(), Access::Credit);
            }
            Call::Sub(_) => {
                set.counter(counter_key(&tx.sender), Access::Debit).counter(total_key(), Access::Debit);
            }
            Call::Note(_) => {
                set.data(note_key(&tx.sender), Access::Write);
            }
        }
        true
    }

    fn admit<S: TxState>(&self, tx: &Transaction, _call: &Call, state: &mut S) -> Result<(), CounterFailure> {
        let key = nonce_key(&tx.sender);
        let expected = state.counter(&key);
        if u128::from(tx.nonce) != expected {
            return Err(CounterFailure::BadNonce { expected: expected as u64, got: tx.nonce });
        }
        state.set_counter(&key, expected + 1);
        Ok(())
    }

    fn apply<S: TxState>(&self, tx: &Transaction, call: &Call, state: &mut S) -> Result<(), CounterFailure> {
        match call {
            Call::Add(n) => {
                // Amounts are u64, so no sum of them reaches u128::MAX: credits commute.
                state.credit(&counter_key(&tx.sender), u128::from(*n));
                state.credit(&total_key(), u128::from(*n));
            }
            Call::Sub(n) => {
                if !state.debit(&counter_key(&tx.sender), u128::from(*n)) {
                    return Err(CounterFailure::Underflow);
                }
                // The total is at least every single counter, so this debit succeeds.
                state.debit(&total_key(), u128::from(*n));
            }
            Call::Note(b) => state.set_data(&note_key(&tx.sender), Some(Arc::from(b.as_slice()))),
        }
        Ok(())
    }
}

impl ChainMachine for CounterMachine {
    fn genesis(&self, spec: &ChainSpec) -> ChangeSet {
        let mut counters: std::collections::BTreeMap<CounterKey, u128> = Default::default();
        for b in &spec.balances {
            *counters.entry(counter_key(&b.account)).or_default() += u128::from(b.amount);
        }
        let total: u128 = counters.values().sum();
        if total > 0 {
            counters.insert(total_key(), total);
        }
        ChangeSet { counters: counters.into_iter().collect(), data: Vec::new() }
    }
}

/// An account's counter in `state`.
pub fn counter(state: &impl StateRead, account: &PublicKey) -> u128 {
    state.counter(&counter_key(account))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_execution_core::{AuthenticatedState, Outcome, Status, parallel, sequential, sigverify};

    fn machine() -> CounterMachine {
        CounterMachine::new(ChainId(1))
    }

    #[test]
    fn payloads_round_trip_and_bad_ones_are_refused() {
        for c in [Call::Add(5), Call::Sub(u64::MAX), Call::Note(b"hi".to_vec()), Call::Note(vec![])] {
            assert_eq!(Call::decode(&c.encode()), Some(c));
        }
        assert_eq!(Call::decode(&[]), None);
        assert_eq!(Call::decode(&[OP_ADD, 1, 2]), None);
        assert_eq!(Call::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Call::decode(&[&[OP_NOTE][..], &[0; MAX_NOTE + 1]].concat()), None);
    }

    #[test]
    fn a_block_adds_subtracts_fails_and_rejects_and_both_executors_agree() {
        let m = machine();
        let (a, b) = (Keypair::for_testing(1), Keypair::for_testing(2));
        let mut state = AuthenticatedState::new();
        let spec = ChainSpec {
            balances: vec![lamina_interfaces::GenesisBalance { account: b.public(), amount: 10 }],
            id: ChainId(1),
            ledger_version: COUNTER_LEDGER_VERSION,
            ..ChainSpec::default()
        };
        state.apply(&m.genesis(&spec), false);
        let txs = vec![
            Call::Add(5).sign(&a, TxScope::ChainOnly, ChainId(1), 0),
            Call::Add(7).sign(&a, TxScope::ChainOnly, ChainId(1), 1),
            Call::Sub(100).sign(&a, TxScope::ChainOnly, ChainId(1), 2),
            Call::Note(b"hello".to_vec()).sign(&a, TxScope::ChainOnly, ChainId(1), 3),
            Call::Sub(4).sign(&b, TxScope::ChainOnly, ChainId(1), 0),
            Call::Add(1).sign(&b, TxScope::ChainOnly, ChainId(1), 7),
            Transaction::new_signed(&b, TxScope::ChainOnly, ChainId(1), 1, vec![0xff]),
            Call::Add(1).sign(&a, TxScope::ChainOnly, ChainId(2), 4),
        ];
        let verified = sigverify::verify_block(TxScope::ChainOnly, &txs);
        let seq = sequential::execute(&m, &state, &txs, &verified);
        let par = parallel::execute(&m, &state, &txs, &verified);
        assert_eq!(seq, par);
        let outcomes: Vec<Outcome> = seq.receipts.iter().map(|r| Outcome::of(&r.status)).collect();
        use Outcome::*;
        assert_eq!(outcomes, vec![Success, Success, Failed, Success, Success, Rejected, Rejected, Rejected]);
        assert_eq!(seq.receipts[2].status, Status::Failed(CounterFailure::Underflow));
        assert_eq!(seq.receipts[5].status, Status::Rejected(CounterFailure::BadNonce { expected: 1, got: 7 }));
        assert_eq!(seq.receipts[6].status, Status::Rejected(CounterFailure::Malformed));
        assert_eq!(seq.receipts[7].status, Status::Rejected(CounterFailure::WrongChain));
        state.apply(&seq.changes, false);
        assert_eq!(counter(&state, &a.public()), 12);
        assert_eq!(counter(&state, &b.public()), 6);
        assert_eq!(state.counter(&total_key()), 18);
        assert_eq!(state.counter(&nonce_key(&a.public())), 4, "the failed subtraction still used its nonce");
        assert_eq!(state.data(&note_key(&a.public())).as_deref(), Some(&b"hello"[..]));
    }
}
