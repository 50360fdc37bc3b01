//! lamina-net between two processes: QUIC bulk transfer and small request/response rate,
//! each beside raw TCP on loopback with the same bytes and the same process layout.
//!
//! The bench binary re-executes itself (`--lamina-net-server`) as the server process:
//! one lamina-net endpoint and one TCP listener on 127.0.0.1. The server exits when its
//! stdin closes, so an interrupted or failed bench never leaves it behind (and it is
//! killed on drop as well).
//!
//! Groups (criterion ids):
//! * `net::bulk/quic-messages` — 64 MiB as 1 MiB one-way messages on one connection,
//!   then a sync request answered once the server has received everything;
//!   `net::bulk/quic-requests` — the same bytes as 1 MiB requests, 4 in flight, each on a
//!   stream of its own; `net::bulk/tcp` — the same bytes in 1 MiB writes on one TCP
//!   connection, then a 1-byte ack.
//! * `net::rpc/quic-pipelined` — 20,000 typed request/responses (32-byte payloads) on one
//!   connection, 256 in flight (lamina-net's request lanes);
//!   `net::rpc/quic-stream-per-request` — the same over one QUIC stream per request (what
//!   quinn gives per stream), 48 in flight; `net::rpc/tcp-pipelined` — the same frames over
//!   one TCP connection, 256 in flight.
//!
//! Run: `cargo bench -p lamina-benches --bench net`. `LAMINA_NET_BENCH_MTU` sets the
//! endpoints' `max_udp_payload` (default: lamina-net's default, 1452).

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lamina_net::frame::{FrameKind, HEADER_LEN, header};
use lamina_net::{Endpoint, EndpointConfig, Handler, Network, PeerSet, Protocol, ProtocolConfig, ProtocolId, Reject};
use lamina_primitives::{Keypair, NodeId, Wire, codec};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const SERVER_ARG: &str = "--lamina-net-server";
const SERVER_SEED: u64 = 0xbe_0001;
const CLIENT_SEED: u64 = 0xbe_0002;
const BULK_BYTES: usize = 64 << 20;
const CHUNK: usize = 1 << 20;
const RPC_COUNT: usize = 20_000;
const RPC_WINDOW: usize = 256;
const STREAM_WINDOW: usize = 48;
const PAYLOAD: usize = 32;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
struct Msg {
    op: u8,
    n: u64,
    data: Vec<u8>,
}

impl Wire for Msg {
    const NAME: &'static str = "BenchMsg";
    const MAX_SIZE: usize = 4 << 20;
}

const OP_ECHO: u8 = 0;
const OP_SYNC: u8 = 1;

struct Bench;
impl Protocol for Bench {
    const ID: ProtocolId = ProtocolId::new("bench", 1);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

/// Echoes requests; counts message bytes; answers a sync once `n` bytes have arrived.
struct Server {
    received: AtomicU64,
    arrived: Notify,
}

impl Handler<Bench> for Arc<Server> {
    async fn request(&self, _peer: NodeId, req: Msg) -> Result<Msg, Reject> {
        match req.op {
            OP_SYNC => loop {
                let notified = self.arrived.notified();
                let got = self.received.load(Ordering::Acquire);
                if got >= req.n {
                    return Ok(Msg { op: OP_SYNC, n: got, data: vec![] });
                }
                notified.await;
            },
            // Bulk requests: acknowledge without echoing the megabyte back.
            _ if req.data.len() > 1024 => Ok(Msg { op: req.op, n: req.data.len() as u64, data: vec![] }),
            _ => Ok(req),
        }
    }

    async fn message(&self, _peer: NodeId, msg: Msg) {
        self.received.fetch_add(msg.data.len() as u64, Ordering::AcqRel);
        self.arrived.notify_waiters();
    }
}

fn endpoint_config() -> EndpointConfig {
    let mut cfg = EndpointConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    if let Some(mtu) = std::env::var("LAMINA_NET_BENCH_MTU").ok().and_then(|v| v.parse().ok()) {
        cfg.limits.max_udp_payload = mtu;
    }
    cfg
}

fn protocol_config() -> ProtocolConfig {
    ProtocolConfig::for_protocol::<Bench>().with_max_frame(4 << 20)
}

fn runtime() -> tokio::runtime::Runtime {
    let threads = std::env::var("LAMINA_NET_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("tokio runtime")
}

// ------------------------------------------------------------------------ server process

fn server_main() {
    let rt = runtime();
    rt.block_on(async {
        let key = Keypair::for_testing(SERVER_SEED);
        let ep = Endpoint::bind(&key, endpoint_config()).expect("bind");
        let server = Arc::new(Server { received: AtomicU64::new(0), arrived: Notify::new() });
        let peers = PeerSet::new().with_accept(Keypair::for_testing(CLIENT_SEED).public());
        ep.register::<Bench, _>(server, peers, protocol_config()).expect("register");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("tcp bind");
        let tcp_addr = tcp.local_addr().expect("tcp addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(tcp_serve(stream));
            }
        });
        println!("READY {} {}", ep.local_addr(), tcp_addr);
        // Exit when the parent closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        })
        .await
        .ok();
        ep.shutdown().await;
    });
}

/// TCP server: first byte selects bulk (`B`) or request/response (`R`).
async fn tcp_serve(stream: TcpStream) -> std::io::Result<()> {
    let (r, w) = stream.into_split();
    let mut r = TokioBufReader::with_capacity(256 << 10, r);
    let mut w = BufWriter::with_capacity(256 << 10, w);
    let mode = r.read_u8().await?;
    if mode == b'B' {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut left = r.read_u64_le().await? as usize;
            while left > 0 {
                let n = r.read(&mut buf[..left.min(CHUNK)]).await?;
                if n == 0 {
                    return Ok(());
                }
                left -= n;
            }
            w.write_u8(1).await?;
            w.flush().await?;
        }
    }
    let mut head = [0u8; HEADER_LEN];
    let mut body = vec![0u8; 1 << 16];
    loop {
        r.read_exact(&mut head).await?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > body.len() {
            return Ok(());
        }
        r.read_exact(&mut body[..len]).await?;
        // Decode and re-encode like the QUIC handler does, so both sides do the same work.
        let msg = codec::decode::<Msg>(&body[..len]).map_err(std::io::Error::other)?;
        let out = codec::encode(&msg).map_err(std::io::Error::other)?;
        head[4] = FrameKind::Response as u8;
        head[..4].copy_from_slice(&(out.len() as u32).to_le_bytes());
        w.write_all(&head).await?;
        w.write_all(&out).await?;
        if r.buffer().is_empty() {
            w.flush().await?;
        }
    }
}

/// The server child process; killed on drop, and it exits by itself when our end of its
/// stdin closes.
struct ServerProcess {
    child: std::process::Child,
    quic: SocketAddr,
    tcp: SocketAddr,
}

impl ServerProcess {
    #[allow(clippy::zombie_processes)] // Drop kills and waits for it
    fn spawn() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .arg(SERVER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server process");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("server exited before READY").expect("read server stdout");
            if let Some(rest) = line.strip_prefix("READY ") {
                let mut parts = rest.split_whitespace();
                let quic = parts.next().and_then(|a| a.parse().ok()).expect("quic addr");
                let tcp = parts.next().and_then(|a| a.parse().ok()).expect("tcp addr");
                return ServerProcess { child, quic, tcp };
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------ client side

struct Client {
    ep: Endpoint,
    net: Network<Bench>,
    server: NodeId,
    sent_bulk: AtomicU64,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let ep = Endpoint::bind(&Keypair::for_testing(CLIENT_SEED), endpoint_config()).expect("bind");
        let server = Keypair::for_testing(SERVER_SEED).public();
        let sink = Arc::new(Server { received: AtomicU64::new(0), arrived: Notify::new() });
        let net =
            ep.register::<Bench, _>(sink, PeerSet::new().with_dial(server, addr), protocol_config()).expect("register");
        net.wait_connected(&server, Duration::from_secs(10)).await.expect("connect");
        Client { ep, net, server, sent_bulk: AtomicU64::new(0) }
    }

    async fn bulk_messages(&self) {
        let chunk = Msg { op: OP_ECHO, n: 0, data: vec![0xab; CHUNK - 64] };
        let per = chunk.data.len() as u64;
        let n = BULK_BYTES / CHUNK;
        for _ in 0..n {
            self.net.send(&self.server, &chunk).await.expect("send");
        }
        let total = self.sent_bulk.fetch_add(per * n as u64, Ordering::Relaxed) + per * n as u64;
        let sync = Msg { op: OP_SYNC, n: total, data: vec![] };
        self.net.request_with_timeout(&self.server, &sync, Duration::from_secs(60)).await.expect("sync");
    }

    async fn bulk_requests(&self) {
        let chunk = Msg { op: OP_ECHO, n: 0, data: vec![0xcd; CHUNK - 64] };
        let mut inflight: FuturesUnordered<_> = FuturesUnordered::new();
        let push = |inflight: &mut FuturesUnordered<_>| {
            inflight.push(self.net.request_with_timeout(&self.server, &chunk, Duration::from_secs(60)))
        };
        for _ in 0..BULK_BYTES / CHUNK {
            if inflight.len() >= 4 {
                let r: Result<Msg, _> = inflight.next().await.expect("in flight");
                r.expect("bulk request");
            }
            push(&mut inflight);
        }
        while let Some(r) = inflight.next().await {
            let r: Result<Msg, _> = r;
            r.expect("bulk request");
        }
    }

    async fn rpc_pipelined(&self, count: usize) {
        let reqs: Vec<Msg> = (0..count as u64).map(|n| Msg { op: OP_ECHO, n, data: vec![7; PAYLOAD] }).collect();
        let mut inflight = FuturesUnordered::new();
        let mut done = 0usize;
        for r in &reqs {
            if inflight.len() >= RPC_WINDOW {
                let resp: Result<Msg, _> = inflight.next().await.expect("in flight");
                let resp = resp.expect("request");
                assert_eq!(resp.data.len(), PAYLOAD);
                done += 1;
            }
            inflight.push(self.net.request(&self.server, r));
        }
        while let Some(r) = inflight.next().await {
            let r: Result<Msg, _> = r;
            r.expect("request");
            done += 1;
        }
        assert_eq!(done, count);
    }

    async fn rpc_stream_per_request(&self, count: usize) {
        let conn = self.net.raw().connection(&self.server).expect("connection");
        let one = |n: u64| {
            let conn = conn.clone();
            async move {
                let body = codec::encode(&Msg { op: OP_ECHO, n, data: vec![7; PAYLOAD] }).expect("encode");
                let mut frame = header(FrameKind::Request, n, body.len()).to_vec();
                frame.extend_from_slice(&body);
                let (mut send, mut recv) = conn.open_bi().await.expect("open");
                send.write_all(&frame).await.expect("write");
                send.finish().expect("finish");
                let reply = recv.read_to_end(1 << 16).await.expect("read");
                let msg = codec::decode::<Msg>(&reply[HEADER_LEN..]).expect("decode");
                assert_eq!(msg.n, n);
            }
        };
        let mut inflight = FuturesUnordered::new();
        for n in 0..count as u64 {
            if inflight.len() >= STREAM_WINDOW {
                inflight.next().await;
            }
            inflight.push(one(n));
        }
        while inflight.next().await.is_some() {}
    }
}

struct TcpBulk {
    stream: TcpStream,
}

impl TcpBulk {
    async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.write_u8(b'B').await.expect("mode");
        TcpBulk { stream }
    }

    async fn transfer(&mut self, chunk: &[u8]) {
        self.stream.write_u64_le(BULK_BYTES as u64).await.expect("len");
        for _ in 0..BULK_BYTES / CHUNK {
            self.stream.write_all(chunk).await.expect("write");
        }
        assert_eq!(self.stream.read_u8().await.expect("ack"), 1);
    }
}

async fn tcp_rpc(addr: SocketAddr, count: usize) {
    let stream = TcpStream::connect(addr).await.expect("tcp connect");
    stream.set_nodelay(true).expect("nodelay");
    let (r, w) = stream.into_split();
    let mut r = TokioBufReader::with_capacity(256 << 10, r);
    let mut w = BufWriter::with_capacity(256 << 10, w);
    w.write_u8(b'R').await.expect("mode");
    let frame = |n: u64| {
        let body = codec::encode(&Msg { op: OP_ECHO, n, data: vec![7; PAYLOAD] }).expect("encode");
        let mut f = header(FrameKind::Request, n, body.len()).to_vec();
        f.extend_from_slice(&body);
        f
    };
    let mut sent = 0usize;
    while sent < RPC_WINDOW.min(count) {
        w.write_all(&frame(sent as u64)).await.expect("write");
        sent += 1;
    }
    w.flush().await.expect("flush");
    let mut head = [0u8; HEADER_LEN];
    let mut body = vec![0u8; 1 << 16];
    for _ in 0..count {
        if r.buffer().is_empty() {
            w.flush().await.expect("flush");
        }
        r.read_exact(&mut head).await.expect("read");
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        r.read_exact(&mut body[..len]).await.expect("read body");
        let msg = codec::decode::<Msg>(&body[..len]).expect("decode");
        assert_eq!(msg.data.len(), PAYLOAD);
        if sent < count {
            w.write_all(&frame(sent as u64)).await.expect("write");
            sent += 1;
        }
    }
}

/// Runs `f` as a task on the runtime (not on the calling thread), as a service would:
/// everything then runs on the runtime's worker thread(s).
fn run<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async { tokio::spawn(f).await.expect("bench task") })
}

fn bench_net(c: &mut Criterion) {
    let server = ServerProcess::spawn();
    let rt = runtime();
    let client = Arc::new(rt.block_on(Client::connect(server.quic)));
    let tcp_bulk = Arc::new(tokio::sync::Mutex::new(rt.block_on(TcpBulk::connect(server.tcp))));
    let tcp_chunk = Arc::new(vec![0xab; CHUNK]);

    let mut g = c.benchmark_group("net::bulk");
    g.throughput(Throughput::Bytes(BULK_BYTES as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(BenchmarkId::new("quic-messages", "64MiB"), |b| {
        b.iter(|| {
            let c = client.clone();
            run(&rt, async move { c.bulk_messages().await })
        })
    });
    g.bench_function(BenchmarkId::new("quic-requests", "64MiB"), |b| {
        b.iter(|| {
            let c = client.clone();
            run(&rt, async move { c.bulk_requests().await })
        })
    });
    g.bench_function(BenchmarkId::new("tcp", "64MiB"), |b| {
        b.iter(|| {
            let (t, chunk) = (tcp_bulk.clone(), tcp_chunk.clone());
            run(&rt, async move { t.lock().await.transfer(&chunk).await })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("net::rpc");
    g.throughput(Throughput::Elements(RPC_COUNT as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new("quic-pipelined", "32B"), |b| {
        b.iter(|| {
            let c = client.clone();
            run(&rt, async move { c.rpc_pipelined(RPC_COUNT).await })
        })
    });
    g.bench_function(BenchmarkId::new("quic-stream-per-request", "32B"), |b| {
        b.iter(|| {
            let c = client.clone();
            run(&rt, async move { c.rpc_stream_per_request(RPC_COUNT).await })
        })
    });
    let tcp = server.tcp;
    g.bench_function(BenchmarkId::new("tcp-pipelined", "32B"), |b| b.iter(|| run(&rt, tcp_rpc(tcp, RPC_COUNT))));
    g.finish();

    // Per-request cost seen from both processes, for the report (not a criterion figure).
    const REPORT_COUNT: usize = 5 * RPC_COUNT;
    let conn = client.net.raw().connection(&client.server).expect("connection");
    let before = conn.stats();
    let (client_cpu, server_cpu) = (cpu_seconds("self"), cpu_seconds(&server.child.id().to_string()));
    let start = Instant::now();
    let c = client.clone();
    run(&rt, async move { c.rpc_pipelined(REPORT_COUNT).await });
    let elapsed = start.elapsed().as_secs_f64();
    let after = conn.stats();
    let per = |a: u64, b: u64| (a - b) as f64 / REPORT_COUNT as f64;
    eprintln!(
        "net: {} pipelined requests: {:.0} req/s; CPU per request: client {:.1} us, server {:.1} us; \
         per request {:.2} datagrams out ({:.2} sendmsg), {:.2} datagrams in",
        REPORT_COUNT,
        REPORT_COUNT as f64 / elapsed,
        (cpu_seconds("self") - client_cpu) * 1e6 / REPORT_COUNT as f64,
        (cpu_seconds(&server.child.id().to_string()) - server_cpu) * 1e6 / REPORT_COUNT as f64,
        per(after.udp_tx.datagrams, before.udp_tx.datagrams),
        per(after.udp_tx.ios, before.udp_tx.ios),
        per(after.udp_rx.datagrams, before.udp_rx.datagrams),
    );
    for c in client.net.raw().snapshot().connections {
        eprintln!(
            "net: connection rtt {:.3} ms, lost packets {}, cwnd {} B, path MTU {} B, {} B out / {} B in",
            c.rtt_ms, c.lost_packets, c.cwnd, c.path_mtu, c.bytes_out, c.bytes_in
        );
    }
    // CPU per MiB of bulk transfer, both processes.
    let (client_cpu, server_cpu) = (cpu_seconds("self"), cpu_seconds(&server.child.id().to_string()));
    let start = Instant::now();
    for _ in 0..4 {
        let c = client.clone();
        run(&rt, async move { c.bulk_messages().await });
    }
    let mib = ((4 * BULK_BYTES) >> 20) as f64;
    eprintln!(
        "net: bulk (messages): {:.0} MiB/s; CPU per MiB: client {:.2} ms, server {:.2} ms",
        mib / start.elapsed().as_secs_f64(),
        (cpu_seconds("self") - client_cpu) * 1e3 / mib,
        (cpu_seconds(&server.child.id().to_string()) - server_cpu) * 1e3 / mib,
    );
    let (client_cpu, server_cpu) = (cpu_seconds("self"), cpu_seconds(&server.child.id().to_string()));
    let start = Instant::now();
    for _ in 0..4 {
        let (t, chunk) = (tcp_bulk.clone(), tcp_chunk.clone());
        run(&rt, async move { t.lock().await.transfer(&chunk).await });
    }
    eprintln!(
        "net: bulk (tcp): {:.0} MiB/s; CPU per MiB: client {:.2} ms, server {:.2} ms",
        mib / start.elapsed().as_secs_f64(),
        (cpu_seconds("self") - client_cpu) * 1e3 / mib,
        (cpu_seconds(&server.child.id().to_string()) - server_cpu) * 1e3 / mib,
    );
    if std::env::var_os("LAMINA_NET_BENCH_DEBUG").is_some() {
        eprintln!("net: path stats after bulk: {:?}", conn.stats().path);
        eprintln!("net: frame stats tx: {:?}", conn.stats().frame_tx);
        eprintln!("net: frame stats rx: {:?}", conn.stats().frame_rx);
    }
    rt.block_on(client.ep.shutdown());
    drop(server);
}

/// User + system CPU seconds of a process, 0 if unreadable.
fn cpu_seconds(pid: &str) -> f64 {
    let ticks = pid.parse().ok().and_then(|p| lamina_benches::procstat::read(p).ok()).map_or(0, |s| s.cpu_ticks);
    ticks as f64 / lamina_benches::procstat::clock_ticks() as f64
}

fn main() {
    if std::env::args().any(|a| a == SERVER_ARG) {
        server_main();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_net(&mut c);
    c.final_summary();
}
