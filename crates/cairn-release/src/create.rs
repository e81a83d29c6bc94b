//! Turning a built artifact into a signed release with SLSA provenance.
//!
//! The provenance is an in-toto Statement naming the artifact as subject and
//! every input as a resolved dependency; its signed envelope is stored as a
//! blob, whose digest the release records. The release is then published
//! (payload blob + envelope ref, see [`crate::publish_release`]).
//!
//! So that anyone can rebuild the release from the store alone
//! (`cairn verify`, see [`crate::recorded`]), the provenance's external
//! parameters also record the recipe (its text, stored as a blob) and the
//! tree each input was mounted as, both as `{"hash", "size"}` digests:
//! copies of the release and garbage collection follow them like every
//! other digest a document names, so a release keeps its inputs.
//!
//! The tests that gated the release and the platform of each step its
//! artifact needed go in `internalParameters` (see [`crate::pipeline`]).

use std::collections::BTreeMap;

use cairn_digest::Digest;
use cairn_store::{BlobStoreExt, Store};
use cairn_trust::document::{Material, ProvenanceInputs};
use cairn_trust::{Document, Release, SigningKey, Statement};
use time::OffsetDateTime;

use crate::error::ReleaseError;
use crate::pipeline::Pipeline;
use crate::release::publish_release;

/// The provenance's external parameter naming the step built.
pub const STEP: &str = "step";
/// The provenance's external parameter naming the recipe blob.
pub const RECIPE: &str = "recipe";
/// The provenance's external parameter mapping each input to its tree.
pub const INPUTS: &str = "inputs";

fn json_digest(d: &Digest) -> serde_json::Value {
    serde_json::to_value(d).expect("digests serialize")
}

/// The SLSA build type of a cairn build step.
pub const BUILD_TYPE: &str = "urn:cairn:build-type:sandboxed-step:v1";

/// What a build produced, as the release records it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The service.
    pub service: String,
    /// The step whose output is the artifact.
    pub step: String,
    /// The artifact tree.
    pub artifact: Digest,
    /// The action that produced it (pins the command and every input).
    pub action: Digest,
    /// Every input of the build.
    pub inputs: Vec<BuiltInput>,
    /// The recipe's text (`cairn.toml`), stored with the release.
    pub recipe: Vec<u8>,
    /// Who built it (a URI).
    pub builder_id: String,
    /// When the build started and finished.
    pub started: OffsetDateTime,
    /// When it finished.
    pub finished: OffsetDateTime,
    /// The tests that gated it and the steps the artifact needed.
    pub pipeline: Pipeline,
}

/// One input of a build, as the release records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltInput {
    /// The input's name in the recipe.
    pub name: String,
    /// The tree it was mounted as.
    pub tree: Digest,
    /// For a fetch: the URL and the digest of the fetched bytes (the
    /// provenance material; the tree is what they unpacked to).
    pub fetched: Option<(String, Digest)>,
}

/// The release and provenance digests of a new release.
#[derive(Debug, Clone, Copy)]
pub struct Created {
    /// The release (its payload digest).
    pub release: Digest,
    /// The signed provenance envelope (a blob).
    pub provenance: Digest,
}

/// Signs provenance and a release for `built`, stores both, returns digests.
/// `run` and `deploy` are `[release.run]` and `[deploy]` as JSON
/// (`RunSpec::to_json`, `Deploy::to_json` in cairn-recipe).
pub async fn create_release(
    store: &Store,
    built: &Built,
    run: serde_json::Value,
    deploy: Option<serde_json::Value>,
    version: Option<String>,
    key: &SigningKey,
    now: OffsetDateTime,
) -> Result<Created, ReleaseError> {
    let recipe = store.blobs.put_bytes(built.recipe.clone()).await?;
    let trees: serde_json::Map<String, serde_json::Value> = built
        .inputs
        .iter()
        .map(|i| (i.name.clone(), json_digest(&i.tree)))
        .collect();
    let mut statement = Statement::slsa(ProvenanceInputs {
        subject_name: format!("{}/{}", built.service, built.step),
        artifact: built.artifact,
        materials: built
            .inputs
            .iter()
            .map(|i| match &i.fetched {
                Some((url, archive)) => Material {
                    name: i.name.clone(),
                    digest: *archive,
                    uri: Some(url.clone()),
                },
                None => Material {
                    name: i.name.clone(),
                    digest: i.tree,
                    uri: None,
                },
            })
            .collect(),
        builder_id: built.builder_id.clone(),
        build_type: BUILD_TYPE.into(),
        action: built.action,
        parameters: BTreeMap::from([
            (
                STEP.to_string(),
                serde_json::Value::String(built.step.clone()),
            ),
            (RECIPE.to_string(), json_digest(&recipe)),
            (INPUTS.to_string(), serde_json::Value::Object(trees)),
        ]),
        started: built.started,
        finished: built.finished,
    });
    built.pipeline.record(&mut statement);
    let mut envelope = statement.to_envelope();
    envelope.sign(key);
    let provenance = store.blobs.put_bytes(envelope.to_json()).await?;
    let release = Release {
        service: built.service.clone(),
        version: version.unwrap_or_else(|| derived_version(now, &built.artifact)),
        artifact: built.artifact,
        action: built.action,
        run,
        deploy,
        provenance,
        created: now,
    };
    let release = publish_release(store, &release, key).await?;
    Ok(Created {
        release,
        provenance,
    })
}

/// A version label when none is given: the UTC date and the artifact's
/// first eight hex digits, e.g. `2026.11.23-1a2b3c4d`.
pub fn derived_version(now: OffsetDateTime, artifact: &Digest) -> String {
    let date = now.date();
    format!(
        "{}.{:02}.{:02}-{}",
        date.year(),
        date.month() as u8,
        date.day(),
        &artifact.hex()[..8]
    )
}
