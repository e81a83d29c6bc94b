//! `cairn store …`: direct access to the content-addressed store.

mod add;
mod cat;
mod checkout;
mod copy;
mod gc;
mod ls;
mod verify;

use anyhow::Result;

use crate::cli::{Global, StoreCommand};

/// Runs a `cairn store` subcommand.
pub async fn run(global: &Global, cmd: StoreCommand) -> Result<i32> {
    let store = super::open_store(global)?;
    match cmd {
        StoreCommand::Add(args) => add::run(global, &store, args).await,
        StoreCommand::Cat { digest } => cat::run(&store, &digest).await,
        StoreCommand::Ls { digest, recursive } => ls::run(global, &store, &digest, recursive).await,
        StoreCommand::Checkout { digest, dir, copy } => {
            checkout::run(global, &store, &digest, &dir, copy).await
        }
        StoreCommand::Verify => verify::run(global, &store).await,
        StoreCommand::Gc { dry_run, grace } => gc::run(global, &store, grace, dry_run).await,
        StoreCommand::Copy { digest, to, kind } => {
            copy::run(global, &store, &digest, &to, kind).await
        }
    }
}
