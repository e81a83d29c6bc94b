// The calls a step may not make, as plain data: no imports, no
// dependencies. Both `build.rs` (which compiles the list into the filter
// with libseccomp, for the target's architecture) and the crate (which
// names the calls) read this one file, by `include!`, so the filter and
// its documentation cannot drift apart.

/// What a refused call returns to the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `EPERM`: not permitted.
    Eperm,
    /// `ENOSYS`: not implemented, so that callers fall back (glibc from
    /// `clone3` to `clone`, io_uring users to plain calls).
    Enosys,
}

/// When a listed call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// When argument `.0` has the bits `.1` set.
    FlagSet(u32, u64),
    /// When the low 32 bits of argument `.0` equal one of the values (the
    /// bits the kernel reads of an `ioctl` command).
    LowDword(u32, &'static [u64]),
    /// When the low 32 bits of argument `.0` (the resource the kernel
    /// reads) equal `.1` and, if `.2` names an argument, that one is not
    /// zero (a limit to set, not only one to read).
    Resource(u32, u64, Option<u32>),
}

/// One refused call.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// Its name, as libseccomp and the manual pages spell it.
    pub name: &'static str,
    /// What it returns.
    pub refusal: Refusal,
    /// When.
    pub when: When,
}

/// `CLONE_NEWUSER`, the same on every architecture.
pub const CLONE_NEWUSER: u64 = 0x1000_0000;
/// `TIOCSTI` and `TIOCLINUX` (typing into a terminal), the same on every
/// architecture cairn builds for (asm-generic's values).
pub const TERMINAL_IOCTLS: &[u64] = &[0x5412, 0x541C];
/// `RLIMIT_CORE`, the same on every architecture cairn builds for.
pub const RLIMIT_CORE: u64 = 4;

const fn always(name: &'static str) -> Refused {
    Refused {
        name,
        refusal: Refusal::Eperm,
        when: When::Always,
    }
}

const fn enosys(name: &'static str) -> Refused {
    Refused {
        name,
        refusal: Refusal::Enosys,
        when: When::Always,
    }
}

const fn only(name: &'static str, when: When) -> Refused {
    Refused {
        name,
        refusal: Refusal::Eperm,
        when,
    }
}

const NEW_USER_NS: When = When::FlagSet(0, CLONE_NEWUSER);

/// Every refused call. A name an architecture lacks (`iopl` beyond x86)
/// is left out of that architecture's filter.
pub const REFUSED: &[Refused] = &[
    // Kernel keyrings: a step gets a fresh, empty session keyring and no
    // way to reach any other.
    always("keyctl"),
    always("add_key"),
    always("request_key"),
    // Kernel attack surface a build never needs.
    always("bpf"),
    always("perf_event_open"),
    always("userfaultfd"),
    enosys("io_uring_setup"),
    enosys("io_uring_enter"),
    enosys("io_uring_register"),
    // The machine itself.
    always("kexec_load"),
    always("kexec_file_load"),
    always("init_module"),
    always("finit_module"),
    always("delete_module"),
    always("reboot"),
    always("swapon"),
    always("swapoff"),
    always("acct"),
    always("settimeofday"),
    always("clock_settime"),
    always("clock_adjtime"),
    always("quotactl"),
    always("syslog"),
    always("vhangup"),
    always("fanotify_init"),
    // Mounts: the sandbox's are made before the step starts.
    always("mount"),
    always("umount2"),
    always("pivot_root"),
    always("open_tree"),
    always("move_mount"),
    always("fsopen"),
    always("fsconfig"),
    always("fsmount"),
    always("fspick"),
    always("mount_setattr"),
    // Namespaces and other processes.
    always("setns"),
    only("unshare", NEW_USER_NS),
    only("clone", NEW_USER_NS),
    enosys("clone3"),
    always("process_vm_readv"),
    always("process_vm_writev"),
    always("kcmp"),
    always("open_by_handle_at"),
    // The core-dump limit: the step's is 1 byte, which the kernel takes as
    // "no dump, not even to a `core_pattern` pipe"; 0 would start the
    // host's pipe handler (`systemd-coredump`, apport) for every crash.
    // Neither call may change it (reading it stays allowed).
    only("setrlimit", When::Resource(0, RLIMIT_CORE, None)),
    only("prlimit64", When::Resource(1, RLIMIT_CORE, Some(2))),
    // Typing into a terminal.
    only("ioctl", When::LowDword(1, TERMINAL_IOCTLS)),
    // x86 only.
    always("iopl"),
    always("ioperm"),
    always("modify_ldt"),
    always("uselib"),
    always("ustat"),
    always("sysfs"),
    always("_sysctl"),
    always("lookup_dcookie"),
    always("nfsservctl"),
];
