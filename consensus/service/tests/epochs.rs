//! Committee switches between real validators over QUIC, with real files: five
//! validator keys, four in the genesis; the schedule (as governance would decide it)
//! removes validator 0 and adds validator 4 at height 8, then brings validator 0 back
//! at height 16. Each validator learns the schedule only a few heights ahead of its own
//! log (its horizon), as from its governance follower; one validator restarts as soon
//! as it has epoch 1's boundary block, another in the middle of epoch 2. Transactions submitted before,
//! across and after the switches are each ordered once, those validator 0 acknowledged
//! just before it left included (from when it knows it leaves, it refuses new ones); every validator, the one that
//! left and came back and the one that joined included, ends with the same log, every
//! block of which verifies against the committee of its height's epoch; the joined
//! validator proposes in its epochs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use lamina_consensus_core::check_finalized;
use lamina_consensus_service::{Schedule, ScheduledEpoch, Validator};
use lamina_interfaces::{NodeEntry, OrderedLog, SubmitError, SubmitOutcome, TxSubmit};
use lamina_net::{Endpoint, EndpointConfig, NodeContext};
use lamina_primitives::{ChainId, Height, Transaction, TxId};

const WAIT: Duration = Duration::from_secs(60);
/// How far past its own log a validator's schedule reaches.
const LAG: u64 = 5;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn schedule(entries: &[NodeEntry], known_through: u64) -> Schedule {
    let epoch = |epoch: u64, first: u64, who: &[usize]| ScheduledEpoch {
        epoch,
        first_height: Height(first),
        validators: who.iter().map(|&i| entries[i].clone()).collect(),
        da: None,
        max_batches: None,
        max_batch_bytes: None,
    };
    Schedule {
        epochs: vec![epoch(0, 1, &[0, 1, 2, 3]), epoch(1, 8, &[1, 2, 3, 4]), epoch(2, 16, &[4, 0, 1, 2, 3])],
        known_through: Height(known_through),
    }
}

async fn start_scheduled(
    g: &Arc<lamina_interfaces::Genesis>,
    entries: &[NodeEntry],
    i: usize,
    dir: &std::path::Path,
    da: FakeDa,
) -> Validator {
    // A restarted validator's port may still be held for a moment: retry the bind.
    let mut tries = 0;
    loop {
        let ctx =
            NodeContext::new(validator_key(i), g.clone(), dir.join(format!("v{i}")), lamina_interfaces::Health::new());
        match Endpoint::bind(&ctx.keypair, EndpointConfig::new(entries[i].addr)) {
            Ok(endpoint) => {
                // Validator 0, which leaves at height 8, holds transactions long before
                // it cuts them: without the cut at once when it knows it leaves, those
                // it acknowledged last would be certified after its core ended.
                let mut cfg = config();
                if i == 0 {
                    cfg.batch.max_delay_ms = 400;
                }
                let started =
                    lamina_consensus_service::start_with_schedule(endpoint, ctx, cfg, da, Some(schedule(entries, LAG)));
                return started.await.unwrap();
            }
            Err(e) => {
                tries += 1;
                assert!(tries < 100, "cannot bind validator {i}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Validator `v`'s governance follower, as the node runs it: the schedule reaches `LAG`
/// heights past its own log.
fn follow_schedule(
    v: Arc<Validator>,
    entries: Vec<NodeEntry>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        while !stop.is_cancelled() {
            let h = v.height();
            if h != last || last == 0 {
                last = h.max(1);
                let _ = v.set_schedule(schedule(&entries, h + LAG)).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[test]
fn validators_leave_join_and_return_by_schedule_and_agree_on_one_log() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let mut entries = g.validators.clone();
        entries.push(lamina_test_utils::node("validator-4", &validator_key(4), lamina_net::ports::one_udp()));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..5 {
            vs.push(Arc::new(start_scheduled(&g, &entries, i, dir.path(), da.clone()).await));
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let mut followers: Vec<_> = vs
            .iter()
            .map(|v| {
                let token = stop.child_token();
                (token.clone(), follow_schedule(v.clone(), entries.clone(), token))
            })
            .collect();
        eventually("first blocks", WAIT, || vs[1].height() >= 1).await;
        // A client over QUIC, and a sender its route sends to validator 0 first.
        let ep = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let intake = lamina_consensus_client::IntakeClient::register(&ep, &g).unwrap();
        intake.wait_for_validators(4, WAIT).await.unwrap();
        let routed_to_0 = (6_000u64..)
            .map(lamina_primitives::Keypair::for_testing)
            .find(|k| u64::from_le_bytes(k.public().0[..8].try_into().unwrap()) % 4 == 0)
            .unwrap();
        let mut failed_over = false;
        // Transactions through validator 1 (a member of every epoch), in rounds that
        // straddle both switches.
        let mut accepted: BTreeSet<TxId> = BTreeSet::new();
        let mut accepted_by_0: BTreeSet<TxId> = BTreeSet::new();
        let mut leaving_refused = false;
        let mut rounds_0 = 0u64;
        let mut round = 0u64;
        let mut restarted = false;
        let (mut restarted_at_boundary, mut boundary_restart_height) = (false, 0);
        while vs[1].height() < 26 || !restarted {
            assert!(round < 2_000, "the log stopped at height {}", vs[1].height());
            // Validator 2 restarts in the middle of epoch 2: from its WAL and log, it
            // knows no epoch until its schedule comes, then resumes in its epoch's core.
            // Validator 3 restarts as soon as it has the boundary block of epoch 1
            // (height 15): its WAL may hold records of both epochs, each core gets its
            // own.
            let restart = if !restarted_at_boundary && vs[3].height() >= 15 {
                restarted_at_boundary = true;
                boundary_restart_height = vs[3].height();
                Some(3)
            } else if !restarted && restarted_at_boundary && vs[1].height() >= 19 {
                restarted = true;
                Some(2)
            } else {
                None
            };
            if let Some(i) = restart {
                let (token, handle) = followers.remove(i);
                token.cancel();
                handle.await.unwrap();
                Arc::try_unwrap(vs.remove(i)).ok().unwrap().stop().await.unwrap();
                let v = Arc::new(start_scheduled(&g, &entries, i, dir.path(), da.clone()).await);
                let token = stop.child_token();
                followers.insert(i, (token.clone(), follow_schedule(v.clone(), entries.clone(), token)));
                vs.insert(i, v);
            }
            for r in vs[1].intake().submit_many(txs(&g, round * 20, 20, 64)).await {
                if let Ok(SubmitOutcome::Accepted(id)) = r {
                    accepted.insert(id);
                }
            }
            // And through validator 0 up to its removal: what it acknowledged before it
            // left must be ordered too (by the members, after it left).
            if vs[0].height() < 8 {
                // Twenty senders, one transaction each per round, nonces without gaps
                // (a gap would be held back: DESIGN.md, "Per-sender order").
                let batch: Vec<Transaction> = (0..20u64)
                    .map(|k| {
                        let sender = lamina_primitives::Keypair::for_testing(5_000 + k);
                        Transaction::new_signed(&sender, g.tx_scope(), ChainId(1 + k % 2), rounds_0, vec![7; 64])
                    })
                    .collect();
                rounds_0 += 1;
                for r in vs[0].intake().submit_many(batch).await {
                    match r {
                        Ok(SubmitOutcome::Accepted(id)) => {
                            accepted.insert(id);
                            accepted_by_0.insert(id);
                        }
                        Err(SubmitError::Busy(why)) if why.contains("removed by vote") => leaving_refused = true,
                        _ => {}
                    }
                }
            }
            // While validator 0 is out (epoch 1), a transaction whose sender routes to it
            // goes to the next validator: the client skips one outside the committee.
            if !failed_over && (10..14).contains(&vs[1].height()) && vs[0].height() >= 8 {
                let tx = Transaction::new_signed(&routed_to_0, g.tx_scope(), ChainId(1), 0, vec![9; 64]);
                match intake.submit(tx).await {
                    Ok(SubmitOutcome::Accepted(id)) => {
                        accepted.insert(id);
                        failed_over = true;
                    }
                    other => panic!("a sender routed to the validator outside the committee: {other:?}"),
                }
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!accepted.is_empty());
        assert!(!accepted_by_0.is_empty(), "validator 0 accepted nothing before it left");
        assert!(leaving_refused, "validator 0 never refused a transaction for leaving the committee");
        assert!(restarted, "validator 2 never restarted");
        assert!(restarted_at_boundary, "validator 3 never restarted at the boundary");
        assert!(failed_over, "no transaction was submitted while validator 0 was out");
        eprintln!("validator 3 restarted at height {boundary_restart_height} (epoch 2 starts at 16)");
        // Everyone, the validator that left and the one that joined included, reaches
        // the same height and every accepted transaction is ordered.
        let log1 = vs[1].log();
        let deadline = tokio::time::Instant::now() + WAIT;
        let (height, blocks) = loop {
            let height = vs.iter().map(|v| v.height()).min().unwrap();
            let blocks = read_all(&log1, height).await;
            let ordered: BTreeSet<TxId> = ordered_txs(&blocks, &da).into_iter().collect();
            if height >= 26 && accepted.is_subset(&ordered) {
                break (height, blocks);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "heights {:?}, {} of {} ordered",
                vs.iter().map(|v| v.height()).collect::<Vec<_>>(),
                accepted.intersection(&ordered).count(),
                accepted.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        stop.cancel();
        for (_, handle) in followers {
            handle.await.unwrap();
        }
        let ordered = ordered_txs(&blocks, &da);
        assert_eq!(ordered.len(), ordered.iter().collect::<BTreeSet<_>>().len(), "a transaction ordered twice");
        // Validator 0's are ordered while it is out (by the members), not only once it
        // is back in epoch 2 (its own core would order what it still held).
        let before_return: BTreeSet<TxId> = ordered_txs(&blocks[..15.min(blocks.len())], &da).into_iter().collect();
        let missing = accepted_by_0.difference(&before_return).count();
        assert_eq!(
            missing,
            0,
            "{missing} of {} acknowledged by validator 0 waited for its return",
            accepted_by_0.len()
        );
        let full = schedule(&entries, u64::MAX);
        for v in &vs {
            let mine = read_all(&v.log(), height).await;
            assert_eq!(blocks_only(&mine), blocks_only(&blocks), "logs differ");
            for fb in &mine {
                let epoch = full.epoch_for(fb.height()).unwrap();
                check_finalized(fb, &epoch.info().unwrap()).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        // A reader of the log over QUIC checks each block against its height's
        // committee; one that knows only the genesis committee refuses epoch 1's blocks,
        // and one whose schedule stops short returns the blocks up to where it reaches.
        let reader = lamina_consensus_client::LogClient::register(&ep, &g).unwrap();
        reader.wait_for_validators(3, WAIT).await.unwrap();
        let genesis_only = reader.independent_reader();
        let early = genesis_only.read(Height(1), 7).await.unwrap();
        assert_eq!(early.len(), 7);
        assert!(
            matches!(genesis_only.read(Height(8), 1).await, Err(lamina_interfaces::LogError::Invalid(_))),
            "a block of epoch 1 passed the genesis committee's check"
        );
        reader.set_schedule(schedule(&entries, 12).committees(), &entries);
        let partial = reader.read(Height(1), 100).await.unwrap();
        assert_eq!(partial.len(), 12, "reads stop where the schedule does");
        reader.set_schedule(full.committees(), &entries);
        let mut all = partial;
        all.extend(reader.read(Height(13), height as usize - 12).await.unwrap());
        assert_eq!(blocks_only(&all), blocks_only(&blocks));
        ep.shutdown().await;
        // The validator that joined proposed in its epochs; the one that left did not
        // while it was out, and did again after it came back.
        let proposer = |i: usize, from: u64, to: u64| {
            blocks
                .iter()
                .any(|b| (from..to).contains(&b.height().0) && b.block.header.proposer == validator_key(i).public())
        };
        assert!(!proposer(4, 1, 8), "validator 4 proposed before it joined");
        assert!(proposer(4, 8, height + 1), "validator 4 never proposed after joining");
        assert!(!proposer(0, 8, 16), "validator 0 proposed while out of the committee");
        assert!(proposer(0, 16, height + 1), "validator 0 never proposed after it came back");
        for v in vs {
            Arc::try_unwrap(v).ok().unwrap().stop().await.unwrap();
        }
    });
}

/// Epoch 0 (from height 1, no batch size limit) and epoch 1 (from `from`, at most
/// `limit` blob bytes per batch), both of the genesis validators; with `max_batches`,
/// epoch 1 also orders at most that many batches per block.
fn limited_epochs(entries: &[NodeEntry], from: u64, limit: u64, max_batches: Option<usize>) -> Vec<ScheduledEpoch> {
    let epoch = |epoch: u64, first: u64, limit: Option<u64>, max_batches: Option<usize>| ScheduledEpoch {
        epoch,
        first_height: Height(first),
        validators: entries.to_vec(),
        da: None,
        max_batches,
        max_batch_bytes: limit,
    };
    vec![epoch(0, 1, None, None), epoch(1, from, Some(limit), max_batches)]
}

/// Starts the genesis validators with `schedule`, validator `i` on `da(i)`.
async fn start_all(
    g: &Arc<lamina_interfaces::Genesis>,
    dir: &std::path::Path,
    schedule: &Schedule,
    da: impl Fn(usize) -> FakeDa,
) -> Vec<Validator> {
    let mut vs = Vec::new();
    for (i, entry) in g.validators.iter().enumerate() {
        let ctx = context(g, i, dir);
        let endpoint = Endpoint::bind(&ctx.keypair, EndpointConfig::new(entry.addr)).unwrap();
        let started =
            lamina_consensus_service::start_with_schedule(endpoint, ctx, config(), da(i), Some(schedule.clone()));
        vs.push(started.await.unwrap());
    }
    vs
}

/// Governance's batch size limit as a validity rule of an epoch: epoch 1 (from height
/// 60, the same four validators) allows batches of at most 4,000 blob bytes. Validators
/// 1–3 were told the limit, as their governance follower tells them, so their intake
/// refuses a transaction that cannot fit in a batch. Validator 0 was not (a batcher that
/// ignores governance): the batch over the limit it certifies in epoch 0 is ordered;
/// the one it certifies in epoch 1 is refused by its own core (so never announced; the
/// other cores would refuse it too, `consensus/core/tests/rules.rs`) and never ordered,
/// while small transactions submitted after it are. Epoch 1's block limit (one batch)
/// holds as well.
#[test]
fn a_batch_over_its_epochs_size_limit_is_never_ordered() {
    const LIMIT: u64 = 4_000;
    const FROM: u64 = 60;
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        // Epoch 1 also orders at most one batch per block (the block limit's validity
        // rule; no validator was told it as a proposer policy). Known only up to epoch
        // 0's end at first, so the log waits there (the horizon) until the test has seen
        // its batch of epoch 0 ordered, however slow the box.
        let epochs = limited_epochs(&g.validators, FROM, LIMIT, Some(1));
        let schedule = Schedule { epochs: epochs.clone(), known_through: Height(FROM - 1) };
        let vs = start_all(&g, dir.path(), &schedule, |_| da.clone()).await;
        for v in &vs[1..] {
            v.set_batch_bytes(Some(LIMIT));
        }
        eventually("first blocks", WAIT, || vs[1].height() >= 1).await;
        let big = |k: u64| {
            let sender = lamina_primitives::Keypair::for_testing(7_000 + k);
            Transaction::new_signed(&sender, g.tx_scope(), ChainId(1), 0, vec![3; 5_000])
        };
        let accepted = |r: Vec<Result<SubmitOutcome, SubmitError>>| match &r[..] {
            [Ok(SubmitOutcome::Accepted(id))] => *id,
            other => panic!("{other:?}"),
        };
        // In epoch 0 validator 0's batch over the limit is valid.
        let early = accepted(vs[0].intake().submit_many(vec![big(0)]).await);
        let log = vs[1].log();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let blocks = read_all(&log, vs[1].height()).await;
            if ordered_txs(&blocks, &da).contains(&early) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the batch of epoch 0 was not ordered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for v in &vs {
            v.set_schedule(Schedule { epochs: epochs.clone(), known_through: Height(1_000) }).await.unwrap();
        }
        eventually("epoch 1", WAIT, || vs[1].height() > FROM).await;
        // In epoch 1: refused at intake where the limit is known, ordered nowhere where not.
        let late = accepted(vs[0].intake().submit_many(vec![big(1)]).await);
        match &vs[1].intake().submit_many(vec![big(2)]).await[..] {
            [Err(SubmitError::TooLarge { max, .. })] => {
                assert_eq!(*max, LIMIT as usize - lamina_primitives::Batch::encoded_bound(1, 0));
            }
            other => panic!("validator 1 took a transaction that cannot fit in a batch: {other:?}"),
        }
        let mut small = BTreeSet::new();
        for round in 0..10 {
            for r in vs[1].intake().submit_many(txs(&g, round * 10, 10, 100)).await {
                if let Ok(SubmitOutcome::Accepted(id)) = r {
                    small.insert(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(small.len(), 100);
        let deadline = tokio::time::Instant::now() + WAIT;
        let blocks = loop {
            let height = vs[1].height();
            let blocks = read_all(&log, height).await;
            let ordered: BTreeSet<TxId> = ordered_txs(&blocks, &da).into_iter().collect();
            if small.is_subset(&ordered) && height > FROM + 10 {
                break blocks;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of 100 ordered by height {height}",
                small.intersection(&ordered).count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ordered = ordered_txs(&blocks, &da);
        assert!(
            ordered_txs(&blocks[..FROM as usize - 1], &da).contains(&early),
            "the batch certified in epoch 0 was not ordered in it"
        );
        assert!(!ordered.contains(&late), "a batch over epoch 1's limit was ordered");
        for fb in &blocks[FROM as usize - 1..] {
            assert!(fb.block.batches.len() <= 1, "height {}: {} batches", fb.height().0, fb.block.batches.len());
            for cert in &fb.block.batches {
                assert!(
                    cert.commitment.blob_bytes <= LIMIT,
                    "height {}: {} blob bytes",
                    fb.height().0,
                    cert.commitment.blob_bytes
                );
            }
        }
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}

/// A batch of ours that the next epoch's rules refuse when it is handed over (here: over
/// epoch 1's batch size limit, certified between epoch 0's end and epoch 1's start,
/// while DA was down for validator 0) is queued again, without the transaction too
/// large for the limit, so its sender's next transaction is cut and ordered (the
/// mempool here was never told the limit: the refusing core's applies); before, the
/// sender stayed "in flight" on that validator, which cut nothing more of it until a
/// restart.
#[test]
fn a_batch_refused_at_an_epoch_handover_does_not_hold_its_sender() {
    const LIMIT: u64 = 4_000;
    const FROM: u64 = 20;
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        // Validator 0's DA, with its own switch.
        let da0 = da.with_own_switch(false);
        // Known up to epoch 0's end: the log stops there, between the two cores.
        let epochs = limited_epochs(&g.validators, FROM, LIMIT, None);
        let schedule = Schedule { epochs: epochs.clone(), known_through: Height(FROM - 1) };
        let vs = start_all(&g, dir.path(), &schedule, |i| if i == 0 { da0.clone() } else { da.clone() }).await;
        eventually("first blocks", WAIT, || vs[0].height() >= 1).await;
        let sender = lamina_primitives::Keypair::for_testing(8_000);
        let tx =
            |nonce: u64, len: usize| Transaction::new_signed(&sender, g.tx_scope(), ChainId(1), nonce, vec![4; len]);
        let accepted = |r: Vec<Result<SubmitOutcome, SubmitError>>| match &r[..] {
            [Ok(SubmitOutcome::Accepted(id))] => *id,
            other => panic!("{other:?}"),
        };
        // Cut in epoch 0, but not certified before it ends: DA is down for validator 0.
        da0.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let big = accepted(vs[0].intake().submit_many(vec![tx(0, 5_000)]).await);
        // Cut alone (the batch delay is 5 ms); the sender's next transaction then waits
        // behind its batch in flight.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = accepted(vs[0].intake().submit_many(vec![tx(1, 100)]).await);
        eventually("the end of epoch 0", WAIT, || vs.iter().all(|v| v.height() == FROM - 1)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Certified now, while no core runs: carried to epoch 1's core, which refuses it.
        let before = da0.submitted.load(std::sync::atomic::Ordering::Relaxed);
        da0.down.store(false, std::sync::atomic::Ordering::Relaxed);
        eventually("the certificate", WAIT, || da0.submitted.load(std::sync::atomic::Ordering::Relaxed) > before).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for v in &vs {
            v.set_schedule(Schedule { epochs: epochs.clone(), known_through: Height(1_000) }).await.unwrap();
        }
        let log = vs[1].log();
        let deadline = tokio::time::Instant::now() + WAIT;
        let ordered = loop {
            let height = vs[1].height();
            let ordered = ordered_txs(&read_all(&log, height).await, &da);
            if ordered.contains(&next) && height > FROM + 5 {
                break ordered;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sender's next transaction was never ordered (height {height})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!ordered.contains(&big), "a batch over epoch 1's limit was ordered");
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}
