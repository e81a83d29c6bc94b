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

use anyhow::Result;

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
        StoreCommand::Checkout { digest, dir, copy } => {
            checkout::run(global, &ws, &digest, &dir, copy).await
        }
        StoreCommand::Verify => verify::run(global, &ws).await,
        StoreCommand::Gc { dry_run, grace } => gc::run(global, &ws, grace, dry_run).await,
        StoreCommand::Copy { digest, to, kind } => copy::run(global, &ws, &digest, &to, kind).await,
    }
}
