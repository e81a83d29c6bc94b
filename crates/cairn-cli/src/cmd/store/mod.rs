//! `cairn store …`: direct access to the content-addressed store.
//!
//! Against a remote store, `add`, `ls` and `checkout` work in the local
//! cache (see [`Workspace`]) and copy what is missing to or from the remote;
//! `verify` and `gc` run only where the store is.

mod add;
mod cat;
mod checkout;
mod copy;
mod gc;
mod ls;
mod verify;

use anyhow::{bail, Result};
use cairn_digest::Digest;

use super::{Access, Workspace};
use crate::cli::{Global, StoreCommand};

/// Runs a `cairn store` subcommand.
pub async fn run(global: &Global, cmd: StoreCommand) -> Result<i32> {
    let access = match cmd {
        StoreCommand::Add(_) => Access::Create,
        _ => Access::Existing,
    };
    let ws = Workspace::open(global, access).await?;
    match cmd {
        StoreCommand::Add(args) => add::run(global, &ws, args).await,
        StoreCommand::Cat { digest } => cat::run(&ws, &digest).await,
        StoreCommand::Ls { digest, recursive } => ls::run(global, &ws, &digest, recursive).await,
        StoreCommand::Checkout {
            digest, dir, link, ..
        } => checkout::run(global, &ws, &digest, &dir, link).await,
        StoreCommand::Verify => verify::run(global, &ws).await,
        StoreCommand::Gc { dry_run, grace } => gc::run(global, &ws, grace, dry_run).await,
        StoreCommand::Copy { digest, to, kind } => copy::run(global, &ws, &digest, &to, kind).await,
    }
}

/// Refuses a blob that is not a directory (`ls`, `checkout` of a file)
/// with what it is and how to see it, rather than a decoding error. The
/// blob must be in the cache already.
fn require_tree(ws: &Workspace, digest: &Digest) -> Result<()> {
    let Some(bytes) = ws.fs.read_blob_sync(digest)? else {
        return Ok(()); // absent: the caller's read says so
    };
    if cairn_tree::decode_directory(&bytes).is_err() {
        bail!("{digest} is a file, not a tree: `cairn store cat {digest}` prints it");
    }
    Ok(())
}
