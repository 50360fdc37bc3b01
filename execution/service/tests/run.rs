#![allow(clippy::unwrap_used)]
//! The service entry point: follows the log, serves queries over real QUIC (pinned keys)
//! and HTTP, reports readiness, and stops cleanly on shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lamina_execution_service::adapters::RecordingSettlement;
use lamina_execution_service::query::{QueryProtocol, QueryRequest, QueryResponse};
use lamina_execution_service::{Seams, run};
use lamina_interfaces::{Health, InMemoryLog};
use lamina_net::{Endpoint, EndpointConfig, PeerSet, ProtocolConfig};
use lamina_primitives::{Height, Keypair, NodeId};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_and_serves_quic_and_http() {
    let mut genesis = common::genesis();
    let exec_addr = lamina_net::ports::one_udp();
    genesis.execution_nodes[0].addr = exec_addr;
    let f = fixture_with(10, genesis.clone()).await;
    let want = reference_roots(&f);
    let http = lamina_net::ports::one_tcp();
    let dir = tempfile::tempdir().unwrap();
    let health = Health::new();
    let access = lamina_net::Access::default();
    let ctx = lamina_net::NodeContext::new(exec_key(), Arc::new(genesis), dir.path().to_path_buf(), health.clone())
        .with_access(access.clone());
    let log = InMemoryLog::new();
    for b in &f.blocks {
        log.append(b.clone()).unwrap();
    }
    let settlement = RecordingSettlement::default();
    let config = lamina_execution_service::Config { http_listen: Some(http), ..config() };
    let stop = CancellationToken::new();
    let service = tokio::spawn(run(
        ctx,
        config,
        Seams { log: log.clone(), da: f.da.clone(), settlement: settlement.clone(), anchors: None, params: None },
        EndpointConfig::new(exec_addr),
        stop.clone(),
    ));

    // Wait for readiness (caught up with the log tip).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !health.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "not ready: {:?}", health.checks());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // QUIC query from a validator's key (pinned in genesis).
    let client_key = Keypair::for_testing(0);
    let client = Endpoint::bind(&client_key, EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let exec_id: NodeId = exec_key().public();
    let net = client
        .register_client::<QueryProtocol>(
            PeerSet::new().with_dial(exec_id, exec_addr),
            ProtocolConfig::for_protocol::<QueryProtocol>(),
        )
        .unwrap();
    net.wait_connected(&exec_id, Duration::from_secs(10)).await.unwrap();
    // Ready allows a few heights of lag behind the log tip: wait for the last height
    // rather than assuming it is already executed (that race made this test flaky).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match net.request(&exec_id, &QueryRequest::Status).await.unwrap() {
            QueryResponse::Status(s) if s.height == Height(10) => {
                assert_eq!(s.state_root, want[9]);
                break;
            }
            QueryResponse::Status(s) => {
                assert!(s.height < Height(10), "executed past the log: {s:?}");
                assert!(tokio::time::Instant::now() < deadline, "stuck at {s:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let acct = Keypair::for_testing(SEED + 1).public();
    assert!(matches!(
        net.request(&exec_id, &QueryRequest::Nonce(acct)).await.unwrap(),
        QueryResponse::Nonce(Height(10), _)
    ));
    // Queries are open by default: a key in no genesis list is served.
    let stranger =
        Endpoint::bind(&Keypair::for_testing(999), EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let snet = stranger
        .register_client::<QueryProtocol>(
            PeerSet::new().with_dial(exec_id, exec_addr),
            ProtocolConfig::for_protocol::<QueryProtocol>(),
        )
        .unwrap();
    snet.wait_connected(&exec_id, Duration::from_secs(10)).await.unwrap();
    assert!(matches!(
        snet.request(&exec_id, &QueryRequest::Nonce(acct)).await.unwrap(),
        QueryResponse::Nonce(Height(10), _)
    ));
    // Closed to genesis keys: the stranger is disconnected and told why on its next dial.
    access.set_policy(lamina_net::AccessPolicy { open: false, allowed_clients: vec![] });
    let err = snet.connect(exec_id, exec_addr).await.unwrap_err();
    assert!(matches!(err, lamina_net::NetError::AccessDenied { .. }), "{err:?}");
    stranger.shutdown().await;

    // HTTP.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(&want[9].to_hex()), "{resp}");

    // Clean shutdown.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), service).await.unwrap().unwrap().unwrap();
    client.shutdown().await;
    stranger.shutdown().await;
    // One claim per height with data (all but 5 and 10), chained.
    let claims = check_claim_chain(&settlement.0.lock().unwrap(), &reference_steps(&f), false);
    assert_eq!(claims.len(), 8);
    assert_eq!(claims.last().unwrap().to, Height(9));
}

/// DA that answers the first `allowed` retrievals and never answers another: the
/// chain's data stops arriving while the log keeps growing.
#[derive(Clone)]
struct Stalling {
    inner: lamina_test_utils::FakeDa,
    allowed: Arc<std::sync::atomic::AtomicUsize>,
}

impl lamina_interfaces::DataAvailability for Stalling {
    fn submit(
        &self,
        blobs: Vec<lamina_interfaces::Blob>,
    ) -> impl std::future::Future<
        Output = Result<lamina_primitives::AvailabilityCertificate, lamina_interfaces::DaError>,
    > + Send {
        self.inner.submit(blobs)
    }

    fn get_namespace(
        &self,
        commitment: &lamina_primitives::DataCommitment,
        namespace: lamina_primitives::Namespace,
    ) -> impl std::future::Future<Output = Result<Vec<Vec<u8>>, lamina_interfaces::DaError>> + Send {
        let (inner, commitment) = (self.inner.clone(), commitment.clone());
        let go = self
            .allowed
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok();
        async move {
            if !go {
                std::future::pending::<()>().await;
            }
            inner.get_namespace(&commitment, namespace).await
        }
    }
}

/// A chain that cannot progress (its data never arrives while the log grows) turns the
/// `progress` readiness check false, naming the height and the log tip; the node stays
/// alive (it keeps waiting for the data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_cannot_progress_is_reported_not_ready() {
    let mut genesis = common::genesis();
    let exec_addr = lamina_net::ports::one_udp();
    genesis.execution_nodes[0].addr = exec_addr;
    let f = fixture_with(40, genesis.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let health = Health::new();
    let ctx = lamina_net::NodeContext::new(exec_key(), Arc::new(genesis), dir.path().to_path_buf(), health.clone());
    let log = InMemoryLog::new();
    for b in &f.blocks {
        log.append(b.clone()).unwrap();
    }
    let da = Stalling { inner: f.da.clone(), allowed: Arc::new(std::sync::atomic::AtomicUsize::new(3)) };
    let stop = CancellationToken::new();
    let service = tokio::spawn(run(
        ctx,
        config(),
        Seams { log: log.clone(), da, settlement: RecordingSettlement::default(), anchors: None, params: None },
        EndpointConfig::new(exec_addr),
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let detail = loop {
        if let Some(c) = health.checks().get("progress").filter(|c| !c.ok) {
            break c.detail.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "never reported the stall: {:?}", health.checks());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!health.is_ready());
    assert!(detail.contains("log tip 40") && detail.contains("no block executed"), "{detail}");
    assert!(!service.is_finished(), "the node keeps waiting for the data");
    stop.cancel();
    service.await.unwrap().unwrap();
}
