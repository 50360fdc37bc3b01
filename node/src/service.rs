//! `lamina <module> start`: everything around a module's service.
//!
//! 1. Resolve the home; read `config.toml`, apply environment and flag overrides,
//!    validate ([`crate::config`]).
//! 2. Install logging and the Prometheus recorder ([`lamina_telemetry`]).
//! 3. Check `data/VERSION`, load the key (0600), load and validate the genesis, find this
//!    node in its module's role, bind `data/` to the genesis digest.
//! 4. Serve the admin endpoints; install SIGTERM/SIGINT handlers.
//! 5. Run the module ([`start_module`]) until a signal: then `/readyz` turns
//!    503 at once (stop intake), the service drains and flushes within
//!    `[node] shutdown_grace_ms`, the admin server closes last, and the process exits 0.
//!    A second signal, or a drain that overruns the grace period, exits non-zero.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use lamina_interfaces::{Health, NodeEntry};
use lamina_telemetry::{AdminServer, AdminState, LogConfig};
use tokio_util::sync::CancellationToken;

use crate::config::{NodeConfig, Override};
use crate::context::NodeContext;
use crate::home::Home;
use crate::module::Module;
use crate::signals::{SignalEvent, Signals};

/// Exit status when the service did not drain within the grace period, or a second
/// signal forced the exit.
pub const EXIT_FORCED: u8 = 2;

/// Reads a home's configuration with environment and flag overrides applied.
pub fn load_config(home: &Home, module: Module, flags: &[Override]) -> anyhow::Result<NodeConfig> {
    let path = home.config_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: initialize the home first with `lamina {module} init --home {}`",
            path.display(),
            home.root().display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let env = crate::config::env_overrides(std::env::vars_os())?;
    let cfg = crate::config::load_layered(&text, &path.display().to_string(), &env, flags)?;
    if cfg.module != module {
        bail!("{} is a {} home, not a {module} home", home.root().display(), cfg.module);
    }
    Ok(cfg)
}

fn log_config(cfg: &NodeConfig, home: &Home) -> LogConfig {
    use std::io::IsTerminal as _;
    LogConfig {
        format: cfg.log.format,
        filter: cfg.log.level.clone(),
        file: cfg.log.file.as_ref().map(|f| if f.is_absolute() { f.clone() } else { home.root().join(f) }),
        ansi: std::io::stderr().is_terminal(),
    }
}

/// Runs `module` from `home` until SIGTERM/SIGINT. Blocks; builds its own runtime.
pub fn start(module: Module, home: PathBuf, flags: &[Override]) -> anyhow::Result<ExitCode> {
    let home = Home::new(home);
    let cfg = load_config(&home, module, flags)?;
    lamina_telemetry::logging::init(&log_config(&cfg, &home))?;
    let metrics = lamina_telemetry::prometheus::install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("lamina-{module}"))
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(module, home, cfg, metrics, flags));
    // Tasks still running (e.g. a connection being torn down) are dropped here; the
    // service has already drained and flushed what it acknowledged.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match &result {
        Ok(code) if *code == ExitCode::SUCCESS => {
            tracing::info!(target: "lamina::node", "stopped cleanly");
        }
        Ok(_) => tracing::warn!(target: "lamina::node", "stopped without a clean drain"),
        Err(e) => tracing::error!(target: "lamina::node", error = format!("{e:#}"), "failed"),
    }
    result
}

/// Registers the `# HELP` text of every metric the binary emits (its own and every
/// layer's) with the installed
/// `metrics` recorder (call once, after installing it; the binary does).
pub fn describe_metrics() {
    lamina_net::describe_metrics();
    lamina_consensus_service::describe_metrics();
    lamina_da_service::describe_metrics();
    lamina_execution_service::describe_metrics();
    lamina_settlement_service::describe_metrics();
    lamina_bridge_service::describe_metrics();
    ::metrics::describe_counter!(
        "lamina_node_peer_checks_total",
        "Same-genesis checks of connected peers over lamina/node/1, by result (ok, failed)."
    );
    ::metrics::describe_gauge!(
        "lamina_node_peers_connected",
        "Peers of each group connected and confirmed on the same genesis, by group."
    );
    ::metrics::describe_gauge!(
        "lamina_governance_epoch",
        "The governance epoch this node's follower of the log is in (its membership and parameters)."
    );
    ::metrics::describe_gauge!(
        "lamina_node_peers_required",
        "Peers of each dialed group that must be connected for readiness, by group."
    );
}

/// SIGHUP: re-reads `config.toml` (with the same environment and flags) and applies its
/// `[access]` section. A file that does not load changes nothing (logged).
fn reload(home: &Home, module: Module, flags: &[Override], access: &lamina_net::Access) {
    match load_config(home, module, flags) {
        Ok(cfg) => {
            let policy = cfg.access;
            tracing::info!(
                target: "lamina::node",
                open = policy.open,
                allowed_clients = policy.allowed_clients.len(),
                "SIGHUP: client access reloaded"
            );
            access.set_policy(policy);
        }
        Err(e) => {
            tracing::error!(target: "lamina::node", error = format!("{e:#}"), "SIGHUP: configuration not reloaded")
        }
    }
}

/// Builds the [`NodeContext`] for `module` from a loaded config and home.
pub fn context(module: Module, home: &Home, cfg: &NodeConfig, health: Health) -> anyhow::Result<NodeContext> {
    home.check_data_version()?;
    let key = crate::keys::read(&home.key_file())?;
    let genesis = crate::genesis::load(&home.genesis_file())?;
    let listed = module.entries(&genesis).iter().find(|n| n.key == key.public()).cloned();
    let me = match listed {
        Some(me) => me,
        // Where committees change by vote, a validator or DA node may join after the
        // genesis: a validator follows the log until the epoch whose committee names it,
        // a DA node serves reads until then. Its address is its own `[net] listen_addr`
        // (the one its add-validator or add-da-node proposal named).
        None if matches!(module, Module::Consensus | Module::Da) && genesis.governance.committee_changes => {
            let (what, proposal) =
                if module == Module::Consensus { ("validator", "add-validator") } else { ("DA node", "add-da-node") };
            let addr = cfg.net.listen_addr.with_context(|| {
                format!(
                    "this node's key {} is not a genesis {what}: set `[net] listen_addr` (`--listen-addr`) to the \
                     address its {proposal} proposal names",
                    key.public()
                )
            })?;
            tracing::info!(target: "lamina::node", key = %key.public(), %addr, "not a genesis {what}: waiting for a committee that names this key");
            let name = if module == Module::Consensus { "validator" } else { "da" };
            NodeEntry { name: name.into(), key: key.public(), addr, http: None, admin: None, chain: None }
        }
        None => anyhow::bail!(
            "this node's key {} is not among the genesis {} of {} \
             (add it with `lamina genesis add-node --role {module} ...`, then copy the genesis into every home{})",
            key.public(),
            module.role_name(),
            home.genesis_file().display(),
            if matches!(module, Module::Consensus | Module::Da) {
                "; or, where `[governance] committee_changes` is on, add it by vote"
            } else {
                ""
            }
        ),
    };
    home.check_genesis_digest(&genesis.digest())?;
    let listen_addr = cfg.net.listen_addr.unwrap_or(me.addr);
    let data_dir = home.data_dir();
    Ok(NodeContext {
        service: lamina_net::NodeContext::new(key, Arc::new(genesis), data_dir, health)
            .with_access(lamina_net::Access::new(cfg.access.clone())),
        module,
        me,
        home: home.clone(),
        endpoint: cfg.net.endpoint_config(listen_addr),
        net: cfg.net.clone(),
    })
}

fn admin_addr(module: Module, cfg: &NodeConfig, ctx: &NodeContext) -> SocketAddr {
    admin_address(module, cfg, ctx.me.admin)
}

/// Where a node's admin server listens: `[node] admin_addr`, else the `admin` address
/// its genesis entry lists (`genesis_admin`), else `127.0.0.1:<module default>`.
pub(crate) fn admin_address(module: Module, cfg: &NodeConfig, genesis_admin: Option<SocketAddr>) -> SocketAddr {
    cfg.node
        .admin_addr
        .or(genesis_admin)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], module.default_admin_port())))
}

/// The `/status` fields every node reports.
fn static_status(ctx: &NodeContext, home: &Path, admin: SocketAddr) {
    let h = ctx.health();
    h.set_status("module", ctx.module.as_str());
    h.set_status("name", &ctx.me.name);
    h.set_status("key", ctx.key().public().to_hex());
    h.set_status("network", &ctx.genesis().network);
    h.set_status("genesis", ctx.genesis().digest().to_hex());
    h.set_status("version", env!("CARGO_PKG_VERSION"));
    h.set_status("revision", crate::build_info::GIT_SHA);
    crate::build_info::publish_metric(ctx.module.as_str());
    h.set_status("pid", std::process::id());
    h.set_status("home", home.display().to_string());
    h.set_status("listen_addr", ctx.endpoint.listen.to_string());
    h.set_status("admin_addr", admin.to_string());
    if let Some(c) = ctx.me.chain {
        h.set_status("chain", c.0);
    }
}

async fn run(
    module: Module,
    home: Home,
    cfg: NodeConfig,
    metrics: lamina_telemetry::MetricsHandle,
    flags: &[Override],
) -> anyhow::Result<ExitCode> {
    // First, so that a SIGTERM during startup is a clean stop rather than a kill.
    let mut signals = Signals::with_reload()?;
    describe_metrics();
    let health = Health::new();
    // First of all: a second node on this home stops here, before any port or store.
    home.check_data_version()?;
    let _home_lock = home.lock()?;
    let ctx = context(module, &home, &cfg, health.clone())?;
    let admin_at = admin_addr(module, &cfg, &ctx);
    let admin = AdminServer::bind(admin_at, AdminState { health: health.clone(), metrics: Some(metrics) }).await?;
    static_status(&ctx, home.root(), admin.local_addr());
    health.set_check("running", true, "serving");
    tracing::info!(
        target: "lamina::node",
        %module, name = %ctx.me.name, key = %ctx.key().public(), listen = %ctx.endpoint.listen,
        admin = %admin.local_addr(), "starting"
    );

    let shutdown = CancellationToken::new();
    let access = ctx.service.access.clone();
    let mut service = tokio::spawn(start_module(ctx, cfg.clone(), shutdown.clone()));
    let progress = tokio::spawn(progress_lines(module, health.clone(), shutdown.clone()));

    // Phase 1: run until a signal or until the service ends on its own; SIGHUP re-reads
    // the run-time settings ([access]).
    let early = loop {
        tokio::select! {
            ev = signals.next_event() => match ev {
                SignalEvent::Stop(sig) => {
                    tracing::info!(target: "lamina::node", signal = sig, "shutting down");
                    break None;
                }
                SignalEvent::Reload => reload(&home, module, flags, &access),
            },
            r = &mut service => break Some(r),
        }
    };
    progress.abort();
    let outcome = match early {
        Some(r) => {
            // The service ended without being asked to: a fatal fault (or a bug).
            health.set_check("running", false, "service stopped");
            match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("the {module} service stopped on its own")),
                Ok(Err(e)) => Err(e.context(format!("the {module} service failed"))),
                Err(e) => Err(anyhow::anyhow!("the {module} service panicked: {e}")),
            }
        }
        None => {
            // Phase 2: stop intake (not ready any more), drain within the grace period.
            health.set_check("running", false, "shutting down");
            shutdown.cancel();
            let grace = Duration::from_millis(cfg.node.shutdown_grace_ms);
            tokio::select! {
                sig = signals.next() => {
                    tracing::warn!(target: "lamina::node", signal = sig, "second signal: exiting without a full drain");
                    service.abort();
                    Ok(ExitCode::from(EXIT_FORCED))
                }
                r = tokio::time::timeout(grace, &mut service) => match r {
                    Ok(Ok(Ok(()))) => Ok(ExitCode::SUCCESS),
                    Ok(Ok(Err(e))) => Err(e.context(format!("the {module} service failed while shutting down"))),
                    Ok(Err(e)) => Err(anyhow::anyhow!("the {module} service panicked while shutting down: {e}")),
                    Err(_) => {
                        tracing::error!(target: "lamina::node", grace_ms = cfg.node.shutdown_grace_ms, "service did not drain within the grace period");
                        service.abort();
                        Ok(ExitCode::from(EXIT_FORCED))
                    }
                }
            }
        }
    };
    admin.shutdown().await;
    outcome
}

/// How often a running node logs one INFO progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// One INFO line per [`PROGRESS_EVERY`] with the module's height, heights per second and
/// the `/status` fields operators watch first (the execution service logs its own line,
/// with executed transactions per second).
async fn progress_lines(module: Module, health: Health, shutdown: CancellationToken) {
    let (height_key, fields): (Option<&str>, &[&str]) = match module {
        Module::Consensus => (Some("height"), &["view", "mempool", "pending_batches", "da_failures"]),
        Module::Settlement => (Some("settlement_height"), &["finalized_height"]),
        Module::Da => (None, &["da_squares", "da_last_attested"]),
        Module::Bridge => (None, &["bridge_pending"]),
        Module::Execution => return,
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(u64, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let status = health.status_json();
        let height = height_key.and_then(|k| status[k].as_u64());
        let now = tokio::time::Instant::now();
        let rate = match (height, last) {
            (Some(h), Some((h0, t0))) => format!("{:.1}", h.saturating_sub(h0) as f64 / (now - t0).as_secs_f64()),
            _ => "-".into(),
        };
        if let Some(h) = height {
            last = Some((h, now));
        }
        let shown: serde_json::Map<String, serde_json::Value> =
            fields.iter().filter_map(|f| status.get(*f).map(|v| (f.to_string(), v.clone()))).collect();
        tracing::info!(
            target: "lamina::node",
            %module,
            ready = status["ready"].as_bool().unwrap_or(false),
            height = %height.map_or_else(|| "-".to_string(), |h| h.to_string()),
            heights_per_s = %rate,
            status = %serde_json::Value::Object(shown),
            "progress"
        );
    }
}

/// Runs `config.module`'s service: the one place that maps a module to its file.
pub async fn start_module(ctx: NodeContext, config: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    match ctx.module {
        Module::Consensus => {
            crate::modules::consensus::start(ctx, config.consensus.unwrap_or_default(), shutdown).await
        }
        Module::Da => crate::modules::da::start(ctx, config.da.unwrap_or_default(), shutdown).await,
        Module::Execution => {
            crate::modules::execution::start(ctx, config.execution.unwrap_or_default(), shutdown).await
        }
        Module::Settlement => {
            crate::modules::settlement::start(ctx, config.settlement.unwrap_or_default(), shutdown).await
        }
        Module::Bridge => crate::modules::bridge::start(ctx, config.bridge.unwrap_or_default(), shutdown).await,
    }
}
