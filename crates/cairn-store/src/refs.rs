//! Refs: small named values that change only by compare-and-swap.
//!
//! Everything mutable in cairn (channels, fleet records, the action cache)
//! is a ref. A ref carries an opaque [`Version`] that changes on every write;
//! a writer names the version it read, and the write fails with
//! [`StoreError::Conflict`] if someone else wrote first. That one primitive
//! is enough for promotion races and for the agents' rollout protocol.
//!
//! Backends that can push changes implement [`RefStore::watch`]; the others
//! return `None` and callers poll ([`poll_changes`] does it for them).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::{Result, StoreError};

/// The longest segment of a ref name: a local store keeps a ref as a file
/// named by its last segment, beside a `.lock` file, and file systems
/// take names of at most 255 bytes. Every backend refuses the same names,
/// so a store copies to any other.
pub const MAX_SEGMENT: usize = 250;

/// How much of a refused name an error shows.
const SHOWN: usize = 200;

/// The largest value a ref may hold: refs are pointers and records, not data.
pub const MAX_REF_SIZE: usize = 1 << 20;

/// A validated ref name: `/`-separated segments of `[A-Za-z0-9._-]`, no
/// empty, `.` or `..` segment, at most 512 bytes and [`MAX_SEGMENT`] a
/// segment, not ending in `.lock`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

impl RefName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bad = |reason| StoreError::BadRefName {
            name: match name.char_indices().nth(SHOWN) {
                Some((cut, _)) => format!("{}… ({} bytes)", &name[..cut], name.len()),
                None => name.clone(),
            },
            reason,
        };
        if name.is_empty() || name.len() > 512 {
            return Err(bad("must be 1 to 512 bytes"));
        }
        for segment in name.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(bad("has an empty, '.' or '..' segment"));
            }
            if segment.len() > MAX_SEGMENT {
                return Err(bad("a segment may be at most 250 bytes"));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(bad("segments may hold only A-Z a-z 0-9 . _ -"));
            }
        }
        if name.ends_with(".lock") || name.contains(".lock/") {
            return Err(bad("'.lock' segments are reserved"));
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// An opaque version of a ref's value (a counter, an ETag...).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ref's value together with the version it was read at.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Versioned {
    /// The bytes.
    pub value: Vec<u8>,
    /// Their version.
    pub version: Version,
}

/// A change to a ref seen by a watcher: re-read it to learn the new value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefEvent {
    /// The ref that changed (was written or deleted).
    pub name: RefName,
}

/// What a conditional read ([`RefStore::get_if_changed`]) found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IfChanged {
    /// The ref is still at the version the caller knew.
    Unchanged,
    /// It changed: its value and version now, or `None` if it is gone.
    Changed(Option<Versioned>),
}

/// A stream of changes under a prefix.
pub type RefWatch = BoxStream<'static, Result<RefEvent>>;

/// Small mutable values updated by compare-and-swap.
#[async_trait]
pub trait RefStore: Send + Sync + fmt::Debug {
    /// The current value and version, or `None` if the ref does not exist.
    async fn get(&self, name: &RefName) -> Result<Option<Versioned>>;

    /// The ref, unless it is still at `known`: what a poller calls. The
    /// default reads it whole and compares; backends with conditional
    /// reads (S3's and the server's `If-None-Match`) answer an unchanged
    /// ref without sending its value.
    async fn get_if_changed(&self, name: &RefName, known: &Version) -> Result<IfChanged> {
        Ok(match self.get(name).await? {
            Some(v) if &v.version == known => IfChanged::Unchanged,
            now => IfChanged::Changed(now),
        })
    }

    /// Every ref whose name starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<RefName>>;

    /// One page of [`list`](Self::list): at most `limit` of its names,
    /// those after `after` (all when `None`). The default lists all and
    /// cuts; the HTTP backend asks the server for the page alone.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<Vec<RefName>> {
        let all = self.list(prefix).await?;
        Ok(all
            .into_iter()
            .filter(|n| after.is_none_or(|a| n > a))
            .take(limit)
            .collect())
    }

    /// Writes `value` if the ref is at `expected` (`None`: must not exist);
    /// returns the new version, or [`StoreError::Conflict`].
    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> Result<Version>;

    /// Deletes the ref if it is at `expected`; [`StoreError::Conflict`] if not.
    async fn delete(&self, name: &RefName, expected: &Version) -> Result<()>;

    /// Changes under `prefix` as they happen, or `None` if this backend
    /// cannot push them (the caller then polls, see [`poll_changes`]).
    async fn watch(&self, _prefix: &str) -> Result<Option<RefWatch>> {
        Ok(None)
    }
}

/// Checks a value against [`MAX_REF_SIZE`].
pub fn check_ref_size(name: &RefName, value: &[u8]) -> Result<()> {
    if value.len() > MAX_REF_SIZE {
        return Err(StoreError::RefTooLarge {
            name: name.to_string(),
            size: value.len(),
            limit: MAX_REF_SIZE,
        });
    }
    Ok(())
}

/// The refs that would be directories of `name`: `a` and `a/b` for
/// `a/b/c`, nearest the root first. Backends refuse a ref while any of
/// these exists, or while a ref exists below it
/// ([`StoreError::RefPathTaken`]).
pub fn parent_names(name: &RefName) -> impl Iterator<Item = RefName> + '_ {
    let text = name.as_str();
    text.match_indices('/')
        .filter_map(move |(i, _)| RefName::new(&text[..i]).ok())
}

/// The refusal of a write of `name` because ref `other` is in its way.
pub fn path_taken(name: &RefName, other: &RefName) -> StoreError {
    StoreError::RefPathTaken {
        name: name.to_string(),
        other: other.to_string(),
    }
}

/// The conflict error for a compare-and-swap that found `found`.
pub fn conflict(name: &RefName, expected: Option<&Version>, found: Option<&Version>) -> StoreError {
    let show = |v: Option<&Version>| v.map_or("absent".to_string(), |v| v.0.clone());
    StoreError::Conflict {
        name: name.to_string(),
        expected: show(expected),
        found: show(found),
    }
}

/// Watches `prefix`, pushing if the backend can and polling every
/// `interval` otherwise. Either way, a change made after this returns is
/// reported. Polling reports each ref whose version changed or that
/// appeared or vanished since the previous poll.
pub async fn watch_or_poll(
    refs: std::sync::Arc<dyn RefStore>,
    prefix: &str,
    interval: Duration,
) -> Result<RefWatch> {
    if let Some(w) = refs.watch(prefix).await? {
        return Ok(w);
    }
    poll_changes(refs, prefix.to_string(), interval).await
}

/// A [`RefWatch`] made by polling `list` and `get`. The refs are read once
/// before this returns, so a change made after it is seen by the first
/// poll.
pub async fn poll_changes(
    refs: std::sync::Arc<dyn RefStore>,
    prefix: String,
    interval: Duration,
) -> Result<RefWatch> {
    use std::collections::BTreeMap;
    type Seen = BTreeMap<RefName, Version>;
    let first = snapshot_versions(refs.as_ref(), &prefix).await?;
    let state: (Seen, Vec<RefEvent>) = (first, Vec::new());
    Ok(
        futures::stream::unfold(state, move |(mut seen, mut pending)| {
            let refs = refs.clone();
            let prefix = prefix.clone();
            async move {
                loop {
                    if let Some(ev) = pending.pop() {
                        return Some((Ok(ev), (seen, pending)));
                    }
                    tokio::time::sleep(interval).await;
                    let now = match snapshot_versions(refs.as_ref(), &prefix).await {
                        Ok(now) => now,
                        Err(e) => return Some((Err(e), (seen, pending))),
                    };
                    let changed = now.iter().filter(|(n, v)| seen.get(*n) != Some(*v));
                    let vanished = seen.keys().filter(|n| !now.contains_key(*n));
                    pending = changed
                        .map(|(n, _)| n)
                        .chain(vanished)
                        .map(|n| RefEvent { name: n.clone() })
                        .collect();
                    pending.reverse();
                    seen = now;
                }
            }
        })
        .boxed(),
    )
}

async fn snapshot_versions(
    refs: &dyn RefStore,
    prefix: &str,
) -> Result<std::collections::BTreeMap<RefName, Version>> {
    let mut out = std::collections::BTreeMap::new();
    for name in refs.list(prefix).await? {
        if let Some(v) = refs.get(&name).await? {
            out.insert(name, v.version);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        for good in [
            "a",
            "channels/hello/prod",
            "fleet/x/eu-1/members/host-a",
            "ac/0a",
            &"s".repeat(MAX_SEGMENT),
        ] {
            assert!(RefName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            ".",
            "a b",
            "a\0",
            "x.lock",
            "x.lock/y",
            &format!("a/{}", "s".repeat(MAX_SEGMENT + 1)),
        ] {
            assert!(RefName::new(bad).is_err(), "{bad:?}");
        }
    }
}
