//! What a collection removes besides blobs: leftovers of writers that died,
//! and derived data under `cache/` that would keep deleted blobs' bytes on
//! the disk or grow without bound.
//!
//! * `tmp/*` and every `cache/*/.tmp-*`: removed when no living writer
//!   holds their lock ([`temp`](crate::fs::temp)).
//! * `cache/trees/<hex>` (trees materialized for the sandbox, hard links
//!   into the store): removed when the tree is not kept and no build used
//!   it within the grace period; one a running build holds (shared lock on
//!   the directory) is left alone.
//! * `cache/exec/<hex>` (executable copies, their own inodes): removed when
//!   the blob is not kept and the copy is older than the grace period.
//! * `cache/logs/*` (logs of failed steps): removed past the grace period.
//! * `cache/stat/*` (stat caches): removed when no snapshot used them for
//!   [`STAT_CACHE_UNUSED`]; they hold no blob's bytes and cost a re-read
//!   of the tree if lost.
//!
//! Bytes are counted only for files whose last link goes, so the report
//! says what the disk gets back.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};
use crate::fs::temp::{remove_if_stale, size_of_tree, sweep, Swept, TEMP_PREFIX};
use crate::fs::FsStore;
use crate::reach::Live;

/// How long a stat cache may go unused before a collection removes it.
pub const STAT_CACHE_UNUSED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Derived data a collection removed from `cache/`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheReport {
    /// Materialized trees.
    pub trees: Swept,
    /// Executable copies.
    pub exec: Swept,
    /// Logs of failed steps.
    pub logs: Swept,
    /// Stat caches.
    pub stat: Swept,
}

impl CacheReport {
    /// All of it together.
    pub fn total(&self) -> Swept {
        let mut all = self.trees;
        all += self.exec;
        all += self.logs;
        all += self.stat;
        all
    }
}

/// Removes what dead writers left in `tmp/` and under `cache/*/.tmp-*`.
pub(super) fn sweep_leftovers(store: &FsStore) -> Result<Swept> {
    let mut swept = sweep(&store.root().join("tmp"), false)?;
    for dir in subdirectories(&store.cache_dir())? {
        swept += sweep(&dir, true)?;
    }
    Ok(swept)
}

/// Removes derived data nothing needs any more (see the module docs).
pub(super) fn collect(
    store: &FsStore,
    live: &Live,
    cutoff: SystemTime,
    dry_run: bool,
) -> Result<CacheReport> {
    let cache = store.cache_dir();
    let unused_stat = SystemTime::now()
        .checked_sub(STAT_CACHE_UNUSED)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let not_live = |name: &str| hash_of(name).is_some_and(|h| !live.contains(&h));
    Ok(CacheReport {
        trees: remove_where(&cache.join("trees"), dry_run, |name, modified| {
            not_live(name) && modified <= cutoff
        })?,
        exec: remove_where(&cache.join("exec"), dry_run, |name, modified| {
            not_live(name) && modified <= cutoff
        })?,
        logs: remove_where(&cache.join("logs"), dry_run, |_, modified| {
            modified <= cutoff
        })?,
        stat: remove_where(&cache.join("stat"), dry_run, |_, modified| {
            modified <= unused_stat
        })?,
    })
}

/// Removes each entry of `dir` (temporary ones aside) that `doomed(name,
/// modified)` picks and no process holds.
fn remove_where(
    dir: &Path,
    dry_run: bool,
    doomed: impl Fn(&str, SystemTime) -> bool,
) -> Result<Swept> {
    let mut swept = Swept::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(swept),
        Err(e) => return Err(StoreError::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if !doomed(&name, modified) {
            continue;
        }
        let path = entry.path();
        let bytes = if dry_run {
            Some(size_of_tree(&path))
        } else {
            remove_if_stale(&path)?
        };
        if let Some(bytes) = bytes {
            swept.entries += 1;
            swept.bytes += bytes;
        }
    }
    Ok(swept)
}

/// The hash a cache entry is named after (`<hex>`, possibly `<hex>.…`).
fn hash_of(name: &str) -> Option<[u8; 32]> {
    let hex = name.get(..64)?;
    let digest = cairn_digest::Digest::from_hex(hex, 0).ok()?;
    Some(*digest.hash())
}

fn subdirectories(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("listing", dir, e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}
