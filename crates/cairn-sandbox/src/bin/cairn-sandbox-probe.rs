//! A hostile build step, for the sandbox's tests: it tries what a step
//! must not be able to do, with raw system calls, and prints one line per
//! attempt, `<what>: <result>`, where the result is `ok` (or a value) or
//! the error's name, e.g. `keyctl: EPERM (Operation not permitted)`.
//!
//! `cairn-sandbox-probe syscalls` tries every refused call with harmless
//! arguments chosen so that, without the filter, most of them would *not*
//! fail with `EPERM`; `ptrace` traces its own child and then pid 1;
//! `i386` makes a 32-bit system call (the process should die of
//! `SIGSYS`); `keys` reads the keyrings it can reach; `stdout N` tries to
//! grow, truncate and seek its fd 1 (reporting on fd 2), then writes `N`
//! bytes to it; `crash segv|abort` tries to lower its core-dump limit to
//! 0 (which would start a `core_pattern` pipe handler), prints the limit,
//! and dies of `SIGSEGV` (a write to an unmapped page) or `SIGABRT`;
//! `abstract NAME` connects to the abstract unix socket `NAME`; `sockets
//! unix|tcp MIB` queues up to `MIB` MiB in socket buffers nobody reads
//! (unix socket pairs, or loopback TCP connections) and prints how much
//! it queued.

use std::ffi::CStr;
use std::io::Write;

fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::EFAULT => "EFAULT",
        libc::EBADF => "EBADF",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::ENOTTY => "ENOTTY",
        libc::ESRCH => "ESRCH",
        libc::ENOKEY => "ENOKEY",
        libc::ESPIPE => "ESPIPE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        _ => "E?",
    };
    format!("{name} ({})", std::io::Error::from_raw_os_error(e))
}

fn show(what: &str, ret: libc::c_long) {
    let result = if ret == -1 {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        format!("ok {ret}")
    };
    println!("{what}: {result}");
    let _ = std::io::stdout().flush();
}

/// Each refused call with arguments that would succeed, or fail with
/// something other than `EPERM`, were the call allowed.
fn syscalls() {
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const UFFD_USER_MODE_ONLY: libc::c_long = 1;
    const KCMP_FILE: libc::c_long = 0;
    let pid = unsafe { libc::getpid() } as libc::c_long;
    let mut buf = [0u8; 64];
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut params = [0u8; 120];
    let c = |s: &'static CStr| s.as_ptr();
    // SAFETY: every call gets valid pointers to live buffers or null where
    // the kernel accepts it; results are only printed.
    unsafe {
        use libc::syscall as sys;
        show(
            "keyctl",
            sys(
                libc::SYS_keyctl,
                KEYCTL_GET_KEYRING_ID,
                KEY_SPEC_SESSION_KEYRING,
                0,
            ),
        );
        show(
            "add_key",
            sys(
                libc::SYS_add_key,
                c(c"user"),
                c(c"probe"),
                c(c"x"),
                1,
                KEY_SPEC_SESSION_KEYRING,
            ),
        );
        show(
            "request_key",
            sys(libc::SYS_request_key, c(c"user"), c(c"none"), 0, 0),
        );
        show("bpf", sys(libc::SYS_bpf, 9999, 0, 0));
        show(
            "perf_event_open",
            sys(libc::SYS_perf_event_open, 0, 0, -1, -1, 0),
        );
        show(
            "userfaultfd",
            sys(libc::SYS_userfaultfd, UFFD_USER_MODE_ONLY),
        );
        show(
            "io_uring_setup",
            sys(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()),
        );
        show("clone3", sys(libc::SYS_clone3, 0, 0));
        // A child in a new user namespace exits at once.
        let r = sys(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long,
            0,
            0,
            0,
            0,
        );
        if r == 0 {
            libc::_exit(0);
        }
        show("clone(CLONE_NEWUSER)", r);
        show(
            "ioctl(TIOCSTI)",
            sys(libc::SYS_ioctl, 0, libc::TIOCSTI, c(c"x")),
        );
        show(
            "ioctl(TIOCSTI, high bits)",
            sys(libc::SYS_ioctl, 0, (1u64 << 32) | libc::TIOCSTI, c(c"x")),
        );
        show(
            "clock_settime",
            sys(libc::SYS_clock_settime, libc::CLOCK_REALTIME, 1),
        );
        show(
            "open_tree",
            sys(libc::SYS_open_tree, libc::AT_FDCWD, c(c"/"), 0),
        );
        show("setns", sys(libc::SYS_setns, -1, 0));
        show(
            "process_vm_readv",
            sys(
                libc::SYS_process_vm_readv,
                pid,
                &iov as *const _,
                1,
                &iov as *const _,
                1,
                0,
            ),
        );
        show("kcmp", sys(libc::SYS_kcmp, pid, pid, KCMP_FILE, 0, 0));
        show(
            "mount",
            sys(libc::SYS_mount, c(c"none"), c(c"/tmp"), c(c"tmpfs"), 0, 0),
        );
        show(
            "pivot_root",
            sys(libc::SYS_pivot_root, c(c"/tmp"), c(c"/tmp")),
        );
        show("fsopen", sys(libc::SYS_fsopen, c(c"tmpfs"), 0));
        show(
            "move_mount",
            sys(libc::SYS_move_mount, -1, c(c""), -1, c(c""), 0),
        );
        show("reboot", sys(libc::SYS_reboot, 0, 0, 0, 0));
        show("kexec_load", sys(libc::SYS_kexec_load, 0, 0, 0, 0));
        show("init_module", sys(libc::SYS_init_module, 0, 0, c(c"")));
        show("finit_module", sys(libc::SYS_finit_module, -1, c(c""), 0));
        show("swapon", sys(libc::SYS_swapon, c(c"/nonexistent"), 0));
        show("acct", sys(libc::SYS_acct, 0));
        show("settimeofday", sys(libc::SYS_settimeofday, 0, 0));
        show(
            "open_by_handle_at",
            sys(libc::SYS_open_by_handle_at, -1, 0, 0),
        );
        #[cfg(target_arch = "x86_64")]
        {
            show(
                "modify_ldt",
                sys(libc::SYS_modify_ldt, 0, buf.as_mut_ptr(), buf.len()),
            );
            show(
                "x32 keyctl",
                sys(
                    0x4000_0000 | libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_SESSION_KEYRING,
                    0,
                ),
            );
        }
        // Allowed: a control, so the probe shows it can make calls at all.
        show("getppid", sys(libc::SYS_getppid));
        // Last: without the filter it would succeed and change this process.
        show(
            "unshare(CLONE_NEWUSER)",
            sys(libc::SYS_unshare, libc::CLONE_NEWUSER),
        );
    }
}

/// Traces its own child (allowed), then tries to attach to pid 1.
fn ptrace() {
    // SAFETY: fork, then only async-signal-safe calls in the child.
    unsafe {
        let child = libc::fork();
        if child == 0 {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
            libc::_exit(7);
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        let stopped = libc::WIFSTOPPED(status);
        show(
            "ptrace(PTRACE_CONT, own child)",
            libc::ptrace(libc::PTRACE_CONT, child, 0, 0),
        );
        libc::waitpid(child, &mut status, 0);
        println!(
            "own child: stopped {stopped}, exit {}",
            libc::WEXITSTATUS(status)
        );
        show(
            "ptrace(PTRACE_ATTACH, 1)",
            libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0),
        );
        show(
            "ptrace(PTRACE_SEIZE, 1)",
            libc::ptrace(libc::PTRACE_SEIZE, 1, 0, 0),
        );
        show("kill(1, SIGKILL)", libc::kill(1, libc::SIGKILL).into());
    }
}

/// A 32-bit `getpid` through `int 0x80`.
fn i386() {
    println!("calling int 0x80");
    let _ = std::io::stdout().flush();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: i386 getpid (20) takes no arguments and touches no memory.
    unsafe {
        let mut ret: i64 = 20;
        std::arch::asm!("int 0x80", inout("rax") ret);
        println!("int 0x80 getpid returned {ret}");
    }
}

/// What fd 1 lets this process do besides writing, reported on fd 2;
/// then `count` bytes written to it.
fn stdout(count: usize) {
    let report = |what: &str, ret: libc::c_long| {
        let result = if ret == -1 {
            errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            format!("ok {ret}")
        };
        eprintln!("{what}: {result}");
    };
    // SAFETY: plain calls on fd 1 with integer arguments.
    unsafe {
        report(
            "fallocate(1, 1 GiB)",
            libc::fallocate(1, 0, 0, 1 << 30).into(),
        );
        let flags = libc::fcntl(1, libc::F_GETFL);
        libc::fcntl(1, libc::F_SETFL, flags & !libc::O_APPEND);
        let byte = b"x";
        report(
            "pwrite(1, at 1 TiB)",
            libc::pwrite(1, byte.as_ptr().cast(), 1, 1 << 40) as libc::c_long,
        );
        report("ftruncate(1, 0)", libc::ftruncate(1, 0).into());
        report("lseek(1, 0)", libc::lseek(1, 0, libc::SEEK_SET));
    }
    let chunk = [b'x'; 4096];
    let mut out = std::io::stdout().lock();
    let mut left = count;
    while left > 0 {
        let n = left.min(chunk.len());
        if out.write_all(&chunk[..n]).is_err() {
            return;
        }
        left -= n;
    }
    let _ = out.flush();
}

/// Tries every way to set the core-dump limit to 0, prints the limit it
/// has, then crashes as `how` says.
fn crash(how: &str) {
    const HIGH_BITS: libc::c_long = 1 << 32;
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let core = libc::RLIMIT_CORE as libc::c_long;
    let z = &zero as *const libc::rlimit;
    // SAFETY: valid pointers to a live `rlimit`, or null.
    unsafe {
        show(
            "setrlimit(CORE, 0)",
            libc::syscall(libc::SYS_setrlimit, core, z),
        );
        let high = core | HIGH_BITS;
        show(
            "setrlimit(CORE, high bits)",
            libc::syscall(libc::SYS_setrlimit, high, z),
        );
        let none = std::ptr::null::<libc::rlimit>();
        show(
            "prlimit64(0, CORE, 0)",
            libc::syscall(libc::SYS_prlimit64, 0, core, z, none),
        );
        let high = libc::syscall(libc::SYS_prlimit64, 0, core | HIGH_BITS, z, none);
        show("prlimit64(0, CORE high bits, 0)", high);
        let mut got = zero;
        let r = libc::syscall(libc::SYS_prlimit64, 0, core, none, &mut got);
        show("prlimit64(0, CORE, read)", r);
        println!("core limit: {} {}", got.rlim_cur, got.rlim_max);
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    let _ = std::io::stdout().flush();
    match how {
        // SAFETY: deliberately not: page 0 is never mapped, the write
        // faults.
        "segv" => unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u8>(8), 1) },
        _ => std::process::abort(),
    }
    std::process::exit(0);
}

/// Connects to the abstract unix socket `name` (a listener of the host's
/// network namespace, if the step shared it).
fn abstract_socket(name: &str) {
    use std::os::linux::net::SocketAddrExt;
    let result = std::os::unix::net::SocketAddr::from_abstract_name(name)
        .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a));
    match result {
        Ok(_) => println!("connect: ok"),
        Err(e) => println!("connect: {}", errno_name(e.raw_os_error().unwrap_or(0))),
    }
}

/// Queues `mib` MiB in the buffers of socket pairs whose other end never
/// reads, a pair at a time until a write would block; prints `queued: N`
/// (MiB) and how it stopped.
fn sockets(kind: &str, mib: usize) {
    use std::io::ErrorKind;
    use std::os::unix::net::UnixStream;
    let target = mib << 20;
    let chunk = vec![b'x'; 64 << 10];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().expect("its address");
    let mut held: Vec<(Box<dyn Write>, Box<dyn std::any::Any>)> = Vec::new();
    let mut queued = 0usize;
    let mut stop = String::from("target reached");
    'pairs: while queued < target {
        let pair: std::io::Result<(Box<dyn Write>, Box<dyn std::any::Any>)> = match kind {
            "unix" => UnixStream::pair().and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                Ok((
                    Box::new(a) as Box<dyn Write>,
                    Box::new(b) as Box<dyn std::any::Any>,
                ))
            }),
            _ => std::net::TcpStream::connect(addr).and_then(|a| {
                let (b, _) = listener.accept()?;
                a.set_nonblocking(true)?;
                Ok((
                    Box::new(a) as Box<dyn Write>,
                    Box::new(b) as Box<dyn std::any::Any>,
                ))
            }),
        };
        let (mut a, b) = match pair {
            Ok(p) => p,
            Err(e) => {
                stop = format!("pair: {e}");
                break;
            }
        };
        let before = queued;
        loop {
            match a.write(&chunk) {
                Ok(n) => queued += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock && queued == before => {
                    stop = "a new pair took nothing".into();
                    break 'pairs;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    stop = format!("write: {e}");
                    break 'pairs;
                }
            }
        }
        held.push((a, b));
    }
    println!("queued: {}", queued >> 20);
    println!("pairs: {}", held.len());
    println!("stopped: {stop}");
}

/// What keyrings this process can see.
fn keys() {
    match std::fs::read_to_string("/proc/keys") {
        Ok(text) => print!("/proc/keys:\n{text}"),
        Err(e) => println!("/proc/keys: {e}"),
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("syscalls") => syscalls(),
        Some("ptrace") => ptrace(),
        Some("i386") => i386(),
        Some("keys") => keys(),
        Some("abstract") => abstract_socket(&std::env::args().nth(2).unwrap_or_default()),
        Some("sockets") => sockets(
            &std::env::args().nth(2).unwrap_or_default(),
            std::env::args()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        ),
        Some("crash") => crash(std::env::args().nth(2).as_deref().unwrap_or("abort")),
        Some("stdout") => stdout(
            std::env::args()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        ),
        other => {
            eprintln!(
                "usage: cairn-sandbox-probe syscalls|ptrace|i386|keys|stdout|crash|abstract|sockets (got {other:?})"
            );
            std::process::exit(2);
        }
    }
}
