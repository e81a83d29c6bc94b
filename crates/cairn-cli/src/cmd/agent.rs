//! `cairn agent --config FILE`: resolve what agent.toml names on this
//! machine (token, hostname, keys, user), open and probe the store, then
//! hand over to `cairn_agent::Agent` until a signal says stop.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_agent::config::TokenSource;
use cairn_agent::{Agent, AgentConfig, Fleet, PumpCommand, Settings, ShutdownMode};
use cairn_store::{OpenOptions, RefName, Store};
use cairn_trust::KeySet;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::Access;
use crate::cli::{AgentArgs, Global};

/// How often the member record is rewritten when nothing changes.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Runs `cairn agent`.
pub async fn run(global: &Global, args: AgentArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config = AgentConfig::parse(&args.config, &text)?;
    if super::token(global)?.is_some() && config.token.is_none() {
        bail!(
            "the agent takes its store token from {} (`token` or `token_file`), not from --token-file or CAIRN_TOKEN",
            args.config.display()
        );
    }
    let token = read_token(config.token.as_ref(), &args.config)?;
    let id = match &config.id {
        Some(id) => id.clone(),
        None => hostname()?,
    };
    let keys = trusted_keys(global, &config)?;
    let credentials = cairn_agent::users::resolve(config.user.as_deref(), config.group.as_deref())?;
    let remote = open_remote(global, &config, token).await?;
    let notify = std::env::var("NOTIFY_SOCKET").ok();
    let settings = Settings {
        id,
        remote,
        keys,
        pump: PumpCommand {
            program: std::env::current_exe()
                .context("finding the cairn binary for the log pump")?,
            args: vec!["log-pump".into()],
        },
        notifier: cairn_agent::notify::Notifier::new(notify.as_deref()),
        credentials,
        // SAFETY: geteuid has no preconditions.
        read_only: unsafe { libc::geteuid() } == 0,
        heartbeat: HEARTBEAT,
        crash_at: crash_point()?,
        config,
    };
    let fleet = Fleet::new(
        settings.config.fleet.clone(),
        settings.config.deploy.clone(),
    );
    let agent = Agent::start(settings, Box::new(fleet)).await?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(forward_signals(tx));
    agent.run(rx).await;
    Ok(0)
}

/// `CAIRN_AGENT_CRASH_AT`: fault injection for the crash-recovery tests
/// (the agent kills itself with SIGKILL at that step of a swap).
fn crash_point() -> Result<Option<cairn_agent::CrashPoint>> {
    match std::env::var("CAIRN_AGENT_CRASH_AT") {
        Ok(v) => Ok(Some(v.parse().map_err(anyhow::Error::msg)?)),
        Err(_) => Ok(None),
    }
}

/// SIGTERM and SIGINT stop the service and the agent; SIGUSR2 leaves the
/// service running for the next agent to adopt.
async fn forward_signals(tx: watch::Sender<Option<ShutdownMode>>) {
    let (Ok(mut term), Ok(mut int), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined2()),
    ) else {
        return;
    };
    let mode = tokio::select! {
        _ = term.recv() => ShutdownMode::Stop,
        _ = int.recv() => ShutdownMode::Stop,
        _ = usr2.recv() => ShutdownMode::Detach,
    };
    let _ = tx.send(Some(mode));
    std::future::pending::<()>().await;
}

/// The store token, from agent.toml itself (`config`) or its token file;
/// either must be readable by its owner alone, or any local user could
/// take the agent's store access.
fn read_token(source: Option<&TokenSource>, config: &std::path::Path) -> Result<Option<String>> {
    match source {
        None => Ok(None),
        Some(TokenSource::Inline(t)) => {
            let meta = std::fs::metadata(config)
                .with_context(|| format!("reading {}", config.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                bail!(
                    "{} holds a store token (`token`) and must not be accessible by group or others (chmod 600 it, or use `token_file`)",
                    config.display()
                );
            }
            Ok(Some(t.clone()))
        }
        Some(TokenSource::File(path)) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("reading token file {}", path.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                bail!(
                    "token file {} must not be accessible by group or others (chmod 600 it)",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?;
            Ok(Some(text.trim().to_string()))
        }
    }
}

fn hostname() -> Result<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("the hostname {name:?} cannot be an agent id; set `id` in agent.toml");
    }
    Ok(name)
}

/// The public keys of `[trust] keys`: those written inline, the rest from
/// the key directory (`keys_dir`, else --keys / CAIRN_KEYS, else the
/// default). A key id without its public key fails here, not at the first
/// statement.
fn trusted_keys(global: &Global, config: &AgentConfig) -> Result<KeySet> {
    let trust = &config.trust;
    let mut keys = trust.inline_keys.clone();
    let missing: Vec<_> = trust
        .policy
        .keys
        .iter()
        .filter(|id| keys.get(id).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(keys);
    }
    let dir = match &trust.keys_dir {
        Some(d) => d.clone(),
        None => cairn_keyring::keys_dir(global.keys.clone())?,
    };
    let ring = cairn_keyring::public_keys(&dir)?;
    for id in missing {
        match ring.get(id) {
            Some(k) => keys.insert(*k),
            None => bail!(
                "trust key {id} has no public key in {}: write its `cairn-ed25519-pub:…` line in [trust] keys, or `cairn key import` it there",
                dir.display()
            ),
        }
    }
    Ok(keys)
}

/// Opens the store the agent follows and reads its channel once, so a
/// wrong URL or token fails now rather than at the first release.
async fn open_remote(
    global: &Global,
    config: &AgentConfig,
    token: Option<String>,
) -> Result<Store> {
    let url = &config.store;
    let options = OpenOptions {
        token,
        ..super::open_options(global, Access::Existing)?
    };
    let store = cairn_store::connect(url, &options)
        .await
        .with_context(|| format!("opening store {url} (agent.toml `store`)"))?;
    let channel = RefName::new(format!("channels/{}/{}", config.service, config.channel))?;
    store
        .refs
        .get(&channel)
        .await
        .with_context(|| format!("store {url} did not answer"))?;
    Ok(store)
}
