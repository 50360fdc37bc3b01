//! Lamina's governance core: proposals, weighted votes and membership changes at epoch boundaries, counted in log heights.
//!
//! Governance replays the governance namespace of the ordered log
//! ([`Namespace::GOVERNANCE`](lamina_primitives::Namespace::GOVERNANCE)). Everything here
//! is a pure, deterministic function of the genesis and the ordered governance
//! transactions: no clock (voting periods and epochs count log heights), no I/O, no
//! threads. Whoever follows the log (a node, or `lamina gov status` replaying it)
//! feeds each height's governance transactions in and reads the epoch out.
//!
//! * [`entry`]: what governance transactions carry ([`Entry`]: proposals and votes;
//!   [`Action`]: the changes) and how to build them.
//! * [`state`]: the state machine ([`GovernanceState`]): the rules of the vote, epochs,
//!   and each parameter's value by height ([`ParamSchedule`]), which the execution and
//!   settlement layers read through `lamina_interfaces::ParamsView`.
//! * [`membership`]: who is in the network during an epoch ([`Membership`]) and the
//!   parameters governance may change ([`Settings`]).
//!
//! # Guarantees (tested in `tests/`)
//!
//! * A rejected transaction changes nothing: votes from non-members or from members who
//!   joined after the proposal, duplicate votes, votes after the period or on decided
//!   proposals, proposals with malformed keys, names or addresses, replayed nonces, bad
//!   signatures, undecodable payloads and entries signed for another network each get a
//!   typed [`Error`] and leave the state's [`GovernanceState::digest`] as it was.
//! * A proposal that passes applies exactly at the end of the first epoch boundary at or
//!   after the height it passed, never earlier; the next epoch's membership is the
//!   previous one with the passed actions applied in id order.
//! * Replaying the same heights gives the same state, whether heights without
//!   governance transactions are applied or skipped.
//! * Memory is bounded: open and passed proposals ([`state::MAX_OPEN`], [`state::MAX_OPEN_PER_MEMBER`]),
//!   closed proposals kept ([`state::KEEP_CLOSED`]), members ([`membership::MAX_MEMBERS`])
//!   and nodes per role ([`membership::MAX_ROLE`]); the parameter history keeps each
//!   parameter's last [`state::KEEP_PARAM_CHANGES`] changes.
//!
//! # Example
//!
//! Four validators vote (weight 1 each, the default); a fifth validator is proposed at
//! height 3, passes with three yes votes at height 4, and is in the committee of the epoch
//! that starts after the boundary at height 100.
//!
//! ```
//! use lamina_governance_core::{Action, Entry, Event, GovernanceState, NodeSpec};
//! use lamina_interfaces::Genesis;
//! use lamina_primitives::{Height, Keypair};
//! use lamina_test_utils::{genesis, localhost, node};
//!
//! let genesis = Genesis {
//!     validators: (0..4).map(|i| node(format!("validator-{i}"), &Keypair::for_testing(i), localhost(0))).collect(),
//!     da_nodes: (0..4).map(|i| node(format!("da-{i}"), &Keypair::for_testing(100 + i), localhost(0))).collect(),
//!     ..genesis("gov")
//! };
//! let members: Vec<Keypair> = (0..4).map(Keypair::for_testing).collect();
//! let mut gov = GovernanceState::new(&genesis);
//! assert_eq!(gov.epoch().membership.validators.len(), 4);
//!
//! let new = Keypair::for_testing(40).public();
//! let action = Action::AddValidator(NodeSpec { name: "v4".into(), key: new, addr: "127.0.0.1:9400".into(), http: None });
//! let entry = Entry::Propose { action, reason: "a fifth organisation".into(), valid_until: 50 };
//! let (scope, net) = (genesis.tx_scope(), genesis.network_id());
//! let propose = Entry::transaction(&members[0], scope, net, 0, &entry)?;
//! gov.apply_block(Height(3), &[propose])?;
//! // A vote names the proposal's id and the transaction that opened it.
//! let opened_by = gov.proposal(1).unwrap().tx.0;
//! let vote = Entry::Vote { proposal: 1, proposal_tx: opened_by, approve: true, valid_until: 50 };
//! let votes: Vec<_> =
//!     members[..3].iter().map(|k| Entry::transaction(k, scope, net, 1, &vote)).collect::<Result<_, _>>()?;
//! let events = gov.apply_block(Height(4), &votes)?;
//! assert!(events.contains(&Event::Passed { id: 1, boundary: Height(100) }));
//! assert_eq!(gov.epoch().membership.validators.len(), 4, "not before the boundary");
//!
//! gov.apply_block(Height(101), &[])?;
//! assert_eq!(gov.epoch().number, 1);
//! assert_eq!(gov.epoch().first_height, Height(101));
//! assert!(gov.epoch().membership.validators.iter().any(|v| v.key == new));
//! # Ok::<(), lamina_governance_core::Error>(())
//! ```

pub mod entry;
pub mod error;
pub mod membership;
pub mod state;

pub use entry::{Action, Entry, Envelope, GOVERNANCE_CHAIN, NodeSpec, Param};
pub use error::Error;
pub use membership::{Membership, Settings};
pub use state::{
    CommitteeEpoch, Epoch, Event, GovernanceState, KEEP_COMMITTEE_CHANGES, ParamSchedule, Params, Proposal, Status,
};
