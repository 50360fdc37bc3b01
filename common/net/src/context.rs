//! [`NodeContext`]: what the `lamina` binary hands to every service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lamina_interfaces::{Genesis, Health, NodeEntry};
use lamina_primitives::{ChainId, Keypair, NodeId};

use crate::access::Access;
use crate::config::EndpointConfig;
use crate::endpoint::Endpoint;
use crate::error::NetError;
use crate::peers::PeerSet;

/// The roles of the genesis committee file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Consensus validator.
    Validator,
    /// DA storage node.
    DaNode,
    /// Execution node (of one chain).
    Execution,
    /// Settlement node.
    Settlement,
    /// Bridge relayer.
    Bridge,
}

/// Everything a service receives from the binary: the node key, the genesis, the data
/// directory and the health handle.
///
/// Services are started as `run(ctx: NodeContext, config, shutdown)` (CONTRIBUTING.md,
/// "Services"). The peer-set helpers read the genesis: each returns the nodes of a role
/// as peers to dial, **excluding this node**; use [`PeerSet::accept_only`] for roles that
/// connect to us rather than the other way round.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// The node's key: its identity, TLS key and signing key.
    pub keypair: Keypair,
    /// The network's genesis (validated by the binary before services start).
    pub genesis: Arc<Genesis>,
    /// This service's data directory (`<home>/data/...`), created by the binary.
    pub data_dir: PathBuf,
    /// Readiness checks and `/status` fields, served by the binary's admin server.
    pub health: Health,
    /// Who may use the client-facing protocols (open by default); register them
    /// through it with [`NodeContext::client_peers`] as the base.
    pub access: Access,
}

impl NodeContext {
    /// A context from its parts.
    pub fn new(keypair: Keypair, genesis: Arc<Genesis>, data_dir: PathBuf, health: Health) -> Self {
        NodeContext { keypair, genesis, data_dir, health, access: Access::default() }
    }

    /// The same context with the client-access handle `access`.
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The keys a client-facing protocol always admits, whatever the access policy:
    /// every genesis node (accepted, not dialed) and every genesis client, excluding
    /// this node.
    pub fn client_peers(&self) -> PeerSet {
        let mut set = PeerSet::dial_entries(self.genesis.all_nodes()).accept_only();
        for c in &self.genesis.clients {
            set = set.with_accept(c.key);
        }
        set.without(&self.node_id())
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        self.keypair.public()
    }

    /// This node's genesis entry, in whichever role lists its key.
    pub fn entry(&self) -> Option<&NodeEntry> {
        self.genesis.node(&self.node_id())
    }

    /// The role this node's key has in the genesis.
    pub fn role(&self) -> Option<Role> {
        let me = self.node_id();
        let g = &self.genesis;
        let has = |v: &[NodeEntry]| v.iter().any(|e| e.key == me);
        if has(&g.validators) {
            Some(Role::Validator)
        } else if has(&g.da_nodes) {
            Some(Role::DaNode)
        } else if has(&g.execution_nodes) {
            Some(Role::Execution)
        } else if has(&g.settlement_nodes) {
            Some(Role::Settlement)
        } else if has(&g.bridge_nodes) {
            Some(Role::Bridge)
        } else {
            None
        }
    }

    /// The QUIC address the genesis assigns to this node.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.entry().map(|e| e.addr)
    }

    /// The nodes of `role` as peers to dial, excluding this node.
    pub fn peers(&self, role: Role) -> PeerSet {
        let g = &self.genesis;
        let entries = match role {
            Role::Validator => &g.validators,
            Role::DaNode => &g.da_nodes,
            Role::Execution => &g.execution_nodes,
            Role::Settlement => &g.settlement_nodes,
            Role::Bridge => &g.bridge_nodes,
        };
        PeerSet::dial_entries(entries).without(&self.node_id())
    }

    /// Consensus validators (excluding this node).
    pub fn validators(&self) -> PeerSet {
        self.peers(Role::Validator)
    }

    /// DA storage nodes (excluding this node).
    pub fn da_nodes(&self) -> PeerSet {
        self.peers(Role::DaNode)
    }

    /// Execution nodes of every chain (excluding this node).
    pub fn execution_nodes(&self) -> PeerSet {
        self.peers(Role::Execution)
    }

    /// Execution nodes of `chain` (excluding this node).
    pub fn execution_nodes_for(&self, chain: ChainId) -> PeerSet {
        PeerSet::dial_entries(self.genesis.execution_nodes.iter().filter(|e| e.chain == Some(chain)))
            .without(&self.node_id())
    }

    /// Settlement nodes (excluding this node).
    pub fn settlement_nodes(&self) -> PeerSet {
        self.peers(Role::Settlement)
    }

    /// Bridge relayers (excluding this node).
    pub fn bridge_nodes(&self) -> PeerSet {
        self.peers(Role::Bridge)
    }

    /// Binds this node's endpoint on its genesis address (or `config.listen` if the
    /// node has no genesis entry), with this node's key. Must run inside a tokio runtime.
    pub fn bind_endpoint(&self, mut config: EndpointConfig) -> Result<Endpoint, NetError> {
        if let Some(addr) = self.listen_addr() {
            config.listen = addr;
        }
        Endpoint::bind(&self.keypair, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_interfaces::ChainSpec;

    fn entry(i: u64, chain: Option<ChainId>) -> NodeEntry {
        let addr = lamina_test_utils::localhost(9000 + i as u16);
        NodeEntry { chain, ..lamina_test_utils::node(format!("n{i}"), &Keypair::for_testing(i), addr) }
    }

    #[test]
    fn role_peer_sets_exclude_self() {
        let genesis = Genesis {
            chains: vec![ChainSpec { id: ChainId(1), name: "one".into(), ..ChainSpec::default() }],
            validators: (0..4).map(|i| entry(i, None)).collect(),
            da_nodes: (4..6).map(|i| entry(i, None)).collect(),
            execution_nodes: vec![entry(6, Some(ChainId(1))), entry(7, Some(ChainId(2)))],
            ..lamina_test_utils::genesis("t")
        };
        let ctx = NodeContext::new(Keypair::for_testing(1), Arc::new(genesis), PathBuf::from("/tmp/x"), Health::new());
        assert_eq!(ctx.role(), Some(Role::Validator));
        assert_eq!(ctx.listen_addr(), Some(SocketAddr::from(([127, 0, 0, 1], 9001))));
        let v = ctx.validators();
        assert_eq!(v.len(), 3);
        assert!(!v.contains(&ctx.node_id()));
        assert_eq!(v.get(&Keypair::for_testing(0).public()).unwrap().name.as_deref(), Some("n0"));
        assert_eq!(ctx.da_nodes().len(), 2);
        assert_eq!(ctx.execution_nodes().len(), 2);
        assert_eq!(ctx.execution_nodes_for(ChainId(1)).len(), 1);
        assert!(ctx.settlement_nodes().is_empty());
    }
}
