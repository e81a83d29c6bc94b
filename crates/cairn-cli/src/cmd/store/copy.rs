//! `cairn store copy DIGEST --to URL`: copy a closure into another store.
//!
//! The source is the global `--store`; the destination is opened with its
//! checks (for S3, credentials and conditional writes; for a server, its
//! health and `--token`) before anything moves, and created if it is a
//! local directory not yet a store. Prints `copied N of M blobs (B bytes)`, or the whole
//! report with `--json`.

use anyhow::{Context, Result};
use cairn_digest::Digest;
use cairn_transfer::{copy_closure, CopyOptions, CopyReport, Kind};

use super::super::Workspace;
use crate::cli::{CopyKind, Global};
use crate::output::{emit, Progress};

/// Shows bytes copied on the progress bar.
struct Bar(Progress);

impl cairn_transfer::Progress for Bar {
    fn copied(&self, _digest: &Digest, size: u64) {
        cairn_snapshot::Progress::advance(&self.0, 1, size);
    }
}

pub async fn run(
    global: &Global,
    ws: &Workspace,
    text: &str,
    to: &str,
    kind: CopyKind,
) -> Result<i32> {
    let root = ws.digest(text)?;
    let store = &ws.store;
    // --token (CAIRN_TOKEN) goes to the destination too: copying from a
    // local store to a `cairn server` needs write access there.
    let dest = super::super::connect(to, global, super::super::Access::Create)
        .await
        .context("opening the destination")?;
    let kind = match kind {
        CopyKind::Tree => Kind::Tree,
        CopyKind::Blob => Kind::Leaf,
        CopyKind::Unknown => Kind::Unknown,
    };
    let bar = Bar(Progress::new("copying", None));
    let report = copy_closure(store, &dest, root, kind, &CopyOptions::default(), &bar).await;
    bar.0.finish();
    let report = report.with_context(|| format!("copying {root} to {to}"))?;
    emit(global.json, &report, |r: &CopyReport| {
        format!(
            "copied {} of {} blobs ({} bytes)",
            r.blobs_copied, r.blobs_total, r.bytes_copied
        )
    });
    Ok(0)
}
