//! One module per command; each turns parsed arguments into library calls
//! and a rendered result.

mod build;
mod channel;
mod key;
mod policy;
mod refs;
mod release;
mod resolve;
mod server;
mod store;
mod verify;
mod workspace;

pub use workspace::Workspace;

use anyhow::{Context, Result};
use cairn_store::Store;

use crate::cli::{Cli, Command, Global};

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Store(cmd) => store::run(&cli.global, cmd).await,
        Command::Server(args) => server::run(&cli.global, args).await,
        Command::Ref(cmd) => refs::run(&cli.global, cmd).await,
        Command::Key(cmd) => key::run(&cli.global, cmd),
        Command::Build(args) => build::run(&cli.global, args).await,
        Command::Release(args) => release::run(&cli.global, args).await,
        Command::Verify(args) => verify::run(&cli.global, args).await,
        Command::Channel(cmd) => channel::run(&cli.global, cmd).await,
        Command::Policy(cmd) => policy::run(&cli.global, cmd),
        Command::Promote {
            release,
            channel,
            key,
            expires,
        } => channel::promote(&cli.global, &release, &channel, &key, expires).await,
        Command::Rollback {
            service,
            channel,
            key,
            to,
            expires,
        } => {
            channel::rollback(
                &cli.global,
                &service,
                &channel,
                &key,
                to.as_deref(),
                expires,
            )
            .await
        }
    }
}

/// Opens the store named by `--store` / `CAIRN_STORE`, or the default one.
pub fn open_store(global: &Global) -> Result<Store> {
    let url = match &global.store {
        Some(url) => url.clone(),
        None => cairn_store::default_location()
            .to_string_lossy()
            .into_owned(),
    };
    cairn_store::open_with_token(&url, global.token.clone())
        .with_context(|| format!("opening store {url}"))
}
