//! The endpoint: one UDP socket serving several protocols, dialing and redialing
//! configured peers, accepting pinned peers, shutting down gracefully.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lamina_primitives::{Keypair, NodeId, codec};
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, TransportConfig, VarInt};
use quinn_proto::TransportErrorCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{EndpointConfig, ProtocolConfig};
use crate::conn::{Budget, Conn, ProtoCore, Shared};
use crate::error::{NetError, close};
use crate::frame::{FrameDecoder, FrameKind, OutFrame};
use crate::peers::{PeerSet, short};
use crate::protocol::{ClientOnly, Handler, Protocol, ProtocolId, RawHandler, Typed};
use crate::stats::{ConnectionSnapshot, Direction, Fault, NetSnapshot, ProtocolSnapshot};
use crate::tls::{self, CertRejection, Identity, PinnedServerVerifier};

/// TLS alert codes (RFC 8446) that show up as QUIC crypto errors.
mod alert {
    pub const BAD_CERTIFICATE: u8 = 42;
    pub const CERTIFICATE_UNKNOWN: u8 = 46;
    pub const ACCESS_DENIED: u8 = 49;
    pub const DECRYPT_ERROR: u8 = 51;
    pub const NO_APPLICATION_PROTOCOL: u8 = 120;
}

/// Prefix of the close reason a server sends with `no_application_protocol`.
const SERVED_PREFIX: &str = "no common application protocol; served: ";

/// A QUIC endpoint: one UDP socket, this node's identity, any number of protocols.
///
/// Cloning is cheap (a handle). Dropping every handle does not stop the endpoint's
/// tasks: call [`Endpoint::shutdown`].
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Identity,
    config: EndpointConfig,
    quinn: quinn::Endpoint,
    transport: Arc<TransportConfig>,
    local_addr: SocketAddr,
    /// Union of the served protocols' peer sets: what the TLS verifier accepts.
    allowed: Arc<RwLock<tls::Allowed>>,
    /// Registered protocols by ALPN name: every version of a registration's range maps
    /// to the same `Proto` (see [`Inner::registered`] for each one once).
    protocols: RwLock<BTreeMap<Vec<u8>, Arc<Proto>>>,
    shared: Arc<Shared>,
    handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    shutdown_done: tokio::sync::Mutex<bool>,
    /// Each peer key's inbound budget, shared by all its connections (entries die with
    /// the last connection and claim that uses them).
    peer_budgets: Mutex<HashMap<NodeId, std::sync::Weak<tokio::sync::Semaphore>>>,
    /// The one inbound budget that every key no served protocol pins shares (open
    /// access): strangers together hold at most `peer_inbound_budget` bytes.
    open_budget: Arc<tokio::sync::Semaphore>,
    /// Per refusal reason: when one was last logged at INFO, and how many since.
    refusal_logs: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

/// Receive window of a connection from a key the protocol does not pin (open access):
/// with [`crate::TransportLimits::max_open_connections`] connections, what strangers can
/// have in flight to one protocol is bounded by their product (256 MiB by default).
const OPEN_RECEIVE_WINDOW: u64 = 1 << 20;

/// At most one INFO line per refusal reason in this interval.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Failed dials to a peer that serves no version of the protocol before the next one is
/// logged as a warning (with the default backoff, 3–6 s): a starting peer gets this long.
const NOT_SERVING_WARN_AFTER: u32 = 6;

/// A registered protocol: its connections, peers and dialers.
struct Proto {
    core: Arc<ProtoCore>,
    /// The ALPN names of the protocol's versions, newest first (what its dialers offer;
    /// each is a key of `Inner::protocols`).
    alpns: Vec<Vec<u8>>,
    peers: RwLock<PeerSet>,
    conns: Mutex<HashMap<NodeId, Vec<Arc<Conn>>>>,
    dialers: Mutex<HashMap<NodeId, (SocketAddr, CancellationToken)>>,
    /// Dialed peers whose last dial was refused for a reason redialing will not fix
    /// soon (our key not allowed, protocol mismatch, another key at the address), with
    /// the typed reason: requests and waits report it at once instead of timing out.
    refusals: Mutex<HashMap<NodeId, NetError>>,
    /// Requests in flight from all keys this protocol does not pin, together (open
    /// access): strangers cannot crowd out the pinned peers' handlers.
    open_inflight: Arc<tokio::sync::Semaphore>,
    changed: Notify,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Proto {
    fn label(&self, peer: &NodeId) -> String {
        read(&self.peers).get(peer).map(|p| p.label()).unwrap_or_else(|| short(peer))
    }

    /// The best live connection to `peer`: the newest outbound one, else the newest
    /// inbound one.
    fn pick(&self, peer: &NodeId) -> Option<Arc<Conn>> {
        let conns = lock(&self.conns);
        let mut inbound = None;
        for c in conns.get(peer)?.iter().rev().filter(|c| c.is_alive()) {
            if c.direction == Direction::Outbound {
                return Some(c.clone());
            }
            inbound = inbound.or(Some(c));
        }
        inbound.cloned()
    }

    /// Registers `conn` unless its peer already holds `limit` live connections of this
    /// protocol (checked and added under one lock, so concurrent handshakes of one key
    /// cannot overshoot). False if refused.
    fn add_within(&self, conn: &Arc<Conn>, limit: usize) -> bool {
        {
            let mut conns = lock(&self.conns);
            // Re-checked under the lock: a `set_peers` that removed the key after the
            // handshake's check has already swept the connections, so refuse here.
            if !read(&self.peers).admits(&conn.peer) {
                return false;
            }
            let list = conns.entry(conn.peer).or_default();
            if list.iter().filter(|c| c.is_alive()).count() >= limit {
                return false;
            }
            list.push(conn.clone());
        }
        self.added(conn);
        true
    }

    /// Why a new connection of a key this protocol does not pin (open access) from `ip`
    /// would be over the caps: `max` such connections in all, `per_ip` from one address;
    /// `None` if there is room. Checked before adding, so concurrent handshakes may
    /// overshoot by the handshakes in flight (bounded by `max_incoming`).
    fn open_room(&self, max: usize, per_ip: usize, ip: std::net::IpAddr) -> Option<String> {
        let peers = read(&self.peers);
        let conns = lock(&self.conns);
        let (mut open, mut from_ip) = (0usize, 0usize);
        for c in conns.iter().filter(|(k, _)| !peers.contains(k)).flat_map(|(_, l)| l.iter()).filter(|c| c.is_alive()) {
            open += 1;
            from_ip += usize::from(c.remote.ip() == ip);
        }
        if open >= max {
            Some(format!("{} already serves {max} connections of keys it does not pin (the limit)", self.core.name))
        } else if from_ip >= per_ip {
            Some(format!(
                "{} already serves {per_ip} connections of keys it does not pin from {ip} (the per-address limit)",
                self.core.name
            ))
        } else {
            None
        }
    }

    /// Records the outcome of a dial to `peer`: a refusal that redialing will not fix
    /// soon is kept (and waiters woken) so that requests and waits report it at once;
    /// success or any other failure clears it.
    fn note_dial(&self, peer: &NodeId, error: Option<&NetError>) {
        let mut refusals = lock(&self.refusals);
        let module = self.core.id.module;
        let lasting = |e: &NetError| match e {
            NetError::AccessDenied { .. } | NetError::UnexpectedPeerKey { .. } => true,
            // Another version of our module: an upgrade apart, not a node still
            // starting (which serves none of it yet).
            NetError::ProtocolMismatch { served, .. } => served.iter().any(|p| p.split('/').nth(1) == Some(module)),
            _ => false,
        };
        match error {
            Some(e) if lasting(e) => {
                refusals.insert(*peer, e.clone());
                drop(refusals);
                self.changed.notify_waiters();
            }
            _ => {
                refusals.remove(peer);
            }
        }
    }

    /// The recorded refusal of `peer`, if its last dial was refused.
    fn refusal(&self, peer: &NodeId) -> Option<NetError> {
        lock(&self.refusals).get(peer).cloned()
    }

    fn add(&self, conn: Arc<Conn>) {
        lock(&self.conns).entry(conn.peer).or_default().push(conn.clone());
        self.added(&conn);
    }

    fn added(&self, conn: &Arc<Conn>) {
        metrics::gauge!("lamina_net_connections", "protocol" => self.core.name.clone(), "direction" => conn.direction.as_str())
            .increment(1.0);
        self.changed.notify_waiters();
    }

    fn remove(&self, conn: &Arc<Conn>) {
        let mut conns = lock(&self.conns);
        if let Some(list) = conns.get_mut(&conn.peer) {
            let before = list.len();
            list.retain(|c| !Arc::ptr_eq(c, conn));
            if list.len() < before {
                metrics::gauge!("lamina_net_connections", "protocol" => self.core.name.clone(), "direction" => conn.direction.as_str())
                    .decrement(1.0);
            }
            if list.is_empty() {
                conns.remove(&conn.peer);
            }
        }
        drop(conns);
        self.changed.notify_waiters();
    }

    fn all_conns(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).values().flatten().cloned().collect()
    }
}

impl Endpoint {
    /// Binds a UDP socket on `config.listen` and starts accepting connections (for the
    /// protocols registered later). Must be called inside a tokio runtime.
    pub fn bind(keypair: &Keypair, config: EndpointConfig) -> Result<Endpoint, NetError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| NetError::Config("Endpoint::bind needs a tokio runtime".into()))?;
        let identity = Identity::new(keypair)?;
        let transport = config.limits.transport_config()?;
        let bind_err = |e: std::io::Error| NetError::Bind { addr: config.listen, source: Arc::new(e) };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_err)?;
        // Larger socket buffers avoid kernel drops in bursts; the kernel may cap them
        // (net.core.rmem_max), which is not an error.
        if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
            let _ = state.set_recv_buffer_size((&socket).into(), config.limits.socket_buffer);
            let _ = state.set_send_buffer_size((&socket).into(), config.limits.socket_buffer);
        }
        let local_addr = socket.local_addr().map_err(bind_err)?;
        let mut ep_config = quinn::EndpointConfig::new(identity.reset_key());
        // Datagrams we accept: at least quinn's default (1472), and whatever path MTU
        // discovery may reach.
        ep_config
            .max_udp_payload_size(config.limits.max_udp_payload.max(1472))
            .map_err(|e| NetError::Config(format!("max_udp_payload: {e}")))?;
        let _guard = runtime.enter();
        let quinn = quinn::Endpoint::new(ep_config, None, socket, Arc::new(quinn::TokioRuntime)).map_err(bind_err)?;
        let shared = Arc::new(Shared {
            shutdown: CancellationToken::new(),
            handlers: TaskTracker::new(),
            writers: TaskTracker::new(),
            tasks: TaskTracker::new(),
        });
        let open_budget = Arc::new(tokio::sync::Semaphore::new(config.limits.peer_inbound_budget));
        let inner = Arc::new(Inner {
            identity,
            config,
            quinn,
            transport,
            local_addr,
            allowed: Arc::new(RwLock::new(tls::Allowed::default())),
            open_budget,
            protocols: RwLock::new(BTreeMap::new()),
            shared,
            handshake_failures: Mutex::new(BTreeMap::new()),
            shutdown_done: tokio::sync::Mutex::new(false),
            peer_budgets: Mutex::new(HashMap::new()),
            refusal_logs: Mutex::new(HashMap::new()),
        });
        let i = inner.clone();
        inner.shared.tasks.spawn(async move { i.accept_loop().await });
        tracing::info!(target: "lamina::net", node = %inner.identity.node_id(), addr = %local_addr, "endpoint bound");
        Ok(Endpoint { inner })
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        self.inner.identity.node_id()
    }

    /// The bound UDP address (with the actual port when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.inner.config
    }

    /// Serves the typed protocol `P` with `handler`, accepting the keys in `peers` and
    /// dialing those marked to dial. Returns the handle to send requests and messages.
    pub fn register<P: Protocol, H: Handler<P>>(
        &self,
        handler: H,
        peers: PeerSet,
        config: ProtocolConfig,
    ) -> Result<Network<P>, NetError> {
        let raw = self.register_raw(P::ID, Arc::new(Typed::<P, H>::new(Arc::new(handler))), peers, config)?;
        Ok(Network { raw, _p: PhantomData })
    }

    /// Registers `P` as a client only: it connects like [`Endpoint::register`] (accepting
    /// the keys in `peers`, dialing those marked to dial) and serves nothing. Incoming
    /// requests are rejected with [`crate::RejectKind::Unsupported`], naming the
    /// protocol; incoming one-way messages are dropped. Returns the handle to send
    /// requests and messages.
    pub fn register_client<P: Protocol>(&self, peers: PeerSet, config: ProtocolConfig) -> Result<Network<P>, NetError> {
        self.register::<P, _>(ClientOnly, peers, config)
    }

    /// Serves a protocol with a bytes-level handler (the escape hatch).
    ///
    /// Every version of `id`'s range is served (and offered when dialing) by this one
    /// registration. Fails with [`NetError::Config`] if `id` is not
    /// [valid](ProtocolId::is_valid) or if any of its versions is already registered on
    /// this endpoint (`lamina/da/1` and `lamina/da/1..2` conflict; `lamina/da/1` and
    /// `lamina/da/2` may be registered side by side).
    pub fn register_raw(
        &self,
        id: ProtocolId,
        handler: Arc<dyn RawHandler>,
        peers: PeerSet,
        config: ProtocolConfig,
    ) -> Result<RawNetwork, NetError> {
        if let Some(problem) = id.problem() {
            return Err(NetError::Config(problem));
        }
        config.validate()?;
        if self.inner.shared.shutdown.is_cancelled() {
            return Err(NetError::Shutdown);
        }
        let peers = peers.without(&self.node_id());
        let alpns = id.alpns();
        let proto = {
            let mut protocols = write(&self.inner.protocols);
            if let Some(taken) = alpns.iter().find_map(|a| protocols.get(a)) {
                return Err(NetError::Config(if taken.core.id == id {
                    format!("{} is already registered", id.range_name())
                } else {
                    format!("{} overlaps the registered {}", id.range_name(), taken.core.id.range_name())
                }));
            }
            let open_inflight = Arc::new(tokio::sync::Semaphore::new(config.max_inflight_per_connection));
            let proto = Arc::new(Proto {
                core: Arc::new(ProtoCore { id, name: id.to_string(), config, handler }),
                alpns: alpns.clone(),
                peers: RwLock::new(peers),
                conns: Mutex::new(HashMap::new()),
                dialers: Mutex::new(HashMap::new()),
                refusals: Mutex::new(HashMap::new()),
                open_inflight,
                changed: Notify::new(),
            });
            for alpn in alpns {
                protocols.insert(alpn, proto.clone());
            }
            proto
        };
        self.inner.update_allowed();
        if let Err(e) = self.inner.install_server_config() {
            write(&self.inner.protocols).retain(|_, p| !Arc::ptr_eq(p, &proto));
            self.inner.update_allowed();
            return Err(e);
        }
        self.inner.sync_dialers(&proto);
        tracing::info!(target: "lamina::net", protocol = %id.range_name(), peers = read(&proto.peers).len(), "protocol registered");
        Ok(RawNetwork { inner: self.inner.clone(), proto })
    }

    /// A snapshot of every protocol's connections, for `/status`.
    pub fn snapshot(&self) -> NetSnapshot {
        let protocols = self.inner.registered();
        NetSnapshot {
            node: self.node_id(),
            local_addr: self.local_addr(),
            protocols: protocols.iter().map(|p| protocol_snapshot(p)).collect(),
            handshake_failures: lock(&self.inner.handshake_failures).clone(),
        }
    }

    /// Publishes [`Endpoint::snapshot`] as the `net` status field of `health` every
    /// `interval`, until shutdown.
    pub fn report_to(&self, health: lamina_interfaces::Health, interval: Duration) {
        let ep = self.clone();
        let stop = self.inner.shared.shutdown.clone();
        self.inner.shared.tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => health.set_status("net", ep.snapshot()),
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// Graceful shutdown, bounded by `shutdown_grace`: stop accepting connections,
    /// streams and requests; let in-flight requests (ours and the handlers') finish;
    /// close every connection with code 0 ("shutdown"); wait for the socket to be idle.
    /// Idempotent.
    pub async fn shutdown(&self) {
        let mut done = self.inner.shutdown_done.lock().await;
        if *done {
            return;
        }
        let inner = &self.inner;
        tracing::info!(target: "lamina::net", node = %self.node_id(), "endpoint shutting down");
        // From here on the accept loop refuses new connections (CONNECTION_REFUSED, so
        // dialers learn at once), and stream readers take no new requests.
        inner.shared.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + inner.config.shutdown_grace;
        // In-flight handlers finish and answer; then the response streams drain until the
        // peers have acknowledged every answer.
        inner.shared.handlers.close();
        let _ = tokio::time::timeout_at(deadline, inner.shared.handlers.wait()).await;
        inner.shared.writers.close();
        let _ = tokio::time::timeout_at(deadline, inner.shared.writers.wait()).await;
        // Our own requests in flight: wait for their responses (bounded).
        let protocols = inner.registered();
        while tokio::time::Instant::now() < deadline
            && protocols.iter().flat_map(|p| p.all_conns()).any(|c| c.is_alive() && c.pending_count() > 0)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        inner.quinn.close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        for p in &protocols {
            for c in p.all_conns() {
                c.fail_all(&NetError::Shutdown);
            }
        }
        // The close frames go out at once; waiting for the draining period (3 PTO) only
        // lets late packets be answered, so bound it tightly.
        let _ = tokio::time::timeout(Duration::from_millis(250), inner.quinn.wait_idle()).await;
        inner.shared.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), inner.shared.tasks.wait()).await;
        *done = true;
        tracing::info!(target: "lamina::net", node = %self.node_id(), "endpoint shut down");
    }
}

fn protocol_snapshot(p: &Proto) -> ProtocolSnapshot {
    let peers = read(&p.peers);
    let conns = p.all_conns();
    let mut connected: Vec<NodeId> = conns.iter().filter(|c| c.is_alive()).map(|c| c.peer).collect();
    connected.sort();
    connected.dedup();
    ProtocolSnapshot {
        protocol: p.core.name.clone(),
        min_version: p.core.id.min_version,
        peers_allowed: peers.len(),
        peers_dialed: peers.dialed().count(),
        peers_connected: connected.len(),
        connections: conns
            .iter()
            .filter(|c| c.is_alive())
            .map(|c| {
                let stats = c.quinn.stats();
                ConnectionSnapshot {
                    peer: c.peer,
                    peer_label: c.peer_label.clone(),
                    remote_addr: c.remote,
                    direction: c.direction,
                    version: c.version,
                    rtt_ms: c.quinn.rtt().as_secs_f64() * 1e3,
                    connected_secs: c.since.elapsed().as_secs_f64(),
                    bytes_out: c.stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
                    bytes_in: c.stats.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
                    messages_out: c.stats.msgs_out.load(std::sync::atomic::Ordering::Relaxed),
                    messages_in: c.stats.msgs_in.load(std::sync::atomic::Ordering::Relaxed),
                    pending_requests: c.pending_count(),
                    inbound_claimed_bytes: c.inbound_claimed(),
                    lost_packets: stats.path.lost_packets,
                    cwnd: stats.path.cwnd,
                    path_mtu: stats.path.current_mtu,
                    errors: c.stats.faults(),
                }
            })
            .collect(),
    }
}

/// The server's ALPN list for the registered protocols `ids`: every version of each,
/// ordered by module name, then **newest version first**. rustls's server picks the first
/// name of its own list that the client offered, so this order makes the handshake settle
/// on the highest version both ends speak. Deterministic for a given set of ids.
fn server_alpns(ids: impl IntoIterator<Item = ProtocolId>) -> Vec<Vec<u8>> {
    let mut versions: Vec<(&'static str, u32)> =
        ids.into_iter().flat_map(|id| id.versions().map(move |v| (id.module, v))).collect();
    versions.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    versions.dedup();
    versions.into_iter().map(|(module, v)| ProtocolId::new(module, v).alpn()).collect()
}

impl Inner {
    /// Each registered protocol once (the map holds one entry per version), in the order
    /// of their first ALPN name.
    fn registered(&self) -> Vec<Arc<Proto>> {
        let protocols = read(&self.protocols);
        let mut out: Vec<Arc<Proto>> = Vec::with_capacity(protocols.len());
        for p in protocols.values() {
            if !out.iter().any(|q| Arc::ptr_eq(p, q)) {
                out.push(p.clone());
            }
        }
        out
    }

    fn update_allowed(&self) {
        let protocols = self.registered();
        let keys: HashSet<NodeId> = protocols.iter().flat_map(|p| read(&p.peers).ids()).collect();
        let any = protocols.iter().any(|p| read(&p.peers).is_open());
        *write(&self.allowed) = tls::Allowed { keys, any };
    }

    fn install_server_config(&self) -> Result<(), NetError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(NetError::Shutdown);
        }
        let ids: Vec<ProtocolId> = self.registered().iter().map(|p| p.core.id).collect();
        // What a refused client is told we serve (filtered to its module): the ranges.
        let names: Vec<String> = ids.iter().map(ProtocolId::range_name).collect();
        let tls = self.identity.server_config(self.allowed.clone(), server_alpns(ids))?;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let crypto = Arc::new(ExplainingServerConfig { inner: Arc::new(quic), served: Arc::from(names.join(",")) });
        let mut server = quinn::ServerConfig::with_crypto(crypto);
        server
            .transport_config(self.transport.clone())
            .migration(false)
            .max_incoming(self.config.limits.max_incoming)
            .incoming_buffer_size(1 << 20)
            .incoming_buffer_size_total(16 << 20);
        self.quinn.set_server_config(Some(server));
        Ok(())
    }

    fn count_handshake_failure(&self, reason: &'static str) {
        *lock(&self.handshake_failures).entry(reason).or_insert(0) += 1;
        metrics::counter!("lamina_net_handshake_failures_total", "reason" => reason).increment(1);
    }

    /// Whether a refused handshake of `reason` should be logged at INFO now: at most one
    /// per reason every [`REFUSAL_LOG_INTERVAL`] (the rest go to DEBUG; every refusal is
    /// counted in `lamina_net_handshake_failures_total`), so a handshake flood cannot
    /// flood the log. Returns the refusals not logged at INFO since the last one.
    fn refusal_log_due(&self, reason: &'static str) -> Option<u64> {
        let mut last = lock(&self.refusal_logs);
        let now = Instant::now();
        let entry = last.entry(reason).or_insert((None, 0));
        if entry.0.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL) {
            let suppressed = entry.1;
            *entry = (Some(now), 0);
            Some(suppressed)
        } else {
            entry.1 += 1;
            None
        }
    }

    /// Starts dialers for the protocol's dialed peers, stops those no longer dialed.
    fn sync_dialers(self: &Arc<Self>, proto: &Arc<Proto>) {
        let me = self.identity.node_id();
        let wanted: HashMap<NodeId, SocketAddr> =
            read(&proto.peers).dialed().filter(|(id, _)| **id != me).map(|(id, a)| (*id, a)).collect();
        let mut dialers = lock(&proto.dialers);
        dialers.retain(|id, (addr, token)| {
            let keep = wanted.get(id) == Some(addr);
            if !keep {
                token.cancel();
                // A refusal by a peer we no longer dial (or now dial elsewhere) is stale.
                lock(&proto.refusals).remove(id);
            }
            keep
        });
        for (id, addr) in wanted {
            if dialers.contains_key(&id) || self.shared.shutdown.is_cancelled() {
                continue;
            }
            let token = self.shared.shutdown.child_token();
            dialers.insert(id, (addr, token.clone()));
            let (inner, proto) = (self.clone(), proto.clone());
            self.shared.tasks.spawn(async move { inner.dialer(proto, id, addr, token).await });
        }
    }

    /// Keeps one outbound connection to `peer` alive, redialing with backoff.
    async fn dialer(self: Arc<Self>, proto: Arc<Proto>, peer: NodeId, addr: SocketAddr, stop: CancellationToken) {
        let backoff = self.config.backoff.clone();
        let mut failures: u32 = 0;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let dial = tokio::select! {
                r = self.dial(&proto, peer, addr) => r,
                () = stop.cancelled() => return,
            };
            proto.note_dial(&peer, dial.as_ref().err());
            match dial {
                Ok(conn) => {
                    let up = Instant::now();
                    let reason = tokio::select! {
                        r = conn.quinn.closed() => r,
                        () = stop.cancelled() => {
                            conn.quinn.close(VarInt::from_u32(close::REMOVED), b"peer removed");
                            return;
                        }
                    };
                    tracing::info!(target: "lamina::net", protocol = %proto.core.name, peer = %conn.peer_label, reason = %reason, "connection lost; redialing");
                    // A connection that lived long resets the backoff; one that died at
                    // once counts as a failure (no tight redial loop).
                    failures = if up.elapsed() >= backoff.max { 0 } else { failures.saturating_add(1) };
                }
                Err(e) => {
                    // A peer that serves no version of this module is usually still
                    // starting (a node binds its endpoint before it has registered every
                    // protocol): said at info level, and a warning only if it lasts.
                    let not_yet = matches!(&e, NetError::ProtocolMismatch { served, .. } if served.is_empty());
                    if (failures == 0 && !not_yet) || (not_yet && failures == NOT_SERVING_WARN_AFTER) {
                        tracing::warn!(target: "lamina::net", protocol = %proto.core.name, peer = %short(&peer), %addr, error = %e, attempt = failures + 1, "dial failed");
                    } else if failures == 0 {
                        tracing::info!(target: "lamina::net", protocol = %proto.core.name, peer = %short(&peer), %addr, "peer does not serve this protocol yet (still starting?); redialing");
                    } else {
                        tracing::debug!(target: "lamina::net", protocol = %proto.core.name, peer = %short(&peer), %addr, error = %e, attempt = failures + 1, "dial failed");
                    }
                    failures = failures.saturating_add(1);
                }
            }
            let delay = backoff.delay(failures.saturating_sub(1), rand::random::<f64>());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One dial: handshake, then the server's hello (its acceptance for the protocol).
    async fn dial(self: &Arc<Self>, proto: &Arc<Proto>, peer: NodeId, addr: SocketAddr) -> Result<Arc<Conn>, NetError> {
        let (tls, verifier) = self.identity.client_config(peer, proto.alpns.clone())?;
        let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(self.transport.clone());
        let connecting = self
            .quinn
            .connect_with(client, addr, tls::SERVER_NAME)
            .map_err(|e| NetError::Handshake { addr, reason: e.to_string() })?;
        let id = proto.core.id;
        let me = self.identity.node_id();
        let handshake = async {
            let conn = connecting.await.map_err(|e| dial_error(e, &verifier, addr, id, me))?;
            // The server chose one of the versions we offered (rustls checks that).
            let version = negotiated(&conn).and_then(|a| id.version_of(&a)).ok_or_else(|| NetError::Handshake {
                addr,
                reason: format!("the server chose no version of {} we offered", id.range_name()),
            })?;
            let mut hello = conn.accept_uni().await.map_err(|e| dial_error(e, &verifier, addr, id, me))?;
            let mut decoder = FrameDecoder::new(16);
            loop {
                match hello.read_chunk(64, true).await {
                    Ok(Some(chunk)) => decoder.push(&chunk.bytes),
                    Ok(None) => break,
                    Err(e) => return Err(NetError::Handshake { addr, reason: format!("reading hello: {e}") }),
                }
            }
            let frame = decoder
                .next_frame()
                .ok()
                .flatten()
                .filter(|f| f.kind == FrameKind::Hello && f.body.len() == 4)
                .ok_or_else(|| NetError::Handshake { addr, reason: "malformed hello".into() })?;
            let peer_max = u32::from_le_bytes([frame.body[0], frame.body[1], frame.body[2], frame.body[3]]) as usize;
            Ok((conn, version, peer_max))
        };
        let (conn, version, peer_max) = match tokio::time::timeout(self.config.connect_timeout, handshake).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(NetError::Handshake {
                    addr,
                    reason: format!("timed out after {:?}", self.config.connect_timeout),
                });
            }
        };
        let c = Conn::new(
            conn,
            peer,
            proto.label(&peer),
            Direction::Outbound,
            version,
            proto.core.clone(),
            self.shared.clone(),
            peer_max,
            self.budget_for(&peer),
            None,
        );
        self.adopt(proto, &c);
        tracing::info!(target: "lamina::net", protocol = %proto.core.name, version, peer = %c.peer_label, %addr, "connected");
        Ok(c)
    }

    /// A new connection's inbound budget, within its peer key's.
    fn budget_for(&self, peer: &NodeId) -> Budget {
        let limits = &self.config.limits;
        if !read(&self.allowed).keys.contains(peer) {
            // Not pinned by any protocol (open access): the strangers' shared budget.
            return Budget::new(self.open_budget.clone(), limits.peer_inbound_budget, limits.connection_inbound_budget);
        }
        let mut budgets = lock(&self.peer_budgets);
        let sem = match budgets.get(peer).and_then(std::sync::Weak::upgrade) {
            Some(sem) => sem,
            None => {
                budgets.retain(|_, w| w.strong_count() > 0);
                let sem = Arc::new(tokio::sync::Semaphore::new(limits.peer_inbound_budget));
                budgets.insert(*peer, Arc::downgrade(&sem));
                sem
            }
        };
        Budget::new(sem, limits.peer_inbound_budget, limits.connection_inbound_budget)
    }

    /// Registers a connection and starts its tasks and its close watcher.
    fn adopt(self: &Arc<Self>, proto: &Arc<Proto>, conn: &Arc<Conn>) {
        proto.add(conn.clone());
        self.start(proto, conn);
    }

    /// Starts a registered connection's tasks and its close watcher.
    fn start(self: &Arc<Self>, proto: &Arc<Proto>, conn: &Arc<Conn>) {
        conn.start();
        let (proto, conn) = (proto.clone(), conn.clone());
        let interval = self.config.stats_interval;
        self.shared.tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            let reason = loop {
                tokio::select! {
                    r = conn.quinn.closed() => break r,
                    _ = tick.tick() => conn.stats.set_rtt(conn.quinn.rtt()),
                }
            };
            conn.mark_closed();
            proto.remove(&conn);
            conn.fail_all(&NetError::ConnectionLost(reason.to_string()));
            tracing::debug!(target: "lamina::net", protocol = %proto.core.name, peer = %conn.peer_label, reason = %reason, "connection closed");
        });
    }

    /// Accepts connections until the endpoint closes; refuses them once shutdown began.
    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.quinn.accept().await {
            if self.shared.shutdown.is_cancelled() {
                incoming.refuse();
                continue;
            }
            let inner = self.clone();
            self.shared.tasks.spawn(async move { inner.handle_incoming(incoming).await });
        }
    }

    async fn handle_incoming(self: Arc<Self>, incoming: quinn::Incoming) {
        let addr = incoming.remote_address();
        let refused = |e: &ConnectionError| {
            let reason = match e {
                ConnectionError::TransportError(t) if t.code == TransportErrorCode::crypto(alert::ACCESS_DENIED) => {
                    "peer_not_allowed"
                }
                ConnectionError::TransportError(t)
                    if t.code == TransportErrorCode::crypto(alert::NO_APPLICATION_PROTOCOL) =>
                {
                    "protocol_mismatch"
                }
                ConnectionError::ConnectionClosed(_) => "refused_by_peer",
                _ => "handshake",
            };
            self.count_handshake_failure(reason);
            match self.refusal_log_due(reason) {
                Some(suppressed) => {
                    tracing::info!(target: "lamina::net", %addr, reason, error = %e, suppressed, "refused or failed incoming handshake")
                }
                None => {
                    tracing::debug!(target: "lamina::net", %addr, reason, error = %e, "refused or failed incoming handshake")
                }
            }
        };
        // quinn processes the ClientHello in `accept`, so a refusal can surface here.
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => return refused(&e),
        };
        let conn = match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return refused(&e),
            Err(_) => {
                self.count_handshake_failure("timeout");
                return;
            }
        };
        let negotiated = negotiated(&conn).and_then(|a| {
            let proto = read(&self.protocols).get(&a).cloned()?;
            let version = proto.core.id.version_of(&a)?;
            Some((proto, version))
        });
        let peer = conn
            .peer_identity()
            .and_then(|p| p.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
            .and_then(|certs| certs.first().and_then(tls::ed25519_key_of));
        let (Some((proto, version)), Some(peer)) = (negotiated, peer) else {
            // Unreachable with our TLS config (ALPN and client certificate are both
            // mandatory), but never trust that silently.
            conn.close(VarInt::from_u32(close::PROTOCOL_VIOLATION), b"no protocol or no key");
            self.count_handshake_failure("handshake");
            return;
        };
        let (admitted, pinned) = {
            let peers = read(&proto.peers);
            (peers.admits(&peer), peers.contains(&peer))
        };
        if !admitted {
            let reason = format!("key {peer} is not allowed for {} by {}", proto.core.name, self.identity.node_id());
            conn.close(VarInt::from_u32(close::NOT_ALLOWED), reason.as_bytes());
            self.count_handshake_failure("peer_not_allowed");
            match self.refusal_log_due("peer_not_allowed") {
                Some(suppressed) => {
                    tracing::info!(target: "lamina::net", %addr, %peer, protocol = %proto.core.name, suppressed, "refused a key not pinned for this protocol")
                }
                None => {
                    tracing::debug!(target: "lamina::net", %addr, %peer, protocol = %proto.core.name, "refused a key not pinned for this protocol")
                }
            }
            return;
        }
        if self.shared.shutdown.is_cancelled() {
            conn.close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
            return;
        }
        // Accept, within the per-key connection cap: the hello carries our request limit.
        let max = proto.core.config.max_request;
        let c = Conn::new(
            conn.clone(),
            peer,
            proto.label(&peer),
            Direction::Inbound,
            version,
            proto.core.clone(),
            self.shared.clone(),
            max,
            self.budget_for(&peer),
            (!pinned).then(|| proto.open_inflight.clone()),
        );
        if !pinned {
            // A stranger's connection gets a small receive window (bytes it may have in
            // flight to us) instead of a committee member's.
            conn.set_receive_window(VarInt::from_u64(OPEN_RECEIVE_WINDOW).unwrap_or(VarInt::MAX));
        }
        let limit = self.config.limits.max_connections_per_peer;
        let over = if pinned {
            None
        } else {
            let l = &self.config.limits;
            proto.open_room(l.max_open_connections, l.max_open_connections_per_ip, addr.ip())
        };
        if let Some(reason) = over {
            conn.close(VarInt::from_u32(close::TOO_MANY_CONNECTIONS), reason.as_bytes());
            self.count_handshake_failure("too_many_open_connections");
            tracing::debug!(target: "lamina::net", %addr, %peer, protocol = %proto.core.name, "refused an open-access connection over the cap");
            return;
        }
        if !proto.add_within(&c, limit) {
            let reason = format!("key {peer} already holds {limit} connections for {} (the limit)", proto.core.name);
            conn.close(VarInt::from_u32(close::TOO_MANY_CONNECTIONS), reason.as_bytes());
            self.count_handshake_failure("too_many_connections");
            tracing::debug!(target: "lamina::net", %addr, %peer, protocol = %proto.core.name, "refused a connection over the per-key cap");
            return;
        }
        let hello = OutFrame::new(FrameKind::Hello, 0, Bytes::copy_from_slice(&(max as u32).to_le_bytes()));
        let sent = async {
            let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
            let mut chunks = [Bytes::copy_from_slice(&hello.header), hello.body.clone()];
            s.write_all_chunks(&mut chunks).await.map_err(|e| e.to_string())?;
            s.finish().map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sent {
            tracing::debug!(target: "lamina::net", %addr, error = %e, "could not send hello");
            c.mark_closed();
            proto.remove(&c);
            return;
        }
        self.start(&proto, &c);
        tracing::info!(target: "lamina::net", protocol = %proto.core.name, version, peer = %c.peer_label, %addr, "accepted");
    }
}

/// The ALPN name a finished handshake settled on.
fn negotiated(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data().and_then(|d| d.downcast::<HandshakeData>().ok()).and_then(|h| h.protocol)
}

/// Maps a failed dial of protocol `id` to a typed error.
fn dial_error(
    e: ConnectionError,
    verifier: &PinnedServerVerifier,
    addr: SocketAddr,
    id: ProtocolId,
    me: NodeId,
) -> NetError {
    if let Some(r) = verifier.rejection() {
        let presented = match r {
            CertRejection::Unpinned(k) => Some(k),
            CertRejection::NotEd25519 => None,
        };
        return NetError::UnexpectedPeerKey { expected: verifier.expected(), presented };
    }
    let crypto = |a: u8| TransportErrorCode::crypto(a);
    match e {
        ConnectionError::ConnectionClosed(c) if c.error_code == crypto(alert::NO_APPLICATION_PROTOCOL) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            let served = reason
                .strip_prefix(SERVED_PREFIX)
                .map(|s| s.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            NetError::ProtocolMismatch { addr, offered: id.range_name(), served }
        }
        ConnectionError::ConnectionClosed(c)
            if [alert::ACCESS_DENIED, alert::BAD_CERTIFICATE, alert::CERTIFICATE_UNKNOWN, alert::DECRYPT_ERROR]
                .iter()
                .any(|a| c.error_code == crypto(*a)) =>
        {
            // The TLS alert says only that the certificate failed: name both keys.
            NetError::AccessDenied {
                addr,
                protocol: id.to_string(),
                reason: format!(
                    "key {me} is not allowed by {} (TLS: {})",
                    verifier.expected(),
                    String::from_utf8_lossy(&c.reason)
                ),
            }
        }
        ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(close::TOO_MANY_CONNECTIONS) => {
            // At capacity for now: worth retrying later, not a refusal of our key.
            NetError::Handshake { addr, reason: format!("busy: {}", String::from_utf8_lossy(&c.reason)) }
        }
        ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(close::NOT_ALLOWED) => {
            NetError::AccessDenied {
                addr,
                protocol: id.to_string(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            }
        }
        ConnectionError::ConnectionClosed(c) if c.error_code == TransportErrorCode::CONNECTION_REFUSED => {
            NetError::Handshake { addr, reason: "refused by the peer (shutting down or at capacity)".into() }
        }
        other => NetError::Handshake { addr, reason: other.to_string() },
    }
}

/// Wraps quinn's rustls server config to say which protocols are served when a client
/// offers none of them (the TLS alert alone cannot).
struct ExplainingServerConfig {
    inner: Arc<QuicServerConfig>,
    served: Arc<str>,
}

impl quinn_proto::crypto::ServerConfig for ExplainingServerConfig {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &quinn_proto::ConnectionId,
    ) -> Result<quinn_proto::crypto::Keys, quinn_proto::crypto::UnsupportedVersion> {
        self.inner.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &quinn_proto::ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.inner.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &quinn_proto::transport_parameters::TransportParameters,
    ) -> Box<dyn quinn_proto::crypto::Session> {
        let inner = self.inner.clone().start_session(version, params);
        Box::new(ExplainingSession { inner, served: self.served.clone(), hello: Vec::new() })
    }
}

/// Most ClientHello bytes kept to find the protocols a client offered.
const MAX_HELLO: usize = 8 << 10;

struct ExplainingSession {
    inner: Box<dyn quinn_proto::crypto::Session>,
    served: Arc<str>,
    /// The first handshake bytes received (the ClientHello), up to [`MAX_HELLO`].
    hello: Vec<u8>,
}

impl ExplainingSession {
    /// The served protocols worth telling a client that offered none of them: only other
    /// versions of the protocols it offered (`lamina/da/2..3` when it offered
    /// `lamina/da/1`, or several versions of `da`). An unauthenticated peer learns
    /// nothing about the other services of this endpoint.
    fn served_for_client(&self) -> String {
        let offered = offered_alpns(&self.hello);
        let family = |p: &[u8]| -> Vec<u8> {
            match p.iter().rposition(|&b| b == b'/') {
                Some(i) => p[..i].to_vec(),
                None => p.to_vec(),
            }
        };
        let wanted: Vec<Vec<u8>> = offered.iter().map(|p| family(p)).collect();
        self.served
            .split(',')
            .filter(|s| !s.is_empty() && wanted.contains(&family(s.as_bytes())))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The ALPN protocol names a TLS 1.3 ClientHello handshake message offers (RFC 8446
/// section 4.1.2, RFC 7301); empty if `hello` is not a whole ClientHello or has no ALPN
/// extension. Every length is checked against the bytes present.
fn offered_alpns(hello: &[u8]) -> Vec<Vec<u8>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn len(b: &mut &[u8], width: usize) -> Option<usize> {
        Some(take(b, width)?.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }
    let parse = || -> Option<Vec<Vec<u8>>> {
        let mut b = hello;
        if take(&mut b, 1)? != [1] {
            return None;
        }
        let n = len(&mut b, 3)?;
        let mut body = take(&mut b, n)?;
        take(&mut body, 2 + 32)?;
        let n = len(&mut body, 1)?;
        take(&mut body, n)?;
        let n = len(&mut body, 2)?;
        take(&mut body, n)?;
        let n = len(&mut body, 1)?;
        take(&mut body, n)?;
        let n = len(&mut body, 2)?;
        let mut exts = take(&mut body, n)?;
        while !exts.is_empty() {
            let kind = len(&mut exts, 2)?;
            let n = len(&mut exts, 2)?;
            let mut data = take(&mut exts, n)?;
            if kind == 16 {
                let n = len(&mut data, 2)?;
                let mut list = take(&mut data, n)?;
                let mut out = Vec::new();
                while !list.is_empty() {
                    let n = len(&mut list, 1)?;
                    out.push(take(&mut list, n)?.to_vec());
                }
                return Some(out);
            }
        }
        Some(Vec::new())
    };
    parse().unwrap_or_default()
}

impl quinn_proto::crypto::Session for ExplainingSession {
    fn initial_keys(&self, dst_cid: &quinn_proto::ConnectionId, side: quinn_proto::Side) -> quinn_proto::crypto::Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn std::any::Any>> {
        self.inner.handshake_data()
    }

    fn peer_identity(&self) -> Option<Box<dyn std::any::Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(
        &self,
    ) -> Option<(Box<dyn quinn_proto::crypto::HeaderKey>, Box<dyn quinn_proto::crypto::PacketKey>)> {
        self.inner.early_crypto()
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, quinn_proto::TransportError> {
        if self.inner.is_handshaking() && self.hello.len() < MAX_HELLO {
            let room = MAX_HELLO - self.hello.len();
            self.hello.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        let out = self.inner.read_handshake(buf).map_err(|mut e| {
            if e.code == TransportErrorCode::crypto(alert::NO_APPLICATION_PROTOCOL) {
                e.reason = format!("{SERVED_PREFIX}{}", self.served_for_client());
            }
            e
        });
        if !self.inner.is_handshaking() {
            self.hello = Vec::new();
        }
        out
    }

    fn transport_parameters(
        &self,
    ) -> Result<Option<quinn_proto::transport_parameters::TransportParameters>, quinn_proto::TransportError> {
        self.inner.transport_parameters()
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<quinn_proto::crypto::Keys> {
        self.inner.write_handshake(buf)
    }

    fn next_1rtt_keys(&mut self) -> Option<quinn_proto::crypto::KeyPair<Box<dyn quinn_proto::crypto::PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &quinn_proto::ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), quinn_proto::crypto::ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}

// ---------------------------------------------------------------------------- handles

/// The bytes-level handle on a registered protocol: requests, messages and broadcast
/// with raw frame bodies. Cheap to clone.
#[derive(Clone)]
pub struct RawNetwork {
    inner: Arc<Inner>,
    proto: Arc<Proto>,
}

/// A handle to a registered protocol that does not keep the endpoint alive (for
/// registries that outlive or are owned by the protocol's own handler).
#[derive(Clone)]
pub struct WeakNetwork {
    inner: std::sync::Weak<Inner>,
    proto: std::sync::Weak<Proto>,
}

impl WeakNetwork {
    /// The network, if its endpoint still exists.
    pub fn upgrade(&self) -> Option<RawNetwork> {
        Some(RawNetwork { inner: self.inner.upgrade()?, proto: self.proto.upgrade()? })
    }
}

impl RawNetwork {
    /// A handle that does not keep the endpoint alive: for what a protocol's own handler
    /// holds (a strong handle there would be a cycle that keeps the socket open after
    /// shutdown).
    pub fn downgrade(&self) -> WeakNetwork {
        WeakNetwork { inner: Arc::downgrade(&self.inner), proto: Arc::downgrade(&self.proto) }
    }

    /// The protocol.
    pub fn protocol(&self) -> ProtocolId {
        self.proto.core.id
    }

    /// The protocol's configuration.
    pub fn config(&self) -> &ProtocolConfig {
        &self.proto.core.config
    }

    fn conn(&self, peer: &NodeId) -> Result<Arc<Conn>, NetError> {
        if self.inner.shared.shutdown.is_cancelled() {
            return Err(NetError::Shutdown);
        }
        if let Some(c) = self.proto.pick(peer) {
            return Ok(c);
        }
        if let Some(refused) = self.proto.refusal(peer) {
            return Err(refused);
        }
        if read(&self.proto.peers).contains(peer) {
            Err(NetError::NotConnected { peer: *peer, protocol: self.proto.core.name.clone() })
        } else {
            Err(NetError::UnknownPeer(*peer))
        }
    }

    /// Sends a request to `peer` and waits for the response, up to the protocol's
    /// `request_timeout`. Fails at once with [`NetError::NotConnected`] if there is no
    /// live connection (dialed peers are being redialed in the background).
    pub async fn request(&self, peer: &NodeId, body: Bytes) -> Result<Bytes, NetError> {
        self.request_with_timeout(peer, body, self.proto.core.config.request_timeout).await
    }

    /// [`RawNetwork::request`] with an explicit time limit.
    pub async fn request_with_timeout(&self, peer: &NodeId, body: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        self.conn(peer)?.request(body, timeout).await
    }

    async fn request_on(
        &self,
        peer: &NodeId,
        body: Bytes,
        timeout: Duration,
    ) -> (Result<Bytes, NetError>, Option<Arc<Conn>>) {
        match self.conn(peer) {
            Ok(c) => (c.request(body, timeout).await, Some(c)),
            Err(e) => (Err(e), None),
        }
    }

    /// Queues a one-way message to `peer`. Messages to one peer are delivered in the
    /// order they were queued (per connection). Returns once queued; waits only if the
    /// peer's queue is full.
    pub async fn send(&self, peer: &NodeId, body: Bytes) -> Result<(), NetError> {
        self.conn(peer)?.send_message(body).await
    }

    /// Sends the same message to each of `peers` concurrently; the result per peer.
    pub async fn broadcast(&self, peers: &[NodeId], body: Bytes) -> Vec<(NodeId, Result<(), NetError>)> {
        let sends = peers.iter().map(|p| {
            let body = body.clone();
            async move { (*p, self.send(p, body).await) }
        });
        futures::future::join_all(sends).await
    }

    /// Dials `peer` at `addr` once (no retry) and keeps the connection. The peer must be
    /// in the peer set. Dialed peers are connected automatically; this is for one-off
    /// connections and diagnostics, and returns the typed reason of a failure.
    pub async fn connect(&self, peer: NodeId, addr: SocketAddr) -> Result<(), NetError> {
        if self.inner.shared.shutdown.is_cancelled() {
            return Err(NetError::Shutdown);
        }
        if !read(&self.proto.peers).contains(&peer) {
            return Err(NetError::UnknownPeer(peer));
        }
        self.inner.dial(&self.proto, peer, addr).await.map(|_| ())
    }

    /// Peers with at least one live connection for this protocol.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> =
            lock(&self.proto.conns).iter().filter(|(_, l)| l.iter().any(|c| c.is_alive())).map(|(k, _)| *k).collect();
        v.sort();
        v
    }

    /// True if `peer` has a live connection for this protocol.
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.proto.pick(peer).is_some()
    }

    /// The protocol version negotiated with `peer`: that of the connection requests and
    /// messages to `peer` go out on now (the highest version both nodes speak), or `None`
    /// if there is no live connection.
    ///
    /// A sender checks it before sending what only newer versions have (see
    /// [`ProtocolId`]). A registration's versions never change, so the live connections
    /// with a peer carry the same version; it changes when the peer restarts with other
    /// versions, which ends its old connections.
    pub fn version(&self, peer: &NodeId) -> Option<u32> {
        self.proto.pick(peer).map(|c| c.version)
    }

    /// Waits until `peer` is connected, up to `timeout`. Fails at once with the typed
    /// reason when the peer refused our last dial (our key not allowed, protocol
    /// mismatch, another key at its address).
    pub async fn wait_connected(&self, peer: &NodeId, timeout: Duration) -> Result<(), NetError> {
        self.wait_until(timeout, || self.is_connected(peer), || self.proto.refusal(peer)).await
    }

    /// Waits until at least `n` distinct peers are connected, up to `timeout`. Fails at
    /// once with one of the refusals when so many peers refused our dials that `n` can
    /// no longer connect.
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<(), NetError> {
        let refused = || {
            let connected: HashSet<NodeId> = self.connected_peers().into_iter().collect();
            let refusals = lock(&self.proto.refusals);
            let blocked = refusals.keys().filter(|k| !connected.contains(k)).count();
            let possible = read(&self.proto.peers).len().saturating_sub(blocked);
            if possible < n { refusals.values().next().cloned() } else { None }
        };
        self.wait_until(timeout, || self.connected_peers().len() >= n, refused).await
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        ready: impl Fn() -> bool,
        refused: impl Fn() -> Option<NetError>,
    ) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.proto.changed.notified();
            if ready() {
                return Ok(());
            }
            if let Some(e) = refused() {
                return Err(e);
            }
            if self.inner.shared.shutdown.is_cancelled() {
                return Err(NetError::Shutdown);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return if ready() { Ok(()) } else { Err(NetError::Timeout(timeout)) };
            }
        }
    }

    /// The protocol's peer set.
    pub fn peers(&self) -> PeerSet {
        read(&self.proto.peers).clone()
    }

    /// Replaces the peer set (for example at an epoch change, or a new access policy):
    /// new keys may connect, keys no longer admitted are disconnected, dialers follow.
    pub fn set_peers(&self, peers: PeerSet) {
        let peers = peers.without(&self.inner.identity.node_id());
        *write(&self.proto.peers) = peers.clone();
        self.inner.update_allowed();
        for c in self.proto.all_conns() {
            if !peers.admits(&c.peer) {
                c.quinn.close(VarInt::from_u32(close::REMOVED), b"peer removed");
            }
        }
        self.inner.sync_dialers(&self.proto);
    }

    /// The underlying QUIC connection to `peer` (newest outbound first), bypassing
    /// framing: for tests and diagnostics. Streams opened on it are served by the
    /// normal stream handlers.
    pub fn connection(&self, peer: &NodeId) -> Option<quinn::Connection> {
        self.proto.pick(peer).map(|c| c.quinn.clone())
    }

    /// Faults of `kind` counted on all connections to `peer` (live ones).
    pub fn fault_count(&self, peer: &NodeId, kind: Fault) -> u64 {
        lock(&self.proto.conns).get(peer).map(|l| l.iter().map(|c| c.stats.fault_count(kind)).sum()).unwrap_or(0)
    }

    /// This protocol's part of [`Endpoint::snapshot`].
    pub fn snapshot(&self) -> ProtocolSnapshot {
        protocol_snapshot(&self.proto)
    }
}

/// Encodes a value into frame-body bytes without copying rkyv's buffer.
fn encode_bytes<T: lamina_primitives::Wire>(value: &T) -> Result<Bytes, NetError> {
    codec::encode_aligned(value).map(Bytes::from_owner).map_err(NetError::Encode)
}

/// The typed handle on a registered protocol `P`. Cheap to clone.
pub struct Network<P> {
    raw: RawNetwork,
    _p: PhantomData<fn() -> P>,
}

impl<P> Clone for Network<P> {
    fn clone(&self) -> Self {
        Network { raw: self.raw.clone(), _p: PhantomData }
    }
}

impl<P: Protocol> Network<P> {
    /// The bytes-level handle (same protocol, same connections).
    pub fn raw(&self) -> &RawNetwork {
        &self.raw
    }

    /// Sends a request and decodes the response (validated, size-capped). A response
    /// that does not decode is a peer fault ([`NetError::Decode`]), counted.
    pub async fn request(&self, peer: &NodeId, request: &P::Request) -> Result<P::Response, NetError> {
        self.request_with_timeout(peer, request, self.raw.proto.core.config.request_timeout).await
    }

    /// [`Network::request`] with an explicit time limit.
    pub async fn request_with_timeout(
        &self,
        peer: &NodeId,
        request: &P::Request,
        timeout: Duration,
    ) -> Result<P::Response, NetError> {
        let body = encode_bytes(request)?;
        let (result, conn) = self.raw.request_on(peer, body, timeout).await;
        let bytes = result?;
        codec::decode::<P::Response>(&bytes).map_err(|e| {
            if let Some(c) = conn {
                c.stats.fault(Fault::Decode);
            }
            NetError::Decode(e)
        })
    }

    /// Queues a one-way message (see [`RawNetwork::send`]).
    pub async fn send(&self, peer: &NodeId, message: &P::Message) -> Result<(), NetError> {
        let body = encode_bytes(message)?;
        self.raw.send(peer, body).await
    }

    /// Encodes `message` once and sends it to each of `peers`; the result per peer.
    pub async fn broadcast(
        &self,
        peers: &[NodeId],
        message: &P::Message,
    ) -> Result<Vec<(NodeId, Result<(), NetError>)>, NetError> {
        let body = encode_bytes(message)?;
        Ok(self.raw.broadcast(peers, body).await)
    }

    /// Dials `peer` once (see [`RawNetwork::connect`]).
    pub async fn connect(&self, peer: NodeId, addr: SocketAddr) -> Result<(), NetError> {
        self.raw.connect(peer, addr).await
    }

    /// Peers with a live connection.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.raw.connected_peers()
    }

    /// True if `peer` has a live connection.
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.raw.is_connected(peer)
    }

    /// The version of `P` negotiated with `peer`, `None` if not connected: gate what only
    /// newer versions have on it (see [`RawNetwork::version`] and [`ProtocolId`]).
    pub fn version(&self, peer: &NodeId) -> Option<u32> {
        self.raw.version(peer)
    }

    /// Waits until `peer` is connected, up to `timeout`.
    pub async fn wait_connected(&self, peer: &NodeId, timeout: Duration) -> Result<(), NetError> {
        self.raw.wait_connected(peer, timeout).await
    }

    /// Waits until at least `n` peers are connected, up to `timeout`.
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<(), NetError> {
        self.raw.wait_for_peers(n, timeout).await
    }

    /// The peer set.
    pub fn peers(&self) -> PeerSet {
        self.raw.peers()
    }

    /// Replaces the peer set (see [`RawNetwork::set_peers`]).
    pub fn set_peers(&self, peers: PeerSet) {
        self.raw.set_peers(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(alpns: Vec<Vec<u8>>) -> Vec<String> {
        alpns.into_iter().map(|a| String::from_utf8(a).unwrap()).collect()
    }

    #[test]
    fn server_alpns_put_newer_versions_first_within_a_module() {
        let ids = [
            ProtocolId::new("other", 1),
            ProtocolId::range("echo", 1, 2),
            ProtocolId::range("da", 8, 11),
            ProtocolId::new("echo", 3),
        ];
        let expected = [
            "lamina/da/11",
            "lamina/da/10",
            "lamina/da/9",
            "lamina/da/8",
            "lamina/echo/3",
            "lamina/echo/2",
            "lamina/echo/1",
            "lamina/other/1",
        ];
        assert_eq!(names(server_alpns(ids)), expected);
        // Deterministic: the registration order does not matter.
        let mut reversed = ids;
        reversed.reverse();
        assert_eq!(names(server_alpns(reversed)), expected);
        assert!(server_alpns([]).is_empty());
    }
}
