//! Starting a service process: fork, wait for the go-ahead, then exec.
//!
//! [`fork`] creates the child and returns its pid *before* it runs
//! anything: the child waits on a pipe. The agent records the pid (and its
//! start time) in its state file, then [`Forked::release`]s it. If the
//! agent dies in between, the child reads end-of-file and exits without
//! exec'ing, so there is never a service process the agent's state does
//! not know about. (`std::process::Command` cannot do this: its `spawn`
//! returns only after the exec.)
//!
//! Between fork and exec the child makes raw system calls only, on data
//! prepared before the fork (no allocation, no locks: the parent is
//! multi-threaded). In order:
//!
//! 1. wait for the go-ahead;
//! 2. reset the signal mask and `SIGPIPE` (ignored by the Rust runtime, and
//!    an ignored signal stays ignored across exec);
//! 3. `setsid`: its own session and process group, so it survives the
//!    agent and a terminal's signals, and can be stopped as a group;
//! 4. as root, a private mount namespace in which the agent's state
//!    directory (generations and the local store) is read-only, so not
//!    even a root service can write into its generation;
//! 5. drop to the configured group and user;
//! 6. `chdir` to the generation;
//! 7. stdin from `/dev/null`, stdout and stderr to the log pipe;
//! 8. the passed sockets at fds 3, 4, … (through temporary high fds, so a
//!    source fd that happens to be 3 is never overwritten), every other fd
//!    closed;
//! 9. `LISTEN_PID` written with its own pid, then `execve`.
//!
//! A failure is reported on a close-on-exec pipe as (stage, errno); an
//! exec that succeeds closes it, which the parent reads as success.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The most sockets one process is passed.
pub const MAX_FDS: usize = 64;

/// Where fds are parked while they are moved into place.
const HIGH_FD: c_int = 512;

/// A user and group to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user id.
    pub uid: u32,
    /// The group id (also the only supplementary group).
    pub gid: u32,
}

/// What to start.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The program (absolute, or relative to `cwd`).
    pub program: PathBuf,
    /// The arguments, `argv[0]` included.
    pub argv: Vec<String>,
    /// The environment; `LISTEN_PID` is added by the child itself.
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// The sockets passed at fds 3, 4, ….
    pub fds: Vec<BorrowedFd<'a>>,
    /// Where stdout and stderr go.
    pub output: BorrowedFd<'a>,
    /// Who to run as (default: the agent's user).
    pub credentials: Option<Credentials>,
    /// A directory made read-only in a private mount namespace (root only).
    pub read_only: Option<PathBuf>,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Preparing in the agent failed.
    #[error("preparing to start {program}: {source}")]
    Prepare {
        /// The program.
        program: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The child failed before or at exec.
    #[error("starting {program}: {stage} failed: {source}")]
    Child {
        /// The program.
        program: String,
        /// What the child was doing.
        stage: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

/// Stages a child can fail at, in the order it goes through them.
const STAGES: [&str; 9] = [
    "setsid",
    "making the state directory read-only",
    "setting the group",
    "setting the user",
    "changing to the generation directory",
    "redirecting stdio",
    "passing the sockets",
    "closing other fds",
    "exec",
];

/// Everything the child needs, prepared before the fork.
struct Prepared {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    listen_pid: Box<[u8; 32]>,
    cwd: CString,
    read_only: Option<CString>,
    fds: Vec<c_int>,
    output: c_int,
    devnull: OwnedFd,
    credentials: Option<Credentials>,
}

fn cstring(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"))
}

impl Prepared {
    fn new(l: &Launch<'_>) -> io::Result<Self> {
        if l.fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many sockets",
            ));
        }
        let argv = l.argv.iter().map(cstring).collect::<io::Result<Vec<_>>>()?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let env = l
            .env
            .iter()
            .filter(|(k, _)| k != "LISTEN_PID")
            .map(|(k, v)| cstring(format!("{k}={v}")))
            .collect::<io::Result<Vec<_>>>()?;
        // "LISTEN_PID=" then the pid's digits and a NUL, written by the child.
        let mut listen_pid = Box::new([0u8; 32]);
        listen_pid[..11].copy_from_slice(b"LISTEN_PID=");
        let mut env_ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        if !l.fds.is_empty() {
            env_ptrs.push(listen_pid.as_ptr().cast());
        }
        env_ptrs.push(std::ptr::null());
        // SAFETY: open with a static NUL-terminated path.
        let devnull = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if devnull < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            program: cstring(l.cwd.join(&l.program))?,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            listen_pid,
            cwd: cstring(&l.cwd)?,
            read_only: l.read_only.as_ref().map(cstring).transpose()?,
            fds: l.fds.iter().map(|f| f.as_raw_fd()).collect(),
            output: l.output.as_raw_fd(),
            // SAFETY: just opened, owned by nobody else.
            devnull: unsafe { OwnedFd::from_raw_fd(devnull) },
            credentials: l.credentials,
        })
    }
}

/// A forked child waiting for its go-ahead.
#[derive(Debug)]
pub struct Forked {
    /// The child's pid.
    pub pid: i32,
    program: String,
    gate: Option<OwnedFd>,
    errors: OwnedFd,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child for `launch`; it runs nothing until released.
pub fn fork(launch: &Launch<'_>) -> Result<Forked, SpawnError> {
    let program = launch.program.display().to_string();
    let prepare = |source| SpawnError::Prepare {
        program: program.clone(),
        source,
    };
    let prepared = Prepared::new(launch).map_err(prepare)?;
    let (gate_r, gate_w) = pipe().map_err(prepare)?;
    let (err_r, err_w) = pipe().map_err(prepare)?;
    // SAFETY: the child only makes async-signal-safe calls on `prepared`
    // (see `child`) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(prepare(io::Error::last_os_error()));
    }
    if pid == 0 {
        child(
            &prepared,
            gate_r.as_raw_fd(),
            gate_w.as_raw_fd(),
            err_w.as_raw_fd(),
        );
    }
    drop(gate_r);
    drop(err_w);
    Ok(Forked {
        pid,
        program,
        gate: Some(gate_w),
        errors: err_r,
    })
}

impl Forked {
    /// Lets the child go on to exec; returns once it has (or has failed,
    /// in which case it is reaped).
    pub fn release(mut self) -> Result<(), SpawnError> {
        let gate = self.gate.take().expect("released once");
        // SAFETY: writing one byte from a local buffer to our pipe.
        unsafe { libc::write(gate.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        drop(gate);
        let mut report = [0u8; 8];
        let n = loop {
            // SAFETY: reading into a local buffer from our pipe.
            let n = unsafe { libc::read(self.errors.as_raw_fd(), report.as_mut_ptr().cast(), 8) };
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break n;
            }
        };
        if n != 8 {
            return Ok(()); // end of file: the exec succeeded
        }
        let stage = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes")) as usize;
        let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
        reap_blocking(self.pid);
        Err(SpawnError::Child {
            program: self.program.clone(),
            stage: STAGES.get(stage).copied().unwrap_or("setup"),
            source: io::Error::from_raw_os_error(errno),
        })
    }

    /// Lets the child exit without running anything, and reaps it.
    pub fn abort(self) {
        drop(self); // see Drop
    }
}

impl Drop for Forked {
    /// A child never released (an error, or the agent's work cancelled in
    /// between) reads end-of-file on its gate and exits; it is reaped here.
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            drop(gate);
            reap_blocking(self.pid);
        }
    }
}

fn reap_blocking(pid: i32) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// The child between fork and exec. Async-signal-safe calls only.
fn child(p: &Prepared, gate_r: RawFd, gate_w: RawFd, err_w: RawFd) -> ! {
    // SAFETY (whole function): raw system calls on fds and buffers prepared
    // before the fork; nothing allocates or takes a lock.
    unsafe {
        libc::close(gate_w);
        let mut byte = 0u8;
        loop {
            let n = libc::read(gate_r, (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 || *libc::__errno_location() != libc::EINTR {
                libc::_exit(0); // the agent is gone: run nothing
            }
        }
        libc::close(gate_r);
        let err = libc::fcntl(err_w, libc::F_DUPFD_CLOEXEC, HIGH_FD);
        let fail = |stage: u32| -> ! {
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&stage.to_ne_bytes());
            msg[4..].copy_from_slice(&(*libc::__errno_location()).to_ne_bytes());
            libc::write(err, msg.as_ptr().cast(), 8);
            libc::_exit(127)
        };
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::setsid() < 0 {
            fail(0);
        }
        if let Some(dir) = &p.read_only {
            if read_only(dir).is_err() {
                fail(1);
            }
        }
        if let Some(c) = p.credentials {
            if libc::setgroups(1, &c.gid) < 0 || libc::setgid(c.gid) < 0 {
                fail(2);
            }
            if libc::setuid(c.uid) < 0 {
                fail(3);
            }
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            fail(4);
        }
        let null = p.devnull.as_raw_fd();
        if libc::dup2(null, 0) < 0 || libc::dup2(p.output, 1) < 0 || libc::dup2(p.output, 2) < 0 {
            fail(5);
        }
        let mut parked = [0 as c_int; MAX_FDS];
        for (i, fd) in p.fds.iter().enumerate() {
            parked[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, HIGH_FD);
            if parked[i] < 0 {
                fail(6);
            }
        }
        for (i, fd) in parked.iter().take(p.fds.len()).enumerate() {
            if libc::dup2(*fd, 3 + i as c_int) < 0 {
                fail(6);
            }
        }
        let first_closed = 3 + p.fds.len() as libc::c_uint;
        let err_fd = err as libc::c_uint;
        if (err_fd > first_closed && close_range(first_closed, err_fd - 1) < 0)
            || close_range(err_fd + 1, libc::c_uint::MAX) < 0
        {
            fail(7);
        }
        write_pid(p.listen_pid.as_ptr().cast_mut(), libc::getpid());
        libc::execve(
            p.program.as_ptr(),
            p.argv_ptrs.as_ptr(),
            p.env_ptrs.as_ptr(),
        );
        fail(8)
    }
}

unsafe fn close_range(first: libc::c_uint, last: libc::c_uint) -> libc::c_long {
    // SAFETY: close_range only closes fds of this (child) process.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }
}

/// Writes the decimal `pid` and a NUL after "LISTEN_PID=" in `buf`.
unsafe fn write_pid(buf: *mut u8, pid: libc::pid_t) {
    let mut digits = [0u8; 12];
    let mut n = pid as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: the buffer holds 32 bytes; 11 + 10 digits + NUL fit.
        unsafe { *buf.add(11 + i) = digits[len - 1 - i] };
    }
    // SAFETY: as above.
    unsafe { *buf.add(11 + len) = 0 };
}

/// A private mount namespace in which `dir` is read-only; mounts made on
/// the host later still propagate in (slave propagation).
unsafe fn read_only(dir: &CString) -> Result<(), ()> {
    let none = std::ptr::null::<libc::c_char>();
    let data = std::ptr::null::<libc::c_void>();
    // SAFETY: mount syscalls with prepared NUL-terminated strings.
    unsafe {
        let ok = libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_SLAVE,
                data,
            ) == 0
            && libc::mount(
                dir.as_ptr(),
                dir.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                data,
            ) == 0
            && libc::mount(
                none,
                dir.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                data,
            ) == 0;
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }
}
