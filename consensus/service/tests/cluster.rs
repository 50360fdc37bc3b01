//! Four validators in one process, over real QUIC on 127.0.0.1 with real files: intake
//! (in-process, QUIC, HTTP/JSON), batching through DA, ordering, the ordered log
//! (in-process and QUIC), DA outage and backpressure, restart and catch-up, bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use lamina_consensus_client::{IntakeClient, LogClient};
use lamina_consensus_service::ConsensusProtocol;
use lamina_consensus_service::TxJson;
use lamina_interfaces::{OrderedLog, SubmitError, SubmitOutcome, TxSubmit};
use lamina_net::{Endpoint, EndpointConfig, PeerSet, Protocol, ProtocolConfig, RawNetwork, Reject};
use lamina_primitives::NodeId;
use lamina_primitives::{Height, Keypair, Transaction, TxId, TxScope};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn four_validators_order_every_accepted_transaction_once_and_agree() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..4 {
            vs.push(start(&g, i, dir.path(), config(), da.clone()).await);
        }
        // Intake answers busy until a validator has its quorum of peers: wait for it.
        eventually("first blocks", WAIT, || vs.iter().all(|v| v.height() >= 1)).await;
        // In-process intake on two validators, QUIC intake from a client key on all.
        let mut accepted: BTreeSet<TxId> = BTreeSet::new();
        for (k, chunk) in txs(&g, 0, 400, 100).chunks(50).enumerate() {
            let out = vs[k % 2].intake().submit_many(chunk.to_vec()).await;
            for r in out {
                match r {
                    Ok(SubmitOutcome::Accepted(id)) => {
                        accepted.insert(id);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let (client_ep, client) = {
            let ep = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
            let c = IntakeClient::register(&ep, &g).unwrap();
            (ep, c)
        };
        client.wait_for_validators(4, WAIT).await.unwrap();
        let more = txs(&g, 400, 300, 200);
        for r in client.submit_many(more.clone()).await {
            match r {
                Ok(SubmitOutcome::Accepted(id)) => {
                    accepted.insert(id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Resubmitting is idempotent.
        let again = client.submit(more[0].clone()).await.unwrap();
        assert_eq!(again, SubmitOutcome::Duplicate(more[0].id()));

        // Wait until every accepted transaction is ordered at validator 0.
        let log0 = vs[0].log();
        let mut height;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            height = vs[0].height();
            let blocks = read_all(&log0, height).await;
            let ordered: BTreeSet<TxId> = ordered_txs(&blocks, &da).into_iter().collect();
            if accepted.is_subset(&ordered) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all transactions ordered: {} of {}",
                ordered.len(),
                accepted.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every validator reaches the same height with the same blocks.
        eventually("all validators at the height", WAIT, || vs.iter().all(|v| v.height() >= height)).await;
        let reference = read_all(&log0, height).await;
        for v in &vs[1..] {
            let other = read_all(&v.log(), height).await;
            assert_eq!(blocks_only(&other), blocks_only(&reference));
            for fb in &other {
                fb.verify(&g.validator_committee()).unwrap();
            }
        }
        let committee = g.validator_committee();
        for fb in &reference {
            fb.verify(&committee).unwrap();
        }
        let ids = ordered_txs(&reference, &da);
        assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len(), "a transaction was ordered twice");
        assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), accepted);

        // The ordered log over QUIC, verified by the client.
        let log_client = LogClient::register(&client_ep, &g).unwrap();
        log_client.wait_for_validators(1, WAIT).await.unwrap();
        assert_eq!(blocks_only(&read_all(&log_client, height).await), blocks_only(&reference));
        assert!(log_client.tip().await.unwrap() >= Height(height));

        client_ep.shutdown().await;
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}

#[test]
fn http_intake_checks_and_answers_in_json() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(1));
        let v = start(&g, 0, dir.path(), config(), test_da(&g)).await;
        let http = g.validators[0].http.unwrap();
        let post = |path: &'static str, body: String| async move {
            let stream = tokio::net::TcpStream::connect(http).await.unwrap();
            let (mut s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let req = hyper::Request::post(path)
                .header("host", "x")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let resp = s.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
            (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
        };
        let tx = txs(&g, 0, 1, 10).remove(0);
        let json = serde_json::to_string(&TxJson::from_tx(&tx)).unwrap();
        let (s, v1) = post("/v1/tx", json.clone()).await;
        assert_eq!((s, v1["outcome"].as_str()), (200, Some("accepted")), "{v1}");
        assert_eq!(v1["id"], tx.id().to_string());
        let (s, v2) = post("/v1/tx", json).await;
        assert_eq!((s, v2["outcome"].as_str()), (200, Some("duplicate")));

        let mut bad = tx.clone();
        bad.nonce += 1; // signature no longer matches
        let (s, e) = post("/v1/tx", serde_json::to_string(&TxJson::from_tx(&bad)).unwrap()).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("bad_signature")));
        // Signed for another network, or without this network's id: refused the same way.
        for scope in [TxScope::Network(lamina_primitives::Digest([1; 32])), TxScope::ChainOnly] {
            let foreign = Transaction::new_signed(&Keypair::for_testing(1_000), scope, tx.chain_id, 40, vec![1]);
            let (s, e) = post("/v1/tx", serde_json::to_string(&TxJson::from_tx(&foreign)).unwrap()).await;
            assert_eq!((s, e["error"].as_str()), (400, Some("bad_signature")), "{scope:?}");
        }
        let other =
            Transaction::new_signed(&Keypair::for_testing(5), g.tx_scope(), lamina_primitives::ChainId(77), 0, vec![1]);
        let (s, e) = post("/v1/tx", serde_json::to_string(&TxJson::from_tx(&other)).unwrap()).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("unknown_chain")));
        let (s, e) = post("/v1/tx", "{not json".into()).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("malformed")));
        let list: Vec<TxJson> = txs(&g, 10, 3, 10).iter().map(TxJson::from_tx).collect();
        let (s, arr) = post("/v1/txs", serde_json::to_string(&list).unwrap()).await;
        assert_eq!(s, 200);
        assert_eq!(arr.as_array().unwrap().len(), 3);
        assert!(arr.as_array().unwrap().iter().all(|o| o["outcome"] == "accepted"));
        v.stop().await.unwrap();
    });
}

#[test]
fn da_outage_keeps_blocks_coming_pushes_back_on_intake_then_recovers() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut cfg = config();
        cfg.mempool.max_txs = 200;
        cfg.batch.retry_ms = 50;
        let mut vs = Vec::new();
        for i in 0..4 {
            vs.push(start(&g, i, dir.path(), cfg.clone(), da.clone()).await);
        }
        eventually("first blocks", WAIT, || vs[0].height() >= 2).await;
        da.down.store(true, Ordering::Relaxed);
        let before = vs[0].height();
        // Intake fills the mempool, then answers Busy: nothing is dropped silently.
        let out = vs[0].intake().submit_many(txs(&g, 0, 300, 50)).await;
        let accepted = out.iter().filter(|r| matches!(r, Ok(SubmitOutcome::Accepted(_)))).count();
        let busy = out.iter().filter(|r| matches!(r, Err(SubmitError::Busy(_)))).count();
        assert_eq!((accepted, busy), (200, 100), "{out:?}");
        // Consensus keeps producing (empty) blocks while DA is down.
        eventually("empty blocks during the outage", WAIT, || vs[0].height() >= before + 5).await;
        let during = read_all(&vs[0].log(), vs[0].height()).await;
        assert!(during[before as usize..].iter().all(|b| b.block.batches.is_empty()));
        // DA back: the held transactions are made available and ordered, intake reopens.
        da.down.store(false, Ordering::Relaxed);
        let accepted_ids: BTreeSet<TxId> =
            out.iter().filter_map(|r| if let Ok(SubmitOutcome::Accepted(id)) = r { Some(*id) } else { None }).collect();
        let log = vs[0].log();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let blocks = read_all(&log, vs[0].height()).await;
            let ordered: BTreeSet<TxId> = ordered_txs(&blocks, &da).into_iter().collect();
            if accepted_ids.is_subset(&ordered) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "held transactions not ordered after DA came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = vs[0].intake().submit_many(txs(&g, 1_000, 10, 50)).await;
        assert!(out.iter().all(|r| matches!(r, Ok(SubmitOutcome::Accepted(_)))), "{out:?}");
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}

#[test]
fn restarted_validator_catches_up_and_logs_agree() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..4 {
            vs.push(Some(start(&g, i, dir.path(), config(), da.clone()).await));
        }
        eventually("first blocks", WAIT, || vs[3].as_ref().unwrap().height() >= 3).await;
        // Stop validator 3; the others keep finalizing (3 of 4 is a quorum).
        vs[3].take().unwrap().stop().await.unwrap();
        let h = vs[0].as_ref().unwrap().height();
        for k in 0..5 {
            vs[k % 3].as_ref().unwrap().intake().submit_many(txs(&g, k as u64 * 100, 100, 64)).await;
        }
        eventually("progress without validator 3", WAIT, || vs[0].as_ref().unwrap().height() >= h + 20).await;
        // Restart it from its files: it catches up from the others.
        vs[3] = Some(start(&g, 3, dir.path(), config(), da.clone()).await);
        let target = vs[0].as_ref().unwrap().height();
        eventually("catch-up", WAIT, || vs[3].as_ref().unwrap().height() >= target).await;
        let reference = read_all(&vs[0].as_ref().unwrap().log(), target).await;
        let caught_up = read_all(&vs[3].as_ref().unwrap().log(), target).await;
        assert_eq!(blocks_only(&caught_up), blocks_only(&reference));
        for fb in &caught_up {
            fb.verify(&g.validator_committee()).unwrap();
        }
        // And it takes part again: with validator 0 stopped, 1, 2, 3 still finalize.
        vs[0].take().unwrap().stop().await.unwrap();
        let h = vs[3].as_ref().unwrap().height();
        eventually("progress with the restarted validator", WAIT, || vs[3].as_ref().unwrap().height() >= h + 5).await;
        for v in vs.into_iter().flatten() {
            v.stop().await.unwrap();
        }
    });
}

/// Raw bytes from a pinned peer: malformed, oversize and unsigned messages are rejected
/// and counted; the honest validators keep finalizing.
#[test]
fn bad_input_from_a_pinned_peer_never_stalls_the_honest_path() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..3 {
            vs.push(start(&g, i, dir.path(), config(), da.clone()).await);
        }
        // The test speaks as validator 3 (pinned), with raw frames.
        let ep = Endpoint::bind(&validator_key(3), EndpointConfig::new(g.validators[3].addr)).unwrap();
        let peers = PeerSet::dial_entries(&g.validators).without(&validator_key(3).public());
        struct Sink;
        impl lamina_net::RawHandler for Sink {
            fn request(
                &self,
                _peer: NodeId,
                _body: bytes::Bytes,
            ) -> lamina_net::BoxFuture<Result<bytes::Bytes, Reject>> {
                Box::pin(async { Err(Reject::bad_request("no")) })
            }
            fn message(&self, _peer: NodeId, _body: bytes::Bytes) -> lamina_net::BoxFuture<Result<(), Reject>> {
                Box::pin(async { Ok(()) })
            }
        }
        let raw: RawNetwork = ep
            .register_raw(
                <ConsensusProtocol as Protocol>::ID,
                Arc::new(Sink),
                peers,
                ProtocolConfig::for_protocol::<ConsensusProtocol>(),
            )
            .unwrap();
        raw.wait_for_peers(3, WAIT).await.unwrap();
        let h0 = vs[0].height();
        let ids: Vec<_> = (0..3).map(|i| validator_key(i).public()).collect();
        // Unsigned (zero-signature) votes, structurally valid.
        let junk_vote = lamina_consensus_core::Message::Vote(lamina_consensus_core::Vote {
            kind: lamina_consensus_core::VoteKind::Nullify,
            view: lamina_primitives::View(h0 + 1),
            digest: lamina_primitives::Digest::ZERO,
            signer: 3,
            signature: lamina_primitives::Signature::default(),
        });
        let unsigned = bytes::Bytes::from(lamina_primitives::encode(&junk_vote).unwrap());
        for _ in 0..200 {
            for id in &ids {
                let _ = raw.send(id, bytes::Bytes::from_static(b"\x01\x02garbage that is no archive")).await;
                let _ = raw.send(id, unsigned.clone()).await;
            }
        }
        // Oversize: one frame over the protocol limit fails locally; the peer is not
        // disturbed (the limit is enforced on both ends).
        let big = bytes::Bytes::from(vec![0u8; lamina_consensus_core::messages::MAX_MESSAGE_SIZE + 1]);
        assert!(raw.send(&ids[0], big).await.is_err());
        eventually("honest progress under junk", WAIT, || vs.iter().all(|v| v.height() >= h0 + 10)).await;
        // The junk was counted as decode faults on the validators' side.
        let faults: u64 = vs
            .iter()
            .flat_map(|v| v.endpoint().snapshot().protocols)
            .filter(|p| p.protocol == "lamina/consensus/1")
            .flat_map(|p| p.connections)
            .map(|c| c.errors.get("decode").copied().unwrap_or(0))
            .sum();
        assert!(faults >= 100, "decode faults counted: {faults}");
        ep.shutdown().await;
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}

/// Accepted means durable (issue 12): transactions a validator acknowledged but could not
/// get certified (its DA is down) are in its intake log; after a restart it queues them
/// again, and each is ordered exactly once.
#[test]
fn acknowledged_transactions_are_ordered_after_a_restart_that_came_before_their_certificate() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..4 {
            let d = if i == 0 { da.with_own_switch(true) } else { da.clone() };
            vs.push(Some(start(&g, i, dir.path(), config(), d).await));
        }
        eventually("first blocks", WAIT, || vs[1].as_ref().unwrap().height() >= 2).await;
        let out = vs[0].as_ref().unwrap().intake().submit_many(txs(&g, 0, 48, 32)).await;
        let acked: BTreeSet<TxId> =
            out.iter().filter_map(|r| if let Ok(SubmitOutcome::Accepted(id)) = r { Some(*id) } else { None }).collect();
        assert_eq!(acked.len(), 48, "{out:?}");
        // Validator 0 stops before any of them is certified (its DA is down).
        vs[0].take().unwrap().stop().await.unwrap();
        // It restarts from its files with DA working: the acknowledged ones are ordered.
        vs[0] = Some(start(&g, 0, dir.path(), config(), da.clone()).await);
        let v1 = vs[1].as_ref().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let ordered = loop {
            let ordered = ordered_txs(&read_all(&v1.log(), v1.height()).await, &da);
            if acked.iter().all(|id| ordered.contains(id)) {
                break ordered;
            }
            assert!(tokio::time::Instant::now() < deadline, "acknowledged transactions not ordered after the restart");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for id in &acked {
            assert_eq!(ordered.iter().filter(|o| *o == id).count(), 1, "{id} ordered more than once");
        }
        for v in vs.into_iter().flatten() {
            v.stop().await.unwrap();
        }
    });
}

/// `submit_widely` (what a settlement verifier uses for fraud proofs and evidence) hands
/// the transaction to every validator, so a faulty validator that the sender's key is
/// routed to cannot keep it out of the log: afterwards each validator's intake already
/// holds it.
#[test]
fn widely_submitted_transaction_reaches_every_validator_and_routes_follow_the_set_committee() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..4 {
            vs.push(start(&g, i, dir.path(), config(), da.clone()).await);
        }
        eventually("first blocks", WAIT, || vs.iter().all(|v| v.height() >= 1)).await;
        let ep = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let client = IntakeClient::register(&ep, &g).unwrap();
        client.wait_for_validators(4, WAIT).await.unwrap();
        let tx = txs(&g, 9_000, 1, 100).remove(0);
        let out = client.submit_widely(tx.clone()).await.unwrap();
        assert!(matches!(out, SubmitOutcome::Accepted(_) | SubmitOutcome::Duplicate(_)), "{out:?}");
        for (i, v) in vs.iter().enumerate() {
            assert_eq!(
                v.intake().submit(tx.clone()).await.unwrap(),
                SubmitOutcome::Duplicate(tx.id()),
                "validator {i} never got the transaction"
            );
        }
        // The committee as governance sets it (here: validator 2 alone): every sender's
        // transactions go to it, and the others are no longer dialed.
        client.set_validators(&[g.validators[2].clone()]);
        assert_eq!(*client.validators(), vec![g.validators[2].key]);
        client.wait_for_validators(1, WAIT).await.unwrap();
        let batch = txs(&g, 9_100, 16, 10);
        for r in client.submit_many(batch.clone()).await {
            assert!(matches!(r, Ok(SubmitOutcome::Accepted(_))), "{r:?}");
        }
        for tx in batch {
            assert_eq!(vs[2].intake().submit(tx.clone()).await.unwrap(), SubmitOutcome::Duplicate(tx.id()));
        }
        eventually("validator 0 disconnected", WAIT, || client.version(&g.validators[0].key).is_none()).await;
        ep.shutdown().await;
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}

/// A validator that cannot order (no quorum of peers) does not take transactions it
/// could only hold: intake answers busy with the reason, at once; once its peers are up,
/// it accepts.
#[test]
fn intake_refuses_with_the_reason_while_its_validator_has_no_quorum() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let v0 = start(&g, 0, dir.path(), config(), da.clone()).await;
        let tx = txs(&g, 0, 1, 10).remove(0);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match v0.intake().submit(tx.clone()).await {
                Err(SubmitError::Busy(why)) => {
                    assert!(why.contains("needed for a quorum"), "{why}");
                    break;
                }
                other => assert!(tokio::time::Instant::now() < deadline, "alone, intake answered {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut others = Vec::new();
        for i in 1..4 {
            others.push(start(&g, i, dir.path(), config(), da.clone()).await);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match v0.intake().submit(tx.clone()).await {
                Ok(SubmitOutcome::Accepted(_)) => break,
                other => assert!(tokio::time::Instant::now() < deadline, "with a quorum, intake answered {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        v0.stop().await.unwrap();
        for v in others {
            v.stop().await.unwrap();
        }
    });
}

/// A client that starts before one of the validators does not fail that validator's
/// senders over at once (their first transactions would be split between two
/// validators, whose batches the log may order either way, DESIGN.md "Per-sender
/// order"): it waits for the validator's first connection, up to its first-connect
/// wait, and only after that wait goes to the next validator of the route.
#[test]
fn intake_client_waits_for_a_starting_validator_before_failing_its_senders_over() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(genesis(4));
        let da = test_da(&g);
        let mut vs = Vec::new();
        for i in 0..3 {
            vs.push(start(&g, i, dir.path(), config(), da.clone()).await);
        }
        eventually("first blocks without validator 3", WAIT, || vs.iter().all(|v| v.height() >= 1)).await;
        // Every transaction validators 0-2 take in is recorded (admission hook).
        let seen: Vec<Arc<parking_lot::Mutex<BTreeSet<TxId>>>> = (0..3).map(|_| Default::default()).collect();
        for (v, seen) in vs.iter().zip(&seen) {
            let seen = seen.clone();
            v.intake().set_admission(move |tx| {
                seen.lock().insert(tx.id());
                None
            });
        }
        let index = |key: &NodeId| g.validators.iter().position(|v| v.key == *key).unwrap();
        let scope = g.tx_scope();
        // Senders whose route starts at validator 3.
        let mut senders = (5_000..).map(Keypair::for_testing).filter(|k| {
            let s = k.public();
            u64::from_le_bytes(s.0[..8].try_into().unwrap()) % 4 == 3
        });
        let accepted = |r: &Result<SubmitOutcome, SubmitError>| matches!(r, Ok(SubmitOutcome::Accepted(_)));

        // A short wait that runs out: the sender goes to the next validator of its route.
        let ep = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let client = IntakeClient::register(&ep, &g).unwrap().with_first_connect_wait(Duration::from_millis(300));
        client.wait_for_validators(3, WAIT).await.unwrap();
        let a = senders.next().unwrap();
        let route = client.route(&a.public());
        assert_eq!(index(&route[0]), 3);
        let tx = Transaction::new_signed(&a, scope, lamina_primitives::ChainId(1), 0, vec![1; 10]);
        let r = client.submit(tx.clone()).await;
        assert!(accepted(&r), "{r:?}");
        assert!(seen[index(&route[1])].lock().contains(&tx.id()), "not failed over to the route's next validator");
        ep.shutdown().await;

        // Validator 3 starts after the client: its sender waits for it, and another
        // sender of the same submission (routed to validator 0) is not held meanwhile.
        let ep = Endpoint::bind(&client_key(), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let client = IntakeClient::register(&ep, &g).unwrap().with_first_connect_wait(WAIT);
        let b = senders.next().unwrap();
        let tx = Transaction::new_signed(&b, scope, lamina_primitives::ChainId(1), 0, vec![2; 10]);
        let c = (5_000..)
            .map(Keypair::for_testing)
            .find(|k| u64::from_le_bytes(k.public().0[..8].try_into().unwrap()) % 4 == 0)
            .unwrap();
        let other = Transaction::new_signed(&c, scope, lamina_primitives::ChainId(1), 0, vec![3; 10]);
        let both = tokio::spawn({
            let (client, txs) = (client.clone(), vec![tx.clone(), other.clone()]);
            async move { client.submit_many(txs).await }
        });
        // Well before the client's wait for validator 3 (WAIT) would run out.
        let soon = Duration::from_secs(10);
        eventually("the other sender's transaction at validator 0", soon, || seen[0].lock().contains(&other.id()))
            .await;
        vs.push(start(&g, 3, dir.path(), config(), da.clone()).await);
        let rs = both.await.unwrap();
        assert!(accepted(&rs[1]), "{:?}", rs[1]);
        // Validator 3 may answer busy while it connects to its peers: resubmit (to it).
        let mut r = rs[0].clone();
        for _ in 0..100 {
            if !matches!(r, Err(SubmitError::Busy(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            r = client.submit(tx.clone()).await;
        }
        assert!(accepted(&r), "{r:?}");
        for (i, seen) in seen.iter().enumerate() {
            assert!(!seen.lock().contains(&tx.id()), "validator {i} took a transaction routed to validator 3");
        }
        assert_eq!(vs[3].intake().submit(tx.clone()).await.unwrap(), SubmitOutcome::Duplicate(tx.id()));
        ep.shutdown().await;
        for v in vs {
            v.stop().await.unwrap();
        }
    });
}
