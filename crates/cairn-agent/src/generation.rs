//! Generations: releases materialized read-only side by side, and the
//! `current` symlink switched between them atomically (as NixOS switches
//! profiles).
//!
//! A generation is written under `generations/.tmp-<n>` and renamed to
//! `generations/<n>-<release hex>` only when complete, so a directory with
//! a final name is always whole; a crash leaves a temporary one that the
//! next start removes ([`clean_temporaries`]). Files are hard links into
//! the local store (read-only, like the blobs) and directories lose their
//! write bits, so the service cannot change its own code; as root the
//! agent also mounts the state directory read-only for the service
//! ([`crate::process::spawn`]).
//!
//! `current` is replaced by creating `current.tmp` and renaming it over
//! `current` (rename is atomic), then syncing the directory. Its target is
//! relative, so the state directory can be moved.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn_digest::Digest;
use cairn_snapshot::{MaterializeOptions, NoProgress, Placement};
use cairn_store::FsStore;

use crate::state::{sync_dir, Generation, Layout};

/// Why a generation could not be made or switched to.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// Writing the tree out failed.
    #[error("materializing generation {number}: {source}")]
    Materialize {
        /// The generation.
        number: u64,
        /// What failed.
        #[source]
        source: cairn_snapshot::SnapshotError,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> GenerationError {
    let path = path.to_path_buf();
    move |source| GenerationError::Io {
        action,
        path,
        source,
    }
}

/// The directory of `g`.
pub fn dir(layout: &Layout, g: &Generation) -> PathBuf {
    layout.generations().join(g.dir_name())
}

/// Writes `artifact` from `store` out as generation `number` of `release`;
/// returns its directory. An existing complete directory is reused.
pub fn materialize(
    store: &FsStore,
    layout: &Layout,
    number: u64,
    release: &Digest,
    artifact: &Digest,
) -> Result<PathBuf, GenerationError> {
    let parent = layout.generations();
    std::fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
    let done = parent.join(format!("{number}-{}", release.hex()));
    if done.is_dir() {
        return Ok(done);
    }
    let tmp = parent.join(format!(".tmp-{number}"));
    if tmp.exists() {
        remove_tree(&tmp)?;
    }
    cairn_snapshot::materialize(
        store,
        artifact,
        &tmp,
        MaterializeOptions {
            placement: Placement::Link,
        },
        &NoProgress,
    )
    .map_err(|source| GenerationError::Materialize { number, source })?;
    make_read_only(&tmp)?;
    std::fs::rename(&tmp, &done).map_err(io_err("renaming", &tmp))?;
    sync_dir(&parent).map_err(io_err("syncing", &parent))?;
    Ok(done)
}

/// Points `current` at `g`'s directory, atomically and durably.
pub fn switch(layout: &Layout, g: &Generation) -> Result<(), GenerationError> {
    let tmp = layout.root().join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    let target = Path::new("generations").join(g.dir_name());
    std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("creating", &tmp))?;
    std::fs::rename(&tmp, layout.current()).map_err(io_err("renaming", &tmp))?;
    sync_dir(layout.root()).map_err(io_err("syncing", layout.root()))
}

/// The generation number `current` points at, if any.
pub fn current(layout: &Layout) -> Option<u64> {
    let target = std::fs::read_link(layout.current()).ok()?;
    let name = target.file_name()?.to_str()?;
    name.split_once('-')?.0.parse().ok()
}

/// Removes `g`'s directory.
pub fn remove(layout: &Layout, g: &Generation) -> Result<(), GenerationError> {
    let d = dir(layout, g);
    if d.exists() {
        remove_tree(&d)?;
    }
    Ok(())
}

/// Removes half-written generations left by a crash.
pub fn clean_temporaries(layout: &Layout) -> Result<(), GenerationError> {
    let Ok(entries) = std::fs::read_dir(layout.generations()) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            remove_tree(&e.path())?;
        }
    }
    Ok(())
}

/// Takes the write bits off every file and directory below `root`.
fn make_read_only(root: &Path) -> Result<(), GenerationError> {
    let meta = std::fs::symlink_metadata(root).map_err(io_err("reading", root))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        let entries = std::fs::read_dir(root).map_err(io_err("listing", root))?;
        for e in entries {
            make_read_only(&e.map_err(io_err("listing", root))?.path())?;
        }
    }
    let mode = meta.permissions().mode() & !0o222;
    if mode != meta.permissions().mode() & 0o7777 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("making read-only", root))?;
    }
    Ok(())
}

/// Removes a read-only tree: directories get their owner's write bit back
/// first (files are links; removing a link needs only its directory).
fn remove_tree(root: &Path) -> Result<(), GenerationError> {
    fn writable(dir: &Path) -> io::Result<()> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                writable(&e.path())?;
            }
        }
        Ok(())
    }
    writable(root).map_err(io_err("making writable", root))?;
    std::fs::remove_dir_all(root).map_err(io_err("removing", root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::{BlobStoreExt, Store};

    #[tokio::test]
    async fn generations_are_whole_read_only_and_switched_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("bin/app"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("bin/app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let fs = FsStore::open(layout.store()).unwrap();
        let added = cairn_snapshot::snapshot(&fs, &src, &Default::default(), &NoProgress).unwrap();
        let store = Store::local(fs);
        let release = store.blobs.put_bytes(b"release".to_vec()).await.unwrap();
        let fs = store.local.as_ref().unwrap();
        let g1 = materialize(fs, &layout, 1, &release, &added.digest).unwrap();
        assert!(g1.join("bin/app").is_file());
        let mode = std::fs::metadata(g1.join("bin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "directories are read-only");
        let g = Generation {
            number: 1,
            release,
            version: "1".into(),
            sequence: 1,
            artifact: added.digest,
            run: serde_json::Value::Null,
            served: false,
        };
        assert_eq!(current(&layout), None);
        switch(&layout, &g).unwrap();
        assert_eq!(current(&layout), Some(1));
        assert!(layout.current().join("bin/app").is_file());
        // A crash mid-materialization leaves a temporary that start-up removes.
        std::fs::create_dir_all(layout.generations().join(".tmp-2/x")).unwrap();
        clean_temporaries(&layout).unwrap();
        assert!(!layout.generations().join(".tmp-2").exists());
        remove(&layout, &g).unwrap();
        assert!(!g1.exists());
    }
}
