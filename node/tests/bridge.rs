#![allow(clippy::unwrap_used)]
//! The bridge end to end with real processes (B11: adversarial and racing relayers): a `devnet up --keep` network of two chains,
//! a settlement node and two racing relayers (`lamina bridge start`). Transfers go each
//! way; one relayer is killed with SIGKILL mid-run and restarted (it resumes from its
//! persisted cursors) while the other keeps relaying. Every message must be delivered
//! exactly once, balances must match to the unit, a message sent with a timeout it
//! cannot meet must be refunded (never also delivered), and the cross-chain supply
//! audit must pass, both through the library and through `lamina bridge audit`.
//!
//! The settlement window is a few heights and the heartbeat short, so a message is
//! final within seconds; waits poll with generous limits and never assert on speed.
//! The anchor window is 16 heights (the least for a window of 4), so during the run
//! every node forgets old anchors and the execution nodes prove messages again every 8
//! heights: a message whose relayer was killed can be delivered against a newer anchor
//! than its first proof's.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Devnet, WITHIN, lamina, s};
use lamina_bridge_service::BridgeNet as _;
use lamina_execution_client::protocol::{QueryRequest, QueryResponse};
use lamina_execution_core::ledger::{self, AssetId};
use lamina_interfaces::{ReceiptKind, TxSubmit as _};
use lamina_net::{Endpoint, EndpointConfig};
use lamina_node::bridge_net::NetBridge;
use lamina_primitives::{ChainId, Keypair, PublicKey};

/// Transfers each way.
const N: u64 = 20;
const ONE: ChainId = ChainId(1);
const TWO: ChainId = ChainId(2);

fn test_key(chain: ChainId, i: u64) -> Keypair {
    Keypair::for_testing((chain.0 - 1) * 1_000_000 + i)
}

async fn balance(b: &NetBridge, chain: ChainId, who: &PublicKey, asset: AssetId) -> u128 {
    match b.ask(chain, &QueryRequest::Balance(*who, asset)).await.unwrap() {
        QueryResponse::Balance(_, v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

/// Receipts on `dest` of messages from `source`, by sequence.
async fn receipts(b: &NetBridge, dest: ChainId, source: ChainId) -> BTreeMap<u64, ReceiptKind> {
    let (_, items) = b.receipts(dest, source, 0).await.unwrap();
    items.into_iter().map(|e| (e.message.sequence, e.receipt.unwrap())).collect()
}

#[test]
fn b11_racing_relayers_deliver_each_transfer_once_across_a_kill_and_timeouts_are_refunded() {
    let mut net = Devnet::up(&[
        "--settlement-window",
        "4",
        "--anchor-window",
        "16",
        "--heartbeat",
        "200ms",
        "--bridge",
        "2",
        "--funded-accounts",
        "100",
    ]);
    assert!(net.genesis.bridge.enabled);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let late_id = rt.block_on(async {
        let endpoint = Endpoint::bind(&net.client_key, EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let b = NetBridge::register(&endpoint, &net.genesis).unwrap();
        let scope = net.genesis.tx_scope();
        b.intake().wait_for_validators(net.genesis.validators.len(), WITHIN).await.unwrap();

        // N locks each way from distinct senders to their own keys on the other chain,
        // and one lock from chain 1 whose timeout (1 height) passes before any anchor
        // can cover it: it must be refunded.
        let mut txs = Vec::new();
        let mut expected: BTreeMap<(ChainId, PublicKey), u128> = BTreeMap::new();
        for (src, dest) in [(ONE, TWO), (TWO, ONE)] {
            for i in 0..N {
                let k = test_key(src, i);
                let amount = 100 + i;
                txs.push(ledger::bridge_lock(&k, scope, src, 0, AssetId::NATIVE, amount, dest, k.public(), 10_000));
                *expected.entry((dest, k.public())).or_default() += u128::from(amount);
            }
        }
        let late = test_key(ONE, N);
        let late_before = balance(&b, ONE, &late.public(), AssetId::NATIVE).await;
        txs.push(ledger::bridge_lock(&late, scope, ONE, 0, AssetId::NATIVE, 777, TWO, late.public(), 1));
        for r in b.intake().submit_many(txs).await {
            r.unwrap();
        }

        // Kill one relayer once deliveries have begun; restart it a little later.
        let start = Instant::now();
        loop {
            let got = receipts(&b, TWO, ONE).await.len() + receipts(&b, ONE, TWO).await.len();
            if got > 0 {
                break;
            }
            assert!(start.elapsed() < WITHIN, "no delivery within {WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        net.kill("bridge-0");
        tokio::time::sleep(Duration::from_secs(2)).await;
        net.restart("bridge-0");
        net.wait_ready("bridge-0").await;

        // Every message ends: N delivered each way; the late one timed out and refunded.
        let start = Instant::now();
        loop {
            let to_two = receipts(&b, TWO, ONE).await;
            let to_one = receipts(&b, ONE, TWO).await;
            let out = b.all_outbox(ONE, TWO, 0).await.unwrap();
            let refunded = out.iter().filter(|e| e.refunded_at.is_some()).count();
            if to_two.len() as u64 == N + 1 && to_one.len() as u64 == N && refunded == 1 {
                let delivered = to_two.values().filter(|k| **k == ReceiptKind::Delivered).count();
                assert_eq!(delivered as u64, N);
                assert!(to_one.values().all(|k| *k == ReceiptKind::Delivered));
                let late_msg = out.iter().find(|e| e.message.sender == late.public()).unwrap();
                assert_eq!(to_two[&late_msg.message.sequence], ReceiptKind::TimedOut);
                assert!(late_msg.refunded_at.is_some());
                break;
            }
            assert!(
                start.elapsed() < WITHIN,
                "not all messages ended: {} → 2, {} → 1 received, {refunded} refunded",
                to_two.len(),
                to_one.len()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // Balances to the unit: each recipient got its amount once (not twice, for all
        // the racing and the restart); the late sender has its 777 back.
        for ((chain, who), amount) in &expected {
            let origin = if *chain == TWO { ONE } else { TWO };
            let wrapped = ledger::wrapped_asset_id(origin, AssetId::NATIVE);
            assert_eq!(balance(&b, *chain, who, wrapped).await, *amount, "{who} on {chain}");
        }
        assert_eq!(balance(&b, ONE, &late.public(), AssetId::NATIVE).await, late_before);

        // The supply invariant, through the library and through the CLI.
        let chains = [ONE, TWO];
        let mut first = Vec::new();
        for c in chains {
            first.push(b.totals(c).await.unwrap());
        }
        let mut second = Vec::new();
        for c in chains {
            second.push(b.totals(c).await.unwrap());
        }
        let report = lamina_bridge_core::audit(&first, &second).unwrap();
        assert_eq!(report.pairs, 2);
        let out = b.all_outbox(ONE, TWO, 0).await.unwrap();
        let late_id = out.iter().find(|e| e.message.sender == late.public()).unwrap().message.id();
        endpoint.shutdown().await;
        late_id
    });
    // `bridge status --json` for scripts: the late message's whole life.
    let out =
        lamina().args(["bridge", "status", &late_id.to_hex(), "--json", "--devnet", s(&net.dir)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "refunded", "{v}");
    assert_eq!((v["source"].as_u64(), v["dest"].as_u64(), v["value"].as_str()), (Some(1), Some(2), Some("777")), "{v}");
    assert!(v["received_at"].as_u64().is_some() && v["refunded_at"].as_u64().is_some(), "{v}");
    let out = lamina().args(["bridge", "audit", "--devnet", s(&net.dir)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("audit: ok"), "{text}");

    // The 16-height anchor window was exercised: the settlement node forgot anchors (it
    // no longer serves the first heights), and the execution nodes proved messages
    // again against newer anchors.
    // (Forgetting runs as the log moves on: idle heights come every 200 ms.)
    let started = Instant::now();
    let serves_from = loop {
        let st = net.status("settlement-0").unwrap();
        let serves_from = st["anchors_serve_from"].as_u64().unwrap_or_default();
        if serves_from > 1 || started.elapsed() > WITHIN {
            break serves_from;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(serves_from > 1, "settlement forgot no anchor");
    // Relayers follow governance like the other client nodes.
    for name in net.names("bridge-") {
        let st = net.status(&name).unwrap();
        assert!(st["governance"]["epoch"].as_u64().is_some(), "{name}: {st}");
    }
    let refreshed: f64 = net
        .names("execution-")
        .iter()
        .filter_map(|n| common::get_text(net.node(n)["admin"].as_str().unwrap(), "/metrics"))
        .flat_map(|m| {
            m.lines()
                .filter(|l| l.starts_with("lamina_execution_bridge_proofs_refreshed_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(refreshed > 0.0, "no bridge proof was made again");
}
