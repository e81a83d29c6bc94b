//! The tokens file: who may do what.
//!
//! Each entry names a token holder, the SHA-256 of the token (the token
//! itself is shown once, when created, and never stored) and its scopes.
//! The file is TOML so an operator can read, edit and revoke by hand:
//!
//! ```toml
//! [[token]]
//! name = "ci"
//! sha256 = "…64 hex…"
//! scopes = ["read", "write"]
//! ```
//!
//! Writes replace the file atomically (temp file + rename), so a running
//! server that re-reads it on change never sees half a file.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read blobs, the action cache and refs.
    Read,
    /// Write blobs and the action cache (`ac/<hex>` refs).
    Write,
    /// Write `channels/<service>/…` and `releases/<service>/…` refs.
    Promote(String),
    /// Write `fleet/<service>/…` refs.
    Fleet(String),
    /// Everything.
    Admin,
}

impl Scope {
    /// Whether holding `self` grants `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        self == &Scope::Admin || self == required
    }
}

impl FromStr for Scope {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, TokenError> {
        let service = |s: &str| -> Result<String, TokenError> {
            let ok = !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            ok.then(|| s.to_string())
                .ok_or_else(|| TokenError::BadScope(text.into()))
        };
        match text.split_once(':') {
            None if text == "read" => Ok(Self::Read),
            None if text == "write" => Ok(Self::Write),
            None if text == "admin" => Ok(Self::Admin),
            Some(("promote", s)) => Ok(Self::Promote(service(s)?)),
            Some(("fleet", s)) => Ok(Self::Fleet(service(s)?)),
            _ => Err(TokenError::BadScope(text.into())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read => f.write_str("read"),
            Self::Write => f.write_str("write"),
            Self::Admin => f.write_str("admin"),
            Self::Promote(s) => write!(f, "promote:{s}"),
            Self::Fleet(s) => write!(f, "fleet:{s}"),
        }
    }
}

/// Errors reading or writing the tokens file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A scope that is not one of the known forms.
    #[error("unknown scope {0:?} (use read, write, admin, promote:SERVICE or fleet:SERVICE)")]
    BadScope(String),
    /// A token name that is empty or already taken.
    #[error("token name {0:?} is empty or already in use")]
    BadName(String),
    /// Revoking a name no token has.
    #[error("no token named {name:?} in {} ({})", path.display(), match names.as_slice() {
        [] => "it has none".to_string(),
        names => format!("it has: {}", names.join(", ")),
    })]
    NoSuchToken {
        /// The name asked for.
        name: String,
        /// The tokens file.
        path: PathBuf,
        /// The names it has.
        names: Vec<String>,
    },
    /// The file could not be read or written.
    #[error("{action} tokens file {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("tokens file {} is invalid: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The file as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "token")]
    tokens: Vec<Entry>,
}

/// One token as stored: its hash, never the token.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    scopes: Vec<String>,
}

/// A token holder as the server checks it.
#[derive(Clone, Debug)]
pub struct Holder {
    /// Its name, for logs and error messages.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// The SHA-256 (hex) under which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Reads the file: token hash → holder. A missing file has no tokens.
pub fn load(path: &Path) -> Result<Vec<(String, Holder)>, TokenError> {
    let file = read_file(path)?;
    file.tokens
        .into_iter()
        .map(|e| {
            let scopes = e
                .scopes
                .iter()
                .map(|s| s.parse())
                .collect::<Result<Vec<Scope>, _>>()
                .map_err(|err| invalid(path, format!("token {:?}: {err}", e.name)))?;
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(path, format!("token {:?}: bad sha256", e.name)));
            }
            let holder = Holder {
                name: e.name,
                scopes,
            };
            Ok((e.sha256.to_ascii_lowercase(), holder))
        })
        .collect()
}

/// Adds a token named `name` with `scopes` to the file (creating it) and
/// returns the new token: 32 random bytes, base64url, prefixed `cairn_`.
/// Only its hash is written.
pub fn create(path: &Path, name: &str, scopes: &[Scope]) -> Result<String, TokenError> {
    let _lock = lock(path)?;
    let mut file = read_file(path)?;
    if name.is_empty() || file.tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::BadName(name.into()));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Io {
        action: "generating a token for",
        path: path.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let token = format!(
        "cairn_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    file.tokens.push(Entry {
        name: name.into(),
        sha256: token_hash(&token),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    });
    write_file(path, &file)?;
    Ok(token)
}

/// A token as [`list`] shows it: its holder and scopes (never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<String>,
}

/// Every token in the file, in the file's order (empty if there is none).
pub fn list(path: &Path) -> Result<Vec<Listed>, TokenError> {
    Ok(read_file(path)?
        .tokens
        .into_iter()
        .map(|e| Listed {
            name: e.name,
            scopes: e.scopes,
        })
        .collect())
}

/// Removes the token held by `name` from the file. A running server reads
/// the changed file on its next request and refuses the token from then
/// on.
pub fn revoke(path: &Path, name: &str) -> Result<(), TokenError> {
    let _lock = lock(path)?;
    let mut file = read_file(path)?;
    let before = file.tokens.len();
    file.tokens.retain(|t| t.name != name);
    if file.tokens.len() == before {
        let names: Vec<String> = file.tokens.iter().map(|t| t.name.clone()).collect();
        return Err(TokenError::NoSuchToken {
            name: name.into(),
            path: path.into(),
            names,
        });
    }
    write_file(path, &file)
}

/// Holds `<file>.lock` exclusively while a change reads, edits and
/// replaces the file, so two changes at once cannot lose one another's
/// tokens (each would otherwise replace the file it read).
fn lock(path: &Path) -> Result<std::fs::File, TokenError> {
    let io = |action| {
        move |source| TokenError::Io {
            action,
            path: path.into(),
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&name)
        .map_err(io("opening the lock of"))?;
    file.lock().map_err(io("locking"))?;
    Ok(file)
}

fn read_file(path: &Path) -> Result<File, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(source) => {
            return Err(TokenError::Io {
                action: "reading",
                path: path.into(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|e| invalid(path, e.to_string().replace('\n', " ")))
}

const HEADER: &str = "# cairn server tokens: one [[token]] per holder; only SHA-256 hashes of\n\
# the tokens are kept. Add with `cairn server token create NAME --scope S`,\n\
# list with `cairn server token list`, revoke with `cairn server token\n\
# revoke NAME` (or delete the entry); a running server notices the change.\n\n";

fn write_file(path: &Path, file: &File) -> Result<(), TokenError> {
    let io = |action| {
        move |source| TokenError::Io {
            action,
            path: path.into(),
            source,
        }
    };
    let text = toml::to_string(file).map_err(|e| invalid(path, e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating"))?;
    out.write_all(HEADER.as_bytes())
        .and_then(|()| out.write_all(text.as_bytes()))
        .and_then(|()| out.sync_all())
        .map_err(io("writing"))?;
    std::fs::rename(&tmp, path).map_err(io("replacing"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the directory of"))?;
    }
    Ok(())
}

fn invalid(path: &Path, reason: String) -> TokenError {
    TokenError::Invalid {
        path: path.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        for s in ["read", "write", "admin", "promote:web", "fleet:api-1"] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        for bad in ["", "root", "promote:", "fleet:a/b", "promote:..", "read:x"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_stores_only_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = create(&path, "ci", &[Scope::Read, Scope::Write]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token));
        let loaded = load(&path).unwrap();
        assert_eq!(loaded[0].0, token_hash(&token));
        assert_eq!(loaded[0].1.scopes, [Scope::Read, Scope::Write]);
        assert!(
            create(&path, "ci", &[Scope::Read]).is_err(),
            "duplicate name"
        );
    }

    #[test]
    fn concurrent_creates_keep_every_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || create(&path, &format!("t{i}"), &[Scope::Read]).unwrap())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut names: Vec<String> = list(&path).unwrap().into_iter().map(|l| l.name).collect();
        names.sort();
        let mut want: Vec<String> = (0..16).map(|i| format!("t{i}")).collect();
        want.sort();
        assert_eq!(names, want);
    }

    #[test]
    fn revoke_removes_only_the_named_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        create(&path, "ci", &[Scope::Read]).unwrap();
        let kept = create(&path, "ops", &[Scope::Admin]).unwrap();
        revoke(&path, "ci").unwrap();
        let names: Vec<String> = list(&path).unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["ops"]);
        assert_eq!(load(&path).unwrap()[0].0, token_hash(&kept));
        let err = revoke(&path, "ci").unwrap_err().to_string();
        assert!(
            err.contains("no token named \"ci\"") && err.contains("it has: ops"),
            "{err}"
        );
    }
}
