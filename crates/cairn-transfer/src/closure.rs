//! The closure of a root blob, in the order it may be copied.
//!
//! Blobs are grouped by *height*: 0 for blobs that name nothing (files,
//! chunks), 1 + the tallest child otherwise. Copying height by height puts
//! every blob a directory names into the destination before the directory
//! itself, even when subtrees are shared.

use std::collections::HashMap;

use cairn_digest::Digest;
use cairn_store::reach::{blob_edges, Kind};
use cairn_store::{BlobStore, StoreError};
use futures::{StreamExt, TryStreamExt};

use crate::{Result, TransferError};

/// Directory reads in flight while walking.
const READS_IN_FLIGHT: usize = 16;

/// Every blob a root reaches, with what the walk learned on the way.
pub(crate) struct Closure {
    /// The blobs grouped by height (index 0 first), each level sorted.
    pub levels: Vec<Vec<Digest>>,
    /// The blobs each blob names (empty for files).
    pub children: HashMap<Digest, Vec<Digest>>,
    /// How each blob was read (the kind it was first reached as).
    pub kinds: HashMap<Digest, Kind>,
}

/// Walks everything `root` reaches in `from`.
pub(crate) async fn closure(from: &dyn BlobStore, root: Digest, kind: Kind) -> Result<Closure> {
    let (children, kinds) = walk(from, root, kind).await?;
    let mut heights: HashMap<Digest, usize> = HashMap::new();
    height(&root, &children, &mut heights);
    let tallest = heights.values().copied().max().unwrap_or(0);
    let mut levels = vec![Vec::new(); tallest + 1];
    for (digest, h) in heights {
        levels[h].push(digest);
    }
    levels.iter_mut().for_each(|l| l.sort());
    Ok(Closure {
        levels,
        children,
        kinds,
    })
}

/// Each blob's children and the kind it was reached as.
type Walked = (HashMap<Digest, Vec<Digest>>, HashMap<Digest, Kind>);

/// Reads the closure breadth first (a whole frontier at once) and returns
/// each blob's children and kind.
async fn walk(from: &dyn BlobStore, root: Digest, kind: Kind) -> Result<Walked> {
    let mut children = HashMap::new();
    let mut kinds = HashMap::new();
    let mut frontier = vec![(root, kind)];
    children.insert(root, Vec::new());
    kinds.insert(root, kind);
    while !frontier.is_empty() {
        let read: Vec<_> = futures::stream::iter(frontier.drain(..))
            .map(
                |(d, k)| async move { Ok::<_, TransferError>((d, k, edges_of(from, d, k).await?)) },
            )
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        for (digest, kind, out) in read {
            if kinds.get(&digest) != Some(&kind) {
                continue; // read again as a kind that finds more
            }
            for &(child, k) in &out {
                // A blob reached again as a kind that reads more of it (a
                // file that is also someone's directory) is read again.
                let known = kinds.get(&child).copied();
                if known.is_none_or(|known| !known.covers(k)) {
                    children.entry(child).or_default();
                    kinds.insert(child, k);
                    frontier.push((child, k));
                }
            }
            children.insert(digest, out.into_iter().map(|(d, _)| d).collect());
        }
    }
    Ok((children, kinds))
}

async fn edges_of(from: &dyn BlobStore, digest: Digest, kind: Kind) -> Result<Vec<(Digest, Kind)>> {
    match blob_edges(from, &digest, kind).await {
        Ok(edges) => Ok(edges),
        Err(StoreError::NotFound(d)) => Err(TransferError::Missing(d)),
        Err(source) => Err(TransferError::Walk {
            root: digest,
            source,
        }),
    }
}

/// The height of `digest`, memoized (the graph is acyclic: a blob cannot
/// name its own hash).
fn height(
    digest: &Digest,
    children: &HashMap<Digest, Vec<Digest>>,
    memo: &mut HashMap<Digest, usize>,
) -> usize {
    if let Some(&h) = memo.get(digest) {
        return h;
    }
    let h = children
        .get(digest)
        .into_iter()
        .flatten()
        .map(|c| height(c, children, memo) + 1)
        .max()
        .unwrap_or(0);
    memo.insert(*digest, h);
    h
}
