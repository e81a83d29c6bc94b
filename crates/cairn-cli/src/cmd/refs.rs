//! `cairn ref …`: plumbing over the store's refs, for scripts and for
//! looking at what agents and promotions wrote.
//!
//! `ref set` refuses a value naming blobs the store does not hold whole
//! (a ref is what keeps blobs through `store gc`, and a dangling one keeps
//! nothing), unless `--allow-dangling` says that is meant. On a local
//! store what the value names is claimed before it is checked, so a
//! collection running meanwhile cannot take it between the check and the
//! write.

use anyhow::{bail, Result};
use cairn_store::dangling::first_missing;
use cairn_store::roots::roots_of_ref;
use cairn_store::{RefName, Store, Version};
use serde::Serialize;

use crate::cli::{Global, RefCommand};
use crate::output::emit;

#[derive(Serialize)]
struct RefValue {
    name: String,
    version: String,
    value: String,
}

/// Runs a `cairn ref` subcommand.
pub async fn run(global: &Global, cmd: RefCommand) -> Result<i32> {
    let access = match cmd {
        RefCommand::Set { .. } => super::Access::Create,
        RefCommand::Get { .. } | RefCommand::List { .. } => super::Access::Existing,
    };
    let store = super::open_store(global, access).await?;
    match cmd {
        RefCommand::Get { name } => {
            let name = RefName::new(name)?;
            let Some(v) = store.refs.get(&name).await? else {
                bail!("ref {name} does not exist");
            };
            let value = String::from_utf8_lossy(&v.value).into_owned();
            let out = RefValue {
                name: name.to_string(),
                version: v.version.0,
                value,
            };
            // Whoever may write the store wrote the value: shown escaped
            // (lines kept, bytes that are not UTF-8 as `\xff`); `--json`
            // has it as it is.
            let shown = cairn_escape::lines(&v.value);
            emit(global.json, &out, |_| shown.into_owned());
        }
        RefCommand::List { prefix } => {
            let names: Vec<String> = store
                .refs
                .list(&prefix)
                .await?
                .iter()
                .map(|n| n.to_string())
                .collect();
            emit(global.json, &names, |n| n.join("\n"));
        }
        RefCommand::Set {
            name,
            value,
            expect,
            create,
            allow_dangling,
        } => {
            let name = RefName::new(name)?;
            if expect.is_none() && !create {
                bail!("say which version `{name}` must be at (--expect VERSION) or that it must not exist (--create)");
            }
            if !allow_dangling {
                check_whole(&store, &name, value.as_bytes()).await?;
            }
            let expected = expect.map(Version);
            let version = store
                .refs
                .compare_and_swap(&name, expected.as_ref(), value.clone().into_bytes())
                .await?;
            let out = RefValue {
                name: name.to_string(),
                version: version.0,
                value,
            };
            emit(global.json, &out, |r| r.version.clone());
        }
    }
    Ok(0)
}

/// Fails unless the store holds everything `value` names, whole.
async fn check_whole(store: &Store, name: &RefName, value: &[u8]) -> Result<()> {
    let roots = roots_of_ref(name, value);
    if roots.is_empty() {
        return Ok(());
    }
    let local = store.local.as_deref();
    if local.is_none() && roots.iter().any(|r| r.size.is_none()) {
        bail!(
            "ref {name}: write the digest with its size (sha256:<hex>/<size>) so that a remote \
             store can be checked for it, or pass --allow-dangling"
        );
    }
    if let Some(fs) = local {
        let nodes: Vec<_> = roots
            .iter()
            .filter_map(|r| r.resolve(|h| fs.size_of_hash(h)))
            .collect();
        fs.claim(&nodes)?;
    }
    let missing = first_missing(store.blobs.as_ref(), local, &roots).await?;
    if let Some(m) = missing.into_iter().flatten().next() {
        bail!(
            "ref {name} would name what the store does not hold: {m} (or part of what it \
             reaches) is missing; add it first, or pass --allow-dangling to set the ref anyway"
        );
    }
    Ok(())
}
