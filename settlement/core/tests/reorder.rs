#![allow(clippy::unwrap_used)]
//! Consecutive claims of one claimer reaching the log out of order: the child, whose
//! parent is not known yet, is held (no bond, no nonce) and accepted when its parent
//! is, so one reordering no longer breaks the claimer's chain of claims. Held claims are
//! bounded per claimer and expire after the window.

mod common;

use common::*;
use lamina_interfaces::CheckpointClaim;
use lamina_primitives::{Digest, Height, Keypair, Transaction};
use lamina_settlement_core::state::MAX_HELD_PER_CLAIMER;
use lamina_settlement_core::{ClaimStatus, Error, Event};

fn held(events: &[Event]) -> Vec<Digest> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ClaimHeld { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn status(net: &Net, c: &CheckpointClaim) -> ClaimStatus {
    net.st.claim(&c.id()).unwrap().status
}

fn assert_replays(net: &Net) {
    let (st, events) = replay(&net.genesis, &net.log);
    assert_eq!(st.state_root(), net.st.state_root());
    assert_eq!(events, net.events);
    assert_eq!(st.stats(), net.st.stats());
}

/// `n` consecutive claims of `k` on `CHAIN`, one per data height (adds the heights).
fn claim_chain(net: &mut Net, k: &Keypair, n: usize) -> Vec<CheckpointClaim> {
    let mut out: Vec<CheckpointClaim> = Vec::new();
    for _ in 0..n {
        net.block(&[(CHAIN, 1, true)], vec![]);
        let to = net.next_height() - 1;
        let c = net.claim(k, CHAIN, out.last(), to);
        out.push(c);
    }
    out
}

#[test]
fn child_before_parent_is_held_then_both_accepted() {
    let mut net = Net::default();
    let a = key(1);
    let cs = claim_chain(&mut net, &a, 2);
    let (parent, child) = (&cs[0], &cs[1]);
    let root_before = net.st.state_root();

    // The child reaches the log first: held, no bond, no nonce.
    let ev = net.block(&[], vec![claim_tx(&a, child)]);
    assert_eq!(held(&ev), vec![child.id()]);
    assert!(accepted(&ev).is_empty() && rejected(&ev).is_empty(), "{ev:?}");
    assert!(ev.contains(&Event::ClaimHeld { id: child.id(), claimer: a.public(), parent: parent.id() }));
    let acct = net.st.account(&a.public());
    assert_eq!((acct.free, acct.bonded, acct.next_nonce), (FUNDS, 0, 0));
    assert!(net.st.claim(&child.id()).is_none());
    let h = net.st.held_claim(&child.id()).unwrap();
    assert_eq!((h.held_at, h.nonce), (Height(3), child.to.0));
    assert_ne!(net.st.state_root(), root_before, "held claims are part of the state root");
    assert_eq!(net.st.stats().held, 1);
    // The same transaction again: the held id counts as seen.
    let ev = net.block(&[], vec![claim_tx(&a, child)]);
    assert_eq!(rejected(&ev), vec![Error::Duplicate(child.id())]);

    // The parent arrives, with its lower nonce: both are accepted at this height.
    net.idle(2);
    let at = net.next_height();
    let ev = net.block(&[], vec![claim_tx(&a, parent)]);
    assert!(rejected(&ev).is_empty(), "{ev:?}");
    assert_eq!(accepted(&ev), vec![parent.id(), child.id()]);
    for c in [parent, child] {
        let r = net.st.claim(&c.id()).unwrap();
        assert_eq!((r.included_at, r.deadline), (Height(at), Height(at + W)), "window from the acceptance height");
    }
    assert_eq!(net.st.held_claims().count(), 0);
    let acct = net.st.account(&a.public());
    assert_eq!((acct.bonded, acct.next_nonce), (2 * CLAIM_BOND, child.to.0 + 1));

    // Both finalize at the end of `at + W`, parent first.
    let ev = net.idle(W - 1);
    assert!(!ev.iter().any(|e| matches!(e, Event::Finalized { .. })));
    let ev = net.idle(1);
    let finalized: Vec<(Digest, Height)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Finalized { claim, at, .. } => Some((*claim, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(finalized, vec![(parent.id(), Height(at + W)), (child.id(), Height(at + W))]);
    assert_eq!(net.st.finalized(CHAIN).unwrap().claim, child.id());
    let acct = net.st.account(&a.public());
    assert_eq!((acct.free, acct.bonded), (FUNDS, 0));
    assert_eq!(net.st.stats().held, 0);
    net.assert_conserved();
    assert_replays(&net);
}

#[test]
fn held_claim_expires_after_the_window() {
    let mut net = Net::default();
    let a = key(1);
    let cs = claim_chain(&mut net, &a, 2);
    let (parent, child) = (&cs[0], &cs[1]);
    let child_tx = claim_tx(&a, child);
    let held_at = net.next_height();
    let ev = net.block(&[], vec![child_tx.clone()]);
    assert_eq!(held(&ev), vec![child.id()]);

    // Still held through `held_at + W - 1`, rejected at the end of `held_at + W`.
    let ev = net.idle(W - 1);
    assert!(ev.is_empty(), "{ev:?}");
    assert!(net.st.held_claim(&child.id()).is_some());
    let ev = net.idle(1);
    assert_eq!(
        ev,
        vec![Event::EntryRejected {
            tx: child_tx.id(),
            sender: a.public(),
            error: Error::HoldExpired { claim: child.id(), parent: parent.id(), held_at: Height(held_at) },
        }]
    );
    assert_eq!(net.st.held_claims().count(), 0);
    let acct = net.st.account(&a.public());
    assert_eq!((acct.free, acct.bonded, acct.next_nonce), (FUNDS, 0, 0), "bond and nonce untouched");
    let s = net.st.stats();
    assert_eq!((s.held, s.hold_expired, s.rejected, s.pending), (0, 1, 1, 0));

    // The parent arriving later is accepted alone; the expired child, sent again (its
    // nonce was never used), is then accepted too.
    let ev = net.block(&[], vec![claim_tx(&a, parent)]);
    assert_eq!(accepted(&ev), vec![parent.id()]);
    let ev = net.block(&[], vec![child_tx]);
    assert_eq!(accepted(&ev), vec![child.id()]);
    net.idle(W);
    assert_eq!(status(&net, child), ClaimStatus::Finalized);
    net.assert_conserved();
    assert_replays(&net);
}

#[test]
fn held_claims_are_bounded_per_claimer() {
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    let cs = claim_chain(&mut net, &a, MAX_HELD_PER_CLAIMER + 2);
    // Everything but the first claim arrives: the first MAX_HELD_PER_CLAIMER are held,
    // the next one is refused.
    let txs: Vec<Transaction> = cs[1..].iter().map(|c| claim_tx(&a, c)).collect();
    let ev = net.block(&[], txs);
    assert_eq!(held(&ev), cs[1..=MAX_HELD_PER_CLAIMER].iter().map(|c| c.id()).collect::<Vec<_>>());
    let last = cs.last().unwrap();
    assert_eq!(
        rejected(&ev),
        vec![Error::TooManyHeld {
            parent: cs[MAX_HELD_PER_CLAIMER].id(),
            claimer: a.public(),
            limit: MAX_HELD_PER_CLAIMER
        }]
    );
    assert_eq!(net.st.held_claims().count(), MAX_HELD_PER_CLAIMER);
    // The cap is per claimer: another claimer can still be held.
    let other = net.claim(&b, CHAIN, Some(&cs[0]), cs[1].to.0);
    let ev = net.block(&[], vec![claim_tx(&b, &other)]);
    assert_eq!(held(&ev), vec![other.id()]);
    assert_eq!(net.st.account(&a.public()).next_nonce, 0);

    // The first claim arrives: the held ones are accepted in hold order (cascading
    // along the chain), the other claimer's too.
    let ev = net.block(&[], vec![claim_tx(&a, &cs[0])]);
    // Released: cs[1] and `other` (by cs[0]), then cs[2] (by cs[1]), ...; always the
    // lowest hold sequence first, and `other` was held last.
    let mut want: Vec<Digest> = cs[..=MAX_HELD_PER_CLAIMER].iter().map(|c| c.id()).collect();
    want.push(other.id());
    assert_eq!(accepted(&ev), want, "{ev:?}");
    assert!(rejected(&ev).is_empty(), "{ev:?}");
    assert_eq!(net.st.held_claims().count(), 0);
    assert_eq!(net.st.account(&a.public()).next_nonce, cs[MAX_HELD_PER_CLAIMER].to.0 + 1);
    // The refused claim can be sent again now that its parent is known.
    let ev = net.block(&[], vec![claim_tx(&a, last)]);
    assert_eq!(accepted(&ev), vec![last.id()]);
    net.idle(W + 1);
    for c in &cs {
        assert_eq!(status(&net, c), ClaimStatus::Finalized);
    }
    assert_eq!(net.st.claim(&other.id()).unwrap().duplicate_of, Some(cs[1].id()));
    net.assert_conserved();
    assert_replays(&net);
}

#[test]
fn reordered_claimer_keeps_claiming() {
    // Claimer A claims every height with data, each claim extending its previous one;
    // claimer B claims the same ranges in order, after A. Round 3's pair of A's claims is swapped
    // within one height, round 6's across heights (the child a height early).
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    let (mut ca, mut cb): (Vec<CheckpointClaim>, Vec<CheckpointClaim>) = (Vec::new(), Vec::new());
    let mut events = Vec::new();
    let mut stash: Vec<Transaction> = Vec::new();
    for round in 0..10 {
        events.extend(net.block(&[(CHAIN, 2, true)], vec![]));
        let to = net.next_height() - 1;
        let c = net.claim(&a, CHAIN, ca.last(), to);
        let d = net.claim(&b, CHAIN, cb.last(), to);
        let mut txs = Vec::new();
        match round {
            // Held back, sent after the next claim in the same height.
            3 => stash.push(claim_tx(&a, &c)),
            4 => {
                txs.push(claim_tx(&a, &c));
                txs.append(&mut stash);
            }
            // Held back a whole height: the next claim is held meanwhile.
            6 => stash.push(claim_tx(&a, &c)),
            7 => txs.push(claim_tx(&a, &c)),
            8 => {
                txs.append(&mut stash);
                txs.push(claim_tx(&a, &c));
            }
            _ => txs.push(claim_tx(&a, &c)),
        }
        txs.push(claim_tx(&b, &d));
        events.extend(net.block(&[], txs));
        ca.push(c);
        cb.push(d);
    }
    events.extend(net.idle(W + 1));
    assert!(rejected(&events).is_empty(), "{:?}", rejected(&events));
    assert_eq!(held(&events), vec![ca[4].id(), ca[7].id()]);
    for c in ca.iter().chain(&cb) {
        assert_eq!(status(&net, c), ClaimStatus::Finalized);
    }
    let s = net.st.stats();
    assert_eq!((s.finalized + s.duplicates, s.pending, s.held, s.rejected), (20, 0, 0, 0));
    let head = net.st.finalized(CHAIN).unwrap();
    assert_eq!(head.to, ca[9].to);
    for k in [&a, &b] {
        let acct = net.st.account(&k.public());
        assert_eq!((acct.free, acct.bonded, acct.next_nonce), (FUNDS, 0, ca[9].to.0 + 1));
    }
    net.assert_conserved();
    assert_replays(&net);
}
