//! Node key files: generation from the OS RNG, 0600 files, loading with checks.
//!
//! A key file is a small TOML document:
//!
//! ```toml
//! # lamina ed25519 key. Keep it secret: anyone holding this file can act as this node.
//! public_key = "<64 hex>"
//! secret_seed = "<64 hex>"
//! ```
//!
//! The file is created with mode 0600 from the start (no window in which it is
//! readable by others), written fully and fsynced before it is renamed into place.
//! Loading refuses a file readable or writable by group or others (as ssh does), and a
//! file whose public key does not match its seed (corruption or a hand edit).

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use lamina_primitives::{Keypair, PublicKey};
use zeroize::Zeroizing;

/// A fresh key pair whose 32-byte seed comes from the operating system's RNG.
pub fn generate() -> anyhow::Result<Keypair> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    Ok(Keypair::from_seed(*seed))
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    public_key: PublicKey,
    secret_seed: String,
}

/// The text of a key file for `key`.
fn render(key: &Keypair) -> Zeroizing<String> {
    let secret = key.secret();
    Zeroizing::new(format!(
        "# lamina ed25519 key. Keep it secret: anyone holding this file can act as this node.\n\
         public_key = \"{}\"\nsecret_seed = \"{}\"\n",
        key.public(),
        hex::encode(secret.seed())
    ))
}

/// Writes `key` to `path` with mode 0600. Refuses to replace an existing file.
pub fn write(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} already exists; refusing to overwrite a key (move it away first)", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Created with mode 0600 from the start, then renamed into place.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".node.key.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir).with_context(|| format!("cannot create a key file in {}", dir.display()))?;
    let text = render(key);
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // persist_noclobber: fails rather than replacing a file created meanwhile.
    tmp.persist_noclobber(path).with_context(|| format!("cannot create {}", path.display()))?;
    crate::home::sync_dir(dir);
    Ok(())
}

/// Reads the key at `path`, checking permissions and consistency.
pub fn read(path: &Path) -> anyhow::Result<Keypair> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "key file {} has mode {mode:03o}: it must not be accessible by group or others \
                 (run `chmod 600 {}`)",
                path.display(),
                path.display()
            );
        }
    }
    let _ = meta;
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    let file: KeyFile =
        toml::from_str(&text).with_context(|| format!("{} is not a lamina key file", path.display()))?;
    let file_secret = Zeroizing::new(file.secret_seed);
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(file_secret.trim(), seed.as_mut())
        .with_context(|| format!("{}: secret_seed is not 64 hex characters", path.display()))?;
    let key = Keypair::from_seed(*seed);
    if key.public() != file.public_key {
        bail!(
            "{}: public_key {} does not match the secret seed (which gives {}); the file is corrupt",
            path.display(),
            file.public_key,
            key.public()
        );
    }
    Ok(key)
}

/// Only the public key of the key file at `path` (still checks the whole file).
pub fn read_public(path: &Path) -> anyhow::Result<PublicKey> {
    read(path).map(|k| k.public())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generated_keys_differ_and_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.public(), b.public());
        let path = dir.path().join("sub").join("node.key");
        write(&path, &a).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap().public(), a.public());
        // Never overwritten.
        assert!(write(&path, &b).unwrap_err().to_string().contains("refusing"));
        assert_eq!(read_public(&path).unwrap(), a.public());
    }

    #[test]
    fn loose_permissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        write(&path, &Keypair::for_testing(1)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("644") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn corrupt_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let k = Keypair::for_testing(2);
        let other = Keypair::for_testing(3);
        let text =
            format!("public_key = \"{}\"\nsecret_seed = \"{}\"\n", other.public(), hex::encode(k.secret().seed()));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("does not match"));
        std::fs::write(&path, "public_key = 5\n").unwrap();
        assert!(read(&path).is_err());
        std::fs::write(&path, format!("public_key = \"{}\"\nsecret_seed = \"zz\"\n", k.public())).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("64 hex"));
        assert!(read(&dir.path().join("missing.key")).is_err());
    }
}
