//! The closure of an action result's output directories: every file a
//! `Tree` blob or a `Directory` (and the directories below it) lists.
//!
//! An entry naming an output directory whose files are missing is a hit
//! no client can use, as one naming a missing output file is; checking
//! only the blobs the entry names directly would let it through. The walk
//! is bounded ([`MAX_DIRECTORIES`], [`MAX_FILES`], [`MAX_TREE_BLOB`]): an
//! output too large to check is refused (400) rather than taken on
//! trust, and a writer can make the server read no more than that.

use std::collections::HashSet;

use cairn_digest::Digest;
use cairn_store::BlobStoreExt;
use cairn_tree::proto::{self, Directory, Tree};
use prost::Message;

use crate::error::ApiError;

/// The most directories one entry's outputs may hold (all outputs
/// together).
pub const MAX_DIRECTORIES: usize = 100_000;

/// The most distinct files one entry's outputs may hold.
pub const MAX_FILES: usize = 1_000_000;

/// The largest `Tree` or `Directory` blob read.
pub const MAX_TREE_BLOB: u64 = 64 << 20;

/// Digests per `has_many` call.
const HAS_BATCH: usize = 10_000;

/// What one output directory names, to be found in the store.
#[derive(Default)]
struct Walk {
    directories: usize,
    files: HashSet<Digest>,
}

/// Refuses (400) an entry for action `hash` whose output directories
/// (`(path, tree blob, root directory)`) list a file the store lacks, or
/// that are too large to check.
pub async fn check(
    store: &cairn_store::Store,
    hash: &str,
    outputs: &[(String, Option<Digest>, Option<Digest>)],
) -> Result<(), ApiError> {
    let mut walk = Walk::default();
    for (path, tree, root) in outputs {
        let what = |detail: String| {
            ApiError::BadRequest(format!(
                "action result for {hash}: output directory {path:?} {detail}; nothing stored"
            ))
        };
        if let Some(tree) = tree {
            let bytes = read(store, tree, "tree", &what).await?;
            let tree = Tree::decode(&bytes[..])
                .map_err(|e| what(format!("has a tree {tree} that is not a Tree ({e})")))?;
            for dir in tree.root.iter().chain(&tree.children) {
                walk.directory(dir, &what)?;
            }
        }
        if let Some(root) = root {
            walk_directories(store, *root, &mut walk, &what).await?;
        }
    }
    let files: Vec<Digest> = walk.files.into_iter().collect();
    for batch in files.chunks(HAS_BATCH) {
        let have = store.blobs.has_many(batch).await?;
        if let Some((d, _)) = batch.iter().zip(have).find(|(_, h)| !h) {
            return Err(ApiError::BadRequest(format!(
                "action result for {hash}: an output directory lists file {d}, which the \
                 store lacks (upload outputs before their result); nothing stored"
            )));
        }
    }
    Ok(())
}

impl Walk {
    /// Counts `dir` and takes its files; 400 past the bounds.
    fn directory(
        &mut self,
        dir: &Directory,
        what: &impl Fn(String) -> ApiError,
    ) -> Result<(), ApiError> {
        self.directories += 1;
        if self.directories > MAX_DIRECTORIES {
            return Err(what(format!(
                "holds more than {MAX_DIRECTORIES} directories, too many to check"
            )));
        }
        for f in &dir.files {
            let d = digest(&f.digest, what)?;
            if d.size() > 0 {
                self.files.insert(d);
            }
        }
        if self.files.len() > MAX_FILES {
            return Err(what(format!(
                "holds more than {MAX_FILES} files, too many to check"
            )));
        }
        Ok(())
    }
}

/// Walks the directory `root` and every directory below it (each once).
async fn walk_directories(
    store: &cairn_store::Store,
    root: Digest,
    walk: &mut Walk,
    what: &impl Fn(String) -> ApiError,
) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    let mut frontier = vec![root];
    while let Some(d) = frontier.pop() {
        if !seen.insert(d) {
            continue;
        }
        let dir = if d.size() == 0 {
            Directory::default()
        } else {
            let bytes = read(store, &d, "directory", what).await?;
            Directory::decode(&bytes[..])
                .map_err(|e| what(format!("has a directory {d} that is not a Directory ({e})")))?
        };
        walk.directory(&dir, what)?;
        for sub in &dir.directories {
            frontier.push(digest(&sub.digest, what)?);
        }
    }
    Ok(())
}

/// The bytes of a tree or directory blob; 400 if it is missing, corrupt or
/// larger than [`MAX_TREE_BLOB`].
async fn read(
    store: &cairn_store::Store,
    d: &Digest,
    kind: &str,
    what: &impl Fn(String) -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    if d.size() > MAX_TREE_BLOB {
        return Err(what(format!(
            "has a {kind} {d} larger than {MAX_TREE_BLOB} bytes, too large to check"
        )));
    }
    match store.blobs.get_bytes(d).await {
        Ok(bytes) => Ok(bytes),
        Err(cairn_store::StoreError::NotFound(_) | cairn_store::StoreError::Corrupt { .. }) => {
            Err(what(format!(
                "names {kind} {d}, which the store lacks (upload outputs before their result)"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

fn digest(
    d: &Option<proto::Digest>,
    what: &impl Fn(String) -> ApiError,
) -> Result<Digest, ApiError> {
    let d = d
        .as_ref()
        .ok_or_else(|| what("lists an entry without a digest".into()))?;
    Digest::try_from(d).map_err(|e| what(format!("lists an invalid digest: {e}")))
}
