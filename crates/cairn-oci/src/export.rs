//! Exporting a tree as an OCI image layout: the tree's entries cut into
//! layers ([`crate::partition`]), each written as a deterministic tar
//! ([`crate::layer`]), on top of an optional base image, with a config and
//! manifest made from the release ([`crate::image`]).
//!
//! Blocking I/O: async callers run it in `spawn_blocking` with a
//! [`crate::StoreSource`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_digest::Digest;

use crate::entries::{walk, EntryKind};
use crate::error::ExportError;
use crate::image::{self, BaseImage, ImageSpec};
use crate::layout::{Layout, Staging, REF_NAME};
use crate::partition::partition;
use crate::source::TreeSource;
use crate::spec::{to_bytes, Descriptor, Index};
use crate::{layer, media};

/// What to export.
pub struct ExportRequest<'a> {
    /// The artifact tree.
    pub artifact: Digest,
    /// Where the artifact goes in the image: `""` for `/`, or `app`.
    pub root: String,
    /// The release's run specification and labels, with a relative
    /// entrypoint (made absolute here when it names an artifact file).
    pub spec: ImageSpec,
    /// A base image and the layout holding its blobs.
    pub base: Option<(&'a BaseImage, &'a Layout)>,
    /// The name `index.json` gives the manifest (`oci:DIR:NAME`).
    pub tag: Option<String>,
}

/// The image an export wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The layout directory.
    pub dir: PathBuf,
    /// The manifest's digest: the image's name everywhere.
    pub manifest: Digest,
    /// The config blob.
    pub config: Digest,
    /// Every layer, base first.
    pub layers: Vec<Descriptor>,
}

/// Writes the image `req` describes as a new layout at `out` (absent or an
/// empty directory); on error nothing is left there.
pub fn export(
    source: &dyn TreeSource,
    req: ExportRequest<'_>,
    out: &Path,
) -> Result<Exported, ExportError> {
    let staging = Staging::new(out)?;
    let entries = walk(source, &req.artifact)?;
    let mut blobs = Vec::new();
    for range in partition(&entries) {
        blobs.push(layer::write_layer(
            source,
            &entries[range],
            &req.root,
            &staging.blobs_dir(),
        )?);
    }
    let base = req.base.map(|(b, _)| b);
    if let Some((base, from)) = req.base {
        for l in &base.layers {
            let digest = l.blob_digest().map_err(|e| base_err(base, e.into()))?;
            staging
                .copy_blob(from, &digest)
                .map_err(|e| base_err(base, e.into()))?;
        }
    }
    let files: BTreeMap<&str, ()> = entries
        .iter()
        .filter(|e| !matches!(e.kind, EntryKind::Dir))
        .map(|e| (e.path.as_str(), ()))
        .collect();
    let mut spec = req.spec;
    spec.entrypoint = image::entrypoint(&spec.entrypoint, &spec.working_dir, |p| {
        files.contains_key(p)
    });
    let config = image::config(&spec, base, &blobs);
    let config_digest = staging.put_bytes(&to_bytes(&config))?;
    let manifest = image::manifest(&config_digest, base, &blobs);
    let manifest_digest = staging.put_bytes(&to_bytes(&manifest))?;
    let mut desc = Descriptor::new(media::OCI_MANIFEST, &manifest_digest);
    if let Some(tag) = req.tag {
        desc.annotations.insert(REF_NAME.into(), tag);
    }
    let dir = staging.finish(&Index::new(vec![desc]))?;
    Ok(Exported {
        dir,
        manifest: manifest_digest,
        config: config_digest,
        layers: manifest.layers,
    })
}

fn base_err(base: &BaseImage, e: crate::PullError) -> ExportError {
    ExportError::Base {
        reference: base.manifest_digest.to_string(),
        source: Box::new(e),
    }
}
