//! Home directories: where a node keeps its config, keys and data.
//!
//! ```text
//! <home>/
//!   config/config.toml    annotated configuration (`lamina <module> init` writes it)
//!   config/genesis.toml   the network's committee file
//!   config/node.key       the node's ed25519 key (mode 0600)
//!   data/VERSION          format version of everything under data/
//!   data/GENESIS          digest of the genesis the data was written under
//!   data/node.lock        held (flock) by the running node, with its pid
//!   data/...              stores (written by the module's service)
//! ```
//!
//! `config/` and `data/` are separate so data can be wiped without touching keys.
//! The home is chosen as `--home` > `$LAMINA_HOME` > `$XDG_DATA_HOME/lamina/<module>`
//! (`~/.local/share/lamina/<module>` on Linux).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use lamina_primitives::Digest;

use crate::module::Module;

/// Format version of the `data/` directory this binary reads and writes. A node refuses
/// to start on any other version: an older one names `lamina <module> migrate` (see
/// [`MIGRATIONS`]), a newer one the newer release it needs.
pub const DATA_FORMAT_VERSION: u32 = 3;

/// One step of `lamina <module> migrate`: from a data format version to the next.
#[derive(Debug)]
pub struct Migration {
    /// The version it migrates from (to `from + 1`).
    pub from: u32,
    /// What changed, for the operator.
    pub what: &'static str,
    /// Rewrites what must be rewritten in `data/` (the version file is written after it).
    pub run: fn(&Home) -> anyhow::Result<()>,
}

/// Every migration step, in order: version `n` migrates by the steps with `from >= n`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        what: "consensus's intake log may hold `Ordered` records (which a version-1 binary cannot \
           read) and nodes keep their governance state in data/governance/; version-1 data \
           reads unchanged, so nothing is rewritten",
        run: |_| Ok(()),
    },
    Migration {
        from: 2,
        what: "consensus's intake log may hold `Requeued` records (the transactions of a batch the \
           core refused, queued again) and its WAL `Settled` records, which a version-2 binary \
           cannot read; version-2 data reads unchanged, so nothing is rewritten",
        run: |_| Ok(()),
    },
];

/// Environment variable naming the home directory.
pub const HOME_ENV: &str = "LAMINA_HOME";

/// Chooses the home directory: `flag` > `env` (`$LAMINA_HOME`) > the XDG data directory
/// for `module`. Relative paths are made absolute against the current directory.
pub fn resolve(flag: Option<&Path>, env: Option<OsString>, module: Module) -> anyhow::Result<PathBuf> {
    let chosen = match (flag, env.filter(|v| !v.is_empty())) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(v)) => PathBuf::from(v),
        (None, None) => default_home(module)?,
    };
    absolute(&chosen)
}

/// `$XDG_DATA_HOME/lamina/<module>` (or the platform's equivalent).
pub fn default_home(module: Module) -> anyhow::Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "lamina")
        .context("cannot determine a default home directory (no $HOME); pass --home or set $LAMINA_HOME")?;
    Ok(dirs.data_dir().join(module.as_str()))
}

/// `path` made absolute against the current directory (not canonicalized: it may not
/// exist yet).
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir().context("cannot read the current directory")?.join(path))
    }
}

/// The layout of one home directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config/`.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    /// `config/config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }

    /// `config/genesis.toml`.
    pub fn genesis_file(&self) -> PathBuf {
        self.config_dir().join("genesis.toml")
    }

    /// `config/node.key`.
    pub fn key_file(&self) -> PathBuf {
        self.config_dir().join("node.key")
    }

    /// `data/`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `data/node.lock`: held by the node running on this home, with its pid.
    pub fn lock_file(&self) -> PathBuf {
        self.data_dir().join("node.lock")
    }

    /// Takes this home for the calling process (an exclusive lock, `flock` on Linux, on
    /// [`Home::lock_file`], which then holds our pid) until the returned value is
    /// dropped. A second node on the same home is refused with the holder's pid,
    /// before it binds any port or opens any store.
    pub fn lock(&self) -> anyhow::Result<HomeLock> {
        let path = self.lock_file();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "home {} is in use by pid {} (another `lamina ... start` on it); stop that node first",
                    self.root.display(),
                    pid.trim()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{}", std::process::id()).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(HomeLock { _file: file })
    }

    /// The pid of the node holding this home, if one runs on it now.
    pub fn holder(&self) -> Option<u32> {
        let file = std::fs::File::open(self.lock_file()).ok()?;
        // A shared probe, released when `file` drops.
        if file.try_lock_shared().is_ok() {
            return None;
        }
        std::fs::read_to_string(self.lock_file()).ok()?.trim().parse().ok()
    }

    /// `data/VERSION`.
    pub fn version_file(&self) -> PathBuf {
        self.data_dir().join("VERSION")
    }

    /// `data/GENESIS`.
    pub fn genesis_digest_file(&self) -> PathBuf {
        self.data_dir().join("GENESIS")
    }

    /// Creates `config/` and `data/` (with `data/VERSION` if absent).
    pub fn create_layout(&self) -> anyhow::Result<()> {
        for dir in [self.config_dir(), self.data_dir()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // config/ holds the node key: keep it private to the owner.
            std::fs::set_permissions(self.config_dir(), std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", self.config_dir().display()))?;
        }
        if !self.version_file().exists() {
            write_atomic(&self.version_file(), format!("{DATA_FORMAT_VERSION}\n").as_bytes())?;
        }
        Ok(())
    }

    /// Checks `data/VERSION`: present, a number, and the one this binary supports.
    pub fn check_data_version(&self) -> anyhow::Result<()> {
        let path = self.version_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "{} is missing: is {} an initialized home? (run `lamina <module> init`)",
                    path.display(),
                    self.root.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let v: u32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a format version: {:?}", path.display(), text.trim()))?;
        if v > DATA_FORMAT_VERSION {
            bail!(
                "{} says data format version {v}, but this binary supports only version {DATA_FORMAT_VERSION}; \
                 refusing to start (the data was written by a newer lamina release: use it, or a newer one)",
                path.display()
            );
        }
        if v < DATA_FORMAT_VERSION {
            bail!(
                "{} says data format version {v}, older than this binary's {DATA_FORMAT_VERSION}; refusing to start: \
                 migrate it first with `lamina <module> migrate --home {}` (with the node stopped)",
                path.display(),
                self.root.display()
            );
        }
        Ok(())
    }

    /// Migrates `data/` to [`DATA_FORMAT_VERSION`] step by step ([`MIGRATIONS`]), each
    /// step's version written (atomically) once it is done, holding the home's lock so
    /// no node runs on it meanwhile. Returns the steps applied (none if already current).
    pub fn migrate(&self) -> anyhow::Result<Vec<&'static Migration>> {
        let _lock = self.lock()?;
        let path = self.version_file();
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut v: u32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a format version: {:?}", path.display(), text.trim()))?;
        if v > DATA_FORMAT_VERSION {
            bail!(
                "{} says data format version {v}, newer than this binary's {DATA_FORMAT_VERSION}: a binary cannot \
                 migrate data backwards",
                path.display()
            );
        }
        let mut done = Vec::new();
        while v < DATA_FORMAT_VERSION {
            let step = MIGRATIONS
                .iter()
                .find(|m| m.from == v)
                .with_context(|| format!("no migration from data format version {v} in this binary"))?;
            (step.run)(self).with_context(|| format!("migrating {} from version {v}", self.root.display()))?;
            v += 1;
            write_atomic(&path, format!("{v}\n").as_bytes())?;
            done.push(step);
        }
        Ok(done)
    }

    /// Binds `data/` to a genesis: records its digest on first start, and refuses a data
    /// directory written under another genesis.
    pub fn check_genesis_digest(&self, digest: &Digest) -> anyhow::Result<()> {
        let path = self.genesis_digest_file();
        let want = format!("{digest}\n");
        match std::fs::read_to_string(&path) {
            Ok(have) if have.trim() == want.trim() => Ok(()),
            Ok(have) => bail!(
                "data in {} was written under genesis {}, but config/genesis.toml is genesis {}; \
                 refusing to start (wipe data/ to join the new network)",
                self.data_dir().display(),
                have.trim(),
                digest
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_atomic(&path, want.as_bytes()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// A running node's hold on its home ([`Home::lock`]); released on drop (or when the
/// process dies, even by SIGKILL).
#[derive(Debug)]
pub struct HomeLock {
    _file: std::fs::File,
}

/// Writes `bytes` to `path` via a temporary file in the same directory, fsync and
/// rename, so readers see the old or the new content, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Not secret (keys are written by `keys::write`); the config/ directory itself is 0700.
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Best-effort fsync of a directory (makes a rename or create durable).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        // Some filesystems refuse fsync on directories; the data itself is synced.
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_resolution_prefers_flag_then_env_then_xdg() {
        let flag = Path::new("/flag/home");
        let env = Some(OsString::from("/env/home"));
        assert_eq!(resolve(Some(flag), env.clone(), Module::Da).unwrap(), PathBuf::from("/flag/home"));
        assert_eq!(resolve(None, env, Module::Da).unwrap(), PathBuf::from("/env/home"));
        let xdg = resolve(None, None, Module::Da).unwrap();
        assert!(xdg.ends_with("lamina/da"), "{}", xdg.display());
        // An empty $LAMINA_HOME counts as unset.
        assert_eq!(resolve(None, Some(OsString::new()), Module::Da).unwrap(), xdg);
        // Relative paths become absolute.
        let rel = resolve(Some(Path::new("rel/home")), None, Module::Da).unwrap();
        assert!(rel.is_absolute() && rel.ends_with("rel/home"));
    }

    #[test]
    fn data_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert!(home.check_data_version().unwrap_err().to_string().contains("missing"));
        home.create_layout().unwrap();
        home.check_data_version().unwrap();
        std::fs::write(home.version_file(), format!("{}\n", DATA_FORMAT_VERSION + 1)).unwrap();
        let e = home.check_data_version().unwrap_err().to_string();
        assert!(e.contains("newer lamina") && e.contains("refusing"), "{e}");
        assert!(home.migrate().unwrap_err().to_string().contains("backwards"));
        // An older version is refused, naming the command; migrate brings it up to date.
        std::fs::write(home.version_file(), "1\n").unwrap();
        let e = home.check_data_version().unwrap_err().to_string();
        assert!(e.contains("migrate"), "{e}");
        assert_eq!(home.migrate().unwrap().len(), DATA_FORMAT_VERSION as usize - 1);
        home.check_data_version().unwrap();
        assert!(home.migrate().unwrap().is_empty());
        std::fs::write(home.version_file(), "banana").unwrap();
        assert!(home.check_data_version().is_err());
        // create_layout never overwrites an existing VERSION.
        home.create_layout().unwrap();
        assert_eq!(std::fs::read_to_string(home.version_file()).unwrap(), "banana");
    }

    #[test]
    fn data_is_bound_to_one_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.create_layout().unwrap();
        let a = lamina_primitives::domains::GENESIS.hash(b"a");
        let b = lamina_primitives::domains::GENESIS.hash(b"b");
        home.check_genesis_digest(&a).unwrap();
        home.check_genesis_digest(&a).unwrap();
        let e = home.check_genesis_digest(&b).unwrap_err().to_string();
        assert!(e.contains("refusing"), "{e}");
    }
}
