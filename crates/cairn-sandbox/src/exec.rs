//! The executor: turns a validated [`Plan`] into a running sandbox, waits
//! for it under the wall-clock timeout, and tears everything down.
//!
//! Order of events: validate → choose the step's host ids (`ids.rs`) →
//! find the shared staging directory the root is mounted on
//! (`staging.rs`, made once) → prepare sources (copies of writable
//! mounts on a private tmpfs, made only for them) → take cgroups from
//! the pool →
//! lower to a [`crate::script::Script`] → `Command::spawn` with a
//! `pre_exec` hook that never returns to std (see [`crate::child`]) → wait
//! (`poll` on the status socket and a pidfd) until pid 1 reports the
//! step's end (after killing and reaping everything else in the
//! namespace), the outer process exits, the deadline passes or the process
//! limit was hit → on timeout or limit SIGKILL the outer process (its
//! pid-1 child follows through `PR_SET_PDEATHSIG`, taking the whole pid
//! namespace with it) and freeze-and-kill the cgroup → read the status
//! socket (the step's status and the descriptors of `/out` and `/tmp`).
//! The sandbox's processes may still be exiting then; the returned
//! [`Outcome`] waits for them and gives the cgroups, ids and scratch back
//! when dropped (`teardown.rs`).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
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
use crate::reports::Reports;
use crate::streams::{Copied, Streams};
use crate::teardown::Teardown;
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

/// Result of a step that ran (successfully or not). Dropping it waits
/// for the sandbox's last processes to finish exiting and gives its
/// cgroups, host ids and scratch back (see `teardown.rs`): keep it only
/// while `/out` is read.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub status: Termination,
    /// Wall-clock time from spawn to the step's reported end.
    pub duration: Duration,
    /// What the step left in `/out`.
    pub out: OutputDir,
    _teardown: Teardown,
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
/// What the step writes to its fd 1 and 2 is written, as it comes, to
/// `stdout` and `stderr` (a `File`, say), up to `limits.log_bytes` in all,
/// by the calling thread; the step itself only ever holds pipes (see
/// `streams.rs`). Its stdin is `/dev/null`. The caller's thread must stay
/// alive meanwhile (it is the parent the sandbox dies with).
pub fn run(
    plan: &Plan,
    stdout: impl Write + 'static,
    stderr: impl Write + 'static,
) -> Result<Outcome, SandboxError> {
    plan.validate()?;
    let mut clock = Phases::start();
    let ids = HostIds::acquire()?;
    clock.lap("host ids");
    let staging = crate::staging::dir()?;
    let owner = ids.dedicated.then_some((ids.uid, ids.gid));
    let prepared = prepare::sources(plan, owner)?;
    let (clones, ops) = script::filesystem(&prepared.root, &prepared.others, plan, staging);
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
    let result = spawn_and_wait(
        spawn,
        &cgroup,
        Box::new(stdout),
        Box::new(stderr),
        &mut clock,
    );
    let oom_kills = cgroup.oom_kills();
    let refused_forks = cgroup.refused_forks();
    let copies_full = prepared.scratch.as_ref().is_some_and(|a| a.is_full());
    clock.report();
    let mut teardown = Teardown {
        exiting: None,
        cgroup,
        ids,
        scratch: prepared.scratch,
    };
    let mut waited = result?;
    teardown.exiting = waited.exiting.take();
    descriptions.extend(clone_names.iter().map(|n| format!("clone {n}")));
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
        _teardown: teardown,
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
    /// How the outer process ended, if it was waited for.
    outer: Option<std::process::ExitStatus>,
    /// The outer process, still being torn down, when pid 1 reported the
    /// step's end first (see `reports.rs`).
    exiting: Option<Child>,
    ended: Ended,
    duration: Duration,
}

/// Why waiting stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The outer process exited.
    Exited,
    /// Pid 1 reported the step's end; the sandbox is being torn down.
    Reported,
    TimedOut,
    ProcessLimit,
    LogLimit,
}

fn spawn_and_wait(
    spawn: Spawn<'_>,
    cgroup: &Cgroup,
    stdout: Box<dyn Write>,
    stderr: Box<dyn Write>,
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
    let mut reports = Reports::default();
    let ended = wait_until(
        &child,
        deadline,
        cgroup,
        &mut streams,
        &status_r,
        &mut reports,
    )
    .inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
    });
    let ended = ended?;
    let duration = start.elapsed();
    let (outer, exiting) = if ended == Ended::Reported {
        (None, Some(child))
    } else {
        if ended != Ended::Exited {
            tracing::debug!(?ended, "killing the sandbox");
            let _ = child.kill();
            cgroup.kill_all();
        }
        (Some(child.wait().map_err(SandboxError::Spawn)?), None)
    };
    // Every process that could write to the pipes is gone: what is left
    // in them is all there will be.
    let ended = match (ended, streams.copy_available()) {
        (Ended::Exited | Ended::Reported, Copied::OverLimit) => Ended::LogLimit,
        (Ended::Reported, _) => Ended::Exited,
        (ended, _) => ended,
    };
    clock.lap("run (namespaces to the reported end)");
    reports.read_from(&status_r);
    Ok(Waited {
        messages: reports.messages,
        watched: reports.fds,
        outer,
        exiting,
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

/// Waits until pid 1 reports the step's end or `child` exits, `deadline`
/// passes, a fork was refused by the process limit or the step wrote more
/// than its log limit, sleeping in `poll` on the status socket and a
/// pidfd (so the end is noticed at once) and the step's output pipes
/// (copied as they fill).
fn wait_until(
    child: &Child,
    deadline: Instant,
    cgroup: &Cgroup,
    streams: &mut Streams,
    status: &OwnedFd,
    reports: &mut Reports,
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
        // Once its other end is closed the socket is always readable; the
        // pidfd follows at once.
        let status_fd = if reports.closed {
            -1
        } else {
            status.as_raw_fd()
        };
        let mut fds = [
            pollfd(pidfd.as_raw_fd()),
            pollfd(out),
            pollfd(err),
            pollfd(status_fd),
        ];
        // SAFETY: valid pollfds on fds we own (or -1, skipped), for the
        // duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(SandboxError::Spawn(e));
            }
        } else {
            if fds[3].revents != 0 {
                reports.read_from(status);
                if reports.step_ended() {
                    return Ok(Ended::Reported);
                }
            }
            if fds[0].revents != 0 {
                return Ok(Ended::Exited);
            }
            if ready > 0 && streams.copy_available() == Copied::OverLimit {
                return Ok(Ended::LogLimit);
            }
        }
    }
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
        Ended::Exited | Ended::Reported => {}
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
