//! One module per command; each turns parsed arguments into library calls
//! and a rendered result.

mod build;
mod channel;
mod image;
mod key;
mod refs;
mod release;
mod server;
mod store;
mod verify;
mod workspace;

pub use workspace::Workspace;

use anyhow::{bail, Context, Result};
use cairn_digest::{Digest, DigestRef};
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
        Command::Promote {
            release,
            channel,
            key,
            expires,
            push_image,
            registry,
        } => {
            let images = image::ChannelImages::new(push_image, &registry)?;
            channel::promote(&cli.global, &release, &channel, &key, expires, images).await
        }
        Command::Image(cmd) => image::run(&cli.global, cmd).await,
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

/// Parses a digest argument; a bare `sha256:<hex>` gets its size from the
/// local store.
pub fn parse_digest(store: &Store, text: &str) -> Result<Digest> {
    let r: DigestRef = text.parse()?;
    if let Some(size) = r.size {
        return Ok(r.with_size(size));
    }
    let Some(fs) = &store.local else {
        bail!("digest {text} has no size; write it as sha256:<hex>/<size> for a remote store");
    };
    let probe = r.with_size(0);
    let path = fs.blob_path(&probe);
    match std::fs::metadata(&path) {
        Ok(m) => Ok(r.with_size(m.len())),
        Err(_) => bail!("blob {text} is not in the store"),
    }
}
