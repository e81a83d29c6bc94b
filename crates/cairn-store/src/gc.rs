//! Garbage collection of the local store: delete every blob no ref reaches.
//!
//! A blob younger than the grace period is never deleted, whether reached
//! or not: a writer that has stored blobs but not yet the ref naming them
//! (a snapshot in progress, a build about to record its result) is safe as
//! long as it finishes within the grace period.

use std::time::{Duration, SystemTime};

use cairn_digest::Digest;

use crate::error::Result;
use crate::fs::FsStore;
use crate::reach::reachable;

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Blobs examined.
    pub blobs: u64,
    /// Blobs reachable from refs.
    pub live: u64,
    /// Unreachable blobs kept because they are younger than the grace period.
    pub young: u64,
    /// The blobs removed.
    pub removed: Vec<Digest>,
    /// Their total size.
    pub removed_bytes: u64,
}

/// Deletes unreachable blobs older than `grace` (only lists them if `dry_run`).
pub async fn collect_garbage(store: &FsStore, grace: Duration, dry_run: bool) -> Result<GcReport> {
    let live = reachable(store, store).await?;
    let cutoff = SystemTime::now() - grace;
    let mut report = GcReport::default();
    for blob in store.list_blobs()? {
        report.blobs += 1;
        if live.contains(blob.digest.hash()) {
            report.live += 1;
        } else if blob.modified > cutoff {
            report.young += 1;
        } else {
            report.removed_bytes += blob.digest.size();
            report.removed.push(blob.digest);
        }
    }
    if !dry_run && !report.removed.is_empty() {
        // Stat caches may name removed blobs; they are derived data.
        let stat = store.cache_dir().join("stat");
        let _ = std::fs::remove_dir_all(&stat);
        for d in &report.removed {
            store.delete_blob(d)?;
        }
        store.sync()?;
    }
    Ok(report)
}
