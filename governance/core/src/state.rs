//! The governance state machine: proposals, weighted votes, epochs.
//!
//! # Rules
//!
//! * Only voting members of the current epoch may send governance transactions. Each
//!   transaction's signature must verify and its nonce must be at least the sender's next
//!   nonce (nonces increase; gaps are allowed), which protects against replay.
//! * A proposal's action is checked when it is proposed (form and applicability to the
//!   current membership). A member has at most [`MAX_OPEN_PER_MEMBER`] open proposals and
//!   the network [`MAX_OPEN`].
//! * The electorate of a proposal is the members of the epoch it was proposed in, with
//!   their weights then. Each votes once; votes are final.
//! * A proposal **passes** when the weight voting is at least `quorum_percent` of the
//!   electorate's total and the yes weight at least `threshold_percent` of the weight
//!   voting. It is decided as soon as the outcome cannot change (early), and otherwise
//!   at the end of the height `proposed_at + voting_period`.
//! * Epoch `e` covers heights `e * L + 1 ..= (e + 1) * L` (`L` = `epoch_length`). At the
//!   end of a boundary height (a multiple of `L`), every proposal passed by then is
//!   applied in id order to the membership, and the next epoch starts with the result.
//!   A passed action that no longer applies (say, a second removal of the same node) is
//!   marked failed with the reason; the others still apply.
//! * Within a height: its transactions in log order, then proposals whose period ends
//!   there close, then, at a boundary, the epoch changes.
//!
//! Everything is a function of the genesis and the governance transactions of each
//! height, so every node that follows the log reaches the same state
//! ([`GovernanceState::digest`]).

use std::collections::{BTreeMap, VecDeque};

use lamina_interfaces::Genesis;
use lamina_primitives::{ChainId, Digest, Domain, Height, PublicKey, Transaction, TxId, TxScope};

use crate::Error;
use crate::entry::Param;
use crate::entry::{Action, Entry, MAX_REASON};
use crate::membership::{Membership, Settings};

/// Most proposals open or passed (waiting for their boundary) at once in the network.
pub const MAX_OPEN: usize = 64;
/// Most proposals one member has open or passed at once.
pub const MAX_OPEN_PER_MEMBER: usize = 4;
/// Closed proposals kept for queries (the oldest are forgotten first).
pub const KEEP_CLOSED: usize = 256;
/// Changes kept per parameter ([`GovernanceState::value_at`]): older ones are
/// forgotten, and heights before the oldest kept change are no longer answered
/// ([`ParamSchedule::serves_from`]; readers refuse such heights loudly). A parameter
/// changes at most once per epoch, and each change is a passed vote.
pub const KEEP_PARAM_CHANGES: usize = 1024;
/// Committee changes kept ([`GovernanceState::committee_at`]); heights before the
/// oldest kept one are no longer answered.
pub const KEEP_COMMITTEE_CHANGES: usize = 1024;

static STATE: Domain = Domain::new("lamina governance state v1");

/// The rules of the vote, fixed at genesis.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// Heights per epoch.
    pub epoch_length: u64,
    /// Heights a proposal stays open after the height that included it.
    pub voting_period: u64,
    /// Percent of the electorate's weight that must vote.
    pub quorum_percent: u8,
    /// Percent of the weight voting that must vote yes.
    pub threshold_percent: u8,
    /// The network ([`Genesis::network_id`]): entries signed for another are refused.
    pub network: Digest,
    /// Transactions' signatures bind the network too ([`Genesis::tx_binds_network`]).
    /// Not written when off, so states saved before it keep their digest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tx_binds_network: bool,
}

impl Params {
    /// The genesis's governance rules.
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let g = &genesis.governance;
        Params {
            epoch_length: g.epoch_length.max(1),
            voting_period: g.voting_period.max(1),
            quorum_percent: g.quorum_percent.clamp(1, 100),
            threshold_percent: g.threshold_percent.clamp(1, 100),
            network: genesis.network_id(),
            tx_binds_network: genesis.tx_binds_network,
        }
    }

    /// What the network's transaction signatures bind ([`Genesis::tx_scope`]).
    pub fn scope(&self) -> TxScope {
        if self.tx_binds_network { TxScope::Network(self.network) } else { TxScope::ChainOnly }
    }
}

/// One epoch: its number, the first height it governs, its membership.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    /// Epoch number (0 from genesis).
    pub number: u64,
    /// The first height this epoch's membership orders and executes.
    pub first_height: Height,
    /// Who is in the network, and the parameters.
    pub membership: Membership,
}

/// Where a proposal is.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Taking votes.
    Open,
    /// Passed at `at`; applies at the end of the next boundary height.
    Passed {
        /// The height it passed at.
        at: Height,
    },
    /// Did not pass.
    Rejected {
        /// The height it was decided at.
        at: Height,
        /// Quorum or threshold not reached, in words.
        why: String,
    },
    /// Applied: in force from `epoch`.
    Applied {
        /// The boundary height.
        at: Height,
        /// The epoch it is in force from.
        epoch: u64,
    },
    /// Passed, but no longer applied at the boundary.
    Failed {
        /// The boundary height.
        at: Height,
        /// Why it did not apply.
        reason: String,
    },
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Open => f.write_str("open"),
            Status::Passed { at } => write!(f, "passed at height {}", at.0),
            Status::Rejected { at, why } => write!(f, "rejected at height {} ({why})", at.0),
            Status::Applied { at, epoch } => write!(f, "applied at height {} (epoch {epoch})", at.0),
            Status::Failed { at, reason } => write!(f, "failed at height {} ({reason})", at.0),
        }
    }
}

/// A proposal and its tally.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    /// Its id (1, 2, ...).
    pub id: u64,
    /// The member who proposed it.
    pub proposer: PublicKey,
    /// The transaction that opened it (votes name it).
    pub tx: TxId,
    /// What changes if it passes.
    pub action: Action,
    /// Why, in the proposer's words.
    pub reason: String,
    /// The height that included it.
    pub proposed_at: Height,
    /// The last height whose votes count.
    pub closes_at: Height,
    /// Who may vote, with their weights (the members when it opened).
    pub electorate: BTreeMap<PublicKey, u64>,
    /// Votes cast: approve or not.
    pub votes: BTreeMap<PublicKey, bool>,
    /// Weight voting yes.
    pub yes: u64,
    /// Weight voting no.
    pub no: u64,
    /// Where it is.
    pub status: Status,
}

impl Proposal {
    /// Total weight of the electorate.
    pub fn total_weight(&self) -> u64 {
        self.electorate.values().sum()
    }

    /// `Some(true)` once it has passed whatever the others vote, `Some(false)` once it
    /// cannot pass; `None` while undecided. With `final_tally`, the votes not cast count
    /// as absent.
    fn decide(&self, p: &Params, final_tally: bool) -> Option<Result<(), String>> {
        let total = u128::from(self.total_weight());
        let (yes, no) = (u128::from(self.yes), u128::from(self.no));
        let (q, t) = (u128::from(p.quorum_percent), u128::from(p.threshold_percent));
        let passes = |yes: u128, cast: u128| cast * 100 >= q * total && yes * 100 >= t * cast && cast > 0;
        if passes(yes, yes + no) && (yes * 100 >= t * total) {
            // Even if everyone left votes no, yes stays at least t% of those voting.
            return Some(Ok(()));
        }
        if !passes(total - no, total) {
            return Some(Err(format!(
                "cannot reach {}% yes: {} of {} weight voted no",
                p.threshold_percent, self.no, total
            )));
        }
        if !final_tally {
            return None;
        }
        if passes(yes, yes + no) {
            return Some(Ok(()));
        }
        Some(Err(if (yes + no) * 100 < q * total {
            format!("quorum not reached: {} of {} weight voted, {}% needed", yes + no, total, p.quorum_percent)
        } else {
            format!("threshold not reached: {} yes of {} voting, {}% needed", yes, yes + no, p.threshold_percent)
        }))
    }
}

/// What applying a height did.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A proposal opened.
    Proposed {
        /// Its id.
        id: u64,
        /// Who proposed it.
        proposer: PublicKey,
        /// The transaction that proposed it.
        tx: TxId,
    },
    /// A vote was counted.
    Voted {
        /// The proposal.
        id: u64,
        /// The member.
        voter: PublicKey,
        /// Yes or no.
        approve: bool,
        /// The vote's weight.
        weight: u64,
        /// The transaction that carried it.
        tx: TxId,
    },
    /// A proposal passed; it applies at the end of `boundary`.
    Passed {
        /// The proposal.
        id: u64,
        /// The boundary height it applies at.
        boundary: Height,
    },
    /// A proposal did not pass.
    Rejected {
        /// The proposal.
        id: u64,
        /// Why.
        why: String,
    },
    /// A passed proposal was applied at a boundary.
    Applied {
        /// The proposal.
        id: u64,
        /// The epoch it is in force from.
        epoch: u64,
    },
    /// A passed proposal no longer applied at the boundary.
    Failed {
        /// The proposal.
        id: u64,
        /// Why.
        reason: String,
    },
    /// A new epoch started after a boundary height.
    EpochStarted {
        /// Its number.
        epoch: u64,
        /// Its first height.
        first_height: Height,
        /// Whether its membership differs from the previous epoch's.
        changed: bool,
    },
    /// A governance transaction was rejected; nothing changed.
    TxRejected {
        /// The transaction.
        tx: TxId,
        /// Its sender.
        sender: PublicKey,
        /// Why.
        error: Error,
    },
}

/// The governance state: the current epoch, proposals, nonces.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct GovernanceState {
    params: Params,
    epoch: Epoch,
    /// The last height applied (0 before any).
    height: Height,
    next_id: u64,
    /// Open, passed-not-applied and the last [`KEEP_CLOSED`] closed proposals.
    proposals: BTreeMap<u64, Proposal>,
    /// Closed proposals, oldest first (the pruning order).
    closed: VecDeque<u64>,
    /// Next usable nonce of each member that sent an accepted transaction.
    nonces: BTreeMap<PublicKey, u64>,
    /// Every parameter's value at each height ([`GovernanceState::value_at`]).
    schedule: ParamSchedule,
    /// The consensus committee of each height ([`GovernanceState::committee_at`]).
    /// Absent from states saved before it existed ([`GovernanceState::is_complete`]).
    #[serde(default)]
    committees: VecDeque<CommitteeEpoch>,
}

/// A consensus epoch as governance decided it: from `first_height` on (until the next
/// one's), `validators` order the log, the DA committee (`da_nodes`, `da_threshold`)
/// certifies the squares its blocks order, and its blocks order at most
/// `max_batches_per_block` batches of at most `max_batch_bytes` blob bytes each.
/// Consensus epochs count changes of these (0 is the
/// genesis's) and are not governance epochs: a governance epoch that leaves them as
/// they were does not start one.
///
/// A change applied at governance boundary `B` takes effect at height `B + L + 1` (`L`
/// = `epoch_length`): one governance epoch of lag, so every validator's governance
/// follower has `L` heights to learn it before its consensus needs it
/// ([`GovernanceState::committee_known_through`]).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct CommitteeEpoch {
    /// Consensus epoch number (`lamina_consensus_core::Config::epoch`).
    pub epoch: u64,
    /// The first height this committee orders.
    pub first_height: Height,
    /// The validators' keys, in order (leader rotation follows it).
    pub validators: Vec<PublicKey>,
    /// The DA nodes' keys, in order (a node's position decides its columns). Empty in
    /// states saved before DA committees changed by vote
    /// ([`GovernanceState::is_complete`]).
    #[serde(default)]
    pub da_nodes: Vec<PublicKey>,
    /// The signatures an availability certificate needs from `da_nodes`.
    #[serde(default)]
    pub da_threshold: usize,
    /// Most batches one block of this epoch may order (`max_batches_per_block` as
    /// governance set it by the boundary that started the epoch): a validity rule for
    /// the epoch. 0 in states saved before it was kept
    /// ([`GovernanceState::is_complete`]).
    #[serde(default)]
    pub max_batches_per_block: u64,
    /// Most blob bytes one batch ordered in this epoch may carry (`max_batch_bytes` as
    /// governance set it by the boundary that started the epoch; 0: no limit): a
    /// validity rule for the epoch. Absent from states saved before it existed, which
    /// cannot have changed it (0, the genesis value).
    #[serde(default)]
    pub max_batch_bytes: u64,
}

/// Per parameter, its value from each height on where it changed, oldest first: the
/// genesis value from height 1, then one entry per epoch that changed it (the last
/// [`KEEP_PARAM_CHANGES`]). Sorted by parameter.
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ParamSchedule(Vec<(Param, VecDeque<(Height, u64)>)>);

impl ParamSchedule {
    /// Every parameter at its value in `settings`, from height 1.
    pub fn from_settings(settings: &Settings) -> Self {
        let mut s = ParamSchedule::default();
        for (param, value) in settings.all() {
            s.record(param, Height(1), value);
        }
        s
    }

    /// The value of `param` at `height` as far as this schedule knows (see
    /// [`GovernanceState::value_at`]).
    pub fn value_at(&self, param: Param, height: Height) -> Option<u64> {
        let i = self.0.binary_search_by_key(&param, |(p, _)| *p).ok()?;
        let history = &self.0[i].1;
        let after = history.partition_point(|(from, _)| *from <= height);
        after.checked_sub(1).map(|i| history[i].1)
    }

    /// The height from which [`ParamSchedule::value_at`]'s answer for `height` holds
    /// (height 1 for the genesis value).
    pub fn since(&self, param: Param, height: Height) -> Option<Height> {
        let i = self.0.binary_search_by_key(&param, |(p, _)| *p).ok()?;
        let history = &self.0[i].1;
        let after = history.partition_point(|(from, _)| *from <= height);
        after.checked_sub(1).map(|i| history[i].0)
    }

    /// The lowest height [`ParamSchedule::value_at`] answers for every parameter.
    pub fn serves_from(&self) -> Height {
        self.0.iter().filter_map(|(_, h)| h.front().map(|(from, _)| *from)).max().unwrap_or(Height(1))
    }

    /// Records that `param` is `value` from height `from` on.
    fn record(&mut self, param: Param, from: Height, value: u64) {
        let i = match self.0.binary_search_by_key(&param, |(p, _)| *p) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (param, VecDeque::new()));
                i
            }
        };
        let history = &mut self.0[i].1;
        history.push_back((from, value));
        if history.len() > KEEP_PARAM_CHANGES {
            history.pop_front();
        }
    }
}

impl GovernanceState {
    /// The state at genesis: epoch 0, the genesis membership, no proposals.
    pub fn new(genesis: &Genesis) -> Self {
        GovernanceState {
            params: Params::from_genesis(genesis),
            epoch: Epoch { number: 0, first_height: Height(1), membership: Membership::from_genesis(genesis) },
            height: Height(0),
            next_id: 1,
            proposals: BTreeMap::new(),
            closed: VecDeque::new(),
            nonces: BTreeMap::new(),
            schedule: ParamSchedule::from_settings(&Settings::from_genesis(genesis)),
            committees: VecDeque::from([CommitteeEpoch {
                epoch: 0,
                first_height: Height(1),
                validators: genesis.validators.iter().map(|v| v.key).collect(),
                da_nodes: genesis.da_committee().members,
                da_threshold: genesis.da_threshold(),
                max_batches_per_block: Settings::from_genesis(genesis).max_batches_per_block,
                max_batch_bytes: 0,
            }]),
        }
    }

    /// The rules of the vote.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The current epoch (the one governing the height after [`GovernanceState::height`]).
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The last height applied.
    pub fn height(&self) -> Height {
        self.height
    }

    /// A proposal, if open, passed or among the last [`KEEP_CLOSED`] closed.
    pub fn proposal(&self, id: u64) -> Option<&Proposal> {
        self.proposals.get(&id)
    }

    /// The proposals kept, by id.
    pub fn proposals(&self) -> impl Iterator<Item = &Proposal> {
        self.proposals.values()
    }

    /// The smallest nonce `member` may use next.
    pub fn next_nonce(&self, member: &PublicKey) -> u64 {
        self.nonces.get(member).copied().unwrap_or(0)
    }

    /// The value of `param` for a step executed at log height `height`, as decided by
    /// the heights applied so far: final for heights up to `self.height() + 1` (a change
    /// decided later starts after a later boundary). `None` for the fee of an unknown
    /// chain or a height before [`ParamSchedule::serves_from`] (that part of the history
    /// is forgotten).
    pub fn value_at(&self, param: Param, height: Height) -> Option<u64> {
        self.schedule.value_at(param, height)
    }

    /// The fee of `chain` at `height` ([`GovernanceState::value_at`]).
    pub fn fee_at(&self, chain: ChainId, height: Height) -> Option<u64> {
        self.value_at(Param::Fee { chain }, height)
    }

    /// The parameter history kept ([`GovernanceState::value_at`] reads it).
    pub fn schedule(&self) -> &ParamSchedule {
        &self.schedule
    }

    /// Whether a state read back from disk holds everything this release keeps: the
    /// committee schedule, with each consensus epoch's DA committee and block limit. A
    /// state saved by an earlier release does not, and cannot be completed exactly: a
    /// DA-node or block-limit change it applied starts a consensus epoch under today's
    /// rules, which its schedule lacks. A follower replays such a state from height 1
    /// instead (the saved state is a cache), so every node derives the same schedule.
    pub fn is_complete(&self) -> bool {
        // DA nodes, threshold and block limit came in one release; the block limit is
        // never 0 once kept (governance accepts 1 and more), so its absence marks an
        // earlier release's. The batch size limit came later, and a state without it
        // is complete: no release before it could change it, so 0 (none) is right.
        !self.committees.is_empty() && self.committees.iter().all(|c| c.max_batches_per_block > 0)
    }

    /// The consensus committee that orders `height`, as decided by the heights applied
    /// so far: final for heights up to [`GovernanceState::committee_known_through`].
    /// `None` for a height before the oldest change kept ([`KEEP_COMMITTEE_CHANGES`]).
    pub fn committee_at(&self, height: Height) -> Option<&CommitteeEpoch> {
        let after = self.committees.partition_point(|c| c.first_height <= height);
        after.checked_sub(1).and_then(|i| self.committees.get(i))
    }

    /// The batch limit a batcher cuts under after `height` (`None`: none): the smallest
    /// `max_batch_bytes` of the consensus epoch that orders `height` and of every later
    /// one decided so far. A batch certified now may be ordered in any of them (a
    /// raised or lifted limit applies only once its epoch starts, a lowered one already
    /// binds the next), so it stays valid whichever orders it.
    pub fn batch_bytes_from(&self, height: Height) -> Option<u64> {
        let from = self.committees.partition_point(|c| c.first_height <= height).saturating_sub(1);
        self.committees.iter().skip(from).map(|c| c.max_batch_bytes).filter(|&b| b > 0).min()
    }

    /// The committee changes kept, oldest first.
    pub fn committees(&self) -> impl Iterator<Item = &CommitteeEpoch> {
        self.committees.iter()
    }

    /// The highest height whose committee no later governance decision can change:
    /// a change applied at a boundary after [`GovernanceState::height`] takes effect
    /// more than `epoch_length` heights after it. A consensus driver outputs no block
    /// above this (`Core::set_horizon`), so it never orders a height under a committee
    /// it has not learnt was replaced.
    pub fn committee_known_through(&self) -> Height {
        Height(self.height.0.saturating_add(self.params.epoch_length))
    }

    /// The boundary height at or after `height`.
    pub fn boundary_at_or_after(&self, height: Height) -> Height {
        let l = self.params.epoch_length;
        Height(height.0.div_ceil(l).max(1) * l)
    }

    /// A digest of the whole state: equal on every node that applied the same heights.
    pub fn digest(&self) -> Digest {
        // serde_json of these plain structs is deterministic (field order fixed, maps sorted).
        STATE.hash(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Applies one height of the log: its governance transactions in log order (others
    /// are rejected as not governance), then what ends there. Heights that carried no
    /// governance transaction may be skipped: what they would have ended is processed
    /// first, in height order. Fails only if `height` is not above the last one applied.
    pub fn apply_block(&mut self, height: Height, txs: &[Transaction]) -> Result<Vec<Event>, Error> {
        if height <= self.height {
            return Err(Error::OutOfOrder { height, last: self.height });
        }
        let mut events = Vec::new();
        self.advance_before(height, &mut events);
        for tx in txs {
            match self.apply_tx(height, tx) {
                Ok(e) => events.extend(e),
                Err(error) => events.push(Event::TxRejected { tx: tx.id(), sender: tx.sender, error }),
            }
        }
        self.end_height(height, &mut events);
        self.height = height;
        Ok(events)
    }

    /// Ends every height in `(self.height, height)` where something ends.
    fn advance_before(&mut self, height: Height, events: &mut Vec<Event>) {
        loop {
            let after = Height(self.height.0 + 1);
            let boundary = self.boundary_at_or_after(after);
            let closing = self
                .proposals
                .values()
                .filter(|p| p.status == Status::Open)
                .map(|p| p.closes_at)
                .min()
                .unwrap_or(boundary);
            let next = boundary.min(closing).max(after);
            if next >= height {
                return;
            }
            self.end_height(next, events);
            self.height = next;
        }
    }

    fn apply_tx(&mut self, height: Height, tx: &Transaction) -> Result<Vec<Event>, Error> {
        let entry = Entry::from_transaction(tx, &self.params.network)?;
        tx.verify(self.params.scope()).map_err(|_| Error::BadSignature)?;
        let sender = tx.sender;
        let weight = self.epoch.membership.weight(&sender);
        if weight == 0 {
            return Err(Error::NotMember(sender));
        }
        let next = self.next_nonce(&sender);
        if tx.nonce < next {
            return Err(Error::StaleNonce { sender, nonce: tx.nonce, next });
        }
        let valid_until = match &entry {
            Entry::Propose { valid_until, .. } | Entry::Vote { valid_until, .. } => *valid_until,
        };
        if height.0 > valid_until {
            return Err(Error::Expired { valid_until, height });
        }
        let events = match entry {
            Entry::Propose { action, reason, .. } => self.propose(height, tx.id(), sender, action, reason)?,
            Entry::Vote { proposal, proposal_tx, approve, .. } => {
                self.vote(height, tx.id(), sender, proposal, proposal_tx, approve)?
            }
        };
        self.nonces.insert(sender, tx.nonce.saturating_add(1));
        Ok(events)
    }

    fn propose(
        &mut self,
        height: Height,
        tx: TxId,
        proposer: PublicKey,
        action: Action,
        reason: String,
    ) -> Result<Vec<Event>, Error> {
        if reason.len() > MAX_REASON {
            return Err(Error::InvalidAction(format!("reason of {} bytes exceeds {MAX_REASON}", reason.len())));
        }
        self.epoch.membership.check(&action)?;
        // Passed proposals wait for their boundary: they count until they apply.
        let open = self.proposals.values().filter(|p| matches!(p.status, Status::Open | Status::Passed { .. }));
        let (all, mine) = open.fold((0, 0), |(a, m), p| (a + 1, m + usize::from(p.proposer == proposer)));
        if all >= MAX_OPEN {
            return Err(Error::TooManyProposals(format!("{MAX_OPEN} are open in the network")));
        }
        if mine >= MAX_OPEN_PER_MEMBER {
            return Err(Error::TooManyProposals(format!("{proposer} has {MAX_OPEN_PER_MEMBER} open")));
        }
        let id = self.next_id;
        self.next_id += 1;
        let electorate = self.epoch.membership.members.iter().map(|m| (m.key, m.weight)).collect();
        self.proposals.insert(
            id,
            Proposal {
                id,
                proposer,
                tx,
                action,
                reason,
                proposed_at: height,
                closes_at: Height(height.0.saturating_add(self.params.voting_period)),
                electorate,
                votes: BTreeMap::new(),
                yes: 0,
                no: 0,
                status: Status::Open,
            },
        );
        Ok(vec![Event::Proposed { id, proposer, tx }])
    }

    fn vote(
        &mut self,
        height: Height,
        tx: TxId,
        voter: PublicKey,
        id: u64,
        proposal_tx: Digest,
        approve: bool,
    ) -> Result<Vec<Event>, Error> {
        let params = self.params.clone();
        let boundary = self.boundary_at_or_after(height);
        let p = self.proposals.get_mut(&id).ok_or(Error::UnknownProposal(id))?;
        if p.tx.0 != proposal_tx {
            return Err(Error::WrongProposal { id });
        }
        if p.status != Status::Open {
            return Err(Error::NotOpen { id, status: p.status.to_string() });
        }
        let Some(&weight) = p.electorate.get(&voter) else {
            return Err(Error::NotInElectorate { id, voter });
        };
        if p.votes.contains_key(&voter) {
            return Err(Error::AlreadyVoted { id, voter });
        }
        p.votes.insert(voter, approve);
        if approve {
            p.yes += weight;
        } else {
            p.no += weight;
        }
        let mut events = vec![Event::Voted { id, voter, approve, weight, tx }];
        match p.decide(&params, false) {
            Some(Ok(())) => {
                p.status = Status::Passed { at: height };
                events.push(Event::Passed { id, boundary });
            }
            Some(Err(why)) => {
                p.status = Status::Rejected { at: height, why: why.clone() };
                events.push(Event::Rejected { id, why });
                self.closed.push_back(id);
            }
            None => {}
        }
        Ok(events)
    }

    /// Closes proposals whose period ends at `height`; at a boundary, changes the epoch.
    fn end_height(&mut self, height: Height, events: &mut Vec<Event>) {
        let boundary = self.boundary_at_or_after(height);
        let params = self.params.clone();
        for p in self.proposals.values_mut().filter(|p| p.status == Status::Open && p.closes_at <= height) {
            // A final tally always decides.
            match p.decide(&params, true).unwrap_or_else(|| Err("undecided".into())) {
                Ok(()) => {
                    p.status = Status::Passed { at: height };
                    events.push(Event::Passed { id: p.id, boundary });
                }
                Err(why) => {
                    p.status = Status::Rejected { at: height, why: why.clone() };
                    events.push(Event::Rejected { id: p.id, why });
                    self.closed.push_back(p.id);
                }
            }
        }
        if height.0.is_multiple_of(self.params.epoch_length) {
            self.change_epoch(height, events);
        }
        self.prune();
    }

    fn change_epoch(&mut self, boundary: Height, events: &mut Vec<Event>) {
        let number = self.epoch.number + 1;
        let before = self.epoch.membership.clone();
        let mut membership = before.clone();
        let passed: Vec<u64> =
            self.proposals.values().filter(|p| matches!(p.status, Status::Passed { .. })).map(|p| p.id).collect();
        for id in passed {
            let Some(p) = self.proposals.get_mut(&id) else { continue };
            match Membership::check_form(&p.action).and_then(|()| membership.apply(&p.action)) {
                Ok(()) => {
                    p.status = Status::Applied { at: boundary, epoch: number };
                    events.push(Event::Applied { id, epoch: number });
                }
                Err(e) => {
                    let reason = e.to_string();
                    p.status = Status::Failed { at: boundary, reason: reason.clone() };
                    events.push(Event::Failed { id, reason });
                }
            }
            self.closed.push_back(id);
        }
        let changed = membership != before;
        let first_height = Height(boundary.0 + 1);
        let validators: Vec<PublicKey> = membership.validators.iter().map(|v| v.key).collect();
        let da_nodes: Vec<PublicKey> = membership.da_nodes.iter().map(|v| v.key).collect();
        let da_threshold = membership.da_threshold();
        let max_batches_per_block = membership.settings.max_batches_per_block;
        let max_batch_bytes = membership.settings.max_batch_bytes;
        let last = self.committees.back();
        if last.is_none_or(|c| {
            c.validators != validators
                || c.da_nodes != da_nodes
                || c.da_threshold != da_threshold
                || c.max_batches_per_block != max_batches_per_block
                || c.max_batch_bytes != max_batch_bytes
        }) {
            let epoch = last.map_or(0, |c| c.epoch + 1);
            let from = Height(first_height.0.saturating_add(self.params.epoch_length));
            self.committees.push_back(CommitteeEpoch {
                epoch,
                first_height: from,
                validators,
                da_nodes,
                da_threshold,
                max_batches_per_block,
                max_batch_bytes,
            });
            if self.committees.len() > KEEP_COMMITTEE_CHANGES {
                self.committees.pop_front();
            }
        }
        for (param, value) in membership.settings.all() {
            if before.settings.get(param) != Some(value) {
                self.schedule.record(param, first_height, value);
            }
        }
        self.epoch = Epoch { number, first_height, membership };
        events.push(Event::EpochStarted { epoch: number, first_height: self.epoch.first_height, changed });
    }

    fn prune(&mut self) {
        while self.closed.len() > KEEP_CLOSED {
            if let Some(id) = self.closed.pop_front() {
                self.proposals.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_keeps_the_last_changes_and_says_from_where_it_answers() {
        let fee = Param::Fee { chain: ChainId(1) };
        let mut s = ParamSchedule::default();
        s.record(fee, Height(1), 5);
        s.record(Param::ChallengeWindow, Height(1), 9);
        for i in 1..=KEEP_PARAM_CHANGES as u64 {
            s.record(fee, Height(i * 10 + 1), i);
        }
        // The genesis entry is forgotten: heights before the oldest kept change are not
        // answered rather than answered wrongly.
        assert_eq!(s.serves_from(), Height(11));
        assert_eq!(s.value_at(fee, Height(10)), None);
        assert_eq!(s.value_at(fee, Height(11)), Some(1));
        assert_eq!(s.value_at(fee, Height(21)), Some(2));
        assert_eq!(s.value_at(fee, Height(30)), Some(2));
        assert_eq!(s.value_at(fee, Height(u64::MAX)), Some(KEEP_PARAM_CHANGES as u64));
        assert_eq!(s.value_at(Param::ChallengeWindow, Height(5)), Some(9));
        assert_eq!(s.value_at(Param::Fee { chain: ChainId(2) }, Height(30)), None);
    }
}
