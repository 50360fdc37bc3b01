//! The shared peer service: which peers a role needs, connecting to them, reporting them.
//!
//! Each module file describes its needs as a [`PeerPlan`]: groups of genesis nodes it
//! dials (each with a readiness requirement, [`Need`]) and groups it accepts
//! connections from. [`run`] binds the node's QUIC endpoint (lamina-net: the node key
//! as its TLS identity, every peer pinned by its genesis key) and serves the
//! `lamina/node/1` protocol to the plan's peers:
//!
//! * a request carries the sender's genesis digest; the answer is ours, or a rejection
//!   when they differ. A peer counts as connected once its QUIC connection is up *and*
//!   it confirmed the same genesis; the check repeats every `[net] ping_interval_ms`
//!   (its round-trip time is reported) and a peer that fails it stops counting;
//! * within one role (validators among validators) only the node with the smaller key
//!   dials, so each pair shares one connection; across roles the client role dials;
//! * readiness: one check per dialed group (`peers:<group>`, from its [`Need`]) plus
//!   `transport` (the endpoint is bound); `/status` gets a `peers` object, the check
//!   round trips (`peer_check_rtt_ms`) and the endpoint's `net` snapshot;
//! * on shutdown: not ready at once, in-flight requests finish, connections close.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lamina_interfaces::NodeEntry;
use lamina_net::{Empty, Endpoint, Handler, Network, Peer, PeerSet, Protocol, ProtocolConfig, ProtocolId, Reject};
use lamina_primitives::{ChainId, Digest, NodeId, PublicKey};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::module::Module;

/// How many peers of a group must be connected for the node to be ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// At least this many distinct peers of the group.
    AtLeast(usize),
    /// At least one peer of every chain that the group's nodes execute.
    OnePerChain,
}

/// Whether this node dials a group or waits for it to connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// This node dials the group's nodes (and redials them when lost).
    Dial,
    /// The group's nodes dial this node.
    Accept,
}

/// A set of genesis nodes of one role that this node talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGroup {
    /// Name in `/status` and in the readiness check (`validators`).
    pub name: &'static str,
    /// The role of the group's nodes.
    pub role: Module,
    /// The nodes (never this node itself).
    pub peers: Vec<NodeEntry>,
    /// Who connects.
    pub direction: Direction,
    /// Readiness requirement (dialed groups only; accepted groups are reported only).
    pub need: Option<Need>,
}

/// All groups a node talks to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPlan {
    /// The groups, in report order.
    pub groups: Vec<PeerGroup>,
}

/// `entries` without `me`.
pub fn others(entries: &[NodeEntry], me: &NodeEntry) -> Vec<NodeEntry> {
    entries.iter().filter(|e| e.key != me.key).cloned().collect()
}

impl PeerPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a group this node dials, with its readiness requirement.
    pub fn dial(mut self, name: &'static str, role: Module, peers: Vec<NodeEntry>, need: Need) -> Self {
        self.groups.push(PeerGroup { name, role, peers, direction: Direction::Dial, need: Some(need) });
        self
    }

    /// Adds a group that connects to this node (reported, not required).
    pub fn accept(mut self, name: &'static str, role: Module, peers: Vec<NodeEntry>) -> Self {
        self.groups.push(PeerGroup { name, role, peers, direction: Direction::Accept, need: None });
        self
    }

    /// Every key in the plan.
    pub fn keys(&self) -> BTreeSet<PublicKey> {
        self.groups.iter().flat_map(|g| g.peers.iter().map(|p| p.key)).collect()
    }
}

/// One group's readiness, given the set of connected peers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupReport {
    /// Connected peers of the group.
    pub connected: usize,
    /// Peers in the group.
    pub total: usize,
    /// Connected peers needed (None: not required for readiness).
    pub need: Option<usize>,
    /// Whether the requirement is met (true for groups without one).
    pub ok: bool,
    /// Names of the connected peers.
    pub peers: Vec<String>,
}

impl PeerGroup {
    /// The group's report given the connected keys.
    pub fn report(&self, connected: &BTreeSet<PublicKey>) -> GroupReport {
        let up: Vec<&NodeEntry> = self.peers.iter().filter(|p| connected.contains(&p.key)).collect();
        let (need, ok) = match self.need {
            None => (None, true),
            Some(Need::AtLeast(n)) => {
                let n = n.min(self.peers.len());
                (Some(n), up.len() >= n)
            }
            Some(Need::OnePerChain) => {
                let all: BTreeSet<ChainId> = self.peers.iter().filter_map(|p| p.chain).collect();
                let have: BTreeSet<ChainId> = up.iter().filter_map(|p| p.chain).collect();
                (Some(all.len()), have.len() >= all.len())
            }
        };
        GroupReport {
            connected: up.len(),
            total: self.peers.len(),
            need,
            ok,
            peers: up.iter().map(|p| p.name.clone()).collect(),
        }
    }
}

impl PeerPlan {
    /// Reports of every group, by name.
    pub fn report(&self, connected: &BTreeSet<PublicKey>) -> BTreeMap<&'static str, GroupReport> {
        self.groups.iter().map(|g| (g.name, g.report(connected))).collect()
    }

    /// Writes the readiness checks (`peers:<group>` for dialed groups) and the `peers`
    /// status field.
    pub fn publish(&self, connected: &BTreeSet<PublicKey>, health: &lamina_interfaces::Health) {
        let reports = self.report(connected);
        for g in &self.groups {
            if g.need.is_none() {
                continue;
            }
            let r = &reports[g.name];
            health.set_check(
                &format!("peers:{}", g.name),
                r.ok,
                format!("{}/{} {} connected (need {})", r.connected, r.total, g.name, r.need.unwrap_or(0)),
            );
        }
        for (g, r) in &reports {
            metrics::gauge!("lamina_node_peers_connected", "group" => *g).set(r.connected as f64);
            if let Some(n) = r.need {
                metrics::gauge!("lamina_node_peers_required", "group" => *g).set(n as f64);
            }
        }
        health.set_status("peers", &reports);
    }
}

impl PeerPlan {
    /// The lamina-net peer set of this plan for the node `me` of role `role`: every key
    /// of the plan is pinned; dialed groups are dialed, except that within our own role
    /// only the smaller key of each pair dials.
    pub fn peer_set(&self, me: &NodeEntry, role: Module) -> PeerSet {
        let mut set = PeerSet::new();
        for g in &self.groups {
            for p in g.peers.iter().filter(|p| p.key != me.key) {
                let dial = g.direction == Direction::Dial && (g.role != role || me.key < p.key);
                set.insert(Peer { id: p.key, name: Some(p.name.clone()), addr: Some(p.addr), dial });
            }
        }
        set
    }

    fn names(&self) -> BTreeMap<PublicKey, String> {
        self.groups.iter().flat_map(|g| g.peers.iter().map(|p| (p.key, p.name.clone()))).collect()
    }
}

/// The peer service's protocol (`lamina/node/1`): a request carries the sender's genesis
/// digest and the answer is the receiver's, or a rejection when they differ.
#[derive(Debug)]
pub struct NodeProtocol;

impl Protocol for NodeProtocol {
    const ID: ProtocolId = ProtocolId::new("node", 1);
    type Request = Digest;
    type Response = Digest;
    type Message = Empty;
}

/// Serves [`NodeProtocol`]: confirms a peer's genesis.
#[derive(Debug)]
pub struct GenesisCheck {
    /// Our genesis digest.
    pub genesis: Digest,
}

impl Handler<NodeProtocol> for GenesisCheck {
    async fn request(&self, _peer: NodeId, theirs: Digest) -> Result<Digest, Reject> {
        if theirs == self.genesis {
            Ok(self.genesis)
        } else {
            Err(Reject::bad_request(format!("genesis mismatch: ours is {}, yours is {theirs}", self.genesis)))
        }
    }
}

/// What we know about one connected peer.
#[derive(Debug, Default)]
struct PeerState {
    /// The last genesis check succeeded.
    confirmed: bool,
    /// Round-trip time of the last successful check.
    rtt: Option<Duration>,
    /// When the last check was sent.
    last_check: Option<Instant>,
}

/// How often the connection set is re-read.
const POLL: Duration = Duration::from_millis(100);

/// Serves `plan` until `shutdown`: binds the endpoint, keeps connections, publishes
/// readiness, then shuts the endpoint down gracefully.
pub async fn run(ctx: NodeContext, plan: PeerPlan, shutdown: CancellationToken) -> anyhow::Result<()> {
    let health = ctx.health().clone();
    plan.publish(&BTreeSet::new(), &health);
    health.set_check("transport", false, "binding the QUIC endpoint");
    let endpoint = Endpoint::bind(ctx.key(), ctx.endpoint.clone())
        .with_context(|| format!("cannot bind the QUIC endpoint on {}", ctx.endpoint.listen))?;
    let genesis = ctx.genesis().digest();
    let net = match endpoint.register(
        GenesisCheck { genesis },
        plan.peer_set(&ctx.me, ctx.module),
        ProtocolConfig::for_protocol::<NodeProtocol>(),
    ) {
        Ok(n) => n,
        Err(e) => {
            endpoint.shutdown().await;
            return Err(e).context("cannot serve the node protocol");
        }
    };
    endpoint.report_to(health.clone(), Duration::from_millis(ctx.net.stats_interval_ms));
    health.set_check("transport", true, format!("QUIC endpoint bound on {}", endpoint.local_addr()));
    tracing::info!(target: "lamina::peers", addr = %endpoint.local_addr(), protocol = %NodeProtocol::ID, "serving peers");

    monitor(&net, &plan, genesis, &health, ctx.net.ping_interval(), &shutdown).await;

    // Stop intake (no longer ready), let in-flight requests finish, close connections.
    health.set_check("transport", false, "shutting down");
    endpoint.shutdown().await;
    tracing::info!(target: "lamina::peers", "endpoint closed");
    Ok(())
}

/// How often a module node re-checks a connected peer's genesis.
const RECHECK: Duration = Duration::from_secs(30);

/// A plan being served by [`serve_alongside`], which governance may change: a group's
/// peers (and requirement) are replaced, and the `lamina/node/1` peer set follows.
#[derive(Clone)]
pub struct PlanHandle {
    plan: std::sync::Arc<std::sync::RwLock<PeerPlan>>,
    net: lamina_net::Network<NodeProtocol>,
    me: NodeEntry,
    role: Module,
}

impl PlanHandle {
    /// Replaces the peers of group `name` (and its requirement, if it has one: `need`
    /// is ignored for a group this node accepts), then admits (and dials) the new set on
    /// `lamina/node/1`. Nothing happens if the group is absent or unchanged.
    pub fn set_group(&self, name: &str, peers: Vec<NodeEntry>, need: Option<Need>) {
        let set = {
            let mut plan = self.plan.write().unwrap_or_else(|e| e.into_inner());
            let Some(g) = plan.groups.iter_mut().find(|g| g.name == name) else { return };
            let need = if g.direction == Direction::Dial { need.or(g.need) } else { None };
            if g.peers == peers && g.need == need {
                return;
            }
            g.peers = peers;
            g.need = need;
            plan.peer_set(&self.me, self.role)
        };
        self.net.raw().set_peers(set);
    }

    fn snapshot(&self) -> PeerPlan {
        self.plan.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// For modules that run a real service on `endpoint`: also answers the shared
/// `lamina/node/1` genesis check for the peers of `plan`, asks each connected peer
/// for its genesis on connecting and every 30 s (`lamina_node_peer_checks_total{result}`), and keeps
/// `/status`'s `peers` object and the `lamina_node_peers_connected` /
/// `lamina_node_peers_required` gauges current (once a second) until `shutdown`. Returns the reporter task (abort it
/// when the service returns) and a handle through which governance changes the plan
/// (its validators). On error the endpoint is shut down.
pub async fn serve_alongside(
    ctx: &NodeContext,
    endpoint: &Endpoint,
    plan: PeerPlan,
    shutdown: &CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, PlanHandle)> {
    let check = GenesisCheck { genesis: ctx.genesis().digest() };
    let node_net = match endpoint.register(
        check,
        plan.peer_set(&ctx.me, ctx.module),
        ProtocolConfig::for_protocol::<NodeProtocol>(),
    ) {
        Ok(n) => n,
        Err(e) => {
            endpoint.shutdown().await;
            return Err(e).context("cannot serve the node protocol");
        }
    };
    let (health, stop) = (ctx.health().clone(), shutdown.clone());
    let genesis = ctx.genesis().digest();
    plan.publish(&BTreeSet::new(), &health);
    let handle = PlanHandle {
        plan: std::sync::Arc::new(std::sync::RwLock::new(plan)),
        net: node_net.clone(),
        me: ctx.me.clone(),
        role: ctx.module,
    };
    let shared = handle.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // When each connected peer's genesis was last checked: on every new connection,
        // then every RECHECK (a few requests a minute, not pings: an idle node stays
        // nearly idle), so a peer on another genesis keeps counting as failed.
        let mut checked: BTreeMap<PublicKey, Instant> = BTreeMap::new();
        for result in ["ok", "failed"] {
            metrics::counter!("lamina_node_peer_checks_total", "result" => result).increment(0);
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    let plan = shared.snapshot();
                    let names = plan.names();
                    let connected: BTreeSet<PublicKey> = node_net.connected_peers().into_iter().collect();
                    checked.retain(|k, _| connected.contains(k));
                    let now = Instant::now();
                    for peer in &connected {
                        if checked.get(peer).is_some_and(|t| now.duration_since(*t) < RECHECK) {
                            continue;
                        }
                        checked.insert(*peer, now);
                        let (net, peer) = (node_net.clone(), *peer);
                        let name = names.get(&peer).cloned().unwrap_or_else(|| peer.to_hex()[..16].to_string());
                        tokio::spawn(async move {
                            match check_genesis(&net, &peer, genesis, Duration::from_secs(5)).await {
                                Ok(()) => {}
                                Err(e @ CheckError::OtherGenesis(_)) => {
                                    tracing::error!(target: "lamina::peers", peer = %name, error = %e, "peer runs another genesis")
                                }
                                Err(e) => tracing::debug!(target: "lamina::peers", peer = %name, error = %e, "peer genesis check failed"),
                            }
                        });
                    }
                    plan.publish(&connected, &health);
                }
            }
        }
    });
    Ok((task, handle))
}

/// Why a peer's genesis check failed.
#[derive(Debug)]
enum CheckError {
    /// The peer runs another genesis (it answered with its own, or refused ours).
    OtherGenesis(String),
    /// No answer (transport, timeout).
    Unanswered(lamina_net::NetError),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::OtherGenesis(why) => write!(f, "other genesis: {why}"),
            CheckError::Unanswered(e) => e.fmt(f),
        }
    }
}

/// Asks `peer` for its genesis (the `lamina/node/1` check): `Ok` when it runs ours.
/// Counts `lamina_node_peer_checks_total{result}`.
async fn check_genesis(
    net: &Network<NodeProtocol>,
    peer: &PublicKey,
    genesis: Digest,
    timeout: Duration,
) -> Result<(), CheckError> {
    let r = match net.request_with_timeout(peer, &genesis, timeout).await {
        Ok(theirs) if theirs == genesis => Ok(()),
        Ok(theirs) => Err(CheckError::OtherGenesis(format!("peer answered with genesis {theirs}"))),
        Err(lamina_net::NetError::Rejected(reject)) => Err(CheckError::OtherGenesis(reject.reason)),
        Err(e) => Err(CheckError::Unanswered(e)),
    };
    let result = if r.is_ok() { "ok" } else { "failed" };
    metrics::counter!("lamina_node_peer_checks_total", "result" => result).increment(1);
    r
}

/// Keeps the peer states and the health handle current until `shutdown`.
async fn monitor(
    net: &Network<NodeProtocol>,
    plan: &PeerPlan,
    genesis: Digest,
    health: &lamina_interfaces::Health,
    ping_interval: Duration,
    shutdown: &CancellationToken,
) {
    let names = plan.names();
    let name = |k: &PublicKey| names.get(k).cloned().unwrap_or_else(|| k.to_hex()[..16].to_string());
    let check_timeout = ping_interval.max(Duration::from_secs(1));
    let mut states: BTreeMap<PublicKey, PeerState> = BTreeMap::new();
    let mut inflight: JoinSet<(PublicKey, Instant, Result<(), CheckError>)> = JoinSet::new();
    let mut pending: BTreeSet<PublicKey> = BTreeSet::new();
    let mut published: Option<BTreeMap<&'static str, GroupReport>> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok((peer, sent, result)) = done else { continue };
                pending.remove(&peer);
                let Some(st) = states.get_mut(&peer) else { continue };
                match result {
                    Ok(()) => {
                        if !st.confirmed {
                            tracing::info!(target: "lamina::peers", peer = %name(&peer), "peer connected, same genesis");
                        }
                        st.confirmed = true;
                        st.rtt = Some(sent.elapsed());
                    }
                    Err(e) => {
                        if st.confirmed {
                            tracing::warn!(target: "lamina::peers", peer = %name(&peer), error = %e, "peer check failed");
                        } else {
                            tracing::debug!(target: "lamina::peers", peer = %name(&peer), error = %e, "peer check failed");
                        }
                        st.confirmed = false;
                    }
                }
            }
            _ = tick.tick() => {}
        }

        let connected: BTreeSet<PublicKey> = net.connected_peers().into_iter().collect();
        states.retain(|k, st| {
            let keep = connected.contains(k);
            if !keep && st.confirmed {
                tracing::info!(target: "lamina::peers", peer = %name(k), "peer disconnected");
            }
            keep
        });
        let now = Instant::now();
        for peer in &connected {
            let st = states.entry(*peer).or_default();
            let due = st.last_check.is_none_or(|t| now.duration_since(t) >= ping_interval);
            if due && !pending.contains(peer) {
                st.last_check = Some(now);
                pending.insert(*peer);
                let (net, peer) = (net.clone(), *peer);
                inflight.spawn(async move {
                    let r = check_genesis(&net, &peer, genesis, check_timeout).await;
                    (peer, now, r)
                });
            }
        }

        let confirmed: BTreeSet<PublicKey> = states.iter().filter(|(_, s)| s.confirmed).map(|(k, _)| *k).collect();
        let reports = plan.report(&confirmed);
        if published.as_ref() != Some(&reports) {
            for (g, r) in &reports {
                if published.as_ref().and_then(|p| p.get(g)).map(|p| p.ok) != Some(r.ok) && r.need.is_some() {
                    tracing::info!(target: "lamina::peers", group = g, connected = r.connected, need = r.need, ok = r.ok, "peer group");
                }
            }
            plan.publish(&confirmed, health);
            published = Some(reports);
        }
        let rtts: BTreeMap<String, f64> = states
            .iter()
            .filter_map(|(k, s)| {
                s.rtt.filter(|_| s.confirmed).map(|r| (name(k), (r.as_secs_f64() * 1e6).round() / 1e3))
            })
            .collect();
        health.set_status("peer_check_rtt_ms", rtts);
    }
    inflight.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    fn node(i: u64, chain: Option<u64>) -> NodeEntry {
        NodeEntry {
            name: format!("n{i}"),
            key: Keypair::for_testing(i).public(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
            http: None,
            admin: None,
            chain: chain.map(ChainId),
        }
    }

    #[test]
    fn readiness_follows_each_groups_need() {
        let plan = PeerPlan::new()
            .dial("validators", Module::Consensus, (0..3).map(|i| node(i, None)).collect(), Need::AtLeast(2))
            .dial(
                "execution_nodes",
                Module::Execution,
                vec![node(10, Some(1)), node(11, Some(1)), node(12, Some(2))],
                Need::OnePerChain,
            )
            .accept("bridge_nodes", Module::Bridge, vec![node(20, None)]);
        let key = |i: u64| Keypair::for_testing(i).public();
        let mut up = BTreeSet::new();
        let r = plan.report(&up);
        assert!(!r["validators"].ok && !r["execution_nodes"].ok && r["bridge_nodes"].ok);
        up.insert(key(0));
        up.insert(key(10));
        up.insert(key(11));
        let r = plan.report(&up);
        assert!(!r["validators"].ok, "1 of the 2 needed");
        assert!(!r["execution_nodes"].ok, "chain 2 has no connected node");
        up.insert(key(2));
        up.insert(key(12));
        up.insert(key(99)); // not in the plan: ignored
        let r = plan.report(&up);
        assert!(r["validators"].ok && r["execution_nodes"].ok);
        assert_eq!(r["validators"].peers, ["n0", "n2"]);
        assert_eq!(r["execution_nodes"].need, Some(2));

        let h = lamina_interfaces::Health::new();
        plan.publish(&up, &h);
        assert!(h.is_ready());
        assert_eq!(h.checks()["peers:validators"].detail, "2/3 validators connected (need 2)");
        assert_eq!(h.status_json()["peers"]["bridge_nodes"]["connected"], 0);
    }

    #[test]
    fn within_a_role_only_the_smaller_key_dials() {
        let nodes: Vec<NodeEntry> = (0..4).map(|i| node(i, None)).collect();
        let da = vec![node(10, None)];
        let mut sorted = nodes.clone();
        sorted.sort_by_key(|n| n.key);
        let me = &sorted[1];
        let plan = PeerPlan::new()
            .dial("validators", Module::Consensus, others(&nodes, me), Need::AtLeast(2))
            .dial("da_nodes", Module::Da, da.clone(), Need::AtLeast(1))
            .accept("execution_nodes", Module::Execution, vec![node(20, Some(1))]);
        let set = plan.peer_set(me, Module::Consensus);
        assert_eq!(set.len(), 5, "every key of the plan is pinned");
        assert!(!set.contains(&me.key));
        assert!(!set.get(&sorted[0].key).unwrap().dial, "the smaller key dials us");
        assert!(set.get(&sorted[2].key).unwrap().dial && set.get(&sorted[3].key).unwrap().dial);
        assert!(set.get(&da[0].key).unwrap().dial, "validators dial DA nodes");
        assert!(!set.get(&Keypair::for_testing(20).public()).unwrap().dial, "execution nodes dial us");
    }

    #[tokio::test]
    async fn genesis_check_rejects_another_network() {
        let g = lamina_primitives::domains::GENESIS.hash(b"ours");
        let h = GenesisCheck { genesis: g };
        let peer = Keypair::for_testing(1).public();
        assert_eq!(h.request(peer, g).await.unwrap(), g);
        let other = lamina_primitives::domains::GENESIS.hash(b"theirs");
        assert!(h.request(peer, other).await.is_err());
    }

    /// Three nodes in this process over real QUIC on loopback: they connect, confirm
    /// the genesis, become ready, and shut down cleanly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_connect_over_quic_and_become_ready() {
        use std::sync::Arc;
        let (quic, _) = crate::devnet::layout::free_ports(3).unwrap();
        let entry = |i: usize, name: &str| NodeEntry {
            name: name.into(),
            key: Keypair::for_testing(100 + i as u64).public(),
            addr: quic[i],
            http: None,
            admin: None,
            chain: None,
        };
        let mut genesis = crate::genesis::empty("peers-test");
        genesis.chains.push(lamina_interfaces::ChainSpec {
            id: ChainId(1),
            name: "one".into(),
            ..lamina_interfaces::ChainSpec::default()
        });
        genesis.validators = vec![entry(0, "v0"), entry(1, "v1")];
        genesis.da_nodes = vec![entry(2, "d0")];
        crate::genesis::check(&genesis).unwrap();
        let genesis = Arc::new(genesis);
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut healths = Vec::new();
        for (i, module) in [(0, Module::Consensus), (1, Module::Consensus), (2, Module::Da)] {
            let me = genesis.all_nodes().nth(i).unwrap().clone();
            let net = crate::config::NetSection { ping_interval_ms: 200, ..Default::default() };
            let health = lamina_interfaces::Health::new();
            let ctx = NodeContext {
                service: lamina_net::NodeContext::new(
                    Keypair::for_testing(100 + i as u64),
                    genesis.clone(),
                    dir.path().to_path_buf(),
                    health.clone(),
                ),
                module,
                me: me.clone(),
                home: crate::home::Home::new(dir.path()),
                endpoint: net.endpoint_config(me.addr),
                net,
            };
            let plan = match module {
                Module::Consensus => crate::modules::consensus::peer_plan(&ctx),
                _ => crate::modules::da::peer_plan(&ctx),
            };
            healths.push(health);
            tasks.push(tokio::spawn(run(ctx, plan, shutdown.clone())));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !healths.iter().all(|h| h.is_ready()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready: {:?}",
                healths.iter().map(|h| h.status_json()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let v0 = healths[0].status_json();
        assert_eq!(v0["peers"]["validators"]["peers"], serde_json::json!(["v1"]));
        assert_eq!(v0["peers"]["da_nodes"]["connected"], 1);
        // The DA node needs no one to be ready; it reports the validators that connected
        // to it once it has confirmed their genesis.
        while healths[2].status_json()["peers"]["validators"]["connected"] != 2 {
            assert!(tokio::time::Instant::now() < deadline, "{}", healths[2].status_json());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(!healths[0].is_ready(), "not ready once shut down");
    }

    #[test]
    fn a_need_larger_than_the_group_is_capped() {
        let plan = PeerPlan::new().dial("da_nodes", Module::Da, vec![node(1, None)], Need::AtLeast(3));
        let up: BTreeSet<_> = [Keypair::for_testing(1).public()].into();
        assert!(plan.report(&up)["da_nodes"].ok);
        assert!(!plan.report(&BTreeSet::new())["da_nodes"].ok);
    }
}
