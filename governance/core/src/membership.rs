//! Who is in the network during an epoch, and the parameters governance may change.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lamina_interfaces::{ClientEntry, Genesis, MAX_MEMBER_WEIGHT, MemberEntry, NodeEntry};
use lamina_primitives::codec::limits;
use lamina_primitives::{ChainId, PublicKey, sig};

use crate::Error;
use crate::entry::{Action, MAX_ADDR, MAX_NAME, NodeSpec, Param};

pub use lamina_interfaces::genesis::{MAX_MEMBERS, MAX_ROLE};

/// The parameters governance may change, with their values in an epoch.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Flat fee per transaction of each chain.
    pub fees: BTreeMap<ChainId, u64>,
    /// Most batches one block orders.
    pub max_batches_per_block: u64,
    /// Settlement's challenge window in heights.
    pub challenge_window: u64,
    /// Settlement's anchor window (fixed at genesis: bounds `challenge_window`).
    pub anchor_window: u64,
    /// The bridge's inflow limit per window.
    pub bridge_inflow_limit: u64,
    /// The bridge's rate-limit window in heights.
    pub bridge_window_heights: u64,
    /// Most blob bytes one batch carries (a consensus validity rule where committees
    /// change by vote); 0, the genesis value: no limit but the square's. Absent from
    /// states saved before it existed, which cannot have changed it.
    #[serde(default)]
    pub max_batch_bytes: u64,
}

impl Settings {
    /// The values the genesis sets.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        Settings {
            fees: genesis.chains.iter().map(|c| (c.id, c.fee)).collect(),
            max_batches_per_block: limits::MAX_BATCHES_PER_BLOCK as u64,
            challenge_window: genesis.settlement.challenge_window,
            anchor_window: genesis.settlement.anchor_window,
            bridge_inflow_limit: genesis.bridge.inflow_limit,
            bridge_window_heights: genesis.bridge.window_heights,
            max_batch_bytes: 0,
        }
    }

    /// The smallest batch limit governance may set: room for a transaction of intake's
    /// default size limit (64 KiB) twice over, with the blob's encoding.
    pub const MIN_BATCH_BYTES: u64 = 128 << 10;
    /// The largest batch limit governance may set: the engine's largest batch blob
    /// (`limits::MAX_BATCH`). 0 lifts the limit (the genesis value): a square then holds
    /// what its widest shape holds.
    pub const MAX_BATCH_BYTES: u64 = limits::MAX_BATCH as u64;

    /// Every parameter with its value: each chain's fee, then the others.
    pub fn all(&self) -> Vec<(Param, u64)> {
        let mut all: Vec<(Param, u64)> = self.fees.iter().map(|(c, v)| (Param::Fee { chain: *c }, *v)).collect();
        for p in [
            Param::MaxBatchesPerBlock,
            Param::ChallengeWindow,
            Param::BridgeInflowLimit,
            Param::BridgeWindowHeights,
            Param::MaxBatchBytes,
        ] {
            all.extend(self.get(p).map(|v| (p, v)));
        }
        all
    }

    /// A parameter's value (`None` for the fee of an unknown chain).
    pub fn get(&self, param: Param) -> Option<u64> {
        Some(match param {
            Param::Fee { chain } => *self.fees.get(&chain)?,
            Param::MaxBatchesPerBlock => self.max_batches_per_block,
            Param::ChallengeWindow => self.challenge_window,
            Param::BridgeInflowLimit => self.bridge_inflow_limit,
            Param::BridgeWindowHeights => self.bridge_window_heights,
            Param::MaxBatchBytes => self.max_batch_bytes,
        })
    }

    /// Checks that `param` may take `value`.
    pub fn check(&self, param: Param, value: u64) -> Result<(), Error> {
        let bad = |why: String| Err(Error::InvalidAction(format!("{param} = {value}: {why}")));
        if value > Param::MAX_VALUE {
            return bad(format!("above the largest value {}", Param::MAX_VALUE));
        }
        match param {
            Param::Fee { chain } if !self.fees.contains_key(&chain) => bad("no such chain".into()),
            Param::MaxBatchesPerBlock if value == 0 || value > limits::MAX_BATCHES_PER_BLOCK as u64 => {
                bad(format!("must be in 1..={}", limits::MAX_BATCHES_PER_BLOCK))
            }
            Param::ChallengeWindow if value == 0 || value.saturating_mul(4) > self.anchor_window => {
                bad(format!("must be in 1..={} (a quarter of the anchor window)", self.anchor_window / 4))
            }
            Param::BridgeWindowHeights if value == 0 => bad("must be at least 1".into()),
            Param::MaxBatchBytes if value != 0 && !(Self::MIN_BATCH_BYTES..=Self::MAX_BATCH_BYTES).contains(&value) => {
                bad(format!("must be 0 (no limit) or in {}..={}", Self::MIN_BATCH_BYTES, Self::MAX_BATCH_BYTES))
            }
            _ => Ok(()),
        }
    }

    fn set(&mut self, param: Param, value: u64) {
        match param {
            Param::Fee { chain } => {
                self.fees.insert(chain, value);
            }
            Param::MaxBatchesPerBlock => self.max_batches_per_block = value,
            Param::ChallengeWindow => self.challenge_window = value,
            Param::BridgeInflowLimit => self.bridge_inflow_limit = value,
            Param::BridgeWindowHeights => self.bridge_window_heights = value,
            Param::MaxBatchBytes => self.max_batch_bytes = value,
        }
    }
}

/// The membership of one epoch: committees, client keys, voting members, parameters.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Membership {
    /// Consensus validators, in order (genesis order, then additions).
    pub validators: Vec<NodeEntry>,
    /// DA storage nodes, in order.
    pub da_nodes: Vec<NodeEntry>,
    /// DA signatures an availability certificate needs when the genesis fixed it
    /// (otherwise 2f+1 of `da_nodes`).
    pub da_threshold: Option<usize>,
    /// Client keys named by the genesis or added by vote.
    pub clients: Vec<ClientEntry>,
    /// Voting members and their weights.
    pub members: Vec<MemberEntry>,
    /// The parameters.
    pub settings: Settings,
    /// Keys of the genesis's other roles (execution, settlement, bridge nodes): no
    /// validator, DA node or client may be added with one of them.
    pub fixed_keys: Vec<PublicKey>,
}

impl Membership {
    /// The membership the genesis sets (epoch 0).
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let mut fixed_keys: Vec<PublicKey> = genesis
            .execution_nodes
            .iter()
            .chain(&genesis.settlement_nodes)
            .chain(&genesis.bridge_nodes)
            .map(|n| n.key)
            .collect();
        fixed_keys.sort();
        Membership {
            validators: genesis.validators.clone(),
            da_nodes: genesis.da_nodes.clone(),
            da_threshold: genesis.da_threshold,
            clients: genesis.clients.clone(),
            members: genesis.governance_members(),
            settings: Settings::from_genesis(genesis),
            fixed_keys,
        }
    }

    /// Sum of the members' weights.
    pub fn total_weight(&self) -> u64 {
        self.members.iter().map(|m| m.weight).sum()
    }

    /// A member's weight (0 if not a member).
    pub fn weight(&self, key: &PublicKey) -> u64 {
        self.members.iter().find(|m| &m.key == key).map_or(0, |m| m.weight)
    }

    /// DA signatures an availability certificate needs in this epoch: the genesis's
    /// fixed threshold, else the committee's quorum `n - f` (as
    /// [`Genesis::da_threshold`]).
    pub fn da_threshold(&self) -> usize {
        let n = self.da_nodes.len();
        self.da_threshold.unwrap_or(n - n.saturating_sub(1) / 3)
    }

    fn key_in_use(&self, key: &PublicKey) -> Option<&'static str> {
        if self.validators.iter().any(|n| &n.key == key) {
            Some("a validator")
        } else if self.da_nodes.iter().any(|n| &n.key == key) {
            Some("a DA node")
        } else if self.clients.iter().any(|c| &c.key == key) {
            Some("a client")
        } else if self.fixed_keys.binary_search(key).is_ok() {
            Some("another genesis node")
        } else {
            None
        }
    }

    /// Checks an action's fields (names, keys, addresses, values), whatever the membership.
    pub fn check_form(action: &Action) -> Result<(), Error> {
        let name = |n: &str| {
            if n.is_empty() || n.len() > MAX_NAME || !n.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::InvalidAction(format!(
                    "name {n:?} must be 1..={MAX_NAME} printable ASCII bytes without spaces"
                )));
            }
            Ok(())
        };
        let key = |k: &PublicKey| sig::decode_key_uncached(k).map_err(|_| Error::MalformedKey(*k));
        let addr = |a: &str| {
            if a.len() > MAX_ADDR || a.parse::<SocketAddr>().is_err() {
                return Err(Error::InvalidAction(format!("{a:?} is not an IP address and port")));
            }
            Ok(())
        };
        let node = |n: &NodeSpec| {
            name(&n.name)?;
            key(&n.key)?;
            addr(&n.addr)?;
            n.http.as_deref().map_or(Ok(()), addr)
        };
        match action {
            Action::AddValidator(n) | Action::AddDaNode(n) => node(n),
            Action::RemoveValidator { key: k } | Action::RemoveDaNode { key: k } | Action::RemoveClient { key: k } => {
                key(k)
            }
            Action::AddClient { name: n, key: k } => {
                name(n)?;
                key(k)
            }
            Action::SetParam { .. } => Ok(()),
            Action::SetMemberWeight { name: n, key: k, weight } => {
                name(n)?;
                key(k)?;
                if *weight > MAX_MEMBER_WEIGHT {
                    return Err(Error::InvalidAction(format!("weight {weight} exceeds {MAX_MEMBER_WEIGHT}")));
                }
                Ok(())
            }
        }
    }

    /// Applies `action`, or says why it cannot apply to this membership (then `self` is
    /// unchanged). [`Membership::check_form`] must have passed.
    pub fn apply(&mut self, action: &Action) -> Result<(), Error> {
        let inapplicable = |s: String| Err(Error::Inapplicable(s));
        let entry = |n: &NodeSpec| NodeEntry {
            name: n.name.clone(),
            key: n.key,
            // check_form parsed them.
            addr: n.addr.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            http: n.http.as_deref().and_then(|h| h.parse().ok()),
            admin: None,
            chain: None,
        };
        match action {
            Action::AddValidator(n) | Action::AddDaNode(n) => {
                if let Some(role) = self.key_in_use(&n.key) {
                    return inapplicable(format!("{} is already {role}", n.key));
                }
                let list =
                    if matches!(action, Action::AddValidator(_)) { &mut self.validators } else { &mut self.da_nodes };
                if list.len() >= MAX_ROLE {
                    return inapplicable(format!("the committee already has {MAX_ROLE} nodes"));
                }
                list.push(entry(n));
            }
            Action::RemoveValidator { key } => {
                let Some(i) = self.validators.iter().position(|n| &n.key == key) else {
                    return inapplicable(format!("{key} is not a validator"));
                };
                if self.validators.len() == 1 {
                    return inapplicable("the last validator cannot be removed".into());
                }
                self.validators.remove(i);
            }
            Action::RemoveDaNode { key } => {
                let Some(i) = self.da_nodes.iter().position(|n| &n.key == key) else {
                    return inapplicable(format!("{key} is not a DA node"));
                };
                if self.da_threshold.is_some_and(|t| t >= self.da_nodes.len()) || self.da_nodes.len() == 1 {
                    return inapplicable(format!(
                        "{} DA nodes could no longer reach the threshold of {}",
                        self.da_nodes.len() - 1,
                        self.da_threshold()
                    ));
                }
                self.da_nodes.remove(i);
            }
            Action::AddClient { name, key } => {
                if let Some(role) = self.key_in_use(key) {
                    return inapplicable(format!("{key} is already {role}"));
                }
                if self.clients.len() >= MAX_ROLE {
                    return inapplicable(format!("there are already {MAX_ROLE} client keys"));
                }
                self.clients.push(ClientEntry { name: name.clone(), key: *key });
            }
            Action::RemoveClient { key } => {
                let Some(i) = self.clients.iter().position(|c| &c.key == key) else {
                    return inapplicable(format!("{key} is not a client key"));
                };
                self.clients.remove(i);
            }
            Action::SetParam { param, value } => {
                self.settings.check(*param, *value)?;
                self.settings.set(*param, *value);
            }
            Action::SetMemberWeight { name, key, weight } => {
                let at = self.members.iter().position(|m| &m.key == key);
                match (at, *weight) {
                    (None, 0) => return inapplicable(format!("{key} is not a member")),
                    (Some(i), 0) => {
                        if self.total_weight() == self.members[i].weight {
                            return inapplicable("the last member with weight cannot be removed".into());
                        }
                        self.members.remove(i);
                    }
                    (Some(i), w) => self.members[i].weight = w,
                    (None, w) => {
                        if self.members.len() >= MAX_MEMBERS {
                            return inapplicable(format!("there are already {MAX_MEMBERS} members"));
                        }
                        self.members.push(MemberEntry { name: name.clone(), key: *key, weight: w });
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that `action` would apply now, without changing anything.
    pub fn check(&self, action: &Action) -> Result<(), Error> {
        Self::check_form(action)?;
        self.clone().apply(action)
    }
}
