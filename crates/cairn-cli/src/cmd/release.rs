//! `cairn release [STEP] --key NAME` and `cairn release show DIGEST`.
//!
//! A release is built (from the action cache when it can be), then its
//! SLSA provenance and the release document are signed in this process,
//! outside every sandbox, and stored. With a remote store the build and
//! signing happen in the local cache, the build with the remote as its
//! remote cache (as `cairn build`: the artifact may come from the remote's
//! action cache, and a step that runs is published there), then the
//! release's closure and its envelope ref are copied to the remote.
//!
//! `[release] requires = ["steps.unit", …]` gates signing: each named test
//! must have passed on the inputs the release is built from, which is a
//! complete action-cache entry for the test's action (a failed test is
//! never cached). Nothing of the tests runs here; `cairn test` runs them.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_build::BuildOptions;
use cairn_build::StepReport;
use cairn_recipe::{Platform, Recipe};
use cairn_release::{
    create_release, load_release, recorded, release_ref, Built, BuiltInput, GatingTest, Pipeline,
    PipelineStep, StepPlatform, PASSED,
};
use cairn_store::Store;
use cairn_transfer::Kind;
use serde::Serialize;
use time::OffsetDateTime;

use super::build::Live;
use super::Workspace;
use crate::cli::{Global, ReleaseArgs, ReleaseCommand};
use crate::output::{emit, name};

#[derive(Serialize)]
struct Released {
    release: String,
    service: String,
    version: String,
    artifact: String,
    action: String,
    provenance: String,
}

/// Runs `cairn release`.
pub async fn run(global: &Global, args: ReleaseArgs) -> Result<i32> {
    if let Some(ReleaseCommand::Show { release }) = args.command {
        let ws = Workspace::open(global, super::Access::Existing).await?;
        return show(global, &ws, &release).await;
    }
    let ws = Workspace::open(global, super::Access::Create).await?;
    let store = ws.cache.clone();
    let Some(key_name) = args.key else {
        bail!("say which key signs the release: cairn release --key NAME (see `cairn key list`)");
    };
    let key =
        cairn_keyring::load_signing(&cairn_keyring::keys_dir(global.keys.clone())?, &key_name)?;
    let reporter = Arc::new(Live::new());
    let recipe_path = super::build::recipe_file(&args.recipe)?;
    // A release records its input trees: they are checked whole in the
    // store even when every step is cached.
    let builder = ws
        .builder(&recipe_path)?
        .with_reporter(reporter.clone())
        .verifying_inputs();
    let Some(release_spec) = builder.recipe().release.clone() else {
        bail!(
            "{} has no [release] table: nothing says which step is the artifact",
            recipe_path.display()
        );
    };
    let step = args.step.unwrap_or_else(|| release_spec.step.to_string());
    let started = OffsetDateTime::now_utc();
    // `[release] requires`: each test must have passed on these inputs.
    let gates = match builder.require_passed(&release_spec.requires).await {
        Ok(gates) => gates,
        Err(e) => {
            reporter.bar.finish_and_clear();
            return super::build::failure(&ws.fs, e, global.json);
        }
    };
    let built = builder.build(&step, BuildOptions::default()).await;
    reporter.bar.finish_and_clear();
    let report = match built {
        Ok(r) => r,
        Err(e) => return super::build::failure(&ws.fs, e, global.json),
    };
    let finished = OffsetDateTime::now_utc();
    let last = report.last();
    let inputs = builder.inputs(&step).await?;
    let built = Built {
        service: builder.recipe().service.to_string(),
        step: step.clone(),
        artifact: last.output,
        action: last.action_digest,
        inputs: inputs
            .into_iter()
            .map(|i| BuiltInput {
                name: i.name,
                tree: i.tree,
                fetched: i.fetched,
            })
            .collect(),
        recipe: std::fs::read(&recipe_path)
            .with_context(|| format!("reading {}", recipe_path.display()))?,
        builder_id: builder_id(),
        started,
        finished,
        pipeline: pipeline(builder.recipe(), &gates, &report.steps),
    };
    let run = release_spec.run.to_json();
    let deploy = builder.recipe().deploy.as_ref().map(|d| d.to_json());
    let created = create_release(&store, &built, run, deploy, args.version, &key, finished).await?;
    let loaded = load_release(&store, &created.release).await?;
    ws.push(created.release, Kind::Unknown).await?;
    ws.push_ref(&release_ref(&built.service, &created.release)?)
        .await?;
    let out = Released {
        release: created.release.to_string(),
        service: built.service,
        version: loaded.release.version,
        artifact: built.artifact.to_string(),
        action: built.action.to_string(),
        provenance: created.provenance.to_string(),
    };
    emit(global.json, &out, |o| o.release.clone());
    Ok(0)
}

/// What the provenance records of the pipeline: the tests that gated the
/// release (each passed: `require_passed` refuses otherwise) and every
/// step the artifact needed, each with the platform it ran on.
fn pipeline(recipe: &Recipe, gates: &[StepReport], steps: &[StepReport]) -> Pipeline {
    Pipeline {
        tests: gates
            .iter()
            .map(|t| GatingTest {
                step: t.name.clone(),
                action: t.action_digest,
                result: PASSED.into(),
                output: t.output,
                platform: step_platform(recipe, &t.name),
            })
            .collect(),
        steps: steps
            .iter()
            .map(|s| PipelineStep {
                step: s.name.clone(),
                action: s.action_digest,
                platform: step_platform(recipe, &s.name),
            })
            .collect(),
    }
}

/// The platform `step` ran on: the one it declares (emulated unless it is
/// this machine's), else this machine's.
fn step_platform(recipe: &Recipe, step: &str) -> StepPlatform {
    let host = Platform::host();
    let declared = recipe.steps.get(step).and_then(|s| s.platform);
    match (declared, host) {
        (Some(p), host) => StepPlatform {
            name: p.as_str().to_owned(),
            native: Some(p) == host,
        },
        (None, Some(h)) => StepPlatform {
            name: h.as_str().to_owned(),
            native: true,
        },
        (None, None) => StepPlatform {
            name: format!("linux/{}", std::env::consts::ARCH),
            native: true,
        },
    }
}

/// `release show`'s lines for the gating tests and the steps' platforms.
fn pipeline_text(pipeline: &Pipeline) -> String {
    let ran = |p: &StepPlatform| {
        let how = if p.native { "native" } else { "emulated" };
        format!("{} ({how})", name(&p.name))
    };
    let mut text = String::new();
    if pipeline.steps.is_empty() {
        // Every release since pipelines were recorded lists its own step.
        return "\npipeline  not recorded (a release made before provenance listed it)".into();
    }
    if pipeline.tests.is_empty() {
        text.push_str("\ntests     none required");
    }
    for t in &pipeline.tests {
        text += &format!(
            "\ntest      {} {} action {} on {}",
            name(&t.step),
            name(&t.result),
            t.action,
            ran(&t.platform)
        );
    }
    for s in &pipeline.steps {
        text += &format!(
            "\nstep      {} action {} on {}",
            name(&s.step),
            s.action,
            ran(&s.platform)
        );
    }
    text
}

/// The builder id recorded in provenance: this program on this host.
fn builder_id() -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("urn:cairn:builder:{}:{}", env!("CARGO_PKG_VERSION"), host)
}

async fn show(global: &Global, ws: &Workspace, text: &str) -> Result<i32> {
    let store: &Store = &ws.store;
    let digest = ws.digest(text).await?;
    let loaded = load_release(store, &digest)
        .await
        .with_context(|| format!("reading release {digest}"))?;
    let r = &loaded.release;
    let signers: Vec<String> = loaded
        .envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect();
    let created = r
        .created
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let names = super::channel::key_names(global);
    let named: Vec<String> = signers
        .iter()
        .map(|id| match names.get(id) {
            Some(key) => format!("{} ({})", name(key), name(id)),
            None => name(id),
        })
        .collect();
    let pipeline = recorded(store, r)
        .await
        .with_context(|| format!("reading the provenance of release {digest}"))?
        .pipeline;
    let out = serde_json::json!({
        "release": digest.to_string(),
        "document": serde_json::from_slice::<serde_json::Value>(&loaded.envelope.payload)?,
        "signed_by": signers,
        "tests": pipeline.tests.iter().map(|t| serde_json::json!({
            "step": t.step,
            "action": t.action.to_string(),
            "result": t.result,
            "output": t.output.to_string(),
            "platform": t.platform.name,
            "native": t.platform.native,
        })).collect::<Vec<_>>(),
        "steps": pipeline.steps.iter().map(|s| serde_json::json!({
            "step": s.step,
            "action": s.action.to_string(),
            "platform": s.platform.name,
            "native": s.platform.native,
        })).collect::<Vec<_>>(),
    });
    // The release is the store's: a store writer may have put any text
    // in it (signed or not), so its words are shown escaped.
    emit(global.json, &out, |_| {
        format!(
            "release   {digest}\nservice   {}\nversion   {}\nartifact  {}\naction    {}\nprovenance {}\ncreated   {created}\nrun       {}\nsigned by {}",
            name(&r.service),
            name(&r.version),
            r.artifact,
            r.action,
            r.provenance,
            r.run,
            named.join(", ")
        ) + &pipeline_text(&pipeline)
    });
    Ok(0)
}
