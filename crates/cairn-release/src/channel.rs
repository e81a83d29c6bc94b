//! Channel statements in the store: promote, co-sign, read, walk history.

use cairn_digest::Digest;
use cairn_store::{BlobStoreExt, RefName, Store, StoreError, Version};
use cairn_trust::document::validate_name;
use cairn_trust::{ChannelStatement, Document, Envelope, SigningKey};
use time::{Duration, OffsetDateTime};

use crate::error::ReleaseError;
use crate::release::load_release;

/// How long a statement stays valid unless told otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::days(30);

/// How many lost races a promotion retries before giving up.
const MAX_ATTEMPTS: u32 = 32;

/// The ref holding a channel's newest statement.
pub fn channel_ref(service: &str, channel: &str) -> Result<RefName, ReleaseError> {
    validate_name("service", service)?;
    validate_name("channel", channel)?;
    Ok(RefName::new(format!("channels/{service}/{channel}"))?)
}

/// A channel's newest statement as stored (not yet verified).
#[derive(Debug, Clone)]
pub struct Current {
    /// The statement.
    pub statement: ChannelStatement,
    /// Its envelope, with every signature gathered so far.
    pub envelope: Envelope,
    /// The ref version it was read at.
    pub version: Version,
}

impl Current {
    /// The statement's digest (of its payload).
    pub fn digest(&self) -> Digest {
        self.envelope.payload_digest()
    }
}

/// The newest statement of a channel, if any.
pub async fn current(
    store: &Store,
    service: &str,
    channel: &str,
) -> Result<Option<Current>, ReleaseError> {
    let name = channel_ref(service, channel)?;
    let Some(stored) = store.refs.get(&name).await? else {
        return Ok(None);
    };
    let malformed = |reason: String| ReleaseError::Malformed {
        what: format!("ref {name}"),
        reason,
    };
    let envelope = Envelope::from_json(&stored.value).map_err(|e| malformed(e.to_string()))?;
    let statement =
        ChannelStatement::from_payload(&envelope.payload).map_err(|e| malformed(e.to_string()))?;
    Ok(Some(Current {
        statement,
        envelope,
        version: stored.version,
    }))
}

/// Points `channel` at `release` with a new statement signed by `key`:
/// sequence one above the current one, `previous` naming it, expiring
/// `expires_in` after `now`. Retries on the fresh value if another writer
/// promotes concurrently; never overwrites.
pub async fn promote(
    store: &Store,
    service: &str,
    channel: &str,
    release: &Digest,
    key: &SigningKey,
    expires_in: Duration,
    now: OffsetDateTime,
) -> Result<Current, ReleaseError> {
    let name = channel_ref(service, channel)?;
    let loaded = load_release(store, release).await?;
    if loaded.release.service != service {
        return Err(ReleaseError::NotARelease(
            *release,
            format!(
                "it is a release of service {:?}, not {service:?}",
                loaded.release.service
            ),
        ));
    }
    for _ in 0..MAX_ATTEMPTS {
        let before = current(store, service, channel).await?;
        let statement = ChannelStatement {
            service: service.into(),
            channel: channel.into(),
            release: *release,
            sequence: before.as_ref().map_or(1, |c| c.statement.sequence + 1),
            previous: before.as_ref().map(Current::digest),
            expires: now + expires_in,
        };
        statement.validate()?;
        let mut envelope = statement.to_envelope();
        envelope.sign(key);
        // The payload as a blob makes the history walkable by digest.
        store.blobs.put_bytes(envelope.payload.clone()).await?;
        let expected = before.as_ref().map(|c| &c.version);
        match store
            .refs
            .compare_and_swap(&name, expected, envelope.to_json())
            .await
        {
            Ok(version) => {
                return Ok(Current {
                    statement,
                    envelope,
                    version,
                })
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReleaseError::Contended(name.to_string(), MAX_ATTEMPTS))
}

/// Adds `key`'s signature to the channel's newest statement (for channels
/// that need several). `expected` pins which statement the signer means;
/// if the channel moved on meanwhile, nothing is signed.
pub async fn cosign(
    store: &Store,
    service: &str,
    channel: &str,
    key: &SigningKey,
    expected: Option<&Digest>,
) -> Result<Current, ReleaseError> {
    let name = channel_ref(service, channel)?;
    for _ in 0..MAX_ATTEMPTS {
        let mut cur =
            current(store, service, channel)
                .await?
                .ok_or_else(|| ReleaseError::EmptyChannel {
                    service: service.into(),
                    channel: channel.into(),
                })?;
        if let Some(want) = expected {
            if cur.digest() != *want {
                return Err(ReleaseError::Malformed {
                    what: format!("channel {service}/{channel}"),
                    reason: format!("its newest statement is {}, not {want}", cur.digest()),
                });
            }
        }
        let id = key.key_id();
        if cur
            .envelope
            .signatures
            .iter()
            .any(|s| s.keyid == id.as_str())
        {
            return Ok(cur); // already signed by this key
        }
        cur.envelope.sign(key);
        match store
            .refs
            .compare_and_swap(&name, Some(&cur.version), cur.envelope.to_json())
            .await
        {
            Ok(version) => return Ok(Current { version, ..cur }),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReleaseError::Contended(name.to_string(), MAX_ATTEMPTS))
}

/// One statement of a channel's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The statement's digest.
    pub digest: Digest,
    /// The statement.
    pub statement: ChannelStatement,
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
    let mut entries = vec![HistoryEntry {
        digest: cur.digest(),
        statement: cur.statement,
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
            statement,
        });
    }
    Ok(entries)
}

/// The release a rollback goes to: `to` if given, else the newest release in
/// the history that differs from the current one.
pub async fn rollback_target(
    store: &Store,
    service: &str,
    channel: &str,
    to: Option<Digest>,
) -> Result<Digest, ReleaseError> {
    if let Some(to) = to {
        return Ok(to);
    }
    let entries = history(store, service, channel).await?;
    let current = entries
        .first()
        .ok_or_else(|| ReleaseError::EmptyChannel {
            service: service.into(),
            channel: channel.into(),
        })?
        .statement
        .release;
    entries
        .iter()
        .map(|e| e.statement.release)
        .find(|r| *r != current)
        .ok_or_else(|| ReleaseError::NothingToRollBackTo {
            service: service.into(),
            channel: channel.into(),
        })
}
