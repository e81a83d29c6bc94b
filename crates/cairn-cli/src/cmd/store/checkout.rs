//! `cairn store checkout DIGEST DIR`: materialize a tree (from a remote
//! store: after copying what the local cache lacks), each file its own
//! copy unless `--link` asks for hard links into the store.

use std::path::Path;

use anyhow::Result;
use cairn_snapshot::{materialize, MaterializeOptions, Placement};
use cairn_transfer::Kind;
use serde::Serialize;

use super::super::Workspace;
use crate::cli::Global;
use crate::output::{emit, Progress};

#[derive(Serialize)]
struct CheckedOut {
    digest: String,
    dir: String,
    files: u64,
}

pub async fn run(
    global: &Global,
    ws: &Workspace,
    text: &str,
    dir: &Path,
    link: bool,
) -> Result<i32> {
    let digest = ws.digest(text).await?;
    ws.pull(digest, Kind::Tree).await?;
    super::require_tree(ws, &digest)?;
    let progress = Progress::new("checking out", None);
    let placement = if link {
        Placement::Link
    } else {
        Placement::Copy
    };
    let files = materialize(
        &ws.fs,
        &digest,
        dir,
        MaterializeOptions { placement },
        &progress,
    );
    progress.finish();
    let result = CheckedOut {
        digest: digest.to_string(),
        dir: dir.display().to_string(),
        files: files?,
    };
    emit(global.json, &result, |_| String::new());
    Ok(0)
}
