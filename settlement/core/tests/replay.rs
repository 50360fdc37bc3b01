#![allow(clippy::unwrap_used)]
//! Determinism across restarts: a random log replayed in one go equals the same log
//! processed with restarts (a fresh state from genesis re-fed the prefix) at random
//! points: same events for every height, same state root.

mod common;

use std::collections::HashMap;

use common::*;
use lamina_interfaces::CheckpointClaim;
use lamina_primitives::{ChainId, Digest, Height, Transaction};
use lamina_settlement_core::{
    Challenge, ClaimStatus, Entry, Event, Params, SETTLEMENT_CHAIN, SettlementState, WitnessRef,
};
use proptest::prelude::*;

/// splitmix64: a tiny deterministic generator driven by the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Drives a random but plausible settlement log: honest and lying claims extending
/// heads, pending claims or genesis; two consecutive claims of a claimer swapped (in
/// one height, or the parent a height late: the child is held); good and forged
/// challenges; bad-encoding proofs; garbage and replayed transactions.
fn random_log(seed: u64, heights: u64) -> Net {
    let mut rng = Rng(seed);
    let mut net = Net::default();
    let mut known: HashMap<Digest, CheckpointClaim> = HashMap::new();
    let mut sent: Vec<Transaction> = Vec::new();
    let mut late: Vec<Transaction> = Vec::new();
    for _ in 0..heights {
        let h = net.next_height();
        let mut chains = Vec::new();
        if rng.chance(50) {
            chains.push((CHAIN, 1 + rng.below(3) as usize, rng.chance(92)));
        }
        if rng.chance(30) {
            chains.push((OTHER_CHAIN, 1 + rng.below(2) as usize, rng.chance(92)));
        }
        let mut txs = std::mem::take(&mut late);
        for _ in 0..rng.below(4) {
            let chain = if rng.chance(70) { CHAIN } else { OTHER_CHAIN };
            match rng.below(100) {
                0..45 => {
                    let head = net.st.finalized(chain).and_then(|a| known.get(&a.claim)).cloned();
                    let pending: Vec<CheckpointClaim> = net
                        .st
                        .claims(chain)
                        .filter(|r| r.status == ClaimStatus::Pending)
                        .map(|r| r.claim.clone())
                        .collect();
                    // Claims finalized as duplicates of the head are parents like the head.
                    let head_dups: Vec<CheckpointClaim> = net
                        .st
                        .claims(chain)
                        .filter(|r| {
                            r.duplicate_of.is_some()
                                && net
                                    .st
                                    .finalized(chain)
                                    .is_some_and(|a| a.claim == r.duplicate_of.unwrap_or_default())
                        })
                        .map(|r| r.claim.clone())
                        .collect();
                    let parent = match rng.below(4) {
                        0 => head,
                        1 if !pending.is_empty() => Some(pending[rng.below(pending.len() as u64) as usize].clone()),
                        2 if !head_dups.is_empty() => {
                            Some(head_dups[rng.below(head_dups.len() as u64) as usize].clone())
                        }
                        _ => None,
                    };
                    // Another claimer re-claiming a pending claim's range from the same
                    // parent (an equivalent claim when both are honest).
                    if rng.chance(25) && !pending.is_empty() {
                        let p = pending[rng.below(pending.len() as u64) as usize].clone();
                        let parent = known.get(&p.parent).cloned();
                        if p.parent.is_zero() || parent.is_some() {
                            let k = key(1 + rng.below(5));
                            let c = net.claim(&k, chain, parent.as_ref(), p.to.0);
                            known.insert(c.id(), c.clone());
                            txs.push(net.tx(&k, &Entry::Claim(c)));
                            continue;
                        }
                    }
                    let from = parent.as_ref().map_or(0, |p| p.to.0);
                    if from + 1 >= h {
                        continue;
                    }
                    let to = from + 1 + rng.below(h - 1 - from);
                    let k = key(1 + rng.below(5));
                    let lie = rng.chance(30);
                    let tag = rng.next();
                    let c = net.claim_with(&k, chain, parent.as_ref(), to, |s| {
                        if lie && !s.is_empty() {
                            let i = (tag % s.len() as u64) as usize;
                            s[i].state_root = TOY.hash(&tag.to_le_bytes());
                        }
                    });
                    known.insert(c.id(), c.clone());
                    let tx = net.tx(&k, &Entry::Claim(c.clone()));
                    // Sometimes the claimer's next claim overtakes this one.
                    if rng.chance(20) && c.to.0 + 1 < h {
                        let to = c.to.0 + 1 + rng.below(h - 1 - c.to.0);
                        let child = net.claim(&k, chain, Some(&c), to);
                        known.insert(child.id(), child.clone());
                        txs.push(net.tx(&k, &Entry::Claim(child)));
                        if rng.chance(50) {
                            late.push(tx);
                        } else {
                            txs.push(tx);
                        }
                    } else {
                        txs.push(tx);
                    }
                }
                45..75 => {
                    let pending: Vec<(Digest, usize)> = net
                        .st
                        .claims(chain)
                        .filter(|r| r.status == ClaimStatus::Pending && r.included_at.0 < h)
                        .map(|r| (r.id, r.claim.steps.len()))
                        .collect();
                    if pending.is_empty() {
                        continue;
                    }
                    let (id, steps) = pending[rng.below(pending.len() as u64) as usize];
                    let step = rng.below(steps as u64) as u32;
                    let entry = if rng.chance(70) {
                        net.challenge(&id, step)
                    } else {
                        Entry::Challenge(Challenge {
                            claim: id,
                            step,
                            witness: WitnessRef::Inline(vec![rng.next() as u8; 8]),
                        })
                    };
                    let k = key(11 + rng.below(5));
                    txs.push(net.tx(&k, &entry));
                }
                75..82 => {
                    let recorded: Vec<Digest> = net.data.values().flat_map(|d| d.roots.clone()).collect();
                    if recorded.is_empty() {
                        continue;
                    }
                    let root = recorded[rng.below(recorded.len() as u64) as usize];
                    let proof = if rng.chance(50) { bad_encoding_proof(&root) } else { vec![1, 2, 3] };
                    txs.push(net.tx(&key(16), &Entry::BadEncoding { data_root: root, proof }));
                }
                82..90 => {
                    txs.push(Transaction::new_signed(
                        &key(17),
                        net.scope,
                        SETTLEMENT_CHAIN,
                        rng.next(),
                        rng.next().to_le_bytes().to_vec(),
                    ));
                }
                _ => {
                    if !sent.is_empty() {
                        txs.push(sent[rng.below(sent.len() as u64) as usize].clone());
                    }
                }
            }
        }
        sent.extend(txs.iter().cloned());
        net.block(&chains, txs);
    }
    net
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn restarts_at_random_points_replay_to_the_same_state(
        seed in any::<u64>(),
        heights in 20u64..70,
        splits in proptest::collection::vec(0usize..70, 0..4),
    ) {
        let net = random_log(seed, heights);
        net.assert_conserved();
        let params = Params::from_genesis(&net.genesis);
        let mut st = SettlementState::new(params.clone());
        let mut restarts = 0;
        for (k, hl) in net.log.iter().enumerate() {
            if splits.contains(&k) {
                // Restart: a fresh state from genesis, re-fed the prefix.
                st = SettlementState::new(params.clone());
                for (j, old) in net.log[..k].iter().enumerate() {
                    prop_assert_eq!(&apply_to(&mut st, old), &net.events[j]);
                }
                restarts += 1;
            }
            prop_assert_eq!(&apply_to(&mut st, hl), &net.events[k], "height {}", hl.height);
        }
        prop_assert_eq!(st.state_root(), net.st.state_root());
        prop_assert_eq!(st.stats(), net.st.stats());
        prop_assert_eq!(st.height(), Height(net.log.len() as u64));
        for chain in [CHAIN, OTHER_CHAIN] {
            prop_assert_eq!(st.anchors_root(chain), net.st.anchors_root(chain));
            if let Some(a) = st.finalized(chain) {
                prop_assert!(st.anchor_proof_at(chain, a.index).unwrap().verify(&st.anchors_root(chain)).is_ok());
            }
        }
        let _ = restarts;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A node restarted from a snapshot (the state's image, encoded and decoded as on
    /// disk) instead of a replay from genesis emits the same events and reaches the
    /// same state: the image holds everything the rules read.
    #[test]
    fn restarts_from_snapshot_images_reach_the_same_state(
        seed in any::<u64>(),
        heights in 20u64..70,
        splits in proptest::collection::vec(0usize..70, 1..4),
    ) {
        let net = random_log(seed, heights);
        let params = Params::from_genesis(&net.genesis);
        let mut st = SettlementState::new(params.clone());
        for (k, hl) in net.log.iter().enumerate() {
            if splits.contains(&k) {
                let image = st.image();
                let bytes = lamina_primitives::codec::encode(&image).unwrap();
                let loaded = SettlementState::from_image(params.clone(), lamina_primitives::codec::decode(&bytes).unwrap())
                    .unwrap();
                prop_assert_eq!(loaded.state_root(), st.state_root());
                prop_assert_eq!(loaded.image(), image);
                prop_assert_eq!(loaded.serves_from(), st.serves_from());
                st = loaded;
            }
            prop_assert_eq!(&apply_to(&mut st, hl), &net.events[k], "height {}", hl.height);
            // This node forgets what the rules no longer need (the reference never does).
            st.forget_anchors(st.anchor_floor());
            prop_assert!(st.serves_from() <= st.anchor_floor());
        }
        prop_assert_eq!(st.state_root(), net.st.state_root());
        prop_assert_eq!(st.stats(), net.st.stats());
        let floor = st.anchor_floor();
        for chain in [CHAIN, OTHER_CHAIN] {
            prop_assert_eq!(st.anchors_root(chain), net.st.anchors_root(chain));
            prop_assert_eq!(st.finalized(chain), net.st.finalized(chain), "the head is always kept");
            // Every anchor a step at or above the floor may use is kept, identical, and
            // proven against the same root.
            for i in 0.. {
                let Some(full) = net.st.anchor_root(chain, i) else { break };
                match st.anchor_root(chain, i) {
                    Some(kept) => {
                        prop_assert_eq!(kept, full);
                        prop_assert_eq!(st.anchor_proof_at(chain, i), net.st.anchor_proof_at(chain, i));
                    }
                    None => prop_assert!(
                        full.usable_until.is_some_and(|u| u < floor),
                        "anchor {} forgotten while usable at {}", i, floor
                    ),
                }
            }
        }
    }
}

/// A log where one honest claimer per chain claims every `every` heights with data
/// (every claim finalizes a window later: many anchors), with some empty heights.
fn steady_log(seed: u64, heights: u64, every: u64) -> Net {
    let mut rng = Rng(seed);
    let mut net = Net::default();
    let claimers = [(CHAIN, key(1)), (OTHER_CHAIN, key(2))];
    let mut parents: [Option<CheckpointClaim>; 2] = [None, None];
    for _ in 0..heights {
        let mut chains = vec![(CHAIN, 1 + rng.below(2) as usize, true)];
        if rng.chance(60) {
            chains.push((OTHER_CHAIN, 1, true));
        }
        if rng.chance(10) {
            chains.clear();
        }
        let h = net.next_height();
        let mut txs = Vec::new();
        if h > 1 && (h - 1).is_multiple_of(every) {
            for (i, (chain, k)) in claimers.iter().enumerate() {
                let c = net.claim(k, *chain, parents[i].as_ref(), h - 1);
                if c.steps.is_empty() {
                    continue;
                }
                txs.push(net.tx(k, &Entry::Claim(c.clone())));
                parents[i] = Some(c);
            }
        }
        net.block(&chains, txs);
    }
    net
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A node that forgets anchors (below the rules' floor, restarting from snapshot
    /// images now and then) emits the same events and reaches the same state root as
    /// one that keeps every anchor; every anchor a step at or above the floor may use
    /// is kept, identical, and proven against the same root; and what it keeps stays
    /// bounded by the window.
    #[test]
    fn forgetting_anchors_changes_nothing_a_step_can_see(
        seed in any::<u64>(),
        every in 1u64..4,
        splits in proptest::collection::vec(0usize..300, 0..4),
    ) {
        let net = steady_log(seed, 300, every);
        let params = Params::from_genesis(&net.genesis);
        let mut st = SettlementState::new(params.clone());
        let mut most = 0;
        for (k, hl) in net.log.iter().enumerate() {
            if splits.contains(&k) {
                let bytes = lamina_primitives::codec::encode(&st.image()).unwrap();
                let loaded = SettlementState::from_image(params.clone(), lamina_primitives::codec::decode(&bytes).unwrap())
                    .unwrap();
                prop_assert_eq!(loaded.state_root(), st.state_root());
                prop_assert_eq!(loaded.serves_from(), st.serves_from());
                st = loaded;
            }
            prop_assert_eq!(&apply_to(&mut st, hl), &net.events[k], "height {}", hl.height);
            st.forget_anchors(st.anchor_floor());
            prop_assert!(st.serves_from() <= st.anchor_floor());
            most = most.max(st.anchors_kept());
        }
        prop_assert_eq!(st.state_root(), net.st.state_root());
        let floor = st.anchor_floor();
        let mut total = 0;
        for chain in [CHAIN, OTHER_CHAIN] {
            prop_assert_eq!(st.anchors_root(chain), net.st.anchors_root(chain));
            prop_assert_eq!(st.finalized(chain), net.st.finalized(chain), "the head is always kept");
            for i in 0.. {
                let Some(full) = net.st.anchor_root(chain, i) else { break };
                total += 1;
                match st.anchor_root(chain, i) {
                    Some(kept) => {
                        prop_assert_eq!(kept, full);
                        prop_assert_eq!(st.anchor_proof_at(chain, i), net.st.anchor_proof_at(chain, i));
                        prop_assert!(st.anchor_proof_at(chain, i).unwrap().verify(&st.anchors_root(chain)).is_ok());
                    }
                    None => prop_assert!(
                        full.usable_until.is_some_and(|u| u < floor),
                        "anchor {} forgotten while usable at {}", i, floor
                    ),
                }
            }
        }
        // ~300 / every anchors per chain, of which a window's worth (W = 10 heights
        // after the next anchor, plus the claims' own window) stays.
        prop_assert!(total >= 100, "{} anchors", total);
        prop_assert!(most <= 2 * (3 * W as usize + 4), "{} anchors kept at most, of {}", most, total);
        prop_assert!(st.anchor(CHAIN, 0).is_none());
    }
}

/// An image that does not fit the genesis or is inconsistent is refused with the
/// reason, not loaded.
#[test]
fn inconsistent_images_are_refused() {
    let net = random_log(3, 80);
    let params = Params::from_genesis(&net.genesis);
    let good = net.st.image();
    assert!(!good.claims.is_empty() && !good.accounts.is_empty());
    let refused = |image: lamina_settlement_core::StateImage| {
        SettlementState::from_image(params.clone(), image).unwrap_err().to_string()
    };
    // Money from nowhere.
    let mut rich = good.clone();
    rich.accounts[0].1.free += 1;
    assert!(refused(rich).contains("supply"));
    // A claim that a chain's pending list names is missing.
    let mut lost = good.clone();
    let pending: Vec<Digest> = lost.chains.iter().flat_map(|c| c.pending.iter().map(|(_, d)| *d)).collect();
    let terminal: Vec<Digest> = lost.chains.iter().flat_map(|c| c.terminal.iter().copied()).collect();
    let victim = pending.first().or(terminal.first()).copied().unwrap();
    lost.claims.retain(|c| c.id != victim);
    assert!(refused(lost).contains("unknown claim"));
    // Another genesis's chain parameters.
    let mut other = good.clone();
    other.chains[0].params = Digest::ZERO;
    assert!(refused(other).contains("other ledger parameters"));
    // A chain missing.
    let mut fewer = good;
    fewer.chains.pop();
    assert!(refused(fewer).contains("chains"));
    // Anchors that are not the tree's leaves, a gap in the anchors, a damaged tree.
    let mut st = SettlementState::new(params.clone());
    let steady = steady_log(5, 120, 2);
    for hl in &steady.log {
        apply_to(&mut st, hl);
        st.forget_anchors(st.anchor_floor());
    }
    let good = st.image();
    assert!(good.chains[0].anchors.len() >= 2 && good.chains[0].anchors[0].index > 0);
    assert!(SettlementState::from_image(params.clone(), good.clone()).is_ok());
    let mut forged = good.clone();
    forged.chains[0].anchors[1].state_root = Digest([7; 32]);
    let why = |image, case: &str| SettlementState::from_image(params.clone(), image).expect_err(case).to_string();
    assert!(why(forged, "forged").contains("is not the tree's leaf"));
    // (Dropping the oldest kept anchor is consistent: it is what forgetting one more
    // does. Dropping one in the middle is not.)
    let mut gap = good.clone();
    gap.chains[0].anchors.remove(1);
    assert!(why(gap, "gap").contains("the tree has"));
    let mut cut = good;
    cut.chains[0].tree[0].nodes.pop();
    assert!(why(cut, "cut").contains("anchors tree"));
}

/// The random logs exercise every path at least once over a few seeds (guards the
/// generator against silently testing nothing).
#[test]
fn random_logs_cover_the_interesting_paths() {
    let mut totals = lamina_settlement_core::Stats::default();
    let (mut held, mut released) = (0, 0);
    for seed in 0..6 {
        let net = random_log(seed, 80);
        let events: Vec<&Event> = net.events.iter().flatten().collect();
        let held_ids: Vec<Digest> = events
            .iter()
            .filter_map(|e| match e {
                Event::ClaimHeld { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        held += held_ids.len();
        released +=
            events.iter().filter(|e| matches!(e, Event::ClaimAccepted { id, .. } if held_ids.contains(id))).count();
        let s = net.st.stats();
        totals.finalized += s.finalized;
        totals.duplicates += s.duplicates;
        totals.slashed += s.slashed;
        totals.orphaned += s.orphaned;
        totals.challenges_ok += s.challenges_ok;
        totals.challenges_failed += s.challenges_failed;
        totals.rejected += s.rejected;
    }
    assert!(totals.finalized > 0, "{totals:?}");
    assert!(totals.duplicates > 0, "{totals:?}");
    assert!(totals.slashed > 0, "{totals:?}");
    assert!(totals.orphaned > 0, "{totals:?}");
    assert!(totals.challenges_failed > 0, "{totals:?}");
    assert!(totals.rejected > 0, "{totals:?}");
    assert!(held > 0 && released > 0, "held {held}, released {released}");
    let _ = ChainId(0);
}
