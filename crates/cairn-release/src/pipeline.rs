//! The pipeline behind a release, as its provenance records it: the test
//! steps that gated it and the platform of every step its artifact needed.
//!
//! Both go in the SLSA predicate's `buildDefinition.internalParameters`.
//! They are not inputs under the caller's control (`externalParameters`
//! holds those: the recipe, the step, the input trees), nor artifacts the
//! build read (`resolvedDependencies`): they are what the builder itself
//! established while making the release, namely that each required test's
//! action had a passing result in the action cache, and on which platform
//! each step ran (declared, so emulated when foreign; or the builder's
//! own). SLSA v1 reserves `internalParameters` for exactly such values "under
//! the control of the builder", kept for audit and incident response.
//!
//! On the wire (`internalParameters`):
//!
//! ```json
//! {
//!   "tests": [{"step": "unit", "action": "sha256:…/123", "result": "passed",
//!              "output": "sha256:…/456", "platform": "linux/amd64", "native": true}],
//!   "steps": [{"step": "build", "action": "sha256:…/789",
//!              "platform": "linux/arm64", "native": false}]
//! }
//! ```
//!
//! Digests are strings (`sha256:<hex>/<size>`, the form of
//! `externalParameters.action`), not `{"hash", "size"}` objects: copies and
//! garbage collection follow those, and a release does not keep its tests'
//! actions and reports alive. `native` is false when the step ran under
//! emulation (its declared platform is not the builder's); a step that
//! declares no platform ran natively, on the builder's platform, which
//! `platform` then names.

use std::str::FromStr;

use cairn_digest::{Digest, DigestRef};
use cairn_trust::Statement;

/// The `internalParameters` key listing the tests that gated the release.
pub const TESTS: &str = "tests";
/// The `internalParameters` key listing the steps the artifact needed.
pub const STEPS: &str = "steps";
/// The result recorded for a gating test (a release is only ever signed
/// when every required test passed).
pub const PASSED: &str = "passed";

/// A test step that gated a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatingTest {
    /// The step's name (a matrix step's expanded name).
    pub step: String,
    /// Its action digest: pins the test's command and every input.
    pub action: Digest,
    /// Its result.
    pub result: String,
    /// The tree of its `/out` (its report).
    pub output: Digest,
    /// Where it ran.
    pub platform: StepPlatform,
}

/// A step the artifact needed (the artifact's own step included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStep {
    /// The step's name.
    pub step: String,
    /// Its action digest.
    pub action: Digest,
    /// Where it ran.
    pub platform: StepPlatform,
}

/// The platform a step ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlatform {
    /// An OCI platform name (`linux/arm64`).
    pub name: String,
    /// Whether it ran natively (not under emulation).
    pub native: bool,
}

/// The pipeline a release's provenance records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    /// The tests that gated it, in the order `[release] requires` resolved
    /// to.
    pub tests: Vec<GatingTest>,
    /// The steps its artifact needed, in the order they ended.
    pub steps: Vec<PipelineStep>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTest {
    step: String,
    action: String,
    result: String,
    output: String,
    platform: String,
    native: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStep {
    step: String,
    action: String,
    platform: String,
    native: bool,
}

impl Pipeline {
    /// Writes the pipeline into `statement`'s `internalParameters`.
    pub fn record(&self, statement: &mut Statement) {
        let tests: Vec<WireTest> = self
            .tests
            .iter()
            .map(|t| WireTest {
                step: t.step.clone(),
                action: format!("{:#}", t.action),
                result: t.result.clone(),
                output: format!("{:#}", t.output),
                platform: t.platform.name.clone(),
                native: t.platform.native,
            })
            .collect();
        let steps: Vec<WireStep> = self
            .steps
            .iter()
            .map(|s| WireStep {
                step: s.step.clone(),
                action: format!("{:#}", s.action),
                platform: s.platform.name.clone(),
                native: s.platform.native,
            })
            .collect();
        let mut map = serde_json::Map::new();
        map.insert(TESTS.into(), serde_json::to_value(tests).expect("plain"));
        map.insert(STEPS.into(), serde_json::to_value(steps).expect("plain"));
        let def = &mut statement.predicate.build_definition;
        def.internal_parameters
            .get_or_insert_with(Default::default)
            .extend(map);
    }

    /// Reads the pipeline back from `statement` (empty for a release made
    /// before pipelines were recorded); `Err` says what is malformed.
    pub fn read(statement: &Statement) -> Result<Self, String> {
        let Some(params) = &statement.predicate.build_definition.internal_parameters else {
            return Ok(Self::default());
        };
        let list = |key: &str| params.get(key).cloned().unwrap_or_default();
        let tests: Vec<WireTest> = match list(TESTS) {
            serde_json::Value::Null => Vec::new(),
            v => serde_json::from_value(v).map_err(|e| format!("{TESTS}: {e}"))?,
        };
        let steps: Vec<WireStep> = match list(STEPS) {
            serde_json::Value::Null => Vec::new(),
            v => serde_json::from_value(v).map_err(|e| format!("{STEPS}: {e}"))?,
        };
        let tests = tests
            .into_iter()
            .map(|t| {
                Ok(GatingTest {
                    action: full_digest(&t.action)?,
                    output: full_digest(&t.output)?,
                    step: t.step,
                    result: t.result,
                    platform: StepPlatform {
                        name: t.platform,
                        native: t.native,
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        let steps = steps
            .into_iter()
            .map(|s| {
                Ok(PipelineStep {
                    action: full_digest(&s.action)?,
                    step: s.step,
                    platform: StepPlatform {
                        name: s.platform,
                        native: s.native,
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { tests, steps })
    }
}

/// `sha256:<hex>/<size>` as a digest; the size is required.
fn full_digest(text: &str) -> Result<Digest, String> {
    let parsed = DigestRef::from_str(text).map_err(|e| format!("{text:?}: {e}"))?;
    let size = parsed
        .size
        .ok_or_else(|| format!("{text:?} has no size (sha256:<hex>/<size>)"))?;
    Ok(parsed.with_size(size))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_trust::document::ProvenanceInputs;
    use time::macros::datetime;

    use super::*;

    fn statement() -> Statement {
        Statement::slsa(ProvenanceInputs {
            subject_name: "s/build".into(),
            artifact: Digest::of(b"artifact"),
            materials: Vec::new(),
            builder_id: "urn:test".into(),
            build_type: "urn:test".into(),
            action: Digest::of(b"action"),
            parameters: BTreeMap::new(),
            started: datetime!(2026-01-01 0:00 UTC),
            finished: datetime!(2026-01-01 0:01 UTC),
        })
    }

    #[test]
    fn a_release_made_before_pipelines_reads_as_none() {
        assert_eq!(Pipeline::read(&statement()), Ok(Pipeline::default()));
    }

    #[test]
    fn a_test_without_a_sized_digest_or_with_unknown_fields_is_malformed() {
        let mut st = statement();
        let hex = Digest::of(b"a").hex();
        let mut params = serde_json::Map::new();
        params.insert(
            TESTS.into(),
            serde_json::json!([{"step": "unit", "action": format!("sha256:{hex}"),
                "result": "passed", "output": format!("sha256:{hex}/1"),
                "platform": "linux/amd64", "native": true}]),
        );
        st.predicate.build_definition.internal_parameters = Some(params.clone());
        let err = Pipeline::read(&st).unwrap_err();
        assert!(err.contains("has no size"), "{err}");

        params.insert(
            TESTS.into(),
            serde_json::json!([{"step": "unit", "extra": 1}]),
        );
        st.predicate.build_definition.internal_parameters = Some(params);
        let err = Pipeline::read(&st).unwrap_err();
        assert!(err.starts_with("tests:"), "{err}");
    }
}
