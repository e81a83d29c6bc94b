//! Fleets across hosts, for real: every host is a network namespace on a
//! bridge ([`support::netns`]), one runs the store (`cairn server`, or
//! moto for S3), each of the others a `cairn agent` running
//! `examples/http-hello` on the host's private address. The tests promote
//! releases, cut hosts off, restart the store, and watch every host's
//! service answer throughout.
//!
//! Needs root and `ip` (iproute2), plus what the agent tests need (gcc,
//! libc6-dev) and, for S3, moto (`pip install 'moto[server]'`).

#[allow(dead_code)]
#[path = "../agent/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../agent/harness.rs"]
mod harness;
#[path = "../support/mod.rs"]
mod support;

mod fleet;
mod watch;

mod faults;
mod rollout;
