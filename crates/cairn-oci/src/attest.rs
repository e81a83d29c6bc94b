//! The signed statement pushed beside an image, and the artifact manifest
//! that carries it.
//!
//! The statement is in-toto v1 with a SLSA Provenance v1 predicate whose
//! subject is the image manifest: the image was built from the release
//! (`buildType` [`IMAGE_BUILD_TYPE`]), and its resolved dependencies are
//! the release, the release's provenance, the artifact tree and the base
//! image. All of its times are the release's, so the same release pushed
//! twice gives the same statement.
//!
//! It travels the way cosign's attestations do: a DSSE envelope as the one
//! layer (`application/vnd.dsse.envelope.v1+json`, annotated with its
//! `predicateType`) of an image manifest tagged `sha256-<hex>.att`; the same
//! manifest names the image as its `subject`, so registries with the
//! referrers API (or its tag-schema fallback) list it too.

use std::collections::BTreeMap;

use cairn_digest::Digest;
use cairn_trust::document::{Material, ProvenanceInputs, PREDICATE_TYPE};
use cairn_trust::{Release, Statement};
use time::OffsetDateTime;

use crate::media;
use crate::spec::{to_bytes, Descriptor, ImageConfig, Manifest, RootFs};

/// The SLSA build type of an image exported from a release.
pub const IMAGE_BUILD_TYPE: &str = "urn:cairn:build-type:oci-image:v1";
/// The builder id recorded in image statements.
pub const IMAGE_BUILDER_ID: &str = "urn:cairn:builder:image-export:v1";
/// The material name of the release in an image statement.
pub const RELEASE_MATERIAL: &str = "release";
/// cosign's annotation marking a signature-carrying layer.
const COSIGN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";

/// cosign's tag for the attestations of manifest `subject`.
pub fn cosign_tag(subject: &Digest) -> String {
    format!("sha256-{}.att", subject.hex())
}

/// The statement about image `manifest` (named `name`, e.g. the repository)
/// made from `release` (digest `release_digest`).
pub fn image_statement(
    name: &str,
    manifest: &Digest,
    release: &Release,
    release_digest: &Digest,
    base: Option<&Digest>,
) -> Statement {
    let mut materials = vec![
        Material {
            name: RELEASE_MATERIAL.into(),
            digest: *release_digest,
            uri: None,
        },
        Material {
            name: "provenance".into(),
            digest: release.provenance,
            uri: None,
        },
        Material {
            name: "artifact".into(),
            digest: release.artifact,
            uri: None,
        },
    ];
    if let Some(b) = base {
        materials.push(Material {
            name: "base".into(),
            digest: *b,
            uri: None,
        });
    }
    let created: OffsetDateTime = release.created;
    Statement::slsa(ProvenanceInputs {
        subject_name: name.to_owned(),
        artifact: *manifest,
        materials,
        builder_id: IMAGE_BUILDER_ID.into(),
        build_type: IMAGE_BUILD_TYPE.into(),
        action: release.action,
        parameters: BTreeMap::from([
            ("service".to_string(), release.service.clone().into()),
            ("release".to_string(), format!("{release_digest:#}").into()),
        ]),
        started: created,
        finished: created,
    })
}

/// The blobs and manifest of an attestation artifact.
#[derive(Clone, Debug)]
pub struct AttestationArtifact {
    /// The config blob.
    pub config: Vec<u8>,
    /// The DSSE envelope blob (the one layer).
    pub envelope: Vec<u8>,
    /// The manifest.
    pub manifest: Vec<u8>,
}

/// Wraps a signed envelope (JSON) as an artifact about `subject`.
pub fn attestation_artifact(envelope_json: Vec<u8>, subject: &Digest) -> AttestationArtifact {
    let layer_digest = Digest::of(&envelope_json);
    let config = ImageConfig {
        created: Some("0001-01-01T00:00:00Z".into()),
        architecture: String::new(),
        os: String::new(),
        config: Default::default(),
        rootfs: RootFs {
            type_: "layers".into(),
            diff_ids: vec![layer_digest.to_string()],
        },
    };
    let config = to_bytes(&config);
    let mut layer = Descriptor::new(media::DSSE_ENVELOPE, &layer_digest);
    layer.annotations = BTreeMap::from([
        (COSIGN_SIGNATURE.to_string(), String::new()),
        ("predicateType".to_string(), PREDICATE_TYPE.to_string()),
    ]);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: Some(media::IN_TOTO.into()),
        config: Descriptor::new(media::OCI_CONFIG, &Digest::of(&config)),
        layers: vec![layer],
        subject: Some(Descriptor::new(media::OCI_MANIFEST, subject)),
        annotations: BTreeMap::new(),
    };
    AttestationArtifact {
        config,
        envelope: envelope_json,
        manifest: to_bytes(&manifest),
    }
}
