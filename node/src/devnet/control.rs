//! `lamina devnet down` and `lamina devnet status`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lamina_telemetry::client;

use super::state::{DevnetState, Phase, is_alive, is_our_node, signal};
use crate::home::Home;

const ADMIN_TIMEOUT: Duration = Duration::from_millis(1500);

/// Stops the devnet in `dir`: asks its supervisor to stop (when `up` still runs in
/// another terminal), or signals the kept nodes directly.
pub async fn down(dir: PathBuf, grace: Duration) -> anyhow::Result<ExitCode> {
    let st = DevnetState::load(&dir)?;
    if let Some(sup) = st.supervisor.filter(|&p| p != std::process::id() && is_alive(p)) {
        eprintln!("asking the supervising `lamina devnet up` (pid {sup}) to stop the network");
        signal(sup, nix::sys::signal::Signal::SIGTERM);
        // It stops the nodes itself within its own grace period.
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(5);
        while is_alive(sup) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if is_alive(sup) {
            anyhow::bail!("the supervisor (pid {sup}) is still running; stop it with Ctrl-C or kill it");
        }
        // Nodes restarted by hand are not its children: stopped below.
        if running(&DevnetState::load(&dir)?).is_empty() {
            eprintln!("stopped");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut st = DevnetState::load(&dir)?;
    let live = running(&st);
    if live.is_empty() {
        eprintln!("no node of the devnet in {} is running", dir.display());
        st.phase = Phase::Stopped;
        st.save()?;
        return Ok(ExitCode::SUCCESS);
    }
    st.phase = Phase::Stopping;
    st.save()?;
    for &(_, pid) in &live {
        signal(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while live.iter().any(|&(_, p)| is_alive(p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut killed = 0;
    for &(i, pid) in &live {
        // These are not our children: their exit codes go to whoever adopted them.
        let home = &st.nodes[i].home;
        let how = if is_alive(pid) && (Home::new(home).holder() == Some(pid) || is_our_node(pid, home)) {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
            killed += 1;
            format!("killed after {grace:.0?} grace")
        } else {
            "stopped after SIGTERM".to_string()
        };
        st.nodes[i].exit = Some(how);
    }
    st.phase = Phase::Stopped;
    st.save()?;
    eprintln!("stopped {} nodes ({} needed SIGKILL); logs: {}", live.len(), killed, dir.join("logs").display());
    Ok(if killed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The devnet's nodes that run now, with their pids: the process holding the node's
/// home (`data/node.lock`: also a node restarted by hand), else the recorded pid if
/// that process still runs on the home.
fn running(st: &DevnetState) -> Vec<(usize, u32)> {
    st.nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            Home::new(&n.home).holder().or_else(|| n.pid.filter(|&p| is_our_node(p, &n.home))).map(|p| (i, p))
        })
        .collect()
}

/// Prints every node's `/status` (table, or JSON with `json`).
pub async fn status(dir: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let st = DevnetState::load(&dir)?;
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in st.nodes.iter().enumerate() {
        let addr = n.admin;
        set.spawn(async move { (i, client::get_json(addr, "/status", ADMIN_TIMEOUT).await) });
    }
    let mut docs: Vec<Option<serde_json::Value>> = vec![None; st.nodes.len()];
    let mut errors: Vec<Option<String>> = vec![None; st.nodes.len()];
    while let Some(Ok((i, r))) = set.join_next().await {
        match r {
            Ok((_, doc)) => docs[i] = Some(doc),
            Err(e) => errors[i] = Some(e.to_string()),
        }
    }
    if json {
        let all: Vec<serde_json::Value> = st
            .nodes
            .iter()
            .zip(&docs)
            .map(|(n, d)| serde_json::json!({ "name": n.name, "module": n.module, "pid": n.pid, "status": d }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let phase = serde_json::to_value(st.phase)?.as_str().unwrap_or_default().to_string();
    println!("devnet {} ({phase}{})", dir.display(), if st.kept { ", kept" } else { "" });
    let mut all_ready = true;
    let mut rows = Vec::new();
    for (i, n) in st.nodes.iter().enumerate() {
        let alive = n.pid.is_some_and(|p| is_our_node(p, &n.home));
        let (ready, peers) = match &docs[i] {
            Some(d) => (if d["ready"] == true { "yes" } else { "no" }, peers_summary(d)),
            None => ("-", errors[i].clone().map(|_| "(admin not answering)".to_string()).unwrap_or_default()),
        };
        all_ready &= ready == "yes";
        rows.push(vec![
            n.name.clone(),
            n.module.as_str().to_string(),
            n.pid.map(|p| p.to_string()).unwrap_or_default(),
            if alive { "running" } else { "stopped" }.to_string(),
            ready.to_string(),
            n.admin.to_string(),
            peers,
        ]);
    }
    print!(
        "{}",
        crate::table::plain(
            &["NAME", "MODULE", "PID", "PROCESS", "READY", "ADMIN", "PEERS (connected/total)"],
            &[2],
            rows,
            ""
        )
    );
    Ok(if all_ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `validators 3/3, da_nodes 4/4` from a `/status` document's `peers` object.
pub fn peers_summary(doc: &serde_json::Value) -> String {
    let Some(groups) = doc["peers"].as_object() else { return String::new() };
    groups
        .iter()
        .filter(|(_, v)| v["total"].as_u64().unwrap_or(0) > 0)
        .map(|(g, v)| format!("{g} {}/{}", v["connected"].as_u64().unwrap_or(0), v["total"].as_u64().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}
