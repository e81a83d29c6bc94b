//! `cairn policy add|show`: trust policies written from key names or
//! exported public keys, so nobody copies key ids by hand.
//!
//! The format is `cairn_trust::TrustPolicy`'s (documented in `cairn
//! channel verify --help` and the README); the file is parsed, changed and
//! written back whole (temporary file and rename), each key id followed
//! by the key's name as a comment where it is known.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use cairn_trust::{KeyId, PublicKey, TrustPolicy};
use serde::Serialize;

use crate::cli::{Global, PolicyCommand};
use crate::output::emit;

#[derive(Serialize)]
struct Entry {
    service: String,
    channel: String,
    keys: Vec<Key>,
    threshold: usize,
}

#[derive(Serialize)]
struct Key {
    key_id: String,
    name: Option<String>,
}

/// Runs a `cairn policy` subcommand.
pub fn run(global: &Global, cmd: PolicyCommand) -> Result<i32> {
    let mut names = known_names(global);
    match cmd {
        PolicyCommand::Add {
            file,
            service,
            channel,
            key: keys,
            threshold,
        } => {
            let mut policy = read(&file, true)?;
            let mut ids = Vec::new();
            for key in &keys {
                let (id, name) = resolve_key(global, key)?;
                if let Some(name) = name {
                    names.entry(id.clone()).or_insert(name);
                }
                ids.push(id);
            }
            let shown = file.display().to_string();
            policy.add(&service, &channel, &ids, threshold, &shown)?;
            write(&file, &policy.to_toml(|k| names.get(k).cloned()))?;
            let entries = entries(&policy, &names);
            let entry = entries
                .into_iter()
                .find(|e| e.service == service && e.channel == channel)
                .expect("just added");
            emit(global.json, &entry, |e| entry_text(e, Some(&shown)));
        }
        PolicyCommand::Show { file } => {
            let policy = read(&file, false)?;
            let all = entries(&policy, &names);
            emit(global.json, &all, |all| {
                let texts: Vec<String> = all.iter().map(|e| entry_text(e, None)).collect();
                texts.join("\n")
            });
        }
    }
    Ok(0)
}

/// Reads a policy file; a missing one is empty when `may_be_new`.
fn read(file: &Path, may_be_new: bool) -> Result<TrustPolicy> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if may_be_new && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("reading trust policy {}", file.display()))
        }
    };
    Ok(TrustPolicy::parse(&text, &file.display().to_string())?)
}

/// Replaces `file` with `text` atomically.
fn write(file: &Path, text: &str) -> Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| {
        let dir = dir.map(|d| d.display().to_string()).unwrap_or(".".into());
        format!("writing trust policy {} (in {dir})", file.display())
    })
}

/// A `--key` value: a key id, an exported public key line, a file holding
/// one, or a key name in the keys directory. Returns the id and, where
/// the value says, the key's name.
fn resolve_key(global: &Global, value: &str) -> Result<(KeyId, Option<String>)> {
    if value.starts_with("ed25519:") {
        let id = value
            .parse::<KeyId>()
            .with_context(|| format!("--key {value}"))?;
        return Ok((id, None));
    }
    let line = if value.starts_with("cairn-ed25519-pub:") {
        Some(value.to_string())
    } else if Path::new(value).is_file() {
        let text = std::fs::read_to_string(value).with_context(|| format!("reading {value}"))?;
        Some(text.trim().to_string())
    } else {
        None
    };
    if let Some(line) = line {
        let (name, key) = PublicKey::from_line(&line)
            .with_context(|| format!("--key {value}: not a public key"))?;
        return Ok((key.key_id(), Some(name)));
    }
    let dir = cairn_keyring::keys_dir(global.keys.clone())?;
    let key = cairn_keyring::load_public(&dir, value)?;
    Ok((key.key_id(), Some(value.to_string())))
}

/// Key id → name, for the keys in the keys directory.
fn known_names(global: &Global) -> HashMap<KeyId, String> {
    let Ok(dir) = cairn_keyring::keys_dir(global.keys.clone()) else {
        return HashMap::new();
    };
    cairn_keyring::list(&dir)
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k.key_id, k.name))
        .collect()
}

fn entries(policy: &TrustPolicy, names: &HashMap<KeyId, String>) -> Vec<Entry> {
    policy
        .channels
        .iter()
        .map(|c| Entry {
            service: c.service.clone(),
            channel: c.channel.clone(),
            keys: c
                .keys
                .iter()
                .map(|k| Key {
                    key_id: k.to_string(),
                    name: names.get(k).cloned(),
                })
                .collect(),
            threshold: c.threshold,
        })
        .collect()
}

fn entry_text(e: &Entry, file: Option<&str>) -> String {
    let mut lines = vec![format!(
        "{}/{}: {} of {} key(s){}",
        e.service,
        e.channel,
        e.threshold,
        e.keys.len(),
        file.map(|f| format!(" (in {f})")).unwrap_or_default()
    )];
    for k in &e.keys {
        lines.push(format!(
            "  {} {}",
            k.key_id,
            k.name.as_deref().unwrap_or("(name unknown here)")
        ));
    }
    lines.join("\n")
}
