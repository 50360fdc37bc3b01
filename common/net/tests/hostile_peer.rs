//! A hostile peer with an allowed key, against a real endpoint over QUIC on 127.0.0.1:
//! unfinished frames on every stream of several connections, headers claiming the
//! largest frame, stalled frames, unsolicited response streams and a connection flood.
//! The node's memory (this process's resident set, sampled during the attack) and the
//! bytes it lets the peer push stay within the configured budgets, honest peers are
//! still served, and everything the attack held is released when it stops.
//!
//! One test in its own binary, so that the resident-set figures are this attack's alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use lamina_net::frame::{FrameKind, header};
use lamina_net::{Endpoint, Fault, NetError, PeerSet, ProtocolConfig, StreamError};
use lamina_primitives::Keypair;

const MIB: u64 = 1 << 20;
/// The largest request the server accepts: what every hostile header claims.
const MAX_REQUEST: usize = 4 << 20;
const CONN_BUDGET: usize = 8 << 20;
const PEER_BUDGET: usize = 16 << 20;
const RECV_WINDOW: u64 = 8 << 20;
const CONNS: usize = 4;
const STREAMS: usize = 64;

fn rss() -> u64 {
    memory_stats::memory_stats().map(|m| m.physical_mem as u64).unwrap_or(0)
}

fn server_endpoint(kp: &Keypair) -> Endpoint {
    let mut cfg = test_config(localhost());
    cfg.limits.connection_receive_window = RECV_WINDOW;
    cfg.limits.stream_receive_window = MIB;
    cfg.limits.connection_inbound_budget = CONN_BUDGET;
    cfg.limits.peer_inbound_budget = PEER_BUDGET;
    cfg.limits.max_connections_per_peer = CONNS;
    cfg.limits.max_concurrent_bidi_streams = STREAMS as u32;
    Endpoint::bind(kp, cfg).unwrap()
}

/// An endpoint of the hostile key whose own send buffer is small, so that what it
/// manages to write is what the server let in.
fn hostile_endpoint(kp: &Keypair) -> Endpoint {
    let mut cfg = test_config(localhost());
    cfg.limits.send_window = MIB;
    Endpoint::bind(kp, cfg).unwrap()
}

/// Writes an unfinished request frame (header claiming `MAX_REQUEST`, body one byte
/// short) on a new bidi stream, counting the bytes quinn accepted.
async fn unfinished_frame(conn: quinn::Connection, id: u64, written: Arc<AtomicU64>) {
    let Ok((mut send, _recv)) = conn.open_bi().await else { return };
    if send.write_all(&header(FrameKind::Request, id, MAX_REQUEST)).await.is_err() {
        return;
    }
    written.fetch_add(13, Ordering::Relaxed);
    let chunk = vec![0xAB; 64 << 10];
    let mut left = MAX_REQUEST - 1;
    while left > 0 {
        let n = left.min(chunk.len());
        if send.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        written.fetch_add(n as u64, Ordering::Relaxed);
        left -= n;
    }
    // Never finish: hold the stream open.
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_cannot_make_a_node_hold_more_than_its_budget() {
    let ks = Keypair::for_testing(1);
    let kh = Keypair::for_testing(2);
    let ko = Keypair::for_testing(3);
    let server = server_endpoint(&ks);
    let (h1, _) = Echo::new();
    let (h2, _) = Echo::new();
    let accept = PeerSet::new().with_accept(kh.public()).with_accept(ko.public());
    let cfg1 = ProtocolConfig::for_protocol::<EchoV1>().with_max_frame(MAX_REQUEST);
    let ns = server.register::<EchoV1, _>(h1, accept.clone(), cfg1.clone()).unwrap();
    // A second protocol with a short stall timeout (phase 3).
    let cfg2 = ProtocolConfig { read_stall_timeout: Duration::from_millis(300), ..cfg1.clone() };
    let ns2 = server.register::<EchoV2, _>(h2, accept, cfg2.clone()).unwrap();
    let addr = server.local_addr();
    let dial = PeerSet::new().with_dial(ks.public(), addr);

    // The hostile key's connections, up to the cap.
    let mut hostile = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let ep = hostile_endpoint(&kh);
        let (h, _) = Echo::new();
        let n = ep.register::<EchoV1, _>(h, dial.clone(), cfg1.clone()).unwrap();
        n.wait_connected(&ks.public(), WAIT).await.unwrap();
        conns.push(n.raw().connection(&ks.public()).unwrap());
        hostile.push(ep);
    }
    // An honest peer.
    let honest = hostile_endpoint(&ko);
    let (ho, _) = Echo::new();
    let no = honest.register::<EchoV1, _>(ho, dial.clone(), cfg1.clone()).unwrap();
    no.wait_connected(&ks.public(), WAIT).await.unwrap();
    assert_eq!(no.request(&ks.public(), &Msg::echo(1, vec![7; 1000])).await.unwrap().n, 1);

    // ---- Phase 1: unfinished maximum-size frames on every stream of every connection.
    let base = rss();
    let written = Arc::new(AtomicU64::new(0));
    let mut attack = Vec::new();
    for conn in &conns {
        for s in 0..STREAMS {
            attack.push(tokio::spawn(unfinished_frame(conn.clone(), s as u64 + 1, written.clone())));
        }
    }
    let offered = (CONNS * STREAMS * MAX_REQUEST) as u64;
    let mut peak = base;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss());
    }
    let claimed: usize = ns.raw().snapshot().connections.iter().map(|c| c.inbound_claimed_bytes).sum();
    let pushed = written.load(Ordering::Relaxed);
    // What the server may hold: the peer budget, quinn's receive window per connection,
    // 64 KiB read ahead per stream, and the hostile side's own 1 MiB send buffers.
    let bound = PEER_BUDGET as u64 + CONNS as u64 * (RECV_WINDOW + MIB) + (CONNS * STREAMS) as u64 * (64 << 10);
    println!(
        "attack offered {} MiB; the server let in {} MiB (bound {} MiB), claimed {} MiB; RSS {} -> peak {} MiB",
        offered / MIB,
        pushed / MIB,
        bound / MIB,
        claimed / MIB as usize,
        base / MIB,
        peak / MIB
    );
    assert!(claimed <= PEER_BUDGET, "claimed {claimed} bytes over the peer budget");
    for c in ns.raw().snapshot().connections {
        assert!(c.inbound_claimed_bytes <= CONN_BUDGET, "a connection claimed {}", c.inbound_claimed_bytes);
    }
    assert!(pushed <= bound, "the hostile peer pushed {pushed} bytes, over the bound {bound}");
    // Twice the bound for allocator slack and buffer growth; without the budget, the
    // attack pushes the whole 1 GiB offered.
    assert!(peak.saturating_sub(base) <= 2 * bound, "RSS grew {} MiB", (peak - base) / MIB);
    assert!(ns.raw().fault_count(&kh.public(), Fault::BudgetWait) > 0, "no claim ever waited");

    // An honest peer is served meanwhile: its own budget is untouched.
    let r = tokio::time::timeout(WAIT, no.request(&ks.public(), &Msg::echo(2, vec![7; 100_000]))).await;
    assert_eq!(r.unwrap().unwrap().n, 2);

    // ---- Phase 2: the connection cap holds, and says why at once.
    let extra = hostile_endpoint(&kh);
    let (hx, _) = Echo::new();
    let nx = extra.register::<EchoV1, _>(hx, PeerSet::new().with_accept(ks.public()), cfg1.clone()).unwrap();
    let err = nx.connect(ks.public(), addr).await.unwrap_err();
    match &err {
        NetError::Handshake { reason, .. } => {
            assert!(reason.starts_with("busy") && reason.contains("connections"), "{reason}")
        }
        other => panic!("over the cap: {other:?}"),
    }
    assert!(server.snapshot().handshake_failures.get("too_many_connections").copied().unwrap_or(0) >= 1);
    extra.shutdown().await;

    // Ending the attack releases everything it held.
    for t in attack {
        t.abort();
    }
    for ep in hostile.drain(..) {
        ep.shutdown().await;
    }
    eventually(|| ns.raw().snapshot().connections.iter().all(|c| c.inbound_claimed_bytes == 0)).await;

    // ---- Phase 3: frames that stall are dropped after the stall timeout, with their
    // claims; the same connection keeps working.
    let ep = hostile_endpoint(&kh);
    let (h, _) = Echo::new();
    let n2 = ep.register::<EchoV2, _>(h, dial.clone(), cfg2.clone()).unwrap();
    n2.wait_connected(&ks.public(), WAIT).await.unwrap();
    let conn = n2.raw().connection(&ks.public()).unwrap();
    let mut stalled = Vec::new();
    for s in 0..8u64 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&header(FrameKind::Request, s + 1, MAX_REQUEST)).await.unwrap();
        send.write_all(&[1u8; 1000]).await.unwrap();
        stalled.push((send, recv));
    }
    eventually(|| ns2.raw().fault_count(&kh.public(), Fault::Stalled) >= 8).await;
    eventually(|| ns2.raw().snapshot().connections.iter().all(|c| c.inbound_claimed_bytes == 0)).await;
    for (send, _) in &mut stalled {
        let code = tokio::time::timeout(WAIT, send.stopped()).await.unwrap().unwrap().unwrap();
        assert_eq!(StreamError::from_code(code.into_inner()), StreamError::Stalled);
    }
    assert_eq!(n2.request(&ks.public(), &Msg::echo(3, vec![1; 10])).await.unwrap().n, 3);

    // ---- Phase 4: a response stream nobody asked for is refused from its header.
    let mut uni = conn.open_uni().await.unwrap();
    let _ = uni.write_all(&header(FrameKind::Response, 999_999, MAX_REQUEST)).await;
    let _ = uni.write_all(&[0u8; 100_000]).await;
    let code = tokio::time::timeout(WAIT, uni.stopped()).await.unwrap().unwrap().unwrap();
    assert_eq!(StreamError::from_code(code.into_inner()), StreamError::MalformedFrame);
    assert!(ns2.raw().fault_count(&kh.public(), Fault::MalformedFrame) >= 1);

    for ep in [ep, honest, server] {
        ep.shutdown().await;
    }
}
