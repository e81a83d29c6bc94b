//! Writing a tree from the store out to a directory.
//!
//! By default every file gets its own inode ([`Placement::Copy`]): a
//! reflink where the file system can share blocks (`FICLONE`: btrfs, XFS,
//! bcachefs), else a copy, writable like any file. Nothing done to the
//! checkout can reach the store: the store's blob files are shared with
//! no one who might write them, and root, who ignores read-only modes and
//! runs CI and agents, cannot corrupt a blob by editing a checked-out file.
//!
//! [`Placement::Link`] hard-links files from the store instead (read-only,
//! as Nix store paths are; executables get their own copy, since a link
//! shares its mode with the blob). A checkout then costs a link per file
//! and no space, but the files *are* the store's: whoever can write a
//! read-only file writes the blob (`store verify` and the stat cache then
//! notice). [`Placement::MountOnly`] links executables too, to a read-only
//! executable copy in `cache/exec/` shared by every such tree: only for
//! trees nothing but a read-only mount will ever see (the input trees the
//! build mounts into its sandbox), because that copy is verified by
//! nobody. Across file systems both copy.
//!
//! Nothing is ever written outside the destination: entry names were
//! validated when the tree was decoded, the destination must be new or
//! empty, and symlinks are created only if every one of them, resolved
//! through the others (`cairn_tree::LinkTree`), stays inside.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_digest::Digest;
use cairn_store::{FsStore, StoreError};
use cairn_tree::proto::Directory;
use cairn_tree::{decode_directory, LinkTree};
use rayon::prelude::*;

use crate::error::SnapshotError;
use crate::Progress;

/// How files reach the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Each file its own, writable inode: a reflink where the file system
    /// supports one, else a copy. Nothing done to it reaches the store.
    #[default]
    Copy,
    /// Read-only hard links into the store: no copying, no space, but a
    /// write to a file (by root, who ignores its mode) is a write to the
    /// store's blob. Executables are copies.
    Link,
    /// Hard links for every file, executables to a shared read-only copy
    /// in `cache/exec/`: for a tree only ever mounted read-only.
    MountOnly,
}

/// How to materialize.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaterializeOptions {
    /// How files are placed.
    pub placement: Placement,
}

/// Every directory of a tree, loaded and validated.
#[derive(Debug, Clone)]
pub struct TreeListing {
    /// The root directory's digest.
    pub root: Digest,
    /// Each directory by digest.
    pub dirs: HashMap<Digest, Directory>,
}

impl TreeListing {
    /// Calls `f` with (relative path, depth, directory) for every directory,
    /// parents before children.
    pub fn walk(&self, mut f: impl FnMut(&str, usize, &Directory)) {
        let mut stack = vec![(String::new(), 0usize, self.root)];
        while let Some((path, depth, digest)) = stack.pop() {
            let dir = &self.dirs[&digest];
            f(&path, depth, dir);
            for sub in dir.directories.iter().rev() {
                let d =
                    Digest::try_from(sub.digest.as_ref().expect("validated")).expect("validated");
                stack.push((join(&path, &sub.name), depth + 1, d));
            }
        }
    }
}

/// Loads and validates every directory of the tree `root`.
pub fn load_tree(store: &FsStore, root: &Digest) -> Result<TreeListing, SnapshotError> {
    let mut dirs = HashMap::new();
    let mut pending = vec![*root];
    while let Some(digest) = pending.pop() {
        if dirs.contains_key(&digest) {
            continue;
        }
        let bytes = store
            .read_blob_sync(&digest)?
            .ok_or(StoreError::NotFound(digest))?;
        let dir =
            decode_directory(&bytes).map_err(|source| SnapshotError::BadTree { digest, source })?;
        for sub in &dir.directories {
            pending.push(
                Digest::try_from(sub.digest.as_ref().expect("validated")).expect("validated"),
            );
        }
        dirs.insert(digest, dir);
    }
    Ok(TreeListing { root: *root, dirs })
}

/// Writes the tree `root` to `dest` (which must not exist or be empty);
/// returns the number of files written.
pub fn materialize(
    store: &FsStore,
    root: &Digest,
    dest: &Path,
    options: MaterializeOptions,
    progress: &dyn Progress,
) -> Result<u64, SnapshotError> {
    prepare_destination(dest)?;
    let tree = load_tree(store, root)?;
    let mut files: Vec<(PathBuf, Digest, bool)> = Vec::new();
    let mut symlinks: Vec<(PathBuf, String)> = Vec::new();
    let mut links = LinkTree::new();
    let mut problem = None;
    tree.walk(|rel, _depth, dir| {
        let here = dest.join(rel);
        if !rel.is_empty() {
            if let Err(e) = std::fs::create_dir(&here) {
                problem.get_or_insert(SnapshotError::io("creating", &here, e));
            }
        }
        for f in &dir.files {
            let d = Digest::try_from(f.digest.as_ref().expect("validated")).expect("validated");
            files.push((here.join(&f.name), d, f.is_executable));
        }
        for s in &dir.symlinks {
            links.insert(&join(rel, &s.name), &s.target);
            symlinks.push((here.join(&s.name), s.target.clone()));
        }
    });
    if let Some(e) = problem {
        return Err(e);
    }
    // Resolved through the tree's other symlinks, not judged one by one.
    if let Some(escape) = links.first_escape() {
        return Err(SnapshotError::EscapingSymlink {
            path: dest.join(&escape.path),
            target: escape.target,
        });
    }
    cairn_store::io_pool().install(|| {
        files.par_iter().try_for_each(|(path, digest, exec)| {
            place_file(store, digest, *exec, path, options)?;
            progress.advance(1, digest.size());
            Ok::<_, SnapshotError>(())
        })
    })?;
    for (path, target) in &symlinks {
        std::os::unix::fs::symlink(target, path)
            .map_err(|e| SnapshotError::io("creating symlink", path, e))?;
    }
    Ok(files.len() as u64)
}

fn prepare_destination(dest: &Path) -> Result<(), SnapshotError> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(SnapshotError::DestinationNotEmpty(dest.to_path_buf())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|e| SnapshotError::io("creating", dest, e))
        }
        Err(_) if dest.exists() => Err(SnapshotError::DestinationNotEmpty(dest.to_path_buf())),
        Err(e) => Err(SnapshotError::io("opening", dest, e)),
    }
}

fn place_file(
    store: &FsStore,
    digest: &Digest,
    exec: bool,
    dest: &Path,
    options: MaterializeOptions,
) -> Result<(), SnapshotError> {
    let blob = store.blob_path(digest);
    match std::fs::symlink_metadata(&blob) {
        Ok(m) if m.len() == digest.size() => {}
        _ => return Err(StoreError::NotFound(*digest).into()),
    }
    let link = match options.placement {
        Placement::Copy => false,
        Placement::Link => !exec,
        Placement::MountOnly => true,
    };
    if link && link_file(store, digest, exec, dest)? {
        return Ok(());
    }
    copy_file(&blob, dest, exec)
}

/// Hard-links the file; `false` if the destination is on another file
/// system (the caller copies then).
fn link_file(
    store: &FsStore,
    digest: &Digest,
    exec: bool,
    dest: &Path,
) -> Result<bool, SnapshotError> {
    loop {
        let source = if exec {
            executable_copy(store, digest)?
        } else {
            store.blob_path(digest)
        };
        match std::fs::hard_link(&source, dest) {
            Ok(()) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                return Ok(false)
            }
            // A collection removed the executable copy meanwhile: make it again.
            Err(e) if exec && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SnapshotError::io("linking", dest, e)),
        }
    }
}

/// Gives `dest` its own copy of `source`'s bytes: a reflink (shared
/// blocks, copied on write) where the file system has them, else a copy.
fn copy_file(source: &Path, dest: &Path, exec: bool) -> Result<(), SnapshotError> {
    let mut from = File::open(source).map_err(|e| SnapshotError::io("opening", source, e))?;
    let mode = if exec { 0o755 } else { 0o644 };
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dest)
        .map_err(|e| SnapshotError::io("creating", dest, e))?;
    if rustix::fs::ioctl_ficlone(&to, &from).is_err() {
        // No reflinks here (ext4, tmpfs, another file system): copy
        // (`copy_file_range`, in the kernel).
        std::io::copy(&mut from, &mut to).map_err(|e| SnapshotError::io("copying to", dest, e))?;
    }
    to.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| SnapshotError::io("setting mode of", dest, e))
}

/// A read-only executable copy of a blob in the store's cache, made once.
fn executable_copy(store: &FsStore, digest: &Digest) -> Result<PathBuf, SnapshotError> {
    let dir = store.cache_dir().join("exec");
    let path = dir.join(digest.hex());
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() == digest.size()) {
        return Ok(path);
    }
    let (tmp, mut out) = store.temp_file_in(&dir)?;
    let blob = store.blob_path(digest);
    let copied = File::open(&blob)
        .and_then(|mut from| std::io::copy(&mut from, &mut out))
        .and_then(|_| out.set_permissions(std::fs::Permissions::from_mode(0o555)))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(SnapshotError::io("copying to", &path, e));
    }
    Ok(path)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
