//! Client access: who may use a node's client-facing protocols (transaction intake,
//! queries, public reads), and changing that while the node runs.
//!
//! Node-to-node protocols pin the genesis keys and nothing else. Client-facing ones are
//! **open by default**: a transaction's own signature and fee authorise it, and reads
//! are public, so any wallet key may connect (within the caps of
//! [`crate::TransportLimits::max_open_connections`] and one shared inbound budget). A
//! consortium that wants to know its clients sets `open = false`: then only genesis
//! nodes, genesis `[[clients]]` and `allowed_clients` may connect. [`Access::set_policy`]
//! applies a new policy to every protocol registered through [`Access::register`] at
//! once (the binary does it on SIGHUP): keys that lose access are disconnected.
//!
//! On-chain governance changes the client keys by vote (`lamina gov propose add-client`);
//! a node that follows it applies each epoch's list with [`Access::set_governed_clients`]
//! the same way, without a restart.

use std::sync::{Arc, Mutex};

use lamina_primitives::PublicKey;
use serde::{Deserialize, Serialize};

use crate::config::ProtocolConfig;
use crate::endpoint::{Endpoint, Network};
use crate::error::NetError;
use crate::peers::PeerSet;
use crate::protocol::{Handler, Protocol};

/// The access policy of a node's client-facing protocols (`[access]` in `config.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessPolicy {
    /// Any key may connect (true, the default: a transaction's signature and fee
    /// authorise it, reads are public; strangers share one memory budget and
    /// `net.limits.max_open_connections`). false: only genesis nodes, genesis clients and
    /// `allowed_clients`.
    pub open: bool,
    /// Public keys (hex) allowed besides the genesis nodes and clients (meaningful for
    /// connecting when `open` is false; harmless otherwise); also the keys that may store
    /// blobs on a DA node (reads are open, storing is not).
    #[schemars(with = "Vec<String>")]
    pub allowed_clients: Vec<PublicKey>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy { open: true, allowed_clients: Vec::new() }
    }
}

impl AccessPolicy {
    /// `base` (the keys the protocol always admits) with this policy applied.
    pub fn apply(&self, base: &PeerSet) -> PeerSet {
        let mut set = base.clone();
        for k in &self.allowed_clients {
            if !set.contains(k) {
                set = set.with_accept(*k);
            }
        }
        set.open_to_any(self.open)
    }
}

type Apply = Box<dyn Fn(&AccessPolicy, &GovernedClients) + Send + Sync>;

/// The handle services register client-facing protocols through, and the binary
/// changes the policy with. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Access {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    policy: AccessPolicy,
    governed: GovernedClients,
    /// One entry per registered protocol: re-applies a policy to it.
    nets: Vec<Apply>,
}

/// The client keys on-chain governance changed, relative to the genesis's `[[clients]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernedClients {
    /// Client keys added by vote.
    pub added: Vec<PublicKey>,
    /// Genesis client keys removed by vote: no longer admitted, even though the
    /// protocols' base sets (built from the genesis) list them.
    pub removed: Vec<PublicKey>,
}

impl GovernedClients {
    fn apply(&self, policy: &AccessPolicy, base: &PeerSet) -> PeerSet {
        let mut set = base.clone();
        for k in &self.removed {
            set = set.without(k);
        }
        for k in &self.added {
            if !set.contains(k) {
                set = set.with_accept(*k);
            }
        }
        policy.apply(&set)
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Access").field("policy", &inner.policy).field("protocols", &inner.nets.len()).finish()
    }
}

impl Access {
    /// A handle starting with `policy`.
    pub fn new(policy: AccessPolicy) -> Self {
        Access { inner: Arc::new(Mutex::new(Inner { policy, governed: GovernedClients::default(), nets: Vec::new() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy in force.
    pub fn policy(&self) -> AccessPolicy {
        self.lock().policy.clone()
    }

    /// Serves the client-facing protocol `P` on `endpoint` like
    /// [`Endpoint::register`], admitting `base` (always) and whatever the policy adds;
    /// later policies apply to it too.
    pub fn register<P: Protocol, H: Handler<P>>(
        &self,
        endpoint: &Endpoint,
        handler: H,
        base: PeerSet,
        config: ProtocolConfig,
    ) -> Result<Network<P>, NetError> {
        let mut inner = self.lock();
        let net = endpoint.register(handler, inner.governed.apply(&inner.policy, &base), config)?;
        // Weak: the handler may hold this `Access` (a cycle would keep the endpoint and
        // its socket alive after shutdown).
        let handle = net.raw().downgrade();
        inner.nets.push(Box::new(move |policy, governed| {
            if let Some(net) = handle.upgrade() {
                net.set_peers(governed.apply(policy, &base));
            }
        }));
        Ok(net)
    }

    /// Applies `policy` to every registered protocol: newly allowed keys may connect at
    /// once; connections of keys no longer admitted are closed.
    pub fn set_policy(&self, policy: AccessPolicy) {
        let mut inner = self.lock();
        for apply in &inner.nets {
            apply(&policy, &inner.governed);
        }
        inner.policy = policy;
    }

    /// The client keys governance changed, as last set.
    pub fn governed_clients(&self) -> GovernedClients {
        self.lock().governed.clone()
    }

    /// Applies an epoch's client keys to every registered protocol, like
    /// [`Access::set_policy`]: added keys may connect at once (where access is
    /// restricted; open access admits every key anyway), connections of removed genesis
    /// clients are closed. The operator's `allowed_clients` still apply on top.
    pub fn set_governed_clients(&self, governed: GovernedClients) {
        let mut inner = self.lock();
        for apply in &inner.nets {
            apply(&inner.policy, &governed);
        }
        inner.governed = governed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    #[test]
    fn policy_adds_allowed_keys_and_sets_openness() {
        let a = Keypair::for_testing(1).public();
        let b = Keypair::for_testing(2).public();
        let base = PeerSet::new().with_accept(a);
        let open = AccessPolicy::default().apply(&base);
        assert!(open.is_open() && open.contains(&a) && open.admits(&b));
        let closed = AccessPolicy { open: false, allowed_clients: vec![b] }.apply(&base);
        assert!(!closed.is_open() && closed.contains(&a) && closed.contains(&b));
        let none = AccessPolicy { open: false, allowed_clients: vec![] }.apply(&base);
        assert!(!none.admits(&b));
    }

    #[test]
    fn governed_clients_add_and_remove_keys_under_the_policy() {
        let a = Keypair::for_testing(1).public();
        let b = Keypair::for_testing(2).public();
        let c = Keypair::for_testing(3).public();
        let base = PeerSet::new().with_accept(a);
        let closed = AccessPolicy { open: false, allowed_clients: vec![c] };
        let g = GovernedClients { added: vec![b], removed: vec![a] };
        let set = g.apply(&closed, &base);
        assert!(!set.admits(&a) && set.admits(&b) && set.admits(&c));
        // Open access still admits a removed key as a stranger, not as a pinned client.
        let open = g.apply(&AccessPolicy::default(), &base);
        assert!(!open.contains(&a) && open.contains(&b) && open.admits(&a));
    }
}
