//! `cairn promote`, `cairn rollback` and `cairn channel …`: moving channels
//! between signed releases, and checking them as an agent would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_digest::Digest;
use cairn_release::{Current, HighWaterMarks, Mark};
use cairn_store::Store;
use cairn_trust::TrustPolicy;
use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::{ChannelCommand, Global};
use crate::output::{emit, name};

#[derive(Serialize)]
struct Statement {
    service: String,
    channel: String,
    statement: String,
    sequence: u64,
    release: String,
    previous: Option<String>,
    issued: Option<String>,
    expires: String,
    signed_by: Vec<String>,
}

impl From<&Current> for Statement {
    fn from(c: &Current) -> Self {
        let s = &c.statement;
        Self {
            service: s.service.clone(),
            channel: s.channel.clone(),
            statement: c.digest().to_string(),
            sequence: s.sequence,
            release: s.release.to_string(),
            previous: s.previous.map(|d| d.to_string()),
            issued: s.issued.map(rfc3339),
            expires: rfc3339(s.expires),
            signed_by: c
                .envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn text(s: &Statement) -> String {
    let issued = s
        .issued
        .as_deref()
        .map(|t| format!("\n  issued {t}"))
        .unwrap_or_default();
    format!(
        "{}/{} #{} -> release {}\n  statement {}{issued}\n  expires {}\n  signed by {}",
        name(&s.service),
        name(&s.channel),
        s.sequence,
        s.release,
        s.statement,
        s.expires,
        names(&s.signed_by)
    )
}

fn signing_key(global: &Global, name: &str) -> Result<cairn_trust::SigningKey> {
    let dir = cairn_keyring::keys_dir(global.keys.clone())?;
    Ok(cairn_keyring::load_signing(&dir, name)?)
}

fn expiry(d: Duration) -> Result<time::Duration> {
    time::Duration::try_from(d).context("expiry is too long")
}

/// `cairn promote RELEASE --channel CH --key NAME`
pub async fn promote(
    global: &Global,
    release: &str,
    channel: &str,
    key: &str,
    expires: Duration,
    images: super::image::ChannelImages,
) -> Result<i32> {
    let ws = super::Workspace::open(global, super::Access::Existing).await?;
    let digest = ws.digest(release).await?;
    // Images go out (by digest) before the channel moves; their tags after.
    let pushed = images.push(global, &ws, &digest, key).await?;
    let store = ws.store.clone();
    let loaded = cairn_release::load_release(&store, &digest).await?;
    let key = signing_key(global, key)?;
    let now = OffsetDateTime::now_utc();
    let service = loaded.release.service;
    let cur = cairn_release::promote(
        &store,
        &service,
        channel,
        &digest,
        &key,
        expiry(expires)?,
        now,
    )
    .await?;
    pushed.tag(channel).await?;
    emit(global.json, &Statement::from(&cur), text);
    Ok(0)
}

/// `cairn rollback SERVICE --channel CH --key NAME [--to RELEASE]`
pub async fn rollback(
    global: &Global,
    service: &str,
    channel: &str,
    key: &str,
    to: Option<&str>,
    expires: Duration,
) -> Result<i32> {
    let ws = super::Workspace::open(global, super::Access::Existing).await?;
    let to = match to {
        Some(t) if super::resolve::parse(t).is_ok() => Some(ws.digest(t).await?),
        Some(label) => Some(by_version(&ws.store, service, channel, label).await?),
        None => None,
    };
    let store = ws.store;
    let target = cairn_release::rollback_target(&store, service, channel, to).await?;
    let key = signing_key(global, key)?;
    let now = OffsetDateTime::now_utc();
    let cur = cairn_release::promote(
        &store,
        service,
        channel,
        &target,
        &key,
        expiry(expires)?,
        now,
    )
    .await?;
    emit(global.json, &Statement::from(&cur), text);
    Ok(0)
}

/// Runs a `cairn channel` subcommand.
pub async fn run(global: &Global, cmd: ChannelCommand) -> Result<i32> {
    let store = super::open_store(global, super::Access::Existing).await?;
    match cmd {
        ChannelCommand::Show { service, channel } => {
            let cur = existing(&store, &service, &channel).await?;
            emit(global.json, &Statement::from(&cur), text);
        }
        ChannelCommand::History { service, channel } => {
            let rows = history_rows(global, &store, &service, &channel).await?;
            emit(global.json, &rows, |rows| history_table(rows));
        }
        ChannelCommand::Sign {
            service,
            channel,
            key,
            statement,
        } => {
            let expected = statement
                .map(|s| s.parse::<cairn_digest::DigestRef>())
                .transpose()?;
            let current = existing(&store, &service, &channel).await?;
            if let Some(want) = expected {
                if want.hash != *current.digest().hash() {
                    bail!(
                        "channel {service}/{channel}'s newest statement is {}, not {want}",
                        current.digest()
                    );
                }
            }
            let key = signing_key(global, &key)?;
            let digest = current.digest();
            let cur =
                cairn_release::cosign(&store, &service, &channel, &key, Some(&digest)).await?;
            emit(global.json, &Statement::from(&cur), text);
        }
        ChannelCommand::Verify {
            service,
            channel,
            policy,
            last_sequence,
        } => {
            return verify(global, &store, &service, &channel, &policy, last_sequence).await;
        }
    }
    Ok(0)
}

async fn existing(store: &Store, service: &str, channel: &str) -> Result<Current> {
    match cairn_release::current(store, service, channel).await? {
        Some(c) => Ok(c),
        None => bail!("channel {service}/{channel} has no statement yet"),
    }
}

/// Verifies as an agent would, with the library's acceptance chain, and
/// raises this user's high-water mark for the channel on success.
async fn verify(
    global: &Global,
    store: &Store,
    service: &str,
    channel: &str,
    policy_path: &Path,
    last_sequence: Option<u64>,
) -> Result<i32> {
    let text_policy = std::fs::read_to_string(policy_path)
        .with_context(|| format!("reading trust policy {}", policy_path.display()))?;
    let policy = TrustPolicy::parse(&text_policy, &policy_path.display().to_string())?;
    let Some(entry) = policy.entry(service, channel) else {
        bail!(
            "trust policy {} has no [[channel]] entry for {service}/{channel}",
            policy_path.display()
        );
    };
    let keys = cairn_keyring::public_keys(&cairn_keyring::keys_dir(global.keys.clone())?)?;
    let marks = HighWaterMarks::new(state_dir().join("accepted"));
    let stored = marks.get(service, channel)?;
    let last = floor(stored, last_sequence);
    let now = OffsetDateTime::now_utc();
    let accepted = cairn_release::accept(store, entry, &keys, last.as_ref(), now).await?;
    marks.raise(service, channel, &accepted.mark())?;
    let out = serde_json::json!({
        "accepted": true,
        "sequence": accepted.statement.statement.sequence,
        "new": accepted.is_new,
        "release": accepted.release_digest.to_string(),
        "version": accepted.release.version,
        "artifact": accepted.release.artifact.to_string(),
        "signed_by": accepted.statement.signers.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
    });
    emit(global.json, &out, |o| {
        format!(
            "accepted: {service}/{channel} #{} -> release {} ({})",
            o["sequence"],
            o["release"].as_str().unwrap_or(""),
            name(o["version"].as_str().unwrap_or(""))
        )
    });
    Ok(0)
}

/// The mark to verify against: the one recorded, unless `--last-sequence`
/// asks for a higher floor (a mark no statement matches).
fn floor(stored: Option<Mark>, flag: Option<u64>) -> Option<Mark> {
    match (stored, flag) {
        (Some(m), Some(n)) if n <= m.sequence => Some(m),
        (_, Some(n)) => Some(Mark {
            sequence: n,
            statement: Digest::empty(),
            release: Digest::empty(),
        }),
        (m, None) => m,
    }
}

/// This user's state directory: `$XDG_STATE_HOME/cairn`, else
/// `~/.local/state/cairn`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".local/state")
        })
        .join("cairn")
}

/// One statement of `channel history`.
#[derive(Serialize)]
struct HistoryRow {
    sequence: u64,
    statement: String,
    release: String,
    /// The release's version label (absent if the store lacks the release).
    version: Option<String>,
    /// When the statement was made (absent in statements made before it
    /// was recorded).
    issued: Option<String>,
    expires: String,
    signed_by: Vec<Signer>,
}

#[derive(Serialize)]
struct Signer {
    key_id: String,
    /// The key's name in the keys directory, where it is known there.
    name: Option<String>,
}

async fn history_rows(
    global: &Global,
    store: &Store,
    service: &str,
    channel: &str,
) -> Result<Vec<HistoryRow>> {
    let names = key_names(global);
    let entries = cairn_release::history(store, service, channel).await?;
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let s = &e.statement;
        let version = match cairn_release::load_release(store, &s.release).await {
            Ok(l) => Some(l.release.version),
            Err(_) => None,
        };
        let signed_by = e
            .envelope
            .iter()
            .flat_map(|env| &env.signatures)
            .map(|sig| Signer {
                name: names.get(&sig.keyid).cloned(),
                key_id: sig.keyid.clone(),
            })
            .collect();
        rows.push(HistoryRow {
            sequence: s.sequence,
            statement: e.digest.to_string(),
            release: s.release.to_string(),
            version,
            issued: s.issued.map(rfc3339),
            expires: rfc3339(s.expires),
            signed_by,
        });
    }
    Ok(rows)
}

/// Key id → key name, for the keys in the keys directory (none if it
/// cannot be read: names are a convenience here).
pub(crate) fn key_names(global: &Global) -> std::collections::HashMap<String, String> {
    let Ok(dir) = cairn_keyring::keys_dir(global.keys.clone()) else {
        return Default::default();
    };
    cairn_keyring::list(&dir)
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k.key_id.to_string(), k.name))
        .collect()
}

/// Store text (key ids, versions) as shown: each escaped, then listed.
fn names(list: &[String]) -> String {
    let shown: Vec<String> = list.iter().map(|s| name(s)).collect();
    shown.join(", ")
}

fn history_table(rows: &[HistoryRow]) -> String {
    let mut lines = vec![format!(
        "{:<5} {:<20} {:<20} {:<24} RELEASE",
        "SEQ", "ISSUED", "VERSION", "SIGNED BY"
    )];
    for r in rows {
        // Key ids and versions are the store's: shown escaped.
        let signers: Vec<String> = r
            .signed_by
            .iter()
            .map(|s| name(s.name.as_deref().unwrap_or(&s.key_id)))
            .collect();
        lines.push(format!(
            "{:<5} {:<20} {:<20} {:<24} {}",
            format!("#{}", r.sequence),
            r.issued.as_deref().unwrap_or("-"),
            r.version
                .as_deref()
                .map_or_else(|| "(not in the store)".into(), name),
            if signers.is_empty() {
                "-".to_string()
            } else {
                signers.join(", ")
            },
            r.release
        ));
    }
    lines.join("\n")
}

/// The release with version label `label` in the channel's history.
async fn by_version(store: &Store, service: &str, channel: &str, label: &str) -> Result<Digest> {
    let entries = cairn_release::history(store, service, channel).await?;
    let mut versions = Vec::new();
    for e in &entries {
        let r = e.statement.release;
        let Ok(loaded) = cairn_release::load_release(store, &r).await else {
            continue;
        };
        if loaded.release.version == label {
            return Ok(r);
        }
        if !versions.contains(&loaded.release.version) {
            versions.push(loaded.release.version);
        }
    }
    bail!(
        "no release with version {label:?} in the history of {service}/{channel} (it has: {}); --to takes a version label, a digest or releases/<service>/<hex>",
        names(&versions)
    )
}
