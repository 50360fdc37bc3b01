//! Protocol version ranges over real QUIC on 127.0.0.1: nodes speaking overlapping
//! ranges of one protocol settle on the highest common version, report it, and refuse
//! ranges that do not overlap at once with the typed mismatch.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use lamina_net::{Direction, NetError, PeerSet, Protocol, ProtocolConfig, ProtocolId};

/// The echo protocol at versions 1 and 2 (the wire types of [`EchoV1`]).
struct EchoV1To2;
impl Protocol for EchoV1To2 {
    const ID: ProtocolId = ProtocolId::range("echo", 1, 2);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

/// The echo protocol at version 3 only.
struct EchoV3;
impl Protocol for EchoV3 {
    const ID: ProtocolId = ProtocolId::new("echo", 3);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

/// The echo protocol at versions 3 and 4.
struct EchoV3To4;
impl Protocol for EchoV3To4 {
    const ID: ProtocolId = ProtocolId::range("echo", 3, 4);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

/// Not a valid range (oldest version newer than the newest).
struct Backwards;
impl Protocol for Backwards {
    const ID: ProtocolId = ProtocolId::range("echo", 3, 2);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

fn cfg() -> ProtocolConfig {
    ProtocolConfig::for_protocol::<EchoV1>()
}

/// A wait far longer than any test: a refusal must end it, never the timeout.
const FOREVER: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_node_and_a_v1_node_interoperate() {
    let (a, ka) = endpoint(300);
    let (b, kb) = endpoint(301);
    let (c, kc) = endpoint(302);
    let (d, kd) = endpoint(303);
    let (e, ke) = endpoint(304);
    let (ha, _) = Echo::new();
    let (hb, _) = Echo::new();
    let (hc, _) = Echo::new();
    let (hd, _) = Echo::new();
    let (he, _) = Echo::new();
    // A speaks 1..2 and dials B (v1 only) and C (1..2); B also dials A, so that each of
    // A and B has an outbound and an inbound connection with the other.
    let na = a
        .register::<EchoV1To2, _>(
            ha,
            PeerSet::new().with_dial(kb.public(), b.local_addr()).with_dial(kc.public(), c.local_addr()),
            cfg(),
        )
        .unwrap();
    let nb = b
        .register::<EchoV1, _>(
            hb,
            PeerSet::new().with_dial(ka.public(), a.local_addr()).with_accept(kd.public()),
            cfg(),
        )
        .unwrap();
    let nc = c
        .register::<EchoV1To2, _>(hc, PeerSet::new().with_accept(ka.public()).with_accept(ke.public()), cfg())
        .unwrap();
    // D speaks only version 3 and dials B; E speaks 3..4 and dials C.
    let nd = d.register::<EchoV3, _>(hd, PeerSet::new().with_dial(kb.public(), b.local_addr()), cfg()).unwrap();
    let ne = e.register::<EchoV3To4, _>(he, PeerSet::new().with_dial(kc.public(), c.local_addr()), cfg()).unwrap();

    // A (1..2) and B (1): version 1, requests both ways.
    na.wait_connected(&kb.public(), WAIT).await.unwrap();
    nb.wait_connected(&ka.public(), WAIT).await.unwrap();
    assert_eq!(na.request(&kb.public(), &Msg::echo(1, vec![1])).await.unwrap(), Msg::echo(1, vec![1]));
    assert_eq!(nb.request(&ka.public(), &Msg::echo(2, vec![2])).await.unwrap(), Msg::echo(2, vec![2]));
    assert_eq!(na.version(&kb.public()), Some(1));
    assert_eq!(nb.version(&ka.public()), Some(1));
    assert_eq!(na.raw().version(&kb.public()), Some(1));
    // A handler learns the version of the connection a request came on.
    let asks = Msg { op: op::VERSION, n: 0, data: vec![] };
    assert_eq!(nb.request(&ka.public(), &asks).await.unwrap().n, 1);
    assert_eq!(na.request(&kb.public(), &asks).await.unwrap().n, 1);
    assert_eq!(lamina_net::request_version(), None, "outside a handler");
    // Both directions of the pair negotiated version 1 (outbound and inbound parsing).
    eventually(|| {
        let snap = a.snapshot();
        let conns: Vec<_> = snap.protocols[0].connections.iter().filter(|c| c.peer == kb.public()).cloned().collect();
        conns.iter().any(|c| c.direction == Direction::Outbound)
            && conns.iter().any(|c| c.direction == Direction::Inbound)
    })
    .await;
    let snap = a.snapshot();
    assert_eq!(snap.protocols.len(), 1, "one registration, listed once");
    let p = &snap.protocols[0];
    assert_eq!((p.protocol.as_str(), p.min_version), ("lamina/echo/2", 1));
    assert!(p.connections.iter().filter(|c| c.peer == kb.public()).all(|c| c.version == 1));
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["protocols"][0]["min_version"], 1);

    // A (1..2) and C (1..2): version 2, on both sides.
    na.wait_connected(&kc.public(), WAIT).await.unwrap();
    nc.wait_connected(&ka.public(), WAIT).await.unwrap();
    assert_eq!(na.request(&kc.public(), &Msg::echo(3, vec![])).await.unwrap().n, 3);
    assert_eq!(nc.request(&ka.public(), &Msg::echo(4, vec![])).await.unwrap().n, 4);
    assert_eq!(nc.request(&ka.public(), &Msg { op: op::VERSION, n: 0, data: vec![] }).await.unwrap().n, 2);
    assert_eq!(na.version(&kc.public()), Some(2));
    assert_eq!(nc.version(&ka.public()), Some(2));
    assert!(c.snapshot().protocols[0].connections.iter().all(|c| c.version == 2));
    // No connection, no version.
    assert_eq!(na.version(&kd.public()), None);

    // D (3) dialing B (1): refused at once with the typed mismatch naming both sides.
    let err = nd.wait_connected(&kb.public(), FOREVER).await.unwrap_err();
    match &err {
        NetError::ProtocolMismatch { offered, served, .. } => {
            assert_eq!(offered, "lamina/echo/3");
            assert_eq!(served, &vec!["lamina/echo/1".to_string()]);
        }
        other => panic!("expected the protocol mismatch, got {other:?}"),
    }
    assert!(err.is_peer_fault());
    let err = nd.request(&kb.public(), &Msg::echo(5, vec![])).await.unwrap_err();
    assert!(matches!(err, NetError::ProtocolMismatch { .. }), "{err:?}");
    assert_eq!(nd.version(&kb.public()), None);

    // E (3..4, offering two versions) dialing C (1..2): the ranges are named.
    let err = ne.wait_connected(&kc.public(), FOREVER).await.unwrap_err();
    match &err {
        NetError::ProtocolMismatch { offered, served, .. } => {
            assert_eq!(offered, "lamina/echo/3..4");
            assert_eq!(served, &vec!["lamina/echo/1..2".to_string()]);
        }
        other => panic!("expected the protocol mismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("offered lamina/echo/3..4, peer serves [lamina/echo/1..2]"), "{text}");
    eventually(|| c.snapshot().handshake_failures.get("protocol_mismatch").copied().unwrap_or(0) >= 1).await;

    // The refused dials disturbed nothing.
    assert_eq!(na.request(&kb.public(), &Msg::echo(6, vec![])).await.unwrap().n, 6);
    assert_eq!(na.request(&kc.public(), &Msg::echo(7, vec![])).await.unwrap().n, 7);
    for ep in [a, b, c, d, e] {
        ep.shutdown().await;
    }
}

/// A server that registers versions 1 and 2 of a module separately serves both: a 1..2
/// dialer gets version 2 (the newer registration), a v1 dialer version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_registrations_of_two_versions_are_both_served() {
    let (server, ks) = endpoint(310);
    let (new, kn) = endpoint(311);
    let (old, ko) = endpoint(312);
    let accept = PeerSet::new().with_accept(kn.public()).with_accept(ko.public());
    let (h1, _) = Echo::new();
    let (h2, _) = Echo::new();
    let s1 = server.register::<EchoV1, _>(h1, accept.clone(), cfg()).unwrap();
    let s2 = server.register::<EchoV2, _>(h2, accept, cfg()).unwrap();
    let (hn, _) = Echo::new();
    let (ho, _) = Echo::new();
    let nn =
        new.register::<EchoV1To2, _>(hn, PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg()).unwrap();
    let no = old.register::<EchoV1, _>(ho, PeerSet::new().with_dial(ks.public(), server.local_addr()), cfg()).unwrap();
    nn.wait_connected(&ks.public(), WAIT).await.unwrap();
    no.wait_connected(&ks.public(), WAIT).await.unwrap();
    assert_eq!(nn.version(&ks.public()), Some(2));
    assert_eq!(no.version(&ks.public()), Some(1));
    s2.wait_connected(&kn.public(), WAIT).await.unwrap();
    s1.wait_connected(&ko.public(), WAIT).await.unwrap();
    assert!(!s1.is_connected(&kn.public()) && !s2.is_connected(&ko.public()));
    assert_eq!(nn.request(&ks.public(), &Msg::echo(1, vec![])).await.unwrap().n, 1);
    assert_eq!(no.request(&ks.public(), &Msg::echo(2, vec![])).await.unwrap().n, 2);
    for ep in [server, new, old] {
        ep.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_registrations_of_one_module_are_refused() {
    let (ep, _) = endpoint(320);
    let register_v1 = || ep.register::<EchoV1, _>(Echo::new().0, PeerSet::new(), cfg()).err();
    assert!(register_v1().is_none());
    // The same version again.
    match register_v1() {
        Some(NetError::Config(m)) => assert!(m.contains("lamina/echo/1 is already registered"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A range that includes a registered version.
    match ep.register::<EchoV1To2, _>(Echo::new().0, PeerSet::new(), cfg()).err() {
        Some(NetError::Config(m)) => {
            assert!(m.contains("lamina/echo/1..2 overlaps the registered lamina/echo/1"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // An invalid range.
    match ep.register::<Backwards, _>(Echo::new().0, PeerSet::new(), cfg()).err() {
        Some(NetError::Config(m)) => assert!(m.contains("newer than"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The refused range left nothing behind: version 2 is free, as are 3..4.
    ep.register::<EchoV2, _>(Echo::new().0, PeerSet::new(), cfg()).unwrap();
    ep.register::<EchoV3To4, _>(Echo::new().0, PeerSet::new(), cfg()).unwrap();
    match ep.register::<EchoV3, _>(Echo::new().0, PeerSet::new(), cfg()).err() {
        Some(NetError::Config(m)) => {
            assert!(m.contains("lamina/echo/3 overlaps the registered lamina/echo/3..4"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let snap = ep.snapshot();
    let listed: Vec<(&str, u32)> = snap.protocols.iter().map(|p| (p.protocol.as_str(), p.min_version)).collect();
    assert_eq!(listed, vec![("lamina/echo/1", 1), ("lamina/echo/2", 2), ("lamina/echo/4", 3)]);
    ep.shutdown().await;
}
