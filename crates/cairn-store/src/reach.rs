//! What a blob names: the edges every walk of the store follows.
//!
//! Garbage collection (what is live), copies (what a closure is) and the
//! completeness answer a server gives a copy (what "whole" means) all walk
//! with [`blob_edges`], so a client and a server agree on a closure.
//!
//! Edges are found by what a blob *is*, never by its size:
//!
//! * a [`Kind::Tree`] is a `Directory` message, decoded whatever its size
//!   (a directory of 120,000 entries is 8 MiB; nothing bounds it);
//! * a [`Kind::Leaf`] (a file's content, a chunk) names nothing and is
//!   never read;
//! * a [`Kind::OutputTree`] is a REAPI `Tree` message, an action result's
//!   output directory whole (what a Bazel client uploads): its
//!   directories are inside it, the files they list are named by digest;
//! * a [`Kind::Unknown`] blob is one a document names by
//!   `{"hash": "sha256:…", "size": N}`: it may be a directory, another
//!   document, a REAPI `Action` or `ActionResult`, or plain data. Up to
//!   [`MAX_DOCUMENT`] it is tried as each. A larger one is read only as far
//!   as it takes to rule a directory out ([`could_begin_directory`] on its
//!   first [`SNIFF_BYTES`]); if it may be one, it is decoded whole as a
//!   directory. So a release whose artifact is a huge directory keeps all of
//!   it, and a gigabyte of data named by a document costs a walk 64 KiB.
//!   Documents and REAPI messages larger than [`MAX_DOCUMENT`] are data:
//!   cairn writes none (refs are at most 1 MiB, its documents a few KiB).
//!
//! Edges are conservative: a blob that merely looks like one of these
//! formats keeps what it seems to name alive. Keeping too much is safe;
//! deleting a live blob is not.

use std::collections::HashSet;

use base64::Engine as _;
use cairn_digest::Digest;
use cairn_tree::could_begin_directory;
use cairn_tree::proto::{self, Action, ActionResult};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tokio::io::AsyncReadExt;

use crate::blob::{read_error, BlobStore, BlobStoreExt};
use crate::error::{Result, StoreError};

/// Blobs of unknown kind larger than this are parsed only as directories
/// (documents and REAPI messages are never this large).
pub const MAX_DOCUMENT: u64 = 8 << 20;

/// How much of a large blob of unknown kind is read to rule out that it is
/// a directory.
pub const SNIFF_BYTES: u64 = 64 << 10;

/// Blobs read at once while walking.
const READS_IN_FLIGHT: usize = 16;

/// What a blob is known to be, which decides how its edges are found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A `Directory` message: follow its entries.
    Tree,
    /// A file's content: nothing to follow.
    Leaf,
    /// A REAPI `Tree` message (`OutputDirectory.tree_digest`): follow the
    /// files of every directory it holds.
    OutputTree,
    /// Named by a document: try every format.
    Unknown,
}

impl Kind {
    /// Whether a walk never reads a blob of this kind (it names nothing).
    /// Every walk (gc, copies, the completeness answer) asks this one
    /// question, so a client and a server agree on what a closure is.
    pub fn is_leaf(self) -> bool {
        self == Kind::Leaf
    }

    /// Whether reading a blob as `self` finds every edge that reading it as
    /// `other` finds: a leaf is not read at all, and an unknown blob is
    /// tried as a directory before anything else. Nothing but an output
    /// tree is read as one: only an action result names one.
    pub fn covers(self, other: Kind) -> bool {
        self == other || other == Kind::Leaf || (self == Kind::Unknown && other == Kind::Tree)
    }
}

/// A blob and how its edges are read.
pub type Node = (Digest, Kind);

/// The blobs `digest`, read as `kind`, names directly (empty for a leaf,
/// and for bytes that are none of cairn's formats). Fails with
/// [`StoreError::NotFound`] if the blob is absent and
/// [`StoreError::Corrupt`] if what was read does not match its digest.
pub async fn blob_edges(blobs: &dyn BlobStore, digest: &Digest, kind: Kind) -> Result<Vec<Node>> {
    match kind {
        Kind::Leaf => Ok(Vec::new()),
        Kind::Tree => Ok(directory_edges(&blobs.get_bytes(digest).await?).unwrap_or_default()),
        Kind::OutputTree => {
            Ok(output_tree_edges(&blobs.get_bytes(digest).await?).unwrap_or_default())
        }
        Kind::Unknown if digest.size() <= MAX_DOCUMENT => {
            Ok(references_in(&blobs.get_bytes(digest).await?))
        }
        Kind::Unknown => large_unknown_edges(blobs, digest).await,
    }
}

/// A blob of unknown kind over [`MAX_DOCUMENT`]: a directory or data.
async fn large_unknown_edges(blobs: &dyn BlobStore, digest: &Digest) -> Result<Vec<Node>> {
    let mut reader = blobs
        .get(digest)
        .await?
        .ok_or(StoreError::NotFound(*digest))?;
    let mut bytes = Vec::with_capacity(SNIFF_BYTES as usize);
    (&mut reader)
        .take(SNIFF_BYTES)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| read_error(digest, e))?;
    if !could_begin_directory(&bytes, digest.size()) {
        return Ok(Vec::new());
    }
    // It may be a directory: read it whole (verified at its end).
    reader
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| read_error(digest, e))?;
    Ok(directory_edges(&bytes).unwrap_or_default())
}

/// Edges out of a ref value or a small blob of unknown kind: a directory,
/// a JSON document, or a REAPI `ActionResult` or `Action`.
pub fn references_in(bytes: &[u8]) -> Vec<Node> {
    if let Some(edges) = directory_edges(bytes) {
        return edges;
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let mut out = Vec::new();
        json_edges(&json, &mut out);
        return out;
    }
    let mut out = Vec::new();
    if let Ok(result) = ActionResult::decode(bytes) {
        out.extend(action_result_edges(&result));
    }
    if let Ok(action) = Action::decode(bytes) {
        out.extend(digest_of(&action.command_digest).map(|d| (d, Kind::Leaf)));
        out.extend(digest_of(&action.input_root_digest).map(|d| (d, Kind::Tree)));
    }
    out
}

fn directory_edges(bytes: &[u8]) -> Option<Vec<Node>> {
    let dir = cairn_tree::decode_directory(bytes).ok()?;
    let files = dir
        .files
        .iter()
        .filter_map(|f| digest_of(&f.digest))
        .map(|d| (d, Kind::Leaf));
    let dirs = dir
        .directories
        .iter()
        .filter_map(|d| digest_of(&d.digest))
        .map(|d| (d, Kind::Tree));
    Some(files.chain(dirs).collect())
}

/// The files of every directory a REAPI `Tree` message holds. The
/// directories themselves are inside the message: a client that uploads
/// a `Tree` need not store them as blobs, so they are not edges.
fn output_tree_edges(bytes: &[u8]) -> Option<Vec<Node>> {
    let tree = proto::Tree::decode(bytes).ok()?;
    let files = tree
        .root
        .iter()
        .chain(&tree.children)
        .flat_map(|dir| &dir.files)
        .filter_map(|f| digest_of(&f.digest))
        .map(|d| (d, Kind::Leaf));
    Some(files.collect())
}

fn action_result_edges(r: &ActionResult) -> Vec<Node> {
    let mut out = Vec::new();
    for d in &r.output_directories {
        out.extend(digest_of(&d.root_directory_digest).map(|d| (d, Kind::Tree)));
        out.extend(digest_of(&d.tree_digest).map(|d| (d, Kind::OutputTree)));
    }
    for f in &r.output_files {
        out.extend(digest_of(&f.digest).map(|d| (d, Kind::Leaf)));
    }
    out.extend(digest_of(&r.stdout_digest).map(|d| (d, Kind::Leaf)));
    out.extend(digest_of(&r.stderr_digest).map(|d| (d, Kind::Leaf)));
    out
}

fn json_edges(value: &serde_json::Value, out: &mut Vec<Node>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Ok(d) = serde_json::from_value::<Digest>(value.clone()) {
                out.push((d, Kind::Unknown));
                return;
            }
            // A DSSE envelope: the signed document is base64 inside it.
            if let (Some(Value::String(p)), Some(_)) = (map.get("payload"), map.get("payloadType"))
            {
                if let Some(inner) = base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                {
                    json_edges(&inner, out);
                }
            }
            map.values().for_each(|v| json_edges(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| json_edges(v, out)),
        _ => {}
    }
}

fn digest_of(d: &Option<proto::Digest>) -> Option<Digest> {
    d.as_ref().and_then(|d| Digest::try_from(d).ok())
}

/// The set of blobs (by hash) reachable from the roots given so far.
///
/// Roots can be added in several rounds ([`add`](Self::add)); each round
/// reads only what earlier rounds did not already reach, which is how a
/// collection takes in roots that appear while it runs.
#[derive(Debug, Default)]
pub struct Live {
    set: HashSet<[u8; 32]>,
    /// Blobs already read, with the kind they were read as: a blob reached
    /// as a file and again as a directory (a tree that holds an encoded
    /// directory as a file) must be walked as the directory too.
    read: HashSet<([u8; 32], Kind)>,
}

impl Live {
    /// Nothing live yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the blob with this hash is live.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.set.contains(hash)
    }

    /// How many blobs are live.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is live.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Marks a blob live without walking it (a hash whose size is unknown,
    /// hence not readable: it names nothing the walk could follow).
    pub fn insert_hash(&mut self, hash: [u8; 32]) {
        self.set.insert(hash);
    }

    /// Marks `roots` and everything they reach live, reading a frontier of
    /// blobs at a time. A missing or corrupt blob is live by name but
    /// has no edges anyone could trust (`store verify` reports it).
    pub async fn add(
        &mut self,
        blobs: &dyn BlobStore,
        roots: impl IntoIterator<Item = Node>,
    ) -> Result<()> {
        let mut frontier: Vec<Node> = roots.into_iter().collect();
        while !frontier.is_empty() {
            let mut to_read = Vec::new();
            for (digest, kind) in frontier.drain(..) {
                self.set.insert(*digest.hash());
                if !kind.is_leaf() && self.read.insert((*digest.hash(), kind)) {
                    to_read.push((digest, kind));
                }
            }
            let read: Vec<Vec<Node>> = futures::stream::iter(to_read)
                .map(|(digest, kind)| async move {
                    match blob_edges(blobs, &digest, kind).await {
                        Ok(edges) => Ok(edges),
                        Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => Ok(Vec::new()),
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .try_collect()
                .await?;
            frontier.extend(read.into_iter().flatten().filter(|(d, k)| {
                if k.is_leaf() {
                    !self.set.contains(d.hash())
                } else {
                    !self.read.contains(&(*d.hash(), *k))
                }
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walk that read a blob as `a` skips reading it as `b` when `a`
    /// covers `b`: reading an output tree as anything else would miss its
    /// files, so nothing but itself covers it.
    #[test]
    fn only_an_output_tree_covers_an_output_tree() {
        use Kind::*;
        for k in [Leaf, Tree, OutputTree, Unknown] {
            assert!(k.covers(k) && k.covers(Leaf), "{k:?}");
        }
        assert!(Unknown.covers(Tree));
        for k in [Leaf, Tree, Unknown] {
            assert!(
                !k.covers(OutputTree),
                "{k:?} would hide an output tree's files"
            );
        }
        assert!(!OutputTree.covers(Tree) && !OutputTree.covers(Unknown));
        assert!(!Leaf.covers(Tree) && !Tree.covers(Unknown));
    }

    #[test]
    fn an_output_tree_names_the_files_of_every_directory_it_holds() {
        use proto::{Directory, FileNode, Tree};
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let file = |d: Digest| FileNode {
            name: "f".into(),
            digest: Some(d.into()),
            ..Default::default()
        };
        let tree = Tree {
            root: Some(Directory {
                files: vec![file(a)],
                ..Default::default()
            }),
            children: vec![Directory {
                files: vec![file(b)],
                ..Default::default()
            }],
        };
        let edges = output_tree_edges(&tree.encode_to_vec()).unwrap();
        assert_eq!(edges, vec![(a, Kind::Leaf), (b, Kind::Leaf)]);
    }
}
