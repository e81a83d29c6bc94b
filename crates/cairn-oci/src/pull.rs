//! Getting an image pinned by digest, from a registry or a local layout,
//! and applying its layers to a directory.
//!
//! Every document and blob is verified against the digest that names it:
//! the manifest against the pin, the config and layers against the
//! manifest. A multi-platform index pinned by digest resolves to the
//! manifest for this machine's platform. Only OCI and Docker v2 manifests
//! with known layer media types are accepted; anything else is refused by
//! name before a layer is read.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use cairn_digest::{Digest, DigestRef, HashingReader};

use crate::error::SpecError;
use crate::layout::{Layout, LayoutError};
use crate::media::{self, layer_compression};
use crate::reference::{ImageLocation, ReferenceError};
use crate::registry::{Registry, RegistryConfig, RegistryError};
use crate::spec::{parse_digest, ImageConfig, Index, Manifest, Platform};
use crate::unpack::{apply_layer, Budget, LayerError, Limits};

/// Why an image could not be pulled or unpacked. Each names the image.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse or is not pinned.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry failed or refused.
    #[error("image {reference}: {source}")]
    Registry {
        /// The image.
        reference: String,
        /// What happened.
        #[source]
        source: Box<RegistryError>,
    },
    /// The layout could not be read, or a blob in it is corrupt.
    #[error("image {reference}: {source}")]
    Layout {
        /// The image.
        reference: String,
        /// What happened.
        #[source]
        source: Box<LayoutError>,
    },
    /// A document is not what the spec allows.
    #[error("image {reference}: {source}")]
    Spec {
        /// The image.
        reference: String,
        /// What is wrong.
        #[source]
        source: SpecError,
    },
    /// A layer was refused or could not be applied.
    #[error("image {reference}: layer {layer}: {source}")]
    Layer {
        /// The image.
        reference: String,
        /// The layer's digest.
        layer: String,
        /// What is wrong with it.
        #[source]
        source: LayerError,
    },
}

impl From<SpecError> for PullError {
    fn from(source: SpecError) -> Self {
        Self::Spec {
            reference: String::new(),
            source,
        }
    }
}

impl From<LayoutError> for PullError {
    fn from(source: LayoutError) -> Self {
        Self::Layout {
            reference: String::new(),
            source: Box::new(source),
        }
    }
}

/// An image whose manifest, config and layers are in `layout`, verified.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// Where it came from.
    pub reference: String,
    /// The digest the image was pinned by (a manifest, or an index), with
    /// its size; its bytes are in `layout`.
    pub pinned: Digest,
    /// The manifest's digest (the pin, or the platform's manifest in the
    /// pinned index).
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The configuration.
    pub config: ImageConfig,
    /// The layout holding its blobs.
    pub layout: Layout,
}

/// Gets `location` (pinned), downloading what `cache` lacks for registry
/// images; a layout image is read where it is.
pub async fn pull(
    location: &ImageLocation,
    config: &RegistryConfig,
    cache: &Layout,
) -> Result<PulledImage, PullError> {
    let reference = location.to_string();
    let spec_err = |source| PullError::Spec {
        reference: reference.clone(),
        source,
    };
    match location {
        ImageLocation::Layout { path, digest } => {
            let layout = Layout::open(path).map_err(|source| PullError::Layout {
                reference: reference.clone(),
                source: Box::new(source),
            })?;
            let read = |d: DigestRef| -> Result<(Digest, Vec<u8>), PullError> {
                let size = std::fs::metadata(layout.blob_path(&d.with_size(0)))
                    .map(|m| m.len())
                    .unwrap_or(0);
                let full = d.with_size(size);
                let bytes = layout
                    .read_blob(&full)
                    .map_err(|source| PullError::Layout {
                        reference: reference.clone(),
                        source: Box::new(source),
                    })?;
                Ok((full, bytes))
            };
            let (mut digest, mut bytes) = read(*digest)?;
            let pinned = digest;
            if let Some(chosen) = choose_platform(&bytes, &reference).map_err(spec_err)? {
                (digest, bytes) = read(chosen.into())?;
            }
            finish(&reference, (pinned, digest), &bytes, layout.clone(), |d| {
                layout.read_blob(d).map_err(|source| PullError::Layout {
                    reference: reference.clone(),
                    source: Box::new(source),
                })
            })
        }
        ImageLocation::Registry(r) => {
            let registry = Registry::new(r, config, false);
            let reg_err = |source| PullError::Registry {
                reference: reference.clone(),
                source: Box::new(source),
            };
            let pin = r.pinned()?;
            let layout_err = |source| PullError::Layout {
                reference: reference.clone(),
                source: Box::new(source),
            };
            let mut bytes = registry_manifest(&registry, &pin.to_string(), &reference).await?;
            let mut digest = check_pin(&bytes, &pin, &reference)?;
            let pinned = digest;
            cache.put_bytes(&bytes).map_err(layout_err)?;
            if let Some(chosen) = choose_platform(&bytes, &reference).map_err(spec_err)? {
                bytes = registry_manifest(&registry, &chosen.to_string(), &reference).await?;
                digest = check_pin(&bytes, &chosen.into(), &reference)?;
                cache.put_bytes(&bytes).map_err(layout_err)?;
            }
            let manifest = parse_manifest(&bytes, &reference)?;
            let config_digest = manifest.config.blob_digest().map_err(spec_err)?;
            registry
                .fetch_blob(&config_digest, cache)
                .await
                .map_err(reg_err)?;
            for layer in &manifest.layers {
                check_layer_type(layer, &reference)?;
                let d = layer.blob_digest().map_err(spec_err)?;
                registry.fetch_blob(&d, cache).await.map_err(reg_err)?;
            }
            finish(&reference, (pinned, digest), &bytes, cache.clone(), |d| {
                cache.read_blob(d).map_err(|source| PullError::Layout {
                    reference: reference.clone(),
                    source: Box::new(source),
                })
            })
        }
    }
}

async fn registry_manifest(
    registry: &Registry,
    pin: &str,
    reference: &str,
) -> Result<Vec<u8>, PullError> {
    match registry.get_manifest(pin).await {
        Ok(Some((bytes, _))) => Ok(bytes),
        Ok(None) => Err(PullError::Spec {
            reference: reference.to_owned(),
            source: SpecError::Invalid {
                what: format!("manifest {pin}"),
                reason: "the registry does not have it".into(),
            },
        }),
        Err(source) => Err(PullError::Registry {
            reference: reference.to_owned(),
            source: Box::new(source),
        }),
    }
}

fn check_pin(bytes: &[u8], pin: &DigestRef, reference: &str) -> Result<Digest, PullError> {
    let got = Digest::of(bytes);
    if got.hash() != &pin.hash {
        return Err(PullError::Registry {
            reference: reference.to_owned(),
            source: Box::new(RegistryError::Mismatch {
                reference: reference.to_owned(),
                what: "manifest".into(),
                expected: pin.to_string(),
                got: got.to_string(),
            }),
        });
    }
    Ok(got)
}

/// If `bytes` is an index, the digest of this platform's manifest in it.
fn choose_platform(bytes: &[u8], reference: &str) -> Result<Option<Digest>, SpecError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| SpecError::Json {
        what: format!("manifest of {reference}"),
        source,
    })?;
    let media_type = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    let is_index = media_type == media::OCI_INDEX
        || media_type == media::DOCKER_MANIFEST_LIST
        || (media_type.is_empty() && v.get("manifests").is_some());
    if !is_index {
        return Ok(None);
    }
    let index: Index = serde_json::from_value(v).map_err(|source| SpecError::Json {
        what: format!("index of {reference}"),
        source,
    })?;
    let native = Platform::native();
    let chosen = index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == native.os && p.architecture == native.architecture)
        })
        .or_else(|| (index.manifests.len() == 1).then(|| &index.manifests[0]))
        .ok_or_else(|| SpecError::Invalid {
            what: format!("index of {reference}"),
            reason: format!("no manifest for {}/{}", native.os, native.architecture),
        })?;
    Ok(Some(parse_digest(&chosen.digest, chosen.size)?))
}

fn parse_manifest(bytes: &[u8], reference: &str) -> Result<Manifest, PullError> {
    let spec_err = |source| PullError::Spec {
        reference: reference.to_owned(),
        source,
    };
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|source| {
        spec_err(SpecError::Json {
            what: "manifest".into(),
            source,
        })
    })?;
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media::OCI_MANIFEST.into());
    if media_type != media::OCI_MANIFEST && media_type != media::DOCKER_MANIFEST {
        return Err(spec_err(SpecError::MediaType {
            what: "manifest".into(),
            media_type,
        }));
    }
    let config_type = manifest.config.media_type.as_str();
    if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
        return Err(spec_err(SpecError::MediaType {
            what: format!("config {}", manifest.config.digest),
            media_type: config_type.to_owned(),
        }));
    }
    for layer in &manifest.layers {
        check_layer_type(layer, reference)?;
    }
    Ok(manifest)
}

fn check_layer_type(layer: &crate::spec::Descriptor, reference: &str) -> Result<(), PullError> {
    if layer_compression(&layer.media_type).is_none() {
        return Err(PullError::Spec {
            reference: reference.to_owned(),
            source: SpecError::MediaType {
                what: format!("layer {}", layer.digest),
                media_type: layer.media_type.clone(),
            },
        });
    }
    Ok(())
}

fn finish(
    reference: &str,
    (pinned, manifest_digest): (Digest, Digest),
    bytes: &[u8],
    layout: Layout,
    read: impl Fn(&Digest) -> Result<Vec<u8>, PullError>,
) -> Result<PulledImage, PullError> {
    let manifest = parse_manifest(bytes, reference)?;
    let spec_err = |source| PullError::Spec {
        reference: reference.to_owned(),
        source,
    };
    let config_digest = manifest.config.blob_digest().map_err(spec_err)?;
    let config_bytes = read(&config_digest)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|source| {
        spec_err(SpecError::Json {
            what: format!("config {config_digest}"),
            source,
        })
    })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(spec_err(SpecError::Invalid {
            what: format!("config {config_digest}"),
            reason: format!(
                "{} diff_ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        }));
    }
    Ok(PulledImage {
        reference: reference.to_owned(),
        pinned,
        manifest_digest,
        manifest,
        config,
        layout,
    })
}

impl PulledImage {
    /// Applies every layer, in order, to `dest`; each blob is verified
    /// against its digest as it is read. On error `dest` holds a partial
    /// result the caller discards.
    pub fn unpack(&self, dest: &Path, limits: Limits) -> Result<(), PullError> {
        let mut budget = Budget::new(limits);
        std::fs::create_dir_all(dest).map_err(|source| {
            self.layer_err(
                "-",
                LayerError::Io {
                    path: dest.to_owned(),
                    source,
                },
            )
        })?;
        for layer in &self.manifest.layers {
            let digest = layer.blob_digest().map_err(|source| PullError::Spec {
                reference: self.reference.clone(),
                source,
            })?;
            let compression = layer_compression(&layer.media_type).expect("checked on pull");
            let path = self.layout.blob_path(&digest);
            let file = File::open(&path).map_err(|source| {
                self.layer_err(
                    &layer.digest,
                    LayerError::Io {
                        path: path.clone(),
                        source,
                    },
                )
            })?;
            let mut hashing = HashingReader::new(file.take(digest.size() + 1));
            apply_layer(&mut hashing, compression, digest.size(), dest, &mut budget)
                .map_err(|e| self.layer_err(&layer.digest, e))?;
            io::copy(&mut hashing, &mut io::sink()).map_err(|source| {
                self.layer_err(
                    &layer.digest,
                    LayerError::Io {
                        path: path.clone(),
                        source,
                    },
                )
            })?;
            let (got, _) = hashing.finish();
            if got != digest {
                return Err(self.layer_err(
                    &layer.digest,
                    LayerError::Hostile {
                        entry: "-".into(),
                        reason: format!("the blob hashes to {got:#}, not {digest:#}"),
                    },
                ));
            }
        }
        Ok(())
    }

    fn layer_err(&self, layer: &str, source: LayerError) -> PullError {
        PullError::Layer {
            reference: self.reference.clone(),
            layer: layer.to_owned(),
            source,
        }
    }
}
