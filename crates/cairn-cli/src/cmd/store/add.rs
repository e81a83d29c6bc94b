//! `cairn store add PATH`: snapshot a file or directory into the store
//! (for a remote store: into the local cache, then copy what the remote lacks).

use std::time::Instant;

use anyhow::Result;
use cairn_snapshot::{snapshot, SnapshotOptions};
use cairn_transfer::Kind;
use serde::Serialize;

use super::super::Workspace;
use crate::cli::{AddArgs, Global};
use crate::output::{emit, Progress};

#[derive(Serialize)]
struct Added {
    digest: String,
    kind: &'static str,
    files: u64,
    bytes: u64,
    files_read: u64,
    seconds: f64,
}

pub async fn run(global: &Global, ws: &Workspace, args: AddArgs) -> Result<i32> {
    let started = Instant::now();
    let options = SnapshotOptions {
        exclude: args.exclude,
        gitignore: args.gitignore,
        ..SnapshotOptions::default()
    };
    let progress = Progress::new("adding", None);
    let added = snapshot(&ws.fs, &args.path, &options, &progress);
    progress.finish();
    let added = added?;
    let kind = if added.is_tree {
        Kind::Tree
    } else {
        Kind::Leaf
    };
    ws.push(added.digest, kind).await?;
    let result = Added {
        digest: added.digest.to_string(),
        kind: if added.is_tree { "tree" } else { "blob" },
        files: added.files,
        bytes: added.bytes,
        files_read: added.files_read,
        seconds: started.elapsed().as_secs_f64(),
    };
    emit(global.json, &result, |r| r.digest.clone());
    Ok(0)
}
