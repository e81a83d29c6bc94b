//! The action cache: action digest → REAPI `ActionResult`, kept in the ref
//! `ac/<action hex>`.
//!
//! An entry is only a hit when it is complete: the output tree's every
//! directory and file blob and both logs are in the store. A garbage
//! collection or a hand-deleted blob therefore turns a hit into a rebuild,
//! never into a build that hands out a tree it cannot materialize. Only
//! successful runs (exit code 0) are recorded.

use std::time::SystemTime;

use cairn_digest::Digest;
use cairn_snapshot::load_tree;
use cairn_store::{FsStore, RefName, RefStore, StoreError};
use cairn_tree::proto::{ActionResult, ExecutedActionMetadata, OutputDirectory, Timestamp};
use prost::Message;

use crate::error::BuildError;

/// A cached result, as much of it as the build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedResult {
    /// The output tree (`/out`).
    pub output: Digest,
    /// The step's log (stdout and stderr interleaved).
    pub log: Digest,
}

/// The ref holding the result of `action`.
pub fn ref_name(action: &Digest) -> RefName {
    RefName::new(format!("ac/{}", action.hex())).expect("hex is a valid ref segment")
}

/// The complete cached result of `action`, if any.
pub async fn lookup(
    fs: &FsStore,
    refs: &dyn RefStore,
    action: &Digest,
) -> Result<Option<CachedResult>, BuildError> {
    let name = ref_name(action);
    let Some(v) = refs
        .get(&name)
        .await
        .map_err(|e| BuildError::store(format!("reading ref {}", name.as_str()), e))?
    else {
        return Ok(None);
    };
    // A malformed entry is a miss; the rebuild overwrites it.
    let Some(result) = decode(&v.value) else {
        tracing::warn!(action = %action, "malformed action cache entry ignored");
        return Ok(None);
    };
    Ok(complete(fs, &result).then_some(result))
}

/// What a successful entry's bytes say; `None` for a malformed entry or
/// a failed run.
pub fn decode(bytes: &[u8]) -> Option<CachedResult> {
    let r = ActionResult::decode(bytes).ok()?;
    if r.exit_code != 0 {
        return None;
    }
    let out = r.output_directories.first()?;
    let output = Digest::try_from(out.root_directory_digest.as_ref()?).ok()?;
    let log = Digest::try_from(r.stdout_digest.as_ref()?).ok()?;
    Some(CachedResult { output, log })
}

/// Whether every blob the result reaches is in the store.
pub fn complete(fs: &FsStore, result: &CachedResult) -> bool {
    if !fs.has_sync(&result.log) {
        return false;
    }
    let Ok(tree) = load_tree(fs, &result.output) else {
        return false;
    };
    tree.dirs.values().all(|dir| {
        dir.files.iter().all(|f| {
            f.digest
                .as_ref()
                .and_then(|d| Digest::try_from(d).ok())
                .is_some_and(|d| fs.has_sync(&d))
        })
    })
}

/// Records a successful run of `action` (replacing an incomplete entry).
pub async fn record(
    refs: &dyn RefStore,
    action: &Digest,
    result: &CachedResult,
    started: SystemTime,
    ended: SystemTime,
) -> Result<(), BuildError> {
    store_entry(refs, action, encode(result, started, ended)).await
}

/// Writes the encoded entry `value` for `action`, replacing whatever is
/// there (an incomplete or malformed entry: a complete one is a hit and
/// never rewritten). Losing a race to a concurrent writer is fine.
pub async fn store_entry(
    refs: &dyn RefStore,
    action: &Digest,
    value: Vec<u8>,
) -> Result<(), BuildError> {
    let name = ref_name(action);
    let err = |e| BuildError::store(format!("writing ref {}", name.as_str()), e);
    let current = refs.get(&name).await.map_err(err)?;
    match refs
        .compare_and_swap(&name, current.as_ref().map(|v| &v.version), value)
        .await
    {
        // A concurrent build of the same action wrote an equivalent entry.
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

fn encode(result: &CachedResult, started: SystemTime, ended: SystemTime) -> Vec<u8> {
    let (start, end) = (Some(timestamp(started)), Some(timestamp(ended)));
    ActionResult {
        output_files: Vec::new(),
        output_directories: vec![OutputDirectory {
            path: "out".into(),
            tree_digest: None,
            root_directory_digest: Some(result.output.into()),
        }],
        exit_code: 0,
        stdout_digest: Some(result.log.into()),
        stderr_digest: Some(Digest::empty().into()),
        execution_metadata: Some(ExecutedActionMetadata {
            worker: "cairn".into(),
            worker_start_timestamp: start,
            worker_completed_timestamp: end,
            execution_start_timestamp: start,
            execution_completed_timestamp: end,
        }),
    }
    .encode_to_vec()
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
