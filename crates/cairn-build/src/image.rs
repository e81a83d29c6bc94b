//! `oci` inputs: a container image pinned by digest, as a tree.
//!
//! The image (from a registry, or a local OCI layout directory relative to
//! the recipe) is pulled with every blob verified (`cairn-oci`), its layers
//! are applied in order with whiteouts into a scratch directory under the
//! store's cache, refusing hostile entries, and the result is snapshotted
//! into a tree. Nothing reaches the store before the whole image unpacked:
//! a refused layer leaves only a removed scratch directory behind. As for
//! unpacked fetches, the pin → tree mapping is kept in a ref, `oci/<hex>`
//! (hex of the pinned digest), whose value is the tree digest written as
//! `fetch/<hex>`'s is: later builds neither pull nor unpack, and the ref
//! keeps the tree reachable the same way. The pinned manifest (or index)
//! itself is stored as a blob, so the provenance material it becomes
//! resolves in the store.

use std::path::Path;
use std::sync::Arc;

use cairn_digest::{Digest, DigestRef};
use cairn_oci::{ImageLocation, Layout, Limits, RegistryConfig};
use cairn_store::{FsStore, RefName, RefStore, StoreError};

use crate::error::BuildError;
use crate::inputs::{local_blob, ResolvedInput};
use crate::offload::blocking;
use crate::trees::{scratch, snapshot_temp};

/// The ref remembering the tree of image pin `digest`.
pub fn image_ref(digest: &DigestRef) -> RefName {
    RefName::new(format!("oci/{}", digest.hex())).expect("hex is a valid ref segment")
}

/// Resolves the `oci` input `name` (`image`, pinned by `digest`) to a tree.
pub async fn resolve(
    fs: &Arc<FsStore>,
    refs: &dyn RefStore,
    recipe_dir: &Path,
    name: &str,
    image: &str,
    digest: DigestRef,
    registry: &RegistryConfig,
) -> Result<ResolvedInput, BuildError> {
    let ref_name = image_ref(&digest);
    let store_err = |e| BuildError::store(format!("input `{name}`: ref {}", ref_name.as_str()), e);
    let known = refs.get(&ref_name).await.map_err(store_err)?;
    let remembered = known.as_ref().and_then(|v| {
        let text = String::from_utf8_lossy(&v.value);
        let tree = text
            .trim()
            .parse::<DigestRef>()
            .ok()
            .and_then(|d| local_blob(fs, d))?;
        Some((tree, local_blob(fs, digest)?))
    });
    let (tree, manifest) = match remembered {
        Some(found) => found,
        None => {
            let found = pull_and_unpack(fs, recipe_dir, name, image, registry).await?;
            let value = format!("{:#}", found.0).into_bytes();
            let expected = known.as_ref().map(|v| &v.version);
            match refs.compare_and_swap(&ref_name, expected, value).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
            found
        }
    };
    Ok(ResolvedInput {
        name: name.to_owned(),
        tree,
        fetched: Some((image.to_owned(), manifest)),
    })
}

/// Pulls the image and unpacks it into a tree; returns the tree and the
/// stored pinned manifest's (or index's) digest.
async fn pull_and_unpack(
    fs: &Arc<FsStore>,
    recipe_dir: &Path,
    name: &str,
    image: &str,
    registry: &RegistryConfig,
) -> Result<(Digest, Digest), BuildError> {
    let image_err = |source| BuildError::Image {
        input: name.to_owned(),
        source: Box::new(source),
    };
    let mut location = ImageLocation::parse_pinned(image).map_err(|e| image_err(e.into()))?;
    if let ImageLocation::Layout { path, .. } = &mut location {
        *path = recipe_dir.join(&*path);
    }
    let cache_dir = fs.cache_dir().join("oci");
    let cache = Layout::create(&cache_dir).map_err(|e| image_err(e.into()))?;
    let pulled = cairn_oci::pull(&location, registry, &cache)
        .await
        .map_err(image_err)?;
    let (fs2, input) = (fs.clone(), name.to_owned());
    blocking(move || {
        let image_err = |source| BuildError::Image {
            input: input.clone(),
            source: Box::new(source),
        };
        let manifest_bytes = pulled
            .layout
            .read_blob(&pulled.pinned)
            .map_err(|e| image_err(e.into()))?;
        let dir = scratch(&fs2, "oci-unpack")?;
        let dest = dir.path().join("rootfs");
        pulled.unpack(&dest, Limits::default()).map_err(image_err)?;
        let added = snapshot_temp(&fs2, &dest).map_err(|source| BuildError::Snapshot {
            what: format!("input `{input}`: unpacked image"),
            source,
        })?;
        let manifest = fs2
            .put_bytes_sync(&manifest_bytes)
            .map_err(|e| BuildError::store(format!("input `{input}`: storing its manifest"), e))?;
        Ok((added.digest, manifest))
    })
    .await?
}
