//! `cairn store checkout DIGEST DIR`: materialize a tree.

use std::path::Path;

use anyhow::Result;
use cairn_snapshot::{materialize, MaterializeOptions};
use cairn_store::Store;
use serde::Serialize;

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
    store: &Store,
    text: &str,
    dir: &Path,
    copy: bool,
) -> Result<i32> {
    let fs = super::super::local(store, "store checkout")?;
    let digest = super::super::parse_digest(store, text)?;
    let progress = Progress::new("checking out", None);
    let files = materialize(fs, &digest, dir, MaterializeOptions { copy }, &progress);
    progress.finish();
    let result = CheckedOut {
        digest: digest.to_string(),
        dir: dir.display().to_string(),
        files: files?,
    };
    emit(global.json, &result, |_| String::new());
    Ok(0)
}
