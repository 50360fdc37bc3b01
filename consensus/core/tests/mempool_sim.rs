//! The mempool and batch ordering under the deterministic consensus simulation (issue 16
//! point 5; the property issue 10 asks for): clients send signed transactions to their
//! home validator over a reordering network, each validator's mempool (the core's
//! [`lamina_consensus_core::Mempool`], as the service drives it) keeps per-sender nonce
//! order and cuts batches, the real consensus core orders them through seeded delays,
//! drops, partitions and crashes with restarts (intake durable), and the ordered log is
//! then executed as a ledger does.
//!
//! Checked per seed: the consensus checks of the main simulation (agreement, validity,
//! non-equivocation, liveness), **no transaction ordered out of nonce order** (none that
//! a validator acknowledged would be rejected for a skipped nonce), and every sent
//! transaction executed once by the end.
//!
//! * `cargo test -p lamina-consensus-core --test mempool_sim` runs 120 seeds with n = 4
//!   and 40 with n = 7; `LAMINA_LONG_TESTS=1` runs 10x as many.
//! * `LAMINA_SIM_SEED=<seed> LAMINA_SIM_N=<n> cargo test -p lamina-consensus-core --test
//!   mempool_sim replay -- --nocapture` replays one seed and prints its report.
#![allow(clippy::unwrap_used)]

mod sim;

use std::time::Duration;

use lamina_consensus_core::MempoolLimits;
use sim::{NonceReport, Scenario, TxLoad, run_checked, seeds};

fn load() -> TxLoad {
    TxLoad {
        senders: 24,
        per_sender: 25,
        chains: 2,
        // A sender's next nonce leaves 40 ms after the previous one; the network delays
        // each by up to 120 ms, so consecutive ones often arrive out of order.
        spacing: Duration::from_millis(40),
        delay_max: Duration::from_millis(120),
        retry: Duration::from_millis(200),
        // Intake's signature checks on a loaded validator take up to 400 ms, longer
        // than a new sender's 100 ms wait: a nonce 0 still being checked must hold its
        // sender's nonce 1 (Mempool::checking).
        check_max: Duration::from_millis(400),
        limits: MempoolLimits { nonce_gap_ms: 1000, new_sender_wait_ms: 100, ..MempoolLimits::default() },
        batch_bytes: 16 << 10,
        batch_delay: Duration::from_millis(50),
    }
}

/// The main simulation's random faults (delays, drops, duplicates, partitions, crashes
/// with restarts, some torn), honest validators only (a Byzantine one would simply not
/// batch its senders' transactions), with client transactions instead of synthetic
/// batches.
fn scenario(seed: u64, n: usize) -> Scenario {
    let mut s = Scenario::random(seed, n);
    s.faulty.clear();
    s.txs = Some(load());
    s.batch_every = Some(load().batch_delay);
    s
}

fn run(seed: u64, n: usize) -> Result<NonceReport, String> {
    let sim = run_checked(scenario(seed, n))?;
    let report = sim.check_nonce_order()?;
    let sent = sim.txs_sent;
    if report.out_of_order != 0 {
        return Err(format!(
            "seed {seed} (n = {n}): {} transactions ordered out of nonce order: {report:?}",
            report.out_of_order
        ));
    }
    if report.executed != sent {
        return Err(format!(
            "seed {seed} (n = {n}): {} of {sent} transactions executed by the end: {report:?}",
            report.executed
        ));
    }
    Ok(report)
}

fn run_seeds(n: usize, base: u64, count: u64) {
    let mut failures = Vec::new();
    let mut executed = 0;
    let mut duplicates = 0;
    for seed in seeds(base, count) {
        match run(seed, n) {
            Ok(r) => {
                executed += r.executed;
                duplicates += r.duplicates;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
    assert!(executed > 0, "the runs executed nothing");
    eprintln!("n = {n}: {executed} transactions executed in nonce order, {duplicates} duplicate copies ordered");
}

#[test]
fn acknowledged_transactions_execute_in_nonce_order_under_faults_n4() {
    run_seeds(4, 70_000, 120);
}

#[test]
fn acknowledged_transactions_execute_in_nonce_order_under_faults_n7() {
    run_seeds(7, 80_000, 40);
}

/// Replays one seed (`LAMINA_SIM_SEED`, `LAMINA_SIM_N`) and prints its report.
#[test]
fn replay() {
    let Some(seed) = std::env::var("LAMINA_SIM_SEED").ok().and_then(|s| s.parse().ok()) else { return };
    let n = std::env::var("LAMINA_SIM_N").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let s = scenario(seed, n);
    println!("crashes {:?}\npartitions {}\nnet {:?}\nheal_at {:?}", s.crashes, s.partitions.len(), s.net, s.heal_at);
    println!("{:?}", run(seed, n));
}
