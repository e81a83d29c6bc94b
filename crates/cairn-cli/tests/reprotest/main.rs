//! Reproducible under variation, not only on rerun (as reprotest checks):
//! every example of `examples/` (each directory with a `cairn.toml`; a
//! test fails when one is not listed here) is built twice from clean
//! stores, the second time with the project copied elsewhere under
//! another name (its files created in reverse order, their times ten days
//! ahead), another store path, umask 077, another hostname (a new UTS
//! namespace), another user name and home, another locale, a time zone
//! fourteen hours away, `SOURCE_DATE_EPOCH` ten days later and the
//! monotonic and boot clocks ten days ahead (a new time namespace, which
//! the sandboxes inherit); see `support/surroundings.rs`. The artifacts
//! must be identical, byte for byte: a difference fails naming the
//! example, the step, the file and the first differing bytes of both.
//! go-hello and zig-hello run their whole `cairn test` both times, so
//! both release targets (amd64 and arm64) are built and each binary is
//! run on its platform (arm64 under QEMU) in both surroundings.
//!
//! A probe step prints what a step can see of those (hostname, ids,
//! umask, environment, directory order, its private `/tmp`, file modes,
//! owners and modification times of its inputs, writable ones included)
//! and must print the same both times: the sandbox pins them. The stores
//! are made at different times, so the blobs' own times differ; the
//! materialized inputs' times are pinned to 1.
//!
//! The user id, varied as far as it can be: the sandbox's memory and
//! process limits are v1 cgroups only root can create, so cairn runs as
//! root both times; what changes is the host user each step is mapped to
//! (one of the sandbox's dedicated ids, chosen per step from free slots).
//! The probe's second build runs while this test holds the slot its
//! first build's step used, so its step runs as another host uid, and
//! sees the same. Its `/proc/self/uid_map` names that host uid (the kernel
//! shows a namespace's map to its members), and its `/proc/uptime` the
//! clock it saw; the probe records both beside what it saw, to prove the
//! variation reached the step.
//!
//! Needs `unshare` (util-linux), Debian's `busybox-static`, `gcc` with
//! `libc6-dev`, `golang-go`, `qemu-user-static` and the `ziglang` wheel
//! (`.ci/run` installs them); the test fails without them.
//!
//! [`variation`] holds the machinery (the examples' specs, one build in
//! given surroundings, the comparison); [`examples`] the test of each
//! example; [`probe`] what a step sees and the leak the comparison names.

#[path = "../support/mod.rs"]
mod support;

mod variation;

mod examples;
mod probe;
