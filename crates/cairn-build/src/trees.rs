//! Moving trees between the store and directories the build uses.
//!
//! Input trees are materialized once into `<store>/cache/trees/<hex>`
//! (hard links into the store, so it is cheap) and then bind-mounted
//! read-only into every sandbox that mounts them: sandbox setup costs the
//! same for a 1 MiB tree as for a 1 GiB toolchain. A tree is materialized
//! into a temporary directory and renamed into place, so a crash or a
//! concurrent build never leaves a half-written tree under its final name.
//!
//! Directories the build snapshots only once (a step's `/out`, an unpacked
//! archive) are snapshotted with [`snapshot_temp`], which drops the stat
//! cache the snapshot would otherwise keep for that never-again-seen path.

use std::path::{Path, PathBuf};

use cairn_digest::Digest;
use cairn_snapshot::{
    materialize, snapshot, Added, MaterializeOptions, NoProgress, SnapshotError, SnapshotOptions,
};
use cairn_store::FsStore;

use crate::error::BuildError;

/// The read-only directory holding tree `digest`, materializing it first
/// if no earlier build did.
pub fn materialized(fs: &FsStore, digest: &Digest) -> Result<PathBuf, BuildError> {
    let dir = fs.cache_dir().join("trees");
    let path = dir.join(digest.hex());
    if path.is_dir() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io("creating", &dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&dir)
        .map_err(|e| BuildError::io("creating a directory in", &dir, e))?;
    let dest = tmp.path().join("t");
    materialize(
        fs,
        digest,
        &dest,
        MaterializeOptions { copy: false },
        &NoProgress,
    )
    .map_err(|source| BuildError::Snapshot {
        what: format!("materializing tree {digest}"),
        source,
    })?;
    match std::fs::rename(&dest, &path) {
        Ok(()) => Ok(path),
        // Another build materialized the same tree meanwhile: use theirs.
        Err(_) if path.is_dir() => Ok(path),
        Err(e) => Err(BuildError::io("renaming into", &path, e)),
    }
}

/// Snapshots a directory the build will not see again, without leaving a
/// stat cache behind for it.
pub fn snapshot_temp(fs: &FsStore, dir: &Path) -> Result<Added, SnapshotError> {
    let added = snapshot(fs, dir, &SnapshotOptions::default(), &NoProgress);
    if let Ok(root) = std::fs::canonicalize(dir) {
        // The file name cairn-snapshot's stat cache uses for `root`.
        let key = Digest::of(root.as_os_str().as_encoded_bytes()).hex();
        let _ = std::fs::remove_file(fs.cache_dir().join("stat").join(&key[..32]));
    }
    added
}

/// Snapshots a build's `/out` (reached through the sandbox's descriptor,
/// seen once: no stat cache).
pub fn snapshot_output(fs: &FsStore, dir: &Path) -> Result<Added, SnapshotError> {
    let options = SnapshotOptions {
        seen_once: true,
        ..SnapshotOptions::default()
    };
    snapshot(fs, dir, &options, &NoProgress)
}

/// A fresh directory under `<store>/cache/<what>/`, removed when dropped.
pub fn scratch(fs: &FsStore, what: &str) -> Result<tempfile::TempDir, BuildError> {
    let dir = fs.cache_dir().join(what);
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io("creating", &dir, e))?;
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&dir)
        .map_err(|e| BuildError::io("creating a directory in", &dir, e))
}
