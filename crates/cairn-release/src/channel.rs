//! Channel statements in the store: promote, co-sign, read.
//!
//! The channel ref `channels/<service>/<channel>` holds the newest
//! statement's envelope. Each statement's payload is also a blob (so the
//! `previous` links can be walked by digest) and its envelope, with every
//! signature it got, is kept in `statements/<service>/<channel>/<hex>`, so
//! the history shows who signed each statement, not only the newest.

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

/// The ref holding one statement's envelope, with every signature it got.
pub fn statement_ref(
    service: &str,
    channel: &str,
    statement: &Digest,
) -> Result<RefName, ReleaseError> {
    validate_name("service", service)?;
    validate_name("channel", channel)?;
    Ok(RefName::new(format!(
        "statements/{service}/{channel}/{}",
        statement.hex()
    ))?)
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
            // Whole seconds: a date for people, not an ordering.
            issued: Some(now.replace_nanosecond(0).unwrap_or(now)),
        };
        statement.validate()?;
        let mut envelope = statement.to_envelope();
        envelope.sign(key);
        // The payload as a blob makes the history walkable by digest, and
        // the envelope in its own ref keeps its signatures once it is no
        // longer the newest.
        store.blobs.put_bytes(envelope.payload.clone()).await?;
        record_signatures(store, service, channel, &envelope).await?;
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
            Err(StoreError::Conflict { .. }) => {
                forget_statement(store, service, channel, &envelope).await;
                continue;
            }
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
            Ok(version) => {
                record_signatures(store, service, channel, &cur.envelope).await?;
                return Ok(Current { version, ..cur });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReleaseError::Contended(name.to_string(), MAX_ATTEMPTS))
}

/// Adds `envelope`'s signatures to its statement's ref (creating it), so
/// that every signature a statement got stays readable after the channel
/// moves on. Signatures are merged, never dropped.
pub async fn record_signatures(
    store: &Store,
    service: &str,
    channel: &str,
    envelope: &Envelope,
) -> Result<(), ReleaseError> {
    let name = statement_ref(service, channel, &envelope.payload_digest())?;
    merge_into_ref(store, &name, envelope).await.map(|_| ())
}

/// Writes `envelope` to the ref `name`: creates it, or adds the
/// signatures it lacks to the envelope already there. An envelope there
/// that carries another document is refused. Returns whether the ref
/// changed.
pub(crate) async fn merge_into_ref(
    store: &Store,
    name: &RefName,
    envelope: &Envelope,
) -> Result<bool, ReleaseError> {
    for _ in 0..MAX_ATTEMPTS {
        let stored = store.refs.get(name).await?;
        let (expected, merged) = match &stored {
            None => (None, envelope.clone()),
            Some(v) => {
                let malformed = |reason: String| ReleaseError::Malformed {
                    what: format!("ref {name}"),
                    reason,
                };
                let mut theirs =
                    Envelope::from_json(&v.value).map_err(|e| malformed(e.to_string()))?;
                if theirs.payload != envelope.payload {
                    return Err(malformed(format!(
                        "it holds document {}, not {}",
                        theirs.payload_digest(),
                        envelope.payload_digest()
                    )));
                }
                if !merge_signatures(&mut theirs, envelope) {
                    return Ok(false);
                }
                (Some(&v.version), theirs)
            }
        };
        match store
            .refs
            .compare_and_swap(name, expected, merged.to_json())
            .await
        {
            Ok(_) => return Ok(true),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReleaseError::Contended(name.to_string(), MAX_ATTEMPTS))
}

/// Adds to `into` the signatures of `from` (an envelope of the same
/// payload) that it lacks, by key id; whether it added any.
pub fn merge_signatures(into: &mut Envelope, from: &Envelope) -> bool {
    let mut added = false;
    for sig in &from.signatures {
        if into.payload == from.payload && !into.signatures.iter().any(|s| s.keyid == sig.keyid) {
            into.signatures.push(sig.clone());
            added = true;
        }
    }
    added
}

/// Removes the statement ref of a statement that lost its race to become
/// the newest (best effort: a leftover names a statement no channel points
/// to, which harms nothing).
async fn forget_statement(store: &Store, service: &str, channel: &str, envelope: &Envelope) {
    let Ok(name) = statement_ref(service, channel, &envelope.payload_digest()) else {
        return;
    };
    if let Ok(Some(v)) = store.refs.get(&name).await {
        let _ = store.refs.delete(&name, &v.version).await;
    }
}
