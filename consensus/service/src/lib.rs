//! The consensus service: mempool, batcher, WAL, catch-up and the ordered-log server, driving consensus-core over QUIC.
//!
//! A validator process runs, on one QUIC endpoint (its genesis key and address):
//!
//! * **intake**: `lamina/intake/1` (QUIC, for genesis nodes and configured client keys)
//!   and an HTTP/JSON endpoint ([`http`]); both put checked transactions in the
//!   [`mempool`] and answer `Busy` when it is full;
//! * the **[`batcher`]**: cuts squares by size or age and disperses them through a
//!   [`lamina_interfaces::DataAvailability`] implementation; each availability
//!   certificate goes to the core, which announces it to the other validators and
//!   orders it;
//! * the **[`driver`]**: the protocol core ([`lamina_consensus_core`]) on
//!   `lamina/consensus/1`, with the [`wal`] (fsync before send), catch-up (finalized
//!   blocks served from the [`ledger`]) and timers;
//! * the **ordered log**: finalized blocks in the [`ledger`], served in process
//!   ([`LocalLog`]) and over `lamina/log/1` ([`lamina_consensus_client::LogClient`] is the matching client, an
//!   [`lamina_interfaces::OrderedLog`]).
//!
//! Readiness (`/readyz`): `peers` (connected to at least a quorum of the committee,
//! counting itself) and `caught_up` (no finalized block known that is not yet in the
//! local log). `/status` adds height, view, mempool and DA state.
//!
//! Shutdown: intake answers `Busy`, the batcher finishes dispersals in flight (bounded),
//! the core stops, the WAL and the ordered log are synced and closed, the endpoint
//! drains.
//!
//! Accepted transactions are durable in the intake log (`[consensus.mempool]
//! durable_intake`, on by default) and queued again after a crash. Not done: only
//! transactions of this validator's own batches are remembered for duplicate detection.

pub mod batcher;
pub mod config;
pub mod driver;
pub mod epochs;
pub mod error;
pub mod http;
pub mod intake;
pub mod intake_log;
pub mod ledger;
pub mod logserve;
pub mod mempool;
pub mod metrics;
pub mod protocol;
mod sigcheck;
pub mod wal;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lamina_consensus_core::{Core, Recovered, Zip215};
use lamina_interfaces::{DataAvailability, OUTSIDE_COMMITTEE};
use lamina_net::{Endpoint, EndpointConfig, NodeContext, PeerSet, ProtocolConfig};
use lamina_primitives::{Digest, NodeId};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{BatchConfig, Config, MempoolConfig};
pub use epochs::{Schedule, ScheduledEpoch};
pub use error::Error;
pub use http::TxJson;
pub use intake::Intake;
pub use ledger::{Ledger, LocalLog};
pub use protocol::{ConsensusProtocol, IntakeProtocol, LogProtocol};

const TARGET: &str = "lamina::consensus";

/// A running validator (see [`start`]).
pub struct Validator {
    intake: Intake,
    to_core: mpsc::Sender<driver::Input>,
    log: LocalLog,
    ledger: Arc<Ledger>,
    endpoint: Endpoint,
    stop_intake: CancellationToken,
    stop_core: CancellationToken,
    stop_batcher: CancellationToken,
    fatal: CancellationToken,
    error: Arc<Mutex<Option<Error>>>,
    shared: Arc<driver::Shared>,
    tasks: Tasks,
}

struct Tasks {
    core: JoinHandle<Result<(), Error>>,
    batcher: JoinHandle<()>,
    http: Option<JoinHandle<()>>,
    sender: JoinHandle<()>,
    outbox: std::thread::JoinHandle<()>,
    health: JoinHandle<()>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("height", &self.shared.height.load(Ordering::Relaxed)).finish()
    }
}

impl Validator {
    /// The in-process intake (a [`lamina_interfaces::TxSubmit`]).
    pub fn intake(&self) -> Intake {
        self.intake.clone()
    }

    /// The in-process ordered log (a [`lamina_interfaces::OrderedLog`]).
    pub fn log(&self) -> LocalLog {
        self.log.clone()
    }

    /// Orders a batch that was certified outside this validator's batcher (a chain
    /// builder with its own DA pipeline; the digests-only benchmark). The certificate
    /// must verify against the genesis DA committee; it is kept in the WAL until
    /// ordered, like the batcher's own.
    pub async fn order_certified(&self, cert: lamina_primitives::AvailabilityCertificate) -> Result<(), Error> {
        let input = driver::Input::Certified { cert, cut_at: std::time::Instant::now(), txs: 0 };
        self.to_core.send(input).await.map_err(|_| Error::Internal("the core task stopped".into()))
    }

    /// The committee schedule grew (from the node's governance follower): the
    /// validator starts, ends and follows epochs by it. Only for a validator started with
    /// a schedule ([`start_with_schedule`]).
    pub async fn set_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        schedule.validate().map_err(Error::Config)?;
        let input = driver::Input::Schedule(schedule);
        self.to_core.send(input).await.map_err(|_| Error::Internal("the core task stopped".into()))
    }

    /// Governance's limit on the batches one block orders (`set-param
    /// max_batches_per_block`; `None`: none set), from the node's governance follower:
    /// this validator's proposals order at most it (and at most its own
    /// `max_batches_per_block`). A proposer policy, not a validity rule (see
    /// `lamina_consensus_core::Core::set_batch_limit`).
    pub async fn set_batch_limit(&self, limit: Option<usize>) -> Result<(), Error> {
        let input = driver::Input::BatchLimit(limit);
        self.to_core.send(input).await.map_err(|_| Error::Internal("the core task stopped".into()))
    }

    /// Governance's limit on one batch's blob bytes (`set-param max_batch_bytes`;
    /// `None`: none set), from the node's governance follower: the smallest limit of
    /// the consensus epochs a batch cut now may be ordered in
    /// (`GovernanceState::batch_bytes_from`). This validator's batches stay within it,
    /// and intake refuses a transaction that cannot fit in one; where committees change
    /// by vote, each epoch's core also refuses larger batches (a validity rule,
    /// [`ScheduledEpoch::max_batch_bytes`]).
    pub fn set_batch_bytes(&self, limit: Option<u64>) {
        self.intake.set_batch_bytes(limit);
    }

    /// Finalized height.
    pub fn height(&self) -> u64 {
        self.shared.height.load(Ordering::Relaxed)
    }

    /// The endpoint the validator serves on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Resolves when a local fault (store failure) stopped the validator.
    pub async fn failed(&self) {
        self.fatal.cancelled().await
    }

    /// Graceful stop: intake first, then batching (dispersals in flight finish), then
    /// the core; the WAL and ordered log are synced and closed; the endpoint drains.
    pub async fn stop(self) -> Result<(), Error> {
        self.intake.close();
        self.stop_intake.cancel();
        self.stop_batcher.cancel();
        let _ = self.tasks.batcher.await;
        self.stop_core.cancel();
        let core = self.tasks.core.await.map_err(|e| Error::Internal(format!("core task: {e}")))?;
        // The core task's outbox sender is dropped: the outbox thread drains and closes.
        let outbox = self.tasks.outbox;
        let _ = tokio::task::spawn_blocking(move || outbox.join()).await;
        // The sender ends when the outbox thread drops its channel; the health reporter
        // is aborted. Both are awaited so that their network handles are gone before the
        // endpoint shuts down (and its socket is released).
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.sender).await;
        self.tasks.health.abort();
        let _ = self.tasks.health.await;
        if let Some(h) = self.tasks.http {
            let _ = h.await;
        }
        let ledger = self.ledger.clone();
        let synced = tokio::task::spawn_blocking(move || ledger.sync()).await;
        self.endpoint.shutdown().await;
        core?;
        if let Some(e) = self.error.lock().take() {
            return Err(e);
        }
        match synced {
            Ok(r) => r.map(|_| ()),
            Err(e) => Err(Error::Internal(format!("ledger sync task: {e}"))),
        }
    }
}

/// The keys intake and the log always admit: every genesis node, the genesis clients and
/// the configured `intake_clients`. Others may connect as the node's access policy says
/// (open by default: a transaction's signature and fee authorise it).
fn clients(ctx: &NodeContext, config: &Config) -> PeerSet {
    let mut set = ctx.client_peers();
    for k in &config.intake_clients {
        set = set.with_accept(*k);
    }
    set
}

/// Starts a validator on `endpoint` (bound by the caller with this node's key) with the
/// DA layer `da`. Opens (and recovers) the WAL and ordered log under `ctx.data_dir`.
pub async fn start<D: DataAvailability + 'static>(
    endpoint: Endpoint,
    ctx: NodeContext,
    config: Config,
    da: D,
) -> Result<Validator, Error> {
    start_with_schedule(endpoint, ctx, config, da, None).await
}

/// [`start`] for a network whose committees change by vote: the validator runs the
/// epochs of `schedule` (what its governance follower knows at start; later
/// [`Validator::set_schedule`]), one core per epoch it is a member of, and follows the
/// log through the others. `None` is [`start`]: the genesis committee forever.
pub async fn start_with_schedule<D: DataAvailability + 'static>(
    endpoint: Endpoint,
    ctx: NodeContext,
    config: Config,
    da: D,
    schedule: Option<Schedule>,
) -> Result<Validator, Error> {
    config.validate()?;
    if let Some(s) = &schedule {
        s.validate().map_err(Error::Config)?;
    }
    let genesis = ctx.genesis.clone();
    let core_cfg = config.core_config(&genesis)?;
    let me = core_cfg.validators.index_of(&ctx.node_id());
    if me.is_none() && schedule.is_none() {
        return Err(Error::NotAValidator);
    }
    let ids: Vec<NodeId> = core_cfg.validators.members.clone();

    // Storage: ordered log and WAL, recovered.
    let ledger_dir = ctx.data_dir.join("consensus").join("log");
    let wal_dir = ctx.data_dir.join("consensus").join("wal");
    let intake_dir = ctx.data_dir.join("consensus").join("intake");
    for d in [&ledger_dir, &wal_dir, &intake_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::Config(format!("cannot create {}: {e}", d.display())))?;
    }
    let (ledger, mut wal, replayed, intake_log) = tokio::task::spawn_blocking({
        let (ld, wd, id) = (ledger_dir.clone(), wal_dir.clone(), intake_dir.clone());
        let (ls, ws) = (config.log_segment_bytes, config.wal_segment_bytes);
        let durable = config.mempool.durable_intake;
        move || -> Result<_, Error> {
            let ledger = Ledger::open(&ld, ls)?;
            let (wal, replayed) = wal::Wal::open(&wd, ws)?;
            let intake_log = if durable { Some(intake_log::IntakeLog::open(&id, ws)?) } else { None };
            Ok((ledger, wal, replayed, intake_log))
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("open task: {e}")))??;
    let ledger = Arc::new(ledger);
    let recent = ledger.recent(core_cfg.dedup_window)?;
    let ordered: BTreeSet<Digest> =
        recent.iter().flat_map(|fb| fb.block.batches.iter().map(|c| c.commitment.attestation_digest())).collect();
    // Own certified batches not yet ordered: from the WAL, and from the intake log
    // (certificates made durable there just before a crash may not have reached the WAL).
    let (intake_log, restored) = match intake_log {
        Some((log, restored)) => (Some(Arc::new(log)), restored),
        None => (None, intake_log::Restored::default()),
    };
    let in_flight: Vec<_> = restored.in_flight.into_iter().filter(|(a, _)| !ordered.contains(a)).collect();
    let (batches, settled) = wal::batches_to_restore(replayed.batches, restored.certificates, &ordered);
    // The WAL's batches found ordered are settled, so that it prunes past them.
    wal.batches_settled(settled)?;
    if let Some(log) = &intake_log {
        log.ordered(&ordered.iter().copied().collect::<Vec<_>>())?;
    }
    tracing::info!(
        target: TARGET,
        height = ledger.tip().0,
        wal_records = replayed.records.len(),
        pending_batches = batches.len(),
        "recovered"
    );

    // The core.
    let origin = tokio::time::Instant::now();
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    // Without a schedule the genesis committee's core starts now; with one, the core
    // task starts the core of the epoch the next height belongs to once it knows it.
    let restored_batches: Vec<Digest> = batches.iter().map(|c| c.commitment.attestation_digest()).collect();
    let (core, initial, recovered_wal, carry) = if schedule.is_none() {
        let recovered = Recovered { finalized: recent, wal: replayed.records, batches };
        let (core, initial) = Core::new(
            core_cfg.clone(),
            Arc::new(ctx.keypair.clone()),
            Arc::new(Zip215),
            recovered,
            Duration::ZERO,
            wall,
        )?;
        (Some(core), initial, Vec::new(), Vec::new())
    } else {
        (None, Vec::new(), replayed.records, batches)
    };

    // Mempool and intake.
    let mempool =
        Arc::new(Mutex::new(mempool::Mempool::new(config.mempool.limits(), genesis.chains.iter().map(|c| c.id))));
    // The restored batches a core started now did not take back (one that no longer
    // verifies or does not fit): refused, so queued again below. (With a schedule, the
    // core of the next height's epoch is started by the core task, which does the same.)
    let (refused, limit): (Vec<Digest>, _) = match &core {
        Some(c) => (restored_batches.into_iter().filter(|a| !c.is_pending(a)).collect(), c.config().max_batch_bytes),
        None => (Vec::new(), None),
    };
    {
        // It knows no sender's nonce yet, and its own certified batches not yet ordered
        // hold their transactions and their senders' next transactions until they are.
        let mut mp = mempool.lock();
        mp.recover_from(mempool::now());
        for (a, txs) in in_flight {
            mp.in_flight_until_ordered(a, txs);
        }
    }
    if !restored.transactions.is_empty() {
        // Acknowledged before a crash and never certified: queue them again.
        let mut mp = mempool.lock();
        let now = mempool::now();
        let n = restored.transactions.len();
        let mut dropped = Vec::new();
        for tx in restored.transactions {
            let id = tx.id();
            // Refused (a limit lowered since the restart: the batch limit, the
            // mempool's size or per-sender limits, which nothing in it frees before
            // those transactions go): dropped, so that its record does not hold the
            // log's pruning back for the whole run.
            if let Err(e) = mp.insert(tx, id, now) {
                tracing::error!(target: TARGET, tx = %id, error = %e, "an acknowledged transaction restored from the intake log was refused by the mempool: dropped");
                dropped.push(id);
            }
        }
        if let Some(log) = &intake_log {
            log.forget(&dropped);
        }
        tracing::info!(target: TARGET, transactions = n, dropped = dropped.len(), "restored acknowledged transactions from the intake log");
    }
    let wake = Arc::new(Notify::new());
    let intake =
        Intake::new(mempool.clone(), config.mempool.clone(), genesis.tx_scope(), wake.clone(), config.batch.max_bytes)
            .with_log(intake_log.clone());

    // Network.
    let (in_tx, in_rx) = mpsc::channel(65_536);
    let peers = match &schedule {
        Some(s) => s.peers(ledger.tip().next(), &ctx.node_id()),
        None => PeerSet::dial_entries(&genesis.validators).without(&ctx.node_id()),
    };
    let net = endpoint.register(
        driver::Inbound { tx: in_tx.clone() },
        peers,
        ProtocolConfig::for_protocol::<ConsensusProtocol>(),
    )?;
    let client_peers = clients(&ctx, &config);
    ctx.access.register(
        &endpoint,
        intake::IntakeHandler { intake: intake.clone() },
        client_peers.clone(),
        ProtocolConfig::for_protocol::<IntakeProtocol>(),
    )?;
    let log = LocalLog::new(ledger.clone());
    let mut log_cfg = ProtocolConfig::for_protocol::<LogProtocol>();
    log_cfg.handler_timeout = Duration::from_secs(60);
    ctx.access.register(
        &endpoint,
        logserve::LogHandler { log: log.clone(), max_blocks: config.log_max_blocks },
        client_peers,
        log_cfg,
    )?;

    // Tasks.
    let fatal = CancellationToken::new();
    let error = Arc::new(Mutex::new(None));
    let (out_tx, out_rx) = crossbeam_channel::unbounded();
    let (net_tx, net_rx) = mpsc::unbounded_channel();
    let outbox = {
        let (ledger, fatal, error) = (ledger.clone(), fatal.clone(), error.clone());
        let log_retain = config.log_retain_heights;
        std::thread::Builder::new()
            .name("consensus-wal".into())
            .spawn(move || driver::outbox_thread(wal, ledger, log_retain, out_rx, net_tx, fatal, error))
            .map_err(|e| Error::Internal(format!("cannot start the WAL thread: {e}")))?
    };
    let sender = tokio::spawn(driver::sender_task(net_rx, net.clone(), ledger.clone(), config.log_max_blocks));
    let shared = Arc::new(driver::Shared::default());
    shared.height.store(ledger.tip().0, Ordering::Relaxed);
    let stop_core = CancellationToken::new();
    let scheduled = schedule.is_some();
    let epochs = driver::Epochs {
        template: core_cfg.clone(),
        keypair: ctx.keypair.clone(),
        schedule,
        recovered_wal,
        carry,
        committee: Vec::new(),
        others: Arc::new(Vec::new()),
        follow_at: None,
        follow_next: 0,
        peers: None,
        served: HashMap::new(),
        followed_tip: None,
        batch_limit: None,
    };
    let mut task = driver::CoreTask {
        core,
        epochs,
        origin,
        inbox: in_rx,
        outbox: out_tx,
        ledger: ledger.clone(),
        mempool: mempool.clone(),
        intake_log: intake_log.clone(),
        shared: shared.clone(),
        own_batches: HashMap::new(),
        last_stats: Default::default(),
        batcher_wake: wake.clone(),
    };
    if task.core.is_some() {
        task.set_committee(ids.clone());
    }
    for a in refused {
        task.refused(a, "not taken back by the core at restart", limit)?;
    }
    let core = tokio::spawn({
        let (stop, fatal) = (stop_core.clone(), fatal.clone());
        async move {
            let r = task.run(initial, stop).await;
            if let Err(e) = &r {
                tracing::error!(target: TARGET, error = %e, "core task stopped");
                fatal.cancel();
            }
            r
        }
    });
    let da_status = Arc::new(Mutex::new(batcher::DaStatus::default()));
    let stop_batcher = CancellationToken::new();
    let batcher = tokio::spawn(batcher::run(
        Arc::new(da),
        mempool.clone(),
        config.batch.clone(),
        wake,
        in_tx.clone(),
        da_status.clone(),
        ctx.health.clone(),
        stop_batcher.clone(),
        Duration::from_secs(3),
        intake_log,
        shared.clone(),
        (fatal.clone(), error.clone()),
    ));
    let stop_intake = CancellationToken::new();
    let http_addr = config.http_listen.or_else(|| ctx.entry().and_then(|e| e.http));
    let http = match http_addr {
        Some(addr) => {
            let listener = http::bind(addr).await?;
            tracing::info!(target: TARGET, %addr, "HTTP intake listening");
            Some(tokio::spawn(http::serve(listener, intake.clone(), ledger.clone(), stop_intake.clone())))
        }
        None => None,
    };
    let catching_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    intake.set_readiness({
        // Weak: intake is held by the endpoint's own handlers.
        let (net, need, catching_up, shared) =
            (net.raw().downgrade(), core_cfg.quorum().saturating_sub(1), catching_up.clone(), shared.clone());
        move || {
            let connected = net.upgrade().map_or(0, |n| n.connected_peers().len());
            let leaving_after = shared.leaving_after.load(Ordering::Relaxed);
            if scheduled && shared.epoch_plus_one.load(Ordering::Relaxed) == 0 {
                // Outside the committee nothing would order its batches.
                Some(format!("{OUTSIDE_COMMITTEE}: this validator follows the log; submit to a member"))
            } else if scheduled && leaving_after > 0 {
                // What it already acknowledged is ordered before it leaves (or carried
                // by the members); nothing would order what it accepted later.
                Some(format!(
                    "{OUTSIDE_COMMITTEE} after height {leaving_after}: this validator was removed by vote; submit to a member"
                ))
            } else if connected < need {
                Some(format!("{connected} other validators connected, {need} needed for a quorum"))
            } else if catching_up.load(Ordering::Relaxed) {
                Some(format!("catching up with the committee (at height {})", shared.height.load(Ordering::Relaxed)))
            } else {
                None
            }
        }
    });
    let health = tokio::spawn(report_health(
        ctx.health.clone(),
        net,
        core_cfg.quorum(),
        shared.clone(),
        mempool,
        da_status,
        catching_up,
    ));
    tracing::info!(target: TARGET, index = ?me, validators = ids.len(), addr = %endpoint.local_addr(), "validator started");
    Ok(Validator {
        intake,
        to_core: in_tx,
        log,
        ledger,
        endpoint,
        stop_intake,
        stop_core,
        stop_batcher,
        fatal,
        error,
        shared,
        tasks: Tasks { core, batcher, http, sender, outbox, health },
    })
}

/// Publishes `/readyz` checks and `/status` fields every 500 ms.
async fn report_health(
    health: lamina_interfaces::Health,
    net: lamina_net::Network<ConsensusProtocol>,
    quorum: usize,
    shared: Arc<driver::Shared>,
    mempool: Arc<Mutex<mempool::Mempool>>,
    da: Arc<Mutex<batcher::DaStatus>>,
    catching_up: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut behind_ticks = 0u32;
    loop {
        tick.tick().await;
        let connected = net.connected_peers().len();
        let need = quorum.saturating_sub(1);
        health.set_check("peers", connected >= need, format!("{connected} validators connected, {need} needed"));
        let behind = shared.behind.load(Ordering::Relaxed);
        let height = shared.height.load(Ordering::Relaxed);
        // Catching up for more than a moment (a finalization arriving just before its
        // block is normal under load) makes intake refuse; see `intake_readiness`.
        behind_ticks = if behind { behind_ticks + 1 } else { 0 };
        catching_up.store(behind_ticks >= 4, Ordering::Relaxed);
        health.set_check(
            "caught_up",
            !behind,
            if behind { format!("catching up (at height {height})") } else { format!("at height {height}") },
        );
        let (st, batch_bytes) = {
            let mp = mempool.lock();
            (mp.stats(), mp.batch_bytes())
        };
        ::metrics::gauge!(metrics::MEMPOOL_TXS).set(st.held as f64);
        ::metrics::gauge!(metrics::MEMPOOL_BYTES).set(st.held_bytes as f64);
        ::metrics::gauge!(metrics::MEMPOOL_PARKED).set(st.parked as f64);
        health.set_status("height", height);
        health.set_status("view", shared.view.load(Ordering::Relaxed));
        // The consensus epoch this validator votes in; null while it only follows the
        // log (outside the committee, or waiting for its schedule).
        let epoch = shared.epoch_plus_one.load(Ordering::Relaxed).checked_sub(1);
        health.set_status("consensus_epoch", epoch);
        health.set_status(
            "mempool",
            serde_json::json!({"txs": st.held, "bytes": st.held_bytes, "queued": st.queued, "parked": st.parked, "batches": st.batches}),
        );
        health.set_status("pending_batches", shared.pending_batches.load(Ordering::Relaxed));
        // Governance's limit on the batches of this validator's blocks (null: none set).
        health.set_status("governed_batch_limit", Some(shared.batch_limit.load(Ordering::Relaxed)).filter(|&l| l > 0));
        // Governance's limit on the blob bytes of this validator's batches (null: none).
        health.set_status("governed_batch_bytes", batch_bytes);
        let d = da.lock();
        health.set_status("da_failures", d.consecutive_failures);
    }
}

/// Runs a validator on `endpoint` until `shutdown` (or a local fault), then stops it
/// gracefully. The binary binds the endpoint (so the DA client can share it) and passes
/// the DA client as `da`.
pub async fn run_on<D: DataAvailability + 'static>(
    endpoint: Endpoint,
    ctx: NodeContext,
    config: Config,
    da: D,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let v = start(endpoint, ctx, config, da).await?;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = v.failed() => {}
    }
    v.stop().await
}

/// [`run_on`] with an endpoint bound here on the genesis address with default settings.
pub async fn run<D: DataAvailability + 'static>(
    ctx: NodeContext,
    config: Config,
    da: D,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let endpoint = ctx.bind_endpoint(EndpointConfig::default())?;
    run_on(endpoint, ctx, config, da, shutdown).await
}

/// Registers the `# HELP` text of every metric this crate emits with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    lamina_store::describe_metrics();
    ::metrics::describe_histogram!(
        "lamina_consensus_batch_latency_seconds",
        "Time from cutting one of this validator's own batches to finalization of the block that orders it, in seconds; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_batch_txs_total",
        "Transactions placed into batches cut by this validator, by namespace."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_batches_total",
        "Batches (DA blobs) cut from the mempool by this validator, by namespace."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_certificates_total",
        "Quorum certificates this node assembled from received votes; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_da_failures_total",
        "Failed DA dispersal attempts of a cut batch (each is retried); no labels."
    );
    ::metrics::describe_histogram!(
        "lamina_consensus_finalization_latency_seconds",
        "Time from a block's proposal timestamp (leader wall clock) to its finalization on this node, in seconds; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_consensus_height",
        "Height of the latest block this node finalized, set on each finalization; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_intake_total",
        "Transaction submissions answered by intake, by outcome (accepted, duplicate, busy, too_large, unknown_chain, bad_signature, malformed)."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_intake_signature_passes_total",
        "Intake verifier passes (each checks the signatures of every request queued meanwhile as one batch); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_intake_signatures_total",
        "Signatures checked by intake verifier passes (divided by the passes: the mean batch); no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_consensus_mempool_bytes",
        "Bytes of transactions held in the mempool; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_consensus_mempool_parked",
        "Mempool transactions parked behind a nonce gap (held but not queued for batching); no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_consensus_mempool_txs",
        "Transactions held in the mempool (from intake until the block ordering their batch finalizes, parked ones included); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_messages_total",
        "Consensus messages received from validators, by kind (propose, notarize, nullify, finalize, certificate, batch, sync_request, sync_response, finalized)."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_nonce_gaps_released_total",
        "Parked transactions queued for batching because their nonce gap stayed open past nonce_gap_ms (or new_sender_wait_ms for a new sender); no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_peer_faults_total",
        "Peer messages rejected by the consensus engine, by kind (invalid_signature, impersonation, equivocation, invalid_proposal, not_leader, invalid_certificate, invalid_finalized_block, invalid_batch, malformed)."
    );
    ::metrics::describe_gauge!(
        "lamina_consensus_pending_batches",
        "DA-certified batches waiting to be ordered in a block; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_proposals_total",
        "Block proposals made by this validator as leader; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_timeouts_total",
        "Leader or notarization timer expiries that made this validator nullify a view it had not yet voted in; no labels."
    );
    ::metrics::describe_gauge!(
        "lamina_consensus_view",
        "Current consensus view of this node, updated after every engine step; no labels."
    );
    ::metrics::describe_counter!(
        "lamina_consensus_votes_total",
        "Votes sent by this validator, by kind (notarize, nullify, finalize)."
    );
    ::metrics::describe_histogram!(
        "lamina_consensus_wal_sync_seconds",
        "Duration of each consensus WAL fsync made before sending messages, in seconds; no labels."
    );
}
