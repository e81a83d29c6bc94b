//! Merging a step's mounts into one REAPI input root.
//!
//! REAPI has one input tree per action, while a step mounts several trees
//! at several paths. The input root is the shallowest mount (or an empty
//! directory) with each deeper mount grafted in at its path: only the
//! `Directory` messages along that path are loaded, the entry at the end is
//! replaced by the mounted tree (missing directories on the way are
//! created empty), and the changed directories are written back. Trees are
//! never walked in full, so grafting costs the depth of the mount paths.

use cairn_digest::Digest;
use cairn_recipe::ResolvedMount;
use cairn_store::{FsStore, StoreError};
use cairn_tree::proto::Directory;
use cairn_tree::{decode_directory, encode_directory, DirectoryBuilder};

use crate::error::BuildError;

/// The input root holding every mount at its target. Mounts may come in any
/// order; a mount at `/` is the base.
pub fn input_root(fs: &FsStore, mounts: &[ResolvedMount]) -> Result<Digest, BuildError> {
    let mut sorted: Vec<&ResolvedMount> = mounts.iter().collect();
    // A parent path sorts before its children ("/a" < "/a/b").
    sorted.sort_by(|a, b| a.target.cmp(&b.target));
    let mut root = put(fs, &Directory::default())?;
    for m in sorted {
        let parts: Vec<&str> = m.target.split('/').filter(|p| !p.is_empty()).collect();
        root = graft(fs, root, &parts, m.tree)?;
    }
    Ok(root)
}

/// `root` with `tree` at `path` (replacing whatever was there).
fn graft(fs: &FsStore, root: Digest, path: &[&str], tree: Digest) -> Result<Digest, BuildError> {
    let Some((name, rest)) = path.split_first() else {
        return Ok(tree);
    };
    let dir = load(fs, &root)?;
    let child = dir
        .directories
        .iter()
        .find(|d| d.name == *name)
        .and_then(|d| d.digest.as_ref())
        .map(Digest::try_from)
        .transpose()
        .map_err(|e| BuildError::store("grafting", malformed(&root, e.to_string())))?;
    let child = match child {
        Some(c) => c,
        None => put(fs, &Directory::default())?,
    };
    let new_child = graft(fs, child, rest, tree)?;
    put(fs, &replace(dir, name, new_child, &root)?)
}

/// `dir` with the entry `name` (of any kind) replaced by a directory.
fn replace(dir: Directory, name: &str, sub: Digest, at: &Digest) -> Result<Directory, BuildError> {
    let mut b = DirectoryBuilder::new();
    for f in dir.files.into_iter().filter(|f| f.name != name) {
        b.file(f.name, digest_of(f.digest.as_ref(), at)?, f.is_executable);
    }
    for d in dir.directories.into_iter().filter(|d| d.name != name) {
        b.directory(d.name, digest_of(d.digest.as_ref(), at)?);
    }
    for s in dir.symlinks.into_iter().filter(|s| s.name != name) {
        b.symlink(s.name, s.target);
    }
    b.directory(name, sub);
    b.build().map_err(|source| BuildError::Tree {
        digest: *at,
        source,
    })
}

fn digest_of(d: Option<&cairn_tree::proto::Digest>, at: &Digest) -> Result<Digest, BuildError> {
    d.and_then(|d| Digest::try_from(d).ok()).ok_or_else(|| {
        BuildError::store(
            "grafting",
            malformed(at, "entry without a valid digest".into()),
        )
    })
}

fn load(fs: &FsStore, digest: &Digest) -> Result<Directory, BuildError> {
    let bytes = fs
        .read_blob_sync(digest)
        .map_err(|e| BuildError::store("grafting mounts", e))?
        .ok_or_else(|| BuildError::store("grafting mounts", StoreError::NotFound(*digest)))?;
    decode_directory(&bytes).map_err(|source| BuildError::Tree {
        digest: *digest,
        source,
    })
}

fn put(fs: &FsStore, dir: &Directory) -> Result<Digest, BuildError> {
    fs.put_bytes_sync(&encode_directory(dir))
        .map_err(|e| BuildError::store("grafting mounts", e))
}

fn malformed(digest: &Digest, reason: String) -> StoreError {
    StoreError::Malformed {
        what: format!("directory {digest}"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_snapshot::load_tree;

    fn mount(target: &str, tree: Digest) -> ResolvedMount {
        ResolvedMount {
            target: target.into(),
            tree,
            writable: false,
        }
    }

    fn file_tree(fs: &FsStore, name: &str, content: &[u8]) -> Digest {
        let blob = fs.put_bytes_sync(content).unwrap();
        let mut b = DirectoryBuilder::new();
        b.file(name, blob, false);
        put(fs, &b.build().unwrap()).unwrap()
    }

    #[test]
    fn deeper_mounts_are_grafted_into_shallower_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = FsStore::open(tmp.path().join("s")).unwrap();
        let base = file_tree(&fs, "src", b"a file the mount replaces");
        let src = file_tree(&fs, "main.c", b"int main;");
        let deep = file_tree(&fs, "x", b"x");
        let root = input_root(
            &fs,
            &[
                mount("/src/a/b", deep),
                mount("/", base),
                mount("/src", src),
            ],
        )
        .unwrap();
        let mut paths = Vec::new();
        load_tree(&fs, &root).unwrap().walk(|p, _, d| {
            for f in &d.files {
                paths.push(format!("{p}/{}", f.name));
            }
        });
        paths.sort();
        assert_eq!(paths, ["src/a/b/x", "src/main.c"]);
        // Deterministic: same mounts, same root.
        let again = input_root(
            &fs,
            &[
                mount("/src", src),
                mount("/", base),
                mount("/src/a/b", deep),
            ],
        );
        assert_eq!(again.unwrap(), root);
    }
}
