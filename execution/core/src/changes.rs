//! Change sets: a block's effect on the state, as data.
//!
//! Executors never mutate the committed state; they return a [`ChangeSet`] (the final
//! value of every key the block changed, sorted by key). The same change set is applied
//! to the flat state and to the Merkle tree, persisted by the service, and replayed on
//! recovery, so "what a block did" has one canonical, encodable form.

use std::sync::Arc;

use crate::key::{CounterKey, DataKey};
use crate::machine::StateRead;

/// The final values of the keys a block changed, sorted by key, with no entry equal to
/// the pre-block value. A counter value of 0 deletes the key; a data value of `None`
/// deletes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChangeSet {
    /// Counter keys and their new values.
    pub counters: Vec<(CounterKey, u128)>,
    /// Data keys and their new values.
    pub data: Vec<(DataKey, Option<Vec<u8>>)>,
}

impl lamina_primitives::Wire for ChangeSet {
    const NAME: &'static str = "ChangeSet";
    const MAX_SIZE: usize = 1 << 28;
}

impl ChangeSet {
    /// Builds a canonical change set from final values, dropping entries equal to `pre`.
    pub fn from_final<R: StateRead + ?Sized>(
        pre: &R,
        counters: impl IntoIterator<Item = (CounterKey, u128)>,
        data: impl IntoIterator<Item = (DataKey, Option<Arc<[u8]>>)>,
    ) -> Self {
        let mut counters: Vec<(CounterKey, u128)> =
            counters.into_iter().filter(|(k, v)| pre.counter(k) != *v).collect();
        counters.sort_unstable_by_key(|e| e.0);
        counters.dedup_by(|a, b| a.0 == b.0);
        let mut data: Vec<(DataKey, Option<Vec<u8>>)> = data
            .into_iter()
            .filter(|(k, v)| pre.data(k).as_deref() != v.as_deref())
            .map(|(k, v)| (k, v.map(|b| b.to_vec())))
            .collect();
        data.sort_unstable_by_key(|e| e.0);
        data.dedup_by(|a, b| a.0 == b.0);
        ChangeSet { counters, data }
    }

    /// Number of changed keys.
    pub fn len(&self) -> usize {
        self.counters.len() + self.data.len()
    }

    /// True if the block changed nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges a later change set into this one (the later value wins per key). Used to
    /// fold several blocks into one persistence record.
    pub fn merge(&mut self, later: ChangeSet) {
        let mut c = std::mem::take(&mut self.counters);
        c.extend(later.counters);
        // Stable sort keeps the later entry after the earlier one; keep the last.
        c.sort_by_key(|e| e.0);
        let mut out: Vec<(CounterKey, u128)> = Vec::with_capacity(c.len());
        for e in c {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        self.counters = out;
        let mut d = std::mem::take(&mut self.data);
        d.extend(later.data);
        d.sort_by_key(|e| e.0);
        let mut out: Vec<(DataKey, Option<Vec<u8>>)> = Vec::with_capacity(d.len());
        for e in d {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        self.data = out;
    }
}
