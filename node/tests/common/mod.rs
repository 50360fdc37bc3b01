//! Helpers shared by the tests of the real `lamina` binary: the command with a clean
//! environment, its output checks, and the one way these tests run a network: a
//! [`Devnet`] (`devnet up --keep`) of real processes, with kill/restart and admin-status
//! access. (`tests/devnet.rs` runs `devnet up` in the foreground: that is what it tests.)
#![allow(dead_code)]

pub mod load;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lamina_interfaces::Genesis;
use lamina_primitives::Keypair;

/// Limit of every wait (a loaded 2-core machine, debug builds, ten processes).
pub const WITHIN: Duration = Duration::from_secs(240);

pub fn long() -> bool {
    std::env::var("LAMINA_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// How long each phase of load runs.
pub fn phase() -> Duration {
    if long() { Duration::from_secs(60) } else { Duration::from_secs(6) }
}

/// `lamina` with a clean environment: no `LAMINA_*` overrides or `RUST_LOG` from the
/// environment running the tests.
pub fn lamina() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lamina"));
    for (k, _) in std::env::vars() {
        if k.starts_with("LAMINA_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A command's exit status and output, for a failing assertion.
pub fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The standard output of a command that must succeed.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The value of the first `key: value` line.
pub fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    out.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {key:?} in:\n{out}"))
}

/// A minimal HTTP GET: (status code, body); `None` if the node does not answer.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, resp.split_once("\r\n\r\n")?.1.to_string()))
}

/// A minimal HTTP GET of a text document (`/metrics`); `None` if the node does not answer.
pub fn get_text(addr: &str, path: &str) -> Option<String> {
    http_get(addr, path).map(|(_, body)| body)
}

/// A minimal HTTP GET of a JSON document; `None` if the node does not answer.
pub fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get_text(addr, path)?).ok()
}

/// Running and not a zombie.
pub fn alive(pid: impl Into<u64>) -> bool {
    let pid = pid.into();
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `devnet up --keep` network. Dropping it stops the nodes this test restarted and
/// runs `lamina devnet down` (also when a test panics; then the directory is kept and
/// its path printed, for the logs).
pub struct Devnet {
    pub tmp: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    /// `XDG_DATA_HOME` of every command on this network, where `devnet up` remembers
    /// it: inside the test's directory, never the user's.
    pub xdg: PathBuf,
    pub genesis: Genesis,
    pub client_key: Keypair,
    pub nodes: Vec<serde_json::Value>,
    /// Nodes restarted by the test: name -> process.
    pub restarted: HashMap<String, Child>,
}

impl Devnet {
    pub fn up(args: &[&str]) -> Devnet {
        Self::up_env(args, &[])
    }

    /// [`Devnet::up`] with environment variables for `devnet up` (which passes
    /// `LAMINA__<MODULE>__…` ones to its nodes).
    pub fn up_env(args: &[&str], env: &[(&str, &str)]) -> Devnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        let xdg = tmp.path().join("xdg");
        let out = lamina()
            .env("XDG_DATA_HOME", &xdg)
            .args(["devnet", "up", "--dir", s(&dir), "--keep", "--load", "0", "--ready-timeout", "180s"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut net = Devnet {
            tmp: Some(tmp),
            dir: dir.clone(),
            xdg,
            genesis: lamina_node::genesis::empty("placeholder"),
            client_key: Keypair::for_testing(0),
            nodes: Vec::new(),
            restarted: HashMap::new(),
        };
        assert!(
            out.status.success(),
            "devnet up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap();
        assert_eq!(st["phase"], "ready");
        net.nodes = st["nodes"].as_array().unwrap().clone();
        net.genesis = lamina_node::genesis::load(Path::new(st["genesis"].as_str().unwrap())).unwrap();
        net.client_key = lamina_node::keys::read(Path::new(st["client_key"].as_str().unwrap())).unwrap();
        net
    }

    /// `lamina` with a clean environment, for this network (its `XDG_DATA_HOME`).
    pub fn cmd(&self) -> Command {
        let mut c = lamina();
        c.env("XDG_DATA_HOME", &self.xdg);
        c
    }

    pub fn node(&self, name: &str) -> &serde_json::Value {
        self.nodes.iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn names(&self, prefix: &str) -> Vec<String> {
        self.nodes.iter().map(|n| n["name"].as_str().unwrap().to_string()).filter(|n| n.starts_with(prefix)).collect()
    }

    /// The node's current process id (the restarted one if the test restarted it).
    pub fn pid(&self, name: &str) -> u32 {
        match self.restarted.get(name) {
            Some(c) => c.id(),
            None => self.node(name)["pid"].as_u64().unwrap() as u32,
        }
    }

    /// The node's admin `/status`, if it answers.
    pub fn status(&self, name: &str) -> Option<serde_json::Value> {
        get_json(self.node(name)["admin"].as_str().unwrap(), "/status")
    }

    /// A validator's finalized height, if it answers.
    pub fn height(&self, name: &str) -> Option<u64> {
        self.status(name).and_then(|s| s["height"].as_u64())
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self, name: &str) {
        let pid = self.pid(name);
        assert!(alive(pid), "{name} (pid {pid}) is not running before the kill");
        signal(pid, nix::sys::signal::Signal::SIGKILL);
        if let Some(mut c) = self.restarted.remove(name) {
            c.wait().unwrap();
        }
        let start = Instant::now();
        while alive(pid) {
            assert!(start.elapsed() < WITHIN, "{name} survived SIGKILL");
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("killed {name} (pid {pid})");
    }

    /// `lamina <module> start --home <home>`, logging to `<dir>/logs/<name>.restart-<n>.log`.
    pub fn restart(&mut self, name: &str) {
        let node = self.node(name).clone();
        let module = node["module"].as_str().unwrap();
        let home = node["home"].as_str().unwrap();
        let mut n = 1;
        let log = loop {
            let p = self.dir.join("logs").join(format!("{name}.restart-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let out = std::fs::File::create(&log).unwrap();
        let child = self
            .cmd()
            .args([module, "start", "--home", home])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        eprintln!("restarted {name} (pid {}), log {}", child.id(), log.display());
        self.restarted.insert(name.to_string(), child);
    }

    pub fn restart_log(&self, name: &str) -> PathBuf {
        let mut n = 1;
        while self.dir.join("logs").join(format!("{name}.restart-{}.log", n + 1)).exists() {
            n += 1;
        }
        self.dir.join("logs").join(format!("{name}.restart-{n}.log"))
    }

    /// Waits until a (restarted) node's `/readyz` checks all pass.
    pub async fn wait_ready(&mut self, name: &str) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.status(name)
                && st["ready"] == true
            {
                return;
            }
            if let Some(c) = self.restarted.get_mut(name)
                && let Some(exit) = c.try_wait().unwrap()
            {
                panic!("{name} exited with {exit}:\n{}", tail(&self.restart_log(name), 40));
            }
            assert!(
                start.elapsed() < WITHIN,
                "{name} not ready: {:?}\n{}",
                self.status(name),
                tail(&self.restart_log(name), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every named validator answers with a height above `above`.
    pub async fn wait_heights_above(&self, names: &[String], above: u64, what: &str) -> u64 {
        let start = Instant::now();
        loop {
            let hs: Vec<Option<u64>> = names.iter().map(|n| self.height(n)).collect();
            if hs.iter().all(|h| h.is_some_and(|h| h > above)) {
                return hs.iter().map(|h| h.unwrap()).min().unwrap();
            }
            assert!(start.elapsed() < WITHIN, "{what}: validator heights {hs:?} did not pass {above}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The lowest height among the named validators (all must answer).
    pub fn min_height(&self, names: &[String]) -> u64 {
        names.iter().map(|n| self.height(n).unwrap_or_else(|| panic!("{n} does not answer"))).min().unwrap()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for c in self.restarted.values() {
            signal(c.id(), nix::sys::signal::Signal::SIGTERM);
        }
        let start = Instant::now();
        for c in self.restarted.values_mut() {
            while c.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let down = self.cmd().args(["devnet", "down", "--dir", s(&self.dir)]).stdin(Stdio::null()).output();
        if std::thread::panicking() {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("devnet directory kept for its logs: {}", tmp.keep().display());
            }
        } else {
            let down = down.unwrap();
            assert!(down.status.success(), "devnet down: {}", show(&down));
        }
    }
}
