//! `cairn store gc`: delete what nothing keeps (see `cairn_store::gc`):
//! blobs no ref or recent claim reaches, older than the grace period, and
//! the derived data and leftovers that would keep their bytes on disk.

use std::time::Duration;

use anyhow::Result;
use cairn_store::fs::Swept;
use cairn_store::gc::{collect_garbage, GcOptions};
use serde::Serialize;

use super::super::Workspace;
use crate::cli::Global;
use crate::output::emit;

#[derive(Serialize)]
struct Collected {
    dry_run: bool,
    blobs: u64,
    live: u64,
    young: u64,
    spared: u64,
    removed: Vec<String>,
    removed_bytes: u64,
    temp: Removed,
    caches: Caches,
    expired_claim_files: u64,
    freed_bytes: u64,
}

#[derive(Serialize)]
struct Caches {
    trees: Removed,
    exec: Removed,
    logs: Removed,
    stat: Removed,
}

#[derive(Serialize)]
struct Removed {
    entries: u64,
    bytes: u64,
}

impl From<Swept> for Removed {
    fn from(s: Swept) -> Self {
        Self {
            entries: s.entries,
            bytes: s.bytes,
        }
    }
}

pub async fn run(global: &Global, ws: &Workspace, grace: Duration, dry_run: bool) -> Result<i32> {
    ws.local_only("store gc")?;
    let report = collect_garbage(&ws.fs, &GcOptions { grace, dry_run }).await?;
    let caches = report.caches.total();
    let result = Collected {
        dry_run,
        blobs: report.blobs,
        live: report.live,
        young: report.young,
        spared: report.spared,
        removed: report.removed.iter().map(|d| d.to_string()).collect(),
        removed_bytes: report.removed_bytes,
        temp: report.temp.into(),
        caches: Caches {
            trees: report.caches.trees.into(),
            exec: report.caches.exec.into(),
            logs: report.caches.logs.into(),
            stat: report.caches.stat.into(),
        },
        expired_claim_files: report.expired_claim_files,
        freed_bytes: report.freed_bytes(),
    };
    emit(global.json, &result, |r| {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        format!(
            "{verb} {} blobs ({} bytes), {} cache entries ({} bytes) and {} leftovers of \
             interrupted commands ({} bytes); kept {} reachable and {} younger than the grace period",
            r.removed.len(),
            r.removed_bytes,
            caches.entries,
            caches.bytes,
            r.temp.entries,
            r.temp.bytes,
            r.live,
            r.young
        )
    });
    Ok(0)
}
