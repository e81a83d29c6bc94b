//! Where a build's blocking work runs: walks of input trees, grafts,
//! checks of blobs, sandboxes.
//!
//! On tokio's blocking pool by default, so that the inputs and steps of
//! one build proceed side by side while the async part waits. A hand-off
//! there and back wakes two threads, though, and when nothing else of the
//! build could run meanwhile (one input to walk, one step in its wave)
//! that is all it buys. On a virtual machine, where waking an idle
//! processor traps to the hypervisor, such hand-offs were a tenth of a
//! sandboxed `/bin/true`'s whole cost (see `bench/RESULTS.md`). Such work
//! runs on the calling thread instead: [`Offload::Here`].

use crate::error::BuildError;

/// Where one piece of blocking work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offload {
    /// On the blocking pool, beside the build's other work.
    Pool,
    /// On the calling thread: nothing else of the build needs the runtime
    /// meanwhile. On a multi-threaded runtime its other tasks move to
    /// another worker (`block_in_place`).
    Here,
}

impl Offload {
    /// [`Offload::Here`] for work nothing else of the build runs beside.
    pub(crate) fn alone(alone: bool) -> Self {
        if alone {
            Offload::Here
        } else {
            Offload::Pool
        }
    }

    /// Runs `f` where `self` says.
    pub(crate) async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BuildError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match self {
            Offload::Pool => blocking(f).await,
            Offload::Here => Ok(match Handle::current().runtime_flavor() {
                RuntimeFlavor::CurrentThread => f(),
                _ => tokio::task::block_in_place(f),
            }),
        }
    }
}

/// Runs blocking work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BuildError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::Task(e.to_string()))
}
