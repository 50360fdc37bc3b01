//! The devnet state file (`<dir>/devnet.json`) and process helpers for pids that may
//! not be our children (a `--keep` network, stopped later by `lamina devnet down`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::module::Module;

/// Name of the state file in a devnet directory.
pub const STATE_FILE: &str = "devnet.json";

/// One node of a devnet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    /// Genesis name (`validator-0`).
    pub name: String,
    /// Module.
    pub module: Module,
    /// Home directory.
    pub home: PathBuf,
    /// QUIC address.
    pub quic: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Log file (the process's standard output and error).
    pub log: PathBuf,
    /// OS process id, once started.
    pub pid: Option<u32>,
    /// Exit status after the network stopped (`None`: running, killed, or unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

/// Lifecycle of a devnet, as recorded in the state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Processes started, not all ready yet.
    Starting,
    /// Every process reported ready.
    Ready,
    /// Stopping.
    Stopping,
    /// Stopped; `exit` of each node says how.
    Stopped,
    /// Failed to come up; stopped.
    Failed,
}

/// `<dir>/devnet.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DevnetState {
    /// The devnet directory.
    pub dir: PathBuf,
    /// Pid of the `lamina devnet up` process supervising the nodes (`None` once it has
    /// detached with `--keep`).
    pub supervisor: Option<u32>,
    /// Whether the network was left running detached (`--keep`).
    pub kept: bool,
    /// Where the network is in its lifecycle.
    pub phase: Phase,
    /// The genesis file.
    pub genesis: PathBuf,
    /// Key file of the devnet's client identity (a genesis client: may submit, read the
    /// log, use DA and query execution). Client commands and the load generator use it.
    #[serde(default)]
    pub client_key: PathBuf,
    /// Every node, in start order.
    pub nodes: Vec<NodeRecord>,
}

impl DevnetState {
    /// Reads `<dir>/devnet.json`.
    pub fn load(dir: &Path) -> anyhow::Result<DevnetState> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is {} a devnet directory?)", path.display(), dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a devnet state file", path.display()))
    }

    /// Writes `<dir>/devnet.json` atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::home::write_atomic(&self.dir.join(STATE_FILE), text.as_bytes())
    }

    /// Nodes whose process is still running (checked against `/proc`).
    pub fn live_nodes(&self) -> Vec<&NodeRecord> {
        self.nodes.iter().filter(|n| n.pid.is_some_and(|p| is_our_node(p, &n.home))).collect()
    }
}

/// True if `pid` is a running (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    // Zombie (Z) or dead (X): exited, not reaped yet.
    i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).and_then(|p| p.stat()).ok())
        .is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

/// True if `pid` is running and is the lamina process of the node at `home` (guards
/// against pid reuse before signalling a process we did not start in this run).
pub fn is_our_node(pid: u32, home: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let home = home.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == home)
}

/// Sends `signal` to `pid`; false if there is no such process.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = DevnetState {
            dir: dir.path().to_path_buf(),
            supervisor: Some(1),
            kept: false,
            phase: Phase::Ready,
            genesis: dir.path().join("genesis.toml"),
            client_key: dir.path().join("client.key"),
            nodes: vec![NodeRecord {
                name: "validator-0".into(),
                module: Module::Consensus,
                home: dir.path().join("nodes/validator-0"),
                quic: "127.0.0.1:1".parse().unwrap(),
                admin: "127.0.0.1:2".parse().unwrap(),
                log: dir.path().join("logs/validator-0.log"),
                pid: Some(u32::MAX),
                exit: None,
            }],
        };
        s.save().unwrap();
        assert_eq!(DevnetState::load(dir.path()).unwrap(), s);
        assert!(s.live_nodes().is_empty(), "no such pid");
    }

    #[test]
    fn this_process_is_alive_and_not_a_node() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(!is_our_node(me, Path::new("/definitely/not/our/home")));
        assert!(!is_alive(u32::MAX));
    }
}
