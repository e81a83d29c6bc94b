//! `cairn promote --push-image REF`: the release's image goes to each
//! registry by digest before the channel moves, and the tag (the channel's
//! name unless REF gives one) moves only after the statement is written,
//! so a deployment following the tag never runs ahead of the channel.

use anyhow::Result;
use cairn_digest::Digest;
use cairn_oci::{Reference, RegistryConfig};

use super::{push_release, PushedImage};
use crate::cli::{Global, ImageOptions, RegistryArgs};
use crate::cmd::Workspace;

/// The images a promotion pushes.
pub struct ChannelImages {
    references: Vec<Reference>,
    config: RegistryConfig,
}

/// Images pushed by digest, waiting for their tags.
pub struct PushedImages(Vec<(PushedImage, Option<String>)>);

impl ChannelImages {
    /// Parses `--push-image` values.
    pub fn new(references: Vec<String>, registry: &RegistryArgs) -> Result<Self> {
        let references = references
            .iter()
            .map(|r| Reference::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            references,
            config: super::registry_config(registry)?,
        })
    }

    /// Pushes the release's image, with an attestation signed by `key`, to
    /// every registry.
    pub async fn push(
        &self,
        global: &Global,
        ws: &Workspace,
        release: &Digest,
        key: &str,
    ) -> Result<PushedImages> {
        let options = ImageOptions {
            base: None,
            root: "/".into(),
        };
        let mut pushed = Vec::new();
        for r in &self.references {
            let image = push_release(global, ws, release, r, key, &options, &self.config).await?;
            pushed.push((image, r.tag.clone()));
        }
        Ok(PushedImages(pushed))
    }
}

impl PushedImages {
    /// Tags every image with its own tag or the channel's name.
    pub async fn tag(&self, channel: &str) -> Result<()> {
        for (image, tag) in &self.0 {
            image.tag(tag.as_deref().unwrap_or(channel)).await?;
        }
        Ok(())
    }
}
