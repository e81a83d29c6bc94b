//! `cairn store copy WHAT --to URL`: copy a closure, a release or a
//! channel into another store.
//!
//! The source is the global `--store`; the destination is opened with its
//! checks (for S3, credentials and conditional writes; for a server, its
//! health and the token) before anything moves, and created if it is a
//! local directory not yet a store. A digest whose blob is a release
//! document, or a `releases/<service>/<hex>` ref, is copied as a release
//! (`cairn_release::copy_release`); a `channels/<service>/<channel>` ref as
//! a channel (`cairn_release::copy_channel`); anything else as the closure
//! of a tree or blob. Prints what moved, or the whole report with `--json`.

use anyhow::{bail, Context, Result};
use cairn_release::{copy_channel, copy_release, ChannelCopy, ChannelMove};
use cairn_store::{BlobStoreExt, Store};
use cairn_transfer::{copy_closure, CopyOptions, CopyReport, Kind};
use cairn_trust::{Document, Release};
use serde::Serialize;

use super::super::Workspace;
use crate::cli::{CopyKind, Global};
use crate::output::emit;
use crate::reporter::Transfer;

/// Release documents are small; a larger blob is never read to check.
const MAX_RELEASE_DOCUMENT: u64 = 1 << 20;

#[derive(Serialize)]
struct CopiedRelease<'a> {
    release: String,
    service: &'a str,
    version: &'a str,
    #[serde(flatten)]
    report: &'a CopyReport,
}

pub async fn run(
    global: &Global,
    ws: &Workspace,
    text: &str,
    to: &str,
    kind: CopyKind,
) -> Result<i32> {
    // The token (--token-file, CAIRN_TOKEN) goes to the destination too: copying from a
    // local store to a `cairn server` needs write access there.
    let dest = super::super::connect(to, global, super::super::Access::Create)
        .await
        .context("opening the destination")?;
    let store = &ws.store;
    let progress = Transfer::new(&format!("copying to {to}"));
    if let Some(rest) = text.strip_prefix("channels/") {
        let Some((service, channel)) = rest.split_once('/') else {
            bail!("{text:?} is not a channel: write channels/<service>/<channel>");
        };
        let options = CopyOptions::default();
        let copied = copy_channel(store, &dest, service, channel, &options, &progress).await;
        progress.finish();
        let copied = copied.with_context(|| format!("copying {text} to {to}"))?;
        emit(global.json, &copied, |c| channel_text(text, to, c));
        return Ok(0);
    }
    let root = ws.digest(text).await?;
    if let Some(release) = release_document(store, &root).await? {
        let report = copy_release(store, &dest, &root, &CopyOptions::default(), &progress).await;
        progress.finish();
        let report = report.with_context(|| format!("copying release {root} to {to}"))?;
        let out = CopiedRelease {
            release: root.to_string(),
            service: &release.service,
            version: &release.version,
            report: &report,
        };
        emit(global.json, &out, |o| {
            format!(
                "copied release {} ({} {}) with its provenance, artifact, action, recipe and inputs: {} of {} blobs ({} bytes)",
                o.release, o.service, o.version, report.blobs_copied, report.blobs_total, report.bytes_copied
            )
        });
        return Ok(0);
    }
    let kind = match kind {
        CopyKind::Tree => Kind::Tree,
        CopyKind::Blob => Kind::Leaf,
        CopyKind::Unknown => Kind::Unknown,
    };
    let report = copy_closure(store, &dest, root, kind, &CopyOptions::default(), &progress).await;
    progress.finish();
    let report = report.with_context(|| format!("copying {root} to {to}"))?;
    emit(global.json, &report, |r: &CopyReport| {
        format!(
            "copied {} of {} blobs ({} bytes)",
            r.blobs_copied, r.blobs_total, r.bytes_copied
        )
    });
    Ok(0)
}

/// The release document `root` is, if it is one.
async fn release_document(store: &Store, root: &cairn_digest::Digest) -> Result<Option<Release>> {
    if root.size() > MAX_RELEASE_DOCUMENT {
        return Ok(None);
    }
    let bytes = store.blobs.get_bytes(root).await?;
    Ok(Release::from_payload(&bytes).ok())
}

fn channel_text(what: &str, to: &str, c: &ChannelCopy) -> String {
    let change = match c.channel {
        ChannelMove::Created => "created".to_string(),
        ChannelMove::FastForwarded { from } => format!("moved forward from #{from}"),
        ChannelMove::Signed => "given the signatures it lacked".to_string(),
        ChannelMove::UpToDate => "already up to date".to_string(),
    };
    let mut text = format!(
        "copied {what} (#{}, {} statements, {} releases) to {to}: {change}; {} of {} blobs ({} bytes)",
        c.sequence,
        c.statements,
        c.releases.len(),
        c.blobs.blobs_copied,
        c.blobs.blobs_total,
        c.blobs.bytes_copied
    );
    if !c.skipped.is_empty() {
        text.push_str(&format!(
            "\nskipped {} old releases the source no longer holds",
            c.skipped.len()
        ));
    }
    text
}
