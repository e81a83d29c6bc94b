//! `cairn store verify`: re-hash every blob and walk every ref; exit 1
//! naming each corrupt blob and each dangling ref (one that names a blob
//! missing from the store, or a tree or document not held whole).

use anyhow::Result;
use cairn_store::dangling::dangling_refs;
use serde::Serialize;

use super::super::Workspace;
use crate::cli::Global;
use crate::output::{emit, Progress};

#[derive(Serialize)]
struct Verified {
    checked: u64,
    bytes: u64,
    corrupt: Vec<Corrupt>,
    dangling: Vec<Dangling>,
}

#[derive(Serialize)]
struct Dangling {
    r#ref: String,
    missing: String,
}

#[derive(Serialize)]
struct Corrupt {
    digest: String,
    actual: String,
}

pub async fn run(global: &Global, ws: &Workspace) -> Result<i32> {
    ws.local_only("store verify")?;
    let fs = &ws.fs;
    let progress = Progress::new("verifying", None);
    let report = fs.verify_all(&|bytes| cairn_snapshot::Progress::advance(&progress, 1, bytes));
    progress.finish();
    let report = report?;
    let dangling = dangling_refs(fs).await?;
    let result = Verified {
        checked: report.checked,
        bytes: report.bytes,
        corrupt: report
            .corrupt
            .iter()
            .map(|(expected, actual)| Corrupt {
                // The size on disk may be wrong too (truncation): name the hash.
                digest: format!("sha256:{}", expected.hex()),
                actual: format!("{actual:#}"),
            })
            .collect(),
        dangling: dangling
            .iter()
            .map(|d| Dangling {
                r#ref: d.name.to_string(),
                missing: d.missing.to_string(),
            })
            .collect(),
    };
    emit(global.json, &result, |r| {
        let mut lines: Vec<String> = r
            .corrupt
            .iter()
            .map(|c| format!("corrupt: {} (bytes hash to {})", c.digest, c.actual))
            .collect();
        lines.extend(r.dangling.iter().map(|d| {
            format!(
                "dangling: ref {} reaches {}, which is missing",
                d.r#ref, d.missing
            )
        }));
        lines.push(format!(
            "{} blobs, {} bytes checked, {} corrupt, {} dangling refs",
            r.checked,
            r.bytes,
            r.corrupt.len(),
            r.dangling.len()
        ));
        lines.join("\n")
    });
    let clean = result.corrupt.is_empty() && result.dangling.is_empty();
    Ok(if clean { 0 } else { 1 })
}
