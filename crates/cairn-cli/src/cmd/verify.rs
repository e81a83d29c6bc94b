//! `cairn verify RELEASE`: an independent rebuild from the release alone.
//!
//! The release's provenance records the recipe it was built from and the
//! tree each input was mounted as (see `cairn_release::recorded`); all of
//! them are fetched from the store by digest, so verification works in any
//! directory, with no checkout of the source, on any machine that reaches
//! the store. Every step is run again with the action cache bypassed
//! (locally and remotely); the release step must compile to the release's
//! action (so the rebuild used exactly the recorded inputs) and its output
//! must be the released artifact, byte for byte. An input whose bytes the
//! store lacks is named, with how to provide it.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use cairn_build::{BuildOptions, Builder};
use cairn_digest::Digest;
use cairn_release::load_release;
use cairn_store::BlobStoreExt;
use cairn_transfer::{copy_closure, CopyOptions, Kind, TransferError};

use super::Workspace;
use crate::cli::{Global, VerifyArgs};
use crate::output::{emit, name, Detailed};

/// Runs `cairn verify`.
pub async fn run(global: &Global, args: VerifyArgs) -> Result<i32> {
    let ws = Workspace::open(global, super::Access::Existing).await?;
    let digest = ws.digest(&args.release).await?;
    ws.pull(digest, Kind::Leaf).await?;
    let release = load_release(&ws.store, &digest).await?.release;
    ws.pull(release.provenance, Kind::Leaf).await?;
    let recorded = cairn_release::recorded(&ws.cache, &release).await?;
    let Some(recipe) = recorded.recipe else {
        bail!("release {digest} records no recipe (it was made by an earlier cairn), so it cannot be rebuilt from the release alone; make the release again");
    };
    ws.pull(recipe, Kind::Leaf).await?;
    let text = String::from_utf8(ws.cache.blobs.get_bytes(&recipe).await?)
        .with_context(|| format!("recipe {recipe} of release {digest} is not UTF-8"))?;
    for (name, tree) in &recorded.inputs {
        provide(&ws, &args.release, name, tree).await?;
    }
    let reporter = Arc::new(super::build::Live::new());
    let builder = Builder::from_recorded(
        ws.cache.clone(),
        &format!("recipe {recipe} (release {digest})"),
        &text,
        &recorded.inputs,
    )?
    .with_reporter(reporter.clone());
    let step = match recorded.step {
        Some(s) => s,
        None => builder.default_step()?,
    };
    let options = BuildOptions {
        check: false,
        no_cache: true,
    };
    let built = builder.build(&step, options).await;
    reporter.bar.finish_and_clear();
    let report = match built {
        Ok(r) => r,
        Err(e) => return super::build::failure(&ws.fs, e, global.json),
    };
    let last = report.last();
    if last.action_digest != release.action {
        bail!(
            "the recorded recipe compiles to action {}, but release {digest} was built by {}: the release's records do not match",
            last.action_digest,
            release.action
        );
    }
    let out = serde_json::json!({
        "reproduced": last.output == release.artifact,
        "release": digest.to_string(),
        "service": release.service,
        "version": release.version,
        "artifact": release.artifact.to_string(),
        "rebuilt": last.output.to_string(),
    });
    if last.output == release.artifact {
        emit(global.json, &out, |_| {
            format!(
                "reproduced: {} ({} {})",
                release.artifact,
                release.service,
                name(&release.version)
            )
        });
        return Ok(0);
    }
    // The artifact may not be in the cache yet; the differences need it.
    ws.pull(release.artifact, Kind::Tree).await?;
    let mut details = Vec::new();
    for d in cairn_build::compare::differences(&ws.fs, &release.artifact, &last.output)? {
        let show = |e: &Option<cairn_build::compare::Entry>| {
            e.as_ref().map_or("(absent)".into(), |e| e.to_string())
        };
        details.push(format!(
            "{}: released {} != rebuilt {}",
            d.path,
            show(&d.before),
            show(&d.after)
        ));
    }
    Err(Detailed::new(
        format!(
            "not reproduced: rebuilt {} but release {digest} has {}",
            last.output, release.artifact
        ),
        details,
    )
    .into())
}

/// Makes input `name`'s recorded tree whole in the cache, or says which
/// input the store lacks and how to provide it.
async fn provide(ws: &Workspace, release: &str, name: &str, tree: &Digest) -> Result<()> {
    let url = ws.url_for_messages();
    let missing = |what: String| {
        anyhow!(
            "input `{name}` of the release: {what} is not in the store {url}; copy the release there from a store that holds it (`cairn --store OTHER store copy {release} --to {url}`), or add the same source there (`cairn --store {url} store add DIR`)"
        )
    };
    if !ws.store.blobs.has(tree).await? {
        return Err(missing(format!("its tree {tree}")));
    }
    if !ws.is_remote() {
        let whole = ws.store.blobs.has_closures(&[(*tree, Kind::Tree)]).await?;
        if whole == Some(vec![false]) {
            return Err(missing(format!("part of its tree {tree}")));
        }
        return Ok(());
    }
    let copied = copy_closure(
        &ws.store,
        &ws.cache,
        *tree,
        Kind::Tree,
        &CopyOptions::default(),
        &(),
    )
    .await;
    match copied {
        Ok(_) => Ok(()),
        Err(TransferError::Missing(d)) => Err(missing(format!("blob {d} of its tree {tree}"))),
        Err(e) => Err(e).with_context(|| format!("copying input `{name}` ({tree}) from {url}")),
    }
}
