//! [`copy_closure`]: plan the closure, ask what is missing, move it.
//!
//! Asking is pruned where the destination can answer for whole subtrees:
//! a directory it holds with everything below needs no question about
//! its contents.
//!
//! Small blobs (most files of a source tree) travel in batches through
//! [`BlobStore::put_many`](cairn_store::BlobStore::put_many): over HTTP one
//! request carries up to 512 of them (1 MiB) instead of one request
//! each. Larger blobs go one by one, streamed, and files above the chunk
//! threshold as chunks. Batches and single blobs share the concurrency.

use std::collections::HashSet;

use cairn_digest::Digest;
use cairn_store::{BlobStoreExt, Store, StoreError};
use futures::{StreamExt, TryStreamExt};
use tracing::instrument;

use crate::chunks::copy_chunked;
use crate::closure::{closure, Closure};
use crate::{CopyOptions, CopyReport, Kind, Progress, Result, TransferError};

/// Digests asked about in one `has_many` call.
const HAS_BATCH: usize = 1000;

/// Blobs up to this size travel in batches.
const BATCH_BLOB_MAX: u64 = 64 << 10;
/// The most blobs in one batch.
const BATCH_BLOBS: usize = 512;
/// The most bytes in one batch (held in memory, once per batch in flight).
const BATCH_BYTES: u64 = 1 << 20;

/// One unit of copying: a blob alone, or a batch of small ones.
enum Work {
    One(Digest),
    Batch(Vec<Digest>),
}

/// Copies everything `root` reaches from `from` into `to`, moving only the
/// blobs `to` lacks, then flushes `to`. Blobs that name other blobs are
/// copied after everything they name.
#[instrument(skip_all, fields(root = %root))]
pub async fn copy_closure(
    from: &Store,
    to: &Store,
    root: Digest,
    kind: Kind,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let closure = closure(from.blobs.as_ref(), root, kind).await?;
    let levels = &closure.levels;
    let all: Vec<Digest> = levels.iter().flatten().copied().collect();
    let pruned = to_ask(to, &closure, root).await?;
    let missing = missing(to, pruned.as_deref().unwrap_or(&all)).await?;
    let missing_bytes = missing.iter().map(|d| d.size()).sum();
    progress.planned(all.len() as u64, missing.len() as u64, missing_bytes);

    let mut report = CopyReport {
        blobs_total: all.len() as u64,
        ..Default::default()
    };
    for level in levels {
        let todo: Vec<Digest> = level
            .iter()
            .filter(|d| missing.contains(d))
            .copied()
            .collect();
        let copied: Vec<CopyReport> = futures::stream::iter(plan(&todo, options))
            .map(|work| async move {
                match work {
                    Work::One(d) => copy_one(from, to, d, options, progress).await,
                    Work::Batch(ds) => copy_batch(from, to, ds, progress).await,
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        copied.iter().for_each(|c| add(&mut report, c));
    }
    to.blobs.flush().await?;
    Ok(report)
}

/// The blobs of the closure to ask `to` about, when `to` can say which
/// directories it holds whole ([`BlobStore::has_closures`]): nothing below
/// those, so a re-copy after a small change asks about the changed part
/// only. Blobs not asked about are in `to`. `None`: ask about all of them.
///
/// [`BlobStore::has_closures`]: cairn_store::BlobStore::has_closures
async fn to_ask(to: &Store, closure: &Closure, root: Digest) -> Result<Option<Vec<Digest>>> {
    let interior: Vec<(Digest, Kind)> = closure
        .children
        .iter()
        .filter(|(_, children)| !children.is_empty())
        .map(|(d, _)| (*d, closure.kinds[d]))
        .collect();
    if interior.is_empty() {
        return Ok(None);
    }
    let Some(answer) = to.blobs.has_closures(&interior).await? else {
        return Ok(None);
    };
    let whole: HashSet<Digest> = interior
        .iter()
        .zip(answer)
        .filter_map(|((d, _), complete)| complete.then_some(*d))
        .collect();
    let mut ask = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        if whole.contains(&d) || !seen.insert(d) {
            continue;
        }
        ask.push(d);
        stack.extend(closure.children.get(&d).into_iter().flatten());
    }
    Ok(Some(ask))
}

/// The subset of `digests` that `to` does not hold.
async fn missing(to: &Store, digests: &[Digest]) -> Result<HashSet<Digest>> {
    let mut out = HashSet::new();
    for batch in digests.chunks(HAS_BATCH) {
        let have = to.blobs.has_many(batch).await?;
        out.extend(batch.iter().zip(have).filter(|(_, h)| !h).map(|(d, _)| *d));
    }
    Ok(out)
}

/// Groups small blobs into batches bounded by count and bytes; everything
/// else is copied alone.
fn plan(todo: &[Digest], options: &CopyOptions) -> Vec<Work> {
    let limit = BATCH_BLOB_MAX.min(options.chunk_threshold);
    let (small, large): (Vec<Digest>, Vec<Digest>) = todo.iter().partition(|d| d.size() <= limit);
    let mut work: Vec<Work> = large.into_iter().map(Work::One).collect();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for d in small {
        if !batch.is_empty() && (batch.len() == BATCH_BLOBS || bytes + d.size() > BATCH_BYTES) {
            work.push(Work::Batch(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += d.size();
        batch.push(d);
    }
    if !batch.is_empty() {
        work.push(Work::Batch(batch));
    }
    work
}

/// Reads a batch of small blobs whole, verified. From a local store the
/// whole batch is read in one blocking task, so batches in flight are as
/// many reads in flight on a cold disk.
async fn read_batch(from: &Store, digests: &[Digest]) -> Result<Vec<(Digest, Vec<u8>)>> {
    let blob_error = |digest: Digest, source: StoreError| match source {
        StoreError::NotFound(_) => TransferError::Missing(digest),
        source => TransferError::Blob { digest, source },
    };
    if let Some(fs) = from.local.clone() {
        let (digests, root) = (digests.to_vec(), fs.root().to_path_buf());
        let read = tokio::task::spawn_blocking(move || {
            digests
                .into_iter()
                .map(|d| (d, fs.read_blob_sync(&d)))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::io("reading blobs in", root, std::io::Error::other(e)))?;
        let mut blobs = Vec::with_capacity(read.len());
        for (d, bytes) in read {
            match bytes {
                Ok(Some(bytes)) => blobs.push((d, bytes)),
                Ok(None) => return Err(TransferError::Missing(d)),
                Err(e) => return Err(blob_error(d, e)),
            }
        }
        return Ok(blobs);
    }
    let mut blobs = Vec::with_capacity(digests.len());
    for digest in digests {
        let bytes = from
            .blobs
            .get_bytes(digest)
            .await
            .map_err(|e| blob_error(*digest, e))?;
        blobs.push((*digest, bytes));
    }
    Ok(blobs)
}

/// Reads a batch of small blobs whole and puts them with one `put_many`.
async fn copy_batch(
    from: &Store,
    to: &Store,
    digests: Vec<Digest>,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let blobs = read_batch(from, &digests).await?;
    to.blobs.put_many(blobs).await.map_err(|e| match e {
        StoreError::Corrupt { expected, .. } => TransferError::Blob {
            digest: expected,
            source: e,
        },
        e => TransferError::Store(e),
    })?;
    for digest in &digests {
        progress.copied(digest, digest.size());
    }
    Ok(CopyReport {
        blobs_copied: digests.len() as u64,
        bytes_copied: digests.iter().map(Digest::size).sum(),
        ..Default::default()
    })
}

async fn copy_one(
    from: &Store,
    to: &Store,
    digest: Digest,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let mut report = CopyReport {
        blobs_copied: 1,
        ..Default::default()
    };
    if digest.size() > options.chunk_threshold {
        let c = copy_chunked(from, to, digest).await?;
        report.files_chunked = 1;
        report.bytes_copied = c.bytes_put;
        report.chunks_total = c.chunks_total;
        report.chunks_reused = c.chunks_reused;
    } else {
        let data = from
            .blobs
            .get(&digest)
            .await?
            .ok_or(TransferError::Missing(digest))?;
        to.blobs
            .put(&digest, data)
            .await
            .map_err(|source| TransferError::Blob { digest, source })?;
        report.bytes_copied = digest.size();
    }
    progress.copied(&digest, digest.size());
    Ok(report)
}

fn add(total: &mut CopyReport, one: &CopyReport) {
    total.blobs_copied += one.blobs_copied;
    total.bytes_copied += one.bytes_copied;
    total.files_chunked += one.files_chunked;
    total.chunks_total += one.chunks_total;
    total.chunks_reused += one.chunks_reused;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(work: &[Work]) -> Vec<Vec<u64>> {
        work.iter()
            .map(|w| match w {
                Work::One(d) => vec![d.size()],
                Work::Batch(ds) => ds.iter().map(Digest::size).collect(),
            })
            .collect()
    }

    fn digests(sizes: &[u64]) -> Vec<Digest> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| Digest::from_parts([i as u8; 32], s))
            .collect()
    }

    #[test]
    fn small_blobs_are_batched_by_count_and_bytes_large_ones_go_alone() {
        let options = CopyOptions::default();
        let mut todo = digests(&[BATCH_BLOB_MAX + 1, 10, BATCH_BLOB_MAX, 20]);
        let work = plan(&todo, &options);
        assert_eq!(
            sizes(&work),
            [vec![BATCH_BLOB_MAX + 1], vec![10, BATCH_BLOB_MAX, 20]]
        );

        todo = digests(&vec![1; BATCH_BLOBS + 1]);
        let batches: Vec<usize> = sizes(&plan(&todo, &options)).iter().map(Vec::len).collect();
        assert_eq!(batches, [BATCH_BLOBS, 1]);

        // Blobs of the largest batched size: BATCH_BYTES of them fill one.
        let per = (BATCH_BYTES / BATCH_BLOB_MAX) as usize;
        todo = digests(&vec![BATCH_BLOB_MAX; per + 1]);
        let batches: Vec<usize> = sizes(&plan(&todo, &options)).iter().map(Vec::len).collect();
        assert_eq!(batches, [per, 1]);
    }

    #[test]
    fn nothing_above_the_chunk_threshold_is_batched() {
        let options = CopyOptions {
            chunk_threshold: 100,
            ..CopyOptions::default()
        };
        let work = plan(&digests(&[100, 101]), &options);
        assert_eq!(sizes(&work), [vec![101], vec![100]]);
        assert!(matches!(work[0], Work::One(_)));
    }
}
