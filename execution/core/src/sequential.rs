//! The sequential reference executor: the definition of a correct block result.
//!
//! Transactions run one after another, in block order, on an overlay over the pre-block
//! state. Each transaction's writes are journaled so that a rejection undoes everything
//! and a failure undoes the operation but keeps the admission charges (see
//! [`crate::machine`]). The parallel executor must produce exactly the receipts and the
//! change set this executor produces, for every block.

use std::collections::BTreeSet;
use std::sync::Arc;

use lamina_primitives::Transaction;

use crate::changes::ChangeSet;
use crate::key::{CounterKey, DataKey, KeyMap, RawKey, key_map};
use crate::machine::{Receipt, Rejection, StateMachine, StateRead, Status, TxState};
use crate::sigverify::Verified;

/// A block's result: one receipt per transaction, and the state changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutput<F> {
    /// Receipts, in block order.
    pub receipts: Vec<Receipt<F>>,
    /// The block's changes to the state.
    pub changes: ChangeSet,
}

/// A transaction state that can undo writes back to a savepoint.
pub(crate) trait Journal: TxState {
    fn savepoint(&self) -> usize;
    fn revert(&mut self, to: usize);
}

/// Runs one transaction through the contract's steps (signature, chain, decode, admit,
/// apply) and returns its status.
pub(crate) fn run_tx<M: StateMachine, S: Journal>(
    sm: &M,
    tx: &Transaction,
    sig_ok: bool,
    call: Result<&M::Call, &M::Failure>,
    state: &mut S,
) -> Status<M::Failure> {
    if !sig_ok {
        return Status::Rejected(Rejection::BadSignature.into());
    }
    if tx.chain_id != sm.chain_id() {
        return Status::Rejected(Rejection::WrongChain.into());
    }
    let call = match call {
        Ok(c) => c,
        Err(e) => return Status::Rejected(e.clone()),
    };
    let sp = state.savepoint();
    if let Err(e) = sm.admit(tx, call, state) {
        state.revert(sp);
        return Status::Rejected(e);
    }
    let sp = state.savepoint();
    match sm.apply(tx, call, state) {
        Ok(()) => Status::Success,
        Err(e) => {
            state.revert(sp);
            Status::Failed(e)
        }
    }
}

enum Undo {
    /// A counter's previous current value (its base never changes once loaded).
    Counter(CounterKey, u128),
    Data(DataKey, Option<Option<Arc<[u8]>>>),
}

/// An overlay over the pre-block state with an undo journal.
pub(crate) struct Overlay<'a, R: ?Sized> {
    base: &'a R,
    /// Counters touched so far: (pre-block value, current value). Keeping the pre-block
    /// value saves a second lookup in the (large, cache-cold) base state at the end.
    counters: KeyMap<CounterKey, (u128, u128)>,
    data: KeyMap<DataKey, Option<Arc<[u8]>>>,
    undo: Vec<Undo>,
    /// Every key read or written, when recording (for witnesses).
    touched: Option<BTreeSet<RawKey>>,
}

impl<'a, R: StateRead + ?Sized> Overlay<'a, R> {
    pub(crate) fn new(base: &'a R, capacity: usize, record: bool) -> Self {
        Overlay {
            base,
            counters: key_map(capacity),
            data: key_map(capacity / 8),
            undo: Vec::with_capacity(64),
            touched: record.then(BTreeSet::new),
        }
    }

    #[inline]
    fn touch(&mut self, k: &RawKey) {
        if let Some(t) = &mut self.touched {
            t.insert(*k);
        }
    }

    /// The overlay entry of a counter, loading its pre-block value on first access.
    #[inline]
    fn entry(&mut self, key: &CounterKey) -> &mut (u128, u128) {
        let base = self.base;
        self.counters.entry(*key).or_insert_with(|| {
            let v = base.counter(key);
            (v, v)
        })
    }

    #[inline]
    fn put_counter(&mut self, key: &CounterKey, value: u128) {
        let e = self.entry(key);
        let old = std::mem::replace(&mut e.1, value);
        self.undo.push(Undo::Counter(*key, old));
    }

    pub(crate) fn into_changes(self) -> (ChangeSet, Option<BTreeSet<RawKey>>) {
        let mut counters: Vec<(CounterKey, u128)> =
            self.counters.into_iter().filter(|(_, (base, cur))| base != cur).map(|(k, (_, cur))| (k, cur)).collect();
        counters.sort_unstable_by_key(|e| e.0);
        let data = ChangeSet::from_final(self.base, std::iter::empty(), self.data).data;
        (ChangeSet { counters, data }, self.touched)
    }
}

impl<R: StateRead + ?Sized> TxState for Overlay<'_, R> {
    #[inline]
    fn counter(&mut self, key: &CounterKey) -> u128 {
        self.touch(key.raw());
        self.entry(key).1
    }

    #[inline]
    fn set_counter(&mut self, key: &CounterKey, value: u128) {
        self.touch(key.raw());
        self.put_counter(key, value);
    }

    #[inline]
    fn credit(&mut self, key: &CounterKey, amount: u128) {
        let v = self.counter(key);
        self.put_counter(key, v.saturating_add(amount));
    }

    #[inline]
    fn debit(&mut self, key: &CounterKey, amount: u128) -> bool {
        let v = self.counter(key);
        match v.checked_sub(amount) {
            Some(left) => {
                self.put_counter(key, left);
                true
            }
            None => false,
        }
    }

    fn data(&mut self, key: &DataKey) -> Option<Arc<[u8]>> {
        self.touch(key.raw());
        match self.data.get(key) {
            Some(v) => v.clone(),
            None => self.base.data(key),
        }
    }

    fn set_data(&mut self, key: &DataKey, value: Option<Arc<[u8]>>) {
        self.touch(key.raw());
        let old = self.data.insert(*key, value);
        self.undo.push(Undo::Data(*key, old));
    }
}

impl<R: StateRead + ?Sized> Journal for Overlay<'_, R> {
    fn savepoint(&self) -> usize {
        self.undo.len()
    }

    fn revert(&mut self, to: usize) {
        while self.undo.len() > to {
            match self.undo.pop() {
                Some(Undo::Counter(k, v)) => {
                    if let Some(e) = self.counters.get_mut(&k) {
                        e.1 = v;
                    }
                }
                Some(Undo::Data(k, Some(v))) => {
                    self.data.insert(k, v);
                }
                Some(Undo::Data(k, None)) => {
                    self.data.remove(&k);
                }
                None => break,
            }
        }
    }
}

fn execute_inner<M: StateMachine, R: StateRead + ?Sized>(
    sm: &M,
    pre: &R,
    txs: &[Transaction],
    verified: &Verified,
    record: bool,
) -> (BlockOutput<M::Failure>, Option<BTreeSet<RawKey>>) {
    assert_eq!(txs.len(), verified.len(), "verdicts must match the block (caller invariant)");
    let mut overlay = Overlay::new(pre, txs.len() * 3, record);
    let mut receipts = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        let call = sm.decode(tx);
        let status = run_tx(sm, tx, verified.valid[i], call.as_ref(), &mut overlay);
        // A transaction's journal is never needed after it finished.
        overlay.undo.clear();
        receipts.push(Receipt { tx_id: verified.ids[i], status });
    }
    let (changes, touched) = overlay.into_changes();
    (BlockOutput { receipts, changes }, touched)
}

/// Executes a block sequentially. `verified` must come from the signature stage for the
/// same transactions.
pub fn execute<M: StateMachine, R: StateRead + ?Sized>(
    sm: &M,
    pre: &R,
    txs: &[Transaction],
    verified: &Verified,
) -> BlockOutput<M::Failure> {
    execute_inner(sm, pre, txs, verified, false).0
}

/// Executes a block sequentially and also returns every key it read or wrote (the keys a
/// witness must cover).
pub fn execute_recording<M: StateMachine, R: StateRead + ?Sized>(
    sm: &M,
    pre: &R,
    txs: &[Transaction],
    verified: &Verified,
) -> (BlockOutput<M::Failure>, BTreeSet<RawKey>) {
    let (out, touched) = execute_inner(sm, pre, txs, verified, true);
    (out, touched.unwrap_or_default())
}
