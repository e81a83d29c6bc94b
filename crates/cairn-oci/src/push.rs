//! Pushing an exported image (a layout written by [`crate::export()`]) to a
//! registry: the blobs the repository lacks, then the manifest by digest,
//! so a tag is only ever moved to a complete image ([`tag`]).

use cairn_digest::Digest;

use crate::layout::Layout;
use crate::media;
use crate::registry::{Registry, RegistryError};
use crate::spec::Manifest;

/// What a push moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Blobs uploaded (the repository lacked them).
    pub blobs_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Blobs the repository already had.
    pub blobs_present: u64,
    /// Bytes of every blob of the image.
    pub image_bytes: u64,
}

/// Uploads the image `manifest` (in `layout`) to `registry`, blobs first,
/// then the manifest under its digest.
pub async fn push_image(
    registry: &Registry,
    layout: &Layout,
    manifest: &Digest,
) -> Result<Pushed, RegistryError> {
    let bytes = layout.read_blob(manifest).map_err(|e| RegistryError::Io {
        reference: registry.name(),
        what: format!("reading manifest {manifest}"),
        source: std::io::Error::other(e),
    })?;
    let parsed: Manifest = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Io {
        reference: registry.name(),
        what: format!("parsing manifest {manifest}"),
        source: std::io::Error::other(e),
    })?;
    let mut pushed = Pushed::default();
    for desc in parsed.layers.iter().chain(std::iter::once(&parsed.config)) {
        let digest = desc.blob_digest().map_err(|e| RegistryError::Io {
            reference: registry.name(),
            what: format!("manifest {manifest}"),
            source: std::io::Error::other(e),
        })?;
        pushed.image_bytes += digest.size();
        match registry
            .push_blob(&digest, &layout.blob_path(&digest))
            .await?
        {
            0 => pushed.blobs_present += 1,
            sent => {
                pushed.blobs_sent += 1;
                pushed.bytes_sent += sent;
            }
        }
    }
    registry
        .put_manifest(&manifest.to_string(), media::OCI_MANIFEST, &bytes)
        .await?;
    pushed.bytes_sent += bytes.len() as u64;
    pushed.image_bytes += bytes.len() as u64;
    Ok(pushed)
}

/// Points `tag` at manifest `bytes` (already pushed by digest).
pub async fn tag(registry: &Registry, tag: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    registry
        .put_manifest(tag, media::OCI_MANIFEST, bytes)
        .await?;
    Ok(())
}
