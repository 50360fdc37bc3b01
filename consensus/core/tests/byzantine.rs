//! Byzantine catalogue, each with f = 1 of n = 4: the faulty validator runs the honest
//! core with its real key and mutates what it sends (see `sim::Behaviour`). Every run
//! also has random network faults (delay, reordering, drops, duplication, partitions)
//! until a heal. Checked: agreement, one final chain, validity, honest
//! non-equivocation, liveness after the heal, and that the fault was detected and
//! attributed to the faulty validator where it is detectable.
//!
//! 24 seeds per behaviour per CI run (the faulty validator rotates with the seed, so it
//! leads some views); `LAMINA_LONG_TESTS=1` runs 10x as many. At n = 7, f = 2 Byzantine
//! validators with two different behaviours (chosen by the seed) run together.
#![allow(clippy::unwrap_used)]

mod sim;

use std::sync::Arc;

use lamina_consensus_core::{FaultKind, ProposalError};
use sim::{Behaviour, Memo, Scenario, Sim, run_checked};

fn count() -> u64 {
    if std::env::var("LAMINA_LONG_TESTS").is_ok_and(|v| v == "1") { 240 } else { 24 }
}

fn scenario(seed: u64, b: Behaviour) -> Scenario {
    let mut s = Scenario::random(seed, 4);
    // Crashes of honest validators, or the random scenario's own Byzantine validators,
    // on top of the one under test would exceed f.
    s.crashes.clear();
    s.faulty.clear();
    s.faulty.insert((seed % 4) as usize, b);
    s
}

/// Runs the behaviour over many seeds; returns, per run, the faults the honest
/// validators reported against the faulty one.
fn catalogue(b: Behaviour, base: u64) -> Vec<Vec<FaultKind>> {
    let mut failures = Vec::new();
    let mut faults = Vec::new();
    for seed in base..base + count() {
        match run_checked(scenario(seed, b)) {
            Ok(sim) => {
                let bad = (seed % 4) as usize;
                assert!(sim.min_height() >= 5, "seed {seed}: honest validators finalized only {}", sim.min_height());
                faults.push(sim.faults_seen().into_iter().filter(|(p, _)| *p == bad).map(|(_, k)| k).collect());
                // No honest validator is ever blamed.
                for (p, k) in sim.faults_seen() {
                    assert_eq!(p, bad, "seed {seed}: honest validator {p} blamed for {k:?}");
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{:?}: {} seeds failed:\n{}", b, failures.len(), failures.join("\n"));
    faults
}

fn detected(runs: &[Vec<FaultKind>], pred: impl Fn(&FaultKind) -> bool) -> usize {
    runs.iter().filter(|r| r.iter().any(&pred)).count()
}

#[test]
fn equivocating_leader() {
    let runs = catalogue(Behaviour::EquivocatingLeader, 10_000);
    let n = detected(&runs, |k| matches!(k, FaultKind::Equivocation(_)));
    assert!(n >= runs.len() / 2, "equivocation evidence in only {n} of {} runs", runs.len());
}

#[test]
fn conflicting_votes() {
    let runs = catalogue(Behaviour::ConflictingVotes, 11_000);
    let n = detected(&runs, |k| matches!(k, FaultKind::Equivocation(_)));
    assert!(n >= runs.len() * 3 / 4, "conflicting votes detected in only {n} of {} runs", runs.len());
}

#[test]
fn invalid_signatures() {
    let runs = catalogue(Behaviour::InvalidSignatures, 12_000);
    let n = detected(&runs, |k| matches!(k, FaultKind::InvalidSignature { .. } | FaultKind::InvalidCertificate { .. }));
    assert_eq!(n, runs.len(), "invalid signatures went unnoticed");
}

#[test]
fn replayed_old_messages() {
    let runs = catalogue(Behaviour::Replay, 13_000);
    let n = detected(&runs, |k| matches!(k, FaultKind::Impersonation { .. }));
    assert!(n >= runs.len() * 3 / 4, "replayed votes of others detected in only {n} of {} runs", runs.len());
}

#[test]
fn withheld_votes() {
    catalogue(Behaviour::WithholdVotes, 14_000);
}

#[test]
fn silent_validator() {
    catalogue(Behaviour::Silent, 15_000);
}

#[test]
fn invalid_availability_certificate_is_rejected_and_blamed_on_the_leader() {
    let runs = catalogue(Behaviour::InvalidAvailability, 16_000);
    let n = detected(&runs, |k| {
        matches!(k, FaultKind::InvalidProposal { reason: ProposalError::InvalidAvailability { .. }, .. })
    });
    assert!(n >= runs.len() * 3 / 4, "invalid DA certificates detected in only {n} of {} runs", runs.len());
}

#[test]
fn message_flood() {
    let runs = catalogue(Behaviour::Flood, 17_000);
    let n = detected(&runs, |k| matches!(k, FaultKind::InvalidBatch { .. } | FaultKind::InvalidCertificate { .. }));
    assert!(n >= runs.len() * 3 / 4, "junk not detected in {} of {} runs", runs.len() - n, runs.len());
    // Honest progress under flood stays close to progress with the same validator silent.
    for seed in 17_000..17_000 + count().min(8) {
        let run = |b| {
            let mut sim = Sim::new(scenario(seed, b), Arc::new(Memo::default()));
            sim.run();
            sim.min_height()
        };
        let (flood, silent) = (run(Behaviour::Flood), run(Behaviour::Silent));
        assert!(flood * 2 >= silent, "seed {seed}: flood halved progress ({flood} vs {silent} blocks)");
    }
}

/// Every behaviour, listed for the mixed runs.
const ALL: [Behaviour; 8] = Behaviour::ALL;

#[test]
fn two_byzantine_validators_of_seven_with_mixed_behaviours() {
    let mut failures = Vec::new();
    let seeds = 20_000..20_000 + count();
    for seed in seeds.clone() {
        let mut s = Scenario::random(seed, 7);
        s.crashes.clear();
        s.faulty.clear();
        let (a, b) = ((seed % 7) as usize, ((seed / 7 + 3) % 7) as usize);
        let b = if b == a { (a + 1) % 7 } else { b };
        let (ba, bb) = (ALL[(seed % 8) as usize], ALL[((seed / 8 + 5) % 8) as usize]);
        s.faulty.insert(a, ba);
        s.faulty.insert(b, bb);
        match run_checked(s) {
            Ok(sim) => {
                assert!(sim.min_height() >= 5, "seed {seed}: honest validators finalized only {}", sim.min_height());
                for (p, k) in sim.faults_seen() {
                    assert!(p == a || p == b, "seed {seed}: honest validator {p} blamed for {k:?} ({ba:?}, {bb:?})");
                }
            }
            Err(e) => failures.push(format!("seed {seed} ({ba:?} at {a}, {bb:?} at {b}): {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed:\n{}", failures.len(), seeds.count(), failures.join("\n"));
}
