//! The *script*: a plan lowered to precomputed C strings and simple
//! operations, ready for the child processes.
//!
//! Between `fork` and `exec` of a multi-threaded program only
//! async-signal-safe calls are allowed: no allocation, no locks. So every
//! string the child needs (paths, argv, envp, id maps) and every decision
//! (which directories to create, what to bind where with which flags) is
//! made here, in the parent, and the child ([`crate::child`]) merely walks a
//! `Script` calling raw syscalls. Each [`Op`] can describe itself, so an
//! `errno` reported by the child becomes an error naming the mount.
//!
//! The root filesystem is built in two phases (see `child.rs`): while pid 1
//! still has the caller's host uid it clones every host source into a
//! detached mount ([`Clone`]); then, as the step's uid, it assembles the
//! root from those clones and fresh tmpfs mounts, every path walked from
//! the root's descriptor without following symlinks ([`Op`]).

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::RawFd;
use std::path::{Component, Path};

use crate::plan::{Plan, RESERVED, SANDBOX_ID};
use crate::prepare::RootEntry;

/// `mount_setattr` attribute bits (linux/mount.h).
pub(crate) const ATTR_RDONLY: u64 = 0x1;
pub(crate) const ATTR_NOSUID: u64 = 0x2;
pub(crate) const ATTR_NODEV: u64 = 0x4;
pub(crate) const ATTR_NOEXEC: u64 = 0x8;

/// Host device nodes bound into the sandbox's `/dev`.
pub(crate) const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// How many descriptors pid 1 sends back: `/out` and `/tmp`, in that
/// order (`Scratch`'s order).
pub(crate) const WATCHED: usize = 2;

/// A mount source after preparation: a host path (the original, or a private
/// copy for writable mounts) and whether it is a directory.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub target: std::path::PathBuf,
    pub host: std::path::PathBuf,
    pub is_dir: bool,
    pub writable: bool,
}

/// A host path pid 1 clones into a detached mount (with `attrs`) while it
/// can still reach it; [`Op::Attach`] later places the clone.
#[derive(Debug)]
pub(crate) struct Clone {
    pub source: CString,
    pub attrs: u64,
}

/// One root-filesystem operation, run by the sandbox's pid 1 as the
/// step's uid, on paths below the new root's descriptor (`dirs` are walked
/// one component at a time with `O_NOFOLLOW`, created if missing).
#[derive(Debug)]
pub(crate) enum Op {
    /// Create directories `dirs…` (existing ones are fine).
    MakeDirs { dirs: Vec<CString> },
    /// Place clone number `clone` at `dirs…/name`.
    Attach {
        clone: usize,
        dirs: Vec<CString>,
        name: CString,
        file: bool,
        /// For messages only.
        source: CString,
    },
    /// Create symlink `name -> target` in directory `dirs…`.
    Symlink {
        dirs: Vec<CString>,
        name: CString,
        target: CString,
    },
    /// Mount a tmpfs on `dirs…`.
    Tmpfs {
        dirs: Vec<CString>,
        flags: libc::c_ulong,
        data: CString,
    },
    /// Mount a fresh procfs (of the new pid namespace) on `dirs…`.
    Proc { dirs: Vec<CString> },
    /// Make the mount at `dirs…` read-only.
    ReadOnly { dirs: Vec<CString> },
}

fn show(dirs: &[CString], name: Option<&CString>) -> String {
    let mut p = String::new();
    for d in dirs.iter().chain(name) {
        p.push('/');
        p.push_str(&d.to_string_lossy());
    }
    if p.is_empty() {
        p.push('/');
    }
    p
}

impl Op {
    /// Human description used in errors.
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CStr| c.to_string_lossy().into_owned();
        match self {
            Op::MakeDirs { dirs } => format!("create directory {}", show(dirs, None)),
            Op::Attach {
                source, dirs, name, ..
            } => format!("bind {} at {}", s(source), show(dirs, Some(name))),
            Op::Symlink { dirs, name, target } => {
                format!("symlink {} -> {}", show(dirs, Some(name)), s(target))
            }
            Op::Tmpfs { dirs, .. } => format!("mount tmpfs at {}", show(dirs, None)),
            Op::Proc { dirs } => format!("mount proc at {}", show(dirs, None)),
            Op::ReadOnly { dirs } => format!("make {} read-only", show(dirs, None)),
        }
    }
}

/// A NULL-terminated array of C strings (argv or envp) that owns them.
#[derive(Debug)]
pub(crate) struct CArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: the pointers point into the heap buffers of `_strings`, owned by
// the same value and never mutated; moving the struct does not move them.
unsafe impl Send for CArray {}
// SAFETY: as above; the array is only ever read.
unsafe impl Sync for CArray {}

impl CArray {
    pub(crate) fn new(strings: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CArray {
            _strings: strings,
            ptrs,
        }
    }

    /// Pointer suitable for `execve`.
    pub(crate) fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The caller's memory that pid 1, a fork of the caller, wipes: its
/// command line and environment strings (`/proc/1/cmdline` is readable by
/// anyone in the namespace).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallerStrings {
    pub args: (usize, usize),
    pub env: (usize, usize),
}

impl CallerStrings {
    /// Reads the areas from `/proc/self/stat` (fields 48–51).
    pub(crate) fn of_this_process() -> CallerStrings {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name (field 2) may hold spaces and parentheses.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<usize> = rest
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        // `rest` starts at field 3.
        let field = |n: usize| f.get(n - 3).copied().unwrap_or(0);
        let area = |start: usize, end: usize| (start, end.saturating_sub(start));
        CallerStrings {
            args: area(field(48), field(49)),
            env: area(field(50), field(51)),
        }
    }
}

/// Everything the three child processes need, precomputed.
#[derive(Debug)]
pub(crate) struct Script {
    /// The cgroups' `tasks` files (fds >= 10, sorted) the outer process
    /// joins before it forks pid 1.
    pub cgroup_tasks: Vec<RawFd>,
    /// The status socket; becomes fd 3 in the children.
    pub status_fd: RawFd,
    /// The calling process: the outer process's parent.
    pub caller_pid: libc::pid_t,
    /// Running as root: drop supplementary groups before the namespaces.
    pub clear_groups: bool,
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    pub caller: CallerStrings,
    /// The host directory the root tmpfs is mounted on.
    pub staging: CString,
    pub root_data: CString,
    pub clones: Vec<Clone>,
    /// Filled by pid 1: the clones' descriptors (preallocated, one per clone).
    pub clone_fds: Vec<RawFd>,
    pub ops: Vec<Op>,
    pub hostname: Vec<u8>,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    pub workdir: CString,
    /// The step's command.
    pub program: Program,
    /// Owns the stack the step and the services run on until `execve`
    /// (see `child::spawn`); only ever used through `spawn_stack_top`.
    pub _spawn_stack: Vec<u8>,
    /// The address just past `spawn_stack`, taken while it was owned.
    pub spawn_stack_top: usize,
    /// The services, started before the command, in order.
    pub services: Vec<crate::ready::ScriptService>,
    /// The system-call filter (`filter.rs`).
    pub filter: &'static [libc::sock_filter],
    /// The emulator's binfmt_misc registration line, if the step has one.
    pub binfmt: Option<Vec<u8>>,
}

/// The line that registers `e` with binfmt_misc: every magic and mask byte
/// escaped (so none is taken for the `:` separator), the `F` flag (the
/// interpreter is opened now, inside the sandbox).
pub(crate) fn binfmt_line(e: &crate::plan::Emulator) -> Vec<u8> {
    use std::fmt::Write;
    let hex = |bytes: &[u8]| {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "\\x{b:02x}");
            s
        })
    };
    format!(
        ":{}:M::{}:{}:{}:F",
        e.name,
        hex(&e.magic),
        hex(&e.mask),
        e.interpreter.display()
    )
    .into_bytes()
}

/// A command ready for `execve`: the step's, a service's or an exec probe's.
#[derive(Debug)]
pub(crate) struct Program {
    /// Paths to try for `argv[0]`, in order (a `PATH` search done in advance).
    pub exec_candidates: Vec<CString>,
    pub argv: CArray,
    pub envp: CArray,
}

impl Program {
    /// Lowers `argv` (non-empty, validated) run with exactly `env`.
    pub(crate) fn new(argv: &[String], env: &std::collections::BTreeMap<String, String>) -> Self {
        let argv0 = &argv[0];
        let exec_candidates = if argv0.contains('/') {
            vec![cstr(argv0.as_bytes())]
        } else {
            let path = env.get("PATH").map(String::as_str).unwrap_or("");
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstr(format!("{}/{argv0}", d.trim_end_matches('/')).as_bytes()))
                .collect()
        };
        Program {
            exec_candidates,
            argv: CArray::new(argv.iter().map(|a| cstr(a.as_bytes())).collect()),
            envp: CArray::new(
                env.iter()
                    .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
                    .collect(),
            ),
        }
    }
}

pub(crate) fn cstr(bytes: &[u8]) -> CString {
    // Plan validation rejected NUL bytes; host paths cannot contain them.
    CString::new(bytes).expect("validated: no NUL bytes")
}

fn cpath(p: &Path) -> CString {
    cstr(p.as_os_str().as_bytes())
}

/// The components of an absolute sandbox path.
fn parts(target: &Path) -> Vec<CString> {
    target
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(cstr(n.as_bytes())),
            _ => None,
        })
        .collect()
}

/// `nosuid,nodev`: every tmpfs and bind of the sandbox has at least these.
const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// Mount attributes of an input bind.
fn input_attrs(writable: bool) -> u64 {
    ATTR_NOSUID | ATTR_NODEV | if writable { 0 } else { ATTR_RDONLY }
}

/// Options of a tmpfs with `mode`, owned by the step, size-limited if
/// `size` is set.
fn tmpfs_data(mode: &str, size: Option<u64>) -> CString {
    let owner = format!("mode={mode},uid={SANDBOX_ID},gid={SANDBOX_ID}");
    let data = match size {
        Some(bytes) => format!("{owner},size={bytes}"),
        None => owner,
    };
    cstr(data.as_bytes())
}

/// The clones and operations that build the root filesystem.
struct Builder {
    clones: Vec<Clone>,
    ops: Vec<Op>,
}

impl Builder {
    fn bind(&mut self, target: &Path, host: &Path, file: bool, attrs: u64) {
        let mut dirs = parts(target);
        let name = dirs.pop().expect("bind targets are never /");
        self.clones.push(Clone {
            source: cpath(host),
            attrs,
        });
        self.ops.push(Op::Attach {
            clone: self.clones.len() - 1,
            dirs,
            name,
            file,
            source: cpath(host),
        });
    }

    fn tmpfs(&mut self, at: &Path, flags: libc::c_ulong, data: CString) {
        self.ops.push(Op::MakeDirs { dirs: parts(at) });
        self.ops.push(Op::Tmpfs {
            dirs: parts(at),
            flags,
            data,
        });
    }
}

/// Lowers the root-filesystem part of a plan to clones and operations.
///
/// `root_entries` are the top-level entries of a mount at `/` (name, source,
/// symlink target if it is one); `sources` are the other mounts, parents first.
pub(crate) fn filesystem(
    root_entries: &[RootEntry],
    sources: &[Source],
    plan: &Plan,
    staging: &Path,
) -> (Vec<Clone>, Vec<Op>) {
    let mut b = Builder {
        clones: vec![],
        ops: vec![],
    };
    for (name, src, link) in root_entries {
        match link {
            Some(to) => b.ops.push(Op::Symlink {
                dirs: vec![],
                name: cstr(name.as_bytes()),
                target: cpath(to),
            }),
            None => b.bind(
                &Path::new("/").join(name),
                &src.host,
                !src.is_dir,
                input_attrs(src.writable),
            ),
        }
    }
    if workdir_is_unmounted(plan, root_entries) {
        let data = tmpfs_data("0755", plan.limits.tmp_bytes);
        b.tmpfs(&plan.workdir, NOSUID_NODEV, data);
    }
    for src in sources {
        b.bind(
            &src.target,
            &src.host,
            !src.is_dir,
            input_attrs(src.writable),
        );
    }
    system_dirs(&mut b, plan);
    // Files of the fresh /proc that are the host's (`masks.rs`).
    for (target, host) in crate::masks::masks(staging) {
        b.bind(
            target,
            &host,
            true,
            ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
        );
    }
    b.ops.push(Op::MakeDirs {
        dirs: parts(&plan.workdir),
    });
    b.ops.push(Op::ReadOnly { dirs: vec![] });
    (b.clones, b.ops)
}

/// Whether the workdir lies outside every mount: not `/`, not under `/out`,
/// `/tmp`…, not under a mount target nor a top-level entry of the `/` mount.
/// Such a workdir gets a private writable tmpfs; inside a mount, the mount
/// decides whether it is writable.
fn workdir_is_unmounted(plan: &Plan, root_entries: &[RootEntry]) -> bool {
    let w = &plan.workdir;
    let Some(Component::Normal(first)) = w.components().nth(1) else {
        return false;
    };
    let in_root_entry = root_entries.iter().any(|(name, ..)| name == first);
    let in_mount = plan
        .mounts
        .iter()
        .any(|m| m.target != Path::new("/") && w.starts_with(&m.target));
    let reserved = RESERVED.iter().any(|r| w.starts_with(r));
    !(in_root_entry || in_mount || reserved)
}

/// `/out`, `/tmp`, `/dev` (devices and fd links) and `/proc`.
fn system_dirs(b: &mut Builder, plan: &Plan) {
    let data = |s: &str| cstr(s.as_bytes());
    let l = &plan.limits;
    // Its inodes bounded too: each entry costs the caller memory and time
    // when `/out` is stored, which the tmpfs size (bytes) never counts.
    let mut out = tmpfs_data("0755", l.out_bytes).into_bytes();
    if let Some(files) = l.out_files {
        // The root directory is an inode of its own.
        out.extend(format!(",nr_inodes={}", files.saturating_add(1)).bytes());
    }
    b.tmpfs(Path::new("/out"), NOSUID_NODEV, cstr(&out));
    // `/tmp` may hold programs, as `/out` and a tmpfs workdir may: test
    // runners build a binary there and execute it (`go test`, as in Nix's
    // build directory). `noexec` would only break them: the step can write
    // and run a program in `/out` anyway. `nosuid` is what matters and stays.
    b.tmpfs(
        Path::new("/tmp"),
        NOSUID_NODEV,
        tmpfs_data("1777", l.tmp_bytes),
    );
    let noexec = NOSUID_NODEV | libc::MS_NOEXEC;
    b.tmpfs(
        Path::new("/dev"),
        noexec,
        tmpfs_data("0755", Some(64 << 10)),
    );
    for dev in DEVICES {
        let host = Path::new("/dev").join(dev);
        b.bind(&host, &host, true, ATTR_NOSUID | ATTR_NOEXEC);
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, to) in links {
        b.ops.push(Op::Symlink {
            dirs: vec![data("dev")],
            name: data(name),
            target: data(to),
        });
    }
    b.ops.push(Op::ReadOnly {
        dirs: vec![data("dev")],
    });
    b.ops.push(Op::MakeDirs {
        dirs: vec![data("proc")],
    });
    b.ops.push(Op::Proc {
        dirs: vec![data("proc")],
    });
}

/// Limits every step gets whatever the plan says, so that nothing of the
/// caller's own limits reaches it: no core dumps, a bounded locked-memory
/// and message-queue allowance, no real-time priority.
///
/// The core limit is 1 byte, not 0: for a `kernel.core_pattern` that is a
/// pipe the kernel ignores the limit, except 1, which it keeps to stop a
/// crashing dump handler from starting another, and answers by dumping
/// nothing. With 0, every crash in a step would start the host's handler
/// (`systemd-coredump`, apport) as root. One byte is also too small for a
/// core file. The filter refuses any change of it (`filter/refused.rs`).
const FIXED_RLIMITS: [(libc::__rlimit_resource_t, u64); 5] = [
    (libc::RLIMIT_CORE, 1),
    (libc::RLIMIT_MEMLOCK, 8 << 20),
    (libc::RLIMIT_MSGQUEUE, 800 << 10),
    (libc::RLIMIT_RTPRIO, 0),
    (libc::RLIMIT_NICE, 0),
];

/// Bytes of the stack the step and the services run on between their
/// `clone` and `execve` (a few raw system calls; generous, and only
/// touched pages cost).
const SPAWN_STACK: usize = 256 << 10;

/// The process part: ids, hostname, limits, command line.
pub(crate) struct Process<'a> {
    pub plan: &'a Plan,
    pub staging: &'a Path,
    pub clones: Vec<Clone>,
    pub ops: Vec<Op>,
    pub cgroup_tasks: Vec<RawFd>,
    pub status_fd: RawFd,
    pub host_ids: (u32, u32),
    /// The host id the namespace's root maps to, for a step whose
    /// emulator is registered with the sandbox's binfmt_misc.
    pub ns_root: Option<u32>,
    pub clear_groups: bool,
}

/// Lowers everything into a [`Script`].
pub(crate) fn build(p: Process<'_>) -> Script {
    let plan = p.plan;
    // With an emulator and an id for the namespace's root, that one is
    // mapped too (binfmt_misc's files are the namespace root's).
    let ns_root = p.ns_root.filter(|_| plan.emulator.is_some());
    let map = |outside: u32| {
        let root = ns_root.map_or(String::new(), |r| format!("0 {r} 1\n"));
        format!("{root}{SANDBOX_ID} {outside} 1\n").into_bytes()
    };
    let l = &plan.limits;
    let hard = |res| {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `r` is a valid out-pointer.
        unsafe { libc::getrlimit(res, &mut r) };
        r.rlim_max
    };
    // A step may only lower a limit: a fixed one is capped by ours, an
    // unset one is our hard limit (soft and hard alike).
    let mut rlimits: Vec<_> = FIXED_RLIMITS
        .iter()
        .map(|&(res, v)| (res, v.min(hard(res))))
        .collect();
    for (res, v) in [
        (libc::RLIMIT_NOFILE, l.open_files),
        (libc::RLIMIT_CPU, l.cpu_seconds),
        (libc::RLIMIT_FSIZE, l.file_size_bytes),
    ] {
        rlimits.push((res, v.unwrap_or_else(|| hard(res))));
    }
    let mut spawn_stack = vec![0; SPAWN_STACK];
    let mut cgroup_tasks = p.cgroup_tasks;
    cgroup_tasks.sort_unstable();
    Script {
        cgroup_tasks,
        status_fd: p.status_fd,
        caller_pid: std::process::id() as libc::pid_t,
        clear_groups: p.clear_groups,
        uid_map: map(p.host_ids.0),
        gid_map: map(p.host_ids.1),
        caller: CallerStrings::of_this_process(),
        staging: cpath(p.staging),
        root_data: tmpfs_data("0755", Some(1 << 20)),
        clone_fds: vec![-1; p.clones.len()],
        clones: p.clones,
        ops: p.ops,
        hostname: plan.hostname.as_bytes().to_vec(),
        rlimits,
        workdir: cpath(&plan.workdir),
        program: Program::new(&plan.argv, &plan.env),
        spawn_stack_top: spawn_stack.as_mut_ptr_range().end as usize,
        _spawn_stack: spawn_stack,
        services: plan
            .services
            .iter()
            .map(crate::ready::ScriptService::new)
            .collect(),
        filter: crate::filter::program(),
        binfmt: plan
            .emulator
            .as_ref()
            .filter(|_| ns_root.is_some())
            .map(binfmt_line),
    }
}
