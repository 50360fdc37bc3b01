#![allow(clippy::unwrap_used)]
//! The settlement layer on a real devnet: real processes, real QUIC on 127.0.0.1, real
//! files. One chain with two execution nodes, one of which posts wrong state roots
//! (`--faulty-claims execution-0`), and one settlement node in verifier mode.
//!
//! What must hold:
//! * the verifier, killed with -9 before the faulty claim and restarted inside its
//!   window, still challenges it: the faulty claim is slashed and never finalizes;
//! * the honest claim for the same range finalizes, no earlier than its window end;
//! * the settlement node killed with -9 mid-run recomputes the same finalized root for
//!   the same height after a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a restart of the verifier and a challenge to be ordered inside it,
/// even on a loaded 2-core machine (heights come ~20–60/s here).
const WINDOW: &str = "600";
/// Generous bound for a loaded machine; the test never asserts on speed.
const WITHIN: Duration = Duration::from_secs(240);

fn lamina(xdg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lamina"));
    for (k, _) in std::env::vars() {
        if k.starts_with("LAMINA_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("XDG_DATA_HOME", xdg);
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    out.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {key:?} in:\n{out}"))
}

/// Stops the devnet (and a restarted settlement node) when the test ends.
struct Down {
    xdg: PathBuf,
    dir: PathBuf,
    extra: Option<Child>,
}

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(c) = self.extra.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let o = lamina(&self.xdg).args(["devnet", "down", "--dir", s(&self.dir)]).output().unwrap();
        if !std::thread::panicking() {
            assert!(o.status.success(), "devnet down: {}", show(&o));
        }
    }
}

fn sigkill(pid: u64) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
}

fn node<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap()
}

/// Starts `lamina settlement start` on the devnet's settlement home, output to a log.
fn start_settlement(xdg: &Path, home: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    lamina(xdg)
        .args(["settlement", "start", "--home", s(home)])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

fn claims(xdg: &Path, d: &[&str]) -> Vec<serde_json::Value> {
    let o = lamina(xdg).args(["settlement", "claims", "--chain", "1", "--json"]).args(d).output().unwrap();
    if !o.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap().as_array().cloned().unwrap_or_default()
}

#[test]
fn faulty_claimer_is_slashed_honest_claim_finalizes_and_restart_recomputes() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let dir = tmp.path().join("net");
    let net = || lamina(&xdg);
    let up = net()
        .args(["devnet", "up", "--dir", s(&dir), "--keep", "--load", "0", "--validators", "4", "--da-nodes", "4"])
        .args(["--chains", "1", "--execution", "2", "--funded-accounts", "4", "--settlement", "1"])
        .args(["--settlement-window", WINDOW, "--faulty-claims", "execution-0"])
        // Windows are counted in heights: an idle devnet with a 50 ms heartbeat makes
        // ~20 a second, so the window passes in about 30 s.
        .args(["--heartbeat", "50ms"])
        .output()
        .unwrap();
    let mut down = Down { xdg: xdg.clone(), dir: dir.clone(), extra: None };
    assert!(up.status.success(), "devnet up: {}", show(&up));
    let d = ["--devnet", s(&dir)];
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap();
    let genesis: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("genesis.toml")).unwrap()).unwrap();
    let key_of = |name: &str| {
        genesis["execution_nodes"].as_array().unwrap().iter().find(|n| n["name"].as_str() == Some(name)).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (faulty, honest) = (key_of("execution-0"), key_of("execution-1"));
    let settlement = node(&st, "settlement-0");
    let home = PathBuf::from(settlement["home"].as_str().unwrap());

    // The verifier goes offline (kill -9) before anything is claimed.
    sigkill(settlement["pid"].as_u64().unwrap());

    // One transfer: a height with data for chain 1, claimed by both execution nodes.
    let key = tmp.path().join("to.key");
    let to = ok(net().args(["keys", "generate", "--out", s(&key)]).output().unwrap());
    let out = ok(net()
        .args(["tx", "transfer", "--chain", "1", "--to", to.trim(), "--amount", "7", "--from-test-account", "0"])
        .args(d)
        .output()
        .unwrap());
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    let height: u64 = field(&out, "height").parse().unwrap();

    // The verifier returns (inside the window) and catches up from its store and the log.
    std::thread::sleep(Duration::from_secs(1));
    down.extra = Some(start_settlement(&xdg, &home, &tmp.path().join("settlement-1.log")));

    // The faulty claim covering `height` is slashed; the honest one finalizes.
    let covers = |c: &serde_json::Value| c["from"].as_u64().unwrap() < height && c["to"].as_u64().unwrap() >= height;
    let start = Instant::now();
    let (slashed, finalized) = loop {
        let list = claims(&xdg, &d);
        let slashed =
            list.iter().find(|c| c["claimer"] == faulty.as_str() && covers(c) && c["status"] == "slashed").cloned();
        let finalized =
            list.iter().find(|c| c["claimer"] == honest.as_str() && covers(c) && c["status"] == "finalized").cloned();
        if let (Some(s), Some(f)) = (&slashed, &finalized) {
            break (s.clone(), f.clone());
        }
        assert!(
            !list.iter().any(|c| c["claimer"] == faulty.as_str() && c["status"] == "finalized"),
            "a faulty claim finalized: {list:#?}"
        );
        assert!(
            start.elapsed() < WITHIN,
            "no slash + finalization in time; claims: {list:#?}\nsettlement log:\n{}",
            std::fs::read_to_string(tmp.path().join("settlement-1.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_ne!(slashed["state_root"], finalized["state_root"]);
    let window: u64 = WINDOW.parse().unwrap();
    assert_eq!(finalized["deadline"].as_u64().unwrap(), finalized["included_at"].as_u64().unwrap() + window);

    // The finalized root equals the honest execution node's state root at that height.
    let out = ok(net().args(["query", "status", "--chain", "1"]).args(d).output().unwrap());
    let exec_height: u64 = field(&out, "height").parse().unwrap();
    let to_height = finalized["to"].as_u64().unwrap();
    let anchor = ok(net()
        .args(["settlement", "anchor", "--chain", "1", "--height", &to_height.to_string()])
        .args(d)
        .output()
        .unwrap());
    assert!(field(&anchor, "proof").starts_with("verified"), "{anchor}");
    assert_eq!(field(&anchor, "state_root"), finalized["state_root"].as_str().unwrap());
    if exec_height == to_height {
        assert_eq!(field(&out, "state_root"), field(&anchor, "state_root"));
    }

    // The faulty claimer lost its bond; `settlement status --chain 1 --json` shows the root.
    let status = ok(net().args(["settlement", "status", "--chain", "1", "--json"]).args(d).output().unwrap());
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["finalized_height"].as_u64().unwrap() >= height, "{status:#}");

    // A manual challenge whose witness proves nothing costs the challenger its bond and
    // leaves the honest claim alone (the devnet's client key is funded for bonds).
    let client_key = dir.join("client.key");
    let client = ok(net().args(["keys", "show", "--key", s(&client_key)]).output().unwrap());
    let client = client.trim().to_string();
    let account = |key: &str| {
        let out = ok(net().args(["settlement", "account", key]).args(d).output().unwrap());
        field(&out, "free").parse::<u64>().unwrap()
    };
    let funds = account(&client);
    let out = ok(net()
        .args(["tx", "transfer", "--chain", "1", "--to", to.trim(), "--amount", "8", "--from-test-account", "1"])
        .args(d)
        .output()
        .unwrap());
    let height2: u64 = field(&out, "height").parse().unwrap();
    let start = Instant::now();
    let target = loop {
        let list = claims(&xdg, &d);
        if let Some(c) = list.iter().find(|c| {
            c["claimer"] == honest.as_str()
                && c["from"].as_u64().unwrap() < height2
                && c["to"].as_u64().unwrap() >= height2
                && c["status"] == "pending"
        }) {
            break c["id"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < WITHIN, "no pending honest claim for height {height2}: {list:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let junk = tmp.path().join("junk.witness");
    std::fs::write(&junk, b"not a witness of anything").unwrap();
    ok(net()
        .args(["settlement", "challenge", "--claim", &target, "--step", "0"])
        .args(["--witness", s(&junk), "--key", s(&client_key)])
        .args(d)
        .output()
        .unwrap());
    let start = Instant::now();
    while account(&client) == funds {
        assert!(start.elapsed() < WITHIN, "the failed challenge never cost the challenger");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(account(&client), funds - 1_000, "challenge_bond (default 1000) paid to the claimer");
    let list = claims(&xdg, &d);
    let c = list.iter().find(|c| c["id"] == target.as_str()).unwrap();
    assert_ne!(c["status"], "slashed", "{c:#}");

    // kill -9 mid-run, restart: the same finalized root for the same height.
    let mut extra = down.extra.take().unwrap();
    extra.kill().unwrap();
    extra.wait().unwrap();
    down.extra = Some(start_settlement(&xdg, &home, &tmp.path().join("settlement-2.log")));
    let start = Instant::now();
    let again = loop {
        let o = net()
            .args(["settlement", "anchor", "--chain", "1", "--height", &to_height.to_string()])
            .args(d)
            .output()
            .unwrap();
        if o.status.success() {
            break String::from_utf8(o.stdout).unwrap();
        }
        assert!(start.elapsed() < WITHIN, "restarted settlement node never answered: {}", show(&o));
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(field(&again, "state_root"), field(&anchor, "state_root"));
    assert_eq!(field(&again, "claim"), field(&anchor, "claim"));
    assert_eq!(field(&again, "finalized_at"), field(&anchor, "finalized_at"));
}
