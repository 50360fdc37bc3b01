#![allow(clippy::unwrap_used)]
//! Client commands (`lamina tx | query | blob | da sample`) against a real devnet: real
//! processes, real QUIC on 127.0.0.1, real files.

mod common;

use std::path::Path;

use common::*;

#[test]
fn transfer_query_blob_and_sample_against_a_devnet() {
    // Errors that need no network are clear.
    let empty = tempfile::tempdir().unwrap();
    let o = lamina()
        .env("XDG_DATA_HOME", empty.path())
        .args(["query", "nonce", &"11".repeat(32), "--chain", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no devnet found"), "{}", show(&o));

    let devnet = Devnet::up(&["--validators", "4", "--da-nodes", "4", "--chains", "1", "--funded-accounts", "4"]);
    let dir = devnet.dir.clone();
    let d = ["--devnet", s(&dir)];
    let tmp = tempfile::tempdir().unwrap();
    let net = || devnet.cmd();

    let o = net().args(["query", "status", "--chain", "9"]).args(d).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("chain 9 is unknown"), "{}", show(&o));

    // A transfer from test account 0 to a fresh key, waited for.
    let key = tmp.path().join("to.key");
    let to = ok(net().args(["keys", "generate", "--out", s(&key)]).output().unwrap());
    let to = to.trim();
    let out = ok(net()
        .args(["tx", "transfer", "--chain", "1", "--to", to, "--amount", "12345", "--from-test-account", "0"])
        .args(d)
        .output()
        .unwrap());
    let tx = field(&out, "tx").to_string();
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    let height: u64 = field(&out, "height").parse().unwrap();
    assert!(height > 0);

    // The balance, with a proof checked locally.
    let out = ok(net().args(["query", "balance", to, "--chain", "1", "--proof"]).args(d).output().unwrap());
    assert_eq!(field(&out, "balance"), "12345", "{out}");
    assert!(field(&out, "proof").starts_with("verified"), "{out}");

    // --json: one object for scripts (amounts as strings, heights as numbers).
    let out = ok(net().args(["query", "balance", to, "--chain", "1", "--json"]).args(d).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["balance"], "12345", "{v}");
    assert!(v["height"].as_u64().is_some_and(|h| h >= height), "{v}");
    let out = ok(net().args(["query", "receipt", &tx, "--chain", "1", "--json"]).args(d).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["receipt"].as_str(), v["height"].as_u64()), (Some("success"), Some(height)), "{v}");

    // The receipt again, finding the devnet as the last one `up` created (no --devnet).
    let out = ok(net().args(["query", "receipt", &tx, "--chain", "1"]).output().unwrap());
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    assert_eq!(field(&out, "height"), height.to_string());

    // A blob round trip through DA, then light sampling of its square.
    let data = "lamina client test blob: \u{1F4E6} bytes survive the round trip";
    let out = ok(net().args(["blob", "submit", "--namespace", "1", "--data", data]).args(d).output().unwrap());
    let root = field(&out, "data_root").to_string();
    assert!(field(&out, "certificate").ends_with("verified"), "{out}");
    let got = net().args(["blob", "get", "--namespace", "1", "--data-root", &root]).args(d).output().unwrap();
    assert!(got.status.success(), "{}", show(&got));
    assert_eq!(got.stdout, data.as_bytes());

    let out = ok(net().args(["da", "sample", &root, "--samples", "8"]).args(d).output().unwrap());
    assert_eq!(field(&out, "available"), "true", "{out}");
    let out = ok(net().args(["da", "sample", &root, "--samples", "4", "--json"]).args(d).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["available"], "true", "{v}");
    assert_eq!(v["samples"].as_array().map(Vec::len), Some(4), "{v}");
    assert!(out.lines().filter(|l| l.starts_with("sample (")).all(|l| l.contains("verified")), "{out}");

    // Open client access (issue 15): the fresh key is in no genesis list, yet it reads,
    // samples and spends its own funds; storing blobs still needs a known key.
    let fresh = ["--client-key", s(&key)];
    let out = ok(net().args(["query", "balance", to, "--chain", "1"]).args(d).args(fresh).output().unwrap());
    assert_eq!(field(&out, "balance"), "12345", "{out}");
    let back = ok(net().args(["keys", "generate", "--out", s(&tmp.path().join("back.key"))]).output().unwrap());
    let out = ok(net()
        .args(["tx", "transfer", "--chain", "1", "--to", back.trim(), "--amount", "45", "--key", s(&key)])
        .args(d)
        .args(fresh)
        .output()
        .unwrap());
    assert_eq!(field(&out, "receipt"), "success", "{out}");
    let out = ok(net().args(["da", "sample", &root, "--samples", "4"]).args(d).args(fresh).output().unwrap());
    assert_eq!(field(&out, "available"), "true", "{out}");
    let o = net().args(["blob", "submit", "--namespace", "1", "--data", "x"]).args(d).args(fresh).output().unwrap();
    assert!(!o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("may read but not store"), "{}", show(&o));

    // What can never succeed is refused before it reaches the network, with the reason.
    let refused = |args: &[&str], why: &str| {
        let o = net().args(args).args(d).output().unwrap();
        assert!(!o.status.success(), "{}", show(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "expected {why:?}: {}", show(&o));
    };
    refused(&["tx", "transfer", "--chain", "1", "--to", to, "--amount", "0"], "amount 0");
    let back_key = tmp.path().join("back.key");
    refused(
        &["tx", "transfer", "--chain", "1", "--to", to, "--amount", "1000", "--key", s(&back_key)],
        "holds 45 of asset 0",
    );
    refused(&["blob", "submit", "--namespace", "0", "--data", "x"], "namespace 0 is reserved");
    // A sparse file one byte over the largest square: refused from its size alone.
    let big = tmp.path().join("big.bin");
    let limit = lamina_da_core::max_blob_bytes(lamina_da_client::ClientConfig::default().codec_id());
    std::fs::File::create(&big).unwrap().set_len(limit + 1).unwrap();
    refused(&["blob", "submit", "--namespace", "1", "--file", s(&big)], &format!("at most {limit} bytes"));

    // The operator closes the execution node (`[access] open = false`, SIGHUP, no
    // restart): the fresh key is refused and told so, the genesis client still reads.
    let exec = devnet.node("execution-0");
    let config = Path::new(exec["home"].as_str().unwrap()).join("config").join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nopen = true\n"), "{text}");
    std::fs::write(&config, text.replace("\nopen = true\n", "\nopen = false\n")).unwrap();
    signal(devnet.pid("execution-0"), nix::sys::signal::Signal::SIGHUP);
    let mut refused = None;
    for _ in 0..40 {
        let o = net().args(["query", "balance", to, "--chain", "1"]).args(d).args(fresh).output().unwrap();
        if !o.status.success() {
            refused = Some(o);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let o = refused.expect("the fresh key is still served after [access] open = false and SIGHUP");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not allowed") && err.contains(to), "{}", show(&o));
    let out = ok(net().args(["query", "balance", to, "--chain", "1"]).args(d).output().unwrap());
    let left: u64 = field(&out, "balance").parse().unwrap();
    assert!(left <= 12345 - 45, "the fresh key's transfer was not charged: {out}");
}
