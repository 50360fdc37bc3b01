//! Peer sets: who may connect for a protocol, and whom to dial.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lamina_interfaces::NodeEntry;
use lamina_primitives::NodeId;

/// One peer of a protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's key: its identity and its pinned TLS key.
    pub id: NodeId,
    /// Human-readable name (the genesis name), used in metrics labels and logs.
    pub name: Option<String>,
    /// Where the peer listens, if known.
    pub addr: Option<SocketAddr>,
    /// Whether this node keeps an outbound connection to the peer (dialing, and
    /// redialing with backoff when it is lost). Needs `addr`.
    pub dial: bool,
}

impl Peer {
    /// The label used in metrics and logs: the name, or the first 16 hex digits of the
    /// key.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| short(&self.id))
    }
}

pub(crate) fn short(id: &NodeId) -> String {
    id.to_hex()[..16].to_string()
}

/// The peers of one protocol: the keys allowed to connect (pinned), and which of them to
/// dial. Ordered by key.
///
/// A set may also be *open*: any other key may connect too (open access, for the
/// client-facing protocols whose requests authorise themselves — signed transactions —
/// or are public reads). Keys that are not pinned share one inbound memory budget and
/// a per-protocol connection cap ([`crate::TransportLimits::max_open_connections`]),
/// so strangers together cost a bounded amount whatever keys they make up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSet {
    peers: BTreeMap<NodeId, Peer>,
    open: bool,
}

impl PeerSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a peer.
    pub fn insert(&mut self, peer: Peer) {
        self.peers.insert(peer.id, peer);
    }

    /// Adds a peer to dial at `addr` (it may also connect to us).
    pub fn with_dial(mut self, id: NodeId, addr: SocketAddr) -> Self {
        self.insert(Peer { id, name: None, addr: Some(addr), dial: true });
        self
    }

    /// Adds a peer that may connect to us, which we do not dial.
    pub fn with_accept(mut self, id: NodeId) -> Self {
        self.insert(Peer { id, name: None, addr: None, dial: false });
        self
    }

    /// The genesis entries as peers to dial (name, key and address from the entry).
    pub fn dial_entries<'a>(entries: impl IntoIterator<Item = &'a NodeEntry>) -> Self {
        let mut set = PeerSet::new();
        for e in entries {
            set.insert(Peer { id: e.key, name: Some(e.name.clone()), addr: Some(e.addr), dial: true });
        }
        set
    }

    /// The same peers, none of them dialed (they connect to us).
    pub fn accept_only(mut self) -> Self {
        for p in self.peers.values_mut() {
            p.dial = false;
        }
        self
    }

    /// This set without `id` (a node never connects to itself).
    pub fn without(mut self, id: &NodeId) -> Self {
        self.peers.remove(id);
        self
    }

    /// The union of two sets (open if either is); on a key in both, `other`'s entry
    /// wins unless only this one dials.
    pub fn union(mut self, other: &PeerSet) -> Self {
        self.open |= other.open;
        for (id, p) in &other.peers {
            match self.peers.get_mut(id) {
                Some(mine) if mine.dial && !p.dial => {
                    if mine.name.is_none() {
                        mine.name = p.name.clone();
                    }
                }
                _ => {
                    self.peers.insert(*id, p.clone());
                }
            }
        }
        self
    }

    /// The same set, open (or not) to keys it does not pin.
    pub fn open_to_any(mut self, open: bool) -> Self {
        self.open = open;
        self
    }

    /// True if keys that are not pinned may connect.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// True if `id` may connect: pinned, or the set is open.
    pub fn admits(&self, id: &NodeId) -> bool {
        self.open || self.peers.contains_key(id)
    }

    /// True if `id` is pinned in the set.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.peers.contains_key(id)
    }

    /// The entry for `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// All peers, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// All keys, ordered.
    pub fn ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// The peers this node dials (those with `dial` and an address).
    pub fn dialed(&self) -> impl Iterator<Item = (&NodeId, SocketAddr)> {
        self.peers.iter().filter(|(_, p)| p.dial).filter_map(|(id, p)| p.addr.map(|a| (id, a)))
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

impl FromIterator<Peer> for PeerSet {
    fn from_iter<I: IntoIterator<Item = Peer>>(iter: I) -> Self {
        let mut set = PeerSet::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    #[test]
    fn building_and_combining() {
        let a = Keypair::for_testing(1).public();
        let b = Keypair::for_testing(2).public();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9000));
        let dial = PeerSet::new().with_dial(a, addr);
        let accept = PeerSet::new().with_accept(a).with_accept(b);
        let both = dial.clone().union(&accept);
        assert_eq!(both.len(), 2);
        assert!(both.get(&a).unwrap().dial, "dialing wins over accept-only");
        assert_eq!(both.dialed().count(), 1);
        assert_eq!(both.clone().accept_only().dialed().count(), 0);
        assert!(!both.clone().without(&a).contains(&a));
        assert_eq!(dial.get(&a).unwrap().label(), a.to_hex()[..16]);
        let c = Keypair::for_testing(3).public();
        assert!(!both.admits(&c) && both.admits(&a));
        let open = both.clone().open_to_any(true);
        assert!(open.admits(&c) && !open.contains(&c) && open.is_open());
        assert!(both.union(&open).is_open(), "the union of an open set is open");
    }
}
