//! Running one step in the sandbox and turning its `/out` into a tree.
//!
//! The sandbox plan is built from the compiled action, not from the recipe
//! directly, so what runs is exactly what the action digest describes: the
//! `Command`'s argv, environment (the fixed variables plus the step's) and
//! working directory, and the mounted trees, materialized once into the
//! read-only tree cache ([`crate::trees`]). `/out` is the sandbox's own
//! tmpfs, read through the descriptor it hands back; the log is a file the
//! CLI sees live through the [`Reporter`]. After a successful exit the
//! required outputs are checked, the files' apparent sizes must fit
//! `limits.out` (a sparse file would be stored at its full length), `/out`
//! is snapshotted (symlinks are stored as symlinks, never followed) and the
//! log is stored as a blob; after a failure nothing is stored and the log
//! is kept under `<store>/cache/logs/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_digest::Digest;
use cairn_recipe::{CompiledAction, ResolvedMount, Step};
use cairn_sandbox::{Limits, Mount, Plan, Termination};
use cairn_store::FsStore;
use cairn_tree::{encode_directory, proto::Directory};

use crate::error::BuildError;
use crate::logs::{kept_log_path, last_lines, LogStream, TAIL_LINES};
use crate::trees::{materialized, scratch_file, snapshot_output, HeldTree};
use crate::Reporter;

/// The hostname every step sees.
pub const HOSTNAME: &str = "cairn";

/// How deep directories in `/out` may nest: far past any real output,
/// and refused with the path named before the walk's paths outgrow what
/// the kernel takes.
pub const MAX_OUTPUT_DEPTH: usize = 512;

/// Everything needed to run one step, owned (it moves to a worker thread).
#[derive(Debug, Clone)]
pub struct Job {
    /// The step's name.
    pub name: String,
    /// The step as the recipe declares it.
    pub step: Step,
    /// Its mounts, resolved to trees.
    pub mounts: Vec<ResolvedMount>,
    /// The complete environment, as in the compiled `Command`.
    pub env: BTreeMap<String, String>,
    /// The action digest (names the kept log of a failure).
    pub action: Digest,
}

impl Job {
    /// A job for `step` compiled into `compiled`.
    pub fn new(
        name: &str,
        step: &Step,
        mounts: Vec<ResolvedMount>,
        compiled: &CompiledAction,
    ) -> Self {
        let env = compiled
            .command
            .environment_variables
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        Self {
            name: name.to_owned(),
            step: step.clone(),
            mounts,
            env,
            action: compiled.action_digest,
        }
    }
}

/// What a successful run produced, already in the store.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    /// The tree of `/out`.
    pub output: Digest,
    /// The log blob.
    pub log: Digest,
    /// When the step started and ended.
    pub started: SystemTime,
    /// When it ended.
    pub ended: SystemTime,
    /// Time in the sandbox.
    pub duration: Duration,
}

/// Runs `job` in the sandbox; blocks until it ends. `ended` is called as
/// soon as the sandbox has ended, before its output is stored. Returned
/// beside the result: the sandbox's outcome, whose drop waits for its last
/// processes to finish exiting (the caller may leave that to another
/// thread).
pub fn run(
    fs: &FsStore,
    job: &Job,
    reporter: Arc<dyn Reporter>,
    ended: impl FnOnce(),
) -> Result<(Ran, cairn_sandbox::Outcome), BuildError> {
    let scratch_log = ScratchLog::create(fs)?;
    let log_path = scratch_log.path.clone();
    // The mounted trees stay held (no collection removes them) until the
    // step has ended.
    let (plan, _held) = plan(fs, job)?;
    let (stdout, stderr) = scratch_log.writers()?;
    let step: Arc<str> = job.name.as_str().into();
    let stdout = LogStream::new(stdout, step.clone(), reporter.clone());
    let stderr = LogStream::new(stderr, step, reporter);
    let started = SystemTime::now();
    let outcome = cairn_sandbox::run(&plan, stdout, stderr);
    let finished = SystemTime::now();
    ended();
    let outcome = outcome.map_err(|source| BuildError::Sandbox {
        step: job.name.clone(),
        source: Box::new(source),
    })?;
    if !outcome.status.success() {
        let failures = match (&job.step.report, outcome.out.path()) {
            (Some(report), Some(out)) if job.step.test => report_failures(&out, report),
            _ => Vec::new(),
        };
        return Err(failed(fs, job, outcome.status, &log_path, failures));
    }
    let Some(out_dir) = outcome.out.path() else {
        return Err(BuildError::Task(format!(
            "step `{}`: the sandbox did not hand back /out",
            job.name
        )));
    };
    check_output(job, &out_dir)?;
    for path in &job.step.outputs {
        if std::fs::symlink_metadata(out_dir.join(path)).is_err() {
            return Err(BuildError::MissingOutput {
                step: job.name.clone(),
                path: path.clone(),
            });
        }
    }
    let output = output_tree(fs, &job.name, &out_dir)?;
    let log = store_log(fs, &log_path)
        .map_err(|e| BuildError::store(format!("storing the log of step `{}`", job.name), e))?;
    let ran = Ran {
        output,
        log,
        started,
        ended: finished,
        duration: outcome.duration,
    };
    Ok((ran, outcome))
}

/// Refuses an `/out` whose files' apparent sizes add up to more than
/// `limits.out` (the tmpfs bounds what is allocated, but a sparse file
/// would be read, and stored, at its full length), or that holds a symlink
/// leading outside it once resolved through the others (a release of it
/// could not be checked out).
fn check_output(job: &Job, out_dir: &Path) -> Result<(), BuildError> {
    let limit = job.step.limits.out;
    let mut total = 0u64;
    let mut largest: Option<(PathBuf, u64, u64)> = None;
    let mut links = cairn_tree::LinkTree::new();
    let mut pending = vec![(PathBuf::new(), 0)];
    while let Some((rel, depth)) = pending.pop() {
        let dir = out_dir.join(&rel);
        let shown = |e| BuildError::io("reading", format!("/out/{}", shown_path(&rel)), e);
        let entries = std::fs::read_dir(&dir).map_err(shown)?;
        for entry in entries {
            let entry = entry.map_err(shown)?;
            let meta = entry.metadata().map_err(shown)?;
            let rel = rel.join(entry.file_name());
            let unstorable = |reason: String| BuildError::UnstorableOutput {
                step: job.name.clone(),
                path: shown_path(&rel),
                reason,
            };
            if meta.is_dir() {
                if depth == MAX_OUTPUT_DEPTH {
                    return Err(unstorable(format!(
                        "directories nested deeper than {MAX_OUTPUT_DEPTH}"
                    )));
                }
                pending.push((rel, depth + 1));
            } else if meta.is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .map_err(|e| BuildError::io("reading", entry.path(), e))?;
                // Names that are not UTF-8 are refused by the snapshot.
                if let (Some(rel), Some(target)) = (rel.to_str(), target.to_str()) {
                    links.insert(rel, target);
                }
            } else if !meta.is_file() {
                return Err(unstorable(format!(
                    "{}; an output holds only files, directories and symlinks",
                    special_kind(&meta)
                )));
            } else {
                use std::os::unix::fs::MetadataExt;
                total = total.saturating_add(meta.len());
                if largest.as_ref().is_none_or(|l| meta.len() > l.1) {
                    largest = Some((rel, meta.len(), meta.blocks() * 512));
                }
            }
        }
    }
    if let Some(escape) = links.first_escape() {
        return Err(BuildError::EscapingOutput {
            step: job.name.clone(),
            path: cairn_escape::name_str(&escape.path).into_owned(),
            target: cairn_escape::name_str(&escape.target).into_owned(),
        });
    }
    match largest {
        Some((path, size, allocated)) if total > limit => Err(BuildError::OutputTooLarge {
            step: job.name.clone(),
            total,
            limit,
            largest: cairn_escape::name(path.as_os_str().as_encoded_bytes()).into_owned(),
            largest_size: size,
            largest_allocated: allocated,
        }),
        _ => Ok(()),
    }
}

/// `rel` escaped for a terminal, cut after 200 characters (a path 1000
/// directories deep is not worth printing whole).
fn shown_path(rel: &Path) -> String {
    let name = cairn_escape::name(rel.as_os_str().as_encoded_bytes());
    match name.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.into_owned(),
    }
}

/// What a special file is, for an error.
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    }
}

/// The tree of `/out`. An empty `/out` (a step run only for its checks)
/// is the empty directory, stored without walking or snapshotting anything.
fn output_tree(fs: &FsStore, step: &str, out_dir: &Path) -> Result<Digest, BuildError> {
    let mut entries =
        std::fs::read_dir(out_dir).map_err(|e| BuildError::io("reading", out_dir, e))?;
    if entries.next().is_none() {
        let empty = encode_directory(&Directory::default());
        return fs
            .put_bytes_sync(&empty)
            .map_err(|e| BuildError::store(format!("storing the output of step `{step}`"), e));
    }
    let added = snapshot_output(fs, out_dir).map_err(|source| BuildError::Snapshot {
        what: format!("output of step `{step}`"),
        source,
    })?;
    Ok(added.digest)
}

/// Stores the log (an empty one without copying it) and the empty blob the
/// action result names as stderr.
fn store_log(fs: &FsStore, log_path: &Path) -> Result<Digest, cairn_store::StoreError> {
    let empty = fs.put_bytes_sync(b"")?;
    match std::fs::metadata(log_path) {
        Ok(m) if m.len() == 0 => Ok(empty),
        _ => fs.put_file(log_path),
    }
}

/// The sandbox plan of `job`, with its trees materialized and held.
fn plan(fs: &FsStore, job: &Job) -> Result<(Plan, Vec<HeldTree>), BuildError> {
    let mut held = Vec::new();
    let mut mounts = Vec::new();
    for m in &job.mounts {
        let tree = materialized(fs, &m.tree)?;
        mounts.push(Mount {
            target: PathBuf::from(&m.target),
            source: tree.path().to_path_buf(),
            writable: m.writable,
        });
        held.push(tree);
    }
    let l = job.step.limits;
    let plan = Plan {
        mounts,
        argv: crate::platform::argv(&job.step, &job.step.run),
        env: job.env.clone(),
        workdir: PathBuf::from(&job.step.workdir),
        hostname: HOSTNAME.into(),
        timeout: job.step.timeout,
        limits: Limits {
            memory_bytes: Some(l.memory),
            max_processes: Some(u64::from(l.processes)),
            open_files: Some(u64::from(l.open_files)),
            cpu_seconds: None,
            file_size_bytes: None,
            tmp_bytes: Some(l.tmp),
            out_bytes: Some(l.out),
            out_files: Some(l.out_files),
            log_bytes: Some(l.log),
        },
        services: crate::services::plan(job)?,
        emulator: crate::platform::emulator(&job.step),
    };
    Ok((plan, held))
}

/// The step's log while it runs: a temporary file of the store's
/// `cache/build/`, locked while it lives (a collection, or the next build,
/// removes one a killed `cairn` left) and removed when dropped. A file,
/// not a directory holding it: removing a directory on ext4 costs a tenth
/// of a millisecond more, as its block is freed when its last descriptor
/// closes.
struct ScratchLog {
    path: PathBuf,
    /// Holds the lock.
    file: File,
}

impl ScratchLog {
    fn create(fs: &FsStore) -> Result<Self, BuildError> {
        let (path, file) = scratch_file(fs, "build")?;
        Ok(Self { path, file })
    }

    /// Two writers for stdout and stderr, sharing the file's offset (the
    /// sandbox writes them in turn, on one thread).
    fn writers(&self) -> Result<(File, File), BuildError> {
        let clone = || {
            self.file
                .try_clone()
                .map_err(|e| BuildError::io("opening", &self.path, e))
        };
        Ok((clone()?, clone()?))
    }
}

impl Drop for ScratchLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The error for a failed run, keeping its log where the user can read it.
fn failed(
    fs: &FsStore,
    job: &Job,
    status: Termination,
    log: &std::path::Path,
    failures: Vec<String>,
) -> BuildError {
    let kept = kept_log_path(&fs.cache_dir(), &job.name, &job.action.hex());
    let keep = kept
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::copy(log, &kept));
    if let Err(e) = keep {
        tracing::warn!(path = %kept.display(), error = %e, "failed step's log not kept");
    }
    BuildError::StepFailed {
        step: job.name.clone(),
        ended: Box::new(crate::error::Ended {
            termination: status,
            limits: job.step.limits,
            services: job.step.services.keys().map(|n| n.to_string()).collect(),
        }),
        tail: last_lines(log, TAIL_LINES),
        log: kept,
        failures,
    }
}

/// The largest report read back from a failed test.
const MAX_REPORT: u64 = 4 << 20;

/// The failures listed in the failed test's report `/out/<report>`, or a
/// line saying why there are none to show. The report is opened beneath
/// `/out` without following any symlink (the step wrote it; it must not
/// name a file of the host's), non-blocking (a FIFO is refused, not
/// waited on), and read up to [`MAX_REPORT`].
fn report_failures(out_dir: &Path, report: &str) -> Vec<String> {
    match read_report(out_dir, report) {
        Ok(text) => {
            let listed = crate::junit::failures(&text);
            if listed.is_empty() {
                vec![format!("/out/{report} lists no failed test case")]
            } else {
                listed
            }
        }
        Err(why) => vec![format!("/out/{report}: {why}")],
    }
}

fn read_report(out_dir: &Path, report: &str) -> Result<String, String> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let dir = rustix::fs::open(out_dir, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
        .map_err(|e| e.to_string())?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat2(&dir, report, flags, Mode::empty(), resolve).map_err(|e| match e {
        rustix::io::Errno::NOENT => "the test wrote no report".to_owned(),
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => {
            "not read: a symlink on the way".to_owned()
        }
        e => format!("not read: {e}"),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not read: not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_REPORT)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_out_is_the_tree_a_snapshot_would_give() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = FsStore::open(tmp.path().join("s")).unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let fast = output_tree(&fs, "s", &out).unwrap();
        assert_eq!(fast, crate::trees::snapshot_temp(&fs, &out).unwrap().digest);
        assert!(fs.has_sync(&fast));
    }
}
