//! What a release says it was built from, read back from its provenance:
//! the recipe, the step, and the tree each input was mounted as.
//!
//! This is what an independent rebuild starts from (`cairn verify`): the
//! recipe as it was when the release was made, with every input replaced
//! by the tree it recorded, all fetched from the store by digest, so no
//! checkout of the source is needed and a later change to it changes
//! nothing.

use std::collections::BTreeMap;

use cairn_digest::Digest;
use cairn_store::{BlobStoreExt, Store};
use cairn_trust::{Document, Envelope, Release, Statement};

use crate::create::{INPUTS, RECIPE, STEP};
use crate::error::ReleaseError;
use crate::pipeline::Pipeline;

/// A release's recorded build.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The provenance statement.
    pub provenance: Statement,
    /// The step whose output is the artifact.
    pub step: Option<String>,
    /// The recipe blob (`None` for a release made before recipes were
    /// recorded).
    pub recipe: Option<Digest>,
    /// Each input's tree, by input name.
    pub inputs: BTreeMap<String, Digest>,
    /// The tests that gated it and the platform of each step (empty for a
    /// release made before they were recorded).
    pub pipeline: Pipeline,
}

/// Reads `release`'s provenance from `store` (which must hold its blob).
pub async fn recorded(store: &Store, release: &Release) -> Result<Recorded, ReleaseError> {
    let what = || format!("provenance {}", release.provenance);
    let malformed = |reason: String| ReleaseError::Malformed {
        what: what(),
        reason,
    };
    let bytes = store.blobs.get_bytes(&release.provenance).await?;
    let envelope = Envelope::from_json(&bytes).map_err(|e| malformed(e.to_string()))?;
    let provenance =
        Statement::from_payload(&envelope.payload).map_err(|e| malformed(e.to_string()))?;
    let params = &provenance.predicate.build_definition.external_parameters;
    let digest = |v: &serde_json::Value, name: &str| {
        serde_json::from_value::<Digest>(v.clone())
            .map_err(|e| malformed(format!("{name} is not a digest: {e}")))
    };
    let recipe = params.get(RECIPE).map(|v| digest(v, RECIPE)).transpose()?;
    let mut inputs = BTreeMap::new();
    if let Some(map) = params.get(INPUTS) {
        let map = map
            .as_object()
            .ok_or_else(|| malformed(format!("{INPUTS} is not an object")))?;
        for (name, tree) in map {
            inputs.insert(name.clone(), digest(tree, &format!("input {name:?}"))?);
        }
    }
    let pipeline = Pipeline::read(&provenance).map_err(malformed)?;
    let step = params.get(STEP).and_then(|s| s.as_str()).map(str::to_owned);
    Ok(Recorded {
        provenance,
        step,
        recipe,
        inputs,
        pipeline,
    })
}
