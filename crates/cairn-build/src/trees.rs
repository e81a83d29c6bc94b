//! Moving trees between the store and directories the build uses.
//!
//! Input trees are materialized once into
//! `<store>/cache/trees/<hex>.mtime1/tree` and then bind-mounted read-only
//! into every sandbox that mounts them: sandbox setup costs the same for a
//! 1 MiB tree as for a 1 GiB toolchain. A tree is materialized into a
//! temporary directory and renamed into place, so a crash or a concurrent
//! build never leaves a half-written tree under its final name.
//!
//! **What a step sees of its inputs' times.** Every file, directory and
//! symlink of a materialized tree has its access and modification times
//! set to [`INPUT_MTIME`] (1 s after the epoch, as in Nix's store), files
//! mode 0444 or 0555: a tree records no times, so the step sees the same
//! metadata from any store, checkout or machine. That is why each file is
//! its own inode (a reflink where the file system has them, else a copy):
//! a hard link would share its times with the store's blob, whose mtime
//! garbage collection and claims read and which differs from store to
//! store.
//!
//! A build holds each tree it mounts ([`HeldTree`]: a shared lock on the
//! `<hex>.mtime1` directory, whose own mtime says when a build last used it)
//! until its step ends, and marks it used; a collection removes only trees
//! nobody holds and nobody used within its grace period (it reads the hash
//! before the first `.` of the name).
//!
//! Directories the build snapshots only once (a step's `/out`, an unpacked
//! archive) are snapshotted with [`snapshot_temp`], which drops the stat
//! cache the snapshot would otherwise keep for that never-again-seen path.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cairn_digest::Digest;
use cairn_snapshot::{
    materialize, snapshot, Added, MaterializeOptions, NoProgress, Placement, SnapshotError,
    SnapshotOptions,
};
use cairn_store::fs::TempDir;
use cairn_store::FsStore;
use rustix::fs::{flock, FlockOperation};

use crate::error::BuildError;

/// How stale a tree's "last used" time may get before a build renews it.
const MARK_USED_AFTER: Duration = Duration::from_secs(600);

/// The access and modification time (seconds after the epoch) of every
/// entry of a materialized input tree. 1 rather than 0, as Nix's store:
/// some tools take a zero time for "unknown".
pub const INPUT_MTIME: i64 = 1;

/// The suffix of a materialized tree's directory under `cache/trees/`:
/// `<hex>` alone was the layout whose files were links into the store.
const ENTRY_SUFFIX: &str = ".mtime1";

/// The tree's own directory inside its `cache/trees/` entry.
const TREE_DIR: &str = "tree";

/// A materialized tree in use: no collection removes it while held.
#[derive(Debug)]
pub struct HeldTree {
    path: PathBuf,
    _lock: File,
}

impl HeldTree {
    /// The read-only directory holding the tree.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Gives every entry under `root` (itself included) the time
/// [`INPUT_MTIME`], and every file mode 0444 or, executable, 0555.
/// Children first: setting a child's times leaves its directory's alone.
fn pin_times_and_modes(root: &Path) -> Result<(), BuildError> {
    use rustix::fs::{chmod, utimensat, AtFlags, Mode, Timestamps, CWD};
    use std::os::unix::fs::PermissionsExt;
    let at = rustix::fs::Timespec {
        tv_sec: INPUT_MTIME,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: at,
        last_modification: at,
    };
    let meta = std::fs::symlink_metadata(root).map_err(|e| BuildError::io("reading", root, e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(root).map_err(|e| BuildError::io("reading", root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io("reading", root, e))?;
            pin_times_and_modes(&entry.path())?;
        }
    } else if meta.is_file() {
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o555
        } else {
            0o444
        };
        chmod(root, Mode::from_raw_mode(mode))
            .map_err(|e| BuildError::io("setting the mode of", root, e.into()))?;
    }
    utimensat(CWD, root, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| BuildError::io("setting the times of", root, e.into()))
}

/// The read-only directory holding tree `digest`, materializing it first
/// if no earlier build did, held until the returned value is dropped.
pub fn materialized(fs: &FsStore, digest: &Digest) -> Result<HeldTree, BuildError> {
    // Absolute: it becomes a sandbox mount's source (a store given as a
    // relative path is relative to this process's directory).
    let dir = fs.cache_dir().join("trees");
    let dir = std::path::absolute(&dir).map_err(|e| BuildError::io("resolving", &dir, e))?;
    let path = dir.join(format!("{}{ENTRY_SUFFIX}", digest.hex()));
    loop {
        if let Some(held) = hold(&path)? {
            return Ok(held);
        }
        let tmp = fs
            .temp_dir_in(&dir)
            .map_err(|e| BuildError::store(format!("materializing tree {digest}"), e))?;
        let dest = tmp.path().join("t");
        let tree = dest.join(TREE_DIR);
        materialize(
            fs,
            digest,
            &tree,
            MaterializeOptions {
                placement: Placement::Copy,
            },
            &NoProgress,
        )
        .map_err(|source| BuildError::Snapshot {
            what: format!("materializing tree {digest}"),
            source,
        })?;
        pin_times_and_modes(&tree)?;
        match std::fs::rename(&dest, &path) {
            Ok(()) => {}
            // Another build materialized the same tree meanwhile: use theirs.
            Err(_) if path.is_dir() => {}
            Err(e) => return Err(BuildError::io("renaming into", &path, e)),
        }
    }
}

/// Locks the tree at `path` shared; `None` if it is not there (or a
/// collection removed it before the lock was granted).
fn hold(path: &Path) -> Result<Option<HeldTree>, BuildError> {
    let lock = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BuildError::io("opening", path, e)),
    };
    flock(&lock, FlockOperation::LockShared)
        .map_err(|e| BuildError::io("locking", path, e.into()))?;
    let held = rustix::fs::fstat(&lock).map_err(|e| BuildError::io("reading", path, e.into()))?;
    let here = rustix::fs::stat(path).ok();
    if held.st_nlink == 0 || here.is_none_or(|h| h.st_ino != held.st_ino) {
        return Ok(None);
    }
    let modified = lock.metadata().and_then(|m| m.modified());
    if modified.is_ok_and(|m| m.elapsed().unwrap_or_default() > MARK_USED_AFTER) {
        // Mark it used (best effort), so a collection keeps it a while.
        let _ = lock.set_modified(SystemTime::now());
    }
    Ok(Some(HeldTree {
        path: path.join(TREE_DIR),
        _lock: lock,
    }))
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
/// The ones a killed `cairn` left there (a step's log among them, up to
/// `limits.log`) are removed first: their lock is free. Only live
/// builds' scratch directories are ever there, so this costs a short
/// directory listing.
pub fn scratch(fs: &FsStore, what: &str) -> Result<TempDir, BuildError> {
    let dir = swept_scratch_dir(fs, what);
    fs.temp_dir_in(&dir)
        .map_err(|e| BuildError::store(format!("creating a scratch directory for {what}"), e))
}

/// A fresh locked file under `<store>/cache/<what>/` (the caller removes
/// it), after the same sweep as [`scratch`].
pub fn scratch_file(fs: &FsStore, what: &str) -> Result<(PathBuf, std::fs::File), BuildError> {
    let dir = swept_scratch_dir(fs, what);
    fs.temp_file_in(&dir)
        .map_err(|e| BuildError::store(format!("creating a scratch file for {what}"), e))
}

/// `<store>/cache/<what>/`, without what a killed `cairn` left there.
fn swept_scratch_dir(fs: &FsStore, what: &str) -> PathBuf {
    let dir = fs.cache_dir().join(what);
    if let Err(e) = cairn_store::fs::temp::sweep(&dir, true) {
        tracing::debug!(error = %e, dir = %dir.display(), "leftover scratch not swept");
    }
    dir
}
