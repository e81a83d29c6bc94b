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
//! Only cgroup v1 (`/sys/fs/cgroup/memory`, `pids`, `freezer`) is
//! implemented; on a pure cgroup v2 host a plan with a memory or process
//! limit is refused rather than silently unlimited.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::SandboxError;
use crate::plan::Limits;

const ROOT: &str = "/sys/fs/cgroup";
/// Processes of the sandbox machinery counted by `pids.max` besides the step.
const HELPER_PROCESSES: u64 = 2;

/// The step's cgroups, removed by [`Cgroup::remove`].
#[derive(Debug)]
pub(crate) struct Cgroup {
    dirs: Vec<PathBuf>,
    /// The `tasks` files the outer process joins through.
    tasks: Vec<File>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    freezer: Option<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|source| SandboxError::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

/// Cgroups this crate names: `cairn-sandbox-<pid>-<n>`.
const PREFIX: &str = "cairn-sandbox-";
/// A cgroup of a dead process younger than this is left alone: it may be
/// another pid namespace's, made an instant ago and not joined yet.
const STALE_AFTER: Duration = Duration::from_secs(10);
/// The hierarchies this crate makes cgroups in.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "freezer"];

/// Removes the cgroups a killed cairn left behind (`kill -9` gives it no
/// chance to): those named by this crate whose process is gone, older
/// than [`STALE_AFTER`]. One that still holds a process is refused by the
/// kernel and stays. Once per process, before its first sandbox.
fn remove_stale() {
    let me = std::process::id();
    for controller in CONTROLLERS {
        let Ok(entries) = fs::read_dir(Path::new(ROOT).join(controller)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(owner) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_AFTER));
            if owner != me && old && !Path::new(&format!("/proc/{owner}")).exists() {
                match fs::remove_dir(entry.path()) {
                    Ok(()) => {
                        tracing::debug!(path = %entry.path().display(), "removed a stale cgroup")
                    }
                    Err(e) => {
                        tracing::debug!(path = %entry.path().display(), error = %e, "stale cgroup kept")
                    }
                }
            }
        }
    }
}

/// Lowest fd number of a `tasks` file: the child keeps these open while it
/// moves fds 0–3 into place, so they must not be among them.
pub(crate) const MIN_JOIN_FD: RawFd = 10;

/// `file` moved to an fd number of at least [`MIN_JOIN_FD`].
fn high_fd(file: File) -> std::io::Result<File> {
    Ok(rustix::io::fcntl_dupfd_cloexec(&file, MIN_JOIN_FD)?.into())
}

impl Cgroup {
    /// Creates the cgroups `limits` need, plus a freezer one if available.
    pub(crate) fn create(limits: &Limits) -> Result<Cgroup, SandboxError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(remove_stale);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut cg = Cgroup {
            dirs: vec![],
            tasks: vec![],
            memory: None,
            pids: None,
            freezer: None,
        };
        let required = [
            limits.memory_bytes.is_some(),
            limits.max_processes.is_some(),
            false,
        ];
        let wanted = CONTROLLERS.into_iter().zip(required);
        for (controller, required) in wanted {
            let dir = Path::new(ROOT).join(controller).join(&name);
            if let Err(source) = fs::create_dir(&dir) {
                if required {
                    cg.remove();
                    return Err(SandboxError::Cgroup { path: dir, source });
                }
                tracing::debug!(path = %dir.display(), %source, "cgroup not available");
                continue;
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
                .and_then(high_fd);
            match file {
                Ok(f) => cg.tasks.push(f),
                Err(source) => {
                    cg.remove();
                    return Err(SandboxError::Cgroup {
                        path: tasks,
                        source,
                    });
                }
            }
        }
        if let Err(e) = cg.set_limits(limits) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn set_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        if let (Some(dir), Some(bytes)) = (&self.memory, limits.memory_bytes) {
            write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // Absent without swap accounting; then there is nothing to limit.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
        }
        if let (Some(dir), Some(n)) = (&self.pids, limits.max_processes) {
            write(&dir.join("pids.max"), &(n + HELPER_PROCESSES).to_string())?;
        }
        Ok(())
    }

    /// Raw fds of the `tasks` files, for the child to join.
    pub(crate) fn tasks_fds(&self) -> Vec<RawFd> {
        self.tasks.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// How many times the kernel OOM-killed a process of this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
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

    /// How many forks the process limit refused (`pids.events`).
    pub(crate) fn refused_forks(&self) -> u64 {
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
    /// frozen first, so no pid can exit and be reused while we signal it.
    pub(crate) fn kill_all(&self) {
        let Some(freezer) = &self.freezer else { return };
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
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = fs::write(&state, "THAWED");
    }

    /// Kills leftovers, waits for the cgroups to empty, and removes them.
    pub(crate) fn remove(&self) {
        if !self.pids().is_empty() {
            self.kill_all();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs.iter().rev() {
            while let Err(e) = fs::remove_dir(dir) {
                if Instant::now() > deadline {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove cgroup");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
