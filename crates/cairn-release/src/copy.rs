//! Copying a release or a whole channel to another store, with everything
//! a consumer there needs.
//!
//! **A release** ([`copy_release`]) is its document and everything it
//! names, followed as garbage collection follows it (`Kind::Unknown` from
//! the release blob): the artifact tree, the action with its command and
//! input root, the provenance envelope, and through the provenance the
//! recipe and every input's tree; then its signed envelope ref
//! `releases/<service>/<hex>`, created or, if the destination has it,
//! given the signatures it lacks. So `release show`, `promote`, `channel`
//! commands and `cairn verify` all work at the destination.
//!
//! **A channel** ([`copy_channel`]) is its history: every statement the
//! source can walk to (payload blobs and their signature refs), every
//! release those statements name (each as above; an old release the source
//! no longer holds is reported as skipped), then the channel ref. The
//! destination's channel is created, or moved forward if its newest
//! statement is one of the copied history (a fast-forward), or given the
//! signatures it lacks if it is the same statement. A destination channel
//! whose newest statement is not in the copied history has diverged (some
//! other promotion happened there): it is refused and nothing of it
//! changes, as a copy must never roll a channel back or drop a statement.

use cairn_digest::Digest;
use cairn_store::{Store, StoreError};
use cairn_transfer::{copy_closure, CopyOptions, CopyReport, Kind, Progress};

use crate::channel::{channel_ref, current, merge_into_ref, merge_signatures, statement_ref};
use crate::error::ReleaseError;
use crate::history::history;
use crate::release::{load_release, release_ref};

/// How many lost races a channel copy retries.
const MAX_ATTEMPTS: u32 = 32;

/// Copies release `release` and everything a consumer needs from `from`
/// to `to`; returns what moved.
pub async fn copy_release(
    from: &Store,
    to: &Store,
    release: &Digest,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport, ReleaseError> {
    let loaded = load_release(from, release).await?;
    let report = copy_closure(from, to, *release, Kind::Unknown, options, progress).await?;
    let name = release_ref(&loaded.release.service, release)?;
    merge_into_ref(to, &name, &loaded.envelope).await?;
    Ok(report)
}

/// What happened to the destination's channel ref.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum ChannelMove {
    /// The destination had no such channel.
    Created,
    /// The destination was at an earlier statement of the same history.
    FastForwarded {
        /// The destination's sequence before.
        from: u64,
    },
    /// Same statement; the destination lacked some of its signatures.
    Signed,
    /// Nothing to do.
    UpToDate,
}

/// What [`copy_channel`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChannelCopy {
    /// Statements copied (the history the source could walk).
    pub statements: u64,
    /// Releases copied, newest first.
    pub releases: Vec<Digest>,
    /// Releases named by old statements that the source no longer holds.
    pub skipped: Vec<Digest>,
    /// The blobs that moved, over all releases.
    pub blobs: CopyReport,
    /// What happened to the channel ref.
    pub channel: ChannelMove,
    /// The sequence the destination's channel is now at.
    pub sequence: u64,
}

/// Copies channel `service`/`channel` from `from` to `to`: its history,
/// the releases it names, then the channel ref (see the module docs).
pub async fn copy_channel(
    from: &Store,
    to: &Store,
    service: &str,
    channel: &str,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<ChannelCopy, ReleaseError> {
    let empty = || ReleaseError::EmptyChannel {
        service: service.into(),
        channel: channel.into(),
    };
    let cur = current(from, service, channel).await?.ok_or_else(empty)?;
    let entries = history(from, service, channel).await?;
    let mut copy = ChannelCopy {
        statements: entries.len() as u64,
        releases: Vec::new(),
        skipped: Vec::new(),
        blobs: CopyReport::default(),
        channel: ChannelMove::UpToDate,
        sequence: cur.statement.sequence,
    };
    for e in &entries {
        let r = e.statement.release;
        if copy.releases.contains(&r) || copy.skipped.contains(&r) {
            continue;
        }
        match copy_release(from, to, &r, options, progress).await {
            Ok(report) => {
                add(&mut copy.blobs, &report);
                copy.releases.push(r);
            }
            Err(ReleaseError::Store(StoreError::NotFound(_))) if r != cur.statement.release => {
                copy.skipped.push(r)
            }
            Err(e) => return Err(e),
        }
    }
    for e in entries.iter().rev() {
        let report = copy_closure(from, to, e.digest, Kind::Leaf, options, progress).await?;
        add(&mut copy.blobs, &report);
        if let Some(envelope) = &e.envelope {
            merge_into_ref(to, &statement_ref(service, channel, &e.digest)?, envelope).await?;
        }
    }
    copy.channel = move_channel(to, service, channel, &cur.envelope, &entries).await?;
    Ok(copy)
}

/// Creates, fast-forwards or co-signs the destination's channel ref.
async fn move_channel(
    to: &Store,
    service: &str,
    channel: &str,
    newest: &cairn_trust::Envelope,
    entries: &[crate::history::HistoryEntry],
) -> Result<ChannelMove, ReleaseError> {
    let name = channel_ref(service, channel)?;
    let ours = newest.payload_digest();
    for _ in 0..MAX_ATTEMPTS {
        let (expected, value, outcome) = match current(to, service, channel).await? {
            None => (None, newest.clone(), ChannelMove::Created),
            Some(theirs) if theirs.digest() == ours => {
                let mut merged = theirs.envelope.clone();
                if !merge_signatures(&mut merged, newest) {
                    return Ok(ChannelMove::UpToDate);
                }
                (Some(theirs.version), merged, ChannelMove::Signed)
            }
            Some(theirs) if entries.iter().any(|e| e.digest == theirs.digest()) => {
                let from = theirs.statement.sequence;
                let outcome = ChannelMove::FastForwarded { from };
                (Some(theirs.version), newest.clone(), outcome)
            }
            Some(theirs) => {
                return Err(ReleaseError::Diverged {
                    service: service.into(),
                    channel: channel.into(),
                    sequence: theirs.statement.sequence,
                    statement: theirs.digest(),
                })
            }
        };
        match to
            .refs
            .compare_and_swap(&name, expected.as_ref(), value.to_json())
            .await
        {
            Ok(_) => return Ok(outcome),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReleaseError::Contended(name.to_string(), MAX_ATTEMPTS))
}

fn add(total: &mut CopyReport, one: &CopyReport) {
    total.blobs_total += one.blobs_total;
    total.blobs_copied += one.blobs_copied;
    total.bytes_copied += one.bytes_copied;
    total.files_chunked += one.files_chunked;
    total.chunks_total += one.chunks_total;
    total.chunks_reused += one.chunks_reused;
}
