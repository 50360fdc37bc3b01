//! State snapshots: a chain's whole state at one height, in verifiable chunks.
//!
//! A snapshot is a directory:
//!
//! ```text
//! <snapshot>/manifest       Manifest (rkyv): chain, genesis, height, roots, chunk list
//! <snapshot>/chunk-000000   ChangeSet (rkyv) of at most CHUNK_MAX_ENTRIES keys
//! <snapshot>/chunk-000001   …
//! <snapshot>/node           NodeImage (rkyv): the writing node's claim chain and bridge index
//! ```
//!
//! Chunks hold the state's keys sorted (counters, then data, each by key) and are cut
//! at [`CHUNK_MAX_ENTRIES`] keys or [`CHUNK_MAX_BYTES`] bytes, so two nodes with the same
//! state at the same height write the same chunks (their node files differ). Every chunk's
//! blake3 digest (domain-separated) and size are in the manifest; so is the node file's.
//! Loading checks each file against its digest before decoding it, checks that keys
//! are strictly increasing and values canonical (no zero counter, no absent data), and
//! finally that the rebuilt tree's root equals the manifest's `state_root`. A damaged,
//! truncated, reordered or foreign snapshot is refused with [`Error::BadSnapshot`] and
//! never half-applied.
//!
//! The manifest is bound to the state root, the height and the genesis; its own digest
//! ([`Manifest::id`]) names the snapshot. The node file is the writer's own progress
//! (its claim chain, the claims it may still have to post, its bridge index): a node
//! restarting from its own snapshot continues exactly where it was, a node importing
//! another's continues the exporter's claim chain.
//!
//! Writing goes to `<name>.tmp`, every file is fsynced, then the directory is renamed
//! into place and its parent fsynced: a snapshot directory that exists is whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lamina_execution_core::{AuthenticatedState, ChangeSet, CounterKey, DataKey};
use lamina_interfaces::{CheckpointClaim, ClaimStep};
use lamina_primitives::{ChainId, Digest, Domain, Height, PublicKey};

use crate::Error;

/// Format version of snapshots this node writes and reads.
pub const SNAPSHOT_VERSION: u32 = 2;
/// Most keys in one chunk.
pub const CHUNK_MAX_ENTRIES: usize = 65_536;
/// A chunk is cut once its keys and values reach this many bytes.
pub const CHUNK_MAX_BYTES: usize = 4 << 20;
/// Largest manifest accepted (its chunk list dominates: about 40 bytes per chunk).
const MANIFEST_MAX: usize = 32 << 20;
/// Largest chunk file accepted: [`CHUNK_MAX_BYTES`] plus the value that crossed it.
pub const MAX_CHUNK_FILE: u64 = 40 << 20;
/// Largest total of a snapshot's chunk files accepted (a peer's manifest cannot make
/// a syncing node fetch and store more).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;
/// Largest node file accepted.
const NODE_MAX: usize = 1 << 30;

static CHUNK: Domain = Domain::new("lamina execution snapshot chunk v1");
static MANIFEST: Domain = Domain::new("lamina execution snapshot manifest v1");

/// One file of a snapshot: its digest and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FileInfo {
    /// Domain-separated blake3 digest of the file's bytes.
    pub hash: Digest,
    /// Size in bytes.
    pub bytes: u64,
}

impl FileInfo {
    fn of(bytes: &[u8]) -> Self {
        FileInfo { hash: CHUNK.hash(bytes), bytes: bytes.len() as u64 }
    }

    /// Checks `bytes` against this digest and size.
    pub fn check(&self, what: &str, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() as u64 != self.bytes {
            return Err(Error::BadSnapshot(format!("{what}: {} bytes, manifest says {}", bytes.len(), self.bytes)));
        }
        if CHUNK.hash(bytes) != self.hash {
            return Err(Error::BadSnapshot(format!("{what}: digest does not match the manifest")));
        }
        Ok(())
    }
}

/// What a snapshot is of (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Manifest {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// Digest of the genesis the chain runs under.
    pub genesis: Digest,
    /// The chain.
    pub chain: ChainId,
    /// Log height the state is after.
    pub height: Height,
    /// State root after `height`.
    pub state_root: Digest,
    /// Chained receipts root after `height`.
    pub receipts_root: Digest,
    /// Data root of the last square with the chain's data.
    pub data_root: Digest,
    /// Number of keys.
    pub keys: u64,
    /// The chunks, in order.
    pub chunks: Vec<FileInfo>,
    /// The node file.
    pub node: FileInfo,
}

impl lamina_primitives::Wire for Manifest {
    const NAME: &'static str = "ExecSnapshotManifest";
    const MAX_SIZE: usize = MANIFEST_MAX;
}

impl Manifest {
    /// The snapshot's id: the digest of its encoded manifest.
    pub fn id(&self) -> Digest {
        MANIFEST.hash(&lamina_primitives::encode(self).unwrap_or_default())
    }
}

/// The writing node's own progress (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NodeImage {
    /// Id of the last claim made ([`Digest::ZERO`] before the first).
    pub claim_parent: Digest,
    /// Height the next claim starts after.
    pub claim_from: Height,
    /// Steps since the last claim.
    pub claim_pending: Vec<ClaimStep>,
    /// The last claims made, oldest first, to post again on start (settlement ignores
    /// ids it has seen).
    pub reposts: Vec<CheckpointClaim>,
    /// The bridge index ([`crate::bridge::BridgeImage`], encoded).
    pub bridge: Vec<u8>,
    /// Whose claim chain this is (the writer's key).
    pub claimer: PublicKey,
    /// The writer's `claim_every` (the pending steps depend on it).
    pub claim_every: u64,
}

impl lamina_primitives::Wire for NodeImage {
    const NAME: &'static str = "ExecSnapshotNode";
    const MAX_SIZE: usize = NODE_MAX;
}

/// A state captured for a snapshot: the flat entries, unsorted.
#[derive(Debug, Default)]
pub struct Capture {
    /// Every counter.
    pub counters: Vec<(CounterKey, u128)>,
    /// Every data entry.
    pub data: Vec<(DataKey, Arc<[u8]>)>,
}

impl Capture {
    /// Copies `state`'s entries (cheap next to writing them: values are shared).
    pub fn of(state: &AuthenticatedState) -> Self {
        Capture {
            counters: state.counters().map(|(k, v)| (*k, *v)).collect(),
            data: state.data_entries().map(|(k, v)| (*k, v.clone())).collect(),
        }
    }
}

/// Header fields of a snapshot being written.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    /// Genesis digest.
    pub genesis: Digest,
    /// Chain.
    pub chain: ChainId,
    /// Height.
    pub height: Height,
    /// State root.
    pub state_root: Digest,
    /// Receipts root.
    pub receipts_root: Digest,
    /// Data root.
    pub data_root: Digest,
}

/// The directory name of the snapshot at `height` (sorts by height).
pub fn dir_name(height: Height) -> String {
    format!("{:020}", height.0)
}

/// The file name of chunk `i`.
pub fn chunk_name(i: usize) -> String {
    format!("chunk-{i:06}")
}

pub(crate) use lamina_store::{sync_dir, write_synced as write_file};

/// Sorts `capture` into chunks (see the module docs).
fn chunks(mut capture: Capture) -> Vec<ChangeSet> {
    capture.counters.sort_unstable_by_key(|e| e.0);
    capture.data.sort_unstable_by_key(|e| e.0);
    let mut out = Vec::new();
    let mut cur = ChangeSet::default();
    let mut bytes = 0usize;
    let mut n = 0usize;
    let full = |n: usize, bytes: usize| n >= CHUNK_MAX_ENTRIES || bytes >= CHUNK_MAX_BYTES;
    for (k, v) in capture.counters {
        cur.counters.push((k, v));
        n += 1;
        bytes += 48;
        if full(n, bytes) {
            out.push(std::mem::take(&mut cur));
            (n, bytes) = (0, 0);
        }
    }
    for (k, v) in capture.data {
        bytes += 32 + v.len();
        cur.data.push((k, Some(v.to_vec())));
        n += 1;
        if full(n, bytes) {
            out.push(std::mem::take(&mut cur));
            (n, bytes) = (0, 0);
        }
    }
    if n > 0 {
        out.push(cur);
    }
    out
}

/// Writes the snapshot of `capture` (the state after `head.height`) and `node` under
/// `parent/<dir_name(height)>`, atomically (see the module docs). An existing snapshot
/// of that height is replaced; nothing is left behind on failure. Returns its manifest.
pub fn write(parent: &Path, head: Head, capture: Capture, node: &NodeImage) -> Result<Manifest, Error> {
    let keys = (capture.counters.len() + capture.data.len()) as u64;
    let dir = parent.join(dir_name(head.height));
    let tmp = parent.join(format!("{}.tmp", dir_name(head.height)));
    let result = write_into(&tmp, &dir, parent, head, keys, capture, node);
    if result.is_err() {
        // Leave nothing half-written behind (a full disk would otherwise keep copies).
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(
    tmp: &Path,
    dir: &Path,
    parent: &Path,
    head: Head,
    keys: u64,
    capture: Capture,
    node: &NodeImage,
) -> Result<Manifest, Error> {
    let io = |e: std::io::Error| Error::BadSnapshot(format!("writing {}: {e}", tmp.display()));
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(io)?;
    }
    std::fs::create_dir_all(tmp).map_err(io)?;
    let mut infos = Vec::new();
    for (i, chunk) in chunks(capture).into_iter().enumerate() {
        let bytes = lamina_primitives::encode(&chunk).map_err(|e| Error::Internal(e.to_string()))?;
        write_file(&tmp.join(chunk_name(i)), &bytes).map_err(io)?;
        infos.push(FileInfo::of(&bytes));
    }
    let node_bytes = lamina_primitives::encode(node).map_err(|e| Error::Internal(e.to_string()))?;
    write_file(&tmp.join("node"), &node_bytes).map_err(io)?;
    let manifest = Manifest {
        version: SNAPSHOT_VERSION,
        genesis: head.genesis,
        chain: head.chain,
        height: head.height,
        state_root: head.state_root,
        receipts_root: head.receipts_root,
        data_root: head.data_root,
        keys,
        chunks: infos,
        node: FileInfo::of(&node_bytes),
    };
    let bytes = lamina_primitives::encode(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    write_file(&tmp.join("manifest"), &bytes).map_err(io)?;
    sync_dir(tmp).map_err(io)?;
    // A snapshot of this height already here (a restart from an older one replayed
    // through it) may be the damaged one that made the restart fall back: replace it.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::rename(tmp, dir).map_err(io)?;
    sync_dir(parent).map_err(io)?;
    Ok(manifest)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| Error::BadSnapshot(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > max {
        return Err(Error::BadSnapshot(format!("{}: {len} bytes, more than {max}", path.display())));
    }
    std::fs::read(path).map_err(io)
}

/// Reads and decodes a snapshot's manifest (without checking its files).
pub fn read_manifest(dir: &Path) -> Result<Manifest, Error> {
    let bytes = read_bounded(&dir.join("manifest"), MANIFEST_MAX as u64)?;
    let m: Manifest = lamina_primitives::decode(&bytes)
        .map_err(|e| Error::BadSnapshot(format!("{}: manifest: {e}", dir.display())))?;
    if m.version != SNAPSHOT_VERSION {
        return Err(Error::BadSnapshot(format!(
            "{}: snapshot format {}, this node reads format {SNAPSHOT_VERSION}",
            dir.display(),
            m.version
        )));
    }
    check_manifest(&m).map_err(|e| Error::BadSnapshot(format!("{}: {e}", dir.display())))?;
    Ok(m)
}

/// Bounds a manifest from anywhere before any of its files is read or fetched: each
/// chunk at most [`MAX_CHUNK_FILE`] bytes, all of them at most [`MAX_SNAPSHOT_BYTES`],
/// at most [`CHUNK_MAX_ENTRIES`] keys per chunk, a node file of at most 1 GiB.
pub fn check_manifest(m: &Manifest) -> Result<(), String> {
    let mut total = 0u64;
    for (i, c) in m.chunks.iter().enumerate() {
        if c.bytes > MAX_CHUNK_FILE {
            return Err(format!("chunk {i} of {} bytes, more than {MAX_CHUNK_FILE}", c.bytes));
        }
        total += c.bytes;
    }
    if total > MAX_SNAPSHOT_BYTES {
        return Err(format!("{total} bytes of chunks, more than {MAX_SNAPSHOT_BYTES}"));
    }
    if m.keys > (m.chunks.len() as u64) * CHUNK_MAX_ENTRIES as u64 {
        return Err(format!("{} keys in {} chunks", m.keys, m.chunks.len()));
    }
    if m.node.bytes > NODE_MAX as u64 {
        return Err(format!("node file of {} bytes", m.node.bytes));
    }
    Ok(())
}

/// Checks one chunk's bytes against its manifest entry and decodes it; `after` is the
/// last key of the previous chunk (keys must increase strictly across the snapshot).
/// Returns the chunk.
pub fn check_chunk(
    info: &FileInfo,
    i: usize,
    bytes: &[u8],
    after: &mut (Option<CounterKey>, Option<DataKey>),
) -> Result<ChangeSet, Error> {
    let what = chunk_name(i);
    info.check(&what, bytes)?;
    let chunk: ChangeSet = lamina_primitives::decode(bytes).map_err(|e| Error::BadSnapshot(format!("{what}: {e}")))?;
    if chunk.counters.len() + chunk.data.len() > CHUNK_MAX_ENTRIES {
        return Err(Error::BadSnapshot(format!("{what}: more than {CHUNK_MAX_ENTRIES} keys")));
    }
    // A key's kind is in its bytes: a counter key that is really a data key (or the
    // reverse) would pass the root check yet put a phantom entry in the flat state.
    if chunk.counters.iter().any(|(k, _)| CounterKey::from_raw(*k.raw()).is_none())
        || chunk.data.iter().any(|(k, _)| DataKey::from_raw(*k.raw()).is_none())
    {
        return Err(Error::BadSnapshot(format!("{what}: a key of the wrong kind")));
    }
    for (k, v) in &chunk.counters {
        if after.1.is_some() {
            return Err(Error::BadSnapshot(format!("{what}: a counter after data keys")));
        }
        if after.0.is_some_and(|p| p >= *k) || *v == 0 {
            return Err(Error::BadSnapshot(format!("{what}: counters out of order or zero")));
        }
        after.0 = Some(*k);
    }
    for (k, v) in &chunk.data {
        if after.1.is_some_and(|p| p >= *k) || v.is_none() {
            return Err(Error::BadSnapshot(format!("{what}: data keys out of order or absent")));
        }
        after.1 = Some(*k);
    }
    Ok(chunk)
}

/// A snapshot loaded and verified.
#[derive(Debug)]
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    /// The state, whose root is `manifest.state_root`.
    pub state: AuthenticatedState,
    /// The writer's progress.
    pub node: NodeImage,
}

/// Loads the snapshot in `dir` for `chain` under `genesis` and verifies every file and
/// the state root (see the module docs).
pub fn load(dir: &Path, genesis: &Digest, chain: ChainId) -> Result<Loaded, Error> {
    let manifest = read_manifest(dir)?;
    if manifest.genesis != *genesis || manifest.chain != chain {
        return Err(Error::BadSnapshot(format!(
            "{}: snapshot of chain {} under genesis {}, this node runs chain {chain} under {genesis}",
            dir.display(),
            manifest.chain,
            manifest.genesis
        )));
    }
    let mut state = AuthenticatedState::new();
    let mut after = (None, None);
    for (i, info) in manifest.chunks.iter().enumerate() {
        let bytes = read_bounded(&dir.join(chunk_name(i)), info.bytes)?;
        let chunk = check_chunk(info, i, &bytes, &mut after)?;
        state.apply(&chunk, true);
    }
    if state.len() as u64 != manifest.keys || state.root() != manifest.state_root {
        return Err(Error::BadSnapshot(format!(
            "{}: rebuilt state has {} keys and root {}, manifest says {} and {}",
            dir.display(),
            state.len(),
            state.root(),
            manifest.keys,
            manifest.state_root
        )));
    }
    let node_bytes = read_bounded(&dir.join("node"), manifest.node.bytes)?;
    manifest.node.check("node", &node_bytes)?;
    let node: NodeImage =
        lamina_primitives::decode(&node_bytes).map_err(|e| Error::BadSnapshot(format!("node: {e}")))?;
    Ok(Loaded { manifest, state, node })
}

/// The snapshots under `parent` (directories named by [`dir_name`]), newest first.
pub fn list(parent: &Path) -> Vec<(Height, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut out: Vec<(Height, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.len() == 20).then_some(())?;
            Some((Height(name.parse().ok()?), e.path()))
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out
}

/// Removes every snapshot under `parent` but the newest `keep`, leftover `.tmp`
/// directories of interrupted writes and `.bad` ones set aside ([`set_aside`]).
/// Returns how many were removed.
pub fn retain(parent: &Path, keep: usize) -> std::io::Result<usize> {
    let mut removed = 0;
    for (_, dir) in list(parent).into_iter().skip(keep.max(1)) {
        std::fs::remove_dir_all(dir)?;
        removed += 1;
    }
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.ends_with(".bad") {
                std::fs::remove_dir_all(e.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Renames a snapshot that does not load to `<name>.bad`, so that it is neither loaded,
/// served nor counted among the kept ones again ([`retain`] removes it later).
pub fn set_aside(dir: &Path) -> std::io::Result<()> {
    let mut bad = dir.as_os_str().to_owned();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    if bad.exists() {
        std::fs::remove_dir_all(&bad)?;
    }
    std::fs::rename(dir, bad)
}

/// Copies the snapshot in `from` to `to` (created; must not exist), checking every file
/// against the manifest first, then renames into place.
pub fn copy(from: &Path, to: &Path, genesis: &Digest, chain: ChainId) -> Result<Manifest, Error> {
    let loaded = load(from, genesis, chain)?;
    if to.exists() {
        return Err(Error::BadSnapshot(format!("{} exists", to.display())));
    }
    let tmp = to.with_extension("tmp");
    let io = |e: std::io::Error| Error::BadSnapshot(format!("copying to {}: {e}", tmp.display()));
    std::fs::create_dir_all(&tmp).map_err(io)?;
    let mut names: Vec<String> = (0..loaded.manifest.chunks.len()).map(chunk_name).collect();
    names.push("node".into());
    names.push("manifest".into());
    for name in names {
        let bytes = std::fs::read(from.join(&name)).map_err(io)?;
        write_file(&tmp.join(&name), &bytes).map_err(io)?;
    }
    sync_dir(&tmp).map_err(io)?;
    std::fs::rename(&tmp, to).map_err(io)?;
    if let Some(parent) = to.parent() {
        sync_dir(parent).map_err(io)?;
    }
    Ok(loaded.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_primitives::Digest;

    fn state(n: u64) -> AuthenticatedState {
        let mut s = AuthenticatedState::new();
        let counters = (0..n).map(|i| (CounterKey::new(1, &[&i.to_le_bytes()[..]]), u128::from(i) + 1)).collect();
        let data = (0..n / 10).map(|i| (DataKey::new(2, &[&i.to_le_bytes()[..]]), Some(vec![i as u8; 40]))).collect();
        s.apply(&ChangeSet { counters, data }, false);
        s
    }

    fn head(s: &AuthenticatedState) -> Head {
        Head {
            genesis: Digest([1; 32]),
            chain: ChainId(1),
            height: Height(77),
            state_root: s.root(),
            receipts_root: Digest([2; 32]),
            data_root: Digest([3; 32]),
        }
    }

    /// A snapshot of many chunks loads back to the same root; two writes of one state
    /// give the same manifest; a flipped byte, a missing chunk and a foreign chain are
    /// refused.
    #[test]
    fn snapshot_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(150_000);
        let node = NodeImage { claim_parent: Digest([9; 32]), ..NodeImage::default() };
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let m = write(&a, head(&s), Capture::of(&s), &node).unwrap();
        assert!(m.chunks.len() >= 3, "{} chunks", m.chunks.len());
        assert_eq!(write(&b, head(&s), Capture::of(&s), &node).unwrap().id(), m.id());
        let snap = a.join(dir_name(Height(77)));
        let loaded = load(&snap, &Digest([1; 32]), ChainId(1)).unwrap();
        assert_eq!(loaded.state.root(), s.root());
        assert_eq!(loaded.node, node);
        assert!(matches!(load(&snap, &Digest([1; 32]), ChainId(2)), Err(Error::BadSnapshot(_))));

        let other = b.join(dir_name(Height(77)));
        let chunk = other.join(chunk_name(1));
        let mut bytes = std::fs::read(&chunk).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&chunk, &bytes).unwrap();
        let err = load(&other, &Digest([1; 32]), ChainId(1)).unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
        std::fs::remove_file(&chunk).unwrap();
        assert!(matches!(load(&other, &Digest([1; 32]), ChainId(1)), Err(Error::BadSnapshot(_))));

        let copied = dir.path().join("copied");
        assert_eq!(copy(&snap, &copied, &Digest([1; 32]), ChainId(1)).unwrap(), m);
        assert!(copy(&other, &dir.path().join("c2"), &Digest([1; 32]), ChainId(1)).is_err());
        assert!(!dir.path().join("c2").exists());
        assert_eq!(list(&a).len(), 1);
    }
}
