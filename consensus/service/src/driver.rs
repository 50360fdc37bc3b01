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
//! The core task never blocks on I/O. Everything the core asks to persist goes to the
//! outbox thread *in order* with the sends; the thread appends WAL records and, before
//! releasing any send that follows a record, fsyncs (one fsync covers every record
//! appended meanwhile). So a signed message is durable before it leaves, and a slow
//! disk delays sends without stalling the protocol logic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lamina_consensus_core::{Action, Core, FaultKind, Message, Stats};
use lamina_net::{Handler, Network};
use lamina_primitives::{AvailabilityCertificate, Digest, NodeId, View};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// A message from a validator (committee index).
    Message { from: usize, msg: Message },
    /// One of our batches was certified by DA.
    Certified { cert: AvailabilityCertificate, cut_at: Instant, txs: usize },
}

/// What the core task tells the outbox thread, in order.
pub(crate) enum Out {
    Persist(WalEntry),
    Send(Outgoing),
    PruneWal(View),
    BatchesOrdered(Vec<Digest>),
}

/// What the sender task sends.
pub(crate) enum Outgoing {
    Broadcast(Message),
    To(usize, Message),
    Serve { to: usize, from: u64, max: u32 },
}

/// State shared with health reporting.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) height: AtomicU64,
    pub(crate) view: AtomicU64,
    pub(crate) behind: AtomicBool,
    pub(crate) pending_batches: AtomicU64,
    pub(crate) last_finalized: Mutex<Option<Instant>>,
}

/// Receives `lamina/consensus/1` messages and queues them for the core task.
pub(crate) struct Inbound {
    pub(crate) index: HashMap<NodeId, usize>,
    pub(crate) tx: mpsc::Sender<Input>,
}

impl Handler<ConsensusProtocol> for Inbound {
    async fn message(&self, peer: NodeId, msg: Message) {
        let Some(&from) = self.index.get(&peer) else { return };
        metrics::counter!(m::MESSAGES, "kind" => msg.kind_name()).increment(1);
        // A full queue pushes back on this peer only (QUIC flow control).
        let _ = self.tx.send(Input::Message { from, msg }).await;
    }
}

/// The core task.
pub(crate) struct CoreTask {
    pub(crate) core: Core,
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
        loop {
            let deadline = self.core.next_deadline().map(|d| self.origin + d);
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
                    let actions = self.core.handle_timeout(now);
                    self.route(actions)?;
                }
            }
            self.publish();
        }
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<(), Error> {
        let now = self.now();
        let actions = match input {
            Input::Message { from, msg } => self.core.handle_message(now, from, msg),
            Input::Certified { cert, cut_at, txs } => {
                let a = cert.commitment.attestation_digest();
                self.own_batches.insert(a, (cut_at, txs));
                // Kept in the WAL until ordered, so a restart re-proposes it.
                self.send_out(Out::Persist(WalEntry::Batch(cert.clone())))?;
                match self.core.submit_batch(now, cert) {
                    // Not pending after an accepted submit: those same bytes were ordered
                    // already (a resubmitted transaction cut again); nothing will order it.
                    Ok(actions) if !self.core.is_pending(&a) => {
                        self.mempool.lock().abandon(&a);
                        actions
                    }
                    Ok(actions) => actions,
                    Err(e) => {
                        tracing::error!(target: TARGET, error = %e, attestation = %a, "the core refused our certified batch; its transactions wait for a restart or a resubmission");
                        self.mempool.lock().abandon(&a);
                        Vec::new()
                    }
                }
            }
        };
        self.route(actions)
    }

    fn send_out(&self, out: Out) -> Result<(), Error> {
        self.outbox.send(out).map_err(|_| Error::Internal("outbox thread stopped".into()))
    }

    fn route(&mut self, actions: Vec<Action>) -> Result<(), Error> {
        for a in actions {
            match a {
                Action::Persist(rec) => self.send_out(Out::Persist(WalEntry::Core(rec)))?,
                Action::Broadcast(msg) => self.send_out(Out::Send(Outgoing::Broadcast(msg)))?,
                Action::Send { to, message } => self.send_out(Out::Send(Outgoing::To(to, message)))?,
                Action::ServeFinalized { to, from, max } => {
                    self.send_out(Out::Send(Outgoing::Serve { to, from: from.0, max }))?
                }
                Action::Finalized(fb) => {
                    self.ledger.append(&fb)?;
                    let attestations: Vec<Digest> =
                        fb.block.batches.iter().map(|c| c.commitment.attestation_digest()).collect();
                    self.mempool.lock().ordered(&attestations);
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
                        self.send_out(Out::BatchesOrdered(attestations))?;
                    }
                }
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
        let s = self.core.stats().clone();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let l = &self.last_stats;
        metrics::counter!(m::PROPOSALS).increment(d(s.proposals_made, l.proposals_made));
        metrics::counter!(m::VOTES, "kind" => "notarize").increment(d(s.notarize_sent, l.notarize_sent));
        metrics::counter!(m::VOTES, "kind" => "nullify").increment(d(s.nullify_sent, l.nullify_sent));
        metrics::counter!(m::VOTES, "kind" => "finalize").increment(d(s.finalize_sent, l.finalize_sent));
        metrics::counter!(m::TIMEOUTS).increment(d(s.timeouts, l.timeouts));
        metrics::counter!(m::CERTIFICATES).increment(d(s.certificates_formed, l.certificates_formed));
        self.last_stats = s;
        let view = self.core.view().0;
        metrics::gauge!(m::VIEW).set(view as f64);
        metrics::gauge!(m::PENDING_BATCHES).set(self.core.pending_batches() as f64);
        self.shared.view.store(view, Ordering::Relaxed);
        self.shared.behind.store(self.core.is_behind(), Ordering::Relaxed);
        self.shared.pending_batches.store(self.core.pending_batches() as u64, Ordering::Relaxed);
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
                Out::BatchesOrdered(a) => wal.batches_ordered(a),
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
    ids: Vec<NodeId>,
    me: usize,
    ledger: Arc<Ledger>,
    max_blocks: u32,
) {
    let peers: Vec<NodeId> = ids.iter().enumerate().filter(|(i, _)| *i != me).map(|(_, k)| *k).collect();
    while let Some(o) = rx.recv().await {
        match o {
            Outgoing::Broadcast(msg) => match net.broadcast(&peers, &msg).await {
                Ok(results) => {
                    for (peer, r) in results {
                        if let Err(e) = r {
                            tracing::trace!(target: TARGET, %peer, error = %e, "broadcast failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(target: TARGET, error = %e, "cannot encode a broadcast"),
            },
            Outgoing::To(to, msg) => {
                if let Some(peer) = ids.get(to)
                    && let Err(e) = net.send(peer, &msg).await
                {
                    tracing::trace!(target: TARGET, %peer, error = %e, "send failed");
                }
            }
            Outgoing::Serve { to, from, max } => {
                let (net, ledger) = (net.clone(), ledger.clone());
                let Some(peer) = ids.get(to).copied() else { continue };
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
        }
    }
}
