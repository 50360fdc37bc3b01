//! Settlement snapshots: the state's image every [`crate::Config::snapshot_every`]
//! heights, so that a restart loads the newest one and replays only the records after
//! it, and the records below the oldest kept snapshot can be deleted.
//!
//! A snapshot is one file,
//! `<data>/settlement-snapshots/state-<height>-<records_from>.snap` (each 20 digits; the
//! name tells pruning what it needs without reading the file): a 32-byte digest of the
//! rest (blake3, domain-separated), then a [`SnapshotFile`] (rkyv, decoded with
//! validation). It is written to a temporary file, fsynced, renamed into place and the
//! directory fsynced ([`lamina_store::replace_file`]), so a crash leaves the old set of
//! snapshots or the new one. Loading checks, in order: the size bound, the digest, the
//! decoding, the format version, the network id, that the name matches the content,
//! that the image fits the genesis and is consistent ([`SettlementState::from_image`]),
//! and that the rebuilt state's root is the recorded one. A snapshot that fails is
//! renamed `<name>.bad` and an older one is
//! tried. Snapshots are local: they are never served to peers.

use std::path::{Path, PathBuf};

use lamina_primitives::{Digest, Domain, Height, Wire};
use lamina_settlement_core::{Params, SettlementState, StateImage};

/// Domain of a snapshot file's leading digest.
static FILE_DIGEST: Domain = Domain::new("lamina settlement snapshot file v1");

/// Current snapshot format version.
pub const VERSION: u32 = 2;

/// Name of the snapshot directory under the data directory.
pub const DIR: &str = "settlement-snapshots";

/// What a snapshot file holds after its digest.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotFile {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The network id it was written for.
    pub network: Digest,
    /// Log height of the state (the last height applied).
    pub height: Height,
    /// First record sequence number of the settlement store written after this state:
    /// a restart replays from there. Records below the oldest kept snapshot's are pruned.
    pub records_from: u64,
    /// [`SettlementState::state_root`] of the state.
    pub state_root: Digest,
    /// The state.
    pub image: StateImage,
}

impl Wire for SnapshotFile {
    const NAME: &'static str = "SettlementSnapshot";
    const MAX_SIZE: usize = <StateImage as Wire>::MAX_SIZE + 1024;
}

/// A snapshot that loaded: its state and where replay resumes.
pub struct Loaded {
    /// The state.
    pub state: SettlementState,
    /// Its height.
    pub height: Height,
    /// See [`SnapshotFile::records_from`].
    pub records_from: u64,
}

/// The snapshot directory of one settlement store.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// The snapshots under `data_dir` (the directory need not exist yet).
    pub fn new(data_dir: &Path) -> Self {
        Snapshots { dir: data_dir.join(DIR) }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, height: Height, records_from: u64) -> PathBuf {
        self.dir.join(format!("state-{:020}-{records_from:020}.snap", height.0))
    }

    /// (height, records_from) from a snapshot's file name; `None` for other names.
    fn parse_name(name: &str) -> Option<(Height, u64)> {
        let (h, r) = name.strip_prefix("state-")?.strip_suffix(".snap")?.split_once('-')?;
        let num = |d: &str| (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit())).then(|| d.parse::<u64>().ok())?;
        Some((Height(num(h)?), num(r)?))
    }

    /// The snapshots present, by height ascending (names other than
    /// `state-<20 digits>-<20 digits>.snap` are ignored).
    pub fn list(&self) -> std::io::Result<Vec<(Height, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            let name = e.file_name();
            if let Some((h, _)) = name.to_str().and_then(Self::parse_name) {
                out.push((h, e.path()));
            }
        }
        out.sort_unstable_by_key(|(h, _)| *h);
        Ok(out)
    }

    /// Writes a snapshot of `state` (durable on return) and returns its path.
    pub fn write(
        &self,
        network: Digest,
        state_root: Digest,
        height: Height,
        records_from: u64,
        image: StateImage,
    ) -> Result<PathBuf, String> {
        let file = SnapshotFile { version: VERSION, network, height, records_from, state_root, image };
        let body = lamina_primitives::encode(&file).map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(32 + body.len());
        bytes.extend_from_slice(FILE_DIGEST.hash(&body).as_bytes());
        bytes.extend_from_slice(&body);
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.path(height, records_from);
        lamina_store::replace_file(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// The file's body (after its digest), checked against the size bound and digest.
    fn read_checked(path: &Path) -> Result<Vec<u8>, String> {
        let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if len > (32 + SnapshotFile::MAX_SIZE) as u64 {
            return Err(format!("{len} bytes is over the snapshot bound"));
        }
        let mut bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        if bytes.len() < 32 {
            return Err("shorter than its digest".into());
        }
        let body = bytes.split_off(32);
        if FILE_DIGEST.hash(&body).as_bytes()[..] != bytes[..] {
            return Err("digest does not match the content".into());
        }
        Ok(body)
    }

    /// Loads and checks the snapshot at `path` (see the module docs).
    pub fn load(path: &Path, network: Digest, params: &Params) -> Result<Loaded, String> {
        let body = Self::read_checked(path)?;
        let file: SnapshotFile = lamina_primitives::decode(&body).map_err(|e| e.to_string())?;
        if file.version != VERSION {
            return Err(format!("format version {}, this node reads {VERSION}", file.version));
        }
        if file.network != network {
            return Err(format!("written for network {}, this node runs {network}", file.network));
        }
        let named = path.file_name().and_then(|n| n.to_str()).and_then(Self::parse_name);
        if named != Some((file.height, file.records_from)) {
            return Err(format!(
                "its name does not match its height {} and records {}",
                file.height, file.records_from
            ));
        }
        let state = SettlementState::from_image(params.clone(), file.image).map_err(|e| e.to_string())?;
        if state.height() != file.height {
            return Err(format!("state at height {}, file says {}", state.height(), file.height));
        }
        let root = state.state_root();
        if root != file.state_root {
            return Err(format!("rebuilt state root {root}, recorded {}", file.state_root));
        }
        Ok(Loaded { state, height: file.height, records_from: file.records_from })
    }

    /// Renames a snapshot that does not load to `<name>.bad` (kept for inspection,
    /// never loaded again).
    pub fn set_aside(path: &Path) {
        let mut bad = path.as_os_str().to_owned();
        bad.push(".bad");
        if let Err(e) = std::fs::rename(path, &bad) {
            tracing::warn!(target: "lamina::settlement", path = %path.display(), error = %e, "cannot set the bad snapshot aside");
        }
    }

    /// Deletes all but the newest `keep` snapshots (`.bad` ones are left alone). Returns
    /// what a loader of the oldest one kept needs: its [`SnapshotFile::records_from`]
    /// (from its name); `None` when none is kept.
    pub fn retain(&self, keep: usize) -> std::io::Result<Option<u64>> {
        let list = self.list()?;
        let cut = list.len().saturating_sub(keep.max(1));
        for (_, p) in &list[..cut] {
            std::fs::remove_file(p)?;
        }
        if cut > 0 {
            lamina_store::sync_dir(&self.dir)?;
        }
        Ok(list.get(cut).and_then(|(_, p)| Self::parse_name(p.file_name()?.to_str()?)).map(|(_, r)| r))
    }
}
