//! Provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate.
//!
//! The shapes follow <https://github.com/in-toto/attestation/tree/main/spec/v1>
//! and <https://slsa.dev/spec/v1.0/provenance> field for field (camelCase on
//! the wire), so any SLSA verifier can read cairn's provenance; the interop
//! test parses it with the in-toto attestation protobuf bindings. Only the
//! fields cairn fills are modelled; the rest of the spec is optional.
//!
//! [`Statement::slsa`] builds a statement from typed inputs, so callers never
//! assemble the JSON by hand.

use std::collections::BTreeMap;

use cairn_digest::Digest;
use time::OffsetDateTime;

use super::{Document, DocumentError, PROVENANCE_PAYLOAD_TYPE};

/// The in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA Provenance v1 `predicateType`.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";

/// An in-toto Statement v1 carrying SLSA provenance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// What was built.
    pub subject: Vec<ResourceDescriptor>,
    /// Always [`PREDICATE_TYPE`].
    pub predicate_type: String,
    /// How it was built.
    pub predicate: Predicate,
}

/// An artifact or input named by digest (in-toto ResourceDescriptor).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDescriptor {
    /// A name for the resource (a path, a package name).
    pub name: String,
    /// Where it came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Its digests by algorithm.
    pub digest: DigestSet,
}

/// A digest set with the one algorithm cairn uses.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSet {
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// The SLSA Provenance v1 predicate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Predicate {
    /// The inputs and parameters of the build.
    pub build_definition: BuildDefinition,
    /// Who ran it and when.
    pub run_details: RunDetails,
}

/// SLSA `buildDefinition`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildDefinition {
    /// A URI naming the kind of build (how to read the parameters).
    pub build_type: String,
    /// Parameters under the caller's control (here: the action digest).
    pub external_parameters: serde_json::Map<String, serde_json::Value>,
    /// Parameters set by the builder itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Every input, by digest.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// SLSA `runDetails`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// The invocation's timing.
    pub metadata: BuildMetadata,
}

/// SLSA `builder`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    /// A URI naming the builder.
    pub id: String,
}

/// SLSA `metadata`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildMetadata {
    /// An id for this invocation, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// When the build started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_on: OffsetDateTime,
    /// When the build finished.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_on: OffsetDateTime,
}

/// One build input for [`ProvenanceInputs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    /// A name (path or package).
    pub name: String,
    /// Its digest.
    pub digest: Digest,
    /// Where it was fetched from, when it was.
    pub uri: Option<String>,
}

/// Everything [`Statement::slsa`] needs, typed.
#[derive(Clone, Debug)]
pub struct ProvenanceInputs {
    /// The subject's name (e.g. the service name).
    pub subject_name: String,
    /// The artifact tree digest.
    pub artifact: Digest,
    /// Every input.
    pub materials: Vec<Material>,
    /// The builder's id URI.
    pub builder_id: String,
    /// The build type URI.
    pub build_type: String,
    /// The action digest (recorded as `externalParameters.action`).
    pub action: Digest,
    /// Extra external parameters (e.g. the recipe step name).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Build start.
    pub started: OffsetDateTime,
    /// Build end.
    pub finished: OffsetDateTime,
}

impl ResourceDescriptor {
    /// A descriptor for `digest`.
    pub fn new(name: impl Into<String>, digest: &Digest, uri: Option<String>) -> Self {
        Self {
            name: name.into(),
            uri,
            digest: DigestSet {
                sha256: digest.hex(),
            },
        }
    }
}

impl Statement {
    /// A SLSA Provenance v1 statement for `inputs`.
    pub fn slsa(inputs: ProvenanceInputs) -> Self {
        let mut external: serde_json::Map<_, _> = inputs.parameters.into_iter().collect();
        external.insert("action".into(), format!("{:#}", inputs.action).into());
        let deps = inputs.materials.into_iter();
        Self {
            type_: STATEMENT_TYPE.into(),
            subject: vec![ResourceDescriptor::new(
                inputs.subject_name,
                &inputs.artifact,
                None,
            )],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Predicate {
                build_definition: BuildDefinition {
                    build_type: inputs.build_type,
                    external_parameters: external,
                    internal_parameters: None,
                    resolved_dependencies: deps
                        .map(|m| ResourceDescriptor::new(m.name, &m.digest, m.uri))
                        .collect(),
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: inputs.builder_id,
                    },
                    metadata: BuildMetadata {
                        invocation_id: None,
                        started_on: inputs.started,
                        finished_on: inputs.finished,
                    },
                },
            },
        }
    }
}

impl Document for Statement {
    const PAYLOAD_TYPE: &'static str = PROVENANCE_PAYLOAD_TYPE;

    fn validate(&self) -> Result<(), DocumentError> {
        let fixed = [
            ("_type", &self.type_, STATEMENT_TYPE),
            ("predicateType", &self.predicate_type, PREDICATE_TYPE),
        ];
        for (field, got, want) in fixed {
            if got != want {
                return Err(DocumentError::WrongConstant {
                    field,
                    got: got.clone(),
                    want,
                });
            }
        }
        Ok(())
    }
}
