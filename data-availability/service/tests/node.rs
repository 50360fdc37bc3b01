//! DA nodes in this process (tasks) over real QUIC and real files: bad input is
//! rejected with typed errors and counted while the node keeps serving; retention
//! prunes; a wrongly encoded square is answered with a fraud proof at retrieval.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use lamina_da_client::RetrieveError;
use lamina_da_client::protocol::{ColumnData, DaProtocol, DaRequest, DaResponse, StoreRequest};
use lamina_da_core::tree::Axis;
use lamina_da_core::{
    Assignment, BadEncodingProof, CodecId, CommittedSquare, ExtendedSquare, OriginalSquare, Parallelism, extend,
};
use lamina_da_service::Config;
use lamina_interfaces::{Blob, DataAvailability};
use lamina_net::{NetError, Network, PeerSet, RejectKind};
use lamina_primitives::{ChainId, Namespace, NodeId};

/// A raw protocol handle for sending hand-made (bad) requests. Its frame limit is
/// larger than the nodes' so that it can send oversize requests.
fn raw_net(endpoint: &lamina_net::Endpoint, g: &lamina_interfaces::Genesis) -> Network<DaProtocol> {
    let mut peers = PeerSet::new();
    for e in &g.da_nodes {
        peers = peers.with_dial(e.key, e.addr);
    }
    let mut config = lamina_da_client::protocol_config();
    config = config.with_max_frame(64 << 20);
    endpoint.register_client::<DaProtocol>(peers, config).unwrap()
}

fn bare_endpoint(j: usize) -> lamina_net::Endpoint {
    lamina_net::Endpoint::bind(&client_key(j), lamina_net::EndpointConfig::new("127.0.0.1:0".parse().unwrap())).unwrap()
}

fn rejected(r: Result<DaResponse, NetError>) -> RejectKind {
    match r {
        Err(NetError::Rejected(rej)) => rej.kind,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn square(seed: u8) -> CommittedSquare {
    let blobs = vec![
        Blob { namespace: Namespace::from(ChainId(1)), data: vec![seed; 40_000] },
        Blob { namespace: Namespace::from(ChainId(2)), data: vec![seed ^ 0xFF; 9_000] },
    ];
    CommittedSquare::build(&blobs, CodecId::Leopard16, Parallelism::Rayon).unwrap()
}

fn store_req(sq: &CommittedSquare, cols: &[u32]) -> DaRequest {
    DaRequest::Store(StoreRequest {
        commitment: sq.commitment(),
        header: sq.header().clone(),
        columns: cols.iter().map(|&c| ColumnData { index: c, bytes: sq.eds().column(c as usize) }).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let g = Arc::new(genesis(4));
    let nodes: Vec<_> =
        (0..4).map(|i| spawn_node(&g, i, &dir.path().join(format!("n{i}")), Config::default())).collect();
    let (client, endpoint) = client(&g, 0);
    client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let ep2 = bare_endpoint(1);
    let net = raw_net(&ep2, &g);
    let node0: NodeId = g.da_nodes[0].key;
    net.wait_connected(&node0, Duration::from_secs(10)).await.unwrap();

    let sq = square(3);
    let k = sq.eds().k();
    let a = Assignment::new(4, g.da_threshold(), k);
    let mine = a.columns_of(0);
    let other = a.columns_of(1);

    // A column that is not this node's.
    assert_eq!(rejected(net.request(&node0, &store_req(&sq, &other[..1])).await), RejectKind::BadRequest);
    // A column index beyond the square's 2k columns (once an out-of-bounds index into
    // the header's column roots: the node must answer, not panic).
    let mut req = store_req(&sq, &mine[..1]);
    if let DaRequest::Store(s) = &mut req {
        s.columns[0].index = (2 * k + mine[0] as usize) as u32;
    }
    match net.request(&node0, &req).await {
        Err(NetError::Rejected(r)) => {
            assert_eq!(r.kind, RejectKind::BadRequest);
            assert!(r.reason.contains("outside"), "{}", r.reason);
        }
        other => panic!("out-of-range column: {other:?}"),
    }
    // A column whose bytes do not match its root.
    let mut req = store_req(&sq, &mine[..1]);
    if let DaRequest::Store(s) = &mut req {
        s.columns[0].bytes[100] ^= 1;
    }
    assert_eq!(rejected(net.request(&node0, &req).await), RejectKind::BadRequest);
    // A column of the wrong length.
    if let DaRequest::Store(s) = &mut req {
        s.columns[0].bytes.truncate(512);
    }
    assert_eq!(rejected(net.request(&node0, &req).await), RejectKind::BadRequest);
    // A commitment that misstates the namespaces.
    let mut req = store_req(&sq, &mine);
    if let DaRequest::Store(s) = &mut req {
        s.commitment.namespaces.push(Namespace::from(ChainId(99)));
    }
    assert_eq!(rejected(net.request(&node0, &req).await), RejectKind::BadRequest);
    // A header that does not hash to the data root.
    let mut req = store_req(&sq, &mine);
    if let DaRequest::Store(s) = &mut req {
        s.header.row_roots[0].0[0] ^= 1;
    }
    assert_eq!(rejected(net.request(&node0, &req).await), RejectKind::BadRequest);
    // A column that matches its committed root but is not a codeword: the disperser
    // committed to garbage in column `c`.
    let o = OriginalSquare::from_blobs(
        &[Blob { namespace: Namespace::from(ChainId(5)), data: vec![1; 30_000] }],
        CodecId::Leopard16,
    )
    .unwrap();
    let mut cells = extend(&o, CodecId::Leopard16, Parallelism::Sequential).unwrap().into_cells();
    let w = 2 * o.k();
    let c = a.columns_of(0)[0] as usize;
    let at = ((w - 1) * w + c) * 512;
    cells[at] ^= 0xFF;
    let bad = CommittedSquare::commit(
        ExtendedSquare::from_cells(o.k(), CodecId::Leopard16, cells).unwrap(),
        o.table(),
        Parallelism::Sequential,
    )
    .unwrap();
    let a_bad = Assignment::new(4, g.da_threshold(), o.k());
    assert_eq!(rejected(net.request(&node0, &store_req(&bad, &a_bad.columns_of(0))).await), RejectKind::BadRequest);
    // Undecodable bytes and unknown squares.
    let garbage = net.raw().request(&node0, Bytes::from_static(b"\x01\x02\x03 not a request")).await;
    assert!(matches!(garbage, Err(NetError::Rejected(r)) if r.kind == RejectKind::Malformed));
    assert_eq!(rejected(net.request(&node0, &DaRequest::Header(sq.data_root())).await), RejectKind::Unavailable);
    // An oversize request (above the node's frame limit) fails its stream only.
    let limit = lamina_da_client::protocol_config().max_request;
    let huge = net.raw().request(&node0, Bytes::from(vec![0u8; limit + 4096])).await;
    assert!(huge.is_err(), "oversize request accepted");

    // Nothing of the above was stored or signed; the node still serves everyone.
    let cert = client
        .submit(vec![
            Blob { namespace: Namespace::from(ChainId(1)), data: vec![3; 40_000] },
            Blob { namespace: Namespace::from(ChainId(2)), data: vec![3 ^ 0xFF; 9_000] },
        ])
        .await
        .unwrap();
    assert_eq!(cert.commitment, sq.commitment());
    assert_eq!(cert.signatures.signer_indices().len(), 3);
    let got = client.get_namespace(&cert.commitment, Namespace::from(ChainId(2))).await.unwrap();
    assert_eq!(got, vec![vec![3 ^ 0xFF; 9_000]]);
    // Out-of-range requests are typed rejections.
    let req = DaRequest::ColumnRanges(lamina_da_client::protocol::RangesRequest {
        data_root: sq.data_root(),
        first_row: 5,
        end_row: 5,
        columns: vec![0],
    });
    assert_eq!(rejected(net.request(&node0, &req).await), RejectKind::BadRequest);
    let req =
        DaRequest::Sample(lamina_da_client::protocol::CellRef { data_root: sq.data_root(), row: 10_000, col: mine[0] });
    assert_eq!(rejected(net.request(&node0, &req).await), RejectKind::BadRequest);
    // And a good sample verifies.
    let p = client.fetch_sample(&node0, sq.data_root(), 1, mine[0]).await.unwrap();
    assert_eq!(p.coordinates(), (1, mine[0]));

    ep2.shutdown().await;
    endpoint.shutdown().await;
    for (stop, h) in nodes {
        stop.cancel();
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_squares() {
    let dir = tempfile::tempdir().unwrap();
    let g = Arc::new(genesis(4));
    let config =
        Config { retention: Duration::from_secs(1), prune_interval: Duration::from_millis(200), ..Config::default() };
    let nodes: Vec<_> = (0..4).map(|i| spawn_node(&g, i, &dir.path().join(format!("n{i}")), config.clone())).collect();
    let (client, endpoint) = client(&g, 0);
    client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let cert =
        client.submit(vec![Blob { namespace: Namespace::from(ChainId(4)), data: vec![9; 5_000] }]).await.unwrap();
    assert_eq!(
        client.get_namespace(&cert.commitment, Namespace::from(ChainId(4))).await.unwrap(),
        vec![vec![9; 5_000]]
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // A fresh client (no cached header): every node has pruned the square.
    let (fresh, ep2) = common::client(&g, 1);
    fresh.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let err = fresh.get_namespace(&cert.commitment, Namespace::from(ChainId(4))).await.unwrap_err();
    assert!(matches!(err, lamina_interfaces::DaError::Unavailable(_)), "{err:?}");
    ep2.shutdown().await;
    endpoint.shutdown().await;
    for (stop, h) in nodes {
        stop.cancel();
        h.await.unwrap();
    }
}

/// A node that follows the log keeps a square until the tip passes the height of the
/// block that ordered it plus `retain_heights`, then prunes it; a square no block
/// carried keeps the wall-clock retention; the followed height survives a restart;
/// a `retain_heights` under settlement's challenge window plus margin is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_node_prunes_ordered_squares_by_log_height_and_keeps_unordered_ones() {
    use lamina_interfaces::{Health, InMemoryLog};
    use lamina_primitives::{AvailabilityCertificate, Block, BlockHeader, FinalizedBlock, Height};

    let dir = tempfile::tempdir().unwrap();
    let mut genesis = genesis(4);
    genesis.settlement.challenge_window = 1;
    let g = Arc::new(genesis);
    let floor = lamina_da_service::min_retain_heights(&g);
    assert_eq!(floor, 1_001);
    let config = Config {
        retain_heights: floor,
        retention: Duration::from_secs(3_600),
        prune_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let log = InMemoryLog::new();
    let block = |h: u64, batches: Vec<AvailabilityCertificate>| FinalizedBlock {
        block: Block { header: BlockHeader { height: Height(h), ..Default::default() }, batches },
        certificate: Default::default(),
    };
    let spawn = |i: usize, health: Health| {
        let ctx = lamina_net::NodeContext::new(da_key(i), g.clone(), dir.path().join(format!("n{i}")), health);
        let (stop, cfg, log) = (tokio_util::sync::CancellationToken::new(), config.clone(), log.clone());
        let s = stop.clone();
        // A restarted node rebinds its genesis address; the previous endpoint's socket
        // may take a moment to close.
        let bind = || {
            lamina_net::Endpoint::bind(
                &da_key(i),
                lamina_net::EndpointConfig { listen: g.da_nodes[i].addr, ..Default::default() },
            )
        };
        let mut ep = bind();
        for _ in 0..50 {
            if ep.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            ep = bind();
        }
        let ep = ep.unwrap();
        (
            stop,
            tokio::spawn(async move {
                lamina_da_service::run_following(ep, ctx, cfg, log, None, Default::default(), s).await.unwrap()
            }),
        )
    };
    let healths: Vec<Health> = (0..4).map(|_| Health::new()).collect();
    let mut nodes: Vec<_> = (0..4).map(|i| spawn(i, healths[i].clone())).collect();
    let followed = |hs: &[Health]| -> Vec<u64> {
        hs.iter().map(|h| h.status_json()["followed_height"].as_u64().unwrap_or(0)).collect()
    };
    let wait_followed = |hs: Vec<Health>, want: u64| async move {
        for _ in 0..300 {
            if followed(&hs).iter().all(|&f| f >= want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nodes did not follow to {want}: {:?}", followed(&hs));
    };
    let available = |cert: AvailabilityCertificate, j: usize| {
        let g = g.clone();
        async move {
            // A fresh client each time: no cached header.
            let (c, ep) = common::client(&g, j);
            c.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
            let r = c.get_namespace(&cert.commitment, Namespace::from(ChainId(4))).await;
            ep.shutdown().await;
            r.is_ok()
        }
    };

    let (client, endpoint) = client(&g, 0);
    client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let ordered =
        client.submit(vec![Blob { namespace: Namespace::from(ChainId(4)), data: vec![1; 5_000] }]).await.unwrap();
    let unordered =
        client.submit(vec![Blob { namespace: Namespace::from(ChainId(4)), data: vec![2; 5_000] }]).await.unwrap();
    let cert = |c: &lamina_primitives::AvailabilityCertificate| c.clone();
    // Block 2 orders the first square; blocks up to 2 + retain_heights keep it.
    log.append(block(1, vec![])).unwrap();
    log.append(block(2, vec![cert(&ordered)])).unwrap();
    for h in 3..=2 + floor {
        log.append(block(h, vec![])).unwrap();
    }
    wait_followed(healths.clone(), 2 + floor).await;
    assert!(available(cert(&ordered), 1).await, "pruned while still inside the window");

    // A restart keeps what was followed (the follower resumes after it).
    let (stop, h) = nodes.remove(0);
    stop.cancel();
    h.await.unwrap();
    let fresh = Health::new();
    nodes.insert(0, spawn(0, fresh.clone()));
    wait_followed(vec![fresh.clone()], 2 + floor).await;

    // One more height: the ordered square leaves every node; the unordered one stays.
    log.append(block(3 + floor, vec![])).unwrap();
    let mut hs = healths.clone();
    hs[0] = fresh;
    wait_followed(hs, 3 + floor).await;
    let mut gone = false;
    for _ in 0..100 {
        if !available(cert(&ordered), 1).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the ordered square outlived its window");
    assert!(available(cert(&unordered), 1).await, "a square no block carried was pruned by heights");

    // Under the floor: refused with the reason.
    let ctx = lamina_net::NodeContext::new(da_key(0), g.clone(), dir.path().join("low"), Health::new());
    let ep = lamina_net::Endpoint::bind(&da_key(0), lamina_net::EndpointConfig::default()).unwrap();
    let low = Config { retain_heights: floor - 1, ..config.clone() };
    let err = lamina_da_service::run_following(ep, ctx, low, log.clone(), None, Default::default(), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("challenge window"), "{err}");

    endpoint.shutdown().await;
    for (stop, h) in nodes {
        stop.cancel();
        h.await.unwrap();
    }
}

/// A disperser with a broken row encoder: every column is a codeword matching its root,
/// so every DA node stores and signs; retrieval of a namespace in the bad row detects
/// it against the row root and returns a fraud proof that verifies from the data root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_encoded_row_is_caught_at_retrieval_with_a_fraud_proof() {
    let dir = tempfile::tempdir().unwrap();
    let g = Arc::new(genesis(4));
    let mut nodes: Vec<_> =
        (0..4).map(|i| spawn_node(&g, i, &dir.path().join(format!("n{i}")), Config::default())).collect();
    let ep = bare_endpoint(1);
    let net = raw_net(&ep, &g);
    let (client, endpoint) = client(&g, 0);
    client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    net.wait_for_peers(4, Duration::from_secs(10)).await.unwrap();

    let ns = Namespace::from(ChainId(1));
    // k = 16 (not 11): each column on one node only, so node 0 alone holds some cells.
    let o = OriginalSquare::from_blobs_with(
        &[Blob { namespace: ns, data: (0..60_000u32).map(|i| (i * 7) as u8).collect() }],
        CodecId::Leopard16,
        lamina_da_core::Widths::PowersOfTwo,
    )
    .unwrap();
    let k = o.k();
    let w = 2 * k;
    let mut cells = extend(&o, CodecId::Leopard16, Parallelism::Sequential).unwrap().into_cells();
    // Row 0's parity cell (0, k) is wrong; columns are re-extended from it honestly.
    cells[k * 512] ^= 0x5A;
    for c in 0..w {
        let mut col: Vec<u8> = (0..w).flat_map(|r| cells[(r * w + c) * 512..][..512].to_vec()).collect();
        lamina_da_core::square::encode_axis(CodecId::Leopard16.codec(), k, &mut col).unwrap();
        for r in k..w {
            cells[(r * w + c) * 512..][..512].copy_from_slice(&col[r * 512..][..512]);
        }
    }
    let bad = CommittedSquare::commit(
        ExtendedSquare::from_cells(k, CodecId::Leopard16, cells).unwrap(),
        o.table(),
        Parallelism::Sequential,
    )
    .unwrap();
    let a = Assignment::new(4, g.da_threshold(), k);
    for (i, e) in g.da_nodes.iter().enumerate() {
        match net.request(&e.key, &store_req(&bad, &a.columns_of(i))).await.unwrap() {
            DaResponse::Stored(s) => assert!(s.attestation.is_some(), "node {i} signs: its columns are fine"),
            other => panic!("{other:?}"),
        }
    }
    // Node 0 is down, so row 0 is decoded from parity columns and does not match the
    // committed row root. The verdict is the canonical rule's (the row's first k cells),
    // and node 0 holds some of those: undecided, so unavailable (retry), not a verdict
    // that another executor fetching other cells could contradict.
    let (stop0, h0) = nodes.remove(0);
    stop0.cancel();
    h0.await.unwrap();
    match client.retrieve(&bad.commitment(), ns).await {
        Err(RetrieveError::Da(lamina_interfaces::DaError::Unavailable(m))) => {
            assert!(m.contains("canonical verdict"), "{m}")
        }
        other => panic!("expected an undecided row, got {other:?}"),
    }
    // Node 0 is back: the first k cells are fetched, the row is proven bad, and the
    // proof (made of exactly those cells) verifies from the data root alone.
    nodes.insert(0, spawn_node(&g, 0, &dir.path().join("n0"), Config::default()));
    client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let (fresh, fresh_ep) = common::client(&g, 1);
    fresh.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    for (who, c) in [("the same client", None), ("a fresh client", Some((fresh, fresh_ep)))] {
        let retrieved = match &c {
            Some((c, _)) => c.retrieve(&bad.commitment(), ns).await,
            None => client.retrieve(&bad.commitment(), ns).await,
        };
        match retrieved {
            Err(RetrieveError::BadEncoding(proof)) => {
                assert_eq!((proof.axis, proof.index), (Axis::Row.as_u8(), 0), "{who}");
                let positions: Vec<u32> = proof.cells.iter().map(|c| c.position).collect();
                assert_eq!(positions, (0..k as u32).collect::<Vec<_>>(), "{who}: the canonical cells");
                proof.verify(&bad.data_root()).unwrap();
            }
            other => panic!("{who}: expected a fraud proof, got {other:?}"),
        }
        // Through the DataAvailability seam: a typed, final error with the proof bytes.
        let seam = match &c {
            Some((c, _)) => c.get_namespace(&bad.commitment(), ns).await,
            None => client.get_namespace(&bad.commitment(), ns).await,
        };
        match seam {
            Err(e @ lamina_interfaces::DaError::BadEncoding { .. }) => {
                assert!(e.is_final_for_everyone());
                let lamina_interfaces::DaError::BadEncoding { data_root, row, proof } = e else { unreachable!() };
                assert_eq!((data_root, row), (bad.data_root(), 0));
                let p: BadEncodingProof = lamina_primitives::codec::decode(&proof).unwrap();
                p.verify(&bad.data_root()).unwrap();
            }
            other => panic!("{who}: expected DaError::BadEncoding, got {other:?}"),
        }
        if let Some((_, e)) = c {
            e.shutdown().await;
        }
    }
    ep.shutdown().await;
    endpoint.shutdown().await;
    for (stop, h) in nodes {
        stop.cancel();
        h.await.unwrap();
    }
}

/// DA committees changed by vote: a node outside the genesis committee stores for the
/// committee that names it (`lamina/da/2`'s `StoreFor`) and attests for that committee
/// only; a client that knows both committees disperses to the new one and reads the
/// squares of either; a node refuses a store for a committee it does not know or is not
/// in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committee_changed_by_vote_stores_new_squares_and_old_ones_stay_readable() {
    use lamina_interfaces::{Health, InMemoryLog};
    use lamina_primitives::{Committee, DaCommittee};

    let dir = tempfile::tempdir().unwrap();
    let mut genesis = genesis(4);
    // da3 is not in the genesis committee: it starts outside it.
    let extra = genesis.da_nodes.pop().unwrap();
    genesis.validate().unwrap();
    let g = Arc::new(genesis);
    let old = g.da();
    assert_eq!(old.members.size(), 3);
    let mut keys = old.members.members.clone();
    keys.push(extra.key);
    let new = g.da_committee_of(keys, 3);
    assert!(new.tag.is_some());
    let mut everyone = g.da_nodes.clone();
    everyone.push(extra.clone());

    let committees = lamina_da_service::DaCommittees::default();
    let mut stops = Vec::new();
    for (i, entry) in everyone.iter().enumerate() {
        let ctx = lamina_net::NodeContext::new(da_key(i), g.clone(), dir.path().join(format!("n{i}")), Health::new());
        let ep = lamina_net::Endpoint::bind(&da_key(i), lamina_net::EndpointConfig::new(entry.addr)).unwrap();
        let (stop, c) = (tokio_util::sync::CancellationToken::new(), committees.clone());
        let s = stop.clone();
        let log = InMemoryLog::new();
        tokio::spawn(async move {
            lamina_da_service::run_following(ep, ctx, Config::default(), log, None, c, s).await.unwrap()
        });
        stops.push(stop);
    }
    let (client, endpoint) = client(&g, 0);
    client.wait_for_nodes(3, Duration::from_secs(10)).await.unwrap();
    let (_, blob_a) = batch(1, 20, 100);
    let cert_a = client.submit(vec![blob_a.clone()]).await.unwrap();
    assert!(old.made(&cert_a));
    old.verify(&cert_a).unwrap();

    // Before the nodes know the new committee, a store for it is refused (retryable).
    client.set_committees(vec![new.clone(), old.clone()], &everyone);
    client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let (_, blob_b) = batch(2, 20, 100);
    let early = client.submit(vec![blob_b.clone()]).await.unwrap_err();
    assert!(early.to_string().contains("unknown_committee"), "{early}");

    committees.set(vec![new.clone()]);
    let cert_b = client.submit(vec![blob_b.clone()]).await.unwrap();
    assert!(new.made(&cert_b) && !old.made(&cert_b));
    new.verify(&cert_b).unwrap();
    assert!(old.verify(&cert_b).is_err() && new.verify(&cert_a).is_err());
    assert!(cert_b.signatures.signer_indices().len() >= 3);

    // A reader that knows both committees (the new one first) reads both squares: the
    // old one after the new committee's nodes said they do not hold it.
    let (reader, reader_ep) = self::client(&g, 1);
    reader.set_committees(vec![new.clone(), old.clone()], &everyone);
    reader.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
    let ns = |c: u64| Namespace::from(ChainId(c));
    assert_eq!(reader.get_namespace(&cert_a.commitment, ns(1)).await.unwrap(), vec![blob_a.data.clone()]);
    assert_eq!(reader.get_namespace(&cert_b.commitment, ns(2)).await.unwrap(), vec![blob_b.data.clone()]);
    assert!(reader.misbehaving().is_empty(), "honest nodes blamed: {:?}", reader.misbehaving());
    // The new node holds its columns of the new square, and nothing of the old one.
    let k = cert_b.commitment.square_width as usize;
    let assigned = Assignment::new(4, 3, k).columns_of(3);
    let raw_ep = bare_endpoint(2);
    let raw: Network<DaProtocol> = raw_ep
        .register_client::<DaProtocol>(
            PeerSet::new().with_dial(extra.key, extra.addr),
            lamina_da_client::protocol_config(),
        )
        .unwrap();
    raw.wait_connected(&extra.key, Duration::from_secs(10)).await.unwrap();
    let col = DaRequest::Column(lamina_da_client::protocol::ColumnRef {
        data_root: cert_b.commitment.data_root,
        index: assigned[0],
    });
    assert!(matches!(raw.request(&extra.key, &col).await.unwrap(), DaResponse::Column(_)));
    let header_a = DaRequest::Header(cert_a.commitment.data_root);
    assert_eq!(rejected(raw.request(&extra.key, &header_a).await), RejectKind::Unavailable);

    // A store for the genesis committee, which da3 is not in, is refused with the reason.
    match raw.request(&extra.key, &store_req(&square(9), &[0])).await {
        Err(NetError::Rejected(r)) => assert!(r.reason.contains("not_in_committee"), "{}", r.reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // And a committee nobody set is unknown.
    let stranger = DaCommittee::governed(Committee::new(vec![extra.key]).unwrap(), 1);
    let only = vec![stranger, old.clone()];
    client.set_committees(only, &everyone);
    let (_, blob_c) = batch(3, 5, 100);
    let refused = client.submit(vec![blob_c]).await.unwrap_err();
    assert!(refused.to_string().contains("unknown_committee"), "{refused}");

    for s in stops {
        s.cancel();
    }
    endpoint.shutdown().await;
    reader_ep.shutdown().await;
    raw_ep.shutdown().await;
}

/// A validator added by vote disperses every batch, as the genesis ones do: once the
/// node's governance follower names it, its stores count against no client quota (a
/// client key added by vote stays held to it).
#[test]
fn a_validator_added_by_vote_stores_without_the_client_quota() {
    let dir = tempfile::tempdir().unwrap();
    let g = Arc::new(genesis(4));
    let ctx = node_context(&g, 0, dir.path());
    let joined = lamina_primitives::Keypair::for_testing(77).public();
    ctx.access.set_governed_clients(lamina_net::GovernedClients { added: vec![joined], removed: vec![] });
    std::fs::create_dir_all(dir.path().join("columns")).unwrap();
    let (store, _) =
        lamina_da_service::store::ColumnStore::open(&dir.path().join("columns"), Config::default().store_config())
            .unwrap();
    let committees = lamina_da_service::DaCommittees::default();
    let node = lamina_da_service::DaNode::new(&ctx, Arc::new(store))
        .unwrap()
        .with_committees(committees.clone())
        .with_client_quota(1);
    let sq = square(5);
    let assigned = Assignment::new(4, g.da_threshold(), sq.eds().k()).columns_of(0);
    match node.handle(joined, store_req(&sq, &assigned)) {
        Err(r) => assert!(r.reason.contains("quota_exceeded"), "{}", r.reason),
        Ok(other) => panic!("stored past the quota: {other:?}"),
    }
    committees.set_validators([joined]);
    match node.handle(joined, store_req(&sq, &assigned)) {
        Ok(DaResponse::Stored(s)) => assert!(s.attestation.is_some(), "{s:?}"),
        other => panic!("a validator's store refused: {other:?}"),
    }
}

/// Squares of any width follow the genesis: where it allows them, a disperser lays 97
/// shares out 10 wide; where it does not, 16 wide, and a DA node refuses a 10-wide store
/// with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squares_of_any_width_follow_the_genesis() {
    let ns = Namespace::from(ChainId(1));
    // 40,000 + 9,000 bytes: 79 + 18 = 97 shares.
    let blobs = || {
        vec![
            Blob { namespace: ns, data: vec![3; 40_000] },
            Blob { namespace: Namespace::from(ChainId(2)), data: vec![4; 9_000] },
        ]
    };
    let ten_wide = CommittedSquare::build(&blobs(), CodecId::Leopard16, Parallelism::Sequential).unwrap();
    assert_eq!(ten_wide.eds().k(), 10);
    for any_width in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(lamina_interfaces::Genesis { da_any_width: any_width, ..genesis(4) });
        let nodes: Vec<_> =
            (0..4).map(|i| spawn_node(&g, i, &dir.path().join(format!("n{i}")), Config::default())).collect();
        let (client, endpoint) = client(&g, 0);
        client.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
        let cert = client.submit(blobs()).await.unwrap();
        assert_eq!(cert.commitment.square_width, if any_width { 10 } else { 16 });
        assert_eq!(client.get_namespace(&cert.commitment, ns).await.unwrap(), vec![vec![3; 40_000]]);
        if any_width {
            // A reader under the other rule takes the 10-wide header for invalid data,
            // as releases before the rule did, and blames the nodes that served it.
            let strict = lamina_interfaces::Genesis { da_any_width: false, ..(*g).clone() };
            let (reader, reader_ep) = common::client(&strict, 1);
            reader.wait_for_nodes(4, Duration::from_secs(10)).await.unwrap();
            let err = reader.get_namespace(&cert.commitment, ns).await.unwrap_err();
            assert!(matches!(err, lamina_interfaces::DaError::Unavailable(_)), "{err:?}");
            assert!(!reader.misbehaving().is_empty());
            reader_ep.shutdown().await;
        } else {
            let ep = bare_endpoint(1);
            let net = raw_net(&ep, &g);
            let node0: NodeId = g.da_nodes[0].key;
            net.wait_connected(&node0, Duration::from_secs(10)).await.unwrap();
            let mine = Assignment::new(4, g.da_threshold(), 10).columns_of(0);
            match net.request(&node0, &store_req(&ten_wide, &mine)).await {
                Err(NetError::Rejected(r)) => {
                    assert_eq!(r.kind, RejectKind::BadRequest);
                    assert!(r.reason.contains("not a power of two"), "{}", r.reason);
                }
                other => panic!("a 10-wide square stored where the genesis does not allow it: {other:?}"),
            }
            ep.shutdown().await;
        }
        endpoint.shutdown().await;
        for (stop, h) in nodes {
            stop.cancel();
            h.await.unwrap();
        }
    }
}
