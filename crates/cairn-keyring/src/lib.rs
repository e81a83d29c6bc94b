//! Key files on disk: the I/O edge around `cairn-trust`'s pure keys.
//!
//! A keys directory holds, per key name `N`:
//!
//! * `N.key` — the secret, one line `cairn-ed25519-secret:N:<base64 seed>`,
//!   mode 0600, created with `O_EXCL` so an existing key is never clobbered
//!   by accident;
//! * `N.pub` — the public key in its one-line export form
//!   `cairn-ed25519-pub:N:<base64>`, also what `import` writes for keys
//!   whose secret lives elsewhere.
//!
//! Loading a secret refuses a file readable by group or others, the same
//! rule ssh applies, because a signing key that leaked is a release anyone
//! can make. The directory is chosen by [`keys_dir`]: the `--keys` flag,
//! then `$CAIRN_KEYS`, then `~/.config/cairn/keys`.
//!
//! Unix only (permission bits); cairn runs on Linux.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cairn_trust::key::validate_key_name;
use cairn_trust::{KeyError, KeyId, KeySet, PublicKey, SigningKey};

mod files;
mod suggest;

use files::{read_key_line, write_new};

/// The environment variable naming the keys directory.
pub const KEYS_ENV: &str = "CAIRN_KEYS";

/// Why a keyring operation failed; every variant names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No `--keys`, no `$CAIRN_KEYS` and no `$HOME` to default from.
    #[error("no keys directory: pass --keys DIR or set CAIRN_KEYS (HOME is not set either)")]
    NoKeysDir,
    /// A key name is not usable as a file name.
    #[error(transparent)]
    BadName(KeyError),
    /// The operating system could not provide randomness for a new key.
    #[error("cannot generate a key: {0}")]
    Generate(#[source] KeyError),
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists and `force` was not given.
    #[error("{} already exists; refusing to overwrite it without --force", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The named key has no file.
    #[error("no key named {name:?} in {}{}", dir.display(), suggest::hint(name, known))]
    NotFound {
        /// The key name.
        name: String,
        /// The keys directory looked in.
        dir: PathBuf,
        /// The names of the keys it has, for a suggestion.
        known: Vec<String>,
    },
    /// The named key is here only as a public key: it can verify, not sign.
    #[error("key {name:?} has only its public half in {} (imported, or its private key is kept elsewhere): it can verify but not sign", dir.display())]
    PublicOnly {
        /// The key name.
        name: String,
        /// The keys directory.
        dir: PathBuf,
    },
    /// A secret key file is readable by group or others.
    #[error(
        "{} has mode {mode:03o}: a private key must not be accessible by group or others \
         (chmod 600 it)", path.display()
    )]
    LoosePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file's content is not a key.
    #[error("{}:{line}: {source}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: KeyError,
    },
    /// Importing a key under a name already used by a different key.
    #[error("{} already holds a different key ({existing}); remove it first", path.display())]
    Conflict {
        /// The existing public key file.
        path: PathBuf,
        /// The id of the key already there.
        existing: KeyId,
    },
}

/// One key in a keys directory, as [`list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key name.
    pub name: String,
    /// Its id.
    pub key_id: KeyId,
    /// Whether the secret (`<name>.key`) is present, i.e. it can sign.
    pub has_secret: bool,
}

/// The keys directory: `flag` if given, else `$CAIRN_KEYS`, else
/// `$HOME/.config/cairn/keys`.
pub fn keys_dir(flag: Option<PathBuf>) -> Result<PathBuf, KeyringError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    resolve_keys_dir(flag, std::env::var_os(KEYS_ENV), home)
}

/// [`keys_dir`] with the environment passed in (for tests and callers
/// that merge settings themselves). Empty values count as unset.
pub fn resolve_keys_dir(
    flag: Option<PathBuf>,
    env: Option<OsString>,
    home: Option<PathBuf>,
) -> Result<PathBuf, KeyringError> {
    let non_empty = |p: &PathBuf| !p.as_os_str().is_empty();
    flag.filter(non_empty)
        .or_else(|| env.map(PathBuf::from).filter(non_empty))
        .or_else(|| home.filter(non_empty).map(|h| h.join(".config/cairn/keys")))
        .ok_or(KeyringError::NoKeysDir)
}

/// Makes a new key pair `name` in `dir` (created 0700 if missing) and
/// returns its id. Refuses to replace existing files unless `force`.
pub fn generate(dir: &Path, name: &str, force: bool) -> Result<KeyId, KeyringError> {
    validate_key_name(name).map_err(KeyringError::BadName)?;
    let (secret_path, public_path) = (secret_path(dir, name), public_path(dir, name));
    if !force {
        for path in [&secret_path, &public_path] {
            if path.exists() {
                return Err(KeyringError::Exists { path: path.clone() });
            }
        }
    }
    let key = SigningKey::generate().map_err(KeyringError::Generate)?;
    files::ensure_dir(dir)?;
    let secret = key.to_secret_line(name).map_err(KeyringError::BadName)?;
    write_new(&secret_path, &secret, 0o600, force)?;
    write_public(&public_path, name, &key.public_key(), force)?;
    Ok(key.key_id())
}

/// Loads the secret key `name`, refusing loose permissions.
pub fn load_signing(dir: &Path, name: &str) -> Result<SigningKey, KeyringError> {
    validate_key_name(name).map_err(KeyringError::BadName)?;
    let path = secret_path(dir, name);
    if !path.exists() {
        if public_path(dir, name).exists() {
            return Err(KeyringError::PublicOnly {
                name: name.into(),
                dir: dir.into(),
            });
        }
        return Err(not_found(dir, name));
    }
    files::check_private(&path, name)?;
    read_key_line(&path, SigningKey::from_secret_line)
}

/// Loads the public key `name`.
pub fn load_public(dir: &Path, name: &str) -> Result<PublicKey, KeyringError> {
    validate_key_name(name).map_err(KeyringError::BadName)?;
    let path = public_path(dir, name);
    if !path.exists() {
        return Err(not_found(dir, name));
    }
    read_key_line(&path, PublicKey::from_line)
}

/// Every key in `dir`, sorted by name (empty if `dir` does not exist).
pub fn list(dir: &Path) -> Result<Vec<KeyEntry>, KeyringError> {
    let mut entries = Vec::new();
    for name in files::public_key_names(dir)? {
        let key = load_public(dir, &name)?;
        entries.push(KeyEntry {
            has_secret: secret_path(dir, &name).exists(),
            key_id: key.key_id(),
            name,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Every public key in `dir`, for verification.
pub fn public_keys(dir: &Path) -> Result<KeySet, KeyringError> {
    list(dir)?
        .iter()
        .map(|e| load_public(dir, &e.name))
        .collect()
}

/// Imports a public key from its one-line export form; returns its name
/// and id. Importing the same key again is a no-op; a different key under
/// an existing name is refused.
pub fn import(dir: &Path, line: &str) -> Result<(String, KeyId), KeyringError> {
    let (name, key) =
        PublicKey::from_line(line.trim()).map_err(|source| KeyringError::Malformed {
            path: PathBuf::from("<import>"),
            line: 1,
            source,
        })?;
    let path = public_path(dir, &name);
    if path.exists() {
        let existing = load_public(dir, &name)?;
        if existing != key {
            return Err(KeyringError::Conflict {
                path,
                existing: existing.key_id(),
            });
        }
        return Ok((name, key.key_id()));
    }
    files::ensure_dir(dir)?;
    write_public(&path, &name, &key, false)?;
    Ok((name, key.key_id()))
}

/// The one-line export form of public key `name`.
pub fn export(dir: &Path, name: &str) -> Result<String, KeyringError> {
    let key = load_public(dir, name)?;
    key.to_line(name).map_err(KeyringError::BadName)
}

fn write_public(path: &Path, name: &str, key: &PublicKey, force: bool) -> Result<(), KeyringError> {
    let line = key.to_line(name).map_err(KeyringError::BadName)?;
    write_new(path, &line, 0o644, force)
}

/// The error for a key `dir` lacks, with the names it has (for the
/// suggestion; none if the directory cannot be listed).
fn not_found(dir: &Path, name: &str) -> KeyringError {
    KeyringError::NotFound {
        name: name.into(),
        dir: dir.into(),
        known: files::public_key_names(dir).unwrap_or_default(),
    }
}

fn secret_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

fn public_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pub"))
}

#[cfg(test)]
mod tests;
