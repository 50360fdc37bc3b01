#![allow(clippy::unwrap_used)]
//! The settlement attack list (S1–S10 of the settlement/bridge research, §B6) and the
//! bond, anchor and signature rules, against a toy executor.

mod common;

use common::*;
use lamina_interfaces::LedgerParams;
use lamina_primitives::{Digest, Height, Keypair, PublicKey, Transaction, TxScope, Wire};
use lamina_settlement_core::{
    Challenge, ChallengeOutcome, ClaimStatus, Entry, Error, Event, Input, OrphanReason, ProofInputs, WitnessRef,
    witness_hash,
};

/// Heights 1..=3: chain data at 1 and 3 (next height: 4).
fn setup() -> Net {
    let mut net = Net::default();
    net.block(&[(CHAIN, 3, true)], vec![]);
    net.block(&[], vec![]);
    net.block(&[(CHAIN, 2, true)], vec![]);
    net
}

fn post(net: &mut Net, k: &Keypair, claim: &lamina_interfaces::CheckpointClaim) -> Transaction {
    net.tx(k, &Entry::Claim(claim.clone()))
}

fn finalized_ids(events: &[Event]) -> Vec<(Digest, Height)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Finalized { claim, at, .. } => Some((*claim, *at)),
            _ => None,
        })
        .collect()
}

fn tamper_digest(tag: &[u8]) -> Digest {
    TOY.hash(tag)
}

#[test]
fn s1_wrong_state_root_is_slashed_and_never_anchored() {
    let mut net = setup();
    let claimer = key(1);
    let bad = net.claim_with(&claimer, CHAIN, None, 3, |s| s[1].state_root = tamper_digest(b"lie"));
    let tx = post(&mut net, &claimer, &bad);
    let ev = net.block(&[], vec![tx]);
    assert_eq!(accepted(&ev), vec![bad.id()]);
    assert_eq!(net.st.account(&claimer.public()).bonded, CLAIM_BOND);

    // Challenging the honest step fails and pays the claimer.
    let c0 = net.challenge(&bad.id(), 0);
    let tx0 = net.tx(&key(12), &c0);
    let ev = net.block(&[], vec![tx0]);
    assert!(matches!(&ev[0], Event::Challenged { outcome: ChallengeOutcome::Failed { .. }, .. }), "{ev:?}");
    assert_eq!(net.st.account(&key(12).public()).free, FUNDS - CHALLENGE_BOND);

    // The lying step is slashed.
    let c1 = net.challenge(&bad.id(), 1);
    let tx1 = net.tx(&key(11), &c1);
    let ev = net.block(&[], vec![tx1]);
    let reward = CLAIM_BOND * u64::from(REWARD_PERCENT) / 100;
    assert!(matches!(&ev[0], Event::Challenged { outcome: ChallengeOutcome::Slashed, step: 1, .. }));
    assert_eq!(
        ev[1],
        Event::Slashed {
            claim: bad.id(),
            claimer: claimer.public(),
            challenger: key(11).public(),
            reward,
            burned: CLAIM_BOND - reward
        }
    );
    assert_eq!(net.st.claim(&bad.id()).unwrap().status, ClaimStatus::Slashed);
    assert_eq!(net.st.account(&key(11).public()).free, FUNDS + reward);
    let c = net.st.account(&claimer.public());
    assert_eq!((c.free, c.bonded), (FUNDS - CLAIM_BOND + CHALLENGE_BOND, 0));
    assert_eq!(net.st.burned(), CLAIM_BOND - reward);

    let ev = net.idle(3 * W);
    assert!(finalized_ids(&ev).is_empty());
    assert!(net.st.finalized(CHAIN).is_none());
    assert_eq!(net.st.stats().slashed, 1);
    net.assert_conserved();

    // The honest claim for the same range is then accepted and anchored.
    let good = net.claim(&key(2), CHAIN, None, 3);
    let tx = post(&mut net, &key(2), &good);
    net.block(&[], vec![tx]);
    net.idle(W);
    assert_eq!(net.st.finalized(CHAIN).unwrap().state_root, good.state_root);
}

#[test]
fn s1_wrong_receipts_root_is_slashed() {
    let mut net = setup();
    let bad = net.claim_with(&key(1), CHAIN, None, 3, |s| s[0].receipts_root = tamper_digest(b"receipts"));
    let tx = post(&mut net, &key(1), &bad);
    net.block(&[], vec![tx]);
    let c = net.challenge(&bad.id(), 0);
    let tx = net.tx(&key(11), &c);
    let ev = net.block(&[], vec![tx]);
    assert!(ev.iter().any(|e| matches!(e, Event::Slashed { claim, .. } if *claim == bad.id())), "{ev:?}");
    net.idle(2 * W);
    assert!(net.st.finalized(CHAIN).is_none());
    net.assert_conserved();
}

#[test]
fn s2_sybil_claims_do_not_delay_honest_finality() {
    for k in [0u64, 1, 4, 8] {
        let mut net = setup();
        // k sybil claimers post wrong claims for the same range, before the honest one.
        let mut txs = Vec::new();
        let mut sybils = Vec::new();
        for i in 1..=k {
            let bad = net.claim_with(&key(i), CHAIN, None, 3, |s| s[0].state_root = tamper_digest(&i.to_le_bytes()));
            txs.push(post(&mut net, &key(i), &bad));
            sybils.push(bad);
        }
        let honest = net.claim(&key(9), CHAIN, None, 3);
        txs.push(post(&mut net, &key(9), &honest));
        let include = net.next_height();
        let ev = net.block(&[], txs);
        assert_eq!(accepted(&ev).len() as u64, k + 1);
        // k sybil challengers spam the honest claim with forged witnesses; the honest
        // challenger slashes every sybil claim.
        let mut txs = Vec::new();
        for i in 1..=k {
            let forged = Entry::Challenge(Challenge {
                claim: honest.id(),
                step: 0,
                witness: WitnessRef::Inline(vec![i as u8; 32]),
            });
            txs.push(net.tx(&key(10 + i), &forged));
        }
        for s in &sybils {
            let c = net.challenge(&s.id(), 0);
            txs.push(net.tx(&key(19), &c));
        }
        let ev = net.block(&[], txs);
        assert_eq!(ev.iter().filter(|e| matches!(e, Event::Slashed { .. })).count() as u64, k);
        // Finality comes exactly W heights after inclusion, whatever k.
        let mut all = Vec::new();
        while net.next_height() <= include + W {
            all.extend(net.idle(1));
        }
        assert_eq!(finalized_ids(&all), vec![(honest.id(), Height(include + W))], "k = {k}");
        assert_eq!(net.st.finalized(CHAIN).unwrap().state_root, honest.state_root);
        let honest_claimer = net.st.account(&key(9).public());
        assert_eq!(honest_claimer.free, FUNDS + k * CHALLENGE_BOND);
        net.assert_conserved();
    }
}

#[test]
fn s3_challenge_after_window_rejected() {
    let mut net = setup();
    // A wrong claim challenged at its deadline height is still slashed ...
    let bad = net.claim_with(&key(1), CHAIN, None, 3, |s| s[1].state_root = tamper_digest(b"x"));
    let tx = post(&mut net, &key(1), &bad);
    net.block(&[], vec![tx]);
    let deadline = net.st.claim(&bad.id()).unwrap().deadline;
    assert_eq!(deadline, Height(4 + W));
    while net.next_height() < deadline.0 {
        net.idle(1);
    }
    let c = net.challenge(&bad.id(), 1);
    let tx = net.tx(&key(11), &c);
    let ev = net.block(&[], vec![tx]);
    assert!(ev.iter().any(|e| matches!(e, Event::Slashed { .. })), "{ev:?}");

    // ... but one height after the deadline, a challenge is refused: the (unchallenged,
    // wrong) claim of the other chain has finalized at its deadline.
    let mut net = setup();
    net.block(&[(OTHER_CHAIN, 1, true)], vec![]);
    let bad = net.claim_with(&key(1), OTHER_CHAIN, None, 4, |s| s[0].state_root = tamper_digest(b"y"));
    let tx = post(&mut net, &key(1), &bad);
    net.block(&[], vec![tx]);
    let deadline = net.st.claim(&bad.id()).unwrap().deadline;
    while net.next_height() <= deadline.0 {
        net.idle(1);
    }
    let c = net.challenge(&bad.id(), 0);
    let before = net.st.account(&key(11).public());
    let tx = net.tx(&key(11), &c);
    let ev = net.block(&[], vec![tx]);
    let errs = rejected(&ev);
    assert!(
        matches!(errs.as_slice(), [Error::NotPending { status: ClaimStatus::Finalized, .. }] | [Error::TooLate { .. }]),
        "{ev:?}"
    );
    assert_eq!(net.st.account(&key(11).public()), before);
}

#[test]
fn s4_no_finality_before_window_end() {
    let mut net = setup();
    let claim = net.claim(&key(1), CHAIN, None, 3);
    let tx = post(&mut net, &key(1), &claim);
    let include = net.next_height();
    net.block(&[(CHAIN, 1, true)], vec![tx]);
    let child = net.claim(&key(2), CHAIN, Some(&claim), 4);
    let tx = post(&mut net, &key(2), &child);
    net.block(&[], vec![tx]);
    while net.next_height() < include + W {
        let ev = net.idle(1);
        assert!(finalized_ids(&ev).is_empty(), "finalized before the window ended: {ev:?}");
        assert_eq!(net.st.claim(&claim.id()).unwrap().status, ClaimStatus::Pending);
        assert_eq!(net.st.account(&key(1).public()).bonded, CLAIM_BOND);
    }
    let ev = net.idle(1);
    assert_eq!(finalized_ids(&ev), vec![(claim.id(), Height(include + W))]);
    let anchor = net.st.finalized(CHAIN).unwrap();
    assert_eq!((anchor.to, anchor.finalized_at, anchor.index), (Height(3), Height(include + W), 0));
    let ev = net.idle(1);
    assert_eq!(finalized_ids(&ev), vec![(child.id(), Height(include + W + 1))]);
    assert_eq!(net.st.finalized(CHAIN).unwrap().claim, child.id());
}

#[test]
fn s5_duplicate_claim_rejected() {
    let mut net = setup();
    let claim = net.claim(&key(1), CHAIN, None, 3);
    let a = post(&mut net, &key(1), &claim);
    let b = post(&mut net, &key(1), &claim);
    let ev = net.block(&[], vec![a.clone(), b]);
    assert_eq!(accepted(&ev), vec![claim.id()]);
    assert_eq!(rejected(&ev), vec![Error::Duplicate(claim.id())]);
    // The same transaction again: its nonce is spent.
    let ev = net.block(&[], vec![a.clone()]);
    assert!(matches!(rejected(&ev).as_slice(), [Error::StaleNonce { .. }]));
    // After finality, posting it again is still a duplicate.
    net.idle(W);
    assert_eq!(net.st.finalized(CHAIN).unwrap().claim, claim.id());
    let c = post(&mut net, &key(1), &claim);
    let ev = net.block(&[], vec![c]);
    assert_eq!(rejected(&ev), vec![Error::Duplicate(claim.id())]);
    assert_eq!(
        net.st.account(&key(1).public()),
        lamina_settlement_core::Account { free: FUNDS, bonded: 0, next_nonce: 1 }
    );
}

#[test]
fn s5_claim_for_another_network_rejected() {
    let mut net = setup();
    let mut other = genesis();
    other.network = "another-network".into();
    let other_params = lamina_settlement_core::Params::from_genesis(&other);
    let honest = net.claim(&key(1), CHAIN, None, 3);
    let mut foreign = honest.clone();
    foreign.network = other_params.network;
    let foreign = foreign.sign(&key(1));
    let tx = post(&mut net, &key(1), &foreign);
    let ev = net.block(&[], vec![tx]);
    assert!(matches!(rejected(&ev).as_slice(), [Error::WrongNetwork { .. }]), "{ev:?}");
    assert_eq!(net.st.account(&key(1).public()).bonded, 0);
}

#[test]
fn s6_forged_witness_costs_the_challenger() {
    let mut net = setup();
    let bad = net.claim_with(&key(1), CHAIN, None, 3, |s| s[0].state_root = tamper_digest(b"forged"));
    let tx = post(&mut net, &key(1), &bad);
    net.block(&[], vec![tx]);
    let rec = net.st.claim(&bad.id()).unwrap().clone();
    let right = toy_witness(&rec.pre_state_root);

    // Inline garbage.
    let forged = Entry::Challenge(Challenge { claim: bad.id(), step: 0, witness: WitnessRef::Inline(vec![7; 32]) });
    // DA reference whose blob holds other bytes than the hash names.
    net.blobs.insert(witness_hash(&right), b"not the witness".to_vec());
    let mismatched = Entry::Challenge(Challenge { claim: bad.id(), step: 0, witness: witness_ref_da(&right) });
    // DA reference to a blob nobody can fetch.
    let missing = Entry::Challenge(Challenge { claim: bad.id(), step: 0, witness: witness_ref_da(b"nowhere") });
    let txs = vec![net.tx(&key(11), &forged), net.tx(&key(12), &mismatched), net.tx(&key(13), &missing)];
    let ev = net.block(&[], txs);
    let failed =
        ev.iter().filter(|e| matches!(e, Event::Challenged { outcome: ChallengeOutcome::Failed { .. }, .. })).count();
    assert_eq!(failed, 3, "{ev:?}");
    for k in [11, 12, 13] {
        assert_eq!(net.st.account(&key(k).public()).free, FUNDS - CHALLENGE_BOND);
    }
    assert_eq!(net.st.account(&key(1).public()).free, FUNDS - CLAIM_BOND + 3 * CHALLENGE_BOND);
    assert_eq!(net.st.claim(&bad.id()).unwrap().status, ClaimStatus::Pending);

    // The genuine witness through DA proves the fraud.
    net.blobs.insert(witness_hash(&right), right.clone());
    let real = Entry::Challenge(Challenge { claim: bad.id(), step: 0, witness: witness_ref_da(&right) });
    let tx = net.tx(&key(14), &real);
    let ev = net.block(&[], vec![tx]);
    assert!(ev.iter().any(|e| matches!(e, Event::Slashed { .. })), "{ev:?}");
    assert_eq!(net.st.stats().challenges_failed, 3);
    assert_eq!(net.st.stats().challenges_ok, 1);
    net.assert_conserved();
}

#[test]
fn s7_empty_or_mismatched_proof_rejected_without_state_change() {
    let build = || {
        let mut net = setup();
        let claim = net.claim_with(&key(1), CHAIN, None, 3, |s| s[1].state_root = tamper_digest(b"z"));
        let tx = post(&mut net, &key(1), &claim);
        net.block(&[], vec![tx]);
        (net, claim)
    };
    let (mut net, claim) = build();
    let (mut twin, _) = build();
    let good = net.challenge(&claim.id(), 1);
    let unknown = Entry::Challenge(Challenge {
        claim: tamper_digest(b"no such claim"),
        step: 0,
        witness: WitnessRef::Inline(vec![1]),
    });
    let out_of_range = Entry::Challenge(Challenge { claim: claim.id(), step: 2, witness: WitnessRef::Inline(vec![1]) });
    let empty = Entry::Challenge(Challenge { claim: claim.id(), step: 1, witness: WitnessRef::Inline(vec![]) });
    let empty_da = Entry::Challenge(Challenge { claim: claim.id(), step: 1, witness: witness_ref_da(b"") });
    let mut inputs: Vec<Input> = [unknown, out_of_range, empty, empty_da]
        .iter()
        .map(|e| {
            let tx = net.tx(&key(11), e);
            net.input(tx)
        })
        .collect();
    // A valid challenge for which the service supplied no proof inputs.
    let tx = net.tx(&key(12), &good);
    inputs.push(Input { tx, proof: None });
    // A challenger without funds.
    let poor = key(77);
    let tx = net.tx(&poor, &good);
    inputs.push(net.input(tx));
    let h = Height(net.next_height());
    let ev = net.apply(HeightLog { height: h, namespaces: vec![], inputs });
    let errs = rejected(&ev);
    assert!(matches!(errs[0], Error::UnknownClaim(_)), "{errs:?}");
    assert!(matches!(errs[1], Error::BadStep { step: 2, steps: 2 }), "{errs:?}");
    assert_eq!(errs[2], Error::EmptyWitness);
    assert_eq!(errs[3], Error::EmptyWitness);
    assert_eq!(errs[4], Error::MissingProof);
    assert!(matches!(errs[5], Error::InsufficientBalance { have: 0, .. }), "{errs:?}");
    assert_eq!(errs.len(), ev.len());
    twin.idle(1);
    assert_eq!(net.st.state_root(), twin.st.state_root(), "rejections must not change state");
    // The proof with its inputs still works afterwards.
    let tx = net.tx(&key(12), &good);
    let ev = net.block(&[], vec![tx]);
    assert!(ev.iter().any(|e| matches!(e, Event::Slashed { .. })), "{ev:?}");
}

#[test]
fn s8_claim_over_unavailable_data_never_finalizes() {
    // Data whose certificates did not verify cannot be claimed at all.
    let mut net = Net::default();
    net.block(&[(CHAIN, 2, false)], vec![]);
    let claim = net.claim(&key(1), CHAIN, None, 1);
    let tx = post(&mut net, &key(1), &claim);
    let ev = net.block(&[], vec![tx]);
    assert_eq!(rejected(&ev), vec![Error::Unavailable(Height(1))]);

    net.assert_conserved();
}

#[test]
fn proven_bad_encoding_is_recorded_once_and_claims_over_it_keep_finalizing() {
    // A wrongly encoded square has a deterministic meaning (no transactions for the
    // namespaces whose rows are bad, by the DA layer's canonical rule), so a proof is
    // evidence, not a halt: claims over the square are judged by re-execution like any
    // other, and keep finalizing.
    let mut net = setup();
    let claim = net.claim(&key(1), CHAIN, None, 3);
    let tx = post(&mut net, &key(1), &claim);
    net.block(&[(CHAIN, 1, true)], vec![tx]);
    let child = net.claim(&key(2), CHAIN, Some(&claim), 4);
    let tx = post(&mut net, &key(2), &child);
    net.block(&[], vec![tx]);
    let root = net.data[&(CHAIN, 3)].roots[0];
    let wrong = Entry::BadEncoding { data_root: root, proof: b"nonsense".to_vec() };
    let right = Entry::BadEncoding { data_root: root, proof: bad_encoding_proof(&root) };
    let txs = vec![net.tx(&key(15), &wrong), net.tx(&key(15), &right), net.tx(&key(16), &right)];
    let ev = net.block(&[], txs);
    let errs = rejected(&ev);
    assert!(matches!(errs[0], Error::BadEncodingProof(_)));
    assert_eq!(errs[1], Error::AlreadyBad(root));
    assert_eq!(errs.len(), 2, "{ev:?}");
    assert!(ev.contains(&Event::BadEncoding { data_root: root }));
    assert_eq!(net.st.bad_data_roots().copied().collect::<Vec<_>>(), vec![root]);
    assert_eq!(net.st.stats().bad_encodings, 1);
    let ev = net.idle(3 * W);
    let done: Vec<Digest> = finalized_ids(&ev).into_iter().map(|(id, _)| id).collect();
    assert!(done.contains(&claim.id()) && done.contains(&child.id()), "{ev:?}");
    assert_eq!(net.st.claim(&child.id()).unwrap().status, ClaimStatus::Finalized);
    net.assert_conserved();
}

#[test]
fn s8_claim_with_wrong_inputs_rejected() {
    let mut net = setup();
    let cases: Vec<(&str, lamina_interfaces::CheckpointClaim)> = vec![
        ("wrong inputs digest", net.claim_with(&key(1), CHAIN, None, 3, |s| s[0].inputs = tamper_digest(b"in"))),
        (
            "missing step",
            net.claim_with(&key(1), CHAIN, None, 3, |s| {
                s.remove(0);
            }),
        ),
        (
            "extra step at a height without data",
            net.claim_with(&key(1), CHAIN, None, 3, |s| {
                let mut extra = s[0];
                extra.height = Height(2);
                s.insert(1, extra);
            }),
        ),
        ("no steps at all over data", net.claim_with(&key(1), CHAIN, None, 3, |s| s.truncate(0))),
    ];
    let mut txs = Vec::new();
    for (_, c) in &cases {
        txs.push(post(&mut net, &key(1), c));
    }
    let ev = net.block(&[], txs);
    let errs = rejected(&ev);
    assert_eq!(errs.len(), cases.len(), "{ev:?}");
    assert!(matches!(errs[0], Error::InputsMismatch { height: Height(1), .. }), "{errs:?}");
    assert!(matches!(errs[1], Error::InputsMismatch { height: Height(1), .. }), "{errs:?}");
    assert!(matches!(errs[2], Error::InputsMismatch { height: Height(2), .. }), "{errs:?}");
    assert!(matches!(errs[3], Error::Shape(_) | Error::ZeroRoot), "{errs:?}");
    assert_eq!(net.st.account(&key(1).public()).bonded, 0);
}

#[test]
fn s9_child_waits_for_parent_finality() {
    // Parent and child included in the same height finalize together, parent first.
    let mut net = setup();
    let parent = net.claim(&key(1), CHAIN, None, 1);
    let child = net.claim(&key(2), CHAIN, Some(&parent), 3);
    let txs = vec![post(&mut net, &key(1), &parent), post(&mut net, &key(2), &child)];
    let include = net.next_height();
    net.block(&[], txs);
    let ev = net.idle(W);
    assert_eq!(finalized_ids(&ev), vec![(parent.id(), Height(include + W)), (child.id(), Height(include + W))]);
    assert_eq!(net.st.anchors_root(CHAIN), {
        let leaves: Vec<Digest> = (0..2).map(|i| net.st.anchor(CHAIN, i).unwrap().leaf()).collect();
        lamina_primitives::merkle::root(&leaves)
    });

    // A child of a slashed parent is orphaned and never finalizes, even past its window.
    let mut net = setup();
    let parent = net.claim_with(&key(1), CHAIN, None, 1, |s| s[0].state_root = tamper_digest(b"p"));
    let child = net.claim(&key(2), CHAIN, Some(&parent), 3);
    let grandchild = {
        net.block(&[(CHAIN, 1, true)], vec![]);
        net.claim(&key(3), CHAIN, Some(&child), 4)
    };
    let txs =
        vec![post(&mut net, &key(1), &parent), post(&mut net, &key(2), &child), post(&mut net, &key(3), &grandchild)];
    net.block(&[], txs);
    let c = net.challenge(&parent.id(), 0);
    let tx = net.tx(&key(11), &c);
    let ev = net.block(&[], vec![tx]);
    let orphaned: Vec<Digest> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Orphaned { claim, .. } => Some(*claim),
            _ => None,
        })
        .collect();
    assert_eq!(orphaned, vec![child.id(), grandchild.id()]);
    let ev = net.idle(2 * W);
    assert!(finalized_ids(&ev).is_empty());
    assert_eq!(net.st.account(&key(2).public()).bonded, 0);
    assert_eq!(net.st.account(&key(3).public()).free, FUNDS);
    // A claim extending a slashed or orphaned claim is refused.
    net.block(&[], vec![]);
    let late = net.claim(&key(4), CHAIN, Some(&child), 4);
    let tx = post(&mut net, &key(4), &late);
    let ev = net.block(&[], vec![tx]);
    assert_eq!(rejected(&ev), vec![Error::BadParent(child.id())]);
    net.assert_conserved();
}

#[test]
fn competing_claims_first_included_wins_and_losers_are_refunded() {
    let mut net = setup();
    let a = net.claim(&key(1), CHAIN, None, 3);
    let b = net.claim(&key(2), CHAIN, None, 2);
    let b_child = net.claim(&key(3), CHAIN, Some(&b), 3);
    // Same range, pre-state and roots as `a` (another claimer): a duplicate, not a loser.
    let twin = net.claim(&key(5), CHAIN, None, 3);
    let txs = vec![
        post(&mut net, &key(1), &a),
        post(&mut net, &key(2), &b),
        post(&mut net, &key(3), &b_child),
        post(&mut net, &key(5), &twin),
    ];
    let include = net.next_height();
    net.block(&[], txs);
    let ev = net.idle(W);
    assert_eq!(finalized_ids(&ev).len(), 1);
    assert!(ev.contains(&Event::Orphaned { claim: b.id(), reason: OrphanReason::SiblingFinalized { winner: a.id() } }));
    // `b_child` ends at `a`'s roots, but from another cut (its parent `b` conflicts).
    assert_eq!((b_child.to, b_child.state_root), (a.to, a.state_root));
    assert!(ev.contains(&Event::Orphaned {
        claim: b_child.id(),
        reason: OrphanReason::AncestorEnded { ancestor: b.id(), status: ClaimStatus::Orphaned }
    }));
    assert!(ev.contains(&Event::Duplicate {
        claim: twin.id(),
        chain: CHAIN,
        to: a.to,
        anchored: a.id(),
        at: Height(include + W)
    }));
    assert_eq!(net.st.claim(&twin.id()).unwrap().status, ClaimStatus::Finalized);
    assert_eq!(net.st.claim(&twin.id()).unwrap().duplicate_of, Some(a.id()));
    assert_eq!(net.st.stats().finalized, 1);
    assert_eq!(net.st.stats().duplicates, 1);
    for k in [1, 2, 3, 5] {
        assert_eq!(net.st.account(&key(k).public()).bonded, 0);
        assert_eq!(net.st.account(&key(k).public()).free, FUNDS);
    }
    // Once anchored, a genesis-parent claim is refused.
    let c = net.claim(&key(4), CHAIN, None, 3);
    let tx = post(&mut net, &key(4), &c);
    let ev = net.block(&[], vec![tx]);
    assert!(matches!(rejected(&ev).as_slice(), [Error::BadGenesisClaim(_)]));
}

#[test]
fn s10_wrong_ledger_params_rejected() {
    let mut net = setup();
    let honest = net.claim(&key(1), CHAIN, None, 3);
    let other_version = LedgerParams { version: 2, fee: 0, fee_collector: PublicKey::default() }.digest(CHAIN);
    let other_chain = net.params().chains[&OTHER_CHAIN];
    let mut txs = Vec::new();
    for p in [other_version, other_chain] {
        let mut c = honest.clone();
        c.params = p;
        let c = c.sign(&key(1));
        txs.push(post(&mut net, &key(1), &c));
    }
    let ev = net.block(&[], txs);
    let errs = rejected(&ev);
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|e| matches!(e, Error::WrongParams { .. })), "{errs:?}");
}

#[test]
fn claim_for_future_heights_rejected() {
    let mut net = setup();
    // Height 4 carries data; a claim in height 4 may not cover it.
    net.st.observe_block(Height(4), &[(CHAIN, vec![TOY_DATA.hash(b"4")], true)]);
    let h4 = {
        let mut c = net.claim(&key(1), CHAIN, None, 3);
        c.to = Height(4);
        c.sign(&key(1))
    };
    let h9 = {
        let mut c = net.claim(&key(1), CHAIN, None, 3);
        c.to = Height(9);
        c.sign(&key(1))
    };
    let txs = vec![post(&mut net, &key(1), &h4), post(&mut net, &key(1), &h9)];
    let inputs = txs.into_iter().map(|t| net.input(t)).collect();
    let ev = net.apply(HeightLog { height: Height(4), namespaces: vec![], inputs });
    let errs = rejected(&ev);
    assert!(
        matches!(errs.as_slice(), [Error::Future { to: Height(4), .. }, Error::Future { to: Height(9), .. }]),
        "{errs:?}"
    );
}

#[test]
fn bad_signature_and_malformed_entries_rejected_state_unchanged() {
    let mut net = setup();
    let mut twin = setup();
    let good = net.claim(&key(1), CHAIN, None, 3);
    // Transaction signature broken.
    let mut bad_sig = post(&mut net, &key(1), &good);
    bad_sig.signature.0[5] ^= 1;
    // Payload garbage (validly signed).
    let garbage =
        Transaction::new_signed(&key(2), net.scope, lamina_settlement_core::SETTLEMENT_CHAIN, 0, vec![1, 2, 3]);
    // Valid entry sent to a user chain.
    let wrong_chain = Transaction::new_signed(&key(2), net.scope, CHAIN, 1, bad_sig.payload.clone());
    // Someone else posts the claim.
    let stolen = post(&mut net, &key(3), &good);
    // The claim's own signature broken, transaction signed fine.
    let mut forged = good.clone();
    forged.signature.0[1] ^= 1;
    let forged_tx = post(&mut net, &key(1), &forged);
    // An oversized payload.
    let huge = Transaction::new_signed(
        &key(4),
        net.scope,
        lamina_settlement_core::SETTLEMENT_CHAIN,
        0,
        vec![0; <Entry as Wire>::MAX_SIZE + 1],
    );
    // The claim signed for another network (or without this one's id: the network
    // binds it).
    let elsewhere =
        Entry::transaction(&key(1), TxScope::Network(Digest([1; 32])), 9, &Entry::Claim(good.clone())).unwrap();
    let unbound = Entry::transaction(&key(1), TxScope::ChainOnly, 10, &Entry::Claim(good.clone())).unwrap();
    let txs = vec![bad_sig, garbage, wrong_chain, stolen, forged_tx, huge, elsewhere, unbound];
    let ev = net.block(&[], txs);
    let errs = rejected(&ev);
    assert_eq!(errs.len(), 8, "{ev:?}");
    assert_eq!(&errs[6..], [Error::BadSignature, Error::BadSignature]);
    assert_eq!(errs[0], Error::BadSignature);
    assert!(matches!(errs[1], Error::Malformed(_)));
    assert!(matches!(errs[2], Error::NotSettlement(_)));
    assert!(matches!(errs[3], Error::SenderMismatch { .. }));
    assert_eq!(errs[4], Error::BadClaimSignature);
    assert!(matches!(errs[5], Error::Malformed(_)));
    twin.idle(1);
    assert_eq!(net.st.state_root(), twin.st.state_root());
    assert_eq!(net.st.stats().rejected, 8);

    // Valid entries in the same batch as invalid ones are still applied.
    let mut broken = post(&mut net, &key(5), &good);
    broken.signature.0[0] ^= 1;
    let ok = post(&mut net, &key(1), &good);
    let ev = net.block(&[], vec![broken, ok]);
    assert_eq!(accepted(&ev), vec![good.id()]);
    assert_eq!(rejected(&ev), vec![Error::BadSignature]);
}

#[test]
fn bonds_returned_on_finality_and_conserved() {
    let mut net = setup();
    let supply = net.params().total_supply();
    let honest = net.claim(&key(1), CHAIN, None, 3);
    let bad = net.claim_with(&key(2), OTHER_CHAIN, None, 3, |_| {});
    assert!(bad.steps.is_empty(), "no data on the other chain yet");
    let txs = vec![post(&mut net, &key(1), &honest)];
    net.block(&[(OTHER_CHAIN, 2, true)], txs);
    let bad = net.claim_with(&key(2), OTHER_CHAIN, None, 4, |s| s[0].state_root = tamper_digest(b"b"));
    let tx = post(&mut net, &key(2), &bad);
    net.block(&[], vec![tx]);
    assert_eq!(net.st.total_supply(), supply);
    // A failed challenge against the honest claim, a successful one against the bad.
    let forged = Entry::Challenge(Challenge { claim: honest.id(), step: 0, witness: WitnessRef::Inline(vec![3; 8]) });
    let real = net.challenge(&bad.id(), 0);
    let txs = vec![net.tx(&key(11), &forged), net.tx(&key(12), &real)];
    net.block(&[], txs);
    assert_eq!(net.st.total_supply(), supply);
    let mut n = 0;
    while net.st.finalized(CHAIN).is_none() {
        net.idle(1);
        assert_eq!(net.st.total_supply(), supply);
        n += 1;
        assert!(n <= W);
    }
    let a1 = net.st.account(&key(1).public());
    assert_eq!((a1.free, a1.bonded), (FUNDS + CHALLENGE_BOND, 0));
    let a2 = net.st.account(&key(2).public());
    assert_eq!((a2.free, a2.bonded), (FUNDS - CLAIM_BOND, 0));
    let reward = CLAIM_BOND * u64::from(REWARD_PERCENT) / 100;
    assert_eq!(net.st.account(&key(12).public()).free, FUNDS + reward);
    assert_eq!(net.st.account(&key(11).public()).free, FUNDS - CHALLENGE_BOND);
    assert_eq!(net.st.burned(), CLAIM_BOND - reward);
    assert_eq!(net.st.stats().pending, 0);
}

#[test]
fn anchor_proof_verifies_and_rejects_tampering() {
    let mut net = Net::default();
    let mut parent: Option<lamina_interfaces::CheckpointClaim> = None;
    for _ in 0..5 {
        net.block(&[(CHAIN, 2, true)], vec![]);
        let to = net.next_height() - 1;
        let c = net.claim(&key(1), CHAIN, parent.as_ref(), to);
        let tx = post(&mut net, &key(1), &c);
        net.block(&[], vec![tx]);
        parent = Some(c);
    }
    net.idle(W);
    let root = net.st.anchors_root(CHAIN);
    assert_eq!(net.st.finalized(CHAIN).unwrap().index, 4);
    for i in 0..5u64 {
        let a = *net.st.anchor(CHAIN, i).unwrap();
        let p = net.st.anchor_proof(CHAIN, a.to).unwrap();
        assert_eq!(p.anchor, a);
        p.verify(&root).unwrap();
        let bytes = lamina_primitives::encode(&p).unwrap();
        assert_eq!(lamina_primitives::decode::<lamina_settlement_core::AnchorProof>(&bytes).unwrap(), p);
        // Between anchors, the proof is for the last one at or before.
        assert_eq!(net.st.anchor_proof(CHAIN, Height(a.to.0 + 1)).unwrap().anchor, a);

        let mut t = p.clone();
        t.anchor.state_root = tamper_digest(b"t");
        assert!(t.verify(&root).is_err());
        let mut t = p.clone();
        t.anchor.index = (i + 1) % 5;
        assert!(matches!(t.verify(&root), Err(Error::AnchorIndexMismatch { .. })));
        let mut t = p.clone();
        t.proof.index = (i + 1) % 5;
        t.anchor.index = t.proof.index;
        assert!(t.verify(&root).is_err());
        let mut t = p.clone();
        t.anchor.chain = OTHER_CHAIN;
        assert!(t.verify(&root).is_err());
        if let Some(s) = p.proof.siblings.first() {
            let mut t = p.clone();
            t.proof.siblings[0] = Digest(s.0.map(|b| b ^ 1));
            assert!(matches!(t.verify(&root), Err(Error::AnchorProof(_))));
        }
        assert!(p.verify(&net.st.anchors_root(OTHER_CHAIN)).is_err());
    }
    assert!(net.st.anchor_proof(CHAIN, Height(0)).is_none(), "nothing ends at or before height 0");
    assert!(net.st.anchor_proof(OTHER_CHAIN, Height(100)).is_none());
}

#[test]
fn two_instances_fed_the_same_inputs_reach_the_same_state_root() {
    let mut net = setup();
    let a = net.claim(&key(1), CHAIN, None, 3);
    let bad = net.claim_with(&key(2), CHAIN, None, 3, |s| s[1].state_root = tamper_digest(b"q"));
    let txs = vec![post(&mut net, &key(2), &bad), post(&mut net, &key(1), &a)];
    net.block(&[(OTHER_CHAIN, 1, true)], txs);
    let c = net.challenge(&bad.id(), 1);
    let tx = net.tx(&key(11), &c);
    net.block(&[], vec![tx]);
    net.idle(W + 1);
    let (st, events) = replay(&net.genesis, &net.log);
    assert_eq!(st.state_root(), net.st.state_root());
    assert_eq!(events, net.events);
    assert_eq!(st.anchors_root(CHAIN), net.st.anchors_root(CHAIN));
    assert_ne!(st.anchors_root(CHAIN), lamina_primitives::merkle::empty_root());
    // Re-feeding already processed heights changes nothing.
    let mut st2 = st.clone();
    for hl in &net.log {
        assert!(apply_to(&mut st2, hl).is_empty());
    }
    assert_eq!(st2.state_root(), st.state_root());
}

#[test]
fn replayed_failed_challenge_does_not_cost_twice() {
    let mut net = setup();
    let a = net.claim(&key(1), CHAIN, None, 3);
    let tx = post(&mut net, &key(1), &a);
    net.block(&[], vec![tx]);
    let forged = Entry::Challenge(Challenge { claim: a.id(), step: 0, witness: WitnessRef::Inline(vec![1; 4]) });
    let tx = net.tx(&key(11), &forged);
    net.block(&[], vec![tx.clone()]);
    let ev = net.block(&[], vec![tx]);
    assert!(matches!(rejected(&ev).as_slice(), [Error::StaleNonce { .. }]));
    assert_eq!(net.st.account(&key(11).public()).free, FUNDS - CHALLENGE_BOND);
}

#[test]
fn challenge_in_the_claims_own_height_is_too_early() {
    let mut net = setup();
    let a = net.claim_with(&key(1), CHAIN, None, 3, |s| s[0].state_root = tamper_digest(b"e"));
    let tx = post(&mut net, &key(1), &a);
    let ch = Entry::Challenge(Challenge {
        claim: a.id(),
        step: 0,
        witness: WitnessRef::Inline(toy_witness(&toy_genesis_root(CHAIN))),
    });
    let ctx = net.tx(&key(11), &ch);
    let inputs = vec![
        Input { tx, proof: None },
        Input { tx: ctx, proof: Some(ProofInputs { txs: vec![], witness: Ok(vec![]) }) },
    ];
    let h = Height(net.next_height());
    let ev = net.apply(HeightLog { height: h, namespaces: vec![], inputs });
    assert_eq!(rejected(&ev), vec![Error::TooEarly(a.id())]);
}

#[test]
fn terminal_records_are_bounded_and_data_records_pruned() {
    let mut net = Net::default();
    let mut parent: Option<lamina_interfaces::CheckpointClaim> = None;
    let n = lamina_settlement_core::state::MAX_TERMINAL_PER_CHAIN + 40;
    let mut first = None;
    let mut txs = Vec::new();
    for i in 0..n {
        net.block(&[(CHAIN, 1, true)], std::mem::take(&mut txs));
        let to = net.next_height() - 1;
        let c = net.claim(&key(1 + (i as u64 % 9)), CHAIN, parent.as_ref(), to);
        first.get_or_insert(c.id());
        txs.push(post(&mut net, &key(1 + (i as u64 % 9)), &c));
        parent = Some(c);
    }
    net.block(&[], txs);
    net.idle(W);
    assert_eq!(net.st.stats().finalized as usize, n);
    assert_eq!(net.st.claims(CHAIN).count(), lamina_settlement_core::state::MAX_TERMINAL_PER_CHAIN);
    assert!(net.st.claim(&first.unwrap()).is_none(), "oldest ended record pruned");
    assert_eq!(net.st.finalized(CHAIN).unwrap().index as usize, n - 1);
    assert!(net.st.anchor_proof_at(CHAIN, 0).unwrap().verify(&net.st.anchors_root(CHAIN)).is_ok());
    net.assert_conserved();
}
