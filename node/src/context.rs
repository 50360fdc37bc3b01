//! What a module's service is given when it starts.

use std::sync::Arc;

use lamina_interfaces::{Genesis, Health, NodeEntry};
use lamina_net::EndpointConfig;
use lamina_primitives::Keypair;

use crate::config::NetSection;
use crate::home::Home;
use crate::module::Module;

/// A node's identity, network, storage location and health handle.
///
/// `service` is exactly what the layer services' `run(ctx, config, shutdown)` take
/// (`lamina_net::NodeContext`: key, genesis, data directory, health); the rest is what
/// the binary resolved around it.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// Key, genesis (validated), `data/` directory and health handle.
    pub service: lamina_net::NodeContext,
    /// The module this node runs.
    pub module: Module,
    /// This node's entry in the genesis (found by its key, in its module's role).
    pub me: NodeEntry,
    /// The home directory.
    pub home: Home,
    /// The endpoint to bind: `[net]` settings, listening on `[net] listen_addr` or else
    /// the genesis address.
    pub endpoint: EndpointConfig,
    /// The `[net]` section as configured.
    pub net: NetSection,
}

impl NodeContext {
    /// The node key.
    pub fn key(&self) -> &Keypair {
        &self.service.keypair
    }

    /// The genesis.
    pub fn genesis(&self) -> &Arc<Genesis> {
        &self.service.genesis
    }

    /// The health handle behind `/readyz` and `/status`.
    pub fn health(&self) -> &Health {
        &self.service.health
    }
}
