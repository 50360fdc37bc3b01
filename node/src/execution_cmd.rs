//! `lamina execution …`: the module commands, and state snapshots for operators.
//!
//! An execution node writes a snapshot of its chain's state every `snapshot_every`
//! heights or `snapshot_every_txs` transactions under `<home>/data/snapshots/`
//! ([`lamina_execution_service::snapshot`]). A node started from another node's snapshot
//! makes no claims (it does not continue a claim chain it did not check).
//! `snapshot list` shows them, `snapshot export` copies one out (verified: every chunk
//! and the rebuilt state root), and `snapshot import` verifies one and installs it in a
//! fresh home, whose node then starts at the snapshot's height and follows the log from
//! there instead of re-executing the chain's whole history. `sync-status` follows a
//! running node's state sync (a node started with an empty data directory fetches a
//! snapshot from its peers) with a progress bar.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lamina_execution_service::snapshot;
use lamina_interfaces::Genesis;
use lamina_primitives::{ChainId, Digest, PublicKey};

use crate::args::{HomeArg, ModuleCmd};
use crate::home::Home;
use crate::module::Module;

/// `lamina execution …`
#[derive(Debug, Subcommand)]
pub enum ExecutionCmd {
    /// Module commands (init, start, config).
    #[command(flatten)]
    Module(ModuleCmd),
    /// State snapshots: list, export, import.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Follow a running node's state sync: a progress bar over the snapshot's chunks
    /// until it is verified and installed (or the node falls back to replaying the log).
    SyncStatus(SyncStatusArgs),
}

/// `sync-status` arguments.
#[derive(Debug, Args)]
pub struct SyncStatusArgs {
    /// The execution node's home (to find its admin address).
    #[command(flatten)]
    pub home: HomeArg,
    /// The node's admin HTTP address (default: from the home's config and genesis).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
}

/// `lamina execution snapshot …`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// The snapshots in a home: height, keys, chunks, state root, size.
    List(ListArgs),
    /// Copy a snapshot out of a home (the newest, or `--height`), after verifying it.
    /// The node may be running.
    Export(ExportArgs),
    /// Verify a snapshot and install it in a home without execution data (after
    /// `lamina execution init`); `start` then begins at its height.
    Import(ImportArgs),
}

/// `snapshot list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The execution node's home.
    #[command(flatten)]
    pub home: HomeArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `snapshot export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The execution node's home.
    #[command(flatten)]
    pub home: HomeArg,
    /// The snapshot's height (default: the newest).
    #[arg(long)]
    pub height: Option<u64>,
    /// Directory to create with the snapshot's files.
    #[arg(long)]
    pub out: PathBuf,
}

/// `snapshot import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The execution node's home (initialized, never started).
    #[command(flatten)]
    pub home: HomeArg,
    /// The snapshot directory (as written by `export`).
    #[arg(long)]
    pub from: PathBuf,
}

/// Runs an `execution` command.
pub fn run(cmd: ExecutionCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ExecutionCmd::Module(c) => crate::module_cmd::run(Module::Execution, c),
        ExecutionCmd::Snapshot(SnapshotCmd::List(a)) => list(a),
        ExecutionCmd::Snapshot(SnapshotCmd::Export(a)) => export(a),
        ExecutionCmd::Snapshot(SnapshotCmd::Import(a)) => import(a),
        ExecutionCmd::SyncStatus(a) => sync_status(a),
    }
}

/// `lamina execution sync-status`: polls the node's `/status` (4 times a second) and
/// draws the `state_sync` progress (bytes of chunks fetched and checked) until the
/// `state_sync` check passes. Off a terminal it prints one line per change.
fn sync_status(a: SyncStatusArgs) -> anyhow::Result<ExitCode> {
    let addr = match a.admin_addr {
        Some(addr) => addr,
        None => {
            let (_, cfg, genesis, key) = home_files(&a.home)?;
            crate::service::admin_address(Module::Execution, &cfg, genesis.node(&key).and_then(|n| n.admin))
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(watch_sync(addr))
}

async fn watch_sync(addr: SocketAddr) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner:.green} {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut last = String::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        match lamina_telemetry::client::get_json(addr, "/status", Duration::from_secs(5)).await {
            Ok((_, v)) => {
                unreachable_since = None;
                let check = &v["checks"]["state_sync"];
                let detail = check["detail"].as_str().unwrap_or_default().to_string();
                match check["ok"].as_bool() {
                    Some(true) => {
                        bar.finish_and_clear();
                        println!("state sync: {detail}");
                        return Ok(ExitCode::SUCCESS);
                    }
                    Some(false) => {
                        let p = &v["state_sync"];
                        let progress = p["bytes"].as_u64().map(|total| (p["bytes_done"].as_u64().unwrap_or(0), total));
                        show(&bar, &mut last, format!("state sync: {detail}"), progress);
                    }
                    None if v["ready"].as_bool() == Some(true) => {
                        bar.finish_and_clear();
                        println!("the node is ready and did not state-sync (it had data, or no peer to sync from)");
                        return Ok(ExitCode::SUCCESS);
                    }
                    None => show(&bar, &mut last, "waiting for the node to start".into(), None),
                }
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    bar.finish_and_clear();
                    bail!("cannot reach the node's admin server at {addr} (for 30 s): {e}");
                }
                show(&bar, &mut last, format!("waiting for the admin server at {addr}"), None);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One progress update: the bar on a terminal, else a line when the message changes.
fn show(bar: &ProgressBar, last: &mut String, msg: String, progress: Option<(u64, u64)>) {
    if bar.is_hidden() {
        if msg != *last {
            eprintln!("{msg}");
            *last = msg;
        }
        return;
    }
    if let Some((done, total)) = progress {
        bar.set_length(total);
        bar.set_position(done);
    }
    bar.set_message(msg);
    bar.tick();
}

/// The home, its genesis digest and the chain its node executes.
/// An execution home's config, genesis and node key.
fn home_files(arg: &HomeArg) -> anyhow::Result<(Home, crate::config::NodeConfig, Genesis, PublicKey)> {
    let home = crate::module_cmd::home_for(Module::Execution, arg)?;
    let cfg = crate::service::load_config(&home, Module::Execution, &[])?;
    let genesis = crate::genesis::load(&home.genesis_file())?;
    let key = crate::keys::read_public(&home.key_file())?;
    Ok((home, cfg, genesis, key))
}

fn home_chain(arg: &HomeArg) -> anyhow::Result<(Home, Digest, ChainId)> {
    let (home, cfg, genesis, key) = home_files(arg)?;
    let chain = cfg
        .execution
        .and_then(|c| c.0.chain)
        .or_else(|| genesis.execution_nodes.iter().find(|n| n.key == key).and_then(|n| n.chain))
        .with_context(|| {
            format!(
                "{}: no chain configured and this node's key is not an execution node of the genesis",
                home.root().display()
            )
        })?;
    Ok((home, genesis.digest(), chain))
}

fn snapshots_dir(home: &Home) -> PathBuf {
    home.data_dir().join("snapshots")
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let (home, _, chain) = home_chain(&a.home)?;
    let mut rows = Vec::new();
    for (height, dir) in snapshot::list(&snapshots_dir(&home)) {
        match snapshot::read_manifest(&dir) {
            Ok(m) => {
                let bytes: u64 = m.chunks.iter().map(|c| c.bytes).sum::<u64>() + m.node.bytes;
                rows.push(serde_json::json!({
                    "height": height.0, "chain": m.chain.0, "keys": m.keys, "chunks": m.chunks.len(),
                    "state_root": m.state_root.to_hex(), "bytes": bytes, "id": m.id().to_hex(),
                    "path": dir.display().to_string(),
                }));
            }
            Err(e) => rows.push(
                serde_json::json!({"height": height.0, "error": e.to_string(), "path": dir.display().to_string()}),
            ),
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no snapshots in {} (chain {chain})", snapshots_dir(&home).display());
        return Ok(ExitCode::SUCCESS);
    }
    let cell = |r: &serde_json::Value, k: &str| {
        r.get(k).map_or_else(|| "-".to_string(), |v| v.to_string().trim_matches('"').to_string())
    };
    print!(
        "{}",
        crate::table::plain(
            &["HEIGHT", "KEYS", "CHUNKS", "BYTES", "STATE ROOT"],
            &[0, 1, 2, 3],
            rows.iter().map(|r| {
                let root = r.get("state_root").map_or_else(|| cell(r, "error"), |_| cell(r, "state_root"));
                vec![cell(r, "height"), cell(r, "keys"), cell(r, "chunks"), cell(r, "bytes"), root]
            }),
            "",
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let (home, genesis, chain) = home_chain(&a.home)?;
    let all = snapshot::list(&snapshots_dir(&home));
    let Some((height, dir)) = (match a.height {
        Some(h) => all.into_iter().find(|(sh, _)| sh.0 == h),
        None => all.into_iter().next(),
    }) else {
        bail!(
            "no snapshot{} in {}: nodes write one every `snapshot_every` heights",
            a.height.map(|h| format!(" of height {h}")).unwrap_or_default(),
            snapshots_dir(&home).display()
        );
    };
    let m = snapshot::copy(&dir, &a.out, &genesis, chain)
        .with_context(|| format!("cannot export the snapshot of height {height}"))?;
    eprintln!(
        "exported the snapshot of chain {chain} at height {height} ({} keys, {} chunks, verified)",
        m.keys,
        m.chunks.len()
    );
    println!("{}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let (home, genesis, chain) = home_chain(&a.home)?;
    let _lock = home.lock()?;
    let data = home.data_dir();
    if !snapshot::list(&snapshots_dir(&home)).is_empty() {
        bail!(
            "{} already holds snapshots: import into a fresh home (`lamina execution init`), or remove {} first",
            home.root().display(),
            snapshots_dir(&home).display()
        );
    }
    for existing in ["blocks", "index.redb"] {
        if data.join(existing).exists() {
            bail!(
                "{} already holds execution data ({existing}): import into a fresh home (`lamina execution init`), or remove {} and {} first",
                home.root().display(),
                data.join("blocks").display(),
                data.join("index.redb").display()
            );
        }
    }
    let m = snapshot::read_manifest(&a.from)?;
    let to = snapshots_dir(&home).join(snapshot::dir_name(m.height));
    std::fs::create_dir_all(snapshots_dir(&home))?;
    let m =
        snapshot::copy(&a.from, &to, &genesis, chain).context("the snapshot does not verify; nothing was installed")?;
    eprintln!(
        "installed the snapshot of chain {chain} at height {} (root {}, {} keys); `lamina execution start` follows the log from height {}",
        m.height,
        m.state_root,
        m.keys,
        m.height.next()
    );
    Ok(ExitCode::SUCCESS)
}
