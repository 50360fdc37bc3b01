//! The protocol state machine. See the crate documentation for the protocol itself.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use lamina_primitives::sig::SignedDigest;
use lamina_primitives::{
    AvailabilityCertificate, Block, BlockHeader, CertError, DaCommittee, Digest, FinalizedBlock, Height, PublicKey,
    QuorumCertificate, Signature, View,
};

use crate::action::{Action, Evidence, Fault, FaultKind, ProposalError};
use crate::config::Config;
use crate::crypto::{Signer, Verifier};
use crate::epoch::{epoch_of, first_view};
use crate::error::{ConfigError, Error};
use crate::messages::{
    Certificate, MAX_PROPOSAL_CERTIFICATES, Message, Proposal, SyncRequest, SyncResponse, Vote, VoteKind, vote_digest,
};
use crate::wal::{Recovered, WalRecord};

/// After this many faults, a peer's certificates, batch announcements and sync
/// traffic are ignored (its votes and proposals are still processed: they are bounded
/// per view by construction, and the peer's vote may be needed for liveness).
const PEER_FAULT_LIMIT: u64 = 64;
/// Size of the cache of availability certificates already verified.
const VERIFIED_CACHE: usize = 1 << 16;

/// Counters of what the core did, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Proposals this validator made.
    pub proposals_made: u64,
    /// Proposals received and accepted for checking.
    pub proposals_received: u64,
    /// Notarize votes sent (including the leader's own).
    pub notarize_sent: u64,
    /// Nullify votes sent (first time per view).
    pub nullify_sent: u64,
    /// Finalize votes sent.
    pub finalize_sent: u64,
    /// Views left because of a timeout.
    pub timeouts: u64,
    /// Certificates formed from votes here.
    pub certificates_formed: u64,
    /// Views entered.
    pub views_entered: u64,
    /// Blocks finalized (output).
    pub blocks_finalized: u64,
    /// Batches finalized (output).
    pub batches_finalized: u64,
    /// Sync requests sent.
    pub sync_requests: u64,
    /// Sync requests answered.
    pub sync_served: u64,
    /// Faults reported.
    pub faults: u64,
}

/// The last block output: the block every new proposal must (transitively) extend.
#[derive(Clone, Debug)]
struct Tip {
    height: Height,
    view: View,
    digest: Digest,
    timestamp_ms: u64,
    /// Finalization certificate (absent for the genesis).
    cert: Option<QuorumCertificate>,
}

impl Tip {
    fn genesis() -> Self {
        Tip { height: Height(0), view: View(0), digest: Digest::ZERO, timestamp_ms: 0, cert: None }
    }

    fn certificate(&self) -> Option<Certificate> {
        self.cert.as_ref().map(|qc| Certificate {
            kind: VoteKind::Finalize,
            view: self.view,
            digest: self.digest,
            qc: qc.clone(),
        })
    }
}

/// This validator's verdict on the proposal of a view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Verdict {
    #[default]
    Unchecked,
    Voted,
    Rejected,
}

/// Everything known about one view above the finalized tip.
#[derive(Clone, Debug, Default)]
struct Round {
    /// The leader's proposal (signature checked), first one wins.
    proposal: Option<Proposal>,
    verdict: Verdict,
    notarize: BTreeMap<u32, (Digest, Signature)>,
    nullify: BTreeMap<u32, Signature>,
    finalize: BTreeMap<u32, (Digest, Signature)>,
    notarization: Option<(Digest, QuorumCertificate)>,
    nullification: Option<QuorumCertificate>,
    finalization: Option<(Digest, QuorumCertificate)>,
    /// Validators already caught equivocating here (per vote kind): no more checks.
    equivocators: BTreeSet<(VoteKind, u32)>,
    my_proposal: Option<Block>,
    my_notarize: Option<Digest>,
    my_nullify: bool,
    my_finalize: Option<Digest>,
}

impl Round {
    fn votes(&self, kind: VoteKind) -> Vec<(u32, Digest, Signature)> {
        match kind {
            VoteKind::Notarize => self.notarize.iter().map(|(s, (d, sig))| (*s, *d, *sig)).collect(),
            VoteKind::Nullify => self.nullify.iter().map(|(s, sig)| (*s, Digest::ZERO, *sig)).collect(),
            VoteKind::Finalize => self.finalize.iter().map(|(s, (d, sig))| (*s, *d, *sig)).collect(),
        }
    }

    fn existing(&self, kind: VoteKind, signer: u32) -> Option<(Digest, Signature)> {
        match kind {
            VoteKind::Notarize => self.notarize.get(&signer).copied(),
            VoteKind::Nullify => self.nullify.get(&signer).map(|s| (Digest::ZERO, *s)),
            VoteKind::Finalize => self.finalize.get(&signer).copied(),
        }
    }

    fn has_certificate(&self, kind: VoteKind) -> bool {
        match kind {
            VoteKind::Notarize => self.notarization.is_some(),
            VoteKind::Nullify => self.nullification.is_some(),
            VoteKind::Finalize => self.finalization.is_some(),
        }
    }

    /// The block this view certified as notarized (a finalization implies it).
    fn notarized_digest(&self) -> Option<Digest> {
        self.notarization.as_ref().map(|(d, _)| *d).or(self.finalization.as_ref().map(|(d, _)| *d))
    }
}

/// Batches waiting to be ordered, in arrival order, by attestation digest.
#[derive(Clone, Debug, Default)]
struct Pending {
    order: BTreeMap<u64, (Digest, AvailabilityCertificate, usize)>,
    by_attestation: BTreeMap<Digest, u64>,
    per_origin: BTreeMap<usize, usize>,
    next: u64,
}

impl Pending {
    fn contains(&self, a: &Digest) -> bool {
        self.by_attestation.contains_key(a)
    }

    fn add(&mut self, a: Digest, cert: AvailabilityCertificate, origin: usize, limit: usize) -> bool {
        if self.contains(&a) {
            return true;
        }
        let count = self.per_origin.entry(origin).or_default();
        if *count >= limit {
            return false;
        }
        *count += 1;
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, (a, cert, origin));
        self.by_attestation.insert(a, seq);
        true
    }

    fn remove(&mut self, a: &Digest) {
        if let Some(seq) = self.by_attestation.remove(a)
            && let Some((_, _, origin)) = self.order.remove(&seq)
            && let Some(c) = self.per_origin.get_mut(&origin)
        {
            *c = c.saturating_sub(1);
        }
    }

    /// The oldest `max` pending batches that `excluded` does not reject.
    fn select(&self, max: usize, excluded: impl Fn(&Digest) -> bool) -> Vec<AvailabilityCertificate> {
        self.order.values().filter(|(a, _, _)| !excluded(a)).take(max).map(|(_, c, _)| c.clone()).collect()
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

/// Attestation digests of batches finalized in the last `window` heights.
#[derive(Clone, Debug, Default)]
struct Recent {
    by_height: VecDeque<(Height, Vec<Digest>)>,
    set: BTreeSet<Digest>,
}

impl Recent {
    fn add(&mut self, height: Height, digests: Vec<Digest>, window: u64) {
        for d in &digests {
            self.set.insert(*d);
        }
        self.by_height.push_back((height, digests));
        while let Some((h, _)) = self.by_height.front() {
            if h.0 + window > height.0 {
                break;
            }
            if let Some((_, old)) = self.by_height.pop_front() {
                for d in old {
                    self.set.remove(&d);
                }
            }
        }
    }
}

/// Outcome of checking a proposal.
enum Check {
    Valid,
    /// A dependency (parent body, a certificate) is missing: fetch, then retry.
    Missing,
    Invalid(ProposalError),
}

/// A consensus validator's protocol state: inputs in, [`Action`]s out. Pure: no I/O,
/// clock or randomness; `now` is a monotonic time supplied by the driver.
#[derive(Clone)]
pub struct Core {
    cfg: Arc<Config>,
    signer: Arc<dyn Signer>,
    verifier: Arc<dyn Verifier>,
    me: usize,
    my_key: PublicKey,
    wall_offset_ms: i128,
    view: View,
    view_entered: Duration,
    /// Leader: until then, propose only if a batch is waiting (the idle heartbeat).
    propose_at: Option<Duration>,
    /// Leader: no proposal before then (`min_block_interval` after entering the view).
    hold_until: Option<Duration>,
    /// The current view started with nothing to order (its timeouts include the idle
    /// heartbeat `empty_block_delay`).
    idle_view: bool,
    leader_deadline: Option<Duration>,
    notarization_deadline: Option<Duration>,
    retry_at: Option<Duration>,
    commit_retry_at: Option<Duration>,
    rounds: BTreeMap<View, Round>,
    blocks: BTreeMap<Digest, Block>,
    tip: Tip,
    recent: Recent,
    pending: Pending,
    verified_batches: HashSet<Digest>,
    verified_order: VecDeque<Digest>,
    sync_outstanding: Option<(usize, Duration)>,
    sync_next_peer: usize,
    helped: Vec<(View, Duration)>,
    served: Vec<Option<Duration>>,
    peer_faults: Vec<u64>,
    stats: Stats,
    out: Vec<Action>,
    /// The epoch's last height, once the driver knows it ([`Core::end_epoch_at`]).
    last_height: Option<Height>,
    /// No block above this height is output ([`Core::set_horizon`]).
    horizon: Option<Height>,
    /// Governance's limit on the batches one block orders ([`Core::set_batch_limit`]).
    batch_limit: Option<usize>,
    /// The epoch's last height was output: the core does nothing more.
    done: bool,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("me", &self.me)
            .field("view", &self.view)
            .field("tip", &(self.tip.height, self.tip.view))
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Starts (or restarts) a validator. `now` is the driver's monotonic clock and
    /// `wall_clock_ms` the wall clock at that instant (used only for block timestamps).
    /// Returns the core and its first actions (re-sending a proposal interrupted by a
    /// crash, asking peers for what was missed).
    pub fn new(
        config: Config,
        signer: Arc<dyn Signer>,
        verifier: Arc<dyn Verifier>,
        mut recovered: Recovered,
        now: Duration,
        wall_clock_ms: u64,
    ) -> Result<(Self, Vec<Action>), Error> {
        config.validate()?;
        let my_key = signer.public_key();
        let me = config.validators.index_of(&my_key).ok_or(ConfigError::NotAValidator)?;
        let n = config.n();
        let (last_height, horizon) = (config.last_height, config.horizon);
        let mut core = Core {
            cfg: Arc::new(config),
            signer,
            verifier,
            me,
            my_key,
            wall_offset_ms: i128::from(wall_clock_ms) - now.as_millis() as i128,
            view: View(0),
            view_entered: now,
            propose_at: None,
            hold_until: None,
            idle_view: false,
            leader_deadline: None,
            notarization_deadline: None,
            retry_at: None,
            commit_retry_at: None,
            rounds: BTreeMap::new(),
            blocks: BTreeMap::new(),
            tip: Tip::genesis(),
            recent: Recent::default(),
            pending: Pending::default(),
            verified_batches: HashSet::new(),
            verified_order: VecDeque::new(),
            sync_outstanding: None,
            sync_next_peer: (me + 1) % n,
            helped: vec![(View(0), Duration::ZERO); n],
            served: vec![None; n],
            peer_faults: vec![0; n],
            stats: Stats::default(),
            out: Vec::new(),
            last_height,
            horizon,
            batch_limit: None,
            done: false,
        };
        let batches = std::mem::take(&mut recovered.batches);
        core.restore(recovered)?;
        // An epoch after the first starts from the previous epoch's last block; a tip of
        // a later epoch means the driver picked the wrong core.
        let epoch = core.cfg.epoch;
        if (epoch > 0 && core.tip.cert.is_none()) || epoch_of(core.tip.view) > epoch {
            return Err(Error::WrongEpochTip { epoch, tip: core.tip.height });
        }
        if let Some(last) = last_height {
            if core.tip.height > last {
                return Err(Error::EpochEnd { last, tip: core.tip.height });
            }
            if core.tip.height == last {
                core.finish();
                return Ok((core, Vec::new()));
            }
        }
        for cert in batches {
            let a = cert.commitment.attestation_digest();
            if core.recent.set.contains(&a) || core.verify_batch(&cert).is_err() {
                continue;
            }
            if core.pending.add(a, cert.clone(), me, core.cfg.max_pending_batches_per_validator) {
                core.out.push(Action::Broadcast(Message::Batch(cert)));
            }
        }
        let start = View(core.tip.view.0 + 1).max(core.view).max(first_view(core.cfg.epoch));
        core.view = View(start.0 - 1);
        core.enter_view(now, start);
        // A proposal signed before the crash is re-sent as is (never a different one).
        if let Some(block) = core.rounds.get(&start).and_then(|r| r.my_proposal.clone()) {
            let proposal = core.proposal_message(block);
            core.out.push(Action::Broadcast(Message::Propose(proposal)));
        }
        if core.rounds.get(&start).is_some_and(|r| r.my_nullify) {
            core.retry_at = Some(now);
        }
        if n > 1 {
            core.request_sync(now, None);
        }
        core.advance(now);
        let actions = std::mem::take(&mut core.out);
        Ok((core, actions))
    }

    fn restore(&mut self, recovered: Recovered) -> Result<(), Error> {
        let window = self.cfg.dedup_window;
        for (i, fb) in recovered.finalized.iter().enumerate() {
            if i > 0 {
                let prev = &recovered.finalized[i - 1];
                if fb.height() != prev.height().next() || fb.block.header.parent != prev.block.digest() {
                    return Err(Error::BrokenRecoveredLog { height: fb.height() });
                }
            }
            let digests = fb.block.batches.iter().map(|c| c.commitment.attestation_digest()).collect();
            self.recent.add(fb.height(), digests, window);
        }
        if let Some(last) = recovered.finalized.last() {
            let h = &last.block.header;
            self.tip = Tip {
                height: h.height,
                view: h.view,
                digest: h.digest(),
                timestamp_ms: h.timestamp_ms,
                cert: Some(last.certificate.clone()),
            };
        }
        let tip_view = self.tip.view;
        let mut max_view = View(0);
        for rec in recovered.wal {
            let v = rec.view();
            // Records of other epochs belong to other cores.
            if v <= tip_view || epoch_of(v) != self.cfg.epoch {
                continue;
            }
            let r = self.rounds.entry(v).or_default();
            match rec {
                WalRecord::Proposed(block) => {
                    let d = block.digest();
                    if r.my_notarize.is_some_and(|x| x != d) {
                        return Err(Error::ConflictingWal { view: v });
                    }
                    r.my_notarize = Some(d);
                    r.my_proposal = Some(block.clone());
                    r.verdict = Verdict::Voted;
                    self.blocks.insert(d, block);
                    max_view = max_view.max(v);
                }
                WalRecord::Notarized(_, digest) => {
                    if r.my_notarize.is_some_and(|x| x != digest) {
                        return Err(Error::ConflictingWal { view: v });
                    }
                    r.my_notarize = Some(digest);
                    r.verdict = Verdict::Voted;
                    max_view = max_view.max(v);
                }
                WalRecord::Nullified(_) => {
                    r.my_nullify = true;
                    max_view = max_view.max(v);
                }
                WalRecord::Finalized(_, digest) => {
                    if r.my_finalize.is_some_and(|x| x != digest) {
                        return Err(Error::ConflictingWal { view: v });
                    }
                    r.my_finalize = Some(digest);
                    // A finalize vote means the view was notarized: resume after it.
                    max_view = max_view.max(v.next());
                }
            }
        }
        // Never re-enter a view below one this validator already acted in.
        self.view = max_view;
        Ok(())
    }

    // ----------------------------------------------------------------- accessors

    /// The current view.
    pub fn view(&self) -> View {
        self.view
    }

    /// The epoch this core runs ([`Config::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.cfg.epoch
    }

    /// The horizon ([`Core::set_horizon`]): no block above it is output.
    pub fn horizon(&self) -> Option<Height> {
        self.horizon
    }

    /// The epoch's last height, if the driver named it ([`Core::end_epoch_at`]).
    pub fn last_height(&self) -> Option<Height> {
        self.last_height
    }

    /// True once the epoch's last height was output: the core then ignores every input
    /// and the next epoch's core carries on from that block.
    pub fn epoch_done(&self) -> bool {
        self.done
    }

    /// Names the epoch's last height (the boundary, from the schedule governance
    /// decided). Blocks above it may only be empty and are never output; once it is
    /// output the core is done. Fails if the core already output a block above it, or
    /// was told a different last height.
    pub fn end_epoch_at(&mut self, now: Duration, last: Height) -> Result<Vec<Action>, Error> {
        if self.tip.height > last || self.last_height.is_some_and(|l| l != last) {
            return Err(Error::EpochEnd { last, tip: self.tip.height });
        }
        self.last_height = Some(last);
        if self.tip.height == last {
            self.finish();
        }
        self.advance(now);
        Ok(std::mem::take(&mut self.out))
    }

    /// Outputs no block above `through` (`None`: no limit) until told otherwise. A driver
    /// whose schedule is decided on the log sets it to the height through which it knows
    /// every boundary, so that it never outputs a block of the next epoch under this
    /// committee; consensus itself goes on, and held blocks are output when the horizon
    /// moves.
    pub fn set_horizon(&mut self, now: Duration, through: Option<Height>) -> Vec<Action> {
        self.horizon = through;
        self.advance(now);
        std::mem::take(&mut self.out)
    }

    /// The network's limit on the batches one block orders, as governance set it
    /// (`set-param max_batches_per_block`; `None`: none set): this validator's
    /// proposals order at most the smaller of it and
    /// [`crate::Config::propose_batches`]. A proposer policy, not a validity rule: the
    /// driver learns it from its governance follower, which may lag behind another
    /// validator's by a few heights, so proposals are judged by
    /// [`crate::Config::max_batches_per_block`] alone.
    pub fn set_batch_limit(&mut self, limit: Option<usize>) {
        self.batch_limit = limit.map(|l| l.max(1));
    }

    /// Most batches this validator's next proposal orders.
    fn propose_limit(&self) -> usize {
        let own = self.cfg.propose_batches.min(self.cfg.max_batches_per_block);
        self.batch_limit.map_or(own, |l| l.min(own))
    }

    /// The highest height this core may output now.
    fn output_limit(&self) -> Height {
        let limit = self.last_height.unwrap_or(Height(u64::MAX));
        self.horizon.map_or(limit, |h| h.min(limit))
    }

    /// The epoch ended: stop every timer, keep nothing to do.
    fn finish(&mut self) {
        self.done = true;
        self.propose_at = None;
        self.hold_until = None;
        self.leader_deadline = None;
        self.notarization_deadline = None;
        self.retry_at = None;
        self.commit_retry_at = None;
        self.sync_outstanding = None;
        self.rounds.clear();
        self.blocks.clear();
    }

    /// Batches that wait to be ordered, oldest first: the next epoch's core takes them
    /// over when this one is done.
    pub fn pending(&self) -> Vec<AvailabilityCertificate> {
        self.pending.select(usize::MAX, |_| false)
    }

    /// True if `view` is one of this core's epoch.
    fn in_epoch(&self, view: View) -> bool {
        epoch_of(view) == self.cfg.epoch
    }

    /// Height of the last block output.
    pub fn finalized_height(&self) -> Height {
        self.tip.height
    }

    /// Header digest of the last block output ([`Digest::ZERO`] before the first).
    pub fn finalized_digest(&self) -> Digest {
        self.tip.digest
    }

    /// View of the last block output.
    pub fn finalized_view(&self) -> View {
        self.tip.view
    }

    /// This validator's committee index.
    pub fn index(&self) -> usize {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Batches waiting to be ordered.
    pub fn pending_batches(&self) -> usize {
        self.pending.len()
    }

    /// Whether the batch certified under `attestation` waits to be ordered (a submitted
    /// or recovered batch that is not pending was refused, or was ordered already).
    pub fn is_pending(&self, attestation: &Digest) -> bool {
        self.pending.contains(attestation)
    }

    /// True while this validator knows of a finalized block it has not output yet (it
    /// is catching up: fetching blocks or certificates).
    ///
    /// Finalized blocks it holds on purpose (above its horizon or its epoch's last
    /// height) do not count.
    pub fn is_behind(&self) -> bool {
        let limit = self.output_limit();
        self.rounds.range(self.tip.view.next()..).any(|(_, r)| {
            r.finalization.as_ref().is_some_and(|(d, _)| self.blocks.get(d).is_none_or(|b| b.header.height <= limit))
        })
    }

    /// Faults reported per peer (by committee index).
    pub fn peer_faults(&self) -> &[u64] {
        &self.peer_faults
    }

    /// The earliest time at which [`Core::handle_timeout`] has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        [
            self.propose_at,
            self.hold_until,
            self.leader_deadline,
            self.notarization_deadline,
            self.retry_at,
            self.commit_retry_at,
            self.sync_outstanding.map(|(_, d)| d),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----------------------------------------------------------------- inputs

    /// A message from validator `from` (authenticated by the transport).
    pub fn handle_message(&mut self, now: Duration, from: usize, message: Message) -> Vec<Action> {
        if from >= self.cfg.n() || from == self.me || self.done {
            return Vec::new();
        }
        let distrusted = self.peer_faults[from] >= PEER_FAULT_LIMIT;
        match message {
            Message::Propose(p) => self.on_proposal(now, from, p),
            Message::Vote(v) => self.on_vote(now, from, v),
            Message::Certificate(c) if !distrusted => {
                self.accept_certificate(now, Some(from), c, false);
            }
            Message::Batch(cert) if !distrusted => self.on_batch(now, from, cert),
            Message::SyncRequest(req) if !distrusted => self.on_sync_request(now, from, req),
            Message::SyncResponse(resp) if !distrusted => self.on_sync_response(now, from, resp),
            Message::Finalized(blocks) => self.on_finalized_blocks(now, from, blocks),
            _ => {}
        }
        self.advance(now);
        std::mem::take(&mut self.out)
    }

    /// Timers: call when `now` reaches [`Core::next_deadline`] (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Action> {
        if self.done {
            return Vec::new();
        }
        let due = |t: Option<Duration>| t.is_some_and(|t| t <= now);
        if due(self.leader_deadline) {
            self.leader_deadline = None;
            let voted = self.rounds.get(&self.view).is_some_and(|r| r.my_notarize.is_some());
            if !voted {
                self.stats.timeouts += 1;
                self.nullify_current(now);
            }
        }
        if due(self.notarization_deadline) {
            self.notarization_deadline = None;
            if !self.rounds.get(&self.view).is_some_and(|r| r.my_nullify) {
                self.stats.timeouts += 1;
            }
            self.nullify_current(now);
        }
        if due(self.retry_at) {
            self.retry_at = Some(now + self.cfg.retry_interval);
            self.rebroadcast_current(now);
        }
        if due(self.sync_outstanding.map(|(_, d)| d)) {
            self.sync_outstanding = None;
        }
        if due(self.commit_retry_at) {
            self.commit_retry_at = None;
            self.retry_commit(now);
        }
        if due(self.propose_at) {
            // The wait for a batch is over: from now on the leader proposes (possibly an
            // empty block) as soon as it can.
            self.propose_at = None;
        }
        if due(self.hold_until) {
            self.hold_until = None;
        }
        self.advance(now);
        std::mem::take(&mut self.out)
    }

    /// A batch this validator had certified by DA: verified, queued for ordering and
    /// announced to the other validators so that any leader can order it.
    pub fn submit_batch(&mut self, now: Duration, cert: AvailabilityCertificate) -> Result<Vec<Action>, Error> {
        if self.done {
            return Err(Error::EpochEnded(self.cfg.epoch));
        }
        let attestation = cert.commitment.attestation_digest();
        if let Err(source) = self.verify_batch(&cert) {
            return Err(Error::InvalidAvailability { attestation, source });
        }
        if !self.recent.set.contains(&attestation) {
            if !self.pending.add(attestation, cert.clone(), self.me, self.cfg.max_pending_batches_per_validator) {
                return Err(Error::PendingFull(self.pending.len()));
            }
            self.out.push(Action::Broadcast(Message::Batch(cert)));
            self.work_arrived(now);
        }
        self.advance(now);
        Ok(std::mem::take(&mut self.out))
    }

    // ----------------------------------------------------------------- views

    fn enter_view(&mut self, now: Duration, v: View) {
        if v <= self.view || !self.in_epoch(v) {
            // Past the epoch's last view the core stays put: the next view is another
            // epoch's (about 6.8 years of views at the fastest rate).
            return;
        }
        self.view = v;
        self.view_entered = now;
        self.stats.views_entered += 1;
        // With nothing to order, the leader waits up to `empty_block_delay` before it
        // proposes an empty block (the idle heartbeat): every validator gives the view
        // that much longer before timing out, until a batch arrives.
        self.idle_view = !self.has_work();
        let grace = if self.idle_view { self.cfg.empty_block_delay } else { Duration::ZERO };
        self.leader_deadline = Some(now + grace + self.cfg.leader_timeout);
        self.notarization_deadline = Some(now + grace + self.cfg.notarization_timeout);
        self.retry_at = None;
        let leader = self.cfg.leader(v) == self.me;
        self.propose_at = leader.then(|| now + self.cfg.empty_block_delay);
        self.hold_until = (leader && !self.cfg.min_block_interval.is_zero()).then(|| now + self.cfg.min_block_interval);
    }

    fn nullify_current(&mut self, now: Duration) {
        let v = self.view;
        let r = self.rounds.entry(v).or_default();
        if r.my_finalize.is_some() {
            return;
        }
        if !r.my_nullify {
            r.my_nullify = true;
            let signature = self.signer.sign(&vote_digest(&self.cfg.network, VoteKind::Nullify, v, &Digest::ZERO));
            let vote =
                Vote { kind: VoteKind::Nullify, view: v, digest: Digest::ZERO, signer: self.me as u32, signature };
            self.out.push(Action::Persist(WalRecord::Nullified(v)));
            self.out.push(Action::Broadcast(Message::Vote(vote.clone())));
            self.stats.nullify_sent += 1;
            self.add_vote(now, vote);
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(now + self.cfg.retry_interval);
        }
    }

    /// Retry timer: re-send my nullify vote and the certificate that brought me into
    /// this view, and ask a peer for anything I may have missed.
    fn rebroadcast_current(&mut self, now: Duration) {
        let v = self.view;
        if self.rounds.get(&v).is_some_and(|r| r.my_nullify) {
            let signature = self.signer.sign(&vote_digest(&self.cfg.network, VoteKind::Nullify, v, &Digest::ZERO));
            let vote =
                Vote { kind: VoteKind::Nullify, view: v, digest: Digest::ZERO, signer: self.me as u32, signature };
            self.out.push(Action::Broadcast(Message::Vote(vote)));
        }
        if let Some(c) = self.entry_certificate() {
            self.out.push(Action::Broadcast(Message::Certificate(c)));
        }
        self.request_sync(now, None);
    }

    /// The certificate that ends the view before the current one.
    fn entry_certificate(&self) -> Option<Certificate> {
        let prev = View(self.view.0.saturating_sub(1));
        if prev <= self.tip.view {
            return self.tip.certificate();
        }
        self.view_certificate(prev)
    }

    /// A certificate that ends view `v` (notarization, else nullification, else finalization).
    fn view_certificate(&self, v: View) -> Option<Certificate> {
        let r = self.rounds.get(&v)?;
        if let Some((d, qc)) = &r.notarization {
            return Some(Certificate { kind: VoteKind::Notarize, view: v, digest: *d, qc: qc.clone() });
        }
        if let Some(qc) = &r.nullification {
            return Some(Certificate { kind: VoteKind::Nullify, view: v, digest: Digest::ZERO, qc: qc.clone() });
        }
        r.finalization.as_ref().map(|(d, qc)| Certificate {
            kind: VoteKind::Finalize,
            view: v,
            digest: *d,
            qc: qc.clone(),
        })
    }

    // ----------------------------------------------------------------- votes

    fn on_vote(&mut self, now: Duration, from: usize, vote: Vote) {
        if !self.in_epoch(vote.view) {
            // Another epoch's: its core (the driver routes by view) handles it.
            return;
        }
        if vote.signer as usize != from {
            self.fault(from, FaultKind::Impersonation { claimed: vote.signer });
            return;
        }
        if vote.kind == VoteKind::Nullify && vote.digest != Digest::ZERO {
            self.fault(from, FaultKind::Malformed { what: "nullify vote with a digest" });
            return;
        }
        let v = vote.view;
        if v <= self.tip.view {
            if vote.kind != VoteKind::Finalize {
                self.help(now, from, v);
            }
            return;
        }
        if v.0 > self.view.0 + self.cfg.max_views_ahead {
            return;
        }
        if v < self.view && vote.kind != VoteKind::Finalize {
            self.help(now, from, v);
        }
        let r = self.rounds.entry(v).or_default();
        if r.equivocators.contains(&(vote.kind, vote.signer)) {
            return;
        }
        if let Some((d, sig)) = r.existing(vote.kind, vote.signer) {
            if d == vote.digest {
                return; // duplicate
            }
            if self.check_signature(&vote) {
                let evidence = Evidence {
                    kind: vote.kind,
                    view: v,
                    signer: vote.signer,
                    first: (d, sig),
                    second: (vote.digest, vote.signature),
                };
                if let Some(r) = self.rounds.get_mut(&v) {
                    r.equivocators.insert((vote.kind, vote.signer));
                }
                self.fault(from, FaultKind::Equivocation(evidence));
            } else {
                self.fault(from, FaultKind::InvalidSignature { what: "vote" });
            }
            return;
        }
        if r.has_certificate(vote.kind) && vote.kind != VoteKind::Finalize {
            return; // nothing left to learn from it
        }
        if !self.check_signature(&vote) {
            self.fault(from, FaultKind::InvalidSignature { what: "vote" });
            return;
        }
        self.add_vote(now, vote);
    }

    fn check_signature(&self, vote: &Vote) -> bool {
        let Some(pk) = self.cfg.validators.member(vote.signer as usize) else { return false };
        let message = vote_digest(&self.cfg.network, vote.kind, vote.view, &vote.digest);
        self.verifier.verify_all(&[SignedDigest { public_key: *pk, message, signature: vote.signature }])
    }

    /// Records a verified vote and forms a certificate when it completes a quorum.
    fn add_vote(&mut self, now: Duration, vote: Vote) {
        let quorum = self.cfg.quorum();
        let n = self.cfg.n();
        let network = self.cfg.network;
        let r = self.rounds.entry(vote.view).or_default();
        match vote.kind {
            VoteKind::Notarize => {
                r.notarize.entry(vote.signer).or_insert((vote.digest, vote.signature));
            }
            VoteKind::Nullify => {
                r.nullify.entry(vote.signer).or_insert(vote.signature);
            }
            VoteKind::Finalize => {
                r.finalize.entry(vote.signer).or_insert((vote.digest, vote.signature));
            }
        }
        if r.has_certificate(vote.kind) {
            return;
        }
        let votes: Vec<(usize, Signature)> = r
            .votes(vote.kind)
            .into_iter()
            .filter(|(_, d, _)| *d == vote.digest)
            .map(|(s, _, sig)| (s as usize, sig))
            .collect();
        if votes.len() < quorum {
            return;
        }
        let qc = QuorumCertificate::from_votes(vote_digest(&network, vote.kind, vote.view, &vote.digest), n, &votes);
        let cert = Certificate { kind: vote.kind, view: vote.view, digest: vote.digest, qc };
        self.stats.certificates_formed += 1;
        self.out.push(Action::Broadcast(Message::Certificate(cert.clone())));
        self.accept_certificate(now, None, cert, true);
    }

    /// A laggard sent a vote for an old view: send it the certificates it needs to
    /// catch up (rate-limited per peer).
    fn help(&mut self, now: Duration, peer: usize, v: View) {
        let (last_view, last_time) = self.helped[peer];
        if v <= last_view && now < last_time + self.cfg.retry_interval {
            return;
        }
        self.helped[peer] = (v.max(last_view), now);
        let mut certs = Vec::new();
        if v > self.tip.view
            && let Some(c) = self.view_certificate(v)
        {
            certs.push(c);
        }
        if let Some(c) = self.entry_certificate()
            && !certs.contains(&c)
        {
            certs.push(c);
        }
        if let Some(c) = self.latest_finalization()
            && !certs.contains(&c)
        {
            certs.push(c);
        }
        for c in certs {
            self.out.push(Action::Send { to: peer, message: Message::Certificate(c) });
        }
    }

    fn latest_finalization(&self) -> Option<Certificate> {
        self.rounds
            .iter()
            .rev()
            .find_map(|(v, r)| {
                r.finalization.as_ref().map(|(d, qc)| Certificate {
                    kind: VoteKind::Finalize,
                    view: *v,
                    digest: *d,
                    qc: qc.clone(),
                })
            })
            .or_else(|| self.tip.certificate())
    }

    // ----------------------------------------------------------------- certificates

    /// Verifies (unless formed here) and records a certificate; returns whether it was new.
    fn accept_certificate(&mut self, now: Duration, from: Option<usize>, cert: Certificate, verified: bool) -> bool {
        let v = cert.view;
        if v <= self.tip.view || !self.in_epoch(v) {
            return false;
        }
        if self.rounds.get(&v).is_some_and(|r| r.has_certificate(cert.kind)) {
            return false;
        }
        if cert.kind == VoteKind::Nullify && cert.digest != Digest::ZERO {
            if let Some(p) = from {
                self.fault(p, FaultKind::Malformed { what: "nullification with a digest" });
            }
            return false;
        }
        if !verified {
            let expected = vote_digest(&self.cfg.network, cert.kind, v, &cert.digest);
            if let Err(reason) = self.verify_qc(&cert.qc, &expected) {
                if let Some(p) = from {
                    self.fault(p, FaultKind::InvalidCertificate { kind: cert.kind, view: v, reason });
                }
                return false;
            }
        }
        let r = self.rounds.entry(v).or_default();
        match cert.kind {
            VoteKind::Notarize => r.notarization = Some((cert.digest, cert.qc)),
            VoteKind::Nullify => r.nullification = Some(cert.qc),
            VoteKind::Finalize => r.finalization = Some((cert.digest, cert.qc)),
        }
        if cert.kind == VoteKind::Notarize {
            self.maybe_finalize_vote(now, v, cert.digest);
        }
        if v >= self.view {
            self.enter_view(now, v.next());
        }
        true
    }

    fn verify_qc(&self, qc: &QuorumCertificate, expected: &Digest) -> Result<(), CertError> {
        let signers = qc.check_shape(&self.cfg.validators, expected, self.cfg.quorum())?;
        let items: Vec<SignedDigest> = signers
            .iter()
            .zip(&qc.signatures)
            .map(|(&i, s)| SignedDigest {
                public_key: self.cfg.validators.members[i],
                message: *expected,
                signature: *s,
            })
            .collect();
        if self.verifier.verify_all(&items) { Ok(()) } else { Err(CertError::BadSignature) }
    }

    /// Simplex: on seeing a notarization of `(v, d)`, a validator that did not nullify
    /// `v` sends a finalize vote for it.
    fn maybe_finalize_vote(&mut self, now: Duration, v: View, d: Digest) {
        let Some(r) = self.rounds.get(&v) else { return };
        if r.my_nullify || r.my_finalize.is_some() {
            return;
        }
        self.send_finalize(now, v, d);
    }

    fn send_finalize(&mut self, now: Duration, v: View, d: Digest) {
        let r = self.rounds.entry(v).or_default();
        if r.my_finalize.is_some() {
            return;
        }
        r.my_finalize = Some(d);
        let signature = self.signer.sign(&vote_digest(&self.cfg.network, VoteKind::Finalize, v, &d));
        let vote = Vote { kind: VoteKind::Finalize, view: v, digest: d, signer: self.me as u32, signature };
        self.out.push(Action::Persist(WalRecord::Finalized(v, d)));
        self.out.push(Action::Broadcast(Message::Vote(vote.clone())));
        self.stats.finalize_sent += 1;
        self.add_vote(now, vote);
    }

    // ----------------------------------------------------------------- proposals

    fn proposal_message(&self, block: Block) -> Proposal {
        let v = block.header.view;
        let d = block.digest();
        let signature = self.signer.sign(&vote_digest(&self.cfg.network, VoteKind::Notarize, v, &d));
        let mut certificates = Vec::new();
        let parent = block.header.parent;
        if parent == self.tip.digest {
            certificates.extend(self.tip.certificate());
        } else if let Some(pb) = self.blocks.get(&parent) {
            let pv = pb.header.view;
            if let Some(r) = self.rounds.get(&pv) {
                if let Some((pd, qc)) = &r.notarization
                    && *pd == parent
                {
                    certificates.push(Certificate {
                        kind: VoteKind::Notarize,
                        view: pv,
                        digest: parent,
                        qc: qc.clone(),
                    });
                } else if let Some((pd, qc)) = &r.finalization
                    && *pd == parent
                {
                    certificates.push(Certificate {
                        kind: VoteKind::Finalize,
                        view: pv,
                        digest: parent,
                        qc: qc.clone(),
                    });
                }
            }
        }
        let parent_view = if parent == self.tip.digest {
            self.tip.view
        } else {
            self.blocks.get(&parent).map(|b| b.header.view).unwrap_or(self.tip.view)
        };
        let from = (parent_view.0 + 1).max(first_view(self.cfg.epoch).0);
        for w in from..v.0 {
            if certificates.len() >= MAX_PROPOSAL_CERTIFICATES {
                break;
            }
            if let Some(qc) = self.rounds.get(&View(w)).and_then(|r| r.nullification.clone()) {
                certificates.push(Certificate { kind: VoteKind::Nullify, view: View(w), digest: Digest::ZERO, qc });
            }
        }
        Proposal { block, signature, certificates }
    }

    fn on_proposal(&mut self, now: Duration, from: usize, p: Proposal) {
        let v = p.block.header.view;
        if !self.in_epoch(v) {
            // Another epoch's (indices and leaders differ there): not this core's to judge.
            return;
        }
        if self.cfg.leader(v) != from {
            self.fault(from, FaultKind::NotLeader { view: v });
            return;
        }
        if p.block.header.proposer != self.cfg.validators.members[from] {
            self.fault(from, FaultKind::InvalidProposal { view: v, reason: ProposalError::WrongProposer });
            return;
        }
        if v <= self.tip.view || v.0 > self.view.0 + self.cfg.max_views_ahead {
            return;
        }
        let d = p.block.digest();
        if let Some(existing) = self.rounds.get(&v).and_then(|r| r.proposal.as_ref()) {
            let ed = existing.block.digest();
            if ed == d {
                return;
            }
            let esig = existing.signature;
            let vote =
                Vote { kind: VoteKind::Notarize, view: v, digest: d, signer: from as u32, signature: p.signature };
            if self.check_signature(&vote) {
                let evidence = Evidence {
                    kind: VoteKind::Notarize,
                    view: v,
                    signer: from as u32,
                    first: (ed, esig),
                    second: (d, p.signature),
                };
                self.fault(from, FaultKind::Equivocation(evidence));
            } else {
                self.fault(from, FaultKind::InvalidSignature { what: "proposal" });
            }
            return;
        }
        let vote = Vote { kind: VoteKind::Notarize, view: v, digest: d, signer: from as u32, signature: p.signature };
        if !self.check_signature(&vote) {
            self.fault(from, FaultKind::InvalidSignature { what: "proposal" });
            return;
        }
        self.stats.proposals_received += 1;
        let certificates = p.certificates.clone();
        for c in certificates.into_iter().take(MAX_PROPOSAL_CERTIFICATES) {
            self.accept_certificate(now, Some(from), c, false);
        }
        if v <= self.tip.view {
            return;
        }
        if p.block.payload_matches() {
            self.blocks.entry(d).or_insert_with(|| p.block.clone());
        }
        self.rounds.entry(v).or_default().proposal = Some(p);
        // The proposal carries the leader's notarize vote.
        if self.rounds.get(&v).is_some_and(|r| r.existing(VoteKind::Notarize, from as u32).is_none()) {
            self.add_vote(now, vote);
        }
    }

    /// Checks the proposal of the current view and votes for it, or rejects it.
    fn try_vote(&mut self, now: Duration) {
        let v = self.view;
        let Some(r) = self.rounds.get(&v) else { return };
        if r.verdict != Verdict::Unchecked || r.my_nullify || r.my_notarize.is_some() {
            return;
        }
        let Some(p) = r.proposal.clone() else { return };
        match self.check_proposal(&p) {
            Check::Missing => {
                let leader = self.cfg.leader(v);
                self.request_sync(now, Some(leader));
            }
            Check::Invalid(reason) => {
                let leader = self.cfg.leader(v);
                if let Some(r) = self.rounds.get_mut(&v) {
                    r.verdict = Verdict::Rejected;
                }
                self.fault(leader, FaultKind::InvalidProposal { view: v, reason });
                self.nullify_current(now);
            }
            Check::Valid => {
                let d = p.block.digest();
                if let Some(r) = self.rounds.get_mut(&v) {
                    r.verdict = Verdict::Voted;
                    r.my_notarize = Some(d);
                }
                let signature = self.signer.sign(&vote_digest(&self.cfg.network, VoteKind::Notarize, v, &d));
                let vote = Vote { kind: VoteKind::Notarize, view: v, digest: d, signer: self.me as u32, signature };
                self.out.push(Action::Persist(WalRecord::Notarized(v, d)));
                self.out.push(Action::Broadcast(Message::Vote(vote.clone())));
                self.stats.notarize_sent += 1;
                self.add_vote(now, vote);
            }
        }
    }

    /// (height, view, timestamp) of a block that may be a parent: the tip or a known block
    /// above it.
    fn parent_info(&self, d: &Digest) -> Option<(Height, View, u64)> {
        if *d == self.tip.digest {
            return Some((self.tip.height, self.tip.view, self.tip.timestamp_ms));
        }
        self.blocks.get(d).map(|b| (b.header.height, b.header.view, b.header.timestamp_ms))
    }

    /// Attestation digests ordered by the chain from `from` (inclusive) down to the tip,
    /// or `Err(true)` if a body is missing, `Err(false)` if the chain does not reach the tip.
    fn chain_batches(&self, from: &Digest) -> Result<BTreeSet<Digest>, bool> {
        let mut out = BTreeSet::new();
        let mut d = *from;
        while d != self.tip.digest {
            let Some(b) = self.blocks.get(&d) else { return Err(true) };
            if b.header.height <= self.tip.height || b.header.view <= self.tip.view {
                return Err(false);
            }
            out.extend(b.batches.iter().map(|c| c.commitment.attestation_digest()));
            d = b.header.parent;
        }
        Ok(out)
    }

    fn check_proposal(&mut self, p: &Proposal) -> Check {
        let h = &p.block.header;
        let v = h.view;
        if !p.block.payload_matches() {
            return Check::Invalid(ProposalError::PayloadMismatch);
        }
        if p.block.batches.len() > self.cfg.max_batches_per_block {
            return Check::Invalid(ProposalError::TooManyBatches {
                count: p.block.batches.len(),
                max: self.cfg.max_batches_per_block,
            });
        }
        let Some((p_height, p_view, p_ts)) = self.parent_info(&h.parent) else {
            return Check::Missing;
        };
        if p_view >= v || p_view < self.tip.view || (h.parent != self.tip.digest && !self.in_epoch(p_view)) {
            return Check::Invalid(ProposalError::BadParent);
        }
        if h.parent != self.tip.digest {
            match self.rounds.get(&p_view).and_then(Round::notarized_digest) {
                Some(nd) if nd == h.parent => {}
                Some(_) => return Check::Invalid(ProposalError::ParentNotNotarized),
                None => return Check::Missing,
            }
        }
        // Views of an earlier epoch (between the tip and this epoch's first view) count
        // as skipped.
        for w in (p_view.0 + 1).max(first_view(self.cfg.epoch).0)..v.0 {
            if self.rounds.get(&View(w)).is_none_or(|r| r.nullification.is_none()) {
                return Check::Missing;
            }
        }
        if h.height != p_height.next() {
            return Check::Invalid(ProposalError::WrongHeight { expected: p_height.next(), actual: h.height });
        }
        if self.last_height.is_some_and(|l| h.height > l) && !p.block.batches.is_empty() {
            return Check::Invalid(ProposalError::BeyondEpochEnd);
        }
        if h.timestamp_ms < p_ts {
            return Check::Invalid(ProposalError::TimestampRegressed);
        }
        let ancestors = match self.chain_batches(&h.parent) {
            Ok(a) => a,
            Err(true) => return Check::Missing,
            Err(false) => return Check::Invalid(ProposalError::BadParent),
        };
        let mut seen = BTreeSet::new();
        for (index, cert) in p.block.batches.iter().enumerate() {
            let a = cert.commitment.attestation_digest();
            if !seen.insert(a) || ancestors.contains(&a) || self.recent.set.contains(&a) {
                return Check::Invalid(ProposalError::DuplicateBatch { attestation: a });
            }
            if let Err(reason) = self.verify_batch(cert) {
                return Check::Invalid(ProposalError::InvalidAvailability { index, reason });
            }
        }
        Check::Valid
    }

    /// Verifies an availability certificate, with a cache of those already verified.
    fn verify_batch(&mut self, cert: &AvailabilityCertificate) -> Result<(), CertError> {
        if let Some(max) = self.cfg.max_batch_bytes
            && cert.commitment.blob_bytes > max
        {
            return Err(CertError::BatchTooLarge { blob_bytes: cert.commitment.blob_bytes, max });
        }
        let mut h = blake3::Hasher::new();
        h.update(cert.commitment.attestation_digest().as_bytes());
        h.update(&cert.signatures.signers);
        for s in &cert.signatures.signatures {
            h.update(&s.0);
        }
        let id = Digest(*h.finalize().as_bytes());
        if self.verified_batches.contains(&id) {
            return Ok(());
        }
        // The epoch's DA committee, or the previous epoch's where it changed: the digest
        // a certificate signs names the committee it was made for.
        let mut committee = (&self.cfg.da_committee, self.cfg.da_threshold);
        let mut expected = DaCommittee::digest_with(self.cfg.da_tag.as_ref(), &cert.commitment);
        if let Some(previous) = &self.cfg.da_previous
            && cert.signatures.digest != expected
            && previous.made(cert)
        {
            committee = (&previous.members, previous.threshold);
            expected = previous.digest_for(&cert.commitment);
        }
        let signers = cert.signatures.check_shape(committee.0, &expected, committee.1)?;
        if !cert.commitment.namespaces_sorted() {
            return Err(CertError::WrongDigest { expected, actual: cert.signatures.digest });
        }
        let items: Vec<SignedDigest> = signers
            .iter()
            .zip(&cert.signatures.signatures)
            .map(|(&i, s)| SignedDigest { public_key: committee.0.members[i], message: expected, signature: *s })
            .collect();
        if !self.verifier.verify_all(&items) {
            return Err(CertError::BadSignature);
        }
        self.verified_batches.insert(id);
        self.verified_order.push_back(id);
        if self.verified_order.len() > VERIFIED_CACHE
            && let Some(old) = self.verified_order.pop_front()
        {
            self.verified_batches.remove(&old);
        }
        Ok(())
    }

    /// The parent a proposal in view `v` extends — the block notarized in the highest
    /// view u < v such that every view in (u, v) is nullified (the tip when the walk
    /// reaches it) — and the batches in the parent's chain above the tip, which it may
    /// not order again (nor those finalized recently: [`Core::excluded`]). `None` if a
    /// block on the way is missing (sync).
    fn proposal_base(&self, v: View) -> Option<(Digest, BTreeSet<Digest>)> {
        let mut w = View(v.0.checked_sub(1)?);
        let parent = loop {
            if w <= self.tip.view || !self.in_epoch(w) {
                break self.tip.digest;
            }
            let r = self.rounds.get(&w);
            if let Some(d) = r.and_then(Round::notarized_digest) {
                if self.blocks.contains_key(&d) {
                    break d;
                }
                return None;
            }
            if r.is_some_and(|r| r.nullification.is_some()) {
                w = View(w.0 - 1);
                continue;
            }
            return None;
        };
        let chain = self.chain_batches(&parent).ok()?;
        Some((parent, chain))
    }

    /// True if a proposal on a parent whose chain holds `chain` may not order batch `a`:
    /// it is in that chain or was finalized recently. (The recent set is consulted in
    /// place: copying it, thousands of digests, per view cost validators about a tenth
    /// of their CPU under load.)
    fn excluded(&self, chain: &BTreeSet<Digest>, a: &Digest) -> bool {
        chain.contains(a) || self.recent.set.contains(a)
    }

    /// True if a proposal in the current view has a batch to order (or this validator
    /// cannot tell, missing a block): then the view runs on the normal timeouts; with
    /// nothing to order, the leader may wait `empty_block_delay` first.
    fn has_work(&self) -> bool {
        if self.pending.len() == 0 {
            return false;
        }
        match self.proposal_base(self.view) {
            Some((_, chain)) => !self.pending.select(1, |a| self.excluded(&chain, a)).is_empty(),
            None => true,
        }
    }

    /// A batch became pending: a view running on the idle timeouts switches to the
    /// normal ones (counted from now), since its leader now has something to order.
    fn work_arrived(&mut self, now: Duration) {
        if !self.idle_view || !self.has_work() {
            return;
        }
        self.idle_view = false;
        if let Some(d) = self.leader_deadline {
            self.leader_deadline = Some(d.min(now + self.cfg.leader_timeout));
        }
        if let Some(d) = self.notarization_deadline {
            self.notarization_deadline = Some(d.min(now + self.cfg.notarization_timeout));
        }
    }

    /// Leader: build and send the proposal of the current view when possible.
    fn try_propose(&mut self, now: Duration) {
        let v = self.view;
        if self.cfg.leader(v) != self.me {
            return;
        }
        if let Some(r) = self.rounds.get(&v)
            && (r.my_notarize.is_some() || r.my_nullify)
        {
            return;
        }
        if self.hold_until.is_some_and(|t| now < t) {
            // Blocks grow instead of heights multiplying (`min_block_interval`).
            return;
        }
        let Some((parent, chain)) = self.proposal_base(v) else {
            self.request_sync(now, None);
            return;
        };
        let Some((p_height, _, p_ts)) = self.parent_info(&parent) else { return };
        // Above the epoch's last height only an empty suffix, proposed at once: it
        // exists to finalize the boundary block. Above the horizon the leader cannot
        // tell whether the height is past the boundary, so it orders nothing there.
        let suffix = self.last_height.is_some_and(|l| p_height >= l);
        if !suffix && self.horizon.is_some_and(|h| p_height >= h) {
            // Above the horizon the leader cannot tell whether the height is past the
            // epoch's end: it proposes nothing until the horizon moves (voters time out
            // as usual; nothing above the horizon grows meanwhile).
            return;
        }
        let batches =
            if suffix { Vec::new() } else { self.pending.select(self.propose_limit(), |a| self.excluded(&chain, a)) };
        if batches.is_empty() && !suffix && self.propose_at.is_some_and(|t| now < t) {
            return;
        }
        let wall = (self.wall_offset_ms + now.as_millis() as i128).max(0) as u64;
        let header = BlockHeader {
            height: p_height.next(),
            view: v,
            parent,
            proposer: self.my_key,
            payload: Block::payload_digest(&batches),
            timestamp_ms: wall.max(p_ts),
        };
        let block = Block { header, batches };
        let d = block.digest();
        let proposal = self.proposal_message(block.clone());
        let signature = proposal.signature;
        self.out.push(Action::Persist(WalRecord::Proposed(block.clone())));
        self.out.push(Action::Broadcast(Message::Propose(proposal.clone())));
        self.stats.proposals_made += 1;
        self.stats.notarize_sent += 1;
        self.propose_at = None;
        self.hold_until = None;
        self.blocks.insert(d, block.clone());
        let r = self.rounds.entry(v).or_default();
        r.my_proposal = Some(block);
        r.my_notarize = Some(d);
        r.verdict = Verdict::Voted;
        r.proposal = Some(proposal);
        let vote = Vote { kind: VoteKind::Notarize, view: v, digest: d, signer: self.me as u32, signature };
        self.add_vote(now, vote);
    }

    // ----------------------------------------------------------------- batches

    fn on_batch(&mut self, now: Duration, from: usize, cert: AvailabilityCertificate) {
        let a = cert.commitment.attestation_digest();
        if self.pending.contains(&a) || self.recent.set.contains(&a) {
            return;
        }
        if let Err(reason) = self.verify_batch(&cert) {
            self.fault(from, FaultKind::InvalidBatch { reason });
            return;
        }
        // A full per-origin queue refuses further announcements (the announcer keeps its
        // own copy and its own leader turns will order it).
        if self.pending.add(a, cert, from, self.cfg.max_pending_batches_per_validator) {
            self.work_arrived(now);
        }
    }

    // ----------------------------------------------------------------- commit

    /// Outputs every block that is finalized and certified, in height order; signs
    /// finalize votes for uncertified ancestors of finalized blocks.
    fn try_commit(&mut self, now: Duration) {
        loop {
            let target = self
                .rounds
                .range(self.tip.view.next()..)
                .rev()
                .find_map(|(_, r)| r.finalization.as_ref().map(|(d, _)| *d));
            let Some(target) = target else {
                self.commit_retry_at = None;
                return;
            };
            let mut path = Vec::new();
            let mut d = target;
            let mut complete = true;
            while d != self.tip.digest {
                match self.blocks.get(&d) {
                    Some(b) if b.header.height > self.tip.height => {
                        path.push(d);
                        d = b.header.parent;
                    }
                    Some(_) => {
                        // Does not extend the tip: impossible with at most f faults.
                        complete = false;
                        break;
                    }
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                self.request_sync(now, None);
                if self.commit_retry_at.is_none() {
                    self.commit_retry_at = Some(now + self.cfg.retry_interval);
                }
                return;
            }
            let Some(next) = path.last().copied() else { return };
            let Some(block) = self.blocks.get(&next).cloned() else { return };
            if block.header.height > self.output_limit() {
                // Held until the driver knows the schedule that far, or never output
                // (above the epoch's last height).
                self.commit_retry_at = None;
                return;
            }
            let nv = block.header.view;
            let cert = self.rounds.get(&nv).and_then(|r| r.finalization.clone()).filter(|(fd, _)| *fd == next);
            match cert {
                Some((_, qc)) => self.commit(now, block, qc),
                None => {
                    // Every block on the path is final (an ancestor of a finalized block);
                    // those without their own certificate get finalize votes so that each
                    // log entry carries 2f+1 signatures over its own header.
                    for d in path.iter().rev() {
                        let Some(b) = self.blocks.get(d) else { continue };
                        let bv = b.header.view;
                        let has_cert = self.rounds.get(&bv).is_some_and(|r| r.finalization.is_some());
                        let mine = self.rounds.get(&bv).and_then(|r| r.my_finalize);
                        if !has_cert && mine.is_none() {
                            self.send_finalize(now, bv, *d);
                        }
                    }
                    let certified = self.rounds.get(&nv).is_some_and(|r| r.finalization.is_some());
                    if !certified {
                        if self.commit_retry_at.is_none() {
                            self.commit_retry_at = Some(now + self.cfg.retry_interval);
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Commit stalled for a retry interval: re-send my finalize votes on the stalled path
    /// and ask a peer for certificates.
    fn retry_commit(&mut self, now: Duration) {
        let from = self.tip.view.next();
        let mut resend = Vec::new();
        for (v, r) in self.rounds.range(from..) {
            if r.finalization.is_none()
                && let Some(d) = r.my_finalize
            {
                let signature = self.signer.sign(&vote_digest(&self.cfg.network, VoteKind::Finalize, *v, &d));
                resend.push(Vote { kind: VoteKind::Finalize, view: *v, digest: d, signer: self.me as u32, signature });
            }
        }
        for vote in resend {
            self.out.push(Action::Broadcast(Message::Vote(vote)));
        }
        self.sync_outstanding = None;
        self.request_sync(now, None);
    }

    fn commit(&mut self, now: Duration, block: Block, qc: QuorumCertificate) {
        let h = block.header.clone();
        let digest = h.digest();
        let attestations: Vec<Digest> = block.batches.iter().map(|c| c.commitment.attestation_digest()).collect();
        for a in &attestations {
            self.pending.remove(a);
        }
        self.stats.blocks_finalized += 1;
        self.stats.batches_finalized += attestations.len() as u64;
        self.recent.add(h.height, attestations, self.cfg.dedup_window);
        self.tip = Tip { height: h.height, view: h.view, digest, timestamp_ms: h.timestamp_ms, cert: Some(qc.clone()) };
        self.out.push(Action::Finalized(FinalizedBlock { block, certificate: qc }));
        self.out.push(Action::PruneWal { through: h.view });
        // Drop everything at or below the new tip's view.
        let keep = self.rounds.split_off(&h.view.next());
        self.rounds = keep;
        let tip_view = h.view;
        self.blocks.retain(|_, b| b.header.view > tip_view);
        if self.view <= tip_view {
            self.enter_view(now, tip_view.next());
        }
        if self.last_height == Some(h.height) {
            self.finish();
        }
    }

    // ----------------------------------------------------------------- sync

    fn request_sync(&mut self, now: Duration, prefer: Option<usize>) {
        let n = self.cfg.n();
        if n < 2 {
            return;
        }
        if self.sync_outstanding.is_some_and(|(_, deadline)| now < deadline) {
            return;
        }
        let peer = match prefer.filter(|p| *p != self.me && *p < n) {
            Some(p) => p,
            None => {
                let mut p = self.sync_next_peer % n;
                if p == self.me {
                    p = (p + 1) % n;
                }
                self.sync_next_peer = (p + 1) % n;
                p
            }
        };
        self.sync_outstanding = Some((peer, now + self.cfg.retry_interval));
        self.stats.sync_requests += 1;
        let from_view = self.tip.view.next().max(first_view(self.cfg.epoch));
        let req = SyncRequest { tip: self.tip.height, from_view };
        self.out.push(Action::Send { to: peer, message: Message::SyncRequest(req) });
    }

    fn on_sync_request(&mut self, now: Duration, from: usize, req: SyncRequest) {
        if self.served[from].is_some_and(|t| now < t + self.cfg.sync_min_interval) {
            return;
        }
        self.served[from] = Some(now);
        self.stats.sync_served += 1;
        if req.tip < self.tip.height {
            self.out.push(Action::ServeFinalized { to: from, from: req.tip.next(), max: self.cfg.sync_max_blocks });
        }
        let start = req.from_view.max(self.tip.view.next());
        let mut resp = SyncResponse::default();
        let max = self.cfg.sync_max_certificates;
        for (v, r) in self.rounds.range(start..) {
            if resp.certificates.len() >= max {
                break;
            }
            if let Some((d, qc)) = &r.notarization {
                resp.certificates.push(Certificate { kind: VoteKind::Notarize, view: *v, digest: *d, qc: qc.clone() });
                if let Some(b) = self.blocks.get(d) {
                    resp.blocks.push(b.clone());
                }
            }
            if let Some(qc) = &r.nullification {
                resp.certificates.push(Certificate {
                    kind: VoteKind::Nullify,
                    view: *v,
                    digest: Digest::ZERO,
                    qc: qc.clone(),
                });
            }
            if let Some((d, qc)) = &r.finalization {
                resp.certificates.push(Certificate { kind: VoteKind::Finalize, view: *v, digest: *d, qc: qc.clone() });
                if r.notarization.as_ref().is_none_or(|(nd, _)| nd != d)
                    && let Some(b) = self.blocks.get(d)
                {
                    resp.blocks.push(b.clone());
                }
            }
        }
        if !resp.certificates.is_empty() {
            self.out.push(Action::Send { to: from, message: Message::SyncResponse(resp) });
        }
    }

    fn on_sync_response(&mut self, now: Duration, from: usize, resp: SyncResponse) {
        if self.sync_outstanding.is_some_and(|(p, _)| p == from) {
            self.sync_outstanding = None;
        }
        for c in resp.certificates.into_iter().take(self.cfg.sync_max_certificates) {
            self.accept_certificate(now, Some(from), c, false);
        }
        // Bodies are accepted only when a certificate or a known child names them; the
        // hash binding makes them authentic. Children first, so walk repeatedly.
        let mut blocks: Vec<Block> = resp.blocks.into_iter().take(self.cfg.sync_max_certificates).collect();
        loop {
            let before = blocks.len();
            blocks.retain(|b| !self.learn_block(b));
            if blocks.len() == before || blocks.is_empty() {
                break;
            }
        }
    }

    /// Stores a block body if something this validator trusts names it.
    fn learn_block(&mut self, b: &Block) -> bool {
        let h = &b.header;
        if h.view <= self.tip.view || !b.payload_matches() {
            return false;
        }
        let d = b.digest();
        if self.blocks.contains_key(&d) {
            return true;
        }
        let named = self.rounds.get(&h.view).and_then(Round::notarized_digest) == Some(d)
            || self.blocks.values().any(|c| c.header.parent == d);
        if named {
            self.blocks.insert(d, b.clone());
        }
        named
    }

    fn on_finalized_blocks(&mut self, now: Duration, from: usize, blocks: Vec<FinalizedBlock>) {
        if self.sync_outstanding.is_some_and(|(p, _)| p == from) {
            self.sync_outstanding = None;
        }
        let mut progressed = false;
        let full = blocks.len() as u32 >= self.cfg.sync_max_blocks;
        for fb in blocks {
            let h = fb.height();
            if h <= self.tip.height {
                continue;
            }
            // Past what this core may output, or another epoch's block (a peer serves
            // its log, which goes on into the next epoch): the next core takes them.
            if self.done || h > self.output_limit() || !self.in_epoch(fb.block.header.view) {
                break;
            }
            if h != self.tip.height.next() || fb.block.header.parent != self.tip.digest {
                break;
            }
            if !fb.block.payload_matches() {
                let reason = CertError::WrongDigest {
                    expected: fb.block.header.payload,
                    actual: Block::payload_digest(&fb.block.batches),
                };
                self.fault(from, FaultKind::InvalidFinalizedBlock { height: h, reason });
                break;
            }
            if let Err(reason) = self.verify_qc(&fb.certificate, &fb.block.header.finalization_digest()) {
                self.fault(from, FaultKind::InvalidFinalizedBlock { height: h, reason });
                break;
            }
            let FinalizedBlock { block, certificate } = fb;
            self.commit(now, block, certificate);
            progressed = true;
        }
        if progressed && full {
            self.request_sync(now, Some(from));
        }
    }

    // ----------------------------------------------------------------- plumbing

    fn fault(&mut self, peer: usize, kind: FaultKind) {
        self.stats.faults += 1;
        if let Some(c) = self.peer_faults.get_mut(peer) {
            *c += 1;
        }
        self.out.push(Action::Fault(Fault { peer, kind }));
    }

    /// Runs the rules that may fire after any input until nothing changes.
    fn advance(&mut self, now: Duration) {
        for _ in 0..64 {
            if self.done {
                break;
            }
            let before = (self.view, self.tip.height, self.out.len());
            self.try_commit(now);
            if self.done {
                // The commit ended the epoch (and cleared the rounds): nothing more is
                // signed in it.
                break;
            }
            self.try_vote(now);
            self.try_propose(now);
            if before == (self.view, self.tip.height, self.out.len()) {
                break;
            }
        }
    }
}
