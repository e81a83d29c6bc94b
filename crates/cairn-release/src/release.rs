//! Publishing and loading signed releases.

use cairn_digest::Digest;
use cairn_store::{BlobStoreExt, RefName, Store, StoreError};
use cairn_trust::{Document, Envelope, Release, SigningKey};

use crate::error::ReleaseError;

/// The ref holding a release's envelope.
pub fn release_ref(service: &str, release: &Digest) -> Result<RefName, StoreError> {
    RefName::new(format!("releases/{service}/{}", release.hex()))
}

/// Signs `release`, stores its payload as a blob and its envelope in a ref;
/// returns the release digest (of the payload).
pub async fn publish_release(
    store: &Store,
    release: &Release,
    key: &SigningKey,
) -> Result<Digest, ReleaseError> {
    release.validate()?;
    let mut envelope = release.to_envelope();
    envelope.sign(key);
    let digest = store.blobs.put_bytes(envelope.payload.clone()).await?;
    let name = release_ref(&release.service, &digest)?;
    match store
        .refs
        .compare_and_swap(&name, None, envelope.to_json())
        .await
    {
        Ok(_) => {}
        // The same release published again: the first envelope stays.
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(digest)
}

/// A release read back from the store, not yet trusted.
#[derive(Debug, Clone)]
pub struct LoadedRelease {
    /// The document.
    pub release: Release,
    /// Its envelope, for verification.
    pub envelope: Envelope,
}

/// Loads the release `digest` names: its payload blob (verified against the
/// digest) and its envelope.
pub async fn load_release(store: &Store, digest: &Digest) -> Result<LoadedRelease, ReleaseError> {
    let payload = store.blobs.get_bytes(digest).await?;
    let release = Release::from_payload(&payload)
        .map_err(|e| ReleaseError::NotARelease(*digest, e.to_string()))?;
    let name = release_ref(&release.service, digest)?;
    let stored = store
        .refs
        .get(&name)
        .await?
        .ok_or_else(|| ReleaseError::Unsigned(*digest, name.to_string()))?;
    let envelope = Envelope::from_json(&stored.value).map_err(|e| ReleaseError::Malformed {
        what: format!("ref {name}"),
        reason: e.to_string(),
    })?;
    Ok(LoadedRelease { release, envelope })
}
