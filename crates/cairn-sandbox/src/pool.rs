//! Shrinking the cgroup pool (`cgroup.rs`) back after a burst, and
//! removing what earlier versions left.
//!
//! The pool grows to the most sandboxes that ever ran at once on the
//! machine, and its entries (a memory, pids and freezer cgroup each) would
//! stay for good. The pool itself shrinks, rather than `cairn store gc`:
//! the pool belongs to the machine, not to a store, and a machine that
//! builds may never collect a store. An entry numbered [`pool_kept`] or
//! above is removed when the sandbox that used it ends (by that sandbox,
//! still holding its lock), and once per process, before its first
//! sandbox, every such entry left idle (by a killed cairn) is; the first
//! [`pool_kept`] stay, so a machine running up to that many sandboxes at
//! once never pays to make one again (0.2–0.4 ms each).
//! [`remove_idle_cgroups`] removes every idle entry, the low ones too.
//!
//! An entry is idle when its lock (`flock` on its first directory, the
//! one [`crate::cgroup`] takes) can be taken and none of its cgroups holds
//! a process. It is removed holding that lock, the locked directory last,
//! so a sandbox taking the entry meanwhile either waits out the lock or
//! finds, once it has the lock, that the directory it locked is gone
//! (`cgroup.rs` checks that) and takes another entry. The kernel refuses
//! to remove a cgroup that holds a process, whatever this module thinks.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup::{CONTROLLERS, POOL, ROOT};

/// How many entries the pool keeps (those numbered below it): twice the
/// CPUs this process may use, and at least 8, so that a build running a
/// step per CPU never makes an entry again.
pub fn pool_kept() -> usize {
    static KEPT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *KEPT.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        (2 * cpus).max(8)
    })
}

/// Cgroups earlier versions named `cairn-sandbox-<pid>-<n>`.
const PER_PROCESS: &str = "cairn-sandbox-";
/// A cgroup of a dead process younger than this is left alone: it may be
/// another pid namespace's, made an instant ago and not joined yet.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// What a sweep found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Pool entries removed, by name (`cairn-sandbox-pool-<n>`).
    pub removed: Vec<String>,
    /// Entries left because a sandbox holds them or they hold a process.
    pub busy: Vec<String>,
}

/// Removes every idle entry of the pool (none that a sandbox holds or that
/// holds a process), and the cgroups of earlier versions whose process is
/// gone.
pub fn remove_idle_cgroups() -> Swept {
    sweep(0)
}

/// The sweep a process makes once, before its first sandbox.
pub(crate) fn sweep_once() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let swept = sweep(pool_kept());
        if !swept.removed.is_empty() {
            tracing::debug!(removed = ?swept.removed, "idle sandbox cgroups removed");
        }
    });
}

/// Removes the idle pool entries numbered `keep` or above, and the old
/// per-process cgroups.
fn sweep(keep: usize) -> Swept {
    let mut entries = BTreeSet::new();
    for controller in CONTROLLERS {
        let Ok(dir) = fs::read_dir(Path::new(ROOT).join(controller)) else {
            continue;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name
                .strip_prefix(POOL)
                .and_then(|n| n.parse::<usize>().ok())
            {
                if n >= keep {
                    entries.insert((n, name.to_string()));
                }
            } else {
                remove_if_stale(name, &entry.path());
            }
        }
    }
    let mut swept = Swept::default();
    for (_, name) in entries {
        if remove_if_idle(&name) {
            swept.removed.push(name);
        } else {
            swept.busy.push(name);
        }
    }
    swept
}

/// Removes `path`, an earlier version's `cairn-sandbox-<pid>-<n>`, when
/// its process is gone and it is older than [`STALE_AFTER`]. One that
/// still holds a process is refused by the kernel and stays.
fn remove_if_stale(name: &str, path: &Path) {
    let Some(owner) = name
        .strip_prefix(PER_PROCESS)
        .and_then(|n| n.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return;
    };
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_AFTER));
    if owner != std::process::id() && old && !Path::new(&format!("/proc/{owner}")).exists() {
        match fs::remove_dir(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed a stale cgroup"),
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "stale cgroup kept"),
        }
    }
}

/// Removes the entry whose directories are `dirs` (the first one locked
/// by the caller) if it is numbered [`pool_kept`] or above and holds no
/// process.
pub(crate) fn remove_if_spare(dirs: &[PathBuf]) {
    let spare = dirs
        .first()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(POOL))
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n >= pool_kept());
    if spare && !dirs.iter().any(|d| holds_a_process(d)) {
        remove_dirs(dirs);
    }
}

/// Whether the cgroup `dir` holds a process (or cannot be read).
fn holds_a_process(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.procs")).map_or(true, |t| !t.trim().is_empty())
}

/// Removes `dirs`, the locked (first) one last: while it exists, whoever
/// takes the entry waits for the lock. Whether all went.
fn remove_dirs(dirs: &[PathBuf]) -> bool {
    dirs.iter().rev().all(|d| match fs::remove_dir(d) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(path = %d.display(), error = %e, "idle cgroup kept");
            false
        }
    })
}

/// Removes entry `name` if it is idle; whether it did.
fn remove_if_idle(name: &str) -> bool {
    let dirs: Vec<PathBuf> = CONTROLLERS
        .iter()
        .map(|c| Path::new(ROOT).join(c).join(name))
        .filter(|d| d.is_dir())
        .collect();
    let Some(first) = dirs.first() else {
        return false;
    };
    let Ok(lock) = File::open(first) else {
        return false;
    };
    let free = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    if free.is_err() || !still_at(&lock, first) {
        return false;
    }
    !dirs.iter().any(|d| holds_a_process(d)) && remove_dirs(&dirs)
}

/// Whether `dir`, opened as `file`, is still the directory at its path
/// (not removed, nor removed and made again, since it was opened).
pub(crate) fn still_at(file: &File, dir: &Path) -> bool {
    match (file.metadata(), fs::metadata(dir)) {
        (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
        _ => false,
    }
}
