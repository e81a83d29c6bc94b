//! Which blobs the refs reach: the live set garbage collection keeps.
//!
//! Roots are every ref. Edges are followed through the formats cairn
//! stores: tree `Directory` messages (files and subdirectories), REAPI
//! `Action` and `ActionResult` messages, and JSON documents (including the
//! payload of a DSSE envelope), in which any `{"hash": "sha256:…", "size": N}`
//! object names a blob. A blob of unknown type is tried as each of these.
//!
//! The scan is conservative: a blob that merely looks like one of these
//! formats keeps what it seems to name alive. Keeping too much is safe;
//! deleting a live blob is not.

use std::collections::HashSet;

use base64::Engine as _;
use cairn_digest::Digest;
use cairn_tree::proto::{self, Action, ActionResult};
use prost::Message;

use crate::blob::{BlobStore, BlobStoreExt};
use crate::error::{Result, StoreError};
use crate::refs::RefStore;

/// Blobs larger than this are never parsed for references (they are data).
pub const MAX_SCANNED_BLOB: u64 = 8 << 20;

/// What a blob is known to be, which decides how its edges are found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A `Directory` message: follow its entries.
    Tree,
    /// A file's content: nothing to follow.
    Leaf,
    /// Named by a document: try every format.
    Unknown,
}

/// Whether a blob of `kind` names nothing to follow without reading it: a
/// leaf, or a blob too large to be scanned. Every walk (gc, copies, the
/// completeness answer) applies this one rule, so a client and a server
/// agree on what a closure is.
pub fn names_nothing(digest: &Digest, kind: Kind) -> bool {
    kind == Kind::Leaf || digest.size() > MAX_SCANNED_BLOB
}

/// The hashes of every blob reachable from any ref.
pub async fn reachable(blobs: &dyn BlobStore, refs: &dyn RefStore) -> Result<HashSet<[u8; 32]>> {
    let mut live = HashSet::new();
    let mut queue: Vec<(Digest, Kind)> = Vec::new();
    for name in refs.list("").await? {
        if let Some(v) = refs.get(&name).await? {
            queue.extend(references_in_value(&v.value));
        }
    }
    while let Some((digest, kind)) = queue.pop() {
        if !live.insert(*digest.hash()) || names_nothing(&digest, kind) {
            continue;
        }
        let bytes = match blobs.get_bytes(&digest).await {
            Ok(b) => b,
            // A missing or corrupt blob has no edges we can trust; keep its
            // name in the live set and go on (verify reports it).
            Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        queue.extend(edges(&bytes, kind));
    }
    Ok(live)
}

/// The blobs one blob of `kind` names directly (empty for a leaf), as used
/// by garbage collection and by copying a closure between stores.
pub fn edges(bytes: &[u8], kind: Kind) -> Vec<(Digest, Kind)> {
    match kind {
        Kind::Leaf => Vec::new(),
        Kind::Tree => directory_edges(bytes).unwrap_or_default(),
        Kind::Unknown => references_in_value(bytes),
    }
}

/// Edges out of a ref value or a blob of unknown type.
fn references_in_value(bytes: &[u8]) -> Vec<(Digest, Kind)> {
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

fn directory_edges(bytes: &[u8]) -> Option<Vec<(Digest, Kind)>> {
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

fn action_result_edges(r: &ActionResult) -> Vec<(Digest, Kind)> {
    let mut out = Vec::new();
    for d in &r.output_directories {
        out.extend(digest_of(&d.root_directory_digest).map(|d| (d, Kind::Tree)));
        out.extend(digest_of(&d.tree_digest).map(|d| (d, Kind::Leaf)));
    }
    for f in &r.output_files {
        out.extend(digest_of(&f.digest).map(|d| (d, Kind::Leaf)));
    }
    out.extend(digest_of(&r.stdout_digest).map(|d| (d, Kind::Leaf)));
    out.extend(digest_of(&r.stderr_digest).map(|d| (d, Kind::Leaf)));
    out
}

fn json_edges(value: &serde_json::Value, out: &mut Vec<(Digest, Kind)>) {
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
