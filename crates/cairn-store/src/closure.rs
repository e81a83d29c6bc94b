//! Whether a store holds a blob together with everything it reaches.
//!
//! A copy into another store asks this about the directories of what it
//! copies before asking about single blobs: a subtree the destination
//! holds whole needs no question about anything below it, so re-copying a
//! large tree after a small change asks about the changed part only
//! ([`BlobStore::has_closures`]).
//!
//! Presence of a directory blob alone would not do: a blob can be stored
//! without what it names (any client of the Bazel cache routes may upload
//! one; garbage collection may have taken an unnamed child). So the
//! answer walks the store's own copy, with the edges of [`reach`](crate::reach): a root
//! is complete when it and every blob below it are present and readable.

use std::collections::{HashMap, HashSet};

use cairn_digest::Digest;
use futures::{StreamExt, TryStreamExt};

use crate::blob::BlobStore;
use crate::error::{Result, StoreError};
use crate::reach::{blob_edges, Node};

/// The most blobs one answer visits. Past it, every root is reported
/// incomplete: a correct answer ("not known complete") that makes the
/// caller fall back to asking blob by blob, and a bound on the work one
/// request can cause.
pub const MAX_VISITED: usize = 1_000_000;

/// The most roots one question may name (a server refuses more).
pub const MAX_ROOTS: usize = 10_000;

/// Blobs read at once while walking.
const READS_IN_FLIGHT: usize = 16;

/// Digests per `has_many` call for the leaves.
const HAS_BATCH: usize = 10_000;

/// For each root, whether `blobs` holds it and everything it reaches.
pub async fn has_closures(blobs: &dyn BlobStore, roots: &[Node]) -> Result<Vec<bool>> {
    let Some(walked) = walk(blobs, roots).await? else {
        return Ok(vec![false; roots.len()]);
    };
    let leaves: Vec<Digest> = walked.leaves.iter().copied().collect();
    let mut present = HashSet::new();
    for batch in leaves.chunks(HAS_BATCH) {
        let have = blobs.has_many(batch).await?;
        present.extend(batch.iter().zip(have).filter(|(_, h)| *h).map(|(d, _)| *d));
    }
    let mut complete = HashMap::new();
    Ok(roots
        .iter()
        .map(|root| settle(*root, &walked, &present, &mut complete))
        .collect())
}

/// What a walk found: the edges of every interior blob that could be read
/// (`None`: absent or corrupt), and the leaves to ask about.
struct Walked {
    interior: HashMap<Node, Option<Vec<Node>>>,
    leaves: HashSet<Digest>,
}

fn is_leaf(&(_, kind): &Node) -> bool {
    kind.is_leaf()
}

/// Reads every interior blob below the roots, a frontier at a time.
/// `None` when the walk passes [`MAX_VISITED`].
async fn walk(blobs: &dyn BlobStore, roots: &[Node]) -> Result<Option<Walked>> {
    let mut walked = Walked {
        interior: HashMap::new(),
        leaves: HashSet::new(),
    };
    let mut seen: HashSet<Node> = HashSet::new();
    let mut frontier: Vec<Node> = roots.to_vec();
    while !frontier.is_empty() {
        let mut to_read = Vec::new();
        for node in frontier.drain(..) {
            if !seen.insert(node) {
                continue;
            }
            if seen.len() > MAX_VISITED {
                return Ok(None);
            }
            if is_leaf(&node) {
                walked.leaves.insert(node.0);
            } else {
                to_read.push(node);
            }
        }
        let read: Vec<(Node, Option<Vec<Node>>)> = futures::stream::iter(to_read)
            .map(|node| async move {
                match blob_edges(blobs, &node.0, node.1).await {
                    Ok(edges) => Ok((node, Some(edges))),
                    Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => Ok((node, None)),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        for (node, out) in read {
            frontier.extend(out.iter().flatten().copied());
            walked.interior.insert(node, out);
        }
    }
    Ok(Some(walked))
}

/// Whether `root` is complete, deciding every blob below it first (an
/// explicit stack: a hostile tree may be deeper than the thread's stack).
fn settle(
    root: Node,
    walked: &Walked,
    present: &HashSet<Digest>,
    complete: &mut HashMap<Node, bool>,
) -> bool {
    let mut stack = vec![(root, false)];
    while let Some((node, children_done)) = stack.pop() {
        if complete.contains_key(&node) {
            continue;
        }
        if is_leaf(&node) {
            complete.insert(node, present.contains(&node.0));
            continue;
        }
        let Some(Some(children)) = walked.interior.get(&node) else {
            complete.insert(node, false);
            continue;
        };
        if children_done {
            // Blobs name their children by hash, so the graph has no
            // cycle and every child was decided before this second visit.
            let whole = children
                .iter()
                .all(|c| complete.get(c).copied().unwrap_or(false));
            complete.insert(node, whole);
        } else {
            stack.push((node, true));
            stack.extend(
                children
                    .iter()
                    .filter(|c| !complete.contains_key(c))
                    .map(|c| (*c, false)),
            );
        }
    }
    complete.get(&root).copied().unwrap_or(false)
}
