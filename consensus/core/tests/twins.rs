//! Twins (Bano et al., "Twins: BFT Systems Made Robust"): two instances of one validator
//! run the honest code with the same key, which yields equivocation, double votes and
//! lost locks from correct code; the network is partitioned per round.
//!
//! Scenario space, enumerated exhaustively for n = 4 with one twin:
//!
//! * which validator is twinned (4 choices; leaders rotate round robin, so this fixes in
//!   which round the twin leads), the two twin instances holding different batches so
//!   that they propose different blocks;
//! * for each round (view) 1..=4, a partition of the 5 instances into at most two groups
//!   (16 choices). A message is routed by the partition of the round its sender was in
//!   when it sent it; messages of rounds past 4 are dropped. 4 x 16^4 = 262,144
//!   scenarios.
//!
//! Runs branch lazily: a run pauses before delivering the first message of a round
//! whose partition is not chosen yet and is cloned once per choice, so a shared prefix
//! runs once, and a round that no instance ever reaches is not enumerated (all its
//! choices behave identically). Each leaf is checked for agreement among the honest
//! validators and for honest non-equivocation; the count of covered 4-round scenarios
//! is asserted to be the whole space.
#![allow(clippy::unwrap_used)]

mod sim;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sim::{Memo, Scenario, Sim, TwinsRouting};

const ROUNDS: usize = 4;
/// How long a run continues after its last branch point (simulated): one view at its
/// slowest (notarization timeout 400 ms, then the nullify quorum) plus slack.
const TAIL: Duration = Duration::from_millis(700);

/// All partitions of `m` instances into at most two groups (instance 0 in group 0).
fn partitions(m: usize) -> Vec<Vec<u8>> {
    (0..1u32 << (m - 1))
        .map(|mask| (0..m).map(|i| if i == 0 { 0 } else { ((mask >> (i - 1)) & 1) as u8 }).collect())
        .collect()
}

#[derive(Default)]
struct Tally {
    leaves: u64,
    covered: u64,
    events: u64,
    max_height: usize,
    violations: Vec<String>,
}

fn explore(mut sim: Sim, parts: &[Vec<u8>], tally: &mut Tally, check: &dyn Fn(&Sim) -> Result<(), String>) {
    let end = sim.now + TAIL;
    match sim.run_until_round(end, ROUNDS) {
        Some(_) => {
            for p in parts {
                let mut branch = sim.clone();
                branch.twins_rounds.push(p.clone());
                explore(branch, parts, tally, check);
            }
        }
        None => {
            tally.leaves += 1;
            tally.covered += (parts.len() as u64).pow((ROUNDS - sim.twins_rounds.len()) as u32);
            tally.events += sim.events_processed;
            tally.max_height = tally.max_height.max(sim.max_height());
            if let Err(e) = check(&sim)
                && tally.violations.len() < 10
            {
                tally.violations.push(format!("partitions {:?}: {e}", sim.twins_rounds));
            }
        }
    }
}

fn twins_scenario(n: usize, twins: Vec<usize>) -> Scenario {
    let mut s = Scenario::new(twins.iter().map(|t| *t as u64).sum(), n);
    s.twins_routing = Some(TwinsRouting);
    s.batch_every = None;
    s.liveness_bound = None;
    s.end = Duration::from_secs(60);
    // Within a round the partition is fixed, so re-sending cannot reach anyone new:
    // a retry period longer than the tail keeps runs short without losing behaviours.
    s.config.retry_interval = Duration::from_millis(800);
    // Instance indices: identities in order, a twinned identity twice in a row.
    let mut inst = 0;
    for id in 0..n {
        if twins.contains(&id) {
            s.initial_batches.extend([inst, inst + 1]);
            inst += 2;
        } else {
            inst += 1;
        }
    }
    s.twins = twins;
    s
}

/// Enumerates every scenario with validator `twin` twinned; returns the tally.
fn enumerate_twin(twin: usize) -> Tally {
    let memo = Arc::new(Memo::default());
    let parts = partitions(5);
    assert_eq!(parts.len(), 16);
    let sim = Sim::new(twins_scenario(4, vec![twin]), memo.clone());
    let mut tally = Tally::default();
    let check = |s: &Sim| {
        s.check_agreement()?;
        s.check_final_chain()?;
        s.check_validity(&mut BTreeSet::new())?;
        s.check_no_honest_equivocation()
    };
    explore(sim, &parts, &mut tally, &check);
    assert!(tally.violations.is_empty(), "twin {twin}: safety violated:\n{}", tally.violations.join("\n"));
    assert_eq!(tally.covered, 16u64.pow(ROUNDS as u32), "twin {twin}: scenario space not covered");
    // The space includes fault-free rounds, so some runs must finalize blocks.
    assert!(tally.max_height >= 2, "no run finalized anything: the harness is not exercising the protocol");
    println!(
        "twin {twin}: {} distinct runs cover {} scenarios; {} events; max height {}",
        tally.leaves, tally.covered, tally.events, tally.max_height
    );
    println!("memo (signed, checked): {:?}", memo.sizes());
    tally
}

// One test per twinned validator (4 x 65,536 = 262,144 scenarios), so they run in parallel.
#[test]
fn twins_validator0_all_scenarios_up_to_4_rounds_are_safe() {
    enumerate_twin(0);
}

#[test]
fn twins_validator1_all_scenarios_up_to_4_rounds_are_safe() {
    enumerate_twin(1);
}

#[test]
fn twins_validator2_all_scenarios_up_to_4_rounds_are_safe() {
    enumerate_twin(2);
}

#[test]
fn twins_validator3_all_scenarios_up_to_4_rounds_are_safe() {
    enumerate_twin(3);
}

/// Negative control: with two twins (more than f = 1 faulty identities) the quorum
/// intersection argument no longer holds, and the checker must see the fork.
#[test]
fn two_twins_break_quorum_intersection_and_the_checker_sees_the_fork() {
    let memo = Arc::new(Memo::default());
    // Identities 0 and 1 twinned: instances [0, 0', 1, 1', 2, 3]. Partition
    // {0, 1, 2} | {0', 1', 3} in every round: each side holds three distinct keys, a
    // quorum; the leader of view 1 is identity 1, whose two instances propose
    // different blocks.
    let split = vec![0u8, 1, 0, 1, 0, 1];
    let mut sim = Sim::new(twins_scenario(4, vec![0, 1]), memo);
    for _ in 0..ROUNDS {
        sim.twins_rounds.push(split.clone());
    }
    assert!(sim.run_until_round(Duration::from_secs(3), ROUNDS).is_none());
    let honest = sim.honest();
    assert_eq!(honest.len(), 2);
    assert!(!sim.insts[honest[0]].log.is_empty() && !sim.insts[honest[1]].log.is_empty(), "both sides should finalize");
    let verdict = sim.check_agreement();
    assert!(
        verdict.is_err(),
        "the checker missed a fork between {:?} and {:?}",
        sim.insts[honest[0]].log[0].block.digest(),
        sim.insts[honest[1]].log[0].block.digest()
    );

    // And a small exhaustive search over fixed partitions finds forks too.
    let parts = partitions(6);
    let mut forks = 0;
    for p in &parts {
        let mut sim = Sim::new(twins_scenario(4, vec![0, 1]), Arc::new(Memo::default()));
        for _ in 0..ROUNDS {
            sim.twins_rounds.push(p.clone());
        }
        sim.run_until_round(Duration::from_secs(3), ROUNDS);
        if sim.check_agreement().is_err() {
            forks += 1;
        }
    }
    assert!(forks >= 1, "no fork found with two twins");
}

/// Twins at n = 7 (f = 2): two identities twinned (9 instances, each twin pair holding
/// different batches), a partition of the 9 instances into at most two groups in each
/// of the first 4 rounds — the space (256^4 per pair of identities) is sampled, one
/// random choice per seed — then the network heals. Every run must be safe, and live
/// after the heal: every honest validator finalizes at least two blocks beyond the
/// highest height any honest validator had reached before it.
#[test]
fn twins_n7_two_twins_random_partitions_then_heal_are_safe_and_live() {
    use rand::{Rng, SeedableRng};
    let long = std::env::var("LAMINA_LONG_TESTS").is_ok_and(|v| v == "1");
    let count: u64 = if long { 1_000 } else { 100 };
    let memo = Arc::new(Memo::default());
    let mut failures = Vec::new();
    let mut progressed = 0u64;
    for seed in 0..count {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x7_7717);
        let a = rng.random_range(0..7usize);
        let b = (a + rng.random_range(1..7usize)) % 7;
        let mut sim = Sim::new(twins_scenario(7, vec![a.min(b), a.max(b)]), memo.clone());
        for _ in 0..ROUNDS {
            let mask: u32 = rng.random_range(0..1 << 8);
            sim.twins_rounds.push((0..9).map(|i| if i == 0 { 0 } else { ((mask >> (i - 1)) & 1) as u8 }).collect());
        }
        // The partitioned rounds; messages of later rounds are dropped until the heal.
        let _ = sim.run_until_round(Duration::from_secs(3), ROUNDS);
        let before = sim.max_height();
        sim.heal_twins();
        let healed = sim.now + Duration::from_secs(20);
        let _ = sim.run_until_round(healed, ROUNDS);
        let verdict = sim
            .check_agreement()
            .and_then(|()| sim.check_final_chain())
            .and_then(|()| sim.check_validity(&mut BTreeSet::new()))
            .and_then(|()| sim.check_no_honest_equivocation())
            .and_then(|()| {
                let min = sim.min_height();
                if min >= before + 2 {
                    Ok(())
                } else {
                    Err(format!("liveness: honest heights reach only {min} after the heal (max {before} before it)"))
                }
            });
        match verdict {
            Ok(()) => progressed += 1,
            Err(e) => failures
                .push(format!("seed {seed} (twins {a} and {b}, partitions {:?}): {e}", &sim.twins_rounds[..ROUNDS])),
        }
    }
    assert!(failures.is_empty(), "{} of {count} runs failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(progressed, count);
}
