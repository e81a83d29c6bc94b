//! The code that runs between `fork` and `exec`: three tiny processes.
//!
//! `run` spawns a `std::process::Command` whose `pre_exec` hook calls
//! [`enter`]. Everything here is async-signal-safe: raw syscalls through
//! `libc`, no allocation, no locks, reading only the precomputed
//! [`Script`]. The processes are:
//!
//! 1. **outer** (the spawned child, host pid namespace): closes every
//!    inherited fd but 0–2, the status pipe (fd 3) and the `cgroup.procs`
//!    files, `unshare`s user/mount/pid/net/ipc/uts namespaces, writes its uid
//!    and gid maps, forks *init*, then moves itself and *init* into the
//!    cgroups (an RCU grace period each time, overlapping *init*'s setup),
//!    tells *init* so on a pipe and waits for it.
//! 2. **init** (pid 1 of the new pid namespace): builds the root filesystem
//!    and pivots into it, sets the hostname, brings `lo` up, waits until it
//!    is in the cgroups, enters a new cgroup namespace (so the step sees its
//!    cgroup as `/`), forks *step*,
//!    reaps every orphan, and when *step* ends writes its wait status to the
//!    status pipe and exits — and the kernel kills whatever is left in the
//!    namespace. It dies with *outer* (`PR_SET_PDEATHSIG`), which dies with
//!    the caller's thread.
//! 3. **step**: sets rlimits, `no_new_privs`, the workdir, marks every fd but
//!    0–2 close-on-exec and `execve`s the command with exactly the plan's
//!    environment.
//!
//! Failures are reported on the status pipe as fixed-size [`Message`]s
//! (`stage`, `index`, `errno`); the parent turns them into errors that name
//! the operation. Nothing here ever returns to std's `exec` path.

use std::ffi::CStr;
use std::os::raw::c_int;

use crate::script::Script;

/// The status pipe's fd number in the children.
const STATUS_FD: c_int = 3;

/// Where a failure happened; `index` in a [`Message`] refines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    /// The step ended; `value` is its wait status.
    Exited = 0,
    JoinCgroup = 1,
    Unshare = 2,
    IdMap = 3,
    Fork = 4,
    /// `index` is the position in `Script::ops`.
    Filesystem = 5,
    Hostname = 6,
    Loopback = 7,
    /// `index` is the position in `Script::rlimits`.
    Rlimit = 8,
    Workdir = 9,
    Privileges = 10,
    /// `value` is the errno of the last `execve` attempt.
    Exec = 11,
}

impl Stage {
    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            Exited, JoinCgroup, Unshare, IdMap, Fork, Filesystem, Hostname, Loopback, Rlimit,
            Workdir, Privileges, Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// One report on the status pipe: 12 bytes, written atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message {
    pub stage: u32,
    pub index: u32,
    pub value: i32,
}

impl Message {
    pub(crate) const SIZE: usize = 12;

    fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..4].copy_from_slice(&self.stage.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..].copy_from_slice(&self.value.to_ne_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Message {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Message {
            stage: u32::from_ne_bytes(word(0)),
            index: u32::from_ne_bytes(word(4)),
            value: i32::from_ne_bytes(word(8)),
        }
    }
}

type Sys<T = ()> = Result<T, (Stage, u32, c_int)>;

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Turns a `-1` return into an error for `stage`/`index`.
fn check(ret: libc::c_long, stage: Stage, index: u32) -> Sys<libc::c_long> {
    if ret == -1 {
        Err((stage, index, errno()))
    } else {
        Ok(ret)
    }
}

fn report(msg: Message) {
    let b = msg.encode();
    // SAFETY: writes a stack buffer to an fd we own; result deliberately ignored
    // (nobody is left to tell if the parent is gone).
    unsafe { libc::write(STATUS_FD, b.as_ptr().cast(), b.len()) };
}

fn fail_and_exit((stage, index, value): (Stage, u32, c_int)) -> ! {
    report(Message {
        stage: stage as u32,
        index,
        value,
    });
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(126) }
}

/// `fork` without glibc's atfork handlers (they may take locks).
fn raw_fork() -> Sys<libc::pid_t> {
    // SAFETY: clone with only SIGCHLD and a null stack behaves like fork;
    // both sides continue on their own copy of this stack.
    let ret = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
    check(ret, Stage::Fork, 0).map(|p| p as libc::pid_t)
}

/// Waits for `pid` (or any child if -1), retrying on EINTR.
fn wait(pid: libc::pid_t) -> (libc::pid_t, c_int) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 && errno() == libc::EINTR {
            continue;
        }
        return (r, status);
    }
}

/// Entry point from `pre_exec`, in the freshly forked child. Never returns.
pub(crate) fn enter(s: &Script) -> ! {
    match outer(s) {
        Ok(code) => {
            // SAFETY: async-signal-safe exit.
            unsafe { libc::_exit(code) }
        }
        Err(e) => fail_and_exit(e),
    }
}

fn outer(s: &Script) -> Sys<c_int> {
    // SAFETY: plain syscalls on integers. The cgroup fds are >= 10
    // (`MIN_PROCS_FD`), so the dup2 onto 3 cannot clobber them.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if s.status_fd != STATUS_FD && libc::dup2(s.status_fd, STATUS_FD) == -1 {
            libc::_exit(125);
        }
    }
    close_all_but(&s.cgroup_procs);
    let mut go = [0 as c_int; 2];
    // SAFETY: `go` is a valid out-array of two fds.
    check(
        unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) }.into(),
        Stage::Fork,
        1,
    )?;
    // No cgroup namespace yet: it is entered by pid 1 once in the cgroups,
    // so that the step sees its own cgroup as `/`.
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(flags) }.into(), Stage::Unshare, 0)?;
    write_file(c"/proc/self/setgroups", b"deny", 0)?;
    write_file(c"/proc/self/uid_map", &s.uid_map, 1)?;
    write_file(c"/proc/self/gid_map", &s.gid_map, 2)?;
    let pid = raw_fork()?;
    if pid == 0 {
        // SAFETY: closing fds this process owns.
        unsafe {
            libc::close(go[1]);
            for fd in &s.cgroup_procs {
                libc::close(*fd);
            }
        }
        init(s, go[0])
    }
    // SAFETY: closing our copy of pid 1's end.
    unsafe { libc::close(go[0]) };
    join_cgroups(s, pid)?;
    // SAFETY: a one-byte write to our pipe, then closing what we own.
    unsafe {
        libc::write(go[1], b"1".as_ptr().cast(), 1);
        libc::close(go[1]);
        for fd in &s.cgroup_procs {
            libc::close(*fd);
        }
    }
    let (_, status) = wait(pid);
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        125
    })
}

/// Closes every fd from 4 up except `keep` (sorted, all >= 4).
fn close_all_but(keep: &[c_int]) {
    let mut first = STATUS_FD as u32 + 1;
    for &fd in keep {
        let fd = fd as u32;
        if fd > first {
            // SAFETY: close_range on integers.
            unsafe { libc::close_range(first, fd - 1, 0) };
        }
        first = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::close_range(first, u32::MAX, 0) };
}

/// Moves this process and `init` (a host pid) into every cgroup.
fn join_cgroups(s: &Script, init: libc::pid_t) -> Sys {
    let mut buf = [0u8; 12];
    let init = decimal(init as u32, &mut buf);
    for (i, fd) in s.cgroup_procs.iter().enumerate() {
        for pid in [&b"0"[..], init] {
            // SAFETY: writing a stack buffer to an fd the parent opened.
            let r = unsafe { libc::write(*fd, pid.as_ptr().cast(), pid.len()) };
            check(r as libc::c_long, Stage::JoinCgroup, i as u32)?;
        }
    }
    Ok(())
}

/// `n` in decimal, in the tail of `buf` (no allocation).
fn decimal(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

fn write_file(path: &CStr, data: &[u8], index: u32) -> Sys {
    // SAFETY: path is a valid C string; the fd is closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd.into(), Stage::IdMap, index)?;
        let r = libc::write(fd, data.as_ptr().cast(), data.len());
        let e = errno();
        libc::close(fd);
        if r != data.len() as isize {
            return Err((Stage::IdMap, index, e));
        }
    }
    Ok(())
}

/// Pid 1 of the sandbox; `go` is readable once the outer process has moved
/// it into the cgroups. Never returns.
fn init(s: &Script, go: c_int) -> ! {
    // SAFETY: prctl with integer arguments. Non-dumpable: the step (same
    // uid) must not read pid 1's environ/memory/exe, which are the caller's.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    let setup = || -> Sys {
        for (i, op) in s.ops.iter().enumerate() {
            crate::mounts::apply(op).map_err(|e| (Stage::Filesystem, i as u32, e))?;
        }
        // SAFETY: pointer and length of an owned buffer.
        let r = unsafe { libc::sethostname(s.hostname.as_ptr().cast(), s.hostname.len()) };
        check(r.into(), Stage::Hostname, 0)?;
        crate::mounts::loopback_up().map_err(|e| (Stage::Loopback, 0, e))
    };
    if let Err(e) = setup() {
        fail_and_exit(e)
    }
    if !joined(go) {
        // The outer process failed to join and has reported why.
        // SAFETY: async-signal-safe exit.
        unsafe { libc::_exit(126) }
    }
    // SAFETY: unshare takes only flags; pid 1 has CAP_SYS_ADMIN in its userns.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } == -1 {
        fail_and_exit((Stage::Unshare, 1, errno()))
    }
    let step_pid = match raw_fork() {
        Ok(0) => step(s),
        Ok(pid) => pid,
        Err(e) => fail_and_exit(e),
    };
    loop {
        let (pid, status) = wait(-1);
        if pid == step_pid || pid == -1 {
            report(Message {
                stage: Stage::Exited as u32,
                index: 0,
                value: status,
            });
            // SAFETY: exiting pid 1 makes the kernel kill the whole namespace.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Waits for the outer process's go-ahead on `go` (then closes it): true if
/// it came, false if the outer process closed the pipe without it.
fn joined(go: c_int) -> bool {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading into a one-byte stack buffer from an fd we own.
        let r = unsafe { libc::read(go, b.as_mut_ptr().cast(), 1) };
        if r == -1 && errno() == libc::EINTR {
            continue;
        }
        // SAFETY: closing an fd we own.
        unsafe { libc::close(go) };
        return r == 1;
    }
}

/// The step itself: final process settings, then `execve`. Never returns.
fn step(s: &Script) -> ! {
    let prepare = || -> Sys {
        // SAFETY: syscalls with integer or valid-pointer arguments only.
        unsafe {
            libc::setsid();
            libc::umask(0o022);
            for (i, (res, v)) in s.rlimits.iter().enumerate() {
                let lim = libc::rlimit {
                    rlim_cur: *v,
                    rlim_max: *v,
                };
                check(libc::setrlimit(*res, &lim).into(), Stage::Rlimit, i as u32)?;
            }
            let r = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            check(r.into(), Stage::Privileges, 0)?;
            check(libc::chdir(s.workdir.as_ptr()).into(), Stage::Workdir, 0)?;
            // Keep the status pipe open until exec succeeds, then let it go.
            let r = libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int);
            check(r.into(), Stage::Privileges, 1)?;
        }
        Ok(())
    };
    if let Err(e) = prepare() {
        fail_and_exit(e)
    }
    let mut last = libc::ENOENT;
    for path in &s.exec_candidates {
        // SAFETY: NUL-terminated arrays of valid C strings built by the parent.
        unsafe { libc::execve(path.as_ptr(), s.argv.as_ptr(), s.envp.as_ptr()) };
        let e = errno();
        // Like execvp: keep searching on "not here", remember "not allowed".
        if e == libc::EACCES {
            last = e;
        } else if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
            break;
        }
    }
    fail_and_exit((Stage::Exec, 0, last))
}
