//! The build's one error type. Every variant names the step, input, digest
//! or path it is about, so the CLI can print it as one line (or, for a
//! failed step, a line plus the log tail it carries).

use std::path::PathBuf;

use cairn_digest::Digest;
use cairn_sandbox::Termination;
use cairn_store::StoreError;

use crate::compare::Difference;

/// What went wrong in a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `cairn.toml` could not be read.
    #[error("reading {}: {source}", path.display())]
    ReadRecipe {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `cairn.toml` is malformed (the error carries `file:line:column`).
    #[error(transparent)]
    Recipe(#[from] cairn_recipe::RecipeError),
    /// Builds need a local directory store (to snapshot and materialize).
    #[error("builds need a local store; give --store a path")]
    NotLocal,
    /// No step was named and the recipe has no obvious default.
    #[error("which step? the recipe has no [release] and several steps: {}", steps.join(", "))]
    NoDefaultStep {
        /// The recipe's steps.
        steps: Vec<String>,
    },
    /// The named step does not exist.
    #[error("no step named `{step}`; the recipe has: {}", steps.join(", "))]
    UnknownStep {
        /// The name asked for.
        step: String,
        /// The recipe's steps.
        steps: Vec<String>,
    },
    /// Snapshotting or materializing failed.
    #[error("{what}: {source}")]
    Snapshot {
        /// What was being done ("input `src`", "output of step `build`").
        what: String,
        /// Why.
        #[source]
        source: cairn_snapshot::SnapshotError,
    },
    /// An input that cannot be used as a tree.
    #[error("input `{input}`: {reason}")]
    BadInput {
        /// The input.
        input: String,
        /// Why.
        reason: String,
    },
    /// A pinned tree is not in the store.
    #[error("input `{input}`: tree {digest} is not in the store (add it with `cairn store add`)")]
    MissingTree {
        /// The input.
        input: String,
        /// Its digest.
        digest: String,
    },
    /// A fixed-output fetch failed (a digest mismatch shows both digests).
    #[error("input `{input}`: {source}")]
    Fetch {
        /// The input.
        input: String,
        /// Why.
        #[source]
        source: Box<cairn_fetch::FetchError>,
    },
    /// A fetched archive could not be unpacked.
    #[error("input `{input}`: {source}")]
    Unpack {
        /// The input.
        input: String,
        /// Why.
        #[source]
        source: Box<cairn_fetch::UnpackError>,
    },
    /// An `oci` input's image could not be pulled or was refused.
    #[error("input `{input}`: {source}")]
    Image {
        /// The input.
        input: String,
        /// Why (naming the image and, for a layer, its digest).
        #[source]
        source: Box<cairn_oci::PullError>,
    },
    /// The store failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Copying blobs between the local store and a remote cache failed.
    #[error("{what}: {source}")]
    Transfer {
        /// What was being copied, and where.
        what: String,
        /// Why.
        #[source]
        source: Box<cairn_transfer::TransferError>,
    },
    /// A directory in the store does not decode, or a new one is invalid.
    #[error("directory {digest}: {source}")]
    Tree {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: cairn_tree::TreeError,
    },
    /// The step could not be compiled into an action.
    #[error(transparent)]
    Compile(#[from] cairn_recipe::CompileError),
    /// The sandbox could not run the step.
    #[error("step `{step}`: {source}")]
    Sandbox {
        /// The step.
        step: String,
        /// Why.
        #[source]
        source: Box<cairn_sandbox::SandboxError>,
    },
    /// A file operation of the build itself failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The step ran and failed; nothing was cached.
    #[error("step `{step}` {}; full log: {}", describe(&ended.termination, &ended.limits, &ended.services), log.display())]
    StepFailed {
        /// The step.
        step: String,
        /// How it ended.
        ended: Box<Ended>,
        /// The last lines of its log.
        tail: Vec<String>,
        /// Where the full log is kept.
        log: PathBuf,
        /// For a test step with a JUnit report: the failures it lists.
        failures: Vec<String>,
    },
    /// A service of the step cannot be run as written.
    #[error("step `{step}`: service `{service}`: {reason}")]
    BadService {
        /// The step.
        step: String,
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// `[release] requires` a test step that has not passed on the inputs
    /// the release is built from (it failed, or never ran on them).
    #[error(
        "release refused: test step `{step}` has not passed on these inputs (run `cairn test`)"
    )]
    TestNotPassed {
        /// The test step.
        step: String,
    },
    /// A step for another platform names no emulator tree.
    #[error(
        "step `{step}`: platform {platform} is not this machine's, so it runs under QEMU user emulation from a pinned tree: add a directory holding {emulator} to the store (`cairn store add DIR`, e.g. with Debian's /usr/bin/{emulator}), declare it as an input (`tree = \"sha256:…\"`) and name that input with `emulator = \"INPUT\"`"
    )]
    NoEmulator {
        /// The step.
        step: String,
        /// Its platform.
        platform: String,
        /// The emulator's file name (`qemu-aarch64-static`).
        emulator: String,
    },
    /// The step uses a part of `cairn.toml` this build cannot run yet.
    #[error("step `{step}`: {what} is not supported by this version of cairn build")]
    Unsupported {
        /// The step.
        step: String,
        /// What it uses.
        what: String,
    },
    /// The files in `/out` add up to more than `limits.out` (a sparse
    /// file counts at its full length: that is what would be stored).
    #[error(
        "step `{step}`: the files in /out add up to {} (largest: /out/{largest}, {} long, {} allocated), over limits.out = {}",
        bytes(*total), bytes(*largest_size), bytes(*largest_allocated), bytes(*limit)
    )]
    OutputTooLarge {
        /// The step.
        step: String,
        /// Their apparent sizes added up.
        total: u64,
        /// The limit.
        limit: u64,
        /// The largest file, relative to `/out` (escaped for printing).
        largest: String,
        /// Its apparent size.
        largest_size: u64,
        /// What it really occupies.
        largest_allocated: u64,
    },
    /// A symlink in `/out` leads outside it (resolved through the others).
    #[error(
        "step `{step}`: /out/{path} -> {target} leads outside /out; a release of it could not be checked out"
    )]
    EscapingOutput {
        /// The step.
        step: String,
        /// The symlink, relative to `/out` (escaped for printing).
        path: String,
        /// Its target (escaped for printing).
        target: String,
    },
    /// `/out` holds what a tree cannot (a FIFO, socket or device), or
    /// directories nested deeper than [`crate::run::MAX_OUTPUT_DEPTH`].
    #[error("step `{step}`: /out/{path}: {reason}")]
    UnstorableOutput {
        /// The step.
        step: String,
        /// The entry, relative to `/out` (escaped, and cut when long).
        path: String,
        /// What it is.
        reason: String,
    },
    /// The step succeeded but a declared output is missing from `/out`.
    #[error("step `{step}` did not produce required output /out/{path}")]
    MissingOutput {
        /// The step.
        step: String,
        /// The path, relative to `/out`.
        path: String,
    },
    /// `--check`: running the step again gave different bytes.
    #[error("step `{step}` is not reproducible: {} file(s) differ", differences.len())]
    NotReproducible {
        /// The step.
        step: String,
        /// Each differing path with both digests.
        differences: Vec<Difference>,
    },
    /// A background task panicked or was cancelled.
    #[error("build task failed: {0}")]
    Task(String),
}

impl BuildError {
    /// An I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A store error with what was being done.
    pub fn store(what: impl Into<String>, source: StoreError) -> Self {
        Self::Store {
            what: what.into(),
            source,
        }
    }
}

/// How a failed step ended, with what its description names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// How it ended.
    pub termination: Termination,
    /// The step's limits (named when one of them ended it).
    pub limits: cairn_recipe::Limits,
    /// The step's services, in the sandbox plan's order (named when one of
    /// them ended it).
    pub services: Vec<String>,
}

/// The name of a signal that ends a process, for the ones a step meets.
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// How a step ended, in words, naming the limit that ended it.
pub fn describe(t: &Termination, limits: &cairn_recipe::Limits, services: &[String]) -> String {
    match t {
        Termination::ServiceNotReady { service, ended } => {
            let name = services.get(*service).map_or("?", String::as_str);
            match ended {
                None => format!("did not run: service `{name}` was not ready by its health check's deadline (its output is in the log)"),
                Some(cairn_sandbox::ServiceEnd::Exited(code)) => format!("did not run: service `{name}` exited with code {code} before it was ready (its output is in the log)"),
                Some(cairn_sandbox::ServiceEnd::Signaled(sig)) => format!("did not run: service `{name}` was killed by signal {sig} before it was ready"),
            }
        }
        Termination::Exited(code) => format!("exited with code {code}"),
        Termination::Signaled(libc::SIGSYS) => format!(
            "was killed by signal {} (SIGSYS: a system call of another architecture, which the sandbox refuses)",
            libc::SIGSYS
        ),
        Termination::Signaled(sig) => match signal_name(*sig) {
            Some(name) => format!("was killed by signal {sig} ({name})"),
            None => format!("was killed by signal {sig}"),
        },
        Termination::TimedOut => "timed out and was killed".into(),
        Termination::MemoryExceeded => format!(
            "exceeded its memory limit (limits.memory = {}, /tmp and /out included) and was killed",
            bytes(limits.memory)
        ),
        Termination::ProcessLimit => format!(
            "reached its process limit (limits.processes = {}) and was killed",
            limits.processes
        ),
        Termination::OutOfFiles { limit } => format!(
            "failed with /out holding all the entries it may (limits.out_files = {limit})"
        ),
        Termination::LogLimit { limit } => format!(
            "wrote more than its log limit (limits.log = {}) and was killed",
            bytes(*limit)
        ),
        Termination::OutOfSpace { mount, limit } => {
            let key = match mount {
                cairn_sandbox::Scratch::Out => "out",
                cairn_sandbox::Scratch::Tmp | cairn_sandbox::Scratch::Writable => "tmp",
            };
            format!("failed with {mount} full (limits.{key} = {})", bytes(*limit))
        }
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `4 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_death_names_the_signal() {
        let limits = cairn_recipe::Limits::default();
        let died = |sig| describe(&Termination::Signaled(sig), &limits, &[]);
        assert_eq!(died(libc::SIGSEGV), "was killed by signal 11 (SIGSEGV)");
        assert_eq!(died(libc::SIGABRT), "was killed by signal 6 (SIGABRT)");
        assert_eq!(died(64), "was killed by signal 64");
    }
}
