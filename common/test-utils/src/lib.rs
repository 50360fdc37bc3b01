//! Test support for Lamina: the fixtures tests across the layers share (genesis, chains, node entries) (dev-dependency only).
//!
//! A genesis or a node entry is so built one way everywhere: a test states only what it needs and takes the rest from [`genesis`]:
//!
//! ```
//! use lamina_interfaces::Genesis;
//! use lamina_primitives::Keypair;
//! use lamina_test_utils::{chain, genesis, localhost, node};
//!
//! let g = Genesis {
//!     chains: vec![chain(1)],
//!     validators: (0..4).map(|i| node(format!("validator-{i}"), &Keypair::for_testing(i), localhost(0))).collect(),
//!     da_nodes: (0..4).map(|i| node(format!("da-{i}"), &Keypair::for_testing(100 + i), localhost(0))).collect(),
//!     ..genesis("my-test")
//! };
//! assert!(g.validate().is_ok());
//! ```
//!
//! The consensus layer's deterministic simulation (seeded network, time and crashes) is
//! in `consensus/core/tests/sim`, next to the state machine it drives.

use std::net::SocketAddr;

use lamina_interfaces::{ChainSpec, Genesis, NodeEntry};
use lamina_primitives::{ChainId, Keypair};

/// A genesis named `network` with nothing in it: no chains, no nodes, no clients, the
/// default settlement and bridge parameters. It does not validate until the test adds
/// a committee; fill it with struct update syntax (`Genesis { .., ..genesis("t") }`).
pub fn genesis(network: &str) -> Genesis {
    Genesis {
        network: network.into(),
        chains: Vec::new(),
        validators: Vec::new(),
        da_nodes: Vec::new(),
        execution_nodes: Vec::new(),
        settlement_nodes: Vec::new(),
        bridge_nodes: Vec::new(),
        da_threshold: None,
        clients: Vec::new(),
        settlement: Default::default(),
        bridge: Default::default(),
    }
}

/// Chain `id`, named `chain-<id>`, with [`ChainSpec::default`]'s settings otherwise (no
/// balances, no funded test accounts, no fee, ledger version 1).
pub fn chain(id: u64) -> ChainSpec {
    ChainSpec { id: ChainId(id), name: format!("chain-{id}"), ..ChainSpec::default() }
}

/// A node entry: `name`, `key`'s public key, its QUIC address `addr`, no HTTP or admin
/// address, no chain (set `chain` for an execution node with struct update syntax).
pub fn node(name: impl Into<String>, key: &Keypair, addr: SocketAddr) -> NodeEntry {
    NodeEntry { name: name.into(), key: key.public(), addr, http: None, admin: None, chain: None }
}

/// `127.0.0.1:port`; port 0 for the entry of a node the test never dials.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_genesis_needs_a_committee_and_a_filled_one_validates() {
        assert!(genesis("t").validate().is_err(), "no validators must not validate");
        let g = Genesis {
            chains: vec![chain(1), chain(2)],
            validators: (0..4).map(|i| node(format!("v{i}"), &Keypair::for_testing(i), localhost(0))).collect(),
            da_nodes: (0..4).map(|i| node(format!("d{i}"), &Keypair::for_testing(10 + i), localhost(0))).collect(),
            ..genesis("t")
        };
        assert_eq!(g.validate(), Ok(()));
        assert_eq!(g.chains[1].name, "chain-2");
        assert_eq!(g.chains[1].ledger_version, ChainSpec::default().ledger_version);
    }
}
