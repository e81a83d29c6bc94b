//! Fetching an accepted release into the agent's local store.
//!
//! The release's payload blob and its artifact tree are copied from the
//! store the agent follows (any backend, through the store traits) into the
//! local directory store with `cairn-transfer`: only what is missing moves,
//! every blob is verified on arrival, and a copy cut off at any byte
//! leaves only whole blobs behind (a blob is renamed into place after it
//! hashed right), so the next attempt resumes where it stopped. A full disk
//! fails the copy; nothing that runs is touched.
//!
//! Before copying, the release is *pinned* in the local store by a ref
//! (`agent/releases/<hex>`, naming the release and its artifact), so the
//! agent's garbage collection keeps it; pruning a generation unpins it
//! ([`unpin`]) and collects what no pinned release reaches ([`collect`]).
//! The agent is the local store's only writer and collects only between
//! its own fetches, so no grace period is needed there.
//!
//! A fetch reports each blob that arrives to its [`Arrivals`], so that the
//! agent, which fetches beside supervising its service, can give up a
//! fetch from a store that went silent (accepts and never answers, or
//! trickles) and retry it later.

use std::sync::atomic::{AtomicU64, Ordering};

use cairn_digest::Digest;
use cairn_store::{FsStore, RefName, Store, StoreError};
use cairn_transfer::{copy_closure, CopyOptions, Kind, Progress, TransferError};

/// Counts what a fetch moved so far (closures planned, blobs arrived, and
/// their bytes): unchanged for long, the store has gone silent; growing
/// too slowly, it trickles.
#[derive(Debug, Default)]
pub struct Arrivals {
    events: AtomicU64,
    credit: AtomicU64,
}

/// What a blob counts for, at least, in a fetch's rate: a request's worth,
/// so that a release of many small files from a slow store is not taken
/// for a trickle, while a store sending small blobs slowly still is.
pub const BLOB_CREDIT: u64 = 4096;

impl Arrivals {
    /// Events so far.
    pub fn count(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Bytes arrived so far, each blob counting at least [`BLOB_CREDIT`].
    pub fn credit(&self) -> u64 {
        self.credit.load(Ordering::Relaxed)
    }
}

impl Progress for Arrivals {
    fn planned(&self, _total: u64, _missing: u64, _bytes: u64) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    fn copied(&self, _digest: &Digest, size: u64) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.credit
            .fetch_add(size.max(BLOB_CREDIT), Ordering::Relaxed);
    }
}

/// What a fetch moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Fetched {
    /// Blobs copied.
    pub blobs: u64,
    /// Bytes handed to the local store.
    pub bytes: u64,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Copying failed (source unreachable or corrupt, local disk full…).
    #[error("fetching {what} {digest}: {source}")]
    Copy {
        /// "release" or "artifact".
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: TransferError,
    },
    /// Pinning or unpinning in the local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where releases are pinned in the local store.
const PIN_PREFIX: &str = "agent/releases/";

fn pin_ref(release: &Digest) -> RefName {
    RefName::new(format!("{PIN_PREFIX}{}", release.hex())).expect("hex is a valid ref name")
}

/// Copies `release` and `artifact` from `remote` into `local`, pinned,
/// reporting each blob to `arrivals`.
pub async fn fetch(
    remote: &Store,
    local: &Store,
    release: Digest,
    artifact: Digest,
    arrivals: &Arrivals,
) -> Result<Fetched, FetchError> {
    pin(local, &release, &artifact).await?;
    let options = CopyOptions::default();
    let mut fetched = Fetched::default();
    for (what, digest, kind) in [
        ("release", release, Kind::Leaf),
        ("artifact", artifact, Kind::Tree),
    ] {
        let report = copy_closure(remote, local, digest, kind, &options, arrivals)
            .await
            .map_err(|source| FetchError::Copy {
                what,
                digest,
                source,
            })?;
        fetched.blobs += report.blobs_copied;
        fetched.bytes += report.bytes_copied;
    }
    Ok(fetched)
}

async fn pin(local: &Store, release: &Digest, artifact: &Digest) -> Result<(), StoreError> {
    let value = serde_json::to_vec(&serde_json::json!({
        "release": release,
        "artifact": artifact,
    }))
    .expect("digests serialize");
    match local
        .refs
        .compare_and_swap(&pin_ref(release), None, value)
        .await
    {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpins `release` (its blobs go at the next collection unless another
/// pinned release shares them).
pub async fn unpin(local: &Store, release: &Digest) -> Result<(), StoreError> {
    let name = pin_ref(release);
    if let Some(v) = local.refs.get(&name).await? {
        local.refs.delete(&name, &v.version).await?;
    }
    Ok(())
}

/// Unpins every release but those in `keep` (the kept generations'):
/// a release whose fetch was given up or cut short and never became a
/// generation (a newer statement came first, the agent died) would
/// otherwise keep what it fetched for ever. Returns how many it unpinned.
pub async fn unpin_all_but(local: &Store, keep: &[Digest]) -> Result<usize, StoreError> {
    let mut unpinned = 0;
    for name in local.refs.list(PIN_PREFIX).await? {
        let hex = name.as_str().trim_start_matches(PIN_PREFIX);
        if keep.iter().any(|k| k.hex() == hex) {
            continue;
        }
        if let Some(v) = local.refs.get(&name).await? {
            local.refs.delete(&name, &v.version).await?;
            unpinned += 1;
        }
    }
    Ok(unpinned)
}

/// Deletes every local blob no pinned release reaches; returns how many
/// bytes that freed.
///
/// Large files arrive as chunks, and their `chunks/<hex>` refs keep the
/// chunks alive (so the next version moves only changed chunks). Once a
/// file itself is collected its chunk list is dropped too, and a second
/// pass collects the chunks.
pub async fn collect(local: &Store, fs: &FsStore) -> Result<u64, StoreError> {
    // The agent is the only writer of its local store and does not fetch
    // while it collects, so nothing needs a grace period.
    let options = cairn_store::gc::GcOptions {
        grace: std::time::Duration::ZERO,
        dry_run: false,
    };
    let mut freed = cairn_store::gc::collect_garbage(fs, &options)
        .await?
        .removed_bytes;
    let mut dropped = false;
    for name in local.refs.list("chunks/").await? {
        let hex = name.as_str().trim_start_matches("chunks/");
        let Ok(file) = Digest::from_hex(hex, 0) else {
            continue;
        };
        if fs.blob_path(&file).exists() {
            continue;
        }
        if let Some(v) = local.refs.get(&name).await? {
            local.refs.delete(&name, &v.version).await?;
            dropped = true;
        }
    }
    if dropped {
        freed += cairn_store::gc::collect_garbage(fs, &options)
            .await?
            .removed_bytes;
    }
    // Executable copies made for checkouts (`cache/exec/<hex>`) of files
    // that are gone; generations still using one hold their own link.
    let exec = fs.cache_dir().join("exec");
    for entry in std::fs::read_dir(&exec).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(file) = name.to_str().and_then(|h| Digest::from_hex(h, 0).ok()) else {
            continue;
        };
        if !fs.blob_path(&file).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pins_of_releases_that_never_became_a_generation_are_dropped() {
        let local = Store::memory();
        let (kept, stray, artifact) = (
            Digest::of(b"kept release"),
            Digest::of(b"fetch given up"),
            Digest::of(b"artifact"),
        );
        pin(&local, &kept, &artifact).await.unwrap();
        pin(&local, &stray, &artifact).await.unwrap();
        assert_eq!(unpin_all_but(&local, &[kept]).await.unwrap(), 1);
        let left = local.refs.list(PIN_PREFIX).await.unwrap();
        assert_eq!(left, [pin_ref(&kept)]);
        assert_eq!(unpin_all_but(&local, &[kept]).await.unwrap(), 0);
    }
}
