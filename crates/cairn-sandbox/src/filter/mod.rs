//! The system-call filter every step runs under: one seccomp-bpf program,
//! compiled from the list in `refused.rs` by `build.rs` with libseccomp,
//! installed by the step just before `execve` (after `no_new_privs`),
//! inherited by everything it starts.
//!
//! It is a deny list, as Nix's and Flatpak's are, of what a build never
//! needs and what widens the kernel's attack surface (the calls Docker's
//! default profile refuses an unprivileged container, plus the newer mount
//! API, io_uring and keyrings). libseccomp lays the program out as a
//! binary tree of call numbers, so installing it is cheap (the kernel
//! precomputes, for every call number, whether the filter always allows
//! it; a linear program made that pass cost 0.4 ms a step), and the calls
//! not on the list never run it at all. Only the few calls with an
//! argument rule (`clone`, `unshare`, `ioctl`, `setrlimit`, `prlimit64`)
//! do.
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
//! * `setrlimit` and `prlimit64` may not set `RLIMIT_CORE` (reading it
//!   stays allowed): the step's core limit is 1 byte, the value for which
//!   the kernel starts no `core_pattern` pipe handler; lowering it to 0
//!   would start the host's handler (as root) for every crash.
//! * `ptrace` is allowed: in its own pid namespace a step reaches only its
//!   own processes (pid 1 is not dumpable, so not traceable), and
//!   sanitizers, debuggers and `strace` need it. Since Linux 4.8 a tracer
//!   cannot change a system call past the filter.
//! * Other architectures' calls (i386 `int 0x80`) kill the process
//!   (`SIGSYS`): the program checks the architecture first. x32 calls (the
//!   native architecture with bit 30 set in the number) are filtered by
//!   x32's own numbers, with the same rules.

// `build.rs` reads every field; the crate reads only the names.
#[allow(dead_code)]
mod refused;

pub(crate) use refused::REFUSED;

include!(concat!(env!("OUT_DIR"), "/filter.rs"));

/// The names of the calls a step may not make (some only with certain
/// arguments), sorted, without repeats. Calls the architecture lacks
/// (`iopl` beyond x86) are listed too: there is nothing of theirs to make.
pub fn refused_calls() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = REFUSED.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The program a step installs.
pub(crate) fn program() -> &'static [libc::sock_filter] {
    PROGRAM
}

#[cfg(test)]
mod tests {
    use super::refused::{Refusal, When, CLONE_NEWUSER, RLIMIT_CORE, TERMINAL_IOCTLS};
    use super::*;

    #[test]
    fn the_list_names_the_issue_s_calls() {
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
            "setrlimit",
            "prlimit64",
        ] {
            assert!(names.contains(&call), "{call} is not refused");
        }
        assert!(!names.contains(&"ptrace"), "ptrace stays allowed");
    }

    /// The list spells constants out (the build script cannot read the
    /// target's `libc`); they must be the target's.
    #[test]
    #[allow(clippy::unnecessary_cast)] // the constants' types differ between targets
    fn the_list_s_constants_are_this_target_s() {
        assert_eq!(CLONE_NEWUSER, libc::CLONE_NEWUSER as u64);
        assert_eq!(
            TERMINAL_IOCTLS,
            [libc::TIOCSTI as u64, libc::TIOCLINUX as u64]
        );
        assert_eq!(RLIMIT_CORE, libc::RLIMIT_CORE as u64);
        assert_eq!((libc::EPERM, libc::ENOSYS), (1, 38), "build.rs's errnos");
        let enosys: Vec<&str> = REFUSED
            .iter()
            .filter(|r| r.refusal == Refusal::Enosys)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            enosys,
            [
                "io_uring_setup",
                "io_uring_enter",
                "io_uring_register",
                "clone3"
            ]
        );
        assert!(REFUSED
            .iter()
            .any(|r| r.name == "clone" && r.when == When::FlagSet(0, CLONE_NEWUSER)));
    }

    /// A tree, not a chain: far fewer instructions than the two linear
    /// programs' 605, checked first for the architecture.
    #[test]
    fn the_program_is_short_and_checks_the_architecture_first() {
        let p = program();
        assert!(p.len() < 300, "{} instructions", p.len());
        // `ld [4]`: the architecture field of `seccomp_data`.
        assert_eq!((p[0].code, p[0].k), (0x20, 4));
    }
}
