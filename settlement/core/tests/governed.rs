#![allow(clippy::unwrap_used)]
//! A challenge window changed by governance: a claim's deadline is fixed when it is
//! included, from the window in force at that height; a later change moves no deadline;
//! claims finalize in deadline order whatever order they were included in; a held
//! claim expires by the window in force when it was held; replaying the log with the
//! same governance answers gives the same state.

mod common;

use std::sync::Arc;

use common::*;
use lamina_interfaces::{GovernedParam, ParamsView};
use lamina_primitives::{Digest, Height};
use lamina_settlement_core::{Error, Event, SettlementState};

/// The window is `W` through height `from - 1`, then `w` (as governance answers after a
/// change applied at boundary `from - 1`).
struct WindowFrom {
    from: u64,
    w: u64,
}

impl ParamsView for WindowFrom {
    fn value(&self, param: GovernedParam, height: Height) -> Option<u64> {
        (param == GovernedParam::ChallengeWindow && height.0 >= self.from).then_some(self.w)
    }
}

fn finalized(events: &[Event]) -> Vec<Digest> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Finalized { claim, .. } => Some(*claim),
            _ => None,
        })
        .collect()
}

#[test]
fn a_governed_window_sets_the_deadlines_of_claims_included_after_it() {
    const SHORT: u64 = 3;
    let mut net = Net::default();
    let change = 8;
    let governed: Arc<dyn ParamsView> = Arc::new(WindowFrom { from: change, w: SHORT });
    net.governed = Some(governed.clone());
    // Data for both chains, then a claim of CHAIN included before the change (window W).
    net.block(&[(CHAIN, 2, true), (OTHER_CHAIN, 1, true)], vec![]);
    let a = net.claim(&key(1), CHAIN, None, 1);
    let at_a = net.next_height();
    net.block(&[], vec![claim_tx(&key(1), &a)]);
    assert_eq!(net.st.claim(&a.id()).unwrap().deadline, Height(at_a + W));
    assert_eq!(net.st.window(), W);
    // A claim held (its parent unknown) before the change keeps the window W too.
    net.block(&[(OTHER_CHAIN, 1, true)], vec![]);
    let p = net.claim(&key(3), OTHER_CHAIN, None, 1);
    let child = net.claim(&key(3), OTHER_CHAIN, Some(&p), 3);
    let held_at = net.next_height();
    net.block(&[], vec![claim_tx(&key(3), &child)]);
    assert!(net.st.held_claim(&child.id()).is_some());
    while net.next_height() < change {
        net.idle(1);
    }
    // After the change: a claim of OTHER_CHAIN gets the short window, so its deadline
    // comes before the earlier claim's, and it finalizes first.
    let b = net.claim(&key(2), OTHER_CHAIN, None, 1);
    let at_b = net.next_height();
    net.block(&[], vec![claim_tx(&key(2), &b)]);
    assert_eq!(net.st.claim(&b.id()).unwrap().deadline, Height(at_b + SHORT));
    assert_eq!(net.st.claim(&a.id()).unwrap().deadline, Height(at_a + W), "a later change moves no deadline");
    assert_eq!(net.st.window(), SHORT);
    assert!(at_b + SHORT < at_a + W);
    let mut order = Vec::new();
    // A claim held after the change expires by the short window.
    net.block(&[(CHAIN, 1, true)], vec![]);
    let p2 = net.claim(&key(4), CHAIN, None, 1);
    let child2 = net.claim(&key(4), CHAIN, Some(&p2), net.next_height() - 1);
    let held_at2 = net.next_height();
    net.block(&[], vec![claim_tx(&key(4), &child2)]);
    assert!(net.st.held_claim(&child2.id()).is_some());
    let mut expired = Vec::new();
    while net.next_height() <= (at_a + W).max(held_at + W) {
        let h = net.next_height();
        let ev = net.idle(1);
        for id in finalized(&ev) {
            order.push((id, h));
        }
        for e in &ev {
            if let Event::EntryRejected { error: Error::HoldExpired { claim, .. }, .. } = e {
                expired.push((*claim, h));
            }
        }
    }
    assert_eq!(order, vec![(b.id(), at_b + SHORT), (a.id(), at_a + W)]);
    assert_eq!(
        expired,
        vec![(child2.id(), held_at2 + SHORT), (child.id(), held_at + W)],
        "each held claim keeps the window of its hold height"
    );
    net.assert_conserved();

    // The same log replayed with the same governance answers: the same state.
    let mut again = SettlementState::new(net.params());
    for hl in &net.log {
        again.observe_block(hl.height, &hl.namespaces);
        again.apply_entries_governed(hl.height, hl.inputs.clone(), &ToyExec, &ToyEnc, governed.as_ref());
    }
    assert_eq!(again.state_root(), net.st.state_root());
    // Without them (the genesis window everywhere), another: the window is part of
    // what every node must read alike.
    let mut blind = SettlementState::new(net.params());
    for hl in &net.log {
        blind.observe_block(hl.height, &hl.namespaces);
        blind.apply_entries(hl.height, hl.inputs.clone(), &ToyExec, &ToyEnc);
    }
    assert_ne!(blind.state_root(), net.st.state_root());
}

#[test]
fn a_longer_window_delays_finality_and_a_snapshot_keeps_the_deadlines() {
    const LONG: u64 = 25;
    let mut net = Net::default();
    let governed: Arc<dyn ParamsView> = Arc::new(WindowFrom { from: 1, w: LONG });
    net.governed = Some(governed.clone());
    net.block(&[(CHAIN, 1, true)], vec![]);
    let a = net.claim(&key(1), CHAIN, None, 1);
    let at = net.next_height();
    net.block(&[], vec![claim_tx(&key(1), &a)]);
    assert_eq!(net.st.claim(&a.id()).unwrap().deadline, Height(at + LONG));
    // A snapshot image taken now loads with the same deadlines and root.
    let loaded = SettlementState::from_image(net.params(), net.st.image()).unwrap();
    assert_eq!(loaded.state_root(), net.st.state_root());
    while net.next_height() < at + LONG {
        assert!(finalized(&net.idle(1)).is_empty(), "finalized before its (longer) window ended");
    }
    assert_eq!(finalized(&net.idle(1)), vec![a.id()]);
}
