//! A channel's history, newest first, and where a rollback goes.

use cairn_digest::Digest;
use cairn_store::{BlobStoreExt, Store, StoreError};
use cairn_trust::{ChannelStatement, Document, Envelope};

use crate::channel::{current, merge_signatures, statement_ref};
use crate::error::ReleaseError;

/// One statement of a channel's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The statement's digest.
    pub digest: Digest,
    /// The statement.
    pub statement: ChannelStatement,
    /// Its envelope with every signature it got, where the store kept it
    /// (statements made before statement refs existed have none but the
    /// newest).
    pub envelope: Option<Envelope>,
}

/// The channel's statements, newest first, following `previous` links for
/// as long as the store holds them.
pub async fn history(
    store: &Store,
    service: &str,
    channel: &str,
) -> Result<Vec<HistoryEntry>, ReleaseError> {
    let Some(cur) = current(store, service, channel).await? else {
        return Ok(Vec::new());
    };
    let mut newest = cur.envelope.clone();
    if let Some(kept) = kept_envelope(store, service, channel, &cur.digest()).await? {
        merge_signatures(&mut newest, &kept);
    }
    let mut entries = vec![HistoryEntry {
        digest: cur.digest(),
        statement: cur.statement,
        envelope: Some(newest),
    }];
    while let Some(prev) = entries.last().and_then(|e| e.statement.previous) {
        let payload = match store.blobs.get_bytes(&prev).await {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => break,
            Err(e) => return Err(e.into()),
        };
        let statement =
            ChannelStatement::from_payload(&payload).map_err(|e| ReleaseError::Malformed {
                what: format!("channel statement {prev}"),
                reason: e.to_string(),
            })?;
        entries.push(HistoryEntry {
            digest: prev,
            envelope: kept_envelope(store, service, channel, &prev).await?,
            statement,
        });
    }
    Ok(entries)
}

/// The envelope kept in a statement's ref, if it is there and carries that
/// statement.
async fn kept_envelope(
    store: &Store,
    service: &str,
    channel: &str,
    statement: &Digest,
) -> Result<Option<Envelope>, ReleaseError> {
    let name = statement_ref(service, channel, statement)?;
    let Some(v) = store.refs.get(&name).await? else {
        return Ok(None);
    };
    Ok(Envelope::from_json(&v.value)
        .ok()
        .filter(|e| e.payload_digest() == *statement))
}

/// The releases a channel went through, as a stack of generations: a
/// statement that points back at the release below the top is a rollback
/// and pops, any other change pushes. The top is the current release.
fn generations(entries: &[HistoryEntry]) -> Vec<Digest> {
    let mut stack: Vec<Digest> = Vec::new();
    for e in entries.iter().rev() {
        let r = e.statement.release;
        if stack.last() == Some(&r) {
            continue;
        }
        if stack.len() >= 2 && stack[stack.len() - 2] == r {
            stack.pop();
        } else {
            stack.push(r);
        }
    }
    stack
}

/// The release a rollback goes to. Without `to`: the release before the
/// current one in the channel's generations, so repeated rollbacks walk
/// further back (A, B, C, rollback → B, rollback → A) instead of
/// flipping between two releases. With `to`: that release, which must be
/// an earlier release of this channel.
pub async fn rollback_target(
    store: &Store,
    service: &str,
    channel: &str,
    to: Option<Digest>,
) -> Result<Digest, ReleaseError> {
    let entries = history(store, service, channel).await?;
    let Some(newest) = entries.first() else {
        return Err(ReleaseError::EmptyChannel {
            service: service.into(),
            channel: channel.into(),
        });
    };
    let current = newest.statement.release;
    if let Some(to) = to {
        if to == current {
            return Err(ReleaseError::AlreadyThere {
                service: service.into(),
                channel: channel.into(),
                release: to,
            });
        }
        if !entries.iter().any(|e| e.statement.release == to) {
            return Err(ReleaseError::NotInHistory {
                service: service.into(),
                channel: channel.into(),
                release: to,
            });
        }
        return Ok(to);
    }
    let stack = generations(&entries);
    match stack.len() {
        n if n >= 2 => Ok(stack[n - 2]),
        _ => Err(ReleaseError::NothingToRollBackTo {
            service: service.into(),
            channel: channel.into(),
        }),
    }
}
