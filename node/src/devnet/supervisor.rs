//! `lamina devnet up`: start every node as its own process, watch them, stop them.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lamina_telemetry::client;
use tokio::task::JoinSet;

use super::UpArgs;
use super::layout::{self, Spec};
use super::load::{BackgroundLoad, fmt_rate};
use super::state::{DevnetState, Phase};
use crate::signals::Signals;

/// How often readiness is polled while starting.
const READY_POLL: Duration = Duration::from_millis(250);
/// How often the live status line is refreshed.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Timeout of one admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_millis(1500);
/// Exit status of `up` when interrupted before the network was ready.
const EXIT_INTERRUPTED: u8 = 130;

/// One supervised node process.
struct Proc {
    child: Option<Child>,
    exit: Option<ExitStatus>,
    /// Set when it exited without being asked to (reported once).
    unexpected: bool,
    ready: bool,
}

/// The supervisor of one devnet.
struct Supervisor {
    st: DevnetState,
    procs: Vec<Proc>,
    keep: bool,
    /// Keep the nodes' data after a clean stop (`--keep-data`).
    keep_data: bool,
    bar: StatusLine,
    started: Instant,
    /// The chain of each node (execution nodes), by index into `st.nodes`.
    chain_of: Vec<Option<u64>>,
    /// The latest settlement finality line (status line and final summary).
    finality: String,
}

/// Why waiting for readiness ended.
enum Wait {
    Ready,
    Interrupted(&'static str),
    Failed(String),
}

/// Runs `devnet up`.
pub async fn up(a: UpArgs) -> anyhow::Result<ExitCode> {
    let native = a.ledger_version == lamina_execution_core::ledger::LEDGER_VERSION;
    if !native && a.load > 0 && !a.keep && !a.exit_after_ready {
        anyhow::bail!(
            "the built-in load sends native-ledger transfers; with --ledger-version {} pass --load 0, --keep or --exit-after-ready",
            a.ledger_version
        );
    }
    let spec = Spec {
        network: a.network.clone(),
        validators: a.validators,
        da_nodes: a.da_nodes,
        execution: a.execution.unwrap_or(a.chains),
        settlement: a.settlement,
        bridge: a.bridge.unwrap_or(usize::from(a.chains >= 2 && a.settlement >= 1 && native)),
        chains: a.chains,
        funded_accounts: a.funded_accounts,
        log_level: a.log_level.clone(),
        settlement_window: a.settlement_window,
        anchor_window: a
            .anchor_window
            .unwrap_or(lamina_interfaces::DEFAULT_ANCHOR_WINDOW.max(a.settlement_window.saturating_mul(4))),
        faulty_claims: a.faulty_claims.clone(),
        faulty_dispersal: a.faulty_dispersal.clone(),
        heartbeat: a.heartbeat,
        ledger_version: a.ledger_version,
        epoch_length: a.epoch_length,
        voting_period: a.voting_period,
        closed_access: a.closed_access,
        committee_changes: a.committee_changes,
    };
    if cfg!(not(feature = "bench")) && a.load > 0 && !a.keep && !a.exit_after_ready {
        anyhow::bail!(
            "this lamina binary was built without the `bench` feature, so it has no load generator: pass --load 0"
        );
    }
    // Refuse a bad spec before choosing, creating or clearing any directory.
    spec.validate()?;
    let dir = match &a.dir {
        Some(d) => crate::home::absolute(d)?,
        None => layout::temp_dir()?,
    };
    layout::prepare_dir(&dir)?;
    let st = layout::create(&dir, &spec)?;
    super::remember_dir(&dir);
    eprintln!(
        "devnet {:?} in {}: {} validators, {} DA nodes, {} execution, {} settlement, {} bridge; {} chain(s)",
        spec.network,
        dir.display(),
        spec.validators,
        spec.da_nodes,
        spec.execution,
        spec.settlement,
        spec.bridge,
        spec.chains
    );

    let mut signals = Signals::new()?;
    let genesis = crate::genesis::load(&st.genesis)?;
    let chain_of = st
        .nodes
        .iter()
        .map(|n| genesis.execution_nodes.iter().find(|e| e.name == n.name).and_then(|e| e.chain).map(|c| c.0))
        .collect();
    let mut sup = Supervisor {
        procs: Vec::with_capacity(st.nodes.len()),
        chain_of,
        finality: String::new(),
        st,
        keep: a.keep,
        keep_data: a.keep_data,
        bar: StatusLine::new(),
        started: Instant::now(),
    };
    if let Err(e) = sup.spawn_all() {
        sup.bar.println(&format!("failed to start the nodes: {e:#}"));
        sup.stop_all(a.grace, &mut signals, Phase::Failed).await?;
        return Err(e);
    }
    match sup.wait_ready(a.ready_timeout, &mut signals).await? {
        Wait::Ready => {}
        Wait::Interrupted(sig) => {
            sup.bar.println(&format!("{sig}: stopping the devnet before it was ready"));
            sup.stop_all(a.grace, &mut signals, Phase::Stopped).await?;
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Wait::Failed(why) => {
            sup.bar.println(&format!("devnet failed to come up: {why}"));
            sup.stop_all(a.grace, &mut signals, Phase::Failed).await?;
            return Ok(ExitCode::FAILURE);
        }
    }
    sup.st.phase = Phase::Ready;
    sup.st.save()?;
    sup.bar.clear();
    eprintln!("all {} nodes ready after {:.1}s", sup.procs.len(), sup.started.elapsed().as_secs_f64());
    eprint!("{}", sup.table());

    if a.keep {
        sup.st.kept = true;
        sup.st.supervisor = None;
        sup.st.save()?;
        // Dropping the Child handles neither kills nor waits: the nodes (in their own
        // sessions) are adopted by init when this process exits.
        eprintln!("devnet left running. Status: `lamina devnet status --dir {}`", dir.display());
        eprintln!("                     Stop:   `lamina devnet down --dir {}`", dir.display());
        eprintln!("logs: {}", dir.join("logs").display());
        return Ok(ExitCode::SUCCESS);
    }
    if !a.exit_after_ready {
        let started = if a.load > 0 { BackgroundLoad::start(&sup.st, &a, &dir).map(Some) } else { Ok(None) };
        let mut load = match started {
            Ok(l) => l,
            Err(e) => {
                // Stop the nodes rather than leave them running without a supervisor.
                sup.bar.println(&format!("cannot start the built-in load: {e:#}"));
                sup.stop_all(a.grace, &mut signals, Phase::Failed).await?;
                return Err(e);
            }
        };
        let why = sup.run(a.duration, load.as_mut(), &mut signals).await;
        sup.bar.println(&format!("{why}: stopping the devnet"));
        if let Some(l) = load {
            sup.bar.clear();
            l.report(&dir);
        }
        if !sup.finality.is_empty() {
            eprintln!("settlement at stop: {}", sup.finality.trim_start_matches(" | "));
        }
        let quiet = why == "load finished" || why.starts_with("ran for");
        if quiet && !a.idle_cpu.is_zero() {
            match sup.idle_cpu(a.idle_cpu, &mut signals).await {
                Some(line) => println!("{line}"),
                None => eprintln!("idle CPU: not measured (interrupted, or a node exited)"),
            }
        }
    }
    sup.stop_all(a.grace, &mut signals, Phase::Stopped).await
}

impl Supervisor {
    fn spawn_all(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the lamina executable")?;
        for i in 0..self.st.nodes.len() {
            let child = spawn_node(
                &exe,
                &self.st.nodes[i].module.to_string(),
                &self.st.nodes[i].home,
                &self.st.nodes[i].log,
                self.keep,
            )
            .with_context(|| format!("cannot start {}", self.st.nodes[i].name))?;
            self.st.nodes[i].pid = Some(child.id());
            self.procs.push(Proc { child: Some(child), exit: None, unexpected: false, ready: false });
            // Saved after each start, so a crash of this process still leaves every pid
            // on record for `devnet down`.
            self.st.save()?;
        }
        Ok(())
    }

    /// Collects exits; reports (once) every process that exited without being asked.
    fn reap(&mut self, expected: bool) {
        for i in 0..self.procs.len() {
            let p = &mut self.procs[i];
            let Some(child) = p.child.as_mut() else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                p.exit = Some(status);
                p.child = None;
                p.ready = false;
                if !expected {
                    p.unexpected = true;
                    let rec = &self.st.nodes[i];
                    let msg = format!(
                        "!! {} ({}, pid {}) exited unexpectedly: {}\n   log {}:\n{}",
                        rec.name,
                        rec.module,
                        rec.pid.unwrap_or(0),
                        describe(status),
                        rec.log.display(),
                        log_tail(&rec.log, 12)
                    );
                    self.bar.println(&msg);
                }
            }
        }
    }

    fn counts(&self) -> (usize, usize) {
        let up = self.procs.iter().filter(|p| p.child.is_some()).count();
        let ready = self.procs.iter().filter(|p| p.ready).count();
        (up, ready)
    }

    async fn wait_ready(&mut self, timeout: Duration, signals: &mut Signals) -> anyhow::Result<Wait> {
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(READY_POLL);
        loop {
            tokio::select! {
                sig = signals.next() => return Ok(Wait::Interrupted(sig)),
                _ = tick.tick() => {}
            }
            self.reap(false);
            if let Some(i) = self.procs.iter().position(|p| p.unexpected) {
                return Ok(Wait::Failed(format!("{} exited during startup", self.st.nodes[i].name)));
            }
            let pending: Vec<(usize, SocketAddr)> =
                (0..self.procs.len()).filter(|&i| !self.procs[i].ready).map(|i| (i, self.st.nodes[i].admin)).collect();
            let answers = poll_all(&pending, "/readyz").await;
            let mut reasons = Vec::new();
            for (i, r) in answers {
                match r {
                    Ok(resp) if resp.status == 200 => self.procs[i].ready = true,
                    Ok(resp) => reasons.push(format!(
                        "{}: {}",
                        self.st.nodes[i].name,
                        resp.text().lines().skip(1).filter(|l| l.starts_with("FAIL")).collect::<Vec<_>>().join("; ")
                    )),
                    Err(e) => reasons.push(format!("{}: admin endpoint not answering ({e})", self.st.nodes[i].name)),
                }
            }
            let (up, ready) = self.counts();
            let n = self.procs.len();
            let waiting: Vec<&str> =
                (0..n).filter(|&i| !self.procs[i].ready).map(|i| self.st.nodes[i].name.as_str()).take(4).collect();
            self.bar.set(
                &format!(
                    "starting: {up}/{n} up, {ready}/{n} ready{}",
                    if waiting.is_empty() {
                        String::new()
                    } else {
                        format!(" (waiting for {}…)", waiting.join(", "))
                    }
                ),
                None,
            );
            if ready == n {
                return Ok(Wait::Ready);
            }
            if Instant::now() >= deadline {
                return Ok(Wait::Failed(format!("not ready within {:.0?}:\n   {}", timeout, reasons.join("\n   "))));
            }
        }
    }

    /// Runs until a signal or the end of `duration`; keeps the status line current and
    /// reports processes that die. Returns why it stopped.
    async fn run(
        &mut self,
        duration: Option<Duration>,
        mut load: Option<&mut BackgroundLoad>,
        signals: &mut Signals,
    ) -> String {
        let end = duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(STATUS_POLL);
        let ran = Instant::now();
        let mut executed: Vec<(usize, f64, Instant)> = Vec::new();
        loop {
            let load_running = load.as_ref().is_some_and(|l| l.running());
            tokio::select! {
                sig = signals.next() => return sig.to_string(),
                _ = async { match end { Some(e) => tokio::time::sleep_until(e).await, None => std::future::pending().await } } => {
                    return format!("ran for {:.0?}", duration.unwrap_or_default());
                }
                () = async { match load.as_mut() { Some(l) => l.wait().await, None => std::future::pending().await } }, if load_running => {
                    if duration.is_none() {
                        return "load finished".to_string();
                    }
                }
                _ = tick.tick() => {}
            }
            self.reap(false);
            let live: Vec<(usize, SocketAddr)> = (0..self.procs.len())
                .filter(|&i| self.procs[i].child.is_some())
                .map(|i| (i, self.st.nodes[i].admin))
                .collect();
            let answers = poll_all(&live, "/status").await;
            let mut height: Option<u64> = None;
            // The governance epoch the most advanced node's follower is in.
            let mut epoch: Option<u64> = None;
            let mut exec_heights: std::collections::BTreeMap<u64, u64> = Default::default();
            let mut finalized: Option<std::collections::BTreeMap<u64, u64>> = None;
            for (i, r) in answers {
                let doc = r.ok().and_then(|resp| serde_json::from_slice::<serde_json::Value>(&resp.body).ok());
                self.procs[i].ready = doc.as_ref().is_some_and(|d| d["ready"] == true);
                if let Some(h) = doc.as_ref().and_then(|d| d["height"].as_u64()) {
                    height = Some(height.map_or(h, |m: u64| m.max(h)));
                }
                if let Some(e) = doc.as_ref().and_then(|d| d["governance"]["epoch"].as_u64()) {
                    epoch = Some(epoch.map_or(e, |m: u64| m.max(e)));
                }
                if let (Some(c), Some(h)) =
                    (self.chain_of[i], doc.as_ref().and_then(|d| d["execution_height"].as_u64()))
                {
                    let e = exec_heights.entry(c).or_default();
                    *e = (*e).max(h);
                }
                if let Some(map) = doc.as_ref().and_then(|d| d["finalized_height"].as_object()) {
                    let f = finalized.get_or_insert_with(Default::default);
                    for (c, h) in map {
                        if let (Ok(c), Some(h)) = (c.parse::<u64>(), h.as_u64()) {
                            let e = f.entry(c).or_default();
                            *e = (*e).max(h);
                        }
                    }
                }
            }
            if let Some(f) = finalized {
                self.finality = finality_line(&f, &exec_heights);
            }
            let (up, ready) = self.counts();
            let n = self.procs.len();
            let dead = self.procs.iter().filter(|p| p.unexpected).count();
            let secs = ran.elapsed().as_secs();
            let load_line = match load.as_ref() {
                Some(l) if l.running() => {
                    let per_chain = self.executed_per_chain(&mut executed).await;
                    format!(" | {}{per_chain}", l.line())
                }
                Some(_) => " | load done".to_string(),
                None => String::new(),
            };
            self.bar.set(
                &format!(
                    "devnet: {up}/{n} up, {ready}/{n} ready{}{}{}{load_line}{}",
                    if dead > 0 { format!(", {dead} DIED") } else { String::new() },
                    height.map(|h| format!(" | height {h}")).unwrap_or_default(),
                    epoch.map(|e| format!(", epoch {e}")).unwrap_or_default(),
                    self.finality,
                ),
                Some(format!("{:02}:{:02}:{:02} | Ctrl-C stops", secs / 3600, secs / 60 % 60, secs % 60)),
            );
        }
    }

    /// The idle network's CPU: every node process's user + system time over `window`,
    /// after a 3 s settle (claims and dispersals of the last load finishing), in % of
    /// one core, with the busiest process. `None` if interrupted or a node exited.
    async fn idle_cpu(&mut self, window: Duration, signals: &mut Signals) -> Option<String> {
        const SETTLE: Duration = Duration::from_secs(3);
        self.bar.set(&format!("measuring idle CPU over {window:?}"), None);
        let wait = async {
            tokio::time::sleep(SETTLE).await;
            let before = self.cpu_ticks()?;
            let t0 = Instant::now();
            tokio::time::sleep(window).await;
            let after = self.cpu_ticks()?;
            Some((before, after, t0.elapsed()))
        };
        let measured = tokio::select! {
            _ = signals.next() => None,
            m = wait => m,
        };
        self.bar.clear();
        let (before, after, elapsed) = measured?;
        let hz = procfs::ticks_per_second() as f64;
        let pct = |ticks: u64| ticks as f64 / hz / elapsed.as_secs_f64() * 100.0;
        let per: Vec<(String, f64)> =
            before.iter().zip(&after).map(|((name, b), (_, a))| (name.clone(), pct(a.saturating_sub(*b)))).collect();
        let total: f64 = per.iter().map(|(_, p)| p).sum();
        let (busiest, most) = per.iter().cloned().max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some(format!(
            "idle CPU: {total:.1}% of one core over {:.0}s, all {} node processes; busiest {busiest} {most:.1}%",
            elapsed.as_secs_f64(),
            per.len()
        ))
    }

    /// CPU ticks (user + system) of every node process, by name; `None` if one is gone.
    fn cpu_ticks(&mut self) -> Option<Vec<(String, u64)>> {
        self.reap(false);
        self.st
            .nodes
            .iter()
            .zip(&self.procs)
            .map(|(rec, p)| {
                let pid = p.child.as_ref()?.id();
                let stat = procfs::process::Process::new(i32::try_from(pid).ok()?).and_then(|p| p.stat()).ok()?;
                Some((rec.name.clone(), stat.utime.saturating_add(stat.stime)))
            })
            .collect()
    }

    /// SIGTERM to every live node, wait up to `grace`, SIGKILL the rest; records how each
    /// ended and returns the exit status of `up`.
    async fn stop_all(
        &mut self,
        grace: Duration,
        signals: &mut Signals,
        final_phase: Phase,
    ) -> anyhow::Result<ExitCode> {
        self.reap(false);
        self.st.phase = Phase::Stopping;
        self.st.save()?;
        let mut asked = vec![false; self.procs.len()];
        for (i, p) in self.procs.iter().enumerate() {
            if let Some(c) = &p.child {
                asked[i] = super::state::signal(c.id(), nix::sys::signal::Signal::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut forced = false;
        loop {
            self.reap(true);
            let (up, _) = self.counts();
            self.bar.set(&format!("stopping: {up} still running"), None);
            if up == 0 {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(deadline) => break,
                sig = signals.next() => {
                    self.bar.println(&format!("{sig} again: killing the remaining nodes now"));
                    forced = true;
                    break;
                }
            }
        }
        let mut killed = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                p.exit = c.wait().ok();
                killed.push(i);
            }
        }
        self.bar.clear();
        let mut clean = 0;
        for (i, p) in self.procs.iter().enumerate() {
            let rec = &mut self.st.nodes[i];
            let how = match p.exit {
                Some(s) if killed.contains(&i) => {
                    format!(
                        "killed after {}",
                        if forced { "a second signal".to_string() } else { format!("{grace:.0?} grace") }
                    ) + &format!(" ({})", describe(s))
                }
                Some(s) if p.unexpected => format!("died unexpectedly ({})", describe(s)),
                Some(s) if s.success() && asked[i] => {
                    clean += 1;
                    "exit 0".to_string()
                }
                Some(s) => describe(s),
                None => "unknown".to_string(),
            };
            rec.exit = Some(how);
        }
        self.st.phase = final_phase;
        self.st.supervisor = None;
        self.st.save()?;
        let n = self.procs.len();
        eprintln!("stopped {n} nodes: {clean} exited cleanly");
        for rec in &self.st.nodes {
            if rec.exit.as_deref() != Some("exit 0") {
                eprintln!("  {:<14} {}", rec.name, rec.exit.as_deref().unwrap_or("?"));
            }
        }
        eprintln!("logs: {}", self.st.dir.join("logs").display());
        let ok = clean == n && final_phase == Phase::Stopped;
        if ok && !self.keep_data {
            // Every node stopped cleanly: its data (preallocated log segments, about
            // 2.7 GB for the default topology) is of no further use, since `devnet up`
            // on this directory starts afresh. Configs and logs stay.
            layout::drop_node_data(&self.st.dir);
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }

    /// Executed tx/s of each chain since the previous call, from the execution nodes'
    /// own `lamina_execution_transactions_total` counters (one node per chain).
    async fn executed_per_chain(&self, prev: &mut Vec<(usize, f64, Instant)>) -> String {
        let targets: Vec<(usize, SocketAddr)> = (0..self.st.nodes.len())
            .filter(|&i| self.st.nodes[i].module == crate::module::Module::Execution && self.procs[i].child.is_some())
            .map(|i| (i, self.st.nodes[i].admin))
            .collect();
        let now = Instant::now();
        let mut parts = Vec::new();
        for (i, r) in poll_all(&targets, "/metrics").await {
            let Some(total) = r.ok().and_then(|resp| {
                resp.text().lines().find_map(|l| {
                    l.strip_prefix("lamina_execution_transactions_total ").and_then(|v| v.trim().parse::<f64>().ok())
                })
            }) else {
                continue;
            };
            let rate = match prev.iter().find(|p| p.0 == i) {
                Some(&(_, t0, at)) => (total - t0).max(0.0) / now.duration_since(at).as_secs_f64().max(1e-3),
                None => 0.0,
            };
            prev.retain(|p| p.0 != i);
            prev.push((i, total, now));
            parts.push(format!("{} {}", self.st.nodes[i].name, fmt_rate(rate)));
        }
        if parts.is_empty() { String::new() } else { format!(" | executed: {}", parts.join(", ")) }
    }

    fn table(&self) -> String {
        let rows = self.st.nodes.iter().map(|rec| {
            vec![
                rec.name.clone(),
                rec.module.as_str().to_string(),
                rec.pid.map(|p| p.to_string()).unwrap_or_default(),
                rec.quic.to_string(),
                format!("http://{}/status", rec.admin),
            ]
        });
        let mut s = crate::table::plain(&["NAME", "MODULE", "PID", "QUIC", "ADMIN"], &[2], rows, "  ");
        s += &format!("  logs: {}\n", self.st.dir.join("logs").display());
        s
    }
}

/// ` | final: c1 812 (lag 34), c2 790 (lag 35)`: each chain's finalized height and how
/// far it trails the chain's executed height.
fn finality_line(
    finalized: &std::collections::BTreeMap<u64, u64>,
    executed: &std::collections::BTreeMap<u64, u64>,
) -> String {
    let parts: Vec<String> = finalized
        .iter()
        .map(|(c, f)| match executed.get(c) {
            Some(e) => format!("c{c} {f} (lag {})", e.saturating_sub(*f)),
            None => format!("c{c} {f}"),
        })
        .collect();
    format!(" | final: {}", parts.join(", "))
}

/// `12.3k/s`.
/// True for `LAMINA__<MODULE>__…` (a module's own section: consensus, da, execution,
/// settlement, bridge).
fn names_a_module_section(var: &str) -> bool {
    var.strip_prefix("LAMINA__")
        .and_then(|rest| rest.split("__").next())
        .is_some_and(|section| section.to_ascii_lowercase().parse::<crate::module::Module>().is_ok())
}

/// Starts `lamina <module> start --home <home>` with output appended to `log`.
fn spawn_node(exe: &Path, module: &str, home: &Path, log: &Path, detach: bool) -> anyhow::Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.arg(module).arg("start").arg("--home").arg(home).stdin(Stdio::null()).stdout(out).stderr(err);
    // The node's config file decides; overrides meant for this process must not leak in
    // (e.g. one LAMINA_ADMIN_ADDR for every node). Overrides of a module's own section
    // (`LAMINA__CONSENSUS__…`) do pass: they tune that module's nodes, and the others
    // skip them (`config::load_layered`).
    for (k, _) in std::env::vars_os() {
        let ks = k.to_string_lossy();
        if (ks.starts_with("LAMINA_") || ks == "RUST_LOG") && !names_a_module_section(&ks) {
            cmd.env_remove(&k);
        }
    }
    let parent = nix::unistd::getpid();
    let pre_exec = move || -> std::io::Result<()> {
        // Only async-signal-safe system calls between fork and exec (setsid, setpgid,
        // prctl, getppid), with plain integer arguments; no allocation.
        if detach {
            // Own session: no terminal signals, survives this process.
            nix::unistd::setsid()?;
        } else {
            // Own process group: Ctrl-C in the terminal reaches only the supervisor,
            // which stops the nodes in order.
            let me = nix::unistd::Pid::from_raw(0);
            nix::unistd::setpgid(me, me)?;
            // If the supervisor dies without stopping us (SIGKILL), get SIGTERM:
            // no orphaned nodes.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe system calls (see above).
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(pre_exec);
    }
    cmd.spawn().with_context(|| format!("cannot run {}", exe.display()))
}

/// Polls `path` on every admin address at once.
async fn poll_all(
    targets: &[(usize, SocketAddr)],
    path: &'static str,
) -> Vec<(usize, Result<client::HttpResponse, lamina_telemetry::TelemetryError>)> {
    let mut set = JoinSet::new();
    for &(i, addr) in targets {
        set.spawn(async move { (i, client::get(addr, path, ADMIN_TIMEOUT).await) });
    }
    let mut out = Vec::with_capacity(targets.len());
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// `exit 0`, `exit 3`, `signal 9`.
pub fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// The last `n` lines of `path`, indented.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        return "   | (empty)".into();
    }
    tail.iter().map(|l| format!("   | {l}")).collect::<Vec<_>>().join("\n")
}

/// A one-line live status: an indicatif spinner on a terminal, plain lines otherwise.
struct StatusLine {
    bar: ProgressBar,
    last: String,
}

impl StatusLine {
    fn new() -> Self {
        StatusLine { bar: Self::spinner(), last: String::new() }
    }

    fn spinner() -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.green} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        if !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }

    /// Shows `msg` (and `clock` after it on a terminal). Off a terminal, prints `msg`
    /// only when it changes.
    fn set(&mut self, msg: &str, clock: Option<String>) {
        if self.bar.is_hidden() {
            if msg != self.last {
                eprintln!("{msg}");
                self.last = msg.to_string();
            }
        } else {
            match clock {
                Some(c) => self.bar.set_message(format!("{msg} | {c}")),
                None => self.bar.set_message(msg.to_string()),
            }
        }
    }

    fn println(&self, msg: &str) {
        if self.bar.is_hidden() {
            eprintln!("{msg}");
        } else {
            self.bar.println(msg);
        }
    }

    /// Erases the line; a later `set` starts a new one.
    fn clear(&mut self) {
        self.bar.finish_and_clear();
        self.bar = Self::spinner();
        self.last.clear();
    }
}
