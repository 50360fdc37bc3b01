//! The thin async driver around [`lamina_consensus_core::Core`].
//!
//! ```text
//!  peers ──lamina/consensus/1──▶ Inbound ──┐
//!  batcher ── Certified(cert) ─────────────┼─▶ core task ──Finalized──▶ ledger, mempool
//!                                timers ───┘       │ actions, in order
//!                                                  ▼
//!                                   outbox thread: WAL append … fsync before each send
//!                                                  │ (group commit)
//!                                                  ▼
//!                                   sender task ──▶ peers (broadcast / send / serve blocks)
//! ```
//!
//! The core task never blocks on I/O, but for two syncs when a core refuses a batch of
//! ours (an error case: the WAL's record, then the intake log's; see
//! `CoreTask::refused`). Everything the core asks to persist goes to the
//! outbox thread *in order* with the sends; the thread appends WAL records and, before
//! releasing any send that follows a record, fsyncs (one fsync covers every record
//! appended meanwhile). So a signed message is durable before it leaves, and a slow
//! disk delays sends without stalling the protocol logic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lamina_consensus_core::{
    Action, Config as CoreConfig, Core, FaultKind, Message, Recovered, Stats, SyncRequest, WalRecord, Zip215,
    check_finalized, epoch_of, first_view,
};
use lamina_net::{Handler, Network, PeerSet};

use lamina_primitives::{AvailabilityCertificate, DaCommittee, Digest, FinalizedBlock, Keypair, NodeId, View};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::epochs::Schedule;
use crate::error::Error;
use crate::ledger::Ledger;
use crate::mempool::Mempool;
use crate::metrics as m;
use crate::protocol::ConsensusProtocol;
use crate::wal::{Wal, WalEntry};

const TARGET: &str = "lamina::consensus";
/// Largest catch-up answer (bytes of blocks).
const SERVE_BYTES: usize = 8 << 20;

/// Inputs of the core task.
pub(crate) enum Input {
    /// A message from a validator.
    Message { from: NodeId, msg: Message },
    /// One of our batches was certified by DA.
    Certified { cert: AvailabilityCertificate, cut_at: Instant, txs: usize },
    /// The committee schedule grew ([`crate::Validator::set_schedule`]).
    Schedule(Schedule),
    /// Governance's block limit changed ([`crate::Validator::set_batch_limit`]).
    BatchLimit(Option<usize>),
}

/// What the core task tells the outbox thread, in order.
pub(crate) enum Out {
    Persist(WalEntry),
    Send(Outgoing),
    PruneWal(View),
    /// Batches ordered, or refused: the WAL no longer keeps them for re-proposal. With a
    /// reply channel, the `Settled` record is synced before the reply.
    BatchesSettled(Vec<Digest>, Option<crossbeam_channel::Sender<()>>),
}

/// What the sender task sends.
pub(crate) enum Outgoing {
    Broadcast(Arc<Vec<NodeId>>, Message),
    To(NodeId, Message),
    Serve {
        to: NodeId,
        from: u64,
        max: u32,
    },
    /// Who may connect on `lamina/consensus` (and whom to dial) changed.
    Peers(PeerSet),
}

/// State shared with health reporting.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) height: AtomicU64,
    pub(crate) view: AtomicU64,
    pub(crate) behind: AtomicBool,
    pub(crate) pending_batches: AtomicU64,
    pub(crate) last_finalized: Mutex<Option<Instant>>,
    /// The consensus epoch of the running core, plus one (0: no core, the node follows).
    pub(crate) epoch_plus_one: AtomicU64,
    /// The last height of the running core's epoch when this validator is not in the
    /// next epoch's committee (a vote removed it); 0 otherwise. Intake refuses new
    /// transactions from the moment the schedule says so, so that what it acknowledged
    /// is cut, certified and announced while this core still runs: the members carry
    /// announced batches into their next epoch and order them there.
    pub(crate) leaving_after: AtomicU64,
    /// Governance's block limit as this validator applies it (0: none set).
    pub(crate) batch_limit: AtomicU64,
}

/// Receives `lamina/consensus/1` messages and queues them for the core task.
/// (The endpoint admits only the validators of the epochs this node follows.)
pub(crate) struct Inbound {
    pub(crate) tx: mpsc::Sender<Input>,
}

impl Handler<ConsensusProtocol> for Inbound {
    async fn message(&self, peer: NodeId, msg: Message) {
        metrics::counter!(m::MESSAGES, "kind" => msg.kind_name()).increment(1);
        // A full queue pushes back on this peer only (QUIC flow control).
        let _ = self.tx.send(Input::Message { from: peer, msg }).await;
    }
}

/// What a validator needs to start the core of any epoch.
pub(crate) struct Epochs {
    /// The core configuration of the genesis committee (tuning knobs included); each
    /// epoch's core gets a copy with its own committee.
    pub(crate) template: CoreConfig,
    pub(crate) keypair: Keypair,
    /// `None`: the genesis committee forever, nothing held (committees never change).
    pub(crate) schedule: Option<Schedule>,
    /// WAL records recovered at start, not yet handed to a core: each core gets those
    /// of its own epoch (a crash may have left records of the next epoch's first views
    /// while the ledger lost the boundary block, so the first core created after a
    /// restart may be an earlier epoch's).
    pub(crate) recovered_wal: Vec<WalRecord>,
    /// Batches to hand to the next core (own ones recovered at start, or those the
    /// previous epoch's core did not order).
    pub(crate) carry: Vec<AvailabilityCertificate>,
    /// The committee of the running core's epoch, by index.
    pub(crate) committee: Vec<NodeId>,
    /// The same, without this node: whom a broadcast goes to.
    pub(crate) others: Arc<Vec<NodeId>>,
    /// Outside the committee: when to ask a member for the next blocks.
    pub(crate) follow_at: Option<Duration>,
    pub(crate) follow_next: usize,
    /// The peer set last applied (applied again only when it changes).
    pub(crate) peers: Option<PeerSet>,
    /// When each peer was last served blocks from the ledger outside the core (at most
    /// one answer per `sync_min_interval`; only admitted peers send messages).
    pub(crate) served: HashMap<NodeId, Duration>,
    /// The digest of the ledger's last block, while following (no disk read per block).
    pub(crate) followed_tip: Option<(lamina_primitives::Height, Digest)>,
    /// Governance's block limit, for every core (each new epoch's too).
    pub(crate) batch_limit: Option<usize>,
}

/// The core task.
pub(crate) struct CoreTask {
    /// The core of the current epoch; `None` while this node is not a member of the
    /// epoch its next height belongs to, or does not know that epoch yet.
    pub(crate) core: Option<Core>,
    pub(crate) epochs: Epochs,
    pub(crate) origin: tokio::time::Instant,
    pub(crate) inbox: mpsc::Receiver<Input>,
    pub(crate) outbox: crossbeam_channel::Sender<Out>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) mempool: Arc<Mutex<Mempool>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) own_batches: HashMap<Digest, (Instant, usize)>,
    /// The intake log, told which batches were ordered (so it can prune).
    pub(crate) intake_log: Option<Arc<crate::intake_log::IntakeLog>>,
    pub(crate) last_stats: Stats,
    /// Wakes the batcher (when this validator learns it leaves the committee, so that it
    /// cuts at once instead of at its next tick).
    pub(crate) batcher_wake: Arc<tokio::sync::Notify>,
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl CoreTask {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Runs until `stop` or until the inbox closes; returns a local fault if one stops it.
    pub(crate) async fn run(mut self, initial: Vec<Action>, stop: CancellationToken) -> Result<(), Error> {
        self.route(initial)?;
        self.settle()?;
        loop {
            let core_deadline = self.core.as_ref().and_then(Core::next_deadline);
            let deadline = [core_deadline, self.epochs.follow_at].into_iter().flatten().min().map(|d| self.origin + d);
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                input = self.inbox.recv() => {
                    let Some(input) = input else { break };
                    self.input(input)?;
                    // Drain what is already queued before looking at timers again.
                    for _ in 0..256 {
                        match self.inbox.try_recv() {
                            Ok(i) => self.input(i)?,
                            Err(_) => break,
                        }
                    }
                }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    let now = self.now();
                    if let Some(core) = self.core.as_mut() {
                        let actions = core.handle_timeout(now);
                        self.route(actions)?;
                    }
                    if self.epochs.follow_at.is_some_and(|t| t <= now) {
                        self.follow_request(now);
                    }
                    self.settle()?;
                }
            }
            self.publish();
        }
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<(), Error> {
        let now = self.now();
        match input {
            Input::Message { from, msg } => self.message(now, from, msg, true)?,
            Input::Certified { cert, cut_at, txs } => {
                let a = cert.commitment.attestation_digest();
                self.own_batches.insert(a, (cut_at, txs));
                // Kept in the WAL until ordered, so a restart re-proposes it.
                self.send_out(Out::Persist(WalEntry::Batch(cert.clone())))?;
                let Some(core) = self.core.as_mut() else {
                    // Between cores (or outside the committee): the next core takes it.
                    if self.epochs.follow_at.is_some() {
                        // Cut before this validator left, certified after its last core
                        // ended (it cuts at once from when it knows, so DA took longer
                        // than the rest of that epoch): no member has it.
                        tracing::warn!(target: TARGET, attestation = %a, txs, "batch certified after this validator left the committee: its transactions wait until it is a member again (clients may resubmit them to a member)");
                    }
                    self.epochs.carry.push(cert);
                    return Ok(());
                };
                let limit = core.config().max_batch_bytes;
                match core.submit_batch(now, cert) {
                    // Not pending after an accepted submit: those same bytes were ordered
                    // already (a resubmitted transaction cut again).
                    Ok(actions) if !core.is_pending(&a) => {
                        self.route(actions)?;
                        self.ordered_already(a)?;
                    }
                    Ok(actions) => self.route(actions)?,
                    Err(e) => self.refused(a, &e.to_string(), limit)?,
                }
            }
            Input::Schedule(schedule) => {
                let peers = schedule.peers(self.ledger.tip().next(), &self.epochs.keypair.public());
                self.epochs.schedule = Some(schedule);
                if self.epochs.peers.as_ref() != Some(&peers) {
                    self.epochs.peers = Some(peers.clone());
                    self.send_out(Out::Send(Outgoing::Peers(peers)))?;
                }
                // `settle` names the epoch's end first, then moves the horizon.
            }
            Input::BatchLimit(limit) => {
                if self.epochs.batch_limit != limit {
                    tracing::info!(target: TARGET, limit = ?limit, "governance's block limit applies to this validator's proposals");
                }
                self.epochs.batch_limit = limit;
                self.shared.batch_limit.store(limit.map_or(0, |l| l as u64), Ordering::Relaxed);
                if let Some(core) = self.core.as_mut() {
                    core.set_batch_limit(limit);
                }
            }
        }
        self.settle()
    }

    /// A message from `from`: to the core when the sender is in its committee (the core
    /// ignores other epochs' messages); a request for blocks from anyone else (a peer
    /// still in an earlier epoch, or following) is answered from the ordered log; blocks
    /// served to a node outside the committee are checked and appended.
    fn message(&mut self, now: Duration, from: NodeId, msg: Message, again: bool) -> Result<(), Error> {
        let index = self.core.as_ref().and_then(|_| self.epochs.committee.iter().position(|k| *k == from));
        let epoch = self.core.as_ref().map(Core::epoch);
        // Without a schedule every request goes to the core, as it always did.
        if let Message::SyncRequest(req) = &msg
            && self.epochs.schedule.is_some()
            && (index.is_none() || epoch != Some(epoch_of(req.from_view)))
        {
            let min = self.epochs.template.sync_min_interval;
            let recent = self.epochs.served.get(&from).is_some_and(|t| now < *t + min);
            if req.tip < self.ledger.tip() && !recent {
                self.epochs.served.insert(from, now);
                let max = self.epochs.template.sync_max_blocks;
                self.send_out(Out::Send(Outgoing::Serve { to: from, from: req.tip.0 + 1, max }))?;
            }
            return Ok(());
        }
        let (Some(core), Some(index)) = (self.core.as_mut(), index) else {
            if let Message::Finalized(blocks) = msg
                && self.core.is_none()
            {
                self.follow(blocks)?;
            }
            return Ok(());
        };
        let replay =
            (again && self.epochs.schedule.is_some() && matches!(msg, Message::Finalized(_))).then(|| msg.clone());
        let actions = core.handle_message(now, index, msg);
        self.route(actions)?;
        self.settle()?;
        // Blocks past the old epoch's end go on to the next core or the follower.
        if let Some(Message::Finalized(blocks)) = replay
            && blocks.last().is_some_and(|b| b.height() > self.ledger.tip())
            && self.core.as_ref().map(Core::epoch) != epoch
        {
            self.message(now, from, Message::Finalized(blocks), false)?;
        }
        Ok(())
    }

    /// The epoch driver: drop a finished core, start the core of the epoch the next
    /// height belongs to when this node is a member (else follow the log), and tell a
    /// running core where its epoch ends.
    fn settle(&mut self) -> Result<(), Error> {
        for _ in 0..8 {
            let now = self.now();
            if let Some(core) = self.core.as_ref()
                && core.epoch_done()
            {
                let pending = core.pending();
                tracing::info!(target: TARGET, epoch = core.epoch(), height = core.finalized_height().0, "epoch ended");
                self.epochs.carry.extend(pending);
                self.core = None;
                continue;
            }
            let Some(schedule) = self.epochs.schedule.as_ref() else { return Ok(()) };
            if let Some(core) = self.core.as_mut() {
                // The end first: a horizon moved past the boundary before the core knows
                // it would let it output the next epoch's heights under this committee.
                if core.last_height().is_none()
                    && let Some(last) = schedule.last_height(core.epoch())
                {
                    let actions = core.end_epoch_at(now, last).map_err(Error::Core)?;
                    self.route(actions)?;
                    continue;
                }
                if core.horizon() != Some(schedule.known_through) {
                    let actions = core.set_horizon(now, Some(schedule.known_through));
                    self.route(actions)?;
                    continue;
                }
                return Ok(());
            }
            let next = self.ledger.tip().next();
            let Some(epoch) = schedule.epoch_for(next).cloned() else {
                self.epochs.follow_at = None;
                return Ok(()); // waits for the schedule to reach its next height
            };
            let me = self.epochs.keypair.public();
            if !epoch.validators.iter().any(|v| v.key == me) {
                if self.epochs.follow_at.is_none() {
                    tracing::info!(target: TARGET, epoch = epoch.epoch, height = next.0, "not in this epoch's committee: following the log");
                    self.epochs.follow_at = Some(now);
                }
                return Ok(());
            }
            self.epochs.follow_at = None;
            let mut cfg = self.epochs.template.clone();
            // The epoch's DA committee, and the previous epoch's where it differs (its
            // certificates stay valid for one epoch: batches certified before the switch).
            let genesis_da = DaCommittee::genesis(cfg.da_committee.clone(), cfg.da_threshold);
            let da = epoch.da.clone().unwrap_or_else(|| genesis_da.clone());
            let previous = epoch
                .epoch
                .checked_sub(1)
                .and_then(|e| schedule.get(e))
                .map(|p| p.da.clone().unwrap_or_else(|| genesis_da.clone()))
                .filter(|p| *p != da);
            cfg.da_committee = da.members;
            cfg.da_threshold = da.threshold;
            cfg.da_tag = da.tag;
            cfg.da_previous = previous;
            // The epoch's block limit, as governance set it, within the network's cap.
            if let Some(limit) = epoch.max_batches {
                cfg.max_batches_per_block = limit.clamp(1, cfg.max_batches_per_block);
            }
            // Its batch size limit, if governance set one.
            cfg.max_batch_bytes = epoch.max_batch_bytes.map(|l| l.max(1));
            cfg.epoch = epoch.epoch;
            cfg.validators = epoch.info().map(|i| i.validators).ok_or_else(|| Error::Config("bad committee".into()))?;
            cfg.horizon = Some(schedule.known_through);
            cfg.last_height = schedule.last_height(epoch.epoch);
            let (mine, later): (Vec<WalRecord>, Vec<WalRecord>) = std::mem::take(&mut self.epochs.recovered_wal)
                .into_iter()
                .filter(|r| epoch_of(r.view()) >= epoch.epoch)
                .partition(|r| epoch_of(r.view()) == epoch.epoch);
            self.epochs.recovered_wal = later;
            let carried: Vec<Digest> = self.epochs.carry.iter().map(|c| c.commitment.attestation_digest()).collect();
            let finalized = self.ledger.recent(cfg.dedup_window)?;
            let recent: std::collections::HashSet<Digest> = finalized
                .iter()
                .flat_map(|fb| fb.block.batches.iter().map(|c| c.commitment.attestation_digest()))
                .collect();
            let recovered = Recovered { finalized, wal: mine, batches: std::mem::take(&mut self.epochs.carry) };
            let wall = wall_ms();
            let (mut core, actions) =
                Core::new(cfg, Arc::new(self.epochs.keypair.clone()), Arc::new(Zip215), recovered, now, wall)
                    .map_err(Error::Core)?;
            // A carried batch the new epoch's rules refuse (certified by a DA committee two
            // switches old, or over a batch size limit lowered since) is not held for
            // proposal: ours are queued again, as when the core refuses a batch as it is
            // certified (another validator's is its own to cut again).
            let dropped: Vec<Digest> = carried.into_iter().filter(|a| !core.is_pending(a)).collect();
            let limit = core.config().max_batch_bytes;
            for a in dropped {
                // The core drops a batch ordered in its dedup window too: that is no
                // refusal, and queueing its transactions again would order them twice.
                if recent.contains(&a) {
                    self.ordered_already(a)?;
                } else {
                    self.refused(a, &format!("not taken by the core of epoch {}", epoch.epoch), limit)?;
                }
            }
            tracing::info!(target: TARGET, epoch = epoch.epoch, height = next.0, validators = epoch.validators.len(), "epoch core started");
            self.set_committee(epoch.keys());
            core.set_batch_limit(self.epochs.batch_limit);
            self.core = Some(core);
            self.route(actions)?;
        }
        Ok(())
    }

    /// Our batch `a` certified to the attestation of bytes already ordered (a
    /// resubmitted transaction cut alone again): it is settled as an ordering settles
    /// it, in the mempool, the intake log and the WAL, so that nothing holds its
    /// transactions, its senders or the logs' pruning for good.
    fn ordered_already(&mut self, a: Digest) -> Result<(), Error> {
        self.mempool.lock().ordered(&[a]);
        if let Some(log) = &self.intake_log {
            log.ordered(&[a])?;
        }
        self.own_batches.remove(&a);
        self.batcher_wake.notify_one();
        self.send_out(Out::BatchesSettled(vec![a], None))
    }

    /// A core refused certified batch `a` (`why`; `limit`: that core's batch limit). If
    /// it is ours, its transactions are
    /// queued again to be cut under the rules of now, durably in the intake log before
    /// the batcher may cut them ([`crate::intake_log::IntakeLog::requeued`]); before
    /// that, the WAL records, durably, that it stops keeping it for re-proposal. So acknowledged transactions are not left
    /// waiting for a restart that would give the same certificate back to be refused
    /// again, and the logs keep pruning.
    pub(crate) fn refused(&mut self, a: Digest, why: &str, limit: Option<u64>) -> Result<(), Error> {
        self.own_batches.remove(&a);
        // The WAL's `Settled` record is on disk before the intake log's `Requeued`
        // record: the other way round, a kill between the two would let a restart give
        // the certificate back (not ordered, so no dedup window covers it) and queue its
        // transactions again too, and a core that takes it then would order them twice.
        // (One wait on the core task, for a refusal: the exception to its rule.)
        let (synced, wait) = crossbeam_channel::bounded(1);
        self.send_out(Out::BatchesSettled(vec![a], Some(synced)))?;
        wait.recv().map_err(|_| Error::Internal("outbox thread stopped".into()))?;
        let mut mp = self.mempool.lock();
        let Some(r) = mp.requeue(&a, crate::mempool::now(), limit) else {
            // Not cut here (given through `order_certified`), or restored from the WAL
            // alone (without the intake log's record): no transactions to queue again.
            tracing::error!(target: TARGET, attestation = %a, reason = why, "a core refused a certified batch whose transactions this validator does not have: settled");
            return Ok(());
        };
        tracing::error!(target: TARGET, attestation = %a, reason = why, queued_again = r.queued.len(), dropped = r.dropped.len(), "a core refused our certified batch: its transactions are queued again (those too large for the batch limit of now are dropped)");
        if let Some(log) = &self.intake_log {
            // Under the mempool lock: the batcher cannot cut them before this is durable.
            // (One sync on the core task, for a refusal: the exception to its rule.)
            log.requeued(a, &r.queued)?;
        }
        drop(mp);
        self.batcher_wake.notify_one();
        Ok(())
    }

    pub(crate) fn set_committee(&mut self, committee: Vec<NodeId>) {
        let me = self.epochs.keypair.public();
        self.epochs.others = Arc::new(committee.iter().copied().filter(|k| *k != me).collect());
        self.epochs.committee = committee;
    }

    /// Outside the committee: ask the next member of the next height's epoch for blocks.
    fn follow_request(&mut self, now: Duration) {
        self.epochs.follow_at = Some(now + self.epochs.template.retry_interval);
        let Some(schedule) = self.epochs.schedule.as_ref() else { return };
        let tip = self.ledger.tip();
        let Some(epoch) = schedule.epoch_for(tip.next()) else { return };
        let members = epoch.keys();
        let peer = members[self.epochs.follow_next % members.len()];
        self.epochs.follow_next = self.epochs.follow_next.wrapping_add(1);
        let req = SyncRequest { tip, from_view: first_view(epoch.epoch) };
        let _ = self.send_out(Out::Send(Outgoing::To(peer, Message::SyncRequest(req))));
    }

    /// Outside the committee: appends the served blocks that extend the log, each checked
    /// against the committee of its height's epoch, up to where this node's own core
    /// takes over (or its schedule ends).
    fn follow(&mut self, blocks: Vec<FinalizedBlock>) -> Result<(), Error> {
        let me = self.epochs.keypair.public();
        for fb in blocks {
            let tip = self.ledger.tip();
            if fb.height() <= tip {
                continue;
            }
            let Some(schedule) = self.epochs.schedule.as_ref() else { return Ok(()) };
            let Some(epoch) = schedule.epoch_for(fb.height()) else { return Ok(()) };
            if fb.height() != tip.next() || epoch.validators.iter().any(|v| v.key == me) {
                return Ok(());
            }
            let parent = match self.epochs.followed_tip {
                Some((h, d)) if h == tip => d,
                _ => self.ledger.recent(1)?.last().map_or(Digest::ZERO, |b| b.block.digest()),
            };
            let Some(info) = epoch.info() else { return Ok(()) };
            let checked = if fb.block.header.parent != parent {
                Err(format!("height {} does not extend the log", fb.height()))
            } else if !fb.block.payload_matches() {
                Err(format!("height {}: payload digest mismatch", fb.height()))
            } else {
                check_finalized(&fb, &info).map_err(|e| e.to_string())
            };
            if let Err(reason) = checked {
                tracing::warn!(target: TARGET, %reason, "served block refused");
                return Ok(());
            }
            self.epochs.followed_tip = Some((fb.height(), fb.block.digest()));
            self.output(fb)?;
        }
        Ok(())
    }

    fn send_out(&self, out: Out) -> Result<(), Error> {
        self.outbox.send(out).map_err(|_| Error::Internal("outbox thread stopped".into()))
    }

    /// Appends a finalized block to the ordered log, with its bookkeeping.
    fn output(&mut self, fb: FinalizedBlock) -> Result<(), Error> {
        self.ledger.append(&fb)?;
        let attestations: Vec<Digest> = fb.block.batches.iter().map(|c| c.commitment.attestation_digest()).collect();
        let landed = {
            let mut mp = self.mempool.lock();
            let before = mp.unordered_batches();
            mp.ordered(&attestations);
            mp.unordered_batches() < before
        };
        if landed {
            // The batcher may be waiting for one of our batches to be ordered
            // (`[consensus.batch] max_unordered`).
            self.batcher_wake.notify_one();
        }
        if let Some(log) = &self.intake_log {
            log.ordered(&attestations)?;
        }
        let now = Instant::now();
        for a in &attestations {
            if let Some((cut_at, _)) = self.own_batches.remove(a) {
                tracing::debug!(target: TARGET, since_cut = ?now.duration_since(cut_at), height = fb.height().0, "own batch ordered");
                metrics::histogram!(m::BATCH_LATENCY).record(now.duration_since(cut_at).as_secs_f64());
            }
        }
        self.epochs.carry.retain(|c| !attestations.contains(&c.commitment.attestation_digest()));
        let lag = wall_ms().saturating_sub(fb.block.header.timestamp_ms);
        tracing::debug!(
            target: TARGET,
            height = fb.height().0,
            view = fb.block.header.view.0,
            batches = fb.block.batches.len(),
            lag_ms = lag,
            "finalized"
        );
        metrics::histogram!(m::FINALIZATION_LATENCY).record(lag as f64 / 1000.0);
        metrics::gauge!(m::HEIGHT).set(fb.height().0 as f64);
        *self.shared.last_finalized.lock() = Some(now);
        self.shared.height.store(fb.height().0, Ordering::Relaxed);
        if !attestations.is_empty() {
            self.send_out(Out::BatchesSettled(attestations, None))?;
        }
        Ok(())
    }

    fn route(&mut self, actions: Vec<Action>) -> Result<(), Error> {
        for a in actions {
            match a {
                Action::Persist(rec) => self.send_out(Out::Persist(WalEntry::Core(rec)))?,
                Action::Broadcast(msg) => {
                    self.send_out(Out::Send(Outgoing::Broadcast(self.epochs.others.clone(), msg)))?
                }
                Action::Send { to, message } => {
                    if let Some(peer) = self.epochs.committee.get(to) {
                        self.send_out(Out::Send(Outgoing::To(*peer, message)))?
                    }
                }
                Action::ServeFinalized { to, from, max } => {
                    if let Some(peer) = self.epochs.committee.get(to) {
                        self.send_out(Out::Send(Outgoing::Serve { to: *peer, from: from.0, max }))?
                    }
                }
                Action::Finalized(fb) => self.output(fb)?,
                Action::PruneWal { through } => self.send_out(Out::PruneWal(through))?,
                Action::Fault(f) => {
                    let kind = match &f.kind {
                        FaultKind::InvalidSignature { .. } => "invalid_signature",
                        FaultKind::Impersonation { .. } => "impersonation",
                        FaultKind::Equivocation(_) => "equivocation",
                        FaultKind::InvalidProposal { .. } => "invalid_proposal",
                        FaultKind::NotLeader { .. } => "not_leader",
                        FaultKind::InvalidCertificate { .. } => "invalid_certificate",
                        FaultKind::InvalidFinalizedBlock { .. } => "invalid_finalized_block",
                        FaultKind::InvalidBatch { .. } => "invalid_batch",
                        FaultKind::Malformed { .. } => "malformed",
                    };
                    metrics::counter!(m::FAULTS, "kind" => kind).increment(1);
                    tracing::debug!(target: TARGET, peer = f.peer, fault = ?f.kind, "peer fault");
                }
            }
        }
        Ok(())
    }

    fn publish(&mut self) {
        let Some(core) = self.core.as_ref() else {
            self.shared.behind.store(false, Ordering::Relaxed);
            self.shared.epoch_plus_one.store(0, Ordering::Relaxed);
            self.shared.leaving_after.store(0, Ordering::Relaxed);
            return;
        };
        self.shared.epoch_plus_one.store(core.epoch() + 1, Ordering::Relaxed);
        let me = self.epochs.keypair.public();
        let leaving = self.epochs.schedule.as_ref().and_then(|s| {
            let last = s.last_height(core.epoch())?;
            let next = s.epoch_for(last.next())?;
            (!next.validators.iter().any(|v| v.key == me)).then_some(last.0)
        });
        let was = self.shared.leaving_after.swap(leaving.unwrap_or(0), Ordering::Relaxed);
        if was == 0 && leaving.is_some() {
            self.batcher_wake.notify_one();
        }
        let s = core.stats().clone();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let l = &self.last_stats;
        metrics::counter!(m::PROPOSALS).increment(d(s.proposals_made, l.proposals_made));
        metrics::counter!(m::VOTES, "kind" => "notarize").increment(d(s.notarize_sent, l.notarize_sent));
        metrics::counter!(m::VOTES, "kind" => "nullify").increment(d(s.nullify_sent, l.nullify_sent));
        metrics::counter!(m::VOTES, "kind" => "finalize").increment(d(s.finalize_sent, l.finalize_sent));
        metrics::counter!(m::TIMEOUTS).increment(d(s.timeouts, l.timeouts));
        metrics::counter!(m::CERTIFICATES).increment(d(s.certificates_formed, l.certificates_formed));
        self.last_stats = s;
        let view = core.view().0;
        metrics::gauge!(m::VIEW).set(view as f64);
        metrics::gauge!(m::PENDING_BATCHES).set(core.pending_batches() as f64);
        self.shared.view.store(view, Ordering::Relaxed);
        self.shared.behind.store(core.is_behind(), Ordering::Relaxed);
        self.shared.pending_batches.store(core.pending_batches() as u64, Ordering::Relaxed);
    }
}

/// The outbox thread: WAL appends and fsyncs in order with the sends they protect;
/// periodic WAL pruning behind a synced ledger. Returns when the channel closes (after a
/// final sync) or on a store failure (fail-stop: `fatal` is cancelled).
pub(crate) fn outbox_thread(
    mut wal: Wal,
    ledger: Arc<Ledger>,
    log_retain: u64,
    rx: crossbeam_channel::Receiver<Out>,
    net: mpsc::UnboundedSender<Outgoing>,
    fatal: CancellationToken,
    error: Arc<Mutex<Option<Error>>>,
) {
    let fail = |e: Error| {
        tracing::error!(target: TARGET, error = %e, "WAL failure: stopping (fail-stop)");
        *error.lock() = Some(e);
        fatal.cancel();
    };
    let mut prune_to: Option<View> = None;
    let mut last_prune = Instant::now();
    let mut dirty = false;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(o) => Some(o),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let batch: Vec<Out> = first.into_iter().chain(rx.try_iter().take(4096)).collect();
        for out in batch {
            match out {
                Out::Persist(e) => {
                    if let Err(e) = wal.append(&e) {
                        return fail(e);
                    }
                    dirty = true;
                }
                Out::Send(o) => {
                    if dirty {
                        let t = Instant::now();
                        if let Err(e) = wal.sync() {
                            return fail(e);
                        }
                        metrics::histogram!(m::WAL_SYNC).record(t.elapsed().as_secs_f64());
                        if t.elapsed() > Duration::from_millis(5) {
                            tracing::debug!(target: TARGET, took = ?t.elapsed(), "slow WAL sync");
                        }
                        dirty = false;
                    }
                    let _ = net.send(o);
                }
                Out::PruneWal(v) => prune_to = Some(prune_to.map_or(v, |p| p.max(v))),
                Out::BatchesSettled(a, reply) => {
                    // Without a reply (ordered batches), durable with the next sync:
                    // lost with a crash, the batch is found ordered in the dedup window
                    // at the restart instead. A refused batch's is synced now.
                    if let Err(e) = wal.batches_settled(a) {
                        return fail(e);
                    }
                    if let Some(reply) = reply {
                        if let Err(e) = wal.sync() {
                            return fail(e);
                        }
                        dirty = false;
                        let _ = reply.send(());
                    }
                }
            }
        }
        if dirty {
            if let Err(e) = wal.sync() {
                return fail(e);
            }
            dirty = false;
        }
        if last_prune.elapsed() >= Duration::from_secs(1)
            && let Some(v) = prune_to.take()
        {
            last_prune = Instant::now();
            // The finalized block of view `v` must be durable before the records that
            // protected the views up to it go.
            if let Err(e) = ledger.sync().and_then(|_| wal.prune(v)) {
                return fail(e);
            }
            // Ordered-log retention (`log_retain_heights`): whole segments below the window.
            let tip = ledger.tip().0;
            if log_retain > 0 && tip > log_retain {
                match ledger.prune_below(lamina_primitives::Height(tip - log_retain)) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(target: TARGET, segments = n, oldest = ledger.first().0, "ordered log pruned by retention")
                    }
                    Err(e) => return fail(e),
                }
            }
        }
    }
    if let Err(e) = wal.close() {
        fail(e);
    }
}

/// The sender task: performs sends in the order the outbox released them.
pub(crate) async fn sender_task(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    net: Network<ConsensusProtocol>,
    ledger: Arc<Ledger>,
    max_blocks: u32,
) {
    while let Some(o) = rx.recv().await {
        match o {
            Outgoing::Broadcast(peers, msg) => match net.broadcast(&peers, &msg).await {
                Ok(results) => {
                    for (peer, r) in results {
                        if let Err(e) = r {
                            tracing::trace!(target: TARGET, %peer, error = %e, "broadcast failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(target: TARGET, error = %e, "cannot encode a broadcast"),
            },
            Outgoing::To(peer, msg) => {
                if let Err(e) = net.send(&peer, &msg).await {
                    tracing::trace!(target: TARGET, %peer, error = %e, "send failed");
                }
            }
            Outgoing::Serve { to: peer, from, max } => {
                let (net, ledger) = (net.clone(), ledger.clone());
                let max = max.min(max_blocks) as usize;
                tokio::spawn(async move {
                    let read = tokio::task::spawn_blocking(move || {
                        ledger.read(lamina_primitives::Height(from), max, SERVE_BYTES)
                    })
                    .await;
                    if let Ok(Ok(blocks)) = read
                        && !blocks.is_empty()
                    {
                        let _ = net.send(&peer, &Message::Finalized(blocks)).await;
                    }
                });
            }
            Outgoing::Peers(peers) => net.set_peers(peers),
        }
    }
}
