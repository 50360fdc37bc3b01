//! Rule-by-rule tests against one core: what it votes for, what it refuses and why,
//! that it persists before it sends, and that a restart never re-votes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use lamina_consensus_core::{
    Action, Certificate, Config, Core, Error, FaultKind, Message, Proposal, ProposalError, Recovered, Vote, VoteKind,
    WalRecord, Zip215, first_view, vote_digest,
};
use lamina_primitives::{
    AvailabilityCertificate, Block, BlockHeader, Committee, DaCommittee, DataCommitment, Digest, FinalizedBlock,
    Height, Keypair, Namespace, QuorumCertificate, Signature, View,
};

const N: usize = 4;

fn key(i: usize) -> Keypair {
    Keypair::for_testing(i as u64)
}

fn da_key(i: usize) -> Keypair {
    Keypair::for_testing(500 + i as u64)
}

fn config() -> Config {
    let v = Committee::new((0..N).map(|i| key(i).public()).collect()).unwrap();
    let da = Committee::new((0..4).map(|i| da_key(i).public()).collect()).unwrap();
    let mut c = Config::new(Digest([3; 32]), v, da, 3);
    c.max_batches_per_block = 3;
    c.max_batch_bytes = Some(MAX_BATCH_BYTES);
    c
}

/// The batch size limit of [`config`] (governance's `max_batch_bytes`).
const MAX_BATCH_BYTES: u64 = 1_000;

fn core(me: usize, recovered: Recovered) -> (Core, Vec<Action>) {
    Core::new(config(), Arc::new(key(me)), Arc::new(Zip215), recovered, Duration::ZERO, 1_000).unwrap()
}

fn cert(tag: u8) -> AvailabilityCertificate {
    cert_of(tag, 100)
}

/// A certificate, by 3 of the 4 DA nodes, of a square holding `blob_bytes`.
fn cert_of(tag: u8, blob_bytes: u64) -> AvailabilityCertificate {
    let commitment = DataCommitment {
        data_root: Digest([tag; 32]),
        square_width: 2,
        codec: 0,
        namespaces: vec![Namespace::from(lamina_primitives::ChainId(1))],
        blob_bytes,
    };
    let d = commitment.attestation_digest();
    let votes: Vec<(usize, Signature)> = (0..3).map(|i| (i, da_key(i).sign(&d))).collect();
    AvailabilityCertificate { commitment, signatures: QuorumCertificate::from_votes(d, 4, &votes) }
}

fn block(view: u64, height: u64, parent: Digest, ts: u64, batches: Vec<AvailabilityCertificate>) -> Block {
    let header = BlockHeader {
        height: Height(height),
        view: View(view),
        parent,
        proposer: key((view as usize) % N).public(),
        payload: Block::payload_digest(&batches),
        timestamp_ms: ts,
    };
    Block { header, batches }
}

fn propose(b: Block, certificates: Vec<Certificate>) -> Message {
    let signer = key((b.header.view.0 as usize) % N);
    let sig = signer.sign(&vote_digest(&config().network, VoteKind::Notarize, b.header.view, &b.digest()));
    Message::Propose(Proposal { block: b, signature: sig, certificates })
}

fn certificate(kind: VoteKind, view: u64, digest: Digest, signers: &[usize]) -> Certificate {
    let d = vote_digest(&config().network, kind, View(view), &digest);
    let votes: Vec<(usize, Signature)> = signers.iter().map(|&i| (i, key(i).sign(&d))).collect();
    Certificate { kind, view: View(view), digest, qc: QuorumCertificate::from_votes(d, N, &votes) }
}

fn vote(kind: VoteKind, view: u64, digest: Digest, signer: usize) -> Message {
    let sig = key(signer).sign(&vote_digest(&config().network, kind, View(view), &digest));
    Message::Vote(Vote { kind, view: View(view), digest, signer: signer as u32, signature: sig })
}

fn rejection(actions: &[Action]) -> Option<ProposalError> {
    actions.iter().find_map(|a| match a {
        Action::Fault(f) => match &f.kind {
            FaultKind::InvalidProposal { reason, .. } => Some(reason.clone()),
            _ => None,
        },
        _ => None,
    })
}

fn voted(actions: &[Action], kind: VoteKind) -> Option<Digest> {
    actions.iter().find_map(|a| match a {
        Action::Broadcast(Message::Vote(v)) if v.kind == kind && v.signer == 2 => Some(v.digest),
        _ => None,
    })
}

const T: Duration = Duration::from_millis(1);

#[test]
fn valid_proposal_is_voted_and_persisted_before_the_vote_is_sent() {
    let (mut c, _) = core(2, Recovered::default());
    let b = block(1, 1, Digest::ZERO, 1_000, vec![cert(1), cert(2)]);
    let actions = c.handle_message(T, 1, propose(b.clone(), vec![]));
    let persist = actions.iter().position(|a| *a == Action::Persist(WalRecord::Notarized(View(1), b.digest())));
    let send =
        actions.iter().position(|a| matches!(a, Action::Broadcast(Message::Vote(v)) if v.kind == VoteKind::Notarize));
    assert!(persist.is_some() && send.is_some(), "{actions:?}");
    assert!(persist < send, "the vote must be durable before it is sent");
}

#[test]
fn each_validity_rule_rejects_and_blames_the_leader() {
    let cases: Vec<(Block, ProposalError)> = vec![
        (
            {
                let mut b = block(1, 1, Digest::ZERO, 1_000, vec![cert(1)]);
                b.batches.push(cert(2));
                b
            },
            ProposalError::PayloadMismatch,
        ),
        (
            block(1, 1, Digest::ZERO, 1_000, vec![cert(1), cert(2), cert(3), cert(4)]),
            ProposalError::TooManyBatches { count: 4, max: 3 },
        ),
        (
            block(1, 1, Digest::ZERO, 1_000, vec![cert(1), cert(1)]),
            ProposalError::DuplicateBatch { attestation: cert(1).commitment.attestation_digest() },
        ),
        (
            block(1, 2, Digest::ZERO, 1_000, vec![]),
            ProposalError::WrongHeight { expected: Height(1), actual: Height(2) },
        ),
        (
            {
                let mut bad = cert(5);
                bad.signatures.signatures[1].0[3] ^= 1;
                block(1, 1, Digest::ZERO, 1_000, vec![cert(1), bad])
            },
            ProposalError::InvalidAvailability { index: 1, reason: lamina_primitives::CertError::BadSignature },
        ),
        (
            {
                let mut few = cert(6);
                few.signatures = QuorumCertificate::from_votes(
                    few.commitment.attestation_digest(),
                    4,
                    &[(0, da_key(0).sign(&few.commitment.attestation_digest()))],
                );
                block(1, 1, Digest::ZERO, 1_000, vec![few])
            },
            ProposalError::InvalidAvailability {
                index: 0,
                reason: lamina_primitives::CertError::BelowThreshold { signers: 1, threshold: 3 },
            },
        ),
        (
            // Certified by the DA committee, but larger than the epoch's batch limit.
            block(1, 1, Digest::ZERO, 1_000, vec![cert_of(7, MAX_BATCH_BYTES), cert_of(8, MAX_BATCH_BYTES + 1)]),
            ProposalError::InvalidAvailability {
                index: 1,
                reason: lamina_primitives::CertError::BatchTooLarge {
                    blob_bytes: MAX_BATCH_BYTES + 1,
                    max: MAX_BATCH_BYTES,
                },
            },
        ),
    ];
    for (b, want) in cases {
        let (mut c, _) = core(2, Recovered::default());
        let actions = c.handle_message(T, 1, propose(b, vec![]));
        assert_eq!(rejection(&actions), Some(want.clone()), "{actions:?}");
        assert!(voted(&actions, VoteKind::Notarize).is_none());
        // Rejection nullifies the view at once, after persisting that.
        assert!(actions.contains(&Action::Persist(WalRecord::Nullified(View(1)))));
        assert!(voted(&actions, VoteKind::Nullify).is_some(), "{want:?}: no nullify");
        assert_eq!(c.peer_faults()[1], 1);
    }
}

#[test]
fn a_batch_over_the_size_limit_is_refused_when_announced() {
    let (mut c, _) = core(2, Recovered::default());
    c.handle_message(T, 3, Message::Batch(cert_of(1, MAX_BATCH_BYTES + 1)));
    assert_eq!(c.pending_batches(), 0, "not held for proposal");
    assert_eq!(c.peer_faults()[3], 1, "the announcer is blamed");
    c.handle_message(T, 3, Message::Batch(cert_of(2, MAX_BATCH_BYTES)));
    assert_eq!(c.pending_batches(), 1, "at the limit it is held");
}

#[test]
fn timestamp_must_not_go_back_and_parent_must_be_notarized() {
    let (mut c, _) = core(3, Recovered::default());
    let b1 = block(1, 1, Digest::ZERO, 5_000, vec![]);
    c.handle_message(T, 1, propose(b1.clone(), vec![]));
    // View 2's leader extends b1 with an older timestamp.
    let b2 = block(2, 2, b1.digest(), 4_000, vec![]);
    let n1 = certificate(VoteKind::Notarize, 1, b1.digest(), &[0, 1, 2]);
    let actions = c.handle_message(T, 2, propose(b2, vec![n1.clone()]));
    assert_eq!(rejection(&actions), Some(ProposalError::TimestampRegressed), "{actions:?}");

    // A parent that is not the block notarized in its view: validator 3 saw `other`
    // from view 1's leader, but the view notarized b1.
    let (mut c, _) = core(3, Recovered::default());
    let other = block(1, 1, Digest::ZERO, 1_234, vec![]);
    c.handle_message(T, 1, propose(other.clone(), vec![]));
    c.handle_message(T, 0, Message::Certificate(n1));
    assert_eq!(c.view(), View(2));
    let b2 = block(2, 2, other.digest(), 6_000, vec![]);
    let actions = c.handle_message(T, 2, propose(b2, vec![]));
    assert_eq!(rejection(&actions), Some(ProposalError::ParentNotNotarized), "{actions:?}");
}

#[test]
fn proposals_from_non_leaders_and_bad_signatures_are_faults() {
    let (mut c, _) = core(2, Recovered::default());
    let b = block(1, 1, Digest::ZERO, 1_000, vec![]);
    let actions = c.handle_message(T, 3, propose(b.clone(), vec![]));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Fault(f) if f.peer == 3 && matches!(f.kind, FaultKind::NotLeader { .. })))
    );
    let Message::Propose(mut p) = propose(b, vec![]) else { unreachable!() };
    p.signature.0[0] ^= 1;
    let actions = c.handle_message(T, 1, Message::Propose(p));
    assert!(
        actions.iter().any(|a| matches!(a, Action::Fault(f) if matches!(f.kind, FaultKind::InvalidSignature { .. })))
    );
    assert!(voted(&actions, VoteKind::Notarize).is_none());
}

#[test]
fn equivocating_leader_yields_evidence_and_only_one_vote() {
    let (mut c, _) = core(2, Recovered::default());
    let a = block(1, 1, Digest::ZERO, 1_000, vec![]);
    let b = block(1, 1, Digest::ZERO, 1_001, vec![]);
    let first = c.handle_message(T, 1, propose(a.clone(), vec![]));
    assert_eq!(voted(&first, VoteKind::Notarize), Some(a.digest()));
    let second = c.handle_message(T, 1, propose(b.clone(), vec![]));
    let evidence = second.iter().find_map(|x| match x {
        Action::Fault(f) => match &f.kind {
            FaultKind::Equivocation(e) => Some(e.clone()),
            _ => None,
        },
        _ => None,
    });
    let e = evidence.expect("equivocation evidence");
    assert_eq!((e.first.0, e.second.0, e.signer), (a.digest(), b.digest(), 1));
    assert!(voted(&second, VoteKind::Notarize).is_none());
}

#[test]
fn impersonated_and_malformed_votes_are_faults() {
    let (mut c, _) = core(2, Recovered::default());
    let actions = c.handle_message(T, 3, vote(VoteKind::Nullify, 1, Digest::ZERO, 0));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Fault(f) if matches!(f.kind, FaultKind::Impersonation { claimed: 0 })))
    );
    let actions = c.handle_message(T, 3, vote(VoteKind::Nullify, 1, Digest([1; 32]), 3));
    assert!(actions.iter().any(|a| matches!(a, Action::Fault(f) if matches!(f.kind, FaultKind::Malformed { .. }))));
    let mut bad = certificate(VoteKind::Nullify, 1, Digest::ZERO, &[0, 1, 3]);
    bad.qc.signatures[2].0[9] ^= 1;
    let actions = c.handle_message(T, 3, Message::Certificate(bad));
    assert!(
        actions.iter().any(|a| matches!(a, Action::Fault(f) if matches!(f.kind, FaultKind::InvalidCertificate { .. })))
    );
    assert_eq!(c.view(), View(1), "an invalid certificate must not move the view");
}

#[test]
fn restart_never_votes_twice_in_a_view() {
    let a = block(1, 1, Digest::ZERO, 1_000, vec![]);
    let b = block(1, 1, Digest::ZERO, 1_001, vec![]);
    // Voted for `a` before the crash.
    let (mut c, _) = core(2, Recovered { wal: vec![WalRecord::Notarized(View(1), a.digest())], ..Default::default() });
    let actions = c.handle_message(T, 1, propose(b, vec![]));
    assert!(voted(&actions, VoteKind::Notarize).is_none(), "re-voted after restart: {actions:?}");

    // Nullified view 1 before the crash: a notarization of view 1 must not draw a
    // (proper) finalize vote.
    let (mut c, _) = core(2, Recovered { wal: vec![WalRecord::Nullified(View(1))], ..Default::default() });
    let n = certificate(VoteKind::Notarize, 1, a.digest(), &[0, 1, 3]);
    let actions = c.handle_message(T, 0, Message::Certificate(n));
    assert!(voted(&actions, VoteKind::Finalize).is_none(), "finalized a nullified view: {actions:?}");
    assert_eq!(c.view(), View(2));

    // A finalize vote before the crash: never a nullify vote in that view afterwards.
    let (mut c, _) = core(2, Recovered { wal: vec![WalRecord::Finalized(View(1), a.digest())], ..Default::default() });
    assert_eq!(c.view(), View(2), "resumes after a view it finalized");
    let actions = c.handle_timeout(Duration::from_secs(10));
    assert!(
        !actions.iter().any(
            |x| matches!(x, Action::Broadcast(Message::Vote(v)) if v.kind == VoteKind::Nullify && v.view == View(1))
        )
    );

    // A leader that proposed before the crash re-sends the very same proposal.
    let mine = block(2, 1, Digest::ZERO, 2_000, vec![]);
    let (_, actions) = core(
        2,
        Recovered { wal: vec![WalRecord::Nullified(View(1)), WalRecord::Proposed(mine.clone())], ..Default::default() },
    );
    let resent = actions.iter().find_map(|x| match x {
        Action::Broadcast(Message::Propose(p)) => Some(p.block.clone()),
        _ => None,
    });
    assert_eq!(resent, Some(mine));
}

#[test]
fn conflicting_wal_is_a_local_error() {
    let r = Recovered {
        wal: vec![WalRecord::Notarized(View(4), Digest([1; 32])), WalRecord::Notarized(View(4), Digest([2; 32]))],
        ..Default::default()
    };
    let e = Core::new(config(), Arc::new(key(2)), Arc::new(Zip215), r, Duration::ZERO, 0).unwrap_err();
    assert_eq!(e, Error::ConflictingWal { view: View(4) });
    let e =
        Core::new(config(), Arc::new(key(9)), Arc::new(Zip215), Recovered::default(), Duration::ZERO, 0).unwrap_err();
    assert!(matches!(e, Error::Config(lamina_consensus_core::ConfigError::NotAValidator)));
}

#[test]
fn ancestors_of_a_finalized_block_get_late_finalize_votes_and_are_output_in_order() {
    let ms = Duration::from_millis;
    let (mut c, _) = core(2, Recovered::default());
    let b1 = block(1, 1, Digest::ZERO, 1_000, vec![cert(1)]);
    assert_eq!(voted(&c.handle_message(ms(1), 1, propose(b1.clone(), vec![])), VoteKind::Notarize), Some(b1.digest()));
    // No notarization in time: validator 2 nullifies view 1 ...
    let actions = c.handle_timeout(ms(2_000));
    assert_eq!(voted(&actions, VoteKind::Nullify), Some(Digest::ZERO));
    // ... then learns that b1 was notarized: it moves on but must not send a (proper)
    // finalize vote for b1.
    let n1 = certificate(VoteKind::Notarize, 1, b1.digest(), &[0, 1, 3]);
    let actions = c.handle_message(ms(2_001), 0, Message::Certificate(n1));
    assert!(voted(&actions, VoteKind::Finalize).is_none(), "{actions:?}");
    assert_eq!(c.view(), View(2));
    // Validator 2 leads view 2: after the empty-block delay it extends b1.
    let actions = c.handle_timeout(ms(2_001) + config().empty_block_delay);
    let b2 = actions
        .iter()
        .find_map(|a| match a {
            Action::Broadcast(Message::Propose(p)) => Some(p.block.clone()),
            _ => None,
        })
        .expect("leader proposes");
    assert_eq!((b2.header.parent, b2.header.height), (b1.digest(), Height(2)));
    // The others finalize b2. b1 is now final, but has no certificate of its own:
    // validator 2 sends a late finalize vote for it and outputs nothing yet.
    let f2 = certificate(VoteKind::Finalize, 2, b2.digest(), &[0, 1, 3]);
    let actions = c.handle_message(ms(3_010), 0, Message::Certificate(f2));
    assert_eq!(voted(&actions, VoteKind::Finalize), Some(b1.digest()), "{actions:?}");
    assert!(actions.contains(&Action::Persist(WalRecord::Finalized(View(1), b1.digest()))));
    assert!(!actions.iter().any(|a| matches!(a, Action::Finalized(_))));
    // Two more finalize votes on b1 complete its certificate: b1 then b2 are output.
    let mut out = Vec::new();
    for s in [0, 1] {
        out.extend(c.handle_message(ms(3_020), s, vote(VoteKind::Finalize, 1, b1.digest(), s)));
    }
    let heights: Vec<u64> = out
        .iter()
        .filter_map(|a| match a {
            Action::Finalized(fb) => Some(fb.height().0),
            _ => None,
        })
        .collect();
    assert_eq!(heights, vec![1, 2], "{out:?}");
    assert_eq!(c.finalized_height(), Height(2));
    let committee = config().validators;
    for a in &out {
        if let Action::Finalized(fb) = a {
            fb.verify(&committee).unwrap();
        }
    }
}

#[test]
fn an_idle_view_waits_for_the_heartbeat_and_a_batch_brings_back_the_normal_timeouts() {
    let ms = Duration::from_millis;
    let cfg = config();
    let (lt, hb) = (cfg.leader_timeout, cfg.empty_block_delay);
    assert!(hb > lt, "the default heartbeat is longer than the leader timeout");
    // Validator 2 follows view 1 (led by 1) with nothing to order: it does not nullify
    // at the leader timeout, only once the heartbeat has passed as well.
    let (mut c, _) = core(2, Recovered::default());
    assert!(voted(&c.handle_timeout(lt + ms(10)), VoteKind::Nullify).is_none());
    assert_eq!(voted(&c.handle_timeout(hb + lt + ms(10)), VoteKind::Nullify), Some(Digest::ZERO));
    // A batch announced during an idle view brings the normal timeout back, from then.
    let (mut c, _) = core(2, Recovered::default());
    c.handle_message(ms(100), 3, Message::Batch(cert(7)));
    assert!(voted(&c.handle_timeout(ms(90) + lt), VoteKind::Nullify).is_none());
    assert_eq!(voted(&c.handle_timeout(ms(110) + lt), VoteKind::Nullify), Some(Digest::ZERO));
    // The leader of an idle view proposes nothing before the heartbeat; a batch that
    // arrives meanwhile is proposed at once.
    let proposed = |a: &[Action]| a.iter().any(|a| matches!(a, Action::Broadcast(Message::Propose(_))));
    let (mut l, _) = core(1, Recovered::default());
    assert!(!proposed(&l.handle_timeout(ms(500))));
    assert!(proposed(&l.submit_batch(ms(600), cert(8)).unwrap()));
    // Without a batch, the empty block comes at the heartbeat.
    let (mut l, _) = core(1, Recovered::default());
    assert!(!proposed(&l.handle_timeout(hb - ms(10))));
    assert!(proposed(&l.handle_timeout(hb)));
}

#[test]
fn under_load_a_leader_waits_the_minimum_block_interval_and_orders_everything_pending() {
    let ms = Duration::from_millis;
    let gap = config().min_block_interval;
    assert!(gap > Duration::ZERO, "the default interval is not zero");
    let proposal = |a: &[Action]| {
        a.iter().find_map(|a| match a {
            Action::Broadcast(Message::Propose(p)) => Some(p.block.clone()),
            _ => None,
        })
    };
    // Validator 1 leads view 1 (entered at 0). Batches arriving before the interval has
    // passed wait; at the interval, one block orders all of them (up to the limit).
    let (mut l, _) = core(1, Recovered::default());
    assert!(proposal(&l.submit_batch(ms(1), cert(1)).unwrap()).is_none());
    assert!(proposal(&l.handle_message(ms(2), 3, Message::Batch(cert(2)))).is_none());
    assert_eq!(l.next_deadline(), Some(gap), "the leader wakes up at the interval");
    assert!(proposal(&l.handle_timeout(gap - ms(1))).is_none());
    let block = proposal(&l.handle_timeout(gap)).expect("proposes at the interval");
    assert_eq!(block.batches.len(), 2, "one block for both batches");
    // A batch that arrives after the interval is proposed at once.
    let (mut l, _) = core(1, Recovered::default());
    assert!(proposal(&l.submit_batch(gap + ms(5), cert(3)).unwrap()).is_some());
    // Zero interval: proposed at once, as before.
    let mut cfg = config();
    cfg.min_block_interval = Duration::ZERO;
    let (mut l, _) = Core::new(cfg, Arc::new(key(1)), Arc::new(Zip215), Recovered::default(), ms(0), 1_000).unwrap();
    assert!(proposal(&l.submit_batch(ms(1), cert(4)).unwrap()).is_some());
}

#[test]
fn governance_block_limit_bounds_own_proposals_but_not_validity() {
    let ms = Duration::from_millis;
    let gap = config().min_block_interval;
    let proposal = |a: &[Action]| {
        a.iter().find_map(|a| match a {
            Action::Broadcast(Message::Propose(p)) => Some(p.block.clone()),
            _ => None,
        })
    };
    // Validator 1 leads view 1 with three batches pending: the network's limit (3)
    // would order them all; governance's limit of 2 orders two.
    let (mut l, _) = core(1, Recovered::default());
    l.set_batch_limit(Some(2));
    for tag in 1..=3 {
        assert!(proposal(&l.submit_batch(ms(1), cert(tag)).unwrap()).is_none());
    }
    let first = proposal(&l.handle_timeout(gap)).expect("proposes at the interval");
    assert_eq!(first.batches.len(), 2, "governance's limit");
    // This node's own policy is lower still: the smaller one holds.
    let mut cfg = config();
    cfg.propose_batches = 1;
    let (mut l, _) = Core::new(cfg, Arc::new(key(1)), Arc::new(Zip215), Recovered::default(), ms(0), 1_000).unwrap();
    l.set_batch_limit(Some(2));
    for tag in 1..=3 {
        l.submit_batch(ms(1), cert(tag)).unwrap();
    }
    assert_eq!(proposal(&l.handle_timeout(gap)).unwrap().batches.len(), 1);
    // Another leader's block with three batches is valid for a validator whose own
    // limit is 1: proposals are judged by the network's cap alone, the same on every
    // validator (a follower that learnt the limit later must not refuse what others
    // accept).
    let mut cfg = config();
    cfg.propose_batches = 1;
    let (mut c, _) = Core::new(cfg, Arc::new(key(2)), Arc::new(Zip215), Recovered::default(), ms(0), 1_000).unwrap();
    c.set_batch_limit(Some(1));
    let b = block(1, 1, Digest::ZERO, 1_000, vec![cert(1), cert(2), cert(3)]);
    let actions = c.handle_message(T, 1, propose(b.clone(), vec![]));
    assert_eq!(rejection(&actions), None, "{actions:?}");
    assert_eq!(voted(&actions, VoteKind::Notarize), Some(b.digest()));
}

// ------------------------------------------------------------------ epochs

fn epoch_core(me: usize, cfg: Config, recovered: Recovered) -> Result<(Core, Vec<Action>), Error> {
    Core::new(cfg, Arc::new(key(me)), Arc::new(Zip215), recovered, Duration::ZERO, 1_000)
}

fn outputs(actions: &[Action]) -> Vec<Height> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Finalized(fb) => Some(fb.height()),
            _ => None,
        })
        .collect()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn a_boundary_block_whose_view_failed_is_finalized_through_an_empty_suffix_that_is_never_output() {
    // Epoch 0 ends at height 1. View 1's block is notarized but not finalized in its
    // view (one finalize vote short); validator 2 leads view 2 and must extend it with
    // an empty block although a batch waits; that block's finalization finalizes height
    // 1 (late votes), which is output, and then the core is done.
    let mut cfg = config();
    cfg.last_height = Some(Height(1));
    let (mut c, _) = epoch_core(2, cfg, Recovered::default()).unwrap();
    let b1 = block(1, 1, Digest::ZERO, 1_000, vec![cert(1)]);
    c.handle_message(T, 1, propose(b1.clone(), vec![]));
    let actions =
        c.handle_message(T, 0, Message::Certificate(certificate(VoteKind::Notarize, 1, b1.digest(), &[0, 1, 2])));
    assert_eq!(voted(&actions, VoteKind::Finalize), Some(b1.digest()));
    assert_eq!(c.view(), View(2));
    c.submit_batch(T, cert(7)).unwrap();
    let actions = c.handle_timeout(T + ms(60));
    let suffix = actions
        .iter()
        .find_map(|a| match a {
            Action::Broadcast(Message::Propose(p)) => Some(p.block.clone()),
            _ => None,
        })
        .expect("the leader proposes the suffix");
    assert_eq!(suffix.header.height, Height(2));
    assert!(suffix.batches.is_empty(), "a block above the epoch's end orders nothing");
    // The suffix is finalized: height 1 is final as its ancestor; one more finalize
    // vote for it (a late one) completes its own certificate.
    let fin = certificate(VoteKind::Finalize, 2, suffix.digest(), &[0, 1, 2]);
    let actions = c.handle_message(T + ms(61), 0, Message::Certificate(fin));
    assert!(outputs(&actions).is_empty(), "height 1 has no certificate of its own yet");
    assert!(!c.epoch_done());
    let actions = c.handle_message(T + ms(62), 0, vote(VoteKind::Finalize, 1, b1.digest(), 0));
    assert!(outputs(&actions).is_empty());
    let actions = c.handle_message(T + ms(63), 3, vote(VoteKind::Finalize, 1, b1.digest(), 3));
    assert_eq!(outputs(&actions), vec![Height(1)], "only the boundary block is output: {actions:?}");
    assert!(c.epoch_done());
    assert_eq!(c.next_deadline(), None, "a finished core has no timers");
    assert!(c.handle_message(T + ms(64), 1, vote(VoteKind::Nullify, 3, Digest::ZERO, 1)).is_empty());
    assert!(matches!(c.submit_batch(T + ms(64), cert(8)), Err(Error::EpochEnded(0))));
    assert!(c.pending().iter().any(|b| *b == cert(7)), "the waiting batch is handed to the next epoch");
}

#[test]
fn a_block_above_the_epochs_end_that_orders_batches_is_rejected() {
    let mut cfg = config();
    cfg.last_height = Some(Height(1));
    let (mut c, _) = epoch_core(2, cfg, Recovered::default()).unwrap();
    let b1 = block(1, 1, Digest::ZERO, 1_000, vec![]);
    c.handle_message(T, 1, propose(b1.clone(), vec![]));
    let notarized = certificate(VoteKind::Notarize, 1, b1.digest(), &[0, 1, 3]);
    let skipped = certificate(VoteKind::Nullify, 2, Digest::ZERO, &[0, 1, 3]);
    let b3 = block(3, 2, b1.digest(), 1_000, vec![cert(1)]);
    let actions = c.handle_message(T, 3, propose(b3, vec![notarized, skipped]));
    assert_eq!(rejection(&actions), Some(ProposalError::BeyondEpochEnd));
}

#[test]
fn the_next_epoch_starts_from_the_boundary_block_in_its_own_views() {
    let b1 = block(1, 1, Digest::ZERO, 1_000, vec![]);
    let qc = certificate(VoteKind::Finalize, 1, b1.digest(), &[0, 1, 2]).qc;
    let tail =
        Recovered { finalized: vec![FinalizedBlock { block: b1.clone(), certificate: qc }], ..Default::default() };
    let mut cfg = config();
    cfg.epoch = 1;
    // An epoch after the first cannot start from genesis.
    assert!(matches!(epoch_core(2, cfg.clone(), Recovered::default()), Err(Error::WrongEpochTip { epoch: 1, .. })));
    let (mut c, _) = epoch_core(2, cfg.clone(), tail.clone()).unwrap();
    let v = first_view(1);
    assert_eq!(c.view(), v);
    // Epoch 0's messages are not this core's: ignored, nobody blamed.
    let actions = c.handle_message(T, 3, vote(VoteKind::Nullify, 3, Digest::ZERO, 0));
    assert!(actions.iter().all(|a| !matches!(a, Action::Fault(_))), "{actions:?}");
    let old = block(2, 2, b1.digest(), 1_000, vec![]);
    assert!(c.handle_message(T, 2 % N + 1, propose(old, vec![])).iter().all(|a| !matches!(a, Action::Fault(_))));
    // The first view's proposal extends the boundary block (the views in between are
    // epoch 0's and count as skipped) and is voted for.
    let b2 = block(v.0, 2, b1.digest(), 1_000, vec![cert(1)]);
    let actions = c.handle_message(T, (v.0 % N as u64) as usize, propose(b2.clone(), vec![]));
    assert_eq!(voted(&actions, VoteKind::Notarize), Some(b2.digest()), "{actions:?}");
    // A core told to end before its tip refuses.
    cfg.last_height = Some(Height(0));
    assert!(matches!(epoch_core(2, cfg, tail), Err(Error::EpochEnd { .. })));
}

/// A certificate of square `tag` from DA keys `keys` (3 signers), made for `committee`.
fn cert_in(tag: u8, committee: &DaCommittee, keys: &[usize]) -> AvailabilityCertificate {
    let mut c = cert(tag);
    let d = committee.digest_for(&c.commitment);
    let votes: Vec<(usize, Signature)> = (0..3).map(|i| (i, da_key(keys[i]).sign(&d))).collect();
    c.signatures = QuorumCertificate::from_votes(d, keys.len(), &votes);
    c
}

#[test]
fn an_epoch_with_a_new_da_committee_accepts_its_certificates_and_the_previous_ones_only() {
    let b1 = block(1, 1, Digest::ZERO, 1_000, vec![]);
    let qc = certificate(VoteKind::Finalize, 1, b1.digest(), &[0, 1, 2]).qc;
    let tail =
        Recovered { finalized: vec![FinalizedBlock { block: b1.clone(), certificate: qc }], ..Default::default() };
    let genesis_da = DaCommittee::genesis(config().da_committee, 3);
    // DA node 0 leaves and node 4 joins: the same validators, a new DA committee.
    let new_keys = [1, 2, 3, 4];
    let members = Committee::new(new_keys.iter().map(|&i| da_key(i).public()).collect()).unwrap();
    let new_da = DaCommittee::governed(members, 3);
    let epoch_config = |epoch: u64, previous: Option<DaCommittee>| {
        let mut cfg = config();
        cfg.epoch = epoch;
        cfg.da_committee = new_da.members.clone();
        cfg.da_threshold = 3;
        cfg.da_tag = new_da.tag;
        cfg.da_previous = previous;
        cfg
    };
    let judge = |cfg: Config, batch: AvailabilityCertificate| {
        let (mut c, _) = epoch_core(2, cfg, tail.clone()).unwrap();
        let b = block(c.view().0, 2, b1.digest(), 1_000, vec![batch]);
        let actions = c.handle_message(T, (c.view().0 % N as u64) as usize, propose(b.clone(), vec![]));
        (voted(&actions, VoteKind::Notarize) == Some(b.digest()), rejection(&actions))
    };
    // In the epoch of the switch: the new committee's certificates, and the genesis
    // committee's (batches certified before the switch) are both valid.
    let cfg = epoch_config(1, Some(genesis_da.clone()));
    assert_eq!(judge(cfg.clone(), cert_in(1, &new_da, &new_keys)), (true, None));
    assert_eq!(judge(cfg.clone(), cert(2)), (true, None));
    // The genesis committee's signatures presented as the new committee's (the same
    // nodes signed the plain digest) do not verify for it.
    let mut forged = cert(3);
    forged.signatures = cert_in(3, &genesis_da, &[1, 2, 3, 0]).signatures;
    assert!(!judge(cfg.clone(), forged).0);
    // A committee nobody decided: rejected, the leader blamed.
    let stranger = DaCommittee::governed(Committee::new(vec![da_key(9).public()]).unwrap(), 1);
    let (ok, why) = judge(cfg, cert_in(4, &stranger, &[9, 9, 9]));
    assert!(!ok && why.is_some());
    // An epoch later (no DA change since), the genesis committee's certificates no
    // longer count.
    let (ok, why) = judge(epoch_config(1, None), cert(5));
    assert!(!ok && why.is_some(), "{why:?}");
}

#[test]
fn blocks_above_the_horizon_are_held_until_it_moves() {
    let mut cfg = config();
    cfg.horizon = Some(Height(0));
    let (mut c, _) = epoch_core(2, cfg, Recovered::default()).unwrap();
    let b1 = block(1, 1, Digest::ZERO, 1_000, vec![]);
    c.handle_message(T, 1, propose(b1.clone(), vec![]));
    let actions =
        c.handle_message(T, 0, Message::Certificate(certificate(VoteKind::Finalize, 1, b1.digest(), &[0, 1, 3])));
    assert!(outputs(&actions).is_empty(), "held: the schedule is not known at height 1");
    assert!(!c.is_behind(), "a block held on purpose is not lag");
    assert_eq!(outputs(&c.set_horizon(T, Some(Height(1)))), vec![Height(1)]);
    // Told the end afterwards: too late for a height already output past.
    assert!(matches!(c.end_epoch_at(T, Height(0)), Err(Error::EpochEnd { .. })));
    assert!(c.end_epoch_at(T, Height(1)).unwrap().is_empty());
    assert!(c.epoch_done());
}
