//! Writing a tree from the store out to a directory.
//!
//! Files are hard-linked from the store when it is on the same file system
//! (read-only, as Nix store paths are: a checkout costs a link per file and
//! no copying); executable files link to a read-only executable copy kept
//! in the store's `cache/exec/`, since a link shares its mode with the blob.
//! Elsewhere, or when asked, files are copied and made writable.
//!
//! Nothing is ever written outside the destination: entry names were
//! validated when the tree was decoded, the destination must be new or
//! empty, and symlinks are created only if every one of them, resolved
//! through the others (`cairn_tree::LinkTree`), stays inside.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cairn_digest::Digest;
use cairn_store::{FsStore, StoreError};
use cairn_tree::proto::Directory;
use cairn_tree::{decode_directory, LinkTree};
use rayon::prelude::*;

use crate::error::SnapshotError;
use crate::Progress;

/// How to materialize.
#[derive(Debug, Clone, Copy)]
pub struct MaterializeOptions {
    /// Copy files (writable) instead of hard-linking them from the store.
    pub copy: bool,
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
    if !options.copy {
        let source = if exec {
            executable_copy(store, digest)?
        } else {
            blob.clone()
        };
        match std::fs::hard_link(&source, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {}
            Err(e) => return Err(SnapshotError::io("linking", dest, e)),
        }
    }
    std::fs::copy(&blob, dest).map_err(|e| SnapshotError::io("copying to", dest, e))?;
    let mode = if exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SnapshotError::io("setting mode of", dest, e))
}

/// A read-only executable copy of a blob in the store's cache, made once.
fn executable_copy(store: &FsStore, digest: &Digest) -> Result<PathBuf, SnapshotError> {
    let dir = store.cache_dir().join("exec");
    let path = dir.join(digest.hex());
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() == digest.size()) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::io("creating", &dir, e))?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), digest.hex()));
    std::fs::copy(store.blob_path(digest), &tmp)
        .map_err(|e| SnapshotError::io("copying to", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))
        .map_err(|e| SnapshotError::io("setting mode of", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| SnapshotError::io("renaming into", &path, e))?;
    Ok(path)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
