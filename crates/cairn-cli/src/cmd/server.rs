//! `cairn server` and `cairn server token create|list|revoke`.
//!
//! Serving: open the store (so a bad `--store` fails before listening),
//! load the TLS certificate and key if given (same), bind, print the real
//! address on stdout's first line (tests and scripts
//! pass `--listen 127.0.0.1:0` and read it), then serve until SIGINT or
//! SIGTERM and drain requests in flight.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cairn_server::{Scope, ServerConfig};
use serde::Serialize;

use super::Access;
use crate::cli::{Global, ServerArgs, ServerCommand, TokenCommand};
use crate::output::emit;

/// The tokens file beside a local store.
const TOKENS_FILE: &str = "tokens.toml";

/// Runs `cairn server …`.
pub async fn run(global: &Global, args: ServerArgs) -> Result<i32> {
    match args.command {
        Some(ServerCommand::Token(TokenCommand::Create {
            name,
            scopes,
            tokens,
        })) => create_token(global, &name, &scopes, tokens).await,
        Some(ServerCommand::Token(TokenCommand::List { tokens })) => {
            list_tokens(global, tokens).await
        }
        Some(ServerCommand::Token(TokenCommand::Revoke { name, tokens })) => {
            revoke_token(global, &name, tokens).await
        }
        None => serve(global, args).await,
    }
}

/// `--tokens FILE`, else `tokens.toml` in the (local) store.
async fn tokens_path(
    global: &Global,
    explicit: Option<PathBuf>,
    access: Access,
) -> Result<Option<PathBuf>> {
    if explicit.is_some() {
        return Ok(explicit);
    }
    let store = super::open_store(global, access).await?;
    Ok(store.local.as_ref().map(|fs| fs.root().join(TOKENS_FILE)))
}

async fn serve(global: &Global, args: ServerArgs) -> Result<i32> {
    let store = super::open_store(global, Access::Create).await?;
    let tokens = match args.tokens {
        Some(t) => Some(t),
        None => store.local.as_ref().map(|fs| fs.root().join(TOKENS_FILE)),
    };
    if tokens.is_none() {
        tracing::warn!("no --tokens file for a remote store: every write will be refused");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(cairn_server::tls::load(cert, key)?),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {scheme}://{addr}")?;
    stdout.flush()?;
    raise_fd_limit();
    let config = ServerConfig {
        tokens,
        anonymous_read: args.anonymous_read,
        event_ring: 0,
        tls,
        limits: cairn_server::ConnectionLimits {
            per_client: args.max_connections_per_client,
            total: args.max_connections,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            min_rate: args.min_transfer_rate,
        },
    };
    cairn_server::serve(listener, store, config, shutdown_signal())
        .await
        .context("serving")?;
    Ok(0)
}

/// Raises the soft file-descriptor limit to the hard one: every connection
/// holds one, and the server caps its connections below the limit.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the file-descriptor limit: {e}");
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[derive(Serialize)]
struct CreatedToken {
    name: String,
    scopes: Vec<String>,
    token: String,
    file: PathBuf,
}

async fn create_token(
    global: &Global,
    name: &str,
    scopes: &[String],
    tokens: Option<PathBuf>,
) -> Result<i32> {
    let scopes: Vec<Scope> = scopes.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let file = token_file(global, tokens, Access::Create).await?;
    let token = cairn_server::tokens::create(&file, name, &scopes)?;
    let created = CreatedToken {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        token,
        file,
    };
    emit(global.json, &created, |c| c.token.clone());
    crate::output::stderr_line(&format!(
        "token {name:?} added to {}; it is shown only this once",
        created.file.display()
    ));
    Ok(0)
}

/// The tokens file a token command works on, or why there is none.
/// Creating a token may start the store; listing or revoking needs one.
async fn token_file(global: &Global, tokens: Option<PathBuf>, access: Access) -> Result<PathBuf> {
    match tokens_path(global, tokens, access).await? {
        Some(file) => Ok(file),
        None => bail!("the store is not a local directory; give --tokens FILE"),
    }
}

async fn list_tokens(global: &Global, tokens: Option<PathBuf>) -> Result<i32> {
    let file = token_file(global, tokens, Access::Existing).await?;
    let listed = cairn_server::tokens::list(&file)?;
    emit(global.json, &listed, |rows| {
        if rows.is_empty() {
            return format!("no tokens in {}", file.display());
        }
        let mut lines = vec![format!("{:<24} SCOPES", "NAME")];
        lines.extend(
            rows.iter()
                .map(|t| format!("{:<24} {}", t.name, t.scopes.join(" "))),
        );
        lines.join("\n")
    });
    Ok(0)
}

async fn revoke_token(global: &Global, name: &str, tokens: Option<PathBuf>) -> Result<i32> {
    let file = token_file(global, tokens, Access::Existing).await?;
    cairn_server::tokens::revoke(&file, name)?;
    let out = serde_json::json!({ "revoked": name, "file": file });
    emit(global.json, &out, |_| {
        format!("revoked token {name:?} in {}", file.display())
    });
    Ok(0)
}
