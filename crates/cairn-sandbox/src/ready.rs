//! Starting a step's services and waiting until each is ready, in pid 1
//! between `fork` and `exec` (see [`crate::services`] for what a service
//! is).
//!
//! Like the rest of the child side this is async-signal-safe: the parent
//! lowers each service to a [`ScriptService`] (its program, the probe's
//! socket address and request bytes, times in nanoseconds), and pid 1 only
//! makes raw system calls on them with fixed-size stack buffers. A probe
//! runs in pid 1 itself (a connection from inside the namespace: the
//! loopback interface the command will use), or for an exec probe in a
//! forked process set up exactly like a service.

use std::os::raw::c_int;

use crate::child::{errno, raw_fork, run_program, spawn, STATUS_FD};
use crate::script::{Program, Script};
use crate::services::{Probe, Service, MAX_SERVICES};

/// A service lowered for the child side.
#[derive(Debug)]
pub(crate) struct ScriptService {
    program: Program,
    ready: Option<ScriptReady>,
}

#[derive(Debug)]
struct ScriptReady {
    probe: ScriptProbe,
    interval: libc::timespec,
    deadline_ns: u64,
}

#[derive(Debug)]
enum ScriptProbe {
    /// Connect to `addr`; then, if `request` is not empty, send it and
    /// expect an `HTTP/1.x 2xx` status line.
    Connect {
        addr: libc::sockaddr_storage,
        len: libc::socklen_t,
        request: Vec<u8>,
    },
    /// Run the program; ready when it exits 0.
    Exec(Program),
}

impl ScriptService {
    /// Lowers `service` (validated).
    pub(crate) fn new(service: &Service) -> Self {
        let ready = service.ready.as_ref().map(|r| {
            let probe = match &r.probe {
                Probe::Tcp(addr) => connect(addr, Vec::new()),
                Probe::Http { addr, path } => {
                    let request =
                        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                    connect(addr, request.into_bytes())
                }
                Probe::Exec(argv) => ScriptProbe::Exec(Program::new(argv, &service.env)),
            };
            ScriptReady {
                probe,
                interval: libc::timespec {
                    tv_sec: r.interval.as_secs().min(3600) as libc::time_t,
                    tv_nsec: r.interval.subsec_nanos() as libc::c_long,
                },
                deadline_ns: u64::try_from(r.deadline.as_nanos()).unwrap_or(u64::MAX),
            }
        });
        ScriptService {
            program: Program::new(&service.argv, &service.env),
            ready,
        }
    }
}

fn connect(addr: &std::net::SocketAddr, request: Vec<u8>) -> ScriptProbe {
    // SAFETY: an all-zero sockaddr_storage is valid; the family-specific
    // struct written into it fits (sockaddr_storage is the largest).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: see above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: see above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    ScriptProbe::Connect {
        addr: storage,
        len: len as libc::socklen_t,
        request,
    }
}

/// Starts every service in order, each ready before the next starts.
/// `Err((index, ended))`: service `index` exited with wait status `ended`,
/// or did not answer before its deadline (`ended` = -1), or could not be
/// forked (-2).
pub(crate) fn start_services(s: &Script) -> Result<(), (u32, c_int)> {
    let mut pids = [0 as libc::pid_t; MAX_SERVICES];
    for (i, service) in s.services.iter().enumerate().take(MAX_SERVICES) {
        let index = i as u32;
        // Spawned (see `child::spawn`): pid 1 goes on only after the
        // service's exec, or after its failure to exec was reported on the
        // status socket, ahead of anything the command reports.
        pids[i] = match spawn(s, &service.program, 1 + index) {
            Ok(pid) => pid,
            Err(_) => return Err((index, -2)),
        };
        if let Some(ready) = &service.ready {
            await_ready(s, ready, pids[i]).map_err(|ended| (index, ended))?;
        }
    }
    Ok(())
}

/// Probes every `interval` until a probe succeeds; `Err` with the
/// service's wait status if it ended first, or -1 after the deadline.
fn await_ready(s: &Script, ready: &ScriptReady, pid: libc::pid_t) -> Result<(), c_int> {
    let start = now_ns();
    loop {
        let left = ready
            .deadline_ns
            .saturating_sub(now_ns().saturating_sub(start));
        if probe(s, &ready.probe, left) {
            return Ok(());
        }
        let mut status = 0;
        // SAFETY: a non-blocking wait for our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return Err(status);
        }
        if now_ns().saturating_sub(start) >= ready.deadline_ns {
            return Err(-1);
        }
        sleep(&ready.interval);
    }
}

/// One probe; an exec probe gets at most `left_ns` to finish.
fn probe(s: &Script, probe: &ScriptProbe, left_ns: u64) -> bool {
    match probe {
        ScriptProbe::Connect { addr, len, request } => connect_probe(addr, *len, request),
        ScriptProbe::Exec(program) => exec_probe(s, program, left_ns),
    }
}

fn connect_probe(addr: &libc::sockaddr_storage, len: libc::socklen_t, request: &[u8]) -> bool {
    // SAFETY: raw socket calls on a descriptor we own and close, with
    // pointers to live values of the right sizes.
    unsafe {
        let fd = libc::socket(
            addr.ss_family as c_int,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        );
        if fd == -1 {
            return false;
        }
        // A probe that hangs must not hang the step: 2 s per operation.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        for opt in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let connected = libc::connect(fd, (addr as *const libc::sockaddr_storage).cast(), len) == 0;
        let ok = connected && (request.is_empty() || http_ok(fd, request));
        libc::close(fd);
        ok
    }
}

/// Sends `request` on `fd` and reads the status line: `HTTP/1.x 2xx`.
fn http_ok(fd: c_int, request: &[u8]) -> bool {
    let mut sent = 0;
    while sent < request.len() {
        // SAFETY: writing from a live slice.
        let n = unsafe {
            libc::send(
                fd,
                request[sent..].as_ptr().cast(),
                request.len() - sent,
                libc::MSG_NOSIGNAL,
            )
        };
        if n <= 0 {
            return false;
        }
        sent += n as usize;
    }
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled part of a stack buffer.
        let n = unsafe { libc::recv(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    buf.starts_with(b"HTTP/1.") && buf[8] == b' ' && buf[9] == b'2'
}

/// Runs an exec probe like a service (without the status socket: its
/// failures are a failed probe, not the step's) and waits up to `left_ns`.
fn exec_probe(s: &Script, program: &Program, left_ns: u64) -> bool {
    let pid = match raw_fork() {
        Ok(0) => {
            // SAFETY: closing an fd of this (forked) process.
            unsafe { libc::close(STATUS_FD) };
            run_program(s, program, 0)
        }
        Ok(pid) => pid,
        Err(_) => return false,
    };
    let start = now_ns();
    let step = libc::timespec {
        tv_sec: 0,
        tv_nsec: 10_000_000,
    };
    loop {
        let mut status = 0;
        // SAFETY: a non-blocking wait for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if r == -1 && errno() != libc::EINTR {
            return false;
        }
        if now_ns().saturating_sub(start) >= left_ns {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return false;
        }
        sleep(&step);
    }
}

fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

fn sleep(t: &libc::timespec) {
    // SAFETY: valid pointers; an interrupted sleep just probes earlier.
    unsafe { libc::nanosleep(t, std::ptr::null_mut()) };
}
