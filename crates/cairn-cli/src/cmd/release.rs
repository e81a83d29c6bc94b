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
use cairn_release::{create_release, load_release, release_ref, Built, BuiltInput};
use cairn_store::Store;
use cairn_transfer::Kind;
use serde::Serialize;
use time::OffsetDateTime;

use super::build::Live;
use super::Workspace;
use crate::cli::{Global, ReleaseArgs, ReleaseCommand};
use crate::output::emit;

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
    let builder = ws.builder(&recipe_path)?.with_reporter(reporter.clone());
    let Some(release_spec) = builder.recipe().release.clone() else {
        bail!(
            "{} has no [release] table: nothing says which step is the artifact",
            recipe_path.display()
        );
    };
    let step = args.step.unwrap_or_else(|| release_spec.step.to_string());
    let started = OffsetDateTime::now_utc();
    // `[release] requires`: each test must have passed on these inputs.
    if let Err(e) = builder.require_passed(&release_spec.requires).await {
        reporter.bar.finish_and_clear();
        return super::build::failure(&ws.fs, e, global.json);
    }
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
            Some(name) => format!("{name} ({id})"),
            None => id.clone(),
        })
        .collect();
    let out = serde_json::json!({
        "release": digest.to_string(),
        "document": serde_json::from_slice::<serde_json::Value>(&loaded.envelope.payload)?,
        "signed_by": signers,
    });
    emit(global.json, &out, |_| {
        format!(
            "release   {digest}\nservice   {}\nversion   {}\nartifact  {}\naction    {}\nprovenance {}\ncreated   {created}\nrun       {}\nsigned by {}",
            r.service,
            r.version,
            r.artifact,
            r.action,
            r.provenance,
            r.run,
            named.join(", ")
        )
    });
    Ok(0)
}
