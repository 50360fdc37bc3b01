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

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Long enough for a restart of the verifier and a challenge to be ordered inside it,
/// even on a loaded 2-core machine (heights come ~20–60/s here).
const WINDOW: &str = "600";

fn claims(net: &Devnet, d: &[&str]) -> Vec<serde_json::Value> {
    let o = net.cmd().args(["settlement", "claims", "--chain", "1", "--json"]).args(d).output().unwrap();
    if !o.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap().as_array().cloned().unwrap_or_default()
}

#[test]
fn faulty_claimer_is_slashed_honest_claim_finalizes_and_restart_recomputes() {
    // Windows are counted in heights: an idle devnet with a 50 ms heartbeat makes ~20 a
    // second, so the window passes in about 30 s.
    let args = format!(
        "--validators 4 --da-nodes 4 --chains 1 --execution 2 --funded-accounts 4 --settlement 1 \
         --settlement-window {WINDOW} --faulty-claims execution-0 --heartbeat 50ms"
    );
    let mut devnet = Devnet::up(&args.split_whitespace().collect::<Vec<_>>());
    let tmp = tempfile::tempdir().unwrap();
    let dir = devnet.dir.clone();
    let d = ["--devnet", s(&dir)];
    let genesis: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("genesis.toml")).unwrap()).unwrap();
    let key_of = |name: &str| {
        genesis["execution_nodes"].as_array().unwrap().iter().find(|n| n["name"].as_str() == Some(name)).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (faulty, honest) = (key_of("execution-0"), key_of("execution-1"));

    // The verifier goes offline (kill -9) before anything is claimed.
    devnet.kill("settlement-0");

    // One transfer: a height with data for chain 1, claimed by both execution nodes.
    let key = tmp.path().join("to.key");
    let to = ok(devnet.cmd().args(["keys", "generate", "--out", s(&key)]).output().unwrap());
    let out = ok(devnet
        .cmd()
        .args(["tx", "transfer", "--chain", "1", "--to", to.trim(), "--amount", "7", "--from-test-account", "0"])
        .args(d)
        .output()
        .unwrap());
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    let height: u64 = field(&out, "height").parse().unwrap();

    // The verifier returns (inside the window) and catches up from its store and the log.
    std::thread::sleep(Duration::from_secs(1));
    devnet.restart("settlement-0");

    // The faulty claim covering `height` is slashed; the honest one finalizes.
    let covers = |c: &serde_json::Value| c["from"].as_u64().unwrap() < height && c["to"].as_u64().unwrap() >= height;
    let start = Instant::now();
    let (slashed, finalized) = loop {
        let list = claims(&devnet, &d);
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
            tail(&devnet.restart_log("settlement-0"), 60)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_ne!(slashed["state_root"], finalized["state_root"]);
    let window: u64 = WINDOW.parse().unwrap();
    assert_eq!(finalized["deadline"].as_u64().unwrap(), finalized["included_at"].as_u64().unwrap() + window);

    // The finalized root equals the honest execution node's state root at that height.
    let out = ok(devnet.cmd().args(["query", "status", "--chain", "1"]).args(d).output().unwrap());
    let exec_height: u64 = field(&out, "height").parse().unwrap();
    let to_height = finalized["to"].as_u64().unwrap();
    let anchor = ok(devnet
        .cmd()
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
    let status = ok(devnet.cmd().args(["settlement", "status", "--chain", "1", "--json"]).args(d).output().unwrap());
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["finalized_height"].as_u64().unwrap() >= height, "{status:#}");

    // A manual challenge whose witness proves nothing costs the challenger its bond and
    // leaves the honest claim alone (the devnet's client key is funded for bonds).
    let client_key = dir.join("client.key");
    let client = ok(devnet.cmd().args(["keys", "show", "--key", s(&client_key)]).output().unwrap());
    let client = client.trim().to_string();
    let account = |key: &str| {
        let out = ok(devnet.cmd().args(["settlement", "account", key]).args(d).output().unwrap());
        field(&out, "free").parse::<u64>().unwrap()
    };
    let funds = account(&client);
    let out = ok(devnet
        .cmd()
        .args(["tx", "transfer", "--chain", "1", "--to", to.trim(), "--amount", "8", "--from-test-account", "1"])
        .args(d)
        .output()
        .unwrap());
    let height2: u64 = field(&out, "height").parse().unwrap();
    let start = Instant::now();
    let target = loop {
        let list = claims(&devnet, &d);
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
    ok(devnet
        .cmd()
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
    let list = claims(&devnet, &d);
    let c = list.iter().find(|c| c["id"] == target.as_str()).unwrap();
    assert_ne!(c["status"], "slashed", "{c:#}");

    // kill -9 mid-run, restart: the same finalized root for the same height.
    devnet.kill("settlement-0");
    devnet.restart("settlement-0");
    let start = Instant::now();
    let again = loop {
        let o = devnet
            .cmd()
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
