//! The executor: turns a validated [`Plan`] into a running sandbox, waits
//! for it under the wall-clock timeout, and tears everything down.
//!
//! Order of events: validate → choose the step's host ids (`ids.rs`) →
//! find the shared staging directory the root is mounted on
//! (`staging.rs`, made once) → prepare sources (copies of writable
//! mounts on a private tmpfs, made only for them) → create
//! cgroups →
//! lower to a [`crate::script::Script`] → `Command::spawn` with a
//! `pre_exec` hook that never returns to std (see [`crate::child`]) → wait
//! (`poll` on a pidfd) until the outer process exits, the deadline passes
//! or the process limit was hit → on timeout or limit SIGKILL it (its pid-1
//! child follows through `PR_SET_PDEATHSIG`, taking the whole pid
//! namespace with it) and freeze-and-kill the cgroup → read the status
//! socket (the step's status and the descriptors of `/out` and `/tmp`) →
//! remove cgroups and scratch.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::child::{Message, Stage};
use crate::error::SandboxError;
use crate::ids::HostIds;
use crate::plan::Plan;
use crate::streams::{Copied, Streams};
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
    /// A `fork` was refused by the process limit; the whole tree was killed.
    ProcessLimit,
    /// The step wrote more than `limits.log_bytes` (this many) to its
    /// stdout and stderr together; the whole tree was killed, and what fit
    /// was kept.
    LogLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The step failed after creating as many entries in `/out` as
    /// `limits.out_files` (this many) allows.
    OutOfFiles {
        /// The limit.
        limit: u64,
    },
    /// The step failed after filling `/out` or `/tmp` (named, with its size).
    OutOfSpace {
        /// Which one.
        mount: Scratch,
        /// Its size in bytes.
        limit: u64,
    },
    /// A service (`Plan::services[service]`) ended, or did not answer its
    /// probe before its deadline; the command never ran.
    ServiceNotReady {
        /// Its position in the plan.
        service: usize,
        /// How it ended (as [`Termination::Exited`] or
        /// [`Termination::Signaled`]); `None` if it was still running at
        /// the deadline (or could not be started).
        ended: Option<ServiceEnd>,
    },
}

/// How a service ended before it was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceEnd {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

/// The sandbox's size-limited writable mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scratch {
    /// `/out` (`Limits::out_bytes`).
    Out,
    /// `/tmp` (`Limits::tmp_bytes`).
    Tmp,
    /// The copies of the `writable` mounts (`Limits::tmp_bytes` more
    /// than the copies themselves).
    Writable,
}

impl std::fmt::Display for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scratch::Out => "/out",
            Scratch::Tmp => "/tmp",
            Scratch::Writable => "a writable mount",
        })
    }
}

impl Termination {
    /// True for `Exited(0)`.
    pub fn success(&self) -> bool {
        *self == Termination::Exited(0)
    }
}

/// Result of a step that ran (successfully or not).
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub status: Termination,
    /// Wall-clock time from spawn to the end of the outer process.
    pub duration: Duration,
    /// What the step left in `/out`.
    pub out: OutputDir,
}

/// The step's `/out`: a tmpfs that outlives the sandbox for as long as
/// this value does, reachable only through this process's descriptor.
#[derive(Debug)]
pub struct OutputDir {
    fd: Option<OwnedFd>,
}

impl OutputDir {
    /// A path to the directory, valid in this process while `self` lives
    /// (`/proc/self/fd/<n>/.`); `None` if the sandbox never sent it.
    pub fn path(&self) -> Option<PathBuf> {
        let fd = self.fd.as_ref()?;
        Some(PathBuf::from(format!("/proc/self/fd/{}/.", fd.as_raw_fd())))
    }
}

/// Runs `plan` in a fresh sandbox; blocks until it ends and is torn down.
///
/// What the step writes to its fd 1 and 2 is copied, as it comes, to
/// `stdout` and `stderr` (a `File`, or a pipe's write end), up to
/// `limits.log_bytes` in all; the step itself only ever holds pipes (see
/// `streams.rs`). Its stdin is `/dev/null`. The caller's thread must stay
/// alive meanwhile (it is the parent the sandbox dies with).
pub fn run(
    plan: &Plan,
    stdout: impl Into<OwnedFd>,
    stderr: impl Into<OwnedFd>,
) -> Result<Outcome, SandboxError> {
    plan.validate()?;
    let mut clock = Phases::start();
    let ids = HostIds::acquire()?;
    clock.lap("host ids");
    let staging = crate::staging::dir()?;
    let owner = ids.dedicated.then_some((ids.uid, ids.gid));
    let prepared = prepare::sources(plan, owner)?;
    let (clones, ops) = script::filesystem(&prepared.root, &prepared.others, plan);
    let mut descriptions: Vec<String> = ops.iter().map(script::Op::describe).collect();
    let clone_names: Vec<String> = clones
        .iter()
        .map(|c| c.source.to_string_lossy().into_owned())
        .collect();
    clock.lap("sources");
    let cgroup = Cgroup::create(&plan.limits)?;
    clock.lap("cgroup create");
    let spawn = Spawn {
        plan,
        staging,
        clones,
        ops,
        ids: &ids,
    };
    let result = spawn_and_wait(spawn, &cgroup, stdout.into(), stderr.into(), &mut clock);
    let oom_kills = cgroup.oom_kills();
    let refused_forks = cgroup.refused_forks();
    cgroup.remove();
    clock.lap("cgroup remove");
    let copies_full = prepared.scratch.as_ref().is_some_and(|a| a.is_full());
    drop(prepared.scratch);
    drop(ids);
    clock.lap("scratch remove");
    clock.report();
    let waited = result?;
    descriptions.extend(clone_names.iter().map(|n| format!("clone {n}")));
    let mut waited = waited;
    let mut watched = std::mem::take(&mut waited.watched);
    let counters = Counters {
        oom_kills,
        refused_forks,
        full: full_mount(plan, &watched).or_else(|| {
            copies_full.then_some(Full::Space(
                Scratch::Writable,
                plan.limits.tmp_bytes.unwrap_or_default(),
            ))
        }),
    };
    let status = interpret(plan, &waited, &descriptions, &clone_names, counters)?;
    let out = OutputDir {
        fd: (!watched.is_empty()).then(|| watched.swap_remove(0)),
    };
    Ok(Outcome {
        status,
        duration: waited.duration,
        out,
    })
}

/// What `spawn_and_wait` needs besides the cgroup and the log files.
struct Spawn<'a> {
    plan: &'a Plan,
    staging: &'a std::path::Path,
    clones: Vec<script::Clone>,
    ops: Vec<script::Op>,
    ids: &'a HostIds,
}

/// What the sandbox reported and how long it took.
struct Waited {
    messages: Vec<Message>,
    watched: Vec<OwnedFd>,
    outer: std::process::ExitStatus,
    ended: Ended,
    duration: Duration,
}

/// Why waiting stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited,
    TimedOut,
    ProcessLimit,
    LogLimit,
}

fn spawn_and_wait(
    spawn: Spawn<'_>,
    cgroup: &Cgroup,
    stdout: OwnedFd,
    stderr: OwnedFd,
    clock: &mut Phases,
) -> Result<Waited, SandboxError> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (status_r, status_w) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| SandboxError::Spawn(e.into()))?;
    let plan = spawn.plan;
    let (mut streams, [out_w, err_w]) =
        Streams::new(stdout, stderr, plan.limits.log_bytes).map_err(SandboxError::Spawn)?;
    let mut script = script::build(script::Process {
        plan,
        staging: spawn.staging,
        clones: spawn.clones,
        ops: spawn.ops,
        cgroup_tasks: cgroup.tasks_fds(),
        status_fd: status_w.as_raw_fd(),
        host_ids: (spawn.ids.uid, spawn.ids.gid),
        ns_root: spawn.ids.ns_root,
        clear_groups: spawn.ids.dedicated,
    });
    clock.lap("script");
    let mut cmd = Command::new("/cairn-sandbox-init-never-executed");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    // SAFETY: `child::enter` only performs async-signal-safe raw syscalls on
    // data precomputed in `script`, and never returns (it execs or exits).
    unsafe {
        cmd.pre_exec(move || crate::child::enter(&mut script));
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
    // Only the sandbox holds the pipes' write ends now: they reach end of
    // file when its last process is gone.
    drop(cmd);
    drop(status_w);
    clock.lap("spawn");
    let deadline = start + plan.timeout;
    let ended = wait_until(&child, deadline, cgroup, &mut streams).inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
    });
    let ended = ended?;
    if ended != Ended::Exited {
        tracing::debug!(?ended, "killing the sandbox");
        let _ = child.kill();
        cgroup.kill_all();
    }
    let outer = child.wait().map_err(SandboxError::Spawn)?;
    let duration = start.elapsed();
    // Every process of the sandbox is gone: what is left in the pipes is
    // all there will be.
    let ended = match streams.copy_available() {
        Copied::OverLimit if ended == Ended::Exited => Ended::LogLimit,
        _ => ended,
    };
    clock.lap("run (namespaces to exit)");
    let (messages, watched) = read_messages(status_r);
    Ok(Waited {
        messages,
        watched,
        outer,
        ended,
        duration,
    })
}

/// Wall-clock time of each host-side phase of [`run`], reported as one
/// `debug` event (`cairn -vv build` shows it): how the cost of a step
/// splits, measured where it is spent rather than guessed from outside.
struct Phases {
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Self {
        Phases {
            last: Instant::now(),
            laps: Vec::with_capacity(8),
        }
    }

    /// Ends the phase named `name`; the next one starts now.
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps.push((name, now - self.last));
        self.last = now;
    }

    fn report(&self) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let laps: Vec<String> = self
                .laps
                .iter()
                .map(|(name, d)| format!("{name} {} µs", d.as_micros()))
                .collect();
            tracing::debug!(phases = %laps.join(", "), "sandbox timing");
        }
    }
}

/// How often a running step's process limit is checked.
const LIMIT_CHECK: Duration = Duration::from_millis(50);

/// Waits until `child` exits, `deadline` passes, a fork was refused by
/// the process limit or the step wrote more than its log limit, sleeping
/// in `poll` on a pidfd (so the exit is noticed at once) and the step's
/// output pipes (copied as they fill).
fn wait_until(
    child: &Child,
    deadline: Instant,
    cgroup: &Cgroup,
    streams: &mut Streams,
) -> Result<Ended, SandboxError> {
    let pid = rustix::process::Pid::from_child(child);
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| SandboxError::Spawn(e.into()))?;
    let watch_limit = cgroup.limits_processes();
    let mut next_check = Instant::now() + LIMIT_CHECK;
    loop {
        let now = Instant::now();
        // A step printing without pause keeps `poll` from ever timing
        // out: the deadline and the process limit are checked whatever
        // woke it.
        if now >= deadline {
            return Ok(Ended::TimedOut);
        }
        if watch_limit && now >= next_check {
            if cgroup.refused_forks() > 0 {
                return Ok(Ended::ProcessLimit);
            }
            next_check = now + LIMIT_CHECK;
        }
        let mut left = deadline - now;
        if watch_limit {
            left = left.min(next_check - now);
        }
        // Round up, so the deadline has passed when poll times out.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let [out, err] = streams.poll_fds();
        let mut fds = [pollfd(pidfd.as_raw_fd()), pollfd(out), pollfd(err)];
        // SAFETY: valid pollfds on fds we own (or -1, skipped), for the
        // duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(SandboxError::Spawn(e));
            }
        } else if fds[0].revents != 0 {
            return Ok(Ended::Exited);
        } else if ready > 0 && streams.copy_available() == Copied::OverLimit {
            return Ok(Ended::LogLimit);
        }
    }
}

/// Reads what the children reported, with the descriptors they sent;
/// never blocks (a straggler holding the other end must not hang us).
fn read_messages(socket: OwnedFd) -> (Vec<Message>, Vec<OwnedFd>) {
    let mut messages = vec![];
    let mut fds = vec![];
    loop {
        let mut buf = [0u8; Message::SIZE];
        let mut control = [0u8; 64];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr pointing at live stack buffers; the
        // received descriptors are taken into `OwnedFd`s exactly once.
        unsafe {
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.as_mut_ptr().cast();
            hdr.msg_controllen = control.len();
            let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
            let n = libc::recvmsg(socket.as_fd().as_raw_fd(), &mut hdr, flags);
            if n <= 0 {
                break;
            }
            let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                    let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..len / std::mem::size_of::<libc::c_int>() {
                        fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
            }
            if n as usize == Message::SIZE {
                messages.push(Message::decode(&buf));
            }
        }
    }
    (messages, fds)
}

/// What the cgroups and mounts say about how a step ended.
struct Counters {
    oom_kills: u64,
    refused_forks: u64,
    full: Option<Full>,
}

/// Which limit of a watched tmpfs a step reached.
#[derive(Debug, Clone, Copy)]
enum Full {
    /// Its size (bytes), with the limit.
    Space(Scratch, u64),
    /// `/out`'s count of entries, with the limit.
    Files(u64),
}

/// The first watched tmpfs (`/out`, `/tmp`) that is full, with the limit
/// it reached.
fn full_mount(plan: &Plan, watched: &[OwnedFd]) -> Option<Full> {
    let limits = [
        (Scratch::Out, plan.limits.out_bytes),
        (Scratch::Tmp, plan.limits.tmp_bytes),
    ];
    for (fd, (mount, limit)) in watched.iter().zip(limits) {
        let Ok(st) = rustix::fs::fstatfs(fd) else {
            continue;
        };
        if st.f_ffree == 0 {
            if let (Scratch::Out, Some(files)) = (mount, plan.limits.out_files) {
                return Some(Full::Files(files));
            }
        }
        // Full: less than a block free (tmpfs reserves nothing).
        if st.f_bavail == 0 || st.f_ffree == 0 {
            let size = st.f_blocks * st.f_bsize as u64;
            return Some(Full::Space(mount, limit.unwrap_or(size)));
        }
    }
    None
}

fn interpret(
    plan: &Plan,
    waited: &Waited,
    descriptions: &[String],
    clone_names: &[String],
    counters: Counters,
) -> Result<Termination, SandboxError> {
    match waited.ended {
        Ended::TimedOut if counters.refused_forks == 0 => return Ok(Termination::TimedOut),
        Ended::TimedOut | Ended::ProcessLimit => return Ok(Termination::ProcessLimit),
        Ended::LogLimit => {
            return Ok(Termination::LogLimit {
                limit: plan.limits.log_bytes.unwrap_or_default(),
            })
        }
        Ended::Exited => {}
    }
    let outer = waited.outer;
    let Some(msg) = waited
        .messages
        .iter()
        .find(|m| m.stage != Stage::Watched as u32)
    else {
        // The OOM killer picks the largest process of the cgroup, which
        // is pid 1 (a fork of the caller) when the step's memory is the
        // kernel's (inodes of a million empty files, page tables): the
        // step's status is then never sent, but the cause is known.
        if counters.oom_kills > 0 {
            return Ok(Termination::MemoryExceeded);
        }
        return Err(SandboxError::Lost(outer));
    };
    let errno = io::Error::from_raw_os_error(msg.value);
    let index = msg.index as usize;
    let status = match Stage::from_u32(msg.stage) {
        Some(Stage::Exited) => msg.value,
        Some(Stage::Exec) => {
            let argv = match index {
                0 => &plan.argv,
                i => plan.services.get(i - 1).map_or(&plan.argv, |s| &s.argv),
            };
            return Err(SandboxError::Exec {
                program: argv[0].clone(),
                source: errno,
            });
        }
        Some(Stage::ServiceNotReady) => {
            let status = msg.value;
            let ended = if status < 0 {
                None
            } else if libc::WIFEXITED(status) {
                Some(ServiceEnd::Exited(libc::WEXITSTATUS(status)))
            } else {
                Some(ServiceEnd::Signaled(libc::WTERMSIG(status)))
            };
            return Ok(Termination::ServiceNotReady {
                service: index,
                ended,
            });
        }
        Some(stage) => {
            return Err(SandboxError::Setup {
                what: setup_step(stage, index, plan, descriptions, clone_names),
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
    if term.success() {
        return Ok(term);
    }
    // The OOM killer may hit any process of the step (e.g. one stage of a
    // pipeline); a step that did not succeed after an OOM kill ran out of
    // memory. Likewise for a refused fork, or a full /out or /tmp.
    if counters.oom_kills > 0 {
        return Ok(Termination::MemoryExceeded);
    }
    if counters.refused_forks > 0 {
        return Ok(Termination::ProcessLimit);
    }
    if let Some(Full::Files(limit)) = counters.full {
        return Ok(Termination::OutOfFiles { limit });
    }
    if let Some(Full::Space(mount, limit)) = counters.full {
        return Ok(Termination::OutOfSpace { mount, limit });
    }
    Ok(term)
}

/// Names the setup operation a failure message points at.
fn setup_step(
    stage: Stage,
    index: usize,
    plan: &Plan,
    descriptions: &[String],
    clone_names: &[String],
) -> String {
    let what = |s: &str| s.to_string();
    match stage {
        Stage::Filesystem => descriptions.get(index).cloned().unwrap_or_default(),
        Stage::Clone => format!(
            "bind {}",
            clone_names.get(index).map_or("?", String::as_str)
        ),
        Stage::IdMap => format!(
            "write {}",
            ["setgroups", "uid_map", "gid_map"][index.min(2)]
        ),
        Stage::Rlimit => format!("set resource limit #{index}"),
        Stage::Workdir => format!("enter workdir {}", plan.workdir.display()),
        Stage::JoinCgroup => what("join cgroup"),
        Stage::Namespaces => what("create namespaces"),
        Stage::Fork => what("fork"),
        Stage::Hostname => what("set hostname"),
        Stage::Loopback => what("bring up lo"),
        Stage::Privileges => what("drop privileges / close fds"),
        Stage::Root => what("mount the root tmpfs"),
        Stage::SwitchIds => what("switch to the step's user id"),
        Stage::Pivot => what("pivot into the new root"),
        Stage::Keyring => what("join a new session keyring"),
        Stage::Filter => what("install the system-call filter"),
        Stage::Emulator => match &plan.emulator {
            Some(e) => format!(
                "register {} with the sandbox's binfmt_misc",
                e.interpreter.display()
            ),
            None => what("register the emulator"),
        },
        Stage::Exited | Stage::Exec | Stage::Watched | Stage::ServiceNotReady => {
            unreachable!("not setup failures")
        }
    }
}
