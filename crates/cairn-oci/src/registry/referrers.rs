//! Manifests that refer to others (attestations), found either by the
//! referrers API (`GET /v2/<name>/referrers/<digest>`, OCI distribution
//! 1.1) or, on registries without it, by the tag schema the same spec
//! defines as its fallback: an index tagged `sha256-<hex>` listing the
//! referrers of manifest `sha256:<hex>`.

use cairn_digest::Digest;
use reqwest::StatusCode;

use super::{Registry, RegistryError};
use crate::media;
use crate::spec::{to_bytes, Descriptor, Index};

/// How a referrer was made findable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The registry indexed its `subject` (referrers API).
    ReferrersApi,
    /// The registry lacks the API: the `sha256-<hex>` index was updated.
    TagSchema,
}

/// The fallback tag listing the referrers of `subject`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

impl Registry {
    /// Stores `manifest` (which names `subject` in its `subject` field) by
    /// digest, and makes it findable from `subject`.
    pub async fn attach(
        &self,
        subject: &Digest,
        manifest: &[u8],
        artifact_type: &str,
    ) -> Result<Attached, RegistryError> {
        let digest = Digest::of(manifest);
        if self
            .put_manifest(&digest.to_string(), media::OCI_MANIFEST, manifest)
            .await?
        {
            return Ok(Attached::ReferrersApi);
        }
        let tag = fallback_tag(subject);
        let mut index = match self.get_manifest(&tag).await? {
            Some((bytes, _)) => {
                serde_json::from_slice::<Index>(&bytes).unwrap_or_else(|_| Index::new(vec![]))
            }
            None => Index::new(vec![]),
        };
        let mut desc = Descriptor::new(media::OCI_MANIFEST, &digest);
        desc.artifact_type = Some(artifact_type.to_owned());
        if !index.manifests.iter().any(|d| d.digest == desc.digest) {
            index.manifests.push(desc);
            self.put_manifest(&tag, media::OCI_INDEX, &to_bytes(&index))
                .await?;
        }
        Ok(Attached::TagSchema)
    }

    /// The referrers of `subject` of `artifact_type`: from the referrers
    /// API where the registry has it, else from the fallback tag.
    pub async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let url = self.url(&format!("referrers/{subject}"));
        let what = format!("referrers of {subject}");
        let response = self.send(&what, |c| c.get(&url)).await?;
        let index = match response.status() {
            s if s.is_success() => {
                let bytes = response.bytes().await.map_err(self.http_err(&what))?;
                serde_json::from_slice::<Index>(&bytes).ok()
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => None,
            _ => return Err(self.status_err(&what, response).await),
        };
        let index = match index {
            Some(i) => i,
            None => match self.get_manifest(&fallback_tag(subject)).await? {
                Some((bytes, _)) => {
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| Index::new(vec![]))
                }
                None => Index::new(vec![]),
            },
        };
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| d.artifact_type.as_deref() == Some(artifact_type))
            .collect())
    }
}
