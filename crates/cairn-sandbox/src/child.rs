//! The code that runs between `fork` and `exec`: three tiny processes.
//!
//! `run` spawns a `std::process::Command` whose `pre_exec` hook calls
//! [`enter`]. Everything here is async-signal-safe: raw syscalls through
//! `libc`, no allocation, no locks, reading only the precomputed
//! [`Script`] (and writing descriptors into its preallocated slots). The
//! processes are:
//!
//! 1. **outer** (the spawned child, host namespaces, the caller's ids):
//!    closes every inherited fd but 0–2, the status socket (fd 3) and the
//!    cgroups' `tasks` files, drops supplementary groups when root, moves
//!    itself into the cgroups (see [`join_cgroups`] for why this costs no
//!    RCU grace period), and `clone`s *init* into new
//!    user/mount/pid/net/ipc/uts/cgroup namespaces, so init and everything
//!    it starts are born in the cgroups and see them as `/`. From outside,
//!    with the caller's privileges, it writes init's uid and gid maps (the
//!    step's id to the host ids `ids.rs` chose), tells init so, and waits
//!    for it.
//! 2. **init** (pid 1 of the new pid namespace): wipes the caller's command
//!    line and environment from its copy of the caller's memory and is not
//!    dumpable. Still with the caller's host uid, it mounts the root tmpfs
//!    and clones every host source into a detached mount; then it becomes
//!    the step's uid (keeping its capabilities in the namespace, which are
//!    none on the host), assembles the root from the clones, pivots into
//!    it, sets the hostname, brings `lo` up, sends the parent descriptors
//!    of `/out` and `/tmp`, starts *step* (in its memory, suspended until
//!    the `execve`: [`spawn`]), reaps every orphan, and when
//!    *step* ends kills and reaps whatever else is left in the namespace,
//!    then writes the step's wait status to the status socket and exits. It dies with
//!    *outer* (`PR_SET_PDEATHSIG`), which dies with the caller's thread.
//! 3. **step**: a new session (no controlling terminal), fixed rlimits, a
//!    fresh empty session keyring, `no_new_privs`, the workdir, every fd
//!    but 0–2 close-on-exec, the system-call filter (`filter/`), then
//!    `execve` with exactly the plan's environment.
//!
//! Failures are reported on the status socket as fixed-size [`Message`]s
//! (`stage`, `index`, `errno`); the parent turns them into errors that name
//! the operation. Nothing here ever returns to std's `exec` path.

use std::ffi::CStr;
use std::os::raw::c_int;

use crate::script::{Program, Script};

/// The status socket's fd number in the children.
pub(crate) const STATUS_FD: c_int = 3;

/// Where a failure happened; `index` in a [`Message`] refines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    /// The step ended; `value` is its wait status.
    Exited = 0,
    JoinCgroup = 1,
    Namespaces = 2,
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
    /// `index` is the position in `Script::clones`.
    Clone = 12,
    /// Mounting the root tmpfs (`index` 0: making mounts private).
    Root = 13,
    SwitchIds = 14,
    Pivot = 15,
    Keyring = 16,
    Filter = 17,
    /// Not a failure: the message carries the watched mounts' descriptors.
    Watched = 18,
    /// Service `index` ended (`value`: its wait status) or did not answer
    /// its probe before the deadline (`value` -1); the command never ran.
    ServiceNotReady = 19,
    /// Registering the emulator with the sandbox's binfmt_misc.
    Emulator = 20,
}

impl Stage {
    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            Exited,
            JoinCgroup,
            Namespaces,
            IdMap,
            Fork,
            Filesystem,
            Hostname,
            Loopback,
            Rlimit,
            Workdir,
            Privileges,
            Exec,
            Clone,
            Root,
            SwitchIds,
            Pivot,
            Keyring,
            Filter,
            Watched,
            ServiceNotReady,
            Emulator,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// One report on the status socket: 12 bytes, one datagram.
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

pub(crate) fn errno() -> c_int {
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
pub(crate) fn raw_fork() -> Sys<libc::pid_t> {
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
pub(crate) fn enter(s: &mut Script) -> ! {
    match outer(s) {
        Ok(code) => {
            // SAFETY: async-signal-safe exit.
            unsafe { libc::_exit(code) }
        }
        Err(e) => fail_and_exit(e),
    }
}

fn outer(s: &mut Script) -> Sys<c_int> {
    // SAFETY: plain syscalls on integers. The cgroup fds are >= 10
    // (`MIN_JOIN_FD`), so the dup2 onto 3 cannot clobber them.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The caller may have died before the line above.
        if libc::getppid() != s.caller_pid {
            libc::_exit(125);
        }
        if s.status_fd != STATUS_FD && libc::dup2(s.status_fd, STATUS_FD) == -1 {
            libc::_exit(125);
        }
    }
    close_all_but(&s.cgroup_tasks);
    if s.clear_groups {
        // SAFETY: an empty group list.
        let r = unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) };
        check(r, Stage::Privileges, 2)?;
    }
    join_cgroups(s)?;
    let mut go = [0 as c_int; 2];
    // SAFETY: `go` is a valid out-array of two fds.
    check(
        unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) }.into(),
        Stage::Fork,
        1,
    )?;
    // Already in the cgroups: pid 1 and everything it starts are born in
    // them, and its new cgroup namespace shows them as `/`.
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    let pid = raw_clone(flags).map_err(|(_, i, e)| (Stage::Namespaces, i, e))?;
    if pid == 0 {
        // SAFETY: closing an fd this process owns.
        unsafe { libc::close(go[1]) };
        init(s, go[0])
    }
    // SAFETY: closing our copy of pid 1's end.
    unsafe { libc::close(go[0]) };
    write_id_maps(s, pid)?;
    // SAFETY: a one-byte write to our pipe. The write end stays open
    // until this process dies: pid 1 tells from its hang-up that we are
    // gone (see `outer_is_alive`).
    unsafe { libc::write(go[1], b"1".as_ptr().cast(), 1) };
    let (_, status) = wait(pid);
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        125
    })
}

/// `fork` into new namespaces, without glibc's atfork handlers.
fn raw_clone(flags: c_int) -> Sys<libc::pid_t> {
    // SAFETY: clone with a null stack behaves like fork; both sides
    // continue on their own copy of this stack.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0,
            0,
            0,
            0,
        )
    };
    check(ret, Stage::Fork, 0).map(|p| p as libc::pid_t)
}

/// Writes `setgroups`, `uid_map` and `gid_map` of `pid` (from outside its
/// user namespace, with our privileges).
fn write_id_maps(s: &Script, pid: libc::pid_t) -> Sys {
    let files: [(&[u8], &[u8]); 3] = [
        (b"/setgroups\0", b"deny"),
        (b"/uid_map\0", &s.uid_map),
        (b"/gid_map\0", &s.gid_map),
    ];
    for (i, (name, data)) in files.into_iter().enumerate() {
        let mut path = [0u8; 48];
        let mut digits = [0u8; 12];
        let pid = decimal(pid as u32, &mut digits);
        let mut n = 0;
        for part in [&b"/proc/"[..], pid, name] {
            path[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        let path = CStr::from_bytes_with_nul(&path[..n]).expect("one NUL at the end");
        write_file(path, data, i as u32)?;
    }
    Ok(())
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

/// Moves this process, single-threaded since the `fork`, into every
/// cgroup by writing `0` to the hierarchies' `tasks` files, then closes
/// them. Moving only the calling thread is the one migration the kernel
/// does without taking the global `cgroup_threadgroup_rwsem` for writing,
/// which waits for an RCU grace period (milliseconds) each time; moving a
/// process by pid through `cgroup.procs` takes it.
fn join_cgroups(s: &Script) -> Sys {
    for (i, fd) in s.cgroup_tasks.iter().enumerate() {
        // SAFETY: writing a static buffer to an fd the parent opened.
        let r = unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) };
        check(r as libc::c_long, Stage::JoinCgroup, i as u32)?;
        // SAFETY: closing an fd we own; nothing else writes to it.
        unsafe { libc::close(*fd) };
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

/// Overwrites the caller's command line and environment strings in this
/// process's copy of its memory.
fn wipe_caller_strings(s: &Script) {
    const NAME: &[u8] = b"cairn-sandbox-init";
    let (args, env) = (s.caller.args, s.caller.env);
    // SAFETY: both areas are mapped, writable parts of the stack this
    // process inherited (the kernel recorded them at exec); nothing in this
    // process reads them any more.
    unsafe {
        for (start, len) in [args, env] {
            if start != 0 && len != 0 {
                std::ptr::write_bytes(start as *mut u8, 0, len);
            }
        }
        if args.0 != 0 && args.1 > NAME.len() {
            std::ptr::copy_nonoverlapping(NAME.as_ptr(), args.0 as *mut u8, NAME.len());
        }
        libc::prctl(libc::PR_SET_NAME, c"cairn-init".as_ptr());
    }
}

/// Pid 1 of the sandbox; `go` gets a byte once the outer process has
/// written the id maps. Never returns.
fn init(s: &mut Script, go: c_int) -> ! {
    // SAFETY: prctl with integer arguments. Non-dumpable: the step (same
    // uid) must not read pid 1's environ/memory/exe, which are the caller's.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    wipe_caller_strings(s);
    if !go_ahead(go) {
        // The outer process failed and has reported why.
        // SAFETY: async-signal-safe exit.
        unsafe { libc::_exit(126) }
    }
    if let Err(e) = build_root(s) {
        fail_and_exit(e)
    }
    // Becoming the step's uid cleared the parent-death signal (the kernel
    // clears it on every change of effective ids): arm it again, then make
    // sure the outer process did not die before that.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if !outer_is_alive(go) {
        // SAFETY: exiting pid 1 makes the kernel kill the whole namespace.
        unsafe { libc::_exit(126) }
    }
    // SAFETY: closing an fd we own.
    unsafe { libc::close(go) };
    // The services, each ready (or failed) before the next starts.
    if let Err((index, ended)) = crate::ready::start_services(s) {
        report(Message {
            stage: Stage::ServiceNotReady as u32,
            index,
            value: ended,
        });
        // SAFETY: exiting pid 1 makes the kernel kill the whole namespace.
        unsafe { libc::_exit(0) }
    }
    let step_pid = match spawn(s, &s.program, 0) {
        Ok(pid) => pid,
        Err(e) => fail_and_exit(e),
    };
    loop {
        let (pid, status) = wait(-1);
        if pid == step_pid || pid == -1 {
            // Everything else in the namespace (services, what the step
            // left running) dies and is reaped before the step's end is
            // reported: the parent reads /out as soon as the report comes,
            // and nothing may write there any more. Orphans are pid 1's
            // children once their parent is reaped, so "no child left"
            // means none is left at all.
            // SAFETY: kill and waitpid on integers.
            unsafe { libc::kill(-1, libc::SIGKILL) };
            while wait(-1).0 != -1 {}
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

/// Builds the root filesystem and enters it (see the module docs).
fn build_root(s: &mut Script) -> Sys {
    use crate::mounts;
    mounts::make_private().map_err(|e| (Stage::Root, 0, e))?;
    let root = mounts::mount_root(&s.staging, &s.root_data).map_err(|e| (Stage::Root, 1, e))?;
    for (i, c) in s.clones.iter().enumerate() {
        s.clone_fds[i] =
            mounts::clone_source(&c.source, c.attrs).map_err(|e| (Stage::Clone, i as u32, e))?;
    }
    let id = crate::plan::SANDBOX_ID as libc::c_long;
    // SAFETY: raw set*id calls affect only this (single-threaded) process.
    unsafe {
        check(
            libc::syscall(libc::SYS_setresgid, id, id, id),
            Stage::SwitchIds,
            0,
        )?;
        check(
            libc::syscall(libc::SYS_setresuid, id, id, id),
            Stage::SwitchIds,
            1,
        )?;
    }
    for (i, op) in s.ops.iter().enumerate() {
        mounts::apply(op, root, &s.clone_fds).map_err(|e| (Stage::Filesystem, i as u32, e))?;
    }
    // SAFETY: pointer and length of an owned buffer.
    let r = unsafe { libc::sethostname(s.hostname.as_ptr().cast(), s.hostname.len()) };
    check(r.into(), Stage::Hostname, 0)?;
    mounts::loopback_up().map_err(|e| (Stage::Loopback, 0, e))?;
    mounts::pivot(root).map_err(|e| (Stage::Pivot, 0, e))?;
    if let Some(line) = &s.binfmt {
        mounts::register_emulator(line).map_err(|e| (Stage::Emulator, 0, e))?;
    }
    // SAFETY: closing fds we own; the clones are attached by now.
    unsafe {
        libc::close(root);
        for fd in &s.clone_fds {
            libc::close(*fd);
        }
    }
    send_watched()
}

/// Sends the parent `O_PATH` descriptors of the watched tmpfs mounts, so
/// it can read `/out` after the sandbox is gone and see which mount filled up.
fn send_watched() -> Sys {
    let mut fds = [-1 as c_int; crate::script::WATCHED];
    let paths = [c"/out", c"/tmp"];
    for (i, path) in paths.iter().enumerate() {
        // SAFETY: a valid C string.
        fds[i] = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        check(fds[i].into(), Stage::Pivot, 1 + i as u32)?;
    }
    let msg = Message {
        stage: Stage::Watched as u32,
        index: fds.len() as u32,
        value: 0,
    }
    .encode();
    // SAFETY: a control buffer sized by CMSG_SPACE for the fds, filled
    // through the CMSG macros; `msg` and `fds` outlive the call.
    unsafe {
        const SPACE: usize = 64;
        let mut control = [0u8; SPACE];
        let bytes = std::mem::size_of_val(&fds) as u32;
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr() as *mut libc::c_void,
            iov_len: msg.len(),
        };
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = libc::CMSG_SPACE(bytes) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        let r = libc::sendmsg(STATUS_FD, &hdr, libc::MSG_NOSIGNAL);
        for fd in fds {
            libc::close(fd);
        }
        check(r as libc::c_long, Stage::Pivot, 9).map(drop)
    }
}

/// Whether the outer process still holds the write end of `go` (it does
/// until it dies); pid 1's parent is outside its pid namespace, so
/// `getppid` cannot tell.
fn outer_is_alive(go: c_int) -> bool {
    let mut fds = [libc::pollfd {
        fd: go,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd on an fd we own; no wait (timeout 0).
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    r == 0 || (r == 1 && fds[0].revents & libc::POLLHUP == 0)
}

/// Waits for the outer process's next go-ahead byte on `go`: true if it
/// came, false if the outer process closed the pipe without it.
fn go_ahead(go: c_int) -> bool {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading into a one-byte stack buffer from an fd we own.
        let r = unsafe { libc::read(go, b.as_mut_ptr().cast(), 1) };
        if r == -1 && errno() == libc::EINTR {
            continue;
        }
        return r == 1;
    }
}

/// `KEYCTL_JOIN_SESSION_KEYRING` (linux/keyctl.h).
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// Starts `program` (the step's, index 0, or service `index - 1`'s) as
/// `posix_spawn` starts a program: a child sharing pid 1's memory
/// (`CLONE_VM`) on a stack of its own (`Script::spawn_stack`), pid 1
/// suspended until the child has called `execve` or exited
/// (`CLONE_VFORK`). A plain fork would copy the page tables of pid 1, a
/// copy of the whole caller, only for `execve` to throw them away (0.3–0.4
/// ms measured). And when it returns, the child's exec failure, if any, is
/// already on the status socket, ahead of anything pid 1 reports later. The
/// child writes nothing pid 1 reads afterwards: its stack is its own, and
/// its `errno` (pid 1's thread-local one) is read by pid 1 only right
/// after a failed call of its own.
pub(crate) fn spawn(s: &Script, program: &Program, index: u32) -> Sys<libc::pid_t> {
    struct Start<'a> {
        s: &'a Script,
        program: &'a Program,
        index: u32,
    }
    extern "C" fn entry(start: *mut libc::c_void) -> c_int {
        // SAFETY: `start` points at the `Start` below, alive while pid 1 is
        // suspended; the child only reads it.
        let start = unsafe { &*(start as *const Start<'_>) };
        run_program(start.s, start.program, start.index)
    }
    let start = Start { s, program, index };
    // Align the top of the stack down to 16 bytes, as the ABI wants.
    let top = (s.spawn_stack_top & !15) as *mut libc::c_void;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let arg = &start as *const Start<'_> as *mut libc::c_void;
    // SAFETY: `entry` never returns (it execs or exits) and runs on a stack
    // that is not pid 1's (nothing else uses `spawn_stack`); pid 1 does not
    // run until the child has left the shared address space. glibc's
    // `clone` wrapper runs no atfork handlers.
    let pid = unsafe { libc::clone(entry, top, flags, arg) };
    check(pid.into(), Stage::Fork, 2).map(|p| p as libc::pid_t)
}

/// A process of the step (the command, a service, an exec probe): the
/// final process settings, then `execve` of `program`; a failure is
/// reported with `index` (0: the command, 1 + i: service i). Never returns.
pub(crate) fn run_program(s: &Script, program: &crate::script::Program, index: u32) -> ! {
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
            // A new anonymous session keyring: nothing of the caller's.
            let r = libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            );
            if r == -1 && errno() != libc::ENOSYS {
                return Err((Stage::Keyring, 0, errno()));
            }
            let r = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            check(r.into(), Stage::Privileges, 0)?;
            check(libc::chdir(s.workdir.as_ptr()).into(), Stage::Workdir, 0)?;
            // Keep the status socket open until exec succeeds, then let it go.
            let r = libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int);
            check(r.into(), Stage::Privileges, 1)?;
            let prog = libc::sock_fprog {
                len: s.filter.len() as u16,
                filter: s.filter.as_ptr() as *mut libc::sock_filter,
            };
            let r = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            );
            check(r, Stage::Filter, 0)?;
        }
        Ok(())
    };
    if let Err(e) = prepare() {
        fail_and_exit(e)
    }
    let mut last = libc::ENOENT;
    for path in &program.exec_candidates {
        // SAFETY: NUL-terminated arrays of valid C strings built by the parent.
        unsafe { libc::execve(path.as_ptr(), program.argv.as_ptr(), program.envp.as_ptr()) };
        let e = errno();
        // Like execvp: keep searching on "not here", remember "not allowed".
        if e == libc::EACCES {
            last = e;
        } else if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
            break;
        }
    }
    fail_and_exit((Stage::Exec, index, last))
}
