//! Test support for Lamina: the fixtures tests across the layers share (genesis, chains, node entries, an in-memory DA, child processes) (dev-dependency only).
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
//! A test that runs a node in its own process (to kill it with `SIGKILL` and restart it)
//! uses [`child::TestChild`].
//!
//! The consensus layer's deterministic simulation (seeded network, time and crashes) is
//! in `consensus/core/tests/sim`, next to the state machine it drives.

pub mod child;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lamina_interfaces::{Blob, ChainSpec, DaError, DataAvailability, Genesis, NodeEntry};
use lamina_primitives::{
    AvailabilityCertificate, ChainId, DataCommitment, Digest, Keypair, Namespace, QuorumCertificate, Signature,
};

/// A genesis named `network` with nothing in it: no chains, no nodes, no clients, the
/// default settlement and bridge parameters, transactions bound to the network (as a
/// new network's are). It does not validate until the test adds
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
        governance: Default::default(),
        tx_binds_network: true,
        da_any_width: true,
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

static FAKE_DA_ROOT: lamina_primitives::Domain = lamina_primitives::Domain::new("lamina test-utils fake da root v1");

/// The one in-memory DA layer of the tests: `submit` keeps the blobs under a data root
/// that hashes them (no erasure coding, no DA nodes) and answers a certificate, signed
/// by the given DA keys ([`FakeDa::signed_by`], real signatures at the threshold, for
/// consumers that check certificates) or unsigned ([`FakeDa::new`], for consumers with
/// certificate checks off); `get_namespace` returns a kept square's blobs of a
/// namespace. It can be switched off ([`FakeDa::down`]) to act out an outage, and
/// preloaded under any root ([`FakeDa::insert`]). Clones share the squares. The real DA
/// layer is tested by its own crates; this one exercises the other layers through the
/// same trait.
#[derive(Clone, Default)]
pub struct FakeDa {
    squares: Arc<Mutex<BTreeMap<Digest, Vec<Blob>>>>,
    signers: Arc<Vec<Keypair>>,
    threshold: usize,
    /// While true, `submit` fails as if too few DA nodes answered.
    pub down: Arc<AtomicBool>,
    /// Successful `submit`s.
    pub submitted: Arc<AtomicU64>,
}

impl std::fmt::Debug for FakeDa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDa").field("signers", &self.signers.len()).field("threshold", &self.threshold).finish()
    }
}

impl FakeDa {
    /// A DA layer whose certificates carry no signatures.
    pub fn new() -> Self {
        Self::default()
    }

    /// A DA layer whose certificates are signed by the first `threshold` of `keys` (the
    /// DA committee, in genesis order).
    pub fn signed_by(keys: Vec<Keypair>, threshold: usize) -> Self {
        FakeDa { signers: Arc::new(keys), threshold, ..Self::default() }
    }

    /// The same squares with its own on/off switch, starting `down`.
    pub fn with_own_switch(&self, down: bool) -> FakeDa {
        FakeDa { down: Arc::new(AtomicBool::new(down)), ..self.clone() }
    }

    /// The commitment `submit` gives `blobs` (sorted into namespace order first).
    pub fn commitment(blobs: &mut [Blob]) -> DataCommitment {
        blobs.sort_by_key(|b| b.namespace);
        let mut h = FAKE_DA_ROOT.hasher();
        for b in blobs.iter() {
            h.update(&b.namespace.0);
            h.update(&(b.data.len() as u64).to_le_bytes());
            h.update(&b.data);
        }
        let mut namespaces: Vec<Namespace> = blobs.iter().map(|b| b.namespace).collect();
        namespaces.dedup();
        DataCommitment {
            data_root: Digest(*h.finalize().as_bytes()),
            square_width: 1,
            codec: 0,
            namespaces,
            blob_bytes: blobs.iter().map(|b| b.data.len() as u64).sum(),
        }
    }

    /// Keeps `blobs` under `root` (no certificate), as if dispersed before.
    pub fn insert(&self, root: Digest, blobs: Vec<Blob>) {
        self.squares.lock().unwrap_or_else(|e| e.into_inner()).insert(root, blobs);
    }

    /// The blobs kept under `root`.
    pub fn blobs(&self, root: &Digest) -> Option<Vec<Blob>> {
        self.squares.lock().unwrap_or_else(|e| e.into_inner()).get(root).cloned()
    }

    fn submit_now(&self, mut blobs: Vec<Blob>) -> Result<AvailabilityCertificate, DaError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(DaError::InsufficientNodes { have: 0, need: self.threshold.max(1) });
        }
        // Like the real DA layer: the padding and parity namespaces belong to the square
        // itself, and a blob has data.
        if blobs
            .iter()
            .any(|b| b.data.is_empty() || b.namespace == Namespace::PADDING || b.namespace == Namespace::PARITY)
        {
            return Err(DaError::Rejected("empty blob or padding/parity namespace".into()));
        }
        let commitment = Self::commitment(&mut blobs);
        let d = commitment.attestation_digest();
        let votes: Vec<(usize, Signature)> =
            self.signers.iter().take(self.threshold).enumerate().map(|(i, k)| (i, k.sign(&d))).collect();
        let signatures = if votes.is_empty() {
            Default::default()
        } else {
            QuorumCertificate::from_votes(d, self.signers.len(), &votes)
        };
        self.insert(commitment.data_root, blobs);
        self.submitted.fetch_add(1, Ordering::Relaxed);
        Ok(AvailabilityCertificate { commitment, signatures })
    }

    fn get_now(&self, commitment: &DataCommitment, namespace: Namespace) -> Result<Vec<Vec<u8>>, DaError> {
        let blobs = self
            .blobs(&commitment.data_root)
            .ok_or_else(|| DaError::Unavailable(format!("no square {}", commitment.data_root)))?;
        Ok(blobs.into_iter().filter(|b| b.namespace == namespace).map(|b| b.data).collect())
    }
}

impl DataAvailability for FakeDa {
    fn submit(&self, blobs: Vec<Blob>) -> impl Future<Output = Result<AvailabilityCertificate, DaError>> + Send {
        std::future::ready(self.submit_now(blobs))
    }

    fn get_namespace(
        &self,
        commitment: &DataCommitment,
        namespace: Namespace,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, DaError>> + Send {
        std::future::ready(self.get_now(commitment, namespace))
    }
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

    #[test]
    fn the_fake_da_keeps_squares_signs_at_the_threshold_and_can_be_switched_off() {
        let g = Genesis {
            chains: vec![chain(1)],
            validators: (0..4).map(|i| node(format!("v{i}"), &Keypair::for_testing(i), localhost(0))).collect(),
            da_nodes: (0..4).map(|i| node(format!("d{i}"), &Keypair::for_testing(10 + i), localhost(0))).collect(),
            ..genesis("t")
        };
        let ns = Namespace::from(ChainId(1));
        let blob = || Blob { namespace: ns, data: vec![1, 2, 3] };
        let da = FakeDa::signed_by((0..4).map(|i| Keypair::for_testing(10 + i)).collect(), g.da_threshold());
        let cert = da.submit_now(vec![blob()]).unwrap();
        assert_eq!(cert.verify(&g.da_committee(), g.da_threshold()), Ok(()));
        assert_eq!(da.get_now(&cert.commitment, ns).unwrap(), vec![vec![1, 2, 3]]);
        assert_eq!(da.submitted.load(Ordering::Relaxed), 1);
        // Unsigned certificates do not verify; clones share the squares.
        let plain = FakeDa::new();
        let unsigned = plain.submit_now(vec![blob()]).unwrap();
        assert!(unsigned.verify(&g.da_committee(), g.da_threshold()).is_err());
        assert!(plain.clone().blobs(&unsigned.commitment.data_root).is_some());
        // Down: submit fails; an empty blob is refused; an unknown square is unavailable.
        let off = da.with_own_switch(true);
        assert!(matches!(off.submit_now(vec![blob()]), Err(DaError::InsufficientNodes { .. })));
        assert!(matches!(da.submit_now(vec![Blob { namespace: ns, data: vec![] }]), Err(DaError::Rejected(_))));
        let mut unknown = cert.commitment.clone();
        unknown.data_root = Digest::ZERO;
        assert!(matches!(da.get_now(&unknown, ns), Err(DaError::Unavailable(_))));
    }
}
