//! Garbage collection of the local store: delete every blob nothing keeps,
//! and the derived data and leftovers that would otherwise keep the disk
//! full.
//!
//! **What is kept.** A blob is kept if any of these reaches it:
//!
//! * a ref ([`roots`](crate::roots): digests written as text, documents,
//!   trees, REAPI results, the fetched bytes of a `fetch/<hex>` ref and
//!   the pinned manifest of an `oci/<hex>` ref);
//! * a claim made less than the grace period ago ([`claims`]): what a
//!   writer reused instead of writing;
//!
//! and a blob written less than the grace period ago is kept whatever
//! reaches it. Everything a kept tree or document names is kept, whatever
//! its size ([`reach`](crate::reach)).
//!
//! **Concurrency.** The live set is computed without any lock, then blobs
//! are deleted in batches, each holding `gc.lock` exclusively: a batch
//! first reads the claims written since the previous one (and keeps what
//! they reach), then checks each blob's age again just before unlinking
//! it. Writers hold the lock shared only to append a claim or rename a new
//! blob into place, so a blob a writer finds and claims, or writes, while a
//! collection runs is never deleted ([`claims`] has the argument).
//!
//! **Leftovers and caches** ([`caches`]): temporary files and directories
//! whose writer died, materialized trees and executable copies no longer
//! kept, old logs of failed steps and unused stat caches; the report counts
//! what they held, so the bytes reported freed are freed.
//!
//! [`claims`]: crate::fs::claims

pub mod caches;

use std::time::{Duration, SystemTime};

use cairn_digest::Digest;

use crate::error::Result;
use crate::fs::claims::ClaimLog;
use crate::fs::{BlobInfo, FsStore, Swept};
use crate::reach::Live;
use crate::refs::RefStore;
use crate::roots::{roots_of_ref, Root};

pub use caches::CacheReport;

/// Blobs deleted per hold of `gc.lock`: writers wait at most one batch.
const BATCH: usize = 2048;

/// How to collect.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Keep blobs written, and honour claims made, less than this ago.
    /// Below the default (an hour), commands running meanwhile are safe
    /// only if they write their refs within the grace period.
    pub grace: Duration,
    /// Only report what would be removed.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

/// What a collection removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    /// Blobs examined.
    pub blobs: u64,
    /// Blobs reachable from refs and recent claims.
    pub live: u64,
    /// Unreachable blobs kept because they are younger than the grace period.
    pub young: u64,
    /// Blobs that were to go but were claimed or written again while the
    /// collection ran.
    pub spared: u64,
    /// The blobs removed.
    pub removed: Vec<Digest>,
    /// Their total size.
    pub removed_bytes: u64,
    /// Temporary files and directories of writers that died.
    pub temp: Swept,
    /// Derived data removed from `cache/`.
    pub caches: CacheReport,
    /// Claim files past the grace period, removed.
    pub expired_claim_files: u64,
}

impl GcReport {
    /// Every byte removed: blobs, leftovers and caches.
    pub fn freed_bytes(&self) -> u64 {
        self.removed_bytes + self.temp.bytes + self.caches.total().bytes
    }
}

/// Collects garbage in `store` (see the module documentation). Safe to
/// run while other processes, or this one, read and write the store.
pub async fn collect_garbage(store: &FsStore, options: &GcOptions) -> Result<GcReport> {
    let cutoff = SystemTime::now()
        .checked_sub(options.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport {
        temp: store.take_swept_at_open(),
        ..GcReport::default()
    };
    if !options.dry_run {
        report.temp += caches::sweep_leftovers(store)?;
    }
    let mut live = Live::new();
    add_ref_roots(store, &mut live).await?;
    let mut claims = ClaimLog::default();
    let read = claims.read_new(store.claims_dir(), cutoff)?;
    live.add(store, read.claims).await?;

    let mut doomed: Vec<BlobInfo> = Vec::new();
    for blob in store.list_blobs()? {
        report.blobs += 1;
        if live.contains(blob.digest.hash()) {
            report.live += 1;
        } else if blob.modified > cutoff {
            report.young += 1;
        } else {
            doomed.push(blob);
        }
    }
    if options.dry_run {
        report.removed_bytes = doomed.iter().map(|b| b.digest.size()).sum();
        report.removed = doomed.into_iter().map(|b| b.digest).collect();
        report.caches = caches::collect(store, &live, cutoff, true)?;
        return Ok(report);
    }
    for batch in doomed.chunks(BATCH) {
        let _lock = store.lock_collection().await?;
        // Claims made since the last look keep what they reach.
        let read = claims.read_new(store.claims_dir(), cutoff)?;
        live.add(store, read.claims).await?;
        for blob in batch {
            if live.contains(blob.digest.hash()) {
                report.spared += 1;
                continue;
            }
            match store.delete_blob_if_older(&blob.digest, cutoff)? {
                Some(true) => {
                    report.removed_bytes += blob.digest.size();
                    report.removed.push(blob.digest);
                }
                Some(false) => report.spared += 1, // written again meanwhile
                None => {}                         // already gone
            }
        }
    }
    // No writer writes to a file whose slot has ended, so expired files
    // can go without the lock.
    let read = claims.read_new(store.claims_dir(), cutoff)?;
    for file in &read.expired {
        if std::fs::remove_file(file).is_ok() {
            report.expired_claim_files += 1;
        }
    }
    report.caches = caches::collect(store, &live, cutoff, false)?;
    store.sync()?;
    Ok(report)
}

/// Adds every ref's roots to `live`, sizes learned from the blob files.
async fn add_ref_roots(store: &FsStore, live: &mut Live) -> Result<()> {
    let mut roots: Vec<Root> = Vec::new();
    for name in store.list("").await? {
        if let Some(v) = RefStore::get(store, &name).await? {
            roots.extend(roots_of_ref(&name, &v.value));
        }
    }
    let mut nodes = Vec::with_capacity(roots.len());
    for root in roots {
        match root.resolve(|hash| store.size_of_hash(hash)) {
            Some(node) => nodes.push(node),
            // Named without a size and not stored: nothing to walk.
            None => live.insert_hash(root.hash),
        }
    }
    live.add(store, nodes).await
}
