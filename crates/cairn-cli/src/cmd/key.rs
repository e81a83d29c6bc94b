//! `cairn key …`: signing keys on this machine.

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Global, KeyCommand};
use crate::output::{emit, name};

#[derive(Serialize)]
struct KeyRow {
    name: String,
    key_id: String,
    private: bool,
}

/// Runs a `cairn key` subcommand.
pub fn run(global: &Global, cmd: KeyCommand) -> Result<i32> {
    let dir = cairn_keyring::keys_dir(global.keys.clone())?;
    match cmd {
        KeyCommand::Generate { name, force } => {
            let id = cairn_keyring::generate(&dir, &name, force)?;
            let row = KeyRow {
                name,
                key_id: id.to_string(),
                private: true,
            };
            emit(global.json, &row, |r| r.key_id.clone());
        }
        KeyCommand::List => {
            let rows: Vec<KeyRow> = cairn_keyring::list(&dir)?
                .into_iter()
                .map(|k| KeyRow {
                    name: k.name,
                    key_id: k.key_id.to_string(),
                    private: k.has_secret,
                })
                .collect();
            emit(global.json, &rows, |rows| {
                let line = |r: &KeyRow| {
                    let private = if r.private { " (private)" } else { "" };
                    // A key's name may come from a line someone sent.
                    format!("{:<20} {}{private}", name(&r.name), r.key_id)
                };
                rows.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        KeyCommand::Export { name } => {
            let line = cairn_keyring::export(&dir, &name)?;
            emit(global.json, &line, |l| l.clone());
        }
        KeyCommand::Import { line } => {
            let (name, id) = cairn_keyring::import(&dir, &line)?;
            let row = KeyRow {
                name,
                key_id: id.to_string(),
                private: false,
            };
            emit(global.json, &row, |r| {
                format!("imported {} {}", crate::output::name(&r.name), r.key_id)
            });
        }
    }
    Ok(0)
}
