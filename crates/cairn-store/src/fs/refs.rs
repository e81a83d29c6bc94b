//! Refs of the local store: one file per ref, compare-and-swap under
//! `flock(2)` on a lock file beside it, new values renamed into place.
//!
//! The file starts with a `v<version>` line; versions are a counter that
//! starts from the clock when a ref is created, so a ref deleted and
//! created again does not reuse an old version (no ABA for a slow writer).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rustix::fs::{flock, FlockOperation};

use super::FsStore;
use crate::error::{Result, StoreError};
use crate::refs::{check_ref_size, conflict, RefName, RefStore, RefWatch, Version, Versioned};

impl FsStore {
    fn ref_path(&self, name: &RefName) -> PathBuf {
        self.root.join("refs").join(name.as_str())
    }

    fn read_ref(&self, name: &RefName) -> Result<Option<(u64, Vec<u8>)>> {
        let path = self.ref_path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => return Ok(None),
            Err(e) => return Err(StoreError::io("reading", path, e)),
        };
        parse_ref_file(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::Malformed {
                what: format!("ref file {}", path.display()),
                reason: "missing its version line".into(),
            })
    }

    /// Refuses a ref whose file would be a directory of other refs, or
    /// whose directory is a ref's file, before anything is created (else
    /// the write fails deep in the file system, and the lock file could be
    /// left inside the other ref's directory).
    fn check_ref_path(&self, name: &RefName) -> Result<()> {
        let taken = |other: String| StoreError::RefPathTaken {
            name: name.to_string(),
            other,
        };
        let mut path = self.root.join("refs");
        let segments: Vec<&str> = name.as_str().split('/').collect();
        let (_, parents) = segments.split_last().expect("a name has a segment");
        for (i, segment) in parents.iter().enumerate() {
            path.push(segment);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                return Err(taken(segments[..=i].join("/")));
            }
        }
        let own = self.ref_path(name);
        if std::fs::symlink_metadata(&own).is_ok_and(|m| m.is_dir()) {
            let mut below = Vec::new();
            collect_refs(&self.root.join("refs"), &own, &mut below)?;
            below.sort();
            return Err(taken(
                below.first().map_or(format!("{name}/…"), |n| n.to_string()),
            ));
        }
        Ok(())
    }

    /// Holds the ref's lock for the duration of `f`.
    fn with_lock<T>(&self, name: &RefName, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.ref_path(name);
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::io("creating", parent, e))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io("opening", &lock_path, e))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io("locking", &lock_path, e.into()))?;
        f() // the lock is released when `lock` is closed
    }

    fn write_ref(&self, name: &RefName, version: u64, value: &[u8]) -> Result<()> {
        // Blobs a ref names must be durable before the ref is.
        self.sync()?;
        let (tmp, mut f) = super::temp::create_locked_file(|| self.tmp_path(), 0o644)?;
        let write = |f: &mut File| -> io::Result<()> {
            f.write_all(format!("v{version}\n").as_bytes())?;
            f.write_all(value)?;
            f.sync_all()
        };
        if let Err(e) = write(&mut f) {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::io("writing", &tmp, e));
        }
        let dest = self.ref_path(name);
        std::fs::rename(&tmp, &dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::io("renaming into", &dest, e)
        })?;
        drop(f); // held (and locked) until it has its name
        sync_parent(&dest)
    }
}

fn parse_ref_file(bytes: &[u8]) -> Option<(u64, Vec<u8>)> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let version = std::str::from_utf8(bytes[..nl].strip_prefix(b"v")?)
        .ok()?
        .parse()
        .ok()?;
    Some((version, bytes[nl + 1..].to_vec()))
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().expect("ref paths have a parent");
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing", parent, e))
}

fn next_version(current: Option<u64>) -> u64 {
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    current.map_or(clock, |v| v + 1)
}

fn version_of(v: u64) -> Version {
    Version(v.to_string())
}

#[async_trait]
impl RefStore for FsStore {
    async fn get(&self, name: &RefName) -> Result<Option<Versioned>> {
        Ok(self.read_ref(name)?.map(|(v, value)| Versioned {
            value,
            version: version_of(v),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<RefName>> {
        let refs_root = self.root.join("refs");
        // Walk only below the deepest directory the prefix names.
        let start = match prefix.rfind('/') {
            Some(i) => refs_root.join(&prefix[..i]),
            None => refs_root.clone(),
        };
        let mut names = Vec::new();
        collect_refs(&refs_root, &start, &mut names)?;
        names.retain(|n: &RefName| n.as_str().starts_with(prefix));
        names.sort();
        Ok(names)
    }

    /// A walk of the ref directories in name order from the cursor on,
    /// which reads only the directories on the way and stops at `limit`
    /// (`fs/page.rs`), rather than the whole list cut.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<Vec<RefName>> {
        super::page::page(
            &self.root.join("refs"),
            prefix,
            after.map(RefName::as_str),
            limit,
        )
    }

    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> Result<Version> {
        check_ref_size(name, &value)?;
        self.check_ref_path(name)?;
        self.with_lock(name, || {
            let current = self.read_ref(name)?.map(|(v, _)| v);
            let found = current.map(version_of);
            if found.as_ref() != expected {
                return Err(conflict(name, expected, found.as_ref()));
            }
            let version = next_version(current);
            self.write_ref(name, version, &value)?;
            Ok(version_of(version))
        })
    }

    async fn delete(&self, name: &RefName, expected: &Version) -> Result<()> {
        self.with_lock(name, || {
            let found = self.read_ref(name)?.map(|(v, _)| version_of(v));
            if found.as_ref() != Some(expected) {
                return Err(conflict(name, Some(expected), found.as_ref()));
            }
            let path = self.ref_path(name);
            std::fs::remove_file(&path).map_err(|e| StoreError::io("deleting", &path, e))?;
            sync_parent(&path)
        })
    }

    async fn watch(&self, prefix: &str) -> Result<Option<RefWatch>> {
        super::watch::watch_refs(self.root.join("refs"), prefix).map(Some)
    }
}

fn collect_refs(refs_root: &Path, dir: &Path, out: &mut Vec<RefName>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(StoreError::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| StoreError::io("reading", &path, e))?;
        if file_type.is_dir() {
            collect_refs(refs_root, &path, out)?;
        } else if let Some(name) = ref_name_of(refs_root, &path) {
            out.push(name);
        }
    }
    Ok(())
}

/// The ref a file under `refs/` stands for (`None` for lock files).
pub(super) fn ref_name_of(refs_root: &Path, path: &Path) -> Option<RefName> {
    let rel = path.strip_prefix(refs_root).ok()?.to_str()?;
    RefName::new(rel).ok()
}
