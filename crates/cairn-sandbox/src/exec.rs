//! The executor: turns a validated [`Plan`] into a running sandbox, waits
//! for it under the wall-clock timeout, and tears everything down.
//!
//! Order of events: validate → prepare sources in a scratch dir → create
//! cgroups → lower to a [`crate::script::Script`] → `Command::spawn` with a
//! `pre_exec` hook that never returns to std (see [`crate::child`]) → wait
//! (`poll` on a pidfd) until the outer process exits or the deadline
//! passes → on timeout SIGKILL it (its pid-1 child follows through
//! `PR_SET_PDEATHSIG`, taking the whole pid namespace with it) and
//! freeze-and-kill the cgroup → read the status pipe → remove cgroups and
//! scratch.

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::child::{self, Message, Stage};
use crate::error::SandboxError;
use crate::plan::Plan;
use crate::{prepare, script};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Termination {
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal (not by the sandbox).
    Signaled(i32),
    /// The wall-clock timeout expired; the whole tree was killed.
    TimedOut,
    /// The memory limit was hit and the kernel's OOM killer intervened.
    MemoryExceeded,
}

impl Termination {
    /// True for `Exited(0)`.
    pub fn success(&self) -> bool {
        *self == Termination::Exited(0)
    }
}

/// Result of a step that ran (successfully or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// How it ended.
    pub status: Termination,
    /// Wall-clock time from spawn to the end of the outer process.
    pub duration: Duration,
}

/// Runs `plan` in a fresh sandbox; blocks until it ends and is torn down.
///
/// `stdout` and `stderr` become the step's fd 1 and 2 (pass a `File` or a
/// pipe's write end to stream logs live); stdin is `/dev/null`. The caller's
/// thread must stay alive meanwhile (it is the parent the sandbox dies with).
pub fn run(
    plan: &Plan,
    stdout: impl Into<Stdio>,
    stderr: impl Into<Stdio>,
) -> Result<Outcome, SandboxError> {
    plan.validate()?;
    let scratch = tempfile::Builder::new()
        .prefix("cairn-sandbox-")
        .tempdir()
        .map_err(|source| SandboxError::Scratch {
            path: std::env::temp_dir(),
            source,
        })?;
    let staging = scratch.path().join("root");
    std::fs::create_dir(&staging).map_err(|source| SandboxError::Scratch {
        path: staging.clone(),
        source,
    })?;
    let (root_entries, sources) = prepare::sources(plan, scratch.path())?;
    let ops = script::filesystem_ops(&staging, &root_entries, &sources, plan);
    let descriptions: Vec<String> = ops.iter().map(script::Op::describe).collect();
    let cgroup = Cgroup::create(&plan.limits)?;
    let result = spawn_and_wait(plan, ops, &cgroup, stdout.into(), stderr.into());
    let oom_kills = cgroup.oom_kills();
    cgroup.remove();
    if let Err(e) = scratch.close() {
        tracing::warn!(error = %e, "cannot remove sandbox scratch dir");
    }
    let (messages, status, timed_out, duration) = result?;
    let status = interpret(plan, &messages, &descriptions, timed_out, oom_kills, status)?;
    Ok(Outcome { status, duration })
}

type Waited = (Vec<Message>, std::process::ExitStatus, bool, Duration);

fn spawn_and_wait(
    plan: &Plan,
    ops: Vec<script::Op>,
    cgroup: &Cgroup,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Waited, SandboxError> {
    let (status_r, status_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SandboxError::Spawn(e.into()))?;
    let script = script::build(plan, ops, cgroup.procs_fds(), status_w.as_raw_fd());
    let mut cmd = Command::new("/cairn-sandbox-init-never-executed");
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    // SAFETY: `child::enter` only performs async-signal-safe raw syscalls on
    // data precomputed in `script`, and never returns (it execs or exits).
    unsafe {
        cmd.pre_exec(move || child::enter(&script));
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
    drop(status_w);
    let deadline = start + plan.timeout;
    let exited = wait_until(&child, deadline).inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
    });
    let exited = exited?;
    if !exited {
        tracing::debug!(timeout = ?plan.timeout, "sandbox timed out, killing it");
        let _ = child.kill();
        cgroup.kill_all();
    }
    let status = child.wait().map_err(SandboxError::Spawn)?;
    let timed_out = !exited;
    let duration = start.elapsed();
    Ok((read_messages(status_r), status, timed_out, duration))
}

/// Waits until `child` exits (true) or `deadline` passes (false), sleeping
/// in `poll` on a pidfd so the exit is noticed at once.
fn wait_until(child: &Child, deadline: Instant) -> Result<bool, SandboxError> {
    let pid = rustix::process::Pid::from_child(child);
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| SandboxError::Spawn(e.into()))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up, so the deadline has passed when poll times out.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd on an fd we own, for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        match ready {
            1.. => return Ok(true),
            0 if Instant::now() >= deadline => return Ok(false),
            0 => continue,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(SandboxError::Spawn(e));
                }
            }
        }
    }
}

/// Reads what the children reported; never blocks (a straggler holding the
/// write end must not hang us).
fn read_messages(fd: rustix::fd::OwnedFd) -> Vec<Message> {
    let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
    let mut bytes = vec![];
    let _ = std::fs::File::from(fd).read_to_end(&mut bytes);
    bytes
        .chunks_exact(Message::SIZE)
        .map(Message::decode)
        .collect()
}

fn interpret(
    plan: &Plan,
    messages: &[Message],
    descriptions: &[String],
    timed_out: bool,
    oom_kills: u64,
    outer: std::process::ExitStatus,
) -> Result<Termination, SandboxError> {
    if timed_out {
        return Ok(Termination::TimedOut);
    }
    let Some(msg) = messages.first() else {
        return Err(SandboxError::Lost(outer));
    };
    let errno = std::io::Error::from_raw_os_error(msg.value);
    let what = |s: &str| s.to_string();
    let index = msg.index as usize;
    let status = match Stage::from_u32(msg.stage) {
        Some(Stage::Exited) => msg.value,
        Some(Stage::Exec) => {
            return Err(SandboxError::Exec {
                program: plan.argv[0].clone(),
                source: errno,
            })
        }
        Some(stage) => {
            let what = match stage {
                Stage::Filesystem => descriptions.get(index).cloned().unwrap_or_default(),
                Stage::IdMap => format!(
                    "write {}",
                    ["setgroups", "uid_map", "gid_map"][index.min(2)]
                ),
                Stage::Rlimit => format!("set resource limit #{index}"),
                Stage::Workdir => format!("enter workdir {}", plan.workdir.display()),
                Stage::JoinCgroup => what("join cgroup"),
                Stage::Unshare => what("unshare namespaces"),
                Stage::Fork => what("fork"),
                Stage::Hostname => what("set hostname"),
                Stage::Loopback => what("bring up lo"),
                Stage::Privileges => what("drop privileges / close fds"),
                Stage::Exited | Stage::Exec => unreachable!("handled above"),
            };
            return Err(SandboxError::Setup {
                what,
                source: errno,
            });
        }
        None => return Err(SandboxError::Lost(outer)),
    };
    let term = if libc::WIFEXITED(status) {
        Termination::Exited(libc::WEXITSTATUS(status))
    } else {
        Termination::Signaled(libc::WTERMSIG(status))
    };
    // The OOM killer may hit any process of the step (e.g. one stage of a
    // pipeline); a step that did not succeed after an OOM kill ran out of memory.
    if oom_kills > 0 && !term.success() {
        return Ok(Termination::MemoryExceeded);
    }
    Ok(term)
}
