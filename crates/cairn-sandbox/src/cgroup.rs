//! A per-step cgroup (v1 hierarchies): memory and process limits, OOM
//! detection, and a race-free "kill everything" via the freezer.
//!
//! Why cgroups and not `RLIMIT_AS`/`RLIMIT_NPROC`: `RLIMIT_AS` counts
//! address space, not memory, and turns an overrun into a failed `malloc`
//! the parent cannot tell apart from any other failure; `RLIMIT_NPROC` is
//! per user and not enforced for the host's root. A memory cgroup counts
//! what the step really uses (tmpfs pages included), kills it when it
//! overruns and records that in `memory.oom_control`, so the outcome can say
//! [`crate::Termination::MemoryExceeded`].
//!
//! The outer process (see `child.rs`) joins the cgroups before it forks
//! the sandbox's pid 1, so no process of the step ever runs outside them,
//! by writing `0` to each hierarchy's `tasks` file: moving the calling
//! thread alone is the one migration the kernel makes without taking the
//! global `cgroup_threadgroup_rwsem` for writing, which waits for an RCU
//! grace period (6–16 ms measured here, longer under load) each time.
//! Writing a pid to `cgroup.procs`, as this crate used to, took it; the
//! wait was hidden behind the root filesystem's setup only in part.
//!
//! The cgroups are a pool, kept and reused rather than made and removed
//! for every step: `cairn-sandbox-pool-<n>` in each hierarchy, held by an
//! `flock` on its memory (else first) directory for as long as a step runs
//! in it. Making and removing a v1 memory cgroup cost a step 0.2–0.4 ms;
//! taking a free one from the pool costs an `flock`. A step finds its
//! cgroup empty (a survivor of a killed cairn is frozen and killed first),
//! its limits set afresh (none is inherited from the step before), and its
//! counters (OOM kills, refused forks) read against what they were when it
//! started. The pool grows to the most sandboxes that ever ran at once,
//! and shrinks back (`pool.rs`): an entry past the first few is removed
//! when its sandbox ends, and each process, before its first sandbox,
//! removes such entries a killed cairn left idle. Cgroups named
//! `cairn-sandbox-<pid>-<n>`, by earlier versions, are removed once their
//! process is gone.
//!
//! Only cgroup v1 (`/sys/fs/cgroup/memory`, `pids`, `freezer`) is
//! implemented; on a pure cgroup v2 host a plan with a memory or process
//! limit is refused rather than silently unlimited.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::SandboxError;
use crate::plan::Limits;

pub(crate) const ROOT: &str = "/sys/fs/cgroup";
/// Processes of the sandbox machinery counted by `pids.max` besides the step.
const HELPER_PROCESSES: u64 = 2;

/// The step's cgroups, a pool entry held until [`Cgroup::remove`] empties
/// them (and the value is dropped).
#[derive(Debug)]
pub(crate) struct Cgroup {
    /// The `flock`ed directory that holds the entry.
    _lock: Option<File>,
    dirs: Vec<PathBuf>,
    /// The `tasks` files the outer process joins through.
    tasks: Vec<File>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    freezer: Option<PathBuf>,
    /// The counters when the step started: the pool's cgroups keep counting.
    oom_kills_before: u64,
    refused_forks_before: u64,
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|source| SandboxError::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

/// The pool's cgroups: `cairn-sandbox-pool-<n>`.
pub(crate) const POOL: &str = "cairn-sandbox-pool-";
/// Past this many entries all busy, something is wrong (a leak): refuse.
const POOL_MAX: usize = 4096;
/// The hierarchies this crate makes cgroups in.
pub(crate) const CONTROLLERS: [&str; 3] = ["memory", "pids", "freezer"];

/// Lowest fd number of a `tasks` file: the child keeps these open while it
/// moves fds 0–3 into place, so they must not be among them.
pub(crate) const MIN_JOIN_FD: RawFd = 10;

/// `file` moved to an fd number of at least [`MIN_JOIN_FD`].
fn high_fd(file: File) -> std::io::Result<File> {
    Ok(rustix::io::fcntl_dupfd_cloexec(&file, MIN_JOIN_FD)?.into())
}

impl Cgroup {
    /// Takes a free entry of the pool (making one when all are busy) with
    /// the cgroups `limits` need, plus a freezer one if available, and
    /// sets its limits.
    pub(crate) fn create(limits: &Limits) -> Result<Cgroup, SandboxError> {
        crate::pool::sweep_once();
        let required = [
            limits.memory_bytes.is_some(),
            limits.max_processes.is_some(),
            false,
        ];
        for n in 0..POOL_MAX {
            if let Some(mut cg) = Cgroup::take(&format!("{POOL}{n}"), required)? {
                cg.empty();
                if let Err(e) = cg.set_limits(limits) {
                    cg.remove();
                    return Err(e);
                }
                cg.oom_kills_before = cg.oom_kill_count();
                cg.refused_forks_before = cg.refused_fork_count();
                return Ok(cg);
            }
        }
        Err(SandboxError::Cgroup {
            path: Path::new(ROOT).join(format!("*/{POOL}*")),
            source: std::io::Error::other(format!("all {POOL_MAX} cgroups of the pool are busy")),
        })
    }

    /// Entry `name`, made where missing, if no one holds it.
    fn take(name: &str, required: [bool; 3]) -> Result<Option<Cgroup>, SandboxError> {
        let mut cg = Cgroup {
            _lock: None,
            dirs: vec![],
            tasks: vec![],
            memory: None,
            pids: None,
            freezer: None,
            oom_kills_before: 0,
            refused_forks_before: 0,
        };
        for (controller, required) in CONTROLLERS.into_iter().zip(required) {
            let dir = Path::new(ROOT).join(controller).join(name);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) if required => return Err(SandboxError::Cgroup { path: dir, source }),
                Err(source) => {
                    tracing::debug!(path = %dir.display(), %source, "cgroup not available");
                    continue;
                }
            }
            let cgroup_err = |source| SandboxError::Cgroup {
                path: dir.clone(),
                source,
            };
            if cg._lock.is_none() {
                let lock = match File::open(&dir) {
                    // Removed since it was made or found (`pool.rs`).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    opened => opened.map_err(cgroup_err)?,
                };
                match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                {
                    // An entry removed since it was opened (`pool.rs`):
                    // take another.
                    Ok(()) if !crate::pool::still_at(&lock, &dir) => return Ok(None),
                    Ok(()) => cg._lock = Some(lock),
                    Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                    Err(e) => return Err(cgroup_err(e.into())),
                }
            }
            cg.dirs.push(dir.clone());
            match controller {
                "memory" => cg.memory = Some(dir.clone()),
                "pids" => cg.pids = Some(dir.clone()),
                "freezer" => cg.freezer = Some(dir.clone()),
                _ => {}
            }
            let tasks = dir.join("tasks");
            let file = OpenOptions::new()
                .write(true)
                .open(&tasks)
                .and_then(high_fd)
                .map_err(|source| SandboxError::Cgroup {
                    path: tasks,
                    source,
                })?;
            cg.tasks.push(file);
        }
        Ok(Some(cg))
    }

    /// Makes sure no process is left in the entry (a killed cairn's step
    /// may have outlived it) and that it is not frozen.
    fn empty(&self) {
        if let Some(freezer) = &self.freezer {
            let state = freezer.join("freezer.state");
            if fs::read_to_string(&state).is_ok_and(|s| s.trim() != "THAWED") {
                let _ = fs::write(&state, "THAWED");
            }
        }
        if !self.pids().is_empty() {
            tracing::debug!(dirs = ?self.dirs, "a pool cgroup held processes; killing them");
            self.wait_empty();
        }
    }

    /// Sets every limit afresh: what `limits` says, and no limit where it
    /// says none (the entry may hold the step before's).
    fn set_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        if let Some(dir) = &self.memory {
            let bytes = limits
                .memory_bytes
                .map_or("-1".to_string(), |b| b.to_string());
            // v1 keeps memory.limit <= memory.memsw.limit at every write:
            // lift the second, set the first, then the second.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            // Absent without swap accounting; then there is nothing to limit.
            let swap_accounting = memsw.exists();
            if swap_accounting {
                write(&memsw, "-1")?;
            }
            write(&dir.join("memory.limit_in_bytes"), &bytes)?;
            if swap_accounting {
                write(&memsw, &bytes)?;
            }
        }
        if let Some(dir) = &self.pids {
            let n = limits
                .max_processes
                .map_or("max".to_string(), |n| (n + HELPER_PROCESSES).to_string());
            write(&dir.join("pids.max"), &n)?;
        }
        Ok(())
    }

    /// Raw fds of the `tasks` files, for the child to join.
    pub(crate) fn tasks_fds(&self) -> Vec<RawFd> {
        self.tasks.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// How many times the kernel OOM-killed a process of this step.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.oom_kill_count().saturating_sub(self.oom_kills_before)
    }

    /// The cgroup's own count, since it was made.
    fn oom_kill_count(&self) -> u64 {
        let Some(dir) = &self.memory else { return 0 };
        let text = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether a process limit is set (and so worth watching).
    pub(crate) fn limits_processes(&self) -> bool {
        self.pids.is_some()
    }

    /// How many forks the process limit refused this step (`pids.events`).
    pub(crate) fn refused_forks(&self) -> u64 {
        self.refused_fork_count()
            .saturating_sub(self.refused_forks_before)
    }

    /// The cgroup's own count, since it was made.
    fn refused_fork_count(&self) -> u64 {
        let Some(dir) = &self.pids else { return 0 };
        let text = fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process still in the cgroup. With a freezer the set is
    /// frozen first, so no pid can exit and be reused while we signal it;
    /// without one, the pids are signalled as they are listed.
    pub(crate) fn kill_all(&self) {
        let Some(freezer) = &self.freezer else {
            self.kill_listed();
            return;
        };
        let state = freezer.join("freezer.state");
        if fs::write(&state, "FROZEN").is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while fs::read_to_string(&state).is_ok_and(|s| s.trim() != "FROZEN")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill_listed();
        let _ = fs::write(&state, "THAWED");
    }

    fn kill_listed(&self) {
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// Kills leftovers and waits for the cgroups to empty; the entry goes
    /// back to the pool when the value is dropped.
    pub(crate) fn remove(&self) {
        if !self.pids().is_empty() {
            self.wait_empty();
        }
    }

    /// Freezes and kills whatever is in the cgroups until they are empty
    /// (bounded: a process stuck in the kernel is warned about, and the
    /// next step that takes the entry tries again).
    fn wait_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.kill_all();
            if self.pids().is_empty() {
                return;
            }
            if Instant::now() > deadline {
                tracing::warn!(dirs = ?self.dirs, "processes stay in a sandbox cgroup");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cgroup {
    /// An entry past the first few goes with the sandbox that used it, so
    /// a long-lived process does not keep a burst's entries (`pool.rs`).
    fn drop(&mut self) {
        if self._lock.is_some() {
            crate::pool::remove_if_spare(&self.dirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Option<Cgroup> {
        Cgroup::take(name, [true, true, false]).expect("cgroups v1 as root")
    }

    fn test_name() -> String {
        format!("{POOL}test-{}", std::process::id())
    }

    #[test]
    fn an_entry_is_held_by_one_sandbox_at_a_time() {
        let name = test_name() + "-held";
        let first = entry(&name).expect("a fresh entry is free");
        assert!(entry(&name).is_none(), "taken twice");
        drop(first);
        let again = entry(&name).expect("free again once dropped");
        drop(again);
        for c in CONTROLLERS {
            let _ = fs::remove_dir(Path::new(ROOT).join(c).join(&name));
        }
    }

    #[test]
    fn a_reused_entry_keeps_no_limit_of_the_step_before() {
        let name = test_name() + "-limits";
        let cg = entry(&name).unwrap();
        let tight = Limits {
            memory_bytes: Some(64 << 20),
            max_processes: Some(10),
            ..Limits::default()
        };
        cg.set_limits(&tight).unwrap();
        let memory = cg.memory.clone().unwrap();
        let pids = cg.pids.clone().unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap().trim().to_string();
        assert_eq!(
            read(memory.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(pids.join("pids.max")), "12");
        drop(cg);

        let cg = entry(&name).unwrap();
        let none = Limits {
            memory_bytes: None,
            max_processes: None,
            ..Limits::default()
        };
        cg.set_limits(&none).unwrap();
        let unlimited: u64 = read(memory.join("memory.limit_in_bytes")).parse().unwrap();
        assert!(unlimited > 1 << 60, "memory limit kept: {unlimited}");
        assert_eq!(read(pids.join("pids.max")), "max");
        drop(cg);
        for c in CONTROLLERS {
            let _ = fs::remove_dir(Path::new(ROOT).join(c).join(&name));
        }
    }
}
