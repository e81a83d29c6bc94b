//! The JSON documents of the OCI image spec that cairn writes and reads:
//! descriptors, image manifests, image indexes and image configurations.
//!
//! They are written here rather than taken from `oci-spec` because cairn's
//! digests depend on the exact bytes: field order is the declaration order
//! below, maps are `BTreeMap`s, optional fields are left out when empty and
//! the JSON is compact, so one image has one spelling (see
//! `docs/ARCHITECTURE.md`). Reading is lenient about fields cairn does not
//! use (images made by other tools carry many), strict about the ones it
//! does: a digest must be `sha256:` and 64 lowercase hex digits.

use std::collections::BTreeMap;

use cairn_digest::Digest;
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// `application/vnd.oci.descriptor.v1+json`: a typed pointer to a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// For artifacts: the kind of artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// In an index: the platform of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor of `digest` (whose size it takes) as `media_type`.
    pub fn new(media_type: &str, digest: &Digest) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: digest.to_string(),
            size: digest.size(),
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }

    /// The blob's cairn digest (hash and size), if the text is valid.
    pub fn blob_digest(&self) -> Result<Digest, SpecError> {
        parse_digest(&self.digest, self.size)
    }
}

/// Parses an OCI digest string with its size; only SHA-256 is accepted.
pub fn parse_digest(text: &str, size: u64) -> Result<Digest, SpecError> {
    let hex = text
        .strip_prefix("sha256:")
        .ok_or_else(|| SpecError::BadDigest(text.to_owned()))?;
    Digest::from_hex(hex, size).map_err(|_| SpecError::BadDigest(text.to_owned()))
}

/// The platform an image runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOARCH spelling: `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// `v8` for arm64, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine this cairn was built for.
    pub fn native() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: None,
        }
    }
}

/// An image manifest (also the shape of an artifact manifest, OCI 1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`crate::media::OCI_MANIFEST`] (or Docker's, when read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// For artifacts: the kind of artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The configuration blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// For referrers: the manifest this one is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (`index.json` of a layout, a multi-platform image, or a
/// referrers list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`crate::media::OCI_INDEX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An empty OCI index.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(crate::media::OCI_INDEX.into()),
            manifests,
            annotations: BTreeMap::new(),
        }
    }
}

/// An image configuration: what runs, and the layers' uncompressed digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339; cairn writes the release's creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// GOARCH spelling.
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// How to run it.
    #[serde(default)]
    pub config: RunConfig,
    /// The layers' `diff_ids`.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `config` of an image configuration (the spelling is Docker's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The user, if not root.
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `NAME=value` entries.
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The command.
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The working directory.
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    /// Labels.
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The signal that stops the container.
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
}

/// `rootfs` of an image configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The SHA-256 of each layer's uncompressed tar, base first.
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            type_: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// The canonical bytes of a document: compact JSON in declaration order.
pub fn to_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    // Structs of strings, numbers, vectors and string maps always serialize.
    serde_json::to_vec(doc).expect("OCI documents serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_spelling_is_the_specs() {
        let d = Descriptor::new(crate::media::OCI_CONFIG, &Digest::of(b"{}"));
        let text = String::from_utf8(to_bytes(&d)).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":2}}",
                Digest::of(b"{}")
            )
        );
        assert_eq!(d.blob_digest().unwrap(), Digest::of(b"{}"));
    }

    #[test]
    fn only_sha256_digests_are_accepted() {
        for bad in [
            "sha512:abcd",
            "sha256:ABCD",
            "sha256:",
            &format!("sha256:{}", "0".repeat(63)),
        ] {
            assert!(parse_digest(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_of_other_tools_parse() {
        let text = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:00"]},"history":[{"created_by":"x"}]}"#;
        let c: ImageConfig = serde_json::from_str(text).unwrap();
        assert_eq!(c.config.env, vec!["PATH=/bin"]);
        assert_eq!(c.config.cmd, Some(vec!["sh".to_string()]));
    }
}
