//! Whole-store maintenance of the local store: re-hashing every blob, and
//! listing and deleting blobs for garbage collection.

use std::path::Path;
use std::time::SystemTime;

use cairn_digest::{Digest, DigestRef, Hasher};
use rayon::prelude::*;

use super::FsStore;
use crate::error::{Result, StoreError};

/// A blob file as found on disk.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    /// The digest its name and size claim.
    pub digest: Digest,
    /// When it was last written.
    pub modified: SystemTime,
}

/// What [`FsStore::verify_all`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Blobs checked.
    pub checked: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Blobs whose bytes do not match their name, with what they hash to.
    pub corrupt: Vec<(Digest, Digest)>,
}

impl FsStore {
    /// Every blob file, with the digest its name and current size claim.
    pub fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        let blobs = self.root.join("blobs");
        let shards: Vec<_> = (0..=255u8)
            .map(|b| blobs.join(format!("{b:02x}")))
            .collect();
        let lists: Vec<Result<Vec<BlobInfo>>> = shards.par_iter().map(|d| list_shard(d)).collect();
        let mut all = Vec::new();
        for list in lists {
            all.extend(list?);
        }
        Ok(all)
    }

    /// Re-hashes every blob in parallel; `progress` is called with the bytes
    /// of each blob checked.
    pub fn verify_all(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport> {
        let blobs = self.list_blobs()?;
        let results: Vec<Result<Option<(Digest, Digest)>>> = super::io_pool().install(|| {
            blobs
                .par_iter()
                .map(|b| {
                    let actual = hash_file(&self.blob_path(&b.digest), b.digest.size())?;
                    progress(b.digest.size());
                    Ok((actual != b.digest).then_some((b.digest, actual)))
                })
                .collect()
        });
        let mut report = VerifyReport::default();
        for (b, r) in blobs.iter().zip(results) {
            report.checked += 1;
            report.bytes += b.digest.size();
            if let Some(bad) = r? {
                report.corrupt.push(bad);
            }
        }
        report.corrupt.sort();
        Ok(report)
    }

    /// Deletes one blob if its file was last written before `cutoff`:
    /// `Some(true)` if deleted, `Some(false)` if it is younger, `None` if
    /// it is not there. Garbage collection only, holding `gc.lock`.
    pub(crate) fn delete_blob_if_older(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> Result<Option<bool>> {
        let path = self.blob_path(digest);
        let modified = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("reading metadata of", path, e)),
        };
        if modified > cutoff {
            return Ok(Some(false));
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Some(true)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("deleting", path, e)),
        }
    }

    /// Whether the blob's file hashes to its digest (read whole, streamed).
    pub fn blob_is_intact(&self, digest: &Digest) -> Result<bool> {
        match hash_file(&self.blob_path(digest), digest.size()) {
            Ok(actual) => Ok(actual == *digest),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The size of the blob file with this hash, if there is one (for a
    /// digest written without its size).
    pub fn size_of_hash(&self, hash: &[u8; 32]) -> Option<u64> {
        let digest = cairn_digest::DigestRef {
            hash: *hash,
            size: None,
        }
        .with_size(0);
        std::fs::symlink_metadata(self.blob_path(&digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }
}

fn list_shard(dir: &Path) -> Result<Vec<BlobInfo>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(r) = format!("sha256:{name}").parse::<DigestRef>() else {
            continue; // not a blob file: left alone
        };
        let meta = entry
            .metadata()
            .map_err(|e| StoreError::io("reading metadata of", entry.path(), e))?;
        out.push(BlobInfo {
            digest: r.with_size(meta.len()),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    Ok(out)
}

pub(super) fn hash_file(path: &Path, len: u64) -> Result<Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| StoreError::io("opening", path, e))?;
    let mut hasher = Hasher::new();
    // Sized to the file: zeroing a 1 MiB buffer per small blob costs more
    // than hashing it.
    let mut buf = vec![0u8; (len as usize).clamp(1, 1 << 20) + 1];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| StoreError::io("reading", path, e))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}
