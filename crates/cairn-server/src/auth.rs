//! Bearer-token checks for every route.
//!
//! A request carries `Authorization: Bearer <token>`; the server hashes the
//! token and looks the hash up in the tokens file ([`crate::tokens`]). The
//! file is re-read whenever its modification time, size or inode changes
//! (one `stat` per request), so a token created or revoked while the server
//! runs takes effect on the next request. An unreadable or invalid file
//! fails closed: every authenticated request gets a 500 until it is fixed.
//!
//! What each request needs is a [`Scope`]: reads need `read` (unless the
//! server allows anonymous reads), blob uploads, assembly from chunks and
//! action-cache writes need `write`, and ref writes need the scope of the
//! ref's namespace ([`scope_for_ref`]). `admin` grants everything.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::http::{header, HeaderMap};
use cairn_store::RefName;

use crate::error::ApiError;
use crate::tokens::{self, Holder, Scope};

/// Told to clients when no token exists at all.
const NO_TOKENS: &str = "this server has no tokens configured; create one with \
`cairn server token create NAME --scope write` (or --scope read, admin, promote:SERVICE, fleet:SERVICE)";

/// The scope a write to `name` needs: `ac/<hex>` is the action cache and
/// `chunks/<hex>` a large file's chunk list, both written by whoever
/// uploads blobs (`write`; other names under `ac/` and `chunks/` are no
/// cache entry and need `admin`); `channels/S/…`, `releases/S/…` and
/// `statements/S/…` (each channel statement's signatures) need `promote:S`, `fleet/S/…` needs `fleet:S`, anything else `admin`.
pub fn scope_for_ref(name: &RefName) -> Scope {
    let mut parts = name.as_str().splitn(3, '/');
    let (first, service, rest) = (parts.next(), parts.next(), parts.next());
    match (first, service, rest) {
        (Some("ac"), Some(hex), None) if is_sha256_hex(hex) => Scope::Write,
        (Some("chunks"), Some(hex), None) if is_sha256_hex(hex) => Scope::Write,
        (Some("channels" | "releases" | "statements"), Some(s), Some(_)) => {
            Scope::Promote(s.into())
        }
        (Some("fleet"), Some(s), Some(_)) => Scope::Fleet(s.into()),
        _ => Scope::Admin,
    }
}

/// The action hash of an action-cache entry's name (`ac/<hex>`).
pub fn action_cache_hash(name: &RefName) -> Option<&str> {
    name.as_str()
        .strip_prefix("ac/")
        .filter(|hex| is_sha256_hex(hex))
}

/// Whether `text` is a SHA-256 hash in lowercase hex, as a `chunks/` ref's
/// second segment must be.
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks requests against the tokens file.
#[derive(Debug)]
pub struct Auth {
    path: Option<PathBuf>,
    anonymous_read: bool,
    cache: Mutex<Cache>,
}

/// The file as last read, and the stat it was read at.
#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    loaded: Arc<Loaded>,
}

type Stamp = (Option<SystemTime>, u64, u64);

#[derive(Debug)]
enum Loaded {
    Tokens(HashMap<String, Holder>),
    Invalid,
}

impl Default for Loaded {
    fn default() -> Self {
        Self::Tokens(HashMap::new())
    }
}

impl Auth {
    /// Checks against the tokens in `path` (`None`: there are none).
    pub fn new(path: Option<PathBuf>, anonymous_read: bool) -> Self {
        Self {
            path,
            anonymous_read,
            cache: Mutex::default(),
        }
    }

    /// Lets the request through if its token grants `required`.
    pub fn check(&self, headers: &HeaderMap, required: &Scope) -> Result<(), ApiError> {
        if self.anonymous_read && required == &Scope::Read {
            return Ok(());
        }
        let loaded = self.current();
        let tokens = match &*loaded {
            Loaded::Invalid => {
                return Err(ApiError::Internal(
                    "the server's tokens file is invalid".into(),
                ))
            }
            Loaded::Tokens(t) if t.is_empty() => {
                return Err(ApiError::Unauthorized(NO_TOKENS.into()))
            }
            Loaded::Tokens(t) => t,
        };
        let token = bearer(headers)?;
        let holder = tokens
            .get(&tokens::token_hash(token))
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
        if holder.scopes.iter().any(|s| s.grants(required)) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "token {:?} lacks the scope {required}",
            holder.name
        )))
    }

    /// The tokens, re-read if the file changed since the last request.
    fn current(&self) -> Arc<Loaded> {
        let Some(path) = &self.path else {
            return Arc::default();
        };
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len(), m.ino()));
        let mut cache = self.cache.lock().unwrap();
        if cache.stamp != stamp || stamp.is_none() {
            cache.loaded = Arc::new(match tokens::load(path) {
                Ok(list) => Loaded::Tokens(list.into_iter().collect()),
                Err(e) => {
                    tracing::error!("{e}");
                    Loaded::Invalid
                }
            });
            cache.stamp = stamp;
        }
        cache.loaded.clone()
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || ApiError::Unauthorized("missing `Authorization: Bearer <token>`".into());
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (kind, token) = value.split_once(' ').ok_or_else(missing)?;
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_scopes() {
        let s = |n: &str| scope_for_ref(&RefName::new(n).unwrap());
        assert_eq!(s(&format!("ac/{}", "0f".repeat(32))), Scope::Write);
        assert_eq!(s("ac/00ff"), Scope::Admin, "not a hash");
        assert_eq!(s(&format!("ac/{}/x", "0f".repeat(32))), Scope::Admin);
        assert_eq!(s("channels/web/prod"), Scope::Promote("web".into()));
        assert_eq!(s("releases/web/1.0"), Scope::Promote("web".into()));
        assert_eq!(s("statements/web/prod/00ff"), Scope::Promote("web".into()));
        assert_eq!(s("fleet/web/eu/members/a"), Scope::Fleet("web".into()));
        assert_eq!(s(&format!("chunks/{}", "0f".repeat(32))), Scope::Write);
        assert_eq!(s("chunks/00ff"), Scope::Admin, "not a hash");
        assert_eq!(s(&format!("chunks/{}/x", "0f".repeat(32))), Scope::Admin);
        assert_eq!(s("channels/web"), Scope::Admin);
        assert_eq!(s("other"), Scope::Admin);
    }
}
