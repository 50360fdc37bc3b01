//! `lamina <module> init`: creates a home directory.
//!
//! Writes `config/config.toml` (annotated), `config/node.key` (0600; generated from the
//! OS RNG, or imported), `config/genesis.toml` (copied from `--genesis`, if given) and
//! `data/VERSION`. Re-running refuses to touch an initialized home unless `force` is
//! set, and even then never replaces an existing key or touches `data/`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use lamina_primitives::PublicKey;

use crate::config::NodeConfig;
use crate::home::Home;
use crate::module::Module;

/// What `init` is asked to do.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The module of the new home.
    pub module: Module,
    /// The home.
    pub home: Home,
    /// A genesis file to copy into `config/genesis.toml`.
    pub genesis: Option<PathBuf>,
    /// An existing key file to import instead of generating a key.
    pub import_key: Option<PathBuf>,
    /// Rewrite `config.toml` (and `genesis.toml` when given) of an initialized home.
    pub force: bool,
    /// The configuration to write (defaults for the module, possibly adjusted).
    pub config: NodeConfig,
}

/// What `init` did.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The node's public key.
    pub public_key: PublicKey,
    /// Whether the key was generated now (false: imported or kept).
    pub key_generated: bool,
    /// The node's name in the genesis, if a genesis was installed and lists the key in
    /// the module's role.
    pub genesis_name: Option<String>,
    /// Whether a genesis was installed.
    pub genesis_installed: bool,
}

/// Creates (or with `force`, refreshes) a home.
pub fn init(opts: &InitOptions) -> anyhow::Result<InitReport> {
    let home = &opts.home;
    if opts.config.module != opts.module {
        bail!("internal: config for {} given to init a {} home", opts.config.module, opts.module);
    }
    opts.config.validate()?;
    if home.config_file().exists() && !opts.force {
        bail!(
            "{} is already initialized ({} exists); pass --force to rewrite config.toml \
             (the key and data/ are always kept)",
            home.root().display(),
            home.config_file().display()
        );
    }
    // Read the genesis first: a bad file must not leave a half-written home.
    let genesis = match &opts.genesis {
        Some(p) => {
            let g = crate::genesis::load(p)?;
            let text = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            Some((g, text))
        }
        None => None,
    };
    // Never put a genesis over data written under another one (the node would refuse
    // to start, and the old genesis would be gone).
    if let Some((g, _)) = &genesis
        && let Ok(have) = std::fs::read_to_string(home.genesis_digest_file())
        && have.trim() != g.digest().to_string()
    {
        bail!(
            "{} was written under genesis {}, and {} is genesis {}; refusing to replace the genesis \
             (wipe {} first to join the new network, or init without --genesis to keep the current one)",
            home.data_dir().display(),
            have.trim(),
            opts.genesis.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            g.digest(),
            home.data_dir().display()
        );
    }
    home.create_layout()?;

    let (key, key_generated) = if home.key_file().exists() {
        (crate::keys::read(&home.key_file()).context("the existing node key is unusable")?, false)
    } else if let Some(src) = &opts.import_key {
        let k = crate::keys::read(src)?;
        crate::keys::write(&home.key_file(), &k)?;
        (k, false)
    } else {
        let k = crate::keys::generate()?;
        crate::keys::write(&home.key_file(), &k)?;
        (k, true)
    };
    if let (Some(src), false) = (&opts.import_key, key_generated) {
        let imported = crate::keys::read_public(src)?;
        if imported != key.public() {
            bail!(
                "{} already holds key {}; refusing to replace it with {} (move it away first)",
                home.key_file().display(),
                key.public(),
                imported
            );
        }
    }

    let mut genesis_name = None;
    if let Some((g, text)) = &genesis {
        crate::home::write_atomic(&home.genesis_file(), text)?;
        genesis_name = opts.module.entries(g).iter().find(|n| n.key == key.public()).map(|n| n.name.clone());
    }
    crate::home::write_atomic(&home.config_file(), opts.config.to_annotated_toml().as_bytes())?;
    Ok(InitReport { public_key: key.public(), key_generated, genesis_name, genesis_installed: genesis.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn opts(dir: &std::path::Path, module: Module) -> InitOptions {
        InitOptions {
            module,
            home: Home::new(dir.join("home")),
            genesis: None,
            import_key: None,
            force: false,
            config: NodeConfig::new(module),
        }
    }

    #[test]
    fn init_writes_the_layout_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path(), Module::Execution);
        let r = init(&o).unwrap();
        assert!(r.key_generated && !r.genesis_installed);
        let h = &o.home;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(h.key_file()), 0o600);
        assert_eq!(mode(h.config_dir()), 0o700);
        assert_eq!(crate::keys::read_public(&h.key_file()).unwrap(), r.public_key);
        h.check_data_version().unwrap();
        let text = std::fs::read_to_string(h.config_file()).unwrap();
        assert_eq!(crate::config::load_layered(&text, "c", &[], &[]).unwrap(), NodeConfig::new(Module::Execution));

        // A second init refuses; --force rewrites config but keeps the key.
        assert!(init(&o).unwrap_err().to_string().contains("already initialized"));
        let r2 = init(&InitOptions { force: true, ..o.clone() }).unwrap();
        assert_eq!(r2.public_key, r.public_key);
        assert!(!r2.key_generated);
    }

    #[test]
    fn init_imports_a_key_and_installs_a_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("mine.key");
        let k = crate::keys::generate().unwrap();
        crate::keys::write(&key_path, &k).unwrap();
        let mut g = crate::genesis::empty("t");
        g.chains.push(lamina_interfaces::ChainSpec {
            id: lamina_primitives::ChainId(1),
            name: "one".into(),
            ..lamina_interfaces::ChainSpec::default()
        });
        for (i, (role, key)) in
            [(Module::Consensus, k.public()), (Module::Da, lamina_primitives::Keypair::for_testing(5).public())]
                .into_iter()
                .enumerate()
        {
            crate::genesis::role_mut(&mut g, role).push(lamina_interfaces::NodeEntry {
                name: format!("n{i}"),
                key,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                http: None,
                admin: None,
                chain: None,
            });
        }
        let gpath = dir.path().join("genesis.toml");
        crate::genesis::write(&gpath, &g).unwrap();

        let mut o = opts(dir.path(), Module::Consensus);
        o.import_key = Some(key_path.clone());
        o.genesis = Some(gpath.clone());
        let r = init(&o).unwrap();
        assert_eq!(r.public_key, k.public());
        assert_eq!(r.genesis_name.as_deref(), Some("n0"));
        assert_eq!(crate::genesis::load(&o.home.genesis_file()).unwrap(), g);

        // Importing a different key into a home that has one is refused.
        let other = dir.path().join("other.key");
        crate::keys::write(&other, &crate::keys::generate().unwrap()).unwrap();
        let o2 = InitOptions { force: true, import_key: Some(other), ..o.clone() };
        assert!(init(&o2).unwrap_err().to_string().contains("refusing to replace"));

        // A bad genesis leaves no half-written home behind.
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "network = 1").unwrap();
        let o3 = InitOptions { genesis: Some(bad), ..opts(dir.path().join("x").as_path(), Module::Da) };
        assert!(init(&o3).is_err());
        assert!(!o3.home.root().exists());
    }
}
