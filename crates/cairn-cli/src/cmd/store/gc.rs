//! `cairn store gc`: delete blobs no ref reaches, older than the grace period.

use std::time::Duration;

use anyhow::Result;
use cairn_store::gc::collect_garbage;
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
    removed: Vec<String>,
    removed_bytes: u64,
}

pub async fn run(global: &Global, ws: &Workspace, grace: Duration, dry_run: bool) -> Result<i32> {
    ws.local_only("store gc")?;
    let report = collect_garbage(&ws.fs, grace, dry_run).await?;
    let result = Collected {
        dry_run,
        blobs: report.blobs,
        live: report.live,
        young: report.young,
        removed: report.removed.iter().map(|d| d.to_string()).collect(),
        removed_bytes: report.removed_bytes,
    };
    emit(global.json, &result, |r| {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        format!(
            "{verb} {} blobs ({} bytes); kept {} reachable and {} younger than the grace period",
            r.removed.len(),
            r.removed_bytes,
            r.live,
            r.young
        )
    });
    Ok(0)
}
