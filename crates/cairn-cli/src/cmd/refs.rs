//! `cairn ref …`: plumbing over the store's refs, for scripts and for
//! looking at what agents and promotions wrote.

use anyhow::{bail, Result};
use cairn_store::{RefName, Version};
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
            emit(global.json, &out, |r| r.value.clone());
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
        } => {
            let name = RefName::new(name)?;
            if expect.is_none() && !create {
                bail!("say which version `{name}` must be at (--expect VERSION) or that it must not exist (--create)");
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
