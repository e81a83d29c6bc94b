//! [`copy_closure`]: plan the closure, ask what is missing, move it.

use std::collections::HashSet;

use cairn_digest::Digest;
use cairn_store::Store;
use futures::{StreamExt, TryStreamExt};
use tracing::instrument;

use crate::chunks::copy_chunked;
use crate::closure::levels;
use crate::{CopyOptions, CopyReport, Kind, Progress, Result, TransferError};

/// Digests asked about in one `has_many` call.
const HAS_BATCH: usize = 1000;

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
    let levels = levels(from.blobs.as_ref(), root, kind).await?;
    let all: Vec<Digest> = levels.iter().flatten().copied().collect();
    let missing = missing(to, &all).await?;
    let missing_bytes = missing.iter().map(|d| d.size()).sum();
    progress.planned(all.len() as u64, missing.len() as u64, missing_bytes);

    let mut report = CopyReport {
        blobs_total: all.len() as u64,
        ..Default::default()
    };
    for level in &levels {
        let todo = level.iter().filter(|d| missing.contains(d));
        let copied: Vec<CopyReport> = futures::stream::iter(todo)
            .map(|d| copy_one(from, to, *d, options, progress))
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        copied.iter().for_each(|c| add(&mut report, c));
    }
    to.blobs.flush().await?;
    Ok(report)
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
