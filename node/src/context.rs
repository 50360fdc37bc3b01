//! What a module's service is given when it starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lamina_interfaces::{Genesis, Health, NodeEntry};
use lamina_primitives::Keypair;

use crate::config::NetSection;
use crate::home::Home;
use crate::modules::Module;

/// A node's identity, network, storage location and health handle.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// The module this node runs.
    pub module: Module,
    /// The node key (identity and pinned TLS key).
    pub key: Keypair,
    /// The network's genesis (validated).
    pub genesis: Arc<Genesis>,
    /// This node's entry in `genesis` (found by its key, in its module's role).
    pub me: NodeEntry,
    /// The home directory.
    pub home: Home,
    /// `data/` of the home: where the service keeps its stores.
    pub data_dir: PathBuf,
    /// UDP address to bind (`[net] listen_addr`, else the genesis address).
    pub listen_addr: SocketAddr,
    /// QUIC settings.
    pub net: NetSection,
    /// Readiness checks and `/status` fields, served by the admin server.
    pub health: Health,
}
