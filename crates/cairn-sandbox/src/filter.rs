//! The system-call filter every step runs under: seccomp-bpf programs
//! compiled once per process with `seccompiler`, installed by the step
//! just before `execve` (after `no_new_privs`), inherited by everything it
//! starts.
//!
//! It is a deny list, as Nix's and Flatpak's are, of what a build never
//! needs and what widens the kernel's attack surface (the calls Docker's
//! default profile refuses an unprivileged container, plus the newer mount
//! API, io_uring and keyrings). A deny list keeps the filter short, so
//! the kernel's per-filter action cache answers every call that is not on
//! it without running the program at all; only the few calls with an
//! argument rule (`clone`, `unshare`, `ioctl`) run it.
//!
//! * Refused calls return `EPERM`, except `clone3` and the `io_uring`
//!   calls, which return `ENOSYS`: glibc falls back from `clone3` to
//!   `clone` (whose flags the filter can read) and io_uring users fall
//!   back to plain system calls only on "not implemented".
//! * `clone` and `unshare` are refused only with `CLONE_NEWUSER`: a new
//!   user namespace is the one way an unprivileged step could regain
//!   capabilities; every other namespace needs one.
//! * `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)` (typing into a terminal) are
//!   refused whatever the file descriptor; the command compared is the
//!   low 32 bits the kernel uses.
//! * `ptrace` is allowed: in its own pid namespace a step reaches only its
//!   own processes (pid 1 is not dumpable, so not traceable), and
//!   sanitizers, debuggers and `strace` need it. Since Linux 4.8 a tracer
//!   cannot change a system call past the filter.
//! * Other architectures' calls (i386 `int 0x80`) kill the process
//!   (`SIGSYS`): the filter checks the architecture first. x32 calls (the
//!   native architecture with bit 30 set in the number) on kernels that
//!   have that ABI are refused by mirroring every rule with the x32 bit and
//!   x32's own numbers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// When a listed call is refused.
#[derive(Debug, Clone, Copy)]
enum When {
    /// Always.
    Always,
    /// When argument `arg` has `bit` set.
    FlagSet(u8, u64),
    /// When the low 32 bits of argument `arg` equal one of the values.
    Dword(u8, &'static [u64]),
}

/// One refused call: its name, number, what it returns and when.
#[derive(Debug, Clone, Copy)]
struct Refused {
    name: &'static str,
    nr: i64,
    errno: i32,
    when: When,
}

// The libc constants' types differ between targets (`c_long`, `Ioctl`);
// the casts are no-ops only on some.
#[allow(clippy::unnecessary_cast)]
const fn always(name: &'static str, nr: libc::c_long) -> Refused {
    Refused {
        name,
        nr: nr as i64,
        errno: libc::EPERM,
        when: When::Always,
    }
}

#[allow(clippy::unnecessary_cast)]
const fn enosys(name: &'static str, nr: libc::c_long) -> Refused {
    Refused {
        name,
        nr: nr as i64,
        errno: libc::ENOSYS,
        when: When::Always,
    }
}

#[allow(clippy::unnecessary_cast)]
const fn only(name: &'static str, nr: libc::c_long, when: When) -> Refused {
    Refused {
        name,
        nr: nr as i64,
        errno: libc::EPERM,
        when,
    }
}

#[allow(clippy::unnecessary_cast)]
const TERMINAL_IOCTLS: &[u64] = &[libc::TIOCSTI as u64, libc::TIOCLINUX as u64];
const NEW_USER_NS: When = When::FlagSet(0, libc::CLONE_NEWUSER as u64);

/// Every refused call, on every architecture.
const COMMON: &[Refused] = &[
    // Kernel keyrings: a step gets a fresh, empty session keyring and no
    // way to reach any other.
    always("keyctl", libc::SYS_keyctl),
    always("add_key", libc::SYS_add_key),
    always("request_key", libc::SYS_request_key),
    // Kernel attack surface a build never needs.
    always("bpf", libc::SYS_bpf),
    always("perf_event_open", libc::SYS_perf_event_open),
    always("userfaultfd", libc::SYS_userfaultfd),
    enosys("io_uring_setup", libc::SYS_io_uring_setup),
    enosys("io_uring_enter", libc::SYS_io_uring_enter),
    enosys("io_uring_register", libc::SYS_io_uring_register),
    // The machine itself.
    always("kexec_load", libc::SYS_kexec_load),
    always("kexec_file_load", libc::SYS_kexec_file_load),
    always("init_module", libc::SYS_init_module),
    always("finit_module", libc::SYS_finit_module),
    always("delete_module", libc::SYS_delete_module),
    always("reboot", libc::SYS_reboot),
    always("swapon", libc::SYS_swapon),
    always("swapoff", libc::SYS_swapoff),
    always("acct", libc::SYS_acct),
    always("settimeofday", libc::SYS_settimeofday),
    always("clock_settime", libc::SYS_clock_settime),
    always("clock_adjtime", libc::SYS_clock_adjtime),
    always("quotactl", libc::SYS_quotactl),
    always("syslog", libc::SYS_syslog),
    always("vhangup", libc::SYS_vhangup),
    always("fanotify_init", libc::SYS_fanotify_init),
    // Mounts: the sandbox's are made before the step starts.
    always("mount", libc::SYS_mount),
    always("umount2", libc::SYS_umount2),
    always("pivot_root", libc::SYS_pivot_root),
    always("open_tree", libc::SYS_open_tree),
    always("move_mount", libc::SYS_move_mount),
    always("fsopen", libc::SYS_fsopen),
    always("fsconfig", libc::SYS_fsconfig),
    always("fsmount", libc::SYS_fsmount),
    always("fspick", libc::SYS_fspick),
    always("mount_setattr", libc::SYS_mount_setattr),
    // Namespaces and other processes.
    always("setns", libc::SYS_setns),
    only("unshare", libc::SYS_unshare, NEW_USER_NS),
    only("clone", libc::SYS_clone, NEW_USER_NS),
    enosys("clone3", libc::SYS_clone3),
    always("process_vm_readv", libc::SYS_process_vm_readv),
    always("process_vm_writev", libc::SYS_process_vm_writev),
    always("kcmp", libc::SYS_kcmp),
    always("open_by_handle_at", libc::SYS_open_by_handle_at),
    // Typing into a terminal.
    only("ioctl", libc::SYS_ioctl, When::Dword(1, TERMINAL_IOCTLS)),
];

/// Refused calls only x86-64 has.
#[cfg(target_arch = "x86_64")]
const ARCH: &[Refused] = &[
    always("iopl", libc::SYS_iopl),
    always("ioperm", libc::SYS_ioperm),
    always("modify_ldt", libc::SYS_modify_ldt),
    always("uselib", libc::SYS_uselib),
    always("ustat", libc::SYS_ustat),
    always("sysfs", libc::SYS_sysfs),
    always("_sysctl", libc::SYS__sysctl),
    always("lookup_dcookie", libc::SYS_lookup_dcookie),
    always("nfsservctl", libc::SYS_nfsservctl),
];

#[cfg(not(target_arch = "x86_64"))]
const ARCH: &[Refused] = &[];

/// The x32 ABI's bit in a system call number.
#[cfg(target_arch = "x86_64")]
const X32_BIT: i64 = 0x4000_0000;

/// x32's own numbers for refused calls whose x86-64 number is 64-bit only.
#[cfg(target_arch = "x86_64")]
const X32_ONLY: &[Refused] = &[
    only("ioctl", 514, When::Dword(1, TERMINAL_IOCTLS)),
    always("kexec_load", 528),
    always("process_vm_readv", 539),
    always("process_vm_writev", 540),
];

/// Every refused call of this architecture, x32's included.
fn refused() -> Vec<Refused> {
    let mut all: Vec<Refused> = COMMON.iter().chain(ARCH).copied().collect();
    #[cfg(target_arch = "x86_64")]
    {
        let mirrored: Vec<Refused> = all
            .iter()
            .map(|r| Refused {
                nr: r.nr | X32_BIT,
                ..*r
            })
            .chain(X32_ONLY.iter().map(|r| Refused {
                nr: r.nr | X32_BIT,
                ..*r
            }))
            .collect();
        all.extend(mirrored);
    }
    all
}

/// The names of the calls a step may not make (some only with certain
/// arguments), sorted, without repeats.
pub fn refused_calls() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = refused().iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn rules(when: When) -> Vec<SeccompRule> {
    let cond = |arg, len, op, value| {
        SeccompCondition::new(arg, len, op, value).expect("argument index below 6")
    };
    let rule = |c| SeccompRule::new(vec![c]).expect("one condition");
    match when {
        When::Always => vec![],
        When::FlagSet(arg, bit) => vec![rule(cond(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(bit),
            bit,
        ))],
        When::Dword(arg, values) => values
            .iter()
            .map(|v| rule(cond(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *v)))
            .collect(),
    }
}

/// One program refusing every listed call that returns `errno`.
fn program(errno: i32) -> BpfProgram {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for r in refused().into_iter().filter(|r| r.errno == errno) {
        map.entry(r.nr).or_default().extend(rules(r.when));
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .expect("seccompiler supports this architecture");
    let filter = SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .expect("distinct actions");
    filter.try_into().expect("the filter fits in a BPF program")
}

/// The programs a step installs, in order (compiled once per process).
pub(crate) fn programs() -> &'static [BpfProgram] {
    static PROGRAMS: OnceLock<Vec<BpfProgram>> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let start = std::time::Instant::now();
        let programs = vec![program(libc::EPERM), program(libc::ENOSYS)];
        tracing::debug!(
            micros = start.elapsed().as_micros() as u64,
            instructions = programs.iter().map(Vec::len).sum::<usize>(),
            "system-call filter compiled"
        );
        programs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_compile_and_list_the_issue_s_calls() {
        assert_eq!(programs().len(), 2);
        let names = refused_calls();
        for call in [
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "kexec_load",
            "init_module",
            "finit_module",
            "reboot",
            "swapon",
            "settimeofday",
            "clock_settime",
            "acct",
            "mount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "fsopen",
            "unshare",
            "clone",
            "clone3",
        ] {
            assert!(names.contains(&call), "{call} is not refused");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_rule_is_mirrored_for_x32() {
        let all = refused();
        for r in COMMON.iter().chain(ARCH) {
            assert!(all
                .iter()
                .any(|m| m.nr == r.nr | X32_BIT && m.name == r.name));
        }
        assert!(
            !all.iter().any(|m| m.nr == 521 | X32_BIT),
            "ptrace stays allowed"
        );
    }
}
