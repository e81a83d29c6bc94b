//! Process file descriptors (Linux 5.6+): a handle on one process that a
//! reused pid can never redirect.
//!
//! The agent holds a pidfd for every service process, whether it started
//! it or adopted it after its own restart (a process that is not our child
//! cannot be `waitpid`ed, but its pidfd still becomes readable when it
//! exits). Signals go through `pidfd_send_signal`, and the listening
//! sockets an adopted process holds are taken back with `pidfd_getfd`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

use super::identity::Identity;

/// A pidfd, pinned to the identity it was checked against.
#[derive(Debug)]
pub struct Pidfd {
    fd: AsyncFd<OwnedFd>,
    pid: i32,
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Pidfd {
    /// A pidfd for `pid` (which must be alive, or a zombie child).
    pub fn open(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
        // SAFETY: the fd was just returned to us (close-on-exec, as every
        // pidfd) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it
        // until it is dropped; nothing else closes or replaces it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
        Ok(Self { fd, pid })
    }

    /// A pidfd for the process `identity` names, if it is still that
    /// process: opened first, then checked, so the check holds for the fd.
    pub fn adopt(identity: &Identity) -> Option<Self> {
        let fd = Self::open(identity.pid).ok()?;
        identity.is_alive().then_some(fd)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the process (no-op error if it is gone).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own; null siginfo, no flags.
        check(unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        })
        .map(drop)
    }

    /// A duplicate of the process's fd number `target`.
    pub fn get_fd(&self, target: RawFd) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_getfd returns a new fd (close-on-exec) or fails.
        let fd = check(unsafe {
            libc::syscall(
                libc::SYS_pidfd_getfd,
                self.fd.get_ref().as_raw_fd(),
                target,
                0,
            )
        })?;
        // SAFETY: the fd is new and ours.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    /// Whether the process has exited, without waiting.
    pub fn has_exited(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & libc::POLLIN != 0
    }

    /// Resolves when the process exits.
    pub async fn exited(&self) {
        loop {
            match self.fd.readable().await {
                Ok(mut guard) => {
                    if self.has_exited() {
                        return;
                    }
                    guard.clear_ready();
                }
                // The fd cannot fail to be polled; treat it as gone.
                Err(_) => return,
            }
        }
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// Reaps `pid` if it is an exited child of ours; returns its wait status
/// (`None`: not our child, or still running).
pub fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid on one pid, non-blocking.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then_some(status)
}

/// A wait status in words: "exit status 3", "killed by signal 9".
pub fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}
