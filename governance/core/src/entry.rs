//! What governance transactions carry: proposals and votes.
//!
//! A governance transaction is an ordinary [`Transaction`] with
//! `chain_id == `[`GOVERNANCE_CHAIN`] (the chain of
//! [`Namespace::GOVERNANCE`](lamina_primitives::Namespace::GOVERNANCE)) whose payload is
//! the codec encoding of one [`Envelope`]: an [`Entry`] and the network it is for (the
//! genesis's `network_id`), so the member's signature binds the network and an entry
//! signed for one network is refused on every other ([`Error::WrongNetwork`]). Its
//! sender is the voting member; its nonce protects against replay (nonces of a sender
//! only increase; see [`crate::state`]).

use lamina_primitives::codec::limits;
use lamina_primitives::{ChainId, CodecError, Digest, Keypair, Transaction, TxScope, Wire};

use crate::Error;

/// The chain id of the governance namespace
/// ([`Namespace::GOVERNANCE`](lamina_primitives::Namespace::GOVERNANCE) as a chain).
pub const GOVERNANCE_CHAIN: ChainId = ChainId(0xFFFF_FFFF_FFFF_FF02);

/// Longest proposal reason, in bytes.
pub const MAX_REASON: usize = 280;
/// Longest node or client name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest address string, in bytes.
pub const MAX_ADDR: usize = 64;

pub use types::*;

// rkyv's derive generates undocumented items for the fields of enum variants.
#[allow(missing_docs)]
mod types {
    use lamina_primitives::{ChainId, Digest, PublicKey};

    /// One governance action of a member.
    ///
    /// A rejected transaction changes nothing, so its nonce stays unused and anyone could
    /// resubmit it later, when it might apply: every entry therefore carries the last
    /// height it may be applied at (`valid_until`), and a vote names the transaction that
    /// opened the proposal, so a vote signed for one proposal never counts for another
    /// that later gets the same id.
    #[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum Entry {
        /// Opens a proposal; its id is the next proposal number.
        Propose {
            /// What changes if the proposal passes.
            action: Action,
            /// Why, for the other members (at most [`crate::entry::MAX_REASON`] bytes).
            reason: String,
            /// The last log height at which it may be applied.
            valid_until: u64,
        },
        /// A vote on an open proposal.
        Vote {
            /// The proposal's id.
            proposal: u64,
            /// The id of the transaction that opened it ([`crate::Proposal::tx`]).
            proposal_tx: Digest,
            /// Yes (true) or no.
            approve: bool,
            /// The last log height at which it may be applied.
            valid_until: u64,
        },
    }

    /// A governance transaction's payload: the entry and the network it is for.
    #[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct Envelope {
        /// The network ([`lamina_interfaces::Genesis::network_id`]).
        pub network: Digest,
        /// The entry.
        pub entry: Entry,
    }

    /// A change to the membership or to a parameter, applied at an epoch boundary.
    #[derive(
        Clone,
        PartialEq,
        Eq,
        Debug,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
        serde::Serialize,
        serde::Deserialize,
    )]
    #[serde(rename_all = "snake_case", tag = "kind")]
    pub enum Action {
        /// A new consensus validator.
        AddValidator(NodeSpec),
        /// Removes the consensus validator with this key.
        RemoveValidator { key: PublicKey },
        /// A new DA storage node.
        AddDaNode(NodeSpec),
        /// Removes the DA node with this key.
        RemoveDaNode { key: PublicKey },
        /// A client key that may connect where access is restricted (`[access] open = false`).
        AddClient { name: String, key: PublicKey },
        /// Removes a client key.
        RemoveClient { key: PublicKey },
        /// Changes a parameter.
        SetParam { param: Param, value: u64 },
        /// Sets a voting member's weight; a new key becomes a member, weight 0 removes one.
        SetMemberWeight { name: String, key: PublicKey, weight: u64 },
    }

    /// A node named by a proposal: what its genesis entry would say.
    #[derive(
        Clone,
        PartialEq,
        Eq,
        Debug,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
        serde::Serialize,
        serde::Deserialize,
    )]
    pub struct NodeSpec {
        /// Human-readable name (at most [`crate::entry::MAX_NAME`] bytes).
        pub name: String,
        /// Its ed25519 key: identity and pinned TLS key.
        pub key: PublicKey,
        /// QUIC address (`host:port`, an IP address).
        pub addr: String,
        /// HTTP address for clients, if the node serves one.
        pub http: Option<String>,
    }

    /// A parameter that governance may change.
    #[derive(
        Clone,
        Copy,
        PartialEq,
        Eq,
        PartialOrd,
        Ord,
        Debug,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
        serde::Serialize,
        serde::Deserialize,
    )]
    #[serde(rename_all = "snake_case")]
    pub enum Param {
        /// A chain's flat fee per transaction, in its native asset.
        Fee { chain: ChainId },
        /// Most batches one block orders.
        MaxBatchesPerBlock,
        /// Settlement's challenge window in heights (at most a quarter of the anchor window).
        ChallengeWindow,
        /// The bridge's inflow limit per rate-limit window.
        BridgeInflowLimit,
        /// The bridge's rate-limit window in heights.
        BridgeWindowHeights,
        /// Most blob bytes one batch (one availability certificate's square) carries.
        MaxBatchBytes,
    }
}

impl Wire for Entry {
    const NAME: &'static str = "GovernanceEntry";
    const MAX_SIZE: usize = 4 << 10;
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::Fee { chain } => write!(f, "fee of chain {}", chain.0),
            Param::MaxBatchesPerBlock => f.write_str("max_batches_per_block"),
            Param::ChallengeWindow => f.write_str("challenge_window"),
            Param::BridgeInflowLimit => f.write_str("bridge_inflow_limit"),
            Param::BridgeWindowHeights => f.write_str("bridge_window_heights"),
            Param::MaxBatchBytes => f.write_str("max_batch_bytes"),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::AddValidator(n) => write!(f, "add validator {} ({}) at {}", n.name, n.key, n.addr),
            Action::RemoveValidator { key } => write!(f, "remove validator {key}"),
            Action::AddDaNode(n) => write!(f, "add DA node {} ({}) at {}", n.name, n.key, n.addr),
            Action::RemoveDaNode { key } => write!(f, "remove DA node {key}"),
            Action::AddClient { name, key } => write!(f, "add client {name} ({key})"),
            Action::RemoveClient { key } => write!(f, "remove client {key}"),
            Action::SetParam { param, value } => write!(f, "set {param} to {value}"),
            Action::SetMemberWeight { name, key, weight: 0 } => write!(f, "remove member {name} ({key})"),
            Action::SetMemberWeight { name, key, weight } => {
                write!(f, "set the weight of member {name} ({key}) to {weight}")
            }
        }
    }
}

impl Param {
    /// Parses the names `lamina gov propose set-param` takes: `fee:<chain>`,
    /// `max_batches_per_block`, `max_batch_bytes`, `challenge_window`,
    /// `bridge_inflow_limit`, `bridge_window_heights`.
    pub fn parse(s: &str) -> Option<Param> {
        Some(match s {
            "max_batches_per_block" => Param::MaxBatchesPerBlock,
            "max_batch_bytes" => Param::MaxBatchBytes,
            "challenge_window" => Param::ChallengeWindow,
            "bridge_inflow_limit" => Param::BridgeInflowLimit,
            "bridge_window_heights" => Param::BridgeWindowHeights,
            _ => Param::Fee { chain: ChainId(s.strip_prefix("fee:")?.parse().ok()?) },
        })
    }

    /// Upper bound of any value, so that limits stay representable everywhere.
    pub const MAX_VALUE: u64 = limits::MAX_TX_PAYLOAD as u64 * (1 << 30);
}

impl Wire for Envelope {
    const NAME: &'static str = "GovernanceEnvelope";
    const MAX_SIZE: usize = Entry::MAX_SIZE + 64;
}

impl Entry {
    /// Builds the signed governance transaction carrying `entry` for the network
    /// `network` ([`lamina_interfaces::Genesis::network_id`]), signed in the network's
    /// scope `scope` ([`lamina_interfaces::Genesis::tx_scope`]). Fails only if the entry
    /// is too large.
    pub fn transaction(
        key: &Keypair,
        scope: TxScope,
        network: Digest,
        nonce: u64,
        entry: &Entry,
    ) -> Result<Transaction, Error> {
        let envelope = Envelope { network, entry: entry.clone() };
        let payload = lamina_primitives::encode(&envelope).map_err(|e| Error::Encode(e.to_string()))?;
        Ok(Transaction::new_signed(key, scope, GOVERNANCE_CHAIN, nonce, payload))
    }

    /// The entry a governance transaction for `network` carries (the signature is not
    /// checked here): [`Error::WrongNetwork`] if it was signed for another network.
    pub fn from_transaction(tx: &Transaction, network: &Digest) -> Result<Entry, Error> {
        let envelope = Self::envelope(tx)?;
        if envelope.network != *network {
            return Err(Error::WrongNetwork { got: envelope.network, want: *network });
        }
        Ok(envelope.entry)
    }

    /// The envelope a governance transaction carries, for any network.
    pub fn envelope(tx: &Transaction) -> Result<Envelope, Error> {
        if tx.chain_id != GOVERNANCE_CHAIN {
            return Err(Error::NotGovernance(tx.chain_id));
        }
        lamina_primitives::decode::<Envelope>(&tx.payload).map_err(|e| {
            // Keep the error (and so the events) a function of the bytes alone.
            Error::Malformed(match e {
                CodecError::TooLarge { size, max, .. } => format!("{size} bytes exceed the limit of {max}"),
                _ => "payload is not a valid governance entry".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Namespace;

    #[test]
    fn governance_chain_is_the_governance_namespace() {
        assert_eq!(GOVERNANCE_CHAIN, ChainId::from(Namespace::GOVERNANCE));
        assert!(!GOVERNANCE_CHAIN.is_user_chain());
    }

    const NET: Digest = Digest([7; 32]);

    #[test]
    fn entries_round_trip_through_transactions() {
        let key = Keypair::for_testing(1);
        for entry in [
            Entry::Propose {
                action: Action::AddValidator(NodeSpec {
                    name: "v4".into(),
                    key: Keypair::for_testing(4).public(),
                    addr: "127.0.0.1:9000".into(),
                    http: None,
                }),
                reason: "grow".into(),
                valid_until: 10,
            },
            Entry::Propose {
                action: Action::SetParam { param: Param::Fee { chain: ChainId(2) }, value: 5 },
                reason: "".into(),
                valid_until: u64::MAX,
            },
            Entry::Vote {
                proposal: 3,
                proposal_tx: lamina_primitives::Digest([7; 32]),
                approve: false,
                valid_until: 1,
            },
        ] {
            let tx = Entry::transaction(&key, TxScope::Network(NET), NET, 7, &entry).unwrap();
            assert!(tx.verify(TxScope::Network(NET)).is_ok());
            assert_eq!(Entry::from_transaction(&tx, &NET).unwrap(), entry);
            // Signed for one network, refused on any other.
            let other = Digest([8; 32]);
            assert_eq!(Entry::from_transaction(&tx, &other), Err(Error::WrongNetwork { got: NET, want: other }));
        }
        let other = Transaction::new_signed(&key, TxScope::Network(NET), ChainId(1), 0, vec![]);
        assert!(matches!(Entry::from_transaction(&other, &NET), Err(Error::NotGovernance(_))));
        let junk = Transaction::new_signed(&key, TxScope::Network(NET), GOVERNANCE_CHAIN, 0, vec![0xFF; 9]);
        assert!(matches!(Entry::from_transaction(&junk, &NET), Err(Error::Malformed(_))));
    }

    #[test]
    fn param_names_parse() {
        assert_eq!(Param::parse("fee:3"), Some(Param::Fee { chain: ChainId(3) }));
        assert_eq!(Param::parse("challenge_window"), Some(Param::ChallengeWindow));
        assert_eq!(Param::parse("fee:x"), None);
        assert_eq!(Param::parse("nope"), None);
    }
}
