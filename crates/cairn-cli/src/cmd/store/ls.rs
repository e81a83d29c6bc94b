//! `cairn store ls DIGEST`: a tree's entries, one per line: kind, size,
//! digest, path (last, so the columns line up; a symlink shows its
//! target). From a remote store: after copying the tree into the local
//! cache. Names are escaped for the terminal.

use anyhow::Result;
use cairn_digest::Digest;
use cairn_snapshot::load_tree;
use cairn_transfer::Kind;
use serde::Serialize;

use super::super::Workspace;
use crate::cli::Global;
use crate::output::emit;

#[derive(Serialize)]
struct Entry {
    path: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

pub async fn run(global: &Global, ws: &Workspace, text: &str, recursive: bool) -> Result<i32> {
    let digest = ws.digest(text).await?;
    ws.pull(digest, Kind::Tree).await?;
    super::require_tree(ws, &digest)?;
    let tree = load_tree(&ws.fs, &digest)?;
    let mut entries = Vec::new();
    tree.walk(|dir_path, depth, dir| {
        if depth > 0 && !recursive {
            return;
        }
        let join = |name: &str| {
            if dir_path.is_empty() {
                name.to_string()
            } else {
                format!("{dir_path}/{name}")
            }
        };
        for d in &dir.directories {
            entries.push(Entry {
                path: join(&d.name),
                kind: "dir",
                digest: reapi(&d.digest),
                size: None,
                target: None,
            });
        }
        for f in &dir.files {
            let kind = if f.is_executable { "exec" } else { "file" };
            let d = reapi(&f.digest);
            let size = f.digest.as_ref().map(|d| d.size_bytes as u64);
            entries.push(Entry {
                path: join(&f.name),
                kind,
                digest: d,
                size,
                target: None,
            });
        }
        for s in &dir.symlinks {
            entries.push(Entry {
                path: join(&s.name),
                kind: "link",
                digest: None,
                size: None,
                target: Some(s.target.clone()),
            });
        }
    });
    if !recursive {
        entries.retain(|e| !e.path.contains('/'));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    // Text escapes names for the terminal (JSON escapes them itself).
    emit(global.json, &entries, |entries| {
        entries
            .iter()
            .map(|e| {
                let size = e.size.map(|s| s.to_string()).unwrap_or_default();
                let digest = e.digest.as_deref().unwrap_or("-");
                let path = match &e.target {
                    Some(t) => format!(
                        "{} -> {}",
                        cairn_escape::name_str(&e.path),
                        cairn_escape::name_str(t)
                    ),
                    None => cairn_escape::name_str(&e.path).into_owned(),
                };
                format!("{:<4}  {size:>10}  {digest:<71}  {path}", e.kind)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(0)
}

fn reapi(d: &Option<cairn_tree::proto::Digest>) -> Option<String> {
    d.as_ref()
        .and_then(|d| Digest::try_from(d).ok())
        .map(|d| d.to_string())
}
