#![allow(clippy::unwrap_used)]
//! Several independent claimers of one chain: claims are compared by the state they
//! commit to, so an honest claimer's chain of claims survives another claimer's claim
//! of the same range being anchored first (it finalizes as a duplicate), and claimers
//! cutting ranges differently lose only the claims that straddle an anchor boundary.

mod common;

use common::*;
use lamina_interfaces::CheckpointClaim;
use lamina_primitives::{Digest, Height, Keypair, Transaction};
use lamina_settlement_core::{ClaimStatus, Entry, Error, Event, OrphanReason};

fn post(net: &mut Net, k: &Keypair, claim: &CheckpointClaim) -> Transaction {
    net.tx(k, &Entry::Claim(claim.clone()))
}

fn status(net: &Net, c: &CheckpointClaim) -> ClaimStatus {
    net.st.claim(&c.id()).unwrap().status
}

fn duplicate_of(net: &Net, c: &CheckpointClaim) -> Option<Digest> {
    net.st.claim(&c.id()).unwrap().duplicate_of
}

/// Every anchor of `CHAIN`, in order.
fn anchors(net: &Net) -> Vec<lamina_settlement_core::Anchor> {
    (0..).map_while(|i| net.st.anchor(CHAIN, i).copied()).collect()
}

fn assert_replays(net: &Net) {
    let (st, events) = replay(&net.genesis, &net.log);
    assert_eq!(st.state_root(), net.st.state_root());
    assert_eq!(events, net.events);
    assert_eq!(st.stats(), net.st.stats());
}

#[test]
fn two_honest_claimers_of_one_chain_both_keep_finalizing() {
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    let (mut pa, mut pb): (Option<CheckpointClaim>, Option<CheckpointClaim>) = (None, None);
    let mut pairs = Vec::new();
    let mut events = Vec::new();
    // Two phases: claims posted while the previous ones are pending, then (after
    // everything finalized) claims whose parents are the head and its duplicate.
    for phase in 0..2 {
        for r in 0..6 {
            events.extend(net.block(&[(CHAIN, 2, true)], vec![]));
            let to = net.next_height() - 1;
            let ca = net.claim(&a, CHAIN, pa.as_ref(), to);
            let cb = net.claim(&b, CHAIN, pb.as_ref(), to);
            assert_ne!(ca.id(), cb.id());
            assert_eq!((ca.state_root, ca.receipts_root), (cb.state_root, cb.receipts_root));
            let mut txs = vec![post(&mut net, &a, &ca), post(&mut net, &b, &cb)];
            // Sometimes B's claim is included first, and B's claim is anchored.
            let b_first = (r + phase) % 3 == 1;
            if b_first {
                txs.reverse();
            }
            let ev = net.block(&[], txs);
            assert_eq!(accepted(&ev).len(), 2, "{ev:?}");
            events.extend(ev);
            pairs.push((ca.clone(), cb.clone(), b_first));
            pa = Some(ca);
            pb = Some(cb);
        }
        events.extend(net.idle(W + 1));
        assert_eq!(net.st.stats().pending, 0);
    }
    assert!(rejected(&events).is_empty(), "{:?}", rejected(&events));
    let anchors = anchors(&net);
    assert_eq!(anchors.len(), pairs.len(), "one anchor per range");
    for (anchor, (ca, cb, b_first)) in anchors.iter().zip(&pairs) {
        assert_eq!(status(&net, ca), ClaimStatus::Finalized);
        assert_eq!(status(&net, cb), ClaimStatus::Finalized);
        let (winner, dup) = if *b_first { (cb, ca) } else { (ca, cb) };
        assert_eq!(anchor.claim, winner.id());
        assert_eq!((anchor.to, anchor.state_root), (winner.to, winner.state_root));
        assert_eq!(duplicate_of(&net, winner), None);
        assert_eq!(duplicate_of(&net, dup), Some(winner.id()));
        assert!(events.contains(&Event::Duplicate {
            claim: dup.id(),
            chain: CHAIN,
            to: dup.to,
            anchored: winner.id(),
            at: anchor.finalized_at
        }));
    }
    assert!(anchors.windows(2).all(|w| w[0].to < w[1].to));
    let s = net.st.stats();
    assert_eq!((s.finalized, s.duplicates, s.orphaned, s.rejected), (12, 12, 0, 0));
    for k in [&a, &b] {
        let acct = net.st.account(&k.public());
        assert_eq!((acct.free, acct.bonded), (FUNDS, 0), "bonds all returned");
    }
    net.assert_conserved();
    assert_replays(&net);
}

#[test]
fn claimers_with_different_cut_points_interleave() {
    // Data at heights 2, 4, 5, 6, 8. A claims every data height (cuts 2, 4, 5, 6, 8);
    // B every second height (cuts 2, 4, 6, 8). A's claims are included first.
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    net.block(&[], vec![]); // 1
    net.block(&[(CHAIN, 1, true)], vec![]); // 2
    let a1 = net.claim(&a, CHAIN, None, 2);
    let b1 = net.claim(&b, CHAIN, None, 2);
    let txs = vec![post(&mut net, &a, &a1), post(&mut net, &b, &b1)];
    net.block(&[], txs); // 3
    net.block(&[(CHAIN, 2, true)], vec![]); // 4
    let a2 = net.claim(&a, CHAIN, Some(&a1), 4);
    let b2 = net.claim(&b, CHAIN, Some(&b1), 4);
    let txs = vec![post(&mut net, &a, &a2), post(&mut net, &b, &b2)];
    net.block(&[(CHAIN, 1, true)], txs); // 5
    let a3 = net.claim(&a, CHAIN, Some(&a2), 5);
    let tx = post(&mut net, &a, &a3);
    net.block(&[(CHAIN, 3, true)], vec![tx]); // 6
    let a4 = net.claim(&a, CHAIN, Some(&a3), 6);
    let b3 = net.claim(&b, CHAIN, Some(&b2), 6); // straddles A's cut at 5
    assert_eq!((a4.to, a4.state_root, a4.receipts_root), (b3.to, b3.state_root, b3.receipts_root));
    let txs = vec![post(&mut net, &a, &a4), post(&mut net, &b, &b3)];
    net.block(&[], txs); // 7
    net.block(&[(CHAIN, 2, true)], vec![]); // 8
    let a5 = net.claim(&a, CHAIN, Some(&a4), 8);
    // B continues from an equivalent parent: A's claim ending where its own (b3) does,
    // with the same roots.
    let b4 = net.claim(&b, CHAIN, Some(&a4), 8);
    let txs = vec![post(&mut net, &a, &a5), post(&mut net, &b, &b4)];
    net.block(&[], txs); // 9

    let mut events = net.idle(W + 1);
    assert!(rejected(&events).is_empty());
    assert!(
        events
            .contains(&Event::Orphaned { claim: b3.id(), reason: OrphanReason::SiblingFinalized { winner: a3.id() } })
    );
    let anchors = anchors(&net);
    assert_eq!(anchors.iter().map(|x| x.to.0).collect::<Vec<_>>(), vec![2, 4, 5, 6, 8]);
    assert_eq!(anchors.iter().map(|x| x.claim).collect::<Vec<_>>(), [&a1, &a2, &a3, &a4, &a5].map(|c| c.id()));
    for c in [&a1, &a2, &a3, &a4, &a5] {
        assert_eq!(status(&net, c), ClaimStatus::Finalized);
    }
    // B's claims on A's cut points are duplicates (b2's parent is itself a duplicate);
    // the one straddling A's cut at 5 is orphaned.
    assert_eq!(duplicate_of(&net, &b1), Some(a1.id()));
    assert_eq!(duplicate_of(&net, &b2), Some(a2.id()));
    assert_eq!(status(&net, &b3), ClaimStatus::Orphaned);
    assert_eq!(duplicate_of(&net, &b4), Some(a5.id()));

    // After finality B extends its own duplicate, A its anchored claim; both again end
    // final, with B's anchored this time (included first).
    net.block(&[(CHAIN, 1, true)], vec![]);
    let to = net.next_height() - 1;
    let a6 = net.claim(&a, CHAIN, Some(&a5), to);
    let b5 = net.claim(&b, CHAIN, Some(&b4), to);
    let txs = vec![post(&mut net, &b, &b5), post(&mut net, &a, &a6)];
    events.extend(net.block(&[], txs));
    // A claim extending B's orphaned claim is refused.
    let late = net.claim(&b, CHAIN, Some(&b3), to);
    let tx = post(&mut net, &b, &late);
    let ev = net.block(&[], vec![tx]);
    assert_eq!(rejected(&ev), vec![Error::BadParent(b3.id())]);
    events.extend(net.idle(W));
    assert_eq!(net.st.finalized(CHAIN).unwrap().claim, b5.id());
    assert_eq!(duplicate_of(&net, &a6), Some(b5.id()));

    let s = net.st.stats();
    assert_eq!((s.finalized, s.duplicates, s.orphaned, s.pending), (6, 4, 1, 0));
    for k in [&a, &b] {
        let acct = net.st.account(&k.public());
        assert_eq!((acct.free, acct.bonded), (FUNDS, 0), "bonds all returned");
    }
    net.assert_conserved();
    assert_replays(&net);
}

#[test]
fn faulty_and_honest_claimer() {
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    let mut ca: Vec<CheckpointClaim> = Vec::new();
    let mut cb: Vec<CheckpointClaim> = Vec::new();
    for r in 0..4 {
        net.block(&[(CHAIN, 2, true)], vec![]);
        let to = net.next_height() - 1;
        let c = net.claim(&a, CHAIN, ca.last(), to);
        // B lies from its second claim on, and keeps building on its own claims.
        let d = net.claim_with(&b, CHAIN, cb.last(), to, |s| {
            if r == 1 {
                s[0].state_root = TOY.hash(b"wrong");
            }
        });
        let txs = vec![post(&mut net, &a, &c), post(&mut net, &b, &d)];
        assert_eq!(accepted(&net.block(&[], txs)).len(), 2);
        ca.push(c);
        cb.push(d);
    }
    assert_ne!(cb[1].state_root, ca[1].state_root);
    assert_ne!(cb[3].state_root, ca[3].state_root);
    let ch = net.challenge(&cb[1].id(), 0);
    let tx = net.tx(&key(11), &ch);
    let ev = net.block(&[], vec![tx]);
    assert!(ev.iter().any(|e| matches!(e, Event::Slashed { claim, .. } if *claim == cb[1].id())), "{ev:?}");
    for d in &cb[2..] {
        assert!(ev.contains(&Event::Orphaned {
            claim: d.id(),
            reason: OrphanReason::AncestorEnded {
                ancestor: if d.id() == cb[2].id() { cb[1].id() } else { cb[2].id() },
                status: if d.id() == cb[2].id() { ClaimStatus::Slashed } else { ClaimStatus::Orphaned },
            }
        }));
    }
    // B's later claims built on its slashed or orphaned claims are refused.
    net.block(&[(CHAIN, 1, true)], vec![]);
    let to = net.next_height() - 1;
    let on_slashed = net.claim(&b, CHAIN, Some(&cb[1]), to);
    let on_orphaned = net.claim(&b, CHAIN, Some(&cb[3]), to);
    let txs = vec![post(&mut net, &b, &on_slashed), post(&mut net, &b, &on_orphaned)];
    let ev = net.block(&[], txs);
    assert_eq!(rejected(&ev), vec![Error::BadParent(cb[1].id()), Error::BadParent(cb[3].id())]);

    net.idle(W + 1);
    let anchors = anchors(&net);
    assert_eq!(anchors.iter().map(|x| x.claim).collect::<Vec<_>>(), ca.iter().map(|c| c.id()).collect::<Vec<_>>());
    assert_eq!(duplicate_of(&net, &cb[0]), Some(ca[0].id()), "B's honest first claim is a duplicate");
    assert_eq!(status(&net, &cb[1]), ClaimStatus::Slashed);
    assert_eq!(status(&net, &cb[2]), ClaimStatus::Orphaned);
    assert_eq!(status(&net, &cb[3]), ClaimStatus::Orphaned);
    let reward = CLAIM_BOND * u64::from(REWARD_PERCENT) / 100;
    assert_eq!(net.st.account(&b.public()).free, FUNDS - CLAIM_BOND);
    assert_eq!(net.st.account(&a.public()).free, FUNDS);
    assert_eq!(net.st.account(&key(11).public()).free, FUNDS + reward);
    net.assert_conserved();
    assert_replays(&net);
}

#[test]
fn claim_equivalent_to_a_slashed_claim_is_unaffected() {
    // Data at 1 and 2. B's claim ends at A's roots but lies about step 0: it is
    // slashed, its child orphaned; A's equivalent claim and its child finalize.
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    net.block(&[(CHAIN, 1, true)], vec![]);
    net.block(&[(CHAIN, 1, true)], vec![]);
    let ca = net.claim(&a, CHAIN, None, 2);
    let cb = net.claim_with(&b, CHAIN, None, 2, |s| s[0].state_root = TOY.hash(b"inner lie"));
    assert_eq!((ca.state_root, ca.receipts_root), (cb.state_root, cb.receipts_root));
    let txs = vec![post(&mut net, &b, &cb), post(&mut net, &a, &ca)];
    net.block(&[(CHAIN, 1, true)], txs);
    let a_child = net.claim(&a, CHAIN, Some(&ca), 3);
    let b_child = net.claim(&b, CHAIN, Some(&cb), 3);
    let txs = vec![post(&mut net, &b, &b_child), post(&mut net, &a, &a_child)];
    net.block(&[], txs);
    let ch = net.challenge(&cb.id(), 0);
    let tx = net.tx(&key(11), &ch);
    let ev = net.block(&[], vec![tx]);
    assert!(ev.iter().any(|e| matches!(e, Event::Slashed { claim, .. } if *claim == cb.id())), "{ev:?}");
    assert_eq!(status(&net, &b_child), ClaimStatus::Orphaned);
    assert_eq!(status(&net, &ca), ClaimStatus::Pending);
    net.idle(W);
    assert_eq!(anchors(&net).iter().map(|x| x.claim).collect::<Vec<_>>(), vec![ca.id(), a_child.id()]);
    net.assert_conserved();
}

#[test]
fn equivalent_parent_must_match_roots() {
    // Data at 1, 3 and 4. B's claim ends where A's does but with other roots (nobody
    // challenges it); B's child extends it. A's claim is anchored: B's claim and its
    // child are orphaned and never finalize, and nothing can extend them later.
    let mut net = Net::default();
    let (a, b) = (key(1), key(2));
    net.block(&[(CHAIN, 1, true)], vec![]);
    net.block(&[], vec![]);
    net.block(&[(CHAIN, 1, true)], vec![]);
    let ca = net.claim(&a, CHAIN, None, 3);
    let cb = net.claim_with(&b, CHAIN, None, 3, |s| s[1].state_root = TOY.hash(b"other"));
    assert_eq!(ca.to, cb.to);
    assert_ne!(ca.state_root, cb.state_root);
    let txs = vec![post(&mut net, &a, &ca), post(&mut net, &b, &cb)];
    net.block(&[(CHAIN, 1, true)], txs);
    let a_child = net.claim(&a, CHAIN, Some(&ca), 4);
    let b_child = net.claim(&b, CHAIN, Some(&cb), 4);
    assert_eq!(a_child.from, b_child.from);
    let txs = vec![post(&mut net, &b, &b_child), post(&mut net, &a, &a_child)];
    net.block(&[], txs);
    let events = net.idle(3 * W);
    assert!(
        events
            .contains(&Event::Orphaned { claim: cb.id(), reason: OrphanReason::SiblingFinalized { winner: ca.id() } })
    );
    assert!(events.contains(&Event::Orphaned {
        claim: b_child.id(),
        reason: OrphanReason::AncestorEnded { ancestor: cb.id(), status: ClaimStatus::Orphaned }
    }));
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::Finalized { claim, .. } | Event::Duplicate { claim, .. } if *claim == b_child.id() || *claim == cb.id()
    )));
    assert_eq!(status(&net, &b_child), ClaimStatus::Orphaned);
    let head = net.st.finalized(CHAIN).unwrap();
    assert_eq!((head.claim, head.to), (a_child.id(), Height(4)));
    // Extending B's claim (same `to` as A's anchored one, other roots) is refused.
    net.block(&[(CHAIN, 1, true)], vec![]);
    let late = net.claim(&b, CHAIN, Some(&cb), net.next_height() - 1);
    let tx = post(&mut net, &b, &late);
    let ev = net.block(&[], vec![tx]);
    assert_eq!(rejected(&ev), vec![Error::BadParent(cb.id())]);
    for k in [&a, &b] {
        assert_eq!(net.st.account(&k.public()).bonded, 0);
    }
    net.assert_conserved();
}

#[test]
fn stale_parent_is_refused() {
    // A's claims (0,1] and (1,2] are anchored; a claim extending (0,1] (which ends
    // below the head) is refused even though its parent finalized.
    let mut net = Net::default();
    let a = key(1);
    net.block(&[(CHAIN, 1, true)], vec![]);
    let c1 = net.claim(&a, CHAIN, None, 1);
    let tx = post(&mut net, &a, &c1);
    net.block(&[(CHAIN, 1, true)], vec![tx]);
    let c2 = net.claim(&a, CHAIN, Some(&c1), 2);
    let tx = post(&mut net, &a, &c2);
    net.block(&[], vec![tx]);
    net.idle(W);
    assert_eq!(net.st.finalized(CHAIN).unwrap().claim, c2.id());
    assert_eq!(status(&net, &c1), ClaimStatus::Finalized);
    let stale = net.claim(&key(2), CHAIN, Some(&c1), 2);
    let tx = post(&mut net, &key(2), &stale);
    let ev = net.block(&[], vec![tx]);
    assert_eq!(rejected(&ev), vec![Error::BadParent(c1.id())]);
}
