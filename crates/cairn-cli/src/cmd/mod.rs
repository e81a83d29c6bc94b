//! One module per command; each turns parsed arguments into library calls
//! and a rendered result.

mod agent;
mod build;
mod channel;
mod image;
mod key;
mod logs;
mod policy;
mod refs;
mod release;
mod resolve;
mod rollout;
mod server;
mod status;
mod store;
mod test;
mod verify;
mod workspace;

pub use workspace::Workspace;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn_store::{OpenOptions, Store};

use crate::cli::{Cli, Command, Global};

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Store(cmd) => store::run(&cli.global, cmd).await,
        Command::Server(args) => server::run(&cli.global, args).await,
        Command::Ref(cmd) => refs::run(&cli.global, cmd).await,
        Command::Key(cmd) => key::run(&cli.global, cmd),
        Command::Build(args) => build::run(&cli.global, args).await,
        Command::Test(args) => test::run(&cli.global, args).await,
        Command::Release(args) => release::run(&cli.global, args).await,
        Command::Verify(args) => verify::run(&cli.global, args).await,
        Command::Channel(cmd) => channel::run(&cli.global, cmd).await,
        Command::Policy(cmd) => policy::run(&cli.global, cmd),
        Command::Rollout(cmd) => rollout::run(&cli.global, cmd).await,
        Command::Agent(args) => agent::run(&cli.global, args).await,
        Command::Status(args) => status::run(&cli.global, args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::LogPump(args) => logs::pump(args),
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

/// Whether a command may start a store that does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The command only reads, or needs what an existing store holds: a
    /// local store that does not exist is an error, never created.
    Existing,
    /// The command writes and may start from nothing (`store add`,
    /// `build`, `release`, `ref set`, `server`): a local store is created
    /// if absent, and a remote one is checked for writes.
    Create,
}

/// Opens and checks the store named by `--store` / `CAIRN_STORE`, or the
/// default one.
pub async fn open_store(global: &Global, access: Access) -> Result<Store> {
    let url = store_url(global);
    connect(&url, global, access).await
}

/// Opens and checks the store at `url`, with the token, CA certificates
/// and S3 settings of this command line. (Every error names the store.)
pub async fn connect(url: &str, global: &Global, access: Access) -> Result<Store> {
    let options = open_options(global, access)?;
    Ok(cairn_store::connect(url, &options).await?)
}

/// `--store`, else the default store.
pub fn store_url(global: &Global) -> String {
    match &global.store {
        Some(url) => url.clone(),
        None => default_location().to_string_lossy().into_owned(),
    }
}

/// Everything opening a store needs, read once here: the token
/// (`--token-file`, `CAIRN_TOKEN`), the CA file in `CAIRN_CA_CERT`, and the `AWS_*`
/// variables for S3.
pub fn open_options(global: &Global, access: Access) -> Result<OpenOptions> {
    let env = cairn_store::http::CA_CERT_ENV;
    let ca_certs: Vec<PathBuf> = std::env::var_os(env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    for path in &ca_certs {
        if let Err(e) = std::fs::metadata(path) {
            bail!("{env}={}: {e}", path.display());
        }
    }
    let aws = std::env::vars()
        .filter(|(name, _)| name.starts_with("AWS_"))
        .collect();
    Ok(OpenOptions {
        token: token(global)?,
        ca_certs,
        create: access == Access::Create,
        aws,
    })
}

/// The default store: `$XDG_DATA_HOME/cairn/store`, else
/// `~/.local/share/cairn/store`.
pub fn default_location() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".local/share")
        });
    data.join("cairn/store")
}

/// The bearer token: the contents of `--token-file` (`CAIRN_TOKEN_FILE`),
/// else `CAIRN_TOKEN`. `--token VALUE` is refused, naming both.
pub fn token(global: &Global) -> Result<Option<String>> {
    if global.token_on_command_line.is_some() {
        bail!(
            "--token puts the token where every local user can read it (ps, /proc); \
             give --token-file PATH or set CAIRN_TOKEN"
        );
    }
    if let Some(path) = &global.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            bail!("the token file {} is empty", path.display());
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(std::env::var("CAIRN_TOKEN").ok().filter(|t| !t.is_empty()))
}
