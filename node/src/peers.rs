//! The shared peer service: which peers a role needs, connecting to them, reporting them.
//!
//! Each module file describes its needs as a [`PeerPlan`]: groups of genesis nodes it
//! dials (each with a readiness requirement, [`Need`]) and groups it accepts
//! connections from. [`run`] serves the plan until shutdown and keeps one readiness
//! check per dialed group in the node's [`lamina_interfaces::Health`] (`peers:<group>`),
//! plus a `peers` object in `/status`.

use std::collections::{BTreeMap, BTreeSet};

use lamina_interfaces::NodeEntry;
use lamina_primitives::{ChainId, PublicKey};
use tokio_util::sync::CancellationToken;

use crate::context::NodeContext;
use crate::modules::Module;

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
        health.set_status("peers", &reports);
    }
}

/// Serves `plan` until `shutdown`.
///
/// NOT FINISHED: the QUIC side waits for `lamina-net`'s endpoint API to land. Until
/// then the node serves its admin endpoints and reports, truthfully, that it is not
/// connected: `/readyz` stays 503 with `transport: QUIC peer connections not wired yet`.
pub async fn run(ctx: NodeContext, plan: PeerPlan, shutdown: CancellationToken) -> anyhow::Result<()> {
    plan.publish(&BTreeSet::new(), &ctx.health);
    ctx.health.set_check("transport", false, "QUIC peer connections not wired yet (lamina-net pending)");
    shutdown.cancelled().await;
    Ok(())
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
    fn a_need_larger_than_the_group_is_capped() {
        let plan = PeerPlan::new().dial("da_nodes", Module::Da, vec![node(1, None)], Need::AtLeast(3));
        let up: BTreeSet<_> = [Keypair::for_testing(1).public()].into();
        assert!(plan.report(&up)["da_nodes"].ok);
        assert!(!plan.report(&BTreeSet::new())["da_nodes"].ok);
    }
}
