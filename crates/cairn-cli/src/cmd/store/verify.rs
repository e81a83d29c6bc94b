//! `cairn store verify`: re-hash every blob; exit 1 naming each corrupt one.

use anyhow::Result;
use serde::Serialize;

use super::super::Workspace;
use crate::cli::Global;
use crate::output::{emit, Progress};

#[derive(Serialize)]
struct Verified {
    checked: u64,
    bytes: u64,
    corrupt: Vec<Corrupt>,
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
    };
    emit(global.json, &result, |r| {
        let mut lines: Vec<String> = r
            .corrupt
            .iter()
            .map(|c| format!("corrupt: {} (bytes hash to {})", c.digest, c.actual))
            .collect();
        lines.push(format!(
            "{} blobs, {} bytes checked, {} corrupt",
            r.checked,
            r.bytes,
            r.corrupt.len()
        ));
        lines.join("\n")
    });
    Ok(if result.corrupt.is_empty() { 0 } else { 1 })
}
