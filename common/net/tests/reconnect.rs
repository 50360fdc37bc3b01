//! A dialed peer that disappears (its process is killed) and comes back on the same
//! address is reconnected automatically. The peer is a real child process (this test
//! binary, re-executed through `lamina_test_utils::child`), killed with SIGKILL.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use lamina_net::{Endpoint, PeerSet, ProtocolConfig};
use lamina_primitives::Keypair;
use lamina_test_utils::child::{self, TestChild};

const SERVER_SEED: u64 = 500;
const CLIENT_SEED: u64 = 501;

/// Not a test by itself: the body of the child process, which serves the echo protocol
/// on `port` until it is killed. Returns at once unless started by [`TestChild`].
#[test]
fn child_server() {
    let Some(port) = child::spec::<u16>("child_server") else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let key = Keypair::for_testing(SERVER_SEED);
        let ep = Endpoint::bind(&key, test_config(SocketAddr::from(([127, 0, 0, 1], port)))).unwrap();
        let (h, _rx) = Echo::new();
        let peers = PeerSet::new().with_accept(Keypair::for_testing(CLIENT_SEED).public());
        ep.register::<EchoV1, _>(h, peers, ProtocolConfig::for_protocol::<EchoV1>()).unwrap();
        println!("READY {}", ep.local_addr());
        std::future::pending::<()>().await;
    });
}

/// Started on a runtime worker (`block_in_place`), not a blocking-pool thread: the
/// child's parent-death signal follows the thread that started it, and an idle pool
/// thread exits after 10 s.
fn spawn_server(port: u16) -> (TestChild, SocketAddr) {
    let mut child = TestChild::piped("child_server", &port);
    let addr = child.wait_for("READY ", Duration::from_secs(60)).expect("child exited before it was ready");
    (child, addr.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_peer_restarted_on_same_address_is_redialed() {
    let (mut child, addr) = tokio::task::block_in_place(|| spawn_server(0));
    let server = Keypair::for_testing(SERVER_SEED).public();
    let kc = Keypair::for_testing(CLIENT_SEED);
    let mut cfg = test_config(localhost());
    // Short idle timeout: even without a stateless reset, the dead connection is
    // noticed within 2 s.
    cfg.limits.idle_timeout = Duration::from_secs(2);
    cfg.limits.keep_alive = Duration::from_millis(300);
    let client = Endpoint::bind(&kc, cfg).unwrap();
    let (h, _) = Echo::new();
    let net = client
        .register::<EchoV1, _>(h, PeerSet::new().with_dial(server, addr), ProtocolConfig::for_protocol::<EchoV1>())
        .unwrap();
    net.wait_connected(&server, WAIT).await.unwrap();
    assert_eq!(net.request(&server, &Msg::echo(1, vec![])).await.unwrap().n, 1);

    // The peer disappears: requests fail, nothing hangs.
    child.kill();
    let err = net.request_with_timeout(&server, &Msg::echo(2, vec![]), Duration::from_millis(500)).await.unwrap_err();
    assert!(!err.is_local_fault(), "{err:?}");

    // It comes back on the same address; the dialer finds it without help.
    let (_child2, addr2) = tokio::task::block_in_place(|| spawn_server(addr.port()));
    assert_eq!(addr2, addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 3;
    loop {
        match net.request_with_timeout(&server, &Msg::echo(n, vec![]), Duration::from_secs(1)).await {
            Ok(r) => {
                assert_eq!(r.n, n);
                break;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "not reconnected: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                n += 1;
            }
        }
    }
    let snap = net.raw().snapshot();
    assert_eq!(snap.peers_connected, 1);
    assert!(snap.connections.iter().all(|c| c.remote_addr == addr));
    client.shutdown().await;
}
