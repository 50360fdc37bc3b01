//! The governance state machine's rules: passing, rejecting, epochs, and bad input.
#![allow(clippy::unwrap_used)]

use lamina_governance_core::state::{KEEP_CLOSED, MAX_OPEN_PER_MEMBER};
use lamina_governance_core::{
    Action, Entry, Envelope, Error, Event, GovernanceState, NodeSpec, Param, Settings, Status,
};
use lamina_interfaces::{ClientEntry, Genesis, GovernanceSpec, MemberEntry};
use lamina_primitives::{ChainId, Digest, Height, Keypair, PublicKey, Transaction, TxScope, sig};
use lamina_test_utils::{chain, genesis, localhost, node};
use proptest::prelude::*;

const L: u64 = 10;
const PERIOD: u64 = 5;

fn member(i: u64) -> Keypair {
    Keypair::for_testing(i)
}

/// Four validators (keys 0..4), four DA nodes, chain 1, a client key; members are the
/// validators with weight 1 unless `weights` names others (keys 0.., weights given).
fn net(weights: &[u64]) -> Genesis {
    Genesis {
        chains: vec![chain(1)],
        validators: (0..4).map(|i| node(format!("validator-{i}"), &member(i), localhost(0))).collect(),
        da_nodes: (0..4).map(|i| node(format!("da-{i}"), &Keypair::for_testing(100 + i), localhost(0))).collect(),
        clients: vec![ClientEntry { name: "wallet".into(), key: Keypair::for_testing(200).public() }],
        governance: GovernanceSpec {
            members: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| MemberEntry { name: format!("org-{i}"), key: member(i as u64).public(), weight: w })
                .collect(),
            epoch_length: L,
            voting_period: PERIOD,
            quorum_percent: 50,
            threshold_percent: 67,
            committee_changes: false,
        },
        ..genesis("gov-test")
    }
}

struct Net {
    gov: GovernanceState,
    network: Digest,
    scope: TxScope,
    nonces: Vec<u64>,
    height: u64,
}

impl Net {
    fn new(weights: &[u64]) -> Self {
        let g = net(weights);
        g.validate().unwrap();
        Net {
            gov: GovernanceState::new(&g),
            network: g.network_id(),
            scope: g.tx_scope(),
            nonces: vec![0; 300],
            height: 0,
        }
    }

    fn tx(&mut self, who: u64, entry: Entry) -> Transaction {
        let n = self.nonces[who as usize];
        self.nonces[who as usize] += 1;
        Entry::transaction(&member(who), self.scope, self.network, n, &entry).unwrap()
    }

    fn propose(&mut self, who: u64, action: Action) -> Transaction {
        self.tx(who, Entry::Propose { action, reason: "test".into(), valid_until: u64::MAX })
    }

    /// A vote on proposal `proposal` as it is now (bound to its opening transaction).
    fn vote(&mut self, who: u64, proposal: u64, approve: bool) -> Transaction {
        let proposal_tx = opened_by(&self.gov, proposal);
        self.vote_for(who, proposal, proposal_tx, approve)
    }

    /// A vote on proposal `proposal`, opened by transaction `proposal_tx`.
    fn vote_for(&mut self, who: u64, proposal: u64, proposal_tx: Digest, approve: bool) -> Transaction {
        self.tx(who, Entry::Vote { proposal, proposal_tx, approve, valid_until: u64::MAX })
    }

    /// Applies the next height with `txs`.
    fn block(&mut self, txs: Vec<Transaction>) -> Vec<Event> {
        self.height += 1;
        self.gov.apply_block(Height(self.height), &txs).unwrap()
    }

    /// Applies `txs` at the next height and expects the one rejection `want`, with the
    /// state's digest unchanged by it.
    fn rejected(&mut self, tx: Transaction, want: impl Fn(&Error) -> bool) {
        let mut twin = self.gov.clone();
        let before = self.gov.clone();
        self.height += 1;
        let events = self.gov.apply_block(Height(self.height), std::slice::from_ref(&tx)).unwrap();
        let errors: Vec<&Error> = events
            .iter()
            .filter_map(|e| match e {
                Event::TxRejected { error, .. } => Some(error),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{events:?}");
        assert!(want(errors[0]), "unexpected rejection {:?}", errors[0]);
        // The same height without the transaction gives the same state.
        twin.apply_block(Height(self.height), &[]).unwrap();
        assert_eq!(twin.digest(), self.gov.digest(), "a rejected transaction changed the state");
        assert_ne!(before.height(), self.gov.height());
    }
}

/// The transaction that opened proposal `id` (zero if there is none).
fn opened_by(gov: &GovernanceState, id: u64) -> Digest {
    gov.proposal(id).map_or(Digest::ZERO, |p| p.tx.0)
}

fn spec(i: u64) -> NodeSpec {
    NodeSpec {
        name: format!("new-{i}"),
        key: Keypair::for_testing(i).public(),
        addr: format!("127.0.0.1:{}", 9000 + i),
        http: None,
    }
}

fn passed(events: &[Event], id: u64) -> Option<Height> {
    events.iter().find_map(|e| match e {
        Event::Passed { id: i, boundary } if *i == id => Some(*boundary),
        _ => None,
    })
}

fn invalid_key() -> PublicKey {
    // Not every 32-byte string is a point on the curve: find one that is not.
    (0u8..=255)
        .map(|b| PublicKey([b; 32]))
        .find(|k| sig::decode_key_uncached(k).is_err())
        .expect("some repeated byte is not a curve point")
}

#[test]
fn a_validator_added_by_vote_joins_at_the_next_boundary_not_before() {
    let mut n = Net::new(&[]);
    let p = n.propose(0, Action::AddValidator(spec(50)));
    let tx = p.id();
    assert_eq!(n.block(vec![p]), vec![Event::Proposed { id: 1, proposer: member(0).public(), tx }]);
    let votes = vec![n.vote(0, 1, true), n.vote(1, 1, true)];
    let events = n.block(votes);
    assert_eq!(passed(&events, 1), None, "2 of 4 is below 67%");
    let v = n.vote(2, 1, true);
    let events = n.block(vec![v]);
    assert_eq!(passed(&events, 1), Some(Height(L)), "3 of 4 passes at once: {events:?}");
    // Heights up to the boundary keep the old committee.
    while n.height < L - 1 {
        n.block(vec![]);
        assert_eq!(n.gov.epoch().membership.validators.len(), 4);
        assert_eq!(n.gov.epoch().number, 0);
    }
    let events = n.block(vec![]);
    assert!(events.contains(&Event::Applied { id: 1, epoch: 1 }), "{events:?}");
    assert!(events.contains(&Event::EpochStarted { epoch: 1, first_height: Height(L + 1), changed: true }));
    let epoch = n.gov.epoch();
    assert_eq!(epoch.membership.validators.len(), 5);
    assert_eq!(epoch.membership.validators[4].key, Keypair::for_testing(50).public());
    assert_eq!(epoch.membership.validators[4].addr, "127.0.0.1:9050".parse::<std::net::SocketAddr>().unwrap());
    assert_eq!(n.gov.proposal(1).unwrap().status, Status::Applied { at: Height(L), epoch: 1 });
    // An epoch without changes still starts, unchanged.
    for _ in 0..L {
        n.block(vec![]);
    }
    assert_eq!(n.gov.epoch().number, 2);
    assert_eq!(n.gov.epoch().membership.validators.len(), 5);
}

#[test]
fn a_committee_change_orders_from_one_epoch_after_its_boundary_and_is_known_that_far_ahead() {
    let mut n = Net::new(&[]);
    let genesis_keys: Vec<PublicKey> = (0..4).map(|i| member(i).public()).collect();
    let at = |n: &Net, h: u64| n.gov.committee_at(Height(h)).map(|c| (c.epoch, c.validators.clone()));
    assert_eq!(at(&n, 1), Some((0, genesis_keys.clone())));
    assert_eq!(n.gov.committee_known_through(), Height(L), "nothing decided yet, one epoch of lag");
    let p = n.propose(0, Action::AddValidator(spec(50)));
    n.block(vec![p]);
    let votes = vec![n.vote(0, 1, true), n.vote(1, 1, true), n.vote(2, 1, true)];
    n.block(votes);
    while n.height < L {
        n.block(vec![]);
    }
    // Applied at boundary L (governance epoch 1 starts at L + 1), but the consensus
    // committee changes one governance epoch later, at 2L + 1.
    let mut five = genesis_keys.clone();
    five.push(Keypair::for_testing(50).public());
    assert_eq!(at(&n, L + 1), Some((0, genesis_keys.clone())));
    assert_eq!(at(&n, 2 * L), Some((0, genesis_keys.clone())));
    assert_eq!(at(&n, 2 * L + 1), Some((1, five.clone())));
    assert_eq!(n.gov.committee_known_through(), Height(2 * L));
    // A boundary that leaves the validators alone starts no consensus epoch.
    while n.height < 2 * L {
        n.block(vec![]);
    }
    assert_eq!(n.gov.committees().count(), 2);
    // Removing one: consensus epoch 2 from the boundary after next.
    let p = n.propose(1, Action::RemoveValidator { key: member(3).public() });
    n.block(vec![p]);
    let votes = vec![n.vote(0, 2, true), n.vote(1, 2, true), n.vote(2, 2, true)];
    n.block(votes);
    while n.height < 3 * L {
        assert_eq!(at(&n, 4 * L + 1).unwrap().0, 1, "not decided before its boundary");
        n.block(vec![]);
    }
    let four: Vec<PublicKey> = five.iter().copied().filter(|k| *k != member(3).public()).collect();
    assert_eq!(at(&n, 4 * L), Some((1, five)));
    assert_eq!(at(&n, 4 * L + 1), Some((2, four)));
    // Every committee for a height up to the horizon is final: the same heights
    // replayed on another node agree, and no decision after it changes them.
    assert!(n.gov.committee_known_through() >= Height(4 * L));
}

#[test]
fn a_da_committee_change_starts_a_consensus_epoch_of_its_own() {
    let mut n = Net::new(&[]);
    let genesis = net(&[]);
    let validators: Vec<PublicKey> = (0..4).map(|i| member(i).public()).collect();
    let da = |n: &Net, h: u64| n.gov.committee_at(Height(h)).map(|c| (c.epoch, c.da_nodes.clone(), c.da_threshold));
    assert_eq!(da(&n, 1), Some((0, genesis.da_committee().members, genesis.da_threshold())));
    let p = n.propose(0, Action::AddDaNode(spec(60)));
    n.block(vec![p]);
    let votes = vec![n.vote(0, 1, true), n.vote(1, 1, true), n.vote(2, 1, true)];
    n.block(votes);
    while n.height < L {
        n.block(vec![]);
    }
    // The validators stay; the DA committee grows, from the same height a validator
    // change would take effect, with the threshold of the new committee.
    let mut nodes = genesis.da_committee().members;
    nodes.push(Keypair::for_testing(60).public());
    let threshold = nodes.len() - (nodes.len() - 1) / 3;
    assert_eq!(da(&n, 2 * L).map(|d| d.0), Some(0));
    assert_eq!(da(&n, 2 * L + 1), Some((1, nodes, threshold)));
    assert_eq!(n.gov.committee_at(Height(2 * L + 1)).unwrap().validators, validators);
}

#[test]
fn a_block_limit_change_starts_a_consensus_epoch_whose_blocks_it_bounds() {
    let mut n = Net::new(&[]);
    let limit = |n: &Net, h: u64| n.gov.committee_at(Height(h)).map(|c| (c.epoch, c.max_batches_per_block));
    assert_eq!(limit(&n, 1), Some((0, 4096)));
    let p = n.propose(0, Action::SetParam { param: Param::MaxBatchesPerBlock, value: 64 });
    n.block(vec![p]);
    let votes = vec![n.vote(0, 1, true), n.vote(1, 1, true), n.vote(2, 1, true)];
    n.block(votes);
    while n.height < L {
        n.block(vec![]);
    }
    // Proposers read it from the boundary on (a policy); as a validity rule it starts
    // with the consensus epoch one governance epoch later, like a committee change.
    assert_eq!(n.gov.value_at(Param::MaxBatchesPerBlock, Height(L + 1)), Some(64));
    assert_eq!(limit(&n, 2 * L), Some((0, 4096)));
    assert_eq!(limit(&n, 2 * L + 1), Some((1, 64)));
    assert_eq!(
        n.gov.committee_at(Height(2 * L + 1)).unwrap().validators,
        n.gov.committee_at(Height(1)).unwrap().validators
    );
}

#[test]
fn a_batch_size_change_starts_a_consensus_epoch_and_batchers_cut_under_both_limits() {
    let mut n = Net::new(&[]);
    let limit = |n: &Net, h: u64| n.gov.committee_at(Height(h)).map(|c| (c.epoch, c.max_batch_bytes));
    let pass = |n: &mut Net, value: u64, id: u64| {
        let p = n.propose(0, Action::SetParam { param: Param::MaxBatchBytes, value });
        n.block(vec![p]);
        let votes = vec![n.vote(0, id, true), n.vote(1, id, true), n.vote(2, id, true)];
        n.block(votes);
    };
    // No limit at genesis (0): only the square bounds a batch.
    assert_eq!(limit(&n, 1), Some((0, 0)));
    assert_eq!(n.gov.batch_bytes_from(Height(1)), None);
    // Lowered: batchers cut under it from the boundary on, a governance epoch before
    // it becomes a validity rule, since a batch cut then may be ordered after it.
    pass(&mut n, 256 << 10, 1);
    while n.height < L {
        n.block(vec![]);
    }
    assert_eq!(limit(&n, 2 * L), Some((0, 0)));
    assert_eq!(limit(&n, 2 * L + 1), Some((1, 256 << 10)));
    assert_eq!(n.gov.batch_bytes_from(Height(L + 1)), Some(256 << 10));
    assert_eq!(
        n.gov.committee_at(Height(2 * L + 1)).unwrap().validators,
        n.gov.committee_at(Height(1)).unwrap().validators
    );
    // Raised again: the lower limit binds batchers until the raise's epoch starts.
    pass(&mut n, 1 << 20, 2);
    while n.height < 2 * L {
        n.block(vec![]);
    }
    assert_eq!(limit(&n, 3 * L + 1), Some((2, 1 << 20)));
    assert_eq!(n.gov.batch_bytes_from(Height(2 * L + 1)), Some(256 << 10), "epoch 1 still orders these heights");
    assert_eq!(n.gov.batch_bytes_from(Height(3 * L + 1)), Some(1 << 20));
    assert_eq!(n.gov.value_at(Param::MaxBatchBytes, Height(2 * L + 1)), Some(1 << 20));
    // Lifted (0): from its epoch on, no limit.
    pass(&mut n, 0, 3);
    while n.height < 3 * L {
        n.block(vec![]);
    }
    assert_eq!(limit(&n, 4 * L + 1), Some((3, 0)));
    assert_eq!(n.gov.batch_bytes_from(Height(3 * L + 1)), Some(1 << 20), "until the lift's epoch");
    assert_eq!(n.gov.batch_bytes_from(Height(4 * L + 1)), None);
}

#[test]
fn a_state_saved_by_an_earlier_release_is_not_complete_and_is_replayed() {
    let mut n = Net::new(&[]);
    n.block(vec![]);
    assert!(n.gov.is_complete());
    let saved: GovernanceState = serde_json::from_value(serde_json::to_value(&n.gov).unwrap()).unwrap();
    assert!(saved.is_complete() && saved.digest() == n.gov.digest());
    // Saved before the committee schedule existed.
    let mut json: serde_json::Value = serde_json::to_value(&n.gov).unwrap();
    json.as_object_mut().unwrap().remove("committees");
    let old: GovernanceState = serde_json::from_value(json).unwrap();
    assert_eq!(old.committee_at(Height(1)), None);
    assert!(!old.is_complete());
    // Saved with the schedule but before each epoch's DA committee and block limit were
    // kept in it: a DA-node or block-limit change it applied would be missing.
    let mut json: serde_json::Value = serde_json::to_value(&n.gov).unwrap();
    for c in json["committees"].as_array_mut().unwrap() {
        for field in ["da_nodes", "da_threshold", "max_batches_per_block"] {
            c.as_object_mut().unwrap().remove(field);
        }
    }
    let old: GovernanceState = serde_json::from_value(json).unwrap();
    assert!(!old.is_complete());
    // Saved before the batch size limit existed: complete, with no limit (no release
    // before it could set one).
    let mut json: serde_json::Value = serde_json::to_value(&n.gov).unwrap();
    for c in json["committees"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("max_batch_bytes");
    }
    json["epoch"]["membership"]["settings"].as_object_mut().unwrap().remove("max_batch_bytes");
    let old: GovernanceState = serde_json::from_value(json).unwrap();
    assert!(old.is_complete());
    assert_eq!(old.committee_at(Height(1)).unwrap().max_batch_bytes, 0);
    assert_eq!(old.epoch().membership.settings.max_batch_bytes, 0);
    assert_eq!(old.digest(), n.gov.digest(), "the same state as one that never lacked it");
}

#[test]
fn a_proposal_passing_at_a_boundary_height_applies_there() {
    let mut n = Net::new(&[]);
    while n.height < L - 2 {
        n.block(vec![]);
    }
    let p = n.propose(0, Action::AddClient { name: "new-wallet".into(), key: Keypair::for_testing(300).public() });
    n.block(vec![p]);
    let votes = vec![n.vote(0, 1, true), n.vote(1, 1, true), n.vote(3, 1, true)];
    let events = n.block(votes);
    assert_eq!(n.height, L);
    assert_eq!(passed(&events, 1), Some(Height(L)));
    assert!(events.contains(&Event::Applied { id: 1, epoch: 1 }));
    assert!(n.gov.epoch().membership.clients.iter().any(|c| c.key == Keypair::for_testing(300).public()));
}

#[test]
fn quorum_and_threshold_decide_at_the_end_of_the_period_or_earlier() {
    // Weights 3, 1, 1, 1 (total 6): quorum 50% = 3, threshold 67% of those voting.
    let mut n = Net::new(&[3, 1, 1, 1]);
    // Proposal 1: only member 1 votes yes: quorum not reached when the period ends.
    let p = n.propose(1, Action::RemoveClient { key: Keypair::for_testing(200).public() });
    n.block(vec![p]);
    let v = n.vote(1, 1, true);
    n.block(vec![v]);
    let mut events = Vec::new();
    for _ in 0..PERIOD {
        events.extend(n.block(vec![]));
    }
    let why = events
        .iter()
        .find_map(|e| match e {
            Event::Rejected { id: 1, why } => Some(why.clone()),
            _ => None,
        })
        .expect("rejected at the period's end");
    assert!(why.contains("quorum"), "{why}");
    assert_eq!(n.gov.proposal(1).unwrap().status, Status::Rejected { at: Height(1 + PERIOD), why });

    // Proposal 2: the heavy member votes no: it can no longer pass, rejected at once.
    let p = n.propose(2, Action::SetParam { param: Param::Fee { chain: ChainId(1) }, value: 3 });
    n.block(vec![p]);
    let v = n.vote(0, 2, false);
    let events = n.block(vec![v]);
    assert!(events.iter().any(|e| matches!(e, Event::Rejected { id: 2, .. })), "{events:?}");

    // Proposal 3: the heavy member alone: 3 of 6 voting is the quorum, 100% yes.
    let p = n.propose(0, Action::SetParam { param: Param::Fee { chain: ChainId(1) }, value: 3 });
    n.block(vec![p]);
    let v = n.vote(0, 3, true);
    let events = n.block(vec![v]);
    assert_eq!(passed(&events, 3), None, "undecided: the others could still outvote it");
    let mut events = Vec::new();
    for _ in 0..PERIOD {
        events.extend(n.block(vec![]));
    }
    assert!(passed(&events, 3).is_some(), "{events:?}");
    while !matches!(n.gov.proposal(3).unwrap().status, Status::Applied { .. }) {
        n.block(vec![]);
    }
    assert_eq!(n.gov.epoch().membership.settings.fees[&ChainId(1)], 3);
}

#[test]
fn a_fee_change_applies_from_the_height_after_its_boundary_and_earlier_heights_keep_the_old_fee() {
    let mut n = Net::new(&[]);
    let genesis_fee = net(&[]).chains[0].fee;
    assert_eq!(n.gov.fee_at(ChainId(1), Height(1)), Some(genesis_fee));
    assert_eq!(n.gov.fee_at(ChainId(9), Height(1)), None, "unknown chain");
    let mut changes = Vec::new();
    for value in [7u64, 11] {
        let p = n.propose(0, Action::SetParam { param: Param::Fee { chain: ChainId(1) }, value });
        n.block(vec![p]);
        let id = n.gov.proposals().map(|p| p.id).max().unwrap();
        let votes: Vec<_> = (0..3).map(|who| n.vote(who, id, true)).collect();
        let events = n.block(votes);
        let boundary = passed(&events, id).expect("passed early");
        // Before the boundary ends, the heights after it still show the old fee: the
        // history answers only what the applied heights decided.
        let old = n.gov.fee_at(ChainId(1), Height(boundary.0 + 1));
        while n.gov.height() < boundary {
            n.block(vec![]);
        }
        assert_eq!(n.gov.fee_at(ChainId(1), boundary), old, "the boundary height keeps the old fee");
        assert_eq!(n.gov.fee_at(ChainId(1), Height(boundary.0 + 1)), Some(value));
        changes.push((boundary, value));
    }
    // Every earlier height answers with the fee it was executed with.
    assert_eq!(n.gov.fee_at(ChainId(1), Height(1)), Some(genesis_fee));
    assert_eq!(n.gov.fee_at(ChainId(1), changes[0].0), Some(genesis_fee));
    assert_eq!(n.gov.fee_at(ChainId(1), Height(changes[0].0.0 + 1)), Some(7));
    assert_eq!(n.gov.fee_at(ChainId(1), changes[1].0), Some(7));
    assert_eq!(n.gov.fee_at(ChainId(1), Height(changes[1].0.0 + 1)), Some(11));
    assert_eq!(n.gov.schedule().serves_from(), Height(1));
    // And from which height each answer holds (the bridge aligns its windows to it).
    let fee = Param::Fee { chain: ChainId(1) };
    let since = |h: Height| n.gov.schedule().since(fee, h);
    assert_eq!(since(changes[0].0), Some(Height(1)));
    assert_eq!(since(Height(changes[0].0.0 + 1)), Some(Height(changes[0].0.0 + 1)));
    assert_eq!(since(changes[1].0), Some(Height(changes[0].0.0 + 1)));
    assert_eq!(since(Height(changes[1].0.0 + 5)), Some(Height(changes[1].0.0 + 1)));
}

#[test]
fn bad_input_is_rejected_with_a_typed_error_and_changes_nothing() {
    let mut n = Net::new(&[]);
    let p = n.propose(0, Action::AddValidator(spec(60)));
    n.block(vec![p]);

    // A vote from a key that is not a member.
    let bound = opened_by(&n.gov, 1);
    let vote = |approve| Entry::Vote { proposal: 1, proposal_tx: bound, approve, valid_until: u64::MAX };
    let stranger = Entry::transaction(&Keypair::for_testing(77), n.scope, n.network, 0, &vote(true)).unwrap();
    n.rejected(stranger, |e| matches!(e, Error::NotMember(_)));
    // A duplicate vote.
    let v = n.vote(1, 1, false);
    n.block(vec![v]);
    let again = n.vote(1, 1, true);
    n.rejected(again, |e| matches!(e, Error::AlreadyVoted { id: 1, .. }));
    // A replayed transaction (its nonce is used).
    let first = Entry::transaction(&member(1), n.scope, n.network, 0, &vote(true)).unwrap();
    n.rejected(first, |e| matches!(e, Error::StaleNonce { nonce: 0, next: 1, .. }));
    // A member's vote signed for another network (the same keys may serve several).
    let elsewhere =
        Entry::transaction(&member(2), TxScope::Network(Digest([9; 32])), Digest([9; 32]), 0, &vote(true)).unwrap();
    n.rejected(elsewhere, |e| matches!(e, Error::WrongNetwork { .. }));
    // The right envelope, but a signature that does not bind the network.
    let unbound = Entry::transaction(&member(2), TxScope::ChainOnly, n.network, 0, &vote(true)).unwrap();
    n.rejected(unbound, |e| matches!(e, Error::BadSignature));
    // A vote on a proposal that never existed.
    let unknown = n.vote(2, 99, true);
    n.rejected(unknown, |e| matches!(e, Error::UnknownProposal(99)));
    // A bad signature.
    let mut forged = n.vote(2, 1, true);
    forged.payload = lamina_primitives::encode(&Envelope { network: n.network, entry: vote(false) }).unwrap();
    n.rejected(forged, |e| matches!(e, Error::BadSignature));
    // Bytes that are not an entry, and a transaction of another chain.
    let junk = Transaction::new_signed(&member(2), n.scope, lamina_governance_core::GOVERNANCE_CHAIN, 50, vec![7; 40]);
    n.rejected(junk, |e| matches!(e, Error::Malformed(_)));
    let other = Transaction::new_signed(&member(2), n.scope, ChainId(1), 51, vec![]);
    n.rejected(other, |e| matches!(e, Error::NotGovernance(_)));

    // Proposals with a malformed key, name, address, value or reason.
    let bad_key = n.propose(2, Action::AddClient { name: "x".into(), key: invalid_key() });
    n.rejected(bad_key, |e| matches!(e, Error::MalformedKey(_)));
    let bad_name = n.propose(2, Action::AddValidator(NodeSpec { name: "two words".into(), ..spec(61) }));
    n.rejected(bad_name, |e| matches!(e, Error::InvalidAction(_)));
    let bad_addr = n.propose(2, Action::AddDaNode(NodeSpec { addr: "localhost:1".into(), ..spec(62) }));
    n.rejected(bad_addr, |e| matches!(e, Error::InvalidAction(_)));
    let bad_value = n.propose(2, Action::SetParam { param: Param::ChallengeWindow, value: 0 });
    n.rejected(bad_value, |e| matches!(e, Error::InvalidAction(_)));
    for bytes in [1, Settings::MIN_BATCH_BYTES - 1, Settings::MAX_BATCH_BYTES + 1] {
        let bad_batch = n.propose(2, Action::SetParam { param: Param::MaxBatchBytes, value: bytes });
        n.rejected(bad_batch, |e| matches!(e, Error::InvalidAction(_)));
    }
    let no_chain = n.propose(2, Action::SetParam { param: Param::Fee { chain: ChainId(9) }, value: 1 });
    n.rejected(no_chain, |e| matches!(e, Error::InvalidAction(_)));
    let long_reason = Entry::Propose {
        action: Action::RemoveValidator { key: member(3).public() },
        reason: "x".repeat(281),
        valid_until: u64::MAX,
    };
    let long = n.tx(2, long_reason);
    n.rejected(long, |e| matches!(e, Error::InvalidAction(_)));
    // Actions that do not apply to the membership.
    let taken = n.propose(2, Action::AddDaNode(NodeSpec { key: member(3).public(), ..spec(63) }));
    n.rejected(taken, |e| matches!(e, Error::Inapplicable(_)));
    let absent = n.propose(2, Action::RemoveValidator { key: Keypair::for_testing(64).public() });
    n.rejected(absent, |e| matches!(e, Error::Inapplicable(_)));

    // A vote after the period: proposal 1 closed (rejected: 1 no, no quorum of yes).
    while n.gov.proposal(1).unwrap().status == Status::Open {
        n.block(vec![]);
    }
    let late = n.vote(3, 1, true);
    n.rejected(late, |e| matches!(e, Error::NotOpen { id: 1, .. }));
}

#[test]
fn a_rejected_transaction_cannot_be_replayed_into_meaning_later() {
    let mut n = Net::new(&[]);
    // A vote on proposal 1 before it exists is rejected, and its nonce stays unused...
    let early =
        n.tx(1, Entry::Vote { proposal: 1, proposal_tx: Digest([9; 32]), approve: true, valid_until: u64::MAX });
    n.rejected(early.clone(), |e| matches!(e, Error::UnknownProposal(1)));
    // ...but once proposal 1 opens, the same signed vote does not count for it: it
    // named another opening transaction.
    let p = n.propose(0, Action::RemoveClient { key: Keypair::for_testing(200).public() });
    n.block(vec![p]);
    n.rejected(early, |e| matches!(e, Error::WrongProposal { id: 1 }));
    // An entry that reaches the log after its last valid height (late, or replayed) is
    // rejected: it expired.
    let late = n.tx(
        2,
        Entry::Propose {
            action: Action::RemoveClient { key: Keypair::for_testing(200).public() },
            reason: String::new(),
            valid_until: n.height + 1,
        },
    );
    n.block(vec![]);
    n.rejected(late, |e| matches!(e, Error::Expired { .. }));
}

#[test]
fn members_who_joined_after_a_proposal_opened_do_not_vote_on_it() {
    // Member 9 joins with weight 2 at the first boundary and votes on a later proposal.
    let mut n = Net::new(&[]);
    let p = n.propose(0, Action::SetMemberWeight { name: "org-9".into(), key: member(9).public(), weight: 2 });
    n.block(vec![p]);
    let votes = vec![n.vote(0, 1, true), n.vote(1, 1, true), n.vote(2, 1, true)];
    n.block(votes);
    while n.gov.epoch().number == 0 {
        n.block(vec![]);
    }
    assert_eq!(n.gov.epoch().membership.weight(&member(9).public()), 2);
    assert_eq!(n.gov.epoch().membership.total_weight(), 6);
    let p = n.propose(1, Action::RemoveClient { key: Keypair::for_testing(200).public() });
    n.block(vec![p]);
    let v = n.vote(9, 2, true);
    let events = n.block(vec![v]);
    assert!(events.iter().any(|e| matches!(e, Event::Voted { id: 2, weight: 2, .. })), "{events:?}");

    // A proposal opened before a member joined: the member is not in its electorate.
    let mut m = Net::new(&[]);
    while m.height < L - 3 {
        m.block(vec![]);
    }
    let add = m.propose(0, Action::SetMemberWeight { name: "org-9".into(), key: member(9).public(), weight: 1 });
    m.block(vec![add]);
    let votes = vec![m.vote(0, 1, true), m.vote(1, 1, true), m.vote(2, 1, true)];
    m.block(votes);
    let early = m.propose(3, Action::RemoveClient { key: Keypair::for_testing(200).public() });
    m.block(vec![early]);
    m.block(vec![]); // height L: the boundary; member 9 joins after it.
    assert_eq!(m.gov.epoch().number, 1);
    assert_eq!(m.gov.epoch().membership.weight(&member(9).public()), 1);
    let v = m.vote(9, 2, true);
    m.rejected(v, |e| matches!(e, Error::NotInElectorate { id: 2, .. }));
}

#[test]
fn a_passed_action_that_no_longer_applies_fails_and_the_others_apply() {
    let mut n = Net::new(&[]);
    let target = member(3).public();
    let a = n.propose(0, Action::RemoveValidator { key: target });
    let b = n.propose(1, Action::RemoveValidator { key: target });
    let c = n.propose(2, Action::SetParam { param: Param::MaxBatchesPerBlock, value: 64 });
    n.block(vec![a, b, c]);
    let mut votes = Vec::new();
    for id in 1..=3 {
        for who in 0..3 {
            votes.push(n.vote(who, id, true));
        }
    }
    n.block(votes);
    let mut events = Vec::new();
    while n.gov.epoch().number == 0 {
        events.extend(n.block(vec![]));
    }
    assert!(events.contains(&Event::Applied { id: 1, epoch: 1 }));
    assert!(events.iter().any(|e| matches!(e, Event::Failed { id: 2, reason } if reason.contains("not a validator"))));
    assert!(events.contains(&Event::Applied { id: 3, epoch: 1 }));
    let m = &n.gov.epoch().membership;
    assert_eq!(m.validators.len(), 3);
    assert_eq!(m.settings.max_batches_per_block, 64);
    // Voting members are not the committee: the removed validator keeps its vote until
    // a SetMemberWeight removes it.
    assert_eq!(m.weight(&target), 1);
}

#[test]
fn the_last_validator_cannot_be_removed() {
    let mut g = net(&[1]);
    g.validators.truncate(1);
    let mut gov = GovernanceState::new(&g);
    let tx = Entry::transaction(
        &member(0),
        g.tx_scope(),
        g.network_id(),
        0,
        &Entry::Propose {
            action: Action::RemoveValidator { key: member(0).public() },
            reason: String::new(),
            valid_until: u64::MAX,
        },
    )
    .unwrap();
    let events = gov.apply_block(Height(1), &[tx]).unwrap();
    assert!(matches!(&events[..], [Event::TxRejected { error: Error::Inapplicable(_), .. }]), "{events:?}");
}

#[test]
fn open_proposals_are_bounded_per_member_and_closed_ones_are_forgotten() {
    let mut n = Net::new(&[]);
    let mut txs = Vec::new();
    for i in 0..MAX_OPEN_PER_MEMBER as u64 {
        txs.push(
            n.propose(0, Action::AddClient { name: format!("c{i}"), key: Keypair::for_testing(400 + i).public() }),
        );
    }
    n.block(txs);
    let one_more = n.propose(0, Action::AddClient { name: "c".into(), key: Keypair::for_testing(499).public() });
    n.rejected(one_more, |e| matches!(e, Error::TooManyProposals(_)));

    // Many proposals, each rejected by two no votes: the kept ones stay bounded.
    let mut m = Net::new(&[]);
    for round in 0..(KEEP_CLOSED as u64 + 40) {
        let p = m.propose(round % 4, Action::RemoveClient { key: Keypair::for_testing(200).public() });
        let id = round + 1;
        // Votes in the proposal's own block name its transaction directly.
        let opened = p.id().0;
        let no = vec![p, m.vote_for(0, id, opened, false), m.vote_for(1, id, opened, false)];
        m.block(no);
    }
    assert!(m.gov.proposals().count() <= KEEP_CLOSED);
    assert!(m.gov.proposal(1).is_none(), "the oldest closed proposal is forgotten");
    assert!(m.gov.proposal(KEEP_CLOSED as u64 + 40).is_some());
}

#[test]
fn blocks_must_come_in_height_order() {
    let mut gov = GovernanceState::new(&net(&[]));
    gov.apply_block(Height(5), &[]).unwrap();
    assert_eq!(gov.apply_block(Height(5), &[]), Err(Error::OutOfOrder { height: Height(5), last: Height(5) }));
    assert!(gov.apply_block(Height(4), &[]).is_err());
}

/// One random governance transaction.
#[derive(Clone, Debug)]
enum Op {
    Propose { who: u64, kind: u8, target: u64 },
    Vote { who: u64, proposal: u64, approve: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..6, 0u8..6, 0u64..8).prop_map(|(who, kind, target)| Op::Propose { who, kind, target }),
        (0u64..6, 1u64..12, any::<bool>()).prop_map(|(who, proposal, approve)| Op::Vote { who, proposal, approve }),
    ]
}

fn action(kind: u8, target: u64) -> Action {
    match kind {
        0 => Action::AddValidator(spec(500 + target)),
        1 => Action::RemoveValidator { key: member(target % 5).public() },
        2 => Action::AddClient { name: format!("c{target}"), key: Keypair::for_testing(600 + target).public() },
        3 => Action::RemoveDaNode { key: Keypair::for_testing(100 + target % 5).public() },
        4 => Action::SetParam { param: Param::Fee { chain: ChainId(1) }, value: target },
        _ => {
            Action::SetMemberWeight { name: format!("m{target}"), key: member(target % 6).public(), weight: target % 3 }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Replaying the same log gives the same state, whether the heights without
    /// governance transactions are applied or skipped; membership changes only at
    /// boundaries; weights never leave the electorate's total.
    #[test]
    fn replay_is_deterministic_and_epochs_change_only_at_boundaries(
        blocks in proptest::collection::vec((1u64..4, proptest::collection::vec(op(), 0..4)), 1..40)
    ) {
        let g = net(&[]);
        let mut full = GovernanceState::new(&g);
        let mut sparse = GovernanceState::new(&g);
        let mut nonces = [0u64; 6];
        let mut h = 0u64;
        for (gap, ops) in blocks {
            // Heights in the gap carry no governance transaction: `full` applies them,
            // `sparse` skips them.
            for _ in 1..gap {
                h += 1;
                let before = full.epoch().clone();
                full.apply_block(Height(h), &[]).unwrap();
                if full.epoch().membership != before.membership {
                    prop_assert_eq!(h % L, 0);
                }
            }
            h += 1;
            let txs: Vec<Transaction> = ops.iter().map(|o| {
                let (who, entry) = match o {
                    Op::Propose { who, kind, target } => (*who, Entry::Propose { action: action(*kind, *target), reason: String::new(), valid_until: u64::MAX }),
                    Op::Vote { who, proposal, approve } => {
                        let proposal_tx = opened_by(&full, *proposal);
                        (*who, Entry::Vote { proposal: *proposal, proposal_tx, approve: *approve, valid_until: u64::MAX })
                    }
                };
                let n = nonces[who as usize];
                nonces[who as usize] += 1;
                Entry::transaction(&member(who), g.tx_scope(), g.network_id(), n, &entry).unwrap()
            }).collect();
            let before = full.epoch().clone();
            full.apply_block(Height(h), &txs).unwrap();
            if full.epoch().membership != before.membership {
                prop_assert_eq!(h % L, 0);
            }
            sparse.apply_block(Height(h), &txs).unwrap();
            prop_assert_eq!(full.digest(), sparse.digest());
            prop_assert_eq!(full.epoch().number, h / L);
            for p in full.proposals() {
                prop_assert!(p.yes + p.no <= p.total_weight());
            }
        }
    }
}
