//! Run one build step hermetically in Linux namespaces.
//!
//! The crate knows nothing about stores or recipes: the caller hands it a
//! [`Plan`] — host directories already materialized, the command, the
//! complete environment, limits — and [`run`] executes it and reports an
//! [`Outcome`]. The plan is pure data (validated by [`Plan::validate`]
//! without I/O); everything else is the executor.
//!
//! # What the step sees
//!
//! * New user, mount, pid, net, ipc, uts and cgroup namespaces. Inside, the
//!   step runs as uid/gid [`SANDBOX_ID`] (1000). Outside it is the invoking
//!   user, or, when that is root, an id of its own from a dedicated range
//!   ([`FIRST_HOST_ID`], as Nix's build users), never root; supplementary
//!   groups are dropped. It has no capabilities, `no_new_privs` is set and
//!   a system-call filter refuses what a build never needs
//!   ([`refused_calls`]).
//! * A root filesystem made only of the plan's mounts on a fresh tmpfs
//!   (read-only after setup); inputs are bound read-only, nosuid, nodev,
//!   recursively; a `writable` mount is a private copy on a tmpfs of its
//!   own with `limits.tmp_bytes` of room (mode 0700, owned by the step's
//!   host ids, no setuid bits; see `copies.rs`), discarded afterwards. `/out` is a tmpfs of `limits.out_bytes` and `limits.out_files`
//!   entries, handed back to the
//!   caller as [`OutputDir`] (it never exists on a host file system);
//!   `/tmp` a tmpfs of `limits.tmp_bytes` (nosuid, nodev, but programs
//!   written there may run: test runners need that); a workdir outside every mount is
//!   another such tmpfs, discarded afterwards (inside a mount it is as
//!   writable as the mount); `/proc` a fresh procfs of the new pid
//!   namespace; `/dev` a tmpfs holding only `null zero full random urandom`
//!   (bound from the host) and the `fd stdin stdout stderr` symlinks. No
//!   tty, no pts, no controlling terminal (a new session).
//! * Only a loopback interface, up. Host TCP ports and host abstract unix
//!   sockets are unreachable (the latter is Nix's CVE-2024-27297).
//! * Nothing of the caller: exactly `plan.env`; stdin `/dev/null`;
//!   stdout/stderr pipes, copied live into what the caller passed, up to
//!   `limits.log_bytes` (never a host file: see `streams.rs`); no other fd;
//!   a fresh, empty session keyring; fixed rlimits; pid 1 (a fork of the
//!   caller) wipes the caller's command line and environment from its
//!   memory and is not dumpable.
//! * Hostname `plan.hostname`.
//! * The plan's services ([`Service`]), started by pid 1 before the
//!   command, in the same namespaces, as the same user, with the same
//!   limits and filter, each probed until ready (over the sandbox's own
//!   loopback); killed with the namespace when the command ends.
//!
//! # Limits and teardown
//!
//! Memory and process count are limited with a per-step cgroup (v1 here;
//! see `cgroup.rs` for why not `RLIMIT_AS`), and an OOM kill is
//! reported as [`Termination::MemoryExceeded`]; a fork refused by the
//! process limit kills the step at once and is reported as
//! [`Termination::ProcessLimit`]; a step that fails with `/out` or `/tmp`
//! full is [`Termination::OutOfSpace`]. Open files, CPU seconds and
//! file size are rlimits. The wall-clock timeout kills the sandbox's outer
//! process; its child, pid 1 of the namespace, dies with it
//! (`PR_SET_PDEATHSIG`), and when pid 1 dies the kernel kills every process
//! in the namespace (pid 1 arms its parent-death signal again after it
//! takes the step's uid, which clears it). The cgroup's freezer is then
//! used to kill anything left; cgroups a killed cairn could not remove are
//! removed by a later one once stale. Normal exits end the same way: when the step's main process exits,
//! pid 1 reports its status and exits, so a backgrounded `sleep 1000 &`
//! never outlives the step.
//!
//! # Design choice: direct syscalls, not `hakoniwa`
//!
//! `hakoniwa` (evaluated at 1.x) is a capable container library, but it
//! limits resources only through cgroup v2 via systemd, pulls in
//! `libseccomp` (a C library) and `pasta` for networking, and its process
//! structure and error reporting are its own. Our needs are narrow and
//! security-critical, so the crate calls the kernel directly through `libc`
//! in a few hundred auditable lines:
//!
//! * `run` spawns a `std::process::Command` whose `pre_exec` hook
//!   (`child.rs`) never returns to std: it uses only
//!   async-signal-safe raw syscalls on data precomputed by the parent
//!   (`script.rs`) — no allocation after `fork`, which is what
//!   makes forking a multi-threaded Rust program sound — and forks twice
//!   more (pid-1 reaper, then the step) with a raw `clone` that skips
//!   glibc's atfork handlers. No re-exec of the caller's binary is needed,
//!   so the crate works from any program, tests included.
//! * Mounts use `open_tree`/`mount_setattr`/`move_mount` on fds obtained by
//!   walking the new root with `O_NOFOLLOW` (`mounts.rs`), so
//!   symlinks inside inputs cannot redirect mount points to the host.
//!   Requires Linux ≥ 5.12.
//! * Setup failures travel back on a socket as `(stage, index, errno)` and
//!   become [`SandboxError::Setup`] naming the operation.
//! * The system-call filter is one seccomp-bpf program compiled at build
//!   time by libseccomp (`build.rs`), a binary tree of call numbers: cheap
//!   to install, and never run for the calls not on its list. The binary
//!   does not link libseccomp.

mod cgroup;
mod child;
mod copies;
mod error;
mod exec;
mod filter;
mod ids;
mod masks;
mod mounts;
mod plan;
mod pool;
mod prepare;
mod ready;
mod reports;
mod script;
mod services;
mod staging;
mod streams;
mod teardown;

pub use error::SandboxError;
pub use exec::{run, Outcome, OutputDir, Scratch, ServiceEnd, Termination};
pub use filter::refused_calls;
pub use ids::{FIRST_HOST_ID, HOST_ID_SLOTS};
pub use masks::BOOT_ID;
pub use plan::{Emulator, Limits, Mount, Plan, PlanError, RESERVED, SANDBOX_ID};
pub use pool::{pool_kept, remove_idle_cgroups, Swept};
pub use services::{Probe, Readiness, Service, MAX_SERVICES};
