//! What is left of a sandbox once its step has ended: the outer process,
//! maybe still exiting, the cgroups, the host ids and the scratch area of
//! writable mounts.
//!
//! Pid 1 reports the step's end only once every other process of the
//! namespace is dead (see `reports.rs`), so the caller may read `/out` at
//! once. The rest, the two sandbox processes' exit (their copies of the
//! caller's memory, the namespaces and mounts), goes on meanwhile; this
//! value waits for it and gives the cgroup entry, the ids and the scratch
//! back, in that order, when the [`crate::Outcome`] holding it is dropped.

use std::process::Child;

use crate::cgroup::Cgroup;
use crate::copies::CopyArea;
use crate::ids::HostIds;

/// Released on drop: see the module docs.
pub(crate) struct Teardown {
    /// The outer process, if it was not waited for yet.
    pub exiting: Option<Child>,
    pub cgroup: Cgroup,
    // Dropped after `cgroup` is emptied, in this order.
    pub ids: HostIds,
    pub scratch: Option<CopyArea>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Some(mut outer) = self.exiting.take() {
            // Pid 1 has ended or is ending; the outer process follows it.
            let _ = outer.wait();
        }
        self.cgroup.remove();
    }
}

impl std::fmt::Debug for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teardown")
            .field("exiting", &self.exiting.as_ref().map(Child::id))
            .field("cgroup", &self.cgroup)
            .field("ids", &self.ids)
            .field("scratch", &self.scratch.is_some())
            .finish()
    }
}
