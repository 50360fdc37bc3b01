//! Whole files written atomically: a snapshot or a small state file that must be either
//! the old content or the new one after a crash, never a mix.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` so that after a crash at any point the path holds either
/// its previous content (or nothing) or all of `bytes`: write `<path>.tmp`, fsync it,
/// rename it over `path`, fsync the directory. Durable on return.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates (or truncates) `path`, writes `bytes` and fsyncs the file (not its
/// directory: the caller renames it into place or syncs the directory once for many).
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Fsyncs a directory, making its entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.bin");
        replace_file(&p, b"first version").unwrap();
        replace_file(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.bin")]);
    }
}
