//! Transport behaviour over real QUIC on 127.0.0.1: request/response, messages,
//! broadcast, pinning, protocol negotiation, bad frames, handler faults, limits,
//! shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use lamina_net::frame::{FrameKind, HEADER_LEN, header};
use lamina_net::{Fault, NetError, PeerSet, ProtocolConfig, RejectKind, StreamError};
use lamina_primitives::codec;

fn cfg() -> ProtocolConfig {
    ProtocolConfig::for_protocol::<EchoV1>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_request_response_both_directions() {
    let (a, ka) = endpoint(1);
    let (b, kb) = endpoint(2);
    let (ha, _) = Echo::new();
    let (hb, _) = Echo::new();
    // a accepts b; b dials a.
    let na = a.register::<EchoV1, _>(ha, PeerSet::new().with_accept(kb.public()), cfg()).unwrap();
    let nb = b.register::<EchoV1, _>(hb, PeerSet::new().with_dial(ka.public(), a.local_addr()), cfg()).unwrap();
    nb.wait_connected(&ka.public(), WAIT).await.unwrap();
    let resp = nb.request(&ka.public(), &Msg::echo(7, vec![1, 2, 3])).await.unwrap();
    assert_eq!(resp, Msg::echo(7, vec![1, 2, 3]));
    // The accepting side can request over the inbound connection too.
    na.wait_connected(&kb.public(), WAIT).await.unwrap();
    let resp = na.request(&kb.public(), &Msg::echo(8, vec![])).await.unwrap();
    assert_eq!(resp.n, 8);
    // Many concurrent requests on one connection, all matched to their own response.
    let futs = (0..500u64).map(|i| {
        let nb = nb.clone();
        let peer = ka.public();
        async move { nb.request(&peer, &Msg::echo(i, i.to_le_bytes().to_vec())).await }
    });
    let all = futures::future::join_all(futs).await;
    for (i, r) in all.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.n, i as u64);
        assert_eq!(r.data, (i as u64).to_le_bytes().to_vec());
    }
    // Snapshot shows the connection and its traffic.
    let snap = b.snapshot();
    let p = &snap.protocols[0];
    assert_eq!(p.protocol, "lamina/echo/1");
    assert_eq!(p.peers_connected, 1);
    let c = &p.connections[0];
    assert!(c.bytes_out > 0 && c.bytes_in > 0 && c.messages_out >= 501);
    assert!(c.rtt_ms > 0.0);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["protocols"][0]["connections"][0]["direction"], "outbound");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_only_registration_asks_but_rejects_incoming_requests() {
    let (server, ks) = endpoint(120);
    let (client, kc) = endpoint(121);
    let (hs, mut server_messages) = Echo::new();
    let ns = server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    let nc =
        client.register_client::<EchoV1>(PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg()).unwrap();
    nc.wait_connected(&ks.public(), WAIT).await.unwrap();
    ns.wait_connected(&kc.public(), WAIT).await.unwrap();
    // The client asks and sends as usual.
    assert_eq!(nc.request(&ks.public(), &Msg::echo(1, vec![9])).await.unwrap(), Msg::echo(1, vec![9]));
    nc.send(&ks.public(), &Msg::echo(2, vec![])).await.unwrap();
    assert_eq!(server_messages.recv().await.unwrap(), (kc.public(), Msg::echo(2, vec![])));
    // A request to the client is rejected as unsupported, naming the protocol.
    let err = ns.request(&kc.public(), &Msg::echo(3, vec![])).await.unwrap_err();
    match &err {
        NetError::Rejected(r) => {
            assert_eq!(r.kind, RejectKind::Unsupported);
            assert_eq!(r.reason, "this node is a client of lamina/echo/1: it serves no requests");
        }
        other => panic!("expected an unsupported rejection, got {other:?}"),
    }
    assert!(err.is_peer_fault());
    // A one-way message to the client is dropped; the connection keeps working both ways.
    ns.send(&kc.public(), &Msg::echo(4, vec![])).await.unwrap();
    assert_eq!(nc.request(&ks.public(), &Msg::echo(5, vec![])).await.unwrap().n, 5);
    assert!(ns.request(&kc.public(), &Msg::echo(6, vec![])).await.is_err());
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_messages_arrive_in_order_and_broadcast_reaches_three_peers() {
    let (hub, khub) = endpoint(10);
    let (hh, _) = Echo::new();
    let mut peers = PeerSet::new();
    let mut spokes = Vec::new();
    for seed in 11..14 {
        let (ep, kp) = endpoint(seed);
        let (h, rx) = Echo::new();
        let net = ep.register::<EchoV1, _>(h, PeerSet::new().with_accept(khub.public()), cfg()).unwrap();
        peers = peers.with_dial(kp.public(), ep.local_addr());
        spokes.push((ep, kp, rx, net));
    }
    let net = hub.register::<EchoV1, _>(hh, peers, cfg()).unwrap();
    net.wait_for_peers(3, WAIT).await.unwrap();
    // In-order one-way messages to one peer.
    let first = spokes[0].1.public();
    for i in 0..200 {
        net.send(&first, &Msg::echo(i, vec![i as u8; 10])).await.unwrap();
    }
    for i in 0..200 {
        let (from, m) = tokio::time::timeout(WAIT, spokes[0].2.recv()).await.unwrap().unwrap();
        assert_eq!(from, khub.public());
        assert_eq!(m.n, i);
    }
    // Broadcast to all three.
    let ids: Vec<_> = spokes.iter().map(|s| s.1.public()).collect();
    let results = net.broadcast(&ids, &Msg::echo(999, b"hello".to_vec())).await.unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    for s in &mut spokes {
        let (_, m) = tokio::time::timeout(WAIT, s.2.recv()).await.unwrap().unwrap();
        assert_eq!(m, Msg::echo(999, b"hello".to_vec()));
    }
    // Broadcast reports an unknown peer without failing the others.
    let stranger = lamina_primitives::Keypair::for_testing(99).public();
    let results = net.broadcast(&[ids[0], stranger], &Msg::echo(1, vec![])).await.unwrap();
    assert!(results[0].1.is_ok());
    assert!(matches!(results[1].1, Err(NetError::UnknownPeer(_))));
    hub.shutdown().await;
    for s in spokes {
        s.0.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinned_client_is_refused_by_the_server() {
    let (server, ks) = endpoint(20);
    let (client, _kc) = endpoint(21);
    let (hs, _) = Echo::new();
    let (hc, _) = Echo::new();
    // The server pins some other key only.
    let someone = lamina_primitives::Keypair::for_testing(29).public();
    server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(someone), cfg()).unwrap();
    let nc =
        client.register::<EchoV1, _>(hc, PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg()).unwrap();
    // The dialer keeps failing; the typed error is visible through a direct dial.
    assert!(nc.wait_connected(&ks.public(), Duration::from_millis(500)).await.is_err());
    let err = nc.connect(ks.public(), server.local_addr()).await.unwrap_err();
    assert!(matches!(err, NetError::AccessDenied { .. }), "{err:?}");
    assert!(err.is_peer_fault());
    eventually(|| server.snapshot().handshake_failures.get("peer_not_allowed").copied().unwrap_or(0) >= 1).await;
    server.shutdown().await;
    client.shutdown().await;
}

/// A refused client learns why from the waits and requests themselves, at once: the
/// dialer's refusal is kept and reported (not a `Timeout` after the full wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_is_told_why_by_waits_and_requests() {
    let (server, ks) = endpoint(22);
    let (client, _kc) = endpoint(23);
    let (hs, _) = Echo::new();
    let (hc, _) = Echo::new();
    let someone = lamina_primitives::Keypair::for_testing(28).public();
    server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(someone), cfg()).unwrap();
    let nc =
        client.register::<EchoV1, _>(hc, PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg()).unwrap();
    // A wait far longer than the test: it must end with the refusal, not the timeout.
    let err = nc.wait_connected(&ks.public(), Duration::from_secs(3600)).await.unwrap_err();
    match &err {
        NetError::AccessDenied { reason, .. } => {
            assert!(reason.contains("not allowed") && reason.contains(&ks.public().to_string()), "{reason}")
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    let err = nc.wait_for_peers(1, Duration::from_secs(3600)).await.unwrap_err();
    assert!(matches!(err, NetError::AccessDenied { .. }), "{err:?}");
    let err = nc.request(&ks.public(), &Msg::echo(1, vec![])).await.unwrap_err();
    assert!(matches!(err, NetError::AccessDenied { .. }), "{err:?}");
    server.shutdown().await;
    client.shutdown().await;
}

/// Strangers from one address share a smaller cap than strangers in all: minting keys
/// on one machine cannot take every open slot. The refusal names the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped_per_address() {
    let mut config = test_config(localhost());
    config.limits.max_open_connections = 10;
    config.limits.max_open_connections_per_ip = 2;
    let ks = lamina_primitives::Keypair::for_testing(34);
    let server = lamina_net::Endpoint::bind(&ks, config).unwrap();
    let (hs, _) = Echo::new();
    server.register::<EchoV1, _>(hs, PeerSet::new().open_to_any(true), cfg()).unwrap();
    let dial = || PeerSet::new().with_dial(ks.public(), server.local_addr());
    let mut clients = Vec::new();
    for seed in 35..37 {
        let (ep, _) = endpoint(seed);
        let (h, _) = Echo::new();
        let n = ep.register::<EchoV1, _>(h, dial(), cfg()).unwrap();
        n.wait_connected(&ks.public(), WAIT).await.unwrap();
        clients.push(ep);
    }
    let (third, _) = endpoint(37);
    let (h, _) = Echo::new();
    let n = third.register::<EchoV1, _>(h, dial(), cfg()).unwrap();
    let err = n.connect(ks.public(), server.local_addr()).await.unwrap_err();
    match &err {
        NetError::Handshake { reason, .. } => {
            assert!(reason.starts_with("busy") && reason.contains("from 127.0.0.1"), "{reason}")
        }
        other => panic!("expected the per-address refusal, got {other:?}"),
    }
    clients.push(third);
    server.shutdown().await;
    for ep in clients {
        ep.shutdown().await;
    }
}

/// An open protocol serves keys it does not pin (any wallet key), within the cap on
/// such connections; a pinned key is not counted against that cap, and another
/// protocol of the same endpoint stays closed to the stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_protocol_serves_unknown_keys_within_the_cap() {
    let mut config = test_config(localhost());
    config.limits.max_open_connections = 1;
    let ks = lamina_primitives::Keypair::for_testing(24);
    let server = lamina_net::Endpoint::bind(&ks, config).unwrap();
    let (pinned, kp) = endpoint(25);
    let (stranger, _) = endpoint(26);
    let (late, _) = endpoint(27);
    let (hs, _) = Echo::new();
    let (h2, _) = Echo::new();
    server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(kp.public()).open_to_any(true), cfg()).unwrap();
    server.register::<Other, _>(h2, PeerSet::new().with_accept(kp.public()), cfg()).unwrap();
    let dial = || PeerSet::new().with_dial(ks.public(), server.local_addr());
    let (ha, _) = Echo::new();
    let ns = stranger.register::<EchoV1, _>(ha, dial(), cfg()).unwrap();
    ns.wait_connected(&ks.public(), WAIT).await.unwrap();
    assert_eq!(ns.request(&ks.public(), &Msg::echo(5, vec![9])).await.unwrap().n, 5);
    // The pinned key is not an open-access connection.
    let (hp, _) = Echo::new();
    let np = pinned.register::<EchoV1, _>(hp, dial(), cfg()).unwrap();
    np.wait_connected(&ks.public(), WAIT).await.unwrap();
    // A second stranger is over the cap of 1: refused with the reason, at once.
    let (hl, _) = Echo::new();
    let nl = late.register::<EchoV1, _>(hl, dial(), cfg()).unwrap();
    let err = nl.connect(ks.public(), server.local_addr()).await.unwrap_err();
    match &err {
        NetError::Handshake { reason, .. } => {
            assert!(reason.starts_with("busy") && reason.contains("does not pin"), "{reason}")
        }
        other => panic!("expected the cap refusal, got {other:?}"),
    }
    // The stranger cannot use the closed protocol of the same endpoint.
    let (ho, _) = Echo::new();
    let no = stranger.register::<Other, _>(ho, dial(), cfg()).unwrap();
    let err = no.connect(ks.public(), server.local_addr()).await.unwrap_err();
    assert!(matches!(err, NetError::AccessDenied { .. }), "{err:?}");
    for ep in [server, pinned, stranger, late] {
        ep.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_unexpected_key_is_refused_by_the_client() {
    let (server, ks) = endpoint(30);
    let (client, kc) = endpoint(31);
    let (hs, _) = Echo::new();
    let (hc, _) = Echo::new();
    server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    // The client believes another key lives at the server's address.
    let wrong = lamina_primitives::Keypair::for_testing(39).public();
    let nc = client.register::<EchoV1, _>(hc, PeerSet::new().with_accept(wrong), cfg()).unwrap();
    let err = nc.connect(wrong, server.local_addr()).await.unwrap_err();
    match err {
        NetError::UnexpectedPeerKey { expected, presented } => {
            assert_eq!(expected, wrong);
            assert_eq!(presented, Some(ks.public()));
        }
        other => panic!("unexpected {other:?}"),
    }
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pinned_for_one_protocol_cannot_use_another() {
    let (server, ks) = endpoint(40);
    let (client, kc) = endpoint(41);
    let (h1, _) = Echo::new();
    let (h2, _) = Echo::new();
    server.register::<EchoV1, _>(h1, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    let someone = lamina_primitives::Keypair::for_testing(49).public();
    server.register::<Other, _>(h2, PeerSet::new().with_accept(someone), cfg()).unwrap();
    let (hc, _) = Echo::new();
    let nc = client.register::<Other, _>(hc, PeerSet::new().with_accept(ks.public()), cfg()).unwrap();
    let err = nc.connect(ks.public(), server.local_addr()).await.unwrap_err();
    match &err {
        NetError::AccessDenied { protocol, reason, .. } => {
            assert_eq!(protocol, "lamina/other/1");
            assert!(reason.contains("not allowed for lamina/other/1"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_mismatch_names_offered_and_served() {
    let (server, ks) = endpoint(50);
    let (client, kc) = endpoint(51);
    let (h1, _) = Echo::new();
    let (h2, _) = Echo::new();
    server.register::<EchoV1, _>(h1, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    server.register::<Other, _>(h2, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    let (hc, _) = Echo::new();
    let nc = client.register::<EchoV2, _>(hc, PeerSet::new().with_accept(ks.public()), cfg()).unwrap();
    let err = nc.connect(ks.public(), server.local_addr()).await.unwrap_err();
    match &err {
        NetError::ProtocolMismatch { offered, served, .. } => {
            assert_eq!(offered, "lamina/echo/2");
            // Only the other versions of what was offered: an unauthenticated peer
            // does not learn that this endpoint also serves lamina/other/1.
            assert_eq!(served, &vec!["lamina/echo/1".to_string()]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("offered lamina/echo/2") && text.contains("lamina/echo/1"), "{text}");
    eventually(|| server.snapshot().handshake_failures.get("protocol_mismatch").copied().unwrap_or(0) >= 1).await;
    server.shutdown().await;
    client.shutdown().await;
}

/// A client offering a protocol of which the server serves no version is told nothing
/// about what the server does serve (it is not authenticated yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_is_refused_without_listing_the_served_ones() {
    let (server, ks) = endpoint(52);
    let (client, kc) = endpoint(53);
    let (h1, _) = Echo::new();
    server.register::<EchoV1, _>(h1, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    let (hc, _) = Echo::new();
    let nc = client.register::<Other, _>(hc, PeerSet::new().with_accept(ks.public()), cfg()).unwrap();
    match nc.connect(ks.public(), server.local_addr()).await.unwrap_err() {
        NetError::ProtocolMismatch { offered, served, .. } => {
            assert_eq!(offered, "lamina/other/1");
            assert!(served.is_empty(), "served protocols leaked: {served:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.shutdown().await;
    client.shutdown().await;
}

/// A pair: `server` accepts `client`'s key, `client` dials `server`; both connected.
async fn connected_pair(
    s: u64,
    server_cfg: ProtocolConfig,
    client_cfg: ProtocolConfig,
) -> (lamina_net::Endpoint, lamina_net::Network<EchoV1>, lamina_net::Endpoint, lamina_net::Network<EchoV1>) {
    let (server, ks) = endpoint(s);
    let (client, kc) = endpoint(s + 1);
    let (hs, _) = Echo::new();
    let (hc, _) = Echo::new();
    let ns = server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(kc.public()), server_cfg).unwrap();
    let nc = client
        .register::<EchoV1, _>(hc, PeerSet::new().with_dial(ks.public(), server.local_addr()), client_cfg)
        .unwrap();
    nc.wait_connected(&ks.public(), WAIT).await.unwrap();
    ns.wait_connected(&kc.public(), WAIT).await.unwrap();
    (server, ns, client, nc)
}

/// Writes raw bytes on a new bidi stream of `conn` and returns how the server answered:
/// the frames read back, or the reset code.
async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, quinn::ReadToEndError> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // The server may stop reading early; write errors are expected then.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    recv.read_to_end(1 << 20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_fails_its_stream_only() {
    let small = cfg().with_max_frame(1024);
    let (server, ns, client, nc) = connected_pair(60, small, cfg()).await;
    let ks = server.node_id();
    let kc = client.node_id();
    // Our own API refuses to send beyond the limit the server announced.
    let err = nc.request(&ks, &Msg::echo(1, vec![0; 4096])).await.unwrap_err();
    assert!(matches!(err, NetError::FrameTooLarge { max: 1024, .. }), "{err:?}");
    // A raw peer that ignores it gets its stream reset with FRAME_TOO_LARGE...
    let conn = nc.raw().connection(&ks).unwrap();
    let mut bytes = header(FrameKind::Request, 1, 5000).to_vec();
    bytes.extend_from_slice(&[0u8; 5000]);
    match raw_exchange(&conn, &bytes).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(StreamError::from_code(code.into_inner()), StreamError::FrameTooLarge)
        }
        other => panic!("unexpected {other:?}"),
    }
    // ...counted on the server, while the connection and its other streams keep working.
    assert_eq!(ns.raw().fault_count(&kc, Fault::FrameTooLarge), 1);
    for i in 0..20 {
        assert_eq!(nc.request(&ks, &Msg::echo(i, vec![1; 100])).await.unwrap().n, i);
    }
    // And another peer is served as before.
    let (other, ko) = endpoint(62);
    let (ho, _) = Echo::new();
    let mut peers = ns.peers();
    peers = peers.with_accept(ko.public());
    ns.set_peers(peers);
    let no = other.register::<EchoV1, _>(ho, PeerSet::new().with_dial(ks, server.local_addr()), cfg()).unwrap();
    no.wait_connected(&ks, WAIT).await.unwrap();
    assert_eq!(no.request(&ks, &Msg::echo(5, vec![])).await.unwrap().n, 5);
    for ep in [server, client, other] {
        ep.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_answered_or_reset_and_counted() {
    let (server, ns, client, nc) = connected_pair(70, cfg(), cfg()).await;
    let ks = server.node_id();
    let kc = client.node_id();
    // A well-framed request whose body is garbage: rejected as malformed, lane intact.
    let err = nc.raw().request(&ks, Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3])).await.unwrap_err();
    match &err {
        NetError::Rejected(r) => assert_eq!(r.kind, RejectKind::Malformed),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_peer_fault());
    assert_eq!(ns.raw().fault_count(&kc, Fault::Decode), 1);
    assert_eq!(nc.request(&ks, &Msg::echo(1, vec![])).await.unwrap().n, 1);
    // An unknown frame kind: the stream is reset with MALFORMED_FRAME.
    let conn = nc.raw().connection(&ks).unwrap();
    let mut bytes = header(FrameKind::Request, 1, 0).to_vec();
    bytes[4] = 0x7f;
    match raw_exchange(&conn, &bytes).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(StreamError::from_code(code.into_inner()), StreamError::MalformedFrame)
        }
        other => panic!("unexpected {other:?}"),
    }
    // A stream that ends inside a frame.
    let bytes = &header(FrameKind::Request, 1, 10)[..HEADER_LEN - 3];
    assert!(raw_exchange(&conn, bytes).await.is_err());
    assert!(ns.raw().fault_count(&kc, Fault::MalformedFrame) >= 2);
    // A well-formed raw request on a fresh stream still works, framed by hand.
    let body = codec::encode(&Msg::echo(42, vec![9])).unwrap();
    let mut bytes = header(FrameKind::Request, 77, body.len()).to_vec();
    bytes.extend_from_slice(&body);
    let reply = raw_exchange(&conn, &bytes).await.unwrap();
    assert_eq!(reply[4], FrameKind::Response as u8);
    assert_eq!(u64::from_le_bytes(reply[5..13].try_into().unwrap()), 77);
    assert_eq!(codec::decode::<Msg>(&reply[HEADER_LEN..]).unwrap().n, 42);
    // Typed traffic is unaffected throughout.
    assert_eq!(nc.request(&ks, &Msg::echo(2, vec![])).await.unwrap().n, 2);
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_and_hang_do_not_take_the_endpoint_down() {
    let server_cfg = ProtocolConfig { handler_timeout: Duration::from_millis(300), ..cfg() };
    let (server, ns, client, nc) = connected_pair(80, server_cfg, cfg()).await;
    let ks = server.node_id();
    let kc = client.node_id();
    let (m1, m2, m3, m4) = (
        Msg { op: op::PANIC, n: 1, data: vec![] },
        Msg { op: op::HANG, n: 2, data: vec![] },
        Msg::echo(3, vec![]),
        Msg { op: op::REJECT, n: 4, data: vec![] },
    );
    let panicking = nc.request(&ks, &m1);
    let hanging = nc.request(&ks, &m2);
    let fine = nc.request(&ks, &m3);
    let rejected = nc.request(&ks, &m4);
    let (p, h, f, r) = tokio::join!(panicking, hanging, fine, rejected);
    assert!(matches!(p, Err(NetError::Rejected(ref x)) if x.kind == RejectKind::Internal), "{p:?}");
    assert!(matches!(h, Err(NetError::Rejected(ref x)) if x.kind == RejectKind::Timeout), "{h:?}");
    assert_eq!(f.unwrap().n, 3);
    assert!(
        matches!(r, Err(NetError::Rejected(ref x)) if x.kind == RejectKind::BadRequest && x.reason == "rejecting 4")
    );
    assert_eq!(ns.raw().fault_count(&kc, Fault::HandlerPanic), 1);
    assert_eq!(ns.raw().fault_count(&kc, Fault::HandlerTimeout), 1);
    assert_eq!(nc.request(&ks, &Msg::echo(5, vec![])).await.unwrap().n, 5);
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_do_not_block_small_requests() {
    let (server, _ns, client, nc) = connected_pair(90, cfg(), cfg()).await;
    let ks = server.node_id();
    let big: Vec<u8> = (0..(8usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let big_msg = Msg::echo(1, big.clone());
    let large = nc.request(&ks, &big_msg);
    let small = async {
        let mut n = 0;
        for i in 0..50 {
            assert_eq!(nc.request(&ks, &Msg::echo(100 + i, vec![1])).await.unwrap().n, 100 + i);
            n += 1;
        }
        n
    };
    let (large, small) = tokio::join!(large, small);
    let large = large.unwrap();
    assert_eq!(large.n, 1);
    assert!(large.data == big, "8 MiB payload round-tripped");
    assert_eq!(small, 50);
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_limit_is_applied() {
    let (server, ks) = endpoint(100);
    let kc = lamina_primitives::Keypair::for_testing(101);
    let mut cfg_c = test_config(localhost());
    cfg_c.limits.max_concurrent_bidi_streams = 4;
    // The limit a node announces is what the peer may open towards it: give the server
    // the limit and open streams from the client.
    let mut cfg_s = test_config(localhost());
    cfg_s.limits.max_concurrent_bidi_streams = 4;
    drop(server);
    let server = lamina_net::Endpoint::bind(&ks, cfg_s).unwrap();
    let client = lamina_net::Endpoint::bind(&kc, cfg_c).unwrap();
    let (hs, _) = Echo::new();
    let (hc, _) = Echo::new();
    server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
    let nc =
        client.register::<EchoV1, _>(hc, PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg()).unwrap();
    nc.wait_connected(&ks.public(), WAIT).await.unwrap();
    let conn = nc.raw().connection(&ks.public()).unwrap();
    use futures::FutureExt;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(conn.open_bi().now_or_never().expect("within the limit").unwrap());
    }
    // The fifth stream must wait for credit.
    let mut fifth = Box::pin(conn.open_bi());
    assert!((&mut fifth).now_or_never().is_none(), "a fifth concurrent stream was allowed");
    // Closing one stream on both sides returns the credit.
    let (mut send, mut recv) = streams.pop().unwrap();
    send.finish().unwrap();
    recv.read_to_end(1024).await.unwrap();
    let (_s5, _r5) = tokio::time::timeout(WAIT, fifth).await.unwrap().unwrap();
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let (server, _ns, client, nc) = connected_pair(110, cfg(), cfg()).await;
    // (The client's dial of the shut-down server below fails after its connect timeout.)
    let ks = server.node_id();
    let slow = tokio::spawn({
        let nc = nc.clone();
        async move { nc.request(&ks, &Msg { op: op::SLOW, n: 1, data: vec![] }).await }
    });
    // Let the request reach the server's handler, then shut the server down.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
    assert_eq!(slow.await.unwrap().unwrap().n, 1, "in-flight request answered before close");
    // The connection is closed with the shutdown code and not re-established.
    let err = nc.request(&ks, &Msg::echo(2, vec![])).await.unwrap_err();
    assert!(matches!(err, NetError::NotConnected { .. } | NetError::ConnectionLost(_)), "{err:?}");
    let err = nc.connect(ks, server.local_addr()).await.unwrap_err();
    assert!(matches!(err, NetError::Handshake { .. }), "{err:?}");
    client.shutdown().await;
    // Idempotent.
    server.shutdown().await;
}

/// A policy change applies at once to protocols registered through [`lamina_net::Access`]:
/// closing disconnects the strangers and refuses their next dial, keys on the allow-list
/// stay; the endpoint still shuts down (the registry holds no strong handle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_policy_changes_apply_to_live_connections() {
    use lamina_net::{Access, AccessPolicy};
    let (server, ks) = endpoint(60);
    let (stranger, _) = endpoint(61);
    let (friend, kf) = endpoint(62);
    let access = Access::new(AccessPolicy::default());
    let (hs, _) = Echo::new();
    access.register::<EchoV1, _>(&server, hs, PeerSet::new(), cfg()).unwrap();
    let dial = || PeerSet::new().with_dial(ks.public(), server.local_addr());
    let (h1, _) = Echo::new();
    let ns = stranger.register::<EchoV1, _>(h1, dial(), cfg()).unwrap();
    let (h2, _) = Echo::new();
    let nf = friend.register::<EchoV1, _>(h2, dial(), cfg()).unwrap();
    ns.wait_connected(&ks.public(), WAIT).await.unwrap();
    nf.wait_connected(&ks.public(), WAIT).await.unwrap();
    access.set_policy(AccessPolicy { open: false, allowed_clients: vec![kf.public()] });
    eventually(|| !ns.is_connected(&ks.public())).await;
    let err = ns.connect(ks.public(), server.local_addr()).await.unwrap_err();
    assert!(matches!(err, NetError::AccessDenied { .. }), "{err:?}");
    assert_eq!(nf.request(&ks.public(), &Msg::echo(3, vec![])).await.unwrap().n, 3);
    // Open again: the stranger is served.
    access.set_policy(AccessPolicy::default());
    ns.connect(ks.public(), server.local_addr()).await.unwrap();
    for ep in [server, stranger, friend] {
        ep.shutdown().await;
    }
}

/// Path MTU discovery reaches large datagrams on loopback and keeps them under bulk
/// load, both below the segmentation-offload limit (ten datagrams per write) and above
/// it, where writes of ten would exceed 64 KiB and be dropped (discovery then fell back
/// to 1,200 bytes): there datagrams go one per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_datagrams_survive_bulk_transfers_above_the_offload_limit() {
    for (seed, payload) in [(140, lamina_net::GSO_MAX_UDP_PAYLOAD), (150, 8_952)] {
        let bind = |seed: u64| {
            let kp = lamina_primitives::Keypair::for_testing(seed);
            let mut c = test_config(localhost());
            c.limits.max_udp_payload = payload;
            // The socket buffer a kernel with the default `net.core.rmem_max` gives.
            c.limits.socket_buffer = 200_000;
            (lamina_net::Endpoint::bind(&kp, c).unwrap(), kp)
        };
        let (server, ks) = bind(seed);
        let (client, kc) = bind(seed + 1);
        let (hs, _) = Echo::new();
        let (hc, _) = Echo::new();
        let _ns = server.register::<EchoV1, _>(hs, PeerSet::new().with_accept(kc.public()), cfg()).unwrap();
        let nc = client
            .register::<EchoV1, _>(hc, PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg())
            .unwrap();
        nc.wait_connected(&ks.public(), WAIT).await.unwrap();
        let big: Vec<u8> = (0..(8usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
        for i in 0..2 {
            let back = nc.request(&ks.public(), &Msg::echo(i, big.clone())).await.unwrap();
            assert!(back.data == big, "8 MiB round-tripped at max_udp_payload {payload}");
        }
        let mtu = || nc.raw().snapshot().connections.iter().map(|c| c.path_mtu).max().unwrap_or(0);
        eventually(|| mtu() >= 4_000).await;
        assert!(mtu() <= payload, "path MTU {} above max_udp_payload {payload}", mtu());
        server.shutdown().await;
        client.shutdown().await;
    }
}
