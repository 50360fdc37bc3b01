#![allow(clippy::unwrap_used)]
//! The operator commands of the real `lamina` binary: keys, genesis, init, config.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use common::s;

fn lamina(args: &[&str]) -> Output {
    lamina_env(args, &[])
}

/// `lamina <args>` with a clean environment plus `env`.
fn lamina_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::lamina().args(args).envs(env.iter().copied()).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = lamina(args);
    assert!(out.status.success(), "lamina {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn keys_genesis_and_init_produce_the_expected_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // keys generate: a 0600 file, the public key on stdout; never overwritten.
    let key = d.join("v0.key");
    let pk = ok(&["keys", "generate", "--out", s(&key)]).trim().to_string();
    assert_eq!(pk.len(), 64);
    assert!(pk.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(ok(&["keys", "show", "--key", s(&key)]).trim(), pk);
    assert!(!lamina(&["keys", "generate", "--out", s(&key)]).status.success());
    let da_key = d.join("d0.key");
    let da_pk = ok(&["keys", "generate", "--out", s(&da_key)]).trim().to_string();
    assert_ne!(pk, da_pk);

    // genesis: built step by step, validated.
    let g = d.join("genesis.toml");
    ok(&["genesis", "new", "--network", "itest", "--out", s(&g)]);
    assert!(!lamina(&["genesis", "validate", "--file", s(&g)]).status.success(), "no nodes yet");
    ok(&["genesis", "add-chain", "--file", s(&g), "--id", "7", "--name", "seven", "--balance", &format!("{pk}=100")]);
    ok(&[
        "genesis",
        "add-node",
        "--file",
        s(&g),
        "--role",
        "consensus",
        "--name",
        "v0",
        "--key-file",
        s(&key),
        "--addr",
        "127.0.0.1:17000",
        "--admin",
        "127.0.0.1:19000",
    ]);
    ok(&[
        "genesis",
        "add-node",
        "--file",
        s(&g),
        "--role",
        "da",
        "--name",
        "d0",
        "--key",
        &da_pk,
        "--addr",
        "127.0.0.1:17001",
    ]);
    let dup = lamina(&[
        "genesis",
        "add-node",
        "--file",
        s(&g),
        "--role",
        "da",
        "--name",
        "d1",
        "--key",
        &da_pk,
        "--addr",
        "127.0.0.1:17002",
    ]);
    assert!(!dup.status.success(), "a key may appear once");
    // governance: the genesis's voting members and rules; a zero weight does not validate.
    let without = std::fs::read_to_string(&g).unwrap();
    ok(&["genesis", "governance", "--file", s(&g), "--member", &format!("org-a={pk}:3"), "--epoch-length", "50"]);
    let with = std::fs::read_to_string(&g).unwrap();
    assert!(!without.contains("[governance]") && with.contains("[governance]") && with.contains("org-a"), "{with}");
    ok(&["genesis", "governance", "--file", s(&g), "--member", &format!("org-a={pk}:0")]);
    assert!(!lamina(&["genesis", "validate", "--file", s(&g)]).status.success(), "weight 0");
    ok(&["genesis", "governance", "--file", s(&g), "--member", &format!("org-a={pk}:2")]);
    assert!(!lamina(&["genesis", "governance", "--file", s(&g), "--member", "no-key"]).status.success());
    let summary = ok(&["genesis", "validate", "--file", s(&g)]);
    assert!(
        summary.contains("1 validators")
            && summary.contains("chain 7")
            && summary.contains("governance: 1 voting members (weight 2), epochs of 50 heights")
            && summary.ends_with("valid\n"),
        "{summary}"
    );

    // consensus init: the home layout, keys 0600, the genesis copied, data/VERSION.
    let home = d.join("home-v0");
    let out = ok(&["consensus", "init", "--home", s(&home), "--genesis", s(&g), "--key", s(&key)]);
    assert_eq!(out.trim(), pk);
    let cfg = home.join("config/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("module = \"consensus\"") && text.contains("# Admin HTTP address"), "{text}");
    assert_eq!(mode(&home.join("config/node.key")), 0o600);
    assert_eq!(mode(&home.join("config")), 0o700);
    assert_eq!(std::fs::read_to_string(home.join("data/VERSION")).unwrap().trim(), "3");
    assert_eq!(
        std::fs::read_to_string(home.join("config/genesis.toml")).unwrap(),
        std::fs::read_to_string(&g).unwrap()
    );
    assert_eq!(ok(&["keys", "show", "--home", s(&home)]).trim(), pk);
    // A second init refuses to touch the home.
    assert!(!lamina(&["consensus", "init", "--home", s(&home)]).status.success());

    // $LAMINA_HOME selects the home when --home is absent; init generates a fresh key.
    let da_home = d.join("home-d0");
    let out = lamina_env(&["da", "init"], &[("LAMINA_HOME", s(&da_home))]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&da_home.join("config/node.key")), 0o600);

    // Config layering through the binary: file < env < flag.
    let show = |env: &[(&str, &str)], flags: &[&str]| {
        let mut args = vec!["consensus", "config", "--home", s(&home)];
        args.extend_from_slice(flags);
        let out = lamina_env(&args, env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(show(&[], &[]).contains("# admin_addr = "), "unset in the file");
    // Output into a pipe whose reader is gone (`lamina ... | head`): a quiet end, not a
    // panic about a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = common::lamina().args(["consensus", "config", "--home", s(&home)]).stdout(writer).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && out.status.code() != Some(101), "{:?}: {err}", out.status);
    assert!(show(&[("LAMINA_ADMIN_ADDR", "127.0.0.1:1111")], &[]).contains("admin_addr = \"127.0.0.1:1111\""));
    let both = show(
        &[("LAMINA_ADMIN_ADDR", "127.0.0.1:1111"), ("LAMINA_LOG_LEVEL", "debug")],
        &["--admin-addr", "127.0.0.1:2222"],
    );
    assert!(both.contains("admin_addr = \"127.0.0.1:2222\"") && both.contains("level = \"debug\""), "{both}");
    let bad = lamina_env(&["consensus", "config", "--home", s(&home)], &[("LAMINA__NET__NO_SUCH", "1")]);
    assert!(!bad.status.success());

    // start refuses a home of another module, a loose key, and an unknown data version.
    assert!(!lamina(&["da", "start", "--home", s(&home)]).status.success());
    std::fs::set_permissions(home.join("config/node.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lamina(&["consensus", "start", "--home", s(&home), "--admin-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(home.join("config/node.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(home.join("data/VERSION"), "99\n").unwrap();
    let out = lamina(&["consensus", "start", "--home", s(&home), "--admin-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 99"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!lamina(&["consensus", "migrate", "--home", s(&home)]).status.success(), "no migrating backwards");
    // An older version is refused, naming the migration; `migrate` brings it up to date.
    std::fs::write(home.join("data/VERSION"), "1\n").unwrap();
    let out = lamina(&["consensus", "start", "--home", s(&home), "--admin-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version 1") && err.contains("lamina <module> migrate"), "{err}");
    let out = lamina(&["consensus", "migrate", "--home", s(&home)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from version 1 to 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from version 2 to 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(home.join("data/VERSION")).unwrap().trim(), "3");

    // A home held by a running node (here: this test holds its lock, as pid 4242 would)
    // refuses a second start at once, naming the holder.
    {
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(home.join("data/node.lock"))
            .unwrap();
        lock.try_lock().unwrap();
        std::fs::write(home.join("data/node.lock"), "4242\n").unwrap();
        let out = lamina(&["consensus", "start", "--home", s(&home), "--admin-addr", "127.0.0.1:0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("in use by pid 4242"), "{err}");
    }

    // init --force never puts a genesis over data written under another one.
    std::fs::write(home.join("data/GENESIS"), format!("{}\n", "ab".repeat(32))).unwrap();
    let out = lamina(&["consensus", "init", "--home", s(&home), "--force", "--genesis", s(&g)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("refusing to replace the genesis"), "{err}");
    // Without --genesis, --force rewrites config.toml and keeps the genesis.
    ok(&["consensus", "init", "--home", s(&home), "--force"]);
}

#[test]
fn a_ledger_version_this_binary_does_not_run_is_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = lamina(&["devnet", "up", "--dir", s(&dir), "--keep", "--load", "0", "--ledger-version", "7"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ledger version 7 is not executed by this binary (it runs: 1 (native ledger))"), "{err}");
    assert!(!dir.join("genesis.toml").exists(), "no genesis written for a refused devnet");
    // Refused before the directory is looked at: an unrelated file there is not the
    // reason given, and stays.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let out = lamina(&["devnet", "up", "--dir", s(&dir), "--keep", "--load", "0", "--ledger-version", "7"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ledger version 7"), "{err}");
    assert!(dir.join("keep.txt").exists());
    // Another machine's devnet without the bridge's or the load's native transfers.
    let out = lamina(&["devnet", "up", "--dir", s(&dir), "--ledger-version", "7"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("the built-in load sends native-ledger transfers"), "{err}");
}
