//! `cairn verify RELEASE`: an independent rebuild.
//!
//! Every step is run again on this machine with the action cache bypassed;
//! the recipe here must compile to the release's action (so the rebuild
//! used exactly the pinned inputs), and the output must be the released
//! artifact, byte for byte. With a remote store the release is read from
//! the remote and the rebuild runs in the local cache; pinned inputs the
//! cache lacks come from the remote, but no step's result does (the
//! action cache is bypassed both locally and remotely).

use anyhow::{bail, Result};
use cairn_build::BuildOptions;
use cairn_release::load_release;
use cairn_transfer::Kind;

use super::Workspace;
use crate::cli::{Global, VerifyArgs};

/// Runs `cairn verify`.
pub async fn run(global: &Global, args: VerifyArgs) -> Result<i32> {
    let ws = Workspace::open(global, super::Access::Existing).await?;
    let fs = &ws.fs;
    let digest = ws.digest(&args.release)?;
    ws.pull(digest, Kind::Unknown).await?;
    let release = load_release(&ws.store, &digest).await?.release;
    let reporter = std::sync::Arc::new(super::build::Live::new());
    let builder = ws
        .builder(&args.recipe.path())?
        .with_reporter(reporter.clone());
    let Some(spec) = builder.recipe().release.clone() else {
        bail!("{} has no [release] table", args.recipe.path().display());
    };
    let options = BuildOptions {
        check: false,
        no_cache: true,
    };
    let built = builder.build(spec.step.as_str(), options).await;
    reporter.bar.finish_and_clear();
    let report = match built {
        Ok(r) => r,
        Err(e) => return super::build::failure(fs, e),
    };
    let last = report.last();
    if last.action_digest != release.action {
        bail!(
            "the recipe at {} does not pin the release's inputs: it compiles to action {}, the release was built by {}",
            args.recipe.path().display(),
            last.action_digest,
            release.action
        );
    }
    if last.output == release.artifact {
        println!(
            "reproduced: {} ({} {})",
            release.artifact, release.service, release.version
        );
        return Ok(0);
    }
    eprintln!(
        "error: not reproduced: rebuilt {} but release {digest} has {}",
        last.output, release.artifact
    );
    for d in cairn_build::compare::differences(fs, &release.artifact, &last.output)? {
        let show = |e: &Option<cairn_build::compare::Entry>| {
            e.as_ref().map_or("(absent)".into(), |e| e.to_string())
        };
        eprintln!(
            "  {}: released {} != rebuilt {}",
            d.path,
            show(&d.before),
            show(&d.after)
        );
    }
    Ok(1)
}
