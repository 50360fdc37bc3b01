//! The genesis committee file: who runs which module where, and which chains exist.
//!
//! Written once by `lamina genesis` (TOML) and shared by every node. Every QUIC peer is
//! pinned by the public key listed here: a node accepts connections only from keys in
//! the roles its module talks to.

use std::net::SocketAddr;

use lamina_primitives::{ChainId, Committee, DaCommittee, Digest, Domain, PublicKey, TxScope, domains};

use crate::settlement::LedgerParams;

static NETWORK_ID: Domain = Domain::new("lamina network id v1");

/// One node of a role.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeEntry {
    /// Human-readable name (`validator-0`).
    pub name: String,
    /// The node's ed25519 public key: its identity and its pinned TLS key.
    pub key: PublicKey,
    /// QUIC address (UDP) where the node serves its module's protocols.
    pub addr: SocketAddr,
    /// HTTP address for clients (JSON API), where the role has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// Admin address (`/metrics`, `/livez`, `/readyz`, `/status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// For execution nodes: the chain the node executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainId>,
}

/// A genesis balance on a chain (native asset).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct GenesisBalance {
    /// The account.
    pub account: PublicKey,
    /// Amount of the chain's native asset.
    pub amount: u64,
}

/// A chain (namespace) served by the network.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct ChainSpec {
    /// Chain id (also its namespace).
    pub id: ChainId,
    /// Human-readable name.
    pub name: String,
    /// Initial balances of the native asset.
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    /// Deterministic test accounts funded at genesis: accounts
    /// `Keypair::for_testing(funded_test_accounts_seed + i)` for `i < funded_test_accounts`,
    /// each with `funded_test_amount` (devnets and benchmarks; 0 in production).
    #[serde(default)]
    pub funded_test_accounts: u64,
    /// First test-key index of the funded test accounts.
    #[serde(default)]
    pub funded_test_accounts_seed: u64,
    /// Amount given to each funded test account.
    #[serde(default)]
    pub funded_test_amount: u64,
    /// Flat fee per transaction in the native asset (part of the transition function:
    /// every replica and verifier of the chain uses this value).
    #[serde(default)]
    pub fee: u64,
    /// Who receives fees (zero key when `fee` is 0).
    #[serde(default)]
    pub fee_collector: PublicKey,
    /// Version of the ledger rules the chain runs.
    #[serde(default = "default_ledger_version")]
    pub ledger_version: u32,
}

fn default_ledger_version() -> u32 {
    1
}

impl Default for ChainSpec {
    /// Chain 0 (not a valid user chain: set `id`), no balances, no test accounts, no
    /// fee, ledger version 1.
    fn default() -> Self {
        ChainSpec {
            id: ChainId(0),
            name: String::new(),
            balances: Vec::new(),
            funded_test_accounts: 0,
            funded_test_accounts_seed: 0,
            funded_test_amount: 0,
            fee: 0,
            fee_collector: PublicKey::default(),
            ledger_version: default_ledger_version(),
        }
    }
}

impl ChainSpec {
    /// The chain's transition-function parameters.
    pub fn ledger_params(&self) -> LedgerParams {
        LedgerParams { version: self.ledger_version, fee: self.fee, fee_collector: self.fee_collector }
    }

    /// The digest claims of this chain bind ([`LedgerParams::digest`]).
    pub fn params_digest(&self) -> Digest {
        self.ledger_params().digest(self.id)
    }
}

/// Default [`SettlementSpec::anchor_window`]: 20,000 heights (under 7 minutes at the
/// devnet's full load, hours on a quiet network).
pub const DEFAULT_ANCHOR_WINDOW: u64 = 20_000;

/// The settlement layer's genesis parameters: windows in log heights, bonds, and the
/// balances of the settlement ledger that bonds are drawn from.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettlementSpec {
    /// Challenge window W in log heights: a claim included at height `h` finalizes at
    /// `h + W` if no fraud proof succeeded and its parent is final.
    pub challenge_window: u64,
    /// Bond a claimer locks per claim (returned at finalization, slashed on fraud).
    pub claim_bond: u64,
    /// Bond a challenger puts up per challenge (paid to the claimer if the proof fails).
    pub challenge_bond: u64,
    /// Percent of a slashed claim bond paid to the successful challenger (the rest is
    /// burned).
    pub challenger_reward_percent: u8,
    /// Anchor window in log heights: an anchor stays usable for bridge proofs until
    /// this many heights after the next anchor of its chain finalized (a chain's newest
    /// anchor is always usable), after which nodes may forget it. Bounds the anchor
    /// history every settlement node and anchor registry holds; execution nodes
    /// prove bridge keys again every half window so a usable proof always exists. At
    /// least 4 x `challenge_window`.
    pub anchor_window: u64,
    /// Balances of the settlement ledger (keys that may claim or challenge).
    pub balances: Vec<GenesisBalance>,
}

impl Default for SettlementSpec {
    fn default() -> Self {
        SettlementSpec {
            challenge_window: 1_000,
            claim_bond: 1_000,
            challenge_bond: 1_000,
            challenger_reward_percent: 50,
            anchor_window: DEFAULT_ANCHOR_WINDOW,
            balances: Vec::new(),
        }
    }
}

/// The whole network's genesis.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Genesis {
    /// Network name; part of the genesis digest.
    pub network: String,
    /// Chains served.
    pub chains: Vec<ChainSpec>,
    /// Consensus validators (n = 3f + 1).
    pub validators: Vec<NodeEntry>,
    /// DA storage nodes.
    pub da_nodes: Vec<NodeEntry>,
    /// Execution nodes (one or more per chain).
    #[serde(default)]
    pub execution_nodes: Vec<NodeEntry>,
    /// Settlement nodes.
    #[serde(default)]
    pub settlement_nodes: Vec<NodeEntry>,
    /// Bridge relayers.
    #[serde(default)]
    pub bridge_nodes: Vec<NodeEntry>,
    /// DA signatures required for an availability certificate (default: 2f+1 of the DA
    /// nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub da_threshold: Option<usize>,
    /// Client keys (wallets, CLIs, load generators) every service accepts connections
    /// from: consensus intake and ordered log, DA retrieval, execution queries. They
    /// are not nodes: nobody dials them and they sign nothing the protocol counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientEntry>,
    /// Settlement parameters and the settlement ledger's balances.
    #[serde(default)]
    pub settlement: SettlementSpec,
    /// Bridge parameters (rate limits, timeouts, the pause guardian).
    #[serde(default)]
    pub bridge: crate::BridgeSpec,
    /// On-chain governance: who votes, with what weight, and how epochs and votes are
    /// counted in log heights. Left out of the file (and so of the digest) when it is
    /// the default, so genesis files written before governance keep their digest.
    #[serde(default, skip_serializing_if = "GovernanceSpec::is_default")]
    pub governance: GovernanceSpec,
    /// Every transaction's signature binds the network id ([`Genesis::tx_scope`]), so
    /// that no transaction signed for this network verifies on another, even one with
    /// the same chain ids and keys. New genesis files set it (`lamina genesis`, `lamina
    /// devnet`); files written before it leave it out (and so keep their digest, their
    /// data and their clients' chain-only signatures).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tx_binds_network: bool,
    /// DA squares may have any width `k` in `1..=512`, not only a power of two: a
    /// disperser then pads a batch to the width its committee stores in the fewest
    /// cells instead of up to 4x its size. A network-wide rule, not a node's choice:
    /// where it is off, DA nodes refuse other widths and settlement refuses
    /// bad-encoding proofs over them, as releases before it did, so nodes of older
    /// releases and this one agree. New genesis files set it (`lamina genesis`, `lamina
    /// devnet`); files written before it leave it out (and so keep their digest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub da_any_width: bool,
}

/// A voting member of on-chain governance (see [`GovernanceSpec`]).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct MemberEntry {
    /// Human-readable name (an organisation).
    pub name: String,
    /// The key the member signs proposals and votes with.
    pub key: PublicKey,
    /// Voting weight (at least 1).
    pub weight: u64,
}

/// Parameters of on-chain governance, fixed at genesis. Membership and the other
/// parameters change by vote; these rules of the vote itself do not.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GovernanceSpec {
    /// Voting members. Empty means every genesis validator, weight 1.
    pub members: Vec<MemberEntry>,
    /// Heights per epoch: membership and parameter changes take effect after a height
    /// that is a multiple of this (an epoch boundary).
    pub epoch_length: u64,
    /// Heights a proposal stays open for votes after the height that included it. A
    /// proposal closes earlier once its outcome cannot change.
    pub voting_period: u64,
    /// Percent of the total weight that must vote (yes or no) for a proposal to pass.
    pub quorum_percent: u8,
    /// Percent of the weight voting that must vote yes.
    pub threshold_percent: u8,
    /// Validators added or removed by vote join or leave the consensus committee (one
    /// governance epoch after the boundary that applies the change). Off: the genesis
    /// validators order the log forever and such votes change only the recorded
    /// membership. Not written when off, so genesis files written before it keep their
    /// digest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub committee_changes: bool,
}

/// Default heights per epoch.
pub const DEFAULT_EPOCH_LENGTH: u64 = 100;
/// Default voting period in heights.
pub const DEFAULT_VOTING_PERIOD: u64 = 1_000;

impl Default for GovernanceSpec {
    fn default() -> Self {
        GovernanceSpec {
            members: Vec::new(),
            epoch_length: DEFAULT_EPOCH_LENGTH,
            voting_period: DEFAULT_VOTING_PERIOD,
            quorum_percent: 50,
            threshold_percent: 67,
            committee_changes: false,
        }
    }
}

impl GovernanceSpec {
    /// True when this is [`GovernanceSpec::default`] (then it is not written to the file).
    pub fn is_default(&self) -> bool {
        self == &GovernanceSpec::default()
    }
}

/// A client key named in the genesis (see [`Genesis::clients`]).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct ClientEntry {
    /// Human-readable name.
    pub name: String,
    /// The client's ed25519 public key (its TLS identity).
    pub key: PublicKey,
}

/// Why a genesis file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A required role has no nodes.
    #[error("genesis has no {0}")]
    Missing(&'static str),
    /// A key appears twice.
    #[error("key {0:?} appears twice")]
    DuplicateKey(PublicKey),
    /// Chain id reserved or repeated.
    #[error("chain id {0} is reserved or repeated")]
    BadChain(u64),
    /// Threshold outside 1..=n.
    #[error("DA threshold {0} is outside 1..={1}")]
    BadThreshold(usize, usize),
    /// An execution node names no chain or an unknown one.
    #[error("execution node {0} has no known chain")]
    ExecutionWithoutChain(String),
    /// Settlement parameters out of range.
    #[error("settlement: {0}")]
    BadSettlement(String),
    /// Governance parameters out of range.
    #[error("governance: {0}")]
    BadGovernance(String),
}

/// Largest voting weight of one member (so that any sum of weights fits a `u64`).
pub const MAX_MEMBER_WEIGHT: u64 = 1 << 32;
/// Most voting members at once (bounds what each governance proposal's electorate holds).
pub const MAX_MEMBERS: usize = 256;
/// Most nodes of one role, and most client keys, a genesis and governance may name.
pub const MAX_ROLE: usize = 1_024;

impl Genesis {
    /// Checks internal consistency.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.validators.is_empty() {
            return Err(GenesisError::Missing("validators"));
        }
        if self.da_nodes.is_empty() {
            return Err(GenesisError::Missing("DA nodes"));
        }
        let mut keys: Vec<PublicKey> =
            self.all_nodes().map(|n| n.key).chain(self.clients.iter().map(|c| c.key)).collect();
        keys.sort();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(GenesisError::DuplicateKey(w[0]));
        }
        let mut ids: Vec<u64> = self.chains.iter().map(|c| c.id.0).collect();
        ids.sort_unstable();
        for (i, c) in self.chains.iter().enumerate() {
            if !c.id.is_user_chain() || ids.windows(2).any(|w| w[0] == w[1]) {
                return Err(GenesisError::BadChain(self.chains[i].id.0));
            }
        }
        let t = self.da_threshold();
        if t == 0 || t > self.da_nodes.len() {
            return Err(GenesisError::BadThreshold(t, self.da_nodes.len()));
        }
        for e in &self.execution_nodes {
            match e.chain {
                Some(c) if self.chains.iter().any(|s| s.id == c) => {}
                _ => return Err(GenesisError::ExecutionWithoutChain(e.name.clone())),
            }
        }
        let st = &self.settlement;
        if st.challenge_window == 0 {
            return Err(GenesisError::BadSettlement("challenge_window must be at least 1 height".into()));
        }
        if st.challenger_reward_percent > 100 {
            return Err(GenesisError::BadSettlement("challenger_reward_percent exceeds 100".into()));
        }
        for (role, n) in
            [("validators", self.validators.len()), ("DA nodes", self.da_nodes.len()), ("clients", self.clients.len())]
        {
            if n > MAX_ROLE {
                return Err(GenesisError::BadGovernance(format!("{n} {role}: at most {MAX_ROLE}")));
            }
        }
        if self.governance_members().len() > MAX_MEMBERS {
            return Err(GenesisError::BadGovernance(format!(
                "{} voting members (without [governance] members: the validators): at most {MAX_MEMBERS}",
                self.governance_members().len()
            )));
        }
        let gov = &self.governance;
        if gov.epoch_length == 0 || gov.voting_period == 0 {
            return Err(GenesisError::BadGovernance("epoch_length and voting_period must be at least 1 height".into()));
        }
        if !(1..=100).contains(&gov.quorum_percent) || !(1..=100).contains(&gov.threshold_percent) {
            return Err(GenesisError::BadGovernance("quorum_percent and threshold_percent must be in 1..=100".into()));
        }
        let mut members: Vec<PublicKey> = gov.members.iter().map(|m| m.key).collect();
        members.sort();
        if let Some(w) = members.windows(2).find(|w| w[0] == w[1]) {
            return Err(GenesisError::DuplicateKey(w[0]));
        }
        if let Some(m) = gov.members.iter().find(|m| lamina_primitives::sig::decode_key_uncached(&m.key).is_err()) {
            return Err(GenesisError::BadGovernance(format!(
                "member {} has key {}, which is not a valid ed25519 public key",
                m.name, m.key
            )));
        }
        if let Some(m) = gov.members.iter().find(|m| m.weight == 0 || m.weight > MAX_MEMBER_WEIGHT) {
            return Err(GenesisError::BadGovernance(format!(
                "member {} has weight {}: weights are 1..={MAX_MEMBER_WEIGHT}",
                m.name, m.weight
            )));
        }
        if st.anchor_window < st.challenge_window.saturating_mul(4) {
            return Err(GenesisError::BadSettlement(format!(
                "anchor_window ({}) must be at least 4 x challenge_window ({}): execution nodes refresh bridge \
                 proofs every half window and serve a new one after two challenge windows",
                st.anchor_window, st.challenge_window
            )));
        }
        Ok(())
    }

    /// Every node of every role.
    pub fn all_nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.validators
            .iter()
            .chain(&self.da_nodes)
            .chain(&self.execution_nodes)
            .chain(&self.settlement_nodes)
            .chain(&self.bridge_nodes)
    }

    /// The validator committee, in genesis order.
    pub fn validator_committee(&self) -> Committee {
        Committee { members: self.validators.iter().map(|v| v.key).collect() }
    }

    /// The voting members of governance: [`GovernanceSpec::members`], or every validator
    /// with weight 1 when none are named.
    pub fn governance_members(&self) -> Vec<MemberEntry> {
        if !self.governance.members.is_empty() {
            return self.governance.members.clone();
        }
        self.validators.iter().map(|v| MemberEntry { name: v.name.clone(), key: v.key, weight: 1 }).collect()
    }

    /// The DA committee, in genesis order.
    pub fn da_committee(&self) -> Committee {
        Committee { members: self.da_nodes.iter().map(|v| v.key).collect() }
    }

    /// DA signatures required for an availability certificate.
    pub fn da_threshold(&self) -> usize {
        self.da_threshold.unwrap_or_else(|| self.da_committee().quorum())
    }

    /// The genesis DA committee, as certificates name it (its attestations sign the
    /// plain digest).
    pub fn da(&self) -> DaCommittee {
        DaCommittee::genesis(self.da_committee(), self.da_threshold())
    }

    /// The DA committee of `members` (in order) and `threshold`: the genesis one where
    /// they are the genesis's, else one changed by vote, whose attestations bind its id.
    pub fn da_committee_of(&self, members: Vec<PublicKey>, threshold: usize) -> DaCommittee {
        let members = Committee { members };
        if members == self.da_committee() && threshold == self.da_threshold() {
            DaCommittee::genesis(members, threshold)
        } else {
            DaCommittee::governed(members, threshold)
        }
    }

    /// The chain spec for `id`.
    pub fn chain(&self, id: ChainId) -> Option<&ChainSpec> {
        self.chains.iter().find(|c| c.id == id)
    }

    /// The node entry with key `key`, in any role.
    pub fn node(&self, key: &PublicKey) -> Option<&NodeEntry> {
        self.all_nodes().find(|n| &n.key == key)
    }

    /// The network id: what claims, and everything else that must not be replayed on
    /// another network, bind. Derived from the network name and the genesis digest.
    pub fn network_id(&self) -> Digest {
        NETWORK_ID.hash_parts(&[self.network.as_bytes(), self.digest().as_bytes()])
    }

    /// What every transaction signature of this network binds: the network id where
    /// [`Genesis::tx_binds_network`] is set, else the chain only. Signers and verifiers
    /// of the network use it (it costs a genesis digest: compute it once).
    pub fn tx_scope(&self) -> TxScope {
        if self.tx_binds_network { TxScope::Network(self.network_id()) } else { TxScope::ChainOnly }
    }

    /// A digest identifying this genesis (of its canonical JSON form); nodes refuse to
    /// start against data written under another genesis.
    pub fn digest(&self) -> Digest {
        // serde_json output of these plain structs is deterministic (field order fixed).
        let json = serde_json::to_vec(self).unwrap_or_default();
        domains::GENESIS.hash(&json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Keypair;

    fn entry(i: u64, port: u16) -> NodeEntry {
        NodeEntry {
            name: format!("n{i}"),
            key: Keypair::for_testing(i).public(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            http: None,
            admin: None,
            chain: None,
        }
    }

    fn genesis() -> Genesis {
        Genesis {
            bridge: Default::default(),
            governance: Default::default(),
            tx_binds_network: true,
            da_any_width: true,
            network: "test".into(),
            chains: vec![ChainSpec {
                id: ChainId(1),
                name: "one".into(),
                balances: vec![],
                funded_test_accounts: 0,
                funded_test_accounts_seed: 0,
                funded_test_amount: 0,
                fee: 0,
                fee_collector: PublicKey::default(),
                ledger_version: 1,
            }],
            validators: (0..4).map(|i| entry(i, 9000 + i as u16)).collect(),
            da_nodes: (4..8).map(|i| entry(i, 9000 + i as u16)).collect(),
            execution_nodes: vec![NodeEntry { chain: Some(ChainId(1)), ..entry(8, 9008) }],
            settlement_nodes: vec![],
            bridge_nodes: vec![],
            da_threshold: None,
            clients: Vec::new(),
            settlement: SettlementSpec::default(),
        }
    }

    #[test]
    fn validates_and_round_trips_through_toml_shaped_json() {
        let g = genesis();
        g.validate().unwrap();
        assert_eq!(g.da_threshold(), 3);
        assert_eq!(g.validator_committee().quorum(), 3);
        let json = serde_json::to_string(&g).unwrap();
        let back: Genesis = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.digest(), g.digest());
    }

    #[test]
    fn rejects_inconsistencies() {
        let mut g = genesis();
        g.da_nodes[0].key = g.validators[0].key;
        assert!(matches!(g.validate(), Err(GenesisError::DuplicateKey(_))));
        let mut g = genesis();
        g.chains[0].id = ChainId(0);
        assert!(matches!(g.validate(), Err(GenesisError::BadChain(0))));
        let mut g = genesis();
        g.da_threshold = Some(5);
        assert!(matches!(g.validate(), Err(GenesisError::BadThreshold(5, 4))));
        let mut g = genesis();
        g.execution_nodes[0].chain = Some(ChainId(9));
        assert!(matches!(g.validate(), Err(GenesisError::ExecutionWithoutChain(_))));
    }

    #[test]
    fn default_governance_is_not_written_so_old_digests_stay() {
        let g = Genesis {
            network: "n".into(),
            chains: vec![],
            validators: vec![entry(1, 1)],
            da_nodes: vec![entry(2, 2)],
            execution_nodes: vec![],
            settlement_nodes: vec![],
            bridge_nodes: vec![],
            da_threshold: None,
            clients: vec![],
            settlement: Default::default(),
            bridge: Default::default(),
            governance: Default::default(),
            tx_binds_network: false,
            da_any_width: false,
        };
        let json = serde_json::to_string(&g).unwrap();
        assert!(!json.contains("governance"), "{json}");
        assert!(!json.contains("tx_binds_network"), "{json}");
        assert!(!json.contains("da_any_width"), "{json}");
        let mut any_width = g.clone();
        any_width.da_any_width = true;
        assert_ne!(any_width.digest(), g.digest());
        assert_eq!(g.tx_scope(), TxScope::ChainOnly);
        let mut bound = g.clone();
        bound.tx_binds_network = true;
        assert_ne!(bound.digest(), g.digest());
        assert_eq!(bound.tx_scope(), TxScope::Network(bound.network_id()));
        assert_eq!(g.governance_members().len(), 1);
        let mut named = g.clone();
        named.governance.members =
            vec![MemberEntry { name: "org".into(), key: Keypair::for_testing(9).public(), weight: 3 }];
        assert_ne!(named.digest(), g.digest());
        named.validate().unwrap();
        named.governance.members[0].weight = 0;
        assert!(matches!(named.validate(), Err(GenesisError::BadGovernance(_))));
        let mut bad = g.clone();
        bad.governance.quorum_percent = 0;
        assert!(matches!(bad.validate(), Err(GenesisError::BadGovernance(_))));
    }
}
