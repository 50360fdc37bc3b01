//! Following on-chain governance: the governance namespace of the ordered log replayed
//! into a [`GovernanceState`], for `lamina gov` and for module nodes that apply each
//! epoch's client keys to their client-facing protocols without a restart.
//!
//! The state is a pure function of the log (`lamina-governance-core`), so a follower
//! needs only a log reader and a DA reader: it reads every block, fetches the squares
//! whose certificates name [`Namespace::GOVERNANCE`] and applies their transactions;
//! heights without governance data cost one block read and no DA fetch. A node's
//! follower saves its state at each epoch change (`<data>/governance/state.json`, a cache
//! bound to the genesis digest) so a restart resumes there instead of at height 1.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lamina_governance_core::{Event, GovernanceState};
use lamina_interfaces::{DataAvailability, Genesis, LogError, OrderedLog, inputs};
use lamina_net::{Access, GovernedClients};
use lamina_primitives::{Committee, DataCommitment, Digest, Height, Namespace};
use tokio_util::sync::CancellationToken;

/// Blocks asked for per log read.
const READ_BATCH: usize = 256;
/// How long one DA fetch of a governance square is retried before giving up.
const DA_PATIENCE: Duration = Duration::from_secs(30);
/// Pause after a failed read before the next attempt (module nodes).
const RETRY: Duration = Duration::from_secs(1);

/// A governance state kept up to date from a log and a DA layer.
pub struct Follower<L, D> {
    log: L,
    da: D,
    genesis: Digest,
    state: GovernanceState,
    /// The next block to read.
    next: Height,
    /// Where the state is saved at each epoch change, if anywhere.
    save: Option<PathBuf>,
    /// Events of blocks applied by a step that then failed: returned by the next one.
    pending: Vec<Event>,
    /// Serialises saves and holds the height of the last state written: a save of a
    /// state no newer (a background save that ran late) writes nothing.
    saving: std::sync::Arc<std::sync::Mutex<Height>>,
    /// Called with the state after every step ([`Follower::observe`]).
    observer: Option<Observer>,
}

/// What [`Follower::observe`] registers.
type Observer = Box<dyn Fn(&GovernanceState) + Send + Sync>;

/// What [`Follower::save`] writes: the state and the genesis it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    genesis: Digest,
    state: GovernanceState,
}

impl<L: OrderedLog, D: DataAvailability> Follower<L, D> {
    /// A follower at genesis (height 0).
    pub fn new(genesis: &Genesis, log: L, da: D) -> Self {
        Follower {
            log,
            da,
            genesis: genesis.digest(),
            state: GovernanceState::new(genesis),
            next: Height(1),
            save: None,
            pending: Vec::new(),
            saving: Default::default(),
            observer: None,
        }
    }

    /// Calls `f` with the state now and after every step (cheap work only: it runs on
    /// the follower's task). A reader of the log through a `LogClient` uses it to keep
    /// the client's committee schedule as far ahead as governance decided it.
    pub fn observe(mut self, f: impl Fn(&GovernanceState) + Send + Sync + 'static) -> Self {
        f(&self.state);
        self.observer = Some(Box::new(f));
        self
    }

    /// A follower that resumes from the state saved in `dir` (if it is there, readable
    /// and of this genesis; otherwise from genesis) and saves there at each epoch change.
    pub fn resume(genesis: &Genesis, log: L, da: D, dir: &Path) -> Self {
        let mut f = Follower::new(genesis, log, da);
        let path = dir.join("state.json");
        match std::fs::read(&path).map(|b| serde_json::from_slice::<Saved>(&b)) {
            Ok(Ok(saved)) if saved.genesis == f.genesis && !saved.state.is_complete() => {
                tracing::warn!(target: "lamina::governance", path = %path.display(), height = saved.state.height().0, "saved governance state is of an earlier release (no DA committees or block limits in its committee schedule); replaying from height 1")
            }
            Ok(Ok(saved)) if saved.genesis == f.genesis => {
                f.next = saved.state.height().next();
                f.state = saved.state;
            }
            Ok(Ok(_)) => {
                tracing::warn!(target: "lamina::governance", path = %path.display(), "saved governance state is of another genesis; replaying from height 1")
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "lamina::governance", path = %path.display(), error = %e, "saved governance state unreadable; replaying from height 1")
            }
            Err(_) => {}
        }
        f.save = Some(path);
        f
    }

    /// The replayed state.
    pub fn state(&self) -> &GovernanceState {
        &self.state
    }

    /// Reads the next blocks (waiting for them as the log's `read` does), applies them
    /// and advances the state to the last one read. Returns the events, including those
    /// of blocks a failed call applied before its failure.
    pub async fn step(&mut self) -> anyhow::Result<Vec<Event>> {
        let blocks = self.log.read(self.next, READ_BATCH).await.map_err(|e| match e {
            LogError::Pruned { oldest, .. } => anyhow::anyhow!(
                "the log is pruned below height {}: governance replays it from height 1 (or from a node's saved \
                 state); governance snapshots from peers are not built",
                oldest.0
            ),
            e => anyhow::anyhow!("cannot read the log from height {}: {e}", self.next.0),
        })?;
        let changed_epoch = self.state.epoch().number;
        for block in &blocks {
            let height = block.height();
            let certs: Vec<_> = inputs::namespace_certs(block, Namespace::GOVERNANCE).collect();
            if !certs.is_empty() {
                tracing::debug!(target: "lamina::governance", height = height.0, squares = certs.len(), "fetching governance data");
                let mut squares = Vec::with_capacity(certs.len());
                for c in certs {
                    squares.push(self.square(&c.commitment).await?);
                }
                let txs = inputs::namespace_transactions(Namespace::GOVERNANCE, &squares).txs;
                let events = self.state.apply_block(height, &txs)?;
                self.pending.extend(events);
            }
            self.next = height.next();
        }
        if let Some(last) = blocks.last().map(|b| b.height())
            && last > self.state.height()
        {
            let events = self.state.apply_block(last, &[])?;
            self.pending.extend(events);
        }
        if self.state.epoch().number != changed_epoch {
            self.save_in_background();
        }
        if let Some(f) = &self.observer {
            f(&self.state);
        }
        Ok(std::mem::take(&mut self.pending))
    }

    /// Reads and applies every block up to the log's tip now.
    pub async fn catch_up(&mut self) -> anyhow::Result<Vec<Event>> {
        let tip = self.log.tip().await.context("cannot read the log's tip")?;
        let mut events = Vec::new();
        while self.next <= tip {
            events.extend(self.step().await?);
        }
        Ok(events)
    }

    /// The governance blobs of one square, retried for [`DA_PATIENCE`]. A square
    /// unusable for everyone counts as empty, as it does for every replica.
    async fn square(&self, commitment: &DataCommitment) -> anyhow::Result<Vec<Vec<u8>>> {
        let started = Instant::now();
        loop {
            match self.da.get_namespace(commitment, Namespace::GOVERNANCE).await {
                Ok(blobs) => return Ok(blobs),
                Err(e) if e.is_final_for_everyone() => return Ok(Vec::new()),
                Err(e) if started.elapsed() >= DA_PATIENCE => {
                    bail!("cannot fetch the governance data of square {} from DA: {e}", commitment.data_root)
                }
                Err(e) => {
                    tracing::debug!(target: "lamina::governance", root = %commitment.data_root, error = %e, "DA fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
            }
        }
    }

    /// Saves the state now (for [`Follower::resume`]), on the calling thread; a
    /// follower made by [`Follower::new`] has nowhere to save and does nothing.
    pub fn save(&self) {
        if let Some(path) = &self.save {
            write_saved(path, &Saved { genesis: self.genesis, state: self.state.clone() }, &self.saving);
        }
    }

    /// [`Follower::save`] on a blocking thread (a node's follower runs on the runtime).
    fn save_in_background(&self) {
        if let Some(path) = self.save.clone() {
            let saved = Saved { genesis: self.genesis, state: self.state.clone() };
            let saving = self.saving.clone();
            tokio::task::spawn_blocking(move || write_saved(&path, &saved, &saving));
        }
    }
}

/// Writes `saved` where [`Follower::resume`] finds it (write, sync, rename), one writer at
/// a time, unless a state at least as new was written already. A failure is logged: the
/// file is a cache, and the next epoch change tries again.
fn write_saved(path: &Path, saved: &Saved, saving: &std::sync::Mutex<Height>) {
    let mut last = saving.lock().unwrap_or_else(|e| e.into_inner());
    if saved.state.height() <= *last {
        return;
    }
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // One writer per process: concurrent `lamina gov` commands never share a tmp file.
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    match write() {
        Ok(()) => *last = saved.state.height(),
        Err(e) => {
            tracing::warn!(target: "lamina::governance", path = %path.display(), error = %e, "cannot save the governance state")
        }
    }
}

/// The nonces `lamina gov` used per member key on one network
/// (`$XDG_DATA_HOME/lamina/governance/<genesis digest>/nonces/<key>`), so that commands
/// in quick succession (or with `--no-wait`) never reuse one the log has not shown yet.
pub struct NonceBook {
    dir: PathBuf,
}

/// Where `lamina gov` keeps what it knows of `genesis`'s network
/// (`$XDG_DATA_HOME/lamina/governance/<genesis digest>/`), if there is a data directory.
pub fn cli_dir(genesis: &Genesis) -> Option<PathBuf> {
    let d = directories::ProjectDirs::from("", "", "lamina")?;
    Some(d.data_dir().join("governance").join(genesis.digest().to_string()))
}

impl NonceBook {
    /// The book of `genesis`'s network, if there is a data directory.
    pub fn for_network(genesis: &Genesis) -> Option<NonceBook> {
        Some(NonceBook { dir: cli_dir(genesis)?.join("nonces") })
    }

    /// One past the last nonce used for `key` (0 if none).
    pub fn next(&self, key: &lamina_primitives::PublicKey) -> u64 {
        std::fs::read_to_string(self.dir.join(key.to_hex()))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(0, |n| n.saturating_add(1))
    }

    /// Records that `nonce` was used for `key` (best effort).
    pub fn used(&self, key: &lamina_primitives::PublicKey, nonce: u64) {
        if nonce < self.next(key) {
            return;
        }
        let _ = std::fs::create_dir_all(&self.dir);
        let _ = crate::home::write_atomic(&self.dir.join(key.to_hex()), format!("{nonce}\n").as_bytes());
    }
}

/// The client keys of the current epoch, relative to the genesis's.
pub fn governed_clients(genesis: &Genesis, state: &GovernanceState) -> GovernedClients {
    let now = &state.epoch().membership.clients;
    let mut added: Vec<_> =
        now.iter().filter(|c| !genesis.clients.iter().any(|g| g.key == c.key)).map(|c| c.key).collect();
    // A validator added by vote disperses its batches to DA and reads the log like a
    // genesis node, and a DA node added by vote reads the log and the other DA nodes
    // (where committees change by vote).
    if genesis.governance.committee_changes {
        let validators = &state.epoch().membership.validators;
        added.extend(validators.iter().filter(|v| !genesis.validators.iter().any(|g| g.key == v.key)).map(|v| v.key));
        let da = &state.epoch().membership.da_nodes;
        added.extend(da.iter().filter(|v| !genesis.da_nodes.iter().any(|g| g.key == v.key)).map(|v| v.key));
    }
    GovernedClients {
        added,
        removed: genesis.clients.iter().filter(|g| !now.iter().any(|c| c.key == g.key)).map(|g| g.key).collect(),
    }
}

/// Governance's parameters as a node's follower has applied them: what the execution
/// and settlement layers read a chain's fee and the bridge's inflow limit at a height from
/// ([`lamina_interfaces::ParamsRegistry`]). The follower publishes after each step: the
/// schedule first, then how far it is final, so a reader that sees it final through `h`
/// gets a schedule that answers every height up to `h` as any later one does.
pub struct GovernedParams {
    schedule: std::sync::RwLock<std::sync::Arc<lamina_governance_core::ParamSchedule>>,
    final_through: std::sync::atomic::AtomicU64,
}

impl GovernedParams {
    /// The parameters of `state`.
    pub fn new(state: &GovernanceState) -> std::sync::Arc<Self> {
        std::sync::Arc::new(GovernedParams {
            schedule: std::sync::RwLock::new(std::sync::Arc::new(state.schedule().clone())),
            final_through: std::sync::atomic::AtomicU64::new(Self::final_of(state).0),
        })
    }

    /// The first boundary after the last height `state` applied: no change decided
    /// later can apply before the height after it.
    fn final_of(state: &GovernanceState) -> Height {
        let l = state.params().epoch_length.max(1);
        Height((state.height().0 / l).saturating_add(1).saturating_mul(l))
    }

    /// Publishes `state`'s parameters and height.
    pub fn publish(&self, state: &GovernanceState) {
        let changed = **self.schedule.read().unwrap_or_else(|e| e.into_inner()) != *state.schedule();
        if changed {
            // One writer (the follower's task): nothing changes between the check and here.
            *self.schedule.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(state.schedule().clone());
        }
        self.final_through.fetch_max(Self::final_of(state).0, std::sync::atomic::Ordering::Release);
    }

    fn schedule(&self) -> std::sync::Arc<lamina_governance_core::ParamSchedule> {
        self.schedule.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Governance's parameter name for a layer's.
fn param_of(param: lamina_interfaces::GovernedParam) -> lamina_governance_core::Param {
    use lamina_governance_core::Param;
    use lamina_interfaces::GovernedParam as G;
    match param {
        G::Fee(chain) => Param::Fee { chain },
        G::BridgeInflowLimit => Param::BridgeInflowLimit,
        G::BridgeWindowHeights => Param::BridgeWindowHeights,
        G::ChallengeWindow => Param::ChallengeWindow,
    }
}

impl lamina_interfaces::ParamsView for GovernedParams {
    fn value(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<u64> {
        self.schedule().value_at(param_of(param), height)
    }

    fn since(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<Height> {
        self.schedule().since(param_of(param), height)
    }
}

/// [`GovernedParams`] frozen at one publication ([`lamina_interfaces::ParamsRegistry::frozen`]).
struct FrozenParams {
    schedule: std::sync::Arc<lamina_governance_core::ParamSchedule>,
    final_through: Height,
}

impl lamina_interfaces::ParamsView for FrozenParams {
    fn value(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<u64> {
        self.schedule.value_at(param_of(param), height)
    }

    fn since(&self, param: lamina_interfaces::GovernedParam, height: Height) -> Option<Height> {
        self.schedule.since(param_of(param), height)
    }
}

impl lamina_interfaces::ParamsRegistry for FrozenParams {
    fn final_through(&self) -> Height {
        self.final_through
    }

    fn serves_from(&self) -> Height {
        self.schedule.serves_from()
    }

    fn frozen(&self) -> std::sync::Arc<dyn lamina_interfaces::ParamsRegistry> {
        std::sync::Arc::new(FrozenParams { schedule: self.schedule.clone(), final_through: self.final_through })
    }
}

impl lamina_interfaces::ParamsRegistry for GovernedParams {
    fn final_through(&self) -> Height {
        Height(self.final_through.load(std::sync::atomic::Ordering::Acquire))
    }

    fn serves_from(&self) -> Height {
        self.schedule().serves_from()
    }

    fn frozen(&self) -> std::sync::Arc<dyn lamina_interfaces::ParamsRegistry> {
        // `final_through` first: the schedule read after it answers at least that far.
        let final_through = lamina_interfaces::ParamsRegistry::final_through(self);
        std::sync::Arc::new(FrozenParams { schedule: self.schedule(), final_through })
    }
}

/// Follows governance until `shutdown` and applies each epoch's client keys to
/// `access` (they matter where client access is restricted, and for who may store on
/// DA), and publishes the parameters to `params` (if given: nodes that read them) after
/// every step. Calls `on_update` (which must be cheap)
/// with the state at the start and after every step. Reports the epoch
/// (and the last error, while retrying) in `/status` (`governance`) and as
/// `lamina_governance_epoch`.
pub fn spawn_client_access<L, D>(
    genesis: std::sync::Arc<Genesis>,
    mut follower: Follower<L, D>,
    access: Access,
    params: Option<std::sync::Arc<GovernedParams>>,
    health: lamina_interfaces::Health,
    on_update: impl Fn(&GovernanceState) + Send + 'static,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    L: OrderedLog + Send + Sync + 'static,
    D: DataAvailability + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut applied = None;
        let mut last_error: Option<String> = None;
        let mut backoff = RETRY;
        let publish = |state: &GovernanceState| {
            if let Some(p) = &params {
                p.publish(state);
            }
        };
        on_update(follower.state());
        publish(follower.state());
        loop {
            let clients = governed_clients(&genesis, follower.state());
            if applied.as_ref() != Some(&clients) {
                let epoch = follower.state().epoch().number;
                tracing::info!(target: "lamina::governance", epoch, added = clients.added.len(), removed = clients.removed.len(), "applying the epoch's client keys");
                access.set_governed_clients(clients.clone());
                applied = Some(clients);
            }
            let s = follower.state();
            health.set_status(
                "governance",
                serde_json::json!({
                    "height": s.height().0,
                    "epoch": s.epoch().number,
                    "first_height": s.epoch().first_height.0,
                    "error": last_error,
                }),
            );
            metrics::gauge!("lamina_governance_epoch").set(s.epoch().number as f64);
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = follower.step() => {
                    publish(follower.state());
                    match r {
                        Ok(_) => {
                            last_error = None;
                            backoff = RETRY;
                            // After every step, not only those with events: the
                            // committee schedule's reach grows with the height.
                            on_update(follower.state());
                        }
                        Err(e) => {
                            // A pruned log or a DA outage: retried, slower each time (up to
                            // a minute), with the reason in /status meanwhile.
                            tracing::warn!(target: "lamina::governance", error = %format!("{e:#}"), retry_in = ?backoff, "governance follower: retrying");
                            last_error = Some(format!("{e:#}"));
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(60));
                        }
                    }
                }
            }
        }
    })
}

/// [`spawn_client_access`] on a node that reads the log and DA as a client (execution,
/// settlement): its own log reader, state saved under `<data>/governance`. Returns the
/// parameters it publishes.
pub fn spawn_on_client_node(
    ctx: &crate::context::NodeContext,
    log: &lamina_consensus_client::LogClient,
    da: &std::sync::Arc<lamina_da_client::DaClient>,
    intake: &lamina_consensus_client::IntakeClient,
    plan: &crate::peers::PlanHandle,
    shutdown: &CancellationToken,
) -> std::sync::Arc<GovernedParams> {
    let genesis = ctx.genesis().clone();
    let dir = ctx.service.data_dir.join("governance");
    let follower = Follower::resume(&genesis, log.independent_reader(), da.clone(), &dir);
    let params = GovernedParams::new(follower.state());
    let (log, intake, g, plan, da) = (log.clone(), intake.clone(), genesis.clone(), plan.clone(), da.clone());
    spawn_client_access(
        genesis,
        follower,
        ctx.service.access.clone(),
        Some(params.clone()),
        ctx.health().clone(),
        move |state| {
            follow_committees_with(&log, Some(&intake), &g, state);
            // Reading needs n - t + 1 of the current DA committee.
            if let Some(committees) = da_committees(&g, state) {
                committees.apply(&da);
                let (c, nodes) = committees.current();
                let need = c.members.size().saturating_sub(c.threshold) + 1;
                plan.set_group("da_nodes", nodes, Some(crate::peers::Need::AtLeast(need)));
            }
            // The epoch's validators count for readiness (a reader needs f + 1 of them).
            if let Some(validators) = member_validators(&g, state) {
                let need = Committee { members: validators.iter().map(|v| v.key).collect() }.max_faulty() + 1;
                plan.set_group("validators", validators, Some(crate::peers::Need::AtLeast(need)));
            }
        },
        shutdown.clone(),
    );
    params
}

/// Follows governance for a client that is not a node (the load generator): points
/// `log` and `intake` at each epoch's committee ([`follow_committees_with`]), replaying
/// the log from height 1 (nothing is saved) and retrying a failed step a second
/// later. `None` where the committee never changes; abort the task to stop it.
pub fn spawn_committee_follower(
    genesis: &Genesis,
    log: &lamina_consensus_client::LogClient,
    da: Arc<lamina_da_client::DaClient>,
    intake: &lamina_consensus_client::IntakeClient,
) -> Option<tokio::task::JoinHandle<()>> {
    if !genesis.governance.committee_changes {
        return None;
    }
    let (l, i, g, d) = (log.clone(), intake.clone(), genesis.clone(), da.clone());
    let mut follower = Follower::new(genesis, log.independent_reader(), da).observe(move |state| {
        follow_committees_with(&l, Some(&i), &g, state);
        follow_da_committees(&d, &g, state);
    });
    Some(tokio::spawn(async move {
        loop {
            if let Err(e) = follower.step().await {
                tracing::warn!(target: "lamina::governance", error = %format!("{e:#}"), retry_in = ?RETRY, "committee follower: retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }))
}

/// A command-line follower of the log and DA layer of `genesis`, over a log client it
/// registers on `endpoint` and the command's DA client `da` (`source` names the network
/// in errors), resuming from what
/// the last command on this network replayed ([`cli_dir`]), so only the first command
/// reads the whole log. Where committees change, each block is checked against its
/// height's committee.
pub async fn cli_follower(
    endpoint: &lamina_net::Endpoint,
    genesis: &Genesis,
    da: Arc<lamina_da_client::DaClient>,
    source: &str,
    connect: std::time::Duration,
) -> anyhow::Result<Follower<lamina_consensus_client::LogClient, Arc<lamina_da_client::DaClient>>> {
    use anyhow::Context as _;
    let log = lamina_consensus_client::LogClient::register(endpoint, genesis).context("cannot start the log client")?;
    log.wait_for_validators(1, connect)
        .await
        .with_context(|| format!("no validator of {source} answered for the log"))?;
    let (reader, g, d) = (log.clone(), genesis.clone(), da.clone());
    let follower = match cli_dir(genesis) {
        Some(dir) => Follower::resume(genesis, log, da, &dir),
        None => Follower::new(genesis, log, da),
    };
    Ok(follower.observe(move |state| {
        follow_committees(&reader, &g, state);
        follow_da_committees(&d, &g, state);
    }))
}

/// Where committees change by vote, the committee a command-line client submits to
/// ([`intake_committee`]), from a replay by [`cli_follower`] (kept for the next
/// command); `None` elsewhere.
pub async fn cli_committee(
    endpoint: &lamina_net::Endpoint,
    genesis: &Genesis,
    da: Arc<lamina_da_client::DaClient>,
    source: &str,
    connect: std::time::Duration,
) -> anyhow::Result<Option<Vec<lamina_interfaces::NodeEntry>>> {
    if !genesis.governance.committee_changes {
        return Ok(None);
    }
    let mut follower = cli_follower(endpoint, genesis, da, source, connect).await?;
    follower.catch_up().await?;
    follower.save();
    Ok(intake_committee(genesis, follower.state()))
}

/// Where committees change by vote (`[governance] committee_changes`): the validators
/// of `state`'s epoch, for the peer plans' `validators` groups, so that a validator
/// added by vote passes every node's `lamina/node/1` check and readiness counts the
/// epoch's committee; `None` where the genesis committee stays.
pub fn member_validators(genesis: &Genesis, state: &GovernanceState) -> Option<Vec<lamina_interfaces::NodeEntry>> {
    genesis.governance.committee_changes.then(|| state.epoch().membership.validators.clone())
}

/// The consensus committee schedule `state` decided, for a validator's
/// [`lamina_consensus_service::Validator::set_schedule`]: each consensus epoch kept, with
/// each validator's address from the current membership (else the genesis; a validator
/// known to neither, of an old epoch, gets an unroutable address: it is never dialed,
/// but may dial in), final through `state.committee_known_through()`.
pub fn consensus_schedule(genesis: &Genesis, state: &GovernanceState) -> lamina_consensus_service::Schedule {
    let entry = |key: &lamina_primitives::PublicKey| {
        let known = state.epoch().membership.validators.iter().chain(genesis.validators.iter()).find(|v| v.key == *key);
        known.cloned().unwrap_or_else(|| lamina_interfaces::NodeEntry {
            name: "validator-unknown".into(),
            key: *key,
            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            http: None,
            admin: None,
            chain: None,
        })
    };
    lamina_consensus_service::Schedule {
        epochs: state
            .committees()
            .map(|c| lamina_consensus_service::ScheduledEpoch {
                epoch: c.epoch,
                first_height: c.first_height,
                validators: c.validators.iter().map(entry).collect(),
                da: (!c.da_nodes.is_empty()).then(|| genesis.da_committee_of(c.da_nodes.clone(), c.da_threshold)),
                max_batches: (c.max_batches_per_block > 0)
                    .then(|| usize::try_from(c.max_batches_per_block).unwrap_or(usize::MAX)),
                max_batch_bytes: (c.max_batch_bytes > 0).then_some(c.max_batch_bytes),
            })
            .collect(),
        known_through: state.committee_known_through(),
    }
}

/// Where committees change by vote (`[governance] committee_changes`): points `log`
/// (and every clone of it) at the committee of each height that `state` decided, and at
/// the validators of the current and later epochs. Elsewhere it does nothing (the
/// genesis committee orders every height).
pub fn follow_committees(log: &lamina_consensus_client::LogClient, genesis: &Genesis, state: &GovernanceState) {
    follow_committees_with(log, None, genesis, state);
}

/// [`follow_committees`], and points `intake` (and every clone of it), if given, at the
/// committee that orders the heights after `state`'s, so that transactions go to
/// validators that take them: those of that consensus epoch (validators added by vote
/// included, once their epoch starts) that are also in the last epoch known, since one
/// that leaves refuses new transactions from when it knows (the whole epoch if none
/// stays).
pub fn follow_committees_with(
    log: &lamina_consensus_client::LogClient,
    intake: Option<&lamina_consensus_client::IntakeClient>,
    genesis: &Genesis,
    state: &GovernanceState,
) {
    if !genesis.governance.committee_changes {
        return;
    }
    let schedule = consensus_schedule(genesis, state);
    let validators: Vec<lamina_interfaces::NodeEntry> =
        schedule.current_validators(state.height().next()).into_iter().cloned().collect();
    log.set_schedule(schedule.committees(), &validators);
    if let Some(intake) = intake
        && let Some(committee) = committee_for_intake(&schedule, state)
    {
        intake.set_validators(&committee);
    }
}

/// Where committees change by vote (`[governance] committee_changes`), the DA
/// committees `state` decided, for a DA client ([`lamina_da_client::DaClient::set_committees`]):
/// the committee of the heights after `state`'s first (a client disperses to it: a
/// batch certified by it is ordered in its consensus epoch or the next, whose core still
/// accepts it), then the later ones known, then the older ones kept, newest first (a
/// square is looked for under each in turn); and the addresses of their nodes known
/// from the current membership or the genesis. `None` elsewhere: the genesis committee
/// stays.
pub fn da_committees(genesis: &Genesis, state: &GovernanceState) -> Option<GovernedDa> {
    if !genesis.governance.committee_changes {
        return None;
    }
    let epochs: Vec<&lamina_governance_core::CommitteeEpoch> =
        state.committees().filter(|c| !c.da_nodes.is_empty()).collect();
    let next = state.height().next();
    let current = epochs.iter().rposition(|c| c.first_height <= next).unwrap_or(0);
    let order = std::iter::once(current).chain(current + 1..epochs.len()).chain((0..current).rev());
    let mut committees: Vec<lamina_primitives::DaCommittee> = Vec::new();
    for i in order {
        let c = genesis.da_committee_of(epochs[i].da_nodes.clone(), epochs[i].da_threshold);
        if !committees.contains(&c) {
            committees.push(c);
        }
    }
    let known = state.epoch().membership.da_nodes.iter().chain(genesis.da_nodes.iter());
    let mut nodes: Vec<lamina_interfaces::NodeEntry> = Vec::new();
    for n in known {
        let wanted = committees.iter().any(|c| c.members.members.contains(&n.key));
        if wanted && !nodes.iter().any(|m| m.key == n.key) {
            nodes.push(n.clone());
        }
    }
    Some(GovernedDa { committees, nodes })
}

/// The DA committees governance decided, in a client's order ([`da_committees`]) (not to be
/// confused with `lamina_da_service::DaCommittees`, what a DA node stores for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GovernedDa {
    /// The committee of the next heights first, then the later ones, then the older.
    pub committees: Vec<lamina_primitives::DaCommittee>,
    /// The entries (addresses) of their nodes that are known.
    pub nodes: Vec<lamina_interfaces::NodeEntry>,
}

impl GovernedDa {
    /// Points `da` at these committees and dials their nodes.
    pub fn apply(&self, da: &lamina_da_client::DaClient) {
        da.set_committees(self.committees.clone(), &self.nodes);
    }

    /// The committee a client disperses to, with its nodes' entries (for the peer
    /// plans' `da_nodes` groups).
    pub fn current(&self) -> (&lamina_primitives::DaCommittee, Vec<lamina_interfaces::NodeEntry>) {
        let current = &self.committees[0];
        let entries = self.nodes.iter().filter(|n| current.members.members.contains(&n.key)).cloned().collect();
        (current, entries)
    }
}

/// Points `da` at the DA committees `state` decided ([`da_committees`]); does nothing
/// where committees do not change.
pub fn follow_da_committees(da: &lamina_da_client::DaClient, genesis: &Genesis, state: &GovernanceState) {
    if let Some(c) = da_committees(genesis, state) {
        c.apply(da);
    }
}

/// Where committees change by vote, the validators a client should submit to after
/// `state`'s height (see [`follow_committees_with`]); `None` elsewhere (the genesis
/// validators order every height).
pub fn intake_committee(genesis: &Genesis, state: &GovernanceState) -> Option<Vec<lamina_interfaces::NodeEntry>> {
    genesis.governance.committee_changes.then(|| committee_for_intake(&consensus_schedule(genesis, state), state))?
}

/// The validators of the consensus epoch after `state`'s height that are also in the
/// last epoch known (a leaving validator refuses new transactions from when it knows);
/// the whole epoch if none stays.
fn committee_for_intake(
    schedule: &lamina_consensus_service::Schedule,
    state: &GovernanceState,
) -> Option<Vec<lamina_interfaces::NodeEntry>> {
    let current = schedule.epoch_for(state.height().next()).or(schedule.epochs.last())?;
    let last = schedule.epochs.last()?;
    let stays: Vec<lamina_interfaces::NodeEntry> =
        current.validators.iter().filter(|v| last.validators.iter().any(|l| l.key == v.key)).cloned().collect();
    Some(if stays.is_empty() { current.validators.clone() } else { stays })
}

/// The voting members of an epoch (weight above 0) with their next nonces, and its
/// number: what a validator's intake admits governance transactions from.
#[derive(Debug, Default)]
pub struct Members {
    /// The epoch.
    pub epoch: u64,
    /// Each member's key and the smallest nonce the log still accepts from it.
    pub next: std::collections::BTreeMap<lamina_primitives::PublicKey, u64>,
    /// The network governance entries must name.
    pub network: Digest,
}

impl Members {
    /// The members of `state`'s current epoch, with their nonces.
    pub fn of(state: &GovernanceState) -> Self {
        let m = &state.epoch().membership.members;
        Members {
            network: state.params().network,
            epoch: state.epoch().number,
            next: m.iter().filter(|m| m.weight > 0).map(|m| (m.key, state.next_nonce(&m.key))).collect(),
        }
    }

    /// Why `tx` is not admitted: a governance transaction from a key that is not a
    /// member, with a nonce the log already used (a replay of a member's old
    /// transaction, which anyone could resend), as this node's follower sees the log, or
    /// signed for another network.
    /// `None` for every other transaction.
    pub fn refuse(&self, tx: &lamina_primitives::Transaction) -> Option<String> {
        if tx.chain_id != lamina_governance_core::GOVERNANCE_CHAIN {
            return None;
        }
        match self.next.get(&tx.sender) {
            None => Some(format!(
                "{} is not a voting member of governance epoch {}: only members may send governance transactions",
                tx.sender, self.epoch
            )),
            Some(&next) if tx.nonce < next => {
                Some(format!("nonce {} of {} is already used (next is {next}): a replay", tx.nonce, tx.sender))
            }
            // Decoded only for members' governance transactions (rare): an entry signed
            // for another network would only be rejected in the log.
            Some(_) => match lamina_governance_core::Entry::envelope(tx) {
                Ok(e) if e.network != self.network => {
                    Some(format!("the entry is signed for network {}, not this network {}", e.network, self.network))
                }
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_governance_core::{Entry, GOVERNANCE_CHAIN};
    use lamina_interfaces::{Blob, DaError, InMemoryLog};
    use lamina_primitives::{
        AvailabilityCertificate, Block, BlockHeader, ChainId, FinalizedBlock, Keypair, Transaction, TxScope,
    };

    /// A DA layer with nothing in it (the blocks below carry no governance data).
    struct NoDa;
    impl DataAvailability for NoDa {
        async fn submit(&self, _: Vec<Blob>) -> Result<AvailabilityCertificate, DaError> {
            Err(DaError::Unavailable("none".into()))
        }
        async fn get_namespace(&self, _: &DataCommitment, _: Namespace) -> Result<Vec<Vec<u8>>, DaError> {
            Err(DaError::Unavailable("none".into()))
        }
    }

    /// Validator `i`: key `Keypair::for_testing(i)`, a local address.
    fn validator(i: u64) -> lamina_interfaces::NodeEntry {
        lamina_interfaces::NodeEntry {
            name: format!("validator-{i}"),
            key: Keypair::for_testing(i).public(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
            http: None,
            admin: None,
            chain: None,
        }
    }

    fn log_of(heights: u64) -> InMemoryLog {
        let log = InMemoryLog::new();
        let mut parent = Digest::ZERO;
        for h in 1..=heights {
            let block =
                Block { header: BlockHeader { height: Height(h), parent, ..Default::default() }, batches: vec![] };
            parent = block.digest();
            log.append(FinalizedBlock { block, certificate: Default::default() }).unwrap();
        }
        log
    }

    #[tokio::test]
    async fn a_follower_resumes_from_its_saved_state_of_the_same_genesis_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = crate::genesis::empty("resume");
        g.governance.epoch_length = 10;
        let mut f = Follower::resume(&g, log_of(25), NoDa, dir.path());
        f.catch_up().await.unwrap();
        assert_eq!((f.state().height(), f.state().epoch().number), (Height(25), 2));
        // Saved at the epoch change (height 20); an explicit save keeps height 25.
        f.save();
        let text = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
        let again = Follower::resume(&g, log_of(25), NoDa, dir.path());
        assert_eq!(again.state().digest(), f.state().digest());
        assert_eq!(again.next, Height(26));
        // Another genesis, or a torn file: replayed from height 1.
        let other = crate::genesis::empty("another");
        assert_eq!(Follower::resume(&other, log_of(1), NoDa, dir.path()).next, Height(1));
        std::fs::write(dir.path().join("state.json"), b"{\"genesis\":").unwrap();
        let torn = Follower::resume(&g, log_of(25), NoDa, dir.path());
        assert_eq!((torn.next, torn.state().height()), (Height(1), Height(0)));
        // A state an earlier release saved (no block limit in its committee schedule):
        // replayed from height 1 rather than completed.
        let old = text.replace("\"max_batches_per_block\":4096", "\"max_batches_per_block\":0");
        assert_ne!(old, text);
        std::fs::write(dir.path().join("state.json"), old).unwrap();
        assert_eq!(Follower::resume(&g, log_of(25), NoDa, dir.path()).next, Height(1));
    }

    #[tokio::test]
    async fn parameters_are_final_through_the_first_boundary_after_the_applied_height() {
        use lamina_interfaces::ParamsRegistry as _;
        let mut g = crate::genesis::empty("final");
        g.governance.epoch_length = 10;
        let mut f = Follower::new(&g, log_of(30), NoDa);
        let params = GovernedParams::new(f.state());
        assert_eq!(params.final_through(), Height(10), "at genesis: the first epoch");
        let frozen = params.frozen();
        while f.state().height() < Height(25) {
            f.step().await.unwrap();
        }
        params.publish(f.state());
        // A change decided by height 30 applies from 31: heights up to 30 are final.
        assert_eq!((f.state().height(), params.final_through()), (Height(30), Height(40)));
        // A frozen view keeps what it was given; a new one sees the publication.
        assert_eq!((frozen.final_through(), params.frozen().final_through()), (Height(10), Height(40)));
        assert_eq!(frozen.serves_from(), params.frozen().serves_from());
        let mut partial = GovernanceState::new(&g);
        partial.apply_block(Height(25), &[]).unwrap();
        assert_eq!(GovernedParams::final_of(&partial), Height(30));
    }

    #[test]
    fn intake_admits_governance_transactions_from_members_only() {
        let mut genesis = crate::genesis::empty("members");
        genesis.validators = (0..4).map(validator).collect();
        let members = Members::of(&GovernanceState::new(&genesis));
        let vote = Entry::Vote { proposal: 1, proposal_tx: Digest::ZERO, approve: true, valid_until: 9 };
        let member =
            Entry::transaction(&Keypair::for_testing(2), genesis.tx_scope(), genesis.network_id(), 0, &vote).unwrap();
        assert_eq!(members.refuse(&member), None);
        let stranger =
            Entry::transaction(&Keypair::for_testing(9), genesis.tx_scope(), genesis.network_id(), 0, &vote).unwrap();
        let why = members.refuse(&stranger).unwrap();
        assert!(why.contains("not a voting member of governance epoch 0"), "{why}");
        // Other namespaces are not its business.
        let transfer = Transaction::new_signed(&Keypair::for_testing(9), genesis.tx_scope(), ChainId(1), 0, vec![]);
        assert_eq!(members.refuse(&transfer), None);
        assert_eq!(stranger.chain_id, GOVERNANCE_CHAIN);
        // A member's nonce the log already used: a replay anyone could send.
        // A member's entry signed for another network.
        let elsewhere =
            Entry::transaction(&Keypair::for_testing(2), TxScope::Network(Digest([3; 32])), Digest([3; 32]), 0, &vote)
                .unwrap();
        assert!(members.refuse(&elsewhere).unwrap().contains("signed for network"));
        let mut used = members;
        used.next.insert(Keypair::for_testing(2).public(), 1);
        assert!(used.refuse(&member).unwrap().contains("already used"));
    }

    /// A genesis of 4 validators (the voting members) whose committees change by vote,
    /// with epochs of 10 heights.
    fn committee_genesis(name: &str) -> Genesis {
        let mut g = crate::genesis::empty(name);
        g.validators = (0..4).map(validator).collect();
        g.governance.epoch_length = 10;
        g.governance.committee_changes = true;
        g
    }

    /// Members 0..2 of 4 pass `action` as the first proposal: proposed at height 1,
    /// voted at height 2, applied at the boundary 10.
    fn pass_first(g: &Genesis, state: &mut GovernanceState, action: lamina_governance_core::Action) {
        let (scope, net) = (g.tx_scope(), g.network_id());
        let propose = Entry::Propose { action, reason: "by vote".into(), valid_until: 100 };
        let tx = Entry::transaction(&Keypair::for_testing(0), scope, net, 0, &propose).unwrap();
        state.apply_block(Height(1), &[tx]).unwrap();
        let opened_by = state.proposal(1).unwrap().tx.0;
        let vote = Entry::Vote { proposal: 1, proposal_tx: opened_by, approve: true, valid_until: 100 };
        let votes: Vec<Transaction> = (0..3)
            .map(|i| Entry::transaction(&Keypair::for_testing(i), scope, net, u64::from(i == 0), &vote).unwrap())
            .collect();
        state.apply_block(Height(2), &votes).unwrap();
    }

    #[tokio::test]
    async fn a_client_nodes_intake_follows_the_committee_governance_decided() {
        use lamina_governance_core::{Action, NodeSpec};
        let g = committee_genesis("intake");
        let (scope, net) = (g.tx_scope(), g.network_id());
        // A fifth validator: it orders from height 21.
        let mut state = GovernanceState::new(&g);
        let fifth = Keypair::for_testing(40).public();
        let add = Action::AddValidator(NodeSpec {
            name: "validator-4".into(),
            key: fifth,
            addr: "127.0.0.1:9040".into(),
            http: None,
        });
        pass_first(&g, &mut state, add);
        let endpoint = lamina_net::Endpoint::bind(
            &Keypair::for_testing(99),
            lamina_net::EndpointConfig::new(([127, 0, 0, 1], 0).into()),
        )
        .unwrap();
        let log = lamina_consensus_client::LogClient::register(&endpoint, &g).unwrap();
        let intake = lamina_consensus_client::IntakeClient::register(&endpoint, &g).unwrap();
        let genesis_keys: Vec<_> = g.validators.iter().map(|v| v.key).collect();
        // Height 10 is the boundary: the next epoch's committee is still the genesis one.
        state.apply_block(Height(10), &[]).unwrap();
        follow_committees_with(&log, Some(&intake), &g, &state);
        assert_eq!(*intake.validators(), genesis_keys);
        // Height 20: the committee of height 21 has the fifth validator, last.
        state.apply_block(Height(20), &[]).unwrap();
        follow_committees_with(&log, Some(&intake), &g, &state);
        let mut with_fifth = genesis_keys.clone();
        with_fifth.push(fifth);
        assert_eq!(*intake.validators(), with_fifth);
        // Then validator 3 is removed (applied at 30, out from 41): from when that is
        // known it refuses new transactions, so clients leave it out at once.
        let remove = Entry::Propose {
            action: Action::RemoveValidator { key: g.validators[3].key },
            reason: "leaves".into(),
            valid_until: 100,
        };
        let tx = Entry::transaction(&Keypair::for_testing(0), scope, net, 2, &remove).unwrap();
        state.apply_block(Height(21), &[tx]).unwrap();
        let opened_by = state.proposal(2).unwrap().tx.0;
        let vote = Entry::Vote { proposal: 2, proposal_tx: opened_by, approve: true, valid_until: 100 };
        let votes: Vec<Transaction> = (0..3)
            .map(|i| {
                Entry::transaction(&Keypair::for_testing(i), scope, net, 1 + u64::from(i == 0) * 2, &vote).unwrap()
            })
            .collect();
        state.apply_block(Height(22), &votes).unwrap();
        state.apply_block(Height(30), &[]).unwrap();
        follow_committees_with(&log, Some(&intake), &g, &state);
        let staying: Vec<_> = with_fifth.iter().copied().filter(|k| *k != g.validators[3].key).collect();
        assert_eq!(*intake.validators(), staying, "the leaving validator is left out before it leaves");
        // Where committees never change, clients keep the genesis validators.
        let mut fixed = g.clone();
        fixed.governance.committee_changes = false;
        let other = lamina_consensus_client::IntakeClient::register(
            &lamina_net::Endpoint::bind(
                &Keypair::for_testing(98),
                lamina_net::EndpointConfig::new(([127, 0, 0, 1], 0).into()),
            )
            .unwrap(),
            &fixed,
        )
        .unwrap();
        follow_committees_with(&log, Some(&other), &fixed, &state);
        assert_eq!(*other.validators(), genesis_keys);
        endpoint.shutdown().await;
    }

    #[test]
    fn da_clients_disperse_to_the_committee_of_their_next_heights_and_read_under_all() {
        use lamina_governance_core::{Action, NodeSpec};
        let mut g = committee_genesis("da committees");
        g.da_nodes = (10..12).map(validator).collect();
        // A third DA node: it stores the squares of the heights from 21 on.
        let mut state = GovernanceState::new(&g);
        let third = Keypair::for_testing(12).public();
        let add =
            Action::AddDaNode(NodeSpec { name: "da-2".into(), key: third, addr: "127.0.0.1:9012".into(), http: None });
        pass_first(&g, &mut state, add);
        let genesis_da = g.da();
        let keys = |c: &lamina_primitives::DaCommittee| c.members.members.clone();
        // Before the boundary nothing changed; at it, the new committee is known but
        // its heights have not come: the genesis committee disperses, the new one is
        // looked at next.
        let list = da_committees(&g, &state).unwrap().committees;
        assert_eq!(list, vec![genesis_da.clone()]);
        state.apply_block(Height(10), &[]).unwrap();
        let GovernedDa { committees: list, nodes } = da_committees(&g, &state).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0], genesis_da);
        assert_eq!(keys(&list[1]), vec![g.da_nodes[0].key, g.da_nodes[1].key, third]);
        assert_eq!((list[1].threshold, list[1].tag.is_some()), (3, true));
        assert!(nodes.iter().any(|n| n.key == third && n.addr.port() == 9012), "{nodes:?}");
        // From height 20 on (the next height is the switch), it disperses to the new
        // committee and still reads under the genesis one.
        state.apply_block(Height(20), &[]).unwrap();
        let committees = da_committees(&g, &state).unwrap();
        let list = &committees.committees;
        assert_eq!(keys(&list[0]).len(), 3);
        assert_eq!(list[1], genesis_da);
        let (current, group) = committees.current();
        assert_eq!((group.len(), current), (3, &list[0]));
        // Where committees never change, clients keep the genesis committee.
        g.governance.committee_changes = false;
        assert!(da_committees(&g, &state).is_none());
    }
}
