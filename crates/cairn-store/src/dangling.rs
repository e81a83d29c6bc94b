//! Refs that point at what the store does not hold whole ("dangling"):
//! what `store verify` reports and what `ref set` refuses to create.
//!
//! A ref is whole when every root it names ([`roots`](crate::roots)) and
//! everything those reach ([`reach`](crate::reach)) is present. The walk
//! reads every directory and document once, however many refs share it,
//! and asks about files in batches; it has no bound (unlike the
//! completeness answer a server gives a copy, [`closure`](crate::closure)),
//! because a false "dangling" would be a false alarm.

use std::collections::{HashMap, HashSet};

use cairn_digest::{Digest, DigestRef};
use futures::{StreamExt, TryStreamExt};

use crate::blob::BlobStore;
use crate::error::{Result, StoreError};
use crate::fs::FsStore;
use crate::reach::{blob_edges, Node};
use crate::refs::{RefName, RefStore};
use crate::roots::{roots_of_ref, Root};

/// Blobs read at once while walking.
const READS_IN_FLIGHT: usize = 16;
/// Digests per presence question.
const HAS_BATCH: usize = 10_000;

/// A ref whose closure is not whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dangling {
    /// The ref.
    pub name: RefName,
    /// One blob it reaches that is missing (or corrupt).
    pub missing: DigestRef,
}

/// Every ref of the local `store` whose closure is not whole, sorted by name.
pub async fn dangling_refs(store: &FsStore) -> Result<Vec<Dangling>> {
    let mut named: Vec<(RefName, Vec<Root>)> = Vec::new();
    for name in store.list("").await? {
        if let Some(v) = RefStore::get(store, &name).await? {
            let roots = roots_of_ref(&name, &v.value);
            if !roots.is_empty() {
                named.push((name, roots));
            }
        }
    }
    let all: Vec<Root> = named.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    let missing = first_missing(store, Some(store), &all).await?;
    let by_root: HashMap<Root, Option<DigestRef>> = all.into_iter().zip(missing).collect();
    Ok(named
        .into_iter()
        .filter_map(|(name, roots)| {
            let missing = roots.iter().find_map(|r| by_root[r])?;
            Some(Dangling { name, missing })
        })
        .collect())
}

/// For each root, one blob it reaches that `blobs` lacks (`None`: whole).
/// With `local` (the same store, local), presence is a `stat` and a size
/// missing from a root is read from its blob file; otherwise presence is
/// asked of `blobs` and a root without a size counts as missing.
pub async fn first_missing(
    blobs: &dyn BlobStore,
    local: Option<&FsStore>,
    roots: &[Root],
) -> Result<Vec<Option<DigestRef>>> {
    let nodes: Vec<Option<Node>> = roots
        .iter()
        .map(|r| r.resolve(|h| local.and_then(|l| l.size_of_hash(h))))
        .collect();
    let graph = Graph::walk(blobs, nodes.iter().flatten().copied()).await?;
    let present = graph.present_leaves(blobs, local).await?;
    let mut memo = HashMap::new();
    Ok(roots
        .iter()
        .zip(nodes)
        .map(|(root, node)| match node {
            None => Some(DigestRef {
                hash: root.hash,
                size: root.size,
            }),
            Some(node) => graph
                .first_missing(node, &present, &mut memo)
                .map(DigestRef::from),
        })
        .collect())
}

/// The blobs below some roots: each interior blob's edges (`None`: absent
/// or corrupt), and the leaves.
struct Graph {
    interior: HashMap<Node, Option<Vec<Node>>>,
    leaves: HashSet<Digest>,
}

impl Graph {
    async fn walk(blobs: &dyn BlobStore, roots: impl IntoIterator<Item = Node>) -> Result<Self> {
        let mut graph = Graph {
            interior: HashMap::new(),
            leaves: HashSet::new(),
        };
        let mut seen: HashSet<Node> = HashSet::new();
        let mut frontier: Vec<Node> = roots.into_iter().collect();
        while !frontier.is_empty() {
            let mut to_read = Vec::new();
            for node in frontier.drain(..) {
                if !seen.insert(node) {
                    continue;
                }
                if node.1.is_leaf() {
                    graph.leaves.insert(node.0);
                } else {
                    to_read.push(node);
                }
            }
            let read: Vec<(Node, Option<Vec<Node>>)> = futures::stream::iter(to_read)
                .map(|node| async move {
                    match blob_edges(blobs, &node.0, node.1).await {
                        Ok(edges) => Ok((node, Some(edges))),
                        Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => {
                            Ok((node, None))
                        }
                        Err(e) => Err(e),
                    }
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .try_collect()
                .await?;
            for (node, edges) in read {
                frontier.extend(edges.iter().flatten().copied());
                graph.interior.insert(node, edges);
            }
        }
        Ok(graph)
    }

    async fn present_leaves(
        &self,
        blobs: &dyn BlobStore,
        local: Option<&FsStore>,
    ) -> Result<HashSet<Digest>> {
        let leaves: Vec<Digest> = self.leaves.iter().copied().collect();
        if let Some(local) = local {
            return Ok(leaves.into_iter().filter(|d| local.has_sync(d)).collect());
        }
        let mut present = HashSet::new();
        for batch in leaves.chunks(HAS_BATCH) {
            let have = blobs.has_many(batch).await?;
            present.extend(batch.iter().zip(have).filter(|(_, h)| *h).map(|(d, _)| *d));
        }
        Ok(present)
    }

    /// One missing blob at or below `root`, deciding every blob below it
    /// first (an explicit stack: a hostile tree may be deeper than the
    /// thread's stack). Blobs name children by hash, so there is no cycle.
    fn first_missing(
        &self,
        root: Node,
        present: &HashSet<Digest>,
        memo: &mut HashMap<Node, Option<Digest>>,
    ) -> Option<Digest> {
        let mut stack = vec![(root, false)];
        while let Some((node, children_done)) = stack.pop() {
            if memo.contains_key(&node) {
                continue;
            }
            if node.1.is_leaf() {
                memo.insert(node, (!present.contains(&node.0)).then_some(node.0));
                continue;
            }
            let Some(Some(children)) = self.interior.get(&node) else {
                memo.insert(node, Some(node.0));
                continue;
            };
            if children_done {
                let missing = children.iter().find_map(|c| memo.get(c).copied().flatten());
                memo.insert(node, missing);
            } else {
                stack.push((node, true));
                stack.extend(
                    children
                        .iter()
                        .filter(|c| !memo.contains_key(c))
                        .map(|c| (*c, false)),
                );
            }
        }
        memo.get(&root).copied().flatten()
    }
}
