//! Errors of [`crate::run`]: each names the path, mount or operation that
//! failed, so the caller can print one precise line.

use std::io;
use std::path::PathBuf;

use crate::plan::PlanError;

/// Why a step could not be run (a step that ran and failed is an
/// [`crate::Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The plan is invalid.
    #[error("invalid sandbox plan")]
    Plan(#[from] PlanError),
    /// A mount source cannot be used.
    #[error("sandbox input {path:?} for {target:?}")]
    Source {
        /// Host path.
        path: PathBuf,
        /// Where it should have appeared in the sandbox.
        target: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Preparing the scratch directory or a writable copy failed.
    #[error("sandbox scratch {path:?}")]
    Scratch {
        /// Path being created or copied.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A cgroup could not be created or configured.
    #[error("sandbox cgroup {path:?}")]
    Cgroup {
        /// cgroupfs path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// No host ids can be given to the step (see [`crate::FIRST_HOST_ID`]).
    #[error("no host user id for the sandbox: {0}")]
    HostIds(String),
    /// Starting the sandbox process failed.
    #[error("cannot start sandbox process")]
    Spawn(#[source] io::Error),
    /// A setup step inside the sandbox failed (namespaces, a mount, limits).
    #[error("sandbox setup failed: {what}")]
    Setup {
        /// The operation, e.g. `bind /srv/x at /src`.
        what: String,
        /// The errno the kernel returned.
        #[source]
        source: io::Error,
    },
    /// The command could not be executed.
    #[error("cannot execute {program:?} in the sandbox")]
    Exec {
        /// `argv[0]`.
        program: String,
        /// The errno of the last `execve` attempt.
        #[source]
        source: io::Error,
    },
    /// The sandbox ended without reporting a status (killed from outside?),
    /// with the outer process's status if it was waited for.
    #[error("sandbox ended without reporting a status ({})", outer_status(.0))]
    Lost(Option<std::process::ExitStatus>),
}

fn outer_status(status: &Option<std::process::ExitStatus>) -> String {
    match status {
        Some(s) => format!("outer process status {s}"),
        None => "outer process still exiting".to_string(),
    }
}
