//! The settlement state machine: a pure function of the genesis and the ordered log's
//! settlement namespace (plus, per height, what the log carried for each user chain).
//!
//! # Driving it
//!
//! For every log height `h`, in order, the service calls
//! 1. [`SettlementState::observe_block`] with, for each user chain with data in block
//!    `h`, its data roots in block order ([`lamina_interfaces::inputs::namespace_data_roots`])
//!    and whether all their availability certificates verified;
//! 2. [`SettlementState::challenge_target`] for each challenge among the height's
//!    settlement transactions, fetching that step's chain transactions (and a
//!    DA-referenced witness) into [`ProofInputs`];
//! 3. [`SettlementState::apply_entries`] with the height's settlement transactions in log
//!    order (an empty list for heights without any: finalization runs at every height).
//!
//! Heights at or below the last processed one are ignored by both calls, so replaying
//! a prefix after a restart is harmless. Two instances fed the same calls reach the
//! same [`SettlementState::state_root`] and emit the same [`Event`]s.
//!
//! # Rules
//!
//! Every transaction's signature (and every claim's own signature) is checked by one
//! batch verification per height. A rejected entry changes nothing (no bond moves, no
//! nonce advances) and is reported as [`Event::EntryRejected`] with a typed [`Error`].
//! An accepted entry sets its sender's next usable nonce above the transaction's nonce
//! (nonces must increase, gaps allowed), so no transaction applies twice.
//!
//! **Held claims.** A claim that passes every check that needs no parent (signature,
//! network, chain, params, not a known or held id, `to < h`, no zero root, free balance
//! covering the bond) but whose parent is unknown (not [`Digest::ZERO`], not the head
//! or a duplicate of it, no claim on record) is *held* ([`Event::ClaimHeld`]) instead of
//! rejected: two consecutive claims of one claimer may reach the log in the wrong order.
//! Holding locks no bond and does not use the transaction's nonce (so the parent, with
//! a lower nonce, still passes); a held id counts as seen (a second copy is a
//! [`Error::Duplicate`]). At most [`MAX_HELD_PER_CLAIMER`] claims per claimer and
//! [`MAX_HELD`] in all are held; beyond that the claim is rejected
//! ([`Error::TooManyHeld`]). When a claim is accepted, the held claims naming it as
//! parent are checked in full at that same height, in hold order, cascading to their
//! own held children: each is accepted as if included at that height (its window runs
//! from there; the claimer's next nonce becomes at least its nonce + 1) or rejected
//! ([`Event::EntryRejected`] with its own transaction). A claim held at `h` whose
//! parent was not accepted by the end of `h + W` is rejected with
//! [`Error::HoldExpired`]. Held claims are part of the state root, in hold order.
//!
//! **Claim** included at height `h`: posted by its claimer, validly signed, for this
//! network, for a genesis chain with the genesis ledger-params digest, not seen before,
//! with `to < h` (only heights ordered before it). Its parent (if unknown, the claim is
//! held: see *Held claims* above) is either
//! [`Digest::ZERO`] (allowed only while the chain has no finalized anchor; then
//! `from == 0`, pre-state = the executor's genesis root, receipts chained from ZERO), or
//! the chain's finalized head claim, or a *duplicate* of it (see Finality), or a
//! *pending* claim of the chain; `from` equals the parent's `to`, and the pre-state is
//! the parent's state and receipts roots. A parent that ended slashed or orphaned, or
//! one ending below the finalized head (stale), is refused. The claim
//! passes [`CheckpointClaim::check_shape`], and its steps list exactly the heights in
//! `(from, to]` whose blocks carried data for the chain,
//! each with the [`lamina_interfaces::settlement::inputs_digest`] of those data roots
//! (the DA gate); a step over data whose availability certificate did not verify is
//! refused. The claimer's free balance must cover the claim bond, which becomes
//! bonded. Deadline = `h + W`.
//!
//! **Challenge** of step `i` of a claim at height `h`: the claim is pending, was
//! included before `h`, and `h <= deadline`; `i` is a valid step; the challenger's
//! free balance covers the challenge bond. The step is re-executed statelessly from its
//! pre-state root (the previous step's state root, or the parent's for step 0) with
//! the witness and the step's transactions. If the outcome differs from the step's
//! roots, fraud is proven: the claim is slashed (the challenger receives
//! `claim_bond * reward% / 100`, the rest is burned, the challenger keeps its bond) and
//! every pending descendant is orphaned with its bond refunded. If re-execution agrees
//! with the claim or fails (a bad or unavailable witness is the challenger's fault),
//! the challenge bond goes to the claimer.
//!
//! **Bad encoding**: a proof accepted by the DA layer's
//! [`EncodingFraudVerifier`] is recorded as evidence against the square (its data root
//! joins [`SettlementState::bad_data_roots`], [`Event::BadEncoding`]); a second proof
//! for the same root is rejected. It does not end claims: a wrongly encoded square is
//! not unavailable data but data with a deterministic meaning — by the DA layer's
//! canonical rule, the namespaces whose rows are bad have no transactions in it, the
//! others keep theirs — so execution keeps going and a claim over it is right or wrong
//! like any other, which a step challenge decides (its re-execution fetches the step's
//! transactions by the same rule).
//!
//! **Finality** at the end of each height `h`. A chain may have several claimers, each
//! posting its own chain of claims; claims are compared by the state they commit to,
//! not by id: two claims of a chain ending at the same `to` with the same state and
//! receipts roots are *equivalent* parents. A pending claim's pre-state is *final* when
//! the chain's finalized head ends at its `from` with its pre-state roots (before any
//! anchor: it starts at 0 from genesis). Every pending claim with `deadline <= h` whose
//! pre-state is final finalizes, in inclusion order, cascading (in inclusion order) to
//! claims whose deadline has passed and whose pre-state the new head made final. It
//! gets its bond back and appends an [`Anchor`] to its chain. The chain's other pending
//! claims are then resolved against the new head (ending at `T`):
//! * same `from`, `to == T`, same pre-state and same roots: a **duplicate**: it ends
//!   [`ClaimStatus::Finalized`] without an anchor ([`ClaimRecord::duplicate_of`] names
//!   the anchored claim), its bond is returned, and its children stay valid;
//! * any other claim with `from < T` (overlapping, stale, or ending at `T` with other
//!   roots or another cut) is orphaned (bond refunded) with its pending descendants;
//!   so is a claim with `from == T` whose pre-state differs from the head's;
//! * claims with `from >= T` otherwise wait.
//!
//! A claim therefore never finalizes before its deadline, and never before its pre-state
//! is final. Since every anchor extends the previous head with `to` strictly greater,
//! two anchors can never cover the same range end. After each finalization, every
//! pending claim of the chain starts at or above the head's `to`.
//!
//! # Bounded memory
//!
//! Per-height data records of a chain are dropped once the chain's head covers them;
//! at most [`MAX_TERMINAL_PER_CHAIN`] ended claim records are kept per chain, plus the
//! ids of the head's duplicates (dropped at the next anchor). Anchors (one per anchored
//! claim; duplicates add none) are kept while a step may still prove against them: a
//! chain's anchor is usable for bridge proofs through `anchor_window` heights after the
//! chain's next anchor finalized ([`lamina_interfaces::FinalizedRoot::usable_until`]),
//! and [`SettlementState::forget_anchors`] drops the ones no step at or above a floor
//! can use, keeping the anchors' Merkle root and the proofs of the rest. Held claims
//! are capped per claimer and in all, and leave after at most W heights (expiry pops
//! them in hold order, so a height costs only what it expires or releases).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use lamina_interfaces::settlement::inputs_digest;
use lamina_interfaces::{
    AnchorList, CheckpointClaim, EncodingFraudVerifier, GenesisParams, GovernedParam, ParamsView, StatelessExecutor,
    StepEnv, StepOutcome,
};
use lamina_primitives::{ChainId, Digest, Domain, Height, PublicKey, SignedDigest, Transaction, TxId, sig};

use crate::anchors::{Anchor, AnchorProof, AnchorTree};

mod image;
use crate::entry::{Challenge, Entry, WitnessRef, witness_hash};
use crate::{Error, Params};
pub use image::{ChainImage, ImageError, StateImage};

/// Domain of [`SettlementState::state_root`].
pub static STATE_ROOT: Domain = Domain::new("lamina settlement state v3");

/// Ended (finalized, slashed, orphaned) claim records kept per chain.
pub const MAX_TERMINAL_PER_CHAIN: usize = 1024;

/// Claims held at once per claimer (claims whose parent is not known yet).
pub const MAX_HELD_PER_CLAIMER: usize = 8;

/// Claims held at once in all.
pub const MAX_HELD: usize = 1024;

/// Where a claim stands.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum ClaimStatus {
    /// Bonded, within or past its window, not yet final.
    Pending,
    /// Final; bond returned. Either anchored, or a duplicate of the anchored claim
    /// (same pre-state, range and roots; [`ClaimRecord::duplicate_of`] is set).
    Finalized,
    /// Fraud proven; bond slashed.
    Slashed,
    /// Can never finalize (a conflicting claim finalized, or an ancestor ended without
    /// finalizing); bond refunded.
    Orphaned,
}

impl ClaimStatus {
    /// Lowercase name (`pending`, `finalized`, `slashed`, `orphaned`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Pending => "pending",
            ClaimStatus::Finalized => "finalized",
            ClaimStatus::Slashed => "slashed",
            ClaimStatus::Orphaned => "orphaned",
        }
    }

    fn code(self) -> u8 {
        match self {
            ClaimStatus::Pending => 0,
            ClaimStatus::Finalized => 1,
            ClaimStatus::Slashed => 2,
            ClaimStatus::Orphaned => 3,
        }
    }
}

/// An accepted claim and what settlement knows about it.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClaimRecord {
    /// The claim's id.
    pub id: Digest,
    /// The claim.
    pub claim: CheckpointClaim,
    /// Position in the global inclusion order.
    pub seq: u64,
    /// Log height that included it.
    pub included_at: Height,
    /// Last height a challenge is accepted; it finalizes at the end of this height at
    /// the earliest.
    pub deadline: Height,
    /// State root its first step starts from (the parent's, or the genesis root).
    pub pre_state_root: Digest,
    /// Receipts root its steps chain from (the parent's, or [`Digest::ZERO`]).
    pub pre_receipts_root: Digest,
    /// Where it stands.
    pub status: ClaimStatus,
    /// Height at which it left `Pending`.
    pub ended_at: Option<Height>,
    /// For a claim finalized as a duplicate: the anchored claim it duplicates. `None`
    /// for an anchored claim and for claims that did not finalize.
    pub duplicate_of: Option<Digest>,
}

impl ClaimRecord {
    /// True while the claim is [`ClaimStatus::Pending`].
    pub fn is_pending(&self) -> bool {
        self.status == ClaimStatus::Pending
    }
}

/// A claim whose parent was not known when the log included it (consecutive claims of a
/// claimer reordered on their way to the log), held until the parent is accepted or
/// the hold expires. A held claim locks no bond and has not used its transaction's nonce.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeldClaim {
    /// The claim's id.
    pub id: Digest,
    /// The claim.
    pub claim: CheckpointClaim,
    /// The transaction that carried it.
    pub tx: TxId,
    /// That transaction's nonce (used when the claim is accepted).
    pub nonce: u64,
    /// Log height that held it; it is rejected at the end of `held_at + W` (the window in
    /// force at `held_at`) if its parent has not been accepted by then.
    pub held_at: Height,
}

/// A settlement ledger account.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    Default,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Account {
    /// Spendable on bonds.
    pub free: u64,
    /// Locked in pending claims.
    pub bonded: u64,
    /// Smallest nonce the account's next settlement transaction may use.
    pub next_nonce: u64,
}

/// Counters since genesis (not part of the state root).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Debug,
    Default,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Stats {
    /// Claims pending now.
    pub pending: u64,
    /// Claims finalized and anchored (one per anchor).
    pub finalized: u64,
    /// Claims finalized as duplicates of an anchored claim (no anchor of their own).
    pub duplicates: u64,
    /// Claims slashed.
    pub slashed: u64,
    /// Claims orphaned.
    pub orphaned: u64,
    /// Challenges that proved fraud.
    pub challenges_ok: u64,
    /// Challenges that failed (bond paid to the claimer).
    pub challenges_failed: u64,
    /// Entries rejected.
    pub rejected: u64,
    /// Data roots proven badly encoded.
    pub bad_encodings: u64,
    /// Claims held now (parent not known yet).
    pub held: u64,
    /// Held claims dropped because their parent did not arrive in time (also counted
    /// in `rejected`).
    pub hold_expired: u64,
}

/// How a challenge ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChallengeOutcome {
    /// Fraud proven: the claim is slashed.
    Slashed,
    /// No fraud proven: the challenge bond went to the claimer.
    Failed {
        /// Why (re-execution agreed, bad or unavailable witness).
        reason: String,
    },
}

/// Why a claim was orphaned.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OrphanReason {
    /// A conflicting claim of the chain finalized: this claim covers heights at or
    /// below the new head's end without being a duplicate of it (overlapping range,
    /// other cut points or other roots), or starts at the head's end from another
    /// pre-state.
    SiblingFinalized {
        /// The claim that finalized.
        winner: Digest,
    },
    /// An ancestor ended without finalizing.
    AncestorEnded {
        /// The ancestor.
        ancestor: Digest,
        /// How it ended.
        status: ClaimStatus,
    },
}

/// What happened while applying a height (for logs, metrics and verifiers).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A claim was accepted and bonded.
    ClaimAccepted {
        /// Claim id.
        id: Digest,
        /// Chain.
        chain: ChainId,
        /// Range start (exclusive).
        from: Height,
        /// Range end (inclusive).
        to: Height,
        /// Claimer.
        claimer: PublicKey,
        /// Last height a challenge is accepted.
        deadline: Height,
    },
    /// A claim whose parent is not known yet was held (no bond, no nonce used): it is
    /// checked in full when its parent is accepted, or rejected with
    /// [`Error::HoldExpired`] if the parent does not arrive within W heights.
    ClaimHeld {
        /// Claim id.
        id: Digest,
        /// Claimer.
        claimer: PublicKey,
        /// The parent it waits for.
        parent: Digest,
    },
    /// An entry was rejected; nothing changed (a held claim rejected when its hold
    /// expires or when it is released reports its own transaction here).
    EntryRejected {
        /// The transaction.
        tx: TxId,
        /// Its sender.
        sender: PublicKey,
        /// Why.
        error: Error,
    },
    /// A challenge was applied.
    Challenged {
        /// The claim.
        claim: Digest,
        /// The challenger.
        challenger: PublicKey,
        /// The challenged step index.
        step: u32,
        /// How it ended.
        outcome: ChallengeOutcome,
    },
    /// A claim was slashed.
    Slashed {
        /// The claim.
        claim: Digest,
        /// Its claimer (who lost the bond).
        claimer: PublicKey,
        /// The successful challenger.
        challenger: PublicKey,
        /// Paid to the challenger.
        reward: u64,
        /// Burned.
        burned: u64,
    },
    /// A claim finalized and was anchored.
    Finalized {
        /// The claim.
        claim: Digest,
        /// Chain.
        chain: ChainId,
        /// Range end.
        to: Height,
        /// Anchored state root.
        state_root: Digest,
        /// Height at whose end it finalized.
        at: Height,
    },
    /// A claim finalized as a duplicate of the claim just anchored (same pre-state,
    /// range and roots; bond returned, no anchor of its own).
    Duplicate {
        /// The claim.
        claim: Digest,
        /// Chain.
        chain: ChainId,
        /// Range end.
        to: Height,
        /// The anchored claim it duplicates.
        anchored: Digest,
        /// Height at whose end it finalized.
        at: Height,
    },
    /// A claim was orphaned (bond refunded).
    Orphaned {
        /// The claim.
        claim: Digest,
        /// Why.
        reason: OrphanReason,
    },
    /// A data root was proven badly encoded.
    BadEncoding {
        /// The data root.
        data_root: Digest,
    },
}

/// One settlement transaction of a height, with what the service fetched for it.
#[derive(Clone, Debug)]
pub struct Input {
    /// The transaction, as ordered.
    pub tx: Transaction,
    /// For a challenge whose [`SettlementState::challenge_target`] is `Some`: the
    /// proof inputs. Ignored for other entries.
    pub proof: Option<ProofInputs>,
}

/// What a challenge needs from outside the log's settlement namespace.
///
/// # Contract
///
/// Whatever the service supplies must be a deterministic function of the log, or
/// settlement nodes diverge: `txs` are exactly the chain's transactions at the target
/// height ([`lamina_interfaces::inputs::namespace_transactions`]; the DA gate made them
/// available), and `witness` is `Err` only when the referenced blob is unusable for
/// everyone.
#[derive(Clone, Debug)]
pub struct ProofInputs {
    /// The challenged step's chain transactions, in order.
    pub txs: Vec<Transaction>,
    /// For [`WitnessRef::Da`]: the fetched witness bytes, or why they could not be
    /// fetched (the challenge then fails at the challenger's cost; the core also checks
    /// the bytes against the reference's hash and length). Ignored for inline witnesses.
    pub witness: Result<Vec<u8>, String>,
}

#[derive(Clone, Debug)]
struct HeightRecord {
    inputs: Digest,
    available: bool,
}

#[derive(Clone, Debug)]
struct ChainState {
    params: Digest,
    /// Heights above the head's `to` that carried data for the chain.
    records: BTreeMap<Height, HeightRecord>,
    /// The anchors still kept, oldest first (contiguous indexes ending at the head;
    /// older ones are forgotten by [`SettlementState::forget_anchors`]).
    anchors: VecDeque<Anchor>,
    /// Merkle tree over every anchor ever appended (forgotten ones included, as
    /// frontier nodes).
    tree: AnchorTree,
    /// Pending claims by inclusion sequence.
    pending: BTreeMap<u64, Digest>,
    /// Claims finalized as duplicates of the head (acceptable parents, like the head);
    /// cleared when the next anchor is appended.
    head_duplicates: BTreeSet<Digest>,
    /// Ended claims still kept, oldest first.
    terminal: VecDeque<Digest>,
}

impl ChainState {
    fn head(&self) -> Option<&Anchor> {
        self.anchors.back()
    }

    /// The kept anchor at position `index`.
    fn anchor(&self, index: u64) -> Option<&Anchor> {
        let first = self.anchors.front()?.index;
        self.anchors.get(usize::try_from(index.checked_sub(first)?).ok()?)
    }

    /// Anchor `a` (kept here) as the bridge reads it, with its window.
    fn finalized_root(&self, a: &Anchor, window: u64) -> lamina_interfaces::FinalizedRoot {
        let next = a.index.checked_add(1).and_then(|i| self.anchor(i));
        lamina_interfaces::FinalizedRoot {
            usable_until: next.map(|n| Height(n.finalized_at.0.saturating_add(window))),
            ..a.finalized_root()
        }
    }
}

/// The settlement state machine (see the module docs for the rules).
#[derive(Clone, Debug)]
pub struct SettlementState {
    params: Params,
    /// Last height processed by `apply_entries`.
    height: Option<Height>,
    /// Last height given to `observe_block`.
    observed: Option<Height>,
    accounts: HashMap<PublicKey, Account>,
    burned: u64,
    claims: HashMap<Digest, ClaimRecord>,
    /// Pending children per (chain, parent id), in inclusion order (only pending claims;
    /// an entry goes when its last child ends).
    children: HashMap<(ChainId, Digest), Vec<Digest>>,
    chains: BTreeMap<ChainId, ChainState>,
    /// (deadline, claim), deadlines non-decreasing (inclusion order among equal ones;
    /// a governed window may give a later claim an earlier deadline).
    queue: VecDeque<(Height, Digest)>,
    bad_roots: BTreeSet<Digest>,
    /// Cache of the executor's genesis roots.
    genesis_roots: HashMap<ChainId, Digest>,
    next_seq: u64,
    /// Held claims by hold sequence (hold order; `held_at` is non-decreasing).
    held: BTreeMap<u64, HeldClaim>,
    /// Hold sequence of each held claim id.
    held_ids: HashMap<Digest, u64>,
    /// Hold sequences of the held claims naming each parent id, ascending.
    held_children: HashMap<Digest, Vec<u64>>,
    /// Number of held claims per claimer (no zero entries).
    held_per_claimer: HashMap<PublicKey, usize>,
    next_hold: u64,
    stats: Stats,
    /// The challenge window in force at the height being applied (set by
    /// [`SettlementState::apply_entries_governed`] from governance's view; not state).
    window: u64,
}

/// What happened to a claim that passed its checks.
enum Applied {
    /// Accepted and bonded.
    Accepted,
    /// Held: its parent is not known yet.
    Held,
}

impl SettlementState {
    /// The state at genesis: genesis balances, no claims, no anchors.
    pub fn new(params: Params) -> Self {
        let params_window = params.window;
        let accounts = params
            .balances
            .iter()
            .map(|(k, amount)| (*k, Account { free: *amount, bonded: 0, next_nonce: 0 }))
            .collect();
        let chains = params
            .chains
            .iter()
            .map(|(id, digest)| {
                (
                    *id,
                    ChainState {
                        params: *digest,
                        records: BTreeMap::new(),
                        anchors: VecDeque::new(),
                        tree: AnchorTree::default(),
                        pending: BTreeMap::new(),
                        head_duplicates: BTreeSet::new(),
                        terminal: VecDeque::new(),
                    },
                )
            })
            .collect();
        SettlementState {
            params,
            height: None,
            observed: None,
            accounts,
            burned: 0,
            claims: HashMap::new(),
            children: HashMap::new(),
            chains,
            queue: VecDeque::new(),
            bad_roots: BTreeSet::new(),
            genesis_roots: HashMap::new(),
            next_seq: 0,
            held: BTreeMap::new(),
            held_ids: HashMap::new(),
            held_children: HashMap::new(),
            held_per_claimer: HashMap::new(),
            next_hold: 0,
            stats: Stats::default(),
            window: params_window,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The challenge window in force at the last height applied since this state was
    /// created or loaded (the genesis's before that): what `status` reports.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The challenge window (heights) for claims included at `height`: governance's
    /// value there ([`GovernedParam::ChallengeWindow`]), else the genesis's; at least 1.
    pub fn window_at(&self, governed: &dyn ParamsView, height: Height) -> u64 {
        governed.value(GovernedParam::ChallengeWindow, height).unwrap_or(self.params.window).max(1)
    }

    /// Records what block `height` carried for each user chain: its data roots in block
    /// order and whether all their availability certificates verified. Call before
    /// [`SettlementState::apply_entries`] for the same height, for every height. Unknown
    /// chains, empty root lists and repeated chains are ignored; a height at or below the
    /// last observed one is ignored entirely.
    pub fn observe_block(&mut self, height: Height, namespaces: &[(ChainId, Vec<Digest>, bool)]) {
        if self.observed.is_some_and(|o| height <= o) {
            return;
        }
        self.observed = Some(height);
        for (chain, roots, certified) in namespaces {
            if roots.is_empty() {
                continue;
            }
            let Some(cs) = self.chains.get_mut(chain) else { continue };
            if cs.records.contains_key(&height) {
                continue;
            }
            let available = *certified;
            cs.records.insert(height, HeightRecord { inputs: inputs_digest(roots), available });
        }
    }

    /// The (chain, height) whose transactions the service must fetch to verify `c`;
    /// `None` if the claim is unknown or not pending, or the step does not exist (the
    /// challenge will then be rejected without needing a proof).
    pub fn challenge_target(&self, c: &Challenge) -> Option<(ChainId, Height)> {
        let rec = self.claims.get(&c.claim)?;
        if rec.status != ClaimStatus::Pending {
            return None;
        }
        let step = rec.claim.steps.get(c.step as usize)?;
        Some((rec.claim.chain_id, step.height))
    }

    /// Applies the settlement transactions of log height `height` in order, then
    /// finalizes what is due at the end of `height`. Never panics on any input; returns
    /// what happened. A height at or below the last processed one is ignored (returns no
    /// events).
    pub fn apply_entries(
        &mut self,
        height: Height,
        inputs: Vec<Input>,
        exec: &dyn StatelessExecutor,
        enc: &dyn EncodingFraudVerifier,
    ) -> Vec<Event> {
        self.apply_entries_governed(height, inputs, exec, enc, &GenesisParams)
    }

    /// [`SettlementState::apply_entries`] on a network whose governance may change the
    /// challenge window: a claim included (or released from hold) at `height` gets the
    /// deadline `height + W(height)`, and a held claim expires at the end of
    /// `held_at + W(held_at)`, `W` read from `governed` ([`SettlementState::window_at`]).
    /// `governed` must answer finally for every height applied (a node waits for its
    /// governance follower's `final_through`); the same answers give the same state on
    /// every node.
    pub fn apply_entries_governed(
        &mut self,
        height: Height,
        inputs: Vec<Input>,
        exec: &dyn StatelessExecutor,
        enc: &dyn EncodingFraudVerifier,
        governed: &dyn ParamsView,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        if self.height.is_some_and(|h| height <= h) {
            return events;
        }
        self.window = self.window_at(governed, height);
        // Decode everything, then verify every signature of the height in one batch.
        let mut batch: Vec<SignedDigest> = Vec::with_capacity(inputs.len() * 2);
        let mut prepared = Vec::with_capacity(inputs.len());
        for input in inputs {
            let tx_id = input.tx.id();
            let sd = input.tx.signed_digest(self.params.scope);
            let tx_slot = batch.len();
            batch.push(sd);
            let entry = Entry::from_transaction(&input.tx);
            let claim = match &entry {
                Ok(Entry::Claim(c)) => {
                    let id = c.id();
                    let slot = batch.len();
                    batch.push(SignedDigest { public_key: c.claimer, message: id, signature: c.signature });
                    Some((id, slot))
                }
                _ => None,
            };
            prepared.push((input, tx_id, tx_slot, entry, claim));
        }
        let valid = sig::verify_batch_each(&batch);
        for (input, tx_id, tx_slot, entry, claim) in prepared {
            let Input { tx, proof } = input;
            let sender = tx.sender;
            let result = if !valid[tx_slot] {
                Err(Error::BadSignature)
            } else {
                entry.and_then(|entry| {
                    let claim = claim.map(|(id, slot)| (id, valid[slot]));
                    self.apply_entry(height, &tx, tx_id, entry, claim, proof, exec, enc, &mut events)
                })
            };
            if let Err(error) = result {
                self.stats.rejected += 1;
                events.push(Event::EntryRejected { tx: tx_id, sender, error });
            }
        }
        self.expire_held(height, governed, &mut events);
        self.finalize_due(height, &mut events);
        self.height = Some(height);
        events
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_entry(
        &mut self,
        height: Height,
        tx: &Transaction,
        tx_id: TxId,
        entry: Entry,
        claim: Option<(Digest, bool)>,
        proof: Option<ProofInputs>,
        exec: &dyn StatelessExecutor,
        enc: &dyn EncodingFraudVerifier,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let next = self.accounts.get(&tx.sender).map_or(0, |a| a.next_nonce);
        if tx.nonce < next || tx.nonce == u64::MAX {
            return Err(Error::StaleNonce { sender: tx.sender, nonce: tx.nonce, next });
        }
        let mut accepted_claim = None;
        match entry {
            Entry::Claim(c) => {
                let (id, sig_ok) = claim.unwrap_or_else(|| (c.id(), c.verify_signature().is_ok()));
                match self.apply_claim(height, tx.sender, c, id, sig_ok, Some((tx_id, tx.nonce)), exec, events)? {
                    // Held: no nonce used (its parent, with a lower nonce, may follow).
                    Applied::Held => return Ok(()),
                    Applied::Accepted => accepted_claim = Some(id),
                }
            }
            Entry::Challenge(ch) => self.apply_challenge(height, tx.sender, ch, proof, exec, events)?,
            Entry::BadEncoding { data_root, proof } => self.apply_bad_encoding(data_root, &proof, enc, events)?,
        }
        self.accounts.entry(tx.sender).or_default().next_nonce = tx.nonce + 1;
        if let Some(id) = accepted_claim {
            self.release_held(id, height, exec, events);
        }
        Ok(())
    }

    /// Checks in full, at `height`, the held claims waiting for `parent` (just
    /// accepted), in hold order, cascading to the held children of each one accepted.
    fn release_held(&mut self, parent: Digest, height: Height, exec: &dyn StatelessExecutor, events: &mut Vec<Event>) {
        let mut ready: BTreeSet<u64> = self.held_children.get(&parent).into_iter().flatten().copied().collect();
        while let Some(seq) = ready.pop_first() {
            let Some(HeldClaim { id, claim, tx, nonce, .. }) = self.unhold(seq) else { continue };
            let claimer = claim.claimer;
            // The signature was verified when the claim was held.
            match self.apply_claim(height, claimer, claim, id, true, None, exec, events) {
                Ok(_) => {
                    let a = self.accounts.entry(claimer).or_default();
                    a.next_nonce = a.next_nonce.max(nonce.saturating_add(1));
                    ready.extend(self.held_children.get(&id).into_iter().flatten().copied());
                }
                Err(error) => {
                    self.stats.rejected += 1;
                    events.push(Event::EntryRejected { tx, sender: claimer, error });
                }
            }
        }
    }

    /// Holds claim `id` (all checks that need no parent passed; its parent is unknown).
    fn hold(
        &mut self,
        height: Height,
        c: CheckpointClaim,
        id: Digest,
        tx: TxId,
        nonce: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Error> {
        let (claimer, parent) = (c.claimer, c.parent);
        let bond = self.params.claim_bond;
        let have = self.accounts.get(&claimer).map_or(0, |a| a.free);
        if have < bond {
            return Err(Error::InsufficientBalance { account: claimer, have, need: bond });
        }
        let mine = self.held_per_claimer.get(&claimer).copied().unwrap_or(0);
        if mine >= MAX_HELD_PER_CLAIMER {
            return Err(Error::TooManyHeld { parent, claimer, limit: MAX_HELD_PER_CLAIMER });
        }
        if self.held.len() >= MAX_HELD {
            return Err(Error::TooManyHeld { parent, claimer, limit: MAX_HELD });
        }
        let seq = self.next_hold;
        self.next_hold += 1;
        self.held.insert(seq, HeldClaim { id, claim: c, tx, nonce, held_at: height });
        self.held_ids.insert(id, seq);
        self.held_children.entry(parent).or_default().push(seq);
        *self.held_per_claimer.entry(claimer).or_default() += 1;
        self.stats.held += 1;
        events.push(Event::ClaimHeld { id, claimer, parent });
        Ok(Applied::Held)
    }

    /// Removes a held claim from every index.
    fn unhold(&mut self, seq: u64) -> Option<HeldClaim> {
        let h = self.held.remove(&seq)?;
        self.held_ids.remove(&h.id);
        if let Some(v) = self.held_children.get_mut(&h.claim.parent) {
            v.retain(|s| *s != seq);
            if v.is_empty() {
                self.held_children.remove(&h.claim.parent);
            }
        }
        if let Some(n) = self.held_per_claimer.get_mut(&h.claim.claimer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held_per_claimer.remove(&h.claim.claimer);
            }
        }
        self.stats.held = self.stats.held.saturating_sub(1);
        Some(h)
    }

    /// Rejects the held claims whose window (the one in force when each was held) has
    /// passed at the end of `height`, in hold order.
    fn expire_held(&mut self, height: Height, governed: &dyn ParamsView, events: &mut Vec<Event>) {
        if self.held.is_empty() {
            return;
        }
        // At most MAX_HELD; windows differ per hold height once governance changes it.
        let mut windows: BTreeMap<Height, u64> = BTreeMap::new();
        let mut due = Vec::new();
        for (&seq, h) in &self.held {
            let w = *windows.entry(h.held_at).or_insert_with(|| self.window_at(governed, h.held_at));
            if h.held_at.0.saturating_add(w) <= height.0 {
                due.push(seq);
            }
        }
        for seq in due {
            let Some(h) = self.unhold(seq) else { continue };
            self.stats.rejected += 1;
            self.stats.hold_expired += 1;
            events.push(Event::EntryRejected {
                tx: h.tx,
                sender: h.claim.claimer,
                error: Error::HoldExpired { claim: h.id, parent: h.claim.parent, held_at: h.held_at },
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_claim(
        &mut self,
        height: Height,
        sender: PublicKey,
        c: CheckpointClaim,
        id: Digest,
        sig_ok: bool,
        hold: Option<(TxId, u64)>,
        exec: &dyn StatelessExecutor,
        events: &mut Vec<Event>,
    ) -> Result<Applied, Error> {
        if sender != c.claimer {
            return Err(Error::SenderMismatch { sender, claimer: c.claimer });
        }
        if !sig_ok {
            return Err(Error::BadClaimSignature);
        }
        if c.network != self.params.network {
            return Err(Error::WrongNetwork { got: c.network, want: self.params.network });
        }
        let chain = c.chain_id;
        let cs = self.chains.get(&chain).ok_or(Error::UnknownChain(chain))?;
        if c.params != cs.params {
            return Err(Error::WrongParams { chain, got: c.params, want: cs.params });
        }
        let head = cs.head().copied();
        let parent_is_head_duplicate = cs.head_duplicates.contains(&c.parent);
        if self.claims.contains_key(&id)
            || head.is_some_and(|a| a.claim == id)
            || cs.head_duplicates.contains(&id)
            || self.held_ids.contains_key(&id)
        {
            return Err(Error::Duplicate(id));
        }
        let horizon = self.observed.map_or(Height(0), |o| o.min(Height(height.0.saturating_sub(1))));
        if c.to >= height || self.observed.is_none_or(|o| c.to > o) {
            return Err(Error::Future { to: c.to, height: horizon });
        }
        if c.state_root.is_zero() || c.receipts_root.is_zero() || c.steps.iter().any(|s| s.state_root.is_zero()) {
            return Err(Error::ZeroRoot);
        }
        let (pre_root, parent_receipts, parent_to) = if c.parent.is_zero() {
            if head.is_some() {
                return Err(Error::BadGenesisClaim("the chain already has a finalized anchor"));
            }
            if c.from != Height(0) {
                return Err(Error::BadGenesisClaim("a genesis-parent claim must start at height 0"));
            }
            (self.genesis_root(chain, exec)?, Digest::ZERO, Height(0))
        } else if let Some(a) = head.filter(|a| a.claim == c.parent || parent_is_head_duplicate) {
            // The head or an equivalent (duplicate) claim: the same final state.
            (a.state_root, a.receipts_root, a.to)
        } else if !self.claims.contains_key(&c.parent)
            && let Some((tx, nonce)) = hold
        {
            // Unknown parent (not arrived yet, or held itself): hold the claim.
            return self.hold(height, c, id, tx, nonce, events);
        } else {
            match self.claims.get(&c.parent) {
                // A pending parent ending below the head is stale (never the case while
                // finalization resolves every overlapped pending claim; checked anyway).
                Some(p)
                    if p.status == ClaimStatus::Pending
                        && p.claim.chain_id == chain
                        && head.is_none_or(|a| p.claim.to >= a.to) =>
                {
                    (p.claim.state_root, p.claim.receipts_root, p.claim.to)
                }
                _ => return Err(Error::BadParent(c.parent)),
            }
        };
        if c.from != parent_to {
            return Err(Error::RangeMismatch { from: c.from, parent_to });
        }
        c.check_shape(&parent_receipts).map_err(Error::Shape)?;
        let cs = self.chains.get(&chain).ok_or(Error::UnknownChain(chain))?;
        check_inputs(cs, &c)?;
        let bond = self.params.claim_bond;
        let have = self.accounts.get(&sender).map_or(0, |a| a.free);
        if have < bond {
            return Err(Error::InsufficientBalance { account: sender, have, need: bond });
        }
        // Commit.
        let acct = self.accounts.entry(sender).or_default();
        acct.free -= bond;
        acct.bonded = acct.bonded.saturating_add(bond);
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = Height(height.0.saturating_add(self.window));
        if let Some(cs) = self.chains.get_mut(&chain) {
            cs.pending.insert(seq, id);
        }
        self.children.entry((chain, c.parent)).or_default().push(id);
        // After every deadline not later than this one (a shorter window than earlier
        // claims' puts it before them).
        let at = self.queue.partition_point(|(d, _)| *d <= deadline);
        self.queue.insert(at, (deadline, id));
        self.stats.pending += 1;
        events.push(Event::ClaimAccepted { id, chain, from: c.from, to: c.to, claimer: c.claimer, deadline });
        self.claims.insert(
            id,
            ClaimRecord {
                id,
                claim: c,
                seq,
                included_at: height,
                deadline,
                pre_state_root: pre_root,
                pre_receipts_root: parent_receipts,
                status: ClaimStatus::Pending,
                ended_at: None,
                duplicate_of: None,
            },
        );
        Ok(Applied::Accepted)
    }

    fn genesis_root(&mut self, chain: ChainId, exec: &dyn StatelessExecutor) -> Result<Digest, Error> {
        if let Some(r) = self.genesis_roots.get(&chain) {
            return Ok(*r);
        }
        let r = exec.genesis_root(chain).map_err(|e| Error::NoGenesisRoot { chain, reason: e.to_string() })?;
        self.genesis_roots.insert(chain, r);
        Ok(r)
    }

    fn apply_challenge(
        &mut self,
        height: Height,
        challenger: PublicKey,
        ch: Challenge,
        proof: Option<ProofInputs>,
        exec: &dyn StatelessExecutor,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        let rec = self.claims.get(&ch.claim).ok_or(Error::UnknownClaim(ch.claim))?;
        if rec.status != ClaimStatus::Pending {
            return Err(Error::NotPending { claim: ch.claim, status: rec.status });
        }
        if height <= rec.included_at {
            return Err(Error::TooEarly(ch.claim));
        }
        if height > rec.deadline {
            return Err(Error::TooLate { claim: ch.claim, deadline: rec.deadline, height });
        }
        let i = ch.step as usize;
        let step = *rec.claim.steps.get(i).ok_or(Error::BadStep { step: ch.step, steps: rec.claim.steps.len() })?;
        match &ch.witness {
            WitnessRef::Inline(w) if w.is_empty() => return Err(Error::EmptyWitness),
            WitnessRef::Da { len: 0, .. } => return Err(Error::EmptyWitness),
            _ => {}
        }
        let bond = self.params.challenge_bond;
        let have = self.accounts.get(&challenger).map_or(0, |a| a.free);
        if have < bond {
            return Err(Error::InsufficientBalance { account: challenger, have, need: bond });
        }
        let proof = proof.ok_or(Error::MissingProof)?;
        // Everything below changes state: the challenge is decided either way.
        let pre_root = if i == 0 { rec.pre_state_root } else { rec.claim.steps[i - 1].state_root };
        let chain = rec.claim.chain_id;
        let claimer = rec.claim.claimer;
        let expected = StepOutcome { state_root: step.state_root, receipts_root: step.receipts_root };
        // The step ran with the anchors final before its height: settlement's own, so
        // the verdict is a function of the log alone.
        let env = StepEnv::new(step.height, self.params.scope, Arc::new(self.anchor_view(step.height)));
        let verdict = decide(exec, &env, chain, &pre_root, &ch.witness, &proof, &expected);
        match verdict {
            Ok(()) => {
                self.stats.challenges_ok += 1;
                events.push(Event::Challenged {
                    claim: ch.claim,
                    challenger,
                    step: ch.step,
                    outcome: ChallengeOutcome::Slashed,
                });
                self.slash(ch.claim, challenger, height, events);
            }
            Err(reason) => {
                self.stats.challenges_failed += 1;
                if let Some(a) = self.accounts.get_mut(&challenger) {
                    a.free -= bond;
                }
                let c = self.accounts.entry(claimer).or_default();
                c.free = c.free.saturating_add(bond);
                events.push(Event::Challenged {
                    claim: ch.claim,
                    challenger,
                    step: ch.step,
                    outcome: ChallengeOutcome::Failed { reason },
                });
            }
        }
        Ok(())
    }

    fn apply_bad_encoding(
        &mut self,
        data_root: Digest,
        proof: &[u8],
        enc: &dyn EncodingFraudVerifier,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        if self.bad_roots.contains(&data_root) {
            return Err(Error::AlreadyBad(data_root));
        }
        enc.verify_bad_encoding(&data_root, proof).map_err(Error::BadEncodingProof)?;
        self.bad_roots.insert(data_root);
        self.stats.bad_encodings += 1;
        events.push(Event::BadEncoding { data_root });
        Ok(())
    }

    /// Marks a pending claim ended: status, bookkeeping (including leaving its parent's
    /// pending-children list), bounded retention. Bonds and the claim's own children are
    /// the caller's business.
    fn end_claim(&mut self, id: Digest, status: ClaimStatus, height: Height) {
        self.detach_from_parent(id);
        let Some(rec) = self.claims.get_mut(&id) else { return };
        rec.status = status;
        rec.ended_at = Some(height);
        let (chain, seq) = (rec.claim.chain_id, rec.seq);
        let duplicate = rec.duplicate_of.is_some();
        self.stats.pending = self.stats.pending.saturating_sub(1);
        match status {
            ClaimStatus::Finalized if duplicate => self.stats.duplicates += 1,
            ClaimStatus::Finalized => self.stats.finalized += 1,
            ClaimStatus::Slashed => self.stats.slashed += 1,
            ClaimStatus::Orphaned => self.stats.orphaned += 1,
            ClaimStatus::Pending => {}
        }
        if let Some(cs) = self.chains.get_mut(&chain) {
            cs.pending.remove(&seq);
            cs.terminal.push_back(id);
            if cs.terminal.len() > MAX_TERMINAL_PER_CHAIN
                && let Some(old) = cs.terminal.pop_front()
            {
                self.claims.remove(&old);
            }
        }
    }

    /// Returns a claim's bond to its claimer's free balance.
    fn refund(&mut self, id: Digest) {
        let Some(claimer) = self.claims.get(&id).map(|r| r.claim.claimer) else { return };
        let bond = self.params.claim_bond;
        let a = self.accounts.entry(claimer).or_default();
        a.bonded = a.bonded.saturating_sub(bond);
        a.free = a.free.saturating_add(bond);
    }

    /// Removes an ended claim from its parent's pending-children list.
    fn detach_from_parent(&mut self, id: Digest) {
        let Some(key) = self.claims.get(&id).map(|r| (r.claim.chain_id, r.claim.parent)) else { return };
        if let Some(v) = self.children.get_mut(&key) {
            v.retain(|c| *c != id);
            if v.is_empty() {
                self.children.remove(&key);
            }
        }
    }

    fn slash(&mut self, id: Digest, challenger: PublicKey, height: Height, events: &mut Vec<Event>) {
        let Some(claimer) = self.claims.get(&id).map(|r| r.claim.claimer) else { return };
        self.end_claim(id, ClaimStatus::Slashed, height);
        let bond = self.params.claim_bond;
        let reward = (u128::from(bond) * u128::from(self.params.challenger_reward_percent) / 100) as u64;
        let burned = bond - reward;
        let a = self.accounts.entry(claimer).or_default();
        a.bonded = a.bonded.saturating_sub(bond);
        let c = self.accounts.entry(challenger).or_default();
        c.free = c.free.saturating_add(reward);
        self.burned = self.burned.saturating_add(burned);
        events.push(Event::Slashed { claim: id, claimer, challenger, reward, burned });
        self.orphan_descendants(id, ClaimStatus::Slashed, height, events);
    }

    /// Orphans every pending descendant of `root` (which has just ended with `status`),
    /// depth first in inclusion order, refunding bonds.
    fn orphan_descendants(&mut self, root: Digest, status: ClaimStatus, height: Height, events: &mut Vec<Event>) {
        let Some(chain) = self.claims.get(&root).map(|r| r.claim.chain_id) else { return };
        let mut stack: Vec<(Digest, Digest, ClaimStatus)> = Vec::new();
        let push_children = |state: &mut Self, stack: &mut Vec<_>, parent: Digest, st: ClaimStatus| {
            if let Some(kids) = state.children.remove(&(chain, parent)) {
                stack.extend(kids.into_iter().rev().map(|k| (k, parent, st)));
            }
        };
        push_children(self, &mut stack, root, status);
        while let Some((id, ancestor, st)) = stack.pop() {
            if self.claims.get(&id).is_none_or(|r| r.status != ClaimStatus::Pending) {
                continue;
            }
            self.end_claim(id, ClaimStatus::Orphaned, height);
            self.refund(id);
            events.push(Event::Orphaned { claim: id, reason: OrphanReason::AncestorEnded { ancestor, status: st } });
            push_children(self, &mut stack, id, ClaimStatus::Orphaned);
        }
    }

    /// Finalizes every claim due at the end of `height`.
    fn finalize_due(&mut self, height: Height, events: &mut Vec<Event>) {
        while let Some(&(deadline, id)) = self.queue.front() {
            if deadline > height {
                break;
            }
            self.queue.pop_front();
            self.try_finalize(id, height, events);
        }
    }

    /// Finalizes `first` if its window has passed and its pre-state is final, then
    /// cascades: the earliest pending claim of the chain whose window has passed and
    /// whose pre-state the new head made final follows, and so on.
    fn try_finalize(&mut self, first: Digest, height: Height, events: &mut Vec<Event>) {
        let mut next = Some(first);
        while let Some(id) = next.take() {
            let Some(rec) = self.claims.get(&id) else { continue };
            if rec.status != ClaimStatus::Pending || rec.deadline > height {
                continue;
            }
            let chain = rec.claim.chain_id;
            let Some(cs) = self.chains.get(&chain) else { continue };
            if !pre_state_final(cs, rec) {
                // Pre-state not final yet: it finalizes when it is (cascade).
                continue;
            }
            self.finalize(id, height, events);
            next = self.chains.get(&chain).and_then(|cs| {
                cs.pending
                    .values()
                    .find(|p| self.claims.get(*p).is_some_and(|r| r.deadline <= height && pre_state_final(cs, r)))
                    .copied()
            });
        }
    }

    /// Anchors pending claim `id` (window passed, pre-state final), then resolves the
    /// chain's other pending claims against the new head: duplicates finalize without
    /// an anchor, claims that can no longer finalize are orphaned with their descendants.
    fn finalize(&mut self, id: Digest, height: Height, events: &mut Vec<Event>) {
        let Some(rec) = self.claims.get(&id) else { return };
        let chain = rec.claim.chain_id;
        let (from, to, state_root, receipts_root) =
            (rec.claim.from, rec.claim.to, rec.claim.state_root, rec.claim.receipts_root);
        let pre = (rec.pre_state_root, rec.pre_receipts_root);
        self.end_claim(id, ClaimStatus::Finalized, height);
        self.refund(id);
        let Some(cs) = self.chains.get_mut(&chain) else { return };
        let anchor = Anchor {
            chain,
            index: cs.tree.len() as u64,
            to,
            claim: id,
            state_root,
            receipts_root,
            finalized_at: height,
        };
        cs.tree.push(anchor.leaf());
        cs.anchors.push_back(anchor);
        cs.head_duplicates.clear();
        // Records at or below the head can no longer be claimed.
        cs.records = cs.records.split_off(&Height(to.0.saturating_add(1)));
        let others: Vec<Digest> = cs.pending.values().copied().collect();
        events.push(Event::Finalized { claim: id, chain, to, state_root, at: height });
        // Resolve the other pending claims of the chain, in inclusion order.
        for p in others {
            let Some(r) = self.claims.get_mut(&p) else { continue };
            if r.status != ClaimStatus::Pending {
                continue; // Orphaned above as a descendant.
            }
            let c = &r.claim;
            let duplicate = c.from == from
                && c.to == to
                && c.state_root == state_root
                && c.receipts_root == receipts_root
                && (r.pre_state_root, r.pre_receipts_root) == pre;
            if duplicate {
                r.duplicate_of = Some(id);
                self.end_claim(p, ClaimStatus::Finalized, height);
                self.refund(p);
                if let Some(cs) = self.chains.get_mut(&chain) {
                    cs.head_duplicates.insert(p);
                }
                events.push(Event::Duplicate { claim: p, chain, to, anchored: id, at: height });
            } else if c.from < to
                || (c.from == to && (r.pre_state_root, r.pre_receipts_root) != (state_root, receipts_root))
            {
                self.end_claim(p, ClaimStatus::Orphaned, height);
                self.refund(p);
                events.push(Event::Orphaned { claim: p, reason: OrphanReason::SiblingFinalized { winner: id } });
                self.orphan_descendants(p, ClaimStatus::Orphaned, height, events);
            }
        }
    }

    /// The record of claim `id` (pending claims, and recently ended ones).
    pub fn claim(&self, id: &Digest) -> Option<&ClaimRecord> {
        self.claims.get(id)
    }

    /// Claims of `chain`: pending ones in inclusion order, then the ended ones still
    /// kept, most recent first.
    pub fn claims(&self, chain: ChainId) -> impl Iterator<Item = &ClaimRecord> + '_ {
        let cs = self.chains.get(&chain);
        let pending = cs.into_iter().flat_map(|c| c.pending.values());
        let ended = cs.into_iter().flat_map(|c| c.terminal.iter().rev());
        pending.chain(ended).filter_map(move |id| self.claims.get(id))
    }

    /// Ids of the pending claims of `chain`, in inclusion order.
    pub fn pending_claims(&self, chain: ChainId) -> impl Iterator<Item = Digest> + '_ {
        self.chains.get(&chain).into_iter().flat_map(|c| c.pending.values().copied())
    }

    /// Held claims (parent not known yet), in hold order.
    pub fn held_claims(&self) -> impl Iterator<Item = &HeldClaim> + '_ {
        self.held.values()
    }

    /// The held claim `id`, if it is held.
    pub fn held_claim(&self, id: &Digest) -> Option<&HeldClaim> {
        self.held.get(self.held_ids.get(id)?)
    }

    /// The chain's finalized head.
    pub fn finalized(&self, chain: ChainId) -> Option<&Anchor> {
        self.chains.get(&chain)?.head()
    }

    /// The last anchor of `chain` whose range ends at or before log height `height`;
    /// `None` also when that anchor was forgotten.
    pub fn finalized_at_or_before(&self, chain: ChainId, height: Height) -> Option<&Anchor> {
        let anchors = &self.chains.get(&chain)?.anchors;
        let n = anchors.partition_point(|a| a.to <= height);
        n.checked_sub(1).map(|i| &anchors[i])
    }

    /// The anchor of `chain` at position `index`, if kept.
    pub fn anchor(&self, chain: ChainId, index: u64) -> Option<&Anchor> {
        self.chains.get(&chain)?.anchor(index)
    }

    /// The anchor of `chain` at position `index` as bridge proofs read it (with its
    /// `usable_until`), if kept.
    pub fn anchor_root(&self, chain: ChainId, index: u64) -> Option<lamina_interfaces::FinalizedRoot> {
        let cs = self.chains.get(&chain)?;
        cs.anchor(index).map(|a| cs.finalized_root(a, self.params.anchor_window))
    }

    /// Every chain's kept anchors finalized before log height `before` (what a step at
    /// that height may prove bridge messages against, with their windows).
    pub fn anchor_view(&self, before: Height) -> AnchorList {
        let w = self.params.anchor_window;
        self.chains
            .values()
            .flat_map(|cs| {
                cs.anchors.iter().take_while(|a| a.finalized_at < before).map(move |a| cs.finalized_root(a, w))
            })
            .collect()
    }

    /// Lowest step height whose anchors the rules may still need: the oldest height
    /// with data that no anchor covers yet, over all chains (pending and future claims,
    /// and so every challenge, are about such heights), or the next height when there is
    /// none. A pure function of the state.
    pub fn anchor_floor(&self) -> Height {
        let next = Height(self.height().0.saturating_add(1));
        self.chains.values().filter_map(|cs| cs.records.keys().next().copied()).fold(next, Height::min)
    }

    /// Forgets the anchors no step at `below` or above can use (their chain's next
    /// anchor finalized more than the anchor window before `below`), with the tree
    /// nodes only their proofs needed. Each chain keeps at least its head. The state
    /// root does not change (it binds the anchor count and the tree root, not what is
    /// kept). Callers pass at most [`SettlementState::anchor_floor`] (the rules' own
    /// need), lowered to the oldest height a local reader will still execute; what is
    /// kept is then node-local, and only queries for forgotten anchors see it.
    pub fn forget_anchors(&mut self, below: Height) {
        let w = self.params.anchor_window;
        for cs in self.chains.values_mut() {
            let mut forgot = false;
            while cs.anchors.len() >= 2 && cs.anchors[1].finalized_at.0.saturating_add(w) < below.0 {
                cs.anchors.pop_front();
                forgot = true;
            }
            if forgot && let Some(front) = cs.anchors.front() {
                cs.tree.forget_below(front.index as usize);
            }
        }
    }

    /// Lowest step height whose bridge proofs this state can still judge: one past the
    /// last height at which a forgotten anchor was usable (0 if none was forgotten).
    pub fn serves_from(&self) -> Height {
        let w = self.params.anchor_window;
        self.chains
            .values()
            .filter_map(|cs| cs.anchors.front().filter(|a| a.index > 0))
            .map(|a| Height(a.finalized_at.0.saturating_add(w).saturating_add(1)))
            .fold(Height(0), Height::max)
    }

    /// Number of anchors kept, over all chains.
    pub fn anchors_kept(&self) -> usize {
        self.chains.values().map(|cs| cs.anchors.len()).sum()
    }

    /// Proof of [`SettlementState::finalized_at_or_before`] against
    /// [`SettlementState::anchors_root`].
    pub fn anchor_proof(&self, chain: ChainId, height: Height) -> Option<AnchorProof> {
        let index = self.finalized_at_or_before(chain, height)?.index;
        self.anchor_proof_at(chain, index)
    }

    /// Proof of the anchor at position `index` against [`SettlementState::anchors_root`].
    pub fn anchor_proof_at(&self, chain: ChainId, index: u64) -> Option<AnchorProof> {
        let cs = self.chains.get(&chain)?;
        let anchor = *cs.anchor(index)?;
        let proof = cs.tree.proof(usize::try_from(index).ok()?)?;
        Some(AnchorProof { anchor, proof })
    }

    /// Merkle root over the chain's anchors ([`crate::Anchor::leaf`], in order); the
    /// empty-tree root for a chain without anchors or an unknown chain.
    pub fn anchors_root(&self, chain: ChainId) -> Digest {
        self.chains.get(&chain).map_or_else(lamina_primitives::merkle::empty_root, |c| c.tree.root())
    }

    /// An account (all zero if never funded).
    pub fn account(&self, key: &PublicKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Total burned by slashing.
    pub fn burned(&self) -> u64 {
        self.burned
    }

    /// Free + bonded over all accounts, plus burned: always equals
    /// [`Params::total_supply`].
    pub fn total_supply(&self) -> u128 {
        let held: u128 = self.accounts.values().map(|a| u128::from(a.free) + u128::from(a.bonded)).sum();
        held + u128::from(self.burned)
    }

    /// Data roots proven badly encoded, ascending.
    pub fn bad_data_roots(&self) -> impl Iterator<Item = &Digest> + '_ {
        self.bad_roots.iter()
    }

    /// Last height processed by [`SettlementState::apply_entries`] (0 before any).
    pub fn height(&self) -> Height {
        self.height.unwrap_or_default()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A digest of the whole settlement state: last processed and observed heights,
    /// accounts (sorted by key), each chain's anchor count, anchors root, pending
    /// claims (id, status, deadline, in inclusion order) and the head's duplicates (ids,
    /// ascending), the held claims (id, transaction id, nonce, held-at height, in hold
    /// order), bad data roots and the burned total. O(state): for queries and tests, not for every height.
    pub fn state_root(&self) -> Digest {
        let mut h = STATE_ROOT.hasher();
        let opt = |x: Option<Height>| {
            x.map_or([0u8; 9], |v| {
                let mut b = [1u8; 9];
                b[1..].copy_from_slice(&v.0.to_le_bytes());
                b
            })
        };
        h.update(&opt(self.height));
        h.update(&opt(self.observed));
        let mut accounts: Vec<_> = self.accounts.iter().collect();
        accounts.sort_unstable_by_key(|(k, _)| **k);
        h.update(&(accounts.len() as u64).to_le_bytes());
        for (k, a) in accounts {
            h.update(&k.0);
            h.update(&a.free.to_le_bytes());
            h.update(&a.bonded.to_le_bytes());
            h.update(&a.next_nonce.to_le_bytes());
        }
        h.update(&(self.chains.len() as u64).to_le_bytes());
        for (id, cs) in &self.chains {
            h.update(&id.0.to_le_bytes());
            h.update(&(cs.tree.len() as u64).to_le_bytes());
            h.update(cs.tree.root().as_bytes());
            h.update(&(cs.pending.len() as u64).to_le_bytes());
            for cid in cs.pending.values() {
                h.update(cid.as_bytes());
                if let Some(r) = self.claims.get(cid) {
                    h.update(&[r.status.code()]);
                    h.update(&r.deadline.0.to_le_bytes());
                }
            }
            h.update(&(cs.head_duplicates.len() as u64).to_le_bytes());
            for d in &cs.head_duplicates {
                h.update(d.as_bytes());
            }
        }
        h.update(&(self.held.len() as u64).to_le_bytes());
        for held in self.held.values() {
            h.update(held.id.as_bytes());
            h.update(held.tx.0.as_bytes());
            h.update(&held.nonce.to_le_bytes());
            h.update(&held.held_at.0.to_le_bytes());
        }
        h.update(&(self.bad_roots.len() as u64).to_le_bytes());
        for r in &self.bad_roots {
            h.update(r.as_bytes());
        }
        h.update(&self.burned.to_le_bytes());
        Digest(*h.finalize().as_bytes())
    }
}

/// True when `r`'s pre-state is final: the chain's head ends at its `from` with its
/// pre-state roots, or, before any anchor, it starts at 0 from genesis.
fn pre_state_final(cs: &ChainState, r: &ClaimRecord) -> bool {
    match cs.head() {
        None => r.claim.parent.is_zero() && r.claim.from == Height(0),
        Some(a) => a.to == r.claim.from && a.state_root == r.pre_state_root && a.receipts_root == r.pre_receipts_root,
    }
}

/// The DA gate: the steps list exactly the recorded heights with data in `(from, to]`,
/// with their inputs digests, all available.
fn check_inputs(cs: &ChainState, c: &CheckpointClaim) -> Result<(), Error> {
    use std::ops::Bound::{Excluded, Included};
    let mut log = cs.records.range((Excluded(c.from), Included(c.to)));
    let mut steps = c.steps.iter();
    loop {
        match (log.next(), steps.next()) {
            (None, None) => return Ok(()),
            (Some((h, _)), None) => {
                return Err(Error::InputsMismatch { height: *h, reason: "the log has data here, the claim no step" });
            }
            (None, Some(s)) => {
                return Err(Error::InputsMismatch {
                    height: s.height,
                    reason: "the claim has a step, the log no data",
                });
            }
            (Some((h, r)), Some(s)) => {
                if *h != s.height {
                    let reason = if *h < s.height {
                        "the log has data here, the claim no step"
                    } else {
                        "the claim has a step, the log no data"
                    };
                    return Err(Error::InputsMismatch { height: (*h).min(s.height), reason });
                }
                if r.inputs != s.inputs {
                    return Err(Error::InputsMismatch { height: *h, reason: "inputs digest differs from the log's" });
                }
                if !r.available {
                    return Err(Error::Unavailable(*h));
                }
            }
        }
    }
}

/// Decides a challenge: `Ok` if fraud is proven, else why not.
fn decide(
    exec: &dyn StatelessExecutor,
    env: &StepEnv,
    chain: ChainId,
    pre_root: &Digest,
    witness: &WitnessRef,
    proof: &ProofInputs,
    expected: &StepOutcome,
) -> Result<(), String> {
    let bytes: &[u8] = match witness {
        WitnessRef::Inline(w) => w,
        WitnessRef::Da { hash, len, .. } => match &proof.witness {
            Err(e) => return Err(format!("witness unavailable: {e}")),
            Ok(w) if w.len() as u64 != *len || witness_hash(w) != *hash => {
                return Err("witness bytes do not match their reference".into());
            }
            Ok(w) => w,
        },
    };
    match exec.reexecute(chain, env, pre_root, bytes, &proof.txs) {
        Err(e) => Err(format!("re-execution failed: {e}")),
        Ok(out) if out == *expected => Err("re-execution agrees with the claim".into()),
        Ok(_) => Ok(()),
    }
}
