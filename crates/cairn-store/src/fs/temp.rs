//! Temporary files and directories that say whether their writer lives.
//!
//! Everything half-written in the store — a blob or ref in `tmp/`, a stat
//! cache or executable copy being written in `cache/`, a tree being
//! materialized — is created under a temporary name and held under an
//! exclusive `flock(2)` for as long as its writer works on it. A writer
//! killed with `-9` loses the lock with its life, so a sweep ([`sweep`],
//! run by every collection and, for `tmp/`, whenever the store is opened)
//! removes exactly what no living process holds, whatever the pid
//! namespace the writer ran in.
//!
//! A sweep may lock a file in the instant between its creation and its
//! writer's lock; the writer then finds its file unlinked (`fstat` says no
//! links) and creates another, so a sweep never removes live work.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::FsStore;
use crate::error::{Result, StoreError};

/// The prefix of every temporary name under `cache/`.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Creates the file `path` (which must not exist) with `mode`, locked.
/// `path` comes from `fresh`, called again if a sweep took the first one.
pub(super) fn create_locked_file(
    mut fresh: impl FnMut() -> PathBuf,
    mode: u32,
) -> Result<(PathBuf, File)> {
    loop {
        let path = fresh();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| StoreError::io("creating", &path, e))?;
        if lock_and_check(&file, &path)? {
            return Ok((path, file));
        }
    }
}

/// Locks a file or directory just created; `false` if a sweep removed it
/// first.
fn lock_and_check(file: &File, path: &Path) -> Result<bool> {
    flock(file, FlockOperation::LockExclusive)
        .map_err(|e| StoreError::io("locking", path, e.into()))?;
    let st = rustix::fs::fstat(file).map_err(|e| StoreError::io("reading", path, e.into()))?;
    Ok(st.st_nlink > 0)
}

/// A temporary directory under the store held by its writer, removed when
/// dropped (unless kept with [`keep`](Self::keep)).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _lock: File,
    keep: bool,
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_tree(&self.path);
        }
    }
}

impl TempDir {
    /// Leaves the directory in place when dropped (its lock still ends).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl FsStore {
    /// A new, locked temporary file `<dir>/.tmp-…` (creating `dir`), for a
    /// writer that renames it into place when done. A collection removes it
    /// if its writer dies first.
    pub fn temp_file_in(&self, dir: &Path) -> Result<(PathBuf, File)> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        create_locked_file(|| self.unique_in(dir), 0o644)
    }

    /// A new, locked temporary directory `<dir>/.tmp-…` (creating `dir`).
    pub fn temp_dir_in(&self, dir: &Path) -> Result<TempDir> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        loop {
            let path = self.unique_in(dir);
            std::fs::create_dir(&path).map_err(|e| StoreError::io("creating", &path, e))?;
            let lock = match File::open(&path) {
                Ok(lock) => lock,
                // A sweep took it between its creation and this open.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("opening", &path, e)),
            };
            if lock_and_check(&lock, &path)? {
                return Ok(TempDir {
                    path,
                    _lock: lock,
                    keep: false,
                });
            }
        }
    }

    fn unique_in(&self, dir: &Path) -> PathBuf {
        let name = self
            .tmp_path()
            .file_name()
            .expect("temp paths have a name")
            .to_owned();
        dir.join(format!("{TEMP_PREFIX}{}", name.to_string_lossy()))
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Files and directories removed.
    pub entries: u64,
    /// The bytes their files held.
    pub bytes: u64,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, other: Self) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

/// Removes every entry of `dir` (those named `.tmp-…` only, if
/// `prefixed_only`) that no living writer holds.
pub fn sweep(dir: &Path, prefixed_only: bool) -> Result<Swept> {
    let mut swept = Swept::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(swept),
        Err(e) => return Err(StoreError::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        if prefixed_only && !temp {
            continue;
        }
        if let Some(bytes) = remove_if_stale(&entry.path())? {
            swept.entries += 1;
            swept.bytes += bytes;
        }
    }
    Ok(swept)
}

/// Removes `path` (a file or a directory tree) if no process holds its
/// lock; returns the bytes its files held, `None` if it is live or gone.
pub fn remove_if_stale(path: &Path) -> Result<Option<u64>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc_nofollow())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A symlink or something else no writer of ours made: not ours.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(None)
        }
        Err(e) => return Err(StoreError::io("opening", path, e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
        Err(e) => return Err(StoreError::io("locking", path, e.into())),
    }
    let bytes = size_of_tree(path);
    remove_tree(path).map_err(|e| StoreError::io("removing", path, e))?;
    Ok(Some(bytes))
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Removes a file, or a directory and everything in it.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bytes the files under `path` hold whose last link this is (what
/// removing them frees).
pub(crate) fn size_of_tree(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.nlink() <= 1 { meta.len() } else { 0 };
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|e| size_of_tree(&e.path())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_temp_survives_a_sweep_and_a_dead_one_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("s")).unwrap();
        let dir = store.cache_dir().join("x");
        let (live, _file) = store.temp_file_in(&dir).unwrap();
        let held = store.temp_dir_in(&dir).unwrap();
        // A file no one holds, as a writer killed with -9 leaves it.
        let dead = dir.join(".tmp-dead");
        std::fs::write(&dead, b"12345").unwrap();
        let other = dir.join("kept");
        std::fs::write(&other, b"x").unwrap();
        let swept = sweep(&dir, true).unwrap();
        assert_eq!(
            swept,
            Swept {
                entries: 1,
                bytes: 5
            }
        );
        assert!(live.exists() && held.path().exists() && other.exists());
        assert!(!dead.exists());
        let path = held.path().to_path_buf();
        drop(held);
        assert!(!path.exists());
    }

    /// Parallel steps of one build each make a scratch directory after
    /// sweeping dead ones: a sweep that lands between a directory's
    /// creation and its lock must cost a retry, not the step.
    #[test]
    fn a_sweep_racing_a_new_temp_dir_never_fails_its_creation() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("s")).unwrap();
        let dir = store.cache_dir().join("build");
        let done = std::sync::atomic::AtomicBool::new(false);
        let failed = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = sweep(&dir, true);
                }
            });
            let failed = (0..3000).find_map(|_| match store.temp_dir_in(&dir) {
                Ok(held) => (!held.path().is_dir()).then(|| "a temp dir that is gone".to_owned()),
                Err(e) => Some(e.to_string()),
            });
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            failed
        });
        assert_eq!(failed, None, "a sweep made a new temp dir fail");
    }
}
