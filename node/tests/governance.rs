#![allow(clippy::unwrap_used)]
//! On-chain governance against a real devnet (real processes, QUIC, files): a consortium
//! with restricted client access adds a client key by vote, the key connects and submits
//! without any node restarting; a vote changes the chain's fee and the blocks of the next
//! epoch charge it, while the settlement node's verifier, re-executing every step,
//! agrees (no challenge, the claims finalize); then a vote removes the key and it is
//! refused at the handshake, by validators and DA nodes alike. `lamina gov` refuses what
//! the log would reject, with the reason. Under load ([`common::load`]) in every test: a
//! fifth validator joins by vote and one leaves, a DA node joins and one leaves, and the
//! client key, fee and limits change; every acknowledged transfer executes, none is
//! rejected.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::load::{Client, Load, assert_all_succeed, rt};
use common::*;

/// A validator's node key file (the voting members are the validators, weight 1 each).
fn member(devnet: &Devnet, i: usize) -> PathBuf {
    Path::new(devnet.node(&format!("validator-{i}"))["home"].as_str().unwrap()).join("config").join("node.key")
}

/// `lamina gov status --json`.
fn gov_status(devnet: &Devnet) -> serde_json::Value {
    let d = ["--devnet", s(&devnet.dir)];
    let out = ok(devnet.cmd().args(["gov", "status", "--json"]).args(d).output().unwrap());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Proposes with validator-0's key and votes yes with validators 0..3 (3 of 4 passes at
/// once); returns the boundary height it applies at.
fn pass(devnet: &Devnet, proposal: &[&str]) -> u64 {
    let d = ["--devnet", s(&devnet.dir)];
    let m0 = member(devnet, 0);
    let out = ok(devnet
        .cmd()
        .args(["gov", "propose"])
        .args(proposal)
        .args(["--reason", "test", "--member-key", s(&m0), "--json"])
        .args(d)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "open", "{v}");
    let id = v["proposal"].as_u64().unwrap().to_string();
    let mut last = serde_json::Value::Null;
    for i in 0..3 {
        let key = member(devnet, i);
        let out = ok(devnet
            .cmd()
            .args(["gov", "vote", &id, "yes", "--member-key", s(&key), "--json"])
            .args(d)
            .output()
            .unwrap());
        last = serde_json::from_str(&out).unwrap();
    }
    let status = last["status"].as_str().unwrap();
    // Its boundary may already have passed by the time the vote is seen in the log.
    assert!(status.starts_with("passed") || status.starts_with("applied"), "{last}");
    last["applies_at"].as_u64().unwrap()
}

/// Waits until every node reports (in `/status`) a governance epoch that starts after
/// `boundary`.
fn wait_applied(devnet: &Devnet, boundary: u64) {
    let deadline = Instant::now() + phase();
    let mut names = devnet.names("validator-");
    names.extend(devnet.names("da-"));
    names.extend(devnet.names("execution-"));
    names.extend(devnet.names("settlement-"));
    for name in names {
        loop {
            let first = devnet.status(&name).and_then(|s| s["governance"]["first_height"].as_u64());
            if first.is_some_and(|f| f > boundary) {
                break;
            }
            assert!(Instant::now() < deadline, "{name} did not reach the epoch after {boundary}: {first:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `lamina da sample` of chain 1's latest square with the client key `key`.
fn sample(devnet: &Devnet, key: &Path) -> std::process::Output {
    let d = ["--devnet", s(&devnet.dir)];
    let status = ok(devnet.cmd().args(["query", "status", "--chain", "1"]).args(d).output().unwrap());
    let root = field(&status, "data_root").to_string();
    devnet.cmd().args(["da", "sample", &root, "--samples", "4", "--client-key", s(key)]).args(d).output().unwrap()
}

/// `key`'s native balance on chain 1.
fn balance(devnet: &Devnet, key: &str) -> u64 {
    let out =
        ok(devnet.cmd().args(["query", "balance", "--chain", "1", key, "--devnet", s(&devnet.dir)]).output().unwrap());
    field(&out, "balance").parse().unwrap()
}

/// A counter or gauge of a node's `/metrics` (0 when it was never set); `None` when
/// `/metrics` does not answer.
fn metric(devnet: &Devnet, name: &str, metric: &str) -> Option<f64> {
    let text = get_text(devnet.node(name)["admin"].as_str().unwrap(), "/metrics")?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// Waits until settlement finalized a claim of chain 1 covering `height`.
fn wait_settled(devnet: &Devnet, height: u64) {
    let deadline = Instant::now() + phase();
    loop {
        let finalized = devnet.status("settlement-0").and_then(|s| s["finalized_height"]["1"].as_u64());
        if finalized.is_some_and(|f| f >= height) {
            break;
        }
        assert!(Instant::now() < deadline, "no claim covering height {height} finalized: {finalized:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_consortium_adds_and_removes_a_client_key_by_vote_without_restarts() {
    let devnet = Devnet::up(&[
        "--validators",
        "4",
        "--da-nodes",
        "4",
        "--chains",
        "1",
        "--funded-accounts",
        "120",
        "--settlement",
        "1",
        "--settlement-window",
        "8",
        "--closed-access",
        "--heartbeat",
        "100ms",
        "--epoch-length",
        "10",
    ]);
    let d = ["--devnet", s(&devnet.dir)];
    // Load from the genesis client key through every change below.
    let (pids, rt, client, load) = start_load(&devnet);
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("acme.key");
    let acme = ok(devnet.cmd().args(["keys", "generate", "--out", s(&key)]).output().unwrap());
    let acme = acme.trim().to_string();
    let as_acme = ["--client-key", s(&key)];
    let transfer = |amount: &str| {
        devnet
            .cmd()
            .args(["tx", "transfer", "--chain", "1", "--to", &acme, "--amount", amount, "--from-test-account", "1"])
            .args(d)
            .args(as_acme)
            .output()
            .unwrap()
    };

    // Access is restricted: a key no vote added is refused at the handshake, and told so.
    let o = transfer("5");
    assert!(!o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not allowed"), "{}", show(&o));
    let o = sample(&devnet, &key);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not allowed"), "{}", show(&o));
    let g = gov_status(&devnet);
    assert_eq!(g["membership"]["clients"].as_array().unwrap().len(), 1, "{g}");

    // What the log would reject is refused before it is submitted, with the reason.
    let o = devnet
        .cmd()
        .args(["gov", "propose", "remove-client", "--key", &acme, "--member-key", s(&key)])
        .args(d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a voting member"), "{}", show(&o));
    let o = devnet
        .cmd()
        .args(["gov", "propose", "remove-client", "--key", &acme, "--member-key", s(&member(&devnet, 1))])
        .args(d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a client key"), "{}", show(&o));

    // A vote adds the key; from the next epoch it connects and submits, no node restarted.
    let started = Instant::now();
    let boundary = pass(&devnet, &["add-client", "--name", "acme", "--key", &acme]);
    wait_applied(&devnet, boundary);
    eprintln!("add-client: proposal to applied everywhere in {:?}", started.elapsed());
    let out = ok(transfer("5"));
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    // DA nodes admit it too: it samples a square.
    let sampled = ok(sample(&devnet, &key));
    assert!(!sampled.is_empty());
    let g = gov_status(&devnet);
    assert!(g["membership"]["clients"].as_array().unwrap().iter().any(|c| c["key"] == acme), "{g}");

    // A vote changes chain 1's fee: the blocks of the next epoch charge it, the heights
    // before it kept charging the genesis fee (0), and settlement's verifier, which
    // re-executes every step with the fee governance set for its height, agrees.
    let funded = ok(transfer("100"));
    assert_eq!(field(&funded, "receipt"), "success", "{funded}");
    let before = balance(&devnet, &acme);
    assert_eq!(before, 105, "no fee at genesis");
    let boundary = pass(&devnet, &["set-param", "fee:1", "7"]);
    wait_applied(&devnet, boundary);
    let out = ok(devnet
        .cmd()
        .args(["tx", "transfer", "--chain", "1", "--to", &acme, "--amount", "10", "--key", s(&key)])
        .args(d)
        .args(as_acme)
        .output()
        .unwrap());
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    let paid_at: u64 = field(&out, "height").parse().unwrap();
    assert!(paid_at > boundary, "executed at {paid_at}, the fee applies after {boundary}");
    assert_eq!(balance(&devnet, &acme), before - 7, "a transfer to oneself costs exactly the new fee");
    let g = gov_status(&devnet);
    assert_eq!(g["membership"]["settings"]["fees"]["1"], 7, "{g}");
    wait_settled(&devnet, paid_at);
    // The verifier may trail the follower (claims finalize whether or not it checked
    // them): wait until it has re-executed the height that paid the new fee.
    let deadline = Instant::now() + phase();
    loop {
        let verified = metric(&devnet, "settlement-0", "lamina_settlement_verifier_height");
        if verified.is_some_and(|v| v >= paid_at as f64) {
            break;
        }
        assert!(Instant::now() < deadline, "the verifier re-executed up to {verified:?}, not {paid_at}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(&devnet, "settlement-0", "lamina_settlement_challenges_posted_total"), Some(0.0));
    assert_eq!(metric(&devnet, "settlement-0", "lamina_settlement_slashed_total"), Some(0.0));

    // A vote changes settlement's challenge window (8 in the genesis): a claim included
    // after the change gets the new window, the earlier ones keep their deadlines.
    let boundary = pass(&devnet, &["set-param", "challenge_window", "12"]);
    wait_applied(&devnet, boundary);
    let out = ok(transfer("1"));
    let at: u64 = field(&out, "height").parse().unwrap();
    let deadline = Instant::now() + phase();
    let claims = loop {
        let claims: serde_json::Value = serde_json::from_str(&ok(devnet
            .cmd()
            .args(["settlement", "claims", "--chain", "1", "--json"])
            .args(d)
            .output()
            .unwrap()))
        .unwrap();
        let covered = claims.as_array().unwrap().iter().any(|c| c["to"].as_u64().unwrap() >= at);
        if covered {
            break claims;
        }
        assert!(Instant::now() < deadline, "no claim covers height {at}: {claims}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut after = 0;
    for c in claims.as_array().unwrap() {
        let (included, due) = (c["included_at"].as_u64().unwrap(), c["deadline"].as_u64().unwrap());
        let window = if included > boundary { 12 } else { 8 };
        after += usize::from(included > boundary);
        assert_eq!(due, included + window, "claim {c}: window in force at its inclusion");
    }
    assert!(after > 0, "no claim included after the change at {boundary}: {claims}");
    let st: serde_json::Value =
        serde_json::from_str(&ok(devnet.cmd().args(["settlement", "status", "--json"]).args(d).output().unwrap()))
            .unwrap();
    assert_eq!(st["window"], 12, "{st}");

    // A vote lowers the block limit: every validator's own blocks order at most 2
    // batches from the next epoch on (a proposer policy: validity keeps the network's
    // cap).
    let boundary = pass(&devnet, &["set-param", "max_batches_per_block", "2"]);
    wait_applied(&devnet, boundary);
    wait_validators_report(&devnet, "governed_batch_limit", 2);
    let out = ok(transfer("1"));
    assert_eq!(field(&out, "receipt"), "success", "{out}");

    // A vote sets a batch size limit: every validator's batcher and intake apply it from
    // the boundary on (a validity rule only where committees change by vote; the cuts
    // themselves are checked in `consensus/core`, a refused batch in
    // `consensus/service/tests/epochs.rs`).
    let boundary = pass(&devnet, &["set-param", "max_batch_bytes", "131072"]);
    wait_applied(&devnet, boundary);
    wait_validators_report(&devnet, "governed_batch_bytes", 131_072);
    let out = ok(transfer("1"));
    assert_eq!(field(&out, "receipt"), "success", "{out}");

    // A duplicate vote is refused (proposal 1 is applied: it takes no votes).
    let o = devnet
        .cmd()
        .args(["gov", "vote", "1", "yes", "--member-key", s(&member(&devnet, 3))])
        .args(d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("takes no votes"), "{}", show(&o));

    // A vote removes it again: refused at the handshake from the next epoch.
    let boundary = pass(&devnet, &["remove-client", "--key", &acme]);
    wait_applied(&devnet, boundary);
    let o = transfer("5");
    assert!(!o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not allowed"), "{}", show(&o));
    let o = sample(&devnet, &key);
    assert!(!o.status.success(), "DA nodes still serve a removed key: {}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not allowed"), "{}", show(&o));

    // Every node is the process that started: nothing restarted.
    let now: Vec<u32> = devnet.nodes.iter().map(|n| n["name"].as_str().unwrap()).map(|n| devnet.pid(n)).collect();
    assert_eq!(now, pids);
    for pid in pids {
        assert!(alive(pid), "node {pid} is gone");
    }

    // No acknowledged transaction was lost or rejected across the changes (the load's
    // transfers paid the new fee from its epoch on).
    stop_load_and_check(&rt, load, client, "acknowledged across the parameter changes");
}

/// Stops `load` and checks that it was acknowledged enough and that every transfer
/// acknowledged executed with success on execution-0 (none lost, none rejected).
fn stop_load_and_check(rt: &tokio::runtime::Runtime, load: Load, client: Client, what: &str) {
    let stats = rt.block_on(load.stop());
    stats.print();
    assert!(stats.acked.len() > 100, "too little load acknowledged: {}", stats.acked.len());
    rt.block_on(async {
        assert_all_succeed(&client, "execution-0", &stats.acked, what).await;
        client.shutdown().await;
    });
}

/// Waits until every validator's `/status` shows `field` = `value` (a governed limit
/// it applies).
fn wait_validators_report(devnet: &Devnet, field: &str, value: u64) {
    let deadline = Instant::now() + phase();
    for name in devnet.names("validator-") {
        loop {
            let now = devnet.status(&name).and_then(|s| s[field].as_u64());
            if now == Some(value) {
                break;
            }
            assert!(Instant::now() < deadline, "{name} reports {field} {now:?}, not {value}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A free local port (bound and released: a race is possible but unlikely).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until every one of `names` reports a finalized height of at least `height`.
fn wait_height(devnet: &Devnet, names: &[String], height: u64, what: &str) {
    let deadline = Instant::now() + phase();
    while devnet.min_height(names) < height {
        assert!(Instant::now() < deadline, "{what}: the log did not reach {height}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A devnet whose committees change by vote (4 validators, 2 DA nodes, one chain with
/// 120 funded accounts, 100 ms heartbeat, epochs of 10 heights; `extra` adds to it),
/// its nodes' pids, and the load of the network tests started on it: test accounts
/// 10..=110 (the CLI's transfers use account 1), through the validators' intake.
fn committee_devnet(extra: &[&str]) -> (Devnet, Vec<u32>, tokio::runtime::Runtime, Client, Load) {
    let mut args = vec!["--validators", "4", "--da-nodes", "2", "--chains", "1", "--funded-accounts", "120"];
    args.extend(["--heartbeat", "100ms", "--epoch-length", "10", "--committee-changes"]);
    args.extend(extra);
    let devnet = Devnet::up(&args);
    let (pids, rt, client, load) = start_load(&devnet);
    (devnet, pids, rt, client, load)
}

/// The node processes' pids as started, and the load ([`common::load`]) from test
/// accounts 10..=110 of the first chain, through the validators' intake.
fn start_load(devnet: &Devnet) -> (Vec<u32>, tokio::runtime::Runtime, Client, Load) {
    let pids: Vec<u32> = devnet.nodes.iter().map(|n| n["pid"].as_u64().unwrap() as u32).collect();
    let rt = rt();
    let client = rt.block_on(Client::connect(devnet));
    let load = {
        let _in_rt = rt.enter();
        Load::start(client.intake.clone(), client.scope, &devnet.genesis.chains[0], 10)
    };
    (pids, rt, client, load)
}

#[test]
fn a_fifth_validator_joins_by_vote_then_one_leaves_and_every_node_follows_without_restarts() {
    // The load runs through both switches. Its client routes among the genesis
    // validators; one removed refuses with the `OUTSIDE_COMMITTEE` marker and the client
    // sends on to the next.
    let (devnet, pids, rt, client, load) = committee_devnet(&["--settlement", "1", "--settlement-window", "8"]);
    // `set_validators` below dials: it needs the runtime.
    let _in_rt = rt.enter();
    let d = ["--devnet", s(&devnet.dir)];
    let validators = devnet.names("validator-");

    // A fifth organisation's operator makes a home with the network's genesis and its own
    // key, and starts the validator: not in any committee yet, it follows the log.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("validator-4");
    let genesis = Path::new(devnet.node("validator-0")["home"].as_str().unwrap()).join("config").join("genesis.toml");
    let quic = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    ok(devnet
        .cmd()
        .args(["consensus", "init", "--home", s(&home), "--genesis", s(&genesis)])
        .args(["--listen-addr", &quic, "--admin-addr", &admin, "--set", "consensus.empty_block_delay_ms=100"])
        .output()
        .unwrap());
    let joining = ok(devnet.cmd().args(["keys", "show", "--home", s(&home)]).output().unwrap()).trim().to_string();
    let log = std::fs::File::create(tmp.path().join("validator-4.log")).unwrap();
    let mut fifth = Reaped(
        devnet
            .cmd()
            .args(["consensus", "start", "--home", s(&home)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let fifth_status = || get_json(&admin, "/status");
    let started = Instant::now();
    let boundary = pass(&devnet, &["add-validator", "--name", "validator-4", "--key", &joining, "--addr", &quic]);
    // The committee changes one governance epoch after the boundary that applies it.
    let joined = boundary + 10 + 1;
    wait_height(&devnet, &validators, joined + 5, "after the fifth validator joined");
    eprintln!("add-validator: proposal to the new committee ordering 5 heights in {:?}", started.elapsed());
    let deadline = Instant::now() + phase();
    loop {
        let st = fifth_status();
        let (epoch, height) =
            st.as_ref().map_or((None, 0), |s| (s["consensus_epoch"].as_u64(), s["height"].as_u64().unwrap_or(0)));
        let proposed = get_text(&admin, "/metrics")
            .and_then(|t| t.lines().find(|l| l.starts_with("lamina_consensus_proposals_total")).map(str::to_string));
        if epoch == Some(1) && height >= joined + 5 && proposed.is_some_and(|l| !l.ends_with(" 0")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fifth validator does not vote: {st:?}; log: {}",
            tail(&tmp.path().join("validator-4.log"), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A client that follows governance routes among the new committee (as execution
    // nodes and the CLI do): the load's senders are spread over the five from here.
    let mut five = devnet.genesis.validators.clone();
    five.push(lamina_interfaces::NodeEntry {
        name: "validator-4".into(),
        key: lamina_primitives::PublicKey::from_hex(&joining).unwrap(),
        addr: quic.parse().unwrap(),
        http: None,
        admin: None,
        chain: None,
    });
    client.intake.set_validators(&five);
    let acked_before_five = load.acked().len();

    // It is ready: the others and the DA nodes admit it on the `lamina/node/1` check
    // (they follow governance), and its readiness counts the epoch's committee.
    let deadline = Instant::now() + phase();
    loop {
        let ready = http_get(&admin, "/readyz");
        if ready.as_ref().is_some_and(|(code, _)| *code == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the fifth validator votes but is not ready: {ready:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Then one of the genesis validators is removed by vote.
    let deadline = Instant::now() + phase();
    while load.acked().len() < acked_before_five + 50 {
        let stats = format!("{:?}", load.stats.lock().unwrap());
        assert!(Instant::now() < deadline, "the load stalls after the switch to five: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let accepted = get_text(&admin, "/metrics").and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("lamina_consensus_intake_total{outcome=\"accepted\"}"))?;
        line.rsplit(' ').next()?.parse::<f64>().ok()
    });
    assert!(accepted.is_some_and(|n| n > 0.0), "the fifth validator took no transaction: {accepted:?}");
    let leaving = ok(devnet.cmd().args(["keys", "show", "--key", s(&member(&devnet, 3))]).output().unwrap());
    let leaving = leaving.trim().to_string();
    let started = Instant::now();
    let boundary = pass(&devnet, &["remove-validator", "--key", &leaving]);
    let left = boundary + 10 + 1;
    wait_height(&devnet, &validators, left + 10, "after validator-3 left");
    eprintln!("remove-validator: proposal to the new committee ordering 10 heights in {:?}", started.elapsed());
    // The four that stay vote in consensus epoch 2; the removed one only follows the log
    // (its /status shows no consensus epoch) and proposes no more.
    for name in &validators {
        let epoch = devnet.status(name).unwrap()["consensus_epoch"].clone();
        if name == "validator-3" {
            assert!(epoch.is_null(), "{name} still in a committee: {epoch}");
        } else {
            assert_eq!(epoch, 2, "{name}");
        }
    }
    assert_eq!(fifth_status().unwrap()["consensus_epoch"], 2);
    let proposals = || metric(&devnet, "validator-3", "lamina_consensus_proposals_total").unwrap();
    let before = proposals();
    let height = devnet.height("validator-0").unwrap();
    wait_height(&devnet, &validators, height + 8, "after the removal");
    assert_eq!(proposals(), before, "the removed validator still proposes");
    // Readers check each block against its height's committee: a transfer after the
    // switches executes, and settlement finalizes a claim past it.
    // The CLI submits to the committee governance decided (it replays the log like
    // `lamina gov`): the four that stay, the fifth included.
    let o = devnet
        .cmd()
        .args(["tx", "transfer", "--chain", "1", "--to", &leaving, "--amount", "3", "--from-test-account", "1"])
        .args(d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let out = ok(o);
    assert!(err.contains("submitting to the committee governance decided: 4 validators"), "{err}");
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    let paid_at: u64 = field(&out, "height").parse().unwrap();
    assert!(paid_at > left, "executed at {paid_at}, before the switch at {left}");
    wait_settled(&devnet, paid_at);
    // `lamina gov status` shows the committee of each consensus epoch.
    let g = gov_status(&devnet);
    let committees = g["committees"].as_array().unwrap_or_else(|| panic!("{g}"));
    assert_eq!(committees.len(), 3, "{g}");
    assert_eq!(committees[1]["first_height"], joined, "{g}");
    assert_eq!(committees[2]["first_height"], left, "{g}");
    let last: Vec<&str> = committees[2]["validators"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(last.contains(&joining.as_str()) && !last.contains(&leaving.as_str()), "{g}");
    // No node restarted.
    let now: Vec<u32> = devnet.nodes.iter().map(|n| n["name"].as_str().unwrap()).map(|n| devnet.pid(n)).collect();
    assert_eq!(now, pids, "a node restarted");
    assert!(fifth.0.try_wait().unwrap().is_none(), "the fifth validator exited");

    // No acknowledged transaction was lost or rejected across the two switches.
    stop_load_and_check(&rt, load, client, "acknowledged across the committee switches");
}

/// A child process killed when dropped, so that a failing test leaves no node running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DA committee changes by vote under load: a third DA node, started by its operator
/// with the network's genesis, is added by vote and stores (and attests) the squares of
/// the heights from its consensus epoch on; then a genesis DA node is removed. Squares
/// certified before each switch stay readable under their committee, every acknowledged
/// transfer executes, and no node restarts.
#[test]
fn a_da_node_joins_by_vote_then_one_leaves_and_squares_of_every_committee_stay_readable() {
    let (devnet, pids, rt, client, load) = committee_devnet(&[]);
    let d = ["--devnet", s(&devnet.dir)];
    let validators = devnet.names("validator-");
    let blob = |data: &str| {
        let out =
            ok(devnet.cmd().args(["blob", "submit", "--namespace", "7", "--data", data]).args(d).output().unwrap());
        (field(&out, "data_root").to_string(), field(&out, "certificate").to_string())
    };
    let get = |root: &str| {
        let o = devnet.cmd().args(["blob", "get", "--namespace", "7", "--data-root", root]).args(d).output().unwrap();
        ok(o)
    };
    let (genesis_square, _) = blob("certified by the genesis DA committee");

    // A new organisation's operator starts a DA node with the genesis: not in the DA
    // committee yet, it serves reads only.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("da-2");
    let genesis = Path::new(devnet.node("validator-0")["home"].as_str().unwrap()).join("config").join("genesis.toml");
    let quic = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    ok(devnet
        .cmd()
        .args(["da", "init", "--home", s(&home), "--genesis", s(&genesis)])
        .args(["--listen-addr", &quic, "--admin-addr", &admin])
        .output()
        .unwrap());
    let joining = ok(devnet.cmd().args(["keys", "show", "--home", s(&home)]).output().unwrap()).trim().to_string();
    let log = std::fs::File::create(tmp.path().join("da-2.log")).unwrap();
    let third = Reaped(
        devnet
            .cmd()
            .args(["da", "start", "--home", s(&home)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let attested = || {
        get_text(&admin, "/metrics").and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("lamina_da_node_attestations_total"))?;
            line.rsplit(' ').next()?.parse::<f64>().ok()
        })
    };

    let started = Instant::now();
    let boundary = pass(&devnet, &["add-da-node", "--name", "da-2", "--key", &joining, "--addr", &quic]);
    let joined = boundary + 10 + 1;
    wait_height(&devnet, &validators, joined + 5, "after the third DA node joined");
    eprintln!("add-da-node: proposal to the new committee ordering 5 heights in {:?}", started.elapsed());
    // The load's squares from the switch on are stored on the new node too.
    let deadline = Instant::now() + phase();
    while attested().unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the third DA node attests nothing: {:?}; log: {}",
            attested(),
            tail(&tmp.path().join("da-2.log"), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (three_square, cert) = blob("certified by three DA nodes");
    assert!(cert.starts_with("3 DA signatures (threshold 3)"), "{cert}");
    let g = gov_status(&devnet);
    let committees = g["committees"].as_array().unwrap_or_else(|| panic!("{g}"));
    assert_eq!(committees.len(), 2, "{g}");
    assert_eq!(committees[1]["first_height"], joined, "{g}");
    assert_eq!(committees[1]["da_nodes"].as_array().unwrap().len(), 3, "{g}");
    assert_eq!(committees[1]["validators"], committees[0]["validators"], "{g}");

    // Then a genesis DA node leaves.
    let leaving = devnet.genesis.da_nodes[0].key.to_string();
    let started = Instant::now();
    let boundary = pass(&devnet, &["remove-da-node", "--key", &leaving]);
    let left = boundary + 10 + 1;
    wait_height(&devnet, &validators, left + 5, "after da-0 left");
    eprintln!("remove-da-node: proposal to the new committee ordering 5 heights in {:?}", started.elapsed());
    let (two_square, cert) = blob("certified by the two that stay");
    assert!(cert.starts_with("2 DA signatures (threshold 2)"), "{cert}");

    // Squares of every committee are read under their own.
    assert!(get(&genesis_square).contains("certified by the genesis DA committee"));
    assert!(get(&three_square).contains("certified by three DA nodes"));
    assert!(get(&two_square).contains("certified by the two that stay"));

    // A vote sets a batch size limit: a consensus epoch of its own starts (whose cores
    // refuse larger batches), every validator's batcher applies it, and the load goes
    // on through the switch.
    let boundary = pass(&devnet, &["set-param", "max_batch_bytes", "131072"]);
    let limited = boundary + 10 + 1;
    wait_height(&devnet, &validators, limited + 5, "after the batch size limit");
    let g = gov_status(&devnet);
    let last = &g["committees"].as_array().unwrap_or_else(|| panic!("{g}"))[3];
    assert_eq!(
        (last["first_height"].as_u64(), last["max_batch_bytes"].as_u64()),
        (Some(limited), Some(131_072)),
        "{g}"
    );
    for name in &validators {
        let st = devnet.status(name).unwrap();
        assert_eq!(
            (st["consensus_epoch"].as_u64(), st["governed_batch_bytes"].as_u64()),
            (Some(3), Some(131_072)),
            "{name}"
        );
    }

    // No acknowledged transaction was lost or rejected across the switches.
    stop_load_and_check(&rt, load, client, "acknowledged across the DA committee switches");
    let now: Vec<u32> = devnet.nodes.iter().map(|n| n["name"].as_str().unwrap()).map(|n| devnet.pid(n)).collect();
    assert_eq!(now, pids, "a node restarted");
    drop(third);
}
