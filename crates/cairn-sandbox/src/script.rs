//! The *script*: a plan lowered to precomputed C strings and simple
//! operations, ready for the child processes.
//!
//! Between `fork` and `exec` of a multi-threaded program only
//! async-signal-safe calls are allowed: no allocation, no locks. So every
//! string the child needs (paths, argv, envp, uid maps) and every decision
//! (which directories to create, what to bind where with which flags) is
//! made here, in the parent, and the child ([`crate::child`]) merely walks a
//! `Script` calling raw syscalls. Each [`Op`] can describe itself, so an
//! `errno` reported by the child becomes an error naming the mount.

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

/// A mount source after preparation: a host path (the original, or a private
/// copy for writable mounts) and whether it is a directory.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub target: std::path::PathBuf,
    pub host: std::path::PathBuf,
    pub is_dir: bool,
    pub writable: bool,
}

/// One root-filesystem operation, run by the sandbox's pid 1 before
/// `pivot_root`. Paths under the staging root are walked component by
/// component without following symlinks, so an input tree cannot redirect a
/// mount point onto the host.
#[derive(Debug)]
pub(crate) enum Op {
    /// `mount --make-rprivate /`: nothing propagates back to the host.
    MakePrivate,
    /// Mount a tmpfs at an absolute host-side path.
    Tmpfs {
        at: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    /// Create directories `root/components…` (existing ones are fine).
    MakeDirs { root: CString, dirs: Vec<CString> },
    /// Bind `source` (recursively) at `root/components…` with attributes.
    Bind {
        source: CString,
        root: CString,
        dirs: Vec<CString>,
        name: CString,
        file: bool,
        attrs: u64,
    },
    /// Create symlink `name -> target` in directory `root/dirs…`.
    Symlink {
        root: CString,
        dirs: Vec<CString>,
        name: CString,
        target: CString,
    },
    /// Mount a fresh procfs (of the new pid namespace).
    Proc { at: CString },
    /// `pivot_root` into `new_root` and detach the old root.
    PivotRoot { new_root: CString },
    /// Remount a tmpfs read-only (after `pivot_root`, sandbox path).
    RemountReadOnly { at: CString, flags: libc::c_ulong },
}

impl Op {
    /// Human description used in errors.
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CStr| c.to_string_lossy().into_owned();
        let join = |dirs: &[CString], name: Option<&CString>| {
            let mut p = String::new();
            for d in dirs.iter().chain(name) {
                p.push('/');
                p.push_str(&d.to_string_lossy());
            }
            if p.is_empty() {
                p.push('/');
            }
            p
        };
        match self {
            Op::MakePrivate => "make mounts private".into(),
            Op::Tmpfs { at, .. } => format!("mount tmpfs at {}", s(at)),
            Op::MakeDirs { dirs, .. } => format!("create directory {}", join(dirs, None)),
            Op::Bind {
                source, dirs, name, ..
            } => format!("bind {} at {}", s(source), join(dirs, Some(name))),
            Op::Symlink {
                dirs, name, target, ..
            } => format!("symlink {} -> {}", join(dirs, Some(name)), s(target)),
            Op::Proc { at } => format!("mount proc at {}", s(at)),
            Op::PivotRoot { new_root } => format!("pivot_root into {}", s(new_root)),
            Op::RemountReadOnly { at, .. } => format!("remount {} read-only", s(at)),
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
    fn new(strings: Vec<CString>) -> Self {
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

/// Everything the three child processes need, precomputed.
#[derive(Debug)]
pub(crate) struct Script {
    /// `cgroup.procs` files (fds >= 10, sorted) the outer process moves
    /// itself and pid 1 into.
    pub cgroup_procs: Vec<RawFd>,
    /// Write end of the status pipe; becomes fd 3 in the children.
    pub status_fd: RawFd,
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    pub ops: Vec<Op>,
    pub hostname: Vec<u8>,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    pub workdir: CString,
    /// Paths to try for `argv[0]`, in order (a `PATH` search done in advance).
    pub exec_candidates: Vec<CString>,
    pub argv: CArray,
    pub envp: CArray,
}

fn cstr(bytes: &[u8]) -> CString {
    // Plan validation rejected NUL bytes; host paths cannot contain them.
    CString::new(bytes).expect("validated: no NUL bytes")
}

fn cpath(p: &Path) -> CString {
    cstr(p.as_os_str().as_bytes())
}

/// Splits an absolute sandbox path into (parent components, last name).
fn split(target: &Path) -> (Vec<CString>, Option<CString>) {
    let mut parts: Vec<CString> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(cstr(n.as_bytes())),
            _ => None,
        })
        .collect();
    let last = parts.pop();
    (parts, last)
}

fn bind_op(root: &CString, target: &Path, src: &Source, attrs: u64) -> Op {
    let (dirs, name) = split(target);
    Op::Bind {
        source: cpath(&src.host),
        root: root.clone(),
        dirs,
        name: name.expect("bind targets are never /"),
        file: !src.is_dir,
        attrs,
    }
}

/// `nosuid,nodev`: every tmpfs and bind of the sandbox has at least these.
const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// Mount attributes of an input (or `/out`) bind.
fn input_attrs(writable: bool) -> u64 {
    ATTR_NOSUID | ATTR_NODEV | if writable { 0 } else { ATTR_RDONLY }
}

/// Mount options of a tmpfs with `mode`, size-limited if `size` is set.
fn tmpfs_data(mode: &str, size: Option<u64>) -> CString {
    let data = match size {
        Some(bytes) => format!("mode={mode},size={bytes}"),
        None => format!("mode={mode}"),
    };
    cstr(data.as_bytes())
}

/// Lowers the root-filesystem part of a plan to operations.
///
/// `root_entries` are the top-level entries of a mount at `/` (name, source,
/// symlink target if it is one); `sources` are the other mounts, parents first.
pub(crate) fn filesystem_ops(
    staging: &Path,
    root_entries: &[RootEntry],
    sources: &[Source],
    plan: &Plan,
) -> Vec<Op> {
    let root = cpath(staging);
    let mut ops = vec![
        Op::MakePrivate,
        Op::Tmpfs {
            at: root.clone(),
            flags: NOSUID_NODEV,
            data: tmpfs_data("0755", None),
        },
    ];
    ops.extend(root_entries.iter().map(|e| root_entry_op(&root, e)));
    if workdir_is_unmounted(plan, root_entries) {
        ops.extend(workdir_tmpfs_ops(staging, plan));
    }
    for src in sources {
        ops.push(bind_op(&root, &src.target, src, input_attrs(src.writable)));
    }
    let out = Source {
        target: "/out".into(),
        host: plan.out_dir.clone(),
        is_dir: true,
        writable: true,
    };
    ops.push(bind_op(&root, &out.target, &out, input_attrs(true)));
    ops.extend(system_dir_ops(staging, plan));
    let (mut dirs, last) = split(&plan.workdir);
    dirs.extend(last);
    ops.push(Op::MakeDirs {
        root: root.clone(),
        dirs,
    });
    ops.extend(finish_ops(root));
    ops
}

/// Binds (or recreates, for a symlink) one top-level entry of the `/` mount.
fn root_entry_op(root: &CString, (name, src, link): &RootEntry) -> Op {
    match link {
        Some(to) => Op::Symlink {
            root: root.clone(),
            dirs: vec![],
            name: cstr(name.as_bytes()),
            target: cpath(to),
        },
        None => bind_op(
            root,
            &Path::new("/").join(name),
            src,
            input_attrs(src.writable),
        ),
    }
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

/// Creates the workdir on the root tmpfs and mounts its own tmpfs there,
/// before any mount below it is bound. Every component of the path is a
/// directory this sandbox just created (nothing is mounted on it yet), so
/// the path-based mount cannot be redirected.
fn workdir_tmpfs_ops(staging: &Path, plan: &Plan) -> [Op; 2] {
    let (mut dirs, last) = split(&plan.workdir);
    dirs.extend(last);
    let relative = plan.workdir.strip_prefix("/").unwrap_or(&plan.workdir);
    [
        Op::MakeDirs {
            root: cpath(staging),
            dirs,
        },
        Op::Tmpfs {
            at: cpath(&staging.join(relative)),
            flags: NOSUID_NODEV,
            data: tmpfs_data("0755", plan.limits.tmp_bytes),
        },
    ]
}

/// `/tmp`, `/dev` (devices and fd links) and `/proc`.
fn system_dir_ops(staging: &Path, plan: &Plan) -> Vec<Op> {
    let root = cpath(staging);
    let data = |s: &str| cstr(s.as_bytes());
    let mut ops = vec![];
    let tmpfs = [
        ("tmp", tmpfs_data("1777", plan.limits.tmp_bytes)),
        ("dev", tmpfs_data("0755", None)),
    ];
    for (dir, options) in tmpfs {
        ops.push(Op::MakeDirs {
            root: root.clone(),
            dirs: vec![data(dir)],
        });
        ops.push(Op::Tmpfs {
            at: cpath(&staging.join(dir)),
            flags: NOSUID_NODEV | libc::MS_NOEXEC,
            data: options,
        });
    }
    for dev in DEVICES {
        let host = Source {
            target: Path::new("/dev").join(dev),
            host: Path::new("/dev").join(dev),
            is_dir: false,
            writable: true,
        };
        let attrs = ATTR_NOSUID | ATTR_NOEXEC;
        ops.push(bind_op(&root, &host.target, &host, attrs));
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, to) in links {
        ops.push(Op::Symlink {
            root: root.clone(),
            dirs: vec![data("dev")],
            name: data(name),
            target: data(to),
        });
    }
    ops.push(Op::MakeDirs {
        root,
        dirs: vec![data("proc")],
    });
    ops.push(Op::Proc {
        at: cpath(&staging.join("proc")),
    });
    ops
}

/// `pivot_root`, then `/dev` and the root tmpfs become read-only (the
/// workdir's own tmpfs, a separate mount, stays writable).
fn finish_ops(new_root: CString) -> [Op; 3] {
    [
        Op::PivotRoot { new_root },
        Op::RemountReadOnly {
            at: cstr(b"/dev"),
            flags: NOSUID_NODEV | libc::MS_NOEXEC,
        },
        Op::RemountReadOnly {
            at: cstr(b"/"),
            flags: NOSUID_NODEV,
        },
    ]
}

/// The process part: ids, hostname, limits, command line.
pub(crate) fn build(
    plan: &Plan,
    ops: Vec<Op>,
    cgroup_procs: Vec<RawFd>,
    status_fd: RawFd,
) -> Script {
    let map = |outside: u32| format!("{SANDBOX_ID} {outside} 1\n").into_bytes();
    let l = &plan.limits;
    let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
    for (res, v) in [
        (libc::RLIMIT_NOFILE, l.open_files),
        (libc::RLIMIT_CPU, l.cpu_seconds),
        (libc::RLIMIT_FSIZE, l.file_size_bytes),
    ] {
        if let Some(v) = v {
            rlimits.push((res, v));
        }
    }
    let argv0 = &plan.argv[0];
    let exec_candidates = if argv0.contains('/') {
        vec![cstr(argv0.as_bytes())]
    } else {
        let path = plan.env.get("PATH").map(String::as_str).unwrap_or("");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(format!("{}/{argv0}", d.trim_end_matches('/')).as_bytes()))
            .collect()
    };
    let mut cgroup_procs = cgroup_procs;
    cgroup_procs.sort_unstable();
    Script {
        cgroup_procs,
        status_fd,
        uid_map: map(rustix::process::geteuid().as_raw()),
        gid_map: map(rustix::process::getegid().as_raw()),
        ops,
        hostname: plan.hostname.as_bytes().to_vec(),
        rlimits,
        workdir: cpath(&plan.workdir),
        exec_candidates,
        argv: CArray::new(plan.argv.iter().map(|a| cstr(a.as_bytes())).collect()),
        envp: CArray::new(
            plan.env
                .iter()
                .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
                .collect(),
        ),
    }
}
